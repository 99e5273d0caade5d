//! What the lowering knows at compile time: the graph's constants. Evaluating nodes at compile
//! time is the driver's job (`kestrel_passes::fold_constants::fold_for_codegen`); the lowering
//! checks that it was done ([`check_folded`]), so no node is silently evaluated by two paths.

use crate::jit::error::JitError;
use kestrel_ir::{Graph, Node, Op, Tensor, ValueDef, ValueId, MAX_CODEGEN_FOLD_ELEMENTS};
use std::collections::HashMap;

/// The constants of `g` that have data (elided constants are refused where they are read).
pub fn constant_values(g: &Graph) -> HashMap<ValueId, Tensor> {
    let mut consts = HashMap::new();
    for (i, v) in g.values.iter().enumerate() {
        if let ValueDef::Const(c) = &v.def {
            if let Some(t) = &c.data {
                consts.insert(ValueId(i as u32), t.clone());
            }
        }
    }
    consts
}

/// Whether the fold before code generation evaluates `node`: a shape query (`Shape`, `Size`), or
/// a node whose inputs are all constants with data and whose every output has at most
/// [`MAX_CODEGEN_FOLD_ELEMENTS`] elements.
pub fn should_be_folded(g: &Graph, node: &Node) -> bool {
    if matches!(node.op, Op::Shape { .. } | Op::Size) {
        return true;
    }
    !node.inputs.is_empty()
        && node.inputs.iter().all(|&v| g.const_data(v).is_some())
        && node.outputs.iter().all(|&v| {
            g.ty(v)
                .numel()
                .is_some_and(|n| n <= MAX_CODEGEN_FOLD_ELEMENTS)
        })
}

/// Fails on the first node [`should_be_folded`] says the driver's fold left in the graph.
pub fn check_folded(g: &Graph) -> Result<(), JitError> {
    for (i, node) in g.nodes.iter().enumerate() {
        if should_be_folded(g, node) {
            return Err(JitError::NotFolded {
                node: g.describe_node(kestrel_ir::NodeId(i as u32)),
            });
        }
    }
    Ok(())
}
