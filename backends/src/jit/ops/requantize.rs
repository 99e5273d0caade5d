//! `requantize` (see `kestrel_ir::RequantizeAttrs`): an 8-bit tensor moved to other quantization
//! parameters through a 256-entry lookup table computed at compile time with
//! `RequantizeAttrs::level`, the interpreter's definition, so the two agree by construction. The
//! table is indexed by the input byte as it is stored (i8 levels by their two's-complement bits).

use crate::jit::context::KernelContext;
use crate::jit::emit::Emitter;
use crate::jit::error::JitError;
use cranelift_codegen::ir::{types, InstBuilder};
use kestrel_ir::{DType, RequantizeAttrs};

/// The table: entry `b` is the output byte of the input byte `b`.
pub fn table(q: &RequantizeAttrs, from: DType) -> Vec<u8> {
    (0..=255u8)
        .map(|b| {
            let x = if from == DType::I8 {
                b as i8 as i64
            } else {
                b as i64
            };
            q.level(x) as u8
        })
        .collect()
}

pub fn requantize(
    e: &mut Emitter,
    k: &mut KernelContext,
    q: &RequantizeAttrs,
) -> Result<(), JitError> {
    let (from, to) = (k.in_dtype(0), k.out_dtype(0));
    let int8 = |d: DType| matches!(d, DType::U8 | DType::I8);
    if !int8(from) || !int8(to) {
        return Err(k.unsupported("requantize of non-8-bit values"));
    }
    let n: usize = k.out_dims(0).iter().product();
    let lut = k.rodata(e, table(q, from))?;
    let (src, dst) = (k.ins[0], k.outs[0]);
    // Four lookups per step, then the rest.
    let lookup = |e: &mut Emitter, s: cranelift_codegen::ir::Value, off: i32| {
        let b = e.load(types::I8, s, off);
        let i = e.fb.ins().uextend(types::I64, b);
        let a = e.fb.ins().iadd(lut, i);
        e.load(types::I8, a, 0)
    };
    e.loop_n(n / 4, |e, i| {
        let s = e.index(src, i, 4);
        let d = e.index(dst, i, 4);
        for j in 0..4 {
            let y = lookup(e, s, j);
            e.store(y, d, j);
        }
    });
    for j in n / 4 * 4..n {
        let y = lookup(e, src, j as i32);
        e.store(y, dst, j as i32);
    }
    Ok(())
}
