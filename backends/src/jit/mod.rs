//! The Cranelift JIT backend: native code for whole graphs.
//!
//! [`compile`] lowers a graph whose dimensions are all known into one Cranelift module (see
//! [`lower::lower`], which is generic over `cranelift_module::Module` so the ahead-of-time path
//! shares it) and finalises it in memory. [`JitModel::run`] then executes the generated entry
//! function on caller-provided inputs, with every intermediate tensor in one preallocated arena.
//!
//! Contracts:
//! - every op is either compiled to native code or evaluated at compile time (nodes whose
//!   inputs are all constants, and `Shape`/`Size`, whose results depend only on types); an op the
//!   JIT cannot compile is a [`JitError::Unsupported`] naming the node, never a hidden fallback;
//! - the generated code calls nothing outside its own module (no libm, no Rust helpers, no
//!   Cranelift libcalls): instructions are chosen from [`isa::IsaFlags`];
//! - running allocates nothing but the returned tensors ([`JitModel::run_into`] allocates nothing).

pub mod context;
pub mod emit;
pub mod isa;
pub mod kernels;
pub mod lower;
pub mod ops;
pub mod peak;
pub mod plan;

use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use kestrel_ir::{DType, Dim, Graph, Tensor};
use kestrel_runtime::abi::EntryFn;
use kestrel_runtime::ThreadPool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use isa::IsaFlags;
pub use lower::{compile_time_values, is_folded, lower, Lowered};
pub use plan::MemoryPlan;

/// Options of [`compile`].
#[derive(Clone, Debug)]
pub struct JitOptions {
    /// Worker threads for GEMM/convolution work (1 = run on the calling thread). A node is split
    /// into at most this many parallel tasks.
    pub threads: usize,
    /// Fewest multiply-adds worth a task of their own: smaller nodes are not split (a hand-off to
    /// a worker costs a few microseconds). Tests set 1 to split every node that can be split.
    pub min_task_macs: usize,
    /// Byte budget of one im2col block of a convolution (the im2col matrix is built and consumed
    /// a block of output rows at a time, so it stays in L2). Tests set it small to exercise the
    /// blocking.
    pub im2col_block_bytes: usize,
}

impl Default for JitOptions {
    fn default() -> Self {
        JitOptions {
            threads: 1,
            min_task_macs: 1 << 19,
            im2col_block_bytes: 512 * 1024,
        }
    }
}

impl JitOptions {
    /// The default options with `threads` workers.
    pub fn with_threads(threads: usize) -> JitOptions {
        JitOptions {
            threads,
            ..JitOptions::default()
        }
    }
}

/// Why a graph could not be compiled or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JitError {
    /// A node the JIT cannot compile (op, dtype or attribute combination).
    #[error("{node}: the JIT does not support {what}")]
    Unsupported { node: String, what: String },
    /// Dimensions that are not known at compile time (bind them from the inputs first).
    #[error("the JIT needs every dimension known; unbound: {dims}")]
    UnboundDims { dims: String },
    /// A constant without data (a dump with elided weights).
    #[error("constant \"{name}\" has no data (elided weights): the graph cannot be compiled")]
    ElidedConstant { name: String },
    /// Evaluating a node at compile time failed.
    #[error("{node}: evaluating at compile time: {reason}")]
    Fold { node: String, reason: String },
    /// Cranelift rejected the generated code (a bug in the lowering).
    #[error("code generation failed{context}: {reason}")]
    Codegen { context: String, reason: String },
    #[error("graph expects {expected} inputs, got {actual}")]
    InputCount { expected: usize, actual: usize },
    #[error("input \"{input}\": expected {expected}, got {actual}")]
    InputType {
        input: String,
        expected: String,
        actual: String,
    },
    #[error("graph has {expected} outputs, got {actual} output buffers")]
    OutputCount { expected: usize, actual: usize },
    #[error("output \"{output}\": buffer has {actual} bytes, needs {expected}")]
    OutputSize {
        output: String,
        expected: usize,
        actual: usize,
    },
    /// The generated code reported an error (for example a runtime index out of range).
    #[error("{node}: {reason}")]
    Runtime { node: String, reason: String },
    /// The graph does not verify (the JIT compiles only well-formed graphs).
    #[error("the graph is malformed: {reason}")]
    InvalidGraph { reason: String },
    /// A tensor or the activation arena would need more memory than the limit allows.
    #[error("{what} would need {bytes} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: String,
        bytes: u128,
        limit: u128,
    },
}

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
    let cg = |reason: String| JitError::Codegen {
        context: " (host ISA)".into(),
        reason,
    };
    let mut fb = settings::builder();
    // Kernels are hand-scheduled: opt_level none keeps emission order (CRANELIFT.md).
    fb.set("opt_level", "none").map_err(|e| cg(e.to_string()))?;
    fb.set("enable_verifier", "false")
        .map_err(|e| cg(e.to_string()))?;
    fb.set("is_pic", "false").map_err(|e| cg(e.to_string()))?;
    let isa_builder = cranelift_native::builder().map_err(|e| cg(e.to_string()))?;
    isa_builder
        .finish(settings::Flags::new(fb))
        .map_err(|e| cg(e.to_string()))
}

/// Compiles `g` (every dimension known) for the host.
pub fn compile(g: &Graph, opts: &JitOptions) -> Result<JitModel, JitError> {
    let start = Instant::now();
    kestrel_ir::verify(g).map_err(|errors| JitError::InvalidGraph {
        reason: errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    let folded;
    let g = if check_known_dims(g).is_err() {
        folded = fold_shapes(g)?;
        &folded
    } else {
        g
    };
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

/// Rebuilds `g` with every node whose inputs are all constant (and every `Shape`/`Size`)
/// evaluated into a constant, re-inferring types as it goes, so that shapes computed by shape
/// arithmetic (`Shape` → `Concat` → `Reshape`) become known.
pub fn fold_shapes(g: &Graph) -> Result<Graph, JitError> {
    use kestrel_ir::{Op, ValueDef, ValueId};
    let mut ng = Graph::new(g.name.clone());
    let mut map: Vec<Option<ValueId>> = vec![None; g.values.len()];
    for &v in &g.inputs {
        let val = g.value(v);
        map[v.index()] = Some(ng.add_input(val.name.clone().unwrap_or_default(), val.ty.clone()));
    }
    let get = |ng: &mut Graph, map: &mut Vec<Option<ValueId>>, v: ValueId| -> ValueId {
        if let Some(n) = map[v.index()] {
            return n;
        }
        let val = g.value(v);
        let n = match &val.def {
            ValueDef::Const(c) => match &c.data {
                Some(t) => ng.add_const(c.name.clone(), t.clone()),
                None => ng.add_elided_const(c.name.clone(), val.ty.clone()),
            },
            _ => unreachable!("values are defined before use (graph invariant)"),
        };
        map[v.index()] = Some(n);
        n
    };
    for (i, node) in g.nodes.iter().enumerate() {
        let ins: Vec<ValueId> = node
            .inputs
            .iter()
            .map(|&v| get(&mut ng, &mut map, v))
            .collect();
        let shape_only =
            matches!(node.op, Op::Shape { .. } | Op::Size) && ng.ty(ins[0]).dims().is_some();
        let all_const = ins.iter().all(|&v| ng.const_data(v).is_some());
        let small = node
            .outputs
            .iter()
            .all(|&v| g.ty(v).numel().is_some_and(|n| n <= 1 << 16));
        if shape_only || (all_const && small) {
            let node_name = || g.describe_node(kestrel_ir::NodeId(i as u32));
            let outs = if shape_only {
                let dims = ng.ty(ins[0]).dims().unwrap_or_default();
                vec![shape_query(&node.op, &dims)]
            } else {
                let args: Vec<Tensor> = ins
                    .iter()
                    .map(|&v| {
                        ng.const_data(v)
                            .cloned()
                            .unwrap_or_else(|| Tensor::scalar(0u8))
                    })
                    .collect();
                let refs: Vec<&Tensor> = args.iter().collect();
                crate::interp::eval_op(&node.op, &refs).map_err(|e| JitError::Fold {
                    node: node_name(),
                    reason: e.to_string(),
                })?
            };
            for (j, (&v, t)) in node.outputs.iter().zip(outs).enumerate() {
                let name = g
                    .value(v)
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("folded_{i}_{j}"));
                map[v.index()] = Some(ng.add_const(name, t));
            }
            continue;
        }
        let outs = ng
            .add_node(node.op.clone(), &ins, node.name.clone())
            .map_err(|e| JitError::Fold {
                node: g.describe_node(kestrel_ir::NodeId(i as u32)),
                reason: e.to_string(),
            })?;
        for (&v, n) in node.outputs.iter().zip(outs) {
            ng.values[n.index()].name = g.value(v).name.clone();
            map[v.index()] = Some(n);
        }
    }
    for o in &g.outputs {
        let v = get(&mut ng, &mut map, o.value);
        ng.add_output(o.name.clone(), v);
    }
    Ok(ng)
}

/// The value of `Shape`/`Size` of a tensor with these (known) dims, computed from the dims alone
/// (the tensor itself may be huge). `Shape`'s start/end clamp as in ONNX-15.
fn shape_query(op: &kestrel_ir::Op, dims: &[usize]) -> Tensor {
    match op {
        kestrel_ir::Op::Shape { start, end } => {
            let rank = dims.len() as i64;
            let clamp = |x: i64| if x < 0 { x + rank } else { x }.clamp(0, rank) as usize;
            let (s, e) = (clamp(*start), clamp(end.unwrap_or(rank)));
            let picked: Vec<i64> = dims[s..e.max(s)].iter().map(|&d| d as i64).collect();
            Tensor::from_vec(vec![picked.len()], picked)
        }
        _ => Tensor::scalar(dims.iter().map(|&d| d as i64).product::<i64>()),
    }
}

/// No value may need more bytes than the interpreter's limit (checked before any allocation).
pub fn check_sizes(g: &Graph) -> Result<(), JitError> {
    let limit = crate::interp::tensor_byte_limit();
    for (i, v) in g.values.iter().enumerate() {
        let Some(dims) = v.ty.dims() else { continue };
        let bytes = dims.iter().fold(v.ty.dtype.size() as u128, |acc, &d| {
            acc.saturating_mul(d as u128)
        });
        if bytes > limit {
            let what = match &v.def {
                kestrel_ir::ValueDef::Node { node, .. } => {
                    format!("{}: its output {}", g.describe_node(*node), v.ty)
                }
                _ => format!(
                    "value {} ({})",
                    v.name.clone().unwrap_or(format!("%{i}")),
                    v.ty
                ),
            };
            return Err(JitError::TooLarge { what, bytes, limit });
        }
    }
    Ok(())
}

/// Every value's dimensions must be known.
pub fn check_known_dims(g: &Graph) -> Result<(), JitError> {
    let mut missing: Vec<String> = Vec::new();
    for (i, v) in g.values.iter().enumerate() {
        for d in &v.ty.shape {
            let s = match d {
                Dim::Known(_) => continue,
                Dim::Sym(s) => s.to_string(),
                Dim::Unknown => match &v.def {
                    // Name the node whose output shape depends on run-time data.
                    kestrel_ir::ValueDef::Node { node, .. } => {
                        format!("? in the output of {} ({})", g.describe_node(*node), v.ty)
                    }
                    _ => format!(
                        "? in {} ({})",
                        v.name.clone().unwrap_or(format!("%{i}")),
                        v.ty
                    ),
                },
            };
            if !missing.contains(&s) {
                missing.push(s);
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(JitError::UnboundDims {
            dims: missing.join(", "),
        })
    }
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
        const MAX_IO: usize = 64;
        if inputs.len() > MAX_IO || outputs.len() > MAX_IO {
            return Err(JitError::InputCount {
                expected: MAX_IO,
                actual: inputs.len().max(outputs.len()),
            });
        }
        let mut in_ptrs = [std::ptr::null::<u8>(); MAX_IO];
        for (p, b) in in_ptrs.iter_mut().zip(inputs) {
            *p = b.as_ptr();
        }
        let mut out_ptrs = [std::ptr::null_mut::<u8>(); MAX_IO];
        for (p, b) in out_ptrs.iter_mut().zip(outputs.iter_mut()) {
            *p = b.as_mut_ptr();
        }
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
            unsafe { (self.entry)(in_ptrs.as_ptr(), out_ptrs.as_ptr(), base, par_for, pool) };
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
