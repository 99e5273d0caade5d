//! Gradients of data-movement ops: the gradient moves back the way the data came.

use super::Grads;
use crate::autodiff::build::Builder;
use crate::autodiff::AutodiffError;
use kestrel_ir::{norm_axis, slice_bounds, Node, Op, ScatterReduction, ValueId};

/// Flatten, Reshape, Squeeze, Unsqueeze, Identity: `dx = reshape(dy, x's extents)`; the shape
/// and axes inputs have no gradient.
pub(crate) fn reshape_like(b: &mut Builder, n: &Node, dy: ValueId) -> Result<Grads, AutodiffError> {
    let x = n.inputs[0];
    let dims = b.dims(x)?;
    let mut out: Grads = vec![None; n.inputs.len()];
    out[0] = Some(b.reshape(dy, &dims)?);
    Ok(out)
}

/// Transpose by `perm`: `dx = transpose(dy, perm⁻¹)`.
pub(crate) fn transpose(
    b: &mut Builder,
    perm: &[usize],
    dy: ValueId,
) -> Result<Grads, AutodiffError> {
    let mut inverse = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    Ok(vec![Some(b.transpose(dy, &inverse)?)])
}

/// Concat along `axis`: input `i` gets its slice of `dy`.
pub(crate) fn concat(
    b: &mut Builder,
    axis: i64,
    n: &Node,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads, AutodiffError> {
    let yd = b.dims(dy)?;
    let axis = norm_axis(axis, yd.len()).map_err(|e| b.unsupported(e))?;
    let mut out: Grads = vec![None; n.inputs.len()];
    let mut offset = 0;
    for (i, &x) in n.inputs.iter().enumerate() {
        let len = b.dims(x)?[axis];
        if wants[i] {
            out[i] = Some(if len == yd[axis] {
                dy
            } else {
                b.slice(dy, axis, offset, offset + len)?
            });
        }
        offset += len;
    }
    Ok(out)
}

fn const_i64s(b: &Builder, v: ValueId, what: &str) -> Result<Vec<i64>, AutodiffError> {
    b.g.const_data(v)
        .map(|t| t.to_i64_vec())
        .ok_or_else(|| b.unsupported(format!("slice {what} must be constants")))
}

/// Slice with constant starts, ends, axes and steps: `dy` scattered back, one sliced axis at
/// a time, into zeros at the positions each output element came from.
pub(crate) fn slice(b: &mut Builder, n: &Node, dy: ValueId) -> Result<Grads, AutodiffError> {
    let xd = b.dims(n.inputs[0])?;
    let starts = const_i64s(b, n.inputs[1], "starts")?;
    let ends = const_i64s(b, n.inputs[2], "ends")?;
    let axes = match n.inputs.get(3) {
        Some(&a) => const_i64s(b, a, "axes")?,
        None => (0..starts.len() as i64).collect(),
    };
    let steps = match n.inputs.get(4) {
        Some(&s) => const_i64s(b, s, "steps")?,
        None => vec![1; starts.len()],
    };
    let mut cur = dy;
    for i in 0..starts.len() {
        let axis = norm_axis(axes[i], xd.len()).map_err(|e| b.unsupported(e))?;
        let (start, _) = slice_bounds(xd[axis], starts[i], ends[i], steps[i]);
        let cd = b.dims(cur)?;
        if cd[axis] == xd[axis] && steps[i] == 1 {
            continue;
        }
        let inner: usize = cd[axis + 1..].iter().product();
        let total: usize = cd.iter().product();
        let idx: Vec<i64> = (0..total)
            .map(|f| start + ((f / inner) % cd[axis]) as i64 * steps[i])
            .collect();
        let idx = b.i64s(cd.clone(), idx);
        let mut zd = cd.clone();
        zd[axis] = xd[axis];
        let zn = zd.iter().product();
        let zeros = b.floats(zd, vec![0.0; zn]);
        cur = b.op(
            Op::ScatterElements {
                axis: axis as i64,
                reduction: ScatterReduction::None,
            },
            &[zeros, idx, cur],
        )?;
    }
    let mut out: Grads = vec![None; n.inputs.len()];
    out[0] = Some(cur);
    Ok(out)
}

/// Gather (numpy `take` along `axis`): `dy` summed into the taken positions by
/// `scatter_elements(reduction=add)`, the indices broadcast over the other axes (the indices
/// may be computed at run time).
pub(crate) fn gather(
    b: &mut Builder,
    axis: i64,
    n: &Node,
    dy: ValueId,
) -> Result<Grads, AutodiffError> {
    let (x, indices) = (n.inputs[0], n.inputs[1]);
    let xd = b.dims(x)?;
    let axis = norm_axis(axis, xd.len()).map_err(|e| b.unsupported(e))?;
    let count: usize = b.dims(indices)?.iter().product();
    let pre: usize = xd[..axis].iter().product();
    let post: usize = xd[axis + 1..].iter().product();
    let dyr = b.reshape(dy, &[pre, count, post])?;
    let idx = b.reshape(indices, &[1, count, 1])?;
    let shape = b.i64s(vec![3], vec![pre as i64, count as i64, post as i64]);
    let idx = b.op(Op::Expand, &[idx, shape])?;
    let zn = pre * xd[axis] * post;
    let zeros = b.floats(vec![pre, xd[axis], post], vec![0.0; zn]);
    let dx = b.op(
        Op::ScatterElements {
            axis: 1,
            reduction: ScatterReduction::Add,
        },
        &[zeros, idx, dyr],
    )?;
    Ok(vec![Some(b.reshape(dx, &xd)?), None])
}
