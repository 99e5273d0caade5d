//! Run-time support for compiled Kestrel models: the calling convention generated code follows
//! ([`abi`]) and a thread pool that serves its parallel-for callback ([`ThreadPool`]).
//!
//! This crate depends on nothing else in the workspace: programs that only load and run compiled
//! models need neither the IR nor Cranelift.

pub mod abi;
mod threads;

pub use threads::{ThreadPool, ThreadPoolError};
