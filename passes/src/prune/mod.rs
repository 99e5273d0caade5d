//! Structured pruning: whole channels removed from every layer that shares them, so the result
//! is a smaller dense model (docs/PRUNING.md).
//!
//! - [`groups`]: the channel dependency groups of a graph ([`analyze`]);
//! - [`importance`]: each group's channel scores (L2 `Σw²`, L1 `Σ|w|`, BatchNorm `|γ|`), and
//!   [`activation`]: scores from activation statistics the caller measures;
//! - [`select`]: which channels go, per group or by one global threshold;
//! - [`apply`]: slices every member and rewrites the attributes that count channels.

pub mod activation;
pub mod groups;
mod rewrite;
mod select;

pub use activation::{ActivationStats, Probe};
pub use groups::{analyze, Analysis, Edit, Group, Member, Role};
pub use rewrite::apply;
pub use select::{importance, select, Choice, Importance, PruneOptions};

use crate::registry::Options;
use crate::{Pass, PassContext, PassError};
use kestrel_ir::{Dim, Graph};

/// Why a graph could not be pruned.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(
        "--ratio {0}: must be in [0, 1): a ratio of 1 or more would empty every layer (below 1, \
         each layer keeps at least one channel)"
    )]
    BadRatio(f64),
    #[error("--round-to must be at least 1")]
    BadRoundTo,
    #[error("nothing to prune: no channel group can shrink ({0})")]
    NothingToPrune(String),
    #[error("--keep {name:?}: no Conv, Gemm or MatMul of a prunable group has that name; prunable: {valid}")]
    UnknownKeep { name: String, valid: String },
    #[error(
        "--importance bn: no prunable group has a BatchNormalization (it was folded away, or \
         the model has none); use l2 or l1, or a model that still carries BatchNormalization"
    )]
    NoBatchNorm,
    #[error(
        "--importance activation needs calibration data: kestrel prune --importance activation \
         --calib DATA (the textual pass cannot measure activations)"
    )]
    NeedsActivations,
    #[error("{0}")]
    Graph(#[from] kestrel_ir::GraphError),
}

/// The `prune` pass: options `ratio=R`, `importance=l2|l1|bn` (`activation` needs measured
/// statistics, so only the library and `kestrel prune --calib` offer it), `global=true`, `round_to=N`,
/// `keep=NODE` (repeatable).
#[derive(Clone, Debug, PartialEq)]
pub struct Prune {
    pub options: PruneOptions,
}

impl Prune {
    pub(crate) fn from_options(opts: &Options) -> Result<Prune, PassError> {
        let importance: Option<String> = opts.get("importance")?;
        let importance =
            Importance::parse(importance.as_deref().unwrap_or("l2")).map_err(|reason| {
                PassError::BadOption {
                    pass: "prune".into(),
                    reason,
                }
            })?;
        Ok(Prune {
            options: PruneOptions {
                ratio: opts.get("ratio")?.ok_or_else(|| PassError::BadOption {
                    pass: "prune".into(),
                    reason: "needs ratio=R".into(),
                })?,
                importance,
                global: opts.get("global")?.unwrap_or(false),
                round_to: opts.get("round_to")?.unwrap_or(1),
                keep: opts.get_all("keep"),
                only: None,
            },
        })
    }
}

/// `g` with every symbolic leading (batch) extent of its inputs bound to 1: the analysis needs
/// known shapes; the channels it finds do not depend on the batch.
fn with_unit_batch(g: &Graph) -> Result<Graph, PruneError> {
    let mut b = g.clone();
    let mut changed = false;
    for &v in &g.inputs {
        if let Some(d) = b.values[v.index()].ty.shape.first_mut() {
            if !matches!(d, Dim::Known(_)) {
                *d = Dim::Known(1);
                changed = true;
            }
        }
    }
    if changed {
        b.reinfer()?;
    }
    Ok(b)
}

/// Analyses, scores, selects and applies: the whole pruning of `g`; returns the analysis (made
/// on `g` with a unit batch; its value and node ids are `g`'s) and what was chosen. Graph inputs
/// and outputs keep their shapes.
pub fn prune(g: &mut Graph, options: &PruneOptions) -> Result<(Analysis, Vec<Choice>), PruneError> {
    prune_with_activations(g, options, None)
}

/// The tensors whose activation statistics [`Importance::Activation`] needs (value ids of `g`).
pub fn activation_probes(g: &Graph) -> Result<Vec<Probe>, PruneError> {
    let bound = with_unit_batch(g)?;
    Ok(activation::probes(&bound, &analyze(&bound)))
}

/// [`prune`], with the statistics of [`activation_probes`] measured over calibration data for
/// [`Importance::Activation`] (other importances ignore them).
pub fn prune_with_activations(
    g: &mut Graph,
    options: &PruneOptions,
    activations: Option<&ActivationStats>,
) -> Result<(Analysis, Vec<Choice>), PruneError> {
    let bound = with_unit_batch(g)?;
    let analysis = analyze(&bound);
    let scores = match (options.importance, activations) {
        (Importance::Activation, Some(stats)) => activation::scores(
            &analysis,
            &activation::probes(&bound, &analysis),
            stats,
            importance(&bound, &analysis, Importance::L2)?,
        ),
        (kind, _) => importance(&bound, &analysis, kind)?,
    };
    let choices = select(&bound, &analysis, &scores, options)?;
    apply(g, &analysis, &choices)?;
    Ok((analysis, choices))
}

impl Pass for Prune {
    fn name(&self) -> &'static str {
        "prune"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<bool, PassError> {
        let (_, choices) = prune(g, &self.options).map_err(|e| PassError::failed("prune", e))?;
        let removed: usize = choices.iter().map(|c| c.removed.len()).sum();
        cx.note(format!(
            "prune({}): {removed} channels removed from {} groups",
            self.options.importance.name(),
            choices.iter().filter(|c| !c.removed.is_empty()).count()
        ));
        Ok(removed > 0)
    }
}
