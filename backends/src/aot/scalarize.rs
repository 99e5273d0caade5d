//! Vector legalisation for targets without vector registers (riscv64 without V).
//!
//! The kernels of `kestrel_backends::jit` are written on 128-bit vector types (`F32X4`, `I32X4`,
//! `I8X16`), which Cranelift cannot lower on riscv64 without the V extension (it panics). This
//! module rewrites each function before Cranelift compiles it: every vector value becomes its
//! lanes as scalar values, every lane-wise instruction one scalar instruction per lane, vector
//! loads and stores one access per lane, vector block parameters one parameter per lane. The
//! arithmetic per lane is the same IEEE operation, so results equal the vector code's.
//!
//! [`Scalarize`] wraps a `cranelift_module::Module` and applies the rewrite in
//! `define_function`, so the shared lowering needs no change. An instruction the rewrite does not
//! know is a [`ScalarizeError`] naming its opcode, never a Cranelift panic.

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::cursor::{Cursor, FuncCursor};
use cranelift_codegen::ir::instructions::BlockArg;
use cranelift_codegen::ir::InstBuilderBase;
use cranelift_codegen::ir::{
    self, immediates::Offset32, types, Block, BlockCall, Function, Inst, InstBuilder,
    InstructionData, MemFlagsData, Opcode, StackSlotData, StackSlotKind, Type, Value,
};
use cranelift_codegen::{isa, Context};
use cranelift_module::{
    DataDescription, DataId, FuncId, Linkage, Module, ModuleDeclarations, ModuleError, ModuleReloc,
    ModuleResult,
};
use std::collections::{HashMap, HashSet};

/// Why a function could not be scalarised: a kernel emitted vector code this rewrite does not
/// handle (a bug in the kernel or here, never a property of the user's model).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScalarizeError {
    /// An instruction on vectors that has no lane-by-lane form here.
    #[error(
        "scalarising vector code: no scalar form for `{opcode}` on vectors (a kernel needs a scalar path)"
    )]
    NoScalarForm { opcode: String },
    /// A vector value used before the instruction defining it was rewritten.
    #[error("scalarising vector code: vector value {value} used before its definition")]
    UseBeforeDefinition { value: String },
    /// An instruction whose types or format contradict its opcode.
    #[error("scalarising vector code: {reason}")]
    Malformed { reason: String },
}

fn malformed(reason: impl Into<String>) -> ScalarizeError {
    ScalarizeError::Malformed {
        reason: reason.into(),
    }
}

/// A module whose functions are scalarised before compilation (see the module documentation).
pub struct Scalarize<'m, M: Module> {
    pub inner: &'m mut M,
}

impl<M: Module> Module for Scalarize<'_, M> {
    fn isa(&self) -> &dyn isa::TargetIsa {
        self.inner.isa()
    }
    fn declarations(&self) -> &ModuleDeclarations {
        self.inner.declarations()
    }
    fn declare_function(
        &mut self,
        name: &str,
        linkage: Linkage,
        signature: &ir::Signature,
    ) -> ModuleResult<FuncId> {
        self.inner.declare_function(name, linkage, signature)
    }
    fn declare_anonymous_function(&mut self, signature: &ir::Signature) -> ModuleResult<FuncId> {
        self.inner.declare_anonymous_function(signature)
    }
    fn declare_data(
        &mut self,
        name: &str,
        linkage: Linkage,
        writable: bool,
        tls: bool,
    ) -> ModuleResult<DataId> {
        self.inner.declare_data(name, linkage, writable, tls)
    }
    fn declare_anonymous_data(&mut self, writable: bool, tls: bool) -> ModuleResult<DataId> {
        self.inner.declare_anonymous_data(writable, tls)
    }
    fn define_function_with_control_plane(
        &mut self,
        func: FuncId,
        ctx: &mut Context,
        ctrl_plane: &mut ControlPlane,
    ) -> ModuleResult<()> {
        scalarize(&mut ctx.func).map_err(|e| ModuleError::Backend(e.into()))?;
        self.inner
            .define_function_with_control_plane(func, ctx, ctrl_plane)
    }
    fn define_function_bytes(
        &mut self,
        func_id: FuncId,
        alignment: u64,
        bytes: &[u8],
        relocs: &[ModuleReloc],
    ) -> ModuleResult<()> {
        self.inner
            .define_function_bytes(func_id, alignment, bytes, relocs)
    }
    fn define_data(&mut self, data_id: DataId, data: &DataDescription) -> ModuleResult<()> {
        self.inner.define_data(data_id, data)
    }
}

/// Blocks in reverse post-order from the entry (definitions before uses), then the unreachable
/// ones in layout order.
fn block_order(func: &Function) -> Vec<Block> {
    let Some(entry) = func.layout.entry_block() else {
        return Vec::new();
    };
    let succs = |b: Block| -> Vec<Block> {
        let Some(term) = func.layout.last_inst(b) else {
            return Vec::new();
        };
        func.dfg.insts[term]
            .branch_destination(&func.dfg.jump_tables, &func.dfg.exception_tables)
            .iter()
            .map(|c| c.block(&func.dfg.value_lists))
            .collect()
    };
    let mut seen = HashSet::new();
    let mut post = Vec::new();
    let mut stack = vec![(entry, succs(entry), 0usize)];
    seen.insert(entry);
    while let Some((b, s, i)) = stack.last_mut() {
        if *i < s.len() {
            let next = s[*i];
            *i += 1;
            if seen.insert(next) {
                let ns = succs(next);
                stack.push((next, ns, 0));
            }
        } else {
            post.push(*b);
            stack.pop();
        }
    }
    post.reverse();
    for b in func.layout.blocks() {
        if !seen.contains(&b) {
            post.push(b);
        }
    }
    post
}

fn lanes_of(ty: Type) -> (Type, usize) {
    (ty.lane_type(), ty.lane_count() as usize)
}

/// Rewrites `func` so that it uses no vector type (see the module documentation).
pub fn scalarize(func: &mut Function) -> Result<(), ScalarizeError> {
    let uses_vectors = func
        .dfg
        .values()
        .any(|v| func.dfg.value_type(v).is_vector());
    if !uses_vectors {
        return Ok(());
    }
    let mut lanes: HashMap<Value, Vec<Value>> = HashMap::new();
    // Block parameters first: branches anywhere may pass lanes to them.
    let blocks: Vec<Block> = func.layout.blocks().collect();
    for &b in &blocks {
        let params = func.dfg.block_params(b).to_vec();
        if !params.iter().any(|&p| func.dfg.value_type(p).is_vector()) {
            continue;
        }
        func.dfg.detach_block_params(b);
        for p in params {
            let ty = func.dfg.value_type(p);
            if ty.is_vector() {
                let (lt, n) = lanes_of(ty);
                let ls = (0..n).map(|_| func.dfg.append_block_param(b, lt)).collect();
                lanes.insert(p, ls);
            } else {
                func.dfg.attach_block_param(b, p);
            }
        }
    }
    let mut spill: Option<ir::StackSlot> = None;
    for b in block_order(func) {
        let insts: Vec<Inst> = func.layout.block_insts(b).collect();
        for inst in insts {
            rewrite(func, inst, &mut lanes, &mut spill)?;
        }
    }
    Ok(())
}

/// The lanes of vector value `v` (after alias resolution).
fn get(
    func: &Function,
    lanes: &HashMap<Value, Vec<Value>>,
    v: Value,
) -> Result<Vec<Value>, ScalarizeError> {
    let v = func.dfg.resolve_aliases(v);
    lanes
        .get(&v)
        .cloned()
        .ok_or_else(|| ScalarizeError::UseBeforeDefinition {
            value: v.to_string(),
        })
}

fn rewrite(
    func: &mut Function,
    inst: Inst,
    lanes: &mut HashMap<Value, Vec<Value>>,
    spill: &mut Option<ir::StackSlot>,
) -> Result<(), ScalarizeError> {
    let data = func.dfg.insts[inst];
    let opcode = data.opcode();
    let args: Vec<Value> = func
        .dfg
        .inst_args(inst)
        .iter()
        .map(|&a| func.dfg.resolve_aliases(a))
        .collect();
    let results: Vec<Value> = func.dfg.inst_results(inst).to_vec();
    let any_vec_arg = args.iter().any(|&a| func.dfg.value_type(a).is_vector());
    let vec_result = results
        .first()
        .map(|&r| func.dfg.value_type(r))
        .filter(|t| t.is_vector());

    if data.opcode().is_branch() {
        rewrite_branch(func, inst, lanes)?;
        return Ok(());
    }
    if !any_vec_arg && vec_result.is_none() {
        return Ok(());
    }
    let mut pos = FuncCursor::new(func).at_inst(inst);
    let new: Vec<Value>;
    match (opcode, data) {
        (Opcode::Load, InstructionData::Load { flags, offset, .. }) => {
            let (lt, n) =
                lanes_of(vec_result.ok_or_else(|| malformed("vector load without a vector type"))?);
            let off: i32 = offset.into();
            new = (0..n)
                .map(|k| {
                    let o = Offset32::new(off + (k as i32) * lt.bytes() as i32);
                    let (i, dfg) = pos.ins().Load(Opcode::Load, lt, flags, o, args[0]);
                    dfg.first_result(i)
                })
                .collect();
        }
        (Opcode::Store, InstructionData::Store { flags, offset, .. }) => {
            let vals = get(pos.func, lanes, args[0])?;
            let lt = pos.func.dfg.value_type(vals[0]);
            let off: i32 = offset.into();
            for (k, &x) in vals.iter().enumerate() {
                let o = Offset32::new(off + (k as i32) * lt.bytes() as i32);
                pos.ins().Store(Opcode::Store, lt, flags, o, x, args[1]);
            }
            pos.remove_inst();
            return Ok(());
        }
        (Opcode::Splat, _) => {
            let (_, n) =
                lanes_of(vec_result.ok_or_else(|| malformed("splat without a vector type"))?);
            new = vec![args[0]; n];
        }
        (Opcode::Extractlane, InstructionData::BinaryImm8 { imm, .. }) => {
            let vals = get(pos.func, lanes, args[0])?;
            let x = vals[imm as usize];
            pos.func.dfg.clear_results(inst);
            pos.func.dfg.change_to_alias(results[0], x);
            pos.remove_inst();
            return Ok(());
        }
        (Opcode::Insertlane, InstructionData::TernaryImm8 { imm, .. }) => {
            let mut vals = get(pos.func, lanes, args[0])?;
            vals[imm as usize] = args[1];
            new = vals;
        }
        (Opcode::Bitcast, _) => {
            let to = vec_result.ok_or_else(|| malformed("bitcast of a vector to a scalar"))?;
            let vals = get(pos.func, lanes, args[0])?;
            let (lt, n) = lanes_of(to);
            let from_lt = pos.func.dfg.value_type(vals[0]);
            if vals.len() == n {
                new = vals
                    .iter()
                    .map(|&x| {
                        if from_lt == lt {
                            x
                        } else {
                            pos.ins().bitcast(lt, MemFlagsData::new(), x)
                        }
                    })
                    .collect();
            } else {
                // Lanes of different widths: through 16 bytes of stack.
                let slot = *spill.get_or_insert_with(|| {
                    pos.func.create_sized_stack_slot(StackSlotData::new(
                        StackSlotKind::ExplicitSlot,
                        16,
                        4,
                    ))
                });
                for (k, &x) in vals.iter().enumerate() {
                    pos.ins()
                        .stack_store(types::I64, x, slot, (k as u32 * from_lt.bytes()) as i32);
                }
                new = (0..n)
                    .map(|k| {
                        pos.ins()
                            .stack_load(types::I64, lt, slot, (k as u32 * lt.bytes()) as i32)
                    })
                    .collect();
            }
        }
        (Opcode::Fcmp | Opcode::Icmp, _) => {
            let to =
                vec_result.ok_or_else(|| malformed("vector compare without a vector result"))?;
            let (mask_t, _) = lanes_of(to);
            let a = get(pos.func, lanes, args[0])?;
            let b = get(pos.func, lanes, args[1])?;
            new = match data {
                InstructionData::FloatCompare { cond, .. } => a
                    .iter()
                    .zip(&b)
                    .map(|(&x, &y)| {
                        let c = pos.ins().fcmp(cond, x, y);
                        pos.ins().bmask(mask_t, c)
                    })
                    .collect(),
                InstructionData::IntCompare { cond, .. } => a
                    .iter()
                    .zip(&b)
                    .map(|(&x, &y)| {
                        let c = pos.ins().icmp(cond, x, y);
                        pos.ins().bmask(mask_t, c)
                    })
                    .collect(),
                _ => return Err(malformed(format!("unexpected format of {opcode}"))),
            };
        }
        (Opcode::Bitselect, _) => {
            let to = vec_result.ok_or_else(|| malformed("bitselect without a vector type"))?;
            let (lt, _) = lanes_of(to);
            let c = get(pos.func, lanes, args[0])?;
            let x = get(pos.func, lanes, args[1])?;
            let y = get(pos.func, lanes, args[2])?;
            let it = lt.as_int();
            let mut out = Vec::new();
            for k in 0..c.len() {
                let as_int = |pos: &mut FuncCursor, v: Value| {
                    if pos.func.dfg.value_type(v) == it {
                        v
                    } else {
                        pos.ins().bitcast(it, MemFlagsData::new(), v)
                    }
                };
                let (ck, xk, yk) = (
                    as_int(&mut pos, c[k]),
                    as_int(&mut pos, x[k]),
                    as_int(&mut pos, y[k]),
                );
                let r = pos.ins().bitselect(ck, xk, yk);
                out.push(if lt == it {
                    r
                } else {
                    pos.ins().bitcast(lt, MemFlagsData::new(), r)
                });
            }
            new = out;
        }
        (op, _) if lane_wise(op) => {
            let ctrl = pos.func.dfg.ctrl_typevar(inst);
            let (lt, n) = if ctrl.is_vector() {
                lanes_of(ctrl)
            } else {
                return Err(malformed(format!(
                    "{op} with vector operands but a scalar type"
                )));
            };
            let arg_lanes: Vec<Option<Vec<Value>>> = args
                .iter()
                .map(|&a| {
                    if pos.func.dfg.value_type(a).is_vector() {
                        get(pos.func, lanes, a).map(Some)
                    } else {
                        Ok(None)
                    }
                })
                .collect::<Result<_, _>>()?;
            let mut out = Vec::with_capacity(n);
            for k in 0..n {
                let mut d = data;
                {
                    let slots = d.arguments_mut(&mut pos.func.dfg.value_lists);
                    for (j, slot) in slots.iter_mut().enumerate() {
                        *slot = match &arg_lanes[j] {
                            Some(al) => al[k],
                            None => args[j],
                        };
                    }
                }
                let (ni, dfg) = pos.ins().build(d, lt);
                out.push(dfg.first_result(ni));
            }
            new = out;
        }
        (op, _) => {
            return Err(ScalarizeError::NoScalarForm {
                opcode: op.to_string(),
            })
        }
    }
    if let Some(r) = results.first() {
        lanes.insert(*r, new);
    }
    pos.remove_inst();
    Ok(())
}

/// Opcodes that apply independently to each lane, with the controlling type the result type.
fn lane_wise(op: Opcode) -> bool {
    use Opcode::*;
    matches!(
        op,
        Fadd | Fsub
            | Fmul
            | Fdiv
            | Fmin
            | Fmax
            | Fabs
            | Fneg
            | Sqrt
            | Fma
            | Fcopysign
            | Ceil
            | Floor
            | Trunc
            | Nearest
            | Iadd
            | Isub
            | Imul
            | Ineg
            | Iabs
            | Smin
            | Smax
            | Umin
            | Umax
            | Band
            | Bor
            | Bxor
            | Bnot
            | Ishl
            | Ushr
            | Sshr
            | Rotl
            | Rotr
            | Select
            | FcvtToSintSat
            | FcvtToUintSat
            | FcvtFromSint
            | FcvtFromUint
    )
}

/// Replaces vector arguments of a branch's block calls by their lanes.
fn rewrite_branch(
    func: &mut Function,
    inst: Inst,
    lanes: &HashMap<Value, Vec<Value>>,
) -> Result<(), ScalarizeError> {
    let calls: Vec<BlockCall> = func.dfg.insts[inst]
        .branch_destination(&func.dfg.jump_tables, &func.dfg.exception_tables)
        .to_vec();
    let mut new_calls = Vec::with_capacity(calls.len());
    let mut changed = false;
    for call in calls {
        let block = call.block(&func.dfg.value_lists);
        let mut args = Vec::new();
        for a in call.args(&func.dfg.value_lists) {
            match a {
                BlockArg::Value(v) => {
                    let v = func.dfg.resolve_aliases(v);
                    if func.dfg.value_type(v).is_vector() {
                        changed = true;
                        args.extend(get(func, lanes, v)?.into_iter().map(BlockArg::Value));
                    } else {
                        args.push(BlockArg::Value(v));
                    }
                }
                other => args.push(other),
            }
        }
        new_calls.push((block, args));
    }
    if !changed {
        return Ok(());
    }
    let built: Vec<BlockCall> = new_calls
        .into_iter()
        .map(|(b, args)| BlockCall::new(b, args, &mut func.dfg.value_lists))
        .collect();
    let dfg = &mut func.dfg;
    let dests =
        dfg.insts[inst].branch_destination_mut(&mut dfg.jump_tables, &mut dfg.exception_tables);
    for (d, n) in dests.iter_mut().zip(built) {
        *d = n;
    }
    Ok(())
}
