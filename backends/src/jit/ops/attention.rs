//! Fused scaled dot-product attention (`Op::Attention`): `out = softmax(scale · q @ k_t) @ v`.
//!
//! Per batch matrix, each task packs k_t and v into its scratch in the GEMM's panel layout, then
//! takes its query rows in blocks of [`block_rows`]. For a block, the scores `S = q_blk @ k_t` are
//! computed by the GEMM into the task's scores scratch (`rows × N` f32, sized to stay in L1/L2),
//! each score row is scaled and turned into its softmax in place, and `S @ v` writes the block's
//! output rows. The `M × N` score matrix of the unfused graph is never written to memory, and the
//! scale, softmax and both products become one kernel.
//!
//! Rounding: the steps of `matmul → mul(scale) → softmax → matmul` in that order (products by the
//! same GEMM micro-kernel, the scale applied to each product, softmax as `normalize::softmax_row`),
//! so for a graph written that way the result is the unfused JIT's bit for bit. Where the fusion
//! folded scalar factors of `q` or `k_t` into `scale`, it differs from the unfused graph by their
//! rounding only.
//!
//! Threads: the query rows of every batch matrix are split into [`task_count`] ranges valid for
//! the GEMM (multiples of `gemm::MR`); each task has its own scores scratch. A row's result does
//! not depend on its block or task, so any task count gives the same bits.

use crate::jit::context::KernelContext;
use crate::jit::emit::Emitter;
use crate::jit::error::JitError;
use crate::jit::kernels::gemm;
use crate::jit::kernels::softmax::softmax_row;
use crate::jit::options::JitOptions;
use cranelift_codegen::ir::{types, InstBuilder};
use kestrel_ir::{Graph, Node};

/// Largest scores block one task keeps (bytes): well inside L2.
const MAX_BLOCK_BYTES: usize = 64 << 10;
/// Most query rows per block.
const MAX_BLOCK_ROWS: usize = 16;

/// `(batch, m, d, n, dv)` of an attention node with known dims.
fn problem(g: &Graph, node: &Node) -> Option<(usize, usize, usize, usize, usize)> {
    let q = g.ty(node.inputs[0]).dims()?;
    let v = g.ty(node.inputs[2]).dims()?;
    let r = q.len();
    if r < 2 || v.len() != r {
        return None;
    }
    let batch = q[..r - 2].iter().product();
    Some((batch, q[r - 2], q[r - 1], v[r - 2], v[r - 1]))
}

/// Query rows per block for `n` keys: a multiple of `gemm::MR` with the block's scores at most
/// [`MAX_BLOCK_BYTES`] (at least `MR` rows).
fn block_rows(n: usize) -> usize {
    let fit = MAX_BLOCK_BYTES / (n.max(1) * 4);
    (fit.min(MAX_BLOCK_ROWS) / gemm::MR * gemm::MR).max(gemm::MR)
}

/// Scratch of one task: a scores block, then k_t and v packed for the GEMM (each 64-byte aligned).
/// Returns the offsets of the two packed operands and the total.
fn task_scratch(d: usize, n: usize, dv: usize) -> (usize, usize, usize) {
    let scores = (block_rows(n) * n * 4).next_multiple_of(64);
    let kt = (gemm::packed_b_bound(d, n) * 4).next_multiple_of(64);
    let v = (gemm::packed_b_bound(n, dv) * 4).next_multiple_of(64);
    (scores, scores + kt, scores + kt + v)
}

/// Number of tasks an attention node is split into (see [`JitOptions`]).
pub fn task_count(g: &Graph, node: &Node, opts: &JitOptions) -> usize {
    let min = opts.min_task_macs.max(1);
    let Some((_, m, ..)) = problem(g, node) else {
        return 1;
    };
    let macs = kestrel_ir::cost::node_macs(g, node) as usize;
    if macs < 2 * min {
        return 1;
    }
    gemm::split_rows(m, opts.threads.min(macs / min))
        .len()
        .max(1)
}

/// Scratch bytes of the node's kernel for all of its `tasks`.
pub fn scratch_bytes(g: &Graph, node: &Node, tasks: usize) -> usize {
    problem(g, node).map_or(0, |(_, _, d, n, dv)| {
        tasks.max(1) * task_scratch(d, n, dv).2
    })
}

pub fn lower(e: &mut Emitter, k: &mut KernelContext, scale: f32) -> Result<(), JitError> {
    k.require_f32()?;
    let Some((batch, m, d, n, dv)) = problem(k.g, k.node) else {
        return Err(k.unsupported("attention without known ranks and dims"));
    };
    if batch == 0 || m == 0 || dv == 0 {
        return Ok(());
    }
    if n == 0 {
        // An empty softmax has no elements: the output is an empty sum.
        let count = batch * m * dv;
        let out = k.outs[0];
        e.fill_f32(out, count, 0.0);
        return Ok(());
    }
    let Some(scratch) = k.scratch else {
        return Err(k.unsupported("attention without its scratch buffer"));
    };
    let (q, kt, v, out) = (k.ins[0], k.ins[1], k.ins[2], k.outs[0]);
    let (q_mat, kt_mat, v_mat, o_mat) = (m * d * 4, d * n * 4, n * dv * 4, m * dv * 4);
    let rows = gemm::split_rows(m, k.tasks);
    let per_block = block_rows(n);
    let (kt_off, v_off, task_bytes) = task_scratch(d, n, dv);
    k.for_task(e, |e, t| {
        let Some(r) = rows.get(t) else { return };
        let s = e.addr(scratch, (t * task_bytes) as i64);
        let ktp = e.addr(s, kt_off as i64);
        let vp = e.addr(s, v_off as i64);
        e.loop_n(batch, |e, b| {
            let qb = e.index(q, b, q_mat as i64);
            let ktb = e.index(kt, b, kt_mat as i64);
            let vb = e.index(v, b, v_mat as i64);
            let ob = e.index(out, b, o_mat as i64);
            // This batch's k_t and v in the micro-kernel's panel layout (every block reuses them).
            gemm::emit_pack_for(e, ktb, n, ktp, d, n);
            gemm::emit_pack_for(e, vb, dv, vp, n, dv);
            // One block of `mb` query rows starting at row `row0` (I64 value).
            let block = |e: &mut Emitter, row0: cranelift_codegen::ir::Value, mb: usize| {
                let qr = e.index(qb, row0, (d * 4) as i64);
                let or = e.index(ob, row0, (dv * 4) as i64);
                gemm::emit(e, qr, d, gemm::BOperand::Packed(ktp), s, n, mb, n, d, None);
                e.loop_n(mb, |e, i| {
                    let row = e.index(s, i, (n * 4) as i64);
                    if scale != 1.0 {
                        scale_row(e, row, n, scale);
                    }
                    softmax_row(e, row, row, n, 4, false);
                });
                gemm::emit(e, s, n, gemm::BOperand::Packed(vp), or, dv, mb, dv, n, None);
            };
            let len = r.end - r.start;
            let (full, rest) = (len / per_block, len % per_block);
            if full > 0 {
                e.loop_n(full, |e, blk| {
                    let off = e.fb.ins().imul_imm_s(blk, per_block as i64);
                    let row0 = e.fb.ins().iadd_imm_s(off, r.start as i64);
                    block(e, row0, per_block);
                });
            }
            if rest > 0 {
                let row0 = e.iconst((r.start + full * per_block) as i64);
                block(e, row0, rest);
            }
        });
    });
    Ok(())
}

/// `row[j] *= scale` for `n` contiguous f32.
fn scale_row(e: &mut Emitter, row: cranelift_codegen::ir::Value, n: usize, scale: f32) {
    let sv = e.fconst(types::F32X4, scale);
    e.loop_n(n / 4, |e, i| {
        let a = e.index(row, i, 16);
        let x = e.load(types::F32X4, a, 0);
        let y = e.fb.ins().fmul(x, sv);
        e.store(y, a, 0);
    });
    let s1 = e.fconst(types::F32, scale);
    for j in n / 4 * 4..n {
        let off = (j * 4) as i32;
        let x = e.load(types::F32, row, off);
        let y = e.fb.ins().fmul(x, s1);
        e.store(y, row, off);
    }
}
