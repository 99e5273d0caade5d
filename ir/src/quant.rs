//! The arithmetic of quantized integer ops that every backend must reproduce bit for bit
//! (docs/QUANTIZATION.md): the fixed-point form of a real multiplier, and requantization of an
//! i32 accumulator with it (TFLite's single-rounding convention).

use crate::dtype::DType;

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
}
