//! A model's forward pass over a whole data set: accuracy on held-out data during training, and
//! the teacher's logits.

use super::data::Dataset;
use super::step::bind_batch;
use crate::driver;
use anyhow::{anyhow, Context, Result};
use kestrel_backends::jit::{self, JitModel, JitOptions};
use kestrel_ir::{Graph, Tensor};
use std::path::Path;

/// The forward graph at one batch size, compiled by the JIT.
pub struct Forward {
    pub batch: usize,
    jit: JitModel,
}

impl Forward {
    pub fn compile(model: &Graph, path: &Path, batch: usize, threads: usize) -> Result<Forward> {
        let mut g = bind_batch(model, batch, path)?;
        driver::fold_for_codegen(&mut g, path)?;
        let jit = jit::compile(&g, &JitOptions::with_threads(threads))
            .with_context(|| format!("{}: compiling the forward pass", path.display()))?;
        Ok(Forward { batch, jit })
    }

    /// The first output for every sample of `data`, in order, `[samples, ...]`. The last,
    /// partial batch is padded with its first sample.
    pub fn outputs(&self, data: &Dataset) -> Result<Tensor> {
        let mut rows: Vec<u8> = Vec::new();
        let mut row_dims = Vec::new();
        let mut dtype = kestrel_ir::DType::F32;
        for start in (0..data.samples).step_by(self.batch) {
            let end = (start + self.batch).min(data.samples);
            let mut indices: Vec<usize> = (start..end).collect();
            indices.resize(self.batch, start);
            let feed = data.gather(&indices);
            let out = self.jit.run(&feed).context("running the forward pass")?;
            let o = &out[0];
            dtype = o.dtype();
            row_dims = o.dims()[1..].to_vec();
            let row = o.bytes().len() / self.batch;
            rows.extend_from_slice(&o.bytes()[..row * (end - start)]);
        }
        let mut dims = vec![data.samples];
        dims.extend(row_dims);
        Ok(Tensor::from_bytes(dtype, dims, rows.into())?)
    }

    /// Top-1 accuracy on `data` (which must have labels).
    pub fn accuracy(&self, data: &Dataset) -> Result<f64> {
        let logits = self.outputs(data)?;
        let labels = data
            .labels
            .as_ref()
            .ok_or_else(|| anyhow!("{}: accuracy needs labels", data.path.display()))?;
        Ok(correct(&logits, labels) as f64 / labels.len().max(1) as f64)
    }
}

/// How many rows of `logits` (`[N, classes]`) have their largest entry at the label.
pub fn correct(logits: &Tensor, labels: &[i64]) -> usize {
    let classes = logits.dims().last().copied().unwrap_or(1).max(1);
    logits
        .to_f32_vec()
        .chunks(classes)
        .zip(labels)
        .filter(|(row, &y)| argmax(row) == y as usize)
        .count()
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}
