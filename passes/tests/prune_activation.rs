//! `Importance::Activation` (docs/PRUNING.md "Importance and selection"): channels go in the order
//! of the mean |x| their consumers read, whatever their weights say; without statistics the
//! importance is an error, and a group no probe reads falls back to L2.

use kestrel_ir::text::parse;
use kestrel_passes::prune::{
    activation_probes, prune, prune_with_activations, ActivationStats, Importance, PruneError,
    PruneOptions,
};

/// conv (4 channels, channel 0 with the largest weights, channel 3 the smallest) -> relu ->
/// conv; a flatten of the second conv into a gemm.
const NET: &str = "graph @t(%x: f32[1,1,3,3]) -> (y: f32[1,2]) {
  %w1 = const dense<[9.0, 8.0, 0.3, 0.2]> : f32[4,1,1,1]
  %w2 = const dense<[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]> : f32[3,4,1,1]
  %w3 = const dense<[0.5, 0.4, 0.3, 0.2, 0.1, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 0.5, 0.4, 0.3, 0.2, 0.1, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7]> : f32[27,2]
  %c1 = conv(%x, %w1) : f32[1,4,3,3]
  %r1 = relu(%c1) : f32[1,4,3,3]
  %c2 = conv(%r1, %w2) : f32[1,3,3,3]
  %f = flatten(%c2) {axis=1} : f32[1,27]
  %y = gemm(%f, %w3) : f32[1,2]
  return %y
}";

fn options(importance: Importance) -> PruneOptions {
    PruneOptions {
        ratio: 0.5,
        importance,
        ..Default::default()
    }
}

#[test]
fn activation_importance_removes_the_least_active_channels() {
    let g = parse(NET, &|_| None).unwrap();
    let probes = activation_probes(&g).unwrap();
    // The second conv reads %r1 (4 channels); the gemm reads %f (3 channels of 9 features).
    assert_eq!(probes.len(), 2, "{probes:?}");
    let r1 = probes[0].value;
    let second_conv = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, kestrel_ir::Op::Conv(_)))
        .nth(1)
        .unwrap();
    assert_eq!(second_conv.inputs[0], r1);
    // Channels 0 and 1 (the largest weights) are the least active.
    let mut stats = ActivationStats::new();
    stats.insert(r1, vec![0.01, 0.02, 4.0, 3.0]);

    let mut by_l2 = g.clone();
    let (_, l2) = prune(&mut by_l2, &options(Importance::L2)).unwrap();
    let mut by_act = g.clone();
    let (_, act) =
        prune_with_activations(&mut by_act, &options(Importance::Activation), Some(&stats))
            .unwrap();
    // Unnamed nodes are reported by index: node_0 is the first conv, node_2 the second.
    let removed = |c: &[kestrel_passes::prune::Choice], name: &str| {
        c.iter().find(|c| c.name == name).unwrap().removed.clone()
    };
    assert_eq!(removed(&l2, "node_0"), vec![2, 3]);
    assert_eq!(removed(&act, "node_0"), vec![0, 1]);
    let first_conv = by_act
        .nodes
        .iter()
        .find(|n| matches!(n.op, kestrel_ir::Op::Conv(_)))
        .unwrap();
    let kept = by_act
        .const_data(first_conv.inputs[1])
        .unwrap()
        .to_f32_vec();
    assert_eq!(kept, vec![0.3, 0.2]);
    // The gemm's group had no statistics: scored by L2 as without them.
    assert_eq!(removed(&act, "node_2"), removed(&l2, "node_2"));
}

#[test]
fn activation_importance_needs_statistics() {
    let mut g = parse(NET, &|_| None).unwrap();
    let e = prune(&mut g, &options(Importance::Activation)).unwrap_err();
    assert!(matches!(e, PruneError::NeedsActivations), "{e}");
}
