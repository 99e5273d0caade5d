//! Generated code calls nothing outside itself: whole models lowered into an object file (the same
//! `lower` the JIT uses) leave no undefined symbol — no libm, no Cranelift libcalls, no Rust helpers.

mod common;

use cranelift_codegen::settings::{self, Configurable};
use cranelift_object::{ObjectBuilder, ObjectModule};
use kestrel_backends::jit::{self, IsaFlags, JitOptions};
use object::{Object, ObjectSymbol};
use std::path::Path;

/// Undefined symbols of the host object file holding `model`'s generated code, lowered single
/// threaded and with every splittable node split into tasks (which adds the indirect call of the
/// host's parallel-for and the addresses of task functions).
fn undefined_symbols(model: &Path) -> Vec<String> {
    let mut all = lowered_undefined_symbols(model, &JitOptions::default());
    let split = JitOptions {
        threads: 4,
        min_task_macs: 1,
        im2col_block_bytes: 64 * 1024,
        ..Default::default()
    };
    all.extend(lowered_undefined_symbols(model, &split));
    all
}

fn lowered_undefined_symbols(model: &Path, opts: &JitOptions) -> Vec<String> {
    let mut g = common::load(model);
    kestrel::driver::fold_for_codegen(&mut g, model).unwrap();
    let mut fb = settings::builder();
    fb.set("opt_level", "none").unwrap();
    fb.set("is_pic", "true").unwrap();
    let isa = cranelift_native::builder()
        .unwrap()
        .finish(settings::Flags::new(fb))
        .unwrap();
    let flags = IsaFlags::from_isa(&*isa);
    let builder =
        ObjectBuilder::new(isa, "kestrel", cranelift_module::default_libcall_names()).unwrap();
    let mut module = ObjectModule::new(builder);
    jit::lower(&mut module, &g, &flags, "kestrel", opts)
        .unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let bytes = module.finish().emit().unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    // The check reads real symbols: the entry function must be there, defined.
    assert!(
        file.symbols()
            .any(|s| !s.is_undefined() && s.name() == Ok("kestrel_entry")),
        "{}: no kestrel_entry symbol",
        model.display()
    );
    file.symbols()
        .filter(|s| s.is_undefined())
        .filter_map(|s| s.name().ok().map(str::to_string))
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn digits_model_code_imports_nothing() {
    let model = common::fixtures().join("digits/digits_cnn.b1.onnx");
    assert_eq!(undefined_symbols(&model), Vec::<String>::new());
}

/// The shared models cover exp/erf/tanh/sigmoid/hard-swish, softmax, layer norm, pools, resize-free
/// data movement and GEMMs of every shape class.
#[test]
fn shared_model_code_imports_nothing() {
    let Some(dir) = common::shared_models() else {
        eprintln!("KESTREL_MODELS is not set: checking only the digits fixture");
        return;
    };
    for rel in [
        "torchvision/resnet18.onnx",
        "torchvision/mobilenet_v3_small.onnx",
        "torchvision/efficientnet_b0.onnx",
        "torchvision/squeezenet1_1.onnx",
        "torchvision/vit_tiny_16.onnx",
    ] {
        let model = common::shared_model(&dir, rel);
        assert_eq!(undefined_symbols(&model), Vec::<String>::new(), "{rel}");
    }
}
