//! Support shared by the workspace's tests and benchmarks; compiled only with the `testing`
//! feature, which the crates enable in their `[dev-dependencies]`, so no library build contains it.
//!
//! - [`random`]: seeded, deterministic pseudo-random streams ([`Lcg`], [`XorShift64`],
//!   [`XorShift32`]) and the tensors and graph inputs made from them. Each stream is pinned bit for
//!   bit (`ir/tests/testing.rs`): a test's expected values and a property test's coverage never
//!   change under it.
//! - [`compare`]: element-wise and whole-output tolerances, output quantization steps, and a
//!   unified diff of two texts.
//! - [`shared_models`]: the folder of big reference models named by `KESTREL_MODELS`.
//!
//! It lives in `kestrel-ir` because every crate depends on `ir` and [`Tensor`](crate::Tensor)
//! lives here: a separate test crate that `backends` dev-depended on would itself depend on
//! `backends` (or could not hold its helpers), and a dev-dependency cycle builds a second copy of a
//! crate whose types do not match the first.

pub mod compare;
pub mod random;

pub use compare::{
    check_close, check_within_steps, magnitude, max_abs, max_abs_diff, step_bound,
    tensor_max_abs_diff, unified_diff, Float, Mismatch,
};
pub use random::{random_inputs, Lcg, Random, XorShift32, XorShift64};

use std::path::PathBuf;

/// The folder named by `KESTREL_MODELS`, or `None` when it is unset (the caller skips and says
/// so). A set but missing folder panics: CI sets it, and a missing folder must not pass as a
/// skipped check.
#[track_caller]
pub fn shared_models() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("KESTREL_MODELS")?);
    assert!(
        dir.is_dir(),
        "KESTREL_MODELS={} is not a folder",
        dir.display()
    );
    Some(dir)
}
