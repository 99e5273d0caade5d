//! Pools, reductions and normalisations.

mod common;
use common::*;
use kestrel_backends::interp::EvalError;
use kestrel_ir::{AutoPad, Op, PoolAttrs, PoolKind, ReduceAttrs, ReduceKind, Tensor, F32};

fn pool(kind: PoolKind, kernel: &[usize]) -> PoolAttrs {
    PoolAttrs {
        kind,
        kernel: kernel.to_vec(),
        strides: vec![],
        pads: vec![],
        dilations: vec![],
        ceil_mode: false,
        count_include_pad: false,
        auto_pad: AutoPad::NotSet,
    }
}

#[test]
fn max_pool_ceil_mode_and_dilation() {
    // ONNX maxpool_2d_ceil.
    let x = iota(&[1, 1, 4, 4], 1.0);
    let attrs = PoolAttrs {
        strides: vec![2, 2],
        ceil_mode: true,
        ..pool(PoolKind::Max, &[3, 3])
    };
    assert_close(
        &eval1(Op::Pool(attrs.clone()), &[&x]),
        &[1, 1, 2, 2],
        &[11.0, 12.0, 15.0, 16.0],
        0.0,
    );
    let floor = PoolAttrs {
        ceil_mode: false,
        ..attrs
    };
    assert_close(&eval1(Op::Pool(floor), &[&x]), &[1, 1, 1, 1], &[11.0], 0.0);
    // ONNX maxpool_2d_dilations.
    let attrs = PoolAttrs {
        dilations: vec![2, 2],
        ..pool(PoolKind::Max, &[2, 2])
    };
    assert_close(
        &eval1(Op::Pool(attrs), &[&x]),
        &[1, 1, 2, 2],
        &[11.0, 12.0, 15.0, 16.0],
        0.0,
    );
    // ceil_mode drops a window that would start in the end padding: in 5, k 2, s 2, pad (0, 1).
    let x = iota(&[1, 1, 5], 1.0);
    let attrs = PoolAttrs {
        strides: vec![2],
        pads: vec![0, 1],
        ceil_mode: true,
        ..pool(PoolKind::Max, &[2])
    };
    assert_close(
        &eval1(Op::Pool(attrs.clone()), &[&x]),
        &[1, 1, 3],
        &[2.0, 4.0, 5.0],
        0.0,
    );
    let x = iota(&[1, 1, 4], 1.0);
    assert_close(&eval1(Op::Pool(attrs), &[&x]), &[1, 1, 2], &[2.0, 4.0], 0.0);
    // Max pooling works on integers.
    let xi = Tensor::from_vec(vec![1, 1, 4], vec![3i8, -7, 9, 1]);
    let y = eval1(Op::Pool(pool(PoolKind::Max, &[2])), &[&xi]);
    assert_eq!(y.to_vec::<i8>().unwrap(), vec![3, 9, 9]);
}

#[test]
fn average_pool_count_include_pad() {
    let x = f32t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let attrs = PoolAttrs {
        pads: vec![1, 1, 1, 1],
        ..pool(PoolKind::Average, &[2, 2])
    };
    let y = eval1(Op::Pool(attrs.clone()), &[&x]);
    assert_close(
        &y,
        &[1, 1, 3, 3],
        &[1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0],
        1e-7,
    );
    let incl = PoolAttrs {
        count_include_pad: true,
        ..attrs
    };
    let y = eval1(Op::Pool(incl), &[&x]);
    assert_close(
        &y,
        &[1, 1, 3, 3],
        &[0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0],
        1e-7,
    );
    // ONNX averagepool_2d_ceil: 4x4 1..16, k 3, s 2, ceil -> [[6, 7.5], [12, 13.5]].
    let x = iota(&[1, 1, 4, 4], 1.0);
    let attrs = PoolAttrs {
        strides: vec![2, 2],
        ceil_mode: true,
        ..pool(PoolKind::Average, &[3, 3])
    };
    assert_close(
        &eval1(Op::Pool(attrs), &[&x]),
        &[1, 1, 2, 2],
        &[6.0, 7.5, 12.0, 13.5],
        1e-7,
    );
    // SAME_UPPER keeps ceil(in / stride) outputs.
    let attrs = PoolAttrs {
        strides: vec![2, 2],
        auto_pad: AutoPad::SameUpper,
        ..pool(PoolKind::Average, &[2, 2])
    };
    assert_close(
        &eval1(Op::Pool(attrs), &[&x]),
        &[1, 1, 2, 2],
        &[3.5, 5.5, 11.5, 13.5],
        1e-7,
    );
}

#[test]
fn lp_and_global_pools() {
    let x = f32t(&[1, 1, 2], &[3.0, -4.0]);
    assert_close(
        &eval1(Op::Pool(pool(PoolKind::Lp(2), &[2])), &[&x]),
        &[1, 1, 1],
        &[5.0],
        1e-7,
    );
    let x = iota(&[1, 2, 2, 2], 1.0);
    assert_close(
        &eval1(Op::GlobalPool(PoolKind::Average), &[&x]),
        &[1, 2, 1, 1],
        &[2.5, 6.5],
        0.0,
    );
    assert_close(
        &eval1(Op::GlobalPool(PoolKind::Max), &[&x]),
        &[1, 2, 1, 1],
        &[4.0, 8.0],
        0.0,
    );
    assert!(matches!(
        eval_err(Op::Pool(pool(PoolKind::Max, &[5, 5])), &[&x]),
        EvalError::Invalid { .. }
    ));
}

fn reduce(kind: ReduceKind, keepdims: bool) -> Op {
    Op::Reduce(ReduceAttrs {
        kind,
        keepdims,
        noop_with_empty_axes: false,
    })
}

#[test]
fn reductions() {
    let x = iota(&[2, 3], 1.0); // [[1,2,3],[4,5,6]]
    let ax1 = i64v(&[1]);
    assert_close(
        &eval1(reduce(ReduceKind::Sum, true), &[&x, &ax1]),
        &[2, 1],
        &[6.0, 15.0],
        0.0,
    );
    assert_close(
        &eval1(reduce(ReduceKind::Sum, false), &[&x, &i64v(&[0])]),
        &[3],
        &[5.0, 7.0, 9.0],
        0.0,
    );
    assert_close(
        &eval1(reduce(ReduceKind::Mean, false), &[&x]),
        &[],
        &[3.5],
        0.0,
    );
    assert_close(
        &eval1(reduce(ReduceKind::Mean, true), &[&x, &i64v(&[])]),
        &[1, 1],
        &[3.5],
        0.0,
    );
    assert_close(
        &eval1(reduce(ReduceKind::Max, false), &[&x, &i64v(&[-1])]),
        &[2],
        &[3.0, 6.0],
        0.0,
    );
    assert_close(
        &eval1(reduce(ReduceKind::Min, false), &[&x, &i64v(&[0])]),
        &[3],
        &[1.0, 2.0, 3.0],
        0.0,
    );
    assert_close(
        &eval1(reduce(ReduceKind::Prod, false), &[&x, &ax1]),
        &[2],
        &[6.0, 120.0],
        0.0,
    );
    assert_close(
        &eval1(reduce(ReduceKind::L1, false), &[&f32t(&[2], &[-3.0, 4.0])]),
        &[],
        &[7.0],
        0.0,
    );
    assert_close(
        &eval1(reduce(ReduceKind::L2, false), &[&f32t(&[2], &[-3.0, 4.0])]),
        &[],
        &[5.0],
        0.0,
    );
    assert_close(
        &eval1(
            reduce(ReduceKind::SumSquare, false),
            &[&f32t(&[2], &[-3.0, 4.0])],
        ),
        &[],
        &[25.0],
        0.0,
    );
    assert_close(
        &eval1(
            reduce(ReduceKind::LogSum, false),
            &[&f32t(&[2], &[1.0, 2.0])],
        ),
        &[],
        &[3f64.ln()],
        1e-7,
    );
    let big = f32t(&[2], &[1000.0, 1000.0]);
    assert_close(
        &eval1(reduce(ReduceKind::LogSumExp, false), &[&big]),
        &[],
        &[1000.0 + 2f64.ln()],
        1e-7,
    );
    // noop_with_empty_axes.
    let noop = Op::Reduce(ReduceAttrs {
        kind: ReduceKind::Sum,
        keepdims: true,
        noop_with_empty_axes: true,
    });
    assert_eq!(eval1(noop.clone(), &[&x, &i64v(&[])]), x);
    assert_eq!(eval1(noop, &[&x]), x);
    // Integers reduce exactly.
    let xi = i64v(&[i64::MAX - 1, 1]);
    assert_eq!(
        eval1(reduce(ReduceKind::Sum, false), &[&xi]).to_i64_vec(),
        vec![i64::MAX]
    );
    assert_eq!(
        eval1(reduce(ReduceKind::Mean, false), &[&i64v(&[1, 2])]).to_i64_vec(),
        vec![1]
    );
    // Empty reduction yields the identity.
    let empty = f32t(&[0, 2], &[]);
    assert_close(
        &eval1(reduce(ReduceKind::Sum, false), &[&empty, &i64v(&[0])]),
        &[2],
        &[0.0, 0.0],
        0.0,
    );
    assert!(matches!(
        eval_err(reduce(ReduceKind::Sum, false), &[&x, &i64v(&[2])]),
        EvalError::Invalid { .. }
    ));
}

#[test]
fn softmax_rows_sum_to_one_and_match_hand_values() {
    let x = f32t(&[2, 3], &[1.0, 2.0, 3.0, 1000.0, 1001.0, 1002.0]);
    let y = eval1(Op::Softmax { axis: -1 }, &[&x]);
    let e = [0.09003057317038046, 0.24472847105479764, 0.6652409557748219];
    assert_close(&y, &[2, 3], &[e[0], e[1], e[2], e[0], e[1], e[2]], 1e-6);
    let v = y.to_f32_vec();
    for row in v.chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
    // Along axis 0.
    let y = eval1(Op::Softmax { axis: 0 }, &[&f32t(&[2, 1], &[0.0, 0.0])]);
    assert_close(&y, &[2, 1], &[0.5, 0.5], 0.0);
    let y = eval1(Op::LogSoftmax { axis: 1 }, &[&x]);
    assert_close(
        &y,
        &[2, 3],
        &[
            e[0].ln(),
            e[1].ln(),
            e[2].ln(),
            e[0].ln(),
            e[1].ln(),
            e[2].ln(),
        ],
        1e-6,
    );
}

#[test]
fn layer_norm_and_batch_norm() {
    let x = f32t(&[2, 4], &[1.0, 2.0, 3.0, 4.0, 2.0, 2.0, 2.0, 2.0]);
    let scale = f32t(&[4], &[1.0, 1.0, 2.0, 2.0]);
    let bias = f32t(&[4], &[0.0, 0.0, 0.0, 1.0]);
    let y = eval1(
        Op::LayerNorm {
            axis: -1,
            epsilon: F32(1e-12),
        },
        &[&x, &scale, &bias],
    );
    let s = 1.0 / 1.25f64.sqrt();
    assert_close(
        &y,
        &[2, 4],
        &[
            -1.5 * s,
            -0.5 * s,
            1.0 * s,
            3.0 * s + 1.0,
            0.0,
            0.0,
            0.0,
            1.0,
        ],
        1e-6,
    );
    // Normalising over both axes.
    let y = eval1(
        Op::LayerNorm {
            axis: 0,
            epsilon: F32(1e-5),
        },
        &[&f32t(&[2, 1], &[0.0, 2.0]), &f32t(&[1], &[1.0])],
    );
    let k = 1.0 / (1.0f64 + 1e-5).sqrt();
    assert_close(&y, &[2, 1], &[-k, k], 1e-6);

    let x = iota(&[1, 2, 1, 2], 0.0); // channel 0: [0, 1], channel 1: [2, 3]
    let inputs = [
        f32t(&[2], &[1.0, 2.0]),  // scale
        f32t(&[2], &[0.0, 1.0]),  // bias
        f32t(&[2], &[0.5, 2.0]),  // mean
        f32t(&[2], &[0.25, 4.0]), // var
    ];
    let y = eval1(
        Op::BatchNorm { epsilon: F32(0.0) },
        &[&x, &inputs[0], &inputs[1], &inputs[2], &inputs[3]],
    );
    assert_close(&y, &[1, 2, 1, 2], &[-1.0, 1.0, 1.0, 2.0], 1e-7);
}
