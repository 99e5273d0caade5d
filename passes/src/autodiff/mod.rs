//! Reverse-mode automatic differentiation as a graph-to-graph transformation.
//!
//! [`training_graph`] turns a forward graph, a choice of parameters and a [`Loss`] into one
//! graph that computes the loss, the forward outputs and the gradient of the loss with respect
//! to every parameter, in ordinary IR ops (so the interpreter checks it and any backend can
//! compile it). The parameters become graph inputs, so a training loop feeds updated weights
//! without rebuilding the graph. Rules per op family are in [`rules`]; the contract of each is
//! in its doc comment and in docs/TRAINING.md.

mod build;
mod loss;
mod rules;

pub use loss::{Loss, LossTerm};

use build::Builder;
use kestrel_ir::{DType, Graph, GraphError, NodeId, Tensor, ValueDef, ValueId};
use std::collections::HashMap;

/// Which constants of the forward graph are trained.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ParamSelection {
    /// Every float constant used in a slot that can hold a parameter (weights, biases, scales;
    /// not shapes, indices or BatchNorm running statistics).
    #[default]
    FloatConstants,
    /// The float constants with these names, in this order.
    Named(Vec<String>),
}

/// A trained parameter of a [`TrainingGraph`].
#[derive(Clone, Debug)]
pub struct Param {
    /// The constant's name in the forward graph (also the training graph input's name).
    pub name: String,
    /// The training graph input that receives its current value.
    pub input: ValueId,
    /// Position of that input in `graph.inputs`.
    pub input_index: usize,
    /// Position of its gradient (same type as the parameter) in `graph.outputs`.
    pub grad_output: usize,
    /// Its value in the forward graph.
    pub init: Tensor,
}

/// The graph [`training_graph`] builds.
///
/// Inputs, in order: the forward graph's inputs (`0..forward_inputs`), the parameters
/// (`params[i].input_index`), the loss' extra inputs (`loss_inputs`). Outputs, in order: the
/// loss (a scalar of the logits' float type) at 0, the forward graph's outputs
/// (`1..=forward_outputs`), the gradients (`params[i].grad_output`).
#[derive(Clone, Debug)]
pub struct TrainingGraph {
    pub graph: Graph,
    pub forward_inputs: usize,
    pub forward_outputs: usize,
    pub params: Vec<Param>,
    /// Name and position in `graph.inputs` of each extra loss input (`labels`, `targets`,
    /// `teacher_logits`).
    pub loss_inputs: Vec<(String, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutodiffError {
    /// A node on the path from a parameter to the loss has no gradient rule for that input.
    #[error("{node}: no gradient rule for input {input}")]
    NoRule { node: String, input: usize },
    /// A node's rule exists but not for these attributes or types.
    #[error("{node}: gradient not supported: {reason}")]
    Unsupported { node: String, reason: String },
    #[error("parameter {0:?} is not a float constant of the graph")]
    UnknownParam(String),
    #[error("the graph has no parameter to train")]
    NoParams,
    #[error("loss: {0}")]
    Loss(String),
    #[error("building the training graph: {0}")]
    Graph(#[from] GraphError),
}

impl Builder<'_> {
    fn no_rule(&self) -> AutodiffError {
        self.no_rule_for_input(0)
    }

    fn no_rule_for_input(&self, input: usize) -> AutodiffError {
        AutodiffError::NoRule {
            node: self.node_desc.clone(),
            input,
        }
    }
}

fn is_float_const(g: &Graph, v: ValueId) -> bool {
    matches!(g.value(v).def, ValueDef::Const(_))
        && matches!(g.ty(v).dtype, DType::F32 | DType::F64)
        && g.const_data(v).is_some()
}

/// The parameters `sel` picks, as forward value ids in the order they become inputs.
fn select_params(forward: &Graph, sel: &ParamSelection) -> Result<Vec<ValueId>, AutodiffError> {
    match sel {
        ParamSelection::FloatConstants => {
            let mut picked = vec![false; forward.values.len()];
            for n in &forward.nodes {
                for (slot, &v) in n.inputs.iter().enumerate() {
                    if is_float_const(forward, v) && rules::trainable_slot(&n.op, slot) {
                        picked[v.index()] = true;
                    }
                }
            }
            Ok((0..forward.values.len())
                .filter(|&i| picked[i])
                .map(|i| ValueId(i as u32))
                .collect())
        }
        ParamSelection::Named(names) => names
            .iter()
            .map(|name| {
                (0..forward.values.len())
                    .map(|i| ValueId(i as u32))
                    .find(|&v| {
                        is_float_const(forward, v)
                            && matches!(&forward.value(v).def, ValueDef::Const(c) if &c.name == name)
                    })
                    .ok_or_else(|| AutodiffError::UnknownParam(name.clone()))
            })
            .collect(),
    }
}

/// Builds the training graph of `forward` for `loss`, training the parameters `params` picks.
///
/// Requires known extents everywhere (bind symbolic dims, such as the batch, first) and a float
/// (f32 or f64) loss output. Fails, naming the node, when a node between a parameter and the
/// loss has no gradient rule; nodes no parameter reaches need none.
pub fn training_graph(
    forward: &Graph,
    params: &ParamSelection,
    loss: &Loss,
) -> Result<TrainingGraph, AutodiffError> {
    let param_ids = select_params(forward, params)?;
    if param_ids.is_empty() {
        return Err(AutodiffError::NoParams);
    }
    if loss.terms.is_empty() {
        return Err(AutodiffError::Loss("no loss term".into()));
    }
    let logits_fwd = forward
        .outputs
        .get(loss.output)
        .ok_or_else(|| AutodiffError::Loss(format!("the graph has no output {}", loss.output)))?
        .value;
    let logits_ty = forward.ty(logits_fwd).clone();
    let dtype = logits_ty.dtype;
    if !matches!(dtype, DType::F32 | DType::F64) {
        return Err(AutodiffError::Loss(format!(
            "the logits are {dtype:?}, not f32 or f64"
        )));
    }

    let mut g = Graph::new(format!("{}.train", forward.name));
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for &v in &forward.inputs {
        let name = forward
            .value(v)
            .name
            .clone()
            .unwrap_or_else(|| format!("input{}", v.0));
        map.insert(v, g.add_input(name, forward.ty(v).clone()));
    }
    let mut out_params = Vec::with_capacity(param_ids.len());
    for &v in &param_ids {
        let ValueDef::Const(c) = &forward.value(v).def else {
            unreachable!("selected a non-constant")
        };
        let input_index = g.inputs.len();
        let input = g.add_input(c.name.clone(), forward.ty(v).clone());
        map.insert(v, input);
        out_params.push(Param {
            name: c.name.clone(),
            input,
            input_index,
            grad_output: 0,
            init: c.data.clone().expect("float constants with data only"),
        });
    }
    let mut loss_inputs = Vec::new();
    let mut extra = Vec::with_capacity(loss.terms.len());
    for (_, t) in &loss.terms {
        let (name, ty) = t.input(&logits_ty);
        let existing = loss_inputs
            .iter()
            .find(|(n, _): &&(String, usize)| n == name)
            .map(|&(_, i)| i);
        let index = existing.unwrap_or_else(|| {
            let i = g.inputs.len();
            g.add_input(name, ty);
            loss_inputs.push((name.to_string(), i));
            i
        });
        extra.push(g.inputs[index]);
    }
    for (i, value) in forward.values.iter().enumerate() {
        let v = ValueId(i as u32);
        if let ValueDef::Const(c) = &value.def {
            if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(v) {
                slot.insert(match &c.data {
                    Some(t) => g.add_const(c.name.clone(), t.clone()),
                    None => g.add_elided_const(c.name.clone(), value.ty.clone()),
                });
            }
        }
    }
    for n in &forward.nodes {
        let inputs: Vec<ValueId> = n.inputs.iter().map(|v| map[v]).collect();
        let outs = g.add_node(n.op.clone(), &inputs, n.name.clone())?;
        for (o, no) in n.outputs.iter().zip(outs) {
            map.insert(*o, no);
        }
    }
    let forward_nodes = forward.nodes.len();
    let logits = map[&logits_fwd];

    // Values that depend on a parameter through float data.
    let mut requires = vec![false; g.values.len()];
    for p in &out_params {
        requires[p.input.index()] = true;
    }
    for n in &g.nodes {
        if n.inputs.iter().any(|v| requires[v.index()]) {
            for &o in &n.outputs {
                requires[o.index()] = matches!(g.ty(o).dtype, DType::F32 | DType::F64);
            }
        }
    }

    let mut b = Builder {
        g: &mut g,
        dtype,
        node_desc: "loss".into(),
        tag: "loss".into(),
    };
    let mut loss_value = None;
    let mut seed = None;
    for ((weight, t), &x) in loss.terms.iter().zip(&extra) {
        let (l, d) = loss::term(&mut b, t, logits, x)?;
        let (l, d) = (b.scale(l, *weight)?, b.scale(d, *weight)?);
        loss_value = Some(match loss_value {
            Some(acc) => b.add(acc, l)?,
            None => l,
        });
        seed = Some(match seed {
            Some(acc) => b.add(acc, d)?,
            None => d,
        });
    }

    let mut adjoint: HashMap<ValueId, ValueId> = HashMap::new();
    adjoint.insert(logits, seed.expect("at least one term"));
    for i in (0..forward_nodes).rev() {
        let node = b.g.nodes[i].clone();
        let grads_out: Vec<Option<ValueId>> = node
            .outputs
            .iter()
            .map(|o| adjoint.get(o).copied())
            .collect();
        if grads_out.iter().all(Option::is_none) {
            continue;
        }
        let wants: Vec<bool> = node
            .inputs
            .iter()
            .map(|v| v.index() < requires.len() && requires[v.index()])
            .collect();
        if !wants.iter().any(|&w| w) {
            continue;
        }
        b.node_desc = b.g.describe_node(NodeId(i as u32));
        b.tag = if node.name.is_empty() {
            format!("grad/{i}")
        } else {
            format!("grad/{}", node.name)
        };
        if node.outputs.len() != 1 {
            return Err(b.unsupported("gradients of multi-output ops"));
        }
        let dy = grads_out[0].expect("checked above");
        let grads = rules::differentiate(&mut b, &node, dy, &wants)?;
        for (slot, (&v, want)) in node.inputs.iter().zip(&wants).enumerate() {
            if !want {
                continue;
            }
            let Some(d) = grads.get(slot).copied().flatten() else {
                return Err(b.no_rule_for_input(slot));
            };
            let total = match adjoint.get(&v) {
                Some(&acc) => b.add(acc, d)?,
                None => d,
            };
            adjoint.insert(v, total);
        }
    }

    b.node_desc = "parameters".into();
    b.tag = "grad".into();
    let mut grads = Vec::with_capacity(out_params.len());
    for p in &out_params {
        let d = match adjoint.get(&p.input) {
            Some(&d) => d,
            None => {
                let dims = b.dims(p.input)?;
                let n = dims.iter().product();
                b.floats(dims, vec![0.0; n])
            }
        };
        grads.push(d);
    }
    let loss_value = loss_value.expect("at least one term");
    g.add_output("loss", loss_value);
    for o in &forward.outputs {
        g.add_output(o.name.clone(), map[&o.value]);
    }
    for (p, d) in out_params.iter_mut().zip(grads) {
        p.grad_output = g.outputs.len();
        g.add_output(format!("grad.{}", p.name), d);
    }
    Ok(TrainingGraph {
        graph: g,
        forward_inputs: forward.inputs.len(),
        forward_outputs: forward.outputs.len(),
        params: out_params,
        loss_inputs,
    })
}
