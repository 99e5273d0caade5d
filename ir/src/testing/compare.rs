//! Comparisons of computed outputs with references, and of printed text with its expectation.
//!
//! Every function is generic over [`Float`] (f32 and f64) and computes in the type it is given,
//! so a test that compared in f32 keeps comparing in f32.

use crate::Tensor;
use std::fmt;
use std::ops::{Mul, Sub};

/// f32 or f64: the element types the comparisons compute in.
pub trait Float:
    Copy
    + PartialOrd
    + fmt::Debug
    + fmt::Display
    + Sub<Output = Self>
    + Mul<Output = Self>
    + private::Sealed
{
    const ZERO: Self;
    const ONE: Self;
    /// `1.0001`: the slack of [`step_bound`] over a whole number of quantization steps.
    const STEP_MARGIN: Self;
    fn abs(self) -> Self;
    fn is_nan(self) -> bool;
    /// The larger of the two; a NaN operand is ignored (`f32::max`).
    fn max(self, other: Self) -> Self;
}

macro_rules! float {
    ($t:ty) => {
        impl Float for $t {
            const ZERO: $t = 0.0;
            const ONE: $t = 1.0;
            const STEP_MARGIN: $t = 1.0001;
            fn abs(self) -> $t {
                <$t>::abs(self)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn max(self, other: $t) -> $t {
                <$t>::max(self, other)
            }
        }
        impl private::Sealed for $t {}
    };
}
float!(f32);
float!(f64);

mod private {
    pub trait Sealed {}
}

/// The first element at which two sequences disagree beyond a tolerance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mismatch<T> {
    pub index: usize,
    pub got: T,
    pub want: T,
}

impl<T: fmt::Display> fmt::Display for Mismatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "element {}: got {}, want {}",
            self.index, self.got, self.want
        )
    }
}

fn same_len<T>(got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "compared sequences differ in length");
}

/// `Ok` when every `|got[i] - want[i]| <= tol * max(1, |want[i]|)` or both are NaN: a tolerance
/// absolute below 1 and relative above. Otherwise the first element that is not.
///
/// # Panics
/// When the lengths differ.
pub fn check_close<T: Float>(got: &[T], want: &[T], tol: T) -> Result<(), Mismatch<T>> {
    same_len(got, want);
    for (index, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= tol * w.abs().max(T::ONE) || (g.is_nan() && w.is_nan());
        if !ok {
            return Err(Mismatch {
                index,
                got: g,
                want: w,
            });
        }
    }
    Ok(())
}

/// `steps * step * 1.0001`: the largest difference that is still within `steps` output
/// quantization steps of size `step` (the margin absorbs the rounding of the step itself).
pub fn step_bound<T: Float>(step: T, steps: T) -> T {
    steps * step * T::STEP_MARGIN
}

/// `Ok` when every `|got[i] - want[i]| <= step_bound(step, steps)`; otherwise the first element
/// that is not (a NaN on either side is not within any bound).
///
/// # Panics
/// When the lengths differ.
pub fn check_within_steps<T: Float>(
    got: &[T],
    want: &[T],
    step: T,
    steps: T,
) -> Result<(), Mismatch<T>> {
    same_len(got, want);
    let bound = step_bound(step, steps);
    for (index, (&g, &w)) in got.iter().zip(want).enumerate() {
        let within = (g - w).abs() <= bound;
        if !within {
            return Err(Mismatch {
                index,
                got: g,
                want: w,
            });
        }
    }
    Ok(())
}

/// The largest `|got[i] - want[i]|` (0 for empty sequences); NaN when any difference is NaN, so
/// that `max_abs_diff(..) <= tol` fails on a NaN.
///
/// # Panics
/// When the lengths differ.
pub fn max_abs_diff<T: Float>(got: &[T], want: &[T]) -> T {
    same_len(got, want);
    let mut max = T::ZERO;
    for (&g, &w) in got.iter().zip(want) {
        let d = (g - w).abs();
        if d.is_nan() {
            return d;
        }
        max = max.max(d);
    }
    max
}

/// [`max_abs_diff`] of two tensors of one shape, read as f32 ([`Tensor::to_f32_vec`]).
///
/// # Panics
/// When the shapes differ.
pub fn tensor_max_abs_diff(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "shapes differ");
    max_abs_diff(&got.to_f32_vec(), &want.to_f32_vec())
}

/// The largest `|v[i]|`, NaNs ignored; 0 for an empty sequence.
pub fn max_abs<T: Float>(v: &[T]) -> T {
    v.iter().fold(T::ZERO, |m, &x| m.max(x.abs()))
}

/// `max(1, max |v[i]|)` (NaNs ignored): the scale a whole output's relative tolerance is taken
/// against.
pub fn magnitude<T: Float>(v: &[T]) -> T {
    v.iter().fold(T::ONE, |m, &x| m.max(x.abs()))
}

/// A unified diff (`--- expected`, `+++ actual`, three lines of context) of two texts, line by
/// line; empty when they are equal.
pub fn unified_diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .context_radius(3)
        .header("expected", "actual")
        .to_string()
}
