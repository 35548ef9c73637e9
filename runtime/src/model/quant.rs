//! f16 conversion and ggml-compatible block quantization (spec/determinism.md).
//!
//! - [`f16_to_f32`] / [`f32_to_f16`]: exact widening and IEEE round-to-nearest-even narrowing.
//! - [`quantize_q8_0`] / [`quantize_q4_0`]: weight quantizers producing the same bytes as
//!   gguf-py's reference quantizer (`gguf.quants.quantize`).
//! - [`dequantize`]: storage bytes of any [`DType`] to f32.
//! - [`quantize_act_q8_0`]: the activation quantizer used by the quantized matrix-vector kernels.
//!
//! Everything here uses only integer operations and IEEE f32 `+ - * /`, so native and wasm32
//! produce the same bits.

use crate::error::{Error, ErrorCode, Result};
use crate::format::dtype::{DType, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK};
use crate::model::cpu;
use crate::model::kernels::{arrays, widen_f16};
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use crate::model::simd128;

/// The bits of an f16 infinity with positive sign.
const F16_INF: u16 = 0x7c00;

/// Widens IEEE binary16 bits to f32, exactly: every finite value (subnormals included) and both
/// infinities map to the same value; a NaN keeps its sign and payload (shifted into the high
/// f32 mantissa bits, the quiet bit is not forced).
///
/// Branch-free (three candidates and a select, so loops over it vectorize): exponent and
/// mantissa move up 13 bits and the exponent is rebased by 112 (normals) or 224 (inf/NaN); a
/// subnormal m * 2^-24 is computed exactly as (2^-14 (1 + m/1024)) - 2^-14, an f32 subtraction of
/// two normal numbers with an exactly representable result.
pub const fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let o = (h & 0x7fff) << 13;
    let exp = o & 0x0f80_0000;
    let normal = o + (112 << 23);
    let inf_nan = o + (224 << 23);
    let magic = f32::from_bits(113 << 23); // 2^-14
    let subnormal = (f32::from_bits(o + (113 << 23)) - magic).to_bits();
    let bits = if exp == 0x0f80_0000 {
        inf_nan
    } else if exp == 0 {
        subnormal
    } else {
        normal
    };
    f32::from_bits(sign | bits)
}

/// [`f16_to_f32`] as a power-of-two product (the exact widening the simd128 kernels use for
/// the scales and for chunks holding an infinity or NaN): the same bits for every pattern, but
/// loops over arrays of it vectorize to a few instructions per element (f16 rows), where
/// [`f16_to_f32`]'s candidates and selects do not; one value at a time (a block's scale)
/// [`f16_to_f32`] is the faster.
///
/// The f16 sign-extended and shifted up 13 bits has its sign in bit 31 and its exponent and
/// mantissa in bits 27..13 (the mask clears the sign's copies in bits 30..28); read as an f32
/// that is the f16's value times 2^-112 (a normal f16 a normal f32, a subnormal one a subnormal
/// f32, zero zero), so the product by 2^112 is the value exactly (a product by a power of two
/// with a representable result). For exponent 31 that product is the normal number with
/// exponent 143 and the f16's mantissa; setting every exponent bit makes it the infinity or NaN
/// with that sign and payload (no NaN is ever an operand).
#[inline(always)]
pub(crate) const fn f16_to_f32_lanes(h: u16) -> f32 {
    let placed = ((h as i16 as i32) << 13) as u32 & 0x8fff_e000;
    let value = f32::from_bits(placed) * f32::from_bits((127 + 112) << 23);
    let inf_nan = if h & F16_INF == F16_INF {
        0x7f80_0000
    } else {
        0
    };
    f32::from_bits(value.to_bits() | inf_nan)
}

/// Narrows f32 to IEEE binary16 bits with round-to-nearest, ties-to-even. Magnitudes that round
/// beyond the largest finite f16 (65504) become infinity, tiny values become subnormals or a
/// signed zero. A NaN stays a NaN: sign kept, quiet bit (0x0200) set, the top 10 payload bits
/// kept (as x86 F16C and the `half` crate do).
pub const fn f32_to_f16(f: f32) -> u16 {
    let x = f.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = x & 0x007f_ffff;
    if exp == 0xff {
        return if man == 0 {
            sign | F16_INF
        } else {
            sign | F16_INF | 0x0200 | (man >> 13) as u16
        };
    }
    // Biased f16 exponent of the value, before rounding.
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | F16_INF;
    }
    if e <= 0 {
        // Result is subnormal (or rounds up into the smallest normal, or to zero).
        if e < -10 {
            return sign;
        }
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32; // 14..=24
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let rounded = if rem > halfway || (rem == halfway && half & 1 == 1) {
            half + 1
        } else {
            half
        };
        return sign | rounded as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    // A carry out of the mantissa correctly increments the exponent (up to infinity).
    let rounded = if rem > 0x1000 || (rem == 0x1000 && half & 1 == 1) {
        half + 1
    } else {
        half
    };
    sign | rounded as u16
}

/// Rounds a value to the f16 grid and back: the scale a q8_0/q4_0 block actually stores.
const fn f16_round(x: f32) -> f32 {
    f16_to_f32(f32_to_f16(x))
}

/// Rounds half away from zero, then converts to i32 (saturating; NaN gives 0). Exactly
/// C `roundf` / gguf-py `np_roundf` for every |v| < 2^23, which covers all uses here.
#[inline(always)]
fn round_half_away(v: f32) -> i32 {
    let a = if v < 0.0 { -v } else { v };
    let t = a as i32; // trunc of a non-negative value; saturating, NaN -> 0
    let frac = a - t as f32; // exact for a < 2^23
    let r = if frac >= 0.5 { t.saturating_add(1) } else { t };
    if v < 0.0 {
        -r
    } else {
        r
    }
}

/// The q8_0 scale and its reciprocal for a block: d = amax / 127, id = 1/d (0 when d is 0).
/// `amax` is the largest |x| of the block (NaN elements are ignored).
fn q8_0_scale(block: &[f32]) -> (f32, f32) {
    let mut amax = 0.0f32;
    for &v in block {
        let a = if v < 0.0 { -v } else { v };
        if a > amax {
            amax = a;
        }
    }
    let d = amax / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    (d, id)
}

/// The q8_0 code of one element: round-half-away(x * id) clamped to [-127, 127].
#[inline(always)]
pub(crate) fn q8_0_code(x: f32, id: f32) -> i8 {
    round_half_away(x * id).clamp(-127, 127) as i8
}

fn check_block_lengths(src_len: usize, dst_len: usize, block_bytes: usize) -> Result<usize> {
    if !src_len.is_multiple_of(QK) {
        return Err(Error::new(
            ErrorCode::InvalidLength,
            alloc::format!("{src_len} values are not a whole number of {QK}-element blocks"),
        ));
    }
    let blocks = src_len / QK;
    if blocks.checked_mul(block_bytes) != Some(dst_len) {
        return Err(Error::new(
            ErrorCode::InvalidLength,
            alloc::format!(
                "{blocks} blocks need {} output bytes, got {dst_len}",
                blocks.saturating_mul(block_bytes)
            ),
        ));
    }
    Ok(blocks)
}

fn non_finite(what: &str, block: usize) -> Error {
    Error::new(
        ErrorCode::NonFiniteValue,
        alloc::format!("block {block}: {what}"),
    )
}

/// Quantizes f32 values to q8_0 blocks, byte-identical to gguf-py's `Q8_0.quantize_blocks`
/// (and ggml's `quantize_row_q8_0_ref`): per block d = amax/127, id = 1/d (0 if d is 0),
/// q_i = round-half-away(x_i * id), scale stored as f16(d).
///
/// Errors: `src.len()` not a multiple of 32 or `dst.len()` not exactly 34 bytes per block
/// (`InvalidLength`); a NaN or infinite input, or a scale that overflows f16
/// (`NonFiniteValue`). On error `dst` may be partly written.
pub fn quantize_q8_0(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_block_lengths(src.len(), dst.len(), Q8_0_BLOCK_BYTES)?;
    for (b, (block, out)) in src
        .chunks_exact(QK)
        .zip(dst.chunks_exact_mut(Q8_0_BLOCK_BYTES))
        .enumerate()
    {
        if block.iter().any(|v| !v.is_finite()) {
            return Err(non_finite("q8_0 input is NaN or infinite", b));
        }
        let (d, id) = q8_0_scale(block);
        let dh = f32_to_f16(d);
        if dh & 0x7fff == F16_INF {
            return Err(non_finite("q8_0 scale overflows f16", b));
        }
        let (scale, qs) = out.split_at_mut(2);
        scale.copy_from_slice(&dh.to_le_bytes());
        for (q, &x) in qs.iter_mut().zip(block) {
            *q = q8_0_code(x, id) as u8;
        }
    }
    Ok(())
}

/// Quantizes f32 values to q4_0 blocks, byte-identical to gguf-py's `Q4_0.quantize_blocks`:
/// per block `max` = the element of largest |x| (the first one on ties), d = max / -8,
/// id = 1/d (0 if d is 0), code_i = min(15, trunc(x_i * id + 8.5)), scale stored as f16(d);
/// byte j holds code j in its low nibble and code j+16 in its high nibble.
///
/// Errors as [`quantize_q8_0`] (18 bytes per block).
pub fn quantize_q4_0(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_block_lengths(src.len(), dst.len(), Q4_0_BLOCK_BYTES)?;
    for (b, (block, out)) in src
        .chunks_exact(QK)
        .zip(dst.chunks_exact_mut(Q4_0_BLOCK_BYTES))
        .enumerate()
    {
        if block.iter().any(|v| !v.is_finite()) {
            return Err(non_finite("q4_0 input is NaN or infinite", b));
        }
        let mut amax = -1.0f32;
        let mut max = 0.0f32;
        for &v in block {
            let a = if v < 0.0 { -v } else { v };
            if a > amax {
                amax = a;
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let dh = f32_to_f16(d);
        if dh & 0x7fff == F16_INF {
            return Err(non_finite("q4_0 scale overflows f16", b));
        }
        let (scale, qs) = out.split_at_mut(2);
        scale.copy_from_slice(&dh.to_le_bytes());
        let code = |x: f32| -> u8 {
            // Truncation toward zero of a value in [0, 17); saturating, NaN -> 0.
            ((x * id + 8.5) as i32).clamp(0, 15) as u8
        };
        let (lo, hi) = block.split_at(QK / 2);
        for ((q, &x0), &x1) in qs.iter_mut().zip(lo).zip(hi) {
            *q = code(x0) | (code(x1) << 4);
        }
    }
    Ok(())
}

/// Decodes the storage bytes of `dtype` into `out`: f32 from little-endian bytes, f16 widened
/// exactly, q8_0 as `q * d`, q4_0 as `(nibble - 8) * d` (d the block's f16 scale as f32).
///
/// Errors: `bytes.len()` is not exactly the storage size of `out.len()` elements
/// (`InvalidLength`).
pub fn dequantize(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let need = dtype.bytes_for(out.len() as u64);
    if need != Some(bytes.len() as u64) {
        return Err(Error::new(
            ErrorCode::InvalidLength,
            alloc::format!(
                "{} {} values need {need:?} bytes, got {}",
                out.len(),
                dtype.name(),
                bytes.len()
            ),
        ));
    }
    match dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => widen_f16(bytes, out, false),
        DType::Q8_0 => {
            for (o, blk) in out
                .chunks_exact_mut(QK)
                .zip(bytes.chunks_exact(Q8_0_BLOCK_BYTES))
            {
                let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                for (o, &q) in o.iter_mut().zip(&blk[2..]) {
                    *o = (q as i8) as f32 * d;
                }
            }
        }
        DType::Q4_0 => {
            for (o, blk) in out
                .chunks_exact_mut(QK)
                .zip(bytes.chunks_exact(Q4_0_BLOCK_BYTES))
            {
                let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                let (lo, hi) = o.split_at_mut(QK / 2);
                for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&blk[2..]) {
                    *l = ((q & 0x0f) as i32 - 8) as f32 * d;
                    *h = ((q >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
    }
    Ok(())
}

/// One q8_0-quantized block of an activation vector: 32 codes and the block scale, already
/// rounded to f16 and widened back to f32 (so a kernel multiplies two f32 scales).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8 {
    /// Codes in [-127, 127]; element i of the block is approximately `qs[i] * d`.
    pub qs: [i8; QK],
    /// The block scale f16(amax / 127) as f32.
    pub d: f32,
}

impl BlockQ8 {
    /// An all-zero block.
    pub const ZERO: BlockQ8 = BlockQ8 {
        qs: [0; QK],
        d: 0.0,
    };
}

/// Quantizes an activation vector to q8_0 blocks (spec/determinism.md, Activation
/// quantization): the same codes and f16 scale as [`quantize_q8_0`], except that non-finite
/// inputs are not refused (NaN elements are ignored for amax and get code 0; an infinite amax
/// gives an infinite scale).
///
/// Errors: `x.len()` is not exactly `32 * out.len()` (`InvalidLength`).
pub fn quantize_act_q8_0(x: &[f32], out: &mut [BlockQ8]) -> Result<()> {
    if out.len().checked_mul(QK) != Some(x.len()) {
        return Err(Error::new(
            ErrorCode::InvalidLength,
            alloc::format!(
                "{} activation values do not fill {} q8_0 blocks",
                x.len(),
                out.len()
            ),
        ));
    }
    let (blocks, _) = arrays::<f32, QK>(x);
    cpu::run(
        #[inline(always)]
        || {
            for (block, out) in blocks.zip(out.iter_mut()) {
                let d = act_amax(block) / 127.0;
                let id = if d == 0.0 { 0.0 } else { 1.0 / d };
                out.qs = act_codes(block, id);
                out.d = f16_round(d);
            }
        },
    );
    Ok(())
}

/// A block's amax ([`block_amax`]): the simd128 kernel in the simd128 module, else the portable
/// lanes.
#[inline(always)]
fn act_amax(block: &[f32; QK]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd128::act_quant::block_amax(block)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        block_amax(block)
    }
}

/// A block's 32 codes with inverse scale `id` ([`q8_0_code`] of each element): the hand-written
/// kernel of the level where there is one (AVX2, simd128), else element by element.
#[inline(always)]
fn act_codes(block: &[f32; QK], id: f32) -> [i8; QK] {
    #[cfg(target_arch = "x86_64")]
    if let Some(codes) = cpu::avx2_act_codes_q8_0(block, id) {
        return codes;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd128::act_quant::act_codes_q8_0(block, id)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        core::array::from_fn(|j| q8_0_code(block[j], id))
    }
}

/// Lanes of [`block_amax`].
#[cfg_attr(
    all(target_arch = "wasm32", target_feature = "simd128"),
    allow(dead_code) // the simd128 kernel replaces it (its selftest compares the two)
)]
const AMAX_LANES: usize = 8;

/// The largest |v| of a block (+0.0 when all are zero; NaN elements ignored), as the scan of
/// [`q8_0_scale`] finds it: per-lane maxima, then their maximum. A maximum does not depend on the
/// order it is taken in (NaN never compares greater, and |v| clears the sign bit so no -0.0
/// competes with +0.0), so the lanes give the scan's value bit for bit.
#[cfg_attr(
    all(target_arch = "wasm32", target_feature = "simd128"),
    allow(dead_code) // the simd128 kernel replaces it (its selftest compares the two)
)]
#[inline(always)]
pub(crate) fn block_amax(block: &[f32; QK]) -> f32 {
    let mut m = [0.0f32; AMAX_LANES];
    for c in arrays::<f32, AMAX_LANES>(block).0 {
        m = core::array::from_fn(|k| {
            let a = f32::from_bits(c[k].to_bits() & 0x7fff_ffff);
            if a > m[k] {
                a
            } else {
                m[k]
            }
        });
    }
    m.into_iter()
        .fold(0.0, |acc, v| if v > acc { v } else { acc })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_f16_widenings_give_the_same_bits() {
        for h in 0..=u16::MAX {
            assert_eq!(
                f16_to_f32_lanes(h).to_bits(),
                f16_to_f32(h).to_bits(),
                "{h:#06x}"
            );
        }
    }

    #[test]
    fn f16_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 1.0 / 16_777_216.0); // 2^-24
        assert_eq!(f16_to_f32(0x03ff), 1023.0 / 16_777_216.0);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(65519.99), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00); // tie rounds to even: infinity
        assert_eq!(f32_to_f16(-1e9), 0xfc00);
        assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00); // tie, even stays
        assert_eq!(f32_to_f16(1.0 + 3.0 / 2048.0), 0x3c02); // tie, odd rounds up
        assert_eq!(f32_to_f16(1.0 / 33_554_432.0), 0x0000); // 2^-25: tie to even zero
        assert_eq!(f32_to_f16(1.5 / 33_554_432.0), 0x0001);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
        assert_eq!(f32_to_f16(f32::NAN) & 0x7e00, 0x7e00);
    }

    #[test]
    fn round_half_away_matches_roundf() {
        assert_eq!(round_half_away(0.5), 1);
        assert_eq!(round_half_away(-0.5), -1);
        assert_eq!(round_half_away(1.5), 2);
        assert_eq!(round_half_away(2.5), 3);
        assert_eq!(round_half_away(-2.4999998), -2);
        assert_eq!(round_half_away(f32::NAN), 0);
    }

    #[test]
    fn q8_0_block_exact() {
        let mut src = [0.0f32; 32];
        src[0] = 127.0;
        src[1] = -63.5; // exactly half: away from zero
        src[2] = 0.49;
        let mut dst = [0u8; 34];
        quantize_q8_0(&src, &mut dst).unwrap();
        assert_eq!(&dst[..2], &0x3c00u16.to_le_bytes()); // d = 1
        assert_eq!(dst[2] as i8, 127);
        assert_eq!(dst[3] as i8, -64);
        assert_eq!(dst[4] as i8, 0);
        let mut back = [0.0f32; 32];
        dequantize(DType::Q8_0, &dst, &mut back).unwrap();
        assert_eq!(back[1], -64.0);
    }

    #[test]
    fn q4_0_block_exact() {
        let mut src = [0.0f32; 32];
        src[3] = -8.0; // the max magnitude, negative: d = 1
        src[5] = 8.0; // same magnitude later: not the max
        src[16] = 7.0;
        let mut dst = [0u8; 18];
        quantize_q4_0(&src, &mut dst).unwrap();
        assert_eq!(&dst[..2], &0x3c00u16.to_le_bytes());
        // x * (1/d) + 8.5 truncated; element j low nibble, element j+16 high nibble.
        assert_eq!(dst[2], 0x08 | (15 << 4)); // x0 = 0 -> 8; x16 = 7 -> 15
        assert_eq!(dst[2 + 3], 0x80); // -8 -> 0
        assert_eq!(dst[2 + 5], 0x8f); // 8 -> 16 clamps to 15
                                      // An all-zero block: max = +0, d = -0.
        let mut z = [0u8; 18];
        quantize_q4_0(&[0.0; 32], &mut z).unwrap();
        assert_eq!(&z[..2], &[0x00, 0x80]);
        assert!(z[2..].iter().all(|&b| b == 0x88));
    }

    #[test]
    fn quantizers_refuse_bad_input() {
        let mut dst = [0u8; 34];
        let e = quantize_q8_0(&[0.0; 31], &mut dst).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidLength);
        let e = quantize_q8_0(&[0.0; 32], &mut dst[..33]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidLength);
        let mut src = [0.0f32; 32];
        src[7] = f32::NAN;
        let e = quantize_q8_0(&src, &mut dst).unwrap_err();
        assert_eq!(e.code, ErrorCode::NonFiniteValue);
        src[7] = 1e7; // d = 78740 > 65504
        let e = quantize_q8_0(&src, &mut dst).unwrap_err();
        assert_eq!(e.code, ErrorCode::NonFiniteValue);
        let e = quantize_q4_0(&src, &mut dst[..18]).unwrap_err();
        assert_eq!(e.code, ErrorCode::NonFiniteValue);
        let e = dequantize(DType::Q4_0, &dst, &mut [0.0; 32]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidLength);
    }

    #[test]
    fn activation_matches_weight_quantizer() {
        let x: [f32; 64] = core::array::from_fn(|i| (i as f32 - 20.5) * 0.37);
        let mut bytes = [0u8; 68];
        quantize_q8_0(&x, &mut bytes).unwrap();
        let mut act = [BlockQ8::ZERO; 2];
        quantize_act_q8_0(&x, &mut act).unwrap();
        for (a, blk) in act.iter().zip(bytes.chunks_exact(34)) {
            assert_eq!(a.d, f16_to_f32(u16::from_le_bytes([blk[0], blk[1]])));
            for (q, &b) in a.qs.iter().zip(&blk[2..]) {
                assert_eq!(*q, b as i8);
            }
        }
        let e = quantize_act_q8_0(&x[..63], &mut act).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidLength);
    }
}
