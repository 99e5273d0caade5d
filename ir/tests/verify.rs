use kestrel_ir::*;

/// x -> conv(w, b) -> relu -> add(x2) ; outputs "y" (add) and "r" (relu).
struct Net {
    g: Graph,
    x: ValueId,
    x2: ValueId,
    w: ValueId,
    conv: ValueId,
    relu: ValueId,
    add: ValueId,
}

fn net() -> Net {
    let mut g = Graph::new("net");
    let x = g.add_input("x", TensorType::known(DType::F32, &[1, 3, 8, 8]));
    let x2 = g.add_input("x2", TensorType::known(DType::F32, &[1, 4, 8, 8]));
    let w = g.add_const(
        "w",
        Tensor::from_vec(vec![4, 3, 3, 3], vec![0.5f32; 4 * 3 * 3 * 3]),
    );
    let b = g.add_const("b", Tensor::from_vec(vec![4], vec![0.0f32; 4]));
    let conv = g
        .add(
            Op::Conv(ConvAttrs {
                pads: vec![1, 1, 1, 1],
                group: 1,
                ..Default::default()
            }),
            &[x, w, b],
            "conv1",
        )
        .unwrap();
    let relu = g.add(Op::Unary(UnaryOp::Relu), &[conv], "").unwrap();
    let add = g
        .add(Op::Binary(BinaryOp::Add), &[relu, x2], "add")
        .unwrap();
    g.add_output("y", add);
    g.add_output("r", relu);
    Net {
        g,
        x,
        x2,
        w,
        conv,
        relu,
        add,
    }
}

fn kinds(errors: &[VerifyError]) -> Vec<VerifyErrorKind> {
    errors.iter().map(|e| e.kind).collect()
}

fn errors(g: &Graph) -> Vec<VerifyError> {
    verify(g).expect_err("graph should be invalid")
}

#[test]
fn valid_graph_passes() {
    let n = net();
    assert_eq!(verify(&n.g), Ok(()));
    assert_eq!(
        toposort(&n.g).unwrap(),
        vec![NodeId(0), NodeId(1), NodeId(2)]
    );
    let _ = (n.x, n.w, n.add);
}

#[test]
fn type_mismatch_names_node_and_both_types() {
    let mut n = net();
    n.g.values[n.relu.index()].ty = TensorType::known(DType::F32, &[1, 4, 8, 9]);
    let errs = errors(&n.g);
    // The relu output is wrong, and the add that consumes it now fails to broadcast.
    assert_eq!(
        kinds(&errs),
        vec![VerifyErrorKind::TypeMismatch, VerifyErrorKind::InferFailed]
    );
    let msg = errs[0].to_string();
    assert!(msg.contains("node 1 (relu)"), "{msg}");
    assert!(
        msg.contains("f32[1,4,8,9]") && msg.contains("f32[1,4,8,8]"),
        "{msg}"
    );
    assert!(errs[1].to_string().contains("node 2 \"add\" (add)"));
}

#[test]
fn quantization_mismatch_is_a_type_mismatch() {
    let mut g = Graph::new("q");
    let x = g.add_input("x", TensorType::known(DType::F32, &[4]));
    let s = g.add_const("s", Tensor::scalar(0.5f32));
    let q = g
        .add(
            Op::QuantizeLinear {
                axis: 1,
                to: DType::U8,
            },
            &[x, s],
            "q",
        )
        .unwrap();
    g.add_output("q", q);
    assert_eq!(verify(&g), Ok(()));
    g.values[q.index()].ty.quant = None;
    let errs = errors(&g);
    assert_eq!(kinds(&errs), vec![VerifyErrorKind::TypeMismatch]);
    assert!(errs[0].message.contains("quantization"));
}

#[test]
fn use_before_def_is_reported() {
    let mut n = net();
    // The conv (node 0) now reads the add's output (node 2).
    n.g.nodes[0].inputs[0] = n.add;
    let errs = errors(&n.g);
    assert!(kinds(&errs).contains(&VerifyErrorKind::UseBeforeDef));
    let msg = errs
        .iter()
        .find(|e| e.kind == VerifyErrorKind::UseBeforeDef)
        .unwrap()
        .to_string();
    assert!(
        msg.contains("node 0 \"conv1\" (conv)") && msg.contains("%"),
        "{msg}"
    );
    // A self-use is also a use before def.
    let mut n = net();
    n.g.nodes[1].inputs[0] = n.relu;
    assert!(kinds(&errors(&n.g)).contains(&VerifyErrorKind::UseBeforeDef));
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut n = net();
    let g = &mut n.g;
    // 1. Dangling node input.
    g.nodes[2].inputs[1] = ValueId(999);
    // 2. Output arity: relu gets a second output (the conv's value, also a double definition).
    g.nodes[1].outputs.push(n.conv);
    // 3. A value whose def points at the wrong output index.
    g.values[n.add.index()].def = ValueDef::Node {
        node: NodeId(2),
        index: 5,
    };
    // 4. Graph output to a missing value, and a duplicate output name.
    g.add_output("y", n.relu);
    g.add_output("z", ValueId(1234));
    // 5. Duplicate and empty input names.
    g.values[n.x2.index()].name = Some("x".into());
    let extra = g.add_input("", TensorType::scalar(DType::F32));
    let _ = extra;
    // 6. A constant whose type disagrees with its data.
    g.values[n.w.index()].ty = TensorType::known(DType::F32, &[4, 3, 3, 2]);

    let errs = errors(g);
    let k = kinds(&errs);
    for want in [
        VerifyErrorKind::DanglingValue,
        VerifyErrorKind::OutputArity,
        VerifyErrorKind::MultipleDefs,
        VerifyErrorKind::DefMismatch,
        VerifyErrorKind::DuplicateOutputName,
        VerifyErrorKind::DuplicateInputName,
        VerifyErrorKind::EmptyInputName,
        VerifyErrorKind::ConstTypeMismatch,
        // The conv now infers [1,4,8,9] from the mistyped weight.
        VerifyErrorKind::TypeMismatch,
    ] {
        assert!(k.contains(&want), "missing {want:?} in {errs:#?}");
    }
    // Two dangling references: the node input and the graph output.
    assert_eq!(
        k.iter()
            .filter(|&&x| x == VerifyErrorKind::DanglingValue)
            .count(),
        2,
        "{errs:#?}"
    );
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(text.iter().any(|t| t.contains("%999")));
    assert!(text
        .iter()
        .any(|t| t.contains("%1234") && t.contains("\"z\"")));
    assert!(text
        .iter()
        .any(|t| t.contains("node 1 (relu)") && t.contains("2 outputs")));
}

#[test]
fn def_mismatches() {
    // A graph input value claiming another position.
    let mut n = net();
    n.g.values[n.x.index()].def = ValueDef::Input(1);
    let errs = errors(&n.g);
    assert_eq!(
        kinds(&errs),
        vec![VerifyErrorKind::DefMismatch],
        "{errs:#?}"
    );
    assert!(errs[0].message.contains("graph input 1"));

    // A node output value claiming to be a constant... reported as a mismatch, not a crash.
    let mut n = net();
    n.g.values[n.relu.index()].def = ValueDef::Const(Constant {
        name: "c".into(),
        data: None,
    });
    assert!(kinds(&errors(&n.g)).contains(&VerifyErrorKind::DefMismatch));

    // A def pointing at a node that does not exist.
    let mut n = net();
    n.g.values[n.add.index()].def = ValueDef::Node {
        node: NodeId(77),
        index: 0,
    };
    let errs = errors(&n.g);
    assert!(errs
        .iter()
        .any(|e| e.kind == VerifyErrorKind::DefMismatch && e.message.contains("missing node 77")));

    // The same value listed as a graph input twice.
    let mut n = net();
    n.g.inputs.push(n.x);
    let k = kinds(&errors(&n.g));
    assert!(k.contains(&VerifyErrorKind::MultipleDefs));
    assert!(k.contains(&VerifyErrorKind::DuplicateInputName));
}

#[test]
fn output_arity_for_split() {
    let mut g = Graph::new("split");
    let x = g.add_input("x", TensorType::known(DType::F32, &[6]));
    let outs = g
        .add_node(
            Op::Split {
                axis: 0,
                num_outputs: 3,
            },
            &[x],
            "s",
        )
        .unwrap();
    assert_eq!(outs.len(), 3);
    assert_eq!(verify(&g), Ok(()));
    g.nodes[0].outputs.pop();
    let k = kinds(&errors(&g));
    assert!(k.contains(&VerifyErrorKind::OutputArity));
    // The orphaned value's def still names output 2.
    assert!(k.contains(&VerifyErrorKind::DefMismatch));
}

#[test]
fn inference_failure_after_op_change() {
    let mut n = net();
    n.g.nodes[1].op = Op::Transpose {
        perm: vec![0, 0, 1, 2],
    };
    let errs = errors(&n.g);
    assert!(errs.iter().any(|e| e.kind == VerifyErrorKind::InferFailed
        && e.message.contains("node 1 (transpose)")
        && e.message.contains("permutation")));
}

#[test]
fn toposort_reorders_and_detects_cycles() {
    // Rebuild the net with node order reversed (fixing defs), so `nodes` is not topological.
    let mut n = net();
    n.g.nodes.reverse();
    for (ni, node) in n.g.nodes.iter().enumerate() {
        for (index, &v) in node.outputs.iter().enumerate() {
            n.g.values[v.index()].def = ValueDef::Node {
                node: NodeId(ni as u32),
                index,
            };
        }
    }
    let k = kinds(&errors(&n.g));
    assert!(
        k.iter().all(|&x| x == VerifyErrorKind::UseBeforeDef),
        "{k:?}"
    );
    assert_eq!(
        toposort(&n.g).unwrap(),
        vec![NodeId(2), NodeId(1), NodeId(0)]
    );
    let dg = dependency_graph(&n.g);
    assert_eq!(dg.node_count(), 3);
    assert_eq!(dg.edge_count(), 2);

    // Independent nodes keep index order.
    let mut g = Graph::new("par");
    let x = g.add_input("x", TensorType::known(DType::F32, &[2]));
    for i in 0..4 {
        g.add(Op::Unary(UnaryOp::Neg), &[x], format!("n{i}"))
            .unwrap();
    }
    assert_eq!(
        toposort(&g).unwrap(),
        (0..4).map(NodeId).collect::<Vec<_>>()
    );

    // Cycle: conv reads add's output, which depends on conv.
    let mut n = net();
    n.g.nodes[0].inputs[0] = n.add;
    let cycle = toposort(&n.g).unwrap_err();
    assert_eq!(cycle.nodes, vec![NodeId(0), NodeId(1), NodeId(2)]);
    assert!(cycle.to_string().contains("cycle"));
}
