//! The f32 register tile `C[rows × cols] (+)= A[rows × k] · B[k × cols]` in full-width vectors.
//!
//! Contract of the assembled function, `fn(a, b, c, k, bias)` (System V, five i64 arguments):
//! - `a` points at `A[0][0]`; row `r` starts `r · lda_bytes` further (`lda_bytes` is fixed when
//!   the kernel is assembled, so the row offsets are immediates, as in the Cranelift GEMM);
//!   consecutive k are consecutive f32;
//! - `b` points at row 0 of B: `k` rows of at least `cols` consecutive f32, row `kk` at
//!   `kk · b_step_bytes` (a packed panel, or B read in place);
//! - `c` points at `C[0][0]`; row `r` starts `r · ldc_bytes` further;
//! - `k` (≥ 0) is the number of multiply-add steps;
//! - `bias` is read only by the bias starts: [`Start::ColumnBias`] starts every row at
//!   `bias[0..cols]`, [`Start::RowBias`] row `r` at `bias[r]` in every column. [`Start::Zero`]
//!   starts at zero, [`Start::LoadC`] at the values in `C`; the tile is stored back to `C`,
//!   after the tile's [`Finish`] (row bias, then clamps), which reads `bias[r]` when it adds a
//!   row bias (so a tile has a bias start or a finishing bias, not both).
//!
//! `cols` need not fill the last vector: its C (and bias) accesses are then masked (`k1` on
//! AVX-512, `vmaskmovps` on AVX2), and so are its B loads when `mask_b` (B read in place, where
//! the columns past `cols` may be outside the buffer); a packed panel is zero-padded and read
//! whole. Masked-off lanes never fault.
//!
//! Each element is accumulated in k order with one fused multiply-add per step, as the 128-bit
//! Cranelift tile does, so both give bit-identical results. Nothing outside the tile's rows and
//! columns is written, nor read outside them (B: outside the vectors the columns need, unless
//! masked); alignment is not required.
//!
//! Register use: `rows · cols / lanes` accumulators, `cols / lanes` B vectors and one broadcast
//! of A; the defaults ([`F32TileShape::default_for`]) fill the register file: 14×32 for
//! AVX-512 (28 + 2 + 1 of 32 `zmm`), 6×16 for AVX2 (12 + 2 + 1 of 16 `ymm`).

use super::{AsmError, WideIsa};
use iced_x86::code_asm::*;

/// How the tile starts (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Start {
    Zero,
    LoadC,
    ColumnBias,
    RowBias,
}

/// What an f32 tile does to its results before storing them: `y = acc + bias[r]` with
/// `row_bias`, then `y < lower ? lower : y`, then `y > upper ? upper : y` (bounds as f32 bits).
/// These are the operations, in the order, of the conv epilogue's pass
/// (`kernels::epilogue::OutputEpilogue::apply_rows` with a Relu or Clip), and `vmaxps`/`vminps`
/// with the bound first return the bound only when the comparison holds (a NaN or `-0.0` is kept,
/// as the interpreter keeps it), so a finished tile stores the bits that pass would.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Finish {
    pub row_bias: bool,
    pub lower: Option<u32>,
    pub upper: Option<u32>,
}

impl Finish {
    pub fn is_none(&self) -> bool {
        *self == Finish::default()
    }
}

/// What one assembled kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct F32TileShape {
    pub isa: WideIsa,
    pub rows: usize,
    /// Columns of C: 1 to 4 vectors' lanes (the last vector may be partial).
    pub cols: usize,
    pub lda_bytes: usize,
    /// Bytes between consecutive k rows of B.
    pub b_step_bytes: usize,
    pub ldc_bytes: usize,
    pub start: Start,
    /// Mask the partial last vector's B loads too (B read in place).
    pub mask_b: bool,
    pub finish: Finish,
}

/// Steps of the unrolled main loop; the remaining `k % UNROLL` run one at a time.
pub const UNROLL: usize = 4;

impl F32TileShape {
    /// The production tile of `isa` for leading dimensions `lda`, `ldc` (in f32).
    pub fn default_for(isa: WideIsa, lda: usize, ldc: usize, start: Start) -> F32TileShape {
        let rows = match isa {
            WideIsa::Avx512F => 14,
            WideIsa::Avx2Fma => 6,
        };
        let cols = 2 * isa.lanes();
        F32TileShape {
            isa,
            rows,
            cols,
            lda_bytes: 4 * lda,
            b_step_bytes: 4 * cols,
            ldc_bytes: 4 * ldc,
            start,
            mask_b: false,
            finish: Finish::default(),
        }
    }

    pub(crate) fn describe(&self) -> String {
        let f = &self.finish;
        let bound = |b: Option<u32>| b.map(|x| format!("{}", f32::from_bits(x)));
        let finish = if f.is_none() {
            String::new()
        } else {
            format!(
                ", finish{}{}{}",
                if f.row_bias { " +bias" } else { "" },
                bound(f.lower).map_or(String::new(), |x| format!(" ≥{x}")),
                bound(f.upper).map_or(String::new(), |x| format!(" ≤{x}")),
            )
        };
        format!(
            "f32 {}×{} {} (lda {} B, B rows {} B{}, ldc {} B, {:?}{finish})",
            self.rows,
            self.cols,
            self.isa.name(),
            self.lda_bytes,
            self.b_step_bytes,
            if self.mask_b { " masked" } else { "" },
            self.ldc_bytes,
            self.start
        )
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            finish: self.finish,
            what: self.describe(),
            registers: self.isa,
            rows: self.rows,
            cols: self.cols,
            lda_bytes: self.lda_bytes,
            b_step_bytes: self.b_step_bytes,
            ldc_bytes: self.ldc_bytes,
            start: self.start,
            mask_b: self.mask_b,
            product: Product::F32,
        }
    }

    /// Checks the shape fits the register file and the displacements fit 32 bits.
    pub fn check(&self) -> Result<(), AsmError> {
        self.geometry().check()
    }

    /// The kernel's machine code (see the module documentation).
    pub fn assemble(&self) -> Result<Vec<u8>, AsmError> {
        self.geometry().assemble()
    }
}

/// The vector register class a kernel is written in.
pub(crate) trait Vector: Copy {
    type Reg: Copy;
    fn reg(self, i: usize) -> Self::Reg;
    fn load(
        self,
        a: &mut CodeAssembler,
        r: Self::Reg,
        m: AsmMemoryOperand,
    ) -> Result<(), IcedError>;
    fn store(
        self,
        a: &mut CodeAssembler,
        m: AsmMemoryOperand,
        r: Self::Reg,
    ) -> Result<(), IcedError>;
    fn zero(self, a: &mut CodeAssembler, r: Self::Reg) -> Result<(), IcedError>;
    fn broadcast(
        self,
        a: &mut CodeAssembler,
        r: Self::Reg,
        m: AsmMemoryOperand,
    ) -> Result<(), IcedError>;
    /// `acc += x · y`.
    fn fma(
        self,
        a: &mut CodeAssembler,
        acc: Self::Reg,
        x: Self::Reg,
        y: Self::Reg,
    ) -> Result<(), IcedError>;
    /// `dst = x + y` (f32 lanes).
    fn add(
        self,
        a: &mut CodeAssembler,
        dst: Self::Reg,
        x: Self::Reg,
        y: Self::Reg,
    ) -> Result<(), IcedError>;
    /// `dst = x > y ? x : y` (`vmaxps`: `y` when unordered or equal).
    fn max(
        self,
        a: &mut CodeAssembler,
        dst: Self::Reg,
        x: Self::Reg,
        y: Self::Reg,
    ) -> Result<(), IcedError>;
    /// `dst = x < y ? x : y` (`vminps`: `y` when unordered or equal).
    fn min(
        self,
        a: &mut CodeAssembler,
        dst: Self::Reg,
        x: Self::Reg,
        y: Self::Reg,
    ) -> Result<(), IcedError>;
    /// Every 32-bit lane of vector register `r` set to `bits` (through `eax`).
    fn splat_bits(self, a: &mut CodeAssembler, r: usize, bits: u32) -> Result<(), IcedError>;
    /// `vpdpbusd`: per i32 lane, `acc += Σ₄ u8(x) · s8(y)`.
    fn dot(
        self,
        a: &mut CodeAssembler,
        acc: Self::Reg,
        x: Self::Reg,
        y: Self::Reg,
    ) -> Result<(), IcedError>;
    /// Sets the mask of the first `valid` lanes: in `k1` (AVX-512), or in vector register
    /// `mask` (AVX2, built through `rax` with vector register `temp`).
    fn set_mask(
        self,
        a: &mut CodeAssembler,
        valid: usize,
        mask: usize,
        temp: usize,
    ) -> Result<(), IcedError>;
    /// Loads the lanes the mask selects (the others zero); masked-off lanes never fault.
    fn load_masked(
        self,
        a: &mut CodeAssembler,
        r: Self::Reg,
        m: AsmMemoryOperand,
        mask: usize,
    ) -> Result<(), IcedError>;
    /// Stores the lanes the mask selects.
    fn store_masked(
        self,
        a: &mut CodeAssembler,
        m: AsmMemoryOperand,
        r: Self::Reg,
        mask: usize,
    ) -> Result<(), IcedError>;
}

#[derive(Clone, Copy)]
pub(crate) struct Zmm;
#[derive(Clone, Copy)]
pub(crate) struct Ymm;

const ZMM: [AsmRegisterZmm; 32] = [
    zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13, zmm14,
    zmm15, zmm16, zmm17, zmm18, zmm19, zmm20, zmm21, zmm22, zmm23, zmm24, zmm25, zmm26, zmm27,
    zmm28, zmm29, zmm30, zmm31,
];
const YMM: [AsmRegisterYmm; 16] = [
    ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9, ymm10, ymm11, ymm12, ymm13, ymm14,
    ymm15,
];
const XMM: [AsmRegisterXmm; 16] = [
    xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14,
    xmm15,
];

/// The [`Vector`] impl of a register class: its registers, its memory operand size and its
/// zeroing idiom (`vpxord` for `zmm`, which has no VEX form; `vxorps` for `ymm`). `vpdpbusd` on
/// `ymm` takes the VEX form (AVX-VNNI): the assembler prefers VEX where both encodings exist.
macro_rules! vector_class {
    ($class:ident, $reg:ty, $table:ident, $ptr:ident, $zero:ident) => {
        fn reg(self, i: usize) -> $reg {
            $table[i]
        }
        fn load(
            self,
            a: &mut CodeAssembler,
            r: $reg,
            m: AsmMemoryOperand,
        ) -> Result<(), IcedError> {
            a.vmovups(r, $ptr(m))
        }
        fn store(
            self,
            a: &mut CodeAssembler,
            m: AsmMemoryOperand,
            r: $reg,
        ) -> Result<(), IcedError> {
            a.vmovups($ptr(m), r)
        }
        fn zero(self, a: &mut CodeAssembler, r: $reg) -> Result<(), IcedError> {
            a.$zero(r, r, r)
        }
        fn broadcast(
            self,
            a: &mut CodeAssembler,
            r: $reg,
            m: AsmMemoryOperand,
        ) -> Result<(), IcedError> {
            a.vbroadcastss(r, dword_ptr(m))
        }
        fn fma(self, a: &mut CodeAssembler, acc: $reg, x: $reg, y: $reg) -> Result<(), IcedError> {
            a.vfmadd231ps(acc, x, y)
        }
        fn dot(self, a: &mut CodeAssembler, acc: $reg, x: $reg, y: $reg) -> Result<(), IcedError> {
            a.vpdpbusd(acc, x, y)
        }
        fn add(self, a: &mut CodeAssembler, d: $reg, x: $reg, y: $reg) -> Result<(), IcedError> {
            a.vaddps(d, x, y)
        }
        fn max(self, a: &mut CodeAssembler, d: $reg, x: $reg, y: $reg) -> Result<(), IcedError> {
            a.vmaxps(d, x, y)
        }
        fn min(self, a: &mut CodeAssembler, d: $reg, x: $reg, y: $reg) -> Result<(), IcedError> {
            a.vminps(d, x, y)
        }
    };
}

impl Vector for Zmm {
    type Reg = AsmRegisterZmm;
    vector_class!(Zmm, AsmRegisterZmm, ZMM, zmmword_ptr, vpxord);
    fn splat_bits(self, a: &mut CodeAssembler, r: usize, bits: u32) -> Result<(), IcedError> {
        a.mov(eax, bits as i32)?;
        a.vpbroadcastd(ZMM[r], eax)
    }
    fn set_mask(
        self,
        a: &mut CodeAssembler,
        valid: usize,
        _mask: usize,
        _temp: usize,
    ) -> Result<(), IcedError> {
        a.mov(eax, ((1u32 << valid) - 1) as i32)?;
        a.kmovw(k1, eax)
    }
    fn load_masked(
        self,
        a: &mut CodeAssembler,
        r: AsmRegisterZmm,
        m: AsmMemoryOperand,
        _mask: usize,
    ) -> Result<(), IcedError> {
        a.vmovups(r.k1().z(), zmmword_ptr(m))
    }
    fn store_masked(
        self,
        a: &mut CodeAssembler,
        m: AsmMemoryOperand,
        r: AsmRegisterZmm,
        _mask: usize,
    ) -> Result<(), IcedError> {
        a.vmovups(zmmword_ptr(m).k1(), r)
    }
}

impl Vector for Ymm {
    type Reg = AsmRegisterYmm;
    vector_class!(Ymm, AsmRegisterYmm, YMM, ymmword_ptr, vxorps);
    fn splat_bits(self, a: &mut CodeAssembler, r: usize, bits: u32) -> Result<(), IcedError> {
        a.mov(eax, bits as i32)?;
        a.vmovd(XMM[r], eax)?;
        a.vpbroadcastd(YMM[r], XMM[r])
    }
    fn set_mask(
        self,
        a: &mut CodeAssembler,
        valid: usize,
        mask: usize,
        temp: usize,
    ) -> Result<(), IcedError> {
        // Lane l is all ones when l < valid; two lanes per 64-bit immediate.
        let quad = |q: usize| -> u64 {
            (0..2)
                .filter(|h| 2 * q + h < valid)
                .fold(0u64, |acc, h| acc | (0xffff_ffffu64 << (32 * h)))
        };
        a.mov(rax, quad(0))?;
        a.vmovq(XMM[mask], rax)?;
        a.mov(rax, quad(1))?;
        a.vpinsrq(XMM[mask], XMM[mask], rax, 1)?;
        a.mov(rax, quad(2))?;
        a.vmovq(XMM[temp], rax)?;
        a.mov(rax, quad(3))?;
        a.vpinsrq(XMM[temp], XMM[temp], rax, 1)?;
        a.vinserti128(YMM[mask], YMM[mask], XMM[temp], 1)
    }
    fn load_masked(
        self,
        a: &mut CodeAssembler,
        r: AsmRegisterYmm,
        m: AsmMemoryOperand,
        mask: usize,
    ) -> Result<(), IcedError> {
        a.vmaskmovps(r, YMM[mask], ymmword_ptr(m))
    }
    fn store_masked(
        self,
        a: &mut CodeAssembler,
        m: AsmMemoryOperand,
        r: AsmRegisterYmm,
        mask: usize,
    ) -> Result<(), IcedError> {
        a.vmaskmovps(ymmword_ptr(m), YMM[mask], r)
    }
}

/// `zmm0..zmm31`, by number.
pub(crate) fn zmm_registers() -> [AsmRegisterZmm; 32] {
    ZMM
}

/// `ymm0..ymm15`, by number.
pub(crate) fn ymm_registers() -> [AsmRegisterYmm; 16] {
    YMM
}

fn disp(v: usize) -> i32 {
    i32::try_from(v).expect("checked by the shape's check")
}

/// The multiply-add of a tile's step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Product {
    /// f32 `vfmadd231ps`: one k per step.
    F32,
    /// `vpdpbusd`: four k per step, u8 A (broadcast as a dword) by s8 B into i32.
    U8S8,
    /// `vpdpbusd` with the roles swapped: s8 A (broadcast) by u8 B.
    S8U8,
}

/// A tile as [`emit_tile`] assembles it: every step reads 4 bytes of each A row and the
/// vectors of one B row (for f32, one k; for u8·s8, four k per i32 column).
pub(crate) struct Geometry {
    /// The tile as its kernel describes itself, for errors.
    pub what: String,
    /// The register file (`zmm` or `ymm`).
    pub registers: WideIsa,
    pub rows: usize,
    /// Columns of 32-bit results: 1 to 4 vectors' lanes (the last vector may be partial).
    pub cols: usize,
    pub lda_bytes: usize,
    pub b_step_bytes: usize,
    pub ldc_bytes: usize,
    pub start: Start,
    pub mask_b: bool,
    pub product: Product,
    pub finish: Finish,
}

impl Geometry {
    fn vectors(&self) -> usize {
        self.cols.div_ceil(self.registers.lanes())
    }

    /// Valid lanes of the last vector.
    fn last_lanes(&self) -> usize {
        self.cols - (self.vectors() - 1) * self.registers.lanes()
    }

    fn ragged(&self) -> bool {
        self.last_lanes() < self.registers.lanes()
    }

    /// Whether the mask lives in a vector register (AVX2; AVX-512 masks are in `k1`).
    fn vector_mask(&self) -> bool {
        self.ragged() && matches!(self.registers, WideIsa::Avx2Fma)
    }

    /// Vector registers: accumulators, B vectors, the broadcast of A, the AVX2 mask, and, for a
    /// finish with both bounds on a one-vector tile, a register for the second bound (the
    /// finish reuses the B vectors for its bounds and the broadcast for the bias).
    fn registers_used(&self) -> usize {
        let nv = self.vectors();
        let extra = nv == 1 && self.finish.lower.is_some() && self.finish.upper.is_some();
        self.rows * nv + nv + 1 + self.vector_mask() as usize + extra as usize
    }

    /// Checks the tile fits the register file and its displacements fit 32 bits.
    pub fn check(&self) -> Result<(), AsmError> {
        let fail = |reason: String| {
            Err(AsmError::Shape {
                what: self.what.clone(),
                reason,
            })
        };
        let lanes = self.registers.lanes();
        if self.rows == 0 || self.cols == 0 || self.vectors() > 4 {
            return fail(format!(
                "needs rows ≥ 1 and 1 to {} columns (4 vectors of {lanes} lanes)",
                4 * lanes
            ));
        }
        if self.b_step_bytes < 4 * self.cols {
            return fail("B rows shorter than the tile's columns".into());
        }
        if !self.finish.is_none() && self.product != Product::F32 {
            return fail("a finish is for f32 tiles".into());
        }
        if self.finish.row_bias && matches!(self.start, Start::ColumnBias | Start::RowBias) {
            return fail("a finishing bias and a bias start both read the bias argument".into());
        }
        // (AVX-VNNI's VEX encoding reaches ymm0..ymm15 only, which is the whole AVX2 file.)
        let used = self.registers_used();
        let file = self.registers.registers();
        if used > file {
            return fail(format!("{used} vector registers needed, {file} exist"));
        }
        let far = (self.rows - 1) * self.lda_bytes.max(self.ldc_bytes)
            + UNROLL * self.b_step_bytes.max(4)
            + 4 * self.rows;
        if far > i32::MAX as usize / 2 {
            return fail("row offsets beyond 32-bit displacements".into());
        }
        Ok(())
    }

    /// The machine code of the tile.
    pub fn assemble(&self) -> Result<Vec<u8>, AsmError> {
        self.check()?;
        let mut a = CodeAssembler::new(64).map_err(|e| AsmError::encode(&self.what, e))?;
        match self.registers {
            WideIsa::Avx512F => emit_tile(&mut a, self, Zmm),
            WideIsa::Avx2Fma => emit_tile(&mut a, self, Ymm),
        }
        .map_err(|e| AsmError::encode(&self.what, e))?;
        a.assemble(0).map_err(|e| AsmError::encode(&self.what, e))
    }
}

/// `rdi` = A, `rsi` = B, `rdx` = C, `rcx` = steps, `r8` = bias; `rax` and `k1` are scratch.
fn emit_tile<V: Vector>(a: &mut CodeAssembler, s: &Geometry, v: V) -> Result<(), IcedError> {
    let nv = s.vectors();
    let vb = s.registers.vector_bytes();
    let acc = |r: usize, j: usize| v.reg(r * nv + j);
    let bvec = |j: usize| v.reg(s.rows * nv + j);
    let bcast_index = s.rows * nv + nv;
    let bcast = v.reg(bcast_index);
    let mask = bcast_index + 1;
    let ragged = s.ragged();
    // The partial last vector's accesses are masked.
    let partial = |j: usize| ragged && j == nv - 1;
    if ragged {
        v.set_mask(a, s.last_lanes(), mask, bcast_index)?;
    }
    let c_at = |r: usize, j: usize| rdx + disp(r * s.ldc_bytes + j * vb);
    for r in 0..s.rows {
        for j in 0..nv {
            let x = acc(r, j);
            match s.start {
                Start::Zero => v.zero(a, x)?,
                Start::LoadC if partial(j) => v.load_masked(a, x, c_at(r, j), mask)?,
                Start::LoadC => v.load(a, x, c_at(r, j))?,
                Start::ColumnBias if partial(j) => v.load_masked(a, x, r8 + disp(j * vb), mask)?,
                Start::ColumnBias => v.load(a, x, r8 + disp(j * vb))?,
                Start::RowBias => v.broadcast(a, x, r8 + disp(4 * r))?,
            }
        }
    }
    // One step at k offset `u` within the current position of rdi/rsi.
    let step = |a: &mut CodeAssembler, u: usize| -> Result<(), IcedError> {
        for j in 0..nv {
            let at = rsi + disp(u * s.b_step_bytes + j * vb);
            if s.mask_b && partial(j) {
                v.load_masked(a, bvec(j), at, mask)?;
            } else {
                v.load(a, bvec(j), at)?;
            }
        }
        for r in 0..s.rows {
            v.broadcast(a, bcast, rdi + disp(r * s.lda_bytes + 4 * u))?;
            for j in 0..nv {
                match s.product {
                    Product::F32 => v.fma(a, acc(r, j), bvec(j), bcast)?,
                    Product::U8S8 => v.dot(a, acc(r, j), bcast, bvec(j))?,
                    Product::S8U8 => v.dot(a, acc(r, j), bvec(j), bcast)?,
                }
            }
        }
        Ok(())
    };
    let mut unrolled = a.create_label();
    let mut single = a.create_label();
    let mut single_loop = a.create_label();
    let mut done = a.create_label();
    a.cmp(rcx, UNROLL as i32)?;
    a.jb(single)?;
    a.set_label(&mut unrolled)?;
    for u in 0..UNROLL {
        step(a, u)?;
    }
    a.add(rdi, disp(4 * UNROLL))?;
    a.add(rsi, disp(UNROLL * s.b_step_bytes))?;
    a.sub(rcx, UNROLL as i32)?;
    a.cmp(rcx, UNROLL as i32)?;
    a.jae(unrolled)?;
    a.set_label(&mut single)?;
    a.test(rcx, rcx)?;
    a.jz(done)?;
    a.set_label(&mut single_loop)?;
    step(a, 0)?;
    a.add(rdi, 4)?;
    a.add(rsi, disp(s.b_step_bytes))?;
    a.dec(rcx)?;
    a.jnz(single_loop)?;
    a.set_label(&mut done)?;
    let f = s.finish;
    if !f.is_none() {
        // The loop's registers are free now: the bounds go in the B vectors (the first B vector
        // for the first bound present; the second bound in the second, or in the spare register
        // the shape counted when there is one B vector), the bias in the broadcast.
        let lower = s.rows * nv;
        let upper = if f.lower.is_none() {
            lower
        } else if nv >= 2 {
            lower + 1
        } else {
            mask + s.vector_mask() as usize
        };
        if let Some(bits) = f.lower {
            v.splat_bits(a, lower, bits)?;
        }
        if let Some(bits) = f.upper {
            v.splat_bits(a, upper, bits)?;
        }
        for r in 0..s.rows {
            if f.row_bias {
                v.broadcast(a, bcast, r8 + disp(4 * r))?;
            }
            for j in 0..nv {
                let x = acc(r, j);
                if f.row_bias {
                    v.add(a, x, x, bcast)?;
                }
                if f.lower.is_some() {
                    v.max(a, x, v.reg(lower), x)?;
                }
                if f.upper.is_some() {
                    v.min(a, x, v.reg(upper), x)?;
                }
            }
        }
    }
    for r in 0..s.rows {
        for j in 0..nv {
            if partial(j) {
                v.store_masked(a, c_at(r, j), acc(r, j), mask)?;
            } else {
                v.store(a, c_at(r, j), acc(r, j))?;
            }
        }
    }
    a.vzeroupper()?;
    a.ret()
}
