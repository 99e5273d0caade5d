//! The calling convention of Kestrel's generated code, shared by the JIT and by shared objects.
//!
//! The entry function of a compiled model has the C signature
//!
//! ```c
//! int32_t entry(const void *const *inputs, void *const *outputs, void *arena,
//!               kestrel_parallel_for parallel_for, void *pool);
//! ```
//!
//! - `inputs[i]` / `outputs[i]` point at the dense row-major data of graph input / output `i`;
//! - `arena` points at the model's arena (its size and alignment are part of the compiled
//!   model's description); generated code keeps every activation and scratch buffer there and
//!   allocates nothing;
//! - `parallel_for` is either null (every task then runs on the calling thread, in order) or a
//!   host function that runs `task(ctx, i)` once for every `i` in `0..count`, in any order and on
//!   any threads, and returns only when all of them have returned. `pool` is passed to it
//!   unchanged. Tasks of one call write disjoint memory, so no ordering between them is needed;
//!   the entry function never issues two calls at once.
//! - The result is 0 on success, or `k > 0`: node number `k` of the model's status table failed
//!   at run time (an index out of range, an integer division by zero). A task passed to
//!   `parallel_for` never fails; its return value is always 0 and may be ignored.

use std::ffi::c_void;

/// A task of a parallel loop: `task(ctx, index)`. Returns 0 (tasks cannot fail).
pub type TaskFn = unsafe extern "C" fn(ctx: *const c_void, index: u64) -> i32;

/// The host's parallel-for: runs `task(ctx, i)` for every `i < count` and returns when all have
/// returned. `pool` is the host's opaque context.
pub type ParallelForFn =
    unsafe extern "C" fn(pool: *mut c_void, task: TaskFn, ctx: *const c_void, count: u64);

/// The entry function of a compiled model (see the module documentation).
pub type EntryFn = unsafe extern "C" fn(
    inputs: *const *const u8,
    outputs: *const *mut u8,
    arena: *mut u8,
    parallel_for: Option<ParallelForFn>,
    pool: *mut c_void,
) -> i32;

/// Alignment in bytes the arena must have.
pub const ARENA_ALIGN: usize = 64;

// ---------------------------------------------------------------------------------------------
// Shared objects (`kestrel compile`): the exported symbols and the model descriptor.
// `docs/ABI.md` is the reference; `kestrel compile` writes the same definitions into the C header.
// ---------------------------------------------------------------------------------------------

use std::ffi::c_char;

/// Version of the shared-object ABI below. [`ModelDesc::abi_version`] of a loadable `.so`
/// equals it; any change to a layout or a signature increments it.
pub const ABI_VERSION: u32 = 1;

/// [`ModelDesc::magic`]: the bytes `KSTL` read as a little-endian `u32`.
pub const MODEL_MAGIC: u32 = u32::from_le_bytes(*b"KSTL");

/// Status of the run functions: the CPU lacks a feature the model was compiled for.
pub const ERR_CPU: i32 = -1;
/// Status of the run functions: the workspace is null or not aligned to
/// [`ModelDesc::workspace_align`].
pub const ERR_WORKSPACE: i32 = -2;

/// Element types of tensors, numbered as ONNX's `TensorProto.DataType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum DType {
    F32 = 1,
    U8 = 2,
    I8 = 3,
    U16 = 4,
    I16 = 5,
    I32 = 6,
    I64 = 7,
    Bool = 9,
    F16 = 10,
    F64 = 11,
    U32 = 12,
    U64 = 13,
    BF16 = 16,
}

impl DType {
    pub const ALL: [DType; 13] = [
        DType::F32,
        DType::U8,
        DType::I8,
        DType::U16,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::Bool,
        DType::F16,
        DType::F64,
        DType::U32,
        DType::U64,
        DType::BF16,
    ];

    /// The dtype of an ABI code.
    pub fn from_code(code: i32) -> Option<DType> {
        DType::ALL.into_iter().find(|d| *d as i32 == code)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 | DType::Bool => 1,
            DType::U16 | DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// The name Kestrel prints (`f32`, `u8`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::U16 => "u16",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
            DType::F16 => "f16",
            DType::F64 => "f64",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::BF16 => "bf16",
        }
    }

    /// The C header's name of the code (`KESTREL_DTYPE_F32`, ...).
    pub fn c_name(self) -> String {
        format!("KESTREL_DTYPE_{}", self.name().to_ascii_uppercase())
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One graph input or output (C: `kestrel_tensor_desc`, 32 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct TensorDesc {
    /// NUL-terminated UTF-8 name.
    pub name: *const c_char,
    /// A [`DType`] code.
    pub dtype: i32,
    pub rank: i32,
    /// `rank` dimensions.
    pub shape: *const i64,
    /// Bytes of the dense row-major tensor.
    pub size_bytes: u64,
}

/// The data symbol `{prefix}_model` (C: `kestrel_model_desc`, 88 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct ModelDesc {
    /// [`MODEL_MAGIC`].
    pub magic: u32,
    /// [`ABI_VERSION`] of the compiler that wrote the `.so`.
    pub abi_version: u32,
    /// Bytes of workspace a run needs (may be 0).
    pub workspace_size: u64,
    /// Alignment the workspace must have (a power of two, 64).
    pub workspace_align: u64,
    pub num_inputs: u32,
    pub num_outputs: u32,
    pub inputs: *const TensorDesc,
    pub outputs: *const TensorDesc,
    /// Most tasks one node is split into (`kestrel compile --tasks`): more threads than this
    /// never help.
    pub num_tasks: u32,
    /// Entries of `status_messages`.
    pub num_status: u32,
    /// `status_messages[k - 1]` describes a positive status `k` (the node and the reason).
    pub status_messages: *const *const c_char,
    /// Graph name, target triple, and CPU features (`+a,+b`) the code was compiled for.
    pub name: *const c_char,
    pub target: *const c_char,
    pub cpu_features: *const c_char,
}

/// `{prefix}_run(inputs, outputs, workspace)`: runs every task on the calling thread.
pub type RunFn = unsafe extern "C" fn(
    inputs: *const *const u8,
    outputs: *const *mut u8,
    workspace: *mut u8,
) -> i32;

/// `{prefix}_run_parallel(inputs, outputs, workspace, parallel_for, pool)`: the host's
/// parallel-for runs the tasks of split nodes (null: the calling thread runs them).
pub type RunParallelFn = EntryFn;

/// `{prefix}_check_cpu()`: 0, or [`ERR_CPU`] when the CPU lacks a feature the model needs.
pub type CheckCpuFn = unsafe extern "C" fn() -> i32;
