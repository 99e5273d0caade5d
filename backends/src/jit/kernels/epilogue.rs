//! The one output epilogue of fused convolutions and matrix products (`kestrel_ir::Epilogue`):
//! `y = act(acc + bias + residual)`, applied to values a kernel has just computed.
//!
//! Two ways in, same arithmetic in the same order (so a value gets the same bits whichever way
//! it takes): [`OutputEpilogue::finish`] on one value about to be stored (the depthwise kernels
//! apply it in registers), and [`OutputEpilogue::apply_rows`] in place over a block of rows a
//! GEMM has just written (still in cache). The bias here is per row (a conv's output channel);
//! a GEMM's per-column bias is the micro-kernel's initial accumulator instead (see
//! `super::gemm`), which rounds differently, so the two are not interchangeable.

use super::gemm::RowFinish;
use super::pointwise::activation;
use crate::jit::asm::activation::{Activation, ActivationShape};
use crate::jit::emit::Emitter;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use kestrel_ir::UnaryOp;

/// What happens to an output value after the accumulation and the bias.
#[derive(Clone, Copy, Debug)]
pub struct OutputEpilogue {
    /// The residual is read at the same offset from the residual tensor as the output element
    /// has from the output: `residual_delta` = residual base − output base (I64), when fused.
    pub residual_delta: Option<Value>,
    /// One of the unary ops `UnaryOp::is_epilogue_activation` admits, or none.
    pub act: Option<UnaryOp>,
}

impl OutputEpilogue {
    /// No residual and no activation.
    pub fn none() -> OutputEpilogue {
        OutputEpilogue {
            residual_delta: None,
            act: None,
        }
    }

    /// The epilogue of an output at `out` with the residual tensor at `residual` (both I64
    /// pointers; `residual` absent when not fused).
    pub fn new(
        e: &mut Emitter,
        out: Value,
        residual: Option<Value>,
        act: Option<UnaryOp>,
    ) -> OutputEpilogue {
        OutputEpilogue {
            residual_delta: residual.map(|r| e.fb.ins().isub(r, out)),
            act,
        }
    }

    pub fn is_identity(&self) -> bool {
        self.residual_delta.is_none() && self.act.is_none()
    }

    /// This epilogue with the row bias `bias` as the wide f32 kernels apply it in their store
    /// (`gemm::emit_finished`): only without a residual and with no activation, a Relu or a
    /// Clip (bounds, in [`Self::apply_rows`]'s order; an infinite Clip bound is none, as in
    /// `kernels::pointwise`). `None` when it is none of these, or when there is nothing to do.
    pub fn tile_finish(&self, bias: Option<Value>) -> Option<RowFinish> {
        if self.residual_delta.is_some() {
            return None;
        }
        let (lower, upper) = match self.act {
            None => (None, None),
            Some(UnaryOp::Relu) => (Some(0.0), None),
            Some(UnaryOp::Clip { min, max }) => (
                (min.0 != f32::NEG_INFINITY).then_some(min.0),
                (max.0 != f32::INFINITY).then_some(max.0),
            ),
            Some(_) => return None,
        };
        if bias.is_none() && lower.is_none() && upper.is_none() {
            return None;
        }
        Some(RowFinish { bias, lower, upper })
    }

    /// `act(v + residual)` for the value `v` (F32 or F32X4, `ty`) to be stored at `ptr + off`.
    pub fn finish(&self, e: &mut Emitter, v: Value, ty: Type, ptr: Value, off: i32) -> Value {
        let v = match self.residual_delta {
            Some(d) => {
                let rp = e.fb.ins().iadd(ptr, d);
                let r = e.load(ty, rp, off);
                e.fb.ins().fadd(v, r)
            }
            None => v,
        };
        activation(e, self.act, v, ty)
    }

    /// In place over `rows` rows of `cols` f32 at `out`, `ld` f32 apart:
    /// `out[r, j] = finish(out[r, j] + bias[r])` (bias optional). The activation's constants are
    /// built once for the whole block. A Sigmoid or SiLU runs in a full-width kernel where the
    /// module has them (`asm::activation`).
    pub fn apply_rows(
        &self,
        e: &mut Emitter,
        out: Value,
        bias: Option<Value>,
        rows: usize,
        cols: usize,
        ld: usize,
    ) {
        if bias.is_none() && self.is_identity() {
            return;
        }
        e.hoisting_constants(|e| self.rows_loop(e, out, bias, rows, cols, ld));
    }

    /// The full-width kernel computing this epilogue (with a row bias when `bias`), when the
    /// module has full-width kernels and the epilogue is a Sigmoid or SiLU alone. It computes
    /// the bits of the 128-bit code (`asm::activation`), which uses fused multiply-adds only
    /// where the target has them: the kernels always do.
    fn wide_activation(&self, e: &Emitter, bias: bool) -> Option<ActivationShape> {
        let act = match (self.residual_delta, self.act) {
            (None, Some(UnaryOp::Sigmoid)) => Activation::Sigmoid,
            (None, Some(UnaryOp::Silu)) => Activation::Silu,
            _ => return None,
        };
        let isa = e.micro.as_ref()?.isa();
        e.flags
            .use_fma()
            .then_some(ActivationShape { isa, act, bias })
    }

    fn rows_loop(
        &self,
        e: &mut Emitter,
        out: Value,
        bias: Option<Value>,
        rows: usize,
        cols: usize,
        ld: usize,
    ) {
        let wide = self.wide_activation(e, bias.is_some());
        // Columns the full-width kernel covers (whole vectors); the rest as below.
        let wide_cols = wide.map_or(0, |s| cols / s.isa.lanes() * s.isa.lanes());
        e.loop_n(rows, |e, r| {
            let bias_at = bias.map(|bp| e.index(bp, r, 4));
            let b = bias_at.map(|ba| e.load(types::F32, ba, 0));
            let bv = b.map(|b| e.fb.ins().splat(types::F32X4, b));
            let row = e.index(out, r, (ld * 4) as i64);
            if let (Some(shape), true) = (wide, wide_cols > 0) {
                let vectors = e.iconst((wide_cols / shape.isa.lanes()) as i64);
                let zero = e.iconst(0);
                e.call_kernel(shape, [row, vectors, bias_at.unwrap_or(zero), zero, zero]);
            }
            let rest = e.addr(row, (wide_cols * 4) as i64);
            let chunks = (cols - wide_cols) / 4;
            e.loop_n(chunks, |e, i| {
                let a = e.index(rest, i, 16);
                let mut v = e.load(types::F32X4, a, 0);
                if let Some(bv) = bv {
                    v = e.fb.ins().fadd(v, bv);
                }
                let v = self.finish(e, v, types::F32X4, a, 0);
                e.store(v, a, 0);
            });
            for j in wide_cols + chunks * 4..cols {
                let off = (j * 4) as i32;
                let mut v = e.load(types::F32, row, off);
                if let Some(b) = b {
                    v = e.fb.ins().fadd(v, b);
                }
                let v = self.finish(e, v, types::F32, row, off);
                e.store(v, row, off);
            }
        });
    }
}
