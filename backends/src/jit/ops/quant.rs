//! QuantizeLinear (f32 -> 8- or 16-bit integers) and DequantizeLinear (8- or 16-bit integers ->
//! f32), per tensor or per axis, with the interpreter's semantics bit for bit:
//!
//! - quantize: `q = round_half_even(x / scale)` in f32, then `clamp(q + zero_point, lo, hi)` of the
//!   target type; NaN gives the zero point, infinities saturate;
//! - dequantize: `(x - zero_point)` exactly in i32, converted to f32, times the f32 scale.
//!
//! These are what quantize-dequantize (QDQ) models exported by other tools are made of: the
//! weights' DequantizeLinear folds into f32 constants at compile time, and each activation's
//! QuantizeLinear/DequantizeLinear pair runs here, around f32 kernels. One loop per quantization
//! parameter (a channel, or the whole tensor): quantize computes four lanes at a time, dequantize
//! eight; 32- and 64-bit targets are refused.

use crate::jit::context::KernelContext;
use crate::jit::emit::{mf, Emitter};
use crate::jit::error::JitError;
use crate::jit::kernels::requant::{narrow_to_bytes, store8_levels};
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use kestrel_ir::DType;

/// `(outer, channels, inner)` around `axis` when the parameters are per axis, else `(1, 1, numel)`.
fn layout(k: &KernelContext, axis: i64) -> Result<(usize, usize, usize), JitError> {
    let dims = k.in_dims(0);
    let params = k.in_dims(1);
    let n: usize = dims.iter().product();
    if params.iter().product::<usize>() == 1 && params.len() <= 1 {
        return Ok((1, 1, n));
    }
    let a = kestrel_ir::norm_axis(axis, dims.len()).map_err(|w| k.unsupported(w))?;
    if params.len() != 1 || params[0] != dims[a] {
        return Err(k.unsupported(format!(
            "quantization parameters of shape {params:?} for an input of shape {dims:?}, axis {axis}"
        )));
    }
    let outer = dims[..a].iter().product();
    let inner = dims[a + 1..].iter().product();
    Ok((outer, dims[a], inner))
}

/// The CLIF type of an 8- or 16-bit quantized dtype.
fn narrow_type(k: &KernelContext, dt: DType) -> Result<Type, JitError> {
    match dt {
        DType::I8 | DType::U8 => Ok(types::I8),
        DType::I16 | DType::U16 => Ok(types::I16),
        _ => Err(k.unsupported(format!("quantized dtype {dt} (8- and 16-bit only)"))),
    }
}

/// The zero point of channel `ch` (I64 value) widened to I32, or 0 without one.
fn zero_point(e: &mut Emitter, k: &KernelContext, dt: DType, ty: Type, ch: Value) -> Value {
    match k.ins.get(2) {
        Some(&zp) => {
            let a = e.index(zp, ch, ty.bytes() as i64);
            let z = e.load(ty, a, 0);
            if dt.is_signed_int() {
                e.fb.ins().sextend(types::I32, z)
            } else {
                e.fb.ins().uextend(types::I32, z)
            }
        }
        None => e.fb.ins().iconst(types::I32, 0),
    }
}

pub fn quantize(
    e: &mut Emitter,
    k: &mut KernelContext,
    axis: i64,
    to: DType,
) -> Result<(), JitError> {
    if k.in_dtype(0) != DType::F32 || k.in_dtype(1) != DType::F32 {
        return Err(k.unsupported("quantize_linear of a non-f32 input or scale"));
    }
    let ty = narrow_type(k, to)?;
    let (lo, hi) = to.int_range().unwrap_or((0, 0));
    let (outer, channels, inner) = layout(k, axis)?;
    let (x, scale, out) = (k.ins[0], k.ins[1], k.outs[0]);
    let size = ty.bytes() as i64;
    e.loop_n(outer * channels, |e, oc| {
        let ch = e.fb.ins().urem_imm_s(oc, channels as i64);
        let sa = e.index(scale, ch, 4);
        let s = e.load(types::F32, sa, 0);
        let z = zero_point(e, k, to, ty, ch);
        // q + z in [lo, hi]  <=>  q in [lo - z, hi - z] (exact in f32 for 8/16-bit types).
        let zf = e.fb.ins().fcvt_from_sint(types::F32, z);
        let lo_f = e.fb.ins().f32const(lo as f32);
        let hi_f = e.fb.ins().f32const(hi as f32);
        let qlo = e.fb.ins().fsub(lo_f, zf);
        let qhi = e.fb.ins().fsub(hi_f, zf);
        let xr = e.index(x, oc, (inner * 4) as i64);
        let or = e.index(out, oc, inner as i64 * size);
        // `round_half_even(v / s)` clamped to [qlo, qhi], plus z, as I32 (lanes of F32X4 `v`
        // give I32X4). The clamp is compare-and-select (one maxps/minps each on x86-64), which
        // keeps a NaN; it converts to 0, so the result is the zero point, as in the interpreter.
        let quant = |e: &mut Emitter, v: Value, s: Value, qlo: Value, qhi: Value, z: Value| {
            let d = e.fb.ins().fdiv(v, s);
            let q = e.nearest(d);
            let c = e.raise_to(q, qlo);
            let c = e.lower_to(c, qhi);
            let ity = Emitter::int_of(e.fb.func.dfg.value_type(v));
            let qi = e.fb.ins().fcvt_to_sint_sat(ity, c);
            e.fb.ins().iadd(qi, z)
        };
        // Four elements per step; 8-bit lanes are narrowed and stored as one i32 on x86-64
        // (`packssdw` + `packuswb`/`packsswb`: exact, the levels are in range), else the lanes
        // are stored one by one (the scalar riscv64 rewrite has no narrowing shuffles).
        let narrow = size == 1 && e.flags.is_x86 && !e.flags.scalarized;
        let chunks = inner / 4;
        if chunks > 0 {
            let sv = e.fb.ins().splat(types::F32X4, s);
            let lov = e.fb.ins().splat(types::F32X4, qlo);
            let hiv = e.fb.ins().splat(types::F32X4, qhi);
            let zv = e.fb.ins().splat(types::I32X4, z);
            e.loop_n(chunks, |e, i| {
                let xa = e.index(xr, i, 16);
                let v = e.load(types::F32X4, xa, 0);
                let r = quant(e, v, sv, lov, hiv, zv);
                let oa = e.index(or, i, 4 * size);
                if narrow {
                    let b = narrow_to_bytes(e, lo < 0, r, r);
                    let b = e.bits(types::I32X4, b);
                    let word = e.fb.ins().extractlane(b, 0u8);
                    e.store(word, oa, 0);
                    return;
                }
                for l in 0..4u8 {
                    let x = e.fb.ins().extractlane(r, l);
                    let x = e.fb.ins().ireduce(ty, x);
                    e.store(x, oa, (l as i64 * size) as i32);
                }
            });
        }
        for j in chunks * 4..inner {
            let v = e.load(types::F32, xr, (j * 4) as i32);
            let r = quant(e, v, s, qlo, qhi, z);
            let r = e.fb.ins().ireduce(ty, r);
            e.store(r, or, (j as i64 * size) as i32);
        }
    });
    Ok(())
}

pub fn dequantize(e: &mut Emitter, k: &mut KernelContext, axis: i64) -> Result<(), JitError> {
    let from = k.in_dtype(0);
    if k.in_dtype(1) != DType::F32 || k.out_dtype(0) != DType::F32 {
        return Err(k.unsupported("dequantize_linear with a non-f32 scale"));
    }
    let ty = narrow_type(k, from)?;
    let (outer, channels, inner) = layout(k, axis)?;
    let (x, scale, out) = (k.ins[0], k.ins[1], k.outs[0]);
    let size = ty.bytes() as i64;
    let signed = from.is_signed_int();
    e.loop_n(outer * channels, |e, oc| {
        let ch = e.fb.ins().urem_imm_s(oc, channels as i64);
        let sa = e.index(scale, ch, 4);
        let s = e.load(types::F32, sa, 0);
        let z = zero_point(e, k, from, ty, ch);
        let xr = e.index(x, oc, inner as i64 * size);
        let or = e.index(out, oc, (inner * 4) as i64);
        let extend = |e: &mut Emitter, v: Value| {
            if signed {
                e.fb.ins().sextend(types::I32, v)
            } else {
                e.fb.ins().uextend(types::I32, v)
            }
        };
        // Eight elements per step, as two I32X4: one 8-byte load widened to I16X8 and split
        // (8-bit), or two 8-byte loads widened to I32X4 (16-bit); lane by lane when the code
        // will be scalarised. `(q - z)` is exact in i32 and converts as the scalar path does.
        let chunks = inner / 8;
        if chunks > 0 {
            let sv = e.fb.ins().splat(types::F32X4, s);
            let zv = e.fb.ins().splat(types::I32X4, z);
            e.loop_n(chunks, |e, i| {
                let xa = e.index(xr, i, 8 * size);
                let halves = if e.flags.scalarized {
                    let mut halves = [zv; 2];
                    for (h, half) in halves.iter_mut().enumerate() {
                        for l in 0..4u8 {
                            let off = ((h * 4 + l as usize) as i64 * size) as i32;
                            let q = e.load(ty, xa, off);
                            let q = extend(e, q);
                            *half = e.fb.ins().insertlane(*half, q, l);
                        }
                    }
                    halves
                } else if size == 1 {
                    let h = if signed {
                        e.fb.ins().sload8x8(mf(), xa, 0)
                    } else {
                        e.fb.ins().uload8x8(mf(), xa, 0)
                    };
                    if signed {
                        [e.fb.ins().swiden_low(h), e.fb.ins().swiden_high(h)]
                    } else {
                        [e.fb.ins().uwiden_low(h), e.fb.ins().uwiden_high(h)]
                    }
                } else {
                    let mut halves = [zv; 2];
                    for (h, half) in halves.iter_mut().enumerate() {
                        *half = if signed {
                            e.fb.ins().sload16x4(mf(), xa, 8 * h as i32)
                        } else {
                            e.fb.ins().uload16x4(mf(), xa, 8 * h as i32)
                        };
                    }
                    halves
                };
                let oa = e.index(or, i, 32);
                for (h, q) in halves.into_iter().enumerate() {
                    let d = e.fb.ins().isub(q, zv);
                    let f = e.fb.ins().fcvt_from_sint(types::F32X4, d);
                    let r = e.fb.ins().fmul(f, sv);
                    e.store(r, oa, 16 * h as i32);
                }
            });
        }
        for j in chunks * 8..inner {
            let v = e.load(ty, xr, (j as i64 * size) as i32);
            let v = extend(e, v);
            let d = e.fb.ins().isub(v, z);
            let f = e.fb.ins().fcvt_from_sint(types::F32, d);
            let r = e.fb.ins().fmul(f, s);
            e.store(r, or, (j * 4) as i32);
        }
    });
    Ok(())
}

/// `quantized_add` (see `kestrel_ir::QuantizedAddAttrs`), bit-exact with the interpreter: per
/// element `(a - za)` and `(b - zb)` converted to f32, multiplied by their ratios, added (no fused
/// multiply-add), rounded half to even, the zero point added and the result clamped. Operands
/// broadcast (strided loop nests over the collapsed axes); when the innermost axis is contiguous
/// in both operands, eight elements per step on `I32X4`/`F32X4` (lane by lane when the code
/// will be scalarised), the rest one at a time.
pub fn quantized_add(
    e: &mut Emitter,
    k: &mut KernelContext,
    q: &kestrel_ir::QuantizedAddAttrs,
) -> Result<(), JitError> {
    let (ta, tb, to) = (k.in_dtype(0), k.in_dtype(1), k.out_dtype(0));
    let int8 = |d: DType| matches!(d, DType::U8 | DType::I8);
    if !int8(ta) || !int8(tb) || !int8(to) {
        return Err(k.unsupported("quantized_add of non-8-bit values"));
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
    let contiguous = strides[0][last] == 1 && strides[1][last] == 1;
    let (sa, sb) = (strides[0][last], strides[1][last]);
    let outer: Vec<Vec<i64>> = strides.clone();
    let (a0, b0, o0) = (k.ins[0], k.ins[1], k.outs[0]);
    let q = q.clone();
    let load = |e: &mut Emitter, dt: DType, p: Value, off: i32| -> Value {
        let v = e.load(types::I8, p, off);
        if dt == DType::I8 {
            e.fb.ins().sextend(types::I32, v)
        } else {
            e.fb.ins().uextend(types::I32, v)
        }
    };
    e.hoisting_constants(|e| {
        e.nest(&dims, &outer, &[a0, b0, o0], &mut |e, p| {
            let (pa, pb, po) = (p[0], p[1], p[2]);
            let chunks = if contiguous && !e.flags.scalarized {
                n / 8
            } else {
                0
            };
            if chunks > 0 {
                let za = e.iconst_ty(types::I32X4, q.a_zero_point as i64);
                let zb = e.iconst_ty(types::I32X4, q.b_zero_point as i64);
                let ra = e.fconst(types::F32X4, q.a_ratio.0);
                let rb = e.fconst(types::F32X4, q.b_ratio.0);
                let zy = e.iconst_ty(types::I32X4, q.zero_point as i64);
                let lo = e.iconst_ty(types::I32X4, q.min as i64);
                let hi = e.iconst_ty(types::I32X4, q.max as i64);
                e.loop_n(chunks, |e, i| {
                    let (xa, xb, xo) = (e.index(pa, i, 8), e.index(pb, i, 8), e.index(po, i, 8));
                    let widen = |e: &mut Emitter, dt: DType, p: Value| -> [Value; 2] {
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
                    };
                    let (va, vb) = (widen(e, ta, xa), widen(e, tb, xb));
                    let mut levels = [zy; 2];
                    for h in 0..2 {
                        let da = e.fb.ins().isub(va[h], za);
                        let db = e.fb.ins().isub(vb[h], zb);
                        let fa = e.fb.ins().fcvt_from_sint(types::F32X4, da);
                        let fb = e.fb.ins().fcvt_from_sint(types::F32X4, db);
                        let fa = e.fb.ins().fmul(fa, ra);
                        let fb = e.fb.ins().fmul(fb, rb);
                        let s = e.fb.ins().fadd(fa, fb);
                        let r = e.nearest(s);
                        let l = e.fb.ins().fcvt_to_sint_sat(types::I32X4, r);
                        let l = e.fb.ins().iadd(l, zy);
                        let l = e.fb.ins().smax(l, lo);
                        levels[h] = e.fb.ins().smin(l, hi);
                    }
                    // Eight i32 in [min, max] to eight bytes.
                    store8_levels(e, to == DType::I8, levels, xo);
                });
            }
            for j in chunks * 8..n {
                let ja = (j as i64 * sa) as i32;
                let jb = (j as i64 * sb) as i32;
                let a = load(e, ta, pa, ja);
                let b = load(e, tb, pb, jb);
                let y = quantized_add_scalar(e, &q, a, b);
                e.store(y, po, j as i32);
            }
        });
    });
    Ok(())
}

/// One element of [`quantized_add`] on I32 operands; the stored I8.
fn quantized_add_scalar(
    e: &mut Emitter,
    q: &kestrel_ir::QuantizedAddAttrs,
    a: Value,
    b: Value,
) -> Value {
    let da = e.fb.ins().iadd_imm_s(a, -(q.a_zero_point as i64));
    let db = e.fb.ins().iadd_imm_s(b, -(q.b_zero_point as i64));
    let fa = e.fb.ins().fcvt_from_sint(types::F32, da);
    let fb = e.fb.ins().fcvt_from_sint(types::F32, db);
    let ra = e.fconst(types::F32, q.a_ratio.0);
    let rb = e.fconst(types::F32, q.b_ratio.0);
    let fa = e.fb.ins().fmul(fa, ra);
    let fb = e.fb.ins().fmul(fb, rb);
    let s = e.fb.ins().fadd(fa, fb);
    let r = e.nearest(s);
    let l = e.fb.ins().fcvt_to_sint_sat(types::I32, r);
    let l = e.fb.ins().iadd_imm_s(l, q.zero_point as i64);
    let lo = e.iconst_ty(types::I32, q.min as i64);
    let hi = e.iconst_ty(types::I32, q.max as i64);
    let l = e.fb.ins().smax(l, lo);
    let l = e.fb.ins().smin(l, hi);
    e.fb.ins().ireduce(types::I8, l)
}
