//! The committed digits fixtures through the interpreter: the default suite's model checks.

mod common;
use common::*;

fn fixture(name: &str) -> std::path::PathBuf {
    fixtures().join("digits").join(name)
}

#[test]
fn digits_cnn_matches_torch() {
    check_float_model(&fixture("digits_cnn.onnx"));
}

#[test]
fn digits_cnn_b1_matches_torch() {
    check_float_model(&fixture("digits_cnn.b1.onnx"));
}

#[test]
fn digits_cnn_dynamo_bn_matches_torch() {
    check_float_model(&fixture("digits_cnn.dynamo_bn.onnx"));
}

#[test]
fn digits_cnn_jit_matches_torch() {
    check_float_model_jit(&fixture("digits_cnn.onnx"));
}

#[test]
fn digits_cnn_b1_jit_matches_torch() {
    check_float_model_jit(&fixture("digits_cnn.b1.onnx"));
}

#[test]
fn digits_cnn_dynamo_bn_jit_matches_torch() {
    check_float_model_jit(&fixture("digits_cnn.dynamo_bn.onnx"));
}

#[test]
fn digits_cnn_jit_classifies_the_test_split() {
    let (out, _, _, _) = run_jit(&fixture("digits_cnn.onnx"));
    let labels = kestrel::tensor_io::read_npy(&fixture("digits_test_y.npy"))
        .unwrap()
        .to_i64_vec();
    let correct = out
        .to_f32_vec()
        .chunks(10)
        .zip(&labels)
        .filter(|(row, &y)| {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            best as i64 == y
        })
        .count();
    assert_eq!(correct, 360);
}

#[test]
fn digits_cnn_int8_matches_onnxruntime() {
    check_int8_model(&fixture("digits_cnn.int8.onnx"));
}

#[test]
fn digits_cnn_int8_jit_matches_onnxruntime() {
    check_int8_model_jit(&fixture("digits_cnn.int8.onnx"));
}

#[test]
fn digits_cnn_classifies_the_test_split() {
    let (out, _, _) = run_interp(&fixture("digits_cnn.onnx"));
    let labels = kestrel::tensor_io::read_npy(&fixture("digits_test_y.npy"))
        .unwrap()
        .to_i64_vec();
    let logits = out.to_f32_vec();
    let correct = logits
        .chunks(10)
        .zip(&labels)
        .filter(|(row, &y)| {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            best as i64 == y
        })
        .count();
    assert_eq!(labels.len(), 360);
    // The model card: 100 % on the test split.
    assert_eq!(correct, 360);
}

#[test]
fn digits_fixtures_round_trip_through_text() {
    for model in [
        "digits_cnn.onnx",
        "digits_cnn.b1.onnx",
        "digits_cnn.dynamo_bn.onnx",
        "digits_cnn.int8.onnx",
    ] {
        check_text_round_trip(&fixture(model));
    }
}
