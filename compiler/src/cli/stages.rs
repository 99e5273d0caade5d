//! The stages of `compile --distill-data` and `compare --distill-data` from their flags
//! (`kestrel::stages`; docs/DISTILLATION.md "The whole story in one command").

use super::train::TrainingFlags;
use anyhow::{Context, Result};
use clap::Args;
use kestrel::stages::{DistillStage, QuantizeStageOptions, StagesConfig, StagesReport};
use kestrel::train::data::Dataset;
use kestrel_ir::Graph;
use kestrel_passes::prune::PruneOptions;
use kestrel_passes::quantize::Method;
use std::path::Path;

/// The stage flags `compile` and `compare` share (each adds `--distill-data` and its labels
/// under its own names).
#[derive(Args, Debug, Clone)]
pub struct StageFlags {
    #[arg(long, default_value_t = 4.0, requires = "distill_data")]
    pub temperature: f64,
    /// Weight of the teacher term (default 0.9 with distill labels, 1 without).
    #[arg(long, requires = "distill_data")]
    pub alpha: Option<f64>,
    /// Quantization-aware training in the quantize stage (on the distill data, from the
    /// original as teacher).
    #[arg(long, requires = "distill_data")]
    pub qat: bool,
    /// Weights of the quantize stage on an N-bit grid (2 to 8, stored as int8).
    #[arg(
        long = "weight-bits",
        value_name = "N",
        default_value_t = 8,
        requires = "distill_data"
    )]
    pub weight_bits: u32,
    /// Epochs of the --qat stage.
    #[arg(long, requires = "qat", default_value_t = super::train::QAT_EPOCHS)]
    pub qat_epochs: usize,
    /// Learning rate of the --qat stage.
    #[arg(long, requires = "qat", default_value_t = super::train::QAT_LR)]
    pub qat_lr: f64,
    /// The training flags of the distill stage.
    #[command(flatten, next_help_heading = "Training (with --distill-data)")]
    pub train: TrainingFlags,
}

/// What the stages take from the command line, whatever the command calls its flags.
pub struct StageInputs<'a> {
    /// Distillation samples, and their class ids.
    pub data: &'a Path,
    pub labels: Option<&'a Path>,
    /// Labelled held-out data for the accuracy column.
    pub val: Option<(&'a Path, &'a Path)>,
    pub flags: &'a StageFlags,
    pub prune: Option<f64>,
    /// Calibration data when the quantize stage runs.
    pub calib: Option<&'a Path>,
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
    let f = s.flags;
    let qat = if f.qat {
        let mut t = f.train.options_for(true)?;
        t.epochs = f.qat_epochs;
        t.lr = f.qat_lr;
        Some(t)
    } else {
        None
    };
    if !(2..=8).contains(&f.weight_bits) {
        anyhow::bail!("--weight-bits {}: expected 2 to 8", f.weight_bits);
    }
    let quantize = s.calib.map(|calib| {
        (
            calib,
            QuantizeStageOptions {
                method: Method::MinMax,
                options: kestrel_passes::quantize::QuantizeOptions {
                    weight_bits: f.weight_bits,
                    ..Default::default()
                },
                threads: f.train.threads,
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
            temperature: f.temperature,
            alpha: f
                .alpha
                .unwrap_or(if s.labels.is_some() { 0.9 } else { 1.0 }),
            train: f.train.options_for(false)?,
        }),
        quantize,
        eval: val.as_ref(),
        iters: s.iters,
    };
    kestrel::stages::run(original, model, &cfg)
        .with_context(|| format!("{}: running the stages", model.display()))
}
