//! The runtime's own elementary functions (spec/math.md).
//!
//! Every function is built from IEEE-754 `+ - * /` on f64 and integer operations only, so native
//! and wasm32 builds return the same bits. The f32 functions evaluate in f64 with an error far
//! below one f32 ulp and round once to f32, so they return the correctly rounded result except in
//! rare cases where the exact value lies within ~1e-16 (relative) of a rounding boundary
//! (spec/math.md, Accuracy). `sqrt_f32` is exactly rounded by construction.

// ----------------------------------------------------------------------------------------------
// Constants (hex-float spellings in spec/math.md)

/// 1/ln 2 rounded to f64 (0x1.71547652b82fep+0).
pub(crate) const INV_LN2: f64 = f64::from_bits(0x3ff7_1547_652b_82fe);
/// ln 2 truncated to 33 significant bits (0x1.62e42feep-1): `k * LN2_HI` is exact for |k| < 2^20.
pub(crate) const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
/// ln 2 - LN2_HI rounded to f64 (0x1.a39ef35793c76p-33).
pub(crate) const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// sqrt(2) rounded to f64 (0x1.6a09e667f3bcdp+0).
const SQRT2: f64 = f64::from_bits(0x3ff6_a09e_667f_3bcd);
/// pi/2 rounded to f64 (0x1.921fb54442d18p+0).
const PIO2: f64 = f64::from_bits(0x3ff9_21fb_5444_2d18);

/// exp(r) = sum of r^n/n! for n = 0..=13; entry n is 1/n! rounded to f64.
pub(crate) const EXP_COEFFS: [f64; 14] = [
    f64::from_bits(0x3ff0_0000_0000_0000), // 1/0!
    f64::from_bits(0x3ff0_0000_0000_0000), // 1/1!
    f64::from_bits(0x3fe0_0000_0000_0000), // 1/2!
    f64::from_bits(0x3fc5_5555_5555_5555), // 1/3!
    f64::from_bits(0x3fa5_5555_5555_5555), // 1/4!
    f64::from_bits(0x3f81_1111_1111_1111), // 1/5!
    f64::from_bits(0x3f56_c16c_16c1_6c17), // 1/6!
    f64::from_bits(0x3f2a_01a0_1a01_a01a), // 1/7!
    f64::from_bits(0x3efa_01a0_1a01_a01a), // 1/8!
    f64::from_bits(0x3ec7_1de3_a556_c734), // 1/9!
    f64::from_bits(0x3e92_7e4f_b778_9f5c), // 1/10!
    f64::from_bits(0x3e5a_e645_67f5_44e4), // 1/11!
    f64::from_bits(0x3e21_eed8_eff8_d898), // 1/12!
    f64::from_bits(0x3de6_1246_13a8_6d09), // 1/13!
];

/// ln(m) = 2s + s*z*Q(z) with s = (m-1)/(m+1), z = s*s; entry j of Q is 2/(2j+3) rounded to f64.
const LN_COEFFS: [f64; 11] = [
    f64::from_bits(0x3fe5_5555_5555_5555), // 2/3
    f64::from_bits(0x3fd9_9999_9999_999a), // 2/5
    f64::from_bits(0x3fd2_4924_9249_2492), // 2/7
    f64::from_bits(0x3fcc_71c7_1c71_c71c), // 2/9
    f64::from_bits(0x3fc7_45d1_745d_1746), // 2/11
    f64::from_bits(0x3fc3_b13b_13b1_3b14), // 2/13
    f64::from_bits(0x3fc1_1111_1111_1111), // 2/15
    f64::from_bits(0x3fbe_1e1e_1e1e_1e1e), // 2/17
    f64::from_bits(0x3fba_f286_bca1_af28), // 2/19
    f64::from_bits(0x3fb8_6186_1861_8618), // 2/21
    f64::from_bits(0x3fb6_42c8_590b_2164), // 2/23
];

/// sin(r) = r + r*z*S(z), z = r*r; entry j of S is (-1)^(j+1)/(2j+3)! rounded to f64.
const SIN_COEFFS: [f64; 8] = [
    f64::from_bits(0xbfc5_5555_5555_5555), // -1/3!
    f64::from_bits(0x3f81_1111_1111_1111), // 1/5!
    f64::from_bits(0xbf2a_01a0_1a01_a01a), // -1/7!
    f64::from_bits(0x3ec7_1de3_a556_c734), // 1/9!
    f64::from_bits(0xbe5a_e645_67f5_44e4), // -1/11!
    f64::from_bits(0x3de6_1246_13a8_6d09), // 1/13!
    f64::from_bits(0xbd6a_e7f3_e733_b81f), // -1/15!
    f64::from_bits(0x3ce9_52c7_7030_ad4a), // 1/17!
];

/// cos(r) = 1 + z*C(z), z = r*r; entry j of C is (-1)^(j+1)/(2j+2)! rounded to f64.
const COS_COEFFS: [f64; 8] = [
    f64::from_bits(0xbfe0_0000_0000_0000), // -1/2!
    f64::from_bits(0x3fa5_5555_5555_5555), // 1/4!
    f64::from_bits(0xbf56_c16c_16c1_6c17), // -1/6!
    f64::from_bits(0x3efa_01a0_1a01_a01a), // 1/8!
    f64::from_bits(0xbe92_7e4f_b778_9f5c), // -1/10!
    f64::from_bits(0x3e21_eed8_eff8_d898), // 1/12!
    f64::from_bits(0xbda9_3974_a8c0_7c9d), // -1/14!
    f64::from_bits(0x3d2a_e7f3_e733_b81f), // 1/16!
];

/// The first 256 bits of the fraction of 2/pi, most significant first (bit 1 = 2^-1).
const TWO_OVER_PI_BITS: [u64; 4] = [
    0xa2f9_836e_4e44_1529,
    0xfc27_57d1_f534_ddc0,
    0xdb62_9599_3c43_9041,
    0xfe51_63ab_debb_c561,
];

/// Largest f32 magnitude (bits) evaluated by sin/cos without reduction: 0x1.921fb4p-1 < pi/4.
const PIO4_F32_BITS_BELOW: u32 = 0x3f49_0fda;

/// Lanes of the interleaved f32 sum.
pub const SUM_LANES: usize = 16;

// ----------------------------------------------------------------------------------------------
// Helpers

/// `c[0] + v*(c[1] + v*(c[2] + ...))`, evaluated from the highest coefficient down.
fn horner(v: f64, coeffs: &[f64]) -> f64 {
    let mut acc = 0.0;
    for &c in coeffs.iter().rev() {
        acc = acc * v + c;
    }
    acc
}

/// 1.5 · 2^52. For an f64 `s` with |s| < 2^51, `s + ROUND_MAGIC` lies in [2^52, 2^53), where
/// the f64 spacing is 1, so the addition rounds s to an integer (ties to even) and subtracting
/// ROUND_MAGIC again is exact; and for an integer k with |k| < 2^51, the bits of
/// `k + ROUND_MAGIC` are `0x4338_0000_0000_0000 + k`.
pub(crate) const ROUND_MAGIC: f64 = f64::from_bits(0x4338_0000_0000_0000);

/// The sign bit of an f64.
const SIGN_F64: u64 = 1 << 63;

/// Round half away from zero as spec/math.md writes it for exp — `s = v + 0.5` if v ≥ 0, else
/// `s = v − 0.5`, truncated — for |v| < 2^50, as an f64, computed without branches or a
/// float-to-integer conversion (whose saturating semantics keep loops of it scalar on x86-64):
/// `s = v + (±0.5 with v's sign)` (the same sum, except for v = −0, where both truncate to
/// zero), then the truncation of |s|: r = |s| rounded to the nearest integer ([`ROUND_MAGIC`]),
/// which lies within 0.5 of |s|, less one where it lies above |s|, with s's sign put back. Every
/// step is exact. A zero result may be −0 (see spec/math.md: exp's result is the same). NaN
/// stays NaN.
#[inline(always)]
fn round_half_away_f64(v: f64) -> f64 {
    let half = f64::from_bits(0.5f64.to_bits() | (v.to_bits() & SIGN_F64));
    let s = v + half;
    let a = f64::from_bits(s.to_bits() & !SIGN_F64);
    let r = (a + ROUND_MAGIC) - ROUND_MAGIC;
    let t = if r > a { r - 1.0 } else { r };
    f64::from_bits(t.to_bits() | (s.to_bits() & SIGN_F64))
}

/// 2^k for an integer-valued f64 k with -1022 <= k <= 1023: the exponent field k + 1023, taken
/// from the low bits of `k + ROUND_MAGIC`.
#[inline(always)]
fn pow2_f64(k: f64) -> f64 {
    f64::from_bits((k + ROUND_MAGIC).to_bits().wrapping_add(1023) << 52)
}

/// `x` without its sign bit.
fn abs_f32(x: f32) -> f32 {
    f32::from_bits(x.to_bits() & 0x7fff_ffff)
}

/// exp(x) for |x| <= 110 (so 2^k stays normal in f64).
pub(crate) fn exp_f64(x: f64) -> f64 {
    let k = round_half_away_f64(x * INV_LN2);
    let r = (x - k * LN2_HI) - k * LN2_LO;
    horner(r, &EXP_COEFFS) * pow2_f64(k)
}

/// ln(x) for a positive, finite, normal f64 `x`.
fn ln_f64(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > SQRT2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let ln_m = 2.0 * s + s * z * horner(z, &LN_COEFFS);
    let ef = e as f64;
    ef * LN2_HI + (ef * LN2_LO + ln_m)
}

// ----------------------------------------------------------------------------------------------
// sqrt

/// Square root rounded to nearest-even (IEEE `squareroot`, like `sqrtss` / wasm `f32.sqrt`).
/// `sqrt(-0) = -0`, negative or NaN inputs give NaN, `sqrt(+inf) = +inf`.
pub fn sqrt_f32(x: f32) -> f32 {
    let bits = x.to_bits();
    if x.is_nan() || (x < 0.0) {
        return f32::NAN;
    }
    if x == 0.0 || x == f32::INFINITY {
        return x;
    }
    // x = m * 2^e with m an integer in [2^23, 2^24).
    let exp_field = (bits >> 23) as i32;
    let (mut m, mut e) = if exp_field == 0 {
        (u64::from(bits & 0x7f_ffff), -149)
    } else {
        (u64::from(bits & 0x7f_ffff) | 0x80_0000, exp_field - 150)
    };
    while m < 0x80_0000 {
        m <<= 1;
        e -= 1;
    }
    // Make the exponent even and bring the radicand to [2^48, 2^50).
    if e & 1 != 0 {
        m <<= 1;
        e -= 1;
    } else {
        m <<= 2;
        e -= 2;
    }
    let radicand = m << 24;
    e -= 24;
    let (root, rem) = isqrt_u64(radicand); // root in [2^24, 2^25)
    let mut mant = root >> 1; // 24 bits
    let round_bit = root & 1;
    if round_bit == 1 && (rem != 0 || mant & 1 == 1) {
        mant += 1;
    }
    // Value = mant * 2^(e/2 + 1); a carry out of 24 bits moves into the exponent field.
    let q = e / 2 + 1;
    let out = (((q + 149) as u64) << 23) + mant;
    f32::from_bits(out as u32)
}

/// Integer square root: (floor(sqrt(n)), n - floor(sqrt(n))^2), digit by digit.
fn isqrt_u64(n: u64) -> (u64, u64) {
    let mut rem = n;
    let mut root = 0u64;
    let mut bit = 1u64 << 62;
    while bit > n {
        bit >>= 2;
    }
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    (root, rem)
}

// ----------------------------------------------------------------------------------------------
// exp, ln, pow

/// e^x. Overflow gives +inf (x > 89), underflow +0 (x < -104); subnormal results are rounded
/// once from f64. NaN propagates.
///
/// Written without branches (the special cases are selects over a computation on a clamped
/// argument) so loops of it vectorize, e.g. [`swiglu_in_place`] and [`softmax_in_place`]; the
/// selects give exactly the cases above.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // NaN stays NaN here (every comparison is false) and is harmless below: the rounding of
    // NaN to i32 is 0.
    let clamped = x.clamp(-104.0, 89.0);
    let y = exp_f64(f64::from(clamped)) as f32;
    let y = if x > 89.0 { f32::INFINITY } else { y };
    let y = if x < -104.0 { 0.0 } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// Natural logarithm. ln(±0) = -inf, ln(x < 0) = NaN, ln(+inf) = +inf, ln(1) = +0.
pub fn ln_f32(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x == f32::INFINITY {
        return x;
    }
    ln_f64(f64::from(x)) as f32
}

/// Whether an f32 is an integer, and whether it is an odd one.
fn integer_parity(y: f32) -> Option<bool> {
    let a = abs_f32(y);
    if a >= 16_777_216.0 {
        return Some(false); // every f32 >= 2^24 is an even integer
    }
    let t = a as u32;
    if t as f32 == a {
        Some(t & 1 == 1)
    } else {
        None
    }
}

/// x^y with the special cases of C99 Annex F `powf`; finite results are exp(y * ln|x|) in f64,
/// rounded once to f32.
pub fn pow_f32(x: f32, y: f32) -> f32 {
    if y == 0.0 || x == 1.0 {
        return 1.0;
    }
    if x.is_nan() || y.is_nan() {
        return f32::NAN;
    }
    let ax = abs_f32(x);
    if y.is_infinite() {
        return if ax == 1.0 {
            1.0
        } else if (ax < 1.0) == (y > 0.0) {
            0.0
        } else {
            f32::INFINITY
        };
    }
    let parity = integer_parity(y);
    let negate = x.is_sign_negative() && parity == Some(true);
    let magnitude = if ax == 0.0 || ax == f32::INFINITY {
        if (ax == 0.0) == (y < 0.0) {
            f32::INFINITY
        } else {
            0.0
        }
    } else {
        if x < 0.0 && parity.is_none() {
            return f32::NAN;
        }
        let t = f64::from(y) * ln_f64(f64::from(ax));
        if t > 89.0 {
            f32::INFINITY
        } else if t < -104.0 {
            0.0
        } else {
            exp_f64(t) as f32
        }
    };
    if negate {
        -magnitude
    } else {
        magnitude
    }
}

// ----------------------------------------------------------------------------------------------
// sin, cos

/// 128 bits of 2/pi starting at fraction bit `start + 1` (bits before bit 1 are zero).
fn two_over_pi_window(start: i32) -> u128 {
    if start < 0 {
        return two_over_pi_window(0) >> (-start) as u32;
    }
    let word = (start / 64) as usize;
    let shift = (start % 64) as u32;
    let at = |i: usize| u128::from(*TWO_OVER_PI_BITS.get(i).unwrap_or(&0));
    ((at(word) << 64 | at(word + 1)) << shift) | (at(word + 2) << 64 >> (64 - shift) >> 64)
}

/// For finite `a >= 0`: (q mod 4, r) with a = q*pi/2 + r, |r| <= pi/4 (r in f64).
fn reduce_pio2(a: f32) -> (u32, f64) {
    let bits = a.to_bits();
    if bits <= PIO4_F32_BITS_BELOW {
        return (0, f64::from(a));
    }
    // a = m * 2^e, m < 2^24 (a >= pi/4 is normal, so e >= -24).
    let m = u128::from((bits & 0x7f_ffff) | 0x80_0000);
    let e = (bits >> 23) as i32 - 150;
    // a * 2/pi mod 4 = m * window * 2^-126 mod 4, window = 2/pi bits e-1 .. e+126.
    let w = two_over_pi_window(e - 2);
    let w_hi = w >> 64;
    let w_lo = w & u128::from(u64::MAX);
    let p = ((m * w_hi) << 64).wrapping_add(m * w_lo);
    let mut q = (p >> 126) as u32;
    let frac = (p & ((1u128 << 126) - 1)) as i128;
    let centred = if frac >= 1i128 << 125 {
        q += 1;
        frac - (1i128 << 126)
    } else {
        frac
    };
    let f = centred as f64 * pow2_f64(-126.0);
    (q & 3, f * PIO2)
}

/// sin(r) for |r| <= pi/4.
fn sin_kernel(r: f64) -> f64 {
    let z = r * r;
    r + r * z * horner(z, &SIN_COEFFS)
}

/// cos(r) for |r| <= pi/4.
fn cos_kernel(r: f64) -> f64 {
    let z = r * r;
    1.0 + z * horner(z, &COS_COEFFS)
}

/// Sine (radians), with exact reduction modulo pi/2 over the whole f32 range. NaN and ±inf give
/// NaN; sin(-0) = -0.
pub fn sin_f32(x: f32) -> f32 {
    if !x.is_finite() {
        return f32::NAN;
    }
    let (q, r) = reduce_pio2(abs_f32(x));
    let v = match q {
        0 => sin_kernel(r),
        1 => cos_kernel(r),
        2 => -sin_kernel(r),
        _ => -cos_kernel(r),
    };
    let v = v as f32;
    if x.is_sign_negative() {
        -v
    } else {
        v
    }
}

/// Cosine (radians), with exact reduction modulo pi/2 over the whole f32 range. NaN and ±inf
/// give NaN.
pub fn cos_f32(x: f32) -> f32 {
    if !x.is_finite() {
        return f32::NAN;
    }
    let (q, r) = reduce_pio2(abs_f32(x));
    let v = match q {
        0 => cos_kernel(r),
        1 => -sin_kernel(r),
        2 => -cos_kernel(r),
        _ => sin_kernel(r),
    };
    v as f32
}

// ----------------------------------------------------------------------------------------------
// Reductions and activations

/// Sum in the fixed 16-lane interleaved order: element i is added to lane i % 16 (lanes start at
/// +0.0, elements in index order), then lanes are combined by halving:
/// for w in [8, 4, 2, 1], `lane[k] += lane[k + w]` for k < w. Returns lane 0.
pub fn sum_f32(xs: &[f32]) -> f32 {
    crate::model::cpu::run(
        #[inline(always)]
        || sum_lanes(xs),
    )
}

/// [`sum_f32`] in the current instance: whole chunks of 16 as one lane-array update, then the
/// tail into the first lanes.
#[inline(always)]
fn sum_lanes(xs: &[f32]) -> f32 {
    let (chunks, tail) = crate::model::kernels::arrays::<f32, SUM_LANES>(xs);
    let mut lanes = [0.0f32; SUM_LANES];
    for c in chunks {
        lanes = core::array::from_fn(|k| lanes[k] + c[k]);
    }
    for (lane, &v) in lanes.iter_mut().zip(tail) {
        *lane += v;
    }
    combine_lanes(lanes)
}

/// The halving combination of 16 lane partial sums (see [`sum_f32`]).
#[inline(always)]
pub fn combine_lanes(mut lanes: [f32; SUM_LANES]) -> f32 {
    let mut width = SUM_LANES / 2;
    while width > 0 {
        for k in 0..width {
            lanes[k] += lanes[k + width];
        }
        width /= 2;
    }
    lanes[0]
}

/// Softmax in place: m = max(x), x_i = exp(x_i - m), s = sum_f32(x), x_i = x_i / s.
/// An empty slice is left alone.
pub fn softmax_in_place(x: &mut [f32]) {
    crate::model::cpu::run(
        #[inline(always)]
        || softmax_body(x),
    )
}

/// [`softmax_in_place`] in the current instance, without dispatch (for callers already inside
/// [`crate::model::cpu::run`]).
#[inline(always)]
pub(crate) fn softmax_body(x: &mut [f32]) {
    let Some(&first) = x.first() else {
        return;
    };
    let mut max = first;
    for &v in x.iter() {
        if v > max {
            max = v;
        }
    }
    exp_shifted(x, max);
    let sum = sum_lanes(x);
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// `x[i] = exp_f32(x[i] - max)`: the simd128 kernel in the simd128 module (the same bits), else
/// element by element.
#[inline(always)]
fn exp_shifted(x: &mut [f32], max: f32) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    crate::model::simd128::activation::exp_shifted(x, max);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    for v in x.iter_mut() {
        *v = exp_f32(*v - max);
    }
}

/// SiLU as llama2.c writes it: `x * (1 / (1 + exp(-x)))`.
#[inline(always)]
pub fn silu_f32(x: f32) -> f32 {
    x * (1.0 / (1.0 + exp_f32(-x)))
}

/// SwiGLU's gate, element by element: `gate[i] = silu(gate[i]) * up[i]` (over the shorter of
/// the two). Element-wise, so the compiled instance of the level (`cpu::run`)
/// may vectorize it without changing a bit; the simd128 module runs its own kernel
/// (`simd128/activation.rs`, the same bits).
pub fn swiglu_in_place(gate: &mut [f32], up: &[f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    crate::model::simd128::activation::swiglu(gate, up);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    crate::model::cpu::run(
        #[inline(always)]
        || {
            for (g, &u) in gate.iter_mut().zip(up) {
                *g = silu_f32(*g) * u;
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rounding of spec/math.md's exp as integer code computes it: `(v ± 0.5)` truncated
    /// to i32 (saturating, NaN to 0).
    fn round_to_i32(v: f64) -> i32 {
        if v >= 0.0 {
            (v + 0.5) as i32
        } else {
            (v - 0.5) as i32
        }
    }

    /// exp_f64 with that rounding and an integer power of two.
    fn exp_f64_integer(x: f64) -> f64 {
        let k = round_to_i32(x * INV_LN2);
        let kf = f64::from(k);
        let r = (x - kf * LN2_HI) - kf * LN2_LO;
        horner(r, &EXP_COEFFS) * f64::from_bits(((k + 1023) as u64) << 52)
    }

    /// Values around every half and every integer of [-200, 200] (the exact value and eight
    /// f64 steps either side), zeros, and a spread of ordinary values.
    fn rounding_cases() -> impl Iterator<Item = f64> {
        let around =
            |c: f64| (-8i64..=8).map(move |d| f64::from_bits((c.to_bits() as i64 + d) as u64));
        let grid = (-400..=400).flat_map(move |h| around(f64::from(h) * 0.5));
        let spread =
            (0..20_000).map(|i| (f64::from(i) * 0.618_033_988_749_895).fract() * 320.0 - 160.0);
        // (Stepping below the bits of +0.0 wraps to NaNs: left out.)
        grid.filter(|v| !v.is_nan())
            .chain([0.0, -0.0, 0.5, -0.5, 1e-300, -1e-300])
            .chain(spread)
    }

    #[test]
    fn rounding_in_f64_is_the_integer_rounding() {
        for v in rounding_cases() {
            let got = round_half_away_f64(v);
            assert_eq!(
                got,
                f64::from(round_to_i32(v)),
                "{v:e} ({:#x})",
                v.to_bits()
            );
        }
        assert!(round_half_away_f64(f64::NAN).is_nan());
    }

    #[test]
    fn exp_f64_is_the_integer_formulation() {
        let xs = rounding_cases()
            .map(|v| v * core::f64::consts::LN_2)
            .chain(rounding_cases().map(|v| v * 0.6875))
            .filter(|x| x.abs() <= 110.0);
        for x in xs {
            assert_eq!(
                exp_f64(x).to_bits(),
                exp_f64_integer(x).to_bits(),
                "{x:e} ({:#x})",
                x.to_bits()
            );
        }
    }

    #[test]
    fn window_matches_the_table_at_word_boundaries() {
        assert_eq!(two_over_pi_window(0) >> 64, u128::from(TWO_OVER_PI_BITS[0]));
        assert_eq!(
            two_over_pi_window(64) >> 64,
            u128::from(TWO_OVER_PI_BITS[1])
        );
        assert_eq!(two_over_pi_window(4) >> 124, 0x2);
        assert_eq!(two_over_pi_window(-1) >> 126, 0x1);
    }

    #[test]
    fn reduction_of_pi_is_two_quadrants() {
        let (q, r) = reduce_pio2(core::f32::consts::PI);
        assert_eq!(q, 2);
        // f32 pi exceeds pi by 8.742278000372475e-8.
        let d = r - 8.742_278_000_372_475e-8;
        assert!(d < 1e-21 && d > -1e-21, "{r}");
    }
}
