//! A simple f32 GEMM emitter with the interface of `gemm.rs` (which replaces it when it lands):
//! 4×8 register tiles on `F32X4`, B either packed at compile time into 8-column panels or read
//! row-major at run time, edge tiles handled by narrower column blocks (4, then 1) and fewer rows.

use super::emit::E;
use super::isa::IsaFlags;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use cranelift_frontend::FunctionBuilder;

/// Panel width of [`PackedB`].
const NR: usize = 8;
/// Rows per register tile.
const MR: usize = 4;

/// Packed B operand (constant weights): panels of [`NR`] columns, each `k` rows of `NR` f32
/// (the last panel zero-padded).
#[allow(dead_code)]
pub struct PackedB {
    pub data: Vec<f32>,
    pub k: usize,
    pub n: usize,
}

/// Packs `b` ([k, n] row-major, or [n, k] when `transposed`).
pub fn pack_b(b: &[f32], k: usize, n: usize, transposed: bool) -> PackedB {
    let panels = n.div_ceil(NR);
    let mut data = vec![0f32; panels * k * NR];
    for p in 0..panels {
        for kk in 0..k {
            for j in 0..NR {
                let col = p * NR + j;
                if col < n {
                    data[(p * k + kk) * NR + j] = if transposed {
                        b[col * k + kk]
                    } else {
                        b[kk * n + col]
                    };
                }
            }
        }
    }
    PackedB { data, k, n }
}

/// Epilogue applied to each C element before storing: `c = act(acc + bias[col])`.
pub struct Epilogue {
    /// Pointer to `n` f32.
    pub bias: Option<Value>,
    pub relu: bool,
}

/// How the kernel reads B.
#[derive(Clone, Copy)]
enum BLayout {
    /// Packed panels: element (kk, col) at `((col / NR) * k + kk) * NR + col % NR`.
    Packed { k: usize },
    /// Row-major with leading dimension `ldb` elements.
    Rows { ldb: usize },
}

/// Emits `C[m×n] = A[m×k] · B (+ epilogue)` with B packed by [`pack_b`] (same `k`, `n`).
#[allow(clippy::too_many_arguments)]
pub fn emit_gemm(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    a: Value,
    lda: usize,
    b_packed: Value,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    epi: &Epilogue,
) {
    let mut e = E::new(fb, *flags);
    gemm(
        &mut e,
        a,
        lda,
        b_packed,
        BLayout::Packed { k },
        c,
        ldc,
        m,
        n,
        k,
        epi,
    );
}

/// Emits `C[m×n] = A[m×k] · B (+ epilogue)` with B row-major `[k, n]`, leading dimension `ldb`.
#[allow(clippy::too_many_arguments)]
pub fn emit_gemm_unpacked(
    fb: &mut FunctionBuilder,
    flags: &IsaFlags,
    a: Value,
    lda: usize,
    b: Value,
    ldb: usize,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    epi: &Epilogue,
) {
    let mut e = E::new(fb, *flags);
    gemm(
        &mut e,
        a,
        lda,
        b,
        BLayout::Rows { ldb },
        c,
        ldc,
        m,
        n,
        k,
        epi,
    );
}

#[allow(clippy::too_many_arguments)]
fn gemm(
    e: &mut E,
    a: Value,
    lda: usize,
    b: Value,
    bl: BLayout,
    c: Value,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    epi: &Epilogue,
) {
    if m == 0 || n == 0 {
        return;
    }
    // Column blocks: (first column, width).
    let mut blocks: Vec<(usize, usize)> = Vec::new();
    let full = n / NR;
    let mut col = full * NR;
    let rem = n - col;
    if rem >= 4 {
        blocks.push((col, 4));
        col += 4;
    }
    while col < n {
        blocks.push((col, 1));
        col += 1;
    }
    let rows_full = m / MR;
    let rows_rem = m % MR;
    // Full panels: loop over panels, then row tiles.
    if full > 0 {
        e.loop_n(full, |e, p| {
            let col0 = e.fb.ins().imul_imm_s(p, NR as i64);
            tile_rows(
                e, a, lda, b, bl, c, ldc, k, col0, NR, rows_full, rows_rem, epi,
            );
        });
    }
    for (c0, w) in blocks {
        let col0 = e.iconst(c0 as i64);
        tile_rows(
            e, a, lda, b, bl, c, ldc, k, col0, w, rows_full, rows_rem, epi,
        );
    }
}

/// All row tiles of one column block starting at column `col0` (I64), `w` columns wide.
#[allow(clippy::too_many_arguments)]
fn tile_rows(
    e: &mut E,
    a: Value,
    lda: usize,
    b: Value,
    bl: BLayout,
    c: Value,
    ldc: usize,
    k: usize,
    col0: Value,
    w: usize,
    rows_full: usize,
    rows_rem: usize,
    epi: &Epilogue,
) {
    // B pointer at (kk = 0, col0) and its byte step per kk.
    let (b0, bstep) = match bl {
        BLayout::Packed { k: kp } => {
            // panel = col0 / NR, lane = col0 % NR
            let panel = e.fb.ins().ushr_imm_s(col0, 3);
            let lane = e.fb.ins().band_imm_s(col0, (NR - 1) as i64);
            let pbase = e.index(b, panel, (kp * NR * 4) as i64);
            (e.index(pbase, lane, 4), (NR * 4) as i64)
        }
        BLayout::Rows { ldb } => (e.index(b, col0, 4), (ldb * 4) as i64),
    };
    let c0 = e.index(c, col0, 4);
    let bias = epi.bias.map(|p| e.index(p, col0, 4));
    if rows_full > 0 {
        e.loop_n(rows_full, |e, i| {
            let ai = e.index(a, i, (MR * lda * 4) as i64);
            let ci = e.index(c0, i, (MR * ldc * 4) as i64);
            tile(e, ai, lda, b0, bstep, ci, ldc, k, MR, w, bias, epi.relu);
        });
    }
    if rows_rem > 0 {
        let ai = e.addr(a, (rows_full * MR * lda * 4) as i64);
        let ci = e.addr(c0, (rows_full * MR * ldc * 4) as i64);
        tile(
            e, ai, lda, b0, bstep, ci, ldc, k, rows_rem, w, bias, epi.relu,
        );
    }
}

/// One `mr × w` tile: accumulators in registers over the whole `k`, then the epilogue.
#[allow(clippy::too_many_arguments)]
fn tile(
    e: &mut E,
    a: Value,
    lda: usize,
    b: Value,
    bstep: i64,
    c: Value,
    ldc: usize,
    k: usize,
    mr: usize,
    w: usize,
    bias: Option<Value>,
    relu: bool,
) {
    let vecs = w / 4; // 2, 1 or 0 (scalar column)
    let vty = if vecs > 0 { types::F32X4 } else { types::F32 };
    let per_row = vecs.max(1);
    let zero = e.fconst(vty, 0.0);
    let init = vec![zero; mr * per_row];
    let rows: Vec<Value> = (0..mr).map(|r| e.addr(a, (r * lda * 4) as i64)).collect();
    let accs = e.loop_acc(k, &init, |e, kk, acc| {
        let bk = e.index(b, kk, bstep);
        let bv: Vec<Value> = (0..per_row)
            .map(|j| e.load(vty, bk, (16 * j) as i32))
            .collect();
        let k4 = e.fb.ins().imul_imm_s(kk, 4);
        let mut out = Vec::with_capacity(acc.len());
        for (r, &row) in rows.iter().enumerate() {
            let ap = e.fb.ins().iadd(row, k4);
            let av = e.load(types::F32, ap, 0);
            let av = if vecs > 0 {
                e.fb.ins().splat(types::F32X4, av)
            } else {
                av
            };
            for j in 0..per_row {
                out.push(e.fma(av, bv[j], acc[r * per_row + j]));
            }
        }
        out
    });
    let bv: Option<Vec<Value>> = bias.map(|p| {
        (0..per_row)
            .map(|j| e.load(vty, p, (16 * j) as i32))
            .collect()
    });
    for r in 0..mr {
        for j in 0..per_row {
            let mut v = accs[r * per_row + j];
            if let Some(bv) = &bv {
                v = e.fb.ins().fadd(v, bv[j]);
            }
            if relu {
                v = e.fb.ins().fmax(v, zero);
            }
            e.store(v, c, ((r * ldc + 4 * j) * 4) as i32);
        }
    }
}
