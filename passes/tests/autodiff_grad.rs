//! Every gradient rule against central finite differences of the loss, on the interpreter.
//!
//! Each case builds a small f64 graph whose operands are constants (so they become the trained
//! parameters), a loss on its output, and compares the training graph's gradient of every
//! parameter entry with `(L(p + h) - L(p - h)) / 2h`, `h = 1e-5`. In f64 the truncation error is
//! `O(h²)·|L'''|` ≈ 1e-10 and the rounding error ≈ 1e-16/h ≈ 1e-11, so a tolerance of
//! `1e-6 + 1e-5·|g|` leaves three orders of magnitude of margin while a wrong rule (a missing
//! factor, a transposed operand, a lost broadcast sum) misses by far more.

use kestrel_backends::interp;
use kestrel_ir::testing::{Random, XorShift64};
use kestrel_ir::{
    AutoPad, BinaryOp, ConvAttrs, DType, GemmAttrs, Graph, Op, PoolAttrs, PoolKind, PrintOptions,
    ReduceAttrs, ReduceKind, Tensor, TensorType, UnaryOp, ValueId, WeightStyle, F32,
};
use kestrel_passes::autodiff::{
    training_graph, training_graph_with, BatchNormMode, Loss, ParamSelection, TrainingOptions,
};
use proptest::prelude::*;

const H: f64 = 1e-5;

fn f64_tensor(dims: &[usize], values: Vec<f64>) -> Tensor {
    Tensor::from_vec(dims.to_vec(), values)
}

fn random_values(rng: &mut XorShift64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.uniform_f64(lo, hi)).collect()
}

/// Distinct values at least 0.01 apart, shuffled: no ties or near-ties for max pooling or relu
/// kinks within `h`.
fn distinct_values(rng: &mut XorShift64, n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n)
        .map(|i| (i as f64 - n as f64 / 2.0) * 0.05 + 0.013)
        .collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        v.swap(i, j);
    }
    v
}

fn konst(g: &mut Graph, name: &str, dims: &[usize], values: Vec<f64>) -> ValueId {
    g.add_const(name, f64_tensor(dims, values))
}

/// The loss the training graph computes for `inputs`, and its outputs.
fn run(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    interp::run(g, inputs).expect("the training graph runs on the interpreter")
}

/// Checks every parameter entry (up to `max_entries` per parameter, spread evenly) of the
/// training graph of `forward` for `loss` against central differences.
fn check_gradients(
    forward: &Graph,
    loss: &Loss,
    inputs: Vec<Tensor>,
    extra: Vec<Tensor>,
    max_entries: usize,
) -> Result<(), TestCaseError> {
    check_gradients_with(
        forward,
        loss,
        inputs,
        extra,
        max_entries,
        &TrainingOptions::default(),
        &ParamSelection::FloatConstants,
    )
}

/// [`check_gradients`] of the MSE against random targets, training only the constants named.
fn check_named(forward: &Graph, names: &[&str], seed: u64) -> Result<(), TestCaseError> {
    let out = forward.outputs[0].value;
    let dims = forward.ty(out).dims().unwrap();
    let mut rng = XorShift64::seeded(seed ^ 0x5eed);
    let targets = f64_tensor(
        &dims,
        random_values(&mut rng, dims.iter().product(), -1.0, 1.0),
    );
    let sel = ParamSelection::Named(names.iter().map(|n| n.to_string()).collect());
    let options = TrainingOptions::default();
    check_gradients_with(
        forward,
        &Loss::mean_squared_error(),
        vec![],
        vec![targets],
        64,
        &options,
        &sel,
    )
}

/// [`check_gradients`] with options, for the parameters `sel` picks; running statistics are fed
/// their initial values.
fn check_gradients_with(
    forward: &Graph,
    loss: &Loss,
    inputs: Vec<Tensor>,
    extra: Vec<Tensor>,
    max_entries: usize,
    options: &TrainingOptions,
    sel: &ParamSelection,
) -> Result<(), TestCaseError> {
    let tg = training_graph_with(forward, sel, loss, options)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    kestrel_ir::verify(&tg.graph).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    let mut feed: Vec<Tensor> = inputs;
    feed.extend(tg.params.iter().map(|p| p.init.clone()));
    feed.extend(extra);
    feed.extend(tg.running_stats.iter().map(|r| r.init.clone()));
    let out = run(&tg.graph, &feed);
    for p in &tg.params {
        let grad = out[p.grad_output].to_f64_vec();
        let base = p.init.to_f64_vec();
        prop_assert_eq!(grad.len(), base.len());
        let step = base.len().div_ceil(max_entries).max(1);
        for i in (0..base.len()).step_by(step) {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                let mut f = feed.clone();
                f[p.input_index] = f64_tensor(p.init.dims(), v);
                run(&tg.graph, &f)[0].to_f64_vec()[0]
            };
            let fd = (at(H) - at(-H)) / (2.0 * H);
            let tol = 1e-6 + 1e-5 * grad[i].abs().max(fd.abs());
            prop_assert!(
                (grad[i] - fd).abs() <= tol,
                "parameter {} entry {}: analytic {} vs finite difference {}",
                p.name,
                i,
                grad[i],
                fd
            );
        }
    }
    Ok(())
}

/// Mean squared error of output 0 against random targets.
fn check_mse(g: &Graph, seed: u64, max_entries: usize) -> Result<(), TestCaseError> {
    let out = g.outputs[0].value;
    let dims = g.ty(out).dims().unwrap();
    let mut rng = XorShift64::seeded(seed ^ 0x5eed);
    let targets = f64_tensor(
        &dims,
        random_values(&mut rng, dims.iter().product(), -1.0, 1.0),
    );
    check_gradients(
        g,
        &Loss::mean_squared_error(),
        vec![],
        vec![targets],
        max_entries,
    )
}

const UNARY_OPS: [UnaryOp; 17] = [
    UnaryOp::Relu,
    UnaryOp::Sigmoid,
    UnaryOp::Tanh,
    UnaryOp::Neg,
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Sqrt,
    UnaryOp::Reciprocal,
    UnaryOp::Abs,
    UnaryOp::LeakyRelu { alpha: F32(0.1) },
    UnaryOp::Clip {
        min: F32(-0.3),
        max: F32(0.4),
    },
    UnaryOp::HardSigmoid {
        alpha: F32(1.0),
        beta: F32(0.5),
    },
    UnaryOp::HardSwish,
    UnaryOp::Silu,
    UnaryOp::Softplus,
    UnaryOp::Gelu { tanh_approx: false },
    UnaryOp::Gelu { tanh_approx: true },
];

/// Broadcast-compatible operand extents: each axis of the output is taken by both, by one
/// (the other 1), and the second operand may have fewer axes.
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec((1usize..4, 0u8..3), 1..4).prop_flat_map(|axes| {
        let a: Vec<usize> = axes
            .iter()
            .map(|&(d, m)| if m == 1 { 1 } else { d })
            .collect();
        let b: Vec<usize> = axes
            .iter()
            .map(|&(d, m)| if m == 2 { 1 } else { d })
            .collect();
        let rank = b.len();
        (
            Just(a),
            (0..=rank).prop_map(move |drop| b[drop.min(rank - 1)..].to_vec()),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every unary rule on each random shape.
    #[test]
    fn unary_rules(dims in prop::collection::vec(1usize..4, 1..4), seed: u64) {
        for op in UNARY_OPS {
            let mut rng = XorShift64::seeded(seed);
            let n = dims.iter().product();
            let values = match op {
                // Away from the domain edge and the kink.
                UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Reciprocal => random_values(&mut rng, n, 0.5, 2.0),
                // Spread over the kinks at ±3.
                UnaryOp::HardSwish => distinct_values(&mut rng, n).into_iter().map(|v| v * 10.0).collect(),
                _ => distinct_values(&mut rng, n),
            };
            let mut g = Graph::new("unary");
            let x = konst(&mut g, "x", &dims, values);
            let y = g.add(Op::Unary(op), &[x], "u").unwrap();
            g.add_output("y", y);
            check_mse(&g, seed, 64).map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))?;
        }
    }

    /// Every binary rule on each random pair of broadcast-compatible shapes.
    #[test]
    fn binary_rules_broadcast((da, db) in broadcast_pair(), swap: bool, seed: u64) {
        let (da, db) = if swap { (db, da) } else { (da, db) };
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min] {
            let mut rng = XorShift64::seeded(seed);
            let mut g = Graph::new("binary");
            let a = konst(&mut g, "a", &da, random_values(&mut rng, da.iter().product(), -1.0, 1.0));
            // Divisors away from zero.
            let bv: Vec<f64> = random_values(&mut rng, db.iter().product(), 0.5, 1.5).into_iter().enumerate()
                .map(|(i, v)| if i % 2 == 0 { v } else { -v }).collect();
            let b = konst(&mut g, "b", &db, bv);
            let y = g.add(Op::Binary(op), &[a, b], "bin").unwrap();
            g.add_output("y", y);
            check_mse(&g, seed, 64).map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))?;
        }
    }

    #[test]
    fn gemm_rule(m in 1usize..4, k in 1usize..4, n in 1usize..4, ta: bool, tb: bool, c_form in 0usize..4,
                 alpha in prop_oneof![Just(1.0f32), Just(0.5f32), Just(-2.0f32)], beta in prop_oneof![Just(1.0f32), Just(0.25f32)], seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("gemm");
        let ad = if ta { [k, m] } else { [m, k] };
        let bd = if tb { [n, k] } else { [k, n] };
        let a = konst(&mut g, "a", &ad, random_values(&mut rng, m * k, -1.0, 1.0));
        let b = konst(&mut g, "b", &bd, random_values(&mut rng, k * n, -1.0, 1.0));
        let mut inputs = vec![a, b];
        let cd: Option<Vec<usize>> = [None, Some(vec![n]), Some(vec![m, n]), Some(vec![1, n])][c_form].clone();
        if let Some(cd) = cd {
            inputs.push(konst(&mut g, "c", &cd, random_values(&mut rng, cd.iter().product(), -1.0, 1.0)));
        }
        let op = Op::Gemm(GemmAttrs { alpha: F32(alpha), beta: F32(beta), trans_a: ta, trans_b: tb, ..Default::default() });
        let has_c = inputs.len() > 2;
        let y = g.add(op, &inputs, "gemm").unwrap();
        g.add_output("y", y);
        // All operands trained (transposed parameters become explicit transposes), then one at
        // a time, the others constants that keep their transpose flags.
        check_mse(&g, seed, 64)?;
        check_named(&g, &["a"], seed)?;
        check_named(&g, &["b"], seed)?;
        if has_c {
            check_named(&g, &["c"], seed)?;
        }
    }

    #[test]
    fn matmul_rule(batch_a in prop::collection::vec(1usize..3, 0..2), b_batched: bool, m in 1usize..4, k in 1usize..4, n in 1usize..4, seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("matmul");
        let mut ad = batch_a.clone();
        ad.extend([m, k]);
        // B either shares A's batch axes or has none (broadcast over them).
        let mut bd = if b_batched { batch_a.clone() } else { vec![] };
        bd.extend([k, n]);
        let a = konst(&mut g, "a", &ad, random_values(&mut rng, ad.iter().product(), -1.0, 1.0));
        let b = konst(&mut g, "b", &bd, random_values(&mut rng, bd.iter().product(), -1.0, 1.0));
        let y = g.add(Op::MatMul, &[a, b], "mm").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 64)?;
    }

    #[test]
    fn conv_rule(batch in 1usize..3, cg in 1usize..3, mg in 1usize..3, group in prop_oneof![Just(1usize), Just(2usize)],
                 rank2: bool, kernel in 1usize..4, stride in 1usize..3, dilation in 1usize..3,
                 pad_b in 0usize..2, pad_e in 0usize..3, extra in 0usize..3, bias: bool, auto_pad in 0usize..4, seed: u64) {
        let k = if rank2 { 2 } else { 1 };
        let (c, m) = (cg * group, mg * group);
        let extent = dilation * (kernel - 1) + 1 + extra;
        let mut xd = vec![batch, c];
        xd.extend(vec![extent; k]);
        let mut wd = vec![m, cg];
        wd.extend(vec![kernel; k]);
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("conv");
        let x = konst(&mut g, "x", &xd, random_values(&mut rng, xd.iter().product(), -1.0, 1.0));
        let w = konst(&mut g, "w", &wd, random_values(&mut rng, wd.iter().product(), -1.0, 1.0));
        let mut inputs = vec![x, w];
        if bias {
            inputs.push(konst(&mut g, "b", &[m], random_values(&mut rng, m, -1.0, 1.0)));
        }
        let mut pads = vec![pad_b; k];
        pads.extend(vec![pad_e; k]);
        let op = Op::Conv(ConvAttrs { strides: vec![stride; k], pads, dilations: vec![dilation; k], group,
            auto_pad: [AutoPad::NotSet, AutoPad::SameUpper, AutoPad::SameLower, AutoPad::Valid][auto_pad], ..Default::default() });
        let y = g.add(op, &inputs, "conv").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 24)?;
    }

    #[test]
    fn depthwise_conv_rule(c in 1usize..4, kernel in 1usize..4, stride in 1usize..3, pad in 0usize..2, seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("depthwise");
        let xd = [2, c, 5, 4];
        let x = konst(&mut g, "x", &xd, random_values(&mut rng, xd.iter().product(), -1.0, 1.0));
        let w = konst(&mut g, "w", &[c, 1, kernel, kernel], random_values(&mut rng, c * kernel * kernel, -1.0, 1.0));
        let op = Op::Conv(ConvAttrs { strides: vec![stride; 2], pads: vec![pad; 4], group: c, ..Default::default() });
        let y = g.add(op, &[x, w], "dw").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 24)?;
    }

    #[test]
    fn pool_rules(max: bool, rank2: bool, kernel in 1usize..4, stride in 1usize..3, dilation in 1usize..3, pad in 0usize..2,
                  ceil_mode: bool, count_include_pad: bool, extra in 0usize..3, seed: u64) {
        let k = if rank2 { 2 } else { 1 };
        let pad = pad.min(kernel / 2); // ONNX: pads smaller than the kernel's half.
        let extent = dilation * (kernel - 1) + 1 + extra;
        let mut xd = vec![2, 2];
        xd.extend(vec![extent; k]);
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("pool");
        let x = konst(&mut g, "x", &xd, distinct_values(&mut rng, xd.iter().product()));
        let op = Op::Pool(PoolAttrs {
            kind: if max { PoolKind::Max } else { PoolKind::Average },
            kernel: vec![kernel; k],
            strides: vec![stride; k],
            pads: vec![pad; 2 * k],
            dilations: if max { vec![dilation; k] } else { vec![] },
            ceil_mode,
            count_include_pad,
            auto_pad: Default::default(),
        });
        let y = g.add(op, &[x], "pool").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 48)?;
    }

    #[test]
    fn global_average_pool_rule(n in 1usize..3, c in 1usize..3, h in 1usize..4, w in 1usize..4, seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("gap");
        let x = konst(&mut g, "x", &[n, c, h, w], random_values(&mut rng, n * c * h * w, -1.0, 1.0));
        let y = g.add(Op::GlobalPool(PoolKind::Average), &[x], "gap").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 48)?;
    }

    #[test]
    fn shape_rules(dims in prop::collection::vec(1usize..4, 2..5), which in 0usize..3, seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("shape");
        let n: usize = dims.iter().product();
        let x = konst(&mut g, "x", &dims, random_values(&mut rng, n, -1.0, 1.0));
        // A non-linear consumer, so that the gradient depends on where each element moved.
        let y = match which {
            0 => g.add(Op::Flatten { axis: 1 }, &[x], "flatten").unwrap(),
            1 => {
                let s = g.add_const("shape", Tensor::from_vec(vec![2], vec![dims[0] as i64, -1]));
                g.add(Op::Reshape { allowzero: false }, &[x, s], "reshape").unwrap()
            }
            _ => {
                let perm: Vec<usize> = (0..dims.len()).rev().collect();
                g.add(Op::Transpose { perm }, &[x], "transpose").unwrap()
            }
        };
        let yd = g.ty(y).dims().unwrap();
        let w = konst(&mut g, "w", &yd, random_values(&mut rng, n, -1.0, 1.0));
        let y = g.add(Op::Binary(BinaryOp::Mul), &[y, w], "scale").unwrap();
        let y = g.add(Op::Unary(UnaryOp::Tanh), &[y], "tanh").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 48)?;
    }

    #[test]
    fn softmax_rules(dims in prop::collection::vec(1usize..4, 1..4), axis_pick in 0usize..3, log: bool, seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let axis = (axis_pick % dims.len()) as i64;
        let mut g = Graph::new("softmax");
        let x = konst(&mut g, "x", &dims, random_values(&mut rng, dims.iter().product(), -2.0, 2.0));
        let op = if log { Op::LogSoftmax { axis } } else { Op::Softmax { axis } };
        let y = g.add(op, &[x], "sm").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 48)?;
    }

    #[test]
    fn batchnorm_eval_rule(n in 1usize..3, c in 1usize..4, hw in 0usize..3, seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut dims = vec![n, c];
        dims.extend(vec![2; hw]);
        let mut g = Graph::new("bn");
        let x = konst(&mut g, "x", &dims, random_values(&mut rng, dims.iter().product(), -1.0, 1.0));
        let scale = konst(&mut g, "scale", &[c], random_values(&mut rng, c, 0.5, 1.5));
        let bias = konst(&mut g, "bias", &[c], random_values(&mut rng, c, -1.0, 1.0));
        let mean = konst(&mut g, "mean", &[c], random_values(&mut rng, c, -0.5, 0.5));
        let var = konst(&mut g, "var", &[c], random_values(&mut rng, c, 0.5, 2.0));
        let y = g.add(Op::BatchNorm { epsilon: F32(1e-3) }, &[x, scale, bias, mean, var], "bn").unwrap();
        let y = g.add(Op::Unary(UnaryOp::Tanh), &[y], "tanh").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 48)?;
    }

    #[test]
    fn losses(n in 1usize..4, classes in 2usize..5, which in 0usize..4, temperature in prop_oneof![Just(1.0f64), Just(4.0f64)], seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("logits");
        let z = konst(&mut g, "z", &[n, classes], random_values(&mut rng, n * classes, -2.0, 2.0));
        let y = g.add(Op::Identity, &[z], "id").unwrap();
        g.add_output("logits", y);
        let labels = Tensor::from_vec(vec![n], (0..n).map(|_| rng.below(classes) as i64).collect::<Vec<_>>());
        let teacher = f64_tensor(&[n, classes], random_values(&mut rng, n * classes, -3.0, 3.0));
        let (loss, extra) = match which {
            0 => (Loss::cross_entropy(), vec![labels]),
            1 => (Loss::mean_squared_error(), vec![teacher]),
            2 => (Loss::distillation(temperature, 1.0), vec![teacher]),
            _ => (Loss::distillation(temperature, 0.7), vec![teacher, labels]),
        };
        check_gradients(&g, &loss, vec![], extra, 64)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn concat_rule(parts in prop::collection::vec(1usize..4, 1..4), axis in 0usize..2, seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("concat");
        let inputs: Vec<ValueId> = parts.iter().enumerate().map(|(i, &len)| {
            let dims = if axis == 0 { vec![len, 2] } else { vec![2, len] };
            konst(&mut g, &format!("x{i}"), &dims, random_values(&mut rng, 2 * len, -1.0, 1.0))
        }).collect();
        let y = g.add(Op::Concat { axis: axis as i64 }, &inputs, "concat").unwrap();
        let y = g.add(Op::Unary(UnaryOp::Tanh), &[y], "tanh").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 48)?;
    }

    #[test]
    fn slice_rule(d0 in 1usize..5, d1 in 1usize..5, start in -5i64..5, end in -6i64..6, step in prop_oneof![Just(1i64), Just(2), Just(-1), Just(-2)],
                  axis in 0i64..2, seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("slice");
        let x = konst(&mut g, "x", &[d0, d1], random_values(&mut rng, d0 * d1, -1.0, 1.0));
        let ext = if axis == 0 { d0 } else { d1 };
        prop_assume!(kestrel_ir::slice_extent(ext, start, end, step) > 0);
        // A start below -extent with a negative step: inference (ONNX clamping) and the
        // interpreter disagree on the extent; not an autodiff matter.
        prop_assume!(start >= -(ext as i64));
        let c = |g: &mut Graph, name: &str, v: i64| g.add_const(name, Tensor::from_vec(vec![1], vec![v]));
        let (s, e, a, st) = (c(&mut g, "s", start), c(&mut g, "e", end), c(&mut g, "a", axis), c(&mut g, "st", step));
        let y = g.add(Op::Slice, &[x, s, e, a, st], "slice").unwrap();
        let y = g.add(Op::Unary(UnaryOp::Tanh), &[y], "tanh").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 48)?;
    }

    #[test]
    fn gather_rule(d0 in 1usize..4, d1 in 1usize..4, axis in 0usize..2, picks in prop::collection::vec(0usize..16, 1..6), seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("gather");
        let x = konst(&mut g, "x", &[d0, d1], random_values(&mut rng, d0 * d1, -1.0, 1.0));
        let ext = [d0, d1][axis] as i64;
        // Repeats and negative indices included.
        let idx: Vec<i64> = picks.iter().enumerate().map(|(i, &p)| {
            let k = p as i64 % ext;
            if i % 2 == 1 { k - ext } else { k }
        }).collect();
        let ind = g.add_const("idx", Tensor::from_vec(vec![idx.len()], idx));
        let y = g.add(Op::Gather { axis: axis as i64 }, &[x, ind], "gather").unwrap();
        let y = g.add(Op::Unary(UnaryOp::Tanh), &[y], "tanh").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 48)?;
    }

    #[test]
    fn layer_norm_rule(dims in prop::collection::vec(1usize..4, 2..4), axis_pick in 0usize..3, bias: bool, seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let axis = 1 + axis_pick % (dims.len() - 1);
        let mut g = Graph::new("ln");
        let x = konst(&mut g, "x", &dims, random_values(&mut rng, dims.iter().product(), -1.0, 1.0));
        let sd = dims[axis..].to_vec();
        let scale = konst(&mut g, "scale", &sd, random_values(&mut rng, sd.iter().product(), 0.5, 1.5));
        let mut inputs = vec![x, scale];
        if bias {
            inputs.push(konst(&mut g, "bias", &sd, random_values(&mut rng, sd.iter().product(), -1.0, 1.0)));
        }
        let y = g.add(Op::LayerNorm { axis: axis as i64, epsilon: F32(1e-3) }, &inputs, "ln").unwrap();
        let y = g.add(Op::Unary(UnaryOp::Tanh), &[y], "tanh").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 48)?;
    }

    #[test]
    fn global_max_pool_rule(n in 1usize..3, c in 1usize..3, h in 1usize..4, w in 1usize..4, seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("gmp");
        let x = konst(&mut g, "x", &[n, c, h, w], distinct_values(&mut rng, n * c * h * w));
        let y = g.add(Op::GlobalPool(PoolKind::Max), &[x], "gmp").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 48)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn reduce_rules(dims in prop::collection::vec(1usize..4, 1..4), axes_mask in 0u8..8, keepdims: bool, mean: bool, seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("reduce");
        let x = konst(&mut g, "x", &dims, random_values(&mut rng, dims.iter().product(), -1.0, 1.0));
        let axes: Vec<i64> = (0..dims.len() as i64).filter(|&a| axes_mask & (1 << a) != 0).collect();
        let op = Op::Reduce(ReduceAttrs { kind: if mean { ReduceKind::Mean } else { ReduceKind::Sum }, keepdims, noop_with_empty_axes: false });
        let y = if axes.is_empty() {
            g.add(op, &[x], "reduce").unwrap()
        } else {
            let a = g.add_const("axes", Tensor::from_vec(vec![axes.len()], axes));
            g.add(op, &[x, a], "reduce").unwrap()
        };
        let y = g.add(Op::Unary(UnaryOp::Tanh), &[y], "tanh").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 48)?;
    }

    #[test]
    fn batchnorm_train_rule(n in 1usize..4, c in 1usize..4, hw in 0usize..3, seed: u64) {
        prop_assume!(n * (1 << hw) > 1); // one value per channel has no variance
        let mut rng = XorShift64::seeded(seed);
        let mut dims = vec![n, c];
        dims.extend(vec![2; hw]);
        let mut g = Graph::new("bn_train");
        let x = konst(&mut g, "x", &dims, random_values(&mut rng, dims.iter().product(), -1.0, 1.0));
        let scale = konst(&mut g, "scale", &[c], random_values(&mut rng, c, 0.5, 1.5));
        let bias = konst(&mut g, "bias", &[c], random_values(&mut rng, c, -1.0, 1.0));
        let mean = konst(&mut g, "mean", &[c], random_values(&mut rng, c, -0.5, 0.5));
        let var = konst(&mut g, "var", &[c], random_values(&mut rng, c, 0.5, 2.0));
        let y = g.add(Op::BatchNorm { epsilon: F32(1e-3) }, &[x, scale, bias, mean, var], "bn").unwrap();
        let y = g.add(Op::Unary(UnaryOp::Tanh), &[y], "tanh").unwrap();
        g.add_output("y", y);
        let mut trng = XorShift64::seeded(seed ^ 0x5eed);
        let targets = f64_tensor(&dims, random_values(&mut trng, dims.iter().product(), -1.0, 1.0));
        let options = TrainingOptions { batch_norm: BatchNormMode::Train { momentum: 0.9 } };
        check_gradients_with(&g, &Loss::mean_squared_error(), vec![], vec![targets], 48, &options, &ParamSelection::FloatConstants)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn pow_rule((da, db) in broadcast_pair(), swap: bool, seed: u64) {
        let (da, db) = if swap { (db, da) } else { (da, db) };
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("pow");
        let a = konst(&mut g, "a", &da, random_values(&mut rng, da.iter().product(), 0.5, 2.0));
        let b = konst(&mut g, "b", &db, random_values(&mut rng, db.iter().product(), -2.0, 2.0));
        let y = g.add(Op::Binary(BinaryOp::Pow), &[a, b], "pow").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 64)?;
    }

    #[test]
    fn where_rule((da, db) in broadcast_pair(), seed: u64) {
        let mut rng = XorShift64::seeded(seed);
        let mut g = Graph::new("where");
        let a = konst(&mut g, "a", &da, random_values(&mut rng, da.iter().product(), -1.0, 1.0));
        let b = konst(&mut g, "b", &db, random_values(&mut rng, db.iter().product(), -1.0, 1.0));
        let n: usize = da.iter().product();
        let cond = g.add_const("cond", Tensor::from_vec(da.clone(), (0..n).map(|_| rng.below(2) == 1).collect::<Vec<bool>>()));
        let y = g.add(Op::Where, &[cond, a, b], "where").unwrap();
        g.add_output("y", y);
        check_mse(&g, seed, 64)?;
    }
}

/// Training-mode BatchNorm normalises with the batch statistics and updates the running ones:
/// x = [1, 3] on one channel has mean 2 and variance 1.
#[test]
fn batchnorm_train_statistics() {
    let mut g = Graph::new("bn");
    let x = g.add_input("x", TensorType::known(DType::F64, &[2, 1]));
    let scale = konst(&mut g, "scale", &[1], vec![2.0]);
    let bias = konst(&mut g, "bias", &[1], vec![0.5]);
    let mean = konst(&mut g, "mean", &[1], vec![0.0]);
    let var = konst(&mut g, "var", &[1], vec![1.0]);
    let y = g
        .add(
            Op::BatchNorm { epsilon: F32(0.0) },
            &[x, scale, bias, mean, var],
            "bn",
        )
        .unwrap();
    g.add_output("y", y);
    let options = TrainingOptions {
        batch_norm: BatchNormMode::Train { momentum: 0.9 },
    };
    let tg = training_graph_with(
        &g,
        &ParamSelection::FloatConstants,
        &Loss::mean_squared_error(),
        &options,
    )
    .unwrap();
    assert_eq!(
        tg.params
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["scale", "bias"]
    );
    assert_eq!(
        tg.running_stats
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["mean", "var"]
    );
    let mut feed = vec![f64_tensor(&[2, 1], vec![1.0, 3.0])];
    feed.extend(tg.params.iter().map(|p| p.init.clone()));
    feed.push(f64_tensor(&[2, 1], vec![0.0, 0.0]));
    feed.extend(tg.running_stats.iter().map(|r| r.init.clone()));
    let out = run(&tg.graph, &feed);
    // y = (x - 2)/1·2 + 0.5
    assert_eq!(out[1].to_f64_vec(), vec![-1.5, 2.5]);
    let new_mean = out[tg.running_stats[0].output].to_f64_vec()[0];
    let new_var = out[tg.running_stats[1].output].to_f64_vec()[0];
    assert!((new_mean - 0.2).abs() < 1e-12, "{new_mean}");
    assert!((new_var - 1.0).abs() < 1e-12, "{new_var}");
}

/// Hand-computed values: cross-entropy of uniform logits is ln K, its gradient (1/K - onehot)/N.
#[test]
fn cross_entropy_values() {
    let mut g = Graph::new("ce");
    let z = konst(&mut g, "z", &[2, 4], vec![0.0; 8]);
    let y = g.add(Op::Identity, &[z], "id").unwrap();
    g.add_output("logits", y);
    let tg = training_graph(&g, &ParamSelection::FloatConstants, &Loss::cross_entropy()).unwrap();
    let labels = Tensor::from_vec(vec![2], vec![1i64, 3]);
    let out = run(&tg.graph, &[tg.params[0].init.clone(), labels]);
    assert!((out[0].to_f64_vec()[0] - 4f64.ln()).abs() < 1e-12);
    let grad = out[tg.params[0].grad_output].to_f64_vec();
    let want = [0.125, -0.375, 0.125, 0.125, 0.125, 0.125, 0.125, -0.375];
    for (g, w) in grad.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{grad:?}");
    }
    assert_eq!(tg.graph.outputs[0].name, "loss");
    assert_eq!(
        tg.graph.ty(tg.graph.outputs[0].value),
        &TensorType::scalar(DType::F64)
    );
}

/// A node between a parameter and the loss without a rule is an error naming it.
#[test]
fn missing_rule_names_the_node() {
    let mut g = Graph::new("erf");
    let x = konst(&mut g, "x", &[3], vec![0.1, 0.2, 0.3]);
    let y = g.add(Op::Unary(UnaryOp::Erf), &[x], "my_erf").unwrap();
    g.add_output("y", y);
    let err = training_graph(
        &g,
        &ParamSelection::FloatConstants,
        &Loss::mean_squared_error(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "node 0 \"my_erf\" (erf): no gradient rule for input 0"
    );
}

/// The error numbers the node as the forward graph does, even when the training graph has
/// inserted nodes before it (here the explicit transpose of the gemm's parameter).
#[test]
fn missing_rule_names_the_forward_node() {
    let mut g = Graph::new("gemm_erf");
    let a = konst(&mut g, "a", &[2, 3], vec![0.1; 6]);
    let b = konst(&mut g, "b", &[4, 3], vec![0.2; 12]);
    let gemm = Op::Gemm(GemmAttrs {
        trans_b: true,
        ..Default::default()
    });
    let y = g.add(gemm, &[a, b], "fc").unwrap();
    let y = g.add(Op::Unary(UnaryOp::Erf), &[y], "act").unwrap();
    g.add_output("y", y);
    let err = training_graph(
        &g,
        &ParamSelection::FloatConstants,
        &Loss::mean_squared_error(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "node 1 \"act\" (erf): no gradient rule for input 0"
    );
}

/// Named parameters: only those become inputs; an unknown name is an error.
#[test]
fn named_parameters() {
    let mut g = Graph::new("named");
    let a = konst(&mut g, "a", &[2], vec![1.0, 2.0]);
    let b = konst(&mut g, "b", &[2], vec![3.0, 4.0]);
    let y = g.add(Op::Binary(BinaryOp::Mul), &[a, b], "mul").unwrap();
    g.add_output("y", y);
    let sel = ParamSelection::Named(vec!["b".into()]);
    let tg = training_graph(&g, &sel, &Loss::mean_squared_error()).unwrap();
    assert_eq!(tg.params.len(), 1);
    assert_eq!(tg.params[0].name, "b");
    let targets = f64_tensor(&[2], vec![0.0, 0.0]);
    let out = run(&tg.graph, &[tg.params[0].init.clone(), targets]);
    // L = mean((a·b)²): dL/db = a²·b = [3, 16].
    assert_eq!(out[tg.params[0].grad_output].to_f64_vec(), vec![3.0, 16.0]);
    let err = training_graph(
        &g,
        &ParamSelection::Named(vec!["c".into()]),
        &Loss::mean_squared_error(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter \"c\" is not a float constant of the graph"
    );
}

/// A training graph prints, parses back to the same text, and the parsed graph computes the same
/// loss and gradients (weights printed inline).
#[test]
fn training_graph_round_trips_through_text() {
    let mut rng = XorShift64::seeded(7);
    let mut g = Graph::new("cnn");
    let x = g.add_input("x", TensorType::known(DType::F64, &[2, 1, 4, 4]));
    let w = konst(
        &mut g,
        "w",
        &[2, 1, 3, 3],
        random_values(&mut rng, 18, -1.0, 1.0),
    );
    let b = konst(&mut g, "b", &[2], random_values(&mut rng, 2, -1.0, 1.0));
    let c = g
        .add(
            Op::Conv(ConvAttrs {
                pads: vec![1; 4],
                group: 1,
                ..Default::default()
            }),
            &[x, w, b],
            "conv",
        )
        .unwrap();
    let r = g.add(Op::Unary(UnaryOp::Relu), &[c], "relu").unwrap();
    let pool = PoolAttrs {
        kind: PoolKind::Max,
        kernel: vec![2, 2],
        strides: vec![2, 2],
        pads: vec![],
        dilations: vec![],
        ceil_mode: false,
        count_include_pad: false,
        auto_pad: AutoPad::NotSet,
    };
    let p = g.add(Op::Pool(pool), &[r], "pool").unwrap();
    let f = g.add(Op::Flatten { axis: 1 }, &[p], "flatten").unwrap();
    let fc = konst(
        &mut g,
        "fc",
        &[3, 8],
        random_values(&mut rng, 24, -1.0, 1.0),
    );
    let y = g
        .add(
            Op::Gemm(GemmAttrs {
                trans_b: true,
                ..Default::default()
            }),
            &[f, fc],
            "fc",
        )
        .unwrap();
    g.add_output("logits", y);
    let tg = training_graph(&g, &ParamSelection::FloatConstants, &Loss::cross_entropy()).unwrap();
    let opts = PrintOptions::new(WeightStyle::Inline);
    let text = kestrel_ir::print(&tg.graph, &opts).text;
    let parsed = kestrel_ir::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(kestrel_ir::print(&parsed, &opts).text, text);
    let mut feed = vec![f64_tensor(
        &[2, 1, 4, 4],
        random_values(&mut rng, 32, -1.0, 1.0),
    )];
    feed.extend(tg.params.iter().map(|p| p.init.clone()));
    feed.push(Tensor::from_vec(vec![2], vec![0i64, 2]));
    let a = run(&tg.graph, &feed);
    let b = run(&parsed, &feed);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.to_f64_vec(), y.to_f64_vec());
    }
}
