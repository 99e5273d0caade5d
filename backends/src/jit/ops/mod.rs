//! Op lowerings: one module per op family, each emitting the kernel of one node from its
//! [`KernelContext`] context with the emitter and the micro-kernels of `super::kernels`. This module is the
//! dispatcher: [`emit_node`] picks the lowering of a node, [`task_count`] and [`scratch_bytes`]
//! what the planner asks of it. No lowering imports the dispatcher.

pub mod arg;
pub mod attention;
pub mod conv;
pub mod conv_transpose;
pub mod dynamic_quant;
pub mod elementwise;
pub mod fused;
pub mod integer;
pub mod integer_depthwise;
pub mod matmul;
pub mod normalize;
pub mod pool;
pub mod quant;
pub mod quantized_mul;
pub mod quantized_pool;
pub mod reduce;
pub mod requantize;
pub mod resize;
pub mod scatter;
pub mod shape;
pub mod winograd;

use crate::jit::context::KernelContext;
use crate::jit::emit::Emitter;
use crate::jit::error::JitError;
use crate::jit::options::JitOptions;
use kestrel_ir::{
    ConvAttrs, GemmAttrs, Graph, Node, NodeId, Op, ResizeAttrs, ResizeMode, Tensor, ValueId,
};
use std::collections::HashMap;

/// Number of parallel tasks a node is split into: 1 unless `opts.threads > 1` and the node is a
/// convolution, matrix product or element-wise op with enough work to pay for the hand-off (see
/// each kernel). Split nodes must not fail at run time: element-wise ops with a run-time error
/// (integer division by zero) are never split.
pub fn task_count(g: &Graph, node: &Node, opts: &JitOptions) -> usize {
    if opts.threads <= 1 {
        return 1;
    }
    match node.op {
        Op::Conv(ref a) if a.integer.is_some() => integer::conv_task_count(g, node, a, opts),
        Op::Gemm(ref a) if a.integer.is_some() => integer::gemm_task_count(g, node, opts),
        Op::Conv(ref a) => conv::task_count(g, node, a, opts),
        Op::Gemm(_) | Op::MatMul => matmul::task_count(g, node, opts),
        Op::Attention { .. } => attention::task_count(g, node, opts),
        Op::ConvTranspose(ref a) => conv_transpose::task_count(g, node, a, opts),
        // f32 pools; the 8-bit max pools run as one task.
        Op::Pool(_) | Op::GlobalPool(_) if g.ty(node.inputs[0]).dtype == kestrel_ir::DType::F32 => {
            pool::task_count(g, node, opts)
        }
        // Map and cast nodes run as one task.
        ref op if op.is_elementwise() && !matches!(op, Op::Map(_) | Op::Cast { .. }) => {
            elementwise::task_count(g, node, opts)
        }
        _ => 1,
    }
}

/// Scratch bytes a node's kernel needs (for all of its `tasks` together).
pub fn scratch_bytes(
    g: &Graph,
    id: NodeId,
    node: &Node,
    consts: &HashMap<ValueId, Tensor>,
    tasks: usize,
    opts: &JitOptions,
) -> Result<usize, JitError> {
    Ok(match node.op {
        Op::Conv(
            ref a @ ConvAttrs {
                integer: Some(ref ia),
                ..
            },
        ) => integer::conv_scratch_bytes(g, node, a, ia, tasks, opts),
        Op::Gemm(GemmAttrs {
            integer: Some(ref ia),
            ..
        }) => integer::gemm_scratch_bytes(g, node, ia),
        Op::Conv(ref a) => {
            conv::scratch_bytes(g, id, node, a, consts, tasks, opts)?
                + fused::conv_extra_scratch(g, node, a, tasks)
        }
        Op::Pool(ref a) => pool::scratch_bytes(g, node, a, tasks),
        Op::QuantizedAveragePool(_) => quantized_pool::scratch_bytes(g, node),
        Op::Attention { .. } => attention::scratch_bytes(g, node, tasks),
        Op::ConvTranspose(ref a) => conv_transpose::scratch_bytes(g, node, a, consts, tasks, opts),
        _ => 0,
    })
}

/// Emits the kernel of one node.
pub fn emit_node(e: &mut Emitter, k: &mut KernelContext) -> Result<(), JitError> {
    match &k.node.op {
        Op::Unary(_) | Op::Binary(_) | Op::Map(_) | Op::Clip | Op::Where | Op::Cast { .. } => {
            elementwise::lower(e, k)
        }
        Op::Conv(
            a @ ConvAttrs {
                integer: Some(ia), ..
            },
        ) => integer::conv(e, k, a, ia),
        Op::Gemm(
            a @ GemmAttrs {
                integer: Some(ia), ..
            },
        ) => integer::gemm(e, k, a, ia),
        Op::Conv(a) if !a.epilogue.is_none() => fused::conv(e, k, a),
        Op::Conv(a) => conv::lower(e, k, a),
        Op::Gemm(a) if !a.epilogue.is_none() => fused::gemm(e, k, a),
        Op::Gemm(a) => matmul::gemm(e, k, a),
        Op::MatMul => matmul::matmul(e, k),
        Op::BatchNorm { epsilon } => normalize::batch_norm(e, k, epsilon.0),
        Op::Pool(a) => pool::pool(e, k, a),
        Op::GlobalPool(kind) => pool::global_pool(e, k, *kind),
        Op::Reduce(a) => reduce::lower(e, k, a),
        Op::Softmax { axis } => normalize::softmax(e, k, *axis, false),
        Op::Attention { scale } => attention::lower(e, k, scale.0),
        Op::LogSoftmax { axis } => normalize::softmax(e, k, *axis, true),
        Op::LayerNorm { axis, epsilon } => normalize::layer_norm(e, k, *axis, epsilon.0),
        Op::Concat { axis } => shape::concat(e, k, *axis),
        Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze | Op::Unsqueeze | Op::Identity => {
            shape::copy(e, k)
        }
        Op::Expand => shape::expand(e, k),
        Op::ConstantOfShape { value } => shape::constant_of_shape(e, k, value),
        Op::Gather { axis } if k.const_in(1).is_none() => shape::gather_runtime(e, k, *axis),
        Op::Transpose { .. }
        | Op::Slice
        | Op::Gather { .. }
        | Op::Split { .. }
        | Op::Tile
        | Op::Pad { .. }
        | Op::Resize(ResizeAttrs {
            mode: ResizeMode::Nearest,
            ..
        }) => shape::by_index(e, k),
        Op::Resize(a) => resize::lower(e, k, a),
        Op::GatherElements { .. } if k.const_in(1).is_some() => shape::by_index(e, k),
        Op::ConvTranspose(a) => conv_transpose::lower(e, k, a),
        Op::ScatterElements { axis, reduction } => {
            scatter::scatter_elements(e, k, *axis, *reduction)
        }
        Op::ScatterNd { reduction } => scatter::scatter_nd(e, k, *reduction),
        Op::Arg(a) => arg::lower(e, k, a),
        Op::GatherElements { .. }
        | Op::Trilu { .. }
        | Op::CumSum { .. }
        | Op::Hardmax { .. }
        | Op::LpNormalization { .. }
        | Op::TopK { .. } => Err(k.unsupported(format!("op {}", k.node.op.name()))),
        Op::QuantizeLinear { axis, to } => quant::quantize(e, k, *axis, *to),
        Op::DequantizeLinear { axis } => quant::dequantize(e, k, *axis),
        Op::QuantizedAdd(q) => quant::quantized_add(e, k, q),
        Op::QuantizedMul(q) => quantized_mul::quantized_mul(e, k, q),
        Op::Requantize(q) => requantize::requantize(e, k, q),
        Op::QuantizedAveragePool(q) => quantized_pool::lower(e, k, q),
        Op::DynamicQuantizeLinear => dynamic_quant::lower(e, k),
        Op::Shape { .. } | Op::Size | Op::Range => {
            Err(k.unsupported(format!("op {} with run-time inputs", k.node.op.name())))
        }
    }
}
