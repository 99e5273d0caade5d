//! Element-wise kernels: every `Unary`/`Binary` op (the activations among them), `Clip`, `Where`
//! and `Cast`, with numpy broadcasting.
//!
//! Operands are walked by strided loop nests (broadcast axes have stride 0) after merging axes
//! every operand walks contiguously. When every operand is f32 and each walks the innermost axis
//! contiguously or not at all, the innermost loop runs on `F32X4` (broadcast operands splatted)
//! with a scalar tail; otherwise it is scalar. Supported dtypes: f32 for everything; i32/i64 for
//! arithmetic, min/max, comparisons, `Clip`, `Where`; bool for logic; `Cast` among f32, i32,
//! i64, and bool and the small integer types.

use crate::jit::context::KernelContext;
use crate::jit::emit::{broadcast_strides, collapse, Emitter};
use crate::jit::error::JitError;
use crate::jit::kernels::pointwise::apply;
use crate::jit::options::JitOptions;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use kestrel_ir::{BinaryOp, DType, Graph, Node, Op, UnaryOp};

/// The Cranelift scalar type holding one element of `dt`.
pub fn scalar_type(dt: DType) -> Option<Type> {
    Some(match dt {
        DType::F32 => types::F32,
        DType::I32 | DType::U32 => types::I32,
        DType::I64 | DType::U64 => types::I64,
        DType::I8 | DType::U8 | DType::Bool => types::I8,
        DType::I16 | DType::U16 => types::I16,
        _ => return None,
    })
}

/// Whether `op` on these dtypes is supported, and whether it may run on `F32X4`.
fn support(op: &Op, ins: &[DType], out: DType) -> Result<bool, String> {
    let all_f32 = ins.iter().all(|&d| d == DType::F32) && out == DType::F32;
    let dt = ins[0];
    let int = matches!(dt, DType::I32 | DType::I64);
    let bad = || Err(format!("{} on dtype {dt}", op.name()));
    match op {
        Op::Map(_) if all_f32 => Ok(true),
        Op::Map(_) => bad(),
        Op::Unary(u) => match u {
            UnaryOp::Not => {
                if dt == DType::Bool {
                    Ok(false)
                } else {
                    bad()
                }
            }
            UnaryOp::IsNaN => {
                if dt == DType::F32 {
                    Ok(false)
                } else {
                    bad()
                }
            }
            UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tan
            | UnaryOp::Asin
            | UnaryOp::Acos
            | UnaryOp::Atan
            | UnaryOp::Sinh
            | UnaryOp::Cosh
            | UnaryOp::Asinh
            | UnaryOp::Acosh
            | UnaryOp::Atanh => bad(),
            UnaryOp::Relu | UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign if int => Ok(false),
            _ if all_f32 => Ok(true),
            _ => bad(),
        },
        Op::Binary(b) => {
            if ins[0] != ins[1] && !matches!(b, BinaryOp::Pow) {
                return bad();
            }
            match b {
                BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => {
                    if dt == DType::Bool {
                        Ok(false)
                    } else {
                        bad()
                    }
                }
                BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual => {
                    if dt == DType::F32 || int || (dt == DType::Bool && *b == BinaryOp::Equal) {
                        Ok(false)
                    } else {
                        bad()
                    }
                }
                BinaryOp::Pow => {
                    if all_f32 {
                        Ok(true)
                    } else {
                        bad()
                    }
                }
                BinaryOp::Mod => {
                    if int {
                        Ok(false)
                    } else {
                        bad()
                    }
                }
                BinaryOp::Fmod => bad(),
                BinaryOp::Add
                | BinaryOp::Sub
                | BinaryOp::Mul
                | BinaryOp::Div
                | BinaryOp::Max
                | BinaryOp::Min
                    if int =>
                {
                    Ok(false)
                }
                _ if all_f32 => Ok(true),
                _ => bad(),
            }
        }
        Op::Clip => {
            if all_f32 {
                Ok(true)
            } else if int {
                Ok(false)
            } else {
                bad()
            }
        }
        Op::Where => {
            let (a, b) = (ins[1], ins[2]);
            if a != b || scalar_type(a).is_none() || ins[0] != DType::Bool {
                bad()
            } else {
                Ok(false)
            }
        }
        Op::Cast { to } => {
            let ok = |d: DType| scalar_type(d).is_some();
            if ok(dt) && ok(*to) {
                Ok(false)
            } else {
                Err(format!("cast from {dt} to {to}"))
            }
        }
        _ if all_f32 => Ok(true),
        _ => bad(),
    }
}

pub fn lower(e: &mut Emitter, k: &mut KernelContext) -> Result<(), JitError> {
    let op = k.node.op.clone();
    let in_dt: Vec<DType> = (0..k.node.inputs.len()).map(|i| k.in_dtype(i)).collect();
    let out_dt = k.out_dtype(0);
    let vec_ok = support(&op, &in_dt, out_dt).map_err(|w| k.unsupported(w))? && e.flags.has_simd();
    let out_dims = k.out_dims(0);
    let mut strides: Vec<Vec<i64>> = Vec::new();
    for i in 0..k.node.inputs.len() {
        strides.push(broadcast_strides(&k.in_dims(i), &out_dims));
    }
    strides.push(crate::jit::emit::strides_of(&out_dims));
    let (dims, st) = collapse(&out_dims, &strides);
    let n = dims.len();
    let inner = dims[n - 1];
    let sizes: Vec<i64> = in_dt
        .iter()
        .chain(std::iter::once(&out_dt))
        .map(|d| d.size() as i64)
        .collect();
    let byte_strides: Vec<Vec<i64>> = st
        .iter()
        .zip(&sizes)
        .map(|(s, &z)| s.iter().map(|&x| x * z).collect())
        .collect();
    let inner_st: Vec<i64> = st.iter().map(|s| s[n - 1]).collect();
    let vectorize = vec_ok && inner_st.iter().all(|&s| s == 0 || s == 1) && inner >= 4;
    let mut ptrs = k.ins.clone();
    ptrs.push(k.outs[0]);
    let nin = k.node.inputs.len();
    let mut err: Option<String> = None;
    let status = k.status;
    // Tasks split the outermost (collapsed) axis; when that is also the innermost one, each
    // task's inner loop covers only its own range.
    let parts = split_outer(dims[0], k.tasks);
    k.for_task(e, |e, t| {
        let Some(r) = parts.get(t) else { return };
        let mut dims_t = dims.clone();
        dims_t[0] = r.end - r.start;
        let inner_t = dims_t[n - 1];
        // Vector loops need 4 elements; a short 1-D task part runs scalar.
        let vectorize_t = vectorize && inner_t >= 4;
        let ptrs_t: Vec<Value> = ptrs
            .iter()
            .zip(&byte_strides)
            .map(|(&p, st)| e.addr(p, r.start as i64 * st[0]))
            .collect();
        let mut body = |e: &mut Emitter, p: &[Value]| {
            let res = if vectorize_t {
                inner_vector(e, &op, p, &inner_st, inner_t)
            } else {
                inner_scalar(e, &op, p, &byte_strides, n, inner_t, &in_dt, out_dt, status)
            };
            if let Err(w) = res {
                err.get_or_insert(w);
            }
        };
        e.nest(&dims_t, &byte_strides, &ptrs_t, &mut body);
    });
    let _ = nin;
    match err {
        Some(w) => Err(k.unsupported(w)),
        None => Ok(()),
    }
}

/// `0..n` in `parts` contiguous ranges (multiples of 4 except the last, so vector loops stay
/// whole); empty ranges are dropped.
fn split_outer(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.max(1);
    let chunk = n.div_ceil(parts).next_multiple_of(4).max(1);
    (0..parts)
        .map(|t| (t * chunk).min(n)..((t + 1) * chunk).min(n))
        .filter(|r| r.start < r.end)
        .collect()
}

/// Number of tasks an element-wise node is split into: transcendental ops count 16 units of work
/// per element, others 1, and a task needs at least `opts.min_task_macs` units.
pub fn task_count(g: &Graph, node: &Node, opts: &JitOptions) -> usize {
    let Some(dims) = g.ty(node.outputs[0]).dims() else {
        return 1;
    };
    // Only float ops are split (integer division can fail at run time; split nodes cannot).
    let float = |v| g.ty(v).dtype == DType::F32;
    if !float(node.outputs[0]) || !node.inputs.iter().copied().any(float) {
        return 1;
    }
    if matches!(node.op, Op::Binary(_)) && !node.inputs.iter().copied().all(float) {
        return 1;
    }
    let elems: usize = dims.iter().product();
    let heavy = match &node.op {
        Op::Unary(u) => !matches!(
            u,
            UnaryOp::Relu
                | UnaryOp::Neg
                | UnaryOp::Abs
                | UnaryOp::Floor
                | UnaryOp::Ceil
                | UnaryOp::Round
                | UnaryOp::Sign
                | UnaryOp::Not
                | UnaryOp::IsNaN
                | UnaryOp::Clip { .. }
                | UnaryOp::HardSigmoid { .. }
                | UnaryOp::LeakyRelu { .. }
        ),
        _ => false,
    };
    let work = elems * if heavy { 16 } else { 1 };
    let min = opts.min_task_macs.max(1);
    if work < 2 * min {
        return 1;
    }
    // The outermost axis after collapsing (as `lower` does) is what gets split.
    let mut strides: Vec<Vec<i64>> = node
        .inputs
        .iter()
        .map(|&v| broadcast_strides(&g.ty(v).dims().unwrap_or_default(), &dims))
        .collect();
    strides.push(crate::jit::emit::strides_of(&dims));
    let (cdims, _) = collapse(&dims, &strides);
    split_outer(cdims[0], opts.threads.min(work / min))
        .len()
        .max(1)
}

fn inner_vector(
    e: &mut Emitter,
    op: &Op,
    p: &[Value],
    inner_st: &[i64],
    inner: usize,
) -> Result<(), String> {
    let nin = p.len() - 1;
    let out = p[nin];
    // Broadcast operands: one scalar load, splatted once.
    let mut splats: Vec<Option<(Value, Value)>> = Vec::new();
    for i in 0..nin {
        if inner_st[i] == 0 {
            let s = e.load(types::F32, p[i], 0);
            let v = e.fb.ins().splat(types::F32X4, s);
            splats.push(Some((s, v)));
        } else {
            splats.push(None);
        }
    }
    let chunks = inner / 4;
    let mut res: Result<(), String> = Ok(());
    e.hoisting_constants(|e| {
        e.loop_n(chunks, |e, i| {
            let off = e.fb.ins().imul_imm_s(i, 16);
            let args: Vec<Value> = (0..nin)
                .map(|j| match splats[j] {
                    Some((_, v)) => v,
                    None => {
                        let a = e.fb.ins().iadd(p[j], off);
                        e.load(types::F32X4, a, 0)
                    }
                })
                .collect();
            match apply(e, op, &args, types::F32X4, 0) {
                Ok(r) => {
                    let a = e.fb.ins().iadd(out, off);
                    e.store(r, a, 0);
                }
                Err(w) => res = Err(w),
            }
        })
    });
    res?;
    for j in chunks * 4..inner {
        let args: Vec<Value> = (0..nin)
            .map(|q| match splats[q] {
                Some((s, _)) => s,
                None => e.load(types::F32, p[q], (j * 4) as i32),
            })
            .collect();
        let r = apply(e, op, &args, types::F32, 0)?;
        e.store(r, out, (j * 4) as i32);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn inner_scalar(
    e: &mut Emitter,
    op: &Op,
    p: &[Value],
    byte_strides: &[Vec<i64>],
    n: usize,
    inner: usize,
    in_dt: &[DType],
    out_dt: DType,
    status: i32,
) -> Result<(), String> {
    let nin = p.len() - 1;
    let mut res: Result<(), String> = Ok(());
    e.loop_n(inner, |e, i| {
        let mut args = Vec::new();
        for j in 0..nin {
            let a = e.index(p[j], i, byte_strides[j][n - 1]);
            let ty = scalar_type(in_dt[j]).unwrap_or(types::I8);
            args.push(e.load(ty, a, 0));
        }
        let ty = scalar_type(in_dt[0]).unwrap_or(types::I8);
        let r = match op {
            Op::Cast { to } => Ok(cast(e, args[0], in_dt[0], *to)),
            Op::Where => {
                let c = e.fb.ins().icmp_imm_s(IntCC::NotEqual, args[0], 0);
                Ok(e.fb.ins().select(c, args[1], args[2]))
            }
            _ if in_dt[0] == DType::F32 => apply(e, op, &args, types::F32, status),
            _ => apply_int(e, op, &args, ty, status),
        };
        match r {
            Ok(r) => {
                let a = e.index(p[nin], i, byte_strides[nin][n - 1]);
                let _ = out_dt;
                e.store(r, a, 0);
            }
            Err(w) => res = Err(w),
        }
    });
    res
}

/// Converts one scalar between dtypes with the interpreter's rules: float to int truncates toward
/// zero and saturates (NaN to 0), int to int wraps, to bool is `!= 0`.
fn cast(e: &mut Emitter, x: Value, from: DType, to: DType) -> Value {
    let fty = scalar_type(from).unwrap_or(types::I8);
    let tty = scalar_type(to).unwrap_or(types::I8);
    if to == DType::Bool {
        let nz = if from == DType::F32 {
            let z = e.fb.ins().f32const(0.0);
            e.fcmp(FloatCC::NotEqual, x, z)
        } else {
            e.fb.ins().icmp_imm_s(IntCC::NotEqual, x, 0)
        };
        return nz; // I8 0/1
    }
    if from == DType::F32 {
        if to == DType::F32 {
            return x;
        }
        // Saturate into the target's range via i64 (exact for every target up to 32 bits).
        let wide = if to == DType::U64 {
            e.fb.ins().fcvt_to_uint_sat(types::I64, x)
        } else {
            e.fb.ins().fcvt_to_sint_sat(types::I64, x)
        };
        if tty == types::I64 {
            return wide;
        }
        let (lo, hi) = to.int_range().unwrap_or((0, 0));
        let lo = e.iconst(lo as i64);
        let hi = e.iconst(hi as i64);
        let c = e.fb.ins().smax(wide, lo);
        let c = e.fb.ins().smin(c, hi);
        return e.fb.ins().ireduce(tty, c);
    }
    // Integer (or bool) source.
    let signed = from.is_signed_int();
    if to == DType::F32 {
        return if signed {
            e.fb.ins().fcvt_from_sint(types::F32, x)
        } else {
            e.fb.ins().fcvt_from_uint(types::F32, x)
        };
    }
    let (fb, tb) = (fty.bits(), tty.bits());
    if fb == tb {
        x
    } else if fb > tb {
        e.fb.ins().ireduce(tty, x)
    } else if signed {
        e.fb.ins().sextend(tty, x)
    } else {
        e.fb.ins().uextend(tty, x)
    }
}

/// Integer and bool element-wise ops (scalar, wrapping arithmetic as the interpreter).
fn apply_int(
    e: &mut Emitter,
    op: &Op,
    a: &[Value],
    ty: Type,
    status: i32,
) -> Result<Value, String> {
    Ok(match op {
        Op::Unary(UnaryOp::Not) => e.fb.ins().bxor_imm_s(a[0], 1),
        Op::Unary(UnaryOp::Neg) => e.fb.ins().ineg(a[0]),
        Op::Unary(UnaryOp::Abs) => e.fb.ins().iabs(a[0]),
        Op::Unary(UnaryOp::Relu) => {
            let z = e.fb.ins().iconst(ty, 0);
            e.fb.ins().smax(a[0], z)
        }
        Op::Unary(UnaryOp::Sign) => {
            let z = e.fb.ins().iconst(ty, 0);
            let gt = e.icmp(IntCC::SignedGreaterThan, a[0], z);
            let lt = e.icmp(IntCC::SignedLessThan, a[0], z);
            let g = e.fb.ins().uextend(ty, gt);
            let l = e.fb.ins().uextend(ty, lt);
            e.fb.ins().isub(g, l)
        }
        Op::Binary(b) => match b {
            BinaryOp::Add => e.fb.ins().iadd(a[0], a[1]),
            BinaryOp::Sub => e.fb.ins().isub(a[0], a[1]),
            BinaryOp::Mul => e.fb.ins().imul(a[0], a[1]),
            BinaryOp::Max => e.fb.ins().smax(a[0], a[1]),
            BinaryOp::Min => e.fb.ins().smin(a[0], a[1]),
            BinaryOp::And => e.fb.ins().band(a[0], a[1]),
            BinaryOp::Or => e.fb.ins().bor(a[0], a[1]),
            BinaryOp::Xor => e.fb.ins().bxor(a[0], a[1]),
            BinaryOp::Div | BinaryOp::Mod => {
                // Division by zero is a run-time error (status); MIN / -1 wraps.
                let is_zero = e.fb.ins().icmp_imm_s(IntCC::Equal, a[1], 0);
                fail_if(e, is_zero, status);
                let neg1 = e.fb.ins().icmp_imm_s(IntCC::Equal, a[1], -1);
                let one = e.fb.ins().iconst(ty, 1);
                let d = e.fb.ins().select(neg1, one, a[1]);
                if *b == BinaryOp::Div {
                    let q = e.fb.ins().sdiv(a[0], d);
                    let nq = e.fb.ins().ineg(a[0]);
                    e.fb.ins().select(neg1, nq, q)
                } else {
                    // Python modulo: sign follows the divisor.
                    let r = e.fb.ins().srem(a[0], d);
                    let z = e.fb.ins().iconst(ty, 0);
                    let rnz = e.icmp(IntCC::NotEqual, r, z);
                    let rneg = e.icmp(IntCC::SignedLessThan, r, z);
                    let dneg = e.icmp(IntCC::SignedLessThan, a[1], z);
                    let diff = e.fb.ins().bxor(rneg, dneg);
                    let fix = e.fb.ins().band(rnz, diff);
                    let r2 = e.fb.ins().iadd(r, a[1]);
                    let r = e.fb.ins().select(fix, r2, r);
                    e.fb.ins().select(neg1, z, r)
                }
            }
            BinaryOp::Equal => e.icmp(IntCC::Equal, a[0], a[1]),
            BinaryOp::Less => e.icmp(IntCC::SignedLessThan, a[0], a[1]),
            BinaryOp::LessOrEqual => e.icmp(IntCC::SignedLessThanOrEqual, a[0], a[1]),
            BinaryOp::Greater => e.icmp(IntCC::SignedGreaterThan, a[0], a[1]),
            BinaryOp::GreaterOrEqual => e.icmp(IntCC::SignedGreaterThanOrEqual, a[0], a[1]),
            _ => return Err(format!("{} on integers", b.name())),
        },
        Op::Clip => {
            let mut x = a[0];
            if a.len() > 1 {
                x = e.fb.ins().smax(x, a[1]);
            }
            if a.len() > 2 {
                x = e.fb.ins().smin(x, a[2]);
            }
            x
        }
        _ => return Err(format!("{} on integers", op.name())),
    })
}

fn fail_if(e: &mut Emitter, cond: Value, status: i32) {
    let fail = e.fb.create_block();
    let cont = e.fb.create_block();
    e.fb.ins().brif(cond, fail, &[], cont, &[]);
    e.fb.switch_to_block(fail);
    let s = e.fb.ins().iconst(types::I32, status as i64);
    e.fb.ins().return_(&[s]);
    e.fb.switch_to_block(cont);
}
