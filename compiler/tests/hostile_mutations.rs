//! Mutation test (issue 3, item 5): corrupted copies of real models and of input files, fed to the
//! `kestrel` binary. Every run must end in exit 0 or exit 1 with one `kestrel: error:` line naming
//! the file, never a signal, a panic (exit 101) or a hang (each command is killed after
//! [`TIMEOUT`] and the test fails), and a failed `run` leaves no output file.
//!
//! Always: the committed digits fixtures (`tests/fixtures/digits`). When `KESTREL_MODELS` is set
//! (it must then be a folder): every `.onnx` in it too; files above 1 MiB are corrupted only in
//! their first and last 64 KiB, where the graph structure (nodes, value infos, small
//! initializers) lives, so that the test stays fast. The generator is a seeded xorshift, so every
//! run feeds the same corruptions; a failure message names the seed, the case and the mutation.

use kestrel_ir::testing::{Random, XorShift64};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);
const WINDOW: usize = 64 * 1024;

/// Applies one random mutation to `b` and describes it. With `window`, positions fall in the first
/// or last `window` bytes.
fn mutate(rng: &mut XorShift64, b: &mut Vec<u8>, window: Option<usize>) -> String {
    let len = b.len();
    let pos = |rng: &mut XorShift64| match window {
        Some(w) if len > 2 * w => {
            let p = rng.below(w);
            if rng.next_u64() & 1 == 0 {
                p
            } else {
                len - 1 - p
            }
        }
        _ => rng.below(len),
    };
    match rng.below(6) {
        0 => {
            let at = pos(rng);
            b.truncate(at);
            format!("truncate at {at}")
        }
        1 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let p = pos(rng);
                b[p] = rng.next_u64() as u8;
            }
            format!("{n} random bytes")
        }
        2 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let p = pos(rng);
                b[p] ^= 1 << rng.below(8);
            }
            format!("{n} bit flips")
        }
        3 => {
            let at = pos(rng);
            let n = 1 + rng.below(64);
            let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            b.splice(at..at, junk);
            format!("{n} junk bytes spliced at {at}")
        }
        4 => {
            let at = pos(rng);
            let end = (at + 1 + rng.below(256)).min(len);
            let copy = b[at..end].to_vec();
            b.splice(at..at, copy);
            format!("range {at}..{end} duplicated")
        }
        _ => {
            let at = pos(rng);
            let end = (at + 1 + rng.below(256)).min(len);
            b.drain(at..end);
            format!("range {at}..{end} removed")
        }
    }
}

struct Stats {
    cases: usize,
    ok: usize,
    errors: usize,
    slowest: (f64, String),
}

/// Runs `kestrel args` with a deadline and checks the outcome contract. One of `files` must be
/// named in an error; `output`, if given, must not exist after a failure.
fn check(
    scratch: &Path,
    args: &[&str],
    files: &[&str],
    output: Option<&Path>,
    what: &str,
    stats: &mut Stats,
) {
    let err_path = scratch.join("stderr");
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn kestrel");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let secs = start.elapsed().as_secs_f64();
    if secs > stats.slowest.0 {
        stats.slowest = (secs, what.to_string());
    }
    stats.cases += 1;
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(!err.contains("panicked"), "{what}: panic: {err}");
    match status.code() {
        Some(0) => stats.ok += 1,
        Some(1) => {
            stats.errors += 1;
            assert!(
                err.starts_with("kestrel: error: ") && err.lines().count() == 1,
                "{what}: expected one `kestrel: error:` line, got {err:?}"
            );
            assert!(
                files.iter().any(|f| err.contains(f)),
                "{what}: error names none of {files:?}: {err}"
            );
            if let Some(o) = output {
                assert!(!o.exists(), "{what}: failed run left {}", o.display());
            }
        }
        other => panic!("{what}: exit status {other:?} (signal or panic), stderr: {err}"),
    }
    if let Some(o) = output {
        let _ = std::fs::remove_file(o);
    }
}

/// Corrupts `model` `n` times; `dump` on every copy, `run` (with `io`) on every `run_every`-th.
fn fuzz_model(
    rng: &mut XorShift64,
    scratch: &Path,
    model: &Path,
    io: Option<&Path>,
    n: usize,
    run_every: usize,
    stats: &mut Stats,
) {
    let original = std::fs::read(model).unwrap();
    let window = (original.len() > 1 << 20).then_some(WINDOW);
    let stem = model.file_stem().unwrap().to_string_lossy().into_owned();
    let out = scratch.join("out.npz");
    for case in 0..n {
        let mut bytes = original.clone();
        let how = mutate(rng, &mut bytes, window);
        let name = format!("{stem}.m{case}.onnx");
        let copy = scratch.join(&name);
        std::fs::write(&copy, &bytes).unwrap();
        let c = copy.to_str().unwrap();
        let what = format!("{} case {case} ({how})", model.display());
        check(scratch, &["dump", c], &[&name], None, &what, stats);
        if let Some(io) = io.filter(|_| case % run_every == 0) {
            let args = [
                "run",
                c,
                "--inputs",
                io.to_str().unwrap(),
                "--outputs",
                out.to_str().unwrap(),
            ];
            check(
                scratch,
                &args,
                &[&name],
                Some(&out),
                &format!("run {what}"),
                stats,
            );
        }
        std::fs::remove_file(&copy).unwrap();
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits")
}

/// The bundle beside a model: `x.onnx` → `x.io.npz`, if present.
fn io_of(model: &Path) -> Option<PathBuf> {
    let name = model
        .file_name()?
        .to_string_lossy()
        .replace(".onnx", ".io.npz");
    let p = model.with_file_name(name);
    p.is_file().then_some(p)
}

/// Writes `to` holding the first sample (index 0 of axis 0) of `io`'s `input` array, so that a
/// run costs one inference, not a whole test set's.
fn first_sample(io: &Path, to: &Path) -> PathBuf {
    let arrays = kestrel::tensor_io::read_npz(io).unwrap();
    let t = &arrays.iter().find(|(n, _)| n == "input").unwrap().1;
    let mut dims = t.dims().to_vec();
    let n = dims[0];
    dims[0] = 1;
    let bytes = t.bytes().slice(..t.bytes().len() / n);
    let one = kestrel_ir::Tensor::from_bytes(t.dtype(), dims, bytes).unwrap();
    kestrel::tensor_io::write_npz(to, &[("input".to_string(), one)]).unwrap();
    to.to_path_buf()
}

fn report(label: &str, stats: &Stats, start: Instant) {
    eprintln!(
        "{label}: {} commands ({} exit 0, {} exit 1) in {:.1} s; slowest {:.2} s: {}",
        stats.cases,
        stats.ok,
        stats.errors,
        start.elapsed().as_secs_f64(),
        stats.slowest.0,
        stats.slowest.1
    );
}

fn new_stats() -> Stats {
    Stats {
        cases: 0,
        ok: 0,
        errors: 0,
        slowest: (0.0, String::new()),
    }
}

#[test]
fn corrupted_fixture_models() {
    let start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = XorShift64::from_state(0x5eed_0001_d1c7_5a11);
    let mut stats = new_stats();
    for name in [
        "digits_cnn.onnx",
        "digits_cnn.b1.onnx",
        "digits_cnn.dynamo_bn.onnx",
        "digits_cnn.int8.onnx",
    ] {
        let model = fixtures().join(name);
        // Half the copies corrupted anywhere, half in the structure near the ends (the weights
        // dominate these files, and a flipped weight byte tests little).
        let io = io_of(&model);
        fuzz_model(
            &mut rng,
            dir.path(),
            &model,
            io.as_deref(),
            40,
            4,
            &mut stats,
        );
        let original = std::fs::read(&model).unwrap();
        let out = dir.path().join("out.npz");
        for case in 0..40 {
            let mut bytes = original.clone();
            let how = mutate(&mut rng, &mut bytes, Some(2048));
            let copy_name = format!("ends{case}.{name}");
            let copy = dir.path().join(&copy_name);
            std::fs::write(&copy, &bytes).unwrap();
            let c = copy.to_str().unwrap();
            let what = format!("{name} ends case {case} ({how})");
            check(
                dir.path(),
                &["dump", c],
                &[&copy_name],
                None,
                &what,
                &mut stats,
            );
            if case % 4 == 0 {
                let io = io.as_ref().unwrap();
                let args = [
                    "run",
                    c,
                    "--inputs",
                    io.to_str().unwrap(),
                    "--outputs",
                    out.to_str().unwrap(),
                ];
                check(
                    dir.path(),
                    &args,
                    &[&copy_name],
                    Some(&out),
                    &what,
                    &mut stats,
                );
            }
        }
    }
    report("fixture models", &stats, start);
    assert!(stats.cases >= 400);
}

#[test]
fn corrupted_shared_models() {
    let Some(root) = kestrel_ir::testing::shared_models() else {
        eprintln!("KESTREL_MODELS is not set: shared models skipped");
        return;
    };
    let start = Instant::now();
    let mut models = Vec::new();
    for sub in ["digits", "mnist5k", "torchvision"] {
        let d = root.join(sub);
        assert!(d.is_dir(), "{} is missing from KESTREL_MODELS", d.display());
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "onnx") {
                models.push(p);
            }
        }
    }
    models.sort();
    assert!(models.len() >= 10, "only {} models found", models.len());
    let dir = tempfile::tempdir().unwrap();
    let mut rng = XorShift64::from_state(0x5eed_0002_0bad_f00d);
    let mut stats = new_stats();
    for (k, model) in models.iter().enumerate() {
        let big = std::fs::metadata(model).unwrap().len() > 1 << 20;
        // Running a torchvision model takes ~0.5 s: only one run per big model.
        let (n, run_every) = if big { (12, 12) } else { (16, 4) };
        let io = io_of(model).map(|io| first_sample(&io, &dir.path().join(format!("io{k}.npz"))));
        fuzz_model(
            &mut rng,
            dir.path(),
            model,
            io.as_deref(),
            n,
            run_every,
            &mut stats,
        );
    }
    report("shared models", &stats, start);
}

/// Corrupted `.npy`, `.npz` and `.pb` input files for `kestrel run`.
#[test]
fn corrupted_input_files() {
    let start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("digits_cnn.b1.onnx");
    let arrays = kestrel::tensor_io::read_npz(&fixtures().join("digits_cnn.b1.io.npz")).unwrap();
    let input = arrays.iter().find(|(n, _)| n == "input").unwrap().1.clone();
    let npy = kestrel::tensor_io::npy_bytes(&input);
    let npz_path = dir.path().join("valid.npz");
    kestrel::tensor_io::write_npz(&npz_path, &[("input".to_string(), input.clone())]).unwrap();
    let npz = std::fs::read(&npz_path).unwrap();
    let pb = prost::Message::encode_to_vec(&kestrel::onnx::tensor_to_proto("input", &input));
    let mut rng = XorShift64::from_state(0x5eed_0003_1234_5678);
    let mut stats = new_stats();
    let out = dir.path().join("out.npz");
    let m = model.to_str().unwrap();
    for (ext, original) in [("npy", &npy), ("npz", &npz), ("pb", &pb)] {
        for case in 0..60 {
            let mut bytes = original.clone();
            let how = mutate(&mut rng, &mut bytes, None);
            let name = format!("in{case}.{ext}");
            let p = dir.path().join(&name);
            std::fs::write(&p, &bytes).unwrap();
            let flag = if ext == "npz" { "--inputs" } else { "--input" };
            let args = [
                "run",
                m,
                flag,
                p.to_str().unwrap(),
                "--outputs",
                out.to_str().unwrap(),
            ];
            let what = format!("{name} ({how})");
            // The error names the input file, or the model when the array does not fit it.
            check(
                dir.path(),
                &args,
                &[&name, "digits_cnn.b1.onnx"],
                Some(&out),
                &what,
                &mut stats,
            );
            std::fs::remove_file(&p).unwrap();
        }
    }
    report("input files", &stats, start);
}
