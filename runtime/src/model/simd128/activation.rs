//! The exponentials of SwiGLU and of softmax in wasm `simd128`, eight elements per step and bit
//! for bit [`math::exp_f32`]'s (spec/math.md, exp): the same f64 operations in the same order,
//! two elements per f64x2. No unsafe code, no relaxed SIMD.
//!
//! Each lane follows [`math::exp_f32`]: the argument clamped to [−104, 89] and widened to f64;
//! `k` = x / ln 2 rounded half away from zero (`round_half_away_f64`'s bit operations); the
//! reduced argument `(x − k·LN2_HI) − k·LN2_LO`; the Horner polynomial from its highest
//! coefficient (the portable loop starts from 0 and its first step, `0 · r + c13`, is `c13`
//! exactly, since r is finite); times 2^k built from k's bits; rounded once to f32
//! (`f32x4.demote_f64x2_zero` rounds to nearest, subnormals included, as `as f32` does); then
//! +inf above 89, +0 below −104 and a NaN argument returned as it came.
//!
//! LLVM vectorizes the portable loops too; these kernels are a few percent faster (measured:
//! prefill 1 to 3 %, decode about 1 %: `tinyrustlm bench model --wasm`).

use core::arch::wasm32::{
    f32x4, f32x4_add, f32x4_demote_f64x2_zero, f32x4_div, f32x4_gt, f32x4_lt, f32x4_mul, f32x4_ne,
    f32x4_neg, f32x4_pmax, f32x4_pmin, f32x4_splat, f32x4_sub, f64x2_add, f64x2_gt, f64x2_mul,
    f64x2_promote_low_f32x4, f64x2_splat, f64x2_sub, i32x4_shuffle, i64x2_add, i64x2_shl,
    i64x2_splat, u64x2_splat, v128, v128_and, v128_andnot, v128_bitselect, v128_or,
};

use super::lanes;
use crate::model::math::{self, EXP_COEFFS, INV_LN2, LN2_HI, LN2_LO, ROUND_MAGIC};

/// Elements per step of the kernels: two f32x4, four f64x2.
pub(crate) const EXP_LANES: usize = 8;

/// An f32x4 of four elements.
#[inline(always)]
fn load(x: &[f32]) -> v128 {
    f32x4(x[0], x[1], x[2], x[3])
}

/// Writes an f32x4's lanes to four elements.
#[inline(always)]
fn store(out: &mut [f32], v: v128) {
    out[..4].copy_from_slice(&lanes(v));
}

/// `math::round_half_away_f64` of each f64 lane: `s = v ± 0.5` (v's sign), then |s| truncated
/// through the rounding of `|s| + ROUND_MAGIC`, with s's sign put back.
#[inline(always)]
fn round_half_away(v: v128) -> v128 {
    let sign = u64x2_splat(1 << 63);
    let s = f64x2_add(v, v128_or(f64x2_splat(0.5), v128_and(v, sign)));
    let a = v128_andnot(s, sign);
    let magic = f64x2_splat(ROUND_MAGIC);
    let r = f64x2_sub(f64x2_add(a, magic), magic);
    let t = v128_bitselect(f64x2_sub(r, f64x2_splat(1.0)), r, f64x2_gt(r, a));
    v128_or(t, v128_and(s, sign))
}

/// `math::exp_f64` of each f64 lane (|x| ≤ 110): `k` = x / ln 2 rounded half away from zero,
/// the reduced argument `(x − k·LN2_HI) − k·LN2_LO`, the Horner polynomial from its highest
/// coefficient, times 2^k built from k's bits.
#[inline(always)]
pub(crate) fn exp_f64x2(d: v128) -> v128 {
    let k = round_half_away(f64x2_mul(d, f64x2_splat(INV_LN2)));
    let hi = f64x2_sub(d, f64x2_mul(k, f64x2_splat(LN2_HI)));
    let r = f64x2_sub(hi, f64x2_mul(k, f64x2_splat(LN2_LO)));
    let [rest @ .., top] = EXP_COEFFS;
    let mut p = f64x2_splat(top);
    for &c in rest.iter().rev() {
        p = f64x2_add(f64x2_mul(p, r), f64x2_splat(c));
    }
    let bits = i64x2_add(f64x2_add(k, f64x2_splat(ROUND_MAGIC)), i64x2_splat(1023));
    f64x2_mul(p, i64x2_shl(bits, 52))
}

/// e^x of eight f32 lanes, each [`math::exp_f32`] of its lane.
#[inline(always)]
pub(crate) fn exp8(x: [v128; 2]) -> [v128; 2] {
    let clamped = x.map(|x| f32x4_pmax(f32x4_pmin(x, f32x4_splat(89.0)), f32x4_splat(-104.0)));
    let [c0, c1] = clamped;
    let d = [
        f64x2_promote_low_f32x4(c0),
        f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(c0, c0)),
        f64x2_promote_low_f32x4(c1),
        f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(c1, c1)),
    ];
    let y = d.map(|d| f32x4_demote_f64x2_zero(exp_f64x2(d)));
    let joined = [
        i32x4_shuffle::<0, 1, 4, 5>(y[0], y[1]),
        i32x4_shuffle::<0, 1, 4, 5>(y[2], y[3]),
    ];
    core::array::from_fn(|j| {
        let (x, y) = (x[j], joined[j]);
        let y = v128_bitselect(
            f32x4_splat(f32::INFINITY),
            y,
            f32x4_gt(x, f32x4_splat(89.0)),
        );
        let y = v128_bitselect(f32x4_splat(0.0), y, f32x4_lt(x, f32x4_splat(-104.0)));
        v128_bitselect(x, y, f32x4_ne(x, x))
    })
}

/// [`math::swiglu_in_place`]: `gate[i] = silu(gate[i]) * up[i]` over the shorter of the two,
/// silu being `x * (1 / (1 + exp(-x)))`; whole groups of [`EXP_LANES`] here, the rest by the
/// portable element function.
pub(crate) fn swiglu(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let (gate, up) = (&mut gate[..n], &up[..n]);
    let mut gates = gate.chunks_exact_mut(EXP_LANES);
    let mut ups = up.chunks_exact(EXP_LANES);
    let one = f32x4_splat(1.0);
    for (g, u) in (&mut gates).zip(&mut ups) {
        let x = [load(&g[..4]), load(&g[4..])];
        let e = exp8(x.map(|x| f32x4_neg(x)));
        for (j, (x, e)) in x.into_iter().zip(e).enumerate() {
            let silu = f32x4_mul(x, f32x4_div(one, f32x4_add(one, e)));
            store(&mut g[4 * j..], f32x4_mul(silu, load(&u[4 * j..])));
        }
    }
    for (g, &u) in gates.into_remainder().iter_mut().zip(ups.remainder()) {
        *g = math::silu_f32(*g) * u;
    }
}

/// Softmax's exponentials in place: `x[i] = exp(x[i] - max)` ([`math::softmax_in_place`]'s
/// second step), whole groups of [`EXP_LANES`] here, the rest by [`math::exp_f32`].
pub(crate) fn exp_shifted(x: &mut [f32], max: f32) {
    let m = f32x4_splat(max);
    let mut chunks = x.chunks_exact_mut(EXP_LANES);
    for c in &mut chunks {
        let e = exp8([f32x4_sub(load(&c[..4]), m), f32x4_sub(load(&c[4..]), m)]);
        store(&mut c[..4], e[0]);
        store(&mut c[4..], e[1]);
    }
    for v in chunks.into_remainder() {
        *v = math::exp_f32(*v - max);
    }
}
