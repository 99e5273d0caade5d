//! The constants of the exp-based functions of [`super::math`], in a module of their own (it
//! imports nothing) so that the full-width kernels (`crate::jit::asm::activation`) compute with
//! the very numbers the 128-bit code does.

/// `e^r` on `|r| <= ln2/2 + 1e-6`: minimax for relative error with `c0 = 1`, 8.6e-8 before f32
/// rounding of the coefficients, 1.6e-7 evaluated in f32 with FMA.
pub const EXP_POLY: [f32; 6] = [
    1.0,
    0.999_999_64,
    0.499_991_86,
    0.166_679_43,
    0.041_893_8,
    0.008_262_789,
];

/// The constants of `Emitter::exp_reduced` for `negate`, `scale` and `bias` (see there).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExpConstants {
    /// `±log2 e` (the sign of `u = ±x`).
    pub log2e: f32,
    /// The magic-number rounding constant `1.5·2^23 + bias`.
    pub magic: f32,
    /// `∓ln 2` in two parts.
    pub ln2_hi: f32,
    pub ln2_lo: f32,
    /// [`EXP_POLY`] times `scale`, odd terms negated with `negate`.
    pub poly: [f32; 6],
}

impl ExpConstants {
    pub fn new(negate: bool, scale: f32, bias: i32) -> ExpConstants {
        let sgn = if negate { -1.0 } else { 1.0 };
        let mut poly = EXP_POLY.map(|c| c * scale);
        for (k, ck) in poly.iter_mut().enumerate() {
            if k % 2 == 1 {
                *ck *= sgn;
            }
        }
        ExpConstants {
            log2e: sgn * std::f32::consts::LOG2_E,
            magic: 12582912.0 + bias as f32,
            ln2_hi: -sgn * 0.693_145_75,
            ln2_lo: -sgn * 1.428_606_8e-6,
            poly,
        }
    }
}

/// The exponent bias of `Emitter::sigmoid`'s `e^-x`.
pub const SIGMOID_EXP_BIAS: i32 = 127;

/// Every constant of `Emitter::sigmoid`: its clamp `[lo, hi]` and its `e^-x`. The full-width
/// kernel (`asm::activation`) computes the same operations with these.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SigmoidConstants {
    pub lo: f32,
    pub hi: f32,
    pub exp: ExpConstants,
}

impl SigmoidConstants {
    pub fn get() -> SigmoidConstants {
        SigmoidConstants {
            lo: -88.5,
            hi: 87.5,
            exp: ExpConstants::new(true, 1.0, SIGMOID_EXP_BIAS),
        }
    }
}
