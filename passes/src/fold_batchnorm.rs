//! `fold-batchnorm`: removes every inference-mode `batch_norm` of f32/f64 data.
//!
//! With `a = scale / sqrt(var + epsilon)` and `b = bias - mean * a` (per channel, axis 1, computed
//! in f64 and rounded once), `batch_norm(x) = x * a + b`. When the parameters are constants:
//! - `batch_norm(conv(x, w, [c]))` → `conv(x, w * a[m], c * a + b)` (weights scaled per output
//!   channel) when the conv's output has no other use and `w` (and `c`) are constants;
//! - `batch_norm(gemm(A, B, [C]))` of a 2-D output → `gemm(A, B * a[n], C')` with
//!   `C' = beta * C * a + b` and `beta = 1`, under the same conditions; `C` may be absent, a
//!   scalar, `[N]`, `[1, N]` or `[M, N]`;
//! - `batch_norm(matmul(A, W))` of a 2-D output with constant 2-D `W` → `add(matmul(A, W * a), b)`,
//!   and `batch_norm(add(matmul(A, W), c))` (either operand order, `c` constant broadcasting along
//!   the last axis) → `add(matmul(A, W * a), c * a + b)`;
//! - otherwise `mul(x, a') + b'` with `a'`, `b'` of shape `[C, 1, ..]` broadcasting along axis 1.
//!
//! When the parameters are not all constants, the node becomes the same arithmetic on the graph
//! (`add`, `sqrt`, `div`, `mul`, `sub`, `reshape` to `[C, 1, ..]`, then `mul`/`add`), which
//! `fold-constants` finishes if they become constant later. Batch norms of other dtypes are left
//! alone. Folding reassociates floating-point arithmetic: results differ from the unfolded graph
//! by rounding only (golden cases mark it as changing numerics).

use crate::util::{node_label, ConstNames};
use crate::{Pass, PassContext, PassError};
use kestrel_ir::{BinaryOp, DType, Graph, NodeId, Op, Tensor, UnaryOp, ValueId, F32};

pub struct FoldBatchNorm;

/// A float tensor of `dtype` (f32 or f64) from f64 values.
fn float_tensor(dtype: DType, dims: Vec<usize>, vals: Vec<f64>) -> Option<Tensor> {
    match dtype {
        DType::F32 => Some(Tensor::from_vec(
            dims,
            vals.into_iter().map(|v| v as f32).collect(),
        )),
        DType::F64 => Some(Tensor::from_vec(dims, vals)),
        _ => None,
    }
}

/// Per-channel `(a, b)` of a batch norm whose parameters are constants of the data's dtype.
fn affine(g: &Graph, bn: NodeId, eps: f32) -> Option<(Vec<f64>, Vec<f64>)> {
    let node = g.node(bn);
    let dtype = g.ty(node.inputs[0]).dtype;
    let p: Vec<Vec<f64>> = node.inputs[1..5]
        .iter()
        .map(|&v| {
            let t = g.const_data(v)?;
            (t.dtype() == dtype && t.dims().len() == 1).then(|| t.to_f64_vec())
        })
        .collect::<Option<_>>()?;
    let c = p[0].len();
    if p.iter().any(|v| v.len() != c) {
        return None;
    }
    let a: Vec<f64> = (0..c)
        .map(|i| p[0][i] / (p[3][i] + eps as f64).sqrt())
        .collect();
    let b: Vec<f64> = (0..c).map(|i| p[1][i] - p[2][i] * a[i]).collect();
    Some((a, b))
}

/// `t` with every element multiplied by `a[index along axis]`.
fn scale_axis(t: &Tensor, axis: usize, a: &[f64]) -> Option<Tensor> {
    let dims = t.dims();
    if dims.get(axis) != Some(&a.len()) {
        return None;
    }
    let inner: usize = dims[axis + 1..].iter().product();
    let vals: Vec<f64> = t
        .to_f64_vec()
        .into_iter()
        .enumerate()
        .map(|(i, v)| v * a[(i / inner) % a.len()])
        .collect();
    float_tensor(t.dtype(), dims.to_vec(), vals)
}

/// Replaces node `id` by `op(inputs)` if that infers exactly its current output types.
fn set_op_same_type(g: &mut Graph, id: NodeId, op: Op, inputs: &[ValueId]) -> bool {
    let node = g.node(id);
    let Ok(types) = g.infer_node(&op, inputs, &node.name) else {
        return false;
    };
    let same = types.len() == node.outputs.len()
        && types.iter().zip(&node.outputs).all(|(t, &o)| t == g.ty(o));
    same && g.set_node_op(id, op, inputs).is_ok()
}

/// Whether `v` is used exactly once and is not a graph output.
fn single_use(g: &Graph, v: ValueId) -> bool {
    g.use_counts()[v.index()] == 1 && !g.is_output(v)
}

struct Folder<'g> {
    g: &'g mut Graph,
    names: ConstNames,
}

impl Folder<'_> {
    fn konst(&mut self, base: &str, t: Tensor) -> ValueId {
        self.names.add(self.g, base, t)
    }

    /// Conv producer: scale weights per output channel, fold the shift into the bias.
    fn fold_into_conv(&mut self, bn: NodeId, a: &[f64], b: &[f64]) -> bool {
        let g = &*self.g;
        let x = g.node(bn).inputs[0];
        let Some(conv) = g.producer(x) else {
            return false;
        };
        let Op::Conv(attrs) = &g.node(conv).op else {
            return false;
        };
        // A fused epilogue is not linear: the batch norm cannot move into the weights.
        if !attrs.epilogue.is_none() {
            return false;
        }
        let cin = g.node(conv).inputs.clone();
        if !single_use(g, x) {
            return false;
        }
        let Some(w) = g.const_data(cin[1]) else {
            return false;
        };
        let bias: Vec<f64> = match cin.get(2) {
            None => vec![0.0; a.len()],
            Some(&c) => match g.const_data(c) {
                Some(t) if t.numel() == a.len() => t.to_f64_vec(),
                _ => return false,
            },
        };
        let Some(w2) = scale_axis(w, 0, a) else {
            return false;
        };
        let nb: Vec<f64> = (0..a.len()).map(|i| bias[i] * a[i] + b[i]).collect();
        let Some(b2) = float_tensor(w.dtype(), vec![a.len()], nb) else {
            return false;
        };
        let (op, label) = (Op::Conv(attrs.clone()), node_label(g, conv));
        let wv = self.konst(&format!("{label}.weight.bn"), w2);
        let bv = self.konst(&format!("{label}.bias.bn"), b2);
        self.commit(bn, conv, op, &[cin[0], wv, bv])
    }

    /// Rewrites `producer` to `op(inputs)` (same output type) and redirects the batch norm's uses
    /// to it; refused, changing nothing, if the output type would differ.
    fn commit(&mut self, bn: NodeId, producer: NodeId, op: Op, inputs: &[ValueId]) -> bool {
        if !set_op_same_type(self.g, producer, op, inputs) {
            return false;
        }
        let y = self.g.node(bn).outputs[0];
        let out = self.g.node(producer).outputs[0];
        self.g.replace_all_uses(y, out);
        true
    }

    /// Gemm producer with a 2-D output `[M, N]`.
    fn fold_into_gemm(&mut self, bn: NodeId, a: &[f64], b: &[f64]) -> bool {
        let g = &*self.g;
        let x = g.node(bn).inputs[0];
        let Some(gemm) = g.producer(x) else {
            return false;
        };
        let Op::Gemm(attrs) = &g.node(gemm).op else {
            return false;
        };
        if !attrs.epilogue.is_none() {
            return false;
        }
        let gin = g.node(gemm).inputs.clone();
        let n = a.len();
        if !single_use(g, x) || g.ty(x).rank() != 2 {
            return false;
        }
        let Some(m) = g.ty(x).shape[0].known() else {
            return false;
        };
        let Some(bw) = g.const_data(gin[1]) else {
            return false;
        };
        let Some(b2) = scale_axis(bw, if attrs.trans_b { 0 } else { 1 }, a) else {
            return false;
        };
        let beta = attrs.beta.0 as f64;
        let (cdims, cvals): (Vec<usize>, Vec<f64>) = match gin.get(2) {
            None => (vec![n], b.to_vec()),
            Some(&c) => {
                let Some(ct) = g.const_data(c) else {
                    return false;
                };
                let cv = ct.to_f64_vec();
                let d = ct.dims();
                if ct.numel() == 1 || d == [n] || d == [1, n] {
                    let at = |j: usize| if cv.len() == 1 { cv[0] } else { cv[j] };
                    (
                        vec![n],
                        (0..n).map(|j| beta * at(j) * a[j] + b[j]).collect(),
                    )
                } else if d == [m, n] {
                    let v = (0..m * n)
                        .map(|i| beta * cv[i] * a[i % n] + b[i % n])
                        .collect();
                    (vec![m, n], v)
                } else {
                    return false;
                }
            }
        };
        let Some(c2) = float_tensor(bw.dtype(), cdims, cvals) else {
            return false;
        };
        let mut attrs = attrs.clone();
        attrs.beta = F32(1.0);
        let label = node_label(g, gemm);
        let bv = self.konst(&format!("{label}.weight.bn"), b2);
        let cv = self.konst(&format!("{label}.bias.bn"), c2);
        self.commit(bn, gemm, Op::Gemm(attrs), &[gin[0], bv, cv])
    }

    /// `matmul(A, W)` or `add(matmul(A, W), c)` producer with a 2-D output.
    fn fold_into_matmul(&mut self, bn: NodeId, a: &[f64], b: &[f64]) -> bool {
        let g = &*self.g;
        let x = g.node(bn).inputs[0];
        let n = a.len();
        if !single_use(g, x) || g.ty(x).rank() != 2 {
            return false;
        }
        let Some(p) = g.producer(x) else { return false };
        // (matmul node, optional (add node, constant c))
        let (mm, add) = match &g.node(p).op {
            Op::MatMul => (p, None),
            Op::Binary(BinaryOp::Add) => {
                let ins = &g.node(p).inputs;
                let pick = |k: usize| {
                    let m = g.producer(ins[k])?;
                    (matches!(g.node(m).op, Op::MatMul) && g.const_data(ins[1 - k]).is_some())
                        .then_some((m, ins[1 - k]))
                };
                match pick(0).or_else(|| pick(1)) {
                    Some((m, c)) if single_use(g, g.node(m).outputs[0]) => (m, Some((p, c))),
                    _ => return false,
                }
            }
            _ => return false,
        };
        let min = g.node(mm).inputs.clone();
        let Some(w) = g.const_data(min[1]) else {
            return false;
        };
        if w.dims().len() != 2 {
            return false;
        }
        let Some(w2) = scale_axis(w, 1, a) else {
            return false;
        };
        let shift: Vec<f64> = match add {
            None => b.to_vec(),
            Some((_, c)) => {
                let Some(ct) = g.const_data(c) else {
                    return false;
                };
                let cv = ct.to_f64_vec();
                let d = ct.dims();
                if !(ct.numel() == 1 || d == [n] || d == [1, n]) {
                    return false;
                }
                let at = |j: usize| if cv.len() == 1 { cv[0] } else { cv[j] };
                (0..n).map(|j| at(j) * a[j] + b[j]).collect()
            }
        };
        let Some(s2) = float_tensor(w.dtype(), vec![n], shift) else {
            return false;
        };
        let label = node_label(g, mm);
        let wv = self.konst(&format!("{label}.weight.bn"), w2);
        let sv = self.konst(&format!("{label}.bias.bn"), s2);
        let mm_out = self.g.node(mm).outputs[0];
        // The add (the existing one, or the batch norm itself) must keep its type; check before
        // changing anything.
        let target = add.map_or(bn, |(addn, _)| addn);
        let add_op = Op::Binary(BinaryOp::Add);
        let keeps = self
            .g
            .infer_node(&add_op, &[mm_out, sv], "")
            .is_ok_and(|t| t.first() == Some(self.g.ty(self.g.node(target).outputs[0])));
        if !keeps || !set_op_same_type(self.g, mm, Op::MatMul, &[min[0], wv]) {
            return false;
        }
        match add {
            Some((addn, _)) => self.commit(bn, addn, add_op, &[mm_out, sv]),
            None => set_op_same_type(self.g, bn, add_op, &[mm_out, sv]),
        }
    }

    /// `mul(x, a') + b'` with constant `[C, 1, ..]` operands; the batch norm becomes the add.
    fn rewrite_as_mul_add(&mut self, bn: NodeId, a: Vec<f64>, b: Vec<f64>) -> bool {
        let x = self.g.node(bn).inputs[0];
        let ty = self.g.ty(x).clone();
        if ty.rank() < 2 {
            return false;
        }
        let mut dims = vec![a.len()];
        dims.resize(ty.rank() - 1, 1);
        let (Some(at), Some(bt)) = (
            float_tensor(ty.dtype, dims.clone(), a),
            float_tensor(ty.dtype, dims, b),
        ) else {
            return false;
        };
        let label = node_label(self.g, bn);
        let av = self.konst(&format!("{label}.scale"), at);
        let bv = self.konst(&format!("{label}.shift"), bt);
        let Ok(m) = self
            .g
            .add(Op::Binary(BinaryOp::Mul), &[x, av], format!("{label}.mul"))
        else {
            return false;
        };
        set_op_same_type(self.g, bn, Op::Binary(BinaryOp::Add), &[m, bv])
    }

    /// The same arithmetic as graph nodes, for non-constant parameters.
    fn rewrite_as_ops(&mut self, bn: NodeId, eps: f32) -> Result<bool, kestrel_ir::GraphError> {
        let node = self.g.node(bn).clone();
        let ty = self.g.ty(node.inputs[0]).clone();
        if ty.rank() < 2 || !matches!(ty.dtype, DType::F32 | DType::F64) {
            return Ok(false);
        }
        if node.inputs[1..5]
            .iter()
            .any(|&v| self.g.ty(v).dtype != ty.dtype)
        {
            return Ok(false);
        }
        let (x, scale, bias, mean, var) = (
            node.inputs[0],
            node.inputs[1],
            node.inputs[2],
            node.inputs[3],
            node.inputs[4],
        );
        let label = node_label(self.g, bn);
        let Some(e) = float_tensor(ty.dtype, vec![], vec![eps as f64]) else {
            return Ok(false);
        };
        let mut shape = vec![-1i64];
        shape.resize(ty.rank() - 1, 1);
        let ev = self.konst(&format!("{label}.epsilon"), e);
        let sv = self.konst(
            &format!("{label}.channel_shape"),
            Tensor::from_vec(vec![shape.len()], shape),
        );
        let g = &mut *self.g;
        let bin = |op| Op::Binary(op);
        let ve = g.add(bin(BinaryOp::Add), &[var, ev], format!("{label}.var_eps"))?;
        let sd = g.add(Op::Unary(UnaryOp::Sqrt), &[ve], format!("{label}.std"))?;
        let a = g.add(bin(BinaryOp::Div), &[scale, sd], format!("{label}.a"))?;
        let ma = g.add(bin(BinaryOp::Mul), &[mean, a], format!("{label}.mean_a"))?;
        let b = g.add(bin(BinaryOp::Sub), &[bias, ma], format!("{label}.b"))?;
        let ar = g.add(
            Op::Reshape { allowzero: false },
            &[a, sv],
            format!("{label}.a_c"),
        )?;
        let br = g.add(
            Op::Reshape { allowzero: false },
            &[b, sv],
            format!("{label}.b_c"),
        )?;
        let m = g.add(bin(BinaryOp::Mul), &[x, ar], format!("{label}.mul"))?;
        Ok(set_op_same_type(g, bn, bin(BinaryOp::Add), &[m, br]))
    }
}

impl Pass for FoldBatchNorm {
    fn name(&self) -> &'static str {
        "fold-batchnorm"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<bool, PassError> {
        let names = ConstNames::new(g);
        let mut f = Folder { g, names };
        let mut changed = false;
        let mut added_nodes = false;
        for ni in 0..f.g.nodes.len() {
            let bn = NodeId(ni as u32);
            let Op::BatchNorm { epsilon } = f.g.node(bn).op else {
                continue;
            };
            let x = f.g.node(bn).inputs[0];
            if !matches!(f.g.ty(x).dtype, DType::F32 | DType::F64) {
                continue;
            }
            // Every attempt only appends values and nodes until its final, type-checked rewrite
            // of existing nodes, so a refused attempt is undone by truncating back to here.
            let mark = (f.g.values.len(), f.g.nodes.len());
            let (done, adds) = match affine(f.g, bn, epsilon.0) {
                Some((a, b)) => {
                    if f.fold_into_conv(bn, &a, &b)
                        || f.fold_into_gemm(bn, &a, &b)
                        || f.fold_into_matmul(bn, &a, &b)
                    {
                        (true, false)
                    } else {
                        (f.rewrite_as_mul_add(bn, a, b), true)
                    }
                }
                None => {
                    // Inference refusing one of the new nodes only means this batch norm stays.
                    (f.rewrite_as_ops(bn, epsilon.0).unwrap_or(false), true)
                }
            };
            if done {
                changed = true;
                added_nodes |= adds;
            } else {
                f.g.nodes.truncate(mark.1);
                f.g.values.truncate(mark.0);
            }
        }
        if added_nodes {
            f.g.sort_topologically()
                .map_err(|e| PassError::failed(self.name(), e))?;
        }
        if changed {
            f.g.remove_dead_nodes();
        }
        Ok(changed)
    }
}
