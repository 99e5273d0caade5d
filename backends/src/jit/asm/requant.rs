//! Float requantization of a run of whole vectors of i32 accumulators to 8-bit levels, in
//! full-width registers: the pass after every integer convolution's GEMM block
//! (`kernels::requant`, [`RequantMode::Float`](kestrel_ir::RequantMode) with finite multipliers).
//!
//! Contract of the assembled function, `fn(acc, out, vectors, scale, _)` (System V, five i64
//! arguments): for `i` in `0..vectors · lanes`, `f = f32(acc[i]) · scale[0]`, clamped to
//! `[lo, hi]` (`hi < f ? hi : f`, then `lo > f ? lo : f`), `out[i] = bits(f + 1.5·2^23) -
//! offset` as one byte. These are the operations and the order of the 128-bit vector form
//! (`Requantization::emit_float`: `cvtdq2ps`, `mulps`, the clamp, the magic-number rounding),
//! so both store the same bytes; the levels are in `[min, max]` of an 8-bit type, so the
//! narrowing is exact (`vpmovdb` on AVX-512, `packssdw` and `packsswb`/`packuswb` on AVX2).
//! Nothing outside the run is read or written; alignment is not required. The constants follow
//! the code, read RIP-relative (position-independent, relocation-free); it returns with
//! `vzeroupper`.

use super::{AsmError, WideIsa};
use iced_x86::code_asm::*;

/// What one assembled requantization kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequantShape {
    pub isa: WideIsa,
    /// The clamp bounds `min - zero_point`, `max - zero_point` as f32 bits.
    pub lo: u32,
    pub hi: u32,
    /// `0x4B40_0000 - zero_point`: subtracted from the rounded value's bits.
    pub offset: i32,
    /// i8 levels (else u8).
    pub signed: bool,
}

impl RequantShape {
    pub(crate) fn describe(&self) -> String {
        format!(
            "requantize i32→{} {} (clamp [{}, {}], offset {:#x})",
            if self.signed { "i8" } else { "u8" },
            self.isa.name(),
            f32::from_bits(self.lo),
            f32::from_bits(self.hi),
            self.offset
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

/// `rdi` = acc, `rsi` = out, `rdx` = vectors, `rcx` = scale. Registers: 0 the values, 1 scratch,
/// 2 the scale, 3 and 4 the bounds (first sources of the clamp: their order decides NaN and
/// `-0.0`), 5 the magic number, 6 the offset.
macro_rules! requant_body {
    ($name:ident, $r:ident, $ptr:ident, $lanes:expr, $narrow:ident) => {
        fn $name(a: &mut CodeAssembler, s: &RequantShape) -> Result<(), IcedError> {
            let [x, y, scale, lo, hi, magic, offset] =
                [$r[0], $r[1], $r[2], $r[3], $r[4], $r[5], $r[6]];
            let mut c_lo = a.create_label();
            let mut c_hi = a.create_label();
            let mut c_magic = a.create_label();
            let mut c_offset = a.create_label();
            let mut top = a.create_label();
            let mut done = a.create_label();
            a.vbroadcastss(scale, dword_ptr(rcx))?;
            a.vmovups(lo, $ptr(c_lo))?;
            a.vmovups(hi, $ptr(c_hi))?;
            a.vmovups(magic, $ptr(c_magic))?;
            a.vmovups(offset, $ptr(c_offset))?;
            a.test(rdx, rdx)?;
            a.jz(done)?;
            a.set_label(&mut top)?;
            a.vcvtdq2ps(x, $ptr(rdi))?;
            a.vmulps(x, x, scale)?;
            a.vminps(x, hi, x)?;
            a.vmaxps(x, lo, x)?;
            a.vaddps(x, x, magic)?;
            a.vpsubd(x, x, offset)?;
            $narrow(a, s, x, y)?;
            a.add(rdi, 4 * $lanes)?;
            a.add(rsi, $lanes)?;
            a.dec(rdx)?;
            a.jnz(top)?;
            a.set_label(&mut done)?;
            a.vzeroupper()?;
            a.ret()?;
            for (label, bits) in [
                (&mut c_lo, s.lo),
                (&mut c_hi, s.hi),
                (&mut c_magic, 12_582_912f32.to_bits()),
                (&mut c_offset, s.offset as u32),
            ] {
                a.set_label(label)?;
                a.dd(&[bits; $lanes])?;
            }
            Ok(())
        }
    };
}

/// Sixteen levels in `x` (i32 lanes within the 8-bit range) to the 16 bytes at `rsi`.
fn narrow_zmm(
    a: &mut CodeAssembler,
    _: &RequantShape,
    x: AsmRegisterZmm,
    _: AsmRegisterZmm,
) -> Result<(), IcedError> {
    a.vpmovdb(xmmword_ptr(rsi), x)
}

/// Eight levels in `x` (i32 lanes within the 8-bit range) to the 8 bytes at `rsi`.
fn narrow_ymm(
    a: &mut CodeAssembler,
    s: &RequantShape,
    x: AsmRegisterYmm,
    y: AsmRegisterYmm,
) -> Result<(), IcedError> {
    let (xl, yl) = (xmm_of(x), xmm_of(y));
    a.vextracti128(yl, x, 1)?;
    a.vpackssdw(xl, xl, yl)?;
    if s.signed {
        a.vpacksswb(xl, xl, xl)?;
    } else {
        a.vpackuswb(xl, xl, xl)?;
    }
    a.vmovq(qword_ptr(rsi), xl)
}

fn xmm_of(r: AsmRegisterYmm) -> AsmRegisterXmm {
    let i = YMM.iter().position(|&y| y == r).expect("a listed register");
    XMM[i]
}

const ZMM: [AsmRegisterZmm; 7] = [zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6];
const YMM: [AsmRegisterYmm; 7] = [ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6];
const XMM: [AsmRegisterXmm; 7] = [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6];

requant_body!(emit_zmm, ZMM, zmmword_ptr, 16, narrow_zmm);
requant_body!(emit_ymm, YMM, ymmword_ptr, 8, narrow_ymm);
