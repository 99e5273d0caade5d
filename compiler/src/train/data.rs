//! Training data held in memory: the samples of every graph input and their labels, checked
//! against the model, gathered into minibatches in any order.

use crate::calibrate::CalibrationData;
use anyhow::{bail, Context, Result};
use kestrel_ir::{DType, Graph, Tensor};
use std::path::{Path, PathBuf};

/// The samples of one graph input, back to back (C order).
struct InputSamples {
    dtype: DType,
    /// Extents of one sample (the input's shape without its batch axis).
    sample_dims: Vec<usize>,
    sample_bytes: usize,
    bytes: Vec<u8>,
}

/// Every sample of a data set (`DATA` as in `../shared/CLI.md` "Calibration and training
/// data": an `.npy`, an `.npz` with one array per graph input, or a folder of those), and the
/// labels when given.
pub struct Dataset {
    pub path: PathBuf,
    pub samples: usize,
    inputs: Vec<InputSamples>,
    /// Class ids, one per sample, each in `0..classes`.
    pub labels: Option<Vec<i64>>,
}

impl Dataset {
    /// Reads `data` for the inputs of `g` (the model as loaded; its batch axis may be
    /// symbolic), and `labels` (integer class ids, one per sample, each below `classes`).
    pub fn load(g: &Graph, data: &Path, labels: Option<&Path>, classes: usize) -> Result<Dataset> {
        let mut unbatched = g.clone();
        crate::driver::bind_default_batch(&mut unbatched, data)?;
        let source = CalibrationData::load(&unbatched, data, None)?;
        let mut inputs: Vec<InputSamples> = unbatched
            .inputs
            .iter()
            .map(|&v| {
                let ty = unbatched.ty(v);
                let sample_dims = ty.dims().expect("bound")[1..].to_vec();
                let sample_bytes = sample_dims.iter().product::<usize>() * ty.dtype.size();
                InputSamples {
                    dtype: ty.dtype,
                    sample_dims,
                    sample_bytes,
                    bytes: Vec::with_capacity(sample_bytes * source.samples),
                }
            })
            .collect();
        for run in 0..source.runs() {
            for (input, t) in inputs.iter_mut().zip(source.run_inputs(&unbatched, run)?) {
                input.bytes.extend_from_slice(t.bytes());
            }
        }
        let labels = match labels {
            Some(p) => Some(read_labels(p, source.samples, data, classes)?),
            None => None,
        };
        Ok(Dataset {
            path: data.to_path_buf(),
            samples: source.samples,
            inputs,
            labels,
        })
    }

    /// The inputs of the samples `indices`, in that order, in graph-input order (each of
    /// extent `indices.len()` on its batch axis).
    pub fn gather(&self, indices: &[usize]) -> Vec<Tensor> {
        self.inputs
            .iter()
            .map(|input| {
                let mut bytes = Vec::with_capacity(input.sample_bytes * indices.len());
                for &i in indices {
                    let at = i * input.sample_bytes;
                    bytes.extend_from_slice(&input.bytes[at..at + input.sample_bytes]);
                }
                let mut dims = vec![indices.len()];
                dims.extend_from_slice(&input.sample_dims);
                Tensor::from_bytes(input.dtype, dims, bytes.into()).expect("sizes match")
            })
            .collect()
    }

    /// The labels of the samples `indices`, as the `labels` input of a loss takes them.
    pub fn gather_labels(&self, indices: &[usize]) -> Option<Tensor> {
        let labels = self.labels.as_ref()?;
        Some(Tensor::from_vec(
            vec![indices.len()],
            indices.iter().map(|&i| labels[i]).collect::<Vec<i64>>(),
        ))
    }
}

/// Reads class ids: an integer `.npy` of `samples` entries, each in `0..classes`.
fn read_labels(path: &Path, samples: usize, data: &Path, classes: usize) -> Result<Vec<i64>> {
    let t = crate::tensor_io::read_tensor_file(path)
        .with_context(|| format!("reading the labels {}", path.display()))?;
    if !t.dtype().is_int() {
        bail!(
            "{}: labels must be integer class ids, not {:?}",
            path.display(),
            t.dtype()
        );
    }
    let labels = t.to_i64_vec();
    if labels.len() != samples {
        bail!(
            "{}: {} labels for the {samples} samples of {}",
            path.display(),
            labels.len(),
            data.display()
        );
    }
    if let Some((i, &bad)) = labels
        .iter()
        .enumerate()
        .find(|(_, &y)| y < 0 || y as u64 >= classes as u64)
    {
        bail!(
            "{}: label {bad} of sample {i} is outside the model's {classes} classes (0..{})",
            path.display(),
            classes
        );
    }
    Ok(labels)
}
