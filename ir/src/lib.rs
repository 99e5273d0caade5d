//! Kestrel's intermediate representation.
//!
//! A [`Graph`] is an arena of typed SSA values ([`Value`]) defined by graph inputs, constants or
//! [`Node`]s. Each node applies one [`Op`] from a closed enum; its output types are inferred when the
//! node is added. This crate knows nothing of ONNX, egg or Cranelift.

pub mod broadcast;
pub mod canon;
pub mod cost;
pub mod dot;
pub mod dtype;
pub mod graph;
pub mod infer;
pub mod op;
pub mod quant;
pub mod rewrite;
pub mod tensor;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;
pub mod types;
pub mod verify;

pub use dtype::{DType, Quant, QuantParams, F32};
pub use graph::{Constant, Graph, GraphError, GraphOutput, Node, NodeId, Value, ValueDef, ValueId};
pub use infer::{
    axis_pads, conv_output_extent, conv_pads, infer, input_arity, norm_axis, norm_axis_inclusive,
    pool_output_extent, range_len, slice_bounds, slice_extent, InferInput,
};
pub use op::*;
pub use rewrite::RewriteError;
pub use tensor::{Element, Tensor, TensorError};
pub use text::{parse, print, ParseError, PrintOptions, Printed, WeightStyle};
pub use types::{known_dims, shape_of, Dim, Shape, TensorType, MAX_RANK};
pub use verify::{dependency_graph, toposort, verify, CycleError, VerifyError, VerifyErrorKind};

/// Largest output (elements, per output) of a node that is evaluated at compile time before code
/// generation: the driver folds every node whose inputs are all constants up to this size
/// (`kestrel_passes::fold_constants::fold_for_codegen`), and the code generator checks that it
/// did (`kestrel_backends::jit::lower`), so both sides agree on which nodes get code.
pub const MAX_CODEGEN_FOLD_ELEMENTS: usize = 1 << 22;

/// The text-form name of an op.
pub fn op_name(op: &Op) -> &'static str {
    op.name()
}
