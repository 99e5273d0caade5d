//! The training loop of `kestrel finetune` and `kestrel distill` (docs/TRAINING.md "Training
//! loop"): minibatches drawn in a seeded order, each step one run of a JIT-compiled graph that
//! computes the loss, the gradients and the optimiser update (`kestrel_passes::autodiff`), the
//! parameters and optimiser state carried from step to step, and the trained values written
//! back into the model's constants.
//!
//! The same seed gives bit-identical weights at any `--threads`: the JIT's kernels give
//! bit-identical outputs for any thread count, and everything else here is sequential.

pub mod augment;
pub mod data;
pub mod eval;
mod rng;
pub mod schedule;
pub mod step;

use anyhow::{bail, Context, Result};
use augment::Augment;
use data::Dataset;
use eval::Forward;
use kestrel_ir::{Graph, Op, Tensor, ValueDef};
use kestrel_passes::autodiff::{BatchNormMode, DecayOn, Loss, Optimizer, ParamSelection};
use schedule::Schedule;
use std::path::Path;
use std::time::Instant;
use step::{Step, StepSpec};

/// The optimiser family `--optimizer` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OptimizerKind {
    #[default]
    AdamW,
    Sgd,
}

impl OptimizerKind {
    pub fn parse(s: &str) -> Result<OptimizerKind> {
        match s {
            "adamw" => Ok(OptimizerKind::AdamW),
            "sgd" => Ok(OptimizerKind::Sgd),
            _ => bail!("--optimizer {s:?}: expected adamw or sgd"),
        }
    }
}

/// The training flags shared by `finetune` and `distill` (`../shared/CLI.md`).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    /// SGD's momentum (ignored by AdamW).
    pub momentum: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
    pub seed: u64,
    pub threads: usize,
    pub augment: Augment,
    /// On a non-finite loss, stop and keep the weights of the last good step instead of failing.
    pub keep_last_good: bool,
    /// Draw a progress bar on stderr (when it is a terminal) and print per-epoch lines.
    pub progress: bool,
    /// Float constants left untrained (quantization-aware training's grid bounds).
    pub frozen: Vec<String>,
    /// Constants kept out of constant folding, so they are trained where the model reads them
    /// (quantization-aware training's float weights, which reach their layers through a clamp
    /// and a fake quantization that folding would turn into an int8 constant).
    pub unfolded: Vec<String>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 200,
            batch: 64,
            lr: 3e-3,
            optimizer: OptimizerKind::AdamW,
            momentum: 0.9,
            weight_decay: 0.01,
            schedule: Schedule::Cosine,
            seed: 0,
            threads: 1,
            augment: Augment::None,
            keep_last_good: false,
            progress: true,
            frozen: Vec::new(),
            unfolded: Vec::new(),
        }
    }
}

impl TrainOptions {
    fn optimizer(&self) -> Optimizer {
        match self.optimizer {
            OptimizerKind::AdamW => Optimizer::adamw(self.weight_decay),
            OptimizerKind::Sgd => Optimizer::Sgd {
                momentum: self.momentum,
                weight_decay: self.weight_decay,
            },
        }
    }

    fn check(&self) -> Result<()> {
        crate::driver::check_threads(self.threads)?;
        if self.epochs == 0 || self.batch == 0 {
            bail!("--epochs and --batch must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be a positive number, not {}", self.lr);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!(
                "--weight-decay must be at least 0, not {}",
                self.weight_decay
            );
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!("--momentum must be in [0, 1), not {}", self.momentum);
        }
        Ok(())
    }
}

/// What the student learns from.
pub enum Objective<'a> {
    /// Cross-entropy against the data set's labels.
    Labels,
    /// `α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y)` against the teacher's logits
    /// (the CE term needs labels unless `alpha` is 1).
    Distill {
        teacher: &'a Graph,
        teacher_path: &'a Path,
        temperature: f64,
        alpha: f64,
    },
}

/// Statistics of one epoch.
#[derive(Clone, Debug)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training loss over the epoch's steps (weighted by batch size).
    pub loss: f64,
    /// Accuracy on the training batches as they were trained (with labels).
    pub train_accuracy: Option<f64>,
    /// Accuracy on the validation set after the epoch (when given, on reported epochs: every
    /// tenth of the run and the last).
    pub val_accuracy: Option<f64>,
}

/// A finished run.
pub struct Trained {
    /// The model as loaded, its trained constants replaced.
    pub graph: Graph,
    pub epochs: Vec<EpochStats>,
    pub steps: u64,
    /// Wall time of the steps alone (compilation and evaluation excluded).
    pub train_seconds: f64,
    /// Samples trained per second of `train_seconds`.
    pub samples_per_second: f64,
    /// With `keep_last_good`: why training stopped early.
    pub stopped: Option<String>,
}

/// Classes of a model: the extent of the last axis of its first output.
pub fn classes(g: &Graph, model: &Path) -> Result<usize> {
    let out = g
        .outputs
        .first()
        .with_context(|| format!("{}: the model has no output", model.display()))?;
    let ty = g.ty(out.value);
    match ty.shape.last() {
        Some(kestrel_ir::Dim::Known(k)) if ty.rank() == 2 => Ok(*k),
        _ => bail!(
            "{}: output {} is {ty}; training needs logits [batch, classes]",
            model.display(),
            out.name
        ),
    }
}

fn has_batch_norm(g: &Graph) -> bool {
    g.nodes.iter().any(|n| matches!(n.op, Op::BatchNorm { .. }))
}

/// Trains `model` (as loaded; its batch axis symbolic or equal to `opts.batch`) on `data`.
pub fn train(
    model: &Graph,
    path: &Path,
    data: &Dataset,
    objective: &Objective,
    validation: Option<&Dataset>,
    opts: &TrainOptions,
) -> Result<Trained> {
    opts.check()?;
    let classes = classes(model, path)?;
    let (loss, teacher) = match objective {
        Objective::Labels => {
            if data.labels.is_none() {
                bail!("training on labels needs --labels");
            }
            (Loss::cross_entropy(), None)
        }
        Objective::Distill {
            teacher,
            teacher_path,
            temperature,
            alpha,
        } => {
            if !(temperature.is_finite() && *temperature > 0.0) {
                bail!("--temperature must be positive, not {temperature}");
            }
            if !(0.0..=1.0).contains(alpha) {
                bail!("--alpha must be in [0, 1], not {alpha}");
            }
            if *alpha < 1.0 && data.labels.is_none() {
                bail!(
                    "--alpha {alpha} weighs a cross-entropy term on labels; give --labels, or \
                     --alpha 1 to learn from the teacher alone"
                );
            }
            let teacher_classes = self::classes(teacher, teacher_path)?;
            if teacher_classes != classes {
                bail!(
                    "the student {} has {classes} classes but the teacher {} has {teacher_classes}",
                    path.display(),
                    teacher_path.display()
                );
            }
            (
                Loss::distillation(*temperature, *alpha),
                Some(teacher_logits(teacher, teacher_path, data, opts)?),
            )
        }
    };
    let batch_norm = if has_batch_norm(model) {
        BatchNormMode::Train { momentum: 0.9 }
    } else {
        BatchNormMode::Eval
    };
    let spec = StepSpec {
        params: if opts.frozen.is_empty() {
            ParamSelection::FloatConstants
        } else {
            ParamSelection::FloatConstantsExcept(opts.frozen.clone())
        },
        unfolded: opts.unfolded.clone(),
        loss,
        optimizer: opts.optimizer(),
        decay_on: DecayOn::Weights,
        batch_norm,
        threads: opts.threads,
    };
    let batch = opts.batch.min(data.samples);
    let full = Step::compile(model, path, batch, &spec)?;
    let tail_len = data.samples % batch;
    let tail = if tail_len > 0 {
        Some(Step::compile(model, path, tail_len, &spec)?)
    } else {
        None
    };
    let carried_names: Vec<String> = full.graph.carried().map(|c| c.name.clone()).collect();
    let mut carried: Vec<Tensor> = full.graph.carried().map(|c| c.init.clone()).collect();
    let trained_names: Vec<String> = full
        .graph
        .params
        .iter()
        .chain(&full.graph.running_stats)
        .map(|c| c.name.clone())
        .collect();

    let steps_per_epoch = data.samples.div_ceil(batch) as u64;
    let total = steps_per_epoch * opts.epochs as u64;
    let bar = progress_bar(total, opts.progress);
    let mut rng = rng::Rng::new(opts.seed);
    let optimizer = spec.optimizer;
    let mut step_index: u64 = 0;
    let mut train_time = std::time::Duration::ZERO;
    let mut epochs = Vec::new();
    let mut stopped = None;
    let report_every = (opts.epochs / 10).max(1);
    'epochs: for epoch in 1..=opts.epochs {
        let order = rng.permutation(data.samples);
        let (mut loss_sum, mut seen, mut right) = (0.0, 0usize, 0usize);
        for chunk in order.chunks(batch) {
            let step = if chunk.len() == batch {
                &full
            } else {
                tail.as_ref().expect("a tail step for a partial batch")
            };
            let mut inputs = data.gather(chunk);
            opts.augment.apply(&mut inputs, &mut rng);
            let labels = data.gather_labels(chunk);
            let mut loss_inputs = Vec::new();
            for (name, _) in &step.graph.loss_inputs {
                loss_inputs.push(match name.as_str() {
                    "labels" => labels.clone().expect("checked: labels present"),
                    "teacher_logits" => {
                        let t = teacher.as_ref().expect("distillation has teacher logits");
                        gather_rows(t, chunk)
                    }
                    other => bail!("the training step needs an input {other:?} no data provides"),
                });
            }
            let lr = opts.schedule.rate(opts.lr, step_index, total);
            let hyper = optimizer.hyper_values(lr, step_index + 1);
            let before = opts.keep_last_good.then(|| carried.clone());
            let start = Instant::now();
            let (loss, outputs) = step.run(inputs, loss_inputs, &mut carried, &hyper)?;
            train_time += start.elapsed();
            step_index += 1;
            if !loss.is_finite() {
                let at = format!(
                    "the loss became {loss} at step {step_index} (epoch {epoch}, learning rate {lr:.3e})"
                );
                if let Some(good) = before {
                    carried = good;
                    bar.suspend(|| eprintln!("{at}; keeping the weights of the step before"));
                    stopped = Some(at);
                    break 'epochs;
                }
                bar.finish_and_clear();
                bail!(
                    "{at}: nothing was written. Try a lower --lr, or --keep-last-good to write \
                     the weights of the last finite step"
                );
            }
            loss_sum += loss * chunk.len() as f64;
            seen += chunk.len();
            if let (Some(labels), Some(logits)) = (&labels, outputs.first()) {
                right += eval::correct(logits, &labels.to_i64_vec());
            }
            bar.inc(1);
            let secs = train_time.as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "epoch {epoch}/{} loss {:.4}{} {:.0} samples/s",
                opts.epochs,
                loss_sum / seen as f64,
                if data.labels.is_some() {
                    format!(" acc {:.1}%", 100.0 * right as f64 / seen as f64)
                } else {
                    String::new()
                },
                (step_index as f64 * batch as f64).min((epoch * data.samples) as f64) / secs
            ));
        }
        let reported = epoch % report_every == 0 || epoch == opts.epochs;
        let val_accuracy = match &validation {
            Some(v) if reported => {
                let values = trained_values(&carried_names, &carried, &trained_names);
                let g = with_constants(model, &trained_names, &values, path)?;
                Some(Forward::compile(&g, path, batch, opts.threads)?.accuracy(v)?)
            }
            _ => None,
        };
        let stats = EpochStats {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            train_accuracy: data.labels.as_ref().map(|_| right as f64 / seen as f64),
            val_accuracy,
        };
        if opts.progress && reported {
            let line = epoch_line(&stats, opts.epochs);
            bar.suspend(|| eprintln!("{line}"));
        }
        epochs.push(stats);
    }
    bar.finish_and_clear();

    let values = trained_values(&carried_names, &carried, &trained_names);
    let graph = with_constants(model, &trained_names, &values, path)?;
    let trained_samples: usize = epochs.len() * data.samples;
    let train_seconds = train_time.as_secs_f64();
    Ok(Trained {
        graph,
        epochs,
        steps: step_index,
        train_seconds,
        samples_per_second: trained_samples as f64 / train_seconds.max(1e-9),
        stopped,
    })
}

/// One line per reported epoch: `epoch 10/100 loss 0.1234 train 97.1% val 96.4%`.
pub fn epoch_line(s: &EpochStats, epochs: usize) -> String {
    let mut line = format!("epoch {}/{epochs} loss {:.4}", s.epoch, s.loss);
    if let Some(a) = s.train_accuracy {
        line += &format!(" train {:.1}%", 100.0 * a);
    }
    if let Some(a) = s.val_accuracy {
        line += &format!(" val {:.1}%", 100.0 * a);
    }
    line
}

fn progress_bar(total: u64, shown: bool) -> indicatif::ProgressBar {
    if !shown {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "train {bar:30} {pos}/{len} steps {msg} ({elapsed})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The values of `wanted` among the carried tensors.
fn trained_values(names: &[String], values: &[Tensor], wanted: &[String]) -> Vec<Tensor> {
    wanted
        .iter()
        .map(|w| {
            let i = names.iter().position(|n| n == w).expect("a carried name");
            values[i].clone()
        })
        .collect()
}

/// `model` with the constants `names` holding `values`.
pub fn with_constants(
    model: &Graph,
    names: &[String],
    values: &[Tensor],
    path: &Path,
) -> Result<Graph> {
    let mut g = model.clone();
    for (name, t) in names.iter().zip(values) {
        let slot = g
            .values
            .iter_mut()
            .find_map(|v| match &mut v.def {
                ValueDef::Const(c) if &c.name == name => Some(c),
                _ => None,
            })
            .with_context(|| {
                format!(
                    "{}: the trained tensor {name:?} is not a constant of the model (folded \
                     before training?)",
                    path.display()
                )
            })?;
        slot.data = Some(t.clone());
    }
    Ok(g)
}

/// Rows `indices` of a `[N, ...]` tensor.
fn gather_rows(t: &Tensor, indices: &[usize]) -> Tensor {
    let row = t.bytes().len() / t.dims()[0].max(1);
    let mut bytes = Vec::with_capacity(row * indices.len());
    for &i in indices {
        bytes.extend_from_slice(&t.bytes()[i * row..(i + 1) * row]);
    }
    let mut dims = t.dims().to_vec();
    dims[0] = indices.len();
    Tensor::from_bytes(t.dtype(), dims, bytes.into()).expect("sizes match")
}

/// The teacher's logits on every training sample (augmentation off: the teacher sees what the
/// data holds), checked to have the student's shape.
fn teacher_logits(
    teacher: &Graph,
    teacher_path: &Path,
    data: &Dataset,
    opts: &TrainOptions,
) -> Result<Tensor> {
    if opts.augment != Augment::None {
        bail!("--augment with distillation is not supported: the teacher's logits are computed once on the data as given");
    }
    let batch = opts.batch.min(data.samples);
    let f = Forward::compile(teacher, teacher_path, batch, opts.threads)?;
    f.outputs(data)
        .with_context(|| format!("{}: computing the teacher's logits", teacher_path.display()))
}

/// Where a finished run is described for humans.
pub fn summary(t: &Trained, threads: usize) -> String {
    let last = t.epochs.last();
    let mut s = format!(
        "trained {} epochs ({} steps) in {:.1} s: {:.0} samples/s on {threads} thread{}",
        t.epochs.len(),
        t.steps,
        t.train_seconds,
        t.samples_per_second,
        if threads == 1 { "" } else { "s" }
    );
    if let Some(l) = last {
        s += &format!("; final {}", epoch_line(l, t.epochs.len()));
    }
    if let Some(why) = &t.stopped {
        s += &format!("; stopped early: {why}");
    }
    s
}
