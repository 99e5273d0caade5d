//! One function per kernel node, `{prefix}_n{index}(env, task) -> i32` (see the module
//! documentation of `super`): the pointers of its inputs, outputs and scratch are computed from
//! `env`, then the node's op lowering (`crate::jit::ops::emit_node`) emits the body.

use super::data::{codegen_error, node_sig, value_ptr, ModuleData};
use super::placement::{Kind, Placement};
use crate::jit::asm::registry::MicroKernels;
use crate::jit::context::KernelContext;
use crate::jit::emit::Emitter;
use crate::jit::error::JitError;
use crate::jit::isa::IsaFlags;
use crate::jit::options::JitOptions;
use cranelift_codegen::ir::{types, Function, InstBuilder, Value};
use cranelift_codegen::ir::{UserExternalName, UserFuncName};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{FuncId, Linkage, Module};
use kestrel_ir::{BinaryOp, Graph, Node, NodeId, Op, Tensor, ValueId};
use std::collections::HashMap;

/// The node functions, in graph order.
pub(super) struct NodeFunctions {
    /// Each kernel node's function and task count.
    pub calls: Vec<(FuncId, usize)>,
    /// Description of the node behind each non-zero status (index = status - 1).
    pub status_nodes: Vec<(String, &'static str)>,
    /// Machine-code bytes of the node functions.
    pub code_bytes: usize,
    /// Every function defined (node functions and micro-kernels): its id, bytes and a label.
    pub symbols: Vec<(FuncId, usize, String)>,
}

/// Emits the function of every kernel node of `g`.
#[allow(clippy::too_many_arguments)]
pub(super) fn emit_node_functions<M: Module>(
    data: &mut ModuleData<M>,
    g: &Graph,
    placement: &Placement,
    consts: &HashMap<ValueId, Tensor>,
    flags: &IsaFlags,
    opts: &JitOptions,
    fctx: &mut FunctionBuilderContext,
    ctx: &mut Context,
) -> Result<NodeFunctions, JitError> {
    let loc = &placement.loc;
    let sig = node_sig(data.module);
    let fcfg = data.module.isa().frontend_config();
    let prefix = data.prefix.clone();
    let mut code_bytes = 0usize;
    let mut calls: Vec<(FuncId, usize)> = Vec::new();
    let mut status_nodes: Vec<(String, &'static str)> = Vec::new();
    let mut symbols: Vec<(FuncId, usize, String)> = Vec::new();
    let call_conv = data.module.isa().default_call_conv();
    let mut micro = MicroKernels::for_target(flags, opts, call_conv);
    for (i, node) in g.nodes.iter().enumerate() {
        let Kind::Kernel { tasks, .. } = placement.kinds[i] else {
            continue;
        };
        let id = NodeId(i as u32);
        let name = format!("{prefix}_n{i}");
        let fid = data
            .module
            .declare_function(&name, Linkage::Local, &sig)
            .map_err(|e| codegen_error(format!(" ({name})"), e))?;
        ctx.func = Function::with_name_signature(
            UserFuncName::User(UserExternalName::new(0, fid.as_u32())),
            sig.clone(),
        );
        // The only run-time failures generated code reports: integer division by zero in
        // division-like ops, and out-of-range indices everywhere else.
        let reason = match g.node(id).op {
            Op::Binary(BinaryOp::Div | BinaryOp::Mod | BinaryOp::Fmod) => {
                "integer division by zero"
            }
            _ => "an index is out of range",
        };
        status_nodes.push((g.describe_node(id), reason));
        let status = status_nodes.len() as i32;
        {
            let mut fb = FunctionBuilder::new(&mut ctx.func, fctx);
            let block = fb.create_block();
            fb.append_block_params_for_function_params(block);
            fb.switch_to_block(block);
            let (env, task) = (fb.block_params(block)[0], fb.block_params(block)[1]);
            let mut e = Emitter::new(&mut fb, *flags);
            if let Some(m) = micro.as_mut() {
                m.begin_function();
                e.micro = Some(m);
            }
            let params: Vec<Value> = (0..3).map(|j| e.load(types::I64, env, 8 * j)).collect();
            let mut ins = Vec::new();
            for (j, &v) in node.inputs.iter().enumerate() {
                if reads_only_a_packed_copy(g, node, j, consts) {
                    // Not emitted: the kernel packs its own copy at compile time.
                    ins.push(e.iconst(0));
                    continue;
                }
                ins.push(value_ptr(&mut e, data, &params, loc, consts, v)?);
            }
            let mut outs = Vec::new();
            for &v in &node.outputs {
                outs.push(value_ptr(&mut e, data, &params, loc, consts, v)?);
            }
            let scratch = placement.scratch_offset[i].map(|off| e.addr(params[2], off as i64));
            let mut kx = KernelContext {
                g,
                id,
                node,
                ins,
                outs,
                scratch,
                consts,
                data: &mut *data,
                status,
                opts,
                tasks,
                task,
            };
            crate::jit::ops::emit_node(&mut e, &mut kx)?;
            let zero = e.fb.ins().iconst(types::I32, 0);
            e.fb.ins().return_(&[zero]);
            fb.seal_all_blocks();
            fb.finalize(fcfg);
        }
        if let Some(m) = micro.as_mut() {
            m.resolve(data.module, &mut ctx.func, &prefix)?;
        }
        data.module
            .define_function(fid, ctx)
            .map_err(|e| codegen_error(format!(" ({})", g.describe_node(id)), format!("{e:?}")))?;
        let bytes = ctx
            .compiled_code()
            .map(|c| c.code_buffer().len())
            .unwrap_or(0);
        code_bytes += bytes;
        symbols.push((fid, bytes, format!("{prefix}_n{i} {}", g.describe_node(id))));
        data.module.clear_context(ctx);
        calls.push((fid, tasks));
    }
    if let Some(m) = micro {
        code_bytes += m.code_bytes;
        symbols.extend(m.symbols);
    }
    Ok(NodeFunctions {
        calls,
        status_nodes,
        code_bytes,
        symbols,
    })
}

/// Whether the kernel of `node` reads its constant input `j` only through a copy packed at compile
/// time (a Gemm's constant B; a MatMul's constant B shared by every batch), so the constant itself
/// is not emitted as data: the packed copy is the only one in the module. Must agree with
/// `matmul::gemm` and `matmul::matmul`.
fn reads_only_a_packed_copy(
    g: &Graph,
    node: &Node,
    j: usize,
    consts: &HashMap<ValueId, Tensor>,
) -> bool {
    if j != 1 || !consts.contains_key(&node.inputs[1]) {
        return false;
    }
    match node.op {
        Op::Gemm(ref a) => {
            a.integer.is_none() || crate::jit::ops::integer::gemm_reads_packed_weights(g, node)
        }
        Op::MatMul => {
            let b = g.ty(node.inputs[1]).dims().unwrap_or_default();
            b.len() <= 2 || b[..b.len() - 2].iter().all(|&d| d == 1)
        }
        _ => false,
    }
}
