//! Quantization-aware training as `finetune --qat`, `distill --qat` and `compile --qat` run it
//! (docs/TRAINING.md "Quantization-aware training"): the model is quantized to int8 QDQ with
//! calibration (unless it is QDQ already), made trainable with fake quantization at the
//! calibrated scales (`kestrel_passes::quantize::qat::prepare`), trained by the loop
//! ([`crate::train`]), and written back as int8 QDQ at the same scales.

use crate::calibrate::{CalibrationData, JitCalibrator};
use crate::train::{self, data::Dataset, eval::Forward, Objective, TrainOptions, Trained};
use anyhow::{Context, Result};
use kestrel_ir::Graph;
use kestrel_passes::quantize::{self, qat, Method, QuantizeOptions};
use std::path::{Path, PathBuf};

/// How the model is quantized before training.
#[derive(Clone, Debug)]
pub struct QatOptions {
    /// Calibration data; `None`: the training data.
    pub calib: Option<PathBuf>,
    pub method: Method,
    pub quantize: QuantizeOptions,
}

impl Default for QatOptions {
    fn default() -> Self {
        QatOptions {
            calib: None,
            method: Method::MinMax,
            quantize: QuantizeOptions::default(),
        }
    }
}

/// A finished quantization-aware run.
pub struct QatTrained {
    /// The trained model in int8 QDQ form.
    pub graph: Graph,
    /// The post-training-quantized model training started from.
    pub ptq: Graph,
    /// The loop's record (its graph is the fake-quantized one).
    pub trained: Trained,
    /// Accuracy (0..1) of `ptq` on the validation data, when given.
    pub ptq_accuracy: Option<f64>,
    /// Accuracy (0..1) of `graph` on the validation data, when given. It can differ slightly
    /// from the loop's last held-out accuracy, measured with float biases: the written model's
    /// biases are rounded to int32 at scale `s_x·s_w`.
    pub accuracy: Option<f64>,
}

/// Whether `g` is a float model to quantize first (it has a layer `quantize::plan` can
/// quantize) rather than a QDQ model to train as it is.
fn needs_quantizing(g: &Graph) -> bool {
    !quantize::plan(g).layers.is_empty()
}

/// The post-training-quantized form of `model` and its trainable form. A QDQ model is taken as
/// it is (its weights start from their dequantized values); a float one is calibrated on
/// `opts.calib` (default `data`) and quantized, its weights starting from their float values.
pub fn prepare(
    model: &Graph,
    path: &Path,
    data: &Path,
    opts: &QatOptions,
    threads: usize,
) -> Result<(Graph, qat::Prepared)> {
    let mut ptq = model.clone();
    let originals = if needs_quantizing(model) {
        let calib = opts.calib.as_deref().unwrap_or(data);
        let calibrator = JitCalibrator {
            data: CalibrationData::load(model, calib, None)
                .context("--qat: the calibration data")?,
            threads,
        };
        let applied =
            quantize::quantize_calibrated(&mut ptq, &calibrator, opts.method, &opts.quantize)
                .with_context(|| format!("{}: quantizing for --qat", path.display()))?;
        qat::originals(model, &applied)
    } else {
        Default::default()
    };
    let prepared = qat::prepare(&ptq, &originals).with_context(|| {
        format!(
            "{}: --qat needs a model with Conv, Gemm or MatMul layers to quantize, or a QDQ \
             model with int8 weights",
            path.display()
        )
    })?;
    Ok((ptq, prepared))
}

/// Quantization-aware training of `model` on `data` for `objective`: [`prepare`], the loop
/// with the grid bounds frozen and the float weights kept out of constant folding, then
/// `Prepared::finalize`.
pub fn train(
    model: &Graph,
    path: &Path,
    data: &Dataset,
    objective: &Objective,
    validation: Option<&Dataset>,
    options: &TrainOptions,
    qat_options: &QatOptions,
) -> Result<QatTrained> {
    let (ptq, prepared) = prepare(model, path, &data.path, qat_options, options.threads)?;
    let accuracy_of = |g: &Graph, what: &str| -> Result<Option<f64>> {
        match validation {
            Some(v) => Ok(Some(
                Forward::compile(g, path, options.batch.min(v.samples), options.threads)?
                    .accuracy(v)
                    .with_context(|| format!("the {what} model's accuracy"))?,
            )),
            None => Ok(None),
        }
    };
    let ptq_accuracy = accuracy_of(&ptq, "post-training-quantized")?;
    let mut options = options.clone();
    options.frozen.extend(prepared.frozen());
    options
        .unfolded
        .extend(prepared.weights.iter().map(|w| w.name.clone()));
    let trained = train::train(&prepared.graph, path, data, objective, validation, &options)?;
    let graph = prepared
        .finalize(&trained.graph)
        .with_context(|| format!("{}: writing the trained weights as int8", path.display()))?;
    let accuracy = accuracy_of(&graph, "trained int8")?;
    Ok(QatTrained {
        graph,
        ptq,
        trained,
        ptq_accuracy,
        accuracy,
    })
}
