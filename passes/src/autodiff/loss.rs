//! Losses: each term appends its extra inputs (labels, targets, teacher logits), computes its
//! scalar value and its gradient with respect to the logits directly in IR ops.

use super::build::Builder;
use super::AutodiffError;
use kestrel_ir::{BinaryOp, DType, Op, TensorType, ValueId};

/// One term of a [`Loss`].
#[derive(Clone, Debug, PartialEq)]
pub enum LossTerm {
    /// Softmax cross-entropy of logits `[N, K]` against class ids (input `labels: i64 [N]`),
    /// the mean over the batch: `-1/N · Σ_n log softmax(z)[n, y_n]`.
    CrossEntropy,
    /// Mean squared error against `targets` of the logits' type: `1/numel · Σ (z - t)²`.
    MeanSquaredError,
    /// Distillation: `T²/N · Σ_n KL(softmax(t_n/T) ‖ softmax(z_n/T))` against the input
    /// `teacher_logits` of the logits' type `[N, K]` (the batch mean of the softened KL, scaled
    /// by `T²` so its gradient does not shrink with the temperature).
    Distillation { temperature: f64 },
}

impl LossTerm {
    /// Name and type of the extra graph input the term reads, given the logits' type.
    pub(crate) fn input(&self, logits: &TensorType) -> (&'static str, TensorType) {
        match self {
            LossTerm::CrossEntropy => {
                let shape = logits.shape[..1.min(logits.rank())].to_vec();
                ("labels", TensorType::new(DType::I64, shape.into()))
            }
            LossTerm::MeanSquaredError => ("targets", logits.clone()),
            LossTerm::Distillation { .. } => ("teacher_logits", logits.clone()),
        }
    }
}

/// A weighted sum of terms on one forward output (the logits).
#[derive(Clone, Debug, PartialEq)]
pub struct Loss {
    /// Index of the forward graph output the loss reads.
    pub output: usize,
    pub terms: Vec<(f64, LossTerm)>,
}

impl Loss {
    pub fn cross_entropy() -> Loss {
        Loss {
            output: 0,
            terms: vec![(1.0, LossTerm::CrossEntropy)],
        }
    }

    pub fn mean_squared_error() -> Loss {
        Loss {
            output: 0,
            terms: vec![(1.0, LossTerm::MeanSquaredError)],
        }
    }

    /// The distillation loss `α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1-α)·CE(s, y)`;
    /// a term of weight 0 is left out (with `alpha = 1` there are no labels).
    pub fn distillation(temperature: f64, alpha: f64) -> Loss {
        let mut terms = Vec::new();
        if alpha != 0.0 {
            terms.push((alpha, LossTerm::Distillation { temperature }));
        }
        if alpha != 1.0 {
            terms.push((1.0 - alpha, LossTerm::CrossEntropy));
        }
        Loss { output: 0, terms }
    }
}

/// `(loss, dloss/dz)` of one term for logits `z` and its extra input `extra`.
pub(crate) fn term(
    b: &mut Builder,
    t: &LossTerm,
    z: ValueId,
    extra: ValueId,
) -> Result<(ValueId, ValueId), AutodiffError> {
    let zd = b.dims(z)?;
    let class_logits = || -> Result<(usize, usize), AutodiffError> {
        if zd.len() != 2 {
            return Err(AutodiffError::Loss(format!(
                "logits must be [N, K], got {zd:?}"
            )));
        }
        Ok((zd[0], zd[1]))
    };
    match t {
        LossTerm::CrossEntropy => {
            let (n, k) = class_logits()?;
            // onehot[n, k] = (labels[n] == k), as an element-wise comparison (no scatter).
            let one_axis = b.i64s(vec![1], vec![1]);
            let labels = b.op(Op::Unsqueeze, &[extra, one_axis])?;
            let classes = b.i64s(vec![1, k], (0..k as i64).collect());
            let hit = b.binary(BinaryOp::Equal, labels, classes)?;
            let dtype = b.dtype;
            let onehot = b.op(Op::Cast { to: dtype }, &[hit])?;
            let ls = b.op(Op::LogSoftmax { axis: 1 }, &[z])?;
            let picked = b.mul(onehot, ls)?;
            let total = b.reduce_sum(picked, &[], false)?;
            let loss = b.scale(total, -1.0 / n as f64)?;
            let sm = b.op(Op::Softmax { axis: 1 }, &[z])?;
            let d = b.sub(sm, onehot)?;
            let dz = b.scale(d, 1.0 / n as f64)?;
            Ok((loss, dz))
        }
        LossTerm::MeanSquaredError => {
            let numel: usize = zd.iter().product();
            let diff = b.sub(z, extra)?;
            let sq = b.mul(diff, diff)?;
            let total = b.reduce_sum(sq, &[], false)?;
            let loss = b.scale(total, 1.0 / numel as f64)?;
            let dz = b.scale(diff, 2.0 / numel as f64)?;
            Ok((loss, dz))
        }
        LossTerm::Distillation { temperature } => {
            let (n, _) = class_logits()?;
            let temp = *temperature;
            if !(temp > 0.0 && temp.is_finite()) {
                return Err(AutodiffError::Loss(format!(
                    "temperature must be positive, got {temp}"
                )));
            }
            let zs = b.scale(z, 1.0 / temp)?;
            let zt = b.scale(extra, 1.0 / temp)?;
            let lps = b.op(Op::LogSoftmax { axis: 1 }, &[zs])?;
            let lpt = b.op(Op::LogSoftmax { axis: 1 }, &[zt])?;
            let pt = b.op(Op::Softmax { axis: 1 }, &[zt])?;
            let ps = b.op(Op::Softmax { axis: 1 }, &[zs])?;
            let gap = b.sub(lpt, lps)?;
            let weighted = b.mul(pt, gap)?;
            let total = b.reduce_sum(weighted, &[], false)?;
            let loss = b.scale(total, temp * temp / n as f64)?;
            let d = b.sub(ps, pt)?;
            let dz = b.scale(d, temp / n as f64)?;
            Ok((loss, dz))
        }
    }
}
