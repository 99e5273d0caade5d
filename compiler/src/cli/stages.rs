//! The stages of `compile --distill-data` and `compare --distill-data` from their flags
//! (`kestrel::stages`; docs/DISTILLATION.md "The whole story in one command").

use super::train::TrainingFlags;
use anyhow::{Context, Result};
use kestrel::stages::{DistillStage, QuantizeStageOptions, StagesConfig, StagesReport};
use kestrel::train::data::Dataset;
use kestrel_ir::Graph;
use kestrel_passes::prune::PruneOptions;
use kestrel_passes::quantize::Method;
use std::path::Path;

/// What the stages take from the command line, whatever the command calls its flags.
pub struct StageInputs<'a> {
    /// Distillation samples, and their class ids.
    pub data: &'a Path,
    pub labels: Option<&'a Path>,
    /// Labelled held-out data for the accuracy column.
    pub val: Option<(&'a Path, &'a Path)>,
    pub temperature: f64,
    /// Default: 0.9 with labels, 1 without.
    pub alpha: Option<f64>,
    /// Quantization-aware training in the quantize stage: (epochs, learning rate).
    pub qat: Option<(usize, f64)>,
    pub train: &'a TrainingFlags,
    pub prune: Option<f64>,
    /// Calibration data when the quantize stage runs.
    pub calib: Option<&'a Path>,
    /// Weights of the quantize stage on this many bits (2 to 8).
    pub weight_bits: u32,
    /// Latency runs per stage.
    pub iters: usize,
}

/// Runs the stages on `original` (loaded from `model`): the final graph and the report.
pub fn run(model: &Path, original: &Graph, s: &StageInputs) -> Result<(Graph, StagesReport)> {
    let classes = kestrel::train::classes(original, model)?;
    let data = Dataset::load(original, s.data, s.labels, classes)?;
    let val = match s.val {
        Some((x, y)) => Some(Dataset::load(original, x, Some(y), classes)?),
        None => None,
    };
    let qat = match s.qat {
        Some((epochs, lr)) => {
            let mut t = s.train.options_for(true)?;
            t.epochs = epochs;
            t.lr = lr;
            Some(t)
        }
        None => None,
    };
    if !(2..=8).contains(&s.weight_bits) {
        anyhow::bail!("--weight-bits {}: expected 2 to 8", s.weight_bits);
    }
    let quantize = s.calib.map(|calib| {
        (
            calib,
            QuantizeStageOptions {
                method: Method::MinMax,
                options: kestrel_passes::quantize::QuantizeOptions {
                    weight_bits: s.weight_bits,
                    ..Default::default()
                },
                threads: s.train.threads,
                qat,
            },
        )
    });
    let cfg = StagesConfig {
        prune: s.prune.map(|ratio| PruneOptions {
            ratio,
            ..Default::default()
        }),
        distill: Some(DistillStage {
            data: &data,
            temperature: s.temperature,
            alpha: s
                .alpha
                .unwrap_or(if s.labels.is_some() { 0.9 } else { 1.0 }),
            train: s.train.options_for(false)?,
        }),
        quantize,
        eval: val.as_ref(),
        iters: s.iters,
    };
    kestrel::stages::run(original, model, &cfg)
        .with_context(|| format!("{}: running the stages", model.display()))
}
