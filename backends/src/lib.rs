//! Backends.
//!
//! [`interp`] is the reference interpreter: the semantic oracle every other backend is checked against.
//! [`jit`] compiles whole graphs to native code with Cranelift.

pub mod aot;
pub mod interp;
pub mod jit;
