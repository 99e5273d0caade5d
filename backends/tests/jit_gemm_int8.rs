//! The int8 GEMM tiles (`kernels/gemm/int8.rs`) and the byte packers, exactly against a Rust
//! reference: every route with both operand roles (s8 weights in A or in B), every edge (m, n, k
//! not multiples of the tile or the step, k across k blocks, padded leading dimensions, row
//! splits, a column bias), B packed at compile time and at run time, reads and writes checked
//! against guard pages. Every route's CLIF runs on this machine: the dot trees of other targets
//! lower to generic (exact) code here, and the x86-64 routes without VNNI are selected by
//! switching VNNI off in `IsaFlags`. The machine code is checked for the dot-product
//! instruction of each route, on the host and for cross targets (compile only).

mod gemm_harness;

use cranelift_codegen::ir::{types, AbiParam, Function, InstBuilder, Signature, UserFuncName};
use cranelift_codegen::isa::CallConv;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use gemm_harness::compile;
use kestrel_backends::jit::isa::IsaFlags;
use kestrel_backends::jit::kernels::gemm::int8::{
    emit_int8_gemm_rows, emit_int8_pack_b, folded_bias, int8_packed_b_bytes, reduced_weight_range,
    weight_sums, Int8Route, Int8Tile, SignedOperand, WeightRange,
};
use kestrel_backends::jit::kernels::gemm::tile::Tile;
use kestrel_backends::jit::kernels::gemm::{self, pack, BSource, Bias, GemmShape};
use proptest::prelude::*;

/// One GEMM problem; `parts` row ranges are emitted one after the other.
#[derive(Clone, Copy, Debug)]
struct Problem {
    m: usize,
    n: usize,
    k: usize,
    lda_pad: usize,
    ldb_pad: usize,
    ldc_pad: usize,
    bias: BiasKind,
    parts: usize,
    /// B is packed by the emitted run-time packer (B u8 only) instead of at compile time.
    runtime_pack: bool,
    weights: WeightRange,
    seed: u64,
}

/// Where the problem's bias applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BiasKind {
    None,
    Columns,
    Rows,
}

impl BiasKind {
    fn of(i: usize) -> BiasKind {
        [BiasKind::None, BiasKind::Columns, BiasKind::Rows][i % 3]
    }
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

/// The six routes, with shapes of their production tiles and of other sizes.
fn tiles(signed: SignedOperand) -> Vec<Int8Tile> {
    let t = |rows, cols, route| Int8Tile {
        rows,
        cols,
        route,
        signed,
    };
    let mut v = vec![
        t(4, 12, Int8Route::Vnni),
        t(3, 8, Int8Route::Vnni),
        t(4, 8, Int8Route::WidenI16),
        t(3, 4, Int8Route::WidenI16),
        t(8, 12, Int8Route::Usdot),
        t(8, 12, Int8Route::Sdot),
        t(2, 8, Int8Route::Sdot),
        t(2, 4, Int8Route::LaneWise),
        t(4, 8, Int8Route::LaneWise),
    ];
    if host_has_ssse3() {
        v.push(t(3, 12, Int8Route::Pmaddubsw));
        v.push(t(2, 4, Int8Route::Pmaddubsw));
    }
    v
}

fn host_has_ssse3() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("ssse3");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// The operands of a problem: A `[m, lda]` (padding bytes 0x7f: reading them would change a
/// result), B `[k, ldb]` (padding 0x7f), bias `[n]` for columns, `[m]` for rows. The s8 operand is in `[-128, 127]`
/// (`[-64, 64]` for 7-bit weights), the u8 one in `[0, 255]`.
struct Operands {
    a: Vec<u8>,
    b: Vec<u8>,
    bias: Vec<i32>,
    lda: usize,
    ldb: usize,
}

fn operands(tile: &Int8Tile, p: &Problem) -> Operands {
    let (lda, ldb) = (p.k + p.lda_pad, p.n + p.ldb_pad);
    let mut next = stream(p.seed);
    let mut val = |signed: bool| -> u8 {
        let r = next();
        match (signed, p.weights) {
            (false, _) => r as u8,
            (true, WeightRange::Full) => r as u8,
            (true, WeightRange::SevenBit) => ((r % 129) as i32 - 64) as i8 as u8,
        }
    };
    let a_signed = tile.signed == SignedOperand::A;
    let mut a = vec![0x7f; p.m * lda];
    for i in 0..p.m {
        for q in 0..p.k {
            a[i * lda + q] = val(a_signed);
        }
    }
    let mut b = vec![0x7f; p.k * ldb];
    for q in 0..p.k {
        for j in 0..p.n {
            b[q * ldb + j] = val(!a_signed);
        }
    }
    let len = if p.bias == BiasKind::Rows { p.m } else { p.n };
    let bias = (0..len).map(|_| (next() as i32) >> 8).collect::<Vec<i32>>();
    Operands {
        a,
        b,
        bias,
        lda,
        ldb,
    }
}

/// `B[k, ldb]` without its padding columns.
fn dense_b(o: &Operands, k: usize, n: usize) -> Vec<u8> {
    (0..k)
        .flat_map(|q| o.b[q * o.ldb..q * o.ldb + n].to_vec())
        .collect()
}

/// What the tile must compute: `bias + A·B − unsigned_offset·Σ_k w` (wrapping i32).
fn reference(tile: &Int8Tile, p: &Problem, o: &Operands) -> Vec<i32> {
    let a_signed = tile.signed == SignedOperand::A;
    let (av, bv) = (
        |x: u8| if a_signed { x as i8 as i32 } else { x as i32 },
        |x: u8| if a_signed { x as i32 } else { x as i8 as i32 },
    );
    let mut c = vec![0i32; p.m * p.n];
    for i in 0..p.m {
        for j in 0..p.n {
            let mut acc = match p.bias {
                BiasKind::None => 0,
                BiasKind::Columns => o.bias[j],
                BiasKind::Rows => o.bias[i],
            };
            let mut w_sum = 0i32;
            for q in 0..p.k {
                let (x, y) = (av(o.a[i * o.lda + q]), bv(o.b[q * o.ldb + j]));
                acc = acc.wrapping_add(x * y);
                w_sum += if a_signed { x } else { y };
            }
            c[i * p.n + j] = acc.wrapping_sub(tile.unsigned_offset() * w_sum);
        }
    }
    c
}

const SENTINEL: i32 = 0x5eed_5eed;

/// Emits the problem's GEMM (and, with `runtime_pack`, the packer before it) into a function
/// `(a, b, c, bias, scratch)`, through the public entry points.
fn build(tile: Int8Tile, p: Problem, lda: usize, ldb: usize) -> gemm_harness::Compiled {
    let ldc = p.n + p.ldc_pad;
    compile(5, move |fb, flags, a| {
        let bias = match p.bias {
            BiasKind::None => Bias::None,
            BiasKind::Columns => Bias::Columns(a[3]),
            BiasKind::Rows => Bias::Rows(a[3]),
        };
        let b = if p.runtime_pack {
            emit_int8_pack_b(fb, flags, &tile, a[1], ldb, a[4], p.k, p.n);
            a[4]
        } else {
            a[1]
        };
        for r in gemm::split_rows_by(tile.rows(), p.m, p.parts) {
            let mb = fb.ins().iconst(types::I64, r.start as i64);
            let me = fb.ins().iconst(types::I64, r.end as i64);
            emit_int8_gemm_rows(
                fb, flags, &tile, a[0], lda, b, a[2], ldc, p.m, p.n, p.k, bias, mb, me,
            );
        }
    })
}

/// Runs the problem with `tile`; `Err` describes the first wrong element.
fn run(tile: Int8Tile, p: Problem) -> Result<(), String> {
    let o = operands(&tile, &p);
    let ldc = p.n + p.ldc_pad;
    let packed = pack::pack_b(&tile, &dense_b(&o, p.k, p.n), p.k, p.n, false);
    let mut scratch = vec![0xa5u8; pack::packed_len(&tile, p.k, p.n)];
    let b_arg = if p.runtime_pack {
        o.b.as_ptr()
    } else {
        packed.as_ptr()
    };
    let mut c = vec![SENTINEL; p.m * ldc];
    let f = build(tile, p, o.lda, o.ldb);
    assert_eq!(f.relocs, 0, "generated code references a symbol");
    // SAFETY: every buffer has the size the emitted code's contract asks for.
    unsafe {
        f.call(&[
            o.a.as_ptr() as usize,
            b_arg as usize,
            c.as_mut_ptr() as usize,
            o.bias.as_ptr() as usize,
            scratch.as_mut_ptr() as usize,
        ])
    };
    if p.runtime_pack && scratch != packed {
        let at = scratch.iter().zip(&packed).position(|(x, y)| x != y);
        return Err(format!(
            "run-time packing differs from pack_b at byte {at:?}"
        ));
    }
    let want = reference(&tile, &p, &o);
    for i in 0..p.m {
        for j in 0..ldc {
            let got = c[i * ldc + j];
            if j >= p.n {
                if got != SENTINEL {
                    return Err(format!("C[{i}][{j}] (padding) overwritten with {got}"));
                }
            } else if got != want[i * p.n + j] {
                return Err(format!(
                    "C[{i}][{j}] = {got}, reference {}",
                    want[i * p.n + j]
                ));
            }
        }
    }
    Ok(())
}

fn problem(m: usize, n: usize, k: usize, i: usize) -> Problem {
    Problem {
        m,
        n,
        k,
        lda_pad: i % 3,
        ldb_pad: (i / 2) % 3,
        ldc_pad: (i + 1) % 2,
        bias: BiasKind::of(i),
        parts: 1 + i % 3,
        runtime_pack: false,
        weights: WeightRange::Full,
        seed: (m * 1_000_003 + n * 1009 + k + i) as u64,
    }
}

/// The problem as a tile may run it: 7-bit weights for `pmaddubsw`.
fn for_tile(tile: &Int8Tile, mut p: Problem) -> Problem {
    if tile.route == Int8Route::Pmaddubsw {
        p.weights = WeightRange::SevenBit;
    }
    p
}

#[test]
fn every_route_on_edge_shapes() {
    let dims = [1, 3, 4, 5, 8, 9, 12, 13, 17];
    let ks = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 33];
    let mut i = 0;
    for signed in [SignedOperand::A, SignedOperand::B] {
        let ts = tiles(signed);
        for &m in &dims {
            for &n in &dims {
                for &k in &ks {
                    i += 1;
                    let t = ts[i % ts.len()];
                    let p = for_tile(
                        &t,
                        Problem {
                            runtime_pack: i % 3 != 0,
                            ..problem(m, n, k, i)
                        },
                    );
                    run(t, p).unwrap_or_else(|e| panic!("{t:?} {p:?}: {e}"));
                }
            }
        }
    }
}

/// Every route and role on shapes with every kind of edge at once, and k across k blocks.
#[test]
fn every_route_across_k_blocks() {
    let shapes = [
        (5, 13, 1023),
        (6, 17, 1025),
        (9, 29, 2051),
        (3, 50, 3000),
        (13, 7, 4),
    ];
    for signed in [SignedOperand::A, SignedOperand::B] {
        for t in tiles(signed) {
            for (i, &(m, n, k)) in shapes.iter().enumerate() {
                for runtime_pack in [false, true] {
                    let p = for_tile(
                        &t,
                        Problem {
                            runtime_pack,
                            ..problem(m, n, k, i)
                        },
                    );
                    run(t, p).unwrap_or_else(|e| panic!("{t:?} {p:?}: {e}"));
                }
            }
        }
    }
}

/// With VNNI switched off in the flags, x86-64 selects the widening route for full-range
/// weights and the `pmaddubsw` route for 7-bit ones; both are exact here, and their code has
/// their instructions and no `vpdpbusd`.
#[test]
#[cfg(target_arch = "x86_64")]
fn x86_routes_without_vnni() {
    let host = IsaFlags::from_isa(&*gemm_harness::host_isa());
    let no_vnni = IsaFlags {
        has_avx512vnni: false,
        has_avx_vnni: false,
        ..host
    };
    assert!(!no_vnni.use_vnni());
    assert!(reduced_weight_range(&no_vnni));
    for signed in [SignedOperand::A, SignedOperand::B] {
        for (weights, route, insn) in [
            (WeightRange::Full, Int8Route::WidenI16, "pmaddwd"),
            (WeightRange::SevenBit, Int8Route::Pmaddubsw, "pmaddubsw"),
        ] {
            let t = Int8Tile::select(&no_vnni, signed, weights);
            assert_eq!(t.route, route, "{weights:?}");
            for (i, &(m, n, k)) in [(7, 19, 37), (4, 24, 1030), (1, 1, 1)].iter().enumerate() {
                let p = Problem {
                    weights,
                    runtime_pack: signed == SignedOperand::A,
                    ..problem(m, n, k, i)
                };
                run(t, p).unwrap_or_else(|e| panic!("{t:?} {p:?}: {e}"));
            }
            let o = operands(&t, &problem(8, 24, 64, 0));
            let f = build(t, problem(8, 24, 64, 0), o.lda, o.ldb);
            assert!(f.vcode.contains(insn), "{t:?}:\n{}", f.vcode);
            assert!(!f.vcode.contains("vpdpbusd"), "{t:?}:\n{}", f.vcode);
            // SAFETY: the finalized function's `code_len` bytes are readable.
            let code = unsafe { std::slice::from_raw_parts(f.ptr, f.code_len) };
            assert_eq!(count_vpdpbusd(code), 0, "{t:?}");
        }
    }
}

/// `pmaddubsw` saturates pair sums to i16: with 8-bit weights the route is wrong, which is
/// why it is only selected for 7-bit ones (and why this test exists: it shows the 7-bit tests
/// above would catch a saturating step).
#[test]
#[cfg(target_arch = "x86_64")]
fn pmaddubsw_saturates_on_full_range_weights() {
    if !host_has_ssse3() {
        return;
    }
    let t = Int8Tile {
        rows: 3,
        cols: 12,
        route: Int8Route::Pmaddubsw,
        signed: SignedOperand::B,
    };
    assert!(!t.is_exact_for(WeightRange::Full) && t.is_exact_for(WeightRange::SevenBit));
    let p = problem(6, 24, 64, 0);
    assert!(run(t, p).is_err(), "8-bit weights did not saturate");
}

/// The host's int8 GEMM has the dot-product instruction of its route: `vpdpbusd` on x86-64
/// with VNNI (this is the check that the exact CLIF tree still matches), `sdot`/`usdot` on
/// aarch64; and it calls nothing.
#[test]
fn host_int8_gemm_uses_its_dot_product_instruction() {
    let host = IsaFlags::from_isa(&*gemm_harness::host_isa());
    for signed in [SignedOperand::A, SignedOperand::B] {
        let t = Int8Tile::select(&host, signed, WeightRange::Full);
        let p = problem(9, 26, 300, 1);
        let o = operands(&t, &p);
        let f = build(t, p, o.lda, o.ldb);
        assert_eq!(f.relocs, 0);
        let text = f.vcode.to_lowercase();
        assert_eq!(count_calls(&text), 0, "a call in:\n{}", f.vcode);
        let insn = match t.route {
            Int8Route::Vnni => "vpdpbusd",
            Int8Route::Pmaddubsw => "pmaddubsw",
            Int8Route::WidenI16 if host.is_x86 => "pmaddwd",
            Int8Route::WidenI16 => "smull",
            Int8Route::Usdot => "usdot",
            Int8Route::Sdot => "sdot",
            Int8Route::LaneWise => "mul",
        };
        assert!(text.contains(insn), "{t:?} lacks {insn}:\n{}", f.vcode);
        if host.is_x86 && matches!(t.route, Int8Route::Vnni | Int8Route::Pmaddubsw) {
            // The unrolled loop takes each step's A quad by `pshufd` from one 16-byte load
            // (`Tile::broadcast_a_in_group`), four per row; `vpbroadcastd` remains for the
            // remainder steps and row biases of each tile copy (full and edge rows and panels).
            let shuffles = text.matches("vpshufd").count();
            let broadcasts = text.matches("vpbroadcastd").count();
            assert!(
                shuffles >= 4 * t.rows && shuffles >= broadcasts,
                "{t:?}: {shuffles} vpshufd, {broadcasts} vpbroadcastd:\n{}",
                f.vcode
            );
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512vl")
            || std::is_x86_feature_detected!("avxvnni")
        {
            assert_eq!(t.route, Int8Route::Vnni, "{host:?}");
            assert_eq!(t.rows * t.cols, 48, "the measured best VNNI tile is 4×12");
            // The machine code itself, not only the listing: `vpdpbusd xmm` is opcode 0x50 in
            // map 0F38 with prefix 66, EVEX (`62`, P0.mm = 2, P1.pp = 1) or VEX3 (`c4`, mmmmm = 2,
            // pp = 1); a dot step per tile element per k quad.
            // SAFETY: the finalized function's `code_len` bytes are readable.
            let code = unsafe { std::slice::from_raw_parts(f.ptr, f.code_len) };
            let dots = count_vpdpbusd(code);
            assert!(
                dots >= t.rows * t.cols / 4,
                "{dots} vpdpbusd encodings in the code of {t:?}"
            );
        }
        run(t, p).unwrap_or_else(|e| panic!("{t:?} {p:?}: {e}"));
    }
}

/// Occurrences of the `vpdpbusd` encodings (EVEX `62 P0 P1 P2 50`, VEX3 `c4 B1 B2 50`) in x86-64
/// machine code. A byte scan, so it could over-count inside immediates, never under-count.
fn count_vpdpbusd(code: &[u8]) -> usize {
    let evex = code
        .windows(5)
        .filter(|w| w[0] == 0x62 && w[1] & 0x07 == 2 && w[2] & 0x07 == 0x05 && w[4] == 0x50)
        .count();
    let vex = code
        .windows(4)
        .filter(|w| w[0] == 0xc4 && w[1] & 0x1f == 2 && w[2] & 0x03 == 1 && w[3] == 0x50)
        .count();
    evex + vex
}

fn count_calls(vcode: &str) -> usize {
    vcode
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.contains("call") || w == "bl" || w == "blr" || w == "jalr")
        })
        .count()
}

/// Compiles the int8 GEMM (with the run-time packer) for `triple` with the given ISA flags on,
/// at `opt_level=none`, after the lane-by-lane rewrite for targets without vectors (the flags'
/// `scalarized`, as the AOT compiler does); returns the selected
/// tile, the VCode listing and the relocation count.
fn compile_for(
    triple: &str,
    enable: &[&str],
    signed: SignedOperand,
    weights: WeightRange,
) -> (Int8Tile, String, usize) {
    let mut fl = settings::builder();
    fl.set("opt_level", "none").unwrap();
    let mut ib = cranelift_codegen::isa::lookup_by_name(triple).unwrap();
    for e in enable {
        ib.set(e, "true").unwrap();
    }
    let isa = ib.finish(settings::Flags::new(fl)).unwrap();
    compile_for_isa(&*isa, signed, weights)
}

/// [`compile_for`] with a given ISA.
fn compile_for_isa(
    isa: &dyn cranelift_codegen::isa::TargetIsa,
    signed: SignedOperand,
    weights: WeightRange,
) -> (Int8Tile, String, usize) {
    let triple = isa.triple().to_string();
    let flags = IsaFlags::from_isa(isa);
    let tile = Int8Tile::select(&flags, signed, weights);
    let mut sig = Signature::new(CallConv::SystemV);
    for _ in 0..5 {
        sig.params.push(AbiParam::new(types::I64));
    }
    let mut func = Function::with_name_signature(UserFuncName::user(0, 0), sig);
    let mut fbc = FunctionBuilderContext::new();
    let mut fb = FunctionBuilder::new(&mut func, &mut fbc);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    fb.seal_block(entry);
    let p = fb.block_params(entry).to_vec();
    let (m, n, k) = (9, 29, 300);
    pack::emit_pack_b_bytes(&mut fb, &flags, &tile, p[1], n + 3, p[4], k, n);
    let shape = GemmShape {
        m,
        n,
        k,
        lda: k,
        ldc: n,
    };
    let (mb, me) = (
        fb.ins().iconst(types::I64, 0),
        fb.ins().iconst(types::I64, m as i64),
    );
    gemm::emit_tiled(
        &mut fb,
        &flags,
        &tile,
        shape,
        BSource::Packed,
        p[0],
        p[4],
        p[2],
        Bias::Columns(p[3]),
        mb,
        me,
    );
    fb.ins().return_(&[]);
    fb.seal_all_blocks();
    fb.finalize(isa.frontend_config());
    if flags.scalarized {
        kestrel_backends::aot::scalarize::scalarize(&mut func)
            .unwrap_or_else(|e| panic!("{triple}: {e}"));
    }
    let mut ctx = cranelift_codegen::Context::for_function(func);
    ctx.set_disasm(true);
    let cc = ctx
        .compile(isa, &mut Default::default())
        .unwrap_or_else(|e| panic!("{triple}: {:?}", e.inner));
    (tile, cc.vcode.clone().unwrap(), cc.buffer.relocs().len())
}

/// A target triple, the ISA flags turned on, the weights' range, the route it must select,
/// instructions that must and must not appear.
type CrossCase<'a> = (
    &'a str,
    &'a [&'a str],
    WeightRange,
    Int8Route,
    &'a [&'a str],
    &'a [&'a str],
);

/// Each target's selected route compiles to its instruction and calls nothing: x86-64 VNNI
/// (EVEX and VEX `vpdpbusd`), `pmaddubsw` for 7-bit weights without VNNI, `pmaddwd` without
/// either; aarch64 `usdot` (`+i8mm`), `sdot` (`+dotprod`), the widening route without them;
/// riscv64 with V, and without it after the lane-by-lane rewrite (which must accept the CLIF).
#[test]
fn cross_target_int8_code() {
    let x86 = "x86_64-unknown-linux-gnu";
    let a64 = "aarch64-unknown-linux-gnu";
    let rv = "riscv64gc-unknown-linux-gnu";
    let avx512 = &[
        "has_avx",
        "has_avx2",
        "has_avx512f",
        "has_avx512vl",
        "has_avx512vnni",
    ][..];
    // What `kestrel compile` sets for an AVX-512 target (every implied feature on).
    let avx512_full = &[
        "has_sse3",
        "has_ssse3",
        "has_sse41",
        "has_sse42",
        "has_avx",
        "has_avx2",
        "has_fma",
        "has_avx512f",
        "has_avx512vl",
        "has_avx512vnni",
    ][..];
    let rvv = &["has_v", "has_zvl32b", "has_zvl64b", "has_zvl128b"][..];
    let full = WeightRange::Full;
    let seven = WeightRange::SevenBit;
    #[rustfmt::skip]
    let cases: [CrossCase; 11] = [
        (x86, avx512_full, full, Int8Route::Vnni, &["vpdpbusd", "vpshufb"], &["{vex} vpdpbusd"]),
        // Without SSSE3 the packer's partial groups avoid byte shuffles (a `pshufb` libcall).
        (x86, avx512, full, Int8Route::Vnni, &["vpdpbusd"], &["{vex} vpdpbusd", "pshufb"]),
        (x86, &["has_avx", "has_avx2", "has_avx_vnni"], full, Int8Route::Vnni, &["vpdpbusd"], &[]),
        (x86, &["has_ssse3", "has_sse41"], seven, Int8Route::Pmaddubsw, &["pmaddubsw", "pmaddwd"], &["vpdpbusd"]),
        (x86, &["has_ssse3", "has_sse41"], full, Int8Route::WidenI16, &["pmaddwd"], &["pmaddubsw"]),
        (x86, &[], full, Int8Route::WidenI16, &["pmaddwd"], &["pmaddubsw", "pshufb"]),
        (a64, &["has_i8mm", "has_dotprod"], full, Int8Route::Usdot, &["usdot"], &[]),
        (a64, &["has_dotprod"], full, Int8Route::Sdot, &["sdot"], &["usdot"]),
        (a64, &[], full, Int8Route::WidenI16, &["smull"], &["sdot"]),
        (rv, rvv, full, Int8Route::LaneWise, &["vmul"], &[]),
        (rv, &[], full, Int8Route::LaneWise, &["mul"], &["vmul", "vset"]),
    ];
    for (triple, enable, weights, route, present, absent) in cases {
        for signed in [SignedOperand::A, SignedOperand::B] {
            let (tile, vcode, relocs) = compile_for(triple, enable, signed, weights);
            let what = format!("{triple} {enable:?} {signed:?}");
            assert_eq!(tile.route, route, "{what}");
            assert_eq!(relocs, 0, "{what}");
            assert_eq!(count_calls(&vcode), 0, "{what}:\n{vcode}");
            for insn in present {
                assert!(vcode.contains(insn), "{what} lacks {insn}:\n{vcode}");
            }
            for insn in absent {
                assert!(!vcode.contains(insn), "{what} has {insn}:\n{vcode}");
            }
        }
    }
}

/// `len` bytes whose last byte is followed by an inaccessible page, so reading past the end
/// faults (the test process dies) instead of passing unnoticed. Leaked.
#[cfg(target_os = "linux")]
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

/// A copy of `data` ending right before an inaccessible page.
#[cfg(target_os = "linux")]
fn guarded_copy<T: Copy>(data: &[T]) -> *mut T {
    let bytes = std::mem::size_of_val(data);
    let p = guarded(bytes) as *mut T;
    // SAFETY: `p` holds `bytes` bytes.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    p
}

/// Nothing is read past A (a partial last step reads only the valid k), past the packed B, or
/// past the run-time B (the packer's 16-byte loads stay inside each row's n bytes); nothing is
/// written past the packed scratch or C. Every buffer ends right before an inaccessible page.
#[test]
#[cfg(target_os = "linux")]
fn reads_and_writes_stay_inside_the_buffers() {
    for signed in [SignedOperand::A, SignedOperand::B] {
        for t in tiles(signed) {
            for (i, (m, n, k)) in [(1, 4, 1), (3, 5, 3), (5, 17, 7), (4, 33, 1030), (2, 48, 18)]
                .into_iter()
                .enumerate()
            {
                let p = for_tile(
                    &t,
                    Problem {
                        lda_pad: 0,
                        ldb_pad: 0,
                        ldc_pad: 0,
                        runtime_pack: i % 2 == 0,
                        ..problem(m, n, k, i)
                    },
                );
                let o = operands(&t, &p);
                let packed = pack::pack_b(&t, &dense_b(&o, k, n), k, n, false);
                let a = guarded_copy(&o.a);
                let b = if p.runtime_pack {
                    guarded_copy(&o.b)
                } else {
                    guarded_copy(&packed)
                };
                let bias = guarded_copy(&o.bias);
                let c = guarded_copy(&vec![SENTINEL; m * n]);
                let scratch = guarded_copy(&vec![0u8; packed.len()]);
                let f = build(t, p, o.lda, o.ldb);
                // SAFETY: buffers as the emitted code's contract asks.
                unsafe {
                    f.call(&[
                        a as usize,
                        b as usize,
                        c as usize,
                        bias as usize,
                        scratch as usize,
                    ]);
                    let c = std::slice::from_raw_parts(c, m * n);
                    assert_eq!(c, &reference(&t, &p, &o)[..], "{t:?} {p:?}");
                }
            }
        }
    }
}

/// The compile-time helpers: Σ_k w per channel in both layouts, and the folded bias gives the
/// zero-point-corrected accumulators from the raw kernel result, for every route's offset.
#[test]
fn weight_sums_and_folded_bias() {
    let (k, ch) = (5, 3);
    let w: Vec<i8> = (0..k * ch)
        .map(|i| (i as i8).wrapping_mul(37) ^ 0x55)
        .collect();
    let by_channel = weight_sums(&w, k, ch, true);
    let by_k = weight_sums(&w, ch, k, false);
    for c in 0..ch {
        let s: i32 = (0..k).map(|q| w[c * k + q] as i32).sum();
        assert_eq!(by_channel[c], s);
    }
    for j in 0..k {
        let s: i32 = (0..ch).map(|q| w[q * k + j] as i32).sum();
        assert_eq!(by_k[j], s);
    }
    // x (u8, zero point zx) · w for one channel, through the kernel's contract.
    let x: Vec<u8> = (0..k).map(|i| (i * 61 + 7) as u8).collect();
    let bias = [1000, -2000, 12345];
    for offset in [0, 128] {
        for zx in [0, 3, 128, 255] {
            let folded = folded_bias(Some(&bias), &by_channel, zx, offset);
            for c in 0..ch {
                let raw: i32 = (0..k)
                    .map(|q| (x[q] as i32 - offset) * w[c * k + q] as i32)
                    .sum();
                let want: i32 = bias[c]
                    + (0..k)
                        .map(|q| (x[q] as i32 - zx) * w[c * k + q] as i32)
                        .sum::<i32>();
                assert_eq!(raw + folded[c], want, "offset {offset} zx {zx} channel {c}");
            }
        }
    }
    assert_eq!(WeightRange::of(&[-64, 64, 3]), WeightRange::SevenBit);
    assert_eq!(WeightRange::of(&[-65, 0]), WeightRange::Full);
    assert_eq!(WeightRange::of(&[-128]), WeightRange::Full);
}

/// The selection depends only on the flags (and the weights' range): each target's flags give
/// the documented route, and `reduced_weight_range` is true exactly for x86-64 with SSSE3 but
/// without VNNI.
#[test]
fn selection_follows_the_flags() {
    let x86 = IsaFlags {
        is_x86: true,
        has_ssse3: true,
        has_sse41: true,
        ..IsaFlags::default()
    };
    let cases = [
        (
            IsaFlags {
                has_avx512vl: true,
                has_avx512vnni: true,
                ..x86
            },
            Int8Route::Vnni,
            false,
        ),
        (
            IsaFlags {
                has_avx: true,
                has_avx_vnni: true,
                ..x86
            },
            Int8Route::Vnni,
            false,
        ),
        // AVX-512 VNNI without VL has no 128-bit form.
        (
            IsaFlags {
                has_avx512vnni: true,
                ..x86
            },
            Int8Route::WidenI16,
            true,
        ),
        (x86, Int8Route::WidenI16, true),
        (
            IsaFlags {
                has_ssse3: false,
                ..x86
            },
            Int8Route::WidenI16,
            false,
        ),
        (
            IsaFlags {
                is_aarch64: true,
                has_dotprod: true,
                has_i8mm: true,
                ..IsaFlags::default()
            },
            Int8Route::Usdot,
            false,
        ),
        (
            IsaFlags {
                is_aarch64: true,
                has_dotprod: true,
                ..IsaFlags::default()
            },
            Int8Route::Sdot,
            false,
        ),
        (
            IsaFlags {
                is_aarch64: true,
                ..IsaFlags::default()
            },
            Int8Route::WidenI16,
            false,
        ),
        (
            IsaFlags {
                is_riscv64: true,
                has_v: true,
                ..IsaFlags::default()
            },
            Int8Route::LaneWise,
            false,
        ),
        (
            IsaFlags {
                is_riscv64: true,
                scalarized: true,
                ..IsaFlags::default()
            },
            Int8Route::LaneWise,
            false,
        ),
        (
            IsaFlags {
                scalarized: true,
                has_avx512vl: true,
                has_avx512vnni: true,
                ..x86
            },
            Int8Route::LaneWise,
            false,
        ),
    ];
    for (flags, route, reduced) in cases {
        for signed in [SignedOperand::A, SignedOperand::B] {
            let t = Int8Tile::select(&flags, signed, WeightRange::Full);
            assert_eq!((t.route, t.signed), (route, signed), "{flags:?}");
            assert!(t.cols.is_multiple_of(4) && t.rows > 0);
            assert_eq!(reduced_weight_range(&flags), reduced, "{flags:?}");
            let seven = Int8Tile::select(&flags, signed, WeightRange::SevenBit);
            assert!(seven.is_exact_for(WeightRange::SevenBit));
            assert!(t.is_exact_for(WeightRange::Full));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn random_shapes_every_route(
        m in 1usize..40, n in 1usize..60, k in prop_oneof![1usize..70, 1usize..2100],
        lda_pad in 0usize..5, ldb_pad in 0usize..5, ldc_pad in 0usize..4, bias in 0usize..3,
        parts in 1usize..4, runtime_pack: bool, seed: u64, which in 0usize..64, a_signed: bool,
    ) {
        let signed = if a_signed { SignedOperand::A } else { SignedOperand::B };
        let ts = tiles(signed);
        let t = ts[which % ts.len()];
        let p = for_tile(&t, Problem {
            m, n, k, lda_pad, ldb_pad, ldc_pad, bias: BiasKind::of(bias), parts, runtime_pack,
            weights: WeightRange::Full, seed,
        });
        if let Err(e) = run(t, p) {
            return Err(TestCaseError::fail(format!("{t:?} {p:?}: {e}")));
        }
    }
}

/// Prints the VCode of one tile of every route, k = 64 (inspection aid:
/// `cargo test -p kestrel-backends --test jit_gemm_int8 print_routes -- --ignored --nocapture`).
#[test]
#[ignore]
fn print_routes() {
    for t in tiles(SignedOperand::B) {
        let p = problem(t.rows, t.cols, 64, 1);
        let o = operands(&t, &p);
        let f = build(t, Problem { parts: 1, ..p }, o.lda, o.ldb);
        println!("==== {t:?}: {} bytes\n{}", f.code_len, f.vcode);
    }
}

/// The run-time packer without byte shuffles (x86-64 without SSSE3, and the scalarised form)
/// writes exactly what `pack_b` returns.
#[test]
fn run_time_packer_without_byte_shuffles() {
    for (scalarized, has_ssse3) in [(false, false), (true, false), (false, true)] {
        for (n, k) in [(1, 1), (5, 3), (13, 9), (29, 17), (50, 1030)] {
            let t = Int8Tile {
                rows: 4,
                cols: 12,
                route: Int8Route::Vnni,
                signed: SignedOperand::A,
            };
            let ldb = n + 2;
            let mut next = stream((n * 31 + k) as u64);
            let b: Vec<u8> = (0..k * ldb).map(|_| next() as u8).collect();
            let want = pack::pack_b(&t, &dense_b_rows(&b, ldb, k, n), k, n, false);
            let f = compile(2, move |fb, host, a| {
                let flags = IsaFlags {
                    scalarized,
                    has_ssse3,
                    ..*host
                };
                pack::emit_pack_b_bytes(fb, &flags, &t, a[0], ldb, a[1], k, n);
            });
            assert_eq!(f.relocs, 0, "scalarized {scalarized} ssse3 {has_ssse3}");
            let mut got = vec![0xa5u8; want.len()];
            // SAFETY: B holds k·ldb bytes, the destination the packed length.
            unsafe { f.call(&[b.as_ptr() as usize, got.as_mut_ptr() as usize]) };
            assert_eq!(
                got, want,
                "n {n} k {k} scalarized {scalarized} ssse3 {has_ssse3}"
            );
        }
    }
}

/// `B[k, ldb]` without its padding columns.
fn dense_b_rows(b: &[u8], ldb: usize, k: usize, n: usize) -> Vec<u8> {
    (0..k)
        .flat_map(|q| b[q * ldb..q * ldb + n].to_vec())
        .collect()
}

/// The two lowerings' uses of the entry points, with the activation zero point folded into the
/// bias by `folded_bias`, against the integer semantics `bias[c] + Σ_k (x − zx)·w[c, k]`:
/// a convolution (`W s8 [M, K]` in A read in place, u8 im2col `[K, P]` packed at run time, a row
/// bias) and a Gemm (u8 `X [R, K]` in A, s8 `W` packed at compile time from `[K, N]` or, with
/// `trans_b`, `[N, K]`, a column bias). Every route that runs here, weights of its range.
#[test]
fn zero_point_folding_in_both_lowerings() {
    use kestrel_backends::jit::kernels::gemm::int8::{emit_int8_gemm, pack_int8_b};
    let (ch, k, cols) = (13, 37, 19);
    for signed in [SignedOperand::A, SignedOperand::B] {
        for t in tiles(signed) {
            for (zx, trans_b) in [(0, false), (3, true), (128, false), (255, true)] {
                let seven = t.route == Int8Route::Pmaddubsw;
                let mut next = stream((zx * 7 + ch) as u64);
                let w: Vec<i8> = (0..ch * k)
                    .map(|_| {
                        let r = next();
                        if seven {
                            ((r % 129) as i32 - 64) as i8
                        } else {
                            ((r % 255) as i32 - 127) as i8
                        }
                    })
                    .collect();
                let x: Vec<u8> = (0..k * cols).map(|_| next() as u8).collect();
                let bias: Vec<i32> = (0..ch).map(|_| (next() as i32) >> 12).collect();
                // w[c][q] and x[q][j] (conv: x is col[K, P]; gemm: x is Xᵀ, so X[j][q]).
                let wv = |c: usize, q: usize| w[c * k + q] as i32;
                let want = |c: usize, j: usize| {
                    bias[c]
                        + (0..k)
                            .map(|q| (x[q * cols + j] as i32 - zx as i32) * wv(c, q))
                            .sum::<i32>()
                };
                let sums = weight_sums(&w, k, ch, true);
                let folded = folded_bias(Some(&bias), &sums, zx as i32, t.unsigned_offset());
                let got: Vec<i32> = if signed == SignedOperand::A {
                    // Convolution: C[M, P] = W[M, K] · col[K, P].
                    let mut c = vec![SENTINEL; ch * cols];
                    let mut scratch = vec![0u8; int8_packed_b_bytes(&t, k, cols)];
                    let f = compile(5, move |fb, flags, a| {
                        kestrel_backends::jit::kernels::gemm::int8::emit_int8_gemm_unpacked_scratch(
                            fb,
                            flags,
                            &t,
                            a[0],
                            k,
                            a[1],
                            cols,
                            a[2],
                            cols,
                            a[4],
                            ch,
                            cols,
                            k,
                            Bias::Rows(a[3]),
                        );
                    });
                    // SAFETY: buffers as the entry point's contract asks.
                    unsafe {
                        f.call(&[
                            w.as_ptr() as usize,
                            x.as_ptr() as usize,
                            c.as_mut_ptr() as usize,
                            folded.as_ptr() as usize,
                            scratch.as_mut_ptr() as usize,
                        ])
                    };
                    c
                } else {
                    // Gemm: Y[R, N] = X[R, K] · W[K, N] with R = cols, N = ch.
                    let xr: Vec<u8> = (0..cols)
                        .flat_map(|j| (0..k).map(|q| x[q * cols + j]).collect::<Vec<_>>())
                        .collect();
                    let w_stored: Vec<i8> = if trans_b {
                        w.clone()
                    } else {
                        (0..k)
                            .flat_map(|q| (0..ch).map(|c| w[c * k + q]).collect::<Vec<_>>())
                            .collect()
                    };
                    assert_eq!(weight_sums(&w_stored, k, ch, trans_b), sums);
                    let packed = pack_int8_b(&t, &w_stored, k, ch, trans_b);
                    let mut y = vec![SENTINEL; cols * ch];
                    let f = compile(4, move |fb, flags, a| {
                        emit_int8_gemm(
                            fb,
                            flags,
                            &t,
                            a[0],
                            k,
                            a[1],
                            a[2],
                            ch,
                            cols,
                            ch,
                            k,
                            Bias::Columns(a[3]),
                        );
                    });
                    // SAFETY: buffers as the entry point's contract asks.
                    unsafe {
                        f.call(&[
                            xr.as_ptr() as usize,
                            packed.as_ptr() as usize,
                            y.as_mut_ptr() as usize,
                            folded.as_ptr() as usize,
                        ])
                    };
                    // Back to [channel, column].
                    (0..ch)
                        .flat_map(|c| (0..cols).map(|j| y[j * ch + c]).collect::<Vec<_>>())
                        .collect()
                };
                for c in 0..ch {
                    for j in 0..cols {
                        assert_eq!(
                            got[c * cols + j],
                            want(c, j),
                            "{t:?} zx {zx} trans_b {trans_b}: channel {c} column {j}"
                        );
                    }
                }
            }
        }
    }
}

/// The ISAs `kestrel compile` builds (`aot::CpuFeatures::isa`, every flag explicit) select the
/// documented route and compile it to its instruction, calling nothing: the int8 kernels as the
/// AOT path would emit them for each target and `--cpu`.
#[test]
fn aot_targets_select_their_routes() {
    use kestrel_backends::aot::{Arch, CpuFeatures};
    let full = WeightRange::Full;
    let seven = WeightRange::SevenBit;
    let cases = [
        (
            "x86_64-unknown-linux-gnu",
            "generic",
            full,
            Int8Route::WidenI16,
            "pmaddwd",
        ),
        (
            "x86_64-unknown-linux-gnu",
            "generic",
            seven,
            Int8Route::Pmaddubsw,
            "pmaddubsw",
        ),
        (
            "x86_64-unknown-linux-gnu",
            "+avx512vnni,+avx512vl",
            full,
            Int8Route::Vnni,
            "vpdpbusd",
        ),
        (
            "aarch64-unknown-linux-gnu",
            "generic",
            full,
            Int8Route::WidenI16,
            "smull",
        ),
        (
            "aarch64-unknown-linux-gnu",
            "+dotprod",
            full,
            Int8Route::Sdot,
            "sdot",
        ),
        (
            "aarch64-unknown-linux-gnu",
            "+dotprod,+i8mm",
            full,
            Int8Route::Usdot,
            "usdot",
        ),
        (
            "riscv64gc-unknown-linux-gnu",
            "generic",
            full,
            Int8Route::LaneWise,
            "mul",
        ),
        (
            "riscv64gc-unknown-linux-gnu",
            "+v",
            full,
            Int8Route::LaneWise,
            "vmul",
        ),
    ];
    for (triple, cpu, weights, route, insn) in cases {
        let arch = Arch::from_triple(triple).unwrap();
        let isa = CpuFeatures::parse(arch, Some(cpu)).unwrap().isa().unwrap();
        for signed in [SignedOperand::A, SignedOperand::B] {
            let (tile, vcode, relocs) = compile_for_isa(&*isa, signed, weights);
            let what = format!("{triple} --cpu {cpu} {signed:?} {weights:?}");
            assert_eq!(tile.route, route, "{what}");
            assert_eq!(relocs, 0, "{what}");
            assert_eq!(count_calls(&vcode), 0, "{what}:\n{vcode}");
            assert!(vcode.contains(insn), "{what} lacks {insn}:\n{vcode}");
        }
    }
}
