//! Symbols of JIT-compiled code for profilers (docs/JIT.md "Profiling generated code").
//!
//! With `KESTREL_PERF_MAP=1` in the environment, each compiled model appends one line per
//! function, `START SIZE label` (hex, no prefix), to `/tmp/perf-<pid>.map`: the file `perf report`
//! reads for code it finds no symbols for. Labels name the node (`kestrel_n12 node 12 "…" (conv)`)
//! or the micro-kernel (`kestrel_k3 u8·s8 14×32 avx512vnni …`). Without the variable nothing is
//! written. A failure to write is reported on stderr once and never fails the compilation.

use cranelift_jit::JITModule;
use cranelift_module::FuncId;
use std::io::Write;

/// Whether the environment asks for the map.
pub fn requested() -> bool {
    std::env::var_os("KESTREL_PERF_MAP").is_some_and(|v| v == "1")
}

/// The map's lines for `symbols` of the finalized `module`.
pub fn lines(module: &JITModule, symbols: &[(FuncId, usize, String)]) -> String {
    let mut out = String::new();
    for (id, bytes, label) in symbols {
        if *bytes == 0 {
            continue;
        }
        let start = module.get_finalized_function(*id) as usize;
        let label: String = label
            .chars()
            .map(|c| if c == '\n' { ' ' } else { c })
            .collect();
        out.push_str(&format!("{start:x} {bytes:x} {label}\n"));
    }
    out
}

/// Appends the map of `symbols` when [`requested`].
pub fn write_if_requested(module: &JITModule, symbols: &[(FuncId, usize, String)]) {
    if !requested() {
        return;
    }
    let path = format!("/tmp/perf-{}.map", std::process::id());
    let text = lines(module, symbols);
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        eprintln!("kestrel: KESTREL_PERF_MAP: cannot write {path}: {e}");
    }
}
