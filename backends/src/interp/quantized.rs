//! Quantized Mul, requantization and average pooling of 8-bit tensors, exactly as
//! `kestrel_ir::QuantizedMulAttrs`, `RequantizeAttrs` and `QuantizedPoolAttrs` define them (the
//! JIT reproduces them bit for bit; docs/QUANTIZATION.md).

use super::conv::{effective_pads, per_axis, window_extent};
use super::integer::{int8_binary, require_int8};
use super::*;
use kestrel_ir::{PoolKind, QuantizedMulAttrs, QuantizedPoolAttrs, RequantizeAttrs};

/// `round_half_even(v)` saturated to i32.
fn level_of(v: f32) -> i64 {
    v.round_ties_even().clamp(i32::MIN as f32, i32::MAX as f32) as i64
}

/// One element of `quantized_mul`, exactly as `QuantizedMulAttrs` defines it.
pub fn quantized_mul_element(q: &QuantizedMulAttrs, a: i64, b: i64) -> i64 {
    let p = (a - q.a_zero_point as i64) * (b - q.b_zero_point as i64);
    let v = p as f32 * q.ratio.0 + q.zero_point as f32;
    level_of(v).clamp(q.min as i64, q.max as i64)
}

pub(crate) fn quantized_mul(q: &QuantizedMulAttrs, a: &Tensor, b: &Tensor) -> Res<Tensor> {
    int8_binary("quantized_mul", q.to, a, b, |x, y| {
        quantized_mul_element(q, x, y)
    })
}

pub(crate) fn requantize(q: &RequantizeAttrs, x: &Tensor) -> Res<Tensor> {
    let name = "requantize";
    require_int8(name, "x", x)?;
    if kestrel_ir::quant::range_of(q.to).is_none() {
        return Err(unsupported_dtype(name, q.to));
    }
    let out: Vec<i64> = x.to_i64_vec().into_iter().map(|v| q.level(v)).collect();
    tensor_from_i64(q.to, x.dims().to_vec(), &out)
}

/// The output level of a window with `acc = Σ (x - x_zero_point)` over its in-bounds taps and
/// `count` taps, as `QuantizedPoolAttrs` defines it.
pub fn quantized_pool_element(q: &QuantizedPoolAttrs, acc: i64, count: usize) -> i64 {
    let v = acc as i32 as f32 * q.ratio(count);
    (level_of(v) + q.zero_point as i64).clamp(q.min as i64, q.max as i64)
}

pub(crate) fn quantized_average_pool(q: &QuantizedPoolAttrs, x: &Tensor) -> Res<Tensor> {
    let name = Op::QuantizedAveragePool(q.clone()).name();
    require_int8(name, "x", x)?;
    let dims = x.dims();
    if dims.len() < 3 {
        return Err(invalid(
            name,
            format!("input {dims:?} must be [N, C, spatial..]"),
        ));
    }
    let xv: Vec<i64> = x
        .to_i64_vec()
        .into_iter()
        .map(|v| v - q.x_zero_point as i64)
        .collect();
    let in_sp = &dims[2..];
    let isz: usize = in_sp.iter().product();
    let planes = dims[0] * dims[1];
    let Some(w) = &q.window else {
        let mut out_dims = dims[..2].to_vec();
        out_dims.extend(std::iter::repeat_n(1, in_sp.len()));
        check_alloc(name, q.to, &out_dims)?;
        let out: Vec<i64> = (0..planes)
            .map(|p| {
                let acc: i64 = xv[p * isz..(p + 1) * isz].iter().sum();
                quantized_pool_element(q, acc, isz)
            })
            .collect();
        return tensor_from_i64(q.to, out_dims, &out);
    };
    if w.kind != PoolKind::Average {
        return Err(invalid(name, "the window must be an average pool's"));
    }
    let k = in_sp.len();
    if w.kernel.len() != k || w.kernel.contains(&0) {
        return Err(invalid(
            name,
            format!("kernel {:?} must have {k} positive entries", w.kernel),
        ));
    }
    let strides = per_axis(name, "strides", &w.strides, k, 1, true)?;
    let dilations = per_axis(name, "dilations", &w.dilations, k, 1, true)?;
    let pads = effective_pads(
        name, w.auto_pad, &w.pads, in_sp, &w.kernel, &strides, &dilations,
    )?;
    let out_sp = (0..k)
        .map(|i| {
            window_extent(
                name,
                in_sp[i],
                pads[i],
                w.kernel[i],
                strides[i],
                dilations[i],
                w.ceil_mode,
            )
        })
        .collect::<Res<Vec<usize>>>()?;
    let mut out_dims = dims[..2].to_vec();
    out_dims.extend(&out_sp);
    let total = check_alloc(name, q.to, &out_dims)?;
    let osz: usize = out_sp.iter().product();
    let in_strides = strides_of(in_sp);
    let mut out = Vec::with_capacity(total);
    let mut o_multi = vec![0usize; k];
    let mut k_multi = vec![0usize; k];
    let ksz: usize = w.kernel.iter().product();
    for p in 0..planes {
        let plane = &xv[p * isz..(p + 1) * isz];
        for _ in 0..osz {
            let (mut acc, mut inside, mut padded) = (0i64, 0usize, 0usize);
            k_multi.iter_mut().for_each(|v| *v = 0);
            for _ in 0..ksz {
                let mut offset = 0usize;
                let (mut in_bounds, mut in_pad) = (true, true);
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
                padded += in_pad as usize;
                if in_bounds {
                    inside += 1;
                    acc += plane[offset];
                }
                advance(&mut k_multi, &w.kernel);
            }
            let count = if w.count_include_pad { padded } else { inside };
            out.push(quantized_pool_element(q, acc, count));
            advance(&mut o_multi, &out_sp);
        }
    }
    tensor_from_i64(q.to, out_dims, &out)
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
