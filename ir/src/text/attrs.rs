//! Op attributes as name/value pairs.
//!
//! This is the single place that knows each op's attribute names and types; the ops' names and
//! default attributes are the op tables of [`crate::op`] ([`Op::named`], [`UnaryOp::params`]).
//! The text printer and parser use it, and so can any other consumer that needs a flat view of
//! an op (graphviz dumps): [`op_attrs`] lists an op's non-default attributes and
//! [`op_from_parts`] rebuilds an op from its name and attributes.
//!
//! Attribute names are the Rust field names of [`Op`] (`group`, `trans_a`, `num_outputs`, ...).
//! Defaults follow ONNX where ONNX has one; attributes without a default are *required* and are
//! always listed.

use super::number::{fmt_f32, DenseFmt};
use super::program::program_text;
use crate::dtype::{DType, F32};
use crate::op::*;
use crate::tensor::Tensor;
use std::fmt;

/// The value of one attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttrValue {
    /// An integer (also used for `usize` and `u32` fields).
    Int(i64),
    /// A float, compared bitwise.
    Float(F32),
    Bool(bool),
    /// A list of integers (also used for `Vec<usize>` fields).
    Ints(Vec<i64>),
    /// An enum variant spelled as a bare identifier: `linear`, `same_upper`, `half_pixel`.
    Ident(String),
    /// An element type: `u8`.
    DType(DType),
    /// A small constant tensor ([`Op::ConstantOfShape`]'s `value`).
    Tensor(Tensor),
    /// A map program ([`Op::Map`]'s `code`), written as its expressions (`super::program`).
    Map(MapProgram),
}

impl AttrValue {
    /// A short description of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AttrValue::Int(_) => "an integer",
            AttrValue::Float(_) => "a float",
            AttrValue::Bool(_) => "a boolean",
            AttrValue::Ints(_) => "a list of integers",
            AttrValue::Ident(_) => "an identifier",
            AttrValue::DType(_) => "a dtype",
            AttrValue::Tensor(_) => "a tensor",
            AttrValue::Map(_) => "a map program",
        }
    }
}

impl fmt::Display for AttrValue {
    /// The text form: `3`, `0.5`, `true`, `[1,2]`, `linear`, `u8`, `dense<[0.0]> : f32[1]`,
    /// `[r0 = sigmoid(x0), mul(x0, r0)]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Int(v) => write!(f, "{v}"),
            AttrValue::Float(v) => f.write_str(&fmt_f32(v.0)),
            AttrValue::Bool(v) => write!(f, "{v}"),
            AttrValue::Ints(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
            AttrValue::Ident(s) => f.write_str(s),
            AttrValue::DType(d) => f.write_str(d.name()),
            AttrValue::Tensor(t) => {
                write!(f, "{} : {}[", DenseFmt(t), t.dtype())?;
                for (i, d) in t.dims().iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{d}")?;
                }
                f.write_str("]")
            }
            AttrValue::Map(p) => f.write_str(&program_text(p)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Enum spellings.

fn auto_pad_name(a: AutoPad) -> &'static str {
    match a {
        AutoPad::NotSet => "not_set",
        AutoPad::SameUpper => "same_upper",
        AutoPad::SameLower => "same_lower",
        AutoPad::Valid => "valid",
    }
}

fn auto_pad_from(s: &str) -> Option<AutoPad> {
    Some(match s {
        "not_set" => AutoPad::NotSet,
        "same_upper" => AutoPad::SameUpper,
        "same_lower" => AutoPad::SameLower,
        "valid" => AutoPad::Valid,
        _ => return None,
    })
}

fn resize_by_name(b: ResizeBy) -> &'static str {
    match b {
        ResizeBy::Scales => "scales",
        ResizeBy::Sizes => "sizes",
    }
}

fn resize_by_from(s: &str) -> Option<ResizeBy> {
    Some(match s {
        "scales" => ResizeBy::Scales,
        "sizes" => ResizeBy::Sizes,
        _ => return None,
    })
}

fn resize_mode_name(m: ResizeMode) -> &'static str {
    match m {
        ResizeMode::Nearest => "nearest",
        ResizeMode::Linear => "linear",
        ResizeMode::Cubic => "cubic",
    }
}

fn resize_mode_from(s: &str) -> Option<ResizeMode> {
    Some(match s {
        "nearest" => ResizeMode::Nearest,
        "linear" => ResizeMode::Linear,
        "cubic" => ResizeMode::Cubic,
        _ => return None,
    })
}

fn coord_name(c: CoordMode) -> &'static str {
    match c {
        CoordMode::HalfPixel => "half_pixel",
        CoordMode::HalfPixelSymmetric => "half_pixel_symmetric",
        CoordMode::PytorchHalfPixel => "pytorch_half_pixel",
        CoordMode::AlignCorners => "align_corners",
        CoordMode::Asymmetric => "asymmetric",
        CoordMode::TfCropAndResize => "tf_crop_and_resize",
    }
}

fn coord_from(s: &str) -> Option<CoordMode> {
    Some(match s {
        "half_pixel" => CoordMode::HalfPixel,
        "half_pixel_symmetric" => CoordMode::HalfPixelSymmetric,
        "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
        "align_corners" => CoordMode::AlignCorners,
        "asymmetric" => CoordMode::Asymmetric,
        "tf_crop_and_resize" => CoordMode::TfCropAndResize,
        _ => return None,
    })
}

fn nearest_name(n: NearestMode) -> &'static str {
    match n {
        NearestMode::RoundPreferFloor => "round_prefer_floor",
        NearestMode::RoundPreferCeil => "round_prefer_ceil",
        NearestMode::Floor => "floor",
        NearestMode::Ceil => "ceil",
    }
}

fn nearest_from(s: &str) -> Option<NearestMode> {
    Some(match s {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        _ => return None,
    })
}

fn aspect_name(a: AspectPolicy) -> &'static str {
    match a {
        AspectPolicy::Stretch => "stretch",
        AspectPolicy::NotLarger => "not_larger",
        AspectPolicy::NotSmaller => "not_smaller",
    }
}

fn aspect_from(s: &str) -> Option<AspectPolicy> {
    Some(match s {
        "stretch" => AspectPolicy::Stretch,
        "not_larger" => AspectPolicy::NotLarger,
        "not_smaller" => AspectPolicy::NotSmaller,
        _ => return None,
    })
}

fn pad_mode_name(m: PadMode) -> &'static str {
    match m {
        PadMode::Constant => "constant",
        PadMode::Reflect => "reflect",
        PadMode::Edge => "edge",
        PadMode::Wrap => "wrap",
    }
}

fn pad_mode_from(s: &str) -> Option<PadMode> {
    Some(match s {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        _ => return None,
    })
}

fn reduction_name(r: ScatterReduction) -> &'static str {
    match r {
        ScatterReduction::None => "none",
        ScatterReduction::Add => "add",
        ScatterReduction::Mul => "mul",
        ScatterReduction::Max => "max",
        ScatterReduction::Min => "min",
    }
}

fn reduction_from(s: &str) -> Option<ScatterReduction> {
    Some(match s {
        "none" => ScatterReduction::None,
        "add" => ScatterReduction::Add,
        "mul" => ScatterReduction::Mul,
        "max" => ScatterReduction::Max,
        "min" => ScatterReduction::Min,
        _ => return None,
    })
}

const REDUCTIONS: &str = "none, add, mul, max, min";

/// The defaults of `op`'s kind (the op of the same name and operand count, see [`Op::named`]).
fn defaults_of(op: &Op) -> Option<(Op, &'static [&'static str])> {
    Op::named(op.name(), crate::infer::input_arity(op).0)
}

// ---------------------------------------------------------------------------------------------
// Op -> attributes.

fn ints_u(v: &[usize]) -> AttrValue {
    AttrValue::Ints(v.iter().map(|&x| x as i64).collect())
}

fn ident(s: &str) -> AttrValue {
    AttrValue::Ident(s.to_string())
}

/// Every attribute of `op` (defaults included), sorted by name. An `Option` field that is `None`
/// (only `shape`'s `end`) is absent.
pub fn all_attrs(op: &Op) -> Vec<(&'static str, AttrValue)> {
    use AttrValue::*;
    let mut v: Vec<(&'static str, AttrValue)> = match op {
        Op::Map(p) => vec![("code", Map(p.clone()))],
        Op::Unary(u) => u
            .params()
            .into_iter()
            .map(|(k, p)| (k, param_value(p)))
            .collect(),
        Op::Binary(_)
        | Op::Clip
        | Op::Where
        | Op::MatMul
        | Op::Slice
        | Op::Squeeze
        | Op::Unsqueeze
        | Op::Size
        | Op::Expand
        | Op::Tile
        | Op::Range
        | Op::Identity
        | Op::DynamicQuantizeLinear => vec![],
        Op::Cast { to } => vec![("to", DType(*to))],
        Op::Conv(c) => vec![
            ("auto_pad", ident(auto_pad_name(c.auto_pad))),
            ("dilations", ints_u(&c.dilations)),
            ("group", Int(c.group as i64)),
            ("pads", ints_u(&c.pads)),
            ("strides", ints_u(&c.strides)),
        ]
        .into_iter()
        .chain(epilogue_attrs(&c.epilogue))
        .chain(integer_attrs(c.integer.as_ref()))
        .collect(),
        Op::Gemm(g) => vec![
            ("alpha", Float(g.alpha)),
            ("beta", Float(g.beta)),
            ("trans_a", Bool(g.trans_a)),
            ("trans_b", Bool(g.trans_b)),
        ]
        .into_iter()
        .chain(epilogue_attrs(&g.epilogue))
        .chain(integer_attrs(g.integer.as_ref()))
        .collect(),
        Op::BatchNorm { epsilon } => vec![("epsilon", Float(*epsilon))],
        Op::Pool(p) => {
            let mut v = vec![
                ("auto_pad", ident(auto_pad_name(p.auto_pad))),
                ("ceil_mode", Bool(p.ceil_mode)),
                ("count_include_pad", Bool(p.count_include_pad)),
                ("dilations", ints_u(&p.dilations)),
                ("kernel", ints_u(&p.kernel)),
                ("pads", ints_u(&p.pads)),
                ("strides", ints_u(&p.strides)),
            ];
            if let PoolKind::Lp(e) = p.kind {
                v.push(("p", Int(e as i64)));
            }
            v
        }
        Op::GlobalPool(k) => match k {
            PoolKind::Lp(e) => vec![("p", Int(*e as i64))],
            _ => vec![],
        },
        Op::Reduce(r) => vec![
            ("keepdims", Bool(r.keepdims)),
            ("noop_with_empty_axes", Bool(r.noop_with_empty_axes)),
        ],
        Op::Softmax { axis }
        | Op::LogSoftmax { axis }
        | Op::Flatten { axis }
        | Op::Concat { axis }
        | Op::Gather { axis }
        | Op::DequantizeLinear { axis } => vec![("axis", Int(*axis))],
        Op::LayerNorm { axis, epsilon } => vec![("axis", Int(*axis)), ("epsilon", Float(*epsilon))],
        Op::Attention { scale } => vec![("scale", Float(*scale))],
        Op::Reshape { allowzero } => vec![("allowzero", Bool(*allowzero))],
        Op::Transpose { perm } => vec![("perm", ints_u(perm))],
        Op::Split { axis, num_outputs } => vec![
            ("axis", Int(*axis)),
            ("num_outputs", Int(*num_outputs as i64)),
        ],
        Op::Shape { start, end } => {
            let mut v = vec![("start", Int(*start))];
            if let Some(e) = end {
                v.push(("end", Int(*e)));
            }
            v
        }
        Op::ConstantOfShape { value } => vec![("value", Tensor(value.clone()))],
        Op::QuantizeLinear { axis, to } => vec![("axis", Int(*axis)), ("to", DType(*to))],
        Op::QuantizedAdd(q) => vec![
            ("a_ratio", Float(q.a_ratio)),
            ("a_zero_point", Int(q.a_zero_point as i64)),
            ("b_ratio", Float(q.b_ratio)),
            ("b_zero_point", Int(q.b_zero_point as i64)),
            ("max", Int(q.max as i64)),
            ("min", Int(q.min as i64)),
            ("scale", Float(q.scale)),
            ("to", DType(q.to)),
            ("zero_point", Int(q.zero_point as i64)),
        ],
        Op::QuantizedMul(q) => vec![
            ("a_zero_point", Int(q.a_zero_point as i64)),
            ("b_zero_point", Int(q.b_zero_point as i64)),
            ("max", Int(q.max as i64)),
            ("min", Int(q.min as i64)),
            ("ratio", Float(q.ratio)),
            ("scale", Float(q.scale)),
            ("to", DType(q.to)),
            ("zero_point", Int(q.zero_point as i64)),
        ],
        Op::Requantize(q) => vec![
            ("scale", Float(q.scale)),
            ("to", DType(q.to)),
            ("x_scale", Float(q.x_scale)),
            ("x_zero_point", Int(q.x_zero_point as i64)),
            ("zero_point", Int(q.zero_point as i64)),
        ],
        Op::QuantizedAveragePool(q) => {
            let mut v = match &q.window {
                Some(p) => all_attrs(&Op::Pool(p.clone())),
                None => vec![],
            };
            v.extend([
                ("max", Int(q.max as i64)),
                ("min", Int(q.min as i64)),
                ("scale", Float(q.scale)),
                ("to", DType(q.to)),
                ("x_scale", Float(q.x_scale)),
                ("x_zero_point", Int(q.x_zero_point as i64)),
                ("zero_point", Int(q.zero_point as i64)),
            ]);
            v
        }
        Op::Resize(r) => vec![
            ("antialias", Bool(r.antialias)),
            ("aspect", ident(aspect_name(r.aspect))),
            ("axes", Ints(r.axes.clone())),
            ("by", ident(resize_by_name(r.by))),
            ("coord", ident(coord_name(r.coord))),
            ("cubic_coeff_a", Float(r.cubic_coeff_a)),
            ("exclude_outside", Bool(r.exclude_outside)),
            ("extrapolation_value", Float(r.extrapolation_value)),
            ("mode", ident(resize_mode_name(r.mode))),
            ("nearest", ident(nearest_name(r.nearest))),
        ],
        Op::Pad { mode } => vec![("mode", ident(pad_mode_name(*mode)))],
        Op::ConvTranspose(c) => vec![
            ("auto_pad", ident(auto_pad_name(c.auto_pad))),
            ("dilations", ints_u(&c.dilations)),
            ("group", Int(c.group as i64)),
            ("output_padding", ints_u(&c.output_padding)),
            ("output_shape", ints_u(&c.output_shape)),
            ("pads", ints_u(&c.pads)),
            ("strides", ints_u(&c.strides)),
        ],
        Op::Arg(a) => vec![
            ("axis", Int(a.axis)),
            ("keepdims", Bool(a.keepdims)),
            ("select_last_index", Bool(a.select_last_index)),
        ],
        Op::GatherElements { axis } | Op::Hardmax { axis } => vec![("axis", Int(*axis))],
        Op::ScatterElements { axis, reduction } => vec![
            ("axis", Int(*axis)),
            ("reduction", ident(reduction_name(*reduction))),
        ],
        Op::ScatterNd { reduction } => vec![("reduction", ident(reduction_name(*reduction)))],
        Op::Trilu { upper } => vec![("upper", Bool(*upper))],
        Op::CumSum { exclusive, reverse } => {
            vec![("exclusive", Bool(*exclusive)), ("reverse", Bool(*reverse))]
        }
        Op::LpNormalization { axis, p } => vec![("axis", Int(*axis)), ("p", Int(*p as i64))],
        Op::TopK {
            axis,
            largest,
            sorted,
        } => vec![
            ("axis", Int(*axis)),
            ("largest", Bool(*largest)),
            ("sorted", Bool(*sorted)),
        ],
    };
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// The attributes of `op` that differ from their default (and every required attribute),
/// sorted by name.
pub fn op_attrs(op: &Op) -> Vec<(&'static str, AttrValue)> {
    let all = all_attrs(op);
    let Some((def, required)) = defaults_of(op) else {
        return all;
    };
    let defaults = all_attrs(&def);
    all.into_iter()
        .filter(|(k, v)| {
            required.contains(k) || !defaults.iter().any(|(dk, dv)| dk == k && dv == v)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Attributes -> op.

/// An integer attribute that must fit in an i32 (zero points, bounds).
fn small_int(key: &str, v: &AttrValue) -> Result<i32, String> {
    i32::try_from(want_int(key, v)?).map_err(|_| format!("attribute `{key}` is out of range"))
}

fn want_int(key: &str, v: &AttrValue) -> Result<i64, String> {
    match v {
        AttrValue::Int(i) => Ok(*i),
        _ => Err(format!(
            "attribute `{key}` expects an integer, got {}",
            v.kind()
        )),
    }
}

fn want_usize(key: &str, v: &AttrValue) -> Result<usize, String> {
    let i = want_int(key, v)?;
    usize::try_from(i).map_err(|_| format!("attribute `{key}` must be non-negative, got {i}"))
}

fn want_float(key: &str, v: &AttrValue) -> Result<F32, String> {
    match v {
        AttrValue::Float(f) => Ok(*f),
        // Integers are accepted where a float is expected (`alpha=2`) when exactly representable.
        AttrValue::Int(i) if (*i as f32) as i64 == *i && (i.unsigned_abs() <= 1 << 24) => {
            Ok(F32(*i as f32))
        }
        _ => Err(format!(
            "attribute `{key}` expects a float, got {}",
            v.kind()
        )),
    }
}

fn want_bool(key: &str, v: &AttrValue) -> Result<bool, String> {
    match v {
        AttrValue::Bool(b) => Ok(*b),
        _ => Err(format!(
            "attribute `{key}` expects a boolean, got {}",
            v.kind()
        )),
    }
}

fn want_ints(key: &str, v: &AttrValue) -> Result<Vec<i64>, String> {
    match v {
        AttrValue::Ints(l) => Ok(l.clone()),
        _ => Err(format!(
            "attribute `{key}` expects a list of integers, got {}",
            v.kind()
        )),
    }
}

fn want_usizes(key: &str, v: &AttrValue) -> Result<Vec<usize>, String> {
    want_ints(key, v)?
        .into_iter()
        .map(|i| {
            usize::try_from(i)
                .map_err(|_| format!("attribute `{key}` must be non-negative, got {i}"))
        })
        .collect()
}

fn want_dtype(key: &str, v: &AttrValue) -> Result<DType, String> {
    match v {
        AttrValue::DType(d) => Ok(*d),
        AttrValue::Ident(s) => {
            DType::from_name(s).ok_or_else(|| format!("attribute `{key}`: unknown dtype `{s}`"))
        }
        _ => Err(format!(
            "attribute `{key}` expects a dtype, got {}",
            v.kind()
        )),
    }
}

fn want_enum<T>(
    key: &str,
    v: &AttrValue,
    from: fn(&str) -> Option<T>,
    choices: &str,
) -> Result<T, String> {
    match v {
        AttrValue::Ident(s) => from(s).ok_or_else(|| {
            format!("attribute `{key}`: unknown value `{s}` (expected one of {choices})")
        }),
        _ => Err(format!(
            "attribute `{key}` expects one of {choices}, got {}",
            v.kind()
        )),
    }
}

/// The epilogue of a conv/gemm as flat attributes: `epilogue` (the activation's name, default
/// `none`), `epilogue_alpha`/`epilogue_beta` (its first and second float parameters: clip's
/// min/max, hard_sigmoid's alpha/beta; default 0.0 in this form, absent for activations without
/// them), `channel_scale` and `residual` (default false).
fn epilogue_attrs(e: &Epilogue) -> Vec<(&'static str, AttrValue)> {
    let floats = e.act.map(float_params).unwrap_or_default();
    let float = |i: usize| AttrValue::Float(floats.get(i).copied().unwrap_or(F32(0.0)));
    vec![
        ("epilogue", ident(e.act.map_or("none", UnaryOp::name))),
        ("epilogue_alpha", float(0)),
        ("epilogue_beta", float(1)),
        ("channel_scale", AttrValue::Bool(e.channel_scale)),
        ("residual", AttrValue::Bool(e.residual)),
    ]
}

/// A quantized conv/gemm's [`IntegerAttrs`] as flat attributes: `x_zero_point`, and with
/// requantization `requant_to`, `requant_multiplier` (an f32 tensor, one per output channel or
/// one), `requant_scale`, `requant_zero_point`, `requant_min`, `requant_max`, `requant_mode`
/// (`fixed_point` or `float`, default `fixed_point`). All printed whenever
/// the op is quantized (a float op has none of them), so a dump shows the arithmetic in full.
fn integer_attrs(i: Option<&IntegerAttrs>) -> Vec<(&'static str, AttrValue)> {
    let Some(i) = i else { return vec![] };
    let mut v = vec![("x_zero_point", AttrValue::Int(i.x_zero_point as i64))];
    if let Some(r) = &i.requant {
        let m: Vec<f32> = r.multiplier.iter().map(|x| x.0).collect();
        v.extend([
            ("requant_max", AttrValue::Int(r.max as i64)),
            ("requant_min", AttrValue::Int(r.min as i64)),
            ("requant_mode", ident(r.mode.name())),
            (
                "requant_multiplier",
                AttrValue::Tensor(Tensor::from_vec(vec![m.len()], m)),
            ),
            ("requant_scale", AttrValue::Float(r.scale)),
            ("requant_to", AttrValue::DType(r.to)),
            ("requant_zero_point", AttrValue::Int(r.zero_point as i64)),
        ]);
    }
    v
}

/// Sets one of [`integer_attrs`]'s keys on `i` (created when absent).
fn set_integer_attr(i: &mut Option<IntegerAttrs>, key: &str, v: &AttrValue) -> Result<(), String> {
    let i = i.get_or_insert_with(IntegerAttrs::default);
    let small = |key: &str, v: &AttrValue| -> Result<i32, String> {
        i32::try_from(want_int(key, v)?).map_err(|_| format!("attribute `{key}` is out of range"))
    };
    if key == "x_zero_point" {
        i.x_zero_point = small(key, v)?;
        return Ok(());
    }
    let r = i.requant.get_or_insert_with(Requant::default);
    match key {
        "requant_max" => r.max = small(key, v)?,
        "requant_min" => r.min = small(key, v)?,
        "requant_mode" => r.mode = want_enum(key, v, RequantMode::from_name, "fixed_point, float")?,
        "requant_multiplier" => match v {
            AttrValue::Tensor(t) if t.dtype() == DType::F32 && t.dims().len() == 1 => {
                r.multiplier = t.to_f32_vec().into_iter().map(F32).collect()
            }
            _ => {
                return Err(format!(
                    "attribute `{key}` expects a 1-D f32 tensor, got {}",
                    v.kind()
                ))
            }
        },
        "requant_scale" => r.scale = want_float(key, v)?,
        "requant_to" => r.to = want_dtype(key, v)?,
        "requant_zero_point" => r.zero_point = small(key, v)?,
        _ => return Err(format!("unknown attribute `{key}`")),
    }
    Ok(())
}

/// The float parameters of `u`, in declaration order.
fn float_params(u: UnaryOp) -> Vec<F32> {
    u.params()
        .into_iter()
        .filter_map(|(_, p)| match p {
            Param::Float(f) => Some(f),
            Param::Bool(_) => None,
        })
        .collect()
}

/// The epilogue activation named `s`, its float parameters 0.0 (the default of
/// `epilogue_alpha`/`epilogue_beta`).
fn activation_from(s: &str) -> Option<Option<UnaryOp>> {
    if s == "none" {
        return Some(None);
    }
    let mut u = UnaryOp::from_name(s).filter(|u| u.is_epilogue_activation())?;
    for (k, p) in u.params() {
        if let Param::Float(_) = p {
            u.set_param(k, Param::Float(F32(0.0))).ok()?;
        }
    }
    Some(Some(u))
}

/// `none` and the names of the epilogue activations, for error messages.
fn activation_names() -> String {
    std::iter::once("none")
        .chain(
            UnaryOp::ALL
                .into_iter()
                .filter(|u| u.is_epilogue_activation())
                .map(UnaryOp::name),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// Attributes are applied in sorted order, so `epilogue` is set before its parameters.
fn set_epilogue_attr(e: &mut Epilogue, key: &str, v: &AttrValue) -> Result<(), String> {
    match key {
        "epilogue" => {
            let choices = activation_names();
            e.act = want_enum(key, v, activation_from, &choices)?
        }
        "residual" => e.residual = want_bool(key, v)?,
        "channel_scale" => e.channel_scale = want_bool(key, v)?,
        "epilogue_alpha" | "epilogue_beta" => {
            let f = want_float(key, v)?;
            let index = usize::from(key == "epilogue_beta");
            let field = e.act.and_then(|u| {
                u.params()
                    .into_iter()
                    .filter(|(_, p)| matches!(p, Param::Float(_)))
                    .nth(index)
                    .map(|(k, _)| k)
            });
            match (&mut e.act, field) {
                (Some(u), Some(k)) => u.set_param(k, Param::Float(f))?,
                _ => {
                    return Err(format!(
                        "attribute `{key}` needs an epilogue activation with {} float \
                         parameter(s), given before it (clip, hard_sigmoid)",
                        index + 1
                    ))
                }
            }
        }
        _ => return Err(format!("unknown epilogue attribute `{key}`")),
    }
    Ok(())
}

/// A unary op's parameter as an attribute value.
pub(crate) fn param_value(p: Param) -> AttrValue {
    match p {
        Param::Float(f) => AttrValue::Float(f),
        Param::Bool(b) => AttrValue::Bool(b),
    }
}

/// Sets parameter `key` of `u` from an attribute value of the parameter's type.
pub(crate) fn set_param(u: &mut UnaryOp, key: &str, v: &AttrValue) -> Result<(), String> {
    let Some((_, current)) = u.params().into_iter().find(|(k, _)| *k == key) else {
        return Err(format!("{} has no attribute `{key}`", u.name()));
    };
    let value = match current {
        Param::Float(_) => Param::Float(want_float(key, v)?),
        Param::Bool(_) => Param::Bool(want_bool(key, v)?),
    };
    u.set_param(key, value)
}

const AUTO_PAD: &str = "not_set, same_upper, same_lower, valid";

/// Sets one attribute of `op`; `Err` if the op has no such attribute or the value has the wrong type.
fn set_attr(op: &mut Op, key: &str, v: &AttrValue) -> Result<(), String> {
    let unknown = |op: &Op| Err(format!("{} has no attribute `{key}`", op.name()));
    match op {
        Op::Map(p) => match key {
            "code" => match v {
                AttrValue::Map(m) => *p = m.clone(),
                _ => {
                    return Err(format!(
                        "attribute `code` expects a map program (`[mul(x0, x1)]`), got {}",
                        v.kind()
                    ))
                }
            },
            _ => return unknown(op),
        },
        Op::Unary(u) => set_param(u, key, v)?,
        Op::Cast { to } => match key {
            "to" => *to = want_dtype(key, v)?,
            _ => return unknown(op),
        },
        Op::Conv(c) => match key {
            "auto_pad" => c.auto_pad = want_enum(key, v, auto_pad_from, AUTO_PAD)?,
            "dilations" => c.dilations = want_usizes(key, v)?,
            "group" => c.group = want_usize(key, v)?,
            "pads" => c.pads = want_usizes(key, v)?,
            "strides" => c.strides = want_usizes(key, v)?,
            _ if key.starts_with("epilogue") || key == "residual" || key == "channel_scale" => {
                set_epilogue_attr(&mut c.epilogue, key, v)?
            }
            _ if key.starts_with("requant_") || key == "x_zero_point" => {
                set_integer_attr(&mut c.integer, key, v)?
            }
            _ => return unknown(op),
        },
        Op::Gemm(g) => match key {
            "alpha" => g.alpha = want_float(key, v)?,
            "beta" => g.beta = want_float(key, v)?,
            "trans_a" => g.trans_a = want_bool(key, v)?,
            "trans_b" => g.trans_b = want_bool(key, v)?,
            _ if key.starts_with("epilogue") || key == "residual" => {
                set_epilogue_attr(&mut g.epilogue, key, v)?
            }
            _ if key.starts_with("requant_") || key == "x_zero_point" => {
                set_integer_attr(&mut g.integer, key, v)?
            }
            _ => return unknown(op),
        },
        Op::BatchNorm { epsilon } => match key {
            "epsilon" => *epsilon = want_float(key, v)?,
            _ => return unknown(op),
        },
        Op::Pool(p) => match key {
            "auto_pad" => p.auto_pad = want_enum(key, v, auto_pad_from, AUTO_PAD)?,
            "ceil_mode" => p.ceil_mode = want_bool(key, v)?,
            "count_include_pad" => p.count_include_pad = want_bool(key, v)?,
            "dilations" => p.dilations = want_usizes(key, v)?,
            "kernel" => p.kernel = want_usizes(key, v)?,
            "pads" => p.pads = want_usizes(key, v)?,
            "strides" => p.strides = want_usizes(key, v)?,
            "p" if matches!(p.kind, PoolKind::Lp(_)) => p.kind = PoolKind::Lp(want_p(key, v)?),
            _ => return unknown(op),
        },
        Op::GlobalPool(k) => match key {
            "p" if matches!(k, PoolKind::Lp(_)) => *k = PoolKind::Lp(want_p(key, v)?),
            _ => return unknown(op),
        },
        Op::Reduce(r) => match key {
            "keepdims" => r.keepdims = want_bool(key, v)?,
            "noop_with_empty_axes" => r.noop_with_empty_axes = want_bool(key, v)?,
            _ => return unknown(op),
        },
        Op::Softmax { axis }
        | Op::LogSoftmax { axis }
        | Op::Flatten { axis }
        | Op::Concat { axis }
        | Op::Gather { axis }
        | Op::DequantizeLinear { axis } => match key {
            "axis" => *axis = want_int(key, v)?,
            _ => return unknown(op),
        },
        Op::LayerNorm { axis, epsilon } => match key {
            "axis" => *axis = want_int(key, v)?,
            "epsilon" => *epsilon = want_float(key, v)?,
            _ => return unknown(op),
        },
        Op::Attention { scale } => match key {
            "scale" => *scale = want_float(key, v)?,
            _ => return unknown(op),
        },
        Op::Reshape { allowzero } => match key {
            "allowzero" => *allowzero = want_bool(key, v)?,
            _ => return unknown(op),
        },
        Op::Transpose { perm } => match key {
            "perm" => *perm = want_usizes(key, v)?,
            _ => return unknown(op),
        },
        Op::Split { axis, num_outputs } => match key {
            "axis" => *axis = want_int(key, v)?,
            "num_outputs" => *num_outputs = want_usize(key, v)?,
            _ => return unknown(op),
        },
        Op::Shape { start, end } => match key {
            "start" => *start = want_int(key, v)?,
            "end" => *end = Some(want_int(key, v)?),
            _ => return unknown(op),
        },
        Op::ConstantOfShape { value } => match key {
            "value" => match v {
                AttrValue::Tensor(t) => *value = t.clone(),
                _ => {
                    return Err(format!(
                        "attribute `value` expects a tensor (`dense<0.0> : f32[1]`), got {}",
                        v.kind()
                    ))
                }
            },
            _ => return unknown(op),
        },
        Op::QuantizeLinear { axis, to } => match key {
            "axis" => *axis = want_int(key, v)?,
            "to" => *to = want_dtype(key, v)?,
            _ => return unknown(op),
        },
        Op::QuantizedAdd(q) => {
            let small = |v: &AttrValue| -> Result<i32, String> {
                i32::try_from(want_int(key, v)?)
                    .map_err(|_| format!("attribute `{key}` is out of range"))
            };
            match key {
                "a_ratio" => q.a_ratio = want_float(key, v)?,
                "a_zero_point" => q.a_zero_point = small(v)?,
                "b_ratio" => q.b_ratio = want_float(key, v)?,
                "b_zero_point" => q.b_zero_point = small(v)?,
                "max" => q.max = small(v)?,
                "min" => q.min = small(v)?,
                "scale" => q.scale = want_float(key, v)?,
                "to" => q.to = want_dtype(key, v)?,
                "zero_point" => q.zero_point = small(v)?,
                _ => return unknown(op),
            }
        }
        Op::QuantizedMul(q) => match key {
            "a_zero_point" => q.a_zero_point = small_int(key, v)?,
            "b_zero_point" => q.b_zero_point = small_int(key, v)?,
            "max" => q.max = small_int(key, v)?,
            "min" => q.min = small_int(key, v)?,
            "ratio" => q.ratio = want_float(key, v)?,
            "scale" => q.scale = want_float(key, v)?,
            "to" => q.to = want_dtype(key, v)?,
            "zero_point" => q.zero_point = small_int(key, v)?,
            _ => return unknown(op),
        },
        Op::Requantize(q) => match key {
            "scale" => q.scale = want_float(key, v)?,
            "to" => q.to = want_dtype(key, v)?,
            "x_scale" => q.x_scale = want_float(key, v)?,
            "x_zero_point" => q.x_zero_point = small_int(key, v)?,
            "zero_point" => q.zero_point = small_int(key, v)?,
            _ => return unknown(op),
        },
        Op::QuantizedAveragePool(q) => match key {
            "max" => q.max = small_int(key, v)?,
            "min" => q.min = small_int(key, v)?,
            "scale" => q.scale = want_float(key, v)?,
            "to" => q.to = want_dtype(key, v)?,
            "x_scale" => q.x_scale = want_float(key, v)?,
            "x_zero_point" => q.x_zero_point = small_int(key, v)?,
            "zero_point" => q.zero_point = small_int(key, v)?,
            "p" => return unknown(op),
            _ => match &mut q.window {
                Some(p) => {
                    let mut pool = Op::Pool(p.clone());
                    set_attr(&mut pool, key, v)?;
                    if let Op::Pool(p2) = pool {
                        *p = p2;
                    }
                }
                None => return unknown(op),
            },
        },
        Op::Resize(r) => match key {
            "antialias" => r.antialias = want_bool(key, v)?,
            "aspect" => {
                r.aspect = want_enum(key, v, aspect_from, "stretch, not_larger, not_smaller")?
            }
            "axes" => r.axes = want_ints(key, v)?,
            "by" => r.by = want_enum(key, v, resize_by_from, "scales, sizes")?,
            "coord" => {
                r.coord = want_enum(
                    key,
                    v,
                    coord_from,
                    "half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, \
                     asymmetric, tf_crop_and_resize",
                )?
            }
            "cubic_coeff_a" => r.cubic_coeff_a = want_float(key, v)?,
            "exclude_outside" => r.exclude_outside = want_bool(key, v)?,
            "extrapolation_value" => r.extrapolation_value = want_float(key, v)?,
            "mode" => r.mode = want_enum(key, v, resize_mode_from, "nearest, linear, cubic")?,
            "nearest" => {
                r.nearest = want_enum(
                    key,
                    v,
                    nearest_from,
                    "round_prefer_floor, round_prefer_ceil, floor, ceil",
                )?
            }
            _ => return unknown(op),
        },
        Op::Pad { mode } => match key {
            "mode" => *mode = want_enum(key, v, pad_mode_from, "constant, reflect, edge, wrap")?,
            _ => return unknown(op),
        },
        Op::ConvTranspose(c) => match key {
            "auto_pad" => c.auto_pad = want_enum(key, v, auto_pad_from, AUTO_PAD)?,
            "dilations" => c.dilations = want_usizes(key, v)?,
            "group" => c.group = want_usize(key, v)?,
            "output_padding" => c.output_padding = want_usizes(key, v)?,
            "output_shape" => c.output_shape = want_usizes(key, v)?,
            "pads" => c.pads = want_usizes(key, v)?,
            "strides" => c.strides = want_usizes(key, v)?,
            _ => return unknown(op),
        },
        Op::Arg(a) => match key {
            "axis" => a.axis = want_int(key, v)?,
            "keepdims" => a.keepdims = want_bool(key, v)?,
            "select_last_index" => a.select_last_index = want_bool(key, v)?,
            _ => return unknown(op),
        },
        Op::GatherElements { axis } | Op::Hardmax { axis } => match key {
            "axis" => *axis = want_int(key, v)?,
            _ => return unknown(op),
        },
        Op::ScatterElements { axis, reduction } => match key {
            "axis" => *axis = want_int(key, v)?,
            "reduction" => *reduction = want_enum(key, v, reduction_from, REDUCTIONS)?,
            _ => return unknown(op),
        },
        Op::ScatterNd { reduction } => match key {
            "reduction" => *reduction = want_enum(key, v, reduction_from, REDUCTIONS)?,
            _ => return unknown(op),
        },
        Op::Trilu { upper } => match key {
            "upper" => *upper = want_bool(key, v)?,
            _ => return unknown(op),
        },
        Op::CumSum { exclusive, reverse } => match key {
            "exclusive" => *exclusive = want_bool(key, v)?,
            "reverse" => *reverse = want_bool(key, v)?,
            _ => return unknown(op),
        },
        Op::LpNormalization { axis, p } => match key {
            "axis" => *axis = want_int(key, v)?,
            "p" => *p = want_p(key, v)?,
            _ => return unknown(op),
        },
        Op::TopK {
            axis,
            largest,
            sorted,
        } => match key {
            "axis" => *axis = want_int(key, v)?,
            "largest" => *largest = want_bool(key, v)?,
            "sorted" => *sorted = want_bool(key, v)?,
            _ => return unknown(op),
        },
        Op::Binary(_)
        | Op::Clip
        | Op::Where
        | Op::MatMul
        | Op::Slice
        | Op::Squeeze
        | Op::Unsqueeze
        | Op::Size
        | Op::Expand
        | Op::Tile
        | Op::Range
        | Op::Identity
        | Op::DynamicQuantizeLinear => return unknown(op),
    }
    Ok(())
}

fn want_p(key: &str, v: &AttrValue) -> Result<u32, String> {
    let i = want_int(key, v)?;
    u32::try_from(i).map_err(|_| format!("attribute `{key}` must fit in u32, got {i}"))
}

/// Builds the op named `name` taking `operands` operands from its attributes; attributes not
/// given take their default. Fails on an unknown op name, an unknown or duplicated attribute, a
/// value of the wrong type, or a missing required attribute.
pub fn op_from_parts(
    name: &str,
    operands: usize,
    attrs: &[(String, AttrValue)],
) -> Result<Op, String> {
    let (mut op, required) =
        Op::named(name, operands).ok_or_else(|| format!("unknown op `{name}`"))?;
    for (i, (k, v)) in attrs.iter().enumerate() {
        if attrs[..i].iter().any(|(k2, _)| k2 == k) {
            return Err(format!("duplicate attribute `{k}`"));
        }
        set_attr(&mut op, k, v)?;
    }
    for r in required {
        if !attrs.iter().any(|(k, _)| k == r) {
            return Err(format!("{name} requires attribute `{r}`"));
        }
    }
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_print_nothing_and_round_trip() {
        for name in ["conv", "gemm", "softmax", "resize", "lp_pool", "selu"] {
            let (op, req) = Op::named(name, 1).unwrap();
            let attrs = op_attrs(&op);
            assert_eq!(attrs.len(), req.len(), "{name}: {attrs:?}");
            let parts: Vec<_> = attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            assert_eq!(op_from_parts(name, 1, &parts).unwrap(), op);
        }
    }

    #[test]
    fn errors_are_clear() {
        let e = op_from_parts("nope", 1, &[]).unwrap_err();
        assert!(e.contains("unknown op"), "{e}");
        let e = op_from_parts("conv", 2, &[("grop".into(), AttrValue::Int(2))]).unwrap_err();
        assert!(e.contains("no attribute `grop`"), "{e}");
        let e = op_from_parts("conv", 2, &[("group".into(), AttrValue::Bool(true))]).unwrap_err();
        assert!(e.contains("expects an integer"), "{e}");
        let e = op_from_parts("cast", 1, &[]).unwrap_err();
        assert!(e.contains("requires attribute `to`"), "{e}");
        let e = op_from_parts("max_pool", 1, &[("p".into(), AttrValue::Int(2))]).unwrap_err();
        assert!(e.contains("no attribute `p`"), "{e}");
    }
}
