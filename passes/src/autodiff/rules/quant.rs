//! Fake quantization: the straight-through estimator for `DequantizeLinear(QuantizeLinear(x))`.

use super::super::build::{float_tensor, Builder};
use super::super::AutodiffError;
use kestrel_ir::{BinaryOp, DType, Node, Op, Tensor, ValueId};

/// The fake-quantization pair a DequantizeLinear node closes: `(x, q)`, the QuantizeLinear's
/// float input and its node, when `dq` reads a QuantizeLinear output.
pub(crate) fn fake_quant_input(b: &Builder, dq: &Node) -> Option<(ValueId, Node)> {
    if !matches!(dq.op, Op::DequantizeLinear { .. }) {
        return None;
    }
    let q = b.g.node(b.g.producer(dq.inputs[0])?).clone();
    matches!(q.op, Op::QuantizeLinear { .. }).then(|| (q.inputs[0], q))
}

/// The clipped straight-through estimator of the pair `dq(q(x, s, zp), s, zp)`:
/// `∂/∂x = dy` where `(qmin - zp)·s ≤ x ≤ (qmax - zp)·s` (per-axis parameters broadcast along
/// the axis), `0` outside, as PyTorch's FakeQuantize. The scale and zero point must be the
/// same constants on both nodes (a pair that requantizes has no such gradient).
pub(crate) fn fake_quant(
    b: &mut Builder,
    q: &Node,
    dq: &Node,
    dy: ValueId,
) -> Result<ValueId, AutodiffError> {
    let (Op::QuantizeLinear { axis, to }, Op::DequantizeLinear { axis: dq_axis }) = (&q.op, &dq.op)
    else {
        unreachable!("fake_quant_input matched the pair")
    };
    let x = q.inputs[0];
    let param = |b: &Builder, node: &Node, slot: usize| -> Option<Tensor> {
        node.inputs
            .get(slot)
            .and_then(|&v| b.g.const_data(v).cloned())
    };
    let scale = param(b, q, 1).ok_or_else(|| {
        b.unsupported("fake quantization with a computed scale (scales are constants)")
    })?;
    let zero_q = param(b, q, 2);
    let same = |a: Option<Tensor>, b: Option<Tensor>| match (a, b) {
        (Some(a), Some(b)) => a.dims() == b.dims() && a.to_f64_vec() == b.to_f64_vec(),
        (None, None) => true,
        _ => false,
    };
    let per_axis = scale.numel() > 1 || scale.dims().len() > 1;
    if !same(Some(scale.clone()), param(b, dq, 1))
        || !same(zero_q.clone(), param(b, dq, 2))
        || (per_axis && axis != dq_axis)
        || q.inputs.len() != dq.inputs.len()
    {
        return Err(b.unsupported(
            "a QuantizeLinear/DequantizeLinear pair with different parameters requantizes; \
             only a fake-quantization pair (same scale and zero point) has a gradient",
        ));
    }
    let Some((qmin, qmax)) = to.int_range() else {
        return Err(b.unsupported(format!("quantization to {to:?}")));
    };
    let dims = b.dims(x)?;
    let scales = scale.to_f64_vec();
    let zeros = zero_q.map_or(vec![0.0; scales.len()], |z| z.to_f64_vec());
    let bound = |q: f64| -> Vec<f64> {
        scales
            .iter()
            .zip(&zeros)
            .map(|(s, z)| (q - z) * s)
            .collect()
    };
    let shape = if per_axis {
        let rank = dims.len() as i64;
        let a = if *axis < 0 { axis + rank } else { *axis };
        if !(0..rank).contains(&a) || dims[a as usize] != scales.len() {
            return Err(b.unsupported(format!(
                "per-axis scale of {} values along axis {axis} of {dims:?}",
                scales.len()
            )));
        }
        let mut s = vec![1usize; dims.len()];
        s[a as usize] = scales.len();
        s
    } else {
        vec![]
    };
    let dtype = b.g.ty(x).dtype;
    if !matches!(dtype, DType::F32 | DType::F64) {
        return Err(b.unsupported(format!("fake quantization of {dtype:?}")));
    }
    let lo = b.constant(float_tensor(dtype, shape.clone(), bound(qmin as f64)));
    let hi = b.constant(float_tensor(dtype, shape, bound(qmax as f64)));
    let above = b.binary(BinaryOp::GreaterOrEqual, x, lo)?;
    let below = b.binary(BinaryOp::LessOrEqual, x, hi)?;
    let inside = b.binary(BinaryOp::And, above, below)?;
    let mask = b.op(Op::Cast { to: dtype }, &[inside])?;
    b.mul(dy, mask)
}
