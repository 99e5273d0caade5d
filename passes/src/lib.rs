//! Graph-to-graph passes over the Kestrel IR, the pass manager that runs them, and the named
//! pipelines.
//!
//! - [`Pass`]: a name and `run(&mut Graph, &PassContext) -> Result<changed>`. Every pass leaves a
//!   graph that verifies when given one that does, and never panics on a valid graph.
//! - [`registry`]: the one `match` from pass names (with `name(key=value,…)` options) to passes,
//!   [`list_passes`] and [`list_pipelines`].
//! - [`pipeline`]: the textual pipeline syntax (`canonicalize,fixpoint(cse,dce)`), its parser and
//!   printer, and the named pipelines ([`pipeline::o0`], [`pipeline::o1`]).
//! - [`manager`]: [`PassManager`] (verification, dumps, disabling, pass limit, timing, fixpoint
//!   groups) and [`run_pipeline`], the entry point the CLI calls.
//!
//! `passes` depends only on `kestrel-ir`: constant folding evaluates ops through the
//! [`ConstEvaluator`] held by [`PassContext`], which the driver backs with the interpreter.

pub mod autodiff;
pub mod cancel_transpose_reshape;
mod check;
pub mod cost;
pub mod cse;
pub mod dce;
pub mod egraph;
pub mod fold_batchnorm;
pub mod fold_constants;
mod fold_integer;
pub mod fold_qdq;
pub mod fuse;
pub mod manager;
pub mod pipeline;
pub mod prune;
pub mod quantize;
pub mod registry;
pub mod remove_identity;
mod util;

use kestrel_ir::{Graph, Op, Tensor};
use std::sync::Arc;

pub use manager::{
    run_pipeline, DirSink, DumpSink, MemorySink, PassManager, PassRun, PipelineOptions, Report,
};
pub use pipeline::{parse_pipeline, Pipeline, PipelineItem};
pub use registry::{create_pass, list_passes, list_pipelines};

/// A graph-to-graph transformation.
///
/// Contract: given a graph that verifies, `run` returns `Ok(true)` if it changed the graph and
/// `Ok(false)` if it left it exactly as it was; either way the graph verifies afterwards and
/// computes the same function (up to floating-point reassociation where a pass documents it).
/// `Err` is reserved for internal failures; the graph may then be partially rewritten.
pub trait Pass {
    /// The registry name (`fold-constants`).
    fn name(&self) -> &'static str;
    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<bool, PassError>;
}

/// Evaluates one op on constant inputs (the driver backs it with the reference interpreter).
///
/// Returns `None` when the evaluator does not handle the op (the node is then left alone),
/// `Some(Err(reason))` when evaluation failed, and `Some(Ok(outputs))` otherwise.
pub trait ConstEvaluator {
    fn eval(&self, op: &Op, inputs: &[&Tensor]) -> Option<Result<Vec<Tensor>, String>>;
}

impl<F> ConstEvaluator for F
where
    F: Fn(&Op, &[&Tensor]) -> Option<Result<Vec<Tensor>, String>>,
{
    fn eval(&self, op: &Op, inputs: &[&Tensor]) -> Option<Result<Vec<Tensor>, String>> {
        self(op, inputs)
    }
}

/// What passes may use besides the graph.
#[derive(Clone)]
pub struct PassContext {
    /// Evaluates ops for constant folding; without one, only shape queries (Shape, Size) and
    /// identities fold.
    pub evaluator: Option<Arc<dyn ConstEvaluator + Send + Sync>>,
    /// Largest number of elements a folded constant may have (per output); larger results are
    /// left computed at run time so folding never blows up memory or model size.
    pub max_fold_elements: usize,
    /// Lines a pass records about its application (the e-graph passes' stop reason, sizes and
    /// rule counts); the pass manager moves them into [`Report::notes`] and into the dump
    /// written after that application, as `//` comments.
    pub notes: Arc<std::sync::Mutex<Vec<String>>>,
    /// Cost model for extraction in the e-graph passes; `None` is the static estimate
    /// ([`cost::StaticCost`]).
    pub cost_model: Option<Arc<dyn cost::CostModel + Send + Sync>>,
    /// Runs the graph over calibration data for the `quantize` pass; `None` (no `--calib`) makes
    /// that pass fail with a message asking for the data.
    pub calibrator: Option<Arc<dyn quantize::Calibrator + Send + Sync>>,
}

/// Default for [`PassContext::max_fold_elements`]: one million elements.
pub const DEFAULT_MAX_FOLD_ELEMENTS: usize = 1 << 20;

impl Default for PassContext {
    fn default() -> Self {
        PassContext {
            evaluator: None,
            max_fold_elements: DEFAULT_MAX_FOLD_ELEMENTS,
            notes: Default::default(),
            cost_model: None,
            calibrator: None,
        }
    }
}

impl std::fmt::Debug for PassContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassContext")
            .field("evaluator", &self.evaluator.as_ref().map(|_| "<evaluator>"))
            .field("max_fold_elements", &self.max_fold_elements)
            .field(
                "calibrator",
                &self.calibrator.as_ref().map(|_| "<calibrator>"),
            )
            .finish()
    }
}

impl PassContext {
    /// Records one note for the current pass application (see [`PassContext::notes`]).
    pub fn note(&self, line: impl Into<String>) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(line.into());
        }
    }

    /// Takes the notes recorded since the last call.
    pub fn take_notes(&self) -> Vec<String> {
        self.notes
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default()
    }

    /// A context without an evaluator.
    pub fn new() -> Self {
        Self::default()
    }

    /// A context whose constant folding evaluates ops with `evaluator`.
    pub fn with_evaluator(evaluator: impl ConstEvaluator + Send + Sync + 'static) -> Self {
        PassContext {
            evaluator: Some(Arc::new(evaluator)),
            ..Self::default()
        }
    }
}

/// Why a pipeline could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("unknown pass \"{name}\"; known passes: {known}")]
    UnknownPass { name: String, known: String },
    #[error("pass {pass}: {reason}")]
    BadOption { pass: String, reason: String },
    #[error("pipeline syntax error at column {column}: {reason}\n  {text}\n  {caret:>width$}", caret = "^", width = column)]
    Syntax {
        text: String,
        column: usize,
        reason: String,
    },
    #[error("the graph does not verify after pass application {index} ({pass}):\n{}", errors.join("\n"))]
    Verify {
        pass: String,
        index: usize,
        errors: Vec<String>,
    },
    #[error("the graph does not verify at the end of the pipeline (rerun with --verify-each to find the pass):\n{}", errors.join("\n"))]
    VerifyEnd { errors: Vec<String> },
    #[error("the input graph does not verify:\n{}", errors.join("\n"))]
    VerifyInput { errors: Vec<String> },
    #[error("pass {pass}: {reason}")]
    Failed { pass: String, reason: String },
    #[error("writing dump {file}: {source}")]
    Dump {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

impl PassError {
    /// A pass-internal failure.
    pub fn failed(pass: &str, reason: impl std::fmt::Display) -> Self {
        PassError::Failed {
            pass: pass.to_string(),
            reason: reason.to_string(),
        }
    }
}
