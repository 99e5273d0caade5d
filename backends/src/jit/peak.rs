//! The machine's 128-bit f32 FMA peak, measured with generated code: a register-only loop of
//! independent `F32X4` multiply-adds (12 accumulators, enough to cover the FMA latency). Kernel
//! efficiency is reported against this number (`kestrel bench --layers`, the GEMM benchmark).

use super::error::JitError;
use super::isa::IsaFlags;
use super::model::host_isa;
use cranelift_codegen::ir::immediates::Ieee32;
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, MemFlagsData, UserFuncName};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};
use std::time::Instant;

const ACCUMULATORS: usize = 12;
/// FLOPs of one loop iteration: 2 rounds × accumulators × 4 lanes × 2 (multiply and add).
const FLOPS_PER_ITER: f64 = (2 * ACCUMULATORS * 4 * 2) as f64;

/// Measures the single-thread 128-bit FMA peak in GFLOP/s: the median of `runs` timed runs of
/// about 5 ms each, after one warm-up. Without FMA the loop uses `fmul` + `fadd`, which is then
/// the relevant peak.
pub fn fma_peak_gflops(runs: usize) -> Result<f64, JitError> {
    let peak_error = |reason: String| JitError::Codegen {
        context: " (peak kernel)".into(),
        reason,
    };
    let isa = host_isa()?;
    let flags = IsaFlags::from_isa(&*isa);
    let mut module = JITModule::new(JITBuilder::with_isa(
        isa,
        cranelift_module::default_libcall_names(),
    ));
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::I64));
    let id = module
        .declare_function("kestrel_peak", Linkage::Local, &sig)
        .map_err(|e| peak_error(e.to_string()))?;
    let fcfg = module.isa().frontend_config();
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut fb = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = fb.create_block();
        fb.append_block_params_for_function_params(entry);
        fb.switch_to_block(entry);
        let (count, sink) = (fb.block_params(entry)[0], fb.block_params(entry)[1]);
        let x = fb.ins().f32const(Ieee32::with_float(1.000_000_1));
        let x = fb.ins().splat(types::F32X4, x);
        let y = fb.ins().f32const(Ieee32::with_float(0.999_999_9));
        let y = fb.ins().splat(types::F32X4, y);
        let acc: Vec<_> = (0..ACCUMULATORS)
            .map(|_| {
                let v = fb.declare_var(types::F32X4);
                fb.def_var(v, y);
                v
            })
            .collect();
        let n = fb.declare_var(types::I64);
        fb.def_var(n, count);
        let body = fb.create_block();
        let exit = fb.create_block();
        fb.ins().jump(body, &[]);
        fb.switch_to_block(body);
        for _ in 0..2 {
            for &a in &acc {
                let s = fb.use_var(a);
                let r = if flags.use_fma() {
                    fb.ins().fma(s, y, x)
                } else {
                    let m = fb.ins().fmul(s, y);
                    fb.ins().fadd(m, x)
                };
                fb.def_var(a, r);
            }
        }
        let left = fb.use_var(n);
        let left = fb.ins().iadd_imm_s(left, -1);
        fb.def_var(n, left);
        fb.ins().brif(left, body, &[], exit, &[]);
        fb.switch_to_block(exit);
        for (i, &a) in acc.iter().enumerate() {
            let s = fb.use_var(a);
            fb.ins()
                .store(MemFlagsData::new(), s, sink, (16 * i) as i32);
        }
        fb.ins().return_(&[]);
        fb.seal_all_blocks();
        fb.finalize(fcfg);
    }
    module
        .define_function(id, &mut ctx)
        .map_err(|e| peak_error(format!("{e:?}")))?;
    module
        .finalize_definitions()
        .map_err(|e| peak_error(e.to_string()))?;
    let ptr = module.get_finalized_function(id);
    // SAFETY: declared above as (i64, i64) -> (); it writes 12 vectors at `sink`.
    let f: extern "C" fn(u64, *mut f32) = unsafe { std::mem::transmute(ptr) };
    let mut sink = [0f32; 4 * ACCUMULATORS];
    // Calibrate the iteration count to about 5 ms.
    let mut iters: u64 = 100_000;
    loop {
        let t = Instant::now();
        f(iters, sink.as_mut_ptr());
        let s = t.elapsed().as_secs_f64();
        if s > 0.005 || iters > 1 << 32 {
            break;
        }
        iters *= 4;
    }
    let mut rates: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f(iters, sink.as_mut_ptr());
            FLOPS_PER_ITER * iters as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    // SAFETY: keeps the module (and `f`'s code) alive until here.
    unsafe { module.free_memory() };
    Ok(rates[rates.len() / 2])
}
