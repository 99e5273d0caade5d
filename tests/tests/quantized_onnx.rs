//! Pre-quantized ONNX (issue 13, item 6): QLinearConv, QLinearMatMul, ConvInteger,
//! MatMulInteger, DynamicQuantizeLinear and the com.microsoft QOperator ops import into the QDQ
//! form and match onnxruntime.
//!
//! The fixtures (`tests/fixtures/quantized`, written by `tests/fixtures/make_quantized_ops.py`)
//! are one small model per op plus two made by onnxruntime's own quantizers, each with
//! onnxruntime's outputs and a per-output tolerance (one quantization step: 1 for 8-bit outputs,
//! 0 for the exact i32 ones, the scale for dequantized outputs). Every output of the interpreter,
//! and of the JIT with no pipeline (`O0`, the QDQ form as imported) and with `O2`, must be within
//! that tolerance of onnxruntime's. With `KESTREL_MODELS` set the script also quantizes shared
//! models with onnxruntime (QOperator static quantization of digits_cnn, dynamic quantization of
//! vit_tiny_16) into a temporary folder and checks them the same way.

mod common;

use kestrel_backends::jit::{self, JitOptions};
use kestrel_ir::testing::{check_within_steps, max_abs_diff};
use kestrel_ir::{DType, Graph, Op, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture_dir() -> PathBuf {
    common::fixtures().join("quantized")
}

/// One model and its reference bundle: graph inputs, and per output onnxruntime's value and the
/// tolerance.
struct Case {
    path: PathBuf,
    inputs: Vec<Tensor>,
    expected: Vec<(String, Tensor, f64)>,
}

fn case(path: &Path) -> Case {
    let g = common::load(path);
    let io = common::io_of(path);
    let arrays = kestrel::tensor_io::read_npz(&io).unwrap_or_else(|e| panic!("{e}"));
    let get = |name: &str| {
        arrays
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{} has no array {name:?}", io.display()))
    };
    let inputs = g
        .inputs
        .iter()
        .map(|&v| get(g.values[v.index()].name.as_deref().unwrap_or("")))
        .collect();
    let expected = g
        .outputs
        .iter()
        .map(|o| {
            let tol = get(&format!("tolerance.{}", o.name)).get_f64(0);
            (o.name.clone(), get(&o.name), tol)
        })
        .collect();
    Case {
        path: path.to_path_buf(),
        inputs,
        expected,
    }
}

fn fixture_cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.sort();
    v
}

/// Checks `outputs` (in graph-output order) against the case's references: every element within
/// one step (`tolerance.<output>`: 1 for 8-bit outputs, 0 for exact ones, the output scale for
/// dequantized float outputs) of onnxruntime's.
fn check(c: &Case, what: &str, outputs: &[Tensor]) {
    assert_eq!(outputs.len(), c.expected.len(), "{what}: output count");
    for (got, (name, want, step)) in outputs.iter().zip(&c.expected) {
        let label = format!("{} ({what}), output {name}", c.path.display());
        assert_eq!(got.dtype(), want.dtype(), "{label}: dtype");
        assert_eq!(got.dims(), want.dims(), "{label}: shape");
        let values = |t: &Tensor| (0..t.numel()).map(|i| t.get_f64(i)).collect::<Vec<_>>();
        let (g, w) = (values(got), values(want));
        eprintln!(
            "{label}: max |diff| {:e} (step {step:e})",
            max_abs_diff(&g, &w)
        );
        if let Err(m) = check_within_steps(&g, &w, *step, 1.0) {
            panic!("{label}: not within one step {step} of onnxruntime: {m}");
        }
    }
}

fn run_interp(c: &Case) -> Vec<Tensor> {
    let g = common::load(&c.path);
    kestrel_backends::interp::run(&g, &c.inputs)
        .unwrap_or_else(|e| panic!("{}: interpreter: {e}", c.path.display()))
}

/// The case's graph after `pipeline` (`None`: as imported), ready for code generation.
fn compiled(c: &Case, pipeline: Option<&str>) -> Graph {
    let mut g = common::load(&c.path);
    kestrel::driver::bind_shapes_from_inputs(&mut g, &c.inputs, &c.path)
        .unwrap_or_else(|e| panic!("{e:#}"));
    if let Some(p) = pipeline {
        let opts = kestrel::driver::PassOptions::pipeline(p).resolve(p);
        kestrel::driver::run_pipeline(&mut g, &opts, &c.path).unwrap_or_else(|e| panic!("{e:#}"));
    }
    kestrel::driver::fold_for_codegen(&mut g, &c.path).unwrap_or_else(|e| panic!("{e:#}"));
    g
}

/// Runs the JIT after `pipeline` (`None`: the graph as imported).
fn run_jit(c: &Case, pipeline: Option<&str>) -> Vec<Tensor> {
    let g = compiled(c, pipeline);
    let m = jit::compile(&g, &JitOptions::default())
        .unwrap_or_else(|e| panic!("{}: compiling: {e}", c.path.display()));
    m.run(&c.inputs)
        .unwrap_or_else(|e| panic!("{}: running: {e}", c.path.display()))
}

#[test]
fn fixtures_cover_every_quantized_op() {
    let mut seen = std::collections::BTreeSet::new();
    for p in fixture_cases() {
        let bytes = std::fs::read(&p).unwrap();
        let m =
            <kestrel::onnx::proto::ModelProto as prost::Message>::decode(bytes.as_slice()).unwrap();
        for n in m.graph.unwrap().node {
            seen.insert(n.op_type);
        }
    }
    for op in [
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeLinear",
        "QGemm",
        "QLinearAdd",
        "QLinearMul",
        "QLinearGlobalAveragePool",
        "QLinearAveragePool",
        "QLinearConcat",
    ] {
        assert!(seen.contains(op), "no fixture uses {op}");
    }
}

#[test]
fn fixtures_match_onnxruntime_in_the_interpreter() {
    for p in fixture_cases() {
        let c = case(&p);
        check(&c, "interpreter", &run_interp(&c));
    }
}

#[test]
fn fixtures_match_onnxruntime_in_the_jit() {
    for p in fixture_cases() {
        let c = case(&p);
        check(&c, "JIT, as imported", &run_jit(&c, None));
        check(&c, "JIT, O2", &run_jit(&c, Some("O2")));
    }
}

/// `kestrel run`'s path: the JIT at its default pipeline (`InProcessModel`). Its outputs equal
/// the interpreter's on the same compiled graph byte for byte (so whatever the pipeline folds, the
/// JIT computes what the oracle defines), except behind a float gemm or reduction, whose JIT
/// kernels sum in f32 in their own order where the interpreter sums in f64: a float output there
/// is within 1e-6 relative (`qgemm_float`), a quantized one within one step (a mean that lands
/// next to a rounding boundary: `qlinear_global_average_pool_nhwc`, where the JIT agrees with
/// onnxruntime and the interpreter is one step off). All stay within one step of onnxruntime.
#[test]
fn jit_at_the_default_pipeline_gives_the_interpreters_outputs() {
    for p in fixture_cases() {
        let c = case(&p);
        let opts = kestrel::inprocess::InProcessOptions {
            inputs: kestrel::driver::InputSpec {
                archives: vec![common::io_of(&p)],
                ..Default::default()
            },
            ..Default::default()
        };
        let loaded = kestrel::driver::load(&p).unwrap_or_else(|e| panic!("{e:#}"));
        let m = kestrel::inprocess::compile(loaded, &opts, &mut |_| {})
            .unwrap_or_else(|e| panic!("{e:#}"));
        let got = m.run_tensors(&c.inputs).unwrap_or_else(|e| panic!("{e:#}"));
        let want = kestrel_backends::interp::run(m.graph(), &c.inputs)
            .unwrap_or_else(|e| panic!("{}: interpreter: {e}", p.display()));
        for ((g, w), (name, ..)) in got.iter().zip(&want).zip(&c.expected) {
            let label = format!("{} (JIT, default pipeline), output {name}", p.display());
            assert_eq!((g.dtype(), g.dims()), (w.dtype(), w.dims()), "{label}");
            let float_sums = m
                .graph()
                .nodes
                .iter()
                .any(|n| matches!(n.op, Op::Gemm(_) | Op::Reduce(_)));
            if float_sums && g.dtype().is_float() {
                let close =
                    kestrel_ir::testing::check_close(&g.to_f32_vec(), &w.to_f32_vec(), 1e-6);
                assert!(close.is_ok(), "{label}: {}", close.unwrap_err());
            } else if float_sums {
                let steps = |t: &Tensor| (0..t.numel()).map(|i| t.get_f64(i)).collect::<Vec<_>>();
                let within = check_within_steps(&steps(g), &steps(w), 1.0, 1.0);
                assert!(within.is_ok(), "{label}: {}", within.unwrap_err());
            } else {
                assert!(
                    g.bytes() == w.bytes(),
                    "{label}: {g:?} vs interpreter {w:?}"
                );
            }
        }
        check(&c, "JIT, default pipeline", &got);
    }
}

/// The requantization rounding fixtures (`qlinear_conv_rounding`, `qgemm_rounding`, written by
/// the generator, which checks that onnxruntime computes them with its f32 requantization):
/// accumulators where that and TFLite's fixed-point requantization give different integers
/// (exact halves, an accumulator above 2^24, products within f32 rounding of a half, f32
/// multipliers that differ from the f64 ones). At `O2`, whose fold-qdq requantizes as onnxruntime
/// does, the interpreter and the JIT give onnxruntime's bytes exactly; with the fixed-point
/// requantization of the `int8` pipeline they agree with each other but not with onnxruntime.
#[test]
fn requantization_gives_onnxruntimes_integers() {
    let fixed_point = "canonicalize,fold-qdq(requant=fixed_point),fuse,canonicalize";
    for name in ["qlinear_conv_rounding", "qgemm_rounding"] {
        let c = case(&fixture_dir().join(format!("{name}.onnx")));
        for (pipeline, mode) in [
            ("O2", kestrel_ir::RequantMode::Float),
            (fixed_point, kestrel_ir::RequantMode::FixedPoint),
        ] {
            let g = compiled(&c, Some(pipeline));
            let modes: Vec<_> = g
                .nodes
                .iter()
                .filter_map(|n| match &n.op {
                    Op::Conv(a) => a.integer.as_ref(),
                    Op::Gemm(a) => a.integer.as_ref(),
                    _ => None,
                })
                .map(|i| i.requant.as_ref().expect("requantized").mode)
                .collect();
            assert_eq!(modes, vec![mode; c.expected.len()], "{name} at {pipeline}");
            let interp = kestrel_backends::interp::run(&g, &c.inputs)
                .unwrap_or_else(|e| panic!("{name}: interpreter: {e}"));
            let m = jit::compile(&g, &JitOptions::default()).unwrap_or_else(|e| panic!("{e}"));
            let jit = m.run(&c.inputs).unwrap_or_else(|e| panic!("{e}"));
            for ((i, j), (output, want, _)) in interp.iter().zip(&jit).zip(&c.expected) {
                let label = format!("{name} at {pipeline}, output {output}");
                assert!(
                    i.bytes() == j.bytes(),
                    "{label}: JIT differs from the interpreter"
                );
                let differ = (0..i.numel())
                    .filter(|&k| i.get_f64(k) != want.get_f64(k))
                    .count();
                eprintln!("{label}: {differ} of {} differ from onnxruntime", i.numel());
                match mode {
                    kestrel_ir::RequantMode::Float => assert_eq!(differ, 0, "{label}"),
                    kestrel_ir::RequantMode::FixedPoint => assert!(differ > 0, "{label}"),
                }
            }
        }
    }
}

/// The shared `*.int8.onnx` models (onnxruntime's QDQ quantization) at `O2`, what `kestrel run`
/// compiles by default: every conv and gemm folds to an integer op with onnxruntime's f32
/// requantization, the interpreter on the folded graph and the JIT give the same bytes, and the
/// logits are within one output step of onnxruntime's (the bundle's `logits`).
#[test]
fn shared_int8_models_at_o2_are_within_one_step_of_onnxruntime() {
    let Some(models) = common::shared_models() else {
        eprintln!("KESTREL_MODELS is not set: skipping");
        return;
    };
    for rel in [
        "torchvision/resnet18.int8.onnx",
        "mnist5k/mnist5k_cnn.int8.onnx",
        "digits/digits_cnn.int8.onnx",
        "digits/digits_teacher.int8.onnx",
    ] {
        let path = common::shared_model(&models, rel);
        let (input, logits) = common::reference(&common::io_of(&path));
        let step = common::output_step(&common::load(&path)) as f64;
        let c = Case {
            path: path.clone(),
            inputs: vec![input],
            expected: vec![("logits".to_string(), logits, step)],
        };
        let g = compiled(&c, Some("O2"));
        let float_ops = g
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul))
            .filter(|n| {
                let integer = match &n.op {
                    Op::Conv(a) => a.integer.as_ref(),
                    Op::Gemm(a) => a.integer.as_ref(),
                    _ => None,
                };
                integer.and_then(|i| i.requant.as_ref()).map(|r| r.mode)
                    != Some(kestrel_ir::RequantMode::Float)
            })
            .count();
        assert_eq!(
            float_ops, 0,
            "{rel}: convs or gemms not folded with float requantization"
        );
        let interp = kestrel_backends::interp::run(&g, &c.inputs)
            .unwrap_or_else(|e| panic!("{rel}: interpreter: {e}"));
        let m = jit::compile(&g, &JitOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let got = m.run(&c.inputs).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            got[0].bytes() == interp[0].bytes(),
            "{rel}: JIT differs from the interpreter at O2"
        );
        let want = &c.expected[0].1;
        let differ = (0..want.numel())
            .filter(|&k| got[0].get_f64(k) != want.get_f64(k))
            .count();
        eprintln!(
            "{rel} at O2: {differ} of {} logits differ from onnxruntime's",
            want.numel()
        );
        check(&c, "JIT, O2", &got);
    }
}

/// The ops of a graph by IR name, in order.
fn op_names(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.name()).collect()
}

/// What each quantized op imports as: the QDQ form, nothing else.
#[test]
fn quantized_ops_import_as_dequantize_float_op_quantize() {
    let graph = |name: &str| common::load(&fixture_dir().join(format!("{name}.onnx")));
    // Weights and bias stay integer constants behind their dequantize_linear (never folded at
    // import), the activation is dequantized, the float op runs, the result is quantized.
    let expect = [
        (
            "qlinear_conv",
            vec![
                "dequantize_linear",
                "dequantize_linear",
                "dequantize_linear",
                "conv",
                "quantize_linear",
            ],
        ),
        (
            "qlinear_matmul",
            vec![
                "dequantize_linear",
                "dequantize_linear",
                "matmul",
                "quantize_linear",
            ],
        ),
        (
            "conv_integer",
            vec!["dequantize_linear", "dequantize_linear", "conv", "cast"],
        ),
        (
            "matmul_integer",
            vec!["dequantize_linear", "dequantize_linear", "matmul", "cast"],
        ),
        (
            "qgemm",
            vec![
                "dequantize_linear",
                "dequantize_linear",
                "dequantize_linear",
                "gemm",
                "quantize_linear",
            ],
        ),
        (
            "qgemm_float",
            vec!["dequantize_linear"; 3]
                .into_iter()
                .chain(["gemm"])
                .collect(),
        ),
        (
            "qlinear_add",
            vec![
                "dequantize_linear",
                "dequantize_linear",
                "add",
                "quantize_linear",
            ],
        ),
        (
            "qlinear_global_average_pool",
            vec![
                "dequantize_linear",
                "global_average_pool",
                "quantize_linear",
            ],
        ),
        (
            "qlinear_global_average_pool_nhwc",
            vec![
                "transpose",
                "dequantize_linear",
                "global_average_pool",
                "quantize_linear",
                "transpose",
            ],
        ),
        (
            "qlinear_average_pool",
            vec!["dequantize_linear", "average_pool", "quantize_linear"],
        ),
        (
            "qlinear_average_pool_nhwc_s8",
            vec![
                "transpose",
                "dequantize_linear",
                "average_pool",
                "quantize_linear",
                "transpose",
            ],
        ),
        (
            "qlinear_concat",
            vec![
                "dequantize_linear",
                "dequantize_linear",
                "concat",
                "quantize_linear",
            ],
        ),
        ("dynamic_quantize_linear", vec!["dynamic_quantize_linear"]),
    ];
    for (name, ops) in expect {
        let g = graph(name);
        assert_eq!(op_names(&g), ops, "{name}");
    }

    // Per-channel weights: axis 0 of the conv weights, the bias at x_scale * w_scale[c].
    let g = graph("qlinear_conv");
    let dq: Vec<_> = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::DequantizeLinear { .. }))
        .collect();
    let (w, b) = (dq[1], dq[2]);
    assert_eq!(w.op, Op::DequantizeLinear { axis: 0 });
    assert_eq!(g.ty(w.inputs[0]).dtype, DType::I8);
    assert_eq!(g.ty(b.inputs[0]).dtype, DType::I32);
    let const_f32 = |v| g.const_data(v).expect("constant").to_f32_vec();
    let (sx, sw, sb) = (
        const_f32(dq[0].inputs[1]),
        const_f32(w.inputs[1]),
        const_f32(b.inputs[1]),
    );
    assert_eq!(sw.len(), 4);
    let product: Vec<f32> = sw.iter().map(|s| sx[0] * s).collect();
    assert_eq!(sb, product);
    assert_eq!(
        g.const_data(b.inputs[2]).unwrap().to_i64_vec(),
        vec![0; 4],
        "bias zero point"
    );

    // ConvInteger/MatMulInteger: scale exactly 1, the zero point kept, per column for b.
    let g = graph("matmul_integer");
    let b = &g.nodes[1];
    assert_eq!(b.op, Op::DequantizeLinear { axis: -1 });
    assert_eq!(const_f32_of(&g, b.inputs[1]), vec![1.0; 6]);
    assert_eq!(g.ty(b.inputs[2]).dtype, DType::U8);

    // The QOperator model: MaxPool of a quantized tensor is dequantized and requantized with its
    // own parameters, so no integer op but the QDQ pairs remains.
    let g = graph("small_cnn_qoperator");
    for n in &g.nodes {
        let ints = n
            .inputs
            .iter()
            .any(|&v| g.ty(v).dtype.is_int() && g.const_data(v).is_none());
        let qdq = matches!(
            n.op,
            Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. }
        );
        assert!(
            !ints || qdq || n.op.is_reshape(),
            "{} runs on an integer tensor outside the QDQ form",
            n.op.name()
        );
    }
    assert!(op_names(&g).contains(&"max_pool"));
}

/// At `O2` the pooling, concat and Mul fixtures run on integer ops: no float op and no
/// dequantize/quantize pair is left between the graph's 8-bit input and output.
#[test]
fn o2_folds_pooling_concat_and_mul_into_integer_ops() {
    let expect: [(&str, &[&str]); 7] = [
        ("qlinear_mul", &["quantized_mul"]),
        ("qlinear_concat", &["requantize", "requantize", "concat"]),
        (
            "qlinear_global_average_pool",
            &["quantized_global_average_pool"],
        ),
        (
            "qlinear_global_average_pool_nhwc",
            &["transpose", "quantized_global_average_pool", "transpose"],
        ),
        ("qlinear_average_pool", &["quantized_average_pool"]),
        (
            "qlinear_average_pool_pad_counted",
            &["quantized_average_pool"],
        ),
        (
            "qlinear_average_pool_nhwc_s8",
            &["transpose", "quantized_average_pool", "transpose"],
        ),
    ];
    for (name, ops) in expect {
        let path = fixture_dir().join(format!("{name}.onnx"));
        let mut g = common::load(&path);
        let opts = kestrel::driver::PassOptions::pipeline("O2").resolve("O2");
        kestrel::driver::run_pipeline(&mut g, &opts, &path).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(op_names(&g), ops.to_vec(), "{name}");
    }
}

fn const_f32_of(g: &Graph, v: kestrel_ir::ValueId) -> Vec<f32> {
    g.const_data(v).expect("constant").to_f32_vec()
}

// ------------------------------------------------------------------ onnxruntime's quantizers on shared models

/// Whether `python3` can import onnxruntime and onnx; under CI their absence fails the test
/// (`.ci/run` installs them).
fn have_onnxruntime() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnxruntime, onnx, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with onnxruntime, onnx and numpy is missing (.ci/run installs them with pip)"
        );
        eprintln!("python3 with onnxruntime, onnx and numpy is missing: skipping");
    }
    ok
}

#[test]
fn shared_models_quantized_by_onnxruntime() {
    let Some(models) = common::shared_models() else {
        eprintln!("KESTREL_MODELS is not set: skipping");
        return;
    };
    if !have_onnxruntime() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = common::fixtures().join("make_quantized_ops.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--shared")
        .arg(dir.path())
        .arg("--models")
        .arg(&models)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{} --shared failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );

    // digits_cnn, QOperator: QLinearConv, MaxPool on u8, QGemm; one output step.
    let c = case(&dir.path().join("digits_cnn.qoperator.onnx"));
    check(&c, "interpreter", &run_interp(&c));
    check(&c, "JIT, as imported", &run_jit(&c, None));
    check(&c, "JIT, O2", &run_jit(&c, Some("O2")));

    // vit_tiny_16, dynamic: DynamicQuantizeLinear, MatMulInteger, ConvInteger. The integer
    // products are exact on both sides; an activation whose float rounding differs from
    // onnxruntime's quantizes one step apart, and such differences compound over the twelve
    // blocks (measured: up to 2.1% of the largest |logit|): bound the difference by 3% of it, and
    // require the same top-1.
    let mut c = case(&dir.path().join("vit_tiny_16.dynamic.onnx"));
    let want = c.expected[0].1.to_f32_vec();
    let range = want.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    c.expected[0].2 = 0.03 * range;
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    for (what, got) in [
        ("interpreter", run_interp(&c)),
        ("JIT, as imported", run_jit(&c, None)),
        ("JIT, O2", run_jit(&c, Some("O2"))),
    ] {
        check(&c, what, &got);
        assert_eq!(argmax(&got[0].to_f32_vec()), argmax(&want), "{what}: top-1");
    }
}
