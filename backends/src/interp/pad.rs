//! Pad: constant / reflect / edge / wrap, with negative pads cropping.
//!
//! Contract for negative pads: along each axis the input is first cropped by the negative
//! amounts, then padded by the positive amounts, the non-constant modes reading from the cropped
//! extent (as onnxruntime does). Reflect and wrap repeat periodically when the padding exceeds
//! the extent (numpy); padding an empty extent in a non-constant mode is an error.

use super::shape_ops::gather_axis_maps;
use super::*;
use kestrel_ir::PadMode;

pub(crate) fn pad(mode: PadMode, x: &Tensor, pads: &Tensor, value: Option<&Tensor>) -> Res<Tensor> {
    let name = "pad";
    let p = index_values(name, pads, "pads")?;
    let r = x.dims().len();
    if p.len() != 2 * r {
        return Err(invalid(
            name,
            format!(
                "pads has {} entries, expected 2 * rank = {}",
                p.len(),
                2 * r
            ),
        ));
    }
    let es = x.dtype().size();
    let fill: Vec<u8> = match value {
        Some(v) if v.numel() > 0 => {
            require_same_dtype(name, x, v)?;
            if v.numel() != 1 {
                return Err(invalid(
                    name,
                    format!("value must be a scalar, got shape {:?}", v.dims()),
                ));
            }
            v.bytes().to_vec()
        }
        _ => vec![0u8; es],
    };
    let mut maps = Vec::with_capacity(r);
    let mut out_dims = Vec::with_capacity(r);
    for a in 0..r {
        let d = x.dims()[a] as i64;
        let (b, e) = (p[a], p[r + a]);
        let lo = b.saturating_neg().max(0);
        let kept = d
            .checked_sub(lo)
            .and_then(|v| v.checked_sub(e.saturating_neg().max(0)));
        let m = match kept {
            Some(m) if m >= 0 => m,
            _ => {
                return Err(invalid(
                    name,
                    format!("pads {b}, {e} crop more than the extent {d} of axis {a}"),
                ))
            }
        };
        let extent = m
            .checked_add(b.max(0))
            .and_then(|v| v.checked_add(e.max(0)))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| invalid(name, format!("pads {b}, {e} overflow")))?;
        out_dims.push(extent);
        if m == 0 && mode != PadMode::Constant && extent > 0 {
            return Err(invalid(
                name,
                format!("cannot pad the empty extent of axis {a} in {mode:?} mode"),
            ));
        }
        maps.push((b.max(0), m, lo));
    }
    check_alloc(name, x.dtype(), &out_dims)?;
    check_extents(name, x.dtype(), &out_dims)?;
    let maps: Vec<Vec<Option<usize>>> = maps
        .into_iter()
        .zip(&out_dims)
        .map(|((before, m, lo), &extent)| {
            (0..extent as i64)
                .map(|o| {
                    let j = o - before;
                    let src = if (0..m).contains(&j) {
                        Some(j)
                    } else {
                        match mode {
                            PadMode::Constant => None,
                            PadMode::Edge => Some(j.clamp(0, m - 1)),
                            PadMode::Wrap => Some(j.rem_euclid(m)),
                            PadMode::Reflect => Some(if m == 1 {
                                0
                            } else {
                                let period = 2 * (m - 1);
                                let k = j.rem_euclid(period);
                                if k >= m {
                                    period - k
                                } else {
                                    k
                                }
                            }),
                        }
                    };
                    src.map(|s| (s + lo) as usize)
                })
                .collect()
        })
        .collect();
    gather_axis_maps(name, x, &maps, &fill)
}
