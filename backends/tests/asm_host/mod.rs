//! The full-width ISAs this host runs, for the tests of the assembled kernels (`jit::asm`).

use kestrel_backends::jit::asm::WideIsa;
use kestrel_backends::jit::isa::IsaFlags;

/// The host's target flags.
pub fn host_flags() -> IsaFlags {
    let isa = kestrel_backends::jit::model::host_isa().unwrap();
    IsaFlags::from_isa(&*isa)
}

/// The wide ISAs this host runs, printing why any other is skipped.
pub fn host_wide_isas() -> Vec<WideIsa> {
    let f = host_flags();
    let mut out = Vec::new();
    for (isa, has) in [
        (WideIsa::Avx2Fma, f.is_x86 && f.has_avx2 && f.has_fma),
        (WideIsa::Avx512F, f.is_x86 && f.has_avx512f),
    ] {
        if has {
            out.push(isa);
        } else {
            eprintln!("skipped: this host has no {}", isa.name());
        }
    }
    out
}
