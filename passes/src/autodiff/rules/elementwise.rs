//! Gradients of element-wise unary and binary ops. Binary ops broadcast (numpy rules), so each
//! operand's gradient is summed over the axes it was broadcast along and reshaped back.

use super::Grads;
use crate::autodiff::build::Builder;
use crate::autodiff::AutodiffError;
use kestrel_ir::{BinaryOp, Node, Op, UnaryOp, ValueId};

/// `dx` of `y = u(x)`: relu `dy·[x > 0]` (0 at 0), sigmoid `dy·y·(1-y)`, tanh `dy·(1-y²)`,
/// neg `-dy`, exp `dy·y`, log `dy/x`, sqrt `dy/(2y)`, reciprocal `-dy·y²`, abs `dy·sign(x)`,
/// leaky relu, clip (`dy` strictly inside the bounds, else 0), hard sigmoid, hard swish, SiLU,
/// softplus `dy·σ(x)`, GELU `dy·(Φ(x) + x·φ(x))` (erf form) and the derivative of its tanh form.
pub(crate) fn unary(
    b: &mut Builder,
    u: UnaryOp,
    n: &Node,
    dy: ValueId,
) -> Result<Grads, AutodiffError> {
    let (x, y) = (n.inputs[0], n.outputs[0]);
    let dx = match u {
        UnaryOp::Relu => {
            // relu(sign(x)) is 1 where x > 0 and 0 elsewhere (also at 0 and NaN).
            let s = b.unary(UnaryOp::Sign, x)?;
            let mask = b.unary(UnaryOp::Relu, s)?;
            b.mul(dy, mask)?
        }
        UnaryOp::Sigmoid => {
            let one = b.scalar(1.0);
            let c = b.sub(one, y)?;
            let d = b.mul(y, c)?;
            b.mul(dy, d)?
        }
        UnaryOp::Tanh => {
            let one = b.scalar(1.0);
            let y2 = b.mul(y, y)?;
            let d = b.sub(one, y2)?;
            b.mul(dy, d)?
        }
        UnaryOp::Neg => b.neg(dy)?,
        UnaryOp::Exp => b.mul(dy, y)?,
        UnaryOp::Log => b.div(dy, x)?,
        UnaryOp::Sqrt => {
            let two_y = b.scale(y, 2.0)?;
            b.div(dy, two_y)?
        }
        UnaryOp::Reciprocal => {
            let y2 = b.mul(y, y)?;
            let d = b.mul(dy, y2)?;
            b.neg(d)?
        }
        UnaryOp::Abs => {
            let s = b.unary(UnaryOp::Sign, x)?;
            b.mul(dy, s)?
        }
        UnaryOp::LeakyRelu { alpha } => {
            // alpha + (1 - alpha)·[x > 0]
            let s = b.unary(UnaryOp::Sign, x)?;
            let mask = b.unary(UnaryOp::Relu, s)?;
            let slope = b.scale(mask, 1.0 - alpha.0 as f64)?;
            let a = b.scalar(alpha.0 as f64);
            let slope = b.add(slope, a)?;
            b.mul(dy, slope)?
        }
        UnaryOp::Clip { min, max } => {
            let inside = b.open_interval(x, min.0 as f64, max.0 as f64)?;
            b.mul(dy, inside)?
        }
        UnaryOp::HardSigmoid { alpha, beta } => {
            // alpha·[0 < alpha·x + beta < 1]
            let t = b.scale(x, alpha.0 as f64)?;
            let bb = b.scalar(beta.0 as f64);
            let t = b.add(t, bb)?;
            let inside = b.open_interval(t, 0.0, 1.0)?;
            let d = b.scale(inside, alpha.0 as f64)?;
            b.mul(dy, d)?
        }
        UnaryOp::HardSwish => {
            // y = x·clip(x/6 + 1/2, 0, 1): 0 below -3, 1 above 3, (2x + 3)/6 between.
            let inside = b.open_interval(x, -3.0, 3.0)?;
            let t = b.scale(x, 1.0 / 3.0)?;
            let half = b.scalar(0.5);
            let t = b.add(t, half)?;
            let mid = b.mul(inside, t)?;
            let above = b.compare(BinaryOp::Greater, x, 3.0)?;
            let d = b.add(mid, above)?;
            b.mul(dy, d)?
        }
        UnaryOp::Silu => {
            // σ·(1 + x·(1 - σ))
            let s = b.unary(UnaryOp::Sigmoid, x)?;
            let one = b.scalar(1.0);
            let c = b.sub(one, s)?;
            let t = b.mul(x, c)?;
            let t = b.add(t, one)?;
            let d = b.mul(s, t)?;
            b.mul(dy, d)?
        }
        UnaryOp::Softplus => {
            let s = b.unary(UnaryOp::Sigmoid, x)?;
            b.mul(dy, s)?
        }
        UnaryOp::Gelu { tanh_approx: false } => {
            // Φ(x) + x·φ(x), Φ(x) = (1 + erf(x/√2))/2, φ(x) = exp(-x²/2)/√(2π)
            let t = b.scale(x, std::f64::consts::FRAC_1_SQRT_2)?;
            let e = b.unary(UnaryOp::Erf, t)?;
            let one = b.scalar(1.0);
            let e = b.add(e, one)?;
            let cdf = b.scale(e, 0.5)?;
            let x2 = b.mul(x, x)?;
            let x2 = b.scale(x2, -0.5)?;
            let g = b.unary(UnaryOp::Exp, x2)?;
            let pdf = b.scale(g, 1.0 / (2.0 * std::f64::consts::PI).sqrt())?;
            let xp = b.mul(x, pdf)?;
            let d = b.add(cdf, xp)?;
            b.mul(dy, d)?
        }
        UnaryOp::Gelu { tanh_approx: true } => {
            // y = x·(1 + tanh(u))/2, u = k·(x + 0.044715·x³), k = √(2/π):
            // y' = (1 + t)/2 + x·(1 - t²)·k·(1 + 3·0.044715·x²)/2, t = tanh(u)
            let k = (2.0 / std::f64::consts::PI).sqrt();
            let x2 = b.mul(x, x)?;
            let x3 = b.mul(x2, x)?;
            let c3 = b.scale(x3, 0.044715)?;
            let inner = b.add(x, c3)?;
            let u = b.scale(inner, k)?;
            let t = b.unary(UnaryOp::Tanh, u)?;
            let one = b.scalar(1.0);
            let first = b.add(one, t)?;
            let first = b.scale(first, 0.5)?;
            let t2 = b.mul(t, t)?;
            let sech2 = b.sub(one, t2)?;
            let q = b.scale(x2, 3.0 * 0.044715)?;
            let q = b.add(one, q)?;
            let du = b.scale(q, 0.5 * k)?;
            let second = b.mul(sech2, du)?;
            let second = b.mul(x, second)?;
            let d = b.add(first, second)?;
            b.mul(dy, d)?
        }
        _ => return Err(b.no_rule()),
    };
    Ok(vec![Some(dx)])
}

/// `da`, `db` of `y = a ∘ b`: add `(dy, dy)`, sub `(dy, -dy)`, mul `(dy·b, dy·a)`,
/// div `(dy/b, -dy·y/b)`, pow `(dy·b·y/a, dy·y·ln a)` (for `a > 0`; `a = 0` gives NaN), max/min (`dy` to the selected operand, the first on ties), each
/// reduced to its operand's extents.
pub(crate) fn binary(
    b: &mut Builder,
    op: BinaryOp,
    n: &Node,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads, AutodiffError> {
    let (x1, x2, y) = (n.inputs[0], n.inputs[1], n.outputs[0]);
    let (d1, d2) = match op {
        BinaryOp::Add => (Some(dy), Some(dy)),
        BinaryOp::Sub => (Some(dy), if wants[1] { Some(b.neg(dy)?) } else { None }),
        BinaryOp::Mul => (
            if wants[0] { Some(b.mul(dy, x2)?) } else { None },
            if wants[1] { Some(b.mul(dy, x1)?) } else { None },
        ),
        BinaryOp::Div => (
            if wants[0] { Some(b.div(dy, x2)?) } else { None },
            if wants[1] {
                let t = b.mul(dy, y)?;
                let t = b.div(t, x2)?;
                Some(b.neg(t)?)
            } else {
                None
            },
        ),
        BinaryOp::Pow => (
            // d/da a^b = b·a^(b-1) = b·y/a (a ≠ 0); d/db a^b = y·ln(a) (a > 0).
            if wants[0] {
                let t = b.mul(dy, x2)?;
                let t = b.mul(t, y)?;
                Some(b.div(t, x1)?)
            } else {
                None
            },
            if wants[1] {
                let l = b.unary(UnaryOp::Log, x1)?;
                let t = b.mul(dy, y)?;
                Some(b.mul(t, l)?)
            } else {
                None
            },
        ),
        BinaryOp::Max | BinaryOp::Min => {
            // The gradient goes to the operand the result came from; ties go to the first.
            let cmp = if op == BinaryOp::Max {
                BinaryOp::GreaterOrEqual
            } else {
                BinaryOp::LessOrEqual
            };
            let first = b.binary(cmp, x1, x2)?;
            let dtype = b.dtype;
            let first = b.op(Op::Cast { to: dtype }, &[first])?;
            let d1 = b.mul(dy, first)?;
            let d2 = b.sub(dy, d1)?;
            (Some(d1), Some(d2))
        }
        _ => return Err(b.no_rule()),
    };
    let mut out = Vec::with_capacity(2);
    for (d, x, want) in [(d1, x1, wants[0]), (d2, x2, wants[1])] {
        out.push(match d {
            Some(d) if want => {
                let target = b.dims(x)?;
                Some(b.unbroadcast(d, &target)?)
            }
            _ => None,
        });
    }
    Ok(out)
}

/// `y = cond ? a : b` (broadcasting): `da = cond ? dy : 0`, `db = cond ? 0 : dy`, each reduced to
/// its operand's extents; the condition has no gradient.
pub(crate) fn where_(
    b: &mut Builder,
    n: &Node,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads, AutodiffError> {
    let (cond, x1, x2) = (n.inputs[0], n.inputs[1], n.inputs[2]);
    let zero = b.scalar(0.0);
    let mut out: Grads = vec![None; 3];
    if wants[1] {
        let d = b.op(Op::Where, &[cond, dy, zero])?;
        let target = b.dims(x1)?;
        out[1] = Some(b.unbroadcast(d, &target)?);
    }
    if wants[2] {
        let d = b.op(Op::Where, &[cond, zero, dy])?;
        let target = b.dims(x2)?;
        out[2] = Some(b.unbroadcast(d, &target)?);
    }
    Ok(out)
}
