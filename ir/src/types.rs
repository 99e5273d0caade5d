//! Dimensions, shapes and tensor types.

use crate::dtype::{DType, Quant};
use smallvec::SmallVec;
use std::fmt;
use std::sync::Arc;

/// Highest tensor rank the IR accepts (numpy's own limit). Real models stay far below it; inference
/// refuses ranks above it, which keeps every per-axis loop and allocation bounded.
pub const MAX_RANK: usize = 64;

/// One dimension of a shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A known extent.
    Known(usize),
    /// A named symbolic extent (`batch`, `N`): equal names denote equal extents.
    Sym(Arc<str>),
    /// An extent that inference could not determine (printed `?`).
    Unknown,
}

impl Dim {
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(Arc::from(name))
    }

    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Self {
        Dim::Known(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A shape: the list of dimensions, outermost first. Rank 0 is a scalar.
pub type Shape = SmallVec<[Dim; 6]>;

/// Builds a shape of known extents.
pub fn shape_of(dims: &[usize]) -> Shape {
    dims.iter().map(|&d| Dim::Known(d)).collect()
}

/// The known extents of a shape, or `None` if any dimension is symbolic or unknown.
pub fn known_dims(shape: &[Dim]) -> Option<Vec<usize>> {
    shape.iter().map(Dim::known).collect()
}

/// The type of an SSA value: element type, shape, and quantization parameters for quantized integers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
    /// Present only on integer values that represent quantized reals.
    pub quant: Option<Quant>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Shape) -> Self {
        TensorType {
            dtype,
            shape,
            quant: None,
        }
    }

    pub fn known(dtype: DType, dims: &[usize]) -> Self {
        TensorType::new(dtype, shape_of(dims))
    }

    pub fn scalar(dtype: DType) -> Self {
        TensorType::new(dtype, Shape::new())
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Known extents, or `None` when a dimension is symbolic or unknown.
    pub fn dims(&self) -> Option<Vec<usize>> {
        known_dims(&self.shape)
    }

    /// Number of elements when every dimension is known and the count fits in `usize`.
    pub fn numel(&self) -> Option<usize> {
        self.dims()?
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }

    pub fn with_quant(mut self, quant: Option<Quant>) -> Self {
        self.quant = quant;
        self
    }
}

impl fmt::Display for TensorType {
    /// Prints `f32[1,3,224,224]`; quantization parameters are printed by the text printer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}
