//! `kestrel bench`: the latency of one inference, and what compiling took.
//!
//! [`bench()`] prepares the model (inputs given or pseudo-random, the pipeline), compiles it for
//! the backend and times `iters` runs after `warmup` untimed ones, on a pool of `threads`
//! threads (the caller included). The per-node profile of `--layers` is [`crate::layers`].

use crate::driver::{self, InputPolicy, InputSpec, LatencyStats, LoadedModel, PassOptions};
use crate::inprocess::{Backend, InProcessModel};
use anyhow::{Context, Result};
use kestrel_ir::Graph;
use kestrel_passes::Report;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of [`bench()`].
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub backend: Backend,
    /// The pipeline; without one, [`Backend::default_pipeline`].
    pub passes: PassOptions,
    /// Threads of the pool the runs execute on (at least 1); the JIT splits large kernels into
    /// as many tasks.
    pub threads: usize,
    /// Timed runs (at least 1).
    pub iters: usize,
    /// Untimed runs first.
    pub warmup: usize,
    /// Inputs; without data, deterministic pseudo-random ones
    /// ([`InputPolicy::SyntheticUnlessGiven`]).
    pub inputs: InputSpec,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            backend: Backend::Jit,
            passes: PassOptions::default(),
            threads: 1,
            iters: 50,
            warmup: 5,
            inputs: InputSpec::default(),
        }
    }
}

/// Sizes of JIT-compiled code, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitSizes {
    /// The planned activation arena.
    pub arena: usize,
    /// Its lower bound: the most bytes live at once plus the largest scratch of one kernel.
    pub arena_lower_bound: usize,
    pub code: usize,
}

/// What [`bench()`] measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub model: PathBuf,
    pub backend: Backend,
    /// The pipeline as run (groups expanded).
    pub pipeline: String,
    pub threads: usize,
    pub iters: usize,
    pub warmup: usize,
    /// Nodes of the graph after the pipeline.
    pub nodes: usize,
    /// Loading the model file.
    pub import: Duration,
    /// Running the pipeline.
    pub passes: Duration,
    /// Everything before the first run: loading, binding inputs, passes, code generation.
    pub compile: Duration,
    /// Code generation alone, and the sizes of the result (JIT only).
    pub codegen: Option<Duration>,
    pub sizes: Option<JitSizes>,
    pub latency: LatencyStats,
    /// The graph as measured (after the pipeline), for [`crate::layers::profile`].
    pub graph: Graph,
}

/// Prepares, compiles and times `model` (see the module documentation). `on_passes` sees the
/// pass report before code generation ([`driver::prepare`]).
pub fn bench(
    model: LoadedModel,
    opts: &BenchOptions,
    on_passes: &mut dyn FnMut(&Report),
) -> Result<BenchReport> {
    driver::check_threads_and_iters(opts.threads, opts.iters)?;
    let start = Instant::now();
    let import = model.load_time;
    let pipeline = opts.passes.resolve(opts.backend.default_pipeline());
    let prepared = driver::prepare(
        model,
        &opts.inputs,
        InputPolicy::SyntheticUnlessGiven,
        &pipeline,
        on_passes,
    )?;
    let driver::Prepared {
        graph,
        inputs,
        report,
        path,
        ..
    } = prepared;
    let compiled = InProcessModel::new(graph, opts.backend, opts.threads, &path)?;
    let compile = import + start.elapsed();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .context("creating the thread pool")?;
    let once = || -> Result<Duration> {
        let t = Instant::now();
        compiled
            .run_tensors(&inputs)
            .with_context(|| format!("running {}", path.display()))?;
        Ok(t.elapsed())
    };
    let times = pool.install(|| -> Result<Vec<Duration>> {
        for _ in 0..opts.warmup {
            once()?;
        }
        (0..opts.iters).map(|_| once()).collect()
    })?;
    let jit = compiled.jit();
    let codegen = jit.map(|m| m.compile_time());
    let sizes = jit.map(|m| JitSizes {
        arena: m.arena_bytes(),
        arena_lower_bound: m.arena_lower_bound(),
        code: m.code_bytes(),
    });
    let graph = compiled.into_graph();
    Ok(BenchReport {
        model: path,
        backend: opts.backend,
        pipeline: report.pipeline,
        threads: opts.threads,
        iters: opts.iters,
        warmup: opts.warmup,
        nodes: graph.nodes.len(),
        import,
        passes: report.total_time,
        compile,
        codegen,
        sizes,
        latency: LatencyStats::of(&times),
        graph,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl BenchReport {
    /// The report as `kestrel bench` prints it: the run, compile times, memory (JIT) and the
    /// latency, one line each.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: backend {}, pipeline {}, {} thread(s), {} nodes\n",
            self.model.display(),
            self.backend.name(),
            self.pipeline,
            self.threads,
            self.nodes
        );
        match (self.codegen, self.sizes) {
            (Some(codegen), Some(sizes)) => {
                s.push_str(&format!(
                    "compile: {:.2} ms (import {:.2} ms, passes {:.2} ms, code generation {:.2} ms)\n",
                    ms(self.compile),
                    ms(self.import),
                    ms(self.passes),
                    ms(codegen)
                ));
                s.push_str(&format!(
                    "memory: arena {} bytes (lower bound {} bytes, {:.2}x), code {} bytes\n",
                    sizes.arena,
                    sizes.arena_lower_bound,
                    sizes.arena as f64 / sizes.arena_lower_bound.max(1) as f64,
                    sizes.code
                ));
            }
            _ => s.push_str(&format!(
                "compile: {:.2} ms (import {:.2} ms, passes {:.2} ms)\n",
                ms(self.compile),
                ms(self.import),
                ms(self.passes)
            )),
        }
        s.push_str(&format!(
            "latency: median {:.3} ms, min {:.3} ms, max {:.3} ms ({} runs after {} warm-up)\n",
            self.latency.median_ms,
            self.latency.min_ms,
            self.latency.max_ms,
            self.iters,
            self.warmup
        ));
        s
    }

    /// The numbers of `kestrel bench --json`, one JSON object on one line.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"model\": {:?}, \"backend\": \"{}\", \"pipeline\": {:?}, \"threads\": {}, \"nodes\": {}, \"compile_ms\": {:.4}, \"median_ms\": {:.4}, \"min_ms\": {:.4}, \"max_ms\": {:.4}, \"iters\": {}}}\n",
            self.model.display().to_string(),
            self.backend.name(),
            self.pipeline,
            self.threads,
            self.nodes,
            ms(self.compile),
            self.latency.median_ms,
            self.latency.min_ms,
            self.latency.max_ms,
            self.iters
        )
    }
}
