//! Channel importance and the choice of channels to remove (docs/PRUNING.md "Importance").

use super::groups::{Analysis, Edit, Layout, Role};
use super::PruneError;
use kestrel_ir::Graph;

/// How a channel's importance is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Importance {
    /// `Σ w²` over the channel's filters and biases in every producer of its group (the
    /// founding document's score): a channel whose weights and bias are all zero scores 0.
    L2,
    /// `Σ |w|` over the same weights and biases.
    L1,
    /// `Σ |γ|` of the BatchNormalization scales of the group.
    BatchNorm,
    /// The mean `|x|` of the channel where the group's consumers read it, over calibration
    /// data the caller measures (`super::activation`); needs those statistics.
    Activation,
}

impl Importance {
    pub fn parse(s: &str) -> Result<Importance, String> {
        match s {
            "l2" => Ok(Importance::L2),
            "l1" => Ok(Importance::L1),
            "bn" => Ok(Importance::BatchNorm),
            "activation" => Ok(Importance::Activation),
            other => Err(format!(
                "unknown importance {other:?} (expected l2, l1, bn or activation)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Importance::L2 => "l2",
            Importance::L1 => "l1",
            Importance::BatchNorm => "bn",
            Importance::Activation => "activation",
        }
    }

    fn counts(self, role: Role) -> bool {
        match self {
            Importance::L2 | Importance::L1 => {
                matches!(role, Role::Filters | Role::DepthwiseFilters | Role::Bias)
            }
            Importance::BatchNorm => role == Role::BatchNormScale,
            Importance::Activation => false,
        }
    }

    fn score(self, w: f64) -> f64 {
        match self {
            Importance::L2 => w * w,
            Importance::L1 | Importance::BatchNorm | Importance::Activation => w.abs(),
        }
    }
}

/// What to prune.
#[derive(Clone, Debug, PartialEq)]
pub struct PruneOptions {
    /// The share of channels removed: `round(ratio · C)` of each group, or of all channels
    /// with `global`.
    pub ratio: f64,
    pub importance: Importance,
    /// One threshold over all groups (scores normalised by each group's mean) instead of the
    /// same share of each.
    pub global: bool,
    /// Kept channel counts are multiples of this (a group smaller than it is left whole).
    pub round_to: usize,
    /// Names of Conv/Gemm/MatMul nodes whose groups keep every channel.
    pub keep: Vec<String>,
    /// Only these groups (indices into [`Analysis::groups`]) shrink; `None`: every prunable one.
    pub only: Option<Vec<usize>>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            ratio: 0.0,
            importance: Importance::L2,
            global: false,
            round_to: 1,
            keep: Vec::new(),
            only: None,
        }
    }
}

/// The channels removed from one group.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub group: usize,
    /// The group's first producer (node name), for reports.
    pub name: String,
    pub size: usize,
    /// Channel indices removed, ascending.
    pub removed: Vec<usize>,
}

/// For each position along `layout`'s axis: `(group, channel)`.
pub(super) fn position_map(a: &Analysis, layout: &Layout) -> Vec<(usize, usize)> {
    let mut map = Vec::new();
    for seg in &layout.segments {
        let gi = a.group_of[seg.space];
        for c in 0..a.spaces[seg.space].size {
            for _ in 0..seg.repeat {
                map.push((gi, c));
            }
        }
    }
    map
}

/// Each group's channel scores under `kind` (empty for a fixed group).
pub fn importance(g: &Graph, a: &Analysis, kind: Importance) -> Result<Vec<Vec<f64>>, PruneError> {
    if kind == Importance::Activation {
        return Err(PruneError::NeedsActivations);
    }
    let mut scores: Vec<Vec<f64>> = a
        .groups
        .iter()
        .map(|gr| {
            if gr.fixed.is_none() {
                vec![0.0; gr.size]
            } else {
                Vec::new()
            }
        })
        .collect();
    let mut scored = vec![false; a.groups.len()];
    for m in &a.members {
        let Edit::Slice {
            input,
            axis,
            layout,
            role,
        } = &m.edit
        else {
            continue;
        };
        if !kind.counts(*role) {
            continue;
        }
        let Some(t) = g.const_data(g.node(m.node).inputs[*input]) else {
            continue;
        };
        let dims = t.dims();
        let map = position_map(a, layout);
        if dims.get(*axis) != Some(&map.len()) {
            continue;
        }
        let inner: usize = dims[axis + 1..].iter().product();
        let values = t.to_f64_vec();
        for (e, &w) in values.iter().enumerate() {
            let (gi, c) = map[(e / inner) % map.len()];
            if let Some(s) = scores[gi].get_mut(c) {
                *s += kind.score(w);
                scored[gi] = true;
            }
        }
    }
    if kind == Importance::BatchNorm
        && !a
            .groups
            .iter()
            .enumerate()
            .any(|(i, gr)| gr.fixed.is_none() && scored[i])
    {
        return Err(PruneError::NoBatchNorm);
    }
    Ok(scores)
}

fn producer_name(g: &Graph, a: &Analysis, gi: usize) -> String {
    a.producers(gi)
        .first()
        .map(|&n| {
            let name = &g.node(n).name;
            if name.is_empty() {
                format!("node_{}", n.0)
            } else {
                name.clone()
            }
        })
        .unwrap_or_else(|| format!("group_{gi}"))
}

/// Rounds the channels a group keeps in each of its `blocks` blocks of `per_block` (`keep`, at
/// least 1) up to the smallest count whose total (`blocks` times it) is a multiple of
/// `round_to`, at most `per_block`; a group of `round_to` channels or fewer keeps everything.
fn rounded_keep(keep: usize, per_block: usize, blocks: usize, round_to: usize) -> usize {
    if per_block * blocks <= round_to {
        return per_block;
    }
    let step = round_to / gcd(round_to, blocks);
    (keep.div_ceil(step) * step).clamp(1, per_block)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The channels to remove when each of the `blocks` equal consecutive blocks of `scores` keeps
/// `keep`: in each block its lowest-scoring ones; when `tied`, the same positions in every
/// block, those of the lowest scores summed over the blocks (ties by index). Ascending.
fn blocked_removal(scores: &[f64], blocks: usize, tied: bool, keep: usize) -> Vec<usize> {
    let per_block = scores.len() / blocks;
    let lowest = |s: &[f64]| -> Vec<usize> {
        let mut idx: Vec<usize> = (0..s.len()).collect();
        idx.sort_by(|&x, &y| s[x].total_cmp(&s[y]).then(x.cmp(&y)));
        idx.truncate(s.len() - keep);
        idx
    };
    let mut removed = Vec::new();
    if tied {
        let summed: Vec<f64> = (0..per_block)
            .map(|j| (0..blocks).map(|k| scores[k * per_block + j]).sum())
            .collect();
        let js = lowest(&summed);
        for k in 0..blocks {
            removed.extend(js.iter().map(|j| k * per_block + j));
        }
    } else {
        for (k, block) in scores.chunks(per_block).enumerate() {
            removed.extend(lowest(block).into_iter().map(|j| k * per_block + j));
        }
    }
    removed.sort_unstable();
    removed
}

/// The channels to remove from each prunable group.
pub fn select(
    g: &Graph,
    a: &Analysis,
    scores: &[Vec<f64>],
    o: &PruneOptions,
) -> Result<Vec<Choice>, PruneError> {
    if !(0.0..1.0).contains(&o.ratio) {
        return Err(PruneError::BadRatio(o.ratio));
    }
    if o.round_to == 0 {
        return Err(PruneError::BadRoundTo);
    }
    let prunable: Vec<usize> = (0..a.groups.len())
        .filter(|&i| a.groups[i].fixed.is_none() && a.groups[i].size / a.groups[i].blocks > 1)
        .collect();
    if prunable.is_empty() {
        let mut why: Vec<String> = a.groups.iter().filter_map(|gr| gr.fixed.clone()).collect();
        why.sort();
        why.dedup();
        let why = if why.is_empty() {
            "no Conv, Gemm or MatMul by constant weights".to_string()
        } else {
            format!("channels reach {}", why.join("; "))
        };
        return Err(PruneError::NothingToPrune(why));
    }
    let names: Vec<(usize, Vec<String>)> = prunable
        .iter()
        .map(|&gi| {
            let n = a
                .producers(gi)
                .iter()
                .map(|&p| g.node(p).name.clone())
                .collect();
            (gi, n)
        })
        .collect();
    for k in &o.keep {
        if !names.iter().any(|(_, n)| n.contains(k)) {
            let valid: Vec<String> = names.iter().flat_map(|(_, n)| n.clone()).collect();
            return Err(PruneError::UnknownKeep {
                name: k.clone(),
                valid: valid.join(", "),
            });
        }
    }
    let candidates: Vec<usize> = names
        .into_iter()
        .filter(|(_, n)| !n.iter().any(|x| o.keep.contains(x)))
        .map(|(gi, _)| gi)
        .filter(|gi| o.only.as_ref().is_none_or(|only| only.contains(gi)))
        .collect();
    // Channels ordered least important first (ties by index).
    let order = |gi: usize| -> Vec<usize> {
        let s = &scores[gi];
        let mut idx: Vec<usize> = (0..s.len()).collect();
        idx.sort_by(|&x, &y| s[x].total_cmp(&s[y]).then(x.cmp(&y)));
        idx
    };
    let mut removed: Vec<Vec<usize>> = vec![Vec::new(); a.groups.len()];
    if o.global {
        let total: usize = candidates.iter().map(|&gi| a.groups[gi].size).sum();
        let target = (o.ratio * total as f64).round() as usize;
        let mut pool: Vec<(f64, usize, usize)> = Vec::new();
        for &gi in &candidates {
            let s = &scores[gi];
            let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
            for (c, &v) in s.iter().enumerate() {
                pool.push((if mean > 0.0 { v / mean } else { 0.0 }, gi, c));
            }
        }
        pool.sort_by(|x, y| x.0.total_cmp(&y.0).then((x.1, x.2).cmp(&(y.1, y.2))));
        let mut count = 0;
        for (_, gi, c) in pool {
            if count == target {
                break;
            }
            if removed[gi].len() + 1 < a.groups[gi].size {
                removed[gi].push(c);
                count += 1;
            }
        }
        for &gi in &candidates {
            let (size, blocks) = (a.groups[gi].size, a.groups[gi].blocks);
            if blocks > 1 {
                // Each block loses the rounded mean of what the threshold took from a block.
                let per_block = size / blocks;
                let drop = (removed[gi].len() as f64 / blocks as f64).round() as usize;
                let keep = per_block.saturating_sub(drop).max(1);
                let keep = rounded_keep(keep, per_block, blocks, o.round_to);
                removed[gi] = blocked_removal(&scores[gi], blocks, a.groups[gi].tied, keep);
                continue;
            }
            let keep = rounded_keep(size - removed[gi].len(), size, 1, o.round_to);
            // Give back the most important of the removed ones to reach the rounded count.
            let back = keep - (size - removed[gi].len());
            let n = removed[gi].len() - back;
            removed[gi].truncate(n);
        }
    } else {
        for &gi in &candidates {
            let (size, blocks) = (a.groups[gi].size, a.groups[gi].blocks);
            let per_block = size / blocks;
            let drop = (o.ratio * per_block as f64).round() as usize;
            let keep = per_block.saturating_sub(drop).max(1);
            let keep = rounded_keep(keep, per_block, blocks, o.round_to);
            removed[gi] = if blocks > 1 {
                blocked_removal(&scores[gi], blocks, a.groups[gi].tied, keep)
            } else {
                order(gi)[..size - keep].to_vec()
            };
        }
    }
    Ok(candidates
        .iter()
        .map(|&gi| {
            let mut r = std::mem::take(&mut removed[gi]);
            r.sort_unstable();
            Choice {
                group: gi,
                name: producer_name(g, a, gi),
                size: a.groups[gi].size,
                removed: r,
            }
        })
        .collect())
}
