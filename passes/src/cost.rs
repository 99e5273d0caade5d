//! The cost model used to extract a graph from an e-graph.
//!
//! [`StaticCost`] is a static estimate: multiply-accumulates of the op plus the bytes it reads
//! and writes (weighted, since a memory pass over a tensor costs about as much as a few
//! arithmetic operations per element), plus a small per-node overhead. Fused ops are cheaper
//! than their parts because the intermediate tensors are neither written nor read back. A
//! backend can refine the estimate by implementing [`CostModel`] and handing it to the pass
//! manager in [`crate::PassContext::cost_model`]; `passes` never depends on a backend.

use kestrel_ir::cost::macs_per_output;
use kestrel_ir::{Op, ReduceKind, TensorType, UnaryOp};

/// The cost of running one node.
pub trait CostModel {
    /// Cost of `op` applied to inputs of types `ins` producing `out` (arbitrary units; only
    /// comparisons matter). Must be positive and finite.
    fn node_cost(&self, op: &Op, ins: &[&TensorType], out: &TensorType) -> f64;
}

/// MACs + bytes-moved estimate (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct StaticCost;

/// Cost of one byte read or written, relative to one multiply-accumulate.
pub const BYTE_COST: f64 = 0.5;
/// Fixed overhead of a node (a kernel call, loop setup).
pub const NODE_COST: f64 = 64.0;

/// Elements of `t` as f64 (no overflow on absurd extents; 1024 when unknown).
fn numel(t: &TensorType) -> f64 {
    match t.dims() {
        Some(d) => d.iter().map(|&x| x as f64).product(),
        None => 1024.0,
    }
}

fn bytes(t: &TensorType) -> f64 {
    numel(t) * t.dtype.size() as f64
}

/// Arithmetic per element of a unary op (a polynomial for the transcendental ones), alone or as
/// a fused epilogue's activation.
pub fn unary_flops(u: UnaryOp) -> f64 {
    match u {
        UnaryOp::Relu
        | UnaryOp::Neg
        | UnaryOp::Abs
        | UnaryOp::Clip { .. }
        | UnaryOp::LeakyRelu { .. }
        | UnaryOp::Elu { .. }
        | UnaryOp::Selu { .. } => 1.0,
        UnaryOp::HardSwish | UnaryOp::HardSigmoid { .. } => 4.0,
        UnaryOp::Sigmoid | UnaryOp::Erf | UnaryOp::Exp | UnaryOp::Log | UnaryOp::Tanh => 12.0,
        UnaryOp::Silu => 13.0,
        UnaryOp::Gelu { .. } => 16.0,
        _ => 2.0,
    }
}

/// Arithmetic per element of a fused epilogue's activation (0 for none).
pub fn activation_flops(act: Option<UnaryOp>) -> f64 {
    act.map_or(0.0, unary_flops)
}

impl CostModel for StaticCost {
    fn node_cost(&self, op: &Op, ins: &[&TensorType], out: &TensorType) -> f64 {
        let moved: f64 = ins.iter().map(|t| bytes(t)).sum::<f64>() + bytes(out);
        let on = numel(out);
        let compute = match op {
            Op::Conv(a) => {
                let w = ins.get(1).map(|t| numel(t)).unwrap_or(1.0);
                let m = out.shape.get(1).and_then(|d| d.known()).unwrap_or(1) as f64;
                // Weights of unknown shape: their guessed elements over the output channels.
                let per_output = macs_per_output(op, ins).map_or(w / m.max(1.0), |k| k as f64);
                // A channel scale multiplies the weights at run time (read + write them).
                let scale = if a.epilogue.channel_scale {
                    w * (1.0 + 8.0 * BYTE_COST)
                } else {
                    0.0
                };
                on * per_output + on * activation_flops(a.epilogue.act) + scale
            }
            Op::Gemm(a) => {
                let k = macs_per_output(op, ins).unwrap_or(1) as f64;
                on * k + on * activation_flops(a.epilogue.act)
            }
            Op::MatMul => on * macs_per_output(op, ins).unwrap_or(1) as f64,
            // Same arithmetic as the epilogue form, so fusing saves exactly the memory traffic
            // and the node overhead.
            Op::Unary(u) => on * unary_flops(*u),
            Op::Binary(_) => on,
            Op::Map(p) => {
                on * p
                    .code
                    .iter()
                    .map(|i| match i {
                        kestrel_ir::MapInstr::Unary(u, _) => unary_flops(*u),
                        kestrel_ir::MapInstr::Binary(..) => 1.0,
                        _ => 0.0,
                    })
                    .sum::<f64>()
            }
            Op::Reduce(r) if r.kind == ReduceKind::Mean => {
                ins.first().map(|t| numel(t)).unwrap_or(on)
            }
            Op::LayerNorm { .. } | Op::Softmax { .. } => on * 6.0,
            // Both products, the scale and the softmax of the scores; the scores never reach
            // memory.
            Op::Attention { .. } => {
                let dim = |i: usize, from_end: usize| {
                    ins.get(i)
                        .and_then(|t| t.shape.len().checked_sub(from_end))
                        .and_then(|a| ins[i].shape[a].known())
                        .unwrap_or(1) as f64
                };
                let (d, n, dv) = (dim(0, 1), dim(1, 1), dim(2, 1));
                on / dv.max(1.0) * n * (d + dv + 7.0)
            }
            // Views: free in the backend (no data moves).
            _ if op.is_view() => return 1.0,
            _ => on,
        };
        NODE_COST + compute + BYTE_COST * moved
    }
}
