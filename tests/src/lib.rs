//! Shared code of Kestrel's integration tests and tools.

pub mod conformance;
