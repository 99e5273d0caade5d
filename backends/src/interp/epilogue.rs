//! Fused epilogues of Conv and Gemm (`y = act(acc + bias + residual)`), defined so that a fused
//! op computes bit for bit what the unfused op sequence computes in this interpreter: the
//! residual is added to the op's rounded f32 output with one f32 addition (as `add` does), then
//! the activation is applied as its own op would (f64 evaluation rounded once; SiLU as
//! `mul(x, sigmoid(x))`, i.e. the sigmoid rounded to f32 then one rounded product).

use super::*;
use kestrel_ir::{Activation, Epilogue};

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The activation of one f32 value, exactly as the unfused op computes it.
pub fn activation_f32(act: Activation, x: f32) -> f32 {
    let xd = x as f64;
    match act {
        Activation::None => x,
        Activation::Relu => {
            if x < 0.0 {
                0.0
            } else {
                x
            }
        }
        Activation::Clip { min, max } => {
            // As `clip`: NaN stays NaN, bounds applied in order min then max.
            if x.is_nan() {
                x
            } else {
                let v = if x < min.0 { min.0 } else { x };
                if v > max.0 {
                    max.0
                } else {
                    v
                }
            }
        }
        Activation::HardSwish => (xd * (xd / 6.0 + 0.5).clamp(0.0, 1.0)) as f32,
        Activation::HardSigmoid { alpha, beta } => {
            ((alpha.0 as f64) * xd + beta.0 as f64).clamp(0.0, 1.0) as f32
        }
        Activation::Sigmoid => sigmoid(xd) as f32,
        Activation::Silu => {
            let s = sigmoid(xd) as f32;
            ((xd) * (s as f64)) as f32
        }
        Activation::Gelu => {
            (0.5 * xd * (1.0 + elementwise::erf(xd / std::f64::consts::SQRT_2))) as f32
        }
    }
}

/// Applies `e` to the output `y` of a conv/gemm; `residual` is the op's fourth input.
pub fn apply(op: &'static str, e: &Epilogue, y: Tensor, residual: Option<&Tensor>) -> Res<Tensor> {
    if e.act == Activation::None && !e.residual {
        return Ok(y);
    }
    if y.dtype() != DType::F32 {
        return Err(unsupported_dtype(op, y.dtype()));
    }
    let mut v = f32_values(&y);
    if e.residual {
        let r = residual.ok_or_else(|| invalid(op, "epilogue residual input missing"))?;
        if r.dtype() != DType::F32 || r.dims() != y.dims() {
            return Err(invalid(op, "residual must be f32 of the output's shape"));
        }
        for (a, b) in v.iter_mut().zip(f32_values(r)) {
            *a += b;
        }
    }
    if e.act != Activation::None {
        for a in v.iter_mut() {
            *a = activation_f32(e.act, *a);
        }
    }
    tensor_from_f32(DType::F32, y.dims().to_vec(), &v)
}
