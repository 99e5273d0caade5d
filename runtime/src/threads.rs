//! A thread pool that implements the parallel-for callback of [`crate::abi`].

use crate::abi::{ParallelForFn, TaskFn};
use rayon::prelude::*;
use std::ffi::c_void;

/// Why a pool could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot start {threads} worker threads: {reason}")]
pub struct ThreadPoolError {
    pub threads: usize,
    pub reason: String,
}

/// Worker threads that run the tasks of generated code. Pass [`ThreadPool::parallel_for`] and
/// [`ThreadPool::context`] to an entry function; the pool must outlive the call.
pub struct ThreadPool {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl ThreadPool {
    /// A pool of `threads` workers (at least 1).
    pub fn new(threads: usize) -> Result<ThreadPool, ThreadPoolError> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("kestrel-worker-{i}"))
            .build()
            .map_err(|e| ThreadPoolError {
                threads,
                reason: e.to_string(),
            })?;
        Ok(ThreadPool { pool, threads })
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The callback to pass as `parallel_for`.
    pub fn parallel_for(&self) -> ParallelForFn {
        parallel_for
    }

    /// The context to pass as `pool` (valid while `self` lives).
    pub fn context(&self) -> *mut c_void {
        self as *const ThreadPool as *mut c_void
    }

    /// Runs `task(ctx, i)` for every `i < count` on the pool's workers and waits for all of them.
    ///
    /// # Safety
    /// `task` must be safe to call concurrently with `ctx` for every index below `count`.
    pub unsafe fn run(&self, task: TaskFn, ctx: *const c_void, count: u64) {
        if count == 1 {
            // SAFETY: the caller's contract.
            unsafe { task(ctx, 0) };
            return;
        }
        let ctx = ctx as usize;
        self.pool.install(|| {
            (0..count).into_par_iter().for_each(|i| {
                // SAFETY: the caller's contract; tasks of one call write disjoint memory.
                unsafe { task(ctx as *const c_void, i) };
            })
        });
    }
}

/// The `parallel_for` of the ABI, with `pool` a [`ThreadPool`] from [`ThreadPool::context`].
unsafe extern "C" fn parallel_for(pool: *mut c_void, task: TaskFn, ctx: *const c_void, count: u64) {
    // SAFETY: `pool` came from `ThreadPool::context` and outlives the call (the ABI contract).
    let pool = unsafe { &*(pool as *const ThreadPool) };
    // SAFETY: generated tasks of one call are independent (the ABI contract).
    unsafe { pool.run(task, ctx, count) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    unsafe extern "C" fn add_index(ctx: *const c_void, index: u64) -> i32 {
        // SAFETY: the test passes a pointer to an AtomicU64.
        let sum = unsafe { &*(ctx as *const AtomicU64) };
        sum.fetch_add(index + 1, Ordering::Relaxed);
        0
    }

    #[test]
    fn every_index_runs_once() {
        let pool = ThreadPool::new(3).unwrap();
        for count in [0u64, 1, 2, 7, 100] {
            let sum = AtomicU64::new(0);
            let ctx = &sum as *const AtomicU64 as *const c_void;
            // SAFETY: add_index only touches the atomic.
            unsafe { (pool.parallel_for())(pool.context(), add_index, ctx, count) };
            assert_eq!(sum.load(Ordering::Relaxed), count * (count + 1) / 2);
        }
    }
}
