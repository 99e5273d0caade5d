//! Softmax, LogSoftmax, LayerNorm and BatchNorm (f32).
//!
//! - Softmax/LogSoftmax over one axis, `max`-shifted like the interpreter; rows along the last
//!   axis (inner extent 1) run on `F32X4`, other axes run strided scalar loops.
//! - LayerNorm: two passes per row (mean, then variance of the centred values), then
//!   `(x - mean) / sqrt(var + eps) * scale + bias`; scale/bias must be constant or cover the
//!   whole normalised block (`numel == block`), or be scalars.
//! - BatchNorm with constant statistics becomes a per-channel affine map `x * s + t` computed at
//!   compile time in f64.

use crate::jit::context::KernelContext;
use crate::jit::emit::Emitter;
use crate::jit::error::JitError;
use crate::jit::kernels::softmax::softmax_row;
use cranelift_codegen::ir::{types, InstBuilder, Value};

pub fn batch_norm(e: &mut Emitter, k: &mut KernelContext, eps: f32) -> Result<(), JitError> {
    k.require_f32()?;
    let d = k.in_dims(0);
    if d.len() < 2 {
        return Err(k.unsupported("batch_norm on inputs of rank < 2"));
    }
    let c = d[1];
    let mut p: Vec<Vec<f64>> = Vec::new();
    for i in 1..5 {
        match k.const_in(i) {
            Some(t) if t.numel() == c => p.push(t.to_f64_vec()),
            _ => return Err(k.unsupported("batch_norm with run-time statistics")),
        }
    }
    let s: Vec<f32> = (0..c)
        .map(|i| (p[0][i] / (p[3][i] + eps as f64).sqrt()) as f32)
        .collect();
    let t: Vec<f32> = (0..c)
        .map(|i| (p[1][i] - p[2][i] * p[0][i] / (p[3][i] + eps as f64).sqrt()) as f32)
        .collect();
    let sp = k.rodata_f32(e, &s)?;
    let tp = k.rodata_f32(e, &t)?;
    let inner: usize = d[2..].iter().product();
    let (x, out) = (k.ins[0], k.outs[0]);
    e.loop_n(d[0] * c, |e, pl| {
        let ch = e.fb.ins().urem_imm_s(pl, c as i64);
        let sa = e.index(sp, ch, 4);
        let ta = e.index(tp, ch, 4);
        let sv = e.load(types::F32, sa, 0);
        let tv = e.load(types::F32, ta, 0);
        let xs = e.index(x, pl, (inner * 4) as i64);
        let os = e.index(out, pl, (inner * 4) as i64);
        affine_row(e, xs, os, inner, sv, tv);
    });
    Ok(())
}

/// `out[i] = x[i] * s + t` for `n` contiguous f32.
fn affine_row(e: &mut Emitter, x: Value, out: Value, n: usize, s: Value, t: Value) {
    let sv = e.fb.ins().splat(types::F32X4, s);
    let tv = e.fb.ins().splat(types::F32X4, t);
    let chunks = n / 4;
    e.loop_n(chunks, |e, i| {
        let a = e.index(x, i, 16);
        let v = e.load(types::F32X4, a, 0);
        let r = e.fma(v, sv, tv);
        let o = e.index(out, i, 16);
        e.store(r, o, 0);
    });
    for j in chunks * 4..n {
        let v = e.load(types::F32, x, (j * 4) as i32);
        let r = e.fma(v, s, t);
        e.store(r, out, (j * 4) as i32);
    }
}

pub fn softmax(
    e: &mut Emitter,
    k: &mut KernelContext,
    axis: i64,
    log: bool,
) -> Result<(), JitError> {
    k.require_f32()?;
    let d = k.in_dims(0);
    let ax = kestrel_ir::norm_axis(axis, d.len()).map_err(|w| k.unsupported(w))?;
    let ext = d[ax];
    let inner: usize = d[ax + 1..].iter().product();
    let outer: usize = d[..ax].iter().product();
    if ext == 0 || inner == 0 || outer == 0 {
        return Ok(());
    }
    let (x, out) = (k.ins[0], k.outs[0]);
    let row = (ext * inner * 4) as i64;
    let st = (inner * 4) as i64;
    e.loop_n(outer, |e, o| {
        let xo = e.index(x, o, row);
        let oo = e.index(out, o, row);
        e.loop_n(inner, |e, i| {
            let xr = e.index(xo, i, 4);
            let or = e.index(oo, i, 4);
            softmax_row(e, xr, or, ext, st, log);
        });
    });
    Ok(())
}

pub fn layer_norm(
    e: &mut Emitter,
    k: &mut KernelContext,
    axis: i64,
    eps: f32,
) -> Result<(), JitError> {
    k.require_f32()?;
    let d = k.in_dims(0);
    let ax = kestrel_ir::norm_axis(axis, d.len()).map_err(|w| k.unsupported(w))?;
    let block: usize = d[ax..].iter().product();
    let rows: usize = d[..ax].iter().product();
    if block == 0 || rows == 0 {
        return Ok(());
    }
    // Scale and bias expanded to the block (from constants) or used directly when full-sized.
    let mut params: Vec<Option<Value>> = Vec::new();
    for i in 1..3 {
        if i >= k.node.inputs.len() {
            params.push(None);
            continue;
        }
        let pd = k.in_dims(i);
        let n: usize = pd.iter().product();
        if n == block {
            params.push(Some(k.ins[i]));
        } else if let Some(t) = k.const_in(i) {
            let v = t.to_f32_vec();
            let full_dims: Vec<usize> = d[ax..].to_vec();
            let st = crate::jit::emit::broadcast_strides(
                &pd[pd.len().saturating_sub(full_dims.len())..],
                &full_dims,
            );
            let mut exp = Vec::with_capacity(block);
            let mut idx = vec![0usize; full_dims.len()];
            for _ in 0..block {
                let off: i64 = idx.iter().zip(&st).map(|(&a, &s)| a as i64 * s).sum();
                exp.push(v.get(off as usize).copied().unwrap_or(0.0));
                for a in (0..idx.len()).rev() {
                    idx[a] += 1;
                    if idx[a] < full_dims[a] {
                        break;
                    }
                    idx[a] = 0;
                }
            }
            params.push(Some(k.rodata_f32(e, &exp)?));
        } else {
            return Err(k.unsupported("layer_norm with a broadcast run-time scale or bias"));
        }
    }
    let (x, out) = (k.ins[0], k.outs[0]);
    let (scale, bias) = (params[0], params[1]);
    let bytes = (block * 4) as i64;
    let chunks = block / 4;
    let tail0 = chunks * 4;
    e.loop_n(rows, |e, r| {
        let xr = e.index(x, r, bytes);
        let or = e.index(out, r, bytes);
        // Mean.
        let z4 = e.fconst(types::F32X4, 0.0);
        let s = e.loop_acc(chunks, &[z4], |e, i, acc| {
            let a = e.index(xr, i, 16);
            let v = e.load(types::F32X4, a, 0);
            vec![e.fb.ins().fadd(acc[0], v)]
        })[0];
        let mut sum = e.hsum(s);
        for j in tail0..block {
            let v = e.load(types::F32, xr, (j * 4) as i32);
            sum = e.fb.ins().fadd(sum, v);
        }
        let invn = e.fconst(types::F32, 1.0 / block as f32);
        let mean = e.fb.ins().fmul(sum, invn);
        let meanv = e.fb.ins().splat(types::F32X4, mean);
        // Variance of the centred values.
        let q = e.loop_acc(chunks, &[z4], |e, i, acc| {
            let a = e.index(xr, i, 16);
            let v = e.load(types::F32X4, a, 0);
            let c = e.fb.ins().fsub(v, meanv);
            vec![e.fma(c, c, acc[0])]
        })[0];
        let mut ss = e.hsum(q);
        for j in tail0..block {
            let v = e.load(types::F32, xr, (j * 4) as i32);
            let c = e.fb.ins().fsub(v, mean);
            ss = e.fma(c, c, ss);
        }
        let var = e.fb.ins().fmul(ss, invn);
        let epsc = e.fconst(types::F32, eps);
        let ve = e.fb.ins().fadd(var, epsc);
        let sd = e.fb.ins().sqrt(ve);
        let one = e.fconst(types::F32, 1.0);
        let inv = e.fb.ins().fdiv(one, sd);
        let invv = e.fb.ins().splat(types::F32X4, inv);
        e.loop_n(chunks, |e, i| {
            let a = e.index(xr, i, 16);
            let v = e.load(types::F32X4, a, 0);
            let c = e.fb.ins().fsub(v, meanv);
            let mut y = e.fb.ins().fmul(c, invv);
            if let Some(sp) = scale {
                let sa = e.index(sp, i, 16);
                let sv = e.load(types::F32X4, sa, 0);
                y = e.fb.ins().fmul(y, sv);
            }
            if let Some(bp) = bias {
                let ba = e.index(bp, i, 16);
                let bv = e.load(types::F32X4, ba, 0);
                y = e.fb.ins().fadd(y, bv);
            }
            let o = e.index(or, i, 16);
            e.store(y, o, 0);
        });
        for j in tail0..block {
            let v = e.load(types::F32, xr, (j * 4) as i32);
            let c = e.fb.ins().fsub(v, mean);
            let mut y = e.fb.ins().fmul(c, inv);
            if let Some(sp) = scale {
                let sv = e.load(types::F32, sp, (j * 4) as i32);
                y = e.fb.ins().fmul(y, sv);
            }
            if let Some(bp) = bias {
                let bv = e.load(types::F32, bp, (j * 4) as i32);
                y = e.fb.ins().fadd(y, bv);
            }
            e.store(y, or, (j * 4) as i32);
        }
    });
    Ok(())
}
