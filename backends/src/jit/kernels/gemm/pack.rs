//! The k blocking and the packed layout of B, shared by compile-time packing ([`pack_b`]),
//! run-time packing ([`emit_pack_b`]) and the blocking loops (`super`).
//!
//! Packed layout for a tile with `cols` columns and step `k_step` (see [`super::tile`]): `k` is
//! cut into blocks ([`k_blocks`]); the block starting at row `k0` with `kcb` rows occupies
//! `[k0·n_pad, (k0 + kcb_pad)·n_pad)` (`n_pad` = `n` rounded up to `cols`, `kcb_pad` = `kcb`
//! rounded up to `k_step`; only the last block is padded). In a block, panel `j` (columns
//! `cols·j..`) is `kcb_pad / k_step` steps of `cols · k_step` elements at `j·kcb_pad·cols`;
//! in a step, element `(column c, k offset q)` is at `c·k_step + q`. Padding is zero.

use super::loops::{for_count, fresh_block, imm, load_lanes, load_quad, zero_vec};
use super::tile::{mem, Panels, Tile};
use crate::jit::isa::IsaFlags;
use cranelift_codegen::ir::{types, ConstantData, Endianness, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;

/// Unrolling of the step loop: k blocks other than the last are multiples of `UNROLL` steps.
pub const UNROLL: usize = 4;

/// How `0..k` is cut into blocks: blocks `0..count-1` have `kc` rows, the last one `last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KBlocks {
    pub kc: usize,
    pub count: usize,
    pub last: usize,
}

/// Balanced k blocks of at most `tile.kc()` rows; every block but the last is a multiple of
/// `k_step · UNROLL`.
pub fn k_blocks(tile: &impl Panels, k: usize) -> KBlocks {
    let max = tile.kc();
    if k <= max {
        return KBlocks {
            kc: k,
            count: 1,
            last: k,
        };
    }
    let n0 = k.div_ceil(max);
    let kc = k.div_ceil(n0).next_multiple_of(UNROLL * tile.k_step());
    let count = k.div_ceil(kc);
    KBlocks {
        kc,
        count,
        last: k - (count - 1) * kc,
    }
}

/// Number of elements of B packed for `k`×`n`: `round_up(k, k_step) · round_up(n, cols)`.
pub fn packed_len(tile: &impl Panels, k: usize, n: usize) -> usize {
    k.next_multiple_of(tile.k_step()) * n.div_ceil(tile.cols()) * tile.cols()
}

/// Packs `b`, which is `[k, n]` row-major, or `[n, k]` row-major when `transposed`, into the
/// layout of the module documentation.
///
/// Panics if `b.len() != k·n`.
pub fn pack_b<T: Copy + Default>(
    tile: &impl Panels,
    b: &[T],
    k: usize,
    n: usize,
    transposed: bool,
) -> Vec<T> {
    assert_eq!(b.len(), k * n, "pack_b: operand is not k×n");
    let (cols, ks) = (tile.cols(), tile.k_step());
    let n_pad = n.div_ceil(cols) * cols;
    let kb = k_blocks(tile, k);
    let mut data = vec![T::default(); packed_len(tile, k, n)];
    for p in 0..k {
        let k0 = p / kb.kc * kb.kc;
        let kcb_pad = kb.kc.min(k - k0).next_multiple_of(ks);
        let (step, q) = ((p - k0) / ks, (p - k0) % ks);
        let base = k0 * n_pad + step * cols * ks + q;
        for j in 0..n {
            let v = if transposed {
                b[j * k + p]
            } else {
                b[p * n + j]
            };
            data[base + (j / cols) * kcb_pad * cols + (j % cols) * ks] = v;
        }
    }
    data
}

/// Emits code that writes at `dst` exactly what [`pack_b`]`(tile, B, k, n, false)` returns, for a
/// run-time B row-major `[k, n]` with leading dimension `ldb` (reads only the k×n elements).
/// Only for tiles whose step is one row of f32 (`k_step == 1`, 4-byte elements): a step is then
/// a copy of `cols` contiguous elements.
pub fn emit_pack_b(
    fb: &mut FunctionBuilder,
    tile: &impl Panels,
    b: Value,
    ldb: usize,
    dst: Value,
    k: usize,
    n: usize,
) {
    assert!(ldb >= n, "ldb < n");
    assert!(
        tile.k_step() == 1 && tile.b_bytes() == 4,
        "emit_pack_b: only for one-row steps of 4-byte elements"
    );
    if n == 0 || k == 0 {
        return fresh_block(fb);
    }
    let cols = tile.cols();
    let kb = k_blocks(tile, k);
    let n_pad = (n.div_ceil(cols) * cols) as i64;
    let ldb_b = (ldb * 4) as i64;
    let pack_block = |fb: &mut FunctionBuilder, src: Value, dst: Value, kcb: usize| {
        let full = n / cols;
        let rem = n % cols;
        for_count(fb, kcb, |fb, pi| {
            let so = fb.ins().imul_imm_s(pi, ldb_b);
            let src_row = fb.ins().iadd(src, so);
            let d_o = fb.ins().imul_imm_s(pi, (cols * 4) as i64);
            let dst_row = fb.ins().iadd(dst, d_o);
            let panel_bytes = (kcb * cols * 4) as i64;
            for_count(fb, full, |fb, jp| {
                let so = fb.ins().imul_imm_s(jp, (cols * 4) as i64);
                let s = fb.ins().iadd(src_row, so);
                let d_o = fb.ins().imul_imm_s(jp, panel_bytes);
                let d = fb.ins().iadd(dst_row, d_o);
                for v in 0..cols / 4 {
                    let x = fb.ins().load(types::F32X4, mem(), s, (v * 16) as i32);
                    fb.ins().store(mem(), x, d, (v * 16) as i32);
                }
            });
            if rem != 0 {
                let s = fb.ins().iadd_imm_s(src_row, (full * cols * 4) as i64);
                let d = fb.ins().iadd_imm_s(dst_row, full as i64 * panel_bytes);
                for v in 0..cols / 4 {
                    let lanes = rem.saturating_sub(v * 4).min(4);
                    let x = load_lanes(fb, types::F32, s, (v * 16) as i32, lanes);
                    fb.ins().store(mem(), x, d, (v * 16) as i32);
                }
            }
        });
    };
    if kb.count >= 2 {
        for_count(fb, kb.count - 1, |fb, blk| {
            let so = fb.ins().imul_imm_s(blk, kb.kc as i64 * ldb_b);
            let s = fb.ins().iadd(b, so);
            let d_o = fb.ins().imul_imm_s(blk, (kb.kc as i64) * n_pad * 4);
            let d = fb.ins().iadd(dst, d_o);
            pack_block(fb, s, d, kb.kc);
        });
    }
    let k0 = ((kb.count - 1) * kb.kc) as i64;
    let s = fb.ins().iadd_imm_s(b, k0 * ldb_b);
    let d = fb.ins().iadd_imm_s(dst, k0 * n_pad * 4);
    pack_block(fb, s, d, kb.last);
    fresh_block(fb);
}

/// Emits code that writes at `dst` exactly what [`pack_b`]`(tile, B, k, n, false)` returns, for a
/// run-time byte matrix B (u8 or s8) row-major `[k, n]` with leading dimension `ldb` bytes:
/// reads only the k×n bytes, writes every byte of the packed length (padding zero). Only for
/// tiles with 1-byte elements and a step of four k (the int8 tiles): a step is then four rows
/// of B interleaved byte by byte, column by column.
///
/// Vector code handles 16 columns of a step at a time (four row loads, two rounds of byte and
/// word unpacks, four stores); the last columns of a step that do not fill 16 are assembled per
/// four-column group from 32-bit row loads and one byte shuffle. With `flags.scalarized` the
/// code uses no vector type at all.
#[allow(clippy::too_many_arguments)]
pub fn emit_pack_b_bytes(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    tile: &impl Tile,
    b: Value,
    ldb: usize,
    dst: Value,
    k: usize,
    n: usize,
) {
    assert!(ldb >= n, "ldb < n");
    assert!(
        tile.k_step() == 4 && tile.a_bytes() == 1 && tile.b_bytes() == 1,
        "emit_pack_b_bytes: only for steps of four 1-byte k"
    );
    if n == 0 || k == 0 {
        return fresh_block(fb);
    }
    let kb = k_blocks(tile, k);
    let n_pad = n.div_ceil(tile.cols()) * tile.cols();
    let packer = BytePacker {
        cols: tile.cols(),
        n,
        ldb,
        scalar: flags.scalarized,
        byte_shuffle: flags.has_byte_shuffle(),
    };
    if kb.count >= 2 {
        for_count(fb, kb.count - 1, |fb, blk| {
            let so = fb.ins().imul_imm_s(blk, (kb.kc * ldb) as i64);
            let s = fb.ins().iadd(b, so);
            let d_o = fb.ins().imul_imm_s(blk, (kb.kc * n_pad) as i64);
            let d = fb.ins().iadd(dst, d_o);
            packer.block(fb, s, d, kb.kc);
        });
    }
    let k0 = (kb.count - 1) * kb.kc;
    let s = fb.ins().iadd_imm_s(b, (k0 * ldb) as i64);
    let d = fb.ins().iadd_imm_s(dst, (k0 * n_pad) as i64);
    packer.block(fb, s, d, kb.last);
    fresh_block(fb);
}

/// The compile-time parameters of [`emit_pack_b_bytes`].
struct BytePacker {
    cols: usize,
    n: usize,
    ldb: usize,
    scalar: bool,
    /// An arbitrary byte shuffle is one instruction (else the partial groups are assembled
    /// from scalar stores: x86-64 lowers it to a `pshufb` libcall without SSSE3).
    byte_shuffle: bool,
}

/// Byte shuffles (lanes `0..16` from the first operand, `16..32` from the second) that x86-64
/// lowers to `punpck{l,h}{bw,wd}` and aarch64 to `zip1`/`zip2`.
const UNPACK_LO_BYTES: [u8; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
const UNPACK_HI_BYTES: [u8; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];
const UNPACK_LO_WORDS: [u8; 16] = [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23];
const UNPACK_HI_WORDS: [u8; 16] = [8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31];
/// Transposes the 4×4 bytes of one vector (four rows of four columns → four columns of four k).
const TRANSPOSE_4X4: [u8; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

fn shuffle(fb: &mut FunctionBuilder, x: Value, y: Value, mask: [u8; 16]) -> Value {
    let m = fb.func.dfg.immediates.push(ConstantData::from(&mask[..]));
    fb.ins().shuffle(x, y, m)
}

impl BytePacker {
    /// One k block of `kcb` rows: `src` at its first row of B, `dst` at its first packed byte.
    fn block(&self, fb: &mut FunctionBuilder, src: Value, dst: Value, kcb: usize) {
        let kcb_pad = kcb.next_multiple_of(4);
        let panel_bytes = kcb_pad * self.cols;
        let full = kcb / 4;
        for_count(fb, full, |fb, s| {
            let so = fb.ins().imul_imm_s(s, (4 * self.ldb) as i64);
            let src_s = fb.ins().iadd(src, so);
            let d_o = fb.ins().imul_imm_s(s, (4 * self.cols) as i64);
            let dst_s = fb.ins().iadd(dst, d_o);
            self.step(fb, src_s, dst_s, 4, panel_bytes);
        });
        if !kcb.is_multiple_of(4) {
            let src_s = fb.ins().iadd_imm_s(src, (4 * full * self.ldb) as i64);
            let dst_s = fb.ins().iadd_imm_s(dst, (4 * full * self.cols) as i64);
            self.step(fb, src_s, dst_s, kcb % 4, panel_bytes);
        }
    }

    /// Byte offset, from a step's first packed byte, of the four-column group `g`.
    fn group_offset(&self, g: usize, panel_bytes: usize) -> usize {
        let per_panel = self.cols / 4;
        g / per_panel * panel_bytes + g % per_panel * 16
    }

    /// One step: `rows` (1..=4) rows of B at `src` (the others zero), written at `dst`.
    fn step(
        &self,
        fb: &mut FunctionBuilder,
        src: Value,
        dst: Value,
        rows: usize,
        panel_bytes: usize,
    ) {
        let groups = self.n.div_ceil(self.cols) * self.cols / 4;
        if self.scalar {
            for g in 0..groups {
                let off = self.group_offset(g, panel_bytes);
                self.scalar_group(fb, src, dst, 4 * g, rows, off);
            }
            return;
        }
        // Super-chunks of `span` columns cover whole panels and whole 16-column chunks, so the
        // offsets inside one are immediates.
        let span = lcm(16, self.cols);
        let supers = self.n / span;
        for_count(fb, supers, |fb, sc| {
            let so = fb.ins().imul_imm_s(sc, span as i64);
            let s = fb.ins().iadd(src, so);
            let d_o = fb
                .ins()
                .imul_imm_s(sc, (span / self.cols * panel_bytes) as i64);
            let d = fb.ins().iadd(dst, d_o);
            for t in 0..span / 16 {
                let offs = [0, 1, 2, 3].map(|u| self.group_offset(4 * t + u, panel_bytes));
                self.chunk16(fb, s, d, 16 * t, rows, offs);
            }
        });
        // The remaining columns, at offsets from the step's start.
        let mut g = supers * span / 4;
        while g < groups {
            if 4 * g + 16 <= self.n {
                let offs = [0, 1, 2, 3].map(|u| self.group_offset(g + u, panel_bytes));
                self.chunk16(fb, src, dst, 4 * g, rows, offs);
                g += 4;
            } else {
                let off = self.group_offset(g, panel_bytes);
                self.group(fb, src, dst, 4 * g, rows, off);
                g += 1;
            }
        }
    }

    /// Columns `col..col + 16` of `rows` rows at `src` (each row `ldb` bytes further), written as
    /// four groups at `dst + offs[u]`.
    fn chunk16(
        &self,
        fb: &mut FunctionBuilder,
        src: Value,
        dst: Value,
        col: usize,
        rows: usize,
        offs: [usize; 4],
    ) {
        let r: Vec<Value> = (0..4)
            .map(|q| {
                if q < rows {
                    fb.ins()
                        .load(types::I8X16, mem(), src, imm(q * self.ldb + col))
                } else {
                    zero_vec(fb, types::I8X16)
                }
            })
            .collect();
        let t0 = shuffle(fb, r[0], r[1], UNPACK_LO_BYTES);
        let t1 = shuffle(fb, r[2], r[3], UNPACK_LO_BYTES);
        let t2 = shuffle(fb, r[0], r[1], UNPACK_HI_BYTES);
        let t3 = shuffle(fb, r[2], r[3], UNPACK_HI_BYTES);
        let g = [
            shuffle(fb, t0, t1, UNPACK_LO_WORDS),
            shuffle(fb, t0, t1, UNPACK_HI_WORDS),
            shuffle(fb, t2, t3, UNPACK_LO_WORDS),
            shuffle(fb, t2, t3, UNPACK_HI_WORDS),
        ];
        for (v, off) in g.into_iter().zip(offs) {
            fb.ins().store(mem(), v, dst, imm(off));
        }
    }

    /// The group of columns `col..col + 4` (those past `n` zero) of `rows` rows, written at
    /// `dst + off`.
    fn group(
        &self,
        fb: &mut FunctionBuilder,
        src: Value,
        dst: Value,
        col: usize,
        rows: usize,
        off: usize,
    ) {
        let valid = self.n.saturating_sub(col).min(4);
        if valid == 0 {
            let z = zero_vec(fb, types::I8X16);
            fb.ins().store(mem(), z, dst, imm(off));
            return;
        }
        if !self.byte_shuffle {
            return self.scalar_group(fb, src, dst, col, rows, off);
        }
        let quads: Vec<Value> = (0..4)
            .map(|q| {
                if q < rows {
                    load_quad(fb, src, imm(q * self.ldb + col), valid)
                } else {
                    fb.ins().iconst(types::I32, 0)
                }
            })
            .collect();
        let mut v = fb.ins().splat(types::I32X4, quads[0]);
        for (q, &x) in quads.iter().enumerate().skip(1) {
            v = fb.ins().insertlane(v, x, q as u8);
        }
        let little = MemFlagsData::new().with_endianness(Endianness::Little);
        let v = fb.ins().bitcast(types::I8X16, little, v);
        let t = shuffle(fb, v, v, TRANSPOSE_4X4);
        fb.ins().store(mem(), t, dst, imm(off));
    }

    /// [`BytePacker::group`] without vectors: one i32 store per column.
    fn scalar_group(
        &self,
        fb: &mut FunctionBuilder,
        src: Value,
        dst: Value,
        col: usize,
        rows: usize,
        off: usize,
    ) {
        for c in 0..4 {
            let quad = if col + c < self.n {
                self.column_quad(fb, src, col + c, rows)
            } else {
                fb.ins().iconst(types::I32, 0)
            };
            fb.ins().store(mem(), quad, dst, imm(off + 4 * c));
        }
    }

    /// Column `col`'s `rows` bytes at `src` (row stride `ldb`) as the low bytes of an i32 (row 0
    /// lowest), the others zero.
    fn column_quad(&self, fb: &mut FunctionBuilder, src: Value, col: usize, rows: usize) -> Value {
        let mut quad = fb.ins().uload8(types::I32, mem(), src, imm(col));
        for q in 1..rows {
            let x = fb
                .ins()
                .uload8(types::I32, mem(), src, imm(q * self.ldb + col));
            let x = fb.ins().ishl_imm_u(x, 8 * q as i64);
            quad = fb.ins().bor(quad, x);
        }
        quad
    }
}

/// Least common multiple.
fn lcm(a: usize, b: usize) -> usize {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
}
