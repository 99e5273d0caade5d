//! Host shared objects (`kestrel compile`, `--cpu native`) loaded with `kestrel_runtime::Model`
//! compute exactly what the JIT computes, bit for bit, for the same graph after the same pipeline
//! (O1, the default of both): the digits fixtures always, the shared float models under
//! `KESTREL_MODELS`. Also split into tasks run on a 2-thread pool, and serially.
//!
//! PIC (the `.so`) against non-PIC (the JIT) only changes addressing, never arithmetic. The
//! lane-by-lane rewrite used for riscv64 without V (`kestrel_backends::aot::scalarize`) is checked here
//! too, natively: each lane does the same IEEE operation, so the bits are the same.

mod common;

use kestrel::aot::{self, AotOptions};
use kestrel_backends::jit::{self, JitOptions};
use kestrel_runtime::{Model, TensorRef, ThreadPool};
use std::path::Path;
use std::time::Instant;

fn check_model(model: &Path) {
    let mut g = common::load(model);
    let (input, _) = common::reference(&common::io_of(model));
    kestrel::driver::bind_shapes_from_inputs(&mut g, std::slice::from_ref(&input), model).unwrap();
    kestrel_passes::run_pipeline(
        &mut g,
        &kestrel_passes::PipelineOptions {
            pipeline: "O1".into(),
            ..Default::default()
        },
        &kestrel::driver::pass_context(),
    )
    .unwrap();
    let mut folded = g.clone();
    kestrel::driver::fold_for_codegen(&mut folded, model).unwrap();
    let jit_out = jit::compile(&folded, &JitOptions::default())
        .unwrap()
        .run(std::slice::from_ref(&input))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The last case runs the lane-by-lane rewrite of riscv64 without V natively.
    for (tasks, threads, scalarize) in [(1, 1, false), (2, 2, false), (2, 1, false), (2, 2, true)] {
        let so = dir.path().join(format!("m{tasks}{scalarize}.so"));
        let opts = AotOptions {
            tasks,
            scalarize,
            ..AotOptions::default()
        };
        let out = aot::compile_graph(&g, &opts, &so, &model.display().to_string())
            .unwrap_or_else(|e| panic!("{}: {e:#}", model.display()));
        let start = Instant::now();
        let m = Model::load(&so).unwrap();
        let load = start.elapsed();
        let info = &m.inputs()[0];
        let refs = [TensorRef {
            dtype: info.dtype,
            shape: &info.shape,
            data: &input.bytes()[..],
        }];
        let pool = (threads > 1).then(|| ThreadPool::new(threads).unwrap());
        let start = Instant::now();
        let got = m.run_to_vec(pool.as_ref(), &refs).unwrap();
        let run = start.elapsed();
        eprintln!(
            "{} [so, --tasks {tasks}, {threads} thread(s), scalarized {scalarize}]: file {} B (code {} B, rodata {} B), \
             workspace {} B, codegen {:.3} s, link {:.3} s, load {:.2} ms, one run {:.4} s",
            model.display(),
            out.sizes.file,
            out.sizes.code,
            out.sizes.rodata,
            out.info.workspace_size,
            out.codegen_time.as_secs_f64(),
            out.link_time.as_secs_f64(),
            load.as_secs_f64() * 1e3,
            run.as_secs_f64()
        );
        assert_eq!(got.len(), jit_out.len());
        for (a, b) in got.iter().zip(&jit_out) {
            assert!(
                a.as_slice() == &b.bytes()[..],
                "{}: .so (--tasks {tasks}, {threads} threads, scalarized {scalarize}) differs from the JIT",
                model.display()
            );
        }
    }
}

#[test]
fn digits_so_equals_jit() {
    for name in [
        "digits_cnn.onnx",
        "digits_cnn.b1.onnx",
        "digits_cnn.dynamo_bn.onnx",
    ] {
        check_model(&common::fixtures().join("digits").join(name));
    }
}

#[test]
fn shared_model_so_equals_jit() {
    let Some(dir) = common::shared_models() else {
        eprintln!("KESTREL_MODELS is not set: checking only the digits fixtures");
        return;
    };
    for rel in [
        "torchvision/resnet18.onnx",
        "torchvision/mobilenet_v2.onnx",
        "torchvision/mobilenet_v3_small.onnx",
        "torchvision/efficientnet_b0.onnx",
        "torchvision/squeezenet1_1.onnx",
        "torchvision/vit_tiny_16.onnx",
    ] {
        check_model(&common::shared_model(&dir, rel));
    }
}
