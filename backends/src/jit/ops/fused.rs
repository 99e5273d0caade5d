//! Convolutions and Gemms with a fused epilogue (`y = act(acc + bias + residual)`, see
//! `kestrel_ir::Epilogue`), applied by the one epilogue emitter, `kernels::epilogue`.
//!
//! - conv: `conv::lower` applies bias, residual and activation itself, to each block of output
//!   rows right after its GEMM (or to each depthwise output before it is stored); this module
//!   adds only the squeeze-and-excitation channel scale, which scales the weights first.
//! - gemm: the plain gemm on a stand-in node (a row-vector C is the micro-kernel's initial
//!   accumulator), then one in-place pass over the rows each task computed, while they are
//!   still in cache.
//!
//! Either way the unfused graph's separate element-wise nodes (Relu, Clip, HardSwish, Sigmoid +
//! Mul, Add...), each of which read and wrote the whole tensor, are gone.

use crate::jit::context::KernelContext;
use crate::jit::emit::Emitter;
use crate::jit::error::JitError;
use crate::jit::kernels::epilogue::OutputEpilogue;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use kestrel_ir::{ConvAttrs, Epilogue, GemmAttrs, Node, Op};

/// Bytes of one copy of a conv's weights `w * s` (f32, 64-byte aligned).
fn scaled_weight_bytes(g: &kestrel_ir::Graph, node: &Node) -> usize {
    (g.ty(node.inputs[1]).numel().unwrap_or(0) * 4).next_multiple_of(64)
}

/// Extra scratch of a conv with a channel scale: one copy of the scaled weights per task.
pub fn conv_extra_scratch(
    g: &kestrel_ir::Graph,
    node: &Node,
    a: &ConvAttrs,
    tasks: usize,
) -> usize {
    if a.epilogue.channel_scale {
        tasks.max(1) * scaled_weight_bytes(g, node)
    } else {
        0
    }
}

/// `dst[m, c, t] = w[m, c, t] * s[c]` for weights `[M, C, taps]` (vectorised over `c` for 1×1
/// kernels).
fn scale_weights(e: &mut Emitter, w: Value, s: Value, dst: Value, m: usize, c: usize, taps: usize) {
    let row = (c * taps * 4) as i64;
    e.loop_n(m, |e, i| {
        let wr = e.index(w, i, row);
        let dr = e.index(dst, i, row);
        if taps == 1 {
            let chunks = c / 4;
            e.loop_n(chunks, |e, j| {
                let wa = e.index(wr, j, 16);
                let sa = e.index(s, j, 16);
                let da = e.index(dr, j, 16);
                let wv = e.load(types::F32X4, wa, 0);
                let sv = e.load(types::F32X4, sa, 0);
                let p = e.fb.ins().fmul(wv, sv);
                e.store(p, da, 0);
            });
            for j in chunks * 4..c {
                let off = (j * 4) as i32;
                let wv = e.load(types::F32, wr, off);
                let sv = e.load(types::F32, s, off);
                let p = e.fb.ins().fmul(wv, sv);
                e.store(p, dr, off);
            }
        } else {
            e.loop_n(c, |e, j| {
                let sa = e.index(s, j, 4);
                let sv = e.load(types::F32, sa, 0);
                let wc = e.index(wr, j, (taps * 4) as i64);
                let dc = e.index(dr, j, (taps * 4) as i64);
                for t in 0..taps {
                    let off = (t * 4) as i32;
                    let wv = e.load(types::F32, wc, off);
                    let p = e.fb.ins().fmul(wv, sv);
                    e.store(p, dc, off);
                }
            });
        }
    });
}

/// A conv with a fused epilogue. `conv::lower` applies bias, residual and activation itself, to
/// each block of output rows right after its GEMM (or to each depthwise output before it is
/// stored), within the task that computed it. A channel scale (the last input, `s[C]`) first
/// scales the weights at run time into the scratch (`w[m, c, :] * s[c]`): split into tasks, each
/// task scales a copy of its own (the weights are small next to the convolution's work; SE
/// projections are at most a few hundred kilobytes), then computes its part from that copy.
pub fn conv(e: &mut Emitter, k: &mut KernelContext, a: &ConvAttrs) -> Result<(), JitError> {
    if !a.epilogue.channel_scale {
        return super::conv::lower(e, k, a);
    }
    k.require_f32()?;
    let wd = k.in_dims(1);
    if k.in_dims(0)[0] != 1 {
        return Err(k.unsupported("a channel scale with a batch above 1"));
    }
    let scratch0 = k
        .scratch
        .ok_or_else(|| k.unsupported("channel scale without scratch"))?;
    let taps: usize = wd[2..].iter().product();
    let s = k.ins[k.ins.len() - 1];
    let wbytes = scaled_weight_bytes(k.g, k.node);
    // This task's copy of the scaled weights; the convolution's own scratch follows all copies.
    let base = e.index(scratch0, k.task, wbytes as i64);
    scale_weights(e, k.ins[1], s, base, wd[0], wd[1], taps);
    let scratch = Some(e.addr(scratch0, (k.tasks.max(1) * wbytes) as i64));
    let unscaled = ConvAttrs {
        epilogue: Epilogue {
            channel_scale: false,
            ..a.epilogue
        },
        ..a.clone()
    };
    let nin = k.node.inputs.len() - 1;
    let node = Node {
        op: Op::Conv(unscaled.clone()),
        inputs: k.node.inputs[..nin].into(),
        outputs: k.node.outputs.clone(),
        name: k.node.name.clone(),
    };
    let mut ins = k.ins[..nin].to_vec();
    ins[1] = base;
    super::conv::lower_scaled(e, &mut k.stand_in(&node, ins, scratch), &unscaled)
}

/// A gemm with a fused epilogue: the plain gemm (C handled as usual, a row-vector C inside the
/// micro-kernel), then one pass adding the residual and applying the activation.
pub fn gemm(e: &mut Emitter, k: &mut KernelContext, a: &GemmAttrs) -> Result<(), JitError> {
    k.require_f32()?;
    let plain = GemmAttrs {
        epilogue: Epilogue::default(),
        ..a.clone()
    };
    let nin = k.node.inputs.len().min(3);
    let node = Node {
        op: Op::Gemm(plain.clone()),
        inputs: k.node.inputs[..nin].into(),
        outputs: k.node.outputs.clone(),
        name: k.node.name.clone(),
    };
    let ins = k.ins[..nin].to_vec();
    let ins_again = ins.clone();
    let scratch = k.scratch;
    super::matmul::gemm(e, &mut k.stand_in(&node, ins, scratch), &plain)?;
    let dims = k.out_dims(0);
    let (m, n) = (dims[0], dims[1]);
    let res = if a.epilogue.residual {
        Some(k.ins[3])
    } else {
        None
    };
    // Each task finishes the part its GEMM computed (the same split as `matmul::gemm`): its
    // columns of every row when split by columns, else its rows.
    let rows = crate::jit::kernels::gemm::split_rows(m, k.tasks);
    let (out, act) = (k.outs[0], a.epilogue.act);
    let post = OutputEpilogue::new(e, out, res, act);
    let cols = super::matmul::gemm_column_split(&k.stand_in(&node, ins_again, scratch), m);
    if let Some(cols) = cols {
        k.for_task(e, |e, t| {
            let Some(c) = cols.get(t) else { return };
            let o = e.addr(out, (c.start * 4) as i64);
            post.apply_rows(e, o, None, m, c.len(), n);
        });
        return Ok(());
    }
    k.for_task(e, |e, t| {
        let Some(r) = rows.get(t) else { return };
        let o = e.addr(out, (r.start * n * 4) as i64);
        post.apply_rows(e, o, None, r.end - r.start, n, n);
    });
    Ok(())
}
