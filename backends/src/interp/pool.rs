//! MaxPool / AveragePool / LpPool over any number of spatial axes, and the global pools.
//!
//! Values are computed in f64 and converted back to the input dtype (exact for max pooling).
//! Contracts: a tap replaces the running maximum only when it compares greater, so NaN taps are
//! skipped by max pooling; a window with no
//! in-bounds tap (impossible with ONNX-valid pads) yields -inf. Average divides by the number of
//! in-bounds taps, or with `count_include_pad` by the number of taps inside the explicitly padded
//! extent (taps in the extra `ceil_mode` overhang never count). Lp pools `(sum |x|^p)^(1/p)` over
//! in-bounds taps.

use super::conv::{effective_pads, per_axis, window_extent};
use super::*;
use kestrel_ir::{PoolAttrs, PoolKind};

pub(crate) fn pool(attrs: &PoolAttrs, x: &Tensor) -> Res<Tensor> {
    let name = Op::Pool(attrs.clone()).name();
    let dims = x.dims();
    if dims.len() < 3 {
        return Err(invalid(
            name,
            format!("input {dims:?} must be [N, C, spatial..]"),
        ));
    }
    if x.dtype() == DType::Bool || (!matches!(attrs.kind, PoolKind::Max) && !x.dtype().is_float()) {
        return Err(unsupported_dtype(name, x.dtype()));
    }
    let k = dims.len() - 2;
    let in_sp = &dims[2..];
    if attrs.kernel.len() != k || attrs.kernel.contains(&0) {
        return Err(invalid(
            name,
            format!("kernel {:?} must have {k} positive entries", attrs.kernel),
        ));
    }
    let strides = per_axis(name, "strides", &attrs.strides, k, 1, true)?;
    let dilations = per_axis(name, "dilations", &attrs.dilations, k, 1, true)?;
    let pads = effective_pads(
        name,
        attrs.auto_pad,
        &attrs.pads,
        in_sp,
        &attrs.kernel,
        &strides,
        &dilations,
    )?;
    let out_sp = (0..k)
        .map(|i| {
            window_extent(
                name,
                in_sp[i],
                pads[i],
                attrs.kernel[i],
                strides[i],
                dilations[i],
                attrs.ceil_mode,
            )
        })
        .collect::<Res<Vec<usize>>>()?;
    let mut out_dims = dims[..2].to_vec();
    out_dims.extend(&out_sp);
    let total = check_alloc(name, x.dtype(), &out_dims)?;
    let xv = x.to_f64_vec();
    let isz: usize = in_sp.iter().product();
    let osz: usize = out_sp.iter().product();
    let ksz: usize = attrs.kernel.iter().product();
    let in_strides = strides_of(in_sp);
    let planes = dims[0] * dims[1];
    let mut out = Vec::with_capacity(total);
    let mut o_multi = vec![0usize; k];
    let mut k_multi = vec![0usize; k];
    for p in 0..planes {
        let plane = &xv[p * isz..(p + 1) * isz];
        for _ in 0..osz {
            let (mut acc, mut inside, mut padded) = match attrs.kind {
                PoolKind::Max => (f64::NEG_INFINITY, 0usize, 0usize),
                _ => (0.0, 0, 0),
            };
            k_multi.iter_mut().for_each(|v| *v = 0);
            for _ in 0..ksz {
                let mut offset = 0usize;
                let mut in_bounds = true;
                let mut in_pad = true;
                for a in 0..k {
                    let c = (o_multi[a] * strides[a] + k_multi[a] * dilations[a]) as isize
                        - pads[a].0 as isize;
                    if c < 0 || c as usize >= in_sp[a] {
                        in_bounds = false;
                        if c < -(pads[a].0 as isize) || c >= (in_sp[a] + pads[a].1) as isize {
                            in_pad = false;
                        }
                    } else {
                        offset += c as usize * in_strides[a];
                    }
                }
                if in_pad {
                    padded += 1;
                }
                if in_bounds {
                    inside += 1;
                    let v = plane[offset];
                    match attrs.kind {
                        PoolKind::Max => {
                            if v > acc {
                                acc = v;
                            }
                        }
                        PoolKind::Average => acc += v,
                        PoolKind::Lp(pw) => acc += v.abs().powi(pw as i32),
                    }
                }
                advance(&mut k_multi, &attrs.kernel);
            }
            out.push(match attrs.kind {
                PoolKind::Max => acc,
                PoolKind::Average => {
                    let count = if attrs.count_include_pad {
                        padded
                    } else {
                        inside
                    };
                    acc / count as f64
                }
                PoolKind::Lp(pw) => acc.powf(1.0 / pw as f64),
            });
            advance(&mut o_multi, &out_sp);
        }
    }
    tensor_from_f64(x.dtype(), out_dims, &out)
}

/// Row-major odometer step of a multi-index within `dims` (wraps to all zeros at the end).
fn advance(idx: &mut [usize], dims: &[usize]) {
    for a in (0..idx.len()).rev() {
        idx[a] += 1;
        if idx[a] < dims[a] {
            return;
        }
        idx[a] = 0;
    }
}

/// Global pooling: max, mean or Lp norm over all spatial axes; output `[N, C, 1, ..]`.
pub(crate) fn global_pool(kind: PoolKind, x: &Tensor) -> Res<Tensor> {
    let name = Op::GlobalPool(kind).name();
    let dims = x.dims();
    if dims.len() < 3 {
        return Err(invalid(
            name,
            format!("input {dims:?} must be [N, C, spatial..]"),
        ));
    }
    if x.dtype() == DType::Bool || (kind != PoolKind::Max && !x.dtype().is_float()) {
        return Err(unsupported_dtype(name, x.dtype()));
    }
    let isz: usize = dims[2..].iter().product();
    let xv = x.to_f64_vec();
    let planes = dims[0] * dims[1];
    let out: Vec<f64> = (0..planes)
        .map(|p| {
            let plane = &xv[p * isz..(p + 1) * isz];
            match kind {
                PoolKind::Max => plane
                    .iter()
                    .fold(f64::NEG_INFINITY, |m, &v| if v > m { v } else { m }),
                PoolKind::Average => plane.iter().sum::<f64>() / isz as f64,
                PoolKind::Lp(pw) => plane
                    .iter()
                    .map(|v| v.abs().powi(pw as i32))
                    .sum::<f64>()
                    .powf(1.0 / pw as f64),
            }
        })
        .collect();
    let mut out_dims = dims[..2].to_vec();
    out_dims.extend(std::iter::repeat_n(1, dims.len() - 2));
    tensor_from_f64(x.dtype(), out_dims, &out)
}
