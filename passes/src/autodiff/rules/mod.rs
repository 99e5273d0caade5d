//! Gradient rules, one file per op family. A rule receives the forward node (already in the
//! training graph), the gradient of its output and which inputs need a gradient, and returns
//! one optional gradient per input, of that input's type, written in ordinary IR ops.

mod conv;
mod elementwise;
mod linear;
mod norm;
mod pool;
pub(crate) mod quant;
mod reduce;
mod shape;
mod softmax;

use super::build::Builder;
use super::AutodiffError;
use kestrel_ir::{Node, Op, ValueId};

/// One entry per node input: its gradient, or `None` where none was asked for or exists.
pub(crate) type Grads = Vec<Option<ValueId>>;

/// The gradients of `n`'s inputs given `dy`, the gradient of its (single) output.
pub(crate) fn differentiate(
    b: &mut Builder,
    n: &Node,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads, AutodiffError> {
    match &n.op {
        Op::Unary(u) => elementwise::unary(b, *u, n, dy),
        Op::Binary(op) => elementwise::binary(b, *op, n, dy, wants),
        Op::Where => elementwise::where_(b, n, dy, wants),
        Op::Conv(a) => conv::conv(b, a, n, dy, wants),
        Op::Gemm(a) => linear::gemm(b, a, n, dy, wants),
        Op::MatMul => linear::matmul(b, n, dy, wants),
        Op::Pool(a) => pool::pool(b, a, n, dy),
        Op::GlobalPool(kind) => pool::global_pool(b, *kind, n, dy),
        Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze | Op::Unsqueeze | Op::Identity => {
            shape::reshape_like(b, n, dy)
        }
        Op::Transpose { perm } => shape::transpose(b, perm, dy),
        Op::Concat { axis } => shape::concat(b, *axis, n, dy, wants),
        Op::Slice => shape::slice(b, n, dy),
        Op::Gather { axis } => shape::gather(b, *axis, n, dy),
        Op::Reduce(a) => reduce::reduce(b, a, n, dy),
        Op::Softmax { .. } => softmax::softmax(b, n, false, dy),
        Op::LogSoftmax { .. } => softmax::softmax(b, n, true, dy),
        Op::BatchNorm { epsilon } => norm::batchnorm(b, epsilon.0, n, dy, wants),
        Op::LayerNorm { axis, epsilon } => norm::layer_norm(b, *axis, epsilon.0, n, dy, wants),
        _ => Err(b.no_rule()),
    }
}

/// Whether input `slot` of `op` can carry a trained parameter: every slot but the ones that
/// hold shapes, indices, bounds or (BatchNorm eval mode) running statistics.
pub(crate) fn trainable_slot(op: &Op, slot: usize) -> bool {
    match op {
        Op::BatchNorm { .. } => slot <= 2,
        // Scales and zero points are the quantizer's, not trained (docs/TRAINING.md).
        Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. } => slot == 0,
        Op::Reshape { .. }
        | Op::Expand
        | Op::Tile
        | Op::Slice
        | Op::Squeeze
        | Op::Unsqueeze
        | Op::Pad { .. }
        | Op::Clip
        | Op::Resize(_)
        | Op::Gather { .. }
        | Op::ScatterElements { .. }
        | Op::GatherElements { .. }
        | Op::Split { .. }
        | Op::Reduce(_) => slot == 0,
        _ => true,
    }
}
