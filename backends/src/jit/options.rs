//! The options of a JIT compilation ([`JitOptions`]).

/// Options of `jit::compile` and of `jit::lower`.
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
