//! Property: pruning channels whose weights and bias are all zero leaves a model's outputs
//! unchanged (docs/PRUNING.md). Random conv nets — a stem, residual blocks, a depthwise layer, a
//! branch of grouped convolutions, a concat, a flatten into a gemm — with `round(ratio · C)`
//! channels of every prunable group zeroed (`round(ratio · C / g)` in each of the `g` blocks of a
//! grouped convolution's filters, the same positions in every block of a grouped convolution's
//! input); `prune(ratio)` must remove exactly those (they score 0) and the interpreter must give
//! the same outputs.

use kestrel_ir::testing::random_inputs;
use kestrel_ir::{
    BinaryOp, ConvAttrs, DType, GemmAttrs, Graph, Op, Tensor, TensorType, UnaryOp, ValueId,
};
use kestrel_passes::prune::{prune, PruneOptions};
use proptest::prelude::*;

struct Net {
    g: Graph,
    seed: u64,
}

/// Weights `[m, c, k, k]` from `seed`, with the output channels in `zero` all zero.
fn weights(seed: &mut u64, m: usize, c: usize, k: usize, zero: &[usize]) -> Tensor {
    let per = c * k * k;
    let mut v = Vec::with_capacity(m * per);
    for o in 0..m {
        for _ in 0..per {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = ((*seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32;
            v.push(if zero.contains(&o) { 0.0 } else { x + 0.01 });
        }
    }
    Tensor::from_vec(vec![m, c, k, k], v)
}

fn bias(m: usize, zero: &[usize]) -> Tensor {
    Tensor::from_vec(
        vec![m],
        (0..m)
            .map(|o| {
                if zero.contains(&o) {
                    0.0
                } else {
                    0.1 * (o as f32 + 1.0)
                }
            })
            .collect(),
    )
}

/// The first `n` channels of `0..c` in a seeded order: the ones zeroed.
fn zeroed(seed: u64, c: usize, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..c).collect();
    let mut s = seed;
    for i in (1..c).rev() {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
        idx.swap(i, (s >> 33) as usize % (i + 1));
    }
    idx.truncate(n);
    idx
}

fn conv(g: &mut Graph, x: ValueId, w: Tensor, b: Tensor, group: usize, pad: usize) -> ValueId {
    let name = format!("c{}", g.nodes.len());
    let w = g.add_const(format!("{name}.w"), w);
    let b = g.add_const(format!("{name}.b"), b);
    let attrs = ConvAttrs {
        pads: vec![pad; 4],
        group,
        ..Default::default()
    };
    g.add(Op::Conv(attrs), &[x, w, b], name).unwrap()
}

fn relu(g: &mut Graph, x: ValueId) -> ValueId {
    g.add(Op::Unary(UnaryOp::Relu), &[x], "").unwrap()
}

/// `n` channels of each of `blocks` blocks of `per_block`: the same positions in every block
/// when `tied`, else a seeded choice per block. When `0 < n < per_block - 1`, one more channel
/// of the first block is zero: it must stay (the per-block count, the shared positions), which a
/// choice over the whole group would not see.
fn zeroed_blocks(seed: u64, blocks: usize, per_block: usize, n: usize, tied: bool) -> Vec<usize> {
    let mut z: Vec<usize> = (0..blocks)
        .flat_map(|k| {
            let s = if tied { seed } else { seed + k as u64 };
            zeroed(s, per_block, n)
                .into_iter()
                .map(move |j| k * per_block + j)
        })
        .collect();
    if n > 0 && n + 1 < per_block {
        let extra = (0..per_block)
            .find(|j| !z.contains(j))
            .expect("a block has room");
        z.push(extra);
    }
    z
}

/// The grouped branch of [`net`]: `groups` groups of `per_group` input channels and `filters`
/// filters each, chained into a second grouped convolution when `chain`.
#[derive(Clone, Copy, Debug)]
struct Grouped {
    groups: usize,
    per_group: usize,
    filters: usize,
    chain: bool,
}

/// stem(c1) -> [residual block(c1)]* -> depthwise -> concat with a branch(c2) and a grouped
/// branch -> flatten -> gemm. The grouped branch: conv(groups · per_group) -> grouped conv
/// (groups · filters) [-> grouped conv (groups · filters)].
fn net(c1: usize, c2: usize, blocks: usize, gr: Grouped, ratio: f64, seed: u64) -> Net {
    let mut s = seed;
    let drop = |c: usize| (ratio * c as f64).round() as usize;
    let mut g = Graph::new("net");
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, kestrel_ir::types::shape_of(&[1, 3, 4, 4])),
    );
    // One group for the stem and every residual block (they are added together).
    let z1 = zeroed(seed, c1, drop(c1));
    let mut h = conv(
        &mut g,
        x,
        weights(&mut s, c1, 3, 3, &z1),
        bias(c1, &z1),
        1,
        1,
    );
    h = relu(&mut g, h);
    for k in 0..blocks {
        let zi = zeroed(seed + 10 + k as u64, c1, drop(c1));
        let a = conv(
            &mut g,
            h,
            weights(&mut s, c1, c1, 3, &zi),
            bias(c1, &zi),
            1,
            1,
        );
        let a = relu(&mut g, a);
        let b = conv(
            &mut g,
            a,
            weights(&mut s, c1, c1, 1, &z1),
            bias(c1, &z1),
            1,
            0,
        );
        h = g.add(Op::Binary(BinaryOp::Add), &[h, b], "").unwrap();
    }
    // Depthwise: the group's channels pass through (its zero filters keep them zero).
    h = conv(
        &mut g,
        h,
        weights(&mut s, c1, 1, 3, &z1),
        bias(c1, &z1),
        c1,
        1,
    );
    let z2 = zeroed(seed + 99, c2, drop(c2));
    let branch = conv(
        &mut g,
        x,
        weights(&mut s, c2, 3, 1, &z2),
        bias(c2, &z2),
        1,
        0,
    );
    // The grouped branch: each block keeps at least one channel.
    let Grouped {
        groups,
        per_group,
        filters,
        chain,
    } = gr;
    let block_drop = |c: usize| drop(c).min(c - 1);
    let c3 = groups * per_group;
    let z3 = zeroed_blocks(seed + 200, groups, per_group, block_drop(per_group), true);
    let a = conv(
        &mut g,
        x,
        weights(&mut s, c3, 3, 1, &z3),
        bias(c3, &z3),
        1,
        0,
    );
    let a = relu(&mut g, a);
    let m = groups * filters;
    let zg = zeroed_blocks(seed + 300, groups, filters, block_drop(filters), chain);
    let mut grouped = conv(
        &mut g,
        a,
        weights(&mut s, m, per_group, 3, &zg),
        bias(m, &zg),
        groups,
        1,
    );
    if chain {
        grouped = relu(&mut g, grouped);
        let zh = zeroed_blocks(seed + 400, groups, filters, block_drop(filters), false);
        grouped = conv(
            &mut g,
            grouped,
            weights(&mut s, m, filters, 1, &zh),
            bias(m, &zh),
            groups,
            0,
        );
    }
    let cat = g
        .add(Op::Concat { axis: 1 }, &[h, branch, grouped], "")
        .unwrap();
    let flat = g.add(Op::Flatten { axis: 1 }, &[cat], "").unwrap();
    let n = (c1 + c2 + m) * 16;
    let wg = g.add_const(
        "gemm.w",
        weights(&mut s, n, 3, 1, &[]).reshaped(vec![n, 3]).unwrap(),
    );
    let y = g
        .add(Op::Gemm(GemmAttrs::default()), &[flat, wg], "gemm")
        .unwrap();
    g.add_output("y", y);
    Net { g, seed }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn pruning_zero_channels_keeps_the_outputs(
        c1 in 2usize..9, c2 in 2usize..6, blocks in 0usize..3, ratio in 0.1f64..0.8, seed in 0u64..1000,
        groups in 2usize..4, per_group in 1usize..4, filters in 1usize..4, chain in any::<bool>()
    ) {
        // One input channel and one filter per group would be a depthwise convolution.
        let filters = if per_group == 1 { filters.max(2) } else { filters };
        let gr = Grouped { groups, per_group, filters, chain };
        let Net { g, seed } = net(c1, c2, blocks, gr, ratio, seed);
        let inputs = random_inputs(&g, seed);
        let want = kestrel_backends::interp::run(&g, &inputs).unwrap();
        let mut pruned = g.clone();
        let options = PruneOptions { ratio, ..Default::default() };
        let (_, choices) = prune(&mut pruned, &options).unwrap();
        let removed: usize = choices.iter().map(|c| c.removed.len()).sum();
        let drop = |c: usize| (ratio * c as f64).round() as usize;
        // The stem group, each block's inner conv, and the branch.
        let expected = drop(c1).min(c1 - 1) * (1 + blocks) + drop(c2).min(c2 - 1);
        // The grouped branch: its input conv, its grouped convs, the same count from each block.
        let block_drop = |c: usize| drop(c).min(c - 1);
        let expected = expected
            + groups * (block_drop(per_group) + block_drop(filters) * (1 + chain as usize));
        prop_assert_eq!(removed, expected);
        let got = kestrel_backends::interp::run(&pruned, &inputs).unwrap();
        let (a, b) = (want[0].to_f32_vec(), got[0].to_f32_vec());
        for (p, q) in a.iter().zip(&b) {
            prop_assert!((p - q).abs() <= 1e-5 * (1.0 + p.abs()), "{} vs {}", p, q);
        }
    }
}
