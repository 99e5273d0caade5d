//! Quantized (integer) Conv and Gemm, exactly as `kestrel_ir::IntegerAttrs` defines them:
//! `acc = b + Σ (x - x_zero_point) · w` in i32 (wrapping), then, with requantization,
//! `clamp(zero_point + requantize(acc, multiplier[c]), min, max)` with the arithmetic of
//! `kestrel_ir::quant` that the requantization's mode names (fixed point or onnxruntime's f32
//! multiply; the JIT reproduces both bit for bit).

use super::conv::conv_typed;
use super::matmul::gemm_typed;
use super::*;
use kestrel_ir::quant::{quantize_multiplier, requantize_output, requantize_output_float};
use kestrel_ir::{ConvAttrs, GemmAttrs, IntegerAttrs, Requant, RequantMode};

pub(super) fn require_int8(op: &'static str, what: &str, t: &Tensor) -> Res<()> {
    match t.dtype() {
        DType::U8 | DType::I8 => Ok(()),
        d => Err(invalid(op, format!("{what} must be u8 or i8, got {d}"))),
    }
}

fn require_bias(op: &'static str, b: Option<&Tensor>) -> Res<Option<Vec<i64>>> {
    match b {
        Some(b) if b.dtype() != DType::I32 => {
            Err(invalid(op, format!("bias must be i32, got {}", b.dtype())))
        }
        Some(b) => Ok(Some(b.to_i64_vec())),
        None => Ok(None),
    }
}

/// The data input with its zero point subtracted (so a zero-padded im2col pads with real zero).
fn centred(t: &Tensor, zero_point: i32) -> Vec<i64> {
    t.to_i64_vec()
        .into_iter()
        .map(|v| v - zero_point as i64)
        .collect()
}

/// The i32 accumulators, or their requantization along `channel_axis` of `dims`.
fn finish(
    op: &'static str,
    ia: &IntegerAttrs,
    dims: Vec<usize>,
    acc: Vec<i64>,
    channel_axis: usize,
) -> Res<Tensor> {
    let acc: Vec<i32> = acc.into_iter().map(|v| v as i32).collect();
    let Some(r) = &ia.requant else {
        return tensor_from_i64(
            DType::I32,
            dims,
            &acc.iter().map(|&v| v as i64).collect::<Vec<_>>(),
        );
    };
    let channels = dims.get(channel_axis).copied().unwrap_or(1);
    let fixed = multipliers(op, r, channels)?;
    let inner: usize = dims[channel_axis + 1..].iter().product();
    let out: Vec<i64> = acc
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let c = if fixed.len() == 1 {
                0
            } else {
                (i / inner.max(1)) % channels
            };
            let y = match r.mode {
                RequantMode::FixedPoint => {
                    requantize_output(a, fixed[c], r.zero_point, r.min, r.max)
                }
                RequantMode::Float => {
                    requantize_output_float(a, r.multiplier[c].0, r.zero_point, r.min, r.max)
                }
            };
            y as i64
        })
        .collect();
    tensor_from_i64(r.to, dims, &out)
}

/// The fixed-point multipliers of `r` for `channels` output channels.
fn multipliers(
    op: &'static str,
    r: &Requant,
    channels: usize,
) -> Res<Vec<kestrel_ir::quant::FixedMultiplier>> {
    if r.multiplier.len() != 1 && r.multiplier.len() != channels {
        return Err(invalid(
            op,
            format!(
                "{} requant multipliers for {channels} output channels",
                r.multiplier.len()
            ),
        ));
    }
    r.multiplier
        .iter()
        .map(|m| {
            quantize_multiplier(m.0).ok_or_else(|| {
                invalid(
                    op,
                    format!("requant multiplier {} has no fixed-point form", m.0),
                )
            })
        })
        .collect()
}

pub(crate) fn conv(
    attrs: &ConvAttrs,
    ia: &IntegerAttrs,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Res<Tensor> {
    let name = "conv";
    require_int8(name, "the data input", x)?;
    require_int8(name, "the weights", w)?;
    let bias = require_bias(name, b)?;
    let plain = ConvAttrs {
        integer: None,
        ..attrs.clone()
    };
    let (dims, acc) = conv_typed(
        &plain,
        &centred(x, ia.x_zero_point),
        x.dims(),
        &w.to_i64_vec(),
        w.dims(),
        bias,
        DType::I32,
    )?;
    finish(name, ia, dims, acc, 1)
}

pub(crate) fn gemm(
    attrs: &GemmAttrs,
    ia: &IntegerAttrs,
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
) -> Res<Tensor> {
    let name = "gemm";
    require_int8(name, "A", a)?;
    require_int8(name, "B", b)?;
    if a.dims().len() != 2 || b.dims().len() != 2 {
        return Err(invalid(
            name,
            format!("A and B must be 2-D, got {:?} and {:?}", a.dims(), b.dims()),
        ));
    }
    if attrs.alpha.0 != 1.0 || attrs.beta.0 != 1.0 || attrs.trans_a {
        return Err(invalid(
            name,
            "a quantized gemm needs alpha = beta = 1 and no trans_a",
        ));
    }
    let bias = require_bias(name, c)?;
    let n = if attrs.trans_b {
        b.dims()[0]
    } else {
        b.dims()[1]
    };
    if bias.as_ref().is_some_and(|v| v.len() != n) {
        return Err(invalid(name, format!("C must be a bias of {n} elements")));
    }
    check_alloc(name, DType::I32, &[a.dims()[0], n])?;
    let plain = GemmAttrs {
        integer: None,
        ..attrs.clone()
    };
    let cdims = [n];
    let (dims, acc) = gemm_typed(
        &plain,
        centred(a, ia.x_zero_point),
        a.dims(),
        b.to_i64_vec(),
        b.dims(),
        bias.map(|v| (v, &cdims[..])),
    )?;
    finish(name, ia, dims, acc, 1)
}

/// One element of `quantized_add`, exactly as `kestrel_ir::QuantizedAddAttrs` defines it.
pub fn quantized_add_element(q: &kestrel_ir::QuantizedAddAttrs, a: i64, b: i64) -> i64 {
    let fa = (a - q.a_zero_point as i64) as f32 * q.a_ratio.0;
    let fb = (b - q.b_zero_point as i64) as f32 * q.b_ratio.0;
    let sum = (fa + fb).round_ties_even();
    // |sum| is small (8-bit inputs times finite ratios) unless a ratio is huge: saturate.
    let level = sum.clamp(i32::MIN as f32, i32::MAX as f32) as i64 + q.zero_point as i64;
    level.clamp(q.min as i64, q.max as i64)
}

pub(crate) fn quantized_add(
    q: &kestrel_ir::QuantizedAddAttrs,
    a: &Tensor,
    b: &Tensor,
) -> Res<Tensor> {
    int8_binary("quantized_add", q.to, a, b, |x, y| {
        quantized_add_element(q, x, y)
    })
}

/// An element-wise op of two 8-bit tensors (broadcast as Add's) into `to`: `element` maps each
/// pair of stored levels to the output level.
pub(super) fn int8_binary(
    name: &'static str,
    to: DType,
    a: &Tensor,
    b: &Tensor,
    element: impl Fn(i64, i64) -> i64,
) -> Res<Tensor> {
    require_int8(name, "a", a)?;
    require_int8(name, "b", b)?;
    let dims = broadcast_shapes(name, a.dims(), b.dims())?;
    check_alloc(name, to, &dims)?;
    let (av, bv) = (a.to_i64_vec(), b.to_i64_vec());
    let ia = StridedIter::new(&dims, &broadcast_strides(a.dims(), &dims));
    let ib = StridedIter::new(&dims, &broadcast_strides(b.dims(), &dims));
    let out: Vec<i64> = ia.zip(ib).map(|(i, j)| element(av[i], bv[j])).collect();
    tensor_from_i64(to, dims, &out)
}
