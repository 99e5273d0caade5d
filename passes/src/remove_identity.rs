//! `remove-identity`: removes nodes that return their (first) input unchanged.
//!
//! Matches, when the output type equals the input type exactly (dtype, shape, quantization):
//! - `identity` (Dropout imports as identity);
//! - `reshape`, `flatten`, `squeeze`, `unsqueeze`, `expand`: they preserve element order, so equal
//!   shapes mean equal tensors (shapes compare symbolically; an unknown extent `?` never matches);
//! - `transpose` with the identity permutation;
//! - `cast` to the input's own dtype;
//! - `concat` of a single input;
//! - `slice` whose constant starts/ends/axes/steps cover every axis fully with step 1;
//! - `pad` whose constant pads are all zero (any mode).
//!
//! Uses of the output are redirected to the input (defined earlier, so order stays topological)
//! and the node is removed. Numerics are unchanged.

use crate::util::const_ints;
use crate::{Pass, PassContext, PassError};
use kestrel_ir::{Dim, Graph, NodeId, Op};

pub struct RemoveIdentity;

fn no_unknown(dims: &[Dim]) -> bool {
    dims.iter().all(|d| !matches!(d, Dim::Unknown))
}

/// Whether node `id` returns its first input unchanged.
pub fn is_noop(g: &Graph, id: NodeId) -> bool {
    let node = g.node(id);
    if node.outputs.len() != 1 || node.inputs.is_empty() {
        return false;
    }
    let x = node.inputs[0];
    let (tx, ty) = (g.ty(x), g.ty(node.outputs[0]));
    if tx != ty {
        return false;
    }
    match &node.op {
        Op::Identity => true,
        op if op.is_reshape() => no_unknown(&tx.shape),
        Op::Expand => no_unknown(&tx.shape),
        Op::Transpose { perm } => perm.iter().enumerate().all(|(i, &p)| i == p),
        Op::Cast { to } => *to == tx.dtype,
        Op::Concat { .. } => node.inputs.len() == 1,
        Op::Slice => slice_is_full(g, id),
        Op::Pad { .. } => node
            .inputs
            .get(1)
            .and_then(|&p| const_ints(g, p))
            .is_some_and(|p| p.iter().all(|&v| v == 0)),
        _ => false,
    }
}

/// `slice(data, starts, ends, [axes], [steps])` with constant operands selecting everything.
fn slice_is_full(g: &Graph, id: NodeId) -> bool {
    let node = g.node(id);
    let Some(dims) = g.ty(node.inputs[0]).dims() else {
        return false;
    };
    let rank = dims.len() as i64;
    let get = |k: usize| node.inputs.get(k).map(|&v| const_ints(g, v));
    let (Some(Some(starts)), Some(Some(ends))) = (get(1), get(2)) else {
        return false;
    };
    let axes = match get(3) {
        None => (0..starts.len() as i64).collect(),
        Some(Some(a)) => a,
        Some(None) => return false,
    };
    let steps = match get(4) {
        None => vec![1; starts.len()],
        Some(Some(s)) => s,
        Some(None) => return false,
    };
    if axes.len() != starts.len() || ends.len() != starts.len() || steps.len() != starts.len() {
        return false;
    }
    (0..starts.len()).all(|k| {
        let a = if axes[k] < 0 { axes[k] + rank } else { axes[k] };
        if !(0..rank).contains(&a) || steps[k] != 1 {
            return false;
        }
        let d = dims[a as usize] as i64;
        let clamp = |v: i64| (if v < 0 { v.saturating_add(d) } else { v }).clamp(0, d);
        clamp(starts[k]) == 0 && clamp(ends[k]) == d
    })
}

impl Pass for RemoveIdentity {
    fn name(&self) -> &'static str {
        "remove-identity"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<bool, PassError> {
        let mut changed = false;
        for ni in 0..g.nodes.len() {
            let id = NodeId(ni as u32);
            if is_noop(g, id) {
                let (x, y) = (g.node(id).inputs[0], g.node(id).outputs[0]);
                changed |= g.replace_all_uses(y, x) > 0;
            }
        }
        if changed {
            g.remove_dead_nodes();
        }
        Ok(changed)
    }
}
