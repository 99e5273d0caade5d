//! Graph mutation API: rewiring, removal, compaction, ordering.

use kestrel_ir::*;

fn relu() -> Op {
    Op::Unary(UnaryOp::Relu)
}

/// x -> relu -> a; x -> neg -> b (dead); a + c -> out, with an unused constant.
fn sample() -> (Graph, ValueId, ValueId, ValueId) {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::known(DType::F32, &[2, 3]));
    let _unused = g.add_const("unused", Tensor::scalar(1.0f32));
    let c = g.add_const("c", Tensor::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]));
    let a = g.add(relu(), &[x], "r").unwrap();
    let b = g.add(Op::Unary(UnaryOp::Neg), &[x], "n").unwrap();
    let out = g.add(Op::Binary(BinaryOp::Add), &[a, c], "add").unwrap();
    g.add_output("out", out);
    verify(&g).unwrap();
    (g, x, a, b)
}

#[test]
fn replace_all_uses_rewires_nodes_and_outputs() {
    let (mut g, x, a, _) = sample();
    assert_eq!(g.replace_all_uses(a, x), 1);
    let out = g.outputs[0].value;
    assert_eq!(g.replace_all_uses(out, x), 1);
    assert_eq!(g.outputs[0].value, x);
    assert_eq!(g.replace_all_uses(x, x), 0);
    verify(&g).unwrap();
}

#[test]
fn dce_removes_dead_nodes_and_constants_and_renumbers() {
    let (mut g, _, _, _) = sample();
    assert_eq!(g.remove_dead_nodes(), 1);
    verify(&g).unwrap();
    assert_eq!(g.nodes.len(), 2);
    // x, c, relu, add: the unused constant and the neg output are gone, ids are dense.
    assert_eq!(g.values.len(), 4);
    for (i, n) in g.nodes.iter().enumerate() {
        for (k, &o) in n.outputs.iter().enumerate() {
            assert!(
                matches!(g.value(o).def, ValueDef::Node { node, index } if node.index() == i && index == k)
            );
        }
    }
    assert_eq!(g.remove_dead_nodes(), 0);
    assert!(!g.compact());
}

#[test]
fn remove_nodes_refuses_live_outputs() {
    let (mut g, _, _, _) = sample();
    let before = g.clone();
    let err = g.remove_nodes(|_, n| n.name == "r").unwrap_err();
    assert!(matches!(err, RewriteError::StillUsed { .. }), "{err}");
    assert_eq!(g.nodes.len(), before.nodes.len());
    assert_eq!(g.values.len(), before.values.len());
    assert_eq!(g.remove_nodes(|_, n| n.name == "n").unwrap(), 1);
    verify(&g).unwrap();
}

#[test]
fn sort_topologically_repairs_order_after_rewiring() {
    let (mut g, x, a, _) = sample();
    // A new node appended at the end, then used by an earlier node.
    let s = g.add(Op::Unary(UnaryOp::Sigmoid), &[x], "s").unwrap();
    g.replace_all_uses(a, s);
    assert!(verify(&g).is_err());
    assert!(g.sort_topologically().unwrap());
    verify(&g).unwrap();
    assert!(!g.sort_topologically().unwrap());
    g.remove_dead_nodes();
    verify(&g).unwrap();
    assert_eq!(g.nodes.len(), 2);
}

#[test]
fn sort_topologically_reports_cycles_without_changing_the_graph() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::known(DType::F32, &[2]));
    let a = g.add(relu(), &[x], "a").unwrap();
    let b = g.add(relu(), &[a], "b").unwrap();
    g.add_output("y", b);
    g.nodes[0].inputs[0] = b;
    let err = g.sort_topologically().unwrap_err();
    assert!(matches!(err, RewriteError::Cycle { .. }), "{err}");
    assert_eq!(g.nodes[0].name, "a");
}

#[test]
fn insert_node_before_keeps_defs_consistent() {
    let (mut g, x, a, _) = sample();
    let add = NodeId(2);
    let s = g
        .insert_node_before(add, Op::Unary(UnaryOp::Sigmoid), &[a], "s")
        .unwrap()[0];
    let add_id = NodeId(3);
    assert_eq!(g.node(add_id).name, "add");
    g.nodes[add_id.index()].inputs[0] = s;
    verify(&g).unwrap();
    assert!(g
        .insert_node_before(NodeId(99), relu(), &[x], "bad")
        .is_err());
    let end = NodeId(g.nodes.len() as u32);
    g.insert_node_before(end, relu(), &[x], "last").unwrap();
    verify(&g).unwrap();
}

#[test]
fn set_node_op_and_reinfer_node() {
    let mut g = Graph::new("t");
    let x = g.add_input(
        "x",
        TensorType::new(
            DType::F32,
            [Dim::sym("N"), Dim::Known(3)].into_iter().collect(),
        ),
    );
    let t = g
        .add(Op::Transpose { perm: vec![1, 0] }, &[x], "t")
        .unwrap();
    g.add_output("y", t);
    assert!(g
        .set_node_op(NodeId(0), Op::Transpose { perm: vec![0, 1] }, &[x])
        .is_ok());
    assert_eq!(g.ty(t).shape[0], Dim::sym("N"));
    assert!(g
        .set_node_op(NodeId(0), Op::Transpose { perm: vec![0, 5] }, &[x])
        .is_err());
    g.set_input_type(0, TensorType::known(DType::F32, &[4, 3]))
        .unwrap();
    assert!(g.reinfer_node(NodeId(0)).unwrap());
    assert_eq!(g.ty(t).dims(), Some(vec![4, 3]));
    assert!(g
        .set_input_type(3, TensorType::known(DType::F32, &[1]))
        .is_err());
    verify(&g).unwrap();
}

/// A shape input specialised to a constant: later inputs move down, types become known.
#[test]
fn specialize_input_turns_an_input_into_a_constant() {
    let mut g = Graph::new("t");
    let shape = g.add_input("shape", TensorType::known(DType::I64, &[2]));
    let x = g.add_input("x", TensorType::known(DType::F32, &[2, 3]));
    let y = g
        .add(Op::Reshape { allowzero: false }, &[x, shape], "r")
        .unwrap();
    g.add_output("y", y);
    assert_eq!(g.ty(y).shape[0], Dim::Unknown);
    let bad = g.specialize_input(0, Tensor::from_vec(vec![3], vec![3i64, 2, 1]));
    assert!(matches!(
        bad,
        Err(RewriteError::InputMismatch { pos: 0, .. })
    ));
    assert!(g.specialize_input(5, Tensor::scalar(1i64)).is_err());
    g.specialize_input(0, Tensor::from_vec(vec![2], vec![3i64, 2]))
        .unwrap();
    assert_eq!(g.inputs, vec![x]);
    assert!(matches!(g.value(x).def, ValueDef::Input(0)));
    assert!(matches!(g.value(shape).def, ValueDef::Const(_)));
    assert_eq!(g.ty(y).dims(), Some(vec![3, 2]));
    verify(&g).unwrap();
}
