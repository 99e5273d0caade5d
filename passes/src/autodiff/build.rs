//! A small builder over [`Graph`] for writing gradient rules: constants of the graph's float
//! dtype, the handful of ops the rules combine, and the reductions that undo broadcasting.

use super::AutodiffError;
use kestrel_ir::{BinaryOp, DType, Graph, Op, ReduceAttrs, ReduceKind, Tensor, UnaryOp, ValueId};

/// Appends nodes to `g`, naming each after the forward node whose gradient it computes.
pub(crate) struct Builder<'g> {
    pub g: &'g mut Graph,
    /// The float dtype (f32 or f64) of every gradient.
    pub dtype: DType,
    /// Description of the forward node being differentiated, for errors (`node 3 "c" (conv)`).
    pub node_desc: String,
    /// Name given to the nodes added (`grad/<forward name>`).
    pub tag: String,
}

/// A float tensor of `dtype` (f32 or f64) from f64 values.
pub(crate) fn float_tensor(dtype: DType, dims: Vec<usize>, values: Vec<f64>) -> Tensor {
    match dtype {
        DType::F64 => Tensor::from_vec(dims, values),
        _ => Tensor::from_vec(
            dims,
            values.into_iter().map(|v| v as f32).collect::<Vec<_>>(),
        ),
    }
}

impl Builder<'_> {
    pub fn unsupported(&self, reason: impl Into<String>) -> AutodiffError {
        AutodiffError::Unsupported {
            node: self.node_desc.clone(),
            reason: reason.into(),
        }
    }

    /// Known extents of `v`, or an error naming the node.
    pub fn dims(&self, v: ValueId) -> Result<Vec<usize>, AutodiffError> {
        self.g.ty(v).dims().ok_or_else(|| {
            self.unsupported(format!(
                "value {v} has unknown extents; bind the input shapes first"
            ))
        })
    }

    fn const_name(&self) -> String {
        format!("autodiff.c{}", self.g.values.len())
    }

    pub fn constant(&mut self, t: Tensor) -> ValueId {
        let name = self.const_name();
        self.g.add_const(name, t)
    }

    pub fn scalar(&mut self, v: f64) -> ValueId {
        let t = float_tensor(self.dtype, vec![], vec![v]);
        self.constant(t)
    }

    pub fn floats(&mut self, dims: Vec<usize>, values: Vec<f64>) -> ValueId {
        let t = float_tensor(self.dtype, dims, values);
        self.constant(t)
    }

    pub fn i64s(&mut self, dims: Vec<usize>, values: Vec<i64>) -> ValueId {
        self.constant(Tensor::from_vec(dims, values))
    }

    pub fn op(&mut self, op: Op, inputs: &[ValueId]) -> Result<ValueId, AutodiffError> {
        let tag = self.tag.clone();
        Ok(self.g.add(op, inputs, tag)?)
    }

    pub fn unary(&mut self, u: UnaryOp, x: ValueId) -> Result<ValueId, AutodiffError> {
        self.op(Op::Unary(u), &[x])
    }

    pub fn binary(
        &mut self,
        b: BinaryOp,
        x: ValueId,
        y: ValueId,
    ) -> Result<ValueId, AutodiffError> {
        self.op(Op::Binary(b), &[x, y])
    }

    pub fn add(&mut self, x: ValueId, y: ValueId) -> Result<ValueId, AutodiffError> {
        self.binary(BinaryOp::Add, x, y)
    }

    pub fn sub(&mut self, x: ValueId, y: ValueId) -> Result<ValueId, AutodiffError> {
        self.binary(BinaryOp::Sub, x, y)
    }

    pub fn mul(&mut self, x: ValueId, y: ValueId) -> Result<ValueId, AutodiffError> {
        self.binary(BinaryOp::Mul, x, y)
    }

    pub fn div(&mut self, x: ValueId, y: ValueId) -> Result<ValueId, AutodiffError> {
        self.binary(BinaryOp::Div, x, y)
    }

    pub fn neg(&mut self, x: ValueId) -> Result<ValueId, AutodiffError> {
        self.unary(UnaryOp::Neg, x)
    }

    pub fn scale(&mut self, x: ValueId, factor: f64) -> Result<ValueId, AutodiffError> {
        if factor == 1.0 {
            return Ok(x);
        }
        let c = self.scalar(factor);
        self.mul(x, c)
    }

    /// Sum over `axes` (all axes when empty, giving a scalar unless `keepdims`).
    pub fn reduce_sum(
        &mut self,
        x: ValueId,
        axes: &[usize],
        keepdims: bool,
    ) -> Result<ValueId, AutodiffError> {
        let op = Op::Reduce(ReduceAttrs {
            kind: ReduceKind::Sum,
            keepdims,
            noop_with_empty_axes: false,
        });
        if axes.is_empty() {
            return self.op(op, &[x]);
        }
        let a = self.i64s(vec![axes.len()], axes.iter().map(|&a| a as i64).collect());
        self.op(op, &[x, a])
    }

    pub fn reshape(&mut self, x: ValueId, dims: &[usize]) -> Result<ValueId, AutodiffError> {
        if self.dims(x)? == dims {
            return Ok(x);
        }
        let s = self.i64s(vec![dims.len()], dims.iter().map(|&d| d as i64).collect());
        self.op(Op::Reshape { allowzero: false }, &[x, s])
    }

    pub fn transpose(&mut self, x: ValueId, perm: &[usize]) -> Result<ValueId, AutodiffError> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(x);
        }
        self.op(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }

    /// `1` where `x cmp c` holds, else `0`, in the gradient dtype.
    pub fn compare(&mut self, cmp: BinaryOp, x: ValueId, c: f64) -> Result<ValueId, AutodiffError> {
        let c = self.scalar(c);
        let m = self.binary(cmp, x, c)?;
        let dtype = self.dtype;
        self.op(Op::Cast { to: dtype }, &[m])
    }

    /// `1` where `lo < x < hi`, else `0` (an infinite bound always holds).
    pub fn open_interval(
        &mut self,
        x: ValueId,
        lo: f64,
        hi: f64,
    ) -> Result<ValueId, AutodiffError> {
        let above = self.compare(BinaryOp::Greater, x, lo)?;
        let below = self.compare(BinaryOp::Less, x, hi)?;
        self.mul(above, below)
    }

    /// `x[.., start..end, ..]` along `axis`.
    pub fn slice(
        &mut self,
        x: ValueId,
        axis: usize,
        start: usize,
        end: usize,
    ) -> Result<ValueId, AutodiffError> {
        let s = self.i64s(vec![1], vec![start as i64]);
        let e = self.i64s(vec![1], vec![end as i64]);
        let a = self.i64s(vec![1], vec![axis as i64]);
        self.op(Op::Slice, &[x, s, e, a])
    }

    /// The gradient of a value broadcast (numpy rules) from `target` extents to the extents of
    /// `grad`: `grad` summed over the broadcast axes and reshaped to `target`.
    pub fn unbroadcast(
        &mut self,
        grad: ValueId,
        target: &[usize],
    ) -> Result<ValueId, AutodiffError> {
        let out = self.dims(grad)?;
        if out == target {
            return Ok(grad);
        }
        if target.len() > out.len() {
            return Err(self.unsupported(format!(
                "gradient of extents {out:?} does not broadcast from {target:?}"
            )));
        }
        let lead = out.len() - target.len();
        let mut axes: Vec<usize> = (0..lead).collect();
        for (i, &t) in target.iter().enumerate() {
            if t == 1 && out[lead + i] != 1 {
                axes.push(lead + i);
            }
        }
        let summed = if axes.is_empty() {
            grad
        } else {
            self.reduce_sum(grad, &axes, true)?
        };
        self.reshape(summed, target)
    }
}
