//! Graph mutation: rewiring uses, removing dead nodes, compacting the arena, keeping `nodes` in
//! topological order, and re-running type inference.
//!
//! Contracts shared by every method here:
//! - Ids stay stable until [`Graph::compact`] (or [`Graph::remove_dead_nodes`], which compacts)
//!   or [`Graph::remove_nodes`] runs; those renumber values and nodes densely, preserving relative
//!   order, so any `ValueId`/`NodeId` a caller holds across them is stale.
//! - Node order is a topological order again after [`Graph::sort_topologically`]; the other methods
//!   preserve it when the caller's rewiring does (e.g. replacing a value by one defined earlier).
//! - Graph inputs are never removed or renumbered among themselves: they are the graph's interface.

use crate::graph::{Constant, Graph, GraphError, Node, NodeId, ValueDef, ValueId};
use crate::op::Op;
use crate::tensor::Tensor;
use crate::types::TensorType;
use smallvec::SmallVec;

/// Why a structural rewrite was refused. The graph is left unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("cannot remove {node}: its output {value} is still used")]
    StillUsed { node: String, value: ValueId },
    #[error("dependency cycle through {} nodes, first {first}", nodes.len())]
    Cycle { nodes: Vec<NodeId>, first: String },
    #[error("node index {index} is out of range ({len} nodes)")]
    NoSuchNode { index: usize, len: usize },
    #[error("graph input position {pos} is out of range ({len} inputs)")]
    NoSuchInput { pos: usize, len: usize },
    #[error("graph input {pos} has type {expected}; the value given is {actual}")]
    InputMismatch {
        pos: usize,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Graph(#[from] GraphError),
}

impl Graph {
    /// Replaces every use of `old` (node inputs and graph outputs) by `new`; returns how many uses
    /// were replaced. The caller guarantees `new` has a type compatible with every use (normally
    /// `ty(new) == ty(old)`) and, for node order to stay topological, that `new` is defined before
    /// every user of `old` (see [`Graph::sort_topologically`] otherwise). `old` keeps its definition.
    pub fn replace_all_uses(&mut self, old: ValueId, new: ValueId) -> usize {
        if old == new {
            return 0;
        }
        let mut n = 0;
        for node in &mut self.nodes {
            for i in node.inputs.iter_mut() {
                if *i == old {
                    *i = new;
                    n += 1;
                }
            }
        }
        for o in &mut self.outputs {
            if o.value == old {
                o.value = new;
                n += 1;
            }
        }
        n
    }

    /// For every value, the nodes that use it, in node order (a node appears once per use).
    pub fn users(&self) -> Vec<SmallVec<[NodeId; 2]>> {
        let mut users = vec![SmallVec::new(); self.values.len()];
        for (ni, n) in self.nodes.iter().enumerate() {
            for &i in &n.inputs {
                if let Some(u) = users.get_mut(i.index()) {
                    u.push(NodeId(ni as u32));
                }
            }
        }
        users
    }

    /// Whether `v` is returned by the graph.
    pub fn is_output(&self, v: ValueId) -> bool {
        self.outputs.iter().any(|o| o.value == v)
    }

    /// Removes the nodes for which `remove` returns true, then [`compacts`](Graph::compact).
    /// Refused (graph unchanged) if an output of a removed node is used by a kept node or a graph
    /// output. Returns the number of nodes removed.
    pub fn remove_nodes(
        &mut self,
        mut remove: impl FnMut(NodeId, &Node) -> bool,
    ) -> Result<usize, RewriteError> {
        let dead: Vec<bool> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| remove(NodeId(i as u32), n))
            .collect();
        let is_dead_value = |g: &Graph, v: ValueId| match g.values.get(v.index()).map(|x| &x.def) {
            Some(ValueDef::Node { node, .. }) => dead.get(node.index()).copied().unwrap_or(false),
            _ => false,
        };
        for (ni, n) in self.nodes.iter().enumerate() {
            if dead[ni] {
                continue;
            }
            if let Some(&v) = n.inputs.iter().find(|&&v| is_dead_value(self, v)) {
                let def = self.producer(v).unwrap_or(NodeId(ni as u32));
                return Err(RewriteError::StillUsed {
                    node: self.describe_node(def),
                    value: v,
                });
            }
        }
        if let Some(o) = self.outputs.iter().find(|o| is_dead_value(self, o.value)) {
            let def = self.producer(o.value).unwrap_or(NodeId(0));
            return Err(RewriteError::StillUsed {
                node: self.describe_node(def),
                value: o.value,
            });
        }
        let removed = dead.iter().filter(|&&d| d).count();
        if removed > 0 {
            let mut k = 0;
            self.nodes.retain(|_| {
                k += 1;
                !dead[k - 1]
            });
        }
        // Values of removed nodes now have stale defs; compact drops them (they are unreferenced).
        let mut old_to_new = vec![None; dead.len()];
        let mut next = 0u32;
        for (i, &d) in dead.iter().enumerate() {
            if !d {
                old_to_new[i] = Some(NodeId(next));
                next += 1;
            }
        }
        let mut orphan = vec![false; self.values.len()];
        for (vi, v) in self.values.iter_mut().enumerate() {
            if let ValueDef::Node { node, .. } = &mut v.def {
                match old_to_new.get(node.index()).copied().flatten() {
                    Some(n) => *node = n,
                    None => orphan[vi] = true,
                }
            }
        }
        self.compact_with(&orphan);
        Ok(removed)
    }

    /// Dead-code elimination: removes every node none of whose outputs is (transitively) needed by
    /// a graph output, then compacts. Ops have no side effects, so this never changes what the
    /// graph computes. Returns the number of nodes removed.
    pub fn remove_dead_nodes(&mut self) -> usize {
        let mut live = vec![false; self.values.len()];
        for o in &self.outputs {
            if let Some(l) = live.get_mut(o.value.index()) {
                *l = true;
            }
        }
        let mut live_nodes = vec![false; self.nodes.len()];
        for (ni, n) in self.nodes.iter().enumerate().rev() {
            if n.outputs
                .iter()
                .any(|v| live.get(v.index()).copied().unwrap_or(false))
            {
                live_nodes[ni] = true;
                for &i in &n.inputs {
                    if let Some(l) = live.get_mut(i.index()) {
                        *l = true;
                    }
                }
            }
        }
        // Liveness was computed backwards over a topological order, so no kept node uses a removed
        // node's output and removal cannot be refused.
        self.remove_nodes(|id, _| !live_nodes[id.index()])
            .unwrap_or(0)
    }

    /// Renumbers values densely, dropping constants that no node or graph output references and
    /// node-output values whose `def` names no existing node that lists them. Graph inputs are
    /// always kept. Relative order is preserved. Returns whether anything was dropped.
    pub fn compact(&mut self) -> bool {
        let mut orphan = vec![false; self.values.len()];
        for (vi, v) in self.values.iter().enumerate() {
            if let ValueDef::Node { node, index } = v.def {
                let listed = self
                    .nodes
                    .get(node.index())
                    .and_then(|n| n.outputs.get(index))
                    .is_some_and(|&o| o.index() == vi);
                orphan[vi] = !listed;
            }
        }
        self.compact_with(&orphan)
    }

    fn compact_with(&mut self, orphan: &[bool]) -> bool {
        let nv = self.values.len();
        let mut keep = vec![false; nv];
        let mark = |v: ValueId, keep: &mut Vec<bool>| {
            if let Some(k) = keep.get_mut(v.index()) {
                *k = true;
            }
        };
        for &v in &self.inputs {
            mark(v, &mut keep);
        }
        for n in &self.nodes {
            for &v in n.inputs.iter().chain(&n.outputs) {
                mark(v, &mut keep);
            }
        }
        for o in &self.outputs {
            mark(o.value, &mut keep);
        }
        for (vi, k) in keep.iter_mut().enumerate() {
            if orphan.get(vi).copied().unwrap_or(false) {
                *k = false;
            }
        }
        if keep.iter().all(|&k| k) {
            return false;
        }
        let mut map = vec![ValueId(u32::MAX); nv];
        let mut next = 0u32;
        for (vi, &k) in keep.iter().enumerate() {
            if k {
                map[vi] = ValueId(next);
                next += 1;
            }
        }
        let mut vi = 0;
        self.values.retain(|_| {
            vi += 1;
            keep[vi - 1]
        });
        let remap = |v: &mut ValueId| {
            if let Some(&m) = map.get(v.index()) {
                *v = m;
            }
        };
        for v in &mut self.inputs {
            remap(v);
        }
        for n in &mut self.nodes {
            n.inputs.iter_mut().for_each(remap);
            n.outputs.iter_mut().for_each(remap);
        }
        for o in &mut self.outputs {
            remap(&mut o.value);
        }
        true
    }

    /// Re-orders `nodes` into a topological order of their def-use dependencies, keeping the
    /// current relative order wherever dependencies allow (so a sorted graph is unchanged), and
    /// fixes every `ValueDef::Node { node }`. Refused (graph unchanged) on a cycle.
    /// Returns whether the order changed.
    pub fn sort_topologically(&mut self) -> Result<bool, RewriteError> {
        let order: Vec<usize> = crate::verify::toposort(self)
            .map_err(|e| RewriteError::Cycle {
                first: e
                    .nodes
                    .first()
                    .map_or_else(String::new, |&n| self.describe_node(n)),
                nodes: e.nodes,
            })?
            .into_iter()
            .map(NodeId::index)
            .collect();
        let changed = order.iter().enumerate().any(|(k, &i)| k != i);
        if changed {
            let mut old: Vec<Option<Node>> = self.nodes.drain(..).map(Some).collect();
            for &i in &order {
                if let Some(node) = old[i].take() {
                    self.nodes.push(node);
                }
            }
        }
        self.fix_node_defs();
        Ok(changed)
    }

    /// Sets every node output's `def` to its node position and output index.
    fn fix_node_defs(&mut self) {
        for (ni, node) in self.nodes.iter().enumerate() {
            for (index, &o) in node.outputs.iter().enumerate() {
                if let Some(v) = self.values.get_mut(o.index()) {
                    v.def = ValueDef::Node {
                        node: NodeId(ni as u32),
                        index,
                    };
                }
            }
        }
    }

    /// Like [`Graph::add_node`], but places the node at position `before` in `nodes` (later nodes
    /// shift by one, their output `def`s are updated). The caller guarantees every input is defined
    /// before position `before`. `before == nodes.len()` appends.
    pub fn insert_node_before(
        &mut self,
        before: NodeId,
        op: Op,
        inputs: &[ValueId],
        name: impl Into<String>,
    ) -> Result<SmallVec<[ValueId; 1]>, RewriteError> {
        let pos = before.index();
        if pos > self.nodes.len() {
            return Err(RewriteError::NoSuchNode {
                index: pos,
                len: self.nodes.len(),
            });
        }
        let outs = self.add_node(op, inputs, name)?;
        if pos < self.nodes.len() - 1 {
            if let Some(node) = self.nodes.pop() {
                self.nodes.insert(pos, node);
            }
            self.fix_node_defs();
        }
        Ok(outs)
    }

    /// Replaces node `id`'s op and inputs in place, re-inferring its output types (outputs keep
    /// their ids). Refused (graph unchanged) if inference rejects the new op or the output count
    /// differs. Downstream types are not updated: call [`Graph::reinfer`] if they may change.
    pub fn set_node_op(
        &mut self,
        id: NodeId,
        mut op: Op,
        inputs: &[ValueId],
    ) -> Result<(), RewriteError> {
        crate::canon::canonicalize_attrs(&mut op);
        let len = self.nodes.len();
        let node = self.nodes.get(id.index()).ok_or(RewriteError::NoSuchNode {
            index: id.index(),
            len,
        })?;
        let types = self.infer_node(&op, inputs, &node.name)?;
        if types.len() != node.outputs.len() {
            return Err(RewriteError::Graph(GraphError::Arity {
                node: node.name.clone(),
                op: op.name().to_string(),
                expected: node.outputs.len().to_string(),
                actual: types.len(),
            }));
        }
        let outputs = node.outputs.clone();
        for (o, ty) in outputs.iter().zip(types) {
            self.values[o.index()].ty = ty;
        }
        let node = &mut self.nodes[id.index()];
        node.op = op;
        node.inputs = inputs.into();
        Ok(())
    }

    /// Turns graph input `pos` into a constant holding `data` (specialising the graph for that
    /// value): the value keeps its id and name, later inputs move down one position, and types
    /// are re-inferred. `data` must fit the input's type (same dtype; known dims equal).
    pub fn specialize_input(&mut self, pos: usize, data: Tensor) -> Result<(), RewriteError> {
        let v = *self.inputs.get(pos).ok_or(RewriteError::NoSuchInput {
            pos,
            len: self.inputs.len(),
        })?;
        let fits = {
            let ty = &self.values[v.index()].ty;
            ty.dtype == data.dtype()
                && ty.rank() == data.dims().len()
                && ty.shape.iter().zip(data.dims()).all(|(d, &n)| match d {
                    crate::Dim::Known(k) => *k == n,
                    _ => true,
                })
        };
        if !fits {
            return Err(RewriteError::InputMismatch {
                pos,
                expected: self.values[v.index()].ty.to_string(),
                actual: format!("{}{:?}", data.dtype(), data.dims()),
            });
        }
        let name = self.values[v.index()]
            .name
            .clone()
            .unwrap_or_else(|| format!("input{pos}"));
        self.values[v.index()].ty =
            TensorType::new(data.dtype(), crate::types::shape_of(data.dims()));
        self.values[v.index()].def = ValueDef::Const(Constant {
            name,
            data: Some(data),
        });
        self.inputs.remove(pos);
        for (p, &w) in self.inputs.iter().enumerate() {
            self.values[w.index()].def = ValueDef::Input(p);
        }
        self.reinfer()?;
        Ok(())
    }

    /// Changes the type of graph input `pos` (e.g. to bind symbolic dimensions) without
    /// re-inferring; call `Graph::reinfer` afterwards.
    pub fn set_input_type(&mut self, pos: usize, ty: TensorType) -> Result<(), RewriteError> {
        let v = *self.inputs.get(pos).ok_or(RewriteError::NoSuchInput {
            pos,
            len: self.inputs.len(),
        })?;
        self.values[v.index()].ty = ty;
        Ok(())
    }

    /// Re-runs type inference on one node from its inputs' current types; returns whether an output
    /// type changed.
    pub fn reinfer_node(&mut self, id: NodeId) -> Result<bool, GraphError> {
        let node = &self.nodes[id.index()];
        let types = self.infer_node(&node.op, &node.inputs, &node.name)?;
        let outputs = node.outputs.clone();
        let mut changed = false;
        for (o, ty) in outputs.iter().zip(types) {
            let slot = &mut self.values[o.index()].ty;
            if *slot != ty {
                *slot = ty;
                changed = true;
            }
        }
        Ok(changed)
    }
}
