//! Loading and running shared objects written by `kestrel compile` (ABI: `docs/ABI.md`).

use crate::abi::{
    CheckCpuFn, DType, ModelDesc, RunFn, RunParallelFn, TensorDesc, ABI_VERSION, ERR_CPU,
    ERR_WORKSPACE, MODEL_MAGIC,
};
use crate::ThreadPool;
use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: cannot load the shared object: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("{path}: no symbol {symbol} (not a Kestrel model, or compiled with another --symbol-prefix)")]
    MissingSymbol { path: PathBuf, symbol: String },
    #[error("{path}: ABI version {found}, this runtime reads version {expected}; recompile the model with a matching Kestrel")]
    AbiVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{path}: malformed model descriptor: {reason}")]
    BadDescriptor { path: PathBuf, reason: String },
    #[error("{path}: this CPU lacks features the model was compiled for (it needs {features}); recompile with --cpu native or a smaller feature list")]
    Cpu { path: PathBuf, features: String },
    #[error("the model has {expected} {what}, got {actual}")]
    Count {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("{what} {name:?}: expected {expected}, got {actual}")]
    Mismatch {
        what: &'static str,
        name: String,
        expected: String,
        actual: String,
    },
    #[error("the workspace is null or misaligned")]
    Workspace,
    #[error("{message}")]
    Runtime { status: i32, message: String },
}

/// A graph input or output of a compiled model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Bytes of the dense row-major tensor.
    pub fn size_bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }
}

/// A tensor handed to [`Model::run`]: dtype, shape and the dense little-endian bytes.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

/// An output buffer for [`Model::run`].
#[derive(Debug)]
pub struct TensorMut<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: &'a mut [u8],
}

/// Most inputs or outputs a descriptor may declare (a sanity bound on untrusted data).
const MAX_IO: u32 = 4096;
/// Highest rank a descriptor may declare.
const MAX_RANK: i32 = 64;

/// A loaded `.so` model. Runs are serialised on the model's own workspace; use one `Model` per
/// thread (loading the same file again is cheap) to run several inferences at once.
pub struct Model {
    path: PathBuf,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    status: Vec<String>,
    name: String,
    target: String,
    cpu_features: String,
    num_tasks: usize,
    workspace_size: usize,
    workspace_align: usize,
    run: RunFn,
    run_parallel: RunParallelFn,
    workspace: Mutex<Vec<u128>>,
    // Keeps the code mapped; the function pointers above point into it. Dropped last.
    _lib: libloading::Library,
}

// The functions are plain code over caller-provided memory; the workspace is behind a mutex.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

/// Reads a NUL-terminated string of the descriptor (`what` names it in errors).
///
/// # Safety
/// `p` is null or points at a NUL-terminated string that lives as long as the library.
unsafe fn string(p: *const c_char, what: &str) -> Result<String, String> {
    if p.is_null() {
        return Err(format!("{what} is null"));
    }
    // SAFETY: the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(str::to_string)
        .map_err(|_| format!("{what} is not UTF-8"))
}

/// # Safety
/// `list` points at `n` descriptors inside the loaded library (checked non-null here).
unsafe fn tensors(list: *const TensorDesc, n: u32, what: &str) -> Result<Vec<TensorInfo>, String> {
    if n > MAX_IO {
        return Err(format!("{n} {what}s"));
    }
    if n > 0 && list.is_null() {
        return Err(format!("{what} list is null"));
    }
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        // SAFETY: i < n entries (the caller's contract).
        let d = unsafe { &*list.add(i) };
        // SAFETY: as above.
        let name = unsafe { string(d.name, &format!("{what} {i} name")) }?;
        let dtype = DType::from_code(d.dtype)
            .ok_or_else(|| format!("{what} {name:?}: unknown dtype code {}", d.dtype))?;
        if !(0..=MAX_RANK).contains(&d.rank) || (d.rank > 0 && d.shape.is_null()) {
            return Err(format!("{what} {name:?}: bad rank {}", d.rank));
        }
        let mut shape = Vec::with_capacity(d.rank as usize);
        let mut elems: u64 = 1;
        for j in 0..d.rank as usize {
            // SAFETY: `rank` dimensions (the caller's contract).
            let dim = unsafe { *d.shape.add(j) };
            let dim = u64::try_from(dim).map_err(|_| format!("{what} {name:?}: dim {dim}"))?;
            elems = elems
                .checked_mul(dim)
                .ok_or_else(|| format!("{what} {name:?}: size overflows"))?;
            shape.push(usize::try_from(dim).map_err(|_| format!("{what} {name:?}: dim {dim}"))?);
        }
        let bytes = elems.checked_mul(dtype.size() as u64);
        if bytes != Some(d.size_bytes) {
            return Err(format!(
                "{what} {name:?}: size_bytes {} does not match {dtype}{shape:?}",
                d.size_bytes
            ));
        }
        out.push(TensorInfo { name, dtype, shape });
    }
    Ok(out)
}

impl Model {
    /// Loads a model compiled with the default symbol prefix (`kestrel`).
    pub fn load(path: impl AsRef<Path>) -> Result<Model, ModelError> {
        Model::load_with_prefix(path, "kestrel")
    }

    /// Loads a model compiled with `--symbol-prefix prefix`: maps the `.so`, checks its
    /// descriptor (magic, ABI version, well-formed tensors) and that this CPU can run it.
    pub fn load_with_prefix(path: impl AsRef<Path>, prefix: &str) -> Result<Model, ModelError> {
        let path = path.as_ref();
        // dlopen searches the library path for names without a slash: make it a path.
        let abs = std::path::absolute(path).map_err(|e| ModelError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let err_path = || path.to_path_buf();
        // SAFETY: a Kestrel shared object has no initialisers and imports nothing; loading a
        // file that is not one runs its initialisers, which is the caller's decision to make.
        let lib = unsafe { libloading::Library::new(&abs) }.map_err(|e| ModelError::Load {
            path: err_path(),
            reason: e.to_string(),
        })?;
        let sym = |name: &str| format!("{prefix}_{name}");
        let missing = |symbol: String| ModelError::MissingSymbol {
            path: err_path(),
            symbol,
        };
        // SAFETY: the symbols of a Kestrel model have these types (docs/ABI.md); a data
        // symbol's "value" is its address.
        let (desc, run, run_parallel, check_cpu) = unsafe {
            let desc: *const ModelDesc = *lib
                .get::<*const ModelDesc>(sym("model").as_bytes())
                .map_err(|_| missing(sym("model")))?;
            let run: RunFn = *lib
                .get::<RunFn>(sym("run").as_bytes())
                .map_err(|_| missing(sym("run")))?;
            let run_parallel: RunParallelFn = *lib
                .get::<RunParallelFn>(sym("run_parallel").as_bytes())
                .map_err(|_| missing(sym("run_parallel")))?;
            let check_cpu: CheckCpuFn = *lib
                .get::<CheckCpuFn>(sym("check_cpu").as_bytes())
                .map_err(|_| missing(sym("check_cpu")))?;
            (desc, run, run_parallel, check_cpu)
        };
        let bad = |reason: String| ModelError::BadDescriptor {
            path: err_path(),
            reason,
        };
        if desc.is_null() {
            return Err(bad("null descriptor".into()));
        }
        // SAFETY: `{prefix}_model` is a ModelDesc; its first two words are read before trusting
        // the rest.
        let d = unsafe { &*desc };
        if d.magic != MODEL_MAGIC {
            return Err(bad(format!("magic 0x{:08x}", d.magic)));
        }
        if d.abi_version != ABI_VERSION {
            return Err(ModelError::AbiVersion {
                path: err_path(),
                found: d.abi_version,
                expected: ABI_VERSION,
            });
        }
        // SAFETY: a descriptor of this ABI version: pointers into the library (checked for
        // null, counts bounded).
        let parsed = unsafe {
            (|| -> Result<_, String> {
                let inputs = tensors(d.inputs, d.num_inputs, "input")?;
                let outputs = tensors(d.outputs, d.num_outputs, "output")?;
                if d.num_status > 1 << 20 || (d.num_status > 0 && d.status_messages.is_null()) {
                    return Err("bad status table".into());
                }
                let mut status = Vec::new();
                for k in 0..d.num_status as usize {
                    status.push(string(*d.status_messages.add(k), "status message")?);
                }
                let name = string(d.name, "name")?;
                let target = string(d.target, "target")?;
                let cpu = string(d.cpu_features, "cpu features")?;
                Ok((inputs, outputs, status, name, target, cpu))
            })()
        }
        .map_err(bad)?;
        let (inputs, outputs, status, name, target, cpu_features) = parsed;
        let align = d.workspace_align;
        if !align.is_power_of_two() || align > 4096 {
            return Err(bad(format!("workspace alignment {align}")));
        }
        let workspace_size = usize::try_from(d.workspace_size)
            .ok()
            .filter(|&s| s < isize::MAX as usize / 2)
            .ok_or_else(|| bad(format!("workspace size {}", d.workspace_size)))?;
        // SAFETY: takes no arguments, reads CPUID and a word of the library.
        if unsafe { check_cpu() } != 0 {
            return Err(ModelError::Cpu {
                path: err_path(),
                features: cpu_features,
            });
        }
        let workspace = vec![0u128; (workspace_size + align as usize).div_ceil(16)];
        Ok(Model {
            path: path.to_path_buf(),
            inputs,
            outputs,
            status,
            name,
            target,
            cpu_features,
            num_tasks: d.num_tasks.max(1) as usize,
            workspace_size,
            workspace_align: align as usize,
            run,
            run_parallel,
            workspace: Mutex::new(workspace),
            _lib: lib,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }
    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The target triple the code was compiled for.
    pub fn target(&self) -> &str {
        &self.target
    }
    /// The CPU features (`+a,+b`) the code was compiled for.
    pub fn cpu_features(&self) -> &str {
        &self.cpu_features
    }
    /// Most tasks one node is split into (`kestrel compile --tasks`).
    pub fn num_tasks(&self) -> usize {
        self.num_tasks
    }
    /// Bytes of workspace one run uses.
    pub fn workspace_size(&self) -> usize {
        self.workspace_size
    }

    /// Runs the model on the calling thread. Inputs and outputs are in graph order and must
    /// match [`Model::inputs`] / [`Model::outputs`] exactly (dtype, shape, byte length).
    pub fn run(&self, inputs: &[TensorRef], outputs: &mut [TensorMut]) -> Result<(), ModelError> {
        self.run_on(None, inputs, outputs)
    }

    /// Like [`Model::run`], with the tasks of split nodes run by `pool`'s workers.
    pub fn run_parallel(
        &self,
        pool: &ThreadPool,
        inputs: &[TensorRef],
        outputs: &mut [TensorMut],
    ) -> Result<(), ModelError> {
        self.run_on(Some(pool), inputs, outputs)
    }

    fn run_on(
        &self,
        pool: Option<&ThreadPool>,
        inputs: &[TensorRef],
        outputs: &mut [TensorMut],
    ) -> Result<(), ModelError> {
        fn check(
            what: &'static str,
            info: &TensorInfo,
            dtype: DType,
            shape: &[usize],
            len: usize,
        ) -> Result<(), ModelError> {
            let mismatch = |expected: String, actual: String| ModelError::Mismatch {
                what,
                name: info.name.clone(),
                expected,
                actual,
            };
            if dtype != info.dtype || shape != info.shape.as_slice() {
                return Err(mismatch(
                    format!("{}{:?}", info.dtype, info.shape),
                    format!("{dtype}{shape:?}"),
                ));
            }
            if len != info.size_bytes() {
                return Err(mismatch(
                    format!("{} bytes", info.size_bytes()),
                    format!("{len} bytes"),
                ));
            }
            Ok(())
        }
        if inputs.len() != self.inputs.len() {
            return Err(ModelError::Count {
                what: "inputs",
                expected: self.inputs.len(),
                actual: inputs.len(),
            });
        }
        if outputs.len() != self.outputs.len() {
            return Err(ModelError::Count {
                what: "outputs",
                expected: self.outputs.len(),
                actual: outputs.len(),
            });
        }
        for (info, t) in self.inputs.iter().zip(inputs) {
            check("input", info, t.dtype, t.shape, t.data.len())?;
        }
        for (info, t) in self.outputs.iter().zip(outputs.iter()) {
            check("output", info, t.dtype, t.shape, t.data.len())?;
        }
        let in_ptrs: Vec<*const u8> = inputs.iter().map(|t| t.data.as_ptr()).collect();
        let out_ptrs: Vec<*mut u8> = outputs.iter_mut().map(|t| t.data.as_mut_ptr()).collect();
        let mut ws = self.workspace.lock().unwrap_or_else(|e| e.into_inner());
        let base = ws.as_mut_ptr() as *mut u8;
        let pad = base.align_offset(self.workspace_align);
        // SAFETY: the buffer holds workspace_size + align bytes, so base + pad .. + size fits.
        let base = unsafe { base.add(pad) };
        // SAFETY: buffers were checked against the descriptor; the workspace is exclusively
        // ours (mutex) and large and aligned enough; the pool outlives the call.
        let status = unsafe {
            match pool {
                None => (self.run)(in_ptrs.as_ptr(), out_ptrs.as_ptr(), base),
                Some(p) => (self.run_parallel)(
                    in_ptrs.as_ptr(),
                    out_ptrs.as_ptr(),
                    base,
                    Some(p.parallel_for()),
                    p.context(),
                ),
            }
        };
        drop(ws);
        match status {
            0 => Ok(()),
            ERR_CPU => Err(ModelError::Cpu {
                path: self.path.clone(),
                features: self.cpu_features.clone(),
            }),
            ERR_WORKSPACE => Err(ModelError::Workspace),
            k => Err(ModelError::Runtime {
                status: k,
                message: usize::try_from(k - 1)
                    .ok()
                    .and_then(|i| self.status.get(i))
                    .cloned()
                    .unwrap_or_else(|| format!("the model failed with status {k}")),
            }),
        }
    }

    /// Runs the model and returns freshly allocated output bytes, in graph order.
    pub fn run_to_vec(
        &self,
        pool: Option<&ThreadPool>,
        inputs: &[TensorRef],
    ) -> Result<Vec<Vec<u8>>, ModelError> {
        let mut bufs: Vec<Vec<u8>> = self
            .outputs
            .iter()
            .map(|o| vec![0u8; o.size_bytes()])
            .collect();
        {
            let mut outs: Vec<TensorMut> = self
                .outputs
                .iter()
                .zip(bufs.iter_mut())
                .map(|(o, b)| TensorMut {
                    dtype: o.dtype,
                    shape: &o.shape,
                    data: b.as_mut_slice(),
                })
                .collect();
            self.run_on(pool, inputs, &mut outs)?;
        }
        Ok(bufs)
    }
}
