//! `TensorProto` to IR [`Tensor`].
//!
//! Sizes are computed with checked arithmetic from the dims and compared with the bytes or
//! elements actually present before anything is allocated, so a file cannot make the importer
//! allocate more than it contains.

use super::error::{invalid, Reason};
use super::external::ExternalFiles;
use super::proto::{DataLocation, DataType, TensorProto};
use bytes::Bytes;
use kestrel_ir::tensor::byte_len;
use kestrel_ir::{DType, Tensor};
use std::path::Path;

/// The IR dtype of an ONNX `TensorProto.DataType` code.
pub fn dtype_from_onnx(code: i32) -> Result<DType, Reason> {
    let dt = DataType::try_from(code)
        .map_err(|_| Reason::UnsupportedDType(format!("code {code} (unknown)")))?;
    Ok(match dt {
        DataType::Float => DType::F32,
        DataType::Uint8 => DType::U8,
        DataType::Int8 => DType::I8,
        DataType::Uint16 => DType::U16,
        DataType::Int16 => DType::I16,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::Bool => DType::Bool,
        DataType::Float16 => DType::F16,
        DataType::Double => DType::F64,
        DataType::Uint32 => DType::U32,
        DataType::Uint64 => DType::U64,
        DataType::Bfloat16 => DType::BF16,
        other => return Err(Reason::UnsupportedDType(other.onnx_name().to_string())),
    })
}

/// The ONNX `TensorProto.DataType` code of an IR dtype.
pub fn dtype_to_onnx(dtype: DType) -> DataType {
    match dtype {
        DType::F32 => DataType::Float,
        DType::F64 => DataType::Double,
        DType::F16 => DataType::Float16,
        DType::BF16 => DataType::Bfloat16,
        DType::I8 => DataType::Int8,
        DType::U8 => DataType::Uint8,
        DType::I16 => DataType::Int16,
        DType::U16 => DataType::Uint16,
        DType::I32 => DataType::Int32,
        DType::U32 => DataType::Uint32,
        DType::I64 => DataType::Int64,
        DType::U64 => DataType::Uint64,
        DType::Bool => DataType::Bool,
    }
}

pub use kestrel_ir::MAX_RANK;

/// The dims of a tensor proto as extents, rejecting negative ones and ranks above [`MAX_RANK`].
pub fn dims_of(t: &TensorProto) -> Result<Vec<usize>, Reason> {
    if t.dims.len() > MAX_RANK {
        return Err(invalid(format!(
            "rank {} is above the limit of {MAX_RANK}",
            t.dims.len()
        )));
    }
    t.dims
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| invalid(format!("negative dimension {d} in {:?}", t.dims)))
        })
        .collect()
}

/// Converts a tensor proto. External data is mapped through `files`, relative to `model_dir`.
pub(crate) fn convert(
    t: &TensorProto,
    model_dir: Option<&Path>,
    files: &mut ExternalFiles,
) -> Result<Tensor, Reason> {
    let dtype = dtype_from_onnx(t.data_type)?;
    let dims = dims_of(t)?;
    if t.segment.is_some() {
        return Err(Reason::Unsupported(
            "segmented tensors are not supported".into(),
        ));
    }
    let numel = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| invalid(format!("shape {dims:?} has too many elements")))?;
    let expected = byte_len(dtype, &dims)
        .ok_or_else(|| invalid(format!("shape {dims:?} has too many elements")))?;
    let from_bytes = |bytes: Bytes, what: &str| -> Result<Tensor, Reason> {
        if bytes.len() != expected {
            return Err(invalid(format!(
                "{what} holds {} bytes but shape {dims:?} of {dtype} needs {expected}",
                bytes.len()
            )));
        }
        Tensor::from_bytes(dtype, dims.clone(), bytes).map_err(|e| invalid(e.to_string()))
    };

    if t.data_location == DataLocation::External as i32 {
        let bytes = files.data(t, model_dir)?;
        return from_bytes(bytes, "external data");
    }
    if t.data_location != DataLocation::Default as i32 {
        return Err(invalid(format!(
            "unknown data_location {}",
            t.data_location
        )));
    }
    if !t.raw_data.is_empty() || expected == 0 {
        return from_bytes(t.raw_data.clone(), "raw_data");
    }

    // Typed fields: check the element count against what is present, then convert.
    let check = |present: usize, field: &str| -> Result<(), Reason> {
        if present != numel {
            Err(invalid(format!(
                "{field} holds {present} elements but shape {dims:?} needs {numel}"
            )))
        } else {
            Ok(())
        }
    };
    let mut out: Vec<u8> = Vec::new();
    match dtype {
        DType::F32 => {
            check(t.float_data.len(), "float_data")?;
            out.reserve_exact(expected);
            for v in &t.float_data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        DType::F64 => {
            check(t.double_data.len(), "double_data")?;
            out.reserve_exact(expected);
            for v in &t.double_data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        DType::I64 => {
            check(t.int64_data.len(), "int64_data")?;
            out.reserve_exact(expected);
            for v in &t.int64_data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        DType::U64 | DType::U32 => {
            check(t.uint64_data.len(), "uint64_data")?;
            out.reserve_exact(expected);
            for &v in &t.uint64_data {
                if dtype == DType::U32 {
                    out.extend_from_slice(&(v as u32).to_le_bytes());
                } else {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        DType::I32
        | DType::I16
        | DType::U16
        | DType::I8
        | DType::U8
        | DType::Bool
        | DType::F16
        | DType::BF16 => {
            check(t.int32_data.len(), "int32_data")?;
            out.reserve_exact(expected);
            for &v in &t.int32_data {
                match dtype {
                    DType::I32 => out.extend_from_slice(&v.to_le_bytes()),
                    DType::I16 | DType::U16 | DType::F16 | DType::BF16 => {
                        out.extend_from_slice(&(v as u16).to_le_bytes())
                    }
                    DType::I8 | DType::U8 => out.push(v as u8),
                    _ => out.push((v != 0) as u8),
                }
            }
        }
    }
    Tensor::from_bytes(dtype, dims, Bytes::from(out)).map_err(|e| invalid(e.to_string()))
}

/// Builds a tensor proto holding `t` as `raw_data` (used by tests and by tools writing `.pb` files).
pub fn tensor_to_proto(name: &str, t: &Tensor) -> TensorProto {
    TensorProto {
        dims: t.dims().iter().map(|&d| d as i64).collect(),
        data_type: dtype_to_onnx(t.dtype()) as i32,
        name: name.to_string(),
        raw_data: t.bytes().clone(),
        ..Default::default()
    }
}
