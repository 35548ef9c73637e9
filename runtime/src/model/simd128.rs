//! Hand-written wasm `simd128` kernels of the q8_0 and q4_0 dot products (spec/determinism.md,
//! SIMD paths), four independent chains at a time. Compiled only into the simd128 module
//! (`target_feature = "simd128"` at compile time, which makes every `core::arch::wasm32`
//! intrinsic used here safe to call); no unsafe code, no relaxed SIMD.
//!
//! Chain i is the q8_0 / q4_0 dot product of spec/determinism.md, bit for bit:
//! - the 32 code products of a block are summed exactly in i32 (codes loaded sign-extended to
//!   i16 with `v128.load8x8_s`, q4_0 nibbles unpacked in i16 lanes — or, in the whole-matrix
//!   and prefill kernels, a block's code bytes read as i16 lanes ([`q4_0_lanes`]) against
//!   recast activation codes ([`lane_act_codes`]) — then `i32x4.dot_i16x8_s` and
//!   `i32x4.add`); the four chains' i32x4 partial sums are reduced
//!   together by a 4×4 transpose-add into one i32x4 `[sumi_0, .., sumi_3]` (integer sums are
//!   exact, their order is free);
//! - the float part is 4-wide with lane i = chain i: `acc = acc + (f32(sumi) * (dw * dx))`, one
//!   serial accumulator per chain over the blocks in ascending order, three roundings per
//!   block (`f32x4.mul`, `f32x4.mul`, `f32x4.add` are IEEE binary32 operations per lane, with
//!   subnormals, as the scalar ones);
//! - the four f16 weight scales are widened exactly to the value of
//!   [`crate::model::quant::f16_to_f32`] (a power-of-two product, see [`f16x4_to_f32x4`]).

use core::arch::wasm32::{
    f32x4, f32x4_add, f32x4_convert_i32x4, f32x4_extract_lane, f32x4_mul, f32x4_splat, i16x8,
    i16x8_eq, i16x8_extend_low_i8x16, i16x8_shl, i16x8_shr, i16x8_shuffle, i16x8_splat, i16x8_sub,
    i32x4_add, i32x4_dot_i16x8, i32x4_eq, i32x4_extend_high_i16x8, i32x4_extend_low_i16x8,
    i32x4_shl, i32x4_shr, i32x4_shuffle, i32x4_sub, u16x8_extend_low_u8x16, u16x8_extract_lane,
    u16x8_max, u16x8_shr, u16x8_splat, u32x4, u32x4_splat, u64x2, v128, v128_and, v128_any_true,
    v128_or, v128_xor,
};

pub(crate) mod act_quant;
pub(crate) mod activation;
pub(crate) mod argmax;
#[cfg(feature = "kernel-selftest")]
pub mod selftest;

use crate::format::dtype::{Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};
use crate::model::batch::BatchedProduct;
use crate::model::interleave::{self, Q4_0_QUAD_BYTES, Q8_0_QUAD_BYTES};
use crate::model::kernels::{
    arrays, chain_blocks, finish_f16_row, q4_0_chain, q8_0_chain, reduce_lanes, LANES, MATVEC_CHUNK,
};
use crate::model::quant::BlockQ8;

/// A block's 32 weight codes widened to i16 and its f16 scale.
struct Codes {
    /// The f16 scale bits in the low 16 bits (the high 16 bits are ignored).
    scale: u32,
    /// Codes 0..8, 8..16, 16..24 and 24..32, each as an i16x8; for [`q4_0_nibbles`] the bare
    /// nibbles in that order, and for [`q4_0_lanes`] its four lane vectors.
    w: [v128; 4],
}

/// The `M` bytes of `b` starting at `AT` (`AT + M <= N`, checked at compile time).
#[inline(always)]
fn bytes<const N: usize, const AT: usize, const M: usize>(b: &[u8; N]) -> [u8; M] {
    const { assert!(AT + M <= N) };
    core::array::from_fn(|j| b[AT + j])
}

/// Eight bytes as i8 sign-extended to an i16x8 (one `v128.load8x8_s`).
#[inline(always)]
fn i8x8_to_i16x8(b: [u8; 8]) -> v128 {
    i16x8_extend_low_i8x16(u64x2(u64::from_le_bytes(b), 0))
}

/// Eight bytes zero-extended to an i16x8 (one `v128.load8x8_u`).
#[inline(always)]
fn u8x8_to_u16x8(b: [u8; 8]) -> v128 {
    u16x8_extend_low_u8x16(u64x2(u64::from_le_bytes(b), 0))
}

/// The first four bytes of a block as a little-endian u32: the f16 scale in the low half.
#[inline(always)]
fn scale_bits<const N: usize>(blk: &[u8; N]) -> u32 {
    u32::from_le_bytes(bytes::<N, 0, 4>(blk))
}

/// A q8_0 block (34 bytes): scale bytes 0..2, code j is byte 2 + j as i8.
#[inline(always)]
fn q8_0_codes(blk: &[u8; Q8_0_BLOCK_BYTES]) -> Codes {
    Codes {
        scale: scale_bits(blk),
        w: q8_0_code_bytes(&bytes::<Q8_0_BLOCK_BYTES, 2, 32>(blk)),
    }
}

/// A q4_0 block's bare nibbles (0..=15, without the −8 of its codes: code j is nibble j − 8,
/// nibble j being the low half of byte 2 + j for j < 16 and the high half of byte 2 + j − 16
/// after): the block sums it gives exceed the true ones by 8 × Σ activation codes, which
/// [`nibble_bias`] takes off — four subtractions per activation block instead of four per row.
#[inline(always)]
fn q4_0_nibbles(blk: &[u8; Q4_0_BLOCK_BYTES]) -> Codes {
    const N: usize = Q4_0_BLOCK_BYTES;
    let b0 = u8x8_to_u16x8(bytes::<N, 2, 8>(blk));
    let b1 = u8x8_to_u16x8(bytes::<N, 10, 8>(blk));
    let low = |b| v128_and(b, u16x8_splat(0x0f));
    let high = |b| u16x8_shr(b, 4);
    Codes {
        scale: scale_bits(blk),
        w: [low(b0), low(b1), high(b0), high(b1)],
    }
}

/// A q4_0 block's 16 code bytes as eight i16 lanes `L`, lane i being bytes 2 i and 2 i + 1 with
/// the top bit flipped (`v128.xor` of 0x8000). Its nibbles are n0 (element 2 i), n1 (element
/// 2 i + 16), n2 (element 2 i + 1) and n3 (element 2 i + 17), so the lane is the i16
/// `n0 + 16 n1 + 256 n2 + 4096 (n3 − 8)`; with it come `L >> 4`, `L >> 8` and `L >> 12`
/// (arithmetic, exact: `n1 + 16 n2 + 256 (n3 − 8)`, `n2 + 16 (n3 − 8)`, `n3 − 8`). Against
/// [`lane_act_codes`] its block sums are those of the bare nibbles except n3, which carries its
/// −8 ([`lane_bias`] takes the other −8s off).
#[inline(always)]
fn q4_0_lanes(blk: &[u8; Q4_0_BLOCK_BYTES]) -> Codes {
    const N: usize = Q4_0_BLOCK_BYTES;
    Codes {
        scale: scale_bits(blk),
        w: lane_code_bytes(&bytes::<N, 2, 16>(blk)),
    }
}

/// [`q8_0_codes`] of the four blocks of an interleaved q8_0 quad ([`interleave`]: row i's scale
/// at bytes `2 i`, its code bytes at `8 + 32 i`), row order.
#[inline(always)]
fn quad_codes_q8_0(q: &[u8; Q8_0_QUAD_BYTES]) -> [Codes; 4] {
    const N: usize = Q8_0_QUAD_BYTES;
    const { assert!(interleave::QUAD_CODES_AT == 8 && N == 136) };
    let s = |i: usize| u32::from(u16::from_le_bytes([q[2 * i], q[2 * i + 1]]));
    let codes = |scale, c: [u8; 32]| Codes {
        scale,
        w: q8_0_code_bytes(&c),
    };
    [
        codes(s(0), bytes::<N, 8, 32>(q)),
        codes(s(1), bytes::<N, 40, 32>(q)),
        codes(s(2), bytes::<N, 72, 32>(q)),
        codes(s(3), bytes::<N, 104, 32>(q)),
    ]
}

/// [`q4_0_lanes`] of the four blocks of an interleaved q4_0 quad (row i's scale at bytes `2 i`,
/// its code bytes at `8 + 16 i`, held as [`held_lane_code_bytes`] reads them), row order. Like
/// [`quad_codes_q8_0`], written out with constant offsets: one generic reader of both, its
/// offsets computed from the row, made LLVM gather the code bytes one by one (q4_0 decode
/// ×0.47 under wasmtime).
#[inline(always)]
fn quad_codes_q4_0(q: &[u8; Q4_0_QUAD_BYTES]) -> [Codes; 4] {
    const N: usize = Q4_0_QUAD_BYTES;
    const { assert!(interleave::QUAD_CODES_AT == 8 && N == 72) };
    let s = |i: usize| u32::from(u16::from_le_bytes([q[2 * i], q[2 * i + 1]]));
    let codes = |scale, c: [u8; 16]| Codes {
        scale,
        w: held_lane_code_bytes(&c),
    };
    [
        codes(s(0), bytes::<N, 8, 16>(q)),
        codes(s(1), bytes::<N, 24, 16>(q)),
        codes(s(2), bytes::<N, 40, 16>(q)),
        codes(s(3), bytes::<N, 56, 16>(q)),
    ]
}

/// The first `M` bytes of every `step`-byte step of `b` from its start (the last step may be
/// shorter, not shorter than `M`): one row's fields in a run of quads of `step` bytes, when `b`
/// starts at the field's offset in the first quad.
#[inline(always)]
fn strided<const M: usize>(b: &[u8], step: usize) -> impl Iterator<Item = &[u8; M]> {
    b.chunks(step).filter_map(|c| c.first_chunk::<M>())
}

/// A q8_0 block's 32 code bytes (without its scale) sign-extended to i16, as [`Codes::w`].
#[inline(always)]
fn q8_0_code_bytes(c: &[u8; 32]) -> [v128; 4] {
    [
        i8x8_to_i16x8(bytes::<32, 0, 8>(c)),
        i8x8_to_i16x8(bytes::<32, 8, 8>(c)),
        i8x8_to_i16x8(bytes::<32, 16, 8>(c)),
        i8x8_to_i16x8(bytes::<32, 24, 8>(c)),
    ]
}

/// [`q4_0_lanes`] of a q4_0 block's 16 code bytes (without its scale), as the file has them.
#[inline(always)]
fn lane_code_bytes(c: &[u8; 16]) -> [v128; 4] {
    shifted_lanes(v128_xor(v128_of(c), i16x8_splat(i16::MIN)))
}

/// [`q4_0_lanes`] of a q4_0 block's 16 code bytes as an interleaved quad holds them, the top
/// bit of every odd byte already flipped ([`interleave::held_code`]).
#[inline(always)]
fn held_lane_code_bytes(c: &[u8; 16]) -> [v128; 4] {
    const {
        assert!(interleave::held_code::<Q4_0_BLOCK_BYTES>(1, 0) == 0x80);
        assert!(interleave::held_code::<Q4_0_BLOCK_BYTES>(0, 0) == 0);
    };
    shifted_lanes(v128_of(c))
}

/// `[l, l >> 4, l >> 8, l >> 12]` (arithmetic shifts of the i16 lanes).
#[inline(always)]
fn shifted_lanes(l: v128) -> [v128; 4] {
    [l, i16x8_shr(l, 4), i16x8_shr(l, 8), i16x8_shr(l, 12)]
}

/// The four f16 scales of an interleaved quad of `Q` bytes joined in a u64 (row i's in bits
/// 16 i..16 i + 16).
#[inline(always)]
fn quad_joined_scales<const Q: usize>(q: &[u8; Q]) -> u64 {
    u64::from_le_bytes(bytes::<Q, 0, 8>(q))
}

/// The activation codes `x` (as [`act_codes`]) recast for [`q4_0_lanes`]: with `a_i = x_(2i)`,
/// `b_i = x_(2i+16)`, `c_i = x_(2i+1)` and `d_i = x_(2i+17)` (i < 8), the lanes `a`, `b − 16 a`,
/// `c − 16 b` and `d − 16 c` (each within −2160..=2175: i16 operands, exact i32 products). Lane by lane,
/// `L a + (L >> 4)(b − 16 a) + (L >> 8)(c − 16 b) + (L >> 12)(d − 16 c)` is
/// `n0 a + n1 b + n2 c + (n3 − 8) d`.
#[inline(always)]
fn lane_act_codes(x: &[v128; 4]) -> [v128; 4] {
    let a = i16x8_shuffle::<0, 2, 4, 6, 8, 10, 12, 14>(x[0], x[1]);
    let c = i16x8_shuffle::<1, 3, 5, 7, 9, 11, 13, 15>(x[0], x[1]);
    let b = i16x8_shuffle::<0, 2, 4, 6, 8, 10, 12, 14>(x[2], x[3]);
    let d = i16x8_shuffle::<1, 3, 5, 7, 9, 11, 13, 15>(x[2], x[3]);
    let less16 = |v, u| i16x8_sub(v, i16x8_shl(u, 4));
    [a, less16(b, a), less16(c, b), less16(d, c)]
}

/// The activation codes as they are (rows whose codes are stored as they are).
#[inline(always)]
fn plain_act_codes(x: &[v128; 4]) -> [v128; 4] {
    *x
}

/// An activation block's 32 codes widened to i16 as [`Codes::w`].
#[inline(always)]
fn act_codes(a: &BlockQ8) -> [v128; 4] {
    let q: [u8; 32] = a.qs.map(|c| c as u8);
    [
        i8x8_to_i16x8(bytes::<32, 0, 8>(&q)),
        i8x8_to_i16x8(bytes::<32, 8, 8>(&q)),
        i8x8_to_i16x8(bytes::<32, 16, 8>(&q)),
        i8x8_to_i16x8(bytes::<32, 24, 8>(&q)),
    ]
}

/// Four i32 partial sums whose total is the exact integer dot product of a block's 32 weight
/// codes with its 32 activation codes (products of i16 values summed pairwise in i32 by
/// `i32x4.dot_i16x8_s`: every |product| is below 2^23 — q4_0's lanes [`q4_0_lanes`] reach
/// 2^15 against activation codes of at most 2^7, their shifts 2^11 against recast codes of at
/// most 2175 — so no sum of a block's products overflows).
#[inline(always)]
fn block_partials(w: &[v128; 4], x: &[v128; 4]) -> v128 {
    i32x4_add(
        i32x4_add(i32x4_dot_i16x8(w[0], x[0]), i32x4_dot_i16x8(w[1], x[1])),
        i32x4_add(i32x4_dot_i16x8(w[2], x[2]), i32x4_dot_i16x8(w[3], x[3])),
    )
}

/// The exact integer block sums of four rows' blocks `c` against one activation block `x`, less
/// `bias` (lane i: row i).
#[inline(always)]
fn rows_sumi(c: [&Codes; 4], x: &[v128; 4], bias: v128) -> v128 {
    let [p0, p1, p2, p3] = c.map(|c| block_partials(&c.w, x));
    i32x4_sub(sum4(p0, p1, p2, p3), bias)
}

/// The lane sums of four i32x4 vectors: `[Σ p0, Σ p1, Σ p2, Σ p3]` (a 4×4 transpose-add; exact
/// integer arithmetic).
#[inline(always)]
fn sum4(p0: v128, p1: v128, p2: v128, p3: v128) -> v128 {
    join2(sum2(p0, p1), sum2(p2, p3))
}

/// The first half of [`sum4`]: the lane pairs of `p0` and `p1` added, `[p0_0 + p0_2, p0_1 + p0_3,
/// p1_0 + p1_2, p1_1 + p1_3]`.
#[inline(always)]
fn sum2(p0: v128, p1: v128) -> v128 {
    pair_halves(|a, b| i32x4_add(a, b), p0, p1)
}

/// The second half of [`sum4`]: `[Σ p0, Σ p1, Σ p2, Σ p3]` from `sum2(p0, p1)` and `sum2(p2, p3)`.
#[inline(always)]
fn join2(s01: v128, s23: v128) -> v128 {
    join_halves(|a, b| i32x4_add(a, b), s01, s23)
}

/// `add` of lanes k and k + 2 of `p0` and of `p1`: `[p0_0 + p0_2, p0_1 + p0_3, p1_0 + p1_2,
/// p1_1 + p1_3]` (the left operand the lower lane).
#[inline(always)]
fn pair_halves(add: impl Fn(v128, v128) -> v128, p0: v128, p1: v128) -> v128 {
    add(
        i32x4_shuffle::<0, 1, 4, 5>(p0, p1),
        i32x4_shuffle::<2, 3, 6, 7>(p0, p1),
    )
}

/// `add` of lanes 0 and 1, and of lanes 2 and 3, of two [`pair_halves`] results: one lane per
/// input vector of the pair halving, in order.
#[inline(always)]
fn join_halves(add: impl Fn(v128, v128) -> v128, s01: v128, s23: v128) -> v128 {
    add(
        i32x4_shuffle::<0, 2, 4, 6>(s01, s23),
        i32x4_shuffle::<1, 3, 5, 7>(s01, s23),
    )
}

/// Widens four f16 bit patterns (the low 16 bits of each u32 lane; the high 16 bits are
/// ignored) to f32 with the value of [`crate::model::quant::f16_to_f32`]. Shifted up 16 bits
/// (the high half dropped), then arithmetically down 3, the f16's sign stays bit 31 and its
/// exponent and mantissa land in bits 27..13, where the mask keeps them (bits 30..28 hold copies
/// of the sign): read as an f32 that is the f16's value times 2^-112 (a normal f16 a normal f32,
/// a subnormal one a subnormal f32, zero zero, the sign in place), so one `f32x4.mul` by 2^112
/// gives the value exactly (a product by a power of two that is representable, and wasm keeps
/// subnormals). For infinity and NaN (exponent 31, found by an equality: engines lower the
/// unsigned compare an ordered one becomes to several instructions) that product is the normal
/// number with f32 exponent 143 and the f16's mantissa shifted up 13 bits; setting every
/// exponent bit (an `or`) makes it the infinity or the NaN with that payload and sign.
#[inline(always)]
fn f16x4_to_f32x4(h: v128, k: &Widen) -> v128 {
    let finite = f32x4_mul(f16x4_placed(h, k), k.pow112);
    let is_inf_nan = i32x4_eq(v128_and(h, k.exponent_bits), k.exponent_bits);
    v128_or(finite, v128_and(is_inf_nan, k.f32_exponent))
}

/// [`f16x4_to_f32x4`] of four f16 bit patterns none of which is an infinity or a NaN (exponent
/// below 31): the same placed bits times 2^112, without the step for exponent 31.
#[inline(always)]
fn f16x4_finite_to_f32x4(h: v128, k: &Widen) -> v128 {
    f32x4_mul(f16x4_placed(h, k), k.pow112)
}

/// The placed bits of [`f16x4_to_f32x4`]: each f16's value times 2^-112 as an f32 (exact for
/// an exponent below 31).
#[inline(always)]
fn f16x4_placed(h: v128, k: &Widen) -> v128 {
    v128_and(i32x4_shr(i32x4_shl(h, 16), 3), k.placed_bits)
}

/// The vector constants of [`f16x4_to_f32x4`]. The block loops of the matrix-vector kernels
/// take them from [`Widen::new`], made once per call outside the loop and hidden from the
/// compiler, so that the module holds them in locals: written as constants inside a loop, V8
/// rebuilds each one there on every block (three instructions each) and spills it (measured:
/// Chromium q4_0 decode +10 %, Firefox +3 %, wasmtime unchanged, which hoists constants itself).
/// The prefill kernel converts one scale per row block for all its tokens and keeps
/// [`Widen::plain`] (hidden, they cost wasmtime 2–3 % there); its prescaled passes need no
/// vector constant in the float steps at all.
#[derive(Clone, Copy)]
struct Widen {
    placed_bits: v128,
    pow112: v128,
    exponent_bits: v128,
    f32_exponent: v128,
}

impl Widen {
    /// The constants as constants.
    #[inline(always)]
    fn plain() -> Widen {
        Widen {
            placed_bits: u32x4_splat(0x8fff_e000),
            pow112: f32x4_splat(f32::from_bits((127 + 112) << 23)),
            exponent_bits: u32x4_splat(0x7c00),
            f32_exponent: u32x4_splat(0x7f80_0000),
        }
    }
    /// The constants as values the compiler cannot see through (`black_box`: made once).
    #[inline(always)]
    fn new() -> Widen {
        core::hint::black_box(Widen::plain())
    }
}

/// [`f16x4_to_f32x4`] of eight f16 bit patterns (an i16x8) none of which is an infinity or a
/// NaN (exponent below 31), as two f32x4 (values 0..4 and 4..8). The bits [`f16x4_to_f32x4`]
/// places in each 32-bit lane are built as two 16-bit halves, eight lanes per instruction: the
/// high half `(h >> 3) & 0x8fff` (shifted arithmetically: the sign stays bit 15, its copies in
/// bits 14..12 are cleared, the exponent and the mantissa's top 7 bits land in bits 11..0) and
/// the low half `h << 13` (the mantissa's low 3 bits in bits 15..13), interleaved
/// (`i16x8.shuffle`, low half first) into i32 lanes: the sign in bit 31, the exponent and
/// mantissa in bits 27..13. The same product by 2^112 gives the value.
#[inline(always)]
fn f16x8_finite_to_f32x4x2(h: v128) -> [v128; 2] {
    let scale = f32x4_splat(f32::from_bits((127 + 112) << 23));
    f16x8_finite_placed(h).map(|placed| f32x4_mul(placed, scale))
}

/// One block step of the four chains: `acc = acc + (f32(sumi) * (dw * dx))` per lane, with `dw`
/// the f16 weight scales `c0.scale, .., c3.scale` widened.
#[inline(always)]
fn step(acc: v128, sumi: v128, c: [&Codes; 4], dx: v128, k: &Widen) -> v128 {
    step_scales::<false>(acc, sumi, c, dx, k)
}

/// [`step`], where `FINITE` says that no scale is an infinity or a NaN
/// ([`f16x4_finite_to_f32x4`] then widens them).
#[inline(always)]
fn step_scales<const FINITE: bool>(
    acc: v128,
    sumi: v128,
    c: [&Codes; 4],
    dx: v128,
    k: &Widen,
) -> v128 {
    let [s0, s1, s2, s3] = c.map(|c| c.scale);
    let h = u32x4(s0, s1, s2, s3);
    let dw = if FINITE {
        f16x4_finite_to_f32x4(h, k)
    } else {
        f16x4_to_f32x4(h, k)
    };
    f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(sumi), f32x4_mul(dw, dx)))
}

/// The bound below which every activation scale must lie for [`step_prescaled`]: 2^16, so that
/// `dx · 2^112` stays below 2^128, the first power of two past the largest f32.
const PRESCALED_ACT_BOUND: f32 = 65536.0;

/// [`step_scales`] for finite block scales against an activation scale already multiplied by
/// 2^112 (exact: a product by a power of two that neither overflows nor loses a bit, for
/// |dx| < [`PRESCALED_ACT_BOUND`]): the scales' placed bits (each scale's value times 2^-112,
/// exact) times `dx · 2^112` are the same reals as `dw · dx`, so the rounded product has the
/// same bits, its sign included, and so has everything after it. One `f32x4.mul` fewer per
/// block and four rows; the activation scale comes from the block's prepared vectors.
#[inline(always)]
fn step_prescaled(acc: v128, sumi: v128, c: [&Codes; 4], dx: v128, k: &Widen) -> v128 {
    step_placed(acc, sumi, placed_scales(c, k), dx)
}

/// [`step_prescaled`] given the scales' placed bits.
#[inline(always)]
fn step_placed(acc: v128, sumi: v128, placed: v128, dx: v128) -> v128 {
    f32x4_add(
        acc,
        f32x4_mul(f32x4_convert_i32x4(sumi), f32x4_mul(placed, dx)),
    )
}

/// The placed bits of [`f16x4_to_f32x4`] of the four chains' f16 scales (lane i: chain i):
/// the four 16-bit scales joined in one 64-bit scalar, moved to a vector, sign-extended to i32
/// (`i32x4.extend_low_i16x8_s`), shifted up 13 and masked — the same bits as the shifts up 16
/// and arithmetically down 3 of [`f16x4_to_f32x4`]. Gathering the four scales is the dearest
/// part of a block step (a step left without it decodes q4_0 about 20 % faster under
/// wasmtime); this way, rather than a `u32x4` of the four (engines insert each lane on its own)
/// and two shifts, q4_0 decode runs about 8 % faster under wasmtime, 42M q4_0 about 10 % and
/// q8_0 about 5 %; Chromium and Firefox within their noise.
#[inline(always)]
fn placed_scales(c: [&Codes; 4], k: &Widen) -> v128 {
    let [s0, s1, s2, s3] = c.map(|c| u64::from(c.scale & 0xffff));
    placed_joined_scales(s0 | (s1 << 16) | (s2 << 32) | (s3 << 48), k)
}

/// [`placed_scales`] of four f16 scales joined in a u64 (scale i in bits 16 i..16 i + 16), as an
/// interleaved quad holds them in its first eight bytes (one load).
#[inline(always)]
fn placed_joined_scales(joined: u64, k: &Widen) -> v128 {
    let h = i32x4_extend_low_i16x8(u64x2(joined, 0));
    v128_and(i32x4_shl(h, 13), k.placed_bits)
}

/// The four lanes of an f32x4.
#[inline(always)]
fn lanes(v: v128) -> [f32; 4] {
    [
        f32x4_extract_lane::<0>(v),
        f32x4_extract_lane::<1>(v),
        f32x4_extract_lane::<2>(v),
        f32x4_extract_lane::<3>(v),
    ]
}

/// Four rows of `BB`-byte blocks against one activation (each activation block is loaded and
/// widened once for the four rows). Uses `min(row blocks, act.len())` blocks. `bias` gives, from
/// an activation block's widened codes, what is subtracted from every row's block sum (the
/// codes may be stored with an offset, as q4_0's nibbles: see [`q4_0_nibbles`]).
#[inline(always)]
fn dot4_shared<const BB: usize>(
    rows: [&[u8]; 4],
    act: &[BlockQ8],
    codes: impl Fn(&[u8; BB]) -> Codes,
    bias: impl Fn(&[v128; 4]) -> v128,
) -> [f32; 4] {
    let [r0, r1, r2, r3] = rows.map(|r| arrays::<u8, BB>(r).0);
    let k = Widen::new();
    let mut acc = f32x4_splat(0.0);
    for ((((b0, b1), b2), b3), a) in r0.zip(r1).zip(r2).zip(r3).zip(act) {
        let x = act_codes(a);
        let (c0, c1, c2, c3) = (codes(b0), codes(b1), codes(b2), codes(b3));
        let sumi = rows_sumi([&c0, &c1, &c2, &c3], &x, bias(&x));
        acc = step(acc, sumi, [&c0, &c1, &c2, &c3], f32x4_splat(a.d), &k);
    }
    lanes(acc)
}

/// No bias (codes stored as they are).
#[inline(always)]
fn no_bias(_: &[v128; 4]) -> v128 {
    u32x4_splat(0)
}

/// The bias of [`q4_0_nibbles`] in every lane: 8 × the sum of the activation block's 32 codes
/// (exact in i32), since Σ (nibble − 8) · code = Σ nibble · code − 8 · Σ code.
#[inline(always)]
fn nibble_bias(x: &[v128; 4]) -> v128 {
    let eight = i16x8_splat(8);
    let p = block_partials(&[eight; 4], x);
    sum4(p, p, p, p)
}

/// The bias of [`q4_0_lanes`] in every lane: 8 × the sum of the activation block's codes but the
/// eight `d` codes of [`lane_act_codes`] (elements 17, 19, .., 31), whose −8 the lanes carry.
#[inline(always)]
fn lane_bias(x: &[v128; 4]) -> v128 {
    let p = block_partials(&lane_eights(), x);
    sum4(p, p, p, p)
}

/// [`lane_bias`]'s multipliers of the activation codes: 8, and 0 for the elements 17, 19, .., 31.
#[inline(always)]
fn lane_eights() -> [v128; 4] {
    let (eight, even) = (i16x8_splat(8), i16x8(8, 0, 8, 0, 8, 0, 8, 0));
    [eight, eight, even, even]
}

/// Four (row, activation) chains of `BB`-byte blocks. Uses the fewest blocks of any chain.
#[inline(always)]
fn dot4_each<const BB: usize>(
    rows: [&[u8]; 4],
    acts: [&[BlockQ8]; 4],
    codes: impl Fn(&[u8; BB]) -> Codes,
) -> [f32; 4] {
    let [r0, r1, r2, r3] = rows.map(|r| arrays::<u8, BB>(r).0);
    let [a0, a1, a2, a3] = acts;
    let k = Widen::new();
    let mut acc = f32x4_splat(0.0);
    let blocks = r0.zip(r1).zip(r2).zip(r3);
    let act_blocks = a0.iter().zip(a1).zip(a2).zip(a3);
    for ((((b0, b1), b2), b3), (((x0, x1), x2), x3)) in blocks.zip(act_blocks) {
        let (c0, c1, c2, c3) = (codes(b0), codes(b1), codes(b2), codes(b3));
        let sumi = sum4(
            block_partials(&c0.w, &act_codes(x0)),
            block_partials(&c1.w, &act_codes(x1)),
            block_partials(&c2.w, &act_codes(x2)),
            block_partials(&c3.w, &act_codes(x3)),
        );
        let dx = f32x4(x0.d, x1.d, x2.d, x3.d);
        acc = step(acc, sumi, [&c0, &c1, &c2, &c3], dx, &k);
    }
    lanes(acc)
}

/// One row of `BB`-byte blocks against four activations (each row block is loaded and widened
/// once for the four chains). Uses the fewest blocks of any chain.
#[inline(always)]
fn dot4_one_row<const BB: usize>(
    row: &[u8],
    acts: [&[BlockQ8]; 4],
    codes: impl Fn(&[u8; BB]) -> Codes,
) -> [f32; 4] {
    let [a0, a1, a2, a3] = acts;
    let k = Widen::new();
    let mut acc = f32x4_splat(0.0);
    let act_blocks = a0.iter().zip(a1).zip(a2).zip(a3);
    for (b, (((x0, x1), x2), x3)) in arrays::<u8, BB>(row).0.zip(act_blocks) {
        let c = codes(b);
        let w = &c.w;
        let sumi = sum4(
            block_partials(w, &act_codes(x0)),
            block_partials(w, &act_codes(x1)),
            block_partials(w, &act_codes(x2)),
            block_partials(w, &act_codes(x3)),
        );
        let dx = f32x4(x0.d, x1.d, x2.d, x3.d);
        acc = step(acc, sumi, [&c; 4], dx, &k);
    }
    lanes(acc)
}

/// Four q8_0 dot products: chain i is the q8_0 dot product (spec/determinism.md) of `rows[i]`
/// (34-byte blocks) with `acts[i]` over `min(rows[i].len() / 34, acts[i].len())` blocks — bit
/// for bit `kernels::dot_q8_0_row(rows[i], acts[i])`. The blocks all chains have run here; a
/// chain with more continues in the portable order (`kernels::q8_0_chain`). Work shared by the
/// chains is done once: an activation block when the four activations are one slice (a
/// matrix-vector product), a row block when the four rows are one slice (a row against four
/// tokens).
pub(crate) fn dot4_q8_0(rows: [&[u8]; 4], acts: [&[BlockQ8]; 4]) -> [f32; 4] {
    let (counts, common) = chain_blocks::<Q8_0_BLOCK_BYTES>(rows, acts);
    let [a0, a1, a2, a3] = acts;
    let [r0, r1, r2, r3] = rows;
    let acc = if core::ptr::eq(a0, a1) && core::ptr::eq(a0, a2) && core::ptr::eq(a0, a3) {
        dot4_shared(rows, &a0[..common], q8_0_codes, no_bias)
    } else if core::ptr::eq(r0, r1) && core::ptr::eq(r0, r2) && core::ptr::eq(r0, r3) {
        dot4_one_row(r0, acts.map(|a| &a[..common]), q8_0_codes)
    } else {
        dot4_each(rows, acts.map(|a| &a[..common]), q8_0_codes)
    };
    if counts.iter().all(|&c| c == common) {
        return acc;
    }
    core::array::from_fn(|i| q8_0_chain(acc[i], rows[i], acts[i], common))
}

/// Four q4_0 dot products: chain i is the q4_0 dot product (spec/determinism.md) of `rows[i]`
/// (18-byte blocks) with `act`, bit for bit `kernels::dot_q4_0_row(rows[i], act)`, as
/// [`dot4_q8_0`].
pub(crate) fn dot4_q4_0(rows: [&[u8]; 4], act: &[BlockQ8]) -> [f32; 4] {
    let (counts, common) = chain_blocks::<Q4_0_BLOCK_BYTES>(rows, [act; 4]);
    let acc = dot4_shared(rows, &act[..common], q4_0_nibbles, nibble_bias);
    if counts.iter().all(|&c| c == common) {
        return acc;
    }
    core::array::from_fn(|i| q4_0_chain(acc[i], rows[i], act, common))
}

/// Rows per group of the whole-matrix kernels (four chains, as [`dot4_shared`]; eight rows per
/// pass measured slower under wasmtime).
pub(crate) const MATVEC_GROUP: usize = 4;
const _: () = assert!(MATVEC_GROUP == interleave::GROUP_ROWS);

/// The whole-matrix product of the `BB`-byte-block rows in `bytes` (rows of `act.len()` blocks
/// each) with `act`, for the whole groups of [`MATVEC_GROUP`] rows: `out[r]` is bit for bit the
/// single-row product of row r (each row its own serial chain, as [`dot4_shared`]). What depends
/// only on the activation (its codes widened and `recast` for the rows' `codes`, and `bias`) is
/// prepared once per block for all rows, in column chunks of [`MATVEC_CHUNK`] blocks, each chunk
/// continuing the accumulators kept in `out`. `FINITE`: no block scale of the matrix is an
/// infinity or a NaN ([`step_scales`]); `PRESCALED` (only with `FINITE`): besides, every
/// activation scale lies below [`PRESCALED_ACT_BOUND`] in magnitude ([`step_prescaled`]; each
/// case is its own loop, so the inner loop holds no test of it). `INTERLEAVED`: the groups are
/// held as quads of `Q` bytes ([`interleave`]), read as one stream (`quad` gives a quad's four
/// blocks), the four scales of a prescaled step in one load ([`placed_joined_scales`]). Returns
/// the number of rows computed; the caller does the rest.
#[inline(always)]
fn matvec_groups<
    const BB: usize,
    const Q: usize,
    const FINITE: bool,
    const PRESCALED: bool,
    const INTERLEAVED: bool,
>(
    out: &mut [f32],
    bytes: &[u8],
    act: &[BlockQ8],
    codes: impl Fn(&[u8; BB]) -> Codes + Copy,
    quad: impl Fn(&[u8; Q]) -> [Codes; 4] + Copy,
    recast: impl Fn(&[v128; 4]) -> [v128; 4] + Copy,
    bias: impl Fn(&[v128; 4]) -> v128 + Copy,
) -> usize {
    let rb = act.len() * BB;
    if rb == 0 {
        return 0;
    }
    let zero = u32x4_splat(0);
    let k = Widen::new();
    // Finite block scales and every activation scale below 2^16 (no infinity, no NaN): the
    // 2^112 of the scales' widening moves to the activation scales, once per block for all
    // rows ([`step_prescaled`]).
    const { assert!(FINITE || !PRESCALED) };
    const { assert!(Q == MATVEC_GROUP * BB) };
    let pow112 = f32::from_bits((127 + 112) << 23);
    let mut prepared = [([zero; 4], zero, zero); MATVEC_CHUNK];
    let mut done = 0;
    for (c, chunk) in act.chunks(MATVEC_CHUNK).enumerate() {
        for (p, a) in prepared.iter_mut().zip(chunk) {
            let x = act_codes(a);
            let dx = if PRESCALED { a.d * pow112 } else { a.d };
            *p = (recast(&x), bias(&x), f32x4_splat(dx));
        }
        // The chunk's bytes within each row.
        let (first, len) = (c * MATVEC_CHUNK * BB, chunk.len() * BB);
        done = 0;
        for (o, g) in out
            .chunks_exact_mut(MATVEC_GROUP)
            .zip(bytes.chunks_exact(rb * MATVEC_GROUP))
        {
            let Some(o) = o.first_chunk_mut::<MATVEC_GROUP>() else {
                break;
            };
            let mut acc = if c == 0 {
                f32x4_splat(0.0)
            } else {
                f32x4(o[0], o[1], o[2], o[3])
            };
            let prepared = &prepared[..chunk.len()];
            if INTERLEAVED {
                // One stream of quads: the chunk's blocks of the four rows, block by block.
                let quads = &g[first * MATVEC_GROUP..(first + len) * MATVEC_GROUP];
                for (q, (x, bias, dx)) in arrays::<u8, Q>(quads).0.zip(prepared) {
                    let [c0, c1, c2, c3] = quad(q);
                    let sumi = rows_sumi([&c0, &c1, &c2, &c3], x, *bias);
                    acc = if PRESCALED {
                        let joined = quad_joined_scales(q);
                        step_placed(acc, sumi, placed_joined_scales(joined, &k), *dx)
                    } else {
                        step_scales::<FINITE>(acc, sumi, [&c0, &c1, &c2, &c3], *dx, &k)
                    };
                }
            } else {
                let [r0, r1, r2, r3] = core::array::from_fn(|i| {
                    let start = i * rb + first;
                    arrays::<u8, BB>(&g[start..start + len]).0
                });
                let blocks = r0.zip(r1).zip(r2).zip(r3);
                for ((((b0, b1), b2), b3), (x, bias, dx)) in blocks.zip(prepared) {
                    let (c0, c1, c2, c3) = (codes(b0), codes(b1), codes(b2), codes(b3));
                    let c = [&c0, &c1, &c2, &c3];
                    let sumi = rows_sumi(c, x, *bias);
                    acc = if PRESCALED {
                        step_prescaled(acc, sumi, c, *dx, &k)
                    } else {
                        step_scales::<FINITE>(acc, sumi, c, *dx, &k)
                    };
                }
            }
            *o = lanes(acc);
            done += MATVEC_GROUP;
        }
    }
    done
}

/// The q8_0 rows (34-byte blocks, `act.len()` per row) of the whole groups of four of a
/// matrix times `act`, each bit for bit `kernels::dot_q8_0_row(row, act)`. `finite`: no block
/// scale is an infinity or a NaN (`false` is always correct). Returns the rows computed.
/// `interleaved`: those groups are held interleaved ([`interleave`]).
pub(crate) fn matvec_q8_0(
    out: &mut [f32],
    bytes: &[u8],
    act: &[BlockQ8],
    finite: bool,
    interleaved: bool,
) -> usize {
    let (c, q, r, b) = (q8_0_codes, quad_codes_q8_0, plain_act_codes, no_bias);
    matvec_cases(out, bytes, act, (finite, interleaved), c, q, r, b)
}

/// The q4_0 rows (18-byte blocks) of the whole groups of four, as [`matvec_q8_0`].
pub(crate) fn matvec_q4_0(
    out: &mut [f32],
    bytes: &[u8],
    act: &[BlockQ8],
    finite: bool,
    interleaved: bool,
) -> usize {
    let (c, q, r, b) = (q4_0_lanes, quad_codes_q4_0, lane_act_codes, lane_bias);
    matvec_cases(out, bytes, act, (finite, interleaved), c, q, r, b)
}

/// [`matvec_groups`] in the case the matrix's `(finite, interleaved)` and the activation
/// scales select.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the operands, then how to read and prepare blocks
fn matvec_cases<const BB: usize, const Q: usize>(
    out: &mut [f32],
    bytes: &[u8],
    act: &[BlockQ8],
    (finite, interleaved): (bool, bool),
    codes: impl Fn(&[u8; BB]) -> Codes + Copy,
    quad: impl Fn(&[u8; Q]) -> [Codes; 4] + Copy,
    recast: impl Fn(&[v128; 4]) -> [v128; 4] + Copy,
    bias: impl Fn(&[v128; 4]) -> v128 + Copy,
) -> usize {
    let (c, q, r, b) = (codes, quad, recast, bias);
    if interleaved {
        matvec_scales::<_, _, true>(out, bytes, act, finite, c, q, r, b)
    } else {
        matvec_scales::<_, _, false>(out, bytes, act, finite, c, q, r, b)
    }
}

/// [`matvec_cases`] for one layout of the rows (`INTERLEAVED`).
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the operands, then how to read and prepare blocks
fn matvec_scales<const BB: usize, const Q: usize, const INTERLEAVED: bool>(
    out: &mut [f32],
    bytes: &[u8],
    act: &[BlockQ8],
    finite: bool,
    codes: impl Fn(&[u8; BB]) -> Codes + Copy,
    quad: impl Fn(&[u8; Q]) -> [Codes; 4] + Copy,
    recast: impl Fn(&[v128; 4]) -> [v128; 4] + Copy,
    bias: impl Fn(&[v128; 4]) -> v128 + Copy,
) -> usize {
    let (c, q, r, b) = (codes, quad, recast, bias);
    if !finite {
        matvec_groups::<_, _, false, false, INTERLEAVED>(out, bytes, act, c, q, r, b)
    } else if act.iter().all(|a| a.d.abs() < PRESCALED_ACT_BOUND) {
        matvec_groups::<_, _, true, true, INTERLEAVED>(out, bytes, act, c, q, r, b)
    } else {
        matvec_groups::<_, _, true, false, INTERLEAVED>(out, bytes, act, c, q, r, b)
    }
}

/// Tokens per group of the whole-product prefill kernels (four chains, as [`dot4_one_row`]).
pub(crate) const MATMUL_GROUP: usize = 4;

/// Groups per pass over the rows: the eight tokens of a prefill batch
/// ([`crate::limits::PREFILL_BATCH`]) share each row block's widened codes and scale, and the
/// rows are read once per batch.
const MATMUL_PASS: usize = 2;

/// Blocks per column chunk of the prefill kernels: what a pass's activation blocks widen to is
/// kept on the stack for this many blocks (32 × 2 × 18 vectors, 18 KiB).
const MATMUL_CHUNK: usize = 32;

/// An activation block of each token of a group, prepared once for all rows: its codes widened
/// and `recast` for the rows' codes, the biases (lane i: token i) and the scales (lane i:
/// token i).
type GroupBlock = ([[v128; 4]; MATMUL_GROUP], v128, v128);

/// Batched prefill's product for every token: for every row r of `bytes` (`nb` blocks of `BB`
/// bytes) and token t, `out[t * out_stride + r]` = the chain of row r with
/// `acts[t * nb..(t + 1) * nb]`, bit for bit the single-row product. The tokens go in passes of
/// up to [`MATMUL_PASS`] groups of [`MATMUL_GROUP`] ([`matmul_pass`]); a pass of two groups
/// (five to eight tokens) whose matrix is `finite` and whose tokens' activation scales all lie
/// below [`PRESCALED_ACT_BOUND`] takes the scales prescaled ([`step_prescaled`]'s argument,
/// once per row block for all its tokens; a pass of one group never does). Returns the number
/// of tokens done: all of them, or 0 when the operands do not fit (the caller then does them).
#[inline(always)]
fn matmul_groups<const BB: usize, const M: usize, const INTERLEAVED: bool>(
    mut p: BatchedProduct,
    codes: impl Fn(&[u8; BB]) -> Codes + Copy,
    code_bytes: impl Fn(&[u8; M]) -> [v128; 4] + Copy,
    recast: impl Fn(&[v128; 4]) -> [v128; 4] + Copy,
    bias: impl Fn(&[[v128; 4]; MATMUL_GROUP]) -> v128 + Copy,
) -> usize {
    let (nb, n) = (p.nb, p.n);
    if nb == 0 || n.checked_mul(nb).is_none_or(|need| p.acts.len() < need) {
        return 0;
    }
    let mut t0 = 0;
    while t0 < n {
        let count = (n - t0).min(MATMUL_GROUP * MATMUL_PASS);
        // This pass's tokens' activation scales (in bounds: t0 + count <= n, n * nb <= len).
        let tame = || {
            p.acts[t0 * nb..(t0 + count) * nb]
                .iter()
                .all(|a| a.d.abs() < PRESCALED_ACT_BOUND)
        };
        if count <= MATMUL_GROUP {
            matmul_pass::<BB, M, 1, false, INTERLEAVED>(
                &mut p, t0, count, codes, code_bytes, recast, bias,
            );
        } else if p.finite && tame() {
            matmul_pass::<BB, M, MATMUL_PASS, true, INTERLEAVED>(
                &mut p, t0, count, codes, code_bytes, recast, bias,
            );
        } else {
            matmul_pass::<BB, M, MATMUL_PASS, false, INTERLEAVED>(
                &mut p, t0, count, codes, code_bytes, recast, bias,
            );
        }
        t0 += count;
    }
    n
}

/// `G` groups of [`MATMUL_GROUP`] tokens of `p` against every row: tokens `t0..t0 + count`
/// (1 ≤ count ≤ 4 G), lane i of group g being token `t0 + 4 g + i` (lanes past `count` run with
/// a copy of token `t0` and are not written). The groups' activation blocks are prepared once per
/// pass ([`GroupBlock`], in column chunks of [`MATMUL_CHUNK`] blocks, each chunk continuing the
/// accumulators kept in `out`); per row and chunk the integer block sums of every group come
/// first (each row block's codes widened once for all groups), then the float steps (each
/// block's scale widened once). A group's block sums are kept as two halves, [`sum2`] of tokens
/// 0–1 and of tokens 2–3, and joined ([`join2`]) in the float step: the store of the first half
/// comes before the second half's activation vectors are loaded. Wasmtime places a loop's
/// arithmetic after the loads it needs, so with one [`sum4`] per group all 16 activation vectors
/// and the row block were live at once and five of them spilled to the stack (q4_0 and q8_0
/// prefill about 10 % faster under wasmtime with the halves; Chromium and Firefox unchanged).
/// `PRESCALED`: every block scale of the rows is finite and every activation scale of the
/// pass's tokens lies below [`PRESCALED_ACT_BOUND`]; the activation scales are prepared times
/// 2^112 and each row block's scale widened to its placed bits only, the same reals as in
/// [`step_prescaled`], so the same bits (no vector constant is left in the float steps, which
/// V8 rebuilds there on every block: see [`Widen`]).
#[inline(always)]
fn matmul_pass<
    const BB: usize,
    const M: usize,
    const G: usize,
    const PRESCALED: bool,
    const INTERLEAVED: bool,
>(
    p: &mut BatchedProduct,
    t0: usize,
    count: usize,
    codes: impl Fn(&[u8; BB]) -> Codes + Copy,
    code_bytes: impl Fn(&[u8; M]) -> [v128; 4] + Copy,
    recast: impl Fn(&[v128; 4]) -> [v128; 4] + Copy,
    bias: impl Fn(&[[v128; 4]; MATMUL_GROUP]) -> v128 + Copy,
) {
    const { assert!(M + 2 == BB) };
    let (out_stride, bytes, acts, nb) = (p.out_stride, p.bytes, p.acts, p.nb);
    let out = &mut *p.out;
    let rb = nb * BB;
    let zero = u32x4_splat(0);
    let mut prepared: [[GroupBlock; G]; MATMUL_CHUNK] =
        [[([[zero; 4]; MATMUL_GROUP], zero, zero); G]; MATMUL_CHUNK];
    let mut sums = [[(zero, zero); G]; MATMUL_CHUNK];
    let token: [[&[BlockQ8]; MATMUL_GROUP]; G] = core::array::from_fn(|g| {
        core::array::from_fn(|i| {
            let k = g * MATMUL_GROUP + i;
            let t = if k < count { t0 + k } else { t0 };
            &acts[t * nb..(t + 1) * nb]
        })
    });
    for first in (0..nb).step_by(MATMUL_CHUNK) {
        let len = (nb - first).min(MATMUL_CHUNK);
        for (j, p) in prepared[..len].iter_mut().enumerate() {
            let b = first + j;
            for (pg, tg) in p.iter_mut().zip(&token) {
                let x = tg.map(|a| act_codes(&a[b]));
                let [d0, d1, d2, d3] = tg.map(|a| a[b].d);
                let dx = f32x4(d0, d1, d2, d3);
                let dx = if PRESCALED {
                    f32x4_mul(dx, f32x4_splat(f32::from_bits((127 + 112) << 23)))
                } else {
                    dx
                };
                *pg = (x.map(|x| recast(&x)), bias(&x), dx);
            }
        }
        let chunk = &prepared[..len];
        // The rows of an interleaved matrix's whole groups: row i of a group reads its code
        // bytes and its scale at fixed offsets in each quad of the group.
        let mut done = 0;
        if INTERLEAVED {
            let group = MATVEC_GROUP * rb;
            for (g, quads) in bytes.chunks_exact(group).enumerate() {
                let quad = MATVEC_GROUP * BB;
                let quads = &quads[first * quad..(first + len) * quad];
                for i in 0..MATVEC_GROUP {
                    let r = g * MATVEC_GROUP + i;
                    let mut acc = pass_acc::<G>(out, first, t0, out_stride, r);
                    let (codes_at, scale_at) = (interleave::QUAD_CODES_AT + M * i, 2 * i);
                    row_steps::<_, _, _, _, G, PRESCALED>(
                        || strided::<M>(&quads[codes_at..], quad),
                        code_bytes,
                        || strided::<2>(&quads[scale_at..], quad),
                        |s| u32::from(u16::from_le_bytes(*s)),
                        &mut sums,
                        chunk,
                        &mut acc,
                    );
                    store_pass(out, acc, t0, count, out_stride, r);
                }
                done += MATVEC_GROUP;
            }
        }
        for (r, row) in bytes.chunks_exact(rb).enumerate().skip(done) {
            let mut acc = pass_acc::<G>(out, first, t0, out_stride, r);
            let row = &row[first * BB..(first + len) * BB];
            row_steps::<_, _, _, _, G, PRESCALED>(
                || arrays::<u8, BB>(row).0,
                |blk| codes(blk).w,
                || arrays::<u8, BB>(row).0,
                scale_bits,
                &mut sums,
                chunk,
                &mut acc,
            );
            store_pass(out, acc, t0, count, out_stride, r);
        }
    }
}

/// The accumulators of row `r` for a pass's groups (tokens from `t0`): zero for the first
/// column chunk, else what the previous chunk left in `out`.
#[inline(always)]
fn pass_acc<const G: usize>(
    out: &[f32],
    first: usize,
    t0: usize,
    out_stride: usize,
    r: usize,
) -> [v128; G] {
    core::array::from_fn(|g| {
        if first == 0 {
            f32x4_splat(0.0)
        } else {
            let [a0, a1, a2, a3] = core::array::from_fn(|i| {
                let at = (t0 + g * MATMUL_GROUP + i) * out_stride + r;
                out.get(at).copied().unwrap_or(0.0)
            });
            f32x4(a0, a1, a2, a3)
        }
    })
}

/// Writes row `r`'s accumulators of a pass's groups to `out`, for its `count` tokens from `t0`
/// only (a last group's padded lanes are not written).
#[inline(always)]
fn store_pass<const G: usize>(
    out: &mut [f32],
    acc: [v128; G],
    t0: usize,
    count: usize,
    out_stride: usize,
    r: usize,
) {
    for (g, acc) in acc.into_iter().enumerate() {
        let written = count.saturating_sub(g * MATMUL_GROUP).min(MATMUL_GROUP);
        for (i, v) in lanes(acc).into_iter().enumerate().take(written) {
            let at = (t0 + g * MATMUL_GROUP + i) * out_stride + r;
            if let Some(o) = out.get_mut(at) {
                *o = v;
            }
        }
    }
}

/// One row of [`matmul_pass`] against a chunk of its groups' prepared blocks (`chunk`): the
/// integer block sums of every group first (`codes_of` widens each of the row's blocks once
/// for all groups), then the float steps continuing `acc` (`scale_of` gives each block's f16
/// scale bits, widened once for all groups). `blocks` makes the iterator of the row's blocks.
#[inline(always)]
fn row_steps<
    B,
    I: Iterator<Item = B>,
    S,
    J: Iterator<Item = S>,
    const G: usize,
    const PRESCALED: bool,
>(
    blocks: impl Fn() -> I,
    codes_of: impl Fn(B) -> [v128; 4],
    scales: impl Fn() -> J,
    scale_of: impl Fn(S) -> u32,
    sums: &mut [[(v128, v128); G]; MATMUL_CHUNK],
    chunk: &[[GroupBlock; G]],
    acc: &mut [v128; G],
) {
    let k = Widen::plain();
    for (s, (blk, groups)) in sums.iter_mut().zip(blocks().zip(chunk)) {
        let w = codes_of(blk);
        for (sg, (x, _, _)) in s.iter_mut().zip(groups) {
            sg.0 = sum2(block_partials(&w, &x[0]), block_partials(&w, &x[1]));
            sg.1 = sum2(block_partials(&w, &x[2]), block_partials(&w, &x[3]));
        }
    }
    for ((blk, s), groups) in scales().zip(sums.iter()).zip(chunk) {
        let h = u32x4_splat(scale_of(blk));
        let dw = if PRESCALED {
            f16x4_placed(h, &k)
        } else {
            f16x4_to_f32x4(h, &k)
        };
        for ((a, &(s01, s23)), (_, bias, dx)) in acc.iter_mut().zip(s).zip(groups) {
            let sumi = &i32x4_sub(join2(s01, s23), *bias);
            *a = f32x4_add(
                *a,
                f32x4_mul(f32x4_convert_i32x4(*sumi), f32x4_mul(dw, *dx)),
            );
        }
    }
}

/// No bias for any token.
#[inline(always)]
fn no_bias4(_: &[[v128; 4]; MATMUL_GROUP]) -> v128 {
    u32x4_splat(0)
}

/// [`lane_bias`] of each token, lane i for token i.
#[inline(always)]
fn lane_bias4(x: &[[v128; 4]; MATMUL_GROUP]) -> v128 {
    let e = lane_eights();
    sum4(
        block_partials(&e, &x[0]),
        block_partials(&e, &x[1]),
        block_partials(&e, &x[2]),
        block_partials(&e, &x[3]),
    )
}

/// [`matmul_groups`] of q8_0 rows (34-byte blocks), whose whole groups of four may be held
/// interleaved ([`BatchedProduct::interleaved`]).
pub(crate) fn matmul_q8_0(p: BatchedProduct) -> usize {
    let (c, m, r, b) = (q8_0_codes, q8_0_code_bytes, plain_act_codes, no_bias4);
    if p.interleaved {
        matmul_groups::<_, _, true>(p, c, m, r, b)
    } else {
        matmul_groups::<_, _, false>(p, c, m, r, b)
    }
}

/// [`matmul_groups`] of q4_0 rows (18-byte blocks), as [`matmul_q8_0`].
pub(crate) fn matmul_q4_0(p: BatchedProduct) -> usize {
    let (c, m, r, b) = (q4_0_lanes, held_lane_code_bytes, lane_act_codes, lane_bias4);
    if p.interleaved {
        matmul_groups::<_, _, true>(p, c, m, r, b)
    } else {
        matmul_groups::<_, _, false>(p, c, m, r, b)
    }
}

/// Sixteen f16 (32 bytes, little-endian) widened exactly to f32 (the value of `f16_to_f32`),
/// as four f32x4 (values 0..4, .., 12..16): the halves (two `v128.load`s) are widened by
/// [`f16x8_finite_to_f32x4x2`] when no value has exponent 31 (one `i16x8.eq` on the exponent
/// bits per half and `v128.any_true`), else sign-extended to i32 lanes and widened by
/// [`f16x4_to_f32x4`].
#[inline(always)]
fn f16x16_to_f32(w: &[u8; 32]) -> [v128; 4] {
    let h = f16x16_halves(w);
    let e = i16x8_splat(0x7c00);
    let special = |h| i16x8_eq(v128_and(h, e), e);
    if v128_any_true(v128_or(special(h[0]), special(h[1]))) {
        [
            i32x4_extend_low_i16x8(h[0]),
            i32x4_extend_high_i16x8(h[0]),
            i32x4_extend_low_i16x8(h[1]),
            i32x4_extend_high_i16x8(h[1]),
        ]
        .map(|h| f16x4_to_f32x4(h, &Widen::plain()))
    } else {
        f16x16_finite_to_f32(h)
    }
}

/// [`f16x16_to_f32`] of sixteen f16 (two i16x8) none of which is an infinity or a NaN.
#[inline(always)]
fn f16x16_finite_to_f32(h: [v128; 2]) -> [v128; 4] {
    let [a, b] = h.map(f16x8_finite_to_f32x4x2);
    [a[0], a[1], b[0], b[1]]
}

/// The two halves of a chunk of sixteen f16 (two `v128.load`s).
#[inline(always)]
fn f16x16_halves(w: &[u8; 32]) -> [v128; 2] {
    [
        v128_of(&bytes::<32, 0, 16>(w)),
        v128_of(&bytes::<32, 16, 16>(w)),
    ]
}

/// f16 values (little-endian) widened to f32, sixteen at a time: `out[i]` is `f16_to_f32` of
/// value i for the whole groups of sixteen both hold, by [`f16x16_to_f32`] or, when `finite`
/// says no value has exponent 31 (an infinity or a NaN), by [`f16x16_finite_to_f32`] without
/// testing each chunk. Returns the values written; the caller widens the rest.
pub(crate) fn widen_f16(bytes: &[u8], out: &mut [f32], finite: bool) -> usize {
    if finite {
        widen_f16_chunks::<false>(bytes, out)
    } else {
        widen_f16_chunks::<true>(bytes, out)
    }
}

/// [`widen_f16`] with each chunk tested for exponent 31 (`CHECKED`) or not.
#[inline(always)]
fn widen_f16_chunks<const CHECKED: bool>(bytes: &[u8], out: &mut [f32]) -> usize {
    let mut done = 0;
    for (o, h) in out.chunks_exact_mut(16).zip(arrays::<u8, 32>(bytes).0) {
        let ws = if CHECKED {
            f16x16_to_f32(h)
        } else {
            f16x16_finite_to_f32(f16x16_halves(h))
        };
        for (o, v) in o.chunks_exact_mut(4).zip(ws) {
            o.copy_from_slice(&lanes(v));
        }
        done += 16;
    }
    done
}

/// The largest magnitude (bits without the sign) of the f16 values in the whole 16-byte chunks
/// of `bytes` (`u16x8.max`, one reduction at the end), and the bytes those chunks hold.
pub(crate) fn f16_max_magnitude(bytes: &[u8]) -> (usize, u16) {
    let magnitude = u16x8_splat(0x7fff);
    let mut m = u16x8_splat(0);
    let mut done = 0;
    for c in arrays::<u8, 16>(bytes).0 {
        m = u16x8_max(m, v128_and(v128_of(c), magnitude));
        done += 16;
    }
    let lanes = [
        u16x8_extract_lane::<0>(m),
        u16x8_extract_lane::<1>(m),
        u16x8_extract_lane::<2>(m),
        u16x8_extract_lane::<3>(m),
        u16x8_extract_lane::<4>(m),
        u16x8_extract_lane::<5>(m),
        u16x8_extract_lane::<6>(m),
        u16x8_extract_lane::<7>(m),
    ];
    (done, lanes.into_iter().max().unwrap_or(0))
}

/// Sixteen bytes as a v128 (one `v128.load`).
#[inline(always)]
fn v128_of(b: &[u8; 16]) -> v128 {
    u64x2(
        u64::from_le_bytes(bytes::<16, 0, 8>(b)),
        u64::from_le_bytes(bytes::<16, 8, 8>(b)),
    )
}

/// Four f32 as an f32x4 (one `v128.load`).
#[inline(always)]
fn f32x4_of(x: [f32; 4]) -> v128 {
    f32x4(x[0], x[1], x[2], x[3])
}

/// Elements `4 k..4 k + 4` of a chunk of sixteen (k < 4).
#[inline(always)]
fn quarter(x: &[f32; LANES], k: usize) -> [f32; 4] {
    core::array::from_fn(|j| x[(4 * k + j) % LANES])
}

/// The sixteen lanes of the f32 order of an f16 row's whole chunks of sixteen with `x`, in four
/// f32x4: each chunk widened by [`f16x16_to_f32`] (`CHECKED`) or, for a row known to hold no
/// infinity and no NaN, by [`f16x16_finite_to_f32`] without testing it.
#[inline(always)]
fn f16_row_lanes<const CHECKED: bool>(row: &[u8], x: &[f32]) -> [v128; 4] {
    let mut acc = [f32x4_splat(0.0); 4];
    for (xc, w) in arrays::<f32, LANES>(x).0.zip(arrays::<u8, 32>(row).0) {
        let ws = if CHECKED {
            f16x16_to_f32(w)
        } else {
            f16x16_finite_to_f32(f16x16_halves(w))
        };
        for (k, (a, w)) in acc.iter_mut().zip(ws).enumerate() {
            let xv = f32x4_of(quarter(xc, k));
            *a = f32x4_add(*a, f32x4_mul(w, xv));
        }
    }
    acc
}

/// The placed bits of [`f16x8_finite_to_f32x4x2`] before its product by 2^112: each f32 is the
/// f16's value times 2^-112, exactly.
#[inline(always)]
fn f16x8_finite_placed(h: v128) -> [v128; 2] {
    let high = v128_and(i16x8_shr(h, 3), i16x8_splat(0x8fff_u16 as i16));
    let low = i16x8_shl(h, 13);
    [
        i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(low, high),
        i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(low, high),
    ]
}

/// The bound below which every |x| must lie for [`scale_input`]: 2^16, so that x · 2^112 stays
/// below 2^128, the first power of two past the largest f32.
const SCALED_INPUT_BOUND: f32 = 65536.0;

/// `out[i] = x[i] · 2^112` (exact: a product by a power of two that neither overflows nor loses
/// a bit), when every |x| is below [`SCALED_INPUT_BOUND`] (no NaN, no infinity); returns whether
/// it is (`out` is then `x.len()` long; otherwise it holds nothing of use).
pub(crate) fn scale_input(x: &[f32], out: &mut [f32]) -> bool {
    let pow112 = f32::from_bits((127 + 112) << 23);
    if x.len() != out.len() || !x.iter().all(|v| v.abs() < SCALED_INPUT_BOUND) {
        return false;
    }
    for (o, v) in out.iter_mut().zip(x) {
        *o = v * pow112;
    }
    true
}

/// [`f16_row_lanes`] for a row known to hold no infinity and no NaN, against `scaled` = `x` ·
/// 2^112 ([`scale_input`]): each weight is widened to its value times 2^-112
/// ([`f16x8_finite_placed`], exact) and multiplied with `x · 2^112`. The exact product is the
/// weight times x, so the rounded product has the same bits as the one of [`f16_row_lanes`] (an
/// IEEE product is the exact one rounded; a zero's sign is the product of the signs in both),
/// and the sums that follow are the same: one `f32x4.mul` by 2^112 fewer per four weights.
#[inline(always)]
fn f16_row_lanes_scaled(row: &[u8], scaled: &[f32]) -> [v128; 4] {
    let mut acc = [f32x4_splat(0.0); 4];
    for (xc, w) in arrays::<f32, LANES>(scaled).0.zip(arrays::<u8, 32>(row).0) {
        let [a, b] = f16x16_halves(w).map(f16x8_finite_placed);
        for (k, (acc, w)) in acc.iter_mut().zip([a[0], a[1], b[0], b[1]]).enumerate() {
            *acc = f32x4_add(*acc, f32x4_mul(w, f32x4_of(quarter(xc, k))));
        }
    }
    acc
}

/// The f16 whole-matrix product of the rows in `matrix` (little-endian f16, `x.len()` per row)
/// with `x`, one row after another (two rows per pass sharing the input chunks measured 1.7
/// times slower under wasmtime, four rows 2.6 times): `out[r]` is bit for bit
/// `kernels::dot_f16_row(row r, x)`. Each row keeps the sixteen lanes of the f32 order
/// (spec/determinism.md) in four f32x4 (lane k of the order is lane k % 4 of vector k / 4); each
/// chunk of sixteen weights is widened exactly (the value of `f16_to_f32`: [`f16x16_to_f32`],
/// or without its test for exponent 31 when `finite` says the matrix has none,
/// [`f16x16_finite_to_f32`]), multiplied with the inputs (`f32x4.mul`, rounded) and added
/// (`f32x4.add`), never fused; when `finite` and `scaled` holds `x · 2^112` ([`scale_input`]),
/// [`f16_row_lanes_scaled`] gives the same bits with one product fewer per four weights. The
/// tail past the last whole chunk and the halving of the lanes are the portable code's
/// (`kernels::finish_f16_row`). Returns the number of rows computed (every row; none when `x` is
/// empty).
pub(crate) fn matvec_f16(
    out: &mut [f32],
    matrix: &[u8],
    x: &[f32],
    finite: bool,
    scaled: Option<&[f32]>,
) -> usize {
    let rb = 2 * x.len();
    if rb == 0 {
        return 0;
    }
    let scaled = scaled.filter(|s| finite && s.len() == x.len());
    let mut done = 0;
    for (o, row) in out.iter_mut().zip(matrix.chunks_exact(rb)) {
        let acc = if let Some(s) = scaled {
            f16_row_lanes_scaled(row, s)
        } else if finite {
            f16_row_lanes::<false>(row, x)
        } else {
            f16_row_lanes::<true>(row, x)
        };
        let l = acc.map(lanes);
        let lanes: [f32; LANES] = core::array::from_fn(|k| l[k / 4][k % 4]);
        *o = finish_f16_row(lanes, row, x);
        done += 1;
    }
    done
}

/// Rows of [`dot_f32_rows_tokens`]: batched prefill widens this many f32 (or f16) rows at a
/// time.
pub(crate) const F32_TILE_ROWS: usize = 2;

/// Tokens of [`dot_f32_rows_tokens`].
pub(crate) const F32_TILE_TOKENS: usize = 4;

/// One f32x4 per (row, token) of a tile: `[row][token]`.
type TileVectors = [[v128; F32_TILE_TOKENS]; F32_TILE_ROWS];

/// Quarter `G` of the sixteen lanes of the f32 order (lanes `4 G..4 G + 4`, lane `4 G + j` in
/// lane j) of every row with every token, over the whole chunks of sixteen: one f32x4
/// accumulator per (row, token), each chunk's elements `16 c + 4 G..16 c + 4 G + 4` multiplied
/// (`f32x4.mul`, rounded) and added (`f32x4.add`) in ascending chunk order, as the order adds
/// them to those lanes. One quarter at a time, the eight accumulators, two weight vectors and a
/// token's vector fit the sixteen vector registers of x86-64 (all sixteen lanes of two rows and
/// two tokens did not: wasmtime kept half the accumulators on the stack). Not inlined, so that
/// no quarter's results stay live through the next one's loop (inlined, wasmtime spilled the
/// accumulators instead).
#[inline(never)]
fn f32_quarter_lanes<const G: usize>(
    w: [&[f32]; F32_TILE_ROWS],
    x: [&[f32]; F32_TILE_TOKENS],
) -> TileVectors {
    let mut acc = [[f32x4_splat(0.0); F32_TILE_TOKENS]; F32_TILE_ROWS];
    let whole = w.iter().chain(&x).fold(usize::MAX, |n, s| n.min(s.len())) / LANES * LANES;
    let (w, x) = (w.map(|r| &r[..whole]), x.map(|t| &t[..whole]));
    for at in (4 * G..whole).step_by(LANES) {
        let quarter = |s: &[f32]| f32x4_of(core::array::from_fn(|j| s[at + j]));
        let wv = w.map(quarter);
        for (t, x) in x.iter().enumerate() {
            let xv = quarter(x);
            for (acc, &wv) in acc.iter_mut().zip(&wv) {
                acc[t] = f32x4_add(acc[t], f32x4_mul(wv, xv));
            }
        }
    }
    acc
}

/// The halving of the f32 order's last four lanes for four vectors at once: `[h(p0), h(p1),
/// h(p2), h(p3)]` with `h(p) = (p_0 + p_2) + (p_1 + p_3)` (lane k plus lane k + 2, then lane 0
/// plus lane 1), the transpose-add of [`sum4`] in f32.
#[inline(always)]
fn halve4_f32(p0: v128, p1: v128, p2: v128, p3: v128) -> v128 {
    let add = |a, b| f32x4_add(a, b);
    join_halves(add, pair_halves(add, p0, p1), pair_halves(add, p2, p3))
}

/// The f32 dot products of [`F32_TILE_ROWS`] rows with [`F32_TILE_TOKENS`] tokens (batched
/// prefill on f32 and widened f16 rows): `out[r][t]` is bit for bit `kernels::dot_f32(w[r],
/// x[t])` over the first `n` elements, `n` the shortest length (callers pass equal lengths).
/// The sixteen lanes of each (row, token) are computed a quarter at a time
/// ([`f32_quarter_lanes`]), each lane's additions the order's, in its order. The halving of the
/// lanes follows: 16 → 8 → 4 as whole quarters (`q0 + q2`, `q1 + q3`, then their sum), the last
/// four lanes of the four tokens together ([`halve4_f32`]). With a tail past the last whole
/// chunk, the lanes go through the portable code's tail and halving instead.
pub(crate) fn dot_f32_rows_tokens(
    w: [&[f32]; F32_TILE_ROWS],
    x: [&[f32]; F32_TILE_TOKENS],
) -> [[f32; F32_TILE_TOKENS]; F32_TILE_ROWS] {
    let n = w.iter().chain(&x).fold(usize::MAX, |n, s| n.min(s.len()));
    let (w, x) = (w.map(|r| &r[..n]), x.map(|t| &t[..n]));
    // Bound one by one: in an array literal each result was copied into place by a
    // `memory.copy`, a call out of the module under wasmtime.
    let q0 = f32_quarter_lanes::<0>(w, x);
    let q1 = f32_quarter_lanes::<1>(w, x);
    let q2 = f32_quarter_lanes::<2>(w, x);
    let q3 = f32_quarter_lanes::<3>(w, x);
    let q = [&q0, &q1, &q2, &q3];
    let whole = n / LANES * LANES;
    core::array::from_fn(|r| {
        if whole == n {
            let four: [v128; F32_TILE_TOKENS] = core::array::from_fn(|t| {
                let low = f32x4_add(q[0][r][t], q[2][r][t]);
                let high = f32x4_add(q[1][r][t], q[3][r][t]);
                f32x4_add(low, high)
            });
            lanes(halve4_f32(four[0], four[1], four[2], four[3]))
        } else {
            core::array::from_fn(|t| {
                let mut l: [f32; LANES] = core::array::from_fn(|k| lanes(q[k / 4][r][t])[k % 4]);
                for ((s, &p), &q) in l.iter_mut().zip(&w[r][whole..]).zip(&x[t][whole..]) {
                    *s += p * q;
                }
                reduce_lanes(l)
            })
        }
    })
}
