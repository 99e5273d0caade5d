//! Graph verifier and topological ordering.
//!
//! [`verify`] checks every structural invariant documented on [`Graph`] and reports all
//! violations at once. [`toposort`] orders nodes by their def-use dependencies regardless of their
//! order in [`Graph::nodes`], for passes that rewire uses.

use crate::graph::{Graph, NodeId, ValueDef, ValueId};
use crate::infer::{infer, InferInput};
use crate::types::shape_of;
use petgraph::graph::{DiGraph, NodeIndex};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The kind of a verifier finding (for matching in tests and tools).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerifyErrorKind {
    /// A value's `def` disagrees with the graph input list or the node that should define it.
    DefMismatch,
    /// A value is listed as a definition (graph input or node output) more than once.
    MultipleDefs,
    /// A reference (node input or output, graph input or output) to a value that does not exist.
    DanglingValue,
    /// A node uses a value defined by itself or a later node.
    UseBeforeDef,
    /// A node has a different number of outputs than its op produces.
    OutputArity,
    /// Type inference rejects a node's inputs.
    InferFailed,
    /// A node output's type differs from the inferred one.
    TypeMismatch,
    /// A constant's type differs from its data.
    ConstTypeMismatch,
    /// Two graph outputs share a name.
    DuplicateOutputName,
    /// Two graph inputs share a name.
    DuplicateInputName,
    /// A graph input has no name or an empty one.
    EmptyInputName,
}

/// One problem found by [`verify`]; the message names the node and values involved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VerifyError {
    pub kind: VerifyErrorKind,
    pub message: String,
}

/// A dependency cycle: the nodes on cycles (in index order).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("dependency cycle through nodes {nodes:?}")]
pub struct CycleError {
    pub nodes: Vec<NodeId>,
}

/// Where a value is claimed to be defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    Input(usize),
    Output { node: NodeId, index: usize },
}

/// Checks the graph's invariants, returning every violation found.
///
/// Checked: each value's `def` matches the graph input list / the defining node's outputs, and
/// each value is defined at most once; node inputs exist and are defined before the node (so
/// `nodes` is a topological order); each node has `op.num_outputs()` outputs whose types equal
/// what [`infer`] computes from its inputs now; graph outputs exist and have unique names; graph
/// inputs have unique non-empty names; constants with data have the data's dtype and shape.
pub fn verify(g: &Graph) -> Result<(), Vec<VerifyError>> {
    let mut errors = Vec::new();
    let mut err =
        |kind: VerifyErrorKind, message: String| errors.push(VerifyError { kind, message });
    let nv = g.values.len();
    let exists = |v: ValueId| v.index() < nv;

    // Claimed definitions of every value.
    let mut claims: Vec<Vec<Claim>> = vec![Vec::new(); nv];
    for (pos, &v) in g.inputs.iter().enumerate() {
        if exists(v) {
            claims[v.index()].push(Claim::Input(pos));
        } else {
            err(
                VerifyErrorKind::DanglingValue,
                format!("graph input {pos} refers to missing value {v}"),
            );
        }
    }
    for (ni, node) in g.nodes.iter().enumerate() {
        let id = NodeId(ni as u32);
        for (index, &v) in node.outputs.iter().enumerate() {
            if exists(v) {
                claims[v.index()].push(Claim::Output { node: id, index });
            } else {
                err(
                    VerifyErrorKind::DanglingValue,
                    format!(
                        "{}: output {index} refers to missing value {v}",
                        g.describe_node(id)
                    ),
                );
            }
        }
    }
    let describe_claim = |c: &Claim| match c {
        Claim::Input(pos) => format!("graph input {pos}"),
        Claim::Output { node, index } => format!("output {index} of {}", g.describe_node(*node)),
    };
    for (vi, value) in g.values.iter().enumerate() {
        let v = ValueId(vi as u32);
        let cl = &claims[vi];
        if cl.len() > 1 {
            let list: Vec<String> = cl.iter().map(describe_claim).collect();
            err(
                VerifyErrorKind::MultipleDefs,
                format!("value {v} is defined more than once: {}", list.join(", ")),
            );
        }
        let expected = match &value.def {
            ValueDef::Input(pos) => Some(Claim::Input(*pos)),
            ValueDef::Node { node, index } => Some(Claim::Output {
                node: *node,
                index: *index,
            }),
            ValueDef::Const(c) => {
                if let Some(data) = &c.data {
                    if value.ty.dtype != data.dtype() || value.ty.shape != shape_of(data.dims()) {
                        err(
                            VerifyErrorKind::ConstTypeMismatch,
                            format!(
                                "constant {v} \"{}\" has type {} but its data is {}{:?}",
                                c.name,
                                value.ty,
                                data.dtype(),
                                data.dims()
                            ),
                        );
                    }
                }
                None
            }
        };
        let consistent = match expected {
            Some(e) => cl.contains(&e),
            None => cl.is_empty(),
        };
        if !consistent {
            let def = match &value.def {
                ValueDef::Input(pos) => format!("graph input {pos}"),
                ValueDef::Const(_) => "a constant".to_string(),
                ValueDef::Node { node, index } => {
                    if node.index() < g.nodes.len() {
                        format!("output {index} of {}", g.describe_node(*node))
                    } else {
                        format!("output {index} of missing node {}", node.0)
                    }
                }
            };
            let actual = if cl.is_empty() {
                "nothing lists it".to_string()
            } else {
                let list: Vec<String> = cl.iter().map(describe_claim).collect();
                format!("it is listed as {}", list.join(", "))
            };
            err(
                VerifyErrorKind::DefMismatch,
                format!("value {v} claims to be {def}, but {actual}"),
            );
        }
    }

    for (ni, node) in g.nodes.iter().enumerate() {
        let id = NodeId(ni as u32);
        let mut inputs_ok = true;
        for (k, &v) in node.inputs.iter().enumerate() {
            if !exists(v) {
                inputs_ok = false;
                err(
                    VerifyErrorKind::DanglingValue,
                    format!(
                        "{}: input {k} refers to missing value {v}",
                        g.describe_node(id)
                    ),
                );
                continue;
            }
            if let ValueDef::Node { node: def, .. } = g.values[v.index()].def {
                if def.index() >= ni {
                    err(
                        VerifyErrorKind::UseBeforeDef,
                        format!(
                            "{}: input {k} is {v}, defined by {} which does not come earlier",
                            g.describe_node(id),
                            if def.index() < g.nodes.len() {
                                g.describe_node(def)
                            } else {
                                format!("missing node {}", def.0)
                            }
                        ),
                    );
                }
            }
        }
        let arity = node.op.num_outputs();
        if node.outputs.len() != arity {
            err(
                VerifyErrorKind::OutputArity,
                format!(
                    "{}: has {} outputs, the op produces {arity}",
                    g.describe_node(id),
                    node.outputs.len()
                ),
            );
        }
        if !inputs_ok {
            continue;
        }
        let args: Vec<InferInput> = node
            .inputs
            .iter()
            .map(|&v| InferInput {
                ty: &g.values[v.index()].ty,
                value: g.const_data(v),
            })
            .collect();
        match infer(&node.op, &args) {
            Err(reason) => err(
                VerifyErrorKind::InferFailed,
                format!("{}: {reason}", g.describe_node(id)),
            ),
            Ok(types) => {
                for (index, (&v, want)) in node.outputs.iter().zip(&types).enumerate() {
                    if !exists(v) {
                        continue;
                    }
                    let have = &g.values[v.index()].ty;
                    if have != want {
                        let quant = if have.shape == want.shape && have.dtype == want.dtype {
                            format!(" (quantization {:?} vs {:?})", have.quant, want.quant)
                        } else {
                            String::new()
                        };
                        err(
                            VerifyErrorKind::TypeMismatch,
                            format!(
                                "{}: output {index} ({v}) has type {have} but inference gives {want}{quant}",
                                g.describe_node(id)
                            ),
                        );
                    }
                }
            }
        }
    }

    let mut output_names: HashMap<&str, usize> = HashMap::new();
    for (pos, out) in g.outputs.iter().enumerate() {
        if !exists(out.value) {
            err(
                VerifyErrorKind::DanglingValue,
                format!(
                    "graph output {pos} \"{}\" refers to missing value {}",
                    out.name, out.value
                ),
            );
        }
        if let Some(first) = output_names.insert(&out.name, pos) {
            err(
                VerifyErrorKind::DuplicateOutputName,
                format!(
                    "graph outputs {first} and {pos} are both named \"{}\"",
                    out.name
                ),
            );
        }
    }

    let mut input_names: HashMap<&str, usize> = HashMap::new();
    for (pos, &v) in g.inputs.iter().enumerate() {
        let Some(value) = g.values.get(v.index()) else {
            continue;
        };
        match value.name.as_deref() {
            None | Some("") => err(
                VerifyErrorKind::EmptyInputName,
                format!("graph input {pos} ({v}) has no name"),
            ),
            Some(name) => {
                if let Some(first) = input_names.insert(name, pos) {
                    err(
                        VerifyErrorKind::DuplicateInputName,
                        format!("graph inputs {first} and {pos} are both named \"{name}\""),
                    );
                }
            }
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The node dependency graph: graph node `i` is `NodeId(i)`, and an edge `a -> b` carries each
/// value that node `a` defines (per the value's `def`) and node `b` uses. References to missing
/// values or nodes are ignored (they are [`verify`]'s business).
pub fn dependency_graph(g: &Graph) -> DiGraph<NodeId, ValueId> {
    let mut dg = DiGraph::with_capacity(g.nodes.len(), g.nodes.len());
    for i in 0..g.nodes.len() {
        dg.add_node(NodeId(i as u32));
    }
    for (ni, node) in g.nodes.iter().enumerate() {
        for &v in &node.inputs {
            if let Some(ValueDef::Node { node: def, .. }) = g.values.get(v.index()).map(|x| &x.def)
            {
                if def.index() < g.nodes.len() {
                    dg.add_edge(NodeIndex::new(def.index()), NodeIndex::new(ni), v);
                }
            }
        }
    }
    dg
}

/// A topological order of the nodes by def-use dependencies. Stable: among ready nodes the one
/// with the lowest index comes first, so a graph whose `nodes` are already ordered keeps its order.
/// Fails with the nodes that lie on dependency cycles.
pub fn toposort(g: &Graph) -> Result<Vec<NodeId>, CycleError> {
    let dg = dependency_graph(g);
    let n = dg.node_count();
    let mut indegree = vec![0usize; n];
    for e in dg.raw_edges() {
        indegree[e.target().index()] += 1;
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(NodeId(i as u32));
        for succ in dg.neighbors(NodeIndex::new(i)) {
            // `neighbors` yields a successor once per edge, matching the in-degree count.
            let s = succ.index();
            indegree[s] -= 1;
            if indegree[s] == 0 {
                ready.push(Reverse(s));
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    let mut nodes: Vec<NodeId> = petgraph::algo::tarjan_scc(&dg)
        .into_iter()
        .filter(|scc| scc.len() > 1 || dg.contains_edge(scc[0], scc[0]))
        .flatten()
        .map(|ix| NodeId(ix.index() as u32))
        .collect();
    nodes.sort();
    Err(CycleError { nodes })
}
