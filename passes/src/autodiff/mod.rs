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
mod optimizer;
mod rules;

pub use loss::{Loss, LossTerm};
pub use optimizer::{step_graph, Carried, DecayOn, Optimizer, StepGraph};

use build::Builder;
use kestrel_ir::{DType, Graph, GraphError, NodeId, Op, Tensor, ValueDef, ValueId};
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
    /// [`ParamSelection::FloatConstants`] but for the constants with these names (frozen, such
    /// as the grid bounds of quantization-aware training).
    FloatConstantsExcept(Vec<String>),
}

/// How [`training_graph_with`] treats BatchNormalization.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum BatchNormMode {
    /// Inference semantics: the running statistics normalise, and are constants.
    #[default]
    Eval,
    /// Training semantics: each BatchNormalization normalises with the statistics of the batch
    /// (mean and population variance over every axis but 1, gradients flowing through them),
    /// and its running statistics become graph inputs whose updates
    /// `running·momentum + batch·(1 - momentum)` are graph outputs (ONNX's convention, where
    /// `momentum = 0.9` is the default).
    Train { momentum: f64 },
}

/// Options of [`training_graph_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrainingOptions {
    pub batch_norm: BatchNormMode,
}

/// A running statistic (BatchNorm mean or variance) of a training graph built with
/// [`BatchNormMode::Train`]: an input the loop feeds and an output with its updated value.
#[derive(Clone, Debug)]
pub struct RunningStat {
    /// The constant's name in the forward graph.
    pub name: String,
    /// Position of the input in `graph.inputs`.
    pub input_index: usize,
    /// Position of the updated value in `graph.outputs`.
    pub output: usize,
    /// Its value in the forward graph.
    pub init: Tensor,
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
    /// With [`BatchNormMode::Train`]: the running statistics (inputs after the loss inputs,
    /// updated values as outputs after the gradients).
    pub running_stats: Vec<RunningStat>,
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
        ParamSelection::FloatConstants | ParamSelection::FloatConstantsExcept(_) => {
            let frozen: &[String] = match sel {
                ParamSelection::FloatConstantsExcept(names) => names,
                _ => &[],
            };
            let mut picked = vec![false; forward.values.len()];
            for n in &forward.nodes {
                for (slot, &v) in n.inputs.iter().enumerate() {
                    if is_float_const(forward, v) && rules::trainable_slot(&n.op, slot) {
                        picked[v.index()] = true;
                    }
                }
            }
            for (i, value) in forward.values.iter().enumerate() {
                if let ValueDef::Const(c) = &value.def {
                    if frozen.contains(&c.name) {
                        picked[i] = false;
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
    training_graph_with(forward, params, loss, &TrainingOptions::default())
}

/// [`training_graph`] with options (BatchNormalization in training mode).
pub fn training_graph_with(
    forward: &Graph,
    params: &ParamSelection,
    loss: &Loss,
    options: &TrainingOptions,
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
    let mut stat_inputs: Vec<(ValueId, String, usize, Tensor)> = Vec::new();
    if let BatchNormMode::Train { .. } = options.batch_norm {
        for n in &forward.nodes {
            if !matches!(n.op, Op::BatchNorm { .. }) {
                continue;
            }
            for &v in &n.inputs[3..5] {
                if map.contains_key(&v) || !is_float_const(forward, v) {
                    continue;
                }
                let ValueDef::Const(c) = &forward.value(v).def else {
                    unreachable!("checked to be a constant")
                };
                let index = g.inputs.len();
                map.insert(v, g.add_input(c.name.clone(), forward.ty(v).clone()));
                let init = c.data.clone().expect("float constants with data only");
                stat_inputs.push((v, c.name.clone(), index, init));
            }
        }
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
    // (running input, updated value) of every statistic, in `stat_inputs` order.
    let mut stat_updates: HashMap<ValueId, ValueId> = HashMap::new();
    // The forward node each training-graph node was copied or derived from (for errors).
    let mut origin: Vec<usize> = Vec::new();
    for (i, n) in forward.nodes.iter().enumerate() {
        let inputs: Vec<ValueId> = n.inputs.iter().map(|v| map[v]).collect();
        if let (Op::BatchNorm { epsilon }, BatchNormMode::Train { momentum }) =
            (&n.op, options.batch_norm)
        {
            let dtype = g.ty(inputs[0]).dtype;
            let mut b = Builder {
                g: &mut g,
                dtype,
                node_desc: forward.describe_node(NodeId(i as u32)),
                tag: n.name.clone(),
            };
            let (y, mean, var) = batch_norm_train(&mut b, &inputs, epsilon.0 as f64, momentum)?;
            map.insert(n.outputs[0], y);
            stat_updates.entry(inputs[3]).or_insert(mean);
            stat_updates.entry(inputs[4]).or_insert(var);
            origin.resize(g.nodes.len(), i);
            continue;
        }
        let mut op = n.op.clone();
        let mut inputs = inputs;
        if let Op::Gemm(a) = &mut op {
            // A parameter that a gemm reads transposed is transposed explicitly (the same
            // numbers): code generators handle transpose flags on constants, not on inputs.
            for (slot, flag) in [(0, &mut a.trans_a), (1, &mut a.trans_b)] {
                if *flag
                    && g.const_data(inputs[slot]).is_none()
                    && a.epilogue.is_none()
                    && a.integer.is_none()
                {
                    inputs[slot] = g.add(
                        Op::Transpose { perm: vec![1, 0] },
                        &[inputs[slot]],
                        n.name.clone(),
                    )?;
                    *flag = false;
                }
            }
        }
        let outs = g.add_node(op, &inputs, n.name.clone())?;
        for (o, no) in n.outputs.iter().zip(outs) {
            map.insert(*o, no);
        }
        origin.resize(g.nodes.len(), i);
    }
    let forward_nodes = g.nodes.len();
    let logits = map[&logits_fwd];

    // Values that depend on a parameter through float data.
    let mut requires = vec![false; g.values.len()];
    for p in &out_params {
        requires[p.input.index()] = true;
    }
    // A QuantizeLinear output carries the dependence to the DequantizeLinear that closes a
    // fake-quantization pair (its gradient is the straight-through estimator's).
    for n in &g.nodes {
        if n.inputs.iter().any(|v| requires[v.index()]) {
            let carries = matches!(n.op, Op::QuantizeLinear { .. });
            for &o in &n.outputs {
                requires[o.index()] = carries || matches!(g.ty(o).dtype, DType::F32 | DType::F64);
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
        b.node_desc = forward.describe_node(NodeId(origin[i] as u32));
        b.tag = if node.name.is_empty() {
            format!("grad/{i}")
        } else {
            format!("grad/{}", node.name)
        };
        if node.outputs.len() != 1 {
            return Err(b.unsupported("gradients of multi-output ops"));
        }
        let dy = grads_out[0].expect("checked above");
        if let Some((x, q)) = rules::quant::fake_quant_input(&b, &node) {
            if wants[0] {
                let d = rules::quant::fake_quant(&mut b, &q, &node, dy)?;
                let total = match adjoint.get(&x) {
                    Some(&acc) => b.add(acc, d)?,
                    None => d,
                };
                adjoint.insert(x, total);
            }
            continue;
        }
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
    let mut running_stats = Vec::with_capacity(stat_inputs.len());
    for (v, name, input_index, init) in stat_inputs {
        let output = g.outputs.len();
        g.add_output(format!("running.{name}"), stat_updates[&map[&v]]);
        running_stats.push(RunningStat {
            name,
            input_index,
            output,
            init,
        });
    }
    Ok(TrainingGraph {
        graph: g,
        forward_inputs: forward.inputs.len(),
        forward_outputs: forward.outputs.len(),
        params: out_params,
        loss_inputs,
        running_stats,
    })
}

/// BatchNormalization with batch statistics, in ordinary ops:
/// `y = (x - μ)/sqrt(σ² + ε)·scale + bias`, with `μ`, `σ²` the mean and population variance over
/// every axis but 1. Returns `y` and the updated running mean and variance.
fn batch_norm_train(
    b: &mut Builder,
    inputs: &[ValueId],
    epsilon: f64,
    momentum: f64,
) -> Result<(ValueId, ValueId, ValueId), AutodiffError> {
    let [x, scale, bias, mean, var] = [inputs[0], inputs[1], inputs[2], inputs[3], inputs[4]];
    let dims = b.dims(x)?;
    if dims.len() < 2 {
        return Err(b.unsupported("batch normalization of rank < 2"));
    }
    let axes: Vec<usize> = (0..dims.len()).filter(|&a| a != 1).collect();
    let count: usize = axes.iter().map(|&a| dims[a]).product();
    let mut bshape = vec![1usize; dims.len()];
    bshape[1] = dims[1];
    let mu = b.reduce_sum(x, &axes, true)?;
    let mu = b.scale(mu, 1.0 / count as f64)?;
    let xc = b.sub(x, mu)?;
    let sq = b.mul(xc, xc)?;
    let sigma2 = b.reduce_sum(sq, &axes, true)?;
    let sigma2 = b.scale(sigma2, 1.0 / count as f64)?;
    let eps = b.scalar(epsilon);
    let v = b.add(sigma2, eps)?;
    let sd = b.unary(kestrel_ir::UnaryOp::Sqrt, v)?;
    let xhat = b.div(xc, sd)?;
    let scale_b = b.reshape(scale, &bshape)?;
    let bias_b = b.reshape(bias, &bshape)?;
    let y = b.mul(xhat, scale_b)?;
    let y = b.add(y, bias_b)?;
    let channels = [dims[1]];
    let update =
        |b: &mut Builder, running: ValueId, batch: ValueId| -> Result<ValueId, AutodiffError> {
            let batch = b.reshape(batch, &channels)?;
            let kept = b.scale(running, momentum)?;
            let new = b.scale(batch, 1.0 - momentum)?;
            b.add(kept, new)
        };
    let new_mean = update(b, mean, mu)?;
    let new_var = update(b, var, sigma2)?;
    Ok((y, new_mean, new_var))
}
