//! The shared test support (`kestrel_ir::testing`): every stream pinned to the values the tests
//! were written against, and the comparisons' edge cases.

use kestrel_ir::testing::*;
use kestrel_ir::{DType, Dim, Graph, TensorType};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The first values of every stream, as the test files computed them before they shared these
/// generators: a change here silently changes what those tests check.
#[test]
fn streams_are_pinned() {
    assert_eq!(
        bits(&XorShift64::seeded(7).f32s(4, -2.0, 2.0)),
        [0x3fec7eea, 0x3fd99dd2, 0xbc26a000, 0x3e82d288]
    );
    assert_eq!(
        bits(&XorShift64::seeded(7).f32s(4, -4.0, 4.0)),
        [0x406c7eea, 0x40599dd2, 0xbca6a000, 0x3f02d288]
    );
    assert_eq!(
        bits(&Lcg::seeded(3).f32s(4, -1.0, 1.0)),
        [0xbeb36124, 0x3ef00ed0, 0xbe9d88d4, 0x3e73e650]
    );
    assert_eq!(
        bits(&Lcg::from_state(3).f32s(4, -1.0, 1.0)),
        [0xbf460950, 0xbeb36124, 0x3ef00ed0, 0xbe9d88d4]
    );
    assert_eq!(
        bits(&Lcg::from_state(3).f32s(4, -0.5, 0.5)),
        [0xbec60950, 0xbe336124, 0x3e700ed0, 0xbe1d88d4]
    );
    let mut lcg = Lcg::seeded(1);
    let f64s: Vec<u64> = (0..4)
        .map(|_| lcg.uniform_f64(-1.0, 1.0).to_bits())
        .collect();
    assert_eq!(
        f64s,
        [
            0x3f93443590000000,
            0x3fd2fd70cc000000,
            0xbfcdfcaa34000000,
            0x3fe2e89dad000000
        ]
    );
    let mut x = XorShift64::from_state(0x5eed_0001_d1c7_5a11);
    let raw: Vec<u64> = (0..4).map(|_| x.next_u64()).collect();
    assert_eq!(
        raw,
        [
            0x3f8a71ada93a70e5,
            0x075b5ed2c8609d44,
            0x67fac92e7c838d7e,
            0x4fc45adf5afe15e4
        ]
    );
    let mut x = XorShift32::from_state(0x2545_f491);
    let v: Vec<f32> = (0..4).map(|_| x.uniform_f32(-10.0, 10.0)).collect();
    assert_eq!(bits(&v), [0x40f2dbc8, 0x3f681110, 0xc0079780, 0xc11fe2e8]);
}

#[test]
fn tensors_and_indices_come_from_the_stream() {
    let t = XorShift64::seeded(7).tensor_f32(&[2, 2], -2.0, 2.0);
    assert_eq!(t.dims(), [2, 2]);
    assert_eq!(t.to_f32_vec(), XorShift64::seeded(7).f32s(4, -2.0, 2.0));
    let mut a = XorShift64::from_state(99);
    let mut b = a.clone();
    for n in [1, 2, 7, 1000] {
        assert_eq!(a.below(n), (b.next_u64() % n as u64) as usize);
    }
    assert_eq!(a.below(0), 0);
    let mut lcg = Lcg::seeded(5);
    assert!((0..10_000).all(|_| (0.0..1.0).contains(&lcg.unit_f32())));
}

#[test]
fn random_inputs_bind_symbolic_extents_and_continue_one_stream() {
    let mut g = Graph::new("t");
    let x = g.add_input(
        "x",
        TensorType::new(
            DType::F32,
            [Dim::sym("N"), Dim::Known(3)].into_iter().collect(),
        ),
    );
    let i = g.add_input("i", TensorType::known(DType::I64, &[4]));
    g.add_output("y", x);
    g.add_output("j", i);
    let ins = random_inputs(&g, 1);
    assert_eq!(ins[0].dims(), [2, 3]);
    let mut lcg = Lcg::seeded(1);
    let want: Vec<f64> = (0..10).map(|_| lcg.uniform_f64(-1.0, 1.0)).collect();
    let x: Vec<f32> = want[..6].iter().map(|&v| v as f32).collect();
    assert_eq!(ins[0].to_f32_vec(), x);
    let i: Vec<f64> = want[6..].iter().map(|&v| (v * 4.0) as i64 as f64).collect();
    assert_eq!(ins[1].to_f64_vec(), i);
}

#[test]
fn close_is_absolute_below_one_and_relative_above() {
    assert_eq!(check_close(&[1.0f32, 100.0], &[1.001, 100.1], 1e-3), Ok(()));
    assert_eq!(
        check_close(&[0.0f32, 0.0], &[0.0, 0.002], 1e-3),
        Err(Mismatch {
            index: 1,
            got: 0.0,
            want: 0.002
        })
    );
    assert_eq!(check_close(&[f64::NAN], &[f64::NAN], 0.0), Ok(()));
    assert!(check_close(&[f64::NAN], &[1.0], 0.5).is_err());
    assert!(check_close(&[1.0], &[f64::NAN], 0.5).is_err());
    let m = check_close(&[2.0f32], &[1.0], 0.5).unwrap_err();
    assert_eq!(m.to_string(), "element 0: got 2, want 1");
}

#[test]
fn steps_allow_a_whole_number_of_steps_and_a_margin() {
    assert_eq!(step_bound(0.5f32, 2.0), 2.0 * 0.5 * 1.0001);
    assert_eq!(
        check_within_steps(&[1.0f32, 2.0], &[0.0, 3.0], 0.5, 2.0),
        Ok(())
    );
    assert_eq!(
        check_within_steps(&[1.0f32, 2.0], &[0.0, 3.0], 0.5, 1.0).map_err(|m| m.index),
        Err(0)
    );
    assert!(check_within_steps(&[f32::NAN], &[0.0], 1.0, 100.0).is_err());
}

#[test]
fn max_abs_diff_fails_every_bound_on_nan() {
    assert_eq!(max_abs_diff(&[1.0f32, -2.0, 3.0], &[1.5, 0.0, 3.0]), 2.0);
    assert!(max_abs_diff(&[f32::NAN, 1.0], &[0.0, 5.0]).is_nan());
    assert!(max_abs_diff(&[1.0, f64::NAN], &[5.0, 0.0]).is_nan());
    assert_eq!(max_abs_diff::<f64>(&[], &[]), 0.0);
    assert_eq!(max_abs(&[-3.0f32, f32::NAN, 2.0]), 3.0);
    assert_eq!(magnitude(&[0.25f64, -0.5]), 1.0);
    assert_eq!(magnitude(&[0.25f64, -4.5]), 4.5);
}

#[test]
#[should_panic(expected = "shapes differ")]
fn tensor_diff_refuses_different_shapes() {
    let a = kestrel_ir::Tensor::from_vec(vec![2, 1], vec![0f32; 2]);
    let b = kestrel_ir::Tensor::from_vec(vec![2], vec![0f32; 2]);
    tensor_max_abs_diff(&a, &b);
}

#[test]
fn unified_diff_marks_changed_lines() {
    assert_eq!(unified_diff("a\nb\n", "a\nb\n"), "");
    let d = unified_diff("a\nb\nc\n", "a\nB\nc\n");
    assert!(
        d.starts_with("--- expected\n+++ actual\n@@ -1,3 +1,3 @@\n"),
        "{d}"
    );
    assert!(d.contains("\n-b\n+B\n"), "{d}");
}
