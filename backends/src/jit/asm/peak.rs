//! The f32 FMA peak of a full-width ISA, and the u8·s8 `vpdpbusd` peak of a VNNI one, measured
//! by assembled register-only loops of independent `vfmadd231ps` or `vpdpbusd` (the 512-bit clock can differ from the 128-bit one, so this peak is
//! measured, never derived from [`crate::jit::peak`]'s). The micro-kernels are reported against
//! it.

use super::host::HostCode;
use super::int8_tile::Int8Isa;
use super::{AsmError, WideIsa};
use crate::jit::error::JitError;
use iced_x86::code_asm::*;
use std::time::Instant;

/// Independent accumulators of the loop: enough to cover the FMA latency on two ports.
fn accumulators(isa: WideIsa) -> usize {
    match isa {
        WideIsa::Avx512F => 24,
        WideIsa::Avx2Fma => 12,
    }
}

/// The loop `fn(iterations)`: each iteration one `vpdpbusd` per accumulator.
pub fn assemble_int8(isa: Int8Isa) -> Result<Vec<u8>, AsmError> {
    let what = format!("{} peak loop", isa.name());
    let enc = |e| AsmError::encode(&what, e);
    let mut a = CodeAssembler::new(64).map_err(enc)?;
    let n = accumulators(isa.vectors());
    let mut top = a.create_label();
    match isa {
        Int8Isa::Avx512Vnni => {
            let z = super::f32_tile::zmm_registers();
            for r in z.iter().take(n).chain([&z[30], &z[31]]) {
                a.vpxord(*r, *r, *r).map_err(enc)?;
            }
            a.set_label(&mut top).map_err(enc)?;
            for r in z.iter().take(n) {
                a.vpdpbusd(*r, z[30], z[31]).map_err(enc)?;
            }
        }
        Int8Isa::AvxVnni => {
            let y = super::f32_tile::ymm_registers();
            for r in y.iter().take(n).chain([&y[14], &y[15]]) {
                a.vxorps(*r, *r, *r).map_err(enc)?;
            }
            a.set_label(&mut top).map_err(enc)?;
            for r in y.iter().take(n) {
                a.vpdpbusd(*r, y[14], y[15]).map_err(enc)?;
            }
        }
    }
    a.dec(rdi).map_err(enc)?;
    a.jnz(top).map_err(enc)?;
    a.vzeroupper().map_err(enc)?;
    a.ret().map_err(enc)?;
    a.assemble(0).map_err(enc)
}

/// The loop `fn(iterations)`: each iteration one `vfmadd231ps` per accumulator.
pub fn assemble(isa: WideIsa) -> Result<Vec<u8>, AsmError> {
    let what = format!("{} peak loop", isa.name());
    let enc = |e| AsmError::encode(&what, e);
    let mut a = CodeAssembler::new(64).map_err(enc)?;
    let n = accumulators(isa);
    let mut top = a.create_label();
    match isa {
        WideIsa::Avx512F => {
            let z = super::f32_tile::zmm_registers();
            for r in z.iter().take(n).chain([&z[30], &z[31]]) {
                a.vpxord(*r, *r, *r).map_err(enc)?;
            }
            a.set_label(&mut top).map_err(enc)?;
            for r in z.iter().take(n) {
                a.vfmadd231ps(*r, z[30], z[31]).map_err(enc)?;
            }
        }
        WideIsa::Avx2Fma => {
            let y = super::f32_tile::ymm_registers();
            for r in y.iter().take(n).chain([&y[14], &y[15]]) {
                a.vxorps(*r, *r, *r).map_err(enc)?;
            }
            a.set_label(&mut top).map_err(enc)?;
            for r in y.iter().take(n) {
                a.vfmadd231ps(*r, y[14], y[15]).map_err(enc)?;
            }
        }
    }
    a.dec(rdi).map_err(enc)?;
    a.jnz(top).map_err(enc)?;
    a.vzeroupper().map_err(enc)?;
    a.ret().map_err(enc)?;
    a.assemble(0).map_err(enc)
}

/// The peak loop of `isa` placed on the host: call [`PeakLoop::run`] with an iteration count.
pub struct PeakLoop {
    code: HostCode,
    /// FLOPs of one iteration.
    pub flops_per_iteration: f64,
}

impl PeakLoop {
    /// The f32 loop; the caller checks the host has `isa`.
    pub fn new(isa: WideIsa) -> Result<PeakLoop, JitError> {
        Ok(PeakLoop {
            code: HostCode::new(&assemble(isa)?, 1)?,
            flops_per_iteration: (2 * accumulators(isa) * isa.lanes()) as f64,
        })
    }

    /// The `vpdpbusd` loop, its "flops" counting each u8·s8 multiply and add (8 per i32 lane);
    /// the caller checks the host has `isa`.
    pub fn new_int8(isa: Int8Isa) -> Result<PeakLoop, JitError> {
        Ok(PeakLoop {
            code: HostCode::new(&assemble_int8(isa)?, 1)?,
            flops_per_iteration: (8 * accumulators(isa.vectors()) * isa.lanes()) as f64,
        })
    }

    /// Runs `iterations` (≥ 1) iterations.
    pub fn run(&self, iterations: u64) {
        // SAFETY: the loop takes one i64 argument and touches only vector registers and rdi.
        let f: extern "sysv64" fn(u64) = unsafe { std::mem::transmute(self.code.entry()) };
        f(iterations.max(1));
    }
}

/// The single-thread f32 FMA peak of `isa` on this machine in GFLOP/s: the median of `runs`
/// wall-clock-timed runs of about 5 ms each (a loaded machine lowers it; time [`PeakLoop`] with
/// thread CPU time there). The caller checks the host has `isa`.
pub fn peak_gflops(isa: WideIsa, runs: usize) -> Result<f64, JitError> {
    Ok(median_rate(&PeakLoop::new(isa)?, runs))
}

/// [`peak_gflops`] of the `vpdpbusd` loop of `isa`, in G ops/s (8 per i32 lane and
/// instruction: each u8·s8 multiply and each add).
pub fn peak_gops_int8(isa: Int8Isa, runs: usize) -> Result<f64, JitError> {
    Ok(median_rate(&PeakLoop::new_int8(isa)?, runs))
}

/// The median rate of `runs` timed runs of `l` of about 5 ms each.
fn median_rate(l: &PeakLoop, runs: usize) -> f64 {
    let mut iters: u64 = 100_000;
    loop {
        let t = Instant::now();
        l.run(iters);
        if t.elapsed().as_secs_f64() > 0.005 || iters > 1 << 32 {
            break;
        }
        iters *= 4;
    }
    let mut rates: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            l.run(iters);
            l.flops_per_iteration * iters as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}
