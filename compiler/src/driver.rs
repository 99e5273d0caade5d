//! What the commands share: loading a model by file type, binding inputs, running the pass
//! pipeline, writing outputs.
//!
//! Every function takes plain Rust types and prints nothing, so the command line, other front
//! ends (a Python package) and a training loop run the same steps with the same checks and
//! messages. A user's mistake is an `Err` whose message names the model file, the input or node,
//! and the reason.

use crate::tensor_io::{self, extension};
use anyhow::{anyhow, bail, Context, Result};
use kestrel_ir::{Dim, Graph, Tensor, ValueDef};
use kestrel_passes::Report;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Loads a model: `.onnx` through the importer, `.kir` through the text parser (weights from the
/// sidecar written beside it by `kestrel dump -o`).
pub fn load_graph(path: &Path) -> Result<Graph> {
    match extension(path).as_deref() {
        Some("onnx") => Ok(crate::onnx::load_model(path)?.graph),
        Some("kir") => crate::dump::read_kir(path),
        Some("so") => bail!(
            "{}: a compiled shared object has no graph to load; `kestrel run` runs it, other \
             commands need the model it was compiled from",
            path.display()
        ),
        _ => bail!(
            "{}: unknown model type (expected .onnx or .kir)",
            path.display()
        ),
    }
}

/// A model as loaded from its file: the graph, the file it came from (named in every message)
/// and how long loading took.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    pub graph: Graph,
    pub path: PathBuf,
    pub load_time: Duration,
}

impl LoadedModel {
    /// A graph built in memory (by a training loop, a test); `name` stands for the model file in
    /// messages.
    pub fn from_graph(graph: Graph, name: impl Into<PathBuf>) -> LoadedModel {
        LoadedModel {
            graph,
            path: name.into(),
            load_time: Duration::ZERO,
        }
    }
}

/// Loads `path` with [`load_graph`] and measures how long that took.
pub fn load(path: &Path) -> Result<LoadedModel> {
    let start = Instant::now();
    let graph = load_graph(path)?;
    Ok(LoadedModel {
        graph,
        path: path.to_path_buf(),
        load_time: start.elapsed(),
    })
}

/// Which graph inputs get which data and shapes: the `--input`, `--inputs` and `--input-shape`
/// options. Files are read only when the spec is bound ([`bind_inputs`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputSpec {
    /// `(Some(name), file)` binds the input `name`; `(None, file)` the next unbound input in
    /// graph order (`.npy` or ONNX `TensorProto` `.pb`).
    pub files: Vec<(Option<String>, PathBuf)>,
    /// `.npz` archives: every array named after a graph input binds it, others are ignored.
    pub archives: Vec<PathBuf>,
    /// `(input name, dims)`: fixes the shape of an input with symbolic dimensions.
    pub shapes: Vec<(String, Vec<usize>)>,
}

impl InputSpec {
    /// The spec of the command-line forms: `inputs` are `--input` values (`NAME=FILE` or `FILE`,
    /// see [`parse_input_binding`]), `archives` `--inputs` files, `input_shapes` `--input-shape`
    /// values (`NAME=1x3x224x224`, see [`parse_shape_spec`]).
    pub fn parse(
        inputs: &[String],
        archives: &[PathBuf],
        input_shapes: &[String],
    ) -> Result<InputSpec> {
        let shapes = input_shapes
            .iter()
            .map(|s| parse_shape_spec(s))
            .collect::<Result<_>>()?;
        Ok(InputSpec {
            files: inputs.iter().map(|s| parse_input_binding(s)).collect(),
            archives: archives.to_vec(),
            shapes,
        })
    }

    /// Whether the spec gives any input data (files or archives), not only shapes.
    pub fn has_data(&self) -> bool {
        !self.files.is_empty() || !self.archives.is_empty()
    }
}

/// Splits an `--input` value: `NAME=FILE` names the input (a NAME is not empty and has no `/`,
/// so a path containing `=` is still a file), anything else is a file for the next unbound
/// input.
pub fn parse_input_binding(s: &str) -> (Option<String>, PathBuf) {
    match s.split_once('=') {
        Some((name, file)) if !name.is_empty() && !name.contains('/') => {
            (Some(name.to_string()), PathBuf::from(file))
        }
        _ => (None, PathBuf::from(s)),
    }
}

/// Parses `NAME=1x3x224x224`.
pub fn parse_shape_spec(s: &str) -> Result<(String, Vec<usize>)> {
    let (name, dims) = s.rsplit_once('=').ok_or_else(|| {
        anyhow!("--input-shape {s:?}: expected NAME=DIMS, e.g. input=1x3x224x224")
    })?;
    let dims = if dims.is_empty() {
        vec![]
    } else {
        dims.split(['x', ','])
            .map(|d| {
                d.trim()
                    .parse::<usize>()
                    .map_err(|_| anyhow!("--input-shape {s:?}: {d:?} is not a dimension"))
            })
            .collect::<Result<_>>()?
    };
    Ok((name.to_string(), dims))
}

/// Fixes the shapes of the named inputs and re-infers every node's type.
pub fn apply_input_shapes(
    g: &mut Graph,
    shapes: &[(String, Vec<usize>)],
    model: &Path,
) -> Result<()> {
    if shapes.is_empty() {
        return Ok(());
    }
    for (name, dims) in shapes {
        let id = input_by_name(g, name).ok_or_else(|| {
            anyhow!(
                "{}: --input-shape names {name:?}, which is not a graph input (inputs: {})",
                model.display(),
                input_names(g)
            )
        })?;
        let ty = &mut g.values[id.index()].ty;
        if ty.rank() != dims.len() {
            bail!(
                "{}: --input-shape {name}: input has rank {} ({ty}), the shape given has rank {}",
                model.display(),
                ty.rank(),
                dims.len()
            );
        }
        for (axis, (d, &n)) in ty.shape.iter().zip(dims).enumerate() {
            if let Dim::Known(k) = d {
                if *k != n {
                    bail!(
                        "{}: --input-shape {name}: axis {axis} is fixed at {k} by the model, not {n}",
                        model.display()
                    );
                }
            }
        }
        ty.shape = kestrel_ir::shape_of(dims);
    }
    g.reinfer()
        .with_context(|| format!("{}: after binding input shapes", model.display()))?;
    Ok(())
}

fn input_by_name(g: &Graph, name: &str) -> Option<kestrel_ir::ValueId> {
    g.inputs
        .iter()
        .copied()
        .find(|&v| g.value(v).name.as_deref() == Some(name))
}

fn input_names(g: &Graph) -> String {
    g.inputs
        .iter()
        .map(|&v| g.value(v).name.clone().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Matches the given files to graph inputs (by name, then in order) and checks every input is
/// bound exactly once with the right dtype and rank. Returns tensors in `g.inputs` order.
pub fn bind_inputs(g: &Graph, spec: &InputSpec, model: &Path) -> Result<Vec<Tensor>> {
    let mut binding = Binding::new(g);
    for archive in &spec.archives {
        for (name, t) in tensor_io::read_npz(archive)? {
            if let Some(pos) = binding.position(&name) {
                binding.bind(pos, t, archive.display().to_string())?;
            }
        }
    }
    for (name, file) in &spec.files {
        let t = tensor_io::read_tensor_file(file)?;
        let pos = match name {
            Some(n) => binding.position(n).ok_or_else(|| {
                anyhow!(
                    "{}: --input {n}=...: the model has no input {n:?} (inputs: {})",
                    model.display(),
                    input_names(g)
                )
            })?,
            None => binding.next_unbound().ok_or_else(|| {
                anyhow!(
                    "{}: every graph input is already bound; {} has nowhere to go",
                    model.display(),
                    file.display()
                )
            })?,
        };
        binding.bind(pos, t, file.display().to_string())?;
    }
    binding.finish(model, |name| {
        format!("is not bound; give --input {name}=FILE or --inputs FILE.npz")
    })
}

/// Binds tensors given by input name (every graph input exactly once) with the checks of
/// [`bind_inputs`]. Returns them in `g.inputs` order.
pub fn bind_named(g: &Graph, named: &[(String, Tensor)], model: &Path) -> Result<Vec<Tensor>> {
    let mut binding = Binding::new(g);
    for (name, t) in named {
        let pos = binding.position(name).ok_or_else(|| {
            anyhow!(
                "{}: the model has no input {name:?} (inputs: {})",
                model.display(),
                input_names(g)
            )
        })?;
        binding.bind(pos, t.clone(), format!("the tensor given for {name:?}"))?;
    }
    binding.finish(model, |_| "is not given".to_string())
}

/// Tensors assigned to graph inputs so far, each with where it came from (for messages).
struct Binding<'g> {
    g: &'g Graph,
    slots: Vec<Option<(Tensor, String)>>,
}

impl<'g> Binding<'g> {
    fn new(g: &'g Graph) -> Binding<'g> {
        Binding {
            g,
            slots: vec![None; g.inputs.len()],
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.g
            .inputs
            .iter()
            .position(|&v| self.g.value(v).name.as_deref() == Some(name))
    }

    fn next_unbound(&self) -> Option<usize> {
        self.slots.iter().position(Option::is_none)
    }

    /// Assigns `t` (from `source`) to input `pos`; binding an input twice is an error.
    fn bind(&mut self, pos: usize, t: Tensor, source: String) -> Result<()> {
        let name = self
            .g
            .value(self.g.inputs[pos])
            .name
            .clone()
            .unwrap_or_default();
        if let Some((_, prev)) = &self.slots[pos] {
            bail!("input {name:?} is bound twice ({prev} and {source})");
        }
        self.slots[pos] = Some((t, source));
        Ok(())
    }

    /// Checks, input by input, that each is bound (else the error says `input NAME (TYPE)` and
    /// `unbound(NAME)`) to a tensor of its dtype and shape; returns the tensors in input order.
    fn finish(self, model: &Path, unbound: impl Fn(&str) -> String) -> Result<Vec<Tensor>> {
        let g = self.g;
        let mut out = Vec::with_capacity(self.slots.len());
        for (pos, slot) in self.slots.into_iter().enumerate() {
            let v = g.value(g.inputs[pos]);
            let name = v.name.clone().unwrap_or_default();
            let Some((t, source)) = slot else {
                bail!(
                    "{}: input {name:?} ({}) {}",
                    model.display(),
                    v.ty,
                    unbound(&name)
                );
            };
            if t.dtype() != v.ty.dtype {
                bail!(
                    "{}: input {name:?} expects {}, {source} holds {} {:?}",
                    model.display(),
                    v.ty,
                    t.dtype(),
                    t.dims()
                );
            }
            let fits = t.dims().len() == v.ty.rank()
                && t.dims().iter().zip(&v.ty.shape).all(|(&n, d)| match d {
                    Dim::Known(k) => *k == n,
                    _ => true,
                });
            if !fits {
                bail!(
                    "{}: input {name:?} expects shape {}, {source} holds shape {:?}",
                    model.display(),
                    v.ty,
                    t.dims()
                );
            }
            out.push(t);
        }
        Ok(out)
    }
}

/// How [`prepare_inputs`] uses what an [`InputSpec`] gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputPolicy {
    /// Every graph input must be bound by the spec's files and archives; the arrays' shapes then
    /// bind the symbolic dimensions (`kestrel run`).
    Required,
    /// Bound by the spec when it gives any data, otherwise deterministic pseudo-random inputs
    /// ([`synthetic_inputs`]); their shapes bind the symbolic dimensions (`bench`, `compare`).
    SyntheticUnlessGiven,
    /// Sample arrays, when the spec gives any, bind the symbolic dimensions; then a leading one
    /// left symbolic becomes 1 and any other is an error ([`bind_default_batch`]) (`compile`).
    DefaultBatch,
    /// Only the spec's shapes apply; its files are not read (`dump`).
    ShapesOnly,
}

/// Applies `spec` to `graph` under `policy`: the shapes first ([`apply_input_shapes`]), then
/// the data, then the symbolic dimensions the data binds ([`bind_shapes_from_inputs`]), so that
/// passes see concrete shapes. Returns the input tensors in graph-input order: empty for
/// [`InputPolicy::ShapesOnly`], and for [`InputPolicy::DefaultBatch`] without data.
pub fn prepare_inputs(
    graph: &mut Graph,
    spec: &InputSpec,
    policy: InputPolicy,
    model: &Path,
) -> Result<Vec<Tensor>> {
    apply_input_shapes(graph, &spec.shapes, model)?;
    let inputs = match policy {
        InputPolicy::ShapesOnly => return Ok(Vec::new()),
        InputPolicy::Required => bind_inputs(graph, spec, model)?,
        InputPolicy::SyntheticUnlessGiven if !spec.has_data() => synthetic_inputs(graph, model)?,
        InputPolicy::SyntheticUnlessGiven => bind_inputs(graph, spec, model)?,
        InputPolicy::DefaultBatch if spec.has_data() => bind_inputs(graph, spec, model)?,
        InputPolicy::DefaultBatch => Vec::new(),
    };
    bind_shapes_from_inputs(graph, &inputs, model)?;
    if policy == InputPolicy::DefaultBatch {
        bind_default_batch(graph, model)?;
    }
    Ok(inputs)
}

/// Binds what `compile` may default: a symbolic leading (batch) dimension of an input becomes
/// 1. Any other unbound dimension is an error that lists them all (`docs/CLI.md`).
pub fn bind_default_batch(g: &mut Graph, model: &Path) -> Result<()> {
    let mut changed = false;
    let mut unbound = Vec::new();
    for &v in &g.inputs.clone() {
        let name = g.value(v).name.clone().unwrap_or_default();
        let ty = &mut g.values[v.index()].ty;
        for (axis, d) in ty.shape.iter_mut().enumerate() {
            if matches!(d, Dim::Known(_)) {
                continue;
            }
            if axis == 0 {
                *d = Dim::Known(1);
                changed = true;
            } else {
                unbound.push(format!("{name} axis {axis} ({d})"));
            }
        }
    }
    if !unbound.is_empty() {
        bail!(
            "{}: compiling needs every input dimension bound; unbound: {} (give --input-shape NAME=DIMS)",
            model.display(),
            unbound.join(", ")
        );
    }
    if changed {
        g.reinfer().with_context(|| {
            format!(
                "{}: after binding the batch dimension to 1",
                model.display()
            )
        })?;
    }
    Ok(())
}

/// One line describing a tensor: name, type, and a few statistics.
pub fn summarize(name: &str, t: &Tensor) -> String {
    let values = t.to_f64_vec();
    let head: Vec<String> = values.iter().take(8).map(|v| format!("{v:.6}")).collect();
    let more = if values.len() > 8 { ", ..." } else { "" };
    let argmax = values
        .iter()
        .enumerate()
        .fold(None::<(usize, f64)>, |best, (i, &v)| match best {
            Some((_, b)) if b >= v || v.is_nan() => best,
            _ => Some((i, v)),
        })
        .map(|(i, _)| i);
    format!(
        "{name}: {}{:?} [{}{more}]{}",
        t.dtype(),
        t.dims(),
        head.join(", "),
        // The class index is meaningful only for one row of scores.
        argmax
            .filter(|_| t.dims().iter().filter(|&&d| d > 1).count() <= 1)
            .map(|i| format!(" argmax={i}"))
            .unwrap_or_default()
    )
}

/// Writes the outputs of `run`: `DIR/<name>.npy` per output when `dir` is given (creating DIR),
/// and one `.npz` when `npz` is given. All or nothing: names are checked before anything is
/// written, each file is written atomically, and when any write fails every file already
/// written (and DIR, if this call created it) is removed again.
pub fn write_outputs(
    dir: Option<&Path>,
    npz: Option<&Path>,
    outputs: &[(String, Tensor)],
) -> Result<()> {
    if let Some(dir) = dir {
        for (name, _) in outputs {
            let safe = !name.is_empty()
                && !name.contains(['/', '\\'])
                && name != "."
                && name != ".."
                && !name.contains('\0');
            if !safe {
                bail!(
                    "output name {name:?} cannot be used as a file name in {}",
                    dir.display()
                );
            }
        }
    }
    let mut written: Vec<PathBuf> = Vec::new();
    let mut created_dir: Option<PathBuf> = None;
    // Until every output is written, a signal removes those written and the folder
    // (`crate::interrupt`), as a failure does below.
    let mut pending: Vec<crate::interrupt::Pending> = Vec::new();
    let result = (|| -> Result<()> {
        if let Some(dir) = dir {
            if !dir.is_dir() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                pending.push(crate::interrupt::Pending::dir(dir));
                created_dir = Some(dir.to_path_buf());
            }
            for (name, t) in outputs {
                let path = dir.join(format!("{name}.npy"));
                // Registered once written: a file of that name from before stays until replaced.
                tensor_io::write_npy(&path, t)?;
                pending.push(crate::interrupt::Pending::new(&path));
                written.push(path);
            }
        }
        if let Some(path) = npz {
            tensor_io::write_npz(path, outputs)?;
        }
        Ok(())
    })();
    if result.is_err() {
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
        if let Some(d) = created_dir {
            // Only removes it if empty, i.e. if nothing else was put there meanwhile.
            let _ = std::fs::remove_dir(d);
        }
    }
    result
}

/// Counts the graph's constants that hold data (for reports).
pub fn weight_bytes(g: &Graph) -> usize {
    g.values
        .iter()
        .filter_map(|v| match &v.def {
            ValueDef::Const(c) => c.data.as_ref().map(|t| t.bytes().len()),
            _ => None,
        })
        .sum()
}

/// Gives every graph input the exact shape of the tensor bound to it (binding symbolic dims, as
/// other runtimes do) and re-infers the graph, so passes see concrete shapes.
pub fn bind_shapes_from_inputs(g: &mut Graph, inputs: &[Tensor], model: &Path) -> Result<()> {
    let mut changed = false;
    for (&v, t) in g.inputs.clone().iter().zip(inputs) {
        let shape = kestrel_ir::shape_of(t.dims());
        let ty = &mut g.values[v.index()].ty;
        if ty.shape != shape {
            ty.shape = shape;
            changed = true;
        }
    }
    if changed {
        g.reinfer()
            .with_context(|| format!("{}: after binding the input shapes", model.display()))?;
    }
    Ok(())
}

/// The pass context of the driver: constant folding evaluates ops with the reference interpreter.
/// Folds `g` for code generation (`kestrel_passes::fold_constants::fold_for_codegen`, with the
/// interpreter as evaluator): every node whose result is known at compile time becomes a
/// constant, as the code generators require. Every path to native code runs it after the
/// pipeline, whatever the pipeline was.
pub fn fold_for_codegen(g: &mut Graph, model: &Path) -> Result<()> {
    kestrel_passes::fold_constants::fold_for_codegen(g, &pass_context())
        .with_context(|| format!("{}: folding constants for code generation", model.display()))?;
    Ok(())
}

pub fn pass_context() -> kestrel_passes::PassContext {
    kestrel_passes::PassContext::with_evaluator(|op: &kestrel_ir::Op, inputs: &[&Tensor]| {
        Some(kestrel_backends::interp::eval_op(op, inputs).map_err(|e| e.to_string()))
    })
}

/// The pass pipeline to run and the pass manager's switches: what the `--pipeline`,
/// `--disable-pass`, `--pass-limit`, `--time-passes` and `--verify-each` options say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassOptions {
    /// A named pipeline (`O0`, `O1`, `O2`; `kestrel passes` lists them) or a textual one such as
    /// `canonicalize,fixpoint(cse,dce)`; `None`: the caller's default.
    pub pipeline: Option<String>,
    /// Passes (or groups) to skip, by name.
    pub disable_pass: Vec<String>,
    /// Stop after this many pass applications (to bisect a miscompile).
    pub pass_limit: Option<usize>,
    /// Asks for the timing table ([`Report::timing_table`]); timing is measured regardless.
    pub time_passes: bool,
    /// Verify the graph after every pass application.
    pub verify_each: bool,
    /// Quantize to int8 before the pipeline (`canonicalize,quantize,` ahead of it, and its
    /// `fold-qdq` with Kestrel's fixed-point requantization, as in the `int8` pipeline).
    pub quantize: bool,
    /// Calibration data for the `quantize` pass.
    pub calib: Option<PathBuf>,
    /// Prune this share of channels first (`prune(ratio=R),` ahead of everything).
    pub prune: Option<f64>,
    /// The graph is int8 QDQ already (quantized by a stage of `compile --distill-data`): the
    /// pipeline's `fold-qdq` uses Kestrel's fixed-point requantization, as after `quantize`.
    pub quantized: bool,
}

impl PassOptions {
    /// The pipeline `pipeline` with the pass manager's defaults.
    pub fn pipeline(pipeline: impl Into<String>) -> PassOptions {
        PassOptions {
            pipeline: Some(pipeline.into()),
            ..PassOptions::default()
        }
    }

    /// Whether nothing is asked for: no pipeline named, no switch set.
    pub fn is_default(&self) -> bool {
        *self == PassOptions::default()
    }

    /// The pass manager's options, running `default` when no pipeline is named.
    pub fn resolve(&self, default: &str) -> kestrel_passes::PipelineOptions {
        let base = self.pipeline.clone().unwrap_or_else(|| default.to_string());
        // A pipeline that does not parse keeps its text: the pass manager reports the error.
        let expanded = |fixed_point: bool| {
            kestrel_passes::pipeline::resolve_pipeline(&base).map_or(base.clone(), |p| {
                if fixed_point {
                    kestrel_passes::pipeline::with_fixed_point_requant(p).to_string()
                } else {
                    p.to_string()
                }
            })
        };
        let mut steps = Vec::new();
        if let Some(r) = self.prune {
            steps.push(format!("prune(ratio={r})"));
        }
        let rest = if self.quantize && base != "int8" {
            steps.push("canonicalize,quantize".to_string());
            expanded(true)
        } else if self.quantized {
            expanded(true)
        } else if !steps.is_empty() {
            expanded(false)
        } else {
            base.clone()
        };
        if !rest.trim().is_empty() || steps.is_empty() {
            steps.push(rest);
        }
        let pipeline = steps.join(",");
        kestrel_passes::PipelineOptions {
            pipeline,
            disable: self.disable_pass.clone(),
            pass_limit: self.pass_limit,
            time_passes: self.time_passes,
            verify_each: self.verify_each,
            dump_dir: None,
            dump_after: None,
            calibration: self.calib.clone(),
        }
    }
}

/// Runs the pipeline `opts` over `graph` with [`pass_context`]; errors name the model and the
/// pipeline. Warnings, timings and dumps kept in memory are in the returned report.
pub fn run_pipeline(
    graph: &mut Graph,
    opts: &kestrel_passes::PipelineOptions,
    model: &Path,
) -> Result<Report> {
    let mut cx = pass_context();
    if let Some(data) = &opts.calibration {
        cx.calibrator = Some(std::sync::Arc::new(crate::calibrate::JitCalibrator {
            data: crate::calibrate::CalibrationData::load(graph, data, None)?,
            threads: 1,
        }));
    }
    kestrel_passes::run_pipeline(graph, opts, &cx)
        .with_context(|| format!("{}: pipeline {:?}", model.display(), opts.pipeline))
}

/// A model ready for code generation: inputs bound, pipeline run.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The graph after the pipeline.
    pub graph: Graph,
    /// The input tensors in graph-input order, as [`prepare_inputs`] returned them.
    pub inputs: Vec<Tensor>,
    /// What the pass manager did.
    pub report: Report,
    /// The model file (or the name standing for it), for messages.
    pub path: PathBuf,
    pub load_time: Duration,
}

/// [`prepare_inputs`], then [`run_pipeline`]. `on_passes` sees the pass report as soon as the
/// pipeline has run, before any later step can fail (the command line prints warnings and
/// timings there).
pub fn prepare(
    model: LoadedModel,
    spec: &InputSpec,
    policy: InputPolicy,
    pipeline: &kestrel_passes::PipelineOptions,
    on_passes: &mut dyn FnMut(&Report),
) -> Result<Prepared> {
    let LoadedModel {
        mut graph,
        path,
        load_time,
    } = model;
    let inputs = prepare_inputs(&mut graph, spec, policy, &path)?;
    let report = run_pipeline(&mut graph, pipeline, &path)?;
    on_passes(&report);
    Ok(Prepared {
        graph,
        inputs,
        report,
        path,
        load_time,
    })
}

/// Whether `a` and `b` name one existing file (also through a hard link or a symlink).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}

/// Refuses when any of `outputs` is one of `inputs` (the same file, also through a hard link or a
/// symlink): a command never overwrites what it reads. Outputs that do not exist yet pass.
pub fn refuse_overwriting_inputs(outputs: &[&Path], inputs: &[&Path]) -> Result<()> {
    for out in outputs {
        if let Some(input) = inputs.iter().find(|i| same_file(out, i)) {
            bail!(
                "{}: refusing to overwrite the input {}",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Checks that a command may write `output`: never the model it reads (`input`, also through a
/// hard link or a symlink), and an existing file only with `force`.
pub fn check_output_path(input: &Path, output: &Path, force: bool) -> Result<()> {
    if same_file(input, output) {
        bail!(
            "{}: refusing to overwrite the input model {}",
            output.display(),
            input.display()
        );
    }
    if output.exists() && !force {
        bail!("{} exists; pass --force to overwrite it", output.display());
    }
    Ok(())
}

/// Checks a thread count and a count of timed runs: both must be at least 1.
pub fn check_threads_and_iters(threads: usize, iters: usize) -> Result<()> {
    if threads == 0 || iters == 0 {
        bail!("--threads and --iters must be at least 1");
    }
    Ok(())
}

/// Checks a thread count: at least 1.
pub fn check_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    Ok(())
}

/// Deterministic inputs for benchmarking: pseudo-random floats in [0, 1) (integers and bools
/// zero). A leading symbolic dimension (a batch) becomes 1; any other unbound dimension is an
/// error that lists them.
pub fn synthetic_inputs(g: &Graph, model: &Path) -> Result<Vec<Tensor>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut out = Vec::new();
    for &v in &g.inputs {
        let value = g.value(v);
        let name = value.name.clone().unwrap_or_default();
        let mut dims = Vec::new();
        let mut unbound = Vec::new();
        for (axis, d) in value.ty.shape.iter().enumerate() {
            match d {
                Dim::Known(n) => dims.push(*n),
                _ if axis == 0 => dims.push(1),
                other => {
                    unbound.push(format!("axis {axis} ({other})"));
                    dims.push(1);
                }
            }
        }
        if !unbound.is_empty() {
            bail!(
                "{}: input {name:?} has unbound dimensions {}; give --input-shape {name}=...",
                model.display(),
                unbound.join(", ")
            );
        }
        let n: usize = dims.iter().product();
        let t = match value.ty.dtype {
            kestrel_ir::DType::F32 => Tensor::from_vec(dims, (0..n).map(|_| next()).collect()),
            dtype => Tensor::zeros(dtype, dims)
                .map_err(|e| anyhow!("{}: input {name:?}: {e}", model.display()))?,
        };
        out.push(t);
    }
    Ok(out)
}

/// Median, minimum and maximum of measured latencies, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyStats {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    /// Statistics of a non-empty sample (the median of an even count is the mean of the middle two).
    pub fn of(times: &[std::time::Duration]) -> LatencyStats {
        let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        LatencyStats {
            median_ms: median,
            min_ms: ms[0],
            max_ms: ms[n - 1],
        }
    }
}
