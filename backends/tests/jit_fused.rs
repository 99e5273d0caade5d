//! Property tests: conv and gemm with fused epilogues (every activation, with and without a
//! residual and a bias; dense, grouped and depthwise convs) on random shapes, JIT vs interpreter.

use kestrel_backends::interp;
use kestrel_backends::jit::{compile, JitOptions};
use kestrel_ir::testing::{Random, XorShift64};
use kestrel_ir::*;
use proptest::prelude::*;

/// Deterministic pseudo-random f32 values in [-4, 4).
fn tensor(dims: &[usize], seed: u64) -> Tensor {
    XorShift64::seeded(seed).tensor_f32(dims, -4.0, 4.0)
}

fn agree(g: &Graph, inputs: &[Tensor], tol: f32) -> Result<(), TestCaseError> {
    let want = interp::run(g, inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
    // One thread, and every splittable node split into 3 tasks with one-row im2col blocks: each
    // task must apply the epilogue to exactly the part it computed.
    let split = JitOptions {
        threads: 3,
        min_task_macs: 1,
        im2col_block_bytes: 4,
        ..Default::default()
    };
    for opts in [JitOptions::default(), split] {
        let m = compile(g, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = m
            .run(inputs)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (a, b) in got.iter().zip(&want) {
            prop_assert_eq!(a.dims(), b.dims());
            for (x, y) in a.to_f32_vec().iter().zip(b.to_f32_vec()) {
                let ok = (x - y).abs() <= tol * y.abs().max(1.0);
                prop_assert!(ok, "jit ({} threads) {} vs interp {}", opts.threads, x, y);
            }
        }
    }
    Ok(())
}

fn activations() -> Vec<Option<UnaryOp>> {
    vec![
        None,
        Some(UnaryOp::Relu),
        Some(UnaryOp::Clip {
            min: F32(0.0),
            max: F32(6.0),
        }),
        Some(UnaryOp::Clip {
            min: F32(-1.0),
            max: F32(0.5),
        }),
        Some(UnaryOp::HardSwish),
        Some(UnaryOp::HardSigmoid {
            alpha: F32(1.0 / 6.0),
            beta: F32(0.5),
        }),
        Some(UnaryOp::Sigmoid),
        Some(UnaryOp::Silu),
        Some(UnaryOp::Gelu { tanh_approx: false }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn conv_epilogue(
        n in 1usize..3, c in 1usize..5, m in 1usize..6, h in 1usize..9, w in 1usize..9,
        k in 1usize..4, stride in 1usize..3, pad in 0usize..2, group_pick in 0usize..3,
        bias in any::<bool>(), residual in any::<bool>(),
        act in prop::sample::select(activations()), seed in any::<u64>(),
    ) {
        prop_assume!(act.is_some() || residual);
        let (group, c, m) = match group_pick {
            0 => (1, c, m),
            1 => (c, c, c),
            _ => (2, 2 * c, 2 * m),
        };
        let a = ConvAttrs {
            strides: vec![stride, stride], pads: vec![pad; 4], group,
            epilogue: Epilogue { act, residual, channel_scale: false },
            ..Default::default()
        };
        let mut g = Graph::new("p");
        let x = g.add_input("x", TensorType::known(DType::F32, &[n, c, h, w]));
        let wv = g.add_const("w", tensor(&[m, c / group, k, k], seed + 1));
        let mut ins = vec![x, wv];
        if bias || residual {
            ins.push(g.add_const("b", tensor(&[m], seed + 2)));
        }
        // The output shape, from the plain conv.
        let plain = ConvAttrs { epilogue: Epilogue::default(), ..a.clone() };
        let Ok(probe) = g.add(Op::Conv(plain), &ins[..2], "probe") else { return Ok(()) };
        let od = g.ty(probe).dims().unwrap();
        let mut inputs = vec![tensor(&[n, c, h, w], seed)];
        if residual {
            ins.push(g.add_input("r", TensorType::known(DType::F32, &od)));
            inputs.push(tensor(&od, seed + 3));
        }
        let y = g.add(Op::Conv(a), &ins, "conv").unwrap();
        g.add_output("y", y);
        g.remove_dead_nodes();
        agree(&g, &inputs, 2e-4)?;
    }

    /// A squeeze-and-excitation scale fused into the conv (batch 1, group 1).
    #[test]
    fn conv_channel_scale(
        c in 1usize..9, m in 1usize..7, h in 1usize..8, w in 1usize..8, k in 1usize..4,
        pad in 0usize..2, residual in any::<bool>(),
        act in prop::sample::select(activations()), seed in any::<u64>(),
    ) {
        let a = ConvAttrs {
            pads: vec![pad; 4], group: 1,
            epilogue: Epilogue { act, residual, channel_scale: true },
            ..Default::default()
        };
        let mut g = Graph::new("p");
        let x = g.add_input("x", TensorType::known(DType::F32, &[1, c, h, w]));
        let wv = g.add_const("w", tensor(&[m, c, k, k], seed + 1));
        let b = g.add_const("b", tensor(&[m], seed + 2));
        let plain = ConvAttrs { epilogue: Epilogue::default(), ..a.clone() };
        let Ok(probe) = g.add(Op::Conv(plain), &[x, wv], "probe") else { return Ok(()) };
        let od = g.ty(probe).dims().unwrap();
        let mut ins = vec![x, wv, b];
        let mut inputs = vec![tensor(&[1, c, h, w], seed)];
        if residual {
            ins.push(g.add_input("r", TensorType::known(DType::F32, &od)));
            inputs.push(tensor(&od, seed + 3));
        }
        ins.push(g.add_input("s", TensorType::known(DType::F32, &[1, c, 1, 1])));
        inputs.push(tensor(&[1, c, 1, 1], seed + 4));
        let y = g.add(Op::Conv(a), &ins, "conv").unwrap();
        g.add_output("y", y);
        g.remove_dead_nodes();
        agree(&g, &inputs, 2e-4)?;
    }

    #[test]
    fn gemm_epilogue(
        m in 1usize..9, k in 1usize..12, n in 1usize..19, trans_b in any::<bool>(),
        c_kind in 0usize..3, residual in any::<bool>(),
        act in prop::sample::select(activations()), seed in any::<u64>(),
    ) {
        prop_assume!(act.is_some() || residual);
        let bd = if trans_b { [n, k] } else { [k, n] };
        let mut g = Graph::new("p");
        let a = g.add_input("a", TensorType::known(DType::F32, &[m, k]));
        let b = g.add_const("b", tensor(&bd, seed + 1));
        let mut ins = vec![a, b];
        match (c_kind, residual) {
            (1, _) | (0, true) => ins.push(g.add_const("c", tensor(&[n], seed + 2))),
            (2, _) => ins.push(g.add_const("c", tensor(&[m, 1], seed + 2))),
            _ => {}
        }
        let mut inputs = vec![tensor(&[m, k], seed)];
        if residual {
            ins.push(g.add_input("r", TensorType::known(DType::F32, &[m, n])));
            inputs.push(tensor(&[m, n], seed + 3));
        }
        let attrs = GemmAttrs { trans_b, epilogue: Epilogue { act, residual, channel_scale: false }, ..Default::default() };
        let y = g.add(Op::Gemm(attrs), &ins, "gemm").unwrap();
        g.add_output("y", y);
        agree(&g, &inputs, 2e-4)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A random map program (random ops over three inputs, one broadcast) on random shapes.
    #[test]
    fn map_program(
        rows in 1usize..5, cols in 1usize..13, bcast_rows in any::<bool>(),
        ops in prop::collection::vec((0usize..20, any::<u16>(), any::<u16>()), 1..10),
        seed in any::<u64>(),
    ) {
        let unary = [UnaryOp::Relu, UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::Neg, UnaryOp::Abs,
                     UnaryOp::Erf, UnaryOp::HardSwish, UnaryOp::Softsign, UnaryOp::Exp];
        let binary = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max, BinaryOp::Min,
                      BinaryOp::PRelu];
        let mut code = vec![MapInstr::Input(0), MapInstr::Input(1), MapInstr::Input(2),
                            MapInstr::Const(F32(0.75))];
        for (kind, a, b) in ops {
            let n = code.len() as u16;
            code.push(if kind < unary.len() {
                MapInstr::Unary(unary[kind], a % n)
            } else {
                MapInstr::Binary(binary[kind % binary.len()], a % n, b % n)
            });
        }
        let p = MapProgram { code };
        let mut g = Graph::new("p");
        let zd = if bcast_rows { vec![1, cols] } else { vec![rows, 1] };
        let x = g.add_input("x", TensorType::known(DType::F32, &[rows, cols]));
        let y = g.add_input("y", TensorType::known(DType::F32, &[rows, cols]));
        let z = g.add_input("z", TensorType::known(DType::F32, &zd));
        let out = g.add(Op::Map(p), &[x, y, z], "map").unwrap();
        g.add_output("out", out);
        let inputs = [tensor(&[rows, cols], seed), tensor(&[rows, cols], seed + 1), tensor(&zd, seed + 2)];
        // Exp of large values overflows the same way on both sides; compare relatively.
        agree(&g, &inputs, 1e-4)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Fused attention on random shapes (several row blocks, a partial block, keys not a multiple
    /// of the GEMM panel): JIT vs interpreter; 3 tasks and the unfused graph on the JIT give the
    /// serial result bit for bit.
    #[test]
    fn attention(
        batch in prop::collection::vec(1usize..3, 0..3), m in 1usize..41, d in 1usize..20,
        n in 1usize..70, dv in 1usize..20, scale in -1.0f32..1.0, seed in any::<u64>(),
    ) {
        let dims = |r: usize, c: usize| [batch.clone(), vec![r, c]].concat();
        let mut g = Graph::new("p");
        let q = g.add_input("q", TensorType::known(DType::F32, &dims(m, d)));
        let kt = g.add_input("k_t", TensorType::known(DType::F32, &dims(d, n)));
        let v = g.add_input("v", TensorType::known(DType::F32, &dims(n, dv)));
        let y = g.add(Op::Attention { scale: F32(scale) }, &[q, kt, v], "attention").unwrap();
        g.add_output("y", y);
        let inputs = [tensor(&dims(m, d), seed), tensor(&dims(d, n), seed + 1), tensor(&dims(n, dv), seed + 2)];
        // Scores reach |s| ~ 100 (d = 19, inputs in [-4, 4]): their f32 rounding, which depends
        // on the order of accumulation, moves the probabilities by ~1e-5 relative.
        agree(&g, &inputs, 1e-4)?;
        let serial = compile(&g, &JitOptions::default()).unwrap().run(&inputs).unwrap();
        let split = JitOptions { threads: 3, min_task_macs: 1, im2col_block_bytes: 4, ..Default::default() };
        let par = compile(&g, &split).unwrap().run(&inputs).unwrap();
        prop_assert_eq!(serial[0].to_f32_vec(), par[0].to_f32_vec());
        // The unfused form on the JIT gives the same bits (same micro-kernel, same order).
        let mut u = Graph::new("unfused");
        let q = u.add_input("q", TensorType::known(DType::F32, &dims(m, d)));
        let kt = u.add_input("k_t", TensorType::known(DType::F32, &dims(d, n)));
        let v = u.add_input("v", TensorType::known(DType::F32, &dims(n, dv)));
        let mut s = u.add(Op::MatMul, &[q, kt], "scores").unwrap();
        if scale != 1.0 {
            let c = u.add_const("scale", Tensor::scalar(scale));
            s = u.add(Op::Binary(BinaryOp::Mul), &[s, c], "scaled").unwrap();
        }
        let p = u.add(Op::Softmax { axis: -1 }, &[s], "p").unwrap();
        let y = u.add(Op::MatMul, &[p, v], "y").unwrap();
        u.add_output("y", y);
        let unfused = compile(&u, &JitOptions::default()).unwrap().run(&inputs).unwrap();
        prop_assert_eq!(serial[0].to_f32_vec(), unfused[0].to_f32_vec());
    }
}
