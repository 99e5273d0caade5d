//! Seeded pseudo-random streams for tests: the same seed gives the same values on every machine
//! and every run. Not for anything that needs statistical quality or unpredictability.
//!
//! The float conversions are part of each stream's contract (`ir/tests/testing.rs` pins them):
//! [`Random::unit_f32`] reads the top 24 bits of a step, [`Random::unit_f64`] the top 31, and
//! [`Random::uniform_f32`] maps `[0, 1)` to `[lo, hi)` as `u * (hi - lo) + lo`.

use crate::{DType, Dim, Graph, Tensor};

/// A stream of 64-bit steps and the values the tests draw from them.
pub trait Random {
    /// Advances the stream by one step and returns its 64-bit output.
    fn next_u64(&mut self) -> u64;

    /// Uniform in `[0, 1)` with 24 random bits: the top 24 bits of one step.
    fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[0, 1)` with 31 random bits: the top 31 bits of one step.
    fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 33) as f64 / (1u64 << 31) as f64
    }

    /// `unit_f32() * (hi - lo) + lo`: in `[lo, hi)` (up to rounding) from one step.
    fn uniform_f32(&mut self, lo: f32, hi: f32) -> f32 {
        self.unit_f32() * (hi - lo) + lo
    }

    /// `unit_f64() * (hi - lo) + lo`: in `[lo, hi)` (up to rounding) from one step.
    fn uniform_f64(&mut self, lo: f64, hi: f64) -> f64 {
        self.unit_f64() * (hi - lo) + lo
    }

    /// `next_u64() % n` (`n = 0` counts as 1): an index below `n`, slightly biased when `n` is
    /// not a power of two.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// `n` values of [`Random::uniform_f32`], one step each.
    fn f32s(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform_f32(lo, hi)).collect()
    }

    /// An f32 tensor of shape `dims` filled in row-major order by [`Random::f32s`].
    fn tensor_f32(&mut self, dims: &[usize], lo: f32, hi: f32) -> Tensor {
        Tensor::from_vec(dims.to_vec(), self.f32s(dims.iter().product(), lo, hi))
    }
}

/// Knuth's MMIX linear congruential generator: every step is
/// `state = state * 6364136223846793005 + 1442695040888963407 (mod 2^64)` and outputs the new
/// state. Its low bits are weak; the float conversions read only the high ones.
#[derive(Clone, Debug)]
pub struct Lcg {
    state: u64,
}

impl Lcg {
    pub const MULTIPLIER: u64 = 6364136223846793005;
    pub const INCREMENT: u64 = 1442695040888963407;

    /// The stream whose first step starts from `state`.
    pub fn from_state(state: u64) -> Lcg {
        Lcg { state }
    }

    /// [`Lcg::from_state`]`(seed)` with its first step skipped, so that neighbouring small seeds
    /// do not begin with neighbouring small values.
    pub fn seeded(seed: u64) -> Lcg {
        let mut lcg = Lcg::from_state(seed);
        lcg.next_u64();
        lcg
    }
}

impl Random for Lcg {
    fn next_u64(&mut self) -> u64 {
        self.state = self
            .state
            .wrapping_mul(Lcg::MULTIPLIER)
            .wrapping_add(Lcg::INCREMENT);
        self.state
    }
}

/// Marsaglia's xorshift64 with shifts 13, 7, 17; every step outputs the new state. A zero state
/// stays zero forever, so [`XorShift64::seeded`] never starts there.
#[derive(Clone, Debug)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    /// The stream whose first step starts from `state` (zero gives only zeros).
    pub fn from_state(state: u64) -> XorShift64 {
        XorShift64 { state }
    }

    /// [`XorShift64::from_state`]`(seed * 0x9E37_79B9_7F4A_7C15 | 1)`: seeds spread by the
    /// golden-ratio constant, and the state is odd, so never zero.
    pub fn seeded(seed: u64) -> XorShift64 {
        XorShift64::from_state(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
}

impl Random for XorShift64 {
    fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
}

/// Marsaglia's 32-bit xorshift with shifts 13, 17, 5; every step outputs the new state. Not a
/// [`Random`]: its steps have 32 bits, and its float is the top 24 of those.
#[derive(Clone, Debug)]
pub struct XorShift32 {
    state: u32,
}

impl XorShift32 {
    /// The stream whose first step starts from `state` (zero gives only zeros).
    pub fn from_state(state: u32) -> XorShift32 {
        XorShift32 { state }
    }

    /// Advances the stream by one step and returns its output.
    pub fn next_u32(&mut self) -> u32 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        self.state
    }

    /// Uniform in `[0, 1)` with 24 random bits: the top 24 bits of one step.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    /// `unit_f32() * (hi - lo) + lo`: in `[lo, hi)` (up to rounding) from one step.
    pub fn uniform_f32(&mut self, lo: f32, hi: f32) -> f32 {
        self.unit_f32() * (hi - lo) + lo
    }
}

/// Inputs for every input of `g`, from one [`Lcg::seeded`]`(seed)` stream continued across the
/// inputs in order: symbolic extents bound to 2, and each element one
/// [`Random::uniform_f64`]`(-1, 1)` value `v` stored as its dtype: f32 `v as f32`, f64 `v`,
/// i64/i32 `(4 v)` truncated (so in `-3..=3`), bool `v > 0`.
///
/// # Panics
/// On an input of another dtype.
pub fn random_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Lcg::seeded(seed);
    g.inputs
        .iter()
        .map(|&v| {
            let ty = g.ty(v);
            let dims: Vec<usize> = ty
                .shape
                .iter()
                .map(|d| match d {
                    Dim::Known(n) => *n,
                    _ => 2,
                })
                .collect();
            let n: usize = dims.iter().product();
            let vals: Vec<f64> = (0..n).map(|_| rng.uniform_f64(-1.0, 1.0)).collect();
            tensor_of(ty.dtype, dims, vals)
        })
        .collect()
}

fn tensor_of(dtype: DType, dims: Vec<usize>, vals: Vec<f64>) -> Tensor {
    match dtype {
        DType::F32 => Tensor::from_vec(dims, vals.into_iter().map(|v| v as f32).collect()),
        DType::F64 => Tensor::from_vec(dims, vals),
        DType::I64 => Tensor::from_vec(dims, vals.into_iter().map(|v| (v * 4.0) as i64).collect()),
        DType::I32 => Tensor::from_vec(dims, vals.into_iter().map(|v| (v * 4.0) as i32).collect()),
        DType::Bool => Tensor::from_vec(dims, vals.into_iter().map(|v| v > 0.0).collect()),
        other => panic!("random inputs of dtype {other} are not supported"),
    }
}
