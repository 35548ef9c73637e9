//! Activation quantization's two steps in wasm `simd128` (spec/determinism.md, Activation
//! quantization): a block's `amax` and its 32 codes, each four elements per instruction and bit
//! for bit the portable `quant::quantize_act_q8_0`'s. No unsafe code, no relaxed SIMD.

use core::arch::wasm32::{
    f32x4, f32x4_convert_i32x4, f32x4_ge, f32x4_mul, f32x4_pmin, f32x4_splat, f32x4_sub,
    i16x8_narrow_i32x4, i32x4_extract_lane, i32x4_gt, i32x4_max, i32x4_min, i32x4_shr, i32x4_splat,
    i32x4_sub, i32x4_trunc_sat_f32x4, i8x16_narrow_i16x8, u64x2_extract_lane, v128, v128_and,
    v128_andnot, v128_xor,
};

use crate::format::dtype::QK;

/// Elements `4 k..4 k + 4` of a block as an f32x4 (one `v128.load`).
#[inline(always)]
fn quad(block: &[f32; QK], k: usize) -> v128 {
    f32x4(
        block[4 * k],
        block[4 * k + 1],
        block[4 * k + 2],
        block[4 * k + 3],
    )
}

/// The largest |v| of a block, NaN elements ignored (+0.0 when every element is zero or NaN):
/// the portable `block_amax`'s value. A non-negative f32's bits order as the value does (+inf
/// is 0x7f80_0000, every NaN's magnitude bits are above it), so the magnitudes' bits with each
/// NaN made 0 are compared as i32 (`i32x4.max_s`): a maximum, whose order is free.
#[inline(always)]
pub(crate) fn block_amax(block: &[f32; QK]) -> f32 {
    let magnitude = i32x4_splat(0x7fff_ffff);
    let infinity = i32x4_splat(0x7f80_0000);
    let mut m = i32x4_splat(0);
    for k in 0..QK / 4 {
        let a = v128_and(quad(block, k), magnitude);
        m = i32x4_max(m, v128_andnot(a, i32x4_gt(a, infinity)));
    }
    let lanes = [
        i32x4_extract_lane::<0>(m),
        i32x4_extract_lane::<1>(m),
        i32x4_extract_lane::<2>(m),
        i32x4_extract_lane::<3>(m),
    ];
    f32::from_bits(lanes.into_iter().fold(0, i32::max) as u32)
}

/// The 32 codes of an activation block with inverse scale `id`: code j = round-half-away(x_j ·
/// id) clamped to ±127, as the portable `q8_0_code`, four at a time: `v = x · id`
/// (`f32x4.mul`), `a = |v|` at most 128 (`f32x4.pmin`; anything at or above 128 gives 127
/// either way, and a NaN stays NaN), `t = trunc(a)` (`i32x4.trunc_sat_f32x4`: exact here, and
/// NaN gives 0 as the scalar conversion does), `t + 1` where `a − f32(t) ≥ 0.5` (exact; never
/// for NaN), at most 127, and v's sign put back (±0 and NaN give 0 already), then narrowed to
/// i8 (the values are within ±127: no saturation).
#[inline(always)]
pub(crate) fn act_codes_q8_0(block: &[f32; QK], id: f32) -> [i8; QK] {
    let id = f32x4_splat(id);
    let magnitude = i32x4_splat(0x7fff_ffff);
    let (limit, half) = (f32x4_splat(128.0), f32x4_splat(0.5));
    let max_code = i32x4_splat(127);
    let codes = |k: usize| {
        let v = f32x4_mul(quad(block, k), id);
        let a = f32x4_pmin(v128_and(v, magnitude), limit);
        let t = i32x4_trunc_sat_f32x4(a);
        // `up` is all ones (−1) where the fraction is at least a half: t − up = t + 1.
        let up = f32x4_ge(f32x4_sub(a, f32x4_convert_i32x4(t)), half);
        let r = i32x4_min(i32x4_sub(t, up), max_code);
        let sign = i32x4_shr(v, 31);
        i32x4_sub(v128_xor(r, sign), sign)
    };
    let half_codes = |k: usize| {
        let low = i16x8_narrow_i32x4(codes(k), codes(k + 1));
        let high = i16x8_narrow_i32x4(codes(k + 2), codes(k + 3));
        let bytes = i8x16_narrow_i16x8(low, high);
        [
            u64x2_extract_lane::<0>(bytes),
            u64x2_extract_lane::<1>(bytes),
        ]
    };
    let [[w0, w1], [w2, w3]] = [half_codes(0), half_codes(4)];
    let bytes = [w0, w1, w2, w3].map(u64::to_le_bytes);
    core::array::from_fn(|j| bytes[j / 8][j % 8] as i8)
}
