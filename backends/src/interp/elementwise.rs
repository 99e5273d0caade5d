//! Element-wise ops: unary functions (the parameterised activations among them), binary
//! functions with numpy broadcasting, Clip with run-time bounds, Where and Cast.

use super::*;
use kestrel_ir::{BinaryOp, UnaryOp};

/// The error function, accurate to f64 rounding (the C library's `erf`, via `libm`).
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

/// `ln(1 + e^x)` without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// `1 / (1 + e^-x)`, without overflow.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `x < lo ? lo : x`, then `> hi ? hi : _`: the clip of [`UnaryOp::Clip`] and `Op::Clip`.
fn clip_f64(x: f64, lo: f64, hi: f64) -> f64 {
    let mut y = x;
    if y < lo {
        y = lo;
    }
    if y > hi {
        y = hi;
    }
    y
}

/// A unary function on a float value (evaluated in f64, see the module docs of `interp`).
/// `round` rounds an intermediate result to the element type, for the ops defined as a
/// composition of ops (SiLU multiplies by the sigmoid as `sigmoid` returns it).
pub(crate) fn unary_float(op: UnaryOp, x: f64, round: impl Fn(f64) -> f64) -> f64 {
    match op {
        UnaryOp::Relu => {
            if x < 0.0 {
                0.0
            } else {
                x
            }
        }
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Erf => erf(x),
        UnaryOp::Floor => x.floor(),
        UnaryOp::Ceil => x.ceil(),
        UnaryOp::Round => x.round_ties_even(),
        UnaryOp::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x // 0, -0 and NaN map to themselves
            }
        }
        UnaryOp::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        UnaryOp::Softplus => softplus(x),
        UnaryOp::Softsign => x / (1.0 + x.abs()),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Tan => x.tan(),
        UnaryOp::Asin => x.asin(),
        UnaryOp::Acos => x.acos(),
        UnaryOp::Atan => x.atan(),
        UnaryOp::Sinh => x.sinh(),
        UnaryOp::Cosh => x.cosh(),
        UnaryOp::Asinh => x.asinh(),
        UnaryOp::Acosh => x.acosh(),
        UnaryOp::Atanh => x.atanh(),
        UnaryOp::Mish => x * softplus(x).tanh(),
        UnaryOp::Clip { min, max } => clip_f64(x, min.0 as f64, max.0 as f64),
        UnaryOp::HardSigmoid { alpha, beta } => {
            (alpha.0 as f64 * x + beta.0 as f64).clamp(0.0, 1.0)
        }
        UnaryOp::LeakyRelu { alpha } => {
            if x >= 0.0 {
                x
            } else {
                alpha.0 as f64 * x
            }
        }
        UnaryOp::Elu { alpha } => {
            if x >= 0.0 {
                x
            } else {
                alpha.0 as f64 * x.exp_m1()
            }
        }
        UnaryOp::Selu { alpha, gamma } => {
            gamma.0 as f64
                * if x > 0.0 {
                    x
                } else {
                    alpha.0 as f64 * x.exp_m1()
                }
        }
        UnaryOp::Gelu { tanh_approx: false } => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        UnaryOp::Gelu { tanh_approx: true } => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
        }
        UnaryOp::Silu => x * round(sigmoid(x)),
        UnaryOp::ThresholdedRelu { alpha } => {
            if x > alpha.0 as f64 {
                x
            } else {
                0.0
            }
        }
        // Not and IsNaN are handled by the caller.
        UnaryOp::Not | UnaryOp::IsNaN => f64::NAN,
    }
}

/// `op` on one f32 value exactly as the op computes it on an f32 tensor.
pub(crate) fn unary_f32(op: UnaryOp, x: f32) -> f32 {
    unary_float(op, x as f64, round_f32) as f32
}

/// Rounds to f32 (the element type of the f32, f16 and bf16 classes' intermediate results).
pub(crate) fn round_f32(x: f64) -> f64 {
    x as f32 as f64
}

/// Maps every element of a float tensor through `f` (computed in f64), keeping the dtype.
pub(crate) fn map_float(
    op: &'static str,
    x: &Tensor,
    f: impl Fn(f64) -> f64 + Sync,
) -> Res<Tensor> {
    match class_of(x.dtype()) {
        Class::F32 => {
            let v: Vec<f32> = f32_values(x)
                .into_iter()
                .map(|a| f(a as f64) as f32)
                .collect();
            tensor_from_f32(x.dtype(), x.dims().to_vec(), &v)
        }
        Class::F64 => {
            let v: Vec<f64> = x.to_f64_vec().into_iter().map(f).collect();
            tensor_from_f64(DType::F64, x.dims().to_vec(), &v)
        }
        _ => Err(unsupported_dtype(op, x.dtype())),
    }
}

pub(crate) fn unary(op: UnaryOp, x: &Tensor) -> Res<Tensor> {
    let name = op.name();
    let dims = x.dims().to_vec();
    match (op, class_of(x.dtype())) {
        (UnaryOp::Not, Class::Bool) => {
            let v: Vec<bool> = bool_vec(x).into_iter().map(|b| !b).collect();
            tensor_from_bool(dims, &v)
        }
        (UnaryOp::Not, _) => Err(unsupported_dtype(name, x.dtype())),
        (UnaryOp::IsNaN, Class::F32 | Class::F64) => {
            let v: Vec<bool> = x.to_f64_vec().into_iter().map(f64::is_nan).collect();
            tensor_from_bool(dims, &v)
        }
        (UnaryOp::IsNaN, _) => Err(unsupported_dtype(name, x.dtype())),
        (_, Class::F32) => map_float(name, x, |a| unary_float(op, a, round_f32)),
        (_, Class::F64) => map_float(name, x, |a| unary_float(op, a, |v| v)),
        (UnaryOp::Relu | UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign, Class::Int) => {
            let f = |a: i64| match op {
                UnaryOp::Relu => a.max(0),
                UnaryOp::Neg => a.wrapping_neg(),
                UnaryOp::Abs => a.wrapping_abs(),
                _ => a.signum(),
            };
            let v: Vec<i64> = x.to_i64_vec().into_iter().map(f).collect();
            tensor_from_i64(x.dtype(), dims, &v)
        }
        _ => Err(unsupported_dtype(name, x.dtype())),
    }
}

/// Applies `f` to `a` and `b` broadcast together (numpy rules); returns the output shape and values.
pub(crate) fn zip_broadcast<A: Copy, B: Copy, R>(
    op: &'static str,
    a: &[A],
    a_dims: &[usize],
    b: &[B],
    b_dims: &[usize],
    out_dtype: DType,
    mut f: impl FnMut(A, B) -> R,
) -> Res<(Vec<usize>, Vec<R>)> {
    let out_dims = broadcast_shapes(op, a_dims, b_dims)?;
    let n = check_alloc(op, out_dtype, &out_dims)?;
    let values: Vec<R> = if a_dims == b_dims {
        a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
    } else if b.len() == 1 && out_dims.len() == a_dims.len() {
        let y = b[0];
        a.iter().map(|&x| f(x, y)).collect()
    } else if a.len() == 1 && out_dims.len() == b_dims.len() {
        let x = a[0];
        b.iter().map(|&y| f(x, y)).collect()
    } else {
        let sa = broadcast_strides(a_dims, &out_dims);
        let sb = broadcast_strides(b_dims, &out_dims);
        StridedIter::new(&out_dims, &sa)
            .zip(StridedIter::new(&out_dims, &sb))
            .take(n)
            .map(|(i, j)| f(a[i], b[j]))
            .collect()
    };
    Ok((out_dims, values))
}

/// A binary function on float values; `None` for comparisons/logic handled elsewhere.
pub(crate) fn binary_float(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Mod => {
            // Sign follows the divisor (numpy `mod` on floats).
            let r = a % b;
            if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
                r + b
            } else {
                r
            }
        }
        BinaryOp::Fmod => a % b,
        BinaryOp::Max => {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.max(b)
            }
        }
        BinaryOp::Min => {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.min(b)
            }
        }
        BinaryOp::PRelu => {
            if a >= 0.0 {
                a
            } else {
                b * a
            }
        }
        _ => f64::NAN,
    }
}

fn compare<T: PartialOrd>(op: BinaryOp, a: T, b: T) -> bool {
    match op {
        BinaryOp::Equal => a == b,
        BinaryOp::Less => a < b,
        BinaryOp::LessOrEqual => a <= b,
        BinaryOp::Greater => a > b,
        _ => a >= b,
    }
}

fn is_comparison(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::Equal
            | BinaryOp::Less
            | BinaryOp::LessOrEqual
            | BinaryOp::Greater
            | BinaryOp::GreaterOrEqual
    )
}

/// Integer power with wrapping; negative exponents truncate `1 / a^-e` toward zero.
fn int_pow(a: i64, e: i64) -> i64 {
    if e < 0 {
        return match a {
            1 => 1,
            -1 => {
                if e % 2 == 0 {
                    1
                } else {
                    -1
                }
            }
            _ => 0, // includes 0^negative, which C/onnxruntime leave undefined
        };
    }
    let (mut base, mut exp, mut acc) = (a, e as u64, 1i64);
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        exp >>= 1;
    }
    acc
}

pub(crate) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Res<Tensor> {
    let name = op.name();
    if op == BinaryOp::Pow {
        return pow(a, b);
    }
    require_same_dtype(name, a, b)?;
    let (ad, bd) = (a.dims(), b.dims());
    let dtype = a.dtype();
    let logic = matches!(op, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor);
    match class_of(dtype) {
        Class::Bool => {
            let (x, y) = (bool_vec(a), bool_vec(b));
            let f = |p: bool, q: bool| match op {
                BinaryOp::And => Some(p & q),
                BinaryOp::Or => Some(p | q),
                BinaryOp::Xor => Some(p ^ q),
                o if is_comparison(o) => Some(compare(o, p, q)),
                _ => None,
            };
            let (dims, v) = zip_broadcast(name, &x, ad, &y, bd, DType::Bool, f)?;
            let v: Option<Vec<bool>> = v.into_iter().collect();
            match v {
                Some(v) => tensor_from_bool(dims, &v),
                None => Err(unsupported_dtype(name, dtype)),
            }
        }
        _ if logic => Err(unsupported_dtype(name, dtype)),
        Class::F32 | Class::F64 => {
            let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
            if is_comparison(op) {
                let (dims, v) =
                    zip_broadcast(name, &x, ad, &y, bd, DType::Bool, |p, q| compare(op, p, q))?;
                return tensor_from_bool(dims, &v);
            }
            let (dims, v) =
                zip_broadcast(name, &x, ad, &y, bd, dtype, |p, q| binary_float(op, p, q))?;
            tensor_from_f64(dtype, dims, &v)
        }
        Class::Int => {
            let (x, y) = (a.to_i64_vec(), b.to_i64_vec());
            if is_comparison(op) {
                let (dims, v) =
                    zip_broadcast(name, &x, ad, &y, bd, DType::Bool, |p, q| compare(op, p, q))?;
                return tensor_from_bool(dims, &v);
            }
            let mut div_by_zero = false;
            let f = |p: i64, q: i64| -> i64 {
                match op {
                    BinaryOp::Add => p.wrapping_add(q),
                    BinaryOp::Sub => p.wrapping_sub(q),
                    BinaryOp::Mul => p.wrapping_mul(q),
                    BinaryOp::Max => p.max(q),
                    BinaryOp::Min => p.min(q),
                    BinaryOp::PRelu => {
                        if p >= 0 {
                            p
                        } else {
                            q.wrapping_mul(p)
                        }
                    }
                    BinaryOp::Div | BinaryOp::Mod | BinaryOp::Fmod if q == 0 => {
                        div_by_zero = true;
                        0
                    }
                    BinaryOp::Div => p.wrapping_div(q),
                    BinaryOp::Fmod => p.wrapping_rem(q),
                    BinaryOp::Mod => {
                        let r = p.wrapping_rem(q);
                        if r != 0 && ((r < 0) != (q < 0)) {
                            r.wrapping_add(q)
                        } else {
                            r
                        }
                    }
                    _ => 0,
                }
            };
            let (dims, v) = zip_broadcast(name, &x, ad, &y, bd, dtype, f)?;
            if div_by_zero {
                return Err(EvalError::DivisionByZero { op: name });
            }
            tensor_from_i64(dtype, dims, &v)
        }
    }
}

/// Pow: the output has the base's dtype; the exponent may be any numeric dtype.
fn pow(a: &Tensor, b: &Tensor) -> Res<Tensor> {
    let name = BinaryOp::Pow.name();
    let (ad, bd) = (a.dims(), b.dims());
    match (class_of(a.dtype()), class_of(b.dtype())) {
        (Class::Bool, _) | (_, Class::Bool) => Err(unsupported_dtype(name, DType::Bool)),
        (Class::F32 | Class::F64, _) => {
            let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
            let (dims, v) = zip_broadcast(name, &x, ad, &y, bd, a.dtype(), f64::powf)?;
            tensor_from_f64(a.dtype(), dims, &v)
        }
        (Class::Int, Class::Int) => {
            let (x, y) = (a.to_i64_vec(), b.to_i64_vec());
            let (dims, v) = zip_broadcast(name, &x, ad, &y, bd, a.dtype(), int_pow)?;
            tensor_from_i64(a.dtype(), dims, &v)
        }
        (Class::Int, _) => {
            // Integer base, float exponent: computed in f64, truncated toward zero.
            let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
            let (dims, v) = zip_broadcast(name, &x, ad, &y, bd, a.dtype(), f64::powf)?;
            let v: Vec<i64> = v.into_iter().map(|p| p as i64).collect();
            tensor_from_i64(a.dtype(), dims, &v)
        }
    }
}

/// Clip with bounds as inputs: `min(max(x, lo), hi)` (so `lo > hi` yields `hi`, like numpy); NaN
/// stays NaN.
pub(crate) fn clip(x: &Tensor, lo: Option<&Tensor>, hi: Option<&Tensor>) -> Res<Tensor> {
    let name = "clip";
    for b in [lo, hi].into_iter().flatten() {
        require_same_dtype(name, x, b)?;
        if b.numel() != 1 {
            return Err(invalid(
                name,
                format!("bounds must be scalars, got shape {:?}", b.dims()),
            ));
        }
    }
    match class_of(x.dtype()) {
        Class::F32 | Class::F64 => {
            let lo = lo.map_or(f64::NEG_INFINITY, |t| t.get_f64(0));
            let hi = hi.map_or(f64::INFINITY, |t| t.get_f64(0));
            map_float(name, x, move |v| clip_f64(v, lo, hi))
        }
        Class::Int => {
            let lo = lo.map_or(i64::MIN, |t| t.get_i64(0));
            let hi = hi.map_or(i64::MAX, |t| t.get_i64(0));
            let v: Vec<i64> = x
                .to_i64_vec()
                .into_iter()
                .map(|v| v.max(lo).min(hi))
                .collect();
            tensor_from_i64(x.dtype(), x.dims().to_vec(), &v)
        }
        Class::Bool => Err(unsupported_dtype(name, x.dtype())),
    }
}

/// Where: `cond ? a : b`, broadcasting all three; `a` and `b` share any dtype.
pub(crate) fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Res<Tensor> {
    let name = "where";
    if cond.dtype() != DType::Bool {
        return Err(EvalError::UnsupportedDType {
            op: name,
            dtype: cond.dtype(),
            detail: " for the condition (must be bool)".into(),
        });
    }
    require_same_dtype(name, a, b)?;
    let ab = broadcast_shapes(name, a.dims(), b.dims())?;
    let out_dims = broadcast_shapes(name, cond.dims(), &ab)?;
    let n = check_alloc(name, a.dtype(), &out_dims)?;
    let c = cond.bytes();
    let es = a.dtype().size();
    let (da, db) = (a.bytes(), b.bytes());
    let mut out = Vec::with_capacity(n * es);
    let ic = StridedIter::new(&out_dims, &broadcast_strides(cond.dims(), &out_dims));
    let ia = StridedIter::new(&out_dims, &broadcast_strides(a.dims(), &out_dims));
    let ib = StridedIter::new(&out_dims, &broadcast_strides(b.dims(), &out_dims));
    for ((k, i), j) in ic.zip(ia).zip(ib) {
        if c[k] != 0 {
            out.extend_from_slice(&da[i * es..(i + 1) * es]);
        } else {
            out.extend_from_slice(&db[j * es..(j + 1) * es]);
        }
    }
    tensor_from_bytes(a.dtype(), out_dims, out)
}

/// Cast to `to`.
///
/// Contract: float -> integer truncates toward zero and saturates to the target range, NaN -> 0
/// (Rust `as`, matching onnxruntime on x86 for in-range values and numpy's saturating
/// `astype` behaviour for out-of-range ones); integer -> integer wraps (two's complement);
/// anything -> bool is `x != 0` (NaN -> true); bool -> number is 0/1; to f16/bf16 rounds to
/// nearest even (f64 sources round via f32); integer -> float rounds to nearest.
pub(crate) fn cast(x: &Tensor, to: DType) -> Res<Tensor> {
    let dims = x.dims().to_vec();
    if x.dtype() == to {
        return Ok(x.clone());
    }
    let mut out = Vec::with_capacity(x.numel() * to.size());
    match class_of(x.dtype()) {
        Class::F32 | Class::F64 => {
            for v in x.to_f64_vec() {
                push_f64(to, v, &mut out);
            }
        }
        Class::Bool => {
            for v in bool_vec(x) {
                push_i64(to, v as i64, &mut out);
            }
        }
        Class::Int => {
            if x.dtype() == DType::U64 && (to.is_float()) {
                // u64 values above 2^63 must not be read as negative.
                for v in x.to_vec::<u64>().unwrap_or_default() {
                    push_f64(to, v as f64, &mut out);
                }
            } else {
                for v in x.to_i64_vec() {
                    push_i64(to, v, &mut out);
                }
            }
        }
    }
    tensor_from_bytes(to, dims, out)
}
