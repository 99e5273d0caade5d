//! O1 on the shared models: no `shape`, `batch_norm` or `identity` node survives, and the O1 graph
//! computes what the imported graph computes on the model's `*.io.npz` input (through the
//! interpreter, within `1e-4 * max(1, max |reference|)`).
//!
//! Runs only when `KESTREL_MODELS` names the models folder (it fails if the variable is set but
//! the folder is missing). `KESTREL_MODELS_FILTER=substring` restricts the models run.
//! Symbolic input extents are bound from the data (at most 8 samples), as `kestrel run` does.

mod common;

use kestrel_backends::interp;
use kestrel_ir::testing;
use kestrel_ir::{Graph, Op, Tensor};
use kestrel_passes::{run_pipeline, PassContext, PipelineOptions};

fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.nodes.iter().filter(|n| pred(&n.op)).count()
}

#[test]
fn o1_removes_shape_batchnorm_identity_and_keeps_outputs() {
    let Some(dir) = common::shared_models() else {
        eprintln!("KESTREL_MODELS not set: skipping");
        return;
    };
    let filter = std::env::var("KESTREL_MODELS_FILTER").unwrap_or_default();
    let mut files = Vec::new();
    common::onnx_files(&dir, &mut files);
    assert!(!files.is_empty(), "no .onnx files under {}", dir.display());
    let cx = PassContext::with_evaluator(|op: &Op, ins: &[&Tensor]| {
        Some(interp::eval_op(op, ins).map_err(|e| e.to_string()))
    });
    let mut failures = Vec::new();
    let mut ran = 0;
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.contains(&filter) {
            continue;
        }
        let io = path.with_file_name(name.replace(".onnx", ".io.npz"));
        if !io.exists() {
            eprintln!("{name}: no {} (skipped)", io.display());
            continue;
        }
        ran += 1;
        let mut g = match kestrel::onnx::load_model(&path) {
            Ok(m) => m.graph,
            Err(e) => {
                eprintln!("{name}: import failed: {e}");
                failures.push(format!("{name}: import failed: {e}"));
                continue;
            }
        };
        let inputs = common::bind_single_input(&mut g, &common::read_npz(&io, "input"));
        let before = g.clone();
        let opts = PipelineOptions {
            pipeline: "O1".into(),
            ..Default::default()
        };
        let report = run_pipeline(&mut g, &opts, &cx).unwrap_or_else(|e| panic!("{name}: {e}"));
        let left = (
            count(&g, |op| matches!(op, Op::Shape { .. })),
            count(&g, |op| matches!(op, Op::BatchNorm { .. })),
            count(&g, |op| matches!(op, Op::Identity)),
        );
        eprintln!(
            "{name}: nodes {} -> {} ({} applications, {:.0} ms){}",
            report.nodes_before,
            report.nodes_after,
            report.runs.len(),
            report.total_time.as_secs_f64() * 1e3,
            if report.warnings.is_empty() {
                String::new()
            } else {
                format!(", warnings: {:?}", report.warnings)
            }
        );
        if left != (0, 0, 0) {
            failures.push(format!("{name}: shape/batch_norm/identity left: {left:?}"));
        }
        let want =
            interp::run(&before, &inputs).unwrap_or_else(|e| panic!("{name}: original: {e}"));
        let got = interp::run(&g, &inputs).unwrap_or_else(|e| panic!("{name}: O1: {e}"));
        for (k, (w, o)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w.dims(), o.dims(), "{name}: output {k} shape");
            if !w.dtype().is_float() {
                if w != o {
                    failures.push(format!("{name}: output {k} differs"));
                }
                continue;
            }
            let (w, o) = (w.to_f64_vec(), o.to_f64_vec());
            let scale = testing::magnitude(&w);
            let diff = testing::max_abs_diff(&o, &w);
            eprintln!("{name}: output {k}: max |O1 - original| = {diff:.3e} (scale {scale:.3})");
            if diff > 1e-4 * scale || diff.is_nan() {
                failures.push(format!(
                    "{name}: output {k}: max diff {diff:e} > 1e-4 * {scale}"
                ));
            }
        }
    }
    assert!(ran > 0, "no model matched");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
