//! The target features kernels choose instructions by.
//!
//! Generated code must call nothing outside itself, so every emitter picks its instructions from
//! these flags (for example `fma` only when [`IsaFlags::use_fma`], rounding instructions only
//! with SSE4.1 on x86-64); see docs/CRANELIFT.md.

use cranelift_codegen::isa::TargetIsa;
use target_lexicon::Architecture;

/// Features of the ISA a module is compiled for, read from its Cranelift settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IsaFlags {
    pub is_x86: bool,
    pub is_aarch64: bool,
    pub is_riscv64: bool,
    pub has_ssse3: bool,
    pub has_sse41: bool,
    /// `pcmpgtq` (i64x2 compares; the vector requantization's clamp).
    pub has_sse42: bool,
    pub has_avx: bool,
    pub has_avx2: bool,
    pub has_fma: bool,
    /// 512-bit `zmm` registers (the full-width micro-kernels, `jit::asm`).
    pub has_avx512f: bool,
    pub has_avx512vl: bool,
    pub has_avx512vnni: bool,
    pub has_avx_vnni: bool,
    /// aarch64 `sdot`.
    pub has_dotprod: bool,
    /// aarch64 `usdot`.
    pub has_i8mm: bool,
    /// riscv64 vector extension (without it, vector types must not be used at all).
    pub has_v: bool,
    /// The vector code will be rewritten lane by lane (`crate::aot::scalarize`): set for
    /// targets without vector registers, and by the AOT compiler when asked to. Kernels then
    /// use lane moves (`extractlane`/`insertlane`) instead of byte shuffles.
    pub scalarized: bool,
}

impl IsaFlags {
    /// Reads the flags of `isa`.
    pub fn from_isa(isa: &dyn TargetIsa) -> IsaFlags {
        let arch = isa.triple().architecture;
        let mut f = IsaFlags {
            is_x86: matches!(arch, Architecture::X86_64),
            is_aarch64: matches!(arch, Architecture::Aarch64(_)),
            is_riscv64: matches!(arch, Architecture::Riscv64(_)),
            ..IsaFlags::default()
        };
        for v in isa.isa_flags() {
            let on = v.as_bool().unwrap_or(false);
            match v.name {
                "has_ssse3" => f.has_ssse3 = on,
                "has_sse41" => f.has_sse41 = on,
                "has_sse42" => f.has_sse42 = on,
                "has_avx" => f.has_avx = on,
                "has_avx2" => f.has_avx2 = on,
                "has_fma" => f.has_fma = on,
                "has_avx512f" => f.has_avx512f = on,
                "has_avx512vl" => f.has_avx512vl = on,
                "has_avx512vnni" => f.has_avx512vnni = on,
                "has_avx_vnni" => f.has_avx_vnni = on,
                "has_dotprod" => f.has_dotprod = on,
                "has_i8mm" => f.has_i8mm = on,
                "has_v" => f.has_v = on,
                _ => {}
            }
        }
        f.scalarized = !f.has_simd();
        f
    }

    /// `fma` lowers to one instruction (x86-64: AVX and FMA; aarch64: always; riscv64: always for
    /// scalars). When false, emitters must use `fmul` + `fadd`, or `fma` becomes libcalls.
    pub fn use_fma(&self) -> bool {
        if self.is_x86 {
            self.has_avx && self.has_fma
        } else {
            self.is_aarch64 || self.is_riscv64
        }
    }

    /// `floor`/`ceil`/`nearest`/`trunc` lower to instructions (on x86-64 they need SSE4.1, or they
    /// become libcalls). When false, emitters round with a bit trick.
    pub fn has_round(&self) -> bool {
        !self.is_x86 || self.has_sse41
    }

    /// The int8 dot-product tree lowers to `vpdpbusd` (x86-64: AVX-VNNI with AVX, which gives the
    /// VEX form, or AVX-512 VNNI with VL, the EVEX form; docs/CRANELIFT.md).
    pub fn use_vnni(&self) -> bool {
        self.is_x86
            && ((self.has_avx && self.has_avx_vnni) || (self.has_avx512vl && self.has_avx512vnni))
    }

    /// A `shuffle` with an arbitrary byte mask is one instruction (x86-64 needs SSSE3 for
    /// `pshufb`, else Cranelift calls a libcall; aarch64 has `tbl`, riscv64 V `vrgather`).
    pub fn has_byte_shuffle(&self) -> bool {
        !self.is_x86 || self.has_ssse3
    }

    /// 128-bit vector types may be used (always on x86-64 and aarch64; riscv64 needs V).
    pub fn has_simd(&self) -> bool {
        self.is_x86 || self.is_aarch64 || self.has_v
    }
}
