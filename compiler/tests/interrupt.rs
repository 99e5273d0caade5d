//! SIGINT and SIGTERM leave nothing half-written (docs/ROBUSTNESS.md, "Nothing is lost"):
//! `kestrel compile` of a model large enough to take a while is interrupted at several moments;
//! each run either finished (the shared object and its header, nothing else) or ended with 130
//! (SIGINT) or 143 (SIGTERM) and left no file at all — no temporary, no object, no header — or,
//! interrupted after its outputs were in place, just that finished pair.

mod onnx_builders;
use onnx_builders::*;

use prost::Message;
use std::process::Command;
use std::time::Duration;

/// `y = x · W` with a 2048 × 4096 f32 weight (32 MiB): packing, writing and linking it takes
/// a good fraction of a second.
fn write_big_model(path: &std::path::Path) {
    let (k, n) = (2048, 4096);
    let w: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.01).collect();
    let m = model(
        17,
        vec![node("MatMul", &["x", "w"], &["y"], vec![])],
        vec![init_f32("w", &[k, n], &w)],
        vec![f32_in("x", &[1, k as i64])],
        &["y"],
    );
    std::fs::write(path, m.encode_to_vec()).unwrap();
}

#[test]
fn interrupted_compiles_leave_nothing_behind() {
    let source = tempfile::tempdir().unwrap();
    let model_path = source.path().join("big.onnx");
    write_big_model(&model_path);
    for (signal, status) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let mut interrupted = 0;
        for delay_ms in [40u64, 120, 250, 500] {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("big.so");
            let child = Command::new(env!("CARGO_BIN_EXE_kestrel"))
                .args([
                    "compile",
                    model_path.to_str().unwrap(),
                    "-o",
                    out.to_str().unwrap(),
                ])
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay_ms));
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
            let exit = child.wait_with_output().unwrap().status;
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            match exit.code() {
                Some(0) => assert_eq!(names, ["big.h", "big.so"], "finished at {delay_ms} ms"),
                Some(c) if c == status => {
                    interrupted += 1;
                    // After the shared object is in place the command is done but for its
                    // message: a signal then leaves the finished pair.
                    assert!(
                        names.is_empty() || names == ["big.h", "big.so"],
                        "signal {signal} at {delay_ms} ms left {names:?}"
                    );
                }
                other => {
                    panic!("signal {signal} at {delay_ms} ms: exit {other:?}, files {names:?}")
                }
            }
        }
        assert!(
            interrupted > 0,
            "signal {signal}: every compile finished first"
        );
    }
}

/// `y1 = relu(t)`, `y2 = neg(t)` of `t = tile(x, [2048, 1])`, `x` f32 `[1, 8192]`: two 64 MiB
/// outputs, so writing them into `--output-dir` takes a while.
fn write_big_output_model(path: &std::path::Path) {
    let m = model(
        17,
        vec![
            node("Tile", &["x", "reps"], &["t"], vec![]),
            node("Relu", &["t"], &["y1"], vec![]),
            node("Neg", &["t"], &["y2"], vec![]),
        ],
        vec![init_i64("reps", &[2048, 1])],
        vec![f32_in("x", &[1, 8192])],
        &["y1", "y2"],
    );
    std::fs::write(path, m.encode_to_vec()).unwrap();
}

#[test]
fn interrupted_runs_leave_no_partial_output_dir() {
    let source = tempfile::tempdir().unwrap();
    let model_path = source.path().join("tile.onnx");
    write_big_output_model(&model_path);
    let input = source.path().join("x.npy");
    let x = kestrel_ir::Tensor::from_vec(vec![1, 8192], vec![0.5f32; 8192]);
    kestrel::tensor_io::write_npy(&input, &x).unwrap();
    let input_arg = format!("x={}", input.display());
    let mut interrupted = 0;
    for delay_ms in [60u64, 150, 300, 600] {
        let dir = tempfile::tempdir().unwrap();
        let outs = dir.path().join("outs");
        let child = Command::new(env!("CARGO_BIN_EXE_kestrel"))
            .args(["run", model_path.to_str().unwrap(), "--input", &input_arg])
            .args(["--output-dir", outs.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let output = child.wait_with_output().unwrap();
        let (exit, err) = (output.status, String::from_utf8_lossy(&output.stderr));
        let listing = |p: &std::path::Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let top = listing(dir.path());
        let files = if outs.is_dir() {
            listing(&outs)
        } else {
            vec![]
        };
        match exit.code() {
            Some(0) => assert_eq!(files, ["y1.npy", "y2.npy"], "finished at {delay_ms} ms"),
            Some(130) => {
                interrupted += 1;
                let complete = files == ["y1.npy", "y2.npy"];
                assert!(
                    top.is_empty() || complete,
                    "SIGINT at {delay_ms} ms left {top:?} / {files:?}"
                );
            }
            other => {
                panic!("SIGINT at {delay_ms} ms: exit {other:?} ({err}), left {top:?} / {files:?}")
            }
        }
    }
    assert!(interrupted > 0, "every run finished first");
}
