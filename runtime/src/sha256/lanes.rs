//! Several SHA-256 computations at once, one per 32-bit SIMD lane: the same FIPS 180-4 algorithm
//! as [`super::Sha256`], on messages of equal length in lock step. A `.slm` reader hashes a
//! payload's 64 KiB chunks independently (spec/slm.md, Digests), so chunks of one length share
//! the rounds.
//!
//! The vector code is written once (`lanes_backend!`) and compiled for three backends: wasm
//! `simd128` (four lanes, in the simd128 module only), x86-64 SSE2 (four lanes; the baseline of
//! every x86-64 CPU, so no detection) and x86-64 AVX2 (eight lanes, when the run-time level
//! [`crate::model::cpu::isa`] is AVX2). Every operation of the rounds is exact integer arithmetic
//! (add modulo 2^32, xor, select, shift), so each lane's digest is SHA-256's. Elsewhere the
//! messages are hashed one after the other. The intrinsics take no pointers (message words are
//! gathered from byte slices); the unsafe calls into the x86-64 backends are in
//! [`crate::model::cpu`].

#[allow(unused_imports)] // Each backend uses a part.
use super::{sha256, BLOCK_BYTES, DIGEST_BYTES, H0, K, LENGTH_OFFSET};

/// The SHA-256 digests of four messages. Messages of equal length run in the vector lanes
/// (when the target has them); otherwise each is hashed on its own. Same digests either way.
pub fn sha256_x4(messages: [&[u8]; 4]) -> [[u8; DIGEST_BYTES]; 4] {
    let len = messages[0].len();
    if messages.iter().any(|m| m.len() != len) {
        return messages.map(sha256);
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return vector::hash(messages);
    #[cfg(target_arch = "x86_64")]
    return crate::model::cpu::sha256_x4_sse2(messages);
    #[allow(unreachable_code)]
    messages.map(sha256)
}

/// The SHA-256 digests of `messages` into `out` (as many), in the widest lanes the target has:
/// groups of eight equal-length messages with AVX2 (x86-64, when [`crate::model::cpu::isa`] is
/// AVX2), then groups of four ([`sha256_x4`]), the rest one by one. Same digests as [`sha256`]
/// on each; pass messages sorted by length to fill the lanes.
pub fn sha256_batch(messages: &[&[u8]], out: &mut [[u8; DIGEST_BYTES]]) {
    let n = messages.len().min(out.len());
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    while n - i >= 8 {
        let group: [&[u8]; 8] = core::array::from_fn(|j| messages[i + j]);
        if group.iter().any(|m| m.len() != group[0].len()) {
            break;
        }
        match crate::model::cpu::sha256_x8_avx2(group) {
            Some(d) => out[i..i + 8].copy_from_slice(&d),
            None => break,
        }
        i += 8;
    }
    while n - i >= 4 {
        let d = sha256_x4([
            messages[i],
            messages[i + 1],
            messages[i + 2],
            messages[i + 3],
        ]);
        out[i..i + 4].copy_from_slice(&d);
        i += 4;
    }
    for (m, o) in messages[i..n].iter().zip(&mut out[i..n]) {
        *o = sha256(m);
    }
}

/// The vector rounds and padding for `$n` lanes, stamped into each backend module below. A
/// backend defines the lane type `V` and these functions (each an exact integer operation per
/// 32-bit lane): `message(blocks)` (the 16 big-endian words of `$n` 64-byte blocks, lane j =
/// block j), `splat`, `words` (the lanes), `add` (modulo 2^32), `xor`, `select(mask, a, b)`
/// (bits of `a` where `mask` has a 1, of `b` elsewhere), `shr` and `shl` (logical, by 1..32).
/// The macro's attributes go on every function it writes (the x86-64 backends'
/// `target_feature`).
#[allow(unused_macros)] // Unused on targets without a vector backend.
macro_rules! lanes_backend {
    ($n:literal $(, #[$attr:meta])*) => {
        /// Rotation right by `n` in 1..32: the two shifted halves share no bit, so xor is or.
        $(#[$attr])*
        #[inline]
        fn rotr(x: V, n: u32) -> V {
            xor(shr(x, n), shl(x, 32 - n))
        }

        /// One compression (FIPS 180-4, 6.2.2) per lane: lane j compresses `blocks[j]`
        /// (exactly 64 bytes) into lane j of `state`. The rounds of the scalar compression,
        /// lane-wise, with the same renaming and schedule ring. Ch is select(e, f, g);
        /// Maj(a, b, c) is select(b ^ c, a, b) (where b and c differ, a decides), and a ^ b is
        /// carried into the next round as its b ^ c.
        $(#[$attr])*
        #[inline]
        fn compress(state: &mut [V; 8], blocks: [&[u8]; $n]) {
            let mut w = message(blocks);
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
            let mut b_xor_c = xor(b, c);

            macro_rules! round {
                ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident,
                 $h:ident, $k:expr, $i:expr) => {
                    let s1 = xor(xor(rotr($e, 6), rotr($e, 11)), rotr($e, 25));
                    let t1 = add(
                        add(add($h, add(splat($k), w[$i])), select($e, $f, $g)),
                        s1,
                    );
                    let s0 = xor(xor(rotr($a, 2), rotr($a, 13)), rotr($a, 22));
                    let t2 = add(s0, select(b_xor_c, $a, $b));
                    b_xor_c = xor($a, $b);
                    $d = add($d, t1);
                    $h = add(t1, t2);
                };
            }
            macro_rules! schedule {
                ($i:expr) => {
                    let x = w[($i + 14) % 16];
                    let s1 = xor(xor(rotr(x, 17), rotr(x, 19)), shr(x, 10));
                    let y = w[($i + 1) % 16];
                    let s0 = xor(xor(rotr(y, 7), rotr(y, 18)), shr(y, 3));
                    w[$i] = add(add(w[$i], s1), add(w[($i + 9) % 16], s0));
                };
            }
            macro_rules! sixteen {
                ($k:expr, $advance:expr) => {
                    let k = $k;
                    sixteen!(@one k, $advance, 0, a, b, c, d, e, f, g, h);
                    sixteen!(@one k, $advance, 1, h, a, b, c, d, e, f, g);
                    sixteen!(@one k, $advance, 2, g, h, a, b, c, d, e, f);
                    sixteen!(@one k, $advance, 3, f, g, h, a, b, c, d, e);
                    sixteen!(@one k, $advance, 4, e, f, g, h, a, b, c, d);
                    sixteen!(@one k, $advance, 5, d, e, f, g, h, a, b, c);
                    sixteen!(@one k, $advance, 6, c, d, e, f, g, h, a, b);
                    sixteen!(@one k, $advance, 7, b, c, d, e, f, g, h, a);
                    sixteen!(@one k, $advance, 8, a, b, c, d, e, f, g, h);
                    sixteen!(@one k, $advance, 9, h, a, b, c, d, e, f, g);
                    sixteen!(@one k, $advance, 10, g, h, a, b, c, d, e, f);
                    sixteen!(@one k, $advance, 11, f, g, h, a, b, c, d, e);
                    sixteen!(@one k, $advance, 12, e, f, g, h, a, b, c, d);
                    sixteen!(@one k, $advance, 13, d, e, f, g, h, a, b, c);
                    sixteen!(@one k, $advance, 14, c, d, e, f, g, h, a, b);
                    sixteen!(@one k, $advance, 15, b, c, d, e, f, g, h, a);
                };
                (@one $k:ident, $advance:expr, $i:tt, $a:ident, $b:ident, $c:ident,
                 $d:ident, $e:ident, $f:ident, $g:ident, $h:ident) => {
                    if $advance {
                        schedule!($i);
                    }
                    round!($a, $b, $c, $d, $e, $f, $g, $h, $k[$i], $i);
                };
            }
            sixteen!(K[0], false);
            for k in &K[1..] {
                sixteen!(k, true);
            }
            for (s, x) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
                *s = add(*s, x);
            }
        }

        /// Equal-length messages, one per lane, through `compress`: whole blocks straight from
        /// the messages, then the padded tail (FIPS 180-4, 5.1.1) of each in one or two blocks.
        $(#[$attr])*
        pub fn hash(messages: [&[u8]; $n]) -> [[u8; DIGEST_BYTES]; $n] {
            let len = messages[0].len();
            let whole = len - len % BLOCK_BYTES;
            let mut state = [splat(0); 8];
            for (s, h0) in state.iter_mut().zip(H0) {
                *s = splat(h0);
            }
            let mut at = 0;
            while at < whole {
                compress(&mut state, messages.map(|m| &m[at..at + BLOCK_BYTES]));
                at += BLOCK_BYTES;
            }
            let tail = len - whole;
            let end = if tail < LENGTH_OFFSET {
                BLOCK_BYTES
            } else {
                2 * BLOCK_BYTES
            };
            let mut padded = [[0u8; 2 * BLOCK_BYTES]; $n];
            for (p, m) in padded.iter_mut().zip(messages) {
                p[..tail].copy_from_slice(&m[whole..]);
                p[tail] = 0x80;
                p[end - 8..end].copy_from_slice(&(len as u64).wrapping_mul(8).to_be_bytes());
            }
            let mut at = 0;
            while at < end {
                let blocks: [&[u8]; $n] =
                    core::array::from_fn(|j| &padded[j][at..at + BLOCK_BYTES]);
                compress(&mut state, blocks);
                at += BLOCK_BYTES;
            }
            let mut digests = [[0u8; DIGEST_BYTES]; $n];
            for (i, s) in state.iter().enumerate() {
                for (j, word) in words(*s).iter().enumerate() {
                    digests[j][4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
                }
            }
            digests
        }
    };
}

/// wasm simd128: the intrinsics are safe to call (an engine without simd128 rejects the module).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod vector {
    use super::{BLOCK_BYTES, DIGEST_BYTES, H0, K, LENGTH_OFFSET};
    use core::arch::wasm32::{
        i32x4_add, i32x4_shl, i32x4_shuffle, i8x16_shuffle, u32x4_extract_lane, u32x4_shr,
        u32x4_splat, u64x2, v128, v128_bitselect, v128_xor,
    };

    type V = v128;

    #[inline(always)]
    fn splat(v: u32) -> V {
        u32x4_splat(v)
    }
    /// Sixteen bytes of a block as four big-endian words (one 16-byte load, one byte shuffle).
    #[inline(always)]
    fn load_be(block: &[u8], at: usize) -> V {
        let le = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&block[at + i..at + i + 8]);
            u64::from_le_bytes(b)
        };
        let x = u64x2(le(0), le(8));
        i8x16_shuffle::<3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12>(x, x)
    }
    /// Words 4q..4q+4 of the four blocks, transposed 4×4 so that lane j holds block j.
    #[inline(always)]
    fn message(blocks: [&[u8]; 4]) -> [V; 16] {
        let mut w = [u32x4_splat(0); 16];
        for q in 0..4 {
            let [r0, r1, r2, r3] = blocks.map(|b| load_be(b, 16 * q));
            let t0 = i32x4_shuffle::<0, 4, 1, 5>(r0, r1);
            let t1 = i32x4_shuffle::<2, 6, 3, 7>(r0, r1);
            let t2 = i32x4_shuffle::<0, 4, 1, 5>(r2, r3);
            let t3 = i32x4_shuffle::<2, 6, 3, 7>(r2, r3);
            w[4 * q] = i32x4_shuffle::<0, 1, 4, 5>(t0, t2);
            w[4 * q + 1] = i32x4_shuffle::<2, 3, 6, 7>(t0, t2);
            w[4 * q + 2] = i32x4_shuffle::<0, 1, 4, 5>(t1, t3);
            w[4 * q + 3] = i32x4_shuffle::<2, 3, 6, 7>(t1, t3);
        }
        w
    }
    #[inline(always)]
    fn words(x: V) -> [u32; 4] {
        [
            u32x4_extract_lane::<0>(x),
            u32x4_extract_lane::<1>(x),
            u32x4_extract_lane::<2>(x),
            u32x4_extract_lane::<3>(x),
        ]
    }
    #[inline(always)]
    fn add(a: V, b: V) -> V {
        i32x4_add(a, b)
    }
    #[inline(always)]
    fn xor(a: V, b: V) -> V {
        v128_xor(a, b)
    }
    #[inline(always)]
    fn select(mask: V, a: V, b: V) -> V {
        v128_bitselect(a, b, mask)
    }
    #[inline(always)]
    fn shr(x: V, n: u32) -> V {
        u32x4_shr(x, n)
    }
    #[inline(always)]
    fn shl(x: V, n: u32) -> V {
        i32x4_shl(x, n)
    }

    lanes_backend!(4);
}

/// x86-64 SSE2, part of every x86-64 CPU. The functions carry `target_feature(enable = "sse2")`
/// so the intrinsics are safe to call inside them; calling [`vector::hash`] is the one unsafe
/// call, in [`crate::model::cpu::sha256_x4_sse2`].
#[cfg(target_arch = "x86_64")]
pub(crate) mod vector {
    use super::{BLOCK_BYTES, DIGEST_BYTES, H0, K, LENGTH_OFFSET};
    use core::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_and_si128, _mm_andnot_si128, _mm_cvtsi128_si32,
        _mm_cvtsi32_si128, _mm_or_si128, _mm_set1_epi32, _mm_set_epi32, _mm_shuffle_epi32,
        _mm_sll_epi32, _mm_srl_epi32, _mm_xor_si128,
    };

    type V = __m128i;

    #[target_feature(enable = "sse2")]
    #[inline]
    fn splat(v: u32) -> V {
        _mm_set1_epi32(v as i32)
    }
    /// The message words, gathered one big-endian word per lane.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn message(blocks: [&[u8]; 4]) -> [V; 16] {
        let word = |j: usize, t: usize| {
            let b: &[u8] = blocks[j];
            i32::from_be_bytes([b[4 * t], b[4 * t + 1], b[4 * t + 2], b[4 * t + 3]])
        };
        let mut w = [splat(0); 16];
        for (t, wt) in w.iter_mut().enumerate() {
            *wt = _mm_set_epi32(word(3, t), word(2, t), word(1, t), word(0, t));
        }
        w
    }
    #[target_feature(enable = "sse2")]
    #[inline]
    fn words(x: V) -> [u32; 4] {
        [
            _mm_cvtsi128_si32(x) as u32,
            _mm_cvtsi128_si32(_mm_shuffle_epi32::<0x55>(x)) as u32,
            _mm_cvtsi128_si32(_mm_shuffle_epi32::<0xaa>(x)) as u32,
            _mm_cvtsi128_si32(_mm_shuffle_epi32::<0xff>(x)) as u32,
        ]
    }
    #[target_feature(enable = "sse2")]
    #[inline]
    fn add(a: V, b: V) -> V {
        _mm_add_epi32(a, b)
    }
    #[target_feature(enable = "sse2")]
    #[inline]
    fn xor(a: V, b: V) -> V {
        _mm_xor_si128(a, b)
    }
    #[target_feature(enable = "sse2")]
    #[inline]
    fn select(mask: V, a: V, b: V) -> V {
        _mm_or_si128(_mm_and_si128(mask, a), _mm_andnot_si128(mask, b))
    }
    #[target_feature(enable = "sse2")]
    #[inline]
    fn shr(x: V, n: u32) -> V {
        _mm_srl_epi32(x, _mm_cvtsi32_si128(n as i32))
    }
    #[target_feature(enable = "sse2")]
    #[inline]
    fn shl(x: V, n: u32) -> V {
        _mm_sll_epi32(x, _mm_cvtsi32_si128(n as i32))
    }

    lanes_backend!(4, #[target_feature(enable = "sse2")]);
}

/// x86-64 AVX2, eight lanes, chosen at run time ([`crate::model::cpu::sha256_x8_avx2`], which
/// holds the one unsafe call).
#[cfg(target_arch = "x86_64")]
pub(crate) mod vector8 {
    use super::{BLOCK_BYTES, DIGEST_BYTES, H0, K, LENGTH_OFFSET};
    use core::arch::x86_64::{
        __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_andnot_si256, _mm256_extract_epi32,
        _mm256_or_si256, _mm256_set1_epi32, _mm256_set_epi32, _mm256_sll_epi32, _mm256_srl_epi32,
        _mm256_xor_si256, _mm_cvtsi32_si128,
    };

    type V = __m256i;

    #[target_feature(enable = "avx2")]
    #[inline]
    fn splat(v: u32) -> V {
        _mm256_set1_epi32(v as i32)
    }
    /// The message words, gathered one big-endian word per lane.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn message(blocks: [&[u8]; 8]) -> [V; 16] {
        let word = |j: usize, t: usize| {
            let b: &[u8] = blocks[j];
            i32::from_be_bytes([b[4 * t], b[4 * t + 1], b[4 * t + 2], b[4 * t + 3]])
        };
        let mut w = [splat(0); 16];
        for (t, wt) in w.iter_mut().enumerate() {
            *wt = _mm256_set_epi32(
                word(7, t),
                word(6, t),
                word(5, t),
                word(4, t),
                word(3, t),
                word(2, t),
                word(1, t),
                word(0, t),
            );
        }
        w
    }
    #[target_feature(enable = "avx2")]
    #[inline]
    fn words(x: V) -> [u32; 8] {
        [
            _mm256_extract_epi32::<0>(x) as u32,
            _mm256_extract_epi32::<1>(x) as u32,
            _mm256_extract_epi32::<2>(x) as u32,
            _mm256_extract_epi32::<3>(x) as u32,
            _mm256_extract_epi32::<4>(x) as u32,
            _mm256_extract_epi32::<5>(x) as u32,
            _mm256_extract_epi32::<6>(x) as u32,
            _mm256_extract_epi32::<7>(x) as u32,
        ]
    }
    #[target_feature(enable = "avx2")]
    #[inline]
    fn add(a: V, b: V) -> V {
        _mm256_add_epi32(a, b)
    }
    #[target_feature(enable = "avx2")]
    #[inline]
    fn xor(a: V, b: V) -> V {
        _mm256_xor_si256(a, b)
    }
    #[target_feature(enable = "avx2")]
    #[inline]
    fn select(mask: V, a: V, b: V) -> V {
        _mm256_or_si256(_mm256_and_si256(mask, a), _mm256_andnot_si256(mask, b))
    }
    #[target_feature(enable = "avx2")]
    #[inline]
    fn shr(x: V, n: u32) -> V {
        _mm256_srl_epi32(x, _mm_cvtsi32_si128(n as i32))
    }
    #[target_feature(enable = "avx2")]
    #[inline]
    fn shl(x: V, n: u32) -> V {
        _mm256_sll_epi32(x, _mm_cvtsi32_si128(n as i32))
    }

    lanes_backend!(8, #[target_feature(enable = "avx2")]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Deterministic bytes (a simple LCG), different per `seed`.
    fn bytes(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn every_lane_is_the_scalar_digest_at_every_padding_boundary() {
        for len in (0..200).chain([1000, 4096, 65_535, 65_536, 65_537]) {
            let m: Vec<Vec<u8>> = (0..4).map(|j| bytes(len, len as u32 * 4 + j)).collect();
            let got = sha256_x4([&m[0], &m[1], &m[2], &m[3]]);
            for j in 0..4 {
                assert_eq!(got[j], sha256(&m[j]), "length {len}, lane {j}");
            }
        }
    }

    #[test]
    fn batches_of_any_size_give_the_scalar_digests() {
        for n in [0, 1, 3, 4, 5, 8, 9, 12, 17] {
            let m: Vec<Vec<u8>> = (0..n).map(|j| bytes(130, j as u32)).collect();
            let refs: Vec<&[u8]> = m.iter().map(|v| &v[..]).collect();
            let mut out = alloc::vec![[0u8; 32]; n];
            sha256_batch(&refs, &mut out);
            for j in 0..n {
                assert_eq!(out[j], sha256(&m[j]), "batch of {n}, message {j}");
            }
        }
        // Unequal lengths inside a group of eight.
        let m: Vec<Vec<u8>> = (0..9).map(|j| bytes(100 + j, j as u32)).collect();
        let refs: Vec<&[u8]> = m.iter().map(|v| &v[..]).collect();
        let mut out = alloc::vec![[0u8; 32]; 9];
        sha256_batch(&refs, &mut out);
        assert!((0..9).all(|j| out[j] == sha256(&m[j])));
    }

    #[test]
    fn unequal_lengths_are_hashed_one_by_one() {
        let m: Vec<Vec<u8>> = (0..4).map(|j| bytes(60 + j, j as u32)).collect();
        let got = sha256_x4([&m[0], &m[1], &m[2], &m[3]]);
        for j in 0..4 {
            assert_eq!(got[j], sha256(&m[j]));
        }
    }

    #[test]
    fn equal_messages_give_equal_lanes() {
        let m = bytes(777, 9);
        let got = sha256_x4([&m, &m, &m, &m]);
        assert!(got.iter().all(|d| *d == sha256(&m)));
    }
}
