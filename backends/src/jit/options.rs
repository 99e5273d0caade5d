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
    /// Run the GEMMs on the full-width micro-kernels (`jit::asm`, docs/JIT.md) where the
    /// target has a vector ISA wider than 128 bits (AVX2+FMA, AVX-512). Off, every kernel stays
    /// on Cranelift's 128-bit vectors: the portable path, and the reference the wide one is
    /// tested against (both give bit-identical results). The default is on unless the
    /// environment sets `KESTREL_WIDE_KERNELS=0` (for measuring both paths with the same
    /// commands, docs/JIT.md).
    pub wide_kernels: bool,
    /// Compute the stride-1 3×3 convolutions the cost rule picks with Winograd F(4×4, 3×3)
    /// (docs/JIT.md, "Winograd convolution"): 4× fewer multiply-adds, results within rounding
    /// of the direct convolution. Off, every convolution is direct. The default is on unless
    /// the environment sets `KESTREL_WINOGRAD=0`.
    pub winograd: bool,
}

impl Default for JitOptions {
    fn default() -> Self {
        JitOptions {
            threads: 1,
            min_task_macs: 1 << 19,
            im2col_block_bytes: 512 * 1024,
            wide_kernels: std::env::var("KESTREL_WIDE_KERNELS").map_or(true, |v| v != "0"),
            winograd: std::env::var("KESTREL_WINOGRAD").map_or(true, |v| v != "0"),
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
