//! The e-graph engine: limits hold on adversarial rule sets (the stop reason is recorded), the
//! fuse pass records its stop reason in the dump, and the language round-trips op names.

use egg::rewrite as rw;
use kestrel_ir::{parse, BinaryOp, DType, Graph, Op, TensorType};
use kestrel_passes::egraph::{self, Limits, Rule};
use kestrel_passes::{run_pipeline, PassContext, PipelineOptions};
use std::time::{Duration, Instant};

/// `x0 + x1 + ... + x(n-1)` as a left-leaning chain of adds.
fn add_chain(n: usize) -> Graph {
    let mut g = Graph::new("chain");
    let ty = TensorType::known(DType::F32, &[4]);
    let xs: Vec<_> = (0..n)
        .map(|i| g.add_input(format!("x{i}"), ty.clone()))
        .collect();
    let mut acc = xs[0];
    for &x in &xs[1..] {
        acc = g.add(Op::Binary(BinaryOp::Add), &[acc, x], "").unwrap();
    }
    g.add_output("y", acc);
    g
}

/// Commutativity and associativity of add: the e-graph of an n-term sum grows exponentially.
fn ac_rules() -> Vec<Rule> {
    vec![
        rw!("add-comm"; "(add ?a ?b)" => "(add ?b ?a)"),
        rw!("add-assoc"; "(add (add ?a ?b) ?c)" => "(add ?a (add ?b ?c))"),
        rw!("add-assoc-r"; "(add ?a (add ?b ?c))" => "(add (add ?a ?b) ?c)"),
    ]
}

#[test]
fn node_limit_stops_an_associativity_explosion() {
    let g = add_chain(14);
    let mut b = egraph::build(&g);
    let limits = Limits {
        nodes: 5_000,
        iters: 1_000,
        time: Duration::from_secs(60),
    };
    let sat = egraph::saturate(&mut b, &ac_rules(), limits);
    assert!(sat.hit_limit, "{sat}");
    assert!(sat.stop.starts_with("node limit"), "{sat}");
    // egg checks the limit between rule applications: it may overshoot by one iteration's worth.
    assert!(sat.enodes < 200_000, "{sat}");
    // The extracted graph is still valid and computes the same sum.
    let out = egraph::extract(&g, &b, None).unwrap();
    kestrel_ir::verify(&out).unwrap();
    assert_eq!(out.nodes.len(), 13);
}

#[test]
fn iteration_limit_is_recorded() {
    let g = add_chain(10);
    let mut b = egraph::build(&g);
    let limits = Limits {
        nodes: 10_000_000,
        iters: 2,
        time: Duration::from_secs(60),
    };
    let sat = egraph::saturate(&mut b, &ac_rules(), limits);
    assert_eq!(sat.stop, "iteration limit (2)", "{sat}");
    assert_eq!(sat.iterations, 2);
}

#[test]
fn time_limit_holds() {
    let g = add_chain(24);
    let mut b = egraph::build(&g);
    let limits = Limits {
        nodes: usize::MAX,
        iters: usize::MAX,
        time: Duration::from_millis(200),
    };
    let t = Instant::now();
    let sat = egraph::saturate(&mut b, &ac_rules(), limits);
    // One iteration may finish after the deadline; it must still stop soon after.
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "{:?}: {sat}",
        t.elapsed()
    );
    assert!(
        sat.stop.starts_with("time limit") || sat.stop.starts_with("node limit"),
        "{sat}"
    );
}

#[test]
fn fuse_records_its_stop_reason_in_the_dump() {
    let mut g = parse(
        "graph @t(%x: f32[1,2,3,3]) -> (y: f32[1,3,3,3]) {
  %w = const dense<[0.5, -1.0, 0.25, 2.0, 1.5, -0.5]> : f32[3,2,1,1]
  %c = conv(%x, %w) : f32[1,3,3,3]
  %y = relu(%c) : f32[1,3,3,3]
  return %y
}",
        &|_| None,
    )
    .unwrap();
    let opts = PipelineOptions {
        pipeline: "fuse".into(),
        dump_after: Some("fuse".into()),
        ..Default::default()
    };
    let report = run_pipeline(&mut g, &opts, &PassContext::new()).unwrap();
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
    assert!(
        report.notes[0].contains("stop reason: saturated"),
        "{:?}",
        report.notes
    );
    let (_, dump) = report.dumps.last().expect("a dump after fuse");
    assert!(
        dump.starts_with("// e-graph: stop reason: saturated"),
        "{dump}"
    );
    assert!(dump.contains("epilogue=relu"), "{dump}");
    // The dump (with its comment line) parses back.
    parse(dump, &|_| None).unwrap();
}

#[test]
fn fuse_limits_are_options_and_a_limit_is_reported() {
    let mut g = add_chain(6);
    let opts = PipelineOptions {
        pipeline: "fuse(node_limit=1,iter_limit=3,time_ms=500)".into(),
        ..Default::default()
    };
    let report = run_pipeline(&mut g, &opts, &PassContext::new()).unwrap();
    assert!(
        report.notes[0].contains("stop reason"),
        "{:?}",
        report.notes
    );
}

#[test]
fn pattern_ops_parse_with_and_without_attribute_wildcards() {
    let p: egg::Pattern<egraph::KNode> = "(relu (conv* ?x ?w))".parse().unwrap();
    assert_eq!(p.to_string(), "(relu (conv* ?x ?w))");
    assert!("(frobnicate ?x)"
        .parse::<egg::Pattern<egraph::KNode>>()
        .is_err());
}
