//! Removing the chosen channels: every member sliced, the attributes that count channels
//! rewritten, types inferred again.

use super::groups::{Analysis, Edit, Layout, Role};
use super::select::Choice;
use super::PruneError;
use crate::util::ConstNames;
use kestrel_ir::{Graph, NodeId, Op, Tensor};

/// The kept positions along `layout`'s axis.
fn kept_positions(a: &Analysis, kept: &[Vec<usize>], layout: &Layout) -> Vec<usize> {
    let mut out = Vec::new();
    let mut offset = 0;
    for seg in &layout.segments {
        for &c in &kept[seg.space] {
            for r in 0..seg.repeat {
                out.push(offset + c * seg.repeat + r);
            }
        }
        offset += a.spaces[seg.space].size * seg.repeat;
    }
    out
}

/// The positions along `layout`'s axis before pruning.
fn position_count(a: &Analysis, layout: &Layout) -> usize {
    layout
        .segments
        .iter()
        .map(|s| a.spaces[s.space].size * s.repeat)
        .sum()
}

/// `t` with only the positions `keep` along `axis`, in that order.
fn take(t: &Tensor, axis: usize, keep: &[usize]) -> Tensor {
    let dims = t.dims();
    let esize = t.dtype().size();
    let outer: usize = dims[..axis].iter().product();
    let extent = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product::<usize>() * esize;
    let bytes = t.bytes();
    let mut out = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in keep {
            let start = (o * extent + k) * inner;
            out.extend_from_slice(&bytes[start..start + inner]);
        }
    }
    let mut new_dims = dims.to_vec();
    new_dims[axis] = keep.len();
    Tensor::from_bytes(t.dtype(), new_dims, out.into()).expect("sizes follow the dims")
}

fn replace_input(g: &mut Graph, names: &mut ConstNames, node: NodeId, input: usize, t: Tensor) {
    let base = g
        .value(g.node(node).inputs[input])
        .name
        .clone()
        .unwrap_or_default();
    let v = g.add_const(names.fresh(&format!("{base}.pruned")), t);
    let n = &mut g.nodes[node.index()];
    if input < n.inputs.len() {
        n.inputs[input] = v;
    } else {
        n.inputs.push(v);
    }
}

/// Removes the channels of `choices` from `g` (analysed as `a`; node ids stay, value ids are
/// renumbered as [`Graph::compact`] does).
pub fn apply(g: &mut Graph, a: &Analysis, choices: &[Choice]) -> Result<(), PruneError> {
    let mut kept: Vec<Vec<usize>> = a.spaces.iter().map(|s| (0..s.size).collect()).collect();
    for c in choices {
        if c.removed.is_empty() {
            continue;
        }
        for &s in &a.groups[c.group].spaces {
            kept[s].retain(|i| c.removed.binary_search(i).is_err());
        }
    }
    let mut names = ConstNames::new(g);
    for m in &a.members {
        match &m.edit {
            Edit::Slice {
                input,
                axis,
                layout,
                role,
            } => {
                let mut positions = kept_positions(a, &kept, layout);
                if let Role::GroupedInputSlices { blocks } = role {
                    // The blocks keep the same positions: the first block's are the slices.
                    let per_block = position_count(a, layout) / blocks;
                    positions.retain(|&p| p < per_block);
                }
                let v = g.node(m.node).inputs[*input];
                let Some(t) = g.const_data(v) else { continue };
                if t.dims().get(*axis) == Some(&positions.len()) {
                    continue;
                }
                let t = take(t, *axis, &positions);
                replace_input(g, &mut names, m.node, *input, t);
            }
            Edit::Group { layout } => {
                let n = kept_positions(a, &kept, layout).len();
                if let Op::Conv(c) = &mut g.nodes[m.node.index()].op {
                    c.group = n;
                }
            }
            Edit::SplitSizes { layout, extents } => {
                // The outputs take whole segments, in order: recount each one's kept positions.
                let mut segs = layout.segments.iter();
                let mut sizes = Vec::new();
                for &extent in extents {
                    let (mut want, mut n) = (extent, 0);
                    while want > 0 {
                        let Some(s) = segs.next() else { break };
                        want -= a.spaces[s.space].size * s.repeat;
                        n += kept[s.space].len() * s.repeat;
                    }
                    sizes.push(n as i64);
                }
                let t = Tensor::from_vec(vec![sizes.len()], sizes);
                replace_input(g, &mut names, m.node, 1, t);
            }
            Edit::ReshapeDim { index, layout } => {
                let n = kept_positions(a, &kept, layout).len() as i64;
                let v = g.node(m.node).inputs[1];
                let Some(t) = g.const_data(v) else { continue };
                let mut shape = t.to_i64_vec();
                if shape[*index] == n {
                    continue;
                }
                shape[*index] = n;
                let t = Tensor::from_vec(vec![shape.len()], shape);
                replace_input(g, &mut names, m.node, 1, t);
            }
        }
    }
    // The unsliced constants no node reads any more.
    g.compact();
    g.reinfer()?;
    Ok(())
}
