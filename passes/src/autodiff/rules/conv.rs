//! Gradients of Conv: the input gradient is a transposed convolution of the output gradient
//! with the same weights, the weight gradient a convolution of the input with the output
//! gradient (batch and channel axes exchanged, strides and dilations swapped).

use super::Grads;
use crate::autodiff::build::Builder;
use crate::autodiff::AutodiffError;
use kestrel_ir::{conv_pads, ConvAttrs, ConvTransposeAttrs, Node, Op, ValueId};

/// Per spatial axis, the end padding and output padding that make a transposed convolution
/// of an output of extent `out` (stride `s`, dilation `d`, kernel `k`, begin padding `pb`)
/// return exactly `extent` positions: `F = s·(out-1) + d·(k-1) + 1` full positions, of which
/// the first `pb` are cropped; the rest beyond `extent` are cropped at the end, or missing
/// ones added as output padding.
pub(crate) fn transpose_padding(
    extent: usize,
    out: usize,
    k: usize,
    s: usize,
    d: usize,
    pb: usize,
) -> (usize, usize) {
    let full = s * (out - 1) + d * (k - 1) + 1;
    let end = full as isize - pb as isize - extent as isize;
    if end >= 0 {
        (end as usize, 0)
    } else {
        (0, (-end) as usize)
    }
}

fn per_axis(v: &[usize], k: usize, default: usize) -> Vec<usize> {
    if v.is_empty() {
        vec![default; k]
    } else {
        v.to_vec()
    }
}

/// `y = conv(x, w) + b` (any group, strides, dilations, pads or auto_pad):
/// `dx = conv_transpose(dy, w)` with the conv's strides, dilations and begin pads;
/// `dw[m, c] = conv(x', dy')` where `x'` is `x` with batch and channel axes exchanged (grouped:
/// `[C/g, g·N, ..]`), `dy'` likewise `[M, N, ..]`, stride = the conv's dilation, dilation = the
/// conv's stride, the input cropped or end-padded so that exactly the kernel's extent results
/// (ungrouped convs: [`weight_gradient_by_taps`] instead); `db = Σ dy` over every axis but 1.
/// Fused epilogues and integer convs have no rule.
pub(crate) fn conv(
    b: &mut Builder,
    a: &ConvAttrs,
    n: &Node,
    dy: ValueId,
    wants: &[bool],
) -> Result<Grads, AutodiffError> {
    if !a.epilogue.is_none() || a.integer.is_some() {
        return Err(b.unsupported("conv with a fused epilogue or integer operands"));
    }
    let (x, w) = (n.inputs[0], n.inputs[1]);
    let xd = b.dims(x)?;
    let wd = b.dims(w)?;
    let yd = b.dims(n.outputs[0])?;
    if xd.iter().chain(&wd).chain(&yd).any(|&d| d == 0) {
        return Err(b.unsupported("conv of an empty tensor"));
    }
    let k = xd.len() - 2;
    let (nb, c, m, g) = (xd[0], xd[1], wd[0], a.group.max(1));
    let strides = per_axis(&a.strides, k, 1);
    let dilations = per_axis(&a.dilations, k, 1);
    let pads = conv_pads(
        a.auto_pad,
        &xd[2..],
        &wd[2..],
        &strides,
        &dilations,
        &a.pads,
    )
    .map_err(|e| b.unsupported(e))?;
    let mut out: Grads = vec![None; n.inputs.len()];
    if wants[0] {
        let mut begin = Vec::with_capacity(k);
        let mut end = Vec::with_capacity(k);
        let mut output_padding = Vec::with_capacity(k);
        for i in 0..k {
            let (pe, op) = transpose_padding(
                xd[2 + i],
                yd[2 + i],
                wd[2 + i],
                strides[i],
                dilations[i],
                pads[i].0,
            );
            begin.push(pads[i].0);
            end.push(pe);
            output_padding.push(op);
        }
        begin.extend(end);
        let op = Op::ConvTranspose(ConvTransposeAttrs {
            strides: strides.clone(),
            pads: begin,
            dilations: dilations.clone(),
            output_padding,
            output_shape: vec![],
            group: g,
            auto_pad: Default::default(),
        });
        out[0] = Some(b.op(op, &[dy, w])?);
    }
    if wants[1] && g == 1 {
        out[1] = Some(weight_gradient_by_taps(
            b, x, dy, &xd, &wd, &yd, &strides, &dilations, &pads,
        )?);
    } else if wants[1] {
        // x [N, C, D..] -> [C/g, g·N, D..], channel (j, n) of group j.
        let cg = c / g;
        let mut split = vec![nb, g, cg];
        split.extend(&xd[2..]);
        let mut xs = b.reshape(x, &split)?;
        let mut perm = vec![2, 1, 0];
        perm.extend(3..3 + k);
        xs = b.transpose(xs, &perm)?;
        let mut xdims = vec![cg, g * nb];
        xdims.extend(&xd[2..]);
        xs = b.reshape(xs, &xdims)?;
        // Crop the trailing input no output position reads, so the result has the kernel's extent.
        let mut pads_w = vec![0; 2 * k];
        for i in 0..k {
            let (pb, pe) = pads[i];
            let used = xd[2 + i] + pb + pe - 1 - strides[i] * (yd[2 + i] - 1);
            let rem = used - dilations[i] * (wd[2 + i] - 1);
            let crop = rem.saturating_sub(pe);
            if crop > 0 {
                xs = b.slice(xs, 2 + i, 0, xd[2 + i] - crop)?;
            }
            pads_w[i] = pb;
            pads_w[k + i] = pe.saturating_sub(rem);
        }
        // dy [N, M, O..] -> [M, N, O..], output channel (j, mm) of group j.
        let mg = m / g;
        let mut split = vec![nb, g, mg];
        split.extend(&yd[2..]);
        let mut ds = b.reshape(dy, &split)?;
        let mut perm = vec![1, 2, 0];
        perm.extend(3..3 + k);
        ds = b.transpose(ds, &perm)?;
        let mut ddims = vec![m, nb];
        ddims.extend(&yd[2..]);
        ds = b.reshape(ds, &ddims)?;
        let op = Op::Conv(ConvAttrs {
            strides: dilations.clone(),
            pads: pads_w,
            dilations: strides.clone(),
            group: g,
            ..Default::default()
        });
        let dwt = b.op(op, &[xs, ds])?; // [C/g, M, K..]
        let mut perm = vec![1, 0];
        perm.extend(2..2 + k);
        out[1] = Some(b.transpose(dwt, &perm)?);
    }
    if n.inputs.len() > 2 && wants[2] {
        let axes: Vec<usize> = (0..yd.len()).filter(|&a| a != 1).collect();
        out[2] = Some(b.reduce_sum(dy, &axes, false)?);
    }
    Ok(out)
}

/// The weight gradient of an ungrouped conv as one matrix product per kernel tap:
/// `dw[:, :, t] = dy_r · x_t`, where `dy_r` is `dy` as `[M, N·O]` and `x_t` the padded input,
/// channels last, read at tap `t` (the strided slice starting at `t·dilation`) as `[N·O, C]`. The same sum as
/// the convolution form, in the shape the JIT's matrix kernels run well: a convolution whose
/// kernel is the whole output map and whose output is the kernel's few taps runs at a fraction
/// of their rate (docs/PERFORMANCE.md "Where a step's time goes").
#[allow(clippy::too_many_arguments)]
fn weight_gradient_by_taps(
    b: &mut Builder,
    x: ValueId,
    dy: ValueId,
    xd: &[usize],
    wd: &[usize],
    yd: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[(usize, usize)],
) -> Result<ValueId, AutodiffError> {
    let k = xd.len() - 2;
    let (nb, c, m) = (xd[0], xd[1], wd[0]);
    let outputs: usize = yd[2..].iter().product();
    let rows = nb * outputs;
    let mut xp = x;
    if pads.iter().any(|&(pb, pe)| pb + pe > 0) {
        let mut p = vec![0i64; 2 * xd.len()];
        for (i, &(pb, pe)) in pads.iter().enumerate() {
            p[2 + i] = pb as i64;
            p[xd.len() + 2 + i] = pe as i64;
        }
        let pv = b.i64s(vec![p.len()], p);
        xp = b.op(
            Op::Pad {
                mode: kestrel_ir::PadMode::Constant,
            },
            &[x, pv],
        )?;
    }
    // dy [N, M, O..] -> [M, N·O].
    let mut perm = vec![1, 0];
    perm.extend(2..2 + k);
    let ds = b.transpose(dy, &perm)?;
    let ds = b.reshape(ds, &[m, rows])?;
    // The padded input channels-last, [N, D.., C], so each tap's strided slice is [N, O.., C],
    // already the rows [N·O, C] of its product.
    let mut channels_last = vec![0];
    channels_last.extend(2..2 + k);
    channels_last.push(1);
    let xp = b.transpose(xp, &channels_last)?;
    let axes = b.i64s(vec![k], (1..1 + k as i64).collect());
    let steps = b.i64s(vec![k], strides.iter().map(|&s| s as i64).collect());
    let taps: usize = wd[2..].iter().product();
    let mut per_tap = Vec::with_capacity(taps);
    for t in 0..taps {
        // Tap t's coordinates, the last axis fastest (the weight's layout).
        let mut rest = t;
        let mut coord = vec![0; k];
        for i in (0..k).rev() {
            coord[i] = rest % wd[2 + i];
            rest /= wd[2 + i];
        }
        let start: Vec<i64> = (0..k).map(|i| (coord[i] * dilations[i]) as i64).collect();
        let end: Vec<i64> = (0..k)
            .map(|i| start[i] + ((yd[2 + i] - 1) * strides[i] + 1) as i64)
            .collect();
        let sv = b.i64s(vec![k], start);
        let ev = b.i64s(vec![k], end);
        let xt = b.op(Op::Slice, &[xp, sv, ev, axes, steps])?;
        let xt = b.reshape(xt, &[rows, c])?;
        let g = b.op(Op::MatMul, &[ds, xt])?;
        per_tap.push(b.reshape(g, &[m, c, 1])?);
    }
    let stacked = if per_tap.len() == 1 {
        per_tap[0]
    } else {
        b.op(Op::Concat { axis: 2 }, &per_tap)?
    };
    b.reshape(stacked, wd)
}
