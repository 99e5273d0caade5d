//! `fold-constants`: replaces computations on constants by their results.
//!
//! Matches, visiting nodes in order (so chains fold in one run):
//! - `shape(x)` when the extents it returns (after its `start`/`end` slice) are all known, and
//!   `size(x)` when every extent of `x` is known — no evaluator needed;
//! - `gather{axis=0}(shape(x), const indices)` when the selected extents are known (this folds
//!   `x.shape[i]` of a partially-known shape, e.g. a channel count behind a dynamic batch);
//! - any other node whose inputs are all constants with data, through [`PassContext::evaluator`],
//!   when every output has a known shape of at most `max_elements` elements (default
//!   [`PassContext::max_fold_elements`]) and no quantization parameters. `quantize_linear` and
//!   `dequantize_linear`, and nodes whose outputs carry quantization parameters, are left alone
//!   unless `fold_quant=true`, so quantized weights stay quantized for the integer passes.
//!
//! [`fold_for_codegen`] is the fold the driver runs before code generation, whatever the
//! pipeline: every node with constant inputs and outputs of at most
//! [`kestrel_ir::MAX_CODEGEN_FOLD_ELEMENTS`] elements, quantized or not. The code generator
//! refuses a graph where such a node is left.
//!
//! Before a node is examined its output types are re-inferred from its (possibly newly constant)
//! inputs, so a `reshape` whose shape operand just folded gets its now-known output type, and so
//! on downstream. The evaluator's result must have exactly the inferred dtype and shape, otherwise
//! the node is left alone; an evaluator that declines (`None`) or fails leaves the node too.
//! Folded nodes are removed (with constants nothing uses any more); the new constants are named
//! after the folded node (`<node>.folded`, made unique).

use crate::registry::Options;
use crate::util::{node_label, ConstNames};
use crate::{Pass, PassContext, PassError};
use kestrel_ir::{shape_of, Dim, Graph, NodeId, Op, Tensor, ValueId};

pub struct FoldConstants {
    /// Overrides [`PassContext::max_fold_elements`].
    pub max_elements: Option<usize>,
    /// Also fold `quantize_linear` / `dequantize_linear` of constants and nodes whose outputs carry
    /// quantization parameters (the folded constant's type then has none).
    pub fold_quant: bool,
}

impl FoldConstants {
    pub(crate) fn from_options(opts: &Options) -> Result<Self, PassError> {
        Ok(FoldConstants {
            max_elements: opts.get("max_elements")?,
            fold_quant: opts.get("fold_quant")?.unwrap_or(false),
        })
    }
}

/// The extents `shape{start, end}` returns for a value of shape `dims` (ONNX-15 clamping).
pub fn shape_slice(dims: &[Dim], start: i64, end: Option<i64>) -> &[Dim] {
    let rank = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let s = clamp(start);
    let e = end.map_or(rank as usize, clamp);
    if s >= e {
        &[]
    } else {
        &dims[s..e]
    }
}

fn known_i64(dims: &[Dim]) -> Option<Vec<i64>> {
    dims.iter().map(|d| d.known().map(|n| n as i64)).collect()
}

impl FoldConstants {
    /// The constant outputs of node `id`, if it folds.
    fn fold(&self, g: &Graph, id: NodeId, cx: &PassContext, limit: usize) -> Option<Vec<Tensor>> {
        let node = g.node(id);
        match &node.op {
            Op::Shape { start, end } => {
                let dims = shape_slice(&g.ty(node.inputs[0]).shape, *start, *end);
                let v = known_i64(dims)?;
                return Some(vec![Tensor::from_vec(vec![v.len()], v)]);
            }
            Op::Size => {
                let n = g.ty(node.inputs[0]).numel()?;
                return Some(vec![Tensor::scalar(n as i64)]);
            }
            Op::Gather { axis } => {
                if let Some(t) = self.fold_gather_of_shape(g, node.inputs[0], node.inputs[1], *axis)
                {
                    return Some(vec![t]);
                }
            }
            Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. } if !self.fold_quant => {
                return None
            }
            _ => {}
        }
        if node.inputs.is_empty() {
            return None;
        }
        let inputs: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|&v| g.const_data(v))
            .collect::<Option<_>>()?;
        for &o in &node.outputs {
            let ty = g.ty(o);
            if (ty.quant.is_some() && !self.fold_quant) || ty.numel()? > limit {
                return None;
            }
        }
        let outs = cx.evaluator.as_ref()?.eval(&node.op, &inputs)?.ok()?;
        let matches = outs.len() == node.outputs.len()
            && outs.iter().zip(&node.outputs).all(|(t, &o)| {
                let ty = g.ty(o);
                t.dtype() == ty.dtype && shape_of(t.dims()) == ty.shape
            });
        matches.then_some(outs)
    }

    /// `gather{axis=0}(shape(x), indices)` with constant indices selecting known extents.
    fn fold_gather_of_shape(
        &self,
        g: &Graph,
        data: ValueId,
        indices: ValueId,
        axis: i64,
    ) -> Option<Tensor> {
        if axis != 0 && axis != -1 {
            return None;
        }
        let Op::Shape { start, end } = &g.node(g.producer(data)?).op else {
            return None;
        };
        let src = g.node(g.producer(data)?).inputs[0];
        let dims = shape_slice(&g.ty(src).shape, *start, *end);
        let idx = g.const_data(indices)?;
        if !idx.dtype().is_int() {
            return None;
        }
        let n = dims.len() as i64;
        let vals: Vec<i64> = idx
            .to_i64_vec()
            .into_iter()
            .map(|i| {
                let i = if i < 0 { i + n } else { i };
                (0..n)
                    .contains(&i)
                    .then(|| dims[i as usize].known().map(|d| d as i64))
                    .flatten()
            })
            .collect::<Option<_>>()?;
        Some(Tensor::from_vec(idx.dims().to_vec(), vals))
    }
}

/// The fold that precedes code generation (see the module documentation): `fold-constants` with
/// `fold_quant=true` and the limit [`kestrel_ir::MAX_CODEGEN_FOLD_ELEMENTS`]. Needs an evaluator in
/// `cx` for anything beyond shape queries.
pub fn fold_for_codegen(g: &mut Graph, cx: &PassContext) -> Result<bool, PassError> {
    FoldConstants {
        max_elements: Some(kestrel_ir::MAX_CODEGEN_FOLD_ELEMENTS),
        fold_quant: true,
    }
    .run(g, cx)
}

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold-constants"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<bool, PassError> {
        let limit = self.max_elements.unwrap_or(cx.max_fold_elements);
        let mut names = ConstNames::new(g);
        let mut changed = false;
        for ni in 0..g.nodes.len() {
            let id = NodeId(ni as u32);
            changed |= g
                .reinfer_node(id)
                .map_err(|e| PassError::failed(self.name(), e))?;
            let Some(outs) = self.fold(g, id, cx, limit) else {
                continue;
            };
            let base = format!("{}.folded", node_label(g, id));
            let outputs = g.node(id).outputs.clone();
            for (o, t) in outputs.into_iter().zip(outs) {
                let c = names.add(g, &base, t);
                g.replace_all_uses(o, c);
            }
            changed = true;
        }
        if changed {
            g.remove_dead_nodes();
        }
        Ok(changed)
    }
}
