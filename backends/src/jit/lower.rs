//! Lowering a graph to Cranelift functions, generic over `cranelift_module::Module` so the JIT
//! (`JITModule`) and the ahead-of-time path (`ObjectModule`) share every line.
//!
//! What [`lower`] produces in the module:
//! - one read-only data object per constant a kernel reads at run time, and per table or packed
//!   weight a kernel builds at compile time (alignment 16, referenced by symbol: no host address
//!   is baked into the code);
//! - one function per compiled node, `{prefix}_n{index}(env, task) -> i32`, where `env` points
//!   at the three pointers `[inputs, outputs, arena]` and `task` is the task index: a node split
//!   into `tasks > 1` parallel tasks (large convolutions and matrix products, see
//!   [`JitOptions::threads`]) does the part `task` of its work, and these functions are what the
//!   host's parallel-for runs;
//! - the exported entry function `{prefix}_entry(inputs, outputs, arena, parallel_for, pool) ->
//!   i32` of `kestrel_runtime::abi`, which calls the node functions in order (a split node through
//!   `parallel_for(pool, node_fn, env, tasks)`, or in a loop on the calling thread when
//!   `parallel_for` is null) and then copies the graph outputs that no node writes directly
//!   (outputs that are inputs, constants, or repeated).
//!
//! It returns 0, or the status `k` of the first node that failed at run time (an index out of
//! range); `Lowered::status_nodes[k - 1]` names that node. Split nodes never fail at run time.
//! Nodes are classified first:
//! - *folded*: `Shape`/`Size` and nodes whose inputs are all constants are evaluated at compile
//!   time with the reference interpreter and become constants;
//! - *views*: `Reshape`/`Flatten`/`Squeeze`/`Unsqueeze`/`Identity` not producing a graph output
//!   share their input's storage (kernels never write their inputs, so sharing is safe);
//! - *kernels*: everything else gets a function; unsupported ones are a [`JitError`].

use super::context::{DataSink, Kx};
use super::emit::E;
use super::isa::IsaFlags;
use super::plan::{self, Buffer, MemoryPlan};
use super::{JitError, JitOptions};
use cranelift_codegen::ir::{
    types, AbiParam, Function, GlobalValue, InstBuilder, Signature, Value,
};
use cranelift_codegen::ir::{UserExternalName, UserFuncName};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module};
use kestrel_ir::{BinaryOp, DType, Graph, Node, NodeId, Op, Tensor, ValueDef, ValueId};
use std::collections::HashMap;

/// What [`lower`] produced.
pub struct Lowered {
    /// The entry function (see the module documentation for its signature).
    pub entry: FuncId,
    /// The arena plan: the caller provides `plan.size` bytes aligned to 64.
    pub plan: MemoryPlan,
    /// Description of the node behind each non-zero status (index = status - 1).
    pub status_nodes: Vec<(String, &'static str)>,
    /// Machine-code bytes of all functions.
    pub code_bytes: usize,
}

/// Where a value lives at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    /// Graph input number `.0` (read from the inputs array).
    Input(usize),
    /// Graph output number `.0` (written through the outputs array).
    Output(usize),
    /// Byte offset in the arena.
    Arena(usize),
    /// Constant data of this value (graph constant or folded), by symbol.
    Const(ValueId),
}

#[derive(Clone, Debug)]
enum Kind {
    Folded,
    View,
    /// A node with a function; `scratch` bytes serve all its `tasks` together.
    Kernel {
        scratch: usize,
        tasks: usize,
    },
}

struct ModData<'m, M: Module> {
    module: &'m mut M,
    prefix: String,
    count: usize,
    consts: HashMap<ValueId, DataId>,
}

fn cg(context: impl Into<String>, e: impl std::fmt::Display) -> JitError {
    JitError::Codegen {
        context: context.into(),
        reason: e.to_string(),
    }
}

impl<M: Module> ModData<'_, M> {
    fn define(&mut self, name: String, mut bytes: Vec<u8>) -> Result<DataId, JitError> {
        if bytes.is_empty() {
            bytes.push(0);
        }
        // Vector tails may read up to 16 bytes past a constant's last element.
        bytes.resize(bytes.len() + 16, 0);
        let id = self
            .module
            .declare_data(&name, Linkage::Local, false, false)
            .map_err(|e| cg(format!(" (data {name})"), e))?;
        let mut d = DataDescription::new();
        d.define(bytes.into_boxed_slice());
        d.set_align(16);
        self.module
            .define_data(id, &d)
            .map_err(|e| cg(format!(" (data {name})"), e))?;
        Ok(id)
    }
}

impl<M: Module> DataSink for ModData<'_, M> {
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
fn node_sig<M: Module>(module: &M) -> Signature {
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::I64));
    sig.returns.push(AbiParam::new(types::I32));
    sig
}

/// `(inputs, outputs, arena, parallel_for, pool) -> i32`: the entry function.
fn entry_sig<M: Module>(module: &M) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..5 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig.returns.push(AbiParam::new(types::I32));
    sig
}

/// `(pool, task, ctx, count)`: the host's parallel-for.
fn parallel_for_sig<M: Module>(module: &M) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..4 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig
}

/// Largest tensor folded at compile time (elements); bigger all-constant nodes are compiled.
const MAX_FOLD_ELEMS: usize = 1 << 22;

/// The values of `g` known at compile time, as [`lower`] computes them: the constants with data,
/// and the outputs of every node it evaluates at compile time with the interpreter (`Shape` and
/// `Size`, and nodes whose inputs are all known and whose outputs have at most
/// [`MAX_FOLD_ELEMS`] elements). Such nodes emit no code.
pub fn compile_time_values(g: &Graph) -> Result<HashMap<ValueId, Tensor>, JitError> {
    let mut consts: HashMap<ValueId, Tensor> = HashMap::new();
    for (i, v) in g.values.iter().enumerate() {
        if let ValueDef::Const(c) = &v.def {
            if let Some(t) = &c.data {
                consts.insert(ValueId(i as u32), t.clone());
            }
        }
    }
    for (i, node) in g.nodes.iter().enumerate() {
        let out_elems: usize = node
            .outputs
            .iter()
            .map(|&v| g.ty(v).numel().unwrap_or(usize::MAX))
            .sum();
        let all_const = node.inputs.iter().all(|v| consts.contains_key(v));
        let shape_only = matches!(node.op, Op::Shape { .. } | Op::Size);
        if shape_only || (all_const && out_elems <= MAX_FOLD_ELEMS) {
            let outs = fold(g, NodeId(i as u32), node, &consts)?;
            for (&v, t) in node.outputs.iter().zip(outs) {
                consts.insert(v, t);
            }
        }
    }
    Ok(consts)
}

/// Whether [`lower`] evaluates `node` at compile time (its outputs are in `consts`, the result of
/// [`compile_time_values`]).
pub fn is_folded(node: &Node, consts: &HashMap<ValueId, Tensor>) -> bool {
    !node.outputs.is_empty() && node.outputs.iter().all(|v| consts.contains_key(v))
}

/// Lowers `g` into `module` (see the module documentation). Every dimension must be known.
pub fn lower<M: Module>(
    module: &mut M,
    g: &Graph,
    flags: &IsaFlags,
    prefix: &str,
    opts: &JitOptions,
) -> Result<Lowered, JitError> {
    let n_nodes = g.nodes.len();
    let consts = compile_time_values(g)?;
    let mut kinds: Vec<Kind> = Vec::with_capacity(n_nodes);
    let graph_outputs: Vec<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    for (i, node) in g.nodes.iter().enumerate() {
        let id = NodeId(i as u32);
        if is_folded(node, &consts) {
            kinds.push(Kind::Folded);
            continue;
        }
        for &v in &node.inputs {
            if let ValueDef::Const(c) = &g.value(v).def {
                if c.data.is_none() {
                    return Err(JitError::ElidedConstant {
                        name: c.name.clone(),
                    });
                }
            }
        }
        if node.op.is_view() && !graph_outputs.contains(&node.outputs[0]) {
            kinds.push(Kind::View);
            continue;
        }
        let tasks = super::ops::task_count(g, node, opts);
        let scratch = super::ops::scratch_bytes(g, id, node, &consts, tasks, opts)?;
        kinds.push(Kind::Kernel { scratch, tasks });
    }
    for o in &g.outputs {
        if let ValueDef::Const(c) = &g.value(o.value).def {
            if c.data.is_none() {
                return Err(JitError::ElidedConstant {
                    name: c.name.clone(),
                });
            }
        }
    }

    // Locations and buffers.
    let mut loc: Vec<Option<Loc>> = vec![None; g.values.len()];
    for (pos, &v) in g.inputs.iter().enumerate() {
        loc[v.index()] = Some(Loc::Input(pos));
    }
    for &v in consts.keys() {
        loc[v.index()] = Some(Loc::Const(v));
    }
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut buffer_of: HashMap<ValueId, usize> = HashMap::new(); // root value -> buffer
    let mut root: Vec<ValueId> = (0..g.values.len() as u32).map(ValueId).collect();
    let mut scratch_buf: Vec<Option<usize>> = vec![None; n_nodes];
    let mut written_outputs: Vec<bool> = vec![false; g.outputs.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        match &kinds[i] {
            Kind::Folded => {}
            Kind::View => {
                let src = node.inputs[0];
                root[node.outputs[0].index()] = root[src.index()];
                loc[node.outputs[0].index()] = loc[src.index()];
            }
            Kind::Kernel { scratch, .. } => {
                for &v in &node.outputs {
                    let out_pos = g
                        .outputs
                        .iter()
                        .position(|o| o.value == v)
                        .filter(|&p| !written_outputs[p]);
                    if let Some(p) = out_pos {
                        written_outputs[p] = true;
                        loc[v.index()] = Some(Loc::Output(p));
                    } else {
                        let bytes = g.ty(v).numel().unwrap_or(0) * g.ty(v).dtype.size();
                        buffer_of.insert(v, buffers.len());
                        buffers.push(Buffer {
                            size: bytes,
                            first: i,
                            last: i,
                            scratch: false,
                        });
                        loc[v.index()] = Some(Loc::Arena(0));
                    }
                }
                if *scratch > 0 {
                    scratch_buf[i] = Some(buffers.len());
                    buffers.push(Buffer {
                        size: *scratch,
                        first: i,
                        last: i,
                        scratch: true,
                    });
                }
            }
        }
    }
    // Liveness: a use of a view extends its root's buffer.
    for (i, node) in g.nodes.iter().enumerate() {
        if !matches!(kinds[i], Kind::Kernel { .. }) {
            continue;
        }
        for &v in &node.inputs {
            if let Some(&b) = buffer_of.get(&root[v.index()]) {
                buffers[b].last = buffers[b].last.max(i);
            }
        }
    }
    for o in &g.outputs {
        if let Some(&b) = buffer_of.get(&root[o.value.index()]) {
            buffers[b].last = n_nodes;
        }
    }
    let mem = plan::plan(&buffers);
    for (&v, &b) in &buffer_of {
        loc[v.index()] = Some(Loc::Arena(mem.offsets[b]));
    }
    for (i, node) in g.nodes.iter().enumerate() {
        if let Kind::View = kinds[i] {
            loc[node.outputs[0].index()] = loc[node.inputs[0].index()];
        }
    }

    // Emission.
    let sig = node_sig(module);
    let fcfg = module.isa().frontend_config();
    let mut data = ModData {
        module,
        prefix: prefix.to_string(),
        count: 0,
        consts: HashMap::new(),
    };
    let mut fctx = FunctionBuilderContext::new();
    let mut ctx = data.module.make_context();
    let mut code_bytes = 0usize;
    let mut calls: Vec<(FuncId, usize)> = Vec::new();
    let mut status_nodes: Vec<(String, &'static str)> = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let Kind::Kernel { tasks, .. } = kinds[i] else {
            continue;
        };
        let id = NodeId(i as u32);
        let name = format!("{prefix}_n{i}");
        let fid = data
            .module
            .declare_function(&name, Linkage::Local, &sig)
            .map_err(|e| cg(format!(" ({name})"), e))?;
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
            let mut fb = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let block = fb.create_block();
            fb.append_block_params_for_function_params(block);
            fb.switch_to_block(block);
            let (env, task) = (fb.block_params(block)[0], fb.block_params(block)[1]);
            let mut e = E::new(&mut fb, *flags);
            let params: Vec<Value> = (0..3).map(|j| e.load(types::I64, env, 8 * j)).collect();
            let mut ins = Vec::new();
            for (j, &v) in node.inputs.iter().enumerate() {
                if reads_only_a_packed_copy(g, node, j, &consts) {
                    // Not emitted: the kernel packs its own copy at compile time.
                    ins.push(e.iconst(0));
                    continue;
                }
                ins.push(value_ptr(&mut e, &mut data, &params, &loc, &consts, v)?);
            }
            let mut outs = Vec::new();
            for &v in &node.outputs {
                outs.push(value_ptr(&mut e, &mut data, &params, &loc, &consts, v)?);
            }
            let scratch = scratch_buf[i].map(|b| e.addr(params[2], mem.offsets[b] as i64));
            let mut kx = Kx {
                g,
                id,
                node,
                ins,
                outs,
                scratch,
                consts: &consts,
                data: &mut data,
                status,
                opts,
                tasks,
                task,
            };
            super::ops::emit_node(&mut e, &mut kx)?;
            let zero = e.fb.ins().iconst(types::I32, 0);
            e.fb.ins().return_(&[zero]);
            fb.seal_all_blocks();
            fb.finalize(fcfg);
        }
        data.module
            .define_function(fid, &mut ctx)
            .map_err(|e| cg(format!(" ({})", g.describe_node(id)), format!("{e:?}")))?;
        code_bytes += ctx
            .compiled_code()
            .map(|c| c.code_buffer().len())
            .unwrap_or(0);
        data.module.clear_context(&mut ctx);
        calls.push((fid, tasks));
    }

    // Entry.
    let entry_name = format!("{prefix}_entry");
    let entry = data
        .module
        .declare_function(&entry_name, Linkage::Export, &entry_sig(data.module))
        .map_err(|e| cg(" (entry)", e))?;
    ctx.func = Function::with_name_signature(
        UserFuncName::User(UserExternalName::new(0, entry.as_u32())),
        entry_sig(data.module),
    );
    {
        let mut fb = FunctionBuilder::new(&mut ctx.func, &mut fctx);
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
        let mut e = E::new(&mut fb, *flags);
        for &(f, tasks) in &calls {
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
            let src = value_ptr(&mut e, &mut data, &params, &loc, &consts, o.value)?;
            let dst = e.load(types::I64, params[1], (8 * p) as i32);
            e.memcpy(dst, src, bytes);
        }
        let zero = e.fb.ins().iconst(types::I32, 0);
        e.fb.ins().return_(&[zero]);
        fb.seal_all_blocks();
        fb.finalize(fcfg);
    }
    data.module
        .define_function(entry, &mut ctx)
        .map_err(|e| cg(" (entry)", format!("{e:?}")))?;
    code_bytes += ctx
        .compiled_code()
        .map(|c| c.code_buffer().len())
        .unwrap_or(0);
    data.module.clear_context(&mut ctx);
    Ok(Lowered {
        entry,
        plan: mem,
        status_nodes,
        code_bytes,
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
        Op::Gemm(_) => true,
        Op::MatMul => {
            let b = g.ty(node.inputs[1]).dims().unwrap_or_default();
            b.len() <= 2 || b[..b.len() - 2].iter().all(|&d| d == 1)
        }
        _ => false,
    }
}

/// A pointer to the first element of `v` inside a node or entry function.
fn value_ptr(
    e: &mut E,
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
                .ok_or_else(|| cg("", "constant without data"))?;
            let gv = data.constant(e.fb.func, c, t)?;
            Ok(e.fb.ins().symbol_value(types::I64, gv))
        }
        None => Err(cg("", format!("value {v} has no location"))),
    }
}

/// Evaluates a node at compile time with the reference interpreter.
fn fold(
    g: &Graph,
    id: NodeId,
    node: &Node,
    consts: &HashMap<ValueId, Tensor>,
) -> Result<Vec<Tensor>, JitError> {
    let fail = |reason: String| JitError::Fold {
        node: g.describe_node(id),
        reason,
    };
    let args: Vec<Tensor> = match node.op {
        // Shape and Size read only the type; give the interpreter a zero-sized stand-in.
        Op::Shape { .. } | Op::Size => {
            let ty = g.ty(node.inputs[0]);
            let dims = ty.dims().unwrap_or_default();
            let n: usize = dims.iter().product();
            vec![
                Tensor::from_bytes(DType::U8, dims, bytes::Bytes::from(vec![0u8; n]))
                    .map_err(|e| fail(e.to_string()))?,
            ]
        }
        _ => node
            .inputs
            .iter()
            .map(|v| {
                consts
                    .get(v)
                    .cloned()
                    .ok_or_else(|| fail("input is not constant".into()))
            })
            .collect::<Result<_, _>>()?,
    };
    let refs: Vec<&Tensor> = args.iter().collect();
    crate::interp::eval_op(&node.op, &refs).map_err(|e| fail(e.to_string()))
}
