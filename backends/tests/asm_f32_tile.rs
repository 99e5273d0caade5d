//! The assembled full-width f32 tiles (`jit::asm::f32_tile`): bit-identical to a sequential
//! fused multiply-add per element (what the 128-bit Cranelift tile computes) over random shapes
//! (1 to 4 vectors wide, the last one partial or not, up to the rows the register file holds),
//! leading dimensions, B packed or read in place (masked), k (0, below and above the unroll, not
//! multiples of it), every start and every finish (row bias, lower and upper bound, each or
//! not: the conv epilogue's arithmetic); nothing outside the tile written, nothing outside B read
//! (B ends at a guard page); the code holds the instruction class its ISA promises and
//! nothing position-dependent. A host without an ISA skips its cases with a printed reason.

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};
use kestrel_backends::jit::asm::f32_tile::{F32TileShape, Finish, Start, UNROLL};
use kestrel_backends::jit::asm::host::HostCode;
use kestrel_backends::jit::asm::WideIsa;
use kestrel_ir::testing::{Random, XorShift64};
use proptest::prelude::*;

mod asm_host;
use asm_host::host_wide_isas;

type Kernel = extern "sysv64" fn(*const f32, *const f32, *mut f32, u64, *const f32);

/// `len` f32 that end exactly at a page the process may not read (so reading past them faults).
struct GuardedF32 {
    base: *mut u8,
    map: usize,
    len: usize,
}

impl GuardedF32 {
    fn new(values: &[f32]) -> GuardedF32 {
        let page = 4096;
        let bytes = 4 * values.len();
        let map = bytes.div_ceil(page) * page + page;
        // SAFETY: a fresh anonymous mapping; the last page is made inaccessible.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                map,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            ) as *mut u8;
            assert!(base as isize != -1, "mmap");
            assert_eq!(
                libc::mprotect(base.add(map - page) as *mut _, page, libc::PROT_NONE),
                0
            );
            let start = base.add(map - page - bytes) as *mut f32;
            std::ptr::copy_nonoverlapping(values.as_ptr(), start, values.len());
            GuardedF32 {
                base,
                map,
                len: values.len(),
            }
        }
    }
    fn ptr(&self) -> *const f32 {
        // SAFETY: inside the mapping.
        unsafe { self.base.add(self.map - 4096 - 4 * self.len) as *const f32 }
    }
}

impl Drop for GuardedF32 {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.base as *mut _, self.map) };
    }
}

/// Runs the tile on random data and checks every element of C against the reference and every
/// element around the tile untouched. B rows are `b_step_bytes` apart; the last row ends at a
/// guard page (with `mask_b`, right after the tile's columns).
fn check(shape: F32TileShape, k: usize, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = XorShift64::seeded(seed);
    let (lda, ldc, ldb) = (
        shape.lda_bytes / 4,
        shape.ldc_bytes / 4,
        shape.b_step_bytes / 4,
    );
    let lanes = shape.isa.lanes();
    let a: Vec<f32> = (0..shape.rows * lda + k)
        .map(|_| rng.uniform_f64(-1.0, 1.0) as f32)
        .collect();
    // A packed panel is readable up to whole vectors; B in place only up to its columns.
    let last_row = if shape.mask_b {
        shape.cols
    } else {
        shape.cols.div_ceil(lanes) * lanes
    };
    let b_len = if k == 0 { 0 } else { (k - 1) * ldb + last_row };
    let b_vals: Vec<f32> = (0..b_len)
        .map(|_| rng.uniform_f64(-1.0, 1.0) as f32)
        .collect();
    let b = GuardedF32::new(&b_vals);
    let bias: Vec<f32> = (0..shape.rows.max(shape.cols))
        .map(|_| rng.uniform_f64(-1.0, 1.0) as f32)
        .collect();
    const GUARD: f32 = 12345.0;
    let c0: Vec<f32> = (0..shape.rows * ldc + 8)
        .map(|i| {
            if i < shape.rows * ldc && i % ldc < shape.cols {
                rng.uniform_f64(-1.0, 1.0) as f32
            } else {
                GUARD
            }
        })
        .collect();
    let mut c = c0.clone();
    let code = HostCode::new(&shape.assemble().unwrap(), 5).unwrap();
    // SAFETY: the kernel reads rows·lda + k floats of `a`, the rows of `b` and `bias`, writes
    // the tile of `c`.
    let f: Kernel = unsafe { std::mem::transmute(code.entry()) };
    f(a.as_ptr(), b.ptr(), c.as_mut_ptr(), k as u64, bias.as_ptr());
    for r in 0..shape.rows {
        for j in 0..ldc {
            let i = r * ldc + j;
            if j >= shape.cols {
                prop_assert_eq!(c[i], GUARD, "C[{}][{}] outside the tile written", r, j);
                continue;
            }
            let mut acc = match shape.start {
                Start::Zero => 0f32,
                Start::LoadC => c0[i],
                Start::ColumnBias => bias[j],
                Start::RowBias => bias[r],
            };
            for kk in 0..k {
                acc = a[r * lda + kk].mul_add(b_vals[kk * ldb + j], acc);
            }
            // The finish, as `interp::elementwise` clips: the bound only when the test holds.
            let f = shape.finish;
            if f.row_bias {
                acc += bias[r];
            }
            if let Some(lo) = f.lower.map(f32::from_bits) {
                if acc < lo {
                    acc = lo;
                }
            }
            if let Some(hi) = f.upper.map(f32::from_bits) {
                if acc > hi {
                    acc = hi;
                }
            }
            prop_assert_eq!(
                c[i].to_bits(),
                acc.to_bits(),
                "C[{}][{}] of {:?}, k {}",
                r,
                j,
                shape,
                k
            );
        }
    }
    for &g in &c[shape.rows * ldc..] {
        prop_assert_eq!(g, GUARD, "written past the last row");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tiles_match_sequential_fma(rows_pick in 0usize..30, vectors in 1usize..5, short in 0usize..16,
                                  k in 0usize..(5 * UNROLL + 3), lda_extra in 0usize..5,
                                  ldb_extra in 0usize..40, ldc_extra in 0usize..5,
                                  start_pick in 0usize..4, mask_b: bool, finish_pick in 0usize..8,
                                  lo in -0.5f32..0.5, span in 0f32..1.0, seed: u64) {
        let start = [Start::Zero, Start::LoadC, Start::ColumnBias, Start::RowBias][start_pick];
        let finish = Finish {
            row_bias: finish_pick & 1 != 0 && matches!(start, Start::Zero | Start::LoadC),
            lower: (finish_pick & 2 != 0).then_some(lo.to_bits()),
            upper: (finish_pick & 4 != 0).then_some((lo + span).to_bits()),
        };
        for isa in host_wide_isas() {
            // Columns that leave the last vector partial when `short` > 0.
            let cols = vectors * isa.lanes() - short % isa.lanes();
            let ragged = cols % isa.lanes() != 0;
            // As many rows as the register file holds beside the B vectors, the broadcast,
            // (AVX2, partial vector) the mask and (one vector, both bounds) the second bound.
            let both = finish.lower.is_some() && finish.upper.is_some();
            let spare = 1
                + (ragged && isa == WideIsa::Avx2Fma) as usize
                + (vectors == 1 && both) as usize;
            let most = (isa.registers() - vectors - spare) / vectors;
            let rows = 1 + rows_pick % most;
            let b_step = if mask_b { cols + ldb_extra } else { vectors * isa.lanes() };
            let shape = F32TileShape {
                isa,
                rows,
                cols,
                lda_bytes: 4 * (k + lda_extra),
                b_step_bytes: 4 * b_step,
                ldc_bytes: 4 * (cols + ldc_extra),
                start,
                mask_b,
                finish,
            };
            check(shape, k, seed)?;
        }
    }
}

#[test]
fn production_tiles_fill_the_register_file_and_larger_ones_are_refused() {
    for isa in [WideIsa::Avx2Fma, WideIsa::Avx512F] {
        let s = F32TileShape::default_for(isa, 64, 64, Start::Zero);
        assert!(s.check().is_ok(), "{s:?}");
        let too_big = F32TileShape {
            rows: s.rows + 1,
            ..s
        };
        assert!(too_big.check().is_err(), "{too_big:?}");
        let too_wide = F32TileShape {
            cols: 4 * isa.lanes() + 1,
            ..s
        };
        assert!(too_wide.check().is_err(), "{too_wide:?}");
        let short_b = F32TileShape {
            b_step_bytes: 4 * s.cols - 4,
            ..s
        };
        assert!(short_b.check().is_err(), "{short_b:?}");
    }
}

/// The code of each production tile: FMAs on the ISA's full-width registers (zmm / ymm), no
/// RIP-relative operand, no call, one return.
#[test]
fn kernels_hold_full_width_fmas_and_nothing_position_dependent() {
    for isa in [WideIsa::Avx2Fma, WideIsa::Avx512F] {
        for start in [Start::Zero, Start::LoadC] {
            let s = F32TileShape::default_for(isa, 96, 40, start);
            let code = s.assemble().unwrap();
            let mut decoder = Decoder::with_ip(64, &code, 0, DecoderOptions::NONE);
            let (mut fmas, mut rets) = (0, 0);
            for ins in &mut decoder {
                assert!(!ins.is_invalid(), "{s:?}: undecodable bytes");
                assert!(
                    !ins.is_ip_rel_memory_operand(),
                    "{s:?}: RIP-relative operand"
                );
                assert!(
                    !matches!(ins.mnemonic(), Mnemonic::Call | Mnemonic::Jmp),
                    "{s:?}: a call or an indirect jump"
                );
                if ins.mnemonic() == Mnemonic::Vfmadd231ps {
                    let reg = ins.op0_register();
                    let full = match isa {
                        WideIsa::Avx512F => reg.is_zmm(),
                        WideIsa::Avx2Fma => reg.is_ymm(),
                    };
                    assert!(full, "{s:?}: {reg:?} is not a full-width register");
                    assert_eq!(ins.op_kind(2), OpKind::Register);
                    fmas += 1;
                }
                rets += (ins.mnemonic() == Mnemonic::Ret) as usize;
                assert_ne!(
                    ins.op0_register(),
                    Register::RSP,
                    "{s:?}: touches the stack"
                );
            }
            // Unrolled loop plus the single-step loop, each one FMA per accumulator.
            let accumulators = s.rows * s.cols / isa.lanes();
            assert_eq!(fmas, accumulators * (UNROLL + 1), "{s:?}");
            assert_eq!(rets, 1, "{s:?}");
        }
    }
}

/// The kernel goes into an object file for a shared library (`is_pic`) as it is: the text
/// section holds its bytes and the object has no relocation.
#[test]
fn kernels_go_into_shared_objects_without_relocations() {
    use cranelift_codegen::settings::{self, Configurable};
    use object::{Object, ObjectSection};
    let mut flags = settings::builder();
    flags.set("is_pic", "true").unwrap();
    let isa = cranelift_codegen::isa::lookup("x86_64-unknown-linux-gnu".parse().unwrap())
        .unwrap()
        .finish(settings::Flags::new(flags))
        .unwrap();
    let mut module = cranelift_object::ObjectModule::new(
        cranelift_object::ObjectBuilder::new(
            isa,
            "tile",
            cranelift_module::default_libcall_names(),
        )
        .unwrap(),
    );
    let code = F32TileShape::default_for(WideIsa::Avx512F, 64, 32, Start::LoadC)
        .assemble()
        .unwrap();
    kestrel_backends::jit::asm::define_code(&mut module, "tile", 5, &code).unwrap();
    let bytes = module.finish().emit().unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let text = file.section_by_name(".text").expect("a text section");
    let data = text.data().unwrap();
    assert!(
        data.windows(code.len()).any(|w| w == code.as_slice()),
        "the kernel's bytes are in .text"
    );
    for section in file.sections() {
        assert_eq!(
            section.relocations().count(),
            0,
            "relocations in {:?}",
            section.name()
        );
    }
}
