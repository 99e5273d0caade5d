//! Kestrel compiler driver.
