//! `kestrel compare`: pass pipelines side by side.

use super::{print_pass_report, write_text};
use anyhow::{bail, Result};
use clap::Args;
use kestrel::driver;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CompareArgs {
    pub model: PathBuf,
    /// A pipeline to compare (repeatable): O0, O1, O2 or a textual pipeline.
    #[arg(long = "pipeline", required_unless_present = "distill_data")]
    pub pipelines: Vec<String>,
    /// Inputs (.npz with one array per graph input; arrays named after the graph outputs are the
    /// float reference). Default: deterministic pseudo-random data.
    #[arg(long = "inputs")]
    pub inputs: Option<PathBuf>,
    /// .npy of integer class ids, one per sample: adds top-1 accuracy.
    #[arg(long)]
    pub labels: Option<PathBuf>,
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
    /// Add a row pruned by this ratio before O2 (`prune(ratio=R),` + O2; docs/PRUNING.md); with
    /// --distill-data, the prune stage.
    #[arg(long, value_name = "RATIO")]
    pub prune: Option<f64>,
    #[command(flatten)]
    pub stages: CompareStageArgs,
}

/// `--distill-data`: the stages of `compile --distill-data` as rows (float, pruned with
/// --prune, distilled from the model, int8 with --quantize int8 --calib; docs/DISTILLATION.md).
#[derive(Args, Debug)]
pub struct CompareStageArgs {
    /// Distill the (pruned) model from the original on these samples; adds one row per stage.
    #[arg(long, value_name = "DATA")]
    pub distill_data: Option<PathBuf>,
    /// Class ids of --distill-data, one per sample (--labels labels --inputs).
    #[arg(long, requires = "distill_data")]
    pub distill_labels: Option<PathBuf>,
    /// The stage flags; their --threads also runs the timed inferences.
    #[command(flatten)]
    pub flags: super::stages::StageFlags,
}

pub fn run(args: CompareArgs) -> Result<()> {
    let threads = args.stages.flags.train.threads;
    driver::check_threads_and_iters(threads, args.iters)?;
    let model = kestrel::load(&args.model)?;
    let mut pipelines = args.pipelines.clone();
    let mut graphs = Vec::new();
    if let Some(data) = &args.stages.distill_data {
        graphs = stage_rows(&args, data, &model.graph)?;
    } else {
        if args.quantize.is_some() && !pipelines.iter().any(|p| p == "int8") {
            pipelines.push("int8".into());
        }
        if let Some(r) = args.prune {
            let o2 = kestrel_passes::pipeline::named_pipeline("O2")
                .map_or("O2".to_string(), |p| p.to_string());
            pipelines.push(format!("prune(ratio={r}),{o2}"));
        }
    }
    let opts = kestrel::compare::CompareOptions {
        pipelines,
        calib: args.calib.clone(),
        inputs: args.inputs.clone(),
        labels: args.labels.clone(),
        threads,
        iters: args.iters,
        warmup: args.warmup,
        graphs,
    };
    let comparison = kestrel::compare::compare(model, &opts, &mut |r| print_pass_report(r, false))?;
    say!("{}", comparison.heading());
    say!("{}", kestrel::compare::table(&comparison.rows));
    if let Some(path) = &args.json {
        write_text(path, &comparison.to_json())?;
    }
    Ok(())
}

/// The stages (`kestrel::stages`) of `original` as rows: each stage's graph with the pipeline
/// `compile` would give it.
fn stage_rows(
    args: &CompareArgs,
    data: &std::path::Path,
    original: &kestrel_ir::Graph,
) -> Result<Vec<kestrel::compare::GraphRow>> {
    let st = &args.stages;
    if st.flags.qat && args.quantize.is_none() {
        bail!("--qat trains for quantization: it needs --quantize int8 --calib DATA");
    }
    let calib = match (&args.quantize, &args.calib) {
        (Some(_), Some(c)) => Some(c.as_path()),
        (Some(_), None) => bail!("--quantize int8 needs calibration data: --calib DATA"),
        _ => None,
    };
    let inputs = super::stages::StageInputs {
        data,
        labels: st.distill_labels.as_deref(),
        val: None,
        flags: &st.flags,
        prune: args.prune,
        calib,
        iters: 1,
    };
    let (_, report) = super::stages::run(&args.model, original, &inputs)?;
    Ok(report
        .rows
        .iter()
        .zip(report.graphs)
        .map(|(row, graph)| kestrel::compare::GraphRow {
            label: format!("stage: {}", row.stage),
            pipeline: kestrel::stages::stage_pipeline(row.stage.starts_with("int8")),
            graph,
        })
        .collect())
}
