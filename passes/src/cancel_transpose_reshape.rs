//! `cancel-transpose-reshape`: shortens chains of layout-only ops.
//!
//! Matches:
//! - `transpose{p2}(transpose{p1}(x))` → `transpose{p}(x)` with `p[i] = p1[p2[i]]`, or `x` itself
//!   when `p` is the identity;
//! - `R2(R1(x))` where `R1`, `R2` are reshape-likes (`reshape`, `flatten`, `squeeze`,
//!   `unsqueeze`: they keep row-major element order) → `reshape(x, s)`, with `s` the known
//!   extents of `R2`'s output, or `R2`'s own constant shape operand when `R2` is a `reshape`
//!   whose shape has no copy-from-input `0` (so symbolic extents are fine);
//! - a reshape-like (or transpose) that returns its input unchanged (see
//!   [`crate::remove_identity::is_noop`]) → its input.
//!
//! The rewritten node keeps its output value and exactly its output type (a candidate whose
//! inferred type would differ is not applied); the inner node is removed when nothing else uses
//! it. Numerics are unchanged.

use crate::remove_identity::is_noop;
use crate::util::{const_ints, ConstNames};
use crate::{Pass, PassContext, PassError};
use kestrel_ir::{Graph, NodeId, Op, Tensor, ValueId};

pub struct CancelTransposeReshape;

/// Replaces node `id` by `op(inputs)` if that infers exactly the node's current output types.
fn try_rewrite(g: &mut Graph, id: NodeId, op: Op, inputs: &[ValueId]) -> bool {
    let node = g.node(id);
    let Ok(types) = g.infer_node(&op, inputs, &node.name) else {
        return false;
    };
    let same = types.len() == node.outputs.len()
        && types.iter().zip(&node.outputs).all(|(t, &o)| t == g.ty(o));
    same && g.set_node_op(id, op, inputs).is_ok()
}

impl Pass for CancelTransposeReshape {
    fn name(&self) -> &'static str {
        "cancel-transpose-reshape"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<bool, PassError> {
        let mut names = ConstNames::new(g);
        let mut changed = false;
        for ni in 0..g.nodes.len() {
            let id = NodeId(ni as u32);
            let op = g.node(id).op.clone();
            if (op.is_reshape() || matches!(op, Op::Transpose { .. })) && is_noop(g, id) {
                let (x, y) = (g.node(id).inputs[0], g.node(id).outputs[0]);
                changed |= g.replace_all_uses(y, x) > 0;
                continue;
            }
            let input = g.node(id).inputs[0];
            let Some(inner) = g.producer(input) else {
                continue;
            };
            let inner_op = g.node(inner).op.clone();
            let x = g.node(inner).inputs[0];
            match (&op, &inner_op) {
                (Op::Transpose { perm: p2 }, Op::Transpose { perm: p1 }) => {
                    if p1.len() != p2.len() || p2.iter().any(|&i| i >= p1.len()) {
                        continue;
                    }
                    let p: Vec<usize> = p2.iter().map(|&i| p1[i]).collect();
                    if p.iter().enumerate().all(|(i, &a)| i == a) {
                        let y = g.node(id).outputs[0];
                        if g.ty(x) == g.ty(y) {
                            changed |= g.replace_all_uses(y, x) > 0;
                        }
                    } else {
                        changed |= try_rewrite(g, id, Op::Transpose { perm: p }, &[x]);
                    }
                }
                (outer, inner_op) if outer.is_reshape() && inner_op.is_reshape() => {
                    let y = g.node(id).outputs[0];
                    if let Some(dims) = g.ty(y).dims() {
                        let shape: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
                        let c = names.add(
                            g,
                            "reshape.shape",
                            Tensor::from_vec(vec![shape.len()], shape),
                        );
                        let op = Op::Reshape { allowzero: false };
                        if try_rewrite(g, id, op, &[x, c]) {
                            changed = true;
                        } else if c.index() + 1 == g.values.len() {
                            // Unused and last: withdraw it so a refused rewrite changes nothing.
                            g.values.pop();
                        }
                    } else if let Op::Reshape { allowzero } = outer {
                        let s = g.node(id).inputs[1];
                        let usable =
                            const_ints(g, s).is_some_and(|v| *allowzero || !v.contains(&0));
                        if usable {
                            changed |= try_rewrite(g, id, outer.clone(), &[x, s]);
                        }
                    }
                }
                _ => {}
            }
        }
        if changed {
            g.remove_dead_nodes();
        }
        Ok(changed)
    }
}
