//! Pooling kernels (f32): MaxPool, AveragePool, LpPool (p = 1, 2) over any number of spatial
//! axes, and the global pools.
//!
//! Each `[N, C]` plane is first copied into a scratch plane padded with the neutral value (-inf
//! for max, 0 otherwise) wide enough for every window (explicit pads and the `ceil_mode`
//! overhang), unless no window leaves the input. Windows then read the padded plane at
//! compile-time tap offsets. Max pooling keeps a tap only when it compares greater (NaN taps are
//! skipped, as in the interpreter); averages multiply by a per-output reciprocal of the tap count
//! computed at compile time (in-bounds taps, or taps within the explicit pads with
//! `count_include_pad`).

use super::conv::even_ranges;
use crate::jit::context::KernelContext;
use crate::jit::emit::{strides_of, Emitter};
use crate::jit::error::JitError;
use crate::jit::kernels::window::{pad_plane, pad_plane_of, Window};
use crate::jit::options::JitOptions;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use kestrel_ir::{DType, Graph, Node, Op, PoolAttrs, PoolKind};

/// Units of work per window tap (per input element of a global pool) for [`task_count`]: a load,
/// perhaps a shuffle, and a max or add on four values, against `JitOptions::min_task_macs`'s
/// multiply-adds (a quarter of a 4-lane FMA each).
const UNITS_PER_TAP: usize = 4;

/// Number of tasks a pooling node (`Pool`, `GlobalPool`) is split into: its `[N, C]` planes in
/// even ranges, when there are at least two tasks' worth of taps (see [`UNITS_PER_TAP`]).
pub fn task_count(g: &Graph, node: &Node, opts: &JitOptions) -> usize {
    let min = opts.min_task_macs.max(1);
    let (Some(ind), Some(outd)) = (g.ty(node.inputs[0]).dims(), g.ty(node.outputs[0]).dims())
    else {
        return 1;
    };
    if outd.len() < 3 {
        return 1;
    }
    let taps = match &node.op {
        Op::Pool(a) => outd
            .iter()
            .chain(&a.kernel)
            .fold(1usize, |n, &d| n.saturating_mul(d)),
        Op::GlobalPool(_) => ind.iter().fold(1usize, |n, &d| n.saturating_mul(d)),
        _ => 0,
    };
    let work = taps.saturating_mul(UNITS_PER_TAP);
    if work < 2 * min {
        return 1;
    }
    opts.threads.min(work / min).min(outd[0] * outd[1]).max(1)
}

/// Scratch bytes of a pool node: one padded plane per task.
pub fn scratch_bytes(g: &Graph, node: &Node, a: &PoolAttrs, tasks: usize) -> usize {
    let (Some(ind), Some(outd)) = (g.ty(node.inputs[0]).dims(), g.ty(node.outputs[0]).dims())
    else {
        return 0;
    };
    if outd.len() < 3 {
        return 0;
    }
    match Window::new(
        &ind,
        &outd[2..],
        &a.kernel,
        &a.strides,
        &a.dilations,
        &a.pads,
        a.auto_pad,
    ) {
        Ok(w) if w.needs_padding() => {
            tasks.max(1) * w.padded_elems() * g.ty(node.inputs[0]).dtype.size()
        }
        _ => 0,
    }
}

#[allow(clippy::needless_range_loop)]
pub fn pool(e: &mut Emitter, k: &mut KernelContext, a: &PoolAttrs) -> Result<(), JitError> {
    if a.kind == PoolKind::Max && byte_signedness(k.in_dtype(0)).is_some() {
        return max_pool_8bit(e, k, a);
    }
    k.require_f32()?;
    let ind = k.in_dims(0);
    let outd = k.out_dims(0);
    let w = Window::new(
        &ind,
        &outd[2..],
        &a.kernel,
        &a.strides,
        &a.dilations,
        &a.pads,
        a.auto_pad,
    )
    .map_err(|r| k.unsupported(r))?;
    if let PoolKind::Lp(p) = a.kind {
        if p != 1 && p != 2 {
            return Err(k.unsupported(format!("lp_pool with p = {p}")));
        }
    }
    let ntaps: usize = a.kernel.iter().product();
    if ntaps > 4096 {
        return Err(k.unsupported("pool windows of more than 4096 taps"));
    }
    let osz: usize = w.out_sp.iter().product();
    let isz: usize = w.in_sp.iter().product();
    let padded = w.needs_padding();
    let plane_dims = if padded {
        w.padded.clone()
    } else {
        w.in_sp.clone()
    };
    let taps = w.taps(&plane_dims);
    let ps = strides_of(&plane_dims);
    // Per-output reciprocal tap counts for averages.
    let recip = if a.kind == PoolKind::Average {
        let mut r = Vec::with_capacity(osz);
        let mut o = vec![0usize; w.out_sp.len()];
        for _ in 0..osz {
            let mut inside = 1usize;
            let mut in_pad = 1usize;
            for ax in 0..o.len() {
                let (mut ci, mut cp) = (0, 0);
                for t in 0..w.kernel[ax] {
                    let c = (o[ax] * w.strides[ax] + t * w.dilations[ax]) as isize
                        - w.pads[ax].0 as isize;
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
            let cnt = if a.count_include_pad { in_pad } else { inside };
            r.push(1.0 / cnt as f32);
            for ax in (0..o.len()).rev() {
                o[ax] += 1;
                if o[ax] < w.out_sp[ax] {
                    break;
                }
                o[ax] = 0;
            }
        }
        let uniform = r.iter().all(|&x| x == r[0]);
        Some((r, uniform))
    } else {
        None
    };
    let recip_ptr = match &recip {
        Some((r, false)) => Some(k.rodata_f32(e, r)?),
        _ => None,
    };
    let fill = if a.kind == PoolKind::Max {
        f32::NEG_INFINITY
    } else {
        0.0
    };
    let (src, dst) = (k.ins[0], k.outs[0]);
    let scratch = k.scratch;
    let kind = a.kind;
    let out_st: Vec<i64> = strides_of(&w.out_sp);
    // Outer output axes are a loop nest; the innermost output axis is handled in the body, four
    // outputs per `F32X4` (their windows `step` bytes apart in the plane) plus a scalar tail.
    let last = w.out_sp.len() - 1;
    let inner = w.out_sp[last];
    let step = (w.strides[last] as i64) * ps[last] * 4;
    let mut dims = w.out_sp[..last].to_vec();
    dims.push(1);
    let mut win_st: Vec<i64> = (0..last)
        .map(|ax| (w.strides[ax] as i64) * ps[ax] * 4)
        .collect();
    win_st.push(0);
    let mut o_st: Vec<i64> = out_st[..last].iter().map(|x| x * 4).collect();
    o_st.push(0);
    let mut idx_st: Vec<i64> = out_st[..last].to_vec();
    idx_st.push(0);
    let chunks = if e.flags.has_simd() { inner / 4 } else { 0 };
    // Chunks `c` whose paired loads (columns `8c + kx .. 8c + kx + 8`) stay inside the plane
    // row, for stride 2 along the row.
    let row_len = plane_dims[last];
    let span = (w.kernel[last] - 1) * w.dilations[last] + 8;
    let paired_chunks = match w.strides[last] == 2 && ps[last] == 1 {
        true if row_len >= span => ((row_len - span) / 8 + 1).min(chunks),
        _ => 0,
    };
    // acc ⊕ v for one tap, on F32 or F32X4.
    let combine = |e: &mut Emitter, acc: Value, v: Value| -> Value {
        match kind {
            // Keeps a tap only when it compares greater (NaN taps are skipped): `acc < v ? v :
            // acc`, one `maxps`/`maxss` on x86-64 rather than a blend or a branch.
            PoolKind::Max => e.raise_to(acc, v),
            PoolKind::Average | PoolKind::Lp(1) => {
                let v = if matches!(kind, PoolKind::Lp(_)) {
                    e.fb.ins().fabs(v)
                } else {
                    v
                };
                e.fb.ins().fadd(acc, v)
            }
            PoolKind::Lp(_) => e.fma(v, v, acc),
        }
    };
    // The pooled value from the accumulator; `oi` is the (first) output index.
    let finish = |e: &mut Emitter, acc: Value, oi: Value, ty: types::Type| -> Value {
        match (&recip, recip_ptr) {
            (Some((_, _)), Some(rp)) => {
                let a = e.index(rp, oi, 4);
                let m = e.load(ty, a, 0);
                e.fb.ins().fmul(acc, m)
            }
            (Some((r, true)), None) => {
                let m = e.fconst(ty, r[0]);
                e.fb.ins().fmul(acc, m)
            }
            _ if kind == PoolKind::Lp(2) => e.fb.ins().sqrt(acc),
            _ => acc,
        }
    };
    let parts = even_ranges(w.planes, k.tasks);
    let scratch_per_task = (w.padded_elems() * 4) as i64;
    k.for_task(e, |e, t| {
        let scratch = scratch.map(|sc| e.addr(sc, t as i64 * scratch_per_task));
        let r = parts[t].clone();
        e.loop_range(r.start as i64, r.end as i64, 1, |e, p| {
            let s = e.index(src, p, (isz * 4) as i64);
            let d = e.index(dst, p, (osz * 4) as i64);
            let plane = match scratch {
                Some(sc) if padded => {
                    pad_plane(e, &w, s, sc, fill);
                    sc
                }
                _ => s,
            };
            let zero_idx = e.iconst(0);
            let ops = vec![win_st.clone(), o_st.clone(), idx_st.clone()];
            e.nest(&dims, &ops, &[plane, d, zero_idx], &mut |e, q| {
                let (win, out, oi) = (q[0], q[1], q[2]);
                // Four outputs per vector: with stride 2, each tap's four values are the even lanes
                // of two loads (`deinterleave`) in the chunks whose second load stays inside the
                // plane row; elsewhere lane by lane.
                let chunk = |e: &mut Emitter, c: Value, paired: bool| {
                    let wc = e.index(win, c, 4 * step);
                    let oc = e.index(out, c, 16);
                    let c4 = e.fb.ins().imul_imm_s(c, 4);
                    let ic = e.fb.ins().iadd(oi, c4);
                    let mut acc = e.fconst(types::F32X4, fill);
                    for &t in &taps {
                        let v = if step == 4 {
                            e.load(types::F32X4, wc, t as i32)
                        } else if paired {
                            let lo = e.load(types::F32X4, wc, t as i32);
                            let hi = e.load(types::F32X4, wc, t as i32 + 16);
                            e.deinterleave(lo, hi, false)
                        } else {
                            let x0 = e.load(types::F32, wc, t as i32);
                            let mut v = e.fb.ins().splat(types::F32X4, x0);
                            for l in 1..4u8 {
                                let x = e.load(types::F32, wc, (t + step * l as i64) as i32);
                                v = e.fb.ins().insertlane(v, x, l);
                            }
                            v
                        };
                        acc = combine(e, acc, v);
                    }
                    let r = finish(e, acc, ic, types::F32X4);
                    e.store(r, oc, 0);
                };
                e.loop_n(paired_chunks, |e, c| chunk(e, c, true));
                e.loop_range(paired_chunks as i64, chunks as i64, 1, |e, c| {
                    chunk(e, c, false)
                });
                for j in chunks * 4..inner {
                    let mut acc = e.fconst(types::F32, fill);
                    for &t in &taps {
                        let v = e.load(types::F32, win, (t + step * j as i64) as i32);
                        acc = combine(e, acc, v);
                    }
                    let ij = e.fb.ins().iadd_imm_s(oi, j as i64);
                    let r = finish(e, acc, ij, types::F32);
                    e.store(r, out, (4 * j) as i32);
                }
            });
        });
    });
    Ok(())
}

pub fn global_pool(e: &mut Emitter, k: &mut KernelContext, kind: PoolKind) -> Result<(), JitError> {
    if let (PoolKind::Max, Some(signed)) = (kind, byte_signedness(k.in_dtype(0))) {
        return global_max_pool_8bit(e, k, signed);
    }
    k.require_f32()?;
    let ind = k.in_dims(0);
    if ind.len() < 3 {
        return Err(k.unsupported("global pooling of inputs without spatial axes"));
    }
    if let PoolKind::Lp(p) = kind {
        if p != 1 && p != 2 {
            return Err(k.unsupported(format!("global_lp_pool with p = {p}")));
        }
    }
    let planes = ind[0] * ind[1];
    let isz: usize = ind[2..].iter().product();
    let (src, dst) = (k.ins[0], k.outs[0]);
    let parts = even_ranges(planes, k.tasks);
    k.for_task(e, |e, t| {
        let r = parts[t].clone();
        e.loop_range(r.start as i64, r.end as i64, 1, |e, p| {
            let s = e.index(src, p, (isz * 4) as i64);
            let r = reduce_row(e, s, isz, kind);
            let d = e.index(dst, p, 4);
            e.store(r, d, 0);
        });
    });
    Ok(())
}

/// Reduces `n` contiguous f32 at `s` (max skipping NaN taps / mean / Lp1 / Lp2), vectorised.
pub fn reduce_row(e: &mut Emitter, s: Value, n: usize, kind: PoolKind) -> Value {
    let is_max = kind == PoolKind::Max;
    let init = if is_max { f32::NEG_INFINITY } else { 0.0 };
    let chunks = n / 4;
    let step = |e: &mut Emitter, acc: Value, v: Value| -> Value {
        match kind {
            PoolKind::Max => e.raise_to(acc, v),
            PoolKind::Average => e.fb.ins().fadd(acc, v),
            PoolKind::Lp(1) => {
                let a = e.fb.ins().fabs(v);
                e.fb.ins().fadd(acc, a)
            }
            PoolKind::Lp(_) => e.fma(v, v, acc),
        }
    };
    let v0 = e.fconst(types::F32X4, init);
    let acc = e.loop_acc(chunks, &[v0], |e, i, acc| {
        let a = e.index(s, i, 16);
        let v = e.load(types::F32X4, a, 0);
        vec![step(e, acc[0], v)]
    })[0];
    let mut r = if is_max {
        e.hminmax(acc, true)
    } else {
        e.hsum(acc)
    };
    if is_max && chunks > 0 {
        // hminmax's fmax propagates NaN lanes only if a lane held NaN, which `step` never stores.
    }
    if chunks == 0 {
        r = e.fconst(types::F32, init);
    }
    for j in chunks * 4..n {
        let v = e.load(types::F32, s, (j * 4) as i32);
        r = step(e, r, v);
    }
    match kind {
        PoolKind::Average => {
            let m = e.fconst(types::F32, 1.0 / n as f32);
            e.fb.ins().fmul(r, m)
        }
        PoolKind::Lp(2) => e.fb.ins().sqrt(r),
        _ => r,
    }
}

/// `Some(signed)` for the 8-bit integer types max pooling takes as they are (quantized data:
/// the maximum commutes with the monotone dequantization).
pub(super) fn byte_signedness(dt: DType) -> Option<bool> {
    match dt {
        DType::U8 => Some(false),
        DType::I8 => Some(true),
        _ => None,
    }
}

fn byte_max(e: &mut Emitter, signed: bool, a: Value, b: Value) -> Value {
    if signed {
        e.fb.ins().smax(a, b)
    } else {
        e.fb.ins().umax(a, b)
    }
}

/// Max pooling of u8 or i8 planes: the padded plane holds the type's minimum, one output at a
/// time over the compile-time tap offsets.
fn max_pool_8bit(e: &mut Emitter, k: &mut KernelContext, a: &PoolAttrs) -> Result<(), JitError> {
    let signed = byte_signedness(k.in_dtype(0)).expect("checked by the caller");
    if k.out_dtype(0) != k.in_dtype(0) {
        return Err(k.unsupported("max pooling to another dtype"));
    }
    let w = Window::new(
        &k.in_dims(0),
        &k.out_dims(0)[2..],
        &a.kernel,
        &a.strides,
        &a.dilations,
        &a.pads,
        a.auto_pad,
    )
    .map_err(|r| k.unsupported(r))?;
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
    let fill = if signed { 0x80u8 } else { 0 };
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
    // Sixteen outputs per vector along the row, for strides 1 and 2 along it (stride 2: the even
    // bytes of two loads), in the chunks whose loads stay inside the plane row; then one by one.
    let row_len = plane_dims[last] as i64;
    let reach = ((w.kernel[last] - 1) * w.dilations[last]) as i64;
    let vector_chunks = match step {
        1 | 2 if e.flags.has_simd() && !e.flags.scalarized && e.flags.has_byte_shuffle() => {
            // Chunk `c` reads bytes up to `16·step·c + reach + 16·step - 1`.
            let room = row_len - reach - 16 * step;
            let fit = if room < 0 { 0 } else { room / (16 * step) + 1 };
            (fit as usize).min(inner / 16)
        }
        _ => 0,
    };
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
        e.nest(
            &dims,
            &[wst.clone(), ost.clone()],
            &[plane, d],
            &mut |e, q| {
                e.loop_n(vector_chunks, |e, c| {
                    let win = e.index(q[0], c, 16 * step);
                    let mut acc: Option<Value> = None;
                    for &t in &taps {
                        let v = if step == 1 {
                            e.load(types::I8X16, win, t as i32)
                        } else {
                            let lo = e.load(types::I8X16, win, t as i32);
                            let hi = e.load(types::I8X16, win, t as i32 + 16);
                            e.even_bytes(lo, hi)
                        };
                        acc = Some(match acc {
                            Some(a) => byte_max(e, signed, a, v),
                            None => v,
                        });
                    }
                    let o = e.index(q[1], c, 16);
                    e.store(acc.expect("a window has taps"), o, 0);
                });
                e.loop_range((vector_chunks * 16) as i64, inner as i64, 1, |e, j| {
                    let win = e.index(q[0], j, step);
                    let mut acc = e.load(types::I8, win, taps[0] as i32);
                    for &t in &taps[1..] {
                        let v = e.load(types::I8, win, t as i32);
                        acc = byte_max(e, signed, acc, v);
                    }
                    let o = e.index(q[1], j, 1);
                    e.store(acc, o, 0);
                });
            },
        );
    });
    Ok(())
}

fn global_max_pool_8bit(
    e: &mut Emitter,
    k: &mut KernelContext,
    signed: bool,
) -> Result<(), JitError> {
    let ind = k.in_dims(0);
    if ind.len() < 3 || k.out_dtype(0) != k.in_dtype(0) {
        return Err(k.unsupported("global max pooling of 8-bit data without spatial axes"));
    }
    let isz: usize = ind[2..].iter().product();
    let (src, dst) = (k.ins[0], k.outs[0]);
    e.loop_n(ind[0] * ind[1], |e, p| {
        let s = e.index(src, p, isz as i64);
        let first = e.load(types::I8, s, 0);
        let r = e.loop_acc(isz - 1, &[first], |e, i, acc| {
            let a = e.index(s, i, 1);
            let v = e.load(types::I8, a, 1);
            vec![byte_max(e, signed, acc[0], v)]
        })[0];
        let d = e.index(dst, p, 1);
        e.store(r, d, 0);
    });
    Ok(())
}
