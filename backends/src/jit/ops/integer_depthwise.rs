//! Quantized depthwise 2-D convolution (`group == C == M`), the integer semantics of
//! `super::integer` computed directly instead of through a GEMM of one output row per group.
//!
//! Per plane: a copy padded with the data zero point (its products cancel against the folded
//! bias like any other value's, docs/QUANTIZATION.md), then, per output row, eight outputs at a
//! time: for each pair of taps, eight input bytes of each (stride 1: one 8-byte load; stride 2:
//! the even bytes of a 16-byte load) widened to i16, interleaved and multiplied by the pair's
//! weights with `pmaddwd` (`|u8 · s8| < 2^15`, two products per i32 lane, exact) into two i32x4
//! accumulators starting at the folded bias; an odd last tap is multiplied in i16 and widened. A row
//! narrower than eight, and other strides, take a scalar loop. The i32 row is requantized per
//! channel (`kernels::requant`), or stored as it is.
//!
//! Tasks split the `N·C` planes.

use super::conv::{even_ranges, ConvGeometry};
use crate::jit::emit::{mf, Emitter};
use crate::jit::kernels::requant::Requantization;
use crate::jit::kernels::window::pad_plane_of;
use cranelift_codegen::ir::{types, ConstantData, InstBuilder, Value};

/// Whether `geo` takes this kernel: depthwise, two spatial axes.
pub(super) fn applies(geo: &ConvGeometry) -> bool {
    geo.group > 1 && geo.group == geo.c && geo.m == geo.c && geo.w.kernel.len() == 2
}

pub(super) fn split(geo: &ConvGeometry, tasks: usize) -> Vec<std::ops::Range<usize>> {
    even_ranges(geo.n * geo.c, tasks)
}

fn plane_bytes(geo: &ConvGeometry) -> usize {
    (geo.w.padded_elems() + 16).div_ceil(16) * 16
}

/// Scratch bytes of one task: its padded plane (with 16 bytes of slack for the 16-byte loads
/// of stride 2) and one i32 output row.
pub(super) fn task_scratch(geo: &ConvGeometry) -> usize {
    plane_bytes(geo) + geo.w.out_sp[1] * 4
}

/// What the kernel needs besides the geometry: pointers (I64) to the input, the i8 weights
/// `[C, kh·kw]`, the folded i32 bias `[C]`, the output and this task's scratch.
pub(super) struct Operands {
    pub x: Value,
    pub w: Value,
    pub bias: Value,
    pub out: Value,
    pub scratch: Value,
    pub x_signed: bool,
    pub zero_point: i32,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn emit(
    e: &mut Emitter,
    geo: &ConvGeometry,
    ops: &Operands,
    requant: Option<&(Requantization, Value)>,
    planes: std::ops::Range<usize>,
) {
    if planes.is_empty() {
        return;
    }
    let w = &geo.w;
    let (ih, iw) = (w.in_sp[0], w.in_sp[1]);
    let (oh, ow) = (w.out_sp[0], w.out_sp[1]);
    let (kh, kw) = (w.kernel[0], w.kernel[1]);
    let (sy, sx) = (w.strides[0], w.strides[1]);
    let (dy, dx) = (w.dilations[0], w.dilations[1]);
    let vector = e.flags.has_simd() && !e.flags.scalarized && ow >= 8 && (sx == 1 || sx == 2);
    // Stride 2 loads sixteen bytes for eight outputs: from the copy, which has the slack.
    let padded = w.needs_padding() || (vector && sx == 2);
    let row_len = if padded { w.padded[1] } else { iw };
    let out_elem = if requant.is_some() { 1 } else { 4 };
    let taps = kh * kw;
    let plane = e.addr(ops.scratch, 0);
    let acc_row = e.addr(ops.scratch, plane_bytes(geo) as i64);
    let first = e.iconst(planes.start as i64);
    e.loop_n(planes.len(), |e, i| {
        let p = e.fb.ins().iadd(first, i);
        let c = e.fb.ins().urem_imm_u(p, geo.c as i64);
        let src = e.index(ops.x, p, (ih * iw) as i64);
        let base = if padded {
            pad_plane_of(e, w, src, plane, &[ops.zero_point as u8]);
            plane
        } else {
            src
        };
        let wc = e.index(ops.w, c, taps as i64);
        let bp = e.index(ops.bias, c, 4);
        let bias = e.load(types::I32, bp, 0);
        let dst = e.index(ops.out, p, (oh * ow * out_elem) as i64);
        // The tap weights of this channel, widened once per plane.
        let weights: Vec<Value> = (0..taps)
            .map(|t| e.fb.ins().sload8(types::I32, mf(), wc, t as i32))
            .collect();
        // For the vector loop, per pair of taps `(2q, 2q + 1)` the i16 lanes `[w_2q, w_2q+1]`
        // repeated (the `pmaddwd` operand), and an odd last tap splatted alone.
        let pairs: Vec<Value> = match vector {
            true => weights
                .chunks(2)
                .map(|ws| match *ws {
                    [w0, w1] => {
                        let lo = e.fb.ins().band_imm_u(w0, 0xffff);
                        let hi = e.fb.ins().ishl_imm_u(w1, 16);
                        let both = e.fb.ins().bor(lo, hi);
                        let v = e.fb.ins().splat(types::I32X4, both);
                        e.bits(types::I16X8, v)
                    }
                    _ => {
                        let h = e.fb.ins().ireduce(types::I16, ws[0]);
                        e.fb.ins().splat(types::I16X8, h)
                    }
                })
                .collect(),
            false => Vec::new(),
        };
        e.loop_n(oh, |e, y| {
            let top = e.index(base, y, (sy * row_len) as i64);
            let row_out = match requant {
                Some(_) => acc_row,
                None => e.index(dst, y, (ow * 4) as i64),
            };
            if vector {
                let mut starts: Vec<usize> = (0..ow / 8).map(|g| g * 8).collect();
                if ow % 8 != 0 {
                    starts.push(ow - 8);
                }
                for j0 in starts {
                    let b = e.fb.ins().splat(types::I32X4, bias);
                    let (mut lo, mut hi) = (b, b);
                    let offs: Vec<i32> = (0..taps)
                        .map(|t| (t / kw * dy * row_len + t % kw * dx + j0 * sx) as i32)
                        .collect();
                    for (q, tap_offs) in offs.chunks(2).enumerate() {
                        let x0 = eight_bytes(e, top, tap_offs[0], sx, ops.x_signed);
                        if let [_, off1] = *tap_offs {
                            // Outputs 0-3 and 4-7 of both taps interleaved, then one `pmaddwd`
                            // each: x0·w0 + x1·w1 per output (|·| < 2^16, exact).
                            let x1 = eight_bytes(e, top, off1, sx, ops.x_signed);
                            let (il, ih) = interleave_i16(e, x0, x1);
                            let pl = pmaddwd(e, il, pairs[q]);
                            let ph = pmaddwd(e, ih, pairs[q]);
                            lo = e.fb.ins().iadd(lo, pl);
                            hi = e.fb.ins().iadd(hi, ph);
                        } else {
                            let prod = e.fb.ins().imul(x0, pairs[q]);
                            let pl = e.fb.ins().swiden_low(prod);
                            let ph = e.fb.ins().swiden_high(prod);
                            lo = e.fb.ins().iadd(lo, pl);
                            hi = e.fb.ins().iadd(hi, ph);
                        }
                    }
                    e.fb.ins().store(mf(), lo, row_out, (j0 * 4) as i32);
                    e.fb.ins().store(mf(), hi, row_out, (j0 * 4 + 16) as i32);
                }
            } else {
                e.loop_n(ow, |e, j| {
                    let at = e.index(top, j, sx as i64);
                    let mut acc = bias;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let off = (ky * dy * row_len + kx * dx) as i32;
                            let x = if ops.x_signed {
                                e.fb.ins().sload8(types::I32, mf(), at, off)
                            } else {
                                e.fb.ins().uload8(types::I32, mf(), at, off)
                            };
                            let prod = e.fb.ins().imul(x, weights[ky * kw + kx]);
                            acc = e.fb.ins().iadd(acc, prod);
                        }
                    }
                    let o = e.index(row_out, j, 4);
                    e.store(acc, o, 0);
                });
            }
            if let Some((q, table)) = requant {
                let o = e.index(dst, y, ow as i64);
                q.emit(e, acc_row, ow, o, ow, 1, ow, *table, c);
            }
        });
    });
}

/// Eight consecutive outputs' input bytes at `p + off` (column stride `sx`, 1 or 2), widened to
/// `I16X8`.
fn eight_bytes(e: &mut Emitter, p: Value, off: i32, sx: usize, signed: bool) -> Value {
    if sx == 1 {
        let raw = e.fb.ins().load(types::I64, mf(), p, off);
        let v = e.fb.ins().scalar_to_vector(types::I64X2, raw);
        let bytes = e.bits(types::I8X16, v);
        if signed {
            e.fb.ins().swiden_low(bytes)
        } else {
            e.fb.ins().uwiden_low(bytes)
        }
    } else {
        // The even bytes of sixteen, as i16 lanes: shift left then right by 8 (arithmetic for
        // signed data) within each 16-bit lane.
        let raw = e.fb.ins().load(types::I8X16, mf(), p, off);
        let lanes = e.bits(types::I16X8, raw);
        let up = e.fb.ins().ishl_imm_u(lanes, 8);
        if signed {
            e.fb.ins().sshr_imm_u(up, 8)
        } else {
            e.fb.ins().ushr_imm_u(up, 8)
        }
    }
}

/// The i16 lanes of `a` and `b` interleaved: lanes 0-3 of each (`[a0, b0, a1, b1, …]`), then
/// lanes 4-7 (`punpcklwd`, `punpckhwd` on x86-64; `zip1`, `zip2` on aarch64).
fn interleave_i16(e: &mut Emitter, a: Value, b: Value) -> (Value, Value) {
    let half = |e: &mut Emitter, first: u8| {
        let mask: Vec<u8> = (0..4u8)
            .flat_map(|i| {
                let x = 2 * (first + i);
                [x, x + 1, 16 + x, 17 + x]
            })
            .collect();
        let mask = e.fb.func.dfg.immediates.push(ConstantData::from(mask));
        let a8 = e.bits(types::I8X16, a);
        let b8 = e.bits(types::I8X16, b);
        let r = e.fb.ins().shuffle(a8, b8, mask);
        e.bits(types::I16X8, r)
    };
    (half(e, 0), half(e, 4))
}

/// `pmaddwd x, y` (i16x8 × i16x8 → i32x4 sums of adjacent products) as the tree Cranelift
/// matches (docs/CRANELIFT.md).
fn pmaddwd(e: &mut Emitter, x: Value, y: Value) -> Value {
    let (xl, yl) = (e.fb.ins().swiden_low(x), e.fb.ins().swiden_low(y));
    let lo = e.fb.ins().imul(xl, yl);
    let (xh, yh) = (e.fb.ins().swiden_high(x), e.fb.ins().swiden_high(y));
    let hi = e.fb.ins().imul(xh, yh);
    e.fb.ins().iadd_pairwise(lo, hi)
}
