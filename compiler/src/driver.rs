//! What the commands share: loading a model by file type, binding inputs, writing outputs.

use crate::cli::InputArgs;
use crate::tensor_io::{self, extension};
use anyhow::{anyhow, bail, Context, Result};
use kestrel_ir::{Dim, Graph, Tensor, ValueDef};
use std::path::{Path, PathBuf};

/// Loads a model: `.onnx` through the importer, `.kir` through the text parser (weights from the
/// sidecar written beside it by `kestrel dump -o`).
pub fn load_graph(path: &Path) -> Result<Graph> {
    match extension(path).as_deref() {
        Some("onnx") => Ok(crate::onnx::load_model(path)?.graph),
        Some("kir") => crate::dump::read_kir(path),
        Some("so") => bail!(
            "{}: a compiled shared object has no graph to load; `kestrel run` runs it, other \
             commands need the model it was compiled from",
            path.display()
        ),
        _ => bail!(
            "{}: unknown model type (expected .onnx or .kir)",
            path.display()
        ),
    }
}

/// Parsed `--input`, `--inputs` and `--input-shape` options.
#[derive(Debug, Default)]
pub struct InputSpec {
    /// `(Some(name), file)` for NAME=FILE, `(None, file)` for a positional FILE.
    pub files: Vec<(Option<String>, PathBuf)>,
    pub archives: Vec<PathBuf>,
    /// `(input name, dims)` from `--input-shape`.
    pub shapes: Vec<(String, Vec<usize>)>,
}

impl InputSpec {
    pub fn parse_all(args: &InputArgs) -> Result<InputSpec> {
        let files = args
            .input
            .iter()
            .map(|s| match s.split_once('=') {
                Some((name, file)) if !name.is_empty() && !name.contains('/') => {
                    (Some(name.to_string()), PathBuf::from(file))
                }
                _ => (None, PathBuf::from(s)),
            })
            .collect();
        let shapes = args
            .input_shape
            .iter()
            .map(|s| parse_shape_spec(s))
            .collect::<Result<_>>()?;
        Ok(InputSpec {
            files,
            archives: args.inputs.clone(),
            shapes,
        })
    }
}

/// Parses `NAME=1x3x224x224`.
pub fn parse_shape_spec(s: &str) -> Result<(String, Vec<usize>)> {
    let (name, dims) = s.rsplit_once('=').ok_or_else(|| {
        anyhow!("--input-shape {s:?}: expected NAME=DIMS, e.g. input=1x3x224x224")
    })?;
    let dims = if dims.is_empty() {
        vec![]
    } else {
        dims.split(['x', ','])
            .map(|d| {
                d.trim()
                    .parse::<usize>()
                    .map_err(|_| anyhow!("--input-shape {s:?}: {d:?} is not a dimension"))
            })
            .collect::<Result<_>>()?
    };
    Ok((name.to_string(), dims))
}

/// Fixes the shapes of the named inputs and re-infers every node's type.
pub fn apply_input_shapes(
    g: &mut Graph,
    shapes: &[(String, Vec<usize>)],
    model: &Path,
) -> Result<()> {
    if shapes.is_empty() {
        return Ok(());
    }
    for (name, dims) in shapes {
        let id = input_by_name(g, name).ok_or_else(|| {
            anyhow!(
                "{}: --input-shape names {name:?}, which is not a graph input (inputs: {})",
                model.display(),
                input_names(g)
            )
        })?;
        let ty = &mut g.values[id.index()].ty;
        if ty.rank() != dims.len() {
            bail!(
                "{}: --input-shape {name}: input has rank {} ({ty}), the shape given has rank {}",
                model.display(),
                ty.rank(),
                dims.len()
            );
        }
        for (axis, (d, &n)) in ty.shape.iter().zip(dims).enumerate() {
            if let Dim::Known(k) = d {
                if *k != n {
                    bail!(
                        "{}: --input-shape {name}: axis {axis} is fixed at {k} by the model, not {n}",
                        model.display()
                    );
                }
            }
        }
        ty.shape = kestrel_ir::shape_of(dims);
    }
    g.reinfer()
        .with_context(|| format!("{}: after binding input shapes", model.display()))?;
    Ok(())
}

fn input_by_name(g: &Graph, name: &str) -> Option<kestrel_ir::ValueId> {
    g.inputs
        .iter()
        .copied()
        .find(|&v| g.value(v).name.as_deref() == Some(name))
}

fn input_names(g: &Graph) -> String {
    g.inputs
        .iter()
        .map(|&v| g.value(v).name.clone().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Matches the given files to graph inputs (by name, then in order) and checks every input is
/// bound exactly once with the right dtype and rank. Returns tensors in `g.inputs` order.
pub fn bind_inputs(g: &Graph, spec: &InputSpec, model: &Path) -> Result<Vec<Tensor>> {
    let mut bound: Vec<Option<(Tensor, PathBuf)>> = vec![None; g.inputs.len()];
    let position = |name: &str| {
        g.inputs
            .iter()
            .position(|&v| g.value(v).name.as_deref() == Some(name))
    };
    let bind = |pos: usize,
                t: Tensor,
                file: &Path,
                bound: &mut Vec<Option<(Tensor, PathBuf)>>|
     -> Result<()> {
        let name = g.value(g.inputs[pos]).name.clone().unwrap_or_default();
        if let Some((_, prev)) = &bound[pos] {
            bail!(
                "input {name:?} is bound twice ({} and {})",
                prev.display(),
                file.display()
            );
        }
        bound[pos] = Some((t, file.to_path_buf()));
        Ok(())
    };
    for archive in &spec.archives {
        for (name, t) in tensor_io::read_npz(archive)? {
            if let Some(pos) = position(&name) {
                bind(pos, t, archive, &mut bound)?;
            }
        }
    }
    for (name, file) in &spec.files {
        let t = tensor_io::read_tensor_file(file)?;
        let pos = match name {
            Some(n) => position(n).ok_or_else(|| {
                anyhow!(
                    "{}: --input {n}=...: the model has no input {n:?} (inputs: {})",
                    model.display(),
                    input_names(g)
                )
            })?,
            None => bound.iter().position(Option::is_none).ok_or_else(|| {
                anyhow!(
                    "{}: every graph input is already bound; {} has nowhere to go",
                    model.display(),
                    file.display()
                )
            })?,
        };
        bind(pos, t, file, &mut bound)?;
    }
    let mut out = Vec::with_capacity(bound.len());
    for (pos, slot) in bound.into_iter().enumerate() {
        let v = g.value(g.inputs[pos]);
        let name = v.name.clone().unwrap_or_default();
        let Some((t, file)) = slot else {
            bail!(
                "{}: input {name:?} ({}) is not bound; give --input {name}=FILE or --inputs FILE.npz",
                model.display(),
                v.ty
            );
        };
        if t.dtype() != v.ty.dtype {
            bail!(
                "{}: input {name:?} expects {}, {} holds {} {:?}",
                model.display(),
                v.ty,
                file.display(),
                t.dtype(),
                t.dims()
            );
        }
        let fits = t.dims().len() == v.ty.rank()
            && t.dims().iter().zip(&v.ty.shape).all(|(&n, d)| match d {
                Dim::Known(k) => *k == n,
                _ => true,
            });
        if !fits {
            bail!(
                "{}: input {name:?} expects shape {}, {} holds shape {:?}",
                model.display(),
                v.ty,
                file.display(),
                t.dims()
            );
        }
        out.push(t);
    }
    Ok(out)
}

/// One line describing a tensor: name, type, and a few statistics.
pub fn summarize(name: &str, t: &Tensor) -> String {
    let values = t.to_f64_vec();
    let head: Vec<String> = values.iter().take(8).map(|v| format!("{v:.6}")).collect();
    let more = if values.len() > 8 { ", ..." } else { "" };
    let argmax = values
        .iter()
        .enumerate()
        .fold(None::<(usize, f64)>, |best, (i, &v)| match best {
            Some((_, b)) if b >= v || v.is_nan() => best,
            _ => Some((i, v)),
        })
        .map(|(i, _)| i);
    format!(
        "{name}: {}{:?} [{}{more}]{}",
        t.dtype(),
        t.dims(),
        head.join(", "),
        // The class index is meaningful only for one row of scores.
        argmax
            .filter(|_| t.dims().iter().filter(|&&d| d > 1).count() <= 1)
            .map(|i| format!(" argmax={i}"))
            .unwrap_or_default()
    )
}

/// Writes the outputs of `run`: `DIR/<name>.npy` per output when `dir` is given (creating DIR),
/// and one `.npz` when `npz` is given. All or nothing: names are checked before anything is
/// written, each file is written atomically, and when any write fails every file already
/// written (and DIR, if this call created it) is removed again.
pub fn write_outputs(
    dir: Option<&Path>,
    npz: Option<&Path>,
    outputs: &[(String, Tensor)],
) -> Result<()> {
    if let Some(dir) = dir {
        for (name, _) in outputs {
            let safe = !name.is_empty()
                && !name.contains(['/', '\\'])
                && name != "."
                && name != ".."
                && !name.contains('\0');
            if !safe {
                bail!(
                    "output name {name:?} cannot be used as a file name in {}",
                    dir.display()
                );
            }
        }
    }
    let mut written: Vec<PathBuf> = Vec::new();
    let mut created_dir: Option<PathBuf> = None;
    let result = (|| -> Result<()> {
        if let Some(dir) = dir {
            if !dir.is_dir() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                created_dir = Some(dir.to_path_buf());
            }
            for (name, t) in outputs {
                let path = dir.join(format!("{name}.npy"));
                tensor_io::write_npy(&path, t)?;
                written.push(path);
            }
        }
        if let Some(path) = npz {
            tensor_io::write_npz(path, outputs)?;
        }
        Ok(())
    })();
    if result.is_err() {
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
        if let Some(d) = created_dir {
            // Only removes it if empty, i.e. if nothing else was put there meanwhile.
            let _ = std::fs::remove_dir(d);
        }
    }
    result
}

/// Counts the graph's constants that hold data (for reports).
pub fn weight_bytes(g: &Graph) -> usize {
    g.values
        .iter()
        .filter_map(|v| match &v.def {
            ValueDef::Const(c) => c.data.as_ref().map(|t| t.bytes().len()),
            _ => None,
        })
        .sum()
}

/// Gives every graph input the exact shape of the tensor bound to it (binding symbolic dims, as
/// other runtimes do) and re-infers the graph, so passes see concrete shapes.
pub fn bind_shapes_from_inputs(g: &mut Graph, inputs: &[Tensor], model: &Path) -> Result<()> {
    let mut changed = false;
    for (&v, t) in g.inputs.clone().iter().zip(inputs) {
        let shape = kestrel_ir::shape_of(t.dims());
        let ty = &mut g.values[v.index()].ty;
        if ty.shape != shape {
            ty.shape = shape;
            changed = true;
        }
    }
    if changed {
        g.reinfer()
            .with_context(|| format!("{}: after binding the input shapes", model.display()))?;
    }
    Ok(())
}

/// The pass context of the driver: constant folding evaluates ops with the reference interpreter.
pub fn pass_context() -> kestrel_passes::PassContext {
    kestrel_passes::PassContext::with_evaluator(|op: &kestrel_ir::Op, inputs: &[&Tensor]| {
        Some(kestrel_backends::interp::eval_op(op, inputs).map_err(|e| e.to_string()))
    })
}

/// Deterministic inputs for benchmarking: pseudo-random floats in [0, 1) (integers and bools
/// zero). A leading symbolic dimension (a batch) becomes 1; any other unbound dimension is an
/// error that lists them.
pub fn synthetic_inputs(g: &Graph, model: &Path) -> Result<Vec<Tensor>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut out = Vec::new();
    for &v in &g.inputs {
        let value = g.value(v);
        let name = value.name.clone().unwrap_or_default();
        let mut dims = Vec::new();
        let mut unbound = Vec::new();
        for (axis, d) in value.ty.shape.iter().enumerate() {
            match d {
                Dim::Known(n) => dims.push(*n),
                _ if axis == 0 => dims.push(1),
                other => {
                    unbound.push(format!("axis {axis} ({other})"));
                    dims.push(1);
                }
            }
        }
        if !unbound.is_empty() {
            bail!(
                "{}: input {name:?} has unbound dimensions {}; give --input-shape {name}=...",
                model.display(),
                unbound.join(", ")
            );
        }
        let n: usize = dims.iter().product();
        let t = match value.ty.dtype {
            kestrel_ir::DType::F32 => Tensor::from_vec(dims, (0..n).map(|_| next()).collect()),
            dtype => Tensor::zeros(dtype, dims)
                .map_err(|e| anyhow!("{}: input {name:?}: {e}", model.display()))?,
        };
        out.push(t);
    }
    Ok(out)
}

/// Median, minimum and maximum of measured latencies, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyStats {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    /// Statistics of a non-empty sample (the median of an even count is the mean of the middle two).
    pub fn of(times: &[std::time::Duration]) -> LatencyStats {
        let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        LatencyStats {
            median_ms: median,
            min_ms: ms[0],
            max_ms: ms[n - 1],
        }
    }
}
