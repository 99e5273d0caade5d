//! The assembled full-width tiles (`jit::asm`) against their ISA's peak, in one run: the
//! register-only loop of each ISA the host has (f32 FMA: AVX2+FMA, AVX-512F; u8·s8 `vpdpbusd`:
//! AVX-VNNI, AVX512_VNNI; the AMX `tdpbusd` tile against the widest `vpdpbusd` peak), and its production tile on L1-resident operands (k = 128: a 16 KB panel of B for 32 columns, repeated), single thread, both timed in thread CPU
//! time (median of 15 after a warm-up), so another process on the machine does not skew the
//! ratio. Run: `cargo bench -p kestrel-backends --bench wide_tiles` (`TILE=6x64` times another
//! AVX-512 tile shape instead of the production 14×32).

#[path = "../tests/gemm_harness/mod.rs"]
mod gemm_harness;

use gemm_harness::time_runs;
use kestrel_backends::jit::asm::amx_tile::{AmxTileShape, COLS, K_STEP, ROWS};
use kestrel_backends::jit::asm::f32_tile::{F32TileShape, Start};
use kestrel_backends::jit::asm::host::HostCode;
use kestrel_backends::jit::asm::int8_tile::{Int8Isa, Int8TileShape};
use kestrel_backends::jit::asm::{peak, WideIsa};
use kestrel_backends::jit::isa::IsaFlags;

fn main() {
    let host = kestrel_backends::jit::model::host_isa().expect("host ISA");
    let flags = IsaFlags::from_isa(&*host);
    let p128 = kestrel_backends::jit::peak::fma_peak_gflops(7).expect("128-bit peak");
    println!("128-bit FMA peak (Cranelift loop): {p128:.1} GFLOP/s");
    println!("| ISA | peak GFLOP/s | tile | tile GFLOP/s | of peak |\n|---|---:|---|---:|---:|");
    for (isa, has) in [
        (
            WideIsa::Avx2Fma,
            flags.is_x86 && flags.has_avx2 && flags.has_fma,
        ),
        (WideIsa::Avx512F, flags.is_x86 && flags.has_avx512f),
    ] {
        if !has {
            println!("| {} | skipped: not on this host | | | |", isa.name());
            continue;
        }
        let peak = measured_peak(&peak::PeakLoop::new(isa).expect("peak loop"));
        const K: usize = 128;
        const REPEAT: usize = 4000;
        let mut shape = F32TileShape::default_for(isa, K, 2 * isa.lanes(), Start::LoadC);
        if let (Ok(v), WideIsa::Avx512F) = (std::env::var("TILE"), isa) {
            let (r, c) = v.split_once('x').unwrap();
            shape.rows = r.parse().unwrap();
            shape.cols = c.parse().unwrap();
            shape.ldc_bytes = 4 * shape.cols;
        }
        let a = vec![0.5f32; shape.rows * K];
        let b = vec![0.25f32; K * shape.cols];
        let mut c = vec![0f32; shape.rows * shape.cols];
        let code = HostCode::new(&shape.assemble().expect("assembles"), 5).expect("placed");
        // SAFETY: the operands hold the tile's rows·K, K·cols and rows·cols floats.
        let f: extern "sysv64" fn(*const f32, *const f32, *mut f32, u64) =
            unsafe { std::mem::transmute(code.entry()) };
        let (s, _) = time_runs(|| {
            for _ in 0..REPEAT {
                f(a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), K as u64);
            }
        });
        let flops = (2 * shape.rows * shape.cols * K * REPEAT) as f64;
        let rate = flops / s / 1e9;
        println!(
            "| {} | {peak:.1} | {}×{} | {rate:.1} | {:.1} % |",
            isa.name(),
            shape.rows,
            shape.cols,
            100.0 * rate / peak
        );
        std::hint::black_box(&c);
    }
    let mut vnni_peak: Option<(Int8Isa, f64)> = None;
    println!("\n| ISA | vpdpbusd peak (G int8 ops/s) | tile | tile (G int8 ops/s) | of peak |\n|---|---:|---|---:|---:|");
    for (isa, has) in [
        (
            Int8Isa::AvxVnni,
            flags.is_x86 && flags.has_avx2 && flags.has_avx_vnni,
        ),
        (
            Int8Isa::Avx512Vnni,
            flags.is_x86 && flags.has_avx512f && flags.has_avx512vnni,
        ),
    ] {
        if !has {
            println!("| {} | skipped: not on this host | | | |", isa.name());
            continue;
        }
        let peak = measured_peak(&peak::PeakLoop::new_int8(isa).expect("peak loop"));
        // k = 512 (128 groups): a 16 KB panel of B for 32 columns, as the f32 tile's.
        const GROUPS: usize = 128;
        const REPEAT: usize = 4000;
        let shape = Int8TileShape::default_for(isa, 4 * GROUPS, 2 * isa.lanes(), Start::LoadC);
        let a = vec![3u8; shape.rows * 4 * GROUPS];
        let b = vec![-2i8; GROUPS * 4 * shape.cols];
        let mut c = vec![0i32; shape.rows * shape.cols];
        let code = HostCode::new(&shape.assemble().expect("assembles"), 5).expect("placed");
        // SAFETY: the operands hold the tile's rows·4·GROUPS, 4·GROUPS·cols and rows·cols
        // elements.
        let f: extern "sysv64" fn(*const u8, *const i8, *mut i32, u64) =
            unsafe { std::mem::transmute(code.entry()) };
        let (s, _) = time_runs(|| {
            for _ in 0..REPEAT {
                f(a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), GROUPS as u64);
            }
        });
        let ops = (2 * shape.rows * shape.cols * 4 * GROUPS * REPEAT) as f64;
        let rate = ops / s / 1e9;
        println!(
            "| {} | {peak:.1} | {}×{} | {rate:.1} | {:.1} % |",
            isa.name(),
            shape.rows,
            shape.cols,
            100.0 * rate / peak
        );
        vnni_peak = Some((isa, peak));
        std::hint::black_box(&c);
    }
    amx(vnni_peak);
}

/// The rate of a register-only loop in G ops/s, in thread CPU time.
fn measured_peak(l: &peak::PeakLoop) -> f64 {
    const ITERS: u64 = 2_000_000;
    l.flops_per_iteration * ITERS as f64 / time_runs(|| l.run(ITERS)).0 / 1e9
}

/// The AMX tile (32×32, `tdpbusd`) on L1-resident operands (k = 512: A 16 KB, B 16 KB), its
/// rate against the widest `vpdpbusd` peak measured above (the yardstick: AMX has no
/// register-only peak of its own here).
fn amx(vnni_peak: Option<(Int8Isa, f64)>) {
    println!("\n| AMX | tile | tile (G int8 ops/s) | vpdpbusd peak (G int8 ops/s) | AMX / peak |\n|---|---|---:|---:|---:|");
    if let Err(why) = kestrel_runtime::amx::request_tile_permission() {
        println!("| amx-int8 | skipped: {why} | | | |");
        return;
    }
    const K: usize = 512;
    const REPEAT: usize = 20_000;
    let shape = AmxTileShape {
        lda_bytes: K,
        ldc_bytes: 4 * COLS,
        start: Start::LoadC,
        a_signed: false,
    };
    let a = vec![3u8; ROWS * K];
    let b = vec![2u8; K * COLS];
    let mut c = vec![0i32; ROWS * COLS];
    let code = HostCode::new(&shape.assemble().expect("assembles"), 5).expect("placed");
    // SAFETY: the operands hold 32·K, K·32 and 32·32 elements; the permission was granted.
    let f: extern "sysv64" fn(*const u8, *const u8, *mut i32, u64, u64) =
        unsafe { std::mem::transmute(code.entry()) };
    let (s, _) = time_runs(|| {
        for _ in 0..REPEAT {
            f(
                a.as_ptr(),
                b.as_ptr(),
                c.as_mut_ptr(),
                (K / K_STEP) as u64,
                0,
            );
        }
    });
    let rate = (2 * ROWS * COLS * K * REPEAT) as f64 / s / 1e9;
    let peak_code =
        HostCode::new(&AmxTileShape::assemble_peak().expect("assembles"), 1).expect("placed");
    // SAFETY: the loop touches only tile registers, its red zone and rdi.
    let peak_fn: extern "sysv64" fn(u64) = unsafe { std::mem::transmute(peak_code.entry()) };
    const ROUNDS: u64 = 200_000;
    let (ps, _) = time_runs(|| peak_fn(ROUNDS));
    let amx_peak = (2 * 4 * 16 * 16 * 64) as f64 * ROUNDS as f64 / ps / 1e9;
    println!("AMX register-only tdpbusd loop: {amx_peak:.1} G int8 ops/s; the tile reaches {:.1} % of it", 100.0 * rate / amx_peak);
    match vnni_peak {
        Some((isa, p)) if p > 0.0 => println!(
            "| amx-int8 | 32×32 | {rate:.1} | {p:.1} ({}) | {:.2}× |",
            isa.name(),
            rate / p
        ),
        _ => println!("| amx-int8 | 32×32 | {rate:.1} | no vpdpbusd on this host | |"),
    }
    std::hint::black_box(&c);
}
