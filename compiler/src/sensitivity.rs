//! Per-layer quantization sensitivity for `kestrel quantize --max-accuracy-drop X --labels Y` and
//! `--min-agreement A` (docs/QUANTIZATION.md "Sensitivity"; `../shared/CLI.md`).
//!
//! Every model is evaluated as it would be deployed: the QDQ graph through `O2` (integer
//! kernels where `fold-qdq` folds) on the JIT, over the calibration runs. The float model's
//! outputs over the same runs are the reference. Steps:
//! 1. each layer alone in int8 (every other layer float): its error is the relative L2 distance
//!    of the model's first output from the float one, `‖y − y_f‖ / ‖y_f‖`, over all samples;
//! 2. every layer in int8; while the target fails, the layer of largest error alone goes back to
//!    float and the model is evaluated again.
//!
//! The metric is top-1 accuracy against the labels (the target: at most `X` percentage points
//! below the float model's) or top-1 agreement with the float model (at least `A`), both on the
//! first output (last axis: classes) over the calibration samples.

use crate::calibrate::CalibrationData;
use crate::driver;
use crate::inprocess::{Backend, InProcessModel};
use anyhow::{bail, Context, Result};
use kestrel_ir::{DType, Graph, Tensor};
use kestrel_passes::quantize::{apply, plan, Calibrator, Method, Plan, QuantizeOptions, Ranges};
use std::path::Path;

/// What the chosen model must meet.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Top-1 accuracy against `labels` (one class id per calibration sample) at most `points`
    /// percentage points below the float model's.
    MaxAccuracyDrop { points: f64, labels: Vec<i64> },
    /// Top-1 agreement with the float model at least `fraction` (in `[0, 1]`).
    MinAgreement { fraction: f64 },
}

impl Target {
    /// The metric's name in the report.
    fn metric(&self) -> &'static str {
        match self {
            Target::MaxAccuracyDrop { .. } => "accuracy",
            Target::MinAgreement { .. } => "agreement",
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::MaxAccuracyDrop { points, .. } => {
                format!("top-1 accuracy at most {points} points below float")
            }
            Target::MinAgreement { fraction } => {
                format!("top-1 agreement with float at least {}", percent(*fraction))
            }
        }
    }

    /// Whether `metric` meets the target, the float model scoring `float`.
    fn holds(&self, metric: f64, float: f64) -> bool {
        // A tolerance for the percentage arithmetic, far below one sample's share.
        const EPS: f64 = 1e-9;
        match self {
            Target::MaxAccuracyDrop { points, .. } => (float - metric) * 100.0 <= points + EPS,
            Target::MinAgreement { fraction } => metric + EPS >= *fraction,
        }
    }
}

/// Parses `--max-accuracy-drop`: percentage points, `0.5` or `0.5%`, finite and at least 0.
pub fn parse_accuracy_drop(s: &str) -> Result<f64> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .with_context(|| format!("--max-accuracy-drop {s:?}: not a number of percentage points"))?;
    if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
        bail!("--max-accuracy-drop {s}: must be between 0 and 100 percentage points");
    }
    Ok(v)
}

/// Parses `--min-agreement`: a fraction in `[0, 1]` (`0.99`) or a percentage (`99%`).
pub fn parse_agreement(s: &str) -> Result<f64> {
    let (text, scale) = match s.strip_suffix('%') {
        Some(t) => (t, 0.01),
        None => (s, 1.0),
    };
    let v: f64 = text
        .parse()
        .with_context(|| format!("--min-agreement {s:?}: not a fraction or a percentage"))?;
    let v = v * scale;
    if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
        bail!("--min-agreement {s}: must be a fraction in [0, 1] (or a percentage up to 100%)");
    }
    Ok(v)
}

/// One layer's line of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSensitivity {
    pub name: String,
    pub op: &'static str,
    /// `‖y − y_f‖ / ‖y_f‖` with only this layer in int8; `None` for a layer the user excluded.
    pub error: Option<f64>,
    /// The metric with only this layer in int8.
    pub metric: Option<f64>,
    /// Whether the layer stays float in the chosen model.
    pub float: bool,
}

/// What the analysis measured and chose.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensitivity {
    pub target: Target,
    /// Samples evaluated (the calibration runs times their batch).
    pub samples: usize,
    pub float_metric: f64,
    pub all_int8_metric: f64,
    pub chosen_metric: f64,
    /// The chosen model's output error, as [`LayerSensitivity::error`].
    pub chosen_error: f64,
    /// In node order.
    pub layers: Vec<LayerSensitivity>,
    /// Models compiled and evaluated.
    pub evaluations: usize,
}

fn percent(v: f64) -> String {
    format!("{:.2} %", v * 100.0)
}

impl Sensitivity {
    /// The report `kestrel quantize` prints: the target, the three scores, then one row per
    /// layer (Markdown table).
    pub fn report(&self) -> String {
        let metric = self.target.metric();
        let float_layers = self.layers.iter().filter(|l| l.float).count();
        let mut s = format!(
            "sensitivity: target {} on {} calibration samples ({} models evaluated)\n\
             {metric}: float {}, all layers int8 {}, chosen {} with {} of {} layers float \
             (output error {:.5})\n\n\
             | layer | op | error alone in int8 | {metric} alone in int8 | choice |\n\
             |---|---|---|---|---|\n",
            self.target.describe(),
            self.samples,
            self.evaluations,
            percent(self.float_metric),
            percent(self.all_int8_metric),
            percent(self.chosen_metric),
            float_layers,
            self.layers.len(),
            self.chosen_error,
        );
        for l in &self.layers {
            let (error, metric) = match (l.error, l.metric) {
                (Some(e), Some(m)) => (format!("{e:.5}"), percent(m)),
                _ => ("-".into(), "-".into()),
            };
            let choice = match (l.float, l.error) {
                (true, None) => "float (--exclude)",
                (true, Some(_)) => "float",
                (false, _) => "int8",
            };
            s.push_str(&format!(
                "| {} | {} | {error} | {metric} | {choice} |\n",
                l.name, l.op
            ));
        }
        s
    }
}

/// The first output of a model over every calibration run, rows of classes.
pub(crate) struct Outputs {
    values: Vec<f32>,
    classes: usize,
}

impl Outputs {
    pub(crate) fn top1(&self) -> Vec<usize> {
        self.values
            .chunks(self.classes)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (j, &x)| {
                        if x > best.1 {
                            (j, x)
                        } else {
                            best
                        }
                    })
                    .0
            })
            .collect()
    }

    /// `‖self − reference‖ / ‖reference‖` (the distance itself when the reference is all zero).
    fn relative_error(&self, reference: &Outputs) -> f64 {
        let (mut diff, mut norm) = (0f64, 0f64);
        for (&y, &f) in self.values.iter().zip(&reference.values) {
            diff += (y as f64 - f as f64).powi(2);
            norm += (f as f64).powi(2);
        }
        if norm > 0.0 {
            (diff / norm).sqrt()
        } else {
            diff.sqrt()
        }
    }
}

/// Compiles graphs through `O2` and scores them over the calibration runs.
pub(crate) struct Evaluator<'a> {
    pub(crate) data: &'a CalibrationData,
    pub(crate) model: &'a Path,
    pub(crate) threads: usize,
    pub(crate) evaluations: usize,
}

impl Evaluator<'_> {
    pub(crate) fn outputs(&mut self, g: &Graph) -> Result<Outputs> {
        self.evaluations += 1;
        let mut g = g.clone();
        let pipeline = kestrel_passes::PipelineOptions {
            pipeline: "O2".into(),
            ..Default::default()
        };
        driver::run_pipeline(&mut g, &pipeline, self.model)?;
        driver::bind_default_batch(&mut g, self.model)?;
        let first = *g.outputs.first().map(|o| &o.value).with_context(|| {
            format!("{}: the model has no output to score", self.model.display())
        })?;
        let ty = g.ty(first);
        let classes = match (ty.dtype, ty.dims().and_then(|d| d.last().copied())) {
            (DType::F32, Some(c)) if c > 0 => c,
            _ => bail!(
                "{}: the sensitivity analysis scores the first output's top-1 class; output {} is \
                 not a float tensor with a class axis",
                self.model.display(),
                g.outputs[0].name
            ),
        };
        let compiled = InProcessModel::new(g, Backend::Jit, self.threads, self.model)?;
        let mut values = Vec::new();
        for i in 0..self.data.runs() {
            let inputs = self.data.run_inputs(compiled.graph(), i)?;
            let out = compiled
                .run_tensors(&inputs)
                .with_context(|| format!("{}: calibration run {i}", self.data.path.display()))?;
            values.extend(out[0].to_f32_vec());
        }
        Ok(Outputs { values, classes })
    }
}

/// The top-1 metric of `outputs` under `target`: accuracy against the labels, or agreement with
/// `float` (the float model's top-1 classes).
pub(crate) fn score(target: &Target, outputs: &Outputs, float: &[usize]) -> f64 {
    let top1 = outputs.top1();
    let right = match target {
        Target::MaxAccuracyDrop { labels, .. } => top1
            .iter()
            .zip(labels)
            .filter(|(&p, &l)| p as i64 == l)
            .count(),
        Target::MinAgreement { .. } => top1.iter().zip(float).filter(|(p, f)| p == f).count(),
    };
    right as f64 / top1.len().max(1) as f64
}

/// Checks the labels against the samples evaluated: one integer class per sample (the first
/// `samples` of them when `--samples` capped the data).
pub fn check_labels(
    labels: &Tensor,
    path: &Path,
    data: &CalibrationData,
    capped: bool,
) -> Result<Vec<i64>> {
    if !labels.dtype().is_int() {
        bail!(
            "{}: labels must be integer class ids, not {:?}",
            path.display(),
            labels.dtype()
        );
    }
    let all = labels.to_i64_vec();
    let evaluated = data.runs() * data.batch;
    let fits = if capped {
        all.len() >= data.samples
    } else {
        all.len() == data.samples
    };
    if !fits {
        bail!(
            "{}: {} labels for {} calibration samples in {}",
            path.display(),
            all.len(),
            data.samples,
            data.path.display()
        );
    }
    Ok(all[..evaluated].to_vec())
}

/// What [`choose`] starts from: the float graph, its plan and the calibrated ranges of every
/// tensor the plan's selected layers quantize.
pub struct Inputs<'a> {
    pub graph: &'a Graph,
    pub model: &'a Path,
    pub data: &'a CalibrationData,
    pub options: &'a QuantizeOptions,
    pub calibrator: &'a dyn Calibrator,
    pub method: Method,
    pub threads: usize,
}

/// Runs the analysis and returns the quantized graph it chose with its report.
pub fn choose(inputs: Inputs<'_>, target: Target) -> Result<(Graph, Sensitivity)> {
    let g = inputs.graph;
    let plan: Plan = plan(g);
    plan.check_exclude(&inputs.options.exclude)?;
    let tensors = plan.calibration_tensors(&inputs.options.exclude);
    if tensors.is_empty() {
        bail!(kestrel_passes::quantize::QuantizeError::NothingToQuantize {
            excluded: inputs.options.exclude.len(),
        });
    }
    let found = inputs
        .calibrator
        .ranges(g, &tensors, inputs.method)
        .map_err(|e| anyhow::anyhow!(e))?;
    let ranges: Ranges = tensors.into_iter().zip(found).collect();
    let quantized = |exclude: Vec<String>| -> Result<Graph> {
        let mut q = g.clone();
        let options = QuantizeOptions {
            exclude,
            ..inputs.options.clone()
        };
        apply(&mut q, &plan, &ranges, &options)
            .with_context(|| format!("{}: quantizing", inputs.model.display()))?;
        Ok(q)
    };
    let mut eval = Evaluator {
        data: inputs.data,
        model: inputs.model,
        threads: inputs.threads,
        evaluations: 0,
    };
    let reference = eval.outputs(g)?;
    let float_top1 = reference.top1();
    let float_metric = score(&target, &reference, &float_top1);
    let user_excluded = |name: &str| inputs.options.exclude.iter().any(|e| e == name);
    let candidates = plan
        .layers
        .iter()
        .filter(|l| !user_excluded(&l.name))
        .count();
    let all_names: Vec<String> = plan.layers.iter().map(|l| l.name.clone()).collect();

    let progress = progress_bar(candidates as u64);
    let mut layers = Vec::new();
    for l in &plan.layers {
        if user_excluded(&l.name) {
            layers.push(LayerSensitivity {
                name: l.name.clone(),
                op: l.op.name(),
                error: None,
                metric: None,
                float: true,
            });
            continue;
        }
        progress.inc(1);
        let others: Vec<String> = all_names
            .iter()
            .filter(|n| **n != l.name)
            .cloned()
            .collect();
        let out = eval.outputs(&quantized(others)?)?;
        layers.push(LayerSensitivity {
            name: l.name.clone(),
            op: l.op.name(),
            error: Some(out.relative_error(&reference)),
            metric: Some(score(&target, &out, &float_top1)),
            float: false,
        });
    }
    progress.finish_and_clear();

    // Most sensitive first; ties in node order.
    let mut order: Vec<usize> = (0..layers.len())
        .filter(|&i| layers[i].error.is_some())
        .collect();
    order.sort_by(|&a, &b| {
        let (ea, eb) = (
            layers[a].error.unwrap_or(0.0),
            layers[b].error.unwrap_or(0.0),
        );
        eb.total_cmp(&ea).then(a.cmp(&b))
    });
    let mut exclude = inputs.options.exclude.clone();
    let mut chosen = quantized(exclude.clone())?;
    let mut out = eval.outputs(&chosen)?;
    let all_int8_metric = score(&target, &out, &float_top1);
    let mut metric = all_int8_metric;
    let mut most_sensitive = order.iter();
    while !target.holds(metric, float_metric) {
        let last_int8 = exclude.len() + 1 == plan.layers.len();
        let next = most_sensitive.next().filter(|_| !last_int8);
        let Some(&i) = next else {
            bail!(
                "{}: the target ({}) is not met unless every layer stays float: {} with {} of {} \
                 layers in int8 (float {}); nothing was written",
                inputs.model.display(),
                target.describe(),
                percent(metric),
                plan.layers.len() - exclude.len(),
                plan.layers.len(),
                percent(float_metric)
            );
        };
        layers[i].float = true;
        exclude.push(layers[i].name.clone());
        chosen = quantized(exclude.clone())?;
        out = eval.outputs(&chosen)?;
        metric = score(&target, &out, &float_top1);
    }
    let report = Sensitivity {
        target,
        samples: float_top1.len(),
        float_metric,
        all_int8_metric,
        chosen_metric: metric,
        chosen_error: out.relative_error(&reference),
        layers,
        evaluations: eval.evaluations,
    };
    Ok((chosen, report))
}

/// The analysis' progress bar on stderr (not drawn when stderr is not a terminal): one step per
/// layer evaluated alone.
fn progress_bar(steps: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(steps);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "sensitivity {bar:30} {pos}/{len} layers alone in int8 ({elapsed})",
    ) {
        bar.set_style(style);
    }
    bar
}
