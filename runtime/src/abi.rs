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
