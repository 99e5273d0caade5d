//! Ahead-of-time code generation: the JIT's lowering written into an object file for a target.
//!
//! [`target`] resolves a target triple and CPU features into a Cranelift ISA; [`object`] lowers a
//! graph into a `cranelift_object::ObjectModule` for it and adds the C ABI's symbols;
//! [`scalarize`] rewrites vector code lane by lane for targets without vector registers.

pub mod object;
pub mod scalarize;
pub mod target;

pub use object::{IoInfo, ModelInfo};
pub use target::{Arch, CpuFeatures};
