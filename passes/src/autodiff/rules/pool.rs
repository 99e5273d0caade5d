//! Gradients of pooling. Average pooling spreads each output gradient evenly over its window
//! (a transposed convolution with a ones kernel, per channel); max pooling routes it to the
//! first maximum of its window (the element the forward op returned) by gather, arg-max and a
//! scatter-add, all existing ops.

use super::conv::transpose_padding;
use super::Grads;
use crate::autodiff::build::Builder;
use crate::autodiff::AutodiffError;
use kestrel_ir::{
    conv_pads, ArgAttrs, ArgKind, ConvTransposeAttrs, Node, Op, PoolAttrs, PoolKind,
    ScatterReduction, ValueId,
};

fn per_axis(v: &[usize], k: usize, default: usize) -> Vec<usize> {
    if v.is_empty() {
        vec![default; k]
    } else {
        v.to_vec()
    }
}

/// Row-major odometer step of a multi-index within `dims`.
fn advance(idx: &mut [usize], dims: &[usize]) {
    for a in (0..idx.len()).rev() {
        idx[a] += 1;
        if idx[a] < dims[a] {
            return;
        }
        idx[a] = 0;
    }
}

struct Window {
    in_sp: Vec<usize>,
    out_sp: Vec<usize>,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads: Vec<(usize, usize)>,
}

impl Window {
    /// For every output position and kernel tap (row-major, `[P·K]`), the flat input position
    /// it reads, or `None` in the padding; also whether the tap lies within the declared
    /// padding (the count of `count_include_pad`).
    fn taps(&self) -> Vec<(Option<usize>, bool)> {
        let k = self.in_sp.len();
        let osz: usize = self.out_sp.iter().product();
        let ksz: usize = self.kernel.iter().product();
        let mut out = Vec::with_capacity(osz * ksz);
        let mut o = vec![0usize; k];
        for _ in 0..osz {
            let mut t = vec![0usize; k];
            for _ in 0..ksz {
                let mut flat = 0usize;
                let mut inside = true;
                let mut in_pad = true;
                for a in 0..k {
                    let c = (o[a] * self.strides[a] + t[a] * self.dilations[a]) as isize
                        - self.pads[a].0 as isize;
                    if c < 0 || c as usize >= self.in_sp[a] {
                        inside = false;
                        if c < -(self.pads[a].0 as isize)
                            || c >= (self.in_sp[a] + self.pads[a].1) as isize
                        {
                            in_pad = false;
                        }
                    } else {
                        flat = flat * self.in_sp[a] + c as usize;
                    }
                }
                out.push((inside.then_some(flat), in_pad));
                advance(&mut t, &self.kernel);
            }
            advance(&mut o, &self.out_sp);
        }
        out
    }
}

fn window(
    b: &Builder,
    a_kernel: &[usize],
    a: &PoolAttrs,
    xd: &[usize],
    yd: &[usize],
) -> Result<Window, AutodiffError> {
    let k = xd.len() - 2;
    let strides = per_axis(&a.strides, k, 1);
    let dilations = per_axis(&a.dilations, k, 1);
    let pads = conv_pads(
        a.auto_pad,
        &xd[2..],
        a_kernel,
        &strides,
        &dilations,
        &a.pads,
    )
    .map_err(|e| b.unsupported(e))?;
    Ok(Window {
        in_sp: xd[2..].to_vec(),
        out_sp: yd[2..].to_vec(),
        kernel: a_kernel.to_vec(),
        strides,
        dilations,
        pads,
    })
}

/// MaxPool and AveragePool (any kernel, strides, dilations, pads, ceil mode; average with or
/// without `count_include_pad`). Lp pooling has no rule.
pub(crate) fn pool(
    b: &mut Builder,
    a: &PoolAttrs,
    n: &Node,
    dy: ValueId,
) -> Result<Grads, AutodiffError> {
    let x = n.inputs[0];
    let xd = b.dims(x)?;
    let yd = b.dims(n.outputs[0])?;
    if xd.iter().chain(&yd).any(|&d| d == 0) {
        return Err(b.unsupported("pooling of an empty tensor"));
    }
    let w = window(b, &a.kernel, a, &xd, &yd)?;
    let dx = match a.kind {
        PoolKind::Average => average(b, a, &w, &xd, &yd, dy)?,
        PoolKind::Max => max(b, &w, &xd, x, dy)?,
        PoolKind::Lp(_) => return Err(b.no_rule()),
    };
    Ok(vec![Some(dx)])
}

/// `dx = conv_transpose(dy / count, ones)` per (batch, channel) plane, `count` the divisor of
/// each output position (a scalar when every window has the same).
fn average(
    b: &mut Builder,
    a: &PoolAttrs,
    w: &Window,
    xd: &[usize],
    yd: &[usize],
    dy: ValueId,
) -> Result<ValueId, AutodiffError> {
    let k = w.in_sp.len();
    let ksz: usize = w.kernel.iter().product();
    let counts: Vec<f64> = w
        .taps()
        .chunks(ksz)
        .map(|window| {
            window
                .iter()
                .filter(|(inside, in_pad)| {
                    if a.count_include_pad {
                        *in_pad
                    } else {
                        inside.is_some()
                    }
                })
                .count() as f64
        })
        .collect();
    let scaled = if counts.iter().all(|&c| c == counts[0]) {
        b.scale(dy, 1.0 / counts[0])?
    } else {
        let inv: Vec<f64> = counts.iter().map(|c| 1.0 / c).collect();
        let t = b.floats(w.out_sp.clone(), inv);
        b.mul(dy, t)?
    };
    let planes = xd[0] * xd[1];
    let mut flat = vec![planes, 1];
    flat.extend(&yd[2..]);
    let scaled = b.reshape(scaled, &flat)?;
    let mut kdims = vec![1, 1];
    kdims.extend(&w.kernel);
    let ones = b.floats(kdims, vec![1.0; ksz]);
    let mut pads: Vec<usize> = w.pads.iter().map(|p| p.0).collect();
    let mut output_padding = Vec::with_capacity(k);
    for i in 0..k {
        let (pe, op) = transpose_padding(
            w.in_sp[i],
            w.out_sp[i],
            w.kernel[i],
            w.strides[i],
            w.dilations[i],
            w.pads[i].0,
        );
        pads.push(pe);
        output_padding.push(op);
    }
    let op = Op::ConvTranspose(ConvTransposeAttrs {
        strides: w.strides.clone(),
        pads,
        dilations: w.dilations.clone(),
        output_padding,
        output_shape: vec![],
        group: 1,
        auto_pad: Default::default(),
    });
    let dx = b.op(op, &[scaled, ones])?;
    b.reshape(dx, xd)
}

/// Each output gradient goes to the first maximum of its window: the windows are gathered
/// from `x` (padding reads -inf from an extra slot), `arg_max` picks the tap, a table maps it to
/// its input position, and `scatter_elements(add)` sums the gradients there.
fn max(
    b: &mut Builder,
    w: &Window,
    xd: &[usize],
    x: ValueId,
    dy: ValueId,
) -> Result<ValueId, AutodiffError> {
    let (nb, c) = (xd[0], xd[1]);
    let hw: usize = w.in_sp.iter().product();
    let p: usize = w.out_sp.iter().product();
    let ksz: usize = w.kernel.iter().product();
    let table: Vec<i64> = w
        .taps()
        .iter()
        .map(|(inside, _)| inside.map_or(hw as i64, |f| f as i64))
        .collect();
    let xf = b.reshape(x, &[nb, c, hw])?;
    let neg_inf = b.floats(vec![nb, c, 1], vec![f64::NEG_INFINITY; nb * c]);
    let xe = b.op(Op::Concat { axis: 2 }, &[xf, neg_inf])?;
    let windows = b.i64s(vec![p, ksz], table.clone());
    let cols = b.op(Op::Gather { axis: 2 }, &[xe, windows])?; // [N, C, P, K]
    let arg = b.op(
        Op::Arg(ArgAttrs {
            kind: ArgKind::Max,
            axis: 3,
            keepdims: true,
            select_last_index: false,
        }),
        &[cols],
    )?; // [N, C, P, 1]
    let base = b.i64s(vec![p, 1], (0..p).map(|i| (i * ksz) as i64).collect());
    let tap = b.add(arg, base)?;
    let table = b.i64s(vec![p * ksz], table);
    let pos = b.op(Op::Gather { axis: 0 }, &[table, tap])?; // [N, C, P, 1]
    let pos = b.reshape(pos, &[nb, c, p])?;
    let dyf = b.reshape(dy, &[nb, c, p])?;
    let zeros = b.floats(vec![nb, c, hw + 1], vec![0.0; nb * c * (hw + 1)]);
    let dxe = b.op(
        Op::ScatterElements {
            axis: 2,
            reduction: ScatterReduction::Add,
        },
        &[zeros, pos, dyf],
    )?;
    let dxf = b.slice(dxe, 2, 0, hw)?;
    b.reshape(dxf, xd)
}

/// GlobalAveragePool: `dx = expand(dy / (D1·..·Dk), x's extents)`; GlobalMaxPool: max pooling
/// with one window over all spatial axes.
pub(crate) fn global_pool(
    b: &mut Builder,
    kind: PoolKind,
    n: &Node,
    dy: ValueId,
) -> Result<Grads, AutodiffError> {
    let xd = b.dims(n.inputs[0])?;
    if xd.contains(&0) {
        return Err(b.unsupported("pooling of an empty tensor"));
    }
    match kind {
        PoolKind::Average => {}
        PoolKind::Max => {
            let k = xd.len() - 2;
            let w = Window {
                in_sp: xd[2..].to_vec(),
                out_sp: vec![1; k],
                kernel: xd[2..].to_vec(),
                strides: vec![1; k],
                dilations: vec![1; k],
                pads: vec![(0, 0); k],
            };
            return Ok(vec![Some(max(b, &w, &xd, n.inputs[0], dy)?)]);
        }
        PoolKind::Lp(_) => return Err(b.no_rule()),
    }
    let count: usize = xd[2..].iter().product();
    let scaled = b.scale(dy, 1.0 / count as f64)?;
    let shape = b.i64s(vec![xd.len()], xd.iter().map(|&d| d as i64).collect());
    Ok(vec![Some(b.op(Op::Expand, &[scaled, shape])?)])
}
