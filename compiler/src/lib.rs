//! Kestrel as a library: ONNX import, tensor files, and what every command does, with plain
//! Rust types, so the `kestrel` command line, a Python package and a training loop call the
//! same functions.
//!
//! Entry points (each documents its contract):
//! - [`load`] a model file (`.onnx`, `.kir`) into a [`LoadedModel`];
//! - [`compile`] it to run in this process ([`InProcessModel`], JIT or interpreter) or [`run`]
//!   it once on input files (`kestrel run`);
//! - [`compile_so`]: a self-contained shared object and its C header (`kestrel compile`);
//! - [`bench::bench`] (`kestrel bench`), [`layers::profile`] (`--layers`) and
//!   [`compare::compare`] (`kestrel compare`);
//! - the steps they share, for callers that need them one by one, in [`driver`].
//!
//! Errors are `anyhow` errors whose message names the file, the node and the reason;
//! [`error_chain`] prints one as a single bounded line.

pub mod aot;
pub mod bench;
pub mod calibrate;
pub mod compare;
pub mod driver;
pub mod dump;
pub mod inprocess;
pub mod interrupt;
pub mod layers;
pub mod message;
pub mod onnx;
pub mod prune;
pub mod qat;
pub mod sensitivity;
pub mod stages;
pub mod tensor_io;
pub mod train;

pub use aot::{compile_so, CompileSoOptions};
pub use driver::{load, load_graph, InputSpec, LoadedModel, PassOptions};
pub use inprocess::{compile, run, Backend, InProcessModel, InProcessOptions};
pub use message::error_chain;
