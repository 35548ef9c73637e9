//! Hand-written AVX2 kernels of the q8_0 and q4_0 dot products (spec/determinism.md, SIMD
//! paths) — and of f16 matrices times a vector ([`matvec_f16`]: F16C-widened weights in the f32
//! lane order) — four or eight independent chains per call, each in the spec's serial order:
//! `acc = acc + (f32(sumi) * (dw * dx))` per block, blocks ascending, acc starting at +0.0.
//!
//! - The integer block sums are exact, so they are free to use any instruction order: q8_0 codes
//!   are sign-extended to i16 (`vpmovsxbw`) and multiplied and pair-summed in i32 (`vpmaddwd`),
//!   exact for every code including -128; q4_0 nibbles (0..=15, unsigned) are multiplied with the
//!   activation codes by `vpmaddubsw` (pair sums stay within ±3840, no saturation) and 8 × the
//!   codes' pair sums are subtracted, giving the pair sums of `(nibble - 8) * code` exactly.
//! - The four chains' 8-lane sums of a block are reduced together (a `vphaddd` tree) into one
//!   4-lane vector `[sumi0, sumi1, sumi2, sumi3]`.
//! - The float part runs 4-wide: lane i is chain i's accumulator and sees exactly the chain's
//!   three roundings per block (`vmulps` of the scales, `vmulps` with the exact `vcvtdq2ps`
//!   of sumi, `vaddps`), so every chain keeps its serial order. No FMA.
//! - The weight scales are widened with F16C `vcvtph2ps`, which is exact (every f16 is an f32);
//!   it differs from [`crate::model::quant::f16_to_f32`] only by setting the quiet bit of a
//!   signalling NaN, and NaN bits are unspecified (spec rule 8).
//!
//! Chains longer than the shortest one finish their remaining blocks in the portable code
//! ([`crate::model::kernels`]), continuing the same accumulator in the same order.
//!
//! Two kernels work on whole matrices with eight chains and a 256-bit float step (lane i =
//! chain i, the same three roundings):
//! - [`matvec_q8_0`] / [`matvec_q4_0`] (decode): eight rows per pass against one activation,
//!   over every whole group of eight rows of the matrix in one call. q4_0 runs in row lanes
//!   (lane i = row i from the products on): the eight row blocks are transposed into vectors of
//!   four nibbles per row and multiplied with the activation's codes copied to every lane, so no
//!   horizontal reduction is needed; q8_0 reduces each row's products by `vphaddd` trees;
//! - [`matmul_q8_0`] / [`matmul_q4_0`] (batched prefill): one row block against eight tokens,
//!   lane t = token t throughout, so a block's eight integer sums need no horizontal reduction.
//!   The tokens' scales, q4_0 biases and codes (as 32-bit words, word k of a group's eight
//!   tokens in one vector) are gathered once per pass for all rows; a row block's word k is
//!   copied to all lanes (`vpshufd`) and multiplied with it: q4_0 nibbles by `vpmaddubsw`, q8_0
//!   codes widened to i16 by `vpmaddwd`, both exact for every code. q4_0 passes two groups of
//!   eight tokens over the rows ([`MATMUL_PASS`]), unpacking each row block once for both.
//!
//! No unsafe code: with Rust ≥ 1.87 the pointer-free intrinsics are safe to call inside
//! `#[target_feature]` functions, and all loads are built from byte arrays (`_mm_set_epi64x` of
//! little-endian words, which LLVM turns into one vector load). Calling these functions from code
//! without AVX2 and F16C is what needs unsafe; that lives in [`crate::model::cpu`], behind the
//! run-time detection.

use core::arch::x86_64::{
    __m128, __m128i, __m256, __m256i, _mm256_add_epi16, _mm256_add_epi32, _mm256_add_ps,
    _mm256_and_ps, _mm256_and_si256, _mm256_andnot_ps, _mm256_broadcastsi128_si256,
    _mm256_castps256_ps128, _mm256_castps_si256, _mm256_castsi256_ps, _mm256_castsi256_si128,
    _mm256_cmp_ps, _mm256_cvtepi32_ps, _mm256_cvtepi8_epi16, _mm256_cvtph_ps, _mm256_cvttps_epi32,
    _mm256_extract_epi64, _mm256_extractf128_ps, _mm256_extracti128_si256, _mm256_hadd_epi32,
    _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_min_epi32, _mm256_min_ps, _mm256_mul_ps,
    _mm256_packs_epi16, _mm256_packs_epi32, _mm256_permutevar8x32_epi32, _mm256_set1_epi16,
    _mm256_set1_epi32, _mm256_set1_epi8, _mm256_set1_ps, _mm256_set_epi64x, _mm256_set_m128i,
    _mm256_setr_epi32, _mm256_setr_ps, _mm256_shuffle_epi32, _mm256_sign_epi32, _mm256_srli_epi16,
    _mm256_srlv_epi32, _mm256_sub_epi16, _mm256_sub_epi32, _mm256_sub_ps, _mm256_unpackhi_epi32,
    _mm256_unpackhi_epi64, _mm256_unpacklo_epi32, _mm256_unpacklo_epi64, _mm_add_epi32, _mm_add_ps,
    _mm_cvtepi32_ps, _mm_cvtepi8_epi16, _mm_cvtph_ps, _mm_cvtss_f32, _mm_extract_ps, _mm_mul_ps,
    _mm_prefetch, _mm_set1_epi16, _mm_set1_ps, _mm_set_epi64x, _mm_setr_ps, _mm_setzero_ps,
    _CMP_GE_OQ, _CMP_UNORD_Q, _MM_HINT_T0,
};

use core::slice::ChunksExact;

use crate::format::dtype::{Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK};
use crate::model::batch::{BatchedProduct, TokenLanes};
use crate::model::kernels::{
    arrays, chain_blocks, finish_f16_row, q4_0_chain, q8_0_chain, LANES, MATVEC_CHUNK,
};
use crate::model::quant::BlockQ8;

/// Bytes `o..o + 8` of `b` as a little-endian i64 (`o + 8 <= N` at every call site; a constant
/// offset, so the bounds check folds away and the load merges with its neighbours).
#[inline(always)]
fn word<const N: usize>(b: &[u8; N], o: usize) -> i64 {
    i64::from_le_bytes(core::array::from_fn(|k| b.get(o + k).copied().unwrap_or(0)))
}

/// [`word`] of i8 codes.
#[inline(always)]
fn code_word(q: &[i8; QK], o: usize) -> i64 {
    i64::from_le_bytes(core::array::from_fn(|k| {
        q.get(o + k).map_or(0, |&c| c as u8)
    }))
}

/// Bytes `o..o + 16` of `b` (one unaligned vector load).
#[target_feature(enable = "avx2")]
#[inline]
fn load16<const N: usize>(b: &[u8; N], o: usize) -> __m128i {
    _mm_set_epi64x(word(b, o + 8), word(b, o))
}

/// The f16 scale bits (the first two bytes, little-endian) of a block.
#[inline(always)]
fn scale_bits<const N: usize>(blk: &[u8; N]) -> u64 {
    u64::from(u16::from_le_bytes([
        blk.first().copied().unwrap_or(0),
        blk.get(1).copied().unwrap_or(0),
    ]))
}

/// The first `n` blocks of a row, as a block iterator.
#[inline(always)]
fn row_blocks<const N: usize>(row: &[u8], n: usize) -> ChunksExact<'_, u8> {
    row.get(..n * N).unwrap_or(&[]).chunks_exact(N)
}

/// Asks the CPU to fetch the cache line `ahead` bytes past the start of `block` (a hint: it
/// never faults and changes no result, whatever the address).
#[target_feature(enable = "avx2")]
#[inline]
fn prefetch(block: &[u8], ahead: usize) {
    _mm_prefetch::<_MM_HINT_T0>(block.as_ptr().wrapping_add(ahead).cast());
}

/// How far ahead of each row to prefetch: the callers' rows are consecutive in memory, so four
/// rows further on (a matrix-vector product's next row group) or, when the four chains share one
/// row, the next row (batched prefill's next row).
#[inline(always)]
fn prefetch_distance(rows: [&[u8]; 4], shared_row: bool) -> usize {
    let len = rows[0].len();
    if shared_row {
        len
    } else {
        len.saturating_mul(4)
    }
}

/// The first `n` blocks of an activation.
#[inline(always)]
fn act_blocks(act: &[BlockQ8], n: usize) -> core::slice::Iter<'_, BlockQ8> {
    act.get(..n).unwrap_or(&[]).iter()
}

/// A chunk of a `chunks_exact(N)` iterator as an array (always `Some`).
#[inline(always)]
fn block<const N: usize>(c: &[u8]) -> Option<&[u8; N]> {
    c.first_chunk::<N>()
}

/// The four blocks' f16 scales widened exactly to f32 (F16C).
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn weight_scales<const N: usize>(w: [&[u8; N]; 4]) -> __m128 {
    let bits =
        scale_bits(w[0]) | scale_bits(w[1]) << 16 | scale_bits(w[2]) << 32 | scale_bits(w[3]) << 48;
    _mm_cvtph_ps(_mm_set_epi64x(0, bits as i64))
}

/// Sums each of four 8-lane i32 vectors: `[Σ s0, Σ s1, Σ s2, Σ s3]`.
#[target_feature(enable = "avx2")]
#[inline]
fn reduce4(s0: __m256i, s1: __m256i, s2: __m256i, s3: __m256i) -> __m128i {
    let t = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
    // Lane i of each 128-bit half holds chain i's sum over that half's 4 elements.
    _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256::<1>(t))
}

/// The chain accumulators as an array.
#[target_feature(enable = "avx2")]
#[inline]
fn lanes(acc: __m128) -> [f32; 4] {
    let lane = |bits: i32| f32::from_bits(bits as u32);
    [
        _mm_cvtss_f32(acc),
        lane(_mm_extract_ps::<1>(acc)),
        lane(_mm_extract_ps::<2>(acc)),
        lane(_mm_extract_ps::<3>(acc)),
    ]
}

/// One block of the four chains: `acc + (f32(sumi) * (dw * dx))` lane by lane.
#[target_feature(enable = "avx2")]
#[inline]
fn step(acc: __m128, sumi: __m128i, dw: __m128, dx: __m128) -> __m128 {
    _mm_add_ps(acc, _mm_mul_ps(_mm_cvtepi32_ps(sumi), _mm_mul_ps(dw, dx)))
}

/// The 32 activation codes of a block sign-extended to i16, in two halves.
#[target_feature(enable = "avx2")]
#[inline]
fn widen_act(x: &BlockQ8) -> (__m256i, __m256i) {
    let q = &x.qs;
    (
        _mm256_cvtepi8_epi16(_mm_set_epi64x(code_word(q, 8), code_word(q, 0))),
        _mm256_cvtepi8_epi16(_mm_set_epi64x(code_word(q, 24), code_word(q, 16))),
    )
}

/// The 32 codes of a q8_0 block sign-extended to i16, in two halves.
#[target_feature(enable = "avx2")]
#[inline]
fn widen_row(w: &[u8; Q8_0_BLOCK_BYTES]) -> (__m256i, __m256i) {
    (
        _mm256_cvtepi8_epi16(load16(w, 2)),
        _mm256_cvtepi8_epi16(load16(w, 2 + 16)),
    )
}

/// The exact products of widened weight and activation codes, pair-summed into 8 i32 lanes.
#[target_feature(enable = "avx2")]
#[inline]
fn q8_0_products(w: (__m256i, __m256i), x: (__m256i, __m256i)) -> __m256i {
    _mm256_add_epi32(_mm256_madd_epi16(w.0, x.0), _mm256_madd_epi16(w.1, x.1))
}

/// Chain i is the q8_0 dot product of `rows[i]` (34-byte blocks) with `acts[i]`, over
/// `min(rows[i].len() / 34, acts[i].len())` blocks, in the spec's order: bit for bit
/// [`crate::model::kernels::dot_q8_0_row`]`(rows[i], acts[i])`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn dot4_q8_0(rows: [&[u8]; 4], acts: [&[BlockQ8]; 4]) -> [f32; 4] {
    let (counts, common) = chain_blocks::<Q8_0_BLOCK_BYTES>(rows, acts);
    let shared_act = acts.iter().all(|a| core::ptr::eq(*a, acts[0]));
    let shared_row = rows.iter().all(|r| core::ptr::eq(*r, rows[0]));
    let acc = match (shared_act, shared_row) {
        (true, _) => q8_0_blocks::<true, false>(rows, acts, common),
        (false, true) => q8_0_blocks::<false, true>(rows, acts, common),
        (false, false) => q8_0_blocks::<false, false>(rows, acts, common),
    };
    let acc = lanes(acc);
    if counts.iter().all(|&c| c == common) {
        return acc;
    }
    core::array::from_fn(|i| q8_0_chain(acc[i], rows[i], acts[i], common))
}

/// The first `n` blocks of [`dot4_q8_0`]'s chains. `SHARED_ACT`: the four activations are one
/// slice (a matrix-vector product), its codes are widened once per block; `SHARED_ROW`: the
/// four rows are one slice (batched prefill), its codes are widened once per block.
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn q8_0_blocks<const SHARED_ACT: bool, const SHARED_ROW: bool>(
    rows: [&[u8]; 4],
    acts: [&[BlockQ8]; 4],
    n: usize,
) -> __m128 {
    let [w0, w1, w2, w3] = rows;
    let [x0, x1, x2, x3] = acts;
    let w = row_blocks::<Q8_0_BLOCK_BYTES>(w0, n)
        .zip(row_blocks::<Q8_0_BLOCK_BYTES>(w1, n))
        .zip(row_blocks::<Q8_0_BLOCK_BYTES>(w2, n))
        .zip(row_blocks::<Q8_0_BLOCK_BYTES>(w3, n));
    let x = act_blocks(x0, n)
        .zip(act_blocks(x1, n))
        .zip(act_blocks(x2, n))
        .zip(act_blocks(x3, n));
    let ahead = prefetch_distance(rows, SHARED_ROW);
    let mut acc = _mm_setzero_ps();
    for ((((w0, w1), w2), w3), (((x0, x1), x2), x3)) in w.zip(x) {
        prefetch(w0, ahead);
        if !SHARED_ROW {
            prefetch(w1, ahead);
            prefetch(w2, ahead);
            prefetch(w3, ahead);
        }
        let (Some(w0), Some(w1), Some(w2), Some(w3)) = (block(w0), block(w1), block(w2), block(w3))
        else {
            break;
        };
        let (sumi, dx) = if SHARED_ACT {
            let x = widen_act(x0);
            (
                reduce4(
                    q8_0_products(widen_row(w0), x),
                    q8_0_products(widen_row(w1), x),
                    q8_0_products(widen_row(w2), x),
                    q8_0_products(widen_row(w3), x),
                ),
                _mm_set1_ps(x0.d),
            )
        } else if SHARED_ROW {
            let w = widen_row(w0);
            (
                reduce4(
                    q8_0_products(w, widen_act(x0)),
                    q8_0_products(w, widen_act(x1)),
                    q8_0_products(w, widen_act(x2)),
                    q8_0_products(w, widen_act(x3)),
                ),
                _mm_setr_ps(x0.d, x1.d, x2.d, x3.d),
            )
        } else {
            (
                reduce4(
                    q8_0_products(widen_row(w0), widen_act(x0)),
                    q8_0_products(widen_row(w1), widen_act(x1)),
                    q8_0_products(widen_row(w2), widen_act(x2)),
                    q8_0_products(widen_row(w3), widen_act(x3)),
                ),
                _mm_setr_ps(x0.d, x1.d, x2.d, x3.d),
            )
        };
        acc = step(acc, sumi, weight_scales([w0, w1, w2, w3]), dx);
    }
    acc
}

/// Chain i is the q4_0 dot product of `rows[i]` (18-byte blocks) with `act`, over
/// `min(rows[i].len() / 18, act.len())` blocks, in the spec's order: bit for bit
/// [`crate::model::kernels::dot_q4_0_row`]`(rows[i], act)`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn dot4_q4_0(rows: [&[u8]; 4], act: &[BlockQ8]) -> [f32; 4] {
    let (counts, common) = chain_blocks::<Q4_0_BLOCK_BYTES>(rows, [act; 4]);
    let low_nibbles = _mm256_set1_epi8(0x0f);
    // The low 128 bits keep the low nibbles (codes 0..16), the high 128 bits shift the high
    // nibbles down (codes 16..32).
    let nibble_shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    let eight = _mm256_set1_epi8(8);
    let ones = _mm256_set1_epi16(1);
    let [w0, w1, w2, w3] = rows;
    let w = row_blocks::<Q4_0_BLOCK_BYTES>(w0, common)
        .zip(row_blocks::<Q4_0_BLOCK_BYTES>(w1, common))
        .zip(row_blocks::<Q4_0_BLOCK_BYTES>(w2, common))
        .zip(row_blocks::<Q4_0_BLOCK_BYTES>(w3, common));
    let ahead = prefetch_distance(rows, false);
    let mut acc = _mm_setzero_ps();
    for ((((w0, w1), w2), w3), x) in w.zip(act_blocks(act, common)) {
        for c in [w0, w1, w2, w3] {
            prefetch(c, ahead);
        }
        let (Some(w0), Some(w1), Some(w2), Some(w3)) = (block(w0), block(w1), block(w2), block(w3))
        else {
            break;
        };
        let q = &x.qs;
        let codes = _mm256_set_epi64x(
            code_word(q, 24),
            code_word(q, 16),
            code_word(q, 8),
            code_word(q, 0),
        );
        // 8 · (code 2k + code 2k+1): the bias of the nibbles, per i16 pair.
        let bias = _mm256_maddubs_epi16(eight, codes);
        let products = |blk: &[u8; Q4_0_BLOCK_BYTES]| {
            let packed = _mm256_broadcastsi128_si256(load16(blk, 2));
            let nibbles = _mm256_and_si256(_mm256_srlv_epi32(packed, nibble_shift), low_nibbles);
            let pairs = _mm256_sub_epi16(_mm256_maddubs_epi16(nibbles, codes), bias);
            _mm256_madd_epi16(pairs, ones)
        };
        let sumi = reduce4(products(w0), products(w1), products(w2), products(w3));
        acc = step(acc, sumi, weight_scales([w0, w1, w2, w3]), _mm_set1_ps(x.d));
    }
    let acc = lanes(acc);
    if counts.iter().all(|&c| c == common) {
        return acc;
    }
    core::array::from_fn(|i| q4_0_chain(acc[i], rows[i], act, common))
}

/// Rows per group of the whole-matrix kernels: eight chains, one 256-bit float step per block.
pub(crate) const MATVEC_GROUP: usize = 8;

/// The eight blocks' f16 scales widened exactly to f32 (F16C).
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn weight_scales8<const N: usize>(w: &[&[u8; N]; MATVEC_GROUP]) -> __m256 {
    let word = |w: &[&[u8; N]]| {
        w.iter()
            .enumerate()
            .fold(0u64, |b, (i, blk)| b | scale_bits(blk) << (16 * i))
    };
    let (lo, hi) = w.split_at(4);
    _mm256_cvtph_ps(_mm_set_epi64x(word(hi) as i64, word(lo) as i64))
}

/// Eight chain accumulators as an array.
#[target_feature(enable = "avx2")]
#[inline]
fn lanes8(acc: __m256) -> [f32; MATVEC_GROUP] {
    let [a, b, c, d] = lanes(_mm256_castps256_ps128(acc));
    let [e, f, g, h] = lanes(_mm256_extractf128_ps::<1>(acc));
    [a, b, c, d, e, f, g, h]
}

/// One block of eight chains: `acc + (f32(sumi) * (dw * dx))` lane by lane (the 4-lane
/// [`step`] in 256 bits: the same three roundings per lane).
#[target_feature(enable = "avx2")]
#[inline]
fn step8(acc: __m256, sumi: __m256i, dw: __m256, dx: __m256) -> __m256 {
    _mm256_add_ps(
        acc,
        _mm256_mul_ps(_mm256_cvtepi32_ps(sumi), _mm256_mul_ps(dw, dx)),
    )
}

/// The next block of each of eight block iterators, as arrays (None when any is exhausted).
#[inline(always)]
fn next8<'a, const N: usize>(
    it: &mut [ChunksExact<'a, u8>; MATVEC_GROUP],
) -> Option<[&'a [u8; N]; MATVEC_GROUP]> {
    let mut out: [&[u8; N]; MATVEC_GROUP] = [&[0; N]; MATVEC_GROUP];
    for (o, i) in out.iter_mut().zip(it.iter_mut()) {
        *o = block(i.next()?)?;
    }
    Some(out)
}

/// The whole-matrix product of the q8_0 or q4_0 rows in `bytes` (`rb`-byte rows of
/// `act.len()` blocks each) with `act`, for the whole groups of [`MATVEC_GROUP`] rows:
/// `out[r]` = the chain of row r, bit for bit `dot_q*_row(row r, act)`. Returns the number of
/// rows computed (the caller does the rest). `products` gives a block's eight i32 lanes whose
/// sum is the block's exact integer sum, given the activation block prepared by `prepare`.
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn matvec_groups<const BB: usize, P: Copy>(
    out: &mut [f32],
    bytes: &[u8],
    act: &[BlockQ8],
    prepare: impl Fn(&BlockQ8) -> P,
    products: impl Fn(&[u8; BB], P) -> __m256i,
) -> usize {
    let rb = act.len() * BB;
    if rb == 0 {
        return 0;
    }
    let group_bytes = rb * MATVEC_GROUP;
    let mut done = 0;
    for (o, g) in out
        .chunks_exact_mut(MATVEC_GROUP)
        .zip(bytes.chunks_exact(group_bytes))
    {
        let mut blocks: [ChunksExact<'_, u8>; MATVEC_GROUP] =
            core::array::from_fn(|i| g[i * rb..(i + 1) * rb].chunks_exact(BB));
        let mut acc = _mm256_set1_ps(0.0);
        for x in act {
            let Some(w) = next8::<BB>(&mut blocks) else {
                break;
            };
            // The next group (the rows are consecutive): one line per row and block.
            for blk in &w {
                prefetch(&blk[..], group_bytes);
            }
            let p = prepare(x);
            let lo = reduce4(
                products(w[0], p),
                products(w[1], p),
                products(w[2], p),
                products(w[3], p),
            );
            let hi = reduce4(
                products(w[4], p),
                products(w[5], p),
                products(w[6], p),
                products(w[7], p),
            );
            acc = step8(
                acc,
                _mm256_set_m128i(hi, lo),
                weight_scales8(&w),
                _mm256_set1_ps(x.d),
            );
        }
        o.copy_from_slice(&lanes8(acc));
        done += MATVEC_GROUP;
    }
    done
}

/// [`matvec_groups`] of q8_0 rows (34-byte blocks): the rows of the whole groups of eight, bit
/// for bit `dot_q8_0_row(row, act)` each. Returns the rows computed.
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn matvec_q8_0(out: &mut [f32], bytes: &[u8], act: &[BlockQ8]) -> usize {
    matvec_groups::<Q8_0_BLOCK_BYTES, _>(
        out,
        bytes,
        act,
        |x| widen_act(x),
        |w, x| q8_0_products(widen_row(w), x),
    )
}

/// The whole-matrix product of the q4_0 rows in `bytes` (18-byte blocks, `act.len()` per row)
/// with `act` for the whole groups of [`MATVEC_GROUP`] rows, in row lanes: lane i = row i from
/// the products on, so a block's eight integer sums need no horizontal reduction. The group's
/// eight row blocks are transposed into eight vectors of four nibbles per row (`vpunpck*`:
/// vector k holds nibbles 4k..4k + 4 of every row), each multiplied by `vpmaddubsw` with the
/// activation's codes 4k..4k + 4 copied to every lane; the pair sums are added in i16 (16
/// products per lane, |sum| ≤ 16 · 15 · 128 < 2^15) and pair-summed to i32 once, and the bias
/// 8 × Σ codes of the activation block, the same for every row, is subtracted. The chains run
/// over the columns in chunks of [`MATVEC_CHUNK`] blocks, each chunk continuing the
/// accumulators kept in `out`: every row is `dot_q4_0_row(row, act)` bit for bit. Returns the
/// rows computed.
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn matvec_q4_0(out: &mut [f32], bytes: &[u8], act: &[BlockQ8]) -> usize {
    const BB: usize = Q4_0_BLOCK_BYTES;
    let rb = act.len() * BB;
    if rb == 0 {
        return 0;
    }
    let group_bytes = rb * MATVEC_GROUP;
    let low_nibbles = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let mut biases = [0i32; MATVEC_CHUNK];
    let mut done = 0;
    for (c, chunk) in act.chunks(MATVEC_CHUNK).enumerate() {
        for (s, x) in biases.iter_mut().zip(chunk) {
            *s = 8 * x.qs.iter().map(|&q| i32::from(q)).sum::<i32>();
        }
        // The chunk's bytes within each row.
        let (first, len) = (c * MATVEC_CHUNK * BB, chunk.len() * BB);
        done = 0;
        for (o, g) in out
            .chunks_exact_mut(MATVEC_GROUP)
            .zip(bytes.chunks_exact(group_bytes))
        {
            let Some(o) = o.first_chunk_mut::<MATVEC_GROUP>() else {
                break;
            };
            let mut blocks: [ChunksExact<'_, u8>; MATVEC_GROUP] = core::array::from_fn(|i| {
                let start = i * rb + first;
                g[start..start + len].chunks_exact(BB)
            });
            let mut acc = if c == 0 {
                _mm256_set1_ps(0.0)
            } else {
                load_f32x8(o)
            };
            for (x, &bias) in chunk.iter().zip(&biases) {
                let Some(w) = next8::<BB>(&mut blocks) else {
                    break;
                };
                // The next group (the rows are consecutive): one line per row and block.
                for blk in &w {
                    prefetch(&blk[..], group_bytes);
                }
                let pair = |i: usize, j: usize| _mm256_set_m128i(load16(w[j], 2), load16(w[i], 2));
                let (r04, r15, r26, r37) = (pair(0, 4), pair(1, 5), pair(2, 6), pair(3, 7));
                let (t0, t1) = (
                    _mm256_unpacklo_epi32(r04, r15),
                    _mm256_unpackhi_epi32(r04, r15),
                );
                let (t2, t3) = (
                    _mm256_unpacklo_epi32(r26, r37),
                    _mm256_unpackhi_epi32(r26, r37),
                );
                // Word k of the eight rows' packed bytes, row i in lane i.
                let packed = [
                    _mm256_unpacklo_epi64(t0, t2),
                    _mm256_unpackhi_epi64(t0, t2),
                    _mm256_unpacklo_epi64(t1, t3),
                    _mm256_unpackhi_epi64(t1, t3),
                ];
                let low = packed.map(|v| _mm256_and_si256(v, low_nibbles));
                let high = packed.map(|v| _mm256_and_si256(_mm256_srli_epi16::<4>(v), low_nibbles));
                let codes = |k: usize| {
                    _mm256_set1_epi32(i32::from_le_bytes(core::array::from_fn(|j| {
                        x.qs.get(4 * k + j).map_or(0, |&q| q as u8)
                    })))
                };
                let p: [__m256i; 8] = core::array::from_fn(|k| {
                    let nibbles = if k < 4 { low[k] } else { high[k - 4] };
                    _mm256_maddubs_epi16(nibbles, codes(k))
                });
                let add = _mm256_add_epi16;
                let s = add(
                    add(add(p[0], p[1]), add(p[2], p[3])),
                    add(add(p[4], p[5]), add(p[6], p[7])),
                );
                let sumi = _mm256_sub_epi32(_mm256_madd_epi16(s, ones), _mm256_set1_epi32(bias));
                acc = step8(acc, sumi, weight_scales8(&w), _mm256_set1_ps(x.d));
            }
            *o = lanes8(acc);
            done += MATVEC_GROUP;
        }
    }
    done
}

/// Tokens per group of the whole-product prefill kernels: eight chains (one per token) per
/// weight row, one 256-bit float step per block.
pub(crate) const MATMUL_GROUP: usize = 8;

/// Eight i32 lanes from an array (one unaligned vector load).
#[target_feature(enable = "avx2")]
#[inline]
fn load_i32x8(v: &[i32; MATMUL_GROUP]) -> __m256i {
    _mm256_setr_epi32(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])
}

/// Eight f32 lanes from an array (one unaligned vector load).
#[target_feature(enable = "avx2")]
#[inline]
fn load_f32x8(v: &[f32; MATMUL_GROUP]) -> __m256 {
    _mm256_setr_ps(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])
}

/// Each 32-bit word of a 128-bit lane copied to all four words of its lane: `[w0; 4], [w1; 4],
/// [w2; 4], [w3; 4]` (per lane; with the same 16 bytes in both lanes, each is one word in all
/// eight).
#[target_feature(enable = "avx2")]
#[inline]
fn spread_words(v: __m256i) -> [__m256i; 4] {
    [
        _mm256_shuffle_epi32::<0x00>(v),
        _mm256_shuffle_epi32::<0x55>(v),
        _mm256_shuffle_epi32::<0xaa>(v),
        _mm256_shuffle_epi32::<0xff>(v),
    ]
}

/// Groups of [`MATMUL_GROUP`] tokens per pass over the rows of the q4_0 prefill kernel: a row
/// block is unpacked into its eight broadcast nibble words once for the sixteen tokens of a
/// prefill batch (`crate::limits::PREFILL_BATCH`). The q8_0 kernel passes one group at a time
/// (its row block spreads into sixteen vectors, more than the registers hold for two groups).
pub(crate) const MATMUL_PASS: usize = 2;

/// Batched prefill's product in passes of up to `P` groups of [`MATMUL_GROUP`] tokens: for
/// every row r of `bytes` (`nb` blocks of `BB` bytes) and token t, `out[t * out_stride + r]` =
/// the chain of row r with token t's activation `acts[t * nb..(t + 1) * nb]`, bit for bit
/// `dot_q*_row`. A pass of more than one group's tokens runs `P` groups, else one
/// ([`matmul_pass`]). Returns the number of tokens done: all `n`, or 0 when the operands or the
/// scratch (`P` groups' worth) do not fit.
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn matmul_groups<const BB: usize, const W: usize, const P: usize, U: Copy>(
    p: BatchedProduct,
    lanes: TokenLanes,
    k: PassKernel<
        impl Fn(&BlockQ8, usize) -> i32 + Copy,
        impl Fn(&BlockQ8) -> i32 + Copy,
        impl Fn(&[u8; BB]) -> U + Copy,
        impl Fn(U, &[[i32; MATMUL_GROUP]; W]) -> __m256i + Copy,
    >,
) -> usize {
    let BatchedProduct {
        out,
        out_stride,
        bytes,
        acts,
        nb,
        n,
        ..
    } = p;
    let (Some(rb), Some(lanes_len), Some(words_len)) = (
        nb.checked_mul(BB),
        nb.checked_mul(MATMUL_GROUP * P),
        nb.checked_mul(W * P),
    ) else {
        return 0;
    };
    if rb == 0
        || acts.len() / nb < n
        || lanes.dx.len() < lanes_len
        || lanes.bias.len() < lanes_len
        || lanes.codes.len() < words_len
    {
        return 0;
    }
    let mut t0 = 0;
    while t0 < n {
        let count = (n - t0).min(MATMUL_GROUP * P);
        let pass = Pass {
            out: &mut *out,
            out_stride,
            bytes,
            tokens: &acts[t0 * nb..(t0 + count) * nb],
            nb,
            t0,
            count,
        };
        let lanes = TokenLanes {
            dx: &mut lanes.dx[..],
            bias: &mut lanes.bias[..],
            codes: &mut lanes.codes[..],
        };
        let ran = if count > MATMUL_GROUP {
            matmul_pass::<BB, W, P, U>(pass, lanes, k)
        } else {
            matmul_pass::<BB, W, 1, U>(pass, lanes, k)
        };
        if !ran {
            // Not reached (the scratch was checked above); the caller then computes every token.
            return 0;
        }
        t0 += count;
    }
    n
}

/// What a prefill kernel does per token block and row block (see [`matmul_pass`]).
#[derive(Clone, Copy)]
struct PassKernel<Word, Bias, Unpack, Products> {
    /// Word k (of `W`) of a token's codes as the kernel multiplies them.
    word: Word,
    /// What a token block's integer sums exceed the true ones by.
    bias: Bias,
    /// A row block unpacked, once per pass.
    unpack: Unpack,
    /// A row block's integer sums (plus the bias) with one group's gathered words, lane t for
    /// token t of the group.
    products: Products,
}

/// One pass of a batched product: `count` tokens from token `t0` (their activations `tokens`,
/// `nb` blocks each) against every row of `bytes`, into `out` (row r of token t at
/// `t * out_stride + r`).
struct Pass<'a> {
    out: &'a mut [f32],
    out_stride: usize,
    bytes: &'a [u8],
    tokens: &'a [BlockQ8],
    nb: usize,
    t0: usize,
    count: usize,
}

/// One pass of `G` groups of [`MATMUL_GROUP`] tokens (1 ≤ count ≤ 8 G; lanes past `count` compute
/// on zeros and are not written). Lane t of every vector is token t of its group, so a block's
/// integer sums come out as one 8-lane vector per group with no horizontal reduction. What
/// depends only on the tokens is gathered once per pass into `lanes` (`[block][group][token]`):
/// the activation scales, the biases, and the codes as `W` 32-bit words per block and group
/// (`word(x, k)`: word k of a group's eight tokens in one vector). Per row block, `unpack` runs
/// once for all groups, and `products` gives each group's integer sums plus `bias` of its
/// blocks; the bias is subtracted, and the float step is the spec's, one accumulator per group.
/// Returns false, having written nothing, when `lanes` is too short for the pass.
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn matmul_pass<const BB: usize, const W: usize, const G: usize, U: Copy>(
    p: Pass,
    lanes: TokenLanes,
    k: PassKernel<
        impl Fn(&BlockQ8, usize) -> i32,
        impl Fn(&BlockQ8) -> i32,
        impl Fn(&[u8; BB]) -> U,
        impl Fn(U, &[[i32; MATMUL_GROUP]; W]) -> __m256i,
    >,
) -> bool {
    let Pass {
        out,
        out_stride,
        bytes,
        tokens,
        nb,
        t0,
        count,
    } = p;
    let (tb, wb) = (MATMUL_GROUP * G, W * G);
    let (Some(dx), Some(biases), Some(codes)) = (
        lanes.dx.get_mut(..nb * tb),
        lanes.bias.get_mut(..nb * tb),
        lanes.codes.get_mut(..nb * wb),
    ) else {
        return false;
    };
    if count < tb {
        dx.fill(0.0);
        biases.fill(0);
        codes.fill([0; MATMUL_GROUP]);
    }
    for (t, token) in tokens.chunks_exact(nb).enumerate() {
        let (g, lane) = (t / MATMUL_GROUP, t % MATMUL_GROUP);
        for (((x, d), s), c) in token
            .iter()
            .zip(dx.chunks_exact_mut(tb))
            .zip(biases.chunks_exact_mut(tb))
            .zip(codes.chunks_exact_mut(wb))
        {
            if let (Some(d), Some(s), Some(c)) = (
                d.get_mut(g * MATMUL_GROUP + lane),
                s.get_mut(g * MATMUL_GROUP + lane),
                c.get_mut(g * W..(g + 1) * W),
            ) {
                *d = x.d;
                *s = (k.bias)(x);
                for (i, words) in c.iter_mut().enumerate() {
                    words[lane] = (k.word)(x, i);
                }
            }
        }
    }
    let per_block = dx
        .chunks_exact(tb)
        .zip(biases.chunks_exact(tb))
        .zip(codes.chunks_exact(wb));
    let rb = nb * BB;
    for (r, row) in bytes.chunks_exact(rb).enumerate() {
        let mut acc = [_mm256_set1_ps(0.0); G];
        for (blk, ((d, s), c)) in row.chunks_exact(BB).zip(per_block.clone()) {
            // The same block of the next row.
            prefetch(blk, rb);
            let Some(blk) = block::<BB>(blk) else {
                break;
            };
            let unpacked = (k.unpack)(blk);
            let dw = _mm256_cvtph_ps(_mm_set1_epi16(scale_bits(blk) as i16));
            let groups = d
                .chunks_exact(MATMUL_GROUP)
                .zip(s.chunks_exact(MATMUL_GROUP))
                .zip(c.chunks_exact(W));
            for (a, ((d, s), c)) in acc.iter_mut().zip(groups) {
                let (Some(d), Some(s), Some(c)) = (
                    d.first_chunk::<MATMUL_GROUP>(),
                    s.first_chunk::<MATMUL_GROUP>(),
                    c.first_chunk::<W>(),
                ) else {
                    continue;
                };
                let sumi = _mm256_sub_epi32((k.products)(unpacked, c), load_i32x8(s));
                *a = step8(*a, sumi, dw, load_f32x8(d));
            }
        }
        for (g, a) in acc.into_iter().enumerate() {
            let first = g * MATMUL_GROUP;
            for (i, v) in lanes8(a).into_iter().enumerate() {
                if first + i < count {
                    if let Some(o) = out.get_mut((t0 + first + i) * out_stride + r) {
                        *o = v;
                    }
                }
            }
        }
    }
    true
}

/// [`matmul_groups`] of q8_0 rows (34-byte blocks) through `vpmaddwd`: a token's codes are
/// gathered as 16 words of two i16 codes each (codes 2k and 2k + 1), a row block's codes are
/// widened to i16 once, and pair k of the row, copied to all eight lanes, is multiplied and
/// pair-summed with word k of the eight tokens. Exact for every code (|sum| ≤ 32 · 128²).
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn matmul_q8_0(p: BatchedProduct, lanes: TokenLanes) -> usize {
    let kernel = PassKernel {
        word: |x: &BlockQ8, k: usize| {
            let code = |j: usize| x.qs.get(j).map_or(0, |&c| i32::from(c as i16 as u16));
            code(2 * k) | code(2 * k + 1) << 16
        },
        bias: |_: &BlockQ8| 0,
        unpack: |blk: &[u8; Q8_0_BLOCK_BYTES]| {
            // Codes 8g..8g + 8 as i16, the same in both 128-bit lanes.
            let quarter = |g: usize| {
                _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_set_epi64x(
                    0,
                    word(blk, 2 + 8 * g),
                )))
            };
            [quarter(0), quarter(1), quarter(2), quarter(3)]
        },
        products: |quarters: [__m256i; 4], c: &[[i32; MATMUL_GROUP]; 16]| {
            let [q0, q1, q2, q3] = quarters.map(|q| spread_words(q));
            let pairs: [__m256i; 16] = [
                q0[0], q0[1], q0[2], q0[3], q1[0], q1[1], q1[2], q1[3], q2[0], q2[1], q2[2], q2[3],
                q3[0], q3[1], q3[2], q3[3],
            ];
            let p: [__m256i; 16] =
                core::array::from_fn(|k| _mm256_madd_epi16(pairs[k], load_i32x8(&c[k])));
            let add = _mm256_add_epi32;
            let s: [__m256i; 8] = core::array::from_fn(|k| add(p[2 * k], p[2 * k + 1]));
            let s: [__m256i; 4] = core::array::from_fn(|k| add(s[2 * k], s[2 * k + 1]));
            add(add(s[0], s[1]), add(s[2], s[3]))
        },
    };
    matmul_groups::<Q8_0_BLOCK_BYTES, 16, 1, _>(p, lanes, kernel)
}

/// [`matmul_groups`] of q4_0 rows (18-byte blocks) through `vpmaddubsw`: a token's codes are
/// gathered as 8 words of four codes (codes 4k..4k + 4), a row block's nibbles (0..15) are
/// unpacked once per pass (for up to [`MATMUL_PASS`] groups), and nibbles 4k..4k + 4, copied to
/// all eight lanes, are multiplied with word k of a group's eight tokens as bytes. The products' pair sums are added in i16 (each lane sums 16
/// products, |sum| ≤ 16 · 15 · 128 < 2^15) and pair-summed to i32 once; the bias
/// 8 × Σ codes of each token's block is subtracted after: Σ (nibble − 8) · code =
/// Σ nibble · code − 8 · Σ code, exactly.
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn matmul_q4_0(p: BatchedProduct, lanes: TokenLanes) -> usize {
    let low_nibbles = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let kernel = PassKernel {
        word: |x: &BlockQ8, k: usize| {
            i32::from_le_bytes(core::array::from_fn(|j| {
                x.qs.get(4 * k + j).map_or(0, |&c| c as u8)
            }))
        },
        bias: |x: &BlockQ8| 8 * x.qs.iter().map(|&c| i32::from(c)).sum::<i32>(),
        unpack: |blk: &[u8; Q4_0_BLOCK_BYTES]| {
            // Byte j holds nibble j (low) and nibble j + 16 (high), in both 128-bit lanes.
            let packed = _mm256_broadcastsi128_si256(load16(blk, 2));
            let low = _mm256_and_si256(packed, low_nibbles);
            let high = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), low_nibbles);
            let [l0, l1, l2, l3] = spread_words(low);
            let [h0, h1, h2, h3] = spread_words(high);
            [l0, l1, l2, l3, h0, h1, h2, h3]
        },
        products: |nibbles: [__m256i; 8], c: &[[i32; MATMUL_GROUP]; 8]| {
            let p: [__m256i; 8] =
                core::array::from_fn(|k| _mm256_maddubs_epi16(nibbles[k], load_i32x8(&c[k])));
            let add = _mm256_add_epi16;
            let s = add(
                add(add(p[0], p[1]), add(p[2], p[3])),
                add(add(p[4], p[5]), add(p[6], p[7])),
            );
            _mm256_madd_epi16(s, ones)
        },
    };
    matmul_groups::<Q4_0_BLOCK_BYTES, 8, MATMUL_PASS, _>(p, lanes, kernel)
}

/// The f16 rows of a matrix (`2 · x.len()` bytes each) times `x`, one row after another (a
/// straight pass over the matrix: several rows per pass, sharing each input chunk, measured
/// 3–4 times slower): `out[r]` is bit for bit the lane-ordered f16 dot product of row r
/// (spec/determinism.md, f16 and f32 orders; `kernels::dot_f16_row`). Lanes 0..8 and 8..16 of
/// the order are two 256-bit accumulators: per chunk of 16 elements, the 16 weights are widened
/// by F16C `vcvtph2ps` (exact, as `f16_to_f32`; a signalling NaN only gets its quiet bit, and a
/// NaN's bits are unspecified, rule 8), multiplied with the inputs (`vmulps`, rounded) and added
/// (`vaddps`), never fused. The tail past the last whole chunk (element 16q + j to lane j) and
/// the halving of the lanes are the portable code's (`kernels::finish_f16_row`). Returns the
/// number of rows computed (every row; none when `x` is empty).
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn matvec_f16(out: &mut [f32], bytes: &[u8], x: &[f32]) -> usize {
    const CHUNK_BYTES: usize = 2 * LANES;
    let rb = 2 * x.len();
    if rb == 0 {
        return 0;
    }
    let mut done = 0;
    for (o, row) in out.iter_mut().zip(bytes.chunks_exact(rb)) {
        let mut acc = [_mm256_set1_ps(0.0); 2];
        for (xs, w) in arrays::<f32, LANES>(x)
            .0
            .zip(arrays::<u8, CHUNK_BYTES>(row).0)
        {
            for (h, a) in acc.iter_mut().enumerate() {
                let xv = _mm256_setr_ps(
                    xs[8 * h],
                    xs[8 * h + 1],
                    xs[8 * h + 2],
                    xs[8 * h + 3],
                    xs[8 * h + 4],
                    xs[8 * h + 5],
                    xs[8 * h + 6],
                    xs[8 * h + 7],
                );
                let wv = _mm256_cvtph_ps(load16(w, 16 * h));
                *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, xv));
            }
        }
        let (l0, l1) = (lanes8(acc[0]), lanes8(acc[1]));
        let lanes: [f32; LANES] = core::array::from_fn(|k| if k < 8 { l0[k] } else { l1[k - 8] });
        *o = finish_f16_row(lanes, row, x);
        done += 1;
    }
    done
}

/// f16 values (little-endian) widened to f32 by F16C `vcvtph2ps`, eight at a time: `out[i]` is
/// `f16_to_f32` of value i (exact; a signalling NaN only gets its quiet bit, rule 8) for the
/// whole groups of eight both hold. Returns the values written; the caller widens the rest.
/// Each step prefetches the bytes `bytes.len()` further on: batched prefill widens one row after
/// another, so that is the next row's (a hint, measured +10 % f16 prefill).
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn widen_f16(bytes: &[u8], out: &mut [f32]) -> usize {
    let mut done = 0;
    for (o, h) in out.chunks_exact_mut(8).zip(arrays::<u8, 16>(bytes).0) {
        prefetch(h, bytes.len());
        o.copy_from_slice(&lanes8(_mm256_cvtph_ps(load16(h, 0))));
        done += 8;
    }
    done
}

/// The codes of one activation block ([`crate::model::quant::quantize_act_q8_0`]'s), eight
/// elements per step: with `id` the block's inverse scale, code j = round-half-away(x_j · id)
/// clamped to ±127, each step the scalar one: `v = x · id` (`vmulps`), `a = |v|` clamped to 128
/// with NaN made 0 (the scalar truncation saturates and takes NaN to 0, and anything ≥ 128
/// clamps to 127 either way), `t = trunc(a)` (`vcvttps2dq`, exact below 2^31), `t + 1` where
/// `a − t ≥ 0.5` (exact), at most 127, and the sign of v put back (`vpsignd`; v = ±0 or NaN
/// gives 0 already).
#[target_feature(enable = "avx2")]
pub(crate) fn act_codes_q8_0(block: &[f32; QK], id: f32) -> [i8; QK] {
    let id = _mm256_set1_ps(id);
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let (limit, half) = (_mm256_set1_ps(128.0), _mm256_set1_ps(0.5));
    let (one, max_code) = (_mm256_set1_epi32(1), _mm256_set1_epi32(127));
    let eight = |k: usize| {
        let x: [f32; 8] = core::array::from_fn(|j| block.get(8 * k + j).copied().unwrap_or(0.0));
        let v = _mm256_mul_ps(load_f32x8(&x), id);
        let a = _mm256_and_ps(v, magnitude);
        // min(a, 128) for a number; NaN (unordered with itself) becomes 0.
        let a = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(a, a), _mm256_min_ps(a, limit));
        let t = _mm256_cvttps_epi32(a);
        let up = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_sub_ps(a, _mm256_cvtepi32_ps(t)), half);
        let r = _mm256_add_epi32(t, _mm256_and_si256(_mm256_castps_si256(up), one));
        _mm256_sign_epi32(_mm256_min_epi32(r, max_code), _mm256_castps_si256(v))
    };
    let (c0, c1, c2, c3) = (eight(0), eight(1), eight(2), eight(3));
    // i32 → i16 → i8 (the values are within ±127, no saturation); the packs interleave the
    // 128-bit lanes, which one dword permutation puts back in order.
    let bytes = _mm256_packs_epi16(_mm256_packs_epi32(c0, c1), _mm256_packs_epi32(c2, c3));
    let ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    let words = [
        _mm256_extract_epi64::<0>(ordered),
        _mm256_extract_epi64::<1>(ordered),
        _mm256_extract_epi64::<2>(ordered),
        _mm256_extract_epi64::<3>(ordered),
    ];
    core::array::from_fn(|j| (words[j / 8] >> (8 * (j % 8))) as i8)
}
