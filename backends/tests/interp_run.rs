//! Whole-graph execution: input checking, symbolic dims, error wrapping, observers.

mod common;
use common::*;
use kestrel_backends::interp::{run, run_with, EvalError};
use kestrel_ir::{BinaryOp, DType, Dim, Graph, NodeId, Op, Shape, Tensor, TensorType, UnaryOp};

fn sym_type(dims: &[Dim]) -> TensorType {
    TensorType::new(DType::F32, dims.iter().cloned().collect::<Shape>())
}

/// `relu(x + y) @ w` with `x, y: f32[N, 3]` and a constant `w: f32[3, 2]`.
fn small_graph() -> Graph {
    let mut g = Graph::new("small");
    let n = Dim::sym("N");
    let x = g.add_input("x", sym_type(&[n.clone(), Dim::Known(3)]));
    let y = g.add_input("y", sym_type(&[n, Dim::Known(3)]));
    let w = g.add_const("w", f32t(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]));
    let s = g.add(Op::Binary(BinaryOp::Add), &[x, y], "add").unwrap();
    let r = g.add(Op::Unary(UnaryOp::Relu), &[s], "relu").unwrap();
    let m = g.add(Op::MatMul, &[r, w], "matmul").unwrap();
    g.add_output("out", m);
    g.add_output("relu_out", r);
    g
}

#[test]
fn runs_a_graph_with_symbolic_batch() {
    let g = small_graph();
    for n in [1usize, 2, 5] {
        let x = iota(&[n, 3], -3.0);
        let y = f32t(&[n, 3], &vec![1.0; n * 3]);
        let out = run(&g, &[x.clone(), y]).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].dims(), &[n, 2]);
        let xv = x.to_f32_vec();
        for i in 0..n {
            let r: Vec<f32> = (0..3).map(|j| (xv[i * 3 + j] + 1.0).max(0.0)).collect();
            assert_eq!(
                out[0].to_f32_vec()[i * 2..i * 2 + 2],
                [r[0] + r[2], r[1] + r[2]]
            );
            assert_eq!(out[1].to_f32_vec()[i * 3..i * 3 + 3], r[..]);
        }
    }
}

#[test]
fn input_errors_name_the_input() {
    let g = small_graph();
    let ok = iota(&[2, 3], 0.0);
    match run(&g, &[ok.clone(), iota(&[3, 3], 0.0)]).unwrap_err() {
        EvalError::SymbolConflict {
            input,
            symbol,
            bound,
            actual,
            bound_by,
            ..
        } => {
            assert_eq!(
                (
                    input.as_str(),
                    symbol.as_str(),
                    bound,
                    actual,
                    bound_by.as_str()
                ),
                ("y", "N", 2, 3, "x")
            );
        }
        e => panic!("{e}"),
    }
    let e = run(&g, &[ok.clone(), iota(&[2, 4], 0.0)]).unwrap_err();
    assert!(
        matches!(&e, EvalError::InputDim { input, axis: 1, expected: 3, actual: 4, .. } if input == "y"),
        "{e}"
    );
    assert!(e.to_string().contains("\"y\""), "{e}");
    let e = run(
        &g,
        &[ok.clone(), Tensor::from_vec(vec![2, 3], vec![0i64; 6])],
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            EvalError::InputDType {
                expected: DType::F32,
                actual: DType::I64,
                ..
            }
        ),
        "{e}"
    );
    let e = run(&g, &[ok.clone(), iota(&[6], 0.0)]).unwrap_err();
    assert!(matches!(e, EvalError::InputRank { .. }), "{e}");
    let e = run(&g, &[ok]).unwrap_err();
    assert!(
        matches!(
            e,
            EvalError::InputCount {
                expected: 2,
                actual: 1
            }
        ),
        "{e}"
    );
}

#[test]
fn op_errors_are_wrapped_with_the_node() {
    let mut g = Graph::new("gather");
    let data = g.add_const("table", iota(&[4, 2], 0.0));
    let idx = g.add_input("idx", TensorType::known(DType::I64, &[2]));
    let y = g
        .add(Op::Gather { axis: 0 }, &[data, idx], "lookup")
        .unwrap();
    g.add_output("y", y);
    let out = run(&g, &[i64v(&[-1, 0])]).unwrap();
    assert_eq!(out[0].to_f32_vec(), vec![6.0, 7.0, 0.0, 1.0]);
    let e = run(&g, &[i64v(&[0, 4])]).unwrap_err();
    match &e {
        EvalError::Node { node, source } => {
            assert!(node.contains("lookup"), "{node}");
            assert!(matches!(
                **source,
                EvalError::IndexOutOfRange {
                    index: 4,
                    extent: 4,
                    ..
                }
            ));
        }
        e => panic!("{e}"),
    }
    assert!(
        e.to_string().contains("lookup") && e.to_string().contains("out of range"),
        "{e}"
    );
}

#[test]
fn elided_constants_cannot_run() {
    let mut g = Graph::new("elided");
    let x = g.add_input("x", TensorType::known(DType::F32, &[2]));
    let w = g.add_elided_const("weights", TensorType::known(DType::F32, &[2]));
    let y = g.add(Op::Binary(BinaryOp::Mul), &[x, w], "mul").unwrap();
    g.add_output("y", y);
    let e = run(&g, &[iota(&[2], 0.0)]).unwrap_err();
    assert!(
        matches!(&e, EvalError::ElidedConstant { name } if name == "weights"),
        "{e}"
    );
}

#[test]
fn observer_sees_every_node_and_multi_output_nodes_work() {
    let mut g = Graph::new("split");
    let x = g.add_input("x", TensorType::known(DType::F32, &[5]));
    let parts = g
        .add_node(
            Op::Split {
                axis: 0,
                num_outputs: 2,
            },
            &[x],
            "split",
        )
        .unwrap();
    let s = g
        .add(Op::Binary(BinaryOp::Add), &[parts[1], parts[1]], "double")
        .unwrap();
    g.add_output("head", parts[0]);
    g.add_output("tail2", s);
    g.add_output("input", x);
    let mut seen: Vec<(NodeId, Vec<Vec<usize>>)> = Vec::new();
    let out = run_with(&g, &[iota(&[5], 1.0)], &mut |id, outs| {
        seen.push((id, outs.iter().map(|t| t.dims().to_vec()).collect()));
    })
    .unwrap();
    assert_eq!(out[0].to_f32_vec(), vec![1.0, 2.0, 3.0]);
    assert_eq!(out[1].to_f32_vec(), vec![8.0, 10.0]);
    assert_eq!(out[2].to_f32_vec(), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(
        seen,
        vec![
            (NodeId(0), vec![vec![3], vec![2]]),
            (NodeId(1), vec![vec![2]])
        ]
    );
}
