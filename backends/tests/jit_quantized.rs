//! The JIT's quantized Mul, requantization (the lookup behind a quantized concat) and integer
//! average pooling against the interpreter, bit for bit (docs/QUANTIZATION.md): random shapes,
//! both signednesses, zero points, scales and folded bounds, compiled for 1, 2 and 3 threads.

use kestrel_ir::*;
use proptest::prelude::*;

mod int8_harness;
use int8_harness::{agree, bounds, bytes, int8_types};

/// A zero point near the middle of `t`'s range.
fn centred(t: DType, z: i32) -> i32 {
    if t == DType::U8 {
        z + 128
    } else {
        z
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// QuantizedMul with broadcasting (b kept along its last axis, or a scalar).
    #[test]
    fn quantized_mul(
        dims in prop::collection::vec(1usize..11, 1..4), bcast in 0u8..3,
        ta in int8_types(), tb in int8_types(), to in int8_types(),
        za in -20i32..20, zb in -20i32..20, zy in -20i32..20,
        ratio in 0.00005f32..0.05, pick in any::<u8>(), seed in any::<u64>(),
    ) {
        let zy = centred(to, zy);
        let (min, max) = bounds(to, zy, pick);
        let q = QuantizedMulAttrs {
            a_zero_point: centred(ta, za), b_zero_point: centred(tb, zb), ratio: F32(ratio),
            to, scale: F32(0.02), zero_point: zy, min, max,
        };
        let last = dims.len() - 1;
        let bd: Vec<usize> = match bcast {
            0 => dims.clone(),
            1 => dims.iter().enumerate().map(|(i, &d)| if i < last { 1 } else { d }).collect(),
            _ => vec![1],
        };
        let mut g = Graph::new("qmul");
        let a = g.add_input("a", TensorType::known(ta, &dims));
        let b = g.add_input("b", TensorType::known(tb, &bd));
        let y = g.add(Op::QuantizedMul(q), &[a, b], "mul").unwrap();
        g.add_output("y", y);
        agree(&g, &[bytes(ta, &dims, seed), bytes(tb, &bd, seed + 1)])?;
    }

    /// Two inputs requantized to the output's parameters and concatenated (a quantized concat).
    #[test]
    fn requantized_concat(
        c0 in 1usize..5, c1 in 1usize..5, h in 1usize..7, w in 1usize..9,
        ta in int8_types(), to in int8_types(), za in -30i32..30, zy in -30i32..30,
        sa in 0.001f32..0.1, sy in 0.001f32..0.1, seed in any::<u64>(),
    ) {
        let q = RequantizeAttrs {
            x_scale: F32(sa), x_zero_point: centred(ta, za), to, scale: F32(sy),
            zero_point: centred(to, zy),
        };
        let mut g = Graph::new("qconcat");
        let a = g.add_input("a", TensorType::known(ta, &[1, c0, h, w]));
        let b = g.add_input("b", TensorType::known(to, &[1, c1, h, w]));
        let ra = g.add(Op::Requantize(q), &[a], "requantize").unwrap();
        let y = g.add(Op::Concat { axis: 1 }, &[ra, b], "concat").unwrap();
        g.add_output("y", y);
        agree(&g, &[bytes(ta, &[1, c0, h, w], seed), bytes(to, &[1, c1, h, w], seed + 1)])?;
    }

    /// Global average pooling over planes of 1 to 300 bytes (the vector loop and its tail).
    #[test]
    fn quantized_global_average_pool(
        n in 1usize..3, c in 1usize..6, h in 1usize..18, w in 1usize..18,
        from in int8_types(), to in int8_types(), zx in -30i32..30, zy in -30i32..30,
        sx in 0.001f32..0.1, sy in 0.001f32..0.1, pick in any::<u8>(), seed in any::<u64>(),
    ) {
        let zy = centred(to, zy);
        let (min, max) = bounds(to, zy, pick);
        let q = QuantizedPoolAttrs {
            window: None, x_scale: F32(sx), x_zero_point: centred(from, zx), to,
            scale: F32(sy), zero_point: zy, min, max,
        };
        let mut g = Graph::new("qgap");
        let x = g.add_input("x", TensorType::known(from, &[n, c, h, w]));
        let y = g.add(Op::QuantizedAveragePool(q), &[x], "gap").unwrap();
        g.add_output("y", y);
        agree(&g, &[bytes(from, &[n, c, h, w], seed)])?;
    }

    /// Windowed average pooling: kernels, strides, asymmetric pads, ceil_mode and
    /// count_include_pad.
    #[test]
    fn quantized_average_pool(
        c in 1usize..4, h in 2usize..9, w in 2usize..9, kh in 1usize..4, kw in 1usize..4,
        stride in 1usize..3, pads in prop::collection::vec(0usize..2, 4), ceil_mode in any::<bool>(),
        count_include_pad in any::<bool>(), from in int8_types(), zx in -30i32..30,
        zy in -30i32..30, sx in 0.001f32..0.1, sy in 0.001f32..0.1, pick in any::<u8>(),
        seed in any::<u64>(),
    ) {
        let (kh, kw) = (kh.min(h), kw.min(w));
        // ONNX: pads smaller than the kernel.
        let pads: Vec<usize> = pads.iter().enumerate()
            .map(|(i, &p)| p.min(if i % 2 == 0 { kh - 1 } else { kw - 1 })).collect();
        let zy = centred(from, zy);
        let (min, max) = bounds(from, zy, pick);
        let window = PoolAttrs {
            kind: PoolKind::Average, kernel: vec![kh, kw], strides: vec![stride, stride],
            pads, dilations: vec![], ceil_mode, count_include_pad, auto_pad: AutoPad::NotSet,
        };
        let q = QuantizedPoolAttrs {
            window: Some(window), x_scale: F32(sx), x_zero_point: centred(from, zx), to: from,
            scale: F32(sy), zero_point: zy, min, max,
        };
        let mut g = Graph::new("qavg");
        let x = g.add_input("x", TensorType::known(from, &[1, c, h, w]));
        let y = g.add(Op::QuantizedAveragePool(q), &[x], "avg").unwrap();
        g.add_output("y", y);
        agree(&g, &[bytes(from, &[1, c, h, w], seed)])?;
    }
}
