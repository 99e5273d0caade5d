//! f32 max pooling on the JIT, bit for bit against the interpreter on the values where a max is
//! easiest to get wrong: NaN taps (skipped), windows of NaN only (-inf), `-0.0` against `0.0` (the
//! first of equal taps is kept) and infinities, at strides 1 and 2 and widths that use the
//! vector body, its scalar tail and the `ceil_mode` overhang.

use kestrel_backends::interp;
use kestrel_backends::jit::{compile, JitOptions};
use kestrel_ir::testing::{Random, XorShift64};
use kestrel_ir::*;

/// `[1, 2, h, w]` values drawn from a few special ones and small integers (so equal taps occur).
fn awkward(h: usize, w: usize, seed: u64) -> Tensor {
    let special = [
        f32::NAN,
        -0.0,
        0.0,
        f32::NEG_INFINITY,
        f32::INFINITY,
        -1.0,
        1.0,
        2.0,
    ];
    let mut r = XorShift64::seeded(seed);
    let v: Vec<f32> = (0..2 * h * w)
        .map(|_| special[(r.next_u64() % special.len() as u64) as usize])
        .collect();
    Tensor::from_vec(vec![1, 2, h, w], v)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_f32_vec().iter().map(|v| v.to_bits()).collect()
}

fn check(op: Op, x: &Tensor) {
    let mut g = Graph::new("pool");
    let xv = g.add_input("x", TensorType::known(DType::F32, x.dims()));
    let y = g.add(op.clone(), &[xv], "pool").unwrap();
    g.add_output("y", y);
    let want = interp::run(&g, std::slice::from_ref(x)).unwrap();
    let got = compile(&g, &JitOptions::default())
        .unwrap()
        .run(std::slice::from_ref(x))
        .unwrap();
    assert_eq!(bits(&got[0]), bits(&want[0]), "{op:?} on {:?}", x.dims());
}

#[test]
fn max_pool_keeps_the_interpreters_nan_and_zero_rules() {
    for (k, stride, pad, ceil_mode) in [
        (3, 2, 0, false),
        (3, 2, 0, true),
        (3, 1, 1, false),
        (2, 2, 0, true),
        (1, 1, 0, false),
    ] {
        for (h, w) in [(5, 9), (7, 23), (9, 40), (6, 55)] {
            let a = PoolAttrs {
                kind: PoolKind::Max,
                kernel: vec![k, k],
                strides: vec![stride, stride],
                pads: vec![pad; 4],
                dilations: vec![],
                ceil_mode,
                count_include_pad: false,
                auto_pad: AutoPad::NotSet,
            };
            for seed in 0..4 {
                check(Op::Pool(a.clone()), &awkward(h, w, seed + (h * w) as u64));
            }
        }
    }
}

#[test]
fn global_max_pool_keeps_the_interpreters_nan_and_zero_rules() {
    for (h, w) in [(1, 3), (3, 5), (4, 8), (7, 7)] {
        for seed in 0..8 {
            check(Op::GlobalPool(PoolKind::Max), &awkward(h, w, seed));
        }
    }
}

/// Pools split into tasks by planes (`ops::pool::task_count`): 2 and 3 tasks give the one-task
/// bits, on the pool and run serially, for padded and unpadded windows and the global pools,
/// max (with the awkward values) and average.
#[test]
fn pools_split_into_tasks_give_the_same_bits() {
    let avg = |ceil_mode| PoolAttrs {
        kind: PoolKind::Average,
        kernel: vec![3, 3],
        strides: vec![2, 2],
        pads: vec![1; 4],
        dilations: vec![],
        ceil_mode,
        count_include_pad: false,
        auto_pad: AutoPad::NotSet,
    };
    let max = PoolAttrs {
        kind: PoolKind::Max,
        ..avg(true)
    };
    let ops = [
        Op::Pool(max),
        Op::Pool(avg(false)),
        Op::GlobalPool(PoolKind::Max),
        Op::GlobalPool(PoolKind::Average),
    ];
    for op in ops {
        let x = awkward(9, 13, 3);
        let x = match op {
            Op::Pool(PoolAttrs {
                kind: PoolKind::Max,
                ..
            })
            | Op::GlobalPool(PoolKind::Max) => x,
            // Averages of infinities and NaN are NaN everywhere: use plain values.
            _ => XorShift64::seeded(4).tensor_f32(x.dims(), -1.0, 1.0),
        };
        // Ten planes: uneven parts for 3 tasks.
        let x5 = Tensor::from_vec(
            vec![1, 10, 9, 13],
            (0..5).flat_map(|_| x.to_f32_vec()).collect(),
        );
        let mut g = Graph::new("pool");
        let xv = g.add_input("x", TensorType::known(DType::F32, x5.dims()));
        let y = g.add(op.clone(), &[xv], "pool").unwrap();
        g.add_output("y", y);
        let one = compile(&g, &JitOptions::default())
            .unwrap()
            .run(std::slice::from_ref(&x5))
            .unwrap();
        for threads in [2, 3] {
            let opts = JitOptions {
                threads,
                min_task_macs: 1,
                ..Default::default()
            };
            let tasks = kestrel_backends::jit::ops::task_count(&g, &g.nodes[0], &opts);
            assert_eq!(tasks, threads, "{op:?}");
            let m = compile(&g, &opts).unwrap();
            let split = m.run(std::slice::from_ref(&x5)).unwrap();
            let serial = m.run_serial(std::slice::from_ref(&x5)).unwrap();
            assert_eq!(bits(&split[0]), bits(&one[0]), "{op:?}, {threads} tasks");
            assert_eq!(
                bits(&serial[0]),
                bits(&one[0]),
                "{op:?}, {threads} tasks serially"
            );
        }
        if matches!(
            op,
            Op::GlobalPool(PoolKind::Max)
                | Op::Pool(PoolAttrs {
                    kind: PoolKind::Max,
                    ..
                })
        ) {
            check(op, &x5);
        }
    }
}
