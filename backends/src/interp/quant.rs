//! QuantizeLinear and DequantizeLinear, per-tensor or per-axis.

use super::*;

/// For each element of a tensor of `dims`, the index of its quantization parameter: 0 for
/// per-tensor parameters (one element), the coordinate along `axis` for per-axis ones.
fn param_index(
    op: &'static str,
    dims: &[usize],
    params: &Tensor,
    axis: i64,
) -> Res<Box<dyn Fn(usize) -> usize>> {
    if params.numel() == 1 && params.dims().len() <= 1 {
        return Ok(Box::new(|_| 0));
    }
    let a = norm_axis(op, axis, dims.len())?;
    if params.dims().len() != 1 || params.dims()[0] != dims[a] {
        return Err(invalid(
            op,
            format!(
                "scale of shape {:?} is neither a scalar nor one value per index of axis {a} of {dims:?}",
                params.dims()
            ),
        ));
    }
    let inner: usize = dims[a + 1..].iter().product();
    let extent = dims[a];
    Ok(Box::new(move |i| (i / inner.max(1)) % extent.max(1)))
}

fn check_zero_point(
    op: &'static str,
    zp: Option<&Tensor>,
    scale: &Tensor,
    dtype: DType,
) -> Res<()> {
    if let Some(z) = zp {
        if z.dtype() != dtype {
            return Err(invalid(
                op,
                format!("zero point has dtype {}, expected {dtype}", z.dtype()),
            ));
        }
        if z.dims() != scale.dims() {
            return Err(invalid(
                op,
                format!(
                    "zero point shape {:?} differs from scale shape {:?}",
                    z.dims(),
                    scale.dims()
                ),
            ));
        }
    }
    Ok(())
}

/// `saturate(round_half_even(x / scale) + zero_point)` as `to`. The division is done in the
/// input's precision (f32 for f32/f16/bf16 inputs, like the ONNX reference); NaN quantizes to
/// the zero point; infinities saturate.
pub(crate) fn quantize(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    axis: i64,
    to: DType,
) -> Res<Tensor> {
    let name = "quantize_linear";
    require_float(name, x)?;
    require_float(name, scale)?;
    let Some((lo, hi)) = to.int_range() else {
        return Err(EvalError::UnsupportedDType {
            op: name,
            dtype: to,
            detail: " as the target (must be an integer type)".into(),
        });
    };
    check_zero_point(name, zp, scale, to)?;
    let which = param_index(name, x.dims(), scale, axis)?;
    let scales = scale.to_f64_vec();
    let zps = zp.map_or_else(|| vec![0; scales.len()], |z| z.to_i64_vec());
    let single = x.dtype() != DType::F64;
    let (lo, hi) = (lo as f64, hi as f64);
    let mut out = Vec::with_capacity(x.numel() * to.size());
    for (i, v) in x.to_f64_vec().into_iter().enumerate() {
        let p = which(i);
        let q = if single {
            ((v as f32) / (scales[p] as f32)).round_ties_even() as f64
        } else {
            (v / scales[p]).round_ties_even()
        };
        let z = zps[p] as f64;
        let r = if q.is_nan() { z } else { (q + z).clamp(lo, hi) };
        push_f64(to, r, &mut out);
    }
    tensor_from_bytes(to, x.dims().to_vec(), out)
}

/// `(x - zero_point) * scale` as f32: the difference is exact in i64, converted to f32 and
/// multiplied by the f32 scale.
pub(crate) fn dequantize(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    axis: i64,
) -> Res<Tensor> {
    let name = "dequantize_linear";
    if !x.dtype().is_int() {
        return Err(unsupported_dtype(name, x.dtype()));
    }
    require_float(name, scale)?;
    check_zero_point(name, zp, scale, x.dtype())?;
    let which = param_index(name, x.dims(), scale, axis)?;
    let scales = f32_values(scale);
    let zps = zp.map_or_else(|| vec![0; scales.len()], |z| z.to_i64_vec());
    let out: Vec<f32> = x
        .to_i64_vec()
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let p = which(i);
            (v.wrapping_sub(zps[p]) as f32) * scales[p]
        })
        .collect();
    tensor_from_f32(DType::F32, x.dims().to_vec(), &out)
}

/// The scale and zero point DynamicQuantizeLinear derives from `x` (see
/// [`kestrel_ir::Op::DynamicQuantizeLinear`]): the range of the non-NaN elements widened to
/// include 0, mapped onto `[0, 255]`, in f32 as onnxruntime computes it.
pub(crate) fn dynamic_quant_params(x: &[f32]) -> (f32, u8) {
    let (mut lo, mut hi) = (0.0f32, 0.0f32);
    for &v in x {
        // Strict comparisons: NaN never replaces a bound, nor does -0.0 replace 0.0.
        if v < lo {
            lo = v;
        }
        if v > hi {
            hi = v;
        }
    }
    let scale = if hi == lo { 1.0 } else { (hi - lo) / 255.0 };
    // A NaN initial zero point (both infinities present, or a scale that underflowed to 0) gives
    // 255, as onnxruntime's `std::max(0, std::min(255, zp))` does.
    let initial = 0.0 - lo / scale;
    let zero_point = if initial.is_nan() {
        255
    } else {
        initial.clamp(0.0, 255.0).round_ties_even() as u8
    };
    (scale, zero_point)
}

/// DynamicQuantizeLinear: `(y: u8, y_scale: f32 scalar, y_zero_point: u8 scalar)` with `y`
/// quantized exactly as [`quantize`] does with that scale and zero point.
pub(crate) fn dynamic_quantize(x: &Tensor) -> Res<Vec<Tensor>> {
    let name = "dynamic_quantize_linear";
    if x.dtype() != DType::F32 {
        return Err(unsupported_dtype(name, x.dtype()));
    }
    let values = x.to_f32_vec();
    let (scale, zero_point) = dynamic_quant_params(&values);
    let z = zero_point as f32;
    let y: Vec<u8> = values
        .iter()
        .map(|&v| {
            let q = (v / scale).round_ties_even();
            if q.is_nan() {
                zero_point
            } else {
                (q + z).clamp(0.0, 255.0) as u8
            }
        })
        .collect();
    Ok(vec![
        tensor_from_bytes(DType::U8, x.dims().to_vec(), y)?,
        Tensor::scalar(scale),
        Tensor::scalar(zero_point),
    ])
}
