//! Property tests: random shapes and attributes for every JIT kernel family, JIT vs interpreter.

use kestrel_backends::interp;
use kestrel_backends::jit::{compile, JitOptions};
use kestrel_ir::testing::{check_close, Random, XorShift64};
use kestrel_ir::*;
use proptest::prelude::*;

/// Deterministic pseudo-random f32 values in [-2, 2).
fn data(n: usize, seed: u64) -> Vec<f32> {
    XorShift64::seeded(seed).f32s(n, -2.0, 2.0)
}

fn tensor(dims: &[usize], seed: u64) -> Tensor {
    XorShift64::seeded(seed).tensor_f32(dims, -2.0, 2.0)
}

/// Runs `g` on both backends and compares: |jit - interp| <= tol * max(1, |interp|).
fn agree(g: &Graph, inputs: &[Tensor], tol: f32) -> Result<(), TestCaseError> {
    let want = interp::run(g, inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
    // One thread, and every splittable node split into 2 and 3 tasks (run on a pool, and on the
    // calling thread through the null parallel-for).
    // 3 tasks also with one output row per im2col block.
    for threads in [1, 2, 3] {
        let opts = JitOptions {
            threads,
            min_task_macs: 1,
            im2col_block_bytes: if threads == 3 { 4 } else { 512 * 1024 },
            ..Default::default()
        };
        let m = compile(g, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = m
            .run(inputs)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        compare(&got, &want, tol)?;
        if threads > 1 {
            let serial = m
                .run_serial(inputs)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(
                serial == got,
                "split tasks run serially differ from the pool's"
            );
        }
    }
    // The full-width micro-kernels (where the host has them) and the 128-bit path give the
    // same bits.
    let run_with = |wide_kernels: bool| {
        let opts = JitOptions {
            wide_kernels,
            ..JitOptions::with_threads(1)
        };
        compile(g, &opts)
            .and_then(|m| m.run(inputs))
            .map_err(|e| TestCaseError::fail(e.to_string()))
    };
    prop_assert!(
        run_with(true)? == run_with(false)?,
        "the wide kernels and the 128-bit ones differ"
    );
    Ok(())
}

fn compare(got: &[Tensor], want: &[Tensor], tol: f32) -> Result<(), TestCaseError> {
    for (a, b) in got.iter().zip(want) {
        prop_assert_eq!(a.dims(), b.dims());
        prop_assert_eq!(a.dtype(), b.dtype());
        if a.dtype() == DType::F32 {
            let close = check_close(&a.to_f32_vec(), &b.to_f32_vec(), tol);
            prop_assert!(close.is_ok(), "jit vs interp: {}", close.unwrap_err());
        } else {
            prop_assert_eq!(a.bytes(), b.bytes());
        }
    }
    Ok(())
}

fn dims_strategy(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max_dim, 1..=max_rank)
}

/// ThresholdedRelu on both sides of its threshold, at it, and on NaN: the JIT's values are the
/// interpreter's, bit for bit, on the vector loop and the scalar tail.
#[test]
fn thresholded_relu_matches_the_interpreter_at_the_threshold() {
    let x = [
        -3.0,
        0.5,
        1.0,
        1.0000001,
        3.0,
        f32::NAN,
        -0.0,
        f32::INFINITY,
        1.0,
    ];
    let want = [0.0, 0.0, 0.0, 1.0000001, 3.0, 0.0, 0.0, f32::INFINITY, 0.0];
    let mut g = Graph::new("t");
    let xv = g.add_input("x", TensorType::known(DType::F32, &[x.len()]));
    let op = Op::Unary(UnaryOp::ThresholdedRelu { alpha: F32(1.0) });
    let y = g.add(op, &[xv], "t").unwrap();
    g.add_output("y", y);
    let input = Tensor::from_vec(vec![x.len()], x.to_vec());
    let interp = interp::run(&g, std::slice::from_ref(&input)).unwrap();
    let jit = compile(&g, &JitOptions::default())
        .unwrap()
        .run(&[input])
        .unwrap();
    let bits = |t: &Tensor| {
        t.to_f32_vec()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    let want_bits: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
    assert_eq!(bits(&interp[0]), want_bits);
    assert_eq!(bits(&jit[0]), want_bits);
}

/// Convolutions reading enough input channels into enough outputs pack their input (1×1) or
/// their im2col blocks into B panels first (`conv.rs`: `packs_1x1_input`, `packs_im2col`):
/// plain, grouped, strided and padded, with and without bias, on pixel counts that are not a
/// multiple of the panel width, split into tasks (and with one output row per im2col block).
#[test]
fn conv_packed_input() {
    // (c, m, group, h, w, kernel, stride, pad, bias)
    for (c, m, group, h, w, k, s, p, bias) in [
        (200, 136, 1, 7, 7, 1, 1, 0, true),
        (192, 128, 1, 3, 5, 1, 1, 0, false),
        (400, 272, 2, 2, 9, 1, 1, 0, true),
        (64, 128, 1, 9, 9, 3, 2, 1, true),
        (200, 128, 1, 6, 7, 1, 2, 0, false),
        (48, 160, 1, 5, 6, 3, 1, 1, false),
    ] {
        let a = ConvAttrs {
            group,
            strides: vec![s, s],
            pads: vec![p; 4],
            ..Default::default()
        };
        let mut g = Graph::new("p");
        let x = g.add_input("x", TensorType::known(DType::F32, &[1, c, h, w]));
        let wv = g.add_const("w", tensor(&[m, c / group, k, k], 7));
        let mut ins = vec![x, wv];
        if bias {
            ins.push(g.add_const("b", tensor(&[m], 8)));
        }
        let y = g.add(Op::Conv(a), &ins, "conv").unwrap();
        g.add_output("y", y);
        agree(&g, &[tensor(&[1, c, h, w], 9)], 1e-4).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn binary_broadcasting(
        out in dims_strategy(4, 7),
        mask in prop::collection::vec(any::<bool>(), 4),
        drop in 0usize..3,
        op in prop::sample::select(vec![BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div,
                                         BinaryOp::Max, BinaryOp::Min, BinaryOp::PRelu, BinaryOp::Pow]),
        seed in any::<u64>(),
    ) {
        // b broadcasts: some axes set to 1, some leading axes dropped.
        let mut bd: Vec<usize> = out.iter().zip(&mask).map(|(&d, &m)| if m { 1 } else { d }).collect();
        let drop = drop.min(bd.len() - 1);
        bd.drain(..drop);
        let mut g = Graph::new("p");
        let a = g.add_input("a", TensorType::known(DType::F32, &out));
        let b = g.add_input("b", TensorType::known(DType::F32, &bd));
        let y = g.add(Op::Binary(op), &[a, b], "op").unwrap();
        g.add_output("y", y);
        let mut ta = tensor(&out, seed);
        if op == BinaryOp::Pow {
            ta = Tensor::from_vec(out.clone(), ta.to_f32_vec().iter().map(|v| v.abs() + 0.1).collect::<Vec<f32>>());
        }
        agree(&g, &[ta, tensor(&bd, seed + 1)], 2e-5)?;
    }

    #[test]
    fn unary_and_activations(
        dims in dims_strategy(3, 9),
        which in 0usize..20,
        seed in any::<u64>(),
    ) {
        let ops = [
            Op::Unary(UnaryOp::Relu), Op::Unary(UnaryOp::Sigmoid), Op::Unary(UnaryOp::Tanh),
            Op::Unary(UnaryOp::Exp), Op::Unary(UnaryOp::Erf), Op::Unary(UnaryOp::Abs),
            Op::Unary(UnaryOp::Floor), Op::Unary(UnaryOp::Round), Op::Unary(UnaryOp::HardSwish),
            Op::Unary(UnaryOp::Softplus), Op::Unary(UnaryOp::Mish),
            Op::Unary(UnaryOp::LeakyRelu { alpha: F32(0.1) }), Op::Unary(UnaryOp::Elu { alpha: F32(0.7) }),
            Op::Unary(UnaryOp::Gelu { tanh_approx: false }), Op::Unary(UnaryOp::Gelu { tanh_approx: true }),
            Op::Unary(UnaryOp::HardSigmoid { alpha: F32(0.2), beta: F32(0.5) }),
            Op::Unary(UnaryOp::Selu { alpha: F32(1.5), gamma: F32(1.1) }),
            Op::Unary(UnaryOp::Clip { min: F32(-0.5), max: F32(f32::INFINITY) }),
            Op::Unary(UnaryOp::Silu),
            Op::Unary(UnaryOp::ThresholdedRelu { alpha: F32(0.25) }),
        ];
        let mut g = Graph::new("p");
        let x = g.add_input("x", TensorType::known(DType::F32, &dims));
        let y = g.add(ops[which].clone(), &[x], "op").unwrap();
        g.add_output("y", y);
        agree(&g, &[tensor(&dims, seed)], 2e-6)?;
    }

    #[test]
    fn conv2d(
        n in 1usize..3, c in 1usize..5, m in 1usize..6, h in 3usize..10, w in 3usize..10,
        kh in 1usize..4, kw in 1usize..4, stride in 1usize..3, dil in 1usize..3,
        pads in prop::collection::vec(0usize..3, 4), group_pick in 0usize..3, bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        // groups: 1, depthwise (m = c), or a common divisor.
        let (group, c, m) = match group_pick {
            0 => (1, c, m),
            1 => (c, c, c),
            _ => (2, 2 * c, 2 * m),
        };
        let a = ConvAttrs {
            strides: vec![stride, stride], pads: pads.clone(), dilations: vec![dil, dil],
            group, auto_pad: AutoPad::NotSet,
            epilogue: Default::default(),
            integer: None,
        };
        let mut g = Graph::new("p");
        let x = g.add_input("x", TensorType::known(DType::F32, &[n, c, h, w]));
        let wv = g.add_const("w", tensor(&[m, c / group, kh, kw], seed + 1));
        let mut ins = vec![x, wv];
        if bias {
            ins.push(g.add_const("b", tensor(&[m], seed + 2)));
        }
        let Ok(y) = g.add(Op::Conv(a), &ins, "conv") else { return Ok(()) };
        g.add_output("y", y);
        agree(&g, &[tensor(&[n, c, h, w], seed)], 1e-4)?;
    }

    /// Depthwise 2-D convolutions over the shapes of the direct kernels: kernels up to 7 wide,
    /// strides up to 3 and dilations per axis, asymmetric padding, widths around multiples of
    /// four (the row-padded kernel's overlapping last group) and below four.
    #[test]
    fn depthwise_conv2d(
        c in 1usize..4, h in 1usize..12, w in 1usize..20, kh in 1usize..8, kw in 1usize..8,
        sh in 1usize..4, sw in 1usize..4, dh in 1usize..3, dw in 1usize..3,
        pads in prop::collection::vec(0usize..4, 4), bias in any::<bool>(), seed in any::<u64>(),
    ) {
        let a = ConvAttrs {
            strides: vec![sh, sw], pads: pads.clone(), dilations: vec![dh, dw],
            group: c, auto_pad: AutoPad::NotSet,
            epilogue: Default::default(),
            integer: None,
        };
        let mut g = Graph::new("p");
        let x = g.add_input("x", TensorType::known(DType::F32, &[1, c, h, w]));
        let wv = g.add_const("w", tensor(&[c, 1, kh, kw], seed + 1));
        let mut ins = vec![x, wv];
        if bias {
            ins.push(g.add_const("b", tensor(&[c], seed + 2)));
        }
        let Ok(y) = g.add(Op::Conv(a), &ins, "conv") else { return Ok(()) };
        g.add_output("y", y);
        agree(&g, &[tensor(&[1, c, h, w], seed)], 1e-4)?;
    }

    #[test]
    fn pooling(
        c in 1usize..4, h in 2usize..12, w in 2usize..40, k in 1usize..4, stride in 1usize..3,
        pad in 0usize..2, ceil_mode in any::<bool>(), include in any::<bool>(), max in any::<bool>(),
        seed in any::<u64>(),
    ) {
        prop_assume!(pad < k);
        let a = PoolAttrs {
            kind: if max { PoolKind::Max } else { PoolKind::Average },
            kernel: vec![k, k], strides: vec![stride, stride], pads: vec![pad; 4],
            dilations: vec![], ceil_mode, count_include_pad: include, auto_pad: AutoPad::NotSet,
        };
        let mut g = Graph::new("p");
        let x = g.add_input("x", TensorType::known(DType::F32, &[1, c, h, w]));
        let Ok(y) = g.add(Op::Pool(a), &[x], "pool") else { return Ok(()) };
        g.add_output("y", y);
        agree(&g, &[tensor(&[1, c, h, w], seed)], 1e-5)?;
    }

    #[test]
    fn matmul_batched(
        batch in prop::collection::vec(1usize..4, 0..3), m in 1usize..11, k in 1usize..13,
        n in 1usize..19, const_b in any::<bool>(), bcast_b in any::<bool>(), seed in any::<u64>(),
    ) {
        let mut ad = batch.clone();
        ad.extend([m, k]);
        let mut bd = if bcast_b { vec![] } else { batch.clone() };
        bd.extend([k, n]);
        let mut g = Graph::new("p");
        let a = g.add_input("a", TensorType::known(DType::F32, &ad));
        let (b, mut inputs) = if const_b {
            (g.add_const("b", tensor(&bd, seed + 1)), vec![])
        } else {
            (g.add_input("b", TensorType::known(DType::F32, &bd)), vec![tensor(&bd, seed + 1)])
        };
        let y = g.add(Op::MatMul, &[a, b], "mm").unwrap();
        g.add_output("y", y);
        inputs.insert(0, tensor(&ad, seed));
        agree(&g, &inputs, 1e-4)?;
    }

    #[test]
    fn gemm(
        m in 1usize..9, k in 1usize..12, n in 1usize..17, trans_b in any::<bool>(),
        alpha in prop::sample::select(vec![1.0f32, 0.5]), beta in prop::sample::select(vec![1.0f32, 2.0]),
        c_kind in 0usize..3, seed in any::<u64>(),
    ) {
        let bd = if trans_b { [n, k] } else { [k, n] };
        let mut g = Graph::new("p");
        let a = g.add_input("a", TensorType::known(DType::F32, &[m, k]));
        let b = g.add_const("b", tensor(&bd, seed + 1));
        let mut ins = vec![a, b];
        match c_kind {
            1 => ins.push(g.add_const("c", tensor(&[n], seed + 2))),
            2 => ins.push(g.add_const("c", tensor(&[m, 1], seed + 2))),
            _ => {}
        }
        let attrs = GemmAttrs { alpha: F32(alpha), beta: F32(beta), trans_a: false, trans_b, epilogue: Default::default(), integer: None };
        let y = g.add(Op::Gemm(attrs), &ins, "gemm").unwrap();
        g.add_output("y", y);
        agree(&g, &[tensor(&[m, k], seed)], 1e-4)?;
    }

    #[test]
    fn reductions(
        dims in dims_strategy(4, 6), axes_mask in prop::collection::vec(any::<bool>(), 4),
        keepdims in any::<bool>(),
        kind in prop::sample::select(vec![ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max,
            ReduceKind::Min, ReduceKind::L1, ReduceKind::L2, ReduceKind::SumSquare, ReduceKind::LogSumExp]),
        seed in any::<u64>(),
    ) {
        let axes: Vec<i64> = (0..dims.len()).filter(|&i| axes_mask[i]).map(|i| i as i64).collect();
        let mut g = Graph::new("p");
        let x = g.add_input("x", TensorType::known(DType::F32, &dims));
        let ax = g.add_const("axes", Tensor::from_vec(vec![axes.len()], axes));
        let a = ReduceAttrs { kind, keepdims, noop_with_empty_axes: false };
        let y = g.add(Op::Reduce(a), &[x, ax], "r").unwrap();
        g.add_output("y", y);
        agree(&g, &[tensor(&dims, seed)], 1e-5)?;
    }

    #[test]
    fn softmax_and_layer_norm(
        dims in dims_strategy(4, 9), axis_pick in 0usize..4, log in any::<bool>(), ln in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let axis = (axis_pick % dims.len()) as i64;
        let mut g = Graph::new("p");
        let x = g.add_input("x", TensorType::known(DType::F32, &dims));
        let y = if ln {
            let block: Vec<usize> = dims[axis as usize..].to_vec();
            let s = g.add_const("s", tensor(&block, seed + 1));
            let b = g.add_const("b", tensor(&block, seed + 2));
            g.add(Op::LayerNorm { axis, epsilon: F32(1e-5) }, &[x, s, b], "ln").unwrap()
        } else if log {
            g.add(Op::LogSoftmax { axis }, &[x], "sm").unwrap()
        } else {
            g.add(Op::Softmax { axis }, &[x], "sm").unwrap()
        };
        g.add_output("y", y);
        agree(&g, &[tensor(&dims, seed)], 2e-5)?;
    }

    #[test]
    fn data_movement(
        dims in dims_strategy(4, 6), which in 0usize..5, seed in any::<u64>(), pick in any::<u64>(),
    ) {
        let rank = dims.len();
        let mut g = Graph::new("p");
        let x = g.add_input("x", TensorType::known(DType::F32, &dims));
        let y = match which {
            0 => {
                // A rotation of the axes.
                let r = (pick as usize) % rank;
                let perm: Vec<usize> = (0..rank).map(|i| (i + r) % rank).collect();
                g.add(Op::Transpose { perm }, &[x], "t").unwrap()
            }
            1 => {
                let starts: Vec<i64> = dims.iter().map(|&d| (pick % d as u64) as i64).collect();
                let ends: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
                let s = g.add_const("s", Tensor::from_vec(vec![rank], starts));
                let e = g.add_const("e", Tensor::from_vec(vec![rank], ends));
                g.add(Op::Slice, &[x, s, e], "s").unwrap()
            }
            2 => {
                let pads: Vec<i64> = (0..2 * rank).map(|i| ((pick >> i) & 1) as i64).collect();
                let p = g.add_const("p", Tensor::from_vec(vec![2 * rank], pads));
                let mode = [PadMode::Constant, PadMode::Edge, PadMode::Reflect, PadMode::Wrap][(pick % 4) as usize];
                let Ok(y) = g.add(Op::Pad { mode }, &[x, p], "pad") else { return Ok(()) };
                y
            }
            3 => {
                let axis = (pick as usize % rank) as i64;
                g.add(Op::Concat { axis }, &[x, x], "c").unwrap()
            }
            _ => {
                let axis = (pick as usize % rank) as i64;
                let n = dims[axis as usize] as i64;
                let idx = g.add_const("i", Tensor::from_vec(vec![2], vec![n - 1, 0i64]));
                g.add(Op::Gather { axis }, &[x, idx], "g").unwrap()
            }
        };
        g.add_output("y", y);
        agree(&g, &[tensor(&dims, seed)], 0.0)?;
    }

    #[test]
    fn resize_linear_and_cubic(
        dims in prop::collection::vec(1usize..7, 3..=4),
        scale_pick in prop::collection::vec(0usize..5, 2),
        cubic in any::<bool>(),
        coord in prop::sample::select(vec![CoordMode::HalfPixel, CoordMode::HalfPixelSymmetric,
            CoordMode::PytorchHalfPixel, CoordMode::AlignCorners, CoordMode::Asymmetric,
            CoordMode::TfCropAndResize]),
        exclude_outside in any::<bool>(),
        seed in any::<u64>(),
    ) {
        // The last two axes are resized.
        let r = dims.len();
        let scales: Vec<f32> = scale_pick.iter().map(|&i| [0.5, 0.75, 1.0, 1.5, 2.5][i]).collect();
        let attrs = ResizeAttrs {
            by: ResizeBy::Scales,
            mode: if cubic { ResizeMode::Cubic } else { ResizeMode::Linear },
            coord,
            nearest: NearestMode::RoundPreferFloor,
            cubic_coeff_a: F32(-0.75),
            exclude_outside,
            extrapolation_value: F32(-3.0),
            antialias: false,
            aspect: AspectPolicy::Stretch,
            axes: vec![r as i64 - 2, r as i64 - 1],
        };
        let mut g = Graph::new("p");
        let x = g.add_input("x", TensorType::known(DType::F32, &dims));
        let sc = g.add_const("scales", Tensor::from_vec(vec![2], scales));
        let mut ins = vec![x, sc];
        if coord == CoordMode::TfCropAndResize {
            ins.push(g.add_const("roi", Tensor::from_vec(vec![4], vec![0.1f32, -0.2, 0.8, 1.1])));
        }
        let Ok(y) = g.add(Op::Resize(attrs), &ins, "resize") else {
            // Scales that give an empty output are refused by type inference.
            return Ok(());
        };
        g.add_output("y", y);
        agree(&g, &[tensor(&dims, seed)], 2e-5)?;
    }
}

/// The integer tensor of `dims` in `dt` (8- or 16-bit) with values spread over the whole type.
fn int_tensor(dt: DType, dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let raw: Vec<i64> = data(n, seed).iter().map(|v| (v * 40000.0) as i64).collect();
    let (lo, hi) = dt.int_range().unwrap();
    let vals = raw.iter().map(|&v| v.clamp(lo as i64, hi as i64));
    let d = dims.to_vec();
    match dt {
        DType::I8 => Tensor::from_vec(d, vals.map(|v| v as i8).collect()),
        DType::U8 => Tensor::from_vec(d, vals.map(|v| v as u8).collect()),
        DType::I16 => Tensor::from_vec(d, vals.map(|v| v as i16).collect()),
        _ => Tensor::from_vec(d, vals.map(|v| v as u16).collect()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// QuantizeLinear then DequantizeLinear, per tensor or per axis, with and without a zero
    /// point, on inputs that include NaN, infinities, exact ties and out-of-range values: both
    /// results equal the interpreter's bit for bit.
    #[test]
    fn quantize_dequantize(
        dims in dims_strategy(4, 6), axis_pick in 0usize..4, per_axis in any::<bool>(),
        with_zp in any::<bool>(), dt in prop::sample::select(vec![DType::I8, DType::U8, DType::I16, DType::U16]),
        seed in any::<u64>(),
    ) {
        let axis = axis_pick % dims.len();
        let np = if per_axis { dims[axis] } else { 1 };
        let pdims: Vec<usize> = if per_axis { vec![np] } else { vec![] };
        let scales: Vec<f32> = data(np, seed + 1).iter().map(|v| v.abs() * 0.05 + 0.001).collect();
        let mut x = data(dims.iter().product(), seed);
        // Scale the data so values reach beyond the 8-bit range, plus special values and ties.
        for (i, v) in x.iter_mut().enumerate() {
            *v *= 300.0;
            match i % 11 {
                3 => *v = f32::NAN,
                5 => *v = f32::INFINITY,
                7 => *v = f32::NEG_INFINITY,
                9 => *v = scales[if per_axis { (i / dims[axis + 1..].iter().product::<usize>()) % np } else { 0 }] * 2.5,
                _ => {}
            }
        }
        let mut g = Graph::new("q");
        let xi = g.add_input("x", TensorType::known(DType::F32, &dims));
        let s = g.add_const("s", Tensor::from_vec(pdims.clone(), scales));
        let mut ins = vec![xi, s];
        if with_zp {
            ins.push(g.add_const("z", int_tensor(dt, &pdims, seed + 2)));
        }
        let q = g.add(Op::QuantizeLinear { axis: axis as i64, to: dt }, &ins, "q").unwrap();
        let mut dins = vec![q, s];
        if with_zp {
            dins.push(ins[2]);
        }
        let y = g.add(Op::DequantizeLinear { axis: axis as i64 }, &dins, "dq").unwrap();
        g.add_output("q", q);
        g.add_output("y", y);
        agree(&g, &[Tensor::from_vec(dims.clone(), x)], 0.0)?;
        // Dequantize alone on integers over the whole type.
        let mut h = Graph::new("dq");
        let xq = h.add_input("x", TensorType::known(dt, &dims));
        let s = h.add_const("s", Tensor::from_vec(pdims.clone(), data(np, seed + 3)));
        let mut dins = vec![xq, s];
        if with_zp {
            dins.push(h.add_const("z", int_tensor(dt, &pdims, seed + 4)));
        }
        let y = h.add(Op::DequantizeLinear { axis: axis as i64 }, &dins, "dq").unwrap();
        h.add_output("y", y);
        agree(&h, &[int_tensor(dt, &dims, seed + 5)], 0.0)?;
    }
}

/// The JIT compiles only graphs folded for code generation: a node whose inputs are all
/// constants, or a shape query, is refused by name (the driver folds them first), while the same
/// op on a run-time input compiles.
#[test]
fn unfolded_nodes_are_refused() {
    let mut g = Graph::new("unfolded");
    let x = g.add_input("x", TensorType::new(DType::F32, shape_of(&[4])));
    let a = g.add_const("a", Tensor::from_vec(vec![4], vec![1f32, 2.0, 3.0, 4.0]));
    let b = g.add_const("b", Tensor::from_vec(vec![4], vec![1f32; 4]));
    let s = g
        .add_node(Op::Binary(BinaryOp::Add), &[a, b], "const_add")
        .unwrap()[0];
    let y = g.add_node(Op::Binary(BinaryOp::Mul), &[x, s], "").unwrap()[0];
    g.add_output("y", y);
    match compile(&g, &JitOptions::default()) {
        Err(kestrel_backends::jit::JitError::NotFolded { node }) => {
            assert!(node.contains("const_add"), "{node}")
        }
        other => panic!("expected NotFolded, got {:?}", other.err()),
    }

    let mut g = Graph::new("shape_query");
    let x = g.add_input("x", TensorType::new(DType::F32, shape_of(&[2, 3])));
    let s = g
        .add_node(
            Op::Shape {
                start: 0,
                end: None,
            },
            &[x],
            "shape",
        )
        .unwrap()[0];
    g.add_output("s", s);
    assert!(matches!(
        compile(&g, &JitOptions::default()),
        Err(kestrel_backends::jit::JitError::NotFolded { .. })
    ));

    let mut g = Graph::new("runtime");
    let x = g.add_input("x", TensorType::new(DType::F32, shape_of(&[4])));
    let b = g.add_const("b", Tensor::from_vec(vec![4], vec![1f32; 4]));
    let y = g.add_node(Op::Binary(BinaryOp::Add), &[x, b], "").unwrap()[0];
    g.add_output("y", y);
    let m = compile(&g, &JitOptions::default()).unwrap();
    let out = m
        .run(&[Tensor::from_vec(vec![4], vec![1f32, 2.0, 3.0, 4.0])])
        .unwrap();
    assert_eq!(out[0].to_f32_vec(), vec![2.0, 3.0, 4.0, 5.0]);
}

/// Input of a DynamicQuantizeLinear case: `kind` picks random data (0), data with NaN (1), all
/// zeros (2), huge values including infinities (3), all negative (4), a subnormal range (5),
/// a constant (6), or both infinities (7).
fn dynamic_quantize_input(n: usize, kind: u8, seed: u64) -> Vec<f32> {
    let mut x = data(n, seed);
    for (i, v) in x.iter_mut().enumerate() {
        *v = match kind {
            1 if i % 3 == 1 => f32::NAN,
            2 => 0.0,
            3 => match i % 5 {
                0 => f32::MAX,
                1 => -3.0e38,
                2 => f32::INFINITY,
                _ => *v * 1e30,
            },
            4 => -v.abs() - 0.25,
            5 => *v * 1e-44,
            6 => 0.75,
            7 if i % 4 == 0 => f32::INFINITY,
            7 if i % 4 == 1 => f32::NEG_INFINITY,
            _ => *v,
        };
    }
    x
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// DynamicQuantizeLinear: the JIT's quantized data, scale and zero point equal the
    /// interpreter's bit for bit on every length (vector loop and scalar tail) and on inputs
    /// with NaN, all zeros, huge and infinite values, and subnormal ranges.
    #[test]
    fn dynamic_quantize_linear_matches_the_interpreter(
        dims in dims_strategy(3, 9), kind in 0u8..8, seed in any::<u64>(),
    ) {
        let x = dynamic_quantize_input(dims.iter().product(), kind, seed);
        let mut g = Graph::new("dql");
        let xi = g.add_input("x", TensorType::known(DType::F32, &dims));
        let outs = g.add_node(Op::DynamicQuantizeLinear, &[xi], "dql").unwrap();
        for (name, &v) in ["y", "y_scale", "y_zero_point"].iter().zip(&outs) {
            g.add_output(*name, v);
        }
        let inputs = [Tensor::from_vec(dims.clone(), x)];
        let want = interp::run(&g, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let m = compile(&g, &JitOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = m.run(&inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (a, b) in got.iter().zip(&want) {
            prop_assert_eq!(a.dtype(), b.dtype());
            prop_assert_eq!(a.dims(), b.dims());
            prop_assert_eq!(a.bytes(), b.bytes(), "kind {}: jit {:?} vs interp {:?}", kind, a, b);
        }
    }
}

/// A model with more than 64 outputs (calibration probes ask for one per quantized tensor) runs,
/// every output its own value.
#[test]
fn many_outputs() {
    let mut g = Graph::new("many");
    let x = g.add_input("x", TensorType::known(DType::F32, &[3]));
    let mut y = x;
    for i in 0..70 {
        y = g.add(Op::Unary(UnaryOp::Neg), &[y], "neg").unwrap();
        g.add_output(format!("y{i}"), y);
    }
    g.add_output("x_again", x);
    let inputs = [Tensor::from_vec(vec![3], vec![-3f32, -2.0, -1.0])];
    let m = compile(&g, &JitOptions::default()).unwrap();
    let got = m.run(&inputs).unwrap();
    let want = interp::run(&g, &inputs).unwrap();
    assert_eq!(got.len(), 71);
    assert_eq!(got, want);
}

/// Stride-2 convolutions over wide rows: im2col copies every second input element with vector
/// loads (two per four outputs) except at the end of each row, at every tap offset and padding.
#[test]
fn stride_2_im2col_on_wide_rows() {
    for (w, k, pad) in [(70, 3, 1), (71, 7, 3), (33, 1, 0), (40, 5, 2), (9, 3, 0)] {
        let a = ConvAttrs {
            group: 1,
            strides: vec![2, 2],
            pads: vec![pad; 4],
            ..Default::default()
        };
        let mut g = Graph::new("s2");
        let x = g.add_input("x", TensorType::known(DType::F32, &[1, 3, 6, w]));
        let wv = g.add_const("w", tensor(&[4, 3, k, k], 5));
        let y = g.add(Op::Conv(a), &[x, wv], "conv").unwrap();
        g.add_output("y", y);
        agree(&g, &[tensor(&[1, 3, 6, w], 6)], 1e-4).unwrap();
    }
}
