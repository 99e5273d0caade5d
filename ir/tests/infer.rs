// Test inputs are built inline as `&[x.clone(), ...]` uniformly, one-element lists included.
#![allow(clippy::cloned_ref_to_slice_refs)]

use kestrel_ir::broadcast::{broadcast_dim, broadcast_shapes};
use kestrel_ir::*;
use std::sync::Arc;

/// An input: its type and optional constant data.
#[derive(Clone)]
struct Arg(TensorType, Option<Tensor>);

fn f32t(dims: &[usize]) -> Arg {
    Arg(TensorType::known(DType::F32, dims), None)
}
fn typed(dtype: DType, dims: &[usize]) -> Arg {
    Arg(TensorType::known(dtype, dims), None)
}
fn dyn_t(dtype: DType, dims: &[Dim]) -> Arg {
    Arg(TensorType::new(dtype, dims.iter().cloned().collect()), None)
}
fn sym(name: &str) -> Dim {
    Dim::sym(name)
}
fn k(n: usize) -> Dim {
    Dim::Known(n)
}
const U: Dim = Dim::Unknown;
fn c(t: Tensor) -> Arg {
    Arg(TensorType::known(t.dtype(), t.dims()), Some(t))
}
fn ints(v: &[i64]) -> Arg {
    c(Tensor::from_vec(vec![v.len()], v.to_vec()))
}
fn floats(v: &[f32]) -> Arg {
    c(Tensor::from_vec(vec![v.len()], v.to_vec()))
}

/// A shape-like input whose length claims more axes than any tensor may have is refused before
/// anything is allocated for it (found by the fuzz test: a rank-1 i64 input of extent usize::MAX).
#[test]
fn absurd_ranks_are_refused() {
    let huge = typed(DType::I64, &[usize::MAX]);
    let r = Op::Reshape { allowzero: false };
    assert!(err(r.clone(), &[f32t(&[]), huge]).contains("entries"));
    assert!(err(Op::Expand, &[f32t(&[1]), typed(DType::I64, &[1000])]).contains("entries"));
    assert!(err(r.clone(), &[f32t(&[1]), typed(DType::I64, &[65])]).contains("rank 65"));
    assert_eq!(shape(r, &[f32t(&[1]), typed(DType::I64, &[64])]).len(), 64);
    let deep = vec![1; MAX_RANK + 1];
    assert!(err(Op::Unary(UnaryOp::Relu), &[f32t(&deep)]).contains("above the limit"));
}

fn run(op: Op, args: &[Arg]) -> Result<Vec<TensorType>, String> {
    let inputs: Vec<InferInput> = args
        .iter()
        .map(|a| InferInput {
            ty: &a.0,
            value: a.1.as_ref(),
        })
        .collect();
    infer(&op, &inputs)
}

fn one(op: Op, args: &[Arg]) -> TensorType {
    let out = run(op.clone(), args).unwrap_or_else(|e| panic!("{}: {e}", op.name()));
    assert_eq!(out.len(), 1);
    out.into_iter().next().unwrap()
}

fn shape(op: Op, args: &[Arg]) -> Vec<Dim> {
    one(op, args).shape.to_vec()
}

fn err(op: Op, args: &[Arg]) -> String {
    match run(op.clone(), args) {
        Ok(t) => panic!("{} unexpectedly inferred {t:?}", op.name()),
        Err(e) => e,
    }
}

fn kd(dims: &[usize]) -> Vec<Dim> {
    dims.iter().map(|&d| Dim::Known(d)).collect()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn broadcasting_rules() {
    assert_eq!(broadcast_dim(&k(1), &sym("N")).unwrap(), sym("N"));
    assert_eq!(broadcast_dim(&sym("N"), &sym("N")).unwrap(), sym("N"));
    assert_eq!(broadcast_dim(&sym("N"), &k(5)).unwrap(), k(5));
    assert_eq!(broadcast_dim(&sym("N"), &sym("M")).unwrap(), U);
    assert_eq!(broadcast_dim(&U, &sym("M")).unwrap(), U);
    assert!(broadcast_dim(&k(3), &k(4)).is_err());
    assert_eq!(
        broadcast_shapes(&kd(&[2, 1, 4]), &kd(&[3, 1]))
            .unwrap()
            .to_vec(),
        kd(&[2, 3, 4])
    );
}

#[test]
fn elementwise_binary() {
    let add = Op::Binary(BinaryOp::Add);
    assert_eq!(
        shape(add.clone(), &[f32t(&[2, 3, 4]), f32t(&[4])]),
        kd(&[2, 3, 4])
    );
    // Scalars broadcast.
    assert_eq!(shape(add.clone(), &[f32t(&[]), f32t(&[])]), kd(&[]));
    assert_eq!(shape(add.clone(), &[f32t(&[]), f32t(&[5])]), kd(&[5]));
    // Symbolic dims propagate.
    assert_eq!(
        shape(
            add.clone(),
            &[
                dyn_t(DType::F32, &[sym("N"), k(3)]),
                dyn_t(DType::F32, &[k(1), k(3)])
            ]
        ),
        vec![sym("N"), k(3)]
    );
    assert_eq!(
        shape(
            add.clone(),
            &[
                dyn_t(DType::F32, &[sym("N"), k(3)]),
                dyn_t(DType::F32, &[k(7), k(3)])
            ]
        ),
        vec![k(7), k(3)]
    );
    // Mismatches and arity.
    assert!(err(add.clone(), &[f32t(&[3]), f32t(&[4])]).contains("broadcast"));
    assert!(err(add.clone(), &[f32t(&[3])]).contains("expects 2 inputs, got 1"));
    assert!(err(add.clone(), &[f32t(&[3]), f32t(&[3]), f32t(&[3])]).contains("got 3"));
    assert!(err(add.clone(), &[f32t(&[3]), typed(DType::I64, &[3])]).contains("dtype"));
    assert!(err(add, &[typed(DType::Bool, &[3]), typed(DType::Bool, &[3])]).contains("numeric"));
    // Comparisons yield bool.
    let t = one(Op::Binary(BinaryOp::Less), &[f32t(&[2]), f32t(&[2])]);
    assert_eq!(t.dtype, DType::Bool);
    // Logic needs bool.
    assert!(run(Op::Binary(BinaryOp::And), &[f32t(&[2]), f32t(&[2])]).is_err());
    assert_eq!(
        one(
            Op::Binary(BinaryOp::Xor),
            &[typed(DType::Bool, &[2]), typed(DType::Bool, &[1])]
        )
        .dtype,
        DType::Bool
    );
    // Pow's exponent may differ in dtype.
    let t = one(
        Op::Binary(BinaryOp::Pow),
        &[f32t(&[2, 2]), typed(DType::I64, &[])],
    );
    assert_eq!(t, TensorType::known(DType::F32, &[2, 2]));
    // Mod is integer-only.
    assert!(run(Op::Binary(BinaryOp::Mod), &[f32t(&[2]), f32t(&[2])]).is_err());
    assert!(run(
        Op::Binary(BinaryOp::Mod),
        &[typed(DType::I32, &[2]), typed(DType::I32, &[2])]
    )
    .is_ok());
    // PRelu: slope broadcasts to x, output is x's shape.
    assert_eq!(
        shape(
            Op::Binary(BinaryOp::PRelu),
            &[f32t(&[1, 8, 4, 4]), f32t(&[8, 1, 1])]
        ),
        kd(&[1, 8, 4, 4])
    );
    assert!(run(Op::Binary(BinaryOp::PRelu), &[f32t(&[8]), f32t(&[2, 8])]).is_err());
}

#[test]
fn elementwise_unary_and_activations() {
    let relu = Op::Unary(UnaryOp::Relu);
    let x = dyn_t(DType::F32, &[sym("N"), k(3)]);
    assert_eq!(one(relu, &[x.clone()]), x.0);
    let t = one(Op::Unary(UnaryOp::IsNaN), &[f32t(&[2])]);
    assert_eq!(t.dtype, DType::Bool);
    assert!(run(Op::Unary(UnaryOp::Not), &[f32t(&[2])]).is_err());
    assert!(run(Op::Unary(UnaryOp::Not), &[typed(DType::Bool, &[2])]).is_ok());
    assert!(run(Op::Unary(UnaryOp::Exp), &[typed(DType::I32, &[2])]).is_err());
    assert!(run(Op::Unary(UnaryOp::Abs), &[typed(DType::I32, &[2])]).is_ok());
    assert_eq!(
        one(Op::Unary(UnaryOp::Sqrt), &[f32t(&[])]),
        TensorType::scalar(DType::F32)
    );
    for op in [
        Op::Unary(UnaryOp::HardSigmoid {
            alpha: F32(0.2),
            beta: F32(0.5),
        }),
        Op::Unary(UnaryOp::LeakyRelu { alpha: F32(0.1) }),
        Op::Unary(UnaryOp::Elu { alpha: F32(1.0) }),
        Op::Unary(UnaryOp::Selu {
            alpha: F32(1.6),
            gamma: F32(1.0),
        }),
        Op::Unary(UnaryOp::Gelu { tanh_approx: false }),
    ] {
        assert_eq!(shape(op.clone(), &[f32t(&[2, 3])]), kd(&[2, 3]));
        assert!(run(op, &[typed(DType::I64, &[2])]).is_err());
    }
    assert!(run(Op::Unary(UnaryOp::Relu), &[]).is_err());
}

#[test]
fn clip_where_cast_identity() {
    let x = f32t(&[2, 3]);
    let clip = Op::Unary(UnaryOp::Clip {
        min: F32(0.0),
        max: F32(6.0),
    });
    assert_eq!(shape(clip.clone(), &[x.clone()]), kd(&[2, 3]));
    assert!(
        run(clip, &[typed(DType::I64, &[2])]).is_err(),
        "floats only"
    );
    // Bounds as inputs: at least `min`, scalars of x's dtype (integers too).
    assert!(run(Op::Clip, &[x.clone()]).is_err());
    assert_eq!(
        shape(Op::Clip, &[x.clone(), f32t(&[]), f32t(&[1])]),
        kd(&[2, 3])
    );
    assert_eq!(
        shape(Op::Clip, &[typed(DType::I64, &[2]), typed(DType::I64, &[])]),
        kd(&[2])
    );
    assert!(run(Op::Clip, &[x.clone(), f32t(&[2])]).is_err());
    assert!(run(Op::Clip, &[x.clone(), typed(DType::F64, &[])]).is_err());

    let t = one(
        Op::Where,
        &[typed(DType::Bool, &[2, 1]), f32t(&[3]), f32t(&[1, 1])],
    );
    assert_eq!(t, TensorType::known(DType::F32, &[2, 3]));
    assert!(run(Op::Where, &[f32t(&[2]), f32t(&[2]), f32t(&[2])])
        .unwrap_err()
        .contains("bool"));
    assert!(run(
        Op::Where,
        &[
            typed(DType::Bool, &[2]),
            f32t(&[2]),
            typed(DType::I64, &[2])
        ]
    )
    .is_err());

    let t = one(Op::Cast { to: DType::I64 }, &[x.clone()]);
    assert_eq!(t, TensorType::known(DType::I64, &[2, 3]));
    let q = Arc::new(QuantParams {
        scale: vec![F32(0.5)],
        zero_point: vec![3],
        axis: None,
    });
    let qt = TensorType::known(DType::U8, &[4]).with_quant(Some(q));
    assert_eq!(one(Op::Identity, &[Arg(qt.clone(), None)]), qt);
}

fn conv(
    strides: &[usize],
    pads: &[usize],
    dilations: &[usize],
    group: usize,
    auto_pad: AutoPad,
) -> Op {
    Op::Conv(ConvAttrs {
        strides: strides.to_vec(),
        pads: pads.to_vec(),
        dilations: dilations.to_vec(),
        group,
        auto_pad,
        epilogue: Default::default(),
        integer: None,
    })
}

#[test]
fn conv_shapes() {
    let x = f32t(&[1, 3, 224, 224]);
    let w = f32t(&[64, 3, 7, 7]);
    let b = f32t(&[64]);
    assert_eq!(
        shape(
            conv(&[2, 2], &[3, 3, 3, 3], &[], 1, AutoPad::NotSet),
            &[x.clone(), w.clone(), b.clone()]
        ),
        kd(&[1, 64, 112, 112])
    );
    // No padding, defaults.
    assert_eq!(
        shape(
            conv(&[], &[], &[], 1, AutoPad::NotSet),
            &[x.clone(), w.clone()]
        ),
        kd(&[1, 64, 218, 218])
    );
    // Dilation 2: effective kernel 13.
    assert_eq!(
        shape(
            conv(&[], &[], &[2, 2], 1, AutoPad::NotSet),
            &[x.clone(), w.clone()]
        ),
        kd(&[1, 64, 212, 212])
    );
    // SAME_UPPER keeps ceil(in / stride).
    assert_eq!(
        shape(
            conv(&[2, 2], &[], &[], 1, AutoPad::SameUpper),
            &[f32t(&[1, 3, 225, 224]), w.clone()]
        ),
        kd(&[1, 64, 113, 112])
    );
    assert_eq!(
        shape(
            conv(&[], &[], &[], 1, AutoPad::Valid),
            &[x.clone(), w.clone()]
        ),
        kd(&[1, 64, 218, 218])
    );
    // Groups: depthwise.
    assert_eq!(
        shape(
            conv(&[], &[1, 1, 1, 1], &[], 32, AutoPad::NotSet),
            &[f32t(&[1, 32, 10, 10]), f32t(&[32, 1, 3, 3])]
        ),
        kd(&[1, 32, 10, 10])
    );
    assert!(err(
        conv(&[], &[], &[], 2, AutoPad::NotSet),
        &[f32t(&[1, 32, 10, 10]), f32t(&[32, 32, 3, 3])]
    )
    .contains("channels"));
    assert!(err(
        conv(&[], &[], &[], 2, AutoPad::NotSet),
        &[f32t(&[1, 4, 10, 10]), f32t(&[3, 2, 3, 3])]
    )
    .contains("divisible"));
    assert!(err(
        conv(&[], &[], &[], 1, AutoPad::NotSet),
        &[x.clone(), f32t(&[64, 3, 7])]
    )
    .contains("weight has 3 dims, input has 4"));
    assert!(run(
        conv(&[], &[], &[], 1, AutoPad::NotSet),
        &[x.clone(), w.clone(), f32t(&[32])]
    )
    .is_err());
    assert!(run(
        conv(&[0, 1], &[], &[], 1, AutoPad::NotSet),
        &[x.clone(), w.clone()]
    )
    .is_err());
    assert!(run(
        conv(&[1], &[], &[], 1, AutoPad::NotSet),
        &[x.clone(), w.clone()]
    )
    .is_err());
    assert!(run(
        conv(&[], &[1, 1], &[], 1, AutoPad::NotSet),
        &[x.clone(), w.clone()]
    )
    .is_err());
    assert!(run(
        conv(&[], &[], &[], 0, AutoPad::NotSet),
        &[x.clone(), w.clone()]
    )
    .is_err());
    // Kernel larger than the input.
    assert!(run(
        conv(&[], &[], &[], 1, AutoPad::NotSet),
        &[f32t(&[1, 3, 5, 5]), w.clone()]
    )
    .is_err());
    // Absurd extents overflow into errors, not panics.
    assert!(run(
        conv(
            &[],
            &[usize::MAX, 0, usize::MAX, 0],
            &[],
            1,
            AutoPad::NotSet
        ),
        &[f32t(&[1, 3, 224, 224]), w.clone()]
    )
    .is_err());
    assert!(run(
        conv(&[], &[], &[usize::MAX, 1], 1, AutoPad::NotSet),
        &[x.clone(), w.clone()]
    )
    .is_err());
    // Symbolic batch propagates; symbolic spatial dims become unknown.
    let xs = dyn_t(DType::F32, &[sym("N"), k(3), sym("H"), k(224)]);
    assert_eq!(
        shape(
            conv(&[2, 2], &[3, 3, 3, 3], &[], 1, AutoPad::NotSet),
            &[xs, w.clone(), b]
        ),
        vec![sym("N"), k(64), U, k(112)]
    );
    // 1-D conv.
    assert_eq!(
        shape(
            conv(&[], &[], &[], 1, AutoPad::NotSet),
            &[f32t(&[2, 4, 10]), f32t(&[8, 4, 3])]
        ),
        kd(&[2, 8, 8])
    );
}

#[test]
fn conv_pads_helper() {
    // SAME_UPPER: total 5 for in=224,k=7,s=2 -> (2,3); SAME_LOWER -> (3,2).
    assert_eq!(
        conv_pads(AutoPad::SameUpper, &[224], &[7], &[2], &[], &[]).unwrap(),
        vec![(2, 3)]
    );
    assert_eq!(
        conv_pads(AutoPad::SameLower, &[224], &[7], &[2], &[], &[]).unwrap(),
        vec![(3, 2)]
    );
    assert_eq!(
        conv_pads(AutoPad::NotSet, &[5, 6], &[3, 3], &[], &[], &[1, 2, 3, 4]).unwrap(),
        vec![(1, 3), (2, 4)]
    );
    assert_eq!(
        conv_pads(AutoPad::Valid, &[5], &[3], &[], &[], &[1, 1]).unwrap(),
        vec![(0, 0)]
    );
    // Stride larger than the kernel: no padding needed.
    assert_eq!(
        conv_pads(AutoPad::SameUpper, &[5], &[1], &[3], &[], &[]).unwrap(),
        vec![(0, 0)]
    );
    assert!(conv_pads(AutoPad::NotSet, &[5], &[3, 3], &[], &[], &[]).is_err());
    assert!(conv_pads(AutoPad::NotSet, &[5], &[3], &[0], &[], &[]).is_err());
    assert_eq!(conv_output_extent(224, 7, 2, 1, (3, 3)).unwrap(), 112);
}

fn pool(
    kind: PoolKind,
    kernel: &[usize],
    strides: &[usize],
    pads: &[usize],
    ceil_mode: bool,
    auto_pad: AutoPad,
) -> Op {
    Op::Pool(PoolAttrs {
        kind,
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        pads: pads.to_vec(),
        dilations: vec![],
        ceil_mode,
        count_include_pad: false,
        auto_pad,
    })
}

#[test]
fn pool_shapes() {
    let x = f32t(&[1, 64, 112, 112]);
    assert_eq!(
        shape(
            pool(
                PoolKind::Max,
                &[3, 3],
                &[2, 2],
                &[1, 1, 1, 1],
                false,
                AutoPad::NotSet
            ),
            &[x.clone()]
        ),
        kd(&[1, 64, 56, 56])
    );
    // ceil_mode: (112 - 3) / 2 = 54.5 -> 55 + 1 = 56 vs floor 55.
    assert_eq!(
        shape(
            pool(PoolKind::Max, &[3, 3], &[2, 2], &[], false, AutoPad::NotSet),
            &[x.clone()]
        ),
        kd(&[1, 64, 55, 55])
    );
    assert_eq!(
        shape(
            pool(PoolKind::Max, &[3, 3], &[2, 2], &[], true, AutoPad::NotSet),
            &[x.clone()]
        ),
        kd(&[1, 64, 56, 56])
    );
    // ceil_mode dropping a window that would start in the end padding:
    // in=5, k=2, s=2, pads (1,1): span 5, ceil(5/2)+1 = 4, but window 3 starts at 6 >= 5+1 -> 3.
    assert_eq!(pool_output_extent(5, 2, 2, 1, (1, 1), true).unwrap(), 3);
    assert_eq!(pool_output_extent(5, 2, 2, 1, (1, 1), false).unwrap(), 3);
    assert_eq!(pool_output_extent(6, 3, 2, 1, (0, 0), true).unwrap(), 3);
    assert_eq!(pool_output_extent(6, 3, 2, 1, (0, 0), false).unwrap(), 2);
    // SAME with ceil_mode still gives ceil(in / stride).
    assert_eq!(
        shape(
            pool(
                PoolKind::Average,
                &[3, 3],
                &[2, 2],
                &[],
                true,
                AutoPad::SameUpper
            ),
            &[f32t(&[1, 1, 7, 8])]
        ),
        kd(&[1, 1, 4, 4])
    );
    // Errors.
    assert!(run(
        pool(PoolKind::Max, &[3], &[], &[], false, AutoPad::NotSet),
        &[x.clone()]
    )
    .is_err());
    assert!(run(
        pool(PoolKind::Max, &[0, 3], &[], &[], false, AutoPad::NotSet),
        &[x.clone()]
    )
    .is_err());
    assert!(run(
        pool(PoolKind::Max, &[3, 3], &[], &[], false, AutoPad::NotSet),
        &[f32t(&[1, 2])]
    )
    .is_err());
    assert!(run(
        pool(PoolKind::Average, &[2, 2], &[], &[], false, AutoPad::NotSet),
        &[typed(DType::U8, &[1, 1, 4, 4])]
    )
    .is_err());
    assert!(run(
        pool(PoolKind::Max, &[2, 2], &[], &[], false, AutoPad::NotSet),
        &[typed(DType::U8, &[1, 1, 4, 4])]
    )
    .is_ok());
    // Symbolic batch.
    assert_eq!(
        shape(
            pool(PoolKind::Max, &[2, 2], &[2, 2], &[], false, AutoPad::NotSet),
            &[dyn_t(DType::F32, &[sym("N"), k(8), k(4), sym("W")])]
        ),
        vec![sym("N"), k(8), k(2), U]
    );
    // Global pools.
    assert_eq!(
        shape(Op::GlobalPool(PoolKind::Average), &[x.clone()]),
        kd(&[1, 64, 1, 1])
    );
    assert!(run(Op::GlobalPool(PoolKind::Average), &[f32t(&[3])]).is_err());
}

#[test]
fn gemm_and_matmul() {
    let g = |ta, tb| {
        Op::Gemm(GemmAttrs {
            trans_a: ta,
            trans_b: tb,
            ..Default::default()
        })
    };
    assert_eq!(
        shape(
            g(false, true),
            &[f32t(&[2, 512]), f32t(&[1000, 512]), f32t(&[1000])]
        ),
        kd(&[2, 1000])
    );
    assert_eq!(
        shape(
            g(true, false),
            &[f32t(&[512, 2]), f32t(&[512, 10]), f32t(&[1, 10])]
        ),
        kd(&[2, 10])
    );
    assert_eq!(
        shape(g(false, false), &[f32t(&[2, 3]), f32t(&[3, 4]), f32t(&[])]),
        kd(&[2, 4])
    );
    assert!(err(g(false, false), &[f32t(&[2, 3]), f32t(&[4, 4])]).contains("inner"));
    assert!(run(
        g(false, false),
        &[f32t(&[2, 3]), f32t(&[3, 4]), f32t(&[3, 4])]
    )
    .is_err());
    assert!(run(g(false, false), &[f32t(&[2, 3, 1]), f32t(&[3, 4])]).is_err());
    // Symbolic batch through gemm.
    assert_eq!(
        shape(
            g(false, true),
            &[
                dyn_t(DType::F32, &[sym("N"), k(8)]),
                f32t(&[4, 8]),
                f32t(&[4])
            ]
        ),
        vec![sym("N"), k(4)]
    );

    let mm = Op::MatMul;
    assert_eq!(
        shape(mm.clone(), &[f32t(&[2, 3]), f32t(&[3, 4])]),
        kd(&[2, 4])
    );
    assert_eq!(shape(mm.clone(), &[f32t(&[3]), f32t(&[3, 4])]), kd(&[4]));
    assert_eq!(shape(mm.clone(), &[f32t(&[2, 3]), f32t(&[3])]), kd(&[2]));
    assert_eq!(shape(mm.clone(), &[f32t(&[3]), f32t(&[3])]), kd(&[]));
    assert_eq!(
        shape(mm.clone(), &[f32t(&[5, 1, 2, 3]), f32t(&[4, 3, 6])]),
        kd(&[5, 4, 2, 6])
    );
    assert_eq!(
        shape(
            mm.clone(),
            &[
                dyn_t(DType::F32, &[sym("B"), sym("S"), k(64)]),
                f32t(&[64, 32])
            ]
        ),
        vec![sym("B"), sym("S"), k(32)]
    );
    assert!(run(mm.clone(), &[f32t(&[2, 3]), f32t(&[4, 5])]).is_err());
    assert!(run(mm.clone(), &[f32t(&[2, 2, 3]), f32t(&[3, 3, 4])]).is_err());
    assert!(run(mm.clone(), &[f32t(&[]), f32t(&[3])]).is_err());
}

#[test]
fn batchnorm_softmax_layernorm() {
    let bn = Op::BatchNorm { epsilon: F32(1e-5) };
    let c = f32t(&[16]);
    assert_eq!(
        shape(
            bn.clone(),
            &[
                f32t(&[2, 16, 4, 4]),
                c.clone(),
                c.clone(),
                c.clone(),
                c.clone()
            ]
        ),
        kd(&[2, 16, 4, 4])
    );
    assert!(run(
        bn.clone(),
        &[
            f32t(&[2, 16, 4, 4]),
            c.clone(),
            c.clone(),
            c.clone(),
            f32t(&[8])
        ]
    )
    .is_err());
    assert!(run(bn, &[f32t(&[2, 16, 4, 4]), c.clone()]).is_err());

    assert_eq!(
        shape(Op::Softmax { axis: -1 }, &[f32t(&[2, 5])]),
        kd(&[2, 5])
    );
    assert!(run(Op::Softmax { axis: 2 }, &[f32t(&[2, 5])]).is_err());
    assert!(run(Op::LogSoftmax { axis: -3 }, &[f32t(&[2, 5])]).is_err());
    assert!(run(Op::Softmax { axis: i64::MIN }, &[f32t(&[2, 5])]).is_err());

    // Attention: q [.., M, D], k_t [.., D, N], v [.., N, Dv] -> [.., M, Dv]; equal batch dims.
    let att = Op::Attention { scale: F32(0.125) };
    assert_eq!(
        shape(
            att.clone(),
            &[
                f32t(&[2, 3, 7, 4]),
                f32t(&[2, 3, 4, 5]),
                f32t(&[2, 3, 5, 6])
            ]
        ),
        kd(&[2, 3, 7, 6])
    );
    assert_eq!(
        shape(att.clone(), &[f32t(&[7, 4]), f32t(&[4, 5]), f32t(&[5, 6])]),
        kd(&[7, 6])
    );
    for (i, bad) in [
        vec![f32t(&[7, 4]), f32t(&[3, 5]), f32t(&[5, 6])],
        vec![f32t(&[7, 4]), f32t(&[4, 5]), f32t(&[4, 6])],
        vec![f32t(&[2, 7, 4]), f32t(&[1, 4, 5]), f32t(&[2, 5, 6])],
        vec![f32t(&[2, 7, 4]), f32t(&[4, 5]), f32t(&[5, 6])],
        vec![f32t(&[4]), f32t(&[4]), f32t(&[4])],
    ]
    .into_iter()
    .enumerate()
    {
        assert!(run(att.clone(), &bad).is_err(), "case {i}");
    }

    let ln = Op::LayerNorm {
        axis: -1,
        epsilon: F32(1e-5),
    };
    assert_eq!(
        shape(ln.clone(), &[f32t(&[2, 7, 8]), f32t(&[8]), f32t(&[8])]),
        kd(&[2, 7, 8])
    );
    assert!(run(ln, &[f32t(&[2, 7, 8]), f32t(&[7])]).is_err());
    assert!(run(
        Op::LayerNorm {
            axis: 3,
            epsilon: F32(1e-5)
        },
        &[f32t(&[2, 7, 8]), f32t(&[8])]
    )
    .is_err());
}

fn reduce(keepdims: bool, noop: bool) -> Op {
    Op::Reduce(ReduceAttrs {
        kind: ReduceKind::Mean,
        keepdims,
        noop_with_empty_axes: noop,
    })
}

#[test]
fn reductions() {
    let x = f32t(&[2, 3, 4]);
    assert_eq!(
        shape(reduce(true, false), &[x.clone(), ints(&[1])]),
        kd(&[2, 1, 4])
    );
    assert_eq!(
        shape(reduce(false, false), &[x.clone(), ints(&[-1, 0])]),
        kd(&[3])
    );
    assert_eq!(shape(reduce(false, false), &[x.clone()]), kd(&[]));
    assert_eq!(
        shape(reduce(true, false), &[x.clone(), ints(&[])]),
        kd(&[1, 1, 1])
    );
    assert_eq!(
        shape(reduce(false, true), &[x.clone(), ints(&[])]),
        kd(&[2, 3, 4])
    );
    assert_eq!(shape(reduce(false, true), &[x.clone()]), kd(&[2, 3, 4]));
    assert!(run(reduce(false, false), &[x.clone(), ints(&[3])]).is_err());
    assert!(run(reduce(false, false), &[x.clone(), ints(&[1, -2])]).is_err());
    assert!(run(reduce(false, false), &[x.clone(), floats(&[1.0])]).is_err());
    // Non-constant axes.
    assert_eq!(
        shape(reduce(false, false), &[x.clone(), typed(DType::I64, &[2])]),
        vec![U]
    );
    assert_eq!(
        shape(
            reduce(true, false),
            &[f32t(&[2, 1, 4]), typed(DType::I64, &[2])]
        ),
        vec![U, k(1), U]
    );
    assert!(run(reduce(false, false), &[x.clone(), dyn_t(DType::I64, &[U])]).is_err());
    // Scalars reduce to scalars.
    assert_eq!(shape(reduce(false, false), &[f32t(&[])]), kd(&[]));
    // Symbolic dims survive on unreduced axes.
    assert_eq!(
        shape(
            reduce(true, false),
            &[dyn_t(DType::F32, &[sym("N"), k(3)]), ints(&[1])]
        ),
        vec![sym("N"), k(1)]
    );
}

#[test]
fn flatten_and_transpose() {
    let x = f32t(&[2, 3, 4, 5]);
    assert_eq!(shape(Op::Flatten { axis: 1 }, &[x.clone()]), kd(&[2, 60]));
    assert_eq!(shape(Op::Flatten { axis: 0 }, &[x.clone()]), kd(&[1, 120]));
    assert_eq!(shape(Op::Flatten { axis: 4 }, &[x.clone()]), kd(&[120, 1]));
    assert_eq!(shape(Op::Flatten { axis: -2 }, &[x.clone()]), kd(&[6, 20]));
    assert!(run(Op::Flatten { axis: 5 }, &[x.clone()]).is_err());
    assert!(run(Op::Flatten { axis: -5 }, &[x.clone()]).is_err());
    let xs = dyn_t(DType::F32, &[sym("N"), k(3), k(4), k(5)]);
    assert_eq!(
        shape(Op::Flatten { axis: 1 }, &[xs.clone()]),
        vec![sym("N"), k(60)]
    );
    assert_eq!(
        shape(Op::Flatten { axis: 2 }, &[xs.clone()]),
        vec![U, k(20)]
    );
    assert!(run(Op::Flatten { axis: 0 }, &[f32t(&[usize::MAX, 2, 2])]).is_err());

    assert_eq!(
        shape(
            Op::Transpose {
                perm: vec![0, 2, 3, 1]
            },
            &[xs.clone()]
        ),
        vec![sym("N"), k(4), k(5), k(3)]
    );
    assert!(run(
        Op::Transpose {
            perm: vec![0, 1, 1, 2]
        },
        &[x.clone()]
    )
    .is_err());
    assert!(run(
        Op::Transpose {
            perm: vec![0, 1, 2]
        },
        &[x.clone()]
    )
    .is_err());
    assert!(run(
        Op::Transpose {
            perm: vec![0, 1, 2, 9]
        },
        &[x.clone()]
    )
    .is_err());
    assert_eq!(shape(Op::Transpose { perm: vec![] }, &[f32t(&[])]), kd(&[]));
    // Per-axis quantization follows its axis.
    let q = Arc::new(QuantParams {
        scale: vec![F32(0.1), F32(0.2)],
        zero_point: vec![0, 0],
        axis: Some(0),
    });
    let qt = TensorType::known(DType::I8, &[2, 3]).with_quant(Some(q));
    let t = one(Op::Transpose { perm: vec![1, 0] }, &[Arg(qt, None)]);
    assert_eq!(t.quant.unwrap().axis, Some(1));
}

#[test]
fn reshape() {
    let x = f32t(&[2, 3, 4]);
    let r = Op::Reshape { allowzero: false };
    assert_eq!(shape(r.clone(), &[x.clone(), ints(&[6, -1])]), kd(&[6, 4]));
    assert_eq!(shape(r.clone(), &[x.clone(), ints(&[0, -1])]), kd(&[2, 12]));
    assert_eq!(shape(r.clone(), &[x.clone(), ints(&[-1])]), kd(&[24]));
    assert_eq!(
        shape(r.clone(), &[x.clone(), ints(&[0, 0, 2, 2])]),
        kd(&[2, 3, 2, 2])
    );
    assert!(err(r.clone(), &[x.clone(), ints(&[5, -1])]).contains("divisible"));
    assert!(run(r.clone(), &[x.clone(), ints(&[5, 5])]).is_err());
    assert!(run(r.clone(), &[x.clone(), ints(&[-1, -1])]).is_err());
    assert!(run(r.clone(), &[x.clone(), ints(&[-2, 12])]).is_err());
    assert!(run(r.clone(), &[x.clone(), ints(&[0, 0, 0, 0])]).is_err());
    assert!(run(r.clone(), &[x.clone(), ints(&[i64::MAX, i64::MAX])]).is_err());
    assert!(run(r.clone(), &[x.clone(), floats(&[24.0])]).is_err());
    assert!(err(r.clone(), &[x.clone(), typed(DType::I64, &[2, 2])]).contains("i64 1-D"));
    // To a scalar and back.
    assert_eq!(shape(r.clone(), &[f32t(&[1, 1]), ints(&[])]), kd(&[]));
    assert_eq!(shape(r.clone(), &[f32t(&[]), ints(&[1, -1])]), kd(&[1, 1]));
    // allowzero: 0 is a real extent.
    assert_eq!(
        shape(
            Op::Reshape { allowzero: true },
            &[f32t(&[0, 3]), ints(&[3, 0])]
        ),
        kd(&[3, 0])
    );
    assert!(run(
        Op::Reshape { allowzero: true },
        &[f32t(&[0, 3]), ints(&[0, -1])]
    )
    .is_err());
    // Symbols cancel so -1 can still be inferred.
    let xs = dyn_t(DType::F32, &[sym("N"), k(3), k(4)]);
    assert_eq!(
        shape(r.clone(), &[xs.clone(), ints(&[0, -1])]),
        vec![sym("N"), k(12)]
    );
    assert_eq!(
        shape(r.clone(), &[xs.clone(), ints(&[-1, 12])]),
        vec![sym("N"), k(12)]
    );
    assert_eq!(shape(r.clone(), &[xs.clone(), ints(&[-1])]), vec![U]);
    assert_eq!(
        shape(r.clone(), &[xs.clone(), ints(&[0, 2, -1, 3])]),
        vec![sym("N"), k(2), k(2), k(3)]
    );
    // Non-constant shape: rank from the shape input's length.
    assert_eq!(
        shape(r.clone(), &[x.clone(), typed(DType::I64, &[3])]),
        vec![U, U, U]
    );
    assert!(run(r, &[x, dyn_t(DType::I64, &[sym("R")])]).is_err());
}

#[test]
fn concat() {
    let op = Op::Concat { axis: 1 };
    assert_eq!(
        shape(op.clone(), &[f32t(&[2, 3]), f32t(&[2, 5]), f32t(&[2, 1])]),
        kd(&[2, 9])
    );
    assert_eq!(shape(op.clone(), &[f32t(&[2, 3])]), kd(&[2, 3]));
    assert!(run(op.clone(), &[f32t(&[2, 3]), f32t(&[3, 3])]).is_err());
    assert!(run(op.clone(), &[f32t(&[2, 3]), f32t(&[2, 3, 1])]).is_err());
    assert!(run(op.clone(), &[f32t(&[2, 3]), typed(DType::I64, &[2, 3])]).is_err());
    assert!(run(op.clone(), &[]).is_err());
    assert!(run(Op::Concat { axis: 2 }, &[f32t(&[2, 3])]).is_err());
    assert!(run(Op::Concat { axis: 0 }, &[f32t(&[]), f32t(&[])]).is_err());
    assert_eq!(
        shape(
            Op::Concat { axis: -1 },
            &[
                dyn_t(DType::F32, &[sym("N"), k(3)]),
                dyn_t(DType::F32, &[U, k(4)])
            ]
        ),
        vec![sym("N"), k(7)]
    );
    assert_eq!(
        shape(
            Op::Concat { axis: 0 },
            &[dyn_t(DType::F32, &[sym("N")]), f32t(&[4])]
        ),
        vec![U]
    );
    assert!(run(Op::Concat { axis: 0 }, &[f32t(&[usize::MAX]), f32t(&[1])]).is_err());
}

#[test]
fn split() {
    let x = f32t(&[2, 10]);
    let outs = run(
        Op::Split {
            axis: 1,
            num_outputs: 3,
        },
        &[x.clone()],
    )
    .unwrap();
    let dims: Vec<Vec<Dim>> = outs.iter().map(|t| t.shape.to_vec()).collect();
    assert_eq!(dims, vec![kd(&[2, 4]), kd(&[2, 4]), kd(&[2, 2])]);
    let outs = run(
        Op::Split {
            axis: -1,
            num_outputs: 2,
        },
        &[x.clone()],
    )
    .unwrap();
    assert_eq!(outs[0].shape.to_vec(), kd(&[2, 5]));
    assert_eq!(outs[1].shape.to_vec(), kd(&[2, 5]));
    let outs = run(
        Op::Split {
            axis: 1,
            num_outputs: 2,
        },
        &[x.clone(), ints(&[3, 7])],
    )
    .unwrap();
    assert_eq!(outs[1].shape.to_vec(), kd(&[2, 7]));
    assert!(run(
        Op::Split {
            axis: 1,
            num_outputs: 2
        },
        &[x.clone(), ints(&[3, 6])]
    )
    .is_err());
    assert!(run(
        Op::Split {
            axis: 1,
            num_outputs: 3
        },
        &[x.clone(), ints(&[3, 7])]
    )
    .is_err());
    assert!(run(
        Op::Split {
            axis: 1,
            num_outputs: 2
        },
        &[x.clone(), ints(&[-1, 11])]
    )
    .is_err());
    assert!(run(
        Op::Split {
            axis: 1,
            num_outputs: 0
        },
        &[x.clone()]
    )
    .is_err());
    assert!(run(
        Op::Split {
            axis: 2,
            num_outputs: 2
        },
        &[x.clone()]
    )
    .is_err());
    // 5 into 4 parts of ceil(5/4) = 2 would need a negative last part.
    assert!(run(
        Op::Split {
            axis: 0,
            num_outputs: 4
        },
        &[f32t(&[5])]
    )
    .is_err());
    // Symbolic axis extent.
    let outs = run(
        Op::Split {
            axis: 0,
            num_outputs: 2,
        },
        &[dyn_t(DType::F32, &[sym("N"), k(4)])],
    )
    .unwrap();
    assert_eq!(outs[0].shape.to_vec(), vec![U, k(4)]);
    // Non-constant split sizes.
    let outs = run(
        Op::Split {
            axis: 1,
            num_outputs: 2,
        },
        &[x, typed(DType::I64, &[2])],
    )
    .unwrap();
    assert_eq!(outs[0].shape.to_vec(), vec![k(2), U]);
}

#[test]
fn slice() {
    let x = f32t(&[10, 20, 30]);
    let sl = |s: &[i64], e: &[i64], a: &[i64], st: &[i64]| {
        shape(Op::Slice, &[x.clone(), ints(s), ints(e), ints(a), ints(st)])
    };
    assert_eq!(sl(&[1], &[5], &[0], &[1]), kd(&[4, 20, 30]));
    assert_eq!(sl(&[0], &[i64::MAX], &[1], &[2]), kd(&[10, 10, 30]));
    assert_eq!(sl(&[-3], &[i64::MAX], &[-1], &[1]), kd(&[10, 20, 3]));
    // Negative steps: reverse whole axis, and partial reverse.
    assert_eq!(sl(&[-1], &[i64::MIN], &[0], &[-1]), kd(&[10, 20, 30]));
    assert_eq!(sl(&[8], &[2], &[0], &[-2]), kd(&[3, 20, 30]));
    assert_eq!(sl(&[100], &[-100], &[0], &[-3]), kd(&[4, 20, 30]));
    // Clamping out-of-range starts/ends and empty results.
    assert_eq!(sl(&[-100], &[100], &[0], &[1]), kd(&[10, 20, 30]));
    assert_eq!(sl(&[5], &[2], &[0], &[1]), kd(&[0, 20, 30]));
    assert_eq!(sl(&[2], &[5], &[0], &[-1]), kd(&[0, 20, 30]));
    // Axes absent: leading axes; steps absent: 1.
    assert_eq!(
        shape(Op::Slice, &[x.clone(), ints(&[1, 2]), ints(&[3, 4])]),
        kd(&[2, 2, 30])
    );
    assert_eq!(slice_extent(10, 0, i64::MAX, i64::MAX), 1);
    assert_eq!(slice_extent(0, -1, i64::MIN, -1), 0);
    // Errors.
    assert!(err(
        Op::Slice,
        &[x.clone(), ints(&[0]), ints(&[1]), ints(&[0]), ints(&[0])]
    )
    .contains("non-zero"));
    assert!(run(Op::Slice, &[x.clone(), ints(&[0]), ints(&[1, 2])]).is_err());
    assert!(run(Op::Slice, &[x.clone(), ints(&[0]), ints(&[1]), ints(&[3])]).is_err());
    assert!(run(
        Op::Slice,
        &[x.clone(), ints(&[0, 0]), ints(&[1, 1]), ints(&[1, -2])]
    )
    .is_err());
    assert!(run(Op::Slice, &[x.clone(), floats(&[0.0]), ints(&[1])]).is_err());
    assert!(run(Op::Slice, &[x.clone(), ints(&[0])]).is_err());
    // i32 index inputs are accepted.
    let i32s = |v: Vec<i32>| c(Tensor::from_vec(vec![v.len()], v));
    assert_eq!(
        shape(Op::Slice, &[x.clone(), i32s(vec![2]), i32s(vec![4])]),
        kd(&[2, 20, 30])
    );
    // Symbolic dims: whole-axis slices keep them, others become unknown.
    let xs = dyn_t(DType::F32, &[sym("N"), sym("S"), k(8)]);
    assert_eq!(
        shape(
            Op::Slice,
            &[
                xs.clone(),
                ints(&[0, 1]),
                ints(&[i64::MAX, i64::MAX]),
                ints(&[0, 1])
            ]
        ),
        vec![sym("N"), U, k(8)]
    );
    // Non-constant starts on known axes.
    assert_eq!(
        shape(
            Op::Slice,
            &[x.clone(), typed(DType::I64, &[1]), ints(&[5]), ints(&[2])]
        ),
        kd(&[10, 20, 0])
            .into_iter()
            .enumerate()
            .map(|(i, d)| if i == 2 { U } else { d })
            .collect::<Vec<_>>()
    );
    assert_eq!(
        shape(
            Op::Slice,
            &[
                x,
                typed(DType::I64, &[1]),
                typed(DType::I64, &[1]),
                typed(DType::I64, &[1])
            ]
        ),
        vec![U, U, U]
    );
}

#[test]
fn gather() {
    let data = f32t(&[5, 6, 7]);
    let idx = |dims: &[usize]| typed(DType::I64, dims);
    assert_eq!(
        shape(Op::Gather { axis: 0 }, &[data.clone(), idx(&[2, 3])]),
        kd(&[2, 3, 6, 7])
    );
    assert_eq!(
        shape(Op::Gather { axis: 1 }, &[data.clone(), idx(&[])]),
        kd(&[5, 7])
    );
    assert_eq!(
        shape(Op::Gather { axis: -1 }, &[data.clone(), idx(&[4])]),
        kd(&[5, 6, 4])
    );
    assert_eq!(
        shape(
            Op::Gather { axis: 1 },
            &[data.clone(), typed(DType::I32, &[2])]
        ),
        kd(&[5, 2, 7])
    );
    assert!(run(Op::Gather { axis: 3 }, &[data.clone(), idx(&[1])]).is_err());
    assert!(run(Op::Gather { axis: 0 }, &[data.clone(), f32t(&[1])]).is_err());
    assert!(run(Op::Gather { axis: 0 }, &[data.clone(), ints(&[5])]).is_err());
    assert!(run(Op::Gather { axis: 0 }, &[data.clone(), ints(&[-5, 4])]).is_ok());
    assert!(run(Op::Gather { axis: 0 }, &[f32t(&[]), idx(&[])]).is_err());
    assert_eq!(
        shape(
            Op::Gather { axis: 0 },
            &[f32t(&[100, 16]), dyn_t(DType::I64, &[sym("B"), sym("S")])]
        ),
        vec![sym("B"), sym("S"), k(16)]
    );
}

#[test]
fn squeeze_unsqueeze() {
    let x = f32t(&[1, 3, 1, 5]);
    assert_eq!(shape(Op::Squeeze, &[x.clone()]), kd(&[3, 5]));
    assert_eq!(shape(Op::Squeeze, &[x.clone(), ints(&[0])]), kd(&[3, 1, 5]));
    assert_eq!(
        shape(Op::Squeeze, &[x.clone(), ints(&[-2, 0])]),
        kd(&[3, 5])
    );
    assert!(err(Op::Squeeze, &[x.clone(), ints(&[1])]).contains("extent 3"));
    assert!(run(Op::Squeeze, &[x.clone(), ints(&[4])]).is_err());
    assert!(run(Op::Squeeze, &[x.clone(), ints(&[0, 0])]).is_err());
    assert_eq!(shape(Op::Squeeze, &[f32t(&[1])]), kd(&[]));
    // Symbolic dims: explicit axes work, implicit ones cannot be decided.
    let xs = dyn_t(DType::F32, &[sym("N"), k(1), k(4)]);
    assert_eq!(
        shape(Op::Squeeze, &[xs.clone(), ints(&[1])]),
        vec![sym("N"), k(4)]
    );
    assert!(run(Op::Squeeze, &[xs.clone()]).is_err());
    assert_eq!(
        shape(Op::Squeeze, &[x.clone(), typed(DType::I64, &[2])]),
        vec![U, U]
    );

    let y = f32t(&[3, 4]);
    assert_eq!(
        shape(Op::Unsqueeze, &[y.clone(), ints(&[0])]),
        kd(&[1, 3, 4])
    );
    assert_eq!(
        shape(Op::Unsqueeze, &[y.clone(), ints(&[-1])]),
        kd(&[3, 4, 1])
    );
    assert_eq!(
        shape(Op::Unsqueeze, &[y.clone(), ints(&[0, 3])]),
        kd(&[1, 3, 4, 1])
    );
    assert_eq!(
        shape(Op::Unsqueeze, &[y.clone(), ints(&[1, 0])]),
        kd(&[1, 1, 3, 4])
    );
    assert_eq!(shape(Op::Unsqueeze, &[f32t(&[]), ints(&[0])]), kd(&[1]));
    assert!(run(Op::Unsqueeze, &[y.clone(), ints(&[3])]).is_err());
    assert!(run(Op::Unsqueeze, &[y.clone(), ints(&[1, 1])]).is_err());
    assert!(run(Op::Unsqueeze, &[y.clone()]).is_err());
    assert_eq!(
        shape(Op::Unsqueeze, &[dyn_t(DType::F32, &[sym("N")]), ints(&[1])]),
        vec![sym("N"), k(1)]
    );
    assert_eq!(
        shape(Op::Unsqueeze, &[y, typed(DType::I64, &[1])]),
        vec![U, U, U]
    );
}

#[test]
fn shape_and_size() {
    let x = dyn_t(DType::F32, &[sym("N"), k(3), k(4), k(5)]);
    let sh = |start, end| shape(Op::Shape { start, end }, &[x.clone()]);
    assert_eq!(sh(0, None), kd(&[4]));
    assert_eq!(sh(1, Some(3)), kd(&[2]));
    assert_eq!(sh(-1, None), kd(&[1]));
    assert_eq!(sh(-100, Some(100)), kd(&[4]));
    assert_eq!(sh(3, Some(1)), kd(&[0]));
    assert_eq!(sh(i64::MIN, Some(i64::MAX)), kd(&[4]));
    assert_eq!(
        one(
            Op::Shape {
                start: 0,
                end: None
            },
            &[x.clone()]
        )
        .dtype,
        DType::I64
    );
    assert_eq!(one(Op::Size, &[x]), TensorType::scalar(DType::I64));
}

#[test]
fn expand_tile() {
    let x = f32t(&[3, 1]);
    assert_eq!(
        shape(Op::Expand, &[x.clone(), ints(&[2, 1, 6])]),
        kd(&[2, 3, 6])
    );
    assert_eq!(shape(Op::Expand, &[x.clone(), ints(&[1])]), kd(&[3, 1]));
    assert!(run(Op::Expand, &[x.clone(), ints(&[4, 4])]).is_err());
    assert!(run(Op::Expand, &[x.clone(), ints(&[-2])]).is_err());
    assert_eq!(
        shape(Op::Expand, &[x.clone(), typed(DType::I64, &[3])]),
        vec![U, k(3), U]
    );
    assert_eq!(
        shape(
            Op::Expand,
            &[dyn_t(DType::F32, &[sym("N"), k(1)]), ints(&[1, 4])]
        ),
        vec![sym("N"), k(4)]
    );

    assert_eq!(shape(Op::Tile, &[x.clone(), ints(&[2, 5])]), kd(&[6, 5]));
    assert!(run(Op::Tile, &[x.clone(), ints(&[2])]).is_err());
    assert!(run(Op::Tile, &[x.clone(), ints(&[2, -1])]).is_err());
    assert!(run(Op::Tile, &[f32t(&[usize::MAX / 2, 1]), ints(&[3, 1])]).is_err());
    assert_eq!(
        shape(Op::Tile, &[x.clone(), typed(DType::I64, &[2])]),
        vec![U, U]
    );
    assert_eq!(
        shape(
            Op::Tile,
            &[dyn_t(DType::F32, &[sym("N"), k(2)]), ints(&[1, 3])]
        ),
        vec![sym("N"), k(6)]
    );
}

#[test]
fn range_and_constant_of_shape() {
    let sc = |v: i64| c(Tensor::scalar(v));
    let fs = |v: f32| c(Tensor::scalar(v));
    assert_eq!(shape(Op::Range, &[sc(0), sc(10), sc(3)]), kd(&[4]));
    assert_eq!(shape(Op::Range, &[sc(10), sc(0), sc(-3)]), kd(&[4]));
    assert_eq!(shape(Op::Range, &[sc(10), sc(0), sc(3)]), kd(&[0]));
    assert_eq!(shape(Op::Range, &[fs(0.0), fs(1.0), fs(0.25)]), kd(&[4]));
    assert_eq!(shape(Op::Range, &[fs(1.0), fs(0.0), fs(0.3)]), kd(&[0]));
    assert!(err(Op::Range, &[sc(0), sc(10), sc(0)]).contains("non-zero"));
    assert!(run(Op::Range, &[sc(0), fs(10.0), sc(1)]).is_err());
    assert!(run(Op::Range, &[ints(&[0, 1]), sc(10), sc(1)]).is_err());
    assert_eq!(
        shape(Op::Range, &[typed(DType::I64, &[]), sc(10), sc(1)]),
        vec![U]
    );
    assert_eq!(one(Op::Range, &[sc(0), sc(3), sc(1)]).dtype, DType::I64);
    // Extreme bounds do not overflow.
    assert!(run(Op::Range, &[sc(i64::MIN), sc(i64::MAX), sc(1)]).is_err());
    assert_eq!(
        shape(Op::Range, &[sc(i64::MIN), sc(i64::MAX), sc(i64::MAX)]),
        kd(&[3])
    );

    let cos = Op::ConstantOfShape {
        value: Tensor::from_vec(vec![1], vec![7i32]),
    };
    assert_eq!(
        one(cos.clone(), &[ints(&[2, 3])]),
        TensorType::known(DType::I32, &[2, 3])
    );
    assert_eq!(
        one(cos.clone(), &[ints(&[])]),
        TensorType::scalar(DType::I32)
    );
    assert_eq!(shape(cos.clone(), &[typed(DType::I64, &[2])]), vec![U, U]);
    assert!(run(cos.clone(), &[ints(&[-1])]).is_err());
    assert!(run(cos, &[typed(DType::I32, &[2])]).is_err());
    assert!(run(
        Op::ConstantOfShape {
            value: Tensor::from_vec(vec![2], vec![1.0f32, 2.0])
        },
        &[ints(&[2])]
    )
    .is_err());
}

#[test]
fn quantize_dequantize() {
    let x = f32t(&[1, 4, 2, 2]);
    let scale = |v: f32| c(Tensor::scalar(v));
    let zp_u8 = |v: u8| c(Tensor::scalar(v));
    let q = Op::QuantizeLinear {
        axis: 1,
        to: DType::U8,
    };
    // Per-tensor with constant scale and zero point.
    let t = one(q.clone(), &[x.clone(), scale(0.5), zp_u8(128)]);
    assert_eq!(t.dtype, DType::U8);
    assert_eq!(t.shape.to_vec(), kd(&[1, 4, 2, 2]));
    assert_eq!(
        t.quant.as_deref(),
        Some(&QuantParams {
            scale: vec![F32(0.5)],
            zero_point: vec![128],
            axis: None
        })
    );
    // No zero point: zero.
    let t = one(q.clone(), &[x.clone(), scale(0.25)]);
    assert_eq!(t.quant.unwrap().zero_point, vec![0]);
    // 1-D scale of length 1 is per-tensor.
    let t = one(q.clone(), &[x.clone(), floats(&[0.25])]);
    assert_eq!(t.quant.unwrap().axis, None);
    // Per-axis.
    let q8 = Op::QuantizeLinear {
        axis: -3,
        to: DType::I8,
    };
    let zps = c(Tensor::from_vec(vec![4], vec![0i8, 1, -1, 2]));
    let t = one(
        q8.clone(),
        &[x.clone(), floats(&[0.1, 0.2, 0.3, 0.4]), zps.clone()],
    );
    let qp = t.quant.unwrap();
    assert_eq!(qp.axis, Some(1));
    assert_eq!(qp.zero_point, vec![0, 1, -1, 2]);
    assert_eq!(qp.scale[3], F32(0.4));
    // Non-constant scale: no params.
    assert!(one(q.clone(), &[x.clone(), f32t(&[])]).quant.is_none());
    // Errors: wrong per-axis length, zero point dtype, input dtype, target dtype, 2-D scale.
    assert!(run(q8.clone(), &[x.clone(), floats(&[0.1, 0.2, 0.3])]).is_err());
    assert!(run(q.clone(), &[x.clone(), scale(0.5), c(Tensor::scalar(1i8))]).is_err());
    assert!(run(q.clone(), &[typed(DType::I32, &[2]), scale(0.5)]).is_err());
    assert!(run(
        Op::QuantizeLinear {
            axis: 1,
            to: DType::F32
        },
        &[x.clone(), scale(0.5)]
    )
    .is_err());
    assert!(run(q.clone(), &[x.clone(), f32t(&[2, 2])]).is_err());
    assert!(run(
        Op::QuantizeLinear {
            axis: 4,
            to: DType::I8
        },
        &[x.clone(), floats(&[0.1, 0.2])]
    )
    .is_err());

    let dq = Op::DequantizeLinear { axis: 1 };
    let xq = typed(DType::I8, &[1, 4, 2, 2]);
    assert_eq!(
        one(
            dq.clone(),
            &[xq.clone(), scale(0.5), c(Tensor::scalar(3i8))]
        ),
        TensorType::known(DType::F32, &[1, 4, 2, 2])
    );
    assert_eq!(
        shape(
            dq.clone(),
            &[xq.clone(), floats(&[0.1, 0.2, 0.3, 0.4]), zps]
        ),
        kd(&[1, 4, 2, 2])
    );
    assert!(run(dq.clone(), &[xq.clone(), floats(&[0.1, 0.2])]).is_err());
    assert!(run(dq.clone(), &[x.clone(), scale(0.5)]).is_err());
    assert!(run(dq.clone(), &[xq.clone(), scale(0.5), zp_u8(1)]).is_err());
    assert!(run(dq, &[typed(DType::I32, &[4]), scale(0.5)]).is_ok());
}

#[test]
fn quant_params_flow_through_data_movement() {
    let x = f32t(&[2, 3]);
    let q = one(
        Op::QuantizeLinear {
            axis: 1,
            to: DType::U8,
        },
        &[x, c(Tensor::scalar(0.5f32)), c(Tensor::scalar(10u8))],
    );
    let qa = Arg(q.clone(), None);
    let t = one(Op::Reshape { allowzero: false }, &[qa.clone(), ints(&[-1])]);
    assert_eq!(t.quant, q.quant);
    let t = one(Op::Transpose { perm: vec![1, 0] }, &[qa.clone()]);
    assert_eq!(t.quant, q.quant);
    let t = one(Op::Concat { axis: 0 }, &[qa.clone(), qa.clone()]);
    assert_eq!(t.quant, q.quant);
    let t = one(
        Op::Concat { axis: 0 },
        &[qa.clone(), typed(DType::U8, &[2, 3])],
    );
    assert_eq!(t.quant, None);
    let t = one(Op::Cast { to: DType::U8 }, &[qa]);
    assert_eq!(t.quant, None);
}

fn resize(by: ResizeBy, aspect: AspectPolicy, axes: &[i64]) -> Op {
    Op::Resize(ResizeAttrs {
        by,
        mode: ResizeMode::Nearest,
        coord: CoordMode::Asymmetric,
        nearest: NearestMode::Floor,
        cubic_coeff_a: F32(-0.75),
        exclude_outside: false,
        extrapolation_value: F32(0.0),
        antialias: false,
        aspect,
        axes: axes.to_vec(),
    })
}

#[test]
fn resize_shapes() {
    let x = f32t(&[2, 4, 3, 5]);
    assert_eq!(
        shape(
            resize(ResizeBy::Scales, AspectPolicy::Stretch, &[]),
            &[x.clone(), floats(&[1.0, 1.1, 1.3, 1.9])]
        ),
        kd(&[2, 4, 3, 9])
    );
    assert_eq!(
        shape(
            resize(ResizeBy::Scales, AspectPolicy::Stretch, &[2, 3]),
            &[x.clone(), floats(&[2.0, 2.0])]
        ),
        kd(&[2, 4, 6, 10])
    );
    assert_eq!(
        shape(
            resize(ResizeBy::Sizes, AspectPolicy::Stretch, &[-2, -1]),
            &[x.clone(), ints(&[7, 8])]
        ),
        kd(&[2, 4, 7, 8])
    );
    // ONNX test: x (3,5), sizes (6,6): not_smaller gives (6,10); not_larger gives (4,6)... scale
    // min(2, 1.2) = 1.2 -> (round(3.6), 6) = (4, 6).
    let y = typed(DType::I32, &[3, 5]);
    assert_eq!(
        shape(
            resize(ResizeBy::Sizes, AspectPolicy::NotSmaller, &[]),
            &[y.clone(), ints(&[6, 6])]
        ),
        kd(&[6, 10])
    );
    assert_eq!(
        shape(
            resize(ResizeBy::Sizes, AspectPolicy::NotLarger, &[]),
            &[y.clone(), ints(&[6, 6])]
        ),
        kd(&[4, 6])
    );
    // Non-constant: resized axes unknown, others kept.
    assert_eq!(
        shape(
            resize(ResizeBy::Scales, AspectPolicy::Stretch, &[2, 3]),
            &[dyn_t(DType::F32, &[sym("N"), k(4), k(3), k(5)]), f32t(&[2])]
        ),
        vec![sym("N"), k(4), U, U]
    );
    // Errors.
    assert!(run(
        resize(ResizeBy::Scales, AspectPolicy::Stretch, &[]),
        &[x.clone(), floats(&[1.0, 2.0])]
    )
    .is_err());
    assert!(run(
        resize(ResizeBy::Scales, AspectPolicy::Stretch, &[]),
        &[x.clone(), ints(&[1, 1, 2, 2])]
    )
    .is_err());
    assert!(run(
        resize(ResizeBy::Scales, AspectPolicy::Stretch, &[]),
        &[x.clone(), floats(&[1.0, 1.0, -2.0, 2.0])]
    )
    .is_err());
    assert!(run(
        resize(ResizeBy::Sizes, AspectPolicy::Stretch, &[4]),
        &[x.clone(), ints(&[3])]
    )
    .is_err());
    let mut tf = resize(ResizeBy::Scales, AspectPolicy::Stretch, &[]);
    if let Op::Resize(a) = &mut tf {
        a.coord = CoordMode::TfCropAndResize;
    }
    assert!(run(tf.clone(), &[x.clone(), floats(&[1.0, 1.0, 2.0, 2.0])]).is_err());
    assert!(run(tf, &[x, floats(&[1.0, 1.0, 2.0, 2.0]), floats(&[0.0; 8])]).is_ok());
}

#[test]
fn pad_shapes() {
    let x = f32t(&[2, 3, 4]);
    let p = Op::Pad {
        mode: PadMode::Constant,
    };
    assert_eq!(
        shape(p.clone(), &[x.clone(), ints(&[0, 1, 2, 0, 3, 4])]),
        kd(&[2, 7, 10])
    );
    assert_eq!(
        shape(
            p.clone(),
            &[x.clone(), ints(&[0, -1, 0, 0, -1, 1]), f32t(&[])]
        ),
        kd(&[2, 1, 5])
    );
    assert!(err(p.clone(), &[x.clone(), ints(&[0, -4, 0, 0, 0, 0])]).contains("negative"));
    assert!(run(p.clone(), &[x.clone(), ints(&[0, 1, 2])]).is_err());
    assert!(run(
        p.clone(),
        &[x.clone(), ints(&[0, 0, 0, 0, 0, 0]), typed(DType::I64, &[])]
    )
    .is_err());
    assert!(run(
        p.clone(),
        &[x.clone(), ints(&[0, 0, i64::MAX, 0, 0, i64::MAX])]
    )
    .is_err());
    assert!(run(
        Op::Pad {
            mode: PadMode::Reflect
        },
        &[x.clone(), ints(&[0, 0, 4, 0, 0, 0])]
    )
    .is_err());
    assert_eq!(
        shape(p.clone(), &[x.clone(), typed(DType::I64, &[6])]),
        vec![U, U, U]
    );
    assert!(run(p.clone(), &[x, typed(DType::I64, &[5])]).is_err());
    assert_eq!(
        shape(
            p.clone(),
            &[dyn_t(DType::F32, &[sym("N"), k(3)]), ints(&[0, 1, 0, 1])]
        ),
        vec![sym("N"), k(5)]
    );
    assert_eq!(shape(p, &[f32t(&[]), ints(&[])]), kd(&[]));
}

#[test]
fn every_op_rejects_empty_input_list_without_panicking() {
    let ops = vec![
        Op::Unary(UnaryOp::Relu),
        Op::Binary(BinaryOp::Add),
        Op::Clip,
        Op::Where,
        Op::Conv(ConvAttrs::default()),
        Op::Gemm(GemmAttrs::default()),
        Op::MatMul,
        Op::Concat { axis: 0 },
        Op::Slice,
        Op::Range,
        Op::Identity,
        Op::Pad {
            mode: PadMode::Edge,
        },
    ];
    for op in ops {
        assert!(run(op, &[]).is_err());
    }
}

/// Random ranks, extents and attributes never make inference panic.
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn dim() -> impl Strategy<Value = Dim> {
        prop_oneof![
            (0usize..6).prop_map(Dim::Known),
            Just(Dim::Known(usize::MAX)),
            Just(Dim::sym("N")),
            Just(Dim::Unknown),
        ]
    }

    fn tensor_type() -> impl Strategy<Value = TensorType> {
        (
            prop::sample::select(vec![DType::F32, DType::I64, DType::I8, DType::Bool]),
            prop::collection::vec(dim(), 0..5),
        )
            .prop_map(|(d, s)| TensorType::new(d, s.into_iter().collect()))
    }

    fn small_ints() -> impl Strategy<Value = Vec<i64>> {
        prop::collection::vec(prop_oneof![-5i64..6, Just(i64::MIN), Just(i64::MAX)], 0..5)
    }

    fn op() -> impl Strategy<Value = Op> {
        let axis = prop_oneof![-5i64..6, Just(i64::MIN), Just(i64::MAX)];
        let sizes = prop::collection::vec(prop_oneof![0usize..4, Just(usize::MAX)], 0..5);
        let more = prop_oneof![
            Just(Op::Where),
            Just(Op::Range),
            Just(Op::Clip),
            Just(Op::Size),
            Just(Op::Identity),
            Just(Op::Gemm(GemmAttrs::default())),
            Just(Op::ConstantOfShape {
                value: Tensor::scalar(1.0f32)
            }),
            (axis.clone(), any::<bool>(), any::<bool>()).prop_map(|(_, keepdims, noop)| {
                Op::Reduce(ReduceAttrs {
                    kind: ReduceKind::Sum,
                    keepdims,
                    noop_with_empty_axes: noop,
                })
            }),
            axis.clone().prop_map(|axis| Op::QuantizeLinear {
                axis,
                to: DType::I8
            }),
            axis.clone().prop_map(|axis| Op::DequantizeLinear { axis }),
            axis.clone().prop_map(|axis| Op::Softmax { axis }),
            axis.clone().prop_map(|axis| Op::LayerNorm {
                axis,
                epsilon: F32(1e-5)
            }),
            (axis.clone(), axis.clone()).prop_map(|(start, end)| Op::Shape {
                start,
                end: Some(end)
            }),
            (prop::collection::vec(axis.clone(), 0..3), any::<bool>()).prop_map(|(axes, sizes)| {
                let by = if sizes {
                    ResizeBy::Sizes
                } else {
                    ResizeBy::Scales
                };
                resize(by, AspectPolicy::NotSmaller, &axes)
            }),
        ];
        prop_oneof![
            more,
            Just(Op::Binary(BinaryOp::Add)),
            Just(Op::MatMul),
            Just(Op::Slice),
            Just(Op::Reshape { allowzero: false }),
            Just(Op::Squeeze),
            Just(Op::Unsqueeze),
            Just(Op::Expand),
            Just(Op::Tile),
            Just(Op::Pad {
                mode: PadMode::Reflect
            }),
            axis.clone().prop_map(|axis| Op::Gather { axis }),
            axis.clone().prop_map(|axis| Op::Concat { axis }),
            axis.clone().prop_map(|axis| Op::Flatten { axis }),
            (axis.clone(), 0usize..4)
                .prop_map(|(axis, num_outputs)| Op::Split { axis, num_outputs }),
            (sizes.clone(), sizes.clone(), sizes.clone(), 0usize..3).prop_map(
                |(s, p, d, group)| {
                    Op::Conv(ConvAttrs {
                        strides: s,
                        pads: p,
                        dilations: d,
                        group,
                        auto_pad: AutoPad::SameLower,
                        epilogue: Default::default(),
                        integer: None,
                    })
                }
            ),
            (sizes.clone(), sizes.clone(), sizes, any::<bool>()).prop_map(
                |(kernel, s, p, ceil_mode)| {
                    Op::Pool(PoolAttrs {
                        kind: PoolKind::Max,
                        kernel,
                        strides: s,
                        pads: p,
                        dilations: vec![],
                        ceil_mode,
                        count_include_pad: false,
                        auto_pad: AutoPad::NotSet,
                    })
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn never_panics(
            op in op(),
            types in prop::collection::vec(tensor_type(), 0..4),
            consts in prop::collection::vec(small_ints(), 0..4),
        ) {
            let mut args: Vec<Arg> = types.into_iter().map(|t| Arg(t, None)).collect();
            for (i, v) in consts.into_iter().enumerate() {
                if i + 1 < args.len() {
                    args[i + 1] = ints(&v);
                }
            }
            let _ = run(op, &args);
        }
    }
}

/// Quantized conv/gemm: i32 accumulators (quantized at s_x · s_w when the operands say their
/// scales), requantized outputs typed with their parameters, and the integer contract enforced.
#[test]
fn quantized_conv_and_gemm() {
    let q = |dtype, dims: &[usize], scale: &[f32], axis| {
        let quant = QuantParams {
            scale: scale.iter().map(|&s| F32(s)).collect(),
            zero_point: vec![0; scale.len()],
            axis,
        };
        Arg(
            TensorType::known(dtype, dims).with_quant(Some(Arc::new(quant))),
            None,
        )
    };
    let int = |requant: Option<Requant>| IntegerAttrs {
        x_zero_point: 0,
        requant,
    };
    let conv = |integer, act| {
        Op::Conv(ConvAttrs {
            group: 1,
            integer: Some(integer),
            epilogue: Epilogue {
                act,
                ..Default::default()
            },
            ..Default::default()
        })
    };
    let x = q(DType::U8, &[1, 2, 5, 5], &[0.5], None);
    let w = q(DType::I8, &[3, 2, 3, 3], &[0.1, 0.2, 0.4], Some(0));
    let acc = &run(conv(int(None), None), &[x.clone(), w.clone()]).unwrap()[0];
    assert_eq!(acc.dtype, DType::I32);
    assert_eq!(acc.dims().unwrap(), vec![1, 3, 3, 3]);
    let qa = acc.quant.as_ref().unwrap();
    assert_eq!(qa.scale, vec![F32(0.05), F32(0.1), F32(0.2)]);
    assert_eq!(qa.axis, Some(1));
    let r = Requant {
        multiplier: vec![F32(0.5)],
        scale: F32(0.25),
        zero_point: 7,
        ..Default::default()
    };
    let y = &run(conv(int(Some(r.clone())), None), &[x.clone(), w.clone()]).unwrap()[0];
    assert_eq!(y.dtype, DType::U8);
    assert_eq!(y.quant.as_ref().unwrap().scale, vec![F32(0.25)]);
    assert_eq!(y.quant.as_ref().unwrap().zero_point, vec![7]);
    // The contract.
    let relu = Some(UnaryOp::Relu);
    assert!(err(conv(int(None), relu), &[x.clone(), w.clone()]).contains("fuses no activation"));
    let f32_bias = f32t(&[3]);
    assert!(err(conv(int(None), None), &[x.clone(), w.clone(), f32_bias]).contains("i32"));
    let bad = Requant {
        min: 10,
        max: 5,
        ..r.clone()
    };
    assert!(err(conv(int(Some(bad)), None), &[x.clone(), w.clone()]).contains("requant_min"));
    let two = Requant {
        multiplier: vec![F32(0.5), F32(0.5)],
        ..r.clone()
    };
    assert!(err(conv(int(Some(two)), None), &[x.clone(), w.clone()]).contains("3 output channels"));
    let tiny = Requant {
        multiplier: vec![F32(1e-12)],
        ..r
    };
    assert!(err(conv(int(Some(tiny)), None), &[x.clone(), w.clone()]).contains("fixed-point"));
    assert!(err(conv(int(None), None), &[f32t(&[1, 2, 5, 5]), w]).contains("u8 or i8"));
    // Gemm: alpha/beta 1, no trans_a.
    let gemm = Op::Gemm(GemmAttrs {
        alpha: F32(2.0),
        integer: Some(int(None)),
        ..Default::default()
    });
    let (a, b) = (typed(DType::U8, &[2, 4]), typed(DType::I8, &[4, 3]));
    assert!(err(gemm, &[a.clone(), b.clone()]).contains("alpha"));
    let gemm = Op::Gemm(GemmAttrs {
        integer: Some(int(None)),
        ..Default::default()
    });
    assert_eq!(
        run(gemm, &[a, b]).unwrap()[0],
        TensorType::known(DType::I32, &[2, 3])
    );
}
