//! IR [`Graph`] to ONNX `ModelProto`: the inverse of the importer, through the same prost
//! messages ([`super::proto`]).
//!
//! What is written:
//! - one `NodeProto` per IR node, in node order (a topological order), named after the IR node,
//!   with the attributes the importer reads back into the same op ([`ops`] is the inverse of every
//!   mapping in `onnx/ops.rs`). IR-only forms are written as the standard ops they stand for:
//!   a fused conv/gemm epilogue as the op followed by `Add` (residual) and the activation, a
//!   conv's channel scale as a `Mul` before it, a `map` as one node per instruction, `attention`
//!   as `MatMul`, `Mul`, `Softmax`, `MatMul`, and `silu` as `Sigmoid` and `Mul`;
//! - every constant a node or graph output uses as an initializer (`raw_data`, little endian), in
//!   value order; constants nothing uses are left out;
//! - the graph inputs and outputs with their types, symbolic dimensions as `dim_param` and
//!   unknown ones as dimensions with neither value nor name.
//!
//! Names: graph inputs, graph outputs, constants and node outputs keep their IR names in that
//! order of precedence; a name already taken gets a `_1`, `_2`, ... suffix and a value without a
//! name gets one made from its node. A graph output whose value is a graph input or constant of
//! another name, or that another output already returns, is written through an `Identity`.
//!
//! The default domain's opset is the lowest that expresses every node in the form written, and
//! at least [`MIN_OPSET`]; see [`ops::required_opset`] for which op needs which version.
//! Kestrel's integer ops on quantized types have no standard ONNX form yet: a node that computes
//! on quantized operands (anything but quantize/dequantize and the data-movement ops that
//! inference passes quantization parameters through) is refused with
//! [`ExportError::Unsupported`], as is any op the exporter cannot express.

mod ops;

use super::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::tensor::{dtype_to_onnx, tensor_to_proto};
use kestrel_ir::{Dim, Graph, NodeId, Op, PoolKind, Tensor, TensorType, ValueDef, ValueId};
use prost::Message;
use std::collections::HashSet;
use std::path::Path;

pub use ops::required_opset;

/// The lowest default-domain opset the exporter writes (the first with the IR's forms of
/// Softmax, Squeeze/Unsqueeze, Split, ReduceSum and Clip, and QDQ's per-axis `axis`).
pub const MIN_OPSET: i64 = 13;
/// The highest default-domain opset the exporter writes.
pub const MAX_OPSET: i64 = 21;

/// Protobuf cannot encode or decode a message of 2 GiB or more.
const PROTOBUF_LIMIT: u64 = i32::MAX as u64;

/// What goes into the model beside the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// The default domain's opset version; `None`: the lowest that expresses every node (at
    /// least [`MIN_OPSET`]). A version below what some node needs is an error naming the node.
    pub opset: Option<i64>,
    pub producer_name: String,
    pub producer_version: String,
    pub model_version: i64,
    pub doc_string: String,
    /// `metadata_props`, in order.
    pub metadata: Vec<(String, String)>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            opset: None,
            producer_name: "kestrel".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            model_version: 0,
            doc_string: String::new(),
            metadata: Vec::new(),
        }
    }
}

impl ExportOptions {
    /// The defaults, keeping the imported model's version, doc string and metadata.
    pub fn keeping_metadata(model: &super::Model) -> ExportOptions {
        ExportOptions {
            model_version: model.model_version,
            doc_string: model.doc_string.clone(),
            metadata: model.metadata.clone(),
            ..ExportOptions::default()
        }
    }
}

/// Why a graph could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A node the exporter cannot express in standard ONNX; `node` describes it
    /// (`node 17 "conv1" (conv)`).
    #[error("{node}: {reason}")]
    Unsupported { node: String, reason: String },
    #[error(
        "constant \"{name}\" has no data (the graph was read from a dump with elided weights)"
    )]
    MissingData { name: String },
    #[error("opset {requested} was asked for, but {node} needs opset {needed} ({why})")]
    OpsetTooLow {
        requested: i64,
        needed: i64,
        node: String,
        why: &'static str,
    },
    #[error("opset {0} cannot be written: the exporter writes opsets {MIN_OPSET} to {MAX_OPSET}")]
    OpsetOutOfRange(i64),
    #[error(
        "{what} is {bytes} bytes, over protobuf's 2 GiB limit (writing weights as external data is \
         not supported)"
    )]
    TooLarge { what: String, bytes: u64 },
    /// The graph breaks an IR invariant (a value id out of range, ...).
    #[error("invalid graph: {0}")]
    Invalid(String),
    #[error("{path}: cannot write: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Exports `g` as a serialized ONNX `ModelProto`.
pub fn export_model(g: &Graph, opts: &ExportOptions) -> Result<Vec<u8>, ExportError> {
    let m = export_proto(g, opts)?;
    let bytes = m.encoded_len() as u64;
    if bytes > PROTOBUF_LIMIT {
        return Err(ExportError::TooLarge {
            what: "the model".into(),
            bytes,
        });
    }
    Ok(m.encode_to_vec())
}

/// Exports `g` into `path`, atomically: the model is written to a temporary file beside `path`
/// and renamed over it, so `path` is either left as it was or holds the whole model.
pub fn write_model(g: &Graph, opts: &ExportOptions, path: &Path) -> Result<(), ExportError> {
    let bytes = export_model(g, opts)?;
    crate::tensor_io::write_atomically(path, |f| std::io::Write::write_all(f, &bytes)).map_err(
        |source| ExportError::Io {
            path: path.display().to_string(),
            source,
        },
    )
}

/// The IR version a model of default-domain opset `opset` declares: the one of the ONNX
/// release that introduced the opset (onnx's `helper.VERSION_TABLE`).
pub fn ir_version_for(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// The opset [`export_model`] writes for `g` with `opts`: the requested one (checked), or the
/// lowest that expresses every node.
pub fn choose_opset(g: &Graph, opts: &ExportOptions) -> Result<i64, ExportError> {
    if let Some(v) = opts.opset {
        if !(MIN_OPSET..=MAX_OPSET).contains(&v) {
            return Err(ExportError::OpsetOutOfRange(v));
        }
    }
    let mut needed = (MIN_OPSET, None::<(NodeId, &'static str)>);
    for (i, n) in g.nodes.iter().enumerate() {
        let (v, why) = required_opset(g, n);
        if v > needed.0 {
            needed = (v, Some((NodeId(i as u32), why)));
        }
    }
    match (opts.opset, needed) {
        (Some(requested), (v, Some((node, why)))) if requested < v => {
            Err(ExportError::OpsetTooLow {
                requested,
                needed: v,
                node: g.describe_node(node),
                why,
            })
        }
        (Some(requested), _) => Ok(requested),
        (None, (v, _)) => Ok(v),
    }
}

/// Exports `g` into a `ModelProto` (see the module documentation).
pub fn export_proto(g: &Graph, opts: &ExportOptions) -> Result<ModelProto, ExportError> {
    check_ids(g)?;
    let opset = choose_opset(g, opts)?;
    let graph = export_graph(g, opset)?;
    Ok(ModelProto {
        ir_version: ir_version_for(opset),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: opts.producer_name.clone(),
        producer_version: opts.producer_version.clone(),
        domain: String::new(),
        model_version: opts.model_version,
        doc_string: opts.doc_string.clone(),
        graph: Some(graph),
        metadata_props: opts
            .metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        functions: Vec::new(),
    })
}

/// Every value id a node, input or output names is in range.
fn check_ids(g: &Graph) -> Result<(), ExportError> {
    let nv = g.values.len();
    let bad = |v: &ValueId| v.index() >= nv;
    for (i, n) in g.nodes.iter().enumerate() {
        if n.inputs.iter().chain(&n.outputs).any(bad) {
            return Err(ExportError::Invalid(format!(
                "{} names a value that is not in the graph",
                g.describe_node(NodeId(i as u32))
            )));
        }
    }
    if g.inputs.iter().any(bad) || g.outputs.iter().any(|o| bad(&o.value)) {
        return Err(ExportError::Invalid(
            "a graph input or output is not a value of the graph".into(),
        ));
    }
    Ok(())
}

/// How a graph output is written.
enum OutputPlan {
    /// The value itself carries the output's name.
    Direct,
    /// `Identity(value) -> name`.
    Identity(String),
}

/// The graph being written: the ONNX name of every IR value and the nodes and initializers
/// produced so far.
pub(super) struct Builder<'g> {
    pub g: &'g Graph,
    pub opset: i64,
    /// The ONNX name of each IR value (empty for constants that are not written).
    names: Vec<String>,
    taken: HashSet<String>,
    /// Node names used so far (ONNX requires them unique; the IR does not).
    node_names: HashSet<String>,
    nodes: Vec<NodeProto>,
    /// Constants the exporter makes (Clip bounds, map constants, scales), written after the
    /// graph's own.
    made: Vec<TensorProto>,
}

impl<'g> Builder<'g> {
    /// `base`, or `base_1`, `base_2`, ... — the first name not yet taken — now taken.
    fn unique(&mut self, base: &str) -> String {
        let mut candidate = base.to_string();
        let mut k = 0usize;
        while self.taken.contains(&candidate) {
            k += 1;
            candidate = format!("{base}_{k}");
        }
        self.taken.insert(candidate.clone());
        candidate
    }

    /// The ONNX name of IR value `v`.
    pub fn name(&self, v: ValueId) -> String {
        self.names[v.index()].clone()
    }

    /// A fresh value name derived from `base`.
    pub fn fresh(&mut self, base: &str) -> String {
        self.unique(base)
    }

    /// A new initializer holding `t`, named after `base`; returns its name.
    pub fn konst(&mut self, base: &str, t: &Tensor) -> String {
        let name = self.unique(base);
        self.made.push(tensor_to_proto(&name, t));
        name
    }

    /// Appends `node`; a name another node already has gets a `_1`, `_2`, ... suffix.
    pub fn push(&mut self, mut node: NodeProto) {
        if !node.name.is_empty() && !self.node_names.insert(node.name.clone()) {
            let mut k = 0usize;
            let base = std::mem::take(&mut node.name);
            node.name = loop {
                k += 1;
                let candidate = format!("{base}_{k}");
                if self.node_names.insert(candidate.clone()) {
                    break candidate;
                }
            };
        }
        self.nodes.push(node);
    }
}

/// A value's ONNX type.
fn type_proto(ty: &TensorType) -> TypeProto {
    let dim = ty
        .shape
        .iter()
        .map(|d| Dimension {
            value: match d {
                Dim::Known(n) => Some(dimension::Value::DimValue(*n as i64)),
                Dim::Sym(s) => Some(dimension::Value::DimParam(s.to_string())),
                Dim::Unknown => None,
            },
            denotation: String::new(),
        })
        .collect();
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: dtype_to_onnx(ty.dtype) as i32,
            shape: Some(TensorShapeProto { dim }),
        })),
        denotation: String::new(),
    }
}

fn value_info(name: &str, ty: &TensorType) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(type_proto(ty)),
        doc_string: String::new(),
    }
}

/// Whether inference passes quantization parameters through `op` unchanged (it only moves or
/// selects elements, or reads the shape): such an op means the same on quantized integers as on
/// plain ones, so ONNX's op on the integers expresses it.
fn moves_quantized_data(op: &Op) -> bool {
    matches!(
        op,
        Op::Identity
            | Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Transpose { .. }
            | Op::Squeeze
            | Op::Unsqueeze
            | Op::Slice
            | Op::Gather { .. }
            | Op::Expand
            | Op::Tile
            | Op::Split { .. }
            | Op::Concat { .. }
            | Op::Pad { .. }
            | Op::Pool(kestrel_ir::PoolAttrs {
                kind: PoolKind::Max,
                ..
            })
            | Op::GlobalPool(PoolKind::Max)
            | Op::Shape { .. }
            | Op::Size
    )
}

/// Refuses nodes that compute on quantized operands (Kestrel's integer ops): their meaning
/// involves the quantization parameters in the types, which no standard ONNX op reads.
fn check_not_integer_op(g: &Graph, id: NodeId) -> Result<(), ExportError> {
    let n = g.node(id);
    if matches!(
        n.op,
        Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. }
    ) || moves_quantized_data(&n.op)
    {
        return Ok(());
    }
    if let Some(&v) = n
        .inputs
        .iter()
        .chain(&n.outputs)
        .find(|&&v| g.ty(v).quant.is_some())
    {
        return Err(ExportError::Unsupported {
            node: g.describe_node(id),
            reason: format!(
                "computes on quantized integers ({}); Kestrel's integer ops have no standard ONNX \
                 form (export the QDQ graph before quantized ops are folded)",
                kestrel_ir::text::fmt_type(g.ty(v))
            ),
        });
    }
    Ok(())
}

fn export_graph(g: &Graph, opset: i64) -> Result<GraphProto, ExportError> {
    let nv = g.values.len();
    let mut used = vec![false; nv];
    for n in &g.nodes {
        for &v in &n.inputs {
            used[v.index()] = true;
        }
    }
    for o in &g.outputs {
        used[o.value.index()] = true;
    }
    let mut b = Builder {
        g,
        opset,
        names: vec![String::new(); nv],
        taken: HashSet::new(),
        node_names: HashSet::new(),
        nodes: Vec::new(),
        made: Vec::new(),
    };
    let value_name = |v: ValueId| g.value(v).name.clone().filter(|s| !s.is_empty());

    // Graph inputs, then outputs, then constants, then node outputs claim their names.
    for (pos, &v) in g.inputs.iter().enumerate() {
        let base = value_name(v).unwrap_or_else(|| format!("input{pos}"));
        b.names[v.index()] = b.unique(&base);
    }
    let mut plans = Vec::with_capacity(g.outputs.len());
    for (k, o) in g.outputs.iter().enumerate() {
        let want = if o.name.is_empty() {
            format!("output{k}")
        } else {
            o.name.clone()
        };
        let v = o.value;
        let claimed = !b.names[v.index()].is_empty();
        let plan = match &g.value(v).def {
            _ if claimed && b.names[v.index()] == want => OutputPlan::Direct,
            ValueDef::Node { .. } | ValueDef::Const(_) if !claimed && !b.taken.contains(&want) => {
                b.names[v.index()] = b.unique(&want);
                OutputPlan::Direct
            }
            _ => OutputPlan::Identity(b.unique(&want)),
        };
        plans.push(plan);
    }
    let mut initializers = Vec::new();
    for (vi, val) in g.values.iter().enumerate() {
        let ValueDef::Const(c) = &val.def else {
            continue;
        };
        if !used[vi] {
            continue;
        }
        let data = c.data.as_ref().ok_or_else(|| ExportError::MissingData {
            name: c.name.clone(),
        })?;
        if b.names[vi].is_empty() {
            let base = if c.name.is_empty() {
                format!("const{vi}")
            } else {
                c.name.clone()
            };
            b.names[vi] = b.unique(&base);
        }
        let bytes = data.bytes().len() as u64;
        if bytes > PROTOBUF_LIMIT {
            return Err(ExportError::TooLarge {
                what: format!("constant \"{}\"", c.name),
                bytes,
            });
        }
        initializers.push(tensor_to_proto(&b.names[vi], data));
    }
    for (ni, n) in g.nodes.iter().enumerate() {
        for (k, &v) in n.outputs.iter().enumerate() {
            if !b.names[v.index()].is_empty() {
                continue;
            }
            let base = value_name(v).unwrap_or_else(|| {
                if n.name.is_empty() {
                    format!("{}_{ni}_output_{k}", n.op.name())
                } else {
                    format!("{}_output_{k}", n.name)
                }
            });
            b.names[v.index()] = b.unique(&base);
        }
    }

    for ni in 0..g.nodes.len() {
        let id = NodeId(ni as u32);
        check_not_integer_op(g, id)?;
        ops::export_node(&mut b, id)?;
    }

    let mut outputs = Vec::with_capacity(g.outputs.len());
    for (o, plan) in g.outputs.iter().zip(plans) {
        let name = match plan {
            OutputPlan::Direct => b.name(o.value),
            OutputPlan::Identity(name) => {
                let input = b.name(o.value);
                b.push(NodeProto {
                    input: vec![input],
                    output: vec![name.clone()],
                    name: format!("{name}/Identity"),
                    op_type: "Identity".into(),
                    ..Default::default()
                });
                name
            }
        };
        outputs.push(value_info(&name, g.ty(o.value)));
    }
    let inputs = g
        .inputs
        .iter()
        .map(|&v| value_info(&b.names[v.index()], g.ty(v)))
        .collect();
    initializers.append(&mut b.made);
    Ok(GraphProto {
        node: b.nodes,
        name: g.name.clone(),
        initializer: initializers,
        sparse_initializer: Vec::new(),
        doc_string: String::new(),
        input: inputs,
        output: outputs,
        value_info: Vec::new(),
    })
}

/// Attribute constructors.
pub(super) mod attr {
    use super::super::proto::{AttributeProto, AttributeType};
    use super::tensor_to_proto;
    use kestrel_ir::Tensor;

    fn base(name: &str, ty: AttributeType) -> AttributeProto {
        AttributeProto {
            name: name.to_string(),
            r#type: ty as i32,
            ..Default::default()
        }
    }

    pub fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            i: Some(v),
            ..base(name, AttributeType::Int)
        }
    }

    pub fn float(name: &str, v: f32) -> AttributeProto {
        AttributeProto {
            f: Some(v),
            ..base(name, AttributeType::Float)
        }
    }

    pub fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            s: Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
            ..base(name, AttributeType::String)
        }
    }

    pub fn ints(name: &str, v: impl IntoIterator<Item = i64>) -> AttributeProto {
        AttributeProto {
            ints: v.into_iter().collect(),
            ..base(name, AttributeType::Ints)
        }
    }

    pub fn tensor(name: &str, t: &Tensor) -> AttributeProto {
        AttributeProto {
            t: Some(tensor_to_proto("", t)),
            ..base(name, AttributeType::Tensor)
        }
    }
}
