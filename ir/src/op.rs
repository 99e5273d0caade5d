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

/// The value of one parameter of a [`UnaryOp`] (see [`UnaryOp::params`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    Float(F32),
    Bool(bool),
}

/// The Rust types a [`UnaryOp`] parameter may have.
pub trait ParamType: Copy {
    fn to_param(self) -> Param;
    fn from_param(p: Param) -> Option<Self>;
}

impl ParamType for F32 {
    fn to_param(self) -> Param {
        Param::Float(self)
    }
    fn from_param(p: Param) -> Option<Self> {
        match p {
            Param::Float(v) => Some(v),
            Param::Bool(_) => None,
        }
    }
}

impl ParamType for bool {
    fn to_param(self) -> Param {
        Param::Bool(self)
    }
    fn from_param(p: Param) -> Option<Self> {
        match p {
            Param::Bool(v) => Some(v),
            Param::Float(_) => None,
        }
    }
}

/// Declares [`UnaryOp`] from one table: each row is a variant (with its parameters and their
/// defaults) and its text-form name. The enum, [`UnaryOp::ALL`], [`UnaryOp::name`],
/// [`UnaryOp::from_name`], [`UnaryOp::params`] and [`UnaryOp::set_param`] all come from the rows,
/// so an op cannot lack a name, a lookup entry or a parameter accessor.
macro_rules! unary_ops {
    ($(
        $(#[$meta:meta])*
        $variant:ident $({ $($field:ident : $fty:ty = $default:expr),+ $(,)? })? => $name:literal,
    )+) => {
        /// Element-wise unary functions. Inputs: `x`. Output: same shape; same dtype except where
        /// noted. `relu`, `neg`, `abs` and `sign` also take integers (wrapping arithmetic), `not`
        /// takes bool, the others floats. Parameters are the variant's fields; their defaults
        /// are ONNX's.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum UnaryOp {
            $( $(#[$meta])* $variant $({ $($field: $fty),+ })?, )+
        }

        impl UnaryOp {
            /// Every unary op, parameters at their defaults, in declaration order.
            pub const ALL: [UnaryOp; [$(stringify!($variant)),+].len()] = [
                $( UnaryOp::$variant $({ $($field: $default),+ })? ),+
            ];

            /// The text-form name (`relu`, `hard_swish`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $( UnaryOp::$variant { .. } => $name, )+
                }
            }

            /// The op named `name`, parameters at their defaults.
            pub fn from_name(name: &str) -> Option<UnaryOp> {
                match name {
                    $( $name => Some(UnaryOp::$variant $({ $($field: $default),+ })?), )+
                    _ => None,
                }
            }

            /// The parameters by field name, in declaration order (empty for most ops).
            pub fn params(self) -> Vec<(&'static str, Param)> {
                match self {
                    $( UnaryOp::$variant $({ $($field),+ })? => vec![
                        $($( (stringify!($field), ParamType::to_param($field)) ),+)?
                    ], )+
                }
            }

            /// Sets parameter `key`; `Err` if the op has no such parameter or `value` has
            /// another type.
            pub fn set_param(&mut self, key: &str, value: Param) -> Result<(), String> {
                let name = self.name();
                match self {
                    $( UnaryOp::$variant $({ $($field),+ })? => {
                        $($(
                            if key == stringify!($field) {
                                *$field = ParamType::from_param(value).ok_or_else(|| {
                                    format!("parameter `{key}` of {name} has another type")
                                })?;
                                return Ok(());
                            }
                        )+)?
                    } )+
                }
                Err(format!("{name} has no attribute `{key}`"))
            }
        }
    };
}

unary_ops! {
    /// `max(x, 0)`.
    Relu => "relu",
    Sigmoid => "sigmoid",
    Tanh => "tanh",
    Exp => "exp",
    Log => "log",
    Sqrt => "sqrt",
    Reciprocal => "reciprocal",
    Neg => "neg",
    Abs => "abs",
    Erf => "erf",
    Floor => "floor",
    Ceil => "ceil",
    /// Round half to even.
    Round => "round",
    Sign => "sign",
    /// Logical not (bool only).
    Not => "not",
    /// `x * max(0, min(1, x/6 + 1/2))`.
    HardSwish => "hard_swish",
    /// `ln(1 + e^x)`.
    Softplus => "softplus",
    /// `x / (1 + |x|)`.
    Softsign => "softsign",
    Sin => "sin",
    Cos => "cos",
    Tan => "tan",
    Asin => "asin",
    Acos => "acos",
    Atan => "atan",
    Sinh => "sinh",
    Cosh => "cosh",
    Asinh => "asinh",
    Acosh => "acosh",
    Atanh => "atanh",
    /// `x * tanh(softplus(x))`.
    Mish => "mish",
    /// Output dtype bool.
    IsNaN => "is_nan",
    /// `x < min ? min : x`, then `> max ? max`: NaN stays NaN and `min > max` yields `max`.
    /// [`Op::Clip`] is the same function with bounds given as inputs.
    Clip { min: F32 = F32(f32::NEG_INFINITY), max: F32 = F32(f32::INFINITY) } => "clip",
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid { alpha: F32 = F32(0.2), beta: F32 = F32(0.5) } => "hard_sigmoid",
    /// `x >= 0 ? x : alpha * x`.
    LeakyRelu { alpha: F32 = F32(0.01) } => "leaky_relu",
    /// `x >= 0 ? x : alpha * (e^x - 1)`.
    Elu { alpha: F32 = F32(1.0) } => "elu",
    /// `gamma * (x > 0 ? x : alpha * (e^x - 1))`; the defaults are ONNX's
    /// 1.67326319217681884765625 and 1.05070102214813232421875 (exact f32s).
    Selu {
        alpha: F32 = F32(f32::from_bits(0x3fd6_2d7d)),
        gamma: F32 = F32(f32::from_bits(0x3f86_7d5f)),
    } => "selu",
    /// `0.5 x (1 + erf(x / sqrt 2))`, or the tanh form
    /// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))` when `tanh_approx`.
    Gelu { tanh_approx: bool = false } => "gelu",
    /// SiLU / swish: `x * sigmoid(x)` with the sigmoid rounded to the element type first (f32
    /// for f16/bf16), i.e. exactly `mul(x, sigmoid(x))`.
    Silu => "silu",
    /// `x > alpha ? x : 0` (NaN gives 0).
    ThresholdedRelu { alpha: F32 = F32(1.0) } => "thresholded_relu",
}

impl UnaryOp {
    /// The activations a fused conv/gemm epilogue can apply ([`Epilogue::act`]): relu, clip,
    /// hard_swish, hard_sigmoid, sigmoid, silu and the erf form of gelu.
    pub fn is_epilogue_activation(self) -> bool {
        matches!(
            self,
            UnaryOp::Relu
                | UnaryOp::Clip { .. }
                | UnaryOp::HardSwish
                | UnaryOp::HardSigmoid { .. }
                | UnaryOp::Sigmoid
                | UnaryOp::Silu
                | UnaryOp::Gelu { tanh_approx: false }
        )
    }
}

/// Declares [`BinaryOp`] from one table of variants and text-form names: the enum,
/// [`BinaryOp::ALL`], [`BinaryOp::name`] and [`BinaryOp::from_name`] come from the rows.
macro_rules! binary_ops {
    ($( $(#[$meta:meta])* $variant:ident => $name:literal, )+) => {
        /// Element-wise binary functions with numpy broadcasting. Inputs: `a`, `b` of the same
        /// dtype. Output: broadcast shape; dtype of the inputs, or bool for comparisons and logic.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum BinaryOp {
            $( $(#[$meta])* $variant, )+
        }

        impl BinaryOp {
            /// Every binary op, in declaration order.
            pub const ALL: [BinaryOp; [$(stringify!($variant)),+].len()] =
                [$( BinaryOp::$variant ),+];

            /// The text-form name (`add`, `less_or_equal`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $( BinaryOp::$variant => $name, )+
                }
            }

            /// The op named `name`.
            pub fn from_name(name: &str) -> Option<BinaryOp> {
                match name {
                    $( $name => Some(BinaryOp::$variant), )+
                    _ => None,
                }
            }
        }
    };
}

binary_ops! {
    Add => "add",
    Sub => "sub",
    Mul => "mul",
    /// Integer division truncates toward zero (C semantics, as onnxruntime does).
    Div => "div",
    /// `a ^ b`; the exponent may have a different numeric dtype than the base (ONNX Pow-12+).
    Pow => "pow",
    /// Integer modulo whose sign follows the divisor (Python `%`); for floats use `Fmod`.
    Mod => "mod",
    /// C `fmod`: the sign follows the dividend.
    Fmod => "fmod",
    Max => "max",
    Min => "min",
    /// `a >= 0 ? a : b * a` (PRelu with broadcast slope `b`).
    PRelu => "prelu",
    Equal => "equal",
    Less => "less",
    LessOrEqual => "less_or_equal",
    Greater => "greater",
    GreaterOrEqual => "greater_or_equal",
    And => "and",
    Or => "or",
    Xor => "xor",
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

    /// `op(a, b)` equals `op(b, a)` for all inputs (CSE and the e-graph's mirrored rules rely on
    /// it).
    pub fn is_commutative(self) -> bool {
        matches!(
            self,
            BinaryOp::Add
                | BinaryOp::Mul
                | BinaryOp::Max
                | BinaryOp::Min
                | BinaryOp::Equal
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
    /// Present on a quantized (integer) convolution, see [`IntegerAttrs`].
    pub integer: Option<IntegerAttrs>,
}

/// A quantized convolution or Gemm: integer operands, exact i32 accumulation, and (with
/// [`Requant`]) requantization to an 8-bit output. The contract (docs/QUANTIZATION.md):
///
/// - Inputs: the data `x` (conv) or `A` (gemm), u8 or i8; the weights `w`/`B`, i8 (or u8), with
///   zero point 0; an optional i32 bias `b [M]` (conv) or `C [N]` (gemm: `alpha = beta = 1`,
///   `trans_a` false). No residual and no channel scale; the epilogue's activation must be none
///   (a Relu or Clip is folded into `min`/`max`).
/// - `acc[c] = b[c] + Σ_k (x_k - x_zero_point) · w_ck` in i32, wrapping; a convolution's padding
///   holds `x_zero_point` (it is real zero), so padded taps contribute nothing.
/// - Without `requant` the output is `acc` (i32). With it, `y = clamp(zero_point + r(acc[c],
///   multiplier[c]), min, max)` as `to`, where `r` is the rounding [`Requant::mode`] names
///   (`multiplier` has one entry per output channel, or one for all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IntegerAttrs {
    pub x_zero_point: i32,
    pub requant: Option<Requant>,
}

/// Requantization of i32 accumulators (see [`IntegerAttrs`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requant {
    /// u8 or i8.
    pub to: DType,
    /// The real multipliers `s_x · s_w[c] / s_y` (one per output channel, or one), positive.
    pub multiplier: Vec<F32>,
    /// The output's scale `s_y` (what the output type's quantization parameters say; the
    /// arithmetic uses only `multiplier`).
    pub scale: F32,
    pub zero_point: i32,
    /// Bounds of the output, within `to`'s range (narrowed by a folded Relu or Clip).
    pub min: i32,
    pub max: i32,
    /// How `acc · multiplier` is rounded to an integer.
    pub mode: RequantMode,
}

impl Default for Requant {
    fn default() -> Self {
        Requant {
            to: DType::U8,
            multiplier: Vec::new(),
            scale: F32(1.0),
            zero_point: 0,
            min: 0,
            max: 255,
            mode: RequantMode::FixedPoint,
        }
    }
}

/// The arithmetic of a [`Requant`]: `r(acc, M)`, the integer that `acc · M` becomes before the
/// zero point is added and the bounds applied (docs/QUANTIZATION.md "Integer semantics").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequantMode {
    /// TFLite's single-rounding fixed-point multiply, [`crate::quant::requantize`]: `M` as a
    /// 31-bit multiplier and a shift, halves rounded toward +∞. Kestrel's own quantized models.
    #[default]
    FixedPoint,
    /// onnxruntime's (MLAS's) float requantization, [`crate::quant::requantize_float`]:
    /// `round_half_even(f32(acc) · M)` with one f32 multiply. Models quantized elsewhere, so
    /// that Kestrel gives onnxruntime's integers.
    Float,
}

impl RequantMode {
    /// The name in the IR text (`requant_mode=float`).
    pub fn name(self) -> &'static str {
        match self {
            RequantMode::FixedPoint => "fixed_point",
            RequantMode::Float => "float",
        }
    }

    /// The mode called `name` (see [`RequantMode::name`]).
    pub fn from_name(name: &str) -> Option<RequantMode> {
        match name {
            "fixed_point" => Some(RequantMode::FixedPoint),
            "float" => Some(RequantMode::Float),
            _ => None,
        }
    }
}

/// The sum of two quantized tensors, as onnxruntime's QLinearAdd computes it (docs/QUANTIZATION.md):
/// `y = clamp(zero_point + round_half_even(f32((a - a_zero_point) · a_ratio) + f32((b -
/// b_zero_point) · b_ratio)), min, max)` as `to`, every product and the sum rounded to f32 (no
/// fused multiply-add), where `a_ratio = s_a / s_y`, `b_ratio = s_b / s_y`. Inputs u8 or i8 with
/// numpy broadcasting. `scale` is `s_y`, for the output type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuantizedAddAttrs {
    pub a_zero_point: i32,
    pub a_ratio: F32,
    pub b_zero_point: i32,
    pub b_ratio: F32,
    pub to: DType,
    pub scale: F32,
    pub zero_point: i32,
    pub min: i32,
    pub max: i32,
}

impl Default for QuantizedAddAttrs {
    fn default() -> Self {
        QuantizedAddAttrs {
            a_zero_point: 0,
            a_ratio: F32(1.0),
            b_zero_point: 0,
            b_ratio: F32(1.0),
            to: DType::U8,
            scale: F32(1.0),
            zero_point: 0,
            min: 0,
            max: 255,
        }
    }
}

/// The product of two quantized tensors, as onnxruntime's QLinearMul computes it (MLAS, x86-64):
/// `y = clamp(round_half_even(f32(f32(p) · ratio) + f32(zero_point)), min, max)` as `to`, with the
/// exact product `p = (a - a_zero_point) · (b - b_zero_point)` (i32) and `ratio = s_a · s_b / s_y`
/// evaluated in f32 from left to right (no fused multiply-add anywhere). Inputs u8 or i8 with numpy
/// broadcasting. `scale` is `s_y`, for the output type (docs/QUANTIZATION.md).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuantizedMulAttrs {
    pub a_zero_point: i32,
    pub b_zero_point: i32,
    pub ratio: F32,
    pub to: DType,
    pub scale: F32,
    pub zero_point: i32,
    pub min: i32,
    pub max: i32,
}

impl Default for QuantizedMulAttrs {
    fn default() -> Self {
        QuantizedMulAttrs {
            a_zero_point: 0,
            b_zero_point: 0,
            ratio: F32(1.0),
            to: DType::U8,
            scale: F32(1.0),
            zero_point: 0,
            min: 0,
            max: 255,
        }
    }
}

/// An 8-bit tensor moved to other quantization parameters: exactly
/// `quantize_linear(dequantize_linear(x, x_scale, x_zero_point), scale, zero_point)` to `to`, i.e.
/// `y = saturate(round_half_even(f32(f32(x - x_zero_point) · x_scale) / scale) + zero_point)`.
/// This is the lookup table onnxruntime's QLinearConcat builds for an input whose parameters
/// differ from the output's (docs/QUANTIZATION.md).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequantizeAttrs {
    pub x_scale: F32,
    pub x_zero_point: i32,
    pub to: DType,
    pub scale: F32,
    pub zero_point: i32,
}

impl RequantizeAttrs {
    /// The output level of input level `x`, exactly as the type's documentation defines it (a NaN
    /// quotient, impossible with positive finite scales, gives the zero point).
    pub fn level(&self, x: i64) -> i64 {
        let (lo, hi) = crate::quant::range_of(self.to).unwrap_or((0, 255));
        let real = (x - self.x_zero_point as i64) as f32 * self.x_scale.0;
        let r = (real / self.scale.0).round_ties_even();
        let z = self.zero_point as f64;
        let v = if r.is_nan() { z } else { r as f64 + z };
        v.clamp(lo as f64, hi as f64) as i64
    }
}

impl Default for RequantizeAttrs {
    fn default() -> Self {
        RequantizeAttrs {
            x_scale: F32(1.0),
            x_zero_point: 0,
            to: DType::U8,
            scale: F32(1.0),
            zero_point: 0,
        }
    }
}

/// Average pooling of a quantized tensor (`[N, C, spatial..]`, u8 or i8), in integers as
/// onnxruntime's QLinearGlobalAveragePool computes it (MLAS, x86-64), for every window:
///
/// - `acc = Σ (x - x_zero_point)` over the window's in-bounds taps, exact in i32;
/// - `count` the window's tap count as the float pool counts it (in-bounds taps, or with
///   `count_include_pad` the taps within the explicit pads; the whole plane when global);
/// - `y = clamp(round_half_even(f32(acc) · r) + zero_point, min, max)` as `to`, where
///   `r = x_scale / (scale · f32(count))` in f32 (`scale` is `s_y`).
///
/// `window` is the pool's geometry (kind average); `None` pools every plane whole (global
/// average pooling, output `[N, C, 1, ..]`). onnxruntime's QLinearAveragePool averages the
/// dequantized floats instead; the two agree within one output step (docs/QUANTIZATION.md).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuantizedPoolAttrs {
    pub window: Option<PoolAttrs>,
    pub x_scale: F32,
    pub x_zero_point: i32,
    pub to: DType,
    pub scale: F32,
    pub zero_point: i32,
    pub min: i32,
    pub max: i32,
}

impl QuantizedPoolAttrs {
    /// The f32 multiplier `x_scale / (scale · count)` of a window of `count` taps.
    pub fn ratio(&self, count: usize) -> f32 {
        self.x_scale.0 / (self.scale.0 * count as f32)
    }
}

fn default_quantized_pool(window: Option<PoolAttrs>) -> QuantizedPoolAttrs {
    QuantizedPoolAttrs {
        window,
        x_scale: F32(1.0),
        x_zero_point: 0,
        to: DType::U8,
        scale: F32(1.0),
        zero_point: 0,
        min: 0,
        max: 255,
    }
}

/// What a fused conv/gemm does to each output element after the accumulation (and bias):
/// `y = act(acc + bias + residual)`. With `residual`, the op has one more input, the residual
/// tensor of the output's shape, after the (then required) bias.
///
/// `act` is `None` (the identity) or a unary op for which [`UnaryOp::is_epilogue_activation`]
/// holds (type inference rejects the others); it computes exactly what the op computes alone.
///
/// `channel_scale` (conv only, group 1) fuses the channel-wise multiply of a squeeze-and-
/// excitation block into the conv that consumes it: the last input is `s [N, C, 1..]` and the
/// conv reads `x * s` (so `y = act(conv(x * s, w) + b + r)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epilogue {
    pub act: Option<UnaryOp>,
    pub residual: bool,
    pub channel_scale: bool,
}

impl Epilogue {
    /// No activation, residual or channel scale: the plain op.
    pub fn is_none(&self) -> bool {
        self.act.is_none() && !self.residual && !self.channel_scale
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
///
/// Graphs hold programs in [canonical](MapProgram::canonical) form (`Graph::add_node` puts them
/// there), the form the text form denotes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapProgram {
    pub code: Vec<MapInstr>,
}

impl MapProgram {
    /// The same function in canonical form: the instructions the result depends on, in
    /// post-order from the result (operands left to right), each input and each constant (by
    /// bit pattern) defined once, at its first use. Two programs with the same expression DAG
    /// have the same canonical form. A program that reads a register before defining it is
    /// returned unchanged (inference rejects it).
    pub fn canonical(&self) -> MapProgram {
        match self.code.len().checked_sub(1) {
            Some(root) => Self::canonical_from(&self.code, root).unwrap_or_else(|| self.clone()),
            None => self.clone(),
        }
    }

    /// The canonical program computing register `root` of `code`; `None` if a register is read
    /// before it is defined (or `root` is out of range).
    pub fn canonical_from(code: &[MapInstr], root: usize) -> Option<MapProgram> {
        if root >= code.len() {
            return None;
        }
        for (i, ins) in code.iter().enumerate() {
            let ok = match *ins {
                MapInstr::Unary(_, a) => (a as usize) < i,
                MapInstr::Binary(_, a, b) => (a as usize) < i && (b as usize) < i,
                MapInstr::Input(_) | MapInstr::Const(_) => true,
            };
            if !ok {
                return None;
            }
        }
        let mut new: Vec<Option<u16>> = vec![None; code.len()];
        let mut out: Vec<MapInstr> = Vec::new();
        let mut leaves: Vec<(MapInstr, u16)> = Vec::new();
        // (register, operands already placed); operands are pushed last-first so that the
        // first operand is placed first.
        let mut stack = vec![(root, false)];
        while let Some((i, expanded)) = stack.pop() {
            if new[i].is_some() {
                continue;
            }
            let ins = code[i];
            let placed = |r: u16| new[r as usize].expect("operand placed before its user");
            let emit = match ins {
                MapInstr::Input(_) | MapInstr::Const(_) => {
                    let same = |l: &MapInstr| match (l, ins) {
                        (MapInstr::Input(a), MapInstr::Input(b)) => *a == b,
                        (MapInstr::Const(a), MapInstr::Const(b)) => a == &b,
                        _ => false,
                    };
                    if let Some(&(_, r)) = leaves.iter().find(|(l, _)| same(l)) {
                        new[i] = Some(r);
                        continue;
                    }
                    ins
                }
                MapInstr::Unary(u, a) if expanded => MapInstr::Unary(u, placed(a)),
                MapInstr::Binary(b, x, y) if expanded => MapInstr::Binary(b, placed(x), placed(y)),
                MapInstr::Unary(_, a) => {
                    stack.extend([(i, true), (a as usize, false)]);
                    continue;
                }
                MapInstr::Binary(_, x, y) => {
                    stack.extend([(i, true), (y as usize, false), (x as usize, false)]);
                    continue;
                }
            };
            let r = u16::try_from(out.len()).ok()?;
            if matches!(emit, MapInstr::Input(_) | MapInstr::Const(_)) {
                leaves.push((emit, r));
            }
            out.push(emit);
            new[i] = Some(r);
        }
        Some(MapProgram { code: out })
    }

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
    /// Present on a quantized (integer) Gemm, see [`IntegerAttrs`].
    pub integer: Option<IntegerAttrs>,
}

impl Default for GemmAttrs {
    fn default() -> Self {
        GemmAttrs {
            alpha: F32(1.0),
            beta: F32(1.0),
            trans_a: false,
            trans_b: false,
            epilogue: Epilogue::default(),
            integer: None,
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
    /// `(x, min, [max]) -> clip`, the function of [`UnaryOp::Clip`] with bounds known only at run
    /// time: `min`/`max` are scalars of x's dtype, which may also be an integer type (integer
    /// bounds need not fit an f32 parameter). The importer produces [`UnaryOp::Clip`] when x is a
    /// float and the bounds are constants exact in f32 (or absent); an absent `max` is
    /// unbounded. With no bound at all, a float Clip is `UnaryOp::Clip` and an integer one
    /// `Identity`.
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
    /// `(a, b)`, 8-bit quantized, broadcast together: the sum requantized, see
    /// [`QuantizedAddAttrs`].
    QuantizedAdd(QuantizedAddAttrs),
    /// `(a, b)`, 8-bit quantized, broadcast together: the product requantized, see
    /// [`QuantizedMulAttrs`].
    QuantizedMul(QuantizedMulAttrs),
    /// `(x)`, 8-bit quantized: `x` at other quantization parameters, see [`RequantizeAttrs`].
    Requantize(RequantizeAttrs),
    /// `(x)`, 8-bit quantized: average pooling in integers, see [`QuantizedPoolAttrs`].
    QuantizedAveragePool(QuantizedPoolAttrs),
    /// `(x: f32) -> (y: u8 of x's shape, y_scale: f32 scalar, y_zero_point: u8 scalar)`: run-time
    /// activation quantization (ONNX DynamicQuantizeLinear-11), everything in f32:
    ///
    /// - `lo = min(0, min x)`, `hi = max(0, max x)` over the elements that are not NaN (the range
    ///   is widened to include 0, so 0.0 quantizes exactly);
    /// - `y_scale = (hi - lo) / 255`, or 1.0 when `hi == lo` (an all-zero input, as onnxruntime
    ///   does; the ONNX reference implementation gives 1/255 there);
    /// - `y_zero_point = round_half_even(clamp(0 - lo / y_scale, 0, 255))`, 255 if that is NaN
    ///   (when `x` holds both infinities, or `y_scale` underflows to 0 for subnormal ranges), as
    ///   onnxruntime's `std::max(0, std::min(255, zp))` gives;
    /// - `y = clamp(round_half_even(x / y_scale) + y_zero_point, 0, 255)`, as `quantize_linear`
    ///   computes it: a NaN element gives the zero point (onnxruntime's kernel gives 0).
    DynamicQuantizeLinear,
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
    /// Element-wise ops: every output element is a function of the input elements at its
    /// (numpy-broadcast) position alone — unary, binary, map, clip, where and cast.
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Unary(_) | Op::Binary(_) | Op::Map(_) | Op::Clip | Op::Where | Op::Cast { .. }
        )
    }

    /// Ops that only give their first input another shape, keeping its elements in row-major
    /// order: reshape, flatten, squeeze, unsqueeze.
    pub fn is_reshape(&self) -> bool {
        matches!(
            self,
            Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze | Op::Unsqueeze
        )
    }

    /// Views: a reshape or the identity. The output holds the input's bytes unchanged, so a
    /// backend may let it alias the input's buffer.
    pub fn is_view(&self) -> bool {
        self.is_reshape() || matches!(self, Op::Identity)
    }

    /// Number of outputs the node has (all ops but `Split`, `TopK` and `DynamicQuantizeLinear` have
    /// one).
    pub fn num_outputs(&self) -> usize {
        match self {
            Op::Split { num_outputs, .. } => *num_outputs,
            Op::TopK { .. } => 2,
            Op::DynamicQuantizeLinear => 3,
            _ => 1,
        }
    }
}

/// Declares the text-form names of [`Op`] and the op each name denotes with default attributes,
/// one row per name: `pattern => "name" = default [, [required attributes]]`. [`Op::name`] (an
/// exhaustive match, so a new variant without a row does not compile) and [`Op::named`] (its
/// inverse) come from the rows; unary and binary ops are named by their own tables.
macro_rules! op_names {
    ($( $pat:pat => $name:literal = $default:expr $(, [$($req:literal),+])? ; )+) => {
        impl Op {
            /// The text-form name of the op (`conv`, `relu`, `max_pool`, ...): unique per op kind,
            /// except that [`UnaryOp::Clip`] and [`Op::Clip`] are both `clip` (the text form tells
            /// them apart by their number of operands, see [`Op::named`]).
            pub fn name(&self) -> &'static str {
                match self {
                    Op::Unary(u) => u.name(),
                    Op::Binary(b) => b.name(),
                    $( $pat => $name, )+
                }
            }

            /// The names of every op that is neither unary nor binary, in table order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The op named `name` taking `operands` operands, with every attribute at its
            /// default, and the names of its required attributes (those without a default; their
            /// values in the returned op are placeholders). `clip` with one operand is
            /// [`UnaryOp::Clip`], with more [`Op::Clip`]. `None` if no op has that name.
            pub fn named(name: &str, operands: usize) -> Option<(Op, &'static [&'static str])> {
                const NONE: &[&str] = &[];
                if name == "clip" && operands > 1 {
                    return Some((Op::Clip, NONE));
                }
                if let Some(u) = UnaryOp::from_name(name) {
                    return Some((Op::Unary(u), NONE));
                }
                if let Some(b) = BinaryOp::from_name(name) {
                    return Some((Op::Binary(b), NONE));
                }
                Some(match name {
                    $( $name => ($default, &[$($($req),+)?]), )+
                    _ => return None,
                })
            }
        }
    };
}

/// Default `p` of Lp pooling (ONNX).
pub const DEFAULT_LP_P: u32 = 2;

fn default_pool(kind: PoolKind) -> Op {
    Op::Pool(default_window(kind))
}

fn default_window(kind: PoolKind) -> PoolAttrs {
    PoolAttrs {
        kind,
        kernel: vec![],
        strides: vec![],
        pads: vec![],
        dilations: vec![],
        ceil_mode: false,
        count_include_pad: false,
        auto_pad: AutoPad::NotSet,
    }
}

fn default_reduce(kind: ReduceKind) -> Op {
    Op::Reduce(ReduceAttrs {
        kind,
        keepdims: true,
        noop_with_empty_axes: false,
    })
}

fn default_arg(kind: ArgKind) -> Op {
    Op::Arg(ArgAttrs {
        kind,
        axis: 0,
        keepdims: true,
        select_last_index: false,
    })
}

fn default_resize() -> Op {
    Op::Resize(ResizeAttrs {
        by: ResizeBy::Scales,
        mode: ResizeMode::Nearest,
        coord: CoordMode::HalfPixel,
        nearest: NearestMode::RoundPreferFloor,
        cubic_coeff_a: F32(-0.75),
        exclude_outside: false,
        extrapolation_value: F32(0.0),
        antialias: false,
        aspect: AspectPolicy::Stretch,
        axes: vec![],
    })
}

#[rustfmt::skip]
op_names! {
    Op::Map(_) => "map" = Op::Map(MapProgram::default()), ["code"];
    Op::Clip => "clip" = Op::Clip;
    Op::Where => "where" = Op::Where;
    Op::Cast { .. } => "cast" = Op::Cast { to: DType::F32 }, ["to"];
    Op::Conv(_) => "conv" = Op::Conv(ConvAttrs { group: 1, ..Default::default() });
    Op::Gemm(_) => "gemm" = Op::Gemm(GemmAttrs::default());
    Op::MatMul => "matmul" = Op::MatMul;
    Op::BatchNorm { .. } => "batch_norm" = Op::BatchNorm { epsilon: F32(1e-5) };
    Op::Pool(PoolAttrs { kind: PoolKind::Max, .. }) => "max_pool" = default_pool(PoolKind::Max), ["kernel"];
    Op::Pool(PoolAttrs { kind: PoolKind::Average, .. }) => "average_pool" = default_pool(PoolKind::Average), ["kernel"];
    Op::Pool(PoolAttrs { kind: PoolKind::Lp(_), .. }) => "lp_pool" = default_pool(PoolKind::Lp(DEFAULT_LP_P)), ["kernel"];
    Op::GlobalPool(PoolKind::Max) => "global_max_pool" = Op::GlobalPool(PoolKind::Max);
    Op::GlobalPool(PoolKind::Average) => "global_average_pool" = Op::GlobalPool(PoolKind::Average);
    Op::GlobalPool(PoolKind::Lp(_)) => "global_lp_pool" = Op::GlobalPool(PoolKind::Lp(DEFAULT_LP_P));
    Op::Reduce(ReduceAttrs { kind: ReduceKind::Sum, .. }) => "reduce_sum" = default_reduce(ReduceKind::Sum);
    Op::Reduce(ReduceAttrs { kind: ReduceKind::Mean, .. }) => "reduce_mean" = default_reduce(ReduceKind::Mean);
    Op::Reduce(ReduceAttrs { kind: ReduceKind::Max, .. }) => "reduce_max" = default_reduce(ReduceKind::Max);
    Op::Reduce(ReduceAttrs { kind: ReduceKind::Min, .. }) => "reduce_min" = default_reduce(ReduceKind::Min);
    Op::Reduce(ReduceAttrs { kind: ReduceKind::Prod, .. }) => "reduce_prod" = default_reduce(ReduceKind::Prod);
    Op::Reduce(ReduceAttrs { kind: ReduceKind::L1, .. }) => "reduce_l1" = default_reduce(ReduceKind::L1);
    Op::Reduce(ReduceAttrs { kind: ReduceKind::L2, .. }) => "reduce_l2" = default_reduce(ReduceKind::L2);
    Op::Reduce(ReduceAttrs { kind: ReduceKind::LogSum, .. }) => "reduce_log_sum" = default_reduce(ReduceKind::LogSum);
    Op::Reduce(ReduceAttrs { kind: ReduceKind::LogSumExp, .. }) => "reduce_log_sum_exp" = default_reduce(ReduceKind::LogSumExp);
    Op::Reduce(ReduceAttrs { kind: ReduceKind::SumSquare, .. }) => "reduce_sum_square" = default_reduce(ReduceKind::SumSquare);
    Op::Softmax { .. } => "softmax" = Op::Softmax { axis: -1 };
    Op::Attention { .. } => "attention" = Op::Attention { scale: F32(1.0) };
    Op::LogSoftmax { .. } => "log_softmax" = Op::LogSoftmax { axis: -1 };
    Op::LayerNorm { .. } => "layer_norm" = Op::LayerNorm { axis: -1, epsilon: F32(1e-5) };
    Op::Flatten { .. } => "flatten" = Op::Flatten { axis: 1 };
    Op::Reshape { .. } => "reshape" = Op::Reshape { allowzero: false };
    Op::Transpose { .. } => "transpose" = Op::Transpose { perm: vec![] }, ["perm"];
    Op::Concat { .. } => "concat" = Op::Concat { axis: 0 }, ["axis"];
    Op::Split { .. } => "split" = Op::Split { axis: 0, num_outputs: 1 }, ["num_outputs"];
    Op::Slice => "slice" = Op::Slice;
    Op::Gather { .. } => "gather" = Op::Gather { axis: 0 };
    Op::Squeeze => "squeeze" = Op::Squeeze;
    Op::Unsqueeze => "unsqueeze" = Op::Unsqueeze;
    Op::Shape { .. } => "shape" = Op::Shape { start: 0, end: None };
    Op::Size => "size" = Op::Size;
    Op::Expand => "expand" = Op::Expand;
    Op::Tile => "tile" = Op::Tile;
    Op::Range => "range" = Op::Range;
    Op::ConstantOfShape { .. } => "constant_of_shape" = Op::ConstantOfShape { value: Tensor::from_vec(vec![1], vec![0f32]) };
    Op::Identity => "identity" = Op::Identity;
    Op::QuantizeLinear { .. } => "quantize_linear" = Op::QuantizeLinear { axis: 1, to: DType::U8 }, ["to"];
    Op::DequantizeLinear { .. } => "dequantize_linear" = Op::DequantizeLinear { axis: 1 };
    Op::QuantizedAdd(_) => "quantized_add" = Op::QuantizedAdd(QuantizedAddAttrs::default());
    Op::QuantizedMul(_) => "quantized_mul" = Op::QuantizedMul(QuantizedMulAttrs::default());
    Op::Requantize(_) => "requantize" = Op::Requantize(RequantizeAttrs::default());
    Op::QuantizedAveragePool(QuantizedPoolAttrs { window: Some(_), .. }) => "quantized_average_pool" = Op::QuantizedAveragePool(default_quantized_pool(Some(default_window(PoolKind::Average)))), ["kernel"];
    Op::QuantizedAveragePool(QuantizedPoolAttrs { window: None, .. }) => "quantized_global_average_pool" = Op::QuantizedAveragePool(default_quantized_pool(None));
    Op::DynamicQuantizeLinear => "dynamic_quantize_linear" = Op::DynamicQuantizeLinear;
    Op::Resize(_) => "resize" = default_resize(), ["by"];
    Op::Pad { .. } => "pad" = Op::Pad { mode: PadMode::Constant };
    Op::ConvTranspose(_) => "conv_transpose" = Op::ConvTranspose(ConvTransposeAttrs { group: 1, ..Default::default() });
    Op::Arg(ArgAttrs { kind: ArgKind::Max, .. }) => "arg_max" = default_arg(ArgKind::Max);
    Op::Arg(ArgAttrs { kind: ArgKind::Min, .. }) => "arg_min" = default_arg(ArgKind::Min);
    Op::GatherElements { .. } => "gather_elements" = Op::GatherElements { axis: 0 };
    Op::ScatterElements { .. } => "scatter_elements" = Op::ScatterElements { axis: 0, reduction: ScatterReduction::None };
    Op::ScatterNd { .. } => "scatter_nd" = Op::ScatterNd { reduction: ScatterReduction::None };
    Op::Trilu { .. } => "trilu" = Op::Trilu { upper: true };
    Op::CumSum { .. } => "cum_sum" = Op::CumSum { exclusive: false, reverse: false };
    Op::Hardmax { .. } => "hardmax" = Op::Hardmax { axis: -1 };
    Op::LpNormalization { .. } => "lp_normalization" = Op::LpNormalization { axis: -1, p: 2 };
    Op::TopK { .. } => "top_k" = Op::TopK { axis: -1, largest: true, sorted: true };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_name_is_unique_and_denotes_its_op() {
        let mut seen = HashSet::new();
        for u in UnaryOp::ALL {
            assert!(seen.insert(u.name()), "duplicate name {}", u.name());
            assert_eq!(UnaryOp::from_name(u.name()), Some(u));
            assert_eq!(Op::named(u.name(), 1).map(|(o, _)| o), Some(Op::Unary(u)));
        }
        for b in BinaryOp::ALL {
            assert!(seen.insert(b.name()), "duplicate name {}", b.name());
            assert_eq!(BinaryOp::from_name(b.name()), Some(b));
            assert_eq!(Op::named(b.name(), 2).map(|(o, _)| o), Some(Op::Binary(b)));
        }
        for &name in Op::NAMES {
            // `clip` is the one name shared by two kinds, told apart by the operand count.
            assert!(seen.insert(name) || name == "clip", "duplicate name {name}");
            let (op, _) = Op::named(name, 2).unwrap();
            assert_eq!(op.name(), name);
        }
        let unbounded = UnaryOp::Clip {
            min: F32(f32::NEG_INFINITY),
            max: F32(f32::INFINITY),
        };
        assert_eq!(Op::named("clip", 1).unwrap().0, Op::Unary(unbounded));
        assert_eq!(Op::named("clip", 3).unwrap().0, Op::Clip);
        assert!(Op::named("frobnicate", 1).is_none());
    }

    #[test]
    fn parameters_are_read_and_set_by_name() {
        let mut u = UnaryOp::from_name("hard_sigmoid").unwrap();
        assert_eq!(
            u.params(),
            vec![
                ("alpha", Param::Float(F32(0.2))),
                ("beta", Param::Float(F32(0.5)))
            ]
        );
        u.set_param("beta", Param::Float(F32(0.25))).unwrap();
        assert_eq!(
            u,
            UnaryOp::HardSigmoid {
                alpha: F32(0.2),
                beta: F32(0.25)
            }
        );
        assert!(u.set_param("gamma", Param::Float(F32(1.0))).is_err());
        assert!(u.set_param("alpha", Param::Bool(true)).is_err());
        let mut g = UnaryOp::Gelu { tanh_approx: false };
        g.set_param("tanh_approx", Param::Bool(true)).unwrap();
        assert_eq!(g, UnaryOp::Gelu { tanh_approx: true });
        let mut r = UnaryOp::Relu;
        assert!(r.params().is_empty());
        assert!(r.set_param("alpha", Param::Float(F32(1.0))).is_err());
    }

    #[test]
    fn predicates_classify_ops() {
        let views = [
            Op::Reshape { allowzero: false },
            Op::Flatten { axis: 1 },
            Op::Squeeze,
            Op::Unsqueeze,
            Op::Identity,
        ];
        for op in &views {
            assert!(op.is_view(), "{op:?}");
            assert_eq!(op.is_reshape(), *op != Op::Identity, "{op:?}");
            assert!(!op.is_elementwise(), "{op:?}");
        }
        for op in [Op::Transpose { perm: vec![1, 0] }, Op::Expand, Op::MatMul] {
            assert!(!op.is_view() && !op.is_elementwise(), "{op:?}");
        }
        let elementwise = [
            Op::Unary(UnaryOp::Silu),
            Op::Binary(BinaryOp::Add),
            Op::Map(MapProgram::default()),
            Op::Clip,
            Op::Where,
            Op::Cast { to: DType::I8 },
        ];
        for op in &elementwise {
            assert!(op.is_elementwise() && !op.is_view(), "{op:?}");
        }
        assert!(BinaryOp::Mul.is_commutative() && !BinaryOp::Sub.is_commutative());
    }
}
