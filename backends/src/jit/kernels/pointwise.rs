//! Element-wise float arithmetic on `F32` or `F32X4` values: what every unary and binary op, each
//! instruction of a `map` program and each fused activation computes, emitted in place (no
//! loads or stores). The element-wise op lowering, the fused epilogues and the convolution
//! kernels all call [`apply`] or [`activation`], so one op means the same instructions
//! everywhere.

use crate::jit::emit::Emitter;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value};
use kestrel_ir::{BinaryOp, MapInstr, Op, UnaryOp};

/// Emits `act(x)` on an `F32` or `F32X4` value: the identity for `None`, else the unary op as
/// [`apply`] emits it (an epilogue activation, which every float type supports).
pub fn activation(e: &mut Emitter, act: Option<UnaryOp>, x: Value, ty: Type) -> Value {
    match act {
        None => x,
        Some(u) => apply(e, &Op::Unary(u), &[x], ty, 0).expect("float activation is supported"),
    }
}

/// Float ops on `F32` or `F32X4` values (`ty`). Comparisons (scalar only) return I8 0/1.
pub fn apply(
    e: &mut Emitter,
    op: &Op,
    a: &[Value],
    ty: Type,
    status: i32,
) -> Result<Value, String> {
    let _ = status;
    let c = |e: &mut Emitter, v: f32| e.fconst(ty, v);
    Ok(match op {
        Op::Map(p) => {
            // Registers as SSA values; each instruction through this same function.
            let mut regs: Vec<Value> = Vec::with_capacity(p.code.len());
            for ins in &p.code {
                let v = match *ins {
                    MapInstr::Input(k) => a[k as usize],
                    MapInstr::Const(x) => c(e, x.0),
                    MapInstr::Unary(u, r) => {
                        apply(e, &Op::Unary(u), &[regs[r as usize]], ty, status)?
                    }
                    MapInstr::Binary(b, x, y) => apply(
                        e,
                        &Op::Binary(b),
                        &[regs[x as usize], regs[y as usize]],
                        ty,
                        status,
                    )?,
                };
                regs.push(v);
            }
            *regs.last().ok_or("empty map program")?
        }
        Op::Unary(u) => {
            let x = a[0];
            match u {
                UnaryOp::Relu => {
                    let z = c(e, 0.0);
                    e.raise_to(x, z)
                }
                UnaryOp::Sigmoid => e.sigmoid(x),
                UnaryOp::Tanh => e.tanh(x),
                UnaryOp::Exp => e.exp(x),
                UnaryOp::Log => e.log(x),
                UnaryOp::Sqrt => e.fb.ins().sqrt(x),
                UnaryOp::Reciprocal => {
                    let one = c(e, 1.0);
                    e.fb.ins().fdiv(one, x)
                }
                UnaryOp::Neg => e.fb.ins().fneg(x),
                UnaryOp::Abs => e.fb.ins().fabs(x),
                UnaryOp::Erf => e.erf(x),
                UnaryOp::Floor => e.floor(x),
                UnaryOp::Ceil => e.ceil(x),
                UnaryOp::Round => e.nearest(x),
                UnaryOp::Sign => {
                    let z = c(e, 0.0);
                    let one = c(e, 1.0);
                    let m1 = c(e, -1.0);
                    let gt = e.fcmp(FloatCC::GreaterThan, x, z);
                    let lt = e.fcmp(FloatCC::LessThan, x, z);
                    let r = e.sel(gt, one, z);
                    let r = e.sel(lt, m1, r);
                    // NaN stays NaN.
                    let nan = e.fcmp(FloatCC::Unordered, x, x);
                    e.sel(nan, x, r)
                }
                UnaryOp::HardSwish => {
                    let k6 = c(e, 1.0 / 6.0);
                    let h = c(e, 0.5);
                    let t = e.fma(x, k6, h);
                    let z = c(e, 0.0);
                    let one = c(e, 1.0);
                    let t = e.raise_to(t, z);
                    let t = e.lower_to(t, one);
                    e.fb.ins().fmul(x, t)
                }
                UnaryOp::Softplus => softplus(e, x, ty),
                UnaryOp::Softsign => {
                    let one = c(e, 1.0);
                    let ax = e.fb.ins().fabs(x);
                    let d = e.fb.ins().fadd(one, ax);
                    e.fb.ins().fdiv(x, d)
                }
                UnaryOp::Mish => {
                    let sp = softplus(e, x, ty);
                    let t = e.tanh(sp);
                    e.fb.ins().fmul(x, t)
                }
                UnaryOp::IsNaN => e.fcmp(FloatCC::Unordered, x, x),
                UnaryOp::Clip { min, max } => {
                    // The bounds in order; an infinite one is no bound (as a Clip without it).
                    let mut v = x;
                    if min.0 != f32::NEG_INFINITY {
                        let lo = c(e, min.0);
                        v = e.raise_to(v, lo);
                    }
                    if max.0 != f32::INFINITY {
                        let hi = c(e, max.0);
                        v = e.lower_to(v, hi);
                    }
                    v
                }
                UnaryOp::HardSigmoid { alpha, beta } => {
                    let al = c(e, alpha.0);
                    let be = c(e, beta.0);
                    let t = e.fma(x, al, be);
                    let z = c(e, 0.0);
                    let one = c(e, 1.0);
                    let t = e.raise_to(t, z);
                    e.lower_to(t, one)
                }
                UnaryOp::LeakyRelu { alpha } => {
                    let al = c(e, alpha.0);
                    let z = c(e, 0.0);
                    let neg = e.fcmp(FloatCC::LessThan, x, z);
                    let m = e.fb.ins().fmul(x, al);
                    e.sel(neg, m, x)
                }
                UnaryOp::Elu { alpha } | UnaryOp::Selu { alpha, .. } => {
                    let al = c(e, alpha.0);
                    let ex = e.exp(x);
                    let one = c(e, 1.0);
                    let em1 = e.fb.ins().fsub(ex, one);
                    let neg = e.fb.ins().fmul(em1, al);
                    let z = c(e, 0.0);
                    let r = if let UnaryOp::Selu { .. } = u {
                        let p = e.fcmp(FloatCC::GreaterThan, x, z);
                        e.sel(p, x, neg)
                    } else {
                        let p = e.fcmp(FloatCC::GreaterThanOrEqual, x, z);
                        e.sel(p, x, neg)
                    };
                    // NaN in, NaN out.
                    let nan = e.fcmp(FloatCC::Unordered, x, x);
                    let r = e.sel(nan, x, r);
                    if let UnaryOp::Selu { gamma, .. } = u {
                        let g = c(e, gamma.0);
                        e.fb.ins().fmul(r, g)
                    } else {
                        r
                    }
                }
                UnaryOp::Gelu { tanh_approx } => {
                    let h = c(e, 0.5);
                    let hx = e.fb.ins().fmul(x, h);
                    let one = c(e, 1.0);
                    let t = if *tanh_approx {
                        // tanh(sqrt(2/pi) (x + 0.044715 x^3))
                        let k = c(e, 0.044715);
                        let x2 = e.fb.ins().fmul(x, x);
                        let inner = e.fma(x2, k, one);
                        let inner = e.fb.ins().fmul(inner, x);
                        let s = c(e, (2.0f64 / std::f64::consts::PI).sqrt() as f32);
                        let z = e.fb.ins().fmul(inner, s);
                        e.tanh(z)
                    } else {
                        let s = c(e, std::f32::consts::FRAC_1_SQRT_2);
                        let z = e.fb.ins().fmul(x, s);
                        e.erf(z)
                    };
                    let t = e.fb.ins().fadd(one, t);
                    e.fb.ins().fmul(hx, t)
                }
                UnaryOp::Silu => {
                    let s = e.sigmoid(x);
                    e.fb.ins().fmul(x, s)
                }
                UnaryOp::ThresholdedRelu { alpha } => {
                    // Unordered (NaN) is not greater: 0.
                    let al = c(e, alpha.0);
                    let z = c(e, 0.0);
                    let above = e.fcmp(FloatCC::GreaterThan, x, al);
                    e.sel(above, x, z)
                }
                _ => return Err(format!("{} on f32", u.name())),
            }
        }
        Op::Binary(b) => {
            let (x, y) = (a[0], a[1]);
            match b {
                BinaryOp::Add => e.fb.ins().fadd(x, y),
                BinaryOp::Sub => e.fb.ins().fsub(x, y),
                BinaryOp::Mul => e.fb.ins().fmul(x, y),
                BinaryOp::Div => e.fb.ins().fdiv(x, y),
                BinaryOp::Max => e.fb.ins().fmax(x, y),
                BinaryOp::Min => e.fb.ins().fmin(x, y),
                BinaryOp::PRelu => {
                    let z = c(e, 0.0);
                    let neg = e.fcmp(FloatCC::LessThan, x, z);
                    let m = e.fb.ins().fmul(x, y);
                    e.sel(neg, m, x)
                }
                BinaryOp::Pow => pow(e, x, y, ty),
                BinaryOp::Equal => e.fcmp(FloatCC::Equal, x, y),
                BinaryOp::Less => e.fcmp(FloatCC::LessThan, x, y),
                BinaryOp::LessOrEqual => e.fcmp(FloatCC::LessThanOrEqual, x, y),
                BinaryOp::Greater => e.fcmp(FloatCC::GreaterThan, x, y),
                BinaryOp::GreaterOrEqual => e.fcmp(FloatCC::GreaterThanOrEqual, x, y),
                _ => return Err(format!("{} on f32", b.name())),
            }
        }
        Op::Clip => {
            let mut x = a[0];
            if a.len() > 1 {
                x = e.raise_to(x, a[1]);
            }
            if a.len() > 2 {
                x = e.lower_to(x, a[2]);
            }
            x
        }
        _ => return Err(format!("{} element-wise", op.name())),
    })
}

/// `ln(1 + e^x)` as `max(x, 0) + ln(1 + e^-|x|)` (no overflow).
fn softplus(e: &mut Emitter, x: Value, ty: Type) -> Value {
    let z = e.fconst(ty, 0.0);
    let one = e.fconst(ty, 1.0);
    let ax = e.fb.ins().fabs(x);
    let nax = e.fb.ins().fneg(ax);
    let ex = e.exp(nax);
    let l = e.fb.ins().fadd(one, ex);
    let l = e.log(l);
    let m = e.fb.ins().fmax(x, z);
    e.fb.ins().fadd(m, l)
}

/// `x ^ y` for f32: `exp(y ln|x|)`, negated for negative `x` with odd integer `y`, NaN for
/// negative `x` with non-integer `y`; `y == 0` gives 1, small integer exponents are exact products.
fn pow(e: &mut Emitter, x: Value, y: Value, ty: Type) -> Value {
    let z = e.fconst(ty, 0.0);
    let one = e.fconst(ty, 1.0);
    let two = e.fconst(ty, 2.0);
    let ax = e.fb.ins().fabs(x);
    let l = e.log(ax);
    let yl = e.fb.ins().fmul(y, l);
    let r = e.exp(yl);
    let yr = e.nearest(y);
    let is_int = e.fcmp(FloatCC::Equal, yr, y);
    let halfc = e.fconst(ty, 0.5);
    let half = e.fb.ins().fmul(y, halfc);
    let hr = e.nearest(half);
    let is_even = e.fcmp(FloatCC::Equal, hr, half);
    let neg = e.fcmp(FloatCC::LessThan, x, z);
    let nr = e.fb.ins().fneg(r);
    let odd = e.fb.ins().bxor(is_int, is_even); // int and not even
    let signed = e.sel(odd, nr, r);
    let nan = e.fconst(ty, f32::NAN);
    let neg_res = e.sel(is_int, signed, nan);
    let r = e.sel(neg, neg_res, r);
    // Exact special cases: y == 2 -> x*x, y == 1 -> x, y == 0 -> 1.
    let sq = e.fb.ins().fmul(x, x);
    let y2 = e.fcmp(FloatCC::Equal, y, two);
    let r = e.sel(y2, sq, r);
    let y1 = e.fcmp(FloatCC::Equal, y, one);
    let r = e.sel(y1, x, r);
    let y0 = e.fcmp(FloatCC::Equal, y, z);
    e.sel(y0, one, r)
}
