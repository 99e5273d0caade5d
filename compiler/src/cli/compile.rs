//! `kestrel compile`: a self-contained shared object and its C header.

use super::stages::{StageFlags, StageInputs};
use super::{print_pass_report, InputArgs, PipelineArgs};
use anyhow::{bail, Result};
use clap::Args;
use kestrel::driver;
use kestrel::stages::StagesReport;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct CompileArgs {
    /// An .onnx model or a .kir dump.
    pub model: PathBuf,
    /// The shared object to write; its C header is written beside it (OUT.so -> OUT.h).
    #[arg(short = 'o', long = "output", value_name = "OUT.so")]
    pub output: PathBuf,
    /// Target triple: x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu or
    /// riscv64gc-unknown-linux-gnu (default: this machine).
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    /// CPU features: native (this machine; the default for the host target), generic (the
    /// target's baseline; the default otherwise) or a comma list added to the baseline, e.g.
    /// +avx2,+fma or +dotprod,+i8mm or +v.
    #[arg(long, value_name = "native|generic|FEATURES")]
    pub cpu: Option<String>,
    /// Prefix of every exported symbol (NAME_run, NAME_model, ...), so several models link
    /// into one program.
    #[arg(long = "symbol-prefix", value_name = "NAME", default_value = "kestrel")]
    pub symbol_prefix: String,
    /// Split large convolutions and matrix products into at most N parallel tasks, which the
    /// host's parallel-for runs on its threads (1: no splitting).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub tasks: usize,
    /// Fewest multiply-adds worth a task of their own (with --tasks above 1).
    #[arg(long = "min-task-macs", value_name = "N")]
    pub min_task_macs: Option<usize>,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub stages: StageArgs,
}

/// `--distill-data`: prune, distill, quantize and compile as stages, with one summary table
/// (docs/DISTILLATION.md "The whole story in one command").
#[derive(Args, Debug, Clone)]
pub struct StageArgs {
    /// Distill the (pruned) model from the original on these samples before quantizing.
    #[arg(long, value_name = "DATA")]
    pub distill_data: Option<PathBuf>,
    /// Class ids of --distill-data, one per sample.
    #[arg(long, requires = "distill_data")]
    pub labels: Option<PathBuf>,
    /// Labelled held-out data for the accuracy column (default: the distill data).
    #[arg(long, requires_all = ["val_labels", "distill_data"])]
    pub val_data: Option<PathBuf>,
    #[arg(long, requires = "val_data")]
    pub val_labels: Option<PathBuf>,
    #[command(flatten)]
    pub flags: StageFlags,
}

/// Refuses an `-o` (or the header beside it) that is a file the command reads.
fn check_outputs(args: &CompileArgs) -> Result<()> {
    let header = kestrel::aot::header_path(&args.output);
    let files = args.inputs.files();
    let s = &args.stages;
    let mut inputs: Vec<&Path> = vec![&args.model];
    inputs.extend(files.iter().map(PathBuf::as_path));
    let optional = [
        &args.pipeline.calib,
        &s.distill_data,
        &s.labels,
        &s.val_data,
        &s.val_labels,
    ];
    inputs.extend(optional.into_iter().flatten().map(PathBuf::as_path));
    driver::refuse_overwriting_inputs(&[&args.output, &header], &inputs)
}

pub fn run(args: CompileArgs) -> Result<()> {
    kestrel::aot::check_tasks(args.tasks)?;
    check_outputs(&args)?;
    let mut model = kestrel::load(&args.model)?;
    let mut passes = args.pipeline.options();
    let mut table = None;
    if args.stages.distill_data.is_some() {
        let (graph, report) = stages(&args, &model.graph)?;
        model = kestrel::driver::LoadedModel::from_graph(graph, args.model.clone());
        // The stages applied pruning and quantization; the pipeline only optimises, with the
        // integer kernels' fixed-point requantization when a stage quantized.
        passes.prune = None;
        passes.quantized = passes.quantize;
        passes.quantize = false;
        passes.calib = None;
        table = Some(report);
    }
    let mut aot = kestrel::aot::AotOptions {
        target: args.target.clone(),
        cpu: args.cpu.clone(),
        prefix: args.symbol_prefix.clone(),
        tasks: args.tasks,
        ..Default::default()
    };
    if let Some(n) = args.min_task_macs {
        aot.min_task_macs = n;
    }
    let opts = kestrel::CompileSoOptions {
        passes,
        inputs: args.inputs.spec()?,
        aot,
    };
    let time_passes = args.pipeline.time_passes;
    let out = kestrel::compile_so(model, &args.output, &opts, &mut |r| {
        print_pass_report(r, time_passes)
    })?;
    eprintln!(
        "kestrel: wrote {} ({} bytes: code {}, weights and tables {}; workspace {} bytes) and {}",
        out.so.display(),
        out.sizes.file,
        out.sizes.code,
        out.sizes.rodata,
        out.info.workspace_size,
        out.header.display()
    );
    if let Some(report) = table {
        say_raw!("{}", report.markdown());
    }
    Ok(())
}

/// Runs the stages `--prune`, `--distill-data` and `--quantize` ask for on `original`.
fn stages(
    args: &CompileArgs,
    original: &kestrel_ir::Graph,
) -> Result<(kestrel_ir::Graph, StagesReport)> {
    let st = &args.stages;
    if st.flags.qat && args.pipeline.quantize.is_none() {
        bail!("--qat trains for quantization: it needs --quantize int8 --calib DATA");
    }
    let calib = match (&args.pipeline.quantize, &args.pipeline.calib) {
        (Some(_), Some(calib)) => Some(calib.as_path()),
        (Some(_), None) => bail!("--quantize int8 needs calibration data: --calib DATA"),
        _ => None,
    };
    let inputs = StageInputs {
        data: st.distill_data.as_deref().expect("checked by the caller"),
        labels: st.labels.as_deref(),
        val: st.val_data.as_deref().zip(st.val_labels.as_deref()),
        flags: &st.flags,
        prune: args.pipeline.prune,
        calib,
        iters: 10,
    };
    super::stages::run(&args.model, original, &inputs)
}
