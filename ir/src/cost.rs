//! Static work counts of ops, the one definition every estimate uses: the e-graph's cost model,
//! the JIT's split of a node into tasks, and the per-layer rates of `kestrel bench --layers`.

use crate::graph::{Graph, Node};
use crate::op::Op;
use crate::types::TensorType;

/// Multiply-accumulates per output element of a convolution or matrix product: for `Conv` the
/// weight's extents after the first (`C/group` × kernel taps, whatever the epilogue), for `Gemm`
/// the inner extent `K` (A's extent 0 with `trans_a`, else 1), for `MatMul` A's last extent.
/// `None` for other ops, or when an extent it needs is unknown (for `Conv`, any of the weight's;
/// for `Gemm`/`MatMul`, `K`) or the count overflows.
pub fn macs_per_output(op: &Op, inputs: &[&TensorType]) -> Option<u64> {
    match op {
        Op::Conv(_) => {
            let w = inputs.get(1)?.dims()?;
            w.get(1..)?
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        }
        Op::Gemm(a) => {
            let k = inputs.first()?.shape.get(if a.trans_a { 0 } else { 1 })?;
            k.known().map(|k| k as u64)
        }
        Op::MatMul => inputs.first()?.shape.last()?.known().map(|k| k as u64),
        _ => None,
    }
}

/// Multiply-accumulates of `op` from `inputs` to `output`: output elements ×
/// [`macs_per_output`], and for `Attention` both of its products (`batch · M · N · (D + Dv)`). `None` for ops without one, unknown extents or overflow.
pub fn macs(op: &Op, inputs: &[&TensorType], output: &TensorType) -> Option<u64> {
    if let Op::Attention { .. } = op {
        return attention_macs(inputs);
    }
    let per = macs_per_output(op, inputs)?;
    let out = output
        .dims()?
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))?;
    out.checked_mul(per)
}

/// `q [.., M, D] @ k_t [.., D, N]` then `[.., M, N] @ v [.., N, Dv]`.
fn attention_macs(inputs: &[&TensorType]) -> Option<u64> {
    let (q, v) = (inputs.first()?.dims()?, inputs.get(2)?.dims()?);
    let r = q.len();
    if r < 2 || v.len() != r {
        return None;
    }
    let batch = q[..r - 2]
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))?;
    let (m, d, n, dv) = (
        q[r - 2] as u64,
        q[r - 1] as u64,
        v[r - 2] as u64,
        v[r - 1] as u64,
    );
    batch
        .checked_mul(m)?
        .checked_mul(n)?
        .checked_mul(d.checked_add(dv)?)
}

/// [`macs`] of `node` in `g`, 0 when it has none.
pub fn node_macs(g: &Graph, node: &Node) -> u64 {
    let inputs: Vec<&TensorType> = node.inputs.iter().map(|&v| g.ty(v)).collect();
    match node.outputs.first() {
        Some(&out) => macs(&node.op, &inputs, g.ty(out)).unwrap_or(0),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::op::{ConvAttrs, GemmAttrs};
    use crate::types::Dim;

    fn t(dims: &[usize]) -> TensorType {
        TensorType::known(DType::F32, dims)
    }

    #[test]
    fn macs_of_convolutions_and_matrix_products() {
        let conv = |group| {
            Op::Conv(ConvAttrs {
                group,
                ..Default::default()
            })
        };
        // Dense 3x3: 2·8·5·5 outputs × 4 channels × 9 taps.
        let (x, w, y) = (t(&[2, 4, 7, 7]), t(&[8, 4, 3, 3]), t(&[2, 8, 5, 5]));
        assert_eq!(macs(&conv(1), &[&x, &w], &y), Some(400 * 36));
        // Depthwise: one channel per output.
        let (w, y) = (t(&[4, 1, 3, 3]), t(&[2, 4, 5, 5]));
        assert_eq!(macs(&conv(4), &[&x, &w], &y), Some(200 * 9));
        // Gemm: K is A's extent 1, or 0 with trans_a.
        let gemm = |trans_a| {
            Op::Gemm(GemmAttrs {
                trans_a,
                ..Default::default()
            })
        };
        let (a, b, y) = (t(&[3, 5]), t(&[5, 7]), t(&[3, 7]));
        assert_eq!(macs(&gemm(false), &[&a, &b], &y), Some(21 * 5));
        assert_eq!(macs(&gemm(true), &[&t(&[5, 3]), &b], &y), Some(21 * 5));
        // MatMul: batched, and a 1-D A.
        let (a, b, y) = (t(&[2, 3, 5]), t(&[5, 7]), t(&[2, 3, 7]));
        assert_eq!(macs(&Op::MatMul, &[&a, &b], &y), Some(42 * 5));
        assert_eq!(
            macs(&Op::MatMul, &[&t(&[5]), &t(&[5, 7])], &t(&[7])),
            Some(35)
        );
        // A symbolic batch leaves K known but the total unknown.
        let a = TensorType::new(
            DType::F32,
            [Dim::sym("N"), Dim::Known(5)].into_iter().collect(),
        );
        assert_eq!(macs_per_output(&gemm(false), &[&a, &b]), Some(5));
        assert_eq!(macs(&gemm(false), &[&a, &b], &a), None);
        assert_eq!(macs(&Op::Unary(crate::op::UnaryOp::Relu), &[&y], &y), None);
        // Attention: both products, 3 heads of q [4, 8], k_t [8, 6], v [6, 5].
        let att = Op::Attention {
            scale: crate::dtype::F32(1.0),
        };
        let (q, kt, v, y) = (t(&[3, 4, 8]), t(&[3, 8, 6]), t(&[3, 6, 5]), t(&[3, 4, 5]));
        assert_eq!(macs(&att, &[&q, &kt, &v], &y), Some(3 * 4 * 6 * (8 + 5)));
    }
}
