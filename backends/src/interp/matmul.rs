//! GEMM kernel, Gemm and MatMul.

use super::*;
use kestrel_ir::GemmAttrs;
use rayon::prelude::*;

/// Element types the GEMM kernel accumulates in. Integers wrap.
pub(crate) trait GemmElem: Copy + Send + Sync + Default + 'static {
    fn mul_add(acc: Self, a: Self, b: Self) -> Self;
    /// `alpha * acc + beta * c` (Gemm's epilogue).
    fn epilogue(acc: Self, alpha: f32, c: Self, beta: f32) -> Self;
}

impl GemmElem for f32 {
    #[inline(always)]
    fn mul_add(acc: f32, a: f32, b: f32) -> f32 {
        acc + a * b
    }
    fn epilogue(acc: f32, alpha: f32, c: f32, beta: f32) -> f32 {
        alpha * acc + beta * c
    }
}

impl GemmElem for f64 {
    #[inline(always)]
    fn mul_add(acc: f64, a: f64, b: f64) -> f64 {
        acc + a * b
    }
    fn epilogue(acc: f64, alpha: f32, c: f64, beta: f32) -> f64 {
        alpha as f64 * acc + beta as f64 * c
    }
}

impl GemmElem for i64 {
    #[inline(always)]
    fn mul_add(acc: i64, a: i64, b: i64) -> i64 {
        acc.wrapping_add(a.wrapping_mul(b))
    }
    /// Integer Gemm with non-unit alpha/beta is evaluated in f64 and truncated toward zero.
    fn epilogue(acc: i64, alpha: f32, c: i64, beta: f32) -> i64 {
        if alpha == 1.0 && beta == 1.0 {
            acc.wrapping_add(c)
        } else if alpha == 1.0 && beta == 0.0 {
            acc
        } else {
            (alpha as f64 * acc as f64 + beta as f64 * c as f64) as i64
        }
    }
}

/// Column block (elements of a C row kept hot) and depth block of the kernel.
const COL_BLOCK: usize = 512;
const DEPTH_BLOCK: usize = 128;

/// `c[rows x n] += a[rows x k] @ b[k x n]`, all row-major and contiguous, serially.
///
/// Loop order i-k-j over blocks of columns and depth, so the innermost loop streams a row of `b`
/// into a row of `c` (which LLVM vectorises) while the `b` block stays in cache.
fn gemm_rows<T: GemmElem>(rows: usize, n: usize, k: usize, a: &[T], b: &[T], c: &mut [T]) {
    for j0 in (0..n).step_by(COL_BLOCK) {
        let j1 = (j0 + COL_BLOCK).min(n);
        for k0 in (0..k).step_by(DEPTH_BLOCK) {
            let k1 = (k0 + DEPTH_BLOCK).min(k);
            for i in 0..rows {
                let c_row = &mut c[i * n + j0..i * n + j1];
                let a_row = &a[i * k..(i + 1) * k];
                for (kk, &av) in a_row.iter().enumerate().take(k1).skip(k0) {
                    let b_row = &b[kk * n + j0..kk * n + j1];
                    for (cv, &bv) in c_row.iter_mut().zip(b_row) {
                        *cv = T::mul_add(*cv, av, bv);
                    }
                }
            }
        }
    }
}

/// `c[m x n] += a[m x k] @ b[k x n]` (row-major, contiguous), parallel over rows of `c`.
/// Slices must have exactly the stated sizes.
pub(crate) fn gemm_acc<T: GemmElem>(m: usize, n: usize, k: usize, a: &[T], b: &[T], c: &mut [T]) {
    debug_assert_eq!(a.len(), m * k);
    debug_assert_eq!(b.len(), k * n);
    debug_assert_eq!(c.len(), m * n);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let work = m.saturating_mul(n).saturating_mul(k);
    let threads = rayon::current_num_threads().max(1);
    if work < (1 << 18) || threads == 1 || m == 1 {
        gemm_rows(m, n, k, a, b, c);
        return;
    }
    let rows_per_task = m.div_ceil(threads * 4).max(1);
    c.par_chunks_mut(rows_per_task * n)
        .zip(a.par_chunks(rows_per_task * k))
        .for_each(|(c_part, a_part)| {
            let rows = c_part.len() / n;
            gemm_rows(rows, n, k, a_part, b, c_part);
        });
}

/// A 2-D row-major transpose.
fn transpose2<T: Copy>(rows: usize, cols: usize, x: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for j in 0..cols {
        for i in 0..rows {
            out.push(x[i * cols + j]);
        }
    }
    out
}

/// Gemm on typed values: `alpha * op(A) @ op(B) + beta * C`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_typed<T: GemmElem>(
    attrs: &GemmAttrs,
    a: Vec<T>,
    a_dims: &[usize],
    b: Vec<T>,
    b_dims: &[usize],
    c: Option<(Vec<T>, &[usize])>,
) -> Res<(Vec<usize>, Vec<T>)> {
    let name = "gemm";
    let (m, ka) = if attrs.trans_a {
        (a_dims[1], a_dims[0])
    } else {
        (a_dims[0], a_dims[1])
    };
    let (kb, n) = if attrs.trans_b {
        (b_dims[1], b_dims[0])
    } else {
        (b_dims[0], b_dims[1])
    };
    if ka != kb {
        return Err(invalid(
            name,
            format!(
                "inner dimensions differ: A {a_dims:?} and B {b_dims:?} (trans_a={}, trans_b={})",
                attrs.trans_a, attrs.trans_b
            ),
        ));
    }
    let out_dims = vec![m, n];
    let a = if attrs.trans_a {
        transpose2(a_dims[0], a_dims[1], &a)
    } else {
        a
    };
    let b = if attrs.trans_b {
        transpose2(b_dims[0], b_dims[1], &b)
    } else {
        b
    };
    let mut y = vec![T::default(); m * n];
    gemm_acc(m, n, ka, &a, &b, &mut y);
    let (alpha, beta) = (attrs.alpha.0, attrs.beta.0);
    match c {
        Some((c, c_dims)) => {
            let bd = broadcast_shapes(name, c_dims, &out_dims)?;
            if bd != out_dims {
                return Err(invalid(
                    name,
                    format!("C of shape {c_dims:?} does not broadcast to [{m}, {n}]"),
                ));
            }
            let it = StridedIter::new(&out_dims, &broadcast_strides(c_dims, &out_dims));
            for (yv, ci) in y.iter_mut().zip(it) {
                *yv = T::epilogue(*yv, alpha, c[ci], beta);
            }
        }
        None => {
            for yv in y.iter_mut() {
                *yv = T::epilogue(*yv, alpha, T::default(), 0.0);
            }
        }
    }
    Ok((out_dims, y))
}

pub(crate) fn gemm(attrs: &GemmAttrs, a: &Tensor, b: &Tensor, c: Option<&Tensor>) -> Res<Tensor> {
    let name = "gemm";
    require_same_dtype(name, a, b)?;
    if let Some(c) = c {
        require_same_dtype(name, a, c)?;
    }
    if a.dims().len() != 2 || b.dims().len() != 2 {
        return Err(invalid(
            name,
            format!("A and B must be 2-D, got {:?} and {:?}", a.dims(), b.dims()),
        ));
    }
    let dtype = a.dtype();
    let m = if attrs.trans_a {
        a.dims()[1]
    } else {
        a.dims()[0]
    };
    let n = if attrs.trans_b {
        b.dims()[0]
    } else {
        b.dims()[1]
    };
    check_alloc(name, dtype, &[m, n])?;
    match class_of(dtype) {
        // Accumulate f32 in f64 and round once (see conv).
        Class::F32 | Class::F64 => {
            let c = c.map(|c| (c.to_f64_vec(), c.dims()));
            let (d, y) = gemm_typed(attrs, a.to_f64_vec(), a.dims(), b.to_f64_vec(), b.dims(), c)?;
            tensor_from_f64(dtype, d, &y)
        }
        Class::Int => {
            let c = c.map(|c| (c.to_i64_vec(), c.dims()));
            let (d, y) = gemm_typed(attrs, a.to_i64_vec(), a.dims(), b.to_i64_vec(), b.dims(), c)?;
            tensor_from_i64(dtype, d, &y)
        }
        Class::Bool => Err(unsupported_dtype(name, dtype)),
    }
}

/// Numpy matmul on typed values.
fn matmul_typed<T: GemmElem>(
    a: &[T],
    a_dims: &[usize],
    b: &[T],
    b_dims: &[usize],
    dtype: DType,
) -> Res<(Vec<usize>, Vec<T>)> {
    let name = "matmul";
    if a_dims.is_empty() || b_dims.is_empty() {
        return Err(invalid(name, "operands must have rank >= 1"));
    }
    // 1-D promotion.
    let a2: Vec<usize> = if a_dims.len() == 1 {
        vec![1, a_dims[0]]
    } else {
        a_dims.to_vec()
    };
    let b2: Vec<usize> = if b_dims.len() == 1 {
        vec![b_dims[0], 1]
    } else {
        b_dims.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (kb, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != kb {
        return Err(invalid(
            name,
            format!("inner dimensions differ: {a_dims:?} @ {b_dims:?}"),
        ));
    }
    let a_batch = &a2[..a2.len() - 2];
    let b_batch = &b2[..b2.len() - 2];
    let batch = broadcast_shapes(name, a_batch, b_batch)?;
    let mut out_dims = batch.clone();
    if a_dims.len() > 1 {
        out_dims.push(m);
    }
    if b_dims.len() > 1 {
        out_dims.push(n);
    }
    let total = check_alloc(name, dtype, &out_dims)?;
    let mut y = vec![T::default(); total];
    if b_batch.is_empty() {
        // All of A's batch folds into the rows of one GEMM.
        let rows = a.len() / k.max(1);
        if k == 0 {
            return Ok((out_dims, y));
        }
        gemm_acc(rows, n, k, a, b, &mut y);
        return Ok((out_dims, y));
    }
    let nb: usize = batch.iter().product();
    let a_strides = broadcast_strides(a_batch, &batch);
    let b_strides = broadcast_strides(b_batch, &batch);
    let ia = StridedIter::new(&batch, &a_strides);
    let ib = StridedIter::new(&batch, &b_strides);
    for ((bi, ai), bj) in (0..nb).zip(ia).zip(ib) {
        let a_mat = &a[ai * m * k..(ai + 1) * m * k];
        let b_mat = &b[bj * k * n..(bj + 1) * k * n];
        gemm_acc(m, n, k, a_mat, b_mat, &mut y[bi * m * n..(bi + 1) * m * n]);
    }
    Ok((out_dims, y))
}

pub(crate) fn matmul(a: &Tensor, b: &Tensor) -> Res<Tensor> {
    let name = "matmul";
    require_same_dtype(name, a, b)?;
    let dtype = a.dtype();
    match class_of(dtype) {
        // Accumulate f32 in f64 and round once (see conv).
        Class::F32 | Class::F64 => {
            let (d, y) = matmul_typed(&a.to_f64_vec(), a.dims(), &b.to_f64_vec(), b.dims(), dtype)?;
            tensor_from_f64(dtype, d, &y)
        }
        Class::Int => {
            let (d, y) = matmul_typed(&a.to_i64_vec(), a.dims(), &b.to_i64_vec(), b.dims(), dtype)?;
            tensor_from_i64(dtype, d, &y)
        }
        Class::Bool => Err(unsupported_dtype(name, dtype)),
    }
}
