//! Quantized (integer) Conv and Gemm, bit for bit what the interpreter computes
//! (`kestrel_ir::IntegerAttrs`, docs/QUANTIZATION.md "Integer semantics"):
//! `acc = bias + Σ (x − x_zero_point) · w` in wrapping i32, then, with a requantization,
//! `clamp(zero_point + requantize(acc, multiplier[c]), min, max)` (fixed point or f32, as the
//! requantization's mode says), else the i32 `acc` itself.
//!
//! The activation zero point is folded into the bias at compile time
//! (`bias'[c] = bias[c] − x_zero_point · Σ_k w[c, k]`), so the products take the raw 8-bit
//! data; im2col pads with the zero point, whose products the fold cancels like any other.
//! Weights and bias must be constants (the codegen fold leaves them so).
//!
//! Convolution, per image, group and block of output rows: im2col of the 8-bit input into the
//! scratch (`[K, pixels]` bytes), the i32 GEMM `W_g · col` with the folded bias
//! (`kernels::igemm`), then the requantization of that block (`kernels::requant`), per output
//! channel. Gemm: the GEMM of the data rows by the constant weights, requantized per column.
//! Tasks split output rows (convolution: rows of the first spatial axis, else output channels;
//! Gemm: data rows).

use super::conv::{even_ranges, geometry, geometry_of, im2col, is_direct_1x1, ConvGeometry};
use super::integer_depthwise;
use super::pool::byte_signedness;
use crate::jit::context::KernelContext;
use crate::jit::emit::Emitter;
use crate::jit::error::JitError;
use crate::jit::kernels::gemm;
use crate::jit::kernels::gemm::int8::{
    folded_bias, pack_int8_b, weight_sums, Int8Kernels, SignedOperand, WeightRange,
};
use crate::jit::kernels::igemm::{emit_igemm_scalar, Bias, ByteMatrix};
use crate::jit::kernels::requant::{fixed_multipliers, Channels, Requantization};
use crate::jit::options::JitOptions;
use cranelift_codegen::ir::{InstBuilder, Value};
use kestrel_ir::{ConvAttrs, DType, GemmAttrs, Graph, IntegerAttrs, Node, Requant};

/// How an integer convolution's work is divided among its tasks.
enum Split {
    /// Task `t` computes planes `planes[t]` of `N·C` (depthwise).
    Planes(Vec<std::ops::Range<usize>>),
    /// Task `t` computes output rows `rows[t]` of the first spatial axis (all channels).
    Rows(Vec<std::ops::Range<usize>>),
    /// Task `t` computes output channels `chans[t]` of every group (all pixels).
    Channels(Vec<std::ops::Range<usize>>),
}

impl Split {
    fn len(&self) -> usize {
        match self {
            Split::Rows(r) | Split::Channels(r) | Split::Planes(r) => r.len(),
        }
    }
}

fn conv_split(geo: &ConvGeometry, tasks: usize) -> Split {
    if integer_depthwise::applies(geo) {
        return Split::Planes(integer_depthwise::split(geo, tasks));
    }
    let rows = geo.w.out_sp[0];
    if tasks <= rows || geo.m_per_group < 2 {
        Split::Rows(even_ranges(rows, tasks))
    } else {
        Split::Channels(even_ranges(geo.m_per_group, tasks))
    }
}

fn output_row_pixels(geo: &ConvGeometry) -> usize {
    geo.w.out_sp[1..].iter().product()
}

/// Bytes of i32 accumulators one block of a requantized conv holds: small enough that the block
/// is still in L2 when the requantization reads it back after the GEMM wrote it (a 1×1 conv
/// over a large image otherwise writes and rereads megabytes; mobilenet_v2's expansions).
const ACC_BLOCK_BYTES: usize = 128 * 1024;

/// Output rows per block: a block's `K × rows · width` bytes stay within
/// `JitOptions::im2col_block_bytes`, and for a requantized direct 1×1 conv (whose blocks are
/// one run-time loop, so more blocks cost no code) its `M × rows · width` i32 accumulators
/// within [`ACC_BLOCK_BYTES`]; at least one row.
fn block_rows(geo: &ConvGeometry, requantized: bool) -> usize {
    let k = (geo.c_per_group * geo.taps).max(1);
    let pixels = output_row_pixels(geo).max(1);
    let mut rows = geo.col_block / (k * pixels);
    if requantized && is_direct_1x1(geo) {
        rows = rows.min(ACC_BLOCK_BYTES / (geo.m_per_group.max(1) * pixels * 4));
    }
    rows.clamp(1, geo.w.out_sp[0].max(1))
}

fn round16(n: usize) -> usize {
    n.div_ceil(16) * 16
}

/// An upper bound of the packed B bytes of any int8 tile for `k × n` (a tile packs
/// `round_up(k, 4) · round_up(n, cols)`: 12 columns on the 128-bit path, 16 or 32 on the
/// assembled one, never more than `gemm::MAX_PANEL_COLS`).
fn packed_bound(k: usize, n: usize) -> usize {
    round16(k.div_ceil(4) * 4 * (n + gemm::MAX_PANEL_COLS))
}

/// Where a task's buffers sit in its scratch: the im2col block, the block packed for the
/// int8 tiles, then the i32 accumulator block when the output is requantized.
struct TaskScratch {
    col: usize,
    packed: usize,
    acc: usize,
    total: usize,
}

fn conv_task_scratch(geo: &ConvGeometry, requantized: bool) -> TaskScratch {
    let pixels = block_rows(geo, requantized) * output_row_pixels(geo);
    let kk = geo.c_per_group * geo.taps;
    let col = round16(kk * pixels);
    let packed = packed_bound(kk, pixels);
    let acc = if requantized {
        geo.m_per_group * pixels * 4
    } else {
        0
    };
    TaskScratch {
        col: 0,
        packed: col,
        acc: col + packed,
        total: col + packed + acc,
    }
}

/// Whether a quantized Gemm computes on the int8 tiles, reading only its weights packed at
/// compile time (u8 data; i8 data takes the portable GEMM, which reads them in place).
pub fn gemm_reads_packed_weights(g: &Graph, node: &Node) -> bool {
    g.ty(node.inputs[0]).dtype == DType::U8
}

pub fn conv_task_count(g: &Graph, node: &Node, a: &ConvAttrs, opts: &JitOptions) -> usize {
    let Some(geo) = geometry_of(g, node, a, opts) else {
        return 1;
    };
    let macs = kestrel_ir::cost::node_macs(g, node) as usize;
    let min = opts.min_task_macs.max(1);
    if macs < 2 * min {
        return 1;
    }
    conv_split(&geo, opts.threads.min(macs / min).max(1)).len()
}

pub fn conv_scratch_bytes(
    g: &Graph,
    node: &Node,
    a: &ConvAttrs,
    ia: &IntegerAttrs,
    tasks: usize,
    opts: &JitOptions,
) -> usize {
    geometry_of(g, node, a, opts)
        .map(|geo| {
            let per_task = if integer_depthwise::applies(&geo) {
                integer_depthwise::task_scratch(&geo)
            } else {
                conv_task_scratch(&geo, ia.requant.is_some()).total
            };
            per_task * tasks.max(1)
        })
        .unwrap_or(0)
}

/// The data input's signedness, checked to be 8-bit.
fn data_signed(k: &KernelContext) -> Result<bool, JitError> {
    byte_signedness(k.in_dtype(0))
        .ok_or_else(|| k.unsupported(format!("quantized data of dtype {}", k.in_dtype(0))))
}

/// The constant i8 weights.
fn weights(k: &KernelContext) -> Result<Vec<i8>, JitError> {
    let w = k
        .const_in(1)
        .ok_or_else(|| k.unsupported("quantized weights computed at run time"))?;
    if w.dtype() != DType::I8 {
        return Err(k.unsupported(format!("quantized weights of dtype {}", w.dtype())));
    }
    Ok(w.to_i64_vec().into_iter().map(|v| v as i8).collect())
}

/// The constant i32 bias of `n` channels (zeros without one).
fn bias(k: &KernelContext, n: usize) -> Result<Vec<i32>, JitError> {
    if k.node.inputs.len() < 3 {
        return Ok(vec![0; n]);
    }
    let b = k
        .const_in(2)
        .ok_or_else(|| k.unsupported("a quantized bias computed at run time"))?;
    if b.dtype() != DType::I32 || b.numel() != n {
        return Err(k.unsupported(format!("a quantized bias {:?} {}", b.dims(), b.dtype())));
    }
    Ok(b.to_i64_vec().into_iter().map(|v| v as i32).collect())
}

fn le_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The requantization of `r` with its channels along `axis` (when there is one multiplier per
/// channel), and a pointer to its multiplier table.
fn requantization(
    e: &mut Emitter,
    k: &mut KernelContext,
    r: &Requant,
    per_channel: Channels,
) -> Result<(Requantization, Value), JitError> {
    let fixed = fixed_multipliers(&r.multiplier)
        .ok_or_else(|| k.unsupported("a requantization multiplier without a fixed-point form"))?;
    let q = Requantization {
        channels: if fixed.len() == 1 {
            Channels::One
        } else {
            per_channel
        },
        fixed,
        to: r.to,
        zero_point: r.zero_point,
        min: r.min,
        max: r.max,
        mode: r.mode,
        multipliers: r.multiplier.iter().map(|m| m.0).collect(),
    };
    let table = k.rodata(e, q.table())?;
    Ok((q, table))
}

pub fn conv(
    e: &mut Emitter,
    k: &mut KernelContext,
    a: &ConvAttrs,
    ia: &IntegerAttrs,
) -> Result<(), JitError> {
    let x_signed = data_signed(k)?;
    let mut geo =
        geometry(&k.in_dims(0), &k.in_dims(1), &k.out_dims(0), a).map_err(|r| k.unsupported(r))?;
    geo.col_block = k.opts.im2col_block_bytes;
    if geo.group == 0 || geo.c % geo.group != 0 || geo.m % geo.group != 0 {
        return Err(k.unsupported("conv groups that do not divide the channels"));
    }
    let kk = geo.c_per_group * geo.taps;
    let w = weights(k)?;
    // u8 data runs on the target's int8 tiles (the assembled full-width ones where the module
    // has them); i8 data on the portable GEMM.
    // (The weights are constants, padded past their end: A may be read in whole groups.)
    let kernels =
        (!x_signed).then(|| Int8Kernels::choose(e, SignedOperand::A, WeightRange::of(&w), true));
    let offset = kernels.map_or(0, |t| t.packing().unsigned_offset());
    let sums = weight_sums(&w, kk, geo.m, true);
    let folded = folded_bias(Some(&bias(k, geo.m)?), &sums, ia.x_zero_point, offset);
    let bias_ptr = k.rodata(e, le_bytes(&folded))?;
    let requant = match &ia.requant {
        Some(r) => Some(requantization(e, k, r, Channels::Rows)?),
        None => None,
    };
    let (x, wp, out) = (k.ins[0], k.ins[1], k.outs[0]);
    let scratch = k
        .scratch
        .ok_or_else(|| k.unsupported("a quantized conv without its scratch"))?;
    let split = conv_split(&geo, k.tasks);
    let layout = conv_task_scratch(&geo, requant.is_some());
    let pad = [ia.x_zero_point as u8];
    let out_elem = if requant.is_some() { 1 } else { 4 };
    let in_plane: usize = geo.w.in_sp.iter().product();
    let w_out = output_row_pixels(&geo);
    let block = block_rows(&geo, requant.is_some());
    let in_place = is_direct_1x1(&geo);
    if let Split::Planes(planes) = &split {
        let per_task = integer_depthwise::task_scratch(&geo);
        k.for_task(e, |e, t| {
            let ops = integer_depthwise::Operands {
                x,
                w: wp,
                bias: bias_ptr,
                out,
                scratch: e.addr(scratch, (t * per_task) as i64),
                x_signed,
                zero_point: ia.x_zero_point,
            };
            integer_depthwise::emit(e, &geo, &ops, requant.as_ref(), planes[t].clone());
        });
        return Ok(());
    }
    k.for_task(e, |e, t| {
        let (rows, chans) = match &split {
            Split::Rows(r) => (r[t].clone(), 0..geo.m_per_group),
            Split::Channels(c) => (0..geo.w.out_sp[0], c[t].clone()),
            Split::Planes(_) => unreachable!("handled above"),
        };
        let mn = chans.len();
        if rows.is_empty() || mn == 0 {
            return;
        }
        let base = e.addr(scratch, (t * layout.total) as i64);
        let col = e.addr(base, layout.col as i64);
        let packed = e.addr(base, layout.packed as i64);
        let acc = e.addr(base, layout.acc as i64);
        e.loop_n(geo.n, |e, img| {
            let xi = e.index(x, img, geo.in_img as i64);
            let oi = e.index(out, img, (geo.out_img * out_elem) as i64);
            e.loop_n(geo.group, |e, gi| {
                let xg = e.index(xi, gi, (geo.c_per_group * in_plane) as i64);
                let m0 = e.fb.ins().imul_imm_s(gi, geo.m_per_group as i64);
                let m0 = e.fb.ins().iadd_imm_s(m0, chans.start as i64);
                let wg = e.index(wp, m0, kk as i64);
                let bg = e.index(bias_ptr, m0, 4);
                let og = e.index(oi, m0, (geo.p * out_elem) as i64);
                // One block of `n` output pixels: B (`ldb` apart) to the output at `ob`.
                let emit_block = |e: &mut Emitter, b: Value, ldb: usize, ob: Value, n: usize| {
                    let (target, ldc) = match requant {
                        Some(_) => (acc, n),
                        None => (ob, geo.p),
                    };
                    match kernels {
                        Some(kernels) => kernels.emit_gemm_unpacked_scratch(
                            e,
                            wg,
                            kk,
                            b,
                            ldb,
                            target,
                            ldc,
                            packed,
                            mn,
                            n,
                            kk,
                            gemm::Bias::Rows(bg),
                        ),
                        None => {
                            let wa = ByteMatrix {
                                base: wg,
                                outer: kk as i64,
                                inner: 1,
                                signed: true,
                            };
                            let xb = ByteMatrix {
                                base: b,
                                outer: ldb as i64,
                                inner: 1,
                                signed: x_signed,
                            };
                            emit_igemm_scalar(e, &wa, &xb, target, ldc, mn, n, kk, Bias::Rows(bg));
                        }
                    }
                    if let Some((q, table)) = &requant {
                        q.emit(e, acc, n, ob, geo.p, mn, n, *table, m0);
                    }
                };
                if in_place {
                    // B is the input itself: the full blocks are one run-time loop (their
                    // code is the same but for two addresses), then the last partial block.
                    let (full, rest) = (rows.len() / block, rows.len() % block);
                    let x0 = e.addr(xg, (rows.start * w_out) as i64);
                    let o0 = e.addr(og, (rows.start * w_out * out_elem) as i64);
                    let n = block * w_out;
                    e.loop_n(full, |e, i| {
                        let b = e.index(x0, i, n as i64);
                        let ob = e.index(o0, i, (n * out_elem) as i64);
                        emit_block(e, b, geo.p, ob, n);
                    });
                    if rest != 0 {
                        let b = e.addr(x0, (full * n) as i64);
                        let ob = e.addr(o0, (full * n * out_elem) as i64);
                        emit_block(e, b, geo.p, ob, rest * w_out);
                    }
                } else {
                    let mut c = rows.start;
                    while c < rows.end {
                        let r = block.min(rows.end - c);
                        let n = r * w_out;
                        im2col(e, &geo, xg, col, c..c + r, &pad);
                        let ob = e.addr(og, (c * w_out * out_elem) as i64);
                        emit_block(e, col, n, ob, n);
                        c += r;
                    }
                }
            });
        });
    });
    Ok(())
}

/// `[rows, k] · [k, n]`: the data rows, the reduction length and the output features.
fn gemm_dims(k: &KernelContext, a: &GemmAttrs) -> Result<(usize, usize, usize), JitError> {
    let (xd, wd) = (k.in_dims(0), k.in_dims(1));
    if xd.len() != 2 || wd.len() != 2 {
        return Err(k.unsupported("a quantized gemm of operands that are not matrices"));
    }
    let (kk, n) = if a.trans_b {
        (wd[1], wd[0])
    } else {
        (wd[0], wd[1])
    };
    if xd[1] != kk {
        return Err(k.unsupported("a quantized gemm whose operands do not chain"));
    }
    Ok((xd[0], kk, n))
}

pub fn gemm_task_count(g: &Graph, node: &Node, opts: &JitOptions) -> usize {
    let rows = g.ty(node.inputs[0]).dims().unwrap_or_default();
    let macs = kestrel_ir::cost::node_macs(g, node) as usize;
    let min = opts.min_task_macs.max(1);
    if macs < 2 * min || rows.len() != 2 {
        return 1;
    }
    even_ranges(rows[0], opts.threads.min(macs / min).max(1)).len()
}

pub fn gemm_scratch_bytes(g: &Graph, node: &Node, ia: &IntegerAttrs) -> usize {
    match (&ia.requant, g.ty(node.outputs[0]).dims()) {
        (Some(_), Some(d)) => d.iter().product::<usize>() * 4,
        _ => 0,
    }
}

pub fn gemm(
    e: &mut Emitter,
    k: &mut KernelContext,
    a: &GemmAttrs,
    ia: &IntegerAttrs,
) -> Result<(), JitError> {
    let x_signed = data_signed(k)?;
    let (rows, kk, n) = gemm_dims(k, a)?;
    let w = weights(k)?;
    // The assembled kernels read A (the activations) in whole four-k groups: only whole groups.
    let kernels = gemm_reads_packed_weights(k.g, k.node)
        .then(|| Int8Kernels::choose(e, SignedOperand::B, WeightRange::of(&w), kk % 4 == 0));
    let offset = kernels.map_or(0, |t| t.packing().unsigned_offset());
    let sums = weight_sums(&w, kk, n, a.trans_b);
    let folded = folded_bias(Some(&bias(k, n)?), &sums, ia.x_zero_point, offset);
    let bias_ptr = k.rodata(e, le_bytes(&folded))?;
    let packed = match &kernels {
        Some(t) => {
            let p = pack_int8_b(&t.packing(), &w, kk, n, a.trans_b);
            Some(k.rodata(e, p.into_iter().map(|v| v as u8).collect())?)
        }
        None => None,
    };
    let requant = match &ia.requant {
        Some(r) => Some(requantization(e, k, r, Channels::Columns)?),
        None => None,
    };
    let (x, wp, out) = (k.ins[0], k.ins[1], k.outs[0]);
    let scratch = k.scratch;
    let split = even_ranges(rows, k.tasks);
    let (w_outer, w_inner) = if a.trans_b {
        (1, kk as i64)
    } else {
        (n as i64, 1)
    };
    k.for_task(e, |e, t| {
        let r = split[t].clone();
        if r.is_empty() {
            return;
        }
        let xr = e.addr(x, (r.start * kk) as i64);
        let (target, o) = match (&requant, scratch) {
            (Some(_), Some(sc)) => (
                e.addr(sc, (r.start * n * 4) as i64),
                e.addr(out, (r.start * n) as i64),
            ),
            _ => {
                let o = e.addr(out, (r.start * n * 4) as i64);
                (o, o)
            }
        };
        match (&kernels, packed) {
            (Some(kernels), Some(pb)) => kernels.emit_gemm(
                e,
                xr,
                kk,
                pb,
                target,
                n,
                r.len(),
                n,
                kk,
                gemm::Bias::Columns(bias_ptr),
            ),
            _ => {
                let xa = ByteMatrix {
                    base: xr,
                    outer: kk as i64,
                    inner: 1,
                    signed: x_signed,
                };
                let wb = ByteMatrix {
                    base: wp,
                    outer: w_outer,
                    inner: w_inner,
                    signed: true,
                };
                emit_igemm_scalar(
                    e,
                    &xa,
                    &wb,
                    target,
                    n,
                    r.len(),
                    n,
                    kk,
                    Bias::Columns(bias_ptr),
                );
            }
        }
        if let Some((q, table)) = &requant {
            let zero = e.iconst(0);
            q.emit(e, target, n, o, n, r.len(), n, *table, zero);
        }
    });
    Ok(())
}
