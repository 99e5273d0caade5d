//! ScatterElements and ScatterND on the JIT against the interpreter: random ranks, axes, index shapes and
//! values (negative ones included, repeated positions), every reduction, i32 and i64 indices,
//! run-time and constant indices, f32 and integer data; out-of-range indices fail like the
//! interpreter's and write nothing.
//!
//! Tolerance: `none`, `max`, `min` and every integer reduction are exact (compared bit for bit).
//! f32 `add`/`mul` accumulate in f32 where the interpreter accumulates in f64 and rounds once:
//! at most `indices.dims[axis] ≤ 5` updates reach one position, so at most 5 roundings of values
//! bounded by 2 + 5·2 (add) or 2^6 (mul): within `1e-5 · max(1, |interp|)`.

use kestrel_backends::interp;
use kestrel_backends::jit::{compile, JitError, JitOptions};
use kestrel_ir::testing::{check_close, Random, XorShift64};
use kestrel_ir::*;
use proptest::prelude::*;

const TOL: f32 = 1e-5;

fn reductions() -> Vec<ScatterReduction> {
    vec![
        ScatterReduction::None,
        ScatterReduction::Add,
        ScatterReduction::Mul,
        ScatterReduction::Max,
        ScatterReduction::Min,
    ]
}

/// `ScatterElements(data, indices, updates)`; indices a constant when `const_idx`.
fn graph(
    data: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    axis: i64,
    reduction: ScatterReduction,
    const_idx: bool,
) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new("s");
    let d = g.add_input("data", TensorType::known(data.dtype(), data.dims()));
    let mut feeds = vec![data.clone()];
    let i = if const_idx {
        g.add_const("indices", indices.clone())
    } else {
        feeds.push(indices.clone());
        g.add_input(
            "indices",
            TensorType::known(indices.dtype(), indices.dims()),
        )
    };
    let u = g.add_input(
        "updates",
        TensorType::known(updates.dtype(), updates.dims()),
    );
    feeds.push(updates.clone());
    let y = g
        .add(
            Op::ScatterElements { axis, reduction },
            &[d, i, u],
            "scatter",
        )
        .unwrap();
    g.add_output("y", y);
    (g, feeds)
}

fn agree(g: &Graph, feeds: &[Tensor], exact: bool) -> Result<(), TestCaseError> {
    let want = interp::run(g, feeds).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let m =
        compile(g, &JitOptions::with_threads(2)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let got = m
        .run(feeds)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(got[0].dims(), want[0].dims());
    prop_assert_eq!(got[0].dtype(), want[0].dtype());
    if exact || got[0].dtype() != DType::F32 {
        prop_assert!(
            got[0].bytes() == want[0].bytes(),
            "jit {:?} vs interp {:?}",
            got[0],
            want[0]
        );
    } else {
        let close = check_close(&got[0].to_f32_vec(), &want[0].to_f32_vec(), TOL);
        prop_assert!(close.is_ok(), "jit vs interp: {}", close.unwrap_err());
    }
    Ok(())
}

/// The ONNX example (axis 1, one update per row) and a scatter-add with repeated and negative
/// indices, by hand.
#[test]
fn hand_computed() {
    let data = Tensor::from_vec(vec![1, 5], vec![1.0f32, 2.0, 3.0, 4.0, 5.0]);
    let idx = Tensor::from_vec(vec![1, 2], vec![1i64, 3]);
    let upd = Tensor::from_vec(vec![1, 2], vec![1.1f32, 2.1]);
    let (g, feeds) = graph(&data, &idx, &upd, 1, ScatterReduction::None, false);
    let got = compile(&g, &JitOptions::default())
        .unwrap()
        .run(&feeds)
        .unwrap();
    assert_eq!(got[0].to_f32_vec(), vec![1.0, 1.1, 3.0, 2.1, 5.0]);

    // Gather's gradient: zeros scattered-added at rows [0, 2, 0, -1] (-1 is row 2).
    let data = Tensor::from_vec(vec![3, 2], vec![0.0f32; 6]);
    let idx = Tensor::from_vec(vec![4, 2], vec![0i32, 0, 2, 2, 0, 0, -1, -1]);
    let upd = Tensor::from_vec(
        vec![4, 2],
        vec![1.0f32, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0],
    );
    let (g, feeds) = graph(&data, &idx, &upd, 0, ScatterReduction::Add, false);
    let got = compile(&g, &JitOptions::default())
        .unwrap()
        .run(&feeds)
        .unwrap();
    assert_eq!(got[0].to_f32_vec(), vec![11.0, 22.0, 0.0, 0.0, 33.0, 44.0]);
}

/// An index outside `[-extent, extent)` fails on both backends, and the JIT writes nothing
/// into the output buffer.
#[test]
fn out_of_range_index_fails_and_writes_nothing() {
    for bad in [3i64, -4, i64::MAX, i64::MIN] {
        let data = Tensor::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]);
        let idx = Tensor::from_vec(vec![2], vec![0i64, bad]);
        let upd = Tensor::from_vec(vec![2], vec![7.0f32, 8.0]);
        let (g, feeds) = graph(&data, &idx, &upd, 0, ScatterReduction::Add, false);
        let interp_err = interp::run(&g, &feeds).unwrap_err();
        assert!(
            interp_err.to_string().contains("out of range"),
            "{interp_err}"
        );
        let m = compile(&g, &JitOptions::default()).unwrap();
        match m.run(&feeds) {
            Err(JitError::Runtime { node, reason }) => {
                assert!(node.contains("scatter"), "{node}");
                assert!(reason.contains("out of range"), "{reason}");
            }
            other => panic!("index {bad}: expected a run-time error, got {other:?}"),
        }
        let ins: Vec<Vec<u8>> = feeds.iter().map(|t| t.bytes().to_vec()).collect();
        let ins: Vec<&[u8]> = ins.iter().map(|b| b.as_slice()).collect();
        let mut out = vec![0xAAu8; 12];
        assert!(m.run_into(&ins, &mut [&mut out]).is_err());
        assert!(
            out.iter().all(|&b| b == 0xAA),
            "index {bad}: output written"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_scatter_elements(
        data_dims in prop::collection::vec(1usize..5, 1..4),
        axis_pick in 0usize..3,
        negative_axis in any::<bool>(),
        shrink in prop::collection::vec(0usize..3, 3),
        along in 0usize..6,
        reduction in prop::sample::select(reductions()),
        i32_idx in any::<bool>(),
        const_idx in any::<bool>(),
        int_data in prop::sample::select(vec![None, Some(DType::I32), Some(DType::I64)]),
        seed in any::<u64>(),
    ) {
        let r = data_dims.len();
        let ax = axis_pick % r;
        let axis = if negative_axis { ax as i64 - r as i64 } else { ax as i64 };
        // Index shape: off the axis at most data's extent, along it anything (0 included).
        let idims: Vec<usize> = (0..r)
            .map(|a| if a == ax { along } else { data_dims[a].saturating_sub(shrink[a]).max(1) })
            .collect();
        let count: usize = idims.iter().product();
        let ext = data_dims[ax] as i64;
        let mut rng = XorShift64::seeded(seed);
        let raw: Vec<i64> = (0..count)
            .map(|_| (rng.next_u64() % (2 * ext as u64)) as i64 - ext)
            .collect();
        let indices = if i32_idx {
            Tensor::from_vec(idims.clone(), raw.iter().map(|&v| v as i32).collect::<Vec<_>>())
        } else {
            Tensor::from_vec(idims.clone(), raw)
        };
        let (data, updates) = match int_data {
            None => (
                rng.tensor_f32(&data_dims, -2.0, 2.0),
                rng.tensor_f32(&idims, -2.0, 2.0),
            ),
            Some(dt) => {
                let d: Vec<i64> = (0..data_dims.iter().product::<usize>())
                    .map(|_| (rng.next_u64() % 2001) as i64 - 1000)
                    .collect();
                let u: Vec<i64> = (0..count).map(|_| (rng.next_u64() % 2001) as i64 - 1000).collect();
                let t = |dims: &[usize], v: Vec<i64>| match dt {
                    DType::I32 => Tensor::from_vec(dims.to_vec(), v.iter().map(|&x| x as i32).collect::<Vec<_>>()),
                    _ => Tensor::from_vec(dims.to_vec(), v),
                };
                (t(&data_dims, d), t(&idims, u))
            }
        };
        let (g, feeds) = graph(&data, &indices, &updates, axis, reduction, const_idx);
        let exact = !matches!(reduction, ScatterReduction::Add | ScatterReduction::Mul);
        agree(&g, &feeds, exact)?;
    }
}

/// `ScatterND(data, indices, updates)`; indices a constant when `const_idx`.
fn graph_nd(
    data: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    reduction: ScatterReduction,
    const_idx: bool,
) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new("s");
    let d = g.add_input("data", TensorType::known(data.dtype(), data.dims()));
    let mut feeds = vec![data.clone()];
    let i = if const_idx {
        g.add_const("indices", indices.clone())
    } else {
        feeds.push(indices.clone());
        g.add_input(
            "indices",
            TensorType::known(indices.dtype(), indices.dims()),
        )
    };
    let u = g.add_input(
        "updates",
        TensorType::known(updates.dtype(), updates.dims()),
    );
    feeds.push(updates.clone());
    let y = g
        .add(Op::ScatterNd { reduction }, &[d, i, u], "scatter_nd")
        .unwrap();
    g.add_output("y", y);
    (g, feeds)
}

/// ScatterND's out-of-range index fails on both backends and leaves the output untouched.
#[test]
fn scatter_nd_out_of_range_index_fails() {
    let data = Tensor::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]);
    let idx = Tensor::from_vec(vec![2, 2], vec![1i64, 1, 0, -3]);
    let upd = Tensor::from_vec(vec![2], vec![7.0f32, 8.0]);
    let (g, feeds) = graph_nd(&data, &idx, &upd, ScatterReduction::None, false);
    assert!(interp::run(&g, &feeds).is_err());
    let m = compile(&g, &JitOptions::default()).unwrap();
    let ins: Vec<Vec<u8>> = feeds.iter().map(|t| t.bytes().to_vec()).collect();
    let ins: Vec<&[u8]> = ins.iter().map(|b| b.as_slice()).collect();
    let mut out = vec![0xAAu8; 16];
    assert!(matches!(
        m.run_into(&ins, &mut [&mut out]),
        Err(JitError::Runtime { .. })
    ));
    assert!(out.iter().all(|&b| b == 0xAA), "output written");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_scatter_nd(
        data_dims in prop::collection::vec(1usize..5, 1..4),
        q_pick in 0usize..4,
        batch in prop::collection::vec(0usize..4, 0..3),
        reduction in prop::sample::select(reductions()),
        i32_idx in any::<bool>(),
        const_idx in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let r = data_dims.len();
        let q = 1 + q_pick % r;
        let count: usize = batch.iter().product();
        let mut rng = XorShift64::seeded(seed);
        let raw: Vec<i64> = (0..count * q)
            .map(|j| {
                let ext = data_dims[j % q] as i64;
                (rng.next_u64() % (2 * ext as u64)) as i64 - ext
            })
            .collect();
        let mut idims = batch.clone();
        idims.push(q);
        let indices = if i32_idx {
            Tensor::from_vec(idims, raw.iter().map(|&v| v as i32).collect::<Vec<_>>())
        } else {
            Tensor::from_vec(idims, raw)
        };
        let mut udims = batch.clone();
        udims.extend(&data_dims[q..]);
        let data = rng.tensor_f32(&data_dims, -2.0, 2.0);
        let updates = rng.tensor_f32(&udims, -2.0, 2.0);
        let (g, feeds) = graph_nd(&data, &indices, &updates, reduction, const_idx);
        let exact = !matches!(reduction, ScatterReduction::Add | ScatterReduction::Mul);
        agree(&g, &feeds, exact)?;
    }
}
