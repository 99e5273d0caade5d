//! Register tiles: what the GEMM blocking (`super`) needs to know about one micro-kernel.
//!
//! A tile computes `C[rows × cols] += A[rows × k] · B[k × cols]` in `rows · cols / 4`
//! accumulators of four 32-bit lanes each (one accumulator holds four adjacent columns of one
//! row). One *step* consumes `k_step` consecutive k: it loads the step's B vectors (16 bytes
//! each, four columns × `k_step` elements), broadcasts `k_step` elements of each A row, and
//! multiplies-and-adds. The blocking owns everything else: k blocks, row blocks, panels, edge
//! tiles, the unrolled step loop, loading and storing C.
//!
//! Packed B (see `super::pack`) stores, per step, `cols` columns of `k_step` consecutive k
//! elements each (column-major inside the step), so one B vector is 16 contiguous bytes.

use crate::jit::isa::IsaFlags;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;

/// The packed layout of B a micro-kernel reads (`super::pack`): what the packers and the k
/// blocking need to know, for the Cranelift tiles and the full-width kernels alike.
pub trait Panels {
    /// Columns one tile covers: the width of a packed B panel, a multiple of 4.
    fn cols(&self) -> usize;
    /// Consecutive k one step consumes.
    fn k_step(&self) -> usize;
    /// Bytes of one element of B.
    fn b_bytes(&self) -> usize;
    /// Largest k block: a multiple of `k_step · UNROLL` (one packed B panel of it stays in L1).
    fn kc(&self) -> usize;
}

/// One register-tile shape and its step. Implementations must be exact about the lanes they
/// touch: `broadcast_a` reads exactly `valid` elements.
pub trait Tile: Panels {
    /// What [`Tile::broadcast_a`] gives for one row of a step (one vector, or several parts).
    type A: Copy;
    /// What [`Tile::prepare_b`] makes of one B vector of a step (the vector itself, or parts).
    type B: Copy;
    /// Rows of A and C one tile covers.
    fn rows(&self) -> usize;
    /// Bytes of one element of A.
    fn a_bytes(&self) -> usize;
    /// The type of one C element and accumulator lane (`F32` or `I32`).
    fn lane(&self) -> Type;
    /// The type of one 16-byte B vector of a step.
    fn b_vector(&self) -> Type;
    /// Rows per row block, a multiple of `rows` (that much of A stays in L2).
    fn mc(&self) -> usize;
    /// Loads the first `valid` (`1..=k_step`) of the `k_step` A elements at `ptr + off`, the
    /// others zero, and broadcasts them in the form [`Tile::mul_add`] takes.
    fn broadcast_a(&self, fb: &mut FunctionBuilder, ptr: Value, off: i32, valid: usize) -> Self::A;
    /// The A operand of step `lane` (`0..UNROLL`) of one row in an unrolled group of
    /// `UNROLL` full steps whose `k_step · UNROLL` elements start at `ptr + off`, taken from
    /// one load of the whole group instead of one load per step; `None` (the default) when the
    /// tile broadcasts every step by [`Tile::broadcast_a`]. Reads only the group's elements.
    fn broadcast_a_in_group(
        &self,
        _fb: &mut FunctionBuilder,
        _ptr: Value,
        _off: i32,
        _lane: usize,
    ) -> Option<Self::A> {
        None
    }
    /// Turns one loaded B vector (of type [`Tile::b_vector`]) into the form [`Tile::mul_add`]
    /// takes; emitted once per step and vector, before the rows use it.
    fn prepare_b(&self, fb: &mut FunctionBuilder, flags: &IsaFlags, b: Value) -> Self::B;
    /// `acc + Σ_s a[s] · b[column, s]` per lane, for one broadcast A and one prepared B vector.
    fn mul_add(
        &self,
        fb: &mut FunctionBuilder,
        flags: &IsaFlags,
        a: Self::A,
        b: Self::B,
        acc: Value,
    ) -> Value;

    /// The accumulator type: four lanes.
    fn acc(&self) -> Type {
        self.lane().by(4).expect("four lanes of a 32-bit type")
    }
    /// Bytes one step reads from a packed B panel.
    fn b_step_bytes(&self) -> usize {
        self.cols() * self.k_step() * self.b_bytes()
    }
}

/// Memory flags of every access: cannot trap, no alignment claimed (SSE code then never folds a
/// possibly unaligned load into an arithmetic instruction).
pub(super) fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// f32 × f32 → f32 by `fma(splat(a), b, acc)` (or `fmul` + `fadd` without FMA, so no libcall is
/// emitted). The production tile is [`F32Tile::PRODUCTION`], 4×8: eight accumulators, the best
/// 128-bit shape measured (87 % of the FMA peak, docs/JIT.md); other shapes serve tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct F32Tile {
    pub rows: usize,
    pub cols: usize,
}

impl F32Tile {
    pub const PRODUCTION: F32Tile = F32Tile { rows: 4, cols: 8 };
}

impl Panels for F32Tile {
    fn cols(&self) -> usize {
        self.cols
    }
    fn k_step(&self) -> usize {
        1
    }
    fn b_bytes(&self) -> usize {
        4
    }
    fn kc(&self) -> usize {
        256
    }
}

impl Tile for F32Tile {
    type A = Value;
    type B = Value;
    fn rows(&self) -> usize {
        self.rows
    }
    fn a_bytes(&self) -> usize {
        4
    }
    fn lane(&self) -> Type {
        types::F32
    }
    fn b_vector(&self) -> Type {
        types::F32X4
    }
    fn mc(&self) -> usize {
        120
    }
    fn broadcast_a(&self, fb: &mut FunctionBuilder, ptr: Value, off: i32, _valid: usize) -> Value {
        let s = fb.ins().load(types::F32, mem(), ptr, off);
        fb.ins().splat(types::F32X4, s)
    }
    fn prepare_b(&self, _fb: &mut FunctionBuilder, _flags: &IsaFlags, b: Value) -> Value {
        b
    }
    fn mul_add(
        &self,
        fb: &mut FunctionBuilder,
        flags: &IsaFlags,
        a: Value,
        b: Value,
        acc: Value,
    ) -> Value {
        if flags.use_fma() {
            fb.ins().fma(a, b, acc)
        } else {
            let p = fb.ins().fmul(a, b);
            fb.ins().fadd(p, acc)
        }
    }
}

/// i16 × i16 → i32, two k per step: `acc + (a0·b[c,0] + a1·b[c,1])` per column, the
/// `i32x4.dot_i16x8_s` tree that x86-64 lowers to one `pmaddwd` (docs/CRANELIFT.md). Exact
/// (wrapping i32 sums). A tile of a different element type, accumulator type and k step than
/// the f32 one, so the blocking is tested as generic; the building block of the exact int8
/// route without VNNI (8-bit values widened to i16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct I16PairTile {
    pub rows: usize,
    pub cols: usize,
}

impl Panels for I16PairTile {
    fn cols(&self) -> usize {
        self.cols
    }
    fn k_step(&self) -> usize {
        2
    }
    fn b_bytes(&self) -> usize {
        2
    }
    fn kc(&self) -> usize {
        512
    }
}

impl Tile for I16PairTile {
    type A = Value;
    type B = Value;
    fn rows(&self) -> usize {
        self.rows
    }
    fn a_bytes(&self) -> usize {
        2
    }
    fn lane(&self) -> Type {
        types::I32
    }
    fn b_vector(&self) -> Type {
        types::I16X8
    }
    fn mc(&self) -> usize {
        self.rows * 30
    }
    fn broadcast_a(&self, fb: &mut FunctionBuilder, ptr: Value, off: i32, valid: usize) -> Value {
        // Both elements as one i32 (little endian: a0 in the low half); one element zero-extended.
        let pair = if valid >= 2 {
            fb.ins().load(types::I32, mem(), ptr, off)
        } else {
            fb.ins().uload16(types::I32, mem(), ptr, off)
        };
        let v = fb.ins().splat(types::I32X4, pair);
        let little = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        fb.ins().bitcast(types::I16X8, little, v)
    }
    fn prepare_b(&self, _fb: &mut FunctionBuilder, _flags: &IsaFlags, b: Value) -> Value {
        b
    }
    fn mul_add(
        &self,
        fb: &mut FunctionBuilder,
        _flags: &IsaFlags,
        a: Value,
        b: Value,
        acc: Value,
    ) -> Value {
        let (al, bl) = (fb.ins().swiden_low(a), fb.ins().swiden_low(b));
        let lo = fb.ins().imul(al, bl);
        let (ah, bh) = (fb.ins().swiden_high(a), fb.ins().swiden_high(b));
        let hi = fb.ins().imul(ah, bh);
        let dot = fb.ins().iadd_pairwise(lo, hi);
        fb.ins().iadd(dot, acc)
    }
}
