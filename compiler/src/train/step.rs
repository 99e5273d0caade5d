//! One training step compiled for one batch size: the model bound to the batch, differentiated
//! (`kestrel_passes::autodiff`), extended with the optimiser update, and compiled by the JIT.

use crate::driver;
use anyhow::{bail, Context, Result};
use kestrel_backends::jit::{self, JitModel, JitOptions};
use kestrel_ir::{Dim, Graph, Tensor};
use kestrel_passes::autodiff::{
    step_graph, training_graph_with, BatchNormMode, DecayOn, Loss, Optimizer, ParamSelection,
    StepGraph, TrainingOptions,
};
use std::path::Path;

/// What every compiled step of one run shares.
#[derive(Clone, Debug)]
pub struct StepSpec {
    pub params: ParamSelection,
    /// Constants kept out of the forward graph's constant folding (`TrainOptions::unfolded`).
    pub unfolded: Vec<String>,
    pub loss: Loss,
    pub optimizer: Optimizer,
    pub decay_on: DecayOn,
    pub batch_norm: BatchNormMode,
    pub threads: usize,
}

/// A compiled training step.
pub struct Step {
    pub graph: StepGraph,
    pub batch: usize,
    jit: JitModel,
}

/// `g` with the leading axis of every input bound to `batch` and shapes re-inferred; an input
/// whose leading axis the model fixes at another extent is an error.
pub fn bind_batch(g: &Graph, batch: usize, model: &Path) -> Result<Graph> {
    let mut g = g.clone();
    for &v in &g.inputs.clone() {
        let name = g.value(v).name.clone().unwrap_or_default();
        let ty = &mut g.values[v.index()].ty;
        let shown = ty.to_string();
        match ty.shape.first_mut() {
            None => bail!(
                "{}: input {name} is a scalar; training needs a batch axis on every input",
                model.display()
            ),
            Some(Dim::Known(k)) if *k != batch => bail!(
                "{}: input {name} has its batch axis fixed at {k} ({shown}); a minibatch of \
                 {batch} samples needs a model with a symbolic batch, or --batch {k}",
                model.display()
            ),
            Some(d) => *d = Dim::Known(batch),
        }
    }
    g.reinfer()
        .with_context(|| format!("{}: after binding the batch to {batch}", model.display()))?;
    Ok(g)
}

/// Constant folding of `g` that leaves the constants named `keep` and what reads them: their
/// data is taken out while the fold runs (a constant without data folds nothing) and put back.
pub fn fold_keeping(g: &mut Graph, path: &Path, keep: &[String]) -> Result<()> {
    let mut kept = Vec::new();
    for v in g.values.iter_mut() {
        if let kestrel_ir::ValueDef::Const(c) = &mut v.def {
            if keep.contains(&c.name) {
                kept.push((c.name.clone(), c.data.take()));
            }
        }
    }
    let folded = driver::fold_for_codegen(g, path);
    for v in g.values.iter_mut() {
        if let kestrel_ir::ValueDef::Const(c) = &mut v.def {
            if let Some(i) = kept.iter().position(|(n, _)| *n == c.name) {
                c.data = kept.swap_remove(i).1;
            }
        }
    }
    folded
}

impl Step {
    /// Builds and compiles the step of `model` (as loaded) for minibatches of `batch`.
    pub fn compile(model: &Graph, path: &Path, batch: usize, spec: &StepSpec) -> Result<Step> {
        let mut forward = bind_batch(model, batch, path)?;
        fold_keeping(&mut forward, path, &spec.unfolded)?;
        let options = TrainingOptions {
            batch_norm: spec.batch_norm,
        };
        let tg = training_graph_with(&forward, &spec.params, &spec.loss, &options)
            .with_context(|| format!("{}: building the training graph", path.display()))?;
        let mut graph = step_graph(&tg, spec.optimizer, spec.decay_on)
            .with_context(|| format!("{}: building the optimiser update", path.display()))?;
        driver::fold_for_codegen(&mut graph.graph, path)?;
        let jit = jit::compile(&graph.graph, &JitOptions::with_threads(spec.threads))
            .with_context(|| format!("{}: compiling the training step", path.display()))?;
        Ok(Step { graph, batch, jit })
    }

    /// Runs one step: `inputs` are the forward inputs of the batch, `loss_inputs` the loss'
    /// extra inputs (in `graph.loss_inputs` order), `carried` the values of
    /// [`StepGraph::carried`] (replaced by their updates), `hyper` the optimiser's scalars.
    /// Returns the loss and the forward outputs.
    pub fn run(
        &self,
        inputs: Vec<Tensor>,
        loss_inputs: Vec<Tensor>,
        carried: &mut [Tensor],
        hyper: &[f64],
    ) -> Result<(f64, Vec<Tensor>)> {
        let sg = &self.graph;
        let n = sg.graph.inputs.len();
        let mut feed: Vec<Option<Tensor>> = vec![None; n];
        for (i, t) in inputs.into_iter().enumerate() {
            feed[i] = Some(t);
        }
        for ((_, index), t) in sg.loss_inputs.iter().zip(loss_inputs) {
            feed[*index] = Some(t);
        }
        for (c, t) in sg.carried().zip(carried.iter()) {
            feed[c.input_index] = Some(t.clone());
        }
        let dtype = sg.graph.ty(sg.graph.outputs[0].value).dtype;
        for ((_, index), &v) in sg.hyper.iter().zip(hyper) {
            feed[*index] = Some(match dtype {
                kestrel_ir::DType::F64 => Tensor::scalar(v),
                _ => Tensor::scalar(v as f32),
            });
        }
        let feed: Vec<Tensor> = feed
            .into_iter()
            .enumerate()
            .map(|(i, t)| t.ok_or_else(|| anyhow::anyhow!("training step input {i} not fed")))
            .collect::<Result<_>>()?;
        let mut out = self.jit.run(&feed).context("running the training step")?;
        let loss = out[0].to_f64_vec()[0];
        for (c, slot) in sg.carried().zip(carried.iter_mut()) {
            *slot = std::mem::replace(&mut out[c.output], Tensor::scalar(0f32));
        }
        let forward = out.drain(1..=sg.forward_outputs).collect();
        Ok((loss, forward))
    }
}
