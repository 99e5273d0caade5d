//! The rate of one JIT-compiled f32 MatMul `C[m×n] = A[m×k] · B[k×n]` on this host (the
//! full-width kernels unless `KESTREL_WIDE_KERNELS=0`), B a run-time input read in place, A
//! constant or an input; best of 20 runs after 3 warm-ups, 1 thread. For splitting a layer's
//! time into its GEMM and the code around it (docs/PERFORMANCE.md, "Where the float models still
//! miss onnxruntime").
//!
//!     cargo run --release -p kestrel-backends --example gemm_rate -- M K N [const-A: 0|1]

use kestrel_backends::jit::{compile, JitOptions};
use kestrel_ir::testing::{Random, XorShift64};
use kestrel_ir::*;
use std::time::Instant;

fn main() {
    let args: Option<Vec<usize>> = std::env::args().skip(1).map(|a| a.parse().ok()).collect();
    let (m, k, n, args) = match args.as_deref() {
        Some(&[m, k, n, ref rest @ ..])
            if rest.len() <= 1
                && m.checked_mul(k)
                    .and_then(|x| x.checked_mul(n))
                    .is_some_and(|x| x > 0) =>
        {
            (m, k, n, rest.to_vec())
        }
        _ => {
            eprintln!("usage: gemm_rate M K N [const-A: 0|1] (positive whole numbers)");
            std::process::exit(2);
        }
    };
    let const_a = args.first() == Some(&1);
    let mut g = Graph::new("mm");
    let mut inputs = Vec::new();
    let a_data = XorShift64::seeded(1).tensor_f32(&[m, k], -1.0, 1.0);
    let a = if const_a {
        g.add_const("a", a_data)
    } else {
        inputs.push(a_data);
        g.add_input("a", TensorType::known(DType::F32, &[m, k]))
    };
    let b = g.add_input("b", TensorType::known(DType::F32, &[k, n]));
    inputs.push(XorShift64::seeded(3).tensor_f32(&[k, n], -1.0, 1.0));
    let y = g.add(Op::MatMul, &[a, b], "mm").expect("a valid MatMul");
    g.add_output("y", y);
    let model = compile(&g, &JitOptions::with_threads(1)).expect("compiles");
    for _ in 0..3 {
        model.run(&inputs).expect("runs");
    }
    let best = (0..20)
        .map(|_| {
            let t = Instant::now();
            model.run(&inputs).expect("runs");
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min);
    println!(
        "m {m} k {k} n {n}: {:.3} ms, {:.1} GFLOP/s",
        best * 1e3,
        2.0 * (m * k * n) as f64 / best / 1e9
    );
}
