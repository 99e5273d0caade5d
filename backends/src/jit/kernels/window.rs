//! Sliding-window geometry over the spatial axes of `[N, C, spatial..]` (shared by pooling and
//! convolution) and the zero- or neutral-padded copy of one input plane that windows read.

use crate::jit::emit::{strides_of, Emitter};
use cranelift_codegen::ir::Value;

/// Geometry of a sliding window over the spatial axes of `[N, C, spatial..]`.
#[derive(Clone, Debug)]
pub struct Window {
    pub planes: usize,
    pub in_sp: Vec<usize>,
    pub out_sp: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<(usize, usize)>,
    /// Extents of the padded plane (every tap of every window falls inside).
    pub padded: Vec<usize>,
}

impl Window {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_dims: &[usize],
        out_sp: &[usize],
        kernel: &[usize],
        strides: &[usize],
        dilations: &[usize],
        pads_attr: &[usize],
        auto_pad: kestrel_ir::AutoPad,
    ) -> Result<Window, String> {
        let k = in_dims.len().saturating_sub(2);
        if k == 0 || kernel.len() != k || out_sp.len() != k {
            return Err("windows need [N, C, spatial..] inputs".into());
        }
        let in_sp = in_dims[2..].to_vec();
        let or1 = |v: &[usize]| if v.is_empty() { vec![1; k] } else { v.to_vec() };
        let strides = or1(strides);
        let dilations = or1(dilations);
        let pads =
            kestrel_ir::conv_pads(auto_pad, &in_sp, kernel, &strides, &dilations, pads_attr)?;
        let padded = (0..k)
            .map(|a| {
                let need = if out_sp[a] == 0 {
                    0
                } else {
                    (out_sp[a] - 1) * strides[a] + (kernel[a] - 1) * dilations[a] + 1
                };
                need.max(pads[a].0 + in_sp[a])
            })
            .collect();
        Ok(Window {
            planes: in_dims[0] * in_dims[1],
            in_sp,
            out_sp: out_sp.to_vec(),
            kernel: kernel.to_vec(),
            strides,
            dilations,
            pads,
            padded,
        })
    }

    /// Whether some window reads outside the input (so a padded copy is needed).
    pub fn needs_padding(&self) -> bool {
        (0..self.in_sp.len()).any(|a| self.pads[a].0 > 0 || self.padded[a] > self.in_sp[a])
    }

    pub fn padded_elems(&self) -> usize {
        self.padded.iter().product()
    }

    /// Byte offsets of every tap relative to the window origin, in the (padded or input) plane
    /// with extents `plane`.
    pub fn taps(&self, plane: &[usize]) -> Vec<i64> {
        let ps = strides_of(plane);
        let n: usize = self.kernel.iter().product();
        let mut idx = vec![0usize; self.kernel.len()];
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let off: i64 = (0..idx.len())
                .map(|a| (idx[a] * self.dilations[a]) as i64 * ps[a])
                .sum();
            out.push(off * 4);
            for a in (0..idx.len()).rev() {
                idx[a] += 1;
                if idx[a] < self.kernel[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        out
    }
}

/// Copies plane `src` (extents `w.in_sp`, contiguous) into `dst` (extents `w.padded`) at the
/// begin pads, after filling `dst` with `fill`.
pub fn pad_plane(e: &mut Emitter, w: &Window, src: Value, dst: Value, fill: f32) {
    pad_plane_of(e, w, src, dst, &fill.to_le_bytes());
}

/// [`pad_plane`] for elements of `fill.len()` bytes, the padding holding `fill` (little-endian).
pub fn pad_plane_of(e: &mut Emitter, w: &Window, src: Value, dst: Value, fill: &[u8]) {
    let es = fill.len() as i64;
    e.fill_bytes(dst, w.padded_elems() * fill.len(), fill);
    let ps = strides_of(&w.padded);
    let is = strides_of(&w.in_sp);
    let origin: i64 = (0..w.in_sp.len()).map(|a| w.pads[a].0 as i64 * ps[a]).sum();
    let d0 = e.addr(dst, origin * es);
    let st = vec![
        is.iter().map(|x| x * es).collect::<Vec<_>>(),
        ps.iter().map(|x| x * es).collect::<Vec<_>>(),
    ];
    let row = w.in_sp[w.in_sp.len() - 1] * fill.len();
    e.nest(&w.in_sp, &st, &[src, d0], &mut |e, p| {
        e.memcpy(p[1], p[0], row);
    });
}
