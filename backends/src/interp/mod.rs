//! The reference interpreter: computes every [`Op`] on concrete [`Tensor`]s exactly as documented
//! in `kestrel_ir::op`, and runs whole graphs.
//!
//! It is the semantic oracle of the compiler, so it favours obvious correctness; only Conv,
//! MatMul and Gemm (the bulk of real networks' work) use a cache-friendly, parallel GEMM.
//!
//! Numeric conventions (applied uniformly by every op family):
//! - floating-point element-wise math is evaluated in f64 and rounded once to the tensor's dtype
//!   (for `+ - * / sqrt` this gives exactly the correctly rounded f32 result); f16/bf16 tensors are
//!   computed the same way and rounded to nearest even on output;
//! - Conv/MatMul/Gemm accumulate in f64 for every float dtype and round once to the output dtype,
//!   so the oracle stays close to exact arithmetic (which integer-fused quantized execution, as
//!   onnxruntime does it, also approximates: with f32 accumulation resnet18.int8 was two output
//!   steps from onnxruntime, with f64 it is within one);
//! - integer element-wise math is evaluated in i64 with wrapping arithmetic and wrapped back to
//!   the tensor's dtype (numpy behaviour); u64 values at or above 2^63 are therefore not
//!   supported by comparisons/division (they are read as negative i64);
//! - no input can make the interpreter panic: user mistakes are [`EvalError`]s, and an op whose
//!   output (or scratch buffer) would exceed [`tensor_byte_limit`] is refused before allocating.

mod conv;
mod elementwise;
pub mod epilogue;
mod index;
mod integer;
mod map;
mod matmul;
mod normalize;
mod pad;
mod pool;
mod quant;
mod quantized;
mod reduce;
mod resize;
mod shape_ops;

use bytes::Bytes;
use kestrel_ir::tensor::{f16_to_f32, f32_to_f16};
use kestrel_ir::{DType, Dim, Graph, NodeId, Op, Tensor, ValueDef};
use std::collections::HashMap;

pub use elementwise::erf;
pub use resize::resize_taps;

/// Largest tensor (or scratch buffer) the interpreter will ever allocate, in bytes (16 GiB).
/// The limit actually applied is [`tensor_byte_limit`], which is lower on small machines.
pub const MAX_TENSOR_BYTES: u128 = 1 << 34;

/// The per-tensor allocation limit: [`MAX_TENSOR_BYTES`], or half the memory the kernel reports
/// available (`MemAvailable` in `/proc/meminfo`) when that is less, so a tiny hostile model asking
/// for a tensor the machine cannot hold gets an error instead of the out-of-memory killer.
pub fn tensor_byte_limit() -> u128 {
    static LIMIT: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let available_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("MemAvailable:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kib| kib.parse::<u128>().ok())
            });
        match available_kib {
            Some(kib) => MAX_TENSOR_BYTES.min(kib * 1024 / 2),
            None => MAX_TENSOR_BYTES,
        }
    })
}

/// Why an op or a graph could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("graph expects {expected} inputs, got {actual}")]
    InputCount { expected: usize, actual: usize },
    #[error("input \"{input}\": expected dtype {expected}, got {actual}")]
    InputDType {
        input: String,
        expected: DType,
        actual: DType,
    },
    #[error("input \"{input}\": expected rank {expected} (shape {shape}), got shape {actual:?}")]
    InputRank {
        input: String,
        expected: usize,
        shape: String,
        actual: Vec<usize>,
    },
    #[error(
        "input \"{input}\": axis {axis} must be {expected}, got {actual} (shape {actual_shape:?})"
    )]
    InputDim {
        input: String,
        axis: usize,
        expected: usize,
        actual: usize,
        actual_shape: Vec<usize>,
    },
    #[error(
        "input \"{input}\": axis {axis} is symbol {symbol}, bound to {bound} by input \"{bound_by}\", but got {actual}"
    )]
    SymbolConflict {
        input: String,
        axis: usize,
        symbol: String,
        bound: usize,
        bound_by: String,
        actual: usize,
    },
    #[error("constant \"{name}\" has no data (elided weights): the graph cannot be run")]
    ElidedConstant { name: String },
    #[error("{op}: expected {expected} inputs, got {actual}")]
    Arity {
        op: &'static str,
        expected: String,
        actual: usize,
    },
    #[error("{op}: dtype {dtype} is not supported{detail}")]
    UnsupportedDType {
        op: &'static str,
        dtype: DType,
        detail: String,
    },
    #[error("{op}: {what} is not supported")]
    Unsupported { op: &'static str, what: String },
    #[error("{op}: {reason}")]
    Invalid { op: &'static str, reason: String },
    #[error("{op}: index {index} is out of range for an axis of extent {extent}")]
    IndexOutOfRange {
        op: &'static str,
        index: i64,
        extent: usize,
    },
    #[error("{op}: integer division by zero")]
    DivisionByZero { op: &'static str },
    #[error("{op}: a tensor of shape {dims:?} and dtype {dtype} would need {bytes} bytes, over the interpreter's limit")]
    TooLarge {
        op: &'static str,
        dtype: DType,
        dims: Vec<usize>,
        bytes: u128,
    },
    #[error("{node}: {source}")]
    Node {
        node: String,
        #[source]
        source: Box<EvalError>,
    },
    #[error("{node}: output {index} is {actual}, but the graph says {expected} (interpreter and type inference disagree)")]
    OutputType {
        node: String,
        index: usize,
        expected: String,
        actual: String,
    },
    #[error("malformed graph: {reason}")]
    Malformed { reason: String },
}

pub(crate) type Res<T> = Result<T, EvalError>;

pub(crate) fn invalid(op: &'static str, reason: impl Into<String>) -> EvalError {
    EvalError::Invalid {
        op,
        reason: reason.into(),
    }
}

pub(crate) fn unsupported_dtype(op: &'static str, dtype: DType) -> EvalError {
    EvalError::UnsupportedDType {
        op,
        dtype,
        detail: String::new(),
    }
}

/// Computes one op on concrete tensors. `inputs` are in the op's input order (trailing optional
/// inputs may be omitted); the result has [`Op::num_outputs`] tensors.
pub fn eval_op(op: &Op, inputs: &[&Tensor]) -> Result<Vec<Tensor>, EvalError> {
    let name = op.name();
    let one = |t: Res<Tensor>| t.map(|t| vec![t]);
    match op {
        Op::Unary(u) => {
            arity(name, inputs, 1, 1)?;
            one(elementwise::unary(*u, inputs[0]))
        }
        Op::Binary(b) => {
            arity(name, inputs, 2, 2)?;
            one(elementwise::binary(*b, inputs[0], inputs[1]))
        }
        Op::Clip => {
            arity(name, inputs, 2, 3)?;
            one(elementwise::clip(
                inputs[0],
                inputs.get(1).copied(),
                inputs.get(2).copied(),
            ))
        }
        Op::Map(p) => one(map::map(p, inputs)),
        Op::Where => {
            arity(name, inputs, 3, 3)?;
            one(elementwise::where_(inputs[0], inputs[1], inputs[2]))
        }
        Op::Cast { to } => {
            arity(name, inputs, 1, 1)?;
            one(elementwise::cast(inputs[0], *to))
        }
        Op::QuantizedAdd(q) => {
            arity(name, inputs, 2, 2)?;
            one(integer::quantized_add(q, inputs[0], inputs[1]))
        }
        Op::QuantizedMul(q) => {
            arity(name, inputs, 2, 2)?;
            one(quantized::quantized_mul(q, inputs[0], inputs[1]))
        }
        Op::Requantize(q) => {
            arity(name, inputs, 1, 1)?;
            one(quantized::requantize(q, inputs[0]))
        }
        Op::QuantizedAveragePool(q) => {
            arity(name, inputs, 1, 1)?;
            one(quantized::quantized_average_pool(q, inputs[0]))
        }
        Op::Conv(attrs) if attrs.integer.is_some() => {
            arity(name, inputs, 2, 3)?;
            let ia = attrs.integer.as_ref().expect("guarded");
            one(integer::conv(
                attrs,
                ia,
                inputs[0],
                inputs[1],
                inputs.get(2).copied(),
            ))
        }
        Op::Gemm(attrs) if attrs.integer.is_some() => {
            arity(name, inputs, 2, 3)?;
            let ia = attrs.integer.as_ref().expect("guarded");
            one(integer::gemm(
                attrs,
                ia,
                inputs[0],
                inputs[1],
                inputs.get(2).copied(),
            ))
        }
        Op::Conv(attrs) => {
            let extra = attrs.epilogue.extra_inputs();
            let n = 3 + extra;
            arity(name, inputs, if extra > 0 { n } else { 2 }, n)?;
            // A squeeze-and-excitation scale multiplies the input first, as `mul` does.
            let scaled;
            let x = if attrs.epilogue.channel_scale {
                scaled = elementwise::binary(kestrel_ir::BinaryOp::Mul, inputs[0], inputs[n - 1])?;
                &scaled
            } else {
                inputs[0]
            };
            let y = conv::conv(attrs, x, inputs[1], inputs.get(2).copied())?;
            let r = if attrs.epilogue.residual {
                inputs.get(3).copied()
            } else {
                None
            };
            one(epilogue::apply(name, &attrs.epilogue, y, r))
        }
        Op::Gemm(attrs) => {
            let n = if attrs.epilogue.residual { 4 } else { 3 };
            arity(name, inputs, if n == 4 { 4 } else { 2 }, n)?;
            let y = matmul::gemm(attrs, inputs[0], inputs[1], inputs.get(2).copied())?;
            one(epilogue::apply(
                name,
                &attrs.epilogue,
                y,
                inputs.get(3).copied(),
            ))
        }
        Op::MatMul => {
            arity(name, inputs, 2, 2)?;
            one(matmul::matmul(inputs[0], inputs[1]))
        }
        Op::BatchNorm { epsilon } => {
            arity(name, inputs, 5, 5)?;
            one(normalize::batch_norm(epsilon.0, inputs))
        }
        Op::Pool(attrs) => {
            arity(name, inputs, 1, 1)?;
            one(pool::pool(attrs, inputs[0]))
        }
        Op::GlobalPool(kind) => {
            arity(name, inputs, 1, 1)?;
            one(pool::global_pool(*kind, inputs[0]))
        }
        Op::Reduce(attrs) => {
            arity(name, inputs, 1, 2)?;
            one(reduce::reduce(attrs, inputs[0], inputs.get(1).copied()))
        }
        Op::Softmax { axis } => {
            arity(name, inputs, 1, 1)?;
            one(normalize::softmax(name, inputs[0], *axis, false))
        }
        Op::Attention { scale } => {
            arity(name, inputs, 3, 3)?;
            one(normalize::attention(
                scale.0, inputs[0], inputs[1], inputs[2],
            ))
        }
        Op::LogSoftmax { axis } => {
            arity(name, inputs, 1, 1)?;
            one(normalize::softmax(name, inputs[0], *axis, true))
        }
        Op::LayerNorm { axis, epsilon } => {
            arity(name, inputs, 2, 3)?;
            one(normalize::layer_norm(
                *axis,
                epsilon.0,
                inputs[0],
                inputs[1],
                inputs.get(2).copied(),
            ))
        }
        Op::Flatten { axis } => {
            arity(name, inputs, 1, 1)?;
            one(shape_ops::flatten(inputs[0], *axis))
        }
        Op::Reshape { allowzero } => {
            arity(name, inputs, 2, 2)?;
            one(shape_ops::reshape(inputs[0], inputs[1], *allowzero))
        }
        Op::Transpose { perm } => {
            arity(name, inputs, 1, 1)?;
            one(shape_ops::transpose(inputs[0], perm))
        }
        Op::Concat { axis } => {
            if inputs.is_empty() {
                return Err(EvalError::Arity {
                    op: name,
                    expected: "at least 1".into(),
                    actual: 0,
                });
            }
            one(shape_ops::concat(inputs, *axis))
        }
        Op::Split { axis, num_outputs } => {
            arity(name, inputs, 1, 2)?;
            shape_ops::split(inputs[0], inputs.get(1).copied(), *axis, *num_outputs)
        }
        Op::Slice => {
            arity(name, inputs, 3, 5)?;
            one(shape_ops::slice(inputs))
        }
        Op::Gather { axis } => {
            arity(name, inputs, 2, 2)?;
            one(shape_ops::gather(inputs[0], inputs[1], *axis))
        }
        Op::Squeeze => {
            arity(name, inputs, 1, 2)?;
            one(shape_ops::squeeze(inputs[0], inputs.get(1).copied()))
        }
        Op::Unsqueeze => {
            arity(name, inputs, 2, 2)?;
            one(shape_ops::unsqueeze(inputs[0], inputs[1]))
        }
        Op::Shape { start, end } => {
            arity(name, inputs, 1, 1)?;
            one(Ok(shape_ops::shape(inputs[0], *start, *end)))
        }
        Op::Size => {
            arity(name, inputs, 1, 1)?;
            one(Ok(Tensor::scalar(inputs[0].numel() as i64)))
        }
        Op::Expand => {
            arity(name, inputs, 2, 2)?;
            one(shape_ops::expand(inputs[0], inputs[1]))
        }
        Op::Tile => {
            arity(name, inputs, 2, 2)?;
            one(shape_ops::tile(inputs[0], inputs[1]))
        }
        Op::Range => {
            arity(name, inputs, 3, 3)?;
            one(shape_ops::range(inputs[0], inputs[1], inputs[2]))
        }
        Op::ConstantOfShape { value } => {
            arity(name, inputs, 1, 1)?;
            one(shape_ops::constant_of_shape(inputs[0], value))
        }
        Op::Identity => {
            arity(name, inputs, 1, 1)?;
            Ok(vec![inputs[0].clone()])
        }
        Op::QuantizeLinear { axis, to } => {
            arity(name, inputs, 2, 3)?;
            one(quant::quantize(
                inputs[0],
                inputs[1],
                inputs.get(2).copied(),
                *axis,
                *to,
            ))
        }
        Op::DequantizeLinear { axis } => {
            arity(name, inputs, 2, 3)?;
            one(quant::dequantize(
                inputs[0],
                inputs[1],
                inputs.get(2).copied(),
                *axis,
            ))
        }
        Op::Resize(attrs) => {
            arity(name, inputs, 2, 3)?;
            one(resize::resize(
                attrs,
                inputs[0],
                inputs[1],
                inputs.get(2).copied(),
            ))
        }
        Op::Pad { mode } => {
            arity(name, inputs, 2, 3)?;
            one(pad::pad(
                *mode,
                inputs[0],
                inputs[1],
                inputs.get(2).copied(),
            ))
        }
        Op::ConvTranspose(attrs) => {
            arity(name, inputs, 2, 3)?;
            one(conv::conv_transpose(
                attrs,
                inputs[0],
                inputs[1],
                inputs.get(2).copied(),
            ))
        }
        Op::Arg(attrs) => {
            arity(name, inputs, 1, 1)?;
            one(index::arg(attrs, inputs[0]))
        }
        Op::GatherElements { axis } => {
            arity(name, inputs, 2, 2)?;
            one(index::gather_elements_op(inputs[0], inputs[1], *axis))
        }
        Op::ScatterElements { axis, reduction } => {
            arity(name, inputs, 3, 3)?;
            one(index::scatter_elements(
                inputs[0], inputs[1], inputs[2], *axis, *reduction,
            ))
        }
        Op::ScatterNd { reduction } => {
            arity(name, inputs, 3, 3)?;
            one(index::scatter_nd(
                inputs[0], inputs[1], inputs[2], *reduction,
            ))
        }
        Op::Trilu { upper } => {
            arity(name, inputs, 1, 2)?;
            one(index::trilu(inputs[0], inputs.get(1).copied(), *upper))
        }
        Op::CumSum { exclusive, reverse } => {
            arity(name, inputs, 2, 2)?;
            one(index::cum_sum(inputs[0], inputs[1], *exclusive, *reverse))
        }
        Op::Hardmax { axis } => {
            arity(name, inputs, 1, 1)?;
            one(index::hardmax(inputs[0], *axis))
        }
        Op::LpNormalization { axis, p } => {
            arity(name, inputs, 1, 1)?;
            one(normalize::lp_normalization(inputs[0], *axis, *p))
        }
        Op::TopK { axis, largest, .. } => {
            arity(name, inputs, 2, 2)?;
            index::top_k(inputs[0], inputs[1], *axis, *largest)
        }
        Op::DynamicQuantizeLinear => {
            arity(name, inputs, 1, 1)?;
            quant::dynamic_quantize(inputs[0])
        }
    }
}

fn arity(op: &'static str, inputs: &[&Tensor], min: usize, max: usize) -> Res<()> {
    if inputs.len() < min || inputs.len() > max {
        let expected = if min == max {
            min.to_string()
        } else {
            format!("{min} to {max}")
        };
        return Err(EvalError::Arity {
            op,
            expected,
            actual: inputs.len(),
        });
    }
    Ok(())
}

/// Runs a whole graph: `inputs` in [`Graph::inputs`] order; returns the outputs in
/// [`Graph::outputs`] order. See [`run_with`].
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, EvalError> {
    run_with(g, inputs, &mut |_, _| {})
}

/// Runs a whole graph like [`run`], calling `observer(node, outputs)` after every node with the
/// node's output tensors (for calibration and debugging).
///
/// Each input's dtype must equal the graph input's, and its shape must match: known extents
/// exactly, and every `Dim::Sym` binds to the actual extent, consistently across all inputs.
/// Intermediate tensors are freed after their last use. Every node's outputs are checked against
/// the types recorded in the graph (dtype and known extents) so a disagreement between this
/// oracle and type inference is reported rather than propagated.
pub fn run_with(
    g: &Graph,
    inputs: &[Tensor],
    observer: &mut dyn FnMut(NodeId, &[Tensor]),
) -> Result<Vec<Tensor>, EvalError> {
    check_inputs(g, inputs)?;
    let mut slots: Vec<Option<Tensor>> = vec![None; g.values.len()];
    let mut remaining = use_counts(g)?;
    for (pos, &v) in g.inputs.iter().enumerate() {
        let slot = slots
            .get_mut(v.index())
            .ok_or_else(|| EvalError::Malformed {
                reason: format!("graph input {pos} is value {v}, which does not exist"),
            })?;
        *slot = Some(inputs[pos].clone());
    }
    for (i, node) in g.nodes.iter().enumerate() {
        let id = NodeId(i as u32);
        let args = node
            .inputs
            .iter()
            .map(|&v| fetch(g, &slots, v))
            .collect::<Res<Vec<Tensor>>>()?;
        let arg_refs: Vec<&Tensor> = args.iter().collect();
        let wrap = |e: EvalError| EvalError::Node {
            node: g.describe_node(id),
            source: Box::new(e),
        };
        let outs = eval_op(&node.op, &arg_refs).map_err(wrap)?;
        drop(arg_refs);
        drop(args);
        if outs.len() != node.outputs.len() {
            return Err(EvalError::Malformed {
                reason: format!(
                    "{} has {} outputs but computed {}",
                    g.describe_node(id),
                    node.outputs.len(),
                    outs.len()
                ),
            });
        }
        for (index, (t, &v)) in outs.iter().zip(&node.outputs).enumerate() {
            check_output_type(g, id, index, v, t)?;
        }
        observer(id, &outs);
        for (t, &v) in outs.into_iter().zip(&node.outputs) {
            if let Some(slot) = slots.get_mut(v.index()) {
                *slot = Some(t);
            }
        }
        for &v in &node.inputs {
            if let Some(r) = remaining.get_mut(v.index()) {
                *r = r.saturating_sub(1);
                if *r == 0 {
                    slots[v.index()] = None;
                }
            }
        }
    }
    g.outputs
        .iter()
        .map(|o| fetch(g, &slots, o.value))
        .collect()
}

/// Number of uses of every value (node inputs and graph outputs); errors on dangling references.
fn use_counts(g: &Graph) -> Res<Vec<usize>> {
    let mut counts = vec![0usize; g.values.len()];
    let uses = g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter())
        .chain(g.outputs.iter().map(|o| &o.value));
    for v in uses {
        let c = counts
            .get_mut(v.index())
            .ok_or_else(|| EvalError::Malformed {
                reason: format!("value {v} is used but does not exist"),
            })?;
        *c += 1;
    }
    Ok(counts)
}

/// The tensor of value `v`: a computed/input slot, or constant data.
fn fetch(g: &Graph, slots: &[Option<Tensor>], v: kestrel_ir::ValueId) -> Res<Tensor> {
    let value = g
        .values
        .get(v.index())
        .ok_or_else(|| EvalError::Malformed {
            reason: format!("value {v} does not exist"),
        })?;
    if let ValueDef::Const(c) = &value.def {
        return c.data.clone().ok_or_else(|| EvalError::ElidedConstant {
            name: c.name.clone(),
        });
    }
    slots[v.index()]
        .clone()
        .ok_or_else(|| EvalError::Malformed {
            reason: format!(
                "value {v} is used before it is defined (or after its last counted use)"
            ),
        })
}

fn check_output_type(
    g: &Graph,
    node: NodeId,
    index: usize,
    v: kestrel_ir::ValueId,
    t: &Tensor,
) -> Res<()> {
    let Some(value) = g.values.get(v.index()) else {
        return Err(EvalError::Malformed {
            reason: format!("node output value {v} does not exist"),
        });
    };
    let ty = &value.ty;
    let dims_ok = ty.shape.len() == t.dims().len()
        && ty
            .shape
            .iter()
            .zip(t.dims())
            .all(|(d, &n)| d.known().is_none_or(|k| k == n));
    if ty.dtype != t.dtype() || !dims_ok {
        return Err(EvalError::OutputType {
            node: g.describe_node(node),
            index,
            expected: ty.to_string(),
            actual: format!("{}{:?}", t.dtype(), t.dims()),
        });
    }
    Ok(())
}

fn check_inputs(g: &Graph, inputs: &[Tensor]) -> Res<()> {
    if inputs.len() != g.inputs.len() {
        return Err(EvalError::InputCount {
            expected: g.inputs.len(),
            actual: inputs.len(),
        });
    }
    // symbol -> (extent, name of the input that bound it)
    let mut bound: HashMap<&str, (usize, String)> = HashMap::new();
    for (pos, (&v, t)) in g.inputs.iter().zip(inputs).enumerate() {
        let value = g
            .values
            .get(v.index())
            .ok_or_else(|| EvalError::Malformed {
                reason: format!("graph input {pos} is value {v}, which does not exist"),
            })?;
        let name = value.name.clone().unwrap_or_else(|| format!("#{pos}"));
        if value.ty.dtype != t.dtype() {
            return Err(EvalError::InputDType {
                input: name,
                expected: value.ty.dtype,
                actual: t.dtype(),
            });
        }
        if value.ty.shape.len() != t.dims().len() {
            return Err(EvalError::InputRank {
                input: name,
                expected: value.ty.shape.len(),
                shape: value.ty.to_string(),
                actual: t.dims().to_vec(),
            });
        }
        for (axis, (d, &n)) in value.ty.shape.iter().zip(t.dims()).enumerate() {
            match d {
                Dim::Known(k) if *k != n => {
                    return Err(EvalError::InputDim {
                        input: name,
                        axis,
                        expected: *k,
                        actual: n,
                        actual_shape: t.dims().to_vec(),
                    })
                }
                Dim::Sym(s) => match bound.get(&**s) {
                    Some((b, by)) if *b != n => {
                        return Err(EvalError::SymbolConflict {
                            input: name,
                            axis,
                            symbol: s.to_string(),
                            bound: *b,
                            bound_by: by.clone(),
                            actual: n,
                        })
                    }
                    Some(_) => {}
                    None => {
                        bound.insert(s, (n, name.clone()));
                    }
                },
                _ => {}
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shared helpers for the op families.
// ---------------------------------------------------------------------------------------------

/// Product of extents, or `None` on overflow.
pub(crate) fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Checks that a tensor of `dims` and `dtype` may be allocated; returns its element count.
pub(crate) fn check_alloc(op: &'static str, dtype: DType, dims: &[usize]) -> Res<usize> {
    let too_large = |bytes: u128| EvalError::TooLarge {
        op,
        dtype,
        dims: dims.to_vec(),
        bytes,
    };
    let mut n: u128 = 1;
    for &d in dims {
        n = n.saturating_mul(d as u128);
    }
    let bytes = n.saturating_mul(dtype.size() as u128);
    if bytes > tensor_byte_limit() {
        return Err(too_large(bytes));
    }
    Ok(n as usize)
}

/// Checks every extent on its own (not only their product, which is 0 when any extent is 0), for
/// ops that build per-axis index tables before allocating the output.
pub(crate) fn check_extents(op: &'static str, dtype: DType, dims: &[usize]) -> Res<()> {
    for &d in dims {
        check_alloc(op, dtype, &[d])?;
    }
    Ok(())
}

/// Normalises a possibly negative axis for a tensor of `rank` (valid range `[-rank, rank)`).
pub(crate) fn norm_axis(op: &'static str, axis: i64, rank: usize) -> Res<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(invalid(
            op,
            format!("axis {axis} is out of range for rank {rank}"),
        ));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Row-major strides of `dims`.
pub(crate) fn strides_of(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Numpy broadcast of two shapes.
pub(crate) fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Res<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(invalid(
                op,
                format!("shapes {a:?} and {b:?} are not broadcastable"),
            ));
        };
    }
    Ok(out)
}

pub(crate) use kestrel_ir::broadcast::broadcast_strides;

/// Iterates, in row-major order over `dims`, the flat offsets `sum(idx[i] * strides[i])`.
pub(crate) struct StridedIter {
    dims: Vec<usize>,
    strides: Vec<usize>,
    idx: Vec<usize>,
    offset: usize,
    remaining: usize,
}

impl StridedIter {
    pub(crate) fn new(dims: &[usize], strides: &[usize]) -> StridedIter {
        StridedIter {
            dims: dims.to_vec(),
            strides: strides.to_vec(),
            idx: vec![0; dims.len()],
            offset: 0,
            remaining: dims.iter().product(),
        }
    }
}

impl Iterator for StridedIter {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.offset;
        for ax in (0..self.dims.len()).rev() {
            self.idx[ax] += 1;
            self.offset += self.strides[ax];
            if self.idx[ax] < self.dims[ax] {
                break;
            }
            self.offset -= self.strides[ax] * self.dims[ax];
            self.idx[ax] = 0;
        }
        Some(current)
    }
}

/// Builds a tensor from raw bytes we computed ourselves (length is correct by construction).
pub(crate) fn tensor_from_bytes(dtype: DType, dims: Vec<usize>, bytes: Vec<u8>) -> Res<Tensor> {
    Tensor::from_bytes(dtype, dims, Bytes::from(bytes)).map_err(|e| EvalError::Malformed {
        reason: format!("internal: {e}"),
    })
}

/// Copies elements of `t` (any dtype) into a new tensor of `out_dims`: output element `k` is input
/// element `src[k]` (`None` = the `fill` element bytes). Indices must be in range.
pub(crate) fn gather_elements(
    t: &Tensor,
    out_dims: Vec<usize>,
    src: impl Iterator<Item = Option<usize>>,
    fill: &[u8],
) -> Res<Tensor> {
    let es = t.dtype().size();
    let n = check_alloc("gather", t.dtype(), &out_dims)?;
    let data = t.bytes();
    let mut out = Vec::with_capacity(n * es);
    for s in src.take(n) {
        match s {
            Some(i) => out.extend_from_slice(&data[i * es..(i + 1) * es]),
            None => out.extend_from_slice(fill),
        }
    }
    tensor_from_bytes(t.dtype(), out_dims, out)
}

/// How an element type computes: f32 (also f16/bf16), f64, integers as i64, or bool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    F32,
    F64,
    Int,
    Bool,
}

pub(crate) fn class_of(d: DType) -> Class {
    match d {
        DType::F32 | DType::F16 | DType::BF16 => Class::F32,
        DType::F64 => Class::F64,
        DType::Bool => Class::Bool,
        _ => Class::Int,
    }
}

/// Bools of a bool tensor (any non-zero byte is true).
pub(crate) fn bool_vec(t: &Tensor) -> Vec<bool> {
    t.bytes().iter().map(|&b| b != 0).collect()
}

/// f32 to bf16, rounding to nearest even (NaN stays a quiet NaN).
pub(crate) fn f32_to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let bias = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(bias) >> 16) as u16
}

/// Appends `v` converted to `dtype`: floats round to nearest (f64 -> f16/bf16 goes via f32),
/// integers truncate toward zero and saturate (NaN -> 0), bool is `v != 0`.
pub(crate) fn push_f64(dtype: DType, v: f64, out: &mut Vec<u8>) {
    match dtype {
        DType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
        DType::F64 => out.extend_from_slice(&v.to_le_bytes()),
        DType::F16 => out.extend_from_slice(&f32_to_f16(v as f32).to_le_bytes()),
        DType::BF16 => out.extend_from_slice(&f32_to_bf16(v as f32).to_le_bytes()),
        DType::I8 => out.extend_from_slice(&(v as i8).to_le_bytes()),
        DType::U8 => out.push(v as u8),
        DType::I16 => out.extend_from_slice(&(v as i16).to_le_bytes()),
        DType::U16 => out.extend_from_slice(&(v as u16).to_le_bytes()),
        DType::I32 => out.extend_from_slice(&(v as i32).to_le_bytes()),
        DType::U32 => out.extend_from_slice(&(v as u32).to_le_bytes()),
        DType::I64 => out.extend_from_slice(&(v as i64).to_le_bytes()),
        DType::U64 => out.extend_from_slice(&(v as u64).to_le_bytes()),
        DType::Bool => out.push((v != 0.0) as u8),
    }
}

/// Appends `v` converted to `dtype`: integers wrap (two's complement), floats round, bool is `v != 0`.
pub(crate) fn push_i64(dtype: DType, v: i64, out: &mut Vec<u8>) {
    match dtype {
        // i64 -> f32 converts directly (one rounding); f16/bf16 via f32.
        DType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
        DType::F16 | DType::BF16 => push_f64(dtype, (v as f32) as f64, out),
        DType::F64 => out.extend_from_slice(&(v as f64).to_le_bytes()),
        DType::I8 | DType::U8 => out.push(v as u8),
        DType::I16 | DType::U16 => out.extend_from_slice(&(v as u16).to_le_bytes()),
        DType::I32 | DType::U32 => out.extend_from_slice(&(v as u32).to_le_bytes()),
        DType::I64 | DType::U64 => out.extend_from_slice(&v.to_le_bytes()),
        DType::Bool => out.push((v != 0) as u8),
    }
}

/// A tensor of `dtype` from f64 values (see [`push_f64`]).
pub(crate) fn tensor_from_f64(dtype: DType, dims: Vec<usize>, v: &[f64]) -> Res<Tensor> {
    let mut out = Vec::with_capacity(v.len() * dtype.size());
    for &x in v {
        push_f64(dtype, x, &mut out);
    }
    tensor_from_bytes(dtype, dims, out)
}

/// A tensor of `dtype` from f32 values (f32 is stored directly; others convert as [`push_f64`]).
pub(crate) fn tensor_from_f32(dtype: DType, dims: Vec<usize>, v: &[f32]) -> Res<Tensor> {
    let mut out = Vec::with_capacity(v.len() * dtype.size());
    match dtype {
        DType::F32 => {
            for &x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        DType::F16 => {
            for &x in v {
                out.extend_from_slice(&f32_to_f16(x).to_le_bytes());
            }
        }
        _ => {
            for &x in v {
                push_f64(dtype, x as f64, &mut out);
            }
        }
    }
    tensor_from_bytes(dtype, dims, out)
}

/// A tensor of `dtype` from i64 values (see [`push_i64`]).
pub(crate) fn tensor_from_i64(dtype: DType, dims: Vec<usize>, v: &[i64]) -> Res<Tensor> {
    let mut out = Vec::with_capacity(v.len() * dtype.size());
    for &x in v {
        push_i64(dtype, x, &mut out);
    }
    tensor_from_bytes(dtype, dims, out)
}

pub(crate) fn tensor_from_bool(dims: Vec<usize>, v: &[bool]) -> Res<Tensor> {
    tensor_from_bytes(DType::Bool, dims, v.iter().map(|&b| b as u8).collect())
}

/// The f32 values of a float tensor (f16/bf16 widen exactly).
pub(crate) fn f32_values(t: &Tensor) -> Vec<f32> {
    match t.dtype() {
        DType::F16 => t
            .bytes()
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        _ => t.to_f32_vec(),
    }
}

/// The values of an integer index tensor (i32/i64, or any integer type), as i64.
pub(crate) fn index_values(op: &'static str, t: &Tensor, what: &str) -> Res<Vec<i64>> {
    if !t.dtype().is_int() {
        return Err(EvalError::UnsupportedDType {
            op,
            dtype: t.dtype(),
            detail: format!(" for {what} (must be an integer tensor)"),
        });
    }
    Ok(t.to_i64_vec())
}

/// Requires a float tensor.
pub(crate) fn require_float(op: &'static str, t: &Tensor) -> Res<()> {
    if t.dtype().is_float() {
        Ok(())
    } else {
        Err(unsupported_dtype(op, t.dtype()))
    }
}

/// Requires `b` to have the same dtype as `a`.
pub(crate) fn require_same_dtype(op: &'static str, a: &Tensor, b: &Tensor) -> Res<()> {
    if a.dtype() == b.dtype() {
        Ok(())
    } else {
        Err(invalid(
            op,
            format!(
                "inputs have different dtypes {} and {}",
                a.dtype(),
                b.dtype()
            ),
        ))
    }
}
