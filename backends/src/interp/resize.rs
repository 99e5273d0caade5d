//! Resize (ONNX Resize-19), following the ONNX reference implementation: separable
//! interpolation where every axis maps each output coordinate to weighted input taps.
//!
//! Contracts (as in the ONNX reference): with scales, `out = floor(in * scale)`; with sizes and a
//! `keep_aspect_ratio_policy` other than stretch, one scale (the min or max of `size / in` over the
//! resized axes) applies to all resized axes and `out = round(in * scale)`. Output extents are
//! computed in f32 (like onnxruntime and `kestrel_ir::infer`); coordinates use f64 scales. Coordinate
//! transforms use `scale * in` as the "output width" where the reference does. Neighbours beyond
//! the input edge read the edge element (the reference's edge padding) unless `exclude_outside`,
//! which drops them and renormalises. `tf_crop_and_resize` coordinates outside `[0, in - 1]`
//! produce `extrapolation_value`. Computation is in f64, converted to the input dtype (integers
//! truncate). Antialiasing is not supported.

use super::*;
use kestrel_ir::{AspectPolicy, CoordMode, NearestMode, ResizeAttrs, ResizeBy, ResizeMode};

/// How one output coordinate along one axis reads the input.
enum AxisTaps {
    /// Outside the crop box of `tf_crop_and_resize`.
    Extrapolate,
    /// `(input index, weight)` pairs with non-zero weight.
    Taps(Vec<(usize, f64)>),
}

/// Per-axis geometry: input extent, output extent, scale, roi `(start, end)`.
struct AxisGeom {
    input: usize,
    output: usize,
    scale: f64,
    roi: (f64, f64),
}

pub(crate) fn resize(
    attrs: &ResizeAttrs,
    x: &Tensor,
    scales_or_sizes: &Tensor,
    roi: Option<&Tensor>,
) -> Res<Tensor> {
    let name = "resize";
    if attrs.antialias {
        return Err(EvalError::Unsupported {
            op: name,
            what: "antialias".into(),
        });
    }
    if x.dtype() == DType::Bool {
        return Err(unsupported_dtype(name, x.dtype()));
    }
    let dims = x.dims();
    let (geom, taps) = plan(attrs, dims, scales_or_sizes, roi)?;
    let r = dims.len();
    let out_dims: Vec<usize> = geom.iter().map(|g| g.output).collect();
    let total = check_alloc(name, x.dtype(), &out_dims)?;
    check_extents(name, x.dtype(), &out_dims)?;
    let xv = x.to_f64_vec();
    let in_strides = strides_of(dims);
    let extrapolation = attrs.extrapolation_value.0 as f64;
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; r];
    let mut lists: Vec<&[(usize, f64)]> = Vec::with_capacity(r);
    for _ in 0..total {
        lists.clear();
        let mut outside = false;
        for a in 0..r {
            match &taps[a][idx[a]] {
                AxisTaps::Extrapolate => outside = true,
                AxisTaps::Taps(t) => lists.push(t),
            }
        }
        out.push(if outside {
            extrapolation
        } else {
            accumulate(&lists, &in_strides, &xv, 0, 0)
        });
        for a in (0..r).rev() {
            idx[a] += 1;
            if idx[a] < out_dims[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    tensor_from_f64(x.dtype(), out_dims, &out)
}

/// Per-axis geometry and, per axis and output coordinate, how the input is read.
fn plan(
    attrs: &ResizeAttrs,
    dims: &[usize],
    scales_or_sizes: &Tensor,
    roi: Option<&Tensor>,
) -> Res<(Vec<AxisGeom>, Vec<Vec<AxisTaps>>)> {
    let name = "resize";
    let r = dims.len();
    let axes: Vec<usize> = if attrs.axes.is_empty() {
        (0..r).collect()
    } else {
        let mut v = Vec::new();
        for &a in &attrs.axes {
            let a = norm_axis(name, a, r)?;
            if v.contains(&a) {
                return Err(invalid(name, format!("axis {a} is listed twice")));
            }
            v.push(a);
        }
        v
    };
    let geom = geometry(attrs, dims, &axes, scales_or_sizes, roi)?;
    let out_dims: Vec<usize> = geom.iter().map(|g| g.output).collect();
    check_extents(name, DType::F32, &out_dims)?;
    let taps: Vec<Vec<AxisTaps>> = geom
        .iter()
        .map(|g| (0..g.output).map(|o| axis_taps(attrs, g, o)).collect())
        .collect();
    Ok((geom, taps))
}

/// `(input index, weight)` pairs of one output coordinate along one axis.
pub type Taps = Vec<(usize, f64)>;

/// The interpolation `Resize` performs on an input of extents `dims`, for compiled kernels: per
/// axis, per output coordinate, the `(input index, weight)` taps with non-zero weight, or `None`
/// where the coordinate lies outside the `tf_crop_and_resize` box (the output is then the
/// extrapolation value). The output element is `sum over tap tuples of prod(weights) * x[indices]`.
pub fn resize_taps(
    attrs: &ResizeAttrs,
    dims: &[usize],
    scales_or_sizes: &Tensor,
    roi: Option<&Tensor>,
) -> Result<Vec<Vec<Option<Taps>>>, EvalError> {
    if attrs.antialias {
        return Err(EvalError::Unsupported {
            op: "resize",
            what: "antialias".into(),
        });
    }
    let (_, taps) = plan(attrs, dims, scales_or_sizes, roi)?;
    Ok(taps
        .into_iter()
        .map(|axis| {
            axis.into_iter()
                .map(|t| match t {
                    AxisTaps::Extrapolate => None,
                    AxisTaps::Taps(v) => Some(v),
                })
                .collect()
        })
        .collect())
}

/// `sum over taps of prod(weights) * x[offset]` for axes `axis..`.
fn accumulate(
    lists: &[&[(usize, f64)]],
    strides: &[usize],
    x: &[f64],
    axis: usize,
    offset: usize,
) -> f64 {
    if axis == lists.len() {
        return x[offset];
    }
    lists[axis]
        .iter()
        .map(|&(i, w)| w * accumulate(lists, strides, x, axis + 1, offset + i * strides[axis]))
        .sum()
}

fn geometry(
    attrs: &ResizeAttrs,
    dims: &[usize],
    axes: &[usize],
    scales_or_sizes: &Tensor,
    roi: Option<&Tensor>,
) -> Res<Vec<AxisGeom>> {
    let name = "resize";
    let r = dims.len();
    let n = axes.len();
    let mut geom: Vec<AxisGeom> = dims
        .iter()
        .map(|&d| AxisGeom {
            input: d,
            output: d,
            scale: 1.0,
            roi: (0.0, 1.0),
        })
        .collect();
    if scales_or_sizes.numel() != n || scales_or_sizes.dims().len() != 1 {
        return Err(invalid(
            name,
            format!(
                "{:?} must be 1-D with one entry per resized axis ({n})",
                attrs.by
            ),
        ));
    }
    match attrs.by {
        ResizeBy::Scales => {
            require_float(name, scales_or_sizes)?;
            for (i, &a) in axes.iter().enumerate() {
                let s = scales_or_sizes.get_f64(i);
                if !(s > 0.0 && s.is_finite()) {
                    return Err(invalid(name, format!("scale {s} must be positive")));
                }
                // floor(in * scale) in f32, as onnxruntime and type inference compute it.
                let out = (dims[a] as f32 * s as f32).floor() as f64;
                if out > (tensor_byte_limit() as f64) {
                    return Err(invalid(
                        name,
                        format!("scale {s} gives an absurd output extent"),
                    ));
                }
                geom[a].scale = s;
                geom[a].output = out as usize;
            }
        }
        ResizeBy::Sizes => {
            let sizes = index_values(name, scales_or_sizes, "sizes")?;
            let mut ratios = Vec::with_capacity(n);
            for (i, &a) in axes.iter().enumerate() {
                if sizes[i] < 0 || dims[a] == 0 {
                    return Err(invalid(
                        name,
                        format!(
                            "cannot resize axis {a} of extent {} to {}",
                            dims[a], sizes[i]
                        ),
                    ));
                }
                ratios.push(sizes[i] as f64 / dims[a] as f64);
            }
            let common = match attrs.aspect {
                AspectPolicy::Stretch => None,
                AspectPolicy::NotLarger => ratios.iter().copied().reduce(f64::min),
                AspectPolicy::NotSmaller => ratios.iter().copied().reduce(f64::max),
            };
            for (i, &a) in axes.iter().enumerate() {
                match common {
                    None => {
                        geom[a].scale = ratios[i];
                        geom[a].output = sizes[i] as usize;
                    }
                    Some(s) => {
                        // The extent is rounded in f32, as type inference computes it.
                        let ratios32 = axes
                            .iter()
                            .zip(&sizes)
                            .map(|(&ax, &z)| z as f32 / dims[ax] as f32);
                        let s32 = if attrs.aspect == AspectPolicy::NotLarger {
                            ratios32.fold(f32::INFINITY, f32::min)
                        } else {
                            ratios32.fold(0.0, f32::max)
                        };
                        geom[a].scale = s;
                        geom[a].output = (s32 * dims[a] as f32).round() as usize;
                    }
                }
            }
            for &a in axes {
                if geom[a].scale <= 0.0 && geom[a].output > 0 {
                    return Err(invalid(name, format!("axis {a} would be scaled by 0")));
                }
            }
        }
    }
    if attrs.coord == CoordMode::TfCropAndResize {
        let roi = roi.ok_or_else(|| invalid(name, "tf_crop_and_resize needs the roi input"))?;
        require_float(name, roi)?;
        if roi.numel() != 2 * n {
            return Err(invalid(
                name,
                format!("roi has {} entries, expected {}", roi.numel(), 2 * n),
            ));
        }
        for (i, &a) in axes.iter().enumerate() {
            geom[a].roi = (roi.get_f64(i), roi.get_f64(n + i));
        }
    }
    debug_assert_eq!(geom.len(), r);
    Ok(geom)
}

/// The source coordinate of output coordinate `o`, or `None` outside the tf_crop_and_resize box.
fn source_coordinate(mode: CoordMode, g: &AxisGeom, o: usize) -> Option<f64> {
    let x = o as f64;
    let input = g.input as f64;
    let out_width = g.scale * input;
    let s = g.scale;
    Some(match mode {
        CoordMode::HalfPixel => (x + 0.5) / s - 0.5,
        CoordMode::HalfPixelSymmetric => {
            let adjustment = g.output as f64 / out_width;
            let center = input / 2.0;
            let offset = center * (1.0 - adjustment);
            offset + (x + 0.5) / s - 0.5
        }
        CoordMode::PytorchHalfPixel => {
            if out_width == 1.0 {
                -0.5
            } else {
                (x + 0.5) / s - 0.5
            }
        }
        CoordMode::AlignCorners => {
            if out_width == 1.0 {
                0.0
            } else {
                x * (input - 1.0) / (out_width - 1.0)
            }
        }
        CoordMode::Asymmetric => x / s,
        CoordMode::TfCropAndResize => {
            let (start, end) = g.roi;
            let c = if out_width == 1.0 {
                (end - start) * (input - 1.0) / 2.0
            } else {
                x * (end - start) * (input - 1.0) / (out_width - 1.0)
            } + start * (input - 1.0);
            if c < 0.0 || c > input - 1.0 {
                return None;
            }
            c
        }
    })
}

fn cubic_coeffs(ratio: f64, a: f64) -> [f64; 4] {
    let t = 1.0 - ratio;
    [
        ((a * (ratio + 1.0) - 5.0 * a) * (ratio + 1.0) + 8.0 * a) * (ratio + 1.0) - 4.0 * a,
        ((a + 2.0) * ratio - (a + 3.0)) * ratio * ratio + 1.0,
        ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0,
        ((a * (t + 1.0) - 5.0 * a) * (t + 1.0) + 8.0 * a) * (t + 1.0) - 4.0 * a,
    ]
}

fn axis_taps(attrs: &ResizeAttrs, g: &AxisGeom, o: usize) -> AxisTaps {
    let Some(c) = source_coordinate(attrs.coord, g, o) else {
        return AxisTaps::Extrapolate;
    };
    // Left neighbour `base` and ratio in (0, 1]: an integral coordinate sits at ratio 1.
    let (base, ratio) = if c.fract() == 0.0 {
        (c - 1.0, 1.0)
    } else {
        let f = c.floor();
        (f, c - f)
    };
    let base = base as i64;
    let (first, coeffs): (i64, Vec<f64>) = match attrs.mode {
        ResizeMode::Nearest => {
            let take_right = if ratio == 1.0 {
                true
            } else {
                match attrs.nearest {
                    NearestMode::RoundPreferFloor => ratio > 0.5,
                    NearestMode::RoundPreferCeil => ratio >= 0.5,
                    NearestMode::Floor => false,
                    NearestMode::Ceil => true,
                }
            };
            (
                base,
                if take_right {
                    vec![0.0, 1.0]
                } else {
                    vec![1.0, 0.0]
                },
            )
        }
        ResizeMode::Linear => (base, vec![1.0 - ratio, ratio]),
        ResizeMode::Cubic => (
            base - 1,
            cubic_coeffs(ratio, attrs.cubic_coeff_a.0 as f64).to_vec(),
        ),
    };
    let last = g.input as i64 - 1;
    let mut coeffs = coeffs;
    if attrs.exclude_outside {
        for (k, w) in coeffs.iter_mut().enumerate() {
            let i = first + k as i64;
            if i < 0 || i > last {
                *w = 0.0;
            }
        }
        let sum: f64 = coeffs.iter().sum();
        coeffs.iter_mut().for_each(|w| *w /= sum);
    }
    AxisTaps::Taps(
        coeffs
            .iter()
            .enumerate()
            .filter(|(_, &w)| w != 0.0)
            .map(|(k, &w)| ((first + k as i64).clamp(0, last.max(0)) as usize, w))
            .collect(),
    )
}
