//! `kestrel run`: one inference of an ONNX or `.kir` model in process, or of a compiled `.so`.

use super::{print_pass_report, BackendArg, InputArgs, PipelineArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use kestrel::driver;
use kestrel::Backend;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// An .onnx model, a .kir dump, or a shared object written by `kestrel compile`.
    pub model: PathBuf,
    /// Execution backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Jit)]
    pub backend: BackendArg,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Write DIR/<output name>.npy per graph output.
    #[arg(long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Write all outputs into one .npz keyed by output name.
    #[arg(long = "outputs", value_name = "FILE.npz")]
    pub outputs: Option<PathBuf>,
    /// Print a summary of each output on stdout.
    #[arg(long)]
    pub print: bool,
}

pub fn run(args: RunArgs) -> Result<()> {
    driver::check_threads(args.threads)?;
    if kestrel::tensor_io::extension(&args.model).as_deref() == Some("so") {
        return run_so(args);
    }
    let model = kestrel::load(&args.model)?;
    let opts = kestrel::InProcessOptions {
        backend: args.backend.into(),
        passes: args.pipeline.options(),
        threads: args.threads,
        inputs: args.inputs.spec()?,
    };
    let time_passes = args.pipeline.time_passes;
    let named = kestrel::run(model, &opts, &mut |r| print_pass_report(r, time_passes))?;
    show_outputs(&named, &args)
}

/// `kestrel run m.so`: the shared object's own code through `kestrel_runtime::Model`, with the
/// same input and output options as for ONNX models.
fn run_so(args: RunArgs) -> Result<()> {
    if !args.pipeline.options().is_default() {
        bail!(
            "{}: pipeline options do not apply to a compiled .so (give them to `kestrel compile`)",
            args.model.display()
        );
    }
    if args.backend != BackendArg::Jit {
        bail!(
            "{}: --backend {} does not apply to a compiled .so, which runs its own code",
            args.model.display(),
            Backend::from(args.backend).name()
        );
    }
    if !args.inputs.input_shape.is_empty() {
        bail!(
            "{}: --input-shape does not apply to a compiled .so, whose shapes are fixed",
            args.model.display()
        );
    }
    let named = kestrel::aot::run_so(&args.model, &args.inputs.spec()?, args.threads)?;
    show_outputs(&named, &args)
}

/// Prints a summary line per output (`--print`) and writes the output files, none of which may
/// be a file the command read (the model, `--input`, `--inputs`).
fn show_outputs(named: &[(String, kestrel_ir::Tensor)], args: &RunArgs) -> Result<()> {
    if args.print {
        for (name, t) in named {
            say!("{}", driver::summarize(name, t));
        }
    }
    let files = args.inputs.files();
    let mut inputs: Vec<&Path> = vec![&args.model];
    inputs.extend(files.iter().map(PathBuf::as_path));
    let per_output: Vec<PathBuf> = match &args.output_dir {
        Some(dir) => named
            .iter()
            .map(|(name, _)| dir.join(format!("{name}.npy")))
            .collect(),
        None => Vec::new(),
    };
    let mut outputs: Vec<&Path> = per_output.iter().map(PathBuf::as_path).collect();
    outputs.extend(args.outputs.as_deref());
    driver::refuse_overwriting_inputs(&outputs, &inputs)?;
    driver::write_outputs(args.output_dir.as_deref(), args.outputs.as_deref(), named)
        .with_context(|| format!("{}: writing the outputs", args.model.display()))
}
