//! Gradients of Gemm and MatMul, written as matrix products with transposes.

use super::Grads;
use crate::autodiff::build::Builder;
use crate::autodiff::AutodiffError;
use kestrel_ir::{GemmAttrs, Node, Op, ValueId};

/// `Y = α·op(A)·op(B) + β·C`: `dA = α·dY·op(B)ᵀ`, `dB = α·op(A)ᵀ·dY`, `dC = β·dY` reduced to
/// C's extents, as plain 2-D matmuls of explicit transposes (no transpose flags on run-time
/// operands, which code generators handle less well). A differentiated operand is never read
/// transposed: the training graph makes the transpose of a run-time gemm operand an explicit
/// node (whose own rule transposes its gradient back). Fused epilogues and integer Gemms have no
/// rule.
pub(crate) fn gemm(
    b: &mut Builder,
    a: &GemmAttrs,
    n: &Node,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads, AutodiffError> {
    if !a.epilogue.is_none() || a.integer.is_some() {
        return Err(b.unsupported("gemm with a fused epilogue or integer operands"));
    }
    if (wants[0] && a.trans_a) || (wants[1] && a.trans_b) {
        return Err(b.unsupported("gemm reading a differentiated operand transposed"));
    }
    let (ma, mb) = (n.inputs[0], n.inputs[1]);
    let alpha = a.alpha.0 as f64;
    let mut out: Grads = vec![None; n.inputs.len()];
    if wants[0] {
        let obt = if a.trans_b {
            mb
        } else {
            b.transpose(mb, &[1, 0])?
        };
        let d = b.op(Op::MatMul, &[dy, obt])?;
        out[0] = Some(b.scale(d, alpha)?);
    }
    if wants[1] {
        let oat = if a.trans_a {
            ma
        } else {
            b.transpose(ma, &[1, 0])?
        };
        let d = b.op(Op::MatMul, &[oat, dy])?;
        out[1] = Some(b.scale(d, alpha)?);
    }
    if n.inputs.len() > 2 && wants[2] {
        let c = n.inputs[2];
        let scaled = b.scale(dy, a.beta.0 as f64)?;
        let target = b.dims(c)?;
        out[2] = Some(b.unbroadcast(scaled, &target)?);
    }
    Ok(out)
}

/// `Y = A @ B` (both of rank >= 2, batch axes broadcast): `dA = dY @ Bᵀ`, `dB = Aᵀ @ dY`,
/// transposing the last two axes, each reduced to its operand's extents.
pub(crate) fn matmul(
    b: &mut Builder,
    n: &Node,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads, AutodiffError> {
    let (ma, mb) = (n.inputs[0], n.inputs[1]);
    let (da_dims, db_dims) = (b.dims(ma)?, b.dims(mb)?);
    if da_dims.len() < 2 || db_dims.len() < 2 {
        return Err(b.unsupported("matmul with a 1-D operand"));
    }
    let swap_last = |r: usize| {
        let mut p: Vec<usize> = (0..r).collect();
        p.swap(r - 2, r - 1);
        p
    };
    let mut out: Grads = vec![None, None];
    if wants[0] {
        let bt = b.transpose(mb, &swap_last(db_dims.len()))?;
        let d = b.op(Op::MatMul, &[dy, bt])?;
        out[0] = Some(b.unbroadcast(d, &da_dims)?);
    }
    if wants[1] {
        let at = b.transpose(ma, &swap_last(da_dims.len()))?;
        let d = b.op(Op::MatMul, &[at, dy])?;
        out[1] = Some(b.unbroadcast(d, &db_dims)?);
    }
    Ok(out)
}
