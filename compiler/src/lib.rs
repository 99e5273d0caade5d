//! Kestrel's driver: ONNX import, tensor files, and the `kestrel` command line.

pub mod aot;
pub mod cli;
pub mod compare;
pub mod driver;
pub mod dump;
pub mod layers;
pub mod onnx;
pub mod tensor_io;
