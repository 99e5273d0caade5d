//! Index-producing and index-driven ops: ArgMax/ArgMin, TopK, Hardmax, GatherElements,
//! ScatterElements, ScatterND, Trilu and CumSum.
//!
//! Data movement works on raw element bytes (every dtype, exact copies). Comparisons read floats
//! as f64 (exact for every float dtype) and integers as i64; NaN ranks above every number
//! (below, for ArgMin). Scatter reductions and CumSum compute floats in f64 (rounded once per
//! stored element) and integers in wrapping i64, as the other op families do.

use super::*;
use kestrel_ir::{ArgAttrs, ArgKind, ScatterReduction};
use std::cmp::Ordering;

/// Comparable element values of a numeric tensor.
enum Keys {
    F(Vec<f64>),
    I(Vec<i64>),
}

impl Keys {
    fn of(op: &'static str, t: &Tensor) -> Res<Keys> {
        match class_of(t.dtype()) {
            Class::F32 | Class::F64 => Ok(Keys::F(t.to_f64_vec())),
            Class::Int => Ok(Keys::I(t.to_i64_vec())),
            Class::Bool => Err(unsupported_dtype(op, t.dtype())),
        }
    }

    /// Total order with NaN above every number (NaNs equal to each other).
    fn cmp(&self, a: usize, b: usize) -> Ordering {
        match self {
            Keys::I(v) => v[a].cmp(&v[b]),
            Keys::F(v) => {
                let (x, y) = (v[a], v[b]);
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
                }
            }
        }
    }

    fn is_nan(&self, a: usize) -> bool {
        matches!(self, Keys::F(v) if v[a].is_nan())
    }
}

/// `(outer, extent, inner)` of `dims` around `axis`.
fn split_at_axis(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = dims[..axis].iter().product();
    let inner = dims[axis + 1..].iter().product();
    (outer, dims[axis], inner)
}

/// Index along the axis of the selected element of each line (first or last on ties).
fn arg_lines(
    keys: &Keys,
    kind: ArgKind,
    last: bool,
    (outer, n, inner): (usize, usize, usize),
) -> Vec<i64> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * n + j) * inner + i;
            let mut best = 0usize;
            for j in 1..n {
                let ord = match kind {
                    ArgKind::Max => keys.cmp(at(j), at(best)),
                    // NaN is selected by ArgMin too: rank it below every number.
                    ArgKind::Min => match (keys.is_nan(at(j)), keys.is_nan(at(best))) {
                        (true, true) => Ordering::Equal,
                        (true, false) => Ordering::Greater,
                        (false, true) => Ordering::Less,
                        _ => keys.cmp(at(best), at(j)),
                    },
                };
                if ord == Ordering::Greater || (last && ord == Ordering::Equal) {
                    best = j;
                }
            }
            out.push(best as i64);
        }
    }
    out
}

pub(crate) fn arg(attrs: &ArgAttrs, x: &Tensor) -> Res<Tensor> {
    let name = Op::Arg(attrs.clone()).name();
    let dims = x.dims();
    let axis = norm_axis(name, attrs.axis, dims.len())?;
    if dims[axis] == 0 {
        return Err(invalid(name, format!("axis {axis} is empty")));
    }
    let keys = Keys::of(name, x)?;
    let v = arg_lines(
        &keys,
        attrs.kind,
        attrs.select_last_index,
        split_at_axis(dims, axis),
    );
    let mut out_dims = dims.to_vec();
    if attrs.keepdims {
        out_dims[axis] = 1;
    } else {
        out_dims.remove(axis);
    }
    Ok(Tensor::from_vec(out_dims, v))
}

pub(crate) fn hardmax(x: &Tensor, axis: i64) -> Res<Tensor> {
    let name = "hardmax";
    require_float(name, x)?;
    let dims = x.dims();
    let axis = norm_axis(name, axis, dims.len())?;
    let (outer, n, inner) = split_at_axis(dims, axis);
    let mut y = vec![0.0f64; x.numel()];
    if n > 0 {
        let keys = Keys::of(name, x)?;
        let best = arg_lines(&keys, ArgKind::Max, false, (outer, n, inner));
        for o in 0..outer {
            for i in 0..inner {
                let j = best[o * inner + i] as usize;
                y[(o * n + j) * inner + i] = 1.0;
            }
        }
    }
    tensor_from_f64(x.dtype(), dims.to_vec(), &y)
}

pub(crate) fn top_k(x: &Tensor, k: &Tensor, axis: i64, largest: bool) -> Res<Vec<Tensor>> {
    let name = "top_k";
    let dims = x.dims();
    let axis = norm_axis(name, axis, dims.len())?;
    let kv = index_values(name, k, "k")?;
    let [k] = kv[..] else {
        return Err(invalid(
            name,
            format!("k must hold one value, has {}", kv.len()),
        ));
    };
    let (outer, n, inner) = split_at_axis(dims, axis);
    let k = usize::try_from(k)
        .ok()
        .filter(|&k| k <= n)
        .ok_or_else(|| invalid(name, format!("k = {k} is not in [0, {n}]")))?;
    let keys = Keys::of(name, x)?;
    let mut out_dims = dims.to_vec();
    out_dims[axis] = k;
    let total = check_alloc(name, x.dtype(), &out_dims)?;
    let mut src = vec![0usize; total];
    let mut idx = vec![0i64; total];
    let mut line: Vec<usize> = Vec::with_capacity(n);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * n + j) * inner + i;
            line.clear();
            line.extend(0..n);
            // Stable: equal values keep the lower index first.
            line.sort_by(|&a, &b| {
                let ord = keys.cmp(at(a), at(b));
                if largest {
                    ord.reverse()
                } else {
                    // Smallest first, NaN (the greatest) last.
                    ord
                }
            });
            for (r, &j) in line.iter().take(k).enumerate() {
                let dst = (o * k + r) * inner + i;
                src[dst] = at(j);
                idx[dst] = j as i64;
            }
        }
    }
    let values = gather_elements(x, out_dims.clone(), src.into_iter().map(Some), &[])?;
    Ok(vec![values, Tensor::from_vec(out_dims, idx)])
}

/// Resolves a possibly negative index into `[0, extent)`.
fn resolve(op: &'static str, i: i64, extent: usize) -> Res<usize> {
    let j = if i < 0 {
        i as i128 + extent as i128
    } else {
        i as i128
    };
    if j < 0 || j >= extent as i128 {
        return Err(EvalError::IndexOutOfRange {
            op,
            index: i,
            extent,
        });
    }
    Ok(j as usize)
}

/// For every position of `indices` (same rank as `data`), the flat offset in `data` of that
/// position with its `axis` coordinate replaced by the index.
fn element_offsets(
    op: &'static str,
    data_dims: &[usize],
    indices: &Tensor,
    axis: usize,
) -> Res<Vec<usize>> {
    let idims = indices.dims();
    if idims.len() != data_dims.len() {
        return Err(invalid(
            op,
            format!("indices {idims:?} and data {data_dims:?} differ in rank"),
        ));
    }
    for (d, (&i, &e)) in idims.iter().zip(data_dims).enumerate() {
        if d != axis && i > e {
            return Err(invalid(
                op,
                format!("indices {idims:?} exceed data {data_dims:?} on axis {d}"),
            ));
        }
    }
    let idx = index_values(op, indices, "indices")?;
    let strides = strides_of(data_dims);
    let mut pos = vec![0usize; idims.len()];
    let mut out = Vec::with_capacity(idx.len());
    for &i in &idx {
        let j = resolve(op, i, data_dims[axis])?;
        let off: usize = pos
            .iter()
            .enumerate()
            .map(|(d, &p)| if d == axis { j } else { p } * strides[d])
            .sum();
        out.push(off);
        for d in (0..pos.len()).rev() {
            pos[d] += 1;
            if pos[d] < idims[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    Ok(out)
}

pub(crate) fn gather_elements_op(data: &Tensor, indices: &Tensor, axis: i64) -> Res<Tensor> {
    let name = "gather_elements";
    let axis = norm_axis(name, axis, data.dims().len())?;
    let offsets = element_offsets(name, data.dims(), indices, axis)?;
    gather_elements(
        data,
        indices.dims().to_vec(),
        offsets.into_iter().map(Some),
        &[],
    )
}

/// Combines `updates[k]` into `data[targets[k]]` for every `k` in order.
fn scatter(
    op: &'static str,
    data: &Tensor,
    updates: &Tensor,
    targets: &[(usize, usize)],
    reduction: ScatterReduction,
) -> Res<Tensor> {
    require_same_dtype(op, data, updates)?;
    let dtype = data.dtype();
    if reduction == ScatterReduction::None {
        let es = dtype.size();
        let mut out = data.bytes().to_vec();
        let up = updates.bytes();
        for &(dst, src) in targets {
            out[dst * es..(dst + 1) * es].copy_from_slice(&up[src * es..(src + 1) * es]);
        }
        return tensor_from_bytes(dtype, data.dims().to_vec(), out);
    }
    match class_of(dtype) {
        Class::F32 | Class::F64 => {
            let mut v = data.to_f64_vec();
            let u = updates.to_f64_vec();
            for &(dst, src) in targets {
                let (a, b) = (v[dst], u[src]);
                v[dst] = match reduction {
                    ScatterReduction::Add => a + b,
                    ScatterReduction::Mul => a * b,
                    ScatterReduction::Max => a.max(b),
                    ScatterReduction::Min => a.min(b),
                    ScatterReduction::None => b,
                };
            }
            tensor_from_f64(dtype, data.dims().to_vec(), &v)
        }
        Class::Int => {
            let mut v = data.to_i64_vec();
            let u = updates.to_i64_vec();
            for &(dst, src) in targets {
                let (a, b) = (v[dst], u[src]);
                v[dst] = match reduction {
                    ScatterReduction::Add => a.wrapping_add(b),
                    ScatterReduction::Mul => a.wrapping_mul(b),
                    ScatterReduction::Max => a.max(b),
                    ScatterReduction::Min => a.min(b),
                    ScatterReduction::None => b,
                };
            }
            tensor_from_i64(dtype, data.dims().to_vec(), &v)
        }
        Class::Bool => Err(unsupported_dtype(op, dtype)),
    }
}

pub(crate) fn scatter_elements(
    data: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    axis: i64,
    reduction: ScatterReduction,
) -> Res<Tensor> {
    let name = "scatter_elements";
    let axis = norm_axis(name, axis, data.dims().len())?;
    if updates.dims() != indices.dims() {
        return Err(invalid(
            name,
            format!(
                "updates {:?} and indices {:?} differ in shape",
                updates.dims(),
                indices.dims()
            ),
        ));
    }
    let offsets = element_offsets(name, data.dims(), indices, axis)?;
    let targets: Vec<(usize, usize)> = offsets
        .into_iter()
        .enumerate()
        .map(|(k, d)| (d, k))
        .collect();
    scatter(name, data, updates, &targets, reduction)
}

pub(crate) fn scatter_nd(
    data: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    reduction: ScatterReduction,
) -> Res<Tensor> {
    let name = "scatter_nd";
    let (ddims, idims) = (data.dims(), indices.dims());
    let Some((&q, batch)) = idims.split_last() else {
        return Err(invalid(name, "indices must have rank >= 1"));
    };
    if q > ddims.len() {
        return Err(invalid(
            name,
            format!("indices address {q} axes, data has rank {}", ddims.len()),
        ));
    }
    let mut want = batch.to_vec();
    want.extend(&ddims[q..]);
    if updates.dims() != want.as_slice() {
        return Err(invalid(
            name,
            format!("updates have shape {:?}, expected {want:?}", updates.dims()),
        ));
    }
    let idx = index_values(name, indices, "indices")?;
    let strides = strides_of(ddims);
    let slice: usize = ddims[q..].iter().product();
    let count: usize = batch.iter().product();
    let mut targets = Vec::with_capacity(updates.numel());
    for j in 0..count {
        let mut base = 0usize;
        for a in 0..q {
            base += resolve(name, idx[j * q + a], ddims[a])? * strides[a];
        }
        targets.extend((0..slice).map(|s| (base + s, j * slice + s)));
    }
    scatter(name, data, updates, &targets, reduction)
}

pub(crate) fn trilu(x: &Tensor, k: Option<&Tensor>, upper: bool) -> Res<Tensor> {
    let name = "trilu";
    let dims = x.dims();
    let r = dims.len();
    if r < 2 {
        return Err(invalid(
            name,
            format!("input must have rank >= 2, got {dims:?}"),
        ));
    }
    let k = match k {
        Some(t) => match index_values(name, t, "k")?[..] {
            [k] => k as i128,
            _ => return Err(invalid(name, "k must hold one value")),
        },
        None => 0,
    };
    let (rows, cols) = (dims[r - 2], dims[r - 1]);
    let es = x.dtype().size();
    let mut out = x.bytes().to_vec();
    let plane = rows * cols;
    if plane > 0 {
        for (e, chunk) in out.chunks_exact_mut(es).enumerate() {
            let (i, j) = (((e % plane) / cols) as i128, (e % cols) as i128);
            let keep = if upper { j - i >= k } else { j - i <= k };
            if !keep {
                chunk.fill(0);
            }
        }
    }
    tensor_from_bytes(x.dtype(), dims.to_vec(), out)
}

pub(crate) fn cum_sum(x: &Tensor, axis: &Tensor, exclusive: bool, reverse: bool) -> Res<Tensor> {
    let name = "cum_sum";
    let a = match index_values(name, axis, "axis")?[..] {
        [a] => a,
        _ => return Err(invalid(name, "axis must hold one value")),
    };
    let dims = x.dims();
    let axis = norm_axis(name, a, dims.len())?;
    let (outer, n, inner) = split_at_axis(dims, axis);
    let order: Vec<usize> = if reverse {
        (0..n).rev().collect()
    } else {
        (0..n).collect()
    };
    let lines = |f: &mut dyn FnMut(usize, usize)| {
        for o in 0..outer {
            for i in 0..inner {
                f(o, i);
            }
        }
    };
    match class_of(x.dtype()) {
        Class::F32 | Class::F64 => {
            let v = x.to_f64_vec();
            let mut y = vec![0.0; v.len()];
            lines(&mut |o, i| {
                let mut acc = 0.0;
                for &j in &order {
                    let at = (o * n + j) * inner + i;
                    if exclusive {
                        y[at] = acc;
                        acc += v[at];
                    } else {
                        acc += v[at];
                        y[at] = acc;
                    }
                }
            });
            tensor_from_f64(x.dtype(), dims.to_vec(), &y)
        }
        Class::Int => {
            let v = x.to_i64_vec();
            let mut y = vec![0i64; v.len()];
            lines(&mut |o, i| {
                let mut acc = 0i64;
                for &j in &order {
                    let at = (o * n + j) * inner + i;
                    if exclusive {
                        y[at] = acc;
                        acc = acc.wrapping_add(v[at]);
                    } else {
                        acc = acc.wrapping_add(v[at]);
                        y[at] = acc;
                    }
                }
            });
            tensor_from_i64(x.dtype(), dims.to_vec(), &y)
        }
        Class::Bool => Err(unsupported_dtype(name, x.dtype())),
    }
}
