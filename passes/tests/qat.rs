//! Quantization-aware training's graph side (docs/TRAINING.md "Quantization-aware training"):
//! the straight-through estimator of a fake-quantization pair, and `qat::prepare` /
//! `Prepared::finalize` against `quantize::apply`, on the interpreter.

use kestrel_backends::interp;
use kestrel_ir::testing::{Random, XorShift64};
use kestrel_ir::{ConvAttrs, DType, GemmAttrs, Graph, Op, Tensor, TensorType, ValueDef, ValueId};
use kestrel_passes::autodiff::{training_graph, AutodiffError, Loss, ParamSelection};
use kestrel_passes::quantize::{apply, plan, qat, QuantizeOptions, Range, Ranges};
use proptest::prelude::*;

fn floats(rng: &mut XorShift64, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_f64(lo, hi) as f32).collect()
}

/// `DequantizeLinear(QuantizeLinear(p))` of a trained constant `p`, the MSE loss on it.
fn fake_quant_graph(
    p: Tensor,
    scale: Tensor,
    zero: Tensor,
    axis: i64,
    to: DType,
) -> (Graph, ValueId) {
    let mut g = Graph::new("fake_quant");
    let p = g.add_const("p", p);
    let s = g.add_const("s", scale);
    let z = g.add_const("z", zero);
    let q = g
        .add(Op::QuantizeLinear { axis, to }, &[p, s, z], "q")
        .unwrap();
    let y = g
        .add(Op::DequantizeLinear { axis }, &[q, s, z], "dq")
        .unwrap();
    g.add_output("y", y);
    (g, p)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// ∂L/∂p is the upstream gradient `2(y - t)/n` where `p` lies in the representable range
    /// `[(qmin - zp)·s, (qmax - zp)·s]` and exactly 0 outside, per tensor and per axis, for u8
    /// and s8; the scale and zero point are not trained.
    #[test]
    fn straight_through_estimator_masks_the_upstream_gradient(
        channels in 1usize..4, inner in 1usize..5, per_axis: bool, signed: bool, seed: u64,
    ) {
        let mut rng = XorShift64::seeded(seed);
        let n = channels * inner;
        let dims = vec![channels, inner];
        let k = if per_axis { channels } else { 1 };
        let scales = floats(&mut rng, k, 0.002, 0.02);
        let pdims: Vec<usize> = if per_axis { vec![k] } else { vec![] };
        let zf: Vec<f32> = (0..k)
            .map(|_| if signed { rng.below(21) as f32 - 10.0 } else { rng.below(256) as f32 })
            .collect();
        let (to, zero, qmin, qmax) = if signed {
            let z: Vec<i8> = zf.iter().map(|&v| v as i8).collect();
            (DType::I8, Tensor::from_vec(pdims.clone(), z), -128.0, 127.0f32)
        } else {
            let z: Vec<u8> = zf.iter().map(|&v| v as u8).collect();
            (DType::U8, Tensor::from_vec(pdims.clone(), z), 0.0, 255.0f32)
        };
        // Values around the range so some fall outside on either side.
        let p = floats(&mut rng, n, -4.0, 4.0);
        let (g, _) = fake_quant_graph(
            Tensor::from_vec(dims.clone(), p.clone()),
            Tensor::from_vec(pdims.clone(), scales.clone()),
            zero,
            0,
            to,
        );
        let tg = training_graph(&g, &ParamSelection::FloatConstants, &Loss::mean_squared_error())
            .unwrap();
        prop_assert_eq!(tg.params.len(), 1, "only p is trained, not the scale");
        prop_assert_eq!(&tg.params[0].name, "p");
        let t = floats(&mut rng, n, -1.0, 1.0);
        let mut feed = vec![Tensor::from_vec(dims.clone(), p.clone())];
        feed.push(Tensor::from_vec(dims.clone(), t.clone()));
        let out = interp::run(&tg.graph, &feed).unwrap();
        let y = out[1].to_f32_vec();
        let grad = out[tg.params[0].grad_output].to_f32_vec();
        let (mut inside, mut outside) = (0, 0);
        for i in 0..n {
            let c = if per_axis { i / inner } else { 0 };
            let (lo, hi) = ((qmin - zf[c]) * scales[c], (qmax - zf[c]) * scales[c]);
            let upstream = 2.0 * (y[i] - t[i]) / n as f32;
            if p[i] >= lo && p[i] <= hi {
                inside += 1;
                prop_assert!((grad[i] - upstream).abs() <= 1e-6 * (1.0 + upstream.abs()),
                    "p[{}] = {} in [{}, {}]: gradient {}, upstream {}", i, p[i], lo, hi, grad[i], upstream);
            } else {
                outside += 1;
                prop_assert_eq!(grad[i], 0.0, "p[{}] = {} outside [{}, {}]", i, p[i], lo, hi);
            }
        }
        prop_assert_eq!(inside + outside, n);
    }
}

#[test]
fn a_lone_quantize_linear_has_no_gradient() {
    let mut g = Graph::new("lone");
    let p = g.add_const("p", Tensor::from_vec(vec![3], vec![0.1f32, 0.2, 0.3]));
    let s = g.add_const("s", Tensor::scalar(0.01f32));
    let z = g.add_const("z", Tensor::scalar(0i8));
    let q = g
        .add(
            Op::QuantizeLinear {
                axis: 1,
                to: DType::I8,
            },
            &[p, s, z],
            "q",
        )
        .unwrap();
    let c = g.add(Op::Cast { to: DType::F32 }, &[q], "cast").unwrap();
    g.add_output("y", c);
    let e = training_graph(
        &g,
        &ParamSelection::FloatConstants,
        &Loss::mean_squared_error(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, AutodiffError::NoRule { node, .. } if node.contains("cast")),
        "{e}"
    );
}

#[test]
fn a_requantizing_pair_is_refused() {
    let mut g = Graph::new("requant");
    let p = g.add_const("p", Tensor::from_vec(vec![3], vec![0.1f32, 0.2, 0.3]));
    let s = g.add_const("s", Tensor::scalar(0.01f32));
    let s2 = g.add_const("s2", Tensor::scalar(0.02f32));
    let z = g.add_const("z", Tensor::scalar(0i8));
    let q = g
        .add(
            Op::QuantizeLinear {
                axis: 1,
                to: DType::I8,
            },
            &[p, s, z],
            "q",
        )
        .unwrap();
    let y = g
        .add(Op::DequantizeLinear { axis: 1 }, &[q, s2, z], "dq")
        .unwrap();
    g.add_output("y", y);
    let e = training_graph(
        &g,
        &ParamSelection::FloatConstants,
        &Loss::mean_squared_error(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("requantizes"), "{e}");
}

/// input [2,1,6,6] → Conv(3 filters, 3×3, bias) → Relu → Flatten → Gemm([48, 4], bias).
fn small_net(seed: u64) -> Graph {
    let mut rng = XorShift64::seeded(seed);
    let mut g = Graph::new("small");
    let x = g.add_input("x", TensorType::known(DType::F32, &[2, 1, 6, 6]));
    let w = g.add_const(
        "conv_w",
        Tensor::from_vec(vec![3, 1, 3, 3], floats(&mut rng, 27, -1.0, 1.0)),
    );
    let b = g.add_const(
        "conv_b",
        Tensor::from_vec(vec![3], floats(&mut rng, 3, -0.2, 0.2)),
    );
    let c = g
        .add(
            Op::Conv(ConvAttrs {
                strides: vec![1; 2],
                pads: vec![0; 4],
                group: 1,
                ..Default::default()
            }),
            &[x, w, b],
            "conv",
        )
        .unwrap();
    let r = g
        .add(Op::Unary(kestrel_ir::UnaryOp::Relu), &[c], "relu")
        .unwrap();
    let f = g.add(Op::Flatten { axis: 1 }, &[r], "flatten").unwrap();
    let fw = g.add_const(
        "fc_w",
        Tensor::from_vec(vec![48, 4], floats(&mut rng, 192, -0.5, 0.5)),
    );
    let fb = g.add_const(
        "fc_b",
        Tensor::from_vec(vec![4], floats(&mut rng, 4, -0.2, 0.2)),
    );
    let y = g
        .add(Op::Gemm(GemmAttrs::default()), &[f, fw, fb], "fc")
        .unwrap();
    g.add_output("y", y);
    g
}

fn quantized(g: &Graph, bits: u32) -> (Graph, qat::Prepared) {
    let p = plan(g);
    let ranges: Ranges = p
        .calibration_tensors(&[])
        .into_iter()
        .map(|t| {
            (
                t,
                Range {
                    min: -3.0,
                    max: 3.0,
                },
            )
        })
        .collect();
    let mut q = g.clone();
    let applied = apply(
        &mut q,
        &p,
        &ranges,
        &QuantizeOptions {
            weight_bits: bits,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(applied.weight_sources.len(), 2);
    let prepared = qat::prepare(&q, &qat::originals(g, &applied)).unwrap();
    (q, prepared)
}

fn const_by_name<'g>(g: &'g Graph, name: &str) -> &'g Tensor {
    g.values
        .iter()
        .find_map(|v| match &v.def {
            ValueDef::Const(c) if c.name == name => c.data.as_ref(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no constant {name}"))
}

/// Every integer constant (int8 weights, int32 biases, zero points), sorted by name.
fn integer_constants(g: &Graph) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = g
        .values
        .iter()
        .filter_map(|v| match &v.def {
            ValueDef::Const(c) if matches!(v.ty.dtype, DType::I8 | DType::I32 | DType::U8) => {
                Some((c.name.clone(), c.data.clone()?))
            }
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn input(seed: u64) -> Tensor {
    let mut rng = XorShift64::seeded(seed);
    Tensor::from_vec(vec![2, 1, 6, 6], floats(&mut rng, 72, -1.0, 1.0))
}

/// Untrained, prepare then finalize gives back `apply`'s int8 and int32 constants and outputs
/// exactly; the trainable weights start from the original floats, not the dequantized ones;
/// the prepared graph computes what the quantized one does.
#[test]
fn prepare_then_finalize_reproduces_apply() {
    for bits in [8, 4] {
        let g = small_net(7);
        let (q, prepared) = quantized(&g, bits);
        assert_eq!(prepared.weights.len(), 2);
        assert_eq!(prepared.biases.len(), 2);
        for w in &prepared.weights {
            assert_eq!(w.bound, (1 << (bits - 1)) - 1, "{}", w.name);
            let original = if w.name.starts_with("conv") {
                "conv_w"
            } else {
                "fc_w"
            };
            assert_eq!(
                const_by_name(&prepared.graph, &w.name).to_f32_vec(),
                const_by_name(&g, original).to_f32_vec(),
                "{} starts from the float weights",
                w.name
            );
        }
        let tg = training_graph(
            &prepared.graph,
            &ParamSelection::FloatConstantsExcept(prepared.frozen()),
            &Loss::cross_entropy(),
        )
        .unwrap();
        let mut trained: Vec<&str> = tg.params.iter().map(|p| p.name.as_str()).collect();
        trained.sort();
        assert_eq!(trained, ["conv_b", "conv_w", "fc_b", "fc_w"], "bits {bits}");

        let x = input(3);
        let want = interp::run(&q, std::slice::from_ref(&x)).unwrap()[0].to_f32_vec();
        let fake = interp::run(&prepared.graph, std::slice::from_ref(&x)).unwrap()[0].to_f32_vec();
        for (a, b) in fake.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "prepared {a}, quantized {b}"
            );
        }
        let back = prepared.finalize(&prepared.graph).unwrap();
        assert_eq!(
            integer_constants(&back),
            integer_constants(&q),
            "bits {bits}"
        );
        let got = interp::run(&back, &[x]).unwrap()[0].to_f32_vec();
        assert_eq!(got, want, "bits {bits}");
    }
}

/// After "training" (weights moved, some past the grid's ends), the finalized graph's int8
/// weights lie on the grid and it computes what the fake-quantized graph did.
#[test]
fn finalize_quantizes_trained_weights_as_the_fake_quantization_did() {
    for bits in [8, 3] {
        let g = small_net(11);
        let (_, prepared) = quantized(&g, bits);
        let mut trained = prepared.graph.clone();
        let mut rng = XorShift64::seeded(5);
        for v in trained.values.iter_mut() {
            if let ValueDef::Const(c) = &mut v.def {
                if prepared.weights.iter().any(|w| w.name == c.name) {
                    let t = c.data.as_ref().unwrap();
                    let moved: Vec<f32> = t
                        .to_f32_vec()
                        .iter()
                        .map(|&w| w * 1.4 + rng.uniform_f64(-0.05, 0.05) as f32)
                        .collect();
                    c.data = Some(Tensor::from_vec(t.dims().to_vec(), moved));
                }
            }
        }
        let back = prepared.finalize(&trained).unwrap();
        let bound = (1i32 << (bits - 1)) - 1;
        let mut at_bound = 0;
        for (name, t) in integer_constants(&back) {
            if t.dtype() == DType::I8 && t.numel() > 3 {
                for v in t.to_f32_vec() {
                    assert!(
                        v.abs() as i32 <= bound,
                        "{name}: {v} off the {bits}-bit grid"
                    );
                    at_bound += (v.abs() as i32 == bound) as usize;
                }
            }
        }
        assert!(at_bound > 0, "the grown weights saturate at ±{bound}");
        let x = input(9);
        let fake = interp::run(&trained, std::slice::from_ref(&x)).unwrap()[0].to_f32_vec();
        let int8 = interp::run(&back, &[x]).unwrap()[0].to_f32_vec();
        for (a, b) in fake.iter().zip(&int8) {
            // Only the int32 rounding of the biases differs (≤ s_x·s_w / 2 per output).
            assert!(
                (a - b).abs() <= 1e-3 * (1.0 + b.abs()),
                "fake {a}, int8 {b}"
            );
        }
    }
}

#[test]
fn prepare_refuses_a_graph_without_int8_weights() {
    let g = small_net(1);
    assert!(qat::prepare(&g, &Default::default()).is_err());
}
