//! Gradients of BatchNormalization in inference mode (running statistics are constants) and
//! LayerNormalization.

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

/// `y = x̂·scale + bias`, `x̂ = (x - μ)·r`, `r = 1/sqrt(σ² + ε)`, mean and (population) variance
/// over axes `axis..rank`: with `g = dy·scale`, `dx = r·(g - mean(g) - x̂·mean(g·x̂))`,
/// `dscale = Σ dy·x̂` and `dbias = Σ dy`, reduced to their extents.
pub(crate) fn layer_norm(
    b: &mut Builder,
    axis: i64,
    epsilon: f32,
    n: &Node,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads, AutodiffError> {
    let x = n.inputs[0];
    let dims = b.dims(x)?;
    let axis = kestrel_ir::norm_axis(axis, dims.len()).map_err(|e| b.unsupported(e))?;
    let axes: Vec<usize> = (axis..dims.len()).collect();
    let count: usize = dims[axis..].iter().product();
    let inv_count = 1.0 / count as f64;
    let mean = |b: &mut Builder, v: ValueId| -> Result<ValueId, AutodiffError> {
        let s = b.reduce_sum(v, &axes, true)?;
        b.scale(s, inv_count)
    };
    let mu = mean(b, x)?;
    let xc = b.sub(x, mu)?;
    let sq = b.mul(xc, xc)?;
    let var = mean(b, sq)?;
    let eps = b.scalar(epsilon as f64);
    let v = b.add(var, eps)?;
    let sd = b.unary(UnaryOp::Sqrt, v)?;
    let r = b.unary(UnaryOp::Reciprocal, sd)?;
    let xhat = b.mul(xc, r)?;
    let mut out: Grads = vec![None; n.inputs.len()];
    if wants[0] {
        let g = b.mul(dy, n.inputs[1])?;
        let mg = mean(b, g)?;
        let gx = b.mul(g, xhat)?;
        let mgx = mean(b, gx)?;
        let t = b.mul(xhat, mgx)?;
        let d = b.sub(g, mg)?;
        let d = b.sub(d, t)?;
        out[0] = Some(b.mul(r, d)?);
    }
    if wants[1] {
        let t = b.mul(dy, xhat)?;
        let target = b.dims(n.inputs[1])?;
        out[1] = Some(b.unbroadcast(t, &target)?);
    }
    if n.inputs.len() > 2 && wants[2] {
        let target = b.dims(n.inputs[2])?;
        out[2] = Some(b.unbroadcast(dy, &target)?);
    }
    Ok(out)
}
