//! Shape and data-movement ops.

mod common;
use common::*;
use kestrel_backends::interp::{eval_op, EvalError};
use kestrel_ir::{DType, Op, Tensor};

#[test]
fn reshape_and_flatten() {
    let x = iota(&[2, 3, 4], 0.0);
    let y = eval1(Op::Reshape { allowzero: false }, &[&x, &i64v(&[0, -1])]);
    assert_eq!(y.dims(), &[2, 12]);
    assert_eq!(y.to_f32_vec(), x.to_f32_vec());
    let y = eval1(Op::Reshape { allowzero: false }, &[&x, &i64v(&[-1, 2, 2])]);
    assert_eq!(y.dims(), &[6, 2, 2]);
    let e = f32t(&[0, 3], &[]);
    let y = eval1(Op::Reshape { allowzero: true }, &[&e, &i64v(&[3, 0])]);
    assert_eq!(y.dims(), &[3, 0]);
    for bad in [vec![5, -1], vec![-1, -1], vec![7, 0, 0, 0], vec![-2, 12]] {
        assert!(matches!(
            eval_err(Op::Reshape { allowzero: false }, &[&x, &i64v(&bad)]),
            EvalError::Invalid { .. }
        ));
    }
    assert_eq!(eval1(Op::Flatten { axis: 1 }, &[&x]).dims(), &[2, 12]);
    assert_eq!(eval1(Op::Flatten { axis: 0 }, &[&x]).dims(), &[1, 24]);
    assert_eq!(eval1(Op::Flatten { axis: -1 }, &[&x]).dims(), &[6, 4]);
    assert_eq!(eval1(Op::Flatten { axis: 3 }, &[&x]).dims(), &[24, 1]);
}

#[test]
fn transpose_concat_split() {
    let x = iota(&[2, 3], 0.0);
    let y = eval1(Op::Transpose { perm: vec![1, 0] }, &[&x]);
    assert_close(&y, &[3, 2], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0], 0.0);
    let z = iota(&[2, 3, 4], 0.0);
    let y = eval1(
        Op::Transpose {
            perm: vec![2, 0, 1],
        },
        &[&z],
    );
    assert_eq!(y.dims(), &[4, 2, 3]);
    assert_eq!(y.to_f32_vec()[1], 4.0); // y[0,0,1] = z[0,1,0]
    assert!(matches!(
        eval_err(Op::Transpose { perm: vec![0, 0] }, &[&x]),
        EvalError::Invalid { .. }
    ));

    let a = iota(&[2, 1], 0.0);
    let b = iota(&[2, 2], 10.0);
    let y = eval1(Op::Concat { axis: -1 }, &[&a, &b]);
    assert_close(&y, &[2, 3], &[0.0, 10.0, 11.0, 1.0, 12.0, 13.0], 0.0);
    assert!(matches!(
        eval_err(Op::Concat { axis: 0 }, &[&a, &b]),
        EvalError::Invalid { .. }
    ));

    let v = i64v(&[1, 2, 3, 4, 5]);
    let parts = eval_op(
        &Op::Split {
            axis: 0,
            num_outputs: 2,
        },
        &[&v],
    )
    .unwrap();
    assert_eq!(parts[0].to_i64_vec(), vec![1, 2, 3]);
    assert_eq!(parts[1].to_i64_vec(), vec![4, 5]);
    let parts = eval_op(
        &Op::Split {
            axis: 0,
            num_outputs: 3,
        },
        &[&v, &i64v(&[1, 0, 4])],
    )
    .unwrap();
    assert_eq!(parts[1].dims(), &[0]);
    assert_eq!(parts[2].to_i64_vec(), vec![2, 3, 4, 5]);
    assert!(eval_op(
        &Op::Split {
            axis: 0,
            num_outputs: 2
        },
        &[&v, &i64v(&[1, 1])]
    )
    .is_err());
}

#[test]
fn slice_clamps_and_steps_backwards() {
    let x = iota(&[2, 4], 1.0); // [[1,2,3,4],[5,6,7,8]]
                                // ONNX slice example: starts [1,0], ends [2,3], axes [0,1], steps [1,2] -> [[5,7]].
    let y = eval1(
        Op::Slice,
        &[
            &x,
            &i64v(&[1, 0]),
            &i64v(&[2, 3]),
            &i64v(&[0, 1]),
            &i64v(&[1, 2]),
        ],
    );
    assert_close(&y, &[1, 2], &[5.0, 7.0], 0.0);
    // ONNX slice example: starts [0,1], ends [-1,1000] -> [[2,3,4]].
    let y = eval1(Op::Slice, &[&x, &i64v(&[0, 1]), &i64v(&[-1, 1000])]);
    assert_close(&y, &[1, 3], &[2.0, 3.0, 4.0], 0.0);
    // Reverse everything with INT64 extremes.
    let v = iota(&[5], 0.0);
    let y = eval1(
        Op::Slice,
        &[
            &v,
            &i64v(&[-1]),
            &i64v(&[i64::MIN]),
            &i64v(&[0]),
            &i64v(&[-1]),
        ],
    );
    assert_close(&y, &[5], &[4.0, 3.0, 2.0, 1.0, 0.0], 0.0);
    let y = eval1(
        Op::Slice,
        &[&v, &i64v(&[10]), &i64v(&[0]), &i64v(&[0]), &i64v(&[-2])],
    );
    assert_close(&y, &[2], &[4.0, 2.0], 0.0);
    let y = eval1(Op::Slice, &[&v, &i64v(&[3]), &i64v(&[1])]);
    assert_eq!(y.dims(), &[0]);
    let y = eval1(
        Op::Slice,
        &[
            &v,
            &i64v(&[0]),
            &i64v(&[i64::MAX]),
            &i64v(&[0]),
            &i64v(&[i64::MAX]),
        ],
    );
    assert_close(&y, &[1], &[0.0], 0.0);
    assert!(matches!(
        eval_err(
            Op::Slice,
            &[&v, &i64v(&[0]), &i64v(&[1]), &i64v(&[0]), &i64v(&[0])]
        ),
        EvalError::Invalid { .. }
    ));
}

#[test]
fn gather_negative_indices_and_out_of_range() {
    let x = iota(&[3, 2], 0.0); // [[0,1],[2,3],[4,5]]
    let y = eval1(
        Op::Gather { axis: 0 },
        &[&x, &i64t(&[2, 2], &[0, -1, 1, -3])],
    );
    assert_close(
        &y,
        &[2, 2, 2],
        &[0.0, 1.0, 4.0, 5.0, 2.0, 3.0, 0.0, 1.0],
        0.0,
    );
    let idx32 = Tensor::from_vec(vec![], vec![-1i32]);
    let y = eval1(Op::Gather { axis: 1 }, &[&x, &idx32]);
    assert_close(&y, &[3], &[1.0, 3.0, 5.0], 0.0);
    match eval_err(Op::Gather { axis: 0 }, &[&x, &i64v(&[3])]) {
        EvalError::IndexOutOfRange { index, extent, .. } => assert_eq!((index, extent), (3, 3)),
        e => panic!("{e}"),
    }
    assert!(matches!(
        eval_err(Op::Gather { axis: 0 }, &[&x, &i64v(&[-4])]),
        EvalError::IndexOutOfRange { .. }
    ));
    assert!(matches!(
        eval_err(Op::Gather { axis: 0 }, &[&x, &f32t(&[1], &[0.0])]),
        EvalError::UnsupportedDType { .. }
    ));
}

#[test]
fn squeeze_unsqueeze_shape_size() {
    let x = iota(&[1, 3, 1, 2], 0.0);
    assert_eq!(eval1(Op::Squeeze, &[&x]).dims(), &[3, 2]);
    assert_eq!(eval1(Op::Squeeze, &[&x, &i64v(&[-2])]).dims(), &[1, 3, 2]);
    assert!(matches!(
        eval_err(Op::Squeeze, &[&x, &i64v(&[1])]),
        EvalError::Invalid { .. }
    ));
    let v = iota(&[3, 4], 0.0);
    assert_eq!(
        eval1(Op::Unsqueeze, &[&v, &i64v(&[0, 3])]).dims(),
        &[1, 3, 4, 1]
    );
    assert_eq!(eval1(Op::Unsqueeze, &[&v, &i64v(&[-1])]).dims(), &[3, 4, 1]);
    assert!(matches!(
        eval_err(Op::Unsqueeze, &[&v, &i64v(&[0, 0])]),
        EvalError::Invalid { .. }
    ));
    let s = eval1(
        Op::Shape {
            start: 0,
            end: None,
        },
        &[&x],
    );
    assert_eq!((s.dtype(), s.to_i64_vec()), (DType::I64, vec![1, 3, 1, 2]));
    assert_eq!(
        eval1(
            Op::Shape {
                start: -3,
                end: Some(-1)
            },
            &[&x]
        )
        .to_i64_vec(),
        vec![3, 1]
    );
    assert_eq!(
        eval1(
            Op::Shape {
                start: 10,
                end: None
            },
            &[&x]
        )
        .to_i64_vec(),
        Vec::<i64>::new()
    );
    let n = eval1(Op::Size, &[&x]);
    assert_eq!((n.dims(), n.to_i64_vec()), (&[][..], vec![6]));
}

#[test]
fn expand_tile_range_constant_of_shape_identity() {
    let x = f32t(&[3, 1], &[1.0, 2.0, 3.0]);
    let y = eval1(Op::Expand, &[&x, &i64v(&[2, 1, 2])]);
    assert_close(
        &y,
        &[2, 3, 2],
        &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0],
        0.0,
    );
    assert!(matches!(
        eval_err(Op::Expand, &[&x, &i64v(&[2, 2])]),
        EvalError::Invalid { .. }
    ));
    let y = eval1(Op::Tile, &[&f32t(&[2], &[1.0, 2.0]), &i64v(&[3])]);
    assert_close(&y, &[6], &[1.0, 2.0, 1.0, 2.0, 1.0, 2.0], 0.0);
    let y = eval1(Op::Tile, &[&iota(&[1, 2], 0.0), &i64v(&[2, 2])]);
    assert_close(&y, &[2, 4], &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0], 0.0);

    let r = eval1(
        Op::Range,
        &[
            &Tensor::scalar(1.0f32),
            &Tensor::scalar(2.0f32),
            &Tensor::scalar(0.25f32),
        ],
    );
    assert_close(&r, &[4], &[1.0, 1.25, 1.5, 1.75], 0.0);
    let r = eval1(
        Op::Range,
        &[
            &Tensor::scalar(10i64),
            &Tensor::scalar(4i64),
            &Tensor::scalar(-3i64),
        ],
    );
    assert_eq!(r.to_i64_vec(), vec![10, 7]);
    let r = eval1(
        Op::Range,
        &[
            &Tensor::scalar(0i32),
            &Tensor::scalar(5i32),
            &Tensor::scalar(-1i32),
        ],
    );
    assert_eq!(r.dims(), &[0]);
    assert!(eval_op(
        &Op::Range,
        &[
            &Tensor::scalar(0i64),
            &Tensor::scalar(5i64),
            &Tensor::scalar(0i64)
        ]
    )
    .is_err());

    let c = eval1(
        Op::ConstantOfShape {
            value: Tensor::from_vec(vec![1], vec![7i32]),
        },
        &[&i64v(&[2, 3])],
    );
    assert_eq!((c.dtype(), c.dims()), (DType::I32, &[2, 3][..]));
    assert_eq!(c.to_i64_vec(), vec![7; 6]);
    assert!(matches!(
        eval_err(
            Op::ConstantOfShape {
                value: Tensor::scalar(0.0f32)
            },
            &[&i64v(&[1 << 40, 1 << 20])]
        ),
        EvalError::TooLarge { .. }
    ));
    assert_eq!(eval1(Op::Identity, &[&x]), x);
}

#[test]
fn absurd_sizes_are_refused_not_allocated() {
    use kestrel_ir::{
        AspectPolicy, ConvAttrs, CoordMode, NearestMode, PadMode, ResizeAttrs, ResizeBy,
        ResizeMode, F32,
    };
    let empty = f32t(&[0, 2], &[]);
    // The product of the extents is 0, but one extent alone is absurd.
    assert!(matches!(
        eval_err(
            Op::Pad {
                mode: PadMode::Constant
            },
            &[&empty, &i64v(&[0, 0, 0, 1 << 60])]
        ),
        EvalError::TooLarge { .. }
    ));
    assert!(matches!(
        eval_err(Op::Tile, &[&empty, &i64v(&[1, 1 << 60])]),
        EvalError::TooLarge { .. }
    ));
    let attrs = ResizeAttrs {
        by: ResizeBy::Sizes,
        mode: ResizeMode::Nearest,
        coord: CoordMode::HalfPixel,
        nearest: NearestMode::Floor,
        cubic_coeff_a: F32(-0.75),
        exclude_outside: false,
        extrapolation_value: F32(0.0),
        antialias: false,
        aspect: AspectPolicy::Stretch,
        axes: vec![1],
    };
    assert!(matches!(
        eval_err(Op::Resize(attrs), &[&empty, &i64v(&[1 << 60])]),
        EvalError::TooLarge { .. }
    ));
    let x = iota(&[1, 2, 3, 3], 0.0);
    let w = iota(&[2, 1, 1, 1], 0.0);
    let conv = ConvAttrs {
        group: usize::MAX,
        ..Default::default()
    };
    assert!(matches!(
        eval_err(Op::Conv(conv), &[&x, &w]),
        EvalError::Invalid { .. }
    ));
    assert!(matches!(
        eval_err(Op::Expand, &[&iota(&[1], 0.0), &i64v(&[1 << 40, 1 << 40])]),
        EvalError::TooLarge { .. }
    ));
}
