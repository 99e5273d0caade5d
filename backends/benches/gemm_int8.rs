//! Int8 GEMM benchmark (single thread, thread CPU time, median (best) of 15 runs after a
//! warm-up): for each x86-64 route that runs here (VNNI if the CPU has it; `pmaddubsw` with
//! 7-bit weights and the widening route with VNNI switched off in `IsaFlags`), the route's peak
//! (a register-only loop of 12 independent dot-product steps), the micro-kernel on L1-resident
//! operands (one tile, k = 1024, repeated) and a 256×256×256 GEMM (u8 X in A, s8 W packed at
//! compile time in B; and the convolution role: s8 W in A, u8 B packed at run time).
//!
//! Cycles are estimated from the f32 FMA peak measured in the same run (a register-only loop
//! of 12 independent `f32x4` FMA chains, which runs 16 FLOP/cycle on the two 128-bit FMA
//! pipes of the CPUs this was written for; docs/CRANELIFT.md): clock = FMA peak / 16.
//! Percentages are given against the route's nominal dot-product peak (`vpdpbusd` xmm: 64
//! ops/cycle; `pmaddubsw` + `pmaddwd` + `paddd`: 32) at that clock, and against the route's
//! peak measured by its own register-only loop. 1 MAC = 2 ops.
//!
//! Run: `cargo bench -p kestrel-backends --bench gemm_int8`.

#[path = "../tests/gemm_harness/mod.rs"]
mod gemm_harness;

use cranelift_codegen::ir::immediates::Ieee32;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;
use gemm_harness::{compile, host_isa, time_runs, Compiled};
use kestrel_backends::jit::isa::IsaFlags;
use kestrel_backends::jit::kernels::gemm::int8::{
    emit_int8_gemm, emit_int8_gemm_unpacked_scratch, int8_packed_b_bytes, pack_int8_b, Int8Route,
    Int8Tile, SignedOperand, WeightRange,
};
use kestrel_backends::jit::kernels::gemm::tile::Tile;
use kestrel_backends::jit::kernels::gemm::Bias;

/// Emits `for _ in 0..count { body }` with `count` an I64 value ≥ 1.
fn repeat(fb: &mut FunctionBuilder, count: Value, body: impl FnOnce(&mut FunctionBuilder)) {
    let v = fb.declare_var(types::I64);
    fb.def_var(v, count);
    let blk = fb.create_block();
    let exit = fb.create_block();
    fb.ins().jump(blk, &[]);
    fb.switch_to_block(blk);
    body(fb);
    let n = fb.use_var(v);
    let n1 = fb.ins().iadd_imm_s(n, -1);
    fb.def_var(v, n1);
    fb.ins().brif(n1, blk, &[], exit, &[]);
    fb.seal_block(blk);
    fb.switch_to_block(exit);
    fb.seal_block(exit);
}

const ACC: usize = 12;

/// Register-only loop: 12 independent f32x4 accumulators, 2 FMAs each per iteration; FLOP per
/// iteration.
fn fma_peak_kernel() -> (Compiled, f64) {
    let f = compile(2, |fb, _flags, p| {
        let x = fb.ins().f32const(Ieee32::with_float(1.000_000_1));
        let x = fb.ins().splat(types::F32X4, x);
        let y = fb.ins().f32const(Ieee32::with_float(0.999_999_9));
        let y = fb.ins().splat(types::F32X4, y);
        let acc: Vec<_> = (0..ACC)
            .map(|_| {
                let v = fb.declare_var(types::F32X4);
                fb.def_var(v, y);
                v
            })
            .collect();
        repeat(fb, p[0], |fb| {
            for _ in 0..2 {
                for &a in &acc {
                    let s = fb.use_var(a);
                    let r = fb.ins().fma(s, y, x);
                    fb.def_var(a, r);
                }
            }
        });
        for (i, &a) in acc.iter().enumerate() {
            let s = fb.use_var(a);
            fb.ins().store(MemFlagsData::new(), s, p[1], 16 * i as i32);
        }
    });
    (f, (ACC * 2 * 8) as f64)
}

/// Register-only loop of the tile's own step (`Tile::mul_add` on constant operands), 12
/// independent i32x4 accumulators, 2 steps each per iteration; int8 ops per iteration.
fn route_peak_kernel(flags: IsaFlags, tile: Int8Tile) -> (Compiled, f64) {
    let f = compile(2, move |fb, _host, p| {
        let a = fb.ins().iconst(types::I32, 0x0305_0709);
        let a = fb.ins().splat(types::I32X4, a);
        let little = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        let b = fb.ins().bitcast(tile.b_vector(), little, a);
        // The A form of the step: i16 halves for the widening route, else the i8x16 broadcast.
        let a_ty = if tile.route == Int8Route::WidenI16 {
            types::I16X8
        } else {
            types::I8X16
        };
        let av = fb.ins().bitcast(a_ty, little, a);
        let bp = tile.prepare_b(fb, &flags, b);
        let zero = fb.ins().iconst(types::I32, 0);
        let zero = fb.ins().splat(types::I32X4, zero);
        let acc: Vec<_> = (0..ACC)
            .map(|_| {
                let v = fb.declare_var(types::I32X4);
                fb.def_var(v, zero);
                v
            })
            .collect();
        repeat(fb, p[0], |fb| {
            for _ in 0..2 {
                for &v in &acc {
                    let s = fb.use_var(v);
                    let r = tile.mul_add(fb, &flags, [av; 4], bp, s);
                    fb.def_var(v, r);
                }
            }
        });
        for (i, &v) in acc.iter().enumerate() {
            let s = fb.use_var(v);
            fb.ins().store(MemFlagsData::new(), s, p[1], 16 * i as i32);
        }
    });
    (f, (ACC * 2 * 4 * 4 * 2) as f64)
}

fn bytes(len: usize, seed: u64, seven_bit: bool) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = (s >> 33) as u8;
            if seven_bit {
                ((r % 129) as i32 - 64) as i8 as u8
            } else {
                r
            }
        })
        .collect()
}

fn main() {
    let (fma_f, flops_per_iter) = fma_peak_kernel();
    let iters = 20_000_000usize;
    let mut sink = vec![0u8; 16 * ACC];
    let (t, _) = time_runs(|| unsafe { fma_f.call(&[iters, sink.as_mut_ptr() as usize]) });
    let fma_peak = flops_per_iter * iters as f64 / t;
    let clock = fma_peak / 16.0;
    println!("f32x4 FMA peak (register-only, 12 acc): {:.1} GFLOP/s → clock estimate {:.2} GHz (16 FLOP/cycle)", fma_peak / 1e9, clock / 1e9);
    println!("GOP/s median (best) of 15 runs, thread CPU time; 1 MAC = 2 ops");

    let host = IsaFlags::from_isa(&*host_isa());
    let no_vnni = IsaFlags {
        has_avx512vnni: false,
        has_avx_vnni: false,
        ..host
    };
    let mut routes = Vec::new();
    if host.use_vnni() {
        routes.push((host, WeightRange::Full, 64.0));
    }
    if host.is_x86 {
        routes.push((no_vnni, WeightRange::SevenBit, 32.0));
        routes.push((no_vnni, WeightRange::Full, 0.0));
    }
    for (flags, weights, nominal) in routes {
        let tile_b = Int8Tile::select(&flags, SignedOperand::B, weights);
        let seven = weights == WeightRange::SevenBit;
        println!(
            "\nroute {:?}, tile {}×{}{}",
            tile_b.route,
            tile_b.rows,
            tile_b.cols,
            if nominal > 0.0 {
                format!(
                    ", nominal peak {nominal} ops/cycle = {:.1} GOP/s",
                    nominal * clock / 1e9
                )
            } else {
                String::new()
            }
        );
        let (pf, ops_per_iter) = route_peak_kernel(flags, tile_b);
        let (t, tmin) = time_runs(|| unsafe { pf.call(&[iters / 2, sink.as_mut_ptr() as usize]) });
        let ops = ops_per_iter * (iters / 2) as f64;
        let (peak, peak_best) = (ops / t, ops / tmin);
        let report = |name: &str, ops: f64, (t, tmin): (f64, f64)| {
            let (r, rb) = (ops / t, ops / tmin);
            let nom = if nominal > 0.0 {
                format!(
                    " = {:5.1}% ({:5.1}%) of nominal",
                    100.0 * r / (nominal * clock),
                    100.0 * rb / (nominal * clock)
                )
            } else {
                String::new()
            };
            println!(
                "  {name:<40} {:6.1} ({:6.1}) GOP/s, {:5.1} ops/cycle{nom}, {:5.1}% of the measured route peak",
                r / 1e9,
                rb / 1e9,
                r / clock,
                100.0 * r / peak,
            );
        };
        report(
            "route peak (register-only, 12 acc)",
            1.0,
            (1.0 / peak, 1.0 / peak_best),
        );

        // Micro-kernel: one tile, k = 1024, operands in L1, repeated.
        {
            let (m, n, k) = (tile_b.rows, tile_b.cols, 1024);
            let a = bytes(m * k, 1, false);
            let b = pack_int8_b(&tile_b, &bytes(k * n, 2, seven), k, n, false);
            let mut c = vec![0i32; m * n];
            let f = compile(4, |fb, _host, p| {
                let (pa, pb, pc) = (p[0], p[1], p[2]);
                repeat(fb, p[3], |fb| {
                    emit_int8_gemm(fb, &flags, &tile_b, pa, k, pb, pc, n, m, n, k, Bias::None);
                });
            });
            let reps = 20_000usize;
            let args = [
                a.as_ptr() as usize,
                b.as_ptr() as usize,
                c.as_mut_ptr() as usize,
                reps,
            ];
            let t = time_runs(|| unsafe { f.call(&args) });
            report(
                &format!("micro-kernel {m}x{n}, k={k} (L1)"),
                2.0 * (m * n * k * reps) as f64,
                t,
            );
        }

        // 256³ in both operand roles.
        let s = 256usize;
        let (m, n, k) = (s, s, s);
        for signed in [SignedOperand::B, SignedOperand::A] {
            let tile = Int8Tile::select(&flags, signed, weights);
            let a = bytes(m * k, 3, seven && signed == SignedOperand::A);
            let bm = bytes(k * n, 4, seven && signed == SignedOperand::B);
            let bp = pack_int8_b(&tile, &bm, k, n, false);
            let bias = vec![7i32; n.max(m)];
            let mut c = vec![0i32; m * n];
            let mut scratch = vec![0u8; int8_packed_b_bytes(&tile, k, n)];
            let reps = 20usize;
            let f = compile(6, |fb, _host, p| {
                let (pa, pb, pc, pbias, ps) = (p[0], p[1], p[2], p[3], p[4]);
                repeat(fb, p[5], |fb| match signed {
                    SignedOperand::B => emit_int8_gemm(
                        fb,
                        &flags,
                        &tile,
                        pa,
                        k,
                        pb,
                        pc,
                        n,
                        m,
                        n,
                        k,
                        Bias::Columns(pbias),
                    ),
                    SignedOperand::A => emit_int8_gemm_unpacked_scratch(
                        fb,
                        &flags,
                        &tile,
                        pa,
                        k,
                        pb,
                        n,
                        pc,
                        n,
                        ps,
                        m,
                        n,
                        k,
                        Bias::Rows(pbias),
                    ),
                });
            });
            let b_ptr = match signed {
                SignedOperand::B => bp.as_ptr(),
                SignedOperand::A => bm.as_ptr(),
            };
            let args = [
                a.as_ptr() as usize,
                b_ptr as usize,
                c.as_mut_ptr() as usize,
                bias.as_ptr() as usize,
                scratch.as_mut_ptr() as usize,
                reps,
            ];
            let t = time_runs(|| unsafe { f.call(&args) });
            let name = match signed {
                SignedOperand::B => {
                    format!("GEMM 256³ u8·s8, W packed ({}×{})", tile.rows, tile.cols)
                }
                SignedOperand::A => format!(
                    "GEMM 256³ s8·u8, run-time pack ({}×{})",
                    tile.rows, tile.cols
                ),
            };
            report(&name, 2.0 * (m * n * k * reps) as f64, t);
        }
    }
}
