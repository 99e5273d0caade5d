//! The assembled u8·s8 → i32 tiles (`jit::asm::int8_tile`, `vpdpbusd`): exactly the integer
//! sum over random shapes (1 to 4 vectors wide, up to the rows the register file holds), leading
//! dimensions, k groups (0, below and above the unroll) and both starts, with guard values
//! around the tile untouched; the code holds `vpdpbusd` in the encoding its ISA promises (EVEX
//! on `zmm`, VEX on `ymm`) and nothing position-dependent. A host without an ISA skips its cases
//! with a printed reason.

use iced_x86::{Code, Decoder, DecoderOptions, Mnemonic};
use kestrel_backends::jit::asm::f32_tile::{Start, UNROLL};
use kestrel_backends::jit::asm::host::HostCode;
use kestrel_backends::jit::asm::int8_tile::{Int8Isa, Int8TileShape};
use kestrel_backends::jit::isa::IsaFlags;
use kestrel_ir::testing::{Random, XorShift64};
use proptest::prelude::*;

fn host_isas() -> Vec<Int8Isa> {
    let isa = kestrel_backends::jit::model::host_isa().unwrap();
    let f = IsaFlags::from_isa(&*isa);
    let mut out = Vec::new();
    for (isa, has) in [
        (
            Int8Isa::Avx512Vnni,
            f.is_x86 && f.has_avx512f && f.has_avx512vnni,
        ),
        (Int8Isa::AvxVnni, f.is_x86 && f.has_avx2 && f.has_avx_vnni),
    ] {
        if has {
            out.push(isa);
        } else {
            eprintln!("skipped: this host has no {}", isa.name());
        }
    }
    out
}

type Kernel = extern "sysv64" fn(*const u8, *const i8, *mut i32, u64, *const i32);

fn check(shape: Int8TileShape, groups: usize, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = XorShift64::seeded(seed);
    let (lda, ldc, k) = (shape.lda_bytes, shape.ldc_bytes / 4, 4 * groups);
    let a: Vec<u8> = (0..shape.rows * lda + k)
        .map(|_| rng.below(256) as u8)
        .collect();
    // Packed B: per group (`b_step_bytes` apart), per column, four k; whole vectors readable.
    let lanes = shape.isa.lanes();
    let ldb = shape.b_step_bytes;
    let b: Vec<u8> = (0..groups * ldb + shape.cols.div_ceil(lanes) * lanes * 4)
        .map(|_| rng.below(256) as u8)
        .collect();
    // A's and B's bytes as the kernel reads them: A u8 and B s8, or (a_signed) the other way.
    let a_val = |x: u8| {
        if shape.a_signed {
            x as i8 as i64
        } else {
            x as i64
        }
    };
    let b_val = |x: u8| {
        if shape.a_signed {
            x as i64
        } else {
            x as i8 as i64
        }
    };
    const GUARD: i32 = 0x5eed;
    let c0: Vec<i32> = (0..shape.rows * ldc + 8)
        .map(|i| {
            if i < shape.rows * ldc && i % ldc < shape.cols {
                rng.below(1 << 20) as i32 - (1 << 19)
            } else {
                GUARD
            }
        })
        .collect();
    let bias: Vec<i32> = (0..shape.rows.max(shape.cols))
        .map(|_| rng.below(1 << 20) as i32 - (1 << 19))
        .collect();
    let mut c = c0.clone();
    let code = HostCode::new(&shape.assemble().unwrap(), 5).unwrap();
    // SAFETY: the kernel reads rows·lda + 4·groups bytes of `a`, the packed panel of `b`, and
    // writes the tile of `c`.
    let f: Kernel = unsafe { std::mem::transmute(code.entry()) };
    f(
        a.as_ptr(),
        b.as_ptr() as *const i8,
        c.as_mut_ptr(),
        groups as u64,
        bias.as_ptr(),
    );
    for r in 0..shape.rows {
        for j in 0..ldc {
            let i = r * ldc + j;
            if j >= shape.cols {
                prop_assert_eq!(c[i], GUARD, "C[{}][{}] outside the tile written", r, j);
                continue;
            }
            let mut want: i64 = match shape.start {
                Start::Zero => 0,
                Start::LoadC => c0[i] as i64,
                Start::ColumnBias => bias[j] as i64,
                Start::RowBias => bias[r] as i64,
            };
            for kk in 0..k {
                let w = b[(kk / 4) * ldb + j * 4 + kk % 4];
                want += a_val(a[r * lda + kk]) * b_val(w);
            }
            prop_assert_eq!(
                c[i] as i64,
                want,
                "C[{}][{}] of {:?}, {} groups",
                r,
                j,
                shape,
                groups
            );
        }
    }
    for &g in &c[shape.rows * ldc..] {
        prop_assert_eq!(g, GUARD, "written past the last row");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tiles_compute_the_integer_sum(rows_pick in 0usize..30, vectors in 1usize..5,
                                     groups in 0usize..(5 * UNROLL + 3), lda_extra in 0usize..9,
                                     ldc_extra in 0usize..5, start_pick in 0usize..4,
                                     short in 0usize..16, ldb_extra in 0usize..3, a_signed: bool,
                                     seed: u64) {
        for isa in host_isas() {
            let cols = vectors * isa.lanes() - short % isa.lanes();
            let ragged = cols % isa.lanes() != 0;
            let spare = 1 + (ragged && isa == Int8Isa::AvxVnni) as usize;
            let most = (isa.vectors().registers() - vectors - spare) / vectors;
            let shape = Int8TileShape {
                isa,
                rows: 1 + rows_pick % most,
                cols,
                lda_bytes: 4 * groups + lda_extra,
                b_step_bytes: 4 * (vectors * isa.lanes() + 4 * ldb_extra),
                ldc_bytes: 4 * (cols + ldc_extra),
                start: [Start::Zero, Start::LoadC, Start::ColumnBias, Start::RowBias][start_pick],
                a_signed,
            };
            check(shape, groups, seed)?;
        }
    }
}

/// Each production tile: `vpdpbusd` on full-width registers in its ISA's encoding (EVEX for
/// AVX512_VNNI, VEX for AVX-VNNI), one per accumulator in each loop, nothing RIP-relative, no
/// call or jump out, one return.
#[test]
fn kernels_hold_vpdpbusd_in_their_encoding() {
    for isa in [Int8Isa::Avx512Vnni, Int8Isa::AvxVnni] {
        let s = Int8TileShape::default_for(isa, 256, 64, Start::LoadC);
        let code = s.assemble().unwrap();
        let mut dots = 0;
        for ins in Decoder::with_ip(64, &code, 0, DecoderOptions::NONE) {
            assert!(!ins.is_invalid(), "{s:?}: undecodable bytes");
            assert!(
                !ins.is_ip_rel_memory_operand(),
                "{s:?}: RIP-relative operand"
            );
            assert!(
                !matches!(ins.mnemonic(), Mnemonic::Call | Mnemonic::Jmp),
                "{s:?}: a call or an indirect jump"
            );
            if ins.mnemonic() == Mnemonic::Vpdpbusd {
                let want = match isa {
                    Int8Isa::Avx512Vnni => Code::EVEX_Vpdpbusd_zmm_k1z_zmm_zmmm512b32,
                    Int8Isa::AvxVnni => Code::VEX_Vpdpbusd_ymm_ymm_ymmm256,
                };
                assert_eq!(ins.code(), want, "{s:?}");
                dots += 1;
            }
        }
        let accumulators = s.rows * s.cols / isa.lanes();
        assert_eq!(dots, accumulators * (UNROLL + 1), "{s:?}");
        assert!(
            Int8TileShape {
                rows: s.rows + 1,
                ..s
            }
            .check()
            .is_err(),
            "a tile beyond the register file is refused"
        );
    }
}
