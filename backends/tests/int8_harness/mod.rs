//! Helpers shared by the JIT's integer-op tests (`jit_integer.rs`, `jit_quantized.rs`): the
//! interpreter-agreement check and 8-bit data generators.
#![allow(dead_code)]

use kestrel_backends::interp;
use kestrel_backends::jit::{compile, JitOptions};
use kestrel_ir::testing::{Random, XorShift64};
use kestrel_ir::*;
use proptest::prelude::*;

/// Runs `g` on the interpreter and on the JIT with 1, 2 and 3 tasks per node (on the full-width
/// kernels where the host has them), and with 1 task on the 128-bit kernels; every output must
/// be byte-identical.
pub fn agree(g: &Graph, inputs: &[Tensor]) -> Result<(), TestCaseError> {
    let want = interp::run(g, inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (threads, wide_kernels) in [(1, true), (2, true), (3, true), (1, false)] {
        let opts = JitOptions {
            threads,
            min_task_macs: 1,
            im2col_block_bytes: if threads == 3 { 4 } else { 512 * 1024 },
            wide_kernels,
            ..JitOptions::default()
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
                "jit (threads {}, wide kernels {}) {:?}\n interp {:?}",
                threads,
                wide_kernels,
                &a.to_i64_vec()[..a.numel().min(24)],
                &b.to_i64_vec()[..b.numel().min(24)]
            );
        }
    }
    Ok(())
}

/// An 8-bit tensor of `dims` with values over the whole type.
pub fn bytes(dt: DType, dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut r = XorShift64::seeded(seed);
    let v: Vec<i64> = (0..n).map(|_| (r.next_u64() % 256) as i64).collect();
    let d = dims.to_vec();
    match dt {
        DType::I8 => Tensor::from_vec(d, v.iter().map(|&x| (x - 128) as i8).collect()),
        _ => Tensor::from_vec(d, v.iter().map(|&x| x as u8).collect()),
    }
}

pub fn int8_types() -> impl Strategy<Value = DType> {
    prop::sample::select(vec![DType::U8, DType::I8])
}

/// Output bounds: the type's range, or a narrower one as a folded Relu/Clip leaves it.
pub fn bounds(to: DType, zero_point: i32, pick: u8) -> (i32, i32) {
    let (lo, hi) = quant::range_of(to).unwrap();
    match pick % 3 {
        0 => (lo, hi),
        1 => (zero_point, hi),
        _ => (zero_point.max(lo + 3), (zero_point + 40).min(hi)),
    }
}
