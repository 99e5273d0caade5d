//! `kestrel compare`: pass pipelines side by side.

use super::{print_pass_report, write_text};
use anyhow::Result;
use clap::Args;
use kestrel::driver;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CompareArgs {
    pub model: PathBuf,
    /// A pipeline to compare (repeatable): O0, O1, O2 or a textual pipeline.
    #[arg(long = "pipeline", required = true)]
    pub pipelines: Vec<String>,
    /// Inputs (.npz with one array per graph input; arrays named after the graph outputs are the
    /// float reference). Default: deterministic pseudo-random data.
    #[arg(long = "inputs")]
    pub inputs: Option<PathBuf>,
    /// .npy of integer class ids, one per sample: adds top-1 accuracy.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Timed inferences per pipeline.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed inferences first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Also write the table as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Add a row quantized to int8 (the `int8` pipeline), calibrated with --calib.
    #[arg(long, value_enum)]
    pub quantize: Option<super::QuantizeMode>,
    /// Calibration data of the pipelines that quantize: .npy, .npz or a folder of them.
    #[arg(long, value_name = "DATA")]
    pub calib: Option<PathBuf>,
    /// Add a row pruned by this ratio before O2 (`prune(ratio=R),` + O2; docs/PRUNING.md).
    #[arg(long, value_name = "RATIO")]
    pub prune: Option<f64>,
}

pub fn run(args: CompareArgs) -> Result<()> {
    driver::check_threads_and_iters(args.threads, args.iters)?;
    let model = kestrel::load(&args.model)?;
    let mut pipelines = args.pipelines.clone();
    if args.quantize.is_some() && !pipelines.iter().any(|p| p == "int8") {
        pipelines.push("int8".into());
    }
    if let Some(r) = args.prune {
        let o2 = kestrel_passes::pipeline::named_pipeline("O2")
            .map_or("O2".to_string(), |p| p.to_string());
        pipelines.push(format!("prune(ratio={r}),{o2}"));
    }
    let opts = kestrel::compare::CompareOptions {
        pipelines,
        calib: args.calib.clone(),
        inputs: args.inputs.clone(),
        labels: args.labels.clone(),
        threads: args.threads,
        iters: args.iters,
        warmup: args.warmup,
    };
    let comparison = kestrel::compare::compare(model, &opts, &mut |r| print_pass_report(r, false))?;
    println!("{}", comparison.heading());
    println!("{}", kestrel::compare::table(&comparison.rows));
    if let Some(path) = &args.json {
        write_text(path, &comparison.to_json())?;
    }
    Ok(())
}
