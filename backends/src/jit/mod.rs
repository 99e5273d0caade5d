//! The Cranelift JIT backend.

pub mod gemm;
pub mod isa;
