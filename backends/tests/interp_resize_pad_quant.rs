//! Resize (ONNX operator examples), Pad, QuantizeLinear and DequantizeLinear.

mod common;
use common::*;
use kestrel_backends::interp::EvalError;
use kestrel_ir::{
    AspectPolicy, CoordMode, DType, NearestMode, Op, PadMode, ResizeAttrs, ResizeBy, ResizeMode,
    Tensor, F32,
};

fn resize(mode: ResizeMode, by: ResizeBy, coord: CoordMode) -> ResizeAttrs {
    ResizeAttrs {
        by,
        mode,
        coord,
        nearest: NearestMode::RoundPreferFloor,
        cubic_coeff_a: F32(-0.75),
        exclude_outside: false,
        extrapolation_value: F32(0.0),
        antialias: false,
        aspect: AspectPolicy::Stretch,
        axes: vec![],
    }
}

fn scales(v: &[f32]) -> Tensor {
    f32t(&[v.len()], v)
}

#[test]
fn resize_nearest_examples() {
    let x = f32t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let a = resize(ResizeMode::Nearest, ResizeBy::Scales, CoordMode::HalfPixel);
    let y = eval1(Op::Resize(a), &[&x, &scales(&[1.0, 1.0, 2.0, 3.0])]);
    let e = [
        1., 1., 1., 2., 2., 2., 1., 1., 1., 2., 2., 2., 3., 3., 3., 4., 4., 4., 3., 3., 3., 4., 4.,
        4.,
    ];
    assert_close(&y, &[1, 1, 4, 6], &e, 0.0);

    let x8 = iota(&[1, 1, 2, 4], 1.0);
    let a = resize(ResizeMode::Nearest, ResizeBy::Scales, CoordMode::HalfPixel);
    assert_close(
        &eval1(Op::Resize(a), &[&x8, &scales(&[1.0, 1.0, 0.6, 0.6])]),
        &[1, 1, 1, 2],
        &[1.0, 3.0],
        0.0,
    );
    let a = resize(ResizeMode::Nearest, ResizeBy::Sizes, CoordMode::HalfPixel);
    assert_close(
        &eval1(Op::Resize(a), &[&x8, &i64v(&[1, 1, 1, 3])]),
        &[1, 1, 1, 3],
        &[1.0, 2.0, 4.0],
        0.0,
    );

    // upsample_sizes_nearest (half_pixel, round_prefer_floor): 2x2 -> 7x8.
    let a = resize(ResizeMode::Nearest, ResizeBy::Sizes, CoordMode::HalfPixel);
    let y = eval1(Op::Resize(a), &[&x, &i64v(&[1, 1, 7, 8])]);
    let mut e = Vec::new();
    for r in 0..7 {
        let top = r < 4;
        for c in 0..8 {
            e.push(match (top, c < 4) {
                (true, true) => 1.0,
                (true, false) => 2.0,
                (false, true) => 3.0,
                (false, false) => 4.0,
            });
        }
    }
    assert_close(&y, &[1, 1, 7, 8], &e, 0.0);

    let x16 = iota(&[1, 1, 4, 4], 1.0);
    // round_prefer_ceil + asymmetric, and ceil + half_pixel give the same 8x8 grid.
    let row_map = [0, 1, 1, 2, 2, 3, 3, 3];
    let expected: Vec<f64> = (0..64)
        .map(|i| (row_map[i / 8] * 4 + row_map[i % 8] + 1) as f64)
        .collect();
    let a = ResizeAttrs {
        nearest: NearestMode::RoundPreferCeil,
        ..resize(ResizeMode::Nearest, ResizeBy::Sizes, CoordMode::Asymmetric)
    };
    assert_close(
        &eval1(Op::Resize(a), &[&x16, &i64v(&[1, 1, 8, 8])]),
        &[1, 1, 8, 8],
        &expected,
        0.0,
    );
    let a = ResizeAttrs {
        nearest: NearestMode::Ceil,
        ..resize(ResizeMode::Nearest, ResizeBy::Sizes, CoordMode::HalfPixel)
    };
    assert_close(
        &eval1(Op::Resize(a), &[&x16, &i64v(&[1, 1, 8, 8])]),
        &[1, 1, 8, 8],
        &expected,
        0.0,
    );
    // floor + align_corners.
    let row_map = [0, 0, 0, 1, 1, 2, 2, 3];
    let expected: Vec<f64> = (0..64)
        .map(|i| (row_map[i / 8] * 4 + row_map[i % 8] + 1) as f64)
        .collect();
    let a = ResizeAttrs {
        nearest: NearestMode::Floor,
        ..resize(
            ResizeMode::Nearest,
            ResizeBy::Sizes,
            CoordMode::AlignCorners,
        )
    };
    assert_close(
        &eval1(Op::Resize(a), &[&x16, &i64v(&[1, 1, 8, 8])]),
        &[1, 1, 8, 8],
        &expected,
        0.0,
    );
}

#[test]
fn resize_linear_examples() {
    let x = f32t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let a = resize(ResizeMode::Linear, ResizeBy::Scales, CoordMode::HalfPixel);
    let y = eval1(Op::Resize(a), &[&x, &scales(&[1.0, 1.0, 2.0, 2.0])]);
    let e = [
        1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0,
    ];
    assert_close(&y, &[1, 1, 4, 4], &e, 1e-6);
    let a = resize(
        ResizeMode::Linear,
        ResizeBy::Scales,
        CoordMode::AlignCorners,
    );
    let y = eval1(Op::Resize(a), &[&x, &scales(&[1.0, 1.0, 2.0, 2.0])]);
    let t = 1.0 / 3.0;
    let e = [
        1.0,
        1.0 + t,
        1.0 + 2.0 * t,
        2.0,
        1.0 + 2.0 * t,
        2.0,
        2.0 + t,
        2.0 + 2.0 * t,
        2.0 + t,
        2.0 + 2.0 * t,
        3.0,
        3.0 + t,
        3.0,
        3.0 + t,
        3.0 + 2.0 * t,
        4.0,
    ];
    assert_close(&y, &[1, 1, 4, 4], &e, 1e-6);

    let x8 = iota(&[1, 1, 2, 4], 1.0);
    let a = resize(ResizeMode::Linear, ResizeBy::Scales, CoordMode::HalfPixel);
    assert_close(
        &eval1(Op::Resize(a), &[&x8, &scales(&[1.0, 1.0, 0.6, 0.6])]),
        &[1, 1, 1, 2],
        &[2.6666665, 4.3333331],
        1e-6,
    );
    let a = resize(
        ResizeMode::Linear,
        ResizeBy::Scales,
        CoordMode::AlignCorners,
    );
    assert_close(
        &eval1(Op::Resize(a), &[&x8, &scales(&[1.0, 1.0, 0.6, 0.6])]),
        &[1, 1, 1, 2],
        &[1.0, 3.142857],
        1e-6,
    );

    let x16 = iota(&[1, 1, 4, 4], 1.0);
    let a = resize(
        ResizeMode::Linear,
        ResizeBy::Sizes,
        CoordMode::PytorchHalfPixel,
    );
    assert_close(
        &eval1(Op::Resize(a), &[&x16, &i64v(&[1, 1, 3, 1])]),
        &[1, 1, 3, 1],
        &[1.6666666, 7.0, 12.333333],
        1e-6,
    );

    let x4 = iota(&[1, 1, 1, 4], 1.0);
    let a = resize(
        ResizeMode::Linear,
        ResizeBy::Scales,
        CoordMode::HalfPixelSymmetric,
    );
    assert_close(
        &eval1(Op::Resize(a), &[&x4, &scales(&[1.0, 1.0, 1.0, 0.6])]),
        &[1, 1, 1, 2],
        &[1.6666667, 3.3333333],
        1e-6,
    );
    let a = resize(
        ResizeMode::Linear,
        ResizeBy::Scales,
        CoordMode::HalfPixelSymmetric,
    );
    let y = eval1(Op::Resize(a), &[&x, &scales(&[1.0, 1.0, 2.3, 2.94])]);
    let e = [
        1.0, 1.15986395, 1.5, 1.84013605, 2.0, 1.56521738, 1.72508133, 2.06521738, 2.40535343,
        2.56521738, 2.43478262, 2.59464657, 2.93478262, 3.27491867, 3.43478262, 3.0, 3.15986395,
        3.5, 3.84013605, 4.0,
    ];
    assert_close(&y, &[1, 1, 4, 5], &e, 1e-6);
}

#[test]
fn resize_cubic_examples() {
    let x16 = iota(&[1, 1, 4, 4], 1.0);
    let a = resize(ResizeMode::Cubic, ResizeBy::Scales, CoordMode::HalfPixel);
    let y = eval1(Op::Resize(a), &[&x16, &scales(&[1.0, 1.0, 2.0, 2.0])]);
    assert_eq!(y.dims(), &[1, 1, 8, 8]);
    let first_row = [
        0.47265625, 0.76953125, 1.24609375, 1.875, 2.28125, 2.91015625, 3.38671875, 3.68359375,
    ];
    let last_row = [
        13.31640625,
        13.61328125,
        14.08984375,
        14.71875,
        15.125,
        15.75390625,
        16.23046875,
        16.52734375,
    ];
    let v = y.to_f64_vec();
    for c in 0..8 {
        assert!((v[c] - first_row[c]).abs() < 1e-5, "{:?}", &v[..8]);
        assert!((v[56 + c] - last_row[c]).abs() < 1e-5, "{:?}", &v[56..]);
    }
    let a = resize(ResizeMode::Cubic, ResizeBy::Scales, CoordMode::HalfPixel);
    let e = [
        1.47119141,
        2.78125,
        4.08251953,
        6.71142578,
        8.02148438,
        9.32275391,
        11.91650391,
        13.2265625,
        14.52783203,
    ];
    assert_close(
        &eval1(Op::Resize(a), &[&x16, &scales(&[1.0, 1.0, 0.8, 0.8])]),
        &[1, 1, 3, 3],
        &e,
        1e-6,
    );
    let a = ResizeAttrs {
        cubic_coeff_a: F32(-0.5),
        exclude_outside: true,
        ..resize(ResizeMode::Cubic, ResizeBy::Scales, CoordMode::HalfPixel)
    };
    let e = [
        1.36812675,
        2.6695014,
        4.0133367,
        6.57362535,
        7.875,
        9.2188353,
        11.94896657,
        13.25034122,
        14.59417652,
    ];
    assert_close(
        &eval1(Op::Resize(a), &[&x16, &scales(&[1.0, 1.0, 0.8, 0.8])]),
        &[1, 1, 3, 3],
        &e,
        1e-6,
    );
    let a = resize(ResizeMode::Cubic, ResizeBy::Scales, CoordMode::AlignCorners);
    let e = [
        1.0,
        2.39519159,
        3.79038317,
        6.58076634,
        7.97595793,
        9.37114951,
        12.16153268,
        13.55672427,
        14.95191585,
    ];
    assert_close(
        &eval1(Op::Resize(a), &[&x16, &scales(&[1.0, 1.0, 0.8, 0.8])]),
        &[1, 1, 3, 3],
        &e,
        1e-6,
    );
    let a = resize(ResizeMode::Cubic, ResizeBy::Sizes, CoordMode::HalfPixel);
    let e = [
        1.63078704,
        3.00462963,
        4.37847222,
        7.12615741,
        8.5,
        9.87384259,
        12.62152778,
        13.99537037,
        15.36921296,
    ];
    assert_close(
        &eval1(Op::Resize(a), &[&x16, &i64v(&[1, 1, 3, 3])]),
        &[1, 1, 3, 3],
        &e,
        1e-6,
    );
    let a = resize(ResizeMode::Cubic, ResizeBy::Scales, CoordMode::Asymmetric);
    let y = eval1(Op::Resize(a), &[&x16, &scales(&[1.0, 1.0, 2.0, 2.0])]);
    let row0 = [1.0, 1.40625, 2.0, 2.5, 3.0, 3.59375, 4.0, 4.09375];
    for (c, &e) in row0.iter().enumerate() {
        assert!((y.to_f64_vec()[c] - e).abs() < 1e-6);
    }
}

#[test]
fn resize_tf_crop_and_resize_axes_and_aspect() {
    let x16 = iota(&[1, 1, 4, 4], 1.0);
    let a = resize(
        ResizeMode::Linear,
        ResizeBy::Sizes,
        CoordMode::TfCropAndResize,
    );
    let roi = f32t(&[8], &[0.0, 0.0, 0.4, 0.6, 1.0, 1.0, 0.6, 0.8]);
    let y = eval1(Op::Resize(a.clone()), &[&x16, &i64v(&[1, 1, 3, 3]), &roi]);
    assert_close(
        &y,
        &[1, 1, 3, 3],
        &[7.6, 7.9, 8.2, 8.8, 9.1, 9.4, 10.0, 10.3, 10.6],
        1e-5,
    );
    let ex = ResizeAttrs {
        extrapolation_value: F32(10.0),
        ..a.clone()
    };
    let roi = f32t(&[8], &[0.0, 0.0, 0.4, 0.6, 1.0, 1.0, 1.2, 1.7]);
    let y = eval1(Op::Resize(ex), &[&x16, &i64v(&[1, 1, 3, 3]), &roi]);
    assert_close(
        &y,
        &[1, 1, 3, 3],
        &[7.6, 10.0, 10.0, 12.4, 10.0, 10.0, 10.0, 10.0, 10.0],
        1e-5,
    );
    // The same crop with `axes`: roi and sizes list only the resized axes.
    let with_axes = ResizeAttrs {
        axes: vec![2, 3],
        ..a
    };
    let roi = f32t(&[4], &[0.4, 0.6, 0.6, 0.8]);
    let y = eval1(Op::Resize(with_axes), &[&x16, &i64v(&[3, 3]), &roi]);
    assert_close(
        &y,
        &[1, 1, 3, 3],
        &[7.6, 7.9, 8.2, 8.8, 9.1, 9.4, 10.0, 10.3, 10.6],
        1e-5,
    );

    // keep_aspect_ratio_policy (ONNX resize_downsample_sizes_nearest_not_larger / not_smaller).
    let x = f32t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let a = ResizeAttrs {
        aspect: AspectPolicy::NotLarger,
        axes: vec![2, 3],
        ..resize(ResizeMode::Nearest, ResizeBy::Sizes, CoordMode::HalfPixel)
    };
    let y = eval1(Op::Resize(a), &[&x, &i64v(&[7, 8])]);
    assert_eq!(y.dims(), &[1, 1, 7, 7]);
    let a = ResizeAttrs {
        aspect: AspectPolicy::NotSmaller,
        axes: vec![2, 3],
        ..resize(ResizeMode::Nearest, ResizeBy::Sizes, CoordMode::HalfPixel)
    };
    assert_eq!(
        eval1(Op::Resize(a), &[&x, &i64v(&[7, 8])]).dims(),
        &[1, 1, 8, 8]
    );
    let x8 = iota(&[1, 1, 2, 4], 1.0);
    let a = ResizeAttrs {
        aspect: AspectPolicy::NotLarger,
        axes: vec![2, 3],
        ..resize(ResizeMode::Nearest, ResizeBy::Sizes, CoordMode::HalfPixel)
    };
    assert_close(
        &eval1(Op::Resize(a), &[&x8, &i64v(&[1, 3])]),
        &[1, 1, 1, 2],
        &[1.0, 3.0],
        0.0,
    );

    let bad = ResizeAttrs {
        antialias: true,
        ..resize(ResizeMode::Linear, ResizeBy::Scales, CoordMode::HalfPixel)
    };
    assert!(matches!(
        eval_err(Op::Resize(bad), &[&x, &scales(&[1.0, 1.0, 0.5, 0.5])]),
        EvalError::Unsupported { .. }
    ));
    let a = resize(ResizeMode::Linear, ResizeBy::Scales, CoordMode::HalfPixel);
    assert!(matches!(
        eval_err(Op::Resize(a), &[&x, &scales(&[2.0, 2.0])]),
        EvalError::Invalid { .. }
    ));
}

#[test]
fn pad_modes() {
    let x = f32t(&[3, 2], &[1.0, 1.2, 2.3, 3.4, 4.5, 5.7]);
    let pads = i64v(&[0, 2, 0, 0]);
    // ONNX Pad examples.
    let y = eval1(
        Op::Pad {
            mode: PadMode::Constant,
        },
        &[&x, &pads, &Tensor::scalar(0.0f32)],
    );
    assert_close(
        &y,
        &[3, 4],
        &[0.0, 0.0, 1.0, 1.2, 0.0, 0.0, 2.3, 3.4, 0.0, 0.0, 4.5, 5.7],
        1e-7,
    );
    let y = eval1(
        Op::Pad {
            mode: PadMode::Reflect,
        },
        &[&x, &pads],
    );
    assert_close(
        &y,
        &[3, 4],
        &[1.0, 1.2, 1.0, 1.2, 2.3, 3.4, 2.3, 3.4, 4.5, 5.7, 4.5, 5.7],
        1e-7,
    );
    let y = eval1(
        Op::Pad {
            mode: PadMode::Edge,
        },
        &[&x, &pads],
    );
    assert_close(
        &y,
        &[3, 4],
        &[1.0, 1.0, 1.0, 1.2, 2.3, 2.3, 2.3, 3.4, 4.5, 4.5, 4.5, 5.7],
        1e-7,
    );
    let y = eval1(
        Op::Pad {
            mode: PadMode::Wrap,
        },
        &[&x, &i64v(&[2, 1, 1, 1])],
    );
    let e = [
        3.4, 2.3, 3.4, 2.3, 5.7, 4.5, 5.7, 4.5, 1.2, 1.0, 1.2, 1.0, 3.4, 2.3, 3.4, 2.3, 5.7, 4.5,
        5.7, 4.5, 1.2, 1.0, 1.2, 1.0,
    ];
    assert_close(&y, &[6, 4], &e, 1e-7);
    // Reflect along a longer axis, and negative pads crop.
    let v = iota(&[4], 1.0);
    let y = eval1(
        Op::Pad {
            mode: PadMode::Reflect,
        },
        &[&v, &i64v(&[2, 3])],
    );
    assert_close(
        &y,
        &[9],
        &[3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0],
        0.0,
    );
    let y = eval1(
        Op::Pad {
            mode: PadMode::Constant,
        },
        &[&v, &i64v(&[-1, 2]), &Tensor::scalar(9.0f32)],
    );
    assert_close(&y, &[5], &[2.0, 3.0, 4.0, 9.0, 9.0], 0.0);
    let y = eval1(
        Op::Pad {
            mode: PadMode::Edge,
        },
        &[&v, &i64v(&[1, -2])],
    );
    assert_close(&y, &[3], &[1.0, 1.0, 2.0], 0.0);
    assert!(matches!(
        eval_err(
            Op::Pad {
                mode: PadMode::Constant
            },
            &[&v, &i64v(&[-3, -2])]
        ),
        EvalError::Invalid { .. }
    ));
    assert!(matches!(
        eval_err(
            Op::Pad {
                mode: PadMode::Constant
            },
            &[&v, &i64v(&[1])]
        ),
        EvalError::Invalid { .. }
    ));
}

#[test]
fn quantize_rounds_half_to_even_and_saturates() {
    let x = f32t(&[8], &[0.5, 1.5, 2.5, -0.5, -1.5, 300.0, -300.0, f32::NAN]);
    let one = Tensor::scalar(1.0f32);
    let y = eval1(
        Op::QuantizeLinear {
            axis: 1,
            to: DType::I8,
        },
        &[&x, &one],
    );
    assert_eq!(y.dtype(), DType::I8);
    assert_eq!(
        y.to_vec::<i8>().unwrap(),
        vec![0, 2, 2, 0, -2, 127, -128, 0]
    );
    let zp = Tensor::scalar(128u8);
    let y = eval1(
        Op::QuantizeLinear {
            axis: 1,
            to: DType::U8,
        },
        &[&x, &Tensor::scalar(2.0f32), &zp],
    );
    assert_eq!(
        y.to_vec::<u8>().unwrap(),
        vec![128, 129, 129, 128, 127, 255, 0, 128]
    );
    // ONNX quantizelinear example: [0, 2, 3, 1000, -254, -1000] / 2 + 128.
    let x = f32t(&[6], &[0.0, 2.0, 3.0, 1000.0, -254.0, -1000.0]);
    let y = eval1(
        Op::QuantizeLinear {
            axis: 1,
            to: DType::U8,
        },
        &[&x, &Tensor::scalar(2.0f32), &zp],
    );
    assert_eq!(y.to_vec::<u8>().unwrap(), vec![128, 129, 130, 255, 1, 0]);
    // Per-axis along axis 1.
    let x = f32t(&[1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let s = f32t(&[2], &[1.0, 2.0]);
    let z = Tensor::from_vec(vec![2], vec![0i8, 10]);
    let y = eval1(
        Op::QuantizeLinear {
            axis: 1,
            to: DType::I8,
        },
        &[&x, &s, &z],
    );
    assert_eq!(y.to_vec::<i8>().unwrap(), vec![1, 2, 12, 12]);
    assert!(matches!(
        eval_err(
            Op::QuantizeLinear {
                axis: 2,
                to: DType::I8
            },
            &[&iota(&[1, 2, 3], 0.0), &s, &z]
        ),
        EvalError::Invalid { .. }
    ));
    assert!(matches!(
        eval_err(
            Op::QuantizeLinear {
                axis: 1,
                to: DType::U8
            },
            &[&x, &s, &z]
        ),
        EvalError::Invalid { .. }
    ));
}

#[test]
fn dequantize_per_tensor_and_per_axis() {
    let x = Tensor::from_vec(vec![4], vec![0u8, 3, 128, 255]);
    let y = eval1(
        Op::DequantizeLinear { axis: 1 },
        &[&x, &Tensor::scalar(2.0f32), &Tensor::scalar(128u8)],
    );
    assert_eq!(y.dtype(), DType::F32);
    assert_close(&y, &[4], &[-256.0, -250.0, 0.0, 254.0], 0.0);
    let x = Tensor::from_vec(vec![2, 2], vec![-1i8, 1, 10, 20]);
    let y = eval1(
        Op::DequantizeLinear { axis: 0 },
        &[
            &x,
            &f32t(&[2], &[0.5, 0.1]),
            &Tensor::from_vec(vec![2], vec![0i8, 10]),
        ],
    );
    assert_close(&y, &[2, 2], &[-0.5, 0.5, 0.0, 1.0], 1e-7);
    let x32 = Tensor::from_vec(vec![2], vec![100i32, -100]);
    let y = eval1(
        Op::DequantizeLinear { axis: 1 },
        &[&x32, &Tensor::scalar(0.5f32)],
    );
    assert_close(&y, &[2], &[50.0, -50.0], 0.0);
    assert!(matches!(
        eval_err(
            Op::DequantizeLinear { axis: 1 },
            &[&f32t(&[1], &[1.0]), &Tensor::scalar(1.0f32)]
        ),
        EvalError::UnsupportedDType { .. }
    ));
}

/// DynamicQuantizeLinear's three outputs on `x`.
fn dynamic_quantize(x: &[f32]) -> (Vec<u8>, f32, u8) {
    let t = f32t(&[x.len()], x);
    let out = kestrel_backends::interp::eval_op(&Op::DynamicQuantizeLinear, &[&t]).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].dtype(), DType::U8);
    assert_eq!(out[0].dims(), &[x.len()]);
    assert!(out[1].dims().is_empty() && out[2].dims().is_empty());
    (
        out[0].to_vec::<u8>().unwrap(),
        out[1].to_f32_vec()[0],
        out[2].to_vec::<u8>().unwrap()[0],
    )
}

/// The expected values are onnxruntime 1.x's (CPU kernel) where it is defined; a NaN element
/// gives the zero point here (as `quantize_linear` does) where onnxruntime gives 0.
#[test]
fn dynamic_quantize_linear_examples() {
    // ONNX DynamicQuantizeLinear example 1.
    let (y, s, z) = dynamic_quantize(&[0.0, 2.0, -3.0, -2.5, 1.34, 0.5]);
    assert_eq!(s, (2.0f32 + 3.0) / 255.0);
    assert_eq!(z, 153);
    assert_eq!(y, vec![153, 255, 0, 26, 221, 179]);
    // Example 2: all negative; the range widens to include 0, zero point 255.
    let (y, s, z) = dynamic_quantize(&[-1.0, -2.1, -1.3, -2.5, -3.34, -4.0]);
    assert_eq!(s, 4.0f32 / 255.0);
    assert_eq!(z, 255);
    assert_eq!(y, vec![191, 121, 172, 96, 42, 0]);
    // All zeros: scale 1 (onnxruntime's choice), zero point 0.
    assert_eq!(dynamic_quantize(&[0.0, -0.0, 0.0]), (vec![0, 0, 0], 1.0, 0));
    // NaN takes no part in the range and quantizes to the zero point; 1 / (2/255) rounds below
    // 127.5 in f32, so the zero point is 127 and 1.0 maps to 254.
    let (y, s, z) = dynamic_quantize(&[f32::NAN, 1.0, -1.0]);
    assert_eq!((s, z), (2.0 / 255.0, 127));
    assert_eq!(y, vec![127, 254, 0]);
    // Only NaN: as all zeros.
    assert_eq!(dynamic_quantize(&[f32::NAN]), (vec![0], 1.0, 0));
    // Both infinities: an infinite scale and a NaN initial zero point, which gives 255.
    let (y, s, z) = dynamic_quantize(&[f32::INFINITY, f32::NEG_INFINITY, 3.0]);
    assert_eq!((s, z), (f32::INFINITY, 255));
    assert_eq!(y, vec![255, 255, 255]);
    // Huge finite values: the range overflows to infinity in f32, as onnxruntime computes it.
    assert_eq!(
        dynamic_quantize(&[f32::MAX, -f32::MAX]),
        (vec![0, 0], f32::INFINITY, 0)
    );
    // A subnormal range: the scale underflows to 0, the zero point is 255 and so is every y.
    assert_eq!(
        dynamic_quantize(&[1e-45, 2e-45]),
        (vec![255, 255], 0.0, 255)
    );
    assert!(matches!(
        kestrel_backends::interp::eval_op(
            &Op::DynamicQuantizeLinear,
            &[&Tensor::from_vec(vec![1], vec![1i32])]
        ),
        Err(EvalError::UnsupportedDType { .. })
    ));
}
