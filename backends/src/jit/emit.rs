//! Emission helpers shared by every kernel: constants, loads/stores, counted loops, selects.
//!
//! All loops have compile-time trip counts (the JIT requires every dimension to be known).
//! Values are either scalars (`F32`, `I32`, ...) or 128-bit vectors (`F32X4`); the helpers that
//! build constants and selects accept both, so math written once works on both.

use super::asm::registry::MicroKernels;
use super::isa::IsaFlags;
use cranelift_codegen::cursor::{Cursor, FuncCursor};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::Endianness;
use cranelift_codegen::ir::{types, Block, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;

/// Memory flags of every tensor access: non-trapping (addresses are in bounds by construction),
/// not assumed aligned (tensor offsets are element-aligned only).
pub fn mf() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Lane-order flag required by vector bitcasts.
pub fn lanes() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// Kernel emitter: a function builder plus the target's flags.
pub struct Emitter<'f, 'a> {
    pub fb: &'f mut FunctionBuilder<'a>,
    pub flags: IsaFlags,
    /// The module's full-width micro-kernels, when it has them (the GEMM entry points of
    /// `kernels::gemm` call them).
    pub micro: Option<&'f mut MicroKernels>,
    /// Set by [`Emitter::hoisting_constants`].
    hoist: Option<Hoist>,
}

/// Where [`Emitter::hoisting_constants`] puts constants, and those already there (type, bits, value).
struct Hoist {
    block: Block,
    consts: Vec<(Type, u64, Value)>,
}

impl<'f, 'a> Emitter<'f, 'a> {
    pub fn new(fb: &'f mut FunctionBuilder<'a>, flags: IsaFlags) -> Self {
        Emitter {
            fb,
            flags,
            micro: None,
            hoist: None,
        }
    }

    /// Runs `f` (which emits a loop from the current block) with every [`Emitter::fconst`] and
    /// [`Emitter::iconst_ty`] placed once in the current block, before its terminator: the loop body
    /// then reads them from registers (or spill slots) instead of rebuilding each one per
    /// iteration (kernels are compiled at `opt_level=none`, which hoists nothing).
    pub fn hoisting_constants<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let b = self.fb.current_block().expect("a current block");
        let prev = self.hoist.replace(Hoist {
            block: b,
            consts: Vec::new(),
        });
        let r = f(self);
        self.hoist = prev;
        r
    }

    /// The constant `make` builds, placed in the block [`Emitter::hoisting_constants`] names (once
    /// per `(ty, key)`); `None` when not hoisting or when that block is still the current one.
    fn hoisted(
        &mut self,
        ty: Type,
        key: u64,
        make: impl FnOnce(&mut FuncCursor) -> Value,
    ) -> Option<Value> {
        let h = self.hoist.as_mut()?;
        if let Some(&(_, _, v)) = h.consts.iter().find(|&&(t, k, _)| t == ty && k == key) {
            return Some(v);
        }
        if self.fb.current_block() == Some(h.block) {
            return None;
        }
        let last = self.fb.func.layout.last_inst(h.block)?;
        let mut pos = FuncCursor::new(&mut *self.fb.func).at_inst(last);
        let v = make(&mut pos);
        h.consts.push((ty, key, v));
        Some(v)
    }

    pub fn iconst(&mut self, n: i64) -> Value {
        self.fb.ins().iconst(types::I64, n)
    }

    pub fn i32const(&mut self, n: i32) -> Value {
        self.fb.ins().iconst(types::I32, n as i64)
    }

    /// `p + off` bytes (no instruction when `off` is 0).
    pub fn addr(&mut self, p: Value, off: i64) -> Value {
        if off == 0 {
            p
        } else {
            self.fb.ins().iadd_imm_s(p, off)
        }
    }

    /// `p + i * scale` bytes, `i` an I64 value.
    pub fn index(&mut self, p: Value, i: Value, scale: i64) -> Value {
        if scale == 0 {
            return p;
        }
        let off = if scale == 1 {
            i
        } else {
            self.fb.ins().imul_imm_s(i, scale)
        };
        self.fb.ins().iadd(p, off)
    }

    pub fn load(&mut self, ty: Type, p: Value, off: i32) -> Value {
        self.fb.ins().load(ty, mf(), p, off)
    }

    pub fn store(&mut self, v: Value, p: Value, off: i32) {
        self.fb.ins().store(mf(), v, p, off);
    }

    /// An f32 constant of type `ty` (`F32`, or `F32X4` splatted).
    pub fn fconst(&mut self, ty: Type, c: f32) -> Value {
        let make = |pos: &mut FuncCursor| {
            let s = pos.ins().f32const(c);
            if ty.is_vector() {
                pos.ins().splat(ty, s)
            } else {
                s
            }
        };
        if let Some(v) = self.hoisted(ty, c.to_bits() as u64, make) {
            return v;
        }
        let s = self.fb.ins().f32const(c);
        if ty.is_vector() {
            self.fb.ins().splat(ty, s)
        } else {
            s
        }
    }

    /// An i32 constant of type `ty` (`I32`, or `I32X4` splatted).
    pub fn iconst_ty(&mut self, ty: Type, c: i64) -> Value {
        let make = |pos: &mut FuncCursor| {
            if ty.is_vector() {
                let s = pos.ins().iconst(ty.lane_type(), c);
                pos.ins().splat(ty, s)
            } else {
                pos.ins().iconst(ty, c)
            }
        };
        if let Some(v) = self.hoisted(ty, c as u64, make) {
            return v;
        }
        if ty.is_vector() {
            let s = self.fb.ins().iconst(ty.lane_type(), c);
            self.fb.ins().splat(ty, s)
        } else {
            self.fb.ins().iconst(ty, c)
        }
    }

    /// Reinterprets f32 lanes as i32 lanes (or back).
    pub fn bits(&mut self, to: Type, v: Value) -> Value {
        let fl = if to.is_vector() {
            lanes()
        } else {
            MemFlagsData::new()
        };
        self.fb.ins().bitcast(to, fl, v)
    }

    /// The integer type with the lane shape of float type `ty`.
    pub fn int_of(ty: Type) -> Type {
        if ty.is_vector() {
            types::I32X4
        } else {
            types::I32
        }
    }

    /// Float compare yielding a mask usable by [`Emitter::sel`].
    pub fn fcmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        self.fb.ins().fcmp(cc, a, b)
    }

    pub fn icmp(&mut self, cc: IntCC, a: Value, b: Value) -> Value {
        self.fb.ins().icmp(cc, a, b)
    }

    /// `mask ? a : b` for scalars (mask: I8 from a compare) or vectors (mask: lane mask).
    pub fn sel(&mut self, mask: Value, a: Value, b: Value) -> Value {
        let ty = self.fb.func.dfg.value_type(a);
        if ty.is_vector() {
            let mty = self.fb.func.dfg.value_type(mask);
            let m = if mty == ty {
                mask
            } else {
                self.fb.ins().bitcast(ty, lanes(), mask)
            };
            self.fb.ins().bitselect(m, a, b)
        } else {
            self.fb.ins().select(mask, a, b)
        }
    }

    /// `a * b + c`, one instruction when the ISA has FMA, else `fmul` + `fadd` (never a libcall).
    /// Emits a call of the full-width kernel of `shape` with `args` (the five i64 arguments of
    /// every micro-kernel). The caller chose the shape from [`Emitter::micro`], so it exists.
    pub fn call_kernel(
        &mut self,
        shape: impl Into<super::asm::registry::KernelShape>,
        args: [Value; 5],
    ) {
        let micro = self
            .micro
            .as_deref_mut()
            .expect("chosen from Emitter::micro");
        micro.call(self.fb, shape, args);
    }

    pub fn fma(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.flags.use_fma() {
            self.fb.ins().fma(a, b, c)
        } else {
            let m = self.fb.ins().fmul(a, b);
            self.fb.ins().fadd(m, c)
        }
    }

    /// Horner evaluation of `c[0] + c[1] x + c[2] x^2 + ...`.
    pub fn poly(&mut self, x: Value, c: &[f32]) -> Value {
        let ty = self.fb.func.dfg.value_type(x);
        let mut acc = self.fconst(ty, c[c.len() - 1]);
        for &k in c[..c.len() - 1].iter().rev() {
            let kk = self.fconst(ty, k);
            acc = self.fma(acc, x, kk);
        }
        acc
    }

    /// Emits `for i in 0..n { body(i) }` (i is I64). Nothing when `n == 0`; no loop when `n == 1`.
    /// The builder continues after the loop.
    pub fn loop_n(&mut self, n: usize, body: impl FnOnce(&mut Self, Value)) {
        self.loop_range(0, n as i64, 1, body)
    }

    /// Emits `for (i = start; i < end; i += step) body(i)` with compile-time bounds.
    pub fn loop_range(
        &mut self,
        start: i64,
        end: i64,
        step: i64,
        body: impl FnOnce(&mut Self, Value),
    ) {
        if start >= end {
            return;
        }
        if start + step >= end {
            let i = self.iconst(start);
            body(self, i);
            return;
        }
        let header = self.fb.create_block();
        let exit = self.fb.create_block();
        self.fb.append_block_param(header, types::I64);
        let s = self.iconst(start);
        self.fb.ins().jump(header, &[s.into()]);
        self.fb.switch_to_block(header);
        let i = self.fb.block_params(header)[0];
        body(self, i);
        let next = self.fb.ins().iadd_imm_s(i, step);
        let more = self.fb.ins().icmp_imm_s(IntCC::SignedLessThan, next, end);
        self.fb.ins().brif(more, header, &[next.into()], exit, &[]);
        self.fb.switch_to_block(exit);
    }

    /// Emits a loop over a pointer-sized runtime-free range like [`Emitter::loop_n`], carrying
    /// `init.len()` values (accumulators) through the iterations; returns their final values.
    pub fn loop_acc(
        &mut self,
        n: usize,
        init: &[Value],
        body: impl FnOnce(&mut Self, Value, &[Value]) -> Vec<Value>,
    ) -> Vec<Value> {
        if n == 0 {
            return init.to_vec();
        }
        let header = self.fb.create_block();
        let exit = self.fb.create_block();
        self.fb.append_block_param(header, types::I64);
        for &v in init {
            let ty = self.fb.func.dfg.value_type(v);
            self.fb.append_block_param(header, ty);
        }
        for &v in init {
            let ty = self.fb.func.dfg.value_type(v);
            self.fb.append_block_param(exit, ty);
        }
        let s = self.iconst(0);
        let mut args: Vec<cranelift_codegen::ir::BlockArg> = vec![s.into()];
        args.extend(
            init.iter()
                .map(|&v| cranelift_codegen::ir::BlockArg::from(v)),
        );
        self.fb.ins().jump(header, &args);
        self.fb.switch_to_block(header);
        let params = self.fb.block_params(header).to_vec();
        let i = params[0];
        let out = body(self, i, &params[1..]);
        let next = self.fb.ins().iadd_imm_s(i, 1);
        let more = self
            .fb
            .ins()
            .icmp_imm_s(IntCC::SignedLessThan, next, n as i64);
        let mut back: Vec<cranelift_codegen::ir::BlockArg> = vec![next.into()];
        back.extend(
            out.iter()
                .map(|&v| cranelift_codegen::ir::BlockArg::from(v)),
        );
        let fwd: Vec<cranelift_codegen::ir::BlockArg> = out.iter().map(|&v| v.into()).collect();
        self.fb.ins().brif(more, header, &back, exit, &fwd);
        self.fb.switch_to_block(exit);
        self.fb.block_params(exit).to_vec()
    }

    /// Horizontal sum of the four lanes of an `F32X4`.
    pub fn hsum(&mut self, v: Value) -> Value {
        let mut s = self.fb.ins().extractlane(v, 0u8);
        for l in 1..4u8 {
            let x = self.fb.ins().extractlane(v, l);
            s = self.fb.ins().fadd(s, x);
        }
        s
    }

    /// The even (`odd == false`: lanes 0, 2 of `a` then 0, 2 of `b`) or odd (lanes 1, 3 of each)
    /// elements of the eight `a ++ b` (two `F32X4`). One `shufps` on x86-64, one `uzp1`/`uzp2` on
    /// aarch64; lane by lane when the code will be scalarised ([`IsaFlags::scalarized`]).
    pub fn deinterleave(&mut self, a: Value, b: Value, odd: bool) -> Value {
        let first = odd as u8;
        self.shuffle_f32x4(a, b, [first, first + 2, first + 4, first + 6])
    }

    /// The even bytes of the 32 `a ++ b` (two `I8X16`: lanes 0, 2, …, 30), for stride-2 reads of
    /// 8-bit data; only where [`IsaFlags::has_byte_shuffle`] (one `pshufb` pair on x86-64,
    /// `uzp1` on aarch64).
    pub fn even_bytes(&mut self, a: Value, b: Value) -> Value {
        let mask: Vec<u8> = (0..16).map(|l| 2 * l).collect();
        let imm = self
            .fb
            .func
            .dfg
            .immediates
            .push(cranelift_codegen::ir::ConstantData::from(mask));
        self.fb.ins().shuffle(a, b, imm)
    }

    /// The `F32X4` whose lane `d` is lane `lanes[d]` of the eight `a ++ b` (0–3 from `a`, 4–7
    /// from `b`). The unpack, `shufps`, `pshufd` and `palignr` patterns are one instruction on
    /// x86-64 (cranelift-codegen's x64 shuffle rules); lane by lane when the code will be
    /// scalarised ([`IsaFlags::scalarized`]).
    pub fn shuffle_f32x4(&mut self, a: Value, b: Value, lanes_of: [u8; 4]) -> Value {
        if self.flags.scalarized {
            let pick = |e: &mut Self, l: u8| {
                let (src, lane) = if l < 4 { (a, l) } else { (b, l - 4) };
                e.fb.ins().extractlane(src, lane)
            };
            let x = pick(self, lanes_of[0]);
            let mut v = self.fb.ins().splat(types::F32X4, x);
            for (d, &l) in lanes_of.iter().enumerate().skip(1) {
                let x = pick(self, l);
                v = self.fb.ins().insertlane(v, x, d as u8);
            }
            return v;
        }
        let mask: Vec<u8> = lanes_of
            .iter()
            .flat_map(|&l| (0..4).map(move |b| l * 4 + b))
            .collect();
        let imm = self
            .fb
            .func
            .dfg
            .immediates
            .push(cranelift_codegen::ir::ConstantData::from(mask));
        let a8 = self.fb.ins().bitcast(types::I8X16, lanes(), a);
        let b8 = self.fb.ins().bitcast(types::I8X16, lanes(), b);
        let r = self.fb.ins().shuffle(a8, b8, imm);
        self.fb.ins().bitcast(types::F32X4, lanes(), r)
    }

    /// Horizontal max (`is_max`) or min of the four lanes of an `F32X4`.
    pub fn hminmax(&mut self, v: Value, is_max: bool) -> Value {
        let mut s = self.fb.ins().extractlane(v, 0u8);
        for l in 1..4u8 {
            let x = self.fb.ins().extractlane(v, l);
            s = if is_max {
                self.fb.ins().fmax(s, x)
            } else {
                self.fb.ins().fmin(s, x)
            };
        }
        s
    }

    /// Copies `bytes` bytes from `src` to `dst` (non-overlapping), 16 bytes at a time plus a tail.
    pub fn memcpy(&mut self, dst: Value, src: Value, bytes: usize) {
        let chunks = bytes / 16;
        let unroll = 4usize;
        let big = chunks / unroll;
        if big > 0 {
            self.loop_n(big, |e, i| {
                let s = e.index(src, i, (16 * unroll) as i64);
                let d = e.index(dst, i, (16 * unroll) as i64);
                let vs: Vec<Value> = (0..unroll)
                    .map(|u| e.load(types::I8X16, s, (16 * u) as i32))
                    .collect();
                for (u, v) in vs.into_iter().enumerate() {
                    e.store(v, d, (16 * u) as i32);
                }
            });
        }
        let mut off = big * unroll * 16;
        for _ in big * unroll..chunks {
            let v = self.load(types::I8X16, src, off as i32);
            self.store(v, dst, off as i32);
            off += 16;
        }
        for (w, ty) in [
            (8, types::I64),
            (4, types::I32),
            (2, types::I16),
            (1, types::I8),
        ] {
            while bytes - off >= w {
                let v = self.load(ty, src, off as i32);
                self.store(v, dst, off as i32);
                off += w;
            }
        }
    }

    /// Fills `count` f32 slots at `dst` with `value`.
    pub fn fill_f32(&mut self, dst: Value, count: usize, value: f32) {
        let v4 = self.fconst(types::F32X4, value);
        let chunks = count / 4;
        self.loop_n(chunks, |e, i| {
            let d = e.index(dst, i, 16);
            e.store(v4, d, 0);
        });
        let s = self.fconst(types::F32, value);
        for j in chunks * 4..count {
            self.store(s, dst, (j * 4) as i32);
        }
    }

    /// Fills `bytes` bytes at `dst` with a repeated element whose little-endian bytes are `elem`.
    /// Elements of 1, 2 or 8 bytes go 16 bytes per store (the element repeated in a vector), the
    /// last `bytes % 16` by the widest scalar stores of the same repeated pattern.
    pub fn fill_bytes(&mut self, dst: Value, bytes: usize, elem: &[u8]) {
        let es = elem.len().max(1);
        if es == 4 {
            let v = f32::from_le_bytes([elem[0], elem[1], elem[2], elem[3]]);
            return self.fill_f32(dst, bytes / 4, v);
        }
        let bytes = bytes / es * es;
        if 16 % es != 0 {
            let mut b = [0u8; 8];
            b[..es.min(8)].copy_from_slice(&elem[..es.min(8)]);
            let c = self.fb.ins().iconst(types::I64, i64::from_le_bytes(b));
            return self.loop_n(bytes / es, |e, i| {
                let d = e.index(dst, i, es as i64);
                e.store(c, d, 0);
            });
        }
        let pattern: Vec<u8> = (0..16).map(|i| elem[i % es]).collect();
        let chunks = bytes / 16;
        if chunks > 0 {
            let (lane, vector) = match es {
                1 => (types::I8, types::I8X16),
                2 => (types::I16, types::I16X8),
                _ => (types::I64, types::I64X2),
            };
            let mut b = [0u8; 8];
            b[..es].copy_from_slice(&pattern[..es]);
            let c = self.fb.ins().iconst(lane, i64::from_le_bytes(b));
            let v = self.fb.ins().splat(vector, c);
            let unroll = 4usize;
            self.loop_n(chunks / unroll, |e, i| {
                let d = e.index(dst, i, (16 * unroll) as i64);
                for u in 0..unroll {
                    e.store(v, d, (16 * u) as i32);
                }
            });
            for u in chunks / unroll * unroll..chunks {
                self.store(v, dst, (16 * u) as i32);
            }
        }
        let mut off = chunks * 16;
        for (w, ty) in [
            (8, types::I64),
            (4, types::I32),
            (2, types::I16),
            (1, types::I8),
        ] {
            if w < es {
                continue;
            }
            while bytes - off >= w {
                let mut b = [0u8; 8];
                b[..w].copy_from_slice(&pattern[..w]);
                let c = self.fb.ins().iconst(ty, i64::from_le_bytes(b));
                self.store(c, dst, off as i32);
                off += w;
            }
        }
    }
}

/// The integer Cranelift type holding one element of `size` bytes.
pub fn int_type_of_size(size: usize) -> Type {
    match size {
        1 => types::I8,
        2 => types::I16,
        4 => types::I32,
        _ => types::I64,
    }
}

impl Emitter<'_, '_> {
    /// Emits loops over `dims[..dims.len() - 1]`, advancing one pointer per operand by its byte
    /// stride on each axis (`strides[operand][axis]`), and calls `inner` with the operands'
    /// pointers for each position of the outer axes. The innermost axis is `inner`'s business.
    pub fn nest(
        &mut self,
        dims: &[usize],
        strides: &[Vec<i64>],
        ptrs: &[Value],
        inner: &mut dyn FnMut(&mut Self, &[Value]),
    ) {
        self.nest_from(0, dims, strides, ptrs, inner)
    }

    fn nest_from(
        &mut self,
        axis: usize,
        dims: &[usize],
        strides: &[Vec<i64>],
        ptrs: &[Value],
        inner: &mut dyn FnMut(&mut Self, &[Value]),
    ) {
        if axis + 1 >= dims.len() {
            inner(self, ptrs);
            return;
        }
        self.loop_n(dims[axis], |e, i| {
            let p: Vec<Value> = ptrs
                .iter()
                .zip(strides)
                .map(|(&p, s)| e.index(p, i, s[axis]))
                .collect();
            e.nest_from(axis + 1, dims, strides, &p, inner);
        });
    }
}

/// Drops unit axes and merges adjacent axes that every operand walks contiguously
/// (`stride[i] == stride[i + 1] * dims[i + 1]`). Strides are per operand, per axis, in any unit.
/// Returns at least one axis.
pub fn collapse(dims: &[usize], strides: &[Vec<i64>]) -> (Vec<usize>, Vec<Vec<i64>>) {
    let keep: Vec<usize> = (0..dims.len()).filter(|&i| dims[i] != 1).collect();
    let mut d: Vec<usize> = Vec::new();
    let mut s: Vec<Vec<i64>> = vec![Vec::new(); strides.len()];
    for &i in &keep {
        if let Some(&last) = d.last() {
            let mergeable = strides
                .iter()
                .enumerate()
                .all(|(o, st)| *s[o].last().unwrap_or(&0) == st[i] * dims[i] as i64);
            if mergeable {
                let n = d.len() - 1;
                d[n] = last * dims[i];
                for (o, st) in strides.iter().enumerate() {
                    let m = s[o].len() - 1;
                    s[o][m] = st[i];
                }
                continue;
            }
        }
        d.push(dims[i]);
        for (o, st) in strides.iter().enumerate() {
            s[o].push(st[i]);
        }
    }
    if d.is_empty() {
        d.push(1);
        for so in &mut s {
            so.push(0);
        }
    }
    (d, s)
}

/// Row-major element strides of `dims`.
pub fn strides_of(dims: &[usize]) -> Vec<i64> {
    let mut s = vec![1i64; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1] as i64;
    }
    s
}

/// Element strides reading a tensor of `in_dims` broadcast (numpy rules) to `out_dims`:
/// 0 along broadcast axes ([`kestrel_ir::broadcast::broadcast_strides`], as i64 for address math).
pub fn broadcast_strides(in_dims: &[usize], out_dims: &[usize]) -> Vec<i64> {
    kestrel_ir::broadcast::broadcast_strides(in_dims, out_dims)
        .into_iter()
        .map(|s| s as i64)
        .collect()
}
