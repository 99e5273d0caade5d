//! The closed set of operations.
//!
//! Every op documents its inputs, outputs and meaning here; the interpreter in `kestrel-backends`
//! implements exactly this contract and is the oracle for every other backend. ONNX's
//! version-dependent forms are normalised by the importer into these: parameters that ONNX moved
//! from attributes to inputs over its history are always inputs here (Slice, Squeeze, Unsqueeze,
//! Reduce*, Clip, Pad, Split, Resize), and optional inputs in the middle of the list are
//! materialised as constants by the importer, so only trailing inputs are ever optional.
//!
//! Axis attributes may be negative (counted from the end) exactly as in ONNX.

use crate::dtype::{DType, F32};
use crate::tensor::Tensor;

/// Element-wise unary functions. Inputs: `x`. Output: same shape; same dtype except where noted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnaryOp {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Sqrt,
    Reciprocal,
    Neg,
    Abs,
    Erf,
    Floor,
    Ceil,
    /// Round half to even.
    Round,
    Sign,
    /// Logical not (bool only).
    Not,
    /// `x * max(0, min(1, x/6 + 1/2))`.
    HardSwish,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    /// `x * tanh(softplus(x))`.
    Mish,
    /// Output dtype bool.
    IsNaN,
}

/// Element-wise binary functions with numpy broadcasting. Inputs: `a`, `b` of the same dtype.
/// Output: broadcast shape; dtype of the inputs, or bool for comparisons and logic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    /// Integer division truncates toward zero (C semantics, as onnxruntime does).
    Div,
    /// `a ^ b`; the exponent may have a different numeric dtype than the base (ONNX Pow-12+).
    Pow,
    /// Integer modulo whose sign follows the divisor (Python `%`); for floats use `Fmod`.
    Mod,
    /// C `fmod`: the sign follows the dividend.
    Fmod,
    Max,
    Min,
    /// `a >= 0 ? a : b * a` (PRelu with broadcast slope `b`).
    PRelu,
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

impl BinaryOp {
    /// Comparisons and logic produce bool.
    pub fn yields_bool(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual
                | BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor
        )
    }
}

/// How a convolution or pool computes its padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AutoPad {
    /// Use the explicit `pads`.
    #[default]
    NotSet,
    /// Output extent `ceil(in / stride)`; extra padding goes at the end.
    SameUpper,
    /// Output extent `ceil(in / stride)`; extra padding goes at the beginning.
    SameLower,
    /// No padding.
    Valid,
}

/// Convolution. Inputs: `x [N, C, D1..Dk]`, `w [M, C/group, K1..Kk]`, optional `b [M]`, and with
/// `epilogue.residual` a fourth input `r` of the output's shape (then `b` is required):
/// `y = act(conv(x, w) + b + r)`.
/// Output: `[N, M, O1..Ok]` with `Oi = floor((Di + pad_begin + pad_end - dil*(Ki-1) - 1) / stride) + 1`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvAttrs {
    /// Per spatial axis; empty means 1 everywhere.
    pub strides: Vec<usize>,
    /// `[begin_1..begin_k, end_1..end_k]`; empty means 0 everywhere. Ignored unless `auto_pad` is `NotSet`.
    pub pads: Vec<usize>,
    /// Per spatial axis; empty means 1 everywhere.
    pub dilations: Vec<usize>,
    /// Number of groups (1 = dense; C = depthwise).
    pub group: usize,
    pub auto_pad: AutoPad,
    /// Fused epilogue (see [`Epilogue`]); the default is none.
    pub epilogue: Epilogue,
}

/// An activation applied element-wise by a fused epilogue (f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activation {
    /// The identity.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, min), max)` (Relu6 is `Clip { min: 0, max: 6 }`).
    Clip { min: F32, max: F32 },
    /// `x * max(0, min(1, x/6 + 1/2))`.
    HardSwish,
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid { alpha: F32, beta: F32 },
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// SiLU / swish: `x * sigmoid(x)`.
    Silu,
    /// `0.5 x (1 + erf(x / sqrt 2))`.
    Gelu,
}

impl Activation {
    /// The text-form name (`relu`, `hard_swish`, ...; `none` for the identity).
    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Clip { .. } => "clip",
            Activation::HardSwish => "hard_swish",
            Activation::HardSigmoid { .. } => "hard_sigmoid",
            Activation::Sigmoid => "sigmoid",
            Activation::Silu => "silu",
            Activation::Gelu => "gelu",
        }
    }
}

/// What a fused conv/gemm does to each output element after the accumulation (and bias):
/// `y = act(acc + bias + residual)`. With `residual`, the op has one more input, the residual
/// tensor of the output's shape, after the (then required) bias.
///
/// `channel_scale` (conv only, group 1) fuses the channel-wise multiply of a squeeze-and-
/// excitation block into the conv that consumes it: the last input is `s [N, C, 1..]` and the
/// conv reads `x * s` (so `y = act(conv(x * s, w) + b + r)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epilogue {
    pub act: Activation,
    pub residual: bool,
    pub channel_scale: bool,
}

impl Epilogue {
    /// No activation, residual or channel scale: the plain op.
    pub fn is_none(&self) -> bool {
        self.act == Activation::None && !self.residual && !self.channel_scale
    }

    /// Inputs after the required ones (bias/C, residual, channel scale) when fused.
    pub fn extra_inputs(&self) -> usize {
        self.residual as usize + self.channel_scale as usize
    }
}

/// One instruction of a [`MapProgram`]; it defines the next register (`r0`, `r1`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapInstr {
    /// The element of input `k`.
    Input(u16),
    /// A constant.
    Const(F32),
    /// A unary function of register `a`.
    Unary(UnaryOp, u16),
    /// A binary function of registers `a`, `b`.
    Binary(BinaryOp, u16, u16),
}

/// An element-wise program: the result is the last register. Every operation rounds to f32
/// like the op it replaces, so a map computes exactly what the chain of ops it fused computes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapProgram {
    pub code: Vec<MapInstr>,
}

impl MapProgram {
    /// The unary ops a map may contain (float-valued, supported by every backend).
    pub fn unary_ok(u: UnaryOp) -> bool {
        use UnaryOp::*;
        matches!(
            u,
            Relu | Sigmoid
                | Tanh
                | Exp
                | Log
                | Sqrt
                | Reciprocal
                | Neg
                | Abs
                | Erf
                | HardSwish
                | Softplus
                | Softsign
        )
    }

    /// The binary ops a map may contain.
    pub fn binary_ok(b: BinaryOp) -> bool {
        use BinaryOp::*;
        matches!(b, Add | Sub | Mul | Div | Max | Min | PRelu)
    }

    /// Checks the program against `inputs` inputs: non-empty, registers defined before use,
    /// input indices in range, only allowed ops.
    pub fn check(&self, inputs: usize) -> Result<(), String> {
        if self.code.is_empty() {
            return Err("empty map program".into());
        }
        for (i, ins) in self.code.iter().enumerate() {
            let reg = |r: u16| {
                if (r as usize) < i {
                    Ok(())
                } else {
                    Err(format!(
                        "instruction {i} reads register {r} before it is defined"
                    ))
                }
            };
            match *ins {
                MapInstr::Input(k) if (k as usize) >= inputs => {
                    return Err(format!("instruction {i} reads input {k} of {inputs}"))
                }
                MapInstr::Input(_) | MapInstr::Const(_) => {}
                MapInstr::Unary(u, a) => {
                    if !Self::unary_ok(u) {
                        return Err(format!("{} is not allowed in a map", u.name()));
                    }
                    reg(a)?
                }
                MapInstr::Binary(b, x, y) => {
                    if !Self::binary_ok(b) {
                        return Err(format!("{} is not allowed in a map", b.name()));
                    }
                    reg(x)?;
                    reg(y)?
                }
            }
        }
        Ok(())
    }
}

/// `Y = alpha * op(A) @ op(B) + beta * C`, `op` transposing when the flag is set.
/// Inputs: `A` 2-D, `B` 2-D, optional `C` unidirectionally broadcastable to `[M, N]`, and with
/// `epilogue.residual` a fourth input `R [M, N]` (then `C` is required):
/// `Y = act(alpha * op(A) @ op(B) + beta * C + R)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GemmAttrs {
    pub alpha: F32,
    pub beta: F32,
    pub trans_a: bool,
    pub trans_b: bool,
    /// Fused epilogue (see [`Epilogue`]); the default is none.
    pub epilogue: Epilogue,
}

impl Default for GemmAttrs {
    fn default() -> Self {
        GemmAttrs {
            alpha: F32(1.0),
            beta: F32(1.0),
            trans_a: false,
            trans_b: false,
            epilogue: Epilogue::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PoolKind {
    Max,
    Average,
    /// Lp pooling with exponent `p`.
    Lp(u32),
}

/// MaxPool / AveragePool / LpPool over the spatial axes. Inputs: `x [N, C, D1..Dk]`.
/// Output: `[N, C, O1..Ok]`, extents as for [`ConvAttrs`] (with `ceil` instead of `floor` when
/// `ceil_mode`, dropping a last window that would start in the end padding).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolAttrs {
    pub kind: PoolKind,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
    pub ceil_mode: bool,
    /// Average pooling only: divide by the full window including padding.
    pub count_include_pad: bool,
    pub auto_pad: AutoPad,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

/// Reduction. Inputs: `data`, optional `axes` (i64 1-D, usually constant).
/// With no axes (absent or empty) all axes are reduced, unless `noop_with_empty_axes`,
/// in which case the op is the identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReduceAttrs {
    pub kind: ReduceKind,
    pub keepdims: bool,
    pub noop_with_empty_axes: bool,
}

/// Interpolation of [`Op::Resize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResizeMode {
    Nearest,
    Linear,
    Cubic,
}

/// How an output coordinate maps back to an input coordinate (ONNX `coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CoordMode {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

/// Rounding of the source coordinate for nearest interpolation (ONNX `nearest_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// ONNX `keep_aspect_ratio_policy` for sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AspectPolicy {
    Stretch,
    NotLarger,
    NotSmaller,
}

/// Whether the second input of [`Op::Resize`] holds scales (f32) or output sizes (i64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResizeBy {
    Scales,
    Sizes,
}

/// Resize (ONNX Resize-19 semantics; older versions are normalised by the importer).
/// Inputs: `x`, `scales_or_sizes` (1-D, one entry per entry of `axes`, or per axis of `x`
/// when `axes` is empty), and — only when `coord` is `TfCropAndResize` — `roi`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResizeAttrs {
    pub by: ResizeBy,
    pub mode: ResizeMode,
    pub coord: CoordMode,
    pub nearest: NearestMode,
    pub cubic_coeff_a: F32,
    pub exclude_outside: bool,
    pub extrapolation_value: F32,
    pub antialias: bool,
    pub aspect: AspectPolicy,
    pub axes: Vec<i64>,
}

/// Transposed convolution (the gradient of [`Op::Conv`] with respect to its input).
/// Inputs: `x [N, C, D1..Dk]`, `w [C, M/group, K1..Kk]`, optional `b [M]`. Output `[N, M, O1..Ok]`.
///
/// Per spatial axis, input position `i` and kernel tap `t` contribute `x[i] * w[t]` to the
/// position `i * stride + t * dilation` of the *full* result, whose extent is
/// `F = stride * (D - 1) + output_padding + dilation * (K - 1) + 1`. Output position `o` is full
/// position `o + begin`; positions of the full result outside `[0, F)` are zero (plus bias).
/// The output extent `O` and `begin` are (see `kestrel_ir::infer::conv_transpose_axes`):
/// - `output_shape` non-empty: `O = output_shape[i]`, `total = F - O`; `begin = 0` when
///   `total <= 0` (the output extends past the full result at the end), else `total / 2` for
///   `SameUpper` and `total - total / 2` otherwise; explicit `pads` are then ignored (ONNX);
/// - `NotSet`: `begin = pads[i]`, `O = F - pads[i] - pads[k + i]` (must be >= 0);
/// - `Valid`: `begin = 0`, `O = F`;
/// - `SameUpper`/`SameLower`: as with `output_shape = D * stride`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvTransposeAttrs {
    /// Per spatial axis; empty means 1 everywhere.
    pub strides: Vec<usize>,
    /// `[begin_1..begin_k, end_1..end_k]`; empty means 0 everywhere. Used only with `NotSet` and
    /// no `output_shape`.
    pub pads: Vec<usize>,
    /// Per spatial axis; empty means 1 everywhere.
    pub dilations: Vec<usize>,
    /// Per spatial axis; empty means 0 everywhere.
    pub output_padding: Vec<usize>,
    /// Spatial output extents; empty means computed from the pads.
    pub output_shape: Vec<usize>,
    /// Number of groups: input channels `C` and output channels `M` are split into `group` parts.
    pub group: usize,
    pub auto_pad: AutoPad,
}

/// Which extreme [`Op::Arg`] selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArgKind {
    Max,
    Min,
}

/// ArgMax / ArgMin. Inputs: `x` (numeric). Output: i64 indices along `axis` of the maximum
/// (minimum), the axis kept as a unit axis when `keepdims`, removed otherwise. Ties select the
/// first index, or the last when `select_last_index`. NaN compares greater than every number for
/// ArgMax and less than every number for ArgMin (so a NaN is selected, as numpy does). Fails on
/// an empty axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArgAttrs {
    pub kind: ArgKind,
    pub axis: i64,
    pub keepdims: bool,
    pub select_last_index: bool,
}

/// How [`Op::ScatterElements`] and [`Op::ScatterNd`] combine an update with the existing value.
/// With `None` (plain assignment) and several updates to one position, the last one wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScatterReduction {
    #[default]
    None,
    Add,
    Mul,
    Max,
    Min,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// The closed set of IR operations. Inputs are listed in order; `[x]` marks a trailing optional input.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `(x) -> y`, see [`UnaryOp`].
    Unary(UnaryOp),
    /// `(a, b) -> y`, see [`BinaryOp`].
    Binary(BinaryOp),
    /// `(x1, .., xn) -> y`: the element-wise [`MapProgram`] over the inputs broadcast together
    /// (numpy rules); float inputs of one dtype.
    Map(MapProgram),
    /// `(x) -> max(0, min(1, alpha * x + beta))`.
    HardSigmoid { alpha: F32, beta: F32 },
    /// `(x) -> x >= 0 ? x : alpha * x`.
    LeakyRelu { alpha: F32 },
    /// `(x) -> x >= 0 ? x : alpha * (e^x - 1)`.
    Elu { alpha: F32 },
    /// `(x) -> gamma * (x > 0 ? x : alpha * (e^x - 1))`.
    Selu { alpha: F32, gamma: F32 },
    /// `(x) -> 0.5 x (1 + erf(x / sqrt 2))`, or the tanh form when `tanh_approx`.
    Gelu { tanh_approx: bool },
    /// `(x, [min], [max]) -> clamp`; `min`/`max` are scalars of x's dtype. An absent bound is unbounded.
    Clip,
    /// `(cond: bool, a, b) -> cond ? a : b`, broadcasting all three.
    Where,
    /// `(x) -> x` converted to `to`. Float to int truncates toward zero; to bool is `x != 0`.
    /// `saturate` applies only to 8-bit float targets (unsupported) and is kept for fidelity.
    Cast { to: DType },
    /// `(x, w, [b], [r])`, see [`ConvAttrs`].
    Conv(ConvAttrs),
    /// `(a, b, [c], [r])`, see [`GemmAttrs`].
    Gemm(GemmAttrs),
    /// `(a, b) -> a @ b` with numpy matmul semantics (1-D promotion, batch broadcasting).
    MatMul,
    /// `(x, scale, bias, mean, var) -> (x - mean) / sqrt(var + epsilon) * scale + bias`,
    /// per channel (axis 1), inference mode.
    BatchNorm { epsilon: F32 },
    /// `(x) -> pooled`, see [`PoolAttrs`].
    Pool(PoolAttrs),
    /// `(x [N, C, D..]) -> [N, C, 1..]`: max or mean over all spatial axes.
    GlobalPool(PoolKind),
    /// `(data, [axes])`, see [`ReduceAttrs`].
    Reduce(ReduceAttrs),
    /// `(x) -> softmax along axis` (ONNX-13 semantics: one axis, not a coerced 2-D view).
    Softmax { axis: i64 },
    /// `(x) -> log(softmax(x))` along one axis.
    LogSoftmax { axis: i64 },
    /// `(q [.., M, D], k_t [.., D, N], v [.., N, Dv]) -> softmax(scale · q @ k_t) @ v` of shape
    /// `[.., M, Dv]`, the softmax along the last axis. Scaled dot-product attention with the keys
    /// already transposed; the batch dims of all three inputs are equal (no broadcasting), the
    /// rank is at least 2, floats of one dtype. Only the fusion pass creates it (ONNX has no such
    /// op before opset 23).
    Attention { scale: F32 },
    /// `(x, scale, [bias])`: normalise over axes `axis..rank` then `* scale + bias` (broadcast).
    LayerNorm { axis: i64, epsilon: F32 },
    /// `(x) -> 2-D [prod(dims[..axis]), prod(dims[axis..])]`.
    Flatten { axis: i64 },
    /// `(data, shape: i64 1-D)`: `0` copies the input extent unless `allowzero`; `-1` is inferred.
    Reshape { allowzero: bool },
    /// `(x)`: output axis `i` is input axis `perm[i]`. `perm` is always explicit (the importer fills the
    /// default reversal).
    Transpose { perm: Vec<usize> },
    /// `(x1, x2, ...)`: concatenation along `axis`; at least one input.
    Concat { axis: i64 },
    /// `(x, [split: i64 1-D]) -> outputs.len()` outputs along `axis`. Without `split` the extent
    /// is divided into `num_outputs` parts of `ceil(extent / num_outputs)`, the last smaller.
    Split { axis: i64, num_outputs: usize },
    /// `(data, starts, ends, [axes], [steps])`, all index inputs i64 (or i32) 1-D, ONNX-13 clamping.
    Slice,
    /// `(data, indices: i32|i64)`: numpy `take` along `axis`; negative indices count from the end.
    Gather { axis: i64 },
    /// `(data, [axes: i64 1-D])`: removes the given unit axes, or every unit axis if absent.
    Squeeze,
    /// `(data, axes: i64 1-D)`: inserts unit axes at the given output positions.
    Unsqueeze,
    /// `(x) -> i64 1-D` extents of `x`, sliced `[start, end)` (ONNX-15 clamping).
    Shape { start: i64, end: Option<i64> },
    /// `(x) -> i64 scalar` number of elements.
    Size,
    /// `(x, shape: i64 1-D)`: broadcast `x` to `broadcast(x.shape, shape)`.
    Expand,
    /// `(x, repeats: i64 1-D)`: tile.
    Tile,
    /// `(start, limit, delta)` scalars of one dtype: `[start, start+delta, ..)` up to `limit`.
    Range,
    /// `(shape: i64 1-D)`: a tensor filled with `value` (a one-element tensor; its dtype is the output's).
    ConstantOfShape { value: Tensor },
    /// `(x) -> x`.
    Identity,
    /// `(x: f32, scale, [zero_point]) -> saturate(round_half_even(x / scale) + zero_point)` as `to`.
    /// Per-tensor when `scale` is a scalar; per-axis along `axis` when it is 1-D.
    QuantizeLinear { axis: i64, to: DType },
    /// `(x: int, scale, [zero_point]) -> (x - zero_point) * scale` as f32, per-tensor or per-axis.
    DequantizeLinear { axis: i64 },
    /// `(x, scales_or_sizes, [roi])`, see [`ResizeAttrs`].
    Resize(ResizeAttrs),
    /// `(data, pads: i64 [2 * rank] as begins then ends, [value: scalar])`; negative pads crop.
    Pad { mode: PadMode },
    /// `(x, w, [b])`, see [`ConvTransposeAttrs`].
    ConvTranspose(ConvTransposeAttrs),
    /// `(x) -> i64`, see [`ArgAttrs`].
    Arg(ArgAttrs),
    /// `(data, indices: i32|i64 of data's rank)`: `out[p] = data[p with p[axis] = indices[p]]`;
    /// the output has the shape of `indices` (each extent at most data's, except along `axis`)
    /// and the dtype of `data`. Negative indices count from the end.
    GatherElements { axis: i64 },
    /// `(data, indices: i32|i64, updates)`: a copy of `data` where, for every position `p` of
    /// `indices` (same shape as `updates`, same rank as `data`), the element at
    /// `p with p[axis] = indices[p]` is combined with `updates[p]` by `reduction`, in row-major
    /// order of `p`. Negative indices count from the end.
    ScatterElements {
        axis: i64,
        reduction: ScatterReduction,
    },
    /// `(data, indices: i64 [.., q], updates [indices.shape[..-1], data.shape[q..]])`: a copy of
    /// `data` where each slice `data[indices[j]]` is combined with `updates[j]` by `reduction`, in
    /// row-major order of `j`. Negative indices count from the end.
    ScatterNd { reduction: ScatterReduction },
    /// `(x [.., M, N], [k: i64 scalar])`: keeps the elements at row `i`, column `j` of the last
    /// two axes with `j - i >= k` (`upper`) or `j - i <= k` (lower) and zeroes the others; `k`
    /// defaults to 0.
    Trilu { upper: bool },
    /// `(x, axis: i32|i64 scalar)`: cumulative sum along `axis`; `exclusive` leaves out the
    /// element itself (the first sum is 0), `reverse` sums from the end.
    CumSum { exclusive: bool, reverse: bool },
    /// `(x) -> ` 1 at the first maximum along `axis` and 0 elsewhere (ONNX-13 semantics).
    Hardmax { axis: i64 },
    /// `(x) -> x / ||x||_p` along `axis`, `p` 1 or 2; a vector of norm 0 stays 0 (ONNX test data).
    LpNormalization { axis: i64, p: u32 },
    /// `(x, k: i64 1-D of one element) -> (values, indices: i64)`: the `k` largest (or smallest)
    /// elements along `axis`, in descending (ascending) order; equal values keep the lower index
    /// first, and NaN ranks above every number. `sorted = false` allows any order (this is ONNX's
    /// contract); the interpreter always sorts. `k` may not exceed the axis extent.
    TopK {
        axis: i64,
        largest: bool,
        sorted: bool,
    },
}

impl Op {
    /// Number of outputs the node has (all ops but `Split` and `TopK` have one).
    pub fn num_outputs(&self) -> usize {
        match self {
            Op::Split { num_outputs, .. } => *num_outputs,
            Op::TopK { .. } => 2,
            _ => 1,
        }
    }
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 31] = [
        UnaryOp::Relu,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Reciprocal,
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Erf,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Round,
        UnaryOp::Sign,
        UnaryOp::Not,
        UnaryOp::HardSwish,
        UnaryOp::Softplus,
        UnaryOp::Softsign,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tan,
        UnaryOp::Asin,
        UnaryOp::Acos,
        UnaryOp::Atan,
        UnaryOp::Sinh,
        UnaryOp::Cosh,
        UnaryOp::Asinh,
        UnaryOp::Acosh,
        UnaryOp::Atanh,
        UnaryOp::Mish,
        UnaryOp::IsNaN,
    ];

    /// The text-form name (`relu`, `hard_swish`, ...).
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Relu => "relu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Reciprocal => "reciprocal",
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Erf => "erf",
            UnaryOp::Floor => "floor",
            UnaryOp::Ceil => "ceil",
            UnaryOp::Round => "round",
            UnaryOp::Sign => "sign",
            UnaryOp::Not => "not",
            UnaryOp::HardSwish => "hard_swish",
            UnaryOp::Softplus => "softplus",
            UnaryOp::Softsign => "softsign",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Tan => "tan",
            UnaryOp::Asin => "asin",
            UnaryOp::Acos => "acos",
            UnaryOp::Atan => "atan",
            UnaryOp::Sinh => "sinh",
            UnaryOp::Cosh => "cosh",
            UnaryOp::Asinh => "asinh",
            UnaryOp::Acosh => "acosh",
            UnaryOp::Atanh => "atanh",
            UnaryOp::Mish => "mish",
            UnaryOp::IsNaN => "is_nan",
        }
    }
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 18] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Mod,
        BinaryOp::Fmod,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::PRelu,
        BinaryOp::Equal,
        BinaryOp::Less,
        BinaryOp::LessOrEqual,
        BinaryOp::Greater,
        BinaryOp::GreaterOrEqual,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Xor,
    ];

    /// The text-form name (`add`, `less_or_equal`, ...).
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Mod => "mod",
            BinaryOp::Fmod => "fmod",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::PRelu => "prelu",
            BinaryOp::Equal => "equal",
            BinaryOp::Less => "less",
            BinaryOp::LessOrEqual => "less_or_equal",
            BinaryOp::Greater => "greater",
            BinaryOp::GreaterOrEqual => "greater_or_equal",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Xor => "xor",
        }
    }
}

impl Op {
    /// The text-form name of the op (`conv`, `relu`, `max_pool`, ...): unique per op kind.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Map(_) => "map",
            Op::HardSigmoid { .. } => "hard_sigmoid",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::Elu { .. } => "elu",
            Op::Selu { .. } => "selu",
            Op::Gelu { .. } => "gelu",
            Op::Clip => "clip",
            Op::Where => "where",
            Op::Cast { .. } => "cast",
            Op::Conv(_) => "conv",
            Op::Gemm(_) => "gemm",
            Op::MatMul => "matmul",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Pool(p) => match p.kind {
                PoolKind::Max => "max_pool",
                PoolKind::Average => "average_pool",
                PoolKind::Lp(_) => "lp_pool",
            },
            Op::GlobalPool(k) => match k {
                PoolKind::Max => "global_max_pool",
                PoolKind::Average => "global_average_pool",
                PoolKind::Lp(_) => "global_lp_pool",
            },
            Op::Reduce(r) => match r.kind {
                ReduceKind::Sum => "reduce_sum",
                ReduceKind::Mean => "reduce_mean",
                ReduceKind::Max => "reduce_max",
                ReduceKind::Min => "reduce_min",
                ReduceKind::Prod => "reduce_prod",
                ReduceKind::L1 => "reduce_l1",
                ReduceKind::L2 => "reduce_l2",
                ReduceKind::LogSum => "reduce_log_sum",
                ReduceKind::LogSumExp => "reduce_log_sum_exp",
                ReduceKind::SumSquare => "reduce_sum_square",
            },
            Op::Softmax { .. } => "softmax",
            Op::Attention { .. } => "attention",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::LayerNorm { .. } => "layer_norm",
            Op::Flatten { .. } => "flatten",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Concat { .. } => "concat",
            Op::Split { .. } => "split",
            Op::Slice => "slice",
            Op::Gather { .. } => "gather",
            Op::Squeeze => "squeeze",
            Op::Unsqueeze => "unsqueeze",
            Op::Shape { .. } => "shape",
            Op::Size => "size",
            Op::Expand => "expand",
            Op::Tile => "tile",
            Op::Range => "range",
            Op::ConstantOfShape { .. } => "constant_of_shape",
            Op::Identity => "identity",
            Op::QuantizeLinear { .. } => "quantize_linear",
            Op::DequantizeLinear { .. } => "dequantize_linear",
            Op::Resize(_) => "resize",
            Op::Pad { .. } => "pad",
            Op::ConvTranspose(_) => "conv_transpose",
            Op::Arg(a) => match a.kind {
                ArgKind::Max => "arg_max",
                ArgKind::Min => "arg_min",
            },
            Op::GatherElements { .. } => "gather_elements",
            Op::ScatterElements { .. } => "scatter_elements",
            Op::ScatterNd { .. } => "scatter_nd",
            Op::Trilu { .. } => "trilu",
            Op::CumSum { .. } => "cum_sum",
            Op::Hardmax { .. } => "hardmax",
            Op::LpNormalization { .. } => "lp_normalization",
            Op::TopK { .. } => "top_k",
        }
    }
}
