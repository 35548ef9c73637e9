//! The simd128 kernels against the portable ones, run inside the simd128 module itself (the only
//! place the simd128 code exists): feature `kernel-selftest`, export `trlm_kernel_selftest`,
//! driven by harness/tests/simd128_kernels.rs. Not part of any shipped module.
//!
//! Case 0 widens all 65536 f16 patterns four at a time, and through `widen_f16` sixteen at a
//! time (all at once, and every length up to 40 from starts near the infinities; and, without
//! its test for exponent 31, every pattern with another exponent), and compares
//! them with [`f16_to_f32`] (bit for bit; NaN-ness only for NaNs, spec/determinism.md rule 8),
//! and hashes
//! four messages at once in the SHA-256 lanes ([`sha256_x4`]) at every length up to 300 bytes
//! (every padding case) and at 64 KiB ± 1, against the scalar [`sha256`]. Every
//! further case draws four (row, activation) chains with edge values weighted in — f16 scales
//! zero, subnormal, normal, largest, infinite and NaN; activation scales zero, subnormal, huge,
//! infinite and NaN; codes −128 and 127, q4_0 nibbles all −8 and all 7; random bytes, which
//! cover every q4_0 nibble; block counts 0, 1, odd and uneven per chain, rows with trailing
//! partial blocks — and compares each
//! chain of `dot4_q8_0` (four rows and four activations, four rows and one activation, one row
//! and four activations), `dot4_q4_0` and the
//! wired `kernels::dot_q8_0_rows` / `dot_q4_0_rows` with the portable single-row kernels
//! `kernels::dot_q8_0_row` / `dot_q4_0_row`, each chain over its own blocks; and the whole-matrix
//! `matvec_q8_0` / `matvec_q4_0` on 0 to 20 rows (of up to 23 blocks, and in one case of eight
//! of 60 to 139 blocks), row by row against the same single-row kernels — as drawn, with the
//! "no infinite or NaN scale" flag the load would set, and with those scales made finite and the
//! flag set, the rows also held interleaved (`model/interleave.rs`) —
//! and the prefill kernels `matmul_q8_0` / `matmul_q4_0` on 0 to 10 rows × 0 to 16 tokens (one,
//! two or three passes of one or two groups), likewise as drawn and with finite scales flagged,
//! each with the activation scales as drawn, with all of them below 2^16 (the passes that take
//! them prescaled) and with only the first pass's below 2^16, the rows again interleaved;
//! and the f16 whole-matrix kernel `matvec_f16` on 0
//! to 10 rows of 0 to 74 columns, row by row against `kernels::dot_f16_row` (also with its input
//! times 2^112 from `scale_input`, where that takes the inputs, and on inputs all below 2^16),
//! and batched prefill on the same matrix as f16 and as f32 with 1 to 10 tokens (the simd128
//! tiles of two rows and four tokens, `dot_f32_rows_tokens`, the last group padded; an odd last
//! row through the portable code), each output against `dot_f16_row`; and activation
//! quantization's amax and codes (`act_quant`) on a drawn block — exact half-integers and their
//! neighbours, edge values, NaNs — against the portable `block_amax` and `q8_0_code`; and
//! SwiGLU, softmax's exponentials and the greedy pick (`activation`, `argmax`) on short drawn
//! runs against the portable code. Case 0 also runs the simd128 exp over a sweep of f32 bit
//! patterns and exp's edges, and the greedy pick over runs of 32,000 logits
//! (`selftest/elementwise.rs`).

use alloc::vec::Vec;
use core::arch::wasm32::{f32x4_extract_lane, u32x4};

use super::act_quant::{self, act_codes_q8_0};
use super::{
    dot4_q4_0, dot4_q8_0, f16x4_to_f32x4, matmul_q4_0, matmul_q8_0, matvec_f16, matvec_q4_0,
    matvec_q8_0, scale_input, widen_f16, Widen, MATVEC_GROUP,
};
use crate::format::dtype::{Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK};
use crate::format::DType;
use crate::model::batch::{BatchedProduct, MatmulScratch};
use crate::model::interleave;
use crate::model::kernels::{
    dot_f16_row, dot_q4_0_row, dot_q4_0_rows, dot_q8_0_row, dot_q8_0_rows, MatRef,
};
use crate::model::quant::{block_amax, f16_to_f32, q8_0_code, BlockQ8};
use crate::model::weights::{f16_all_finite, scales_all_finite};
use crate::sha256::{sha256, sha256_x4};

mod elementwise;

/// Runs the checks of case 0 (f16 widening, the SHA-256 lanes, exp and the greedy pick) and
/// `cases` random cases drawn from `seed`. Returns 0 when every result agrees, else 1 + the
/// number of the first failing case.
pub fn run(seed: u32, cases: u32) -> u32 {
    if !f16_widening_agrees()
        || !sha256_lanes_agree()
        || !elementwise::exp_agrees()
        || !elementwise::argmax_agrees()
    {
        return 1;
    }
    let mut rng = Rng(u64::from(seed) ^ 0x9e37_79b9_7f4a_7c15);
    for case in 1..=cases {
        if !case_agrees(&mut rng) {
            return case.saturating_add(1);
        }
    }
    0
}

/// Each lane of `sha256_x4` is the scalar digest of its message.
fn sha256_lanes_agree() -> bool {
    let mut x = 0x2545_f491u32;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    };
    (0..300).chain([65_535, 65_536, 65_537]).all(|n| {
        let m = [bytes(n), bytes(n), bytes(n), bytes(n)];
        let got = sha256_x4([&m[0], &m[1], &m[2], &m[3]]);
        (0..4).all(|j| got[j] == sha256(&m[j]))
    })
}

/// Bit equality, or NaN in both.
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn f16_widening_agrees() -> bool {
    // widen_f16 on every pattern at once, then at every length up to 40 from starts that put
    // infinities and NaNs in some groups of sixteen and not in others.
    let all: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    let mut out = alloc::vec![0.0f32; 65536];
    let whole = widen_f16(&all, &mut out, false);
    let widened = whole == 65536
        && out
            .iter()
            .enumerate()
            .all(|(h, &v)| same(v, f16_to_f32(h as u16)));
    // Without the test for exponent 31 (`finite`), on every pattern that has another exponent.
    let finite: Vec<u16> = (0..=u16::MAX).filter(|h| h & 0x7c00 != 0x7c00).collect();
    let finite_bytes: Vec<u8> = finite.iter().flat_map(|h| h.to_le_bytes()).collect();
    let mut out = alloc::vec![f32::NAN; finite.len()];
    let finite_widened = widen_f16(&finite_bytes, &mut out, true) == finite.len()
        && out
            .iter()
            .zip(&finite)
            .all(|(&v, &h)| same(v, f16_to_f32(h)));
    let lengths = (0..40).all(|len| {
        [0usize, 3, 0x7bf8, 0xfbfd].iter().all(|&start| {
            let mut out = alloc::vec![f32::NAN; len];
            let done = widen_f16(&all[2 * start..2 * (start + len)], &mut out, false);
            done == len / 16 * 16 && (0..done).all(|i| same(out[i], f16_to_f32((start + i) as u16)))
        })
    });
    widened
        && finite_widened
        && lengths
        && (0..=u16::MAX / 4).all(|k| {
            let h = [0, 1, 2, 3].map(|i| u32::from(k) * 4 + i);
            let v = f16x4_to_f32x4(u32x4(h[0], h[1], h[2], h[3]), &Widen::new());
            let got = [
                f32x4_extract_lane::<0>(v),
                f32x4_extract_lane::<1>(v),
                f32x4_extract_lane::<2>(v),
                f32x4_extract_lane::<3>(v),
            ];
            got.iter()
                .zip(h)
                .all(|(&g, h)| same(g, f16_to_f32(h as u16)))
        })
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0; the bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    /// A weight block's f16 scale bits.
    fn scale(&mut self) -> u16 {
        const EDGES: [u16; 14] = [
            0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0xfbff, 0x7c00, 0xfc00,
            0x7e00, 0x7c01, 0xfe01,
        ];
        match self.below(8) {
            0 => EDGES[self.below(EDGES.len() as u64) as usize],
            1 => self.next() as u16,
            _ => (0x2000 + self.below(0x0c00) as u16) | (u16::from(self.byte() & 0x80) << 8),
        }
    }

    /// An activation block's scale.
    fn act_scale(&mut self) -> f32 {
        const EDGES: [f32; 12] = [
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            1e-40, // subnormal
            1e-8,
            65504.0,
            // The prescaled decode's bound (2^16, excluded: times 2^112 it overflows).
            65536.0,
            -65536.0,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        match self.below(8) {
            0 => EDGES[self.below(EDGES.len() as u64) as usize],
            1 => f32::from_bits(self.next() as u32),
            _ => f16_to_f32(0x1c00 + self.below(0x0c00) as u16),
        }
    }

    /// 32 codes: random, or extremes (q8_0's −128 and 127; as q4_0 bytes, 0x00 and 0xff are
    /// nibbles all −8 and all 7, the extreme i16 lanes of the q4_0 whole-matrix and prefill
    /// kernels).
    fn codes(&mut self) -> [u8; QK] {
        match self.below(10) {
            0 => [0x80; QK],
            1 => [0x7f; QK],
            2 => core::array::from_fn(|_| if self.below(2) == 0 { 0x80 } else { 0x7f }),
            3 => [0x00; QK],
            4 => [0xff; QK],
            _ => core::array::from_fn(|_| self.byte()),
        }
    }

    /// A row of `blocks` whole blocks of `bb` bytes plus a partial block of `extra` bytes.
    fn row(&mut self, blocks: usize, bb: usize, extra: usize) -> Vec<u8> {
        let mut row = Vec::with_capacity(blocks * bb + extra);
        for _ in 0..blocks {
            row.extend_from_slice(&self.scale().to_le_bytes());
            row.extend_from_slice(&self.codes()[..bb - 2]);
        }
        row.extend((0..extra).map(|_| self.byte()));
        row
    }

    fn act(&mut self, blocks: usize) -> Vec<BlockQ8> {
        (0..blocks)
            .map(|_| BlockQ8 {
                qs: self.codes().map(|c| c as i8),
                d: self.act_scale(),
            })
            .collect()
    }

    /// A block count: small and odd ones weighted in.
    fn blocks(&mut self) -> usize {
        const SMALL: [usize; 6] = [0, 1, 2, 3, 5, 7];
        if self.below(3) == 0 {
            SMALL[self.below(SMALL.len() as u64) as usize]
        } else {
            self.below(24) as usize
        }
    }
}

/// The portable results of four chains, each over its own blocks.
fn reference(
    rows: &[&[u8]; 4],
    acts: &[&[BlockQ8]; 4],
    dot: fn(&[u8], &[BlockQ8]) -> f32,
) -> [f32; 4] {
    core::array::from_fn(|i| dot(rows[i], acts[i]))
}

fn agree(a: [f32; 4], b: [f32; 4]) -> bool {
    a.iter().zip(&b).all(|(&x, &y)| same(x, y))
}

fn case_agrees(rng: &mut Rng) -> bool {
    let base = rng.blocks();
    // Mostly equal lengths (as matvec passes them); sometimes every chain its own.
    let uneven = rng.below(4) == 0;
    let count = |rng: &mut Rng| if uneven { rng.blocks() } else { base };
    let extra = |rng: &mut Rng, bb: u64| {
        if rng.below(4) == 0 {
            rng.below(bb) as usize
        } else {
            0
        }
    };
    let q8: [Vec<u8>; 4] = core::array::from_fn(|_| {
        let (n, e) = (count(rng), extra(rng, Q8_0_BLOCK_BYTES as u64));
        rng.row(n, Q8_0_BLOCK_BYTES, e)
    });
    let q4: [Vec<u8>; 4] = core::array::from_fn(|_| {
        let (n, e) = (count(rng), extra(rng, Q4_0_BLOCK_BYTES as u64));
        rng.row(n, Q4_0_BLOCK_BYTES, e)
    });
    let acts: [Vec<BlockQ8>; 4] = core::array::from_fn(|_| {
        let n = count(rng);
        rng.act(n)
    });
    let q8 = q8.each_ref().map(|r| &r[..]);
    let q4 = q4.each_ref().map(|r| &r[..]);
    let each = acts.each_ref().map(|a| &a[..]);
    let shared = [each[0]; 4];
    let ok_each = agree(dot4_q8_0(q8, each), reference(&q8, &each, dot_q8_0_row));
    let want = reference(&q8, &shared, dot_q8_0_row);
    let ok_shared = agree(dot4_q8_0(q8, shared), want) && agree(dot_q8_0_rows(q8, each[0]), want);
    let one_row = [q8[0]; 4];
    let ok_one_row = agree(
        dot4_q8_0(one_row, each),
        reference(&one_row, &each, dot_q8_0_row),
    );
    let want = reference(&q4, &shared, dot_q4_0_row);
    let ok_q4 = agree(dot4_q4_0(q4, each[0]), want) && agree(dot_q4_0_rows(q4, each[0]), want);
    ok_each
        && ok_shared
        && ok_one_row
        && ok_q4
        && matvec_agrees(rng, base)
        && long_rows_agree(rng)
        && matmul_agrees(rng, base)
        && matvec_f16_agrees(rng)
        && act_quant_agrees(rng)
        && elementwise::elementwise_agrees(rng)
}

/// Activation quantization's simd128 steps against the portable ones on one drawn block: its
/// amax (bits), and its codes with the block's own inverse scale, with a drawn one (the
/// activation scales' values: zero, subnormal, huge, infinite, NaN) and with 1 (each element
/// near a half-integer: exact halves, one ulp either side, and ±127.5 around the clamp).
fn act_quant_agrees(rng: &mut Rng) -> bool {
    let halves = |rng: &mut Rng| -> f32 {
        let k = rng.below(130) as f32 + 0.5;
        let v = match rng.below(3) {
            0 => k,
            1 => f32::from_bits(k.to_bits() + 1),
            _ => f32::from_bits(k.to_bits() - 1),
        };
        if rng.below(2) == 0 {
            v
        } else {
            -v
        }
    };
    let block: [f32; QK] = match rng.below(4) {
        0 => core::array::from_fn(|_| halves(rng)),
        1 => core::array::from_fn(|_| rng.act_scale()),
        _ => core::array::from_fn(|_| {
            let v = rng.act_scale() * (rng.below(255) as f32 - 127.0) / 64.0;
            if rng.below(16) == 0 {
                f32::NAN
            } else {
                v
            }
        }),
    };
    let amax = block_amax(&block);
    let d = amax / 127.0;
    let own = if d == 0.0 { 0.0 } else { 1.0 / d };
    let codes_agree =
        |id: f32| act_codes_q8_0(&block, id) == core::array::from_fn(|j| q8_0_code(block[j], id));
    act_quant::block_amax(&block).to_bits() == amax.to_bits()
        && codes_agree(own)
        && codes_agree(rng.act_scale())
        && codes_agree(1.0)
}

/// The f16 whole-matrix kernel on 0 to 10 rows of 0 to 74 columns (whole chunks of sixteen and
/// tails), weights mostly moderate with every class weighted in (the scales' edge patterns:
/// signed zeros, subnormals, the largest, infinities and NaNs, so chunks with and without an
/// exponent of 31 both occur), inputs from the activation scales' values (zeros, subnormals,
/// huge, infinite, NaN), with the per-chunk test and without it where the matrix holds no
/// infinity and no NaN: it computes every row (none for zero columns), each bit for bit
/// `dot_f16_row`, and writes nothing past them.
fn matvec_f16_agrees(rng: &mut Rng) -> bool {
    let (rows, cols) = (rng.below(11) as usize, rng.below(75) as usize);
    // Batched prefill's tokens: 1 to 10 (groups of four, with and without a shorter last one).
    let tokens = 1 + rng.below(10) as usize;
    let x: Vec<f32> = (0..cols).map(|_| rng.act_scale()).collect();
    let bytes: Vec<u8> = (0..rows * cols)
        .flat_map(|_| rng.scale().to_le_bytes())
        .collect();
    // The same values with every infinity and NaN made finite (its exponent's top bit cleared).
    let finite_bytes: Vec<u8> = bytes
        .chunks_exact(2)
        .flat_map(|c| {
            let h = u16::from_le_bytes([c[0], c[1]]);
            let h = if h & 0x7c00 == 0x7c00 { h & !0x4000 } else { h };
            h.to_le_bytes()
        })
        .collect();
    // Checked per chunk, and as a loaded model's matrix without an infinity or a NaN is.
    let cases = [
        (&bytes, false),
        (&bytes, f16_all_finite(&bytes)),
        (&finite_bytes, false),
        (&finite_bytes, f16_all_finite(&finite_bytes)),
    ];
    // The load's test (whole chunks eight at a time here) against one value at a time.
    let no_exponent_31 = |b: &[u8]| {
        b.chunks_exact(2)
            .all(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7c00 != 0x7c00)
    };
    // The inputs with every |x| of 2^16 or more (huge, infinite, NaN) made the largest f32 below
    // 2^16 of its sign: inputs the kernel also takes times 2^112 (`scale_input`).
    let below = f32::from_bits(0x477f_ffff);
    let tame: Vec<f32> = x
        .iter()
        .map(|&v| match (v.abs() < 65536.0, v.is_sign_negative()) {
            (true, _) => v,
            (false, false) => below,
            (false, true) => -below,
        })
        .collect();
    f16_all_finite(&finite_bytes)
        && f16_all_finite(&bytes) == no_exponent_31(&bytes)
        && scale_input_bounds_hold()
        && cases.into_iter().all(|(bytes, finite)| {
            let row = |r: usize| &bytes[r * 2 * cols..(r + 1) * 2 * cols];
            let agrees = |x: &[f32], scaled: Option<&[f32]>| {
                let sentinel = f32::from_bits(0x7fc0_0bad);
                let mut out = alloc::vec![sentinel; rows + 1];
                let done = matvec_f16(&mut out[..rows], bytes, x, finite, scaled);
                let want = if cols == 0 { 0 } else { rows };
                done == want
                    && (0..done).all(|r| same(out[r], dot_f16_row(row(r), x)))
                    && out[rows].to_bits() == sentinel.to_bits()
            };
            // As `kernels::matvecs` calls it: the scaled input where `scale_input` makes one.
            let scaled_agrees = |x: &[f32]| {
                let mut scaled = alloc::vec![0.0f32; x.len()];
                let made = scale_input(x, &mut scaled);
                made == x.iter().all(|v| v.abs() < 65536.0)
                    && agrees(x, made.then_some(&scaled[..]))
            };
            agrees(&x, None)
                && scaled_agrees(&x)
                && scaled_agrees(&tame)
                && prefill_f16_agrees(rows, cols, bytes, finite, &x, tokens)
        })
}

/// `scale_input` takes every |x| below 2^16 and nothing else, and scales exactly.
fn scale_input_bounds_hold() -> bool {
    let below = f32::from_bits(0x477f_ffff);
    let tiny = f32::from_bits(1);
    let mut out = [0.0f32; 4];
    let took = scale_input(&[below, -below, tiny, -0.0], &mut out);
    let pow112 = f32::from_bits((127 + 112) << 23);
    // 2^-149 · 2^112 = 2^-37 (biased exponent 90).
    let want = [
        below * pow112,
        -below * pow112,
        f32::from_bits(90 << 23),
        -0.0,
    ];
    took && (below * pow112).is_finite()
        && out.map(f32::to_bits) == want.map(f32::to_bits)
        && [65536.0, -65536.0, f32::INFINITY, f32::NAN]
            .iter()
            .all(|&v| !scale_input(&[0.0, v], &mut out[..2]))
        && !scale_input(&[0.0; 3], &mut out[..2])
}

/// Batched prefill's product of the f16 matrix `bytes` (`rows` × `cols`, `finite` as
/// [`MatRef::f16_finite`]), and of the f32 matrix of the same values, with `n` tokens (token t
/// is `x` rotated by 3 t, negated for odd t): each output bit for bit `dot_f16_row` of its row
/// and token. Rows go through the simd128 tiles of two rows and four tokens (the last group of
/// fewer tokens padded) and, for an odd number of rows, the last row through the portable code.
fn prefill_f16_agrees(
    rows: usize,
    cols: usize,
    bytes: &[u8],
    finite: bool,
    x: &[f32],
    n: usize,
) -> bool {
    let row = |r: usize| &bytes[r * 2 * cols..(r + 1) * 2 * cols];
    let tokens: Vec<f32> = (0..n)
        .flat_map(|t| {
            (0..cols).map(move |i| {
                let v = x[(i + 3 * t) % cols];
                if t % 2 == 1 {
                    -v
                } else {
                    v
                }
            })
        })
        .collect();
    let f32_bytes: Vec<u8> = bytes
        .chunks_exact(2)
        .flat_map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])).to_le_bytes())
        .collect();
    // `float_rows` false: scratch for one f32 row, so the tiles do not run.
    let agrees = |dtype: DType, bytes: &[u8], float_rows: bool| {
        let (Ok(m), Ok(mut scratch)) = (
            MatRef::new(dtype, rows, cols, bytes),
            MatmulScratch::new(n, cols, float_rows),
        ) else {
            return false;
        };
        let m = MatRef {
            f16_finite: finite,
            interleaved: false,
            ..m
        };
        let mut out = alloc::vec![0.0f32; n * rows];
        scratch.matmul(&mut out, rows, &m, &tokens, cols, n).is_ok()
            && (0..n).all(|t| {
                (0..rows).all(|r| {
                    same(
                        out[t * rows + r],
                        dot_f16_row(row(r), &tokens[t * cols..(t + 1) * cols]),
                    )
                })
            })
    };
    agrees(DType::F16, bytes, true)
        && agrees(DType::F32, &f32_bytes, true)
        && agrees(DType::F16, bytes, false)
}

/// The whole-matrix kernels on a matrix of 0 to 20 rows of `blocks` blocks: they compute
/// exactly the whole groups of [`MATVEC_GROUP`] rows, each row bit for bit its single-row
/// product.
/// In one case of eight, [`matvec_agrees`] on rows of 60 to 139 blocks: longer than one column
/// chunk of the whole-matrix kernels (64 blocks), whose accumulators each chunk continues.
fn long_rows_agree(rng: &mut Rng) -> bool {
    if rng.below(8) != 0 {
        return true;
    }
    let blocks = 60 + rng.below(80) as usize;
    matvec_agrees(rng, blocks)
}

fn matvec_agrees(rng: &mut Rng, blocks: usize) -> bool {
    let rows = rng.below(21) as usize;
    let act = rng.act(blocks);
    let whole = if blocks == 0 {
        0
    } else {
        rows / MATVEC_GROUP * MATVEC_GROUP
    };
    let agrees = |bytes: &[u8],
                  bb: usize,
                  finite: bool,
                  kernel: fn(&mut [f32], &[u8], &[BlockQ8], bool) -> usize,
                  dot: fn(&[u8], &[BlockQ8]) -> f32| {
        let mut out = alloc::vec![f32::NAN; rows];
        let done = kernel(&mut out, bytes, &act, finite);
        done == whole
            && (0..done).all(|r| {
                let row = &bytes[r * blocks * bb..(r + 1) * blocks * bb];
                same(out[r], dot(row, &act))
            })
    };
    // As drawn, with the flag the load would set (a matrix with an infinite or NaN scale is
    // never flagged finite), and then with every such scale made the largest finite one of
    // its sign: flagged finite, with the other edge scales (zero, subnormal, largest) kept.
    let check = |bb: usize,
                 rng: &mut Rng,
                 kernel: fn(&mut [f32], &[u8], &[BlockQ8], bool) -> usize,
                 dot: fn(&[u8], &[BlockQ8]) -> f32| {
        let mut bytes: Vec<u8> = (0..rows).flat_map(|_| rng.row(blocks, bb, 0)).collect();
        let drawn = agrees(&bytes, bb, scales_all_finite(&bytes, bb), kernel, dot);
        for b in bytes.chunks_exact_mut(bb) {
            if b[1] & 0x7c == 0x7c {
                b[0] = 0xff;
                b[1] = (b[1] & 0x80) | 0x7b;
            }
        }
        drawn && scales_all_finite(&bytes, bb) && agrees(&bytes, bb, true, kernel, dot)
    };
    const Q8: usize = Q8_0_BLOCK_BYTES;
    const Q4: usize = Q4_0_BLOCK_BYTES;
    type Matvec = fn(&mut [f32], &[u8], &[BlockQ8], bool) -> usize;
    type Dot = fn(&[u8], &[BlockQ8]) -> f32;
    let kernels: [(usize, Matvec, Dot); 4] = [
        (
            Q8,
            |o, b, a, f| matvec_q8_0(o, b, a, f, false),
            dot_q8_0_row,
        ),
        (
            Q8,
            |o, b, a, f| matvec_interleaved(matvec_q8_0, Q8, (o, b, a, f)),
            dot_q8_0_row,
        ),
        (
            Q4,
            |o, b, a, f| matvec_q4_0(o, b, a, f, false),
            dot_q4_0_row,
        ),
        (
            Q4,
            |o, b, a, f| matvec_interleaved(matvec_q4_0, Q4, (o, b, a, f)),
            dot_q4_0_row,
        ),
    ];
    kernels
        .into_iter()
        .all(|(bb, kernel, dot)| check(bb, rng, kernel, dot))
}

/// A copy of `bytes` (rows of `blocks` blocks of `bb` bytes) with its whole groups interleaved.
fn interleaved(bytes: &[u8], blocks: usize, bb: usize) -> Vec<u8> {
    let rb = blocks * bb;
    let mut held = bytes.to_vec();
    let mut tmp = alloc::vec![0u8; rb * MATVEC_GROUP];
    // Rows of no blocks stay as they are (there is nothing to interleave).
    let _ = interleave::interleave(&mut held, rb, bb, &mut tmp);
    held
}

/// `matvec_q8_0` / `matvec_q4_0`: output, rows, activation, `finite`, `interleaved`.
type MatvecKernel = fn(&mut [f32], &[u8], &[BlockQ8], bool, bool) -> usize;

/// A whole-matrix kernel (`matvec_q8_0` or `matvec_q4_0`, its last argument `interleaved`) on
/// the same rows held interleaved: its results must not change.
fn matvec_interleaved(
    kernel: MatvecKernel,
    bb: usize,
    (out, bytes, act, finite): (&mut [f32], &[u8], &[BlockQ8], bool),
) -> usize {
    kernel(out, &interleaved(bytes, act.len(), bb), act, finite, true)
}

/// A prefill kernel (`matmul_q8_0` or `matmul_q4_0`) on the same rows held interleaved.
fn matmul_interleaved(kernel: fn(BatchedProduct) -> usize, bb: usize, p: BatchedProduct) -> usize {
    let held = interleaved(p.bytes, p.nb, bb);
    kernel(BatchedProduct {
        bytes: &held,
        interleaved: true,
        ..p
    })
}

/// The whole-product prefill kernels on 0 to 10 rows of `blocks` blocks and 0 to 10 tokens, in
/// one case of four 11 to 16 (passes of one or two groups of [`super::MATMUL_GROUP`], the last
/// partial), with an output
/// stride wider than the rows and room for more tokens: they compute every token (none for rows
/// of no blocks), each output bit for bit its single-row product, and write nothing else. In one
/// case of eight the rows have 60 to 139 blocks: longer than a column chunk, whose accumulators
/// the next chunk continues. As [`matvec_agrees`], the rows go as drawn with the flag the load
/// would set, then with every infinite or NaN scale made finite and the matrix flagged finite;
/// each with the activations as drawn, with every activation scale of magnitude 2^16 or more
/// (or NaN) made the largest f32 below 2^16 of its sign, so that the passes of two groups that
/// take the scales prescaled are reached too, and with only the first pass's tokens (the first
/// eight) made so: a later pass must look at its own tokens' scales.
fn matmul_agrees(rng: &mut Rng, blocks: usize) -> bool {
    let blocks = if rng.below(8) == 0 {
        60 + rng.below(80) as usize
    } else {
        blocks
    };
    let rows = rng.below(11) as usize;
    let n = if rng.below(4) == 0 {
        11 + rng.below(6)
    } else {
        rng.below(11)
    } as usize;
    let stride = rows + 1;
    let drawn_acts = rng.act(blocks * n);
    // The largest f32 below the bound.
    let below = f32::from_bits(super::PRESCALED_ACT_BOUND.to_bits() - 1);
    let tame = |a: &BlockQ8| BlockQ8 {
        qs: a.qs,
        d: match (
            a.d.abs() < super::PRESCALED_ACT_BOUND,
            a.d.is_sign_negative(),
        ) {
            (true, _) => a.d,
            (false, false) => below,
            (false, true) => -below,
        },
    };
    let tame_acts: Vec<BlockQ8> = drawn_acts.iter().map(tame).collect();
    let first_pass = super::MATMUL_GROUP * super::MATMUL_PASS * blocks;
    let first_tame_acts: Vec<BlockQ8> = drawn_acts
        .iter()
        .enumerate()
        .map(|(i, a)| if i < first_pass { tame(a) } else { *a })
        .collect();
    let whole = if blocks == 0 { 0 } else { n };
    type Kernel = fn(BatchedProduct) -> usize;
    let agrees = |bytes: &[u8],
                  bb: usize,
                  finite: bool,
                  acts: &[BlockQ8],
                  kernel: Kernel,
                  dot: fn(&[u8], &[BlockQ8]) -> f32| {
        let sentinel = f32::from_bits(0x7fc0_0bad);
        // Room for a whole group of tokens more than `n`: the padded lanes of a last partial
        // group must not be written.
        let len = (n + super::MATMUL_GROUP) * stride;
        let mut out = alloc::vec![sentinel; len];
        let done = kernel(BatchedProduct {
            out: &mut out,
            out_stride: stride,
            bytes,
            acts,
            nb: blocks,
            n,
            finite,
            interleaved: false,
        });
        done == whole
            && (0..len).all(|i| {
                let (t, r) = (i / stride, i % stride);
                if t < done && r < rows {
                    let row = &bytes[r * blocks * bb..(r + 1) * blocks * bb];
                    same(out[i], dot(row, &acts[t * blocks..(t + 1) * blocks]))
                } else {
                    out[i].to_bits() == sentinel.to_bits()
                }
            })
    };
    let check = |bb: usize, rng: &mut Rng, kernel: Kernel, dot: fn(&[u8], &[BlockQ8]) -> f32| {
        let mut bytes: Vec<u8> = (0..rows).flat_map(|_| rng.row(blocks, bb, 0)).collect();
        let both = |bytes: &[u8], finite: bool| {
            [&drawn_acts, &tame_acts, &first_tame_acts]
                .into_iter()
                .all(|acts| agrees(bytes, bb, finite, acts, kernel, dot))
        };
        let drawn = both(&bytes, scales_all_finite(&bytes, bb));
        for b in bytes.chunks_exact_mut(bb) {
            if b[1] & 0x7c == 0x7c {
                b[0] = 0xff;
                b[1] = (b[1] & 0x80) | 0x7b;
            }
        }
        drawn && scales_all_finite(&bytes, bb) && both(&bytes, true)
    };
    check(Q8_0_BLOCK_BYTES, rng, matmul_q8_0, dot_q8_0_row)
        && check(
            Q8_0_BLOCK_BYTES,
            rng,
            |p| matmul_interleaved(matmul_q8_0, Q8_0_BLOCK_BYTES, p),
            dot_q8_0_row,
        )
        && check(Q4_0_BLOCK_BYTES, rng, matmul_q4_0, dot_q4_0_row)
        && check(
            Q4_0_BLOCK_BYTES,
            rng,
            |p| matmul_interleaved(matmul_q4_0, Q4_0_BLOCK_BYTES, p),
            dot_q4_0_row,
        )
}
