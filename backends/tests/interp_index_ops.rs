//! ConvTranspose, ArgMax/ArgMin, TopK, Hardmax, GatherElements, ScatterElements, ScatterND,
//! Trilu, CumSum and LpNormalization on hand-computed cases.

mod common;
use common::*;
use kestrel_backends::interp::eval_op;
use kestrel_ir::*;

fn arg(kind: ArgKind, axis: i64, keepdims: bool, last: bool) -> Op {
    Op::Arg(ArgAttrs {
        kind,
        axis,
        keepdims,
        select_last_index: last,
    })
}

#[test]
fn arg_max_min_ties_and_nan() {
    let x = f32t(&[2, 3], &[1.0, 5.0, 5.0, 2.0, f32::NAN, -1.0]);
    let y = eval1(arg(ArgKind::Max, 1, false, false), &[&x]);
    assert_eq!((y.dims(), y.to_i64_vec()), (&[2][..], vec![1, 1]));
    let y = eval1(arg(ArgKind::Max, 1, true, true), &[&x]);
    assert_eq!((y.dims(), y.to_i64_vec()), (&[2, 1][..], vec![2, 1]));
    let y = eval1(arg(ArgKind::Min, 1, false, false), &[&x]);
    assert_eq!(y.to_i64_vec(), vec![0, 1]);
    let y = eval1(
        arg(ArgKind::Min, 0, false, false),
        &[&i64t(&[2, 2], &[3, -4, 3, 9])],
    );
    assert_eq!(y.to_i64_vec(), vec![0, 0]);
    let y = eval1(
        arg(ArgKind::Min, 0, false, true),
        &[&i64t(&[2, 2], &[3, -4, 3, 9])],
    );
    assert_eq!(y.to_i64_vec(), vec![1, 0]);
    eval_err(arg(ArgKind::Max, 0, true, false), &[&f32t(&[0, 2], &[])]);
}

#[test]
fn top_k_largest_smallest_with_ties() {
    let x = f32t(&[2, 4], &[1.0, 3.0, 3.0, 2.0, 0.0, -1.0, 4.0, 4.0]);
    let k = i64v(&[3]);
    let out = eval_op(
        &Op::TopK {
            axis: -1,
            largest: true,
            sorted: true,
        },
        &[&x, &k],
    )
    .unwrap();
    assert_close(&out[0], &[2, 3], &[3.0, 3.0, 2.0, 4.0, 4.0, 0.0], 0.0);
    assert_eq!(out[1].to_i64_vec(), vec![1, 2, 3, 2, 3, 0]);
    let out = eval_op(
        &Op::TopK {
            axis: 0,
            largest: false,
            sorted: true,
        },
        &[&x, &i64v(&[1])],
    )
    .unwrap();
    assert_close(&out[0], &[1, 4], &[0.0, -1.0, 3.0, 2.0], 0.0);
    assert_eq!(out[1].to_i64_vec(), vec![1, 1, 0, 0]);
    let too_many = eval_op(
        &Op::TopK {
            axis: 0,
            largest: true,
            sorted: true,
        },
        &[&x, &i64v(&[3])],
    );
    assert!(too_many.is_err());
}

#[test]
fn hardmax_marks_the_first_maximum() {
    let x = f32t(&[2, 3], &[1.0, 3.0, 3.0, -2.0, -1.0, -5.0]);
    let y = eval1(Op::Hardmax { axis: 1 }, &[&x]);
    assert_close(&y, &[2, 3], &[0.0, 1.0, 0.0, 0.0, 1.0, 0.0], 0.0);
}

#[test]
fn gather_and_scatter_elements() {
    let data = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let idx = i64t(&[2, 2], &[2, 0, -1, 1]);
    let y = eval1(Op::GatherElements { axis: 1 }, &[&data, &idx]);
    assert_close(&y, &[2, 2], &[3.0, 1.0, 6.0, 5.0], 0.0);
    let bad = i64t(&[1, 1], &[3]);
    eval_err(Op::GatherElements { axis: 1 }, &[&data, &bad]);

    let upd = f32t(&[2, 2], &[10.0, 20.0, 30.0, 40.0]);
    let y = eval1(
        Op::ScatterElements {
            axis: 1,
            reduction: ScatterReduction::None,
        },
        &[&data, &idx, &upd],
    );
    assert_close(&y, &[2, 3], &[20.0, 2.0, 10.0, 4.0, 40.0, 30.0], 0.0);
    let dup = i64t(&[1, 2], &[0, 0]);
    let y = eval1(
        Op::ScatterElements {
            axis: 1,
            reduction: ScatterReduction::Add,
        },
        &[&data, &dup, &f32t(&[1, 2], &[1.0, 2.0])],
    );
    assert_close(&y, &[2, 3], &[4.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.0);
}

#[test]
fn scatter_nd_slices_and_reductions() {
    let data = i64t(&[3, 2], &[1, 2, 3, 4, 5, 6]);
    let idx = i64t(&[2, 1], &[2, -3]);
    let upd = i64t(&[2, 2], &[10, 20, 30, 40]);
    let y = eval1(
        Op::ScatterNd {
            reduction: ScatterReduction::None,
        },
        &[&data, &idx, &upd],
    );
    assert_eq!(y.to_i64_vec(), vec![30, 40, 3, 4, 10, 20]);
    let y = eval1(
        Op::ScatterNd {
            reduction: ScatterReduction::Mul,
        },
        &[&data, &idx, &upd],
    );
    assert_eq!(y.to_i64_vec(), vec![30, 80, 3, 4, 50, 120]);
    let elem = i64t(&[1, 2], &[1, 1]);
    let y = eval1(
        Op::ScatterNd {
            reduction: ScatterReduction::Min,
        },
        &[&data, &elem, &i64t(&[1], &[-7])],
    );
    assert_eq!(y.to_i64_vec(), vec![1, 2, 3, -7, 5, 6]);
    eval_err(
        Op::ScatterNd {
            reduction: ScatterReduction::None,
        },
        &[&data, &idx, &i64t(&[2, 3], &[0; 6])],
    );
}

#[test]
fn trilu_keeps_a_triangle() {
    let x = iota(&[3, 3], 1.0);
    let y = eval1(Op::Trilu { upper: true }, &[&x]);
    assert_close(
        &y,
        &[3, 3],
        &[1.0, 2.0, 3.0, 0.0, 5.0, 6.0, 0.0, 0.0, 9.0],
        0.0,
    );
    let y = eval1(Op::Trilu { upper: false }, &[&x, &Tensor::scalar(-1i64)]);
    assert_close(
        &y,
        &[3, 3],
        &[0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 7.0, 8.0, 0.0],
        0.0,
    );
    let y = eval1(Op::Trilu { upper: true }, &[&x, &Tensor::scalar(i64::MIN)]);
    assert_eq!(y, x);
}

#[test]
fn cum_sum_forms() {
    let x = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let ax = Tensor::scalar(1i32);
    let run =
        |exclusive, reverse| eval1(Op::CumSum { exclusive, reverse }, &[&x, &ax]).to_f64_vec();
    assert_eq!(run(false, false), vec![1.0, 3.0, 6.0, 4.0, 9.0, 15.0]);
    assert_eq!(run(true, false), vec![0.0, 1.0, 3.0, 0.0, 4.0, 9.0]);
    assert_eq!(run(false, true), vec![6.0, 5.0, 3.0, 15.0, 11.0, 6.0]);
    assert_eq!(run(true, true), vec![5.0, 3.0, 0.0, 11.0, 6.0, 0.0]);
    let y = eval1(
        Op::CumSum {
            exclusive: false,
            reverse: false,
        },
        &[&i64t(&[3], &[i64::MAX, 1, 1]), &i64v(&[0])],
    );
    assert_eq!(y.to_i64_vec(), vec![i64::MAX, i64::MIN, i64::MIN + 1]);
}

#[test]
fn lp_normalization() {
    let x = f32t(&[2, 2], &[3.0, 4.0, 0.0, 0.0]);
    let y = eval1(Op::LpNormalization { axis: 1, p: 2 }, &[&x]);
    assert_close(&y, &[2, 2], &[0.6, 0.8, 0.0, 0.0], 1e-7);
    let y = eval1(Op::LpNormalization { axis: 1, p: 1 }, &[&x]);
    assert_close(&y, &[2, 2], &[3.0 / 7.0, 4.0 / 7.0, 0.0, 0.0], 1e-7);
}

/// A transposed convolution; group 0 (the `Default`) means 1.
fn conv_t(attrs: ConvTransposeAttrs) -> Op {
    Op::ConvTranspose(ConvTransposeAttrs {
        group: attrs.group.max(1),
        ..attrs
    })
}

#[test]
fn conv_transpose_1d_strides_pads_and_output_shape() {
    // x = [1, 2], w = [1, 1, 1] (one channel): stride 2 gives [1, 1, 1+2, 2, 2].
    let x = f32t(&[1, 1, 2], &[1.0, 2.0]);
    let w = f32t(&[1, 1, 3], &[1.0, 1.0, 1.0]);
    let y = eval1(
        conv_t(ConvTransposeAttrs {
            strides: vec![2],
            ..Default::default()
        }),
        &[&x, &w],
    );
    assert_close(&y, &[1, 1, 5], &[1.0, 1.0, 3.0, 2.0, 2.0], 0.0);
    // Pads crop the full result; output_padding adds a zero at the end; bias is added everywhere.
    let b = f32t(&[1], &[0.5]);
    let y = eval1(
        conv_t(ConvTransposeAttrs {
            strides: vec![2],
            pads: vec![1, 1],
            output_padding: vec![1],
            ..Default::default()
        }),
        &[&x, &w, &b],
    );
    assert_close(&y, &[1, 1, 4], &[1.5, 3.5, 2.5, 2.5], 0.0);
    // output_shape larger than the full result extends it with zeros (plus bias) at the end.
    let y = eval1(
        conv_t(ConvTransposeAttrs {
            strides: vec![2],
            output_shape: vec![7],
            ..Default::default()
        }),
        &[&x, &w],
    );
    assert_close(&y, &[1, 1, 7], &[1.0, 1.0, 3.0, 2.0, 2.0, 0.0, 0.0], 0.0);
    // SAME_UPPER: output = in * stride = 4, total padding 1 taken from the end.
    let y = eval1(
        conv_t(ConvTransposeAttrs {
            strides: vec![2],
            auto_pad: AutoPad::SameUpper,
            ..Default::default()
        }),
        &[&x, &w],
    );
    assert_close(&y, &[1, 1, 4], &[1.0, 1.0, 3.0, 2.0], 0.0);
    let y = eval1(
        conv_t(ConvTransposeAttrs {
            strides: vec![2],
            auto_pad: AutoPad::SameLower,
            ..Default::default()
        }),
        &[&x, &w],
    );
    assert_close(&y, &[1, 1, 4], &[1.0, 3.0, 2.0, 2.0], 0.0);
}

#[test]
fn conv_transpose_groups_and_dilations() {
    // Two groups of one channel each, one output channel per group, dilation 2.
    let x = f32t(&[1, 2, 2], &[1.0, 2.0, 10.0, 20.0]);
    let w = f32t(&[2, 1, 2], &[1.0, -1.0, 2.0, 3.0]);
    let y = eval1(
        conv_t(ConvTransposeAttrs {
            dilations: vec![2],
            group: 2,
            ..Default::default()
        }),
        &[&x, &w],
    );
    // Full extent 1 * (2 - 1) + 2 * (2 - 1) + 1 = 4.
    assert_close(
        &y,
        &[1, 2, 4],
        &[1.0, 2.0, -1.0, -2.0, 20.0, 40.0, 30.0, 60.0],
        0.0,
    );
    // Weight channels must equal input channels.
    eval_err(
        conv_t(ConvTransposeAttrs::default()),
        &[&x, &f32t(&[1, 1, 2], &[1.0, 1.0])],
    );
}

#[test]
fn reduce_max_min_on_bool() {
    let x = Tensor::from_vec(vec![2, 2], vec![true, false, false, false]);
    let axes = i64v(&[1]);
    let red = |kind| {
        Op::Reduce(ReduceAttrs {
            kind,
            keepdims: false,
            noop_with_empty_axes: false,
        })
    };
    let y = eval1(red(ReduceKind::Max), &[&x, &axes]);
    assert_eq!(y, Tensor::from_vec(vec![2], vec![true, false]));
    let y = eval1(red(ReduceKind::Min), &[&x, &axes]);
    assert_eq!(y, Tensor::from_vec(vec![2], vec![false, false]));
    let empty = Tensor::from_vec(vec![0], Vec::<bool>::new());
    assert_eq!(eval1(red(ReduceKind::Min), &[&empty]), Tensor::scalar(true));
    eval_err(red(ReduceKind::Sum), &[&x]);
}
