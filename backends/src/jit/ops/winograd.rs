//! Winograd F(4×4, 3×3) convolution: stride-1, undilated, ungrouped 3×3 f32 convolutions with
//! constant weights (docs/JIT.md, "Winograd convolution").
//!
//! Each 4×4 block of output pixels (a tile) of one channel comes from a 6×6 block of the
//! zero-padded input: `Y = Aᵀ [Σ_c (G g G^T) ⊙ (Bᵀ d B)] A`. With `ξ` the 36 positions of the
//! 6×6 transformed tile:
//! - the weights are transformed at compile time into `U[ξ] [M, C]` (rodata, `f64` arithmetic
//!   rounded once to f32);
//! - the input transform writes `V[ξ] [C, tiles]`, four horizontally adjacent tiles per `F32X4`:
//!   the column transform runs on contiguous row vectors, a 4×4 lane transpose (four unpacks)
//!   and two lane shifts give each tile column, then the row transform;
//! - 36 GEMMs `Mξ [M, tiles] = U[ξ] · V[ξ]` on the module's GEMM kernels (`gemm::emit`: the
//!   full-width micro-kernels where the target has them), 4× fewer multiply-adds than the
//!   direct convolution;
//! - the output transform reads `Mξ` four tiles per vector, adds the bias, transposes back to
//!   pixel order and applies the fused epilogue (residual, activation) as it stores; edge tiles
//!   store only their pixels inside the output.
//!
//! Tiles are processed in blocks of whole tile rows, so `V` and `M` of a block stay in L2
//! ([`block_rows`]). Each task first copies the input rows its tiles read into a zero-padded
//! scratch (rows `16·⌈tiles/4⌉ + 4` floats wide, so every group of four tiles reads whole vectors
//! inside it); the transform of a last, partial group of four tiles writes columns beyond the
//! tile row, which the following tile row, channel or the slack after each `ξ` matrix absorbs
//! (written before anything reads them), and its outputs are not stored.
//!
//! Threads: tasks split the tile rows when every task keeps at least [`MIN_TILES`] tiles,
//! otherwise the output channels (each task then transforms the whole input itself).
//!
//! The cost rule ([`plan`]) is in docs/JIT.md; the results differ from the direct convolution by
//! rounding only (tested against the interpreter with a relative tolerance of 1e-4).

use crate::jit::context::KernelContext;
use crate::jit::emit::Emitter;
use crate::jit::kernels::epilogue::OutputEpilogue;
use crate::jit::kernels::gemm;
use crate::jit::kernels::window::Window;
use crate::jit::options::JitOptions;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use std::ops::Range;

/// Side of the input tile (output tile 4 + kernel 3 − 1) and number of transformed positions.
const T: usize = 6;
const XI: usize = T * T;

/// Input transform `Bᵀ` of F(4, 3) (interpolation points 0, ±1, ±2, ∞).
const BT: [[f32; T]; T] = [
    [4., 0., -5., 0., 1., 0.],
    [0., -4., -4., 1., 1., 0.],
    [0., 4., -4., -1., 1., 0.],
    [0., -2., -1., 2., 1., 0.],
    [0., 2., -1., -2., 1., 0.],
    [0., 4., 0., -5., 0., 1.],
];

/// Output transform `Aᵀ` of F(4, 3).
const AT: [[f32; T]; 4] = [
    [1., 1., 1., 1., 1., 0.],
    [0., 1., -1., 2., -2., 0.],
    [0., 1., 1., 4., 4., 0.],
    [0., 1., -1., 8., -8., 1.],
];

/// Weight transform `G` of F(4, 3).
const G: [[f64; 3]; T] = [
    [1. / 4., 0., 0.],
    [-1. / 6., -1. / 6., -1. / 6.],
    [-1. / 6., 1. / 6., -1. / 6.],
    [1. / 24., 1. / 12., 1. / 6.],
    [1. / 24., -1. / 12., 1. / 6.],
    [0., 0., 1.],
];

/// Fewest tiles per task for the tile-row split, and half the fewest per block: narrower GEMMs
/// leave most of a vector of the micro-kernels' B panels empty.
pub(super) const MIN_TILES: usize = 16;
/// Fewest output pixels (per channel, all images): the transformed weights are 4× the direct
/// ones and are read once per inference, and a GEMM of fewer than four 16-column vectors of
/// tiles runs far below the kernels' peak (measured: resnet18's 14×14 layers gain, its 7×7
/// ones lose; docs/JIT.md).
const MIN_PIXELS: usize = 128;
/// Fewest input channels (the GEMMs' k; below this the input transform costs more than the
/// multiply-adds it saves: squeezenet's 16-channel expand layers lose) and output channels.
const MIN_IN_CHANNELS: usize = 32;
const MIN_OUT_CHANNELS: usize = 16;
/// Largest ratio of the tiled output area (whole 4×4 tiles) to the real one.
const MAX_TILE_WASTE: f64 = 1.5;

/// Batch, input and output channels and groups of a convolution.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConvShape {
    pub n: usize,
    pub c: usize,
    pub m: usize,
    pub group: usize,
}

/// The geometry of one Winograd convolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    n: usize,
    c: usize,
    m: usize,
    ih: usize,
    iw: usize,
    oh: usize,
    ow: usize,
    /// Top and left padding.
    pt: usize,
    pl: usize,
    /// Tiles down and across.
    ty: usize,
    tx: usize,
    /// Groups of four tiles across, and the padded scratch row length (f32).
    groups: usize,
    wp: usize,
}

/// The Winograd plan of a convolution when the cost rule chooses it (docs/JIT.md): enabled in
/// `opts`, constant weights not scaled at run time, a 2-D 3×3 kernel with unit strides and
/// dilations and one group, at least [`MIN_IN_CHANNELS`] input and [`MIN_OUT_CHANNELS`] output
/// channels, at least [`MIN_PIXELS`] output pixels, and whole tiles covering at most [`MAX_TILE_WASTE`] times the output.
pub(super) fn plan(
    shape: ConvShape,
    w: &Window,
    constant_weights: bool,
    opts: &JitOptions,
) -> Option<Plan> {
    let geo = shape;
    let eligible = opts.winograd
        && constant_weights
        && w.kernel == [3, 3]
        && w.strides == [1, 1]
        && w.dilations == [1, 1]
        && geo.group == 1
        && geo.c >= MIN_IN_CHANNELS
        && geo.m >= MIN_OUT_CHANNELS;
    if !eligible {
        return None;
    }
    let (oh, ow) = (w.out_sp[0], w.out_sp[1]);
    let (ty, tx) = (oh.div_ceil(4), ow.div_ceil(4));
    let waste = (16 * ty * tx) as f64 / (oh * ow).max(1) as f64;
    if geo.n * oh * ow < MIN_PIXELS || waste > MAX_TILE_WASTE {
        return None;
    }
    let groups = tx.div_ceil(4);
    Some(Plan {
        n: geo.n,
        c: geo.c,
        m: geo.m,
        ih: w.in_sp[0],
        iw: w.in_sp[1],
        oh,
        ow,
        pt: w.pads[0].0,
        pl: w.pads[1].0,
        ty,
        tx,
        groups,
        wp: 16 * groups + 4,
    })
}

/// Each task's tile rows and output channels.
fn split(p: &Plan, tasks: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let tasks = tasks.max(1);
    if tasks <= p.ty && (p.ty / tasks) * p.tx >= MIN_TILES {
        gemm::split_rows_by(1, p.ty, tasks)
            .into_iter()
            .map(|r| (r, 0..p.m))
            .collect()
    } else {
        gemm::split_rows_by(1, p.m, tasks)
            .into_iter()
            .map(|c| (0..p.ty, c))
            .collect()
    }
}

/// Tile rows per block: the block's `V` and `M` within twice `JitOptions::im2col_block_bytes`,
/// but at least two 16-tile vectors of GEMM columns where the task has the rows.
fn block_rows(p: &Plan, rows: usize, chans: usize, opts: &JitOptions) -> usize {
    let per_row = XI * (p.c + chans) * p.tx * 4;
    let by_budget = 2 * opts.im2col_block_bytes / per_row.max(1);
    by_budget
        .max((2 * MIN_TILES).div_ceil(p.tx))
        .clamp(1, rows.max(1))
}

/// Whether the block's GEMMs pack their B (`V[ξ]`) first: the rule of the im2col convolution.
fn packs_v(p: &Plan, chans: usize) -> bool {
    p.c >= 192 && chans >= 128
}

/// The scratch layout of one task.
struct TaskScratch {
    /// Bytes of the padded input, `V`, `M`, and the packed B of one GEMM.
    padded: usize,
    v: usize,
    m: usize,
    packed: usize,
}

impl TaskScratch {
    fn of(p: &Plan, rows: usize, chans: usize, opts: &JitOptions) -> TaskScratch {
        let nb = block_rows(p, rows, chans, opts) * p.tx;
        TaskScratch {
            padded: p.c * (4 * rows + 2) * p.wp * 4,
            v: XI * v_stride(p, nb) * 4,
            m: XI * m_stride(chans, nb) * 4,
            packed: if packs_v(p, chans) {
                gemm::packed_b_bound(p.c, nb) * 4
            } else {
                0
            },
        }
    }
    fn total(&self) -> usize {
        self.padded + self.v + self.m + self.packed
    }
}

/// f32 between consecutive `V[ξ]` / `Mξ` matrices of a block of `nb` tiles: the matrix plus the
/// slack a last partial group of four tiles writes into.
fn v_stride(p: &Plan, nb: usize) -> usize {
    p.c * nb + 4
}
fn m_stride(chans: usize, nb: usize) -> usize {
    chans * nb + 4
}

fn task_bytes(p: &Plan, tasks: usize, opts: &JitOptions) -> usize {
    split(p, tasks)
        .iter()
        .map(|(r, c)| TaskScratch::of(p, r.len(), c.len(), opts).total())
        .max()
        .unwrap_or(0)
}

/// Scratch bytes of all `tasks` tasks.
pub(super) fn scratch_bytes(p: &Plan, tasks: usize, opts: &JitOptions) -> usize {
    task_bytes(p, tasks, opts) * tasks.max(1)
}

/// `U[ξ][m][c]` from weights `[M, C, 3, 3]`.
pub(super) fn transform_weights(w: &[f32], m: usize, c: usize) -> Vec<f32> {
    let mut u = vec![0f32; XI * m * c];
    for o in 0..m {
        for i in 0..c {
            let g = &w[(o * c + i) * 9..(o * c + i) * 9 + 9];
            // G g: 6×3.
            let mut gg = [[0f64; 3]; T];
            for (r, row) in gg.iter_mut().enumerate() {
                for (col, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|a| G[r][a] * g[a * 3 + col] as f64).sum();
                }
            }
            for r in 0..T {
                for s in 0..T {
                    let v: f64 = (0..3).map(|b| gg[r][b] * G[s][b]).sum();
                    u[((r * T + s) * m + o) * c + i] = v as f32;
                }
            }
        }
    }
    u
}

/// Emits the convolution `p` (input `x`, rodata `u` from [`transform_weights`], optional bias,
/// output `out`) for task `t` of `tasks`, with this node's `scratch`.
#[allow(clippy::too_many_arguments)]
pub(super) fn lower(
    e: &mut Emitter,
    k: &KernelContext,
    p: &Plan,
    x: Value,
    u: Value,
    bias: Option<Value>,
    out: Value,
    post: &OutputEpilogue,
) {
    let parts = split(p, k.tasks);
    let stride = task_bytes(p, k.tasks, k.opts);
    let scratch = k
        .scratch
        .expect("scratch_bytes reserves the Winograd buffers");
    k.for_task(e, |e, t| {
        let Some((rows, chans)) = parts.get(t).cloned() else {
            return;
        };
        if rows.is_empty() || chans.is_empty() {
            return;
        }
        let sc = e.addr(scratch, (t * stride) as i64);
        let layout = TaskScratch::of(p, rows.len(), chans.len(), k.opts);
        let nb = block_rows(p, rows.len(), chans.len(), k.opts);
        e.loop_n(p.n, |e, img| {
            let xi = e.index(x, img, (p.c * p.ih * p.iw * 4) as i64);
            let oi = e.index(out, img, (p.m * p.oh * p.ow * 4) as i64);
            let task = Task {
                p,
                rows: rows.clone(),
                chans: chans.clone(),
                padded: sc,
                v: e.addr(sc, layout.padded as i64),
                m: e.addr(sc, (layout.padded + layout.v) as i64),
                packed: (layout.packed > 0)
                    .then(|| e.addr(sc, (layout.padded + layout.v + layout.m) as i64)),
                u: e.addr(u, (chans.start * p.c * 4) as i64),
                bias: bias.map(|b| e.addr(b, (chans.start * 4) as i64)),
                out: e.addr(oi, (chans.start * p.oh * p.ow * 4) as i64),
                post,
            };
            pad_input(e, &task, xi);
            task.blocks(e, nb);
        });
    });
}

/// One task's part of one image: tile rows `rows` (absolute), output channels `chans`.
struct Task<'a> {
    p: &'a Plan,
    rows: Range<usize>,
    chans: Range<usize>,
    /// Scratch: the padded input rows, `V`, `M`, the packed B of one GEMM.
    padded: Value,
    v: Value,
    m: Value,
    packed: Option<Value>,
    /// `U[0][chans.start]`, `bias[chans.start]`, `out[chans.start]` of this image.
    u: Value,
    bias: Option<Value>,
    out: Value,
    post: &'a OutputEpilogue,
}

impl Task<'_> {
    /// Padded rows of one channel.
    fn padded_rows(&self) -> usize {
        4 * self.rows.len() + 2
    }

    /// The blocks of `nb` tile rows: the full ones that do not hold the image's partial last
    /// tile row in one loop, the others each specialised.
    fn blocks(&self, e: &mut Emitter, nb: usize) {
        let p = self.p;
        let len = self.rows.len();
        let partial_last = !p.oh.is_multiple_of(4) && self.rows.end == p.ty;
        let mut uniform = len / nb;
        if partial_last && uniform * nb == len {
            uniform -= 1;
        }
        if uniform > 0 {
            e.loop_n(uniform, |e, b| {
                let first = e.fb.ins().imul_imm_s(b, nb as i64);
                self.block(e, first, nb, false);
            });
        }
        let mut first = uniform * nb;
        while first < len {
            let count = nb.min(len - first);
            let last = first + count == len;
            let f = e.iconst(first as i64);
            self.block(e, f, count, last && partial_last);
            first += count;
        }
    }

    /// One block: `count` tile rows from local tile row `first` (I64); the last of them is the
    /// image's partial last tile row when `partial_last`.
    fn block(&self, e: &mut Emitter, first: Value, count: usize, partial_last: bool) {
        let p = self.p;
        let nb = count * p.tx;
        let (vs, ms) = (v_stride(p, nb), m_stride(self.chans.len(), nb));
        let pad = e.index(self.padded, first, (4 * p.wp * 4) as i64);
        input_transform(e, p, pad, self.padded_rows(), self.v, count, vs);
        self.gemms(e, nb, vs, ms);
        let out_row = e.index(self.out, first, (4 * p.ow * 4) as i64);
        let out_row = e.addr(out_row, (self.rows.start * 4 * p.ow * 4) as i64);
        self.output_transform(e, out_row, count, partial_last, ms);
    }

    fn gemms(&self, e: &mut Emitter, nb: usize, vs: usize, ms: usize) {
        let (c, mc) = (self.p.c, self.chans.len());
        let full_m = self.p.m;
        e.loop_n(XI, |e, xi| {
            let a = e.index(self.u, xi, (full_m * c * 4) as i64);
            let b = e.index(self.v, xi, (vs * 4) as i64);
            let cm = e.index(self.m, xi, (ms * 4) as i64);
            let bop = match self.packed {
                Some(scratch) => gemm::BOperand::PackedInto {
                    b,
                    ldb: nb,
                    scratch,
                },
                None => gemm::BOperand::InPlace { b, ldb: nb },
            };
            gemm::emit(e, a, c, bop, cm, nb, mc, nb, c, None);
        });
    }

    /// `out[co] = epilogue(Aᵀ Mξ A + bias)` for every channel of the task and the block's tile
    /// rows (`out_row`: the block's first output row of channel `chans.start`).
    fn output_transform(
        &self,
        e: &mut Emitter,
        out_row: Value,
        count: usize,
        partial_last: bool,
        ms: usize,
    ) {
        let p = self.p;
        let nb = count * p.tx;
        let full_rows = count - partial_last as usize;
        let last_rows = p.oh - 4 * (p.ty - 1);
        let full_groups = p.ow / 16;
        let tail_cols = p.ow % 16;
        e.hoisting_constants(|e| {
            e.loop_n(self.chans.len(), |e, co| {
                let mco = e.index(self.m, co, (nb * 4) as i64);
                let oco = e.index(out_row, co, (p.oh * p.ow * 4) as i64);
                let b = self.bias.map(|bp| {
                    let a = e.index(bp, co, 4);
                    let s = e.load(types::F32, a, 0);
                    e.fb.ins().splat(types::F32X4, s)
                });
                let tile_row = |e: &mut Emitter, mrow: Value, orow: Value, rows: usize| {
                    e.loop_n(full_groups, |e, g| {
                        let mg = e.index(mrow, g, 16);
                        let og = e.index(orow, g, 64);
                        self.output_group(e, mg, og, ms, b, rows, 16);
                    });
                    if tail_cols > 0 {
                        let mg = e.addr(mrow, (full_groups * 16) as i64);
                        let og = e.addr(orow, (full_groups * 64) as i64);
                        self.output_group(e, mg, og, ms, b, rows, tail_cols);
                    }
                };
                e.loop_n(full_rows, |e, tr| {
                    let mrow = e.index(mco, tr, (p.tx * 4) as i64);
                    let orow = e.index(oco, tr, (4 * p.ow * 4) as i64);
                    tile_row(e, mrow, orow, 4);
                });
                if partial_last {
                    let mrow = e.addr(mco, (full_rows * p.tx * 4) as i64);
                    let orow = e.addr(oco, (full_rows * 4 * p.ow * 4) as i64);
                    tile_row(e, mrow, orow, last_rows);
                }
            });
        });
    }

    /// Four tiles of one channel: `m` at `Mξ` of the first tile, `o` its first output pixel;
    /// stores the first `rows` rows and `cols` columns of the 4×16 pixels.
    #[allow(clippy::too_many_arguments)]
    fn output_group(
        &self,
        e: &mut Emitter,
        m: Value,
        o: Value,
        ms: usize,
        bias: Option<Value>,
        rows: usize,
        cols: usize,
    ) {
        let ow = self.p.ow;
        for (r, at) in AT.iter().enumerate().take(rows) {
            // s[j] = Σ_i Aᵀ[r][i] m[i][j], then y[q] = Σ_j Aᵀ[q][j] s[j]: vectors over 4 tiles.
            let s: Vec<Value> = (0..T)
                .map(|j| {
                    let terms: Vec<(f32, Value)> = (0..T)
                        .filter(|&i| at[i] != 0.0)
                        .map(|i| {
                            let off = (((i * T + j) * ms) * 4) as i32;
                            (at[i], e.load(types::F32X4, m, off))
                        })
                        .collect();
                    lincomb(e, &terms)
                })
                .collect();
            let y: Vec<Value> = AT
                .iter()
                .map(|aq| {
                    let terms: Vec<(f32, Value)> = (0..T)
                        .filter(|&j| aq[j] != 0.0)
                        .map(|j| (aq[j], s[j]))
                        .collect();
                    let v = lincomb(e, &terms);
                    match bias {
                        Some(b) => e.fb.ins().fadd(v, b),
                        None => v,
                    }
                })
                .collect();
            let px = transpose4(e, [y[0], y[1], y[2], y[3]]);
            for (t, &v) in px.iter().enumerate() {
                let valid = cols.saturating_sub(4 * t).min(4);
                let off = ((r * ow + 4 * t) * 4) as i32;
                if valid == 4 {
                    let v = self.post.finish(e, v, types::F32X4, o, off);
                    e.store(v, o, off);
                } else {
                    for l in 0..valid {
                        let s = e.fb.ins().extractlane(v, l as u8);
                        let off = off + (l * 4) as i32;
                        let s = self.post.finish(e, s, types::F32, o, off);
                        e.store(s, o, off);
                    }
                }
            }
        }
    }
}

/// Copies the input rows the task's tiles read into its padded scratch: channel by channel,
/// `4·rows + 2` rows of `wp` f32, the input row at column `pl`, zeros around it and in rows
/// outside the input.
fn pad_input(e: &mut Emitter, t: &Task, x: Value) {
    let p = t.p;
    let prows = t.padded_rows();
    let first_in = (4 * t.rows.start) as i64 - p.pt as i64;
    let inside = |r: usize| {
        let iy = first_in + r as i64;
        iy >= 0 && iy < p.ih as i64
    };
    let (a, b) = match (0..prows).find(|&r| inside(r)) {
        Some(a) => (a, (a..prows).take_while(|&r| inside(r)).count() + a),
        None => (prows, prows),
    };
    let right = p.wp - p.pl - p.iw;
    e.hoisting_constants(|e| {
        e.loop_n(p.c, |e, ci| {
            let dst = e.index(t.padded, ci, (prows * p.wp * 4) as i64);
            let src = e.index(x, ci, (p.ih * p.iw * 4) as i64);
            for r in (0..a).chain(b..prows) {
                let row = e.addr(dst, (r * p.wp * 4) as i64);
                e.fill_f32(row, p.wp, 0.0);
            }
            e.loop_n(b - a, |e, i| {
                let row = e.index(dst, i, (p.wp * 4) as i64);
                let row = e.addr(row, (a * p.wp * 4) as i64);
                let from = e.index(src, i, (p.iw * 4) as i64);
                let from = e.addr(from, (first_in + a as i64) * (p.iw * 4) as i64);
                e.fill_f32(row, p.pl, 0.0);
                let mid = e.addr(row, (p.pl * 4) as i64);
                e.memcpy(mid, from, p.iw * 4);
                let end = e.addr(row, ((p.pl + p.iw) * 4) as i64);
                e.fill_f32(end, right, 0.0);
            });
        });
    });
}

/// `V[ξ][c][tile] = (Bᵀ d B)[ξ]` for every channel and the `count` tile rows whose padded input
/// starts at `pad` (channel 0; channels `prows` rows apart), `vs` f32 between the `V[ξ]`.
fn input_transform(
    e: &mut Emitter,
    p: &Plan,
    pad: Value,
    prows: usize,
    v: Value,
    count: usize,
    vs: usize,
) {
    let nb = count * p.tx;
    e.hoisting_constants(|e| {
        e.loop_n(p.c, |e, ci| {
            let pc = e.index(pad, ci, (prows * p.wp * 4) as i64);
            let vc = e.index(v, ci, (nb * 4) as i64);
            e.loop_n(count, |e, tr| {
                let prow = e.index(pc, tr, (4 * p.wp * 4) as i64);
                let vrow = e.index(vc, tr, (p.tx * 4) as i64);
                e.loop_n(p.groups, |e, g| {
                    let d = e.index(prow, g, 64);
                    let o = e.index(vrow, g, 16);
                    input_group(e, p.wp, d, o, vs);
                });
            });
        });
    });
}

/// The input transform of four adjacent tiles: `d` their top-left padded input value (rows `wp`
/// f32 apart), `o` their column in `V[0][c]`.
fn input_group(e: &mut Emitter, wp: usize, d: Value, o: Value, vs: usize) {
    for (i, bt) in BT.iter().enumerate() {
        // t[x] = Σ_r Bᵀ[i][r] d[r][x] over the 20 columns the four tiles read (5 vectors).
        let t: Vec<Value> = (0..5)
            .map(|vx| {
                let terms: Vec<(f32, Value)> = (0..T)
                    .filter(|&r| bt[r] != 0.0)
                    .map(|r| {
                        let off = ((r * wp + 4 * vx) * 4) as i32;
                        (bt[r], e.load(types::F32X4, d, off))
                    })
                    .collect();
                lincomb(e, &terms)
            })
            .collect();
        // col[j] lane k = t[4k + j]: a transpose of the first four vectors, then shifts.
        let [c0, c1, c2, c3] = transpose4(e, [t[0], t[1], t[2], t[3]]);
        let c4 = e.shuffle_f32x4(c0, t[4], [1, 2, 3, 4]);
        let c5 = e.shuffle_f32x4(c1, t[4], [1, 2, 3, 5]);
        let col = [c0, c1, c2, c3, c4, c5];
        for (j, bj) in BT.iter().enumerate() {
            let terms: Vec<(f32, Value)> = (0..T)
                .filter(|&x| bj[x] != 0.0)
                .map(|x| (bj[x], col[x]))
                .collect();
            let r = lincomb(e, &terms);
            e.store(r, o, (((i * T + j) * vs) * 4) as i32);
        }
    }
}

/// The 4×4 transpose of four `F32X4` rows.
fn transpose4(e: &mut Emitter, r: [Value; 4]) -> [Value; 4] {
    let t0 = e.shuffle_f32x4(r[0], r[1], [0, 4, 1, 5]);
    let t1 = e.shuffle_f32x4(r[2], r[3], [0, 4, 1, 5]);
    let t2 = e.shuffle_f32x4(r[0], r[1], [2, 6, 3, 7]);
    let t3 = e.shuffle_f32x4(r[2], r[3], [2, 6, 3, 7]);
    [
        e.shuffle_f32x4(t0, t1, [0, 1, 4, 5]),
        e.shuffle_f32x4(t0, t1, [2, 3, 6, 7]),
        e.shuffle_f32x4(t2, t3, [0, 1, 4, 5]),
        e.shuffle_f32x4(t2, t3, [2, 3, 6, 7]),
    ]
}

/// `Σ coeff · value` over `F32X4` values (at least one term): ±1 as additions and subtractions,
/// other coefficients as multiply-adds.
fn lincomb(e: &mut Emitter, terms: &[(f32, Value)]) -> Value {
    let mut acc: Option<Value> = None;
    // Start from a +1 term when there is one, so no negation or multiply is needed first.
    let mut order: Vec<&(f32, Value)> = terms.iter().collect();
    order.sort_by_key(|(c, _)| *c != 1.0);
    for &&(c, v) in &order {
        acc = Some(match acc {
            None if c == 1.0 => v,
            None => {
                let k = e.fconst(types::F32X4, c);
                e.fb.ins().fmul(v, k)
            }
            Some(a) if c == 1.0 => e.fb.ins().fadd(a, v),
            Some(a) if c == -1.0 => e.fb.ins().fsub(a, v),
            Some(a) => {
                let k = e.fconst(types::F32X4, c);
                e.fma(v, k, a)
            }
        });
    }
    acc.expect("a linear combination of at least one term")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The F(4, 3) identity on one tile: `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` is the 4×4 correlation.
    #[test]
    fn transforms_compute_a_tile_of_the_correlation() {
        let g: Vec<f32> = (0..9).map(|i| (i as f32 * 0.37).sin()).collect();
        let d: Vec<f32> = (0..36).map(|i| (i as f32 * 0.71).cos()).collect();
        let u = transform_weights(&g, 1, 1);
        let bt = |i: usize, r: usize| BT[i][r] as f64;
        let mut v = [[0f64; T]; T];
        for (i, row) in v.iter_mut().enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                for r in 0..T {
                    for s in 0..T {
                        *x += bt(i, r) * d[r * T + s] as f64 * bt(j, s);
                    }
                }
            }
        }
        for y in 0..4 {
            for x in 0..4 {
                let mut got = 0f64;
                for i in 0..T {
                    for j in 0..T {
                        got += AT[y][i] as f64 * u[i * T + j] as f64 * v[i][j] * AT[x][j] as f64;
                    }
                }
                let want: f64 = (0..3)
                    .flat_map(|a| (0..3).map(move |b| (a, b)))
                    .map(|(a, b)| g[a * 3 + b] as f64 * d[(y + a) * T + x + b] as f64)
                    .sum();
                assert!((got - want).abs() < 1e-5, "({y},{x}): {got} vs {want}");
            }
        }
    }
}
