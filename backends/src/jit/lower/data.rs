//! The module side of lowering: read-only data objects ([`ModuleData`], the [`DataSink`] kernels
//! write into), the signatures of the generated functions, and where a value's pointer comes from
//! inside them ([`value_ptr`]).

use super::placement::Loc;
use crate::jit::context::DataSink;
use crate::jit::emit::Emitter;
use crate::jit::error::JitError;
use cranelift_codegen::ir::{
    types, AbiParam, Function, GlobalValue, InstBuilder, Signature, Value,
};
use cranelift_module::{DataDescription, DataId, Linkage, Module};
use kestrel_ir::{Tensor, ValueId};
use std::collections::HashMap;

pub(super) struct ModuleData<'m, M: Module> {
    pub module: &'m mut M,
    pub prefix: String,
    pub count: usize,
    pub consts: HashMap<ValueId, DataId>,
}

pub(super) fn codegen_error(context: impl Into<String>, e: impl std::fmt::Display) -> JitError {
    JitError::Codegen {
        context: context.into(),
        reason: e.to_string(),
    }
}

impl<M: Module> ModuleData<'_, M> {
    fn define(&mut self, name: String, mut bytes: Vec<u8>) -> Result<DataId, JitError> {
        if bytes.is_empty() {
            bytes.push(0);
        }
        // Vector tails may read up to 16 bytes past a constant's last element.
        bytes.resize(bytes.len() + 16, 0);
        let id = self
            .module
            .declare_data(&name, Linkage::Local, false, false)
            .map_err(|e| codegen_error(format!(" (data {name})"), e))?;
        let mut d = DataDescription::new();
        d.define(bytes.into_boxed_slice());
        d.set_align(16);
        self.module
            .define_data(id, &d)
            .map_err(|e| codegen_error(format!(" (data {name})"), e))?;
        Ok(id)
    }
}

impl<M: Module> DataSink for ModuleData<'_, M> {
    fn rodata(&mut self, func: &mut Function, bytes: Vec<u8>) -> Result<GlobalValue, JitError> {
        let name = format!("{}_d{}", self.prefix, self.count);
        self.count += 1;
        let id = self.define(name, bytes)?;
        Ok(self.module.declare_data_in_func(id, func))
    }

    fn constant(
        &mut self,
        func: &mut Function,
        v: ValueId,
        t: &Tensor,
    ) -> Result<GlobalValue, JitError> {
        let id = match self.consts.get(&v) {
            Some(&id) => id,
            None => {
                let name = format!("{}_c{}", self.prefix, v.0);
                let id = self.define(name, t.bytes().to_vec())?;
                self.consts.insert(v, id);
                id
            }
        };
        Ok(self.module.declare_data_in_func(id, func))
    }
}

/// `(env, task) -> i32`: node functions, and the task type of `parallel_for`.
pub(super) fn node_sig<M: Module>(module: &M) -> Signature {
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::I64));
    sig.returns.push(AbiParam::new(types::I32));
    sig
}

/// `(inputs, outputs, arena, parallel_for, pool) -> i32`: the entry function.
pub(super) fn entry_sig<M: Module>(module: &M) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..5 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig.returns.push(AbiParam::new(types::I32));
    sig
}

/// `(pool, task, ctx, count)`: the host's parallel-for.
pub(super) fn parallel_for_sig<M: Module>(module: &M) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..4 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig
}

/// A pointer to the first element of `v` inside a node or entry function.
pub(super) fn value_ptr(
    e: &mut Emitter,
    data: &mut dyn DataSink,
    params: &[Value],
    loc: &[Option<Loc>],
    consts: &HashMap<ValueId, Tensor>,
    v: ValueId,
) -> Result<Value, JitError> {
    match loc[v.index()] {
        Some(Loc::Input(p)) => Ok(e.load(types::I64, params[0], (8 * p) as i32)),
        Some(Loc::Output(p)) => Ok(e.load(types::I64, params[1], (8 * p) as i32)),
        Some(Loc::Arena(off)) => Ok(e.addr(params[2], off as i64)),
        Some(Loc::Const(c)) => {
            let t = consts
                .get(&c)
                .ok_or_else(|| codegen_error("", "constant without data"))?;
            let gv = data.constant(e.fb.func, c, t)?;
            Ok(e.fb.ins().symbol_value(types::I64, gv))
        }
        None => Err(codegen_error("", format!("value {v} has no location"))),
    }
}
