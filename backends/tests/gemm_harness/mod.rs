//! A tiny JIT harness for the GEMM emitter: one `JITModule` per function, host ISA, `opt_level=none`
//! (the setting the kernels are designed for), functions `extern "C" fn(i64 × nparams)`.
#![allow(dead_code)]

use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Value};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use kestrel_backends::jit::isa::IsaFlags;

/// The host ISA with `opt_level=none`.
pub fn host_isa() -> OwnedTargetIsa {
    let mut fl = settings::builder();
    fl.set("opt_level", "none").unwrap();
    fl.set("is_pic", "false").unwrap();
    cranelift_native::builder()
        .unwrap()
        .finish(settings::Flags::new(fl))
        .unwrap()
}

/// A compiled function; the module is kept alive (and leaked on drop, like all JIT code here).
pub struct Compiled {
    pub module: JITModule,
    pub ptr: *const u8,
    /// Cranelift's VCode listing (disassembly) of the function.
    pub vcode: String,
    /// Number of relocations (calls or symbol references) in the machine code.
    pub relocs: usize,
    pub code_len: usize,
}

/// Compiles `fn(p0, …, p{nparams-1}: i64)` whose body `build` emits at the entry block (given the
/// ISA flags and the parameters); the harness appends the `return`.
pub fn compile(
    nparams: usize,
    build: impl FnOnce(&mut FunctionBuilder, &IsaFlags, &[Value]),
) -> Compiled {
    let isa = host_isa();
    let flags = IsaFlags::from_isa(&*isa);
    let mut module = JITModule::new(JITBuilder::with_isa(isa.clone(), default_libcall_names()));
    let mut sig = module.make_signature();
    for _ in 0..nparams {
        sig.params.push(AbiParam::new(types::I64));
    }
    let id = module.declare_function("f", Linkage::Local, &sig).unwrap();
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.set_disasm(true);
    let mut fbc = FunctionBuilderContext::new();
    {
        let mut fb = FunctionBuilder::new(&mut ctx.func, &mut fbc);
        let entry = fb.create_block();
        fb.append_block_params_for_function_params(entry);
        fb.switch_to_block(entry);
        fb.seal_block(entry);
        let params = fb.block_params(entry).to_vec();
        build(&mut fb, &flags, &params);
        fb.ins().return_(&[]);
        fb.seal_all_blocks();
        fb.finalize(isa.frontend_config());
    }
    module.define_function(id, &mut ctx).unwrap();
    let cc = ctx.compiled_code().unwrap();
    let vcode = cc.vcode.clone().unwrap_or_default();
    let relocs = cc.buffer.relocs().len();
    let code_len = cc.code_buffer().len();
    module.clear_context(&mut ctx);
    module.finalize_definitions().unwrap();
    let ptr = module.get_finalized_function(id);
    Compiled {
        module,
        ptr,
        vcode,
        relocs,
        code_len,
    }
}

impl Compiled {
    /// Calls the function with up to 6 pointer-sized arguments (missing ones are 0).
    ///
    /// # Safety
    /// The arguments must satisfy the contract of the emitted code.
    pub unsafe fn call(&self, args: &[usize]) {
        let mut a = [0usize; 6];
        a[..args.len()].copy_from_slice(args);
        let f: extern "C" fn(usize, usize, usize, usize, usize, usize) =
            std::mem::transmute(self.ptr);
        f(a[0], a[1], a[2], a[3], a[4], a[5]);
    }
}

/// Thread CPU time in seconds (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`; libc is linked by std).
pub fn thread_cpu_seconds() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid timespec; the clock id exists on Linux.
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

/// (median, minimum) thread-CPU seconds of one `run()` over 15 timed repetitions after a
/// warm-up (the benchmarks' timer: other processes on the machine do not inflate it).
pub fn time_runs(mut run: impl FnMut()) -> (f64, f64) {
    run();
    let mut t: Vec<f64> = (0..15)
        .map(|_| {
            let s = thread_cpu_seconds();
            run();
            thread_cpu_seconds() - s
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[7], t[0])
}
