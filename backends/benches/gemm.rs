//! GEMM emitter benchmark (single thread, thread CPU time, median of 9 runs after a warm-up):
//! the 128-bit FMA peak of a register-only JIT loop, the 4×8 micro-kernel on L1-resident operands
//! (m=4, n=8, k=256), and whole GEMMs. Run: `cargo bench -p kestrel-backends --bench gemm`.

#[path = "../tests/gemm_harness/mod.rs"]
mod gemm_harness;

use cranelift_codegen::ir::immediates::Ieee32;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;
use gemm_harness::{compile, time_runs, Compiled};
use kestrel_backends::jit::kernels::gemm;
use kestrel_ir::testing::{Lcg, Random};

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

/// Register-only loop: `ACC` independent f32x4 accumulators, 2 FMAs each per iteration.
fn peak_kernel() -> (Compiled, f64) {
    const ACC: usize = 12;
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
                    // acc = acc·y + x: the accumulator is the tied multiplicand, so no copies.
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

fn rand_vec(len: usize, seed: u64) -> Vec<f32> {
    Lcg::from_state(seed).f32s(len, -0.5, 0.5)
}

fn main() {
    let (peak_f, flops_per_iter) = peak_kernel();
    let iters = 20_000_000usize;
    let mut sink = vec![0f32; 64];
    let (t, tmin) = time_runs(|| unsafe { peak_f.call(&[iters, sink.as_mut_ptr() as usize]) });
    let peak = flops_per_iter * iters as f64 / t / 1e9;
    let peak_best = flops_per_iter * iters as f64 / tmin / 1e9;
    println!("GFLOP/s: median (best) of 15 runs, thread CPU time");
    println!("128-bit FMA peak (register-only, 12 acc): {peak:6.1} ({peak_best:6.1}) GFLOP/s");
    if std::env::var_os("GEMM_BENCH_VCODE").is_some() {
        println!("{}", peak_f.vcode);
    }
    println!("  (nominal 16 FLOP/cycle × 3.66 GHz = 58.6 GFLOP/s)");
    // Percentages against the measured peak: median vs median, best vs best.
    let report = |name: &str, flop: f64, (t, tmin): (f64, f64)| {
        let (gf, gf_best) = (flop / t / 1e9, flop / tmin / 1e9);
        println!(
            "{name:<44} {gf:6.1} ({gf_best:6.1}) GFLOP/s = {:5.1}% ({:5.1}%) of the peak",
            100.0 * gf / peak,
            100.0 * gf_best / peak_best,
        );
    };

    // Micro-kernel: C[4×8] = A[4×256] · Bpanel[256×8], all in L1, repeated.
    {
        let (m, n, k) = (4, 8, 256);
        let a = rand_vec(m * k, 1);
        let b = gemm::pack_b(&rand_vec(k * n, 2), k, n, false);
        let mut c = vec![0f32; m * n];
        let f = compile(4, |fb, flags, p| {
            let (pa, pb, pc) = (p[0], p[1], p[2]);
            repeat(fb, p[3], |fb| {
                gemm::emit_gemm(fb, flags, pa, k, pb, pc, n, m, n, k, None);
            });
        });
        let reps = 100_000usize;
        let args = [
            a.as_ptr() as usize,
            b.data.as_ptr() as usize,
            c.as_mut_ptr() as usize,
            reps,
        ];
        let t = time_runs(|| unsafe { f.call(&args) });
        report(
            "micro-kernel 4x8, k=256 (L1)",
            2.0 * (m * n * k * reps) as f64,
            t,
        );
    }

    for &s in &[256usize, 512] {
        let (m, n, k) = (s, s, s);
        let a = rand_vec(m * k, 3);
        let bm = rand_vec(k * n, 4);
        let bp = gemm::pack_b(&bm, k, n, false);
        let bias = rand_vec(n, 5);
        let mut c = vec![0f32; m * n];
        let mut scratch = vec![0u8; gemm::gemm_unpacked_scratch_bytes(m, n, k)];
        let reps = (1 << 27) / (m * n * k) + 1;
        let kinds: [(&str, u8); 3] = [
            ("packed B (emit_gemm)", 0),
            ("B in place (emit_gemm_unpacked)", 1),
            ("B packed at run time (.._scratch)", 2),
        ];
        for (name, kind) in kinds {
            let f = compile(6, |fb, flags, p| {
                let (pa, pb, pc, pbias, ps) = (p[0], p[1], p[2], p[3], p[4]);
                let epi = Some(pbias);
                repeat(fb, p[5], |fb| match kind {
                    0 => gemm::emit_gemm(fb, flags, pa, k, pb, pc, n, m, n, k, epi),
                    1 => gemm::emit_gemm_unpacked(fb, flags, pa, k, pb, n, pc, n, m, n, k, epi),
                    _ => gemm::emit_gemm_unpacked_scratch(
                        fb, flags, pa, k, pb, n, pc, n, ps, m, n, k, epi,
                    ),
                });
            });
            let b_ptr = if kind == 0 {
                bp.data.as_ptr()
            } else {
                bm.as_ptr()
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
            report(
                &format!("GEMM {s}³ {name}"),
                2.0 * (m * n * k * reps) as f64,
                t,
            );
        }
    }
}
