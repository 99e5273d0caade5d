//! The JIT's polynomial transcendentals over the whole f32 range against f64:
//! |jit - exact| <= 1e-6 |exact| + 1e-7 (NaN exactly where the exact result is NaN, infinities
//! equal). Every 61st bit pattern is checked (about 70 million inputs per function), through the
//! vector path and, for the last elements of each batch, the scalar tail.

use kestrel_backends::jit::{compile, JitOptions};
use kestrel_ir::{Graph, Op, Tensor, TensorType, UnaryOp};

const BATCH: usize = 1 << 20;
const STRIDE: u64 = 61;

fn check(op: Op, exact: fn(f64) -> f64, name: &str) {
    let mut g = Graph::new(name);
    // 3 extra elements so every batch ends in the scalar tail.
    let n = BATCH + 3;
    let x = g.add_input("x", TensorType::known(kestrel_ir::DType::F32, &[n]));
    let y = g.add(op, &[x], "f").unwrap();
    g.add_output("y", y);
    let m = compile(&g, &JitOptions::default()).unwrap();
    let mut worst = (0.0f64, 0.0f32, 0.0f32, 0.0f64);
    let mut bits: u64 = 0;
    let mut inputs = vec![0f32; n];
    let mut out = vec![0u8; n * 4];
    while bits < (1u64 << 32) {
        for v in inputs.iter_mut() {
            *v = f32::from_bits(bits as u32);
            bits += STRIDE;
        }
        let in_bytes: Vec<u8> = inputs.iter().flat_map(|v| v.to_le_bytes()).collect();
        m.run_into(&[&in_bytes], &mut [&mut out]).unwrap();
        for (i, &xv) in inputs.iter().enumerate() {
            let got = f32::from_le_bytes(out[i * 4..i * 4 + 4].try_into().unwrap());
            let want = exact(xv as f64);
            if want.is_nan() || got.is_nan() {
                assert!(
                    want.is_nan() && got.is_nan(),
                    "{name}({xv:e}) = {got}, want {want}"
                );
                continue;
            }
            if (want as f32).is_infinite() || got.is_infinite() {
                assert_eq!(got, want as f32, "{name}({xv:e})");
                continue;
            }
            let err = (got as f64 - want).abs();
            let tol = 1e-6 * want.abs() + 1e-7;
            let ratio = err / tol;
            if ratio > worst.0 {
                worst = (ratio, xv, got, want);
            }
            assert!(
                err <= tol,
                "{name}({xv:e}) = {got:e}, want {want:e}: error {err:e} > {tol:e}"
            );
        }
    }
    eprintln!(
        "{name}: worst error/tolerance {:.3} at x = {:e} (got {:e}, want {:e})",
        worst.0, worst.1, worst.2, worst.3
    );
}

#[test]
fn exp_is_accurate_over_the_f32_range() {
    check(Op::Unary(UnaryOp::Exp), f64::exp, "exp");
}

#[test]
fn log_is_accurate_over_the_f32_range() {
    check(Op::Unary(UnaryOp::Log), f64::ln, "log");
}

#[test]
fn tanh_is_accurate_over_the_f32_range() {
    check(Op::Unary(UnaryOp::Tanh), f64::tanh, "tanh");
}

#[test]
fn sigmoid_is_accurate_over_the_f32_range() {
    check(
        Op::Unary(UnaryOp::Sigmoid),
        |x| 1.0 / (1.0 + (-x).exp()),
        "sigmoid",
    );
}

#[test]
fn erf_is_accurate_over_the_f32_range() {
    check(
        Op::Unary(UnaryOp::Erf),
        kestrel_backends::interp::erf,
        "erf",
    );
}

#[test]
fn edge_values() {
    let cases: &[(UnaryOp, f32, f32)] = &[
        (UnaryOp::Exp, f32::NEG_INFINITY, 0.0),
        (UnaryOp::Exp, f32::INFINITY, f32::INFINITY),
        (UnaryOp::Exp, 0.0, 1.0),
        (UnaryOp::Log, 0.0, f32::NEG_INFINITY),
        (UnaryOp::Log, f32::INFINITY, f32::INFINITY),
        (UnaryOp::Log, 1.0, 0.0),
        (UnaryOp::Tanh, f32::INFINITY, 1.0),
        (UnaryOp::Tanh, f32::NEG_INFINITY, -1.0),
        (UnaryOp::Erf, f32::INFINITY, 1.0),
        (UnaryOp::Erf, f32::NEG_INFINITY, -1.0),
        (UnaryOp::Sigmoid, f32::NEG_INFINITY, 0.0),
        (UnaryOp::Sigmoid, f32::INFINITY, 1.0),
    ];
    for &(u, x, want) in cases {
        let mut g = Graph::new("edge");
        let xi = g.add_input("x", TensorType::known(kestrel_ir::DType::F32, &[5]));
        let y = g.add(Op::Unary(u), &[xi], "f").unwrap();
        g.add_output("y", y);
        let m = compile(&g, &JitOptions::default()).unwrap();
        let out = m.run(&[Tensor::from_vec(vec![5], vec![x; 5])]).unwrap();
        for got in out[0].to_f32_vec() {
            assert_eq!(got, want, "{}({x})", u.name());
        }
    }
}
