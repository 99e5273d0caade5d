//! Gradients of Softmax and LogSoftmax along one axis.

use super::Grads;
use crate::autodiff::build::Builder;
use crate::autodiff::AutodiffError;
use kestrel_ir::{norm_axis, Node, Op, UnaryOp, ValueId};

/// `y = softmax(x)`: `dx = y·(dy - Σ_axis dy·y)`.
/// `y = log_softmax(x)`: `dx = dy - exp(y)·Σ_axis dy`.
pub(crate) fn softmax(
    b: &mut Builder,
    n: &Node,
    log: bool,
    dy: ValueId,
) -> Result<Grads, AutodiffError> {
    let y = n.outputs[0];
    let axis = match n.op {
        Op::Softmax { axis } | Op::LogSoftmax { axis } => axis,
        _ => unreachable!("softmax rule on another op"),
    };
    let rank = b.dims(y)?.len();
    let axis = norm_axis(axis, rank).map_err(|e| b.unsupported(e))?;
    let dx = if log {
        let s = b.reduce_sum(dy, &[axis], true)?;
        let p = b.unary(UnaryOp::Exp, y)?;
        let t = b.mul(p, s)?;
        b.sub(dy, t)?
    } else {
        let dyy = b.mul(dy, y)?;
        let s = b.reduce_sum(dyy, &[axis], true)?;
        let t = b.sub(dy, s)?;
        b.mul(y, t)?
    };
    Ok(vec![Some(dx)])
}
