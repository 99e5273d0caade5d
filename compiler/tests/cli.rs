//! The `kestrel` binary as users call it: exit codes, messages, files written.

mod ort;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kestrel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(args)
        .output()
        .expect("spawn kestrel")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn digits(name: &str) -> String {
    fixtures()
        .join("digits")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_user_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1, stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

/// Extracts `input.npy` from a reference bundle into `dir`.
fn bundle_input(dir: &Path, bundle: &str) -> PathBuf {
    let arrays = kestrel::tensor_io::read_npz(Path::new(&digits(bundle))).unwrap();
    let input = &arrays.iter().find(|(n, _)| n == "input").unwrap().1;
    let path = dir.join("input.npy");
    kestrel::tensor_io::write_npy(&path, input).unwrap();
    path
}

#[test]
fn run_writes_outputs_matching_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let npz = dir.path().join("out.npz");
    let o = kestrel(&[
        "run",
        &digits("digits_cnn.onnx"),
        "--inputs",
        &digits("digits_cnn.io.npz"),
        "--output-dir",
        out_dir.to_str().unwrap(),
        "--outputs",
        npz.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "run prints nothing unless asked");
    let reference = kestrel::tensor_io::read_npz(Path::new(&digits("digits_cnn.io.npz"))).unwrap();
    let logits = &reference.iter().find(|(n, _)| n == "logits").unwrap().1;
    let from_dir = kestrel::tensor_io::read_npy(&out_dir.join("logits.npy")).unwrap();
    let from_npz = kestrel::tensor_io::read_npz(&npz).unwrap();
    assert_eq!(from_npz.len(), 1);
    assert_eq!(from_npz[0].0, "logits");
    assert_eq!(from_npz[0].1, from_dir);
    assert_eq!(from_dir.dims(), &[360, 10]);
    let diff = from_dir
        .to_f32_vec()
        .iter()
        .zip(logits.to_f32_vec())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-3, "max diff {diff}");
}

#[test]
fn run_binds_positional_and_named_npy_and_prints() {
    let dir = tempfile::tempdir().unwrap();
    let input = bundle_input(dir.path(), "digits_cnn.b1.io.npz");
    let o = kestrel(&[
        "run",
        &digits("digits_cnn.b1.onnx"),
        "--input",
        input.to_str().unwrap(),
        "--print",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(printed.starts_with("logits: f32[1, 10]"), "{printed}");
    let named = format!("input={}", input.display());
    let o2 = kestrel(&[
        "run",
        &digits("digits_cnn.b1.onnx"),
        "--input",
        &named,
        "--print",
    ]);
    assert!(o2.status.success(), "{}", stderr(&o2));
    assert_eq!(o.stdout, o2.stdout);
}

#[test]
fn run_accepts_onnx_tensor_protos() {
    let dir = tempfile::tempdir().unwrap();
    let input = bundle_input(dir.path(), "digits_cnn.b1.io.npz");
    let t = kestrel::tensor_io::read_npy(&input).unwrap();
    let pb = dir.path().join("input_0.pb");
    std::fs::write(
        &pb,
        prost::Message::encode_to_vec(&kestrel::onnx::tensor_to_proto("input", &t)),
    )
    .unwrap();
    let a = kestrel(&[
        "run",
        &digits("digits_cnn.b1.onnx"),
        "--input",
        pb.to_str().unwrap(),
        "--print",
    ]);
    let b = kestrel(&[
        "run",
        &digits("digits_cnn.b1.onnx"),
        "--input",
        input.to_str().unwrap(),
        "--print",
    ]);
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn input_shape_binds_symbolic_batch() {
    let dir = tempfile::tempdir().unwrap();
    let input = bundle_input(dir.path(), "digits_cnn.b1.io.npz");
    let ok = kestrel(&[
        "run",
        &digits("digits_cnn.onnx"),
        "--input-shape",
        "input=1x1x8x8",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let wrong = kestrel(&[
        "run",
        &digits("digits_cnn.onnx"),
        "--input-shape",
        "input=2x1x8x8",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_user_error(&wrong, &["input", "shape"]);
}

#[test]
fn missing_input_is_a_clear_error() {
    let o = kestrel(&["run", &digits("digits_cnn.onnx")]);
    assert_user_error(&o, &["digits_cnn.onnx", "input \"input\"", "not bound"]);
}

#[test]
fn misshaped_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.npy");
    kestrel::tensor_io::write_npy(
        &bad,
        &kestrel_ir::Tensor::from_vec(vec![1, 1, 7, 8], vec![0.0f32; 56]),
    )
    .unwrap();
    let o = kestrel(&[
        "run",
        &digits("digits_cnn.onnx"),
        "--input",
        bad.to_str().unwrap(),
    ]);
    assert_user_error(
        &o,
        &[
            "digits_cnn.onnx",
            "input \"input\"",
            "bad.npy",
            "[1, 1, 7, 8]",
        ],
    );
    let wrong_dtype = dir.path().join("f64.npy");
    kestrel::tensor_io::write_npy(
        &wrong_dtype,
        &kestrel_ir::Tensor::from_vec(vec![1, 1, 8, 8], vec![0.0f64; 64]),
    )
    .unwrap();
    let o = kestrel(&[
        "run",
        &digits("digits_cnn.onnx"),
        "--input",
        wrong_dtype.to_str().unwrap(),
    ]);
    assert_user_error(&o, &["input \"input\"", "f64"]);
}

#[test]
fn unknown_op_is_named_with_domain_and_opset() {
    let model = fixtures().join("errors/unknown_op.onnx");
    let o = kestrel(&["dump", model.to_str().unwrap()]);
    assert_user_error(
        &o,
        &["unknown_op.onnx", "fancy1", "FancyActivation", "opset 17"],
    );
    let model = fixtures().join("errors/custom_domain.onnx");
    let o = kestrel(&["run", model.to_str().unwrap()]);
    assert_user_error(&o, &["custom_domain.onnx", "gelu0", "com.microsoft"]);
}

#[test]
fn inconsistent_shapes_name_the_node() {
    let model = fixtures().join("errors/bad_shapes.onnx");
    let o = kestrel(&["dump", model.to_str().unwrap()]);
    assert_user_error(&o, &["bad_shapes.onnx", "mm0", "MatMul"]);
}

#[test]
fn malformed_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(digits("digits_cnn.onnx")).unwrap();
    for (i, cut) in [0, 1, 17, bytes.len() / 3, bytes.len() - 5]
        .into_iter()
        .enumerate()
    {
        let p = dir.path().join(format!("cut{i}.onnx"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let o = kestrel(&["dump", p.to_str().unwrap()]);
        assert_user_error(&o, &[&format!("cut{i}.onnx")]);
    }
    let o = kestrel(&["run", "does/not/exist.onnx"]);
    assert_user_error(&o, &["does/not/exist.onnx"]);
}

#[test]
fn failed_run_leaves_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("out.npz");
    let o = kestrel(&[
        "run",
        &digits("digits_cnn.onnx"),
        "--outputs",
        npz.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn usage_errors_exit_2() {
    let o = kestrel(&["run"]);
    assert_eq!(o.status.code(), Some(2));
    let o = kestrel(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn dump_of_a_dump_reproduces_it() {
    let dir = tempfile::tempdir().unwrap();
    for model in [
        "digits_cnn.onnx",
        "digits_cnn.dynamo_bn.onnx",
        "digits_cnn.int8.onnx",
    ] {
        let first = kestrel(&["dump", &digits(model)]);
        assert!(first.status.success(), "{}", stderr(&first));
        let kir = dir.path().join("m.kir");
        std::fs::write(&kir, &first.stdout).unwrap();
        let second = kestrel(&["dump", kir.to_str().unwrap()]);
        assert!(second.status.success(), "{}", stderr(&second));
        assert_eq!(
            String::from_utf8_lossy(&first.stdout),
            String::from_utf8_lossy(&second.stdout),
            "{model}"
        );
    }
}

#[test]
fn dump_with_sidecar_runs_like_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let kir = dir.path().join("digits.kir");
    let o = kestrel(&[
        "dump",
        &digits("digits_cnn.onnx"),
        "-o",
        kir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("digits.weights.npz").is_file());
    // Never overwrite without --force.
    let again = kestrel(&[
        "dump",
        &digits("digits_cnn.onnx"),
        "-o",
        kir.to_str().unwrap(),
    ]);
    assert_user_error(&again, &["exists", "--force"]);
    let forced = kestrel(&[
        "dump",
        &digits("digits_cnn.onnx"),
        "-o",
        kir.to_str().unwrap(),
        "--force",
    ]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let from_kir = kestrel(&[
        "run",
        kir.to_str().unwrap(),
        "--inputs",
        &digits("digits_cnn.io.npz"),
        "--print",
    ]);
    let from_onnx = kestrel(&[
        "run",
        &digits("digits_cnn.onnx"),
        "--inputs",
        &digits("digits_cnn.io.npz"),
        "--print",
    ]);
    assert!(from_kir.status.success(), "{}", stderr(&from_kir));
    assert_eq!(from_kir.stdout, from_onnx.stdout);
}

/// Calibration data for digits_cnn: the first `n` images of the bundle's input (its first axis
/// indexes images), with `edit` applied to the values.
fn digits_calibration(dir: &Path, n: usize, edit: impl Fn(&mut [f32])) -> PathBuf {
    let arrays = kestrel::tensor_io::read_npz(Path::new(&digits("digits_cnn.io.npz"))).unwrap();
    let input = &arrays.iter().find(|(n, _)| n == "input").unwrap().1;
    let per_image: usize = input.dims()[1..].iter().product();
    let mut values = input.to_f32_vec()[..n * per_image].to_vec();
    edit(&mut values);
    let mut dims = vec![n];
    dims.extend_from_slice(&input.dims()[1..]);
    let path = dir.join("calib.npy");
    kestrel::tensor_io::write_npy(&path, &kestrel_ir::Tensor::from_vec(dims, values)).unwrap();
    path
}

#[test]
fn quantize_writes_a_qdq_graph_that_runs_close_to_float() {
    let dir = tempfile::tempdir().unwrap();
    let calib = digits_calibration(dir.path(), 4, |_| {});
    let out = dir.path().join("q.kir");
    for method in ["minmax", "percentile", "entropy", "mse"] {
        let o = kestrel(&[
            "quantize",
            &digits("digits_cnn.onnx"),
            "--calib",
            calib.to_str().unwrap(),
            "--method",
            method,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("quantize({method}):")),
            "{}",
            stderr(&o)
        );
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(
            text.contains("quantize_linear(") && text.contains(": i8["),
            "{text}"
        );
    }
    let o = kestrel(&[
        "run",
        out.to_str().unwrap(),
        "--pipeline",
        "O1",
        "--inputs",
        &digits("digits_cnn.io.npz"),
        "--print",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `quantize -o OUT.onnx` writes QDQ ONNX that Kestrel imports and runs at O2 on integer
/// kernels (its logits within a few percent of the float model's), and `run --quantize int8
/// --calib` computes the same outputs as the written model folded with the same (fixed-point)
/// requantization; `O2` alone folds it with onnxruntime's f32 requantization instead
/// (docs/QUANTIZATION.md).
#[test]
fn quantize_writes_onnx_and_run_quantizes_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let calib = digits_calibration(dir.path(), 8, |_| {});
    let onnx = dir.path().join("q.onnx");
    let o = kestrel(&[
        "quantize",
        &digits("digits_cnn.onnx"),
        "--calib",
        calib.to_str().unwrap(),
        "-o",
        onnx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dumped = kestrel(&["dump", onnx.to_str().unwrap(), "--pipeline", "O2"]);
    assert!(dumped.status.success(), "{}", stderr(&dumped));
    let text = String::from_utf8_lossy(&dumped.stdout).to_string();
    assert!(
        text.contains("requant_multiplier"),
        "no integer conv at O2:\n{text}"
    );
    let outs = |args: &[&str], name: &str| {
        let out = dir.path().join(name);
        let mut all = args.to_vec();
        let out_s = out.to_str().unwrap().to_string();
        all.extend([
            "--inputs",
            &*Box::leak(digits("digits_cnn.b1.io.npz").into_boxed_str()),
        ]);
        all.extend(["--outputs", &*Box::leak(out_s.into_boxed_str())]);
        let o = kestrel(&all);
        assert!(o.status.success(), "{}", stderr(&o));
        kestrel::tensor_io::read_npz(&out).unwrap()
    };
    let dump_in_process = kestrel(&[
        "dump",
        &digits("digits_cnn.onnx"),
        "--quantize",
        "int8",
        "--calib",
        calib.to_str().unwrap(),
        "--pipeline",
        "O2",
    ]);
    assert!(
        dump_in_process.status.success(),
        "{}",
        stderr(&dump_in_process)
    );
    let modes = |text: &str, mode: &str| text.matches(&format!("requant_mode={mode}")).count();
    let in_process_text = String::from_utf8_lossy(&dump_in_process.stdout).to_string();
    assert!(
        modes(&in_process_text, "fixed_point") > 0 && modes(&in_process_text, "float") == 0,
        "--quantize int8 folds with the fixed-point requantization:\n{in_process_text}"
    );
    assert!(
        modes(&text, "float") > 0 && modes(&text, "fixed_point") == 0,
        "O2 folds a QDQ file with onnxruntime's requantization:\n{text}"
    );
    let from_file = outs(
        &[
            "run",
            onnx.to_str().unwrap(),
            "--pipeline",
            "canonicalize,fold-qdq(requant=fixed_point),fuse,canonicalize",
        ],
        "a.npz",
    );
    let in_process = outs(
        &[
            "run",
            &digits("digits_cnn.onnx"),
            "--quantize",
            "int8",
            "--calib",
            calib.to_str().unwrap(),
        ],
        "b.npz",
    );
    let float = outs(&["run", &digits("digits_cnn.onnx")], "c.npz");
    assert_eq!(from_file[0].1.to_f32_vec(), in_process[0].1.to_f32_vec());
    let (q, f) = (in_process[0].1.to_f32_vec(), float[0].1.to_f32_vec());
    let scale = f.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = q
        .iter()
        .zip(&f)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst < 0.1 * scale,
        "int8 logits off by {worst} (largest {scale})"
    );
    let missing = kestrel(&[
        "run",
        &digits("digits_cnn.onnx"),
        "--quantize",
        "int8",
        "--inputs",
        &digits("digits_cnn.b1.io.npz"),
    ]);
    assert_user_error(&missing, &["--calib"]);
    // compare: the float and int8 rows side by side, on the 360 test images.
    let o = kestrel(&[
        "compare",
        &digits("digits_cnn.onnx"),
        "--pipeline",
        "O2",
        "--pipeline",
        "int8",
        "--calib",
        calib.to_str().unwrap(),
        "--inputs",
        &digits("digits_cnn.io.npz"),
        "--labels",
        &digits("digits_test_y.npy"),
        "--iters",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout).to_string();
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| O2 |") || l.starts_with("| int8 |"))
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows.iter().all(|r| r.ends_with("% |")),
        "accuracy column: {table}"
    );
}

/// The rows of a sensitivity report: (layer, error alone in int8, choice).
fn sensitivity_rows(report: &str) -> Vec<(String, f64, String)> {
    report
        .lines()
        .filter(|l| l.starts_with("| /"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            (
                cells[0].to_string(),
                cells[2].parse().unwrap(),
                cells[4].to_string(),
            )
        })
        .collect()
}

/// Top-1 agreement of two logits tensors (rows of classes).
fn top1_agreement(a: &kestrel_ir::Tensor, b: &kestrel_ir::Tensor) -> f64 {
    let classes = *a.dims().last().unwrap();
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |m, (j, &x)| if x > m.1 { (j, x) } else { m },
            )
            .0
    };
    let (a, b) = (a.to_f32_vec(), b.to_f32_vec());
    let rows = a.len() / classes;
    let same = (0..rows)
        .filter(|&r| {
            let row = r * classes..(r + 1) * classes;
            argmax(&a[row.clone()]) == argmax(&b[row])
        })
        .count();
    same as f64 / rows as f64
}

/// `--min-agreement`: the most sensitive layers go back to float until the target holds on the
/// calibration samples; the report lists every layer's error and choice; a target that only the
/// float model meets, labels that do not match the data, and conflicting targets are errors that
/// write nothing. Percentile 95 clips hard enough that the all-int8 model disagrees with float
/// on some of digits_cnn's 360 images.
#[test]
fn quantize_sensitivity_keeps_the_most_sensitive_layers_float() {
    let dir = tempfile::tempdir().unwrap();
    let calib = digits_calibration(dir.path(), 360, |_| {});
    let model = digits("digits_cnn.onnx");
    let quantize = |extra: &[&str], out: &Path| {
        let mut args = vec![
            "quantize",
            &*model,
            "--calib",
            calib.to_str().unwrap(),
            "--method",
            "percentile",
            "--percentile",
            "95",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        kestrel(&args)
    };
    let logits = |m: &Path, name: &str| {
        let out = dir.path().join(name);
        let o = kestrel(&[
            "run",
            m.to_str().unwrap(),
            "--inputs",
            &digits("digits_cnn.io.npz"),
            "--outputs",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        kestrel::tensor_io::read_npz(&out).unwrap().remove(0).1
    };
    let float = logits(Path::new(&model), "float.npz");

    let all_int8 = dir.path().join("all.onnx");
    let o = quantize(&["--min-agreement", "0"], &all_int8);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    let rows = sensitivity_rows(&report);
    assert_eq!(rows.len(), 3, "{report}");
    assert!(rows.iter().all(|r| r.2 == "int8"), "{report}");
    let all_agreement = top1_agreement(&logits(&all_int8, "all.npz"), &float);
    assert!(
        all_agreement < 1.0,
        "the all-int8 model agrees everywhere: {report}"
    );

    let chosen = dir.path().join("chosen.onnx");
    let o = quantize(&["--min-agreement", "100%"], &chosen);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(report.contains("chosen 100.00 %"), "{report}");
    let rows = sensitivity_rows(&report);
    let float_rows: Vec<_> = rows.iter().filter(|r| r.2 == "float").collect();
    let int8_rows: Vec<_> = rows.iter().filter(|r| r.2 == "int8").collect();
    assert!(!float_rows.is_empty() && !int8_rows.is_empty(), "{report}");
    for f in &float_rows {
        assert!(
            int8_rows.iter().all(|i| i.1 <= f.1),
            "not the most sensitive first: {report}"
        );
    }
    // The written model is the chosen one: it meets the target when run on its own.
    assert_eq!(top1_agreement(&logits(&chosen, "chosen.npz"), &float), 1.0);

    let unreachable = dir.path().join("none.onnx");
    let o = kestrel(&[
        "quantize",
        &model,
        "--calib",
        calib.to_str().unwrap(),
        "--method",
        "percentile",
        "--percentile",
        "30",
        "--min-agreement",
        "1",
        "-o",
        unreachable.to_str().unwrap(),
    ]);
    assert_user_error(
        &o,
        &[
            "not met unless every layer stays float",
            "nothing was written",
        ],
    );
    assert!(!unreachable.exists());

    let labels = dir.path().join("labels.npy");
    kestrel::tensor_io::write_npy(
        &labels,
        &kestrel_ir::Tensor::from_vec(vec![10], vec![0i64; 10]),
    )
    .unwrap();
    let o = quantize(
        &[
            "--max-accuracy-drop",
            "1",
            "--labels",
            labels.to_str().unwrap(),
        ],
        &unreachable,
    );
    assert_user_error(&o, &["labels.npy", "10 labels for 360 calibration samples"]);
    let o = quantize(
        &[
            "--max-accuracy-drop",
            "1",
            "--labels",
            &digits("digits_test_y.npy"),
            "--min-agreement",
            "1",
        ],
        &unreachable,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = quantize(
        &[
            "--max-accuracy-drop",
            "200",
            "--labels",
            &digits("digits_test_y.npy"),
        ],
        &unreachable,
    );
    assert_user_error(&o, &["--max-accuracy-drop"]);
    assert!(!unreachable.exists());

    // Against the labels: within 0.5 points of float's accuracy.
    let o = quantize(
        &[
            "--max-accuracy-drop",
            "0.5",
            "--labels",
            &digits("digits_test_y.npy"),
        ],
        &chosen,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(report.contains("accuracy: float"), "{report}");
}

/// `kestrel prune`: the report (parameters, MACs, latency, per group), the pruned ONNX that runs
/// with the same input and output shapes, `--json`, and the errors that write nothing.
#[test]
fn prune_writes_a_smaller_model_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.onnx");
    let json = dir.path().join("p.json");
    let model = digits("digits_cnn.onnx");
    let o = kestrel(&[
        "prune",
        &model,
        "--ratio",
        "0.5",
        "--iters",
        "3",
        "--json",
        json.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(report.contains("| /0/Conv | 16 -> 8 |"), "{report}");
    assert!(report.contains("| /3/Conv | 32 -> 16 |"), "{report}");
    let macs = report.lines().find(|l| l.starts_with("| MACs")).unwrap();
    assert!(macs.ends_with("| 0.262x |"), "{report}");
    let text = std::fs::read_to_string(&json).unwrap();
    assert!(
        text.contains("\"channels_after\": 8")
            && text.contains("\"latency_ms\"")
            && !text.contains("\"layers_ms_after\": null"),
        "{text}"
    );
    let run = |m: &Path| {
        let o = kestrel(&[
            "run",
            m.to_str().unwrap(),
            "--inputs",
            &digits("digits_cnn.io.npz"),
            "--print",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert!(run(&out).contains("logits: f32[360, 10]"));
    // --round-to 16: the 32-channel group keeps 16, the 16-channel one keeps all.
    let o = kestrel(&[
        "prune",
        &model,
        "--ratio",
        "0.5",
        "--round-to",
        "16",
        "--iters",
        "0",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        report.contains("| /0/Conv | 16 -> 16 |") && report.contains("| /3/Conv | 32 -> 16 |"),
        "{report}"
    );
    // --keep: that group keeps every channel.
    let o = kestrel(&[
        "prune",
        &model,
        "--ratio",
        "0.5",
        "--keep",
        "/0/Conv",
        "--iters",
        "0",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        !report.contains("| /0/Conv |") && report.contains("| /3/Conv | 32 -> 16 |"),
        "{report}"
    );

    let none = dir.path().join("none.onnx");
    let prune = |extra: &[&str]| {
        let mut args = vec![
            "prune",
            &*model,
            "--iters",
            "0",
            "-o",
            none.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        kestrel(&args)
    };
    assert_user_error(
        &prune(&["--ratio", "1"]),
        &["--ratio 1", "[0, 1)", "would empty every layer"],
    );
    assert_user_error(
        &prune(&["--ratio", "0.5", "--keep", "nope"]),
        &["nope", "/0/Conv"],
    );
    assert_user_error(
        &prune(&["--ratio", "0.5", "--importance", "bn"]),
        &["BatchNormalization"],
    );
    assert_user_error(&prune(&["--ratio", "0.5", "--importance", "l3"]), &["l3"]);
    assert!(!none.exists());
    // digits_cnn.dynamo_bn still carries its BatchNormalization: bn importance works there.
    let o = kestrel(&[
        "prune",
        &digits("digits_cnn.dynamo_bn.onnx"),
        "--ratio",
        "0.5",
        "--importance",
        "bn",
        "--iters",
        "0",
        "-o",
        none.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Nothing prunable: a single gemm whose outputs are the graph's.
    let kir = dir.path().join("one.kir");
    std::fs::write(
        &kir,
        "graph @t(%x: f32[1,4]) -> (y: f32[1,2]) {\n  %w = const dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]> : f32[4,2]\n  %y = gemm(%x, %w) : f32[1,2]\n  return %y\n}\n",
    )
    .unwrap();
    let o = kestrel(&[
        "prune",
        kir.to_str().unwrap(),
        "--ratio",
        "0.5",
        "--iters",
        "0",
        "-o",
        dir.path().join("one.p.onnx").to_str().unwrap(),
    ]);
    assert_user_error(&o, &["nothing to prune", "graph output"]);
    assert!(!dir.path().join("one.p.onnx").exists());
    let o = kestrel(&["prune", &model, "--ratio", "0.5", "-o", &model]);
    assert_user_error(&o, &["overwrite"]);
    // In process: `run --prune` computes what the written model computes; `compare --prune`
    // adds the pruned row.
    let o = kestrel(&[
        "prune",
        &model,
        "--ratio",
        "0.5",
        "--iters",
        "0",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let in_process = kestrel(&[
        "run",
        &model,
        "--prune",
        "0.5",
        "--inputs",
        &digits("digits_cnn.io.npz"),
        "--print",
    ]);
    assert!(in_process.status.success(), "{}", stderr(&in_process));
    assert_eq!(String::from_utf8_lossy(&in_process.stdout), run(&out));
    let o = kestrel(&[
        "compare",
        &model,
        "--pipeline",
        "O2",
        "--prune",
        "0.5",
        "--iters",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        table.contains("| prune(ratio=0.5),canonicalize,"),
        "{table}"
    );
    // --sensitivity: per group against ratio on the bundle's 360 images with their labels.
    let calib = digits_calibration(dir.path(), 360, |_| {});
    let o = kestrel(&[
        "prune",
        &model,
        "--sensitivity",
        "--calib",
        calib.to_str().unwrap(),
        "--labels",
        &digits("digits_test_y.npy"),
        "--ratios",
        "0,0.5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let scan = String::from_utf8_lossy(&o.stdout).to_string();
    let rows: Vec<&str> = scan
        .lines()
        .filter(|l| l.starts_with("| /") || l.starts_with("| all"))
        .collect();
    assert_eq!(rows.len(), 3, "{scan}");
    // Ratio 0 prunes nothing: every row scores the unpruned accuracy.
    let unpruned = scan
        .split("(unpruned: ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .to_string();
    for r in &rows {
        assert!(r.contains(&format!("| {unpruned} |")), "{scan}");
    }
    let o = kestrel(&[
        "prune",
        &model,
        "--sensitivity",
        "--calib",
        calib.to_str().unwrap(),
        "--labels",
        &digits("digits_cnn.onnx"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// `--importance activation --calib`: channels scored by the activations their consumers read;
/// the statistics need data, and data no option uses is refused; nothing is written on errors.
#[test]
fn prune_by_activation_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let calib = digits_calibration(dir.path(), 32, |_| {});
    let model = digits("digits_cnn.onnx");
    let out = dir.path().join("p.kir");
    let prune = |extra: &[&str]| {
        let mut args = vec!["prune", &model, "--ratio", "0.5", "--iters", "0"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-o", out.to_str().unwrap()]);
        kestrel(&args)
    };
    let c = calib.to_str().unwrap();
    assert_user_error(
        &prune(&["--importance", "activation"]),
        &["--importance activation needs --calib"],
    );
    assert_user_error(&prune(&["--calib", c]), &["--calib is used by"]);
    assert!(!out.exists());
    let o = prune(&["--importance", "activation", "--calib", c]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(report.contains("| /0/Conv | 16 -> 8 |"), "{report}");
    let by_activation = std::fs::read_to_string(&out).unwrap();
    let o = prune(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Different scores choose different channels, so the weights differ.
    assert_ne!(by_activation, std::fs::read_to_string(&out).unwrap());
    // The textual pass cannot measure activations.
    let o = kestrel(&[
        "run",
        &model,
        "--pipeline",
        "prune(ratio=0.5,importance=activation),canonicalize",
        "--inputs",
        &digits("digits_cnn.io.npz"),
    ]);
    assert_user_error(&o, &["needs calibration data"]);
}

/// The QDQ ONNX that `kestrel quantize` writes gives the same answers in onnxruntime as in
/// Kestrel at O2 (integer kernels), for every method: the same predictions on digits_cnn's 360
/// bundle images and logits within one step of the output's quantization (issue 13, item 7).
/// onnxruntime runs through `tests/ort_run.py`; without python3, onnx, onnxruntime and numpy
/// the test fails under CI (`.ci/run` installs them) and is skipped elsewhere.
#[test]
fn quantized_onnx_gives_kestrels_answers_in_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let calib = digits_calibration(dir.path(), 32, |_| {});
    let bundle = digits("digits_cnn.io.npz");
    let images: Vec<(String, kestrel_ir::Tensor)> =
        kestrel::tensor_io::read_npz(Path::new(&bundle))
            .unwrap()
            .into_iter()
            .filter(|(n, _)| n == "input")
            .collect();
    let ort_inputs = dir.path().join("images.npz");
    kestrel::tensor_io::write_npz(&ort_inputs, &images).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    for method in ["minmax", "percentile", "entropy", "mse"] {
        let q = dir.path().join(format!("{method}.onnx"));
        let o = kestrel(&[
            "quantize",
            &digits("digits_cnn.onnx"),
            "--calib",
            &s(&calib),
            "--method",
            method,
            "-o",
            &s(&q),
        ]);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        let kestrel_out = dir.path().join(format!("{method}.kestrel.npz"));
        let o = kestrel(&[
            "run",
            &s(&q),
            "--pipeline",
            "O2",
            "--inputs",
            &bundle,
            "--outputs",
            &s(&kestrel_out),
        ]);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        let ort_out = dir.path().join(format!("{method}.ort.npz"));
        if !ort::run(&q, &ort_inputs, &ort_out) {
            return;
        }
        // The output's step: the scale of the DequantizeLinear that produces it.
        let g = kestrel::driver::load(&q).unwrap().graph;
        let producer = g.node(g.producer(g.outputs[0].value).unwrap());
        assert!(
            matches!(producer.op, kestrel_ir::Op::DequantizeLinear { .. }),
            "{method}: the logits come from {:?}",
            producer.op
        );
        let step = g.const_data(producer.inputs[1]).unwrap().to_f32_vec()[0];
        let logits = |p: &Path| {
            let t = kestrel::tensor_io::read_npz(p).unwrap().remove(0).1;
            assert_eq!(t.dims(), &[360, 10], "{method}: {}", p.display());
            t.to_f32_vec()
        };
        let (ours, theirs) = (logits(&kestrel_out), logits(&ort_out));
        let argmax = |row: &[f32]| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap()
        };
        for (image, (a, b)) in ours.chunks(10).zip(theirs.chunks(10)).enumerate() {
            assert_eq!(
                argmax(a),
                argmax(b),
                "{method}: image {image}: {a:?} against {b:?}"
            );
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= step * 1.001,
                    "{method}: image {image}: {x} against onnxruntime's {y} (step {step})"
                );
            }
        }
    }
}

#[test]
fn quantize_refuses_bad_calibration_data_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.kir");
    let quantize = |calib: &Path, extra: &[&str], out: &Path| {
        let mut args = vec![
            "quantize",
            &*Box::leak(digits("digits_cnn.onnx").into_boxed_str()),
            "--calib",
            &*Box::leak(calib.to_str().unwrap().to_string().into_boxed_str()),
            "-o",
            &*Box::leak(out.to_str().unwrap().to_string().into_boxed_str()),
        ];
        args.extend_from_slice(extra);
        kestrel(&args)
    };
    let nan = digits_calibration(dir.path(), 2, |v| v[5] = f32::NAN);
    assert_user_error(
        &quantize(&nan, &[], &out),
        &["NaN or infinite", "calib.npy"],
    );
    assert!(!out.exists());
    let wrong = dir.path().join("wrong.npy");
    kestrel::tensor_io::write_npy(
        &wrong,
        &kestrel_ir::Tensor::from_vec(vec![2, 3], vec![0f32; 6]),
    )
    .unwrap();
    assert_user_error(
        &quantize(&wrong, &[], &out),
        &["wrong.npy", "samples of shape [3]"],
    );
    let ints = dir.path().join("ints.npy");
    kestrel::tensor_io::write_npy(&ints, &kestrel_ir::Tensor::from_vec(vec![2], vec![1i32, 2]))
        .unwrap();
    assert_user_error(
        &quantize(&ints, &[], &out),
        &["ints.npy", "the model takes"],
    );
    let good = digits_calibration(dir.path(), 2, |_| {});
    assert_user_error(
        &quantize(&good, &["--exclude", "no_such_node"], &out),
        &["no_such_node", "quantizable nodes:"],
    );
    assert_user_error(&quantize(&good, &["--samples", "0"], &out), &["--samples"]);
    assert_user_error(&quantize(&good, &["--method", "median"], &out), &["median"]);
    assert!(!out.exists());
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_user_error(&quantize(&empty, &[], &out), &["no .npy or .npz"]);
    assert!(!out.exists());
    // A model with no conv, gemm or matmul has nothing to quantize.
    let plain = dir.path().join("relu.kir");
    std::fs::write(
        &plain,
        "graph @t(%x: f32[1,4]) -> (y: f32[1,4]) {\n  %0 = relu(%x) : f32[1,4]\n  return %0\n}\n",
    )
    .unwrap();
    let data = dir.path().join("x.npy");
    kestrel::tensor_io::write_npy(
        &data,
        &kestrel_ir::Tensor::from_vec(vec![3, 4], vec![0.5f32; 12]),
    )
    .unwrap();
    let o = kestrel(&[
        "quantize",
        plain.to_str().unwrap(),
        "--calib",
        data.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_user_error(&o, &["nothing to quantize"]);
    assert!(!out.exists());
}

#[test]
fn passes_lists_passes_and_pipelines() {
    let o = kestrel(&["passes"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for name in [
        "fold-constants",
        "dce",
        "cse",
        "remove-identity",
        "fold-batchnorm",
        "cancel-transpose-reshape",
        "O0",
        "O1",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(name)),
            "{name} missing: {text}"
        );
    }
}

const DYNAMO: &str = "digits_cnn.dynamo_bn.onnx";

#[test]
fn dump_after_o1_has_no_shape_or_batchnorm() {
    let o = kestrel(&[
        "dump",
        &digits(DYNAMO),
        "--pipeline",
        "O1",
        "--input-shape",
        "input=1x1x8x8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("= shape("), "{text}");
    assert!(!text.contains("batch_norm("), "{text}");
    assert!(text.contains("-> (logits: f32[1,10])"), "{text}");
    let imported =
        String::from_utf8_lossy(&kestrel(&["dump", &digits(DYNAMO)]).stdout).into_owned();
    assert!(imported.contains("batch_norm("));
    // --disable-pass keeps the batch norms; --pass-limit stops early.
    let o = kestrel(&[
        "dump",
        &digits(DYNAMO),
        "--pipeline",
        "O1",
        "--disable-pass",
        "fold-batchnorm",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("batch_norm("));
    let o = kestrel(&[
        "dump",
        &digits(DYNAMO),
        "--pipeline",
        "O1",
        "--pass-limit",
        "0",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), imported);
    assert!(stderr(&o).contains("--pass-limit"), "{}", stderr(&o));
}

#[test]
fn dump_after_all_writes_numbered_files_of_changed_passes() {
    let dir = tempfile::tempdir().unwrap();
    let dumps = dir.path().join("dumps");
    let o = kestrel(&[
        "dump",
        &digits(DYNAMO),
        "--pipeline",
        "O1",
        "--after",
        "all",
        "--dump-dir",
        dumps.to_str().unwrap(),
        "--input-shape",
        "input=1x1x8x8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut names: Vec<String> = std::fs::read_dir(&dumps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names[0], "000-input.kir");
    assert!(
        names.iter().any(|n| n.ends_with("-fold-batchnorm.kir")),
        "{names:?}"
    );
    // Every dump parses back.
    for n in &names {
        let back = kestrel(&["dump", dumps.join(n).to_str().unwrap()]);
        assert!(back.status.success(), "{n}: {}", stderr(&back));
    }
    let after = kestrel(&[
        "dump",
        &digits(DYNAMO),
        "--pipeline",
        "O1",
        "--after",
        "fold-batchnorm",
    ]);
    let text = String::from_utf8_lossy(&after.stdout);
    assert!(text.starts_with("// ---- "), "{text}");
    assert!(text.contains("-fold-batchnorm.kir"));
}

#[test]
fn dump_format_dot_is_graphviz() {
    let o = kestrel(&["dump", &digits("digits_cnn.onnx"), "--format", "dot"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("digraph "), "{text}");
    assert_eq!(text.matches("shape=box").count(), 7, "{text}");
    assert!(text.trim_end().ends_with('}'));
}

#[test]
fn run_with_o1_matches_o0() {
    let run = |pipeline: &str| {
        let o = kestrel(&[
            "run",
            &digits(DYNAMO),
            "--inputs",
            &digits("digits_cnn.dynamo_bn.io.npz"),
            "--pipeline",
            pipeline,
            "--print",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (o0, o1) = (run("O0"), run("O1"));
    assert!(o0.starts_with("logits: f32[360, 10]"), "{o0}");
    // Folding BatchNorm into the conv reassociates: equal to printed precision or nearly.
    let nums = |s: &str| -> Vec<f64> {
        s.split(['[', ']', ','])
            .filter_map(|t| t.trim().parse::<f64>().ok())
            .collect()
    };
    for (a, b) in nums(&o0).iter().zip(nums(&o1)) {
        assert!((a - b).abs() < 1e-4, "{o0} vs {o1}");
    }
}

/// Every path to native code folds for code generation whatever the pipeline: the QDQ model under
/// O0 (dequantized weights still computed from int8 constants, shape arithmetic unfolded) runs on
/// the JIT and gives the O2 run's outputs.
#[test]
fn the_jit_runs_an_unfolded_pipeline() {
    let run = |pipeline: &str| {
        let o = kestrel(&[
            "run",
            &digits("digits_cnn.int8.onnx"),
            "--inputs",
            &digits("digits_cnn.int8.io.npz"),
            "--pipeline",
            pipeline,
            "--print",
        ]);
        assert!(o.status.success(), "{pipeline}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let o0 = run("O0");
    assert!(o0.starts_with("logits: f32["), "{o0}");
    assert_eq!(o0, run("O2"));
}

#[test]
fn bad_pipelines_are_user_errors() {
    let o = kestrel(&[
        "dump",
        &digits(DYNAMO),
        "--pipeline",
        "canonicalize,frobnicate",
    ]);
    assert_user_error(&o, &["frobnicate"]);
    let o = kestrel(&[
        "dump",
        &digits(DYNAMO),
        "--pipeline",
        "O1",
        "--disable-pass",
        "nope",
    ]);
    assert_user_error(&o, &["nope"]);
    let o = kestrel(&["dump", &digits(DYNAMO), "--after", "all"]);
    assert_user_error(&o, &["--after needs --pipeline"]);
}

#[test]
fn jit_is_the_default_backend_and_agrees_with_the_interpreter() {
    let (model, io) = (digits("digits_cnn.onnx"), digits("digits_cnn.io.npz"));
    let run = |backend: &[&str]| {
        let mut args = vec!["run", model.as_str(), "--inputs", io.as_str(), "--print"];
        args.extend_from_slice(backend);
        let o = kestrel(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let nums = |s: &str| -> Vec<f64> {
        s.split(['[', ']', ','])
            .filter_map(|t| t.trim().parse::<f64>().ok())
            .collect()
    };
    let (default, jit, interp) = (
        run(&[]),
        run(&["--backend", "jit"]),
        run(&["--backend", "interp"]),
    );
    assert_eq!(default, jit);
    assert!(jit.starts_with("logits: f32[360, 10]"), "{jit}");
    for (a, b) in nums(&jit).iter().zip(nums(&interp)) {
        assert!((a - b).abs() < 1e-4, "{jit} vs {interp}");
    }
}

#[test]
fn bench_reports_latency_compile_time_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let o = kestrel(&[
        "bench",
        &digits("digits_cnn.b1.onnx"),
        "--iters",
        "5",
        "--warmup",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("backend jit"), "{text}");
    assert!(text.contains("latency: median "), "{text}");
    assert!(text.contains("memory: arena "), "{text}");
    let j = std::fs::read_to_string(&json).unwrap();
    assert!(
        j.contains("\"median_ms\": ") && j.contains("\"backend\": \"jit\""),
        "{j}"
    );
}

/// `--layers` times each kernel node alone; the digits CNN has two convolutions and a Gemm, whose
/// multiply-adds are known exactly.
#[test]
fn bench_layers_times_every_kernel_node() {
    let o = kestrel(&[
        "bench",
        &digits("digits_cnn.b1.onnx"),
        "--iters",
        "3",
        "--warmup",
        "1",
        "--layers",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("node ")).collect();
    let convs = rows.iter().filter(|l| l.contains("(conv)")).count();
    assert_eq!(convs, 2, "{text}");
    // conv1: 16 outputs channels × 8×8 pixels × (1·3·3) = 9,216 MACs = 0.01 MMACs.
    assert!(
        rows.iter()
            .any(|l| l.contains("(conv)") && l.contains(" 0.01 ")),
        "{text}"
    );
    assert!(
        text.contains("layers: ") && text.contains("FMA peak"),
        "{text}"
    );
    let bad = kestrel(&[
        "bench",
        &digits("digits_cnn.b1.onnx"),
        "--backend",
        "interp",
        "--layers",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("--layers needs the JIT"),
        "{}",
        stderr(&bad)
    );
}

/// `--layers` on a QDQ int8 model: weights dequantized at compile time stay constants of the
/// one-node graphs (a transposed Gemm weight was a run-time input the JIT refuses) and are not
/// timed as layers of their own.
#[test]
fn bench_layers_on_a_qdq_model_keeps_folded_weights_constant() {
    let o = kestrel(&[
        "bench",
        &digits("digits_cnn.int8.onnx"),
        "--pipeline",
        "O1",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--layers",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("node ")).collect();
    assert_eq!(
        rows.iter().filter(|l| l.contains("(conv)")).count(),
        2,
        "{text}"
    );
    assert_eq!(
        rows.iter().filter(|l| l.contains("(gemm)")).count(),
        1,
        "{text}"
    );
    // One QuantizeLinear/DequantizeLinear pair per activation (six), none for the weights.
    let by_op = text
        .lines()
        .find(|l| l.starts_with("by op: "))
        .unwrap_or("");
    assert!(
        by_op.contains("quantize_linear") && by_op.contains(" ms (6)"),
        "{text}"
    );
    let dq = by_op
        .split(", ")
        .find(|p| p.contains("dequantize_linear"))
        .unwrap_or("");
    assert!(dq.ends_with("(6)"), "{by_op}");
    // At O2 the same model runs on integer kernels: two quantized convs and a quantized gemm
    // between one quantize of the input and one dequantize of the logits.
    let o = kestrel(&[
        "bench",
        &digits("digits_cnn.int8.onnx"),
        "--iters",
        "3",
        "--warmup",
        "1",
        "--layers",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let by_op = text
        .lines()
        .find(|l| l.starts_with("by op: "))
        .unwrap_or("");
    for part in ["conv ", "gemm ", "quantize_linear ", "dequantize_linear "] {
        let want = if part == "conv " { "(2)" } else { "(1)" };
        let found = by_op
            .split(", ")
            .map(|p| p.trim_start_matches("by op: "))
            .find(|p| p.starts_with(part))
            .unwrap_or("");
        assert!(found.ends_with(want), "{part}{want}: {by_op}");
    }
}

#[test]
fn compare_prints_one_row_per_pipeline_with_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("cmp.json");
    let o = kestrel(&[
        "compare",
        &digits("digits_cnn.onnx"),
        "--pipeline",
        "O0",
        "--pipeline",
        "O1",
        "--pipeline",
        "O2",
        "--inputs",
        &digits("digits_cnn.io.npz"),
        "--labels",
        &digits("digits_test_y.npy"),
        "--iters",
        "2",
        "--warmup",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("against the reference outputs"), "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("| O")).collect();
    assert_eq!(rows.len(), 3, "{out}");
    for (row, p) in rows.iter().zip(["O0", "O1", "O2"]) {
        assert!(row.starts_with(&format!("| {p} |")), "{row}");
        // The digits CNN classifies its 360 test digits perfectly.
        assert!(row.ends_with("| 100.00 % |"), "{row}");
    }
    // O2 fuses the two ReLUs into the convs: fewer nodes than O1.
    let nodes = |r: &str| {
        r.split('|')
            .nth(2)
            .unwrap()
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    assert!(nodes(rows[2]) < nodes(rows[1]), "{out}");
    let j = std::fs::read_to_string(&json).unwrap();
    assert_eq!(j.matches("\"pipeline\"").count(), 3, "{j}");
    assert!(j.contains("\"accuracy\": 1"), "{j}");
}

#[test]
fn compare_without_inputs_uses_the_interpreter_as_reference() {
    let o = kestrel(&[
        "compare",
        &digits("digits_cnn.b1.onnx"),
        "--pipeline",
        "O1",
        "--pipeline",
        "canonicalize,fuse",
        "--iters",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("the O0 graph on the reference interpreter"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("| ")).count(),
        3,
        "{out}"
    );
}

#[test]
fn dump_writes_onnx_and_never_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    std::fs::copy(digits("digits_cnn.onnx"), &model).unwrap();
    let original = std::fs::read(&model).unwrap();
    let m = model.to_str().unwrap();
    let out = dir.path().join("out.onnx");
    let o = kestrel(&["dump", m, "--pipeline", "O2", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The export runs and gives the model's outputs.
    let inputs = digits("digits_cnn.io.npz");
    let outs = dir.path().join("y.npz");
    let o = kestrel(&[
        "run",
        out.to_str().unwrap(),
        "--backend",
        "interp",
        "--inputs",
        &inputs,
        "--outputs",
        outs.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = kestrel::tensor_io::read_npz(&outs).unwrap();
    let want = kestrel::tensor_io::read_npz(Path::new(&inputs)).unwrap();
    let want = &want.iter().find(|(n, _)| n == "logits").unwrap().1;
    let got = &got.iter().find(|(n, _)| n == "logits").unwrap().1;
    let diff = kestrel_ir::testing::tensor_max_abs_diff(got, want);
    assert!(
        diff < 1e-4,
        "exported model differs from the reference by {diff}"
    );

    let o = kestrel(&["dump", m, "-o", out.to_str().unwrap()]);
    assert_user_error(&o, &["exists", "--force"]);
    let o = kestrel(&["dump", m, "-o", m, "--force"]);
    assert_user_error(&o, &["refusing to overwrite the input model"]);
    #[cfg(unix)]
    {
        let link = dir.path().join("link.onnx");
        std::os::unix::fs::symlink(&model, &link).unwrap();
        let o = kestrel(&["dump", link.to_str().unwrap(), "-o", m, "--force"]);
        assert_user_error(&o, &["refusing to overwrite the input model"]);
    }
    assert_eq!(
        std::fs::read(&model).unwrap(),
        original,
        "the input model changed"
    );
    let o = kestrel(&[
        "dump",
        m,
        "--pipeline",
        "O1",
        "--after",
        "all",
        "-o",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert_user_error(&o, &["--after"]);
}

/// `quantize --weight-bits 4` puts every weight on the 4-bit grid (stored as int8, |q| ≤ 7, the
/// largest magnitude of each channel at 7); out-of-range widths are refused, nothing written.
#[test]
fn quantize_weight_bits_puts_weights_on_a_narrower_grid() {
    let dir = tempfile::tempdir().unwrap();
    let calib = digits_calibration(dir.path(), 32, |_| {});
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let q = dir.path().join("q4.onnx");
    let o = kestrel(&[
        "quantize",
        &digits("digits_cnn.onnx"),
        "--calib",
        &s(&calib),
        "--weight-bits",
        "4",
        "-o",
        &s(&q),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = kestrel::driver::load(&q).unwrap().graph;
    let mut weights = 0;
    for v in &g.values {
        if let kestrel_ir::ValueDef::Const(c) = &v.def {
            if let Some(t) = c
                .data
                .as_ref()
                .filter(|t| t.dtype() == kestrel_ir::DType::I8 && c.name.ends_with("_quantized"))
            {
                let q = t.to_i64_vec();
                assert!(q.iter().all(|x| (-7..=7).contains(x)), "{}: {q:?}", c.name);
                assert!(q.iter().any(|&x| x.abs() == 7), "{}", c.name);
                weights += 1;
            }
        }
    }
    assert_eq!(weights, 3, "conv1, conv2 and fc weights");
    let bad = dir.path().join("q9.onnx");
    let o = kestrel(&[
        "quantize",
        &digits("digits_cnn.onnx"),
        "--calib",
        &s(&calib),
        "--weight-bits",
        "9",
        "-o",
        &s(&bad),
    ]);
    assert_user_error(&o, &["--weight-bits 9: expected 2 to 8"]);
    assert!(!bad.exists());
}

/// A reader that stops early (`kestrel passes | head -1`) closes stdout: the commands finish
/// without a panic, and a command that also writes a file still writes it.
#[test]
fn a_closed_stdout_is_not_a_crash() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npz");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cases: Vec<Vec<String>> = vec![
        vec!["passes".into()],
        vec![
            "run".into(),
            root.join("examples/digits.onnx").display().to_string(),
            "--input".into(),
            root.join("examples/digit.npy").display().to_string(),
            "--print".into(),
            "--outputs".into(),
            out.display().to_string(),
        ],
    ];
    for args in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kestrel"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(
        out.exists(),
        "run wrote its outputs despite the closed stdout"
    );
}

/// Runs `kestrel` with `env` set and returns its output and process id.
fn kestrel_with_env(args: &[&str], env: &[(&str, &str)]) -> (Output, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kestrel");
    let pid = child.id();
    (child.wait_with_output().expect("wait for kestrel"), pid)
}

/// `KESTREL_PERF_MAP=1` writes perf's map of the JIT code (docs/JIT.md "Profiling generated
/// code"): one `START SIZE label` line per function, disjoint ranges, every node function and the
/// entry named; without the variable no map is written.
#[test]
fn perf_map_names_the_generated_functions() {
    let model = digits("digits_cnn.onnx");
    let args = ["bench", &model, "--iters", "1", "--warmup", "0"];
    let (o, pid) = kestrel_with_env(&args, &[("KESTREL_PERF_MAP", "1")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let path = PathBuf::from(format!("/tmp/perf-{pid}.map"));
    let text = std::fs::read_to_string(&path).expect("the perf map");
    std::fs::remove_file(&path).unwrap();
    let mut ranges = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        let start = u64::from_str_radix(parts.next().unwrap(), 16).expect("hex start");
        let size = u64::from_str_radix(parts.next().unwrap(), 16).expect("hex size");
        let label = parts.next().expect("a label");
        assert!(size > 0 && label.starts_with("kestrel_"), "{line}");
        ranges.push((start, start + size));
    }
    ranges.sort();
    assert!(
        ranges.windows(2).all(|w| w[0].1 <= w[1].0),
        "overlap: {text}"
    );
    assert!(text.contains("kestrel_entry"), "{text}");
    assert!(
        text.contains("(conv)") && text.contains("kestrel_n0 node 0"),
        "{text}"
    );

    let (o, pid) = kestrel_with_env(&args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!Path::new(&format!("/tmp/perf-{pid}.map")).exists());
}

/// `compile` never writes over a file it reads: `-o` the model itself, `-o` a symlink to it, a
/// header (`OUT.h`) that is a hard link to it, `-o` an `--input` file. Each is exit 1 with the
/// reason, the model keeps its bytes, and nothing else is written.
#[cfg(unix)]
#[test]
fn compile_refuses_to_overwrite_its_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    std::fs::copy(digits("digits_cnn.onnx"), &model).unwrap();
    let original = std::fs::read(&model).unwrap();
    let m = model.to_str().unwrap();
    let link = dir.path().join("link.so");
    std::os::unix::fs::symlink(&model, &link).unwrap();
    let hard_header = dir.path().join("net.h");
    std::fs::hard_link(&model, &hard_header).unwrap();
    let input = bundle_input(dir.path(), "digits_cnn.io.npz");
    let input_so = dir.path().join("input.so");
    std::fs::hard_link(&input, &input_so).unwrap();
    let net = dir.path().join("net.so");
    for out in [model.clone(), link, net] {
        let o = kestrel(&["compile", m, "-o", out.to_str().unwrap()]);
        assert_user_error(&o, &["refusing to overwrite the input", m]);
    }
    let i = input.to_str().unwrap();
    let o = kestrel(&["compile", m, "--input", i, "-o", input_so.to_str().unwrap()]);
    assert_user_error(&o, &["refusing to overwrite the input", i]);
    assert_eq!(
        std::fs::read(&model).unwrap(),
        original,
        "the model changed"
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["input.npy", "input.so", "link.so", "m.onnx", "net.h"]
    );
}

/// `run --outputs` and `--output-dir` never write over the model or an input array.
#[test]
fn run_refuses_to_overwrite_its_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("io.npz");
    std::fs::copy(digits("digits_cnn.io.npz"), &bundle).unwrap();
    let original = std::fs::read(&bundle).unwrap();
    let b = bundle.to_str().unwrap();
    let model = digits("digits_cnn.onnx");
    let o = kestrel(&["run", &model, "--inputs", b, "--outputs", b]);
    assert_user_error(&o, &["refusing to overwrite the input", b]);
    assert_eq!(std::fs::read(&bundle).unwrap(), original);
    // An output named like the input file in the output folder: the graph's output is `logits`.
    let logits = dir.path().join("logits.npy");
    let input = bundle_input(dir.path(), "digits_cnn.io.npz");
    std::fs::copy(&input, &logits).unwrap();
    let before = std::fs::read(&logits).unwrap();
    let l = logits.to_str().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = kestrel(&["run", &model, "--input", l, "--output-dir", d]);
    assert_user_error(&o, &["refusing to overwrite the input", l]);
    assert_eq!(std::fs::read(&logits).unwrap(), before);
}
