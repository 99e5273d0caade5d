//! `quantized_mul` (see `kestrel_ir::QuantizedMulAttrs`), bit-exact with the interpreter: per
//! element the exact product `(a - za) · (b - zb)` in i32, converted to f32, multiplied by the
//! ratio, the zero point added (no fused multiply-add), rounded half to even and clamped.
//! Operands broadcast (strided loop nests over the collapsed axes); when the innermost axis is
//! contiguous in both operands, eight elements per step on `I32X4`/`F32X4` (unless the code will be
//! scalarised), the rest one at a time.

use crate::jit::context::KernelContext;
use crate::jit::emit::{mf, Emitter};
use crate::jit::error::JitError;
use crate::jit::kernels::requant::store8_levels;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use kestrel_ir::{DType, QuantizedMulAttrs};

/// One I8 byte at `p + off` widened to I32 as `dt` says.
fn load_level(e: &mut Emitter, dt: DType, p: Value, off: i32) -> Value {
    let v = e.load(types::I8, p, off);
    if dt == DType::I8 {
        e.fb.ins().sextend(types::I32, v)
    } else {
        e.fb.ins().uextend(types::I32, v)
    }
}

/// Eight bytes at `p` widened to two `I32X4` as `dt` says.
fn load8_levels(e: &mut Emitter, dt: DType, p: Value) -> [Value; 2] {
    let h = if dt == DType::I8 {
        e.fb.ins().sload8x8(mf(), p, 0)
    } else {
        e.fb.ins().uload8x8(mf(), p, 0)
    };
    if dt == DType::I8 {
        [e.fb.ins().swiden_low(h), e.fb.ins().swiden_high(h)]
    } else {
        [e.fb.ins().uwiden_low(h), e.fb.ins().uwiden_high(h)]
    }
}

pub fn quantized_mul(
    e: &mut Emitter,
    k: &mut KernelContext,
    q: &QuantizedMulAttrs,
) -> Result<(), JitError> {
    let (ta, tb, to) = (k.in_dtype(0), k.in_dtype(1), k.out_dtype(0));
    let int8 = |d: DType| matches!(d, DType::U8 | DType::I8);
    if !int8(ta) || !int8(tb) || !int8(to) {
        return Err(k.unsupported("quantized_mul of non-8-bit values"));
    }
    let out_dims = k.out_dims(0);
    let strides: Vec<Vec<i64>> = [k.in_dims(0), k.in_dims(1)]
        .iter()
        .map(|d| crate::jit::emit::broadcast_strides(d, &out_dims))
        .chain([crate::jit::emit::strides_of(&out_dims)])
        .collect();
    let (dims, strides) = crate::jit::emit::collapse(&out_dims, &strides);
    let last = dims.len() - 1;
    let n = dims[last];
    let (sa, sb) = (strides[0][last], strides[1][last]);
    let contiguous = sa == 1 && sb == 1;
    let (a0, b0, o0) = (k.ins[0], k.ins[1], k.outs[0]);
    let q = q.clone();
    e.hoisting_constants(|e| {
        e.nest(&dims, &strides, &[a0, b0, o0], &mut |e, p| {
            let (pa, pb, po) = (p[0], p[1], p[2]);
            let chunks = if contiguous && !e.flags.scalarized {
                n / 8
            } else {
                0
            };
            if chunks > 0 {
                let za = e.iconst_ty(types::I32X4, q.a_zero_point as i64);
                let zb = e.iconst_ty(types::I32X4, q.b_zero_point as i64);
                let ratio = e.fconst(types::F32X4, q.ratio.0);
                let zy = e.fconst(types::F32X4, q.zero_point as f32);
                let lo = e.iconst_ty(types::I32X4, q.min as i64);
                let hi = e.iconst_ty(types::I32X4, q.max as i64);
                e.loop_n(chunks, |e, i| {
                    let (xa, xb, xo) = (e.index(pa, i, 8), e.index(pb, i, 8), e.index(po, i, 8));
                    let (va, vb) = (load8_levels(e, ta, xa), load8_levels(e, tb, xb));
                    let mut levels = [lo; 2];
                    for h in 0..2 {
                        let da = e.fb.ins().isub(va[h], za);
                        let db = e.fb.ins().isub(vb[h], zb);
                        let prod = e.fb.ins().imul(da, db);
                        let f = e.fb.ins().fcvt_from_sint(types::F32X4, prod);
                        let f = e.fb.ins().fmul(f, ratio);
                        let f = e.fb.ins().fadd(f, zy);
                        let r = e.nearest(f);
                        let l = e.fb.ins().fcvt_to_sint_sat(types::I32X4, r);
                        let l = e.fb.ins().smax(l, lo);
                        levels[h] = e.fb.ins().smin(l, hi);
                    }
                    store8_levels(e, to == DType::I8, levels, xo);
                });
            }
            for j in chunks * 8..n {
                let a = load_level(e, ta, pa, (j as i64 * sa) as i32);
                let b = load_level(e, tb, pb, (j as i64 * sb) as i32);
                let da = e.fb.ins().iadd_imm_s(a, -(q.a_zero_point as i64));
                let db = e.fb.ins().iadd_imm_s(b, -(q.b_zero_point as i64));
                let prod = e.fb.ins().imul(da, db);
                let f = e.fb.ins().fcvt_from_sint(types::F32, prod);
                let ratio = e.fconst(types::F32, q.ratio.0);
                let f = e.fb.ins().fmul(f, ratio);
                let zy = e.fconst(types::F32, q.zero_point as f32);
                let f = e.fb.ins().fadd(f, zy);
                let r = e.nearest(f);
                let l = e.fb.ins().fcvt_to_sint_sat(types::I32, r);
                let lo = e.iconst_ty(types::I32, q.min as i64);
                let hi = e.iconst_ty(types::I32, q.max as i64);
                let l = e.fb.ins().smax(l, lo);
                let l = e.fb.ins().smin(l, hi);
                let y = e.fb.ins().ireduce(types::I8, l);
                e.store(y, po, j as i32);
            }
        });
    });
    Ok(())
}
