//! Gradient of BatchNormalization in inference mode (running statistics are constants).

use super::Grads;
use crate::autodiff::build::Builder;
use crate::autodiff::AutodiffError;
use kestrel_ir::{Node, UnaryOp, ValueId};

/// `y = (x - mean)·s·scale + bias` per channel (axis 1) with `s = 1/sqrt(var + ε)`:
/// `dx = dy·scale·s`, `dscale = Σ dy·(x - mean)·s`, `dbias = Σ dy`, sums over every axis but 1.
/// The statistics `mean` and `var` are not trained (eval mode): asking for their gradient is
/// an error.
pub(crate) fn batchnorm(
    b: &mut Builder,
    epsilon: f32,
    n: &Node,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads, AutodiffError> {
    if wants[3] || wants[4] {
        return Err(b.no_rule_for_input(if wants[3] { 3 } else { 4 }));
    }
    let [x, scale, _bias, mean, var] = [
        n.inputs[0],
        n.inputs[1],
        n.inputs[2],
        n.inputs[3],
        n.inputs[4],
    ];
    let dims = b.dims(x)?;
    if dims.len() < 2 {
        return Err(b.unsupported("batch normalization of rank < 2"));
    }
    let channels = dims[1];
    let mut bshape = vec![1usize; dims.len()];
    bshape[1] = channels;
    let axes: Vec<usize> = (0..dims.len()).filter(|&a| a != 1).collect();
    let eps = b.scalar(epsilon as f64);
    let v = b.add(var, eps)?;
    let sd = b.unary(UnaryOp::Sqrt, v)?;
    let inv = b.unary(UnaryOp::Reciprocal, sd)?;
    let inv_b = b.reshape(inv, &bshape)?;
    let mut out: Grads = vec![None; 5];
    if wants[0] {
        let k = b.mul(scale, inv)?;
        let k = b.reshape(k, &bshape)?;
        out[0] = Some(b.mul(dy, k)?);
    }
    if wants[1] {
        let mean_b = b.reshape(mean, &bshape)?;
        let centred = b.sub(x, mean_b)?;
        let xhat = b.mul(centred, inv_b)?;
        let t = b.mul(dy, xhat)?;
        out[1] = Some(b.reduce_sum(t, &axes, false)?);
    }
    if wants[2] {
        out[2] = Some(b.reduce_sum(dy, &axes, false)?);
    }
    Ok(out)
}
