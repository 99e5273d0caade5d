//! The full-width kernels one module calls ([`MicroKernels`]): emitters ask for a kernel by its
//! shape while they build a function, and the module gets each distinct kernel once.
//!
//! Emitting a call needs a `FuncRef` before the kernel exists in the module (the emitters hold no
//! module), so [`MicroKernels::call`] names the callee by a placeholder (namespace
//! [`PLACEHOLDER_NAMESPACE`], index = the kernel's number here). [`MicroKernels::resolve`], run on
//! the finished function before the module compiles it, assembles and defines every kernel the
//! function calls that the module does not hold yet (`super::define_code`) and renames the
//! placeholders to the defined functions.

use super::activation::ActivationShape;
use super::f32_tile::F32TileShape;
use super::int8_tile::Int8TileShape;
use super::requant::RequantShape;
use super::{define_code, AsmError, WideIsa};
use crate::jit::error::JitError;
use crate::jit::isa::IsaFlags;
use crate::jit::options::JitOptions;
use cranelift_codegen::ir::{
    types, AbiParam, ExtFuncData, ExternalName, FuncRef, Function, InstBuilder, Signature,
    UserExternalName, Value,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::FunctionBuilder;
use cranelift_module::{FuncId, Module};
use std::collections::HashMap;

/// The external-name namespace of calls not yet resolved (cranelift-module names its functions
/// in namespace 0 and its data objects in 1).
pub const PLACEHOLDER_NAMESPACE: u32 = 0x4b57;

/// Arguments of every kernel: `(a, b, c, steps, bias)` for the tiles, `(p, vectors, bias, _, _)`
/// for the activations, `(acc, out, vectors, scale, _)` for the requantization; all i64.
pub const KERNEL_PARAMS: usize = 5;

/// One kernel a module calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelShape {
    F32(F32TileShape),
    Int8(Int8TileShape),
    Activation(ActivationShape),
    Requant(RequantShape),
}

impl KernelShape {
    fn describe(&self) -> String {
        match self {
            KernelShape::F32(s) => s.describe(),
            KernelShape::Int8(s) => s.describe(),
            KernelShape::Activation(s) => s.describe(),
            KernelShape::Requant(s) => s.describe(),
        }
    }

    fn assemble(&self) -> Result<Vec<u8>, AsmError> {
        match self {
            KernelShape::F32(s) => s.assemble(),
            KernelShape::Int8(s) => s.assemble(),
            KernelShape::Activation(s) => s.assemble(),
            KernelShape::Requant(s) => s.assemble(),
        }
    }
}

impl From<F32TileShape> for KernelShape {
    fn from(s: F32TileShape) -> KernelShape {
        KernelShape::F32(s)
    }
}

impl From<ActivationShape> for KernelShape {
    fn from(s: ActivationShape) -> KernelShape {
        KernelShape::Activation(s)
    }
}

impl From<RequantShape> for KernelShape {
    fn from(s: RequantShape) -> KernelShape {
        KernelShape::Requant(s)
    }
}

impl From<Int8TileShape> for KernelShape {
    fn from(s: Int8TileShape) -> KernelShape {
        KernelShape::Int8(s)
    }
}

/// The kernels of one module, by shape.
pub struct MicroKernels {
    isa: WideIsa,
    /// The target has a `vpdpbusd` of the same width (the int8 kernels).
    int8: Option<super::int8_tile::Int8Isa>,
    call_conv: CallConv,
    shapes: Vec<KernelShape>,
    index: HashMap<KernelShape, u32>,
    /// This function's `FuncRef` of each kernel it calls.
    in_function: HashMap<u32, FuncRef>,
    /// The module's function of each kernel defined so far.
    defined: HashMap<u32, FuncId>,
    /// Machine-code bytes of the kernels defined.
    pub code_bytes: usize,
    /// Each kernel defined: its function, bytes and what it computes (for profilers).
    pub symbols: Vec<(FuncId, usize, String)>,
}

impl MicroKernels {
    /// The kernels of a module for a target with `flags` and call convention `call_conv`: `None`
    /// when the target has no ISA wider than 128 bits or `opts.wide_kernels` is off.
    pub fn for_target(
        flags: &IsaFlags,
        opts: &JitOptions,
        call_conv: CallConv,
    ) -> Option<MicroKernels> {
        let isa = WideIsa::for_target(flags).filter(|_| opts.wide_kernels)?;
        let int8 = super::int8_tile::Int8Isa::for_target(flags).filter(|i| i.vectors() == isa);
        Some(MicroKernels {
            isa,
            int8,
            call_conv,
            shapes: Vec::new(),
            index: HashMap::new(),
            in_function: HashMap::new(),
            defined: HashMap::new(),
            code_bytes: 0,
            symbols: Vec::new(),
        })
    }

    pub fn isa(&self) -> WideIsa {
        self.isa
    }

    /// The int8 kernels' ISA, when the target has one as wide as [`MicroKernels::isa`].
    pub fn int8_isa(&self) -> Option<super::int8_tile::Int8Isa> {
        self.int8
    }

    /// Starts a new function: `FuncRef`s of the previous one are forgotten.
    pub fn begin_function(&mut self) {
        self.in_function.clear();
    }

    /// Emits `kernel(a, b, c, steps, bias)` for the kernel of `shape` (which must pass its
    /// `check`; the caller chose it so).
    pub fn call(
        &mut self,
        fb: &mut FunctionBuilder,
        shape: impl Into<KernelShape>,
        args: [Value; 5],
    ) {
        let shape = shape.into();
        let next = self.shapes.len() as u32;
        let id = *self.index.entry(shape).or_insert(next);
        if id == next {
            self.shapes.push(shape);
        }
        let func_ref = match self.in_function.get(&id) {
            Some(&f) => f,
            None => {
                let mut sig = Signature::new(self.call_conv);
                for _ in 0..KERNEL_PARAMS {
                    sig.params.push(AbiParam::new(types::I64));
                }
                let signature = fb.func.import_signature(sig);
                let name = fb
                    .func
                    .declare_imported_user_function(UserExternalName::new(
                        PLACEHOLDER_NAMESPACE,
                        id,
                    ));
                let f = fb.func.import_function(ExtFuncData {
                    name: ExternalName::user(name),
                    signature,
                    colocated: true,
                    patchable: false,
                });
                self.in_function.insert(id, f);
                f
            }
        };
        fb.ins().call(func_ref, &args);
    }

    /// Defines in `module` each kernel `func` calls that is not there yet (named
    /// `{prefix}_k{number}`), and points `func`'s calls at them.
    pub fn resolve<M: Module>(
        &mut self,
        module: &mut M,
        func: &mut Function,
        prefix: &str,
    ) -> Result<(), JitError> {
        let pending: Vec<_> = func
            .params
            .user_named_funcs()
            .iter()
            .filter(|(_, n)| n.namespace == PLACEHOLDER_NAMESPACE)
            .map(|(r, n)| (r, n.index))
            .collect();
        for (name_ref, id) in pending {
            let fid = match self.defined.get(&id) {
                Some(&f) => f,
                None => {
                    let code = self.shapes[id as usize].assemble()?;
                    let name = format!("{prefix}_k{id}");
                    let f = define_code(module, &name, KERNEL_PARAMS, &code).map_err(|reason| {
                        JitError::Codegen {
                            context: " (full-width micro-kernel)".into(),
                            reason,
                        }
                    })?;
                    self.code_bytes += code.len();
                    let what = format!("{name} {}", self.shapes[id as usize].describe());
                    self.symbols.push((f, code.len(), what));
                    self.defined.insert(id, f);
                    f
                }
            };
            func.params
                .reset_user_func_name(name_ref, UserExternalName::new(0, fid.as_u32()));
        }
        Ok(())
    }
}
