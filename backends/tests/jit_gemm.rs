//! The JIT GEMM emitter against a naive f64 reference: many shapes (edges of the 4×8 tile, k
//! across the k blocks, padded leading dimensions, column bias), every B source, row splits; and
//! the emitted code's instructions (FMA, no calls).

mod gemm_harness;

use cranelift_codegen::ir::{types, InstBuilder};
use gemm_harness::compile;
use kestrel_backends::jit::kernels::gemm;
use kestrel_ir::testing::{Lcg, Random};
use proptest::prelude::*;

/// How the test feeds B to the emitter.
#[derive(Clone, Copy, Debug)]
enum Variant {
    /// `pack_b` of B `[k, n]`, `emit_gemm`.
    Packed,
    /// `pack_b` of Bᵀ `[n, k]` with `transposed`, `emit_gemm`.
    PackedT,
    /// `emit_gemm_rows` once per range of `split_rows(m, parts)`.
    Split(usize),
    /// `emit_gemm_unpacked` (B read in place).
    Unpacked,
    /// `emit_gemm_unpacked_scratch` (B packed by generated code).
    Scratch,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    lda_pad: usize,
    ldb_pad: usize,
    ldc_pad: usize,
    bias: bool,
    variant: Variant,
    seed: u64,
}

const SENTINEL: f32 = -7.25;

/// Runs one case; returns a description of the first mismatch.
fn run(c: Case) -> Result<(), String> {
    let Case { m, n, k, .. } = c;
    let (lda, ldb, ldc) = (k + c.lda_pad, n + c.ldb_pad, n + c.ldc_pad);
    let mut rng = Lcg::from_state(c.seed);
    // Padding of A and B is NaN: reading it would poison a result.
    let mut a = vec![f32::NAN; m * lda];
    for i in 0..m {
        for p in 0..k {
            a[i * lda + p] = rng.uniform_f32(-1.0, 1.0);
        }
    }
    let mut b = vec![0f32; k * n];
    b.iter_mut().for_each(|x| *x = rng.uniform_f32(-1.0, 1.0));
    let bias: Vec<f32> = rng.f32s(n, -1.0, 1.0);
    let mut out = vec![SENTINEL; m * ldc];

    // Operand that the generated function reads as B.
    let b_arg: Vec<f32> = match c.variant {
        Variant::Packed | Variant::Split(_) => gemm::pack_b(&b, k, n, false).data,
        Variant::PackedT => {
            let mut bt = vec![0f32; n * k];
            for p in 0..k {
                for j in 0..n {
                    bt[j * k + p] = b[p * n + j];
                }
            }
            let packed = gemm::pack_b(&bt, k, n, true);
            assert_eq!(packed, gemm::pack_b(&b, k, n, false));
            packed.data
        }
        Variant::Unpacked | Variant::Scratch => {
            let mut bb = vec![f32::NAN; k * ldb];
            for p in 0..k {
                bb[p * ldb..p * ldb + n].copy_from_slice(&b[p * n..(p + 1) * n]);
            }
            bb
        }
    };
    let mut scratch = vec![0u8; gemm::gemm_unpacked_scratch_bytes(m, n, k) + 16];
    let f = compile(5, |fb, flags, p| {
        let (pa, pb, pc, pbias, ps) = (p[0], p[1], p[2], p[3], p[4]);
        let epi = c.bias.then_some(pbias);
        match c.variant {
            Variant::Packed | Variant::PackedT => {
                gemm::emit_gemm(fb, flags, pa, lda, pb, pc, ldc, m, n, k, epi)
            }
            Variant::Split(parts) => {
                for r in gemm::split_rows(m, parts) {
                    let mb = fb.ins().iconst(types::I64, r.start as i64);
                    let me = fb.ins().iconst(types::I64, r.end as i64);
                    gemm::emit_gemm_rows(fb, flags, pa, lda, pb, pc, ldc, m, n, k, epi, mb, me);
                }
            }
            Variant::Unpacked => {
                gemm::emit_gemm_unpacked(fb, flags, pa, lda, pb, ldb, pc, ldc, m, n, k, epi)
            }
            Variant::Scratch => gemm::emit_gemm_unpacked_scratch(
                fb, flags, pa, lda, pb, ldb, pc, ldc, ps, m, n, k, epi,
            ),
        }
    });
    assert_eq!(f.relocs, 0, "generated code references a symbol (libcall?)");
    // An odd scratch address: the generated code claims no alignment.
    let scratch_ptr = scratch.as_mut_ptr() as usize + 4;
    // SAFETY: every buffer has the size the emitted code's contract asks for.
    unsafe {
        f.call(&[
            a.as_ptr() as usize,
            b_arg.as_ptr() as usize,
            out.as_mut_ptr() as usize,
            bias.as_ptr() as usize,
            scratch_ptr,
        ])
    };
    if let Variant::Scratch = c.variant {
        // The scratch holds exactly what pack_b produces.
        let got: Vec<f32> = (0..gemm::packed_b_len(k, n))
            .map(|i| {
                let o = scratch_ptr + 4 * i - scratch.as_ptr() as usize;
                f32::from_le_bytes(scratch[o..o + 4].try_into().unwrap())
            })
            .collect();
        if got != gemm::pack_b(&b, k, n, false).data {
            return Err("scratch differs from pack_b".into());
        }
    }
    for i in 0..m {
        for j in 0..ldc {
            let got = out[i * ldc + j];
            if j >= n {
                if got.to_bits() != SENTINEL.to_bits() {
                    return Err(format!("C[{i}][{j}] (padding) overwritten with {got}"));
                }
                continue;
            }
            let mut acc = if c.bias { bias[j] as f64 } else { 0.0 };
            let mut abs = acc.abs();
            for p in 0..k {
                let t = a[i * lda + p] as f64 * b[p * n + j] as f64;
                acc += t;
                abs += t.abs();
            }
            let tol = 1e-4 * (1.0 + acc.abs()) + 2.0 * k as f64 * f32::EPSILON as f64 * abs;
            let err = (got as f64 - acc).abs();
            // NaN-safe: a NaN result fails.
            if err.is_nan() || err > tol {
                return Err(format!("C[{i}][{j}] = {got}, reference {acc} (tol {tol})"));
            }
        }
    }
    Ok(())
}

fn case(m: usize, n: usize, k: usize, variant: Variant) -> Case {
    Case {
        m,
        n,
        k,
        lda_pad: 0,
        ldb_pad: 0,
        ldc_pad: 0,
        bias: false,
        variant,
        seed: (m * 1_000_003 + n * 1009 + k) as u64,
    }
}

const VARIANTS: [Variant; 6] = [
    Variant::Packed,
    Variant::PackedT,
    Variant::Split(2),
    Variant::Split(3),
    Variant::Unpacked,
    Variant::Scratch,
];

#[test]
fn tile_edges_every_variant() {
    let dims = [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17];
    let mut count = 0;
    for &m in &dims {
        for &n in &dims {
            for &k in &[1, 3, 4, 5, 8, 11] {
                for (vi, &v) in VARIANTS.iter().enumerate() {
                    let mut c = case(m, n, k, v);
                    c.bias = (m + n + vi) % 2 == 0;
                    c.ldc_pad = (n + vi) % 3;
                    c.lda_pad = (k + vi) % 2;
                    c.ldb_pad = vi % 2;
                    run(c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
                    count += 1;
                }
            }
        }
    }
    assert_eq!(count, 12 * 12 * 6 * 6);
}

#[test]
fn k_blocks_and_row_blocks() {
    // k around the k-block boundaries (256, 512, 768) and m across MC = 120.
    for &(m, n, k) in &[
        (5, 9, 255),
        (5, 9, 256),
        (5, 9, 257),
        (6, 17, 511),
        (7, 3, 513),
        (3, 8, 600),
        (2, 5, 769),
        (121, 9, 20),
        (125, 17, 260),
        (240, 8, 7),
        (243, 11, 530),
    ] {
        for (vi, &v) in VARIANTS.iter().enumerate() {
            let mut c = case(m, n, k, v);
            c.bias = vi % 2 == 0;
            c.lda_pad = 3;
            c.ldc_pad = vi;
            run(c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        }
    }
}

#[test]
fn degenerate_shapes() {
    // k = 0: C = bias or 0. m = 0 or n = 0: nothing is written.
    for v in VARIANTS {
        for (m, n, k) in [(3, 9, 0), (5, 4, 0), (0, 8, 5), (4, 0, 5)] {
            let mut c = case(m, n, k, v);
            c.bias = true;
            run(c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        }
    }
}

fn variant() -> impl Strategy<Value = Variant> {
    prop_oneof![
        Just(Variant::Packed),
        Just(Variant::PackedT),
        (1usize..5).prop_map(Variant::Split),
        Just(Variant::Unpacked),
        Just(Variant::Scratch),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]
    #[test]
    fn random_shapes_match_reference(
        m in 1usize..70, n in 1usize..70,
        k in prop_oneof![1usize..70, 1usize..600],
        lda_pad in 0usize..5, ldb_pad in 0usize..5, ldc_pad in 0usize..5,
        bias: bool, variant in variant(), seed: u64,
    ) {
        let c = Case { m, n, k, lda_pad, ldb_pad, ldc_pad, bias, variant, seed };
        if let Err(e) = run(c) {
            return Err(TestCaseError::fail(format!("{c:?}: {e}")));
        }
    }
}

/// The micro-kernel lowers to `vfmadd` (when the ISA allows FMA) and the code calls nothing;
/// without FMA it uses multiply + add and still calls nothing.
#[test]
fn emitted_code_uses_fma_and_calls_nothing() {
    for use_fma in [true, false] {
        let f = compile(3, |fb, flags, p| {
            let mut fl = *flags;
            if !use_fma {
                fl.has_fma = false;
                fl.is_aarch64 = false;
                fl.is_riscv64 = false;
                fl.is_x86 = true;
            }
            gemm::emit_gemm(fb, &fl, p[0], 300, p[1], p[2], 13, 9, 13, 300, None);
        });
        assert_eq!(f.relocs, 0);
        let text = f.vcode.to_lowercase();
        let calls = text
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.contains("call"))
            })
            .count();
        assert_eq!(calls, 0, "a call in:\n{}", f.vcode);
        let host_fma = std::env::consts::ARCH == "x86_64"
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("avx");
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                text.contains("vfmadd"),
                use_fma && host_fma,
                "use_fma={use_fma}:\n{}",
                f.vcode
            );
        }
    }
}

/// Prints the VCode of a 4×8, k=256 GEMM (inspection aid:
/// `cargo test -p kestrel-backends --test jit_gemm print_kernel -- --ignored --nocapture`).
#[test]
#[ignore]
fn print_kernel() {
    let f = compile(3, |fb, flags, p| {
        gemm::emit_gemm(fb, flags, p[0], 256, p[1], p[2], 8, 4, 8, 256, None);
    });
    println!("{}", f.vcode);
}

/// Compiles a GEMM for `triple` with default (baseline) ISA flags plus `enable`, at
/// `opt_level=none`; returns the VCode listing and the relocation count.
fn compile_for(triple: &str, enable: &[&str]) -> (String, usize) {
    use cranelift_codegen::ir::{AbiParam, Function, Signature, UserFuncName};
    use cranelift_codegen::isa::CallConv;
    use cranelift_codegen::settings::{self, Configurable};
    use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
    use kestrel_backends::jit::isa::IsaFlags;
    let mut fl = settings::builder();
    fl.set("opt_level", "none").unwrap();
    let mut ib = cranelift_codegen::isa::lookup_by_name(triple).unwrap();
    for e in enable {
        ib.set(e, "true").unwrap();
    }
    let isa = ib.finish(settings::Flags::new(fl)).unwrap();
    let flags = IsaFlags::from_isa(&*isa);
    let mut sig = Signature::new(CallConv::SystemV);
    for _ in 0..4 {
        sig.params.push(AbiParam::new(types::I64));
    }
    let mut func = Function::with_name_signature(UserFuncName::user(0, 0), sig);
    let mut fbc = FunctionBuilderContext::new();
    let mut fb = FunctionBuilder::new(&mut func, &mut fbc);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    fb.seal_block(entry);
    let p = fb.block_params(entry).to_vec();
    let epi = Some(p[3]);
    gemm::emit_gemm(&mut fb, &flags, p[0], 300, p[1], p[2], 13, 9, 13, 300, epi);
    gemm::emit_gemm_unpacked_scratch(
        &mut fb, &flags, p[0], 300, p[1], 13, p[2], 13, p[3], 9, 13, 300, epi,
    );
    fb.ins().return_(&[]);
    fb.seal_all_blocks();
    fb.finalize(isa.frontend_config());
    let mut ctx = cranelift_codegen::Context::for_function(func);
    ctx.set_disasm(true);
    let cc = ctx
        .compile(&*isa, &mut Default::default())
        .unwrap_or_else(|e| panic!("{triple}: {:?}", e.inner));
    (cc.vcode.clone().unwrap(), cc.buffer.relocs().len())
}

/// The kernels lower without calls for targets other than the host: x86-64 without AVX/FMA
/// (multiply + add), x86-64 with them (`vfmadd`), aarch64 (`fmla`).
#[test]
fn cross_target_code_calls_nothing() {
    for (triple, enable, fma_insn) in [
        ("x86_64-unknown-linux-gnu", &[][..], None),
        (
            "x86_64-unknown-linux-gnu",
            &["has_avx", "has_fma", "has_sse41"][..],
            Some("vfmadd"),
        ),
        ("aarch64-unknown-linux-gnu", &[][..], Some("fmla")),
    ] {
        let (vcode, relocs) = compile_for(triple, enable);
        assert_eq!(relocs, 0, "{triple} {enable:?}");
        let calls = vcode
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.contains("call") || w == "bl" || w == "blr")
            })
            .count();
        assert_eq!(calls, 0, "{triple} {enable:?}:\n{vcode}");
        match fma_insn {
            Some(insn) => assert!(vcode.contains(insn), "{triple} {enable:?}:\n{vcode}"),
            None => assert!(!vcode.contains("fmadd"), "{triple} {enable:?}:\n{vcode}"),
        }
    }
}
