//! `fold-qdq`: turns quantize-dequantize (QDQ) islands into integer ops, as onnxruntime's QDQ
//! transformer does, so quantized models run on integer kernels (docs/QUANTIZATION.md).
//!
//! A value `dq(xq, s, z)` is `DequantizeLinear` of an 8-bit `xq` with constant per-tensor scale
//! `s` and zero point `z`; `q(y, s, z)` the `QuantizeLinear` to an 8-bit type. Matches, visiting
//! nodes in order:
//! - `q(conv(dq(xq, s_x, z_x), dq(wq, s_w, 0), [b]), s_y, z_y)`, optionally with a Relu or Clip
//!   (unary, constant bounds) between the conv and the `q`, where `wq` is a constant i8 with
//!   per-tensor or per-output-channel (axis 0) scales and zero points 0, and the bias `b` is
//!   `dq(bq: i32, s_b, 0)` with `s_b` equal to `s_x·s_w` (relative 1e-4) or a float constant
//!   (quantized here, `round_half_even(b / (s_x·s_w[c]))`): becomes the quantized conv
//!   `conv(xq, wq, bq)` with `x_zero_point = z_x` and a requantization by
//!   `s_x·s_w[c] / s_y` to `q`'s type, its bounds narrowed by the activation;
//! - `q(add(dq(a, s_a, z_a), dq(b, s_b, z_b)), s_y, z_y)`, optionally with a Relu or Clip:
//!   `quantized_add(a, b)` with ratios `s_a / s_y`, `s_b / s_y` (f32, as onnxruntime's QLinearAdd);
//! - `q(mul(dq(a, s_a, z_a), dq(b, s_b, z_b)), s_y, z_y)`, optionally with a Relu or Clip:
//!   `quantized_mul(a, b)` with ratio `s_a · s_b / s_y` (f32, as onnxruntime's QLinearMul);
//! - `q(average_pool(dq(x, s_x, z_x)), s_y, z_y)` and the same for `global_average_pool`,
//!   optionally with a Relu or Clip: `quantized_average_pool(x)` (`quantized_global_average_pool`);
//! - `q(concat(dq(x_1), .., dq(x_n)), s_y, z_y)`: `concat` of the 8-bit inputs, each input whose
//!   parameters differ from `q`'s first moved to them by a `requantize` node (exact: it is
//!   `q(dq(x_i))`);
//! - the same for `gemm` (A the data, B the constant weights with scales along N, C the bias;
//!   no `trans_a`; `alpha` scales the requantization, `beta / alpha` a float C, a quantized C
//!   needs `beta = alpha`), and `matmul` of a 2-D data input by constant 2-D weights
//!   (as a gemm);
//! - `q(op(dq(xq, s, z)), s, z)` for data movement and max pooling (`reshape`, `flatten`,
//!   `squeeze`, `unsqueeze`, `transpose`, `identity`, `max_pool`, `global_max_pool`) with the same
//!   parameters on both sides: `op(xq)` — exact, these ops commute with the affine map;
//! - `q(dq(xq, s, z), s, z)` with equal parameters and dtypes: `xq` (a redundant pair); with
//!   other parameters, `requantize(xq)` (exact).
//! - `cast<i32>(conv|matmul(dq(xq, 1, z), dq(wq, 1, 0)))` (imported ConvInteger/MatMulInteger):
//!   the exact integer op with i32 accumulators (`passes/src/fold_integer.rs`).
//!
//! Anything else stays as it is: ops without an integer form keep computing in float between a
//! dequantize and a quantize. Integer ops differ from the float computation they replace by
//! rounding (at most one output step in practice), so golden cases mark numerics as changed.
//!
//! The requantizations it makes have the mode of option `requant` (`float`, the default:
//! onnxruntime's f32 multiply, so that models quantized elsewhere give onnxruntime's integers;
//! `fixed_point`: TFLite's fixed-point multiply, what the `int8` pipeline uses for the models
//! Kestrel quantizes). The multiplier is computed as the mode's convention does: `float` in f32 as
//! onnxruntime does, `(s_x · s_w[c]) / s_y`; `fixed_point` in f64 from the f32 scales.

use crate::registry::Options;
use crate::util::{node_label, ConstNames};
use crate::{Pass, PassContext, PassError};
use kestrel_ir::{
    BinaryOp, ConvAttrs, DType, GemmAttrs, Graph, IntegerAttrs, NodeId, Op, PoolKind,
    QuantizedMulAttrs, QuantizedPoolAttrs, Requant, RequantMode, RequantizeAttrs, Tensor, UnaryOp,
    ValueId, F32,
};

pub struct FoldQdq {
    /// The mode of every requantization the pass makes.
    pub mode: RequantMode,
}

impl Default for FoldQdq {
    fn default() -> Self {
        FoldQdq {
            mode: RequantMode::Float,
        }
    }
}

impl FoldQdq {
    /// Option `requant=float|fixed_point` (default `float`).
    pub(crate) fn from_options(opts: &Options) -> Result<Self, PassError> {
        let mode = match opts.get::<String>("requant")? {
            None => RequantMode::Float,
            Some(name) => RequantMode::from_name(&name).ok_or_else(|| PassError::BadOption {
                pass: "fold-qdq".to_string(),
                reason: format!("option requant={name}: expected float or fixed_point"),
            })?,
        };
        Ok(FoldQdq { mode })
    }
}

/// A constant, per-tensor quantization: `(scale, zero point, dtype)` of an 8-bit value.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Params {
    scale: f32,
    zero_point: i32,
    dtype: DType,
}

fn is_int8(dt: DType) -> bool {
    matches!(dt, DType::U8 | DType::I8)
}

/// The scalar constant `v` as f32 / i32.
fn scalar_f32(g: &Graph, v: ValueId) -> Option<f32> {
    let t = g.const_data(v)?;
    (t.numel() == 1 && t.dtype() == DType::F32).then(|| t.to_f32_vec()[0])
}

fn zero_point_of(g: &Graph, node: &kestrel_ir::Node, dtype: DType) -> Option<i32> {
    match node.inputs.get(2) {
        None => Some(0),
        Some(&z) => {
            let t = g.const_data(z)?;
            (t.numel() == 1 && t.dtype() == dtype).then(|| t.to_i64_vec()[0] as i32)
        }
    }
}

/// `(xq, params)` when `v = dequantize_linear(xq, s, z)` per tensor with constants.
fn dequantized(g: &Graph, v: ValueId) -> Option<(ValueId, Params)> {
    let node = g.node(g.producer(v)?);
    let Op::DequantizeLinear { .. } = node.op else {
        return None;
    };
    let xq = node.inputs[0];
    let dtype = g.ty(xq).dtype;
    if !is_int8(dtype) {
        return None;
    }
    let scale = scalar_f32(g, node.inputs[1])?;
    let zero_point = zero_point_of(g, node, dtype)?;
    Some((
        xq,
        Params {
            scale,
            zero_point,
            dtype,
        },
    ))
}

/// `(y, params)` when node `id` is `quantize_linear(y, s, z)` per tensor to an 8-bit type.
fn quantized(g: &Graph, id: NodeId) -> Option<(ValueId, Params)> {
    let node = g.node(id);
    let Op::QuantizeLinear { to, .. } = node.op else {
        return None;
    };
    if !is_int8(to) {
        return None;
    }
    let scale = scalar_f32(g, node.inputs[1])?;
    let zero_point = zero_point_of(g, node, to)?;
    Some((
        node.inputs[0],
        Params {
            scale,
            zero_point,
            dtype: to,
        },
    ))
}

/// A constant i8 weight `dq(wq, s_w[..], 0)`: `(wq, scales)`, with `axis` the channel axis the
/// scales run along when there is more than one.
fn weights(g: &Graph, v: ValueId, axis: usize) -> Option<(ValueId, Vec<f32>)> {
    let node = g.node(g.producer(v)?);
    let Op::DequantizeLinear { axis: dq_axis } = node.op else {
        return None;
    };
    let wq = node.inputs[0];
    let w = g.const_data(wq)?;
    if w.dtype() != DType::I8 {
        return None;
    }
    let s = g.const_data(node.inputs[1])?;
    if s.dtype() != DType::F32 {
        return None;
    }
    let scales = s.to_f32_vec();
    if scales.len() > 1 {
        let rank = w.dims().len() as i64;
        let a = if dq_axis < 0 { dq_axis + rank } else { dq_axis };
        if a != axis as i64 || w.dims().get(axis) != Some(&scales.len()) {
            return None;
        }
    }
    if let Some(&z) = node.inputs.get(2) {
        let zt = g.const_data(z)?;
        if zt.to_i64_vec().iter().any(|&v| v != 0) {
            return None;
        }
    }
    (!scales.is_empty() && scales.iter().all(|s| s.is_finite() && *s > 0.0)).then_some((wq, scales))
}

/// The bias as i32 at scale `s_x · s_w[c]`: a `dq(bq: i32, s_b, 0)` whose scales match, or a
/// float constant quantized here.
fn bias(g: &Graph, v: ValueId, sx: f32, sw: &[f32], n: usize) -> Option<Tensor> {
    scaled_bias(g, v, sx, sw, n, 1.0)
}

/// [`bias`] for a gemm computing `alpha · A·B + beta · C`: with the accumulators at
/// `alpha · s_x · s_w[c]`, a float `C` enters as `round_half_even(ratio · C / (s_x · s_w[c]))`,
/// `ratio = beta / alpha`; a quantized one only when `ratio` is 1.
fn scaled_bias(g: &Graph, v: ValueId, sx: f32, sw: &[f32], n: usize, ratio: f64) -> Option<Tensor> {
    let scale = |c: usize| sx as f64 * sw[if sw.len() == 1 { 0 } else { c }] as f64;
    if let Some(t) = g.const_data(v) {
        if t.dtype() != DType::F32 || t.numel() != n {
            return None;
        }
        let q: Vec<i32> = t
            .to_f32_vec()
            .iter()
            .enumerate()
            .map(|(c, &b)| {
                let r = (ratio * b as f64 / scale(c)).round_ties_even();
                r.clamp(i32::MIN as f64, i32::MAX as f64) as i32
            })
            .collect();
        return Some(Tensor::from_vec(vec![n], q));
    }
    let node = g.node(g.producer(v)?);
    let Op::DequantizeLinear { .. } = node.op else {
        return None;
    };
    if ratio != 1.0 {
        return None;
    }
    let bq = g.const_data(node.inputs[0])?;
    if bq.dtype() != DType::I32 || bq.numel() != n {
        return None;
    }
    let sb = g.const_data(node.inputs[1])?.to_f32_vec();
    if let Some(&z) = node.inputs.get(2) {
        if g.const_data(z)?.to_i64_vec().iter().any(|&v| v != 0) {
            return None;
        }
    }
    let ok = (0..n).all(|c| {
        let want = scale(c);
        let got = sb[if sb.len() == 1 { 0 } else { c }] as f64;
        sb.len() == 1 || sb.len() == n && (got - want).abs() <= 1e-4 * want
    }) && (sb.len() == n || sw.len() == 1);
    ok.then(|| Tensor::from_vec(vec![n], bq.to_i64_vec().iter().map(|&v| v as i32).collect()))
}

/// The requantization of accumulators at `s_x · s_w[c]` to `y`, with the activation's bounds.
/// The output bounds of `y`'s type narrowed by a folded activation, or `None` when the
/// activation has no integer form or leaves no value.
fn bounds(y: Params, act: Option<UnaryOp>) -> Option<(i32, i32)> {
    let (lo, hi) = kestrel_ir::quant::range_of(y.dtype)?;
    let level = |r: f32| (r as f64 / y.scale as f64).round_ties_even() as i64 + y.zero_point as i64;
    let (mut min, mut max) = (lo as i64, hi as i64);
    match act {
        None => {}
        Some(UnaryOp::Relu) => min = min.max(y.zero_point as i64),
        Some(UnaryOp::Clip { min: a, max: b }) => {
            min = min.max(level(a.0));
            max = max.min(level(b.0));
        }
        Some(_) => return None,
    }
    (min <= max).then_some((min as i32, max as i32))
}

fn requant(
    mode: RequantMode,
    sx: f32,
    sw: &[f32],
    y: Params,
    act: Option<UnaryOp>,
) -> Option<Requant> {
    scaled_requant(mode, sx, sw, 1.0, y, act)
}

/// [`requant`] of accumulators at `alpha · s_x · s_w[c]` (a gemm's `alpha`; with `alpha = 1`
/// the float mode computes `s_x · s_w / s_y` in f32 as onnxruntime does).
fn scaled_requant(
    mode: RequantMode,
    sx: f32,
    sw: &[f32],
    alpha: f64,
    y: Params,
    act: Option<UnaryOp>,
) -> Option<Requant> {
    let (min, max) = bounds(y, act)?;
    let multiplier: Vec<F32> = sw
        .iter()
        .map(|&s| match mode {
            RequantMode::Float if alpha == 1.0 => F32(sx * s / y.scale),
            RequantMode::Float => F32(alpha as f32 * sx * s / y.scale),
            RequantMode::FixedPoint => F32((alpha * sx as f64 * s as f64 / y.scale as f64) as f32),
        })
        .collect();
    if multiplier
        .iter()
        .any(|m| kestrel_ir::quant::quantize_multiplier(m.0).is_none())
    {
        return None;
    }
    Some(Requant {
        to: y.dtype,
        multiplier,
        scale: F32(y.scale),
        zero_point: y.zero_point,
        min,
        max,
        mode,
    })
}

/// `requantize` from `x`'s parameters to `y`'s: exactly `q(dq(x))`.
fn requantization(x: Params, y: Params) -> RequantizeAttrs {
    RequantizeAttrs {
        x_scale: F32(x.scale),
        x_zero_point: x.zero_point,
        to: y.dtype,
        scale: F32(y.scale),
        zero_point: y.zero_point,
    }
}

/// What replaces a quantize node's output: an existing 8-bit value, or the output of a new node
/// (op and inputs) applied to one.
enum Movement {
    Value(ValueId),
    Node(Op, Vec<ValueId>),
}

/// An input of a replacement op: a value of the graph, a constant to add, or a value to
/// requantize first (by a new `requantize` node).
enum Input {
    Value(ValueId),
    Const(String, Tensor),
    Requantized(ValueId, RequantizeAttrs),
}

/// Whether `v` has exactly one use and is not a graph output.
fn single_use(g: &Graph, uses: &[usize], v: ValueId) -> bool {
    uses[v.index()] == 1 && !g.is_output(v)
}

/// A Relu or a Clip with constant bounds between an op and its quantize: `(its input, act)`.
fn activation_between(g: &Graph, uses: &[usize], y: ValueId) -> (ValueId, Option<UnaryOp>) {
    if let Some(p) = g.producer(y) {
        if let Op::Unary(u @ (UnaryOp::Relu | UnaryOp::Clip { .. })) = g.node(p).op {
            let x = g.node(p).inputs[0];
            if single_use(g, uses, x) {
                return (x, Some(u));
            }
        }
    }
    (y, None)
}

impl FoldQdq {
    /// The integer op replacing quantize node `q` (op, inputs), if one matches.
    fn fold_compute(
        &self,
        g: &Graph,
        names: &mut ConstNames,
        q: NodeId,
    ) -> Option<(Op, Vec<Input>)> {
        let (y, yp) = quantized(g, q)?;
        let uses = g.use_counts();
        if !single_use(g, &uses, y) {
            return None;
        }
        let (core, act) = activation_between(g, &uses, y);
        if act.is_some() && !single_use(g, &uses, core) {
            return None;
        }
        let p = g.producer(core)?;
        let node = g.node(p);
        let label = node_label(g, p);
        let mut new_bias =
            |t: Tensor| Input::Const(names.fresh(&format!("{label}.bias.quantized")), t);
        match &node.op {
            Op::Conv(a) if a.epilogue.is_none() && a.integer.is_none() => {
                let (xq, xp) = dequantized(g, node.inputs[0])?;
                let (wq, sw) = weights(g, node.inputs[1], 0)?;
                let m = g.const_data(wq)?.dims()[0];
                let r = requant(self.mode, xp.scale, &sw, yp, act)?;
                let b = match node.inputs.get(2) {
                    Some(&b) => Some(new_bias(bias(g, b, xp.scale, &sw, m)?)),
                    None => None,
                };
                let op = Op::Conv(ConvAttrs {
                    integer: Some(IntegerAttrs {
                        x_zero_point: xp.zero_point,
                        requant: Some(r),
                    }),
                    ..a.clone()
                });
                let inputs = [Input::Value(xq), Input::Value(wq)].into_iter().chain(b);
                Some((op, inputs.collect()))
            }
            // `alpha · A·B + beta · C` (onnxruntime's QGemm imports with `beta = alpha`):
            // `alpha` goes into the requantization, `beta / alpha` into a float bias.
            Op::Gemm(a)
                if a.epilogue.is_none()
                    && a.integer.is_none()
                    && a.alpha.0.is_finite()
                    && a.alpha.0 > 0.0
                    && a.beta.0.is_finite()
                    && !a.trans_a =>
            {
                let (alpha, beta) = (a.alpha.0 as f64, a.beta.0 as f64);
                let (xq, xp) = dequantized(g, node.inputs[0])?;
                let (wq, sw) = weights(g, node.inputs[1], if a.trans_b { 0 } else { 1 })?;
                let wd = g.const_data(wq)?.dims().to_vec();
                let n = if a.trans_b { wd[0] } else { wd[1] };
                let r = scaled_requant(self.mode, xp.scale, &sw, alpha, yp, act)?;
                let b = match node.inputs.get(2) {
                    Some(&b) => Some(new_bias(scaled_bias(g, b, xp.scale, &sw, n, beta / alpha)?)),
                    None => None,
                };
                let op = Op::Gemm(GemmAttrs {
                    integer: Some(IntegerAttrs {
                        x_zero_point: xp.zero_point,
                        requant: Some(r),
                    }),
                    alpha: F32(1.0),
                    beta: F32(1.0),
                    ..a.clone()
                });
                let inputs = [Input::Value(xq), Input::Value(wq)].into_iter().chain(b);
                Some((op, inputs.collect()))
            }
            Op::Binary(kestrel_ir::BinaryOp::Add) => {
                let (aq, ap) = dequantized(g, node.inputs[0])?;
                let (bq, bp) = dequantized(g, node.inputs[1])?;
                let (min, max) = bounds(yp, act)?;
                let op = Op::QuantizedAdd(kestrel_ir::QuantizedAddAttrs {
                    a_zero_point: ap.zero_point,
                    a_ratio: F32(ap.scale / yp.scale),
                    b_zero_point: bp.zero_point,
                    b_ratio: F32(bp.scale / yp.scale),
                    to: yp.dtype,
                    scale: F32(yp.scale),
                    zero_point: yp.zero_point,
                    min,
                    max,
                });
                Some((op, vec![Input::Value(aq), Input::Value(bq)]))
            }
            Op::Binary(BinaryOp::Mul) => {
                let (aq, ap) = dequantized(g, node.inputs[0])?;
                let (bq, bp) = dequantized(g, node.inputs[1])?;
                let (min, max) = bounds(yp, act)?;
                let op = Op::QuantizedMul(QuantizedMulAttrs {
                    a_zero_point: ap.zero_point,
                    b_zero_point: bp.zero_point,
                    ratio: F32(ap.scale * bp.scale / yp.scale),
                    to: yp.dtype,
                    scale: F32(yp.scale),
                    zero_point: yp.zero_point,
                    min,
                    max,
                });
                Some((op, vec![Input::Value(aq), Input::Value(bq)]))
            }
            Op::Pool(w) if w.kind == PoolKind::Average => {
                self.average_pool(g, node.inputs[0], Some(w.clone()), yp, act)
            }
            Op::GlobalPool(PoolKind::Average) => {
                self.average_pool(g, node.inputs[0], None, yp, act)
            }
            Op::Concat { axis } if act.is_none() => {
                let inputs = node
                    .inputs
                    .iter()
                    .map(|&v| {
                        let (xq, xp) = dequantized(g, v)?;
                        Some(if xp == yp {
                            Input::Value(xq)
                        } else {
                            Input::Requantized(xq, requantization(xp, yp))
                        })
                    })
                    .collect::<Option<Vec<Input>>>()?;
                Some((Op::Concat { axis: *axis }, inputs))
            }
            Op::MatMul => {
                let (xq, xp) = dequantized(g, node.inputs[0])?;
                if g.ty(xq).rank() != 2 {
                    return None;
                }
                let (wq, sw) = weights(g, node.inputs[1], 1)?;
                if g.const_data(wq)?.dims().len() != 2 {
                    return None;
                }
                let r = requant(self.mode, xp.scale, &sw, yp, act)?;
                let op = Op::Gemm(GemmAttrs {
                    integer: Some(IntegerAttrs {
                        x_zero_point: xp.zero_point,
                        requant: Some(r),
                    }),
                    ..GemmAttrs::default()
                });
                Some((op, vec![Input::Value(xq), Input::Value(wq)]))
            }
            _ => None,
        }
    }

    /// `q(avgpool(dq(x)))` (windowed, or global without a window): the integer average pool.
    fn average_pool(
        &self,
        g: &Graph,
        x: ValueId,
        window: Option<kestrel_ir::PoolAttrs>,
        yp: Params,
        act: Option<UnaryOp>,
    ) -> Option<(Op, Vec<Input>)> {
        let (xq, xp) = dequantized(g, x)?;
        let (min, max) = bounds(yp, act)?;
        let op = Op::QuantizedAveragePool(QuantizedPoolAttrs {
            window,
            x_scale: F32(xp.scale),
            x_zero_point: xp.zero_point,
            to: yp.dtype,
            scale: F32(yp.scale),
            zero_point: yp.zero_point,
            min,
            max,
        });
        Some((op, vec![Input::Value(xq)]))
    }

    /// `q(op(dq(xq)))` with equal parameters for an op that commutes with dequantization, or
    /// `q(dq(xq))`: the value that replaces `q`'s output, and the op to apply (none for the pair).
    fn fold_movement(&self, g: &Graph, q: NodeId) -> Option<Movement> {
        let (y, yp) = quantized(g, q)?;
        if let Some((xq, xp)) = dequantized(g, y) {
            return Some(if xp == yp {
                Movement::Value(xq)
            } else {
                Movement::Node(Op::Requantize(requantization(xp, yp)), vec![xq])
            });
        }
        let p = g.producer(y)?;
        let node = g.node(p);
        let commutes = node.op.is_view()
            || matches!(
                node.op,
                Op::Transpose { .. } | Op::GlobalPool(kestrel_ir::PoolKind::Max)
            )
            || matches!(&node.op, Op::Pool(a) if a.kind == kestrel_ir::PoolKind::Max);
        if !commutes || g.use_counts()[y.index()] != 1 || g.is_output(y) {
            return None;
        }
        let (xq, xp) = dequantized(g, node.inputs[0])?;
        if xp != yp {
            return None;
        }
        let mut inputs = node.inputs.to_vec();
        inputs[0] = xq;
        Some(Movement::Node(node.op.clone(), inputs))
    }
}

impl Pass for FoldQdq {
    fn name(&self) -> &'static str {
        "fold-qdq"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<bool, PassError> {
        let mut names = ConstNames::new(g);
        let mut changed = false;
        // Nodes inserted for a fold whose result type turned out not to match are dead.
        let mut inserted = false;
        let mut i = 0;
        while i < g.nodes.len() {
            let id = NodeId(i as u32);
            i += 1;
            let out = match g.node(id).outputs.first() {
                Some(&o) => o,
                None => continue,
            };
            if let Some(f) = crate::fold_integer::fold_exact(g, &mut names, id)
                .map_err(|e| PassError::failed(self.name(), e))?
            {
                // The cast moved on past the inserted nodes.
                i += f.inserted;
                let (new, old) = (g.ty(f.value), g.ty(out));
                if new.dtype == old.dtype && new.shape == old.shape {
                    g.replace_all_uses(out, f.value);
                    changed = true;
                }
                continue;
            }
            if let Some((op, inputs)) = self.fold_compute(g, &mut names, id) {
                let name = g.node(id).name.clone();
                // The quantize node's index as nodes are inserted before it.
                let mut at = id;
                let mut ids = Vec::with_capacity(inputs.len());
                for (k, input) in inputs.into_iter().enumerate() {
                    ids.push(match input {
                        Input::Value(v) => v,
                        Input::Const(name, t) => g.add_const(name, t),
                        Input::Requantized(v, r) => {
                            let label = format!("{name}.requantize{k}");
                            let outs = g
                                .insert_node_before(at, Op::Requantize(r), &[v], label)
                                .map_err(|e| PassError::failed(self.name(), e))?;
                            at = NodeId(at.0 + 1);
                            i += 1;
                            outs[0]
                        }
                    });
                }
                let inputs = ids;
                let new = g
                    .insert_node_before(at, op, &inputs, name)
                    .map_err(|e| PassError::failed(self.name(), e))?;
                // The quantize node moved one place on.
                i += 1;
                inserted = true;
                if g.ty(new[0]) == g.ty(out) {
                    g.replace_all_uses(out, new[0]);
                    changed = true;
                }
                continue;
            }
            if let Some(m) = self.fold_movement(g, id) {
                let new = match m {
                    Movement::Value(v) => v,
                    Movement::Node(op, inputs) => {
                        let name = g.node(id).name.clone();
                        let outs = g
                            .insert_node_before(id, op, &inputs, name)
                            .map_err(|e| PassError::failed(self.name(), e))?;
                        i += 1;
                        inserted = true;
                        outs[0]
                    }
                };
                if g.ty(new) == g.ty(out) {
                    g.replace_all_uses(out, new);
                    changed = true;
                }
            }
        }
        if changed || inserted {
            g.remove_dead_nodes();
        }
        Ok(changed)
    }
}
