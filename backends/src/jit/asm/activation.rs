//! Sigmoid and SiLU over a run of whole vectors, in place, in full-width registers: the
//! transcendental epilogue of convolutions (efficientnet_b0's SiLU after every expansion and
//! depthwise convolution), which in Cranelift's 128-bit vectors costs about four times as many
//! instructions per element.
//!
//! Contract of the assembled function, `fn(p, vectors, bias, _, _)` (System V, five i64 arguments,
//! as every micro-kernel): for `i` in `0..vectors · lanes`, `x = p[i]` (`+ bias[0]` when the
//! shape has a bias) and `p[i] = sigmoid(x)` or `x · sigmoid(x)`. The operations, their order and
//! their constants are those of `Emitter::sigmoid` (`kernels::math`, its constants from
//! [`SigmoidConstants`]) and of the SiLU's product there, with fused multiply-adds where that
//! uses them, so both compute the same bits (`backends/tests/jit_wide.rs`). Nothing outside the
//! `vectors` vectors is read or written; alignment is not required.
//!
//! The constants follow the code (one vector of each), read RIP-relative: the code is
//! position-independent and relocation-free. It returns with `vzeroupper`, as the tiles do.

use super::{AsmError, WideIsa};
use crate::jit::kernels::exp_constants::SigmoidConstants;
use iced_x86::code_asm::*;

/// The function applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    Sigmoid,
    /// `x · sigmoid(x)`.
    Silu,
}

/// What one assembled activation kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ActivationShape {
    pub isa: WideIsa,
    pub act: Activation,
    /// Adds `bias[0]` to every element first.
    pub bias: bool,
}

impl ActivationShape {
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} {}{} in place",
            match self.act {
                Activation::Sigmoid => "sigmoid",
                Activation::Silu => "silu",
            },
            self.isa.name(),
            if self.bias { " +bias" } else { "" }
        )
    }

    /// The kernel's machine code (see the module documentation).
    pub fn assemble(&self) -> Result<Vec<u8>, AsmError> {
        let what = self.describe();
        super::assemble_by_isa(
            self.isa,
            &what,
            |a| emit_zmm(a, self),
            |a| emit_ymm(a, self),
        )
    }
}

/// The constants in the order the code's labels name them.
fn constants() -> [f32; 13] {
    let SigmoidConstants { lo, hi, exp: e } = SigmoidConstants::get();
    let p = e.poly;
    [
        lo, hi, 1.0, e.log2e, e.magic, e.ln2_hi, e.ln2_lo, p[0], p[1], p[2], p[3], p[4], p[5],
    ]
}

/// The kernel body for one register class: `rdi` = p, `rsi` = vectors, `rdx` = bias. Registers
/// 0–5 are working values, 6–8 the constants an instruction needs as its first source (the
/// bounds, whose order decides NaN and `-0.0`, and the 1 of `1 / d`), 9 the bias.
macro_rules! activation_body {
    ($name:ident, $r:ident, $ptr:ident, $lanes:expr) => {
        fn $name(a: &mut CodeAssembler, s: &ActivationShape) -> Result<(), IcedError> {
            let [x, y, t, n, q, p, lo, hi, one, bias] = [
                $r[0], $r[1], $r[2], $r[3], $r[4], $r[5], $r[6], $r[7], $r[8], $r[9],
            ];
            let mut labels: Vec<CodeLabel> = (0..13).map(|_| a.create_label()).collect();
            let c = labels.clone();
            let (c_lo, c_hi, c_one, c_log2e, c_magic, c_ln2_hi, c_ln2_lo) =
                (c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
            let poly = [c[7], c[8], c[9], c[10], c[11], c[12]];
            let mut done = a.create_label();
            let mut top = a.create_label();
            a.vmovups(lo, $ptr(c_lo))?;
            a.vmovups(hi, $ptr(c_hi))?;
            a.vmovups(one, $ptr(c_one))?;
            if s.bias {
                a.vbroadcastss(bias, dword_ptr(rdx))?;
            }
            a.test(rsi, rsi)?;
            a.jz(done)?;
            a.set_label(&mut top)?;
            a.vmovups(x, $ptr(rdi))?;
            if s.bias {
                a.vaddps(x, x, bias)?;
            }
            // Clamp: `hi < x ? hi : x`, then `lo > y ? lo : y`.
            a.vminps(y, hi, x)?;
            a.vmaxps(y, lo, y)?;
            // n = round(-y·log2 e) by the magic number; s = y + n·ln2 (two constants).
            a.vmulps(t, y, $ptr(c_log2e))?;
            a.vaddps(t, t, $ptr(c_magic))?;
            a.vsubps(n, t, $ptr(c_magic))?;
            a.vfmadd231ps(y, n, $ptr(c_ln2_hi))?;
            a.vfmadd231ps(y, n, $ptr(c_ln2_lo))?;
            // Estrin: (c0 + c1 s) + s² ((c2 + c3 s) + s² (c4 + c5 s)).
            a.vmovups(n, $ptr(poly[1]))?;
            a.vfmadd213ps(n, y, $ptr(poly[0]))?;
            a.vmovups(q, $ptr(poly[3]))?;
            a.vfmadd213ps(q, y, $ptr(poly[2]))?;
            a.vmovups(p, $ptr(poly[5]))?;
            a.vfmadd213ps(p, y, $ptr(poly[4]))?;
            a.vmulps(y, y, y)?;
            a.vfmadd213ps(p, y, q)?;
            a.vfmadd213ps(p, y, n)?;
            // e^-x = P · 2^n (the rounded value's bits shifted into the exponent field), then
            // 1 / (1 + e^-x).
            a.vpslld(t, t, 23)?;
            a.vmulps(p, p, t)?;
            a.vaddps(p, p, one)?;
            a.vdivps(p, one, p)?;
            if s.act == Activation::Silu {
                a.vmulps(p, x, p)?;
            }
            a.vmovups($ptr(rdi), p)?;
            a.add(rdi, 4 * $lanes)?;
            a.dec(rsi)?;
            a.jnz(top)?;
            a.set_label(&mut done)?;
            // Clean upper halves: the caller's code mixes in legacy-SSE instructions, which
            // would otherwise each wait on (merge) the dirty upper state.
            a.vzeroupper()?;
            a.ret()?;
            for (label, value) in labels.iter_mut().zip(constants()) {
                a.set_label(label)?;
                a.dd(&[value.to_bits(); $lanes])?;
            }
            Ok(())
        }
    };
}

const ZMM: [AsmRegisterZmm; 10] = [zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9];
const YMM: [AsmRegisterYmm; 10] = [ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9];

activation_body!(emit_zmm, ZMM, zmmword_ptr, 16);
activation_body!(emit_ymm, YMM, ymmword_ptr, 8);
