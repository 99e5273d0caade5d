//! Post-training int8 quantization as a graph rewrite: QuantizeLinear/DequantizeLinear (QDQ)
//! pairs inserted around Conv, Gemm and MatMul with the parameters of the int8 scheme
//! (`docs/QUANTIZATION.md`).
//!
//! The steps, each usable alone (the `kestrel quantize` command calls them one by one; the
//! `quantize` pass of a pipeline runs all three):
//! - [`plan`]: which nodes can be quantized ([`Layer`]s) and which activation tensors need a
//!   calibrated range ([`Plan::calibration_tensors`]);
//! - the ranges of those tensors come from outside: [`Ranges`] is plain data, computed by the
//!   driver's calibration (`kestrel::calibrate`), which a pipeline reaches through the
//!   [`Calibrator`] in [`crate::PassContext::calibrator`];
//! - [`apply`]: inserts the QDQ pairs and quantizes weights and biases ([`params`] holds the
//!   arithmetic).

pub mod params;
mod pass;
mod plan;
pub mod qat;
mod rewrite;
pub mod stats;

pub use pass::{quantize_calibrated, Calibrator, Method, Quantize};
pub use plan::{plan, Layer, LayerOp, Plan};
pub use rewrite::{apply, Applied, QuantizeOptions, Range, Ranges};

use kestrel_ir::ValueId;

/// Why a graph could not be quantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(
        "nothing to quantize: no Conv, Gemm or MatMul with a float activation input and constant \
         float weights{}", if *.excluded > 0 { format!(" is left once {} excluded", .excluded) } else { String::new() }
    )]
    NothingToQuantize { excluded: usize },
    #[error("--exclude {name:?}: no quantizable node has that name; quantizable nodes: {valid}")]
    UnknownLayer { name: String, valid: String },
    #[error("no calibrated range for tensor {tensor} ({value})")]
    MissingRange { tensor: String, value: ValueId },
    #[error("tensor {tensor}: calibrated range [{min}, {max}] is not finite")]
    BadRange { tensor: String, min: f32, max: f32 },
    #[error("{0}")]
    Calibration(String),
    #[error("quantization-aware training: {0}")]
    Qat(String),
    #[error("{0}")]
    Graph(#[from] kestrel_ir::GraphError),
    #[error("{0}")]
    Rewrite(#[from] kestrel_ir::RewriteError),
}
