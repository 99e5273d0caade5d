//! Exact textual forms of numbers and dense tensor literals.
//!
//! Floats print in the shortest form that parses back to the same value (`0.1`, `1e-7`, `-0.0`),
//! `inf`, `-inf`, `nan` for the dtype's canonical quiet NaN, and `nan(0xBITS)` (the raw bits at the
//! element's width) for any other NaN. f16 and bf16 elements print as the shortest f32 form of their
//! (exactly widened) value, which parses back to the same half.

use crate::dtype::DType;
use crate::tensor::{f16_to_f32, f32_to_f16, Tensor};
use std::fmt::{self, Write};

pub(crate) const CANON_NAN_F32: u32 = 0x7fc0_0000;
pub(crate) const CANON_NAN_F64: u64 = 0x7ff8_0000_0000_0000;
pub(crate) const CANON_NAN_F16: u16 = 0x7e00;
pub(crate) const CANON_NAN_BF16: u16 = 0x7fc0;

fn finite_or_inf_f32(v: f32, out: &mut String) {
    if v == f32::INFINITY {
        out.push_str("inf");
    } else if v == f32::NEG_INFINITY {
        out.push_str("-inf");
    } else {
        let _ = write!(out, "{v:?}");
    }
}

/// The exact text form of an f32.
pub fn fmt_f32(v: f32) -> String {
    let mut s = String::new();
    if v.is_nan() {
        if v.to_bits() == CANON_NAN_F32 {
            s.push_str("nan");
        } else {
            let _ = write!(s, "nan(0x{:08x})", v.to_bits());
        }
    } else {
        finite_or_inf_f32(v, &mut s);
    }
    s
}

/// The exact text form of an f64.
pub fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        if v.to_bits() == CANON_NAN_F64 {
            "nan".to_string()
        } else {
            format!("nan(0x{:016x})", v.to_bits())
        }
    } else if v == f64::INFINITY {
        "inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-inf".to_string()
    } else {
        format!("{v:?}")
    }
}

fn fmt_half(bits: u16, canon: u16, widen: fn(u16) -> f32, out: &mut String) {
    let v = widen(bits);
    if v.is_nan() {
        if bits == canon {
            out.push_str("nan");
        } else {
            let _ = write!(out, "nan(0x{bits:04x})");
        }
    } else {
        finite_or_inf_f32(v, out);
    }
}

pub(crate) fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// f32 to bf16, rounding to nearest even; NaNs become the canonical quiet NaN (with the sign).
pub(crate) fn f32_to_bf16(v: f32) -> u16 {
    let x = v.to_bits();
    if v.is_nan() {
        return ((x >> 16) as u16 & 0x8000) | CANON_NAN_BF16;
    }
    let round = 0x7fff + ((x >> 16) & 1);
    (x.wrapping_add(round) >> 16) as u16
}

/// Appends element `i` of `t` in its exact text form.
pub(crate) fn fmt_element(t: &Tensor, i: usize, out: &mut String) {
    let s = t.dtype().size();
    let Some(b) = t.bytes().get(i * s..(i + 1) * s) else {
        out.push('?');
        return;
    };
    let u16le = || u16::from_le_bytes([b[0], b[1]]);
    match t.dtype() {
        DType::F32 => out.push_str(&fmt_f32(f32::from_le_bytes(b.try_into().unwrap()))),
        DType::F64 => out.push_str(&fmt_f64(f64::from_le_bytes(b.try_into().unwrap()))),
        DType::F16 => fmt_half(u16le(), CANON_NAN_F16, f16_to_f32, out),
        DType::BF16 => fmt_half(u16le(), CANON_NAN_BF16, bf16_to_f32, out),
        DType::Bool => out.push_str(if b[0] != 0 { "true" } else { "false" }),
        DType::U64 => {
            let _ = write!(out, "{}", u64::from_le_bytes(b.try_into().unwrap()));
        }
        _ => {
            let _ = write!(out, "{}", t.get_i64(i));
        }
    }
}

/// Displays a tensor as a dense literal: `dense<3>` for rank 0, else `dense<[1, 2, 3]>` (flat,
/// row-major; the shape comes from the accompanying type).
pub(crate) struct DenseFmt<'a>(pub &'a Tensor);

impl fmt::Display for DenseFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        let mut s = String::from("dense<");
        if t.dims().is_empty() {
            fmt_element(t, 0, &mut s);
        } else {
            s.push('[');
            for i in 0..t.numel() {
                if i > 0 {
                    s.push_str(", ");
                }
                fmt_element(t, i, &mut s);
            }
            s.push(']');
        }
        s.push('>');
        f.write_str(&s)
    }
}

/// A scalar literal as written in the text, before its element type is known.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lit {
    /// An integer literal (decimal digits with optional `-`).
    Int(String),
    /// A decimal float literal (`1.5`, `-2e-3`).
    Float(String),
    Inf {
        neg: bool,
    },
    /// `nan` (None) or `nan(0xBITS)`.
    Nan(Option<u64>),
    Bool(bool),
}

/// Converts a literal to the little-endian bytes of one element of `dtype`.
pub(crate) fn lit_to_bytes(lit: &Lit, dtype: DType, out: &mut Vec<u8>) -> Result<(), String> {
    if dtype == DType::Bool {
        return match lit {
            Lit::Bool(b) => {
                out.push(*b as u8);
                Ok(())
            }
            _ => Err(format!(
                "expected `true` or `false` for a bool element, got {}",
                lit_desc(lit)
            )),
        };
    }
    if dtype.is_int() {
        let Lit::Int(s) = lit else {
            return Err(format!(
                "expected an integer for a {dtype} element, got {}",
                lit_desc(lit)
            ));
        };
        let v: i128 = s
            .parse()
            .map_err(|_| format!("integer `{s}` is out of range for {dtype}"))?;
        let (lo, hi) = dtype.int_range().expect("integer dtype");
        if v < lo || v > hi {
            return Err(format!("integer `{s}` is out of range for {dtype}"));
        }
        let bytes = (v as u128).to_le_bytes();
        out.extend_from_slice(&bytes[..dtype.size()]);
        return Ok(());
    }
    // Floats.
    match dtype {
        DType::F64 => {
            let v = lit_f64(lit)?;
            out.extend_from_slice(&v.to_le_bytes());
        }
        DType::F32 => {
            let v = lit_f32(lit)?;
            out.extend_from_slice(&v.to_le_bytes());
        }
        DType::F16 | DType::BF16 => {
            let bits = match lit {
                Lit::Nan(Some(b)) => {
                    check_nan_bits(*b, 16)?;
                    *b as u16
                }
                Lit::Nan(None) if dtype == DType::F16 => CANON_NAN_F16,
                Lit::Nan(None) => CANON_NAN_BF16,
                _ => {
                    let v = lit_f32(lit)?;
                    if dtype == DType::F16 {
                        f32_to_f16(v)
                    } else {
                        f32_to_bf16(v)
                    }
                }
            };
            out.extend_from_slice(&bits.to_le_bytes());
        }
        _ => unreachable!("float dtype"),
    }
    Ok(())
}

fn lit_desc(lit: &Lit) -> String {
    match lit {
        Lit::Int(s) | Lit::Float(s) => format!("`{s}`"),
        Lit::Inf { neg: false } => "`inf`".into(),
        Lit::Inf { neg: true } => "`-inf`".into(),
        Lit::Nan(None) => "`nan`".into(),
        Lit::Nan(Some(b)) => format!("`nan(0x{b:x})`"),
        Lit::Bool(b) => format!("`{b}`"),
    }
}

fn check_nan_bits(bits: u64, width: u32) -> Result<(), String> {
    let ok = match width {
        16 => bits <= 0xffff,
        32 => bits <= 0xffff_ffff,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("nan(0x{bits:x}) does not fit in {width} bits"))
    }
}

/// A literal as an f32 (exact for printed forms).
pub(crate) fn lit_f32(lit: &Lit) -> Result<f32, String> {
    Ok(match lit {
        Lit::Int(s) | Lit::Float(s) => s
            .parse::<f32>()
            .map_err(|_| format!("invalid float `{s}`"))?,
        Lit::Inf { neg } => {
            if *neg {
                f32::NEG_INFINITY
            } else {
                f32::INFINITY
            }
        }
        Lit::Nan(None) => f32::from_bits(CANON_NAN_F32),
        Lit::Nan(Some(b)) => {
            check_nan_bits(*b, 32)?;
            f32::from_bits(*b as u32)
        }
        Lit::Bool(_) => return Err(format!("expected a float, got {}", lit_desc(lit))),
    })
}

fn lit_f64(lit: &Lit) -> Result<f64, String> {
    Ok(match lit {
        Lit::Int(s) | Lit::Float(s) => s
            .parse::<f64>()
            .map_err(|_| format!("invalid float `{s}`"))?,
        Lit::Inf { neg } => {
            if *neg {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        }
        Lit::Nan(None) => f64::from_bits(CANON_NAN_F64),
        Lit::Nan(Some(b)) => f64::from_bits(*b),
        Lit::Bool(_) => return Err(format!("expected a float, got {}", lit_desc(lit))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(dtype: DType, bytes: &[u8]) {
        let t = Tensor::from_bytes(dtype, vec![], bytes::Bytes::copy_from_slice(bytes)).unwrap();
        let mut s = String::new();
        fmt_element(&t, 0, &mut s);
        let lit = if s == "true" || s == "false" {
            Lit::Bool(s == "true")
        } else if s == "nan" {
            Lit::Nan(None)
        } else if let Some(h) = s.strip_prefix("nan(0x") {
            Lit::Nan(Some(u64::from_str_radix(&h[..h.len() - 1], 16).unwrap()))
        } else if s == "inf" || s == "-inf" {
            Lit::Inf {
                neg: s.starts_with('-'),
            }
        } else if s.contains(['.', 'e']) {
            Lit::Float(s.clone())
        } else {
            Lit::Int(s.clone())
        };
        let mut out = vec![];
        lit_to_bytes(&lit, dtype, &mut out).unwrap();
        assert_eq!(out, bytes, "{dtype} {s}");
    }

    #[test]
    fn every_half_round_trips() {
        for h in 0..=u16::MAX {
            round_trip(DType::F16, &h.to_le_bytes());
            round_trip(DType::BF16, &h.to_le_bytes());
        }
    }

    #[test]
    fn special_floats_round_trip() {
        for v in [
            0.0f32,
            -0.0,
            1.0,
            0.1,
            1e-7,
            3.4e38,
            f32::MIN_POSITIVE,
            1e-45,
            f32::INFINITY,
        ] {
            round_trip(DType::F32, &v.to_le_bytes());
            round_trip(DType::F32, &(-v).to_le_bytes());
            round_trip(DType::F64, &(v as f64).to_le_bytes());
        }
        for bits in [CANON_NAN_F32, 0xffc0_0000, 0x7f80_0001] {
            round_trip(DType::F32, &bits.to_le_bytes());
        }
        round_trip(DType::F64, &CANON_NAN_F64.to_le_bytes());
        round_trip(DType::F64, &(CANON_NAN_F64 | 1).to_le_bytes());
        round_trip(DType::U64, &u64::MAX.to_le_bytes());
        round_trip(DType::I64, &i64::MIN.to_le_bytes());
        round_trip(DType::Bool, &[1]);
        assert_eq!(fmt_f32(f32::from_bits(0xffc0_0000)), "nan(0xffc00000)");
    }
}
