//! Helpers shared by the integration tests: fixture paths and reference checks.
#![allow(dead_code)]

use kestrel_ir::testing::{max_abs, step_bound, tensor_max_abs_diff};
use kestrel_ir::{verify, Graph, Op, Tensor, TensorType, ValueDef};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The committed fixtures (`tests/fixtures`).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The folder named by `KESTREL_MODELS`, or `None` when it is unset; a set but missing folder
/// fails the test.
#[allow(unused_imports)] // like the functions here: some test targets do not use it
pub use kestrel_ir::testing::shared_models;

/// A model of the shared folder, failing if it is missing.
pub fn shared_model(dir: &Path, rel: &str) -> PathBuf {
    let p = dir.join(rel);
    assert!(
        p.is_file(),
        "{} is missing from KESTREL_MODELS",
        p.display()
    );
    p
}

pub fn load(model: &Path) -> Graph {
    kestrel::onnx::load_model(model)
        .unwrap_or_else(|e| panic!("importing {}: {e}", model.display()))
        .graph
}

/// The `input` and `logits` arrays of a reference bundle.
pub fn reference(io: &Path) -> (Tensor, Tensor) {
    let arrays = kestrel::tensor_io::read_npz(io).unwrap_or_else(|e| panic!("{e}"));
    let get = |name: &str| {
        arrays
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{} has no {name}", io.display()))
            .1
            .clone()
    };
    (get("input"), get("logits"))
}

/// The bundle beside a model: `x.onnx` → `x.io.npz`.
pub fn io_of(model: &Path) -> PathBuf {
    let name = model.file_name().unwrap().to_string_lossy();
    model.with_file_name(name.replace(".onnx", ".io.npz"))
}

/// Runs the interpreter on the bundle's input and returns (output, reference, seconds).
pub fn run_interp(model: &Path) -> (Tensor, Tensor, f64) {
    let g = load(model);
    let (input, logits) = reference(&io_of(model));
    let start = Instant::now();
    let mut out = kestrel_backends::interp::run(&g, &[input])
        .unwrap_or_else(|e| panic!("running {}: {e}", model.display()));
    let secs = start.elapsed().as_secs_f64();
    (out.remove(0), logits, secs)
}

/// Float models: max |out - ref| <= 1e-4 * max(1, max |ref|).
pub fn check_float_model(model: &Path) {
    let (out, logits, secs) = run_interp(model);
    let diff = tensor_max_abs_diff(&out, &logits);
    let tol = 1e-4 * max_abs(&logits.to_f32_vec()).max(1.0);
    eprintln!(
        "{}: max |diff| {diff:e} (tolerance {tol:e}), interpreter {secs:.2} s",
        model.display()
    );
    assert!(
        diff <= tol,
        "{}: max |diff| {diff} > {tol}",
        model.display()
    );
}

/// The quantization step of a graph output produced by DequantizeLinear with a constant scale.
pub fn output_step(g: &Graph) -> f32 {
    let out = g.outputs[0].value;
    let node = g.producer(out).expect("output has a producer");
    let n = g.node(node);
    assert!(
        matches!(n.op, Op::DequantizeLinear { .. }),
        "int8 model output is not dequantized: {:?}",
        n.op
    );
    match &g.value(n.inputs[1]).def {
        ValueDef::Const(c) => c.data.as_ref().unwrap().to_f32_vec()[0],
        _ => panic!("output scale is not constant"),
    }
}

/// Quantized models: within one output quantization step of onnxruntime's output.
pub fn check_int8_model(model: &Path) {
    let step = output_step(&load(model));
    let (out, logits, secs) = run_interp(model);
    let diff = tensor_max_abs_diff(&out, &logits);
    eprintln!(
        "{}: max |diff| {diff:e} (one step {step:e}), interpreter {secs:.2} s",
        model.display()
    );
    assert!(
        diff <= step_bound(step, 1.0),
        "{}: max |diff| {diff} > one output step {step}",
        model.display()
    );
}

/// `print(parse(print(g))) == print(g)` with weights referenced by name, and the parsed graph
/// verifies.
pub fn check_text_round_trip(model: &Path) {
    use kestrel_ir::text::{parse, print, PrintOptions, WeightStyle};
    let g = load(model);
    kestrel_ir::verify(&g).unwrap_or_else(|e| panic!("{}: {e:?}", model.display()));
    let first = print(
        &g,
        &PrintOptions {
            weights: WeightStyle::Reference,
        },
    );
    let weights: std::collections::HashMap<String, Tensor> = first
        .weights
        .iter()
        .map(|(n, t)| (n.clone(), (*t).clone()))
        .collect();
    let parsed = parse(&first.text, &|name: &str| weights.get(name).cloned())
        .unwrap_or_else(|e| panic!("{}: reparsing its dump: {e}", model.display()));
    kestrel_ir::verify(&parsed)
        .unwrap_or_else(|e| panic!("{}: parsed dump: {e:?}", model.display()));
    let second = print(
        &parsed,
        &PrintOptions {
            weights: WeightStyle::Reference,
        },
    );
    assert_eq!(
        first.text,
        second.text,
        "{}: text form does not round-trip",
        model.display()
    );
    // `kestrel dump m.onnx > m.kir; kestrel dump m.kir` reproduces m.kir (weights elided).
    let elided = print(
        &g,
        &PrintOptions {
            weights: WeightStyle::Elided,
        },
    )
    .text;
    let reparsed = parse(&elided, &|_: &str| None)
        .unwrap_or_else(|e| panic!("{}: reparsing its elided dump: {e}", model.display()));
    let again = print(
        &reparsed,
        &PrintOptions {
            weights: WeightStyle::Elided,
        },
    )
    .text;
    assert_eq!(
        elided,
        again,
        "{}: elided dump does not reproduce itself",
        model.display()
    );
}

/// Compiles the model with the JIT (symbolic dims bound from the bundle's input) and runs it on
/// the bundle's input. Returns (output, reference, compiled model, seconds of one run).
pub fn run_jit(model: &Path) -> (Tensor, Tensor, kestrel_backends::jit::JitModel, f64) {
    run_jit_with(model, &kestrel_backends::jit::JitOptions::default())
}

/// [`run_jit`] with the given options.
pub fn run_jit_with(
    model: &Path,
    opts: &kestrel_backends::jit::JitOptions,
) -> (Tensor, Tensor, kestrel_backends::jit::JitModel, f64) {
    let mut g = load(model);
    let (input, logits) = reference(&io_of(model));
    kestrel::driver::bind_shapes_from_inputs(&mut g, std::slice::from_ref(&input), model)
        .unwrap_or_else(|e| panic!("{e:#}"));
    kestrel::driver::fold_for_codegen(&mut g, model).unwrap_or_else(|e| panic!("{e:#}"));
    let m = kestrel_backends::jit::compile(&g, opts)
        .unwrap_or_else(|e| panic!("compiling {}: {e}", model.display()));
    let start = Instant::now();
    let mut out = m
        .run(&[input])
        .unwrap_or_else(|e| panic!("running {}: {e}", model.display()));
    let secs = start.elapsed().as_secs_f64();
    (out.remove(0), logits, m, secs)
}

/// Float models through the JIT, with the interpreter's tolerance.
pub fn check_float_model_jit(model: &Path) {
    let (out, logits, m, secs) = run_jit(model);
    let diff = tensor_max_abs_diff(&out, &logits);
    let tol = 1e-4 * max_abs(&logits.to_f32_vec()).max(1.0);
    eprintln!(
        "{} [jit]: max |diff| {diff:e} (tolerance {tol:e}); compile {:.3} s, run {secs:.4} s, code {} B, arena {} B (lower bound {} B)",
        model.display(),
        m.compile_time().as_secs_f64(),
        m.code_bytes(),
        m.arena_bytes(),
        m.arena_lower_bound()
    );
    assert!(
        diff <= tol,
        "{} [jit]: max |diff| {diff} > {tol}",
        model.display()
    );
    assert!(
        m.arena_bytes() as f64 <= 1.2 * m.arena_lower_bound() as f64 + 4096.0,
        "{} [jit]: arena {} B is over 1.2x its lower bound {} B",
        model.display(),
        m.arena_bytes(),
        m.arena_lower_bound()
    );
    // Split into parallel tasks, every output element is still computed in the same order: the
    // result equals the single-thread one bit for bit, on the pool and on the calling thread.
    // Every node that can be split is (min_task_macs 1), and convolutions build their im2col
    // matrix a few rows at a time (small blocks), to cover the most code.
    let opts = kestrel_backends::jit::JitOptions {
        threads: 2,
        min_task_macs: 1,
        im2col_block_bytes: 64 * 1024,
        ..Default::default()
    };
    let (threaded, _, m2, _) = run_jit_with(model, &opts);
    assert!(
        threaded.bytes() == out.bytes(),
        "{} [jit, 2 threads]: output differs from 1 thread",
        model.display()
    );
    let (input, _) = reference(&io_of(model));
    let serial = m2.run_serial(&[input]).unwrap();
    assert!(
        serial[0].bytes() == out.bytes(),
        "{} [jit, 2 tasks on 1 thread]: output differs from 1 thread",
        model.display()
    );
}

/// Quantize-dequantize models through the JIT (f32 kernels between the Q/DQ pairs): within two
/// output quantization steps of onnxruntime's integer arithmetic, the same top-1 class for every
/// row, and 2 threads equal to 1 bit for bit. Two steps, not the interpreter's one: the JIT sums
/// in f32 in another order, and a sum that lands next to a rounding boundary of a later
/// QuantizeLinear can round the other way (measured: resnet18.int8 at 2 steps, the digits
/// models at most 1; an error beyond that is a bug).
pub fn check_int8_model_jit(model: &Path) {
    let step = output_step(&load(model));
    let (out, logits, m, secs) = run_jit(model);
    let diff = tensor_max_abs_diff(&out, &logits);
    eprintln!(
        "{} [jit]: max |diff| {diff:e} (one step {step:e}); compile {:.3} s, run {secs:.4} s",
        model.display(),
        m.compile_time().as_secs_f64()
    );
    assert!(
        diff <= step_bound(step, 2.0),
        "{} [jit]: max |diff| {diff} > two output steps {step}",
        model.display()
    );
    let classes = *out.dims().last().unwrap();
    let argmax = |t: &Tensor| -> Vec<usize> {
        t.to_f32_vec()
            .chunks(classes)
            .map(|r| {
                (0..r.len())
                    .max_by(|&a, &b| r[a].total_cmp(&r[b]).then(b.cmp(&a)))
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(
        argmax(&out),
        argmax(&logits),
        "{} [jit]: top-1 differs from the reference",
        model.display()
    );
    let opts = kestrel_backends::jit::JitOptions {
        threads: 2,
        min_task_macs: 1,
        im2col_block_bytes: 64 * 1024,
        ..Default::default()
    };
    let (threaded, _, _, _) = run_jit_with(model, &opts);
    assert!(
        threaded.bytes() == out.bytes(),
        "{} [jit, 2 threads]: output differs from 1 thread",
        model.display()
    );
}

/// Every `.onnx` file under `dir`, recursively, in sorted order, appended to `out`.
pub fn onnx_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            onnx_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "onnx") {
            out.push(p);
        }
    }
}

/// Array `name` of an `.npz`.
pub fn read_npz(path: &Path, name: &str) -> Tensor {
    kestrel::tensor_io::read_npz(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{}: no array {name}", path.display()))
        .1
}

/// The first `n` entries along axis 0.
pub fn take_rows(t: &Tensor, n: usize) -> Tensor {
    let mut dims = t.dims().to_vec();
    let row: usize = dims[1..].iter().product::<usize>() * t.dtype().size();
    dims[0] = n;
    let bytes = t.bytes().slice(0..n * row);
    Tensor::from_bytes(t.dtype(), dims, bytes).unwrap()
}

/// Binds the type of a single-input graph to the data (first extent: the declared one when
/// known, else at most 8 samples); returns the inputs to feed.
pub fn bind_single_input(g: &mut Graph, data: &Tensor) -> Vec<Tensor> {
    assert_eq!(g.inputs.len(), 1, "models with one input only");
    let ty = g.ty(g.inputs[0]).clone();
    let rows = ty.shape[0].known().unwrap_or(data.dims()[0].min(8));
    let input = take_rows(data, rows);
    assert_eq!(ty.dtype, input.dtype());
    g.set_input_type(0, TensorType::known(ty.dtype, input.dims()))
        .unwrap();
    g.reinfer().unwrap();
    verify(g).unwrap();
    vec![input]
}

/// Runs `g` on `feed` with the interpreter and with the JIT (2 threads) and checks every output
/// element within `rel·(1 + |reference|)`; returns the interpreter's outputs. `what` names the
/// case in failures.
pub fn assert_jit_matches_interp(g: &Graph, feed: &[Tensor], rel: f32, what: &str) -> Vec<Tensor> {
    use kestrel_backends::{interp, jit};
    let want = interp::run(g, feed).unwrap();
    let compiled = jit::compile(g, &jit::JitOptions::with_threads(2)).unwrap();
    let got = compiled.run(feed).unwrap();
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        let name = &g.outputs[k].name;
        for (i, (p, q)) in a.to_f32_vec().iter().zip(b.to_f32_vec()).enumerate() {
            assert!(
                (p - q).abs() <= rel * (1.0 + q.abs()),
                "{what}: output {name}[{i}]: JIT {p}, interpreter {q}"
            );
        }
    }
    want
}
