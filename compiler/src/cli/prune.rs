//! `kestrel prune`: structured pruning into a smaller float ONNX model (`../shared/CLI.md`;
//! docs/PRUNING.md). MODEL is loaded, the `prune` pass's analysis, importance and selection run
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
    #[arg(long)]
    pub ratio: f64,
    /// How channels are scored: l2 (Σw², the default), l1 (Σ|w|) or bn (BatchNorm |γ|).
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
    /// Calibration data (accepted for the sensitivity scan; not used by the plain pruning).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Also write the report as JSON to F.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Timed runs of each model for the latency columns (0: not measured).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// The pruned model: .onnx or .kir.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn run(args: PruneArgs) -> Result<()> {
    for out in std::iter::once(&args.output).chain(args.json.iter()) {
        if driver::same_file(out, &args.model) {
            bail!("{}: the output would overwrite the model", out.display());
        }
    }
    let ext = kestrel::tensor_io::extension(&args.output);
    if !matches!(ext.as_deref(), Some("kir" | "onnx")) {
        bail!(
            "{}: the output must be .onnx or .kir",
            args.output.display()
        );
    }
    let importance = Importance::parse(&args.importance)
        .map_err(|e| anyhow::anyhow!("--importance {}: {e}", args.importance))?;
    let options = PruneOptions {
        ratio: args.ratio,
        importance,
        global: args.global,
        round_to: args.round_to,
        keep: args.keep.clone(),
    };
    let before = driver::load(&args.model)?.graph;
    let mut after = before.clone();
    let (analysis, choices) = kestrel_passes::prune::prune(&mut after, &options)
        .with_context(|| format!("{}: pruning", args.model.display()))?;
    let iters = (args.iters > 0).then_some(args.iters);
    let report = kestrel::prune::report(&before, &after, &analysis, &choices, &args.model, iters)?;
    print!("{}", report.markdown());
    match ext.as_deref() {
        Some("kir") => kestrel::dump::write_kir(&after, &args.output, true)?,
        _ => kestrel::onnx::write_model(&after, &Default::default(), &args.output)
            .with_context(|| format!("writing the pruned model to {}", args.output.display()))?,
    }
    if let Some(j) = &args.json {
        let text = report.json();
        kestrel::tensor_io::write_atomically(j, |f| std::io::Write::write_all(f, text.as_bytes()))
            .with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(())
}
