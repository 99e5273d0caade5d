//! Calibration for the `quantize` pass: runs the float model on the JIT over the user's data and
//! reports the range of the tensors the pass asks for ([`kestrel_passes::quantize::Calibrator`]).
//!
//! The data (CLI.md, "Calibration and training data"): an `.npy` whose first axis indexes
//! samples (single-input models), an `.npz` with one such array per graph input (arrays named
//! after no graph input are ignored, as for `--inputs`), or a folder of those, read in name
//! order and concatenated. Samples run one at a time; statistics are kept per tensor: the exact
//! range in a first pass, and for every method but minmax a 2048-bin histogram over that range
//! in a second pass (`kestrel_passes::quantize::stats`), so the statistics' memory does not grow
//! with the number of samples.

use crate::inprocess::{Backend, InProcessModel};
use crate::tensor_io;
use anyhow::{bail, Context, Result};
use kestrel_ir::{Graph, Tensor, ValueId};
use kestrel_passes::quantize::stats::{Histogram, MinMax};
use kestrel_passes::quantize::{Calibrator, Method, Range};
use std::path::{Path, PathBuf};

/// Calibration data: for each graph input (in graph order) one array whose first axis indexes
/// samples.
pub struct CalibrationData {
    pub path: PathBuf,
    pub names: Vec<String>,
    pub arrays: Vec<Tensor>,
    /// Number of samples used (all, or `--samples N` when smaller).
    pub samples: usize,
    /// Samples per run: the extent of the inputs' batch axis when the graph has it fixed
    /// (a model bound to a data set's batch), else 1.
    pub batch: usize,
}

fn data_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("{}: reading the calibration folder", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(tensor_io::extension(p).as_deref(), Some("npy" | "npz")))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!(
                "{}: the calibration folder has no .npy or .npz file",
                path.display()
            );
        }
        Ok(files)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

/// Concatenates arrays along their first axis (same dtype and trailing dims).
fn concat_samples(parts: Vec<Tensor>, what: &str) -> Result<Tensor> {
    if parts.len() == 1 {
        return Ok(parts.into_iter().next().expect("one part"));
    }
    let first = &parts[0];
    let (dtype, rest) = (first.dtype(), first.dims()[1..].to_vec());
    let mut bytes = Vec::new();
    let mut n = 0;
    for p in &parts {
        if p.dtype() != dtype || p.dims().get(1..) != Some(&rest[..]) {
            bail!(
                "{what}: the files disagree on dtype or sample shape ({:?} {:?} against {:?} {:?})",
                p.dtype(),
                p.dims(),
                dtype,
                first.dims()
            );
        }
        n += p.dims()[0];
        bytes.extend_from_slice(p.bytes());
    }
    let mut dims = vec![n];
    dims.extend(rest);
    Ok(Tensor::from_bytes(dtype, dims, bytes.into())?)
}

impl CalibrationData {
    /// Reads `path` for the inputs of `g`; every sample must have the input's dtype and its
    /// shape without the leading batch axis (or with it, of extent 1). `samples` caps the count.
    pub fn load(g: &Graph, path: &Path, samples: Option<usize>) -> Result<CalibrationData> {
        let names: Vec<String> = g
            .inputs
            .iter()
            .map(|&v| g.value(v).name.clone().unwrap_or_default())
            .collect();
        let mut parts: Vec<Vec<Tensor>> = vec![Vec::new(); names.len()];
        for file in data_files(path)? {
            match tensor_io::extension(&file).as_deref() {
                Some("npz") => {
                    let mut matched = false;
                    for (name, t) in tensor_io::read_npz(&file)? {
                        if let Some(k) = names.iter().position(|n| *n == name) {
                            parts[k].push(t);
                            matched = true;
                        }
                    }
                    if !matched {
                        bail!(
                            "{}: no array is named after a graph input (inputs: {})",
                            file.display(),
                            names.join(", ")
                        );
                    }
                }
                Some("npy") => {
                    if names.len() != 1 {
                        bail!(
                            "{}: an .npy calibrates a single-input model; this one has {} inputs \
                             ({}): give an .npz with one array per input",
                            file.display(),
                            names.len(),
                            names.join(", ")
                        );
                    }
                    parts[0].push(tensor_io::read_npy(&file)?);
                }
                _ => bail!(
                    "{}: calibration data must be .npy, .npz or a folder of them",
                    file.display()
                ),
            }
        }
        let mut arrays = Vec::new();
        let mut count = usize::MAX;
        let mut batch: Option<usize> = None;
        for (k, (name, p)) in names.iter().zip(parts).enumerate() {
            if p.is_empty() {
                bail!("{}: no data for graph input {name}", path.display());
            }
            let what = format!("{}: input {name}", path.display());
            let t = concat_samples(p, &what)?;
            let ty = g.ty(g.inputs[k]);
            if t.dtype() != ty.dtype {
                bail!(
                    "{what}: the data is {:?}, the model takes {:?}",
                    t.dtype(),
                    ty.dtype
                );
            }
            let dims = input_dims(g, k);
            let sample = t.dims().get(1..).unwrap_or(&[]);
            // Samples stack along the input's batch axis, or are whole inputs.
            let per_run = if !dims.is_empty() && sample == &dims[1..] {
                dims[0]
            } else if sample == &dims[..] {
                1
            } else {
                bail!(
                    "{what}: samples of shape {:?} (first axis: samples), the model takes {:?}",
                    sample,
                    sample_dims(g, k)
                );
            };
            if *batch.get_or_insert(per_run) != per_run {
                bail!("{what}: the model's inputs take different numbers of samples per run");
            }
            count = count.min(t.dims()[0]);
            arrays.push(t);
        }
        let count = samples.map_or(count, |s| s.min(count));
        if count == 0 {
            bail!("{}: the calibration data holds no sample", path.display());
        }
        let batch = batch.unwrap_or(1).max(1);
        if count < batch {
            bail!(
                "{}: {count} calibration samples, fewer than the {batch} the model takes per run",
                path.display()
            );
        }
        Ok(CalibrationData {
            path: path.to_path_buf(),
            names,
            arrays,
            samples: count,
            batch,
        })
    }

    /// Runs over the data: `samples / batch` (a remainder of fewer than `batch` samples is left
    /// out).
    pub fn runs(&self) -> usize {
        self.samples / self.batch
    }

    /// The inputs of run `i` (samples `i·batch ..`), shaped as the graph's inputs.
    pub fn run_inputs(&self, g: &Graph, i: usize) -> Result<Vec<Tensor>> {
        self.arrays
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let per = t.bytes().len() / t.dims()[0] * self.batch;
                let data = t.bytes().slice(i * per..(i + 1) * per);
                let dims = input_dims(g, k);
                Ok(Tensor::from_bytes(t.dtype(), dims, data)?)
            })
            .collect()
    }
}

/// The dims of graph input `k` (symbolic extents as 1).
fn input_dims(g: &Graph, k: usize) -> Vec<usize> {
    let ty = g.ty(g.inputs[k]);
    ty.shape
        .iter()
        .map(|d| match d {
            kestrel_ir::Dim::Known(n) => *n,
            _ => 1,
        })
        .collect()
}

/// The dims of one sample of input `k`: the input's dims without a leading batch axis of 1.
fn sample_dims(g: &Graph, k: usize) -> Vec<usize> {
    let dims = input_dims(g, k);
    match dims.first() {
        Some(1) => dims[1..].to_vec(),
        _ => dims,
    }
}

/// Implements [`Calibrator`] on the JIT over [`CalibrationData`].
pub struct JitCalibrator {
    pub data: CalibrationData,
    pub threads: usize,
}

impl JitCalibrator {
    fn ranges_inner(&self, g: &Graph, tensors: &[ValueId], method: Method) -> Result<Vec<Range>> {
        let mut probe = g.clone();
        crate::driver::bind_default_batch(&mut probe, &self.data.path)?;
        probe.outputs.clear();
        for (k, &t) in tensors.iter().enumerate() {
            probe.add_output(format!("calibrated_{k}"), t);
        }
        let names: Vec<String> = tensors
            .iter()
            .map(|&t| {
                g.value(t)
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("%{}", t.0))
            })
            .collect();
        let model = InProcessModel::new(probe, Backend::Jit, self.threads, &self.data.path)?;
        let run = |i: usize| -> Result<Vec<Tensor>> {
            model
                .run_tensors(&self.data.run_inputs(g, i)?)
                .with_context(|| format!("{}: calibration sample {i}", self.data.path.display()))
        };
        let passes = if method.needs_histogram() { 2 } else { 1 };
        let progress = progress_bar((self.data.runs() * passes) as u64, self.data.batch);
        let mut minmax = vec![MinMax::default(); tensors.len()];
        for i in 0..self.data.runs() {
            progress.inc(1);
            for (k, t) in run(i)?.into_iter().enumerate() {
                if let Err(v) = minmax[k].add(&t.to_f32_vec()) {
                    bail!(
                        "{}: calibration sample {i}: tensor {} takes the value {v}; the model \
                         computes NaN or infinite activations on this data",
                        self.data.path.display(),
                        names[k]
                    );
                }
            }
        }
        let exact: Vec<Range> = minmax
            .iter()
            .map(|m| m.range().expect("at least one sample"))
            .collect();
        if !method.needs_histogram() {
            progress.finish_and_clear();
            return Ok(exact);
        }
        let mut histograms: Vec<Histogram> = exact.iter().map(|&r| Histogram::new(r)).collect();
        for i in 0..self.data.runs() {
            progress.inc(1);
            for (k, t) in run(i)?.into_iter().enumerate() {
                histograms[k].add(&t.to_f32_vec());
            }
        }
        progress.finish_and_clear();
        // A graph output keeps its exact range: clipping a model's outputs (logits) ties the
        // largest ones and changes its answer, whatever the histogram says.
        Ok(tensors
            .iter()
            .zip(&histograms)
            .map(|(&t, h)| {
                if g.is_output(t) {
                    h.range
                } else {
                    h.range_for(method)
                }
            })
            .collect())
    }
}

/// The calibration progress bar on stderr (not drawn when stderr is not a terminal): one step per
/// run of `batch` samples, over both passes.
fn progress_bar(steps: u64, batch: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(steps);
    let what = if batch == 1 {
        "samples".to_string()
    } else {
        format!("runs of {batch} samples")
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "calibrating {{bar:30}} {{pos}}/{{len}} {what} ({{elapsed}})"
    )) {
        bar.set_style(style);
    }
    bar
}

impl Calibrator for JitCalibrator {
    fn ranges(&self, g: &Graph, tensors: &[ValueId], method: Method) -> Result<Vec<Range>, String> {
        self.ranges_inner(g, tensors, method)
            .map_err(|e| format!("{e:#}"))
    }
}
