//! GEMM: `C[m×n] = A[m×k] · B[k×n]`, BLIS-blocked around a register tile ([`tile::Tile`]).
//!
//! The blocking is generic over the tile (element types, accumulator type, rows, columns, k
//! step, how one step is emitted); [`tile::F32Tile::PRODUCTION`], 4×8 f32 on `f32x4`, is what
//! every f32 kernel uses, through the `emit_gemm*` functions below. Facts it relies on
//! (docs/CRANELIFT.md): eight accumulators in cranelift-frontend `Variable`s, the step loop
//! unrolled [`pack::UNROLL`] times, and `opt_level=none` (at `speed` the egraph hoists every load
//! of the unrolled body and the tile spills, about 2× slower).
//!
//! Operand roles: A is the run-time operand (activations), row-major with leading dimension `lda`,
//! read in place (the row offsets `r·lda` of a tile are immediates, so A needs no packing). B is
//! packed ([`pack`]) at compile time, or by generated code into a scratch area
//! ([`emit_gemm_unpacked_scratch`]), or read in place ([`emit_gemm_unpacked`], one-row steps
//! only). C is row-major with leading dimension `ldc`. A convolution lowered through im2col uses
//! `col[spatial × C·kh·kw] · Wᵀ`: `pack_b(w, k = C·kh·kw, n = M, transposed = true)` gives the
//! output as `[spatial × M]`.
//!
//! Blocking (BLIS order): k blocks ([`pack::k_blocks`]), then row blocks of `tile.mc()` rows,
//! then `tile.cols()`-column panels of B (one panel stays in L1), then tiles of `tile.rows()`
//! rows. The first k block starts the accumulators at the per-column bias (or zero); later
//! blocks reload C. Edge tiles are specialised at emission time: fewer rows (m % rows), partial
//! column stores (n % cols) through lane inserts/extracts, and a last step with fewer than
//! `k_step` valid k (A lanes beyond k read as zero; packed B is zero-padded), so nothing is read
//! or written outside the matrices.
//!
//! Threads: [`emit_gemm_rows`] computes only the rows `[m_begin, m_end)` (run-time values), so a
//! parallel-for task can take a row range from [`split_rows`]; the tasks write disjoint rows of C.

pub mod int8;
mod loops;
pub mod pack;
mod shape;
pub mod tile;
pub mod wide;

pub use shape::{BSource, Bias, GemmShape, RowFinish, MAX_PANEL_COLS};

use crate::jit::emit::Emitter;
use crate::jit::isa::IsaFlags;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use cranelift_frontend::{FunctionBuilder, Variable};
use loops::{emit_for, emit_if, for_count, fresh_block, imm, load_lanes, store_lanes, zero_vec};
use pack::{k_blocks, KBlocks, UNROLL};
use std::ops::Range;
use tile::{mem, F32Tile, Tile};

/// Rows of the production f32 tile.
pub const MR: usize = F32Tile::PRODUCTION.rows;
/// Columns of the production f32 tile and width of its packed B panels.
pub const NR: usize = F32Tile::PRODUCTION.cols;

/// Number of f32 in B packed for `k`×`n` for the production f32 tile.
pub fn packed_b_len(k: usize, n: usize) -> usize {
    pack::packed_len(&F32Tile::PRODUCTION, k, n)
}

/// B packed at compile time for the production f32 tile.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedB {
    pub data: Vec<f32>,
    pub k: usize,
    pub n: usize,
}

/// Packs `b` (`[k, n]` row-major, or `[n, k]` when `transposed`) for the production f32 tile.
///
/// Panics if `b.len() != k·n`.
pub fn pack_b(b: &[f32], k: usize, n: usize, transposed: bool) -> PackedB {
    PackedB {
        data: pack::pack_b(&F32Tile::PRODUCTION, b, k, n, transposed),
        k,
        n,
    }
}

/// Number of f32 that B packed for `k`×`n` takes with any f32 tile (at least [`packed_b_len`]
/// and the wide tiles' length): what the scratch of run-time packing reserves.
pub fn packed_b_bound(k: usize, n: usize) -> usize {
    k * n.next_multiple_of(MAX_PANEL_COLS)
}

/// Where the GEMM of an op lowering ([`emit`]) reads B from.
#[derive(Clone, Copy, Debug)]
pub enum BOperand {
    /// Packed by [`pack_for`] (with the same emitter's kernels), `k`, `n`.
    Packed(Value),
    /// Row-major `[k, n]` with leading dimension `ldb`, read in place.
    InPlace { b: Value, ldb: usize },
    /// Row-major `[k, n]` with leading dimension `ldb`, first packed by generated code into
    /// `scratch` ([`packed_b_bound`] f32, any alignment): pays off when m ≳ 16.
    PackedInto {
        b: Value,
        ldb: usize,
        scratch: Value,
    },
}

/// Packs `b` (`[k, n]` row-major, or `[n, k]` when `transposed`) at compile time for the kernels
/// `e` emits with: the wide tile's panels when the module has full-width micro-kernels
/// ([`Emitter::micro`]), else the 128-bit tile's.
pub fn pack_for(e: &Emitter, b: &[f32], k: usize, n: usize, transposed: bool) -> Vec<f32> {
    match &e.micro {
        Some(m) => pack::pack_b(&wide::WideTile::for_isa(m.isa()), b, k, n, transposed),
        None => pack_b(b, k, n, transposed).data,
    }
}

/// Emits the run-time packing of B (row-major `[k, n]`, leading dimension `ldb`) into `dst`,
/// in the layout [`pack_for`] gives for the same emitter (at most [`packed_b_bound`] f32).
pub fn emit_pack_for(e: &mut Emitter, b: Value, ldb: usize, dst: Value, k: usize, n: usize) {
    match &e.micro {
        Some(m) => {
            let tile = wide::WideTile::for_isa(m.isa());
            pack::emit_pack_b(e.fb, &tile, b, ldb, dst, k, n)
        }
        None => emit_pack_b(e.fb, b, ldb, dst, k, n),
    }
}

/// The f32 GEMM of the op lowerings: `C[m×n] = A[m×k] · B (+ col_bias)`, A and C row-major
/// with leading dimensions `lda`, `ldc` (elements), on the full-width micro-kernels when the
/// module has them ([`Emitter::micro`]), else on the 128-bit tile. Both give the same bits.
#[allow(clippy::too_many_arguments)]
pub fn emit(
    e: &mut Emitter,
    a: Value,
    lda: usize,
    b: BOperand,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    col_bias: Option<Value>,
) {
    emit_with(e, a, lda, b, c, ldc, m, n, k, col_bias, None);
}

/// [`emit`] without a bias, whose full-width kernels also apply `finish` to C before storing
/// it (bias per row, then bounds: the arithmetic of the conv epilogue's pass over the rows, so
/// the same bits). Returns whether the finish was applied: false on the 128-bit path, where the
/// caller applies it after the GEMM.
#[allow(clippy::too_many_arguments)]
pub fn emit_finished(
    e: &mut Emitter,
    a: Value,
    lda: usize,
    b: BOperand,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    finish: RowFinish,
) -> bool {
    let wide = e.micro.is_some();
    emit_with(e, a, lda, b, c, ldc, m, n, k, None, wide.then_some(finish));
    wide
}

#[allow(clippy::too_many_arguments)]
fn emit_with(
    e: &mut Emitter,
    a: Value,
    lda: usize,
    b: BOperand,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    col_bias: Option<Value>,
    finish: Option<RowFinish>,
) {
    let flags = e.flags;
    let shape = GemmShape { m, n, k, lda, ldc };
    let bias = Bias::columns(col_bias);
    if e.micro.is_some() {
        let (b_ptr, source) = match b {
            BOperand::Packed(p) => (p, BSource::Packed),
            BOperand::InPlace { b, ldb } => (b, BSource::Rows { ldb }),
            BOperand::PackedInto { b, ldb, scratch } => {
                emit_pack_for(e, b, ldb, scratch, k, n);
                (scratch, BSource::Packed)
            }
        };
        let micro = e.micro.as_deref_mut().expect("checked above");
        let tile = wide::WideTile::for_isa(micro.isa());
        wide::emit(e.fb, micro, tile, shape, source, a, b_ptr, c, bias, finish);
        return;
    }
    match b {
        BOperand::Packed(p) => emit_gemm(e.fb, &flags, a, lda, p, c, ldc, m, n, k, col_bias),
        BOperand::InPlace { b, ldb } => {
            emit_gemm_unpacked(e.fb, &flags, a, lda, b, ldb, c, ldc, m, n, k, col_bias)
        }
        BOperand::PackedInto { b, ldb, scratch } => emit_gemm_unpacked_scratch(
            e.fb, &flags, a, lda, b, ldb, c, ldc, scratch, m, n, k, col_bias,
        ),
    }
}

/// Splits `0..m` into at most `parts` row ranges that are valid for [`emit_gemm_rows`]: every
/// range starts at a multiple of [`MR`] and ends at a multiple of [`MR`] or at `m`; empty ranges
/// are omitted.
pub fn split_rows(m: usize, parts: usize) -> Vec<Range<usize>> {
    split_rows_by(MR, m, parts)
}

/// [`split_rows`] for tiles of `rows` rows.
pub fn split_rows_by(rows: usize, m: usize, parts: usize) -> Vec<Range<usize>> {
    let tiles = m.div_ceil(rows);
    let parts = parts.max(1).min(tiles.max(1));
    let mut out = Vec::new();
    for t in 0..parts {
        let b = (tiles * t / parts * rows).min(m);
        let e = (tiles * (t + 1) / parts * rows).min(m);
        if b < e {
            out.push(b..e);
        }
    }
    out
}

/// Emits `C = A · B (+ bias)` for the rows `[m_begin, m_end)` of A and C (I64 run-time values)
/// with `tile`, the accumulators starting at the [`Bias`]. Contract: `0 ≤ m_begin ≤ m_end ≤
/// m`, `m_begin` is a multiple of `tile.rows()`, `m_end` is a multiple of it or `m` (see
/// [`split_rows_by`]); `a`, `b`, `c` point at row 0; C may not alias A or B. Leaves the builder
/// in a fresh sealed block after the emitted loops.
#[allow(clippy::too_many_arguments)]
pub fn emit_tiled<T: Tile>(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    tile: &T,
    shape: GemmShape,
    b_source: BSource,
    a: Value,
    b: Value,
    c: Value,
    bias: Bias,
    m_begin: Value,
    m_end: Value,
) {
    let p = Plan::new(flags, tile, shape, b_source, bias);
    p.emit(fb, a, b, c, m_begin, m_end);
    fresh_block(fb);
}

/// Emits `C[m×n] = A[m×k] · B (+ col_bias)` with the production f32 tile at the builder's current
/// block. `a`, `b_packed`, `c` are I64 pointers; A and C are row-major with leading dimensions
/// `lda`, `ldc` (elements); B was packed by [`pack_b`] with the same `k`, `n`. See [`emit_tiled`].
#[allow(clippy::too_many_arguments)]
pub fn emit_gemm(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    a: Value,
    lda: usize,
    b_packed: Value,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    col_bias: Option<Value>,
) {
    let mb = fb.ins().iconst(types::I64, 0);
    let me = fb.ins().iconst(types::I64, m as i64);
    emit_gemm_rows(
        fb, flags, a, lda, b_packed, c, ldc, m, n, k, col_bias, mb, me,
    );
}

/// [`emit_gemm`] restricted to the rows `[m_begin, m_end)` of A and C, with the contract of
/// [`emit_tiled`].
#[allow(clippy::too_many_arguments)]
pub fn emit_gemm_rows(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    a: Value,
    lda: usize,
    b_packed: Value,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    col_bias: Option<Value>,
    m_begin: Value,
    m_end: Value,
) {
    let shape = GemmShape { m, n, k, lda, ldc };
    let tile = F32Tile::PRODUCTION;
    emit_tiled(
        fb,
        flags,
        &tile,
        shape,
        BSource::Packed,
        a,
        b_packed,
        c,
        Bias::columns(col_bias),
        m_begin,
        m_end,
    );
}

/// Emits `C[m×n] = A[m×k] · B (+ col_bias)` with the production f32 tile for a run-time B,
/// row-major `[k, n]` with leading dimension `ldb`, read in place (no scratch). Edge panels
/// (n % 8) use lane-wise loads. When `ldb` is a multiple of 256 the 8-column panel rows alias in
/// L1; prefer [`emit_gemm_unpacked_scratch`] for large m.
#[allow(clippy::too_many_arguments)]
pub fn emit_gemm_unpacked(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    a: Value,
    lda: usize,
    b: Value,
    ldb: usize,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    col_bias: Option<Value>,
) {
    let mb = fb.ins().iconst(types::I64, 0);
    let me = fb.ins().iconst(types::I64, m as i64);
    emit_gemm_unpacked_rows(fb, flags, a, lda, b, ldb, c, ldc, m, n, k, col_bias, mb, me);
}

/// [`emit_gemm_unpacked`] restricted to the rows `[m_begin, m_end)`, with the contract of
/// [`emit_tiled`].
#[allow(clippy::too_many_arguments)]
pub fn emit_gemm_unpacked_rows(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    a: Value,
    lda: usize,
    b: Value,
    ldb: usize,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    col_bias: Option<Value>,
    m_begin: Value,
    m_end: Value,
) {
    assert!(ldb >= n, "ldb < n");
    let shape = GemmShape { m, n, k, lda, ldc };
    let tile = F32Tile::PRODUCTION;
    emit_tiled(
        fb,
        flags,
        &tile,
        shape,
        BSource::Rows { ldb },
        a,
        b,
        c,
        Bias::columns(col_bias),
        m_begin,
        m_end,
    );
}

/// Bytes of scratch [`emit_gemm_unpacked_scratch`] needs (the packed B; independent of `m`).
pub fn gemm_unpacked_scratch_bytes(_m: usize, n: usize, k: usize) -> usize {
    packed_b_len(k, n) * 4
}

/// Like [`emit_gemm_unpacked`], but first packs B into `scratch` (I64 pointer to at least
/// [`gemm_unpacked_scratch_bytes`] bytes, any alignment) with [`emit_pack_b`], then runs the packed
/// kernel. Pays off when m ≳ 16 (the packing costs one pass over B).
#[allow(clippy::too_many_arguments)]
pub fn emit_gemm_unpacked_scratch(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    a: Value,
    lda: usize,
    b: Value,
    ldb: usize,
    c: Value,
    ldc: usize,
    scratch: Value,
    m: usize,
    n: usize,
    k: usize,
    col_bias: Option<Value>,
) {
    emit_pack_b(fb, b, ldb, scratch, k, n);
    emit_gemm(fb, flags, a, lda, scratch, c, ldc, m, n, k, col_bias);
}

/// Emits code that writes at `dst` exactly what [`pack_b`]`(B, k, n, false).data` holds, for a
/// run-time B row-major `[k, n]` with leading dimension `ldb` (reads only the k×n elements).
/// For threads: pack once, then run [`emit_gemm_rows`] on `dst` per task.
pub fn emit_pack_b(fb: &mut FunctionBuilder, b: Value, ldb: usize, dst: Value, k: usize, n: usize) {
    pack::emit_pack_b(fb, &F32Tile::PRODUCTION, b, ldb, dst, k, n);
}

/// Rows a panel loop covers.
#[derive(Clone, Copy)]
enum RowSet {
    /// Full tiles for rows `[begin, end)` (both multiples of the tile's rows).
    Tiles(Value, Value),
    /// One edge tile of `rows` (fewer than the tile's) rows starting at the given row.
    Edge(Value, usize),
}

/// Compile-time parameters of one GEMM.
struct Plan<'t, T: Tile> {
    tile: &'t T,
    flags: IsaFlags,
    shape: GemmShape,
    kb: KBlocks,
    b: BSource,
    bias: Bias,
}

impl<'t, T: Tile> Plan<'t, T> {
    fn new(flags: &IsaFlags, tile: &'t T, shape: GemmShape, b: BSource, bias: Bias) -> Plan<'t, T> {
        let GemmShape { k, n, lda, ldc, .. } = shape;
        assert!(lda >= k && ldc >= n, "gemm: lda < k or ldc < n");
        assert!(tile.cols().is_multiple_of(4) && tile.mc().is_multiple_of(tile.rows()));
        let step_a = tile.k_step() * tile.a_bytes();
        // The row offsets of a tile are immediates.
        imm((tile.rows() - 1) * (lda * tile.a_bytes()).max(ldc * 4) + step_a * UNROLL);
        if let BSource::Rows { ldb } = b {
            assert_eq!(
                tile.k_step(),
                1,
                "gemm: B read in place needs one-row steps"
            );
            imm(ldb * tile.b_bytes() * UNROLL);
        }
        Plan {
            tile,
            flags: *flags,
            shape,
            kb: k_blocks(tile, k),
            b,
            bias,
        }
    }

    /// `n` rounded up to whole panels.
    fn n_pad(&self) -> usize {
        self.shape.n.div_ceil(self.tile.cols()) * self.tile.cols()
    }

    /// Bytes between consecutive k rows of B (between the starts of k blocks, per row).
    fn b_row_bytes(&self) -> i64 {
        match self.b {
            BSource::Packed => (self.n_pad() * self.tile.b_bytes()) as i64,
            BSource::Rows { ldb } => (ldb * self.tile.b_bytes()) as i64,
        }
    }

    /// Bytes between one step and the next inside a panel.
    fn b_step(&self) -> usize {
        match self.b {
            BSource::Packed => self.tile.b_step_bytes(),
            BSource::Rows { ldb } => ldb * self.tile.b_bytes(),
        }
    }

    /// Bytes between consecutive panels of a k block of `kcb` rows.
    fn b_panel_bytes(&self, kcb: usize) -> i64 {
        let t = self.tile;
        match self.b {
            BSource::Packed => (kcb.next_multiple_of(t.k_step()) * t.cols() * t.b_bytes()) as i64,
            BSource::Rows { .. } => (t.cols() * t.b_bytes()) as i64,
        }
    }

    /// The whole GEMM for rows `[m_begin, m_end)`: the k-block phases.
    fn emit(&self, fb: &mut FunctionBuilder, a: Value, b: Value, c: Value, mb: Value, me: Value) {
        if self.shape.m == 0 || self.shape.n == 0 {
            return;
        }
        let kb = self.kb;
        let a_bytes = self.tile.a_bytes() as i64;
        let single = kb.count == 1;
        let first_len = if single { kb.last } else { kb.kc };
        self.emit_kblock(fb, a, b, c, mb, me, first_len, false);
        if kb.count >= 3 {
            let one = fb.ins().iconst(types::I64, 1);
            let end = fb.ins().iconst(types::I64, (kb.count - 1) as i64);
            emit_for(fb, one, end, 1, |fb, blk| {
                let ao = fb.ins().imul_imm_s(blk, kb.kc as i64 * a_bytes);
                let ak = fb.ins().iadd(a, ao);
                let bo = fb.ins().imul_imm_s(blk, kb.kc as i64 * self.b_row_bytes());
                let bk = fb.ins().iadd(b, bo);
                self.emit_kblock(fb, ak, bk, c, mb, me, kb.kc, true);
            });
        }
        if kb.count >= 2 {
            let k0 = ((kb.count - 1) * kb.kc) as i64;
            let ak = fb.ins().iadd_imm_s(a, k0 * a_bytes);
            let bk = fb.ins().iadd_imm_s(b, k0 * self.b_row_bytes());
            self.emit_kblock(fb, ak, bk, c, mb, me, kb.last, true);
        }
    }

    /// One k block of `kcb` rows: `a_k`, `b_k` point at its first column of A / row of B. `init_c`:
    /// accumulate onto C (otherwise start from the column bias or zero).
    #[allow(clippy::too_many_arguments)]
    fn emit_kblock(
        &self,
        fb: &mut FunctionBuilder,
        a_k: Value,
        b_k: Value,
        c: Value,
        mb: Value,
        me: Value,
        kcb: usize,
        init_c: bool,
    ) {
        let mr = self.tile.rows();
        let m_rem = self.shape.m % mr;
        let m_full_end = if m_rem == 0 {
            me
        } else if mr.is_power_of_two() {
            fb.ins().band_imm_s(me, !((mr - 1) as i64))
        } else {
            let q = fb.ins().udiv_imm_u(me, mr as i64);
            fb.ins().imul_imm_s(q, mr as i64)
        };
        let mc = self.tile.mc() as i64;
        emit_for(fb, mb, m_full_end, mc, |fb, ic| {
            let next = fb.ins().iadd_imm_s(ic, mc);
            let lt = fb.ins().icmp(IntCC::SignedLessThan, next, m_full_end);
            let ic_end = fb.ins().select(lt, next, m_full_end);
            let rows = RowSet::Tiles(ic, ic_end);
            self.emit_panels(fb, a_k, b_k, c, rows, kcb, init_c);
        });
        if m_rem != 0 {
            // By the contract on m_end, a non-empty remainder is exactly rows m - m_rem .. m.
            let has = fb.ins().icmp(IntCC::NotEqual, m_full_end, me);
            emit_if(fb, has, |fb| {
                let rows = RowSet::Edge(m_full_end, m_rem);
                self.emit_panels(fb, a_k, b_k, c, rows, kcb, init_c);
            });
        }
    }

    /// All panels (the last one partial) for the rows `rows`.
    #[allow(clippy::too_many_arguments)]
    fn emit_panels(
        &self,
        fb: &mut FunctionBuilder,
        a_k: Value,
        b_k: Value,
        c: Value,
        rows: RowSet,
        kcb: usize,
        init_c: bool,
    ) {
        let nr = self.tile.cols();
        let full = self.shape.n / nr;
        let rem = self.shape.n % nr;
        let panel_bytes = self.b_panel_bytes(kcb);
        let c_panel = (nr * 4) as i64;
        for_count(fb, full, |fb, jp| {
            let bo = fb.ins().imul_imm_s(jp, panel_bytes);
            let bp = fb.ins().iadd(b_k, bo);
            let co = fb.ins().imul_imm_s(jp, c_panel);
            let cp = fb.ins().iadd(c, co);
            let bias = match self.bias {
                Bias::Columns(p) => Bias::Columns(fb.ins().iadd(p, co)),
                other => other,
            };
            self.emit_rows(fb, a_k, bp, cp, bias, rows, nr, kcb, init_c);
        });
        if rem != 0 {
            let bp = fb.ins().iadd_imm_s(b_k, full as i64 * panel_bytes);
            let co = full as i64 * c_panel;
            let cp = fb.ins().iadd_imm_s(c, co);
            let bias = match self.bias {
                Bias::Columns(p) => Bias::Columns(fb.ins().iadd_imm_s(p, co)),
                other => other,
            };
            self.emit_rows(fb, a_k, bp, cp, bias, rows, rem, kcb, init_c);
        }
    }

    /// The tiles of one panel: `c_col` (and a column bias) point at its first column (row 0 of
    /// C); a row bias points at row 0.
    #[allow(clippy::too_many_arguments)]
    fn emit_rows(
        &self,
        fb: &mut FunctionBuilder,
        a_k: Value,
        b_panel: Value,
        c_col: Value,
        bias: Bias,
        rows: RowSet,
        ncols: usize,
        kcb: usize,
        init_c: bool,
    ) {
        let at = |fb: &mut FunctionBuilder, i: Value| {
            let ao = fb
                .ins()
                .imul_imm_s(i, (self.shape.lda * self.tile.a_bytes()) as i64);
            let a_t = fb.ins().iadd(a_k, ao);
            let co = fb.ins().imul_imm_s(i, (self.shape.ldc * 4) as i64);
            let c_t = fb.ins().iadd(c_col, co);
            let bias_t = match bias {
                Bias::Rows(p) => {
                    let bo = fb.ins().imul_imm_s(i, 4);
                    Bias::Rows(fb.ins().iadd(p, bo))
                }
                other => other,
            };
            (a_t, c_t, bias_t)
        };
        let mr = self.tile.rows();
        match rows {
            RowSet::Tiles(begin, end) => emit_for(fb, begin, end, mr as i64, |fb, i| {
                let (a_t, c_t, bias_t) = at(fb, i);
                self.emit_tile(fb, a_t, b_panel, c_t, bias_t, mr, ncols, kcb, init_c);
            }),
            RowSet::Edge(i, rows) => {
                let (a_t, c_t, bias_t) = at(fb, i);
                self.emit_tile(fb, a_t, b_panel, c_t, bias_t, rows, ncols, kcb, init_c);
            }
        }
    }

    /// The micro-kernel: `C[mr × ncols] (=|+=) A[mr × kcb] · Bpanel[kcb × ncols]`. `a_t` points at
    /// A's first element of the tile, `b_t` at the panel's first step, `c_t` at C's first
    /// element of the tile, a column bias at the panel's first column, a row bias at the tile's
    /// first row.
    #[allow(clippy::too_many_arguments)]
    fn emit_tile(
        &self,
        fb: &mut FunctionBuilder,
        a_t: Value,
        b_t: Value,
        c_t: Value,
        bias: Bias,
        mr: usize,
        ncols: usize,
        kcb: usize,
        init_c: bool,
    ) {
        let tile = self.tile;
        let (lane, acc_ty) = (tile.lane(), tile.acc());
        let nv = ncols.div_ceil(4);
        let lanes = |v: usize| (ncols - 4 * v).min(4);
        // Packed panels are zero-padded, so only in-place B needs lane-wise edge loads.
        let b_lanes = |v: usize| match self.b {
            BSource::Packed => 4,
            BSource::Rows { .. } => lanes(v),
        };
        let lda_b = self.shape.lda * tile.a_bytes();
        let ldc_b = self.shape.ldc * 4;
        let (ks, a_step) = (tile.k_step(), tile.k_step() * tile.a_bytes());
        let b_step = self.b_step();
        let b_vec = tile.b_vector();

        let acc: Vec<Variable> = (0..mr * nv).map(|_| fb.declare_var(acc_ty)).collect();
        if init_c {
            for r in 0..mr {
                for v in 0..nv {
                    let x = load_lanes(fb, lane, c_t, imm(r * ldc_b + 16 * v), lanes(v));
                    fb.def_var(acc[r * nv + v], x);
                }
            }
        } else {
            let cols: Vec<Value> = match bias {
                Bias::Columns(bp) => (0..nv)
                    .map(|v| load_lanes(fb, lane, bp, imm(16 * v), lanes(v)))
                    .collect(),
                _ => vec![zero_vec(fb, acc_ty); nv],
            };
            for r in 0..mr {
                let row = match bias {
                    Bias::Rows(bp) => {
                        let x = fb.ins().load(lane, mem(), bp, imm(4 * r));
                        Some(fb.ins().splat(acc_ty, x))
                    }
                    _ => None,
                };
                for v in 0..nv {
                    fb.def_var(acc[r * nv + v], row.unwrap_or(cols[v]));
                }
            }
        }

        // One step at byte offsets `a_off` (A) and `b_off` (B) from the given pointers, with
        // `valid` of its k rows inside the matrices.
        let step = |fb: &mut FunctionBuilder,
                    a_p: Value,
                    b_p: Value,
                    a_off: usize,
                    b_off: usize,
                    valid: usize,
                    group_step: Option<usize>| {
            let bv: Vec<T::B> = (0..nv)
                .map(|v| {
                    let off = imm(b_off + 16 * v);
                    let raw = match b_lanes(v) {
                        4 => fb.ins().load(b_vec, mem(), b_p, off),
                        l => load_lanes(fb, lane, b_p, off, l),
                    };
                    tile.prepare_b(fb, &self.flags, raw)
                })
                .collect();
            for r in 0..mr {
                // In the unrolled loop, `a_off` is `a_step · group_step` from the group's start.
                let grouped = group_step.and_then(|u| {
                    tile.broadcast_a_in_group(fb, a_p, imm(r * lda_b + a_off - a_step * u), u)
                });
                let sa = match grouped {
                    Some(sa) => sa,
                    None => tile.broadcast_a(fb, a_p, imm(r * lda_b + a_off), valid),
                };
                for (v, &b) in bv.iter().enumerate() {
                    let x = fb.use_var(acc[r * nv + v]);
                    let y = tile.mul_add(fb, &self.flags, sa, b, x);
                    fb.def_var(acc[r * nv + v], y);
                }
            }
        };

        let steps = kcb / ks;
        let trips = steps / UNROLL;
        let (mut a_p, mut b_p) = (a_t, b_t);
        if trips > 0 {
            let va = fb.declare_var(types::I64);
            let vb = fb.declare_var(types::I64);
            let vn = fb.declare_var(types::I64);
            let cnt = fb.ins().iconst(types::I64, trips as i64);
            fb.def_var(va, a_t);
            fb.def_var(vb, b_t);
            fb.def_var(vn, cnt);
            let body = fb.create_block();
            let exit = fb.create_block();
            fb.ins().jump(body, &[]);
            fb.switch_to_block(body);
            let ap = fb.use_var(va);
            let bp = fb.use_var(vb);
            for u in 0..UNROLL {
                step(fb, ap, bp, a_step * u, b_step * u, ks, Some(u));
            }
            let ap = fb.ins().iadd_imm_s(ap, (a_step * UNROLL) as i64);
            let bp = fb.ins().iadd_imm_s(bp, (b_step * UNROLL) as i64);
            let n0 = fb.use_var(vn);
            let n1 = fb.ins().iadd_imm_s(n0, -1);
            fb.def_var(va, ap);
            fb.def_var(vb, bp);
            fb.def_var(vn, n1);
            fb.ins().brif(n1, body, &[], exit, &[]);
            fb.seal_block(body);
            fb.switch_to_block(exit);
            fb.seal_block(exit);
            a_p = fb.use_var(va);
            b_p = fb.use_var(vb);
        }
        for u in 0..steps % UNROLL {
            step(fb, a_p, b_p, a_step * u, b_step * u, ks, None);
        }
        if !kcb.is_multiple_of(ks) {
            let u = steps % UNROLL;
            step(fb, a_p, b_p, a_step * u, b_step * u, kcb % ks, None);
        }

        for r in 0..mr {
            for v in 0..nv {
                let x = fb.use_var(acc[r * nv + v]);
                store_lanes(fb, x, c_t, imm(r * ldc_b + 16 * v), lanes(v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tile::Panels;
    use super::*;

    #[test]
    fn k_blocks_cover_k() {
        for k in 0..3000 {
            let kb = k_blocks(&F32Tile::PRODUCTION, k);
            assert!(kb.kc <= F32Tile::PRODUCTION.kc(), "{k}: {kb:?}");
            assert!(kb.last > 0 || k == 0, "{k}: {kb:?}");
            assert!(kb.last <= kb.kc, "{k}: {kb:?}");
            assert_eq!((kb.count - 1) * kb.kc + kb.last, k, "{k}: {kb:?}");
            if kb.count > 1 {
                assert_eq!(kb.kc % UNROLL, 0);
            }
        }
    }

    #[test]
    fn split_rows_respects_the_contract() {
        for m in 0..50 {
            for parts in 1..8 {
                let s = split_rows(m, parts);
                let mut at = 0;
                for r in &s {
                    assert_eq!(r.start, at);
                    assert_eq!(r.start % MR, 0);
                    assert!(r.end % MR == 0 || r.end == m);
                    at = r.end;
                }
                assert_eq!(at, m);
                assert!(s.len() <= parts);
            }
        }
    }
}
