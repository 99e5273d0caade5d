//! Throughput of the JIT's transcendental functions: one single-threaded element-wise node over
//! 2^20 f32 elements per op (inputs in the range where each op is usually evaluated), timed in
//! thread CPU time (the machine is shared). `neg` is the memory-traffic floor.
//! Run: `cargo bench -p kestrel-backends --bench transcendental`; time per iteration in ms is
//! about ns per element (2^20 elements).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kestrel_backends::jit::{compile, JitOptions};
use kestrel_ir::testing::XorShift32;
use kestrel_ir::{DType, Graph, Op, TensorType, UnaryOp};
use std::time::Duration;

// Only its `thread_cpu_seconds` is used here (the module allows dead code).
#[path = "../tests/gemm_harness/mod.rs"]
mod gemm_harness;
use gemm_harness::thread_cpu_seconds;

const N: usize = 1 << 20;

/// `N` pseudo-random values uniform in `[lo, hi)` as little-endian bytes.
fn inputs(lo: f32, hi: f32) -> Vec<u8> {
    let mut rng = XorShift32::from_state(0x2545_f491);
    (0..N)
        .flat_map(|_| rng.uniform_f32(lo, hi).to_le_bytes())
        .collect()
}

fn bench(c: &mut Criterion) {
    let cases: [(&str, Op, f32, f32); 6] = [
        ("neg", Op::Unary(UnaryOp::Neg), -10.0, 10.0),
        ("exp", Op::Unary(UnaryOp::Exp), -10.0, 10.0),
        ("sigmoid", Op::Unary(UnaryOp::Sigmoid), -10.0, 10.0),
        ("tanh", Op::Unary(UnaryOp::Tanh), -5.0, 5.0),
        ("erf", Op::Unary(UnaryOp::Erf), -4.0, 4.0),
        (
            "gelu",
            Op::Unary(UnaryOp::Gelu { tanh_approx: false }),
            -6.0,
            6.0,
        ),
    ];
    let mut group = c.benchmark_group("transcendental");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (name, op, lo, hi) in cases {
        let mut g = Graph::new(name);
        let x = g.add_input("x", TensorType::known(DType::F32, &[N]));
        let y = g.add(op, &[x], "f").unwrap();
        g.add_output("y", y);
        let m = compile(&g, &JitOptions::default()).unwrap();
        let input = inputs(lo, hi);
        let mut out = vec![0u8; N * 4];
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu_seconds();
                for _ in 0..iters {
                    m.run_into(&[&input], &mut [&mut out]).unwrap();
                }
                Duration::from_secs_f64(thread_cpu_seconds() - start)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
