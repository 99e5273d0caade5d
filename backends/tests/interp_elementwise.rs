//! Element-wise ops: hand-computed values, dtype rules and error cases.

mod common;
use common::*;
use kestrel_backends::interp::{erf, EvalError};
use kestrel_ir::{BinaryOp, DType, Op, Tensor, UnaryOp, F32};

fn bin(op: BinaryOp, a: &Tensor, b: &Tensor) -> Tensor {
    eval1(Op::Binary(op), &[a, b])
}

#[test]
fn add_broadcasts_like_numpy() {
    let a = f32t(&[2, 1], &[10.0, 20.0]);
    let b = f32t(&[3], &[1.0, 2.0, 3.0]);
    let y = bin(BinaryOp::Add, &a, &b);
    assert_close(&y, &[2, 3], &[11.0, 12.0, 13.0, 21.0, 22.0, 23.0], 0.0);
    // Scalar with rank-3 and a middle-axis broadcast.
    let c = iota(&[2, 3, 2], 0.0);
    let d = f32t(&[3, 1], &[100.0, 200.0, 300.0]);
    let y = bin(BinaryOp::Mul, &c, &d);
    assert_eq!(y.dims(), &[2, 3, 2]);
    assert_eq!(
        y.to_f32_vec(),
        vec![
            0.0, 100.0, 400.0, 600.0, 1200.0, 1500.0, 600.0, 700.0, 1600.0, 1800.0, 3000.0, 3300.0
        ]
    );
    let s = Tensor::scalar(2.0f32);
    assert_close(&bin(BinaryOp::Sub, &s, &a), &[2, 1], &[-8.0, -18.0], 0.0);
}

#[test]
fn broadcast_mismatch_is_an_error() {
    let a = iota(&[2, 3], 0.0);
    let b = iota(&[2], 0.0);
    assert!(matches!(
        eval_err(Op::Binary(BinaryOp::Add), &[&a, &b]),
        EvalError::Invalid { .. }
    ));
    let c = i64v(&[1, 2, 3]);
    let d = iota(&[3], 0.0);
    assert!(matches!(
        eval_err(Op::Binary(BinaryOp::Add), &[&c, &d]),
        EvalError::Invalid { .. }
    ));
    assert!(matches!(
        eval_err(Op::Binary(BinaryOp::Add), &[&c]),
        EvalError::Arity { .. }
    ));
}

#[test]
fn integer_div_truncates_and_mod_follows_divisor() {
    let a = i64v(&[7, -7, 7, -7]);
    let b = i64v(&[2, 2, -2, -2]);
    assert_eq!(bin(BinaryOp::Div, &a, &b).to_i64_vec(), vec![3, -3, -3, 3]);
    assert_eq!(bin(BinaryOp::Mod, &a, &b).to_i64_vec(), vec![1, 1, -1, -1]);
    assert_eq!(bin(BinaryOp::Fmod, &a, &b).to_i64_vec(), vec![1, -1, 1, -1]);
    let x = f32t(&[4], &[7.5, -7.5, 7.5, -7.5]);
    let y = f32t(&[4], &[2.0, 2.0, -2.0, -2.0]);
    assert_close(
        &bin(BinaryOp::Fmod, &x, &y),
        &[4],
        &[1.5, -1.5, 1.5, -1.5],
        0.0,
    );
    assert_close(
        &bin(BinaryOp::Mod, &x, &y),
        &[4],
        &[1.5, 0.5, -0.5, -1.5],
        0.0,
    );
    assert_close(
        &bin(BinaryOp::Div, &x, &y),
        &[4],
        &[3.75, -3.75, -3.75, 3.75],
        0.0,
    );
}

#[test]
fn integer_division_by_zero_is_an_error() {
    let a = i64v(&[1, 2]);
    let b = i64v(&[1, 0]);
    for op in [BinaryOp::Div, BinaryOp::Mod, BinaryOp::Fmod] {
        assert!(matches!(
            eval_err(Op::Binary(op), &[&a, &b]),
            EvalError::DivisionByZero { .. }
        ));
    }
    // Float division by zero is IEEE.
    let y = bin(BinaryOp::Div, &f32t(&[1], &[1.0]), &f32t(&[1], &[0.0]));
    assert_eq!(y.to_f32_vec(), vec![f32::INFINITY]);
}

#[test]
fn narrow_integers_wrap() {
    let a = Tensor::from_vec(vec![2], vec![127i8, -128]);
    let b = Tensor::from_vec(vec![2], vec![1i8, -1]);
    let y = bin(BinaryOp::Add, &a, &b);
    assert_eq!(y.dtype(), DType::I8);
    assert_eq!(y.to_vec::<i8>().unwrap(), vec![-128, 127]);
    let y = bin(
        BinaryOp::Div,
        &Tensor::from_vec(vec![1], vec![i32::MIN]),
        &Tensor::from_vec(vec![1], vec![-1i32]),
    );
    assert_eq!(y.to_vec::<i32>().unwrap(), vec![i32::MIN]);
}

#[test]
fn pow_with_mixed_exponent_dtypes() {
    let base = f32t(&[3], &[2.0, 3.0, 4.0]);
    let e = i64v(&[3, 2, -1]);
    let y = bin(BinaryOp::Pow, &base, &e);
    assert_eq!(y.dtype(), DType::F32);
    assert_close(&y, &[3], &[8.0, 9.0, 0.25], 0.0);
    let ib = i64v(&[2, 3, 2]);
    assert_eq!(
        bin(BinaryOp::Pow, &ib, &i64v(&[10, 3, -1])).to_i64_vec(),
        vec![1024, 27, 0]
    );
    let y = bin(BinaryOp::Pow, &ib, &f32t(&[1], &[0.5]));
    assert_eq!(y.dtype(), DType::I64);
    assert_eq!(y.to_i64_vec(), vec![1, 1, 1]);
}

#[test]
fn comparisons_logic_and_max() {
    let a = f32t(&[3], &[1.0, 2.0, f32::NAN]);
    let b = f32t(&[3], &[2.0, 2.0, 0.0]);
    let y = bin(BinaryOp::Less, &a, &b);
    assert_eq!(y.dtype(), DType::Bool);
    assert_eq!(y.to_i64_vec(), vec![1, 0, 0]);
    assert_eq!(
        bin(BinaryOp::GreaterOrEqual, &a, &b).to_i64_vec(),
        vec![0, 1, 0]
    );
    assert_eq!(
        bin(BinaryOp::Equal, &i64v(&[1, 2]), &i64v(&[1, 3])).to_i64_vec(),
        vec![1, 0]
    );
    let m = bin(BinaryOp::Max, &a, &b).to_f32_vec();
    assert_eq!(&m[..2], &[2.0, 2.0]);
    assert!(m[2].is_nan(), "max propagates NaN");
    let p = Tensor::from_vec(vec![4], vec![true, true, false, false]);
    let q = Tensor::from_vec(vec![4], vec![true, false, true, false]);
    assert_eq!(bin(BinaryOp::And, &p, &q).to_i64_vec(), vec![1, 0, 0, 0]);
    assert_eq!(bin(BinaryOp::Or, &p, &q).to_i64_vec(), vec![1, 1, 1, 0]);
    assert_eq!(bin(BinaryOp::Xor, &p, &q).to_i64_vec(), vec![0, 1, 1, 0]);
    assert!(matches!(
        eval_err(Op::Binary(BinaryOp::And), &[&a, &b]),
        EvalError::UnsupportedDType { .. }
    ));
    let prelu = bin(
        BinaryOp::PRelu,
        &f32t(&[2, 2], &[-1.0, 2.0, -3.0, 4.0]),
        &f32t(&[2, 1], &[0.1, 0.5]),
    );
    assert_close(&prelu, &[2, 2], &[-0.1, 2.0, -1.5, 4.0], 1e-7);
}

#[test]
fn unary_functions() {
    let x = f32t(&[6], &[0.5, 1.5, 2.5, -0.5, -1.5, -2.7]);
    let r = eval1(Op::Unary(UnaryOp::Round), &[&x]).to_f32_vec();
    assert_eq!(r, vec![0.0, 2.0, 2.0, -0.0, -2.0, -3.0]);
    assert_eq!(
        eval1(Op::Unary(UnaryOp::Floor), &[&x]).to_f32_vec()[5],
        -3.0
    );
    assert_eq!(eval1(Op::Unary(UnaryOp::Ceil), &[&x]).to_f32_vec()[5], -2.0);
    assert_eq!(
        eval1(Op::Unary(UnaryOp::Relu), &[&x]).to_f32_vec(),
        vec![0.5, 1.5, 2.5, 0.0, 0.0, 0.0]
    );
    assert_eq!(
        eval1(Op::Unary(UnaryOp::Sign), &[&x]).to_f32_vec(),
        vec![1.0, 1.0, 1.0, -1.0, -1.0, -1.0]
    );
    let s = eval1(
        Op::Unary(UnaryOp::Sigmoid),
        &[&f32t(&[3], &[0.0, -1000.0, 1000.0])],
    );
    assert_close(&s, &[3], &[0.5, 0.0, 1.0], 0.0);
    let sp = eval1(
        Op::Unary(UnaryOp::Softplus),
        &[&f32t(&[3], &[0.0, 1000.0, -1000.0])],
    );
    assert_close(&sp, &[3], &[std::f64::consts::LN_2, 1000.0, 0.0], 1e-7);
    let hs = eval1(
        Op::Unary(UnaryOp::HardSwish),
        &[&f32t(&[4], &[-4.0, -1.0, 1.0, 4.0])],
    );
    assert_close(&hs, &[4], &[0.0, -1.0 / 3.0, 2.0 / 3.0, 4.0], 1e-7);
    let mish = eval1(Op::Unary(UnaryOp::Mish), &[&f32t(&[1], &[1.0])]);
    assert_close(&mish, &[1], &[0.8650983882673103], 1e-7);
    let nan = eval1(Op::Unary(UnaryOp::IsNaN), &[&f32t(&[2], &[f32::NAN, 1.0])]);
    assert_eq!(nan.to_i64_vec(), vec![1, 0]);
    let not = eval1(
        Op::Unary(UnaryOp::Not),
        &[&Tensor::from_vec(vec![2], vec![true, false])],
    );
    assert_eq!(not.to_i64_vec(), vec![0, 1]);
    assert_eq!(
        eval1(Op::Unary(UnaryOp::Neg), &[&i64v(&[3, -4])]).to_i64_vec(),
        vec![-3, 4]
    );
    assert_eq!(
        eval1(Op::Unary(UnaryOp::Abs), &[&i64v(&[3, -4])]).to_i64_vec(),
        vec![3, 4]
    );
    assert!(matches!(
        eval_err(Op::Unary(UnaryOp::Exp), &[&i64v(&[1])]),
        EvalError::UnsupportedDType { .. }
    ));
    assert!(matches!(
        eval_err(Op::Unary(UnaryOp::Not), &[&x]),
        EvalError::UnsupportedDType { .. }
    ));
}

#[test]
fn erf_is_precise() {
    // Reference values (mpmath).
    let cases = [
        (0.0, 0.0),
        (0.1, 0.1124629160182849),
        (0.5, 0.5204998778130465),
        (1.0, 0.8427007929497149),
        (2.0, 0.9953222650189527),
        (3.5, 0.9999992569016276),
        (-1.5, -0.9661051464753108),
    ];
    for (x, e) in cases {
        assert!((erf(x) - e).abs() <= 2e-16, "erf({x}) = {} != {e}", erf(x));
    }
    let t = eval1(Op::Unary(UnaryOp::Erf), &[&f32t(&[2], &[0.5, -1.5])]);
    assert_eq!(
        t.to_f32_vec(),
        vec![0.5204998778130465f64 as f32, -0.9661051464753108f64 as f32]
    );
}

#[test]
fn activations_with_attributes() {
    let x = f32t(&[4], &[-2.0, -0.5, 0.0, 1.0]);
    // ThresholdedRelu keeps only values above alpha (not alpha itself); NaN becomes 0.
    let t = f32t(&[6], &[-2.0, 0.5, 1.0, 1.5, 4.0, f32::NAN]);
    let y = eval1(
        Op::Unary(UnaryOp::ThresholdedRelu { alpha: F32(1.0) }),
        &[&t],
    );
    assert_eq!(y.to_f32_vec(), vec![0.0, 0.0, 0.0, 1.5, 4.0, 0.0]);
    let y = eval1(
        Op::Unary(UnaryOp::ThresholdedRelu { alpha: F32(-1.0) }),
        &[&t],
    );
    assert_eq!(y.to_f32_vec(), vec![0.0, 0.5, 1.0, 1.5, 4.0, 0.0]);
    let t64 = Tensor::from_vec(vec![2], vec![0.75f64, 2.0]);
    let y = eval1(
        Op::Unary(UnaryOp::ThresholdedRelu { alpha: F32(1.0) }),
        &[&t64],
    );
    assert_eq!(y.to_f64_vec(), vec![0.0, 2.0]);
    let y = eval1(Op::Unary(UnaryOp::LeakyRelu { alpha: F32(0.1) }), &[&x]);
    assert_close(&y, &[4], &[-0.2, -0.05, 0.0, 1.0], 1e-7);
    let y = eval1(
        Op::Unary(UnaryOp::HardSigmoid {
            alpha: F32(0.2),
            beta: F32(0.5),
        }),
        &[&x],
    );
    assert_close(&y, &[4], &[0.1, 0.4, 0.5, 0.7], 1e-7);
    let y = eval1(Op::Unary(UnaryOp::Elu { alpha: F32(1.0) }), &[&x]);
    assert_close(
        &y,
        &[4],
        &[(-2f64).exp_m1(), (-0.5f64).exp_m1(), 0.0, 1.0],
        1e-7,
    );
    let y = eval1(
        Op::Unary(UnaryOp::Selu {
            alpha: F32(2.0),
            gamma: F32(3.0),
        }),
        &[&x],
    );
    assert_close(
        &y,
        &[4],
        &[6.0 * (-2f64).exp_m1(), 6.0 * (-0.5f64).exp_m1(), 0.0, 3.0],
        1e-6,
    );
    let y = eval1(
        Op::Unary(UnaryOp::Gelu { tanh_approx: false }),
        &[&f32t(&[2], &[1.0, -1.0])],
    );
    assert_close(&y, &[2], &[0.8413447460685429, -0.15865525393145707], 1e-7);
    let y = eval1(
        Op::Unary(UnaryOp::Gelu { tanh_approx: true }),
        &[&f32t(&[1], &[1.0])],
    );
    assert_close(&y, &[1], &[0.8411919906082768], 1e-7);
}

#[test]
fn clip_and_where() {
    let x = f32t(&[4], &[-2.0, 0.5, 3.0, f32::NAN]);
    let lo = Tensor::scalar(0.0f32);
    let hi = Tensor::scalar(1.0f32);
    let y = eval1(Op::Clip, &[&x, &lo, &hi]).to_f32_vec();
    assert_eq!(&y[..3], &[0.0, 0.5, 1.0]);
    assert!(y[3].is_nan());
    assert_eq!(
        eval1(Op::Clip, &[&x, &lo]).to_f32_vec()[2],
        3.0,
        "absent max is unbounded"
    );
    // The unary clip is the same function with the bounds as parameters.
    let unary = |min: f32, max: f32| {
        Op::Unary(UnaryOp::Clip {
            min: F32(min),
            max: F32(max),
        })
    };
    let u = eval1(unary(0.0, 1.0), &[&x]).to_f32_vec();
    assert_eq!(&u[..3], &y[..3]);
    assert!(u[3].is_nan());
    let u = eval1(unary(0.0, f32::INFINITY), &[&x]).to_f32_vec();
    assert_eq!(&u[..3], &[0.0, 0.5, 3.0]);
    let u = eval1(unary(f32::NEG_INFINITY, f32::INFINITY), &[&x]).to_f32_vec();
    assert_eq!(&u[..3], &[-2.0, 0.5, 3.0]);
    // min > max yields max (as numpy).
    let u = eval1(unary(2.0, 1.0), &[&x]).to_f32_vec();
    assert_eq!(&u[..3], &[1.0, 1.0, 1.0]);
    let xi = i64v(&[-5, 5, 50]);
    let y = eval1(
        Op::Clip,
        &[&xi, &Tensor::scalar(0i64), &Tensor::scalar(10i64)],
    );
    assert_eq!(y.to_i64_vec(), vec![0, 5, 10]);

    let c = Tensor::from_vec(vec![2, 1], vec![true, false]);
    let a = f32t(&[2], &[1.0, 2.0]);
    let b = Tensor::scalar(-1.0f32);
    let y = eval1(Op::Where, &[&c, &a, &b]);
    assert_close(&y, &[2, 2], &[1.0, 2.0, -1.0, -1.0], 0.0);
    assert!(matches!(
        eval_err(Op::Where, &[&a, &a, &a]),
        EvalError::UnsupportedDType { .. }
    ));
}

#[test]
fn cast_contract() {
    let x = f32t(&[6], &[-1.7, 2.9, f32::NAN, 1e10, -1e10, 0.0]);
    let y = eval1(Op::Cast { to: DType::I32 }, &[&x]);
    assert_eq!(
        y.to_vec::<i32>().unwrap(),
        vec![-1, 2, 0, i32::MAX, i32::MIN, 0]
    );
    let y = eval1(Op::Cast { to: DType::Bool }, &[&x]);
    assert_eq!(y.to_i64_vec(), vec![1, 1, 1, 1, 1, 0]);
    let y = eval1(Op::Cast { to: DType::U8 }, &[&i64v(&[300, -1])]);
    assert_eq!(y.to_vec::<u8>().unwrap(), vec![44, 255], "int -> int wraps");
    // 1 + 2^-11 is halfway between two f16 values: rounds to even (1.0); 1 + 3*2^-11 rounds up.
    let h = f32t(&[2], &[1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11)]);
    let y = eval1(Op::Cast { to: DType::F16 }, &[&h]);
    assert_eq!(y.dtype(), DType::F16);
    assert_eq!(y.to_f32_vec(), vec![1.0, 1.0 + 2.0 * 2f32.powi(-10)]);
    let y = eval1(
        Op::Cast { to: DType::F32 },
        &[&Tensor::from_vec(vec![2], vec![true, false])],
    );
    assert_eq!(y.to_f32_vec(), vec![1.0, 0.0]);
    let y = eval1(
        Op::Cast { to: DType::F64 },
        &[&Tensor::from_vec(vec![1], vec![u64::MAX])],
    );
    assert_eq!(y.to_f64_vec(), vec![u64::MAX as f64]);
}

#[test]
fn f16_and_f64_compute_in_their_precision() {
    let a = eval1(Op::Cast { to: DType::F16 }, &[&f32t(&[2], &[1.5, 2.25])]);
    let y = bin(BinaryOp::Add, &a, &a);
    assert_eq!(y.dtype(), DType::F16);
    assert_eq!(y.to_f32_vec(), vec![3.0, 4.5]);
    let d = Tensor::from_vec(vec![1], vec![1.0f64 + 1e-12]);
    let y = eval1(Op::Unary(UnaryOp::Sqrt), &[&d]);
    assert_eq!(y.dtype(), DType::F64);
    assert!((y.to_f64_vec()[0] - (1.0 + 5e-13)).abs() < 1e-15);
}
