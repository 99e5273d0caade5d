//! `cse`: common-subexpression elimination.
//!
//! - Constants with data of the same dtype, shape and bytes become one (the first in value
//!   order); elided constants (no data) are never merged.
//! - Nodes with equal ops (attributes compared exactly; floats by bit pattern) and equal inputs
//!   become one (the first in node order). Inputs of commutative binary ops (add, mul, max, min,
//!   equal, and, or, xor) are compared as unordered pairs.
//!
//! Uses of the duplicates are redirected to the survivor, which is defined earlier, so node order
//! stays topological; the duplicates are then removed. Exact equality of inputs and ops makes
//! the survivor compute the same tensor, so numerics are unchanged.

use crate::{Pass, PassContext, PassError};
use kestrel_ir::{Graph, Op, ValueDef, ValueId};
use smallvec::SmallVec;
use std::collections::HashMap;

pub struct Cse;

fn commutative(op: &Op) -> bool {
    matches!(op, Op::Binary(b) if b.is_commutative())
}

/// Redirects uses of duplicate constants to the first equal one; returns whether any was merged.
fn merge_constants(g: &mut Graph) -> bool {
    // Bucket by (dtype, dims) first so only same-shaped constants are compared byte by byte.
    let mut buckets: HashMap<(kestrel_ir::DType, Vec<usize>), Vec<ValueId>> = HashMap::new();
    for (vi, v) in g.values.iter().enumerate() {
        if let ValueDef::Const(c) = &v.def {
            if let Some(t) = &c.data {
                buckets
                    .entry((t.dtype(), t.dims().to_vec()))
                    .or_default()
                    .push(ValueId(vi as u32));
            }
        }
    }
    let mut replace: Vec<(ValueId, ValueId)> = Vec::new();
    for ids in buckets.values().filter(|ids| ids.len() > 1) {
        let mut seen: HashMap<&[u8], ValueId> = HashMap::new();
        for &id in ids {
            let Some(t) = g.const_data(id) else { continue };
            // Equal bytes of equal dtype and shape are equal tensors, so merging is exact; the
            // value's type must also agree (it does for a verified graph).
            let first = *seen.entry(t.bytes().as_ref()).or_insert(id);
            if first != id && g.ty(first) == g.ty(id) {
                replace.push((id, first));
            }
        }
    }
    let mut changed = false;
    for (dup, first) in replace {
        changed |= g.replace_all_uses(dup, first) > 0;
    }
    changed
}

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<bool, PassError> {
        let mut changed = merge_constants(g);
        let mut seen: HashMap<(Op, SmallVec<[ValueId; 4]>), usize> = HashMap::new();
        for ni in 0..g.nodes.len() {
            let node = &g.nodes[ni];
            let mut inputs = node.inputs.clone();
            if commutative(&node.op) {
                inputs.sort();
            }
            let key = (node.op.clone(), inputs);
            match seen.get(&key) {
                None => {
                    seen.insert(key, ni);
                }
                Some(&first) => {
                    let pairs: Vec<(ValueId, ValueId)> = g.nodes[ni]
                        .outputs
                        .iter()
                        .copied()
                        .zip(g.nodes[first].outputs.iter().copied())
                        .collect();
                    if pairs.iter().all(|&(d, f)| g.ty(d) == g.ty(f)) {
                        for (dup, f) in pairs {
                            g.replace_all_uses(dup, f);
                        }
                        changed = true;
                    }
                }
            }
        }
        if changed {
            g.remove_dead_nodes();
        }
        Ok(changed)
    }
}
