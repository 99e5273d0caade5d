//! Gradients of data-movement ops: the gradient moves back the way the data came.

use super::Grads;
use crate::autodiff::build::Builder;
use crate::autodiff::AutodiffError;
use kestrel_ir::{Node, ValueId};

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
