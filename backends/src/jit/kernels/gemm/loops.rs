//! Emission helpers the GEMM blocking (`super`) and the packer (`super::pack`) share: counted
//! loops and conditionals that leave the builder in a fresh sealed block, and loads and stores of
//! the first lanes of a four-lane vector that touch only those elements.

use super::tile::mem;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use cranelift_frontend::FunctionBuilder;

/// Ends the current block with a jump to a new, sealed, empty block and switches to it.
pub(super) fn fresh_block(fb: &mut FunctionBuilder) {
    let blk = fb.create_block();
    fb.ins().jump(blk, &[]);
    fb.switch_to_block(blk);
    fb.seal_block(blk);
}

/// Emits `for iv in (start..end).step_by(step)` (signed compare at the top; `step > 0`); `body`
/// emits the loop body given `iv`. Ends in the loop's exit block.
pub(super) fn emit_for(
    fb: &mut FunctionBuilder,
    start: Value,
    end: Value,
    step: i64,
    body: impl FnOnce(&mut FunctionBuilder, Value),
) {
    let iv = fb.declare_var(types::I64);
    fb.def_var(iv, start);
    let header = fb.create_block();
    let body_blk = fb.create_block();
    let exit = fb.create_block();
    fb.ins().jump(header, &[]);
    fb.switch_to_block(header);
    let i = fb.use_var(iv);
    let go = fb.ins().icmp(IntCC::SignedLessThan, i, end);
    fb.ins().brif(go, body_blk, &[], exit, &[]);
    fb.switch_to_block(body_blk);
    fb.seal_block(body_blk);
    body(fb, i);
    let next = fb.ins().iadd_imm_s(i, step);
    fb.def_var(iv, next);
    fb.ins().jump(header, &[]);
    fb.seal_block(header);
    fb.switch_to_block(exit);
    fb.seal_block(exit);
}

/// Emits `for iv in 0..count` for a compile-time count (no loop for 0 or 1 iterations).
pub(super) fn for_count(
    fb: &mut FunctionBuilder,
    count: usize,
    body: impl FnOnce(&mut FunctionBuilder, Value),
) {
    match count {
        0 => {}
        1 => {
            let z = fb.ins().iconst(types::I64, 0);
            body(fb, z);
        }
        _ => {
            let z = fb.ins().iconst(types::I64, 0);
            let e = fb.ins().iconst(types::I64, count as i64);
            emit_for(fb, z, e, 1, body);
        }
    }
}

/// Emits `if cond != 0 { body }`; ends in the join block.
pub(super) fn emit_if(
    fb: &mut FunctionBuilder,
    cond: Value,
    body: impl FnOnce(&mut FunctionBuilder),
) {
    let then = fb.create_block();
    let join = fb.create_block();
    fb.ins().brif(cond, then, &[], join, &[]);
    fb.switch_to_block(then);
    fb.seal_block(then);
    body(fb);
    fb.ins().jump(join, &[]);
    fb.switch_to_block(join);
    fb.seal_block(join);
}

/// The zero accumulator of `ty` (a four-lane float or integer vector).
pub(super) fn zero_vec(fb: &mut FunctionBuilder, ty: Type) -> Value {
    let lane = ty.lane_type();
    let z = if lane.is_float() {
        fb.ins().f32const(0.0)
    } else {
        fb.ins().iconst(lane, 0)
    };
    fb.ins().splat(ty, z)
}

/// Loads `lanes` (1..=4) elements of the 32-bit `lane` type from `ptr + off` into the low lanes of
/// a four-lane vector (others zero), touching only those elements.
pub(super) fn load_lanes(
    fb: &mut FunctionBuilder,
    lane: Type,
    ptr: Value,
    off: i32,
    lanes: usize,
) -> Value {
    let vty = lane.by(4).expect("four lanes");
    if lanes == 4 {
        return fb.ins().load(vty, mem(), ptr, off);
    }
    let mut v = zero_vec(fb, vty);
    for l in 0..lanes {
        let x = fb.ins().load(lane, mem(), ptr, off + 4 * l as i32);
        v = fb.ins().insertlane(v, x, l as u8);
    }
    v
}

/// Stores the low `lanes` (1..=4) lanes of `v` (32-bit lanes) at `ptr + off`, touching only
/// those elements.
pub(super) fn store_lanes(fb: &mut FunctionBuilder, v: Value, ptr: Value, off: i32, lanes: usize) {
    if lanes == 4 {
        fb.ins().store(mem(), v, ptr, off);
        return;
    }
    for l in 0..lanes {
        let x = fb.ins().extractlane(v, l as u8);
        fb.ins().store(mem(), x, ptr, off + 4 * l as i32);
    }
}

/// Converts a byte offset to a load/store immediate.
pub(super) fn imm(off: usize) -> i32 {
    i32::try_from(off).expect("gemm: byte offset does not fit in 32 bits")
}

/// The first `valid` (1..=4) bytes at `ptr + off` as the low bytes of an i32, the others zero,
/// reading only those bytes.
pub(super) fn load_quad(fb: &mut FunctionBuilder, ptr: Value, off: i32, valid: usize) -> Value {
    match valid {
        4 => fb.ins().load(types::I32, mem(), ptr, off),
        2 => fb.ins().uload16(types::I32, mem(), ptr, off),
        1 => fb.ins().uload8(types::I32, mem(), ptr, off),
        3 => {
            let lo = fb.ins().uload16(types::I32, mem(), ptr, off);
            let hi = fb.ins().uload8(types::I32, mem(), ptr, off + 2);
            let hi = fb.ins().ishl_imm_u(hi, 16);
            fb.ins().bor(lo, hi)
        }
        _ => unreachable!("a step has 1..=4 valid k"),
    }
}
