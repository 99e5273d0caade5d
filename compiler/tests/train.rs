//! `kestrel finetune` and `kestrel distill` as users call them, on the committed digits
//! fixtures: the untrained `digits_student.onnx` learns, from labels or from `digits_cnn.onnx`
//! as teacher, on the 360 images of `digits_cnn.io.npz` (280 to train on, 80 held out); runs
//! are reproducible; the written ONNX runs in onnxruntime; bad input is refused with nothing
//! written. The results on the shared data sets are in `tests/tests/distillation.rs`.

mod ort;

use kestrel_ir::Tensor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kestrel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(args)
        .output()
        .expect("spawn kestrel")
}

fn digits(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/digits")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn assert_user_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1, stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

const TRAIN: usize = 280;

/// Files of the split: `train_x.npy`, `train_y.npy`, `val_x.npy`, `val_y.npy`.
struct Split {
    dir: tempfile::TempDir,
}

impl Split {
    fn new() -> Split {
        let dir = tempfile::tempdir().unwrap();
        let arrays = kestrel::tensor_io::read_npz(Path::new(&digits("digits_cnn.io.npz"))).unwrap();
        let x = &arrays.iter().find(|(n, _)| n == "input").unwrap().1;
        let y = kestrel::tensor_io::read_npy(Path::new(&digits("digits_test_y.npy"))).unwrap();
        let (xs, ys) = (x.to_f32_vec(), y.to_i64_vec());
        let n = ys.len();
        let write = |name: &str, t: Tensor| {
            kestrel::tensor_io::write_npy(&dir.path().join(name), &t).unwrap()
        };
        write(
            "train_x.npy",
            Tensor::from_vec(vec![TRAIN, 1, 8, 8], xs[..TRAIN * 64].to_vec()),
        );
        write(
            "val_x.npy",
            Tensor::from_vec(vec![n - TRAIN, 1, 8, 8], xs[TRAIN * 64..].to_vec()),
        );
        write(
            "train_y.npy",
            Tensor::from_vec(vec![TRAIN], ys[..TRAIN].to_vec()),
        );
        write(
            "val_y.npy",
            Tensor::from_vec(vec![n - TRAIN], ys[TRAIN..].to_vec()),
        );
        Split { dir }
    }

    fn path(&self, name: &str) -> String {
        s(&self.dir.path().join(name))
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The data flags of a run on the split, held-out accuracy included.
    fn data_flags(&self) -> Vec<String> {
        [
            "--data",
            &self.path("train_x.npy"),
            "--labels",
            &self.path("train_y.npy"),
            "--val-data",
            &self.path("val_x.npy"),
            "--val-labels",
            &self.path("val_y.npy"),
        ]
        .map(String::from)
        .to_vec()
    }
}

fn run(args: Vec<String>) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    kestrel(&refs)
}

/// The held-out accuracy (percent) of the summary line `... val 97.5%`.
fn val_accuracy(o: &Output) -> f64 {
    let out = stdout(o);
    let at = out
        .rfind(" val ")
        .unwrap_or_else(|| panic!("no val accuracy in {out}"));
    out[at + 5..].split('%').next().unwrap().parse().unwrap()
}

/// The outputs (`.npz`) of `model` on the split's held-out images from Kestrel's interpreter and
/// from onnxruntime, or `None` when onnxruntime is missing outside CI (`ort::run`).
fn interp_and_onnxruntime(split: &Split, model: &Path) -> Option<(PathBuf, PathBuf)> {
    let images = split.out("val.npz");
    let val_x = kestrel::tensor_io::read_npy(Path::new(&split.path("val_x.npy"))).unwrap();
    kestrel::tensor_io::write_npz(&images, &[("input".to_string(), val_x)]).unwrap();
    let ours = split.out("ours.npz");
    let o = kestrel(&[
        "run",
        &s(model),
        "--backend",
        "interp",
        "--inputs",
        &s(&images),
        "--outputs",
        &s(&ours),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let theirs = split.out("theirs.npz");
    ort::run(model, &images, &theirs).then_some((ours, theirs))
}

fn finetune(split: &Split, model: &str, extra: &[&str], out: &Path) -> Output {
    let mut args = vec!["finetune".to_string(), digits(model)];
    args.extend(split.data_flags());
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend(["-o".to_string(), s(out)]);
    run(args)
}

#[test]
fn finetune_teaches_the_untrained_student_and_writes_a_model_with_its_batch_axis() {
    let split = Split::new();
    let out = split.out("ft.onnx");
    let o = finetune(&split, "digits_student.onnx", &["--epochs", "60"], &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let acc = val_accuracy(&o);
    // Untrained it scores about chance (10 %); 60 epochs on 280 images reach > 80 %.
    assert!(acc > 80.0, "held-out accuracy {acc}%: {}", stdout(&o));
    assert!(stdout(&o).contains("trained 60 epochs"), "{}", stdout(&o));
    // The written model keeps the input's symbolic batch and every name, only weights change.
    let before = kestrel::driver::load(Path::new(&digits("digits_student.onnx")))
        .unwrap()
        .graph;
    let after = kestrel::driver::load(&out).unwrap().graph;
    assert_eq!(
        after.ty(after.inputs[0]).to_string(),
        before.ty(before.inputs[0]).to_string()
    );
    assert_eq!(after.nodes.len(), before.nodes.len());
    let consts = |g: &kestrel_ir::Graph| -> Vec<(String, Vec<f32>)> {
        g.values
            .iter()
            .filter_map(|v| match &v.def {
                kestrel_ir::ValueDef::Const(c) => Some((
                    c.name.clone(),
                    c.data.as_ref().map(|t| t.to_f32_vec()).unwrap_or_default(),
                )),
                _ => None,
            })
            .collect()
    };
    let (b, a) = (consts(&before), consts(&after));
    assert_eq!(
        b.iter().map(|c| &c.0).collect::<Vec<_>>(),
        a.iter().map(|c| &c.0).collect::<Vec<_>>()
    );
    assert!(
        b.iter().zip(&a).all(|(x, y)| x.1 != y.1),
        "every weight trained"
    );
}

#[test]
fn distill_learns_from_the_teacher_and_onnxruntime_agrees() {
    let split = Split::new();
    let out = split.out("distilled.onnx");
    let mut args = vec![
        "distill".to_string(),
        "--teacher".into(),
        digits("digits_cnn.onnx"),
        "--student".into(),
        digits("digits_student.onnx"),
        "--epochs".into(),
        "60".into(),
    ];
    args.extend(split.data_flags());
    args.extend(["-o".to_string(), s(&out)]);
    let o = run(args);
    assert!(o.status.success(), "{}", stderr(&o));
    let acc = val_accuracy(&o);
    assert!(acc > 80.0, "held-out accuracy {acc}%: {}", stdout(&o));

    // onnxruntime computes what Kestrel's interpreter computes on the written model.
    let Some((ours, theirs)) = interp_and_onnxruntime(&split, &out) else {
        return;
    };
    let logits = |p: &Path| {
        kestrel::tensor_io::read_npz(p)
            .unwrap()
            .remove(0)
            .1
            .to_f32_vec()
    };
    let (a, b) = (logits(&ours), logits(&theirs));
    assert_eq!(a.len(), 80 * 10);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "logit {i}: {x} in Kestrel, {y} in onnxruntime"
        );
    }
}

#[test]
fn one_seed_gives_the_same_weights_at_any_thread_count() {
    let split = Split::new();
    // digits_cnn (16/32 channels) has nodes large enough for the JIT to split across threads.
    let at = |threads: &str, seed: &str, name: &str| {
        let out = split.out(name);
        let o = finetune(
            &split,
            "digits_cnn.onnx",
            &[
                "--epochs",
                "2",
                "--threads",
                threads,
                "--seed",
                seed,
                "--quiet",
            ],
            &out,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(out).unwrap()
    };
    let one = at("1", "5", "t1.onnx");
    assert_eq!(one, at("2", "5", "t2.onnx"), "threads 1 and 2 differ");
    assert_eq!(one, at("1", "5", "again.onnx"), "two runs differ");
    assert_ne!(one, at("1", "6", "seed6.onnx"), "the seed changes nothing");
}

#[test]
fn bad_training_input_is_refused_and_nothing_is_written() {
    let split = Split::new();
    let out = split.out("never.onnx");
    let dir = split.dir.path();
    let labels = |name: &str, values: Vec<i64>| {
        let p = dir.join(name);
        let n = values.len();
        kestrel::tensor_io::write_npy(&p, &Tensor::from_vec(vec![n], values)).unwrap();
        s(&p)
    };
    let short = labels("short.npy", vec![1; TRAIN - 1]);
    let out_of_range = labels("range.npy", (0..TRAIN as i64).map(|i| i % 11).collect());
    let train_x = split.path("train_x.npy");
    let student = digits("digits_student.onnx");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec![
                "finetune".into(),
                student.clone(),
                "--data".into(),
                train_x.clone(),
                "--labels".into(),
                short,
            ],
            vec!["279 labels for the 280 samples"],
        ),
        (
            vec![
                "finetune".into(),
                student.clone(),
                "--data".into(),
                train_x.clone(),
                "--labels".into(),
                out_of_range,
            ],
            vec!["label 10 of sample 10 is outside the model's 10 classes"],
        ),
        (
            vec![
                "finetune".into(),
                student.clone(),
                "--data".into(),
                train_x.clone(),
            ],
            vec!["finetune trains on labels"],
        ),
        (
            vec![
                "distill".into(),
                "--teacher".into(),
                digits("digits_cnn.onnx"),
                "--student".into(),
                student.clone(),
                "--data".into(),
                train_x.clone(),
                "--alpha".into(),
                "0.5".into(),
            ],
            vec!["--alpha 0.5 weighs a cross-entropy term on labels"],
        ),
        (
            vec![
                "finetune".into(),
                student.clone(),
                "--data".into(),
                train_x.clone(),
                "--labels".into(),
                split.path("train_y.npy"),
                "--optimizer".into(),
                "adam".into(),
            ],
            vec!["--optimizer \"adam\""],
        ),
        (
            vec![
                "finetune".into(),
                student.clone(),
                "--data".into(),
                split.path("train_y.npy"),
                "--labels".into(),
                split.path("train_y.npy"),
            ],
            vec!["train_y.npy"],
        ),
    ];
    for (mut args, needles) in cases {
        args.extend(["-o".to_string(), s(&out)]);
        let o = run(args.clone());
        assert_user_error(&o, &needles);
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    // The output may not be one of the inputs.
    let o = kestrel(&[
        "finetune",
        &train_x,
        "--data",
        &train_x,
        "--labels",
        &split.path("train_y.npy"),
        "-o",
        &train_x,
    ]);
    assert_user_error(&o, &["refusing to overwrite the input"]);
}

#[test]
fn a_student_with_other_classes_than_the_teacher_is_refused() {
    let split = Split::new();
    // A teacher with 5 classes: digits_cnn's logits sliced to their first five.
    let teacher = split.out("five.kir");
    let g = kestrel::driver::load(Path::new(&digits("digits_cnn.onnx")))
        .unwrap()
        .graph;
    let mut g = g;
    let logits = g.outputs[0].value;
    let c = |g: &mut kestrel_ir::Graph, name: &str, v: i64| {
        g.add_const(name, Tensor::from_vec(vec![1], vec![v]))
    };
    let (start, end, axis) = (
        c(&mut g, "start", 0),
        c(&mut g, "end", 5),
        c(&mut g, "axis", 1),
    );
    let five = g
        .add(kestrel_ir::Op::Slice, &[logits, start, end, axis], "five")
        .unwrap();
    g.outputs[0].value = five;
    kestrel::dump::write_kir(&g, &teacher, true).unwrap();
    let out = split.out("never.onnx");
    let o = kestrel(&[
        "distill",
        "--teacher",
        &s(&teacher),
        "--student",
        &digits("digits_student.onnx"),
        "--data",
        &split.path("train_x.npy"),
        "--labels",
        &split.path("train_y.npy"),
        "-o",
        &s(&out),
    ]);
    assert_user_error(&o, &["has 10 classes but the teacher", "has 5"]);
    assert!(!out.exists());
}

#[test]
fn a_loss_that_is_not_finite_stops_training() {
    let split = Split::new();
    let out = split.out("nan.onnx");
    let lr = [
        "--lr",
        "1e30",
        "--optimizer",
        "sgd",
        "--epochs",
        "3",
        "--quiet",
    ];
    let o = finetune(&split, "digits_student.onnx", &lr, &out);
    assert_user_error(&o, &["the loss became", "at step", "nothing was written"]);
    assert!(!out.exists());
    // Asked to, it keeps the weights of the last finite step.
    let mut keep = lr.to_vec();
    keep.push("--keep-last-good");
    let o = finetune(&split, "digits_student.onnx", &keep, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("stopped early"), "{}", stdout(&o));
    let g = kestrel::driver::load(&out).unwrap().graph;
    for v in &g.values {
        if let kestrel_ir::ValueDef::Const(c) = &v.def {
            if let Some(t) = &c.data {
                if t.dtype() == kestrel_ir::DType::F32 {
                    assert!(
                        t.to_f32_vec().iter().all(|x| x.is_finite()),
                        "{} holds a non-finite weight",
                        c.name
                    );
                }
            }
        }
    }
}

/// `finetune --qat --weight-bits 3` of the trained digits_cnn: the summary reports post-training
/// quantization's held-out accuracy (74 of 80 images at 3 bits) and a higher QAT accuracy (76 of
/// 80 when measured); the written model is int8 QDQ with weights on the 3-bit grid, and onnxruntime classifies the held-out images as
/// Kestrel does. `--weight-bits` without `--qat` is refused with nothing written.
#[test]
fn finetune_qat_writes_int8_qdq_that_onnxruntime_runs_alike() {
    let split = Split::new();
    let refused = split.out("refused.onnx");
    let o = finetune(&split, "digits_cnn.onnx", &["--weight-bits", "4"], &refused);
    assert_user_error(&o, &["apply with --qat"]);
    assert!(!refused.exists());

    let out = split.out("qat.onnx");
    let o = finetune(
        &split,
        "digits_cnn.onnx",
        &["--qat", "--weight-bits", "3", "--quiet"],
        &out,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let pct = |after: &str| -> f64 {
        let at = text
            .find(after)
            .unwrap_or_else(|| panic!("no {after:?} in {text}"))
            + after.len();
        text[at..]
            .split('%')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (ptq, qat) = (
        pct("post-training quantization: val"),
        pct("after quantization-aware training: val"),
    );
    eprintln!("held-out accuracy: post-training quantization {ptq}%, QAT {qat}%");
    assert!(
        qat > ptq,
        "QAT {qat}% not above post-training quantization {ptq}%"
    );
    assert!(
        text.contains("trained 10 epochs"),
        "--qat defaults to 10 epochs: {text}"
    );

    let g = kestrel::driver::load(&out).unwrap().graph;
    let mut int8_weights = 0;
    for v in &g.values {
        if let kestrel_ir::ValueDef::Const(c) = &v.def {
            if v.ty.dtype == kestrel_ir::DType::I8 && v.ty.rank() >= 2 {
                int8_weights += 1;
                let t = c.data.as_ref().unwrap().to_f32_vec();
                assert!(
                    t.iter().all(|q| q.abs() <= 3.0),
                    "{} off the 3-bit grid",
                    c.name
                );
            }
        }
    }
    assert!(int8_weights >= 2, "int8 weights in {}", out.display());
    assert!(g
        .nodes
        .iter()
        .any(|n| matches!(n.op, kestrel_ir::Op::QuantizeLinear { .. })));

    let Some((ours, theirs)) = interp_and_onnxruntime(&split, &out) else {
        return;
    };
    let classes = |p: &Path| -> Vec<usize> {
        let l = kestrel::tensor_io::read_npz(p)
            .unwrap()
            .remove(0)
            .1
            .to_f32_vec();
        l.chunks(10)
            .map(|r| (0..10).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
            .collect()
    };
    let (a, b) = (classes(&ours), classes(&theirs));
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    eprintln!("{differ} of 80 held-out images classified differently by onnxruntime");
    // onnxruntime runs QDQ with integer kernels, Kestrel's interpreter in float: an image near
    // a decision boundary may flip, no more.
    assert!(
        differ <= 1,
        "{differ} of 80 held-out images classified differently"
    );
}
