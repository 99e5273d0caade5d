//! A thread pool that implements the parallel-for callback of [`crate::abi`].
//!
//! A model runs dozens of parallel loops per inference, each only tens of microseconds long, so
//! the hand-off must cost far less than waking a sleeping thread. The pool keeps `threads - 1`
//! workers; the calling thread takes tasks too. Between loops the workers spin on the job's
//! generation for a while ([`SPIN_ITERATIONS`]) and only then sleep on a condition variable, so a
//! loop that follows another within the spin window starts without a system call.
//!
//! Job hand-off is a seqlock: the caller makes the generation odd, writes the job (task, context,
//! count, claim counter), makes it even again; a worker reads the job between two equal even
//! generations. Tasks are claimed with a compare-and-swap on a counter that carries the
//! generation in its high half, so a worker that read an older job can never claim a task of a
//! newer one.

use crate::abi::{ParallelForFn, TaskFn};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Polls of the generation before a worker goes to sleep (roughly 50–200 µs).
const SPIN_ITERATIONS: u32 = 20_000;

/// Why a pool could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot start {threads} worker threads: {reason}")]
pub struct ThreadPoolError {
    pub threads: usize,
    pub reason: String,
}

struct Shared {
    /// Even: a job is published (or none yet); odd: the caller is writing one.
    generation: AtomicU64,
    task: AtomicUsize,
    ctx: AtomicUsize,
    count: AtomicU64,
    /// `generation << 32 | next index to claim`.
    next: AtomicU64,
    /// Tasks of the current job that have returned.
    done: AtomicU64,
    shutdown: AtomicBool,
    /// Workers sleeping on `wake` (guarded by `lock`).
    sleepers: Mutex<usize>,
    wake: Condvar,
}

/// Worker threads that run the tasks of generated code. Pass [`ThreadPool::parallel_for`] and
/// [`ThreadPool::context`] to an entry function; the pool must outlive the call. One loop runs
/// at a time (concurrent callers are serialised).
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    /// Serialises callers of [`ThreadPool::run`].
    caller: Mutex<()>,
}

impl ThreadPool {
    /// A pool where `threads` threads (the caller and `threads - 1` workers) run the tasks.
    pub fn new(threads: usize) -> Result<ThreadPool, ThreadPoolError> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            task: AtomicUsize::new(0),
            ctx: AtomicUsize::new(0),
            count: AtomicU64::new(0),
            next: AtomicU64::new(0),
            done: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            sleepers: Mutex::new(0),
            wake: Condvar::new(),
        });
        let mut workers = Vec::new();
        for i in 1..threads {
            let s = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("kestrel-worker-{i}"))
                .spawn(move || worker(&s))
                .map_err(|e| ThreadPoolError {
                    threads,
                    reason: e.to_string(),
                });
            match handle {
                Ok(h) => workers.push(h),
                Err(e) => {
                    stop(&shared, workers);
                    return Err(e);
                }
            }
        }
        Ok(ThreadPool {
            shared,
            workers,
            threads,
            caller: Mutex::new(()),
        })
    }

    /// Number of threads that run tasks (the caller included).
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

    /// Runs `task(ctx, i)` for every `i < count` on the pool's threads and the caller's, and
    /// returns when all have returned.
    ///
    /// # Safety
    /// `task` must be safe to call concurrently with `ctx` for every index below `count`.
    pub unsafe fn run(&self, task: TaskFn, ctx: *const c_void, count: u64) {
        // (The claim counter holds indices in 32 bits; loops that long run on the caller.)
        if count <= 1 || self.workers.is_empty() || count > u32::MAX as u64 {
            for i in 0..count {
                // SAFETY: the caller's contract.
                unsafe { task(ctx, i) };
            }
            return;
        }
        let _one_caller = self.caller.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // Publish the job (seqlock write).
        let g = s.generation.load(Ordering::Relaxed) + 1; // odd: writing
        s.generation.store(g, Ordering::Release);
        s.task.store(task as usize, Ordering::Relaxed);
        s.ctx.store(ctx as usize, Ordering::Relaxed);
        s.count.store(count, Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        let g = g + 1; // even: published
        s.next.store(g << 32, Ordering::Relaxed);
        s.generation.store(g, Ordering::Release);
        {
            let sleepers = s.sleepers.lock().unwrap_or_else(|e| e.into_inner());
            if *sleepers > 0 {
                s.wake.notify_all();
            }
        }
        // The caller works too, then waits for the stragglers.
        // SAFETY: the caller's contract.
        unsafe { claim_and_run(s, g, task, ctx, count) };
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < count {
            spins += 1;
            if spins < SPIN_ITERATIONS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        stop(&self.shared, std::mem::take(&mut self.workers));
    }
}

fn stop(shared: &Shared, workers: Vec<JoinHandle<()>>) {
    shared.shutdown.store(true, Ordering::Release);
    {
        let _g = shared.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        shared.wake.notify_all();
    }
    for w in workers {
        let _ = w.join();
    }
}

/// Claims tasks of job `g` until none is left.
///
/// # Safety
/// `task`/`ctx`/`count` must be job `g`'s, under the contract of [`ThreadPool::run`].
unsafe fn claim_and_run(s: &Shared, g: u64, task: TaskFn, ctx: *const c_void, count: u64) {
    loop {
        let cur = s.next.load(Ordering::Acquire);
        if cur >> 32 != g {
            return;
        }
        let i = cur & 0xffff_ffff;
        if i >= count {
            return;
        }
        if s.next
            .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: the caller's contract; index `i` of job `g` was claimed once.
            unsafe { task(ctx, i) };
            s.done.fetch_add(1, Ordering::Release);
        }
    }
}

fn worker(s: &Shared) {
    let mut seen = 0u64;
    loop {
        // Wait for a published generation other than the last one served.
        let mut spins = 0u32;
        let g = loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            let g = s.generation.load(Ordering::Acquire);
            if g != seen && g.is_multiple_of(2) {
                break g;
            }
            spins += 1;
            if spins < SPIN_ITERATIONS {
                std::hint::spin_loop();
                continue;
            }
            let mut sleepers = s.sleepers.lock().unwrap_or_else(|e| e.into_inner());
            let g = s.generation.load(Ordering::Acquire);
            if (g == seen || !g.is_multiple_of(2)) && !s.shutdown.load(Ordering::Acquire) {
                *sleepers += 1;
                sleepers = s.wake.wait(sleepers).unwrap_or_else(|e| e.into_inner());
                *sleepers -= 1;
            }
            drop(sleepers);
            spins = 0;
        };
        // Seqlock read of job `g`.
        let task = s.task.load(Ordering::Relaxed);
        let ctx = s.ctx.load(Ordering::Relaxed) as *const c_void;
        let count = s.count.load(Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Acquire);
        if s.generation.load(Ordering::Relaxed) != g {
            continue; // a newer job is being written; read again
        }
        seen = g;
        // SAFETY: `task` was stored from a `TaskFn` for job `g` (checked by the seqlock), and
        // `claim_and_run` only runs tasks of job `g`.
        let task: TaskFn = unsafe { std::mem::transmute::<usize, TaskFn>(task) };
        // SAFETY: the caller of `run` guarantees the job's contract.
        unsafe { claim_and_run(s, g, task, ctx, count) };
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

    unsafe extern "C" fn add_index(ctx: *const c_void, index: u64) -> i32 {
        // SAFETY: the test passes a pointer to an AtomicU64.
        let sum = unsafe { &*(ctx as *const AtomicU64) };
        sum.fetch_add(index + 1, Ordering::Relaxed);
        0
    }

    #[test]
    fn every_index_runs_once() {
        for threads in [1, 2, 3, 5] {
            let pool = ThreadPool::new(threads).unwrap();
            for count in [0u64, 1, 2, 7, 100, 1000] {
                let sum = AtomicU64::new(0);
                let ctx = &sum as *const AtomicU64 as *const c_void;
                // SAFETY: add_index only touches the atomic.
                unsafe { (pool.parallel_for())(pool.context(), add_index, ctx, count) };
                assert_eq!(sum.load(Ordering::Relaxed), count * (count + 1) / 2);
            }
        }
    }

    /// Many short loops back to back, with pauses long enough for workers to fall asleep.
    #[test]
    fn back_to_back_loops_and_sleeping_workers() {
        let pool = ThreadPool::new(3).unwrap();
        for round in 0..2000u64 {
            let sum = AtomicU64::new(0);
            let ctx = &sum as *const AtomicU64 as *const c_void;
            let count = 1 + round % 9;
            // SAFETY: add_index only touches the atomic.
            unsafe { pool.run(add_index, ctx, count) };
            assert_eq!(sum.load(Ordering::Relaxed), count * (count + 1) / 2);
            if round % 500 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }

    /// Two threads sharing a pool are serialised, not mixed.
    #[test]
    fn concurrent_callers() {
        let pool = Arc::new(ThreadPool::new(2).unwrap());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    for count in 1..300u64 {
                        let sum = AtomicU64::new(0);
                        let ctx = &sum as *const AtomicU64 as *const c_void;
                        // SAFETY: add_index only touches the atomic.
                        unsafe { pool.run(add_index, ctx, count) };
                        assert_eq!(sum.load(Ordering::Relaxed), count * (count + 1) / 2);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
