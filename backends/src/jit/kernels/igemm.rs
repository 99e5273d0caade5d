//! The portable integer GEMM: `C[i32] = bias + A · B` over 8-bit operands, one element at a
//! time. It is the exact definition the vector int8 routes (`super::gemm::int8`) are tested
//! against, and the route of operand layouts those do not take (a strided or transposed B of
//! a Gemm with few rows).

use crate::jit::emit::Emitter;
use cranelift_codegen::ir::{types, InstBuilder, Value};

/// One 8-bit GEMM operand: base pointer, byte strides of its two axes, signedness.
#[derive(Clone, Copy, Debug)]
pub struct ByteMatrix {
    pub base: Value,
    /// Bytes between rows (A: between `m`; B: between `k`).
    pub outer: i64,
    /// Bytes between columns (A: between `k`; B: between `n`).
    pub inner: i64,
    pub signed: bool,
}

/// Where the bias of each accumulator comes from (i32 values).
#[derive(Clone, Copy, Debug)]
pub enum Bias {
    None,
    /// `bias[row]`.
    Rows(Value),
    /// `bias[column]`.
    Columns(Value),
}

fn load_byte(e: &mut Emitter, m: &ByteMatrix, p: Value) -> Value {
    let flags = crate::jit::emit::mf();
    if m.signed {
        e.fb.ins().sload8(types::I32, flags, p, 0)
    } else {
        e.fb.ins().uload8(types::I32, flags, p, 0)
    }
}

/// Emits `C[r, c] = bias + Σ_k A[r, k] · B[k, c]` for `rows × cols` accumulators, in wrapping
/// i32 arithmetic (exact for `k < 2^15`), stored at `c` with `ldc` i32 elements between rows.
#[allow(clippy::too_many_arguments)]
pub fn emit_igemm_scalar(
    e: &mut Emitter,
    a: &ByteMatrix,
    b: &ByteMatrix,
    c: Value,
    ldc: usize,
    rows: usize,
    cols: usize,
    k: usize,
    bias: Bias,
) {
    e.loop_n(rows, |e, r| {
        let arow = e.index(a.base, r, a.outer);
        let crow = e.index(c, r, (ldc * 4) as i64);
        e.loop_n(cols, |e, col| {
            let bcol = e.index(b.base, col, b.inner);
            let init = match bias {
                Bias::None => e.i32const(0),
                Bias::Rows(p) => {
                    let p = e.index(p, r, 4);
                    e.load(types::I32, p, 0)
                }
                Bias::Columns(p) => {
                    let p = e.index(p, col, 4);
                    e.load(types::I32, p, 0)
                }
            };
            let acc = e.loop_acc(k, &[init], |e, kk, acc| {
                let pa = e.index(arow, kk, a.inner);
                let pb = e.index(bcol, kk, b.outer);
                let x = load_byte(e, a, pa);
                let y = load_byte(e, b, pb);
                let prod = e.fb.ins().imul(x, y);
                vec![e.fb.ins().iadd(acc[0], prod)]
            });
            let pc = e.index(crow, col, 4);
            e.store(acc[0], pc, 0);
        });
    });
}
