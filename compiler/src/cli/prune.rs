//! `kestrel prune`: structured pruning into a smaller float ONNX model, or with `--sensitivity`
//! the per-group accuracy scan (`../shared/CLI.md`; docs/PRUNING.md). MODEL is loaded, the `prune` pass's analysis, importance and selection run
//! ([`kestrel_passes::prune::prune`]), the report is printed (and written as JSON with `--json`),
//! and the pruned graph written as ONNX (docs/ONNX_EXPORT.md) or textual IR (`.kir`).

use anyhow::{bail, Context, Result};
use clap::Args;
use kestrel::driver;
use kestrel_passes::prune::{Importance, PruneOptions};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PruneArgs {
    pub model: PathBuf,
    /// The share of channels removed from every prunable group (or of all, with --global).
    #[arg(long, required_unless_present = "sensitivity")]
    pub ratio: Option<f64>,
    /// How channels are scored: l2 (Σw², the default), l1 (Σ|w|), bn (BatchNorm |γ|) or
    /// activation (mean |x| where consumers read the channel, over --calib).
    #[arg(long, default_value = "l2")]
    pub importance: String,
    /// One threshold over all groups instead of the same share of each.
    #[arg(long)]
    pub global: bool,
    /// Kept channel counts are multiples of N.
    #[arg(long = "round-to", default_value_t = 1)]
    pub round_to: usize,
    /// Conv/Gemm/MatMul nodes whose groups keep every channel.
    #[arg(long, num_args = 1..)]
    pub keep: Vec<String>,
    /// Print each group's accuracy (with --labels) or agreement with the unpruned model against
    /// ratio, on the calibration data, instead of pruning.
    #[arg(long, requires = "calib", conflicts_with_all = ["ratio", "output", "json"])]
    pub sensitivity: bool,
    /// Samples for --sensitivity and --importance activation: .npy, .npz or a folder of them.
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Integer class ids, one per calibration sample, for --sensitivity.
    #[arg(long, requires = "sensitivity")]
    pub labels: Option<PathBuf>,
    /// The ratios --sensitivity tries.
    #[arg(long, value_delimiter = ',', default_values_t = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])]
    pub ratios: Vec<f64>,
    /// Use only the first N calibration samples.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Also write the report as JSON to F.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Timed runs of each model for the latency columns (0: not measured).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// The pruned model: .onnx or .kir.
    #[arg(short = 'o', long = "output", required_unless_present = "sensitivity")]
    pub output: Option<PathBuf>,
}

fn sensitivity(args: &PruneArgs, options: &PruneOptions) -> Result<()> {
    let calib = args.calib.as_ref().expect("clap requires --calib");
    if args.samples == Some(0) {
        bail!("--samples must be at least 1");
    }
    for &r in &args.ratios {
        if !(0.0..1.0).contains(&r) {
            bail!("--ratios: {r} is not in [0, 1)");
        }
    }
    let g = driver::load(&args.model)?.graph;
    let data = kestrel::calibrate::CalibrationData::load(&g, calib, args.samples)?;
    let labels = match &args.labels {
        Some(p) => {
            let t = kestrel::tensor_io::read_tensor_file(p)
                .with_context(|| format!("reading the labels {}", p.display()))?;
            Some(kestrel::sensitivity::check_labels(
                &t,
                p,
                &data,
                args.samples.is_some(),
            )?)
        }
        None => None,
    };
    let scan = kestrel::prune::scan(&g, &args.model, &data, labels, options, &args.ratios, 1)?;
    say_raw!("{}", scan.markdown());
    Ok(())
}

pub fn run(args: PruneArgs) -> Result<()> {
    let importance = Importance::parse(&args.importance)
        .map_err(|e| anyhow::anyhow!("--importance {}: {e}", args.importance))?;
    let mut options = PruneOptions {
        ratio: args.ratio.unwrap_or(0.5),
        importance,
        global: args.global,
        round_to: args.round_to,
        keep: args.keep.clone(),
        only: None,
    };
    if args.sensitivity {
        return sensitivity(&args, &options);
    }
    let output = args.output.clone().expect("clap requires -o");
    for out in std::iter::once(&output).chain(args.json.iter()) {
        if driver::same_file(out, &args.model) {
            bail!("{}: the output would overwrite the model", out.display());
        }
    }
    let ext = kestrel::tensor_io::extension(&output);
    if !matches!(ext.as_deref(), Some("kir" | "onnx")) {
        bail!("{}: the output must be .onnx or .kir", output.display());
    }
    options.ratio = args.ratio.expect("clap requires --ratio");
    let before = driver::load(&args.model)?.graph;
    let stats = match (&args.calib, importance) {
        (Some(calib), Importance::Activation) => {
            if args.samples == Some(0) {
                bail!("--samples must be at least 1");
            }
            let data = kestrel::calibrate::CalibrationData::load(&before, calib, args.samples)?;
            Some(kestrel::prune::activation_statistics(
                &before,
                &args.model,
                &data,
                1,
            )?)
        }
        (None, Importance::Activation) => {
            bail!("--importance activation needs --calib DATA: the samples its statistics are measured on")
        }
        (Some(_), _) => bail!(
            "--calib is used by --importance activation and --sensitivity; with --importance {} \
             it would be ignored",
            importance.name()
        ),
        (None, _) => None,
    };
    let mut after = before.clone();
    let (analysis, choices) =
        kestrel_passes::prune::prune_with_activations(&mut after, &options, stats.as_ref())
            .with_context(|| format!("{}: pruning", args.model.display()))?;
    let iters = (args.iters > 0).then_some(args.iters);
    let report = kestrel::prune::report(&before, &after, &analysis, &choices, &args.model, iters)?;
    say_raw!("{}", report.markdown());
    match ext.as_deref() {
        Some("kir") => kestrel::dump::write_kir(&after, &output, true)?,
        _ => kestrel::onnx::write_model(&after, &Default::default(), &output)
            .with_context(|| format!("writing the pruned model to {}", output.display()))?,
    }
    if let Some(j) = &args.json {
        let text = report.json();
        kestrel::tensor_io::write_atomically(j, |f| std::io::Write::write_all(f, text.as_bytes()))
            .with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(())
}
