//! Pass and pass-manager behaviour on graphs built with the builder API.

use kestrel_ir::*;
use kestrel_passes::*;

fn f32s(dims: &[usize]) -> TensorType {
    TensorType::known(DType::F32, dims)
}

fn ints(v: &[i64]) -> Tensor {
    Tensor::from_vec(vec![v.len()], v.to_vec())
}

fn run(pass: &str, g: &mut Graph) -> bool {
    let p = create_pass(pass, &[]).unwrap();
    verify(g).expect("input verifies");
    let changed = p.run(g, &PassContext::new()).unwrap();
    if let Err(e) = verify(g) {
        panic!("{pass} broke the graph: {e:?}");
    }
    changed
}

fn count(g: &Graph, name: &str) -> usize {
    g.nodes.iter().filter(|n| n.op.name() == name).count()
}

/// x:[N,3,4,4] -> shape -> gather(1) -> unsqueeze -> concat([-1]) -> reshape(x)
fn shape_chain(batch: Dim) -> Graph {
    let mut g = Graph::new("t");
    let x = g.add_input(
        "x",
        TensorType::new(
            DType::F32,
            [batch, 3.into(), 4.into(), 4.into()].into_iter().collect(),
        ),
    );
    let s = g
        .add(
            Op::Shape {
                start: 0,
                end: None,
            },
            &[x],
            "shape",
        )
        .unwrap();
    let i = g.add_const("i", Tensor::scalar(1i64));
    let c = g.add(Op::Gather { axis: 0 }, &[s, i], "gather").unwrap();
    let ax = g.add_const("ax", ints(&[0]));
    let u = g.add(Op::Unsqueeze, &[c, ax], "unsq").unwrap();
    let m1 = g.add_const("m1", ints(&[-1]));
    let shp = g.add(Op::Concat { axis: 0 }, &[m1, u], "concat").unwrap();
    let r = g
        .add(Op::Reshape { allowzero: false }, &[x, shp], "reshape")
        .unwrap();
    g.add_output("y", r);
    g
}

#[test]
fn fold_constants_folds_shape_of_known_dims_and_gather_of_partial_shape() {
    // Batch symbolic: only the gathered channel folds (no evaluator needed for that).
    let mut g = shape_chain(Dim::sym("N"));
    assert!(run("fold-constants", &mut g));
    assert_eq!(count(&g, "shape"), 0);
    assert_eq!(count(&g, "gather"), 0);
    // Without an evaluator unsqueeze/concat of constants stay.
    assert_eq!(count(&g, "unsqueeze"), 1);
    assert!(!run("fold-constants", &mut g));

    let mut g = shape_chain(Dim::Known(2));
    assert!(run("fold-constants", &mut g));
    assert_eq!(count(&g, "shape"), 0);
}

#[test]
fn fold_constants_respects_size_limit_and_declining_evaluators() {
    let mut g = Graph::new("t");
    let a = g.add_const("a", Tensor::from_vec(vec![4], vec![1.0f32, 2.0, 3.0, 4.0]));
    let n = g.add(Op::Unary(UnaryOp::Neg), &[a], "neg").unwrap();
    g.add_output("y", n);
    // An evaluator that declines leaves the node.
    let cx = PassContext::with_evaluator(|_: &Op, _: &[&Tensor]| None);
    let p = create_pass("fold-constants", &[]).unwrap();
    assert!(!p.run(&mut g, &cx).unwrap());
    // A negating evaluator folds it, unless the limit is below the output size.
    let neg = |op: &Op, ins: &[&Tensor]| -> Option<Result<Vec<Tensor>, String>> {
        matches!(op, Op::Unary(UnaryOp::Neg)).then(|| {
            let v: Vec<f32> = ins[0].to_f32_vec().iter().map(|x| -x).collect();
            Ok(vec![Tensor::from_vec(ins[0].dims().to_vec(), v)])
        })
    };
    let small = create_pass("fold-constants", &[("max_elements".into(), "3".into())]).unwrap();
    let cx = PassContext::with_evaluator(neg);
    assert!(!small.run(&mut g, &cx).unwrap());
    assert!(p.run(&mut g, &cx).unwrap());
    verify(&g).unwrap();
    assert!(g.nodes.is_empty());
    assert_eq!(
        g.const_data(g.outputs[0].value).unwrap().to_f32_vec(),
        vec![-1.0, -2.0, -3.0, -4.0]
    );
    // A wrong-shaped result is refused.
    let mut g2 = Graph::new("t");
    let a = g2.add_const("a", Tensor::from_vec(vec![2], vec![1.0f32, 2.0]));
    let n = g2.add(Op::Unary(UnaryOp::Neg), &[a], "neg").unwrap();
    g2.add_output("y", n);
    let bad =
        PassContext::with_evaluator(|_: &Op, _: &[&Tensor]| Some(Ok(vec![Tensor::scalar(1.0f32)])));
    assert!(!p.run(&mut g2, &bad).unwrap());
}

#[test]
fn dce_and_cse() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32s(&[2, 3]));
    let c1 = g.add_const("c1", Tensor::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]));
    let c2 = g.add_const("c2", Tensor::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]));
    let _unused = g.add_const("unused", Tensor::scalar(0i64));
    let a = g.add(Op::Binary(BinaryOp::Add), &[x, c1], "a").unwrap();
    let b = g.add(Op::Binary(BinaryOp::Add), &[c2, x], "b").unwrap();
    let _dead = g.add(Op::Unary(UnaryOp::Exp), &[x], "dead").unwrap();
    let m = g.add(Op::Binary(BinaryOp::Sub), &[a, b], "m").unwrap();
    g.add_output("y", m);
    assert!(run("dce", &mut g));
    assert_eq!(g.nodes.len(), 3);
    assert!(!run("dce", &mut g));
    assert!(run("cse", &mut g));
    assert_eq!(g.nodes.len(), 2);
    let sub = &g.nodes[1];
    assert_eq!(sub.inputs[0], sub.inputs[1]);
    assert!(!run("cse", &mut g));
    // Sub is not commutative: sub(x, y) and sub(y, x) stay apart.
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32s(&[2]));
    let y = g.add_input("y", f32s(&[2]));
    let a = g.add(Op::Binary(BinaryOp::Sub), &[x, y], "a").unwrap();
    let b = g.add(Op::Binary(BinaryOp::Sub), &[y, x], "b").unwrap();
    let m = g.add(Op::Binary(BinaryOp::Mul), &[a, b], "m").unwrap();
    g.add_output("o", m);
    assert!(!run("cse", &mut g));
}

#[test]
fn remove_identity_matches_only_noops() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32s(&[2, 3]));
    let i = g.add(Op::Identity, &[x], "id").unwrap();
    let t = g
        .add(Op::Transpose { perm: vec![0, 1] }, &[i], "t")
        .unwrap();
    let c = g.add(Op::Cast { to: DType::F32 }, &[t], "cast").unwrap();
    let s = g.add_const("s", ints(&[2, 3]));
    let r = g
        .add(Op::Reshape { allowzero: false }, &[c, s], "r")
        .unwrap();
    let (st, en) = (
        g.add_const("st", ints(&[0, 0])),
        g.add_const("en", ints(&[i64::MAX, 3])),
    );
    let sl = g.add(Op::Slice, &[r, st, en], "slice").unwrap();
    let pads = g.add_const("pads", ints(&[0, 0, 0, 0]));
    let p = g
        .add(
            Op::Pad {
                mode: PadMode::Constant,
            },
            &[sl, pads],
            "pad",
        )
        .unwrap();
    let e = g.add(Op::Expand, &[p, s], "expand").unwrap();
    // Not no-ops: a real transpose and a reversing slice.
    let t2 = g
        .add(Op::Transpose { perm: vec![1, 0] }, &[e], "t2")
        .unwrap();
    let (st2, en2, ax2, step2) = (
        g.add_const("st2", ints(&[-1])),
        g.add_const("en2", ints(&[i64::MIN])),
        g.add_const("ax2", ints(&[0])),
        g.add_const("step2", ints(&[-1])),
    );
    let rev = g
        .add(Op::Slice, &[t2, st2, en2, ax2, step2], "rev")
        .unwrap();
    g.add_output("y", rev);
    assert!(run("remove-identity", &mut g));
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
    assert_eq!(ops, ["transpose", "slice"]);
    assert_eq!(g.nodes[0].inputs[0], g.inputs[0]);
    assert!(!run("remove-identity", &mut g));
}

#[test]
fn cancel_transpose_reshape() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32s(&[2, 3, 4]));
    let t1 = g
        .add(
            Op::Transpose {
                perm: vec![1, 2, 0],
            },
            &[x],
            "t1",
        )
        .unwrap();
    let t2 = g
        .add(
            Op::Transpose {
                perm: vec![2, 0, 1],
            },
            &[t1],
            "t2",
        )
        .unwrap();
    let t3 = g
        .add(
            Op::Transpose {
                perm: vec![1, 0, 2],
            },
            &[t2],
            "t3",
        )
        .unwrap();
    let t4 = g
        .add(
            Op::Transpose {
                perm: vec![0, 2, 1],
            },
            &[t3],
            "t4",
        )
        .unwrap();
    let f = g.add(Op::Flatten { axis: 1 }, &[t4], "flat").unwrap();
    let s = g.add_const("s", ints(&[4, 6]));
    let r = g
        .add(Op::Reshape { allowzero: false }, &[f, s], "r")
        .unwrap();
    let ax = g.add_const("ax", ints(&[0]));
    let u = g.add(Op::Unsqueeze, &[r, ax], "u").unwrap();
    g.add_output("y", u);
    let mut pm =
        PassManager::new(&parse_pipeline("fixpoint(cancel-transpose-reshape)").unwrap()).unwrap();
    pm.verify_each(true);
    let report = pm.run(&mut g, &PassContext::new()).unwrap();
    assert!(report.warnings.is_empty());
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
    // t1∘t2 is the identity; t3∘t4 composes to one transpose; flatten/reshape/unsqueeze collapse.
    assert_eq!(ops, ["transpose", "reshape"]);
    assert_eq!(
        g.nodes[0].op,
        Op::Transpose {
            perm: vec![1, 2, 0]
        }
    );
    assert_eq!(g.nodes[0].inputs[0], x);
    assert_eq!(g.ty(g.outputs[0].value).dims(), Some(vec![1, 4, 6]));
}

#[test]
fn fold_batchnorm_into_conv_gemm_and_mul_add() {
    let bn_params = |g: &mut Graph, c: usize| -> Vec<ValueId> {
        let v = |k: f32| {
            Tensor::from_vec(
                vec![c],
                (0..c).map(|i| k + i as f32 * 0.25).collect::<Vec<f32>>(),
            )
        };
        vec![
            g.add_const("scale", v(1.5)),
            g.add_const("bias", v(-0.5)),
            g.add_const("mean", v(0.1)),
            g.add_const("var", v(2.0)),
        ]
    };
    // conv -> bn
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32s(&[1, 2, 5, 5]));
    let w = g.add_const("w", Tensor::from_vec(vec![3, 2, 3, 3], vec![0.5f32; 54]));
    let conv = g
        .add(
            Op::Conv(ConvAttrs {
                group: 1,
                ..Default::default()
            }),
            &[x, w],
            "conv",
        )
        .unwrap();
    let mut ins = vec![conv];
    ins.extend(bn_params(&mut g, 3));
    let bn = g
        .add(Op::BatchNorm { epsilon: F32(1e-5) }, &ins, "bn")
        .unwrap();
    g.add_output("y", bn);
    assert!(run("fold-batchnorm", &mut g));
    assert_eq!(
        g.nodes.iter().map(|n| n.op.name()).collect::<Vec<_>>(),
        ["conv"]
    );
    assert_eq!(g.nodes[0].inputs.len(), 3);

    // gemm -> bn
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32s(&[2, 4]));
    let b = g.add_const("b", Tensor::from_vec(vec![3, 4], vec![0.5f32; 12]));
    let c = g.add_const("c", Tensor::scalar(1.0f32));
    let attrs = GemmAttrs {
        trans_b: true,
        beta: F32(2.0),
        ..Default::default()
    };
    let gm = g.add(Op::Gemm(attrs), &[x, b, c], "gemm").unwrap();
    let mut ins = vec![gm];
    ins.extend(bn_params(&mut g, 3));
    let bn = g
        .add(Op::BatchNorm { epsilon: F32(1e-5) }, &ins, "bn")
        .unwrap();
    g.add_output("y", bn);
    assert!(run("fold-batchnorm", &mut g));
    assert_eq!(
        g.nodes.iter().map(|n| n.op.name()).collect::<Vec<_>>(),
        ["gemm"]
    );

    // relu -> bn: mul + add
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32s(&[1, 3, 2, 2]));
    let r = g.add(Op::Unary(UnaryOp::Relu), &[x], "relu").unwrap();
    let mut ins = vec![r];
    ins.extend(bn_params(&mut g, 3));
    let bn = g
        .add(Op::BatchNorm { epsilon: F32(1e-5) }, &ins, "bn")
        .unwrap();
    g.add_output("y", bn);
    assert!(run("fold-batchnorm", &mut g));
    assert_eq!(
        g.nodes.iter().map(|n| n.op.name()).collect::<Vec<_>>(),
        ["relu", "mul", "add"]
    );

    // non-constant parameters: arithmetic on the graph
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32s(&[1, 3, 2, 2]));
    let mut ins = vec![x];
    for n in ["scale", "bias", "mean", "var"] {
        ins.push(g.add_input(n, f32s(&[3])));
    }
    let bn = g
        .add(Op::BatchNorm { epsilon: F32(1e-5) }, &ins, "bn")
        .unwrap();
    g.add_output("y", bn);
    assert!(run("fold-batchnorm", &mut g));
    assert_eq!(count(&g, "batch_norm"), 0);
}

/// A pass that always claims a change (for the fixpoint cap).
struct Restless;
impl Pass for Restless {
    fn name(&self) -> &'static str {
        "restless"
    }
    fn run(&self, _g: &mut Graph, _cx: &PassContext) -> Result<bool, PassError> {
        Ok(true)
    }
}

/// A pass that breaks the graph (for verification).
struct Breaker;
impl Pass for Breaker {
    fn name(&self) -> &'static str {
        "breaker"
    }
    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<bool, PassError> {
        g.nodes[0].inputs[0] = ValueId(999);
        Ok(true)
    }
}

/// A pass that breaks the graph while claiming it changed nothing.
struct SilentBreaker;
impl Pass for SilentBreaker {
    fn name(&self) -> &'static str {
        "silent-breaker"
    }
    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<bool, PassError> {
        g.nodes[0].inputs[0] = ValueId(999);
        Ok(false)
    }
}

#[test]
fn manager_fixpoint_cap_is_a_warning() {
    let mut g = shape_chain(Dim::Known(2));
    let mut pm = PassManager::new(&Pipeline::default()).unwrap();
    pm.add_fixpoint(vec![Box::new(Restless)], 3);
    let report = pm.run(&mut g, &PassContext::new()).unwrap();
    assert_eq!(report.runs.len(), 3);
    assert_eq!(report.warnings.len(), 1, "{report}");
    assert!(report.warnings[0].contains("after 3 iterations"));
}

#[test]
fn manager_verifies_each_pass_or_at_the_end() {
    let mut pm = PassManager::new(&parse_pipeline("dce").unwrap()).unwrap();
    pm.add_pass(Box::new(Breaker)).verify_each(true);
    let err = pm
        .run(&mut shape_chain(Dim::Known(2)), &PassContext::new())
        .unwrap_err();
    assert!(matches!(err, PassError::Verify { index: 2, .. }), "{err}");
    // A pass that reports a change is always verified right after it.
    let mut pm = PassManager::new(&Pipeline::default()).unwrap();
    pm.add_pass(Box::new(Breaker));
    let err = pm
        .run(&mut shape_chain(Dim::Known(2)), &PassContext::new())
        .unwrap_err();
    assert!(matches!(err, PassError::Verify { index: 1, .. }), "{err}");
    // One that hides its change is caught at the end, or right after it with verify_each.
    let mut pm = PassManager::new(&Pipeline::default()).unwrap();
    pm.add_pass(Box::new(SilentBreaker));
    let err = pm
        .run(&mut shape_chain(Dim::Known(2)), &PassContext::new())
        .unwrap_err();
    assert!(matches!(err, PassError::VerifyEnd { .. }), "{err}");
    let mut pm = PassManager::new(&Pipeline::default()).unwrap();
    pm.add_pass(Box::new(SilentBreaker)).verify_each(true);
    let err = pm
        .run(&mut shape_chain(Dim::Known(2)), &PassContext::new())
        .unwrap_err();
    assert!(matches!(err, PassError::Verify { index: 1, .. }), "{err}");
}

#[test]
fn manager_dumps_disables_limits_and_times() {
    let opts = PipelineOptions {
        pipeline: "O1".into(),
        dump_after: Some("all".into()),
        verify_each: true,
        time_passes: true,
        ..Default::default()
    };
    let mut g = shape_chain(Dim::Known(2));
    let report = run_pipeline(&mut g, &opts, &PassContext::new()).unwrap();
    assert_eq!(count(&g, "shape"), 0);
    assert_eq!(report.dumps[0].0, "000-input.kir");
    let changed: Vec<String> = report
        .runs
        .iter()
        .filter(|r| r.changed)
        .map(|r| format!("{:03}-{}.kir", r.index, r.pass))
        .collect();
    let dumped: Vec<String> = report.dumps[1..].iter().map(|d| d.0.clone()).collect();
    assert_eq!(changed, dumped);
    let table = report.timing_table();
    assert!(
        table.contains("fold-constants") && table.contains("total"),
        "{table}"
    );

    // Disabled: nothing folds.
    let mut g = shape_chain(Dim::Known(2));
    let opts2 = PipelineOptions {
        pipeline: "canonicalize".into(),
        disable: vec!["fold-constants".into()],
        ..Default::default()
    };
    let report = run_pipeline(&mut g, &opts2, &PassContext::new()).unwrap();
    assert_eq!(count(&g, "shape"), 1);
    assert!(report.runs.iter().all(|r| r.pass != "fold-constants"));

    // Pass limit: exactly N applications.
    let mut g = shape_chain(Dim::Known(2));
    let opts3 = PipelineOptions {
        pipeline: "O1".into(),
        pass_limit: Some(1),
        ..Default::default()
    };
    let report = run_pipeline(&mut g, &opts3, &PassContext::new()).unwrap();
    assert_eq!(report.runs.len(), 1);
    assert!(report.stopped_by_limit);

    // Dump filter: only the named pass, into a directory.
    let dir = std::env::temp_dir().join(format!("kestrel-dumps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts4 = PipelineOptions {
        pipeline: "O1".into(),
        dump_dir: Some(dir.clone()),
        dump_after: Some("fold-constants".into()),
        ..Default::default()
    };
    run_pipeline(&mut shape_chain(Dim::Known(2)), &opts4, &PassContext::new()).unwrap();
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, ["001-fold-constants.kir"]);
    std::fs::remove_dir_all(&dir).unwrap();

    // Errors: unknown names.
    let bad = PipelineOptions {
        pipeline: "O1".into(),
        disable: vec!["nope".into()],
        ..Default::default()
    };
    assert!(matches!(
        run_pipeline(&mut shape_chain(Dim::Known(2)), &bad, &PassContext::new()),
        Err(PassError::UnknownPass { .. })
    ));
}

#[test]
fn listings() {
    let passes = list_passes();
    for name in [
        "fold-constants",
        "dce",
        "cse",
        "remove-identity",
        "fold-batchnorm",
        "cancel-transpose-reshape",
        "canonicalize",
    ] {
        assert!(passes.iter().any(|p| p.0 == name), "{name}");
    }
    let pipelines = list_pipelines();
    assert_eq!(pipelines[0].0, "O0");
    assert_eq!(pipelines[1].1, "canonicalize");
}
