//! Helpers shared by the interpreter tests.
#![allow(dead_code)]

use kestrel_backends::interp::{eval_op, EvalError};
use kestrel_ir::testing::check_close;
use kestrel_ir::{Op, Tensor};

pub fn f32t(dims: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(dims.to_vec(), v.to_vec())
}

pub fn i64t(dims: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_vec(dims.to_vec(), v.to_vec())
}

pub fn i64v(v: &[i64]) -> Tensor {
    i64t(&[v.len()], v)
}

/// `0, 1, 2, ..` as f32 of the given shape, plus `offset`.
pub fn iota(dims: &[usize], offset: f32) -> Tensor {
    let n: usize = dims.iter().product();
    f32t(dims, &(0..n).map(|i| i as f32 + offset).collect::<Vec<_>>())
}

/// Evaluates a single-output op, panicking (in the test) on error.
pub fn eval1(op: Op, inputs: &[&Tensor]) -> Tensor {
    let mut out = eval_op(&op, inputs).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    assert_eq!(out.len(), 1);
    out.remove(0)
}

pub fn eval_err(op: Op, inputs: &[&Tensor]) -> EvalError {
    match eval_op(&op, inputs) {
        Ok(out) => panic!("{op:?} unexpectedly succeeded: {out:?}"),
        Err(e) => e,
    }
}

/// Asserts the dims, and values within `tol` (relative to max(1, |expected|)).
pub fn assert_close(t: &Tensor, dims: &[usize], expected: &[f64], tol: f64) {
    assert_eq!(t.dims(), dims, "shape");
    let got = t.to_f64_vec();
    assert_eq!(got.len(), expected.len(), "element count");
    if let Err(m) = check_close(&got, expected, tol) {
        panic!("{m}\n got: {got:?}\nwant: {expected:?}");
    }
}
