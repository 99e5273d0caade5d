//! Checks on the big shared models. They run when `KESTREL_MODELS` names the models folder
//! (`.ci/run` sets it) and fail, not skip, when it is set but a model is missing.

mod common;
use common::*;

macro_rules! float_model {
    ($name:ident, $path:expr) => {
        #[test]
        fn $name() {
            let Some(dir) = shared_models() else {
                eprintln!("KESTREL_MODELS is not set: not checking {}", $path);
                return;
            };
            let model = shared_model(&dir, $path);
            check_text_round_trip(&model);
            check_float_model(&model);
            check_float_model_jit(&model);
        }
    };
}

macro_rules! int8_model {
    ($name:ident, $path:expr) => {
        #[test]
        fn $name() {
            let Some(dir) = shared_models() else {
                eprintln!("KESTREL_MODELS is not set: not checking {}", $path);
                return;
            };
            let model = shared_model(&dir, $path);
            check_text_round_trip(&model);
            check_int8_model(&model);
            check_int8_model_jit(&model);
        }
    };
}

float_model!(digits_cnn, "digits/digits_cnn.onnx");
float_model!(digits_cnn_b1, "digits/digits_cnn.b1.onnx");
float_model!(digits_cnn_dynamo_bn, "digits/digits_cnn.dynamo_bn.onnx");
float_model!(digits_teacher, "digits/digits_teacher.onnx");
float_model!(digits_student, "digits/digits_student.onnx");
float_model!(digits_student_scratch, "digits/digits_student_scratch.onnx");
float_model!(mnist5k_cnn, "mnist5k/mnist5k_cnn.onnx");
float_model!(resnet18, "torchvision/resnet18.onnx");
float_model!(mobilenet_v2, "torchvision/mobilenet_v2.onnx");
float_model!(
    mobilenet_v2_dynamo_bn,
    "torchvision/mobilenet_v2.dynamo_bn.onnx"
);
float_model!(mobilenet_v3_small, "torchvision/mobilenet_v3_small.onnx");
float_model!(efficientnet_b0, "torchvision/efficientnet_b0.onnx");
float_model!(squeezenet1_1, "torchvision/squeezenet1_1.onnx");
float_model!(vit_tiny_16, "torchvision/vit_tiny_16.onnx");
float_model!(
    vit_tiny_16_decomposed_ln,
    "torchvision/vit_tiny_16.decomposed_ln.onnx"
);
int8_model!(digits_cnn_int8, "digits/digits_cnn.int8.onnx");
int8_model!(digits_teacher_int8, "digits/digits_teacher.int8.onnx");
int8_model!(mnist5k_cnn_int8, "mnist5k/mnist5k_cnn.int8.onnx");
int8_model!(resnet18_int8, "torchvision/resnet18.int8.onnx");

/// Every model in the folder is covered by a test above.
#[test]
fn every_shared_model_is_checked() {
    let Some(dir) = shared_models() else {
        eprintln!("KESTREL_MODELS is not set: not checking that every shared model has a test");
        return;
    };
    let source = include_str!("shared_models.rs");
    for sub in ["digits", "mnist5k", "torchvision"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().to_string();
            if name.ends_with(".onnx") {
                let rel = format!("\"{sub}/{name}\"");
                assert!(
                    source.contains(&rel),
                    "{rel} has no check in shared_models.rs"
                );
            }
        }
    }
}
