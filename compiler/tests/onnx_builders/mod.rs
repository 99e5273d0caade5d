//! Builders for small ONNX models made of the prost messages, shared by the importer and
//! hostile-input tests.
#![allow(dead_code)]

use bytes::Bytes;
use kestrel::onnx::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use kestrel::onnx::tensor_to_proto;
use kestrel_ir::Tensor;

pub fn out(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        ..Default::default()
    }
}

/// A node named `<op>_<first output>`.
pub fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_{}", outs.first().unwrap_or(&"")),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

pub fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: ty as i32,
        ..Default::default()
    }
}

pub fn a_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: Some(v),
        ..attr(name, AttributeType::Int)
    }
}

pub fn a_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attr(name, AttributeType::Ints)
    }
}

pub fn a_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        f: Some(v),
        ..attr(name, AttributeType::Float)
    }
}

pub fn a_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        floats: v.to_vec(),
        ..attr(name, AttributeType::Floats)
    }
}

pub fn a_str(name: &str, v: impl AsRef<[u8]>) -> AttributeProto {
    AttributeProto {
        s: Some(Bytes::copy_from_slice(v.as_ref())),
        ..attr(name, AttributeType::String)
    }
}

pub fn a_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        t: Some(t),
        ..attr(name, AttributeType::Tensor)
    }
}

pub fn init_i64(name: &str, v: &[i64]) -> TensorProto {
    tensor_to_proto(name, &Tensor::from_vec(vec![v.len()], v.to_vec()))
}

pub fn init_f32(name: &str, dims: &[usize], v: &[f32]) -> TensorProto {
    tensor_to_proto(name, &Tensor::from_vec(dims.to_vec(), v.to_vec()))
}

pub fn model(
    opset: i64,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: &[&str],
) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "kestrel-tests".into(),
        producer_version: "1".into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
            input: inputs,
            output: outputs.iter().map(|o| out(o)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn vi_dims(name: &str, dt: DataType, dims: Vec<dimension::Value>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dt as i32,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .into_iter()
                        .map(|v| Dimension {
                            value: Some(v),
                            denotation: String::new(),
                        })
                        .collect(),
                }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

pub fn f32_in(name: &str, dims: &[i64]) -> ValueInfoProto {
    vi_dims(
        name,
        DataType::Float,
        dims.iter()
            .map(|&d| dimension::Value::DimValue(d))
            .collect(),
    )
}
