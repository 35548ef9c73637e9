//! Dot products and matrix-vector products for every weight dtype, in the reduction order of
//! spec/determinism.md (Kernels).
//!
//! One source per kernel, written so the optimizer vectorizes it without changing a single
//! rounding: f32 lanes are fixed-size arrays in the specified lane order, quantized block sums are
//! exact i32 arithmetic (any vector width gives the same value). The f32/f16 kernels and the
//! single-row quantized kernels run through `cpu::run`, which picks the compiled instance
//! (baseline or AVX2 on x86-64); the instances differ only in the vector instructions used.
//! The four-chain quantized kernels [`dot4_q8_0`] / [`dot4_q4_0`] (which `matvec` uses) dispatch
//! to hand-written kernels of the same order where there are some (`model/avx2.rs`,
//! `model/simd128.rs`), else to
//! this source.

use alloc::vec::Vec;

use crate::error::{Error, ErrorCode, Result};
use crate::format::dtype::{DType, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK};
use crate::model::cpu;
use crate::model::interleave;
use crate::model::quant::{dequantize, f16_to_f32, f16_to_f32_lanes, quantize_act_q8_0, BlockQ8};
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use crate::model::simd128;

/// Accumulator lanes of the f32/f16 dot products: element i is added to lane `i % LANES`, then
/// the lanes are combined by halving. This one constant fixes the order (a power of two).
pub const LANES: usize = 16;

const _: () = assert!(LANES.is_power_of_two());

/// Rows the matrix kernels compute per pass: each activation chunk (or block) is loaded once
/// for the group, and the rows' independent accumulator chains overlap. Each row keeps its own
/// accumulators in its own order, so the grouping changes no rounding.
pub const ROW_GROUP: usize = 4;

/// Activation blocks per column chunk of the hand-written whole-matrix kernels (AVX2 q4_0,
/// simd128 q8_0/q4_0): what they prepare per activation block is kept on the stack for one
/// chunk, and each chunk continues the rows' accumulators (spec/determinism.md, SIMD paths).
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )),
    allow(dead_code) // no whole-matrix kernel on this target
)]
pub(crate) const MATVEC_CHUNK: usize = 64;

/// The whole `N`-element arrays of `s` in order, and what is left after them (the shape of
/// `slice::as_chunks`, which needs Rust 1.88).
#[inline(always)]
pub(crate) fn arrays<T, const N: usize>(s: &[T]) -> (impl Iterator<Item = &[T; N]>, &[T]) {
    let chunks = s.chunks_exact(N);
    let rest = chunks.remainder();
    (chunks.filter_map(|c| c.first_chunk::<N>()), rest)
}

/// Combines the lanes by halving: for w = LANES/2, ..., 2, 1: lane k += lane k+w for k < w.
#[inline(always)]
pub(crate) fn reduce_lanes(mut acc: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for k in 0..w {
            acc[k] += acc[k + w];
        }
        w /= 2;
    }
    acc[0]
}

/// One step of the lane order: lane k += w[k] * x[k] (product rounded first). Fixed-size
/// arrays and a whole-array update (rather than an in-place loop, which LLVM leaves scalar) so
/// the optimizer maps the lanes onto SIMD registers.
#[inline(always)]
fn accumulate(acc: &mut [f32; LANES], w: &[f32; LANES], x: &[f32; LANES]) {
    *acc = core::array::from_fn(|k| acc[k] + w[k] * x[k]);
}

/// The lane-ordered dot products of `R` rows of `CB / LANES`-byte elements with `x`: whole
/// chunks of LANES elements are decoded by `decode`, the remainder element by element by
/// `load`. Each row uses `min(row.len() / (CB / LANES), x.len())` elements.
#[inline(always)]
fn lane_dots<const CB: usize, const R: usize>(
    rows: [&[u8]; R],
    x: &[f32],
    decode: impl Fn(&[u8; CB]) -> [f32; LANES],
    load: impl Fn(&[u8]) -> f32,
) -> [f32; R] {
    let eb = CB / LANES;
    let n = rows.iter().fold(x.len(), |n, r| n.min(r.len() / eb));
    let (xs, xtail) = arrays::<f32, LANES>(&x[..n]);
    let rows = rows.map(|r| &r[..n * eb]);
    let mut chunks = rows.map(|r| r.chunks_exact(CB));
    let mut acc = [[0.0f32; LANES]; R];
    // Every row has as many chunks as x: the loop ends (never skips a row) when one runs out,
    // and the tails run on copies of the lanes, so the accumulators stay in registers.
    'chunks: for v in xs {
        let mut ws = [&[0u8; CB]; R];
        for (w, rc) in ws.iter_mut().zip(chunks.iter_mut()) {
            match rc.next().and_then(|c| c.first_chunk::<CB>()) {
                Some(c) => *w = c,
                None => break 'chunks,
            }
        }
        for (a, w) in acc.iter_mut().zip(ws) {
            accumulate(a, &decode(w), v);
        }
    }
    let mut out = [0.0f32; R];
    for ((o, mut a), rc) in out.iter_mut().zip(acc).zip(&chunks) {
        for ((s, e), &b) in a.iter_mut().zip(rc.remainder().chunks_exact(eb)).zip(xtail) {
            *s += load(e) * b;
        }
        *o = reduce_lanes(a);
    }
    out
}

/// Decodes LANES little-endian f32 values.
#[inline(always)]
fn decode_f32(c: &[u8; 4 * LANES]) -> [f32; LANES] {
    core::array::from_fn(|k| {
        f32::from_le_bytes([c[4 * k], c[4 * k + 1], c[4 * k + 2], c[4 * k + 3]])
    })
}

#[inline(always)]
fn load_f32(e: &[u8]) -> f32 {
    f32::from_le_bytes([e[0], e[1], e[2], e[3]])
}

/// Widens LANES little-endian f16 values exactly.
#[inline(always)]
fn decode_f16(c: &[u8; 2 * LANES]) -> [f32; LANES] {
    core::array::from_fn(|k| f16_to_f32_lanes(u16::from_le_bytes([c[2 * k], c[2 * k + 1]])))
}

#[inline(always)]
fn load_f16(e: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([e[0], e[1]]))
}

/// [`dot_f32`] without dispatch (for callers already inside [`cpu::run`]).
#[inline(always)]
pub(crate) fn dot_f32_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (ac, at) = arrays::<f32, LANES>(&a[..n]);
    let (bc, bt) = arrays::<f32, LANES>(&b[..n]);
    let mut acc = [0.0f32; LANES];
    for (x, y) in ac.zip(bc) {
        accumulate(&mut acc, x, y);
    }
    // The tail on a copy of the lanes (indexed by a loop variable): the loop's stay in registers.
    let mut lanes = acc;
    for ((s, &p), &q) in lanes.iter_mut().zip(at).zip(bt) {
        *s += p * q;
    }
    reduce_lanes(lanes)
}

/// The lane-ordered dot products of `w` with each of `T` vectors, each bit for bit
/// [`dot_f32`]`(w, xs[t])`: one pass over `w` shared by the `T` chains (batched prefill's f32
/// and widened f16 rows against several tokens). Each uses the first `min` of all the lengths
/// elements; callers pass equal lengths.
#[inline(always)]
pub(crate) fn dot_f32_many<const T: usize>(w: &[f32], xs: [&[f32]; T]) -> [f32; T] {
    let n = xs.iter().fold(w.len(), |n, x| n.min(x.len()));
    let whole = n / LANES * LANES;
    let (wc, wt) = arrays::<f32, LANES>(&w[..n]);
    let mut xcs = xs.map(|x| x[..n].chunks_exact(LANES));
    let mut acc = [[0.0f32; LANES]; T];
    // Every vector has as many chunks as w: the loop ends (never skips a chain) when one runs
    // out, so the accumulators stay in registers.
    'chunks: for wv in wc {
        let mut xv = [&[0.0f32; LANES]; T];
        for (v, xc) in xv.iter_mut().zip(xcs.iter_mut()) {
            match xc.next().and_then(|c| c.first_chunk::<LANES>()) {
                Some(c) => *v = c,
                None => break 'chunks,
            }
        }
        for (a, v) in acc.iter_mut().zip(xv) {
            accumulate(a, wv, v);
        }
    }
    // The tails on copies of the lanes (indexed by a loop variable), which leaves the loop's
    // accumulators to registers.
    let mut out = [0.0f32; T];
    for ((o, mut a), x) in out.iter_mut().zip(acc).zip(&xs) {
        for ((s, &p), &q) in a.iter_mut().zip(wt).zip(&x[whole..n]) {
            *s += p * q;
        }
        *o = reduce_lanes(a);
    }
    out
}

/// Finishes the lane-ordered dot product of an f16 row (little-endian) with `x` for the
/// hand-written whole-matrix kernels, from the sixteen lanes after its whole chunks of 16
/// elements: the tail (element 16q + j to lane j) and the halving of the lanes, as in
/// [`dot_f16_row`].
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))] // used by the hand-written kernels (model/avx2.rs, model/simd128.rs)
#[inline(always)]
pub(crate) fn finish_f16_row(mut lanes: [f32; LANES], row: &[u8], x: &[f32]) -> f32 {
    let whole = x.len() / LANES * LANES;
    let tail = row.get(2 * whole..).unwrap_or(&[]);
    for ((s, e), &b) in lanes.iter_mut().zip(tail.chunks_exact(2)).zip(&x[whole..]) {
        *s += f16_to_f32(u16::from_le_bytes([e[0], e[1]])) * b;
    }
    reduce_lanes(lanes)
}

/// Widens f16 values (little-endian, two bytes each) into `out` exactly (`f16_to_f32`), over
/// the shorter of the two: the hand-written kernel of the level where there is one (F16C,
/// simd128), the rest element by element. `finite` (as [`MatRef::f16_finite`]: no value has
/// exponent 31) lets the simd128 kernel skip its per-chunk test; it never changes a result.
pub(crate) fn widen_f16(bytes: &[u8], out: &mut [f32], finite: bool) {
    // Only the simd128 kernel has a test to skip.
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let _ = finite;
    #[cfg(target_arch = "x86_64")]
    let done = cpu::avx2_widen_f16(bytes, out);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = simd128::widen_f16(bytes, out, finite);
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )))]
    let done = 0;
    let rest = bytes.get(2 * done..).unwrap_or(&[]).chunks_exact(2);
    for (o, c) in out.iter_mut().skip(done).zip(rest) {
        *o = f16_to_f32_lanes(u16::from_le_bytes([c[0], c[1]]));
    }
}

/// Dot product of two f32 vectors in the lane order (spec/determinism.md). Only the first
/// `min(a.len(), b.len())` elements are used; callers pass equal lengths.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    cpu::run(
        #[inline(always)]
        || dot_f32_body(a, b),
    )
}

/// Dot product of an f32 row stored as little-endian bytes with `x`, in the order of
/// [`dot_f32`]. Uses `min(row.len() / 4, x.len())` elements.
pub fn dot_f32_row(row: &[u8], x: &[f32]) -> f32 {
    let [r] = cpu::run(
        #[inline(always)]
        || lane_dots([row], x, decode_f32, load_f32),
    );
    r
}

/// Dot product of an f16 row (little-endian bytes) with `x`: each weight is widened exactly to
/// f32, then the order of [`dot_f32`] applies. Uses `min(row.len() / 2, x.len())` elements.
pub fn dot_f16_row(row: &[u8], x: &[f32]) -> f32 {
    let [r] = cpu::run(
        #[inline(always)]
        || lane_dots([row], x, decode_f16, load_f16),
    );
    r
}

/// The exact integer dot product of 32 weight codes with 32 activation codes: i8 × i8 products
/// in i16 (never overflowing), adjacent pairs summed in i32 (the shape of `pmaddwd` and
/// `i32x4.dot_i16x8_s`), then the 16 pair sums. Integer arithmetic: any order gives this value.
#[inline(always)]
fn block_sum(w: &[i8; QK], x: &[i8; QK]) -> i32 {
    let pairs: [i32; QK / 2] = core::array::from_fn(|k| {
        i32::from(i16::from(w[2 * k]) * i16::from(x[2 * k]))
            + i32::from(i16::from(w[2 * k + 1]) * i16::from(x[2 * k + 1]))
    });
    pairs.iter().sum()
}

/// The 32 signed codes and the scale of a q8_0 block.
#[inline(always)]
fn decode_q8_0(blk: &[u8; Q8_0_BLOCK_BYTES]) -> (f32, [i8; QK]) {
    let [d0, d1, qs @ ..] = blk;
    (
        f16_to_f32(u16::from_le_bytes([*d0, *d1])),
        qs.map(|q| q as i8),
    )
}

/// The 32 signed codes and the scale of a q4_0 block: code j is `(byte j & 15) - 8` for j < 16
/// and `(byte j-16 >> 4) - 8` for j >= 16.
#[inline(always)]
fn decode_q4_0(blk: &[u8; Q4_0_BLOCK_BYTES]) -> (f32, [i8; QK]) {
    let [d0, d1, qs @ ..] = blk;
    let lo = qs.map(|b| (b & 0x0f) as i8 - 8);
    let hi = qs.map(|b| (b >> 4) as i8 - 8);
    let mut codes = [0i8; QK];
    let (cl, ch) = codes.split_at_mut(QK / 2);
    cl.copy_from_slice(&lo);
    ch.copy_from_slice(&hi);
    (f16_to_f32(u16::from_le_bytes([*d0, *d1])), codes)
}

/// One block of a quantized chain: `acc + (f32(sumi) * (dw * dx))`.
#[inline(always)]
fn quant_step(acc: f32, dw: f32, qw: &[i8; QK], x: &BlockQ8) -> f32 {
    acc + block_sum(qw, &x.qs) as f32 * (dw * x.d)
}

/// Continues a chain of `BB`-byte blocks from block `from`: the remaining blocks of
/// `min(row.len() / BB, act.len())`, in order, added to `acc`.
#[inline(always)]
fn quant_chain<const BB: usize>(
    mut acc: f32,
    row: &[u8],
    act: &[BlockQ8],
    from: usize,
    decode: impl Fn(&[u8; BB]) -> (f32, [i8; QK]),
) -> f32 {
    let row = row.get(from.saturating_mul(BB)..).unwrap_or(&[]);
    let act = act.get(from..).unwrap_or(&[]);
    for (blk, x) in arrays::<u8, BB>(row).0.zip(act) {
        let (dw, qw) = decode(blk);
        acc = quant_step(acc, dw, &qw, x);
    }
    acc
}

/// Each of four chains' block count (the smaller of its row's `N`-byte blocks and its
/// activation's blocks), and the count all four have: the hand-written kernels run the common
/// blocks together and continue longer chains with [`q8_0_chain`] / [`q4_0_chain`].
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
#[inline(always)]
pub(crate) fn chain_blocks<const N: usize>(
    rows: [&[u8]; 4],
    acts: [&[BlockQ8]; 4],
) -> ([usize; 4], usize) {
    let counts: [usize; 4] = core::array::from_fn(|i| (rows[i].len() / N).min(acts[i].len()));
    (counts, counts.into_iter().fold(usize::MAX, usize::min))
}

/// Continues a q8_0 chain at block `from` (the tail of a SIMD kernel whose chains differ in
/// length): the order of [`dot_q8_0_row`] for the blocks from `from` on.
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))] // used by the hand-written kernels (model/avx2.rs, model/simd128.rs)
#[inline(always)]
pub(crate) fn q8_0_chain(acc: f32, row: &[u8], act: &[BlockQ8], from: usize) -> f32 {
    quant_chain(acc, row, act, from, decode_q8_0)
}

/// Continues a q4_0 chain at block `from`, as [`q8_0_chain`].
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))] // used by the hand-written kernels (model/avx2.rs, model/simd128.rs)
#[inline(always)]
pub(crate) fn q4_0_chain(acc: f32, row: &[u8], act: &[BlockQ8], from: usize) -> f32 {
    quant_chain(acc, row, act, from, decode_q4_0)
}

/// The quantized dot products of `R` chains: chain i is row `rows[i]` (`BB`-byte blocks) with
/// activation `acts[i]` over `min(rows[i].len() / BB, acts[i].len())` blocks, each block
/// `acc = acc + sumi as f32 * (d_w * d_x)`, blocks in order, acc starting at +0. The blocks all
/// chains have are interleaved (the chains overlap), the rest of each chain follows alone.
#[inline(always)]
fn quant_dots<const BB: usize, const R: usize>(
    rows: [&[u8]; R],
    acts: [&[BlockQ8]; R],
    decode: impl Fn(&[u8; BB]) -> (f32, [i8; QK]),
) -> [f32; R] {
    let common = rows
        .iter()
        .zip(&acts)
        .fold(usize::MAX, |n, (r, a)| n.min(r.len() / BB).min(a.len()));
    let mut acc = [0.0f32; R];
    for b in 0..common {
        for ((s, r), a) in acc.iter_mut().zip(&rows).zip(&acts) {
            if let (Some(blk), Some(x)) = (
                r.get(b * BB..(b + 1) * BB)
                    .and_then(|c| c.first_chunk::<BB>()),
                a.get(b),
            ) {
                let (dw, qw) = decode(blk);
                *s = quant_step(*s, dw, &qw, x);
            }
        }
    }
    for ((s, r), a) in acc.iter_mut().zip(&rows).zip(&acts) {
        *s = quant_chain(*s, r, a, common, &decode);
    }
    acc
}

/// Dot product of a q8_0 row (34-byte blocks) with a q8_0-quantized activation: per block the
/// exact integer sum of code products, then `acc = acc + sumi as f32 * (d_w * d_x)`, blocks in
/// order, acc starting at +0. Uses `min(row blocks, act.len())` blocks.
pub fn dot_q8_0_row(row: &[u8], act: &[BlockQ8]) -> f32 {
    let [r] = cpu::run(
        #[inline(always)]
        || quant_dots([row], [act], decode_q8_0),
    );
    r
}

/// Dot product of a q4_0 row (18-byte blocks) with a q8_0-quantized activation, in the order of
/// [`dot_q8_0_row`]; weight code j of a block is `(byte j & 15) - 8` for j < 16 and
/// `(byte j-16 >> 4) - 8` for j >= 16.
pub fn dot_q4_0_row(row: &[u8], act: &[BlockQ8]) -> f32 {
    let [r] = cpu::run(
        #[inline(always)]
        || quant_dots([row], [act], decode_q4_0),
    );
    r
}

/// Four q8_0 chains at once: chain i is `dot_q8_0_row(rows[i], acts[i])`, bit for bit (each
/// chain keeps its own serial accumulator; the chains overlap). Matrix-vector products pass
/// [`ROW_GROUP`] rows and one activation four times, the batched prefill one row and four
/// tokens' activations.
///
/// The single dispatch point of the q8_0 kernels: the hand-written AVX2 kernel
/// (`model/avx2.rs`) when the level is [`cpu::Isa::Avx2`], else the portable source.
#[inline]
pub fn dot4_q8_0(rows: [&[u8]; ROW_GROUP], acts: [&[BlockQ8]; ROW_GROUP]) -> [f32; ROW_GROUP] {
    #[cfg(target_arch = "x86_64")]
    if let Some(r) = cpu::avx2_dot4_q8_0(rows, acts) {
        return r;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return simd128::dot4_q8_0(rows, acts);
    #[allow(unreachable_code)]
    dot4_q8_0_portable(rows, acts)
}

/// Four q4_0 rows with one activation: chain i is `dot_q4_0_row(rows[i], act)`, bit for bit.
///
/// The single dispatch point of the q4_0 kernels, as [`dot4_q8_0`].
#[inline]
pub fn dot4_q4_0(rows: [&[u8]; ROW_GROUP], act: &[BlockQ8]) -> [f32; ROW_GROUP] {
    #[cfg(target_arch = "x86_64")]
    if let Some(r) = cpu::avx2_dot4_q4_0(rows, act) {
        return r;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return simd128::dot4_q4_0(rows, act);
    #[allow(unreachable_code)]
    dot4_q4_0_portable(rows, act)
}

/// [`dot4_q8_0`] in the portable source (the reference of every SIMD kernel).
fn dot4_q8_0_portable(rows: [&[u8]; ROW_GROUP], acts: [&[BlockQ8]; ROW_GROUP]) -> [f32; ROW_GROUP] {
    if acts.iter().all(|a| core::ptr::eq(*a, acts[0])) {
        quant_dots_shared(rows, acts[0], decode_q8_0)
    } else {
        quant_dots(rows, acts, decode_q8_0)
    }
}

/// [`dot4_q4_0`] in the portable source.
fn dot4_q4_0_portable(rows: [&[u8]; ROW_GROUP], act: &[BlockQ8]) -> [f32; ROW_GROUP] {
    quant_dots_shared(rows, act, decode_q4_0)
}

/// [`quant_dots`] with one activation for all chains (a matrix-vector product): each
/// activation block is loaded once for the chains.
#[inline(always)]
fn quant_dots_shared<const BB: usize, const R: usize>(
    rows: [&[u8]; R],
    act: &[BlockQ8],
    decode: impl Fn(&[u8; BB]) -> (f32, [i8; QK]),
) -> [f32; R] {
    let common = rows.iter().fold(act.len(), |n, r| n.min(r.len() / BB));
    let heads = rows.map(|r| r.get(..common * BB).unwrap_or(&[]));
    let mut acc = [0.0f32; R];
    for (b, x) in act.get(..common).unwrap_or(&[]).iter().enumerate() {
        for (s, r) in acc.iter_mut().zip(&heads) {
            if let Some(blk) = r
                .get(b * BB..(b + 1) * BB)
                .and_then(|c| c.first_chunk::<BB>())
            {
                let (dw, qw) = decode(blk);
                *s = quant_step(*s, dw, &qw, x);
            }
        }
    }
    for (s, r) in acc.iter_mut().zip(&rows) {
        *s = quant_chain(*s, r, act, common, &decode);
    }
    acc
}

/// [`ROW_GROUP`] q8_0 rows at once: `dot_q8_0_rows(rows, act)[i] == dot_q8_0_row(rows[i], act)`.
pub fn dot_q8_0_rows(rows: [&[u8]; ROW_GROUP], act: &[BlockQ8]) -> [f32; ROW_GROUP] {
    dot4_q8_0(rows, [act; ROW_GROUP])
}

/// [`ROW_GROUP`] q4_0 rows at once: `dot_q4_0_rows(rows, act)[i] == dot_q4_0_row(rows[i], act)`.
pub fn dot_q4_0_rows(rows: [&[u8]; ROW_GROUP], act: &[BlockQ8]) -> [f32; ROW_GROUP] {
    dot4_q4_0(rows, act)
}

/// Every row of a matrix (`bytes` split into `row_bytes`-byte rows) through `dots`, in groups of
/// [`ROW_GROUP`] rows and then one at a time: `out[r]` = `dots` of row r.
#[inline(always)]
fn all_rows(
    out: &mut [f32],
    bytes: &[u8],
    row_bytes: usize,
    group: impl Fn([&[u8]; ROW_GROUP]) -> [f32; ROW_GROUP],
    single: impl Fn(&[u8]) -> f32,
) {
    let mut outs = out.chunks_exact_mut(ROW_GROUP);
    let mut groups = bytes.chunks_exact(row_bytes * ROW_GROUP);
    for (o, g) in (&mut outs).zip(&mut groups) {
        let r = group(core::array::from_fn(|i| {
            &g[i * row_bytes..(i + 1) * row_bytes]
        }));
        o.copy_from_slice(&r);
    }
    let tail = groups.remainder().chunks_exact(row_bytes);
    for (o, row) in outs.into_remainder().iter_mut().zip(tail) {
        *o = single(row);
    }
}

/// A `[rows, cols]` weight matrix in its storage bytes (little-endian): row-major, or with its
/// whole groups of four rows interleaved ([`MatRef::interleaved`]).
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub bytes: &'a [u8],
    /// No f16 in the bytes is an infinity or a NaN: an f16 matrix's elements, a q8_0/q4_0
    /// matrix's block scales (spares the wasm simd128 kernels their handling of exponent 31;
    /// `false` is always correct).
    pub f16_finite: bool,
    /// The whole groups of four rows are interleaved ([`crate::model::interleave`]): q8_0 and
    /// q4_0 only, and only in the wasm simd128 module, whose kernels read that order
    /// ([`MatRef::check`] refuses it elsewhere). Not a hint: it must describe `bytes`.
    pub interleaved: bool,
}

impl<'a> MatRef<'a> {
    /// A checked matrix view: `cols` is a whole number of blocks of `dtype` (`ShapeMismatch`
    /// otherwise) and `bytes` is exactly `rows` rows long (`InvalidLength` otherwise).
    pub fn new(dtype: DType, rows: usize, cols: usize, bytes: &'a [u8]) -> Result<MatRef<'a>> {
        let m = MatRef {
            dtype,
            rows,
            cols,
            bytes,
            f16_finite: false,
            interleaved: false,
        };
        m.check()?;
        Ok(m)
    }

    /// Bytes of one row.
    fn row_bytes(&self) -> Result<usize> {
        let be = self.dtype.block_elems();
        if !self.cols.is_multiple_of(be) {
            return Err(Error::new(
                ErrorCode::ShapeMismatch,
                alloc::format!(
                    "{} columns are not a whole number of {be}-element {} blocks",
                    self.cols,
                    self.dtype.name()
                ),
            ));
        }
        (self.cols / be)
            .checked_mul(self.dtype.block_bytes())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidLength,
                    alloc::format!("{} columns overflow the address space", self.cols),
                )
            })
    }

    /// Re-validates the fields (they are public): the constructor's checks, and
    /// [`MatRef::interleaved`] only on a q8_0 or q4_0 matrix in the simd128 module
    /// (`ShapeMismatch`).
    pub fn check(&self) -> Result<()> {
        let interleaves = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));
        let quantized = interleave::block_bytes(self.dtype).is_some();
        if self.interleaved && !(quantized && interleaves) {
            return Err(Error::new(
                ErrorCode::ShapeMismatch,
                alloc::format!(
                    "interleaved rows are q8_0/q4_0 rows of the simd128 module, not {} rows here",
                    self.dtype.name()
                ),
            ));
        }
        let row = self.row_bytes()?;
        if row.checked_mul(self.rows) != Some(self.bytes.len()) {
            return Err(Error::new(
                ErrorCode::InvalidLength,
                alloc::format!(
                    "a [{}, {}] {} matrix is not {} bytes long",
                    self.rows,
                    self.cols,
                    self.dtype.name(),
                    self.bytes.len()
                ),
            ));
        }
        Ok(())
    }

    /// The storage bytes of row `r` (after [`MatRef::check`] passed and for `r < rows`) of a
    /// row-major matrix (not [`MatRef::interleaved`]).
    fn row(&self, r: usize, row_bytes: usize) -> &'a [u8] {
        let start = r * row_bytes;
        &self.bytes[start..start + row_bytes]
    }
}

/// Preallocated room for one quantized activation vector, so [`matvec`] never allocates; in the
/// wasm simd128 module, once [`ActScratch::reserve_scaled_input`] has run, also for the input
/// times 2^112 that its f16 kernel takes (`simd128::scale_input`).
#[derive(Clone, Debug)]
pub struct ActScratch {
    blocks: Vec<BlockQ8>,
    scaled: Vec<f32>,
}

/// Whether [`ActScratch`] holds room for the scaled input (the simd128 module only).
const SCALED_INPUT: bool = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));

impl ActScratch {
    /// Room for activations of up to `max_cols` elements (`OutOfMemory` if it cannot be had).
    pub fn new(max_cols: usize) -> Result<ActScratch> {
        let n = max_cols.div_ceil(QK);
        let mut blocks = Vec::new();
        blocks.try_reserve_exact(n).map_err(|_| {
            Error::new(
                ErrorCode::OutOfMemory,
                alloc::format!("no memory for a {max_cols}-element activation scratch"),
            )
        })?;
        blocks.resize(n, BlockQ8::ZERO);
        Ok(ActScratch {
            blocks,
            scaled: Vec::new(),
        })
    }

    /// Adds room for the input times 2^112 of up to [`ActScratch::max_cols`] elements, which the
    /// simd128 module's f16 kernel takes (elsewhere nothing: no other kernel reads it). Without
    /// it that kernel widens each weight with a product by 2^112 (the same bits, slower).
    pub fn reserve_scaled_input(&mut self) -> Result<()> {
        if !SCALED_INPUT {
            return Ok(());
        }
        let n = self.max_cols();
        self.scaled.try_reserve_exact(n).map_err(|_| {
            Error::new(
                ErrorCode::OutOfMemory,
                alloc::format!("no memory for a {n}-element scaled input"),
            )
        })?;
        self.scaled.resize(n, 0.0);
        Ok(())
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.blocks.len() * core::mem::size_of::<BlockQ8>() + self.scaled.len() * 4
    }

    /// The largest activation length this scratch holds.
    pub fn max_cols(&self) -> usize {
        self.blocks.len() * QK
    }
}

/// `out = w · x` for a `[rows, cols]` matrix of any dtype (spec/determinism.md, Kernels): row r
/// is the dot product of row r with `x` in the order of its dtype. For q8_0/q4_0 weights `x` is
/// quantized once per call with [`quantize_act_q8_0`] into `scratch`.
///
/// Errors: `w` fails [`MatRef::check`]; `x.len() != cols` or `out.len() != rows`
/// (`ShapeMismatch`); `scratch` too small for `cols` (`InvalidLength`).
pub fn matvec(out: &mut [f32], w: &MatRef, x: &[f32], scratch: &mut ActScratch) -> Result<()> {
    matvecs([(out, w)], x, scratch)
}

/// Several products of one input: `out_i = w_i · x`, each exactly as [`matvec`] computes it,
/// except that `x` is quantized once for all the q8_0/q4_0 matrices (they all have `x.len()`
/// columns; quantization is per element block, so it is the same activation [`matvec`] makes).
/// Every product is checked before any is computed.
///
/// Errors: those of [`matvec`], for the first product that has one.
pub fn matvecs<const N: usize>(
    products: [(&mut [f32], &MatRef); N],
    x: &[f32],
    scratch: &mut ActScratch,
) -> Result<()> {
    for (out, w) in &products {
        check_matvec(out, w, x, scratch)?;
    }
    let mut quantized = false;
    // The input times 2^112 for the simd128 f16 kernel, made once for all the products that
    // take it: None until needed, then whether it could be made.
    let mut scaled: Option<bool> = None;
    let ActScratch {
        blocks,
        scaled: scaled_x,
    } = scratch;
    for (out, w) in products {
        let act: &[BlockQ8] = if matches!(w.dtype, DType::Q8_0 | DType::Q4_0) {
            // Checked: the scratch holds the blocks of x.len() = cols columns.
            let act = &mut blocks[..w.cols / QK];
            if !quantized {
                quantize_act_q8_0(x, act)?;
                quantized = true;
            }
            act
        } else {
            &[]
        };
        let with_scaled = SCALED_INPUT && w.dtype == DType::F16 && w.f16_finite;
        if with_scaled && scaled.is_none() {
            scaled = Some(scale_input(x, scaled_x));
        }
        let input = match (with_scaled, scaled) {
            (true, Some(true)) => scaled_x.get(..x.len()),
            _ => None,
        };
        product(out, w, x, act, input)?;
    }
    Ok(())
}

/// `out[..x.len()] = x · 2^112` for the simd128 f16 kernel where every |x| allows it; returns
/// whether it did (elsewhere never).
fn scale_input(x: &[f32], out: &mut [f32]) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return out
        .get_mut(..x.len())
        .is_some_and(|out| simd128::scale_input(x, out));
    #[allow(unreachable_code)]
    {
        let _ = (x, out);
        false
    }
}

/// The errors of [`matvec`] for one product.
fn check_matvec(out: &[f32], w: &MatRef, x: &[f32], scratch: &ActScratch) -> Result<()> {
    w.check()?;
    if x.len() != w.cols || out.len() != w.rows {
        return Err(Error::new(
            ErrorCode::ShapeMismatch,
            alloc::format!(
                "matvec of a [{}, {}] matrix with {} inputs into {} outputs",
                w.rows,
                w.cols,
                x.len(),
                out.len()
            ),
        ));
    }
    if matches!(w.dtype, DType::Q8_0 | DType::Q4_0) && w.cols / QK > scratch.blocks.len() {
        return Err(Error::new(
            ErrorCode::InvalidLength,
            alloc::format!(
                "activation scratch holds {} values, the matrix has {} columns",
                scratch.max_cols(),
                w.cols
            ),
        ));
    }
    Ok(())
}

/// `out = w · x` for a checked product ([`check_matvec`]); `act` is `x` quantized when `w` is
/// q8_0/q4_0; `scaled`, when given, is `x · 2^112` (the simd128 f16 kernel's faster input).
fn product(
    out: &mut [f32],
    w: &MatRef,
    x: &[f32],
    act: &[BlockQ8],
    scaled: Option<&[f32]>,
) -> Result<()> {
    let rb = w.row_bytes()?;
    // Zero columns give zero-length rows; `chunks_exact` needs a non-zero size (the rows are
    // then filled with the empty sum below).
    let step = rb.max(1);
    match w.dtype {
        DType::F32 => cpu::run(
            #[inline(always)]
            || {
                all_rows(
                    out,
                    w.bytes,
                    step,
                    #[inline(always)]
                    |g| lane_dots(g, x, decode_f32, load_f32),
                    #[inline(always)]
                    |r| lane_dots([r], x, decode_f32, load_f32)[0],
                )
            },
        ),
        DType::F16 => {
            // Whole groups of rows in the F16C kernel where there is one, the rest here.
            #[cfg(target_arch = "x86_64")]
            let done = cpu::avx2_matvec_f16(out, w.bytes, x);
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            let done = simd128::matvec_f16(out, w.bytes, x, w.f16_finite, scaled);
            #[cfg(not(any(
                target_arch = "x86_64",
                all(target_arch = "wasm32", target_feature = "simd128")
            )))]
            let done = 0;
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            let _ = scaled;
            let (out, bytes) = (&mut out[done..], &w.bytes[done * rb..]);
            cpu::run(
                #[inline(always)]
                || {
                    all_rows(
                        out,
                        bytes,
                        step,
                        #[inline(always)]
                        |g| lane_dots(g, x, decode_f16, load_f16),
                        #[inline(always)]
                        |r| lane_dots([r], x, decode_f16, load_f16)[0],
                    )
                },
            )
        }
        DType::Q8_0 | DType::Q4_0 => {
            // Whole groups of rows in a whole-matrix kernel where there is one, the rest here.
            let done = matvec_groups(w, out, act);
            let (out, bytes) = (&mut out[done..], &w.bytes[done * rb..]);
            if w.dtype == DType::Q8_0 {
                all_rows(
                    out,
                    bytes,
                    step,
                    |g| dot4_q8_0(g, [act; ROW_GROUP]),
                    |r| dot_q8_0_row(r, act),
                )
            } else {
                all_rows(
                    out,
                    bytes,
                    step,
                    |g| dot4_q4_0(g, act),
                    |r| dot_q4_0_row(r, act),
                )
            }
        }
    }
    if rb == 0 {
        out.fill(0.0);
    }
    Ok(())
}

/// The rows of a quantized matrix (`act.len()` blocks per row) that a hand-written
/// whole-matrix kernel computes: whole groups of rows from the first, each bit for bit its
/// single-row product. Returns the number of rows done (0 where there is no such kernel).
/// An interleaved matrix ([`MatRef::interleaved`], simd128 only) has all its whole groups done
/// here; the rows after them are in the file's order.
#[inline]
fn matvec_groups(w: &MatRef, out: &mut [f32], act: &[BlockQ8]) -> usize {
    let (dtype, bytes) = (w.dtype, w.bytes);
    #[cfg(target_arch = "x86_64")]
    return cpu::avx2_matvec(dtype, out, bytes, act);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return match dtype {
        DType::Q8_0 => simd128::matvec_q8_0(out, bytes, act, w.f16_finite, w.interleaved),
        DType::Q4_0 => simd128::matvec_q4_0(out, bytes, act, w.f16_finite, w.interleaved),
        _ => 0,
    };
    #[allow(unreachable_code)]
    {
        let _ = (dtype, out, bytes, act);
        0
    }
}

/// Dequantizes row `row` of `w` into `out` (an embedding lookup).
///
/// Errors: `w` fails [`MatRef::check`]; `row >= rows` (`InvalidTokenId`); `out.len() != cols`
/// (`ShapeMismatch`).
pub fn row_to_f32(w: &MatRef, row: usize, out: &mut [f32]) -> Result<()> {
    w.check()?;
    if row >= w.rows {
        return Err(Error::new(
            ErrorCode::InvalidTokenId,
            alloc::format!("row {row} of a {}-row matrix", w.rows),
        ));
    }
    if out.len() != w.cols {
        return Err(Error::new(
            ErrorCode::ShapeMismatch,
            alloc::format!("row of {} columns into {} outputs", w.cols, out.len()),
        ));
    }
    let rb = w.row_bytes()?;
    if w.interleaved {
        // check() passed: a q8_0 or q4_0 matrix; `out` has a block's elements per row block.
        let out = out.chunks_exact_mut(w.dtype.block_elems());
        return if w.dtype == DType::Q8_0 {
            let blocks = interleave::row_blocks::<Q8_0_BLOCK_BYTES>(w.bytes, rb, row);
            blocks
                .zip(out)
                .try_for_each(|(b, o)| dequantize(w.dtype, &b, o))
        } else {
            let blocks = interleave::row_blocks::<Q4_0_BLOCK_BYTES>(w.bytes, rb, row);
            blocks
                .zip(out)
                .try_for_each(|(b, o)| dequantize(w.dtype, &b, o))
        };
    }
    dequantize(w.dtype, w.row(row, rb), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::quant::{f32_to_f16, quantize_q4_0, quantize_q8_0};
    use alloc::vec;

    fn le_f32(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn lane_order_is_observable() {
        // 1e8 in lane 0 and lane 8, and 1.0 in lane 1: lanes first (1e8 + 1e8), then 1 is lost
        // only when added to 2e8; a left-to-right sum would lose it against 1e8 as well.
        let mut a = [0.0f32; 17];
        a[0] = 1e8;
        a[1] = 1.0;
        a[16] = -1e8; // same lane as a[0]: cancels exactly first
        let b = [1.0f32; 17];
        assert_eq!(dot_f32(&a, &b), 1.0);
        // Sequential order would give (1e8 + 1) - 1e8 = 0.
        assert_eq!(a.iter().fold(0.0f32, |s, v| s + v), 0.0);
    }

    #[test]
    fn dtype_rows_agree_on_exact_values() {
        let w: Vec<f32> = (0..64).map(|i| (i % 7) as f32 - 3.0).collect();
        let x: Vec<f32> = (0..64).map(|i| (i % 5) as f32 * 0.5).collect();
        let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
        assert_eq!(dot_f32(&w, &x), exact);
        assert_eq!(dot_f32_row(&le_f32(&w), &x), exact);
        let h: Vec<u8> = w
            .iter()
            .flat_map(|&v| f32_to_f16(v).to_le_bytes())
            .collect();
        assert_eq!(dot_f16_row(&h, &x), exact);
    }

    #[test]
    fn quantized_matvec_small_exact() {
        // Values that quantize exactly (power-of-two scales), so the result is the exact sum.
        let mut w8: Vec<f32> = (0..64).map(|i| ((i * 29) % 255) as f32 - 127.0).collect();
        w8[0] = 127.0; // d = 1 in both blocks
        w8[32] = -127.0;
        let w4: Vec<f32> = (0..64)
            .map(|i| ((i * 5) % 16) as f32 * 0.25 - 2.0)
            .collect();
        let mut x: Vec<f32> = (0..64)
            .map(|i| ((i * 13) % 200) as f32 / 16.0 - 6.0)
            .collect();
        x[0] = 127.0 / 16.0; // d_x = 1/16 in both blocks
        x[32] = -127.0 / 16.0;
        let mut q8 = vec![0u8; 2 * 34];
        quantize_q8_0(&w8, &mut q8).unwrap();
        let mut q4 = vec![0u8; 2 * 18];
        quantize_q4_0(&w4, &mut q4).unwrap();
        let mut scratch = ActScratch::new(64).unwrap();
        for (dtype, bytes, w) in [(DType::Q8_0, &q8, &w8), (DType::Q4_0, &q4, &w4)] {
            let m = MatRef::new(dtype, 1, 64, bytes).unwrap();
            let mut out = [0.0f32; 1];
            matvec(&mut out, &m, &x, &mut scratch).unwrap();
            let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert_eq!(out[0] as f64, exact, "{dtype:?}");
            let mut row = [0.0f32; 64];
            row_to_f32(&m, 0, &mut row).unwrap();
            assert_eq!(&row[..], &w[..], "{dtype:?}");
        }
    }

    #[test]
    fn four_chains_equal_their_single_rows() {
        // Rows and activations of different block counts (0 to 3): each chain uses its own
        // count; odd scales and codes at both ends of the i8 range.
        let scales = [0x3555u16, 0xb9c7, 0x0001, 0x7bff];
        let q8_row = |n: usize, seed: usize| -> Vec<u8> {
            (0..n)
                .flat_map(|b| {
                    let d = scales[(b + seed) % 4].to_le_bytes();
                    let codes = (0..QK).map(move |j| ((j * 37 + b * 11 + seed) % 256) as u8);
                    d.into_iter().chain(codes)
                })
                .collect()
        };
        let q4_row = |n: usize, seed: usize| -> Vec<u8> {
            (0..n)
                .flat_map(|b| {
                    let d = scales[(b + seed + 1) % 4].to_le_bytes();
                    let codes = (0..QK / 2).map(move |j| ((j * 53 + b * 7 + seed) % 256) as u8);
                    d.into_iter().chain(codes)
                })
                .collect()
        };
        let act = |n: usize, seed: usize| -> Vec<BlockQ8> {
            (0..n)
                .map(|b| BlockQ8 {
                    qs: core::array::from_fn(|j| ((j * 29 + b * 5 + seed) % 256) as u8 as i8),
                    d: 0.0173 + (b + seed) as f32,
                })
                .collect()
        };
        let r8: Vec<Vec<u8>> = [3, 1, 0, 2]
            .iter()
            .enumerate()
            .map(|(i, &n)| q8_row(n, i))
            .collect();
        let r4: Vec<Vec<u8>> = [2, 3, 3, 0]
            .iter()
            .enumerate()
            .map(|(i, &n)| q4_row(n, i))
            .collect();
        let a: Vec<Vec<BlockQ8>> = [3, 3, 1, 2]
            .iter()
            .enumerate()
            .map(|(i, &n)| act(n, i))
            .collect();
        let rows8: [&[u8]; ROW_GROUP] = core::array::from_fn(|i| &r8[i][..]);
        let rows4: [&[u8]; ROW_GROUP] = core::array::from_fn(|i| &r4[i][..]);
        let acts: [&[BlockQ8]; ROW_GROUP] = core::array::from_fn(|i| &a[i][..]);
        let bits = |v: [f32; ROW_GROUP]| v.map(f32::to_bits);
        let single8 = bits(core::array::from_fn(|i| dot_q8_0_row(rows8[i], acts[i])));
        assert_eq!(bits(dot4_q8_0(rows8, acts)), single8);
        assert_eq!(bits(dot4_q8_0_portable(rows8, acts)), single8);
        let shared_row = bits(acts.map(|x| dot_q8_0_row(rows8[0], x)));
        assert_eq!(bits(dot4_q8_0([rows8[0]; ROW_GROUP], acts)), shared_row);
        let single4 = bits(rows4.map(|r| dot_q4_0_row(r, acts[0])));
        assert_eq!(bits(dot4_q4_0(rows4, acts[0])), single4);
        assert_eq!(bits(dot4_q4_0_portable(rows4, acts[0])), single4);
        assert_eq!(single8[2], 0.0f32.to_bits()); // an empty chain is +0
        assert_ne!(single8[0], 0.0f32.to_bits());
    }

    /// Products of one input in one call equal separate `matvec` calls, bit for bit, whatever
    /// the mix of dtypes (the quantized ones share one quantization, the f32 and f16 ones use
    /// none); a product that fails a check fails the call before any output is written.
    #[test]
    fn products_of_one_input_equal_separate_matvecs() {
        let cols = 96;
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 37) % 101) as f32 / 7.0 - 7.0)
            .collect();
        let w: Vec<f32> = (0..5 * cols)
            .map(|i| ((i * 53) % 199) as f32 / 31.0 - 3.0)
            .collect();
        let mut q8 = vec![0u8; 5 * cols / QK * 34];
        quantize_q8_0(&w, &mut q8).unwrap();
        let mut q4 = vec![0u8; 5 * cols / QK * 18];
        quantize_q4_0(&w, &mut q4).unwrap();
        let f32s = le_f32(&w);
        let f16s: Vec<u8> = w
            .iter()
            .flat_map(|&v| f32_to_f16(v).to_le_bytes())
            .collect();
        let m8 = MatRef::new(DType::Q8_0, 5, cols, &q8).unwrap();
        let m4 = MatRef::new(DType::Q4_0, 5, cols, &q4).unwrap();
        let m32 = MatRef::new(DType::F32, 5, cols, &f32s).unwrap();
        let m16 = MatRef::new(DType::F16, 5, cols, &f16s).unwrap();
        let mut scratch = ActScratch::new(cols).unwrap();
        let separate = |m: &MatRef, scratch: &mut ActScratch| {
            let mut out = [0.0f32; 5];
            matvec(&mut out, m, &x, scratch).unwrap();
            out.map(f32::to_bits)
        };
        // In both orders, after another input's activation was left in the scratch (the call
        // must quantize its own, also when an f32 or f16 product comes first).
        let other: Vec<f32> = x.iter().map(|v| -2.0 * v).collect();
        for order in [[&m8, &m32, &m4, &m16], [&m32, &m16, &m4, &m8]] {
            let want = order.map(|m| separate(m, &mut scratch));
            matvec(&mut [0.0f32; 5], &m8, &other, &mut scratch).unwrap();
            let mut out = [[0.0f32; 5]; 4];
            let [o0, o1, o2, o3] = &mut out;
            let [a, b, c, d] = order;
            matvecs([(o0, a), (o1, b), (o2, c), (o3, d)], &x, &mut scratch).unwrap();
            assert_eq!(out.map(|o| o.map(f32::to_bits)), want);
        }

        let mut first = [7.0f32; 5];
        let e = matvecs(
            [(&mut first[..], &m8), (&mut [0.0f32; 4][..], &m4)],
            &x,
            &mut scratch,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::ShapeMismatch);
        assert_eq!(
            first, [7.0; 5],
            "nothing is computed when a product fails its checks"
        );
    }

    #[test]
    fn shapes_are_checked() {
        let bytes = [0u8; 34];
        assert_eq!(
            MatRef::new(DType::Q8_0, 1, 16, &bytes).unwrap_err().code,
            ErrorCode::ShapeMismatch
        );
        assert_eq!(
            MatRef::new(DType::Q8_0, 2, 32, &bytes).unwrap_err().code,
            ErrorCode::InvalidLength
        );
        let m = MatRef::new(DType::Q8_0, 1, 32, &bytes).unwrap();
        let mut small = ActScratch::new(31).unwrap();
        assert_eq!(small.max_cols(), 32);
        let mut tiny = ActScratch::new(0).unwrap();
        let e = matvec(&mut [0.0], &m, &[0.0; 32], &mut tiny).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidLength);
        let e = matvec(&mut [0.0; 2], &m, &[0.0; 32], &mut small).unwrap_err();
        assert_eq!(e.code, ErrorCode::ShapeMismatch);
        let e = row_to_f32(&m, 1, &mut [0.0; 32]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTokenId);
        let bad = MatRef {
            dtype: DType::F32,
            rows: usize::MAX,
            cols: 2,
            bytes: &bytes,
            f16_finite: false,
            interleaved: false,
        };
        assert_eq!(bad.check().unwrap_err().code, ErrorCode::InvalidLength);
        // Interleaved rows are q8_0 or q4_0 rows, and natively there are none.
        for (dtype, rows) in [(DType::F32, 1), (DType::Q8_0, 4), (DType::Q4_0, 4)] {
            let bytes = vec![0u8; rows * 32 / dtype.block_elems() * dtype.block_bytes()];
            let mut m = MatRef::new(dtype, rows, 32, &bytes).unwrap();
            m.interleaved = true;
            assert_eq!(
                m.check().unwrap_err().code,
                ErrorCode::ShapeMismatch,
                "{dtype:?}"
            );
        }
    }

    /// Bit equality, or NaN in both (a NaN's bits are unspecified, spec rule 8).
    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn widen_f16_is_f16_to_f32_at_every_length() {
        // Every pattern, at lengths around the kernels' groups of 8 and 16 and from odd starts.
        let all: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
        let mut out = vec![0.0f32; 65536];
        widen_f16(&all, &mut out, false);
        for (h, &v) in out.iter().enumerate() {
            assert!(same(v, f16_to_f32(h as u16)), "pattern {h:#06x}");
        }
        for len in 0..40 {
            for start in [0, 3, 0x7bf8, 0xfbfd] {
                let bytes = &all[2 * start..2 * (start + len)];
                let sentinel = f32::from_bits(0x7fc0_0bad);
                let mut out = vec![sentinel; len + 1];
                widen_f16(bytes, &mut out[..len], false);
                for (i, &v) in out[..len].iter().enumerate() {
                    assert!(
                        same(v, f16_to_f32((start + i) as u16)),
                        "{len} from {start}"
                    );
                }
                assert_eq!(
                    out[len].to_bits(),
                    sentinel.to_bits(),
                    "nothing past the end"
                );
                // An output shorter than the input: only the output's length is written.
                let mut short = vec![sentinel; len / 2 + 1];
                widen_f16(bytes, &mut short[..len / 2], false);
                assert_eq!(short[len / 2].to_bits(), sentinel.to_bits());
            }
        }
    }

    #[test]
    fn dot_f32_many_is_dot_f32_per_vector() {
        let mut seed = 0x2545_f491u32;
        let mut value = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            match seed % 16 {
                0 => {
                    [0.0, -0.0, f32::INFINITY, f32::NAN, 1e-40, f32::MAX][(seed >> 8) as usize % 6]
                }
                _ => (seed >> 8) as f32 / 65536.0 - 128.0,
            }
        };
        for n in 0..70 {
            let w: Vec<f32> = (0..n).map(|_| value()).collect();
            let xs: Vec<Vec<f32>> = (0..4).map(|_| (0..n).map(|_| value()).collect()).collect();
            let got = dot_f32_many::<4>(&w, core::array::from_fn(|t| &xs[t][..]));
            for (t, &g) in got.iter().enumerate() {
                assert!(same(g, dot_f32(&w, &xs[t])), "n {n}, vector {t}");
            }
            let [one] = dot_f32_many::<1>(&w, [&xs[0]]);
            assert!(same(one, dot_f32(&w, &xs[0])));
            // Unequal lengths: each uses the common prefix.
            if n > 0 {
                let got = dot_f32_many::<2>(&w, [&xs[0], &xs[1][..n - 1]]);
                assert!(same(got[0], dot_f32(&w[..n - 1], &xs[0][..n - 1])));
                assert!(same(got[1], dot_f32(&w[..n - 1], &xs[1][..n - 1])));
            }
        }
    }
}
