//! `kestrel prune`'s report: parameters, MACs and JIT latency before and after structured
//! pruning, per group and in total (docs/PRUNING.md).

use crate::driver;
use anyhow::{bail, Context, Result};
use kestrel_ir::{Graph, NodeId, ValueDef, ValueId};
use kestrel_passes::prune::{Analysis, Choice, Edit};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

/// One group's line of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupReport {
    /// The group's first Conv/Gemm/MatMul.
    pub name: String,
    pub channels_before: usize,
    pub channels_after: usize,
    /// MACs of the nodes the group slices (its producers and consumers), before and after.
    pub macs_before: u64,
    pub macs_after: u64,
    /// Elements of the constants the group slices (weights, biases, norm parameters).
    pub params_before: usize,
    pub params_after: usize,
    /// Thread CPU time (ms, 1 thread) of the layers the group slices, each timed alone
    /// ([`layer_latencies`]), before and after; `None` when not measured.
    pub latency_ms_before: Option<f64>,
    pub latency_ms_after: Option<f64>,
}

/// Totals before and after.
#[derive(Clone, Debug, PartialEq)]
pub struct Totals {
    pub params: usize,
    pub macs: u64,
    /// Median JIT latency, 1 thread (ms); `None` when not measured.
    pub latency_ms: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PruneReport {
    pub groups: Vec<GroupReport>,
    pub before: Totals,
    pub after: Totals,
}

/// Elements of the float constants of `g` (its parameters).
pub fn parameters(g: &Graph) -> usize {
    g.values
        .iter()
        .filter_map(|v| match &v.def {
            ValueDef::Const(c) => c
                .data
                .as_ref()
                .filter(|t| t.dtype().is_float())
                .map(|t| t.numel()),
            _ => None,
        })
        .sum()
}

/// Multiply-adds of every Conv, Gemm and MatMul of `g` (shapes bound).
pub fn total_macs(g: &Graph) -> u64 {
    g.nodes
        .iter()
        .map(|n| kestrel_ir::cost::node_macs(g, n))
        .sum()
}

fn node_macs(g: &Graph, nodes: &BTreeSet<NodeId>) -> u64 {
    nodes
        .iter()
        .map(|&n| kestrel_ir::cost::node_macs(g, g.node(n)))
        .sum()
}

/// `g` with a symbolic batch bound to 1, shapes known for counting.
fn bound(g: &Graph, model: &Path) -> Result<Graph> {
    let mut b = g.clone();
    driver::bind_default_batch(&mut b, model)?;
    Ok(b)
}

/// The median of `iters` timed JIT runs of `g` (O2, 1 thread) on synthetic inputs, each model
/// run in turn with the other (`models[i]` measured interleaved).
pub fn latencies(models: &[&Graph], model: &Path, iters: usize) -> Result<Vec<f64>> {
    latencies_after(models, model, iters, "O2")
}

/// [`latencies`] after the pipeline `pipeline` instead of O2.
pub fn latencies_after(
    models: &[&Graph],
    model: &Path,
    iters: usize,
    pipeline: &str,
) -> Result<Vec<f64>> {
    let mut compiled = Vec::new();
    for g in models {
        let mut g = bound(g, model)?;
        let pipeline = kestrel_passes::PipelineOptions {
            pipeline: pipeline.into(),
            ..Default::default()
        };
        driver::run_pipeline(&mut g, &pipeline, model)?;
        let inputs = driver::prepare_inputs(
            &mut g,
            &Default::default(),
            driver::InputPolicy::SyntheticUnlessGiven,
            model,
        )?;
        let m = crate::inprocess::InProcessModel::new(g, crate::inprocess::Backend::Jit, 1, model)?;
        m.run_tensors(&inputs)?;
        compiled.push((m, inputs));
    }
    let mut times = vec![Vec::new(); compiled.len()];
    for _ in 0..iters.max(1) {
        for (k, (m, inputs)) in compiled.iter().enumerate() {
            let t = Instant::now();
            m.run_tensors(inputs)
                .with_context(|| format!("running {}", model.display()))?;
            times[k].push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect())
}

/// The median thread CPU time (ms) of every kernel node of `g` by node name, each node timed
/// alone on the JIT with 1 thread (`crate::layers::profile`, `iters` runs) after `O1`, which
/// keeps the imported nodes and their names (no fusion), so a group's layers can be found in
/// both the unpruned and the pruned graph.
pub fn layer_latencies(
    g: &Graph,
    model: &Path,
    iters: usize,
) -> Result<std::collections::HashMap<String, f64>> {
    let mut g = bound(g, model)?;
    let pipeline = kestrel_passes::PipelineOptions {
        pipeline: "O1".into(),
        ..Default::default()
    };
    driver::run_pipeline(&mut g, &pipeline, model)?;
    let jit = kestrel_backends::jit::JitOptions::with_threads(1);
    let mut out = std::collections::HashMap::new();
    for l in crate::layers::profile(&g, &jit, iters.max(1), model)? {
        *out.entry(l.name).or_insert(0.0) += l.median_ms;
    }
    Ok(out)
}

/// The statistics [`kestrel_passes::prune::Importance::Activation`] scores with: for every
/// tensor of [`kestrel_passes::prune::activation_probes`], the mean `|x|` at each position of its
/// channel axis over every sample of `data`, the float model run as it is on the JIT.
pub fn activation_statistics(
    g: &Graph,
    model: &Path,
    data: &crate::calibrate::CalibrationData,
    threads: usize,
) -> Result<kestrel_passes::prune::ActivationStats> {
    let probes = kestrel_passes::prune::activation_probes(g)
        .with_context(|| format!("{}: pruning", model.display()))?;
    let values: Vec<ValueId> = probes.iter().map(|p| p.value).collect();
    let compiled = crate::calibrate::probe_model(g, &values, threads, model)?;
    let mut sums: Vec<(Vec<f64>, f64)> = Vec::new();
    let progress = indicatif::ProgressBar::new(data.runs() as u64);
    for i in 0..data.runs() {
        progress.inc(1);
        let inputs = data.run_inputs(compiled.graph(), i)?;
        let outs = compiled
            .run_tensors(&inputs)
            .with_context(|| format!("{}: calibration run {i}", data.path.display()))?;
        for (k, (t, p)) in outs.iter().zip(&probes).enumerate() {
            let dims = t.dims();
            let n = dims.get(p.layout.axis).copied().unwrap_or(1).max(1);
            let inner: usize = dims
                .get(p.layout.axis + 1..)
                .map_or(1, |d| d.iter().product());
            if sums.len() <= k {
                sums.push((vec![0.0; n], 0.0));
            }
            let (sum, count) = &mut sums[k];
            for (e, v) in t.to_f32_vec().into_iter().enumerate() {
                if !v.is_finite() {
                    bail!(
                        "{}: calibration run {i}: tensor {} takes the value {v}; the model \
                         computes NaN or infinite activations on this data",
                        data.path.display(),
                        g.value(p.value)
                            .name
                            .clone()
                            .unwrap_or_else(|| format!("%{}", p.value.0))
                    );
                }
                sum[(e / inner.max(1)) % n] += v.abs() as f64;
            }
            *count += (t.numel() / n) as f64;
        }
    }
    progress.finish_and_clear();
    Ok(probes
        .iter()
        .zip(sums)
        .map(|(p, (sum, count))| {
            (
                p.value,
                sum.into_iter().map(|s| s / count.max(1.0)).collect(),
            )
        })
        .collect())
}

/// The report of pruning `before` into `after` (`analysis` and `choices` from
/// [`kestrel_passes::prune::prune`]); latency measured with `iters` runs each when given.
pub fn report(
    before: &Graph,
    after: &Graph,
    analysis: &Analysis,
    choices: &[Choice],
    model: &Path,
    iters: Option<usize>,
) -> Result<PruneReport> {
    let (b, a) = (bound(before, model)?, bound(after, model)?);
    let layers = match iters {
        Some(n) => Some((
            layer_latencies(before, model, n)?,
            layer_latencies(after, model, n)?,
        )),
        None => None,
    };
    let mut groups = Vec::new();
    for c in choices {
        let spaces: BTreeSet<usize> = analysis.groups[c.group].spaces.iter().copied().collect();
        let sliced: BTreeSet<(NodeId, usize)> = analysis
            .members
            .iter()
            .filter_map(|m| match &m.edit {
                Edit::Slice { layout, input, .. }
                    if layout.segments.iter().any(|s| spaces.contains(&s.space)) =>
                {
                    Some((m.node, *input))
                }
                _ => None,
            })
            .collect();
        let nodes: BTreeSet<NodeId> = sliced.iter().map(|&(n, _)| n).collect();
        let params = |g: &Graph| -> usize {
            sliced
                .iter()
                .filter_map(|&(n, i)| g.const_data(g.node(n).inputs[i]).map(|t| t.numel()))
                .sum()
        };
        let names: BTreeSet<&str> = nodes.iter().map(|&n| b.node(n).name.as_str()).collect();
        let time = |t: &std::collections::HashMap<String, f64>| -> f64 {
            names.iter().filter_map(|n| t.get(*n)).sum()
        };
        groups.push(GroupReport {
            latency_ms_before: layers.as_ref().map(|(t, _)| time(t)),
            latency_ms_after: layers.as_ref().map(|(_, t)| time(t)),
            name: c.name.clone(),
            channels_before: c.size,
            channels_after: c.size - c.removed.len(),
            macs_before: node_macs(&b, &nodes),
            macs_after: node_macs(&a, &nodes),
            params_before: params(&b),
            params_after: params(&a),
        });
    }
    let lat = match iters {
        Some(n) => Some(latencies(&[before, after], model, n)?),
        None => None,
    };
    Ok(PruneReport {
        groups,
        before: Totals {
            params: parameters(&b),
            macs: total_macs(&b),
            latency_ms: lat.as_ref().map(|l| l[0]),
        },
        after: Totals {
            params: parameters(&a),
            macs: total_macs(&a),
            latency_ms: lat.as_ref().map(|l| l[1]),
        },
    })
}

fn ratio(after: f64, before: f64) -> String {
    if before > 0.0 {
        format!("{:.3}x", after / before)
    } else {
        "-".into()
    }
}

impl PruneReport {
    /// The printed report (Markdown).
    pub fn markdown(&self) -> String {
        let lat = |t: &Totals| t.latency_ms.map_or("-".to_string(), |l| format!("{l:.3}"));
        let mut s = format!(
            "| | before | after | ratio |\n|---|---|---|---|\n\
             | parameters | {} | {} | {} |\n| MACs | {} | {} | {} |\n\
             | latency ms (JIT, 1 thread, median) | {} | {} | {} |\n\n\
             | group | channels | MACs before | MACs after | parameters before | parameters after \
             | layers ms before | layers ms after |\n\
             |---|---|---|---|---|---|---|---|\n",
            self.before.params,
            self.after.params,
            ratio(self.after.params as f64, self.before.params as f64),
            self.before.macs,
            self.after.macs,
            ratio(self.after.macs as f64, self.before.macs as f64),
            lat(&self.before),
            lat(&self.after),
            match (self.before.latency_ms, self.after.latency_ms) {
                (Some(b), Some(a)) => ratio(a, b),
                _ => "-".into(),
            },
        );
        for g in &self.groups {
            let ms = |v: Option<f64>| v.map_or("-".to_string(), |l| format!("{l:.3}"));
            s.push_str(&format!(
                "| {} | {} -> {} | {} | {} | {} | {} | {} | {} |\n",
                g.name,
                g.channels_before,
                g.channels_after,
                g.macs_before,
                g.macs_after,
                g.params_before,
                g.params_after,
                ms(g.latency_ms_before),
                ms(g.latency_ms_after)
            ));
        }
        s
    }

    /// The report as JSON (`--json F`).
    pub fn json(&self) -> String {
        let num = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.6}"));
        let totals = |t: &Totals| {
            format!(
                "{{\"parameters\": {}, \"macs\": {}, \"latency_ms\": {}}}",
                t.params,
                t.macs,
                num(t.latency_ms)
            )
        };
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|g| {
                format!(
                    "    {{\"name\": {:?}, \"channels_before\": {}, \"channels_after\": {}, \"macs_before\": {}, \"macs_after\": {}, \"parameters_before\": {}, \"parameters_after\": {}, \"layers_ms_before\": {}, \"layers_ms_after\": {}}}",
                    g.name, g.channels_before, g.channels_after, g.macs_before, g.macs_after, g.params_before, g.params_after, num(g.latency_ms_before), num(g.latency_ms_after)
                )
            })
            .collect();
        format!(
            "{{\n  \"before\": {},\n  \"after\": {},\n  \"groups\": [\n{}\n  ]\n}}\n",
            totals(&self.before),
            totals(&self.after),
            groups.join(",\n")
        )
    }
}

/// One row of the sensitivity scan: a group (or every group together) and its score after
/// pruning it alone at each ratio.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanRow {
    pub name: String,
    pub channels: usize,
    pub scores: Vec<f64>,
}

/// `kestrel prune --sensitivity`: top-1 accuracy (with labels) or agreement with the unpruned
/// model over the calibration samples, per group against ratio (docs/PRUNING.md "Sensitivity").
#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    pub ratios: Vec<f64>,
    /// "accuracy" or "agreement".
    pub metric: &'static str,
    pub samples: usize,
    pub unpruned: f64,
    /// Every prunable group alone, then all of them together (`all groups`).
    pub rows: Vec<ScanRow>,
}

/// The sensitivity scan of `g` over `data` (see [`Scan`]); `options` gives the importance,
/// rounding and kept layers, its ratio is replaced by each of `ratios`.
pub fn scan(
    g: &Graph,
    model: &Path,
    data: &crate::calibrate::CalibrationData,
    labels: Option<Vec<i64>>,
    options: &kestrel_passes::prune::PruneOptions,
    ratios: &[f64],
    threads: usize,
) -> Result<Scan> {
    use crate::sensitivity::{score, Evaluator, Target};
    let target = match labels {
        Some(labels) => Target::MaxAccuracyDrop {
            points: 0.0,
            labels,
        },
        None => Target::MinAgreement { fraction: 0.0 },
    };
    let metric = match target {
        Target::MaxAccuracyDrop { .. } => "accuracy",
        Target::MinAgreement { .. } => "agreement",
    };
    let mut eval = Evaluator {
        data,
        model,
        threads,
        evaluations: 0,
    };
    let reference = eval.outputs(g)?;
    let top1 = reference.top1();
    let unpruned = score(&target, &reference, &top1);
    let analysis = kestrel_passes::prune::analyze(&bound(g, model)?);
    let stats = match options.importance {
        kestrel_passes::prune::Importance::Activation => {
            Some(activation_statistics(g, model, data, threads)?)
        }
        _ => None,
    };
    // The groups a plain pruning with these options would shrink.
    let mut probe = g.clone();
    let (_, choices) = kestrel_passes::prune::prune_with_activations(
        &mut probe,
        &kestrel_passes::prune::PruneOptions {
            ratio: 0.5,
            ..options.clone()
        },
        stats.as_ref(),
    )
    .with_context(|| format!("{}: pruning", model.display()))?;
    let mut rows: Vec<(String, usize, Option<Vec<usize>>)> = choices
        .iter()
        .map(|c| (c.name.clone(), c.size, Some(vec![c.group])))
        .collect();
    rows.push((
        "all groups".into(),
        analysis
            .groups
            .iter()
            .filter(|gr| gr.fixed.is_none())
            .map(|gr| gr.size)
            .sum(),
        None,
    ));
    let progress = indicatif::ProgressBar::new((rows.len() * ratios.len()) as u64);
    let mut out = Vec::new();
    for (name, channels, only) in rows {
        let mut scores = Vec::new();
        for &r in ratios {
            progress.inc(1);
            let mut pruned = g.clone();
            let o = kestrel_passes::prune::PruneOptions {
                ratio: r,
                only: only.clone(),
                ..options.clone()
            };
            kestrel_passes::prune::prune_with_activations(&mut pruned, &o, stats.as_ref())
                .with_context(|| format!("{}: pruning {name} at {r}", model.display()))?;
            scores.push(score(&target, &eval.outputs(&pruned)?, &top1));
        }
        out.push(ScanRow {
            name,
            channels,
            scores,
        });
    }
    progress.finish_and_clear();
    Ok(Scan {
        ratios: ratios.to_vec(),
        metric,
        samples: top1.len(),
        unpruned,
        rows: out,
    })
}

impl Scan {
    /// The scan as a Markdown table: one row per group, one column per ratio.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "sensitivity: top-1 {} on {} calibration samples after pruning each group alone \
             (unpruned: {:.2} %)\n\n| group | channels |",
            self.metric,
            self.samples,
            self.unpruned * 100.0
        );
        for r in &self.ratios {
            s.push_str(&format!(" {r} |"));
        }
        s.push_str("\n|---|---|");
        s.push_str(&"---|".repeat(self.ratios.len()));
        s.push('\n');
        for row in &self.rows {
            s.push_str(&format!("| {} | {} |", row.name, row.channels));
            for v in &row.scores {
                s.push_str(&format!(" {:.2} % |", v * 100.0));
            }
            s.push('\n');
        }
        s
    }
}
