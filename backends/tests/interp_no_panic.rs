//! Every op applied to every combination of a small zoo of awkward inputs must return Ok or Err,
//! never panic.

mod common;
use common::*;
use kestrel_backends::interp::eval_op;
use kestrel_ir::*;

fn zoo() -> Vec<Tensor> {
    vec![
        Tensor::scalar(1.5f32),
        f32t(&[0], &[]),
        f32t(&[2, 0, 3], &[]),
        iota(&[1, 2, 3, 3], -4.0),
        iota(&[3], 0.0),
        i64v(&[]),
        i64v(&[-1]),
        i64v(&[1, 1, 2, 2]),
        i64v(&[i64::MIN, i64::MAX]),
        i64v(&[0, 0, 0, 0, -5, 7, 1, 1]),
        Tensor::scalar(0i64),
        Tensor::from_vec(vec![2], vec![true, false]),
        Tensor::from_vec(vec![2, 1], vec![200u8, 3]),
        Tensor::from_vec(vec![1], vec![f32::NAN]),
    ]
}

fn ops() -> Vec<Op> {
    let mut ops: Vec<Op> = UnaryOp::ALL.iter().map(|&u| Op::Unary(u)).collect();
    ops.extend(BinaryOp::ALL.iter().map(|&b| Op::Binary(b)));
    let pool = PoolAttrs {
        kind: PoolKind::Max,
        kernel: vec![2, 2],
        strides: vec![],
        pads: vec![],
        dilations: vec![],
        ceil_mode: true,
        count_include_pad: true,
        auto_pad: AutoPad::SameLower,
    };
    let resize = ResizeAttrs {
        by: ResizeBy::Scales,
        mode: ResizeMode::Cubic,
        coord: CoordMode::TfCropAndResize,
        nearest: NearestMode::Floor,
        cubic_coeff_a: F32(-0.75),
        exclude_outside: true,
        extrapolation_value: F32(0.0),
        antialias: false,
        aspect: AspectPolicy::NotLarger,
        axes: vec![],
    };
    ops.extend([
        Op::Unary(UnaryOp::HardSigmoid {
            alpha: F32(0.2),
            beta: F32(0.5),
        }),
        Op::Unary(UnaryOp::Gelu { tanh_approx: false }),
        Op::Clip,
        Op::Where,
        Op::Cast { to: DType::U8 },
        Op::Conv(ConvAttrs {
            group: 1,
            ..Default::default()
        }),
        Op::Conv(ConvAttrs {
            group: 3,
            strides: vec![2, 2],
            auto_pad: AutoPad::SameUpper,
            ..Default::default()
        }),
        Op::Gemm(GemmAttrs::default()),
        Op::MatMul,
        Op::BatchNorm { epsilon: F32(1e-5) },
        Op::Pool(pool.clone()),
        Op::Pool(PoolAttrs {
            kind: PoolKind::Lp(3),
            ..pool
        }),
        Op::GlobalPool(PoolKind::Average),
        Op::Reduce(ReduceAttrs {
            kind: ReduceKind::LogSumExp,
            keepdims: false,
            noop_with_empty_axes: false,
        }),
        Op::Reduce(ReduceAttrs {
            kind: ReduceKind::Max,
            keepdims: true,
            noop_with_empty_axes: true,
        }),
        Op::Softmax { axis: -1 },
        Op::LogSoftmax { axis: 5 },
        Op::Attention { scale: F32(0.5) },
        Op::LayerNorm {
            axis: 1,
            epsilon: F32(1e-5),
        },
        Op::Flatten { axis: -2 },
        Op::Reshape { allowzero: true },
        Op::Reshape { allowzero: false },
        Op::Transpose { perm: vec![1, 0] },
        Op::Concat { axis: 0 },
        Op::Split {
            axis: -1,
            num_outputs: 2,
        },
        Op::Slice,
        Op::Gather { axis: 0 },
        Op::Squeeze,
        Op::Unsqueeze,
        Op::Shape {
            start: -1,
            end: Some(i64::MIN),
        },
        Op::Size,
        Op::Expand,
        Op::Tile,
        Op::Range,
        Op::ConstantOfShape {
            value: Tensor::scalar(1i32),
        },
        Op::Identity,
        Op::QuantizeLinear {
            axis: 0,
            to: DType::I8,
        },
        Op::DequantizeLinear { axis: -1 },
        Op::Resize(resize.clone()),
        Op::Resize(ResizeAttrs {
            by: ResizeBy::Sizes,
            mode: ResizeMode::Linear,
            coord: CoordMode::AlignCorners,
            ..resize
        }),
        Op::Pad {
            mode: PadMode::Reflect,
        },
        Op::Pad {
            mode: PadMode::Wrap,
        },
        Op::ConvTranspose(ConvTransposeAttrs {
            group: 1,
            ..Default::default()
        }),
        Op::ConvTranspose(ConvTransposeAttrs {
            group: 3,
            strides: vec![2, 3],
            dilations: vec![2, 1],
            output_padding: vec![1, 1],
            auto_pad: AutoPad::SameLower,
            ..Default::default()
        }),
        Op::ConvTranspose(ConvTransposeAttrs {
            group: 1,
            output_shape: vec![1 << 40, 3],
            ..Default::default()
        }),
        Op::Arg(ArgAttrs {
            kind: ArgKind::Max,
            axis: -1,
            keepdims: false,
            select_last_index: true,
        }),
        Op::Arg(ArgAttrs {
            kind: ArgKind::Min,
            axis: 0,
            keepdims: true,
            select_last_index: false,
        }),
        Op::GatherElements { axis: 0 },
        Op::GatherElements { axis: -1 },
        Op::ScatterElements {
            axis: 0,
            reduction: ScatterReduction::None,
        },
        Op::ScatterElements {
            axis: -1,
            reduction: ScatterReduction::Mul,
        },
        Op::ScatterNd {
            reduction: ScatterReduction::None,
        },
        Op::ScatterNd {
            reduction: ScatterReduction::Add,
        },
        Op::Trilu { upper: true },
        Op::Trilu { upper: false },
        Op::CumSum {
            exclusive: true,
            reverse: true,
        },
        Op::Hardmax { axis: -1 },
        Op::LpNormalization { axis: 0, p: 2 },
        Op::LpNormalization { axis: -1, p: 3 },
        Op::TopK {
            axis: -1,
            largest: true,
            sorted: true,
        },
        Op::TopK {
            axis: 0,
            largest: false,
            sorted: false,
        },
    ]);
    ops
}

#[test]
fn no_op_panics_on_awkward_inputs() {
    let zoo = zoo();
    let mut calls = 0usize;
    for op in ops() {
        for a in &zoo {
            let _ = eval_op(&op, &[a]);
            for b in &zoo {
                let _ = eval_op(&op, &[a, b]);
                for c in &zoo {
                    let _ = eval_op(&op, &[a, b, c]);
                    calls += 1;
                }
            }
        }
    }
    assert!(calls > 100_000);
}
