//! Pre-quantized ONNX operators, imported into the QDQ form (`docs/ONNX.md`, "Quantized
//! operators"): every integer input becomes a `dequantize_linear`, the op itself its float
//! counterpart, and a quantized output a `quantize_linear` — exactly what a QDQ model
//! (onnxruntime's `QuantFormat.QDQ`) holds, so the one pass that folds QDQ into integer ops
//! serves every source of quantized models:
//!
//! | ONNX | IR |
//! |---|---|
//! | `QLinearConv` (and `com.microsoft`, `channels_last`) | `q(conv(dq(x, sx, zx), dq(w, sw, zw, axis 0), dq(B, sx·sw, 0, axis 0)), sy, zy)` |
//! | `QLinearMatMul` | `q(matmul(dq(a), dq(b, axis -1)), sy, zy)` |
//! | `com.microsoft.QGemm` | `[q(]gemm{alpha, beta = alpha}(dq(A), dq(B, per column), dq(C, sa·sb))[, sy, zy)]` |
//! | `com.microsoft.QLinearAdd` / `QLinearMul` | `q(add/mul(dq(A), dq(B)), sc, zc)` |
//! | `com.microsoft.QLinearGlobalAveragePool` | `q(global_average_pool(dq(x)), sy, zy)` (`channels_last`: transposes around the pool) |
//! | `com.microsoft.QLinearAveragePool` | `q(average_pool(dq(x)), sy, zy)` (`channels_last`: transposes around the pool) |
//! | `com.microsoft.QLinearConcat` | `q(concat(dq(x_i, s_i, z_i)...), sy, zy)` |
//! | `ConvInteger` / `MatMulInteger` | `cast<i32>(conv/matmul(dq(x, 1, zx), dq(w, 1, zw)))` |
//! | `MaxPool` of a per-tensor quantized integer tensor | `q(max_pool(dq(x, s, z)), s, z)` |
//!
//! Scales are cast to f32 when they are another float type; zero points have the data's dtype.
//! Per-axis parameters are 1-D, one entry per output channel (conv weights, axis 0) or per column
//! (matmul/gemm `b`); activations are per tensor. The bias scale `sx·sw[c]` is the f32 product of
//! the two scales, computed here when both are constants.
//!
//! **Exactness of `ConvInteger`/`MatMulInteger`.** ONNX defines them as exact i32 sums of
//! `(x - zx)·(w - zw)`. The float form computes the same products exactly (each fits 17 bits), and
//! the sum is exact while every partial sum stays below 2^24 in magnitude: always when
//! `K · max|x - zx| · max|w - zw| <= 2^24` (K the reduction length: K <= 258 for u8 × u8 with
//! arbitrary zero points, K <= 513 for u8 × symmetric s8 weights), in practice far beyond, since
//! products of both signs cancel. The interpreter accumulates f32 convolutions and matrix products
//! in f64 and rounds once, so it is exact whenever the final i32 is below 2^24; the JIT's f32
//! kernels accumulate in f32. `fold-qdq` (in `O2`) turns `cast<i32>(conv|matmul(dq(x, 1, zx),
//! dq(w, 1, 0)))` with i8 weights — zero points constant or run time (`dynamic_quantize_linear`
//! produces them) — into the integer op with i32 accumulators and no requantization
//! (`passes/src/fold_integer.rs`), exact (wrapping in i32) for every K.
//!
//! Every lowering checks its inputs' count, dtypes and parameter shapes, and errors name the ONNX
//! input concerned (`input 4 ("w_scale") ...`); the enclosing error names the node.

use super::*;

/// The ONNX input `i` of the node, named `name` in errors.
fn required(cx: &NodeLowering, i: usize, name: &str) -> Result<ValueId, Reason> {
    cx.opt(i)
        .ok_or_else(|| invalid(format!("input {i} (\"{name}\") is missing")))
}

fn bad_input(i: usize, name: &str, reason: impl std::fmt::Display) -> Reason {
    invalid(format!("input {i} (\"{name}\") {reason}"))
}

/// Checks the number of inputs against `min..=max` (`names` lists them all, for the message).
fn input_count(cx: &NodeLowering, min: usize, max: usize, names: &str) -> Result<(), Reason> {
    let n = cx.inputs.len();
    if n < min || n > max {
        let expected = if min == max {
            min.to_string()
        } else {
            format!("{min} to {max}")
        };
        return Err(invalid(format!(
            "{} takes {expected} inputs ({names}), got {n}",
            cx.node.op_type
        )));
    }
    Ok(())
}

/// An 8-bit quantized data input.
fn int8_input(cx: &NodeLowering, i: usize, name: &str) -> Result<ValueId, Reason> {
    let v = required(cx, i, name)?;
    match cx.dtype(v) {
        DType::I8 | DType::U8 => Ok(v),
        dt => Err(bad_input(
            i,
            name,
            format!("must be int8 or uint8, got {dt}"),
        )),
    }
}

/// The known extents of a parameter (scale or zero point) of rank at most 1.
fn param_dims(cx: &NodeLowering, v: ValueId, i: usize, name: &str) -> Result<Vec<usize>, Reason> {
    let ty = cx.g.ty(v);
    match ty.dims() {
        Some(d) if d.len() <= 1 => Ok(d),
        Some(d) => Err(bad_input(
            i,
            name,
            format!("must be a scalar or 1-D, got shape {d:?}"),
        )),
        None => Err(bad_input(
            i,
            name,
            format!("must have a known shape, got {}", ty),
        )),
    }
}

/// Whether parameter dims denote one value (a scalar or a one-element vector).
fn is_single(dims: &[usize]) -> bool {
    dims.iter().product::<usize>() == 1
}

/// A scale input as f32 (other float types are cast).
fn scale_input(cx: &mut NodeLowering, i: usize, name: &str) -> Result<ValueId, Reason> {
    let v = required(cx, i, name)?;
    match cx.dtype(v) {
        DType::F32 => Ok(v),
        dt if dt.is_float() => cx.add(Op::Cast { to: DType::F32 }, &[v]),
        dt => Err(bad_input(
            i,
            name,
            format!("must be a float tensor, got {dt}"),
        )),
    }
}

/// A zero-point input, which must have the dtype `data` has (input `data_name`).
fn zero_point_input(
    cx: &NodeLowering,
    i: usize,
    name: &str,
    data: DType,
    data_name: &str,
) -> Result<Option<ValueId>, Reason> {
    let Some(z) = cx.opt(i) else {
        return Ok(None);
    };
    let dt = cx.dtype(z);
    if dt != data {
        return Err(bad_input(
            i,
            name,
            format!("has dtype {dt}, but \"{data_name}\" is {data}"),
        ));
    }
    Ok(Some(z))
}

/// Quantization parameters of one tensor: f32 scale, optional zero point, and the axis they run
/// along (`None`: per tensor).
#[derive(Clone, Copy)]
struct QParams {
    scale: ValueId,
    zero_point: Option<ValueId>,
    axis: Option<i64>,
}

/// The scale (input `si`) and zero point (input `zi`, optional unless `zp_required`) of a tensor
/// of dtype `data` that must be quantized per tensor.
fn per_tensor(
    cx: &mut NodeLowering,
    (si, sname): (usize, &str),
    (zi, zname): (usize, &str),
    zp_required: bool,
    data: DType,
    data_name: &str,
) -> Result<QParams, Reason> {
    let scale = scale_input(cx, si, sname)?;
    if !is_single(&param_dims(cx, scale, si, sname)?) {
        return Err(bad_input(
            si,
            sname,
            "must be a scalar: this tensor is quantized per tensor",
        ));
    }
    if zp_required {
        required(cx, zi, zname)?;
    }
    let zero_point = zero_point_input(cx, zi, zname, data, data_name)?;
    if let Some(z) = zero_point {
        if !is_single(&param_dims(cx, z, zi, zname)?) {
            return Err(bad_input(
                zi,
                zname,
                "must be a scalar: this tensor is quantized per tensor",
            ));
        }
    }
    Ok(QParams {
        scale,
        zero_point: match zero_point {
            Some(z) => Some(same_shape_zero_point(cx, z, scale, zi, zname)?),
            None => None,
        },
        axis: None,
    })
}

/// The scale and zero point of a tensor quantized per tensor or per slice along `axis`, whose
/// extent there is `extent` (`what` names those slices in errors: "output channels").
#[allow(clippy::too_many_arguments)]
fn per_axis(
    cx: &mut NodeLowering,
    (si, sname): (usize, &str),
    (zi, zname): (usize, &str),
    zp_required: bool,
    data: DType,
    data_name: &str,
    axis: i64,
    extent: Option<usize>,
    what: &str,
) -> Result<QParams, Reason> {
    let scale = scale_input(cx, si, sname)?;
    let sdims = param_dims(cx, scale, si, sname)?;
    if zp_required {
        required(cx, zi, zname)?;
    }
    let zero_point = zero_point_input(cx, zi, zname, data, data_name)?;
    let single = is_single(&sdims);
    if !single {
        if let Some(n) = extent.filter(|&n| n != sdims[0]) {
            return Err(bad_input(
                si,
                sname,
                format!("has {} entries for {n} {what}", sdims[0]),
            ));
        }
    }
    let zero_point = match zero_point {
        Some(z) => {
            let zdims = param_dims(cx, z, zi, zname)?;
            if zdims.iter().product::<usize>() != sdims.iter().product::<usize>()
                && !is_single(&zdims)
            {
                return Err(bad_input(
                    zi,
                    zname,
                    format!(
                        "has {} entries but \"{sname}\" has {}",
                        zdims.iter().product::<usize>(),
                        sdims.iter().product::<usize>()
                    ),
                ));
            }
            Some(same_shape_zero_point(cx, z, scale, zi, zname)?)
        }
        None => None,
    };
    Ok(QParams {
        scale,
        zero_point,
        axis: (!single).then_some(axis),
    })
}

/// The zero point `z` reshaped or broadcast to the shape of `scale` (`dequantize_linear` needs
/// both of one shape): a one-element zero point for a per-axis scale becomes a constant vector
/// when it is a constant.
fn same_shape_zero_point(
    cx: &mut NodeLowering,
    z: ValueId,
    scale: ValueId,
    zi: usize,
    zname: &str,
) -> Result<ValueId, Reason> {
    let sdims = cx.g.ty(scale).dims().unwrap_or_default();
    let zdims = cx.g.ty(z).dims().unwrap_or_default();
    if sdims == zdims {
        return Ok(z);
    }
    let n: usize = sdims.iter().product();
    if zdims.iter().product::<usize>() == n {
        let shape = cx.i64s(
            "shape",
            &sdims.iter().map(|&d| d as i64).collect::<Vec<_>>(),
        );
        return cx.add(Op::Reshape { allowzero: false }, &[z, shape]);
    }
    match cx.g.const_data(z) {
        Some(t) => {
            let v = t.get_f64(0);
            let dt = t.dtype();
            let one = scalar_tensor(dt, v);
            let filled = Tensor::from_bytes(dt, sdims.clone(), one.bytes().repeat(n).into())
                .map_err(|e| invalid(format!("internal: {e}")))?;
            Ok(cx.konst(zname, filled))
        }
        None => Err(bad_input(
            zi,
            zname,
            "is a single run-time value for per-axis scales (only a constant can be broadcast)",
        )),
    }
}

fn dequantize(cx: &mut NodeLowering, x: ValueId, p: QParams) -> Result<ValueId, Reason> {
    let mut ins = vec![x, p.scale];
    ins.extend(p.zero_point);
    cx.add(
        Op::DequantizeLinear {
            axis: p.axis.unwrap_or(1),
        },
        &ins,
    )
}

/// Quantizes `x` per tensor to `to` (the zero point's dtype when there is one).
fn quantize(cx: &mut NodeLowering, x: ValueId, p: QParams, to: DType) -> Result<ValueId, Reason> {
    let mut ins = vec![x, p.scale];
    ins.extend(p.zero_point);
    cx.add(Op::QuantizeLinear { axis: 1, to }, &ins)
}

/// The output parameters (scale `si`, zero point `zi`) and dtype of a quantized op; the dtype is
/// the zero point's, or `default` without one.
fn output_params(
    cx: &mut NodeLowering,
    s: (usize, &str),
    z: (usize, &str),
    zp_required: bool,
    default: DType,
) -> Result<(QParams, DType), Reason> {
    let to = match cx.opt(z.0) {
        Some(v) => match cx.dtype(v) {
            dt @ (DType::I8 | DType::U8) => dt,
            dt => {
                return Err(bad_input(
                    z.0,
                    z.1,
                    format!("must be int8 or uint8, got {dt}"),
                ))
            }
        },
        None => default,
    };
    let p = per_tensor(cx, s, z, zp_required, to, z.1)?;
    Ok((p, to))
}

/// The scale of an i32 bias accumulated with inputs of scales `a` (per tensor) and `b`: their f32
/// product, a constant when both are.
fn bias_scale(cx: &mut NodeLowering, a: ValueId, b: ValueId) -> Result<ValueId, Reason> {
    if let (Some(ta), Some(tb)) = (cx.g.const_data(a), cx.g.const_data(b)) {
        let sa = ta.to_f32_vec()[0];
        let dims = tb.dims().to_vec();
        let v: Vec<f32> = tb.to_f32_vec().into_iter().map(|s| sa * s).collect();
        return Ok(cx.konst("bias_scale", Tensor::from_vec(dims, v)));
    }
    let a = match cx.g.ty(a).dims() {
        Some(d) if !d.is_empty() => {
            let s = cx.i64s("shape", &[]);
            cx.add(Op::Reshape { allowzero: false }, &[a, s])?
        }
        _ => a,
    };
    cx.add(Op::Binary(BinaryOp::Mul), &[a, b])
}

/// `dequantize_linear(bias, scale, 0)` along `axis` for an i32 bias input `i`.
fn dequantize_bias(
    cx: &mut NodeLowering,
    bias: ValueId,
    (i, name): (usize, &str),
    scale: ValueId,
    axis: i64,
) -> Result<ValueId, Reason> {
    if cx.dtype(bias) != DType::I32 {
        return Err(bad_input(
            i,
            name,
            format!("must be int32, got {}", cx.dtype(bias)),
        ));
    }
    let dims = cx.g.ty(scale).dims().unwrap_or_default();
    let n = dims.iter().product::<usize>();
    let zero = cx.konst("bias_zero_point", Tensor::from_vec(dims, vec![0i32; n]));
    let per_axis = n > 1;
    cx.add(
        Op::DequantizeLinear {
            axis: if per_axis { axis } else { 1 },
        },
        &[bias, scale, zero],
    )
}

/// A known extent of `v` along `axis` (negative counts from the end).
fn extent(cx: &NodeLowering, v: ValueId, axis: i64) -> Option<usize> {
    let ty = cx.g.ty(v);
    let a = if axis < 0 {
        axis + ty.rank() as i64
    } else {
        axis
    };
    ty.shape.get(usize::try_from(a).ok()?)?.known()
}

/// NHWC ↔ NCHW permutations of a rank-`r` tensor (`channels_last` of the com.microsoft ops).
fn to_channels_first(r: usize) -> Vec<usize> {
    let mut p = vec![0, r - 1];
    p.extend(1..r - 1);
    p
}

fn to_channels_last(r: usize) -> Vec<usize> {
    let mut p = vec![0];
    p.extend(2..r);
    p.push(1);
    p
}

fn channels_last(cx: &NodeLowering, x: ValueId) -> Result<bool, Reason> {
    let on = cx.int("channels_last", 0)? != 0;
    if on && cx.rank(x) < 3 {
        return Err(cx.bad_attr(
            "channels_last",
            format!("needs an input of rank >= 3, got rank {}", cx.rank(x)),
        ));
    }
    Ok(on)
}

/// QLinearConv (ONNX 10, and com.microsoft with `channels_last`).
pub(super) fn qlinear_conv(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    input_count(
        cx,
        8,
        9,
        "x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, [B]",
    )?;
    let x = int8_input(cx, 0, "x")?;
    let w = int8_input(cx, 3, "w")?;
    if cx.rank(w) < 3 {
        return Err(bad_input(
            3,
            "w",
            format!(
                "must have rank >= 3 (M, C/group, kernel..), got rank {}",
                cx.rank(w)
            ),
        ));
    }
    let xp = per_tensor(
        cx,
        (1, "x_scale"),
        (2, "x_zero_point"),
        true,
        cx.dtype(x),
        "x",
    )?;
    let channels = extent(cx, w, 0);
    let wp = per_axis(
        cx,
        (4, "w_scale"),
        (5, "w_zero_point"),
        true,
        cx.dtype(w),
        "w",
        0,
        channels,
        "output channels",
    )?;
    let (yp, to) = output_params(cx, (6, "y_scale"), (7, "y_zero_point"), true, DType::U8)?;
    let last = channels_last(cx, x)?;
    let rank = cx.rank(x);
    let x = if last {
        let perm = to_channels_first(rank);
        cx.add(Op::Transpose { perm }, &[x])?
    } else {
        x
    };
    let xf = dequantize(cx, x, xp)?;
    let wf = dequantize(cx, w, wp)?;
    let mut ins = vec![xf, wf];
    if let Some(b) = cx.opt(8) {
        if let (Some(n), Some(m)) = (extent(cx, b, 0), channels) {
            if cx.rank(b) != 1 || n != m {
                return Err(bad_input(
                    8,
                    "B",
                    format!(
                        "must be 1-D with one entry per output channel ({m}), got {}",
                        cx.g.ty(b)
                    ),
                ));
            }
        }
        let s = bias_scale(cx, xp.scale, wp.scale)?;
        ins.push(dequantize_bias(cx, b, (8, "B"), s, 0)?);
    }
    let yf = cx.add(Op::Conv(conv_attrs(cx)?), &ins)?;
    let y = quantize(cx, yf, yp, to)?;
    if last {
        let perm = to_channels_last(rank);
        return cx.one(Op::Transpose { perm }, &[y]);
    }
    Ok(vec![y])
}

/// QLinearMatMul (ONNX 10 and 21): `a` per tensor, `b` per tensor or per column.
pub(super) fn qlinear_matmul(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    input_count(
        cx,
        8,
        8,
        "a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point",
    )?;
    let a = int8_input(cx, 0, "a")?;
    let b = int8_input(cx, 3, "b")?;
    let ap = per_tensor(
        cx,
        (1, "a_scale"),
        (2, "a_zero_point"),
        true,
        cx.dtype(a),
        "a",
    )?;
    let bp = if cx.rank(b) >= 2 {
        let columns = extent(cx, b, -1);
        per_axis(
            cx,
            (4, "b_scale"),
            (5, "b_zero_point"),
            true,
            cx.dtype(b),
            "b",
            -1,
            columns,
            "columns of b",
        )?
    } else {
        per_tensor(
            cx,
            (4, "b_scale"),
            (5, "b_zero_point"),
            true,
            cx.dtype(b),
            "b",
        )?
    };
    let (yp, to) = output_params(cx, (6, "y_scale"), (7, "y_zero_point"), true, DType::U8)?;
    let af = dequantize(cx, a, ap)?;
    let bf = dequantize(cx, b, bp)?;
    let yf = cx.add(Op::MatMul, &[af, bf])?;
    Ok(vec![quantize(cx, yf, yp, to)?])
}

/// `dequantize_linear(x, 1.0, zero_point)`: the exact f32 value of `x - zero_point` (see the
/// module comment); the scale has the zero point's shape.
fn integer_operand(
    cx: &mut NodeLowering,
    x: ValueId,
    (zi, zname): (usize, &str),
    data_name: &str,
    axis: i64,
    extent: Option<usize>,
    what: &str,
) -> Result<ValueId, Reason> {
    let dt = cx.dtype(x);
    let Some(z) = zero_point_input(cx, zi, zname, dt, data_name)? else {
        let one = cx.konst("scale", Tensor::scalar(1.0f32));
        return cx.add(Op::DequantizeLinear { axis: 1 }, &[x, one]);
    };
    let dims = param_dims(cx, z, zi, zname)?;
    let single = is_single(&dims);
    if !single {
        if let Some(n) = extent.filter(|&n| n != dims[0]) {
            return Err(bad_input(
                zi,
                zname,
                format!("has {} entries for {n} {what}", dims[0]),
            ));
        }
    }
    let n = dims.iter().product();
    let one = cx.konst("scale", Tensor::from_vec(dims, vec![1.0f32; n]));
    let axis = if single { 1 } else { axis };
    cx.add(Op::DequantizeLinear { axis }, &[x, one, z])
}

/// ConvInteger (ONNX 10): exact i32 `conv(x - x_zero_point, w - w_zero_point)`.
pub(super) fn conv_integer(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    input_count(cx, 2, 4, "x, w, [x_zero_point], [w_zero_point]")?;
    let x = int8_input(cx, 0, "x")?;
    let w = int8_input(cx, 1, "w")?;
    if let Some(z) = cx.opt(2) {
        if !is_single(&param_dims(cx, z, 2, "x_zero_point")?) {
            return Err(bad_input(2, "x_zero_point", "must be a scalar"));
        }
    }
    let channels = extent(cx, w, 0);
    let xf = integer_operand(cx, x, (2, "x_zero_point"), "x", 1, None, "")?;
    let wf = integer_operand(
        cx,
        w,
        (3, "w_zero_point"),
        "w",
        0,
        channels,
        "output channels",
    )?;
    let yf = cx.add(Op::Conv(conv_attrs(cx)?), &[xf, wf])?;
    cx.one(Op::Cast { to: DType::I32 }, &[yf])
}

/// MatMulInteger (ONNX 10): exact i32 `matmul(a - a_zero_point, b - b_zero_point)`; `a`'s zero
/// point per tensor or (2-D `a`) per row, `b`'s per tensor or per column.
pub(super) fn matmul_integer(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    input_count(cx, 2, 4, "A, B, [a_zero_point], [b_zero_point]")?;
    let a = int8_input(cx, 0, "A")?;
    let b = int8_input(cx, 1, "B")?;
    if let Some(z) = cx.opt(2) {
        let dims = param_dims(cx, z, 2, "a_zero_point")?;
        if !is_single(&dims) && cx.rank(a) != 2 {
            return Err(bad_input(
                2,
                "a_zero_point",
                format!(
                    "per-row zero points need a 2-D \"A\", got rank {}",
                    cx.rank(a)
                ),
            ));
        }
    }
    let rows = extent(cx, a, 0);
    let af = integer_operand(cx, a, (2, "a_zero_point"), "A", 0, rows, "rows of A")?;
    let bf = if cx.rank(b) >= 2 {
        let columns = extent(cx, b, -1);
        integer_operand(cx, b, (3, "b_zero_point"), "B", -1, columns, "columns of B")?
    } else {
        if let Some(z) = cx.opt(3) {
            if !is_single(&param_dims(cx, z, 3, "b_zero_point")?) {
                return Err(bad_input(
                    3,
                    "b_zero_point",
                    "must be a scalar for a 1-D \"B\"",
                ));
            }
        }
        integer_operand(cx, b, (3, "b_zero_point"), "B", 0, None, "")?
    };
    let yf = cx.add(Op::MatMul, &[af, bf])?;
    cx.one(Op::Cast { to: DType::I32 }, &[yf])
}

/// com.microsoft QGemm: `alpha · (A - za)(B - zb) · sa·sb + C · sa·sb`, requantized to
/// `(y_scale, y_zero_point)` when given, float otherwise (onnxruntime's kernel adds the i32 `C` to
/// the accumulator before scaling by `alpha · sa · sb`, hence `beta = alpha`).
pub(super) fn qgemm(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    input_count(
        cx,
        6,
        9,
        "A, a_scale, a_zero_point, B, b_scale, b_zero_point, [C], [y_scale], [y_zero_point]",
    )?;
    let a = int8_input(cx, 0, "A")?;
    let b = int8_input(cx, 3, "B")?;
    let (ra, rb) = (cx.rank(a), cx.rank(b));
    if ra != 2 || rb != 2 {
        return Err(invalid(format!(
            "QGemm needs 2-D A and B, got ranks {ra} and {rb}"
        )));
    }
    let trans_a = cx.int("transA", 0)? != 0;
    let trans_b = cx.int("transB", 0)? != 0;
    let alpha = cx.float("alpha", 1.0)?;
    let ap = per_tensor(
        cx,
        (1, "a_scale"),
        (2, "a_zero_point"),
        true,
        cx.dtype(a),
        "A",
    )?;
    let col_axis = if trans_b { 0 } else { 1 };
    let columns = extent(cx, b, col_axis);
    let bp = per_axis(
        cx,
        (4, "b_scale"),
        (5, "b_zero_point"),
        true,
        cx.dtype(b),
        "B",
        col_axis,
        columns,
        "columns of B",
    )?;
    let out = match (cx.opt(7), cx.opt(8)) {
        (None, None) => None,
        (Some(_), Some(_)) => Some(output_params(
            cx,
            (7, "y_scale"),
            (8, "y_zero_point"),
            true,
            DType::U8,
        )?),
        (Some(_), None) => {
            return Err(unsupported(
                "QGemm with y_scale but no y_zero_point (a float output divided by y_scale) is not supported",
            ))
        }
        (None, Some(_)) => return Err(invalid("QGemm has y_zero_point but no y_scale")),
    };
    let af = dequantize(cx, a, ap)?;
    let bf = dequantize(cx, b, bp)?;
    let mut ins = vec![af, bf];
    if let Some(c) = cx.opt(6) {
        // A per-column scale runs along C's last axis, which must then be the N columns.
        let axis = if bp.axis.is_some() {
            let rc = cx.rank(c);
            let last = extent(cx, c, -1);
            if rc == 0 || rc > 2 || (last.is_some() && last != columns) {
                return Err(bad_input(
                    6,
                    "C",
                    format!(
                        "must end in the {} columns of B for per-column b_scale, got {}",
                        columns.map_or("?".into(), |n| n.to_string()),
                        cx.g.ty(c)
                    ),
                ));
            }
            rc as i64 - 1
        } else {
            1
        };
        let s = bias_scale(cx, ap.scale, bp.scale)?;
        ins.push(dequantize_bias(cx, c, (6, "C"), s, axis)?);
    }
    let attrs = GemmAttrs {
        alpha: F32(alpha),
        beta: F32(alpha),
        trans_a,
        trans_b,
        epilogue: Default::default(),
        integer: None,
    };
    let yf = cx.add(Op::Gemm(attrs), &ins)?;
    match out {
        Some((yp, to)) => Ok(vec![quantize(cx, yf, yp, to)?]),
        None => Ok(vec![yf]),
    }
}

/// com.microsoft QLinearAdd / QLinearMul.
pub(super) fn qlinear_binary(cx: &mut NodeLowering, op: BinaryOp) -> Result<Vec<ValueId>, Reason> {
    input_count(
        cx,
        7,
        8,
        "A, A_scale, [A_zero_point], B, B_scale, [B_zero_point], C_scale, [C_zero_point]",
    )?;
    let a = int8_input(cx, 0, "A")?;
    let b = int8_input(cx, 3, "B")?;
    let dt = cx.dtype(a);
    if cx.dtype(b) != dt {
        return Err(bad_input(
            3,
            "B",
            format!("has dtype {}, but \"A\" is {dt}", cx.dtype(b)),
        ));
    }
    let ap = per_tensor(cx, (1, "A_scale"), (2, "A_zero_point"), false, dt, "A")?;
    let bp = per_tensor(cx, (4, "B_scale"), (5, "B_zero_point"), false, dt, "B")?;
    let cp = per_tensor(cx, (6, "C_scale"), (7, "C_zero_point"), false, dt, "A")?;
    let af = dequantize(cx, a, ap)?;
    let bf = dequantize(cx, b, bp)?;
    let yf = cx.add(Op::Binary(op), &[af, bf])?;
    Ok(vec![quantize(cx, yf, cp, dt)?])
}

/// com.microsoft QLinearGlobalAveragePool.
pub(super) fn qlinear_global_average_pool(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    input_count(cx, 5, 5, "X, x_scale, x_zero_point, y_scale, y_zero_point")?;
    let x = int8_input(cx, 0, "X")?;
    let dt = cx.dtype(x);
    if cx.rank(x) < 3 {
        return Err(bad_input(
            0,
            "X",
            format!(
                "must have rank >= 3 (N, C, spatial..), got rank {}",
                cx.rank(x)
            ),
        ));
    }
    let xp = per_tensor(cx, (1, "x_scale"), (2, "x_zero_point"), true, dt, "X")?;
    let yp = per_tensor(cx, (3, "y_scale"), (4, "y_zero_point"), true, dt, "X")?;
    let last = channels_last(cx, x)?;
    let rank = cx.rank(x);
    let x = if last {
        let perm = to_channels_first(rank);
        cx.add(Op::Transpose { perm }, &[x])?
    } else {
        x
    };
    let xf = dequantize(cx, x, xp)?;
    let yf = cx.add(Op::GlobalPool(PoolKind::Average), &[xf])?;
    let y = quantize(cx, yf, yp, dt)?;
    if last {
        let perm = to_channels_last(rank);
        return cx.one(Op::Transpose { perm }, &[y]);
    }
    Ok(vec![y])
}

/// com.microsoft QLinearAveragePool: `q(average_pool(dq(x, sx, zx)), sy, zy)` with AveragePool's
/// attributes; `channels_last` transposes around the pool.
pub(super) fn qlinear_average_pool(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    input_count(cx, 5, 5, "X, x_scale, x_zero_point, y_scale, y_zero_point")?;
    let x = int8_input(cx, 0, "X")?;
    let dt = cx.dtype(x);
    let rank = cx.rank(x);
    if rank < 3 {
        return Err(bad_input(
            0,
            "X",
            format!("must have rank >= 3 (N, C, spatial..), got rank {rank}"),
        ));
    }
    let xp = per_tensor(cx, (1, "x_scale"), (2, "x_zero_point"), true, dt, "X")?;
    let yp = per_tensor(cx, (3, "y_scale"), (4, "y_zero_point"), true, dt, "X")?;
    let kernel = cx.usizes("kernel_shape")?;
    if kernel.is_empty() {
        return Err(Reason::MissingAttr("kernel_shape".into()));
    }
    let attrs = PoolAttrs {
        kind: PoolKind::Average,
        kernel,
        strides: cx.usizes("strides")?,
        pads: cx.usizes("pads")?,
        dilations: vec![],
        ceil_mode: cx.int("ceil_mode", 0)? != 0,
        count_include_pad: cx.int("count_include_pad", 0)? != 0,
        auto_pad: super::auto_pad(cx)?,
    };
    let last = channels_last(cx, x)?;
    let x = if last {
        let perm = to_channels_first(rank);
        cx.add(Op::Transpose { perm }, &[x])?
    } else {
        x
    };
    let xf = dequantize(cx, x, xp)?;
    let yf = cx.add(Op::Pool(attrs), &[xf])?;
    let y = quantize(cx, yf, yp, dt)?;
    if last {
        let perm = to_channels_last(rank);
        return cx.one(Op::Transpose { perm }, &[y]);
    }
    Ok(vec![y])
}

/// com.microsoft QLinearConcat: `(Y_scale, Y_zero_point, (X_i, X_i_scale, X_i_zero_point)...)`.
pub(super) fn qlinear_concat(cx: &mut NodeLowering) -> Result<Vec<ValueId>, Reason> {
    let n = cx.inputs.len();
    if n < 5 || !(n - 2).is_multiple_of(3) {
        return Err(invalid(format!(
            "QLinearConcat takes Y_scale, Y_zero_point and then (X, X_scale, X_zero_point) \
             triples, so 2 + 3k inputs with k >= 1, got {n}"
        )));
    }
    let axis = cx.req_int("axis")?;
    let zy = int8_input(cx, 1, "Y_zero_point")?;
    let dt = cx.dtype(zy);
    let yp = per_tensor(
        cx,
        (0, "Y_scale"),
        (1, "Y_zero_point"),
        true,
        dt,
        "Y_zero_point",
    )?;
    let mut parts = Vec::with_capacity((n - 2) / 3);
    for k in 0..(n - 2) / 3 {
        let i = 2 + 3 * k;
        let (xn, sn, zn) = (
            format!("inputs[{}]", 3 * k),
            format!("inputs[{}] (scale)", 3 * k + 1),
            format!("inputs[{}] (zero point)", 3 * k + 2),
        );
        let x = int8_input(cx, i, &xn)?;
        if cx.dtype(x) != dt {
            return Err(bad_input(
                i,
                &xn,
                format!("has dtype {}, but the output is {dt}", cx.dtype(x)),
            ));
        }
        let p = per_tensor(cx, (i + 1, &sn), (i + 2, &zn), true, dt, &xn)?;
        parts.push(dequantize(cx, x, p)?);
    }
    let yf = cx.add(Op::Concat { axis }, &parts)?;
    Ok(vec![quantize(cx, yf, yp, dt)?])
}

/// MaxPool of an integer tensor whose type carries per-tensor quantization parameters with a
/// positive scale (the QOperator format runs it on the quantized tensor): `q(max_pool(dq(x)))`
/// with those parameters, which gives the same integers (the maximum commutes with a rising
/// affine map, and requantizing a dequantized integer with its own parameters is exact). `None`
/// for any other input.
pub(super) fn quantized_max_pool(
    cx: &mut NodeLowering,
    x: ValueId,
    attrs: &PoolAttrs,
) -> Result<Option<Vec<ValueId>>, Reason> {
    let ty = cx.g.ty(x);
    let dt = ty.dtype;
    let Some(q) = ty.quant.clone() else {
        return Ok(None);
    };
    let scale = q.scale.first().map_or(0.0, |s| s.0);
    if !matches!(dt, DType::I8 | DType::U8 | DType::I16 | DType::U16)
        || q.axis.is_some()
        || q.scale.len() != 1
        || !(scale > 0.0 && scale.is_finite())
    {
        return Ok(None);
    }
    let s = cx.konst("scale", Tensor::scalar(scale));
    let z = cx.konst("zero_point", scalar_tensor(dt, q.zero_point[0] as f64));
    let p = QParams {
        scale: s,
        zero_point: Some(z),
        axis: None,
    };
    let xf = dequantize(cx, x, p)?;
    let yf = cx.add(Op::Pool(attrs.clone()), &[xf])?;
    Ok(Some(vec![quantize(cx, yf, p, dt)?]))
}

/// The com.microsoft ops this importer knows, lowered; `None` for any other op of the domain.
pub(super) fn lower_com_microsoft(cx: &mut NodeLowering) -> Option<Result<Vec<ValueId>, Reason>> {
    Some(match cx.node.op_type.as_str() {
        "QGemm" => qgemm(cx),
        "QLinearAdd" => qlinear_binary(cx, BinaryOp::Add),
        "QLinearMul" => qlinear_binary(cx, BinaryOp::Mul),
        "QLinearGlobalAveragePool" => qlinear_global_average_pool(cx),
        "QLinearAveragePool" => qlinear_average_pool(cx),
        "QLinearConcat" => qlinear_concat(cx),
        "QLinearConv" => qlinear_conv(cx),
        _ => return None,
    })
}
