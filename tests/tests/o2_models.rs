//! O2 (canonicalisation + e-graph fusion) on the shared float models:
//! - the O2 graph computes what the imported graph computes (interpreter, `1e-4 * max(1, |ref|)`);
//! - compiled with the JIT it reproduces the reference logits of `*.io.npz` (same tolerance);
//! - no activation or BatchNormalization stands alone after a conv/gemm (directly or through a
//!   reshape);
//! - `vit_tiny_16.decomposed_ln.onnx` compiles to the same op counts as `vit_tiny_16.onnx`;
//! - every attention block of the ViTs (MatMul -> scale -> Softmax -> MatMul) is one `attention`;
//! - saturation of `vit_tiny_16` takes less than 1 s.
//!
//! Runs only when `KESTREL_MODELS` names the models folder; `KESTREL_MODELS_FILTER=substring`
//! restricts the models run. Quantized (`int8`) models are skipped: their outputs are compared in
//! output quantization steps (`shared_models.rs`), not with this relative tolerance.

mod common;

use kestrel_backends::interp;
use kestrel_ir::testing;
use kestrel_ir::{verify, Graph, Op, Tensor};
use kestrel_passes::{run_pipeline, PassContext, PipelineOptions};

fn is_activation(op: &Op) -> bool {
    use kestrel_ir::UnaryOp::*;
    matches!(
        op,
        Op::Unary(
            Relu | Sigmoid
                | HardSwish
                | Tanh
                | Clip { .. }
                | HardSigmoid { .. }
                | Gelu { .. }
                | LeakyRelu { .. }
        ) | Op::Clip
            | Op::BatchNorm { .. }
    )
}

/// Nodes that are an activation or a batch norm whose input comes from a conv/gemm (possibly
/// through views).
fn standalone_after_conv(g: &Graph) -> Vec<String> {
    let mut bad = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if !is_activation(&n.op) {
            continue;
        }
        let mut v = n.inputs[0];
        while let Some(p) = g.producer(v) {
            match &g.node(p).op {
                op if op.is_view() => v = g.node(p).inputs[0],
                Op::Conv(_) | Op::Gemm(_) => {
                    bad.push(g.describe_node(kestrel_ir::NodeId(i as u32)));
                    break;
                }
                _ => break,
            }
        }
    }
    bad
}

fn histogram(g: &Graph) -> std::collections::BTreeMap<&'static str, usize> {
    let mut h = std::collections::BTreeMap::new();
    for n in &g.nodes {
        *h.entry(n.op.name()).or_default() += 1;
    }
    h
}

/// (max |o - w|, max(1, max |w|)) over the values as f64; the difference is NaN when any is.
fn max_diff(w: &Tensor, o: &Tensor) -> (f64, f64) {
    let (w, o) = (w.to_f64_vec(), o.to_f64_vec());
    (testing::max_abs_diff(&o, &w), testing::magnitude(&w))
}

#[test]
fn o2_fuses_and_keeps_outputs() {
    let Some(dir) = common::shared_models() else {
        eprintln!("KESTREL_MODELS not set: skipping");
        return;
    };
    let filter = std::env::var("KESTREL_MODELS_FILTER").unwrap_or_default();
    let mut files = Vec::new();
    common::onnx_files(&dir, &mut files);
    let cx = PassContext::with_evaluator(|op: &Op, ins: &[&Tensor]| {
        Some(interp::eval_op(op, ins).map_err(|e| e.to_string()))
    });
    let mut failures = Vec::new();
    let mut hist = std::collections::HashMap::new();
    let mut ran = 0;
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.contains(&filter) || name.contains("int8") {
            continue;
        }
        let io = path.with_file_name(name.replace(".onnx", ".io.npz"));
        if !io.exists() {
            continue;
        }
        ran += 1;
        let mut g = kestrel::onnx::load_model(&path)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .graph;
        let data = common::read_npz(&io, "input");
        let inputs = common::bind_single_input(&mut g, &data);
        let before = g.clone();
        let opts = PipelineOptions {
            pipeline: "O2".into(),
            verify_each: true,
            ..Default::default()
        };
        let report = run_pipeline(&mut g, &opts, &cx).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!(
            "{name}: nodes {} -> {} ({:.0} ms); {}",
            report.nodes_before,
            report.nodes_after,
            report.total_time.as_secs_f64() * 1e3,
            report.notes.join("; ")
        );
        for n in &report.notes {
            if n.contains("fuse") && !n.contains("saturated") {
                failures.push(format!("{name}: fusion did not saturate: {n}"));
            }
        }
        if name.starts_with("vit_tiny_16") {
            // Saturation time is in the note: "..., N ms".
            let fuse = report
                .runs
                .iter()
                .find(|r| r.pass == "fuse")
                .expect("fuse ran");
            if fuse.time.as_secs_f64() >= 1.0 {
                failures.push(format!("{name}: fuse took {:?}", fuse.time));
            }
        }
        let bad = standalone_after_conv(&g);
        if !bad.is_empty() {
            failures.push(format!(
                "{name}: activation/BN alone after conv/gemm: {bad:?}"
            ));
        }
        let h = histogram(&g);
        if name.starts_with("vit_tiny_16")
            && (h.get("attention") != Some(&12) || h.contains_key("softmax"))
        {
            failures.push(format!(
                "{name}: want 12 attention ops and no softmax after O2, got {h:?}"
            ));
        }
        hist.insert(name.clone(), h);
        let want =
            interp::run(&before, &inputs).unwrap_or_else(|e| panic!("{name}: original: {e}"));
        let got = interp::run(&g, &inputs).unwrap_or_else(|e| panic!("{name}: O2: {e}"));
        for (k, (w, o)) in want.iter().zip(&got).enumerate() {
            let (diff, scale) = max_diff(w, o);
            eprintln!("{name}: output {k}: max |O2 - original| (interp) = {diff:.3e}");
            if diff.is_nan() || diff > 1e-4 * scale {
                failures.push(format!(
                    "{name}: interp output {k}: {diff:e} > 1e-4 * {scale}"
                ));
            }
        }
        let logits = common::read_npz(&io, "logits");
        if logits.dims() == want[0].dims() {
            let mut g = g.clone();
            kestrel::driver::fold_for_codegen(&mut g, &path).unwrap();
            let m =
                kestrel_backends::jit::compile(&g, &kestrel_backends::jit::JitOptions::default())
                    .unwrap_or_else(|e| panic!("{name}: JIT after O2: {e}"));
            let out = m
                .run(&inputs)
                .unwrap_or_else(|e| panic!("{name}: run: {e}"));
            let (diff, scale) = max_diff(&logits, &out[0]);
            eprintln!("{name}: [jit O2] max |diff| vs reference = {diff:.3e}");
            if diff.is_nan() || diff > 1e-4 * scale {
                failures.push(format!("{name}: JIT O2: {diff:e} > 1e-4 * {scale}"));
            }
            // Fused nodes split into tasks give the 1-thread result bit for bit.
            let split = kestrel_backends::jit::JitOptions {
                threads: 2,
                min_task_macs: 1,
                im2col_block_bytes: 64 * 1024,
                ..Default::default()
            };
            let m2 = kestrel_backends::jit::compile(&g, &split)
                .unwrap_or_else(|e| panic!("{name}: JIT after O2, 2 threads: {e}"));
            let out2 = m2
                .run(&inputs)
                .unwrap_or_else(|e| panic!("{name}: run on 2 threads: {e}"));
            if out2[0].bytes() != out[0].bytes() {
                failures.push(format!("{name}: JIT O2 on 2 threads differs from 1 thread"));
            }
        }
    }
    if let (Some(a), Some(b)) = (
        hist.get("vit_tiny_16.onnx"),
        hist.get("vit_tiny_16.decomposed_ln.onnx"),
    ) {
        if a != b {
            failures.push(format!(
                "decomposed_ln op counts differ after O2:\n{a:?}\n{b:?}"
            ));
        }
    }
    assert!(ran > 0, "no model matched");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Saturation on the imported `vit_tiny_16` (1,088 ONNX nodes, 524 IR nodes after import, before
/// any other pass)
/// finishes within 1 s and saturates.
#[test]
fn fuse_saturates_the_imported_vit_within_a_second() {
    let Some(dir) = common::shared_models() else {
        eprintln!("KESTREL_MODELS not set: skipping");
        return;
    };
    let path = dir.join("torchvision/vit_tiny_16.onnx");
    let mut g = kestrel::onnx::load_model(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .graph;
    let io = dir.join("torchvision/vit_tiny_16.io.npz");
    let inputs = common::bind_single_input(&mut g, &common::read_npz(&io, "input"));
    let nodes = g.nodes.len();
    let mut b = kestrel_passes::egraph::build(&g);
    let sat = kestrel_passes::egraph::saturate(
        &mut b,
        &kestrel_passes::egraph::rules::fusion_rules(),
        kestrel_passes::egraph::Limits::default(),
    );
    eprintln!("vit_tiny_16 as imported ({nodes} nodes): {sat}");
    assert_eq!(sat.stop, "saturated", "{sat}");
    assert!(sat.time.as_secs_f64() < 1.0, "{sat}");
    let out = kestrel_passes::egraph::extract(&g, &b, None).unwrap();
    verify(&out).unwrap();
    let want = interp::run(&g, &inputs).unwrap();
    let got = interp::run(&out, &inputs).unwrap();
    let (diff, scale) = max_diff(&want[0], &got[0]);
    assert!(diff <= 1e-4 * scale, "{diff}");
}
