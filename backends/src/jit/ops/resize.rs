//! Linear and cubic `Resize` (f32), from per-axis tap tables computed at compile time by the
//! reference interpreter ([`crate::interp::resize_taps`]), so the kernel reads the input exactly
//! where the interpreter does and with the same weights (rounded to f32).
//!
//! Per axis `a` the tables hold, for each output coordinate, `T_a` taps (the most any coordinate
//! of that axis needs, unused ones padded with weight 0): the byte offset of the input slice and
//! the weight. Axes that are not resized (one tap of weight 1 at the same coordinate) get no table.
//! The loop nest walks the output; each level combines its taps with those of the outer levels,
//! so the innermost level sums `prod(T_a)` products (4 for bilinear, 16 for bicubic in 2-D).
//! Coordinates outside a `tf_crop_and_resize` box set a flag that selects the extrapolation value.

use crate::jit::context::KernelContext;
use crate::jit::emit::{strides_of, Emitter};
use crate::jit::error::JitError;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use kestrel_ir::ResizeAttrs;

/// Most tap combinations per output element compiled (a 3-D bicubic resize needs 64).
const MAX_COMBINATIONS: usize = 256;

/// The tables of one resized axis.
struct AxisTable {
    taps: usize,
    /// Byte offsets, `[output coordinate][tap]` as i64.
    offsets: Value,
    /// Weights, `[output coordinate][tap]` as f32.
    weights: Value,
    /// 1.0 where the coordinate lies outside the crop box, else 0.0 (only when any does).
    outside: Option<Value>,
}

pub fn lower(e: &mut Emitter, k: &mut KernelContext, attrs: &ResizeAttrs) -> Result<(), JitError> {
    k.require_f32_data()?;
    let in_dims = k.in_dims(0);
    let out_dims = k.out_dims(0);
    let Some(sizes) = k.const_in(1).cloned() else {
        return Err(k.unsupported("resize with run-time scales or sizes"));
    };
    let roi = match k.node.inputs.len() > 2 {
        true => Some(
            k.const_in(2)
                .cloned()
                .ok_or_else(|| k.unsupported("resize with a run-time roi"))?,
        ),
        false => None,
    };
    let taps = crate::interp::resize_taps(attrs, &in_dims, &sizes, roi.as_ref()).map_err(|er| {
        JitError::Fold {
            node: k.g.describe_node(k.id),
            reason: er.to_string(),
        }
    })?;
    if taps.iter().map(|a| a.len()).collect::<Vec<_>>() != out_dims {
        return Err(k.unsupported("an output shape that differs from type inference"));
    }
    let in_st = strides_of(&in_dims);
    let rank = in_dims.len();
    // Per axis: None for an identity axis, else its tables.
    let mut tables: Vec<Option<AxisTable>> = Vec::with_capacity(rank);
    let mut combinations = 1usize;
    for (a, axis) in taps.iter().enumerate() {
        let identity = in_dims[a] == out_dims[a]
            && axis
                .iter()
                .enumerate()
                .all(|(o, t)| t.as_deref() == Some(&[(o, 1.0)][..]));
        if identity {
            tables.push(None);
            continue;
        }
        let t_a = axis
            .iter()
            .map(|t| t.as_ref().map_or(0, |v| v.len()))
            .max()
            .unwrap_or(0)
            .max(1);
        combinations = combinations.saturating_mul(t_a);
        let mut offs: Vec<u8> = Vec::with_capacity(axis.len() * t_a * 8);
        let mut ws: Vec<u8> = Vec::with_capacity(axis.len() * t_a * 4);
        let mut outside: Vec<u8> = Vec::with_capacity(axis.len() * 4);
        let mut any_outside = false;
        for t in axis {
            let list = t.as_deref().unwrap_or(&[]);
            for j in 0..t_a {
                let (i, w) = list.get(j).copied().unwrap_or((0, 0.0));
                offs.extend_from_slice(&(i as i64 * in_st[a] * 4).to_le_bytes());
                ws.extend_from_slice(&(w as f32).to_le_bytes());
            }
            any_outside |= t.is_none();
            let flag: f32 = if t.is_none() { 1.0 } else { 0.0 };
            outside.extend_from_slice(&flag.to_le_bytes());
        }
        let offsets = k.rodata(e, offs)?;
        let weights = k.rodata(e, ws)?;
        let outside = match any_outside {
            true => Some(k.rodata(e, outside)?),
            false => None,
        };
        tables.push(Some(AxisTable {
            taps: t_a,
            offsets,
            weights,
            outside,
        }));
    }
    if combinations > MAX_COMBINATIONS {
        return Err(k.unsupported(format!(
            "resize needing {combinations} taps per output element (limit {MAX_COMBINATIONS})"
        )));
    }
    let fill = e.fconst(types::F32, attrs.extrapolation_value.0);
    let one = e.fconst(types::F32, 1.0);
    let zero = e.fconst(types::F32, 0.0);
    let level = Level {
        tables: &tables,
        in_st: &in_st,
        out_st: &strides_of(&out_dims),
        out_dims: &out_dims,
        fill,
        has_outside: tables.iter().flatten().any(|t| t.outside.is_some()),
    };
    let x = k.ins[0];
    let out = k.outs[0];
    let origin = e.iconst(0);
    level.emit(e, 0, x, out, &[(origin, one)], zero);
    Ok(())
}

struct Level<'t> {
    tables: &'t [Option<AxisTable>],
    in_st: &'t [i64],
    out_st: &'t [i64],
    out_dims: &'t [usize],
    fill: Value,
    /// Whether any coordinate lies outside a crop box.
    has_outside: bool,
}

impl Level<'_> {
    /// Emits the loops of axes `a..`: `parts` are the `(byte offset, weight)` tap combinations
    /// of the outer axes relative to `x`, `outside` (f32) is non-zero when an outer coordinate
    /// lies outside the crop box, and `out` points at this level's first output element.
    fn emit(
        &self,
        e: &mut Emitter,
        a: usize,
        x: Value,
        out: Value,
        parts: &[(Value, Value)],
        outside: Value,
    ) {
        if a == self.out_dims.len() {
            let mut acc = e.fconst(types::F32, 0.0);
            for &(off, w) in parts {
                let p = e.fb.ins().iadd(x, off);
                let v = e.load(types::F32, p, 0);
                acc = e.fma(v, w, acc);
            }
            let r = if self.has_outside {
                let zero = e.fconst(types::F32, 0.0);
                let is_out = e.fcmp(FloatCC::NotEqual, outside, zero);
                e.sel(is_out, self.fill, acc)
            } else {
                acc
            };
            e.store(r, out, 0);
            return;
        }
        e.loop_n(self.out_dims[a], |e, o| {
            let out_o = e.index(out, o, self.out_st[a] * 4);
            match &self.tables[a] {
                None => {
                    let step = e.fb.ins().imul_imm_s(o, self.in_st[a] * 4);
                    let next: Vec<(Value, Value)> = parts
                        .iter()
                        .map(|&(off, w)| (e.fb.ins().iadd(off, step), w))
                        .collect();
                    self.emit(e, a + 1, x, out_o, &next, outside);
                }
                Some(t) => {
                    let row_o = e.index(t.offsets, o, (t.taps * 8) as i64);
                    let row_w = e.index(t.weights, o, (t.taps * 4) as i64);
                    let mut next = Vec::with_capacity(parts.len() * t.taps);
                    let taps: Vec<(Value, Value)> = (0..t.taps)
                        .map(|j| {
                            let off = e.load(types::I64, row_o, (j * 8) as i32);
                            let w = e.load(types::F32, row_w, (j * 4) as i32);
                            (off, w)
                        })
                        .collect();
                    for &(po, pw) in parts {
                        for &(to, tw) in &taps {
                            let off = e.fb.ins().iadd(po, to);
                            let w = e.fb.ins().fmul(pw, tw);
                            next.push((off, w));
                        }
                    }
                    let outside = match t.outside {
                        Some(tab) => {
                            let p = e.index(tab, o, 4);
                            let f = e.load(types::F32, p, 0);
                            e.fb.ins().fadd(outside, f)
                        }
                        None => outside,
                    };
                    self.emit(e, a + 1, x, out_o, &next, outside);
                }
            }
        });
    }
}
