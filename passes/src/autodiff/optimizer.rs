//! The optimiser update as IR: [`step_graph`] extends a [`TrainingGraph`] so that one run is a
//! whole training step. The gradients feed SGD-with-momentum or AdamW update ops, and the graph
//! returns the new parameters and optimiser state instead of the gradients. Values that change
//! from step to step (the learning rate, Adam's bias corrections) are scalar inputs, so a
//! schedule never recompiles the step. Contract and formulas: docs/TRAINING.md "Optimisers".

use super::build::{float_tensor, Builder};
use super::{AutodiffError, TrainingGraph};
use kestrel_ir::{Graph, GraphOutput, Tensor, TensorType, UnaryOp, ValueId};

/// The update rule, with PyTorch's semantics (`torch.optim.SGD`, `torch.optim.AdamW`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// `v ← μ·v + (g + λ·p)`, `p ← p − lr·v` (λ: weight decay, added to the gradient).
    Sgd { momentum: f64, weight_decay: f64 },
    /// `p ← p·(1 − lr·λ)`, `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
    /// `p ← p − lr·(m/c1) / (√(v/c2) + ε)` with `c1 = 1 − β1^t`, `c2 = 1 − β2^t` (decoupled decay).
    AdamW {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
}

impl Optimizer {
    /// AdamW with PyTorch's defaults but for the weight decay given.
    pub fn adamw(weight_decay: f64) -> Optimizer {
        Optimizer::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// Optimiser state tensors per parameter (each the parameter's type, zero at the start).
    pub fn state_names(&self) -> &'static [&'static str] {
        match self {
            Optimizer::Sgd { momentum, .. } if *momentum == 0.0 => &[],
            Optimizer::Sgd { .. } => &["velocity"],
            Optimizer::AdamW { .. } => &["m", "v"],
        }
    }

    /// The scalar inputs a step reads, in order (`lr`, and for AdamW the bias corrections
    /// `c1 = 1 − β1^t`, `c2 = 1 − β2^t` of step `t ≥ 1`).
    pub fn hyper_names(&self) -> &'static [&'static str] {
        match self {
            Optimizer::Sgd { .. } => &["lr"],
            Optimizer::AdamW { .. } => &["lr", "bias_correction1", "bias_correction2"],
        }
    }

    /// The values of [`Optimizer::hyper_names`] for step `t` (1-based) at learning rate `lr`.
    pub fn hyper_values(&self, lr: f64, t: u64) -> Vec<f64> {
        match *self {
            Optimizer::Sgd { .. } => vec![lr],
            Optimizer::AdamW { beta1, beta2, .. } => {
                let t = t.max(1) as i32;
                vec![lr, 1.0 - beta1.powi(t), 1.0 - beta2.powi(t)]
            }
        }
    }
}

/// Which parameters weight decay applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DecayOn {
    /// Parameters of rank 2 or more (conv and linear weights), not biases or norm scales.
    #[default]
    Weights,
    /// Every parameter (PyTorch's default when one parameter group is given).
    All,
}

/// An input fed and an output read back by every step (a parameter, an optimiser state or a
/// running statistic): the loop feeds `output`'s value of one step as `input_index` of the next.
#[derive(Clone, Debug)]
pub struct Carried {
    /// The parameter's name; a state's is `<state>.<param>`; a running statistic's its own.
    pub name: String,
    pub input_index: usize,
    pub output: usize,
    /// Its value before the first step.
    pub init: Tensor,
}

/// The graph [`step_graph`] builds.
///
/// Inputs: the training graph's (forward inputs, parameters, loss inputs, running statistics),
/// then the optimiser states (`states`), then the scalar hyper-parameters (`hyper`). Outputs:
/// the loss at 0, the forward outputs (`1..=forward_outputs`), then the updated parameters, the
/// updated states and the updated running statistics, each at its `Carried::output`.
#[derive(Clone, Debug)]
pub struct StepGraph {
    pub graph: Graph,
    pub forward_inputs: usize,
    pub forward_outputs: usize,
    pub params: Vec<Carried>,
    pub states: Vec<Carried>,
    pub running_stats: Vec<Carried>,
    /// Name and position in `graph.inputs` of each extra loss input.
    pub loss_inputs: Vec<(String, usize)>,
    /// Name (see [`Optimizer::hyper_names`]) and position of each scalar input.
    pub hyper: Vec<(String, usize)>,
    pub optimizer: Optimizer,
}

impl StepGraph {
    /// Everything carried from one step to the next: parameters, states, running statistics.
    pub fn carried(&self) -> impl Iterator<Item = &Carried> {
        self.params
            .iter()
            .chain(&self.states)
            .chain(&self.running_stats)
    }
}

/// Appends `optimizer`'s update to `tg` (see [`StepGraph`] for the resulting signature).
pub fn step_graph(
    tg: &TrainingGraph,
    optimizer: Optimizer,
    decay_on: DecayOn,
) -> Result<StepGraph, AutodiffError> {
    let mut g = tg.graph.clone();
    let dtype = g.ty(g.outputs[0].value).dtype;
    let loss_and_forward: Vec<GraphOutput> = g.outputs[..=tg.forward_outputs].to_vec();
    let grads: Vec<ValueId> = tg
        .params
        .iter()
        .map(|p| g.outputs[p.grad_output].value)
        .collect();
    let running: Vec<ValueId> = tg
        .running_stats
        .iter()
        .map(|r| g.outputs[r.output].value)
        .collect();

    let mut state_inputs = Vec::new();
    for p in &tg.params {
        for s in optimizer.state_names() {
            let ty = g.ty(p.input).clone();
            let index = g.inputs.len();
            let v = g.add_input(format!("{s}.{}", p.name), ty);
            state_inputs.push((format!("{s}.{}", p.name), index, v, p.init.dims().to_vec()));
        }
    }
    let mut hyper = Vec::new();
    let mut hyper_values = Vec::new();
    for h in optimizer.hyper_names() {
        hyper.push((h.to_string(), g.inputs.len()));
        hyper_values.push(g.add_input(
            format!("optimizer.{h}"),
            TensorType::new(dtype, Vec::new().into()),
        ));
    }

    let mut new_params = Vec::new();
    let mut new_states = Vec::new();
    let per_param = optimizer.state_names().len();
    for (i, p) in tg.params.iter().enumerate() {
        let mut b = Builder {
            g: &mut g,
            dtype,
            node_desc: format!("optimizer update of {}", p.name),
            tag: format!("optimizer/{}", p.name),
        };
        let decay = match (decay_on, p.init.dims().len()) {
            (DecayOn::All, _) | (DecayOn::Weights, 2..) => true,
            (DecayOn::Weights, _) => false,
        };
        let states: Vec<ValueId> = state_inputs[i * per_param..(i + 1) * per_param]
            .iter()
            .map(|s| s.2)
            .collect();
        let (param, updated) = update(
            &mut b,
            optimizer,
            decay,
            p.input,
            grads[i],
            &states,
            &hyper_values,
        )?;
        new_params.push(param);
        new_states.extend(updated);
    }

    g.outputs = loss_and_forward;
    let mut params = Vec::new();
    for (p, &v) in tg.params.iter().zip(&new_params) {
        params.push(Carried {
            name: p.name.clone(),
            input_index: p.input_index,
            output: g.outputs.len(),
            init: p.init.clone(),
        });
        g.add_output(p.name.clone(), v);
    }
    let mut states = Vec::new();
    for ((name, input_index, _, dims), &v) in state_inputs.iter().zip(&new_states) {
        states.push(Carried {
            name: name.clone(),
            input_index: *input_index,
            output: g.outputs.len(),
            init: float_tensor(dtype, dims.clone(), vec![0.0; dims.iter().product()]),
        });
        g.add_output(name.clone(), v);
    }
    let mut running_stats = Vec::new();
    for (r, &v) in tg.running_stats.iter().zip(&running) {
        running_stats.push(Carried {
            name: r.name.clone(),
            input_index: r.input_index,
            output: g.outputs.len(),
            init: r.init.clone(),
        });
        g.add_output(format!("running.{}", r.name), v);
    }
    Ok(StepGraph {
        graph: g,
        forward_inputs: tg.forward_inputs,
        forward_outputs: tg.forward_outputs,
        params,
        states,
        running_stats,
        loss_inputs: tg.loss_inputs.clone(),
        hyper,
        optimizer,
    })
}

/// The new parameter and new states of one parameter `p` with gradient `grad`.
fn update(
    b: &mut Builder,
    optimizer: Optimizer,
    decay: bool,
    p: ValueId,
    grad: ValueId,
    states: &[ValueId],
    hyper: &[ValueId],
) -> Result<(ValueId, Vec<ValueId>), AutodiffError> {
    let lr = hyper[0];
    match optimizer {
        Optimizer::Sgd {
            momentum,
            weight_decay,
        } => {
            let g = if decay && weight_decay != 0.0 {
                let d = b.scale(p, weight_decay)?;
                b.add(grad, d)?
            } else {
                grad
            };
            let (direction, new_states) = if momentum == 0.0 {
                (g, vec![])
            } else {
                let kept = b.scale(states[0], momentum)?;
                let v = b.add(kept, g)?;
                (v, vec![v])
            };
            let step = b.mul(direction, lr)?;
            Ok((b.sub(p, step)?, new_states))
        }
        Optimizer::AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            let p = if decay && weight_decay != 0.0 {
                // p·(1 − lr·λ) = p − lr·(λ·p)
                let d = b.scale(p, weight_decay)?;
                let s = b.mul(d, lr)?;
                b.sub(p, s)?
            } else {
                p
            };
            let m_kept = b.scale(states[0], beta1)?;
            let m_new = b.scale(grad, 1.0 - beta1)?;
            let m = b.add(m_kept, m_new)?;
            let v_kept = b.scale(states[1], beta2)?;
            let g2 = b.mul(grad, grad)?;
            let v_new = b.scale(g2, 1.0 - beta2)?;
            let v = b.add(v_kept, v_new)?;
            let m_hat = b.div(m, hyper[1])?;
            let v_hat = b.div(v, hyper[2])?;
            let root = b.unary(UnaryOp::Sqrt, v_hat)?;
            let e = b.scalar(eps);
            let denom = b.add(root, e)?;
            let ratio = b.div(m_hat, denom)?;
            let step = b.mul(ratio, lr)?;
            Ok((b.sub(p, step)?, vec![m, v]))
        }
    }
}
