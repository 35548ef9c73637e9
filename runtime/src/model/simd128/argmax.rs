//! The greedy pick over logits in wasm `simd128` (spec/sampling.md, greedy): the first index of
//! the largest order key, four keys per instruction. The same index as the portable
//! `generate::sampler` argmax for every input (a largest key is the same whichever order the
//! maximum takes; the first index holding it is found by a scan in index order). No unsafe code.

use core::arch::wasm32::{
    f32x4, i32x4_eq, i32x4_extract_lane, i32x4_gt, i32x4_max, i32x4_shr, i32x4_splat, i32x4_sub,
    v128, v128_and, v128_any_true, v128_bitselect, v128_xor,
};

/// Elements per step of the scans.
const STEP: usize = 16;

/// The order keys of four logits (the portable `order_key32` of each lane): the f32 bits as i32,
/// negative values' low 31 bits flipped plus one (so ±0 are both 0 and the keys order as the
/// values do), a NaN `i32::MIN`.
#[inline(always)]
fn keys(x: &[f32]) -> v128 {
    let bits = f32x4(x[0], x[1], x[2], x[3]);
    let sign = i32x4_shr(bits, 31);
    let magnitude = i32x4_splat(0x7fff_ffff);
    let key = i32x4_sub(v128_xor(bits, v128_and(sign, magnitude)), sign);
    let nan = i32x4_gt(v128_and(bits, magnitude), i32x4_splat(0x7f80_0000));
    v128_bitselect(i32x4_splat(i32::MIN), key, nan)
}

/// The first index of the largest key of `logits` (0 when it is empty), `key` being the portable
/// key of one element, used for the elements after the last whole step.
pub(crate) fn argmax(logits: &[f32], key: impl Fn(f32) -> i32) -> u32 {
    let mut steps = logits.chunks_exact(STEP);
    let mut best = [i32x4_splat(i32::MIN); 4];
    for s in &mut steps {
        best = core::array::from_fn(|j| i32x4_max(best[j], keys(&s[4 * j..])));
    }
    let best = i32x4_max(i32x4_max(best[0], best[1]), i32x4_max(best[2], best[3]));
    let lanes = [
        i32x4_extract_lane::<0>(best),
        i32x4_extract_lane::<1>(best),
        i32x4_extract_lane::<2>(best),
        i32x4_extract_lane::<3>(best),
    ];
    let tail = steps.remainder().iter().map(|&v| key(v));
    let max = lanes.into_iter().chain(tail).fold(i32::MIN, i32::max);
    // The first step holding the largest key, then its first element holding it.
    let wanted = i32x4_splat(max);
    let first_step = logits
        .chunks_exact(STEP)
        .position(|s| {
            let hits = (0..4).map(|j| i32x4_eq(keys(&s[4 * j..]), wanted));
            hits.fold(false, |any, h| any | v128_any_true(h))
        })
        .map_or(logits.len() - steps.remainder().len(), |s| s * STEP);
    let within = logits
        .get(first_step..)
        .unwrap_or(&[])
        .iter()
        .position(|&v| key(v) == max)
        .unwrap_or(0);
    (first_step + within) as u32
}
