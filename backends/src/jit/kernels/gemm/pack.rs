//! The k blocking and the packed layout of B, shared by compile-time packing ([`pack_b`]),
//! run-time packing ([`emit_pack_b`]) and the blocking loops (`super`).
//!
//! Packed layout for a tile with `cols` columns and step `k_step` (see [`super::tile`]): `k` is
//! cut into blocks ([`k_blocks`]); the block starting at row `k0` with `kcb` rows occupies
//! `[k0·n_pad, (k0 + kcb_pad)·n_pad)` (`n_pad` = `n` rounded up to `cols`, `kcb_pad` = `kcb`
//! rounded up to `k_step`; only the last block is padded). In a block, panel `j` (columns
//! `cols·j..`) is `kcb_pad / k_step` steps of `cols · k_step` elements at `j·kcb_pad·cols`;
//! in a step, element `(column c, k offset q)` is at `c·k_step + q`. Padding is zero.

use super::loops::{for_count, fresh_block, load_lanes};
use super::tile::{mem, Tile};
use cranelift_codegen::ir::{types, InstBuilder, Value};
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
pub fn k_blocks(tile: &impl Tile, k: usize) -> KBlocks {
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
pub fn packed_len(tile: &impl Tile, k: usize, n: usize) -> usize {
    k.next_multiple_of(tile.k_step()) * n.div_ceil(tile.cols()) * tile.cols()
}

/// Packs `b`, which is `[k, n]` row-major, or `[n, k]` row-major when `transposed`, into the
/// layout of the module documentation.
///
/// Panics if `b.len() != k·n`.
pub fn pack_b<T: Copy + Default>(
    tile: &impl Tile,
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
    tile: &impl Tile,
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
