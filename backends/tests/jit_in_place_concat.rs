//! In-place concatenation (`jit::in_place_concats`, docs/JIT.md "Memory"): which `Concat` nodes
//! have their inputs written straight into their output, and that graphs with them compute what
//! the interpreter computes, with the inputs produced in any order and read again after the
//! concatenation.

use kestrel_backends::interp;
use kestrel_backends::jit::{self, compile, JitOptions};
use kestrel_ir::testing::{check_close, Random, XorShift64};
use kestrel_ir::*;
use std::collections::HashMap;

fn conv(g: &mut Graph, x: ValueId, c: usize, m: usize, k: usize, seed: u64) -> ValueId {
    let w = XorShift64::seeded(seed).tensor_f32(&[m, c, k, k], -1.0, 1.0);
    let w = g.add_const(format!("w{seed}"), w);
    let attrs = ConvAttrs {
        pads: vec![k / 2; 4],
        group: 1,
        ..Default::default()
    };
    g.add(Op::Conv(attrs), &[x, w], format!("conv{seed}"))
        .unwrap()
}

/// `x [1,3,8,8]` → `a = conv3×3(x) [1,5,8,8]`, `b = relu(a)`, `c = conv1×1(b) [1,3,8,8]`,
/// `y = concat(c, a, b)` (produced in the order a, b, c: the last slice first), then
/// `o1 = conv1×1(y)` and `o2 = a · b`, which reads two slices after the concatenation.
fn three_producers(y_is_output: bool) -> (Graph, NodeId) {
    let mut g = Graph::new("in_place_concat");
    let x = g.add_input("x", TensorType::known(DType::F32, &[1, 3, 8, 8]));
    let a = conv(&mut g, x, 3, 5, 3, 1);
    let b = g.add(Op::Unary(UnaryOp::Relu), &[a], "relu").unwrap();
    let c = conv(&mut g, b, 5, 3, 1, 2);
    let y = g.add(Op::Concat { axis: 1 }, &[c, a, b], "concat").unwrap();
    let concat = NodeId(3);
    assert!(matches!(g.node(concat).op, Op::Concat { .. }));
    let o1 = conv(&mut g, y, 13, 2, 1, 3);
    let o2 = g.add(Op::Binary(BinaryOp::Mul), &[a, b], "mul").unwrap();
    g.add_output("o1", o1);
    g.add_output("o2", o2);
    if y_is_output {
        g.add_output("y", y);
    }
    (g, concat)
}

fn agree_with_interpreter(g: &Graph) {
    let x = XorShift64::seeded(7).tensor_f32(&[1, 3, 8, 8], -2.0, 2.0);
    let want = interp::run(g, std::slice::from_ref(&x)).unwrap();
    for threads in [1, 2] {
        let opts = JitOptions {
            threads,
            min_task_macs: 1,
            ..Default::default()
        };
        let got = compile(g, &opts)
            .unwrap()
            .run(std::slice::from_ref(&x))
            .unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(a.dims(), b.dims(), "output {i}");
            if let Err(m) = check_close(&a.to_f32_vec(), &b.to_f32_vec(), 1e-5) {
                panic!("output {i} with {threads} thread(s): {m:?}");
            }
        }
    }
}

#[test]
fn producers_write_their_slices_in_any_order() {
    let (g, concat) = three_producers(false);
    assert_eq!(jit::in_place_concats(&g, &HashMap::new()), vec![concat]);
    agree_with_interpreter(&g);
}

#[test]
fn a_concatenation_that_is_a_graph_output_is_computed() {
    let (g, _) = three_producers(true);
    assert!(jit::in_place_concats(&g, &HashMap::new()).is_empty());
    agree_with_interpreter(&g);
}

/// `concat(relu(x1), relu(x2))` of two `[1, c, 2, 2]` inputs along `axis`.
fn two_relus(c: usize, axis: i64, lead: usize) -> Graph {
    let mut g = Graph::new("two");
    let ty = TensorType::known(DType::F32, &[lead, c, 2, 2]);
    let x1 = g.add_input("x1", ty.clone());
    let x2 = g.add_input("x2", ty);
    let r1 = g.add(Op::Unary(UnaryOp::Relu), &[x1], "r1").unwrap();
    let r2 = g.add(Op::Unary(UnaryOp::Relu), &[x2], "r2").unwrap();
    let y = g.add(Op::Concat { axis }, &[r1, r2], "concat").unwrap();
    let z = g.add(Op::Unary(UnaryOp::Neg), &[y], "neg").unwrap();
    g.add_output("z", z);
    g
}

#[test]
fn only_contiguous_aligned_slices_of_kernel_outputs_qualify() {
    let none = HashMap::new();
    // 4 channels of 2×2 floats: 64-byte slices.
    assert_eq!(
        jit::in_place_concats(&two_relus(4, 1, 1), &none),
        vec![NodeId(2)]
    );
    assert_eq!(
        jit::in_place_concats(&two_relus(4, -3, 1), &none),
        vec![NodeId(2)]
    );
    // 3 channels: the second slice would start 48 bytes in.
    assert!(jit::in_place_concats(&two_relus(3, 1, 1), &none).is_empty());
    // A batch of 2 concatenated along channels: each input is two pieces of the output.
    assert!(jit::in_place_concats(&two_relus(4, 1, 2), &none).is_empty());
    // Along the batch axis the slices are contiguous again.
    assert_eq!(
        jit::in_place_concats(&two_relus(4, 0, 2), &none),
        vec![NodeId(2)]
    );

    // A graph input, a repeated input and a constant are not written by a kernel of their own.
    let mut g = Graph::new("inputs");
    let ty = TensorType::known(DType::F32, &[1, 4, 2, 2]);
    let x = g.add_input("x", ty);
    let r = g.add(Op::Unary(UnaryOp::Relu), &[x], "r").unwrap();
    let k = g.add_const(
        "k",
        XorShift64::seeded(1).tensor_f32(&[1, 4, 2, 2], -1.0, 1.0),
    );
    let with_input = g.add(Op::Concat { axis: 1 }, &[r, x], "c1").unwrap();
    let repeated = g.add(Op::Concat { axis: 1 }, &[r, r], "c2").unwrap();
    let with_const = g.add(Op::Concat { axis: 1 }, &[r, k], "c3").unwrap();
    for (i, v) in [with_input, repeated, with_const].into_iter().enumerate() {
        let z = g
            .add(Op::Unary(UnaryOp::Neg), &[v], format!("neg{i}"))
            .unwrap();
        g.add_output(format!("y{i}"), z);
    }
    assert!(jit::in_place_concats(&g, &jit::constant_values(&g)).is_empty());
}

#[test]
fn every_shape_of_two_relus_agrees_with_the_interpreter() {
    for (c, axis, lead) in [(4, 1, 1), (3, 1, 1), (4, 1, 2), (4, 0, 2), (4, -3, 1)] {
        let g = two_relus(c, axis, lead);
        let dims = [lead, c, 2, 2];
        let x1 = XorShift64::seeded(1).tensor_f32(&dims, -1.0, 1.0);
        let x2 = XorShift64::seeded(2).tensor_f32(&dims, -1.0, 1.0);
        let inputs = [x1, x2];
        let want = interp::run(&g, &inputs).unwrap();
        let got = compile(&g, &JitOptions::default())
            .unwrap()
            .run(&inputs)
            .unwrap();
        assert_eq!(got, want, "c {c} axis {axis} lead {lead}");
    }
}
