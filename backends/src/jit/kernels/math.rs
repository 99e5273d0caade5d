//! Transcendental functions as straight-line polynomial code on `F32` or `F32X4` values.
//!
//! Contract (checked by `backends/tests/jit_math.rs` over the whole f32 range against f64):
//! |result - exact| <= 1e-6 |exact| + 1e-7 for `exp`, `log`, `tanh`, `sigmoid` and `erf`, with
//! IEEE behaviour at the edges (NaN in gives NaN, `exp(-inf) = 0`, `exp(inf) = inf`,
//! `log(0) = -inf`, `log(x < 0) = NaN`, `log(inf) = inf`). No function calls anything: rounding
//! uses the add-magic trick, 2^n is built from exponent bits.

use super::exp_constants::SIGMOID_EXP_BIAS;
pub use super::exp_constants::{ExpConstants, SigmoidConstants};
use crate::jit::emit::Emitter;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Value};

/// `erf(x) = x·ERF_P(x²) / ERF_Q(x²)` on `|x| <= 3.92`: minimax for relative error, 1.8e-7
/// before f32 rounding of the coefficients, 3.9e-7 evaluated in f32.
const ERF_P: [f32; 6] = [
    std::f32::consts::FRAC_2_SQRT_PI,
    0.144_726_66,
    0.047_026_075,
    0.001_918_820_5,
    0.000_262_830_4,
    2.639_835e-6,
];
const ERF_Q: [f32; 6] = [
    1.0,
    0.461_597_03,
    0.095_525_33,
    0.011_222_172,
    0.000_753_083_85,
    4.308_705e-5,
];

/// `tanh(x) = x·TANH_P(x²) / TANH_Q(x²)` on `|x| <= 7.9`: minimax for relative error, 3.1e-7
/// before f32 rounding of the coefficients, 4.5e-7 evaluated in f32.
const TANH_P: [f32; 7] = [
    0.999_999_7,
    0.112_551_086,
    0.001_047_468_9,
    -1.089_730_7e-5,
    7.401_171_6e-8,
    -4.390_623_1e-10,
    1.318_846_8e-12,
];
const TANH_Q: [f32; 4] = [1.0, 0.445_881_8, 0.016_345_18, -4.769_467_7e-5];

impl Emitter<'_, '_> {
    fn ty_of(&self, v: Value) -> cranelift_codegen::ir::Type {
        self.fb.func.dfg.value_type(v)
    }

    /// Round to nearest (ties to even) for |x| < 2^22, as a float; exact integers pass through.
    pub fn round_magic(&mut self, x: Value) -> Value {
        let ty = self.ty_of(x);
        let magic = self.fconst(ty, 12582912.0); // 1.5 * 2^23
        let t = self.fb.ins().fadd(x, magic);
        self.fb.ins().fsub(t, magic)
    }

    /// `nearest` (round half to even) without libcalls: the instruction when the ISA rounds
    /// natively, else the magic-number trick for |x| < 2^23 (larger floats are integers).
    pub fn nearest(&mut self, x: Value) -> Value {
        if self.flags.has_round() {
            return self.fb.ins().nearest(x);
        }
        let ty = self.ty_of(x);
        let ax = self.fb.ins().fabs(x);
        let two23 = self.fconst(ty, 8388608.0);
        let big = self.fcmp(FloatCC::GreaterThanOrEqual, ax, two23);
        let nan = self.fcmp(FloatCC::Unordered, x, x);
        let r0 = self.fb.ins().fadd(ax, two23);
        let r1 = self.fb.ins().fsub(r0, two23);
        let r = self.copysign(r1, x);
        let keep = self.mask_or(big, nan);
        self.sel(keep, x, r)
    }

    /// `|a|` with the sign of `b` (bit operations: `fcopysign` has no x64 vector lowering).
    pub fn copysign(&mut self, a: Value, b: Value) -> Value {
        let ty = self.ty_of(a);
        let ity = Emitter::int_of(ty);
        let ai = self.bits(ity, a);
        let bi = self.bits(ity, b);
        let mag = self.iconst_ty(ity, 0x7fff_ffff);
        let sign = self.iconst_ty(ity, 0x8000_0000u32 as i32 as i64);
        let am = self.fb.ins().band(ai, mag);
        let bs = self.fb.ins().band(bi, sign);
        let r = self.fb.ins().bor(am, bs);
        self.bits(ty, r)
    }

    fn mask_or(&mut self, a: Value, b: Value) -> Value {
        self.fb.ins().bor(a, b)
    }

    pub fn floor(&mut self, x: Value) -> Value {
        if self.flags.has_round() {
            return self.fb.ins().floor(x);
        }
        let ty = self.ty_of(x);
        let r = self.nearest(x);
        let gt = self.fcmp(FloatCC::GreaterThan, r, x);
        let one = self.fconst(ty, 1.0);
        let zero = self.fconst(ty, 0.0);
        let d = self.sel(gt, one, zero);
        self.fb.ins().fsub(r, d)
    }

    pub fn ceil(&mut self, x: Value) -> Value {
        if self.flags.has_round() {
            return self.fb.ins().ceil(x);
        }
        let ty = self.ty_of(x);
        let r = self.nearest(x);
        let lt = self.fcmp(FloatCC::LessThan, r, x);
        let one = self.fconst(ty, 1.0);
        let zero = self.fconst(ty, 0.0);
        let d = self.sel(lt, one, zero);
        self.fb.ins().fadd(r, d)
    }

    pub fn trunc(&mut self, x: Value) -> Value {
        if self.flags.has_round() {
            return self.fb.ins().trunc(x);
        }
        let ax = self.fb.ins().fabs(x);
        let f = self.floor(ax);
        self.copysign(f, x)
    }

    /// `c[0] + c[1] x + c[2] x^2 + ...` in Estrin's scheme: pairs `c[2i] + c[2i+1] x`, then the
    /// same over the pairs in `x^2`, and so on, three terms left being Horner's (degree 5:
    /// 3 dependent multiply-adds instead of Horner's 5). `pows[k]` is `x^(2^k)`; missing powers are computed and appended, so several
    /// polynomials in the same `x` share them.
    fn poly_estrin(&mut self, pows: &mut Vec<Value>, c: &[f32]) -> Value {
        let ty = self.ty_of(pows[0]);
        let mut terms: Vec<Value> = c.iter().map(|&v| self.fconst(ty, v)).collect();
        let mut level = 0;
        while terms.len() > 1 {
            if pows.len() <= level {
                let p = pows[level - 1];
                let sq = self.fb.ins().fmul(p, p);
                pows.push(sq);
            }
            let x = pows[level];
            if let [a, b, c] = terms[..] {
                // a + x (b + x c): as deep as squaring x first, one instruction less.
                let t = self.fma(c, x, b);
                return self.fma(t, x, a);
            }
            terms = terms
                .chunks(2)
                .map(|t| match *t {
                    [a, b] => self.fma(b, x, a),
                    [a] => a,
                    _ => unreachable!(),
                })
                .collect();
            level += 1;
        }
        terms[0]
    }

    /// `x` clamped to `[lo, hi]` ([`Self::lower_to`], then [`Self::raise_to`]); a NaN passes
    /// through.
    pub fn clamp(&mut self, x: Value, lo: f32, hi: f32) -> Value {
        let ty = self.ty_of(x);
        let hi = self.fconst(ty, hi);
        let x = self.lower_to(x, hi);
        let lo = self.fconst(ty, lo);
        self.raise_to(x, lo)
    }

    /// `x < lo ? lo : x`, the interpreter's lower bound (`interp::elementwise`): a NaN `x` or
    /// bound and a `-0.0` against `0.0` leave `x` as it is. One `maxps` (`maxss`) on x86-64, where
    /// CLIF's `fmax` is a seven-instruction IEEE sequence.
    pub fn raise_to(&mut self, x: Value, lo: Value) -> Value {
        let below = self.fcmp(FloatCC::LessThan, x, lo);
        self.sel(below, lo, x)
    }

    /// `x > hi ? hi : x`, the interpreter's upper bound; one `minps` (`minss`) on x86-64.
    pub fn lower_to(&mut self, x: Value, hi: Value) -> Value {
        let above = self.fcmp(FloatCC::LessThan, hi, x);
        self.sel(above, hi, x)
    }

    /// The range reduction `exp` and `sigmoid` share. With `u = -x` when `negate`, else `u = x`
    /// (clamped by the caller so that `bias + n` is in `[0, 255]`): `n = round(u·log2 e)`,
    /// `r = u - n·ln2` (`|r| <= ln2/2 + 1e-6`, two-constant reduction), and returns
    /// `(scale·P(r), 2^(n + bias - 127))` where `P` is `exp_constants::EXP_POLY`. The 2^k factor is the
    /// magic-number rounding's own bit pattern shifted into the exponent field: the magic constant
    /// `1.5·2^23 + bias` has `bias + n` in its low 9 bits after the add, and its higher bits
    /// shift out. An exponent field of 0 gives 0.0, of 255 gives +inf.
    fn exp_reduced(&mut self, x: Value, negate: bool, scale: f32, bias: i32) -> (Value, Value) {
        let k = ExpConstants::new(negate, scale, bias);
        let ty = self.ty_of(x);
        let ity = Emitter::int_of(ty);
        let log2e = self.fconst(ty, k.log2e);
        let t = self.fb.ins().fmul(x, log2e);
        let magic = self.fconst(ty, k.magic);
        let tm = self.fb.ins().fadd(t, magic);
        let n = self.fb.ins().fsub(tm, magic);
        // s = x - n·ln2·sgn = sgn·r exactly as computed from u (negation is exact).
        let ln2_hi = self.fconst(ty, k.ln2_hi);
        let ln2_lo = self.fconst(ty, k.ln2_lo);
        let s0 = self.fma(n, ln2_hi, x);
        let s = self.fma(n, ln2_lo, s0);
        let p = self.poly_estrin(&mut vec![s], &k.poly);
        let tm_bits = self.bits(ity, tm);
        let e = self.fb.ins().ishl_imm_s(tm_bits, 23);
        (p, self.bits(ty, e))
    }

    /// `e^x`.
    pub fn exp(&mut self, x: Value) -> Value {
        // n = round(x·log2 e) in [-126, 128] after the clamp; the result is 2·P(r) · 2^(n-1), so
        // n = 128 stays finite up to ln(f32::MAX) and overflows to +inf above it, and
        // x < -87.5 (n = -126: exponent field 0) gives 0 (exact results there are < 1.7e-38,
        // inside the absolute tolerance).
        let xc = self.clamp(x, -87.5, 88.8);
        let (p, scale) = self.exp_reduced(xc, false, 2.0, 126);
        self.fb.ins().fmul(p, scale)
    }

    /// Natural logarithm.
    pub fn log(&mut self, x: Value) -> Value {
        let ty = self.ty_of(x);
        let ity = Emitter::int_of(ty);
        // Scale subnormals up by 2^23.
        let min_norm = self.fconst(ty, f32::MIN_POSITIVE);
        let is_sub = self.fcmp(FloatCC::LessThan, x, min_norm);
        let scale = self.fconst(ty, 8388608.0);
        let xs = self.fb.ins().fmul(x, scale);
        let xn = self.sel(is_sub, xs, x);
        let e_adj0 = self.fconst(ty, -23.0);
        let zero = self.fconst(ty, 0.0);
        let e_adj = self.sel(is_sub, e_adj0, zero);
        let bits = self.bits(ity, xn);
        let ebits = self.fb.ins().ushr_imm_s(bits, 23);
        let bias = self.iconst_ty(ity, 127);
        let ei = self.fb.ins().isub(ebits, bias);
        let mmask = self.iconst_ty(ity, 0x007f_ffff);
        let one_bits = self.iconst_ty(ity, 0x3f80_0000);
        let mb = self.fb.ins().band(bits, mmask);
        let mb = self.fb.ins().bor(mb, one_bits);
        let m = self.bits(ty, mb); // [1, 2)
        let ef0 = self.fb.ins().fcvt_from_sint(ty, ei);
        let ef0 = self.fb.ins().fadd(ef0, e_adj);
        let sqrt2 = self.fconst(ty, std::f32::consts::SQRT_2);
        let big = self.fcmp(FloatCC::GreaterThan, m, sqrt2);
        let half = self.fconst(ty, 0.5);
        let one = self.fconst(ty, 1.0);
        let mh = self.fb.ins().fmul(m, half);
        let m = self.sel(big, mh, m);
        let ef1 = self.fb.ins().fadd(ef0, one);
        let ef = self.sel(big, ef1, ef0);
        // log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716.
        let f = self.fb.ins().fsub(m, one);
        let d = self.fb.ins().fadd(m, one);
        let s = self.fb.ins().fdiv(f, d);
        let z = self.fb.ins().fmul(s, s);
        let p = self.poly(
            z,
            &[
                1.0,
                1.0 / 3.0,
                1.0 / 5.0,
                1.0 / 7.0,
                1.0 / 9.0,
                1.0 / 11.0,
                1.0 / 13.0,
            ],
        );
        let two = self.fconst(ty, 2.0);
        let s2 = self.fb.ins().fmul(s, two);
        let lm = self.fb.ins().fmul(s2, p);
        let ln2_hi = self.fconst(ty, 0.693_145_75);
        let ln2_lo = self.fconst(ty, 1.428_606_8e-6);
        let a = self.fma(ef, ln2_lo, lm);
        let y = self.fma(ef, ln2_hi, a);
        // Edges: x == 0 -> -inf; x < 0 or NaN -> NaN; +inf -> +inf.
        let is_zero = self.fcmp(FloatCC::Equal, x, zero);
        let ninf = self.fconst(ty, f32::NEG_INFINITY);
        let y = self.sel(is_zero, ninf, y);
        let bad = self.fcmp(FloatCC::UnorderedOrLessThan, x, zero);
        let nan = self.fconst(ty, f32::NAN);
        let y = self.sel(bad, nan, y);
        let inf = self.fconst(ty, f32::INFINITY);
        let is_inf = self.fcmp(FloatCC::Equal, x, inf);
        self.sel(is_inf, inf, y)
    }

    /// `1 / (1 + e^-x)`.
    pub fn sigmoid(&mut self, x: Value) -> Value {
        // e^-x = P(r) · 2^n with n = round(-x·log2 e) in [-126, 128] after the clamp: n = 128
        // is the exponent field 255, +inf, so sigmoid(x <= -88.4) = 0 (exact < 4e-39); at the
        // other end e^-x < 1e-38 vanishes next to 1. The relative error of e^-x carries over to
        // the sigmoid scaled by e^-x / (1 + e^-x) < 1.
        let k = SigmoidConstants::get();
        let ty = self.ty_of(x);
        let xc = self.clamp(x, k.lo, k.hi);
        let (p, scale) = self.exp_reduced(xc, true, 1.0, SIGMOID_EXP_BIAS);
        let ex = self.fb.ins().fmul(p, scale);
        let one = self.fconst(ty, 1.0);
        let d = self.fb.ins().fadd(one, ex);
        self.fb.ins().fdiv(one, d)
    }

    /// Hyperbolic tangent.
    pub fn tanh(&mut self, x: Value) -> Value {
        // x·P(x²)/Q(x²) on |x| <= 7.9 ([`TANH_P`], [`TANH_Q`]), with x clamped there first
        // (1 - tanh(7.9) = 2.7e-7) and the quotient clamped to [-1, 1] after (the approximation
        // reaches 1 + 2e-7 near the clamp, so tanh(±inf) = ±1 exactly). NaN passes both clamps.
        let xc = self.clamp(x, -7.9, 7.9);
        let z = self.fb.ins().fmul(xc, xc);
        let mut pows = vec![z];
        let p = self.poly_estrin(&mut pows, &TANH_P);
        let q = self.poly_estrin(&mut pows, &TANH_Q);
        let xp = self.fb.ins().fmul(xc, p);
        let y = self.fb.ins().fdiv(xp, q);
        self.clamp(y, -1.0, 1.0)
    }

    /// Error function.
    pub fn erf(&mut self, x: Value) -> Value {
        // x·P(x²)/Q(x²) on |x| <= 3.92 ([`ERF_P`], [`ERF_Q`]), with x clamped there first (erfc(3.92)
        // = 3e-8) and the quotient clamped to [-1, 1] after (the approximation reaches 1 + 1e-7
        // near the clamp, so erf(±inf) = ±1 exactly). NaN passes both clamps.
        let xc = self.clamp(x, -3.92, 3.92);
        let z = self.fb.ins().fmul(xc, xc);
        let mut pows = vec![z];
        let p = self.poly_estrin(&mut pows, &ERF_P);
        let q = self.poly_estrin(&mut pows, &ERF_Q);
        let xp = self.fb.ins().fmul(xc, p);
        let y = self.fb.ins().fdiv(xp, q);
        self.clamp(y, -1.0, 1.0)
    }
}
