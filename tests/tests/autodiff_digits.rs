//! Autodiff on the committed digits CNN (conv, relu, max-pool, flatten, gemm): the training
//! graph's gradients against central finite differences on sampled weight entries, and one SGD
//! step lowering the loss. The interpreter runs everything.

mod common;
use common::*;

use kestrel_backends::interp;
use kestrel_ir::{DType, Graph, Tensor, TensorType, ValueDef};
use kestrel_passes::autodiff::{
    training_graph, training_graph_with, BatchNormMode, Loss, ParamSelection, TrainingGraph,
    TrainingOptions,
};
use std::collections::HashMap;

const BATCH: usize = 32;

fn model() -> Graph {
    load(&fixtures().join("digits").join("digits_cnn.onnx"))
}

/// The first `BATCH` test images and their labels.
fn batch() -> (Tensor, Tensor) {
    let (input, _) = reference(&fixtures().join("digits").join("digits_cnn.io.npz"));
    let labels = kestrel::tensor_io::read_npy(&fixtures().join("digits").join("digits_test_y.npy"))
        .expect("labels");
    let per_image: usize = input.dims()[1..].iter().product();
    let x: Vec<f32> = input.to_f32_vec()[..BATCH * per_image].to_vec();
    let mut dims = input.dims().to_vec();
    dims[0] = BATCH;
    let y: Vec<i64> = labels.to_i64_vec()[..BATCH].to_vec();
    (Tensor::from_vec(dims, x), Tensor::from_vec(vec![BATCH], y))
}

/// `g` with its input's batch bound to `BATCH` and, when `f64`, every float converted to f64
/// (constants and the input), so finite differences are exact to ~1e-10.
fn prepared(g: &Graph, f64: bool) -> Graph {
    prepared_batch(g, f64, BATCH)
}

/// [`prepared`] with another batch.
fn prepared_batch(g: &Graph, f64: bool, batch: usize) -> Graph {
    let mut out = Graph::new(g.name.clone());
    let mut map = HashMap::new();
    for &v in &g.inputs {
        let mut dims = g.ty(v).shape.clone();
        dims[0] = kestrel_ir::Dim::Known(batch);
        let dtype = if f64 { DType::F64 } else { g.ty(v).dtype };
        let name = g.value(v).name.clone().unwrap();
        map.insert(v, out.add_input(name, TensorType::new(dtype, dims)));
    }
    for (i, value) in g.values.iter().enumerate() {
        if let ValueDef::Const(c) = &value.def {
            let t = c.data.clone().unwrap();
            let t = if f64 && t.dtype() == DType::F32 {
                Tensor::from_vec(t.dims().to_vec(), t.to_f64_vec())
            } else {
                t
            };
            map.insert(
                kestrel_ir::ValueId(i as u32),
                out.add_const(c.name.clone(), t),
            );
        }
    }
    for n in &g.nodes {
        let inputs: Vec<_> = n.inputs.iter().map(|v| map[v]).collect();
        let outs = out.add_node(n.op.clone(), &inputs, n.name.clone()).unwrap();
        for (o, no) in n.outputs.iter().zip(outs) {
            map.insert(*o, no);
        }
    }
    for o in &g.outputs {
        out.add_output(o.name.clone(), map[&o.value]);
    }
    out
}

/// The training graph's inputs: image batch, parameters, labels, each at its input position.
fn feed(tg: &TrainingGraph, x: Tensor, labels: Tensor, params: &[Tensor]) -> Vec<Tensor> {
    let mut f = vec![x.clone(); tg.graph.inputs.len()];
    for (p, t) in tg.params.iter().zip(params) {
        f[p.input_index] = t.clone();
    }
    assert_eq!(
        tg.loss_inputs,
        vec![("labels".to_string(), tg.graph.inputs.len() - 1)]
    );
    f[tg.loss_inputs[0].1] = labels;
    f
}

#[test]
fn digits_cnn_gradients_match_finite_differences() {
    let g = prepared(&model(), true);
    let tg = training_graph(&g, &ParamSelection::FloatConstants, &Loss::cross_entropy()).unwrap();
    kestrel_ir::verify(&tg.graph).unwrap();
    // conv1 w/b, conv2 w/b, fc w/b.
    assert_eq!(
        tg.params.len(),
        6,
        "{:?}",
        tg.params.iter().map(|p| &p.name).collect::<Vec<_>>()
    );
    let (x, labels) = batch();
    let x = Tensor::from_vec(x.dims().to_vec(), x.to_f64_vec());
    let params: Vec<Tensor> = tg.params.iter().map(|p| p.init.clone()).collect();
    let out = interp::run(&tg.graph, &feed(&tg, x.clone(), labels.clone(), &params)).unwrap();
    let loss = out[0].to_f64_vec()[0];
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    let h = 1e-6;
    let mut checked = 0;
    for (k, p) in tg.params.iter().enumerate() {
        let grad = out[p.grad_output].to_f64_vec();
        let n = grad.len();
        for &i in &[0, n / 3, n / 2, n - 1] {
            let at = |delta: f64| {
                let mut v = p.init.to_f64_vec();
                v[i] += delta;
                let mut ps = params.clone();
                ps[k] = Tensor::from_vec(p.init.dims().to_vec(), v);
                interp::run(&tg.graph, &feed(&tg, x.clone(), labels.clone(), &ps)).unwrap()[0]
                    .to_f64_vec()[0]
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            let tol = 1e-6 + 1e-4 * grad[i].abs().max(fd.abs());
            assert!(
                (grad[i] - fd).abs() <= tol,
                "{} entry {i}: analytic {} vs finite difference {fd}",
                p.name,
                grad[i]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 24);
}

#[test]
fn digits_cnn_sgd_step_lowers_the_loss() {
    let g = prepared(&model(), false);
    let tg = training_graph(&g, &ParamSelection::FloatConstants, &Loss::cross_entropy()).unwrap();
    let (x, labels) = batch();
    let params: Vec<Tensor> = tg.params.iter().map(|p| p.init.clone()).collect();
    let out = interp::run(&tg.graph, &feed(&tg, x.clone(), labels.clone(), &params)).unwrap();
    let before = out[0].to_f32_vec()[0];
    let lr = 0.1f32;
    let stepped: Vec<Tensor> = tg
        .params
        .iter()
        .zip(&params)
        .map(|(p, w)| {
            let grad = out[p.grad_output].to_f32_vec();
            assert!(
                grad.iter().any(|&v| v != 0.0),
                "{} has a zero gradient",
                p.name
            );
            let v: Vec<f32> = w
                .to_f32_vec()
                .iter()
                .zip(&grad)
                .map(|(w, g)| w - lr * g)
                .collect();
            Tensor::from_vec(w.dims().to_vec(), v)
        })
        .collect();
    let after = interp::run(&tg.graph, &feed(&tg, x, labels, &stepped)).unwrap()[0].to_f32_vec()[0];
    eprintln!("loss {before} -> {after} after one SGD step");
    assert!(
        after < before,
        "loss {before} -> {after} after one SGD step"
    );
}

/// The first `batch` entries of an array of the shared folder, as f64 when `f64`.
fn first(path: &std::path::Path, batch: usize, f64: bool) -> Tensor {
    let t = kestrel::tensor_io::read_npy(path).unwrap_or_else(|e| panic!("{e}"));
    let per: usize = t.dims()[1..].iter().product();
    let mut dims = t.dims().to_vec();
    dims[0] = batch;
    match t.dtype() {
        DType::I64 => Tensor::from_vec(dims, t.to_i64_vec()[..batch * per].to_vec()),
        _ if f64 => Tensor::from_vec(dims, t.to_f64_vec()[..batch * per].to_vec()),
        _ => Tensor::from_vec(dims, t.to_f32_vec()[..batch * per].to_vec()),
    }
}

/// The shared CNNs (with `KESTREL_MODELS`): mnist5k_cnn with cross-entropy, and digits_student
/// with the distillation loss (T = 4, α = 0.9) against digits_teacher's logits; 2 sampled
/// entries of every parameter against central differences, in f64.
#[test]
fn shared_cnns_gradients_match_finite_differences() {
    let Some(dir) = shared_models() else {
        return;
    };
    const B: usize = 8;
    let cases = [
        (
            "mnist5k/mnist5k_cnn.onnx",
            "mnist5k/mnist5k_test_x.npy",
            "mnist5k/mnist5k_test_y.npy",
            None,
        ),
        (
            "digits/digits_student.onnx",
            "digits/digits_test_x.npy",
            "digits/digits_test_y.npy",
            Some("digits/digits_teacher.onnx"),
        ),
    ];
    for (model, xs, ys, teacher) in cases {
        let g = prepared_batch(&load(&shared_model(&dir, model)), true, B);
        let x = first(&shared_model(&dir, xs), B, true);
        let labels = first(&shared_model(&dir, ys), B, true);
        let (loss, teacher_logits) = match teacher {
            Some(t) => {
                let tg = prepared_batch(&load(&shared_model(&dir, t)), true, B);
                let logits = interp::run(&tg, std::slice::from_ref(&x))
                    .unwrap()
                    .remove(0);
                (Loss::distillation(4.0, 0.9), Some(logits))
            }
            None => (Loss::cross_entropy(), None),
        };
        let tg = training_graph(&g, &ParamSelection::FloatConstants, &loss).unwrap();
        let mut feed = vec![x.clone(); tg.graph.inputs.len()];
        for p in &tg.params {
            feed[p.input_index] = p.init.clone();
        }
        for (name, i) in &tg.loss_inputs {
            feed[*i] = match name.as_str() {
                "labels" => labels.clone(),
                "teacher_logits" => teacher_logits.clone().unwrap(),
                other => panic!("unexpected loss input {other}"),
            };
        }
        let out = interp::run(&tg.graph, &feed).unwrap();
        let h = 1e-6;
        for p in &tg.params {
            let grad = out[p.grad_output].to_f64_vec();
            for i in [grad.len() / 4, grad.len() - 1] {
                let at = |delta: f64| {
                    let mut v = p.init.to_f64_vec();
                    v[i] += delta;
                    let mut f = feed.clone();
                    f[p.input_index] = Tensor::from_vec(p.init.dims().to_vec(), v);
                    interp::run(&tg.graph, &f).unwrap()[0].to_f64_vec()[0]
                };
                let fd = (at(h) - at(-h)) / (2.0 * h);
                let tol = 1e-6 + 1e-4 * grad[i].abs().max(fd.abs());
                assert!(
                    (grad[i] - fd).abs() <= tol,
                    "{model}: {} entry {i}: analytic {} vs finite difference {fd}",
                    p.name,
                    grad[i]
                );
            }
        }
        eprintln!(
            "{model}: loss {}, {} parameters checked",
            out[0].to_f64_vec()[0],
            tg.params.len()
        );
    }
}

/// The committed BatchNorm variant of the digits CNN (exported by the dynamo exporter: its
/// flatten is a `shape → concat → reshape` chain, folded first as code generation does), in
/// eval and in training mode: sampled gradients against central differences in f64.
#[test]
fn digits_cnn_batchnorm_gradients_match_finite_differences() {
    let path = fixtures().join("digits").join("digits_cnn.dynamo_bn.onnx");
    let (x, labels) = batch();
    let x = Tensor::from_vec(x.dims().to_vec(), x.to_f64_vec());
    let mut g = prepared(&load(&path), true);
    kestrel::driver::fold_for_codegen(&mut g, &path).unwrap_or_else(|e| panic!("{e:#}"));
    for mode in [BatchNormMode::Eval, BatchNormMode::Train { momentum: 0.9 }] {
        let options = TrainingOptions { batch_norm: mode };
        let tg = training_graph_with(
            &g,
            &ParamSelection::FloatConstants,
            &Loss::cross_entropy(),
            &options,
        )
        .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        kestrel_ir::verify(&tg.graph).unwrap();
        let mut f = vec![x.clone(); tg.graph.inputs.len()];
        for p in &tg.params {
            f[p.input_index] = p.init.clone();
        }
        f[tg.loss_inputs[0].1] = labels.clone();
        for r in &tg.running_stats {
            f[r.input_index] = r.init.clone();
        }
        let out = interp::run(&tg.graph, &f).unwrap();
        let h = 1e-6;
        for p in &tg.params {
            let grad = out[p.grad_output].to_f64_vec();
            for i in [0, grad.len() / 2, grad.len() - 1] {
                let at = |delta: f64| {
                    let mut v = p.init.to_f64_vec();
                    v[i] += delta;
                    let mut ff = f.clone();
                    ff[p.input_index] = Tensor::from_vec(p.init.dims().to_vec(), v);
                    interp::run(&tg.graph, &ff).unwrap()[0].to_f64_vec()[0]
                };
                let fd = (at(h) - at(-h)) / (2.0 * h);
                let tol = 1e-6 + 1e-4 * grad[i].abs().max(fd.abs());
                assert!(
                    (grad[i] - fd).abs() <= tol,
                    "{mode:?}: {} entry {i}: analytic {} vs finite difference {fd}",
                    p.name,
                    grad[i]
                );
            }
        }
        eprintln!(
            "{mode:?}: loss {}, {} parameters, {} running statistics",
            out[0].to_f64_vec()[0],
            tg.params.len(),
            tg.running_stats.len()
        );
        if let BatchNormMode::Train { .. } = mode {
            assert!(!tg.running_stats.is_empty());
        }
    }
}

/// The f32 training graph of the digits CNN with cross-entropy compiles on the JIT (2 threads)
/// and gives the interpreter's loss and gradients on the first `BATCH` images.
///
/// Tolerance: both run in f32, but the JIT's convolutions and matrix products accumulate in
/// another order (tiles, 4-lane partial sums, FMA) than the interpreter, and the weight
/// gradients are sums over the batch and every spatial position (up to 32·26·26 ≈ 2·10⁴ terms
/// of both signs), so a gradient entry differs by a few f32 roundings of the largest partial
/// sums, not of the entry itself. Each tensor is compared with an absolute bound relative to its
/// largest entry: `|jit - interp| ≤ 1e-4 · max(|interp|) + 1e-7` (the measured worst case is
/// printed; it is about 18× below the bound). The loss (a mean of 32 log-softmax terms) is
/// compared relatively to 1e-5.
#[test]
fn digits_cnn_training_graph_runs_on_the_jit() {
    use kestrel_backends::jit::{compile, JitOptions};
    let g = prepared(&model(), false);
    let tg = training_graph(&g, &ParamSelection::FloatConstants, &Loss::cross_entropy()).unwrap();
    // The ops the JIT lacked before: the conv input gradient and the max-pool gradient.
    for op in ["arg_max", "scatter_elements", "conv_transpose"] {
        assert!(
            tg.graph.nodes.iter().any(|n| n.op.name() == op),
            "no {op} in the training graph"
        );
    }
    let (x, labels) = batch();
    let params: Vec<Tensor> = tg.params.iter().map(|p| p.init.clone()).collect();
    let feeds = feed(&tg, x, labels, &params);
    let want = interp::run(&tg.graph, &feeds).unwrap();
    let m = compile(&tg.graph, &JitOptions::with_threads(2))
        .unwrap_or_else(|e| panic!("training graph on the JIT: {e}"));
    let got = m.run(&feeds).unwrap();
    assert_eq!(got.len(), want.len());
    let (l_got, l_want) = (got[0].to_f32_vec()[0], want[0].to_f32_vec()[0]);
    assert!(l_want.is_finite() && l_want > 0.0, "loss {l_want}");
    assert!(
        (l_got - l_want).abs() <= 1e-5 * l_want.abs(),
        "loss: jit {l_got} vs interp {l_want}"
    );
    for p in &tg.params {
        let (gj, gi) = (
            got[p.grad_output].to_f32_vec(),
            want[p.grad_output].to_f32_vec(),
        );
        assert_eq!(gj.len(), gi.len(), "{}", p.name);
        let scale = gi.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{} has a zero gradient", p.name);
        let worst = gj
            .iter()
            .zip(&gi)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!(
            "{}: max |jit - interp| {worst:e}, max |grad| {scale:e}",
            p.name
        );
        assert!(
            worst <= 1e-4 * scale + 1e-7,
            "{}: max |jit - interp| {worst} over max |grad| {scale}",
            p.name
        );
    }
}
