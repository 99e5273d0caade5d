//! ONNX import tests: small models built with the prost messages, encoded, imported and checked.

mod onnx_builders;
use onnx_builders::*;

use bytes::Bytes;
use kestrel::onnx::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, DataLocation, DataType, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use kestrel::onnx::{
    import_bytes, load_model, tensor_from_proto, tensor_to_proto, ImportError, Model, Reason,
};
use kestrel_ir::{
    AspectPolicy, BinaryOp, CoordMode, DType, Dim, Graph, NearestMode, Op, PadMode, ReduceKind,
    ResizeBy, ResizeMode, Tensor, UnaryOp, ValueDef, ValueId, F32,
};
use prost::Message;
use std::path::Path;

// ---------------------------------------------------------------- builders

enum D {
    N(i64),
    S(&'static str),
    Missing,
}

fn vi(name: &str, dt: DataType, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: match d {
                D::N(n) => Some(dimension::Value::DimValue(*n)),
                D::S(s) => Some(dimension::Value::DimParam(s.to_string())),
                D::Missing => None,
            },
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dt as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn f32_in(name: &str, dims: &[i64]) -> ValueInfoProto {
    let d: Vec<D> = dims.iter().map(|&n| D::N(n)).collect();
    vi(name, DataType::Float, &d)
}

fn import(m: &ModelProto) -> Result<Model, ImportError> {
    import_bytes(Bytes::from(m.encode_to_vec()), None, "test.onnx")
}

fn ok(m: &ModelProto) -> Graph {
    match import(m) {
        Ok(m) => m.graph,
        Err(e) => panic!("import failed: {e}"),
    }
}

fn err(m: &ModelProto) -> String {
    match import(m) {
        Ok(m) => panic!("import unexpectedly succeeded: {:?}", m.graph),
        Err(e) => e.to_string(),
    }
}

fn ops(g: &Graph) -> Vec<&Op> {
    g.nodes.iter().map(|n| &n.op).collect()
}

fn out_value(g: &Graph, k: usize) -> ValueId {
    g.outputs[k].value
}

fn const_i64(g: &Graph, v: ValueId) -> Vec<i64> {
    g.const_data(v)
        .unwrap_or_else(|| panic!("{v} is not a constant"))
        .to_i64_vec()
}

fn dims(g: &Graph, v: ValueId) -> Vec<usize> {
    g.ty(v).dims().expect("static shape")
}

// ---------------------------------------------------------------- tensors and constants

#[test]
fn raw_initializer_is_zero_copy() {
    let m = model(
        13,
        vec![],
        vec![init_f32("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0])],
        vec![],
        &["w"],
    );
    let buf = Bytes::from(m.encode_to_vec());
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let model = import_bytes(buf.clone(), None, "test.onnx").unwrap();
    let g = &model.graph;
    let w = out_value(g, 0);
    let t = g.const_data(w).unwrap();
    assert_eq!(t.to_f32_vec(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(t.dims(), &[2, 2]);
    assert!(
        range.contains(&(t.bytes().as_ptr() as usize)),
        "raw_data was copied"
    );
    assert_eq!(model.producer_name, "kestrel-tests");
    assert_eq!(model.opset(""), Some(13));
    assert_eq!(model.opset("ai.onnx"), Some(13));
    assert!(g.inputs.is_empty() && g.nodes.is_empty());
}

#[test]
fn typed_initializer_fields() {
    let mut t_f32 = TensorProto {
        name: "f".into(),
        dims: vec![3],
        data_type: DataType::Float as i32,
        float_data: vec![1.5, -2.0, 0.25],
        ..Default::default()
    };
    let t_f16 = TensorProto {
        name: "h".into(),
        dims: vec![2],
        data_type: DataType::Float16 as i32,
        int32_data: vec![0x3c00, 0xc000], // 1.0, -2.0
        ..Default::default()
    };
    let t_i8 = TensorProto {
        name: "i8".into(),
        dims: vec![2],
        data_type: DataType::Int8 as i32,
        int32_data: vec![-3, 127],
        ..Default::default()
    };
    let t_bool = TensorProto {
        name: "b".into(),
        dims: vec![3],
        data_type: DataType::Bool as i32,
        int32_data: vec![1, 0, 1],
        ..Default::default()
    };
    let t_i64 = TensorProto {
        name: "l".into(),
        dims: vec![1, 2],
        data_type: DataType::Int64 as i32,
        int64_data: vec![-7, 1 << 40],
        ..Default::default()
    };
    let t_f64 = TensorProto {
        name: "d".into(),
        dims: vec![],
        data_type: DataType::Double as i32,
        double_data: vec![0.1],
        ..Default::default()
    };
    let t_u32 = TensorProto {
        name: "u".into(),
        dims: vec![1],
        data_type: DataType::Uint32 as i32,
        uint64_data: vec![4_000_000_000],
        ..Default::default()
    };
    t_f32.doc_string = "typed".into();
    let names = ["f", "h", "i8", "b", "l", "d", "u"];
    let m = model(
        13,
        vec![],
        vec![t_f32, t_f16, t_i8, t_bool, t_i64, t_f64, t_u32],
        vec![],
        &names,
    );
    let g = ok(&m);
    let c = |k: usize| g.const_data(out_value(&g, k)).unwrap().clone();
    assert_eq!(c(0).to_vec::<f32>().unwrap(), vec![1.5, -2.0, 0.25]);
    assert_eq!(c(1).dtype(), DType::F16);
    assert_eq!(c(1).to_f32_vec(), vec![1.0, -2.0]);
    assert_eq!(c(2).to_vec::<i8>().unwrap(), vec![-3, 127]);
    assert_eq!(c(3).to_vec::<bool>().unwrap(), vec![true, false, true]);
    assert_eq!(c(4).to_vec::<i64>().unwrap(), vec![-7, 1 << 40]);
    assert_eq!(c(4).dims(), &[1, 2]);
    assert_eq!(c(5).to_vec::<f64>().unwrap(), vec![0.1]);
    assert_eq!(c(5).dims(), &[] as &[usize]);
    assert_eq!(c(6).to_vec::<u32>().unwrap(), vec![4_000_000_000]);
    // Outputs keep the initializer names.
    assert_eq!(g.outputs[1].name, "h");
}

#[test]
fn tensor_sizes_are_checked_before_allocating() {
    // Raw data shorter than the shape claims.
    let mut t = init_f32("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    t.dims = vec![3, 2];
    let e = tensor_from_proto(&t, None).unwrap_err().to_string();
    assert!(e.contains("needs 24"), "{e}");
    // A shape whose byte size overflows.
    t.dims = vec![i64::MAX, i64::MAX];
    let e = tensor_from_proto(&t, None).unwrap_err().to_string();
    assert!(e.contains("too many elements"), "{e}");
    // A huge claimed shape with a tiny typed field is rejected without allocating.
    let t = TensorProto {
        name: "x".into(),
        dims: vec![1 << 40],
        data_type: DataType::Float as i32,
        float_data: vec![1.0],
        ..Default::default()
    };
    let e = tensor_from_proto(&t, None).unwrap_err().to_string();
    assert!(e.contains("float_data holds 1 elements"), "{e}");
    // Negative dims.
    let mut t = init_f32("n", &[1], &[1.0]);
    t.dims = vec![-1];
    assert!(tensor_from_proto(&t, None).is_err());
    // Unsupported dtypes.
    for dt in [
        DataType::String,
        DataType::Complex64,
        DataType::Float8e4m3fn,
    ] {
        let t = TensorProto {
            name: "s".into(),
            dims: vec![1],
            data_type: dt as i32,
            ..Default::default()
        };
        let e = tensor_from_proto(&t, None).unwrap_err().to_string();
        assert!(
            e.contains(dt.onnx_name()) && e.contains("not supported"),
            "{e}"
        );
    }
    // Empty tensors need no data.
    let t = TensorProto {
        name: "e".into(),
        dims: vec![0, 3],
        data_type: DataType::Float as i32,
        ..Default::default()
    };
    assert_eq!(tensor_from_proto(&t, None).unwrap().dims(), &[0, 3]);
}

#[test]
fn decode_tensor_file_round_trips() {
    let t = Tensor::from_vec(vec![2, 1], vec![3i32, -4]);
    let bytes = Bytes::from(tensor_to_proto("t", &t).encode_to_vec());
    let back = kestrel::onnx::decode_tensor_file(bytes).unwrap();
    assert_eq!(back, t);
    let e = kestrel::onnx::decode_tensor_file(Bytes::from_static(&[0x0a, 0xff, 0xff])).unwrap_err();
    assert!(matches!(e, ImportError::Decode { .. }), "{e}");
}

#[test]
fn constant_nodes_become_constants() {
    let nodes = vec![
        node(
            "Constant",
            &[],
            &["w"],
            vec![a_tensor("value", init_f32("", &[2], &[1.0, 2.0]))],
        ),
        node("Constant", &[], &["f"], vec![a_float("value_float", 0.5)]),
        node(
            "Constant",
            &[],
            &["fs"],
            vec![a_floats("value_floats", &[1.0, 2.0, 3.0])],
        ),
        node("Constant", &[], &["i"], vec![a_int("value_int", 7)]),
        node(
            "Constant",
            &[],
            &["is"],
            vec![a_ints("value_ints", &[1, -1])],
        ),
    ];
    let g = ok(&model(
        13,
        nodes,
        vec![],
        vec![],
        &["w", "f", "fs", "i", "is"],
    ));
    assert!(g.nodes.is_empty());
    let c = |k: usize| g.const_data(out_value(&g, k)).unwrap().clone();
    assert_eq!(c(0).to_f32_vec(), vec![1.0, 2.0]);
    assert_eq!(c(1).dims(), &[] as &[usize]);
    assert_eq!(c(1).to_f32_vec(), vec![0.5]);
    assert_eq!(c(2).dims(), &[3]);
    assert_eq!(c(3).to_vec::<i64>().unwrap(), vec![7]);
    assert_eq!(c(4).to_vec::<i64>().unwrap(), vec![1, -1]);
    match &g.value(out_value(&g, 0)).def {
        ValueDef::Const(c) => assert_eq!(c.name, "w"),
        d => panic!("{d:?}"),
    }
    let bad = node("Constant", &[], &["s"], vec![a_str("value_string", "x")]);
    let e = err(&model(13, vec![bad], vec![], vec![], &["s"]));
    assert!(e.contains("STRING"), "{e}");
}

#[test]
fn initializer_listed_as_input_is_a_constant() {
    let m = model(
        9,
        vec![],
        vec![init_f32("w", &[1], &[2.0])],
        vec![f32_in("x", &[1]), f32_in("w", &[1])],
        &["x", "w"],
    );
    let g = ok(&m);
    assert_eq!(g.inputs.len(), 1);
    assert_eq!(g.value(g.inputs[0]).name.as_deref(), Some("x"));
    assert!(g.const_data(out_value(&g, 1)).is_some());
    // An output may be a graph input directly.
    assert_eq!(out_value(&g, 0), g.inputs[0]);
}

#[test]
fn symbolic_and_missing_dims() {
    let m = model(
        13,
        vec![],
        vec![],
        vec![vi(
            "x",
            DataType::Float,
            &[D::S("batch"), D::N(3), D::Missing, D::S("")],
        )],
        &["x"],
    );
    let g = ok(&m);
    let ty = g.ty(g.inputs[0]);
    assert_eq!(ty.dtype, DType::F32);
    assert_eq!(ty.shape[0], Dim::sym("batch"));
    assert_eq!(ty.shape[1], Dim::Known(3));
    assert_eq!(ty.shape[2], Dim::sym("unk_0"));
    assert_eq!(ty.shape[3], Dim::sym("unk_1"));
}

// ---------------------------------------------------------------- external data

fn external(
    name: &str,
    dims: &[i64],
    location: &str,
    offset: Option<u64>,
    length: Option<u64>,
) -> TensorProto {
    let mut ext = vec![StringStringEntryProto {
        key: "location".into(),
        value: location.into(),
    }];
    if let Some(o) = offset {
        ext.push(StringStringEntryProto {
            key: "offset".into(),
            value: o.to_string(),
        });
    }
    if let Some(l) = length {
        ext.push(StringStringEntryProto {
            key: "length".into(),
            value: l.to_string(),
        });
    }
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        external_data: ext,
        data_location: DataLocation::External as i32,
        ..Default::default()
    }
}

fn write_model(dir: &Path, m: &ModelProto) -> std::path::PathBuf {
    let p = dir.join("model.onnx");
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

#[test]
fn external_data_is_mapped_from_the_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Vec::new();
    for v in [9.0f32, 1.0, 2.0, 3.0, 4.0] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/weights.bin"), &data).unwrap();
    let m = model(
        13,
        vec![],
        vec![
            external("a", &[2, 2], "sub/weights.bin", Some(4), Some(16)),
            external("b", &[5], "./sub/weights.bin", None, None),
        ],
        vec![],
        &["a", "b"],
    );
    let path = write_model(dir.path(), &m);
    let model = load_model(&path).unwrap();
    let g = &model.graph;
    assert_eq!(
        g.const_data(out_value(g, 0)).unwrap().to_f32_vec(),
        vec![1.0, 2.0, 3.0, 4.0]
    );
    assert_eq!(g.const_data(out_value(g, 1)).unwrap().numel(), 5);

    // Without a model folder external data cannot be found.
    let e = import_bytes(Bytes::from(m.encode_to_vec()), None, "mem.onnx").unwrap_err();
    assert!(e.to_string().contains("folder is unknown"), "{e}");
}

#[test]
fn external_data_cannot_escape_or_overrun() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(root.path().join("secret.bin"), [0u8; 16]).unwrap();
    std::fs::write(dir.join("w.bin"), [0u8; 16]).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.path().join("secret.bin"), dir.join("link.bin")).unwrap();
    let secret = root.path().join("secret.bin");
    let cases: Vec<(TensorProto, &str)> = vec![
        (external("t", &[4], "../secret.bin", None, None), "\"..\""),
        (
            external("t", &[4], secret.to_str().unwrap(), None, None),
            "relative",
        ),
        #[cfg(unix)]
        (
            external("t", &[4], "link.bin", None, None),
            "outside the model's folder",
        ),
        (
            external("t", &[4], "w.bin", Some(8), Some(16)),
            "beyond the end",
        ),
        (
            external("t", &[4], "w.bin", Some(u64::MAX), Some(2)),
            "beyond the end",
        ),
        (external("t", &[8], "w.bin", None, None), "needs 32"),
        (
            external("t", &[4], "missing.bin", None, None),
            "missing.bin",
        ),
    ];
    for (t, want) in cases {
        let m = model(13, vec![], vec![t], vec![], &["t"]);
        let path = write_model(&dir, &m);
        let e = load_model(&path).unwrap_err().to_string();
        assert!(e.contains(want), "expected {want:?} in: {e}");
        assert!(e.contains("model.onnx: tensor \"t\""), "{e}");
    }
}

// ---------------------------------------------------------------- errors

#[test]
fn garbage_and_truncated_files_are_decode_errors() {
    let e = import_bytes(
        Bytes::from_static(b"\xff\xff\xff\xff garbage"),
        None,
        "junk.onnx",
    )
    .unwrap_err();
    assert!(matches!(e, ImportError::Decode { .. }));
    assert!(
        e.to_string()
            .starts_with("junk.onnx: not a valid ONNX protobuf"),
        "{e}"
    );
    let m = model(
        13,
        vec![],
        vec![init_f32("w", &[2], &[1.0, 2.0])],
        vec![],
        &["w"],
    );
    let full = m.encode_to_vec();
    for cut in [1, full.len() / 2, full.len() - 1] {
        let r = import_bytes(Bytes::copy_from_slice(&full[..cut]), None, "cut.onnx");
        assert!(r.is_err(), "truncated at {cut} still imported");
    }
    let dir = tempfile::tempdir().unwrap();
    let e = load_model(&dir.path().join("absent.onnx")).unwrap_err();
    assert!(e.to_string().contains("absent.onnx: cannot read"), "{e}");
}

#[test]
fn unknown_domain_op_is_named() {
    let mut n = node("FusedGemm", &["x"], &["y"], vec![]);
    n.domain = "com.microsoft".into();
    let mut m = model(13, vec![n], vec![], vec![f32_in("x", &[2, 2])], &["y"]);
    m.opset_import.push(OperatorSetIdProto {
        domain: "com.microsoft".into(),
        version: 1,
    });
    let e = err(&m);
    assert_eq!(
        e,
        "test.onnx: node 0 \"FusedGemm_y\" (FusedGemm): operator FusedGemm of domain \"com.microsoft\" (opset 1) is not supported"
    );
    let m = model(
        13,
        vec![node("NoSuchOp", &["x"], &["y"], vec![])],
        vec![],
        vec![f32_in("x", &[2])],
        &["y"],
    );
    let e = err(&m);
    assert!(
        e.contains("operator NoSuchOp of domain \"\" (opset 13) is not supported"),
        "{e}"
    );
}

#[test]
fn attribute_of_wrong_type_names_node_and_attribute() {
    let conv = NodeProto {
        name: "Conv_3".into(),
        ..node("Conv", &["x", "w"], &["y"], vec![a_floats("group", &[1.0])])
    };
    let m = model(
        13,
        vec![conv],
        vec![init_f32("w", &[1, 1, 1, 1], &[1.0])],
        vec![f32_in("x", &[1, 1, 2, 2])],
        &["y"],
    );
    let e = import_bytes(Bytes::from(m.encode_to_vec()), None, "digits.onnx").unwrap_err();
    assert_eq!(
        e.to_string(),
        "digits.onnx: node 0 \"Conv_3\" (Conv): attribute \"group\" must be an int, got FLOATS"
    );
    match e {
        ImportError::Node {
            index,
            op_type,
            reason,
            ..
        } => {
            assert_eq!((index, op_type.as_str()), (0, "Conv"));
            assert!(matches!(*reason, Reason::AttrType { .. }));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn cycles_and_undefined_values_are_errors() {
    let nodes = vec![
        node("Relu", &["b"], &["a"], vec![]),
        node("Relu", &["a"], &["b"], vec![]),
    ];
    let e = err(&model(13, nodes, vec![], vec![f32_in("x", &[1])], &["a"]));
    assert!(e.contains("cycle"), "{e}");
    let e = err(&model(
        13,
        vec![node("Relu", &["nope"], &["a"], vec![])],
        vec![],
        vec![],
        &["a"],
    ));
    assert!(e.contains("\"nope\", which nothing defines"), "{e}");
    let e = err(&model(13, vec![], vec![], vec![], &["ghost"]));
    assert!(e.contains("graph output \"ghost\" is not defined"), "{e}");
    let mut m = model(
        13,
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![],
        vec![f32_in("x", &[1])],
        &["y"],
    );
    m.opset_import.clear();
    let e = err(&m);
    assert!(
        e.contains("(Relu): the model imports no opset of the default domain"),
        "{e}"
    );
}

// ---------------------------------------------------------------- ops (need type inference)

#[test]
fn nodes_out_of_order_are_sorted() {
    let nodes = vec![
        node("Neg", &["a"], &["b"], vec![]),
        node("Relu", &["x"], &["a"], vec![]),
    ];
    let g = ok(&model(13, nodes, vec![], vec![f32_in("x", &[2])], &["b"]));
    assert_eq!(
        ops(&g),
        vec![&Op::Unary(UnaryOp::Relu), &Op::Unary(UnaryOp::Neg)]
    );
    assert_eq!(g.nodes[0].name, "Relu_a");
    assert_eq!(g.value(out_value(&g, 0)).name.as_deref(), Some("b"));
}

#[test]
fn clip_6_attributes_vs_clip_11_inputs() {
    let clip = |min: f32, max: f32| {
        Op::Unary(UnaryOp::Clip {
            min: F32(min),
            max: F32(max),
        })
    };
    // Constant (or absent) bounds on floats: the unary clip.
    let n = node(
        "Clip",
        &["x"],
        &["y"],
        vec![a_float("min", 0.0), a_float("max", 6.0)],
    );
    let g = ok(&model(6, vec![n], vec![], vec![f32_in("x", &[4])], &["y"]));
    assert_eq!(ops(&g), vec![&clip(0.0, 6.0)]);
    assert_eq!(g.nodes[0].inputs.len(), 1);
    let consts = g
        .values
        .iter()
        .filter(|v| matches!(v.def, ValueDef::Const(_)));
    assert_eq!(consts.count(), 0, "no bound constants left behind");

    // Only max: min is -inf.
    let n = node("Clip", &["x"], &["y"], vec![a_float("max", 1.0)]);
    let g = ok(&model(6, vec![n], vec![], vec![f32_in("x", &[4])], &["y"]));
    assert_eq!(ops(&g), vec![&clip(f32::NEG_INFINITY, 1.0)]);

    // Clip-11: inputs, the middle one empty, the last an initializer.
    let n = node("Clip", &["x", "", "hi"], &["y"], vec![]);
    let g = ok(&model(
        11,
        vec![n],
        vec![init_f32("hi", &[], &[2.0])],
        vec![f32_in("x", &[4])],
        &["y"],
    ));
    assert_eq!(ops(&g), vec![&clip(f32::NEG_INFINITY, 2.0)]);

    // A bound known only at run time: bounds stay inputs, a missing min materialised as -inf.
    let n = node("Clip", &["x", "", "hi"], &["y"], vec![]);
    let g = ok(&model(
        11,
        vec![n],
        vec![],
        vec![f32_in("x", &[4]), f32_in("hi", &[])],
        &["y"],
    ));
    assert_eq!(ops(&g), vec![&Op::Clip]);
    let ins = &g.nodes[0].inputs;
    assert_eq!(ins.len(), 3);
    assert_eq!(
        g.const_data(ins[1]).unwrap().to_f32_vec(),
        vec![f32::NEG_INFINITY]
    );
    assert_eq!(g.value(ins[2]).name.as_deref(), Some("hi"));

    let n = node("Clip", &["x"], &["y"], vec![]);
    let g = ok(&model(13, vec![n], vec![], vec![f32_in("x", &[4])], &["y"]));
    assert_eq!(ops(&g), vec![&clip(f32::NEG_INFINITY, f32::INFINITY)]);
    assert_eq!(g.nodes[0].inputs.len(), 1);

    // Integer data keeps its bounds as inputs (an f32 parameter cannot hold every i64); with no
    // bound at all it is the identity.
    let i64_in = |name: &str| vi(name, DataType::Int64, &[D::N(3)]);
    let n = node("Clip", &["x", "lo"], &["y"], vec![]);
    let lo = tensor_to_proto("lo", &Tensor::scalar(-1i64));
    let g = ok(&model(13, vec![n], vec![lo], vec![i64_in("x")], &["y"]));
    assert_eq!(ops(&g), vec![&Op::Clip]);
    assert_eq!(
        g.const_data(g.nodes[0].inputs[1]).unwrap().to_i64_vec(),
        vec![-1]
    );
    let n = node("Clip", &["x"], &["y"], vec![]);
    let g = ok(&model(13, vec![n], vec![], vec![i64_in("x")], &["y"]));
    assert_eq!(ops(&g), vec![&Op::Identity]);

    // An f64 bound that is not exact in f32 stays an input.
    let f64_in = vi("x", DataType::Double, &[D::N(3)]);
    let n = node("Clip", &["x", "lo"], &["y"], vec![]);
    let lo = tensor_to_proto("lo", &Tensor::scalar(0.1f64));
    let g = ok(&model(13, vec![n], vec![lo], vec![f64_in.clone()], &["y"]));
    assert_eq!(ops(&g), vec![&Op::Clip]);
    let n = node("Clip", &["x", "lo"], &["y"], vec![]);
    let lo = tensor_to_proto("lo", &Tensor::scalar(0.5f64));
    let g = ok(&model(13, vec![n], vec![lo], vec![f64_in], &["y"]));
    assert_eq!(ops(&g), vec![&clip(0.5, f32::INFINITY)]);
}

#[test]
fn squeeze_11_attribute_vs_13_input() {
    let n = node("Squeeze", &["x"], &["y"], vec![a_ints("axes", &[0, 2])]);
    let g = ok(&model(
        11,
        vec![n],
        vec![],
        vec![f32_in("x", &[1, 3, 1])],
        &["y"],
    ));
    assert_eq!(ops(&g), vec![&Op::Squeeze]);
    assert_eq!(const_i64(&g, g.nodes[0].inputs[1]), vec![0, 2]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![3]);

    let n = node("Squeeze", &["x", "axes"], &["y"], vec![]);
    let g = ok(&model(
        13,
        vec![n],
        vec![init_i64("axes", &[0])],
        vec![f32_in("x", &[1, 3, 1])],
        &["y"],
    ));
    assert_eq!(const_i64(&g, g.nodes[0].inputs[1]), vec![0]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![3, 1]);

    let n = node("Unsqueeze", &["x"], &["y"], vec![a_ints("axes", &[0])]);
    let g = ok(&model(11, vec![n], vec![], vec![f32_in("x", &[3])], &["y"]));
    assert_eq!(ops(&g), vec![&Op::Unsqueeze]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![1, 3]);
}

#[test]
fn slice_1_attributes_vs_10_inputs() {
    let n = node(
        "Slice",
        &["x"],
        &["y"],
        vec![
            a_ints("starts", &[1]),
            a_ints("ends", &[3]),
            a_ints("axes", &[1]),
        ],
    );
    let g = ok(&model(
        1,
        vec![n],
        vec![],
        vec![f32_in("x", &[2, 4])],
        &["y"],
    ));
    assert_eq!(ops(&g), vec![&Op::Slice]);
    let ins = &g.nodes[0].inputs;
    assert_eq!(ins.len(), 4);
    assert_eq!(const_i64(&g, ins[1]), vec![1]);
    assert_eq!(const_i64(&g, ins[2]), vec![3]);
    assert_eq!(const_i64(&g, ins[3]), vec![1]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![2, 2]);

    // Slice-10 with steps but no axes: axes are materialised.
    let n = node("Slice", &["x", "s", "e", "", "st"], &["y"], vec![]);
    let g = ok(&model(
        10,
        vec![n],
        vec![
            init_i64("s", &[0, 0]),
            init_i64("e", &[2, 4]),
            init_i64("st", &[1, 2]),
        ],
        vec![f32_in("x", &[2, 4])],
        &["y"],
    ));
    let ins = &g.nodes[0].inputs;
    assert_eq!(ins.len(), 5);
    assert_eq!(const_i64(&g, ins[3]), vec![0, 1]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![2, 2]);
}

#[test]
fn softmax_11_non_last_axis_is_coerced() {
    let n = node("Softmax", &["x"], &["y"], vec![a_int("axis", 1)]);
    let g = ok(&model(
        11,
        vec![n],
        vec![],
        vec![f32_in("x", &[2, 3, 4])],
        &["y"],
    ));
    assert_eq!(
        ops(&g),
        vec![
            &Op::Flatten { axis: 1 },
            &Op::Softmax { axis: 1 },
            &Op::Reshape { allowzero: false }
        ]
    );
    assert_eq!(const_i64(&g, g.nodes[2].inputs[1]), vec![2, 3, 4]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![2, 3, 4]);
    assert!(g.nodes.iter().all(|n| n.name == "Softmax_y"));

    // Symbolic batch: the shape comes from a Shape node.
    let n = node("LogSoftmax", &["x"], &["y"], vec![]);
    let g = ok(&model(
        11,
        vec![n],
        vec![],
        vec![vi("x", DataType::Float, &[D::S("N"), D::N(3), D::N(4)])],
        &["y"],
    ));
    assert_eq!(g.nodes.len(), 4);
    assert!(g.nodes.iter().any(|n| matches!(n.op, Op::Shape { .. })));
    assert!(g.nodes.iter().any(|n| n.op == Op::LogSoftmax { axis: 1 }));

    // Last axis: the plain op.
    let n = node("Softmax", &["x"], &["y"], vec![a_int("axis", 2)]);
    let g = ok(&model(
        11,
        vec![n],
        vec![],
        vec![f32_in("x", &[2, 3, 4])],
        &["y"],
    ));
    assert_eq!(ops(&g), vec![&Op::Softmax { axis: 2 }]);

    // Opset 13: one axis, default -1.
    let n = node("Softmax", &["x"], &["y"], vec![]);
    let g = ok(&model(
        13,
        vec![n],
        vec![],
        vec![f32_in("x", &[2, 3, 4])],
        &["y"],
    ));
    assert_eq!(ops(&g), vec![&Op::Softmax { axis: -1 }]);
}

#[test]
fn pad_2_vs_11_vs_18_axes() {
    let n = node(
        "Pad",
        &["x"],
        &["y"],
        vec![
            a_ints("pads", &[0, 1, 0, 2]),
            a_str("mode", "constant"),
            a_float("value", 1.5),
        ],
    );
    let g = ok(&model(
        2,
        vec![n],
        vec![],
        vec![f32_in("x", &[2, 3])],
        &["y"],
    ));
    assert_eq!(
        ops(&g),
        vec![&Op::Pad {
            mode: PadMode::Constant
        }]
    );
    let ins = &g.nodes[0].inputs;
    assert_eq!(const_i64(&g, ins[1]), vec![0, 1, 0, 2]);
    assert_eq!(g.const_data(ins[2]).unwrap().to_f32_vec(), vec![1.5]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![2, 6]);

    let n = node("Pad", &["x", "p"], &["y"], vec![a_str("mode", "reflect")]);
    let g = ok(&model(
        11,
        vec![n],
        vec![init_i64("p", &[1, 1, 1, 1])],
        vec![f32_in("x", &[2, 3])],
        &["y"],
    ));
    assert_eq!(
        ops(&g),
        vec![&Op::Pad {
            mode: PadMode::Reflect
        }]
    );
    assert_eq!(g.nodes[0].inputs.len(), 2);

    let n = node("Pad", &["x", "p", "", "axes"], &["y"], vec![]);
    let g = ok(&model(
        18,
        vec![n],
        vec![init_i64("p", &[1, 2]), init_i64("axes", &[-1])],
        vec![f32_in("x", &[2, 3, 4])],
        &["y"],
    ));
    let ins = &g.nodes[0].inputs;
    assert_eq!(ins.len(), 2);
    assert_eq!(const_i64(&g, ins[1]), vec![0, 0, 1, 0, 0, 2]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![2, 3, 7]);
}

#[test]
fn resize_10_vs_11_vs_19() {
    let scales = init_f32("scales", &[4], &[1.0, 1.0, 2.0, 2.0]);
    let n = node(
        "Resize",
        &["x", "scales"],
        &["y"],
        vec![a_str("mode", "nearest")],
    );
    let g = ok(&model(
        10,
        vec![n],
        vec![scales.clone()],
        vec![f32_in("x", &[1, 1, 2, 2])],
        &["y"],
    ));
    let Op::Resize(r) = &g.nodes[0].op else {
        panic!()
    };
    assert_eq!(
        (r.by, r.mode, r.coord, r.nearest),
        (
            ResizeBy::Scales,
            ResizeMode::Nearest,
            CoordMode::Asymmetric,
            NearestMode::Floor
        )
    );
    assert_eq!(dims(&g, out_value(&g, 0)), vec![1, 1, 4, 4]);

    // Opset 11: (X, roi, scales, sizes) with an empty roi and scales; sizes wins.
    let empty = init_f32("empty", &[0], &[]);
    let n = node(
        "Resize",
        &["x", "empty", "empty", "sizes"],
        &["y"],
        vec![
            a_str("mode", "linear"),
            a_str("coordinate_transformation_mode", "align_corners"),
        ],
    );
    let g = ok(&model(
        11,
        vec![n],
        vec![empty, init_i64("sizes", &[1, 1, 3, 5])],
        vec![f32_in("x", &[1, 1, 2, 2])],
        &["y"],
    ));
    let Op::Resize(r) = &g.nodes[0].op else {
        panic!()
    };
    assert_eq!(
        (r.by, r.mode, r.coord),
        (ResizeBy::Sizes, ResizeMode::Linear, CoordMode::AlignCorners)
    );
    assert_eq!(g.nodes[0].inputs.len(), 2);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![1, 1, 3, 5]);

    // Opset 11 with scales and no sizes; default half_pixel.
    let n = node("Resize", &["x", "", "scales"], &["y"], vec![]);
    let g = ok(&model(
        13,
        vec![n],
        vec![scales],
        vec![f32_in("x", &[1, 1, 2, 2])],
        &["y"],
    ));
    let Op::Resize(r) = &g.nodes[0].op else {
        panic!()
    };
    assert_eq!(
        (r.by, r.coord, r.nearest),
        (
            ResizeBy::Scales,
            CoordMode::HalfPixel,
            NearestMode::RoundPreferFloor
        )
    );

    // Opset 19: axes, antialias, keep_aspect_ratio_policy.
    let n = node(
        "Resize",
        &["x", "", "", "sizes"],
        &["y"],
        vec![
            a_ints("axes", &[2, 3]),
            a_int("antialias", 1),
            a_str("mode", "cubic"),
            a_str("keep_aspect_ratio_policy", "not_larger"),
            a_str("coordinate_transformation_mode", "half_pixel_symmetric"),
        ],
    );
    let g = ok(&model(
        19,
        vec![n],
        vec![init_i64("sizes", &[4, 4])],
        vec![f32_in("x", &[1, 1, 2, 4])],
        &["y"],
    ));
    let Op::Resize(r) = &g.nodes[0].op else {
        panic!()
    };
    assert_eq!(r.axes, vec![2, 3]);
    assert!(r.antialias);
    assert_eq!(
        (r.by, r.mode, r.aspect, r.coord),
        (
            ResizeBy::Sizes,
            ResizeMode::Cubic,
            AspectPolicy::NotLarger,
            CoordMode::HalfPixelSymmetric
        )
    );

    // Upsample-9 maps to Resize nearest asymmetric.
    let n = node("Upsample", &["x", "scales"], &["y"], vec![]);
    let g = ok(&model(
        9,
        vec![n],
        vec![init_f32("scales", &[4], &[1.0, 1.0, 2.0, 3.0])],
        vec![f32_in("x", &[1, 1, 2, 2])],
        &["y"],
    ));
    let Op::Resize(r) = &g.nodes[0].op else {
        panic!()
    };
    assert_eq!(
        (r.mode, r.coord, r.nearest),
        (
            ResizeMode::Nearest,
            CoordMode::Asymmetric,
            NearestMode::Floor
        )
    );
}

#[test]
fn split_11_vs_13_vs_18() {
    let n = node(
        "Split",
        &["x"],
        &["a", "b"],
        vec![a_int("axis", 1), a_ints("split", &[1, 3])],
    );
    let g = ok(&model(
        11,
        vec![n],
        vec![],
        vec![f32_in("x", &[2, 4])],
        &["a", "b"],
    ));
    assert_eq!(
        ops(&g),
        vec![&Op::Split {
            axis: 1,
            num_outputs: 2
        }]
    );
    assert_eq!(const_i64(&g, g.nodes[0].inputs[1]), vec![1, 3]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![2, 1]);
    assert_eq!(dims(&g, out_value(&g, 1)), vec![2, 3]);

    let n = node("Split", &["x", "s"], &["a", "b"], vec![a_int("axis", 1)]);
    let g = ok(&model(
        13,
        vec![n],
        vec![init_i64("s", &[3, 1])],
        vec![f32_in("x", &[2, 4])],
        &["a", "b"],
    ));
    assert_eq!(dims(&g, out_value(&g, 0)), vec![2, 3]);

    let n = node(
        "Split",
        &["x"],
        &["a", "b", "c"],
        vec![a_int("num_outputs", 3)],
    );
    let g = ok(&model(
        18,
        vec![n],
        vec![],
        vec![f32_in("x", &[7])],
        &["a", "b", "c"],
    ));
    assert_eq!(
        ops(&g),
        vec![&Op::Split {
            axis: 0,
            num_outputs: 3
        }]
    );
    assert_eq!(g.nodes[0].inputs.len(), 1);
    assert_eq!(dims(&g, out_value(&g, 2)), vec![1]);

    let n = node("Split", &["x"], &["a", "b"], vec![a_int("num_outputs", 3)]);
    let e = err(&model(
        18,
        vec![n],
        vec![],
        vec![f32_in("x", &[6])],
        &["a", "b"],
    ));
    assert!(e.contains("num_outputs"), "{e}");
}

#[test]
fn reduce_axes_attribute_vs_input() {
    let n = node(
        "ReduceMean",
        &["x"],
        &["y"],
        vec![a_ints("axes", &[1]), a_int("keepdims", 0)],
    );
    let g = ok(&model(
        13,
        vec![n],
        vec![],
        vec![f32_in("x", &[2, 3])],
        &["y"],
    ));
    let Op::Reduce(r) = &g.nodes[0].op else {
        panic!()
    };
    assert_eq!((r.kind, r.keepdims), (ReduceKind::Mean, false));
    assert_eq!(const_i64(&g, g.nodes[0].inputs[1]), vec![1]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![2]);

    let n = node("ReduceSum", &["x", "axes"], &["y"], vec![]);
    let g = ok(&model(
        13,
        vec![n],
        vec![init_i64("axes", &[0])],
        vec![f32_in("x", &[2, 3])],
        &["y"],
    ));
    assert_eq!(dims(&g, out_value(&g, 0)), vec![1, 3]);

    let n = node("ReduceMax", &["x"], &["y"], vec![]);
    let g = ok(&model(
        18,
        vec![n],
        vec![],
        vec![f32_in("x", &[2, 3])],
        &["y"],
    ));
    assert_eq!(g.nodes[0].inputs.len(), 1);
}

#[test]
fn legacy_broadcast_with_axis() {
    let n = node(
        "Add",
        &["x", "b"],
        &["y"],
        vec![a_int("broadcast", 1), a_int("axis", 1)],
    );
    let g = ok(&model(
        6,
        vec![n],
        vec![init_f32("b", &[3], &[1.0, 2.0, 3.0])],
        vec![f32_in("x", &[2, 3, 4, 5])],
        &["y"],
    ));
    // The constant operand is unsqueezed to [3, 1, 1] (folded at import).
    assert_eq!(ops(&g), vec![&Op::Binary(BinaryOp::Add)]);
    assert_eq!(dims(&g, g.nodes[0].inputs[1]), vec![3, 1, 1]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![2, 3, 4, 5]);

    // A runtime operand gets an Unsqueeze node.
    let n = node(
        "Mul",
        &["x", "b"],
        &["y"],
        vec![a_int("broadcast", 1), a_int("axis", 0)],
    );
    let g = ok(&model(
        6,
        vec![n],
        vec![],
        vec![f32_in("x", &[2, 3, 4]), f32_in("b", &[2, 3])],
        &["y"],
    ));
    assert_eq!(ops(&g), vec![&Op::Unsqueeze, &Op::Binary(BinaryOp::Mul)]);
    assert_eq!(const_i64(&g, g.nodes[0].inputs[1]), vec![2]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![2, 3, 4]);
}

#[test]
fn variadic_mean_and_misc_ops() {
    let nodes = vec![
        node("Mean", &["x", "x", "x"], &["m"], vec![]),
        node("Mod", &["m", "x"], &["f"], vec![a_int("fmod", 1)]),
        node("Dropout", &["f"], &["d", "mask"], vec![]),
        node("Gelu", &["d"], &["y"], vec![a_str("approximate", "tanh")]),
        node("Transpose", &["y"], &["t"], vec![]),
        node(
            "Cast",
            &["t"],
            &["c"],
            vec![a_int("to", DataType::Int64 as i32 as i64)],
        ),
    ];
    let g = ok(&model(
        20,
        nodes,
        vec![],
        vec![f32_in("x", &[2, 3])],
        &["c"],
    ));
    assert_eq!(
        ops(&g)[..7],
        [
            &Op::Binary(BinaryOp::Add),
            &Op::Binary(BinaryOp::Add),
            &Op::Binary(BinaryOp::Div),
            &Op::Binary(BinaryOp::Fmod),
            &Op::Identity,
            &Op::Unary(UnaryOp::Gelu { tanh_approx: true }),
            &Op::Transpose { perm: vec![1, 0] },
        ]
    );
    assert_eq!(
        g.const_data(g.nodes[2].inputs[1]).unwrap().to_f32_vec(),
        vec![3.0]
    );
    assert_eq!(g.ty(out_value(&g, 0)).dtype, DType::I64);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![3, 2]);

    // A used mask output is all true.
    let nodes = vec![node("Dropout", &["x"], &["d", "mask"], vec![])];
    let g = ok(&model(
        13,
        nodes,
        vec![],
        vec![f32_in("x", &[2])],
        &["d", "mask"],
    ));
    assert_eq!(g.ty(out_value(&g, 1)).dtype, DType::Bool);
    assert_eq!(dims(&g, out_value(&g, 1)), vec![2]);

    // A used MaxPool Indices output is an error.
    let nodes = vec![node(
        "MaxPool",
        &["x"],
        &["y", "i"],
        vec![a_ints("kernel_shape", &[2])],
    )];
    let e = err(&model(
        13,
        nodes,
        vec![],
        vec![f32_in("x", &[1, 1, 4])],
        &["y", "i"],
    ));
    assert!(
        e.contains("output 1 (\"i\") is used: MaxPool's Indices output is not supported"),
        "{e}"
    );

    // LayerNormalization's Mean and InvStdDev outputs, when used.
    let nodes = vec![node(
        "LayerNormalization",
        &["x", "s"],
        &["y", "m", "r"],
        vec![a_int("axis", 1)],
    )];
    let g = ok(&model(
        17,
        nodes,
        vec![init_f32("s", &[3], &[1.0, 1.0, 1.0])],
        vec![f32_in("x", &[2, 3])],
        &["y", "m", "r"],
    ));
    assert_eq!(dims(&g, out_value(&g, 1)), vec![2, 1]);
    assert_eq!(dims(&g, out_value(&g, 2)), vec![2, 1]);
}

// ---------------------------------------------------------------- real models

/// Imports every `.onnx` file of `dir`; returns how many. A missing folder fails.
fn import_dir(dir: &Path) -> usize {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{} (in KESTREL_MODELS): {e}", dir.display()));
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    paths.sort();
    let mut failures = Vec::new();
    for p in &paths {
        let t = std::time::Instant::now();
        match load_model(p) {
            Ok(m) => eprintln!(
                "{}: {} nodes, {} values, opset {:?}, {:?}",
                p.display(),
                m.graph.nodes.len(),
                m.graph.values.len(),
                m.opset(""),
                t.elapsed()
            ),
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
    paths.len()
}

/// Every model of the shared folder (`KESTREL_MODELS`) imports; skipped, saying so, when it is
/// unset, and failing when it is set but the folder or its `digits` or `torchvision` part is
/// missing.
#[test]
fn real_models_import() {
    let Some(models) = kestrel_ir::testing::shared_models() else {
        eprintln!("KESTREL_MODELS is not set: the shared models' import is not checked");
        return;
    };
    let n = import_dir(&models.join("digits")) + import_dir(&models.join("torchvision"));
    assert!(n > 0, "no .onnx files in {}", models.display());
    eprintln!("imported {n} models");
}

#[test]
fn pad_18_with_runtime_axes_expands_in_the_graph() {
    let n = node("Pad", &["x", "p", "", "axes"], &["y"], vec![]);
    let g = ok(&model(
        18,
        vec![n],
        vec![],
        vec![
            f32_in("x", &[2, 3, 4]),
            vi("p", DataType::Int64, &[D::N(2)]),
            vi("axes", DataType::Int64, &[D::N(1)]),
        ],
        &["y"],
    ));
    let pad = g.nodes.last().unwrap();
    assert_eq!(
        pad.op,
        Op::Pad {
            mode: PadMode::Constant
        }
    );
    assert_eq!(g.ty(pad.inputs[1]).dims(), Some(vec![6]));
    let x = Tensor::from_vec(vec![2, 3, 4], vec![0f32; 24]);
    let p = Tensor::from_vec(vec![2], vec![1i64, 2]);
    let axes = Tensor::from_vec(vec![1], vec![-2i64]);
    let y = kestrel_backends::interp::run(&g, &[x, p, axes]).unwrap();
    assert_eq!(y[0].dims(), &[2, 6, 4]);
}

#[test]
fn shape_arithmetic_on_constants_is_folded() {
    let nodes = vec![
        node("Shape", &["x"], &["s"], vec![]),
        node("Constant", &[], &["a"], vec![a_ints("value_ints", &[7])]),
        node("Constant", &[], &["b"], vec![a_ints("value_ints", &[4])]),
        node("Mod", &["a", "b"], &["m"], vec![]),
        node("Slice", &["s", "m", "a"], &["t"], vec![]),
        node("Constant", &[], &["c"], vec![a_ints("value_ints", &[6])]),
        node("Concat", &["c", "t"], &["shape"], vec![a_int("axis", 0)]),
        node("Reshape", &["x", "shape"], &["y"], vec![]),
    ];
    let g = ok(&model(
        13,
        nodes,
        vec![],
        vec![f32_in("x", &[1, 2, 3, 4, 5])],
        &["y"],
    ));
    assert_eq!(ops(&g), vec![&Op::Reshape { allowzero: false }]);
    assert_eq!(const_i64(&g, g.nodes[0].inputs[1]), vec![6, 4, 5]);
    assert_eq!(dims(&g, out_value(&g, 0)), vec![6, 4, 5]);
    // Symbolic extents are not folded.
    let nodes = vec![node("Shape", &["x"], &["s"], vec![])];
    let g = ok(&model(
        13,
        nodes,
        vec![],
        vec![vi("x", DataType::Float, &[D::S("N"), D::N(3)])],
        &["s"],
    ));
    assert!(matches!(ops(&g)[..], [Op::Shape { .. }]));
}

#[test]
fn mutated_models_never_panic() {
    let nodes = vec![
        node(
            "Conv",
            &["x", "w", "b"],
            &["c"],
            vec![a_ints("pads", &[1, 1, 1, 1]), a_int("group", 1)],
        ),
        node("Relu", &["c"], &["r"], vec![]),
        node("Reshape", &["r", "shape"], &["f"], vec![]),
        node("Gemm", &["f", "fc"], &["y"], vec![a_int("transB", 1)]),
        node("Softmax", &["y"], &["z"], vec![a_int("axis", 1)]),
    ];
    let m = model(
        11,
        nodes,
        vec![
            init_f32("w", &[2, 1, 3, 3], &[0.5; 18]),
            init_f32("b", &[2], &[0.0, 1.0]),
            init_i64("shape", &[1, -1]),
            init_f32("fc", &[3, 32], &[0.25; 96]),
        ],
        vec![f32_in("x", &[1, 1, 4, 4])],
        &["z"],
    );
    let full = m.encode_to_vec();
    ok(&m);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut b = full.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        let cut = if next() % 4 == 0 {
            (next() % b.len() as u64) as usize
        } else {
            b.len()
        };
        let _ = import_bytes(Bytes::copy_from_slice(&b[..cut]), None, "fuzz.onnx");
    }
}
