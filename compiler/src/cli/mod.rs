//! The `kestrel` command line (contract: `docs/CLI.md`).
//!
//! Exit status: 0 on success, 1 on a user error (bad model, bad input, unsupported op), 2 on a
//! usage error (clap).

/// `print!` to stdout that ignores a closed stdout (`kestrel passes | head`): the command's
/// files are still written, and nothing panics. Every command's stdout goes through it (or
/// through [`say!`]).
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// [`say_raw!`] with a newline: `println!` that ignores a closed stdout.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod bench;
mod compare;
mod compile;
mod distill;
mod dump;
mod finetune;
mod passes;
mod prune;
mod quantize;
mod run;
mod stages;
mod train;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use kestrel::driver::{InputSpec, PassOptions};
use kestrel::Backend;
use std::path::{Path, PathBuf};

pub use bench::BenchArgs;
pub use compare::CompareArgs;
pub use compile::CompileArgs;
pub use distill::DistillArgs;
pub use dump::DumpArgs;
pub use finetune::FinetuneArgs;
pub use prune::PruneArgs;
pub use quantize::QuantizeArgs;
pub use run::RunArgs;

#[derive(Parser, Debug)]
#[command(
    name = "kestrel",
    version,
    about = "Compile trained ONNX models into small, fast native code for edge devices"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a model once on the given inputs.
    Run(RunArgs),
    /// Print the IR of a model (ONNX or the textual form `.kir`).
    Dump(DumpArgs),
    /// Compile a model into a self-contained shared object and C header.
    Compile(Box<CompileArgs>),
    /// Measure the latency of one inference.
    Bench(BenchArgs),
    /// Compare pass pipelines side by side.
    Compare(CompareArgs),
    /// List passes and named pipelines.
    Passes,
    /// Quantize a model to int8 (writes QDQ ONNX).
    Quantize(QuantizeArgs),
    /// Prune whole channels (writes a smaller float ONNX model).
    Prune(PruneArgs),
    /// Train a student model against a teacher (knowledge distillation).
    Distill(DistillArgs),
    /// Train a model further on labelled data.
    Finetune(FinetuneArgs),
}

/// `--backend`: the values of [`kestrel::Backend`].
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendArg {
    /// Native code compiled in-process by Cranelift.
    Jit,
    /// The reference interpreter (the semantic oracle).
    Interp,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Jit => Backend::Jit,
            BackendArg::Interp => Backend::Interp,
        }
    }
}

/// Pass-pipeline options, accepted wherever `--pipeline` is.
#[derive(Args, Debug, Clone, Default)]
pub struct PipelineArgs {
    /// Named pipeline (O0, O1, ...) or a textual pipeline.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Disable a pass by name (repeatable).
    #[arg(long = "disable-pass", value_name = "NAME")]
    pub disable_pass: Vec<String>,
    /// Stop after N pass applications (to bisect a miscompile).
    #[arg(long = "pass-limit", value_name = "N")]
    pub pass_limit: Option<usize>,
    /// Print the time each pass took.
    #[arg(long = "time-passes")]
    pub time_passes: bool,
    /// Verify the IR after every pass.
    #[arg(long = "verify-each")]
    pub verify_each: bool,
    /// Quantize the model before the pipeline (`int8`: calibrated with --calib; see
    /// docs/QUANTIZATION.md).
    #[arg(long, value_enum)]
    pub quantize: Option<QuantizeMode>,
    /// Calibration data for quantization: .npy, .npz or a folder of them.
    #[arg(long, value_name = "DATA")]
    pub calib: Option<PathBuf>,
    /// Prune this share of every channel group first (docs/PRUNING.md; l2 importance).
    #[arg(long, value_name = "RATIO")]
    pub prune: Option<f64>,
}

/// What `--quantize` asks for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantizeMode {
    /// Post-training int8: s8 per-channel weights, u8 activations, integer kernels.
    Int8,
}

impl PipelineArgs {
    pub fn options(&self) -> PassOptions {
        PassOptions {
            quantize: self.quantize.is_some(),
            calib: self.calib.clone(),
            prune: self.prune,
            pipeline: self.pipeline.clone(),
            disable_pass: self.disable_pass.clone(),
            pass_limit: self.pass_limit,
            time_passes: self.time_passes,
            verify_each: self.verify_each,
            quantized: false,
        }
    }
}

/// Input binding options shared by `run`, `bench` and `compile`.
#[derive(Args, Debug, Clone, Default)]
pub struct InputArgs {
    /// Bind a graph input: NAME=FILE, or FILE for the next unbound input (.npy, .pb).
    #[arg(long = "input", value_name = "[NAME=]FILE")]
    pub input: Vec<String>,
    /// Bind every array of an .npz whose name is a graph input.
    #[arg(long = "inputs", value_name = "FILE.npz")]
    pub inputs: Vec<PathBuf>,
    /// Bind the symbolic dimensions of an input: NAME=1x3x224x224 (repeatable).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    pub input_shape: Vec<String>,
}

impl InputArgs {
    /// The spec these options describe; a malformed `--input-shape` is an error.
    pub fn spec(&self) -> Result<InputSpec> {
        InputSpec::parse(&self.input, &self.inputs, &self.input_shape)
    }

    /// The files these options read (`--input [NAME=]FILE`, `--inputs FILE`).
    pub fn files(&self) -> Vec<PathBuf> {
        let named = self.input.iter().map(|s| {
            let file = s.split_once('=').map_or(s.as_str(), |(_, f)| f);
            PathBuf::from(file)
        });
        named.chain(self.inputs.iter().cloned()).collect()
    }
}

/// Prints what the pass manager reports on stderr: warnings, the `--time-passes` table when
/// asked for, and a note when `--pass-limit` stopped the pipeline.
fn print_pass_report(report: &kestrel_passes::Report, time_passes: bool) {
    for w in &report.warnings {
        eprintln!("kestrel: warning: {w}");
    }
    if time_passes {
        eprint!("{}", report.timing_table());
    }
    if report.stopped_by_limit {
        eprintln!(
            "kestrel: note: stopped after {} pass applications (--pass-limit)",
            report.runs.len()
        );
    }
}

/// Writes `text` to `path` atomically.
fn write_text(path: &Path, text: &str) -> Result<()> {
    kestrel::tensor_io::write_atomically(path, |f| std::io::Write::write_all(f, text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Dump(args) => dump::run(args),
        Command::Compile(args) => compile::run(*args),
        Command::Bench(args) => bench::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Passes => {
            passes::run();
            Ok(())
        }
        Command::Quantize(args) => quantize::run(args),
        Command::Prune(args) => prune::run(args),
        Command::Distill(args) => distill::run(args),
        Command::Finetune(args) => finetune::run(args),
    }
}
