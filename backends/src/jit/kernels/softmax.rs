//! Softmax of one row: max-shifted exponentials, summed, then normalised (or, for LogSoftmax,
//! `x - max - ln(sum)`), vectorised when the row is contiguous. Used by the Softmax/LogSoftmax
//! lowering and by the fused attention kernel.

use crate::jit::emit::Emitter;
use cranelift_codegen::ir::{types, InstBuilder, Value};

/// Softmax of `n` f32 at byte stride `st` (vectorised when contiguous).
pub fn softmax_row(e: &mut Emitter, x: Value, out: Value, n: usize, st: i64, log: bool) {
    let contiguous = st == 4 && n >= 4;
    let chunks = if contiguous { n / 4 } else { 0 };
    let tail0 = chunks * 4;
    // Max.
    let mut mx = if contiguous {
        let init = e.fconst(types::F32X4, f32::NEG_INFINITY);
        let v = e.loop_acc(chunks, &[init], |e, i, acc| {
            let a = e.index(x, i, 16);
            let v = e.load(types::F32X4, a, 0);
            vec![e.fb.ins().fmax(acc[0], v)]
        })[0];
        e.hminmax(v, true)
    } else {
        e.fconst(types::F32, f32::NEG_INFINITY)
    };
    mx = scalar_tail(e, x, st, tail0, n, mx, |e, acc, v| e.fb.ins().fmax(acc, v));
    let mxv = e.fb.ins().splat(types::F32X4, mx);
    // Sum of exp(x - max); for softmax, store the exponentials.
    let mut sum = if contiguous {
        let init = e.fconst(types::F32X4, 0.0);
        let v = e.hoisting_constants(|e| {
            e.loop_acc(chunks, &[init], |e, i, acc| {
                let a = e.index(x, i, 16);
                let v = e.load(types::F32X4, a, 0);
                let d = e.fb.ins().fsub(v, mxv);
                let ex = e.exp(d);
                if !log {
                    let o = e.index(out, i, 16);
                    e.store(ex, o, 0);
                }
                vec![e.fb.ins().fadd(acc[0], ex)]
            })
        })[0];
        e.hsum(v)
    } else {
        e.fconst(types::F32, 0.0)
    };
    let tail_len = n - tail0;
    if tail_len > 0 {
        let init = sum;
        sum = e.loop_acc(tail_len, &[init], |e, j, acc| {
            let jj = e.fb.ins().iadd_imm_s(j, tail0 as i64);
            let a = e.index(x, jj, st);
            let v = e.load(types::F32, a, 0);
            let d = e.fb.ins().fsub(v, mx);
            let ex = e.exp(d);
            if !log {
                let o = e.index(out, jj, st);
                e.store(ex, o, 0);
            }
            vec![e.fb.ins().fadd(acc[0], ex)]
        })[0];
    }
    // Normalise.
    if log {
        let ls = e.log(sum);
        let sh = e.fb.ins().fadd(mx, ls);
        let shv = e.fb.ins().splat(types::F32X4, sh);
        e.loop_n(chunks, |e, i| {
            let a = e.index(x, i, 16);
            let v = e.load(types::F32X4, a, 0);
            let r = e.fb.ins().fsub(v, shv);
            let o = e.index(out, i, 16);
            e.store(r, o, 0);
        });
        if tail_len > 0 {
            e.loop_n(tail_len, |e, j| {
                let jj = e.fb.ins().iadd_imm_s(j, tail0 as i64);
                let a = e.index(x, jj, st);
                let v = e.load(types::F32, a, 0);
                let r = e.fb.ins().fsub(v, sh);
                let o = e.index(out, jj, st);
                e.store(r, o, 0);
            });
        }
    } else {
        let one = e.fconst(types::F32, 1.0);
        let inv = e.fb.ins().fdiv(one, sum);
        let invv = e.fb.ins().splat(types::F32X4, inv);
        e.loop_n(chunks, |e, i| {
            let o = e.index(out, i, 16);
            let v = e.load(types::F32X4, o, 0);
            let r = e.fb.ins().fmul(v, invv);
            e.store(r, o, 0);
        });
        if tail_len > 0 {
            e.loop_n(tail_len, |e, j| {
                let jj = e.fb.ins().iadd_imm_s(j, tail0 as i64);
                let o = e.index(out, jj, st);
                let v = e.load(types::F32, o, 0);
                let r = e.fb.ins().fmul(v, inv);
                e.store(r, o, 0);
            });
        }
    }
}

/// Folds elements `from..to` (byte stride `st`) into `acc` with `f`.
fn scalar_tail(
    e: &mut Emitter,
    x: Value,
    st: i64,
    from: usize,
    to: usize,
    acc: Value,
    f: impl Fn(&mut Emitter, Value, Value) -> Value,
) -> Value {
    if from >= to {
        return acc;
    }
    e.loop_acc(to - from, &[acc], |e, j, a| {
        let jj = e.fb.ins().iadd_imm_s(j, from as i64);
        let p = e.index(x, jj, st);
        let v = e.load(types::F32, p, 0);
        vec![f(e, a[0], v)]
    })[0]
}
