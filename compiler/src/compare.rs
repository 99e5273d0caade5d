//! `kestrel compare`: one model compiled with several pass pipelines, side by side.
//!
//! For each pipeline: node count after the passes, compile time (passes + code generation),
//! median latency of the JIT-compiled model (1 thread unless `--threads`), arena bytes, code +
//! weights bytes, the largest absolute difference from the float reference, and top-1 accuracy
//! when labels are given. The float reference is the model's own reference outputs when the
//! `--inputs` archive holds arrays named after the graph outputs (the shared models' `io.npz`),
//! otherwise the `O0` graph run by the reference interpreter.

use crate::driver::{self, InputPolicy, InputSpec, LoadedModel};
use anyhow::{bail, Context, Result};
use kestrel_ir::{DType, Graph, Tensor};
use kestrel_passes::Report;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub pipeline: String,
    pub nodes: usize,
    pub compile_ms: f64,
    pub median_ms: f64,
    /// Fastest run: on a loaded machine a steadier estimate than the median.
    pub min_ms: f64,
    pub arena_bytes: usize,
    pub code_bytes: usize,
    pub weight_bytes: usize,
    pub max_diff: f64,
    pub accuracy: Option<f64>,
}

/// The largest `|a - b|` over every output (NaN if shapes differ).
fn max_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
    let mut m = 0f64;
    for (x, y) in a.iter().zip(b) {
        if x.dims() != y.dims() {
            return f64::NAN;
        }
        for (p, q) in x.to_f64_vec().iter().zip(y.to_f64_vec()) {
            let d = (p - q).abs();
            if d.is_nan() {
                return f64::NAN;
            }
            m = m.max(d);
        }
    }
    m
}

/// Top-1 accuracy of `logits` (last axis = classes, leading axes = samples) against `labels`.
fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let dims = logits.dims();
    let classes = *dims.last().context("logits are a scalar")?;
    let v = logits.to_f64_vec();
    let n = v.len() / classes.max(1);
    let l = labels.to_i64_vec();
    if l.len() != n {
        bail!("{} labels for {n} samples", l.len());
    }
    let mut right = 0usize;
    for (i, &want) in l.iter().enumerate() {
        let row = &v[i * classes..(i + 1) * classes];
        let best = row
            .iter()
            .enumerate()
            .fold((0usize, f64::NEG_INFINITY), |b, (j, &x)| {
                if x > b.1 {
                    (j, x)
                } else {
                    b
                }
            })
            .0;
        right += (best as i64 == want) as usize;
    }
    Ok(right as f64 / n.max(1) as f64)
}

/// Options of [`compare`].
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// The pipelines, one row each, in this order: names (`O0`, `O1`, `O2`) or textual ones.
    pub pipelines: Vec<String>,
    /// An `.npz` with one array per graph input (arrays named after the graph outputs are the
    /// float reference); `None`: deterministic pseudo-random inputs.
    pub inputs: Option<PathBuf>,
    /// An `.npy` of integer class ids, one per sample: adds top-1 accuracy.
    pub labels: Option<PathBuf>,
    /// Threads of the pool the runs execute on (at least 1); the JIT splits large kernels into
    /// as many tasks.
    pub threads: usize,
    /// Timed runs per pipeline (at least 1).
    pub iters: usize,
    /// Untimed runs first.
    pub warmup: usize,
    /// Calibration data for pipelines that quantize (`int8`, or a textual one with `quantize`).
    pub calib: Option<PathBuf>,
    /// Rows of other graphs of the same model after the pipeline rows: the stages of
    /// `compare --distill-data` (`crate::stages`).
    pub graphs: Vec<GraphRow>,
}

/// A row of [`CompareOptions::graphs`]: `graph` (inputs and outputs like the model's, its batch
/// as loaded) compiled with `pipeline`, shown as `label`.
#[derive(Clone, Debug)]
pub struct GraphRow {
    pub label: String,
    pub graph: Graph,
    pub pipeline: String,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            pipelines: Vec::new(),
            inputs: None,
            labels: None,
            threads: 1,
            iters: 20,
            warmup: 3,
            calib: None,
            graphs: Vec::new(),
        }
    }
}

/// Where the float reference of a comparison came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// Arrays named after the graph outputs in the inputs archive.
    Archive,
    /// The `O0` graph run by the reference interpreter.
    Interpreter,
}

impl Reference {
    pub fn describe(self) -> &'static str {
        match self {
            Reference::Archive => "the reference outputs in the --inputs archive",
            Reference::Interpreter => "the O0 graph on the reference interpreter",
        }
    }
}

/// The result of [`compare`]: one row per pipeline, in the order asked.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub model: PathBuf,
    pub threads: usize,
    pub iters: usize,
    pub warmup: usize,
    pub reference: Reference,
    pub rows: Vec<Row>,
}

impl Comparison {
    /// The line `kestrel compare` prints above the table: model, threads, runs, reference.
    pub fn heading(&self) -> String {
        format!(
            "{}: {} thread(s), {} timed runs after {} warm-up; max |diff| against {}",
            self.model.display(),
            self.threads,
            self.iters,
            self.warmup,
            self.reference.describe()
        )
    }

    /// `kestrel compare --json`: the rows as one JSON object.
    pub fn to_json(&self) -> String {
        json(&self.model.display().to_string(), self.threads, &self.rows)
    }
}

/// Whether the pipeline `text` runs the `quantize` pass (and so needs calibration data).
fn quantizes(text: &str) -> Result<bool> {
    let p = kestrel_passes::pipeline::resolve_pipeline(text)
        .map_err(|e| anyhow::anyhow!("pipeline {text:?}: {e}"))?;
    Ok(p.to_string().contains("quantize"))
}

/// Compiles `model` with each pipeline of `opts` on the JIT and measures it against the float
/// reference (see the module documentation). `on_passes` sees each pipeline's pass report
/// before that pipeline's code generation.
pub fn compare(
    model: LoadedModel,
    opts: &CompareOptions,
    on_passes: &mut dyn FnMut(&Report),
) -> Result<Comparison> {
    driver::check_threads_and_iters(opts.threads, opts.iters)?;
    let LoadedModel {
        graph: mut base,
        path: model,
        ..
    } = model;
    // Pipelines that quantize start from the model as loaded and calibrate one sample per run;
    // their inputs are bound after the pipeline.
    let unbound = base.clone();
    let spec = InputSpec {
        files: vec![],
        archives: opts.inputs.iter().cloned().collect(),
        shapes: vec![],
    };
    let inputs =
        driver::prepare_inputs(&mut base, &spec, InputPolicy::SyntheticUnlessGiven, &model)?;
    // The float reference.
    let mut reference: Option<Vec<Tensor>> = None;
    if let Some(p) = &opts.inputs {
        let arrays =
            crate::tensor_io::read_npz(p).with_context(|| format!("reading {}", p.display()))?;
        let refs: Option<Vec<Tensor>> = base
            .outputs
            .iter()
            .map(|o| {
                arrays
                    .iter()
                    .find(|(n, _)| *n == o.name)
                    .map(|(_, t)| t.clone())
            })
            .collect();
        reference = refs;
    }
    let reference_from = if reference.is_some() {
        Reference::Archive
    } else {
        Reference::Interpreter
    };
    let reference = match reference {
        Some(r) => r,
        None => kestrel_backends::interp::run(&base, &inputs)
            .with_context(|| format!("{}: running the reference interpreter", model.display()))?,
    };
    let labels = match &opts.labels {
        Some(p) => Some(
            crate::tensor_io::read_tensor_file(p)
                .with_context(|| format!("reading {}", p.display()))?,
        ),
        None => None,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .context("creating the thread pool")?;
    let mut rows = Vec::new();
    // (label, graph, pipeline, calibrate): the pipeline rows, then the graph rows.
    let mut specs: Vec<(String, Graph, String, bool)> = Vec::new();
    for p in &opts.pipelines {
        let quantizes = quantizes(p)?;
        let g = if quantizes {
            unbound.clone()
        } else {
            base.clone()
        };
        specs.push((p.clone(), g, p.clone(), quantizes));
    }
    for r in &opts.graphs {
        specs.push((r.label.clone(), r.graph.clone(), r.pipeline.clone(), false));
    }
    for (label, mut g, p, quantizes) in specs {
        // Pipelines that quantize calibrate one sample per run: bound after them.
        if !quantizes {
            driver::bind_shapes_from_inputs(&mut g, &inputs, &model)?;
        }
        let t = Instant::now();
        let pipeline = kestrel_passes::PipelineOptions {
            pipeline: p.clone(),
            calibration: opts.calib.clone().filter(|_| quantizes),
            ..Default::default()
        };
        let report = driver::run_pipeline(&mut g, &pipeline, &model)?;
        on_passes(&report);
        if quantizes {
            driver::bind_shapes_from_inputs(&mut g, &inputs, &model)?;
        }
        driver::fold_for_codegen(&mut g, &model)?;
        let jit = kestrel_backends::jit::compile(
            &g,
            &kestrel_backends::jit::JitOptions::with_threads(opts.threads),
        )
        .with_context(|| format!("{}: compiling {label} with the JIT", model.display()))?;
        let compile = t.elapsed();
        let outs = jit
            .run(&inputs)
            .with_context(|| format!("running {} ({label})", model.display()))?;
        let once = || -> Result<Duration> {
            let t = Instant::now();
            jit.run(&inputs)?;
            Ok(t.elapsed())
        };
        let times = pool.install(|| -> Result<Vec<Duration>> {
            for _ in 0..opts.warmup {
                once()?;
            }
            (0..opts.iters).map(|_| once()).collect()
        })?;
        let stats = driver::LatencyStats::of(&times);
        let acc = match (&labels, outs.first()) {
            (Some(l), Some(o)) if o.dtype() == DType::F32 => Some(accuracy(o, l)?),
            _ => None,
        };
        rows.push(Row {
            pipeline: label,
            nodes: g.nodes.len(),
            compile_ms: compile.as_secs_f64() * 1e3,
            median_ms: stats.median_ms,
            min_ms: stats.min_ms,
            arena_bytes: jit.arena_bytes(),
            code_bytes: jit.code_bytes(),
            weight_bytes: driver::weight_bytes(&g),
            max_diff: max_diff(&outs, &reference),
            accuracy: acc,
        });
    }
    Ok(Comparison {
        model,
        threads: opts.threads,
        iters: opts.iters,
        warmup: opts.warmup,
        reference: reference_from,
        rows,
    })
}

/// The rows as a Markdown table (what `docs/PERFORMANCE.md` shows).
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| pipeline | nodes | compile ms | median ms | min ms | arena bytes | code+weights bytes | max abs diff | accuracy |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.3} | {:.3} | {} | {} | {:.2e} | {} |\n",
            r.pipeline,
            r.nodes,
            r.compile_ms,
            r.median_ms,
            r.min_ms,
            r.arena_bytes,
            r.code_bytes + r.weight_bytes,
            r.max_diff,
            r.accuracy
                .map(|a| format!("{:.2} %", a * 100.0))
                .unwrap_or_else(|| "-".into())
        ));
    }
    s
}

fn json(model: &str, threads: usize, rows: &[Row]) -> String {
    let mut s = format!("{{\"model\": {model:?}, \"threads\": {threads}, \"rows\": [");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let acc = r
            .accuracy
            .map(|a| format!("{a}"))
            .unwrap_or_else(|| "null".into());
        let diff = if r.max_diff.is_finite() {
            format!("{:e}", r.max_diff)
        } else {
            "null".into()
        };
        s.push_str(&format!(
            "{{\"pipeline\": {:?}, \"nodes\": {}, \"compile_ms\": {:.4}, \"median_ms\": {:.4}, \"min_ms\": {:.4}, \"arena_bytes\": {}, \"code_bytes\": {}, \"weight_bytes\": {}, \"max_abs_diff\": {diff}, \"accuracy\": {acc}}}",
            r.pipeline, r.nodes, r.compile_ms, r.median_ms, r.min_ms, r.arena_bytes, r.code_bytes, r.weight_bytes
        ));
    }
    s.push_str("]}\n");
    s
}
