//! Transcendental functions as straight-line polynomial code on `F32` or `F32X4` values.
//!
//! Contract (checked by `backends/tests/jit_math.rs` over the whole f32 range against f64):
//! |result - exact| <= 1e-6 |exact| + 1e-7 for `exp`, `log`, `tanh`, `sigmoid` and `erf`, with
//! IEEE behaviour at the edges (NaN in gives NaN, `exp(-inf) = 0`, `exp(inf) = inf`,
//! `log(0) = -inf`, `log(x < 0) = NaN`, `log(inf) = inf`). No function calls anything: rounding
//! uses the add-magic trick, 2^n is built from exponent bits.

use super::emit::E;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Value};

impl E<'_, '_> {
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
        let ity = E::int_of(ty);
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

    /// The common part of `exp` and `sigmoid`: clamps `x` to `[lo, hi]` (compare-and-select: a NaN
    /// compares false and passes through, and this is much shorter than the NaN-exact fmin/fmax),
    /// reduces it to `x = n·ln2 + r` with `|r| <= ln2/2`, and returns the Taylor polynomial of
    /// `e^r` to `degree` together with the integer `n` (I32 lanes). `n = round(x·log2 e)` comes from
    /// the magic-number trick; its integer value is the difference of the bit patterns, so no
    /// float-to-int conversion is needed.
    fn exp_reduced(&mut self, x: Value, lo: f32, hi: f32, degree: usize) -> (Value, Value) {
        const TAYLOR: [f32; 8] = [
            1.0,
            1.0,
            0.5,
            1.0 / 6.0,
            1.0 / 24.0,
            1.0 / 120.0,
            1.0 / 720.0,
            1.0 / 5040.0,
        ];
        let ty = self.ty_of(x);
        let ity = E::int_of(ty);
        let hi = self.fconst(ty, hi);
        let lo = self.fconst(ty, lo);
        let above = self.fcmp(FloatCC::GreaterThan, x, hi);
        let xc0 = self.sel(above, hi, x);
        let below = self.fcmp(FloatCC::LessThan, xc0, lo);
        let xc = self.sel(below, lo, xc0);
        let log2e = self.fconst(ty, std::f32::consts::LOG2_E);
        let t = self.fb.ins().fmul(xc, log2e);
        let magic = self.fconst(ty, 12582912.0); // 1.5 * 2^23
        let tm = self.fb.ins().fadd(t, magic);
        let n = self.fb.ins().fsub(tm, magic);
        let ln2_hi = self.fconst(ty, -0.693_145_75);
        let ln2_lo = self.fconst(ty, -1.428_606_8e-6);
        let r0 = self.fma(n, ln2_hi, xc);
        let r = self.fma(n, ln2_lo, r0);
        let p = self.poly(r, &TAYLOR[..=degree]);
        let tm_bits = self.bits(ity, tm);
        let magic_bits = self.iconst_ty(ity, 12582912.0f32.to_bits() as i64);
        let ni = self.fb.ins().isub(tm_bits, magic_bits);
        (p, ni)
    }

    /// `2^n` for integer lanes `n` in `[-126, 128]` (128 gives +inf), from the exponent field.
    fn pow2(&mut self, n: Value, ty: cranelift_codegen::ir::Type) -> Value {
        let ity = E::int_of(ty);
        let bias = self.iconst_ty(ity, 127);
        let e = self.fb.ins().iadd(n, bias);
        let e = self.fb.ins().ishl_imm_s(e, 23);
        self.bits(ty, e)
    }

    /// `e^x`.
    pub fn exp(&mut self, x: Value) -> Value {
        let ty = self.ty_of(x);
        let (hi, lo) = (88.72283, -87.33654);
        // Taylor to degree 7 on |r| <= ln2/2: truncation error < 6e-9 relative.
        let (p, ni) = self.exp_reduced(x, lo, hi, 7);
        // n in [-126, 128] after the clamp: split the scale in two factors to cover n = 128 and
        // n = -126 without overflow/denormal exponents.
        let half = self.fb.ins().sshr_imm_s(ni, 1);
        let rest = self.fb.ins().isub(ni, half);
        let f1 = self.pow2(half, ty);
        let f2 = self.pow2(rest, ty);
        let y0 = self.fb.ins().fmul(p, f1);
        let y = self.fb.ins().fmul(y0, f2);
        // Beyond the clamp: +inf above, 0 below.
        let hi = self.fconst(ty, hi);
        let lo = self.fconst(ty, lo);
        let over = self.fcmp(FloatCC::GreaterThan, x, hi);
        let under = self.fcmp(FloatCC::LessThan, x, lo);
        let inf = self.fconst(ty, f32::INFINITY);
        let zero = self.fconst(ty, 0.0);
        let y = self.sel(over, inf, y);
        self.sel(under, zero, y)
    }

    /// Natural logarithm.
    pub fn log(&mut self, x: Value) -> Value {
        let ty = self.ty_of(x);
        let ity = E::int_of(ty);
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
        // 1 / (1 + e^-x) with a shorter e^-x than `exp`: the argument is clamped to [-87, 89], where
        // 2^n is one exponent field (n = 128 gives +inf, so sigmoid(-inf) = 0 exactly) with no
        // overflow/underflow fix-ups, and the Taylor series stops at degree 6 (truncation
        // < 1.3e-7 relative on |r| <= ln2/2, which the sigmoid inherits at most). Outside the
        // clamp the exact result is within 1e-38 of 0, or rounds to 1.
        let ty = self.ty_of(x);
        let nx = self.fb.ins().fneg(x);
        let (p, ni) = self.exp_reduced(nx, -87.0, 89.0, 6);
        let scale = self.pow2(ni, ty);
        let ex = self.fb.ins().fmul(p, scale);
        let one = self.fconst(ty, 1.0);
        let d = self.fb.ins().fadd(one, ex);
        self.fb.ins().fdiv(one, d)
    }

    /// Hyperbolic tangent.
    pub fn tanh(&mut self, x: Value) -> Value {
        let ty = self.ty_of(x);
        let ax = self.fb.ins().fabs(x);
        // Small |x|: odd Taylor series to x^15 (|x| < 0.4: truncation < 1e-9 relative).
        let x2 = self.fb.ins().fmul(x, x);
        let p = self.poly(
            x2,
            &[
                1.0,
                -1.0 / 3.0,
                2.0 / 15.0,
                -17.0 / 315.0,
                62.0 / 2835.0,
                -1382.0 / 155925.0,
                21844.0 / 6081075.0,
                -929569.0 / 638512875.0,
            ],
        );
        let small = self.fb.ins().fmul(x, p);
        // Large |x|: 1 - 2 / (e^{2|x|} + 1), sign restored.
        let two = self.fconst(ty, 2.0);
        let a2 = self.fb.ins().fmul(ax, two);
        let ex = self.exp(a2);
        let one = self.fconst(ty, 1.0);
        let d = self.fb.ins().fadd(ex, one);
        let q = self.fb.ins().fdiv(two, d);
        let l = self.fb.ins().fsub(one, q);
        let large = self.copysign(l, x);
        let lim = self.fconst(ty, 0.4);
        let is_small = self.fcmp(FloatCC::LessThan, ax, lim);
        self.sel(is_small, small, large)
    }

    /// Error function.
    pub fn erf(&mut self, x: Value) -> Value {
        let ty = self.ty_of(x);
        let ax = self.fb.ins().fabs(x);
        // |x| < 0.5: Maclaurin series to x^17 (truncation < 1e-10 relative).
        let x2 = self.fb.ins().fmul(x, x);
        let c = std::f64::consts::FRAC_2_SQRT_PI;
        let mut coef = Vec::new();
        let mut fact = 1.0f64;
        for n in 0..9 {
            if n > 0 {
                fact *= n as f64;
            }
            let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
            coef.push((sign * c / (fact * (2 * n + 1) as f64)) as f32);
        }
        let p = self.poly(x2, &coef);
        let small = self.fb.ins().fmul(x, p);
        // |x| >= 0.5: Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7), sign restored.
        let pc = self.fconst(ty, 0.327_591_1);
        let one = self.fconst(ty, 1.0);
        let d = self.fma(pc, ax, one);
        let t = self.fb.ins().fdiv(one, d);
        let q = self.poly(
            t,
            &[
                0.0,
                0.254_829_6,
                -0.284_496_74,
                1.421_413_7,
                -1.453_152_1,
                1.061_405_4,
            ],
        );
        let nx2 = self.fb.ins().fneg(x2);
        let ex = self.exp(nx2);
        let qe = self.fb.ins().fmul(q, ex);
        let l = self.fb.ins().fsub(one, qe);
        let large = self.copysign(l, x);
        let lim = self.fconst(ty, 0.5);
        let is_small = self.fcmp(FloatCC::LessThan, ax, lim);
        // NaN stays NaN (the compare above is false for NaN, and `large` is NaN).
        self.sel(is_small, small, large)
    }
}
