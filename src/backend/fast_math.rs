//! Vectorisable `exp` and `tanh` for `f32`.
//!
//! `f32::exp` is a call into libm, one element at a time; softmax over a 50,257-word vocabulary,
//! cross-entropy and attention call it tens of millions of times per training step. These versions
//! are straight-line code (no branches, no calls) that LLVM turns into SIMD loops. Accuracy: within
//! 2 ulp of the correctly rounded result wherever the result is a normal f32 (tested in this file
//! against `f64::exp` / `f64::tanh`; results below `f32::MIN_POSITIVE` flush to 0), and exact at
//! the special values that matter: `exp(-inf) = 0`, `exp(+inf) = inf`, NaN in → NaN out.
//!
//! The f64 element type does not use these: gradient checks want libm's exact results.

/// `a·b + c`: one fused multiply-add instruction where the target has FMA (our
/// `.cargo/config.toml` builds for the native CPU), else a multiply and an add — never the slow
/// software `fmaf` that `mul_add` falls back to without hardware FMA.
#[inline(always)]
fn madd(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

// ln 2 split into a part exact in f32 and the rest, so n·LN2_HI has no rounding error.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2²³: adding it rounds to the nearest integer, and leaves that integer in the low bits.
const ROUND: f32 = 12_582_912.0;
/// ln(f32::MIN_POSITIVE) and ln(f32::MAX), rounded inwards: the range where e^x is a normal f32.
const EXP_LO: f32 = -87.336_54;
const EXP_HI: f32 = 88.722_83;

/// The core both `exp`s share, for `xc` already inside `[EXP_LO, EXP_HI]`: range reduction
/// `xc = n·ln2 + r` with |r| ≤ ln2/2, and `e^r` from a degree-6 minimax polynomial (Cephes'
/// `expf` coefficients). Returns `(e^r, t)` where `t = xc·log₂e + 1.5·2²³` holds n in the low
/// bits of its representation — each caller applies 2^n in its own way.
#[inline(always)]
fn exp_reduced(xc: f32) -> (f32, f32) {
    let t = madd(xc, std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = madd(n, -LN2_HI, xc);
    let r = madd(n, -LN2_LO, r);
    let mut p = 1.987_569_1e-4_f32;
    p = madd(p, r, 1.398_199_9e-3);
    p = madd(p, r, 8.333_452e-3);
    p = madd(p, r, 4.166_579_6e-2);
    p = madd(p, r, 1.666_666_5e-1);
    p = madd(p, r, 5e-1); // Cephes: 5.0000001e-1, which rounds to 0.5 in f32
    (madd(p * r, r, r) + 1.0, t)
}

/// e^x for one f32: e^x = 2^n · e^r (see [`exp_reduced`]).
///
/// The count of vector instructions is what sets the speed of softmax, GELU, cross-entropy and
/// attention on the CPU (their inputs sit in cache), so every step here is one instruction:
/// - `n = round(x·log₂e)` by adding and subtracting 1.5·2²³ (no float→int conversion);
/// - 2^n is applied by adding `n` to the exponent field of e^r's bits, an integer add; `n` is
///   already in the low bits of `x·log₂e + 1.5·2²³`, so shifting those bits left by 23 puts it
///   in place (the shift drops the rest);
/// - the range limits are three selects, not branches.
///
/// Range: results below `f32::MIN_POSITIVE` (x < −87.336) are flushed to 0 — as in
/// denormals-are-zero arithmetic — and x > 88.7228 gives +∞.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let xc = if x < EXP_LO { EXP_LO } else { x };
    let xc = if xc > EXP_HI { EXP_HI } else { xc };
    let (er, t) = exp_reduced(xc);
    // e^r ∈ [0.70, 1.42] has biased exponent 126 or 127, and n ∈ [−126, 128] inside [LO, HI];
    // n = 128 only when r < 0 (so e^r < 1), and n = −126 only when r ≥ 0 (so e^r ≥ 1): the
    // shifted exponent stays in 1..=254, a normal float, with no overflow into the sign bit.
    let y = f32::from_bits(er.to_bits().wrapping_add(t.to_bits() << 23));
    let y = if x < EXP_LO { 0.0 } else { y };
    let y = if x > EXP_HI { f32::INFINITY } else { y };
    // NaN fails both comparisons and the clamps keep it, but its payload bits could reach the
    // exponent add above, so return it explicitly.
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// e^x for x ≤ 0 — the shifted inputs of softmax, cross-entropy and attention (`x − max`,
/// `x − lse`), where this is most of the arithmetic. The same [`exp_reduced`] core as
/// [`exp_f32`], with two shortcuts that the sign allows:
/// - no upper limit: n = round(x·log₂e) ≤ 0, so 2^n is a normal float built directly from its
///   bits and applied with a multiplication;
/// - no NaN select: a NaN input stays NaN through the multiplication (NaN·s = NaN), where the
///   integer exponent add of [`exp_f32`] could have turned its payload into a number.
///
/// Below ln(`f32::MIN_POSITIVE`) the result is 0, as in [`exp_f32`]. (Positive x up to 88.0 are
/// also right; the callers never pass them.)
#[inline(always)]
pub fn exp_f32_nonpositive(x: f32) -> f32 {
    let xc = if x < EXP_LO { EXP_LO } else { x };
    let (er, t) = exp_reduced(xc);
    // 2^n for n ∈ [−126, 0]: biased exponent n + 127 in 1..=127 (n sits in t's low bits, as in
    // `exp_f32`; adding 127 << 23 after the shift biases it).
    let two_n = f32::from_bits((t.to_bits() << 23).wrapping_add(127 << 23));
    let y = er * two_n;
    if x < EXP_LO {
        0.0
    } else {
        y
    }
}

/// tanh for one f32. For |x| ≥ 0.625: tanh|x| = 1 − 2/(e^{2|x|} + 1), with the sign put back
/// (no cancellation there, since the result is ≥ 0.55). For |x| < 0.625 that form would lose
/// digits to cancellation, so an odd polynomial is used instead (Cephes' `tanhf` coefficients).
/// Both are computed and one is selected, which keeps the loop branch-free.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let ax = x.abs();
    let e = exp_f32(2.0 * ax.min(44.0));
    let big = 1.0 - 2.0 / (e + 1.0);
    let big = if x < 0.0 { -big } else { big };
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328e-1)
            * z
            * x
            + x;
    let y = if ax < 0.625 { small } else { big };
    // `ax.min(44.0)` swallows a NaN, so pass NaN through explicitly.
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// In-place `exp` over a slice.
pub fn exp_f32_slice(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = exp_f32(*v);
    }
}

/// In-place `tanh` over a slice.
pub fn tanh_f32_slice(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = tanh_f32(*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        let b32 = b as f32;
        if a == b32 {
            return 0.0;
        }
        let ulp = (b32.abs() * f32::EPSILON).max(f32::from_bits(1)) as f64;
        (a as f64 - b).abs() / ulp
    }

    #[test]
    fn exp_is_accurate_over_the_whole_range() {
        let mut worst: f64 = 0.0;
        let mut x = -103.0f32;
        while x < 88.7 {
            let got = exp_f32(x);
            let want = (x as f64).exp();
            if want > f32::MIN_POSITIVE as f64 {
                worst = worst.max(ulps(got, want));
            }
            x += 0.0137;
        }
        // The ends of the range, where 2^n is largest and smallest, and every float in a few
        // short stretches (all rounding cases of n = round(x·log₂e) near them).
        for start in [-87.336_54f32, -0.5, 88.72] {
            let mut x = start;
            for _ in 0..4096 {
                worst = worst.max(ulps(exp_f32(x), (x as f64).exp()));
                x = f32::from_bits(x.to_bits().wrapping_add(if x < 0.0 { u32::MAX } else { 1 }));
                x = x.min(88.722_83);
            }
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
    }

    #[test]
    fn exp_of_nonpositive_matches_exp_and_keeps_the_special_values() {
        let mut worst: f64 = 0.0;
        let mut x = -87.336_54f32;
        while x <= 0.0 {
            worst = worst.max(ulps(exp_f32_nonpositive(x), (x as f64).exp()));
            x += 0.000_731;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp_f32_nonpositive(0.0), 1.0);
        assert_eq!(exp_f32_nonpositive(-0.0), 1.0);
        assert_eq!(exp_f32_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32_nonpositive(-87.34), 0.0);
        for bits in [0x7FC0_0000u32, 0x7FC0_01FF, 0xFFC0_0101, 0x7F80_0001] {
            assert!(exp_f32_nonpositive(f32::from_bits(bits)).is_nan());
        }
    }

    #[test]
    fn exp_special_values() {
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(88.722_83).is_finite());
        assert_eq!(exp_f32(88.722_84), f32::INFINITY);
        // Below f32::MIN_POSITIVE the result is flushed to zero, never a garbage exponent.
        assert_eq!(exp_f32(-87.34), 0.0);
        assert!(exp_f32(-87.336_54) >= f32::MIN_POSITIVE);
        // A NaN whose payload bits would land in the exponent add stays NaN.
        assert!(exp_f32(f32::from_bits(0x7FC0_01FF)).is_nan());
        assert!(exp_f32(f32::from_bits(0xFFC0_0101)).is_nan());
    }

    #[test]
    fn tanh_is_accurate_including_near_zero() {
        let mut worst: f64 = 0.0;
        let mut x = -12.0f32;
        while x < 12.0 {
            worst = worst.max(ulps(tanh_f32(x), (x as f64).tanh()));
            x += 0.00731;
        }
        for &x in &[1e-6f32, -3e-5, 1e-3, 0.6249, 0.6251, -0.6251] {
            worst = worst.max(ulps(tanh_f32(x), (x as f64).tanh()));
        }
        assert!(worst <= 3.0, "worst error {worst} ulp");
        assert_eq!(tanh_f32(100.0), 1.0);
        assert_eq!(tanh_f32(-100.0), -1.0);
        assert!(tanh_f32(f32::NAN).is_nan());
    }
}
