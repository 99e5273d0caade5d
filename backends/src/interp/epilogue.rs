//! Fused epilogues of Conv and Gemm (`y = act(acc + bias + residual)`), defined so that a fused
//! op computes bit for bit what the unfused op sequence computes in this interpreter: the
//! residual is added to the op's rounded f32 output with one f32 addition (as `add` does), then
//! the activation is applied by the unary op's own evaluation (f64 rounded once; SiLU as
//! `mul(x, sigmoid(x))`, i.e. the sigmoid rounded to f32 then one rounded product).

use super::*;
use kestrel_ir::Epilogue;

/// Applies `e` to the output `y` of a conv/gemm; `residual` is the op's fourth input.
pub fn apply(op: &'static str, e: &Epilogue, y: Tensor, residual: Option<&Tensor>) -> Res<Tensor> {
    if e.act.is_none() && !e.residual {
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
    if let Some(u) = e.act {
        for a in v.iter_mut() {
            *a = elementwise::unary_f32(u, *a);
        }
    }
    tensor_from_f32(DType::F32, y.dims().to_vec(), &v)
}
