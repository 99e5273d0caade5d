//! The assembled full-width Sigmoid and SiLU (`jit::asm::activation`) against the contract in
//! plain Rust: the clamp, the magic-number rounding, the two-constant reduction, the Estrin
//! polynomial with fused multiply-adds (`f32::mul_add`), the exponent shift and the division,
//! in that order and with `SigmoidConstants`, bit for bit, on special values (NaN, ±inf, ±0, the
//! clamp bounds and either side) and random ones; with and without the bias; nothing outside the
//! vectors written. Every ISA the host runs; the others are skipped with a printed reason.

use kestrel_backends::jit::asm::activation::{Activation, ActivationShape};
use kestrel_backends::jit::asm::host::HostCode;
use kestrel_backends::jit::kernels::math::SigmoidConstants;
use kestrel_ir::testing::{Random, XorShift64};

mod asm_host;
use asm_host::host_wide_isas;

/// The contract's sigmoid of `x`.
fn sigmoid(x: f32) -> f32 {
    let k = SigmoidConstants::get();
    let e = k.exp;
    let y = if k.hi < x { k.hi } else { x };
    let y = if k.lo > y { k.lo } else { y };
    let t = y * e.log2e + e.magic;
    let n = t - e.magic;
    let s = n.mul_add(e.ln2_hi, y);
    let s = n.mul_add(e.ln2_lo, s);
    let p = e.poly;
    let t01 = p[1].mul_add(s, p[0]);
    let t23 = p[3].mul_add(s, p[2]);
    let t45 = p[5].mul_add(s, p[4]);
    let s2 = s * s;
    let q = t45.mul_add(s2, t23).mul_add(s2, t01);
    let ex = q * f32::from_bits(t.to_bits() << 23);
    1.0 / (ex + 1.0)
}

type Kernel = extern "sysv64" fn(*mut f32, u64, *const f32, u64, u64);

#[test]
fn activations_compute_the_contract_bit_for_bit() {
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        87.5,
        -88.5,
        87.6,
        -88.6,
        88.4,
        -88.4,
        1e-30,
        -1e-30,
        1e-40,
        f32::MAX,
        f32::MIN,
        0.5,
        -3.0,
    ];
    for isa in host_wide_isas() {
        let lanes = isa.lanes();
        for act in [Activation::Sigmoid, Activation::Silu] {
            for bias in [false, true] {
                let code = ActivationShape { isa, act, bias }.assemble().unwrap();
                let host = HostCode::new(&code, 5).unwrap();
                // SAFETY: the code follows `Kernel`'s ABI (the module's contract).
                let kernel: Kernel = unsafe { std::mem::transmute(host.entry()) };
                for vectors in [0usize, 1, 3, 7] {
                    let n = vectors * lanes;
                    let mut r = XorShift64::seeded((vectors * 2 + bias as usize) as u64);
                    let mut data: Vec<f32> = r.f32s(n + 2 * lanes, -20.0, 20.0);
                    for (i, v) in data[lanes..lanes + n].iter_mut().enumerate() {
                        if i % 3 == 0 {
                            *v = specials[(i / 3) % specials.len()];
                        }
                    }
                    let before = data.clone();
                    let b = [1.25f32];
                    kernel(data[lanes..].as_mut_ptr(), vectors as u64, b.as_ptr(), 0, 0);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&data[..lanes]),
                        bits(&before[..lanes]),
                        "written before"
                    );
                    assert_eq!(
                        bits(&data[lanes + n..]),
                        bits(&before[lanes + n..]),
                        "written after"
                    );
                    for i in 0..n {
                        let x = match bias {
                            true => before[lanes + i] + b[0],
                            false => before[lanes + i],
                        };
                        let want = match act {
                            Activation::Sigmoid => sigmoid(x),
                            Activation::Silu => x * sigmoid(x),
                        };
                        let got = data[lanes + i];
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{isa:?} {act:?} bias {bias}: x = {x}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
