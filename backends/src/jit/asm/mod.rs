//! Full-width x86-64 micro-kernels: machine code Kestrel assembles itself (with iced-x86) where
//! Cranelift's 128-bit vectors leave most of the core idle, placed into the same Cranelift module
//! as the generated functions with `Module::define_function_bytes`, so the JIT and the
//! ahead-of-time `.so` both carry them (`../shared/DESIGN.md`, "assembled full-width
//! micro-kernels"; docs/JIT.md "Full-width micro-kernels").
//!
//! Every kernel is position-independent and relocation-free: it reads its operands through its
//! arguments (System V: `rdi`, `rsi`, `rdx`, `rcx`), uses only caller-saved registers, touches no
//! stack and calls nothing. Which kernels exist for a target follows its features ([`WideIsa`]),
//! never the machine the compiler runs on.

pub mod activation;
pub mod amx_tile;
pub mod f32_tile;
pub mod host;
pub mod int8_tile;
pub mod peak;
pub mod registry;
pub mod requant;

use super::error::JitError;
use super::isa::IsaFlags;
use cranelift_codegen::ir::{types, AbiParam};
use cranelift_module::{FuncId, Linkage, Module};

/// A vector ISA wider than Cranelift's 128 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WideIsa {
    /// 256-bit `ymm` with FMA3 (16 vector registers).
    Avx2Fma,
    /// 512-bit `zmm` (32 vector registers).
    Avx512F,
}

impl WideIsa {
    /// The widest ISA the target's features allow, or `None` (not x86-64, or neither AVX2+FMA
    /// nor AVX-512F).
    pub fn for_target(flags: &IsaFlags) -> Option<WideIsa> {
        if !flags.is_x86 || flags.scalarized {
            None
        } else if flags.has_avx512f {
            Some(WideIsa::Avx512F)
        } else if flags.has_avx2 && flags.has_fma {
            Some(WideIsa::Avx2Fma)
        } else {
            None
        }
    }

    /// f32 lanes of one vector register.
    pub fn lanes(self) -> usize {
        match self {
            WideIsa::Avx2Fma => 8,
            WideIsa::Avx512F => 16,
        }
    }

    /// Vector registers the kernels may use.
    pub fn registers(self) -> usize {
        match self {
            WideIsa::Avx2Fma => 16,
            WideIsa::Avx512F => 32,
        }
    }

    /// Bytes of one vector register.
    pub fn vector_bytes(self) -> usize {
        4 * self.lanes()
    }

    pub fn name(self) -> &'static str {
        match self {
            WideIsa::Avx2Fma => "avx2+fma",
            WideIsa::Avx512F => "avx512f",
        }
    }
}

/// Why a kernel could not be assembled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AsmError {
    #[error("micro-kernel {what}: {reason}")]
    Shape { what: String, reason: String },
    #[error("assembling {what}: {reason}")]
    Encode { what: String, reason: String },
}

impl AsmError {
    fn encode(what: &str, e: iced_x86::IcedError) -> AsmError {
        AsmError::Encode {
            what: what.to_string(),
            reason: e.to_string(),
        }
    }
}

/// The machine code of a kernel described as `what`, written by `zmm` (AVX-512) or `ymm` (AVX2)
/// as `isa` asks.
pub(crate) fn assemble_by_isa(
    isa: WideIsa,
    what: &str,
    zmm: impl FnOnce(&mut iced_x86::code_asm::CodeAssembler) -> Result<(), iced_x86::IcedError>,
    ymm: impl FnOnce(&mut iced_x86::code_asm::CodeAssembler) -> Result<(), iced_x86::IcedError>,
) -> Result<Vec<u8>, AsmError> {
    let mut a =
        iced_x86::code_asm::CodeAssembler::new(64).map_err(|e| AsmError::encode(what, e))?;
    match isa {
        WideIsa::Avx512F => zmm(&mut a),
        WideIsa::Avx2Fma => ymm(&mut a),
    }
    .map_err(|e| AsmError::encode(what, e))?;
    a.assemble(0).map_err(|e| AsmError::encode(what, e))
}

/// Declares `name` in `module` with `params` i64 parameters and no result, and defines it as
/// `code` (relocation-free machine code for the module's target, System V calling convention).
/// The error names the function and Cranelift's reason.
pub fn define_code<M: Module>(
    module: &mut M,
    name: &str,
    params: usize,
    code: &[u8],
) -> Result<FuncId, String> {
    let mut sig = module.make_signature();
    for _ in 0..params {
        sig.params.push(AbiParam::new(types::I64));
    }
    let id = module
        .declare_function(name, Linkage::Local, &sig)
        .map_err(|e| format!("declaring {name}: {e}"))?;
    module
        .define_function_bytes(id, 64, code, &[])
        .map_err(|e| format!("defining {name}: {e}"))?;
    Ok(id)
}

impl From<AsmError> for JitError {
    fn from(e: AsmError) -> JitError {
        JitError::Codegen {
            context: " (full-width micro-kernel)".into(),
            reason: e.to_string(),
        }
    }
}
