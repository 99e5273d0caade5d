//! The `kestrel` command line (contract: `docs/CLI.md`).
//!
//! Exit status: 0 on success, 1 on a user error (bad model, bad input, unsupported op), 2 on a
//! usage error (clap). Commands whose feature has not landed yet parse their full option set and
//! then fail with a message saying so.

use crate::driver::{self, InputSpec};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Native code compiled in-process by Cranelift.
    Jit,
    /// The reference interpreter (the semantic oracle).
    Interp,
}

impl Backend {
    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Jit => "jit",
            Backend::Interp => "interp",
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

#[derive(Args, Debug)]
pub struct RunArgs {
    /// An .onnx model, a .kir dump, or a shared object written by `kestrel compile`.
    pub model: PathBuf,
    /// Execution backend.
    #[arg(long, value_enum, default_value_t = Backend::Jit)]
    pub backend: Backend,
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
    #[arg(long, value_enum, default_value_t = Backend::Jit)]
    pub backend: Backend,
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

/// Runs the pass pipeline the options name (`default` when `--pipeline` is absent) over `graph`,
/// printing the timing table on stderr for `--time-passes`.
fn run_passes(
    graph: &mut kestrel_ir::Graph,
    p: &PipelineArgs,
    default: &str,
    dump_dir: Option<PathBuf>,
    dump_after: Option<String>,
    model: &std::path::Path,
) -> Result<kestrel_passes::Report> {
    let opts = kestrel_passes::PipelineOptions {
        pipeline: p.pipeline.clone().unwrap_or_else(|| default.to_string()),
        disable: p.disable_pass.clone(),
        pass_limit: p.pass_limit,
        time_passes: p.time_passes,
        verify_each: p.verify_each,
        dump_dir,
        dump_after,
    };
    let report = kestrel_passes::run_pipeline(graph, &opts, &driver::pass_context())
        .with_context(|| format!("{}: pipeline {:?}", model.display(), opts.pipeline))?;
    for w in &report.warnings {
        eprintln!("kestrel: warning: {w}");
    }
    if p.time_passes {
        eprint!("{}", report.timing_table());
    }
    if report.stopped_by_limit {
        eprintln!(
            "kestrel: note: stopped after {} pass applications (--pass-limit)",
            report.runs.len()
        );
    }
    Ok(report)
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Dump(args) => cmd_dump(args),
        Command::Compile(args) => cmd_compile(args),
        Command::Bench(args) => cmd_bench(args),
        Command::Compare(args) => crate::compare::cmd_compare(args),
        Command::Passes => {
            cmd_passes();
            Ok(())
        }
        Command::Quantize(_) => not_yet("`kestrel quantize`"),
        Command::Prune(_) => not_yet("`kestrel prune`"),
        Command::Distill(_) => not_yet("`kestrel distill`"),
    }
}

fn cmd_run(args: RunArgs) -> Result<()> {
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if crate::tensor_io::extension(&args.model).as_deref() == Some("so") {
        return cmd_run_so(args);
    }
    let mut graph = driver::load_graph(&args.model)?;
    let specs = InputSpec::parse_all(&args.inputs)?;
    driver::apply_input_shapes(&mut graph, &specs.shapes, &args.model)?;
    let inputs = driver::bind_inputs(&graph, &specs, &args.model)?;
    // Bind symbolic dims from the arrays before the passes, so shape arithmetic folds.
    driver::bind_shapes_from_inputs(&mut graph, &inputs, &args.model)?;
    let default_pipeline = default_pipeline(args.backend);
    run_passes(
        &mut graph,
        &args.pipeline,
        default_pipeline,
        None,
        None,
        &args.model,
    )?;
    let outputs = match args.backend {
        Backend::Interp => kestrel_backends::interp::run(&graph, &inputs)
            .with_context(|| format!("running {}", args.model.display()))?,
        Backend::Jit => {
            let model = compile_jit(&graph, args.threads, &args.model)?;
            model
                .run(&inputs)
                .with_context(|| format!("running {}", args.model.display()))?
        }
    };
    let named: Vec<(String, kestrel_ir::Tensor)> = graph
        .outputs
        .iter()
        .map(|o| o.name.clone())
        .zip(outputs)
        .collect();
    if args.print {
        for (name, t) in &named {
            println!("{}", driver::summarize(name, t));
        }
    }
    driver::write_outputs(args.output_dir.as_deref(), args.outputs.as_deref(), &named)
        .with_context(|| format!("{}: writing the outputs", args.model.display()))
}

/// `kestrel run m.so`: the shared object's own code through `kestrel_runtime::Model`, with the
/// same input and output options as for ONNX models.
fn cmd_run_so(args: RunArgs) -> Result<()> {
    let p = &args.pipeline;
    if p.pipeline.is_some()
        || !p.disable_pass.is_empty()
        || p.pass_limit.is_some()
        || p.time_passes
        || p.verify_each
    {
        bail!(
            "{}: pipeline options do not apply to a compiled .so (give them to `kestrel compile`)",
            args.model.display()
        );
    }
    if args.backend != Backend::Jit {
        bail!(
            "{}: --backend {} does not apply to a compiled .so, which runs its own code",
            args.model.display(),
            args.backend.name()
        );
    }
    if !args.inputs.input_shape.is_empty() {
        bail!(
            "{}: --input-shape does not apply to a compiled .so, whose shapes are fixed",
            args.model.display()
        );
    }
    let named = crate::aot::run_so(
        &args.model,
        &InputSpec::parse_all(&args.inputs)?,
        args.threads,
    )?;
    if args.print {
        for (name, t) in &named {
            println!("{}", driver::summarize(name, t));
        }
    }
    driver::write_outputs(args.output_dir.as_deref(), args.outputs.as_deref(), &named)
        .with_context(|| format!("{}: writing the outputs", args.model.display()))
}

fn cmd_compile(args: CompileArgs) -> Result<()> {
    if args.quantize.is_some() || args.calib.is_some() {
        return not_yet("`kestrel compile --quantize/--calib` (int8)");
    }
    if args.prune.is_some() {
        return not_yet("`kestrel compile --prune`");
    }
    if args.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    let mut graph = driver::load_graph(&args.model)?;
    let specs = InputSpec::parse_all(&args.inputs)?;
    driver::apply_input_shapes(&mut graph, &specs.shapes, &args.model)?;
    if !specs.files.is_empty() || !specs.archives.is_empty() {
        // Sample inputs bind the shapes, as for `run`.
        let inputs = driver::bind_inputs(&graph, &specs, &args.model)?;
        driver::bind_shapes_from_inputs(&mut graph, &inputs, &args.model)?;
    }
    crate::aot::bind_default_batch(&mut graph, &args.model)?;
    run_passes(
        &mut graph,
        &args.pipeline,
        default_pipeline(Backend::Jit),
        None,
        None,
        &args.model,
    )?;
    let mut opts = crate::aot::AotOptions {
        target: args.target.clone(),
        cpu: args.cpu.clone(),
        prefix: args.symbol_prefix.clone(),
        tasks: args.tasks,
        ..Default::default()
    };
    if let Some(n) = args.min_task_macs {
        opts.min_task_macs = n;
    }
    let out = crate::aot::compile_graph(
        &graph,
        &opts,
        &args.output,
        &args.model.display().to_string(),
    )?;
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

/// The pipeline a backend runs when `--pipeline` is absent: the interpreter, being the
/// reference, runs the graph as imported; native code gets the canonicalised and fused graph.
fn default_pipeline(backend: Backend) -> &'static str {
    match backend {
        Backend::Interp => "O0",
        Backend::Jit => "O2",
    }
}

/// Compiles a graph whose dimensions are bound with the JIT.
fn compile_jit(
    graph: &kestrel_ir::Graph,
    threads: usize,
    model: &std::path::Path,
) -> Result<kestrel_backends::jit::JitModel> {
    let opts = kestrel_backends::jit::JitOptions::with_threads(threads);
    kestrel_backends::jit::compile(graph, &opts)
        .with_context(|| format!("{}: compiling with the JIT", model.display()))
}

fn cmd_bench(args: BenchArgs) -> Result<()> {
    if args.threads == 0 || args.iters == 0 {
        bail!("--threads and --iters must be at least 1");
    }
    let start = std::time::Instant::now();
    let mut graph = driver::load_graph(&args.model)?;
    let import = start.elapsed();
    let specs = InputSpec::parse_all(&args.inputs)?;
    driver::apply_input_shapes(&mut graph, &specs.shapes, &args.model)?;
    let inputs = if specs.files.is_empty() && specs.archives.is_empty() {
        driver::synthetic_inputs(&graph, &args.model)?
    } else {
        driver::bind_inputs(&graph, &specs, &args.model)?
    };
    driver::bind_shapes_from_inputs(&mut graph, &inputs, &args.model)?;
    let report = run_passes(
        &mut graph,
        &args.pipeline,
        default_pipeline(args.backend),
        None,
        None,
        &args.model,
    )?;
    let jit = match args.backend {
        Backend::Jit => Some(compile_jit(&graph, args.threads, &args.model)?),
        Backend::Interp => None,
    };
    let compile = start.elapsed();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("creating the thread pool")?;
    let once = || -> Result<std::time::Duration> {
        let t = std::time::Instant::now();
        match &jit {
            Some(model) => {
                model
                    .run(&inputs)
                    .with_context(|| format!("running {}", args.model.display()))?;
            }
            None => {
                kestrel_backends::interp::run(&graph, &inputs)
                    .with_context(|| format!("running {}", args.model.display()))?;
            }
        }
        Ok(t.elapsed())
    };
    let times = pool.install(|| -> Result<Vec<std::time::Duration>> {
        for _ in 0..args.warmup {
            once()?;
        }
        (0..args.iters).map(|_| once()).collect()
    })?;
    let stats = driver::LatencyStats::of(&times);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "{}: backend {}, pipeline {}, {} thread(s), {} nodes",
        args.model.display(),
        args.backend.name(),
        report.pipeline,
        args.threads,
        graph.nodes.len()
    );
    match &jit {
        Some(model) => {
            println!(
                "compile: {:.2} ms (import {:.2} ms, passes {:.2} ms, code generation {:.2} ms)",
                ms(compile),
                ms(import),
                ms(report.total_time),
                ms(model.compile_time())
            );
            println!(
                "memory: arena {} bytes (lower bound {} bytes, {:.2}x), code {} bytes",
                model.arena_bytes(),
                model.arena_lower_bound(),
                model.arena_bytes() as f64 / model.arena_lower_bound().max(1) as f64,
                model.code_bytes()
            );
        }
        None => println!(
            "compile: {:.2} ms (import {:.2} ms, passes {:.2} ms)",
            ms(compile),
            ms(import),
            ms(report.total_time)
        ),
    }
    println!(
        "latency: median {:.3} ms, min {:.3} ms, max {:.3} ms ({} runs after {} warm-up)",
        stats.median_ms, stats.min_ms, stats.max_ms, args.iters, args.warmup
    );
    if args.layers {
        if jit.is_none() {
            bail!("--layers needs the JIT backend");
        }
        let opts = kestrel_backends::jit::JitOptions::with_threads(args.threads);
        let peak =
            kestrel_backends::jit::peak::fma_peak_gflops(7).context("measuring the FMA peak")?;
        let layers = crate::layers::profile(&graph, &opts, args.iters.min(20), &args.model)?;
        crate::layers::print(&layers, peak * args.threads as f64, stats.median_ms);
    }
    if let Some(path) = &args.json {
        let json = format!(
            "{{\"model\": {:?}, \"backend\": \"{}\", \"pipeline\": {:?}, \"threads\": {}, \"nodes\": {}, \"compile_ms\": {:.4}, \"median_ms\": {:.4}, \"min_ms\": {:.4}, \"max_ms\": {:.4}, \"iters\": {}}}\n",
            args.model.display().to_string(),
            args.backend.name(),
            report.pipeline,
            args.threads,
            graph.nodes.len(),
            ms(compile),
            stats.median_ms,
            stats.min_ms,
            stats.max_ms,
            args.iters
        );
        crate::tensor_io::write_atomically(path, |f| std::io::Write::write_all(f, json.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
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
    let mut graph = driver::load_graph(&args.model)?;
    let specs = InputSpec::parse_all(&args.inputs)?;
    driver::apply_input_shapes(&mut graph, &specs.shapes, &args.model)?;
    let dump_dir = args.dump_dir.clone();
    let report = run_passes(
        &mut graph,
        &args.pipeline,
        "O0",
        dump_dir.clone(),
        args.after.clone(),
        &args.model,
    )?;
    if let Some(dir) = &dump_dir {
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
            print!("{}", kestrel_ir::dot::to_dot(&graph));
            Ok(())
        }
        DumpFormat::Text => crate::dump::dump(&graph, args.output.as_deref(), args.force),
    }
}

/// The error and its causes on one line, skipping a cause whose text its parent already shows
/// (errors that both print and chain their source would otherwise repeat it).
///
/// The result is always a single line of bounded length, whatever a hostile file put in the
/// names and texts it quotes: control characters (newlines, escape sequences) are escaped, and a
/// message longer than [`MAX_MESSAGE_CHARS`] keeps its start (file, node) and end (reason) around
/// an ellipsis.
pub fn error_chain(e: &anyhow::Error) -> String {
    one_line(&raw_chain(e))
}

/// Longest error message printed, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// `text` with control characters escaped (`\n`, `\u{1b}`, ...) and its middle elided when it
/// is longer than [`MAX_MESSAGE_CHARS`].
pub fn one_line(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    let n = escaped.chars().count();
    if n <= MAX_MESSAGE_CHARS {
        return escaped;
    }
    let keep = MAX_MESSAGE_CHARS / 2;
    let head: String = escaped.chars().take(keep).collect();
    let tail: String = escaped.chars().skip(n - keep).collect();
    format!("{head} [... {} characters elided ...] {tail}", n - 2 * keep)
}

fn raw_chain(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}
