//! Winograd F(4×4, 3×3) convolutions (`jit::ops::winograd`, docs/JIT.md) against the interpreter
//! and the direct convolution: random shapes the cost rule picks (edge tiles in both axes:
//! output sizes not multiples of 4 or 16; every padding; bias, residual, activation; batches),
//! with the full-width and the 128-bit GEMM kernels and 1 and 2 tasks, which give the same bits;
//! and the rule itself.

use kestrel_backends::interp;
use kestrel_backends::jit::ops::conv::uses_winograd;
use kestrel_backends::jit::{compile, constant_values, JitOptions};
use kestrel_ir::testing::{check_close, Random, XorShift64};
use kestrel_ir::*;
use proptest::prelude::*;

fn tensor(dims: &[usize], seed: u64) -> Tensor {
    XorShift64::seeded(seed).tensor_f32(dims, -1.0, 1.0)
}

fn opts(winograd: bool, wide_kernels: bool, threads: usize) -> JitOptions {
    JitOptions {
        winograd,
        wide_kernels,
        min_task_macs: 1,
        ..JitOptions::with_threads(threads)
    }
}

/// A 3×3 convolution `x [n, c, h, w]` → `m` channels with the given pads and epilogue; the
/// graph and its inputs.
#[allow(clippy::too_many_arguments)]
fn conv_graph(
    (n, c, h, w): (usize, usize, usize, usize),
    m: usize,
    pads: [usize; 4],
    stride: usize,
    bias: bool,
    residual: bool,
    act: Option<UnaryOp>,
    seed: u64,
) -> (Graph, Vec<Tensor>) {
    let a = ConvAttrs {
        pads: pads.to_vec(),
        strides: vec![stride; 2],
        group: 1,
        epilogue: Epilogue {
            act,
            residual,
            channel_scale: false,
        },
        ..Default::default()
    };
    let mut g = Graph::new("winograd");
    let x = g.add_input("x", TensorType::known(DType::F32, &[n, c, h, w]));
    // Weights of the magnitude a trained layer has (about 1/sqrt(fan-in)).
    let scale = 1.0 / ((9 * c) as f32).sqrt();
    let wt = XorShift64::seeded(seed + 1).tensor_f32(&[m, c, 3, 3], -scale, scale);
    let mut ins = vec![x, g.add_const("w", wt)];
    if bias || residual {
        ins.push(g.add_const("b", tensor(&[m], seed + 2)));
    }
    let plain = ConvAttrs {
        epilogue: Epilogue::default(),
        ..a.clone()
    };
    let probe = g.add(Op::Conv(plain), &ins[..2], "probe").unwrap();
    let od = g.ty(probe).dims().unwrap();
    let mut inputs = vec![tensor(&[n, c, h, w], seed)];
    if residual {
        ins.push(g.add_input("r", TensorType::known(DType::F32, &od)));
        inputs.push(tensor(&od, seed + 3));
    }
    let y = g.add(Op::Conv(a), &ins, "conv").unwrap();
    g.add_output("y", y);
    g.remove_dead_nodes();
    (g, inputs)
}

fn conv_node(g: &Graph) -> (&Node, &ConvAttrs) {
    let node = g
        .nodes
        .iter()
        .find(|n| matches!(n.op, Op::Conv(_)))
        .expect("a conv node");
    match &node.op {
        Op::Conv(a) => (node, a),
        _ => unreachable!(),
    }
}

fn chosen(g: &Graph, o: &JitOptions) -> bool {
    let (node, a) = conv_node(g);
    uses_winograd(g, node, a, &constant_values(g), o)
}

fn run(g: &Graph, inputs: &[Tensor], o: &JitOptions) -> Result<Vec<Tensor>, TestCaseError> {
    compile(g, o)
        .and_then(|m| m.run(inputs))
        .map_err(|e| TestCaseError::fail(e.to_string()))
}

/// Winograd on every kernel path and task count gives one result, within 1e-4 (relative to
/// max(1, |y|)) of the interpreter and of the direct convolution.
fn agree(g: &Graph, inputs: &[Tensor]) -> Result<(), TestCaseError> {
    prop_assert!(
        chosen(g, &opts(true, true, 1)),
        "the rule rejects this shape"
    );
    let got = run(g, inputs, &opts(true, false, 1))?;
    prop_assert!(
        run(g, inputs, &opts(true, true, 1))? == got,
        "wide ≠ 128-bit"
    );
    prop_assert!(
        run(g, inputs, &opts(true, true, 2))? == got,
        "2 tasks ≠ 1 task"
    );
    let direct = run(g, inputs, &opts(false, true, 1))?;
    let want = interp::run(g, inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for ((a, d), b) in got.iter().zip(&direct).zip(&want) {
        let close = check_close(&a.to_f32_vec(), &b.to_f32_vec(), 1e-4);
        prop_assert!(close.is_ok(), "winograd vs interp: {}", close.unwrap_err());
        let close = check_close(&a.to_f32_vec(), &d.to_f32_vec(), 1e-4);
        prop_assert!(close.is_ok(), "winograd vs direct: {}", close.unwrap_err());
    }
    Ok(())
}

fn activations() -> Vec<Option<UnaryOp>> {
    vec![
        None,
        Some(UnaryOp::Relu),
        Some(UnaryOp::Clip {
            min: F32(0.0),
            max: F32(6.0),
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn winograd_matches_the_interpreter(
        c in 32usize..41, m in 16usize..37, h in 10usize..23, w in 10usize..39,
        pads in prop::array::uniform4(0usize..2), bias in any::<bool>(), residual in any::<bool>(),
        act in prop::sample::select(activations()), seed in any::<u64>(),
    ) {
        let (oh, ow) = (h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2);
        let tiles = 16 * oh.div_ceil(4) * ow.div_ceil(4);
        prop_assume!(oh * ow >= 128 && tiles as f64 <= 1.5 * (oh * ow) as f64);
        let (g, inputs) = conv_graph((1, c, h, w), m, pads, 1, bias, residual, act, seed);
        agree(&g, &inputs)?;
    }
}

/// A batch of two images, several blocks of tile rows (a small block budget) and a partial
/// last tile row and group.
#[test]
fn batches_and_blocks() {
    let (g, inputs) = conv_graph((2, 48, 30, 22), 40, [1; 4], 1, true, true, None, 7);
    let blocky = |winograd, threads| JitOptions {
        im2col_block_bytes: 64 << 10,
        ..opts(winograd, true, threads)
    };
    assert!(chosen(&g, &blocky(true, 1)));
    let got = compile(&g, &blocky(true, 1)).unwrap().run(&inputs).unwrap();
    let two = compile(&g, &blocky(true, 2)).unwrap().run(&inputs).unwrap();
    assert!(got == two, "2 tasks ≠ 1 task");
    let want = interp::run(&g, &inputs).unwrap();
    check_close(&got[0].to_f32_vec(), &want[0].to_f32_vec(), 1e-4).unwrap();
}

/// The cost rule (docs/JIT.md): stride-1 undilated ungrouped 3×3 with constant weights, at least
/// 32 input and 16 output channels, at least 128 output pixels, whole tiles at most 1.5× the
/// output; off with `JitOptions::winograd` off.
#[test]
fn the_cost_rule() {
    let o = opts(true, true, 1);
    let case = |c, m, hw: usize, stride| {
        let (g, _) = conv_graph((1, c, hw, hw), m, [1; 4], stride, true, false, None, 1);
        chosen(&g, &o)
    };
    assert!(case(64, 64, 56, 1), "resnet18's layer1");
    assert!(case(256, 256, 14, 1), "14×14: 196 pixels");
    assert!(!case(512, 512, 7, 1), "7×7: 49 pixels");
    assert!(!case(16, 64, 55, 1), "16 input channels");
    assert!(!case(64, 8, 56, 1), "8 output channels");
    assert!(!case(64, 64, 56, 2), "stride 2");
    // 6×6 outputs in 2×2 tiles of 4×4: 64 / 36 ≈ 1.8× the pixels.
    assert!(!case(64, 64, 6, 1));
    let (g, _) = conv_graph((1, 64, 56, 56), 64, [1; 4], 1, true, false, None, 1);
    assert!(!chosen(&g, &opts(false, true, 1)), "winograd off");
    // Run-time weights are never transformed.
    let mut g = Graph::new("runtime-weights");
    let x = g.add_input("x", TensorType::known(DType::F32, &[1, 64, 56, 56]));
    let wv = g.add_input("w", TensorType::known(DType::F32, &[64, 64, 3, 3]));
    let a = ConvAttrs {
        pads: vec![1; 4],
        group: 1,
        ..Default::default()
    };
    let y = g.add(Op::Conv(a), &[x, wv], "conv").unwrap();
    g.add_output("y", y);
    assert!(!chosen(&g, &o));
}
