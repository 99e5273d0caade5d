//! The library's entry points as a front end other than the command line (a Python package, a
//! training loop) calls them: plain options in, plain results out, the same checks and messages.

use kestrel::compare::{CompareOptions, Reference};
use kestrel::driver::{InputSpec, PassOptions};
use kestrel::{Backend, InProcessOptions};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn digits_onnx() -> PathBuf {
    root().join("examples/digits.onnx")
}

fn digit() -> kestrel_ir::Tensor {
    kestrel::tensor_io::read_npy(&root().join("examples/digit.npy")).unwrap()
}

fn quiet(_: &kestrel_passes::Report) {}

#[test]
fn compiled_model_runs_by_name_like_run_on_files() {
    let model = kestrel::load(&digits_onnx()).unwrap();
    let compiled = kestrel::compile(
        model,
        &InProcessOptions {
            passes: PassOptions::pipeline("O2"),
            threads: 2,
            ..InProcessOptions::default()
        },
        &mut quiet,
    )
    .unwrap();
    assert_eq!(compiled.input_names(), ["input"]);
    let by_name = compiled
        .run_named(&[("input".to_string(), digit())])
        .unwrap();
    let spec = InputSpec::parse(
        &[root().join("examples/digit.npy").display().to_string()],
        &[],
        &[],
    )
    .unwrap();
    let mut reports = 0;
    let from_files = kestrel::run(
        kestrel::load(&digits_onnx()).unwrap(),
        &InProcessOptions {
            inputs: spec,
            ..InProcessOptions::default()
        },
        &mut |_| reports += 1,
    )
    .unwrap();
    assert_eq!(reports, 1, "the pass report is shown once");
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name[0].0, from_files[0].0);
    assert_eq!(by_name[0].1.bytes(), from_files[0].1.bytes());
    let interp = kestrel::compile(
        kestrel::load(&digits_onnx()).unwrap(),
        &InProcessOptions {
            backend: Backend::Interp,
            ..InProcessOptions::default()
        },
        &mut quiet,
    )
    .unwrap();
    assert!(interp.jit().is_none());
    let reference = interp.run(&[digit()]).unwrap();
    let diff = reference[0]
        .1
        .to_f32_vec()
        .iter()
        .zip(by_name[0].1.to_f32_vec())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "JIT differs from the interpreter by {diff}");
}

#[test]
fn bad_inputs_by_name_are_errors_naming_model_and_input() {
    let compiled = kestrel::compile(
        kestrel::load(&digits_onnx()).unwrap(),
        &InProcessOptions::default(),
        &mut quiet,
    )
    .unwrap();
    let msg = |r: anyhow::Result<Vec<(String, kestrel_ir::Tensor)>>| {
        kestrel::error_chain(&r.expect_err("an error"))
    };
    let e = msg(compiled.run_named(&[("x".to_string(), digit())]));
    assert!(
        e.contains("digits.onnx") && e.contains("no input \"x\""),
        "{e}"
    );
    let e = msg(compiled.run_named(&[]));
    assert!(
        e.contains("input \"input\"") && e.contains("is not given"),
        "{e}"
    );
    let wrong = kestrel_ir::Tensor::from_vec(vec![1, 64], vec![0f32; 64]);
    let e = msg(compiled.run_named(&[("input".to_string(), wrong)]));
    assert!(e.contains("expects shape"), "{e}");
    let e = msg(compiled.run_named(&[
        ("input".to_string(), digit()),
        ("input".to_string(), digit()),
    ]));
    assert!(e.contains("bound twice"), "{e}");
    assert!(InputSpec::parse(&[], &[], &["input".to_string()]).is_err());
    assert!(kestrel::compile(
        kestrel::load(&digits_onnx()).unwrap(),
        &InProcessOptions {
            threads: 0,
            ..InProcessOptions::default()
        },
        &mut quiet,
    )
    .is_err());
}

#[test]
fn compare_returns_one_row_per_pipeline() {
    let opts = CompareOptions {
        pipelines: vec!["O0".into(), "O2".into()],
        iters: 2,
        warmup: 0,
        ..CompareOptions::default()
    };
    let mut warnings = Vec::new();
    let c = kestrel::compare::compare(kestrel::load(&digits_onnx()).unwrap(), &opts, &mut |r| {
        warnings.extend(r.warnings.clone())
    })
    .unwrap();
    assert_eq!(c.reference, Reference::Interpreter);
    let names: Vec<&str> = c.rows.iter().map(|r| r.pipeline.as_str()).collect();
    assert_eq!(names, ["O0", "O2"]);
    assert!(c
        .rows
        .iter()
        .all(|r| r.max_diff < 1e-4 && r.accuracy.is_none()));
    assert!(c.rows[1].nodes < c.rows[0].nodes, "O2 fuses");
    assert!(c.to_json().contains("\"pipeline\": \"O2\""));
}

#[test]
fn bench_report_feeds_the_layer_profile() {
    let report = kestrel::bench::bench(
        kestrel::load(&digits_onnx()).unwrap(),
        &kestrel::bench::BenchOptions {
            iters: 2,
            warmup: 0,
            ..Default::default()
        },
        &mut quiet,
    )
    .unwrap();
    assert!(
        report.pipeline.contains("fuse"),
        "O2 by default: {}",
        report.pipeline
    );
    assert!(report.sizes.is_some_and(|s| s.code > 0));
    assert!(report.summary().contains("latency: median "));
    let layers = kestrel::layers::profile(
        &report.graph,
        &kestrel_backends::jit::JitOptions::default(),
        1,
        &report.model,
    )
    .unwrap();
    assert!(
        layers.iter().any(|l| l.op == "conv" && l.macs > 0),
        "{:?}",
        layers.iter().map(|l| (&l.op, l.macs)).collect::<Vec<_>>()
    );
}

#[test]
fn compile_so_writes_the_shared_object_and_header() {
    let dir = tempfile::tempdir().unwrap();
    let so = dir.path().join("digits.so");
    let out = kestrel::compile_so(
        kestrel::load(&digits_onnx()).unwrap(),
        &so,
        &kestrel::CompileSoOptions::default(),
        &mut quiet,
    )
    .unwrap();
    assert!(out.so.is_file() && out.header.is_file());
    assert_eq!(out.info.inputs[0].name, "input");
    let outputs = kestrel::aot::run_so(
        &so,
        &InputSpec::parse(
            &[root().join("examples/digit.npy").display().to_string()],
            &[],
            &[],
        )
        .unwrap(),
        1,
    )
    .unwrap();
    assert_eq!(outputs[0].0, out.info.outputs[0].name);
}
