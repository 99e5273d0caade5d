//! Compiling a graph for the host in memory ([`compile`]) and running it ([`JitModel`]).

use super::checks::{check_known_dims, check_sizes};
use super::error::JitError;
use super::isa::IsaFlags;
use super::lower;
use super::options::JitOptions;
use super::plan::MemoryPlan;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use kestrel_ir::{DType, Graph, Tensor};
use kestrel_runtime::abi::EntryFn;
use kestrel_runtime::ThreadPool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A compiled graph, ready to run.
pub struct JitModel {
    // Keeps the code and data alive; `entry` points into it.
    _module: JITModule,
    entry: EntryFn,
    /// Workers for split nodes (`JitOptions::threads > 1`).
    pool: Option<ThreadPool>,
    arena: Mutex<Vec<u128>>,
    inputs: Vec<(String, DType, Vec<usize>)>,
    outputs: Vec<(String, DType, Vec<usize>)>,
    /// Node description of each status code the entry function may return (index = code - 1).
    status_nodes: Vec<(String, &'static str)>,
    plan: MemoryPlan,
    compile_time: Duration,
    code_bytes: usize,
}

// The entry function is plain code; the arena is guarded by the mutex.
unsafe impl Send for JitModel {}
unsafe impl Sync for JitModel {}

/// Builds the native ISA for the host, with the flags kernels rely on.
pub fn host_isa() -> Result<std::sync::Arc<dyn cranelift_codegen::isa::TargetIsa>, JitError> {
    let host_isa_error = |reason: String| JitError::Codegen {
        context: " (host ISA)".into(),
        reason,
    };
    let mut fb = settings::builder();
    // Kernels are hand-scheduled: opt_level none keeps emission order (docs/CRANELIFT.md).
    fb.set("opt_level", "none")
        .map_err(|e| host_isa_error(e.to_string()))?;
    fb.set("enable_verifier", "false")
        .map_err(|e| host_isa_error(e.to_string()))?;
    fb.set("is_pic", "false")
        .map_err(|e| host_isa_error(e.to_string()))?;
    let isa_builder = cranelift_native::builder().map_err(|e| host_isa_error(e.to_string()))?;
    isa_builder
        .finish(settings::Flags::new(fb))
        .map_err(|e| host_isa_error(e.to_string()))
}

/// Compiles `g` for the host: `g` verifies, every dimension is known and it is folded for code
/// generation (see the module documentation of `super`).
pub fn compile(g: &Graph, opts: &JitOptions) -> Result<JitModel, JitError> {
    let start = Instant::now();
    kestrel_ir::verify(g).map_err(|errors| JitError::InvalidGraph {
        reason: errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    check_known_dims(g)?;
    check_sizes(g)?;
    let isa = host_isa()?;
    let flags = IsaFlags::from_isa(&*isa);
    let builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    let mut module = JITModule::new(builder);
    let lowered = lower::lower(&mut module, g, &flags, "kestrel", opts)?;
    module
        .finalize_definitions()
        .map_err(|e| JitError::Codegen {
            context: " (finalize)".into(),
            reason: e.to_string(),
        })?;
    super::perf_map::write_if_requested(&module, &lowered.symbols);
    let ptr = module.get_finalized_function(lowered.entry);
    // SAFETY: the entry function was declared with exactly this signature in `lower`.
    let entry: EntryFn = unsafe { std::mem::transmute(ptr) };
    let io = |v: kestrel_ir::ValueId, name: String| {
        let ty = g.ty(v);
        (name, ty.dtype, ty.dims().unwrap_or_default())
    };
    let inputs = g
        .inputs
        .iter()
        .enumerate()
        .map(|(i, &v)| io(v, g.value(v).name.clone().unwrap_or(format!("#{i}"))))
        .collect();
    let outputs = g
        .outputs
        .iter()
        .map(|o| io(o.value, o.name.clone()))
        .collect();
    let limit = crate::interp::tensor_byte_limit();
    if lowered.plan.size as u128 > limit {
        return Err(JitError::TooLarge {
            what: "the activation arena".into(),
            bytes: lowered.plan.size as u128,
            limit,
        });
    }
    let arena = vec![0u128; lowered.plan.size.div_ceil(16) + 4];
    let pool = if opts.threads > 1 {
        Some(
            ThreadPool::new(opts.threads).map_err(|e| JitError::Codegen {
                context: " (thread pool)".into(),
                reason: e.to_string(),
            })?,
        )
    } else {
        None
    };
    Ok(JitModel {
        _module: module,
        entry,
        pool,
        arena: Mutex::new(arena),
        inputs,
        outputs,
        status_nodes: lowered.status_nodes,
        plan: lowered.plan,
        compile_time: start.elapsed(),
        code_bytes: lowered.code_bytes,
    })
}

impl JitModel {
    /// Runs the model on `inputs` (in graph input order; dtypes and shapes must match exactly).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, JitError> {
        self.run_tensors(inputs, true)
    }

    /// Like [`JitModel::run`], but passes a null parallel-for, so split nodes run their tasks in
    /// order on the calling thread (what a host without threads gets).
    pub fn run_serial(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, JitError> {
        self.run_tensors(inputs, false)
    }

    fn run_tensors(&self, inputs: &[Tensor], use_pool: bool) -> Result<Vec<Tensor>, JitError> {
        if inputs.len() != self.inputs.len() {
            return Err(JitError::InputCount {
                expected: self.inputs.len(),
                actual: inputs.len(),
            });
        }
        for ((name, dt, dims), t) in self.inputs.iter().zip(inputs) {
            if t.dtype() != *dt || t.dims() != dims.as_slice() {
                return Err(JitError::InputType {
                    input: name.clone(),
                    expected: format!("{dt}{dims:?}"),
                    actual: format!("{}{:?}", t.dtype(), t.dims()),
                });
            }
        }
        let ins: Vec<&[u8]> = inputs.iter().map(|t| &t.bytes()[..]).collect();
        let mut bufs: Vec<Vec<u8>> = self
            .outputs
            .iter()
            .map(|(_, dt, dims)| vec![0u8; dt.size() * dims.iter().product::<usize>()])
            .collect();
        {
            let mut outs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
            self.run_raw(&ins, &mut outs, use_pool)?;
        }
        self.outputs
            .iter()
            .zip(bufs)
            .map(|((_, dt, dims), b)| {
                Tensor::from_bytes(*dt, dims.clone(), b.into()).map_err(|e| JitError::Runtime {
                    node: "output".into(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// Runs the model on raw little-endian input bytes, writing raw output bytes. Buffer sizes
    /// must match the graph's types exactly; allocates nothing.
    pub fn run_into(&self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<(), JitError> {
        self.run_raw(inputs, outputs, true)
    }

    fn run_raw(
        &self,
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
        use_pool: bool,
    ) -> Result<(), JitError> {
        if inputs.len() != self.inputs.len() {
            return Err(JitError::InputCount {
                expected: self.inputs.len(),
                actual: inputs.len(),
            });
        }
        if outputs.len() != self.outputs.len() {
            return Err(JitError::OutputCount {
                expected: self.outputs.len(),
                actual: outputs.len(),
            });
        }
        for ((name, dt, dims), b) in self.inputs.iter().zip(inputs) {
            let need = dt.size() * dims.iter().product::<usize>();
            if b.len() != need {
                return Err(JitError::InputType {
                    input: name.clone(),
                    expected: format!("{need} bytes ({dt}{dims:?})"),
                    actual: format!("{} bytes", b.len()),
                });
            }
        }
        for ((name, dt, dims), b) in self.outputs.iter().zip(outputs.iter()) {
            let need = dt.size() * dims.iter().product::<usize>();
            if b.len() != need {
                return Err(JitError::OutputSize {
                    output: name.clone(),
                    expected: need,
                    actual: b.len(),
                });
            }
        }
        let in_ptrs: Vec<*const u8> = inputs.iter().map(|b| b.as_ptr()).collect();
        let mut out_ptrs: Vec<*mut u8> = outputs.iter_mut().map(|b| b.as_mut_ptr()).collect();
        let mut arena = self.arena.lock().unwrap_or_else(|e| e.into_inner());
        // Align the arena base to 64 bytes (the planner's alignment).
        let base = arena.as_mut_ptr() as *mut u8;
        let pad = base.align_offset(64);
        // SAFETY: the arena holds `plan.size + 64` bytes, so base + pad .. + size is in bounds.
        let base = unsafe { base.add(pad) };
        // SAFETY: pointers and sizes were checked against the graph's types above; the entry
        // function only accesses the given buffers and the arena within the planned size.
        let (par_for, pool) = match self.pool.as_ref().filter(|_| use_pool) {
            Some(p) => (Some(p.parallel_for()), p.context()),
            None => (None, std::ptr::null_mut()),
        };
        // SAFETY: as above; the pool outlives the call and its tasks (`self` is borrowed).
        let status =
            unsafe { (self.entry)(in_ptrs.as_ptr(), out_ptrs.as_mut_ptr(), base, par_for, pool) };
        drop(arena);
        if status != 0 {
            let (node, reason) = self
                .status_nodes
                .get((status - 1) as usize)
                .cloned()
                .unwrap_or_else(|| (format!("status {status}"), "failed"));
            return Err(JitError::Runtime {
                node,
                reason: reason.into(),
            });
        }
        Ok(())
    }

    /// Size of the planned arena in bytes.
    pub fn arena_bytes(&self) -> usize {
        self.plan.size
    }

    /// Largest total of simultaneously live tensors plus the largest scratch of one kernel.
    pub fn arena_lower_bound(&self) -> usize {
        self.plan.lower_bound
    }

    /// Wall time of [`compile`].
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Bytes of machine code generated.
    pub fn code_bytes(&self) -> usize {
        self.code_bytes
    }
}
