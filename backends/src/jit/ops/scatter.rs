//! `ScatterElements` and `ScatterND` ([`scatter_nd`]) with run-time (or constant) indices. For
//! `ScatterElements` the output is a copy of `data`, then, for every position `p` of `indices` in
//! row-major order, the element at `p` with `p[axis] = indices[p]` is combined with `updates[p]`.
//!
//! Reductions: `none` (plain assignment, any dtype, last write wins), and `add`, `mul`, `max`,
//! `min` on f32, i32 and i64. f32 `add` and `mul` accumulate in f32 in the order above (the
//! interpreter accumulates in f64 and rounds once, so positions hit more than once may differ by
//! rounding); f32 `max`/`min` ignore a NaN operand as `f64::max`/`f64::min` do; integers wrap.
//!
//! Indices are i32 or i64, negative ones counting from the end. Every index is checked before
//! anything is written: one outside `[-extent, extent)` makes the entry function return this
//! node's status with the output untouched (the interpreter fails with `IndexOutOfRange`).
//! One task: the updates are applied in order.

use crate::jit::context::KernelContext;
use crate::jit::emit::{collapse, int_type_of_size, strides_of, Emitter};
use crate::jit::error::JitError;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use kestrel_ir::{DType, ScatterReduction};

pub fn scatter_elements(
    e: &mut Emitter,
    k: &mut KernelContext,
    axis: i64,
    reduction: ScatterReduction,
) -> Result<(), JitError> {
    let d = k.in_dims(0);
    let ax = kestrel_ir::norm_axis(axis, d.len()).map_err(|w| k.unsupported(w))?;
    let idims = k.in_dims(1);
    if k.in_dims(2) != idims {
        return Err(k.unsupported(format!(
            "updates {:?} and indices {idims:?} differ in shape",
            k.in_dims(2)
        )));
    }
    if idims.len() != d.len()
        || idims
            .iter()
            .zip(&d)
            .enumerate()
            .any(|(a, (&i, &n))| a != ax && i > n)
    {
        return Err(k.unsupported(format!(
            "indices {idims:?} do not fit data {d:?} off axis {ax}"
        )));
    }
    let dt = k.in_dtype(0);
    if k.in_dtype(2) != dt || k.out_dtype(0) != dt {
        return Err(k.unsupported("updates or output of another dtype than data"));
    }
    let ity = match k.in_dtype(1) {
        DType::I32 => types::I32,
        DType::I64 => types::I64,
        other => return Err(k.unsupported(format!("scatter indices of dtype {other}"))),
    };
    let combine = Combine::of(k, reduction, dt)?;
    let es = dt.size() as i64;
    let isz = k.in_dtype(1).size() as i64;
    let nidx: usize = idims.iter().product();
    let ext = d[ax] as i64;
    let (data, idx, upd, out) = (k.ins[0], k.ins[1], k.ins[2], k.outs[0]);
    // Validate every index first, so a bad index writes nothing.
    e.loop_n(nidx, |e, j| {
        let v = load_index(e, ity, idx, j, isz);
        let lo = e.fb.ins().icmp_imm_s(IntCC::SignedLessThan, v, -ext);
        let hi =
            e.fb.ins()
                .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, v, ext);
        let bad = e.fb.ins().bor(lo, hi);
        k.fail_if(e, bad);
    });
    let numel: usize = d.iter().product();
    e.memcpy(out, data, numel * es as usize);
    if nidx == 0 {
        return Ok(());
    }
    let index_strides = strides_of(&idims);
    let axis_step = strides_of(&d)[ax] * es;
    let out_strides: Vec<i64> = strides_of(&d)
        .iter()
        .enumerate()
        .map(|(a, &s)| if a == ax { 0 } else { s * es })
        .collect();
    let strides = [
        index_strides.iter().map(|s| s * isz).collect::<Vec<_>>(),
        index_strides.iter().map(|s| s * es).collect::<Vec<_>>(),
        out_strides,
    ];
    let (dims, strides) = collapse(&idims, &strides);
    let last = dims.len() - 1;
    let inner = dims[last];
    let (is, us, os) = (strides[0][last], strides[1][last], strides[2][last]);
    e.nest(&dims, &strides, &[idx, upd, out], &mut |e, p| {
        e.loop_n(inner, |e, j| {
            let v = load_index(e, ity, p[0], j, is);
            let neg = e.fb.ins().icmp_imm_s(IntCC::SignedLessThan, v, 0);
            let wrapped = e.fb.ins().iadd_imm_s(v, ext);
            let v = e.fb.ins().select(neg, wrapped, v);
            let dst = e.index(p[2], j, os);
            let dst = e.index(dst, v, axis_step);
            let src = e.index(p[1], j, us);
            combine.emit(e, src, dst);
        });
    });
    Ok(())
}

/// `ScatterND(data, indices [.., q], updates [indices.dims[..-1], data.dims[q..]])`: for every
/// index tuple `j` in row-major order, the slice `data[indices[j]]` is combined element by element
/// with `updates[j]` (the reductions, dtypes and index checks of [`scatter_elements`]).
pub fn scatter_nd(
    e: &mut Emitter,
    k: &mut KernelContext,
    reduction: ScatterReduction,
) -> Result<(), JitError> {
    let d = k.in_dims(0);
    let idims = k.in_dims(1);
    let Some((&q, batch)) = idims.split_last() else {
        return Err(k.unsupported("scatter_nd indices of rank 0"));
    };
    if q > d.len() {
        return Err(k.unsupported(format!(
            "indices {idims:?} address more axes than data {d:?}"
        )));
    }
    let mut want = batch.to_vec();
    want.extend(&d[q..]);
    if k.in_dims(2) != want {
        return Err(k.unsupported(format!("updates {:?}, expected {want:?}", k.in_dims(2))));
    }
    let dt = k.in_dtype(0);
    if k.in_dtype(2) != dt || k.out_dtype(0) != dt {
        return Err(k.unsupported("updates or output of another dtype than data"));
    }
    let ity = match k.in_dtype(1) {
        DType::I32 => types::I32,
        DType::I64 => types::I64,
        other => return Err(k.unsupported(format!("scatter indices of dtype {other}"))),
    };
    let combine = Combine::of(k, reduction, dt)?;
    let es = dt.size() as i64;
    let isz = k.in_dtype(1).size() as i64;
    let count: usize = batch.iter().product();
    let slice: usize = d[q..].iter().product();
    let data_strides = strides_of(&d);
    let (data, idx, upd, out) = (k.ins[0], k.ins[1], k.ins[2], k.outs[0]);
    // Validate every index first, so a bad index writes nothing.
    e.loop_n(count, |e, j| {
        let row = e.index(idx, j, q as i64 * isz);
        for (a, &ext) in d[..q].iter().enumerate() {
            let v = load_index_at(e, ity, row, a as i64 * isz);
            let ext = ext as i64;
            let lo = e.fb.ins().icmp_imm_s(IntCC::SignedLessThan, v, -ext);
            let hi =
                e.fb.ins()
                    .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, v, ext);
            let bad = e.fb.ins().bor(lo, hi);
            k.fail_if(e, bad);
        }
    });
    let numel: usize = d.iter().product();
    e.memcpy(out, data, numel * es as usize);
    if count == 0 || slice == 0 {
        return Ok(());
    }
    e.loop_n(count, |e, j| {
        let row = e.index(idx, j, q as i64 * isz);
        let mut dst = out;
        for (a, &ext) in d[..q].iter().enumerate() {
            let v = load_index_at(e, ity, row, a as i64 * isz);
            let neg = e.fb.ins().icmp_imm_s(IntCC::SignedLessThan, v, 0);
            let wrapped = e.fb.ins().iadd_imm_s(v, ext as i64);
            let v = e.fb.ins().select(neg, wrapped, v);
            dst = e.index(dst, v, data_strides[a] * es);
        }
        let src = e.index(upd, j, slice as i64 * es);
        e.loop_n(slice, |e, s| {
            let sp = e.index(src, s, es);
            let dp = e.index(dst, s, es);
            combine.emit(e, sp, dp);
        });
    });
    Ok(())
}

/// The index at `base + off` bytes, sign-extended to I64.
fn load_index_at(e: &mut Emitter, ity: Type, base: Value, off: i64) -> Value {
    let v = e.load(ity, base, off as i32);
    if ity == types::I32 {
        e.fb.ins().sextend(types::I64, v)
    } else {
        v
    }
}

/// Index `j` (`scale` bytes apart) at `base`, sign-extended to I64.
fn load_index(e: &mut Emitter, ity: Type, base: Value, j: Value, scale: i64) -> Value {
    let a = e.index(base, j, scale);
    let v = e.load(ity, a, 0);
    if ity == types::I32 {
        e.fb.ins().sextend(types::I64, v)
    } else {
        v
    }
}

/// How one update is combined with its target.
enum Combine {
    /// Copy the element's bytes (as an integer of its size).
    Assign(Type),
    /// An f32 reduction other than `None`.
    Float(ScatterReduction),
    /// An integer reduction other than `None` (wrapping).
    Int(Type, ScatterReduction),
}

impl Combine {
    fn of(k: &KernelContext, reduction: ScatterReduction, dt: DType) -> Result<Combine, JitError> {
        Ok(match (reduction, dt) {
            (ScatterReduction::None, _) => Combine::Assign(int_type_of_size(dt.size())),
            (_, DType::F32) => Combine::Float(reduction),
            (_, DType::I32) => Combine::Int(types::I32, reduction),
            (_, DType::I64) => Combine::Int(types::I64, reduction),
            _ => {
                return Err(k.unsupported(format!("scatter reduction {reduction:?} on dtype {dt}")))
            }
        })
    }

    /// `*dst = combine(*dst, *src)`.
    fn emit(&self, e: &mut Emitter, src: Value, dst: Value) {
        let v = match *self {
            Combine::Assign(ty) => e.load(ty, src, 0),
            Combine::Float(r) => {
                let (a, b) = (e.load(types::F32, dst, 0), e.load(types::F32, src, 0));
                match r {
                    ScatterReduction::Add => e.fb.ins().fadd(a, b),
                    ScatterReduction::Mul => e.fb.ins().fmul(a, b),
                    // f64::max / f64::min: the other operand when one is NaN.
                    ScatterReduction::Max | ScatterReduction::Min => {
                        let cc = if r == ScatterReduction::Max {
                            FloatCC::GreaterThan
                        } else {
                            FloatCC::LessThan
                        };
                        let better = e.fcmp(cc, b, a);
                        let a_nan = e.fcmp(FloatCC::Unordered, a, a);
                        let take_b = e.fb.ins().bor(better, a_nan);
                        e.fb.ins().select(take_b, b, a)
                    }
                    ScatterReduction::None => b,
                }
            }
            Combine::Int(ty, r) => {
                let (a, b) = (e.load(ty, dst, 0), e.load(ty, src, 0));
                match r {
                    ScatterReduction::Add => e.fb.ins().iadd(a, b),
                    ScatterReduction::Mul => e.fb.ins().imul(a, b),
                    ScatterReduction::Max | ScatterReduction::Min => {
                        let cc = if r == ScatterReduction::Max {
                            IntCC::SignedGreaterThan
                        } else {
                            IntCC::SignedLessThan
                        };
                        let better = e.icmp(cc, b, a);
                        e.fb.ins().select(better, b, a)
                    }
                    ScatterReduction::None => b,
                }
            }
        };
        e.store(v, dst, 0);
    }
}
