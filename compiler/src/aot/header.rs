//! The C header written beside a shared object (`docs/ABI.md` documents every line of it).

use kestrel_backends::aot::{IoInfo, ModelInfo};
use kestrel_runtime::abi::{DType, ABI_VERSION, ARENA_ALIGN, ERR_CPU, ERR_WORKSPACE, MODEL_MAGIC};
use std::fmt::Write;

/// A C string literal of `s` (non-printable and non-ASCII bytes as octal escapes).
pub fn c_string(s: &str) -> String {
    let mut out = String::from("\"");
    for &b in s.as_bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            // `??x` would be a trigraph in old C dialects.
            b'?' => out.push_str("\\?"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

/// Text safe inside a `/* */` comment: printable ASCII, without `*/`.
fn comment_text(s: &str) -> String {
    let printable: String = s
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    printable.replace("*/", "* /")
}

/// The shared definitions, guarded so that headers of several models can be included together.
fn abi_types() -> String {
    let mut s = String::new();
    let _ = writeln!(s, "#ifndef KESTREL_ABI_TYPES_V{ABI_VERSION}");
    let _ = writeln!(s, "#define KESTREL_ABI_TYPES_V{ABI_VERSION}");
    let _ = writeln!(s, "#define KESTREL_ABI_VERSION {ABI_VERSION}");
    let _ = writeln!(
        s,
        "#define KESTREL_MODEL_MAGIC 0x{MODEL_MAGIC:08X}u /* \"KSTL\" */"
    );
    let _ = writeln!(
        s,
        "/* Negative statuses of the run functions; a positive status k means node k failed at\n   \
         run time (kestrel_model_desc.status_messages[k - 1] says which and why). */"
    );
    let _ = writeln!(s, "#define KESTREL_OK 0");
    let _ = writeln!(
        s,
        "#define KESTREL_ERR_CPU ({ERR_CPU}) /* the CPU lacks a feature the code needs */"
    );
    let _ = writeln!(
        s,
        "#define KESTREL_ERR_WORKSPACE ({ERR_WORKSPACE}) /* null or misaligned workspace */"
    );
    let _ = writeln!(
        s,
        "/* Element types (ONNX TensorProto.DataType numbers). */"
    );
    for d in DType::ALL {
        let _ = writeln!(s, "#define {} {}", d.c_name(), d as i32);
    }
    s.push_str(
        r#"/* A task of a parallel loop: task(ctx, index); always returns 0. */
typedef int32_t (*kestrel_task)(const void *ctx, uint64_t index);
/* The host's parallel-for: runs task(ctx, i) for every i < count, on any threads, in any order,
   and returns when all have returned. pool is passed through unchanged. */
typedef void (*kestrel_parallel_for)(void *pool, kestrel_task task, const void *ctx, uint64_t count);
/* A graph input or output. */
typedef struct kestrel_tensor_desc {
    const char *name;      /* NUL-terminated UTF-8 */
    int32_t dtype;         /* KESTREL_DTYPE_* */
    int32_t rank;
    const int64_t *shape;  /* rank dimensions */
    uint64_t size_bytes;   /* bytes of the dense row-major tensor */
} kestrel_tensor_desc;
/* The model descriptor, exported as the data symbol <prefix>_model. */
typedef struct kestrel_model_desc {
    uint32_t magic;        /* KESTREL_MODEL_MAGIC */
    uint32_t abi_version;  /* KESTREL_ABI_VERSION */
    uint64_t workspace_size;
    uint64_t workspace_align;
    uint32_t num_inputs;
    uint32_t num_outputs;
    const kestrel_tensor_desc *inputs;
    const kestrel_tensor_desc *outputs;
    uint32_t num_tasks;    /* most tasks one node is split into (kestrel compile --tasks) */
    uint32_t num_status;
    const char *const *status_messages;
    const char *name;      /* graph name */
    const char *target;    /* target triple */
    const char *cpu_features; /* "+a,+b": what kestrel_check_cpu tests */
} kestrel_model_desc;
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(kestrel_tensor_desc) == 32, "kestrel_tensor_desc layout");
_Static_assert(sizeof(kestrel_model_desc) == 88, "kestrel_model_desc layout");
#endif
#endif /* KESTREL_ABI_TYPES */
"#,
    );
    s
}

fn tensor_macros(s: &mut String, upper: &str, kind: &str, i: usize, t: &IoInfo) {
    let m = format!("{upper}_{kind}{i}");
    let dims: Vec<String> = t.dims.iter().map(|d| d.to_string()).collect();
    let _ = writeln!(
        s,
        "/* {} {i}: {}[{}] */",
        kind.to_ascii_lowercase(),
        t.dtype,
        dims.join(", ")
    );
    let _ = writeln!(s, "#define {m}_NAME {}", c_string(&t.name));
    let _ = writeln!(s, "#define {m}_DTYPE {}", t.dtype.c_name());
    let _ = writeln!(s, "#define {m}_RANK {}", t.dims.len());
    if !t.dims.is_empty() {
        let _ = writeln!(s, "#define {m}_SHAPE {{{}}}", dims.join(", "));
    }
    let _ = writeln!(
        s,
        "#define {m}_ELEMENTS {}u",
        t.dims.iter().product::<usize>()
    );
    let _ = writeln!(s, "#define {m}_SIZE {}u /* bytes */", t.size_bytes());
}

/// The header of a model compiled with `info`; `so_name` is the shared object's file name.
pub fn header(info: &ModelInfo, so_name: &str, source: &str) -> String {
    let p = &info.prefix;
    let upper = p.to_ascii_uppercase();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "/* {}: C interface of {}, written by `kestrel compile` (Kestrel {}).",
        comment_text(&format!("{}.h", so_name.trim_end_matches(".so"))),
        comment_text(so_name),
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        s,
        " * Model {} from {}, for {} with CPU features {}.",
        comment_text(&info.graph_name),
        comment_text(source),
        info.target,
        if info.cpu.is_empty() {
            "(baseline only)".to_string()
        } else {
            comment_text(&info.cpu)
        }
    );
    let _ = writeln!(s, " * The ABI is documented in Kestrel's docs/ABI.md. */");
    let _ = writeln!(s, "#ifndef {upper}_KESTREL_H");
    let _ = writeln!(s, "#define {upper}_KESTREL_H\n");
    let _ = writeln!(s, "#include <stdint.h>\n");
    let _ = writeln!(s, "#ifdef __cplusplus\nextern \"C\" {{\n#endif\n");
    s.push_str(&abi_types());
    s.push('\n');
    let _ = writeln!(s, "#define {upper}_ABI_VERSION {ABI_VERSION}");
    let _ = writeln!(
        s,
        "#define {upper}_WORKSPACE_SIZE {}u /* bytes; may be 0 */",
        info.workspace_size
    );
    let _ = writeln!(s, "#define {upper}_WORKSPACE_ALIGN {ARENA_ALIGN}u");
    let _ = writeln!(s, "#define {upper}_NUM_TASKS {}u", info.tasks);
    let _ = writeln!(s, "#define {upper}_NUM_INPUTS {}u", info.inputs.len());
    let _ = writeln!(s, "#define {upper}_NUM_OUTPUTS {}u", info.outputs.len());
    for (i, t) in info.inputs.iter().enumerate() {
        tensor_macros(&mut s, &upper, "INPUT", i, t);
    }
    for (i, t) in info.outputs.iter().enumerate() {
        tensor_macros(&mut s, &upper, "OUTPUT", i, t);
    }
    let _ = writeln!(
        s,
        r#"
/* The model descriptor (the same facts as the macros above, for programs that load the .so). */
extern const kestrel_model_desc {p}_model;

/* 0 when this CPU has every feature the code was compiled for, else KESTREL_ERR_CPU.
   The run functions check it themselves; call it to fail early. */
int32_t {p}_check_cpu(void);

/* Runs the model once on the calling thread. inputs[i] / outputs[i] point at the dense row-major
   data of input / output i ({upper}_INPUTi_SIZE / {upper}_OUTPUTi_SIZE bytes, aligned to the
   element size); workspace points at {upper}_WORKSPACE_SIZE bytes aligned to
   {upper}_WORKSPACE_ALIGN, owned by one run at a time. Returns KESTREL_OK, KESTREL_ERR_CPU,
   KESTREL_ERR_WORKSPACE, or a positive node status (see kestrel_model_desc.status_messages). */
int32_t {p}_run(const void *const *inputs, void *const *outputs, void *workspace);

/* Like {p}_run, but nodes split into tasks (kestrel compile --tasks) run through the host's
   parallel_for(pool, task, ctx, count); a null parallel_for runs them on the calling thread.
   The result is bit for bit the same whichever threads run the tasks. */
int32_t {p}_run_parallel(const void *const *inputs, void *const *outputs, void *workspace,
                         kestrel_parallel_for parallel_for, void *pool);

#ifdef __cplusplus
}}
#endif

#endif /* {upper}_KESTREL_H */"#
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_strings_escape_everything_unusual() {
        assert_eq!(c_string("input"), "\"input\"");
        assert_eq!(c_string("a\"b\\c?\n"), "\"a\\\"b\\\\c\\?\\012\"");
        assert_eq!(c_string("é"), "\"\\303\\251\"");
        assert_eq!(comment_text("x*/y\n"), "x* /y?");
    }
}
