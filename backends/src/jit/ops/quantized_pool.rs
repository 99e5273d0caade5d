//! `quantized_average_pool` and `quantized_global_average_pool` (see
//! `kestrel_ir::QuantizedPoolAttrs`), bit-exact with the interpreter: the window's sum of levels
//! in i32 minus `x_zero_point` times its taps, converted to f32, multiplied by the window's ratio
//! `x_scale / (scale · count)` (computed at compile time with `QuantizedPoolAttrs::ratio`),
//! rounded half to even, clamped and offset by the zero point.
//!
//! Global pooling sums each plane sixteen bytes per step (widened to i16 pairs, then into two
//! `I32X4` accumulators; unless the code will be scalarised), the rest one byte at a time.
//! Windowed pooling reads a copy of the plane padded with `x_zero_point` (whose taps then add
//! nothing) at compile-time tap offsets, one output at a time.

use crate::jit::context::KernelContext;
use crate::jit::emit::{mf, strides_of, Emitter};
use crate::jit::error::JitError;
use crate::jit::kernels::window::{pad_plane_of, Window};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use kestrel_ir::{DType, Graph, Node, Op, PoolAttrs, QuantizedPoolAttrs};

/// Scratch bytes of a quantized pool node (one padded plane of bytes for a window that leaves
/// the input).
pub fn scratch_bytes(g: &Graph, node: &Node) -> usize {
    match &node.op {
        Op::QuantizedAveragePool(QuantizedPoolAttrs {
            window: Some(w), ..
        }) => super::pool::scratch_bytes(g, node, w, 1),
        _ => 0,
    }
}

fn load_level(e: &mut Emitter, signed: bool, p: Value, off: i32) -> Value {
    let v = e.load(types::I8, p, off);
    if signed {
        e.fb.ins().sextend(types::I32, v)
    } else {
        e.fb.ins().uextend(types::I32, v)
    }
}

/// The output byte of a window whose levels sum to `sum` (I32, padding and all) over `taps`
/// taps, multiplied by `ratio` (F32).
fn finish(e: &mut Emitter, q: &QuantizedPoolAttrs, sum: Value, taps: usize, ratio: Value) -> Value {
    let acc =
        e.fb.ins()
            .iadd_imm_s(sum, -(q.x_zero_point as i64 * taps as i64) as i32 as i64);
    let f = e.fb.ins().fcvt_from_sint(types::F32, acc);
    let f = e.fb.ins().fmul(f, ratio);
    let r = e.nearest(f);
    let l = e.fb.ins().fcvt_to_sint_sat(types::I32, r);
    let lo = e.iconst_ty(types::I32, q.min as i64 - q.zero_point as i64);
    let hi = e.iconst_ty(types::I32, q.max as i64 - q.zero_point as i64);
    let l = e.fb.ins().smax(l, lo);
    let l = e.fb.ins().smin(l, hi);
    let l = e.fb.ins().iadd_imm_s(l, q.zero_point as i64);
    e.fb.ins().ireduce(types::I8, l)
}

pub fn lower(
    e: &mut Emitter,
    k: &mut KernelContext,
    q: &QuantizedPoolAttrs,
) -> Result<(), JitError> {
    let (from, to) = (k.in_dtype(0), k.out_dtype(0));
    let int8 = |d: DType| matches!(d, DType::U8 | DType::I8);
    if !int8(from) || !int8(to) {
        return Err(k.unsupported("quantized pooling of non-8-bit values"));
    }
    let ind = k.in_dims(0);
    if ind.len() < 3 {
        return Err(k.unsupported("quantized pooling of inputs without spatial axes"));
    }
    let signed = from == DType::I8;
    match &q.window {
        None => global(e, k, q, signed, &ind),
        Some(w) => windowed(e, k, q, w, signed, &ind),
    }
}

fn global(
    e: &mut Emitter,
    k: &mut KernelContext,
    q: &QuantizedPoolAttrs,
    signed: bool,
    ind: &[usize],
) -> Result<(), JitError> {
    let isz: usize = ind[2..].iter().product();
    let planes = ind[0] * ind[1];
    let (src, dst) = (k.ins[0], k.outs[0]);
    let q = q.clone();
    let ratio_value = q.ratio(isz);
    e.hoisting_constants(|e| {
        e.loop_n(planes, |e, p| {
            let s = e.index(src, p, isz as i64);
            let chunks = if e.flags.scalarized { 0 } else { isz / 16 };
            let mut sum = e.iconst_ty(types::I32, 0);
            if chunks > 0 {
                let zero = e.iconst_ty(types::I32X4, 0);
                let acc = e.loop_acc(chunks, &[zero, zero], |e, i, acc| {
                    let a = e.index(s, i, 16);
                    let v = e.fb.ins().load(types::I8X16, mf(), a, 0);
                    let (lo, hi) = if signed {
                        (e.fb.ins().swiden_low(v), e.fb.ins().swiden_high(v))
                    } else {
                        (e.fb.ins().uwiden_low(v), e.fb.ins().uwiden_high(v))
                    };
                    // |lo + hi| <= 510: exact in i16.
                    let pair = e.fb.ins().iadd(lo, hi);
                    let a0 = e.fb.ins().swiden_low(pair);
                    let a1 = e.fb.ins().swiden_high(pair);
                    vec![e.fb.ins().iadd(acc[0], a0), e.fb.ins().iadd(acc[1], a1)]
                });
                let v = e.fb.ins().iadd(acc[0], acc[1]);
                for l in 0..4u8 {
                    let x = e.fb.ins().extractlane(v, l);
                    sum = e.fb.ins().iadd(sum, x);
                }
            }
            let tail = isz - chunks * 16;
            if tail > 0 {
                let base = e.addr(s, (chunks * 16) as i64);
                sum = e.loop_acc(tail, &[sum], |e, i, acc| {
                    let a = e.index(base, i, 1);
                    let x = load_level(e, signed, a, 0);
                    vec![e.fb.ins().iadd(acc[0], x)]
                })[0];
            }
            let ratio = e.fconst(types::F32, ratio_value);
            let y = finish(e, &q, sum, isz, ratio);
            let d = e.index(dst, p, 1);
            e.store(y, d, 0);
        });
    });
    Ok(())
}

/// Per output position (row-major), its tap count as the interpreter counts it.
#[allow(clippy::needless_range_loop)]
fn counts(w: &Window, a: &PoolAttrs) -> Vec<usize> {
    let osz: usize = w.out_sp.iter().product();
    let mut out = Vec::with_capacity(osz);
    let mut o = vec![0usize; w.out_sp.len()];
    for _ in 0..osz {
        let (mut inside, mut in_pad) = (1usize, 1usize);
        for ax in 0..o.len() {
            let (mut ci, mut cp) = (0, 0);
            for t in 0..w.kernel[ax] {
                let c =
                    (o[ax] * w.strides[ax] + t * w.dilations[ax]) as isize - w.pads[ax].0 as isize;
                if c >= 0 && (c as usize) < w.in_sp[ax] {
                    ci += 1;
                }
                if c >= -(w.pads[ax].0 as isize) && c < (w.in_sp[ax] + w.pads[ax].1) as isize {
                    cp += 1;
                }
            }
            inside *= ci;
            in_pad *= cp;
        }
        out.push(if a.count_include_pad { in_pad } else { inside });
        for ax in (0..o.len()).rev() {
            o[ax] += 1;
            if o[ax] < w.out_sp[ax] {
                break;
            }
            o[ax] = 0;
        }
    }
    out
}

fn windowed(
    e: &mut Emitter,
    k: &mut KernelContext,
    q: &QuantizedPoolAttrs,
    a: &PoolAttrs,
    signed: bool,
    ind: &[usize],
) -> Result<(), JitError> {
    let w = Window::new(
        ind,
        &k.out_dims(0)[2..],
        &a.kernel,
        &a.strides,
        &a.dilations,
        &a.pads,
        a.auto_pad,
    )
    .map_err(|r| k.unsupported(r))?;
    let ntaps: usize = a.kernel.iter().product();
    if ntaps > 4096 {
        return Err(k.unsupported("pool windows of more than 4096 taps"));
    }
    let padded = w.needs_padding();
    let plane_dims = if padded {
        w.padded.clone()
    } else {
        w.in_sp.clone()
    };
    // Tap offsets in bytes of this 1-byte plane (`taps` counts f32 bytes).
    let taps: Vec<i64> = w.taps(&plane_dims).iter().map(|t| t / 4).collect();
    let ps = strides_of(&plane_dims);
    let osz: usize = w.out_sp.iter().product();
    let isz: usize = w.in_sp.iter().product();
    let ratios: Vec<f32> = counts(&w, a).into_iter().map(|c| q.ratio(c)).collect();
    let uniform = ratios.iter().all(|&r| r == ratios[0]);
    let ratio_table = if uniform {
        None
    } else {
        Some(k.rodata_f32(e, &ratios)?)
    };
    let fill = q.x_zero_point as i8 as u8;
    let (src, dst) = (k.ins[0], k.outs[0]);
    let scratch = k.scratch;
    let out_st = strides_of(&w.out_sp);
    let win_st: Vec<i64> = (0..w.out_sp.len())
        .map(|ax| (w.strides[ax] as i64) * ps[ax])
        .collect();
    let mut dims = w.out_sp.clone();
    let last = dims.len() - 1;
    let inner = dims[last];
    dims[last] = 1;
    let step = win_st[last];
    let (mut wst, mut ost) = (win_st.clone(), out_st.clone());
    wst[last] = 0;
    ost[last] = 0;
    let q = q.clone();
    e.loop_n(w.planes, |e, p| {
        let s = e.index(src, p, isz as i64);
        let d = e.index(dst, p, osz as i64);
        let plane = match scratch {
            Some(sc) if padded => {
                pad_plane_of(e, &w, s, sc, &[fill]);
                sc
            }
            _ => s,
        };
        let zero = e.iconst(0);
        e.nest(
            &dims,
            &[wst.clone(), ost.clone(), ost.clone()],
            &[plane, d, zero],
            &mut |e, v| {
                e.loop_n(inner, |e, j| {
                    let win = e.index(v[0], j, step);
                    let mut sum = load_level(e, signed, win, taps[0] as i32);
                    for &t in &taps[1..] {
                        let x = load_level(e, signed, win, t as i32);
                        sum = e.fb.ins().iadd(sum, x);
                    }
                    let ratio = match ratio_table {
                        Some(rt) => {
                            let oi = e.fb.ins().iadd(v[2], j);
                            let ra = e.index(rt, oi, 4);
                            e.load(types::F32, ra, 0)
                        }
                        None => e.fconst(types::F32, ratios[0]),
                    };
                    let y = finish(e, &q, sum, ntaps, ratio);
                    let o = e.index(v[1], j, 1);
                    e.store(y, o, 0);
                });
            },
        );
    });
    Ok(())
}
