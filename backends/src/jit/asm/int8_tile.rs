//! The int8 register tile `C[rows × cols] (+)= A[rows × k] · B[k × cols]` with `vpdpbusd`:
//! u8 activations by s8 weights into i32 (the integer scheme of docs/QUANTIZATION.md).
//!
//! Contract of the assembled function, `fn(a, b, c, groups, bias)` (System V, five i64
//! arguments):
//! - `a` points at `A[0][0]` (u8, or s8 with `a_signed`); row `r` starts `r · lda_bytes`
//!   further; each step reads four consecutive k of every row (a dword broadcast), so a row must
//!   have `4 · groups` readable bytes: the caller pads k to a multiple of 4 (any value: the
//!   padded B is zero);
//! - `b` points at a packed panel (s8, or u8 with `a_signed`): `groups` blocks `b_step_bytes`
//!   apart, block `g` holding for each column `j` the four values `B[4g..4g+4][j]` at `4j` (the
//!   layout `vpdpbusd` multiplies);
//! - `c` points at `C[0][0]` (i32); row `r` starts `r · ldc_bytes` further;
//! - `groups` (≥ 0) is the number of four-k steps; `bias` is read by the bias starts (i32, as
//!   in `super::f32_tile`). The tile starts as [`Start`] says and is stored back to `C`; a
//!   partial last vector is masked as in `super::f32_tile`.
//!
//! `vpdpbusd` multiplies an unsigned byte operand by a signed one; with `a_signed` (a
//! convolution's s8 weights in A, its u8 columns in B) the broadcast A is the signed operand.
//!
//! Integer sums are exact (no saturation: `vpdpbusd`, not `vpdpbusds`), so the result equals any
//! other order of the same products as long as i32 does not overflow, which the int8 scheme's
//! ranges exclude (`k · 255 · 127` < 2³¹ for k < 66 000).
//!
//! ISAs: AVX-512 VNNI on `zmm` (16 i32 columns per vector; the production tile 14×32) and
//! AVX-VNNI on `ymm` with the VEX encoding (8 per vector; 6×16), chosen by the target's
//! features ([`Int8Isa::for_target`]).

use super::f32_tile::{Geometry, Product, Start};
use super::{AsmError, WideIsa};
use crate::jit::isa::IsaFlags;

/// A vector ISA with a u8·s8 dot product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Int8Isa {
    /// EVEX `vpdpbusd` on `zmm` (AVX512_VNNI).
    Avx512Vnni,
    /// VEX `vpdpbusd` on `ymm` (AVX-VNNI).
    AvxVnni,
}

impl Int8Isa {
    /// The widest the target's features allow, or `None`.
    pub fn for_target(flags: &IsaFlags) -> Option<Int8Isa> {
        if !flags.is_x86 || flags.scalarized {
            None
        } else if flags.has_avx512f && flags.has_avx512vnni {
            Some(Int8Isa::Avx512Vnni)
        } else if flags.has_avx2 && flags.has_avx_vnni {
            Some(Int8Isa::AvxVnni)
        } else {
            None
        }
    }

    /// The register file it works in.
    pub fn vectors(self) -> WideIsa {
        match self {
            Int8Isa::Avx512Vnni => WideIsa::Avx512F,
            Int8Isa::AvxVnni => WideIsa::Avx2Fma,
        }
    }

    /// i32 columns of one vector.
    pub fn lanes(self) -> usize {
        self.vectors().lanes()
    }

    pub fn name(self) -> &'static str {
        match self {
            Int8Isa::Avx512Vnni => "avx512vnni",
            Int8Isa::AvxVnni => "avx-vnni",
        }
    }
}

/// What one assembled int8 kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Int8TileShape {
    pub isa: Int8Isa,
    pub rows: usize,
    /// i32 columns: 1 to 4 vectors.
    pub cols: usize,
    pub lda_bytes: usize,
    /// Bytes between consecutive four-k groups of B (`4 · cols` of the packed panel).
    pub b_step_bytes: usize,
    pub ldc_bytes: usize,
    pub start: Start,
    /// A is s8 and B u8 (else A u8, B s8).
    pub a_signed: bool,
}

impl Int8TileShape {
    /// The production tile for leading dimensions `lda` (bytes of A per row) and `ldc` (i32).
    pub fn default_for(isa: Int8Isa, lda: usize, ldc: usize, start: Start) -> Int8TileShape {
        let cols = 2 * isa.lanes();
        Int8TileShape {
            isa,
            rows: match isa {
                Int8Isa::Avx512Vnni => 14,
                Int8Isa::AvxVnni => 6,
            },
            cols,
            lda_bytes: lda,
            b_step_bytes: 4 * cols,
            ldc_bytes: 4 * ldc,
            start,
            a_signed: false,
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} {}×{} {} (lda {} B, B groups {} B, ldc {} B, {:?})",
            if self.a_signed { "s8·u8" } else { "u8·s8" },
            self.rows,
            self.cols,
            self.isa.name(),
            self.lda_bytes,
            self.b_step_bytes,
            self.ldc_bytes,
            self.start
        )
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            what: self.describe(),
            registers: self.isa.vectors(),
            rows: self.rows,
            cols: self.cols,
            lda_bytes: self.lda_bytes,
            b_step_bytes: self.b_step_bytes,
            ldc_bytes: self.ldc_bytes,
            start: self.start,
            mask_b: false,
            finish: Default::default(),
            product: if self.a_signed {
                Product::S8U8
            } else {
                Product::U8S8
            },
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
