//! Helpers shared by the passes.

use kestrel_ir::{Graph, Tensor, ValueDef, ValueId};
use std::collections::HashSet;

/// Hands out constant names that no constant of the graph uses yet (`base`, `base.1`, ...).
pub struct ConstNames {
    used: HashSet<String>,
}

impl ConstNames {
    pub fn new(g: &Graph) -> Self {
        let used = g
            .values
            .iter()
            .filter_map(|v| match &v.def {
                ValueDef::Const(c) => Some(c.name.clone()),
                _ => None,
            })
            .collect();
        ConstNames { used }
    }

    pub fn fresh(&mut self, base: &str) -> String {
        let base = if base.is_empty() { "const" } else { base };
        if self.used.insert(base.to_string()) {
            return base.to_string();
        }
        for k in 1.. {
            let name = format!("{base}.{k}");
            if self.used.insert(name.clone()) {
                return name;
            }
        }
        unreachable!("an unbounded counter always finds a free name")
    }

    /// Adds a constant with a fresh name derived from `base`.
    pub fn add(&mut self, g: &mut Graph, base: &str, data: Tensor) -> ValueId {
        let name = self.fresh(base);
        g.add_const(name, data)
    }
}

/// A display name for a node in generated names: its own name, else its op name.
pub fn node_label(g: &Graph, node: kestrel_ir::NodeId) -> String {
    let n = g.node(node);
    if n.name.is_empty() {
        n.op.name().to_string()
    } else {
        n.name.clone()
    }
}

/// Constant data of `v` as i64s (integer constants only).
pub fn const_ints(g: &Graph, v: ValueId) -> Option<Vec<i64>> {
    let t = g.const_data(v)?;
    (t.dtype().is_int()).then(|| t.to_i64_vec())
}
