//! The arithmetic of quantized integer ops that every backend must reproduce bit for bit
//! (docs/QUANTIZATION.md): the fixed-point form of a real multiplier, and requantization of an
//! i32 accumulator with it (TFLite's single-rounding convention), or with an f32 multiply as
//! onnxruntime does ([`crate::RequantMode`]).

use crate::dtype::DType;
use crate::op::RequantMode;

/// A real multiplier `M > 0` as `m · 2^(shift - 31)` with `m` in `[2^30, 2^31)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedMultiplier {
    pub multiplier: i32,
    pub shift: i32,
}

/// Smallest and largest `shift` [`quantize_multiplier`] accepts: the rounding constant
/// `1 << (30 - shift)` and the shift `31 - shift` must stay within an i64 product.
pub const MIN_SHIFT: i32 = -30;
pub const MAX_SHIFT: i32 = 30;

/// The fixed-point form of `m` (an f32 attribute, converted exactly to f64): `(q, e) = frexp(m)`,
/// `multiplier = round(q · 2^31)` (`2^31` becomes `2^30` with `e + 1`), `shift = e`. `None` when
/// `m` is not a positive finite number or its exponent is outside `[MIN_SHIFT, MAX_SHIFT]` (a
/// multiplier below 2^-31 or of 2^30 and above), which the quantization passes never produce.
pub fn quantize_multiplier(m: f32) -> Option<FixedMultiplier> {
    let m = m as f64;
    if !(m.is_finite() && m > 0.0) {
        return None;
    }
    // frexp: m = q · 2^e with q in [0.5, 1).
    let mut e = m.log2().floor() as i32 + 1;
    let mut q = m / 2f64.powi(e);
    // log2 rounding can be off by one at powers of two.
    if q >= 1.0 {
        q /= 2.0;
        e += 1;
    } else if q < 0.5 {
        q *= 2.0;
        e -= 1;
    }
    let mut fixed = (q * (1u64 << 31) as f64).round() as i64;
    if fixed == 1i64 << 31 {
        fixed = 1 << 30;
        e += 1;
    }
    if !(MIN_SHIFT..=MAX_SHIFT).contains(&e) {
        return None;
    }
    Some(FixedMultiplier {
        multiplier: fixed as i32,
        shift: e,
    })
}

/// `round(acc · M)` for `M = multiplier · 2^(shift - 31)`: `(acc · multiplier + 2^(30 - shift)) >>
/// (31 - shift)` in i64 (arithmetic shift, so halves round toward +∞), saturated to i32.
pub fn requantize(acc: i32, f: FixedMultiplier) -> i32 {
    let total = 31 - f.shift;
    let product = acc as i64 * f.multiplier as i64;
    let rounded = (product + (1i64 << (total - 1))) >> total;
    rounded.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// The full output step of a requantizing integer op: `clamp(zero_point + requantize(acc, f),
/// min, max)`, with the addition saturating.
pub fn requantize_output(acc: i32, f: FixedMultiplier, zero_point: i32, min: i32, max: i32) -> i32 {
    requantize(acc, f)
        .saturating_add(zero_point)
        .clamp(min, max)
}

/// onnxruntime's requantization (MLAS `MlasRequantizeOutput`): `acc` converted to f32 (to
/// nearest, ties to even, beyond 2^24), one f32 multiply by `multiplier`, the product rounded
/// half to even, saturated to i32.
pub fn requantize_float(acc: i32, multiplier: f32) -> i32 {
    // `as` saturates; a NaN (impossible for the finite positive multipliers of a `Requant`)
    // becomes 0.
    (acc as f32 * multiplier).round_ties_even() as i32
}

/// The output step of [`requantize_float`]: `clamp(zero_point + requantize_float(acc,
/// multiplier), min, max)`, the addition saturating. MLAS clamps the product to the type's range
/// before rounding; with integer bounds that gives the same integers.
pub fn requantize_output_float(
    acc: i32,
    multiplier: f32,
    zero_point: i32,
    min: i32,
    max: i32,
) -> i32 {
    requantize_float(acc, multiplier)
        .saturating_add(zero_point)
        .clamp(min, max)
}

/// One requantized output of [`crate::Requant`]'s arithmetic: `mode` picks
/// [`requantize_output`] with the fixed-point form of `multiplier` or
/// [`requantize_output_float`]. `None` when a fixed-point mode's multiplier has no fixed-point
/// form. (Per-element conversion; kernels convert the multiplier once.)
pub fn requantize_output_with(
    mode: RequantMode,
    acc: i32,
    multiplier: f32,
    zero_point: i32,
    min: i32,
    max: i32,
) -> Option<i32> {
    Some(match mode {
        RequantMode::FixedPoint => {
            requantize_output(acc, quantize_multiplier(multiplier)?, zero_point, min, max)
        }
        RequantMode::Float => requantize_output_float(acc, multiplier, zero_point, min, max),
    })
}

/// The value range of an 8-bit quantized dtype (`None` for other dtypes).
pub fn range_of(dt: DType) -> Option<(i32, i32)> {
    match dt {
        DType::U8 => Some((0, 255)),
        DType::I8 => Some((-128, 127)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact value of the fixed-point form.
    fn value(f: FixedMultiplier) -> f64 {
        f.multiplier as f64 * 2f64.powi(f.shift - 31)
    }

    #[test]
    fn multipliers_are_exact_to_31_bits() {
        for &m in &[
            1.0f32,
            0.5,
            0.75,
            1e-3,
            3.0517578e-5,
            0.9999999,
            1.5,
            255.0,
            1e-9,
            0.123456,
        ] {
            let f = quantize_multiplier(m).unwrap();
            assert!((1 << 30..=i32::MAX).contains(&f.multiplier), "{m}: {f:?}");
            let rel = (value(f) - m as f64).abs() / m as f64;
            assert!(rel <= 2f64.powi(-31), "{m}: {f:?} relative error {rel}");
        }
        assert_eq!(
            quantize_multiplier(0.5),
            Some(FixedMultiplier {
                multiplier: 1 << 30,
                shift: 0
            })
        );
        for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY, 1e-12, 2e9] {
            assert_eq!(quantize_multiplier(bad), None, "{bad}");
        }
    }

    #[test]
    fn requantize_rounds_half_up_and_saturates() {
        let half = quantize_multiplier(0.5).unwrap();
        assert_eq!(requantize(3, half), 2); // 1.5 -> 2
        assert_eq!(requantize(-3, half), -1); // -1.5 -> -1 (toward +inf)
        assert_eq!(requantize(4, half), 2);
        let quarter = quantize_multiplier(0.25).unwrap();
        assert_eq!(requantize(10, quarter), 3); // 2.5 -> 3
        assert_eq!(requantize(-10, quarter), -2); // -2.5 -> -2
        let big = quantize_multiplier(1000.0).unwrap();
        assert_eq!(requantize(i32::MAX, big), i32::MAX);
        assert_eq!(requantize(i32::MIN, big), i32::MIN);
        assert_eq!(requantize_output(1000, half, 10, 0, 255), 255);
        assert_eq!(requantize_output(-1000, half, 10, 0, 255), 0);
        assert_eq!(requantize_output(7, half, 10, 0, 255), 14);
        // Against the real product on many accumulators and multipliers.
        for &m in &[0.0031f32, 0.47, 0.9, 1.7, 1e-5] {
            let f = quantize_multiplier(m).unwrap();
            for acc in (-100_000..100_000).step_by(997) {
                let want = (acc as f64 * value(f) + 0.5).floor();
                assert_eq!(requantize(acc, f) as f64, want, "{m} {acc}");
            }
        }
    }

    #[test]
    fn float_requantization_is_one_f32_multiply_rounded_half_even() {
        // 0.5 and 2.5 are exact halves: ties go to even (fixed point: toward +inf).
        assert_eq!(requantize_float(1, 0.5), 0);
        assert_eq!(requantize_float(3, 0.5), 2);
        assert_eq!(requantize_float(5, 0.5), 2);
        assert_eq!(requantize_float(-3, 0.5), -2);
        assert_eq!(requantize_float(-5, 0.5), -2);
        assert_eq!(requantize(5, quantize_multiplier(0.5).unwrap()), 3);
        // The f32 product rounds before the integer rounding: 278513 · M is 2427.49992 in exact
        // arithmetic (fixed point: 2427) but exactly 2427.5 in f32 (ties to even: 2428).
        let m = f32::from_bits(1007603011); // 0.0087159304
        assert_eq!(requantize_float(278513, m), 2428);
        assert_eq!(requantize(278513, quantize_multiplier(m).unwrap()), 2427);
        // Beyond 2^24 the accumulator itself rounds: f32(25165825) = 25165824.
        assert_eq!(requantize_float(25165825, 0.5), 12582912);
        assert_eq!(
            requantize(25165825, quantize_multiplier(0.5).unwrap()),
            12582913
        );
        // Saturation and bounds.
        assert_eq!(requantize_float(i32::MAX, 1000.0), i32::MAX);
        assert_eq!(requantize_float(i32::MIN, 1000.0), i32::MIN);
        assert_eq!(requantize_output_float(1000, 0.5, 10, 0, 255), 255);
        assert_eq!(requantize_output_float(-1000, 0.5, 10, 0, 255), 0);
        assert_eq!(requantize_output_float(7, 0.5, 10, 0, 255), 14);
        assert_eq!(
            requantize_output_with(RequantMode::Float, 5, 0.5, 0, 0, 255),
            Some(2)
        );
        assert_eq!(
            requantize_output_with(RequantMode::FixedPoint, 5, 0.5, 0, 0, 255),
            Some(3)
        );
        assert_eq!(
            requantize_output_with(RequantMode::FixedPoint, 5, 1e-12, 0, 0, 255),
            None
        );
        // Against f64 arithmetic where the f32 product is exact (small accumulators, multipliers
        // with few mantissa bits).
        for &m in &[0.375f32, 0.0625, 1.25] {
            for acc in -5000..5000 {
                let want = (acc as f64 * m as f64).round_ties_even();
                assert_eq!(requantize_float(acc, m) as f64, want, "{m} {acc}");
            }
        }
    }
}
