//! Backends.
//!
//! [`interp`] is the reference interpreter: the semantic oracle every other backend is checked against.

pub mod interp;
