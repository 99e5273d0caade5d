//! The GEMM blocking around the full-width micro-kernels (`jit::asm::f32_tile`), called from the
//! Cranelift-generated loops: the same BLIS order, k blocks and packed layout as the 128-bit
//! blocking (`super::Plan`), with every tile a call of an assembled kernel.
//!
//! Edge tiles are kernels of their own shape: fewer rows (`m % rows`), fewer columns (`n %
//! cols`, the partial last vector masked). Rows are compile-time (`0..m`), so any row split of
//! [`super::split_rows`] works. The first k block starts the tile at the bias (or zero), later
//! ones reload C, as the 128-bit tile does: with one fused multiply-add per step in k order,
//! both paths give bit-identical results.

use super::loops::{for_count, fresh_block};
use super::pack::{k_blocks, KBlocks, UNROLL};
use super::shape::{BSource, Bias, GemmShape, RowFinish, MAX_PANEL_COLS};
use super::tile::Panels;
use crate::jit::asm::f32_tile::{F32TileShape, Finish, Start};
use crate::jit::asm::int8_tile::{Int8Isa, Int8TileShape};
use crate::jit::asm::registry::MicroKernels;
use crate::jit::asm::WideIsa;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use cranelift_frontend::FunctionBuilder;

/// What the kernels of a wide GEMM multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    /// f32 by f32 (`vfmadd231ps`), one k per step.
    F32(WideIsa),
    /// u8 by s8 into i32 (`vpdpbusd`), four k per step; with `a_signed`, A is the s8 operand.
    Int8 { isa: Int8Isa, a_signed: bool },
}

/// The register tile and blocking of one wide GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WideTile {
    pub product: Product,
    pub rows: usize,
    pub cols: usize,
    /// Rows per row block (a multiple of `rows`; that much of A stays in L2).
    pub mc: usize,
    pub kc: usize,
}

impl WideTile {
    /// The production tile of `isa`: 14×32 on AVX-512 (28 of 32 `zmm` accumulate), 6×16 on
    /// AVX2 (12 of 16 `ymm`); docs/PERFORMANCE.md "Full-width tiles" measures both.
    pub fn for_isa(isa: WideIsa) -> WideTile {
        let product = Product::F32(isa);
        match isa {
            WideIsa::Avx512F => WideTile {
                product,
                rows: 14,
                cols: 32,
                mc: 14 * 9,
                kc: 256,
            },
            WideIsa::Avx2Fma => WideTile {
                product,
                rows: 6,
                cols: 16,
                mc: 6 * 20,
                kc: 256,
            },
        }
    }
}

impl WideTile {
    /// Bytes of one element of A (the same as of B: both f32, or both bytes).
    fn a_bytes(&self) -> usize {
        self.b_bytes()
    }

    /// Lanes of one vector register.
    fn lanes(&self) -> usize {
        match self.product {
            Product::F32(isa) => isa.lanes(),
            Product::Int8 { isa, .. } => isa.lanes(),
        }
    }
}

impl Panels for WideTile {
    fn cols(&self) -> usize {
        self.cols
    }
    fn k_step(&self) -> usize {
        match self.product {
            Product::F32(_) => 1,
            Product::Int8 { .. } => 4,
        }
    }
    fn b_bytes(&self) -> usize {
        match self.product {
            Product::F32(_) => 4,
            Product::Int8 { .. } => 1,
        }
    }
    fn kc(&self) -> usize {
        self.kc
    }
}

/// The compile-time parameters of one wide GEMM.
struct WidePlan {
    tile: WideTile,
    shape: GemmShape,
    kb: KBlocks,
    b: BSource,
    bias: Bias,
    finish: Option<RowFinish>,
}

/// Emits `C = A · B (+ bias)` for rows `0..shape.m` with the kernels of `micro` and `tile`
/// (contract of `super::emit_tiled`; B packed for `tile` by `super::pack`, or, f32 only, read
/// in place). Int8 A rows are read in whole four-k groups: `lda` bytes past the last row's
/// `k` must be readable when `k % 4 != 0`. `finish` (f32, with `Bias::None` only) is applied by
/// the kernels of the last k block.
#[allow(clippy::too_many_arguments)]
pub(super) fn emit(
    fb: &mut FunctionBuilder,
    micro: &mut MicroKernels,
    tile: WideTile,
    shape: GemmShape,
    b_source: BSource,
    a: Value,
    b: Value,
    c: Value,
    bias: Bias,
    finish: Option<RowFinish>,
) {
    let GemmShape { k, n, lda, ldc, .. } = shape;
    assert!(lda >= k && ldc >= n, "gemm: lda < k or ldc < n");
    assert!(
        matches!(tile.product, Product::F32(_)) || b_source == BSource::Packed,
        "int8 wide GEMMs read B packed"
    );
    assert!(
        finish.is_none() || (bias == Bias::None && matches!(tile.product, Product::F32(_))),
        "a finish is for f32 GEMMs without a bias start"
    );
    let p = WidePlan {
        tile,
        shape,
        kb: k_blocks(&tile, k),
        b: b_source,
        bias,
        finish,
    };
    if shape.m > 0 && n > 0 {
        p.emit(fb, micro, a, b, c);
    }
    fresh_block(fb);
}

impl WidePlan {
    fn n_pad(&self) -> usize {
        self.shape.n.div_ceil(self.tile.cols) * self.tile.cols
    }

    /// Bytes between consecutive k rows of B, from one k block's start to the next's per row.
    fn b_row_bytes(&self) -> usize {
        match self.b {
            BSource::Packed => self.n_pad() * self.tile.b_bytes(),
            BSource::Rows { ldb } => ldb * 4,
        }
    }

    /// Bytes between one step of a panel and the next.
    fn b_step_bytes(&self) -> usize {
        match self.b {
            BSource::Packed => self.tile.cols * self.tile.k_step() * self.tile.b_bytes(),
            BSource::Rows { ldb } => ldb * 4,
        }
    }

    /// Bytes between consecutive panels of a k block of `kcb` rows.
    fn b_panel_bytes(&self, kcb: usize) -> usize {
        let t = &self.tile;
        match self.b {
            BSource::Packed => kcb.next_multiple_of(t.k_step()) * t.cols * t.b_bytes(),
            BSource::Rows { .. } => t.cols * 4,
        }
    }

    fn emit(
        &self,
        fb: &mut FunctionBuilder,
        micro: &mut MicroKernels,
        a: Value,
        b: Value,
        c: Value,
    ) {
        let kb = self.kb;
        let first = if kb.count == 1 { kb.last } else { kb.kc };
        self.kblock(fb, micro, a, b, c, first, false, kb.count == 1);
        let a_bytes = self.tile.a_bytes();
        if kb.count >= 3 {
            let (a_blk, b_blk) = (kb.kc * a_bytes, kb.kc * self.b_row_bytes());
            for_count(fb, kb.count - 2, |fb, i| {
                let blk = fb.ins().iadd_imm_s(i, 1);
                let ao = fb.ins().imul_imm_s(blk, a_blk as i64);
                let ak = fb.ins().iadd(a, ao);
                let bo = fb.ins().imul_imm_s(blk, b_blk as i64);
                let bk = fb.ins().iadd(b, bo);
                self.kblock(fb, micro, ak, bk, c, kb.kc, true, false);
            });
        }
        if kb.count >= 2 {
            let k0 = (kb.count - 1) * kb.kc;
            let ak = fb.ins().iadd_imm_s(a, (k0 * a_bytes) as i64);
            let bk = fb.ins().iadd_imm_s(b, (k0 * self.b_row_bytes()) as i64);
            self.kblock(fb, micro, ak, bk, c, kb.last, true, true);
        }
    }

    /// One k block of `kcb` rows (`a_k`, `b_k` at its first column of A / row of B): row blocks
    /// of `mc` rows, the last one holding the edge rows.
    #[allow(clippy::too_many_arguments)]
    fn kblock(
        &self,
        fb: &mut FunctionBuilder,
        micro: &mut MicroKernels,
        a_k: Value,
        b_k: Value,
        c: Value,
        kcb: usize,
        load_c: bool,
        last: bool,
    ) {
        let (m, rows, mc) = (self.shape.m, self.tile.rows, self.tile.mc);
        let full_blocks = m / mc;
        let rest = m % mc;
        let block =
            |fb: &mut FunctionBuilder, micro: &mut MicroKernels, row0: Value, rows_in: usize| {
                self.panels(
                    fb,
                    micro,
                    a_k,
                    b_k,
                    c,
                    row0,
                    rows_in / rows,
                    rows_in % rows,
                    kcb,
                    load_c,
                    last,
                );
            };
        for_count(fb, full_blocks, |fb, ib| {
            let row0 = fb.ins().imul_imm_s(ib, mc as i64);
            block(fb, micro, row0, mc);
        });
        if rest > 0 {
            let row0 = fb.ins().iconst(types::I64, (full_blocks * mc) as i64);
            block(fb, micro, row0, rest);
        }
    }

    /// Every panel of B for the rows `row0..` (`tiles` full tiles, then `edge` rows).
    #[allow(clippy::too_many_arguments)]
    fn panels(
        &self,
        fb: &mut FunctionBuilder,
        micro: &mut MicroKernels,
        a_k: Value,
        b_k: Value,
        c: Value,
        row0: Value,
        tiles: usize,
        edge: usize,
        kcb: usize,
        load_c: bool,
        last: bool,
    ) {
        let cols = self.tile.cols;
        let (full, rem) = (self.shape.n / cols, self.shape.n % cols);
        let panel_bytes = self.b_panel_bytes(kcb) as i64;
        let at = |fb: &mut FunctionBuilder, jp: Value| {
            let bo = fb.ins().imul_imm_s(jp, panel_bytes);
            let bp = fb.ins().iadd(b_k, bo);
            let co = fb.ins().imul_imm_s(jp, (cols * 4) as i64);
            (bp, co)
        };
        for_count(fb, full, |fb, jp| {
            let (bp, co) = at(fb, jp);
            self.tiles(
                fb, micro, a_k, bp, c, co, row0, tiles, edge, cols, kcb, load_c, last,
            );
        });
        if rem > 0 {
            let jp = fb.ins().iconst(types::I64, full as i64);
            let (bp, co) = at(fb, jp);
            self.tiles(
                fb, micro, a_k, bp, c, co, row0, tiles, edge, rem, kcb, load_c, last,
            );
        }
    }

    /// The tiles of one panel (`ncols` columns, `col_off` bytes into a row of C and of a column
    /// bias) for the rows `row0..`.
    #[allow(clippy::too_many_arguments)]
    fn tiles(
        &self,
        fb: &mut FunctionBuilder,
        micro: &mut MicroKernels,
        a_k: Value,
        b_panel: Value,
        c: Value,
        col_off: Value,
        row0: Value,
        tiles: usize,
        edge: usize,
        ncols: usize,
        kcb: usize,
        load_c: bool,
        last: bool,
    ) {
        let rows = self.tile.rows;
        let finish = self.finish.filter(|_| last);
        let lda_bytes = self.shape.lda * self.tile.a_bytes();
        let call =
            |fb: &mut FunctionBuilder, micro: &mut MicroKernels, row: Value, nrows: usize| {
                let ao = fb.ins().imul_imm_s(row, lda_bytes as i64);
                let a_t = fb.ins().iadd(a_k, ao);
                let co = fb.ins().imul_imm_s(row, (self.shape.ldc * 4) as i64);
                let c_row = fb.ins().iadd(c, co);
                let c_t = fb.ins().iadd(c_row, col_off);
                let row_bias = |fb: &mut FunctionBuilder, p: Value| {
                    let off = fb.ins().imul_imm_s(row, 4);
                    fb.ins().iadd(p, off)
                };
                // With `Bias::None` (a finish's condition) the bias argument is the finish's.
                let no_bias = |fb: &mut FunctionBuilder| match finish.and_then(|f| f.bias) {
                    Some(p) => row_bias(fb, p),
                    None => fb.ins().iconst(types::I64, 0),
                };
                let (start, bias) = match (load_c, self.bias) {
                    (true, Bias::None) => (Start::LoadC, no_bias(fb)),
                    (true, _) => (Start::LoadC, fb.ins().iconst(types::I64, 0)),
                    (false, Bias::None) => (Start::Zero, no_bias(fb)),
                    (false, Bias::Columns(p)) => (Start::ColumnBias, fb.ins().iadd(p, col_off)),
                    (false, Bias::Rows(p)) => (Start::RowBias, row_bias(fb, p)),
                };
                let groups = kcb.div_ceil(self.tile.k_step());
                let steps = fb.ins().iconst(types::I64, groups as i64);
                let args = [a_t, b_panel, c_t, steps, bias];
                let (b_step_bytes, ldc_bytes) = (self.b_step_bytes(), self.shape.ldc * 4);
                match self.tile.product {
                    Product::F32(isa) => {
                        let shape = F32TileShape {
                            isa,
                            rows: nrows,
                            cols: ncols,
                            lda_bytes,
                            b_step_bytes,
                            ldc_bytes,
                            start,
                            // A packed panel is zero-padded to whole vectors; B in place is not.
                            mask_b: matches!(self.b, BSource::Rows { .. })
                                && !ncols.is_multiple_of(self.tile.lanes()),
                            finish: finish.map_or(Finish::default(), |f| Finish {
                                row_bias: f.bias.is_some(),
                                lower: f.lower.map(f32::to_bits),
                                upper: f.upper.map(f32::to_bits),
                            }),
                        };
                        micro.call(fb, shape, args);
                    }
                    Product::Int8 { isa, a_signed } => {
                        let shape = Int8TileShape {
                            isa,
                            rows: nrows,
                            cols: ncols,
                            lda_bytes,
                            b_step_bytes,
                            ldc_bytes,
                            start,
                            a_signed,
                        };
                        micro.call(fb, shape, args);
                    }
                }
            };
        for_count(fb, tiles, |fb, t| {
            let off = fb.ins().imul_imm_s(t, rows as i64);
            let row = fb.ins().iadd(row0, off);
            call(fb, micro, row, rows);
        });
        if edge > 0 {
            let row = fb.ins().iadd_imm_s(row0, (tiles * rows) as i64);
            call(fb, micro, row, edge);
        }
    }
}

/// Every wide panel width divides [`MAX_PANEL_COLS`] (what scratch is sized for).
const _: () = assert!(MAX_PANEL_COLS.is_multiple_of(32) && MAX_PANEL_COLS.is_multiple_of(16));

/// Checks the unroll of the kernels and of the k blocking agree (k blocks but the last are
/// multiples of it, so no block ends inside an unrolled group of the 128-bit path either).
const _: () = assert!(UNROLL == crate::jit::asm::f32_tile::UNROLL);
