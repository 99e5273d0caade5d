//! Quantized Conv and Gemm in the interpreter (`kestrel_ir::IntegerAttrs`): hand-computed
//! accumulators and requantization, padding that holds the zero point, per-channel multipliers,
//! and agreement with the float computation they quantize (within one output step).

use kestrel_backends::interp::eval_op;
use kestrel_ir::testing::{Random, XorShift64};
use kestrel_ir::*;

fn conv_op(pads: usize, x_zero_point: i32, requant: Option<Requant>) -> Op {
    Op::Conv(ConvAttrs {
        group: 1,
        pads: vec![pads; 4],
        integer: Some(IntegerAttrs {
            x_zero_point,
            requant,
        }),
        ..Default::default()
    })
}

fn requant(multiplier: &[f32], zero_point: i32, min: i32, max: i32) -> Requant {
    Requant {
        to: DType::U8,
        multiplier: multiplier.iter().map(|&m| F32(m)).collect(),
        scale: F32(0.1),
        zero_point,
        min,
        max,
        mode: RequantMode::FixedPoint,
    }
}

#[test]
fn pointwise_conv_by_hand() {
    // x: 1 channel [2, 2] u8 with zero point 10; w: 2 output channels, weights 2 and -1.
    let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![10u8, 12, 14, 20]);
    let w = Tensor::from_vec(vec![2, 1, 1, 1], vec![2i8, -1]);
    let b = Tensor::from_vec(vec![2], vec![100i32, -5]);
    let acc = eval_op(&conv_op(0, 10, None), &[&x, &w, &b]).unwrap();
    assert_eq!(acc[0].dtype(), DType::I32);
    // (x - 10) = [0, 2, 4, 10]; channel 0: 2·v + 100, channel 1: -v - 5.
    assert_eq!(
        acc[0].to_i64_vec(),
        vec![100, 104, 108, 120, -5, -7, -9, -15]
    );
    // Requantized by 0.5 (channel 0) and 0.25 (channel 1), zero point 3, clamped to [0, 60].
    let r = requant(&[0.5, 0.25], 3, 0, 60);
    let y = eval_op(&conv_op(0, 10, Some(r)), &[&x, &w, &b]).unwrap();
    assert_eq!(y[0].dtype(), DType::U8);
    // 50+3, 52+3, 54+3, 60+3 -> 60; round_half_up(-1.25) = -1, (-1.75) = -2, (-2.25) = -2,
    // (-3.75) = -4; + 3.
    assert_eq!(y[0].to_i64_vec(), vec![53, 55, 57, 60, 2, 1, 1, 0]);
}

#[test]
fn padding_holds_the_zero_point() {
    // An input equal to its zero point is real zero everywhere, padding included: the
    // accumulators equal the bias at every position, borders too.
    let x = Tensor::from_vec(vec![1, 2, 3, 3], vec![7u8; 18]);
    let w = Tensor::from_vec(vec![1, 2, 3, 3], (0..18).map(|i| i as i8 - 9).collect());
    let b = Tensor::from_vec(vec![1], vec![42i32]);
    let acc = eval_op(&conv_op(1, 7, None), &[&x, &w, &b]).unwrap();
    assert_eq!(acc[0].to_i64_vec(), vec![42; 9]);
    // With zero point 0 the same input is not zero: borders see fewer taps than the centre.
    let acc0 = eval_op(&conv_op(1, 0, None), &[&x, &w, &b]).unwrap()[0].to_i64_vec();
    let full: i64 = (0..18).map(|i| 7 * (i - 9)).sum::<i64>() + 42;
    assert_eq!(acc0[4], full);
    assert_ne!(acc0[0], full);
}

/// Quantized conv against its float meaning: dequantize, convolve in f64, quantize.
#[test]
fn conv_agrees_with_its_float_meaning() {
    let mut rng = XorShift64::seeded(11);
    for case in 0..20 {
        let (c, m, hw) = (1 + case % 4, 1 + case % 3, 3 + case % 4);
        let (sx, zx, sy, zy) = (0.02f32, (case * 13 % 200) as i32, 0.05f32, 128);
        let xq: Vec<u8> = (0..c * hw * hw).map(|_| rng.below(256) as u8).collect();
        let wq: Vec<i8> = (0..m * c * 9)
            .map(|_| (rng.below(255) as i32 - 127) as i8)
            .collect();
        let sw: Vec<f32> = (0..m).map(|i| 0.003 + 0.001 * i as f32).collect();
        let bq: Vec<i32> = (0..m).map(|_| rng.below(2001) as i32 - 1000).collect();
        let mult: Vec<f32> = sw.iter().map(|s| sx * s / sy).collect();
        let r = Requant {
            multiplier: mult.iter().map(|&v| F32(v)).collect(),
            scale: F32(sy),
            zero_point: zy,
            ..requant(&[1.0], 0, 0, 255)
        };
        let x = Tensor::from_vec(vec![1, c, hw, hw], xq.clone());
        let w = Tensor::from_vec(vec![m, c, 3, 3], wq.clone());
        let b = Tensor::from_vec(vec![m], bq.clone());
        let y = eval_op(&conv_op(1, zx, Some(r)), &[&x, &w, &b]).unwrap()[0].to_i64_vec();
        // The float computation.
        let xf: Vec<f32> = xq.iter().map(|&v| (v as i32 - zx) as f32 * sx).collect();
        let wf: Vec<f32> = wq
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f32 * sw[i / (c * 9)])
            .collect();
        let bf: Vec<f32> = bq
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f32 * sx * sw[i])
            .collect();
        let float_op = Op::Conv(ConvAttrs {
            group: 1,
            pads: vec![1; 4],
            ..Default::default()
        });
        let yf = eval_op(
            &float_op,
            &[
                &Tensor::from_vec(vec![1, c, hw, hw], xf),
                &Tensor::from_vec(vec![m, c, 3, 3], wf),
                &Tensor::from_vec(vec![m], bf),
            ],
        )
        .unwrap()[0]
            .to_f32_vec();
        for (i, (&q, &f)) in y.iter().zip(&yf).enumerate() {
            let want = ((f / sy).round() as i64 + zy as i64).clamp(0, 255);
            assert!(
                (q - want).abs() <= 1,
                "case {case} element {i}: {q} vs {want}"
            );
        }
    }
}

#[test]
fn gemm_by_hand_with_trans_b() {
    // A [2, 3] u8 zero point 1; B^T [2, 3] i8 (trans_b); bias [2].
    let a = Tensor::from_vec(vec![2, 3], vec![1u8, 2, 3, 4, 5, 6]);
    let bt = Tensor::from_vec(vec![2, 3], vec![1i8, 0, -1, 2, 2, 2]);
    let c = Tensor::from_vec(vec![2], vec![10i32, 0]);
    let op = |requant| {
        Op::Gemm(GemmAttrs {
            trans_b: true,
            integer: Some(IntegerAttrs {
                x_zero_point: 1,
                requant,
            }),
            ..Default::default()
        })
    };
    // A - 1 = [[0, 1, 2], [3, 4, 5]]; column 0: a0 - a2 + 10, column 1: 2(a0 + a1 + a2).
    let acc = eval_op(&op(None), &[&a, &bt, &c]).unwrap();
    assert_eq!(acc[0].to_i64_vec(), vec![8, 6, 8, 24]);
    let y = eval_op(&op(Some(requant(&[1.0], 0, 7, 255))), &[&a, &bt, &c]).unwrap();
    assert_eq!(y[0].to_i64_vec(), vec![8, 7, 8, 24]);
}

#[test]
fn bad_operands_are_errors() {
    let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![1i32; 4]);
    let w = Tensor::from_vec(vec![1, 1, 1, 1], vec![1i8]);
    assert!(eval_op(&conv_op(0, 0, None), &[&x, &w]).is_err());
    let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![1u8; 4]);
    let b = Tensor::from_vec(vec![1], vec![1.0f32]);
    assert!(eval_op(&conv_op(0, 0, None), &[&x, &w, &b]).is_err());
    // Two multipliers for one output channel.
    let r = requant(&[0.5, 0.5], 0, 0, 255);
    assert!(eval_op(&conv_op(0, 0, Some(r)), &[&x, &w]).is_err());
}
