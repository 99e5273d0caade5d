//! Gemm and MatMul (f32).
//!
//! - `Gemm`: a constant B (either orientation) is scaled by `alpha` and packed at compile time
//!   (`pack_b`), a run-time B must be untransposed with `alpha == 1`; `trans_a` needs a constant
//!   or is refused. A `C` that is a row vector (`[N]`, `[1, N]`) becomes the GEMM's column bias (scaled
//!   by `beta` at compile time when constant); any other `C` is added afterwards with broadcasting.
//! - `MatMul`: numpy semantics (1-D promotion, batch broadcasting). A constant B shared by every
//!   batch is packed once; otherwise each batch runs the unpacked GEMM.
//!
//! Threads: both split the rows of A (and C) into [`task_count`] ranges; each task is a
//! compile-time specialised GEMM on its rows (of every batch matrix, for MatMul).

use crate::jit::context::KernelContext;
use crate::jit::emit::{broadcast_strides, Emitter};
use crate::jit::error::JitError;
use crate::jit::kernels::gemm;
use crate::jit::options::JitOptions;
use cranelift_codegen::ir::{types, Value};
use kestrel_ir::{GemmAttrs, Graph, Node, Op};

/// `(batch, m, n, k)` of a Gemm or MatMul node with known dims.
fn problem(g: &Graph, node: &Node) -> Option<(usize, usize, usize, usize)> {
    let out = g.ty(node.outputs[0]).dims()?;
    let a = g.ty(node.inputs[0]).dims()?;
    let kk = match node.op {
        Op::Gemm(ref at) if at.trans_a => *a.first()?,
        _ => *a.last()?,
    };
    let (m, n) = match out.len() {
        0 => (1, 1),
        1 => (
            if a.len() == 1 { 1 } else { out[0] },
            if a.len() == 1 { out[0] } else { 1 },
        ),
        r => (out[r - 2], out[r - 1]),
    };
    let batch: usize = out.iter().product::<usize>() / (m * n).max(1);
    // MatMul with one B for every batch runs as a single GEMM of `batch · m` rows.
    let mut b = g.ty(node.inputs[1]).dims()?;
    if b.len() == 1 {
        b.push(1);
    }
    if matches!(node.op, Op::MatMul) && folds_batch(&a, &b) {
        return Some((1, batch * m, n, kk));
    }
    Some((batch, m, n, kk))
}

/// Whether a MatMul of A `a_dims` by B `b_dims` can treat A's batch as extra rows: B has no
/// batch (or only 1s) and A is at least 2-D, so A's rows of every batch are contiguous and the
/// output's rows follow them in the same order.
fn folds_batch(a_dims: &[usize], b_dims: &[usize]) -> bool {
    a_dims.len() > 2 && b_dims.len() >= 2 && b_dims[..b_dims.len() - 2].iter().all(|&d| d == 1)
}

/// Number of tasks a Gemm/MatMul node is split into (see [`JitOptions`]).
pub fn task_count(g: &Graph, node: &Node, opts: &JitOptions) -> usize {
    let min = opts.min_task_macs.max(1);
    let Some((_, m, _, _)) = problem(g, node) else {
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

pub fn gemm(e: &mut Emitter, k: &mut KernelContext, a: &GemmAttrs) -> Result<(), JitError> {
    k.require_f32()?;
    let ad = k.in_dims(0);
    let bd = k.in_dims(1);
    if ad.len() != 2 || bd.len() != 2 {
        return Err(k.unsupported("gemm operands that are not 2-D"));
    }
    let (m, kk) = if a.trans_a {
        (ad[1], ad[0])
    } else {
        (ad[0], ad[1])
    };
    let n = if a.trans_b { bd[0] } else { bd[1] };
    let alpha = a.alpha.0;
    let beta = a.beta.0;
    // A: transposed constant A is materialised transposed at compile time.
    let (a_ptr, lda) = if a.trans_a {
        let Some(t) = k.const_in(0) else {
            return Err(k.unsupported("gemm with trans_a on a run-time A"));
        };
        let v = t.to_f32_vec();
        let mut tr = vec![0f32; m * kk];
        for i in 0..m {
            for j in 0..kk {
                tr[i * kk + j] = v[j * m + i];
            }
        }
        (k.rodata_f32(e, &tr)?, kk)
    } else {
        (k.ins[0], kk)
    };
    // C handling.
    let c_dims = if k.node.inputs.len() > 2 {
        Some(k.in_dims(2))
    } else {
        None
    };
    let row_vector = c_dims
        .as_ref()
        .is_some_and(|d| d.iter().product::<usize>() == n && d.last() == Some(&n) && n > 0);
    let mut bias: Option<Value> = None;
    let mut add_c_after = false;
    if let Some(cd) = &c_dims {
        if beta != 0.0 {
            if row_vector {
                if let Some(ct) = k.const_in(2) {
                    let v: Vec<f32> = ct.to_f32_vec().iter().map(|x| x * beta).collect();
                    bias = Some(k.rodata_f32(e, &v)?);
                } else if beta == 1.0 {
                    bias = Some(k.ins[2]);
                } else {
                    add_c_after = true;
                }
            } else if cd.iter().product::<usize>() > 0 {
                add_c_after = true;
            }
        }
    }
    let out = k.outs[0];
    let packed_b = match k.const_in(1) {
        Some(bt) => {
            let mut v = bt.to_f32_vec();
            if alpha != 1.0 {
                v.iter_mut().for_each(|x| *x *= alpha);
            }
            let packed = gemm::pack_for(e, &v, kk, n, a.trans_b);
            Some(k.rodata_f32(e, &packed)?)
        }
        None if a.trans_b || alpha != 1.0 => {
            return Err(k.unsupported("gemm with a run-time B that is transposed or scaled"));
        }
        None => None,
    };
    let rows = gemm::split_rows(m, k.tasks);
    let (b_in, c_in) = (k.ins[1], k.ins.get(2).copied());
    let cd = c_dims.unwrap_or_default();
    k.for_task(e, |e, t| {
        let Some(r) = rows.get(t) else { return };
        let mt = r.end - r.start;
        let at = e.addr(a_ptr, (r.start * lda * 4) as i64);
        let ot = e.addr(out, (r.start * n * 4) as i64);
        let b = match packed_b {
            Some(bp) => gemm::BOperand::Packed(bp),
            None => gemm::BOperand::InPlace { b: b_in, ldb: n },
        };
        gemm::emit(e, at, lda, b, ot, n, mt, n, kk, bias);
        if let (true, Some(c)) = (add_c_after, c_in) {
            let st = broadcast_strides(&cd, &[m, n]);
            let bv = e.fconst(types::F32, beta);
            e.loop_range(r.start as i64, r.end as i64, 1, |e, i| {
                let crow = e.index(c, i, st[0] * 4);
                let orow = e.index(out, i, (n * 4) as i64);
                e.loop_n(n, |e, j| {
                    let ca = e.index(crow, j, st[1] * 4);
                    let cv = e.load(types::F32, ca, 0);
                    let oa = e.index(orow, j, 4);
                    let o = e.load(types::F32, oa, 0);
                    let r = e.fma(cv, bv, o);
                    e.store(r, oa, 0);
                });
            });
        }
    });
    Ok(())
}

pub fn matmul(e: &mut Emitter, k: &mut KernelContext) -> Result<(), JitError> {
    k.require_f32()?;
    let mut ad = k.in_dims(0);
    let mut bd = k.in_dims(1);
    if ad.is_empty() || bd.is_empty() {
        return Err(k.unsupported("matmul of scalars"));
    }
    if ad.len() == 1 {
        ad.insert(0, 1);
    }
    if bd.len() == 1 {
        bd.push(1);
    }
    // One B for every batch: A's batches are rows of a single GEMM.
    if folds_batch(&ad, &bd) {
        let rows: usize = ad[..ad.len() - 1].iter().product();
        let k_ = ad[ad.len() - 1];
        ad = vec![rows, k_];
        bd = bd[bd.len() - 2..].to_vec();
    }
    let (m, kk) = (ad[ad.len() - 2], ad[ad.len() - 1]);
    let n = bd[bd.len() - 1];
    let a_batch = &ad[..ad.len() - 2];
    let b_batch = &bd[..bd.len() - 2];
    let rank = a_batch.len().max(b_batch.len());
    let mut batch = vec![1usize; rank];
    for i in 0..rank {
        let x = if i + a_batch.len() >= rank {
            a_batch[i + a_batch.len() - rank]
        } else {
            1
        };
        let y = if i + b_batch.len() >= rank {
            b_batch[i + b_batch.len() - rank]
        } else {
            1
        };
        batch[i] = x.max(y);
    }
    let sa = broadcast_strides(a_batch, &batch);
    let sb = broadcast_strides(b_batch, &batch);
    let so = crate::jit::emit::strides_of(&batch);
    let (a_mat, b_mat, o_mat) = ((m * kk * 4) as i64, (kk * n * 4) as i64, (m * n * 4) as i64);
    let strides = vec![
        sa.iter().map(|s| s * a_mat).chain([0]).collect::<Vec<_>>(),
        sb.iter().map(|s| s * b_mat).chain([0]).collect::<Vec<_>>(),
        so.iter().map(|s| s * o_mat).chain([0]).collect::<Vec<_>>(),
    ];
    let mut dims = batch.clone();
    dims.push(1);
    let shared_const_b = sb.iter().all(|&s| s == 0) && k.const_in(1).is_some();
    let packed = if shared_const_b {
        let v = k.const_in(1).map(|t| t.to_f32_vec()).unwrap_or_default();
        let p = gemm::pack_for(e, &v[..kk * n], kk, n, false);
        Some(k.rodata_f32(e, &p)?)
    } else {
        None
    };
    let (a0, b0, o0) = (k.ins[0], k.ins[1], k.outs[0]);
    let rows = gemm::split_rows(m, k.tasks);
    k.for_task(e, |e, t| {
        let Some(r) = rows.get(t) else { return };
        let mt = r.end - r.start;
        let at = e.addr(a0, (r.start * kk * 4) as i64);
        let ot = e.addr(o0, (r.start * n * 4) as i64);
        e.nest(&dims, &strides, &[at, b0, ot], &mut |e, p| {
            let b = match packed {
                Some(bp) => gemm::BOperand::Packed(bp),
                None => gemm::BOperand::InPlace { b: p[1], ldb: n },
            };
            gemm::emit(e, p[0], kk, b, p[2], n, mt, n, kk, None)
        });
    });
    Ok(())
}
