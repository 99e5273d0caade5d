//! Which nodes the quantize pass rewrites, and which tensors need calibrated ranges.

use super::QuantizeError;
use kestrel_ir::{BinaryOp, DType, Graph, NodeId, Op, UnaryOp, ValueDef, ValueId};
use std::collections::HashSet;

/// The op of a quantizable node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerOp {
    Conv,
    Gemm,
    MatMul,
    /// An element-wise sum of two activations (a residual add), quantized on both inputs and
    /// its output so the integer folding can make it a quantized add.
    Add,
    /// A concatenation of activations, quantized on every input and its output.
    Concat,
}

impl LayerOp {
    pub fn name(self) -> &'static str {
        match self {
            LayerOp::Conv => "conv",
            LayerOp::Gemm => "gemm",
            LayerOp::MatMul => "matmul",
            LayerOp::Add => "add",
            LayerOp::Concat => "concat",
        }
    }
}

/// A node the pass can quantize: a Conv (no fused epilogue), a Gemm with `alpha = 1` (no fused
/// epilogue) or a MatMul, whose first input is a float activation (not a constant) and whose
/// second input is a constant f32 weight (Conv: rank >= 3; Gemm and MatMul: 2-D); or an Add or
/// Concat whose inputs are all float activations, one of them quantized by an earlier layer
/// (directly or through ops that carry quantization, see `carries_quantization`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub node: NodeId,
    /// The node's name, or `<op>_<node index>` when it has none; unique within the plan (a
    /// repeated name gets `#2`, `#3`, ...). `--exclude` takes these.
    pub name: String,
    pub op: LayerOp,
    /// The activation inputs quantized: input 0 of Conv/Gemm/MatMul, every input of Add/Concat.
    pub inputs: Vec<ValueId>,
    /// The constant weight (input 1); `None` for Add and Concat.
    pub weight: Option<ValueId>,
    /// The weight's output-channel axis: Conv 0; Gemm 1, or 0 with `trans_b`; MatMul 1.
    pub weight_axis: usize,
    /// The constant float bias that becomes i32: Conv's input 2 (shape `[M]`), Gemm's C when it
    /// holds one value per output column (`[N]` or `[1, N]`). A Gemm C of another shape, or a
    /// computed one, stays float.
    pub bias: Option<ValueId>,
    /// The tensor whose quantization is the layer's output quantization: the node's output, or,
    /// when that output's only use is a Relu or Clip (and it is not a graph output), that
    /// activation's output — onnxruntime's QDQ quantizer quantizes there too (it removes the
    /// activation; Kestrel keeps it for the integer folding to turn into requantization bounds).
    pub output: ValueId,
}

/// The quantizable nodes of a graph, in node order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub layers: Vec<Layer>,
}

impl Plan {
    /// Every activation tensor the layers not in `exclude` quantize (their inputs and outputs,
    /// in order of first appearance): the tensors calibration must measure. With no exclusions,
    /// enough for [`super::apply`] with any exclusions.
    pub fn calibration_tensors(&self, exclude: &[String]) -> Vec<ValueId> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for l in self.selected(exclude) {
            for &v in l.inputs.iter().chain([&l.output]) {
                if seen.insert(v) {
                    out.push(v);
                }
            }
        }
        out
    }

    /// The layers' names, comma-separated (for messages).
    pub fn names(&self) -> String {
        self.layers
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks that every name in `exclude` is a layer's; the error lists the valid names.
    pub fn check_exclude(&self, exclude: &[String]) -> Result<(), QuantizeError> {
        for name in exclude {
            if !self.layers.iter().any(|l| &l.name == name) {
                return Err(QuantizeError::UnknownLayer {
                    name: name.clone(),
                    valid: if self.layers.is_empty() {
                        "(none)".into()
                    } else {
                        self.names()
                    },
                });
            }
        }
        Ok(())
    }

    /// The layers not named in `exclude`.
    pub fn selected<'p>(&'p self, exclude: &'p [String]) -> impl Iterator<Item = &'p Layer> + 'p {
        self.layers.iter().filter(|l| !exclude.contains(&l.name))
    }
}

fn is_activation(g: &Graph, v: ValueId) -> bool {
    let value = g.value(v);
    value.ty.dtype == DType::F32 && !matches!(value.def, ValueDef::Const(_))
}

fn const_f32(g: &Graph, v: ValueId) -> bool {
    g.const_data(v).is_some_and(|t| t.dtype() == DType::F32)
}

/// The tensor whose quantization is the output quantization of a node with output `y`: `y`, or
/// the output of a Relu or Clip that is `y`'s only use (when `y` is not a graph output).
fn output_tensor(g: &Graph, users: &[smallvec::SmallVec<[NodeId; 2]>], y: ValueId) -> ValueId {
    match users[y.index()].as_slice() {
        [only] if !g.is_output(y) => {
            let user = g.node(*only);
            match user.op {
                Op::Unary(UnaryOp::Relu) | Op::Unary(UnaryOp::Clip { .. }) => user.outputs[0],
                _ => y,
            }
        }
        _ => y,
    }
}

/// Whether `v` is quantized by a layer found so far, directly or through ops that carry
/// quantization.
fn reaches_quantized(g: &Graph, quantized: &HashSet<ValueId>, mut v: ValueId) -> bool {
    loop {
        if quantized.contains(&v) {
            return true;
        }
        match super::rewrite::carried_from(g, v) {
            Some(up) => v = up,
            None => return false,
        }
    }
}

/// Finds the quantizable nodes of `g` (see [`Layer`]).
pub fn plan(g: &Graph) -> Plan {
    let users = g.users();
    let mut used_names = HashSet::new();
    let mut quantized: HashSet<ValueId> = HashSet::new();
    let mut layers = Vec::new();
    for (index, node) in g.nodes.iter().enumerate() {
        let id = NodeId(index as u32);
        let ins = &node.inputs;
        if node.outputs.len() != 1 {
            continue;
        }
        let (op, weight_axis, bias) = match &node.op {
            Op::Conv(a) if a.epilogue.is_none() && ins.len() >= 2 => {
                if g.ty(ins[1]).rank() < 3 {
                    continue;
                }
                let m = g.ty(ins[1]).dims().map(|d| d[0]);
                let bias = ins.get(2).copied().filter(|&b| {
                    const_f32(g, b) && m.is_some_and(|m| g.ty(b).dims() == Some(vec![m]))
                });
                (LayerOp::Conv, 0, bias)
            }
            Op::Gemm(a)
                if a.epilogue.is_none() && a.alpha.0 == 1.0 && !a.trans_a && ins.len() >= 2 =>
            {
                if g.ty(ins[1]).rank() != 2 {
                    continue;
                }
                let n = g
                    .ty(ins[1])
                    .dims()
                    .map(|d| if a.trans_b { d[0] } else { d[1] });
                let bias = ins.get(2).copied().filter(|&c| {
                    const_f32(g, c)
                        && match (g.ty(c).dims(), n) {
                            (Some(d), Some(n)) => d == [n] || d == [1, n],
                            _ => false,
                        }
                });
                (LayerOp::Gemm, if a.trans_b { 0 } else { 1 }, bias)
            }
            Op::MatMul if ins.len() == 2 && g.ty(ins[1]).rank() == 2 => (LayerOp::MatMul, 1, None),
            Op::Binary(BinaryOp::Add) | Op::Concat { .. }
                if ins.iter().all(|&v| is_activation(g, v))
                    && ins.iter().any(|&v| reaches_quantized(g, &quantized, v)) =>
            {
                let op = if matches!(node.op, Op::Concat { .. }) {
                    LayerOp::Concat
                } else {
                    LayerOp::Add
                };
                (op, 0, None)
            }
            _ => continue,
        };
        let (inputs, weight) = match op {
            LayerOp::Add | LayerOp::Concat => (ins.to_vec(), None),
            _ => {
                if !is_activation(g, ins[0]) || !const_f32(g, ins[1]) {
                    continue;
                }
                (vec![ins[0]], Some(ins[1]))
            }
        };
        let output = output_tensor(g, &users, node.outputs[0]);
        quantized.extend(inputs.iter().copied());
        quantized.insert(output);
        let base = if node.name.is_empty() {
            format!("{}_{index}", op.name())
        } else {
            node.name.clone()
        };
        let mut name = base.clone();
        let mut k = 1;
        while !used_names.insert(name.clone()) {
            k += 1;
            name = format!("{base}#{k}");
        }
        layers.push(Layer {
            node: id,
            name,
            op,
            inputs,
            weight,
            weight_axis,
            bias,
            output,
        });
    }
    Plan { layers }
}
