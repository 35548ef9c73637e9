//! The simd128 exponential (SwiGLU, softmax) and greedy-pick kernels against the portable code.

use alloc::vec::Vec;

use super::{same, Rng};
use crate::generate::sampler::argmax_portable;
use core::arch::wasm32::{f64x2, f64x2_extract_lane};

use crate::model::math::{exp_f32, exp_f64, silu_f32, INV_LN2};
use crate::model::simd128::activation::{exp8, exp_f64x2, exp_shifted, swiglu, EXP_LANES};
use crate::model::simd128::argmax::argmax;
use crate::model::simd128::{f32x4_of, lanes};

/// Arguments where exp's cases meet: the clamp bounds, overflow of f32 (about 88.72), the
/// subnormal results (below about −87.34) and their end (about −103.97), zeros, infinities,
/// NaNs of both signs.
const EXP_EDGES: [f32; 20] = [
    0.0,
    -0.0,
    89.0,
    -104.0,
    88.722_83,
    88.722_84,
    -87.336_55,
    -87.336_54,
    -103.972_08,
    -103.278_93,
    1e-30,
    -1e-30,
    f32::MIN_POSITIVE,
    f32::MAX,
    f32::MIN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    -f32::NAN,
    0.346_573_6, // about ln 2 / 2: the rounding of x / ln 2 turns here
];

/// [`exp8`] of `x` (eight lanes) against [`exp_f32`] of each, and [`exp_f64x2`] of the clamped
/// arguments against `exp_f64`.
fn exp8_agrees(x: &[f32; EXP_LANES]) -> bool {
    let v = [
        f32x4_of([x[0], x[1], x[2], x[3]]),
        f32x4_of([x[4], x[5], x[6], x[7]]),
    ];
    let got = exp8(v).map(lanes);
    // Exact bits, NaNs included: exp returns a NaN argument as it came (spec/math.md).
    let f32_ok = x
        .iter()
        .enumerate()
        .all(|(i, &x)| got[i / 4][i % 4].to_bits() == exp_f32(x).to_bits());
    // Before the rounding to f32, on the clamped arguments: the f64 bits themselves, so that a
    // difference too small to change the f32 result still shows.
    let d = x.map(|x| f64::from(x.clamp(-104.0, 89.0)));
    let f64_ok = d.chunks_exact(2).all(|d| {
        let e = exp_f64x2(f64x2(d[0], d[1]));
        let lanes = [f64x2_extract_lane::<0>(e), f64x2_extract_lane::<1>(e)];
        lanes
            .iter()
            .zip(d)
            .all(|(l, &d)| d.is_nan() || l.to_bits() == exp_f64(d).to_bits())
    });
    f32_ok && f64_ok
}

/// exp over a sweep of every 509th f32 bit pattern (about 8.4 million, every exponent and sign),
/// the edges and their neighbours, and the f32 values nearest the half-integer multiples of
/// ln 2 in the clamped range (where k's rounding turns) and their neighbours, eight at a time;
/// and the f64 part on exact ties of k's rounding ([`exact_ties_agree`]).
pub(super) fn exp_agrees() -> bool {
    let mut xs: Vec<f32> = Vec::new();
    for e in EXP_EDGES {
        let b = e.to_bits();
        xs.extend([b.wrapping_sub(1), b, b.wrapping_add(1)].map(f32::from_bits));
    }
    for h in -300..=260 {
        let x = (h as f32 + 0.5) * core::f32::consts::LN_2;
        let b = x.to_bits();
        xs.extend([b.wrapping_sub(1), b, b.wrapping_add(1)].map(f32::from_bits));
    }
    let edges_ok = xs
        .chunks(EXP_LANES)
        .all(|c| exp8_agrees(&core::array::from_fn(|i| c.get(i).copied().unwrap_or(1.0))));
    let mut ok = edges_ok && exact_ties_agree();
    let mut batch = [1.0f32; EXP_LANES];
    let mut filled = 0;
    let mut bits = Some(0u32);
    while let Some(b) = bits {
        batch[filled] = f32::from_bits(b);
        filled += 1;
        bits = b.checked_add(509);
        if filled == EXP_LANES || bits.is_none() {
            ok &= exp8_agrees(&batch);
            filled = 0;
        }
    }
    ok
}

/// [`exp_f64x2`] against `exp_f64` where `x / ln 2` is exactly a half-integer (k's rounding
/// half away from zero decides): f64 arguments near each (h + ½)·ln 2 in [−104, 89] whose
/// product by INV_LN2 is exactly h + ½, found by trying neighbours (no f32 argument lands on
/// one). Fails if fewer than ten such arguments are found.
fn exact_ties_agree() -> bool {
    let mut found = 0;
    let mut ok = true;
    for h in -151..=128 {
        let half = f64::from(h) + 0.5;
        let near = (half * core::f64::consts::LN_2).to_bits();
        for step in 0..4096u64 {
            let d = f64::from_bits(near.wrapping_add(step).wrapping_sub(2048));
            if !(-104.0..=89.0).contains(&d) || d * INV_LN2 != half {
                continue;
            }
            found += 1;
            let e = exp_f64x2(f64x2(d, -d));
            ok &= f64x2_extract_lane::<0>(e).to_bits() == exp_f64(d).to_bits();
            if (-104.0..=89.0).contains(&-d) {
                ok &= f64x2_extract_lane::<1>(e).to_bits() == exp_f64(-d).to_bits();
            }
        }
    }
    ok && found >= 10
}

/// An activation-like f32: mostly moderate values, sometimes an exp edge, a huge value or any
/// bit pattern.
fn value(rng: &mut Rng) -> f32 {
    match rng.below(8) {
        0 => EXP_EDGES[rng.below(EXP_EDGES.len() as u64) as usize],
        1 => f32::from_bits(rng.next() as u32),
        2 => (rng.below(4000) as f32 - 2000.0) / 16.0,
        _ => (rng.below(1 << 20) as f32 - 524_288.0) / 65_536.0,
    }
}

/// SwiGLU and softmax's exponentials on a drawn length (0 to 40; `up` sometimes shorter or
/// longer than `gate`), and the greedy pick on a drawn length (0 to 200) with ties, zeros of
/// both signs, infinities and NaNs weighted in.
pub(super) fn elementwise_agrees(rng: &mut Rng) -> bool {
    let n = rng.below(41) as usize;
    let gate: Vec<f32> = (0..n).map(|_| value(rng)).collect();
    let m = if rng.below(4) == 0 {
        rng.below(41) as usize
    } else {
        n
    };
    let up: Vec<f32> = (0..m).map(|_| value(rng)).collect();
    let mut got = gate.clone();
    swiglu(&mut got, &up);
    let mut want = gate.clone();
    for (g, &u) in want.iter_mut().zip(&up) {
        *g = silu_f32(*g) * u;
    }
    let swiglu_ok = got.iter().zip(&want).all(|(&a, &b)| same(a, b));

    let max = if rng.below(2) == 0 {
        gate.iter().copied().fold(f32::MIN, f32::max)
    } else {
        value(rng)
    };
    let mut got = gate.clone();
    exp_shifted(&mut got, max);
    let exp_ok = got
        .iter()
        .zip(&gate)
        .all(|(&a, &x)| same(a, exp_f32(x - max)));

    let len = rng.below(201) as usize;
    let pool = [value(rng), value(rng), value(rng), 0.0, -0.0, f32::NAN];
    let logits: Vec<f32> = (0..len)
        .map(|_| match rng.below(4) {
            0 => pool[rng.below(pool.len() as u64) as usize],
            _ => value(rng),
        })
        .collect();
    let argmax_ok = argmax(&logits, order_key) == argmax_portable(&logits);
    swiglu_ok && exp_ok && argmax_ok
}

/// The greedy pick on long runs: the vocabulary size of the Llama 2 tokenizer with the largest
/// logit first, last, in a tail and tied; all NaN; empty.
pub(super) fn argmax_agrees() -> bool {
    let mut rng = Rng(0x5eed);
    let mut logits: Vec<f32> = (0..32_000).map(|_| value(&mut rng)).collect();
    logits.iter_mut().for_each(|v| {
        if v.is_nan() || *v > 1e6 {
            *v = 0.5;
        }
    });
    let mut ok = argmax(&logits, order_key) == argmax_portable(&logits);
    for at in [0, 1, 15, 16, 31_983, 31_999] {
        let mut l = logits.clone();
        l[at] = 1e7;
        l[31_990] = 1e7;
        ok &= argmax(&l, order_key) == argmax_portable(&l);
        ok &= argmax(&l[..31_995], order_key) == argmax_portable(&l[..31_995]);
    }
    let nans = alloc::vec![f32::NAN; 70];
    ok && argmax(&nans, order_key) == argmax_portable(&nans)
        && argmax(&[], order_key) == argmax_portable(&[])
}

/// The portable order key, as the sampler passes it.
fn order_key(v: f32) -> i32 {
    crate::generate::sampler::order_key32(v)
}
