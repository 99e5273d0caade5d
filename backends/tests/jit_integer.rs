//! The JIT's integer kernels against the interpreter, bit for bit (docs/QUANTIZATION.md): the
//! quantized add, quantized conv (plain, grouped, depthwise, padded with the zero point,
//! strided), quantized gemm, and 8-bit max pooling, with random shapes, zero points,
//! per-channel multipliers and folded activation bounds, split into tasks.

use kestrel_backends::interp;
use kestrel_backends::jit::{compile, JitOptions};
use kestrel_ir::testing::{Random, XorShift64};
use kestrel_ir::*;
use proptest::prelude::*;

/// Runs `g` on the interpreter and on the JIT with 1, 2 and 3 tasks per node; every output must
/// be byte-identical.
fn agree(g: &Graph, inputs: &[Tensor]) -> Result<(), TestCaseError> {
    let want = interp::run(g, inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for threads in [1, 2, 3] {
        let opts = JitOptions {
            threads,
            min_task_macs: 1,
            im2col_block_bytes: if threads == 3 { 4 } else { 512 * 1024 },
        };
        let m = compile(g, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = m
            .run(inputs)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (a, b) in got.iter().zip(&want) {
            prop_assert_eq!(a.dims(), b.dims());
            prop_assert_eq!(a.dtype(), b.dtype());
            prop_assert!(
                a.bytes() == b.bytes(),
                "jit (threads {}) {:?}\n interp {:?}",
                threads,
                &a.to_i64_vec()[..a.numel().min(24)],
                &b.to_i64_vec()[..b.numel().min(24)]
            );
        }
    }
    Ok(())
}

/// An 8-bit tensor of `dims` with values over the whole type.
fn bytes(dt: DType, dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut r = XorShift64::seeded(seed);
    let v: Vec<i64> = (0..n).map(|_| (r.next_u64() % 256) as i64).collect();
    let d = dims.to_vec();
    match dt {
        DType::I8 => Tensor::from_vec(d, v.iter().map(|&x| (x - 128) as i8).collect()),
        _ => Tensor::from_vec(d, v.iter().map(|&x| x as u8).collect()),
    }
}

fn int8_types() -> impl Strategy<Value = DType> {
    prop::sample::select(vec![DType::U8, DType::I8])
}

/// Output bounds: the type's range, or a narrower one as a folded Relu/Clip leaves it.
fn bounds(to: DType, zero_point: i32, pick: u8) -> (i32, i32) {
    let (lo, hi) = quant::range_of(to).unwrap();
    match pick % 3 {
        0 => (lo, hi),
        1 => (zero_point, hi),
        _ => (zero_point.max(lo + 3), (zero_point + 40).min(hi)),
    }
}

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
