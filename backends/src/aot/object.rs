//! The object file of a shared object: the JIT's lowering ([`crate::jit::lower()`]) into a
//! `cranelift_object::ObjectModule`, plus what the C ABI (`docs/ABI.md`) adds around it:
//!
//! - `{prefix}_model`: the model descriptor (data, `kestrel_runtime::abi::ModelDesc`) with the
//!   tensor descriptors, names and status messages it points at;
//! - `{prefix}_check_cpu()`: on x86-64, CPUID/XGETBV tests of every feature the code was
//!   compiled for (hand-encoded, as CLIF has no `cpuid`), cached in a writable word; elsewhere 0;
//! - `{prefix}_run(inputs, outputs, workspace)` and `{prefix}_run_parallel(..., parallel_for,
//!   pool)`: check the CPU and the workspace, then call `{prefix}_entry`.
//!
//! Everything is Cranelift output or data: the object imports nothing.

use super::target::{Arch, CpuFeatures};
use super::AotError;
use crate::jit::{self, IsaFlags, JitOptions};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, AbiParam, Block, Function, InstBuilder, MemFlagsData, Signature, StackSlotData,
    StackSlotKind, UserFuncName, Value,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module};
use cranelift_object::{ObjectBuilder, ObjectModule};
use kestrel_ir::Graph;
use kestrel_runtime::abi::{
    self, ModelDesc, TensorDesc, ABI_VERSION, ARENA_ALIGN, ERR_CPU, ERR_WORKSPACE, MODEL_MAGIC,
};
use std::mem::{offset_of, size_of};

/// One graph input or output as the descriptor and the header describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoInfo {
    pub name: String,
    pub dtype: abi::DType,
    pub dims: Vec<usize>,
}

impl IoInfo {
    pub fn size_bytes(&self) -> usize {
        self.dims.iter().product::<usize>() * self.dtype.size()
    }
}

/// What the descriptor of a compiled model holds.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub prefix: String,
    pub graph_name: String,
    pub inputs: Vec<IoInfo>,
    pub outputs: Vec<IoInfo>,
    pub workspace_size: usize,
    pub tasks: usize,
    pub status: Vec<String>,
    pub target: &'static str,
    pub cpu: String,
}

type Result<T> = std::result::Result<T, AotError>;

/// [`AotError::Object`]: step `what` of writing the object file failed with `reason`.
fn object_error(what: impl Into<String>, reason: impl std::fmt::Display) -> AotError {
    AotError::Object {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// The object file and its description.
pub struct Emitted {
    pub object: Vec<u8>,
    pub info: ModelInfo,
    /// Machine-code bytes of every function (Cranelift's count, before linking).
    pub code_bytes: usize,
}

fn ir_dtype(dt: kestrel_ir::DType) -> abi::DType {
    use kestrel_ir::DType as D;
    match dt {
        D::F32 => abi::DType::F32,
        D::F64 => abi::DType::F64,
        D::F16 => abi::DType::F16,
        D::BF16 => abi::DType::BF16,
        D::I8 => abi::DType::I8,
        D::U8 => abi::DType::U8,
        D::I16 => abi::DType::I16,
        D::U16 => abi::DType::U16,
        D::I32 => abi::DType::I32,
        D::U32 => abi::DType::U32,
        D::I64 => abi::DType::I64,
        D::U64 => abi::DType::U64,
        D::Bool => abi::DType::Bool,
    }
}

/// The inputs and outputs of `g` (every dimension known).
pub fn io_of(g: &Graph) -> (Vec<IoInfo>, Vec<IoInfo>) {
    let io = |v: kestrel_ir::ValueId, name: String| {
        let ty = g.ty(v);
        IoInfo {
            name,
            dtype: ir_dtype(ty.dtype),
            dims: ty.dims().unwrap_or_default(),
        }
    };
    let inputs = g
        .inputs
        .iter()
        .enumerate()
        .map(|(i, &v)| io(v, g.value(v).name.clone().unwrap_or(format!("#{i}"))))
        .collect();
    let outputs = g
        .outputs
        .iter()
        .map(|o| io(o.value, o.name.clone()))
        .collect();
    (inputs, outputs)
}

/// Lowers `g` (prepared: every dimension known) for `cpu` and adds the ABI's symbols.
/// `scalar` rewrites the vector code lane by lane even when the target has vector registers
/// (always done when it has none); tests use it to check the rewrite natively.
pub fn emit_object(
    g: &Graph,
    cpu: &CpuFeatures,
    prefix: &str,
    opts: &JitOptions,
    scalar: bool,
) -> Result<Emitted> {
    let isa = cpu.isa()?;
    let flags = IsaFlags::from_isa(&*isa);
    let mut builder = ObjectBuilder::new(isa, prefix, cranelift_module::default_libcall_names())
        .map_err(|e| object_error("creating the object file", e))?;
    // One section per data object, so that the linker drops constants no code references
    // (`--gc-sections`; for example weights a kernel only reads in packed form).
    builder.per_data_object_section(true);
    let mut module = ObjectModule::new(builder);
    let lowered = if flags.has_simd() && !scalar {
        jit::lower(&mut module, g, &flags, prefix, opts)?
    } else {
        // riscv64 without V: the kernels' vector code is rewritten lane by lane.
        let flags = IsaFlags {
            scalarized: true,
            ..flags
        };
        let mut scalar = super::scalarize::Scalarize { inner: &mut module };
        jit::lower(&mut scalar, g, &flags, prefix, opts)?
    };
    let (inputs, outputs) = io_of(g);
    let info = ModelInfo {
        prefix: prefix.to_string(),
        graph_name: g.name.clone(),
        inputs,
        outputs,
        workspace_size: lowered.plan.size,
        tasks: opts.threads.max(1),
        status: lowered
            .status_nodes
            .iter()
            .map(|(node, reason)| format!("{node}: {reason}"))
            .collect(),
        target: cpu.arch.triple(),
        cpu: cpu.describe(),
    };
    let mut fctx = FunctionBuilderContext::new();
    let mut code_bytes = lowered.code_bytes;
    let check = define_check_cpu(&mut module, &mut fctx, cpu, prefix, &mut code_bytes)?;
    for parallel in [false, true] {
        define_run(
            &mut module,
            &mut fctx,
            prefix,
            parallel,
            lowered.entry,
            check,
            info.workspace_size,
            &mut code_bytes,
        )?;
    }
    define_descriptor(&mut module, &info)?;
    let object = module
        .finish()
        .emit()
        .map_err(|e| object_error("writing the object file", e))?;
    Ok(Emitted {
        object,
        info,
        code_bytes,
    })
}

/// Builds and defines function `id`: `body` receives the builder and the entry block (whose
/// parameters are the function's), and must end every block.
fn define_fn(
    module: &mut ObjectModule,
    fctx: &mut FunctionBuilderContext,
    id: FuncId,
    sig: Signature,
    code_bytes: &mut usize,
    body: impl FnOnce(&mut FunctionBuilder, &mut ObjectModule, Block) -> Result<()>,
) -> Result<()> {
    let mut ctx = module.make_context();
    ctx.func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
    let fcfg = module.isa().frontend_config();
    {
        let mut fb = FunctionBuilder::new(&mut ctx.func, fctx);
        let block = fb.create_block();
        fb.append_block_params_for_function_params(block);
        fb.switch_to_block(block);
        body(&mut fb, module, block)?;
        fb.seal_all_blocks();
        fb.finalize(fcfg);
    }
    module
        .define_function(id, &mut ctx)
        .map_err(|e| object_error("code generation of the ABI wrappers", format!("{e:?}")))?;
    *code_bytes += ctx
        .compiled_code()
        .map(|c| c.code_buffer().len())
        .unwrap_or(0);
    module.clear_context(&mut ctx);
    Ok(())
}

fn sig(module: &ObjectModule, params: &[types::Type], ret: Option<types::Type>) -> Signature {
    let mut s = module.make_signature();
    s.params.extend(params.iter().map(|&t| AbiParam::new(t)));
    s.returns.extend(ret.map(AbiParam::new));
    s
}

/// An `iconst.i32` of `n` (immediates of narrow types are given zero-extended).
fn i32c(fb: &mut FunctionBuilder, n: i32) -> Value {
    fb.ins().iconst(types::I32, n as u32 as i64)
}

fn mf() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// `cpuid(leaf: u32, subleaf: u32, out: *mut [u32; 4])` (System V): writes eax, ebx, ecx, edx.
const CPUID_FN: &[u8] = &[
    0x53, // push rbx (callee-saved, clobbered by cpuid)
    0x49, 0x89, 0xd0, // mov r8, rdx
    0x89, 0xf8, // mov eax, edi
    0x89, 0xf1, // mov ecx, esi
    0x0f, 0xa2, // cpuid
    0x41, 0x89, 0x00, // mov [r8], eax
    0x41, 0x89, 0x58, 0x04, // mov [r8+4], ebx
    0x41, 0x89, 0x48, 0x08, // mov [r8+8], ecx
    0x41, 0x89, 0x50, 0x0c, // mov [r8+12], edx
    0x5b, // pop rbx
    0xc3, // ret
];

/// `xgetbv0() -> u64`: XCR0 (call only when CPUID.1:ECX.OSXSAVE is set).
const XGETBV_FN: &[u8] = &[
    0x31, 0xc9, // xor ecx, ecx
    0x0f, 0x01, 0xd0, // xgetbv
    0x48, 0xc1, 0xe2, 0x20, // shl rdx, 32
    0x48, 0x09, 0xd0, // or rax, rdx
    0xc3, // ret
];

/// `{prefix}_check_cpu() -> i32`: 0 when the CPU has every feature the code was compiled for,
/// [`ERR_CPU`] otherwise. On x86-64 the answer is computed once and cached in a writable word
/// (0 = not yet known, 1 = yes, -1 = no); concurrent first calls compute the same answer.
fn define_check_cpu(
    module: &mut ObjectModule,
    fctx: &mut FunctionBuilderContext,
    cpu: &CpuFeatures,
    prefix: &str,
    code_bytes: &mut usize,
) -> Result<FuncId> {
    let name = format!("{prefix}_check_cpu");
    let s = sig(module, &[], Some(types::I32));
    let id = module
        .declare_function(&name, Linkage::Export, &s)
        .map_err(|e| object_error(&name, e))?;
    let (groups, xcr0) = cpu.cpuid_requirements();
    if cpu.arch != Arch::X86_64 || (groups.is_empty() && xcr0 == 0) {
        define_fn(module, fctx, id, s, code_bytes, |fb, _, _| {
            let zero = i32c(fb, 0);
            fb.ins().return_(&[zero]);
            Ok(())
        })?;
        return Ok(id);
    }
    let cpuid_sig = sig(module, &[types::I32, types::I32, types::I64], None);
    let cpuid = module
        .declare_function(&format!("{prefix}__cpuid"), Linkage::Local, &cpuid_sig)
        .map_err(|e| object_error("cpuid", e))?;
    module
        .define_function_bytes(cpuid, 16, CPUID_FN, &[])
        .map_err(|e| object_error("cpuid", e))?;
    let xgetbv_sig = sig(module, &[], Some(types::I64));
    let xgetbv = module
        .declare_function(&format!("{prefix}__xgetbv"), Linkage::Local, &xgetbv_sig)
        .map_err(|e| object_error("xgetbv", e))?;
    module
        .define_function_bytes(xgetbv, 16, XGETBV_FN, &[])
        .map_err(|e| object_error("xgetbv", e))?;
    let state = module
        .declare_data(&format!("{prefix}__cpu_state"), Linkage::Local, true, false)
        .map_err(|e| object_error("cpu state", e))?;
    let mut d = DataDescription::new();
    d.define_zeroinit(8);
    d.set_align(8);
    module
        .define_data(state, &d)
        .map_err(|e| object_error("cpu state", e))?;

    define_fn(module, fctx, id, s, code_bytes, |fb, module, _| {
        let gv = module.declare_data_in_func(state, fb.func);
        let state_ptr = fb.ins().symbol_value(types::I64, gv);
        let known = fb.ins().load(types::I32, mf(), state_ptr, 0);
        let compute = fb.create_block();
        let cached = fb.create_block();
        fb.ins().brif(known, cached, &[], compute, &[]);

        // Cached: 1 -> 0, -1 -> ERR_CPU.
        fb.switch_to_block(cached);
        let one = i32c(fb, 1);
        let ok = fb.ins().icmp(IntCC::Equal, known, one);
        let zero = i32c(fb, 0);
        let err = i32c(fb, ERR_CPU);
        let r = fb.ins().select(ok, zero, err);
        fb.ins().return_(&[r]);

        fb.switch_to_block(compute);
        let fail = fb.create_block();
        let slot =
            fb.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 16, 4));
        let buf = fb.ins().stack_addr(types::I64, slot, 0);
        let cpuid_ref = module.declare_func_in_func(cpuid, fb.func);
        let call_cpuid = |fb: &mut FunctionBuilder, leaf: u32, sub: u32| {
            let l = fb.ins().iconst(types::I32, leaf as i64);
            let s = fb.ins().iconst(types::I32, sub as i64);
            fb.ins().call(cpuid_ref, &[l, s, buf]);
        };
        call_cpuid(fb, 0, 0);
        let max_basic = fb.ins().load(types::I32, mf(), buf, 0);
        let max_ext = if groups.iter().any(|((leaf, _), _)| *leaf >= 0x8000_0000) {
            call_cpuid(fb, 0x8000_0000, 0);
            Some(fb.ins().load(types::I32, mf(), buf, 0))
        } else {
            None
        };
        for ((leaf, sub), regs) in &groups {
            // A leaf above the maximum returns unrelated data: treat it as "no".
            let max = if *leaf >= 0x8000_0000 {
                max_ext.expect("read above")
            } else {
                max_basic
            };
            let l = fb.ins().iconst(types::I32, *leaf as i64);
            let present = fb.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, max, l);
            let next = fb.create_block();
            fb.ins().brif(present, next, &[], fail, &[]);
            fb.switch_to_block(next);
            call_cpuid(fb, *leaf, *sub);
            for &(reg, mask) in regs {
                let v = fb.ins().load(types::I32, mf(), buf, 4 * reg as i32);
                let m = fb.ins().iconst(types::I32, mask as i64);
                let bits = fb.ins().band(v, m);
                let all = fb.ins().icmp(IntCC::Equal, bits, m);
                let next = fb.create_block();
                fb.ins().brif(all, next, &[], fail, &[]);
                fb.switch_to_block(next);
            }
        }
        if xcr0 != 0 {
            let xref = module.declare_func_in_func(xgetbv, fb.func);
            let call = fb.ins().call(xref, &[]);
            let x = fb.inst_results(call)[0];
            let m = fb.ins().iconst(types::I64, xcr0 as i64);
            let bits = fb.ins().band(x, m);
            let all = fb.ins().icmp(IntCC::Equal, bits, m);
            let next = fb.create_block();
            fb.ins().brif(all, next, &[], fail, &[]);
            fb.switch_to_block(next);
        }
        let one = i32c(fb, 1);
        fb.ins().store(mf(), one, state_ptr, 0);
        let zero = i32c(fb, 0);
        fb.ins().return_(&[zero]);

        fb.switch_to_block(fail);
        let err = i32c(fb, ERR_CPU);
        fb.ins().store(mf(), err, state_ptr, 0);
        fb.ins().return_(&[err]);
        Ok(())
    })?;
    Ok(id)
}

/// `{prefix}_run(inputs, outputs, workspace)` or `{prefix}_run_parallel(inputs, outputs,
/// workspace, parallel_for, pool)`.
#[allow(clippy::too_many_arguments)]
fn define_run(
    module: &mut ObjectModule,
    fctx: &mut FunctionBuilderContext,
    prefix: &str,
    parallel: bool,
    entry: FuncId,
    check: FuncId,
    workspace_size: usize,
    code_bytes: &mut usize,
) -> Result<()> {
    let name = if parallel {
        format!("{prefix}_run_parallel")
    } else {
        format!("{prefix}_run")
    };
    let n = if parallel { 5 } else { 3 };
    let s = sig(module, &vec![types::I64; n], Some(types::I32));
    let id = module
        .declare_function(&name, Linkage::Export, &s)
        .map_err(|e| object_error(&name, e))?;
    define_fn(module, fctx, id, s, code_bytes, |fb, module, block| {
        let params = fb.block_params(block).to_vec();
        let check_ref = module.declare_func_in_func(check, fb.func);
        let call = fb.ins().call(check_ref, &[]);
        let st = fb.inst_results(call)[0];
        let bad_cpu = fb.create_block();
        let cont = fb.create_block();
        fb.ins().brif(st, bad_cpu, &[], cont, &[]);
        fb.switch_to_block(bad_cpu);
        fb.ins().return_(&[st]);
        fb.switch_to_block(cont);
        let ws = params[2];
        if workspace_size > 0 {
            let zero = fb.ins().iconst(types::I64, 0);
            let null = fb.ins().icmp(IntCC::Equal, ws, zero);
            let mask = fb.ins().iconst(types::I64, ARENA_ALIGN as i64 - 1);
            let low = fb.ins().band(ws, mask);
            let misaligned = fb.ins().icmp(IntCC::NotEqual, low, zero);
            let bad = fb.ins().bor(null, misaligned);
            let bad_ws = fb.create_block();
            let go = fb.create_block();
            fb.ins().brif(bad, bad_ws, &[], go, &[]);
            fb.switch_to_block(bad_ws);
            let err = i32c(fb, ERR_WORKSPACE);
            fb.ins().return_(&[err]);
            fb.switch_to_block(go);
        }
        let (pf, pool) = if parallel {
            (params[3], params[4])
        } else {
            let zero = fb.ins().iconst(types::I64, 0);
            (zero, zero)
        };
        let entry_ref = module.declare_func_in_func(entry, fb.func);
        let call = fb
            .ins()
            .call(entry_ref, &[params[0], params[1], ws, pf, pool]);
        let r = fb.inst_results(call)[0];
        fb.ins().return_(&[r]);
        Ok(())
    })
}

/// Read-only data builder: objects named `{prefix}__m{n}` holding bytes and pointers.
struct Rodata<'m> {
    module: &'m mut ObjectModule,
    prefix: String,
    count: usize,
}

impl Rodata<'_> {
    /// Defines a data object of `bytes` where each `(offset, target)` is a pointer to `target`.
    fn define(
        &mut self,
        name: Option<&str>,
        bytes: Vec<u8>,
        pointers: &[(usize, DataId)],
        align: u64,
    ) -> Result<DataId> {
        let (name, linkage) = match name {
            Some(n) => (n.to_string(), Linkage::Export),
            None => {
                self.count += 1;
                (format!("{}__m{}", self.prefix, self.count), Linkage::Local)
            }
        };
        let id = self
            .module
            .declare_data(&name, linkage, false, false)
            .map_err(|e| object_error(&name, e))?;
        let mut d = DataDescription::new();
        let mut bytes = bytes;
        if bytes.is_empty() {
            bytes.push(0);
        }
        d.define(bytes.into_boxed_slice());
        d.set_align(align);
        for &(offset, target) in pointers {
            let gv = self.module.declare_data_in_data(target, &mut d);
            d.write_data_addr(offset as u32, gv, 0);
        }
        self.module
            .define_data(id, &d)
            .map_err(|e| object_error(format!("defining the model descriptor: {name}"), e))?;
        Ok(id)
    }

    fn string(&mut self, s: &str) -> Result<DataId> {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.define(None, b, &[], 1)
    }

    fn tensors(&mut self, list: &[IoInfo]) -> Result<DataId> {
        let stride = size_of::<TensorDesc>();
        let mut bytes = vec![0u8; stride * list.len().max(1)];
        let mut ptrs = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let base = i * stride;
            let name = self.string(&t.name)?;
            let shape: Vec<u8> = t
                .dims
                .iter()
                .flat_map(|&d| (d as i64).to_le_bytes())
                .collect();
            let shape = self.define(None, shape, &[], 8)?;
            ptrs.push((base + offset_of!(TensorDesc, name), name));
            ptrs.push((base + offset_of!(TensorDesc, shape), shape));
            put(
                &mut bytes,
                base + offset_of!(TensorDesc, dtype),
                &(t.dtype as i32).to_le_bytes(),
            );
            put(
                &mut bytes,
                base + offset_of!(TensorDesc, rank),
                &(t.dims.len() as i32).to_le_bytes(),
            );
            put(
                &mut bytes,
                base + offset_of!(TensorDesc, size_bytes),
                &(t.size_bytes() as u64).to_le_bytes(),
            );
        }
        self.define(None, bytes, &ptrs, 8)
    }
}

fn put(bytes: &mut [u8], at: usize, v: &[u8]) {
    bytes[at..at + v.len()].copy_from_slice(v);
}

/// `{prefix}_model` and everything it points at.
fn define_descriptor(module: &mut ObjectModule, info: &ModelInfo) -> Result<()> {
    let mut r = Rodata {
        module,
        prefix: info.prefix.clone(),
        count: 0,
    };
    let inputs = r.tensors(&info.inputs)?;
    let outputs = r.tensors(&info.outputs)?;
    let mut status_ptrs = Vec::new();
    for (k, msg) in info.status.iter().enumerate() {
        status_ptrs.push((8 * k, r.string(msg)?));
    }
    let status = r.define(
        None,
        vec![0u8; 8 * info.status.len().max(1)],
        &status_ptrs,
        8,
    )?;
    let name = r.string(&info.graph_name)?;
    let target = r.string(info.target)?;
    let cpu = r.string(&info.cpu)?;
    let mut bytes = vec![0u8; size_of::<ModelDesc>()];
    put(
        &mut bytes,
        offset_of!(ModelDesc, magic),
        &MODEL_MAGIC.to_le_bytes(),
    );
    put(
        &mut bytes,
        offset_of!(ModelDesc, abi_version),
        &ABI_VERSION.to_le_bytes(),
    );
    put(
        &mut bytes,
        offset_of!(ModelDesc, workspace_size),
        &(info.workspace_size as u64).to_le_bytes(),
    );
    put(
        &mut bytes,
        offset_of!(ModelDesc, workspace_align),
        &(ARENA_ALIGN as u64).to_le_bytes(),
    );
    put(
        &mut bytes,
        offset_of!(ModelDesc, num_inputs),
        &(info.inputs.len() as u32).to_le_bytes(),
    );
    put(
        &mut bytes,
        offset_of!(ModelDesc, num_outputs),
        &(info.outputs.len() as u32).to_le_bytes(),
    );
    put(
        &mut bytes,
        offset_of!(ModelDesc, num_tasks),
        &(info.tasks as u32).to_le_bytes(),
    );
    put(
        &mut bytes,
        offset_of!(ModelDesc, num_status),
        &(info.status.len() as u32).to_le_bytes(),
    );
    let ptrs = [
        (offset_of!(ModelDesc, inputs), inputs),
        (offset_of!(ModelDesc, outputs), outputs),
        (offset_of!(ModelDesc, status_messages), status),
        (offset_of!(ModelDesc, name), name),
        (offset_of!(ModelDesc, target), target),
        (offset_of!(ModelDesc, cpu_features), cpu),
    ];
    let model_name = format!("{}_model", info.prefix);
    r.define(Some(&model_name), bytes, &ptrs, 8)?;
    Ok(())
}
