//! Quantization-aware training (docs/TRAINING.md "Quantization-aware training"): the training
//! step of a fake-quantized model on the JIT against the interpreter, and, with
//! `KESTREL_MODELS`, the results docs/DISTILLATION.md states: on digits_student_scratch and
//! mnist5k_cnn, QAT ends at or above post-training quantization with 8-bit and 4-bit weights,
//! and with 4-bit weights wins back at least half of what post-training quantization lost.

mod common;
use common::*;

use kestrel::qat::{self, QatOptions};
use kestrel::train::{self, data::Dataset, eval::Forward, Objective, TrainOptions};
use kestrel_ir::Tensor;
use kestrel_passes::autodiff::{
    step_graph, training_graph_with, DecayOn, Loss, Optimizer, ParamSelection, TrainingOptions,
};
use kestrel_passes::quantize::QuantizeOptions;
use std::path::Path;

fn four_bits() -> QatOptions {
    QatOptions {
        quantize: QuantizeOptions {
            weight_bits: 4,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// One AdamW step of digits_cnn quantized with 4-bit weights and made trainable, at batch 16:
/// every float weight and bias is trained (the grid bounds and quantization parameters are
/// not), and every output of the JIT is within 1e-4 relative of the interpreter.
#[test]
fn qat_training_step_on_the_jit_matches_the_interpreter() {
    let digits = fixtures().join("digits");
    let path = digits.join("digits_cnn.onnx");
    let io = digits.join("digits_cnn.io.npz");
    let (images, _) = reference(&io);
    let labels = kestrel::tensor_io::read_npy(&digits.join("digits_test_y.npy")).unwrap();
    const B: usize = 16;
    let (_, prepared) = qat::prepare(&load(&path), &path, &io, &four_bits(), 1).unwrap();
    let mut g = train::step::bind_batch(&prepared.graph, B, &path).unwrap();
    let weights: Vec<String> = prepared.weights.iter().map(|w| w.name.clone()).collect();
    train::step::fold_keeping(&mut g, &path, &weights).unwrap();
    let tg = training_graph_with(
        &g,
        &ParamSelection::FloatConstantsExcept(prepared.frozen()),
        &Loss::cross_entropy(),
        &TrainingOptions::default(),
    )
    .unwrap();
    let mut trained: Vec<&str> = tg.params.iter().map(|p| p.name.as_str()).collect();
    trained.sort();
    let mut want: Vec<&str> = weights
        .iter()
        .chain(prepared.biases.iter().map(|b| &b.name))
        .map(String::as_str)
        .collect();
    want.sort();
    assert_eq!(trained, want, "the trained parameters");

    let opt = Optimizer::adamw(0.01);
    let mut sg = step_graph(&tg, opt, DecayOn::Weights).unwrap();
    kestrel::driver::fold_for_codegen(&mut sg.graph, &path).unwrap();
    let mut feed = vec![take_rows(&images, B); sg.graph.inputs.len()];
    feed[sg.loss_inputs[0].1] = Tensor::from_vec(vec![B], labels.to_i64_vec()[..B].to_vec());
    for c in sg.carried() {
        feed[c.input_index] = c.init.clone();
    }
    for ((_, i), v) in sg.hyper.iter().zip(opt.hyper_values(1e-3, 1)) {
        feed[*i] = Tensor::scalar(v as f32);
    }
    let want = assert_jit_matches_interp(&sg.graph, &feed, 1e-4, "QAT step");
    // A gradient reached every weight through its fake quantization.
    for p in &sg.params {
        let grad = &want[tg
            .params
            .iter()
            .find(|t| t.name == p.name)
            .unwrap()
            .grad_output];
        assert!(
            grad.to_f32_vec().iter().any(|&d| d != 0.0),
            "no gradient reached {}",
            p.name
        );
    }
}

fn shared_data(dir: &Path, g: &kestrel_ir::Graph, x: &str, y: &str) -> Dataset {
    let classes = train::classes(g, Path::new(x)).unwrap();
    Dataset::load(
        g,
        &shared_model(dir, x),
        Some(&shared_model(dir, y)),
        classes,
    )
    .unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn qat_wins_back_what_post_training_quantization_loses_on_the_shared_models() {
    let Some(dir) = shared_models() else {
        return;
    };
    for name in ["digits/digits_student_scratch", "mnist5k/mnist5k_cnn"] {
        let path = shared_model(&dir, &format!("{name}.onnx"));
        let set = name.split('/').next().unwrap();
        let model = load(&path);
        let data = shared_data(
            &dir,
            &model,
            &format!("{set}/{set}_train_x.npy"),
            &format!("{set}/{set}_train_y.npy"),
        );
        let test = shared_data(
            &dir,
            &model,
            &format!("{set}/{set}_test_x.npy"),
            &format!("{set}/{set}_test_y.npy"),
        );
        let float = Forward::compile(&model, &path, 64, 2)
            .unwrap()
            .accuracy(&test)
            .unwrap();
        let right = |a: f64| (a * test.samples as f64).round() as i64;
        // The defaults of `--qat`: 10 epochs at 1e-4 (cli/train.rs QAT_EPOCHS, QAT_LR).
        let opts = TrainOptions {
            epochs: 10,
            lr: 1e-4,
            threads: 2,
            progress: false,
            ..Default::default()
        };
        for bits in [8, 4] {
            let qat_options = QatOptions {
                quantize: QuantizeOptions {
                    weight_bits: bits,
                    ..Default::default()
                },
                ..Default::default()
            };
            let t = qat::train(
                &model,
                &path,
                &data,
                &Objective::Labels,
                Some(&test),
                &opts,
                &qat_options,
            )
            .unwrap();
            let ptq = t.ptq_accuracy.unwrap();
            let after = Forward::compile(&t.graph, &path, 64, 2)
                .unwrap()
                .accuracy(&test)
                .unwrap();
            eprintln!(
                "{name} {bits}-bit weights: float {}, post-training {}, QAT {} of {}",
                right(float),
                right(ptq),
                right(after),
                test.samples
            );
            assert!(after >= ptq, "{name} {bits} bits: QAT {after} < PTQ {ptq}");
            if bits == 4 {
                let lost = right(float) - right(ptq);
                assert!(
                    lost > 0,
                    "{name}: 4-bit post-training quantization lost nothing"
                );
                assert!(
                    2 * (right(after) - right(ptq)) >= lost,
                    "{name}: QAT won back {} of the {lost} images lost",
                    right(after) - right(ptq)
                );
            }
        }
    }
}
