//! Gemm nodes with fewer rows than tasks (a batch-1 classifier) split by columns of B and C
//! (`ops::matmul`, docs/JIT.md "Threads"): each task multiplies its own packed columns. 2 and 3
//! tasks give the one-task bits, on the pool and serially, and the interpreter's values, for B
//! in either orientation, alpha, and a column bias scaled by beta or not; column counts that do
//! not fill the 32-column parts.

use kestrel_backends::interp;
use kestrel_backends::jit::{compile, ops, JitOptions};
use kestrel_ir::testing::{check_close, Random, XorShift64};
use kestrel_ir::*;

fn tensor(dims: &[usize], seed: u64) -> Tensor {
    XorShift64::seeded(seed).tensor_f32(dims, -1.0, 1.0)
}

#[test]
fn one_row_gemms_split_by_columns() {
    for (m, n, kk, trans_b, alpha, beta, bias) in [
        (1, 1000, 96, true, 1.0, 1.0, true),
        (1, 100, 40, false, 0.5, 2.0, true),
        (2, 70, 33, true, 1.0, 1.0, false),
        (1, 65, 8, false, 1.0, 0.0, true),
    ] {
        let mut g = Graph::new("gemv");
        let x = g.add_input("x", TensorType::known(DType::F32, &[m, kk]));
        let bd = if trans_b { [n, kk] } else { [kk, n] };
        let b = g.add_const("b", tensor(&bd, 2));
        let mut ins = vec![x, b];
        if bias {
            ins.push(g.add_const("c", tensor(&[n], 3)));
        }
        let a = GemmAttrs {
            alpha: F32(alpha),
            beta: F32(beta),
            trans_a: false,
            trans_b,
            ..Default::default()
        };
        let y = g.add(Op::Gemm(a), &ins, "gemm").unwrap();
        g.add_output("y", y);
        let input = [tensor(&[m, kk], 1)];
        let one = compile(&g, &JitOptions::default())
            .unwrap()
            .run(&input)
            .unwrap();
        for threads in [2, 3] {
            let opts = JitOptions {
                threads,
                min_task_macs: 1,
                ..Default::default()
            };
            let tasks = ops::task_count(&g, &g.nodes[0], &opts);
            let parts = n.div_ceil(n.div_ceil(threads).next_multiple_of(32));
            assert_eq!(tasks, parts.min(threads), "n {n}, {threads} threads");
            let model = compile(&g, &opts).unwrap();
            assert_eq!(model.run(&input).unwrap(), one, "n {n}, {threads} tasks");
            assert_eq!(model.run_serial(&input).unwrap(), one, "n {n}, serially");
        }
        let want = interp::run(&g, &input).unwrap();
        let close = check_close(&one[0].to_f32_vec(), &want[0].to_f32_vec(), 1e-5);
        assert!(close.is_ok(), "n {n}: {}", close.unwrap_err());
    }
}

/// A fused Gemm (bias, residual, activation) split by columns: each task finishes the columns its
/// GEMM computed, never another task's (run repeatedly: a task finishing columns still being
/// computed would show as a difference).
#[test]
fn fused_one_row_gemms_finish_their_own_columns() {
    let (n, kk) = (1000, 64);
    let mut g = Graph::new("fused_gemv");
    let x = g.add_input("x", TensorType::known(DType::F32, &[1, kk]));
    let r = g.add_input("r", TensorType::known(DType::F32, &[1, n]));
    let b = g.add_const("b", tensor(&[n, kk], 2));
    let c = g.add_const("c", tensor(&[n], 3));
    let a = GemmAttrs {
        trans_b: true,
        epilogue: Epilogue {
            act: Some(UnaryOp::HardSwish),
            residual: true,
            channel_scale: false,
        },
        ..Default::default()
    };
    let y = g.add(Op::Gemm(a), &[x, b, c, r], "gemm").unwrap();
    g.add_output("y", y);
    let input = [tensor(&[1, kk], 1), tensor(&[1, n], 4)];
    let one = compile(&g, &JitOptions::default())
        .unwrap()
        .run(&input)
        .unwrap();
    let opts = JitOptions {
        threads: 2,
        min_task_macs: 1,
        ..Default::default()
    };
    assert_eq!(ops::task_count(&g, &g.nodes[0], &opts), 2);
    let model = compile(&g, &opts).unwrap();
    for _ in 0..50 {
        assert_eq!(model.run(&input).unwrap(), one);
    }
    let want = interp::run(&g, &input).unwrap();
    let close = check_close(&one[0].to_f32_vec(), &want[0].to_f32_vec(), 1e-5);
    assert!(close.is_ok(), "{}", close.unwrap_err());
}
