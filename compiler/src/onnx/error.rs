//! Import errors: what went wrong, and where in which model.

use kestrel_ir::GraphError;

/// An import failure, with the model file (or a label standing for it) and the node or tensor it
/// concerns.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not a valid ONNX protobuf: {source}")]
    Decode {
        file: String,
        #[source]
        source: prost::DecodeError,
    },
    /// A problem with the model or graph as a whole (opsets, inputs, outputs, ordering).
    #[error("{file}: {reason}")]
    Model { file: String, reason: Box<Reason> },
    /// A problem with an initializer or tensor file.
    #[error("{file}: tensor \"{tensor}\": {reason}")]
    Tensor {
        file: String,
        tensor: String,
        reason: Box<Reason>,
    },
    /// A problem with one node: `index` is its position in the ONNX graph's node list.
    #[error("{file}: node {index} \"{name}\" ({op_type}): {reason}")]
    Node {
        file: String,
        index: usize,
        name: String,
        op_type: String,
        reason: Box<Reason>,
    },
}

impl ImportError {
    /// The reason, when the error has a structured one.
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            ImportError::Model { reason, .. }
            | ImportError::Tensor { reason, .. }
            | ImportError::Node { reason, .. } => Some(reason.as_ref()),
            _ => None,
        }
    }
}

/// Why a model, tensor or node was rejected.
#[derive(Debug, thiserror::Error)]
pub enum Reason {
    #[error("attribute \"{name}\" must be {expected}, got {got}")]
    AttrType {
        name: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("missing required attribute \"{0}\"")]
    MissingAttr(String),
    #[error("attribute \"{name}\": {reason}")]
    AttrValue { name: String, reason: String },
    #[error("missing required input {0}")]
    MissingInput(usize),
    #[error("input {index} must be a constant: {reason}")]
    NonConstInput { index: usize, reason: &'static str },
    #[error("output {index} (\"{name}\") is used: {reason}")]
    UnsupportedOutput {
        index: usize,
        name: String,
        reason: &'static str,
    },
    #[error("operator {op_type} of domain \"{domain}\" (opset {opset}) is not supported")]
    UnsupportedOp {
        op_type: String,
        domain: String,
        opset: i64,
    },
    #[error("data type {0} is not supported")]
    UnsupportedDType(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
    #[error("external data: {0}")]
    External(String),
    #[error("external data file \"{path}\": {source}")]
    ExternalIo {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The IR rejected the node built for this ONNX node (`op` is the IR op's name).
    #[error("{op}: {reason}")]
    Infer { op: String, reason: String },
    #[error(transparent)]
    Graph(GraphError),
}

impl From<GraphError> for Reason {
    fn from(e: GraphError) -> Self {
        match e {
            // The ONNX node is already named by the enclosing error.
            GraphError::Infer { op, reason, .. } => Reason::Infer { op, reason },
            e => Reason::Graph(e),
        }
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> Reason {
    Reason::Invalid(msg.into())
}

pub(crate) fn unsupported(msg: impl Into<String>) -> Reason {
    Reason::Unsupported(msg.into())
}
