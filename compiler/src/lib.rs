//! Kestrel's driver: ONNX import, tensor files, and the `kestrel` command line.

pub mod cli;
pub mod compare;
pub mod driver;
pub mod dump;
pub mod onnx;
pub mod tensor_io;
