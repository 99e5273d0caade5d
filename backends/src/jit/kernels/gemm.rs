//! f32 GEMM emitter: `C[m×n] = A[m×k] · B[k×n]` (+ bias, ReLU) on 128-bit vectors.
//!
//! Design (measured in `/work/shared/CRANELIFT.md`): a 4×8 register tile ([`MR`]×[`NR`], eight
//! `f32x4` accumulators held in cranelift-frontend `Variable`s), the k loop unrolled 4 times, each
//! step `acc = fma(splat(a), b, acc)` (or `fmul`+`fadd` when [`IsaFlags::use_fma`] is false, so no
//! libcall is ever emitted). The kernels must be compiled with `opt_level=none`: at `speed` the
//! egraph hoists every load of the unrolled body and the tile spills (about 2× slower).
//!
//! Operand roles: A is the run-time operand (activations), row-major with leading dimension `lda`,
//! read in place (the four row offsets `r·lda·4` are immediates, so A needs no packing). B is the
//! constant operand, packed at compile time by [`pack_b`]; a run-time B is either read in place
//! ([`emit_gemm_unpacked`]) or packed by generated code into a scratch area
//! ([`emit_gemm_unpacked_scratch`], [`emit_pack_b`]). C is row-major with leading dimension `ldc`.
//! A convolution lowered through im2col uses `col[spatial × C·kh·kw] · Wᵀ`:
//! `pack_b(w, k = C·kh·kw, n = M, transposed = true)` gives the output as `[spatial × M]`.
//!
//! Blocking (BLIS order): k blocks of at most [`KC`] (balanced, multiples of 4), then row blocks of
//! [`MC`] rows, then 8-column panels of B (one panel, `kc·32` bytes, stays in L1), then 4-row tiles.
//! The first k block initialises the accumulators with the bias (or zero); later blocks reload C;
//! the ReLU is applied by the last block only. Edge tiles are specialised at emission time: fewer
//! rows (m % 4) and partial column stores (n % 8) through lane inserts/extracts, so nothing is read
//! or written outside the matrices (packed B panels are zero-padded to 8 columns).
//!
//! Threads: [`emit_gemm_rows`] computes only the rows `[m_begin, m_end)` (run-time values), so a
//! parallel-for task can take a row range from [`split_rows`]; the tasks write disjoint rows of C.

use crate::jit::isa::IsaFlags;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::immediates::Ieee32;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::{FunctionBuilder, Variable};
use std::ops::Range;

/// Rows of a register tile.
pub const MR: usize = 4;
/// Columns of a register tile and width of a packed B panel.
pub const NR: usize = 8;
/// Largest k block (a B panel of `KC·NR` f32 = 8 KiB stays in L1 next to 4 rows of A).
pub const KC: usize = 256;
/// Rows per row block (a multiple of [`MR`]; `MC·KC` f32 of A stay in L2).
pub const MC: usize = 120;
/// Unrolling of the k loop.
const UNROLL: usize = 4;

/// How `0..k` is cut into blocks: blocks `0..count-1` have `kc` rows, the last one `last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KBlocks {
    kc: usize,
    count: usize,
    last: usize,
}

/// The k blocking shared by [`pack_b`], [`emit_pack_b`] and the GEMM emitters.
fn k_blocks(k: usize) -> KBlocks {
    if k <= KC {
        return KBlocks {
            kc: k,
            count: 1,
            last: k,
        };
    }
    let n0 = k.div_ceil(KC);
    let kc = k.div_ceil(n0).next_multiple_of(UNROLL);
    let count = k.div_ceil(kc);
    KBlocks {
        kc,
        count,
        last: k - (count - 1) * kc,
    }
}

/// Number of f32 in B packed for `k`×`n`: `k · round_up(n, NR)`.
pub fn packed_b_len(k: usize, n: usize) -> usize {
    k * n.div_ceil(NR) * NR
}

/// Packed B operand, in the micro-kernel's panel layout.
///
/// Layout: for each k block (see the module doc) starting at row `k0` with `kcb` rows, the block
/// occupies `data[k0·n_pad .. (k0+kcb)·n_pad]` (`n_pad = round_up(n, 8)`); in it, panel `j` (columns
/// `8j..8j+8`) is `kcb` rows of 8 f32 at `j·kcb·8`. Columns `n..n_pad` are zero.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedB {
    pub data: Vec<f32>,
    pub k: usize,
    pub n: usize,
}

/// Packs `b`, which is `[k, n]` row-major, or `[n, k]` row-major when `transposed`.
///
/// Panics if `b.len() != k·n`.
pub fn pack_b(b: &[f32], k: usize, n: usize, transposed: bool) -> PackedB {
    assert_eq!(b.len(), k * n, "pack_b: operand is not k×n");
    let n_pad = n.div_ceil(NR) * NR;
    let kb = k_blocks(k);
    let mut data = vec![0f32; k * n_pad];
    for p in 0..k {
        let k0 = p / kb.kc * kb.kc;
        let kcb = kb.kc.min(k - k0);
        let base = k0 * n_pad + (p - k0) * NR;
        for j in 0..n {
            let v = if transposed {
                b[j * k + p]
            } else {
                b[p * n + j]
            };
            data[base + (j / NR) * kcb * NR + j % NR] = v;
        }
    }
    PackedB { data, k, n }
}

/// Epilogue applied to each C element before storing: `c = max(acc + bias[col], 0 if relu)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue {
    /// I64 pointer to `n` f32 (read with exactly `n` elements).
    pub bias: Option<Value>,
    pub relu: bool,
}

/// Splits `0..m` into at most `parts` row ranges that are valid for [`emit_gemm_rows`]: every
/// range starts at a multiple of [`MR`] and ends at a multiple of [`MR`] or at `m`; empty ranges
/// are omitted.
pub fn split_rows(m: usize, parts: usize) -> Vec<Range<usize>> {
    let tiles = m.div_ceil(MR);
    let parts = parts.max(1).min(tiles.max(1));
    let mut out = Vec::new();
    for t in 0..parts {
        let b = (tiles * t / parts * MR).min(m);
        let e = (tiles * (t + 1) / parts * MR).min(m);
        if b < e {
            out.push(b..e);
        }
    }
    out
}

/// Emits `C[m×n] = A[m×k] · B (+ epilogue)` at the builder's current block. `a`, `b_packed`, `c`
/// are I64 pointers; A and C are row-major with leading dimensions `lda`, `ldc` (elements); B was
/// packed by [`pack_b`] with the same `k`, `n`. C may not alias A or B. Leaves the builder in a
/// fresh sealed block after the emitted loops.
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
    epi: &Epilogue,
) {
    let mb = fb.ins().iconst(types::I64, 0);
    let me = fb.ins().iconst(types::I64, m as i64);
    emit_gemm_rows(fb, flags, a, lda, b_packed, c, ldc, m, n, k, epi, mb, me);
}

/// [`emit_gemm`] restricted to the rows `[m_begin, m_end)` of A and C (I64 run-time values, for a
/// parallel-for task). Contract: `0 ≤ m_begin ≤ m_end ≤ m`, `m_begin` is a multiple of [`MR`], and
/// `m_end` is a multiple of [`MR`] or equals `m` (see [`split_rows`]). `a` and `c` point at row 0.
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
    epi: &Epilogue,
    m_begin: Value,
    m_end: Value,
) {
    let p = Plan::new(flags, lda, ldc, m, n, k, BSource::Packed, epi);
    p.emit(fb, a, b_packed, c, m_begin, m_end);
    fresh_block(fb);
}

/// Emits `C[m×n] = A[m×k] · B (+ epilogue)` for a run-time B, row-major `[k, n]` with leading
/// dimension `ldb`, read in place (no scratch). Edge panels (n % 8) use lane-wise loads. When `ldb`
/// is a multiple of 256 the 8-column panel rows alias in L1; prefer
/// [`emit_gemm_unpacked_scratch`] for large m.
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
    epi: &Epilogue,
) {
    let mb = fb.ins().iconst(types::I64, 0);
    let me = fb.ins().iconst(types::I64, m as i64);
    emit_gemm_unpacked_rows(fb, flags, a, lda, b, ldb, c, ldc, m, n, k, epi, mb, me);
}

/// [`emit_gemm_unpacked`] restricted to the rows `[m_begin, m_end)`, with the contract of
/// [`emit_gemm_rows`].
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
    epi: &Epilogue,
    m_begin: Value,
    m_end: Value,
) {
    assert!(ldb >= n, "ldb < n");
    let p = Plan::new(flags, lda, ldc, m, n, k, BSource::Rows { ldb }, epi);
    p.emit(fb, a, b, c, m_begin, m_end);
    fresh_block(fb);
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
    epi: &Epilogue,
) {
    emit_pack_b(fb, b, ldb, scratch, k, n);
    emit_gemm(fb, flags, a, lda, scratch, c, ldc, m, n, k, epi);
}

/// Emits code that writes at `dst` exactly what [`pack_b`]`(B, k, n, false).data` holds, for a
/// run-time B row-major `[k, n]` with leading dimension `ldb` (reads only the k×n elements).
/// For threads: pack once, then run [`emit_gemm_rows`] on `dst` per task.
pub fn emit_pack_b(fb: &mut FunctionBuilder, b: Value, ldb: usize, dst: Value, k: usize, n: usize) {
    assert!(ldb >= n, "ldb < n");
    if n == 0 || k == 0 {
        return fresh_block(fb);
    }
    let kb = k_blocks(k);
    let n_pad = (n.div_ceil(NR) * NR) as i64;
    let ldb_b = (ldb * 4) as i64;
    let pack_block = |fb: &mut FunctionBuilder, src: Value, dst: Value, kcb: usize| {
        let full = n / NR;
        let rem = n % NR;
        for_count(fb, kcb, |fb, pi| {
            let so = fb.ins().imul_imm_s(pi, ldb_b);
            let src_row = fb.ins().iadd(src, so);
            let d_o = fb.ins().imul_imm_s(pi, (NR * 4) as i64);
            let dst_row = fb.ins().iadd(dst, d_o);
            let panel_bytes = (kcb * NR * 4) as i64;
            for_count(fb, full, |fb, jp| {
                let so = fb.ins().imul_imm_s(jp, (NR * 4) as i64);
                let s = fb.ins().iadd(src_row, so);
                let d_o = fb.ins().imul_imm_s(jp, panel_bytes);
                let d = fb.ins().iadd(dst_row, d_o);
                for v in 0..NR / 4 {
                    let x = fb.ins().load(types::F32X4, mem(), s, (v * 16) as i32);
                    fb.ins().store(mem(), x, d, (v * 16) as i32);
                }
            });
            if rem != 0 {
                let s = fb.ins().iadd_imm_s(src_row, (full * NR * 4) as i64);
                let d = fb.ins().iadd_imm_s(dst_row, full as i64 * panel_bytes);
                for v in 0..NR / 4 {
                    let lanes = rem.saturating_sub(v * 4).min(4);
                    let x = load_lanes(fb, s, (v * 16) as i32, lanes);
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

/// Where the kernel reads B from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BSource {
    /// [`pack_b`] layout.
    Packed,
    /// Row-major `[k, n]` with leading dimension `ldb` (elements).
    Rows { ldb: usize },
}

/// Rows a panel loop covers.
#[derive(Clone, Copy)]
enum RowSet {
    /// Full 4-row tiles for rows `[begin, end)` (both multiples of 4).
    Tiles(Value, Value),
    /// One edge tile of `rows` (< 4) rows starting at the given row.
    Edge(Value, usize),
}

/// Compile-time parameters of one GEMM.
struct Plan<'e> {
    fma: bool,
    lda: usize,
    ldc: usize,
    m: usize,
    n: usize,
    kb: KBlocks,
    b: BSource,
    epi: &'e Epilogue,
}

/// Memory flags of every access: cannot trap, no alignment claimed (SSE code then never folds a
/// possibly unaligned load into an arithmetic instruction).
fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Ends the current block with a jump to a new, sealed, empty block and switches to it.
fn fresh_block(fb: &mut FunctionBuilder) {
    let blk = fb.create_block();
    fb.ins().jump(blk, &[]);
    fb.switch_to_block(blk);
    fb.seal_block(blk);
}

/// Emits `for iv in (start..end).step_by(step)` (signed compare at the top; `step > 0`); `body`
/// emits the loop body given `iv`. Ends in the loop's exit block.
fn emit_for(
    fb: &mut FunctionBuilder,
    start: Value,
    end: Value,
    step: i64,
    body: impl FnOnce(&mut FunctionBuilder, Value),
) {
    let iv = fb.declare_var(types::I64);
    fb.def_var(iv, start);
    let header = fb.create_block();
    let body_blk = fb.create_block();
    let exit = fb.create_block();
    fb.ins().jump(header, &[]);
    fb.switch_to_block(header);
    let i = fb.use_var(iv);
    let go = fb.ins().icmp(IntCC::SignedLessThan, i, end);
    fb.ins().brif(go, body_blk, &[], exit, &[]);
    fb.switch_to_block(body_blk);
    fb.seal_block(body_blk);
    body(fb, i);
    let next = fb.ins().iadd_imm_s(i, step);
    fb.def_var(iv, next);
    fb.ins().jump(header, &[]);
    fb.seal_block(header);
    fb.switch_to_block(exit);
    fb.seal_block(exit);
}

/// Emits `for iv in 0..count` for a compile-time count (no loop for 0 or 1 iterations).
fn for_count(
    fb: &mut FunctionBuilder,
    count: usize,
    body: impl FnOnce(&mut FunctionBuilder, Value),
) {
    match count {
        0 => {}
        1 => {
            let z = fb.ins().iconst(types::I64, 0);
            body(fb, z);
        }
        _ => {
            let z = fb.ins().iconst(types::I64, 0);
            let e = fb.ins().iconst(types::I64, count as i64);
            emit_for(fb, z, e, 1, body);
        }
    }
}

/// Emits `if cond != 0 { body }`; ends in the join block.
fn emit_if(fb: &mut FunctionBuilder, cond: Value, body: impl FnOnce(&mut FunctionBuilder)) {
    let then = fb.create_block();
    let join = fb.create_block();
    fb.ins().brif(cond, then, &[], join, &[]);
    fb.switch_to_block(then);
    fb.seal_block(then);
    body(fb);
    fb.ins().jump(join, &[]);
    fb.switch_to_block(join);
    fb.seal_block(join);
}

/// An `f32x4` of zeros.
fn zero_vec(fb: &mut FunctionBuilder) -> Value {
    let z = fb.ins().f32const(Ieee32::with_float(0.0));
    fb.ins().splat(types::F32X4, z)
}

/// Loads `lanes` (1..=4) f32 from `ptr + off` into the low lanes of an `f32x4` (others zero),
/// touching only those elements.
fn load_lanes(fb: &mut FunctionBuilder, ptr: Value, off: i32, lanes: usize) -> Value {
    if lanes == 4 {
        return fb.ins().load(types::F32X4, mem(), ptr, off);
    }
    let mut v = zero_vec(fb);
    for l in 0..lanes {
        let x = fb.ins().load(types::F32, mem(), ptr, off + 4 * l as i32);
        v = fb.ins().insertlane(v, x, l as u8);
    }
    v
}

/// Stores the low `lanes` (1..=4) lanes of `v` at `ptr + off`, touching only those elements.
fn store_lanes(fb: &mut FunctionBuilder, v: Value, ptr: Value, off: i32, lanes: usize) {
    if lanes == 4 {
        fb.ins().store(mem(), v, ptr, off);
        return;
    }
    for l in 0..lanes {
        let x = fb.ins().extractlane(v, l as u8);
        fb.ins().store(mem(), x, ptr, off + 4 * l as i32);
    }
}

/// Converts a byte offset to a load/store immediate.
fn imm(off: usize) -> i32 {
    i32::try_from(off).expect("gemm: byte offset does not fit in 32 bits")
}

impl<'e> Plan<'e> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        flags: &IsaFlags,
        lda: usize,
        ldc: usize,
        m: usize,
        n: usize,
        k: usize,
        b: BSource,
        epi: &'e Epilogue,
    ) -> Plan<'e> {
        assert!(lda >= k && ldc >= n, "gemm: lda < k or ldc < n");
        // The row offsets of a tile are immediates.
        imm((MR - 1) * lda.max(ldc) * 4 + 16 * UNROLL);
        if let BSource::Rows { ldb } = b {
            imm(ldb * 4 * UNROLL);
        }
        Plan {
            fma: flags.use_fma(),
            lda,
            ldc,
            m,
            n,
            kb: k_blocks(k),
            b,
            epi,
        }
    }

    /// Bytes between consecutive k rows of B.
    fn b_row_bytes(&self) -> i64 {
        match self.b {
            BSource::Packed => (self.n.div_ceil(NR) * NR * 4) as i64,
            BSource::Rows { ldb } => (ldb * 4) as i64,
        }
    }

    /// Bytes between one k step and the next inside a panel.
    fn b_kstep(&self) -> usize {
        match self.b {
            BSource::Packed => NR * 4,
            BSource::Rows { ldb } => ldb * 4,
        }
    }

    /// Bytes between consecutive panels of a k block of `kcb` rows.
    fn b_panel_bytes(&self, kcb: usize) -> i64 {
        match self.b {
            BSource::Packed => (kcb * NR * 4) as i64,
            BSource::Rows { .. } => (NR * 4) as i64,
        }
    }

    /// The whole GEMM for rows `[m_begin, m_end)`: the k-block phases.
    fn emit(&self, fb: &mut FunctionBuilder, a: Value, b: Value, c: Value, mb: Value, me: Value) {
        if self.m == 0 || self.n == 0 {
            return;
        }
        let kb = self.kb;
        let single = kb.count == 1;
        let first_len = if single { kb.last } else { kb.kc };
        self.emit_kblock(fb, a, b, c, mb, me, first_len, false, single);
        if kb.count >= 3 {
            let one = fb.ins().iconst(types::I64, 1);
            let end = fb.ins().iconst(types::I64, (kb.count - 1) as i64);
            emit_for(fb, one, end, 1, |fb, blk| {
                let ao = fb.ins().imul_imm_s(blk, (kb.kc * 4) as i64);
                let ak = fb.ins().iadd(a, ao);
                let bo = fb.ins().imul_imm_s(blk, kb.kc as i64 * self.b_row_bytes());
                let bk = fb.ins().iadd(b, bo);
                self.emit_kblock(fb, ak, bk, c, mb, me, kb.kc, true, false);
            });
        }
        if kb.count >= 2 {
            let k0 = ((kb.count - 1) * kb.kc) as i64;
            let ak = fb.ins().iadd_imm_s(a, k0 * 4);
            let bk = fb.ins().iadd_imm_s(b, k0 * self.b_row_bytes());
            self.emit_kblock(fb, ak, bk, c, mb, me, kb.last, true, true);
        }
    }

    /// One k block of `kcb` rows: `a_k`, `b_k` point at its first column of A / row of B. `init_c`:
    /// accumulate onto C (otherwise start from bias or zero); `last`: apply the ReLU.
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
        last: bool,
    ) {
        let m_rem = self.m % MR;
        let m_full_end = if m_rem == 0 {
            me
        } else {
            fb.ins().band_imm_s(me, !((MR - 1) as i64))
        };
        emit_for(fb, mb, m_full_end, MC as i64, |fb, ic| {
            let next = fb.ins().iadd_imm_s(ic, MC as i64);
            let lt = fb.ins().icmp(IntCC::SignedLessThan, next, m_full_end);
            let ic_end = fb.ins().select(lt, next, m_full_end);
            let rows = RowSet::Tiles(ic, ic_end);
            self.emit_panels(fb, a_k, b_k, c, rows, kcb, init_c, last);
        });
        if m_rem != 0 {
            // By the contract on m_end, a non-empty remainder is exactly rows m - m_rem .. m.
            let has = fb.ins().icmp(IntCC::NotEqual, m_full_end, me);
            emit_if(fb, has, |fb| {
                let rows = RowSet::Edge(m_full_end, m_rem);
                self.emit_panels(fb, a_k, b_k, c, rows, kcb, init_c, last);
            });
        }
    }

    /// All 8-column panels (the last one partial) for the rows `rows`.
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
        last: bool,
    ) {
        let full = self.n / NR;
        let rem = self.n % NR;
        let panel_bytes = self.b_panel_bytes(kcb);
        for_count(fb, full, |fb, jp| {
            let bo = fb.ins().imul_imm_s(jp, panel_bytes);
            let bp = fb.ins().iadd(b_k, bo);
            let co = fb.ins().imul_imm_s(jp, (NR * 4) as i64);
            let cp = fb.ins().iadd(c, co);
            let bias = self.epi.bias.map(|p| fb.ins().iadd(p, co));
            self.emit_rows(fb, a_k, bp, cp, bias, rows, NR, kcb, init_c, last);
        });
        if rem != 0 {
            let bp = fb.ins().iadd_imm_s(b_k, full as i64 * panel_bytes);
            let co = (full * NR * 4) as i64;
            let cp = fb.ins().iadd_imm_s(c, co);
            let bias = self.epi.bias.map(|p| fb.ins().iadd_imm_s(p, co));
            self.emit_rows(fb, a_k, bp, cp, bias, rows, rem, kcb, init_c, last);
        }
    }

    /// The tiles of one panel: `c_col`/`bias_col` point at its first column (row 0 of C).
    #[allow(clippy::too_many_arguments)]
    fn emit_rows(
        &self,
        fb: &mut FunctionBuilder,
        a_k: Value,
        b_panel: Value,
        c_col: Value,
        bias_col: Option<Value>,
        rows: RowSet,
        ncols: usize,
        kcb: usize,
        init_c: bool,
        last: bool,
    ) {
        let at = |fb: &mut FunctionBuilder, i: Value| {
            let ao = fb.ins().imul_imm_s(i, (self.lda * 4) as i64);
            let a_t = fb.ins().iadd(a_k, ao);
            let co = fb.ins().imul_imm_s(i, (self.ldc * 4) as i64);
            let c_t = fb.ins().iadd(c_col, co);
            (a_t, c_t)
        };
        match rows {
            RowSet::Tiles(begin, end) => emit_for(fb, begin, end, MR as i64, |fb, i| {
                let (a_t, c_t) = at(fb, i);
                self.emit_tile(
                    fb, a_t, b_panel, c_t, bias_col, MR, ncols, kcb, init_c, last,
                );
            }),
            RowSet::Edge(i, mr) => {
                let (a_t, c_t) = at(fb, i);
                self.emit_tile(
                    fb, a_t, b_panel, c_t, bias_col, mr, ncols, kcb, init_c, last,
                );
            }
        }
    }

    /// The micro-kernel: `C[mr × ncols] (=|+=) A[mr × kcb] · Bpanel[kcb × ncols]`, then the
    /// epilogue. `a_t` points at A's first element of the tile, `b_t` at the panel's first row,
    /// `c_t` at C's first element of the tile.
    #[allow(clippy::too_many_arguments)]
    fn emit_tile(
        &self,
        fb: &mut FunctionBuilder,
        a_t: Value,
        b_t: Value,
        c_t: Value,
        bias: Option<Value>,
        mr: usize,
        ncols: usize,
        kcb: usize,
        init_c: bool,
        last: bool,
    ) {
        let nv = ncols.div_ceil(4);
        let lanes = |v: usize| (ncols - 4 * v).min(4);
        // Packed panels are zero-padded, so only in-place B needs lane-wise edge loads.
        let b_lanes = |v: usize| match self.b {
            BSource::Packed => 4,
            BSource::Rows { .. } => lanes(v),
        };
        let lda_b = self.lda * 4;
        let ldc_b = self.ldc * 4;
        let kstep = self.b_kstep();

        let acc: Vec<Variable> = (0..mr * nv).map(|_| fb.declare_var(types::F32X4)).collect();
        if init_c {
            for r in 0..mr {
                for v in 0..nv {
                    let x = load_lanes(fb, c_t, imm(r * ldc_b + 16 * v), lanes(v));
                    fb.def_var(acc[r * nv + v], x);
                }
            }
        } else {
            let init: Vec<Value> = match bias {
                Some(bp) => (0..nv)
                    .map(|v| load_lanes(fb, bp, imm(16 * v), lanes(v)))
                    .collect(),
                None => {
                    let z = zero_vec(fb);
                    vec![z; nv]
                }
            };
            for r in 0..mr {
                for v in 0..nv {
                    fb.def_var(acc[r * nv + v], init[v]);
                }
            }
        }

        // One k step at byte offsets `a_off` (A) and `b_off` (B) from the given pointers.
        let step =
            |fb: &mut FunctionBuilder, a_p: Value, b_p: Value, a_off: usize, b_off: usize| {
                let bv: Vec<Value> = (0..nv)
                    .map(|v| load_lanes(fb, b_p, imm(b_off + 16 * v), b_lanes(v)))
                    .collect();
                for r in 0..mr {
                    let s = fb
                        .ins()
                        .load(types::F32, mem(), a_p, imm(r * lda_b + a_off));
                    let sa = fb.ins().splat(types::F32X4, s);
                    for (v, &b) in bv.iter().enumerate() {
                        let x = fb.use_var(acc[r * nv + v]);
                        let y = if self.fma {
                            fb.ins().fma(sa, b, x)
                        } else {
                            let p = fb.ins().fmul(sa, b);
                            fb.ins().fadd(p, x)
                        };
                        fb.def_var(acc[r * nv + v], y);
                    }
                }
            };

        let trips = kcb / UNROLL;
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
                step(fb, ap, bp, 4 * u, kstep * u);
            }
            let ap = fb.ins().iadd_imm_s(ap, (4 * UNROLL) as i64);
            let bp = fb.ins().iadd_imm_s(bp, (kstep * UNROLL) as i64);
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
        for u in 0..kcb % UNROLL {
            step(fb, a_p, b_p, 4 * u, kstep * u);
        }

        let zero = (last && self.epi.relu).then(|| zero_vec(fb));
        for r in 0..mr {
            for v in 0..nv {
                let mut x = fb.use_var(acc[r * nv + v]);
                if let Some(z) = zero {
                    x = fb.ins().fmax(x, z);
                }
                store_lanes(fb, x, c_t, imm(r * ldc_b + 16 * v), lanes(v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_blocks_cover_k() {
        for k in 0..3000 {
            let kb = k_blocks(k);
            assert!(kb.kc <= KC, "{k}: {kb:?}");
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
