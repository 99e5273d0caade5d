//! ArgMax and ArgMin on the JIT against the interpreter: random ranks, axes (negative ones
//! included), keepdims, select_last_index, f32 and every integer dtype but u64 (refused: the
//! interpreter ranks u64 keys as i64). Values come from small
//! sets so ties are frequent; the f32 set holds NaN, ±inf and both zeros, the integer sets each
//! dtype's extremes (so a signed/unsigned mix-up shows). Indices are exact: compared bit for bit.

use kestrel_backends::interp;
use kestrel_backends::jit::{compile, JitOptions};
use kestrel_ir::testing::{Random, XorShift64};
use kestrel_ir::*;
use proptest::prelude::*;

fn graph(x: &Tensor, attrs: ArgAttrs) -> Graph {
    let mut g = Graph::new("arg");
    let i = g.add_input("x", TensorType::known(x.dtype(), x.dims()));
    let y = g.add(Op::Arg(attrs), &[i], "arg").unwrap();
    g.add_output("y", y);
    g
}

fn jit_and_interp(x: &Tensor, attrs: ArgAttrs) -> (Tensor, Tensor) {
    let g = graph(x, attrs);
    let feeds = [x.clone()];
    let want = interp::run(&g, &feeds).unwrap().remove(0);
    let got = compile(&g, &JitOptions::with_threads(2))
        .unwrap()
        .run(&feeds)
        .unwrap()
        .remove(0);
    (got, want)
}

fn attrs(kind: ArgKind, axis: i64, keepdims: bool, select_last_index: bool) -> ArgAttrs {
    ArgAttrs {
        kind,
        axis,
        keepdims,
        select_last_index,
    }
}

/// Random elements of `dtype` drawn from a small set (ties, extremes, NaN).
fn tensor(dtype: DType, dims: &[usize], rng: &mut XorShift64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut pick = |len: usize| (rng.next_u64() % len as u64) as usize;
    let d = dims.to_vec();
    macro_rules! ints {
        ($t:ty) => {{
            let set = [
                <$t>::MIN,
                <$t>::MAX,
                0 as $t,
                1 as $t,
                2 as $t,
                <$t>::MAX - 1,
            ];
            Tensor::from_vec(d, (0..n).map(|_| set[pick(set.len())]).collect::<Vec<$t>>())
        }};
    }
    match dtype {
        DType::F32 => {
            let set = [
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.0,
                -0.0,
                1.5,
                -1.5,
                3.0,
            ];
            Tensor::from_vec(d, (0..n).map(|_| set[pick(set.len())]).collect::<Vec<_>>())
        }
        DType::I8 => ints!(i8),
        DType::U8 => ints!(u8),
        DType::I16 => ints!(i16),
        DType::U16 => ints!(u16),
        DType::I32 => ints!(i32),
        DType::U32 => ints!(u32),
        DType::I64 => ints!(i64),
        DType::U64 => ints!(u64),
        other => panic!("no generator for {other}"),
    }
}

/// By hand: ties pick the first (or last) index, NaN wins for both kinds, `-0.0` ties `0.0`.
#[test]
fn hand_computed() {
    let x = Tensor::from_vec(
        vec![2, 4],
        vec![1.0f32, 3.0, 3.0, -1.0, 0.0, f32::NAN, -0.0, f32::NAN],
    );
    let cases = [
        (ArgKind::Max, false, vec![1i64, 1]),
        (ArgKind::Max, true, vec![2, 3]),
        (ArgKind::Min, false, vec![3, 1]),
        (ArgKind::Min, true, vec![3, 3]),
    ];
    for (kind, last, want) in cases {
        let (got, interp) = jit_and_interp(&x, attrs(kind, 1, false, last));
        assert_eq!(got.dims(), &[2]);
        assert_eq!(got.to_i64_vec(), want, "{kind:?} last={last}");
        assert_eq!(
            interp.to_i64_vec(),
            want,
            "interpreter {kind:?} last={last}"
        );
    }
    // Zeros tie: ArgMin of [0, -0, 1] is 0 (first) or 1 (last); keepdims on axis 0.
    let z = Tensor::from_vec(vec![3, 1], vec![0.0f32, -0.0, 1.0]);
    let (got, _) = jit_and_interp(&z, attrs(ArgKind::Min, 0, true, false));
    assert_eq!(
        (got.dims().to_vec(), got.to_i64_vec()),
        (vec![1, 1], vec![0])
    );
    let (got, _) = jit_and_interp(&z, attrs(ArgKind::Min, 0, true, true));
    assert_eq!(got.to_i64_vec(), vec![1]);
    // Unsigned compare: 200u8 is the maximum.
    let u = Tensor::from_vec(vec![3], vec![5u8, 200, 7]);
    let (got, _) = jit_and_interp(&u, attrs(ArgKind::Max, 0, false, false));
    assert_eq!(got.to_i64_vec(), vec![1]);
}

/// u64 is refused with a clear error (the interpreter compares its keys as i64).
#[test]
fn u64_refused() {
    let x = Tensor::from_vec(vec![2], vec![1u64, u64::MAX]);
    let err = match compile(
        &graph(&x, attrs(ArgKind::Min, 0, false, false)),
        &JitOptions::default(),
    ) {
        Ok(_) => panic!("u64 compiled"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("u64"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn random_arg(
        dims in prop::collection::vec(1usize..6, 1..5),
        axis_pick in 0usize..4,
        negative_axis in any::<bool>(),
        max in any::<bool>(),
        keepdims in any::<bool>(),
        last in any::<bool>(),
        dtype in prop::sample::select(vec![
            DType::F32, DType::F32, DType::F32, DType::I8, DType::U8, DType::I16, DType::U16,
            DType::I32, DType::U32, DType::I64,
        ]),
        seed in any::<u64>(),
    ) {
        let r = dims.len();
        let ax = axis_pick % r;
        let axis = if negative_axis { ax as i64 - r as i64 } else { ax as i64 };
        let kind = if max { ArgKind::Max } else { ArgKind::Min };
        let mut rng = XorShift64::seeded(seed);
        let x = tensor(dtype, &dims, &mut rng);
        let (got, want) = jit_and_interp(&x, attrs(kind, axis, keepdims, last));
        prop_assert_eq!(got.dims(), want.dims());
        prop_assert_eq!(got.dtype(), DType::I64);
        prop_assert_eq!(got.to_i64_vec(), want.to_i64_vec(), "x {:?}", x);
    }
}
