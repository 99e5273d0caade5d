//! The graph: an arena of typed SSA values and the nodes that define them.

use crate::infer::{infer, InferInput};
use crate::op::Op;
use crate::tensor::Tensor;
use crate::types::TensorType;
use smallvec::SmallVec;
use std::fmt;

/// Index of a value in [`Graph::values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Index of a node in [`Graph::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// A constant: a name (the ONNX initializer name, or one a pass made up) and its data.
/// `data` is `None` only for graphs parsed from a dump printed with elided weights: such a graph
/// can be printed, verified and inspected but not run.
#[derive(Clone, Debug)]
pub struct Constant {
    pub name: String,
    pub data: Option<Tensor>,
}

/// Where a value comes from.
#[derive(Clone, Debug)]
pub enum ValueDef {
    /// Graph input number `.0` (position in [`Graph::inputs`]).
    Input(usize),
    Const(Constant),
    /// Output `index` of `node`.
    Node {
        node: NodeId,
        index: usize,
    },
}

#[derive(Clone, Debug)]
pub struct Value {
    pub ty: TensorType,
    /// The name the value had in the source model, if any (diagnostics and graph I/O binding).
    pub name: Option<String>,
    pub def: ValueDef,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub inputs: SmallVec<[ValueId; 4]>,
    pub outputs: SmallVec<[ValueId; 1]>,
    /// The source node's name (for diagnostics); may be empty.
    pub name: String,
}

/// A graph output: the name users see and the value it returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphOutput {
    pub name: String,
    pub value: ValueId,
}

/// A dataflow graph in SSA form.
///
/// Invariants maintained by the builder methods (and checked by [`crate::verify`]): every node's
/// inputs are defined before the node in `nodes` order (so `nodes` is a topological order), every
/// value has exactly one definition, and every node output's type is what inference computes.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<GraphOutput>,
}

/// A structural error in building or checking a graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("node {node}: {op}: {reason}")]
    Infer {
        node: String,
        op: String,
        reason: String,
    },
    #[error("node {node}: input {input} is not a value of this graph")]
    DanglingInput { node: String, input: u32 },
    #[error("node {node}: {op} expects {expected} inputs, got {actual}")]
    Arity {
        node: String,
        op: String,
        expected: String,
        actual: usize,
    },
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Default::default()
        }
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    pub fn ty(&self, id: ValueId) -> &TensorType {
        &self.values[id.index()].ty
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    /// The constant data of a value, if it is a constant with data.
    pub fn const_data(&self, id: ValueId) -> Option<&Tensor> {
        match &self.values.get(id.index())?.def {
            ValueDef::Const(c) => c.data.as_ref(),
            _ => None,
        }
    }

    /// The node that defines a value, if any.
    pub fn producer(&self, id: ValueId) -> Option<NodeId> {
        match self.values[id.index()].def {
            ValueDef::Node { node, .. } => Some(node),
            _ => None,
        }
    }

    fn push_value(&mut self, ty: TensorType, name: Option<String>, def: ValueDef) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(Value { ty, name, def });
        id
    }

    /// Appends a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let pos = self.inputs.len();
        let id = self.push_value(ty, Some(name.into()), ValueDef::Input(pos));
        self.inputs.push(id);
        id
    }

    /// Adds a constant with data; its type is the tensor's.
    pub fn add_const(&mut self, name: impl Into<String>, data: Tensor) -> ValueId {
        let ty = TensorType::new(data.dtype(), crate::types::shape_of(data.dims()));
        let name = name.into();
        self.push_value(
            ty,
            Some(name.clone()),
            ValueDef::Const(Constant {
                name,
                data: Some(data),
            }),
        )
    }

    /// Adds a constant whose data is not available (see [`Constant::data`]).
    pub fn add_elided_const(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let name = name.into();
        self.push_value(
            ty,
            Some(name.clone()),
            ValueDef::Const(Constant { name, data: None }),
        )
    }

    /// Appends a node after inferring its output types; returns its outputs. Attributes are
    /// brought into canonical form first ([`crate::canon::canonicalize_attrs`]).
    /// Fails, adding nothing, if an input is not in the graph or inference rejects the inputs.
    pub fn add_node(
        &mut self,
        mut op: Op,
        inputs: &[ValueId],
        name: impl Into<String>,
    ) -> Result<SmallVec<[ValueId; 1]>, GraphError> {
        let name = name.into();
        crate::canon::canonicalize_attrs(&mut op);
        let out_types = self.infer_node(&op, inputs, &name)?;
        let node_id = NodeId(self.nodes.len() as u32);
        let outputs: SmallVec<[ValueId; 1]> = out_types
            .into_iter()
            .enumerate()
            .map(|(index, ty)| {
                self.push_value(
                    ty,
                    None,
                    ValueDef::Node {
                        node: node_id,
                        index,
                    },
                )
            })
            .collect();
        self.nodes.push(Node {
            op,
            inputs: inputs.into(),
            outputs: outputs.clone(),
            name,
        });
        Ok(outputs)
    }

    /// Adds a single-output node and returns its output.
    pub fn add(
        &mut self,
        op: Op,
        inputs: &[ValueId],
        name: impl Into<String>,
    ) -> Result<ValueId, GraphError> {
        Ok(self.add_node(op, inputs, name)?[0])
    }

    /// Runs type inference for `op` applied to `inputs` without changing the graph.
    pub fn infer_node(
        &self,
        op: &Op,
        inputs: &[ValueId],
        node_name: &str,
    ) -> Result<Vec<TensorType>, GraphError> {
        let mut args = Vec::with_capacity(inputs.len());
        for &v in inputs {
            let value = self
                .values
                .get(v.index())
                .ok_or(GraphError::DanglingInput {
                    node: node_name.to_string(),
                    input: v.0,
                })?;
            args.push(InferInput {
                ty: &value.ty,
                value: self.const_data(v),
            });
        }
        infer(op, &args).map_err(|reason| GraphError::Infer {
            node: node_name.to_string(),
            op: crate::op_name(op).to_string(),
            reason,
        })
    }

    /// Recomputes every node's output types from its inputs, in node order (after graph input
    /// types changed, e.g. when symbolic dimensions are bound). Fails on the first node whose
    /// inputs no longer type-check, leaving earlier nodes updated.
    pub fn reinfer(&mut self) -> Result<(), GraphError> {
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            let types = self.infer_node(&node.op, &node.inputs, &node.name)?;
            let outputs = self.nodes[i].outputs.clone();
            for (v, ty) in outputs.into_iter().zip(types) {
                self.values[v.index()].ty = ty;
            }
        }
        Ok(())
    }

    /// Marks `value` as a graph output named `name`.
    pub fn add_output(&mut self, name: impl Into<String>, value: ValueId) {
        self.outputs.push(GraphOutput {
            name: name.into(),
            value,
        });
    }

    /// Number of uses of every value (node inputs and graph outputs), indexed by value.
    pub fn use_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.values.len()];
        for n in &self.nodes {
            for &i in &n.inputs {
                counts[i.index()] += 1;
            }
        }
        for o in &self.outputs {
            counts[o.value.index()] += 1;
        }
        counts
    }

    /// A description of a node for error messages: `node 17 "conv1" (conv)`.
    pub fn describe_node(&self, id: NodeId) -> String {
        let n = self.node(id);
        if n.name.is_empty() {
            format!("node {} ({})", id.0, crate::op_name(&n.op))
        } else {
            format!("node {} \"{}\" ({})", id.0, n.name, crate::op_name(&n.op))
        }
    }
}
