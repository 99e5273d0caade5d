//! The JIT's integer kernels against the interpreter, bit for bit (docs/QUANTIZATION.md): the
//! quantized add, quantized conv (plain, grouped, depthwise, padded with the zero point,
//! strided), quantized gemm, and 8-bit max pooling, with random shapes, zero points,
//! per-channel multipliers, both requantization modes and folded activation bounds, split into
//! tasks.

use kestrel_ir::testing::{Random, XorShift64};
use kestrel_ir::*;
use proptest::prelude::*;

mod int8_harness;
use int8_harness::{agree, bounds, bytes, int8_types};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// QuantizedAdd with broadcasting, both signednesses, ratios around 1 and bounds.
    #[test]
    fn quantized_add(
        dims in prop::collection::vec(1usize..9, 1..4), bcast in any::<bool>(),
        ta in int8_types(), tb in int8_types(), to in int8_types(),
        za in -20i32..20, zb in -20i32..20, zy in -20i32..20,
        ra in 0.05f32..3.0, rb in 0.05f32..3.0, pick in any::<u8>(), seed in any::<u64>(),
    ) {
        let shift = |t: DType, z: i32| if t == DType::U8 { z + 128 } else { z };
        let zy = shift(to, zy);
        let (min, max) = bounds(to, zy, pick);
        let q = QuantizedAddAttrs {
            a_zero_point: shift(ta, za), a_ratio: F32(ra),
            b_zero_point: shift(tb, zb), b_ratio: F32(rb),
            to, scale: F32(0.02), zero_point: zy, min, max,
        };
        // Broadcast b: only its last axis kept.
        let last = dims.len() - 1;
        let bd: Vec<usize> = dims.iter().enumerate().map(|(i, &d)| if bcast && i < last { 1 } else { d }).collect();
        let mut g = Graph::new("qadd");
        let a = g.add_input("a", TensorType::known(ta, &dims));
        let b = g.add_input("b", TensorType::known(tb, &bd));
        let y = g.add(Op::QuantizedAdd(q), &[a, b], "add").unwrap();
        g.add_output("y", y);
        agree(&g, &[bytes(ta, &dims, seed), bytes(tb, &bd, seed + 1)])?;
    }
}

fn requant_of(
    to: DType,
    channels: usize,
    zero_point: i32,
    pick: u8,
    float: bool,
    seed: u64,
) -> Requant {
    let mut r = XorShift64::seeded(seed);
    let (min, max) = bounds(to, zero_point, pick);
    Requant {
        to,
        multiplier: (0..channels)
            .map(|_| F32(r.uniform_f32(0.0002, 0.02)))
            .collect(),
        scale: F32(0.05),
        zero_point,
        min,
        max,
        mode: if float {
            RequantMode::Float
        } else {
            RequantMode::FixedPoint
        },
    }
}

fn weights(dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut r = XorShift64::seeded(seed);
    let v: Vec<i8> = (0..n)
        .map(|_| ((r.next_u64() % 255) as i64 - 127) as i8)
        .collect();
    Tensor::from_vec(dims.to_vec(), v)
}

fn int_bias(n: usize, seed: u64) -> Tensor {
    let mut r = XorShift64::seeded(seed);
    let v: Vec<i32> = (0..n)
        .map(|_| (r.next_u64() % 20001) as i32 - 10000)
        .collect();
    Tensor::from_vec(vec![n], v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Quantized 2-D convolution: groups 1, depthwise or a divisor, strides, dilations,
    /// asymmetric padding (which holds the zero point), per-tensor or per-channel multipliers,
    /// folded bounds, i32 accumulators or requantized u8/i8, data u8 or i8.
    #[test]
    fn quantized_conv2d(
        n in 1usize..3, c in 1usize..6, m in 1usize..7, h in 3usize..9, w in 3usize..9,
        kh in 1usize..4, kw in 1usize..4, stride in 1usize..3, dil in 1usize..3,
        pads in prop::collection::vec(0usize..3, 4), group_pick in 0usize..3, with_bias in any::<bool>(),
        xdt in int8_types(), to in int8_types(), requantized in any::<bool>(), per_channel in any::<bool>(),
        zx in -30i32..30, zy in -30i32..30, pick in any::<u8>(), float in any::<bool>(), seed in any::<u64>(),
    ) {
        let (group, c, m) = match group_pick {
            0 => (1, c, m),
            1 => (c, c, c),
            _ => (if c % 2 == 0 && m % 2 == 0 { 2 } else { 1 }, c, m),
        };
        let fits = |i: usize, k: usize, p0: usize, p1: usize| i + p0 + p1 > (k - 1) * dil;
        prop_assume!(fits(h, kh, pads[0], pads[2]) && fits(w, kw, pads[1], pads[3]));
        let shift = |t: DType, z: i32| if t == DType::U8 { z + 128 } else { z };
        let zy = shift(to, zy);
        let ia = IntegerAttrs {
            x_zero_point: shift(xdt, zx),
            requant: requantized.then(|| requant_of(to, if per_channel { m } else { 1 }, zy, pick, float, seed + 9)),
        };
        let a = ConvAttrs {
            group,
            strides: vec![stride; 2],
            dilations: vec![dil; 2],
            pads: vec![pads[0], pads[1], pads[2], pads[3]],
            integer: Some(ia),
            ..Default::default()
        };
        let mut g = Graph::new("qconv");
        let x = g.add_input("x", TensorType::known(xdt, &[n, c, h, w]));
        let wv = g.add_const("w", weights(&[m, c / group, kh, kw], seed + 1));
        let mut ins = vec![x, wv];
        if with_bias {
            ins.push(g.add_const("b", int_bias(m, seed + 2)));
        }
        let y = g.add(Op::Conv(a), &ins, "conv").unwrap();
        g.add_output("y", y);
        agree(&g, &[bytes(xdt, &[n, c, h, w], seed + 3)])?;
    }

    /// Quantized Gemm: weights [K, N] or transposed, per-tensor or per-column multipliers.
    #[test]
    fn quantized_gemm(
        rows in 1usize..6, kk in 1usize..40, n in 1usize..20, trans_b in any::<bool>(),
        with_bias in any::<bool>(), xdt in int8_types(), to in int8_types(),
        requantized in any::<bool>(), per_channel in any::<bool>(),
        zx in -30i32..30, zy in -30i32..30, pick in any::<u8>(), float in any::<bool>(), seed in any::<u64>(),
    ) {
        let shift = |t: DType, z: i32| if t == DType::U8 { z + 128 } else { z };
        let zy = shift(to, zy);
        let a = GemmAttrs {
            trans_b,
            integer: Some(IntegerAttrs {
                x_zero_point: shift(xdt, zx),
                requant: requantized.then(|| requant_of(to, if per_channel { n } else { 1 }, zy, pick, float, seed + 9)),
            }),
            ..Default::default()
        };
        let wd = if trans_b { [n, kk] } else { [kk, n] };
        let mut g = Graph::new("qgemm");
        let x = g.add_input("x", TensorType::known(xdt, &[rows, kk]));
        let wv = g.add_const("w", weights(&wd, seed + 1));
        let mut ins = vec![x, wv];
        if with_bias {
            ins.push(g.add_const("b", int_bias(n, seed + 2)));
        }
        let y = g.add(Op::Gemm(a), &ins, "gemm").unwrap();
        g.add_output("y", y);
        agree(&g, &[bytes(xdt, &[rows, kk], seed + 3)])?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Max pooling and global max pooling of u8/i8 data: padding, strides, dilations, ceil mode;
    /// rows up to 71 wide, so strides 1 and 2 run the sixteen-output vector chunks (and the
    /// chunks that stop before the row's end) as well as the one-by-one tail.
    #[test]
    fn max_pool_8bit(
        n in 1usize..3, c in 1usize..4, h in 2usize..10, w in 2usize..72,
        kh in 1usize..4, kw in 1usize..4, stride in 1usize..3, dil in 1usize..3,
        pad in 0usize..2, ceil in any::<bool>(), dt in int8_types(), seed in any::<u64>(),
    ) {
        let pad = pad.min(kh / 2).min(kw / 2);
        prop_assume!(h + 2 * pad > (kh - 1) * dil && w + 2 * pad > (kw - 1) * dil);
        let a = PoolAttrs {
            kind: PoolKind::Max,
            kernel: vec![kh, kw],
            strides: vec![stride; 2],
            dilations: vec![dil; 2],
            pads: vec![pad; 4],
            ceil_mode: ceil,
            count_include_pad: false,
            auto_pad: AutoPad::NotSet,
        };
        let mut g = Graph::new("pool");
        let x = g.add_input("x", TensorType::known(dt, &[n, c, h, w]));
        let y = g.add(Op::Pool(a), &[x], "pool").unwrap();
        let z = g.add(Op::GlobalPool(PoolKind::Max), &[x], "gpool").unwrap();
        g.add_output("y", y);
        g.add_output("z", z);
        agree(&g, &[bytes(dt, &[n, c, h, w], seed)])?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Quantized depthwise convolution on rows wide enough for the eight-output vector loop
    /// (stride 1 and 2, with the last group overlapping) and for the scalar loop (stride 3).
    #[test]
    fn quantized_depthwise_wide_rows(
        n in 1usize..3, c in 2usize..5, h in 3usize..8, w in 8usize..30,
        k in 1usize..6, stride in 1usize..4, dil in 1usize..3, pad in 0usize..3,
        xdt in int8_types(), requantized in any::<bool>(), zx in -30i32..30, zy in -30i32..30,
        pick in any::<u8>(), float in any::<bool>(), seed in any::<u64>(),
    ) {
        prop_assume!(h + 2 * pad > (k - 1) * dil && w + 2 * pad > (k - 1) * dil);
        let shift = |t: DType, z: i32| if t == DType::U8 { z + 128 } else { z };
        let zy = shift(DType::U8, zy);
        let a = ConvAttrs {
            group: c,
            strides: vec![stride; 2],
            dilations: vec![dil; 2],
            pads: vec![pad; 4],
            integer: Some(IntegerAttrs {
                x_zero_point: shift(xdt, zx),
                requant: requantized.then(|| requant_of(DType::U8, c, zy, pick, float, seed + 9)),
            }),
            ..Default::default()
        };
        let mut g = Graph::new("qdw");
        let x = g.add_input("x", TensorType::known(xdt, &[n, c, h, w]));
        let wv = g.add_const("w", weights(&[c, 1, k, k], seed + 1));
        let b = g.add_const("b", int_bias(c, seed + 2));
        let y = g.add(Op::Conv(a), &[x, wv, b], "conv").unwrap();
        g.add_output("y", y);
        agree(&g, &[bytes(xdt, &[n, c, h, w], seed + 3)])?;
    }
}

/// A quantized direct 1×1 conv (unit strides, no padding: B is the input itself) of `m`
/// channels over `h × w`, with an optional per-channel requantization.
fn conv_1x1(
    n: usize,
    c: usize,
    m: usize,
    h: usize,
    w: usize,
    requantized: bool,
    seed: u64,
) -> (Graph, Tensor) {
    let zy = 128 + (seed % 7) as i32;
    let a = ConvAttrs {
        group: 1,
        strides: vec![1; 2],
        dilations: vec![1; 2],
        pads: vec![0; 4],
        integer: Some(IntegerAttrs {
            x_zero_point: 120 + (seed % 11) as i32,
            requant: requantized.then(|| {
                requant_of(
                    DType::U8,
                    m,
                    zy,
                    (seed % 3) as u8,
                    seed.is_multiple_of(2),
                    seed + 9,
                )
            }),
        }),
        ..Default::default()
    };
    let mut g = Graph::new("qconv1x1");
    let x = g.add_input("x", TensorType::known(DType::U8, &[n, c, h, w]));
    let wv = g.add_const("w", weights(&[m, c, 1, 1], seed + 1));
    let b = g.add_const("b", int_bias(m, seed + 2));
    let y = g.add(Op::Conv(a), &[x, wv, b], "conv").unwrap();
    g.add_output("y", y);
    (g, bytes(DType::U8, &[n, c, h, w], seed + 3))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Direct 1×1 convs: blocks of output rows as one run-time loop plus a partial block (one
    /// row per block with the 4-byte im2col bound of `agree`'s third run).
    #[test]
    fn quantized_conv_1x1(
        n in 1usize..3, c in 1usize..20, m in 1usize..20, h in 1usize..9, w in 1usize..20,
        requantized in any::<bool>(), seed in any::<u64>(),
    ) {
        let (g, x) = conv_1x1(n, c, m, h, w, requantized, seed);
        agree(&g, &[x])?;
    }
}

/// A requantized 1×1 conv whose i32 accumulators exceed one block's bound (64 channels × 64
/// pixels × 4 bytes per output row: 8 rows per block), so with the default im2col bound it runs
/// two full blocks in the run-time loop and a partial one of 4 rows.
#[test]
fn quantized_conv_1x1_over_several_accumulator_blocks() {
    let (g, x) = conv_1x1(1, 5, 64, 20, 64, true, 77);
    agree(&g, &[x]).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Quantized convolutions and Gemms large enough for whole full-width tiles (14 rows × 32
    /// columns), their row and column edges, and (Gemm) several 1024-deep k blocks, with k a
    /// multiple of 4 or not: the full-width `vpdpbusd` kernels where the host has them, checked
    /// byte for byte against the interpreter and the 128-bit kernels (`int8_harness::agree`).
    #[test]
    fn quantized_conv_and_gemm_on_whole_tiles(
        c in 1usize..40, m in 1usize..48, hw in 4usize..11, kernel in 1usize..4,
        rows in 1usize..48, kk_pick in 0usize..3, kk_small in 1usize..64, n in 1usize..80,
        requantized in any::<bool>(), seed in any::<u64>(),
    ) {
        let to = DType::U8;
        let requant = |channels: usize| requantized.then(|| requant_of(to, channels, 128, 0, false, seed + 9));
        let a = ConvAttrs {
            group: 1,
            pads: vec![kernel / 2; 4],
            integer: Some(IntegerAttrs { x_zero_point: 128, requant: requant(m) }),
            ..Default::default()
        };
        let mut g = Graph::new("qconv");
        let x = g.add_input("x", TensorType::known(DType::U8, &[1, c, hw, hw]));
        let wv = g.add_const("w", weights(&[m, c, kernel, kernel], seed + 1));
        let b = g.add_const("b", int_bias(m, seed + 2));
        let y = g.add(Op::Conv(a), &[x, wv, b], "conv").unwrap();
        g.add_output("y", y);
        agree(&g, &[bytes(DType::U8, &[1, c, hw, hw], seed + 3)])?;

        let kk = [kk_small, 4 * kk_small, 1000 + 4 * kk_small][kk_pick];
        let ga = GemmAttrs {
            integer: Some(IntegerAttrs { x_zero_point: 128, requant: requant(n) }),
            ..Default::default()
        };
        let mut g = Graph::new("qgemm");
        let x = g.add_input("x", TensorType::known(DType::U8, &[rows, kk]));
        let wv = g.add_const("w", weights(&[kk, n], seed + 4));
        let b = g.add_const("b", int_bias(n, seed + 5));
        let y = g.add(Op::Gemm(ga), &[x, wv, b], "gemm").unwrap();
        g.add_output("y", y);
        agree(&g, &[bytes(DType::U8, &[rows, kk], seed + 6)])?;
    }
}

/// Quantized stride-2 convolutions over wide rows: the u8 im2col copies every second byte 16
/// at a time (two loads and a byte shuffle) except at the end of each row.
#[test]
fn quantized_stride_2_im2col_on_wide_rows() {
    for (w, k, pad) in [(70, 3, 1), (71, 7, 3), (35, 1, 0), (64, 5, 2), (9, 3, 0)] {
        let a = ConvAttrs {
            group: 1,
            strides: vec![2, 2],
            pads: vec![pad; 4],
            integer: Some(IntegerAttrs {
                x_zero_point: 128,
                requant: None,
            }),
            ..Default::default()
        };
        let mut g = Graph::new("qs2");
        let x = g.add_input("x", TensorType::known(DType::U8, &[1, 3, 6, w]));
        let wv = g.add_const("w", weights(&[4, 3, k, k], 5));
        let y = g.add(Op::Conv(a), &[x, wv], "conv").unwrap();
        g.add_output("y", y);
        agree(&g, &[bytes(DType::U8, &[1, 3, 6, w], 6)]).unwrap();
    }
}
