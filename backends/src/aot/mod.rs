//! Ahead-of-time code generation: the JIT's lowering written into an object file for a target
//! (the C ABI of the result is `docs/ABI.md`).
//!
//! [`target`] resolves a target triple and `--cpu` features into a Cranelift ISA with every flag
//! set explicitly; [`object`] lowers a graph into a `cranelift_object::ObjectModule` for that ISA
//! and adds the model descriptor and the run wrappers; [`scalarize`] rewrites vector code lane by
//! lane for targets without vector registers (riscv64 without V). The object file imports nothing.

pub mod object;
pub mod scalarize;
pub mod target;

pub use object::{emit_object, Emitted, IoInfo, ModelInfo};
pub use target::{Arch, CpuFeatures, TARGETS};

use crate::jit::JitError;

/// Why a graph could not be compiled for a target. The messages name the command-line options
/// (`--target`, `--cpu`) whose values they quote.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AotError {
    /// A target triple Kestrel does not write code for (not one of [`TARGETS`]).
    #[error("--target {triple:?} is not supported; supported targets: {}", TARGETS.join(", "))]
    UnsupportedTarget { triple: String },
    /// `native` CPU features asked for a target other than the machine running Kestrel.
    #[error(
        "--cpu native describes this machine, which is not a {target} machine; give --cpu generic or a feature list such as {example}"
    )]
    NativeCpuForOtherTarget {
        target: &'static str,
        example: &'static str,
    },
    /// An item of a feature list that is neither `+NAME` nor `-NAME`.
    #[error(
        "--cpu {list:?}: {item:?} is not a feature change; expected native, generic, or a comma list such as {example}"
    )]
    NotAFeatureChange {
        list: String,
        item: String,
        example: &'static str,
    },
    /// A feature name the target does not have ([`Arch::features`] lists the known ones).
    #[error("--cpu {list:?}: unknown {target} feature {name:?}; known features: {known}")]
    UnknownFeature {
        list: String,
        target: &'static str,
        name: String,
        known: String,
    },
    /// Cranelift refused a setting, a flag or the ISA itself (a bug in the tables).
    #[error("{what}: {reason}")]
    Isa { what: String, reason: String },
    /// The lowering refused or failed on the graph (the JIT's own error, unchanged).
    #[error(transparent)]
    Lower(#[from] JitError),
    /// Declaring, defining or writing a symbol of the object file failed (a bug).
    #[error("{what}: {reason}")]
    Object { what: String, reason: String },
}
