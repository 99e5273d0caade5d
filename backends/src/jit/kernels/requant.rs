//! Requantization of a block of i32 accumulators to 8-bit outputs, bit for bit what
//! `kestrel_ir::quant::requantize_output` computes (docs/QUANTIZATION.md): per element
//! `clamp(zero_point + ((acc · m + 2^(t-1)) >> t), min, max)` with `t = 31 - shift`, the product
//! and shift in i64. The multiplier is per row or per column of the block, or one for all.
//! With [`RequantMode::Float`], what `kestrel_ir::quant::requantize_output_float` computes
//! instead ([`Requantization::emit_float`], eight lanes at a time).
//!
//! Two forms, the same results:
//!
//! - **Vector** (x86-64 with SSE4.2, when the multiplier is one per row or one for all, so a
//!   row shares one shift): 16 elements per step as four i32x4. The i64 products are
//!   `imul(swiden_low(a), swiden_low(m))` and the `high` pair (`pmuldq`; Cranelift prefers
//!   `vpmullq` with AVX-512 DQ), rounded and shifted in i64x2 (`vpsraq` with AVX-512 VL, else
//!   Cranelift's sequence), clamped in i64x2 to `[min - zp, max - zp]` (`pcmpgtq` and a
//!   `pand`/`pandn`/`por` select per bound), so their low halves are exact;
//!   those are gathered by `shufps`, `zp` added, and narrowed with `packssdw` and
//!   `packsswb`/`packuswb` (exact: the values are already in range). A row's last `cols % 16`
//!   elements go four at a time, then one at a time by the scalar form.
//!   `clamp(s, min - zp, max - zp) + zp = clamp(sat32(s) +sat zp, min, max)` for `min, max, zp`
//!   within 8-bit ranges, which is the interpreter's `requantize_output`.
//! - **Scalar** (everything else: per-column multipliers, other targets): one element per step,
//!   the product and shift in i64 registers.

use crate::jit::asm::requant::RequantShape;
use crate::jit::emit::{lanes, Emitter};
use crate::jit::isa::IsaFlags;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use kestrel_ir::quant::FixedMultiplier;
use kestrel_ir::{DType, RequantMode};

/// Which axis of the block the multipliers (and their count) run along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channels {
    /// One multiplier for every element.
    One,
    /// One per row (a convolution's output channels are rows of its GEMM).
    Rows,
    /// One per column (a Gemm's output features).
    Columns,
}

/// The requantization of one op: its multipliers and output parameters.
#[derive(Clone, Debug)]
pub struct Requantization {
    pub fixed: Vec<FixedMultiplier>,
    pub channels: Channels,
    pub to: DType,
    pub zero_point: i32,
    pub min: i32,
    pub max: i32,
    /// The arithmetic; with [`RequantMode::Float`] the real `multipliers` are used (one per
    /// entry of `fixed`), not `fixed`.
    pub mode: RequantMode,
    pub multipliers: Vec<f32>,
}

fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl Requantization {
    /// The multiplier and total shift (`31 - shift`) tables, one entry per channel, as
    /// little-endian bytes: `[m_0, t_0, m_1, t_1, ...]` as i32 pairs.
    /// With [`RequantMode::Float`]: the f32 multipliers, one per channel.
    pub fn table(&self) -> Vec<u8> {
        if self.mode == RequantMode::Float {
            return self
                .multipliers
                .iter()
                .flat_map(|m| m.to_le_bytes())
                .collect();
        }
        self.fixed
            .iter()
            .flat_map(|f| {
                let mut b = f.multiplier.to_le_bytes().to_vec();
                b.extend((31 - f.shift).to_le_bytes());
                b
            })
            .collect()
    }

    /// Emits the requantization of `rows × cols` accumulators at `acc` (i32, `acc_ld` elements
    /// apart between rows) into `out` (`to`, `out_ld` apart). `table` points at [`Self::table`]'s
    /// data; `first_channel` (I64) is the channel of row 0 (for `Rows`) or column 0 (for
    /// `Columns`), so a part of a larger block can be requantized.
    #[allow(clippy::too_many_arguments)]
    pub fn emit(
        &self,
        e: &mut Emitter,
        acc: Value,
        acc_ld: usize,
        out: Value,
        out_ld: usize,
        rows: usize,
        cols: usize,
        table: Value,
        first_channel: Value,
    ) {
        if rows == 0 || cols == 0 {
            return;
        }
        if self.mode == RequantMode::Float {
            return self.emit_float(
                e,
                acc,
                acc_ld,
                out,
                out_ld,
                rows,
                cols,
                table,
                first_channel,
            );
        }
        let (zp, lo, hi) = (self.zero_point as i64, self.min as i64, self.max as i64);
        let load_pair = |e: &mut Emitter, ch: Value| {
            let p = e.index(table, ch, 8);
            let m = e.fb.ins().sload32(mem(), p, 0);
            let t = e.fb.ins().sload32(mem(), p, 4);
            (m, t)
        };
        // One element: `acc` (I32) with multiplier `m` and total shift `t` (I64) to the stored byte.
        let element = |e: &mut Emitter, a: Value, m: Value, t: Value| {
            let a64 = e.fb.ins().sextend(types::I64, a);
            let prod = e.fb.ins().imul(a64, m);
            let t1 = e.fb.ins().iadd_imm_s(t, -1);
            let one = e.iconst(1);
            let round = e.fb.ins().ishl(one, t1);
            let sum = e.fb.ins().iadd(prod, round);
            let shifted = e.fb.ins().sshr(sum, t);
            let y = e.fb.ins().iadd_imm_s(shifted, zp);
            let lo_v = e.iconst(lo);
            let hi_v = e.iconst(hi);
            let below = e.fb.ins().icmp(IntCC::SignedLessThan, y, lo_v);
            let y = e.fb.ins().select(below, lo_v, y);
            let above = e.fb.ins().icmp(IntCC::SignedGreaterThan, y, hi_v);
            let y = e.fb.ins().select(above, hi_v, y);
            e.fb.ins().ireduce(types::I8, y)
        };
        let zero = e.iconst(0);
        let fixed_one = match self.channels {
            Channels::One => Some(load_pair(e, zero)),
            _ => None,
        };
        let vector = self.channels != Channels::Columns && Self::has_vector_form(&e.flags);
        e.loop_n(rows, |e, r| {
            let arow = e.index(acc, r, (acc_ld * 4) as i64);
            let orow = e.index(out, r, out_ld as i64);
            let row_pair = match self.channels {
                Channels::Rows => {
                    let ch = e.fb.ins().iadd(first_channel, r);
                    Some(load_pair(e, ch))
                }
                _ => fixed_one,
            };
            let mut done = 0;
            if vector {
                let (m, t) = row_pair.expect("one multiplier per row");
                done = self.emit_row_vector(e, arow, orow, cols, m, t);
            }
            let tail = cols - done;
            let arow = e.addr(arow, 4 * done as i64);
            let orow = e.addr(orow, done as i64);
            e.loop_n(tail, |e, c| {
                let (m, t) = match row_pair {
                    Some(p) => p,
                    None => {
                        let ch = e.fb.ins().iadd(first_channel, c);
                        load_pair(e, ch)
                    }
                };
                let ap = e.index(arow, c, 4);
                let a = e.load(types::I32, ap, 0);
                let y = element(e, a, m, t);
                let op = e.index(orow, c, 1);
                e.store(y, op, 0);
            });
        });
    }

    /// Whether [`Self::emit`] uses the vector form for one multiplier per row or for all:
    /// x86-64 with SSE4.2 (`pcmpgtq`, `pmuldq`), not scalarised.
    pub fn has_vector_form(flags: &IsaFlags) -> bool {
        flags.is_x86 && flags.has_sse41 && flags.has_sse42 && !flags.scalarized
    }

    /// The vector form of one row: the first `cols - cols % 4` elements of `arow` (i32) into
    /// `orow` with multiplier `m` and total shift `t` (I64 values, the table's); returns how many
    /// elements it wrote.
    fn emit_row_vector(
        &self,
        e: &mut Emitter,
        arow: Value,
        orow: Value,
        cols: usize,
        m: Value,
        t: Value,
    ) -> usize {
        let (wide, quads) = (cols / 16, (cols % 16) / 4);
        if wide == 0 && quads == 0 {
            return 0;
        }
        let m32 = e.fb.ins().ireduce(types::I32, m);
        let mv = e.fb.ins().splat(types::I32X4, m32);
        let one = e.iconst(1);
        let t1 = e.fb.ins().iadd_imm_s(t, -1);
        let round = e.fb.ins().ishl(one, t1);
        let round = e.fb.ins().splat(types::I64X2, round);
        let zp = self.zero_point as i64;
        let lo = e.iconst(self.min as i64 - zp);
        let lo = e.fb.ins().splat(types::I64X2, lo);
        let hi = e.iconst(self.max as i64 - zp);
        let hi = e.fb.ins().splat(types::I64X2, hi);
        let zpv = e.i32const(self.zero_point);
        let zpv = e.fb.ins().splat(types::I32X4, zpv);
        // Four accumulators to four i32 results in `[min, max]`.
        let quad = |e: &mut Emitter, a: Value| {
            let half = |e: &mut Emitter, high: bool| {
                let (x, y) = if high {
                    (e.fb.ins().swiden_high(a), e.fb.ins().swiden_high(mv))
                } else {
                    (e.fb.ins().swiden_low(a), e.fb.ins().swiden_low(mv))
                };
                let p = e.fb.ins().imul(x, y);
                let p = e.fb.ins().iadd(p, round);
                let p = e.fb.ins().sshr(p, t);
                let p = e.fb.ins().smax(p, lo);
                e.fb.ins().smin(p, hi)
            };
            let (l, h) = (half(e, false), half(e, true));
            let low32 = e.deinterleave(l, h, false);
            let low32 = e.fb.ins().bitcast(types::I32X4, lanes(), low32);
            e.fb.ins().iadd(low32, zpv)
        };
        let bytes = |e: &mut Emitter, x: Value, y: Value| match self.to {
            DType::U8 => e.fb.ins().unarrow(x, y),
            _ => e.fb.ins().snarrow(x, y),
        };
        e.loop_n(wide, |e, i| {
            let ap = e.index(arow, i, 64);
            let q: Vec<Value> = (0..4)
                .map(|j| {
                    let a = e.fb.ins().load(types::I32X4, mem(), ap, 16 * j);
                    quad(e, a)
                })
                .collect();
            let w0 = e.fb.ins().snarrow(q[0], q[1]);
            let w1 = e.fb.ins().snarrow(q[2], q[3]);
            let b = bytes(e, w0, w1);
            let op = e.index(orow, i, 16);
            e.fb.ins().store(mem(), b, op, 0);
        });
        let (arow, orow) = (
            e.addr(arow, 64 * wide as i64),
            e.addr(orow, 16 * wide as i64),
        );
        e.loop_n(quads, |e, i| {
            let ap = e.index(arow, i, 16);
            let a = e.fb.ins().load(types::I32X4, mem(), ap, 0);
            let q = quad(e, a);
            let w = e.fb.ins().snarrow(q, q);
            let b = bytes(e, w, w);
            let b = e.fb.ins().bitcast(types::I32X4, lanes(), b);
            let b = e.fb.ins().extractlane(b, 0u8);
            let op = e.index(orow, i, 4);
            e.fb.ins().store(mem(), b, op, 0);
        });
        16 * wide + 4 * quads
    }
}

impl Requantization {
    /// [`Self::emit`] for [`RequantMode::Float`]: per element `clamp(round_half_even(clamp(f32(acc)
    /// · M, min - zero_point, max - zero_point)) + zero_point)`, one f32 multiply, the same integers
    /// as `kestrel_ir::quant::requantize_output_float` (the bounds are integers, so clamping the
    /// product before rounding changes nothing). Eight columns per step as two f32x4 (unless the
    /// target is scalarised), the rest one at a time.
    #[allow(clippy::too_many_arguments)]
    fn emit_float(
        &self,
        e: &mut Emitter,
        acc: Value,
        acc_ld: usize,
        out: Value,
        out_ld: usize,
        rows: usize,
        cols: usize,
        table: Value,
        first_channel: Value,
    ) {
        let signed = self.to == DType::I8;
        // |min - zero_point| <= 255: exact in f32.
        let (lo, hi) = (
            (self.min - self.zero_point) as f32,
            (self.max - self.zero_point) as f32,
        );
        let zp = self.zero_point as i64;
        let scale_of = |e: &mut Emitter, ch: Value, ty| {
            let p = e.index(table, ch, 4);
            e.fb.ins().load(ty, mem(), p, 0)
        };
        let zero = e.iconst(0);
        let one_scale = match self.channels {
            Channels::One => Some(scale_of(e, zero, types::F32)),
            _ => None,
        };
        // One f32 product (`F32` or `F32X4`) to its levels (`I32` or `I32X4`).
        let levels = |e: &mut Emitter, f: Value, ty, ity| {
            let lo_v = e.fconst(ty, lo);
            let hi_v = e.fconst(ty, hi);
            let f = e.fb.ins().fmax(f, lo_v);
            let f = e.fb.ins().fmin(f, hi_v);
            let r = e.nearest(f);
            let l = e.fb.ins().fcvt_to_sint_sat(ity, r);
            let zp_v = e.iconst_ty(ity, zp);
            e.fb.ins().iadd(l, zp_v)
        };
        // The vector form's rounding: with |v| < 2^22, the f32 sum `v + 1.5·2^23` is rounded
        // half to even at units (the FPU's own rounding), and its bits are `0x4B40_0000 +
        // round(v)`; subtracting `0x4B40_0000 - zero_point` gives the level. Clamping first keeps
        // |v| ≤ 255; the clamp's compare-and-select lowers to one `maxps`/`minps` each. A NaN
        // product would pass the clamp, so this needs finite multipliers (a finite product may
        // still overflow to ±∞, which the clamp bounds).
        let finite = self.multipliers.iter().all(|m| m.is_finite());
        let magic_levels = |e: &mut Emitter, f: Value| {
            let f = e.clamp(f, lo, hi);
            let magic = e.fconst(types::F32X4, 12_582_912.0);
            let biased = e.fb.ins().fadd(f, magic);
            let bits = e.bits(types::I32X4, biased);
            let offset = e.iconst_ty(types::I32X4, 0x4B40_0000 - self.zero_point as i64);
            e.fb.ins().isub(bits, offset)
        };
        // The full-width kernel computes the vector form's bytes (`asm::requant`).
        let one_per_row = self.channels != Channels::Columns;
        let wide = match (e.micro.as_ref(), finite && one_per_row, e.flags.scalarized) {
            (Some(m), true, false) => Some(RequantShape {
                isa: m.isa(),
                lo: lo.to_bits(),
                hi: hi.to_bits(),
                offset: (0x4B40_0000 - self.zero_point as i64) as i32,
                signed,
            }),
            _ => None,
        };
        e.loop_n(rows, |e, r| {
            let arow = e.index(acc, r, (acc_ld * 4) as i64);
            let orow = e.index(out, r, out_ld as i64);
            // The row's multiplier index, when the row has one.
            let row_ch = match self.channels {
                Channels::Rows => Some(e.fb.ins().iadd(first_channel, r)),
                Channels::One => Some(zero),
                Channels::Columns => None,
            };
            let row_scale = match self.channels {
                Channels::Rows => row_ch.map(|ch| scale_of(e, ch, types::F32)),
                _ => one_scale,
            };
            // Whole vectors of the row in the full-width kernel, the rest below.
            let mut start = 0;
            if let (Some(shape), Some(ch)) = (wide, row_ch) {
                let lanes = shape.isa.lanes();
                if cols >= lanes {
                    let scale_at = e.index(table, ch, 4);
                    let vectors = e.iconst((cols / lanes) as i64);
                    e.call_kernel(shape, [arow, orow, vectors, scale_at, zero]);
                    start = cols / lanes * lanes;
                }
            }
            let (arow, orow) = (e.addr(arow, 4 * start as i64), e.addr(orow, start as i64));
            let cols = cols - start;
            let chunks = if e.flags.scalarized { 0 } else { cols / 8 };
            if chunks > 0 {
                let splat = row_scale.map(|s| e.fb.ins().splat(types::F32X4, s));
                e.hoisting_constants(|e| {
                    e.loop_n(chunks, |e, i| {
                        let ap = e.index(arow, i, 32);
                        let mut l = [zero; 2];
                        for (h, lh) in l.iter_mut().enumerate() {
                            let a = e.fb.ins().load(types::I32X4, mem(), ap, 16 * h as i32);
                            let s = match splat {
                                Some(s) => s,
                                None => {
                                    let c0 = e.fb.ins().imul_imm_s(i, 8);
                                    let c0 = e.fb.ins().iadd_imm_s(c0, 4 * h as i64);
                                    let ch = e.fb.ins().iadd(first_channel, c0);
                                    scale_of(e, ch, types::F32X4)
                                }
                            };
                            let f = e.fb.ins().fcvt_from_sint(types::F32X4, a);
                            let f = e.fb.ins().fmul(f, s);
                            *lh = if finite {
                                magic_levels(e, f)
                            } else {
                                levels(e, f, types::F32X4, types::I32X4)
                            };
                        }
                        // Eight levels within [min, max] to eight bytes.
                        let op = e.index(orow, i, 8);
                        store8_levels(e, signed, l, op);
                    })
                });
            }
            e.loop_range((chunks * 8) as i64, cols as i64, 1, |e, c| {
                let s = match row_scale {
                    Some(s) => s,
                    None => {
                        let ch = e.fb.ins().iadd(first_channel, c);
                        scale_of(e, ch, types::F32)
                    }
                };
                let ap = e.index(arow, c, 4);
                let a = e.load(types::I32, ap, 0);
                let f = e.fb.ins().fcvt_from_sint(types::F32, a);
                let f = e.fb.ins().fmul(f, s);
                let y = levels(e, f, types::F32, types::I32);
                let y = e.fb.ins().ireduce(types::I8, y);
                let op = e.index(orow, c, 1);
                e.store(y, op, 0);
            });
        });
    }
}

/// The fixed-point multipliers of a requantization's real multipliers.
pub fn fixed_multipliers(multipliers: &[kestrel_ir::F32]) -> Option<Vec<FixedMultiplier>> {
    multipliers
        .iter()
        .map(|m| kestrel_ir::quant::quantize_multiplier(m.0))
        .collect()
}

/// The eight I32 levels of `a` then `b` (two `I32X4`, within the 8-bit range of `signed`) as the
/// low eight bytes of an `I8X16`: `packssdw`, then `packsswb` (`signed`) or `packuswb`, exact
/// because the levels are in range. Not for scalarised targets (no narrowing shuffles there).
pub fn narrow_to_bytes(e: &mut Emitter, signed: bool, a: Value, b: Value) -> Value {
    let w = e.fb.ins().snarrow(a, b);
    if signed {
        e.fb.ins().snarrow(w, w)
    } else {
        e.fb.ins().unarrow(w, w)
    }
}

/// Stores eight I32 levels (two `I32X4`, within the 8-bit range of `signed`) as eight bytes at
/// `p` ([`narrow_to_bytes`]).
pub fn store8_levels(e: &mut Emitter, signed: bool, levels: [Value; 2], p: Value) {
    let bytes = narrow_to_bytes(e, signed, levels[0], levels[1]);
    let wide = e.bits(types::I64X2, bytes);
    let lo8 = e.fb.ins().extractlane(wide, 0u8);
    e.store(lo8, p, 0);
}
