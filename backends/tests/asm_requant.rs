//! The assembled full-width float requantization (`jit::asm::requant`) against its contract in
//! plain Rust, bit for bit: `f32(acc) · scale`, the clamp with the bound first, the magic-number
//! rounding and the offset, one byte per level; u8 and i8 levels, zero points, scales that
//! overflow to infinity; nothing outside the run written. Every ISA the host runs; the others are
//! skipped with a printed reason.

use kestrel_backends::jit::asm::host::HostCode;
use kestrel_backends::jit::asm::requant::RequantShape;
use kestrel_backends::jit::asm::WideIsa;
use kestrel_ir::testing::{Random, XorShift64};

mod asm_host;
use asm_host::host_wide_isas;

/// The contract's byte for `acc`.
fn level(acc: i32, scale: f32, lo: f32, hi: f32, offset: i32) -> u8 {
    let f = acc as f32 * scale;
    let f = if hi < f { hi } else { f };
    let f = if lo > f { lo } else { f };
    let bits = (f + 12_582_912.0).to_bits() as i32;
    bits.wrapping_sub(offset) as u8
}

type Kernel = extern "sysv64" fn(*const i32, *mut u8, u64, *const f32, u64);

#[test]
fn requantization_computes_the_contract_bit_for_bit() {
    // (signed, zero point, min, max, scale)
    let cases = [
        (false, 0, 0, 255, 0.013f32),
        (false, 131, 0, 255, 0.0021),
        (true, -5, -128, 127, 0.004),
        (true, 3, -20, 90, 1e38),
        (false, 128, 128, 255, 0.5),
    ];
    for isa in host_wide_isas() {
        let lanes = isa.lanes();
        for (signed, zp, min, max, scale) in cases {
            let (lo, hi) = ((min - zp) as f32, (max - zp) as f32);
            let offset = 0x4B40_0000 - zp;
            let shape = RequantShape {
                isa,
                lo: lo.to_bits(),
                hi: hi.to_bits(),
                offset,
                signed,
            };
            let code = shape.assemble().unwrap();
            let host = HostCode::new(&code, 5).unwrap();
            // SAFETY: the code follows `Kernel`'s ABI (the module's contract).
            let kernel: Kernel = unsafe { std::mem::transmute(host.entry()) };
            for vectors in [0usize, 1, 2, 5] {
                let n = vectors * lanes;
                let mut r = XorShift64::seeded((n as u64).wrapping_add(zp as u64));
                let mut acc: Vec<i32> = (0..n)
                    .map(|_| (r.next_u64() % 200_001) as i32 - 100_000)
                    .collect();
                for (i, extreme) in [i32::MIN, i32::MAX, 0, -1, 1].into_iter().enumerate() {
                    if i < n {
                        acc[i] = extreme;
                    }
                }
                let mut out = vec![0xA5u8; n + 2 * lanes];
                kernel(
                    acc.as_ptr(),
                    out[lanes..].as_mut_ptr(),
                    vectors as u64,
                    &scale,
                    0,
                );
                assert!(out[..lanes].iter().all(|&b| b == 0xA5), "written before");
                assert!(out[lanes + n..].iter().all(|&b| b == 0xA5), "written after");
                for (i, &a) in acc.iter().enumerate() {
                    let want = level(a, scale, lo, hi, offset);
                    assert_eq!(out[lanes + i], want, "{isa:?} {shape:?}: acc {a}");
                }
            }
        }
    }
}

/// The kernel converts and narrows in its ISA's full-width registers (`vcvtdq2ps` on zmm and
/// `vpmovdb`, or on ymm and `vpackssdw`) and returns with `vzeroupper`.
#[test]
fn requantization_kernels_hold_their_isas_instructions() {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};
    for isa in [WideIsa::Avx512F, WideIsa::Avx2Fma] {
        for signed in [false, true] {
            let shape = RequantShape {
                isa,
                lo: 0f32.to_bits(),
                hi: 255f32.to_bits(),
                offset: 0x4B40_0000,
                signed,
            };
            let code = shape.assemble().unwrap();
            let (mut converts, mut narrows, mut previous) = (0, 0, Mnemonic::INVALID);
            for ins in Decoder::with_ip(64, &code, 0, DecoderOptions::NONE) {
                match ins.mnemonic() {
                    Mnemonic::Ret => {
                        assert_eq!(previous, Mnemonic::Vzeroupper, "{isa:?}");
                        break;
                    }
                    Mnemonic::Vcvtdq2ps => {
                        let r = ins.op0_register();
                        assert!(if isa == WideIsa::Avx512F {
                            r.is_zmm()
                        } else {
                            r.is_ymm()
                        });
                        converts += 1;
                    }
                    Mnemonic::Vpmovdb | Mnemonic::Vpackssdw => narrows += 1,
                    _ => {}
                }
                previous = ins.mnemonic();
            }
            assert_eq!((converts, narrows), (1, 1), "{isa:?} signed {signed}");
        }
    }
}
