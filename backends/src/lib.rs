//! Backends.
//!
//! [`interp`] is the reference interpreter: the semantic oracle every other backend is checked against.
//! [`jit`] compiles whole graphs to native code with Cranelift, in memory; [`aot`] writes the same
//! code into an object file for a target triple and CPU features, with the C ABI's symbols (linking
//! it into a shared object is the `kestrel` crate's).

pub mod aot;
pub mod interp;
pub mod jit;
