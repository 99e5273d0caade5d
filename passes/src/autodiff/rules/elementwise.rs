//! Gradients of element-wise unary and binary ops. Binary ops broadcast (numpy rules), so each
//! operand's gradient is summed over the axes it was broadcast along and reshaped back.

use super::Grads;
use crate::autodiff::build::Builder;
use crate::autodiff::AutodiffError;
use kestrel_ir::{BinaryOp, Node, UnaryOp, ValueId};

/// `dx` of `y = u(x)`: relu `dy·[x > 0]` (0 at 0), sigmoid `dy·y·(1-y)`, tanh `dy·(1-y²)`,
/// neg `-dy`, exp `dy·y`, log `dy/x`, sqrt `dy/(2y)`, reciprocal `-dy·y²`.
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
        _ => return Err(b.no_rule()),
    };
    Ok(vec![Some(dx)])
}

/// `da`, `db` of `y = a ∘ b`: add `(dy, dy)`, sub `(dy, -dy)`, mul `(dy·b, dy·a)`,
/// div `(dy/b, -dy·y/b)`, each reduced to its operand's extents.
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
