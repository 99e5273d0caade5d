//! Where values live and what each node becomes, decided before any code is emitted.
//!
//! Nodes are classified ([`Kind`]): *views* (`Op::is_view` ops not producing a graph output share their input's storage; kernels
//! never write their inputs, so sharing is safe), and *kernels* (a function each, with its task
//! count and scratch). Every value then gets a [`Loc`]: a graph input or output, a constant, or an
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
        if node.op.is_view() && !graph_outputs.contains(&node.outputs[0]) {
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
    for (i, node) in g.nodes.iter().enumerate() {
        match &kinds[i] {
            Kind::View => {
                let src = node.inputs[0];
                root[node.outputs[0].index()] = root[src.index()];
                loc[node.outputs[0].index()] = loc[src.index()];
            }
            Kind::Kernel { scratch, .. } => {
                for &v in &node.outputs {
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
