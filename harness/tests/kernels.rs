//! The numeric kernels (spec/determinism.md): f16 conversion, quantize/dequantize error bounds,
//! exact integer block sums, every dot product against an f64 computation with a stated error
//! bound, and bit equality with a plain scalar re-statement of the specified reduction order.

use half::f16;
use proptest::prelude::*;
use runtime::format::dtype::{DType, QK};
use runtime::model::kernels::{
    dot_f16_row, dot_f32, dot_f32_row, dot_q4_0_row, dot_q8_0_row, matvec, row_to_f32, ActScratch,
    MatRef, LANES,
};
use runtime::model::quant::{
    dequantize, f16_to_f32, f32_to_f16, quantize_act_q8_0, quantize_q4_0, quantize_q8_0, BlockQ8,
};

/// The unit roundoff of f32.
const U: f64 = 1.0 / 16_777_216.0;

// ---------------------------------------------------------------------------------------------
// The spec's reduction orders, re-stated as plainly as possible.

/// spec/determinism.md, f32 dot product: lane i % 16 gets a_i * b_i, then halving 8, 4, 2, 1.
fn spec_dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(LANES, 16, "the re-statement below spells out 16 lanes");
    let mut lane = [0.0f32; 16];
    for i in 0..a.len() {
        let p = a[i] * b[i];
        lane[i % 16] += p;
    }
    for w in [8, 4, 2, 1] {
        for k in 0..w {
            lane[k] += lane[k + w];
        }
    }
    lane[0]
}

/// The f16 scale at the start of a block, decoded by the `half` crate.
fn scale(blk: &[u8]) -> f32 {
    f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32()
}

/// The signed weight codes of one q8_0 or q4_0 block.
fn codes(dtype: DType, blk: &[u8]) -> [i32; QK] {
    let mut c = [0i32; QK];
    for j in 0..QK {
        c[j] = match dtype {
            DType::Q8_0 => blk[2 + j] as i8 as i32,
            _ if j < 16 => (blk[2 + j] & 15) as i32 - 8,
            _ => (blk[2 + j - 16] >> 4) as i32 - 8,
        };
    }
    c
}

/// spec/determinism.md, quantized dot product: acc = acc + sumi * (d_w * d_x), blocks in order.
fn spec_dot_quant(dtype: DType, row: &[u8], act: &[BlockQ8]) -> f32 {
    let bb = dtype.block_bytes();
    let mut acc = 0.0f32;
    for (b, a) in act.iter().enumerate() {
        let blk = &row[b * bb..(b + 1) * bb];
        let c = codes(dtype, blk);
        let sumi: i32 = (0..QK).map(|j| c[j] * a.qs[j] as i32).sum();
        acc += sumi as f32 * (scale(blk) * a.d);
    }
    acc
}

// ---------------------------------------------------------------------------------------------
// Input generators.

/// A finite f32 of magnitude 2^-20 .. 2^20 or zero, either sign.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => (any::<bool>(), 107u32..147, 0u32..1 << 23)
            .prop_map(|(s, e, m)| f32::from_bits((s as u32) << 31 | e << 23 | m)),
        1 => Just(0.0f32),
        1 => -1000.0f32..1000.0,
    ]
}

fn vec_pair(max: usize) -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    (0..=max).prop_flat_map(|n| {
        (
            prop::collection::vec(value(), n),
            prop::collection::vec(value(), n),
        )
    })
}

/// A weight vector that quantizes without overflow and with normal f16 scales: whole blocks,
/// each with largest magnitude exactly 2^e (e in -6..10, held by element k with either sign).
fn quant_weights(max_blocks: usize) -> impl Strategy<Value = Vec<f32>> {
    let block = (
        -6i32..10,
        0..QK,
        any::<bool>(),
        prop::collection::vec(-1.0f32..1.0, QK),
    )
        .prop_map(|(e, k, neg, mut v)| {
            v[k] = if neg { -1.0 } else { 1.0 };
            let s = 2f32.powi(e);
            v.into_iter().map(|x| x * s).collect::<Vec<f32>>()
        });
    prop::collection::vec(block, 1..=max_blocks).prop_map(|blocks| blocks.concat())
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| f16::from_f32(x).to_bits().to_le_bytes())
        .collect()
}

fn quantized(dtype: DType, w: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; w.len() / QK * dtype.block_bytes()];
    match dtype {
        DType::Q8_0 => quantize_q8_0(w, &mut out).unwrap(),
        _ => quantize_q4_0(w, &mut out).unwrap(),
    }
    out
}

fn act(x: &[f32]) -> Vec<BlockQ8> {
    let mut a = vec![BlockQ8::ZERO; x.len() / QK];
    quantize_act_q8_0(x, &mut a).unwrap();
    a
}

/// Error bound of the lane-ordered f32 dot product of n terms: each product is rounded once
/// (u), a lane sums at most ceil(n/16) terms and the halving adds log2(16) = 4 more roundings on
/// each path, so |error| <= gamma_k * sum |a_i b_i| with k = ceil(n/16) + 4 + 1 and
/// gamma_k = k u / (1 - k u) (Higham, Accuracy and Stability, 2nd ed., (3.4)/(3.5)). The f64
/// reference adds at most n * 2^-53 relative error; we allow 2^-40 of slack for it.
fn lane_dot_bound(n: usize, abs_sum: f64) -> f64 {
    let k = (n.div_ceil(16) + 4 + 1) as f64;
    (k * U / (1.0 - k * U) + 2f64.powi(-40)) * abs_sum
}

// ---------------------------------------------------------------------------------------------
// f16 conversion.

#[test]
fn f16_all_values_round_trip_and_match_half() {
    for h in 0..=u16::MAX {
        let x = f16_to_f32(h);
        let reference = f16::from_bits(h).to_f32();
        if x.is_nan() {
            assert!(reference.is_nan(), "{h:#06x}");
            // Sign and payload kept exactly, the quiet bit not forced (spec: f16 conversion).
            let h32 = u32::from(h);
            let bits = (h32 & 0x8000) << 16 | 0x7f80_0000 | (h32 & 0x03ff) << 13;
            assert_eq!(x.to_bits(), bits, "{h:#06x}");
            let back = f32_to_f16(x);
            // NaN stays NaN, sign kept; only the quiet bit may be added.
            assert_eq!(back & !0x0200, h & !0x0200, "{h:#06x}");
            assert_eq!(back & 0x7e00, 0x7e00);
        } else {
            assert_eq!(x.to_bits(), reference.to_bits(), "{h:#06x}");
            assert_eq!(f32_to_f16(x), h, "{h:#06x}");
        }
    }
}

#[test]
fn f32_to_f16_matches_half_around_every_rounding_boundary() {
    for h in 0u16..0x7c00 {
        let lo = f16_to_f32(h) as f64;
        let hi = if h == 0x7bff {
            65536.0
        } else {
            f16_to_f32(h + 1) as f64
        };
        let mid = ((lo + hi) / 2.0) as f32;
        for x in [
            mid,
            f32::from_bits(mid.to_bits() - 1),
            f32::from_bits(mid.to_bits() + 1),
        ] {
            for x in [x, -x] {
                assert_eq!(
                    f32_to_f16(x),
                    f16::from_f32(x).to_bits(),
                    "{x:e} ({:#010x})",
                    x.to_bits()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn f32_to_f16_matches_half_on_random_bits(bits in any::<u32>()) {
        let x = f32::from_bits(bits);
        prop_assert_eq!(f32_to_f16(x), f16::from_f32(x).to_bits());
    }
}

// ---------------------------------------------------------------------------------------------
// Quantization.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// q8_0: |x - q d16| <= d/2 (rounding) + 127 |d - d16| (scale stored in f16, relative error
    /// 2^-11 for a normal f16) + slack for the rounded id = 1/d and x * id (a few ulps of 127)
    /// and the f32 product q * d16 (|x| u). Scales here are normal f16 (d >= 2^-6 / 127).
    #[test]
    fn q8_0_round_trip_error(w in quant_weights(4)) {
        let bytes = quantized(DType::Q8_0, &w);
        let mut back = vec![0.0f32; w.len()];
        dequantize(DType::Q8_0, &bytes, &mut back).unwrap();
        for (blk, (x, y)) in w.chunks(QK).zip(back.chunks(QK)).enumerate() {
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            let d = amax / 127.0;
            let bound = d * (0.5 + 127.0 / 2048.0 + 1e-4);
            for (a, b) in x.iter().zip(y) {
                let err = (*a as f64 - *b as f64).abs();
                prop_assert!(err <= bound + a.abs() as f64 * U, "block {blk}: {a} -> {b}, bound {bound}");
            }
        }
        // The activation quantizer yields the same codes and scales.
        for (a, blk) in act(&w).iter().zip(bytes.chunks(34)) {
            prop_assert_eq!(a.d, scale(blk));
            prop_assert_eq!(&codes(DType::Q8_0, blk)[..], &a.qs.map(i32::from)[..]);
        }
    }

    /// q4_0 with d = max/-8: codes round to nearest (ties up) within [0, 15], error <= |d|/2,
    /// except the clamped code 16 -> 15 for x = -max (error |d|); plus 8 |d - d16| for the f16
    /// scale (at most 2^-11 relative, codes up to 8 in magnitude) and slack for the rounded
    /// id and x * id + 8.5 (ulps of 16).
    #[test]
    fn q4_0_round_trip_error(w in quant_weights(4)) {
        let bytes = quantized(DType::Q4_0, &w);
        let mut back = vec![0.0f32; w.len()];
        dequantize(DType::Q4_0, &bytes, &mut back).unwrap();
        for (blk, (x, y)) in w.chunks(QK).zip(back.chunks(QK)).enumerate() {
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            let d = amax / 8.0;
            let slack = d * (8.0 / 2048.0 + 1e-5);
            for (a, b) in x.iter().zip(y) {
                let err = (*a as f64 - *b as f64).abs();
                let t = (*a as f64 / d).abs();
                let bound = if t > 7.49 { d } else { d * 0.5 } + slack;
                prop_assert!(err <= bound + a.abs() as f64 * U, "block {blk}: {a} -> {b}, bound {bound}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Integer block sums.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// With both scales 1 the quantized dot product of one block is its integer sum, which is
    /// below 2^24 in magnitude and so exact in f32: compare with an i64 sum.
    #[test]
    fn block_integer_sums_are_exact(
        wq in prop::collection::vec(-128i32..=127, QK),
        w4 in prop::collection::vec(0u8..=255, QK / 2),
        xq in prop::collection::vec(-127i8..=127, QK),
    ) {
        let one = 0x3c00u16.to_le_bytes();
        let a = [BlockQ8 { qs: xq.clone().try_into().unwrap(), d: 1.0 }];
        let mut q8 = one.to_vec();
        q8.extend(wq.iter().map(|&q| q as i8 as u8));
        let want8: i64 = wq.iter().zip(&xq).map(|(&w, &x)| w as i64 * x as i64).sum();
        prop_assert_eq!(dot_q8_0_row(&q8, &a) as i64, want8);
        let mut q4 = one.to_vec();
        q4.extend(&w4);
        let want4: i64 = (0..QK)
            .map(|j| {
                let nib = if j < 16 { w4[j] & 15 } else { w4[j - 16] >> 4 };
                (nib as i64 - 8) * xq[j] as i64
            })
            .sum();
        prop_assert_eq!(dot_q4_0_row(&q4, &a) as i64, want4);
    }
}

/// The extremes of the integer sums: all codes at the largest magnitude.
#[test]
fn block_integer_sum_extremes() {
    let one = 0x3c00u16.to_le_bytes();
    let a = [BlockQ8 {
        qs: [-127; QK],
        d: 1.0,
    }];
    let mut q8 = one.to_vec();
    q8.extend([(-128i8) as u8; QK]);
    assert_eq!(dot_q8_0_row(&q8, &a), (32 * 128 * 127) as f32);
    let mut q4 = one.to_vec();
    q4.extend([0u8; QK / 2]); // every code -8
    assert_eq!(dot_q4_0_row(&q4, &a), (32 * 8 * 127) as f32);
}

// ---------------------------------------------------------------------------------------------
// Dot products: bit equality with the spec order, and accuracy against f64.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn f32_dots_follow_the_spec_order((a, b) in vec_pair(300)) {
        let spec = spec_dot(&a, &b);
        prop_assert_eq!(dot_f32(&a, &b).to_bits(), spec.to_bits());
        prop_assert_eq!(dot_f32_row(&le_bytes(&a), &b).to_bits(), spec.to_bits());
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let abs: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
        let bound = lane_dot_bound(a.len(), abs);
        prop_assert!((spec as f64 - exact).abs() <= bound, "{spec} vs {exact}, bound {bound}");
    }

    /// f16 weights are widened exactly, then the f32 order applies.
    #[test]
    fn f16_dot_follows_the_spec_order((a, b) in vec_pair(300)) {
        // Within the finite f16 range (larger values would become infinities).
        let a: Vec<f32> = a.iter().map(|x| x.clamp(-65504.0, 65504.0)).collect();
        let h = f16_bytes(&a);
        let wide: Vec<f32> = h
            .chunks(2)
            .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect();
        let spec = spec_dot(&wide, &b);
        prop_assert_eq!(dot_f16_row(&h, &b).to_bits(), spec.to_bits());
        let exact: f64 = wide.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let abs: f64 = wide.iter().zip(&b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
        prop_assert!((spec as f64 - exact).abs() <= lane_dot_bound(wide.len(), abs));
    }

    /// Quantized rows against the dequantized operands in f64. Per block sumi is exact; d_w * d_x
    /// is rounded once, sumi * (d_w d_x) once, and the running sum once per block, so
    /// |error| <= gamma_{nb+2} * sum_b |sumi_b d_w d_x| <= gamma_{nb+2} * sum_i |w_i x_i|
    /// (dequantized values); the f64 reference itself is exact to 2^-40 relative here.
    #[test]
    fn quantized_dots_follow_the_spec_order(w in quant_weights(8), seed in any::<u64>()) {
        let mut s = seed | 1;
        let x: Vec<f32> = (0..w.len())
            .map(|_| {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
            })
            .collect();
        let a = act(&x);
        let xd: Vec<f64> = a
            .iter()
            .flat_map(|b| b.qs.map(|q| q as f64 * b.d as f64))
            .collect();
        for dtype in [DType::Q8_0, DType::Q4_0] {
            let row = quantized(dtype, &w);
            let got = match dtype {
                DType::Q8_0 => dot_q8_0_row(&row, &a),
                _ => dot_q4_0_row(&row, &a),
            };
            prop_assert_eq!(got.to_bits(), spec_dot_quant(dtype, &row, &a).to_bits());
            let mut wd = vec![0.0f32; w.len()];
            dequantize(dtype, &row, &mut wd).unwrap();
            let exact: f64 = wd.iter().zip(&xd).map(|(p, q)| *p as f64 * q).sum();
            let abs: f64 = wd.iter().zip(&xd).map(|(p, q)| (*p as f64 * q).abs()).sum();
            let k = (a.len() + 2) as f64;
            let bound = (k * U / (1.0 - k * U) + 2f64.powi(-40)) * abs;
            prop_assert!((got as f64 - exact).abs() <= bound, "{dtype:?}: {got} vs {exact}");
        }
    }

    /// matvec is the row dot products, row by row, for every dtype; row_to_f32 is dequantize.
    #[test]
    fn matvec_is_rowwise(w in quant_weights(6), rows in 1usize..5, x_seed in any::<u32>()) {
        let cols = w.len() / rows / QK * QK;
        prop_assume!(cols > 0);
        let w = &w[..rows * cols];
        let x: Vec<f32> = (0..cols).map(|i| ((i as u32 ^ x_seed) % 97) as f32 / 13.0 - 3.5).collect();
        let mut scratch = ActScratch::new(cols).unwrap();
        let a = act(&x);
        for dtype in DType::ALL {
            let bytes = match dtype {
                DType::F32 => le_bytes(w),
                DType::F16 => f16_bytes(w),
                _ => quantized(dtype, w),
            };
            let m = MatRef::new(dtype, rows, cols, &bytes).unwrap();
            let mut out = vec![f32::NAN; rows];
            matvec(&mut out, &m, &x, &mut scratch).unwrap();
            let rb = bytes.len() / rows;
            for r in 0..rows {
                let row = &bytes[r * rb..(r + 1) * rb];
                let want = match dtype {
                    DType::F32 => dot_f32_row(row, &x),
                    DType::F16 => dot_f16_row(row, &x),
                    DType::Q8_0 => dot_q8_0_row(row, &a),
                    DType::Q4_0 => dot_q4_0_row(row, &a),
                };
                prop_assert_eq!(out[r].to_bits(), want.to_bits(), "{:?} row {}", dtype, r);
                let mut deq = vec![0.0f32; cols];
                row_to_f32(&m, r, &mut deq).unwrap();
                let mut want = vec![0.0f32; cols];
                dequantize(dtype, row, &mut want).unwrap();
                prop_assert_eq!(deq, want);
            }
        }
    }
}
