//! The assembled AMX int8 tile (`jit::asm::amx_tile`): the exact integer sum of random u8·s8
//! (and s8·u8) operands over 0 to 5 steps of 64 k, both starts and padded leading dimensions,
//! nothing outside the 32×32 block written; its code holds `tdpbusd` (or `tdpbsud`) on tile
//! registers and nothing position-dependent. A host without AMX-INT8, or whose kernel refuses
//! the tile permission, skips the run with a printed reason.

use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use kestrel_backends::jit::asm::amx_tile::{AmxTileShape, COLS, K_STEP, ROWS};
use kestrel_backends::jit::asm::f32_tile::Start;
use kestrel_backends::jit::asm::host::HostCode;
use kestrel_ir::testing::{Random, XorShift64};
use proptest::prelude::*;

type Kernel = extern "sysv64" fn(*const u8, *const u8, *mut i32, u64, u64);

fn amx_ready() -> bool {
    match kestrel_runtime::amx::request_tile_permission() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

fn check(shape: AmxTileShape, steps: usize, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = XorShift64::seeded(seed);
    let (lda, ldc, k) = (shape.lda_bytes, shape.ldc_bytes / 4, K_STEP * steps);
    let a: Vec<u8> = (0..ROWS * lda).map(|_| rng.below(256) as u8).collect();
    let b: Vec<u8> = (0..k / 4 * COLS * 4)
        .map(|_| rng.below(256) as u8)
        .collect();
    const GUARD: i32 = 0x5eed;
    let c0: Vec<i32> = (0..ROWS * ldc)
        .map(|i| {
            if i % ldc < COLS {
                rng.below(1 << 20) as i32 - (1 << 19)
            } else {
                GUARD
            }
        })
        .collect();
    let mut c = c0.clone();
    let code = HostCode::new(&shape.assemble().unwrap(), 5).unwrap();
    // SAFETY: the kernel reads 32 rows of `steps · 64` bytes of `a`, `steps` steps of `b`, and
    // writes the 32×32 block of `c`; the tile permission was granted.
    let f: Kernel = unsafe { std::mem::transmute(code.entry()) };
    f(a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), steps as u64, 0);
    let av = |x: u8| x as i64;
    let bv = |x: u8| x as i8 as i64;
    for r in 0..ROWS {
        for j in 0..ldc {
            let i = r * ldc + j;
            if j >= COLS {
                prop_assert_eq!(c[i], GUARD, "C[{}][{}] outside the block written", r, j);
                continue;
            }
            let mut want: i64 = match shape.start {
                Start::LoadC => c0[i] as i64,
                _ => 0,
            };
            for kk in 0..k {
                let (x, w) = (a[r * lda + kk], b[(kk / 4) * COLS * 4 + j * 4 + kk % 4]);
                want += if shape.a_signed {
                    bv(x) * av(w)
                } else {
                    av(x) * bv(w)
                };
            }
            prop_assert_eq!(
                c[i] as i64,
                want,
                "C[{}][{}] of {:?}, {} steps",
                r,
                j,
                shape,
                steps
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn amx_tile_computes_the_integer_sum(steps in 0usize..6, lda_extra in 0usize..70,
                                         ldc_extra in 0usize..5, load: bool, a_signed: bool,
                                         seed: u64) {
        if !amx_ready() {
            return Ok(());
        }
        let shape = AmxTileShape {
            lda_bytes: K_STEP * steps.max(1) + lda_extra,
            ldc_bytes: 4 * (COLS + ldc_extra),
            start: if load { Start::LoadC } else { Start::Zero },
            a_signed,
        };
        check(shape, steps, seed)?;
    }
}

/// Four tile dot products per step in the encoding the signedness asks, tile loads and stores,
/// nothing RIP-relative, no call, one `ret`; bias starts refused.
#[test]
fn amx_kernel_holds_tile_dot_products() {
    for a_signed in [false, true] {
        let s = AmxTileShape {
            lda_bytes: 256,
            ldc_bytes: 128,
            start: Start::LoadC,
            a_signed,
        };
        let code = s.assemble().unwrap();
        let want = if a_signed {
            Mnemonic::Tdpbsud
        } else {
            Mnemonic::Tdpbusd
        };
        let (mut dots, mut rets, mut loads, mut stores) = (0, 0, 0, 0);
        for ins in Decoder::with_ip(64, &code, 0, DecoderOptions::NONE) {
            assert!(!ins.is_invalid(), "{s:?}: undecodable bytes");
            assert!(
                !ins.is_ip_rel_memory_operand(),
                "{s:?}: RIP-relative operand"
            );
            assert!(!matches!(ins.mnemonic(), Mnemonic::Call), "{s:?}: a call");
            dots += (ins.mnemonic() == want) as usize;
            rets += (ins.mnemonic() == Mnemonic::Ret) as usize;
            loads += (ins.mnemonic() == Mnemonic::Tileloadd) as usize;
            stores += (ins.mnemonic() == Mnemonic::Tilestored) as usize;
        }
        assert_eq!((dots, loads, stores, rets), (4, 8, 4, 1), "{s:?}");
        let biased = AmxTileShape {
            start: Start::ColumnBias,
            ..s
        };
        assert!(biased.check().is_err());
    }
}
