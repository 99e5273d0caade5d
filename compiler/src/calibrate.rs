//! Calibration for the `quantize` pass: runs the float model on the JIT over the user's data and
//! reports the range of the tensors the pass asks for ([`kestrel_passes::quantize::Calibrator`]).
//!
//! The data (CLI.md, "Calibration and training data"): an `.npy` whose first axis indexes
//! samples (single-input models), an `.npz` with one such array per graph input (arrays named
//! after no graph input are ignored, as for `--inputs`), or a folder of those, read in name
//! order as one sequence of samples. Only the headers are read up front (everything is
//! validated from them); the samples are read run by run when the calibrator asks for them
//! (`.npy` files and stored `.npz` members by seeking to the run's bytes, deflated members by
//! decompressing sequentially), so memory holds one run's inputs whatever the size of the data.
//! Statistics are kept per tensor: the exact range in a first pass, and for every method but
//! minmax a histogram over that range in a second pass (`kestrel_passes::quantize::stats`), so
//! neither the data nor the statistics make memory grow with the number of samples.

use crate::inprocess::{Backend, InProcessModel};
use crate::tensor_io::{self, NpyHeader, NpzMember};
use anyhow::{bail, Context, Result};
use kestrel_ir::{DType, Graph, Tensor, ValueId};
use kestrel_passes::quantize::stats::{Histogram, MinMax};
use kestrel_passes::quantize::{Calibrator, Method, Range};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Calibration data: for each graph input (in graph order) a sequence of samples read from
/// the files on demand.
pub struct CalibrationData {
    pub path: PathBuf,
    /// Number of samples used (all, or `--samples N` when smaller).
    pub samples: usize,
    /// Samples per run: the extent of the inputs' batch axis when the graph has it fixed
    /// (a model bound to a data set's batch), else 1.
    pub batch: usize,
    inputs: Vec<InputSamples>,
    /// Per input: the reader left where the last run ended, so that reading the runs in order
    /// never re-reads or re-decompresses anything.
    readers: Mutex<Vec<Option<OpenSegment>>>,
}

/// The samples of one graph input: the arrays holding them, in order.
struct InputSamples {
    dtype: DType,
    /// Bytes of one sample.
    sample_bytes: usize,
    segments: Vec<Segment>,
}

/// One array's samples: `count` samples of `sample_bytes` each, in C order.
struct Segment {
    file: PathBuf,
    count: usize,
    big_endian: bool,
    location: Location,
}

enum Location {
    /// In place in `file` from this offset (an `.npy` file, or a stored `.npz` member).
    InPlace(u64),
    /// A deflated `.npz` member, read as a stream.
    Deflated(Box<NpzMember>),
}

/// An open reader of segment `segment`, positioned at its sample `next`.
struct OpenSegment {
    segment: usize,
    next: usize,
    reader: Box<dyn Read + Send>,
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

/// One array found in a data file: its header and where its data is.
struct Found {
    file: PathBuf,
    label: PathBuf,
    header: NpyHeader,
    location: Location,
}

fn npy_array(file: &Path) -> Result<Found> {
    let mut f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("{}", file.display()))?
        .len();
    let header = tensor_io::read_npy_header(&mut std::io::BufReader::new(&mut f), len, file)?;
    Ok(Found {
        file: file.to_path_buf(),
        label: file.to_path_buf(),
        location: Location::InPlace(header.data_offset),
        header,
    })
}

fn npz_array(file: &Path, member: NpzMember) -> Found {
    Found {
        file: file.to_path_buf(),
        label: file.join(format!("{}.npy", member.name)),
        header: member.header.clone(),
        location: if member.deflated {
            Location::Deflated(Box::new(member))
        } else {
            Location::InPlace(member.data_start + member.header.data_offset)
        },
    }
}

impl CalibrationData {
    /// Opens `path` for the inputs of `g`, reading only the arrays' headers; every sample must
    /// have the input's dtype and its shape without the leading batch axis (or with it, of
    /// extent 1), and every input must have as many samples. `samples` caps the count.
    pub fn load(g: &Graph, path: &Path, samples: Option<usize>) -> Result<CalibrationData> {
        let names: Vec<String> = g
            .inputs
            .iter()
            .map(|&v| g.value(v).name.clone().unwrap_or_default())
            .collect();
        let mut parts: Vec<Vec<Found>> = (0..names.len()).map(|_| Vec::new()).collect();
        for file in data_files(path)? {
            match tensor_io::extension(&file).as_deref() {
                Some("npz") => {
                    let mut matched = false;
                    for member in tensor_io::npz_members(&file)? {
                        if let Some(k) = names.iter().position(|n| *n == member.name) {
                            parts[k].push(npz_array(&file, member));
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
                    parts[0].push(npy_array(&file)?);
                }
                _ => bail!(
                    "{}: sample data must be .npy, .npz or a folder of them",
                    file.display()
                ),
            }
        }
        let mut inputs = Vec::new();
        let mut counts: Vec<usize> = Vec::new();
        let mut batch: Option<usize> = None;
        for (k, (name, p)) in names.iter().zip(parts).enumerate() {
            if p.is_empty() {
                bail!("{}: no data for graph input {name}", path.display());
            }
            let what = format!("{}: input {name}", path.display());
            for f in &p {
                if f.header.dims.is_empty() {
                    bail!(
                        "{}: a scalar; the first axis of sample data indexes the samples",
                        f.label.display()
                    );
                }
                if f.header.fortran_order && f.header.dims.len() > 1 {
                    bail!(
                        "{}: stored in Fortran order; calibration reads samples in C order \
                         (save it with numpy.ascontiguousarray)",
                        f.label.display()
                    );
                }
            }
            let first = &p[0].header;
            let (dtype, sample) = (first.dtype, first.dims[1..].to_vec());
            for f in &p {
                if f.header.dtype != dtype || f.header.dims[1..] != sample[..] {
                    bail!(
                        "{what}: the files disagree on dtype or sample shape ({:?} {:?} against \
                         {:?} {:?})",
                        f.header.dtype,
                        f.header.dims,
                        dtype,
                        first.dims
                    );
                }
            }
            let ty = g.ty(g.inputs[k]);
            if dtype != ty.dtype {
                bail!(
                    "{what}: the data is {:?}, the model takes {:?}",
                    dtype,
                    ty.dtype
                );
            }
            let dims = input_dims(g, k);
            // Samples stack along the input's batch axis, or are whole inputs.
            let per_run = if !dims.is_empty() && sample == dims[1..] {
                dims[0]
            } else if sample == dims[..] {
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
            let sample_bytes = dtype.size() * sample.iter().product::<usize>();
            counts.push(p.iter().map(|f| f.header.dims[0]).sum());
            inputs.push(InputSamples {
                dtype,
                sample_bytes,
                segments: p
                    .into_iter()
                    .map(|f| Segment {
                        count: f.header.dims[0],
                        big_endian: f.header.big_endian,
                        file: f.file,
                        location: f.location,
                    })
                    .collect(),
            });
        }
        if let Some(k) = (1..counts.len()).find(|&k| counts[k] != counts[0]) {
            bail!(
                "{}: input {} has {} samples, input {} has {}",
                path.display(),
                names[0],
                counts[0],
                names[k],
                counts[k]
            );
        }
        let count = counts.first().copied().unwrap_or(0);
        let count = samples.map_or(count, |s| s.min(count));
        if count == 0 {
            bail!("{}: holds no sample", path.display());
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
            samples: count,
            batch,
            readers: Mutex::new((0..inputs.len()).map(|_| None).collect()),
            inputs,
        })
    }

    /// Runs over the data: `samples / batch` (a remainder of fewer than `batch` samples is left
    /// out).
    pub fn runs(&self) -> usize {
        self.samples / self.batch
    }

    /// The inputs of run `i` (samples `i·batch ..`), shaped as the graph's inputs, read from the
    /// files. Reading runs in increasing order is sequential; any order works.
    pub fn run_inputs(&self, g: &Graph, i: usize) -> Result<Vec<Tensor>> {
        if i >= self.runs() {
            bail!(
                "{}: run {i} asked of {} calibration runs",
                self.path.display(),
                self.runs()
            );
        }
        let mut readers = self
            .readers
            .lock()
            .map_err(|_| anyhow::anyhow!("calibration data reader poisoned"))?;
        self.inputs
            .iter()
            .zip(readers.iter_mut())
            .enumerate()
            .map(|(k, (input, reader))| {
                let bytes = input.read(i * self.batch, self.batch, reader)?;
                Ok(Tensor::from_bytes(
                    input.dtype,
                    input_dims(g, k),
                    bytes.into(),
                )?)
            })
            .collect()
    }
}

impl InputSamples {
    /// The bytes of samples `first .. first + n`, little-endian; `open` is kept positioned after
    /// them for the next call.
    fn read(&self, first: usize, n: usize, open: &mut Option<OpenSegment>) -> Result<Vec<u8>> {
        let mut out = vec![0u8; n * self.sample_bytes];
        if out.is_empty() {
            return Ok(out);
        }
        let (mut filled, mut sample) = (0, first);
        let mut base = 0;
        for (index, seg) in self.segments.iter().enumerate() {
            if filled == out.len() {
                break;
            }
            if sample >= base + seg.count {
                base += seg.count;
                continue;
            }
            let within = sample - base;
            let take = (seg.count - within).min(n - (sample - first));
            let chunk = &mut out[filled..filled + take * self.sample_bytes];
            self.read_segment(index, within, chunk, open)
                .with_context(|| format!("{}: reading samples", seg.file.display()))?;
            if seg.big_endian {
                tensor_io::swap_to_little_endian(chunk, self.dtype);
            }
            filled += chunk.len();
            sample += take;
            base += seg.count;
        }
        Ok(out)
    }

    /// Fills `chunk` with whole samples of segment `index` from its sample `within`.
    fn read_segment(
        &self,
        index: usize,
        within: usize,
        chunk: &mut [u8],
        open: &mut Option<OpenSegment>,
    ) -> Result<()> {
        let seg = &self.segments[index];
        let reusable = matches!(open, Some(o) if o.segment == index && o.next <= within);
        if !reusable {
            let reader: Box<dyn Read + Send> = match &seg.location {
                Location::InPlace(offset) => {
                    let mut f = std::fs::File::open(&seg.file)?;
                    f.seek(SeekFrom::Start(
                        offset + (within * self.sample_bytes) as u64,
                    ))?;
                    Box::new(std::io::BufReader::new(f))
                }
                Location::Deflated(member) => tensor_io::open_npz_member(&seg.file, member)?,
            };
            let next = match seg.location {
                Location::InPlace(_) => within,
                Location::Deflated(_) => 0,
            };
            *open = Some(OpenSegment {
                segment: index,
                next,
                reader,
            });
        }
        let o = open.as_mut().expect("opened above");
        let skip = ((within - o.next) * self.sample_bytes) as u64;
        if skip > 0 {
            std::io::copy(&mut (&mut o.reader).take(skip), &mut std::io::sink())?;
        }
        o.reader.read_exact(chunk)?;
        o.next = within + chunk.len() / self.sample_bytes;
        Ok(())
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

/// `g` compiled on the JIT with `tensors` (values of `g`) as its only outputs, in order, and its
/// symbolic batch bound: the model that observes intermediate tensors over calibration data
/// (`path` names the model in errors).
pub fn probe_model(
    g: &Graph,
    tensors: &[ValueId],
    threads: usize,
    path: &Path,
) -> Result<InProcessModel> {
    let mut probe = g.clone();
    crate::driver::bind_default_batch(&mut probe, path)?;
    probe.outputs.clear();
    for (k, &t) in tensors.iter().enumerate() {
        probe.add_output(format!("observed_{k}"), t);
    }
    InProcessModel::new(probe, Backend::Jit, threads, path)
}

/// Implements [`Calibrator`] on the JIT over [`CalibrationData`].
pub struct JitCalibrator {
    pub data: CalibrationData,
    pub threads: usize,
}

impl JitCalibrator {
    fn ranges_inner(&self, g: &Graph, tensors: &[ValueId], method: Method) -> Result<Vec<Range>> {
        let names: Vec<String> = tensors
            .iter()
            .map(|&t| {
                g.value(t)
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("%{}", t.0))
            })
            .collect();
        let model = probe_model(g, tensors, self.threads, &self.data.path)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// digits_cnn with its input bound to `batch` images per run.
    fn digits(batch: usize) -> Graph {
        let model =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits/digits_cnn.onnx");
        let mut g = crate::driver::load(&model).unwrap().graph;
        let t = Tensor::from_vec(vec![batch, 1, 8, 8], vec![0f32; batch * 64]);
        crate::driver::bind_shapes_from_inputs(&mut g, &[t], &model).unwrap();
        g
    }

    fn images(first: usize, n: usize) -> Tensor {
        let v: Vec<f32> = (first * 64..(first + n) * 64).map(|i| i as f32).collect();
        Tensor::from_vec(vec![n, 1, 8, 8], v)
    }

    /// An `.npz` of named arrays, each member stored or deflated.
    fn write_npz(path: &Path, arrays: &[(&str, &Tensor, bool)]) {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        for (name, t, deflate) in arrays {
            let method = if *deflate {
                zip::CompressionMethod::Deflated
            } else {
                zip::CompressionMethod::Stored
            };
            let options = zip::write::SimpleFileOptions::default().compression_method(method);
            zip.start_file(format!("{name}.npy"), options).unwrap();
            zip.write_all(&tensor_io::npy_bytes(t)).unwrap();
        }
        zip.finish().unwrap();
    }

    /// Replaces `from` by `to` (of the same length) in an `.npy` header.
    fn replace_in_header(header: &mut [u8], from: &[u8], to: &[u8]) {
        let at = header
            .windows(from.len())
            .position(|w| w == from)
            .expect("pattern in header");
        header[at..at + to.len()].copy_from_slice(to);
    }

    fn run_values(data: &CalibrationData, g: &Graph, i: usize) -> Vec<f32> {
        let inputs = data.run_inputs(g, i).unwrap();
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].dims(), &[data.batch, 1, 8, 8]);
        inputs[0].to_f32_vec()
    }

    #[test]
    fn a_folder_of_npy_stored_and_deflated_npz_reads_as_one_sequence() {
        let dir = tempfile::tempdir().unwrap();
        // 3 + 4 + 5 images over three files (name order), the runs crossing file boundaries.
        tensor_io::write_npy(&dir.path().join("a.npy"), &images(0, 3)).unwrap();
        let other = Tensor::from_vec(vec![2], vec![9f32, 9.0]);
        write_npz(
            &dir.path().join("b.npz"),
            &[("ignored", &other, true), ("input", &images(3, 4), false)],
        );
        write_npz(&dir.path().join("c.npz"), &[("input", &images(7, 5), true)]);
        let g = digits(2);
        let data = CalibrationData::load(&g, dir.path(), None).unwrap();
        assert_eq!((data.samples, data.batch, data.runs()), (12, 2, 6));
        let expect = |i: usize| images(2 * i, 2).to_f32_vec();
        for i in 0..6 {
            assert_eq!(run_values(&data, &g, i), expect(i), "run {i}");
        }
        // A second pass, then random access (backwards inside a deflated member).
        for i in [0, 5, 4, 5, 3, 1, 2] {
            assert_eq!(run_values(&data, &g, i), expect(i), "run {i}");
        }
        assert!(data.run_inputs(&g, 6).is_err());
        let capped = CalibrationData::load(&g, dir.path(), Some(5)).unwrap();
        assert_eq!((capped.samples, capped.runs()), (5, 2));
    }

    #[test]
    fn big_endian_samples_are_swapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("be.npy");
        let t = images(0, 2);
        let mut bytes = tensor_io::npy_bytes(&t);
        let header = bytes.len() - t.bytes().len();
        replace_in_header(&mut bytes[..header], b"<f4", b">f4");
        for c in bytes[header..].chunks_exact_mut(4) {
            c.reverse();
        }
        std::fs::write(&path, bytes).unwrap();
        let g = digits(1);
        let data = CalibrationData::load(&g, &path, None).unwrap();
        assert_eq!(run_values(&data, &g, 1), images(1, 1).to_f32_vec());
    }

    #[test]
    fn headers_are_validated_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let g = digits(1);
        let err =
            |path: &Path| format!("{:#}", CalibrationData::load(&g, path, None).err().unwrap());
        let fortran = dir.path().join("f.npy");
        let t = images(0, 2);
        let mut bytes = tensor_io::npy_bytes(&t);
        let header = bytes.len() - t.bytes().len();
        replace_in_header(&mut bytes[..header], b"False", b"True ");
        std::fs::write(&fortran, bytes).unwrap();
        assert!(err(&fortran).contains("Fortran order"), "{}", err(&fortran));
        // Files of a folder disagreeing on the sample shape.
        let mixed = dir.path().join("mixed");
        std::fs::create_dir(&mixed).unwrap();
        tensor_io::write_npy(&mixed.join("a.npy"), &images(0, 1)).unwrap();
        let flat = Tensor::from_vec(vec![1, 64], vec![0f32; 64]);
        tensor_io::write_npy(&mixed.join("b.npy"), &flat).unwrap();
        assert!(err(&mixed).contains("disagree"), "{}", err(&mixed));
        // A header claiming more data than the file holds.
        let short = dir.path().join("short.npy");
        let bytes = tensor_io::npy_bytes(&images(0, 2));
        std::fs::write(&short, &bytes[..bytes.len() - 4]).unwrap();
        assert!(
            err(&short).contains("needs 512 data bytes"),
            "{}",
            err(&short)
        );
        let scalar = dir.path().join("scalar.npy");
        tensor_io::write_npy(&scalar, &Tensor::scalar(1f32)).unwrap();
        assert!(err(&scalar).contains("scalar"), "{}", err(&scalar));
    }

    #[test]
    fn inputs_must_have_as_many_samples() {
        let mut g = Graph::default();
        let ty = kestrel_ir::TensorType::new(DType::F32, kestrel_ir::shape_of(&[1, 4]));
        let a = g.add_input("a", ty.clone());
        let b = g.add_input("b", ty);
        let sum = g
            .add(
                kestrel_ir::Op::Binary(kestrel_ir::BinaryOp::Add),
                &[a, b],
                "add",
            )
            .unwrap();
        g.add_output("sum", sum);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ab.npz");
        let rows = |n: usize| Tensor::from_vec(vec![n, 4], vec![1f32; n * 4]);
        write_npz(&path, &[("a", &rows(3), true), ("b", &rows(2), false)]);
        let err = format!(
            "{:#}",
            CalibrationData::load(&g, &path, None).err().unwrap()
        );
        assert!(
            err.contains("input a has 3 samples, input b has 2"),
            "{err}"
        );
        write_npz(&path, &[("a", &rows(3), true), ("b", &rows(3), false)]);
        let data = CalibrationData::load(&g, &path, None).unwrap();
        assert_eq!((data.samples, data.batch), (3, 1));
        let run = data.run_inputs(&g, 2).unwrap();
        assert_eq!(run.len(), 2);
        assert_eq!(run[1].dims(), &[1, 4]);
    }
}
