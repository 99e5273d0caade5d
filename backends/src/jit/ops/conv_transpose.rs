//! Transposed convolution (f32, any number of spatial axes, strides, dilations, pads,
//! output_padding / output_shape / auto_pad as `kestrel_ir::ConvTransposeAttrs` defines them,
//! groups, optional bias; constant or run-time weights).
//!
//! Per image `n`, group `g` and block of output channels `[m0, m0 + cb)` of the group:
//! 1. the GEMM `col [cb·T, I] = Wᵀ_g [cb·T, C/g] · x_g [C/g, I]` (`T` kernel taps, `I` input
//!    pixels) with the f32 GEMM (`x_g` read in place as B), into the task's scratch: row
//!    `(m, t)` holds, for every input pixel, that pixel's contribution to tap `t` of channel `m`;
//! 2. col2im: for each channel and tap (taps unrolled at compile time, in ascending order), the
//!    box of input pixels whose tap lands inside the output is added into the output with
//!    compile-time strides (`F32X4` when the output row is contiguous).
//!
//! The output is zeroed first and the bias added last, per output channel. `Wᵀ_g`, row
//! `(m, t)` = `w[g·C/g + c, m, t]` over `c`, is computed at compile time for constant weights
//! (read-only data), else by each task for its own channels into its scratch.
//!
//! Every output element is the sum over taps in ascending order of one GEMM value each (a tap
//! reaches an output position from at most one input pixel), plus the bias: the channel blocks
//! and the task split change no bit.
//!
//! Threads: tasks split the output channels of every group ([`task_count`]); the channel block
//! `cb` keeps one col block within `JitOptions::im2col_block_bytes` (at least one channel).

use crate::jit::context::KernelContext;
use crate::jit::emit::{collapse, strides_of, Emitter};
use crate::jit::error::JitError;
use crate::jit::kernels::epilogue::OutputEpilogue;
use crate::jit::kernels::gemm;
use crate::jit::options::JitOptions;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use kestrel_ir::{ConvTransposeAttrs, Graph, Node, Tensor, ValueId};
use std::collections::HashMap;
use std::ops::Range;

/// The shape of one transposed convolution.
struct Geometry {
    n: usize,
    c: usize,
    group: usize,
    c_per_group: usize,
    /// Output channels per group (`w.dims[1]`).
    m_per_group: usize,
    in_sp: Vec<usize>,
    k_sp: Vec<usize>,
    out_sp: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    /// Per spatial axis: where the output starts in the full result (`o = i·s + t·d - begin`).
    begin: Vec<usize>,
    /// Input pixels, taps, output pixels (per channel).
    isz: usize,
    ksz: usize,
    osz: usize,
}

fn per_axis(v: &[usize], k: usize, default: usize, what: &str) -> Result<Vec<usize>, String> {
    match v.len() {
        0 => Ok(vec![default; k]),
        l if l == k && !v.contains(&0) => Ok(v.to_vec()),
        _ => Err(format!("{what} {v:?} for {k} spatial axes")),
    }
}

fn geometry(
    a: &ConvTransposeAttrs,
    x: &[usize],
    w: &[usize],
    out: &[usize],
) -> Result<Geometry, String> {
    if x.len() < 3 || w.len() != x.len() || out.len() != x.len() {
        return Err("conv_transpose needs [N, C, spatial..] input and matching weights".into());
    }
    let r = x.len() - 2;
    let (n, c, group) = (x[0], x[1], a.group);
    if group == 0 || w[0] != c || c % group != 0 {
        return Err(format!("group {group} does not fit x {x:?} and w {w:?}"));
    }
    let m_per_group = w[1];
    let (in_sp, k_sp) = (x[2..].to_vec(), w[2..].to_vec());
    let axes = kestrel_ir::infer::conv_transpose_axes(
        a.auto_pad,
        &in_sp,
        &k_sp,
        &a.strides,
        &a.dilations,
        &a.pads,
        &a.output_padding,
        &a.output_shape,
    )?;
    let out_sp: Vec<usize> = axes.iter().map(|a| a.0).collect();
    if out[0] != n || out[1] != m_per_group * group || out[2..] != out_sp[..] {
        return Err(format!(
            "output {out:?} differs from the geometry's [{n}, {}, {out_sp:?}]",
            m_per_group * group
        ));
    }
    Ok(Geometry {
        n,
        c,
        group,
        c_per_group: c / group,
        m_per_group,
        strides: per_axis(&a.strides, r, 1, "strides")?,
        dilations: per_axis(&a.dilations, r, 1, "dilations")?,
        begin: axes.iter().map(|a| a.1).collect(),
        isz: in_sp.iter().product(),
        ksz: k_sp.iter().product(),
        osz: out_sp.iter().product(),
        in_sp,
        k_sp,
        out_sp,
    })
}

fn geometry_of(g: &Graph, node: &Node, a: &ConvTransposeAttrs) -> Option<Geometry> {
    let dims = |v: ValueId| g.ty(v).dims();
    geometry(
        a,
        &dims(node.inputs[0])?,
        &dims(*node.inputs.get(1)?)?,
        &dims(node.outputs[0])?,
    )
    .ok()
}

/// Multiply-adds of the GEMMs.
fn macs(geo: &Geometry) -> usize {
    geo.n * geo.c * geo.m_per_group * geo.ksz * geo.isz
}

/// Tasks: up to `opts.threads`, at least `opts.min_task_macs` each, at most one per output
/// channel of a group.
pub fn task_count(g: &Graph, node: &Node, a: &ConvTransposeAttrs, opts: &JitOptions) -> usize {
    let Some(geo) = geometry_of(g, node, a) else {
        return 1;
    };
    let min = opts.min_task_macs.max(1);
    let work = macs(&geo);
    if opts.threads <= 1 || work < 2 * min {
        return 1;
    }
    opts.threads.min(work / min).min(geo.m_per_group).max(1)
}

/// The output channels (of every group) task `t` of `tasks` computes.
fn task_channels(geo: &Geometry, tasks: usize, t: usize) -> Range<usize> {
    let m = geo.m_per_group;
    let tasks = tasks.max(1);
    (m * t / tasks)..(m * (t + 1) / tasks)
}

/// Channels per col block for a task of `channels` channels.
fn block_channels(geo: &Geometry, channels: usize, opts: &JitOptions) -> usize {
    let per_channel = (geo.ksz * geo.isz * 4).max(1);
    (opts.im2col_block_bytes / per_channel).clamp(1, channels.max(1))
}

/// Scratch of one task: its col block, then (run-time weights only) its rows of `Wᵀ`.
fn task_scratch(geo: &Geometry, channels: usize, const_w: bool, opts: &JitOptions) -> usize {
    let col = block_channels(geo, channels, opts) * geo.ksz * geo.isz * 4;
    let wt = if const_w {
        0
    } else {
        geo.group * channels * geo.ksz * geo.c_per_group * 4
    };
    col + wt
}

/// The largest task's scratch, times the number of tasks.
fn max_task_scratch(geo: &Geometry, tasks: usize, const_w: bool, opts: &JitOptions) -> usize {
    (0..tasks.max(1))
        .map(|t| task_scratch(geo, task_channels(geo, tasks, t).len(), const_w, opts))
        .max()
        .unwrap_or(0)
}

pub fn scratch_bytes(
    g: &Graph,
    node: &Node,
    a: &ConvTransposeAttrs,
    consts: &HashMap<ValueId, Tensor>,
    tasks: usize,
    opts: &JitOptions,
) -> usize {
    let Some(geo) = geometry_of(g, node, a) else {
        return 0;
    };
    let const_w = consts.contains_key(&node.inputs[1]);
    max_task_scratch(&geo, tasks, const_w, opts) * tasks.max(1)
}

/// `Wᵀ` for constant weights: `[group][m][t][c]` from `w [group·C/g][m][t]`.
fn transposed_weights(geo: &Geometry, w: &[f32]) -> Vec<f32> {
    let (cg, mg, ksz) = (geo.c_per_group, geo.m_per_group, geo.ksz);
    let mut out = vec![0.0f32; w.len()];
    for g in 0..geo.group {
        for c in 0..cg {
            for m in 0..mg {
                for t in 0..ksz {
                    out[((g * mg + m) * ksz + t) * cg + c] = w[((g * cg + c) * mg + m) * ksz + t];
                }
            }
        }
    }
    out
}

pub fn lower(
    e: &mut Emitter,
    k: &mut KernelContext,
    a: &ConvTransposeAttrs,
) -> Result<(), JitError> {
    k.require_f32()?;
    let geo =
        geometry(a, &k.in_dims(0), &k.in_dims(1), &k.out_dims(0)).map_err(|r| k.unsupported(r))?;
    let (x, w, out) = (k.ins[0], k.ins[1], k.outs[0]);
    let bias = k.ins.get(2).copied();
    let const_wt = match k.const_in(1) {
        Some(t) => {
            let wt = transposed_weights(&geo, &t.to_f32_vec());
            Some(k.rodata_f32(e, &wt)?)
        }
        None => None,
    };
    let tasks = k.tasks.max(1);
    let task_scratch_bytes = max_task_scratch(&geo, tasks, const_wt.is_some(), k.opts);
    let scratch = k.scratch;
    let opts = k.opts;
    if geo.n == 0 || geo.m_per_group == 0 || geo.osz == 0 {
        return Ok(());
    }
    k.for_task(e, |e, t| {
        let chans = task_channels(&geo, tasks, t);
        if chans.is_empty() {
            return;
        }
        let sc = scratch.map(|s| e.addr(s, (t * task_scratch_bytes) as i64));
        task(e, &geo, opts, x, w, const_wt, bias, out, sc, chans);
    });
    Ok(())
}

/// The whole node restricted to output channels `chans` of every group.
#[allow(clippy::too_many_arguments)]
fn task(
    e: &mut Emitter,
    geo: &Geometry,
    opts: &JitOptions,
    x: Value,
    w: Value,
    const_wt: Option<Value>,
    bias: Option<Value>,
    out: Value,
    scratch: Option<Value>,
    chans: Range<usize>,
) {
    let (cg, mg, ksz, isz, osz) = (geo.c_per_group, geo.m_per_group, geo.ksz, geo.isz, geo.osz);
    let mt = chans.len();
    let cb = block_channels(geo, mt, opts);
    let gemm_runs = cg > 0 && ksz > 0 && isz > 0;
    // Where this task's rows of Wᵀ are: group `g`'s rows start `wt_group_rows · T · C/g` f32 after
    // `wt`, and channel `chans.start + m` is row block `wt_first + m` of its group.
    let (wt, wt_group_rows, wt_first) = match const_wt {
        Some(p) => (p, mg, chans.start),
        None if gemm_runs => {
            let sc = scratch.expect("scratch_bytes reserves Wᵀ");
            let wt = e.addr(sc, (cb * ksz * isz * 4) as i64);
            transpose_weights(e, geo, w, wt, chans.clone());
            (wt, mt, 0)
        }
        None => (w, mt, 0),
    };
    let col = scratch;
    let post = OutputEpilogue::none();
    e.loop_n(geo.n, |e, img| {
        let xi = e.index(x, img, (geo.c * isz * 4) as i64);
        let oi = e.index(out, img, (geo.group * mg * osz * 4) as i64);
        e.loop_n(geo.group, |e, g| {
            let xg = e.index(xi, g, (cg * isz * 4) as i64);
            let og = e.index(oi, g, (mg * osz * 4) as i64);
            let og = e.addr(og, (chans.start * osz * 4) as i64);
            e.fill_f32(og, mt * osz, 0.0);
            if gemm_runs {
                let col = col.expect("scratch_bytes reserves the col block");
                let wg = e.index(wt, g, (wt_group_rows * ksz * cg * 4) as i64);
                let wg = e.addr(wg, (wt_first * ksz * cg * 4) as i64);
                // One block of `nb` channels starting `first` channels into the task's.
                let block = |e: &mut Emitter, first: Value, nb: usize| {
                    let a = e.index(wg, first, (ksz * cg * 4) as i64);
                    let b = gemm::BOperand::InPlace { b: xg, ldb: isz };
                    gemm::emit(e, a, cg, b, col, isz, nb * ksz, isz, cg, None);
                    let ob = e.index(og, first, (osz * 4) as i64);
                    col2im(e, geo, col, ob, nb);
                };
                let full = mt / cb;
                e.loop_n(full, |e, i| {
                    let first = e.fb.ins().imul_imm_s(i, cb as i64);
                    block(e, first, cb);
                });
                if !mt.is_multiple_of(cb) {
                    let first = e.iconst((full * cb) as i64);
                    block(e, first, mt % cb);
                }
            }
            if let Some(b) = bias {
                let bg = e.index(b, g, (mg * 4) as i64);
                let bg = e.addr(bg, (chans.start * 4) as i64);
                post.apply_rows(e, og, Some(bg), mt, osz, osz);
            }
        });
    });
}

/// Writes this task's rows of `Wᵀ` at `wt`: `wt[((g·mt + m) · T + t) · C/g + c] =
/// w[((g·C/g + c) · M/g + chans.start + m) · T + t]`.
fn transpose_weights(e: &mut Emitter, geo: &Geometry, w: Value, wt: Value, chans: Range<usize>) {
    let (cg, mg, ksz) = (geo.c_per_group, geo.m_per_group, geo.ksz);
    let run = chans.len() * ksz;
    e.loop_n(geo.group, |e, g| {
        let wg = e.index(w, g, (cg * mg * ksz * 4) as i64);
        let wg = e.addr(wg, (chans.start * ksz * 4) as i64);
        let dg = e.index(wt, g, (run * cg * 4) as i64);
        e.loop_n(cg, |e, c| {
            let src = e.index(wg, c, (mg * ksz * 4) as i64);
            let dst = e.index(dg, c, 4);
            e.loop_n(run, |e, j| {
                let s = e.index(src, j, 4);
                let v = e.load(types::F32, s, 0);
                let d = e.index(dst, j, (cg * 4) as i64);
                e.store(v, d, 0);
            });
        });
    });
}

/// Adds the col block (`nb` channels × taps rows of `I` pixels) into the output channels at
/// `ob` (`nb` planes of `O` pixels).
fn col2im(e: &mut Emitter, geo: &Geometry, col: Value, ob: Value, nb: usize) {
    let r = geo.in_sp.len();
    let (ksz, isz, osz) = (geo.ksz, geo.isz, geo.osz);
    let in_strides = strides_of(&geo.in_sp);
    let out_strides = strides_of(&geo.out_sp);
    let k_strides = strides_of(&geo.k_sp);
    e.loop_n(nb, |e, m| {
        let cm = e.index(col, m, (ksz * isz * 4) as i64);
        let om = e.index(ob, m, (osz * 4) as i64);
        for t in 0..ksz {
            // The box of input pixels whose tap `t` lands in the output, per axis.
            let mut dims = Vec::with_capacity(r);
            let (mut col_off, mut out_off) = (0i64, 0i64);
            let mut out_step = Vec::with_capacity(r);
            let mut col_step = Vec::with_capacity(r);
            for ax in 0..r {
                let ta = (t as i64 / k_strides[ax]) % geo.k_sp[ax] as i64;
                let (s, d) = (geo.strides[ax] as i64, geo.dilations[ax] as i64);
                let shift = ta * d - geo.begin[ax] as i64; // o = i·s + shift
                let lo = if shift >= 0 { 0 } else { (-shift + s - 1) / s };
                let hi = (geo.out_sp[ax] as i64 - shift + s - 1)
                    .div_euclid(s)
                    .clamp(0, geo.in_sp[ax] as i64);
                let lo = lo.min(hi);
                dims.push((hi - lo) as usize);
                col_off += lo * in_strides[ax];
                out_off += (lo * s + shift) * out_strides[ax];
                col_step.push(in_strides[ax] * 4);
                out_step.push(s * out_strides[ax] * 4);
            }
            if dims.contains(&0) {
                continue;
            }
            let (dims, steps) = collapse(&dims, &[col_step, out_step]);
            let c0 = e.addr(cm, (t * isz) as i64 * 4 + col_off * 4);
            let o0 = e.addr(om, out_off * 4);
            let inner = *dims.last().expect("collapse keeps an axis");
            let (cs, os) = (steps[0][dims.len() - 1], steps[1][dims.len() - 1]);
            e.nest(&dims, &steps, &[c0, o0], &mut |e, p| {
                add_run(e, p[0], cs, p[1], os, inner)
            });
        }
    });
}

/// `dst[j·ds] += src[j·ss]` for `j < n` (byte strides), four at a time when both are contiguous.
fn add_run(e: &mut Emitter, src: Value, ss: i64, dst: Value, ds: i64, n: usize) {
    let vector = ss == 4 && ds == 4;
    let chunks = if vector { n / 4 } else { 0 };
    e.loop_n(chunks, |e, i| {
        let s = e.index(src, i, 16);
        let d = e.index(dst, i, 16);
        let a = e.load(types::F32X4, s, 0);
        let b = e.load(types::F32X4, d, 0);
        let v = e.fb.ins().fadd(b, a);
        e.store(v, d, 0);
    });
    let (s0, d0) = (
        e.addr(src, chunks as i64 * 4 * ss),
        e.addr(dst, chunks as i64 * 4 * ds),
    );
    e.loop_n(n - chunks * 4, |e, j| {
        let s = e.index(s0, j, ss);
        let d = e.index(d0, j, ds);
        let a = e.load(types::F32, s, 0);
        let b = e.load(types::F32, d, 0);
        let v = e.fb.ins().fadd(b, a);
        e.store(v, d, 0);
    });
}
