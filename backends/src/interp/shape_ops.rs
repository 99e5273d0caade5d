//! Data-movement and shape ops. They work on raw element bytes, so every dtype is supported and
//! values are copied exactly.

use super::*;

/// Builds a tensor whose element at output multi-index `o` is the input element at coordinates
/// `maps[a][o[a]]` (or `fill` when any coordinate is `None`). The output shape is the lengths of
/// the maps; every `Some` coordinate must be within the input's extent along that axis.
pub(crate) fn gather_axis_maps(
    op: &'static str,
    t: &Tensor,
    maps: &[Vec<Option<usize>>],
    fill: &[u8],
) -> Res<Tensor> {
    let out_dims: Vec<usize> = maps.iter().map(Vec::len).collect();
    let n = check_alloc(op, t.dtype(), &out_dims)?;
    let in_strides = strides_of(t.dims());
    let rank = maps.len();
    let mut idx = vec![0usize; rank];
    let src = (0..n).map(move |_| {
        let mut offset = Some(0usize);
        for a in 0..rank {
            offset = match (offset, maps[a][idx[a]]) {
                (Some(o), Some(c)) => Some(o + c * in_strides[a]),
                _ => None,
            };
        }
        for a in (0..rank).rev() {
            idx[a] += 1;
            if idx[a] < maps[a].len() {
                break;
            }
            idx[a] = 0;
        }
        offset
    });
    gather_elements(t, out_dims, src, fill)
}

pub(crate) fn flatten(x: &Tensor, axis: i64) -> Res<Tensor> {
    let r = x.dims().len() as i64;
    if axis < -r || axis > r {
        return Err(invalid(
            "flatten",
            format!("axis {axis} is out of range for rank {r}"),
        ));
    }
    let a = if axis < 0 { axis + r } else { axis } as usize;
    let outer: usize = x.dims()[..a].iter().product();
    let inner: usize = x.dims()[a..].iter().product();
    reshaped(x, vec![outer, inner])
}

fn reshaped(x: &Tensor, dims: Vec<usize>) -> Res<Tensor> {
    let d = dims.clone();
    x.reshaped(dims).ok_or_else(|| {
        invalid(
            "reshape",
            format!(
                "cannot view {:?} ({} elements) as {d:?}",
                x.dims(),
                x.numel()
            ),
        )
    })
}

pub(crate) fn reshape(x: &Tensor, shape: &Tensor, allowzero: bool) -> Res<Tensor> {
    let name = "reshape";
    let spec = index_values(name, shape, "shape")?;
    if shape.dims().len() != 1 {
        return Err(invalid(
            name,
            format!("shape must be 1-D, got {:?}", shape.dims()),
        ));
    }
    let mut dims = Vec::with_capacity(spec.len());
    let mut infer_at = None;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            -1 => {
                if infer_at.is_some() {
                    return Err(invalid(
                        name,
                        format!("shape {spec:?} has more than one -1"),
                    ));
                }
                infer_at = Some(i);
                dims.push(1);
            }
            0 if !allowzero => match x.dims().get(i) {
                Some(&d) => dims.push(d),
                None => {
                    return Err(invalid(
                        name,
                        format!(
                        "shape {spec:?} copies axis {i} (0), but the input {:?} has no such axis",
                        x.dims()
                    ),
                    ))
                }
            },
            s if s < 0 => {
                return Err(invalid(
                    name,
                    format!("shape {spec:?} has negative entry {s}"),
                ))
            }
            s => dims.push(s as usize),
        }
    }
    let known =
        checked_numel(&dims).ok_or_else(|| invalid(name, format!("shape {spec:?} overflows")))?;
    if let Some(i) = infer_at {
        if known == 0 || !x.numel().is_multiple_of(known) {
            return Err(invalid(
                name,
                format!(
                    "cannot infer -1 in {spec:?} for input {:?} ({} elements)",
                    x.dims(),
                    x.numel()
                ),
            ));
        }
        dims[i] = x.numel() / known;
    }
    if checked_numel(&dims) != Some(x.numel()) {
        return Err(invalid(
            name,
            format!(
                "cannot reshape {:?} ({} elements) to {spec:?} (resolved {dims:?})",
                x.dims(),
                x.numel()
            ),
        ));
    }
    reshaped(x, dims)
}

pub(crate) fn transpose(x: &Tensor, perm: &[usize]) -> Res<Tensor> {
    let r = x.dims().len();
    let mut seen = vec![false; r];
    if perm.len() != r
        || perm
            .iter()
            .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
    {
        return Err(invalid(
            "transpose",
            format!("perm {perm:?} is not a permutation of the {r} axes"),
        ));
    }
    let s = strides_of(x.dims());
    let out_dims: Vec<usize> = perm.iter().map(|&p| x.dims()[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let it = StridedIter::new(&out_dims, &strides).map(Some);
    gather_elements(x, out_dims.clone(), it, &[])
}

pub(crate) fn concat(inputs: &[&Tensor], axis: i64) -> Res<Tensor> {
    let name = "concat";
    let first = inputs[0];
    let r = first.dims().len();
    let axis = norm_axis(name, axis, r)?;
    let mut out_dims = first.dims().to_vec();
    out_dims[axis] = 0;
    for t in inputs {
        require_same_dtype(name, first, t)?;
        let same_rest =
            t.dims().len() == r && (0..r).all(|i| i == axis || t.dims()[i] == first.dims()[i]);
        if !same_rest {
            return Err(invalid(
                name,
                format!(
                    "input shapes {:?} and {:?} differ off axis {axis}",
                    first.dims(),
                    t.dims()
                ),
            ));
        }
        out_dims[axis] += t.dims()[axis];
    }
    let n = check_alloc(name, first.dtype(), &out_dims)?;
    let es = first.dtype().size();
    let outer: usize = out_dims[..axis].iter().product();
    let inner: usize = out_dims[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(n * es);
    for o in 0..outer {
        for t in inputs {
            let chunk = t.dims()[axis] * inner * es;
            out.extend_from_slice(&t.bytes()[o * chunk..(o + 1) * chunk]);
        }
    }
    tensor_from_bytes(first.dtype(), out_dims, out)
}

/// `len` consecutive entries along `axis` starting at `start` (in range by the caller's checks).
fn slice_axis(x: &Tensor, axis: usize, start: usize, len: usize) -> Res<Tensor> {
    let maps: Vec<Vec<Option<usize>>> = x
        .dims()
        .iter()
        .enumerate()
        .map(|(a, &d)| {
            if a == axis {
                (start..start + len).map(Some).collect()
            } else {
                (0..d).map(Some).collect()
            }
        })
        .collect();
    gather_axis_maps("split", x, &maps, &[])
}

pub(crate) fn split(
    x: &Tensor,
    sizes: Option<&Tensor>,
    axis: i64,
    num_outputs: usize,
) -> Res<Vec<Tensor>> {
    let name = "split";
    let axis = norm_axis(name, axis, x.dims().len())?;
    let extent = x.dims()[axis];
    let parts: Vec<usize> = match sizes {
        Some(t) => {
            let v = index_values(name, t, "split")?;
            if v.len() != num_outputs || v.iter().any(|&s| s < 0) {
                return Err(invalid(
                    name,
                    format!("split {v:?} must have {num_outputs} non-negative entries"),
                ));
            }
            v.into_iter().map(|s| s as usize).collect()
        }
        None => {
            if num_outputs == 0 {
                return Err(invalid(name, "num_outputs is 0"));
            }
            let chunk = extent.div_ceil(num_outputs);
            (0..num_outputs)
                .map(|i| extent.saturating_sub(i * chunk).min(chunk))
                .collect()
        }
    };
    if parts.iter().try_fold(0usize, |a, &p| a.checked_add(p)) != Some(extent) {
        return Err(invalid(
            name,
            format!("parts {parts:?} do not add up to the extent {extent} of axis {axis}"),
        ));
    }
    let mut start = 0;
    parts
        .iter()
        .map(|&len| {
            let t = slice_axis(x, axis, start, len);
            start += len;
            t
        })
        .collect()
}

/// Slice with ONNX-13 clamping: starts/ends are clamped to `[0, d]` for positive steps and to
/// `[-1, d-1]` for negative steps after adding `d` to negative values.
pub(crate) fn slice(inputs: &[&Tensor]) -> Res<Tensor> {
    let name = "slice";
    let x = inputs[0];
    let r = x.dims().len();
    let starts = index_values(name, inputs[1], "starts")?;
    let ends = index_values(name, inputs[2], "ends")?;
    let axes = match inputs.get(3) {
        Some(t) => index_values(name, t, "axes")?,
        None => (0..starts.len() as i64).collect(),
    };
    let steps = match inputs.get(4) {
        Some(t) => index_values(name, t, "steps")?,
        None => vec![1; starts.len()],
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(invalid(
            name,
            format!(
                "starts, ends, axes and steps have different lengths ({}, {}, {}, {})",
                starts.len(),
                ends.len(),
                axes.len(),
                steps.len()
            ),
        ));
    }
    let mut maps: Vec<Vec<Option<usize>>> = x
        .dims()
        .iter()
        .map(|&d| (0..d).map(Some).collect())
        .collect();
    let mut done = vec![false; r];
    for i in 0..starts.len() {
        let a = norm_axis(name, axes[i], r)?;
        if std::mem::replace(&mut done[a], true) {
            return Err(invalid(name, format!("axis {a} is sliced twice")));
        }
        let d = x.dims()[a] as i64;
        let step = steps[i];
        if step == 0 {
            return Err(invalid(name, "step 0"));
        }
        let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (s, e) = (norm(starts[i]), norm(ends[i]));
        let coords: Vec<Option<usize>> = if step > 0 {
            let (s, e) = (s.clamp(0, d), e.clamp(0, d));
            (0..)
                .map_while(|k: i64| k.checked_mul(step).and_then(|o| s.checked_add(o)))
                .take_while(|&c| c < e)
                .map(|c| Some(c as usize))
                .collect()
        } else {
            let (s, e) = (s.clamp(-1, d - 1), e.clamp(-1, d - 1));
            (0..)
                .map_while(|k: i64| k.checked_mul(step).and_then(|o| s.checked_add(o)))
                .take_while(|&c| c > e)
                .map(|c| Some(c as usize))
                .collect()
        };
        maps[a] = coords;
    }
    gather_axis_maps(name, x, &maps, &[])
}

/// numpy `take` along `axis`; negative indices count from the end, others out of range fail.
pub(crate) fn gather(x: &Tensor, indices: &Tensor, axis: i64) -> Res<Tensor> {
    let name = "gather";
    let idx = index_values(name, indices, "indices")?;
    let axis = norm_axis(name, axis, x.dims().len())?;
    let extent = x.dims()[axis];
    let resolved = idx
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + extent as i64 } else { i };
            if j < 0 || j >= extent as i64 {
                Err(EvalError::IndexOutOfRange {
                    op: name,
                    index: i,
                    extent,
                })
            } else {
                Ok(j as usize)
            }
        })
        .collect::<Res<Vec<usize>>>()?;
    let mut out_dims = x.dims()[..axis].to_vec();
    out_dims.extend(indices.dims());
    out_dims.extend(&x.dims()[axis + 1..]);
    let n = check_alloc(name, x.dtype(), &out_dims)?;
    let es = x.dtype().size();
    let outer: usize = x.dims()[..axis].iter().product();
    let inner: usize = x.dims()[axis + 1..].iter().product();
    let chunk = inner * es;
    let data = x.bytes();
    let mut out = Vec::with_capacity(n * es);
    for o in 0..outer {
        for &j in &resolved {
            let at = (o * extent + j) * chunk;
            out.extend_from_slice(&data[at..at + chunk]);
        }
    }
    tensor_from_bytes(x.dtype(), out_dims, out)
}

pub(crate) fn squeeze(x: &Tensor, axes: Option<&Tensor>) -> Res<Tensor> {
    let name = "squeeze";
    let r = x.dims().len();
    let list = match axes {
        Some(t) => index_values(name, t, "axes")?,
        None => Vec::new(),
    };
    let remove: Vec<usize> = if list.is_empty() {
        (0..r).filter(|&a| x.dims()[a] == 1).collect()
    } else {
        let mut v = Vec::new();
        for a in list {
            let a = norm_axis(name, a, r)?;
            if x.dims()[a] != 1 {
                return Err(invalid(
                    name,
                    format!(
                        "axis {a} of {:?} has extent {}, not 1",
                        x.dims(),
                        x.dims()[a]
                    ),
                ));
            }
            v.push(a);
        }
        v
    };
    let dims: Vec<usize> = (0..r)
        .filter(|a| !remove.contains(a))
        .map(|a| x.dims()[a])
        .collect();
    reshaped(x, dims)
}

pub(crate) fn unsqueeze(x: &Tensor, axes: &Tensor) -> Res<Tensor> {
    let name = "unsqueeze";
    let list = index_values(name, axes, "axes")?;
    let out_rank = x.dims().len() + list.len();
    let mut unit = vec![false; out_rank];
    for a in list {
        let a = norm_axis(name, a, out_rank)?;
        if std::mem::replace(&mut unit[a], true) {
            return Err(invalid(name, format!("axis {a} is listed twice")));
        }
    }
    let mut rest = x.dims().iter();
    let dims: Vec<usize> = unit
        .iter()
        .map(|&u| {
            if u {
                1
            } else {
                rest.next().copied().unwrap_or(1)
            }
        })
        .collect();
    reshaped(x, dims)
}

/// The extents of `x` sliced `[start, end)` with ONNX-15 clamping.
pub(crate) fn shape(x: &Tensor, start: i64, end: Option<i64>) -> Tensor {
    let r = x.dims().len() as i64;
    let clamp = |v: i64| if v < 0 { v.saturating_add(r) } else { v }.clamp(0, r) as usize;
    let s = clamp(start);
    let e = clamp(end.unwrap_or(r));
    let v: Vec<i64> = if s < e {
        x.dims()[s..e].iter().map(|&d| d as i64).collect()
    } else {
        Vec::new()
    };
    Tensor::from_vec(vec![v.len()], v)
}

/// Non-negative extents from a 1-D shape tensor.
fn extents(op: &'static str, t: &Tensor, what: &str) -> Res<Vec<usize>> {
    let v = index_values(op, t, what)?;
    if t.dims().len() > 1 {
        return Err(invalid(
            op,
            format!("{what} must be 1-D, got {:?}", t.dims()),
        ));
    }
    v.iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| invalid(op, format!("{what} {v:?} has a negative entry")))
        })
        .collect()
}

pub(crate) fn expand(x: &Tensor, shape: &Tensor) -> Res<Tensor> {
    let name = "expand";
    let target = extents(name, shape, "shape")?;
    let out_dims = broadcast_shapes(name, x.dims(), &target)?;
    check_alloc(name, x.dtype(), &out_dims)?;
    let it = StridedIter::new(&out_dims, &broadcast_strides(x.dims(), &out_dims)).map(Some);
    gather_elements(x, out_dims.clone(), it, &[])
}

pub(crate) fn tile(x: &Tensor, repeats: &Tensor) -> Res<Tensor> {
    let name = "tile";
    let reps = extents(name, repeats, "repeats")?;
    if reps.len() != x.dims().len() {
        return Err(invalid(
            name,
            format!(
                "repeats {reps:?} must have one entry per axis of {:?}",
                x.dims()
            ),
        ));
    }
    let out_dims: Vec<usize> = x
        .dims()
        .iter()
        .zip(&reps)
        .map(|(&d, &r)| d.saturating_mul(r))
        .collect();
    check_alloc(name, x.dtype(), &out_dims)?;
    check_extents(name, x.dtype(), &out_dims)?;
    let maps: Vec<Vec<Option<usize>>> = x
        .dims()
        .iter()
        .zip(&out_dims)
        .map(|(&d, &o)| (0..o).map(|i| Some(i % d)).collect())
        .collect();
    gather_axis_maps(name, x, &maps, &[])
}

/// Range: `n = max(0, ceil((limit - start) / delta))` values `start + i * delta` (floats computed
/// in f64 per element, not accumulated; integers in wrapping i64).
pub(crate) fn range(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Res<Tensor> {
    let name = "range";
    require_same_dtype(name, start, limit)?;
    require_same_dtype(name, start, delta)?;
    for t in [start, limit, delta] {
        if t.numel() != 1 {
            return Err(invalid(
                name,
                format!("inputs must be scalars, got shape {:?}", t.dims()),
            ));
        }
    }
    let dtype = start.dtype();
    match class_of(dtype) {
        Class::F32 | Class::F64 => {
            let (s, l, d) = (start.get_f64(0), limit.get_f64(0), delta.get_f64(0));
            let n = ((l - s) / d).ceil();
            if d == 0.0 || !n.is_finite() {
                return Err(invalid(
                    name,
                    format!("cannot count from {s} to {l} by {d}"),
                ));
            }
            let n = n.max(0.0);
            if n > (tensor_byte_limit() / dtype.size() as u128) as f64 {
                return Err(EvalError::TooLarge {
                    op: name,
                    dtype,
                    dims: vec![usize::MAX],
                    bytes: (n * dtype.size() as f64) as u128,
                });
            }
            let n = n as usize;
            let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
            tensor_from_f64(dtype, vec![n], &v)
        }
        Class::Int => {
            let (s, l, d) = (start.get_i64(0), limit.get_i64(0), delta.get_i64(0));
            if d == 0 {
                return Err(EvalError::DivisionByZero { op: name });
            }
            let span = l as i128 - s as i128;
            let n = if (span > 0) == (d > 0) && span != 0 {
                let (span, d) = (span.abs(), (d as i128).abs());
                (span + d - 1) / d
            } else {
                0
            };
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            check_alloc(name, dtype, &[n])?;
            let v: Vec<i64> = (0..n)
                .map(|i| s.wrapping_add((i as i64).wrapping_mul(d)))
                .collect();
            tensor_from_i64(dtype, vec![n], &v)
        }
        Class::Bool => Err(unsupported_dtype(name, dtype)),
    }
}

pub(crate) fn constant_of_shape(shape: &Tensor, value: &Tensor) -> Res<Tensor> {
    let name = "constant_of_shape";
    if value.numel() != 1 {
        return Err(invalid(
            name,
            format!("value must have one element, got shape {:?}", value.dims()),
        ));
    }
    let dims = extents(name, shape, "shape")?;
    let n = check_alloc(name, value.dtype(), &dims)?;
    let one = value.bytes();
    let mut out = Vec::with_capacity(n * one.len());
    for _ in 0..n {
        out.extend_from_slice(one);
    }
    tensor_from_bytes(value.dtype(), dims, out)
}
