//! The optimiser update in IR (`autodiff::step_graph`) against the formulas computed by hand
//! (PyTorch's `SGD` and `AdamW`), over three steps on the interpreter, in f64.

use kestrel_backends::interp;
use kestrel_ir::{BinaryOp, DType, Graph, Op, Tensor, TensorType};
use kestrel_passes::autodiff::{
    step_graph, training_graph, DecayOn, Loss, Optimizer, ParamSelection, StepGraph,
};

/// `y = x·w + b` for x `[2, 3]`, w `[3, 2]`, b `[2]`, with mean squared error to `targets`.
fn model() -> Graph {
    let mut g = Graph::new("lin");
    let x = g.add_input("x", TensorType::known(DType::F64, &[2, 3]));
    let w = g.add_const(
        "w",
        Tensor::from_vec(vec![3, 2], vec![0.3f64, -0.2, 0.5, 0.1, -0.4, 0.25]),
    );
    let b = g.add_const("b", Tensor::from_vec(vec![2], vec![0.05f64, -0.1]));
    let xw = g.add(Op::MatMul, &[x, w], "mm").unwrap();
    let y = g.add(Op::Binary(BinaryOp::Add), &[xw, b], "add").unwrap();
    g.add_output("y", y);
    g
}

fn x() -> Tensor {
    Tensor::from_vec(vec![2, 3], vec![1.0f64, 2.0, -1.0, 0.5, -0.5, 3.0])
}

fn targets() -> Tensor {
    Tensor::from_vec(vec![2, 2], vec![1.0f64, 0.0, -1.0, 2.0])
}

/// The gradients of the loss for parameter values `w`, `b` (the training graph on the
/// interpreter: the reference the update must use).
fn grads(w: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let tg = training_graph(
        &model(),
        &ParamSelection::FloatConstants,
        &Loss::mean_squared_error(),
    )
    .unwrap();
    let mut feed = vec![x(); tg.graph.inputs.len()];
    feed[tg.params[0].input_index] = Tensor::from_vec(vec![3, 2], w.to_vec());
    feed[tg.params[1].input_index] = Tensor::from_vec(vec![2], b.to_vec());
    feed[tg.loss_inputs[0].1] = targets();
    let out = interp::run(&tg.graph, &feed).unwrap();
    (
        out[tg.params[0].grad_output].to_f64_vec(),
        out[tg.params[1].grad_output].to_f64_vec(),
    )
}

/// Runs `steps` steps of `sg` with learning rate `lr`, returning (w, b) after each.
fn run_steps(sg: &StepGraph, lr: f64, steps: u64) -> Vec<(Vec<f64>, Vec<f64>)> {
    let mut carried: Vec<Tensor> = sg.carried().map(|c| c.init.clone()).collect();
    let mut after = Vec::new();
    for t in 1..=steps {
        let mut feed = vec![x(); sg.graph.inputs.len()];
        feed[sg.loss_inputs[0].1] = targets();
        for (c, v) in sg.carried().zip(&carried) {
            feed[c.input_index] = v.clone();
        }
        for ((_, i), v) in sg.hyper.iter().zip(sg.optimizer.hyper_values(lr, t)) {
            feed[*i] = Tensor::scalar(v);
        }
        let out = interp::run(&sg.graph, &feed).unwrap();
        carried = sg.carried().map(|c| out[c.output].clone()).collect();
        after.push((carried[0].to_f64_vec(), carried[1].to_f64_vec()));
    }
    after
}

fn close(a: &[f64], b: &[f64], what: &str) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

#[test]
fn sgd_with_momentum_and_weight_decay_follows_pytorch() {
    let (mu, wd, lr) = (0.9, 0.1, 0.05);
    let tg = training_graph(
        &model(),
        &ParamSelection::FloatConstants,
        &Loss::mean_squared_error(),
    )
    .unwrap();
    let opt = Optimizer::Sgd {
        momentum: mu,
        weight_decay: wd,
    };
    let sg = step_graph(&tg, opt, DecayOn::Weights).unwrap();
    assert_eq!(sg.params.len(), 2);
    assert_eq!(sg.states.len(), 2, "one velocity per parameter");
    assert_eq!(sg.states[0].name, "velocity.w");
    let got = run_steps(&sg, lr, 3);
    let (mut w, mut b) = (
        tg.params[0].init.to_f64_vec(),
        tg.params[1].init.to_f64_vec(),
    );
    let (mut vw, mut vb) = (vec![0.0; 6], vec![0.0; 2]);
    for (t, (gw_got, gb_got)) in got.iter().enumerate() {
        let (gw, gb) = grads(&w, &b);
        for i in 0..6 {
            // Weight decay on w (rank 2) only; b is a bias.
            vw[i] = mu * vw[i] + gw[i] + wd * w[i];
            w[i] -= lr * vw[i];
        }
        for i in 0..2 {
            vb[i] = mu * vb[i] + gb[i];
            b[i] -= lr * vb[i];
        }
        close(gw_got, &w, &format!("w after step {}", t + 1));
        close(gb_got, &b, &format!("b after step {}", t + 1));
    }
}

#[test]
fn adamw_with_bias_correction_and_decoupled_decay_follows_pytorch() {
    let (b1, b2, eps, wd, lr) = (0.9, 0.999, 1e-8, 0.01, 0.01);
    let tg = training_graph(
        &model(),
        &ParamSelection::FloatConstants,
        &Loss::mean_squared_error(),
    )
    .unwrap();
    let sg = step_graph(&tg, Optimizer::adamw(wd), DecayOn::All).unwrap();
    assert_eq!(
        sg.hyper.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["lr", "bias_correction1", "bias_correction2"]
    );
    let got = run_steps(&sg, lr, 3);
    let mut p = [
        tg.params[0].init.to_f64_vec(),
        tg.params[1].init.to_f64_vec(),
    ];
    let mut m = [vec![0.0; 6], vec![0.0; 2]];
    let mut v = [vec![0.0; 6], vec![0.0; 2]];
    for (t, (w_got, b_got)) in got.iter().enumerate() {
        let (gw, gb) = grads(&p[0], &p[1]);
        let g = [gw, gb];
        let step = (t + 1) as i32;
        for k in 0..2 {
            for i in 0..p[k].len() {
                p[k][i] *= 1.0 - lr * wd;
                m[k][i] = b1 * m[k][i] + (1.0 - b1) * g[k][i];
                v[k][i] = b2 * v[k][i] + (1.0 - b2) * g[k][i] * g[k][i];
                let mh = m[k][i] / (1.0 - b1.powi(step));
                let vh = v[k][i] / (1.0 - b2.powi(step));
                p[k][i] -= lr * mh / (vh.sqrt() + eps);
            }
        }
        close(w_got, &p[0], &format!("w after step {}", t + 1));
        close(b_got, &p[1], &format!("b after step {}", t + 1));
    }
}
