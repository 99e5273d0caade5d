//! The Cranelift JIT backend: native code for whole graphs.
//!
//! [`compile`] lowers a graph whose dimensions are all known into one Cranelift module (see
//! [`lower::lower`], which is generic over `cranelift_module::Module` so the ahead-of-time path
//! shares it) and finalises it in memory. [`JitModel::run`] then executes the generated entry
//! function on caller-provided inputs, with every intermediate tensor in one preallocated arena.
//!
//! Contracts:
//! - the graph comes folded for code generation (`kestrel_passes::fold_constants::
//!   fold_for_codegen`, which the driver runs: nodes whose inputs are all constants, and
//!   `Shape`/`Size`, are constants by then; [`check_folded`] refuses a graph where one is left);
//!   every op is compiled to native code, and an op the JIT cannot compile is a
//!   [`JitError::Unsupported`] naming the node, never a hidden fallback;
//! - the generated code calls nothing outside its own module (no libm, no Rust helpers, no
//!   Cranelift libcalls): instructions are chosen from [`isa::IsaFlags`];
//! - running allocates nothing but the returned tensors ([`JitModel::run_into`] allocates nothing).

pub mod asm;
pub mod checks;
pub mod context;
pub mod emit;
pub mod error;
pub mod isa;
pub mod kernels;
pub mod lower;
pub mod model;
pub mod ops;
pub mod options;
pub mod peak;
pub mod perf_map;
pub mod plan;

pub use checks::{check_known_dims, check_sizes};
pub use error::JitError;
pub use isa::IsaFlags;
pub use lower::{
    check_folded, constant_values, in_place_concats, lower, should_be_folded, Lowered,
};
pub use model::{compile, host_isa, JitModel};
pub use options::JitOptions;
pub use plan::MemoryPlan;
