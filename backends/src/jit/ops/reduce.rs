//! Reductions (f32): every `ReduceKind` over constant axes.
//!
//! Kept axes become the outer loop nest, reduced axes the inner one (both after merging
//! contiguous axes). When the reduced elements of one output are contiguous the reduction runs on
//! `F32X4` with a scalar tail. `LogSumExp` subtracts the maximum first (no overflow). Max/Min skip
//! nothing: a NaN input makes the result NaN (`fmax`/`fmin` propagate it).

use crate::jit::context::KernelContext;
use crate::jit::emit::{collapse, strides_of, Emitter};
use crate::jit::error::JitError;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use kestrel_ir::{ReduceAttrs, ReduceKind};

pub fn lower(e: &mut Emitter, k: &mut KernelContext, a: &ReduceAttrs) -> Result<(), JitError> {
    k.require_f32_data()?;
    let d = k.in_dims(0);
    let rank = d.len();
    let axes: Vec<i64> = match k.node.inputs.len() {
        1 => Vec::new(),
        _ => match k.const_in(1) {
            Some(t) => t.to_i64_vec(),
            None => return Err(k.unsupported("reductions over run-time axes")),
        },
    };
    if axes.is_empty() && a.noop_with_empty_axes {
        let bytes = d.iter().product::<usize>() * 4;
        e.memcpy(k.outs[0], k.ins[0], bytes);
        return Ok(());
    }
    let mut reduced = vec![axes.is_empty(); rank];
    for &ax in &axes {
        let i = kestrel_ir::norm_axis(ax, rank).map_err(|w| k.unsupported(w))?;
        reduced[i] = true;
    }
    let ist = strides_of(&d);
    let kept: Vec<usize> = (0..rank).filter(|&i| !reduced[i]).collect();
    let red: Vec<usize> = (0..rank).filter(|&i| reduced[i]).collect();
    let kept_dims: Vec<usize> = kept.iter().map(|&i| d[i]).collect();
    let red_dims: Vec<usize> = red.iter().map(|&i| d[i]).collect();
    let count: usize = red_dims.iter().product();
    let out_st = strides_of(&kept_dims);
    let (od, os) = collapse(
        &kept_dims,
        &[kept.iter().map(|&i| ist[i]).collect(), out_st.clone()],
    );
    let (rd, rs) = collapse(&red_dims, &[red.iter().map(|&i| ist[i]).collect()]);
    let kind = a.kind;
    let mut odims = od.clone();
    odims.push(1);
    let ost: Vec<Vec<i64>> = os
        .iter()
        .map(|v| v.iter().map(|x| x * 4).chain([0]).collect())
        .collect();
    let rbytes: Vec<i64> = rs[0].iter().map(|x| x * 4).collect();
    e.nest(&odims, &ost, &[k.ins[0], k.outs[0]], &mut |e, p| {
        let r = reduce_block(e, p[0], &rd, &rbytes, count, kind);
        e.store(r, p[1], 0);
    });
    Ok(())
}

/// Reduces the block at `src` with extents `dims` and byte strides `st` (`count` elements).
fn reduce_block(
    e: &mut Emitter,
    src: Value,
    dims: &[usize],
    st: &[i64],
    count: usize,
    kind: ReduceKind,
) -> Value {
    if kind == ReduceKind::LogSumExp {
        let mx = fold(e, src, dims, st, ReduceKind::Max, None);
        let ninf = e.fconst(types::F32, f32::NEG_INFINITY);
        let finite = e.fcmp(
            cranelift_codegen::ir::condcodes::FloatCC::NotEqual,
            mx,
            ninf,
        );
        let zero = e.fconst(types::F32, 0.0);
        let shift = e.sel(finite, mx, zero);
        let s = fold(e, src, dims, st, ReduceKind::Sum, Some(shift));
        let l = e.log(s);
        return e.fb.ins().fadd(l, shift);
    }
    let r = fold(e, src, dims, st, kind, None);
    match kind {
        ReduceKind::Mean => {
            let c = e.fconst(types::F32, 1.0 / count.max(1) as f32);
            if count == 0 {
                e.fconst(types::F32, f32::NAN)
            } else {
                e.fb.ins().fmul(r, c)
            }
        }
        ReduceKind::L2 => e.fb.ins().sqrt(r),
        ReduceKind::LogSum => e.log(r),
        _ => r,
    }
}

fn init_of(kind: ReduceKind) -> f32 {
    match kind {
        ReduceKind::Max => f32::NEG_INFINITY,
        ReduceKind::Min => f32::INFINITY,
        ReduceKind::Prod => 1.0,
        _ => 0.0,
    }
}

/// One accumulation step on `F32` or `F32X4` (with `exp(v - shift)` terms when `shift` is set).
fn step(e: &mut Emitter, kind: ReduceKind, acc: Value, v: Value, shift: Option<Value>) -> Value {
    match kind {
        ReduceKind::Max => e.fb.ins().fmax(acc, v),
        ReduceKind::Min => e.fb.ins().fmin(acc, v),
        ReduceKind::Prod => e.fb.ins().fmul(acc, v),
        ReduceKind::L1 => {
            let a = e.fb.ins().fabs(v);
            e.fb.ins().fadd(acc, a)
        }
        ReduceKind::L2 | ReduceKind::SumSquare => e.fma(v, v, acc),
        _ => match shift {
            Some(s) => {
                let ty = e.fb.func.dfg.value_type(v);
                let s = if ty.is_vector() {
                    e.fb.ins().splat(ty, s)
                } else {
                    s
                };
                let d = e.fb.ins().fsub(v, s);
                let x = e.exp(d);
                e.fb.ins().fadd(acc, x)
            }
            None => e.fb.ins().fadd(acc, v),
        },
    }
}

fn combine_lanes(e: &mut Emitter, kind: ReduceKind, v: Value) -> Value {
    let mut s = e.fb.ins().extractlane(v, 0u8);
    for l in 1..4u8 {
        let x = e.fb.ins().extractlane(v, l);
        s = match kind {
            ReduceKind::Max => e.fb.ins().fmax(s, x),
            ReduceKind::Min => e.fb.ins().fmin(s, x),
            ReduceKind::Prod => e.fb.ins().fmul(s, x),
            _ => e.fb.ins().fadd(s, x),
        };
    }
    s
}

/// Folds every element of the block with `step` (vectorised when the innermost axis is
/// contiguous).
fn fold(
    e: &mut Emitter,
    src: Value,
    dims: &[usize],
    st: &[i64],
    kind: ReduceKind,
    shift: Option<Value>,
) -> Value {
    let n = dims.len();
    let inner = dims[n - 1];
    let contiguous = st[n - 1] == 4 && inner >= 8;
    let outer: Vec<usize> = dims[..n - 1].to_vec();
    let init = init_of(kind);
    let ty: Type = if contiguous { types::F32X4 } else { types::F32 };
    let acc0 = e.fconst(ty, init);
    // Outer reduced axes carried as nested accumulating loops.
    let acc = fold_outer(e, src, &outer, st, 0, acc0, &mut |e, p, acc| {
        if contiguous {
            let chunks = inner / 4;
            let a = e.loop_acc(chunks, &[acc], |e, i, acc| {
                let ad = e.index(p, i, 16);
                let v = e.load(types::F32X4, ad, 0);
                vec![step(e, kind, acc[0], v, shift)]
            })[0];
            // Scalar tail folded into lane 0 of a neutral vector.
            let mut t = e.fconst(types::F32, init);
            for j in chunks * 4..inner {
                let v = e.load(types::F32, p, (j * 4) as i32);
                t = step(e, kind, t, v, shift);
            }
            let neutral = e.fconst(types::F32X4, init);
            let tv = e.fb.ins().insertlane(neutral, t, 0u8);
            combine_vec(e, kind, a, tv)
        } else {
            e.loop_acc(inner, &[acc], |e, i, acc| {
                let ad = e.index(p, i, st[n - 1]);
                let v = e.load(types::F32, ad, 0);
                vec![step(e, kind, acc[0], v, shift)]
            })[0]
        }
    });
    if contiguous {
        combine_lanes(e, kind, acc)
    } else {
        acc
    }
}

/// Combines two partial accumulators of the same kind.
fn combine_vec(e: &mut Emitter, kind: ReduceKind, a: Value, b: Value) -> Value {
    match kind {
        ReduceKind::Max => e.fb.ins().fmax(a, b),
        ReduceKind::Min => e.fb.ins().fmin(a, b),
        ReduceKind::Prod => e.fb.ins().fmul(a, b),
        _ => e.fb.ins().fadd(a, b),
    }
}

fn fold_outer(
    e: &mut Emitter,
    p: Value,
    outer: &[usize],
    st: &[i64],
    axis: usize,
    acc: Value,
    inner: &mut dyn FnMut(&mut Emitter, Value, Value) -> Value,
) -> Value {
    if axis == outer.len() {
        return inner(e, p, acc);
    }
    e.loop_acc(outer[axis], &[acc], |e, i, acc| {
        let q = e.index(p, i, st[axis]);
        vec![fold_outer(e, q, outer, st, axis + 1, acc[0], inner)]
    })[0]
}
