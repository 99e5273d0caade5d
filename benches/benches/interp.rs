//! Import and reference-interpreter latency on the committed digits model.
//! `cargo bench -p kestrel-benches --bench interp`

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/digits")
        .join(name)
}

fn bench(c: &mut Criterion) {
    let model = fixture("digits_cnn.b1.onnx");
    c.bench_function("import digits_cnn.b1", |b| {
        b.iter(|| kestrel::onnx::load_model(&model).unwrap())
    });
    let graph = kestrel::onnx::load_model(&model).unwrap().graph;
    let arrays = kestrel::tensor_io::read_npz(&fixture("digits_cnn.b1.io.npz")).unwrap();
    let input = arrays.into_iter().find(|(n, _)| n == "input").unwrap().1;
    c.bench_function("interp digits_cnn.b1", |b| {
        b.iter(|| kestrel_backends::interp::run(&graph, std::slice::from_ref(&input)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
