//! The GEMMs on the full-width micro-kernels (`jit::asm`, `kernels::gemm::wide`) against the
//! 128-bit Cranelift path and the interpreter: random MatMul, Gemm and convolution shapes whose
//! m, n and k are not multiples of the tiles (row, column and k-block edges; constant and
//! run-time B, packed or read in place; column and row biases), bit-identical to the 128-bit
//! kernels; and the code a target gets: zmm FMAs with `+avx512f`, ymm ones with `+avx2,+fma`,
//! neither on the baseline, whatever the host is, and the `.so`'s CPU check naming the feature.
//! A host without a wide ISA skips the run-time cases with a printed reason.

use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use kestrel_backends::aot::{emit_object, Arch, CpuFeatures};
use kestrel_backends::interp;
use kestrel_backends::jit::asm::WideIsa;
use kestrel_backends::jit::isa::IsaFlags;
use kestrel_backends::jit::{compile, JitOptions};
use kestrel_ir::testing::{check_close, Random, XorShift64};
use kestrel_ir::*;
use proptest::prelude::*;

fn tensor(dims: &[usize], seed: u64) -> Tensor {
    XorShift64::seeded(seed).tensor_f32(dims, -1.0, 1.0)
}

/// Whether the host runs a wide ISA (printing the reason when not).
fn host_is_wide() -> bool {
    let isa = kestrel_backends::jit::model::host_isa().unwrap();
    let wide = WideIsa::for_target(&IsaFlags::from_isa(&*isa));
    if wide.is_none() {
        eprintln!("skipped: this host has neither AVX-512F nor AVX2+FMA");
    }
    wide.is_some()
}

/// Runs `g` with the wide kernels and with the 128-bit ones (1 and 2 tasks), requires the
/// same bits from all, and the interpreter's values within `tol`.
fn agree(g: &Graph, inputs: &[Tensor], tol: f32) -> Result<(), TestCaseError> {
    let run = |wide_kernels: bool, threads: usize| {
        let opts = JitOptions {
            wide_kernels,
            min_task_macs: 1,
            ..JitOptions::with_threads(threads)
        };
        compile(g, &opts)
            .and_then(|m| m.run(inputs))
            .map_err(|e| TestCaseError::fail(e.to_string()))
    };
    let portable = run(false, 1)?;
    prop_assert!(run(true, 1)? == portable, "1 task: wide ≠ 128-bit");
    prop_assert!(run(true, 2)? == portable, "2 tasks: wide ≠ 128-bit");
    let want = interp::run(g, inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (a, b) in portable.iter().zip(&want) {
        let close = check_close(&a.to_f32_vec(), &b.to_f32_vec(), tol);
        prop_assert!(close.is_ok(), "jit vs interp: {}", close.unwrap_err());
    }
    Ok(())
}

fn matmul_graph(m: usize, n: usize, k: usize, const_b: bool, seed: u64) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new("mm");
    let a = g.add_input("a", TensorType::known(DType::F32, &[m, k]));
    let mut inputs = vec![tensor(&[m, k], seed)];
    let b = if const_b {
        g.add_const("b", tensor(&[k, n], seed ^ 1))
    } else {
        inputs.push(tensor(&[k, n], seed ^ 1));
        g.add_input("b", TensorType::known(DType::F32, &[k, n]))
    };
    let y = g.add(Op::MatMul, &[a, b], "mm").unwrap();
    g.add_output("y", y);
    (g, inputs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// m across the 14- and 6-row tiles and the row blocks, n across 16- and 32-column panels,
    /// k across the 256-deep k blocks.
    #[test]
    fn matmul_on_wide_kernels(m in 1usize..160, n in 1usize..90, k_pick in 0usize..3,
                              k_small in 1usize..40, const_b: bool, seed: u64) {
        if !host_is_wide() {
            return Ok(());
        }
        let k = [k_small, 250 + k_small, 520 + k_small][k_pick];
        let (g, inputs) = matmul_graph(m, n, k, const_b, seed);
        agree(&g, &inputs, 1e-4)?;
    }

    /// Gemm with a row-vector C (the column bias start) and transposed constant B.
    #[test]
    fn gemm_with_bias_on_wide_kernels(m in 1usize..40, n in 1usize..70, k in 1usize..300,
                                      seed: u64) {
        if !host_is_wide() {
            return Ok(());
        }
        let mut g = Graph::new("gemm");
        let a = g.add_input("a", TensorType::known(DType::F32, &[m, k]));
        let b = g.add_const("b", tensor(&[n, k], seed ^ 2));
        let c = g.add_const("c", tensor(&[n], seed ^ 3));
        let attrs = GemmAttrs { trans_b: true, ..Default::default() };
        let y = g.add(Op::Gemm(attrs), &[a, b, c], "gemm").unwrap();
        g.add_output("y", y);
        agree(&g, &[tensor(&[m, k], seed)], 1e-4)?;
    }

    /// Convolutions: 1×1 (B in place, or packed when wide enough) and k×k through im2col, the
    /// output channels as GEMM rows; with a fused Relu or Clip (one bound or both), which the
    /// wide kernels apply with the bias in their last k block's store (k > 256 spans blocks),
    /// or a SiLU or Sigmoid, which the full-width activation kernel applies to whole vectors.
    #[test]
    fn conv_on_wide_kernels(c in 1usize..40, m in 1usize..40, h in 1usize..12, w in 1usize..12,
                            kernel in 1usize..4, bias: bool, act_pick in 0usize..7, seed: u64) {
        if !host_is_wide() {
            return Ok(());
        }
        let pad = kernel / 2;
        let clip = |min: f32, max: f32| Some(UnaryOp::Clip { min: F32(min), max: F32(max) });
        let act = [None, Some(UnaryOp::Relu), clip(0.0, 6.0), clip(f32::NEG_INFINITY, 0.1),
                   clip(-0.2, f32::INFINITY), Some(UnaryOp::Silu),
                   Some(UnaryOp::Sigmoid)][act_pick];
        let epilogue = Epilogue { act, ..Default::default() };
        let a = ConvAttrs { group: 1, pads: vec![pad; 4], epilogue, ..Default::default() };
        let mut g = Graph::new("conv");
        let x = g.add_input("x", TensorType::known(DType::F32, &[1, c, h, w]));
        let wv = g.add_const("w", tensor(&[m, c, kernel, kernel], seed ^ 4));
        let mut ins = vec![x, wv];
        if bias {
            ins.push(g.add_const("b", tensor(&[m], seed ^ 5)));
        }
        let y = g.add(Op::Conv(a), &ins, "conv").unwrap();
        g.add_output("y", y);
        agree(&g, &[tensor(&[1, c, h, w], seed)], 1e-4)?;
    }
}

/// Wide enough convolutions to pack their input (1×1) and their im2col blocks.
#[test]
fn packing_convolutions_on_wide_kernels() {
    if !host_is_wide() {
        return;
    }
    for (c, m, h, w, k) in [(200, 136, 7, 7, 1), (64, 130, 9, 9, 3), (256, 129, 5, 3, 1)] {
        let a = ConvAttrs {
            group: 1,
            pads: vec![k / 2; 4],
            ..Default::default()
        };
        let mut g = Graph::new("conv");
        let x = g.add_input("x", TensorType::known(DType::F32, &[1, c, h, w]));
        let wv = g.add_const("w", tensor(&[m, c, k, k], 7));
        let b = g.add_const("b", tensor(&[m], 8));
        let y = g.add(Op::Conv(a), &[x, wv, b], "conv").unwrap();
        g.add_output("y", y);
        agree(&g, &[tensor(&[1, c, h, w], 9)], 1e-4).unwrap();
    }
}

/// FMAs in the object's code: (on zmm, on ymm).
fn fmas_by_width(cpu: &str) -> ((usize, usize), String) {
    let (g, _) = matmul_graph(40, 64, 96, true, 1);
    let cpu = CpuFeatures::parse(Arch::X86_64, Some(cpu)).unwrap();
    let emitted = emit_object(&g, &cpu, "w", &JitOptions::default(), false).unwrap();
    use object::{Object, ObjectSection};
    let file = object::File::parse(&*emitted.object).unwrap();
    let (mut zmm, mut ymm) = (0, 0);
    for section in file.sections() {
        if section.kind() != object::SectionKind::Text {
            continue;
        }
        let code = section.data().unwrap();
        for ins in Decoder::with_ip(64, code, 0, DecoderOptions::NONE) {
            if ins.mnemonic() == Mnemonic::Vfmadd231ps {
                zmm += ins.op0_register().is_zmm() as usize;
                ymm += ins.op0_register().is_ymm() as usize;
            }
        }
    }
    ((zmm, ymm), emitted.info.cpu)
}

/// The kernels follow the target's features, not the host's, and the `.so` checks for them.
#[test]
fn shared_objects_carry_the_kernels_of_their_cpu() {
    let ((zmm, _), cpu) = fmas_by_width("+avx2,+fma,+avx512f");
    assert!(zmm > 0, "no zmm FMA for +avx512f");
    assert!(cpu.contains("+avx512f"), "CPU check {cpu}");
    let ((zmm, ymm), cpu) = fmas_by_width("+avx2,+fma");
    assert!(zmm == 0 && ymm > 0, "avx2+fma: {zmm} zmm, {ymm} ymm FMAs");
    assert!(
        cpu.contains("+avx2") && cpu.contains("+fma"),
        "CPU check {cpu}"
    );
    let ((zmm, ymm), _) = fmas_by_width("generic");
    assert_eq!((zmm, ymm), (0, 0), "the baseline got wide FMAs");
}

/// Direct 1×1 convolutions over more pixels than one epilogue block (256 KiB of output: 1,024
/// pixels of 64 channels), so whole blocks run in a loop and a remainder follows: with a Relu
/// (in the wide kernels' store, a pass per block on the 128-bit path), with a SiLU and a
/// residual (a pass per block on both) and with a SiLU alone (the full-width activation kernel
/// per block).
#[test]
fn direct_1x1_epilogue_blocks() {
    for (act, residual) in [
        (UnaryOp::Relu, false),
        (UnaryOp::Silu, true),
        (UnaryOp::Silu, false),
    ] {
        let (c, m, h, w) = (8, 64, 40, 60);
        let epilogue = Epilogue {
            act: Some(act),
            residual,
            channel_scale: false,
        };
        let a = ConvAttrs {
            group: 1,
            epilogue,
            ..Default::default()
        };
        let mut g = Graph::new("conv");
        let x = g.add_input("x", TensorType::known(DType::F32, &[1, c, h, w]));
        let wv = g.add_const("w", tensor(&[m, c, 1, 1], 3));
        let b = g.add_const("b", tensor(&[m], 4));
        let mut ins = vec![x, wv, b];
        let mut inputs = vec![tensor(&[1, c, h, w], 5)];
        if residual {
            ins.push(g.add_input("r", TensorType::known(DType::F32, &[1, m, h, w])));
            inputs.push(tensor(&[1, m, h, w], 6));
        }
        let y = g.add(Op::Conv(a), &ins, "conv").unwrap();
        g.add_output("y", y);
        agree(&g, &inputs, 1e-4).unwrap();
    }
}

/// The full-width Sigmoid and SiLU (`jit::asm::activation`) on the values where an exp-based
/// sigmoid goes wrong: NaN, ±inf, ±0, both clamp bounds and either side of them, subnormal and
/// huge magnitudes. A 1×1 convolution of one input channel with unit weights gives each output
/// channel `x + bias` (three biases); 37 columns are two whole AVX-512 vectors (four AVX2 ones)
/// and a 128-bit tail. Bit for bit the 128-bit path's, and the interpreter's within 1e-5.
#[test]
fn activation_kernels_on_special_values() {
    if !host_is_wide() {
        return;
    }
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
        100.0,
        -100.0,
        1e-30,
        -1e-30,
        f32::MAX,
        f32::MIN,
        0.5,
        -0.5,
        3.0,
        -3.0,
    ];
    let w = 37;
    let values: Vec<f32> = (0..w).map(|i| specials[i % specials.len()]).collect();
    let x_t = Tensor::from_vec(vec![1, 1, 1, w], values);
    for act in [UnaryOp::Silu, UnaryOp::Sigmoid] {
        let epilogue = Epilogue {
            act: Some(act),
            ..Default::default()
        };
        let a = ConvAttrs {
            group: 1,
            epilogue,
            ..Default::default()
        };
        let mut g = Graph::new("act");
        let x = g.add_input("x", TensorType::known(DType::F32, &[1, 1, 1, w]));
        let wv = g.add_const("w", Tensor::from_vec(vec![3, 1, 1, 1], vec![1.0f32; 3]));
        let b = g.add_const("b", Tensor::from_vec(vec![3], vec![0.0f32, 3.0, -100.0]));
        let y = g.add(Op::Conv(a), &[x, wv, b], "conv").unwrap();
        g.add_output("y", y);
        let run = |wide_kernels: bool| {
            let opts = JitOptions {
                wide_kernels,
                ..Default::default()
            };
            compile(&g, &opts)
                .unwrap()
                .run(std::slice::from_ref(&x_t))
                .unwrap()
        };
        let bits =
            |t: &[Tensor]| -> Vec<u32> { t[0].to_f32_vec().iter().map(|v| v.to_bits()).collect() };
        let (wide, portable) = (run(true), run(false));
        assert_eq!(bits(&wide), bits(&portable), "{act:?}: wide ≠ 128-bit");
        let want = interp::run(&g, std::slice::from_ref(&x_t)).unwrap();
        for (i, (a, b)) in wide[0]
            .to_f32_vec()
            .into_iter()
            .zip(want[0].to_f32_vec())
            .enumerate()
        {
            let close =
                a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-5 * b.abs().max(1.0);
            assert!(close, "{act:?} element {i}: {a} vs the interpreter's {b}");
        }
    }
}

/// Each activation kernel divides in its ISA's full-width registers (the class it must contain)
/// and returns with clean upper halves (`vzeroupper` right before its `ret`; without it every
/// legacy-SSE instruction of the Cranelift code after the call waits on the dirty state:
/// efficientnet_b0's depthwise layers ran 3× slower).
#[test]
fn activation_kernels_divide_in_full_width_registers() {
    use kestrel_backends::jit::asm::activation::{Activation, ActivationShape};
    for isa in [WideIsa::Avx512F, WideIsa::Avx2Fma] {
        for act in [Activation::Silu, Activation::Sigmoid] {
            for bias in [false, true] {
                let code = ActivationShape { isa, act, bias }.assemble().unwrap();
                let mut divides = 0;
                let mut previous = Mnemonic::INVALID;
                for ins in Decoder::with_ip(64, &code, 0, DecoderOptions::NONE) {
                    if ins.mnemonic() == Mnemonic::Ret {
                        assert_eq!(previous, Mnemonic::Vzeroupper, "{isa:?} {act:?}");
                        break;
                    }
                    previous = ins.mnemonic();
                    if ins.mnemonic() == Mnemonic::Vdivps {
                        let r = ins.op0_register();
                        assert!(
                            if isa == WideIsa::Avx512F {
                                r.is_zmm()
                            } else {
                                r.is_ymm()
                            },
                            "{isa:?}: vdivps on {r:?}"
                        );
                        divides += 1;
                    }
                }
                assert_eq!(divides, 1, "{isa:?} {act:?} bias {bias}");
            }
        }
    }
}

/// Depthwise convolutions with a SiLU or Sigmoid, which their kernels apply per output row (a
/// plane above 32 KiB: 97×97) or per plane through the full-width activation kernel, at strides
/// 1 and 2: the 128-bit path's bits.
#[test]
fn depthwise_activations_on_wide_kernels() {
    if !host_is_wide() {
        return;
    }
    for (hw, stride, act) in [
        (97, 1, UnaryOp::Silu),
        (30, 1, UnaryOp::Sigmoid),
        (61, 2, UnaryOp::Silu),
    ] {
        let c = 3;
        let epilogue = Epilogue {
            act: Some(act),
            ..Default::default()
        };
        let a = ConvAttrs {
            group: c,
            pads: vec![1; 4],
            strides: vec![stride; 2],
            epilogue,
            ..Default::default()
        };
        let mut g = Graph::new("dw");
        let x = g.add_input("x", TensorType::known(DType::F32, &[1, c, hw, hw]));
        let wv = g.add_const("w", tensor(&[c, 1, 3, 3], 7));
        let b = g.add_const("b", tensor(&[c], 8));
        let y = g.add(Op::Conv(a), &[x, wv, b], "dw").unwrap();
        g.add_output("y", y);
        agree(&g, &[tensor(&[1, c, hw, hw], 9)], 1e-5).unwrap();
    }
}
