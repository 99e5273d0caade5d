//! Conv, Gemm and MatMul: hand-computed cases and comparisons with naive loops.

mod common;
use common::*;
use kestrel_backends::interp::EvalError;
use kestrel_ir::testing::{Lcg, Random};
use kestrel_ir::{AutoPad, ConvAttrs, GemmAttrs, Op, Tensor, F32};

fn conv(attrs: ConvAttrs) -> Op {
    Op::Conv(ConvAttrs {
        group: attrs.group.max(1),
        ..attrs
    })
}

#[test]
fn conv_3x3_ones_with_padding() {
    let x = iota(&[1, 1, 3, 3], 1.0);
    let w = f32t(&[1, 1, 3, 3], &[1.0; 9]);
    let y = eval1(
        conv(ConvAttrs {
            pads: vec![1, 1, 1, 1],
            ..Default::default()
        }),
        &[&x, &w],
    );
    assert_close(
        &y,
        &[1, 1, 3, 3],
        &[12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0],
        0.0,
    );
    let y = eval1(
        conv(ConvAttrs {
            pads: vec![1, 1, 1, 1],
            strides: vec![2, 2],
            ..Default::default()
        }),
        &[&x, &w],
    );
    assert_close(&y, &[1, 1, 2, 2], &[12.0, 16.0, 24.0, 28.0], 0.0);
    let y = eval1(conv(ConvAttrs::default()), &[&x, &w, &f32t(&[1], &[0.5])]);
    assert_close(&y, &[1, 1, 1, 1], &[45.5], 0.0);
}

#[test]
fn conv_dilation_groups_and_ranks() {
    let x = iota(&[1, 1, 3, 3], 1.0);
    let w = f32t(&[1, 1, 2, 2], &[1.0; 4]);
    let y = eval1(
        conv(ConvAttrs {
            dilations: vec![2, 2],
            ..Default::default()
        }),
        &[&x, &w],
    );
    assert_close(&y, &[1, 1, 1, 1], &[20.0], 0.0);

    // Depthwise: channel 0 times 2, channel 1 times 3.
    let x = iota(&[1, 2, 2, 2], 1.0);
    let w = f32t(&[2, 1, 1, 1], &[2.0, 3.0]);
    let y = eval1(
        conv(ConvAttrs {
            group: 2,
            ..Default::default()
        }),
        &[&x, &w],
    );
    assert_close(
        &y,
        &[1, 2, 2, 2],
        &[2.0, 4.0, 6.0, 8.0, 15.0, 18.0, 21.0, 24.0],
        0.0,
    );

    // 1-D.
    let x = iota(&[1, 1, 5], 1.0);
    let w = f32t(&[1, 1, 3], &[1.0, 0.0, -1.0]);
    let y = eval1(conv(ConvAttrs::default()), &[&x, &w]);
    assert_close(&y, &[1, 1, 3], &[-2.0, -2.0, -2.0], 0.0);

    // 3-D.
    let x = f32t(&[1, 1, 2, 2, 2], &[1.0; 8]);
    let w = f32t(&[1, 1, 2, 2, 2], &[1.0; 8]);
    let y = eval1(conv(ConvAttrs::default()), &[&x, &w]);
    assert_close(&y, &[1, 1, 1, 1, 1], &[8.0], 0.0);
}

#[test]
fn conv_auto_pad() {
    let x = iota(&[1, 1, 4], 1.0);
    let w = f32t(&[1, 1, 3], &[1.0; 3]);
    let upper = ConvAttrs {
        strides: vec![2],
        auto_pad: AutoPad::SameUpper,
        ..Default::default()
    };
    assert_close(&eval1(conv(upper), &[&x, &w]), &[1, 1, 2], &[6.0, 7.0], 0.0);
    let lower = ConvAttrs {
        strides: vec![2],
        auto_pad: AutoPad::SameLower,
        ..Default::default()
    };
    assert_close(&eval1(conv(lower), &[&x, &w]), &[1, 1, 2], &[3.0, 9.0], 0.0);
    let valid = ConvAttrs {
        pads: vec![5, 5],
        auto_pad: AutoPad::Valid,
        ..Default::default()
    };
    assert_close(&eval1(conv(valid), &[&x, &w]), &[1, 1, 2], &[6.0, 9.0], 0.0);
}

#[test]
fn conv_shape_errors() {
    let x = iota(&[1, 3, 4, 4], 0.0);
    let w = iota(&[2, 2, 3, 3], 0.0);
    assert!(matches!(
        eval_err(conv(ConvAttrs::default()), &[&x, &w]),
        EvalError::Invalid { .. }
    ));
    let w = iota(&[2, 3, 5, 5], 0.0);
    assert!(matches!(
        eval_err(conv(ConvAttrs::default()), &[&x, &w]),
        EvalError::Invalid { .. }
    ));
    let w = iota(&[2, 3, 3, 3], 0.0);
    let b = iota(&[3], 0.0);
    assert!(matches!(
        eval_err(conv(ConvAttrs::default()), &[&x, &w, &b]),
        EvalError::Invalid { .. }
    ));
}

/// Deterministic pseudo-random values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    Lcg::seeded(seed).f32s(n, -1.0, 1.0)
}

/// Direct 2-D convolution, f64 accumulation.
#[allow(clippy::too_many_arguments)]
fn naive_conv2d(
    x: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: &[f32],
    m: usize,
    kh: usize,
    kw: usize,
    group: usize,
    stride: usize,
    pad: usize,
    dil: usize,
) -> (Vec<usize>, Vec<f64>) {
    let oh = (h + 2 * pad - dil * (kh - 1) - 1) / stride + 1;
    let ow = (w + 2 * pad - dil * (kw - 1) - 1) / stride + 1;
    let (cg, mg) = (c / group, m / group);
    let mut out = vec![0.0; n * m * oh * ow];
    for b in 0..n {
        for oc in 0..m {
            let g = oc / mg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.0f64;
                    for ic in 0..cg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * stride + ky * dil) as isize - pad as isize;
                                let ix = (ox * stride + kx * dil) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi =
                                    ((b * c + g * cg + ic) * h + iy as usize) * w + ix as usize;
                                let ki = ((oc * cg + ic) * kh + ky) * kw + kx;
                                acc += x[xi] as f64 * k[ki] as f64;
                            }
                        }
                    }
                    out[((b * m + oc) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    (vec![n, m, oh, ow], out)
}

#[test]
fn conv_matches_direct_loops() {
    // (n, c, h, w, m, kh, kw, group, stride, pad, dil)
    let cases = [
        (1, 3, 9, 7, 4, 3, 3, 1, 1, 1, 1),
        (2, 4, 8, 8, 6, 3, 2, 2, 2, 1, 1),
        (1, 6, 10, 9, 6, 3, 3, 6, 1, 2, 2),
        (1, 16, 12, 12, 32, 1, 1, 1, 1, 0, 1),
        (1, 8, 7, 7, 8, 5, 5, 4, 3, 2, 1),
        (1, 64, 20, 20, 64, 3, 3, 1, 1, 1, 1),
    ];
    for (i, &(n, c, h, w, m, kh, kw, group, stride, pad, dil)) in cases.iter().enumerate() {
        let xv = noise(n * c * h * w, i as u64);
        let kv = noise(m * (c / group) * kh * kw, 100 + i as u64);
        let x = f32t(&[n, c, h, w], &xv);
        let k = f32t(&[m, c / group, kh, kw], &kv);
        let attrs = ConvAttrs {
            strides: vec![stride; 2],
            pads: vec![pad; 4],
            dilations: vec![dil; 2],
            group,
            auto_pad: AutoPad::NotSet,
            epilogue: Default::default(),
            integer: None,
        };
        let y = eval1(Op::Conv(attrs), &[&x, &k]);
        let (dims, expected) =
            naive_conv2d(&xv, n, c, h, w, &kv, m, kh, kw, group, stride, pad, dil);
        assert_close(&y, &dims, &expected, 1e-4);
    }
}

#[test]
fn matmul_numpy_semantics() {
    let a = iota(&[2, 3], 1.0);
    let b = iota(&[3, 2], 1.0);
    let y = eval1(Op::MatMul, &[&a, &b]);
    assert_close(&y, &[2, 2], &[22.0, 28.0, 49.0, 64.0], 0.0);
    // 1-D promotion on either side, and both.
    let v = f32t(&[3], &[1.0, 0.0, -1.0]);
    assert_close(&eval1(Op::MatMul, &[&v, &b]), &[2], &[-4.0, -4.0], 0.0);
    assert_close(&eval1(Op::MatMul, &[&a, &v]), &[2], &[-2.0, -2.0], 0.0);
    assert_close(&eval1(Op::MatMul, &[&v, &v]), &[], &[2.0], 0.0);
    // Batch broadcasting: [2,1,2,3] @ [3,3,2] -> [2,3,2,2].
    let a = iota(&[2, 1, 2, 3], 0.0);
    let b = iota(&[3, 3, 2], 0.0);
    let y = eval1(Op::MatMul, &[&a, &b]);
    assert_eq!(y.dims(), &[2, 3, 2, 2]);
    let (av, bv, yv) = (a.to_f32_vec(), b.to_f32_vec(), y.to_f32_vec());
    for i in 0..2 {
        for j in 0..3 {
            for r in 0..2 {
                for c in 0..2 {
                    let e: f32 = (0..3)
                        .map(|k| av[i * 6 + r * 3 + k] * bv[j * 6 + k * 2 + c])
                        .sum();
                    assert_eq!(yv[((i * 3 + j) * 2 + r) * 2 + c], e);
                }
            }
        }
    }
    // Integer matmul.
    let y = eval1(
        Op::MatMul,
        &[&i64t(&[1, 2], &[2, 3]), &i64t(&[2, 1], &[4, 5])],
    );
    assert_eq!(y.to_i64_vec(), vec![23]);
    assert!(matches!(
        eval_err(Op::MatMul, &[&iota(&[2, 3], 0.0), &iota(&[2, 3], 0.0)]),
        EvalError::Invalid { .. }
    ));
}

#[test]
fn large_matmul_matches_naive() {
    let (m, k, n) = (70, 300, 600);
    let av = noise(m * k, 1);
    let bv = noise(k * n, 2);
    let y = eval1(Op::MatMul, &[&f32t(&[m, k], &av), &f32t(&[k, n], &bv)]);
    let mut expected = vec![0.0f64; m * n];
    for i in 0..m {
        for kk in 0..k {
            for j in 0..n {
                expected[i * n + j] += av[i * k + kk] as f64 * bv[kk * n + j] as f64;
            }
        }
    }
    assert_close(&y, &[m, n], &expected, 1e-4);
}

#[test]
fn gemm_transposes_alpha_beta_and_broadcast_c() {
    let a = iota(&[3, 2], 1.0); // A^T = [[1,3,5],[2,4,6]]
    let b = iota(&[2, 3], 1.0); // B^T = [[1,4],[2,5],[3,6]]
    let c = f32t(&[2], &[1.0, -1.0]);
    let attrs = GemmAttrs {
        alpha: F32(2.0),
        beta: F32(0.5),
        trans_a: true,
        trans_b: true,
        epilogue: Default::default(),
        integer: None,
    };
    let y = eval1(Op::Gemm(attrs), &[&a, &b, &c]);
    // A^T B^T = [[22, 49], [28, 64]]
    assert_close(&y, &[2, 2], &[44.5, 97.5, 56.5, 127.5], 0.0);
    let y = eval1(
        Op::Gemm(GemmAttrs::default()),
        &[&iota(&[2, 3], 1.0), &iota(&[3, 2], 1.0)],
    );
    assert_close(&y, &[2, 2], &[22.0, 28.0, 49.0, 64.0], 0.0);
    let bad_c = f32t(&[3], &[0.0; 3]);
    assert!(matches!(
        eval_err(
            Op::Gemm(GemmAttrs::default()),
            &[&iota(&[2, 3], 1.0), &iota(&[3, 2], 1.0), &bad_c]
        ),
        EvalError::Invalid { .. }
    ));
    let _ = Tensor::scalar(0.0f32);
}
