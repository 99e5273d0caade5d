//! Micro-kernels and reusable emitters below the op lowerings: the GEMM blocking and its
//! register tiles, the transcendental functions. Nothing here knows about graph nodes: kernels
//! take pointers, extents and the emitter, never a [`super::context::KernelContext`].

pub mod epilogue;
pub mod exp_constants;
pub mod gemm;
pub mod igemm;
pub mod math;
pub mod pointwise;
pub mod requant;
pub mod softmax;
pub mod window;
