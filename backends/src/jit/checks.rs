//! Preconditions of compilation: every dimension known ([`check_known_dims`]), no value over the
//! size limit ([`check_sizes`]), and shape arithmetic evaluated ([`fold_shapes`]).

use super::error::JitError;
use kestrel_ir::{Dim, Graph, Tensor};

/// Rebuilds `g` with every node whose inputs are all constant (and every `Shape`/`Size`)
/// evaluated into a constant, re-inferring types as it goes, so that shapes computed by shape
/// arithmetic (`Shape` → `Concat` → `Reshape`) become known.
pub fn fold_shapes(g: &Graph) -> Result<Graph, JitError> {
    use kestrel_ir::{Op, ValueDef, ValueId};
    let mut ng = Graph::new(g.name.clone());
    let mut map: Vec<Option<ValueId>> = vec![None; g.values.len()];
    for &v in &g.inputs {
        let val = g.value(v);
        map[v.index()] = Some(ng.add_input(val.name.clone().unwrap_or_default(), val.ty.clone()));
    }
    let get = |ng: &mut Graph, map: &mut Vec<Option<ValueId>>, v: ValueId| -> ValueId {
        if let Some(n) = map[v.index()] {
            return n;
        }
        let val = g.value(v);
        let n = match &val.def {
            ValueDef::Const(c) => match &c.data {
                Some(t) => ng.add_const(c.name.clone(), t.clone()),
                None => ng.add_elided_const(c.name.clone(), val.ty.clone()),
            },
            _ => unreachable!("values are defined before use (graph invariant)"),
        };
        map[v.index()] = Some(n);
        n
    };
    for (i, node) in g.nodes.iter().enumerate() {
        let ins: Vec<ValueId> = node
            .inputs
            .iter()
            .map(|&v| get(&mut ng, &mut map, v))
            .collect();
        let shape_only =
            matches!(node.op, Op::Shape { .. } | Op::Size) && ng.ty(ins[0]).dims().is_some();
        let all_const = ins.iter().all(|&v| ng.const_data(v).is_some());
        let small = node
            .outputs
            .iter()
            .all(|&v| g.ty(v).numel().is_some_and(|n| n <= 1 << 16));
        if shape_only || (all_const && small) {
            let node_name = || g.describe_node(kestrel_ir::NodeId(i as u32));
            let outs = if shape_only {
                let dims = ng.ty(ins[0]).dims().unwrap_or_default();
                vec![shape_query(&node.op, &dims)]
            } else {
                let args: Vec<Tensor> = ins
                    .iter()
                    .map(|&v| {
                        ng.const_data(v)
                            .cloned()
                            .unwrap_or_else(|| Tensor::scalar(0u8))
                    })
                    .collect();
                let refs: Vec<&Tensor> = args.iter().collect();
                crate::interp::eval_op(&node.op, &refs).map_err(|e| JitError::Fold {
                    node: node_name(),
                    reason: e.to_string(),
                })?
            };
            for (j, (&v, t)) in node.outputs.iter().zip(outs).enumerate() {
                let name = g
                    .value(v)
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("folded_{i}_{j}"));
                map[v.index()] = Some(ng.add_const(name, t));
            }
            continue;
        }
        let outs = ng
            .add_node(node.op.clone(), &ins, node.name.clone())
            .map_err(|e| JitError::Fold {
                node: g.describe_node(kestrel_ir::NodeId(i as u32)),
                reason: e.to_string(),
            })?;
        for (&v, n) in node.outputs.iter().zip(outs) {
            ng.values[n.index()].name = g.value(v).name.clone();
            map[v.index()] = Some(n);
        }
    }
    for o in &g.outputs {
        let v = get(&mut ng, &mut map, o.value);
        ng.add_output(o.name.clone(), v);
    }
    Ok(ng)
}

/// The value of `Shape`/`Size` of a tensor with these (known) dims, computed from the dims alone
/// (the tensor itself may be huge). `Shape`'s start/end clamp as in ONNX-15.
fn shape_query(op: &kestrel_ir::Op, dims: &[usize]) -> Tensor {
    match op {
        kestrel_ir::Op::Shape { start, end } => {
            let rank = dims.len() as i64;
            let clamp = |x: i64| if x < 0 { x + rank } else { x }.clamp(0, rank) as usize;
            let (s, e) = (clamp(*start), clamp(end.unwrap_or(rank)));
            let picked: Vec<i64> = dims[s..e.max(s)].iter().map(|&d| d as i64).collect();
            Tensor::from_vec(vec![picked.len()], picked)
        }
        _ => Tensor::scalar(dims.iter().map(|&d| d as i64).product::<i64>()),
    }
}

/// No value may need more bytes than the interpreter's limit (checked before any allocation).
pub fn check_sizes(g: &Graph) -> Result<(), JitError> {
    let limit = crate::interp::tensor_byte_limit();
    for (i, v) in g.values.iter().enumerate() {
        let Some(dims) = v.ty.dims() else { continue };
        let bytes = dims.iter().fold(v.ty.dtype.size() as u128, |acc, &d| {
            acc.saturating_mul(d as u128)
        });
        if bytes > limit {
            let what = match &v.def {
                kestrel_ir::ValueDef::Node { node, .. } => {
                    format!("{}: its output {}", g.describe_node(*node), v.ty)
                }
                _ => format!(
                    "value {} ({})",
                    v.name.clone().unwrap_or(format!("%{i}")),
                    v.ty
                ),
            };
            return Err(JitError::TooLarge { what, bytes, limit });
        }
    }
    Ok(())
}

/// Every value's dimensions must be known.
pub fn check_known_dims(g: &Graph) -> Result<(), JitError> {
    let mut missing: Vec<String> = Vec::new();
    for (i, v) in g.values.iter().enumerate() {
        for d in &v.ty.shape {
            let s = match d {
                Dim::Known(_) => continue,
                Dim::Sym(s) => s.to_string(),
                Dim::Unknown => match &v.def {
                    // Name the node whose output shape depends on run-time data.
                    kestrel_ir::ValueDef::Node { node, .. } => {
                        format!("? in the output of {} ({})", g.describe_node(*node), v.ty)
                    }
                    _ => format!(
                        "? in {} ({})",
                        v.name.clone().unwrap_or(format!("%{i}")),
                        v.ty
                    ),
                },
            };
            if !missing.contains(&s) {
                missing.push(s);
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(JitError::UnboundDims {
            dims: missing.join(", "),
        })
    }
}
