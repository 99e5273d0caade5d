//! Activation importance (docs/PRUNING.md "Importance and selection"): a channel scores the mean
//! magnitude of the values its group's consumers read from it, measured by the caller over
//! calibration data (`kestrel prune --importance activation --calib DATA`).
//!
//! The passes crate does not run models: [`probes`] names the tensors to observe, the caller runs
//! the model over its data and fills an [`ActivationStats`], and [`scores`] turns those into
//! per-group channel scores.

use super::groups::{Analysis, Edit, Layout, Role};
use super::select::position_map;
use kestrel_ir::{Graph, ValueId};
use std::collections::HashMap;

/// A tensor read by a Conv, Gemm or MatMul whose weights' input slices belong to a group: its
/// channel axis positions are laid out as `layout` says.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub value: ValueId,
    pub layout: Layout,
}

/// For each probed value: the mean of `|x|` at every position along its channel axis
/// (`layout.axis`), over all other axes and every calibration sample.
pub type ActivationStats = HashMap<ValueId, Vec<f64>>;

/// The data inputs of every consumer that slices a group's channels out of its weights, once
/// per value, in node order.
pub fn probes(g: &Graph, a: &Analysis) -> Vec<Probe> {
    let mut out: Vec<Probe> = Vec::new();
    for m in &a.members {
        let Edit::Slice {
            layout,
            role: Role::InputSlices,
            ..
        } = &m.edit
        else {
            continue;
        };
        let Some(&value) = g.node(m.node).inputs.first() else {
            continue;
        };
        if !out.iter().any(|p| p.value == value) {
            out.push(Probe {
                value,
                layout: layout.clone(),
            });
        }
    }
    out
}

/// Each group's channel scores: the sum, over the probes that read the channel, of the mean
/// `|x|` at its positions (all of a flattened channel's block). A prunable group that no probe
/// with statistics reads keeps its score from `fallback` (the weight-based importance), so every
/// group is scored.
pub fn scores(
    a: &Analysis,
    probes: &[Probe],
    stats: &ActivationStats,
    fallback: Vec<Vec<f64>>,
) -> Vec<Vec<f64>> {
    let mut scores: Vec<Vec<f64>> = fallback.iter().map(|s| vec![0.0; s.len()]).collect();
    let mut observed = vec![false; a.groups.len()];
    for p in probes {
        let Some(means) = stats.get(&p.value) else {
            continue;
        };
        let map = position_map(a, &p.layout);
        if map.len() != means.len() {
            continue;
        }
        for (&(gi, c), &m) in map.iter().zip(means) {
            if let Some(s) = scores[gi].get_mut(c) {
                *s += m;
                observed[gi] = true;
            }
        }
    }
    scores
        .into_iter()
        .zip(fallback)
        .zip(observed)
        .map(|((s, f), seen)| if seen { s } else { f })
        .collect()
}
