//! Malformed or unsupported quantized nodes (QLinear*, *Integer, com.microsoft QOperator ops)
//! are refused at import with an error naming the node and the reason, never a panic.

mod onnx_builders;
use onnx_builders::*;

use bytes::Bytes;
use kestrel::onnx::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, DataType, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use kestrel::onnx::{import_bytes, tensor_to_proto};
use kestrel_ir::Tensor;
use prost::Message;

fn vi(name: &str, dt: DataType, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&n| Dimension {
            value: Some(dimension::Value::DimValue(n)),
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

fn t<T: kestrel_ir::Element>(name: &str, dims: &[usize], v: Vec<T>) -> TensorProto {
    tensor_to_proto(name, &Tensor::from_vec(dims.to_vec(), v))
}

/// A model of one node importing both the default domain and com.microsoft.
fn one_node(n: NodeProto, inits: Vec<TensorProto>, inputs: Vec<ValueInfoProto>) -> ModelProto {
    let mut m = model(17, vec![n], inits, inputs, &["y"]);
    m.opset_import.push(OperatorSetIdProto {
        domain: "com.microsoft".into(),
        version: 1,
    });
    m
}

fn ms(mut n: NodeProto) -> NodeProto {
    n.domain = "com.microsoft".into();
    n
}

/// The import error of `m`; panics if it imports.
fn error(m: &ModelProto) -> String {
    match import_bytes(Bytes::from(m.encode_to_vec()), None, "q.onnx") {
        Ok(_) => panic!("import unexpectedly succeeded"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(e: &str, parts: &[&str]) {
    for p in parts {
        assert!(e.contains(p), "error {e:?} does not mention {p:?}");
    }
}

/// QLinearMatMul of a `[2, 4]` u8 input `a` by constant s8 `b` `[4, 3]`, per-column `b_scale`;
/// `edit` changes the initializers before the model is built.
fn qmatmul(edit: impl FnOnce(&mut Vec<TensorProto>), ins: &[&str]) -> ModelProto {
    let mut inits = vec![
        t("a_scale", &[], vec![0.02f32]),
        t("a_zp", &[], vec![128u8]),
        t("b", &[4, 3], vec![1i8; 12]),
        t("b_scale", &[3], vec![0.01f32, 0.02, 0.03]),
        t("b_zp", &[3], vec![0i8; 3]),
        t("y_scale", &[], vec![0.1f32]),
        t("y_zp", &[], vec![100u8]),
    ];
    edit(&mut inits);
    one_node(
        node("QLinearMatMul", ins, &["y"], vec![]),
        inits,
        vec![vi("a", DataType::Uint8, &[2, 4])],
    )
}

const QMATMUL_INS: [&str; 8] = [
    "a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp",
];

#[test]
fn the_well_formed_base_model_imports() {
    let m = qmatmul(|_| {}, &QMATMUL_INS);
    import_bytes(Bytes::from(m.encode_to_vec()), None, "q.onnx").unwrap();
}

#[test]
fn missing_scale() {
    let mut ins = QMATMUL_INS;
    ins[6] = "";
    let e = error(&qmatmul(|_| {}, &ins));
    assert_mentions(
        &e,
        &[
            "q.onnx",
            "QLinearMatMul_y",
            "input 6 (\"y_scale\") is missing",
        ],
    );
}

#[test]
fn too_few_inputs() {
    let e = error(&qmatmul(|_| {}, &QMATMUL_INS[..5]));
    assert_mentions(&e, &["QLinearMatMul_y", "takes 8 inputs", "got 5"]);
}

#[test]
fn non_scalar_zero_point_for_a_per_tensor_input() {
    let e = error(&qmatmul(
        |i| i[1] = t("a_zp", &[2], vec![128u8, 128]),
        &QMATMUL_INS,
    ));
    assert_mentions(
        &e,
        &["QLinearMatMul_y", "\"a_zero_point\"", "must be a scalar"],
    );
    let e = error(&qmatmul(
        |i| i[0] = t("a_scale", &[2], vec![0.1f32, 0.2]),
        &QMATMUL_INS,
    ));
    assert_mentions(&e, &["\"a_scale\"", "must be a scalar"]);
}

#[test]
fn wrong_dtypes() {
    // A zero point of another dtype than its data.
    let e = error(&qmatmul(|i| i[1] = t("a_zp", &[], vec![0i8]), &QMATMUL_INS));
    assert_mentions(
        &e,
        &[
            "QLinearMatMul_y",
            "\"a_zero_point\"",
            "has dtype i8",
            "\"a\" is u8",
        ],
    );
    // An integer scale.
    let e = error(&qmatmul(
        |i| i[5] = t("y_scale", &[], vec![1i32]),
        &QMATMUL_INS,
    ));
    assert_mentions(&e, &["\"y_scale\"", "must be a float tensor"]);
    // 16-bit data.
    let e = error(&qmatmul(
        |i| i[2] = t("b", &[4, 3], vec![1i32; 12]),
        &QMATMUL_INS,
    ));
    assert_mentions(&e, &["\"b\"", "must be int8 or uint8"]);
    // An i8 bias where QLinearConv needs i32.
    let inits = vec![
        t("xs", &[], vec![0.02f32]),
        t("xz", &[], vec![128u8]),
        t("w", &[2, 1, 1, 1], vec![1i8, 2]),
        t("ws", &[2], vec![0.1f32, 0.2]),
        t("wz", &[2], vec![0i8, 0]),
        t("ys", &[], vec![0.1f32]),
        t("yz", &[], vec![0u8]),
        t("B", &[2], vec![1i8, 2]),
    ];
    let n = node(
        "QLinearConv",
        &["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "B"],
        &["y"],
        vec![],
    );
    let e = error(&one_node(
        n,
        inits,
        vec![vi("x", DataType::Uint8, &[1, 1, 3, 3])],
    ));
    assert_mentions(&e, &["QLinearConv_y", "input 8 (\"B\")", "must be int32"]);
}

#[test]
fn per_channel_scale_of_the_wrong_length() {
    let e = error(&qmatmul(
        |i| {
            i[3] = t("b_scale", &[2], vec![0.01f32, 0.02]);
            i[4] = t("b_zp", &[2], vec![0i8; 2]);
        },
        &QMATMUL_INS,
    ));
    assert_mentions(&e, &["\"b_scale\"", "has 2 entries for 3 columns of b"]);
}

#[test]
fn unknown_attribute_values() {
    let inits = vec![
        t("xs", &[], vec![0.02f32]),
        t("xz", &[], vec![128u8]),
        t("w", &[2, 1, 1, 1], vec![1i8, 2]),
        t("ws", &[2], vec![0.1f32, 0.2]),
        t("wz", &[2], vec![0i8, 0]),
        t("ys", &[], vec![0.1f32]),
        t("yz", &[], vec![0u8]),
    ];
    let ins = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"];
    let x = || vec![vi("x", DataType::Uint8, &[1, 1, 3, 3])];
    let n = node(
        "QLinearConv",
        &ins,
        &["y"],
        vec![a_str("auto_pad", "SIDEWAYS")],
    );
    let e = error(&one_node(n, inits.clone(), x()));
    assert_mentions(&e, &["QLinearConv_y", "auto_pad", "SIDEWAYS"]);
    let n = node("QLinearConv", &ins, &["y"], vec![a_int("group", 0)]);
    let e = error(&one_node(n, inits.clone(), x()));
    assert_mentions(&e, &["QLinearConv_y", "group", "must be at least 1"]);
    // The com.microsoft QLinearGlobalAveragePool on a rank-2 input.
    let n = ms(node(
        "QLinearGlobalAveragePool",
        &["x", "xs", "xz", "ys", "yz"],
        &["y"],
        vec![a_int("channels_last", 1)],
    ));
    let e = error(&one_node(n, inits, vec![vi("x", DataType::Uint8, &[2, 3])]));
    assert_mentions(
        &e,
        &["QLinearGlobalAveragePool_y", "input 0 (\"X\")", "rank >= 3"],
    );
}

#[test]
fn qgemm_with_a_scale_but_no_zero_point_is_unsupported() {
    let inits = vec![
        t("as", &[], vec![0.02f32]),
        t("az", &[], vec![128u8]),
        t("b", &[4, 3], vec![1i8; 12]),
        t("bs", &[], vec![0.1f32]),
        t("bz", &[], vec![0i8]),
        t("ys", &[], vec![0.1f32]),
    ];
    let n = ms(node(
        "QGemm",
        &["a", "as", "az", "b", "bs", "bz", "", "ys"],
        &["y"],
        vec![],
    ));
    let e = error(&one_node(n, inits, vec![vi("a", DataType::Uint8, &[2, 4])]));
    assert_mentions(
        &e,
        &["QGemm_y", "y_scale but no y_zero_point", "not supported"],
    );
}

#[test]
fn qlinear_concat_needs_triples() {
    let inits = vec![
        t("ys", &[], vec![0.1f32]),
        t("yz", &[], vec![0u8]),
        t("xs", &[], vec![0.1f32]),
    ];
    let n = ms(node(
        "QLinearConcat",
        &["ys", "yz", "a", "xs"],
        &["y"],
        vec![a_int("axis", 0)],
    ));
    let e = error(&one_node(n, inits, vec![vi("a", DataType::Uint8, &[2])]));
    assert_mentions(&e, &["QLinearConcat_y", "2 + 3k inputs", "got 4"]);
}

#[test]
fn other_com_microsoft_ops_are_unsupported_by_name() {
    let n = ms(node("QLinearSoftmax", &["a"], &["y"], vec![]));
    let e = error(&one_node(n, vec![], vec![vi("a", DataType::Uint8, &[2])]));
    assert_mentions(&e, &["QLinearSoftmax", "com.microsoft"]);
}
