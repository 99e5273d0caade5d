//! onnxruntime as an oracle for the compiler's tests, through `tests/ort_run.py`.

use std::path::Path;
use std::process::Command;

/// Runs `model` in onnxruntime on the arrays of `inputs` (.npz) and writes its outputs to
/// `outputs` (.npz). Returns false, after printing why, when python3 with onnx, onnxruntime and
/// numpy is missing; under CI (`CI` set, `.ci/run` installs them) that is a failure instead.
pub fn run(model: &Path, inputs: &Path, outputs: &Path) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ort_run.py");
    let python = std::env::var("KESTREL_PYTHON").unwrap_or_else(|_| "python3".into());
    let ran = Command::new(&python)
        .arg(script)
        .args([model, inputs, outputs])
        .output();
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let why = match &ran {
        Err(e) => format!("cannot run {python}: {e}"),
        Ok(o) if o.status.code() == Some(3) => stderr(o),
        Ok(o) => {
            assert!(
                o.status.success(),
                "onnxruntime on {}: {}",
                model.display(),
                stderr(o)
            );
            return true;
        }
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "python3 with onnx, onnxruntime and numpy is missing (.ci/run installs them): {why}"
    );
    eprintln!("onnxruntime check skipped: {why}");
    false
}
