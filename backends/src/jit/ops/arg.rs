//! ArgMax / ArgMin ([`ArgAttrs`]) on f32 and every integer dtype but u64, any axis, `keepdims` either
//! way (the output layout is the same), ties to the first index or to the last with
//! `select_last_index`.
//!
//! Exactly the interpreter's order: NaN is selected by both kinds (above every number for ArgMax,
//! below every number for ArgMin), NaNs tie with each other, `-0.0` ties with `0.0`. Each output
//! element scans its line once, carrying the best value and its index; an element replaces the
//! best one when
//! - first index: it is strictly better (`v > best` for ArgMax, `v < best` for ArgMin, or `v`
//!   NaN) and the best is not NaN: `(v ugt best) & !isnan(best)` (`ult` for ArgMin);
//! - last index: it is at least as good: `isnan(v) | (v >= best)` (`<=` for ArgMin).
//!
//! Integers compare signed or unsigned as their dtype says. Output: i64 indices. One task.

use crate::jit::context::KernelContext;
use crate::jit::emit::{int_type_of_size, Emitter};
use crate::jit::error::JitError;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use kestrel_ir::{ArgAttrs, ArgKind, DType};

pub fn lower(e: &mut Emitter, k: &mut KernelContext, a: &ArgAttrs) -> Result<(), JitError> {
    let dt = k.in_dtype(0);
    let ty: Type = match dt {
        DType::F32 => types::F32,
        // The interpreter reads u64 keys as i64 (values from 2^63 on rank below 0); refused
        // rather than ranked differently.
        DType::U64 => return Err(k.unsupported(format!("{} on u64", k.node.op.name()))),
        d if d.is_int() => int_type_of_size(d.size()),
        other => return Err(k.unsupported(format!("{} on {other}", k.node.op.name()))),
    };
    if k.out_dtype(0) != DType::I64 {
        return Err(k.unsupported("arg output other than i64"));
    }
    let d = k.in_dims(0);
    let axis = kestrel_ir::norm_axis(a.axis, d.len()).map_err(|w| k.unsupported(w))?;
    let outer: usize = d[..axis].iter().product();
    let n = d[axis];
    let inner: usize = d[axis + 1..].iter().product();
    if n == 0 {
        return Err(k.unsupported(format!("axis {axis} is empty")));
    }
    if outer * inner == 0 {
        return Ok(());
    }
    let es = dt.size() as i64;
    let inner_i = inner as i64;
    let in_strides = vec![(n as i64) * inner_i * es, es, 0];
    let out_strides = vec![inner_i * 8, 8, 0];
    let better = Better {
        kind: a.kind,
        last: a.select_last_index,
        float: dt == DType::F32,
        signed: dt.is_signed_int(),
    };
    let line_stride = inner_i * es;
    e.nest(
        &[outer, inner, 1],
        &[in_strides, out_strides],
        &[k.ins[0], k.outs[0]],
        &mut |e, p| {
            let first = e.load(ty, p[0], 0);
            let zero = e.iconst(0);
            let best = e.loop_acc(n, &[first, zero], |e, j, acc| {
                let ad = e.index(p[0], j, line_stride);
                let v = e.load(ty, ad, 0);
                let take = better.emit(e, v, acc[0]);
                let val = e.sel(take, v, acc[0]);
                let idx = e.sel(take, j, acc[1]);
                vec![val, idx]
            });
            e.store(best[1], p[1], 0);
        },
    );
    Ok(())
}

/// When an element `v` replaces the best one so far (see the module docs).
#[derive(Clone, Copy)]
struct Better {
    kind: ArgKind,
    last: bool,
    float: bool,
    signed: bool,
}

impl Better {
    /// An I8 truth value: `v` replaces `best`.
    fn emit(self, e: &mut Emitter, v: Value, best: Value) -> Value {
        let max = self.kind == ArgKind::Max;
        if self.float {
            if self.last {
                let cc = if max {
                    FloatCC::GreaterThanOrEqual
                } else {
                    FloatCC::LessThanOrEqual
                };
                let good = e.fcmp(cc, v, best);
                let v_nan = e.fcmp(FloatCC::Unordered, v, v);
                e.fb.ins().bor(good, v_nan)
            } else {
                let cc = if max {
                    FloatCC::UnorderedOrGreaterThan
                } else {
                    FloatCC::UnorderedOrLessThan
                };
                let good = e.fcmp(cc, v, best);
                let best_nan = e.fcmp(FloatCC::Unordered, best, best);
                e.fb.ins().band_not(good, best_nan)
            }
        } else {
            let cc = match (max, self.last, self.signed) {
                (true, false, true) => IntCC::SignedGreaterThan,
                (true, true, true) => IntCC::SignedGreaterThanOrEqual,
                (false, false, true) => IntCC::SignedLessThan,
                (false, true, true) => IntCC::SignedLessThanOrEqual,
                (true, false, false) => IntCC::UnsignedGreaterThan,
                (true, true, false) => IntCC::UnsignedGreaterThanOrEqual,
                (false, false, false) => IntCC::UnsignedLessThan,
                (false, true, false) => IntCC::UnsignedLessThanOrEqual,
            };
            e.icmp(cc, v, best)
        }
    }
}
