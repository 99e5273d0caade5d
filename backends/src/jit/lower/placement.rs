//! Where values live and what each node becomes, decided before any code is emitted.
//!
//! Nodes are classified ([`Kind`]): *views* (`Op::is_view` ops not producing a graph output share
//! their input's storage; kernels never write their inputs, so sharing is safe), *in-place
//! concatenations* (see [`in_place_slices`]: the producers of a `Concat`'s inputs write straight
//! into their slices of its output, and the node has no code), and *kernels* (a function each,
//! with its task count and scratch). Every value then gets a [`Loc`]: a graph input or output, a constant, or an
//! offset in the arena, whose buffers (kernel outputs and scratch) are placed by the lifetime
//! planner (`crate::jit::plan`); a view's use extends the lifetime of the buffer it shares.

use crate::jit::error::JitError;
use crate::jit::options::JitOptions;
use crate::jit::plan::{self, Buffer, MemoryPlan};
use kestrel_ir::{Graph, NodeId, Tensor, ValueDef, ValueId};
use std::collections::HashMap;

/// Where a value lives at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    /// Graph input number `.0` (read from the inputs array).
    Input(usize),
    /// Graph output number `.0` (written through the outputs array).
    Output(usize),
    /// Byte offset in the arena.
    Arena(usize),
    /// Constant data of this value, by symbol.
    Const(ValueId),
}

/// What a node becomes.
#[derive(Clone, Debug)]
pub(super) enum Kind {
    View,
    /// A `Concat` whose inputs live in its output ([`in_place_slices`]): nothing to run.
    InPlaceConcat,
    /// A node with a function; `scratch` bytes serve all its `tasks` together.
    Kernel {
        scratch: usize,
        tasks: usize,
    },
}

/// The classification of every node and the location of every value.
pub(super) struct Placement {
    /// Per node.
    pub kinds: Vec<Kind>,
    /// Per value; `None` for values nothing reads at run time.
    pub loc: Vec<Option<Loc>>,
    /// Arena offset of each kernel's scratch, per node.
    pub scratch_offset: Vec<Option<usize>>,
    pub mem: MemoryPlan,
}

/// Classifies the nodes of `g` and places its values; `consts` are the graph's constants
/// (`super::fold::constant_values`).
pub(super) fn place(
    g: &Graph,
    consts: &HashMap<ValueId, Tensor>,
    opts: &JitOptions,
) -> Result<Placement, JitError> {
    let n_nodes = g.nodes.len();
    let mut kinds: Vec<Kind> = Vec::with_capacity(n_nodes);
    let graph_outputs: Vec<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    for (i, node) in g.nodes.iter().enumerate() {
        let id = NodeId(i as u32);
        for &v in &node.inputs {
            if let ValueDef::Const(c) = &g.value(v).def {
                if c.data.is_none() {
                    return Err(JitError::ElidedConstant {
                        name: c.name.clone(),
                    });
                }
            }
        }
        if is_view(node, &graph_outputs) {
            kinds.push(Kind::View);
            continue;
        }
        let tasks = crate::jit::ops::task_count(g, node, opts);
        let scratch = crate::jit::ops::scratch_bytes(g, id, node, consts, tasks, opts)?;
        kinds.push(Kind::Kernel { scratch, tasks });
    }
    for o in &g.outputs {
        if let ValueDef::Const(c) = &g.value(o.value).def {
            if c.data.is_none() {
                return Err(JitError::ElidedConstant {
                    name: c.name.clone(),
                });
            }
        }
    }
    let slices = in_place_slices(g, consts, &mut kinds);
    // Locations and buffers.
    let mut loc: Vec<Option<Loc>> = vec![None; g.values.len()];
    for (pos, &v) in g.inputs.iter().enumerate() {
        loc[v.index()] = Some(Loc::Input(pos));
    }
    for &v in consts.keys() {
        loc[v.index()] = Some(Loc::Const(v));
    }
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut buffer_of: HashMap<ValueId, usize> = HashMap::new(); // root value -> buffer
    let mut root: Vec<ValueId> = (0..g.values.len() as u32).map(ValueId).collect();
    let mut scratch_buf: Vec<Option<usize>> = vec![None; n_nodes];
    let mut written_outputs: Vec<bool> = vec![false; g.outputs.len()];
    // An in-place concatenation's buffer is live from its first input's producer on, and its
    // inputs' uses extend it.
    for (i, node) in g.nodes.iter().enumerate() {
        if let Kind::InPlaceConcat = kinds[i] {
            let out = node.outputs[0];
            let first = node
                .inputs
                .iter()
                .filter_map(|v| match g.value(*v).def {
                    ValueDef::Node { node, .. } => Some(node.index()),
                    _ => None,
                })
                .min()
                .unwrap_or(i);
            buffer_of.insert(out, buffers.len());
            buffers.push(Buffer {
                size: g.ty(out).numel().unwrap_or(0) * g.ty(out).dtype.size(),
                first,
                last: i,
                scratch: false,
            });
            for &v in &node.inputs {
                root[v.index()] = out;
            }
        }
    }
    for (i, node) in g.nodes.iter().enumerate() {
        match &kinds[i] {
            Kind::InPlaceConcat => {}
            Kind::View => {
                let src = node.inputs[0];
                root[node.outputs[0].index()] = root[src.index()];
                loc[node.outputs[0].index()] = loc[src.index()];
            }
            Kind::Kernel { scratch, .. } => {
                for &v in &node.outputs {
                    if slices.contains_key(&v) {
                        continue;
                    }
                    let out_pos = g
                        .outputs
                        .iter()
                        .position(|o| o.value == v)
                        .filter(|&p| !written_outputs[p]);
                    if let Some(p) = out_pos {
                        written_outputs[p] = true;
                        loc[v.index()] = Some(Loc::Output(p));
                    } else {
                        let bytes = g.ty(v).numel().unwrap_or(0) * g.ty(v).dtype.size();
                        buffer_of.insert(v, buffers.len());
                        buffers.push(Buffer {
                            size: bytes,
                            first: i,
                            last: i,
                            scratch: false,
                        });
                        loc[v.index()] = Some(Loc::Arena(0));
                    }
                }
                if *scratch > 0 {
                    scratch_buf[i] = Some(buffers.len());
                    buffers.push(Buffer {
                        size: *scratch,
                        first: i,
                        last: i,
                        scratch: true,
                    });
                }
            }
        }
    }
    // Liveness: a use of a view extends its root's buffer.
    for (i, node) in g.nodes.iter().enumerate() {
        if !matches!(kinds[i], Kind::Kernel { .. }) {
            continue;
        }
        for &v in &node.inputs {
            if let Some(&b) = buffer_of.get(&root[v.index()]) {
                buffers[b].last = buffers[b].last.max(i);
            }
        }
    }
    for o in &g.outputs {
        if let Some(&b) = buffer_of.get(&root[o.value.index()]) {
            buffers[b].last = n_nodes;
        }
    }
    let mem = plan::plan(&buffers);
    for (&v, &b) in &buffer_of {
        loc[v.index()] = Some(Loc::Arena(mem.offsets[b]));
    }
    for (&v, &(concat, offset)) in &slices {
        loc[v.index()] = Some(Loc::Arena(mem.offsets[buffer_of[&concat]] + offset));
    }
    for (i, node) in g.nodes.iter().enumerate() {
        if let Kind::View = kinds[i] {
            loc[node.outputs[0].index()] = loc[node.inputs[0].index()];
        }
    }
    let scratch_offset = scratch_buf
        .iter()
        .map(|b| b.map(|b| mem.offsets[b]))
        .collect();
    Ok(Placement {
        kinds,
        loc,
        scratch_offset,
        mem,
    })
}

/// Whether `node` shares its input's storage ([`Kind::View`]): a view op whose output is not a
/// graph output (which it must write).
fn is_view(node: &kestrel_ir::Node, graph_outputs: &[ValueId]) -> bool {
    node.op.is_view() && !graph_outputs.contains(&node.outputs[0])
}

/// The `Concat` nodes of `g` that the lowering gives no code: the kernels producing their inputs
/// write them in place into their output (the contract: docs/JIT.md, "Memory").
pub fn in_place_concats(g: &Graph, consts: &HashMap<ValueId, Tensor>) -> Vec<NodeId> {
    let graph_outputs: Vec<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    let mut kinds: Vec<Kind> = g
        .nodes
        .iter()
        .map(|n| match is_view(n, &graph_outputs) {
            true => Kind::View,
            false => Kind::Kernel {
                scratch: 0,
                tasks: 1,
            },
        })
        .collect();
    in_place_slices(g, consts, &mut kinds);
    (0..g.nodes.len())
        .filter(|&i| matches!(kinds[i], Kind::InPlaceConcat))
        .map(|i| NodeId(i as u32))
        .collect()
}

/// The `Concat` nodes whose inputs can be written in place into their output, marked
/// [`Kind::InPlaceConcat`] in `kinds`; returns each such input with the concatenation's output
/// and the byte offset of its slice there.
///
/// Contract: a concatenation qualifies when its output is an arena tensor (not a graph output,
/// not a constant) whose axes before `axis` all have extent 1, so that every input is one
/// contiguous slice of it, each slice starting at a multiple of [`plan::ALIGN`] bytes (kernels see
/// outputs as aligned as any arena buffer), and every input is a distinct, non-constant tensor
/// written by a kernel node and not itself a graph output. Its producers then write their slices
/// and nothing else; readers of an input read the slice, which no one else writes.
fn in_place_slices(
    g: &Graph,
    consts: &HashMap<ValueId, Tensor>,
    kinds: &mut [Kind],
) -> HashMap<ValueId, (ValueId, usize)> {
    let graph_outputs: Vec<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    let mut slices = HashMap::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let kestrel_ir::Op::Concat { axis } = node.op else {
            continue;
        };
        if !matches!(kinds[i], Kind::Kernel { .. }) {
            continue;
        }
        let out = node.outputs[0];
        let Some(dims) = g.ty(out).dims() else {
            continue;
        };
        let rank = dims.len() as i64;
        let axis = if axis < 0 { axis + rank } else { axis };
        if axis < 0 || axis >= rank || dims[..axis as usize].iter().any(|&d| d != 1) {
            continue;
        }
        if graph_outputs.contains(&out) || consts.contains_key(&out) {
            continue;
        }
        let elem = g.ty(out).dtype.size();
        let mut offset = 0usize;
        let mut parts = Vec::with_capacity(node.inputs.len());
        for (j, &v) in node.inputs.iter().enumerate() {
            let produced_by_kernel = match g.value(v).def {
                ValueDef::Node { node: p, .. } => matches!(kinds[p.index()], Kind::Kernel { .. }),
                _ => false,
            };
            let bytes = g.ty(v).numel().and_then(|n| n.checked_mul(elem));
            let (true, Some(bytes)) = (
                produced_by_kernel
                    && offset.is_multiple_of(plan::ALIGN)
                    && g.ty(v).dtype == g.ty(out).dtype
                    && !consts.contains_key(&v)
                    && !graph_outputs.contains(&v)
                    && !slices.contains_key(&v)
                    && !node.inputs[..j].contains(&v),
                bytes,
            ) else {
                break;
            };
            parts.push((v, offset));
            let Some(next) = offset.checked_add(bytes) else {
                break;
            };
            offset = next;
        }
        let total = dims.iter().try_fold(elem, |n, &d| n.checked_mul(d));
        if parts.len() != node.inputs.len() || Some(offset) != total {
            continue;
        }
        kinds[i] = Kind::InPlaceConcat;
        for (v, off) in parts {
            slices.insert(v, (out, off));
        }
    }
    slices
}
