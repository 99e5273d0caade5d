//! Dimension algebra shared by inference and the backends: numpy broadcasting and arithmetic on
//! possibly symbolic extents.
//!
//! Rules for combining two dimensions:
//! - arithmetic (`+`, `*`) on known extents is exact and checked (overflow is an error);
//! - an operation that provably returns one operand unchanged (adding 0, multiplying by 1)
//!   returns that operand, symbolic or not;
//! - any other arithmetic involving a symbolic or unknown extent yields [`Dim::Unknown`].

use crate::types::{Dim, Shape};

/// Broadcasts two dimensions (numpy rules).
///
/// `1` vs `x` gives `x`; equal dims give that dim; two different known extents other than 1 are an
/// error; a known extent other than 1 against a symbolic or unknown one gives the known extent (the
/// only value it can broadcast to); anything else is [`Dim::Unknown`].
pub fn broadcast_dim(a: &Dim, b: &Dim) -> Result<Dim, String> {
    match (a, b) {
        (Dim::Known(1), other) | (other, Dim::Known(1)) => Ok(other.clone()),
        (Dim::Known(x), Dim::Known(y)) => {
            if x == y {
                Ok(Dim::Known(*x))
            } else {
                Err(format!("cannot broadcast {x} with {y}"))
            }
        }
        (Dim::Known(x), _) | (_, Dim::Known(x)) => Ok(Dim::Known(*x)),
        (Dim::Sym(x), Dim::Sym(y)) if x == y => Ok(a.clone()),
        _ => Ok(Dim::Unknown),
    }
}

/// Broadcasts two shapes (numpy rules: right-aligned, missing leading dims are 1).
pub fn broadcast_shapes(a: &[Dim], b: &[Dim]) -> Result<Shape, String> {
    let rank = a.len().max(b.len());
    let mut out = Shape::with_capacity(rank);
    for i in 0..rank {
        let da = dim_from_right(a, rank - i);
        let db = dim_from_right(b, rank - i);
        out.push(broadcast_dim(da, db).map_err(|e| {
            format!(
                "shapes {} and {} do not broadcast: {e}",
                fmt_shape(a),
                fmt_shape(b)
            )
        })?);
    }
    Ok(out)
}

/// Checks that `from` broadcasts to exactly `to` (unidirectional broadcasting, as for Gemm's `C` or
/// PRelu's slope): `from` has at most `to`'s rank and each of its dims is 1 or compatible with the
/// matching dim of `to`.
pub fn broadcasts_to(from: &[Dim], to: &[Dim]) -> Result<(), String> {
    let fail = || {
        format!(
            "shape {} does not broadcast to {}",
            fmt_shape(from),
            fmt_shape(to)
        )
    };
    if from.len() > to.len() {
        return Err(fail());
    }
    let offset = to.len() - from.len();
    for (i, d) in from.iter().enumerate() {
        if *d != Dim::Known(1) && !dims_compatible(d, &to[offset + i]) {
            return Err(fail());
        }
    }
    Ok(())
}

/// `from_end`-th dim counted from the end (1 = last), or 1 when the shape is shorter.
fn dim_from_right(s: &[Dim], from_end: usize) -> &Dim {
    const ONE: Dim = Dim::Known(1);
    if from_end <= s.len() {
        &s[s.len() - from_end]
    } else {
        &ONE
    }
}

/// False only when both dims are known and differ (symbolic or unknown dims may be equal at run time).
pub fn dims_compatible(a: &Dim, b: &Dim) -> bool {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => x == y,
        _ => true,
    }
}

/// Merges two dims that must be equal at run time, keeping the most precise: known over symbolic
/// over unknown. Different known extents are an error; different symbols give the first.
pub fn unify_dims(a: &Dim, b: &Dim) -> Result<Dim, String> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) if x != y => Err(format!("{x} vs {y}")),
        (Dim::Known(_), _) => Ok(a.clone()),
        (_, Dim::Known(_)) => Ok(b.clone()),
        (Dim::Sym(_), _) => Ok(a.clone()),
        (_, Dim::Sym(_)) => Ok(b.clone()),
        _ => Ok(Dim::Unknown),
    }
}

/// `a + b`; adding a known 0 returns the other operand.
pub fn dim_add(a: &Dim, b: &Dim) -> Result<Dim, String> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => x
            .checked_add(*y)
            .map(Dim::Known)
            .ok_or_else(|| format!("extent {x} + {y} overflows")),
        (Dim::Known(0), other) | (other, Dim::Known(0)) => Ok(other.clone()),
        _ => Ok(Dim::Unknown),
    }
}

/// Product of dims. Known 1s are neutral, so the product of one symbol and known 1s is that
/// symbol; a known 0 makes the product 0; the empty product is 1.
pub fn dim_product<'a>(dims: impl IntoIterator<Item = &'a Dim>) -> Result<Dim, String> {
    let mut known: usize = 1;
    let mut others: Vec<&Dim> = Vec::new();
    let mut zero = false;
    let mut overflow = false;
    for d in dims {
        match d {
            Dim::Known(0) => zero = true,
            Dim::Known(n) => match known.checked_mul(*n) {
                Some(p) => known = p,
                None => overflow = true,
            },
            other => others.push(other),
        }
    }
    if zero {
        return Ok(Dim::Known(0));
    }
    if overflow {
        return Err("element count overflows".to_string());
    }
    match (others.as_slice(), known) {
        ([], n) => Ok(Dim::Known(n)),
        ([single], 1) => Ok((*single).clone()),
        _ => Ok(Dim::Unknown),
    }
}

/// `[1,3,?,N]`.
pub fn fmt_shape(s: &[Dim]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// Row-major element strides of a dense tensor with these dims.
pub fn contiguous_strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Element strides that read a dense tensor of `in_dims` as if broadcast (numpy rules) to
/// `out_dims`: 0 along broadcast axes. `in_dims` must broadcast to `out_dims`. Shared by the
/// interpreter and the code generator so both walk broadcast operands identically.
pub fn broadcast_strides(in_dims: &[usize], out_dims: &[usize]) -> Vec<usize> {
    let s = contiguous_strides(in_dims);
    let off = out_dims.len() - in_dims.len();
    (0..out_dims.len())
        .map(|i| {
            if i < off || (in_dims[i - off] == 1 && out_dims[i] != 1) {
                0
            } else {
                s[i - off]
            }
        })
        .collect()
}
