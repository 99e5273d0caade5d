//! DynamicQuantizeLinear: `x: f32 -> (y: u8, y_scale: f32, y_zero_point: u8)`, bit for bit the
//! interpreter's `dynamic_quantize` (the semantics are documented on
//! `kestrel_ir::Op::DynamicQuantizeLinear`).
//!
//! Two passes over `x`: a reduction for the range (four lanes at a time, both bounds starting at
//! 0.0 and replaced only by strict comparisons, so NaN never enters and -0.0 never replaces 0.0:
//! the result does not depend on the order of the lanes), then the scale and zero point in
//! scalar f32, then the quantize loop of `quant.rs`'s rounding: `round_half_even(x / scale)`
//! clamped to `[-z, 255 - z]`, plus `z`; NaN gives the zero point.

use crate::jit::context::KernelContext;
use crate::jit::emit::Emitter;
use crate::jit::error::JitError;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use kestrel_ir::DType;

/// `v cc bound ? v : bound` (F32 or F32X4): the bound moved to `v` when `v` is strictly beyond it.
fn keep(e: &mut Emitter, cc: FloatCC, v: Value, bound: Value) -> Value {
    let beyond = e.fcmp(cc, v, bound);
    e.sel(beyond, v, bound)
}

pub fn lower(e: &mut Emitter, k: &mut KernelContext) -> Result<(), JitError> {
    if k.in_dtype(0) != DType::F32 {
        return Err(k.unsupported(format!(
            "dynamic_quantize_linear of a {} input",
            k.in_dtype(0)
        )));
    }
    let n: usize = k.in_dims(0).iter().product();
    let (x, y, scale_out, zp_out) = (k.ins[0], k.outs[0], k.outs[1], k.outs[2]);

    // The range of the non-NaN elements, widened to include 0.
    let chunks = n / 4;
    let zero = e.fconst(types::F32, 0.0);
    let (mut lo, mut hi) = (zero, zero);
    if chunks > 0 {
        let zv = e.fconst(types::F32X4, 0.0);
        let acc = e.loop_acc(chunks, &[zv, zv], |e, i, acc| {
            let a = e.index(x, i, 16);
            let v = e.load(types::F32X4, a, 0);
            let l = keep(e, FloatCC::LessThan, v, acc[0]);
            let h = keep(e, FloatCC::GreaterThan, v, acc[1]);
            vec![l, h]
        });
        for lane in 0..4u8 {
            let l = e.fb.ins().extractlane(acc[0], lane);
            let h = e.fb.ins().extractlane(acc[1], lane);
            lo = keep(e, FloatCC::LessThan, l, lo);
            hi = keep(e, FloatCC::GreaterThan, h, hi);
        }
    }
    for j in chunks * 4..n {
        let v = e.load(types::F32, x, (j * 4) as i32);
        lo = keep(e, FloatCC::LessThan, v, lo);
        hi = keep(e, FloatCC::GreaterThan, v, hi);
    }

    // scale = hi == lo ? 1 : (hi - lo) / 255; zero point = round(clamp(0 - lo / scale, 0, 255)),
    // 255 when `0 - lo / scale` is NaN.
    let same = e.fcmp(FloatCC::Equal, hi, lo);
    let range = e.fb.ins().fsub(hi, lo);
    let c255 = e.fconst(types::F32, 255.0);
    let spread = e.fb.ins().fdiv(range, c255);
    let one = e.fconst(types::F32, 1.0);
    let scale = e.sel(same, one, spread);
    let lo_q = e.fb.ins().fdiv(lo, scale);
    let initial = e.fb.ins().fsub(zero, lo_q);
    let zf = e.fb.ins().fmax(initial, zero);
    let zf = e.fb.ins().fmin(zf, c255);
    let zf = e.nearest(zf);
    let nan = e.fcmp(FloatCC::Unordered, initial, initial);
    let zf = e.sel(nan, c255, zf);
    let z = e.fb.ins().fcvt_to_sint_sat(types::I32, zf);
    e.store(scale, scale_out, 0);
    let z8 = e.fb.ins().ireduce(types::I8, z);
    e.store(z8, zp_out, 0);

    // y = clamp(round(x / scale), -z, 255 - z) + z, as quant.rs quantizes.
    let zf = e.fb.ins().fcvt_from_sint(types::F32, z);
    let qlo = e.fb.ins().fsub(zero, zf);
    let qhi = e.fb.ins().fsub(c255, zf);
    let quant = |e: &mut Emitter, v: Value, s: Value, qlo: Value, qhi: Value, z: Value| {
        let d = e.fb.ins().fdiv(v, s);
        let q = e.nearest(d);
        let c = e.fb.ins().fmax(q, qlo);
        let c = e.fb.ins().fmin(c, qhi);
        let ity = Emitter::int_of(e.fb.func.dfg.value_type(v));
        let qi = e.fb.ins().fcvt_to_sint_sat(ity, c);
        e.fb.ins().iadd(qi, z)
    };
    if chunks > 0 {
        let sv = e.fb.ins().splat(types::F32X4, scale);
        let lov = e.fb.ins().splat(types::F32X4, qlo);
        let hiv = e.fb.ins().splat(types::F32X4, qhi);
        let zv = e.fb.ins().splat(types::I32X4, z);
        e.loop_n(chunks, |e, i| {
            let xa = e.index(x, i, 16);
            let v = e.load(types::F32X4, xa, 0);
            let r = quant(e, v, sv, lov, hiv, zv);
            let ya = e.index(y, i, 4);
            // Lane by lane: no narrowing shuffles, which the scalar riscv64 rewrite lacks.
            for l in 0..4u8 {
                let q = e.fb.ins().extractlane(r, l);
                let q = e.fb.ins().ireduce(types::I8, q);
                e.store(q, ya, l as i32);
            }
        });
    }
    for j in chunks * 4..n {
        let v = e.load(types::F32, x, (j * 4) as i32);
        let r = quant(e, v, scale, qlo, qhi, z);
        let r = e.fb.ins().ireduce(types::I8, r);
        e.store(r, y, j as i32);
    }
    Ok(())
}
