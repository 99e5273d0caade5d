//! The ONNX backend test suite (onnx 1.22.0 `backend/test/data`) as a permanent conformance check.
//!
//! `scripts/fetch-onnx-tests.sh` unpacks the data into `target/onnx-tests`. A case is a model plus
//! data sets of `input_*.pb` / `output_*.pb`, except `light/` models, which ship only expected
//! outputs: their inputs follow the onnx test runner's dummy-data convention
//! (`generate_dummy_data(random=False)`: every dim without a value is 1, and the data is
//! `arange(n).reshape(shape) / n` as f32).

use anyhow::{anyhow, bail, Context, Result};
use kestrel_ir::{DType, Dim, Graph, Tensor};
use regex::Regex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The default tolerances of the onnx test runner.
pub const DEFAULT_RTOL: f64 = 1e-3;
pub const DEFAULT_ATOL: f64 = 1e-7;

/// Where the fetch script puts the data.
pub fn data_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/onnx-tests")
}

/// Runs the fetch script when the data is not there yet.
pub fn ensure_data() -> Result<PathBuf> {
    let root = data_root();
    if !root.join(".complete").is_file() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-onnx-tests.sh");
        let status = std::process::Command::new("bash")
            .arg(&script)
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
    }
    Ok(root)
}

#[derive(Clone, Debug)]
pub enum Inputs {
    /// `test_data_set_*` folders with `.pb` inputs and outputs.
    DataSets(Vec<PathBuf>),
    /// Dummy inputs and the given expected outputs (`light/`).
    Dummy(Vec<PathBuf>),
}

#[derive(Clone, Debug)]
pub struct Case {
    /// `node/test_abs` style: suite folder and case name.
    pub name: String,
    pub model: PathBuf,
    pub inputs: Inputs,
}

/// Every case under `root`, sorted by name.
pub fn discover(root: &Path) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for suite in ["node", "simple", "pytorch-converted", "pytorch-operator"] {
        let dir = root.join(suite);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            let model = path.join("model.onnx");
            if !model.is_file() {
                continue;
            }
            let mut sets: Vec<PathBuf> = std::fs::read_dir(&path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
                })
                .collect();
            sets.sort();
            let name = format!("{suite}/{}", path.file_name().unwrap().to_string_lossy());
            cases.push(Case {
                name,
                model,
                inputs: Inputs::DataSets(sets),
            });
        }
    }
    if let Ok(entries) = std::fs::read_dir(root.join("light")) {
        for entry in entries {
            let path = entry?.path();
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            if let Some(stem) = file.strip_suffix(".onnx") {
                let mut outputs: Vec<PathBuf> = (0..)
                    .map(|i| root.join("light").join(format!("{stem}_output_{i}.pb")))
                    .take_while(|p| p.is_file())
                    .collect();
                outputs.sort();
                cases.push(Case {
                    name: format!("light/{stem}"),
                    model: path,
                    inputs: Inputs::Dummy(outputs),
                });
            }
        }
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// One allowlist line: `BACKEND PATTERN [atol=X] [rtol=Y]`, PATTERN an exact case name (with or
/// without its suite folder) or `/regex/`.
#[derive(Clone, Debug)]
pub struct AllowRule {
    pub backend: String,
    pub pattern: Pattern,
    pub atol: f64,
    pub rtol: f64,
    pub line: usize,
}

#[derive(Clone, Debug)]
pub enum Pattern {
    Exact(String),
    Regex(Regex),
}

impl AllowRule {
    pub fn matches(&self, backend: &str, case: &str) -> bool {
        if self.backend != backend {
            return false;
        }
        let short = case.rsplit('/').next().unwrap_or(case);
        match &self.pattern {
            Pattern::Exact(s) => s == case || s == short,
            Pattern::Regex(r) => r.is_match(case),
        }
    }
}

pub fn parse_allowlist(text: &str) -> Result<Vec<AllowRule>> {
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let backend = words.next().unwrap().to_string();
        let pat = words
            .next()
            .ok_or_else(|| anyhow!("allowlist line {}: no pattern", i + 1))?;
        let pattern = match pat.strip_prefix('/').and_then(|p| p.strip_suffix('/')) {
            Some(re) => {
                Pattern::Regex(Regex::new(re).with_context(|| format!("allowlist line {}", i + 1))?)
            }
            None => Pattern::Exact(pat.to_string()),
        };
        let (mut atol, mut rtol) = (DEFAULT_ATOL, DEFAULT_RTOL);
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| anyhow!("allowlist line {}: {w:?}", i + 1))?;
            let v: f64 = v
                .parse()
                .with_context(|| format!("allowlist line {}: {w:?}", i + 1))?;
            match k {
                "atol" => atol = v,
                "rtol" => rtol = v,
                _ => bail!("allowlist line {}: unknown option {k:?}", i + 1),
            }
        }
        rules.push(AllowRule {
            backend,
            pattern,
            atol,
            rtol,
            line: i + 1,
        });
    }
    Ok(rules)
}

/// The committed allowlist.
pub fn allowlist_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/allowlist.txt")
}

/// A backend under test: runs a graph on inputs.
pub type Backend = fn(&Graph, &[Tensor]) -> Result<Vec<Tensor>>;

pub fn interp_backend(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    Ok(kestrel_backends::interp::run(g, inputs)?)
}

/// The Cranelift JIT: binds the graph's input shapes from the tensors, compiles, runs.
/// A panic while compiling or running is reported as an error (it is a JIT bug, and one case
/// must not stop the suite).
///
/// The JIT compiles for static shapes, so graph inputs that only feed shape parameters (Resize
/// scales/sizes/roi, Reshape/Expand/Tile shapes, Slice/Pad/Split/Squeeze/Unsqueeze/reduction
/// operands, TopK's k) are specialised: they become constants holding the case's values.
pub fn jit_backend(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let (g, inputs) = specialise_shape_parameters(g, inputs)?;
    let inputs = &inputs[..];
    let mut g = g;
    for (&v, t) in g.inputs.clone().iter().zip(inputs) {
        g.values[v.index()].ty.shape = kestrel_ir::shape_of(t.dims());
    }
    g.reinfer()?;
    let name = g.name.clone();
    kestrel::driver::fold_for_codegen(&mut g, std::path::Path::new(&name))?;
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Vec<Tensor>> {
        let m = kestrel_backends::jit::compile(&g, &kestrel_backends::jit::JitOptions::default())?;
        Ok(m.run(inputs)?)
    }));
    match run {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(anyhow::anyhow!("JIT panicked: {msg}"))
        }
    }
}

/// Whether operand `i` of `op` is a shape parameter rather than data.
fn is_shape_parameter(op: &kestrel_ir::Op, i: usize) -> bool {
    use kestrel_ir::Op;
    match op {
        Op::Resize(_)
        | Op::Reshape { .. }
        | Op::Expand
        | Op::Tile
        | Op::Slice
        | Op::Split { .. }
        | Op::Squeeze
        | Op::Unsqueeze
        | Op::Reduce(_)
        | Op::TopK { .. } => i >= 1,
        Op::Pad { .. } => i == 1 || i == 3,
        Op::ConstantOfShape { .. } => i == 0,
        _ => false,
    }
}

/// Turns the graph inputs used only as shape parameters into constants holding `inputs`' values;
/// returns the new graph and the remaining inputs.
fn specialise_shape_parameters(g: &Graph, inputs: &[Tensor]) -> Result<(Graph, Vec<Tensor>)> {
    let mut g = g.clone();
    let mut rest = Vec::new();
    let mut pos = 0;
    for t in inputs {
        let Some(&v) = g.inputs.get(pos) else { break };
        let uses: Vec<(usize, usize)> = g
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(n, node)| {
                node.inputs
                    .iter()
                    .enumerate()
                    .filter(move |(_, &u)| u == v)
                    .map(move |(i, _)| (n, i))
            })
            .collect();
        let parameter = !uses.is_empty()
            && !g.is_output(v)
            && uses
                .iter()
                .all(|&(n, i)| is_shape_parameter(&g.nodes[n].op, i));
        if parameter {
            g.specialize_input(pos, t.clone())?;
        } else {
            rest.push(t.clone());
            pos += 1;
        }
    }
    Ok((g, rest))
}

pub fn backend_by_name(name: &str) -> Option<Backend> {
    match name {
        "interp" => Some(interp_backend),
        "jit" => Some(jit_backend),
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass,
    /// Import or type inference rejected the model.
    Import(String),
    /// The backend returned an error.
    Run(String),
    /// Outputs differ from the expected ones.
    Mismatch(String),
}

impl Outcome {
    pub fn passed(&self) -> bool {
        *self == Outcome::Pass
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Import(_) => "import",
            Outcome::Run(_) => "run",
            Outcome::Mismatch(_) => "mismatch",
        }
    }
    pub fn reason(&self) -> &str {
        match self {
            Outcome::Pass => "",
            Outcome::Import(s) | Outcome::Run(s) | Outcome::Mismatch(s) => s,
        }
    }
}

fn read_pb(path: &Path) -> Result<Tensor> {
    Ok(kestrel::tensor_io::read_tensor_file(path)?)
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.pb")))
        .take_while(|p| p.is_file())
        .collect()
}

/// The dummy input of the onnx runner for a graph input (f32 only, as the runner).
pub fn dummy_input(g: &Graph, input: kestrel_ir::ValueId) -> Result<Tensor> {
    let ty = g.ty(input);
    if ty.dtype != DType::F32 {
        bail!("dummy data is f32 only, input is {ty}");
    }
    let dims: Vec<usize> = ty
        .shape
        .iter()
        .map(|d| if let Dim::Known(n) = d { *n } else { 1 })
        .collect();
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|i| (i as f64 / n as f64) as f32).collect();
    Ok(Tensor::from_vec(dims, data))
}

/// Compares one output: same dtype and shape, values within `atol + rtol * |expected|`
/// (NaN matches NaN, integers and bools exactly).
pub fn compare(actual: &Tensor, expected: &Tensor, atol: f64, rtol: f64) -> Result<(), String> {
    if actual.dtype() != expected.dtype() {
        return Err(format!(
            "dtype {} instead of {}",
            actual.dtype(),
            expected.dtype()
        ));
    }
    if actual.dims() != expected.dims() {
        return Err(format!(
            "shape {:?} instead of {:?}",
            actual.dims(),
            expected.dims()
        ));
    }
    let exact = !actual.dtype().is_float();
    let mut worst: Option<(usize, f64, f64)> = None;
    for i in 0..actual.numel() {
        let (a, e) = if exact {
            (actual.get_i64(i) as f64, expected.get_i64(i) as f64)
        } else {
            (actual.get_f64(i), expected.get_f64(i))
        };
        let ok = if exact {
            actual.get_i64(i) == expected.get_i64(i)
        } else if e.is_nan() || a.is_nan() {
            e.is_nan() && a.is_nan()
        } else if e.is_infinite() || a.is_infinite() {
            a == e
        } else {
            (a - e).abs() <= atol + rtol * e.abs()
        };
        if !ok && worst.is_none_or(|(_, wa, we)| (a - e).abs() > (wa - we).abs()) {
            worst = Some((i, a, e));
        }
    }
    match worst {
        None => Ok(()),
        Some((i, a, e)) => Err(format!(
            "element {i}: {a} instead of {e} (atol {atol}, rtol {rtol})"
        )),
    }
}

/// Runs one case on a backend.
pub fn run_case(case: &Case, backend: Backend, atol: f64, rtol: f64) -> Outcome {
    let graph = match kestrel::onnx::load_model(&case.model) {
        Ok(m) => m.graph,
        Err(e) => return Outcome::Import(e.to_string()),
    };
    let sets: Vec<(Vec<Tensor>, Vec<Tensor>)> = match &case.inputs {
        Inputs::DataSets(dirs) => {
            let mut sets = Vec::new();
            for dir in dirs {
                let load = |prefix| {
                    numbered(dir, prefix)
                        .iter()
                        .map(|p| read_pb(p))
                        .collect::<Result<Vec<_>>>()
                };
                match (load("input"), load("output")) {
                    (Ok(i), Ok(o)) => sets.push((i, o)),
                    (Err(e), _) | (_, Err(e)) => {
                        return Outcome::Import(format!("test data: {}", kestrel::error_chain(&e)))
                    }
                }
            }
            sets
        }
        Inputs::Dummy(outputs) => {
            let inputs: Result<Vec<Tensor>> = graph
                .inputs
                .iter()
                .map(|&v| dummy_input(&graph, v))
                .collect();
            let expected: Result<Vec<Tensor>> = outputs.iter().map(|p| read_pb(p)).collect();
            match (inputs, expected) {
                (Ok(i), Ok(o)) => vec![(i, o)],
                (Err(e), _) | (_, Err(e)) => {
                    return Outcome::Import(format!("test data: {}", kestrel::error_chain(&e)))
                }
            }
        }
    };
    for (set, (inputs, expected)) in sets.iter().enumerate() {
        // Some cases feed fewer data files than graph inputs (optional trailing inputs).
        let outputs = match backend(&graph, inputs) {
            Ok(o) => o,
            Err(e) => return Outcome::Run(kestrel::error_chain(&e)),
        };
        if outputs.len() < expected.len() {
            return Outcome::Mismatch(format!(
                "{} outputs instead of {}",
                outputs.len(),
                expected.len()
            ));
        }
        for (k, (a, e)) in outputs.iter().zip(expected).enumerate() {
            if let Err(why) = compare(a, e, atol, rtol) {
                return Outcome::Mismatch(format!("data set {set}, output {k}: {why}"));
            }
        }
    }
    Outcome::Pass
}

/// The ONNX op types a model uses (for the per-op table); empty if the file does not decode.
pub fn op_types(model: &Path) -> Vec<String> {
    use kestrel::onnx::proto::ModelProto;
    use prost::Message;
    let Ok(bytes) = std::fs::read(model) else {
        return vec![];
    };
    let Ok(m) = ModelProto::decode(bytes.as_slice()) else {
        return vec![];
    };
    let mut ops: Vec<String> = m
        .graph
        .map(|g| g.node.into_iter().map(|n| n.op_type).collect())
        .unwrap_or_default();
    ops.sort();
    ops.dedup();
    ops
}

/// Pass/fail counts per op type.
pub fn per_op_table(results: &[(Case, Outcome)]) -> BTreeMap<String, (usize, usize)> {
    let mut table: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (case, outcome) in results {
        for op in op_types(&case.model) {
            let e = table.entry(op).or_default();
            if outcome.passed() {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
    table
}
