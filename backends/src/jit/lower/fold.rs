//! Nodes the JIT evaluates at compile time (with the reference interpreter) instead of emitting
//! code for them.

use crate::jit::error::JitError;
use kestrel_ir::{DType, Graph, Node, NodeId, Op, Tensor, ValueDef, ValueId};
use std::collections::HashMap;

/// Largest tensor folded at compile time (elements); bigger all-constant nodes are compiled.
const MAX_FOLD_ELEMS: usize = 1 << 22;

/// The values of `g` known at compile time, as [`lower`] computes them: the constants with data,
/// and the outputs of every node it evaluates at compile time with the interpreter (`Shape` and
/// `Size`, and nodes whose inputs are all known and whose outputs have at most
/// [`MAX_FOLD_ELEMS`] elements). Such nodes emit no code.
pub fn compile_time_values(g: &Graph) -> Result<HashMap<ValueId, Tensor>, JitError> {
    let mut consts: HashMap<ValueId, Tensor> = HashMap::new();
    for (i, v) in g.values.iter().enumerate() {
        if let ValueDef::Const(c) = &v.def {
            if let Some(t) = &c.data {
                consts.insert(ValueId(i as u32), t.clone());
            }
        }
    }
    for (i, node) in g.nodes.iter().enumerate() {
        let out_elems: usize = node
            .outputs
            .iter()
            .map(|&v| g.ty(v).numel().unwrap_or(usize::MAX))
            .sum();
        let all_const = node.inputs.iter().all(|v| consts.contains_key(v));
        let shape_only = matches!(node.op, Op::Shape { .. } | Op::Size);
        if shape_only || (all_const && out_elems <= MAX_FOLD_ELEMS) {
            let outs = fold(g, NodeId(i as u32), node, &consts)?;
            for (&v, t) in node.outputs.iter().zip(outs) {
                consts.insert(v, t);
            }
        }
    }
    Ok(consts)
}

/// Whether [`lower`] evaluates `node` at compile time (its outputs are in `consts`, the result of
/// [`compile_time_values`]).
pub fn is_folded(node: &Node, consts: &HashMap<ValueId, Tensor>) -> bool {
    !node.outputs.is_empty() && node.outputs.iter().all(|v| consts.contains_key(v))
}

/// Evaluates a node at compile time with the reference interpreter.
fn fold(
    g: &Graph,
    id: NodeId,
    node: &Node,
    consts: &HashMap<ValueId, Tensor>,
) -> Result<Vec<Tensor>, JitError> {
    let fail = |reason: String| JitError::Fold {
        node: g.describe_node(id),
        reason,
    };
    let args: Vec<Tensor> = match node.op {
        // Shape and Size read only the type; give the interpreter a zero-sized stand-in.
        Op::Shape { .. } | Op::Size => {
            let ty = g.ty(node.inputs[0]);
            let dims = ty.dims().unwrap_or_default();
            let n: usize = dims.iter().product();
            vec![
                Tensor::from_bytes(DType::U8, dims, bytes::Bytes::from(vec![0u8; n]))
                    .map_err(|e| fail(e.to_string()))?,
            ]
        }
        _ => node
            .inputs
            .iter()
            .map(|v| {
                consts
                    .get(v)
                    .cloned()
                    .ok_or_else(|| fail("input is not constant".into()))
            })
            .collect::<Result<_, _>>()?,
    };
    let refs: Vec<&Tensor> = args.iter().collect();
    crate::interp::eval_op(&node.op, &refs).map_err(|e| fail(e.to_string()))
}
