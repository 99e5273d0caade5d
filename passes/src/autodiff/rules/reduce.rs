//! Gradients of reductions.

use super::Grads;
use crate::autodiff::build::Builder;
use crate::autodiff::AutodiffError;
use kestrel_ir::{norm_axis, Node, Op, ReduceAttrs, ReduceKind, ValueId};

/// ReduceSum and ReduceMean over constant axes (all axes when absent or empty, unless
/// `noop_with_empty_axes`): `dy` (divided by the count for the mean) reshaped with the reduced
/// axes kept as 1 and expanded back to x's extents.
pub(crate) fn reduce(
    b: &mut Builder,
    a: &ReduceAttrs,
    n: &Node,
    dy: ValueId,
) -> Result<Grads, AutodiffError> {
    if !matches!(a.kind, ReduceKind::Sum | ReduceKind::Mean) {
        return Err(b.no_rule());
    }
    let x = n.inputs[0];
    let xd = b.dims(x)?;
    let axes: Vec<i64> = match n.inputs.get(1) {
        Some(&v) => {
            b.g.const_data(v)
                .map(|t| t.to_i64_vec())
                .ok_or_else(|| b.unsupported("reduction axes must be constants"))?
        }
        None => vec![],
    };
    let mut out: Grads = vec![None; n.inputs.len()];
    if axes.is_empty() && a.noop_with_empty_axes {
        out[0] = Some(dy);
        return Ok(out);
    }
    let mut reduced = vec![axes.is_empty(); xd.len()];
    for &ax in &axes {
        reduced[norm_axis(ax, xd.len()).map_err(|e| b.unsupported(e))?] = true;
    }
    let kept: Vec<usize> = xd
        .iter()
        .zip(&reduced)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect();
    let count: usize = xd
        .iter()
        .zip(&reduced)
        .filter(|(_, &r)| r)
        .map(|(&d, _)| d)
        .product();
    let d = if a.kind == ReduceKind::Mean {
        b.scale(dy, 1.0 / count as f64)?
    } else {
        dy
    };
    let d = b.reshape(d, &kept)?;
    let shape = b.i64s(vec![xd.len()], xd.iter().map(|&v| v as i64).collect());
    out[0] = Some(b.op(Op::Expand, &[d, shape])?);
    Ok(out)
}
