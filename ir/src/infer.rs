//! Type and shape inference: the output types of an op applied to typed inputs.
//!
//! [`infer`] implements the contracts documented on [`Op`]. It never panics: malformed inputs
//! (wrong arity, dtypes or ranks, out-of-range axes, absurd extents that overflow) are reported as
//! `Err` with a short reason that does not repeat the op name (callers such as
//! [`crate::GraphError::Infer`] prefix it).
//!
//! Symbolic dims ([`Dim::Sym`]) pass through every op that preserves a dim; arithmetic on
//! non-known dims follows [`crate::broadcast`]. Inputs that determine an output shape (Reshape's
//! shape, Slice's starts, ...) are read from [`InferInput::value`] when constant; otherwise the
//! output gets the right rank with [`Dim::Unknown`] extents, and inference fails only when even
//! the rank cannot be known.
//!
//! Quantization parameters: [`Op::QuantizeLinear`] with constant scale (and zero point) attaches
//! them to its output. Ops that only move data (Identity, Reshape, Flatten, Transpose, Squeeze,
//! Unsqueeze, Slice, Gather, Expand, Tile, Split, Concat of equally-quantized inputs, Pad, max
//! pooling) keep their input's per-tensor parameters; per-axis parameters survive only Identity
//! and Transpose (with the axis remapped). Every other op produces types without quantization.

use crate::broadcast::{
    broadcast_shapes, broadcasts_to, dim_add, dim_product, dims_compatible, fmt_shape, unify_dims,
};
use crate::dtype::{DType, Quant, QuantParams, F32};
use crate::op::{
    ArgAttrs, AspectPolicy, AutoPad, BinaryOp, ConvAttrs, ConvTransposeAttrs, CoordMode, Epilogue,
    GemmAttrs, IntegerAttrs, Op, PadMode, PoolAttrs, PoolKind, ReduceAttrs, ReduceKind,
    ResizeAttrs, ResizeBy, ScatterReduction, UnaryOp,
};
use crate::tensor::Tensor;
use crate::types::{Dim, Shape, TensorType, MAX_RANK};
use std::sync::Arc;

/// One input as inference sees it: its type, and its data when it is a constant.
#[derive(Clone, Copy, Debug)]
pub struct InferInput<'a> {
    pub ty: &'a TensorType,
    pub value: Option<&'a Tensor>,
}

impl<'a> InferInput<'a> {
    /// An input with no constant data.
    pub fn of(ty: &'a TensorType) -> Self {
        InferInput { ty, value: None }
    }

    /// A constant input; `ty` should be the tensor's type.
    pub fn constant(ty: &'a TensorType, value: &'a Tensor) -> Self {
        InferInput {
            ty,
            value: Some(value),
        }
    }
}

/// The minimum and maximum number of inputs of `op` (`None`: unbounded).
pub fn input_arity(op: &Op) -> (usize, Option<usize>) {
    match op {
        Op::Unary(_)
        | Op::Cast { .. }
        | Op::Pool(_)
        | Op::GlobalPool(_)
        | Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::Flatten { .. }
        | Op::Transpose { .. }
        | Op::Shape { .. }
        | Op::Size
        | Op::ConstantOfShape { .. }
        | Op::Identity
        | Op::DynamicQuantizeLinear
        | Op::Arg(_)
        | Op::Hardmax { .. }
        | Op::LpNormalization { .. }
        | Op::Requantize(_)
        | Op::QuantizedAveragePool(_) => (1, Some(1)),
        Op::Binary(_)
        | Op::QuantizedAdd(_)
        | Op::QuantizedMul(_)
        | Op::MatMul
        | Op::Reshape { .. }
        | Op::Gather { .. }
        | Op::Unsqueeze
        | Op::Expand
        | Op::Tile
        | Op::GatherElements { .. }
        | Op::CumSum { .. }
        | Op::TopK { .. } => (2, Some(2)),
        Op::ScatterElements { .. } | Op::ScatterNd { .. } | Op::Attention { .. } => (3, Some(3)),
        Op::Trilu { .. } => (1, Some(2)),
        Op::Clip => (2, Some(3)),
        Op::Where | Op::Range => (3, Some(3)),
        Op::Conv(ConvAttrs { epilogue, .. }) | Op::Gemm(GemmAttrs { epilogue, .. })
            if epilogue.extra_inputs() > 0 =>
        {
            let n = 3 + epilogue.extra_inputs();
            (n, Some(n))
        }
        Op::Conv(_)
        | Op::Gemm(_)
        | Op::LayerNorm { .. }
        | Op::QuantizeLinear { .. }
        | Op::DequantizeLinear { .. }
        | Op::Pad { .. }
        | Op::ConvTranspose(_) => (2, Some(3)),
        Op::Resize(r) => {
            if r.coord == CoordMode::TfCropAndResize {
                (3, Some(3))
            } else {
                (2, Some(3))
            }
        }
        Op::BatchNorm { .. } => (5, Some(5)),
        Op::Reduce(_) | Op::Squeeze | Op::Split { .. } => (1, Some(2)),
        Op::Concat { .. } | Op::Map(_) => (1, None),
        Op::Slice => (3, Some(5)),
    }
}

/// The output types of `op` applied to `inputs`, or the reason the inputs are invalid for it.
pub fn infer(op: &Op, inputs: &[InferInput]) -> Result<Vec<TensorType>, String> {
    if let Some(i) = inputs.iter().position(|i| i.ty.rank() > MAX_RANK) {
        return Err(format!(
            "input {i} has rank {}, above the limit of {MAX_RANK}",
            inputs[i].ty.rank()
        ));
    }
    let outputs = infer_op(op, inputs)?;
    if let Some(o) = outputs.iter().position(|t| t.rank() > MAX_RANK) {
        return Err(format!(
            "output {o} would have rank {}, above the limit of {MAX_RANK}",
            outputs[o].rank()
        ));
    }
    Ok(outputs)
}

fn infer_op(op: &Op, inputs: &[InferInput]) -> Result<Vec<TensorType>, String> {
    let (min, max) = input_arity(op);
    let n = inputs.len();
    if n < min || max.is_some_and(|m| n > m) {
        let expected = match max {
            Some(m) if m == min => format!("{min}"),
            Some(m) => format!("{min} to {m}"),
            None => format!("at least {min}"),
        };
        return Err(format!("expects {expected} inputs, got {n}"));
    }
    let x = inputs[0].ty;
    let one = |ty: TensorType| Ok(vec![ty]);
    match op {
        Op::Unary(u) => one(infer_unary(*u, x)?),
        Op::Binary(b) => one(infer_binary(*b, x, inputs[1].ty)?),
        Op::Map(p) => {
            p.check(inputs.len())?;
            require_float(x, "input 0")?;
            let mut shape = x.shape.clone();
            for (i, inp) in inputs.iter().enumerate().skip(1) {
                if inp.ty.dtype != x.dtype {
                    return Err(format!(
                        "input {i} has dtype {}, input 0 has {}",
                        inp.ty.dtype, x.dtype
                    ));
                }
                shape = broadcast_shapes(&shape, &inp.ty.shape)?;
            }
            one(plain(x.dtype, shape))
        }
        Op::Clip => {
            require_numeric(x, "input")?;
            for (bound, name) in inputs[1..].iter().zip(["min", "max"]) {
                if bound.ty.dtype != x.dtype {
                    return Err(format!(
                        "{name} has dtype {}, input has {}",
                        bound.ty.dtype, x.dtype
                    ));
                }
                require_scalar(bound.ty, name)?;
            }
            one(plain(x.dtype, x.shape.clone()))
        }
        Op::QuantizedAdd(q) => {
            let b = inputs[1].ty;
            for (t, what) in [(x, "a"), (b, "b")] {
                if !matches!(t.dtype, DType::U8 | DType::I8) {
                    return Err(format!("quantized_add's {what} must be u8 or i8, got {t}"));
                }
            }
            let (lo, hi) = crate::quant::range_of(q.to)
                .ok_or_else(|| format!("quantized_add to {} (expected u8 or i8)", q.to))?;
            if !(lo <= q.min && q.min <= q.max && q.max <= hi && (lo..=hi).contains(&q.zero_point))
            {
                return Err(format!(
                    "quantized_add's min {}, max {} and zero_point {} must lie in {}'s range, in order",
                    q.min, q.max, q.zero_point, q.to
                ));
            }
            let finite = |r: F32| r.0.is_finite() && r.0 > 0.0;
            if !(finite(q.a_ratio) && finite(q.b_ratio) && finite(q.scale)) {
                return Err("quantized_add's ratios and scale must be positive".into());
            }
            let shape = broadcast_shapes(&x.shape, &b.shape)?;
            let quant = QuantParams {
                scale: vec![q.scale],
                zero_point: vec![q.zero_point as i64],
                axis: None,
            };
            one(TensorType::new(q.to, shape).with_quant(Some(Arc::new(quant))))
        }
        Op::QuantizedMul(q) => {
            let b = inputs[1].ty;
            require_int8_operands("quantized_mul", &[(x, "a"), (b, "b")])?;
            let finite = |r: F32| r.0.is_finite() && r.0 > 0.0;
            if !(finite(q.ratio) && finite(q.scale)) {
                return Err("quantized_mul's ratio and scale must be positive".into());
            }
            let quant =
                quantized_output("quantized_mul", q.to, q.scale, q.zero_point, q.min, q.max)?;
            let shape = broadcast_shapes(&x.shape, &b.shape)?;
            one(TensorType::new(q.to, shape).with_quant(Some(quant)))
        }
        Op::Requantize(q) => {
            require_int8_operands("requantize", &[(x, "x")])?;
            let finite = |r: F32| r.0.is_finite() && r.0 > 0.0;
            if !(finite(q.x_scale) && finite(q.scale)) {
                return Err("requantize's scales must be positive".into());
            }
            let (lo, hi) = crate::quant::range_of(q.to)
                .ok_or_else(|| format!("requantize to {} (expected u8 or i8)", q.to))?;
            let quant = quantized_output("requantize", q.to, q.scale, q.zero_point, lo, hi)?;
            one(TensorType::new(q.to, x.shape.clone()).with_quant(Some(quant)))
        }
        Op::QuantizedAveragePool(q) => {
            let name = Op::QuantizedAveragePool(q.clone()).name();
            require_int8_operands(name, &[(x, "x")])?;
            let finite = |r: F32| r.0.is_finite() && r.0 > 0.0;
            if !(finite(q.x_scale) && finite(q.scale)) {
                return Err(format!("{name}'s scales must be positive"));
            }
            let quant = quantized_output(name, q.to, q.scale, q.zero_point, q.min, q.max)?;
            let float = TensorType::new(DType::F32, x.shape.clone());
            let shape = match &q.window {
                Some(w) => {
                    if w.kind != PoolKind::Average {
                        return Err(format!("{name}'s window must be an average pool's"));
                    }
                    infer_pool(w, &float)?.shape
                }
                None => {
                    if x.rank() < 3 {
                        return Err(format!(
                            "input must have rank >= 3 (N, C, spatial..), got {x}"
                        ));
                    }
                    let mut shape = x.shape.clone();
                    for d in shape.iter_mut().skip(2) {
                        *d = Dim::Known(1);
                    }
                    shape
                }
            };
            one(TensorType::new(q.to, shape).with_quant(Some(quant)))
        }
        Op::Where => {
            let (cond, a, b) = (x, inputs[1].ty, inputs[2].ty);
            if cond.dtype != DType::Bool {
                return Err(format!("condition must be bool, got {}", cond.dtype));
            }
            if a.dtype != b.dtype {
                return Err(format!(
                    "branches differ in dtype: {} vs {}",
                    a.dtype, b.dtype
                ));
            }
            let shape = broadcast_shapes(&broadcast_shapes(&cond.shape, &a.shape)?, &b.shape)?;
            one(plain(a.dtype, shape))
        }
        Op::Cast { to } => one(plain(*to, x.shape.clone())),
        Op::Conv(ConvAttrs {
            integer: Some(ia), ..
        })
        | Op::Gemm(GemmAttrs {
            integer: Some(ia), ..
        }) => one(infer_integer(op, ia, inputs)?),
        Op::Conv(a) => {
            let ty = infer_conv(a, inputs)?;
            check_epilogue(&a.epilogue, &ty, inputs)?;
            one(ty)
        }
        Op::Gemm(a) => {
            let (ta, tb) = (x, inputs[1].ty);
            require_same_dtype(ta, tb, "A", "B")?;
            require_numeric(ta, "A")?;
            require_rank(ta, 2, "A")?;
            require_rank(tb, 2, "B")?;
            let (m, ka) = if a.trans_a {
                (&ta.shape[1], &ta.shape[0])
            } else {
                (&ta.shape[0], &ta.shape[1])
            };
            let (kb, n) = if a.trans_b {
                (&tb.shape[1], &tb.shape[0])
            } else {
                (&tb.shape[0], &tb.shape[1])
            };
            if !dims_compatible(ka, kb) {
                return Err(format!("inner dims differ: {ka} vs {kb}"));
            }
            let out: Shape = [m.clone(), n.clone()].into_iter().collect();
            if let Some(c) = inputs.get(2) {
                require_same_dtype(ta, c.ty, "A", "C")?;
                broadcasts_to(&c.ty.shape, &out).map_err(|e| format!("C: {e}"))?;
            }
            let ty = plain(ta.dtype, out);
            if a.epilogue.channel_scale {
                return Err("channel_scale is for convolutions only".into());
            }
            check_epilogue(&a.epilogue, &ty, inputs)?;
            one(ty)
        }
        Op::MatMul => one(infer_matmul(x, inputs[1].ty)?),
        Op::BatchNorm { .. } => {
            require_float(x, "input")?;
            if x.rank() < 2 {
                return Err(format!("input must have rank >= 2, got {x}"));
            }
            let channels = &x.shape[1];
            for (inp, name) in inputs[1..].iter().zip(["scale", "bias", "mean", "var"]) {
                require_float(inp.ty, name)?;
                require_rank(inp.ty, 1, name)?;
                if !dims_compatible(&inp.ty.shape[0], channels) {
                    return Err(format!(
                        "{name} has {} entries, input has {channels} channels",
                        inp.ty.shape[0]
                    ));
                }
            }
            one(plain(x.dtype, x.shape.clone()))
        }
        Op::Pool(a) => one(infer_pool(a, x)?),
        Op::GlobalPool(kind) => {
            require_pool_dtype(*kind, x)?;
            if x.rank() < 2 {
                return Err(format!("input must have rank >= 2, got {x}"));
            }
            let mut shape = x.shape.clone();
            for d in shape.iter_mut().skip(2) {
                *d = Dim::Known(1);
            }
            let quant = if *kind == PoolKind::Max {
                per_tensor(x)
            } else {
                None
            };
            one(plain(x.dtype, shape).with_quant(quant))
        }
        Op::Reduce(a) => one(infer_reduce(a, inputs)?),
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            require_float(x, "input")?;
            norm_axis(*axis, x.rank())?;
            one(plain(x.dtype, x.shape.clone()))
        }
        Op::Attention { .. } => one(infer_attention(x, inputs[1].ty, inputs[2].ty)?),
        Op::LayerNorm { axis, .. } => {
            require_float(x, "input")?;
            let axis = norm_axis(*axis, x.rank())?;
            for (inp, name) in inputs[1..].iter().zip(["scale", "bias"]) {
                require_same_dtype(x, inp.ty, "input", name)?;
                broadcasts_to(&inp.ty.shape, &x.shape[axis..])
                    .map_err(|e| format!("{name}: {e}"))?;
            }
            one(plain(x.dtype, x.shape.clone()))
        }
        Op::Flatten { axis } => {
            let axis = norm_axis_inclusive(*axis, x.rank())?;
            let shape: Shape = [
                dim_product(&x.shape[..axis])?,
                dim_product(&x.shape[axis..])?,
            ]
            .into_iter()
            .collect();
            one(plain(x.dtype, shape).with_quant(per_tensor(x)))
        }
        Op::Reshape { allowzero } => {
            let shape = infer_reshape(x, &inputs[1], *allowzero)?;
            one(plain(x.dtype, shape).with_quant(per_tensor(x)))
        }
        Op::Transpose { perm } => one(infer_transpose(perm, x)?),
        Op::Concat { axis } => one(infer_concat(*axis, inputs)?),
        Op::Split { axis, num_outputs } => infer_split(*axis, *num_outputs, inputs),
        Op::Slice => one(infer_slice(inputs)?),
        Op::Gather { axis } => one(infer_gather(*axis, x, &inputs[1])?),
        Op::Squeeze => one(infer_squeeze(inputs)?),
        Op::Unsqueeze => one(infer_unsqueeze(x, &inputs[1])?),
        Op::Shape { start, end } => {
            let rank = x.rank() as i128;
            let clamp = |v: i64| {
                let v = v as i128;
                (if v < 0 { v + rank } else { v }).clamp(0, rank)
            };
            let s = clamp(*start);
            let e = end.map_or(rank, clamp);
            let len = (e - s).max(0) as usize;
            one(TensorType::known(DType::I64, &[len]))
        }
        Op::Size => one(TensorType::scalar(DType::I64)),
        Op::Expand => {
            let target = match index_vector(&inputs[1], "shape", false)? {
                IndexVec::Const(v) => v
                    .iter()
                    .map(|&s| {
                        usize::try_from(s)
                            .map(Dim::Known)
                            .map_err(|_| format!("negative extent {s} in shape"))
                    })
                    .collect::<Result<Shape, String>>()?,
                IndexVec::Len(Some(n)) => std::iter::repeat_n(Dim::Unknown, n).collect(),
                IndexVec::Len(None) => {
                    return Err("rank depends on a non-constant shape input".into())
                }
            };
            let shape = broadcast_shapes(&x.shape, &target)?;
            one(plain(x.dtype, shape).with_quant(per_tensor(x)))
        }
        Op::Tile => {
            let shape = match index_vector(&inputs[1], "repeats", false)? {
                IndexVec::Const(v) => {
                    if v.len() != x.rank() {
                        return Err(format!(
                            "repeats has {} entries, input has rank {}",
                            v.len(),
                            x.rank()
                        ));
                    }
                    x.shape
                        .iter()
                        .zip(&v)
                        .map(|(d, &r)| {
                            let r = usize::try_from(r)
                                .map_err(|_| format!("negative repeat count {r}"))?;
                            dim_product([d, &Dim::Known(r)])
                        })
                        .collect::<Result<Shape, String>>()?
                }
                IndexVec::Len(n) => {
                    if n.is_some_and(|n| n != x.rank()) {
                        return Err(format!(
                            "repeats has {} entries, input has rank {}",
                            n.unwrap_or(0),
                            x.rank()
                        ));
                    }
                    x.shape
                        .iter()
                        .map(|d| {
                            if *d == Dim::Known(0) {
                                Dim::Known(0)
                            } else {
                                Dim::Unknown
                            }
                        })
                        .collect()
                }
            };
            one(plain(x.dtype, shape).with_quant(per_tensor(x)))
        }
        Op::Range => one(infer_range(inputs)?),
        Op::ConstantOfShape { value } => {
            if value.numel() != 1 {
                return Err(format!(
                    "value must have exactly one element, has {}",
                    value.numel()
                ));
            }
            let shape = match index_vector(&inputs[0], "shape", false)? {
                IndexVec::Const(v) => v
                    .iter()
                    .map(|&s| {
                        usize::try_from(s)
                            .map(Dim::Known)
                            .map_err(|_| format!("negative extent {s} in shape"))
                    })
                    .collect::<Result<Shape, String>>()?,
                IndexVec::Len(Some(n)) => std::iter::repeat_n(Dim::Unknown, n).collect(),
                IndexVec::Len(None) => {
                    return Err("rank depends on a non-constant shape input".into())
                }
            };
            one(plain(value.dtype(), shape))
        }
        Op::Identity => one(x.clone()),
        Op::QuantizeLinear { axis, to } => one(infer_quantize(*axis, *to, inputs)?),
        Op::DequantizeLinear { axis } => one(infer_dequantize(*axis, inputs)?),
        Op::DynamicQuantizeLinear => {
            if x.dtype != DType::F32 {
                return Err(format!("input must be f32, got {}", x.dtype));
            }
            Ok(vec![
                plain(DType::U8, x.shape.clone()),
                plain(DType::F32, Shape::new()),
                plain(DType::U8, Shape::new()),
            ])
        }
        Op::Resize(a) => one(infer_resize(a, inputs)?),
        Op::Pad { mode } => one(infer_pad(*mode, inputs)?),
        Op::ConvTranspose(a) => one(infer_conv_transpose(a, inputs)?),
        Op::Arg(a) => one(infer_arg(a, x)?),
        Op::GatherElements { axis } => {
            let it = inputs[1].ty;
            norm_axis(*axis, x.rank())?;
            require_index_dtype(it, "indices")?;
            if it.rank() != x.rank() {
                return Err(format!(
                    "indices have rank {}, data has rank {}",
                    it.rank(),
                    x.rank()
                ));
            }
            one(plain(x.dtype, it.shape.clone()).with_quant(per_tensor(x)))
        }
        Op::ScatterElements { axis, reduction } => {
            let (it, ut) = (inputs[1].ty, inputs[2].ty);
            norm_axis(*axis, x.rank())?;
            require_index_dtype(it, "indices")?;
            require_same_dtype(x, ut, "data", "updates")?;
            require_scatter_dtype(*reduction, x)?;
            if it.rank() != x.rank() {
                return Err(format!(
                    "indices have rank {}, data has rank {}",
                    it.rank(),
                    x.rank()
                ));
            }
            if ut.rank() != it.rank()
                || !ut
                    .shape
                    .iter()
                    .zip(&it.shape)
                    .all(|(a, b)| dims_compatible(a, b))
            {
                return Err(format!(
                    "updates shape {} differs from indices shape {}",
                    fmt_shape(&ut.shape),
                    fmt_shape(&it.shape)
                ));
            }
            one(plain(x.dtype, x.shape.clone()))
        }
        Op::ScatterNd { reduction } => {
            let (it, ut) = (inputs[1].ty, inputs[2].ty);
            require_index_dtype(it, "indices")?;
            require_same_dtype(x, ut, "data", "updates")?;
            require_scatter_dtype(*reduction, x)?;
            let Some(q_dim) = it.shape.last() else {
                return Err("indices must have rank >= 1".into());
            };
            if let Dim::Known(q) = q_dim {
                if *q > x.rank() {
                    return Err(format!(
                        "indices address {q} axes, data has rank {}",
                        x.rank()
                    ));
                }
                let want: Vec<Dim> = it.shape[..it.rank() - 1]
                    .iter()
                    .chain(&x.shape[*q..])
                    .cloned()
                    .collect();
                if ut.rank() != want.len()
                    || !ut
                        .shape
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| dims_compatible(a, b))
                {
                    return Err(format!(
                        "updates have shape {}, expected {}",
                        fmt_shape(&ut.shape),
                        fmt_shape(&want)
                    ));
                }
            }
            one(plain(x.dtype, x.shape.clone()))
        }
        Op::Trilu { .. } => {
            if x.rank() < 2 {
                return Err(format!("input must have rank >= 2, got {x}"));
            }
            if let Some(k) = inputs.get(1) {
                if k.ty.dtype != DType::I64 {
                    return Err(format!("k must be i64, got {}", k.ty.dtype));
                }
                require_scalar(k.ty, "k")?;
            }
            one(plain(x.dtype, x.shape.clone()).with_quant(per_tensor(x)))
        }
        Op::CumSum { .. } => {
            require_numeric(x, "input")?;
            let a = &inputs[1];
            require_index_dtype(a.ty, "axis")?;
            require_scalar(a.ty, "axis")?;
            if let Some(t) = a.value.filter(|t| t.numel() == 1) {
                norm_axis(t.get_i64(0), x.rank())?;
            }
            one(plain(x.dtype, x.shape.clone()))
        }
        Op::Hardmax { axis } => {
            require_float(x, "input")?;
            norm_axis(*axis, x.rank())?;
            one(plain(x.dtype, x.shape.clone()))
        }
        Op::LpNormalization { axis, p } => {
            require_float(x, "input")?;
            norm_axis(*axis, x.rank())?;
            if !matches!(p, 1 | 2) {
                return Err(format!("p must be 1 or 2, got {p}"));
            }
            one(plain(x.dtype, x.shape.clone()))
        }
        Op::TopK { axis, .. } => {
            require_numeric(x, "input")?;
            let axis = norm_axis(*axis, x.rank())?;
            let k = &inputs[1];
            if k.ty.dtype != DType::I64 {
                return Err(format!("k must be i64, got {}", k.ty.dtype));
            }
            require_scalar(k.ty, "k")?;
            let mut shape = x.shape.clone();
            shape[axis] = match k.value.filter(|t| t.numel() == 1) {
                Some(t) => {
                    let k = t.get_i64(0);
                    let k = usize::try_from(k).map_err(|_| format!("k must be >= 0, got {k}"))?;
                    if let Dim::Known(n) = shape[axis] {
                        if k > n {
                            return Err(format!("k = {k} exceeds the axis extent {n}"));
                        }
                    }
                    Dim::Known(k)
                }
                None => Dim::Unknown,
            };
            Ok(vec![
                plain(x.dtype, shape.clone()),
                plain(DType::I64, shape),
            ])
        }
    }
}

/// Integer index tensors: i32 or i64.
fn require_index_dtype(t: &TensorType, what: &str) -> Result<(), String> {
    if matches!(t.dtype, DType::I32 | DType::I64) {
        Ok(())
    } else {
        Err(format!("{what} must be i32 or i64, got {}", t.dtype))
    }
}

/// Scatter reductions other than assignment need numbers.
fn require_scatter_dtype(r: ScatterReduction, x: &TensorType) -> Result<(), String> {
    if r == ScatterReduction::None {
        Ok(())
    } else {
        require_numeric(x, "data")
    }
}

fn infer_arg(a: &ArgAttrs, x: &TensorType) -> Result<TensorType, String> {
    require_numeric(x, "input")?;
    let axis = norm_axis(a.axis, x.rank())?;
    if x.shape[axis] == Dim::Known(0) {
        return Err(format!("axis {axis} is empty"));
    }
    let mut shape = x.shape.clone();
    if a.keepdims {
        shape[axis] = Dim::Known(1);
    } else {
        shape.remove(axis);
    }
    Ok(plain(DType::I64, shape))
}

// ---------------------------------------------------------------------------------------------
// Small checks.

fn plain(dtype: DType, shape: Shape) -> TensorType {
    TensorType::new(dtype, shape)
}

/// The input's quantization parameters if they are per-tensor.
/// Requires 8-bit (u8 or i8) operands of a quantized op.
fn require_int8_operands(op: &str, operands: &[(&TensorType, &str)]) -> Result<(), String> {
    for (t, what) in operands {
        if !matches!(t.dtype, DType::U8 | DType::I8) {
            return Err(format!("{op}'s {what} must be u8 or i8, got {t}"));
        }
    }
    Ok(())
}

/// The per-tensor quantization of a quantized op's output of type `to` (u8 or i8), with bounds
/// `min <= max` and the zero point within `to`'s range.
fn quantized_output(
    op: &str,
    to: DType,
    scale: F32,
    zero_point: i32,
    min: i32,
    max: i32,
) -> Result<Quant, String> {
    let (lo, hi) =
        crate::quant::range_of(to).ok_or_else(|| format!("{op} to {to} (expected u8 or i8)"))?;
    if !(lo <= min && min <= max && max <= hi && (lo..=hi).contains(&zero_point)) {
        return Err(format!(
            "{op}'s min {min}, max {max} and zero_point {zero_point} must lie in {to}'s range, in order"
        ));
    }
    Ok(Arc::new(QuantParams {
        scale: vec![scale],
        zero_point: vec![zero_point as i64],
        axis: None,
    }))
}

fn per_tensor(x: &TensorType) -> Option<Quant> {
    x.quant.clone().filter(|q| q.axis.is_none())
}

fn require_float(t: &TensorType, what: &str) -> Result<(), String> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        Err(format!("{what} must be a float tensor, got {}", t.dtype))
    }
}

fn require_numeric(t: &TensorType, what: &str) -> Result<(), String> {
    if t.dtype == DType::Bool {
        Err(format!("{what} must be numeric, got bool"))
    } else {
        Ok(())
    }
}

fn require_same_dtype(a: &TensorType, b: &TensorType, an: &str, bn: &str) -> Result<(), String> {
    if a.dtype == b.dtype {
        Ok(())
    } else {
        Err(format!(
            "{an} and {bn} differ in dtype: {} vs {}",
            a.dtype, b.dtype
        ))
    }
}

fn require_rank(t: &TensorType, rank: usize, what: &str) -> Result<(), String> {
    if t.rank() == rank {
        Ok(())
    } else {
        Err(format!("{what} must have rank {rank}, got {t}"))
    }
}

/// A scalar, or a 1-D tensor that may hold exactly one element.
fn require_scalar(t: &TensorType, what: &str) -> Result<(), String> {
    let ok = match t.shape.as_slice() {
        [] => true,
        [d] => dims_compatible(d, &Dim::Known(1)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{what} must be a scalar, got {t}"))
    }
}

/// Normalises an axis in `[-rank, rank - 1]`.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    norm_axis_in(axis, rank, rank as i128 - 1)
}

/// Normalises an axis in `[-rank, rank]` (Flatten's axis, positions between dims).
pub fn norm_axis_inclusive(axis: i64, rank: usize) -> Result<usize, String> {
    norm_axis_in(axis, rank, rank as i128)
}

fn norm_axis_in(axis: i64, rank: usize, max: i128) -> Result<usize, String> {
    let r = rank as i128;
    let a = axis as i128;
    if a < -r || a > max {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if a < 0 { a + r } else { a } as usize)
}

/// Normalises a list of axes and rejects duplicates.
fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = norm_axis(a, rank)?;
        if out.contains(&n) {
            return Err(format!("axis {a} is repeated"));
        }
        out.push(n);
    }
    Ok(out)
}

/// A 1-D integer input: its values when constant, else its length when known.
enum IndexVec {
    Const(Vec<i64>),
    Len(Option<usize>),
}

impl IndexVec {
    fn len(&self) -> Option<usize> {
        match self {
            IndexVec::Const(v) => Some(v.len()),
            IndexVec::Len(n) => *n,
        }
    }
}

/// Reads a 1-D i64 (or, when `allow_i32`, i32) input.
fn index_vector(inp: &InferInput, what: &str, allow_i32: bool) -> Result<IndexVec, String> {
    let ty = inp.ty;
    let dtype_ok = ty.dtype == DType::I64 || (allow_i32 && ty.dtype == DType::I32);
    if !dtype_ok || ty.rank() != 1 {
        let want = if allow_i32 { "i32 or i64" } else { "i64" };
        return Err(format!("{what} input must be {want} 1-D, got {ty}"));
    }
    // Index vectors hold one or two entries per axis (pads hold two), so anything longer cannot
    // describe a tensor the IR accepts; refusing it here bounds what callers allocate from it.
    if let Some(n) = ty.shape[0].known().filter(|&n| n > 2 * MAX_RANK) {
        return Err(format!(
            "{what} input has {n} entries, more than a rank-{MAX_RANK} tensor can use"
        ));
    }
    match inp.value {
        Some(t) if t.dtype().is_int() => Ok(IndexVec::Const(t.to_i64_vec())),
        Some(t) => Err(format!("{what} constant has dtype {}", t.dtype())),
        None => Ok(IndexVec::Len(ty.shape[0].known())),
    }
}

fn to_extent(v: i64, what: &str) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("negative {what} {v}"))
}

// ---------------------------------------------------------------------------------------------
// Element-wise.

fn infer_unary(u: UnaryOp, x: &TensorType) -> Result<TensorType, String> {
    match u {
        UnaryOp::Not => {
            if x.dtype != DType::Bool {
                return Err(format!("input must be bool, got {}", x.dtype));
            }
        }
        UnaryOp::Relu | UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign | UnaryOp::Erf => {
            require_numeric(x, "input")?
        }
        _ => require_float(x, "input")?,
    }
    let dtype = if u == UnaryOp::IsNaN {
        DType::Bool
    } else {
        x.dtype
    };
    Ok(plain(dtype, x.shape.clone()))
}

fn infer_binary(op: BinaryOp, a: &TensorType, b: &TensorType) -> Result<TensorType, String> {
    match op {
        BinaryOp::Pow => {
            require_numeric(a, "base")?;
            require_numeric(b, "exponent")?;
        }
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => {
            if a.dtype != DType::Bool || b.dtype != DType::Bool {
                return Err(format!(
                    "inputs must be bool, got {} and {}",
                    a.dtype, b.dtype
                ));
            }
        }
        BinaryOp::Equal => require_same_dtype(a, b, "a", "b")?,
        BinaryOp::Mod => {
            require_same_dtype(a, b, "a", "b")?;
            if !a.dtype.is_int() {
                return Err(format!(
                    "mod needs integers (use fmod for floats), got {}",
                    a.dtype
                ));
            }
        }
        _ => {
            require_same_dtype(a, b, "a", "b")?;
            require_numeric(a, "a")?;
        }
    }
    let dtype = if op.yields_bool() {
        DType::Bool
    } else {
        a.dtype
    };
    if op == BinaryOp::PRelu {
        broadcasts_to(&b.shape, &a.shape).map_err(|e| format!("slope: {e}"))?;
        return Ok(plain(dtype, a.shape.clone()));
    }
    Ok(plain(dtype, broadcast_shapes(&a.shape, &b.shape)?))
}

// ---------------------------------------------------------------------------------------------
// Convolution and pooling windows.

/// Per-axis parameter list: empty means `default` everywhere, otherwise exactly `k` entries.
fn per_axis(values: &[usize], k: usize, default: usize, what: &str) -> Result<Vec<usize>, String> {
    if values.is_empty() {
        return Ok(vec![default; k]);
    }
    if values.len() != k {
        return Err(format!(
            "{what} has {} entries, expected {k} (one per spatial axis)",
            values.len()
        ));
    }
    Ok(values.to_vec())
}

/// Validated window parameters: strides, dilations (all > 0) and explicit pads as (begin, end).
struct Window {
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads: Vec<(usize, usize)>,
}

fn window(
    k: usize,
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
) -> Result<Window, String> {
    let strides = per_axis(strides, k, 1, "strides")?;
    let dilations = per_axis(dilations, k, 1, "dilations")?;
    if strides.contains(&0) {
        return Err("strides must be positive".into());
    }
    if dilations.contains(&0) {
        return Err("dilations must be positive".into());
    }
    let pads = match pads.len() {
        0 => vec![(0, 0); k],
        n if n == 2 * k => (0..k).map(|i| (pads[i], pads[i + k])).collect(),
        n => {
            return Err(format!(
                "pads has {n} entries, expected {} (begins then ends)",
                2 * k
            ))
        }
    };
    Ok(Window {
        strides,
        dilations,
        pads,
    })
}

fn effective_kernel(kernel: usize, dilation: usize) -> Result<usize, String> {
    if kernel == 0 {
        return Err("kernel extent must be positive".into());
    }
    (kernel - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(|| "dilated kernel extent overflows".to_string())
}

/// Effective padding of one spatial axis; see [`conv_pads`].
pub fn axis_pads(
    auto_pad: AutoPad,
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    explicit: (usize, usize),
) -> Result<(usize, usize), String> {
    match auto_pad {
        AutoPad::NotSet => Ok(explicit),
        AutoPad::Valid => Ok((0, 0)),
        AutoPad::SameUpper | AutoPad::SameLower => {
            if stride == 0 {
                return Err("strides must be positive".into());
            }
            let eff = effective_kernel(kernel, dilation)?;
            let out = input.div_ceil(stride);
            let needed = out
                .saturating_sub(1)
                .checked_mul(stride)
                .and_then(|v| v.checked_add(eff))
                .ok_or_else(|| "padding overflows".to_string())?;
            let total = needed.saturating_sub(input);
            let (small, big) = (total / 2, total - total / 2);
            Ok(if auto_pad == AutoPad::SameUpper {
                (small, big)
            } else {
                (big, small)
            })
        }
    }
}

/// The effective `(begin, end)` padding of each spatial axis of a convolution or pool.
///
/// This is the single source of truth for padding: inference, the interpreter and compiled
/// backends all call it. `input_spatial` and `kernel` have one entry per spatial axis; `strides`
/// and `dilations` are empty (all 1) or per axis; `pads` is empty (all 0) or
/// `[begin_1..begin_k, end_1..end_k]`, and is used only when `auto_pad` is [`AutoPad::NotSet`].
/// `SAME_UPPER`/`SAME_LOWER` pad `max(0, (ceil(in / stride) - 1) * stride + dil * (k - 1) + 1 - in)`
/// in total, the odd element at the end (upper) or beginning (lower); `VALID` pads nothing.
pub fn conv_pads(
    auto_pad: AutoPad,
    input_spatial: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
) -> Result<Vec<(usize, usize)>, String> {
    let k = input_spatial.len();
    if kernel.len() != k {
        return Err(format!(
            "kernel has {} spatial axes, input has {k}",
            kernel.len()
        ));
    }
    let w = window(k, strides, dilations, pads)?;
    (0..k)
        .map(|i| {
            axis_pads(
                auto_pad,
                input_spatial[i],
                kernel[i],
                w.strides[i],
                w.dilations[i],
                w.pads[i],
            )
        })
        .collect()
}

/// Output extent of a sliding window over one axis:
/// `floor_or_ceil((in + pad_begin + pad_end - (dilation * (kernel - 1) + 1)) / stride) + 1`,
/// where with `ceil_mode` a last window that would start past the input and the begin padding
/// (i.e. `(out - 1) * stride >= in + pad_begin`) is dropped (ONNX / PyTorch rule). Convolutions use
/// `ceil_mode = false`. Errors when the dilated kernel does not fit in the padded input.
pub fn pool_output_extent(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pads: (usize, usize),
    ceil_mode: bool,
) -> Result<usize, String> {
    if stride == 0 {
        return Err("strides must be positive".into());
    }
    let eff = effective_kernel(kernel, dilation)?;
    let begin_edge = input
        .checked_add(pads.0)
        .ok_or_else(|| "padded extent overflows".to_string())?;
    let padded = begin_edge
        .checked_add(pads.1)
        .ok_or_else(|| "padded extent overflows".to_string())?;
    if padded < eff {
        return Err(format!(
            "window of extent {eff} does not fit in padded input extent {padded}"
        ));
    }
    let span = padded - eff;
    let mut out = if ceil_mode {
        span.div_ceil(stride)
    } else {
        span / stride
    } + 1;
    if ceil_mode
        && (out - 1)
            .checked_mul(stride)
            .is_none_or(|s| s >= begin_edge)
    {
        out -= 1;
    }
    Ok(out)
}

/// Output extent of a convolution over one axis (see [`pool_output_extent`] without `ceil_mode`).
pub fn conv_output_extent(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pads: (usize, usize),
) -> Result<usize, String> {
    pool_output_extent(input, kernel, stride, dilation, pads, false)
}

/// Output spatial dims: known where the input extent and kernel are known, else unknown.
#[allow(clippy::too_many_arguments)]
fn spatial_out(
    input: &[Dim],
    kernel: &[Dim],
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
    auto_pad: AutoPad,
    ceil_mode: bool,
) -> Result<Vec<Dim>, String> {
    let k = input.len();
    let w = window(k, strides, dilations, pads)?;
    let mut out = Vec::with_capacity(k);
    for i in 0..k {
        let dim = match (&input[i], &kernel[i]) {
            (Dim::Known(n), Dim::Known(kern)) => {
                let p = axis_pads(auto_pad, *n, *kern, w.strides[i], w.dilations[i], w.pads[i])?;
                Dim::Known(
                    pool_output_extent(*n, *kern, w.strides[i], w.dilations[i], p, ceil_mode)
                        .map_err(|e| format!("spatial axis {i}: {e}"))?,
                )
            }
            (_, Dim::Known(kern)) => {
                effective_kernel(*kern, w.dilations[i])?;
                Dim::Unknown
            }
            _ => Dim::Unknown,
        };
        out.push(dim);
    }
    Ok(out)
}

/// The operand checks Conv and ConvTranspose share: float input, weight of the same dtype and
/// rank, rank >= 3 (N, C, spatial..), positive group count.
fn check_conv_operands(x: &TensorType, w: &TensorType, group: usize) -> Result<(), String> {
    require_float(x, "input")?;
    require_same_dtype(x, w, "input", "weight")?;
    if x.rank() < 3 {
        return Err(format!(
            "input must have rank >= 3 (N, C, spatial..), got {x}"
        ));
    }
    if w.rank() != x.rank() {
        return Err(format!(
            "weight has {} dims, input has {}",
            w.rank(),
            x.rank()
        ));
    }
    if group == 0 {
        return Err("group must be positive".into());
    }
    Ok(())
}

/// A fused epilogue needs an epilogue activation (or none), float data, and its residual (input 3) must have the output's dtype and
/// shape (extents compatible).
fn check_epilogue(e: &Epilogue, out: &TensorType, inputs: &[InferInput]) -> Result<(), String> {
    if e.is_none() {
        return Ok(());
    }
    if let Some(u) = e.act.filter(|u| !u.is_epilogue_activation()) {
        return Err(format!("{} cannot be an epilogue activation", u.name()));
    }
    require_float(out, "output of a fused epilogue")?;
    if e.channel_scale {
        // Checked against the conv input in `infer_conv`.
        if inputs.len() != 3 + e.extra_inputs() {
            return Err("channel_scale needs the scale as the last input".into());
        }
    }
    if e.residual {
        let r = inputs[3].ty;
        if r.dtype != out.dtype {
            return Err(format!(
                "residual has dtype {}, output has {}",
                r.dtype, out.dtype
            ));
        }
        if r.rank() != out.rank()
            || !r
                .shape
                .iter()
                .zip(&out.shape)
                .all(|(a, b)| dims_compatible(a, b))
        {
            return Err(format!(
                "residual {r} does not have the output's shape {out}"
            ));
        }
    }
    Ok(())
}

fn infer_conv(a: &ConvAttrs, inputs: &[InferInput]) -> Result<TensorType, String> {
    let (x, w) = (inputs[0].ty, inputs[1].ty);
    if a.epilogue.channel_scale {
        let s = inputs[inputs.len() - 1].ty;
        let ok = a.group == 1
            && s.dtype == x.dtype
            && s.rank() == x.rank()
            && dims_compatible(&s.shape[0], &x.shape[0])
            && dims_compatible(&s.shape[1], &x.shape[1])
            && s.shape[2..].iter().all(|d| *d == Dim::Known(1));
        if !ok {
            return Err(format!(
                "channel scale {s} must be [N, C, 1..] of the input {x}, with group 1"
            ));
        }
    }
    check_conv_operands(x, w, a.group)?;
    let (channels, m, per_group) = (&x.shape[1], &w.shape[0], &w.shape[1]);
    if let (Dim::Known(c), Dim::Known(cg)) = (channels, per_group) {
        if cg.checked_mul(a.group) != Some(*c) {
            return Err(format!(
                "input has {c} channels but weight expects {cg} per group x {} groups",
                a.group
            ));
        }
    }
    if let Dim::Known(m) = m {
        if m % a.group != 0 {
            return Err(format!(
                "{m} output channels are not divisible by {} groups",
                a.group
            ));
        }
    }
    let mut out_channels = m.clone();
    if let Some(b) = inputs.get(2) {
        require_same_dtype(x, b.ty, "input", "bias")?;
        require_rank(b.ty, 1, "bias")?;
        out_channels = unify_dims(m, &b.ty.shape[0])
            .map_err(|e| format!("bias length differs from output channels: {e}"))?;
    }
    let spatial = spatial_out(
        &x.shape[2..],
        &w.shape[2..],
        &a.strides,
        &a.dilations,
        &a.pads,
        a.auto_pad,
        false,
    )?;
    let mut shape = Shape::new();
    shape.push(x.shape[0].clone());
    shape.push(out_channels);
    shape.extend(spatial);
    Ok(plain(x.dtype, shape))
}

/// A quantized conv/gemm (see [`crate::op::IntegerAttrs`]): the float op's shape rules on the
/// operands' shapes, then the integer contract — u8/i8 data, i8/u8 weights, i32 bias, no
/// residual, channel scale or activation, gemm with `alpha = beta = 1` and no `trans_a`, and a
/// valid requantization. The output is i32 (quantized at `s_x · s_w` per output channel when
/// both operands carry quantization parameters) or the requantized dtype with `quant(scale,
/// zero_point)`.
fn infer_integer(op: &Op, ia: &IntegerAttrs, inputs: &[InferInput]) -> Result<TensorType, String> {
    let int8 = |t: &TensorType, what: &str| match t.dtype {
        DType::U8 | DType::I8 => Ok(()),
        d => Err(format!("a quantized op's {what} must be u8 or i8, got {d}")),
    };
    let (x, w) = (inputs[0].ty, inputs[1].ty);
    int8(x, "data input")?;
    int8(w, "weights")?;
    if let Some(b) = inputs.get(2) {
        if b.ty.dtype != DType::I32 {
            return Err(format!("a quantized op's bias must be i32, got {}", b.ty));
        }
    }
    let float = |t: &TensorType| TensorType::new(DType::F32, t.shape.clone());
    let floats: Vec<TensorType> = inputs.iter().map(|i| float(i.ty)).collect();
    let float_inputs: Vec<InferInput> = floats.iter().map(InferInput::of).collect();
    let (epilogue, shape, channel_axis) = match op {
        Op::Conv(a) => {
            let plain_attrs = ConvAttrs {
                integer: None,
                ..a.clone()
            };
            (
                a.epilogue,
                infer_conv(&plain_attrs, &float_inputs)?.shape,
                1,
            )
        }
        Op::Gemm(a) => {
            if a.alpha != F32(1.0) || a.beta != F32(1.0) || a.trans_a {
                return Err("a quantized gemm needs alpha = beta = 1 and no trans_a".into());
            }
            if let Some(c) = inputs.get(2) {
                if c.ty.rank() != 1 {
                    return Err(format!(
                        "a quantized gemm's C must be a bias [N], got {}",
                        c.ty
                    ));
                }
            }
            let plain_attrs = GemmAttrs {
                integer: None,
                ..a.clone()
            };
            let out = infer_op(&Op::Gemm(plain_attrs), &float_inputs)?;
            (a.epilogue, out[0].shape.clone(), 1)
        }
        _ => return Err("only conv and gemm have a quantized form".into()),
    };
    if !epilogue.is_none() {
        return Err("a quantized op fuses no activation, residual or channel scale (a Relu or Clip folds into requant_min/requant_max)".into());
    }
    let channels = shape[channel_axis].known();
    let Some(r) = &ia.requant else {
        // The accumulators: quantized at s_x · s_w when both operands say their scales.
        let quant = match (&x.quant, &w.quant) {
            (Some(qx), Some(qw)) if qx.scale.len() == 1 => {
                let sx = qx.scale[0].0;
                Some(std::sync::Arc::new(QuantParams {
                    scale: qw.scale.iter().map(|s| F32(sx * s.0)).collect(),
                    zero_point: vec![0; qw.scale.len()],
                    axis: (qw.scale.len() > 1).then_some(channel_axis),
                }))
            }
            _ => None,
        };
        return Ok(TensorType::new(DType::I32, shape).with_quant(quant));
    };
    let (lo, hi) = crate::quant::range_of(r.to)
        .ok_or_else(|| format!("requantization to {} (expected u8 or i8)", r.to))?;
    if !(lo <= r.min && r.min <= r.max && r.max <= hi) {
        return Err(format!(
            "requant_min {} / requant_max {} outside {}'s range or out of order",
            r.min, r.max, r.to
        ));
    }
    if !(lo..=hi).contains(&r.zero_point) {
        return Err(format!(
            "requant_zero_point {} outside {}'s range",
            r.zero_point, r.to
        ));
    }
    let n = r.multiplier.len();
    if n == 0 || (n != 1 && channels.is_some_and(|c| c != n)) {
        return Err(format!(
            "requant_multiplier has {n} entries for {} output channels",
            shape[channel_axis]
        ));
    }
    if let Some(bad) = r
        .multiplier
        .iter()
        .find(|m| crate::quant::quantize_multiplier(m.0).is_none())
    {
        return Err(format!(
            "requant_multiplier {} has no fixed-point form (positive, 2^-31 to 2^30)",
            bad.0
        ));
    }
    if !(r.scale.0.is_finite() && r.scale.0 > 0.0) {
        return Err(format!("requant_scale {} is not positive", r.scale.0));
    }
    let quant = QuantParams {
        scale: vec![r.scale],
        zero_point: vec![r.zero_point as i64],
        axis: None,
    };
    Ok(TensorType::new(r.to, shape).with_quant(Some(std::sync::Arc::new(quant))))
}

/// Output extent and begin padding of each spatial axis of a transposed convolution, as
/// [`ConvTransposeAttrs`] documents; the single source of truth for inference and backends.
/// `input` and `kernel` have one entry per spatial axis; the other lists are empty (defaults) or
/// per axis (`pads`: begins then ends).
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose_axes(
    auto_pad: AutoPad,
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
    output_padding: &[usize],
    output_shape: &[usize],
) -> Result<Vec<(usize, usize)>, String> {
    let k = input.len();
    if kernel.len() != k {
        return Err(format!(
            "kernel has {} spatial axes, input has {k}",
            kernel.len()
        ));
    }
    let w = window(k, strides, dilations, pads)?;
    let output_padding = per_axis(output_padding, k, 0, "output_padding")?;
    if !output_shape.is_empty() && output_shape.len() != k {
        return Err(format!(
            "output_shape has {} entries, expected {k}",
            output_shape.len()
        ));
    }
    (0..k)
        .map(|i| {
            let eff = effective_kernel(kernel[i], w.dilations[i])?;
            let full = input[i]
                .saturating_sub(1)
                .checked_mul(w.strides[i])
                .and_then(|v| v.checked_add(output_padding[i]))
                .and_then(|v| v.checked_add(eff))
                .ok_or("output extent overflows")?;
            let target = if let Some(&o) = output_shape.get(i) {
                Some(o)
            } else if matches!(auto_pad, AutoPad::SameUpper | AutoPad::SameLower) {
                Some(
                    input[i]
                        .checked_mul(w.strides[i])
                        .ok_or("output extent overflows")?,
                )
            } else {
                None
            };
            match target {
                Some(out) => {
                    let total = full.saturating_sub(out);
                    let begin = if auto_pad == AutoPad::SameUpper {
                        total / 2
                    } else {
                        total - total / 2
                    };
                    Ok((out, begin))
                }
                None if auto_pad == AutoPad::Valid => Ok((full, 0)),
                None => {
                    let (b, e) = w.pads[i];
                    let out = b
                        .checked_add(e)
                        .and_then(|p| full.checked_sub(p))
                        .ok_or_else(|| {
                            format!("pads {b},{e} exceed the full output extent {full}")
                        })?;
                    Ok((out, b))
                }
            }
        })
        .collect()
}

fn infer_conv_transpose(
    a: &ConvTransposeAttrs,
    inputs: &[InferInput],
) -> Result<TensorType, String> {
    let (x, w) = (inputs[0].ty, inputs[1].ty);
    check_conv_operands(x, w, a.group)?;
    if !dims_compatible(&x.shape[1], &w.shape[0]) {
        return Err(format!(
            "input has {} channels, weight expects {}",
            x.shape[1], w.shape[0]
        ));
    }
    if let Dim::Known(c) = x.shape[1] {
        if c % a.group != 0 {
            return Err(format!(
                "{c} input channels are not divisible by {} groups",
                a.group
            ));
        }
    }
    let mut out_channels = dim_product([&w.shape[1], &Dim::Known(a.group)])?;
    if let Some(b) = inputs.get(2) {
        require_same_dtype(x, b.ty, "input", "bias")?;
        require_rank(b.ty, 1, "bias")?;
        out_channels = unify_dims(&out_channels, &b.ty.shape[0])
            .map_err(|e| format!("bias length differs from output channels: {e}"))?;
    }
    let k = x.rank() - 2;
    let ins: Option<Vec<usize>> = x.shape[2..].iter().map(Dim::known).collect();
    let ks: Option<Vec<usize>> = w.shape[2..].iter().map(Dim::known).collect();
    let spatial: Vec<Dim> = match (ins, ks) {
        (Some(ins), Some(ks)) => conv_transpose_axes(
            a.auto_pad,
            &ins,
            &ks,
            &a.strides,
            &a.dilations,
            &a.pads,
            &a.output_padding,
            &a.output_shape,
        )?
        .into_iter()
        .map(|(o, _)| Dim::Known(o))
        .collect(),
        _ if a.output_shape.len() == k => a.output_shape.iter().map(|&o| Dim::Known(o)).collect(),
        _ => vec![Dim::Unknown; k],
    };
    let mut shape = Shape::new();
    shape.push(x.shape[0].clone());
    shape.push(out_channels);
    shape.extend(spatial);
    Ok(plain(x.dtype, shape))
}

fn require_pool_dtype(kind: PoolKind, x: &TensorType) -> Result<(), String> {
    match kind {
        PoolKind::Max if matches!(x.dtype, DType::I8 | DType::U8) => Ok(()),
        _ => require_float(x, "input"),
    }
}

fn infer_pool(a: &PoolAttrs, x: &TensorType) -> Result<TensorType, String> {
    require_pool_dtype(a.kind, x)?;
    if x.rank() < 3 {
        return Err(format!(
            "input must have rank >= 3 (N, C, spatial..), got {x}"
        ));
    }
    let k = x.rank() - 2;
    if a.kernel.len() != k {
        return Err(format!(
            "kernel has {} axes, input has {k} spatial axes",
            a.kernel.len()
        ));
    }
    let kernel: Vec<Dim> = a.kernel.iter().map(|&v| Dim::Known(v)).collect();
    let spatial = spatial_out(
        &x.shape[2..],
        &kernel,
        &a.strides,
        &a.dilations,
        &a.pads,
        a.auto_pad,
        a.ceil_mode,
    )?;
    let mut shape: Shape = x.shape[..2].iter().cloned().collect();
    shape.extend(spatial);
    let quant = if a.kind == PoolKind::Max {
        per_tensor(x)
    } else {
        None
    };
    Ok(plain(x.dtype, shape).with_quant(quant))
}

// ---------------------------------------------------------------------------------------------
// Linear algebra.

fn infer_matmul(a: &TensorType, b: &TensorType) -> Result<TensorType, String> {
    require_same_dtype(a, b, "a", "b")?;
    require_numeric(a, "a")?;
    if a.rank() == 0 || b.rank() == 0 {
        return Err(format!("operands must have rank >= 1, got {a} and {b}"));
    }
    let one = Dim::Known(1);
    let a_shape: Vec<Dim> = if a.rank() == 1 {
        vec![one.clone(), a.shape[0].clone()]
    } else {
        a.shape.to_vec()
    };
    let b_shape: Vec<Dim> = if b.rank() == 1 {
        vec![b.shape[0].clone(), one]
    } else {
        b.shape.to_vec()
    };
    let (ra, rb) = (a_shape.len(), b_shape.len());
    let ka = &a_shape[ra - 1];
    let kb = &b_shape[rb - 2];
    if !dims_compatible(ka, kb) {
        return Err(format!(
            "inner dims differ: {} @ {} ({ka} vs {kb})",
            fmt_shape(&a.shape),
            fmt_shape(&b.shape)
        ));
    }
    let mut shape = broadcast_shapes(&a_shape[..ra - 2], &b_shape[..rb - 2])
        .map_err(|e| format!("batch dims: {e}"))?;
    if a.rank() > 1 {
        shape.push(a_shape[ra - 2].clone());
    }
    if b.rank() > 1 {
        shape.push(b_shape[rb - 1].clone());
    }
    Ok(plain(a.dtype, shape))
}

/// `softmax(q @ k_t) @ v`: see [`Op::Attention`].
fn infer_attention(q: &TensorType, kt: &TensorType, v: &TensorType) -> Result<TensorType, String> {
    require_float(q, "q")?;
    require_same_dtype(q, kt, "q", "k_t")?;
    require_same_dtype(q, v, "q", "v")?;
    let r = q.rank();
    if r < 2 || kt.rank() != r || v.rank() != r {
        return Err(format!(
            "q, k_t and v must have one rank >= 2, got {q}, {kt} and {v}"
        ));
    }
    for i in 0..r - 2 {
        if !dims_compatible(&q.shape[i], &kt.shape[i]) || !dims_compatible(&q.shape[i], &v.shape[i])
        {
            return Err(format!("batch dims differ: {q}, {kt} and {v}"));
        }
    }
    if !dims_compatible(&q.shape[r - 1], &kt.shape[r - 2]) {
        return Err(format!("q's last dim must be k_t's rows: {q} and {kt}"));
    }
    if !dims_compatible(&kt.shape[r - 1], &v.shape[r - 2]) {
        return Err(format!("k_t's last dim must be v's rows: {kt} and {v}"));
    }
    let mut shape: Vec<Dim> = q.shape[..r - 1].to_vec();
    shape.push(v.shape[r - 1].clone());
    Ok(plain(q.dtype, shape.into_iter().collect()))
}

// ---------------------------------------------------------------------------------------------
// Reductions.

fn infer_reduce(a: &ReduceAttrs, inputs: &[InferInput]) -> Result<TensorType, String> {
    let x = inputs[0].ty;
    if x.dtype == DType::Bool && !matches!(a.kind, ReduceKind::Max | ReduceKind::Min) {
        return Err("only reduce_max and reduce_min accept bool".into());
    }
    let rank = x.rank();
    let axes = inputs
        .get(1)
        .map(|inp| index_vector(inp, "axes", false))
        .transpose()?;
    let reduced: Option<Vec<usize>> = match axes {
        None => None,
        Some(IndexVec::Const(v)) if v.is_empty() => None,
        Some(IndexVec::Len(Some(0))) => None,
        Some(IndexVec::Const(v)) => Some(norm_axes(&v, rank)?),
        Some(IndexVec::Len(len)) => {
            // Reduced axes are unknown.
            if a.keepdims {
                let shape = x
                    .shape
                    .iter()
                    .map(|d| match d {
                        Dim::Known(1) => Dim::Known(1),
                        _ => Dim::Unknown,
                    })
                    .collect();
                return Ok(plain(x.dtype, shape));
            }
            let len = len.ok_or("rank depends on a non-constant axes input")?;
            let out_rank = rank
                .checked_sub(len)
                .ok_or_else(|| format!("{len} axes for rank {rank}"))?;
            return Ok(plain(
                x.dtype,
                std::iter::repeat_n(Dim::Unknown, out_rank).collect(),
            ));
        }
    };
    let reduced = match reduced {
        Some(r) => r,
        None if a.noop_with_empty_axes => return Ok(plain(x.dtype, x.shape.clone())),
        None => (0..rank).collect(),
    };
    let mut shape = Shape::new();
    for (i, d) in x.shape.iter().enumerate() {
        if !reduced.contains(&i) {
            shape.push(d.clone());
        } else if a.keepdims {
            shape.push(Dim::Known(1));
        }
    }
    Ok(plain(x.dtype, shape))
}

// ---------------------------------------------------------------------------------------------
// Shape manipulation.

fn infer_reshape(x: &TensorType, shape: &InferInput, allowzero: bool) -> Result<Shape, String> {
    let values = match index_vector(shape, "shape", false)? {
        IndexVec::Const(v) => v,
        IndexVec::Len(Some(n)) => return Ok(std::iter::repeat_n(Dim::Unknown, n).collect()),
        IndexVec::Len(None) => return Err("rank depends on a non-constant shape input".into()),
    };
    let mut out: Vec<Dim> = Vec::with_capacity(values.len());
    let mut inferred_at = None;
    for (i, &s) in values.iter().enumerate() {
        let dim = match s {
            -1 => {
                if inferred_at.replace(i).is_some() {
                    return Err("shape has more than one -1".into());
                }
                Dim::Unknown
            }
            0 if !allowzero => x.shape.get(i).cloned().ok_or_else(|| {
                format!(
                    "shape[{i}] = 0 copies input dim {i}, but the input has rank {}",
                    x.rank()
                )
            })?,
            s if s < -1 => return Err(format!("invalid extent {s} in shape")),
            s => Dim::Known(to_extent(s, "extent")?),
        };
        out.push(dim);
    }
    if allowzero && inferred_at.is_some() && values.contains(&0) {
        return Err("shape has both 0 and -1 with allowzero".into());
    }
    // Cancel symbols common to input and output, then compare (or divide) what remains.
    let mut in_rest: Vec<Dim> = x.shape.to_vec();
    let mut out_rest: Vec<Dim> = Vec::new();
    for (i, d) in out.iter().enumerate() {
        if Some(i) == inferred_at {
            continue;
        }
        if let Dim::Sym(_) = d {
            if let Some(pos) = in_rest.iter().position(|e| e == d) {
                in_rest.swap_remove(pos);
                continue;
            }
        }
        out_rest.push(d.clone());
    }
    let (in_known, in_other) = split_known(&in_rest)?;
    let (out_known, out_other) = split_known(&out_rest)?;
    match inferred_at {
        Some(pos) => {
            out[pos] = match (in_other.as_slice(), out_other.is_empty()) {
                (_, true) if out_known == 0 => {
                    return Err("cannot infer -1 when other extents are 0".into())
                }
                ([], true) => {
                    if in_known % out_known != 0 {
                        return Err(format!(
                            "cannot reshape {} into {} ({in_known} elements not divisible by {out_known})",
                            fmt_shape(&x.shape),
                            fmt_shape(&out)
                        ));
                    }
                    Dim::Known(in_known / out_known)
                }
                ([single], true) if in_known == out_known => single.clone(),
                _ => Dim::Unknown,
            };
        }
        None => {
            if in_other.is_empty() && out_other.is_empty() && in_known != out_known {
                return Err(format!(
                    "cannot reshape {} into {}: element counts differ",
                    fmt_shape(&x.shape),
                    fmt_shape(&out)
                ));
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// The product of the known dims (0 if any is 0) and the list of the other dims.
fn split_known(dims: &[Dim]) -> Result<(usize, Vec<Dim>), String> {
    let others: Vec<Dim> = dims
        .iter()
        .filter(|d| d.known().is_none())
        .cloned()
        .collect();
    match dim_product(dims.iter().filter(|d| d.known().is_some()))? {
        Dim::Known(n) => Ok((n, others)),
        _ => Err("element count is not known".into()),
    }
}

fn infer_transpose(perm: &[usize], x: &TensorType) -> Result<TensorType, String> {
    let rank = x.rank();
    let mut seen = vec![false; rank];
    if perm.len() != rank {
        return Err(format!(
            "perm {perm:?} has {} entries, input has rank {rank}",
            perm.len()
        ));
    }
    for &p in perm {
        if p >= rank || std::mem::replace(&mut seen[p], true) {
            return Err(format!("perm {perm:?} is not a permutation of 0..{rank}"));
        }
    }
    let shape = perm.iter().map(|&p| x.shape[p].clone()).collect();
    let quant = x.quant.as_ref().map(|q| match q.axis {
        None => q.clone(),
        Some(axis) => Arc::new(QuantParams {
            axis: perm.iter().position(|&p| p == axis),
            ..(**q).clone()
        }),
    });
    Ok(plain(x.dtype, shape).with_quant(quant))
}

fn infer_concat(axis: i64, inputs: &[InferInput]) -> Result<TensorType, String> {
    let first = inputs[0].ty;
    let rank = first.rank();
    let axis = norm_axis(axis, rank)?;
    let mut shape = first.shape.clone();
    for (i, inp) in inputs.iter().enumerate().skip(1) {
        let t = inp.ty;
        if t.dtype != first.dtype {
            return Err(format!(
                "input {i} has dtype {}, input 0 has {}",
                t.dtype, first.dtype
            ));
        }
        if t.rank() != rank {
            return Err(format!(
                "input {i} has rank {}, input 0 has {rank}",
                t.rank()
            ));
        }
        for (j, d) in t.shape.iter().enumerate() {
            shape[j] = if j == axis {
                dim_add(&shape[j], d)?
            } else {
                unify_dims(&shape[j], d)
                    .map_err(|e| format!("input {i} differs on axis {j}: {e}"))?
            };
        }
    }
    let quant =
        per_tensor(first).filter(|q| inputs.iter().all(|inp| inp.ty.quant.as_ref() == Some(q)));
    Ok(plain(first.dtype, shape).with_quant(quant))
}

fn infer_split(
    axis: i64,
    num_outputs: usize,
    inputs: &[InferInput],
) -> Result<Vec<TensorType>, String> {
    let x = inputs[0].ty;
    let axis = norm_axis(axis, x.rank())?;
    if num_outputs == 0 {
        return Err("num_outputs must be positive".into());
    }
    let extent = &x.shape[axis];
    let sizes: Vec<Dim> = match inputs.get(1) {
        Some(inp) => match index_vector(inp, "split", false)? {
            IndexVec::Const(v) => {
                if v.len() != num_outputs {
                    return Err(format!(
                        "split has {} entries for {num_outputs} outputs",
                        v.len()
                    ));
                }
                let sizes = v
                    .iter()
                    .map(|&s| to_extent(s, "split size"))
                    .collect::<Result<Vec<usize>, String>>()?;
                let total = sizes
                    .iter()
                    .try_fold(0usize, |acc, &s| acc.checked_add(s))
                    .ok_or("split sizes overflow")?;
                if let Dim::Known(e) = extent {
                    if total != *e {
                        return Err(format!("split sizes sum to {total}, axis extent is {e}"));
                    }
                }
                sizes.into_iter().map(Dim::Known).collect()
            }
            IndexVec::Len(n) => {
                if n.is_some_and(|n| n != num_outputs) {
                    return Err(format!(
                        "split has {} entries for {num_outputs} outputs",
                        n.unwrap_or(0)
                    ));
                }
                vec![Dim::Unknown; num_outputs]
            }
        },
        None => match extent {
            _ if num_outputs == 1 => vec![extent.clone()],
            Dim::Known(e) => {
                let chunk = e.div_ceil(num_outputs);
                let last = chunk
                    .checked_mul(num_outputs - 1)
                    .and_then(|head| e.checked_sub(head))
                    .ok_or_else(|| {
                        format!("extent {e} cannot be split into {num_outputs} chunks of {chunk}")
                    })?;
                let mut sizes = vec![Dim::Known(chunk); num_outputs - 1];
                sizes.push(Dim::Known(last));
                sizes
            }
            _ => vec![Dim::Unknown; num_outputs],
        },
    };
    let quant = per_tensor(x);
    Ok(sizes
        .into_iter()
        .map(|d| {
            let mut shape = x.shape.clone();
            shape[axis] = d;
            plain(x.dtype, shape).with_quant(quant.clone())
        })
        .collect())
}

/// Number of elements `data[start:end:step]` selects on an axis of extent `dim`, with ONNX
/// clamping (negative indices count from the end; `start` is clamped to `[0, dim]` for positive
/// steps and `[0, dim - 1]` for negative ones, `end` to `[0, dim]` and `[-1, dim - 1]`).
/// `step` must be non-zero (0 selects nothing).
pub fn slice_extent(dim: usize, start: i64, end: i64, step: i64) -> usize {
    let (start, end) = slice_bounds(dim, start, end, step);
    let (s, e, st) = (start as i128, end as i128, step as i128);
    let len = if st > 0 {
        if e > s {
            (e - s + st - 1) / st
        } else {
            0
        }
    } else if st < 0 {
        if s > e {
            (s - e - st - 1) / -st
        } else {
            0
        }
    } else {
        0
    };
    len as usize
}

/// Clamped `(start, end)` of a slice along an axis of extent `dim` (see [`slice_extent`]); the
/// first selected index is `start` and `end` is exclusive (`-1` means "before index 0" for
/// negative steps).
pub fn slice_bounds(dim: usize, start: i64, end: i64, step: i64) -> (i64, i64) {
    let d = dim.min(i64::MAX as usize) as i128;
    let (mut s, mut e) = (start as i128, end as i128);
    if s < 0 {
        s += d;
    }
    if e < 0 {
        e += d;
    }
    if step > 0 {
        s = s.max(0).min(d);
        e = e.max(0).min(d);
    } else {
        s = s.max(0).min(d - 1);
        e = e.max(-1).min(d - 1);
    }
    (s as i64, e as i64)
}

fn infer_slice(inputs: &[InferInput]) -> Result<TensorType, String> {
    let x = inputs[0].ty;
    let rank = x.rank();
    let starts = index_vector(&inputs[1], "starts", true)?;
    let ends = index_vector(&inputs[2], "ends", true)?;
    let axes = inputs
        .get(3)
        .map(|i| index_vector(i, "axes", true))
        .transpose()?;
    let steps = inputs
        .get(4)
        .map(|i| index_vector(i, "steps", true))
        .transpose()?;
    let mut len: Option<usize> = None;
    for (v, name) in [
        (Some(&starts), "starts"),
        (Some(&ends), "ends"),
        (axes.as_ref(), "axes"),
        (steps.as_ref(), "steps"),
    ] {
        if let Some(n) = v.and_then(IndexVec::len) {
            match len {
                Some(l) if l != n => {
                    return Err(format!("{name} has {n} entries, expected {l}"));
                }
                _ => len = Some(n),
            }
        }
    }
    if let Some(n) = len {
        if n > rank {
            return Err(format!("{n} sliced axes for rank {rank}"));
        }
    }
    if let Some(IndexVec::Const(st)) = &steps {
        if st.contains(&0) {
            return Err("steps must be non-zero".into());
        }
    }
    let axes: Option<Vec<usize>> = match &axes {
        Some(IndexVec::Const(a)) => Some(norm_axes(a, rank)?),
        Some(IndexVec::Len(_)) => None,
        None => len.map(|n| (0..n).collect()),
    };
    let Some(axes) = axes else {
        // Which axes are sliced is unknown.
        return Ok(
            plain(x.dtype, std::iter::repeat_n(Dim::Unknown, rank).collect())
                .with_quant(per_tensor(x)),
        );
    };
    let mut shape = x.shape.clone();
    for (i, &axis) in axes.iter().enumerate() {
        let param = |v: &IndexVec| match v {
            IndexVec::Const(v) => v.get(i).copied(),
            IndexVec::Len(_) => None,
        };
        let step = match &steps {
            Some(s) => param(s),
            None => Some(1),
        };
        shape[axis] = match (param(&starts), param(&ends), step) {
            (Some(start), Some(end), Some(step)) => match &shape[axis] {
                Dim::Known(d) => Dim::Known(slice_extent(*d, start, end, step)),
                d if selects_whole_axis(start, end, step) => d.clone(),
                _ => Dim::Unknown,
            },
            _ => Dim::Unknown,
        };
    }
    Ok(plain(x.dtype, shape).with_quant(per_tensor(x)))
}

/// Whether a slice selects an entire axis whatever its extent (assuming extents below 2^31,
/// as exporters use `INT_MAX`-style sentinels for "to the end").
fn selects_whole_axis(start: i64, end: i64, step: i64) -> bool {
    const BIG: i64 = i32::MAX as i64;
    step == 1 && start == 0 && end >= BIG
}

fn infer_gather(axis: i64, data: &TensorType, indices: &InferInput) -> Result<TensorType, String> {
    let axis = norm_axis(axis, data.rank())?;
    let it = indices.ty;
    if !matches!(it.dtype, DType::I32 | DType::I64) {
        return Err(format!("indices must be i32 or i64, got {}", it.dtype));
    }
    if let (Some(t), Dim::Known(d)) = (indices.value, &data.shape[axis]) {
        let d = *d as i128;
        if let Some(bad) = t
            .to_i64_vec()
            .into_iter()
            .find(|&i| (i as i128) < -d || (i as i128) >= d)
        {
            return Err(format!("index {bad} is out of range for extent {d}"));
        }
    }
    let mut shape: Shape = data.shape[..axis].iter().cloned().collect();
    shape.extend(it.shape.iter().cloned());
    shape.extend(data.shape[axis + 1..].iter().cloned());
    Ok(plain(data.dtype, shape).with_quant(per_tensor(data)))
}

fn infer_squeeze(inputs: &[InferInput]) -> Result<TensorType, String> {
    let x = inputs[0].ty;
    let rank = x.rank();
    let axes = inputs
        .get(1)
        .map(|i| index_vector(i, "axes", false))
        .transpose()?;
    let removed: Vec<usize> = match axes {
        Some(IndexVec::Const(v)) if !v.is_empty() => {
            let axes = norm_axes(&v, rank)?;
            for &a in &axes {
                if let Dim::Known(n) = x.shape[a] {
                    if n != 1 {
                        return Err(format!("cannot squeeze axis {a} of extent {n}"));
                    }
                }
            }
            axes
        }
        Some(IndexVec::Len(n)) if n != Some(0) => {
            let n = n.ok_or("rank depends on a non-constant axes input")?;
            let out_rank = rank
                .checked_sub(n)
                .ok_or_else(|| format!("{n} axes for rank {rank}"))?;
            return Ok(plain(
                x.dtype,
                std::iter::repeat_n(Dim::Unknown, out_rank).collect(),
            )
            .with_quant(per_tensor(x)));
        }
        _ => {
            if x.shape.iter().any(|d| d.known().is_none()) {
                return Err(format!(
                    "rank depends on which non-constant dims of {} are 1; give axes",
                    fmt_shape(&x.shape)
                ));
            }
            (0..rank).filter(|&i| x.shape[i] == Dim::Known(1)).collect()
        }
    };
    let shape = x
        .shape
        .iter()
        .enumerate()
        .filter(|(i, _)| !removed.contains(i))
        .map(|(_, d)| d.clone())
        .collect();
    Ok(plain(x.dtype, shape).with_quant(per_tensor(x)))
}

fn infer_unsqueeze(x: &TensorType, axes: &InferInput) -> Result<TensorType, String> {
    let rank = x.rank();
    let shape = match index_vector(axes, "axes", false)? {
        IndexVec::Const(v) => {
            let out_rank = rank.checked_add(v.len()).ok_or("output rank overflows")?;
            let axes = norm_axes(&v, out_rank)?;
            let mut src = x.shape.iter();
            (0..out_rank)
                .map(|i| {
                    if axes.contains(&i) {
                        Dim::Known(1)
                    } else {
                        src.next().cloned().unwrap_or(Dim::Unknown)
                    }
                })
                .collect()
        }
        IndexVec::Len(Some(n)) => {
            let out_rank = rank.checked_add(n).ok_or("output rank overflows")?;
            std::iter::repeat_n(Dim::Unknown, out_rank).collect()
        }
        IndexVec::Len(None) => return Err("rank depends on a non-constant axes input".into()),
    };
    Ok(plain(x.dtype, shape).with_quant(per_tensor(x)))
}

// ---------------------------------------------------------------------------------------------
// Generators.

fn infer_range(inputs: &[InferInput]) -> Result<TensorType, String> {
    let dtype = inputs[0].ty.dtype;
    for (inp, name) in inputs.iter().zip(["start", "limit", "delta"]) {
        if inp.ty.dtype != dtype {
            return Err(format!(
                "{name} has dtype {}, start has {dtype}",
                inp.ty.dtype
            ));
        }
        require_numeric(inp.ty, name)?;
        require_scalar(inp.ty, name)?;
    }
    let scalar = |inp: &InferInput| inp.value.filter(|t| t.numel() == 1).cloned();
    let len = match (scalar(&inputs[0]), scalar(&inputs[1]), scalar(&inputs[2])) {
        (Some(s), Some(l), Some(d)) => Dim::Known(range_len(&s, &l, &d)?),
        _ => Dim::Unknown,
    };
    Ok(plain(dtype, std::iter::once(len).collect()))
}

/// `max(0, ceil((limit - start) / delta))`, computed exactly for integers and in the input's
/// precision for floats.
pub fn range_len(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<usize, String> {
    let dtype = start.dtype();
    let n: f64 = if dtype.is_float() {
        let (s, l, d) = (start.get_f64(0), limit.get_f64(0), delta.get_f64(0));
        if d == 0.0 {
            return Err("delta must be non-zero".into());
        }
        if dtype == DType::F64 {
            ((l - s) / d).ceil()
        } else {
            (((l as f32) - (s as f32)) / (d as f32)).ceil() as f64
        }
    } else {
        let (s, l, d) = (
            start.get_i64(0) as i128,
            limit.get_i64(0) as i128,
            delta.get_i64(0) as i128,
        );
        if d == 0 {
            return Err("delta must be non-zero".into());
        }
        let num = l - s;
        let q = num / d;
        let ceil = if num % d != 0 && ((num < 0) == (d < 0)) {
            q + 1
        } else {
            q
        };
        ceil as f64
    };
    if n.is_nan() || n >= (1u64 << 53) as f64 {
        return Err(format!("range length {n} is not representable"));
    }
    Ok(n.max(0.0) as usize)
}

// ---------------------------------------------------------------------------------------------
// Quantization.

/// Checks a quantization scale (and zero point) against `x`; returns the normalised axis when
/// the parameters are per-axis (1-D with more than one element).
fn quant_axis(
    axis: i64,
    x: &TensorType,
    scale: &InferInput,
    zero_point: Option<&InferInput>,
) -> Result<Option<usize>, String> {
    require_float(scale.ty, "scale")?;
    if let Some(zp) = zero_point {
        if zp.ty.rank() != scale.ty.rank()
            || !zp
                .ty
                .shape
                .iter()
                .zip(&scale.ty.shape)
                .all(|(a, b)| dims_compatible(a, b))
        {
            return Err(format!(
                "zero point shape {} differs from scale shape {}",
                fmt_shape(&zp.ty.shape),
                fmt_shape(&scale.ty.shape)
            ));
        }
    }
    match scale.ty.shape.as_slice() {
        [] => Ok(None),
        [len] => {
            let len = match scale.value {
                Some(t) => Dim::Known(t.numel()),
                None => len.clone(),
            };
            if len == Dim::Known(1) {
                return Ok(None);
            }
            let axis = norm_axis(axis, x.rank())?;
            if !dims_compatible(&len, &x.shape[axis]) {
                return Err(format!(
                    "scale has {len} entries, input axis {axis} has extent {}",
                    x.shape[axis]
                ));
            }
            Ok(Some(axis))
        }
        _ => Err(format!(
            "scale must be a scalar or 1-D (blocked quantization is unsupported), got {}",
            scale.ty
        )),
    }
}

fn infer_quantize(axis: i64, to: DType, inputs: &[InferInput]) -> Result<TensorType, String> {
    let x = inputs[0].ty;
    require_float(x, "input")?;
    if !matches!(to, DType::I8 | DType::U8 | DType::I16 | DType::U16) {
        return Err(format!("cannot quantize to {to}"));
    }
    let zp = inputs.get(2);
    if let Some(zp) = zp {
        if zp.ty.dtype != to {
            return Err(format!(
                "zero point has dtype {}, output is {to}",
                zp.ty.dtype
            ));
        }
    }
    let q_axis = quant_axis(axis, x, &inputs[1], zp)?;
    let quant = match (inputs[1].value, zp.map(|z| z.value)) {
        (Some(scale), None) => Some(vec![0; scale.numel()]).map(|z| (scale, z)),
        (Some(scale), Some(Some(z))) => Some((scale, z.to_i64_vec())),
        _ => None,
    }
    .map(|(scale, zero_point)| -> Result<Quant, String> {
        if zero_point.len() != scale.numel() {
            return Err(format!(
                "{} zero points for {} scales",
                zero_point.len(),
                scale.numel()
            ));
        }
        Ok(Arc::new(QuantParams {
            scale: scale.to_f32_vec().into_iter().map(F32).collect(),
            zero_point,
            axis: q_axis,
        }))
    })
    .transpose()?;
    Ok(plain(to, x.shape.clone()).with_quant(quant))
}

fn infer_dequantize(axis: i64, inputs: &[InferInput]) -> Result<TensorType, String> {
    let x = inputs[0].ty;
    if !matches!(
        x.dtype,
        DType::I8 | DType::U8 | DType::I16 | DType::U16 | DType::I32
    ) {
        return Err(format!(
            "input must be a quantized integer, got {}",
            x.dtype
        ));
    }
    let zp = inputs.get(2);
    if let Some(zp) = zp {
        if zp.ty.dtype != x.dtype {
            return Err(format!(
                "zero point has dtype {}, input has {}",
                zp.ty.dtype, x.dtype
            ));
        }
    }
    quant_axis(axis, x, &inputs[1], zp)?;
    Ok(plain(DType::F32, x.shape.clone()))
}

// ---------------------------------------------------------------------------------------------
// Resize and Pad.

fn infer_resize(a: &ResizeAttrs, inputs: &[InferInput]) -> Result<TensorType, String> {
    let x = inputs[0].ty;
    let rank = x.rank();
    let axes = if a.axes.is_empty() {
        (0..rank).collect()
    } else {
        norm_axes(&a.axes, rank)?
    };
    let param = &inputs[1];
    let pt = param.ty;
    if pt.rank() != 1 {
        return Err(format!("scales/sizes must be 1-D, got {pt}"));
    }
    match a.by {
        ResizeBy::Scales if !pt.dtype.is_float() => {
            return Err(format!("scales must be float, got {}", pt.dtype))
        }
        ResizeBy::Sizes if pt.dtype != DType::I64 => {
            return Err(format!("sizes must be i64, got {}", pt.dtype))
        }
        _ => {}
    }
    let count = param.value.map(Tensor::numel).or(pt.shape[0].known());
    if count.is_some_and(|n| n != axes.len()) {
        return Err(format!(
            "scales/sizes has {} entries for {} resized axes",
            count.unwrap_or(0),
            axes.len()
        ));
    }
    if let Some(roi) = inputs.get(2) {
        require_float(roi.ty, "roi")?;
    }
    let mut shape = x.shape.clone();
    let Some(values) = param.value else {
        for &ax in &axes {
            shape[ax] = Dim::Unknown;
        }
        return Ok(plain(x.dtype, shape));
    };
    match a.by {
        ResizeBy::Scales => {
            let scales = values.to_f32_vec();
            for (&ax, &s) in axes.iter().zip(&scales) {
                if !(s > 0.0 && s.is_finite()) {
                    return Err(format!("scale {s} must be positive"));
                }
                shape[ax] = match &shape[ax] {
                    Dim::Known(n) => Dim::Known(scaled_extent(*n, s)?),
                    d if s == 1.0 => d.clone(),
                    _ => Dim::Unknown,
                };
            }
        }
        ResizeBy::Sizes => {
            let sizes = values
                .to_i64_vec()
                .into_iter()
                .map(|s| to_extent(s, "size"))
                .collect::<Result<Vec<usize>, String>>()?;
            if a.aspect == AspectPolicy::Stretch {
                for (&ax, &s) in axes.iter().zip(&sizes) {
                    shape[ax] = Dim::Known(s);
                }
            } else {
                let ins: Option<Vec<usize>> = axes.iter().map(|&ax| shape[ax].known()).collect();
                match ins {
                    Some(ins) => {
                        let ratios = sizes.iter().zip(&ins).map(|(&s, &i)| s as f32 / i as f32);
                        let scale = if a.aspect == AspectPolicy::NotLarger {
                            ratios.fold(f32::INFINITY, f32::min)
                        } else {
                            ratios.fold(0.0, f32::max)
                        };
                        for (&ax, &n) in axes.iter().zip(&ins) {
                            let v = (scale * n as f32).round();
                            if !(v.is_finite() && v >= 0.0) {
                                return Err(format!("resized extent {v} is invalid"));
                            }
                            shape[ax] = Dim::Known(v as usize);
                        }
                    }
                    None => {
                        for &ax in &axes {
                            shape[ax] = Dim::Unknown;
                        }
                    }
                }
            }
        }
    }
    Ok(plain(x.dtype, shape))
}

/// `floor(extent * scale)` computed in f32 as ONNX does.
fn scaled_extent(n: usize, scale: f32) -> Result<usize, String> {
    let v = (n as f32 * scale).floor();
    if !(v.is_finite() && v < (1u64 << 53) as f32) {
        return Err(format!("resized extent {n} x {scale} overflows"));
    }
    Ok(v as usize)
}

fn infer_pad(mode: PadMode, inputs: &[InferInput]) -> Result<TensorType, String> {
    let x = inputs[0].ty;
    let rank = x.rank();
    if let Some(v) = inputs.get(2) {
        require_same_dtype(x, v.ty, "input", "value")?;
        require_scalar(v.ty, "value")?;
    }
    let mut shape = x.shape.clone();
    match index_vector(&inputs[1], "pads", false)? {
        IndexVec::Const(p) => {
            if p.len() != 2 * rank {
                return Err(format!(
                    "pads has {} entries, expected {} for rank {rank}",
                    p.len(),
                    2 * rank
                ));
            }
            for (i, d) in shape.iter_mut().enumerate() {
                let (begin, end) = (p[i], p[i + rank]);
                if begin == 0 && end == 0 {
                    continue;
                }
                let Dim::Known(n) = *d else {
                    *d = Dim::Unknown;
                    continue;
                };
                if mode == PadMode::Reflect && (begin.max(end) as i128) >= n as i128 && n > 0 {
                    return Err(format!(
                        "reflect padding {begin},{end} must be smaller than extent {n}"
                    ));
                }
                let total = n as i128 + begin as i128 + end as i128;
                if total < 0 {
                    return Err(format!("padding {begin},{end} makes extent {n} negative"));
                }
                *d = Dim::Known(
                    usize::try_from(total)
                        .map_err(|_| format!("padded extent {total} overflows"))?,
                );
            }
        }
        IndexVec::Len(n) => {
            if n.is_some_and(|n| Some(n) != rank.checked_mul(2)) {
                return Err(format!(
                    "pads has {} entries, expected {} for rank {rank}",
                    n.unwrap_or(0),
                    2 * rank
                ));
            }
            for d in shape.iter_mut() {
                *d = Dim::Unknown;
            }
        }
    }
    Ok(plain(x.dtype, shape).with_quant(per_tensor(x)))
}
