//! Gradients of Gemm and MatMul, written as matrix products with transposes.

use super::Grads;
use crate::autodiff::build::Builder;
use crate::autodiff::AutodiffError;
use kestrel_ir::{GemmAttrs, Node, Op, ValueId, F32};

fn gemm_op(alpha: f32, trans_a: bool, trans_b: bool) -> Op {
    Op::Gemm(GemmAttrs {
        alpha: F32(alpha),
        beta: F32(1.0),
        trans_a,
        trans_b,
        ..Default::default()
    })
}

/// `Y = α·op(A)·op(B) + β·C`: `dA = α·dY·op(B)ᵀ` (transposed back when `trans_a`),
/// `dB = α·op(A)ᵀ·dY` (transposed back when `trans_b`), `dC = β·dY` reduced to C's extents.
/// Fused epilogues and integer Gemms have no rule.
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
    let (ma, mb) = (n.inputs[0], n.inputs[1]);
    let alpha = a.alpha.0;
    let mut out: Grads = vec![None; n.inputs.len()];
    if wants[0] {
        out[0] = Some(if a.trans_a {
            b.op(gemm_op(alpha, a.trans_b, true), &[mb, dy])?
        } else {
            b.op(gemm_op(alpha, false, !a.trans_b), &[dy, mb])?
        });
    }
    if wants[1] {
        out[1] = Some(if a.trans_b {
            b.op(gemm_op(alpha, true, a.trans_a), &[dy, ma])?
        } else {
            b.op(gemm_op(alpha, !a.trans_a, false), &[ma, dy])?
        });
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
