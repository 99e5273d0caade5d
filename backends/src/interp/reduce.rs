//! Reduce* ops.
//!
//! Floats reduce in f64 (rounded once to the dtype). Integers reduce Sum/Prod/Max/Min/L1/
//! SumSquare/Mean in wrapping i64 (Mean truncates toward zero) and L2/LogSum/LogSumExp in f64
//! truncated toward zero. Max propagates NaN (numpy). A reduction over zero elements yields the
//! identity: 0 for Sum/L1/L2/SumSquare, 1 for Prod, -inf (or the dtype's minimum) for Max and
//! LogSum/LogSumExp, +inf (or the dtype's maximum) for Min, NaN for Mean of floats (0 for ints).
//! Bool tensors support Max (any; false when empty) and Min (all; true when empty).

use super::*;
use kestrel_ir::{ReduceAttrs, ReduceKind};

/// The axes to reduce (sorted, unique) or `None` for the identity (`noop_with_empty_axes`).
fn reduce_axes(
    op: &'static str,
    attrs: &ReduceAttrs,
    rank: usize,
    axes: Option<&Tensor>,
) -> Res<Option<Vec<usize>>> {
    let list = match axes {
        Some(t) => index_values(op, t, "axes")?,
        None => Vec::new(),
    };
    if list.is_empty() {
        return Ok(if attrs.noop_with_empty_axes {
            None
        } else {
            Some((0..rank).collect())
        });
    }
    let mut out = Vec::with_capacity(list.len());
    for a in list {
        let a = norm_axis(op, a, rank)?;
        if out.contains(&a) {
            return Err(invalid(op, format!("axis {a} is listed twice")));
        }
        out.push(a);
    }
    out.sort_unstable();
    Ok(Some(out))
}

pub(crate) fn reduce(attrs: &ReduceAttrs, x: &Tensor, axes: Option<&Tensor>) -> Res<Tensor> {
    let name = Op::Reduce(attrs.clone()).name();
    let dims = x.dims();
    let Some(axes) = reduce_axes(name, attrs, dims.len(), axes)? else {
        return Ok(x.clone());
    };
    // Output shape with kept unit axes, and the strides that map input positions to outputs.
    let kept: Vec<usize> = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let out_dims: Vec<usize> = if attrs.keepdims {
        kept.clone()
    } else {
        dims.iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect()
    };
    let n_out = check_alloc(name, x.dtype(), &out_dims)?;
    let kept_strides = strides_of(&kept);
    let map_strides: Vec<usize> = (0..dims.len())
        .map(|i| {
            if axes.contains(&i) {
                0
            } else {
                kept_strides[i]
            }
        })
        .collect();
    let count = dims.iter().product::<usize>() / n_out.max(1);
    let targets = || StridedIter::new(dims, &map_strides);
    let kind = attrs.kind;
    match class_of(x.dtype()) {
        Class::F32 | Class::F64 => {
            let v = x.to_f64_vec();
            let out = reduce_f64(kind, &v, targets, n_out, count);
            tensor_from_f64(x.dtype(), out_dims, &out)
        }
        Class::Int => {
            let v = x.to_i64_vec();
            let (lo, hi) = x.dtype().int_range().unwrap_or((0, 0));
            let (lo, hi) = (lo.max(i64::MIN as i128), hi.min(i64::MAX as i128));
            let out: Vec<i64> = match kind {
                ReduceKind::L2 | ReduceKind::LogSum | ReduceKind::LogSumExp => {
                    let f: Vec<f64> = v.iter().map(|&a| a as f64).collect();
                    reduce_f64(kind, &f, targets, n_out, count)
                        .into_iter()
                        .map(|r| r.clamp(lo as f64, hi as f64) as i64)
                        .collect()
                }
                _ => {
                    let init = match kind {
                        ReduceKind::Prod => 1,
                        ReduceKind::Max => lo as i64,
                        ReduceKind::Min => hi as i64,
                        _ => 0,
                    };
                    let mut acc = vec![init; n_out];
                    for (&a, t) in v.iter().zip(targets()) {
                        let s = &mut acc[t];
                        *s = match kind {
                            ReduceKind::Prod => s.wrapping_mul(a),
                            ReduceKind::Max => (*s).max(a),
                            ReduceKind::Min => (*s).min(a),
                            ReduceKind::L1 => s.wrapping_add(a.wrapping_abs()),
                            ReduceKind::SumSquare => s.wrapping_add(a.wrapping_mul(a)),
                            _ => s.wrapping_add(a),
                        };
                    }
                    if kind == ReduceKind::Mean && count > 0 {
                        acc.iter_mut()
                            .for_each(|s| *s = s.wrapping_div(count as i64));
                    }
                    acc
                }
            };
            tensor_from_i64(x.dtype(), out_dims, &out)
        }
        Class::Bool => {
            // ReduceMax is "any" (identity false), ReduceMin is "all" (identity true).
            let any = match kind {
                ReduceKind::Max => true,
                ReduceKind::Min => false,
                _ => return Err(unsupported_dtype(name, x.dtype())),
            };
            let mut acc = vec![!any; n_out];
            for (b, t) in bool_vec(x).into_iter().zip(targets()) {
                if b == any {
                    acc[t] = any;
                }
            }
            tensor_from_bool(out_dims, &acc)
        }
    }
}

/// Reduces `v` into `n_out` outputs; `targets()` yields the output index of every input element.
fn reduce_f64(
    kind: ReduceKind,
    v: &[f64],
    targets: impl Fn() -> StridedIter,
    n_out: usize,
    count: usize,
) -> Vec<f64> {
    match kind {
        ReduceKind::LogSumExp => {
            let mut max = vec![f64::NEG_INFINITY; n_out];
            for (&a, t) in v.iter().zip(targets()) {
                if a > max[t] || a.is_nan() {
                    max[t] = a;
                }
            }
            let mut sum = vec![0.0; n_out];
            for (&a, t) in v.iter().zip(targets()) {
                if max[t].is_finite() {
                    sum[t] += (a - max[t]).exp();
                }
            }
            max.iter()
                .zip(&sum)
                .map(|(&m, &s)| if m.is_finite() { m + s.ln() } else { m })
                .collect()
        }
        _ => {
            let init = match kind {
                ReduceKind::Prod => 1.0,
                ReduceKind::Max => f64::NEG_INFINITY,
                ReduceKind::Min => f64::INFINITY,
                _ => 0.0,
            };
            let mut acc = vec![init; n_out];
            for (&a, t) in v.iter().zip(targets()) {
                let s = &mut acc[t];
                match kind {
                    ReduceKind::Prod => *s *= a,
                    ReduceKind::Max => {
                        if a > *s || a.is_nan() {
                            *s = a
                        }
                    }
                    ReduceKind::Min => {
                        if a < *s || a.is_nan() {
                            *s = a
                        }
                    }
                    ReduceKind::L1 => *s += a.abs(),
                    ReduceKind::L2 | ReduceKind::SumSquare => *s += a * a,
                    _ => *s += a,
                }
            }
            match kind {
                ReduceKind::Mean => acc.iter_mut().for_each(|s| *s /= count as f64),
                ReduceKind::L2 => acc.iter_mut().for_each(|s| *s = s.sqrt()),
                ReduceKind::LogSum => acc.iter_mut().for_each(|s| *s = s.ln()),
                _ => {}
            }
            acc
        }
    }
}
