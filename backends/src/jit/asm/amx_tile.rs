//! The AMX int8 tile: `C[32 × 32] (+)= A[32 × k] · B[k × 32]` in i32 with `tdpbusd` (u8 A by s8
//! B) or `tdpbsud` (s8 A by u8 B, a convolution's roles), on four 16×16 accumulator tiles.
//!
//! Contract of the assembled function, `fn(a, b, c, steps, _)` (System V, five i64 arguments,
//! the fifth unused, as the other kernels' bias):
//! - `a` points at `A[0][0]`, 32 rows `lda_bytes` apart; each step reads 64 consecutive bytes
//!   (k) of every row;
//! - `b` points at B packed as the wide int8 kernels pack it for 32 columns
//!   (`super::int8_tile`): four-k groups of `32 × 4` bytes, so 16 groups (64 k) are one step;
//! - `c` points at `C[0][0]` (i32), 32 rows `ldc_bytes` apart; [`Start::Zero`] starts at zero,
//!   [`Start::LoadC`] at `C`; the tile is stored back;
//! - `steps` (≥ 0) counts 64-k steps (the caller pads k to a multiple of 64 with zero weights).
//!
//! Sums are exact (wrapping i32, as `vpdpbusd`). The tile configuration (palette 1: tiles 0–7
//! of 16 rows × 64 bytes) is written into the red zone below the stack pointer and loaded with
//! `ldtilecfg`; `tilerelease` ends the kernel. Scratch: `rax`, `r8`–`r11`. Nothing
//! RIP-relative, no call, no relocation. The process needs the tile-data permission first
//! (`kestrel_runtime::amx::request_tile_permission`).

use super::f32_tile::Start;
use super::AsmError;
use iced_x86::code_asm::*;

/// What one AMX kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AmxTileShape {
    pub lda_bytes: usize,
    pub ldc_bytes: usize,
    /// [`Start::Zero`] or [`Start::LoadC`].
    pub start: Start,
    /// A is s8 and B u8 (`tdpbsud`); else A u8 and B s8 (`tdpbusd`).
    pub a_signed: bool,
}

/// Rows and i32 columns of the output block.
pub const ROWS: usize = 32;
pub const COLS: usize = 32;
/// k per step.
pub const K_STEP: usize = 64;
/// Bytes between consecutive four-k groups of packed B (32 columns × 4 bytes).
const B_GROUP_BYTES: usize = COLS * 4;

impl AmxTileShape {
    fn describe(&self) -> String {
        format!(
            "AMX {} 32×32 (lda {} B, ldc {} B, {:?})",
            if self.a_signed { "s8·u8" } else { "u8·s8" },
            self.lda_bytes,
            self.ldc_bytes,
            self.start
        )
    }

    /// Checks the start and that the row offsets fit 32-bit displacements.
    pub fn check(&self) -> Result<(), AsmError> {
        let fail = |reason: &str| {
            Err(AsmError::Shape {
                what: self.describe(),
                reason: reason.into(),
            })
        };
        if !matches!(self.start, Start::Zero | Start::LoadC) {
            return fail("AMX tiles start at zero or at C");
        }
        if self.lda_bytes < K_STEP || self.ldc_bytes < 4 * COLS {
            return fail("rows shorter than one step of A or the 32 columns of C");
        }
        if 16 * self.lda_bytes.max(self.ldc_bytes) > i32::MAX as usize / 2 {
            return fail("row offsets beyond 32-bit displacements");
        }
        Ok(())
    }

    /// The kernel's machine code (see the module documentation).
    pub fn assemble(&self) -> Result<Vec<u8>, AsmError> {
        self.check()?;
        let what = self.describe();
        let enc = |e: IcedError| AsmError::encode(&what, e);
        let mut a = CodeAssembler::new(64).map_err(enc)?;
        self.emit(&mut a).map_err(enc)?;
        a.assemble(0).map_err(enc)
    }

    /// The register-only loop: `fn(iterations)` runs `iterations` (≥ 1) rounds of four
    /// independent `tdpbusd` on zeroed tiles (what the tile unit sustains without memory;
    /// 4 · 16 · 16 · 64 multiply-adds per round).
    pub fn assemble_peak() -> Result<Vec<u8>, AsmError> {
        let enc = |e: IcedError| AsmError::encode("the AMX peak loop", e);
        let mut a = CodeAssembler::new(64).map_err(enc)?;
        emit_config(&mut a).map_err(enc)?;
        for t in [tmm0, tmm1, tmm2, tmm3, tmm4, tmm5, tmm6, tmm7] {
            a.tilezero(t).map_err(enc)?;
        }
        let mut top = a.create_label();
        a.set_label(&mut top).map_err(enc)?;
        for (acc, x, y) in [
            (tmm0, tmm4, tmm6),
            (tmm1, tmm4, tmm7),
            (tmm2, tmm5, tmm6),
            (tmm3, tmm5, tmm7),
        ] {
            a.tdpbusd(acc, x, y).map_err(enc)?;
        }
        a.dec(rdi).map_err(enc)?;
        a.jnz(top).map_err(enc)?;
        a.tilerelease().map_err(enc)?;
        a.ret().map_err(enc)?;
        a.assemble(0).map_err(enc)
    }

    /// `rdi` = A, `rsi` = B, `rdx` = C (rows 0–15), `r8` = C rows 16–31, `rax` = A rows 16–31,
    /// `rcx` = steps; strides `r9` (A), `r10` (B), `r11` (C).
    fn emit(&self, a: &mut CodeAssembler) -> Result<(), IcedError> {
        let disp = |v: usize| v as i32;
        emit_config(a)?;
        a.mov(r9, self.lda_bytes as u64)?;
        a.mov(r10, B_GROUP_BYTES as u64)?;
        a.mov(r11, self.ldc_bytes as u64)?;
        a.lea(rax, ptr(rdi + disp(16 * self.lda_bytes)))?;
        a.lea(r8, ptr(rdx + disp(16 * self.ldc_bytes)))?;
        let c_tiles = [
            (tmm0, rdx, 0),
            (tmm1, rdx, 64),
            (tmm2, r8, 0),
            (tmm3, r8, 64),
        ];
        for &(t, base, off) in &c_tiles {
            match self.start {
                Start::LoadC => a.tileloadd(t, ptr(base + r11 + off))?,
                _ => a.tilezero(t)?,
            }
        }
        let mut top = a.create_label();
        let mut done = a.create_label();
        a.test(rcx, rcx)?;
        a.jz(done)?;
        a.set_label(&mut top)?;
        // Each dot product issues as soon as its two operands are loaded, so the next loads
        // overlap it.
        let dot = |a: &mut CodeAssembler, acc, x, y| {
            if self.a_signed {
                a.tdpbsud(acc, x, y)
            } else {
                a.tdpbusd(acc, x, y)
            }
        };
        a.tileloadd(tmm4, ptr(rdi + r9))?;
        a.tileloadd(tmm6, ptr(rsi + r10))?;
        dot(a, tmm0, tmm4, tmm6)?;
        a.tileloadd(tmm7, ptr(rsi + r10 + 64))?;
        dot(a, tmm1, tmm4, tmm7)?;
        a.tileloadd(tmm5, ptr(rax + r9))?;
        dot(a, tmm2, tmm5, tmm6)?;
        dot(a, tmm3, tmm5, tmm7)?;
        a.add(rdi, disp(K_STEP))?;
        a.add(rax, disp(K_STEP))?;
        a.add(rsi, disp(K_STEP / 4 * B_GROUP_BYTES))?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.set_label(&mut done)?;
        for &(t, base, off) in &c_tiles {
            a.tilestored(ptr(base + r11 + off), t)?;
        }
        a.tilerelease()?;
        a.ret()
    }
}

/// Loads the tile configuration: palette 1, tiles 0–7 of 16 rows × 64 bytes, the rest unused,
/// written into the red zone (the 128 bytes below `rsp` a leaf function may use).
fn emit_config(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let cfg = -64;
    for q in 0..8 {
        a.mov(qword_ptr(rsp + (cfg + 8 * q)), 0)?;
    }
    a.mov(byte_ptr(rsp + cfg), 1)?;
    for t in 0..8 {
        a.mov(word_ptr(rsp + (cfg + 16 + 2 * t)), 64)?;
        a.mov(byte_ptr(rsp + (cfg + 48 + t)), 16)?;
    }
    a.ldtilecfg(ptr(rsp + cfg))
}
