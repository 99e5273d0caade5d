//! What a kernel emitter gets about its node: [`KernelContext`], the node's context (its graph, pointers to
//! its inputs, outputs and scratch, compile-time constants, task index), and [`DataSink`], where it
//! puts read-only data. This module sits below every op lowering and kernel: it imports only the
//! emitter and the JIT's error and option types.

use super::emit::Emitter;
use super::error::JitError;
use super::options::JitOptions;
use cranelift_codegen::ir::{types, Function, GlobalValue, InstBuilder, Value};
use kestrel_ir::{DType, Graph, Node, NodeId, Tensor, ValueId};
use std::collections::HashMap;

/// Creates read-only data objects while a kernel is emitted.
pub trait DataSink {
    /// Declares and defines a read-only data object holding `bytes` (aligned to 16) and makes it
    /// addressable from `func`.
    fn rodata(&mut self, func: &mut Function, bytes: Vec<u8>) -> Result<GlobalValue, JitError>;
    /// The data object of a constant value (declared once per value).
    fn constant(
        &mut self,
        func: &mut Function,
        v: ValueId,
        t: &Tensor,
    ) -> Result<GlobalValue, JitError>;
}

/// Everything a kernel emitter needs about its node.
pub struct KernelContext<'a> {
    pub g: &'a Graph,
    pub id: NodeId,
    pub node: &'a Node,
    /// Pointer (I64) to each input's first element.
    pub ins: Vec<Value>,
    /// Pointer (I64) to each output's first element.
    pub outs: Vec<Value>,
    /// Pointer to this kernel's scratch buffer (when it asked for one).
    pub scratch: Option<Value>,
    /// Constant data known at compile time (graph constants and folded values).
    pub consts: &'a HashMap<ValueId, Tensor>,
    pub data: &'a mut dyn DataSink,
    /// Status the kernel returns on a run-time error.
    pub status: i32,
    pub opts: &'a JitOptions,
    /// Number of parallel tasks this node was planned with (see [`task_count`]), and the index
    /// (I64 run-time value, `< tasks`) of the task this function call performs.
    pub tasks: usize,
    pub task: Value,
}

impl KernelContext<'_> {
    /// The context of `node`, a stand-in for this kernel's node (same outputs, the inputs
    /// `ins`, the scratch `scratch`), run in the same function and task: how a fused kernel
    /// emits its plain core with the unchanged kernel.
    pub fn stand_in<'b>(
        &'b mut self,
        node: &'b Node,
        ins: Vec<Value>,
        scratch: Option<Value>,
    ) -> KernelContext<'b> {
        KernelContext {
            g: self.g,
            id: self.id,
            node,
            ins,
            outs: self.outs.clone(),
            scratch,
            consts: self.consts,
            data: &mut *self.data,
            status: self.status,
            opts: self.opts,
            tasks: self.tasks,
            task: self.task,
        }
    }

    pub fn in_dtype(&self, i: usize) -> DType {
        self.g.ty(self.node.inputs[i]).dtype
    }
    pub fn in_dims(&self, i: usize) -> Vec<usize> {
        self.g.ty(self.node.inputs[i]).dims().unwrap_or_default()
    }
    pub fn out_dtype(&self, i: usize) -> DType {
        self.g.ty(self.node.outputs[i]).dtype
    }
    pub fn out_dims(&self, i: usize) -> Vec<usize> {
        self.g.ty(self.node.outputs[i]).dims().unwrap_or_default()
    }
    /// The compile-time value of input `i`, if it is constant.
    pub fn const_in(&self, i: usize) -> Option<&Tensor> {
        self.node.inputs.get(i).and_then(|v| self.consts.get(v))
    }
    pub fn unsupported(&self, what: impl Into<String>) -> JitError {
        JitError::Unsupported {
            node: self.g.describe_node(self.id),
            what: what.into(),
        }
    }
    /// Requires every input and output to be f32.
    pub fn require_f32(&self) -> Result<(), JitError> {
        for &v in self.node.inputs.iter().chain(&self.node.outputs) {
            let dt = self.g.ty(v).dtype;
            if dt != DType::F32 {
                return Err(self.unsupported(format!("dtype {dt}")));
            }
        }
        Ok(())
    }
    /// Requires input 0 and every output to be f32 (other inputs are parameters).
    pub fn require_f32_data(&self) -> Result<(), JitError> {
        for &v in self.node.inputs[..1].iter().chain(&self.node.outputs) {
            let dt = self.g.ty(v).dtype;
            if dt != DType::F32 {
                return Err(self.unsupported(format!("dtype {dt}")));
            }
        }
        Ok(())
    }
    /// A pointer to new read-only data holding `bytes`.
    pub fn rodata(&mut self, e: &mut Emitter, bytes: Vec<u8>) -> Result<Value, JitError> {
        let gv = self.data.rodata(e.fb.func, bytes)?;
        Ok(e.fb.ins().symbol_value(types::I64, gv))
    }
    /// A pointer to new read-only f32 data.
    pub fn rodata_f32(&mut self, e: &mut Emitter, v: &[f32]) -> Result<Value, JitError> {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.rodata(e, bytes)
    }
    /// Emits `body(e, t)` for the task `t` this call performs: with one task just `body(e, 0)`,
    /// otherwise one compile-time specialised copy per task, selected by [`KernelContext::task`].
    pub fn for_task(&self, e: &mut Emitter, mut body: impl FnMut(&mut Emitter, usize)) {
        if self.tasks <= 1 {
            body(e, 0);
            return;
        }
        let join = e.fb.create_block();
        let mut switch = cranelift_frontend::Switch::new();
        let blocks: Vec<_> = (0..self.tasks).map(|_| e.fb.create_block()).collect();
        for (t, &b) in blocks.iter().enumerate() {
            switch.set_entry(t as u128, b);
        }
        switch.emit(e.fb, self.task, join);
        for (t, &b) in blocks.iter().enumerate() {
            e.fb.switch_to_block(b);
            body(e, t);
            e.fb.ins().jump(join, &[]);
        }
        e.fb.switch_to_block(join);
    }

    /// Returns this kernel's status from the function when `cond` (I8) is true.
    pub fn fail_if(&self, e: &mut Emitter, cond: Value) {
        let fail = e.fb.create_block();
        let cont = e.fb.create_block();
        e.fb.ins().brif(cond, fail, &[], cont, &[]);
        e.fb.switch_to_block(fail);
        let s = e.fb.ins().iconst(types::I32, self.status as i64);
        e.fb.ins().return_(&[s]);
        e.fb.switch_to_block(cont);
    }
}
