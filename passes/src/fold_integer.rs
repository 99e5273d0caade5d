//! The exact integer forms of `fold-qdq` (docs/QUANTIZATION.md "Rewrites"): ONNX's
//! `ConvInteger` and `MatMulInteger` as the importer writes them,
//! `cast<i32>(conv|matmul(dq(xq, 1, z_x), dq(wq, 1, 0)))`, become the integer conv or gemm
//! with i32 accumulators and no requantization — exact for every reduction length, where the
//! float form is exact only while partial sums stay below 2^24.
//!
//! - `wq` is a constant i8 with unit scales and zero points 0 (u8 weights or other zero points
//!   keep the float form).
//! - `z_x` a constant scalar: the op's `x_zero_point`.
//! - `z_x` a run-time scalar (as `dynamic_quantize_linear` computes it): the op runs with
//!   `x_zero_point = 0` and `z_x · Σ_k w[k, n]` (a constant per output channel times the
//!   zero point cast to i32) is subtracted from its accumulators — the same i32 sum, wrapping.
//!   A convolution with padding keeps its float form then (its padding would have to hold the
//!   run-time zero point).
//! - A matmul's data of rank above 2 is flattened to `[rows, K]` for the gemm and reshaped back.

use crate::util::{node_label, ConstNames};
use kestrel_ir::{
    BinaryOp, ConvAttrs, DType, Dim, GemmAttrs, Graph, IntegerAttrs, NodeId, Op, RewriteError,
    Tensor, ValueId,
};

/// The data's zero point: a constant or a run-time scalar of the data's dtype.
enum ZeroPoint {
    Const(i32),
    Value(ValueId),
}

/// Whether `v` is a constant whose every element is `want`.
fn const_all(g: &Graph, v: ValueId, want: f64) -> bool {
    g.const_data(v)
        .is_some_and(|t| t.numel() > 0 && t.to_f64_vec().iter().all(|&x| x == want))
}

/// `(xq, z)` when `v = dequantize_linear(xq: u8|i8, 1.0, z)` per tensor.
fn unit_dequantized(g: &Graph, v: ValueId) -> Option<(ValueId, ZeroPoint)> {
    let node = g.node(g.producer(v)?);
    let Op::DequantizeLinear { .. } = node.op else {
        return None;
    };
    let xq = node.inputs[0];
    let dtype = g.ty(xq).dtype;
    if !matches!(dtype, DType::U8 | DType::I8) || g.ty(node.inputs[1]).numel() != Some(1) {
        return None;
    }
    if !const_all(g, node.inputs[1], 1.0) {
        return None;
    }
    let z = match node.inputs.get(2) {
        None => ZeroPoint::Const(0),
        Some(&z) => {
            if g.ty(z).dtype != dtype || g.ty(z).numel() != Some(1) {
                return None;
            }
            match g.const_data(z) {
                Some(t) => ZeroPoint::Const(t.to_i64_vec()[0] as i32),
                None => ZeroPoint::Value(z),
            }
        }
    };
    Some((xq, z))
}

/// `wq` when `v = dequantize_linear(wq, 1.0, 0)` of a constant i8 weight.
fn unit_weights(g: &Graph, v: ValueId) -> Option<ValueId> {
    let node = g.node(g.producer(v)?);
    let Op::DequantizeLinear { .. } = node.op else {
        return None;
    };
    let wq = node.inputs[0];
    let w = g.const_data(wq)?;
    if w.dtype() != DType::I8 || !const_all(g, node.inputs[1], 1.0) {
        return None;
    }
    if let Some(&z) = node.inputs.get(2) {
        if !const_all(g, z, 0.0) {
            return None;
        }
    }
    Some(wq)
}

/// What [`fold_exact`] did: the value replacing the cast's output, and the nodes inserted
/// before the cast.
pub(crate) struct Folded {
    pub value: ValueId,
    pub inserted: usize,
}

/// Folds the `cast<i32>` node `cast` when it matches (see the module docs); `None` otherwise.
pub(crate) fn fold_exact(
    g: &mut Graph,
    names: &mut ConstNames,
    cast: NodeId,
) -> Result<Option<Folded>, RewriteError> {
    let Some(plan) = match_exact(g, cast) else {
        return Ok(None);
    };
    let label = node_label(g, g.producer(plan.core).expect("matched a producer"));
    let mut inserted = 0;
    let mut insert = |g: &mut Graph, op: Op, inputs: &[ValueId], name: String| {
        inserted += 1;
        g.insert_node_before(NodeId(cast.0 + inserted - 1), op, inputs, name)
            .map(|o| o[0])
    };
    let name = |suffix: &str| format!("{label}.{suffix}");
    let x_zero_point = match plan.zero_point {
        ZeroPoint::Const(z) => z,
        ZeroPoint::Value(_) => 0,
    };
    let integer = Some(IntegerAttrs {
        x_zero_point,
        requant: None,
    });
    let mut acc = match &plan.kind {
        Kind::Conv(a) => {
            let op = Op::Conv(ConvAttrs {
                integer,
                ..a.clone()
            });
            insert(g, op, &[plan.xq, plan.wq], name("integer"))?
        }
        Kind::MatMul { rows_shape } => {
            let x2 = match rows_shape {
                None => plan.xq,
                Some(_) => {
                    let axis = g.ty(plan.xq).rank() as i64 - 1;
                    insert(g, Op::Flatten { axis }, &[plan.xq], name("rows"))?
                }
            };
            let op = Op::Gemm(GemmAttrs {
                integer,
                ..GemmAttrs::default()
            });
            let y = insert(g, op, &[x2, plan.wq], name("integer"))?;
            match rows_shape {
                None => y,
                Some(shape) => {
                    let s = g.add_const(
                        names.fresh(&name("shape")),
                        Tensor::from_vec(vec![shape.len()], shape.clone()),
                    );
                    insert(g, Op::Reshape { allowzero: false }, &[y, s], name("unrows"))?
                }
            }
        }
    };
    if let ZeroPoint::Value(z) = plan.zero_point {
        let sums = g.add_const(names.fresh(&name("weight_sums")), plan.weight_sums);
        let zi = insert(g, Op::Cast { to: DType::I32 }, &[z], name("zero_point"))?;
        let correction = insert(
            g,
            Op::Binary(BinaryOp::Mul),
            &[zi, sums],
            name("zero_point_sums"),
        )?;
        acc = insert(
            g,
            Op::Binary(BinaryOp::Sub),
            &[acc, correction],
            name("centred"),
        )?;
    }
    Ok(Some(Folded {
        value: acc,
        inserted: inserted as usize,
    }))
}

enum Kind {
    Conv(ConvAttrs),
    /// The output shape to restore when the data has rank above 2 (flattened for the gemm).
    MatMul {
        rows_shape: Option<Vec<i64>>,
    },
}

struct Match {
    /// The conv/matmul output the cast reads.
    core: ValueId,
    kind: Kind,
    xq: ValueId,
    wq: ValueId,
    zero_point: ZeroPoint,
    /// `Σ_k w[k, n]` per output channel, shaped to broadcast against the accumulators (only
    /// needed for a run-time zero point).
    weight_sums: Tensor,
}

fn match_exact(g: &Graph, cast: NodeId) -> Option<Match> {
    let node = g.node(cast);
    if node.op != (Op::Cast { to: DType::I32 }) {
        return None;
    }
    let core = node.inputs[0];
    if g.use_counts()[core.index()] != 1 || g.is_output(core) {
        return None;
    }
    let p = g.node(g.producer(core)?);
    let (xq, zero_point) = unit_dequantized(g, *p.inputs.first()?)?;
    let wq = unit_weights(g, *p.inputs.get(1)?)?;
    let w = g.const_data(wq)?;
    let wv = w.to_i64_vec();
    let wd = w.dims().to_vec();
    match &p.op {
        Op::Conv(a) if a.epilogue.is_none() && a.integer.is_none() && p.inputs.len() == 2 => {
            let padded = a.pads.iter().any(|&x| x != 0)
                || !matches!(
                    a.auto_pad,
                    kestrel_ir::AutoPad::NotSet | kestrel_ir::AutoPad::Valid
                );
            if matches!(zero_point, ZeroPoint::Value(_)) && padded {
                return None;
            }
            let m = *wd.first()?;
            let per = wv.len() / m.max(1);
            let sums: Vec<i32> = wv
                .chunks(per.max(1))
                .map(|c| c.iter().sum::<i64>() as i32)
                .collect();
            let spatial = wd.len().saturating_sub(2);
            let mut dims = vec![m];
            dims.extend(std::iter::repeat_n(1, spatial));
            Some(Match {
                core,
                kind: Kind::Conv(a.clone()),
                xq,
                wq,
                zero_point,
                weight_sums: Tensor::from_vec(dims, sums),
            })
        }
        Op::MatMul if wd.len() == 2 && p.inputs.len() == 2 => {
            let rank = g.ty(xq).rank();
            let rows_shape = match rank {
                2 => None,
                r if r > 2 => {
                    let out = g.ty(core).shape.clone();
                    let known: Option<Vec<i64>> = out
                        .iter()
                        .map(|d| match d {
                            Dim::Known(n) => Some(*n as i64),
                            _ => None,
                        })
                        .collect();
                    // A symbolic leading extent stays symbolic through a -1.
                    Some(match known {
                        Some(k) => k,
                        None => {
                            let tail: Option<Vec<i64>> = out[1..]
                                .iter()
                                .map(|d| match d {
                                    Dim::Known(n) => Some(*n as i64),
                                    _ => None,
                                })
                                .collect();
                            let mut s = vec![-1];
                            s.extend(tail?);
                            s
                        }
                    })
                }
                _ => return None,
            };
            let (k, n) = (wd[0], wd[1]);
            let sums: Vec<i32> = (0..n)
                .map(|j| (0..k).map(|i| wv[i * n + j]).sum::<i64>() as i32)
                .collect();
            Some(Match {
                core,
                kind: Kind::MatMul { rows_shape },
                xq,
                wq,
                zero_point,
                weight_sums: Tensor::from_vec(vec![n], sums),
            })
        }
        _ => None,
    }
}
