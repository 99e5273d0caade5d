//! ConvTranspose on the JIT against the interpreter: random 1-D, 2-D and 3-D shapes, groups,
//! strides, dilations, pads, output_padding, output_shape, auto_pad, with and without bias,
//! constant and run-time weights, one thread and split into 2 and 3 tasks (the last with one
//! output channel per col block).
//!
//! Tolerance: `|jit - interp| <= 1e-4 · max(1, |interp|)`. The interpreter sums in f64 and rounds
//! once; the JIT sums `C/g` products per GEMM value in f32 (FMA or mul+add), then at most
//! `prod(kernel)` such values in f32, and adds the bias: at most `C/g + prod(kernel) + 1 ≤ 60`
//! roundings of partial sums bounded by `60 · 4` (operands in [-2, 2)), about
//! `60 · 240 · 6e-8 ≈ 9e-4` in the worst case that never occurs, and measured below 1e-5 on these
//! shapes. Every thread count must give the same bits (the sums are ordered the same way).

use kestrel_backends::interp;
use kestrel_backends::jit::{compile, JitOptions};
use kestrel_ir::testing::{check_close, Random, XorShift64};
use kestrel_ir::*;
use proptest::prelude::*;

fn tensor(dims: &[usize], seed: u64) -> Tensor {
    XorShift64::seeded(seed).tensor_f32(dims, -2.0, 2.0)
}

const TOL: f32 = 1e-4;

/// Runs `g` on the interpreter and on the JIT with 1, 2 and 3 threads (every node split);
/// the JIT must be within `TOL` of the interpreter and bit-identical across thread counts.
fn agree(g: &Graph, inputs: &[Tensor]) -> Result<(), TestCaseError> {
    let want = interp::run(g, inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut first: Option<Vec<Tensor>> = None;
    for threads in [1, 2, 3] {
        let opts = JitOptions {
            threads,
            min_task_macs: 1,
            im2col_block_bytes: if threads == 3 { 4 } else { 512 * 1024 },
            ..Default::default()
        };
        let m = compile(g, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = m
            .run(inputs)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (a, b) in got.iter().zip(&want) {
            prop_assert_eq!(a.dims(), b.dims());
            let close = check_close(&a.to_f32_vec(), &b.to_f32_vec(), TOL);
            prop_assert!(
                close.is_ok(),
                "{threads} threads: jit vs interp: {}",
                close.unwrap_err()
            );
        }
        if threads > 1 {
            let serial = m
                .run_serial(inputs)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(
                serial == got,
                "split tasks run serially differ from the pool's"
            );
        }
        match &first {
            None => first = Some(got),
            Some(f) => prop_assert!(f == &got, "{threads} threads differ from 1 thread"),
        }
    }
    Ok(())
}

/// One ConvTranspose node; `x` (and `w` unless `const_w`, and `b` unless `const_w`) are inputs.
/// `None` when type inference rejects the attributes.
fn graph(
    x_dims: &[usize],
    w_dims: &[usize],
    a: ConvTransposeAttrs,
    bias: bool,
    const_w: bool,
    seed: u64,
) -> Option<(Graph, Vec<Tensor>)> {
    let mut g = Graph::new("ct");
    let x = g.add_input("x", TensorType::known(DType::F32, x_dims));
    let mut feeds = vec![tensor(x_dims, seed)];
    let w_t = tensor(w_dims, seed + 1);
    let w = if const_w {
        g.add_const("w", w_t)
    } else {
        feeds.push(w_t);
        g.add_input("w", TensorType::known(DType::F32, w_dims))
    };
    let mut ins = vec![x, w];
    if bias {
        let m = w_dims[1] * a.group;
        let b_t = tensor(&[m], seed + 2);
        ins.push(if const_w {
            g.add_const("b", b_t)
        } else {
            feeds.push(b_t);
            g.add_input("b", TensorType::known(DType::F32, &[m]))
        });
    }
    let y = g.add(Op::ConvTranspose(a), &ins, "ct").ok()?;
    g.add_output("y", y);
    Some((g, feeds))
}

/// The common cases of a conv's input gradient, by hand: 2-D stride 2 with pads and
/// output_padding, grouped, depthwise-like (one input channel per group), 1-D, 3-D, and a
/// kernel larger than the input.
#[test]
fn fixed_shapes() {
    /// x dims, w dims, strides, pads, dilations, output_padding, group.
    type Case<'a> = (
        &'a [usize],
        &'a [usize],
        &'a [usize],
        &'a [usize],
        &'a [usize],
        &'a [usize],
        usize,
    );
    let cases: [Case; 6] = [
        (
            &[2, 8, 7, 7],
            &[8, 4, 3, 3],
            &[2, 2],
            &[1, 1, 1, 1],
            &[],
            &[1, 1],
            1,
        ),
        (
            &[1, 6, 5, 9],
            &[6, 2, 3, 2],
            &[1, 2],
            &[0, 1, 2, 0],
            &[2, 1],
            &[],
            3,
        ),
        (
            &[1, 4, 6, 6],
            &[4, 1, 3, 3],
            &[1, 1],
            &[1, 1, 1, 1],
            &[],
            &[],
            4,
        ),
        (&[3, 5, 11], &[5, 7, 4], &[3], &[2, 1], &[2], &[2], 1),
        (
            &[1, 2, 3, 4, 3],
            &[2, 3, 2, 3, 2],
            &[2, 1, 2],
            &[],
            &[],
            &[],
            1,
        ),
        (&[1, 3, 2, 2], &[3, 2, 5, 5], &[1, 1], &[], &[], &[], 1),
    ];
    for (i, (xd, wd, strides, pads, dilations, output_padding, group)) in
        cases.into_iter().enumerate()
    {
        for (bias, const_w) in [(true, true), (false, false), (true, false)] {
            let a = ConvTransposeAttrs {
                strides: strides.to_vec(),
                pads: pads.to_vec(),
                dilations: dilations.to_vec(),
                output_padding: output_padding.to_vec(),
                group,
                ..Default::default()
            };
            let (g, feeds) = graph(xd, wd, a, bias, const_w, 40 + i as u64)
                .unwrap_or_else(|| panic!("case {i} is valid"));
            agree(&g, &feeds)
                .unwrap_or_else(|e| panic!("case {i} bias {bias} const {const_w}: {e}"));
        }
    }
}

/// A hand-computed 1-D case: x = [1, 2], w = [1, 10, 100], stride 2, bias 0.5:
/// full result [1, 10, 102, 20, 200] + 0.5, pads (1, 0) drop the first element.
#[test]
fn hand_computed_1d() {
    let mut g = Graph::new("ct");
    let x = g.add_input("x", TensorType::known(DType::F32, &[1, 1, 2]));
    let w = g.add_const(
        "w",
        Tensor::from_vec(vec![1, 1, 3], vec![1.0f32, 10.0, 100.0]),
    );
    let b = g.add_const("b", Tensor::from_vec(vec![1], vec![0.5f32]));
    let a = ConvTransposeAttrs {
        strides: vec![2],
        pads: vec![1, 0],
        group: 1,
        ..Default::default()
    };
    let y = g.add(Op::ConvTranspose(a), &[x, w, b], "ct").unwrap();
    g.add_output("y", y);
    let m = compile(&g, &JitOptions::default()).unwrap();
    let got = m
        .run(&[Tensor::from_vec(vec![1, 1, 2], vec![1.0f32, 2.0])])
        .unwrap();
    assert_eq!(got[0].dims(), &[1, 1, 4]);
    assert_eq!(got[0].to_f32_vec(), vec![10.5, 102.5, 20.5, 200.5]);
}

fn auto_pad_strategy() -> impl Strategy<Value = AutoPad> {
    prop::sample::select(vec![
        AutoPad::NotSet,
        AutoPad::NotSet,
        AutoPad::Valid,
        AutoPad::SameUpper,
        AutoPad::SameLower,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random 1-D to 3-D transposed convolutions.
    #[test]
    fn random_conv_transpose(
        rank in 1usize..4,
        n in 1usize..3, cg in 1usize..5, mg in 1usize..5, group in 1usize..4,
        sp in prop::collection::vec(1usize..7, 3),
        ks in prop::collection::vec(1usize..4, 3),
        strides in prop::collection::vec(1usize..4, 3),
        dilations in prop::collection::vec(1usize..3, 3),
        pads in prop::collection::vec(0usize..3, 6),
        out_pad in prop::collection::vec(0usize..3, 3),
        use_output_shape in any::<bool>(),
        out_extra in prop::collection::vec(0usize..3, 3),
        auto_pad in auto_pad_strategy(),
        bias in any::<bool>(), const_w in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let r = rank;
        let strides = strides[..r].to_vec();
        let dilations = dilations[..r].to_vec();
        // ONNX: output_padding below the stride or the dilation.
        let output_padding: Vec<usize> =
            (0..r).map(|i| out_pad[i] % strides[i].max(dilations[i])).collect();
        let mut xd = vec![n, cg * group];
        xd.extend(&sp[..r]);
        let mut wd = vec![cg * group, mg];
        wd.extend(&ks[..r]);
        // output_shape: between the full extent minus a little and a little past it.
        let output_shape: Vec<usize> = if use_output_shape {
            (0..r)
                .map(|i| {
                    let full = (sp[i] - 1) * strides[i] + (ks[i] - 1) * dilations[i] + 1;
                    (full + out_extra[i]).saturating_sub(2).max(1)
                })
                .collect()
        } else {
            vec![]
        };
        let mut pv = pads[..r].to_vec();
        pv.extend(&pads[3..3 + r]);
        let a = ConvTransposeAttrs {
            strides, dilations, output_padding, output_shape,
            pads: if auto_pad == AutoPad::NotSet { pv } else { vec![] },
            group, auto_pad,
        };
        let built = graph(&xd, &wd, a, bias, const_w, seed);
        prop_assume!(built.is_some(), "attributes type inference rejects");
        let (g, feeds) = built.unwrap();
        agree(&g, &feeds)?;
    }
}
