//! `kestrel quantize`: int8 post-training quantization of a float model into QDQ form
//! (`../shared/CLI.md`; the scheme: docs/QUANTIZATION.md).
//!
//! MODEL is loaded (a symbolic batch dimension stays symbolic), the calibration data (`--calib`) run on the
//! JIT ([`kestrel::calibrate`]), and the `quantize` pass applied. `-o OUT.kir` writes the textual
//! IR (as `kestrel dump -o`); `-o OUT.onnx` standard QDQ ONNX (docs/ONNX_EXPORT.md).

use anyhow::{bail, Context, Result};
use clap::Args;
use kestrel::calibrate::{CalibrationData, JitCalibrator};
use kestrel::driver;
use kestrel::sensitivity;
use kestrel_passes::quantize::{Method, Quantize, QuantizeOptions};
use kestrel_passes::Pass;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    pub model: PathBuf,
    /// Calibration data: .npy (first axis: samples), .npz (one array per graph input) or a folder.
    #[arg(long)]
    pub calib: PathBuf,
    /// How activation ranges are chosen: minmax, percentile, entropy or mse.
    #[arg(long, default_value = "minmax")]
    pub method: String,
    /// The percentage of values the range keeps with --method percentile (default 99.99).
    #[arg(long)]
    pub percentile: Option<f64>,
    /// One scale per weight tensor instead of one per output channel.
    #[arg(long = "per-tensor")]
    pub per_tensor: bool,
    /// Weights on a symmetric grid of N bits (2..=8; 4: 15 levels), stored as int8.
    #[arg(long = "weight-bits", value_name = "N", default_value_t = 8)]
    pub weight_bits: u32,
    /// Calibrate on the first N samples only.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Layers (node names) to leave in float.
    #[arg(long, num_args = 1..)]
    pub exclude: Vec<String>,
    /// Keep the most sensitive layers in float until top-1 accuracy on the calibration samples
    /// (against --labels) is at most this many percentage points below the float model's.
    #[arg(
        long = "max-accuracy-drop",
        requires = "labels",
        conflicts_with = "min_agreement"
    )]
    pub max_accuracy_drop: Option<String>,
    /// Integer class ids, one per calibration sample (.npy), for --max-accuracy-drop.
    #[arg(long, requires = "max_accuracy_drop")]
    pub labels: Option<PathBuf>,
    /// Keep the most sensitive layers in float until this share of the calibration samples
    /// (0.99 or 99%) gets the float model's top-1 class.
    #[arg(long = "min-agreement")]
    pub min_agreement: Option<String>,
    /// JIT worker threads for calibration.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The quantized model: .kir (textual IR) or .onnx (QDQ ONNX).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// The quantized graph of `args` (everything but writing it).
pub fn quantized_graph(args: &QuantizeArgs) -> Result<kestrel_ir::Graph> {
    let method = Method::parse(&args.method, args.percentile)
        .map_err(|e| anyhow::anyhow!("--method {}: {e}", args.method))?;
    if args.samples == Some(0) {
        bail!("--samples must be at least 1");
    }
    let target = sensitivity_target(args)?;
    let mut g = driver::load(&args.model)?.graph;
    let data = CalibrationData::load(&g, &args.calib, args.samples)?;
    let target = match target {
        Some(t) => Some(t.resolve(&data, args.samples.is_some())?),
        None => None,
    };
    if !(2..=8).contains(&args.weight_bits) {
        anyhow::bail!("--weight-bits {}: expected 2 to 8", args.weight_bits);
    }
    let options = QuantizeOptions {
        per_tensor: args.per_tensor,
        exclude: args.exclude.clone(),
        weight_bits: args.weight_bits,
    };
    if let Some(target) = target {
        let calibrator = JitCalibrator {
            data,
            threads: args.threads,
        };
        let (chosen, report) = sensitivity::choose(
            sensitivity::Inputs {
                graph: &g,
                model: &args.model,
                data: &calibrator.data,
                options: &options,
                calibrator: &calibrator,
                method,
                threads: args.threads,
            },
            target,
        )?;
        say_raw!("{}", report.report());
        return Ok(chosen);
    }
    let mut cx = driver::pass_context();
    cx.calibrator = Some(Arc::new(JitCalibrator {
        data,
        threads: args.threads,
    }));
    let pass = Quantize { method, options };
    pass.run(&mut g, &cx)
        .with_context(|| format!("{}: quantizing", args.model.display()))?;
    for note in cx.notes.lock().map(|n| n.clone()).unwrap_or_default() {
        eprintln!("kestrel: {note}");
    }
    Ok(g)
}

/// The sensitivity target of the options, its labels not yet checked against the data.
enum TargetArg {
    AccuracyDrop { points: f64, labels: PathBuf },
    Agreement(f64),
}

impl TargetArg {
    fn resolve(self, data: &CalibrationData, capped: bool) -> Result<sensitivity::Target> {
        Ok(match self {
            TargetArg::AccuracyDrop { points, labels } => {
                let t = kestrel::tensor_io::read_tensor_file(&labels)
                    .with_context(|| format!("reading the labels {}", labels.display()))?;
                sensitivity::Target::MaxAccuracyDrop {
                    points,
                    labels: sensitivity::check_labels(&t, &labels, data, capped)?,
                }
            }
            TargetArg::Agreement(fraction) => sensitivity::Target::MinAgreement { fraction },
        })
    }
}

fn sensitivity_target(args: &QuantizeArgs) -> Result<Option<TargetArg>> {
    Ok(
        match (&args.max_accuracy_drop, &args.labels, &args.min_agreement) {
            (Some(x), Some(labels), None) => Some(TargetArg::AccuracyDrop {
                points: sensitivity::parse_accuracy_drop(x)?,
                labels: labels.clone(),
            }),
            (None, None, Some(a)) => Some(TargetArg::Agreement(sensitivity::parse_agreement(a)?)),
            (None, None, None) => None,
            _ => {
                bail!("give --max-accuracy-drop X with --labels Y, or --min-agreement A, not both")
            }
        },
    )
}

fn write_model(g: &kestrel_ir::Graph, path: &Path) -> Result<()> {
    match kestrel::tensor_io::extension(path).as_deref() {
        Some("kir") => kestrel::dump::write_kir(g, path, true),
        Some("onnx") => kestrel::onnx::write_model(g, &Default::default(), path)
            .with_context(|| format!("writing the quantized model to {}", path.display())),
        _ => bail!("{}: the output must be .onnx or .kir", path.display()),
    }
}

pub fn run(args: QuantizeArgs) -> Result<()> {
    if driver::same_file(&args.output, &args.model) {
        bail!(
            "{}: the output would overwrite the model",
            args.output.display()
        );
    }
    if !matches!(
        kestrel::tensor_io::extension(&args.output).as_deref(),
        Some("kir" | "onnx")
    ) {
        bail!(
            "{}: the output must be .onnx or .kir",
            args.output.display()
        );
    }
    let g = quantized_graph(&args)?;
    write_model(&g, &args.output)
}
