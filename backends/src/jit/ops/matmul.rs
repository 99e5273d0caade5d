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
//! compile-time specialised GEMM on its rows (of every batch matrix, for MatMul). A Gemm with
//! too few rows for its tasks (a batch-1 classifier's one row) and a constant B is split by
//! columns of B and C instead, each task with its own packed columns.

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
    // With fewer rows than a tile's, each weight is read for that few multiply-adds: the
    // product streams B from memory, which is worth more threads than its arithmetic.
    let work = if m < gemm::MR {
        macs * GEMV_UNITS_PER_MAC
    } else {
        macs
    };
    if work < 2 * min {
        return 1;
    }
    let parts = opts.threads.min(work / min);
    let rows = gemm::split_rows(m, parts).len().max(1);
    match column_parts(g, node, parts) {
        Some(cols) if cols.len() > rows => cols.len(),
        _ => rows,
    }
}

/// Units of work per multiply-add of a GEMM of fewer than `gemm::MR` rows (memory-bound: 4 bytes
/// of B per multiply-add), against `JitOptions::min_task_macs`.
const GEMV_UNITS_PER_MAC: usize = 4;

/// The columns each task of this Gemm kernel computes when it is split by columns
/// ([`column_parts`]: more tasks than row ranges of its `m` rows), else `None` (split by rows).
pub fn gemm_column_split(k: &KernelContext, m: usize) -> Option<Vec<std::ops::Range<usize>>> {
    if gemm::split_rows(m, k.tasks).len() >= k.tasks {
        return None;
    }
    column_parts(k.g, k.node, k.tasks).filter(|c| c.len() == k.tasks)
}

/// Columns per task of a column split: whole 32-column panels (the widest tile's).
const COLUMN_PANEL: usize = 32;

/// The column ranges of a Gemm split into `parts` tasks by columns of B and C instead of rows of
/// A: for a Gemm whose B is a constant (packed per task at compile time) and whose C is absent or
/// a row vector (a column bias, sliced with the columns). This is what a batch-1 classifier (one
/// row) splits by. `None` for anything else.
fn column_parts(g: &Graph, node: &Node, parts: usize) -> Option<Vec<std::ops::Range<usize>>> {
    let Op::Gemm(ref a) = node.op else {
        return None;
    };
    if !matches!(g.value(node.inputs[1]).def, kestrel_ir::ValueDef::Const(_)) {
        return None;
    }
    let (_, _, n, _) = problem(g, node)?;
    if let Some(&c) = node.inputs.get(2) {
        let cd = g.ty(c).dims()?;
        let row_vector = cd.iter().product::<usize>() == n && cd.last() == Some(&n);
        if a.beta.0 != 0.0 && !row_vector {
            return None;
        }
    }
    let chunk = n.div_ceil(parts.max(1)).next_multiple_of(COLUMN_PANEL);
    let cols: Vec<_> = (0..parts)
        .map(|t| (t * chunk).min(n)..((t + 1) * chunk).min(n))
        .filter(|r| r.start < r.end)
        .collect();
    (cols.len() > 1).then_some(cols)
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
    if let Some(cols) = gemm_column_split(k, m).filter(|_| !add_c_after) {
        if let Some(bt) = k.const_in(1) {
            // Each task packs its own columns of alpha·B at compile time.
            let v = bt.to_f32_vec();
            let mut panels = Vec::with_capacity(cols.len());
            for r in &cols {
                let mut sub = Vec::with_capacity(kk * r.len());
                for i in 0..kk {
                    for j in r.clone() {
                        let x = if a.trans_b {
                            v[j * kk + i]
                        } else {
                            v[i * n + j]
                        };
                        sub.push(x * alpha);
                    }
                }
                let packed = gemm::pack_for(e, &sub, kk, r.len(), false);
                panels.push(k.rodata_f32(e, &packed)?);
            }
            k.for_task(e, |e, t| {
                let Some(r) = cols.get(t) else { return };
                let ot = e.addr(out, (r.start * 4) as i64);
                let bt = bias.map(|b| e.addr(b, (r.start * 4) as i64));
                let b = gemm::BOperand::Packed(panels[t]);
                gemm::emit(e, a_ptr, lda, b, ot, n, m, r.len(), kk, bt);
            });
            return Ok(());
        }
    }
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
