//! Run-time support for compiled Kestrel models: the calling convention generated code follows
//! ([`abi`]), a thread pool that serves its parallel-for callback ([`ThreadPool`]), the loader
//! of shared objects written by `kestrel compile` ([`Model`]), and the AMX permission request
//! ([`amx`]).
//!
//! This crate depends on nothing else in the workspace: programs that only load and run compiled
//! models need neither the IR nor Cranelift.
//!
//! ```no_run
//! use kestrel_runtime::{Model, TensorRef};
//! let model = Model::load("digits.so")?;                 // checks the ABI version and the CPU
//! let input = vec![0f32; 64];
//! let bytes: Vec<u8> = input.iter().flat_map(|x| x.to_le_bytes()).collect();
//! let info = &model.inputs()[0];
//! let outputs = model.run_to_vec(None, &[TensorRef { dtype: info.dtype, shape: &info.shape, data: &bytes }])?;
//! # Ok::<(), kestrel_runtime::ModelError>(())
//! ```

pub mod abi;
pub mod amx;
mod model;
mod threads;

pub use abi::DType;
pub use model::{Model, ModelError, TensorInfo, TensorMut, TensorRef};
pub use threads::{ThreadPool, ThreadPoolError};
