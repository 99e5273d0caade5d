//! BatchNorm (inference), LayerNorm, Softmax, LogSoftmax and Attention. All computed in f64 and
//! rounded once to the input dtype (Attention: once per unfused step); float inputs only.

use super::*;

/// `(x - mean) / sqrt(var + epsilon) * scale + bias` per channel (axis 1).
pub(crate) fn batch_norm(epsilon: f32, inputs: &[&Tensor]) -> Res<Tensor> {
    let name = "batch_norm";
    let x = inputs[0];
    for t in inputs {
        require_float(name, t)?;
    }
    let dims = x.dims();
    if dims.len() < 2 {
        return Err(invalid(name, format!("input {dims:?} must be [N, C, ..]")));
    }
    let c = dims[1];
    for (what, t) in ["scale", "bias", "mean", "var"].iter().zip(&inputs[1..]) {
        if t.numel() != c || t.dims().len() != 1 {
            return Err(invalid(
                name,
                format!("{what} has shape {:?}, expected [{c}]", t.dims()),
            ));
        }
    }
    let [scale, bias, mean, var] = [1, 2, 3, 4].map(|i| inputs[i].to_f64_vec());
    let inner: usize = dims[2..].iter().product();
    let eps = epsilon as f64;
    let xv = x.to_f64_vec();
    let out: Vec<f64> = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / inner.max(1)) % c;
            (v - mean[ch]) / (var[ch] + eps).sqrt() * scale[ch] + bias[ch]
        })
        .collect();
    tensor_from_f64(x.dtype(), dims.to_vec(), &out)
}

/// Normalises over axes `axis..rank` (population variance, epsilon inside the sqrt), then
/// `* scale + bias` with scale/bias broadcast to x's shape.
pub(crate) fn layer_norm(
    axis: i64,
    epsilon: f32,
    x: &Tensor,
    scale: &Tensor,
    bias: Option<&Tensor>,
) -> Res<Tensor> {
    let name = "layer_norm";
    require_float(name, x)?;
    require_float(name, scale)?;
    let dims = x.dims();
    let axis = norm_axis(name, axis, dims.len())?;
    let inner: usize = dims[axis..].iter().product();
    let broadcast = |t: &Tensor, what: &str| -> Res<Vec<f64>> {
        require_float(name, t)?;
        if broadcast_shapes(name, t.dims(), dims)? != dims {
            return Err(invalid(
                name,
                format!(
                    "{what} of shape {:?} does not broadcast to {dims:?}",
                    t.dims()
                ),
            ));
        }
        let v = t.to_f64_vec();
        Ok(StridedIter::new(dims, &broadcast_strides(t.dims(), dims))
            .map(|i| v[i])
            .collect())
    };
    let sv = broadcast(scale, "scale")?;
    let bv = match bias {
        Some(b) => Some(broadcast(b, "bias")?),
        None => None,
    };
    let xv = x.to_f64_vec();
    let mut out = vec![0.0; xv.len()];
    if inner > 0 {
        for (row, chunk) in xv.chunks(inner).enumerate() {
            let mean = chunk.iter().sum::<f64>() / inner as f64;
            let var = chunk.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / inner as f64;
            let inv = 1.0 / (var + epsilon as f64).sqrt();
            for (j, &v) in chunk.iter().enumerate() {
                let i = row * inner + j;
                let b = bv.as_ref().map_or(0.0, |b| b[i]);
                out[i] = (v - mean) * inv * sv[i] + b;
            }
        }
    }
    tensor_from_f64(x.dtype(), dims.to_vec(), &out)
}

/// Softmax (or log-softmax) along one axis, max-subtracted for stability.
pub(crate) fn softmax(name: &'static str, x: &Tensor, axis: i64, log: bool) -> Res<Tensor> {
    require_float(name, x)?;
    let dims = x.dims();
    let axis = norm_axis(name, axis, dims.len())?;
    let extent = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let outer: usize = dims[..axis].iter().product();
    let xv = x.to_f64_vec();
    let mut out = vec![0.0; xv.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| o * extent * inner + k * inner + i;
            let max = (0..extent).fold(f64::NEG_INFINITY, |m, k| m.max(xv[at(k)]));
            let sum: f64 = (0..extent).map(|k| (xv[at(k)] - max).exp()).sum();
            for k in 0..extent {
                let shifted = xv[at(k)] - max;
                out[at(k)] = if log {
                    shifted - sum.ln()
                } else {
                    shifted.exp() / sum
                };
            }
        }
    }
    tensor_from_f64(x.dtype(), dims.to_vec(), &out)
}

/// Scaled dot-product attention (see `Op::Attention`), exactly as the unfused steps it stands for:
/// `s = q @ k_t`, then `s · scale` rounded to the dtype, softmax along the last axis, `@ v`.
pub(crate) fn attention(scale: f32, q: &Tensor, kt: &Tensor, v: &Tensor) -> Res<Tensor> {
    let name = "attention";
    require_float(name, q)?;
    if kt.dtype() != q.dtype() || v.dtype() != q.dtype() {
        return Err(invalid(name, "q, k_t and v must have one dtype"));
    }
    let (qd, kd, vd) = (q.dims(), kt.dims(), v.dims());
    let r = qd.len();
    if r < 2
        || kd.len() != r
        || vd.len() != r
        || qd[..r - 2] != kd[..r - 2]
        || qd[..r - 2] != vd[..r - 2]
        || qd[r - 1] != kd[r - 2]
        || kd[r - 1] != vd[r - 2]
    {
        return Err(invalid(
            name,
            format!(
                "shapes {qd:?}, {kd:?}, {vd:?} are not q [.., M, D], k_t [.., D, N], v [.., N, Dv]"
            ),
        ));
    }
    let s = super::matmul::matmul(q, kt)?;
    let scaled: Vec<f64> = s.to_f64_vec().iter().map(|x| x * scale as f64).collect();
    let s = tensor_from_f64(q.dtype(), s.dims().to_vec(), &scaled)?;
    let p = softmax(name, &s, -1, false)?;
    super::matmul::matmul(&p, v)
}

/// `x / ||x||_p` along `axis` (p 1 or 2), in f64; a zero vector stays zero.
pub(crate) fn lp_normalization(x: &Tensor, axis: i64, p: u32) -> Res<Tensor> {
    let name = "lp_normalization";
    require_float(name, x)?;
    if !matches!(p, 1 | 2) {
        return Err(invalid(name, format!("p must be 1 or 2, got {p}")));
    }
    let dims = x.dims();
    let axis = norm_axis(name, axis, dims.len())?;
    let outer: usize = dims[..axis].iter().product();
    let n = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let v = x.to_f64_vec();
    let mut y = vec![0.0; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * n + j) * inner + i;
            let norm = if p == 1 {
                (0..n).map(|j| v[at(j)].abs()).sum::<f64>()
            } else {
                (0..n).map(|j| v[at(j)] * v[at(j)]).sum::<f64>().sqrt()
            };
            for j in 0..n {
                y[at(j)] = if norm == 0.0 { 0.0 } else { v[at(j)] / norm };
            }
        }
    }
    tensor_from_f64(x.dtype(), dims.to_vec(), &y)
}
