//! The `kestrel` command line (contract: `docs/CLI.md`).
//!
//! Exit status: 0 on success, 1 on a user error (bad model, bad input, unsupported op), 2 on a
//! usage error (clap). Commands whose feature has not landed yet parse their full option set and
//! then fail with a message saying so.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use kestrel::driver::{self, InputSpec, PassOptions};
use kestrel::Backend;
use std::path::{Path, PathBuf};

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
    Compile(CompileArgs),
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
}

impl PipelineArgs {
    pub fn options(&self) -> PassOptions {
        PassOptions {
            pipeline: self.pipeline.clone(),
            disable_pass: self.disable_pass.clone(),
            pass_limit: self.pass_limit,
            time_passes: self.time_passes,
            verify_each: self.verify_each,
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
}

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

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpFormat {
    Text,
    Dot,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// An .onnx model or a .kir dump.
    pub model: PathBuf,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Dump after this pass (or `all`: one file per pass that changed the graph).
    #[arg(long)]
    pub after: Option<String>,
    /// Folder for `--after all` dumps.
    #[arg(long = "dump-dir")]
    pub dump_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DumpFormat::Text)]
    pub format: DumpFormat,
    /// Write the dump to FILE, and large constants to the sidecar FILE's stem + `.weights.npz`
    /// (without -o, large constants print as `elided`).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
}

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
    #[arg(long)]
    pub quantize: Option<String>,
    #[arg(long)]
    pub calib: Option<PathBuf>,
    #[arg(long)]
    pub prune: Option<f32>,
    #[command(flatten)]
    pub inputs: InputArgs,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    pub model: PathBuf,
    /// Execution backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Jit)]
    pub backend: BackendArg,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Timed inferences.
    #[arg(long, default_value_t = 50)]
    pub iters: usize,
    /// Untimed inferences first.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Also write the measurements as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also time every kernel node alone (JIT only) and report conv/GEMM rates against the
    /// measured FMA peak.
    #[arg(long)]
    pub layers: bool,
    /// Inputs (default: deterministic pseudo-random data, leading symbolic batch dims = 1).
    #[command(flatten)]
    pub inputs: InputArgs,
}

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
}

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub calib: PathBuf,
    #[arg(long, default_value = "minmax")]
    pub method: String,
    #[arg(long = "per-channel")]
    pub per_channel: bool,
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub ratio: f32,
    #[arg(long, default_value = "l1")]
    pub importance: String,
    #[arg(long)]
    pub calib: Option<PathBuf>,
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct DistillArgs {
    #[arg(long)]
    pub teacher: PathBuf,
    #[arg(long)]
    pub student: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub labels: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 4.0)]
    pub temperature: f32,
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

fn not_yet(what: &str) -> Result<()> {
    bail!("{what} is not available yet in this version of Kestrel")
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

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Dump(args) => cmd_dump(args),
        Command::Compile(args) => cmd_compile(args),
        Command::Bench(args) => cmd_bench(args),
        Command::Compare(args) => cmd_compare(args),
        Command::Passes => {
            cmd_passes();
            Ok(())
        }
        Command::Quantize(_) => not_yet("`kestrel quantize`"),
        Command::Prune(_) => not_yet("`kestrel prune`"),
        Command::Distill(_) => not_yet("`kestrel distill`"),
    }
}

/// Prints a summary line per output (`--print`) and writes the output files.
fn show_outputs(
    named: &[(String, kestrel_ir::Tensor)],
    print: bool,
    output_dir: Option<&Path>,
    outputs: Option<&Path>,
    model: &Path,
) -> Result<()> {
    if print {
        for (name, t) in named {
            println!("{}", driver::summarize(name, t));
        }
    }
    driver::write_outputs(output_dir, outputs, named)
        .with_context(|| format!("{}: writing the outputs", model.display()))
}

fn cmd_run(args: RunArgs) -> Result<()> {
    driver::check_threads(args.threads)?;
    if kestrel::tensor_io::extension(&args.model).as_deref() == Some("so") {
        return cmd_run_so(args);
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
    show_outputs(
        &named,
        args.print,
        args.output_dir.as_deref(),
        args.outputs.as_deref(),
        &args.model,
    )
}

/// `kestrel run m.so`: the shared object's own code through `kestrel_runtime::Model`, with the
/// same input and output options as for ONNX models.
fn cmd_run_so(args: RunArgs) -> Result<()> {
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
    show_outputs(
        &named,
        args.print,
        args.output_dir.as_deref(),
        args.outputs.as_deref(),
        &args.model,
    )
}

fn cmd_compile(args: CompileArgs) -> Result<()> {
    if args.quantize.is_some() || args.calib.is_some() {
        return not_yet("`kestrel compile --quantize/--calib` (int8)");
    }
    if args.prune.is_some() {
        return not_yet("`kestrel compile --prune`");
    }
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

fn cmd_bench(args: BenchArgs) -> Result<()> {
    driver::check_threads_and_iters(args.threads, args.iters)?;
    let model = kestrel::load(&args.model)?;
    let opts = kestrel::bench::BenchOptions {
        backend: args.backend.into(),
        passes: args.pipeline.options(),
        threads: args.threads,
        iters: args.iters,
        warmup: args.warmup,
        inputs: args.inputs.spec()?,
    };
    let time_passes = args.pipeline.time_passes;
    let report = kestrel::bench::bench(model, &opts, &mut |r| print_pass_report(r, time_passes))?;
    print!("{}", report.summary());
    if args.layers {
        if report.backend != Backend::Jit {
            bail!("--layers needs the JIT backend");
        }
        let jit = kestrel_backends::jit::JitOptions::with_threads(args.threads);
        let peak = kestrel::layers::fma_peak_gflops(args.threads)?;
        let layers =
            kestrel::layers::profile(&report.graph, &jit, args.iters.min(20), &args.model)?;
        print!(
            "{}",
            kestrel::layers::table(&layers, peak, report.latency.median_ms)
        );
    }
    if let Some(path) = &args.json {
        write_text(path, &report.to_json())?;
    }
    Ok(())
}

/// Writes `text` to `path` atomically.
fn write_text(path: &Path, text: &str) -> Result<()> {
    kestrel::tensor_io::write_atomically(path, |f| std::io::Write::write_all(f, text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

fn cmd_compare(args: CompareArgs) -> Result<()> {
    driver::check_threads_and_iters(args.threads, args.iters)?;
    let model = kestrel::load(&args.model)?;
    let opts = kestrel::compare::CompareOptions {
        pipelines: args.pipelines.clone(),
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

fn cmd_passes() {
    println!("passes:");
    for (name, about) in kestrel_passes::list_passes() {
        println!("  {name:<26} {about}");
    }
    println!("pipelines:");
    for (name, text, about) in kestrel_passes::list_pipelines() {
        let text = if text.is_empty() {
            "(no passes)".to_string()
        } else {
            text
        };
        println!("  {name:<26} {about}: {text}");
    }
}

fn cmd_dump(args: DumpArgs) -> Result<()> {
    if args.dump_dir.is_some() && args.after.is_none() {
        bail!("--dump-dir needs --after PASS or --after all");
    }
    if args.after.is_some() && args.pipeline.pipeline.is_none() {
        bail!("--after needs --pipeline (the passes whose results to dump)");
    }
    if args.format == DumpFormat::Dot && args.output.is_some() {
        bail!("--format dot prints to stdout; redirect it instead of -o");
    }
    let model = kestrel::load(&args.model)?;
    let spec = args.inputs.spec()?;
    let mut pipeline = args.pipeline.options().resolve("O0");
    pipeline.dump_dir = args.dump_dir.clone();
    pipeline.dump_after = args.after.clone();
    let time_passes = args.pipeline.time_passes;
    let prepared = driver::prepare(
        model,
        &spec,
        driver::InputPolicy::ShapesOnly,
        &pipeline,
        &mut |r| print_pass_report(r, time_passes),
    )?;
    let report = &prepared.report;
    if let Some(dir) = &args.dump_dir {
        eprintln!(
            "kestrel: wrote {} dumps to {}",
            report.runs.iter().filter(|r| r.changed).count() + 1,
            dir.display()
        );
        return Ok(());
    }
    if args.after.is_some() {
        // Each dump is a whole graph; a comment line names the pass application it follows.
        let mut out = String::new();
        for (file, text) in &report.dumps {
            out.push_str(&format!("// ---- {file}\n{text}"));
        }
        print!("{out}");
        return Ok(());
    }
    match args.format {
        DumpFormat::Dot => {
            print!("{}", kestrel_ir::dot::to_dot(&prepared.graph));
            Ok(())
        }
        DumpFormat::Text => match &args.output {
            Some(path) => kestrel::dump::write_kir(&prepared.graph, path, args.force),
            None => {
                // A closed pipe (`kestrel dump m.onnx | head`) is not an error worth reporting.
                let text = kestrel::dump::to_text(&prepared.graph);
                let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
                Ok(())
            }
        },
    }
}
