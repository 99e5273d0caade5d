//! What one GEMM is, shared by the 128-bit blocking (`super`) and the wide one
//! (`super::wide`): its extents, where B comes from, how the accumulators start.

use cranelift_codegen::ir::Value;

/// The widest packed B panel of any tile (f32: 8 columns on the 128-bit path, 16 or 32 wide,
/// all dividing it; int8: 12, 16 or 32): scratch is sized with it before the tile is chosen
/// (`super::packed_b_bound`, and the int8 convolution's bound).
pub const MAX_PANEL_COLS: usize = 64;

/// The extents of one GEMM (leading dimensions in elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldc: usize,
}

/// Where the micro-kernel reads B from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BSource {
    /// The `super::pack` layout of the tile.
    Packed,
    /// Row-major `[k, n]` with leading dimension `ldb` (elements), read in place: tiles with
    /// one-row steps only.
    Rows { ldb: usize },
}

/// The start value of the accumulators (added once, in the first k block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bias {
    /// Zero.
    None,
    /// `bias[col]` for every row: I64 pointer to `n` lane-type elements (exactly `n` are read).
    Columns(Value),
    /// `bias[row]` for every column: I64 pointer to `m` lane-type elements, indexed by the row
    /// of C (row 0 at the pointer, whatever `m_begin` is; exactly the rows computed are read).
    Rows(Value),
}

impl Bias {
    /// [`Bias::Columns`] of an optional column bias pointer.
    pub fn columns(col_bias: Option<Value>) -> Bias {
        col_bias.map_or(Bias::None, Bias::Columns)
    }
}

/// What the wide f32 kernels apply to C in their last k block before storing it
/// (`jit::asm::f32_tile::Finish`): `acc + bias[row]` (I64 pointer to the row bias, row 0 at the
/// pointer), then the bounds. Only with [`Bias::None`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowFinish {
    pub bias: Option<Value>,
    pub lower: Option<f32>,
    pub upper: Option<f32>,
}
