//! The GEMM blocking is generic over the register tile: the same blocking, packing and edge
//! handling run with f32 tiles of other shapes than the production 4×8, and with the i16-pair
//! tile (different element, accumulator and k step), against naive references: f32 within the
//! rounding bound, i16 exactly. Every edge: m, n, k not multiples of the tile, k across k blocks,
//! odd k for the two-k step, padded leading dimensions, row splits, a column bias.

mod gemm_harness;

use cranelift_codegen::ir::{types, InstBuilder};
use gemm_harness::compile;
use kestrel_backends::jit::kernels::gemm::tile::{F32Tile, I16PairTile, Tile};
use kestrel_backends::jit::kernels::gemm::{self, pack, BSource, GemmShape};
use proptest::prelude::*;

/// One GEMM problem; `parts` row ranges are emitted one after the other.
#[derive(Clone, Copy, Debug)]
struct Problem {
    m: usize,
    n: usize,
    k: usize,
    lda_pad: usize,
    ldc_pad: usize,
    bias: bool,
    parts: usize,
    in_place_b: bool,
    seed: u64,
}

/// Deterministic 64-bit stream (splitmix64).
fn stream(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Emits the problem's GEMM with `tile` into a function `(a, b, c, bias)`.
fn build(tile: &(impl Tile + Copy + 'static), p: Problem) -> gemm_harness::Compiled {
    let (lda, ldc) = (p.k + p.lda_pad, p.n + p.ldc_pad);
    let shape = GemmShape {
        m: p.m,
        n: p.n,
        k: p.k,
        lda,
        ldc,
    };
    let source = if p.in_place_b {
        BSource::Rows { ldb: p.n }
    } else {
        BSource::Packed
    };
    let tile = *tile;
    compile(4, move |fb, flags, a| {
        let bias = p.bias.then_some(a[3]);
        for r in gemm::split_rows_by(tile.rows(), p.m, p.parts) {
            let mb = fb.ins().iconst(types::I64, r.start as i64);
            let me = fb.ins().iconst(types::I64, r.end as i64);
            gemm::emit_tiled(
                fb,
                flags,
                &tile,
                shape,
                source,
                a[0],
                a[1],
                a[2],
                gemm::Bias::columns(bias),
                mb,
                me,
            );
        }
    })
}

const F32_SENTINEL: f32 = -7.25;
const I32_SENTINEL: i32 = 0x5eed_5eed;

fn run_f32(tile: F32Tile, p: Problem) -> Result<(), String> {
    let (m, n, k) = (p.m, p.n, p.k);
    let (lda, ldc) = (k + p.lda_pad, n + p.ldc_pad);
    let mut next = stream(p.seed);
    let mut val = move || ((next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
    // Padding of A is NaN: reading it would poison a result.
    let mut a = vec![f32::NAN; m * lda];
    for i in 0..m {
        for q in 0..k {
            a[i * lda + q] = val();
        }
    }
    let b: Vec<f32> = (0..k * n).map(|_| val()).collect();
    let bias: Vec<f32> = (0..n).map(|_| val()).collect();
    let b_arg = if p.in_place_b {
        b.clone()
    } else {
        pack::pack_b(&tile, &b, k, n, false)
    };
    let mut c = vec![F32_SENTINEL; m * ldc];
    let f = build(&tile, p);
    assert_eq!(f.relocs, 0, "generated code references a symbol");
    // SAFETY: every buffer has the size the emitted code's contract asks for.
    unsafe {
        f.call(&[
            a.as_ptr() as usize,
            b_arg.as_ptr() as usize,
            c.as_mut_ptr() as usize,
            bias.as_ptr() as usize,
        ])
    };
    for i in 0..m {
        for j in 0..ldc {
            let got = c[i * ldc + j];
            if j >= n {
                if got.to_bits() != F32_SENTINEL.to_bits() {
                    return Err(format!("C[{i}][{j}] (padding) overwritten with {got}"));
                }
                continue;
            }
            let mut acc = if p.bias { bias[j] as f64 } else { 0.0 };
            let mut abs = acc.abs();
            for q in 0..k {
                let t = a[i * lda + q] as f64 * b[q * n + j] as f64;
                acc += t;
                abs += t.abs();
            }
            let tol = 1e-4 * (1.0 + acc.abs()) + 2.0 * k as f64 * f32::EPSILON as f64 * abs;
            let err = (got as f64 - acc).abs();
            if err.is_nan() || err > tol {
                return Err(format!("C[{i}][{j}] = {got}, reference {acc} (tol {tol})"));
            }
        }
    }
    Ok(())
}

fn run_i16(tile: I16PairTile, p: Problem) -> Result<(), String> {
    let (m, n, k) = (p.m, p.n, p.k);
    let (lda, ldc) = (k + p.lda_pad, n + p.ldc_pad);
    let mut next = stream(p.seed);
    let mut val = move || (next() >> 48) as u16 as i16;
    // Padding of A is a large value: reading it would change a result (B's padding is zero, so
    // only A values a step must not read could leak in).
    let mut a = vec![i16::MAX; m * lda];
    for i in 0..m {
        for q in 0..k {
            a[i * lda + q] = val();
        }
    }
    let b: Vec<i16> = (0..k * n).map(|_| val()).collect();
    let bias: Vec<i32> = (0..n).map(|_| val() as i32 * 3).collect();
    let packed = pack::pack_b(&tile, &b, k, n, false);
    assert_eq!(packed.len(), pack::packed_len(&tile, k, n));
    let mut c = vec![I32_SENTINEL; m * ldc];
    let f = build(&tile, p);
    assert_eq!(f.relocs, 0, "generated code references a symbol");
    // SAFETY: every buffer has the size the emitted code's contract asks for; the A rows are
    // followed by their padding, and the last row's final step reads only `k` elements.
    unsafe {
        f.call(&[
            a.as_ptr() as usize,
            packed.as_ptr() as usize,
            c.as_mut_ptr() as usize,
            bias.as_ptr() as usize,
        ])
    };
    for i in 0..m {
        for j in 0..ldc {
            let got = c[i * ldc + j];
            if j >= n {
                if got != I32_SENTINEL {
                    return Err(format!("C[{i}][{j}] (padding) overwritten with {got}"));
                }
                continue;
            }
            let mut acc = if p.bias { bias[j] } else { 0 };
            for q in 0..k {
                acc = acc.wrapping_add(a[i * lda + q] as i32 * b[q * n + j] as i32);
            }
            if got != acc {
                return Err(format!("C[{i}][{j}] = {got}, reference {acc}"));
            }
        }
    }
    Ok(())
}

const F32_TILES: [F32Tile; 4] = [
    F32Tile::PRODUCTION,
    F32Tile { rows: 3, cols: 12 },
    F32Tile { rows: 2, cols: 4 },
    F32Tile { rows: 5, cols: 8 },
];

const I16_TILES: [I16PairTile; 3] = [
    I16PairTile { rows: 4, cols: 8 },
    I16PairTile { rows: 3, cols: 4 },
    I16PairTile { rows: 2, cols: 12 },
];

fn problem(m: usize, n: usize, k: usize, i: usize) -> Problem {
    Problem {
        m,
        n,
        k,
        lda_pad: i % 3,
        ldc_pad: (i + 1) % 2,
        bias: i.is_multiple_of(2),
        parts: 1 + i % 3,
        in_place_b: false,
        seed: (m * 1_000_003 + n * 1009 + k + i) as u64,
    }
}

#[test]
fn every_tile_on_edge_shapes() {
    let dims = [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 17];
    let ks = [1, 2, 3, 5, 8, 9, 16, 17];
    let mut i = 0;
    for &m in &dims {
        for &n in &dims {
            for &k in &ks {
                i += 1;
                let mut p = problem(m, n, k, i);
                for t in F32_TILES {
                    p.in_place_b = i % 4 == 0;
                    run_f32(t, p).unwrap_or_else(|e| panic!("{t:?} {p:?}: {e}"));
                }
                p.in_place_b = false;
                for t in I16_TILES {
                    run_i16(t, p).unwrap_or_else(|e| panic!("{t:?} {p:?}: {e}"));
                }
            }
        }
    }
}

#[test]
fn k_blocks_of_every_tile() {
    for (i, &(m, n, k)) in [(5, 9, 255), (6, 17, 513), (7, 3, 1025), (3, 13, 1101)]
        .iter()
        .enumerate()
    {
        let p = problem(m, n, k, i);
        for t in F32_TILES {
            run_f32(t, p).unwrap_or_else(|e| panic!("{t:?} {p:?}: {e}"));
        }
        for t in I16_TILES {
            run_i16(t, p).unwrap_or_else(|e| panic!("{t:?} {p:?}: {e}"));
        }
    }
}

/// The i16-pair step lowers to `pmaddwd` on x86-64 (the tree CRANELIFT.md documents).
#[test]
#[cfg(target_arch = "x86_64")]
fn i16_pair_tile_uses_pmaddwd() {
    let f = build(&I16_TILES[0], problem(8, 8, 64, 0));
    assert!(f.vcode.contains("pmaddwd"), "{}", f.vcode);
}

/// `len` bytes whose last byte is followed by an inaccessible page, so reading past the end
/// faults (the test process dies) instead of passing unnoticed. Leaked.
fn guarded(len: usize) -> *mut u8 {
    extern "C" {
        fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
        fn mprotect(addr: *mut u8, len: usize, prot: i32) -> i32;
    }
    const PAGE: usize = 4096;
    let (prot_rw, prot_none, map_private_anon) = (3, 0, 0x22);
    let pages = len.div_ceil(PAGE) + 1;
    // SAFETY: an anonymous private mapping; the last page is made inaccessible.
    unsafe {
        let base = mmap(
            std::ptr::null_mut(),
            pages * PAGE,
            prot_rw,
            map_private_anon,
            -1,
            0,
        );
        assert!(!base.is_null() && base as isize != -1, "mmap failed");
        let guard = base.add((pages - 1) * PAGE);
        assert_eq!(mprotect(guard, PAGE, prot_none), 0, "mprotect failed");
        guard.sub(len)
    }
}

/// A step with fewer valid k than the tile's step (odd k for the i16-pair tile) reads only the
/// valid A elements: A ends right before an inaccessible page, without padding.
#[test]
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn a_partial_step_reads_inside_a() {
    for t in I16_TILES {
        for (m, n, k) in [(1, 4, 1), (3, 5, 3), (5, 8, 7), (4, 9, 513)] {
            let p = Problem {
                lda_pad: 0,
                bias: false,
                parts: 1,
                in_place_b: false,
                ..problem(m, n, k, 0)
            };
            let a_bytes = m * k * 2;
            let a = guarded(a_bytes) as *mut i16;
            let mut next = stream(p.seed);
            let av: Vec<i16> = (0..m * k).map(|_| (next() >> 48) as u16 as i16).collect();
            // SAFETY: `a` holds `m·k` i16.
            unsafe { std::ptr::copy_nonoverlapping(av.as_ptr(), a, m * k) };
            let b: Vec<i16> = (0..k * n).map(|_| (next() >> 48) as u16 as i16).collect();
            let packed = pack::pack_b(&t, &b, k, n, false);
            let mut c = vec![0i32; m * (n + p.ldc_pad)];
            let f = build(&t, p);
            // SAFETY: buffers as the emitted code's contract asks.
            unsafe {
                f.call(&[
                    a as usize,
                    packed.as_ptr() as usize,
                    c.as_mut_ptr() as usize,
                    0,
                ])
            };
            let ldc = n + p.ldc_pad;
            for i in 0..m {
                for j in 0..n {
                    let r: i32 = (0..k).fold(0i32, |s, q| {
                        s.wrapping_add(av[i * k + q] as i32 * b[q * n + j] as i32)
                    });
                    assert_eq!(c[i * ldc + j], r, "{t:?} {p:?} C[{i}][{j}]");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn random_shapes_every_tile(
        m in 1usize..40, n in 1usize..40, k in prop_oneof![1usize..40, 1usize..700],
        lda_pad in 0usize..4, ldc_pad in 0usize..4, bias: bool, parts in 1usize..4,
        in_place_b: bool, seed: u64, which in 0usize..7,
    ) {
        let p = Problem { m, n, k, lda_pad, ldc_pad, bias, parts, in_place_b, seed };
        let r = if which < F32_TILES.len() {
            run_f32(F32_TILES[which], p)
        } else {
            run_i16(I16_TILES[which - F32_TILES.len()], Problem { in_place_b: false, ..p })
        };
        if let Err(e) = r {
            return Err(TestCaseError::fail(format!("tile {which} {p:?}: {e}")));
        }
    }
}
