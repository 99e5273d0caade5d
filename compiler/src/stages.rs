//! The whole story in one command (issue 15 item 6): original float → pruned → distilled →
//! quantized, each stage kept in memory, one [`StageRow`] per stage.
//!
//! `kestrel compile MODEL --prune R --distill-data X --labels Y --quantize int8 --calib C -o m.so`
//! runs [`run`] and compiles its final graph (docs/DISTILLATION.md "The whole story in one
//! command"). With `--qat` the quantize stage trains with fake quantization ([`qat_stage`]).

use crate::calibrate::{CalibrationData, JitCalibrator};
use crate::driver;
use anyhow::{bail, Context, Result};
use kestrel_ir::Graph;
use kestrel_passes::prune::PruneOptions;
use kestrel_passes::quantize::{Method, Quantize, QuantizeOptions};
use kestrel_passes::Pass;
use std::path::Path;
use std::sync::Arc;

/// One row of the summary table.
#[derive(Debug, Clone)]
pub struct StageRow {
    /// "float", "pruned", "distilled", "int8".
    pub stage: String,
    pub weight_bytes: u64,
    pub macs: u64,
    /// Median 1-thread JIT latency in milliseconds.
    pub latency_ms: Option<f64>,
    /// Top-1 accuracy in percent, when labels were given.
    pub accuracy: Option<f64>,
}

/// The rows of every stage that ran, and which data the accuracy column was measured on.
#[derive(Debug, Clone)]
pub struct StagesReport {
    pub rows: Vec<StageRow>,
    /// The graph of each row's stage, in row order (the last is what `run` returns).
    pub graphs: Vec<Graph>,
    /// "validation data" or "distill data (no --val-data)".
    pub accuracy_on: String,
}

impl StagesReport {
    /// The summary table as markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "| stage | weight bytes | MACs | latency (ms, 1 thread) | accuracy |\n|---|---:|---:|---:|---:|\n",
        );
        for r in &self.rows {
            let lat = r.latency_ms.map_or("-".into(), |l| format!("{l:.3}"));
            let acc = r.accuracy.map_or("-".into(), |a| format!("{a:.2} %"));
            s += &format!(
                "| {} | {} | {} | {lat} | {acc} |\n",
                r.stage, r.weight_bytes, r.macs
            );
        }
        s += &format!("\naccuracy measured on the {}\n", self.accuracy_on);
        s
    }
}

/// The prune stage: a pruned copy of `g`.
pub fn prune_stage(g: &Graph, options: &PruneOptions) -> Result<Graph> {
    let mut after = g.clone();
    kestrel_passes::prune::prune_with_activations(&mut after, options, None)
        .context("stage prune")?;
    Ok(after)
}

/// Options of the quantize stage.
#[derive(Debug, Clone)]
pub struct QuantizeStageOptions {
    pub method: Method,
    pub options: QuantizeOptions,
    pub threads: usize,
    /// Quantization-aware training with these loop options (on the distill stage's data and
    /// objective) instead of post-training quantization alone.
    pub qat: Option<crate::train::TrainOptions>,
}

/// The quantize stage: calibrated int8 QDQ of `g` (`model` names it in messages).
pub fn quantize_stage(
    g: &Graph,
    model: &Path,
    calib: &Path,
    opts: &QuantizeStageOptions,
) -> Result<Graph> {
    let mut g = g.clone();
    let data =
        CalibrationData::load(&g, calib, None).context("stage quantize: calibration data")?;
    let mut cx = driver::pass_context();
    cx.calibrator = Some(Arc::new(JitCalibrator {
        data,
        threads: opts.threads,
    }));
    let pass = Quantize {
        method: opts.method,
        options: opts.options.clone(),
    };
    pass.run(&mut g, &cx)
        .with_context(|| format!("stage quantize: {}", model.display()))?;
    Ok(g)
}

/// The quantize stage with quantization-aware training: `g` quantized (calibrated on `calib`),
/// then trained with fake quantization against `teacher` on the distill stage's data.
pub fn qat_stage(
    g: &Graph,
    teacher: &Graph,
    model: &Path,
    calib: &Path,
    distill: &DistillStage,
    opts: &QuantizeStageOptions,
    train: &crate::train::TrainOptions,
) -> Result<Graph> {
    let objective = crate::train::Objective::Distill {
        teacher,
        teacher_path: model,
        temperature: distill.temperature,
        alpha: distill.alpha,
    };
    let qat = crate::qat::QatOptions {
        calib: Some(calib.to_path_buf()),
        method: opts.method,
        quantize: opts.options.clone(),
    };
    let t = crate::qat::train(g, model, distill.data, &objective, None, train, &qat)
        .context("stage quantize (--qat)")?;
    Ok(t.graph)
}

/// The distill stage: `student` trained against `teacher` (the original model) on `data`.
pub fn distill_stage(
    teacher: &Graph,
    student: &Graph,
    model: &Path,
    data: &crate::train::data::Dataset,
    temperature: f64,
    alpha: f64,
    opts: &crate::train::TrainOptions,
) -> Result<Graph> {
    let objective = crate::train::Objective::Distill {
        teacher,
        teacher_path: model,
        temperature,
        alpha,
    };
    let trained = crate::train::train(student, model, data, &objective, None, opts)
        .context("stage distill")?;
    Ok(trained.graph)
}

/// The pipeline a stage's graph is compiled with, as `compile` compiles the last stage: O2, and
/// for a quantized stage O2 with the integer kernels' fixed-point requantization (the `int8`
/// pipeline after its `quantize`).
pub fn stage_pipeline(quantized: bool) -> String {
    let o2 = kestrel_passes::pipeline::named_pipeline("O2").expect("O2 is a named pipeline");
    if quantized {
        kestrel_passes::pipeline::with_fixed_point_requant(o2).to_string()
    } else {
        o2.to_string()
    }
}

/// One row for `g`: weight bytes, MACs, and, after [`stage_pipeline`], the median 1-thread
/// latency and the accuracy on `eval` (if labelled).
pub fn measure(
    stage: &str,
    g: &Graph,
    model: &Path,
    eval: Option<&crate::train::data::Dataset>,
    iters: usize,
    quantized: bool,
) -> Result<StageRow> {
    let pipeline = stage_pipeline(quantized);
    let latency_ms = crate::prune::latencies_after(&[g], model, iters, &pipeline)
        .with_context(|| format!("stage {stage}: latency"))?
        .first()
        .copied();
    let accuracy = match eval {
        Some(d) if d.labels.is_some() => {
            let mut compiled = g.clone();
            driver::run_pipeline(
                &mut compiled,
                &kestrel_passes::PipelineOptions {
                    pipeline: pipeline.clone(),
                    ..Default::default()
                },
                model,
            )
            .with_context(|| format!("stage {stage}: {pipeline}"))?;
            let f = crate::train::eval::Forward::compile(&compiled, model, 32, 1)
                .with_context(|| format!("stage {stage}: compiling for accuracy"))?;
            Some(
                100.0
                    * f.accuracy(d)
                        .with_context(|| format!("stage {stage}: accuracy"))?,
            )
        }
        _ => None,
    };
    Ok(StageRow {
        stage: stage.into(),
        weight_bytes: driver::weight_bytes(g) as u64,
        macs: {
            let mut b = g.clone();
            driver::bind_default_batch(&mut b, model)
                .with_context(|| format!("stage {stage}: binding the batch"))?;
            crate::prune::total_macs(&b)
        },
        latency_ms,
        accuracy,
    })
}

/// What to run: any subset of prune, distill and quantize, in that order.
pub struct StagesConfig<'a> {
    pub prune: Option<PruneOptions>,
    /// Distillation data (inputs, labels optional when `alpha` is 1).
    pub distill: Option<DistillStage<'a>>,
    pub quantize: Option<(&'a Path, QuantizeStageOptions)>,
    /// Accuracy data; without it the distill data is used and the report says so.
    pub eval: Option<&'a crate::train::data::Dataset>,
    /// Latency runs per stage (median).
    pub iters: usize,
}

/// The distill stage's inputs.
pub struct DistillStage<'a> {
    pub data: &'a crate::train::data::Dataset,
    pub temperature: f64,
    pub alpha: f64,
    pub train: crate::train::TrainOptions,
}

/// Runs the configured stages on `original` (loaded from `model`), measuring each; returns the
/// final stage's graph and the report. Nothing is written.
pub fn run(original: &Graph, model: &Path, cfg: &StagesConfig) -> Result<(Graph, StagesReport)> {
    if let Some(d) = &cfg.distill {
        if d.data.labels.is_none() && d.alpha != 1.0 {
            bail!("stage distill: --distill-data needs --distill-labels unless --alpha 1 (teacher only)");
        }
    }
    let (eval, accuracy_on) = match (cfg.eval, &cfg.distill) {
        (Some(e), _) => (Some(e), "validation data".to_string()),
        (None, Some(d)) => (
            Some(d.data),
            "distill data (no --val-data given)".to_string(),
        ),
        (None, None) => (None, "- (no labelled data)".to_string()),
    };
    let mut rows = vec![measure("float", original, model, eval, cfg.iters, false)?];
    let mut graphs = vec![original.clone()];
    let mut g = original.clone();
    if let Some(p) = &cfg.prune {
        g = prune_stage(&g, p)?;
        rows.push(measure("pruned", &g, model, eval, cfg.iters, false)?);
        graphs.push(g.clone());
    }
    if let Some(d) = &cfg.distill {
        g = distill_stage(
            original,
            &g,
            model,
            d.data,
            d.temperature,
            d.alpha,
            &d.train,
        )?;
        rows.push(measure("distilled", &g, model, eval, cfg.iters, false)?);
        graphs.push(g.clone());
    }
    if let Some((calib, q)) = &cfg.quantize {
        let (stage, quantized) = match (&q.qat, &cfg.distill) {
            (Some(train), Some(d)) => (
                "int8 (QAT)",
                qat_stage(&g, original, model, calib, d, q, train)?,
            ),
            (Some(_), None) => {
                bail!("stage quantize: --qat trains on the distill data: give --distill-data")
            }
            (None, _) => ("int8", quantize_stage(&g, model, calib, q)?),
        };
        g = quantized;
        rows.push(measure(stage, &g, model, eval, cfg.iters, true)?);
        graphs.push(g.clone());
    }
    Ok((
        g,
        StagesReport {
            rows,
            graphs,
            accuracy_on,
        },
    ))
}
