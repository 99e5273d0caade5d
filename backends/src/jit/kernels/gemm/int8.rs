//! Int8 register tiles: `C[i32] (+)= A · B` with one operand u8 (activations) and the other s8
//! (weights), on the blocking of `super` (the same k blocks, panels and edge tiles as f32).
//!
//! Every route has a step of four k and the same packed B layout (`super::pack`, "k quads":
//! per step, each column's four consecutive k bytes, so one 16-byte B vector is four columns ×
//! four k). A step broadcasts the row's four A bytes (one `i32` load and a splat; on x86-64 in
//! the unrolled loop, one 16-byte load of four steps' quads and a `pshufd` of the step's quad,
//! [`Tile::broadcast_a_in_group`]) and, per B vector, adds four-term dot products into four i32
//! accumulator lanes. The routes differ only in the CLIF of
//! that dot product, because Cranelift matches each dot-product instruction from one exact tree
//! (docs/CRANELIFT.md, "int8 dot products: one exact tree per target"):
//!
//! | route | target | CLIF | exact |
//! |---|---|---|---|
//! | [`Int8Route::Vnni`] | x86-64 AVX-512 VNNI + VL, or AVX-VNNI | the dot tree, signed operand first in `imul`, `iadd(tree, acc)`: `vpdpbusd` | always |
//! | [`Int8Route::Pmaddubsw`] | x86-64 SSSE3 | `x86_pmaddubsw(s8, u8)`, `pmaddwd` against ones, `iadd`: 16 MACs per 3 instructions | when every pair sum fits i16: \|w\| ≤ 64 ([`WeightRange::SevenBit`]) |
//! | [`Int8Route::WidenI16`] | x86-64 without VNNI; aarch64 without `dotprod` | even and odd bytes widened to i16 by shifts, two `pmaddwd` trees (`smull`/`smull2`/`addp` on aarch64) | always |
//! | [`Int8Route::Usdot`] | aarch64 `+i8mm` | the dot tree, unsigned operand first: `usdot` | always |
//! | [`Int8Route::Sdot`] | aarch64 `+dotprod` | the dot tree, both `swiden`, on `u ^ 0x80` (= `u - 128` as s8): `sdot` | C is `A·B − 128·Σ_k w` ([`Int8Tile::unsigned_offset`]) |
//! | [`Int8Route::LaneWise`] | riscv64 (and any scalarised target) | i32x4 shifts, `imul`, `iadd` only, which the lane-by-lane rewrite (`crate::aot::scalarize`) turns into scalar code | always |
//!
//! Operand roles (`../shared` int8 scheme, "Kernel operand roles"): a convolution has the s8
//! weights in A (`out[M, P] = W[M, K] · col[K, P]`, B the u8 im2col columns packed at run time by
//! [`super::pack::emit_pack_b_bytes`]); Gemm/MatMul have the u8 activations in A and the s8
//! weights in B (packed at compile time by [`super::pack::pack_b`]). [`SignedOperand`] says which.
//!
//! Zero points: kernels multiply raw u8 by raw s8. `Σ_k (x − zx)·w = Σ_k x·w − zx·Σ_k w`, so the
//! activation zero point is folded into the bias with the per-channel weight sums
//! ([`weight_sums`], [`folded_bias`]); the `Sdot` route's offset is folded the same way.

use super::loops::load_quad;
use super::tile::{mem, Panels, Tile};
use super::wide::{self, Product, WideTile};
use super::{emit_tiled, pack, BSource, Bias, GemmShape};
use crate::jit::asm::int8_tile::Int8Isa;
use crate::jit::asm::registry::MicroKernels;
use crate::jit::emit::Emitter;
use crate::jit::isa::IsaFlags;
use cranelift_codegen::ir::{
    types, ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value,
};
use cranelift_frontend::FunctionBuilder;

/// Bytes of B packed for `tile` (`k`×`n`): `round_up(k, 4) · round_up(n, tile.cols)`; also the
/// scratch [`emit_int8_gemm_unpacked_scratch`] needs.
pub fn int8_packed_b_bytes(tile: &Int8Tile, k: usize, n: usize) -> usize {
    pack::packed_len(tile, k, n)
}

/// Packs the bytes `b` (u8 or s8: `[k, n]` row-major, or `[n, k]` when `transposed`, as a
/// Gemm's `trans_b` weights) for `tile` at compile time; the result goes in read-only data and
/// is the `b_packed` of [`emit_int8_gemm`].
///
/// Panics if `b.len() != k·n`.
pub fn pack_int8_b<T: Copy + Default>(
    tile: &Int8Tile,
    b: &[T],
    k: usize,
    n: usize,
    transposed: bool,
) -> Vec<T> {
    pack::pack_b(tile, b, k, n, transposed)
}

/// Emits code that packs a run-time byte matrix B (row-major `[k, n]`, leading dimension `ldb`
/// bytes; the u8 im2col columns of a convolution) into `dst` (I64 pointer to
/// [`int8_packed_b_bytes`] bytes, any alignment), exactly as [`pack_int8_b`] would. Reads only
/// the k×n bytes. For threads: pack once, then run [`emit_int8_gemm_rows`] per task.
#[allow(clippy::too_many_arguments)]
pub fn emit_int8_pack_b(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    tile: &Int8Tile,
    b: Value,
    ldb: usize,
    dst: Value,
    k: usize,
    n: usize,
) {
    pack::emit_pack_b_bytes(fb, flags, tile, b, ldb, dst, k, n);
}

/// Emits the i32 accumulator block `C[m×n] = bias + A[m×k] · B[k×n]` (wrapping i32) at the
/// builder's current block, with `tile` (from [`Int8Tile::select`] for the same `flags`).
///
/// - `a`: I64 pointer to A, row-major bytes with leading dimension `lda` (bytes, `≥ k`), read in
///   place; s8 when `tile.signed == SignedOperand::A`, else u8.
/// - `b_packed`: I64 pointer to B packed by [`pack_int8_b`] or [`emit_int8_pack_b`] with the
///   same tile, `k`, `n`; the other signedness.
/// - `c`: I64 pointer to C, row-major i32 with leading dimension `ldc` (elements, `≥ n`); only
///   its `m×n` elements are written. May not alias A or B.
/// - `bias`: [`Bias::Columns`] (`n` i32, the Gemm lowering's [`folded_bias`]),
///   [`Bias::Rows`] (`m` i32, the convolution lowering's), or [`Bias::None`].
///
/// What C holds exactly: `bias + A·B − tile.unsigned_offset() · Σ_k w` per element (`w` the s8
/// operand's column of B or row of A), for weights within range ([`Int8Tile::is_exact_for`]);
/// [`folded_bias`] turns that into `bias + Σ_k (x − zx)·w`. No alignment is required of any
/// pointer; nothing outside the matrices is read or written; the generated code calls nothing.
/// Leaves the builder in a fresh block.
#[allow(clippy::too_many_arguments)]
pub fn emit_int8_gemm(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    tile: &Int8Tile,
    a: Value,
    lda: usize,
    b_packed: Value,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    bias: Bias,
) {
    let mb = fb.ins().iconst(types::I64, 0);
    let me = fb.ins().iconst(types::I64, m as i64);
    emit_int8_gemm_rows(
        fb, flags, tile, a, lda, b_packed, c, ldc, m, n, k, bias, mb, me,
    );
}

/// [`emit_int8_gemm`] for the rows `[m_begin, m_end)` of A and C only (I64 run-time values;
/// `a`, `c` and a row bias still point at row 0): `m_begin` a multiple of `tile.rows`, `m_end` a
/// multiple of it or `m` (see [`super::split_rows_by`]`(tile.rows, m, parts)`), so parallel
/// tasks write disjoint rows.
#[allow(clippy::too_many_arguments)]
pub fn emit_int8_gemm_rows(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    tile: &Int8Tile,
    a: Value,
    lda: usize,
    b_packed: Value,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    bias: Bias,
    m_begin: Value,
    m_end: Value,
) {
    let shape = GemmShape { m, n, k, lda, ldc };
    emit_tiled(
        fb,
        flags,
        tile,
        shape,
        BSource::Packed,
        a,
        b_packed,
        c,
        bias,
        m_begin,
        m_end,
    );
}

/// [`emit_int8_pack_b`] of the run-time B (row-major `[k, n]`, leading dimension `ldb` bytes)
/// into `scratch` ([`int8_packed_b_bytes`] bytes), then [`emit_int8_gemm`] on it: the
/// convolution's `out[M, P] = W[M, K] · col[K, P]` with `tile.signed == SignedOperand::A`.
#[allow(clippy::too_many_arguments)]
pub fn emit_int8_gemm_unpacked_scratch(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    tile: &Int8Tile,
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
    bias: Bias,
) {
    emit_int8_pack_b(fb, flags, tile, b, ldb, scratch, k, n);
    emit_int8_gemm(fb, flags, tile, a, lda, scratch, c, ldc, m, n, k, bias);
}

/// The full-width `vpdpbusd` kernels (`jit::asm::int8_tile`) for a module that has them
/// (`MicroKernels::int8_isa`): the blocking of `super::wide` with 14×32 tiles (AVX512_VNNI,
/// `zmm`) or 6×16 (AVX-VNNI, `ymm`), B packed in the layout of `packing` (an [`Int8Tile`] of the
/// same columns: the k quads of this module's documentation). Exact, as the 128-bit VNNI route:
/// C is `bias + A·B` with no offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssembledInt8 {
    pub wide: WideTile,
    pub packing: Int8Tile,
}

/// The assembled int8 kernels of `micro` for operands signed as `signed`, or `None` (no
/// micro-kernels, or no `vpdpbusd` as wide as them).
fn assembled(micro: Option<&MicroKernels>, signed: SignedOperand) -> Option<AssembledInt8> {
    let isa = micro?.int8_isa()?;
    let (rows, cols) = match isa {
        Int8Isa::Avx512Vnni => (14, 32),
        Int8Isa::AvxVnni => (6, 16),
    };
    let packing = Int8Tile {
        rows,
        cols,
        route: Int8Route::Vnni,
        signed,
    };
    let wide = WideTile {
        product: Product::Int8 {
            isa,
            a_signed: signed == SignedOperand::A,
        },
        rows,
        cols,
        mc: rows * 9,
        kc: packing.kc(),
    };
    Some(AssembledInt8 { wide, packing })
}

/// The int8 GEMM of one lowering: the assembled full-width kernels, or a 128-bit tile. Both
/// read B packed for [`Int8Kernels::packing`] and compute the same exact C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Kernels {
    Tile(Int8Tile),
    Assembled(AssembledInt8),
}

impl Int8Kernels {
    /// The assembled kernels where `e`'s module has them and A may be read in whole four-k
    /// groups (`a_in_whole_groups`: A padded, or `k % 4 == 0`), else [`Int8Tile::select`].
    pub fn choose(
        e: &Emitter,
        signed: SignedOperand,
        weights: WeightRange,
        a_in_whole_groups: bool,
    ) -> Int8Kernels {
        match assembled(e.micro.as_deref(), signed).filter(|_| a_in_whole_groups) {
            Some(t) => Int8Kernels::Assembled(t),
            None => Int8Kernels::Tile(Int8Tile::select(&e.flags, signed, weights)),
        }
    }

    /// The tile whose packed layout B must have ([`pack_int8_b`], [`emit_int8_pack_b`]) and
    /// whose [`Int8Tile::unsigned_offset`] the bias folds.
    pub fn packing(&self) -> Int8Tile {
        match self {
            Int8Kernels::Tile(t) => *t,
            Int8Kernels::Assembled(t) => t.packing,
        }
    }

    /// [`emit_int8_gemm`] with these kernels.
    #[allow(clippy::too_many_arguments)]
    pub fn emit_gemm(
        &self,
        e: &mut Emitter,
        a: Value,
        lda: usize,
        b_packed: Value,
        c: Value,
        ldc: usize,
        m: usize,
        n: usize,
        k: usize,
        bias: Bias,
    ) {
        let flags = e.flags;
        match self {
            Int8Kernels::Tile(t) => {
                emit_int8_gemm(e.fb, &flags, t, a, lda, b_packed, c, ldc, m, n, k, bias)
            }
            Int8Kernels::Assembled(t) => {
                let micro = e
                    .micro
                    .as_deref_mut()
                    .expect("chosen from the module's kernels");
                let shape = GemmShape { m, n, k, lda, ldc };
                wide::emit(
                    e.fb,
                    micro,
                    t.wide,
                    shape,
                    BSource::Packed,
                    a,
                    b_packed,
                    c,
                    bias,
                    None,
                );
            }
        }
    }

    /// [`emit_int8_gemm_unpacked_scratch`] with these kernels: B packed into `scratch` first.
    #[allow(clippy::too_many_arguments)]
    pub fn emit_gemm_unpacked_scratch(
        &self,
        e: &mut Emitter,
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
        bias: Bias,
    ) {
        let flags = e.flags;
        emit_int8_pack_b(e.fb, &flags, &self.packing(), b, ldb, scratch, k, n);
        self.emit_gemm(e, a, lda, scratch, c, ldc, m, n, k, bias);
    }
}

/// Which GEMM operand holds the s8 weights; the other one holds u8 activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignedOperand {
    /// A is s8 (convolution weights `W[M, K]`), B is u8 (im2col columns).
    A,
    /// A is u8 (activations `X[R, K]`), B is s8 (weights `W[K, N]`).
    B,
}

/// The range of the s8 weights, which decides whether the `pmaddubsw` route is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightRange {
    /// Any s8 value.
    Full,
    /// `|w| ≤ 64`: `u0·w0 + u1·w1` fits i16 for every u8 `u` (`2·255·64 = 32640`), so
    /// `pmaddubsw` never saturates. Kestrel's quantizer chooses 7-bit weights
    /// (`[-63, 63]`, onnxruntime's `reduce_range`) when [`reduced_weight_range`] says so.
    SevenBit,
}

impl WeightRange {
    /// The range of the given weights.
    pub fn of(weights: &[i8]) -> WeightRange {
        if weights.iter().all(|&w| w.unsigned_abs() <= 64) {
            WeightRange::SevenBit
        } else {
            WeightRange::Full
        }
    }
}

/// The instructions one int8 step is built from (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Int8Route {
    Vnni,
    Pmaddubsw,
    WidenI16,
    Usdot,
    Sdot,
    LaneWise,
}

/// An int8 register tile: `rows × cols` i32 results, four k per step, one route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Int8Tile {
    pub rows: usize,
    pub cols: usize,
    pub route: Int8Route,
    pub signed: SignedOperand,
}

/// Whether Kestrel's quantizer should restrict the weights to 7 bits for this target: true
/// exactly when that makes [`Int8Tile::select`] choose a faster route (x86-64 with SSSE3 but
/// without VNNI, where `pmaddubsw` replaces the widening route).
pub fn reduced_weight_range(flags: &IsaFlags) -> bool {
    let full = Int8Tile::select(flags, SignedOperand::B, WeightRange::Full);
    let seven = Int8Tile::select(flags, SignedOperand::B, WeightRange::SevenBit);
    full.route != seven.route
}

impl Int8Tile {
    /// The tile for a target: the one place routes and shapes are chosen, from the target's
    /// flags (never from the machine running the compiler) and the weights' range. Shapes
    /// (docs/CRANELIFT.md, docs/PERFORMANCE.md): x86-64 allocates 16 vector registers, so VNNI
    /// uses 4×12 (12 accumulators, 3 B vectors, 1 broadcast), `pmaddubsw` 3×12 and the widening
    /// route 4×8 (each B vector and each broadcast is two i16 halves); aarch64 has 32 vector
    /// registers (8×12: 24 accumulators); riscv64 has no dot-product instruction.
    pub fn select(flags: &IsaFlags, signed: SignedOperand, weights: WeightRange) -> Int8Tile {
        let (rows, cols, route) = if flags.scalarized || !flags.has_simd() {
            (2, 4, Int8Route::LaneWise)
        } else if flags.is_x86 {
            if flags.use_vnni() {
                (4, 12, Int8Route::Vnni)
            } else if flags.has_ssse3 && weights == WeightRange::SevenBit {
                (3, 12, Int8Route::Pmaddubsw)
            } else {
                (4, 8, Int8Route::WidenI16)
            }
        } else if flags.is_aarch64 {
            if flags.has_i8mm {
                (8, 12, Int8Route::Usdot)
            } else if flags.has_dotprod {
                (8, 12, Int8Route::Sdot)
            } else {
                (6, 8, Int8Route::WidenI16)
            }
        } else {
            // riscv64 with V: 32 vector registers.
            (4, 8, Int8Route::LaneWise)
        };
        Int8Tile {
            rows,
            cols,
            route,
            signed,
        }
    }

    /// The computed C is `A·B − unsigned_offset · Σ_k w` (per column for weights in B, per
    /// row for weights in A): 128 for [`Int8Route::Sdot`], which multiplies `u − 128`, else 0.
    /// [`folded_bias`] adds it back.
    pub fn unsigned_offset(&self) -> i32 {
        match self.route {
            Int8Route::Sdot => 128,
            _ => 0,
        }
    }

    /// Whether the tile computes `A·B − unsigned_offset·Σ_k w` exactly (wrapping i32) for
    /// weights of this range.
    pub fn is_exact_for(&self, weights: WeightRange) -> bool {
        self.route != Int8Route::Pmaddubsw || weights == WeightRange::SevenBit
    }

    fn a_signed(&self) -> bool {
        self.signed == SignedOperand::A
    }

    /// The (signed, unsigned) pair of a step's A and B values.
    fn signed_first<V>(&self, a: V, b: V) -> (V, V) {
        match self.signed {
            SignedOperand::A => (a, b),
            SignedOperand::B => (b, a),
        }
    }
}

/// Σ_k w for each output channel of s8 weights with `k` elements per channel, stored
/// `[channels, k]` (`k_contiguous`: convolution weights `[M, C·kh·kw]`, a Gemm B with `trans_b`)
/// or `[k, channels]` (a Gemm/MatMul B `[K, N]`).
///
/// Panics if `w.len() != k · channels`.
pub fn weight_sums(w: &[i8], k: usize, channels: usize, k_contiguous: bool) -> Vec<i32> {
    assert_eq!(
        w.len(),
        k * channels,
        "weight_sums: weights are not k×channels"
    );
    (0..channels)
        .map(|c| {
            (0..k)
                .map(|q| {
                    let i = if k_contiguous {
                        c * k + q
                    } else {
                        q * channels + c
                    };
                    w[i] as i32
                })
                .sum()
        })
        .collect()
}

/// The per-channel i32 start value of the accumulators so that the kernel's C plus it is
/// `bias[c] + Σ_k (x − zx) · w_ck` (wrapping, as the interpreter defines integer Conv/Gemm):
/// `bias[c] + (unsigned_offset − zx) · Σ_k w_ck`, with `sums` from [`weight_sums`] and
/// `unsigned_offset` from [`Int8Tile::unsigned_offset`]. For weights in B it is the blocking's
/// column bias; for weights in A (per row of C) the requantisation adds it.
///
/// Panics if `bias` is given with a length other than `sums.len()`.
pub fn folded_bias(bias: Option<&[i32]>, sums: &[i32], zx: i32, unsigned_offset: i32) -> Vec<i32> {
    if let Some(b) = bias {
        assert_eq!(b.len(), sums.len(), "folded_bias: one bias per channel");
    }
    let factor = unsigned_offset.wrapping_sub(zx);
    sums.iter()
        .enumerate()
        .map(|(c, &s)| {
            let b = bias.map_or(0, |b| b[c]);
            b.wrapping_add(factor.wrapping_mul(s))
        })
        .collect()
}

fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// `widen_low(x) · widen_low(y)` and the high halves' product (i16x8), signedness per operand.
fn widened_products(
    fb: &mut FunctionBuilder,
    x: Value,
    x_signed: bool,
    y: Value,
    y_signed: bool,
) -> (Value, Value) {
    let widen = |fb: &mut FunctionBuilder, v: Value, signed: bool, high: bool| match (signed, high)
    {
        (true, false) => fb.ins().swiden_low(v),
        (true, true) => fb.ins().swiden_high(v),
        (false, false) => fb.ins().uwiden_low(v),
        (false, true) => fb.ins().uwiden_high(v),
    };
    let (xl, yl) = (widen(fb, x, x_signed, false), widen(fb, y, y_signed, false));
    let lo = fb.ins().imul(xl, yl);
    let (xh, yh) = (widen(fb, x, x_signed, true), widen(fb, y, y_signed, true));
    let hi = fb.ins().imul(xh, yh);
    (lo, hi)
}

/// The four-byte dot-product tree `iadd(Σ, acc)` that x86-64 matches as `vpdpbusd` and aarch64
/// as `sdot`/`usdot` (docs/CRANELIFT.md): `x` is the first `imul` operand.
fn dot_tree(
    fb: &mut FunctionBuilder,
    x: Value,
    x_signed: bool,
    y: Value,
    y_signed: bool,
    acc: Value,
) -> Value {
    let (lo, hi) = widened_products(fb, x, x_signed, y, y_signed);
    let (lol, loh) = (fb.ins().swiden_low(lo), fb.ins().swiden_high(lo));
    let l = fb.ins().iadd_pairwise(lol, loh);
    let (hil, hih) = (fb.ins().swiden_low(hi), fb.ins().swiden_high(hi));
    let h = fb.ins().iadd_pairwise(hil, hih);
    let s = fb.ins().iadd_pairwise(l, h);
    fb.ins().iadd(s, acc)
}

/// `pmaddwd x, y` as the tree x86-64 matches (i16x8 × i16x8 → i32x4 pair sums).
fn pmaddwd(fb: &mut FunctionBuilder, x: Value, y: Value) -> Value {
    let (lo, hi) = widened_products(fb, x, true, y, true);
    fb.ins().iadd_pairwise(lo, hi)
}

/// The even and odd bytes of the i16x8 `v`, each widened to an i16 lane (sign- or
/// zero-extended): `[v.b0, v.b2, …]`, `[v.b1, v.b3, …]`.
fn even_odd_bytes(fb: &mut FunctionBuilder, v: Value, signed: bool) -> (Value, Value) {
    let eight = fb.ins().iconst(types::I32, 8);
    let up = fb.ins().ishl(v, eight);
    if signed {
        (fb.ins().sshr(up, eight), fb.ins().sshr(v, eight))
    } else {
        (fb.ins().ushr(up, eight), fb.ins().ushr(v, eight))
    }
}

/// The byte `q` of each 32-bit lane of `v` (any lane count of i32, scalar included), sign- or
/// zero-extended, by two shifts.
fn byte_of_lanes(fb: &mut FunctionBuilder, v: Value, q: usize, signed: bool) -> Value {
    let up = 24 - 8 * q as i64;
    let x = if up == 0 {
        v
    } else {
        let s = fb.ins().iconst(types::I32, up);
        fb.ins().ishl(v, s)
    };
    let s = fb.ins().iconst(types::I32, 24);
    if signed {
        fb.ins().sshr(x, s)
    } else {
        fb.ins().ushr(x, s)
    }
}

/// `v ^ 0x80` per byte: a u8 as the s8 `u − 128`.
fn flip_bytes(fb: &mut FunctionBuilder, v: Value) -> Value {
    let c = fb.ins().iconst(types::I8, 0x80);
    let c = fb.ins().splat(types::I8X16, c);
    fb.ins().bxor(v, c)
}

impl Panels for Int8Tile {
    fn cols(&self) -> usize {
        self.cols
    }
    fn k_step(&self) -> usize {
        4
    }
    fn b_bytes(&self) -> usize {
        1
    }
    fn kc(&self) -> usize {
        1024
    }
}

impl Tile for Int8Tile {
    /// Dot routes: one i8x16 (the four bytes in every lane). `WidenI16`: even and odd i16
    /// halves. `LaneWise`: the four bytes as i32 scalars.
    type A = [Value; 4];
    /// Dot routes: the i8x16 vector. `WidenI16`: even and odd i16 halves. `LaneWise`: byte `q`
    /// of each column as an i32x4, for `q` in `0..4`.
    type B = [Value; 4];

    fn rows(&self) -> usize {
        self.rows
    }
    fn a_bytes(&self) -> usize {
        1
    }
    fn lane(&self) -> Type {
        types::I32
    }
    fn b_vector(&self) -> Type {
        match self.route {
            Int8Route::WidenI16 => types::I16X8,
            Int8Route::LaneWise => types::I32X4,
            _ => types::I8X16,
        }
    }
    fn mc(&self) -> usize {
        self.rows * 30
    }

    fn broadcast_a(
        &self,
        fb: &mut FunctionBuilder,
        ptr: Value,
        off: i32,
        valid: usize,
    ) -> [Value; 4] {
        if self.route == Int8Route::LaneWise {
            let signed = self.a_signed();
            let byte = |fb: &mut FunctionBuilder, q: usize| {
                if q >= valid {
                    fb.ins().iconst(types::I32, 0)
                } else if signed {
                    fb.ins().sload8(types::I32, mem(), ptr, off + q as i32)
                } else {
                    fb.ins().uload8(types::I32, mem(), ptr, off + q as i32)
                }
            };
            return [byte(fb, 0), byte(fb, 1), byte(fb, 2), byte(fb, 3)];
        }
        let mut quad = load_quad(fb, ptr, off, valid);
        if self.route == Int8Route::Sdot && !self.a_signed() {
            quad = fb.ins().bxor_imm_u(quad, 0x8080_8080i64);
        }
        let v = fb.ins().splat(types::I32X4, quad);
        if self.route == Int8Route::WidenI16 {
            let v = fb.ins().bitcast(types::I16X8, little(), v);
            let (even, odd) = even_odd_bytes(fb, v, self.a_signed());
            return [even, odd, even, odd];
        }
        let v = fb.ins().bitcast(types::I8X16, little(), v);
        [v; 4]
    }

    /// `Vnni` and `Pmaddubsw` (x86-64): one 16-byte load of the row's four quads (re-read per
    /// step: the broadcasts stay one register) and a `pshufd` of the quad `lane`, instead of
    /// `mov`, `vmovd`, `vpbroadcastd` per step.
    fn broadcast_a_in_group(
        &self,
        fb: &mut FunctionBuilder,
        ptr: Value,
        off: i32,
        lane: usize,
    ) -> Option<[Value; 4]> {
        if !matches!(self.route, Int8Route::Vnni | Int8Route::Pmaddubsw) {
            return None;
        }
        let group = fb.ins().load(types::I8X16, mem(), ptr, off);
        let first = 4 * lane as u8;
        let mask: Vec<u8> = (0..16).map(|i| first + i % 4).collect();
        let mask = fb.func.dfg.immediates.push(ConstantData::from(mask));
        let v = fb.ins().shuffle(group, group, mask);
        Some([v; 4])
    }

    fn prepare_b(&self, fb: &mut FunctionBuilder, _flags: &IsaFlags, b: Value) -> [Value; 4] {
        let b_signed = !self.a_signed();
        match self.route {
            Int8Route::WidenI16 => {
                let (even, odd) = even_odd_bytes(fb, b, b_signed);
                [even, odd, even, odd]
            }
            Int8Route::LaneWise => [0, 1, 2, 3].map(|q| byte_of_lanes(fb, b, q, b_signed)),
            Int8Route::Sdot if !b_signed => [flip_bytes(fb, b); 4],
            _ => [b; 4],
        }
    }

    fn mul_add(
        &self,
        fb: &mut FunctionBuilder,
        _flags: &IsaFlags,
        a: [Value; 4],
        b: [Value; 4],
        acc: Value,
    ) -> Value {
        match self.route {
            Int8Route::Vnni => {
                let (s, u) = self.signed_first(a[0], b[0]);
                dot_tree(fb, s, true, u, false, acc)
            }
            Int8Route::Usdot => {
                let (s, u) = self.signed_first(a[0], b[0]);
                dot_tree(fb, u, false, s, true, acc)
            }
            Int8Route::Sdot => dot_tree(fb, a[0], true, b[0], true, acc),
            Int8Route::Pmaddubsw => {
                let (s, u) = self.signed_first(a[0], b[0]);
                let pairs = fb.ins().x86_pmaddubsw(s, u);
                let (pl, ph) = (fb.ins().swiden_low(pairs), fb.ins().swiden_high(pairs));
                let quads = fb.ins().iadd_pairwise(pl, ph);
                fb.ins().iadd(quads, acc)
            }
            Int8Route::WidenI16 => {
                let even = pmaddwd(fb, a[0], b[0]);
                let odd = pmaddwd(fb, a[1], b[1]);
                let s = fb.ins().iadd(even, odd);
                fb.ins().iadd(s, acc)
            }
            Int8Route::LaneWise => {
                let p: Vec<Value> = (0..4)
                    .map(|q| {
                        let s = fb.ins().splat(types::I32X4, a[q]);
                        fb.ins().imul(b[q], s)
                    })
                    .collect();
                let s01 = fb.ins().iadd(p[0], p[1]);
                let s23 = fb.ins().iadd(p[2], p[3]);
                let s = fb.ins().iadd(s01, s23);
                fb.ins().iadd(acc, s)
            }
        }
    }
}
