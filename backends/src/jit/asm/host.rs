//! [`HostCode`]: assembled code alone in a JIT module of the host, for the peak loops, tests and
//! micro-benchmarks (apart from `super` so that the kernels do not depend on the JIT driver).

use super::define_code;
use crate::jit::error::JitError;
use cranelift_jit::{JITBuilder, JITModule};

/// Assembled code placed alone in a JIT module of the host (for the peak loop, tests and
/// micro-benchmarks); the code lives as long as the value.
pub struct HostCode {
    module: Option<JITModule>,
    entry: *const u8,
}

impl HostCode {
    /// Places `code` (taking `params` i64 arguments) through [`define_code`].
    pub fn new(code: &[u8], params: usize) -> Result<HostCode, JitError> {
        let fail = |reason: String| JitError::Codegen {
            context: " (full-width micro-kernel)".into(),
            reason,
        };
        let isa = crate::jit::model::host_isa()?;
        let mut module = JITModule::new(JITBuilder::with_isa(
            isa,
            cranelift_module::default_libcall_names(),
        ));
        let id = define_code(&mut module, "kestrel_asm", params, code).map_err(fail)?;
        module
            .finalize_definitions()
            .map_err(|e| fail(e.to_string()))?;
        let entry = module.get_finalized_function(id);
        Ok(HostCode {
            module: Some(module),
            entry,
        })
    }

    /// The code's first instruction.
    pub fn entry(&self) -> *const u8 {
        self.entry
    }
}

impl Drop for HostCode {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: nothing holds the entry pointer beyond this value's life.
            unsafe { m.free_memory() };
        }
    }
}
