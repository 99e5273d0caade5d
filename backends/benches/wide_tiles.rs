//! The assembled full-width tiles (`jit::asm`) against their ISA's peak, in one run: the
//! register-only loop of each ISA the host has (f32 FMA: AVX2+FMA, AVX-512F; u8·s8 `vpdpbusd`:
//! AVX-VNNI, AVX512_VNNI), and its production tile on L1-resident operands (k = 128: a 16 KB panel of B for 32 columns, repeated), single thread, both timed in thread CPU
//! time (median of 15 after a warm-up), so another process on the machine does not skew the
//! ratio. Run: `cargo bench -p kestrel-backends --bench wide_tiles` (`TILE=6x64` times another
//! AVX-512 tile shape instead of the production 14×32).

#[path = "../tests/gemm_harness/mod.rs"]
mod gemm_harness;

use gemm_harness::time_runs;
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
        let peak_loop = peak::PeakLoop::new(isa).expect("peak loop");
        const ITERS: u64 = 2_000_000;
        let peak = peak_loop.flops_per_iteration * ITERS as f64
            / time_runs(|| peak_loop.run(ITERS)).0
            / 1e9;
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
        let peak_loop = peak::PeakLoop::new_int8(isa).expect("peak loop");
        const ITERS: u64 = 2_000_000;
        let peak = peak_loop.flops_per_iteration * ITERS as f64
            / time_runs(|| peak_loop.run(ITERS)).0
            / 1e9;
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
        std::hint::black_box(&c);
    }
}
