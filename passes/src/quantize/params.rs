//! The arithmetic of the int8 scheme (`docs/QUANTIZATION.md`): activation scale and zero point
//! from a range, symmetric per-channel s8 weights, i32 biases at `s_x · s_w`.
//!
//! Rounding is half to even everywhere (ONNX QuantizeLinear's and numpy's); divisions that
//! quantize a value are done in f32 like QuantizeLinear, scales are computed in f64 and
//! rounded once to f32.

/// Largest magnitude of a symmetric s8 weight: `[-127, 127]`, never -128.
pub const WEIGHT_MAX: i32 = 127;

/// A scale below this (zero or subnormal) is replaced by 1.0, as onnxruntime does.
const TINY_SCALE: f32 = f32::MIN_POSITIVE;

/// The u8 parameters of one activation tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActivationParams {
    pub scale: f32,
    pub zero_point: u8,
}

/// Asymmetric u8 parameters for values in `[min, max]` (finite): the range is first widened to
/// contain 0, so 0.0 is exact; `scale = (max - min) / 255`, 1.0 when the range is a point (or the
/// scale would be subnormal); `zero_point = round(-min / scale)` clamped to `[0, 255]`.
pub fn activation_params(min: f32, max: f32) -> ActivationParams {
    let (lo, hi) = (min.min(0.0) as f64, max.max(0.0) as f64);
    let scale = ((hi - lo) / 255.0) as f32;
    if scale.is_nan() || scale < TINY_SCALE {
        return ActivationParams {
            scale: 1.0,
            zero_point: 0,
        };
    }
    let zp = (-lo / scale as f64).round_ties_even().clamp(0.0, 255.0);
    ActivationParams {
        scale,
        zero_point: zp as u8,
    }
}

/// A weight quantized to s8: the values (same layout as the float weight) and one scale per
/// channel (one in all when per tensor).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedWeight {
    pub data: Vec<i8>,
    pub scales: Vec<f32>,
}

/// Symmetric s8 quantization of a row-major weight of shape `dims`: per slice along `axis`, or
/// per tensor when `axis` is `None`. `scale = max|w| / 127` (1.0 for an all-zero slice),
/// `q = clamp(round(w / scale), -127, 127)`.
pub fn quantize_weight(w: &[f32], dims: &[usize], axis: Option<usize>) -> QuantizedWeight {
    quantize_weight_bits(w, dims, axis, 8)
}

/// [`quantize_weight`] on a grid of `bits` bits (2..=8, clamped to that range): the bound
/// `2^(bits-1) - 1` replaces 127 (7 for 4 bits), the values still stored as i8.
pub fn quantize_weight_bits(
    w: &[f32],
    dims: &[usize],
    axis: Option<usize>,
    bits: u32,
) -> QuantizedWeight {
    let bound = (1i32 << (bits.clamp(2, 8) - 1)) - 1;
    // Element i belongs to channel (i / inner) % channels.
    let (channels, inner) = match axis {
        Some(a) => (dims[a], dims[a + 1..].iter().product::<usize>()),
        None => (1, w.len().max(1)),
    };
    let channel = |i: usize| (i / inner.max(1)) % channels.max(1);
    let mut absmax = vec![0f32; channels];
    for (i, &v) in w.iter().enumerate() {
        let c = channel(i);
        absmax[c] = absmax[c].max(v.abs());
    }
    let scales: Vec<f32> = absmax
        .iter()
        .map(|&m| {
            let s = (m as f64 / bound as f64) as f32;
            if s >= TINY_SCALE {
                s
            } else {
                1.0
            }
        })
        .collect();
    let data = w
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let q = (v / scales[channel(i)]).round_ties_even();
            q.clamp(-bound as f32, bound as f32) as i8
        })
        .collect();
    QuantizedWeight { data, scales }
}

/// The bias scales `s_x · s_w[c]` (f32 products), one per weight scale.
pub fn bias_scales(input_scale: f32, weight_scales: &[f32]) -> Vec<f32> {
    weight_scales.iter().map(|&s| input_scale * s).collect()
}

/// `round(b[c] / scale[c])` saturated to i32 (the quotient in f64); `scales` has one entry per
/// bias element, or one for all.
pub fn quantize_bias(bias: &[f32], scales: &[f32]) -> Vec<i32> {
    bias.iter()
        .enumerate()
        .map(|(c, &b)| {
            let s = scales[if scales.len() == 1 { 0 } else { c }] as f64;
            let q = (b as f64 / s).round_ties_even();
            q.clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_range_is_widened_to_contain_zero() {
        let p = activation_params(0.5, 2.55);
        assert_eq!(p.zero_point, 0);
        assert_eq!(p.scale, 0.01);
        let p = activation_params(-1.0, -0.25);
        assert_eq!(p.zero_point, 255);
        assert_eq!(p.scale, (1.0f64 / 255.0) as f32);
    }

    #[test]
    fn activation_zero_point_rounds_half_to_even() {
        // Ranges of width 255 (scale 1) whose -min / scale is exactly a half.
        let p = activation_params(-127.5, 127.5);
        assert_eq!(p.scale, 1.0);
        assert_eq!(p.zero_point, 128, "127.5 rounds to the even 128");
        let p = activation_params(-126.5, 128.5);
        assert_eq!(p.scale, 1.0);
        assert_eq!(p.zero_point, 126, "126.5 rounds to the even 126");
        let p = activation_params(-3.0, 252.0);
        assert_eq!((p.scale, p.zero_point), (1.0, 3));
    }

    #[test]
    fn degenerate_ranges_get_scale_one() {
        assert_eq!(
            activation_params(0.0, 0.0),
            ActivationParams {
                scale: 1.0,
                zero_point: 0
            }
        );
        assert_eq!(activation_params(0.0, 1e-40).scale, 1.0);
    }

    #[test]
    fn four_bit_weights_lie_on_a_grid_of_fifteen_levels() {
        let w = [0.7f32, -0.38, 0.1, 0.0, 2.0, -1.2];
        let q = quantize_weight_bits(&w, &[2, 3], Some(0), 4);
        assert_eq!(q.scales, vec![0.1, (2.0f64 / 7.0) as f32]);
        assert_eq!(q.data, vec![7, -4, 1, 0, 7, -4]);
        assert!(q.data.iter().all(|&v| (-7..=7).contains(&v)));
        assert_eq!(
            quantize_weight_bits(&w, &[2, 3], Some(0), 8),
            quantize_weight(&w, &[2, 3], Some(0))
        );
    }

    #[test]
    fn weights_are_symmetric_per_channel() {
        // Two channels along axis 0, three values each.
        let w = [1.27, -0.635, 0.0, 0.0, 0.0, 0.0];
        let q = quantize_weight(&w, &[2, 3], Some(0));
        assert_eq!(q.scales, vec![0.01, 1.0]);
        assert_eq!(
            q.data,
            vec![127, -64, 0, 0, 0, 0],
            "-63.5 rounds to even -64"
        );
        // Along axis 1 of a [2, 2] matrix: columns.
        let w = [2.54, -1.0, -2.54, 0.5];
        let q = quantize_weight(&w, &[2, 2], Some(1));
        assert_eq!(q.scales, vec![0.02, (1.0f64 / 127.0) as f32]);
        assert_eq!(q.data, vec![127, -127, -127, 64]);
    }

    #[test]
    fn per_tensor_weights_share_one_scale_and_never_reach_minus_128() {
        let w = [-2.54, 1.27, 0.01];
        let q = quantize_weight(&w, &[3], None);
        assert_eq!(q.scales, vec![0.02]);
        assert_eq!(q.data, vec![-127, 64, 0]);
        assert!(q.data.iter().all(|&v| v != -128));
    }

    #[test]
    fn bias_is_rounded_and_saturated() {
        let s = bias_scales(0.5, &[0.25, 2.0]);
        assert_eq!(s, vec![0.125, 1.0]);
        assert_eq!(quantize_bias(&[0.3125, -2.5], &s), vec![2, -2]);
        assert_eq!(
            quantize_bias(&[1e30, -1e30], &[1e-10]),
            vec![i32::MAX, i32::MIN]
        );
    }
}
