//! Per-op lowering of ONNX nodes (default domain) into IR nodes.
//!
//! Every supported op and every opset-dependent form is handled in the one `match` of [`lower`].
//! Version differences are normalised as `kestrel_ir::op` documents: attributes that later opsets
//! turned into inputs become constant inputs, absent optional inputs in the middle of the list
//! are materialised as constants, and legacy broadcasting is rewritten into numpy broadcasting.

use super::attr::{attr_float, attr_floats, attr_int, attr_ints, attr_string, attr_tensor};
use super::error::{invalid, unsupported, Reason};
use super::external::ExternalFiles;
use super::proto::{AttributeType, NodeProto};
use super::tensor::{convert, dtype_from_onnx};
use kestrel_ir::tensor::f32_to_f16;
use kestrel_ir::{
    ArgAttrs, ArgKind, AspectPolicy, AutoPad, BinaryOp, ConvAttrs, ConvTransposeAttrs, CoordMode,
    DType, GemmAttrs, Graph, NearestMode, Op, PadMode, Param, PoolAttrs, PoolKind, ReduceAttrs,
    ReduceKind, ResizeAttrs, ResizeBy, ResizeMode, ScatterReduction, Tensor, UnaryOp, ValueId, F32,
};
use std::path::Path;

mod quant;

/// The lowering of one ONNX node into the graph being built: the node, the graph, and
/// everything else a lowering needs.
pub(crate) struct NodeLowering<'a> {
    pub g: &'a mut Graph,
    pub node: &'a NodeProto,
    /// The default domain's opset version.
    pub opset: i64,
    /// The opset version the model imports for the node's domain (0 if none).
    pub domain_opset: i64,
    /// The node's inputs; `None` for empty names (absent optional inputs).
    pub inputs: Vec<Option<ValueId>>,
    pub files: &'a mut ExternalFiles,
    pub model_dir: Option<&'a Path>,
    /// Prefix for the names of constants this node creates.
    pub prefix: String,
    /// Whether each output of the node is read by another node or is a graph output.
    pub used: Vec<bool>,
    pub nconst: usize,
}

impl NodeLowering<'_> {
    fn name(&self) -> String {
        self.node.name.clone()
    }

    fn output_used(&self, k: usize) -> bool {
        self.used.get(k).copied().unwrap_or(false)
    }

    fn input(&self, i: usize) -> Result<ValueId, Reason> {
        self.opt(i).ok_or(Reason::MissingInput(i))
    }

    fn opt(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }

    fn add(&mut self, op: Op, inputs: &[ValueId]) -> Result<ValueId, Reason> {
        Ok(self.add_multi(op, inputs)?[0])
    }

    /// Adds a node, or the constants it computes when they follow from the inputs' types alone
    /// (see [`fold_static`]).
    fn add_multi(&mut self, op: Op, inputs: &[ValueId]) -> Result<Vec<ValueId>, Reason> {
        if let Some(t) = fold_static(self.g, &op, inputs) {
            return Ok(vec![self.konst(op.name(), t)]);
        }
        let name = self.name();
        if let Some(ts) = fold_constants(self.g, &op, inputs, &name)? {
            let what = op.name();
            return Ok(ts.into_iter().map(|t| self.konst(what, t)).collect());
        }
        Ok(self.g.add_node(op, inputs, name)?.to_vec())
    }

    fn one(&mut self, op: Op, inputs: &[ValueId]) -> Result<Vec<ValueId>, Reason> {
        Ok(vec![self.add(op, inputs)?])
    }

    fn konst(&mut self, what: &str, t: Tensor) -> ValueId {
        self.nconst += 1;
        let name = format!("{}.{what}", self.prefix);
        self.g.add_const(name, t)
    }

    fn i64s(&mut self, what: &str, v: &[i64]) -> ValueId {
        self.konst(what, Tensor::from_vec(vec![v.len()], v.to_vec()))
    }

    fn scalar(&mut self, what: &str, dtype: DType, v: f64) -> ValueId {
        self.konst(what, scalar_tensor(dtype, v))
    }

    fn dtype(&self, v: ValueId) -> DType {
        self.g.ty(v).dtype
    }

    fn rank(&self, v: ValueId) -> usize {
        self.g.ty(v).rank()
    }

    /// The constant data of input `i` as i64s, when it is a constant.
    fn const_i64s(&self, i: usize) -> Option<Vec<i64>> {
        self.g.const_data(self.opt(i)?).map(|t| t.to_i64_vec())
    }

    fn int(&self, name: &str, default: i64) -> Result<i64, Reason> {
        Ok(attr_int(self.node, name)?.unwrap_or(default))
    }

    fn float(&self, name: &str, default: f32) -> Result<f32, Reason> {
        Ok(attr_float(self.node, name)?.unwrap_or(default))
    }

    fn string<'s>(&'s self, name: &str, default: &'s str) -> Result<&'s str, Reason> {
        Ok(attr_string(self.node, name)?.unwrap_or(default))
    }

    fn req_int(&self, name: &str) -> Result<i64, Reason> {
        attr_int(self.node, name)?.ok_or_else(|| Reason::MissingAttr(name.into()))
    }

    fn req_ints(&self, name: &str) -> Result<Vec<i64>, Reason> {
        Ok(attr_ints(self.node, name)?
            .ok_or_else(|| Reason::MissingAttr(name.into()))?
            .to_vec())
    }

    /// A list of non-negative ints (empty when absent).
    fn usizes(&self, name: &str) -> Result<Vec<usize>, Reason> {
        attr_ints(self.node, name)?
            .unwrap_or(&[])
            .iter()
            .map(|&v| {
                usize::try_from(v).map_err(|_| Reason::AttrValue {
                    name: name.into(),
                    reason: format!("entries must be non-negative, got {v}"),
                })
            })
            .collect()
    }

    fn bad_attr(&self, name: &str, reason: impl Into<String>) -> Reason {
        Reason::AttrValue {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// Unsqueezes `v` with constant axes.
    fn unsqueeze(&mut self, v: ValueId, axes: &[i64]) -> Result<ValueId, Reason> {
        let a = self.i64s("axes", axes);
        self.add(Op::Unsqueeze, &[v, a])
    }

    /// The inputs of a variadic node, all required.
    fn all_inputs(&self) -> Result<Vec<ValueId>, Reason> {
        (0..self.inputs.len()).map(|i| self.input(i)).collect()
    }
}

/// The value of `Shape` and `Size` of an input whose extents are all known: exported models
/// compute reshape targets from shapes, and type inference needs those targets constant to know
/// ranks, so the importer folds them as it goes.
fn fold_static(g: &Graph, op: &Op, inputs: &[ValueId]) -> Option<Tensor> {
    let dims = g.ty(*inputs.first()?).dims()?;
    match op {
        Op::Shape { start, end } => {
            let rank = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v.saturating_add(rank) } else { v }).clamp(0, rank);
            let (s, e) = (clamp(*start), end.map_or(rank, clamp));
            let v: Vec<i64> = dims
                .get(s as usize..e.max(s) as usize)?
                .iter()
                .map(|&d| i64::try_from(d).ok())
                .collect::<Option<_>>()?;
            Some(Tensor::from_vec(vec![v.len()], v))
        }
        Op::Size => {
            let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
            Some(Tensor::scalar(i64::try_from(n).ok()?))
        }
        _ => None,
    }
}

/// Largest output (in elements, over all outputs) that the importer folds.
const FOLD_MAX_ELEMENTS: usize = 4096;

/// Evaluates a node whose inputs are all constants, when its outputs are small: exported models
/// compute shapes with arithmetic on constants (`Mod`, `Slice`, `Concat`, ...), and type
/// inference needs those results constant to know the ranks of later values. Larger results,
/// quantized values and (de)quantization are left as nodes (passes fold what they want), as is
/// any node the interpreter cannot evaluate (it then fails at run time, not at import).
fn fold_constants(
    g: &Graph,
    op: &Op,
    inputs: &[ValueId],
    name: &str,
) -> Result<Option<Vec<Tensor>>, Reason> {
    if matches!(op, Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. }) || inputs.is_empty() {
        return Ok(None);
    }
    let Some(data) = inputs
        .iter()
        .map(|&v| g.const_data(v))
        .collect::<Option<Vec<&Tensor>>>()
    else {
        return Ok(None);
    };
    let types = g.infer_node(op, inputs, name)?;
    let mut total = 0usize;
    for t in &types {
        if t.quant.is_some() {
            return Ok(None);
        }
        match t.numel() {
            Some(n) => total = total.saturating_add(n),
            None => return Ok(None),
        }
    }
    if total > FOLD_MAX_ELEMENTS {
        return Ok(None);
    }
    match kestrel_backends::interp::eval_op(op, &data) {
        Ok(ts)
            if ts.len() == types.len()
                && ts.iter().zip(&types).all(|(t, ty)| {
                    t.dtype() == ty.dtype && Some(t.dims().to_vec()) == ty.dims()
                }) =>
        {
            Ok(Some(ts))
        }
        _ => Ok(None),
    }
}

/// A scalar of `dtype` holding `v` (saturating for integers; `!= 0` for bool).
pub(crate) fn scalar_tensor(dtype: DType, v: f64) -> Tensor {
    let bytes = |b: &[u8]| {
        Tensor::from_bytes(dtype, vec![], bytes::Bytes::copy_from_slice(b))
            .expect("scalar byte width matches its dtype")
    };
    match dtype {
        DType::F32 => Tensor::scalar(v as f32),
        DType::F64 => Tensor::scalar(v),
        DType::F16 => bytes(&f32_to_f16(v as f32).to_le_bytes()),
        DType::BF16 => {
            let f = v as f32;
            let bits = f.to_bits();
            let h = if f.is_nan() {
                0x7fc0
            } else {
                // Round to nearest even.
                ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
            };
            bytes(&h.to_le_bytes())
        }
        DType::I8 => Tensor::scalar(v as i8),
        DType::U8 => Tensor::scalar(v as u8),
        DType::I16 => Tensor::scalar(v as i16),
        DType::U16 => Tensor::scalar(v as u16),
        DType::I32 => Tensor::scalar(v as i32),
        DType::U32 => Tensor::scalar(v as u32),
        DType::I64 => Tensor::scalar(v as i64),
        DType::U64 => Tensor::scalar(v as u64),
        DType::Bool => Tensor::scalar(v != 0.0),
    }
}

/// The lowest and highest value of a dtype (infinities for floats).
fn dtype_bounds(dtype: DType) -> (f64, f64) {
    match dtype.int_range() {
        Some((lo, hi)) => (lo as f64, hi as f64),
        None => (f64::NEG_INFINITY, f64::INFINITY),
    }
}

/// The attributes of Conv, QLinearConv and ConvInteger (`kernel_shape` is implied by the
/// weights).
fn conv_attrs(cx: &NodeLowering) -> Result<ConvAttrs, Reason> {
    Ok(ConvAttrs {
        strides: cx.usizes("strides")?,
        pads: cx.usizes("pads")?,
        dilations: cx.usizes("dilations")?,
        group: usize::try_from(cx.int("group", 1)?)
            .ok()
            .filter(|&g| g >= 1)
            .ok_or_else(|| cx.bad_attr("group", "must be at least 1"))?,
        auto_pad: auto_pad(cx)?,
        epilogue: Default::default(),
        integer: None,
    })
}

fn auto_pad(cx: &NodeLowering) -> Result<AutoPad, Reason> {
    Ok(match cx.string("auto_pad", "NOTSET")? {
        "NOTSET" | "" => AutoPad::NotSet,
        "SAME_UPPER" => AutoPad::SameUpper,
        "SAME_LOWER" => AutoPad::SameLower,
        "VALID" => AutoPad::Valid,
        other => return Err(cx.bad_attr("auto_pad", format!("unknown value \"{other}\""))),
    })
}

/// ONNX ops that are one [`UnaryOp`], by the IR name of that op. Its float parameters are the
/// ONNX attributes of the same names, with the op table's defaults (which are ONNX's). The
/// exporter writes each op under the ONNX name of its row.
pub(crate) const UNARY: &[(&str, &str)] = &[
    ("Relu", "relu"),
    ("Sigmoid", "sigmoid"),
    ("Tanh", "tanh"),
    ("Exp", "exp"),
    ("Log", "log"),
    ("Sqrt", "sqrt"),
    ("Reciprocal", "reciprocal"),
    ("Neg", "neg"),
    ("Abs", "abs"),
    ("Erf", "erf"),
    ("Floor", "floor"),
    ("Ceil", "ceil"),
    ("Round", "round"),
    ("Sign", "sign"),
    ("Not", "not"),
    ("HardSwish", "hard_swish"),
    ("Softplus", "softplus"),
    ("Softsign", "softsign"),
    ("Sin", "sin"),
    ("Cos", "cos"),
    ("Tan", "tan"),
    ("Asin", "asin"),
    ("Acos", "acos"),
    ("Atan", "atan"),
    ("Sinh", "sinh"),
    ("Cosh", "cosh"),
    ("Asinh", "asinh"),
    ("Acosh", "acosh"),
    ("Atanh", "atanh"),
    ("Mish", "mish"),
    ("IsNaN", "is_nan"),
    ("HardSigmoid", "hard_sigmoid"),
    ("LeakyRelu", "leaky_relu"),
    ("Elu", "elu"),
    ("Selu", "selu"),
    ("ThresholdedRelu", "thresholded_relu"),
];

/// The unary op of `op_type` (see [`UNARY`]) with its float parameters read from the node.
fn unary(cx: &NodeLowering, op_type: &str) -> Result<Option<UnaryOp>, Reason> {
    let Some(&(_, name)) = UNARY.iter().find(|(onnx, _)| *onnx == op_type) else {
        return Ok(None);
    };
    let mut u = UnaryOp::from_name(name)
        .ok_or_else(|| invalid(format!("internal: no unary op `{name}`")))?;
    for (key, p) in u.params() {
        if let Param::Float(default) = p {
            let v = cx.float(key, default.0)?;
            u.set_param(key, Param::Float(F32(v))).map_err(invalid)?;
        }
    }
    Ok(Some(u))
}

/// ONNX ops that are one [`BinaryOp`] (besides `Mod`, whose `fmod` attribute picks `mod` or
/// `fmod`, and the variadic `Max`/`Min`/`Sum`/`Mean`). The exporter writes each op under the
/// ONNX name of its row.
pub(crate) const BINARY: &[(&str, BinaryOp)] = &[
    ("Add", BinaryOp::Add),
    ("Sub", BinaryOp::Sub),
    ("Mul", BinaryOp::Mul),
    ("Div", BinaryOp::Div),
    ("Pow", BinaryOp::Pow),
    ("Equal", BinaryOp::Equal),
    ("Less", BinaryOp::Less),
    ("LessOrEqual", BinaryOp::LessOrEqual),
    ("Greater", BinaryOp::Greater),
    ("GreaterOrEqual", BinaryOp::GreaterOrEqual),
    ("And", BinaryOp::And),
    ("Or", BinaryOp::Or),
    ("Xor", BinaryOp::Xor),
];

fn binary(op_type: &str) -> Option<BinaryOp> {
    BINARY
        .iter()
        .find(|(onnx, _)| *onnx == op_type)
        .map(|&(_, b)| b)
}

/// ONNX reductions by [`ReduceKind`]; the exporter writes each kind under the name of its row.
pub(crate) const REDUCE: &[(&str, ReduceKind)] = &[
    ("ReduceSum", ReduceKind::Sum),
    ("ReduceMean", ReduceKind::Mean),
    ("ReduceMax", ReduceKind::Max),
    ("ReduceMin", ReduceKind::Min),
    ("ReduceProd", ReduceKind::Prod),
    ("ReduceL1", ReduceKind::L1),
    ("ReduceL2", ReduceKind::L2),
    ("ReduceLogSum", ReduceKind::LogSum),
    ("ReduceLogSumExp", ReduceKind::LogSumExp),
    ("ReduceSumSquare", ReduceKind::SumSquare),
];

fn reduce_kind(op_type: &str) -> Option<ReduceKind> {
    REDUCE
        .iter()
        .find(|(onnx, _)| *onnx == op_type)
        .map(|&(_, k)| k)
}

/// The domains whose nodes [`lower`] takes: the default one and the `com.microsoft` ops that
/// onnxruntime's quantizer writes.
pub(crate) fn known_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx" || domain == "com.microsoft"
}

/// Lowers one node; returns the IR values of its outputs, in order. It may return fewer values
/// than the node has outputs: the caller rejects the node if a missing output is used.
pub(crate) fn lower(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    if cx.node.domain == "com.microsoft" {
        return quant::lower_com_microsoft(cx).unwrap_or_else(|| {
            Err(Reason::UnsupportedOp {
                op_type: cx.node.op_type.clone(),
                domain: cx.node.domain.clone(),
                opset: cx.domain_opset,
            })
        });
    }
    let op_type = cx.node.op_type.as_str();
    if let Some(u) = unary(cx, op_type)? {
        let x = cx.input(0)?;
        return cx.one(Op::Unary(u), &[x]);
    }
    if let Some(b) = binary(op_type) {
        return lower_binary(cx, b);
    }
    if let Some(kind) = reduce_kind(op_type) {
        return lower_reduce(cx, kind);
    }
    match op_type {
        "Identity" => {
            let x = cx.input(0)?;
            cx.one(Op::Identity, &[x])
        }
        "Dropout" => lower_dropout(cx),
        "Mod" => {
            let (a, b) = (cx.input(0)?, cx.input(1)?);
            let op = if cx.int("fmod", 0)? != 0 {
                BinaryOp::Fmod
            } else {
                BinaryOp::Mod
            };
            cx.one(Op::Binary(op), &[a, b])
        }
        "PRelu" => {
            let x = cx.input(0)?;
            let mut slope = cx.input(1)?;
            // Before opset 7 a 1-D slope applied per channel (axis 1).
            let (rx, rs) = (cx.rank(x), cx.rank(slope));
            if cx.opset < 7 && rx >= 3 && rs == 1 && cx.g.ty(slope).shape[0].known() != Some(1) {
                let axes: Vec<i64> = (1..(rx - 1) as i64).collect();
                slope = cx.unsqueeze(slope, &axes)?;
            }
            cx.one(Op::Binary(BinaryOp::PRelu), &[x, slope])
        }
        "Max" | "Min" | "Sum" | "Mean" => {
            let xs = cx.all_inputs()?;
            let Some((&first, rest)) = xs.split_first() else {
                return Err(invalid(format!("{op_type} needs at least one input")));
            };
            if rest.is_empty() {
                return cx.one(Op::Identity, &[first]);
            }
            let b = match op_type {
                "Max" => BinaryOp::Max,
                "Min" => BinaryOp::Min,
                _ => BinaryOp::Add,
            };
            let mut acc = first;
            for &x in rest {
                acc = cx.add(Op::Binary(b), &[acc, x])?;
            }
            if op_type == "Mean" {
                let dt = cx.dtype(acc);
                let n = cx.scalar("count", dt, xs.len() as f64);
                acc = cx.add(Op::Binary(BinaryOp::Div), &[acc, n])?;
            }
            Ok(vec![acc])
        }
        "Gelu" => {
            let x = cx.input(0)?;
            let tanh_approx = match cx.string("approximate", "none")? {
                "none" => false,
                "tanh" => true,
                other => {
                    return Err(cx.bad_attr("approximate", format!("unknown value \"{other}\"")))
                }
            };
            cx.one(Op::Unary(UnaryOp::Gelu { tanh_approx }), &[x])
        }
        "Clip" => lower_clip(cx),
        "Where" => {
            let (c, a, b) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
            cx.one(Op::Where, &[c, a, b])
        }
        "Cast" => {
            let x = cx.input(0)?;
            // Cast-1 names the type as a string; later versions use a DataType code.
            let to = match super::attr::find(cx.node, "to").map(super::attr::attr_type) {
                None => return Err(Reason::MissingAttr("to".into())),
                Some(AttributeType::String) => {
                    let s = cx.string("to", "")?;
                    dtype_from_name(s)
                        .ok_or_else(|| cx.bad_attr("to", format!("unknown type \"{s}\"")))?
                }
                Some(_) => dtype_from_onnx(i32::try_from(cx.req_int("to")?).unwrap_or(-1))?,
            };
            cx.one(Op::Cast { to }, &[x])
        }
        "CastLike" => {
            // CastLike-15/19/21: Cast to the dtype of the second input (`saturate` concerns only
            // 8-bit float targets, which are unsupported dtypes).
            let (x, like) = (cx.input(0)?, cx.input(1)?);
            let to = cx.dtype(like);
            cx.one(Op::Cast { to }, &[x])
        }
        "ConvTranspose" => {
            let (x, w) = (cx.input(0)?, cx.input(1)?);
            // `kernel_shape` is implied by the weights.
            let attrs = ConvTransposeAttrs {
                strides: cx.usizes("strides")?,
                pads: cx.usizes("pads")?,
                dilations: cx.usizes("dilations")?,
                output_padding: cx.usizes("output_padding")?,
                output_shape: cx.usizes("output_shape")?,
                group: usize::try_from(cx.int("group", 1)?)
                    .ok()
                    .filter(|&g| g >= 1)
                    .ok_or_else(|| cx.bad_attr("group", "must be at least 1"))?,
                auto_pad: auto_pad(cx)?,
            };
            let mut ins = vec![x, w];
            ins.extend(cx.opt(2));
            cx.one(Op::ConvTranspose(attrs), &ins)
        }
        "ArgMax" | "ArgMin" => {
            let x = cx.input(0)?;
            let attrs = ArgAttrs {
                kind: if op_type == "ArgMax" {
                    ArgKind::Max
                } else {
                    ArgKind::Min
                },
                axis: cx.int("axis", 0)?,
                keepdims: cx.int("keepdims", 1)? != 0,
                select_last_index: cx.int("select_last_index", 0)? != 0,
            };
            cx.one(Op::Arg(attrs), &[x])
        }
        "GatherElements" => {
            let (x, i) = (cx.input(0)?, cx.input(1)?);
            let axis = cx.int("axis", 0)?;
            cx.one(Op::GatherElements { axis }, &[x, i])
        }
        // Scatter-9 is ScatterElements-11 under its old name.
        "ScatterElements" | "Scatter" => {
            let (x, i, u) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
            let op = Op::ScatterElements {
                axis: cx.int("axis", 0)?,
                reduction: scatter_reduction(cx)?,
            };
            cx.one(op, &[x, i, u])
        }
        "ScatterND" => {
            let (x, i, u) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
            let op = Op::ScatterNd {
                reduction: scatter_reduction(cx)?,
            };
            cx.one(op, &[x, i, u])
        }
        "Trilu" => {
            let x = cx.input(0)?;
            let upper = cx.int("upper", 1)? != 0;
            let mut ins = vec![x];
            ins.extend(cx.opt(1));
            cx.one(Op::Trilu { upper }, &ins)
        }
        "CumSum" => {
            let (x, a) = (cx.input(0)?, cx.input(1)?);
            let op = Op::CumSum {
                exclusive: cx.int("exclusive", 0)? != 0,
                reverse: cx.int("reverse", 0)? != 0,
            };
            cx.one(op, &[x, a])
        }
        "Hardmax" => lower_softmax(cx),
        "LpNormalization" => {
            let x = cx.input(0)?;
            let p = cx.int("p", 2)?;
            if !matches!(p, 1 | 2) {
                return Err(cx.bad_attr("p", format!("must be 1 or 2, got {p}")));
            }
            let axis = cx.int("axis", -1)?;
            cx.one(Op::LpNormalization { axis, p: p as u32 }, &[x])
        }
        "TopK" => {
            let x = cx.input(0)?;
            // TopK-1 has a `k` attribute; from opset 10 `k` is an i64 [1] input.
            let k = if cx.opset < 10 {
                let k = cx.req_int("k")?;
                cx.i64s("k", &[k])
            } else {
                cx.input(1)?
            };
            let op = Op::TopK {
                axis: cx.int("axis", -1)?,
                largest: cx.int("largest", 1)? != 0,
                sorted: cx.int("sorted", 1)? != 0,
            };
            cx.add_multi(op, &[x, k])
        }
        "Conv" => {
            let (x, w) = (cx.input(0)?, cx.input(1)?);
            let attrs = conv_attrs(cx)?;
            let mut ins = vec![x, w];
            ins.extend(cx.opt(2));
            cx.one(Op::Conv(attrs), &ins)
        }
        "QLinearConv" => quant::qlinear_conv(cx),
        "QLinearMatMul" => quant::qlinear_matmul(cx),
        "ConvInteger" => quant::conv_integer(cx),
        "MatMulInteger" => quant::matmul_integer(cx),
        "Gemm" => {
            let (a, b) = (cx.input(0)?, cx.input(1)?);
            let attrs = GemmAttrs {
                alpha: F32(cx.float("alpha", 1.0)?),
                beta: F32(cx.float("beta", 1.0)?),
                trans_a: cx.int("transA", 0)? != 0,
                trans_b: cx.int("transB", 0)? != 0,
                epilogue: Default::default(),
                integer: None,
            };
            let mut ins = vec![a, b];
            ins.extend(cx.opt(2));
            cx.one(Op::Gemm(attrs), &ins)
        }
        "MatMul" => {
            let (a, b) = (cx.input(0)?, cx.input(1)?);
            cx.one(Op::MatMul, &[a, b])
        }
        "BatchNormalization" => {
            if cx.opset < 9 && cx.int("spatial", 1)? == 0 {
                return Err(unsupported(
                    "BatchNormalization with spatial=0 is not supported",
                ));
            }
            if cx.int("training_mode", 0)? != 0 {
                return Err(unsupported(
                    "BatchNormalization in training mode is not supported",
                ));
            }
            let ins = (0..5).map(|i| cx.input(i)).collect::<Result<Vec<_>, _>>()?;
            let epsilon = F32(cx.float("epsilon", 1e-5)?);
            cx.one(Op::BatchNorm { epsilon }, &ins)
        }
        "MaxPool" | "AveragePool" | "LpPool" => {
            let x = cx.input(0)?;
            let kind = match op_type {
                "MaxPool" => PoolKind::Max,
                "AveragePool" => PoolKind::Average,
                _ => PoolKind::Lp(lp_p(cx)?),
            };
            let attrs = PoolAttrs {
                kind,
                kernel: {
                    let k = cx.usizes("kernel_shape")?;
                    if k.is_empty() {
                        return Err(Reason::MissingAttr("kernel_shape".into()));
                    }
                    k
                },
                strides: cx.usizes("strides")?,
                pads: cx.usizes("pads")?,
                dilations: cx.usizes("dilations")?,
                ceil_mode: cx.int("ceil_mode", 0)? != 0,
                count_include_pad: cx.int("count_include_pad", 0)? != 0,
                auto_pad: auto_pad(cx)?,
            };
            if attrs.kind == PoolKind::Max {
                if let Some(y) = quant::quantized_max_pool(cx, x, &attrs)? {
                    return Ok(y);
                }
            }
            cx.one(Op::Pool(attrs), &[x])
        }
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let x = cx.input(0)?;
            let kind = match op_type {
                "GlobalAveragePool" => PoolKind::Average,
                "GlobalMaxPool" => PoolKind::Max,
                _ => PoolKind::Lp(lp_p(cx)?),
            };
            cx.one(Op::GlobalPool(kind), &[x])
        }
        "Softmax" | "LogSoftmax" => lower_softmax(cx),
        "LayerNormalization" => lower_layer_norm(cx),
        "Flatten" => {
            let x = cx.input(0)?;
            let axis = cx.int("axis", 1)?;
            cx.one(Op::Flatten { axis }, &[x])
        }
        "Reshape" => {
            let x = cx.input(0)?;
            let shape = if cx.opset < 5 {
                let s = cx.req_ints("shape")?;
                cx.i64s("shape", &s)
            } else {
                cx.input(1)?
            };
            let allowzero = cx.int("allowzero", 0)? != 0;
            cx.one(Op::Reshape { allowzero }, &[x, shape])
        }
        "Transpose" => {
            let x = cx.input(0)?;
            let rank = cx.rank(x);
            let perm = match attr_ints(cx.node, "perm")? {
                Some(p) if !p.is_empty() => p
                    .iter()
                    .map(|&v| {
                        let a = if v < 0 { v + rank as i64 } else { v };
                        usize::try_from(a)
                            .ok()
                            .filter(|&a| a < rank)
                            .ok_or_else(|| {
                                cx.bad_attr(
                                    "perm",
                                    format!("axis {v} out of range for rank {rank}"),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                _ => (0..rank).rev().collect(),
            };
            cx.one(Op::Transpose { perm }, &[x])
        }
        "Concat" => {
            let xs = cx.all_inputs()?;
            let axis = if cx.opset < 4 {
                cx.int("axis", 1)?
            } else {
                cx.req_int("axis")?
            };
            cx.one(Op::Concat { axis }, &xs)
        }
        "Split" => lower_split(cx),
        "Slice" => lower_slice(cx),
        "Gather" => {
            let (x, i) = (cx.input(0)?, cx.input(1)?);
            let axis = cx.int("axis", 0)?;
            cx.one(Op::Gather { axis }, &[x, i])
        }
        "Squeeze" | "Unsqueeze" => {
            let x = cx.input(0)?;
            let axes = if cx.opset < 13 {
                match attr_ints(cx.node, "axes")? {
                    Some(a) if !a.is_empty() => Some(cx.i64s("axes", a)),
                    _ => None,
                }
            } else {
                cx.opt(1)
            };
            let mut ins = vec![x];
            ins.extend(axes);
            if op_type == "Squeeze" {
                cx.one(Op::Squeeze, &ins)
            } else {
                if ins.len() < 2 {
                    return Err(Reason::MissingAttr("axes".into()));
                }
                cx.one(Op::Unsqueeze, &ins)
            }
        }
        "Shape" => {
            let x = cx.input(0)?;
            let op = Op::Shape {
                start: cx.int("start", 0)?,
                end: attr_int(cx.node, "end")?,
            };
            cx.one(op, &[x])
        }
        "Size" => {
            let x = cx.input(0)?;
            cx.one(Op::Size, &[x])
        }
        "Expand" => {
            let (x, s) = (cx.input(0)?, cx.input(1)?);
            cx.one(Op::Expand, &[x, s])
        }
        "Tile" => {
            if cx.opset < 6 {
                return Err(unsupported(
                    "Tile before opset 6 (tiles/axis inputs) is not supported",
                ));
            }
            let (x, r) = (cx.input(0)?, cx.input(1)?);
            cx.one(Op::Tile, &[x, r])
        }
        "Range" => {
            let (a, b, c) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
            cx.one(Op::Range, &[a, b, c])
        }
        "ConstantOfShape" => {
            let s = cx.input(0)?;
            let value = match attr_tensor(cx.node, "value")? {
                Some(t) => {
                    let t = convert(t, cx.model_dir, cx.files)?;
                    if t.numel() != 1 {
                        return Err(cx.bad_attr("value", "must hold exactly one element"));
                    }
                    t
                }
                None => Tensor::from_vec(vec![1], vec![0f32]),
            };
            cx.one(Op::ConstantOfShape { value }, &[s])
        }
        "QuantizeLinear" => {
            let (x, scale) = (cx.input(0)?, cx.input(1)?);
            if cx.int("block_size", 0)? != 0 {
                return Err(unsupported(
                    "blocked quantization (block_size) is not supported",
                ));
            }
            let zp = cx.opt(2);
            let to = match zp {
                Some(z) => cx.dtype(z),
                None => match cx.int("output_dtype", 0)? {
                    0 => DType::U8,
                    code => dtype_from_onnx(code as i32)?,
                },
            };
            let mut ins = vec![x, scale];
            ins.extend(zp);
            let axis = cx.int("axis", 1)?;
            cx.one(Op::QuantizeLinear { axis, to }, &ins)
        }
        "DequantizeLinear" => {
            let (x, scale) = (cx.input(0)?, cx.input(1)?);
            if cx.int("block_size", 0)? != 0 {
                return Err(unsupported(
                    "blocked quantization (block_size) is not supported",
                ));
            }
            match cx.int("output_dtype", 0)? {
                0 | 1 => {}
                code => {
                    return Err(unsupported(format!(
                        "DequantizeLinear to output_dtype {code} is not supported (only FLOAT)"
                    )))
                }
            }
            let mut ins = vec![x, scale];
            ins.extend(cx.opt(2));
            let axis = cx.int("axis", 1)?;
            cx.one(Op::DequantizeLinear { axis }, &ins)
        }
        "DynamicQuantizeLinear" => {
            let x = cx.input(0)?;
            cx.add_multi(Op::DynamicQuantizeLinear, &[x])
        }
        "Resize" => lower_resize(cx),
        "Upsample" => lower_upsample(cx),
        "Pad" => lower_pad(cx),
        _ => Err(Reason::UnsupportedOp {
            op_type: op_type.to_string(),
            domain: cx.node.domain.clone(),
            opset: cx.opset,
        }),
    }
}

/// The `reduction` attribute of ScatterElements-16+ / ScatterND-16+ (absent: assignment).
fn scatter_reduction(cx: &NodeLowering) -> Result<ScatterReduction, Reason> {
    Ok(match cx.string("reduction", "none")? {
        "none" => ScatterReduction::None,
        "add" => ScatterReduction::Add,
        "mul" => ScatterReduction::Mul,
        "max" => ScatterReduction::Max,
        "min" => ScatterReduction::Min,
        other => return Err(cx.bad_attr("reduction", format!("unknown value \"{other}\""))),
    })
}

fn dtype_from_name(s: &str) -> Option<DType> {
    Some(match s.to_ascii_uppercase().as_str() {
        "FLOAT" => DType::F32,
        "DOUBLE" => DType::F64,
        "FLOAT16" => DType::F16,
        "BFLOAT16" => DType::BF16,
        "INT8" => DType::I8,
        "UINT8" => DType::U8,
        "INT16" => DType::I16,
        "UINT16" => DType::U16,
        "INT32" => DType::I32,
        "UINT32" => DType::U32,
        "INT64" => DType::I64,
        "UINT64" => DType::U64,
        "BOOL" => DType::Bool,
        _ => return None,
    })
}

/// The exponent `p` of LpPool / GlobalLpPool: a float before opset 2, an int after.
fn lp_p(cx: &NodeLowering) -> Result<u32, Reason> {
    let p = if cx.opset < 2 {
        let f = cx.float("p", 2.0)?;
        if f.fract() != 0.0 || f < 1.0 {
            return Err(cx.bad_attr(
                "p",
                format!("only positive integer exponents are supported, got {f}"),
            ));
        }
        f as i64
    } else {
        cx.int("p", 2)?
    };
    u32::try_from(p)
        .ok()
        .filter(|&p| p >= 1)
        .ok_or_else(|| cx.bad_attr("p", format!("must be a positive integer, got {p}")))
}

/// Element-wise binary ops, including the `broadcast`/`axis` attributes of opsets before 7:
/// with an `axis`, the second input is aligned at that axis of the first by appending unit axes.
fn lower_binary(cx: &mut NodeLowering, b: BinaryOp) -> Result<Vec<ValueId>, Reason> {
    let a = cx.input(0)?;
    let mut y = cx.input(1)?;
    if cx.opset < 7 && cx.int("broadcast", 0)? != 0 {
        if let Some(axis) = attr_int(cx.node, "axis")? {
            let (ra, ry) = (cx.rank(a) as i64, cx.rank(y) as i64);
            let axis = if axis < 0 { axis + ra } else { axis };
            if axis < 0 || axis + ry > ra {
                return Err(cx.bad_attr(
                    "axis",
                    format!("cannot align a rank-{ry} operand at axis {axis} of a rank-{ra} one"),
                ));
            }
            let trailing = ra - axis - ry;
            if trailing > 0 {
                let axes: Vec<i64> = (ry..ry + trailing).collect();
                y = cx.unsqueeze(y, &axes)?;
            }
        }
    }
    cx.one(Op::Binary(b), &[a, y])
}

fn lower_dropout(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    let x = cx.input(0)?;
    // Before opset 7 `is_test` defaulted to training mode; like every runtime running exported
    // models, the importer treats Dropout as inference-mode whatever `is_test` says.
    if let Some(t) = cx.opt(2) {
        match cx.g.const_data(t) {
            Some(d) if d.numel() == 1 && d.get_i64(0) == 0 => {}
            _ => return Err(unsupported(
                "Dropout in training mode (training_mode not a constant false) is not supported",
            )),
        }
    }
    let y = cx.add(Op::Identity, &[x])?;
    if !cx.output_used(1) {
        return Ok(vec![y]);
    }
    // In inference mode the mask is all ones: bool from opset 10, the input's dtype before.
    let value = if cx.opset >= 10 {
        Tensor::from_vec(vec![1], vec![true])
    } else {
        let one = scalar_tensor(cx.dtype(x), 1.0);
        one.reshaped(vec![1])
            .ok_or_else(|| invalid("scalar reshape"))?
    };
    let shape = cx.add(
        Op::Shape {
            start: 0,
            end: None,
        },
        &[x],
    )?;
    let mask = cx.add(Op::ConstantOfShape { value }, &[shape])?;
    Ok(vec![y, mask])
}

/// LayerNormalization; its optional `Mean` and `InvStdDev` outputs (over axes `axis..rank`,
/// kept as unit dims) are computed only when used, in the input's dtype.
fn lower_layer_norm(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    let (x, scale) = (cx.input(0)?, cx.input(1)?);
    let axis = cx.int("axis", -1)?;
    let epsilon = cx.float("epsilon", 1e-5)?;
    let mut ins = vec![x, scale];
    ins.extend(cx.opt(2));
    let y = cx.add(
        Op::LayerNorm {
            axis,
            epsilon: F32(epsilon),
        },
        &ins,
    )?;
    if !cx.output_used(1) && !cx.output_used(2) {
        return Ok(vec![y]);
    }
    let rank = cx.rank(x) as i64;
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 0 || a >= rank {
        return Err(cx.bad_attr("axis", format!("{axis} is out of range for rank {rank}")));
    }
    let axes: Vec<i64> = (a..rank).collect();
    let mean_of = |cx: &mut NodeLowering, v: ValueId| -> Result<ValueId, Reason> {
        let ax = cx.i64s("axes", &axes);
        let attrs = ReduceAttrs {
            kind: ReduceKind::Mean,
            keepdims: true,
            noop_with_empty_axes: false,
        };
        cx.add(Op::Reduce(attrs), &[v, ax])
    };
    let mean = mean_of(cx, x)?;
    let d = cx.add(Op::Binary(BinaryOp::Sub), &[x, mean])?;
    let d2 = cx.add(Op::Binary(BinaryOp::Mul), &[d, d])?;
    let var = mean_of(cx, d2)?;
    let dt = cx.dtype(x);
    let eps = cx.scalar("epsilon", dt, epsilon as f64);
    let v = cx.add(Op::Binary(BinaryOp::Add), &[var, eps])?;
    let s = cx.add(Op::Unary(UnaryOp::Sqrt), &[v])?;
    let inv = cx.add(Op::Unary(UnaryOp::Reciprocal), &[s])?;
    Ok(vec![y, mean, inv])
}

/// Clip: before opset 11 the bounds are float attributes; from 11 they are optional inputs.
///
/// Float data whose bounds are constants exact in f32 (or absent) becomes [`UnaryOp::Clip`]: a
/// missing bound is unbounded (a missing `min` is the dtype's lowest value, -inf for floats).
/// Other Clips keep run-time bounds as inputs ([`Op::Clip`]), a missing `min` materialised as the
/// dtype's lowest value; an integer Clip without bounds is the identity.
fn lower_clip(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    /// One bound of the node.
    #[derive(Clone, Copy)]
    enum Bound {
        Absent,
        /// An attribute (before opset 11), rounded to x's dtype.
        Attr(f64),
        Input(ValueId),
    }
    let x = cx.input(0)?;
    let dt = cx.dtype(x);
    let rounded = |v: f32| scalar_tensor(dt, v as f64).get_f64(0);
    let (lo, hi) = if cx.opset < 11 {
        let b = |v: Option<f32>| v.map_or(Bound::Absent, |v| Bound::Attr(rounded(v)));
        (
            b(attr_float(cx.node, "min")?),
            b(attr_float(cx.node, "max")?),
        )
    } else {
        let b = |v: Option<ValueId>| v.map_or(Bound::Absent, Bound::Input);
        (b(cx.opt(1)), b(cx.opt(2)))
    };
    // A bound as an f32 parameter: absent, or a constant scalar of x's dtype exact in f32.
    let param = |cx: &NodeLowering, b: Bound, unbounded: f32| -> Option<F32> {
        let v = match b {
            Bound::Absent => return Some(F32(unbounded)),
            Bound::Attr(v) => v,
            Bound::Input(id) => {
                let t = cx.g.const_data(id)?;
                if t.dtype() != dt || t.numel() != 1 {
                    return None;
                }
                t.get_f64(0)
            }
        };
        ((v as f32) as f64 == v).then_some(F32(v as f32))
    };
    if dt.is_float() {
        let min = param(cx, lo, f32::NEG_INFINITY);
        let max = param(cx, hi, f32::INFINITY);
        if let (Some(min), Some(max)) = (min, max) {
            return cx.one(Op::Unary(UnaryOp::Clip { min, max }), &[x]);
        }
    }
    let value = |cx: &mut NodeLowering, b: Bound, what: &str| match b {
        Bound::Absent => None,
        Bound::Attr(v) => Some(cx.scalar(what, dt, v)),
        Bound::Input(id) => Some(id),
    };
    let (lo, hi) = (value(cx, lo, "min"), value(cx, hi, "max"));
    let mut ins = vec![x];
    match (lo, hi) {
        (lo, Some(hi)) => {
            let lo = match lo {
                Some(lo) => lo,
                None => cx.scalar("min", dt, dtype_bounds(dt).0),
            };
            ins.extend([lo, hi]);
        }
        (Some(lo), None) => ins.push(lo),
        (None, None) => return cx.one(Op::Identity, &[x]),
    }
    cx.one(Op::Clip, &ins)
}

/// Reductions: `axes` is an attribute before opset 18 (13 for ReduceSum), an input after.
fn lower_reduce(cx: &mut NodeLowering, kind: ReduceKind) -> Result<Vec<ValueId>, Reason> {
    let x = cx.input(0)?;
    let input_from = if kind == ReduceKind::Sum { 13 } else { 18 };
    let axes = if cx.opset < input_from {
        match attr_ints(cx.node, "axes")? {
            Some(a) if !a.is_empty() => Some(cx.i64s("axes", a)),
            _ => None,
        }
    } else {
        cx.opt(1)
    };
    let attrs = ReduceAttrs {
        kind,
        keepdims: cx.int("keepdims", 1)? != 0,
        noop_with_empty_axes: cx.opset >= input_from && cx.int("noop_with_empty_axes", 0)? != 0,
    };
    let mut ins = vec![x];
    ins.extend(axes);
    cx.one(Op::Reduce(attrs), &ins)
}

/// Softmax / LogSoftmax / Hardmax. Before opset 13 the input is coerced to 2-D at `axis`
/// (default 1) and normalised over the trailing block: equal to the one-axis op when `axis` is the
/// last axis, otherwise Flatten(axis) → op(axis 1) → Reshape back to the input's shape.
fn lower_softmax(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    let x = cx.input(0)?;
    let kind = cx.node.op_type.clone();
    let make = |axis: i64| match kind.as_str() {
        "LogSoftmax" => Op::LogSoftmax { axis },
        "Hardmax" => Op::Hardmax { axis },
        _ => Op::Softmax { axis },
    };
    if cx.opset >= 13 {
        let axis = cx.int("axis", -1)?;
        return cx.one(make(axis), &[x]);
    }
    let rank = cx.rank(x) as i64;
    let axis = cx.int("axis", 1)?;
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 0 || a > rank || (rank > 0 && a == rank) {
        return Err(cx.bad_attr("axis", format!("{axis} is out of range for rank {rank}")));
    }
    if rank == 0 || a == rank - 1 {
        return cx.one(make(if rank == 0 { 0 } else { a }), &[x]);
    }
    let flat = cx.add(Op::Flatten { axis: a }, &[x])?;
    let y = cx.add(make(1), &[flat])?;
    let shape = match cx.g.ty(x).dims() {
        Some(d) => {
            let d: Vec<i64> = d.iter().map(|&v| v as i64).collect();
            cx.i64s("shape", &d)
        }
        None => cx.add(
            Op::Shape {
                start: 0,
                end: None,
            },
            &[x],
        )?,
    };
    cx.one(Op::Reshape { allowzero: false }, &[y, shape])
}

/// Split: sizes from the `split` attribute before opset 13 (or input 1 of Split-1), input 1
/// after; the number of parts is the number of node outputs.
fn lower_split(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    let x = cx.input(0)?;
    let n = cx.node.output.len();
    if n == 0 {
        return Err(invalid("Split has no outputs"));
    }
    let split = if cx.opset < 13 {
        match attr_ints(cx.node, "split")? {
            Some(s) if !s.is_empty() => Some(cx.i64s("split", s)),
            _ if cx.opset < 2 => cx.opt(1),
            _ => None,
        }
    } else {
        cx.opt(1)
    };
    if let Some(k) = attr_int(cx.node, "num_outputs")? {
        if k != n as i64 {
            return Err(cx.bad_attr(
                "num_outputs",
                format!("is {k} but the node has {n} outputs"),
            ));
        }
    }
    let axis = cx.int("axis", 0)?;
    let mut ins = vec![x];
    ins.extend(split);
    cx.add_multi(
        Op::Split {
            axis,
            num_outputs: n,
        },
        &ins,
    )
}

/// Slice: starts/ends/axes attributes before opset 10, inputs after. When steps are given
/// without axes, axes `0..len(starts)` are materialised.
fn lower_slice(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    let x = cx.input(0)?;
    if cx.opset < 10 {
        let starts = cx.req_ints("starts")?;
        let ends = cx.req_ints("ends")?;
        let s = cx.i64s("starts", &starts);
        let e = cx.i64s("ends", &ends);
        let mut ins = vec![x, s, e];
        if let Some(axes) = attr_ints(cx.node, "axes")? {
            if !axes.is_empty() {
                let a = cx.i64s("axes", axes);
                ins.push(a);
            }
        }
        return cx.one(Op::Slice, &ins);
    }
    let (s, e) = (cx.input(1)?, cx.input(2)?);
    let mut ins = vec![x, s, e];
    match (cx.opt(3), cx.opt(4)) {
        (Some(a), Some(st)) => ins.extend([a, st]),
        (Some(a), None) => ins.push(a),
        (None, Some(st)) => {
            let n = match cx.const_i64s(1) {
                Some(v) => v.len(),
                None => match cx.g.ty(s).shape.first().and_then(|d| d.known()) {
                    Some(n) => n,
                    None => {
                        return Err(unsupported(
                            "Slice with steps but no axes needs starts of a known length",
                        ))
                    }
                },
            };
            let axes: Vec<i64> = (0..n as i64).collect();
            let a = cx.i64s("axes", &axes);
            ins.extend([a, st]);
        }
        (None, None) => {}
    }
    cx.one(Op::Slice, &ins)
}

/// Full `[begins.., ends..]` pads of a rank-`rank` tensor from pads given for `axes` only.
fn expand_pads(axes: &[i64], given: &[i64], rank: i64) -> Result<Vec<i64>, Reason> {
    if given.len() != 2 * axes.len() {
        return Err(invalid(format!(
            "pads has {} entries for {} axes (needs twice as many)",
            given.len(),
            axes.len()
        )));
    }
    let mut full = vec![0i64; 2 * rank as usize];
    for (k, &axis) in axes.iter().enumerate() {
        let a = if axis < 0 { axis + rank } else { axis };
        if a < 0 || a >= rank {
            return Err(invalid(format!(
                "Pad axis {axis} out of range for rank {rank}"
            )));
        }
        full[a as usize] = given[k];
        full[(a + rank) as usize] = given[k + axes.len()];
    }
    Ok(full)
}

/// [`expand_pads`] computed in the graph, for pads or axes known only at run time:
/// `full[s, j] = sum_k (axes[k] mod rank == j) * pads[s, k]` with `pads` viewed as `[2, K]`.
fn expand_pads_dynamic(
    cx: &mut NodeLowering,
    pads: ValueId,
    axes: ValueId,
    rank: i64,
) -> Result<ValueId, Reason> {
    let mut axes = axes;
    if cx.dtype(axes) != DType::I64 {
        axes = cx.add(Op::Cast { to: DType::I64 }, &[axes])?;
    }
    let r = cx.konst("rank", Tensor::scalar(rank));
    let axes = cx.add(Op::Binary(BinaryOp::Mod), &[axes, r])?;
    let axes = cx.unsqueeze(axes, &[1])?; // [K, 1]
    let range: Vec<i64> = (0..rank).collect();
    let range = cx.i64s("range", &range); // [rank]
    let hit = cx.add(Op::Binary(BinaryOp::Equal), &[axes, range])?; // [K, rank]
    let shape = cx.i64s("shape", &[2, -1]);
    let p = cx.add(Op::Reshape { allowzero: false }, &[pads, shape])?; // [2, K]
    let p = cx.unsqueeze(p, &[2])?; // [2, K, 1]
    let zero = cx.konst("zero", Tensor::scalar(0i64));
    let spread = cx.add(Op::Where, &[hit, p, zero])?; // [2, K, rank]
    let k_axis = cx.i64s("axes", &[1]);
    let sum = ReduceAttrs {
        kind: ReduceKind::Sum,
        keepdims: false,
        noop_with_empty_axes: false,
    };
    let full = cx.add(Op::Reduce(sum), &[spread, k_axis])?; // [2, rank]
    let flat = cx.i64s("shape", &[-1]);
    cx.add(Op::Reshape { allowzero: false }, &[full, flat])
}

fn pad_mode(cx: &NodeLowering) -> Result<PadMode, Reason> {
    Ok(match cx.string("mode", "constant")? {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        other => return Err(cx.bad_attr("mode", format!("unknown value \"{other}\""))),
    })
}

/// Pad: `pads` (`paddings` in Pad-1) and `value` attributes before opset 11; inputs from 11;
/// the `axes` input of opset 18 is expanded into full pads (which must then be constant).
fn lower_pad(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    let x = cx.input(0)?;
    let mode = pad_mode(cx)?;
    if cx.opset < 11 {
        let pads_name = if cx.opset < 2 { "paddings" } else { "pads" };
        let pads = cx.req_ints(pads_name)?;
        let p = cx.i64s("pads", &pads);
        let mut ins = vec![x, p];
        let value = cx.float("value", 0.0)?;
        if mode == PadMode::Constant && value != 0.0 {
            let dt = cx.dtype(x);
            ins.push(cx.scalar("value", dt, value as f64));
        }
        return cx.one(Op::Pad { mode }, &ins);
    }
    let mut pads = cx.input(1)?;
    if let Some(axes_v) = cx.opt(3) {
        let rank = cx.rank(x) as i64;
        pads = match (cx.const_i64s(3), cx.const_i64s(1)) {
            (Some(axes), Some(given)) => {
                let full = expand_pads(&axes, &given, rank)?;
                cx.i64s("pads", &full)
            }
            _ => expand_pads_dynamic(cx, pads, axes_v, rank)?,
        };
    }
    let mut ins = vec![x, pads];
    ins.extend(cx.opt(2));
    cx.one(Op::Pad { mode }, &ins)
}

fn resize_mode(cx: &NodeLowering, s: &str) -> Result<ResizeMode, Reason> {
    Ok(match s {
        "nearest" => ResizeMode::Nearest,
        "linear" | "bilinear" => ResizeMode::Linear,
        "cubic" => ResizeMode::Cubic,
        other => return Err(cx.bad_attr("mode", format!("unknown value \"{other}\""))),
    })
}

/// Whether a value is a tensor with zero elements (an "empty" optional input of Resize).
fn is_empty(g: &Graph, v: ValueId) -> bool {
    g.ty(v).shape.iter().any(|d| d.known() == Some(0))
}

/// Resize-10 takes `(X, scales)` with asymmetric coordinates; Resize-11+ takes
/// `(X, roi, scales, sizes)`, of which one of scales/sizes is present and non-empty.
fn lower_resize(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    let x = cx.input(0)?;
    let mode = resize_mode(cx, cx.string("mode", "nearest")?)?;
    if cx.opset < 11 {
        let scales = cx.input(1)?;
        let attrs = legacy_resize_attrs(mode, ResizeBy::Scales);
        return cx.one(Op::Resize(attrs), &[x, scales]);
    }
    let coord = match cx.string("coordinate_transformation_mode", "half_pixel")? {
        "half_pixel" => CoordMode::HalfPixel,
        "half_pixel_symmetric" => CoordMode::HalfPixelSymmetric,
        "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
        "align_corners" => CoordMode::AlignCorners,
        "asymmetric" => CoordMode::Asymmetric,
        "tf_crop_and_resize" => CoordMode::TfCropAndResize,
        other => {
            return Err(cx.bad_attr(
                "coordinate_transformation_mode",
                format!("unsupported value \"{other}\""),
            ))
        }
    };
    let nearest = match cx.string("nearest_mode", "round_prefer_floor")? {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        other => return Err(cx.bad_attr("nearest_mode", format!("unknown value \"{other}\""))),
    };
    let aspect = match cx.string("keep_aspect_ratio_policy", "stretch")? {
        "stretch" => AspectPolicy::Stretch,
        "not_larger" => AspectPolicy::NotLarger,
        "not_smaller" => AspectPolicy::NotSmaller,
        other => {
            return Err(cx.bad_attr(
                "keep_aspect_ratio_policy",
                format!("unknown value \"{other}\""),
            ))
        }
    };
    let present = |i: usize| cx.opt(i).filter(|&v| !is_empty(cx.g, v));
    let (by, arg) = match (present(3), present(2)) {
        (Some(sizes), _) => (ResizeBy::Sizes, sizes),
        (None, Some(scales)) => (ResizeBy::Scales, scales),
        (None, None) => return Err(invalid("Resize needs non-empty scales or sizes")),
    };
    let attrs = ResizeAttrs {
        by,
        mode,
        coord,
        nearest,
        cubic_coeff_a: F32(cx.float("cubic_coeff_a", -0.75)?),
        exclude_outside: cx.int("exclude_outside", 0)? != 0,
        extrapolation_value: F32(cx.float("extrapolation_value", 0.0)?),
        antialias: cx.int("antialias", 0)? != 0,
        aspect,
        axes: attr_ints(cx.node, "axes")?.unwrap_or(&[]).to_vec(),
    };
    let mut ins = vec![x, arg];
    if coord == CoordMode::TfCropAndResize {
        let roi = present(1).ok_or_else(|| invalid("tf_crop_and_resize needs a roi input"))?;
        ins.push(roi);
    }
    cx.one(Op::Resize(attrs), &ins)
}

/// Resize-10 and Upsample semantics: asymmetric coordinates, nearest rounds down.
fn legacy_resize_attrs(mode: ResizeMode, by: ResizeBy) -> ResizeAttrs {
    ResizeAttrs {
        by,
        mode,
        coord: CoordMode::Asymmetric,
        nearest: NearestMode::Floor,
        cubic_coeff_a: F32(-0.75),
        exclude_outside: false,
        extrapolation_value: F32(0.0),
        antialias: false,
        aspect: AspectPolicy::Stretch,
        axes: vec![],
    }
}

/// Upsample (deprecated): scales are an attribute in opset 7, an input in opset 9.
fn lower_upsample(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    let x = cx.input(0)?;
    if cx.opset < 7 {
        return Err(unsupported(
            "Upsample before opset 7 (height_scale/width_scale) is not supported",
        ));
    }
    let mode = resize_mode(cx, cx.string("mode", "nearest")?)?;
    if mode == ResizeMode::Cubic {
        return Err(cx.bad_attr("mode", "Upsample supports nearest and linear"));
    }
    let scales = if cx.opset < 9 {
        let s = attr_floats(cx.node, "scales")?
            .ok_or_else(|| Reason::MissingAttr("scales".into()))?
            .to_vec();
        cx.konst("scales", Tensor::from_vec(vec![s.len()], s))
    } else {
        cx.input(1)?
    };
    let attrs = legacy_resize_attrs(mode, ResizeBy::Scales);
    cx.one(Op::Resize(attrs), &[x, scales])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unary_entry_names_an_ir_op() {
        for (onnx, name) in UNARY {
            assert!(UnaryOp::from_name(name).is_some(), "{onnx} -> {name}");
        }
    }

    #[test]
    fn scalars_of_every_dtype() {
        for dt in DType::ALL {
            let t = scalar_tensor(dt, 3.0);
            assert_eq!(t.dtype(), dt);
            assert_eq!(t.dims(), &[] as &[usize]);
            assert_eq!(t.get_f64(0), if dt == DType::Bool { 1.0 } else { 3.0 });
        }
        assert_eq!(scalar_tensor(DType::U8, f64::NEG_INFINITY).get_i64(0), 0);
        assert_eq!(scalar_tensor(DType::I8, 1e9).get_i64(0), 127);
        assert_eq!(scalar_tensor(DType::BF16, -1.5).get_f64(0), -1.5);
    }
}
