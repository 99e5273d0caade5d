//! Kestrel compiler library: ONNX import and the compiler driver.

pub mod onnx;
