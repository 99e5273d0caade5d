//! Data-movement kernels. They copy element bytes, so every dtype is supported.
//!
//! Ops whose parameters are constant (`Transpose`, `Slice`, `Gather` with constant indices,
//! `Split`, `Tile`, `Pad`, nearest `Resize`) are compiled from a source-index map computed at
//! compile time by running the reference interpreter on an "iota" tensor (element `i` holds `i`)
//! of the input's shape: output element `o` then holds the index of the input element it copies
//! (or, for padding and extrapolation, a marker meaning "the fill value"). The map is emitted as
//! a strided loop nest when it is affine in the output coordinates (transposes, slices,
//! broadcasts), as contiguous runs when those are long, or else as a per-element table.
//! So these kernels agree with the interpreter by construction.

use crate::jit::context::KernelContext;
use crate::jit::emit::{collapse, int_type_of_size, strides_of, Emitter};
use crate::jit::error::JitError;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use kestrel_ir::{DType, Op, ResizeMode, Tensor};

/// Largest index map built at compile time (elements).
const MAX_MAP: usize = 1 << 26;

/// Copies the whole input (views that produce a graph output, or `Identity`).
pub fn copy(e: &mut Emitter, k: &mut KernelContext) -> Result<(), JitError> {
    let bytes = k.out_dims(0).iter().product::<usize>() * k.out_dtype(0).size();
    e.memcpy(k.outs[0], k.ins[0], bytes);
    Ok(())
}

/// `Expand`: a broadcast copy (the target shape input need not be constant: the output type
/// already holds the shape).
pub fn expand(e: &mut Emitter, k: &mut KernelContext) -> Result<(), JitError> {
    let out = k.out_dims(0);
    let s = crate::jit::emit::broadcast_strides(&k.in_dims(0), &out);
    copy_strided(e, k.ins[0], k.outs[0], k.in_dtype(0).size(), &out, &s, 0);
    Ok(())
}

/// `ConstantOfShape` with a run-time shape input: fills the (statically known) output.
pub fn constant_of_shape(
    e: &mut Emitter,
    k: &mut KernelContext,
    value: &Tensor,
) -> Result<(), JitError> {
    let bytes = k.out_dims(0).iter().product::<usize>() * k.out_dtype(0).size();
    let elem = value.bytes().to_vec();
    e.fill_bytes(k.outs[0], bytes, &elem);
    Ok(())
}

/// `Concat`: one strided block copy per input.
pub fn concat(e: &mut Emitter, k: &mut KernelContext, axis: i64) -> Result<(), JitError> {
    let out = k.out_dims(0);
    let ax = kestrel_ir::norm_axis(axis, out.len()).map_err(|w| k.unsupported(w))?;
    let es = k.out_dtype(0).size();
    let outer: usize = out[..ax].iter().product();
    let after: usize = out[ax + 1..].iter().product();
    let row = out[ax] * after * es;
    let mut off = 0usize;
    for i in 0..k.node.inputs.len() {
        let d = k.in_dims(i);
        let block = d[ax] * after * es;
        let (src, dst) = (k.ins[i], k.outs[0]);
        if block > 0 {
            e.loop_n(outer, |e, o| {
                let s = e.index(src, o, block as i64);
                let d0 = e.index(dst, o, row as i64);
                let d1 = e.addr(d0, off as i64);
                e.memcpy(d1, s, block);
            });
        }
        off += block;
    }
    Ok(())
}

/// `Gather` with run-time indices (i32/i64): negative indices count from the end; an index out
/// of range makes the entry function return this node's status (nothing is read out of bounds).
pub fn gather_runtime(e: &mut Emitter, k: &mut KernelContext, axis: i64) -> Result<(), JitError> {
    let d = k.in_dims(0);
    let ax = kestrel_ir::norm_axis(axis, d.len()).map_err(|w| k.unsupported(w))?;
    let idt = k.in_dtype(1);
    let ity = match idt {
        DType::I32 => types::I32,
        DType::I64 => types::I64,
        _ => return Err(k.unsupported(format!("gather indices of dtype {idt}"))),
    };
    let es = k.in_dtype(0).size();
    let nidx: usize = k.in_dims(1).iter().product();
    let outer: usize = d[..ax].iter().product();
    let after: usize = d[ax + 1..].iter().product();
    let ext = d[ax] as i64;
    let block = after * es;
    let (src, idx, dst) = (k.ins[0], k.ins[1], k.outs[0]);
    let isz = idt.size() as i64;
    // Validate every index first, so a bad index writes nothing.
    e.loop_n(nidx, |e, j| {
        let a = e.index(idx, j, isz);
        let v = e.load(ity, a, 0);
        let v = if ity == types::I32 {
            e.fb.ins().sextend(types::I64, v)
        } else {
            v
        };
        let lo = e.fb.ins().icmp_imm_s(IntCC::SignedLessThan, v, -ext);
        let hi =
            e.fb.ins()
                .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, v, ext);
        let bad = e.fb.ins().bor(lo, hi);
        k.fail_if(e, bad);
    });
    e.loop_n(outer, |e, o| {
        let s0 = e.index(src, o, (ext as usize * block) as i64);
        let d0 = e.index(dst, o, (nidx * block) as i64);
        e.loop_n(nidx, |e, j| {
            let a = e.index(idx, j, isz);
            let v = e.load(ity, a, 0);
            let v = if ity == types::I32 {
                e.fb.ins().sextend(types::I64, v)
            } else {
                v
            };
            let neg = e.fb.ins().icmp_imm_s(IntCC::SignedLessThan, v, 0);
            let w = e.fb.ins().iadd_imm_s(v, ext);
            let v = e.fb.ins().select(neg, w, v);
            let s = e.index(s0, v, block as i64);
            let dd = e.index(d0, j, block as i64);
            e.memcpy(dd, s, block);
        });
    });
    Ok(())
}

/// Ops compiled from a compile-time source-index map (see the module documentation).
pub fn by_index(e: &mut Emitter, k: &mut KernelContext) -> Result<(), JitError> {
    let in_dims = k.in_dims(0);
    let n_in: usize = in_dims.iter().product();
    if n_in >= i32::MAX as usize {
        return Err(k.unsupported("inputs of 2^31 elements or more"));
    }
    for j in 0..k.node.outputs.len() {
        if k.out_dims(j).iter().product::<usize>() > MAX_MAP {
            return Err(k.unsupported("index maps over 2^26 elements"));
        }
    }
    let mut op = k.node.op.clone();
    let is_resize = matches!(op, Op::Resize(_));
    if let Op::Resize(a) = &mut op {
        if a.mode != ResizeMode::Nearest {
            return Err(k.unsupported("resize modes other than nearest"));
        }
        if a.antialias {
            return Err(k.unsupported("antialiased resize"));
        }
        a.extrapolation_value = kestrel_ir::F32(-1.0);
    }
    // The iota input: i64, or f64 for Resize (exact for indices below 2^53).
    let iota = if is_resize {
        let v: Vec<f64> = (0..n_in).map(|i| i as f64).collect();
        Tensor::from_vec(in_dims.clone(), v)
    } else {
        let v: Vec<i64> = (0..n_in as i64).collect();
        Tensor::from_vec(in_dims.clone(), v)
    };
    let mut args: Vec<Tensor> = vec![iota];
    let mut fill: Vec<u8> = vec![0u8; k.in_dtype(0).size()];
    for i in 1..k.node.inputs.len() {
        let is_pad_value = matches!(op, Op::Pad { .. }) && i == 2;
        let t = k
            .const_in(i)
            .cloned()
            .ok_or_else(|| k.unsupported(format!("{} with a run-time input {i}", op.name())))?;
        if is_pad_value {
            fill = t.bytes().to_vec();
            args.push(Tensor::scalar(-1i64));
        } else {
            args.push(t);
        }
    }
    if matches!(op, Op::Pad { .. }) && k.node.inputs.len() < 3 {
        args.push(Tensor::scalar(-1i64));
    }
    if let Op::Resize(a) = &k.node.op {
        let f = a.extrapolation_value.0;
        fill = match k.in_dtype(0) {
            DType::F32 => f.to_le_bytes().to_vec(),
            _ => fill,
        };
    }
    let refs: Vec<&Tensor> = args.iter().collect();
    let outs = crate::interp::eval_op(&op, &refs).map_err(|er| JitError::Fold {
        node: k.g.describe_node(k.id),
        reason: er.to_string(),
    })?;
    let es = k.in_dtype(0).size();
    for (j, t) in outs.iter().enumerate() {
        if t.dims() != k.out_dims(j).as_slice() {
            return Err(k.unsupported("an output shape that differs from type inference"));
        }
        let map: Vec<i64> = if is_resize {
            t.to_f64_vec()
                .iter()
                .map(|&v| if v < 0.0 { -1 } else { v as i64 })
                .collect()
        } else {
            t.to_i64_vec()
        };
        emit_map(e, k, k.ins[0], k.outs[j], es, t.dims(), &map, &fill)?;
    }
    Ok(())
}

/// Emits `dst[o] = map[o] < 0 ? fill : src[map[o]]` for every output element `o`.
#[allow(clippy::too_many_arguments)]
fn emit_map(
    e: &mut Emitter,
    k: &mut KernelContext,
    src: Value,
    dst: Value,
    es: usize,
    dims: &[usize],
    map: &[i64],
    fill: &[u8],
) -> Result<(), JitError> {
    if map.is_empty() {
        return Ok(());
    }
    if let Some((base, strides)) = affine(dims, map) {
        copy_strided(e, src, dst, es, dims, &strides, base);
        return Ok(());
    }
    // Contiguous runs: (dst start, src start or -1, length).
    let mut runs: Vec<[i32; 3]> = Vec::new();
    for (o, &m) in map.iter().enumerate() {
        if let Some(r) = runs.last_mut() {
            let (s, len) = (r[1] as i64, r[2] as i64);
            let extends = (m < 0 && s < 0) || (m >= 0 && s >= 0 && m == s + len);
            if extends {
                r[2] += 1;
                continue;
            }
        }
        runs.push([o as i32, if m < 0 { -1 } else { m as i32 }, 1]);
    }
    let ety = int_type_of_size(es);
    let fill_c = {
        let mut b = [0u8; 8];
        b[..es.min(8)].copy_from_slice(&fill[..es.min(8).min(fill.len())]);
        i64::from_le_bytes(b)
    };
    if runs.len() * 3 <= map.len() {
        let bytes: Vec<u8> = runs
            .iter()
            .flatten()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let table = k.rodata(e, bytes)?;
        let fc = e.fb.ins().iconst(ety, fill_c);
        e.loop_n(runs.len(), |e, r| {
            let a = e.index(table, r, 12);
            let d = e.load(types::I32, a, 0);
            let s = e.load(types::I32, a, 4);
            let n = e.load(types::I32, a, 8);
            let d = e.fb.ins().sextend(types::I64, d);
            let s = e.fb.ins().sextend(types::I64, s);
            let n = e.fb.ins().sextend(types::I64, n);
            let dp = e.index(dst, d, es as i64);
            let is_fill = e.fb.ins().icmp_imm_s(IntCC::SignedLessThan, s, 0);
            let fill_b = e.fb.create_block();
            let copy_b = e.fb.create_block();
            let done = e.fb.create_block();
            e.fb.ins().brif(is_fill, fill_b, &[], copy_b, &[]);
            e.fb.switch_to_block(fill_b);
            runtime_loop(e, n, |e, j| {
                let p = e.index(dp, j, es as i64);
                e.store(fc, p, 0);
            });
            e.fb.ins().jump(done, &[]);
            e.fb.switch_to_block(copy_b);
            let sp = e.index(src, s, es as i64);
            runtime_loop(e, n, |e, j| {
                let p = e.index(sp, j, es as i64);
                let v = e.load(ety, p, 0);
                let q = e.index(dp, j, es as i64);
                e.store(v, q, 0);
            });
            e.fb.ins().jump(done, &[]);
            e.fb.switch_to_block(done);
        });
    } else {
        let bytes: Vec<u8> = map
            .iter()
            .flat_map(|&m| (m.max(-1) as i32).to_le_bytes())
            .collect();
        let table = k.rodata(e, bytes)?;
        let fill_ptr = k.rodata(e, fill.to_vec())?;
        e.loop_n(map.len(), |e, o| {
            let a = e.index(table, o, 4);
            let m = e.load(types::I32, a, 0);
            let m = e.fb.ins().sextend(types::I64, m);
            let is_fill = e.fb.ins().icmp_imm_s(IntCC::SignedLessThan, m, 0);
            let sp = e.index(src, m, es as i64);
            let p = e.fb.ins().select(is_fill, fill_ptr, sp);
            let v = e.load(ety, p, 0);
            let q = e.index(dst, o, es as i64);
            e.store(v, q, 0);
        });
    }
    Ok(())
}

/// `for j in 0..n` with a run-time trip count `n` (I64, may be 0).
pub fn runtime_loop(e: &mut Emitter, n: Value, body: impl FnOnce(&mut Emitter, Value)) {
    let header = e.fb.create_block();
    let bodyb = e.fb.create_block();
    let exit = e.fb.create_block();
    e.fb.append_block_param(header, types::I64);
    let z = e.iconst(0);
    e.fb.ins().jump(header, &[z.into()]);
    e.fb.switch_to_block(header);
    let j = e.fb.block_params(header)[0];
    let more = e.fb.ins().icmp(IntCC::SignedLessThan, j, n);
    e.fb.ins().brif(more, bodyb, &[], exit, &[]);
    e.fb.switch_to_block(bodyb);
    body(e, j);
    let next = e.fb.ins().iadd_imm_s(j, 1);
    e.fb.ins().jump(header, &[next.into()]);
    e.fb.switch_to_block(exit);
}

/// `Some((base, strides))` when `map[o] == base + sum(o_i * strides[i])` for every output
/// multi-index `o` (and no fill markers).
fn affine(dims: &[usize], map: &[i64]) -> Option<(i64, Vec<i64>)> {
    let base = map[0];
    if base < 0 {
        return None;
    }
    let os = strides_of(dims);
    let strides: Vec<i64> = dims
        .iter()
        .zip(&os)
        .map(|(&d, &s)| if d > 1 { map[s as usize] - base } else { 0 })
        .collect();
    let mut idx = vec![0usize; dims.len()];
    let mut expect = base;
    for &m in map {
        if m != expect {
            return None;
        }
        for a in (0..dims.len()).rev() {
            idx[a] += 1;
            expect += strides[a];
            if idx[a] < dims[a] {
                break;
            }
            expect -= strides[a] * dims[a] as i64;
            idx[a] = 0;
        }
    }
    Some((base, strides))
}

/// Copies `dst[o] = src[base + sum(o_i * strides[i])]` (elements of `es` bytes; `dst`
/// contiguous in the row-major order of `dims`).
pub fn copy_strided(
    e: &mut Emitter,
    src: Value,
    dst: Value,
    es: usize,
    dims: &[usize],
    strides: &[i64],
    base: i64,
) {
    if dims.iter().product::<usize>() == 0 {
        return;
    }
    let (d, s) = collapse(dims, &[strides.to_vec(), strides_of(dims)]);
    let n = d.len();
    let bs: Vec<Vec<i64>> = s
        .iter()
        .map(|v| v.iter().map(|&x| x * es as i64).collect())
        .collect();
    let src0 = e.addr(src, base * es as i64);
    let inner = d[n - 1];
    let (sin, din) = (bs[0][n - 1], bs[1][n - 1]);
    let ety = int_type_of_size(es);
    e.nest(&d, &bs, &[src0, dst], &mut |e, p| {
        if sin == es as i64 && din == es as i64 {
            e.memcpy(p[1], p[0], inner * es);
        } else if es == 4 && inner >= 4 && din == 4 {
            // Gather 4 strided f32 into one vector store.
            let chunks = inner / 4;
            e.loop_n(chunks, |e, i| {
                let sp = e.index(p[0], i, sin * 4);
                let dp = e.index(p[1], i, 16);
                let v0 = e.load(types::F32, sp, 0);
                let mut v = e.fb.ins().splat(types::F32X4, v0);
                for l in 1..4u8 {
                    let x = e.load(types::F32, sp, (sin * l as i64) as i32);
                    v = e.fb.ins().insertlane(v, x, l);
                }
                e.store(v, dp, 0);
            });
            for j in chunks * 4..inner {
                let v = e.load(types::F32, p[0], (sin * j as i64) as i32);
                e.store(v, p[1], (din * j as i64) as i32);
            }
        } else {
            e.loop_n(inner, |e, i| {
                let sp = e.index(p[0], i, sin);
                let dp = e.index(p[1], i, din);
                let v = e.load(ety, sp, 0);
                e.store(v, dp, 0);
            });
        }
    });
}
