//! Models compiled and run inside this process: native code from the Cranelift JIT, or the
//! reference interpreter, behind one type ([`InProcessModel`]).
//!
//! [`run`] is `kestrel run MODEL.onnx`; [`compile`] is what a Python package's
//! `kestrel.compile("m.onnx", pipeline="O2", threads=2)` needs, the model it returns then runs
//! any number of times ([`InProcessModel::run_named`] for `m.run({...})`). Ahead-of-time
//! compilation into a shared object is [`crate::aot::compile_so`].

use crate::driver::{self, InputPolicy, InputSpec, LoadedModel, PassOptions};
use anyhow::{Context, Result};
use kestrel_backends::jit::{self, JitModel, JitOptions};
use kestrel_ir::{Graph, Tensor};
use kestrel_passes::Report;
use std::path::{Path, PathBuf};

/// What runs a graph in this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// Native code compiled in-process by Cranelift.
    #[default]
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

    /// The pipeline run when none is named: the interpreter, being the reference, runs the
    /// graph as imported (`O0`); native code gets the canonicalised and fused graph (`O2`).
    pub fn default_pipeline(self) -> &'static str {
        match self {
            Backend::Interp => "O0",
            Backend::Jit => "O2",
        }
    }
}

/// A graph compiled for one backend, ready to run any number of times, from any thread (the
/// JIT's runs take turns on its one activation arena).
pub struct InProcessModel {
    graph: Graph,
    backend: Backend,
    jit: Option<JitModel>,
    path: PathBuf,
}

impl InProcessModel {
    /// Compiles `graph` (passes already run; for the JIT every dimension bound) for `backend`.
    /// With the JIT, `threads` (at least 1) workers share the tasks large kernels are split
    /// into; outputs are bit-identical for any count. `model` names the model in messages.
    pub fn new(
        mut graph: Graph,
        backend: Backend,
        threads: usize,
        model: &Path,
    ) -> Result<InProcessModel> {
        driver::check_threads(threads)?;
        let jit = match backend {
            Backend::Jit => {
                driver::fold_for_codegen(&mut graph, model)?;
                Some(
                    jit::compile(&graph, &JitOptions::with_threads(threads))
                        .with_context(|| format!("{}: compiling with the JIT", model.display()))?,
                )
            }
            Backend::Interp => None,
        };
        Ok(InProcessModel {
            graph,
            backend,
            jit,
            path: model.to_path_buf(),
        })
    }

    /// The graph as compiled (after the pipeline and, for the JIT, the fold for code generation).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The graph as compiled, giving up the compiled code.
    pub fn into_graph(self) -> Graph {
        self.graph
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The JIT-compiled code (arena and code sizes, compile time); `None` for the interpreter.
    pub fn jit(&self) -> Option<&JitModel> {
        self.jit.as_ref()
    }

    /// Names of the graph inputs, in the order [`InProcessModel::run`] takes them.
    pub fn input_names(&self) -> Vec<String> {
        self.graph
            .inputs
            .iter()
            .map(|&v| self.graph.value(v).name.clone().unwrap_or_default())
            .collect()
    }

    /// Names of the graph outputs, in the order runs return them.
    pub fn output_names(&self) -> Vec<String> {
        self.graph.outputs.iter().map(|o| o.name.clone()).collect()
    }

    /// Runs once on `inputs` (graph-input order; dtypes and shapes exactly the graph's) and
    /// returns the outputs in graph-output order.
    pub fn run_tensors(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let outputs = match &self.jit {
            Some(model) => model.run(inputs)?,
            None => kestrel_backends::interp::run(&self.graph, inputs)?,
        };
        Ok(outputs)
    }

    /// [`InProcessModel::run_tensors`] with each output paired with its name; errors say
    /// `running MODEL`.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<(String, Tensor)>> {
        let outputs = self
            .run_tensors(inputs)
            .with_context(|| format!("running {}", self.path.display()))?;
        Ok(self.output_names().into_iter().zip(outputs).collect())
    }

    /// Runs on tensors given by input name: every graph input exactly once, each with the
    /// input's dtype and shape (checked as for input files, [`driver::bind_named`]).
    pub fn run_named(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
        let inputs = driver::bind_named(&self.graph, inputs, &self.path)?;
        self.run(&inputs)
    }
}

/// Options of [`run`] and [`compile`].
#[derive(Clone, Debug)]
pub struct InProcessOptions {
    pub backend: Backend,
    /// The pipeline; without one, [`Backend::default_pipeline`].
    pub passes: PassOptions,
    /// Worker threads of the JIT (at least 1).
    pub threads: usize,
    /// [`run`]: every input's data. [`compile`]: input shapes, and optionally sample arrays
    /// whose shapes bind the symbolic dimensions.
    pub inputs: InputSpec,
}

impl Default for InProcessOptions {
    fn default() -> Self {
        InProcessOptions {
            backend: Backend::Jit,
            passes: PassOptions::default(),
            threads: 1,
            inputs: InputSpec::default(),
        }
    }
}

/// Compiles a model to run in this process: binds the input shapes the options give
/// ([`InputPolicy::DefaultBatch`]: a leading dimension left symbolic becomes 1, any other is an
/// error), runs the pipeline and compiles for the backend. `on_passes` sees the pass report
/// before code generation ([`driver::prepare`]).
pub fn compile(
    model: LoadedModel,
    opts: &InProcessOptions,
    on_passes: &mut dyn FnMut(&Report),
) -> Result<InProcessModel> {
    driver::check_threads(opts.threads)?;
    let pipeline = opts.passes.resolve(opts.backend.default_pipeline());
    let prepared = driver::prepare(
        model,
        &opts.inputs,
        InputPolicy::DefaultBatch,
        &pipeline,
        on_passes,
    )?;
    InProcessModel::new(prepared.graph, opts.backend, opts.threads, &prepared.path)
}

/// `kestrel run` on an ONNX or `.kir` model: binds every input from the options' files
/// ([`InputPolicy::Required`]; the arrays bind the symbolic dimensions), runs the pipeline,
/// compiles for the backend and runs once. Returns the outputs by name, in graph-output order.
pub fn run(
    model: LoadedModel,
    opts: &InProcessOptions,
    on_passes: &mut dyn FnMut(&Report),
) -> Result<Vec<(String, Tensor)>> {
    driver::check_threads(opts.threads)?;
    let pipeline = opts.passes.resolve(opts.backend.default_pipeline());
    let prepared = driver::prepare(
        model,
        &opts.inputs,
        InputPolicy::Required,
        &pipeline,
        on_passes,
    )?;
    let compiled = InProcessModel::new(prepared.graph, opts.backend, opts.threads, &prepared.path)?;
    compiled.run(&prepared.inputs)
}
