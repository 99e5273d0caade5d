//! Convolution (f32, constant or run-time weights, any number of spatial axes, stride, padding, dilation
//! and groups).
//!
//! Per image and group, `out_g [M/g, P] = W_g [M/g, K] · col_g [K, P]` (`K = C/g · prod(kernel)`,
//! `P` output pixels) through `emit_gemm_unpacked`, where:
//! - a 1×1 convolution with unit strides and no padding uses the input itself as `col_g`;
//! - otherwise `col_g` is built by im2col in the node's arena scratch: the tap ranges that fall
//!   inside the input are computed at compile time, so rows are contiguous copies (unit stride)
//!   or strided copies, and zeros fill the padding;
//! - depthwise convolution (`group == C == M`) has its own kernels. 2-D with at least four output
//!   columns and a column stride of 1 or 2 ([`depthwise_2d_padded`], the common case): each input
//!   plane is copied into rows padded with zeros left and right, then every output row is computed
//!   four columns per `F32X4` (the last group overlapping), stride 2 by de-interleaving two loads;
//!   the top and bottom edge rows use only their valid kernel rows. Other 2-D shapes read the
//!   input in place with scalar edge columns ([`depthwise_2d`]); N-d ones use a zero-padded plane.
//!
//! The bias is added in a separate vectorised pass over each output channel (the GEMM epilogue
//! adds per-column biases, and here channels are rows).
//!
//! Threads ([`task_count`] tasks, each a compile-time specialised copy of the code):
//! - GEMM convolutions split the output pixels by rows of the first spatial axis; task `t` builds
//!   the im2col columns of its own pixels (a compact `[K, pixels_t]` block of the scratch, so the
//!   blocks are disjoint) and multiplies them. When there are too few pixels per task, tasks split
//!   the output channels instead and each builds the whole `col` in its own scratch block.
//! - Depthwise convolutions split the `N·C` planes, one padded-plane scratch per task.

use super::winograd;
use crate::jit::context::KernelContext;
use crate::jit::emit::{strides_of, Emitter};
use crate::jit::error::JitError;
use crate::jit::kernels::epilogue::OutputEpilogue;
use crate::jit::kernels::gemm;
use crate::jit::kernels::window::{pad_plane, Window};
use crate::jit::options::JitOptions;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use kestrel_ir::{ConvAttrs, Graph, Node, NodeId, Tensor, ValueId};
use std::collections::{BTreeMap, HashMap};

/// The shape of one convolution: batch `n`, input and output channels `c`, `m` in `group` groups,
/// the sliding window over the spatial axes, and the derived sizes the kernels need.
pub(super) struct ConvGeometry {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) m: usize,
    pub(super) group: usize,
    pub(super) c_per_group: usize,
    pub(super) m_per_group: usize,
    pub(super) w: Window,
    /// Elements per input image / output image.
    pub(super) in_img: usize,
    pub(super) out_img: usize,
    /// Output pixels per channel and taps per channel.
    pub(super) p: usize,
    pub(super) taps: usize,
    /// Byte budget of one im2col block (see [`block_rows`]).
    pub(super) col_block: usize,
}

pub(super) fn geometry(
    in_dims: &[usize],
    w_dims: &[usize],
    out_dims: &[usize],
    a: &ConvAttrs,
) -> Result<ConvGeometry, String> {
    if in_dims.len() < 3 || w_dims.len() != in_dims.len() || out_dims.len() != in_dims.len() {
        return Err("conv needs [N, C, spatial..] input and matching weights".into());
    }
    let group = a.group.max(1);
    let (n, c, m) = (in_dims[0], in_dims[1], w_dims[0]);
    let kernel = w_dims[2..].to_vec();
    let w = Window::new(
        in_dims,
        &out_dims[2..],
        &kernel,
        &a.strides,
        &a.dilations,
        &a.pads,
        a.auto_pad,
    )?;
    let in_img = in_dims[1..].iter().product();
    let out_img = out_dims[1..].iter().product();
    let p = out_dims[2..].iter().product();
    let taps = kernel.iter().product();
    Ok(ConvGeometry {
        n,
        c,
        m,
        group,
        c_per_group: c / group,
        m_per_group: m / group,
        w,
        in_img,
        out_img,
        p,
        taps,
        col_block: JitOptions::default().im2col_block_bytes,
    })
}

fn is_depthwise(g: &ConvGeometry) -> bool {
    g.group == g.c && g.m == g.c && g.group > 1
}

/// 2-D depthwise convolutions are computed from the input plane directly, without a padded copy.
fn is_direct_depthwise_2d(g: &ConvGeometry) -> bool {
    g.w.kernel.len() == 2 && g.taps <= 49
}

pub(super) fn is_direct_1x1(g: &ConvGeometry) -> bool {
    g.taps == 1 && g.w.strides.iter().all(|&s| s == 1) && !g.w.needs_padding()
}

/// A direct 1×1 convolution packs its input into B panels first (scratch) when the input rows are
/// read across many channels (the unpacked panel, `K` rows each in their own cache lines, would
/// not stay in L1) and enough output channels reuse each panel to pay for the packing pass.
fn packs_1x1_input(g: &ConvGeometry) -> bool {
    is_direct_1x1(g)
        && g.c_per_group >= PACK_MIN_K
        && g.m_per_group >= PACK_MIN_M
        && packed_input_bytes(g) <= PACK_MAX_BYTES
}

/// Scratch bytes of one task of a GEMM convolution: its im2col block (followed by the block packed
/// into B panels when [`packs_im2col`]), or its packed input.
fn gemm_task_scratch(g: &ConvGeometry) -> usize {
    if packs_1x1_input(g) {
        packed_input_bytes(g)
    } else if is_direct_1x1(g) {
        0
    } else if packs_im2col(g) {
        col_block_bytes(g) + packed_col_bytes(g)
    } else {
        col_block_bytes(g)
    }
}

/// An im2col convolution packs each im2col block into B panels before its GEMM, for the reason
/// and under the conditions of [`packs_1x1_input`].
fn packs_im2col(g: &ConvGeometry) -> bool {
    !is_direct_1x1(g)
        && g.c_per_group * g.taps >= PACK_MIN_K
        && g.m_per_group >= PACK_MIN_M
        && packed_col_bytes(g) <= PACK_MAX_BYTES
}

/// Bytes of one im2col block packed into B panels.
fn packed_col_bytes(g: &ConvGeometry) -> usize {
    let w_out: usize = g.w.out_sp[1..].iter().product();
    gemm::packed_b_bound(g.c_per_group * g.taps, block_rows(g) * w_out) * 4
}

/// Input channels from which [`packs_1x1_input`] packs.
const PACK_MIN_K: usize = 192;
/// Output channels (per group) from which [`packs_1x1_input`] packs.
const PACK_MIN_M: usize = 128;
/// Largest packed input (per task) [`packs_1x1_input`] builds: it should stay in L2.
const PACK_MAX_BYTES: usize = 512 << 10;

/// Scratch bytes of one task of a packing 1×1 convolution (every pixel: an upper bound for any
/// task's share).
fn packed_input_bytes(g: &ConvGeometry) -> usize {
    gemm::packed_b_bound(g.c_per_group, g.p) * 4
}

/// Fewest output pixels per task for the pixel split (narrower GEMMs waste the 8-wide panels).
const MIN_TASK_PIXELS: usize = 64;

/// How a convolution's work is divided among its tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Split {
    /// Task `t` computes the output pixels of first-axis rows `rows[t]` (all channels).
    Pixels(Vec<std::ops::Range<usize>>),
    /// Task `t` computes output channels `chans[t]` of every group (all pixels).
    Channels(Vec<std::ops::Range<usize>>),
    /// Task `t` computes planes `planes[t]` of `N·C` (depthwise).
    Planes(Vec<std::ops::Range<usize>>),
}

pub(super) fn even_ranges(total: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, total.max(1));
    (0..parts)
        .map(|t| total * t / parts..total * (t + 1) / parts)
        .collect()
}

fn split_of(geo: &ConvGeometry, tasks: usize) -> Split {
    if is_depthwise(geo) {
        return Split::Planes(even_ranges(geo.n * geo.c, tasks));
    }
    let rows = geo.w.out_sp[0];
    if tasks <= rows && geo.p / tasks >= MIN_TASK_PIXELS {
        Split::Pixels(even_ranges(rows, tasks))
    } else {
        Split::Channels(gemm::split_rows(geo.m_per_group, tasks))
    }
}

pub(super) fn geometry_of(
    g: &Graph,
    node: &Node,
    a: &ConvAttrs,
    opts: &JitOptions,
) -> Option<ConvGeometry> {
    let dims = |v: ValueId| g.ty(v).dims().unwrap_or_default();
    let mut geo = geometry(
        &dims(node.inputs[0]),
        &dims(node.inputs[1]),
        &dims(node.outputs[0]),
        a,
    )
    .ok()?;
    geo.col_block = opts.im2col_block_bytes;
    Some(geo)
}

/// Constant weights whose data has the shape their type declares, `[M, C, ..]` with the input's
/// `C` (ungrouped), which the Winograd transform indexes by.
fn transformable(w: Option<&Tensor>, g: &Graph, node: &Node) -> bool {
    let c = g.ty(node.inputs[0]).dims().and_then(|d| d.get(1).copied());
    w.is_some_and(|t| {
        g.ty(node.inputs[1]).dims().as_deref() == Some(t.dims()) && t.dims().get(1).copied() == c
    })
}

fn winograd_shape(geo: &ConvGeometry) -> winograd::ConvShape {
    winograd::ConvShape {
        n: geo.n,
        c: geo.c,
        m: geo.m,
        group: geo.group,
    }
}

/// Whether the JIT computes this f32 convolution with Winograd F(4×4, 3×3) (the cost rule of
/// `winograd::plan`, docs/JIT.md), given the graph's compile-time `consts`.
pub fn uses_winograd(
    g: &Graph,
    node: &Node,
    a: &ConvAttrs,
    consts: &HashMap<ValueId, Tensor>,
    opts: &JitOptions,
) -> bool {
    let constant_weights =
        !a.epilogue.channel_scale && transformable(consts.get(&node.inputs[1]), g, node);
    a.integer.is_none()
        && geometry_of(g, node, a, opts)
            .and_then(|geo| winograd::plan(winograd_shape(&geo), &geo.w, constant_weights, opts))
            .is_some()
}

/// Number of tasks a convolution is split into (see [`JitOptions`]).
pub fn task_count(g: &Graph, node: &Node, a: &ConvAttrs, opts: &JitOptions) -> usize {
    let min = opts.min_task_macs.max(1);
    let Some(geo) = geometry_of(g, node, a, opts) else {
        return 1;
    };
    let macs = kestrel_ir::cost::node_macs(g, node) as usize;
    if macs < 2 * min {
        return 1;
    }
    let tasks = opts.threads.min(macs / min).max(1);
    match split_of(&geo, tasks) {
        Split::Pixels(r) | Split::Channels(r) | Split::Planes(r) => r.len(),
    }
}

/// Scratch bytes of a conv node: the im2col matrix of one group, or one padded plane.
pub fn scratch_bytes(
    g: &Graph,
    _id: NodeId,
    node: &Node,
    a: &ConvAttrs,
    consts: &HashMap<ValueId, Tensor>,
    tasks: usize,
    opts: &JitOptions,
) -> Result<usize, JitError> {
    let Some(geo) = geometry_of(g, node, a, opts) else {
        return Ok(0);
    };
    let constant_weights =
        !a.epilogue.channel_scale && transformable(consts.get(&node.inputs[1]), g, node);
    if let Some(plan) = winograd::plan(winograd_shape(&geo), &geo.w, constant_weights, opts) {
        return Ok(winograd::scratch_bytes(&plan, tasks, opts));
    }
    Ok(if is_depthwise(&geo) {
        if is_padded_depthwise_2d(&geo) {
            padded_plane_bytes(&geo) * tasks.max(1)
        } else if geo.w.needs_padding() && !is_direct_depthwise_2d(&geo) {
            geo.w.padded_elems() * 4 * tasks
        } else {
            0
        }
    } else {
        gemm_task_scratch(&geo) * tasks.max(1)
    })
}

pub fn lower(e: &mut Emitter, k: &mut KernelContext, a: &ConvAttrs) -> Result<(), JitError> {
    lower_with(e, k, a, true)
}

/// [`lower`] for weights computed at run time into `k.ins[1]` (a fused channel scale), which
/// rules out the Winograd transform of constant weights.
pub fn lower_scaled(e: &mut Emitter, k: &mut KernelContext, a: &ConvAttrs) -> Result<(), JitError> {
    lower_with(e, k, a, false)
}

fn lower_with(
    e: &mut Emitter,
    k: &mut KernelContext,
    a: &ConvAttrs,
    constant_weights: bool,
) -> Result<(), JitError> {
    k.require_f32()?;
    let mut geo =
        geometry(&k.in_dims(0), &k.in_dims(1), &k.out_dims(0), a).map_err(|r| k.unsupported(r))?;
    geo.col_block = k.opts.im2col_block_bytes;
    if geo.group == 0 || geo.c % geo.group != 0 || geo.m % geo.group != 0 {
        return Err(k.unsupported("conv groups that do not divide the channels"));
    }
    let (x, wp, out) = (k.ins[0], k.ins[1], k.outs[0]);
    let bias = k.ins.get(2).copied();
    let split = split_of(&geo, k.tasks);
    let scratch = k.scratch;
    // The fused epilogue: input 3 is the residual (same shape as the output).
    let residual = match a.epilogue.residual {
        true => Some(
            *k.ins
                .get(3)
                .ok_or_else(|| k.unsupported("a residual epilogue without its input"))?,
        ),
        false => None,
    };
    let post = OutputEpilogue::new(e, out, residual, a.epilogue.act);
    let weights = k
        .const_in(1)
        .filter(|&t| constant_weights && transformable(Some(t), k.g, k.node));
    if let Some(plan) = winograd::plan(winograd_shape(&geo), &geo.w, weights.is_some(), k.opts) {
        let u = winograd::transform_weights(
            &weights.expect("plan needs them").to_f32_vec(),
            geo.m,
            geo.c,
        );
        let u = k.rodata_f32(e, &u)?;
        winograd::lower(e, k, &plan, x, u, bias, out, &post);
        return Ok(());
    }
    k.for_task(e, |e, t| match &split {
        Split::Planes(r) if is_padded_depthwise_2d(&geo) => {
            let sc = scratch.expect("scratch_bytes reserves the padded planes");
            let sc = e.addr(sc, (t * padded_plane_bytes(&geo)) as i64);
            depthwise_2d_padded(e, &geo, x, wp, bias, out, sc, r[t].clone(), &post);
        }
        Split::Planes(r) if is_direct_depthwise_2d(&geo) => {
            depthwise_2d(e, &geo, x, wp, bias, out, r[t].clone(), &post);
        }
        Split::Planes(r) => {
            let plane_bytes = geo.w.padded_elems() * 4;
            let sc = scratch.map(|s| e.addr(s, (t * plane_bytes) as i64));
            depthwise(e, &geo, x, wp, bias, out, sc, r[t].clone(), &post);
        }
        Split::Pixels(r) => {
            let sc = scratch.map(|s| e.addr(s, (t * gemm_task_scratch(&geo)) as i64));
            gemm_conv(
                e,
                &geo,
                x,
                wp,
                bias,
                out,
                sc,
                r[t].clone(),
                0..geo.m_per_group,
                &post,
            );
        }
        Split::Channels(r) => {
            let sc = scratch.map(|s| e.addr(s, (t * gemm_task_scratch(&geo)) as i64));
            gemm_conv(
                e,
                &geo,
                x,
                wp,
                bias,
                out,
                sc,
                0..geo.w.out_sp[0],
                r[t].clone(),
                &post,
            );
        }
    });
    Ok(())
}

/// The GEMM convolution restricted to output rows `rows` of the first spatial axis and output
/// channels `chans` of every group. `col` is this part's im2col block (`[K, pixels of rows]`).
#[allow(clippy::too_many_arguments)]
fn gemm_conv(
    e: &mut Emitter,
    geo: &ConvGeometry,
    x: Value,
    wp: Value,
    bias: Option<Value>,
    out: Value,
    col: Option<Value>,
    rows: std::ops::Range<usize>,
    chans: std::ops::Range<usize>,
    post: &OutputEpilogue,
) {
    let kk = geo.c_per_group * geo.taps;
    let w_out: usize = geo.w.out_sp[1..].iter().product();
    let (p0, pn) = (rows.start * w_out, (rows.end - rows.start) * w_out);
    let mn = chans.end - chans.start;
    if pn == 0 || mn == 0 {
        return;
    }
    let direct = is_direct_1x1(geo);
    let in_plane: usize = geo.w.in_sp.iter().product();
    let in_row: usize = geo.w.in_sp[1..].iter().product();
    let block = block_rows(geo);
    let (s0, d0, pad0, k0, ext0) = (
        geo.w.strides[0] as i64,
        geo.w.dilations[0] as i64,
        geo.w.pads[0].0 as i64,
        geo.w.kernel[0] as i64,
        geo.w.in_sp[0] as i64,
    );
    // Rows whose every kernel row is inside the input: im2col of such rows is the same code
    // for any of them, shifted by whole input rows.
    let row_inside = |y: usize| {
        let top = y as i64 * s0 - pad0;
        top >= 0 && top + (k0 - 1) * d0 < ext0
    };
    let chunk_inside = |c: usize| (c..c + block).all(row_inside);
    e.loop_n(geo.n, |e, img| {
        let xi = e.index(x, img, (geo.in_img * 4) as i64);
        let oi = e.index(out, img, (geo.out_img * 4) as i64);
        for gi in 0..geo.group {
            let xg = e.addr(xi, (gi * geo.c_per_group * in_plane * 4) as i64);
            let m0 = gi * geo.m_per_group + chans.start;
            let og = e.addr(oi, (m0 * geo.p * 4) as i64);
            let wg = e.addr(wp, (m0 * kk * 4) as i64);
            let bg = bias.map(|b| e.addr(b, (m0 * 4) as i64));
            if direct {
                let packs = col.filter(|_| packs_1x1_input(geo));
                // The GEMM of the `n` pixels from `b` into `o`, then its epilogue.
                let columns = |e: &mut Emitter, b: Value, o: Value, n: usize| {
                    let bop = match packs {
                        Some(scratch) => gemm::BOperand::PackedInto {
                            b,
                            ldb: geo.p,
                            scratch,
                        },
                        None => gemm::BOperand::InPlace { b, ldb: geo.p },
                    };
                    gemm_with_epilogue(e, wg, kk, bop, o, geo.p, mn, n, kk, post, bg);
                };
                let b = e.addr(xg, (p0 * 4) as i64);
                let o = e.addr(og, (p0 * 4) as i64);
                let in_kernels = e.micro.is_some() && post.tile_finish(bg).is_some();
                let chunk = if in_kernels || (post.is_identity() && bg.is_none()) {
                    pn
                } else {
                    epilogue_chunk_pixels(mn, pn)
                };
                let (full, rest) = (pn / chunk, pn % chunk);
                if full == 1 {
                    columns(e, b, o, chunk);
                } else {
                    e.loop_n(full, |e, i| {
                        let bi = e.index(b, i, (chunk * 4) as i64);
                        let oi = e.index(o, i, (chunk * 4) as i64);
                        columns(e, bi, oi, chunk);
                    });
                }
                if rest > 0 {
                    let bi = e.addr(b, (full * chunk * 4) as i64);
                    let oi = e.addr(o, (full * chunk * 4) as i64);
                    columns(e, bi, oi, rest);
                }
                continue;
            }
            let col = col.expect("conv scratch");
            // The GEMM of one im2col block of `n` columns into `ob`, and its epilogue.
            let packed = packs_im2col(geo).then(|| e.addr(col, col_block_bytes(geo) as i64));
            let block_gemm = |e: &mut Emitter, col: Value, n: usize, ob: Value| {
                let bop = match packed {
                    Some(scratch) => gemm::BOperand::PackedInto {
                        b: col,
                        ldb: n,
                        scratch,
                    },
                    None => gemm::BOperand::InPlace { b: col, ldb: n },
                };
                gemm_with_epilogue(e, wg, kk, bop, ob, geo.p, mn, n, kk, post, bg)
            };
            // Blocks of `block` output rows: im2col into the block buffer, then its GEMM.
            let mut c = rows.start;
            while c < rows.end {
                let r = block.min(rows.end - c);
                if r == block && chunk_inside(c) {
                    let mut count = 1;
                    while c + (count + 1) * block <= rows.end && chunk_inside(c + count * block) {
                        count += 1;
                    }
                    let first = c;
                    e.loop_n(count, |e, i| {
                        let xb = e.index(xg, i, (block * geo.w.strides[0] * in_row * 4) as i64);
                        let ob = e.index(og, i, (block * w_out * 4) as i64);
                        let ob = e.addr(ob, (first * w_out * 4) as i64);
                        im2col(e, geo, xb, col, first..first + block, &[0; 4]);
                        block_gemm(e, col, block * w_out, ob);
                    });
                    c += count * block;
                } else {
                    im2col(e, geo, xg, col, c..c + r, &[0; 4]);
                    let ob = e.addr(og, (c * w_out * 4) as i64);
                    block_gemm(e, col, r * w_out, ob);
                    c += r;
                }
            }
        }
    });
}

/// The GEMM `C[m×n] = A · B` of a convolution block and its epilogue `post` with the row bias
/// `bias`: inside the wide kernels' store when they can apply it (`OutputEpilogue::tile_finish`),
/// else as a pass over the block after the GEMM. The same bits either way.
#[allow(clippy::too_many_arguments)]
fn gemm_with_epilogue(
    e: &mut Emitter,
    a: Value,
    lda: usize,
    b: gemm::BOperand,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    post: &OutputEpilogue,
    bias: Option<Value>,
) {
    let applied = match post.tile_finish(bias) {
        Some(f) => gemm::emit_finished(e, a, lda, b, c, ldc, m, n, k, f),
        None => {
            gemm::emit(e, a, lda, b, c, ldc, m, n, k, None);
            false
        }
    };
    if !applied {
        post.apply_rows(e, c, bias, m, n, ldc);
    }
}

/// Bytes of output a direct 1×1 convolution computes before its epilogue (bias, residual,
/// activation) reads them back: small enough to still be in L2 then. A whole large output (a
/// 96×112×112 expansion: 4.8 MB) would otherwise be written to memory, read and written again.
const EPILOGUE_BLOCK_BYTES: usize = 256 << 10;

/// Pixels per block of a direct 1×1 convolution of `m` output channels over `pixels` pixels:
/// `m` rows of them fit [`EPILOGUE_BLOCK_BYTES`], a multiple of 64 (whole tiles of every
/// kernel), and no block is smaller than 64 pixels.
fn epilogue_chunk_pixels(m: usize, pixels: usize) -> usize {
    let fit = EPILOGUE_BLOCK_BYTES / (4 * m.max(1));
    let chunk = (fit / 64 * 64).max(64);
    if chunk >= pixels {
        pixels
    } else {
        chunk
    }
}

/// Output rows (of the first spatial axis) per im2col block: a block's columns, `K × rows·width`
/// f32, stay within `JitOptions::im2col_block_bytes` (512 KiB by default), so im2col writes them
/// into L2 and the GEMM reads them from there.
fn block_rows(geo: &ConvGeometry) -> usize {
    let w_out: usize = geo.w.out_sp[1..].iter().product::<usize>().max(1);
    let k = (geo.c_per_group * geo.taps).max(1);
    (geo.col_block / 4 / (k * w_out)).clamp(1, geo.w.out_sp[0].max(1))
}

/// Bytes of one task's im2col block.
fn col_block_bytes(geo: &ConvGeometry) -> usize {
    let w_out: usize = geo.w.out_sp[1..].iter().product();
    geo.c_per_group * geo.taps * block_rows(geo) * w_out * 4
}

/// Builds `col [c_per_group * taps, pixels]` for one group and the output rows `rows` of the first spatial
/// axis (`pixels` = the pixels of those rows): row `(c, tap)` holds, for each of these output
/// pixels, the input value the tap reads (`pad`, the little-endian bytes of one element, in the
/// padding). Elements are `pad.len()` bytes wide (4 for f32, 1 for 8-bit data).
pub(super) fn im2col(
    e: &mut Emitter,
    g: &ConvGeometry,
    x: Value,
    col: Value,
    rows: std::ops::Range<usize>,
    pad: &[u8],
) {
    let es = pad.len();
    let w = &g.w;
    let ks = w.kernel.len();
    let isz: usize = w.in_sp.iter().product();
    let in_st = strides_of(&w.in_sp);
    let out_st = strides_of(&w.out_sp);
    let w_out: usize = w.out_sp[1..].iter().product();
    let pixels = (rows.end - rows.start) * w_out;
    // Output extents of this part: `rows` on axis 0, everything on the others.
    let mut part = w.out_sp.clone();
    part[0] = rows.end - rows.start;
    let mut t = vec![0usize; ks];
    for tap in 0..g.taps {
        // For each spatial axis, the output index range whose tap coordinate is in bounds.
        let mut ranges = Vec::with_capacity(ks);
        let mut src_off: i64 = 0;
        for a in 0..ks {
            let shift = (t[a] * w.dilations[a]) as i64 - w.pads[a].0 as i64;
            let s = w.strides[a] as i64;
            // in = o * s + shift in [0, in_sp)
            let lo = if shift >= 0 { 0 } else { (-shift + s - 1) / s };
            let hi_excl = if (w.in_sp[a] as i64) - shift <= 0 {
                0
            } else {
                ((w.in_sp[a] as i64 - shift + s - 1) / s).min(w.out_sp[a] as i64)
            };
            let (mut lo, mut hi) = (lo.min(w.out_sp[a] as i64), hi_excl.max(0));
            if a == 0 {
                // Restricted to this part's rows, renumbered from 0.
                lo = lo.max(rows.start as i64) - rows.start as i64;
                hi = hi.min(rows.end as i64) - rows.start as i64;
            }
            ranges.push((lo.max(0) as usize, hi.max(0) as usize));
            src_off += shift * in_st[a];
        }
        // Source offsets below are relative to output row `rows.start`.
        src_off += rows.start as i64 * w.strides[0] as i64 * in_st[0];
        let empty = ranges.iter().any(|&(lo, hi)| lo >= hi);
        let full = ranges
            .iter()
            .zip(&part)
            .all(|(&(lo, hi), &o)| lo == 0 && hi == o);
        let row_bytes = (pixels * es) as i64;
        e.loop_n(g.c_per_group, |e, c| {
            let dst = e.index(col, c, row_bytes * g.taps as i64);
            let dst = e.addr(dst, tap as i64 * row_bytes);
            let src = e.index(x, c, (isz * es) as i64);
            if !full || empty {
                e.fill_bytes(dst, pixels * es, pad);
            }
            if empty {
                return;
            }
            // Copy the in-bounds box: dims = range lengths.
            let dims: Vec<usize> = ranges.iter().map(|&(lo, hi)| hi - lo).collect();
            let base_src: i64 = src_off
                + (0..ks)
                    .map(|a| ranges[a].0 as i64 * w.strides[a] as i64 * in_st[a])
                    .sum::<i64>();
            let base_dst: i64 = (0..ks).map(|a| ranges[a].0 as i64 * out_st[a]).sum();
            let s0 = e.addr(src, base_src * es as i64);
            let d0 = e.addr(dst, base_dst * es as i64);
            let sst: Vec<i64> = (0..ks)
                .map(|a| w.strides[a] as i64 * in_st[a] * es as i64)
                .collect();
            let dst_st: Vec<i64> = out_st.iter().map(|v| v * es as i64).collect();
            let inner = dims[ks - 1];
            let (si, di) = (sst[ks - 1], dst_st[ks - 1]);
            e.nest(
                &dims,
                &[sst.clone(), dst_st.clone()],
                &[s0, d0],
                &mut |e, p| {
                    if si == es as i64 {
                        e.memcpy(p[1], p[0], inner * es);
                    } else if si == 2 * es as i64 && di == es as i64 && stride_2_vectors(e, es) {
                        copy_stride_2(e, p[0], p[1], inner, es);
                    } else if es != 4 {
                        let ty = crate::jit::emit::int_type_of_size(es);
                        for j in 0..inner {
                            let v = e.load(ty, p[0], (si * j as i64) as i32);
                            e.store(v, p[1], (di * j as i64) as i32);
                        }
                    } else {
                        let chunks = inner / 4;
                        e.loop_n(chunks, |e, i| {
                            let sp = e.index(p[0], i, si * 4);
                            let dp = e.index(p[1], i, 16);
                            let v0 = e.load(types::F32, sp, 0);
                            let mut v = e.fb.ins().splat(types::F32X4, v0);
                            for l in 1..4u8 {
                                let x = e.load(types::F32, sp, (si * l as i64) as i32);
                                v = e.fb.ins().insertlane(v, x, l);
                            }
                            e.store(v, dp, 0);
                        });
                        for j in chunks * 4..inner {
                            let v = e.load(types::F32, p[0], (si * j as i64) as i32);
                            e.store(v, p[1], (di * j as i64) as i32);
                        }
                    }
                },
            );
        });
        for a in (0..ks).rev() {
            t[a] += 1;
            if t[a] < w.kernel[a] {
                break;
            }
            t[a] = 0;
        }
    }
}

/// Whether [`copy_stride_2`] has vectors for `es`-byte elements on this target: f32 always
/// (but not on scalarised targets), bytes with a one-instruction byte shuffle.
fn stride_2_vectors(e: &Emitter, es: usize) -> bool {
    !e.flags.scalarized && (es == 4 || (es == 1 && e.flags.has_byte_shuffle()))
}

/// Copies `inner` elements of `es` bytes (1 or 4) from every second element at `src` to
/// consecutive ones at `dst`: vectors of 16 bytes (or 4 f32) taken from two loads each, the even
/// elements kept. A vector's second load reaches one element past its last even one, which is
/// the next element's predecessor, so only vectors followed by another element are taken that
/// way; the rest are copied one by one. (A stride-2 convolution's im2col rows.)
/// Only where [`stride_2_vectors`] holds.
fn copy_stride_2(e: &mut Emitter, src: Value, dst: Value, inner: usize, es: usize) {
    let per = 16 / es;
    let chunks = (inner - 1) / per;
    e.loop_n(chunks, |e, i| {
        let sp = e.index(src, i, 32);
        let dp = e.index(dst, i, 16);
        if es == 4 {
            let a = e.load(types::F32X4, sp, 0);
            let b = e.load(types::F32X4, sp, 16);
            let v = e.deinterleave(a, b, false);
            e.store(v, dp, 0);
        } else {
            let a = e.load(types::I8X16, sp, 0);
            let b = e.load(types::I8X16, sp, 16);
            let v = e.even_bytes(a, b);
            e.store(v, dp, 0);
        }
    });
    let ty = crate::jit::emit::int_type_of_size(es);
    for j in chunks * per..inner {
        let v = e.load(ty, src, (2 * es * j) as i32);
        e.store(v, dst, (es * j) as i32);
    }
}

/// Depthwise convolution of the planes `planes` of `N·C`: per plane, padded copy (in `scratch`,
/// when padding is needed) then tap-by-tap accumulation.
#[allow(clippy::too_many_arguments)]
fn depthwise(
    e: &mut Emitter,
    g: &ConvGeometry,
    x: Value,
    wp: Value,
    bias: Option<Value>,
    out: Value,
    scratch: Option<Value>,
    planes: std::ops::Range<usize>,
    post: &OutputEpilogue,
) {
    let w = &g.w;
    let padded = w.needs_padding();
    let plane_dims = if padded {
        w.padded.clone()
    } else {
        w.in_sp.clone()
    };
    let taps = w.taps(&plane_dims);
    let ps = strides_of(&plane_dims);
    let ks = w.kernel.len();
    let isz: usize = w.in_sp.iter().product();
    let out_st = strides_of(&w.out_sp);
    let inner_out = w.out_sp[ks - 1];
    let inner_stride = w.strides[ks - 1] as i64 * 4; // bytes between adjacent outputs' windows
    let mut dims = w.out_sp.clone();
    let win_st: Vec<i64> = (0..ks).map(|a| w.strides[a] as i64 * ps[a] * 4).collect();
    let o_st: Vec<i64> = out_st.iter().map(|v| v * 4).collect();
    dims[ks - 1] = inner_out;
    let ntaps = taps.len();
    e.loop_range(planes.start as i64, planes.end as i64, 1, |e, pl| {
        let ch = e.fb.ins().urem_imm_s(pl, g.c as i64);
        let s = e.index(x, pl, (isz * 4) as i64);
        let d = e.index(out, pl, (g.p * 4) as i64);
        let plane = match scratch {
            Some(sc) if padded => {
                pad_plane(e, w, s, sc, 0.0);
                sc
            }
            _ => s,
        };
        let (b, wv) = channel_bias_and_weights(e, wp, bias, ch, ntaps);
        // Four adjacent outputs per F32X4: their windows are `inner_stride` bytes apart, read with
        // one vector load when that is 4 bytes, else gathered lane by lane.
        let vectorize = inner_out >= 4 && ntaps <= 25 && inner_stride <= 64;
        e.nest(
            &dims,
            &[win_st.clone(), o_st.clone()],
            &[plane, d],
            &mut |e, p| {
                let (win, o) = (p[0], p[1]);
                let chunks = if vectorize { inner_out / 4 } else { 0 };
                if chunks > 0 {
                    let wsplat: Vec<Value> = wv
                        .iter()
                        .map(|&s| e.fb.ins().splat(types::F32X4, s))
                        .collect();
                    let bv = e.fb.ins().splat(types::F32X4, b);
                    e.loop_n(chunks, |e, i| {
                        let wi = e.index(win, i, 4 * inner_stride);
                        let mut acc = bv;
                        for (t, &off) in taps.iter().enumerate() {
                            let v = if inner_stride == 4 {
                                e.load(types::F32X4, wi, off as i32)
                            } else {
                                let x0 = e.load(types::F32, wi, off as i32);
                                let mut v = e.fb.ins().splat(types::F32X4, x0);
                                for l in 1..4u8 {
                                    let o = off + inner_stride * l as i64;
                                    let x = e.load(types::F32, wi, o as i32);
                                    v = e.fb.ins().insertlane(v, x, l);
                                }
                                v
                            };
                            acc = e.fma(v, wsplat[t], acc);
                        }
                        let oa = e.index(o, i, 16);
                        e.store(acc, oa, 0);
                    });
                }
                let rest = inner_out - chunks * 4;
                if rest > 0 {
                    let start = chunks * 4;
                    e.loop_n(rest, |e, j| {
                        let jj = e.fb.ins().iadd_imm_s(j, start as i64);
                        let wi = e.index(win, jj, inner_stride);
                        let mut acc = b;
                        for (t, &off) in taps.iter().enumerate() {
                            let v = e.load(types::F32, wi, off as i32);
                            acc = e.fma(v, wv[t], acc);
                        }
                        let oa = e.index(o, jj, 4);
                        e.store(acc, oa, 0);
                    });
                }
            },
        );
        // The fused epilogue over the plane just written (still in L1/L2).
        post.apply_rows(e, d, None, 1, g.p, g.p);
    });
}

/// Largest output plane (bytes) whose fused epilogue the 2-D depthwise kernel applies in one pass.
const DEPTHWISE_PLANE_EPILOGUE_BYTES: usize = 32 << 10;

/// The bias (0 without one) and the `ntaps` weights of depthwise channel `ch`, as F32 scalars.
fn channel_bias_and_weights(
    e: &mut Emitter,
    wp: Value,
    bias: Option<Value>,
    ch: Value,
    ntaps: usize,
) -> (Value, Vec<Value>) {
    let wch = e.index(wp, ch, (ntaps * 4) as i64);
    let b = match bias {
        Some(b) => {
            let a = e.index(b, ch, 4);
            e.load(types::F32, a, 0)
        }
        None => e.fconst(types::F32, 0.0),
    };
    let wv = (0..ntaps)
        .map(|t| e.load(types::F32, wch, (t * 4) as i32))
        .collect();
    (b, wv)
}

/// The kernel indices `t < k` whose input coordinate `o·s − p + t·d` lies in `0..extent`.
fn valid_taps(o: usize, s: i64, d: i64, p: i64, k: usize, extent: i64) -> Vec<usize> {
    (0..k)
        .filter(|&t| (0..extent).contains(&(o as i64 * s - p + t as i64 * d)))
        .collect()
}

/// The output coordinates `0..n` whose every kernel index is valid ([`valid_taps`]), as a range
/// (contiguous: validity is monotone towards the centre); `(0, 0)` when there are none.
fn full_taps_range(n: usize, s: i64, d: i64, p: i64, k: usize, extent: i64) -> (usize, usize) {
    let full: Vec<usize> = (0..n)
        .filter(|&o| valid_taps(o, s, d, p, k, extent).len() == k)
        .collect();
    (
        full.first().copied().unwrap_or(0),
        full.last().map_or(0, |&o| o + 1),
    )
}

/// 2-D depthwise convolutions with at least four output columns and a column stride of 1 or 2
/// run on row-padded copies of their input planes ([`depthwise_2d_padded`]).
fn is_padded_depthwise_2d(g: &ConvGeometry) -> bool {
    is_direct_depthwise_2d(g) && g.w.out_sp[1] >= 4 && matches!(g.w.strides[1], 1 | 2)
}

/// f32 per row of [`depthwise_2d_padded`]'s plane copy: the left padding, the input row, then
/// zeros up to the last element the last (possibly overlapping) group of four columns reads.
fn padded_row_len(g: &ConvGeometry) -> usize {
    let w = &g.w;
    let (ow, sw) = (w.out_sp[1], w.strides[1]);
    // Stride 2 reads two vectors (eight columns) per group of four outputs.
    let reach = (w.kernel[1] - 1) * w.dilations[1] + ow * sw;
    reach.max(w.pads[1].0 + w.in_sp[1]).next_multiple_of(4)
}

/// Scratch bytes of one task of [`depthwise_2d_padded`].
fn padded_plane_bytes(g: &ConvGeometry) -> usize {
    g.w.in_sp[0] * padded_row_len(g) * 4
}

/// 2-D depthwise convolution of the planes `planes` of `N·C` on a copy of each input plane whose
/// rows are padded with zeros left and right (`scratch`, [`padded_plane_bytes`]).
///
/// Every output row is computed four columns per `F32X4`, the last group overlapping the one
/// before when the width is not a multiple of four (it recomputes the same values), so there
/// are no scalar columns. Stride 2 loads eight columns and keeps the even or odd ones
/// ([`Emitter::deinterleave`]). Kernels larger than 3×3 at stride 1 compute interior rows in pairs,
/// loading their shared input rows once. Rows at the top and bottom edges use only their valid
/// kernel rows, as in [`depthwise_2d`].
#[allow(clippy::too_many_arguments)]
fn depthwise_2d_padded(
    e: &mut Emitter,
    g: &ConvGeometry,
    x: Value,
    wp: Value,
    bias: Option<Value>,
    out: Value,
    scratch: Value,
    planes: std::ops::Range<usize>,
    post: &OutputEpilogue,
) {
    let w = &g.w;
    let (ih, iw) = (w.in_sp[0], w.in_sp[1]);
    let (oh, ow) = (w.out_sp[0], w.out_sp[1]);
    let (kh, kw) = (w.kernel[0], w.kernel[1]);
    let (sh, sw) = (w.strides[0] as i64, w.strides[1]);
    let (dh, dw) = (w.dilations[0] as i64, w.dilations[1]);
    let (pt, pl) = (w.pads[0].0 as i64, w.pads[1].0);
    let row_len = padded_row_len(g);
    let row_bytes = (row_len * 4) as i64;
    let (r0, r1) = full_taps_range(oh, sh, dh, pt, kh, ih as i64);
    let ntaps = kh * kw;
    // The epilogue is a pass over each row (or over the plane when it fits in L1) after it is
    // computed: applied in registers, its constants and the weights overflow the registers.
    let per_plane = g.p * 4 <= DEPTHWISE_PLANE_EPILOGUE_BYTES;
    // The padding columns are written once here; each plane's copy overwrites only the inside.
    e.fill_f32(scratch, ih * row_len, 0.0);
    e.loop_range(planes.start as i64, planes.end as i64, 1, |e, pl_idx| {
        let ch = e.fb.ins().urem_imm_s(pl_idx, g.c as i64);
        let src = e.index(x, pl_idx, (ih * iw * 4) as i64);
        let dst = e.index(out, pl_idx, (g.p * 4) as i64);
        let inside = e.addr(scratch, (pl * 4) as i64);
        e.loop_n(ih, |e, y| {
            let s = e.index(src, y, (iw * 4) as i64);
            let d = e.index(inside, y, row_bytes);
            e.memcpy(d, s, iw * 4);
        });
        let (b, wv) = channel_bias_and_weights(e, wp, bias, ch, ntaps);
        let bv = e.fb.ins().splat(types::F32X4, b);
        let zero = e.fconst(types::F32X4, 0.0);
        let wsplat: Vec<Value> = wv
            .iter()
            .map(|&s| e.fb.ins().splat(types::F32X4, s))
            .collect();
        // Four outputs in each of the output rows `rows` (`(j, kys)`: the row `j` below the
        // first, with its valid kernel rows) whose leftmost windows start at `win + j·sh`
        // rows (in the copy); stored at `o + j` output rows. An input vector is loaded once
        // for every row that reads it. Each row's taps are summed in kernel order into two
        // accumulators (alternate taps: half the chain of dependent FMAs), so a row gives the
        // same result alone or with others.
        let group = |e: &mut Emitter, win: Value, o: Value, rows: &[(usize, &[usize])]| {
            let mut acc: Vec<[Value; 2]> = rows.iter().map(|_| [bv, zero]).collect();
            let mut count = vec![0usize; rows.len()];
            // Input row (relative to the window) -> the (row index, ky) pairs reading it.
            let mut readers: BTreeMap<i64, Vec<(usize, usize)>> = BTreeMap::new();
            for (r, &(j, kys)) in rows.iter().enumerate() {
                for &ky in kys {
                    let y = j as i64 * sh + ky as i64 * dh;
                    readers.entry(y).or_default().push((r, ky));
                }
            }
            for (y, users) in &readers {
                let row = y * row_len as i64;
                // Stride 2: the vectors loaded at each column offset of this input row, so
                // that column c + 1 reuses column c's pair (odd lanes instead of even).
                let mut loaded: HashMap<i64, Value> = HashMap::new();
                let mut at = |e: &mut Emitter, col: i64| {
                    *loaded
                        .entry(col)
                        .or_insert_with(|| e.load(types::F32X4, win, ((row + col) * 4) as i32))
                };
                for kx in 0..kw {
                    let col = (kx * dw) as i64;
                    let v = if sw == 1 {
                        at(e, col)
                    } else {
                        let base = col - col % 2;
                        let (lo, hi) = (at(e, base), at(e, base + 4));
                        e.deinterleave(lo, hi, col % 2 == 1)
                    };
                    for &(r, ky) in users {
                        let a = &mut acc[r][count[r] % 2];
                        *a = e.fma(v, wsplat[ky * kw + kx], *a);
                        count[r] += 1;
                    }
                }
            }
            for (r, &(j, _)) in rows.iter().enumerate() {
                let sum = if count[r] > 1 {
                    e.fb.ins().fadd(acc[r][0], acc[r][1])
                } else {
                    acc[r][0]
                };
                e.store(sum, o, (j * ow * 4) as i32);
            }
        };
        // Output rows `rows` (see `group`) from `row_out`; `row_in` is the copy's row
        // `oy·sh − pt` of the first (possibly outside the copy: only valid kernel rows are
        // read).
        let emit_rows =
            |e: &mut Emitter, row_in: Value, row_out: Value, rows: &[(usize, &[usize])]| {
                e.loop_n(ow / 4, |e, i| {
                    let win = e.index(row_in, i, (16 * sw) as i64);
                    let o = e.index(row_out, i, 16);
                    group(e, win, o, rows);
                });
                if ow % 4 != 0 {
                    let last = ow - 4;
                    let win = e.addr(row_in, (last * sw * 4) as i64);
                    let o = e.addr(row_out, (last * 4) as i64);
                    group(e, win, o, rows);
                }
                if !per_plane {
                    post.apply_rows(e, row_out, None, rows.len(), ow, ow);
                }
            };
        let all: Vec<usize> = (0..kh).collect();
        // Interior rows two at a time when they share kh - 1 input rows (stride 1) and the
        // kernel has more taps than fit in registers anyway (beyond 3×3, where the second
        // row's accumulators would push the weights out of registers), then the rest.
        let pairs = if sh == 1 && ntaps > 9 {
            r1.saturating_sub(r0) / 2
        } else {
            0
        };
        let interior = |e: &mut Emitter, oy: Value, rows: &[(usize, &[usize])]| {
            let row_in = e.index(scratch, oy, sh * row_bytes);
            let row_in = e.addr(row_in, -pt * row_bytes);
            let row_out = e.index(dst, oy, (ow * 4) as i64);
            emit_rows(e, row_in, row_out, rows);
        };
        e.loop_range(r0 as i64, (r0 + 2 * pairs) as i64, 2, |e, oy| {
            interior(e, oy, &[(0, &all), (1, &all)]);
        });
        e.loop_range((r0 + 2 * pairs) as i64, r1 as i64, 1, |e, oy| {
            interior(e, oy, &[(0, &all)]);
        });
        for oy in (0..r0.min(oh)).chain(r1.max(r0)..oh) {
            let kys = valid_taps(oy, sh, dh, pt, kh, ih as i64);
            let row_in = e.addr(scratch, (oy as i64 * sh - pt) * row_bytes);
            let row_out = e.addr(dst, (oy * ow * 4) as i64);
            emit_rows(e, row_in, row_out, &[(0, &kys)]);
        }
        if per_plane {
            post.apply_rows(e, dst, None, 1, g.p, g.p);
        }
    });
}

/// 2-D depthwise convolution of the planes `planes` of `N·C`, reading the input plane in place.
///
/// Output rows whose every kernel row is inside the input form one loop; the few rows at the top
/// and bottom edges get their own code with only their valid kernel rows. Within a row, the
/// columns whose windows are inside the input run four outputs per `F32X4`; the edge columns
/// are scalar with only their valid taps. So padding is never materialised.
#[allow(clippy::too_many_arguments)]
fn depthwise_2d(
    e: &mut Emitter,
    g: &ConvGeometry,
    x: Value,
    wp: Value,
    bias: Option<Value>,
    out: Value,
    planes: std::ops::Range<usize>,
    post: &OutputEpilogue,
) {
    let w = &g.w;
    let (ih, iw) = (w.in_sp[0] as i64, w.in_sp[1] as i64);
    let (oh, ow) = (w.out_sp[0], w.out_sp[1]);
    let (kh, kw) = (w.kernel[0], w.kernel[1]);
    let (sh, sw) = (w.strides[0] as i64, w.strides[1] as i64);
    let (dh, dw) = (w.dilations[0] as i64, w.dilations[1] as i64);
    let (pt, pl) = (w.pads[0].0 as i64, w.pads[1].0 as i64);
    let valid = valid_taps;
    let (r0, r1) = full_taps_range(oh, sh, dh, pt, kh, ih);
    let (c0, c1) = full_taps_range(ow, sw, dw, pl, kw, iw);
    let plane_in = ih * iw * 4;
    let plane_out = (g.p * 4) as i64;
    let ntaps = kh * kw;
    // The epilogue runs over each output row while it is in L1, unless the whole plane fits in
    // L1: then once over the plane, so short rows (7, 14 pixels) are not mostly scalar tails.
    let per_plane = g.p * 4 <= DEPTHWISE_PLANE_EPILOGUE_BYTES;
    e.loop_range(planes.start as i64, planes.end as i64, 1, |e, pl_idx| {
        let ch = e.fb.ins().urem_imm_s(pl_idx, g.c as i64);
        let src = e.index(x, pl_idx, plane_in);
        let dst = e.index(out, pl_idx, plane_out);
        let (b, wv) = channel_bias_and_weights(e, wp, bias, ch, ntaps);
        let bv = e.fb.ins().splat(types::F32X4, b);
        let wsplat: Vec<Value> = wv
            .iter()
            .map(|&s| e.fb.ins().splat(types::F32X4, s))
            .collect();
        // One output row: `row_in` points at input row `oy·sh - pt` (possibly outside the plane;
        // only valid kernel rows `kys` are read), `row_out` at the output row.
        let emit_row = |e: &mut Emitter, row_in: Value, row_out: Value, kys: &[usize]| {
            // Byte offset of tap (ky, kx) from the window origin of output column 0.
            let tap =
                |ky: usize, kx: usize| -> i64 { ((ky as i64 * dh) * iw + kx as i64 * dw - pl) * 4 };
            let interior = c1.saturating_sub(c0);
            let chunks = interior / 4;
            let step = sw * 4;
            // Vector interior.
            let base_in = e.addr(row_in, c0 as i64 * step);
            let base_out = e.addr(row_out, (c0 * 4) as i64);
            e.loop_n(chunks, |e, i| {
                let wi = e.index(base_in, i, 4 * step);
                let mut acc = bv;
                for &ky in kys {
                    for kx in 0..kw {
                        let off = tap(ky, kx);
                        let v = if sw == 1 {
                            e.load(types::F32X4, wi, off as i32)
                        } else {
                            let x0 = e.load(types::F32, wi, off as i32);
                            let mut v = e.fb.ins().splat(types::F32X4, x0);
                            for l in 1..4u8 {
                                let xl = e.load(types::F32, wi, (off + step * l as i64) as i32);
                                v = e.fb.ins().insertlane(v, xl, l);
                            }
                            v
                        };
                        acc = e.fma(v, wsplat[ky * kw + kx], acc);
                    }
                }
                let oa = e.index(base_out, i, 16);
                e.store(acc, oa, 0);
            });
            // Scalar columns: the interior tail, then the edge columns with their valid taps.
            let scalar_cols: Vec<usize> = (c0 + chunks * 4..c1)
                .chain(0..c0.min(ow))
                .chain(c1.max(c0)..ow)
                .collect();
            for ox in scalar_cols {
                let kxs = valid(ox, sw, dw, pl, kw, iw);
                let mut acc = b;
                for &ky in kys {
                    for &kx in &kxs {
                        let off = tap(ky, kx) + ox as i64 * step;
                        let v = e.load(types::F32, row_in, off as i32);
                        acc = e.fma(v, wv[ky * kw + kx], acc);
                    }
                }
                e.store(acc, row_out, (ox * 4) as i32);
            }
        };
        let all: Vec<usize> = (0..kh).collect();
        // Interior rows.
        if r1 > r0 {
            e.loop_range(r0 as i64, r1 as i64, 1, |e, oy| {
                let off = e.fb.ins().imul_imm_s(oy, sh * iw * 4);
                let row_in = e.fb.ins().iadd(src, off);
                let row_in = e.addr(row_in, -pt * iw * 4);
                let row_out = e.index(dst, oy, (ow * 4) as i64);
                emit_row(e, row_in, row_out, &all);
                if !per_plane {
                    post.apply_rows(e, row_out, None, 1, ow, ow);
                }
            });
        }
        // Edge rows.
        for oy in (0..r0.min(oh)).chain(r1.max(r0)..oh) {
            let kys = valid(oy, sh, dh, pt, kh, ih);
            let row_in = e.addr(src, (oy as i64 * sh - pt) * iw * 4);
            let row_out = e.addr(dst, (oy * ow * 4) as i64);
            emit_row(e, row_in, row_out, &kys);
            if !per_plane {
                post.apply_rows(e, row_out, None, 1, ow, ow);
            }
        }
        if per_plane {
            post.apply_rows(e, dst, None, 1, g.p, g.p);
        }
    });
}
