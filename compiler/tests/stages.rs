//! `kestrel::stages`: prune → distill → quantize on the committed digits fixture.

use kestrel::stages::{self, DistillStage, QuantizeStageOptions, StagesConfig};
use kestrel_passes::prune::{Importance, PruneOptions};
use kestrel_passes::quantize::{Method, QuantizeOptions};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/digits")
        .join(name)
}

#[test]
fn prune_distill_quantize_rows() {
    let model = fixture("digits_cnn.onnx");
    let data = fixture("digits_cnn.io.npz");
    let labels = fixture("digits_test_y.npy");
    let g = kestrel::driver::load(&model).unwrap().graph;
    let classes = kestrel::train::classes(&g, &model).unwrap();
    let ds = kestrel::train::data::Dataset::load(&g, &data, Some(&labels), classes).unwrap();
    let train = kestrel::train::TrainOptions {
        epochs: 1,
        ..Default::default()
    };
    let cfg = StagesConfig {
        prune: Some(PruneOptions {
            ratio: 0.5,
            importance: Importance::parse("l2").unwrap(),
            global: false,
            round_to: 1,
            keep: vec![],
            only: None,
        }),
        distill: Some(DistillStage {
            data: &ds,
            temperature: 4.0,
            alpha: 0.9,
            train,
        }),
        quantize: Some((
            &data,
            QuantizeStageOptions {
                method: Method::parse("minmax", None).unwrap(),
                options: QuantizeOptions::default(),
                threads: 1,
                qat: None,
            },
        )),
        eval: None,
        iters: 3,
    };
    let (_, report) = stages::run(&g, &model, &cfg).unwrap();
    print!("{}", report.markdown());
    let names: Vec<_> = report.rows.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(names, ["float", "pruned", "distilled", "int8"]);
    assert!(report.rows[1].macs < report.rows[0].macs);
    assert!(report.rows.iter().all(|r| r.accuracy.is_some()));
    assert!(report.accuracy_on.contains("distill data"));
}

/// The quantize stage with `--qat` at 4-bit weights: a row named `int8 (QAT)`, int8 weights on
/// the 4-bit grid, and an accuracy at least that of post-training quantization of the same
/// distilled model (on the fixture, 4-bit post-training quantization loses several images).
#[test]
fn qat_stage_beats_post_training_quantization_at_four_bits() {
    let model = fixture("digits_cnn.onnx");
    let data = fixture("digits_cnn.io.npz");
    let labels = fixture("digits_test_y.npy");
    let g = kestrel::driver::load(&model).unwrap().graph;
    let ds = kestrel::train::data::Dataset::load(&g, &data, Some(&labels), 10).unwrap();
    let quiet = kestrel::train::TrainOptions {
        epochs: 1,
        progress: false,
        ..Default::default()
    };
    let run = |qat: Option<kestrel::train::TrainOptions>| {
        let cfg = StagesConfig {
            prune: None,
            distill: Some(DistillStage {
                data: &ds,
                temperature: 4.0,
                alpha: 0.9,
                train: quiet.clone(),
            }),
            quantize: Some((
                &data,
                QuantizeStageOptions {
                    method: Method::parse("minmax", None).unwrap(),
                    options: QuantizeOptions {
                        weight_bits: 4,
                        ..Default::default()
                    },
                    threads: 1,
                    qat,
                },
            )),
            eval: None,
            iters: 1,
        };
        stages::run(&g, &model, &cfg).unwrap()
    };
    let (_, ptq) = run(None);
    let (qat_graph, qat) = run(Some(kestrel::train::TrainOptions {
        epochs: 10,
        lr: 1e-4,
        ..quiet.clone()
    }));
    print!("{}{}", ptq.markdown(), qat.markdown());
    assert_eq!(qat.rows.last().unwrap().stage, "int8 (QAT)");
    let acc = |r: &stages::StagesReport| r.rows.last().unwrap().accuracy.unwrap();
    assert!(
        acc(&qat) >= acc(&ptq),
        "QAT {} < PTQ {}",
        acc(&qat),
        acc(&ptq)
    );
    let mut weights = 0;
    for v in &qat_graph.values {
        if let kestrel_ir::ValueDef::Const(c) = &v.def {
            if v.ty.dtype == kestrel_ir::DType::I8 && v.ty.rank() >= 2 {
                weights += 1;
                let max = c
                    .data
                    .as_ref()
                    .unwrap()
                    .to_f32_vec()
                    .iter()
                    .fold(0f32, |m, x| m.max(x.abs()));
                assert!(
                    max <= 7.0,
                    "{}: |q| up to {max}, off the 4-bit grid",
                    c.name
                );
            }
        }
    }
    assert!(weights >= 2, "the QAT stage writes int8 weights");
}

/// `kestrel compile --prune --distill-data --quantize` prints one row per stage and writes a
/// shared object that computes what the JIT computes on the final stage's graph after the
/// stage's pipeline (the stages
/// are deterministic, so the library call rebuilds that graph bit for bit); bad combinations
/// are refused with nothing written.
#[test]
fn compile_in_stages_writes_the_final_stage_as_a_shared_object() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let model = fixture("digits_cnn.onnx");
    let data = fixture("digits_cnn.io.npz");
    let labels = fixture("digits_test_y.npy");
    let so = dir.path().join("m.so");
    let kestrel = |args: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_kestrel"))
            .args(args)
            .output()
            .unwrap()
    };
    let base: Vec<String> = [
        "compile",
        &s(&model),
        "--prune",
        "0.5",
        "--distill-data",
        &s(&data),
        "--labels",
        &s(&labels),
        "--epochs",
        "2",
        "--quiet",
    ]
    .map(String::from)
    .to_vec();
    let mut args = base.clone();
    args.extend(["--quantize", "int8", "--calib", &s(&data), "-o", &s(&so)].map(String::from));
    let o = kestrel(&args);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for stage in ["| float |", "| pruned |", "| distilled |", "| int8 |"] {
        assert!(out.contains(stage), "no {stage} row in {out}");
    }

    // The same stages through the library, then the JIT at O2 on one image.
    let g = kestrel::driver::load(&model).unwrap().graph;
    let ds = kestrel::train::data::Dataset::load(&g, &data, Some(&labels), 10).unwrap();
    let cfg = StagesConfig {
        prune: Some(PruneOptions {
            ratio: 0.5,
            ..Default::default()
        }),
        distill: Some(DistillStage {
            data: &ds,
            temperature: 4.0,
            alpha: 0.9,
            train: kestrel::train::TrainOptions {
                epochs: 2,
                progress: false,
                ..Default::default()
            },
        }),
        quantize: Some((
            &data,
            QuantizeStageOptions {
                method: Method::parse("minmax", None).unwrap(),
                options: QuantizeOptions::default(),
                threads: 1,
                qat: None,
            },
        )),
        eval: None,
        iters: 1,
    };
    let (final_graph, _) = stages::run(&g, &model, &cfg).unwrap();
    let final_onnx = dir.path().join("final.onnx");
    kestrel::onnx::write_model(&final_graph, &Default::default(), &final_onnx).unwrap();
    let images = kestrel::tensor_io::read_npz(&data).unwrap();
    let x = &images.iter().find(|(n, _)| n == "input").unwrap().1;
    let one = kestrel_ir::Tensor::from_vec(vec![1, 1, 8, 8], x.to_f32_vec()[..64].to_vec());
    let img = dir.path().join("one.npy");
    kestrel::tensor_io::write_npy(&img, &one).unwrap();
    let logits = |m: &std::path::Path, name: &str, pipeline: &[String]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "run".into(),
            s(m),
            "--input".into(),
            s(&img),
            "--outputs".into(),
            s(&out),
        ];
        args.extend_from_slice(pipeline);
        let o = kestrel(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        kestrel::tensor_io::read_npz(&out)
            .unwrap()
            .remove(0)
            .1
            .to_f32_vec()
    };
    // The int8 stage compiles with the integer kernels' fixed-point requantization.
    let int8 = ["--pipeline".to_string(), stages::stage_pipeline(true)];
    assert_eq!(
        logits(&so, "so.npz", &[]),
        logits(&final_onnx, "jit.npz", &int8)
    );

    // The quantize stage with 3-bit weights and quantization-aware training.
    let so3 = dir.path().join("m3.so");
    let mut args = base.clone();
    args.extend(
        [
            "--quantize",
            "int8",
            "--calib",
            &s(&data),
            "--weight-bits",
            "3",
            "--qat",
            "-o",
            &s(&so3),
        ]
        .map(String::from),
    );
    let o = kestrel(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("| int8 (QAT) |"));
    assert!(so3.exists());

    // --qat needs --quantize; --val-data needs --val-labels: nothing written either way.
    let never = dir.path().join("never.so");
    let mut qat = base.clone();
    qat.extend(["--qat", "-o", &s(&never)].map(String::from));
    let o = kestrel(&qat);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("--qat trains for quantization"));
    assert!(!never.exists());
}

/// `kestrel compare --distill-data` adds one row per stage after the pipeline rows, each stage
/// compiled as `compile` would (the int8 stage with integer kernels), with accuracy on
/// `--inputs`/`--labels`; without `--pipeline` or `--distill-data` it is refused.
#[test]
fn compare_shows_the_stages_as_rows() {
    use std::process::Command;
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let model = fixture("digits_cnn.onnx");
    let data = fixture("digits_cnn.io.npz");
    let labels = fixture("digits_test_y.npy");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("rows.json");
    let o = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args([
            "compare",
            &s(&model),
            "--pipeline",
            "O2",
            "--inputs",
            &s(&data),
        ])
        .args(["--labels", &s(&labels), "--iters", "2", "--prune", "0.5"])
        .args(["--distill-data", &s(&data), "--distill-labels", &s(&labels)])
        .args([
            "--epochs",
            "2",
            "--quiet",
            "--quantize",
            "int8",
            "--calib",
            &s(&data),
        ])
        .args(["--json", &s(&json)])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| pipeline"))
        .collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|l| l.split('|').nth(1).unwrap().trim())
        .collect();
    assert_eq!(
        names,
        [
            "O2",
            "stage: float",
            "stage: pruned",
            "stage: distilled",
            "stage: int8"
        ],
        "{out}"
    );
    let accuracy = |row: &str| -> f64 {
        let cell = row.split('|').nth(9).unwrap().trim();
        cell.trim_end_matches(" %").parse().unwrap()
    };
    assert_eq!(
        accuracy(rows[0]),
        accuracy(rows[1]),
        "the float stage is the O2 row"
    );
    assert!(
        accuracy(rows[2]) < 50.0,
        "pruning alone loses most of it: {out}"
    );
    assert!(
        accuracy(rows[3]) > accuracy(rows[2]),
        "distillation wins some back: {out}"
    );
    assert!(std::fs::read_to_string(&json)
        .unwrap()
        .contains("stage: int8"));

    let o = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(["compare", &s(&model), "--inputs", &s(&data)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "no --pipeline, no --distill-data");
}
