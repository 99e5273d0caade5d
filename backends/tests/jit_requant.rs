//! The requantization kernel (`kernels::requant`) against `kestrel_ir::quant::requantize_output`,
//! element for element: both forms (the vector one where the host has it, the scalar one with
//! SSE4.2 switched off in `IsaFlags`), every channel layout, row lengths around the vector
//! widths (16 and 4), accumulators up to the i32 extremes, the whole multiplier range (shifts
//! -30..=30, so products and shifts that overflow i32), both output types, and folded bounds.
//! Guard bytes after each output row must stay untouched.

#[path = "gemm_harness/mod.rs"]
mod gemm_harness;

use gemm_harness::{compile, host_isa};
use kestrel_backends::jit::emit::Emitter;
use kestrel_backends::jit::isa::IsaFlags;
use kestrel_backends::jit::kernels::requant::{Channels, Requantization};
use kestrel_ir::quant::{quantize_multiplier, range_of, requantize_output, FixedMultiplier};
use kestrel_ir::testing::{Random, XorShift64};
use kestrel_ir::{DType, RequantMode};
use proptest::prelude::*;

/// Guard bytes after each output row.
const GUARD: usize = 5;

/// Runs the kernel for `q` on `acc` (`rows × cols`, leading dimension `cols + 3`), with the
/// requantization forms `flags` allows, and checks every byte; returns the listing.
fn check(flags: IsaFlags, q: &Requantization, acc: &[i32], rows: usize, cols: usize) -> String {
    let acc_ld = cols + 3;
    let out_ld = cols + GUARD;
    assert_eq!(acc.len(), rows * acc_ld);
    let table = q.table();
    let mut out = vec![0xA5u8; rows * out_ld];
    let f = compile(4, |fb, _host, p| {
        let mut e = Emitter::new(fb, flags);
        q.emit(&mut e, p[0], acc_ld, p[1], out_ld, rows, cols, p[2], p[3]);
    });
    let first_channel = 0usize;
    unsafe {
        f.call(&[
            acc.as_ptr() as usize,
            out.as_mut_ptr() as usize,
            table.as_ptr() as usize,
            first_channel,
        ])
    };
    for r in 0..rows {
        for c in 0..out_ld {
            let got = out[r * out_ld + c];
            if c >= cols {
                assert_eq!(got, 0xA5, "guard byte {c} of row {r} written");
                continue;
            }
            let fixed = match q.channels {
                Channels::One => q.fixed[0],
                Channels::Rows => q.fixed[r],
                Channels::Columns => q.fixed[c],
            };
            let a = acc[r * acc_ld + c];
            let want = requantize_output(a, fixed, q.zero_point, q.min, q.max);
            let got = match q.to {
                DType::I8 => got as i8 as i32,
                _ => got as i32,
            };
            assert_eq!(
                got, want,
                "row {r} col {c}: acc {a}, {fixed:?}, zp {}, [{}, {}], {:?}",
                q.zero_point, q.min, q.max, q.to
            );
        }
    }
    f.vcode
}

fn host() -> IsaFlags {
    IsaFlags::from_isa(&*host_isa())
}

/// Accumulators: mostly moderate, some at and near the i32 extremes.
fn accumulators(n: usize, seed: u64) -> Vec<i32> {
    let mut r = XorShift64::seeded(seed);
    (0..n)
        .map(|_| {
            let x = r.next_u64();
            match x % 8 {
                0 => i32::MIN + (x >> 40) as i32 % 3,
                1 => i32::MAX - (x >> 40) as i32 % 3,
                2 => (x >> 32) as i32,
                _ => ((x >> 32) % 200_001) as i32 - 100_000,
            }
        })
        .collect()
}

/// A fixed multiplier with the given shift (an exact fixed-point form of some f32).
fn multiplier(shift: i32, seed: u64) -> FixedMultiplier {
    let mut r = XorShift64::seeded(seed);
    let m = (0.5 + 0.4999 * (r.next_u64() % 10_000) as f64 / 10_000.0) * 2f64.powi(shift);
    let f = quantize_multiplier(m as f32).expect("in range");
    assert!((-30..=30).contains(&f.shift));
    f
}

fn requantization(
    channels: Channels,
    count: usize,
    to: DType,
    zero_point: i32,
    narrow: bool,
    shift: i32,
    seed: u64,
) -> Requantization {
    let (lo, hi) = range_of(to).unwrap();
    let (min, max) = if narrow {
        (zero_point, (zero_point + 40).min(hi))
    } else {
        (lo, hi)
    };
    Requantization {
        fixed: (0..count)
            .map(|i| multiplier((shift + i as i32 * 7).rem_euclid(61) - 30, seed + i as u64))
            .collect(),
        channels,
        to,
        zero_point,
        min,
        max,
        mode: RequantMode::FixedPoint,
        multipliers: Vec::new(),
    }
}

#[test]
fn the_host_uses_the_vector_form_for_rows_and_scalar_for_columns() {
    let flags = host();
    if !Requantization::has_vector_form(&flags) {
        eprintln!("host without SSE4.2: only the scalar form runs here");
        return;
    }
    let (rows, cols) = (3, 37);
    let acc = accumulators(rows * (cols + 3), 1);
    for channels in [Channels::One, Channels::Rows] {
        let q = requantization(channels, rows, DType::U8, 3, false, -8, 2);
        let q = Requantization {
            fixed: if channels == Channels::One {
                q.fixed[..1].to_vec()
            } else {
                q.fixed
            },
            ..q
        };
        let listing = check(flags, &q, &acc, rows, cols);
        // The vector form's narrowing (`vpackssdw`, then `vpackuswb` for u8).
        assert!(listing.contains("packssdw"), "{channels:?}: {listing}");
        assert!(listing.contains("packuswb"), "{channels:?}: {listing}");
    }
    let q = requantization(Channels::Columns, cols, DType::I8, -3, false, -8, 3);
    let listing = check(flags, &q, &acc, rows, cols);
    assert!(!listing.contains("packssdw"), "{listing}");
    let no_sse42 = IsaFlags {
        has_sse42: false,
        ..flags
    };
    assert!(!Requantization::has_vector_form(&no_sse42));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn requantization_matches_the_interpreter(
        rows in 1usize..4, cols in 0usize..41, channel_pick in 0usize..3, signed in any::<bool>(),
        zp in -20i32..20, narrow in any::<bool>(), shift in -30i32..31, scalar in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let to = if signed { DType::I8 } else { DType::U8 };
        let zp = if signed { zp } else { zp + 128 };
        let (channels, count) = match channel_pick {
            0 => (Channels::One, 1),
            1 => (Channels::Rows, rows),
            _ => (Channels::Columns, cols.max(1)),
        };
        let q = requantization(channels, count, to, zp, narrow, shift, seed);
        let flags = if scalar { IsaFlags { has_sse42: false, ..host() } } else { host() };
        let acc = accumulators(rows * (cols + 3), seed ^ 0x5eed);
        check(flags, &q, &acc, rows, cols);
    }
}
