//! `fuse`: fusion by equality saturation (see [`crate::egraph`]).
//!
//! Builds the e-graph of the graph, saturates it with the fusion rules
//! ([`crate::egraph::rules::fusion_rules`]) within the limits, extracts the cheapest graph by
//! the cost model and replaces the graph with it when that changes anything. The stop reason,
//! e-graph size and rules applied are recorded as a note (printed at the top of the dump).

use crate::egraph::{self, rules, Limits};
use crate::{Pass, PassContext, PassError};
use kestrel_ir::Graph;
use std::time::Duration;

#[derive(Default)]
pub struct Fuse {
    pub limits: Limits,
}

impl Fuse {
    pub fn from_options(nodes: Option<usize>, iters: Option<usize>, time_ms: Option<u64>) -> Self {
        let d = Limits::default();
        Fuse {
            limits: Limits {
                nodes: nodes.unwrap_or(d.nodes),
                iters: iters.unwrap_or(d.iters),
                time: time_ms.map(Duration::from_millis).unwrap_or(d.time),
            },
        }
    }
}

/// Runs `rules` on `g` and replaces it with the extracted graph; returns whether the printed
/// graph changed. Shared by `fuse` and the tests of adversarial rule sets.
pub fn run_rules(
    g: &mut Graph,
    rules: &[egraph::Rule],
    limits: Limits,
    cx: &PassContext,
) -> Result<(bool, egraph::Saturation), PassError> {
    let mut b = egraph::build(g);
    let sat = egraph::saturate(&mut b, rules, limits);
    cx.note(sat.to_string());
    let model = cx
        .cost_model
        .as_deref()
        .map(|m| m as &dyn crate::cost::CostModel);
    let new = egraph::extract(g, &b, model).map_err(|e| PassError::failed("fuse", e))?;
    let before = crate::check::dump_text(g);
    let after = crate::check::dump_text(&new);
    if before == after {
        return Ok((false, sat));
    }
    *g = new;
    Ok((true, sat))
}

impl Pass for Fuse {
    fn name(&self) -> &'static str {
        "fuse"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<bool, PassError> {
        let rules = rules::fusion_rules();
        Ok(run_rules(g, &rules, self.limits, cx)?.0)
    }
}
