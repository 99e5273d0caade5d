//! ONNX import: protobuf decoding ([`proto`]), tensors ([`tensor_from_proto`]) and graphs
//! ([`load_model`], [`import_bytes`]); and export, its inverse ([`export_model`], [`write_model`],
//! see [`export`]).
//!
//! The default domain (`""` / `"ai.onnx"`) is supported, and of `com.microsoft` the quantized
//! ops onnxruntime's quantizer writes (QGemm, QLinearAdd, QLinearMul, QLinearGlobalAveragePool,
//! QLinearConcat, QLinearConv). Every ONNX node becomes one or more IR nodes named after it;
//! version-specific forms are normalised into the IR's single form of each op (see
//! `kestrel_ir::op`), and quantized ops into dequantize → float op → quantize (`ops/quant.rs`).
//! Errors name the model file and the node or tensor concerned.
//!
//! Because type inference runs as each node is added and needs reshape targets and similar
//! shape inputs to be constant, the importer folds as it goes: `Shape`/`Size` of fully known
//! shapes, and nodes whose inputs are all constants and whose outputs are small (at most 4096
//! elements; never (de)quantization), evaluated by the reference interpreter. Everything else is
//! left to the passes.

mod attr;
mod error;
pub mod export;
mod external;
mod import;
mod ops;
pub mod proto;
mod tensor;

pub use attr::{attr_float, attr_floats, attr_int, attr_ints, attr_string, attr_tensor};
pub use error::{ImportError, Reason};
pub use export::{export_model, write_model, ExportError, ExportOptions};
pub use external::resolve_location;
pub use tensor::{dtype_from_onnx, dtype_to_onnx, tensor_to_proto};

use bytes::Bytes;
use kestrel_ir::{Graph, Tensor};
use prost::Message;
use std::fs::File;
use std::path::Path;

/// One entry of a model's `opset_import`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsetImport {
    pub domain: String,
    pub version: i64,
}

/// An imported model: the IR graph and the model's metadata.
#[derive(Clone, Debug)]
pub struct Model {
    pub graph: Graph,
    pub ir_version: i64,
    pub opset_imports: Vec<OpsetImport>,
    pub producer_name: String,
    pub producer_version: String,
    pub model_version: i64,
    pub doc_string: String,
    /// `metadata_props`, in file order.
    pub metadata: Vec<(String, String)>,
}

impl Model {
    /// The opset version imported for `domain` (`""` and `"ai.onnx"` both name the default domain).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let default = |d: &str| d.is_empty() || d == "ai.onnx";
        self.opset_imports
            .iter()
            .find(|o| o.domain == domain || (default(domain) && default(&o.domain)))
            .map(|o| o.version)
    }
}

/// How errors name a model file: the path as the user gave it.
fn file_label(path: &Path) -> String {
    path.display().to_string()
}

/// Memory-maps a whole file (an empty file gives empty bytes).
fn map_path(path: &Path, label: &str) -> Result<Bytes, ImportError> {
    let io = |source| ImportError::Io {
        file: label.to_string(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: read-only mapping; see the contract of `load_model`.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok(Bytes::from_owner(map))
}

/// Loads and imports an ONNX model file.
///
/// The file is memory-mapped and decoded in place: initializers stored as `raw_data` (and
/// external data files beside the model, also mapped) become tensors that point straight into
/// the mappings, so weights are never copied. The mappings live as long as any tensor of the
/// returned graph; the files must not be modified or truncated meanwhile. Tensors stored in
/// typed fields (`float_data`, ...) are converted into fresh buffers.
///
/// Errors name the file (its file name) and, where it applies, the node or tensor concerned.
pub fn load_model(path: &Path) -> Result<Model, ImportError> {
    let label = file_label(path);
    let bytes = map_path(path, &label)?;
    let dir = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    import_bytes(bytes, dir, &label)
}

/// Imports a model from its serialized bytes. Tensors with `raw_data` share `bytes` (zero-copy).
/// `model_dir` is the folder external data locations are relative to (external data is
/// rejected without it); `label` names the model in errors.
pub fn import_bytes(
    bytes: Bytes,
    model_dir: Option<&Path>,
    label: &str,
) -> Result<Model, ImportError> {
    let m = proto::ModelProto::decode(bytes).map_err(|source| ImportError::Decode {
        file: label.to_string(),
        source,
    })?;
    import::import_model(&m, model_dir, label)
}

/// Converts a tensor proto (raw, typed or external data; external locations are relative to
/// `model_dir`). Raw and external data are shared, not copied.
pub fn tensor_from_proto(
    t: &proto::TensorProto,
    model_dir: Option<&Path>,
) -> Result<Tensor, ImportError> {
    let mut files = external::ExternalFiles::new();
    tensor::convert(t, model_dir, &mut files).map_err(|reason| ImportError::Tensor {
        file: "<tensor>".to_string(),
        tensor: t.name.clone(),
        reason: Box::new(reason),
    })
}

/// Decodes a serialized `TensorProto` (an ONNX `.pb` test-data file) into a tensor; its data is
/// shared with `bytes` when stored as `raw_data`.
pub fn decode_tensor_file(bytes: Bytes) -> Result<Tensor, ImportError> {
    let t = proto::TensorProto::decode(bytes).map_err(|source| ImportError::Decode {
        file: "<tensor>".to_string(),
        source,
    })?;
    tensor_from_proto(&t, None)
}

/// Reads and decodes a `.pb` tensor file (memory-mapped; see [`decode_tensor_file`]).
/// External data is resolved relative to the file's folder.
pub fn load_tensor_file(path: &Path) -> Result<Tensor, ImportError> {
    let label = file_label(path);
    let bytes = map_path(path, &label)?;
    let t = proto::TensorProto::decode(bytes).map_err(|source| ImportError::Decode {
        file: label.clone(),
        source,
    })?;
    let mut files = external::ExternalFiles::new();
    tensor::convert(&t, path.parent(), &mut files).map_err(|reason| ImportError::Tensor {
        file: label,
        tensor: t.name.clone(),
        reason: Box::new(reason),
    })
}
