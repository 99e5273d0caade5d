//! `kestrel compile`: a self-contained shared object and its C header.

use super::{print_pass_report, InputArgs, PipelineArgs};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

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
}

pub fn run(args: CompileArgs) -> Result<()> {
    kestrel::aot::check_tasks(args.tasks)?;
    let model = kestrel::load(&args.model)?;
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
        passes: args.pipeline.options(),
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
    Ok(())
}
