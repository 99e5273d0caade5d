//! `kestrel bench`: latency of one inference, and with `--layers` of every kernel node.

use super::{print_pass_report, write_text, BackendArg, InputArgs, PipelineArgs};
use anyhow::{bail, Result};
use clap::Args;
use kestrel::driver;
use kestrel::Backend;
use std::path::PathBuf;

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

pub fn run(args: BenchArgs) -> Result<()> {
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
    say_raw!("{}", report.summary());
    if args.layers {
        if report.backend != Backend::Jit {
            bail!("--layers needs the JIT backend");
        }
        let jit = kestrel_backends::jit::JitOptions::with_threads(args.threads);
        let peak = kestrel::layers::fma_peak(&jit)?;
        let layers =
            kestrel::layers::profile(&report.graph, &jit, args.iters.min(20), &args.model)?;
        say_raw!(
            "{}",
            kestrel::layers::table(&layers, &peak, report.latency.median_ms)
        );
    }
    if let Some(path) = &args.json {
        write_text(path, &report.to_json())?;
    }
    Ok(())
}
