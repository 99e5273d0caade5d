//! Backends.
//!
//! [`interp`] is the reference interpreter: the semantic oracle every other backend is checked against.
//! [`jit`] holds the Cranelift code generator.

pub mod interp;
pub mod jit;
