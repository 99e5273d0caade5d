//! Convolution (any number of spatial axes) as im2col + GEMM, and the padding/extent rules
//! shared with pooling.

use super::matmul::{gemm_acc, GemmElem};
use super::*;
use kestrel_ir::{AutoPad, ConvAttrs};
use rayon::prelude::*;

/// A per-spatial-axis attribute list: empty means `default` everywhere, otherwise exactly one
/// entry per axis (zeros rejected when `positive`).
pub(crate) fn per_axis(
    op: &'static str,
    what: &str,
    v: &[usize],
    k: usize,
    default: usize,
    positive: bool,
) -> Res<Vec<usize>> {
    if v.is_empty() {
        return Ok(vec![default; k]);
    }
    if v.len() != k {
        return Err(invalid(
            op,
            format!("{what} has {} entries for {k} spatial axes", v.len()),
        ));
    }
    if positive && v.contains(&0) {
        return Err(invalid(op, format!("{what} {v:?} contains 0")));
    }
    Ok(v.to_vec())
}

/// Effective `(begin, end)` padding per spatial axis: `kestrel_ir::infer::conv_pads`, the single
/// source of truth shared with type inference and the compiled backends.
pub(crate) fn effective_pads(
    op: &'static str,
    auto_pad: AutoPad,
    pads: &[usize],
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
) -> Res<Vec<(usize, usize)>> {
    kestrel_ir::infer::conv_pads(auto_pad, input, kernel, strides, dilations, pads)
        .map_err(|reason| invalid(op, reason))
}

/// Output extent of a sliding window (`kestrel_ir::infer::pool_output_extent`, shared with
/// inference): `floor((in + pads - span) / stride) + 1`, or `ceil` when `ceil_mode`, dropping a
/// last window that would start in the end padding.
pub(crate) fn window_extent(
    op: &'static str,
    input: usize,
    pad: (usize, usize),
    kernel: usize,
    stride: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Res<usize> {
    kestrel_ir::infer::pool_output_extent(input, kernel, stride, dilation, pad, ceil_mode)
        .map_err(|reason| invalid(op, reason))
}

pub(crate) fn conv(
    attrs: &ConvAttrs,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Res<Tensor> {
    let name = "conv";
    require_same_dtype(name, x, w)?;
    if let Some(b) = bias {
        require_same_dtype(name, x, b)?;
    }
    let dtype = x.dtype();
    match class_of(dtype) {
        // f32 (and f16/bf16) accumulate in f64 and round once: the oracle stays close to exact
        // arithmetic, which integer-fused quantized execution also approximates.
        Class::F32 | Class::F64 => {
            let b = bias.map(|b| b.to_f64_vec());
            let (d, y) = conv_typed(
                attrs,
                &x.to_f64_vec(),
                x.dims(),
                &w.to_f64_vec(),
                w.dims(),
                b,
                dtype,
            )?;
            tensor_from_f64(dtype, d, &y)
        }
        _ => Err(unsupported_dtype(name, dtype)),
    }
}

/// Shape-checked geometry of one convolution.
struct Geometry {
    batch: usize,
    channels: usize,
    out_channels: usize,
    group: usize,
    in_sp: Vec<usize>,
    k_sp: Vec<usize>,
    out_sp: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads: Vec<(usize, usize)>,
}

fn geometry(attrs: &ConvAttrs, x_dims: &[usize], w_dims: &[usize]) -> Res<Geometry> {
    let name = "conv";
    if x_dims.len() < 3 || w_dims.len() != x_dims.len() {
        return Err(invalid(
            name,
            format!("x {x_dims:?} must be [N, C, spatial..] and w {w_dims:?} of the same rank"),
        ));
    }
    let k = x_dims.len() - 2;
    let group = attrs.group;
    let (channels, out_channels) = (x_dims[1], w_dims[0]);
    if group == 0 || w_dims[1].checked_mul(group) != Some(channels) || out_channels % group != 0 {
        return Err(invalid(
            name,
            format!("group {group} does not fit x {x_dims:?} and w {w_dims:?} (need C = w[1] * group and M divisible by group)"),
        ));
    }
    let in_sp = x_dims[2..].to_vec();
    let k_sp = w_dims[2..].to_vec();
    let strides = per_axis(name, "strides", &attrs.strides, k, 1, true)?;
    let dilations = per_axis(name, "dilations", &attrs.dilations, k, 1, true)?;
    let pads = effective_pads(
        name,
        attrs.auto_pad,
        &attrs.pads,
        &in_sp,
        &k_sp,
        &strides,
        &dilations,
    )?;
    let out_sp = (0..k)
        .map(|i| {
            window_extent(
                name,
                in_sp[i],
                pads[i],
                k_sp[i],
                strides[i],
                dilations[i],
                false,
            )
        })
        .collect::<Res<Vec<usize>>>()?;
    Ok(Geometry {
        batch: x_dims[0],
        channels,
        out_channels,
        group,
        in_sp,
        k_sp,
        out_sp,
        strides,
        dilations,
        pads,
    })
}

pub(crate) fn conv_typed<T: GemmElem>(
    attrs: &ConvAttrs,
    x: &[T],
    x_dims: &[usize],
    w: &[T],
    w_dims: &[usize],
    bias: Option<Vec<T>>,
    dtype: DType,
) -> Res<(Vec<usize>, Vec<T>)> {
    let name = "conv";
    let geo = geometry(attrs, x_dims, w_dims)?;
    if let Some(b) = &bias {
        if b.len() != geo.out_channels {
            return Err(invalid(
                name,
                format!(
                    "bias has {} elements for {} output channels",
                    b.len(),
                    geo.out_channels
                ),
            ));
        }
    }
    let mut out_dims = vec![geo.batch, geo.out_channels];
    out_dims.extend(&geo.out_sp);
    let total = check_alloc(name, dtype, &out_dims)?;
    let cg = geo.channels / geo.group;
    let mg = geo.out_channels / geo.group;
    let ksz: usize = geo.k_sp.iter().product();
    let osz: usize = geo.out_sp.iter().product();
    let isz: usize = geo.in_sp.iter().product();
    let pointwise = geo.k_sp.iter().all(|&k| k == 1)
        && geo.strides.iter().all(|&s| s == 1)
        && geo.pads.iter().all(|&p| p == (0, 0));
    if !pointwise {
        check_alloc(name, dtype, &[cg * ksz, osz])?;
    }
    let mut y = vec![T::default(); total];
    if let Some(b) = &bias {
        for (m, chunk) in y.chunks_mut(osz.max(1)).enumerate() {
            let bv = b[m % geo.out_channels];
            chunk.iter_mut().for_each(|v| *v = bv);
        }
    }
    if mg == 0 || osz == 0 {
        return Ok((out_dims, y));
    }
    let wg_len = mg * cg * ksz;
    y.par_chunks_mut(mg * osz)
        .enumerate()
        .for_each(|(task, y_part)| {
            let (n, gi) = (task / geo.group, task % geo.group);
            let x_part =
                &x[(n * geo.channels + gi * cg) * isz..(n * geo.channels + (gi + 1) * cg) * isz];
            let w_part = &w[gi * wg_len..(gi + 1) * wg_len];
            if pointwise {
                gemm_acc(mg, osz, cg, w_part, x_part, y_part);
            } else {
                let col = im2col(x_part, cg, &geo);
                gemm_acc(mg, osz, cg * ksz, w_part, &col, y_part);
            }
        });
    Ok((out_dims, y))
}

/// The im2col matrix `[cg * prod(kernel), prod(out)]` of one image's channel group: row
/// `(c, kernel offset)` holds, for every output position, the input element under that kernel tap
/// (0 where it falls into the padding).
fn im2col<T: Copy + Default>(x: &[T], cg: usize, geo: &Geometry) -> Vec<T> {
    let r = geo.in_sp.len();
    let ksz: usize = geo.k_sp.iter().product();
    let osz: usize = geo.out_sp.iter().product();
    let isz: usize = geo.in_sp.iter().product();
    let in_strides = strides_of(&geo.in_sp);
    // tables[a][kk * out_a + o] = input coordinate along axis a, or -1 in the padding.
    let tables: Vec<Vec<isize>> = (0..r)
        .map(|a| {
            let (ka, oa) = (geo.k_sp[a], geo.out_sp[a]);
            let mut t = Vec::with_capacity(ka * oa);
            for kk in 0..ka {
                for o in 0..oa {
                    let c = (o * geo.strides[a] + kk * geo.dilations[a]) as isize
                        - geo.pads[a].0 as isize;
                    t.push(if c >= 0 && (c as usize) < geo.in_sp[a] {
                        c
                    } else {
                        -1
                    });
                }
            }
            t
        })
        .collect();
    let inner = geo.out_sp[r - 1];
    let outer = osz / inner;
    let mut col = vec![T::default(); cg * ksz * osz];
    let mut k_multi = vec![0usize; r];
    let mut o_multi = vec![0usize; r];
    for c in 0..cg {
        let x_c = &x[c * isz..(c + 1) * isz];
        for kidx in 0..ksz {
            // k_multi = unravel(kidx)
            let mut rem = kidx;
            for a in (0..r).rev() {
                k_multi[a] = rem % geo.k_sp[a];
                rem /= geo.k_sp[a];
            }
            let row = c * ksz + kidx;
            let dst = &mut col[row * osz..(row + 1) * osz];
            o_multi.iter_mut().for_each(|v| *v = 0);
            let last = &tables[r - 1][k_multi[r - 1] * inner..(k_multi[r - 1] + 1) * inner];
            for ob in 0..outer {
                let mut base = 0isize;
                let mut valid = true;
                for a in 0..r - 1 {
                    let t = tables[a][k_multi[a] * geo.out_sp[a] + o_multi[a]];
                    if t < 0 {
                        valid = false;
                        break;
                    }
                    base += t * in_strides[a] as isize;
                }
                if valid {
                    let d_row = &mut dst[ob * inner..(ob + 1) * inner];
                    for (dv, &t) in d_row.iter_mut().zip(last) {
                        if t >= 0 {
                            *dv = x_c[(base + t) as usize];
                        }
                    }
                }
                for a in (0..r - 1).rev() {
                    o_multi[a] += 1;
                    if o_multi[a] < geo.out_sp[a] {
                        break;
                    }
                    o_multi[a] = 0;
                }
            }
        }
    }
    col
}

/// Transposed convolution, computed directly as a scatter of every input element times every
/// kernel tap into the output (accumulated in f64, rounded once); geometry from
/// `kestrel_ir::infer::conv_transpose_axes`.
pub(crate) fn conv_transpose(
    attrs: &kestrel_ir::ConvTransposeAttrs,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Res<Tensor> {
    let name = "conv_transpose";
    require_same_dtype(name, x, w)?;
    if let Some(b) = bias {
        require_same_dtype(name, x, b)?;
    }
    let dtype = x.dtype();
    require_float(name, x)?;
    let (xd, wd) = (x.dims(), w.dims());
    if xd.len() < 3 || wd.len() != xd.len() {
        return Err(invalid(
            name,
            format!("x {xd:?} must be [N, C, spatial..] and w {wd:?} of the same rank"),
        ));
    }
    let k = xd.len() - 2;
    let (batch, channels, group) = (xd[0], xd[1], attrs.group);
    if group == 0 || wd[0] != channels || channels % group != 0 {
        return Err(invalid(
            name,
            format!("group {group} does not fit x {xd:?} and w {wd:?} (need w[0] = C divisible by group)"),
        ));
    }
    let mg = wd[1];
    let m = mg
        .checked_mul(group)
        .ok_or_else(|| invalid(name, "output channel count overflows"))?;
    let b = match bias {
        Some(b) if b.numel() != m || b.dims().len() != 1 => {
            return Err(invalid(
                name,
                format!("bias has shape {:?} for {m} output channels", b.dims()),
            ))
        }
        Some(b) => b.to_f64_vec(),
        None => vec![0.0; m],
    };
    let (in_sp, k_sp) = (&xd[2..], &wd[2..]);
    let axes = kestrel_ir::infer::conv_transpose_axes(
        attrs.auto_pad,
        in_sp,
        k_sp,
        &attrs.strides,
        &attrs.dilations,
        &attrs.pads,
        &attrs.output_padding,
        &attrs.output_shape,
    )
    .map_err(|e| invalid(name, e))?;
    let strides = per_axis(name, "strides", &attrs.strides, k, 1, true)?;
    let dilations = per_axis(name, "dilations", &attrs.dilations, k, 1, true)?;
    let out_sp: Vec<usize> = axes.iter().map(|a| a.0).collect();
    let mut out_dims = vec![batch, m];
    out_dims.extend(&out_sp);
    let total = check_alloc(name, dtype, &out_dims)?;
    let isz: usize = in_sp.iter().product();
    let ksz: usize = k_sp.iter().product();
    let osz: usize = out_sp.iter().product();
    // For every (input position, kernel tap): the output position it lands on, if any.
    let pairs = isz
        .checked_mul(ksz)
        .ok_or_else(|| invalid(name, "scratch size overflows"))?;
    check_alloc(name, DType::U64, &[pairs])?;
    let out_strides = strides_of(&out_sp);
    let mut land = vec![usize::MAX; pairs];
    let mut ii = vec![0usize; k];
    for i_flat in 0..isz {
        let mut tt = vec![0usize; k];
        for t_flat in 0..ksz {
            let mut off = Some(0usize);
            for a in 0..k {
                // In range by construction: i * s + t * d < full extent, which fits in usize.
                let pos = ii[a] * strides[a] + tt[a] * dilations[a];
                off = off.and_then(|o| {
                    pos.checked_sub(axes[a].1)
                        .filter(|&p| p < out_sp[a])
                        .map(|p| o + p * out_strides[a])
                });
            }
            if let Some(o) = off {
                land[i_flat * ksz + t_flat] = o;
            }
            advance(&mut tt, k_sp);
        }
        advance(&mut ii, in_sp);
    }
    let (xv, wv) = (x.to_f64_vec(), w.to_f64_vec());
    let mut y = vec![0.0f64; total];
    for (c, chunk) in y.chunks_mut(osz.max(1)).enumerate().take(batch * m) {
        chunk.fill(b[c % m]);
    }
    let cg = channels / group;
    for n in 0..batch {
        for g in 0..group {
            for ci in 0..cg {
                let c = g * cg + ci;
                let xrow = &xv[(n * channels + c) * isz..][..isz];
                for mi in 0..mg {
                    let wrow = &wv[(c * mg + mi) * ksz..][..ksz];
                    let yrow = &mut y[(n * m + g * mg + mi) * osz..][..osz];
                    for (i_flat, &xval) in xrow.iter().enumerate() {
                        for (t_flat, &wval) in wrow.iter().enumerate() {
                            let o = land[i_flat * ksz + t_flat];
                            if o != usize::MAX {
                                yrow[o] += xval * wval;
                            }
                        }
                    }
                }
            }
        }
    }
    tensor_from_f64(dtype, out_dims, &y)
}

/// Increments a row-major multi-index over `dims` (wrapping to zeros after the last).
fn advance(idx: &mut [usize], dims: &[usize]) {
    for a in (0..idx.len()).rev() {
        idx[a] += 1;
        if idx[a] < dims[a] {
            return;
        }
        idx[a] = 0;
    }
}
