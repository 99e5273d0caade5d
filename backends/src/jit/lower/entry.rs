//! The exported entry function `{prefix}_entry(inputs, outputs, arena, parallel_for, pool) -> i32`
//! (see the module documentation of `super`): it calls the node functions in order and copies
//! the graph outputs no node writes directly.

use super::data::{codegen_error, entry_sig, parallel_for_sig, value_ptr, ModuleData};
use super::placement::{Loc, Placement};
use crate::jit::emit::Emitter;
use crate::jit::error::JitError;
use crate::jit::isa::IsaFlags;
use cranelift_codegen::ir::{types, Function, InstBuilder};
use cranelift_codegen::ir::{UserExternalName, UserFuncName};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{FuncId, Linkage, Module};
use kestrel_ir::{Graph, Tensor, ValueId};
use std::collections::HashMap;

/// Emits the entry function calling `calls` (each kernel node's function and task count) in
/// order; returns it and its machine-code bytes.
#[allow(clippy::too_many_arguments)]
pub(super) fn emit_entry<M: Module>(
    data: &mut ModuleData<M>,
    g: &Graph,
    placement: &Placement,
    consts: &HashMap<ValueId, Tensor>,
    flags: &IsaFlags,
    calls: &[(FuncId, usize)],
    fctx: &mut FunctionBuilderContext,
    ctx: &mut Context,
) -> Result<(FuncId, usize), JitError> {
    let loc = &placement.loc;
    let prefix = data.prefix.clone();
    let fcfg = data.module.isa().frontend_config();
    let entry_name = format!("{prefix}_entry");
    let entry = data
        .module
        .declare_function(&entry_name, Linkage::Export, &entry_sig(data.module))
        .map_err(|e| codegen_error(" (entry)", e))?;
    ctx.func = Function::with_name_signature(
        UserFuncName::User(UserExternalName::new(0, entry.as_u32())),
        entry_sig(data.module),
    );
    {
        let mut fb = FunctionBuilder::new(&mut ctx.func, fctx);
        let block = fb.create_block();
        fb.append_block_params_for_function_params(block);
        fb.switch_to_block(block);
        let params = fb.block_params(block).to_vec();
        let (par_for, pool) = (params[3], params[4]);
        // env = [inputs, outputs, arena], the context every node function receives.
        let env_slot = fb.create_sized_stack_slot(cranelift_codegen::ir::StackSlotData::new(
            cranelift_codegen::ir::StackSlotKind::ExplicitSlot,
            24,
            3,
        ));
        for (j, &p) in params[..3].iter().enumerate() {
            fb.ins().stack_store(types::I64, p, env_slot, 8 * j as i32);
        }
        let env = fb.ins().stack_addr(types::I64, env_slot, 0);
        let par_sig = fb.import_signature(parallel_for_sig(data.module));
        let mut e = Emitter::new(&mut fb, *flags);
        for &(f, tasks) in calls {
            let fref = data.module.declare_func_in_func(f, e.fb.func);
            if tasks == 1 {
                let zero = e.iconst(0);
                let call = e.fb.ins().call(fref, &[env, zero]);
                let st = e.fb.inst_results(call)[0];
                let bad = e.fb.create_block();
                let next = e.fb.create_block();
                e.fb.ins().brif(st, bad, &[], next, &[]);
                e.fb.switch_to_block(bad);
                e.fb.ins().return_(&[st]);
                e.fb.switch_to_block(next);
                continue;
            }
            // Split nodes: the host's parallel-for, or every task in turn when it is null.
            let serial = e.fb.create_block();
            let parallel = e.fb.create_block();
            let next = e.fb.create_block();
            e.fb.ins().brif(par_for, parallel, &[], serial, &[]);
            e.fb.switch_to_block(parallel);
            let task_fn = e.fb.ins().func_addr(types::I64, fref);
            let count = e.iconst(tasks as i64);
            e.fb.ins()
                .call_indirect(par_sig, par_for, &[pool, task_fn, env, count]);
            e.fb.ins().jump(next, &[]);
            e.fb.switch_to_block(serial);
            e.loop_n(tasks, |e, t| {
                e.fb.ins().call(fref, &[env, t]);
            });
            e.fb.ins().jump(next, &[]);
            e.fb.switch_to_block(next);
        }
        for (p, o) in g.outputs.iter().enumerate() {
            if loc[o.value.index()] == Some(Loc::Output(p)) {
                continue;
            }
            let ty = g.ty(o.value);
            let bytes = ty.numel().unwrap_or(0) * ty.dtype.size();
            let src = value_ptr(&mut e, data, &params, loc, consts, o.value)?;
            let dst = e.load(types::I64, params[1], (8 * p) as i32);
            e.memcpy(dst, src, bytes);
        }
        let zero = e.fb.ins().iconst(types::I32, 0);
        e.fb.ins().return_(&[zero]);
        fb.seal_all_blocks();
        fb.finalize(fcfg);
    }
    data.module
        .define_function(entry, ctx)
        .map_err(|e| codegen_error(" (entry)", format!("{e:?}")))?;
    let code_bytes = ctx
        .compiled_code()
        .map(|c| c.code_buffer().len())
        .unwrap_or(0);
    data.module.clear_context(ctx);
    Ok((entry, code_bytes))
}
