//! Batched prefill (spec/determinism.md, Prefill): the scratch for up to
//! [`limits::PREFILL_BATCH`] prompt tokens and the matrix product that runs all of them through
//! one weight matrix, reading each row once.
//!
//! Every output is the dot product of one weight row with one token's activation, computed by
//! the same kernel and in the same order as [`crate::model::kernels::matvec`], so a batch gives
//! the bits of running its tokens one at a time.

use crate::error::{Error, ErrorCode, Result};
use crate::format::dtype::{Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK};
use crate::format::{Config, DType};
use crate::limits;
use crate::model::cpu;
use crate::model::interleave;
use crate::model::kernels::{
    arrays, dot4_q8_0, dot_f32_body, dot_f32_many, dot_q8_0_row, widen_f16, MatRef, ROW_GROUP,
};
use crate::model::quant::{dequantize, quantize_act_q8_0, BlockQ8};
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use crate::model::simd128;
use alloc::vec::Vec;

/// Allocates `n` copies of `fill`, reporting failure as `OutOfMemory` instead of aborting.
fn filled<T: Clone>(n: usize, fill: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::new(
            ErrorCode::OutOfMemory,
            alloc::format!("cannot allocate a prefill batch of {n} values"),
        )
    })?;
    v.resize(n, fill);
    Ok(v)
}

fn size(parts: &[usize]) -> Result<usize> {
    parts
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| Error::new(ErrorCode::OutOfMemory, "prefill batch size overflows"))
}

/// Per-token buffers of one prefill batch, `[token][width]` row-major, allocated once.
pub struct Batch {
    /// Tokens a pass holds: `min(PREFILL_BATCH, context)`.
    pub capacity: usize,
    /// Width of an `xb` row: `max(dim, q_dim)` (RMSNorm output, then the attention output).
    pub xb_width: usize,
    pub x: Vec<f32>,
    pub xb: Vec<f32>,
    pub xb2: Vec<f32>,
    pub q: Vec<f32>,
    pub hb: Vec<f32>,
    pub hb2: Vec<f32>,
    /// cos and sin of pos × freq_j for each token's position, `[token][head_dim / 2]`.
    pub rope_cos: Vec<f32>,
    pub rope_sin: Vec<f32>,
    /// The scratch of [`MatmulScratch::matmul`].
    pub kernel: MatmulScratch,
}

impl Batch {
    /// Buffers for a model of `config` and a KV cache of `context` positions; `float_rows`:
    /// whether a layer matrix is f32 or f16 ([`MatmulScratch::new`]).
    pub fn new(c: &Config, context: usize, float_rows: bool) -> Result<Batch> {
        let capacity = limits::PREFILL_BATCH.min(context);
        let (dim, q_dim, ffn) = (c.dim as usize, c.q_dim() as usize, c.ffn_dim as usize);
        let xb_width = dim.max(q_dim);
        let half = c.head_dim as usize / 2;
        Ok(Batch {
            capacity,
            xb_width,
            x: filled(size(&[capacity, dim])?, 0.0)?,
            xb: filled(size(&[capacity, xb_width])?, 0.0)?,
            xb2: filled(size(&[capacity, dim])?, 0.0)?,
            q: filled(size(&[capacity, q_dim])?, 0.0)?,
            hb: filled(size(&[capacity, ffn])?, 0.0)?,
            hb2: filled(size(&[capacity, ffn])?, 0.0)?,
            rope_cos: filled(size(&[capacity, half])?, 0.0)?,
            rope_sin: filled(size(&[capacity, half])?, 0.0)?,
            kernel: MatmulScratch::new(capacity, xb_width.max(ffn), float_rows)?,
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let floats = self.x.len()
            + self.xb.len()
            + self.xb2.len()
            + self.q.len()
            + self.hb.len()
            + self.hb2.len()
            + self.rope_cos.len()
            + self.rope_sin.len();
        floats * 4 + self.kernel.bytes()
    }
}

/// Room for the batched product: each token's quantized activation and one widened row.
pub struct MatmulScratch {
    capacity: usize,
    max_cols: usize,
    /// `[token][max_cols / 32]` q8_0 blocks (q8_0/q4_0 weights).
    act: Vec<BlockQ8>,
    /// [`F32_ROWS`] f32 or f16 rows as f32 (f32 and f16 weights; one row for a model without).
    row: Vec<f32>,
    /// One q4_0 row widened to q8_0 blocks (q4_0 weights).
    row_q8: Vec<u8>,
    /// Per block, the activation scales, code biases and code words of one pass of
    /// [`GROUP_TOKENS`] tokens (`[block][token]`, `[block][group][word][token]`), gathered by
    /// the hand-written prefill kernels.
    group_dx: Vec<f32>,
    group_bias: Vec<i32>,
    group_codes: Vec<[i32; 8]>,
}

/// Tokens whose per-block activation data the prefill kernels gather together: the AVX2
/// kernels' pass of two groups of 8 on x86-64; nothing elsewhere (no other kernel gathers, and
/// wasm memory is budgeted to the page).
const GROUP_TOKENS: usize = if cfg!(target_arch = "x86_64") { 16 } else { 0 };

/// The most vectors of 32-bit code words a prefill kernel gathers per block (q8_0's 16 pairs of
/// i16 codes for one group of eight tokens; q4_0's 8 words of four codes for two groups), when
/// [`GROUP_TOKENS`] is not 0.
const GROUP_WORDS: usize = if GROUP_TOKENS == 0 { 0 } else { QK / 2 };

/// A group of tokens' activation data gathered by a hand-written prefill kernel: per block, the
/// scales and biases (`[block][token]`) and code words (`[block][word][token]`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only the AVX2 kernels gather
pub(crate) struct TokenLanes<'a> {
    pub dx: &'a mut [f32],
    pub bias: &'a mut [i32],
    pub codes: &'a mut [[i32; 8]],
}

impl MatmulScratch {
    /// Room for `capacity` tokens of activations up to `max_cols` long, and for [`F32_ROWS`]
    /// f32 rows where `float_rows` says the model has f32 or f16 matrices (one otherwise: a
    /// q8_0/q4_0 model reads none, and the simd128 tiles run only when the rows fit).
    pub fn new(capacity: usize, max_cols: usize, float_rows: bool) -> Result<MatmulScratch> {
        let max_cols = max_cols.div_ceil(QK) * QK;
        Ok(MatmulScratch {
            capacity,
            max_cols,
            act: filled(size(&[capacity, max_cols / QK])?, BlockQ8::ZERO)?,
            row: filled(
                size(&[if float_rows { F32_ROWS } else { 1 }, max_cols])?,
                0.0,
            )?,
            row_q8: filled(size(&[max_cols / QK, Q8_0_BLOCK_BYTES])?, 0u8)?,
            group_dx: filled(size(&[max_cols / QK, GROUP_TOKENS])?, 0.0)?,
            group_bias: filled(size(&[max_cols / QK, GROUP_TOKENS])?, 0)?,
            group_codes: filled(size(&[max_cols / QK, GROUP_WORDS])?, [0; 8])?,
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.row.len() * 4
            + self.row_q8.len()
            + self.act.len() * core::mem::size_of::<BlockQ8>()
            + self.group_dx.len() * 4
            + self.group_bias.len() * 4
            + self.group_codes.len() * 32
    }

    /// `out[b][r] = w_r · x[b]` for `n` tokens (`out` rows of `out_stride` floats, `x` rows of
    /// `x_stride` floats of which the first `w.cols` are used): the kernel of `w`'s dtype for
    /// each (row, token), rows outermost so each weight row is read once for all tokens. For
    /// q8_0/q4_0 each token's activation is quantized once, as [`crate::model::kernels::matvec`]
    /// does. A row is widened once where that gives the same bits (spec/determinism.md,
    /// Prefill): an f16 row to f32 and dotted in the f32 order, which is the f16 order; a q4_0
    /// row to q8_0 blocks of the same scales and codes, dotted in the q8_0 order, which is the
    /// q4_0 order.
    ///
    /// Errors: `w` fails [`MatRef::check`]; a stride below the matrix's width or a buffer too
    /// short for `n` rows (`ShapeMismatch`); `n` or `w.cols` beyond this scratch
    /// (`InvalidLength`).
    pub fn matmul(
        &mut self,
        out: &mut [f32],
        out_stride: usize,
        w: &MatRef,
        x: &[f32],
        x_stride: usize,
        n: usize,
    ) -> Result<()> {
        self.matmuls([(out, out_stride, w)], x, x_stride, n)
    }

    /// Several products of the same tokens' inputs: `(out_i, out_stride_i, w_i)` gets
    /// `w_i · x[b]` for every token b, each exactly as [`MatmulScratch::matmul`] computes it,
    /// except that the tokens' activations are quantized once for all the q8_0/q4_0 matrices of
    /// the same width (quantization is per token, so they are the activations `matmul` makes).
    /// Every product is checked before any is computed.
    ///
    /// Errors: those of [`MatmulScratch::matmul`], for the first product that has one.
    pub fn matmuls<const N: usize>(
        &mut self,
        products: [(&mut [f32], usize, &MatRef); N],
        x: &[f32],
        x_stride: usize,
        n: usize,
    ) -> Result<()> {
        let tokens = Tokens { x, x_stride, n };
        for (out, out_stride, w) in &products {
            self.check(out, *out_stride, w, &tokens)?;
        }
        // The width of the columns whose activations `act` holds, if any.
        let mut quantized = None;
        for (out, out_stride, w) in products {
            self.product(out, out_stride, w, &tokens, &mut quantized)?;
        }
        Ok(())
    }

    /// The errors of [`MatmulScratch::matmul`] for one product.
    fn check(&self, out: &[f32], out_stride: usize, w: &MatRef, tokens: &Tokens) -> Result<()> {
        let &Tokens { x, x_stride, n } = tokens;
        w.check()?;
        let fits = |buf: usize, stride: usize, width: usize| {
            stride >= width
                && (n == 0
                    || (n - 1)
                        .checked_mul(stride)
                        .and_then(|s| s.checked_add(width))
                        .is_some_and(|end| end <= buf))
        };
        if !fits(out.len(), out_stride, w.rows) || !fits(x.len(), x_stride, w.cols) {
            return Err(Error::new(
                ErrorCode::ShapeMismatch,
                alloc::format!(
                    "a batched product of a [{}, {}] matrix with {n} tokens does not fit its buffers",
                    w.rows,
                    w.cols
                ),
            ));
        }
        if n > self.capacity || w.cols > self.max_cols {
            return Err(Error::new(
                ErrorCode::InvalidLength,
                alloc::format!(
                    "the batch scratch holds {} tokens of {} values, not {n} of {}",
                    self.capacity,
                    self.max_cols,
                    w.cols
                ),
            ));
        }
        Ok(())
    }

    /// One checked product ([`MatmulScratch::check`]). `quantized` is the width of the columns
    /// whose activations of the `n` tokens `act` holds (None: none yet); a q8_0/q4_0 product of
    /// another width quantizes them first and sets it.
    fn product(
        &mut self,
        out: &mut [f32],
        out_stride: usize,
        w: &MatRef,
        tokens: &Tokens,
        quantized: &mut Option<usize>,
    ) -> Result<()> {
        let &Tokens { x, x_stride, n } = tokens;
        // check() passed: cols is a whole number of blocks and bytes holds exactly rows rows.
        let rb = w.cols / w.dtype.block_elems() * w.dtype.block_bytes();
        let rows = w.bytes.chunks_exact(rb.max(1)).take(w.rows);
        let token_x = |b: usize| &x[b * x_stride..b * x_stride + w.cols];
        match w.dtype {
            DType::F32 | DType::F16 => {
                // Each row read once into f32 (f16 widened exactly by `widen_f16`, told whether
                // the matrix is known to hold no infinity or NaN: the f16 order is the f32 order
                // on the widened row), then dotted with the tokens. In the simd128 module rows
                // go F32_TILE_ROWS at a time against F32_TILE_TOKENS tokens per kernel call; the
                // rest (and elsewhere every row) dotted with TOKEN_DOTS tokens per pass over the
                // row, the last ones one at a time. Every output is its own f32 order.
                let cols = w.cols;
                let (dtype, finite) = (w.dtype, w.f16_finite);
                let widen = |row: &[u8], into: &mut [f32]| -> Result<()> {
                    if dtype == DType::F16 {
                        widen_f16(row, into, finite);
                        Ok(())
                    } else {
                        dequantize(dtype, row, into)
                    }
                };
                let row_f32 = &mut self.row[..];
                cpu::run(
                    #[inline(always)]
                    || {
                        // Rows done by the simd128 tiles (none elsewhere).
                        #[cfg_attr(
                            not(all(target_arch = "wasm32", target_feature = "simd128")),
                            allow(unused_mut)
                        )]
                        let mut done = 0;
                        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                        {
                            use simd128::{F32_TILE_ROWS as R, F32_TILE_TOKENS as T};
                            let fits = cols > 0 && row_f32.len() >= R * cols;
                            while fits && done + R <= w.rows {
                                for (i, into) in row_f32.chunks_exact_mut(cols).take(R).enumerate()
                                {
                                    let r = done + i;
                                    widen(&w.bytes[r * rb..(r + 1) * rb], into)?;
                                }
                                let tile: [&[f32]; R] =
                                    core::array::from_fn(|i| &row_f32[i * cols..(i + 1) * cols]);
                                // Groups of T tokens; a last group of fewer repeats its last
                                // token (each output is its own order; repeats are not written).
                                for b0 in (0..n).step_by(T) {
                                    let dots = simd128::dot_f32_rows_tokens(
                                        tile,
                                        core::array::from_fn(|t| token_x((b0 + t).min(n - 1))),
                                    );
                                    for (i, row_dots) in dots.into_iter().enumerate() {
                                        for (t, d) in row_dots.into_iter().enumerate().take(n - b0)
                                        {
                                            out[(b0 + t) * out_stride + done + i] = d;
                                        }
                                    }
                                }
                                done += R;
                            }
                        }
                        let row_f32 = &mut row_f32[..cols];
                        for (r, row) in rows.enumerate().skip(done) {
                            widen(row, row_f32)?;
                            let row_f32 = &*row_f32;
                            let groups = n / TOKEN_DOTS * TOKEN_DOTS;
                            for b0 in (0..groups).step_by(TOKEN_DOTS) {
                                let dots = dot_f32_many::<TOKEN_DOTS>(
                                    row_f32,
                                    core::array::from_fn(|i| token_x(b0 + i)),
                                );
                                for (i, d) in dots.into_iter().enumerate() {
                                    out[(b0 + i) * out_stride + r] = d;
                                }
                            }
                            for b in groups..n {
                                out[b * out_stride + r] = dot_f32_body(row_f32, token_x(b));
                            }
                        }
                        Ok(())
                    },
                )?;
            }
            DType::Q8_0 | DType::Q4_0 => {
                let nb = w.cols / QK;
                let act = &mut self.act[..nb * n];
                if *quantized != Some(w.cols) {
                    for (b, a) in act.chunks_exact_mut(nb.max(1)).enumerate() {
                        quantize_act_q8_0(token_x(b), a)?;
                    }
                    *quantized = Some(w.cols);
                }
                // The tokens in a hand-written whole-product kernel where there is one (all of
                // them on AVX2 and simd128), the rest below.
                let lanes = TokenLanes {
                    dx: &mut self.group_dx,
                    bias: &mut self.group_bias,
                    codes: &mut self.group_codes,
                };
                let product = BatchedProduct {
                    out,
                    out_stride,
                    bytes: w.bytes,
                    acts: act,
                    nb,
                    n,
                    finite: w.f16_finite,
                    interleaved: w.interleaved,
                };
                let done = matmul_groups(w.dtype, product, lanes);
                if done == n {
                    return Ok(());
                }
                let widened = &mut self.row_q8[..nb * Q8_0_BLOCK_BYTES];
                // Reached only when no whole-product kernel took the tokens (none on the
                // portable levels; on AVX2 and simd128, operands the kernels refuse).
                for (r, row) in rows.enumerate() {
                    let row = q8_0_row(w, r, row, widened);
                    // Tokens in groups of ROW_GROUP through the four-chain kernel (the row
                    // four times), the rest one at a time; every chain is one token's order.
                    let token_act = |b: usize| &act[b * nb..(b + 1) * nb];
                    let groups = done + (n - done) / ROW_GROUP * ROW_GROUP;
                    for b0 in (done..groups).step_by(ROW_GROUP) {
                        let dots = dot4_q8_0(
                            [row; ROW_GROUP],
                            core::array::from_fn(|i| token_act(b0 + i)),
                        );
                        for (i, d) in dots.into_iter().enumerate() {
                            out[(b0 + i) * out_stride + r] = d;
                        }
                    }
                    for b in groups..n {
                        out[b * out_stride + r] = dot_q8_0_row(row, token_act(b));
                    }
                }
            }
        }
        if rb == 0 {
            // Zero columns: every dot product is the empty sum.
            for b in 0..n {
                out[b * out_stride..b * out_stride + w.rows].fill(0.0);
            }
        }
        Ok(())
    }
}

/// Rows batched prefill holds as f32 at a time: the simd128 kernel's tile of rows
/// (`simd128::dot_f32_rows_tokens`), one elsewhere.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
const F32_ROWS: usize = simd128::F32_TILE_ROWS;
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
const F32_ROWS: usize = 1;

/// Tokens per pass over an f32 (or widened f16) row in batched prefill ([`dot_f32_many`]).
/// Measured on the stories15M shape's f16 prefill (tok/s): natively 1 → 1046, 2 → 3130,
/// 3 → 2930, 4 → 2680; under wasmtime 1 → 384, 2 → 1030, 3 → 712, 4 → 830.
const TOKEN_DOTS: usize = 2;

/// The inputs of a batched product: `n` tokens' rows of `x_stride` floats in `x`.
struct Tokens<'a> {
    x: &'a [f32],
    x_stride: usize,
    n: usize,
}

/// The operands of a batched q8_0/q4_0 product as the hand-written kernels take them: `n`
/// tokens' activations of `nb` blocks each (`acts`, token-major) against every row of `bytes`
/// (`nb` blocks per row, row-major or with whole groups of four rows interleaved: `interleaved`);
/// row r with token t goes to `out[t * out_stride + r]`. `finite`: no block scale in `bytes` is
/// an infinity or a NaN (as [`MatRef::f16_finite`]; `false` is always correct).
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )),
    allow(dead_code) // no hand-written kernel reads it on this target
)]
pub(crate) struct BatchedProduct<'a> {
    pub out: &'a mut [f32],
    pub out_stride: usize,
    pub bytes: &'a [u8],
    pub acts: &'a [BlockQ8],
    pub nb: usize,
    pub n: usize,
    #[cfg_attr(
        not(all(target_arch = "wasm32", target_feature = "simd128")),
        allow(dead_code) // only the simd128 kernels read it
    )]
    pub finite: bool,
    /// The rows' whole groups of four are interleaved (as [`MatRef::interleaved`]: q8_0 or q4_0
    /// rows in the simd128 module).
    #[cfg_attr(
        not(all(target_arch = "wasm32", target_feature = "simd128")),
        allow(dead_code) // only the simd128 kernels read it
    )]
    pub interleaved: bool,
}

/// The tokens of a batched q8_0/q4_0 product that a hand-written whole-product kernel computes
/// for every row: tokens from the first (all of them on AVX2 and on simd128), each output bit
/// for bit its single-row product. Returns the number of tokens done
/// (0 where there is no such kernel).
#[inline]
fn matmul_groups(dtype: DType, p: BatchedProduct, lanes: TokenLanes) -> usize {
    #[cfg(target_arch = "x86_64")]
    return cpu::avx2_matmul(dtype, p, lanes);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return {
        let _ = lanes; // the simd128 kernels gather nothing
        match dtype {
            DType::Q8_0 => simd128::matmul_q8_0(p),
            DType::Q4_0 => simd128::matmul_q4_0(p),
            _ => 0,
        }
    };
    #[allow(unreachable_code)]
    {
        let _ = (dtype, p, lanes);
        0
    }
}

/// Row `r` of a checked q8_0/q4_0 matrix (`row`: its bytes where the file's order has them) as
/// q8_0 blocks in the file's order: the row itself, or written into `widened` (`nb` q8_0 blocks)
/// — q4_0 rewritten ([`q4_0_to_q8_0`]), interleaved rows put back in order.
fn q8_0_row<'a>(w: &MatRef, r: usize, row: &'a [u8], widened: &'a mut [u8]) -> &'a [u8] {
    let rb = row.len();
    match (w.dtype, w.interleaved) {
        (DType::Q8_0, false) => row,
        (DType::Q8_0, true) => {
            let blocks = interleave::row_blocks::<Q8_0_BLOCK_BYTES>(w.bytes, rb, r);
            for (dst, b) in widened.chunks_exact_mut(Q8_0_BLOCK_BYTES).zip(blocks) {
                dst.copy_from_slice(&b);
            }
            widened
        }
        (_, false) => {
            q4_0_to_q8_0(arrays::<u8, Q4_0_BLOCK_BYTES>(row).0.copied(), widened);
            widened
        }
        (_, true) => {
            let blocks = interleave::row_blocks::<Q4_0_BLOCK_BYTES>(w.bytes, rb, r);
            q4_0_to_q8_0(blocks, widened);
            widened
        }
    }
}

/// Rewrites q4_0 blocks as q8_0 blocks: the same f16 scale bytes, and code j as the i8
/// `(nibble j) - 8` (low nibbles are codes 0..16, high nibbles 16..32). Exact: a q8_0 dot
/// product of the result is the q4_0 dot product of the input, bit for bit.
fn q4_0_to_q8_0(q4: impl Iterator<Item = [u8; Q4_0_BLOCK_BYTES]>, q8: &mut [u8]) {
    for (src, dst) in q4.zip(q8.chunks_exact_mut(Q8_0_BLOCK_BYTES)) {
        let (scale, codes) = dst.split_at_mut(2);
        scale.copy_from_slice(&src[..2]);
        let (lo, hi) = codes.split_at_mut(QK / 2);
        for ((&byte, l), h) in src[2..].iter().zip(lo).zip(hi) {
            *l = ((byte & 0x0f) as i8 - 8) as u8;
            *h = ((byte >> 4) as i8 - 8) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::dot_q4_0_row;

    /// The AVX2 prefill kernels at the extreme codes, which quantized activations never hold
    /// (`quantize_act_q8_0` clamps to ±127) but a kernel must take: activation codes −128 and
    /// 127, q8_0 weight codes −128 and 127, q4_0 nibbles 0 and 15 (a q4_0 block of nibbles 15
    /// against codes −128 is the largest i16 sum the q4_0 kernel forms, 16 · 15 · 128), next to
    /// mixed codes, in passes of two groups, of a group and a part, and of one group. Every
    /// token is bit for bit its single-row product, and no other cell of `out` is written (not
    /// the gaps of the stride, not the rows of a pass's missing tokens).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_prefill_kernels_are_exact_at_the_extreme_codes() {
        if cpu::isa() != cpu::Isa::Avx2 {
            // No AVX2 on this CPU: the kernels do not run here (CI machines have it).
            return;
        }
        // 19 tokens: a pass of two groups, then one of three tokens; 13: a pass whose second
        // group has five; 8: one pass of one group.
        for n in [19usize, 13, 8] {
            extreme_codes(n);
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn extreme_codes(n: usize) {
        let (rows, nb) = (5usize, 3usize);
        let acts: Vec<BlockQ8> = (0..n * nb)
            .map(|k| BlockQ8 {
                qs: core::array::from_fn(|j| match k % 4 {
                    0 => i8::MIN,
                    1 => i8::MAX,
                    2 => [i8::MIN, i8::MAX][j % 2],
                    _ => (((j * 29 + k * 5) % 256) as i32 - 128) as i8,
                }),
                d: 0.0173 + k as f32,
            })
            .collect();
        for (dtype, bb) in [
            (DType::Q8_0, Q8_0_BLOCK_BYTES),
            (DType::Q4_0, Q4_0_BLOCK_BYTES),
        ] {
            let bytes: Vec<u8> = (0..rows * nb)
                .flat_map(|b| {
                    let d = 0x3555u16.to_le_bytes();
                    let codes = (0..bb - 2).map(move |j| match b % 4 {
                        0 => 0x80,
                        1 => 0x7f,
                        2 => 0xff,
                        _ => ((j * 37 + b * 11) % 256) as u8,
                    });
                    d.into_iter().chain(codes)
                })
                .collect();
            let sentinel = f32::from_bits(0x7fc0_0bad);
            let stride = rows + 1;
            let mut out = alloc::vec![sentinel; (n + 16) * stride];
            let mut dx = alloc::vec![0.0; nb * GROUP_TOKENS];
            let mut bias = alloc::vec![0; nb * GROUP_TOKENS];
            let mut codes = alloc::vec![[0; 8]; nb * GROUP_WORDS];
            let product = BatchedProduct {
                out: &mut out,
                out_stride: stride,
                bytes: &bytes,
                acts: &acts,
                nb,
                n,
                finite: false,
                interleaved: false,
            };
            let lanes = TokenLanes {
                dx: &mut dx,
                bias: &mut bias,
                codes: &mut codes,
            };
            let done = cpu::avx2_matmul(dtype, product, lanes);
            assert_eq!(done, n, "{dtype:?} {n} tokens");
            for t in 0..n + 16 {
                for r in 0..stride {
                    let got = out[t * stride + r];
                    if t < n && r < rows {
                        let row = &bytes[r * nb * bb..(r + 1) * nb * bb];
                        let act = &acts[t * nb..(t + 1) * nb];
                        let want = match dtype {
                            DType::Q8_0 => dot_q8_0_row(row, act),
                            _ => dot_q4_0_row(row, act),
                        };
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{dtype:?} {n} tokens: token {t} row {r}"
                        );
                    } else {
                        assert_eq!(
                            got.to_bits(),
                            sentinel.to_bits(),
                            "{dtype:?} {n} tokens: token {t} row {r}"
                        );
                    }
                }
            }
        }
    }

    /// Products of the same tokens' inputs in one call equal separate `matmul` calls, bit for
    /// bit, for a mix of dtypes in two orders (an f32 product first too), after another input's
    /// activations were left in the scratch; a product that fails a check fails the call before
    /// any output is written.
    #[test]
    fn products_of_the_same_inputs_equal_separate_matmuls() {
        use crate::model::quant::{f32_to_f16, quantize_q4_0, quantize_q8_0};
        let (rows, cols, n, stride) = (5usize, 64usize, 11usize, 70usize);
        let x: Vec<f32> = (0..n * stride)
            .map(|i| ((i * 37) % 101) as f32 / 7.0 - 7.0)
            .collect();
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 53) % 199) as f32 / 31.0 - 3.0)
            .collect();
        let mut q8 = alloc::vec![0u8; rows * cols / QK * Q8_0_BLOCK_BYTES];
        quantize_q8_0(&w, &mut q8).unwrap();
        let mut q4 = alloc::vec![0u8; rows * cols / QK * Q4_0_BLOCK_BYTES];
        quantize_q4_0(&w, &mut q4).unwrap();
        let f32s: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16s: Vec<u8> = w
            .iter()
            .flat_map(|&v| f32_to_f16(v).to_le_bytes())
            .collect();
        let m8 = MatRef::new(DType::Q8_0, rows, cols, &q8).unwrap();
        let m4 = MatRef::new(DType::Q4_0, rows, cols, &q4).unwrap();
        let m32 = MatRef::new(DType::F32, rows, cols, &f32s).unwrap();
        let m16 = MatRef::new(DType::F16, rows, cols, &f16s).unwrap();
        let mut scratch = MatmulScratch::new(16, cols, true).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        let other: Vec<f32> = x.iter().map(|v| -2.0 * v).collect();
        for order in [[&m8, &m32, &m4, &m16], [&m32, &m16, &m4, &m8]] {
            let want = order.map(|m| {
                let mut out = alloc::vec![0.0f32; n * rows];
                scratch.matmul(&mut out, rows, m, &x, stride, n).unwrap();
                bits(&out)
            });
            let mut clobber = alloc::vec![0.0f32; n * rows];
            scratch
                .matmul(&mut clobber, rows, &m8, &other, stride, n)
                .unwrap();
            let mut out: [Vec<f32>; 4] = core::array::from_fn(|_| alloc::vec![0.0f32; n * rows]);
            let [o0, o1, o2, o3] = &mut out;
            let [a, b, c, d] = order;
            scratch
                .matmuls(
                    [(o0, rows, a), (o1, rows, b), (o2, rows, c), (o3, rows, d)],
                    &x,
                    stride,
                    n,
                )
                .unwrap();
            assert_eq!(out.map(|o| bits(&o)), want);
        }

        let mut first = alloc::vec![7.0f32; n * rows];
        let e = scratch
            .matmuls(
                [
                    (&mut first[..], rows, &m8),
                    (&mut [0.0f32; 4][..], rows, &m4),
                ],
                &x,
                stride,
                n,
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ShapeMismatch);
        assert!(
            first.iter().all(|&v| v == 7.0),
            "nothing is computed when a product fails its checks"
        );
    }

    #[test]
    fn interleaved_rows_come_back_as_the_file_s_rows() {
        // The portable fallback's rows (q8_0_row) of a matrix and of its interleaved copy.
        for (dtype, bb) in [
            (DType::Q8_0, Q8_0_BLOCK_BYTES),
            (DType::Q4_0, Q4_0_BLOCK_BYTES),
        ] {
            for rows in [1, 4, 7, 9] {
                let nb = 3;
                let rb = nb * bb;
                let file: Vec<u8> = (0..rows * rb).map(|i| (i * 7 % 253) as u8).collect();
                let mut held = file.clone();
                assert!(interleave::interleave(
                    &mut held,
                    rb,
                    bb,
                    &mut alloc::vec![0; 4 * rb]
                ));
                let plain = MatRef::new(dtype, rows, nb * QK, &file).unwrap();
                // (check() refuses the flag natively; q8_0_row does not check.)
                let interleaved = MatRef {
                    bytes: &held,
                    interleaved: true,
                    ..plain
                };
                for r in 0..rows {
                    let row = &file[r * rb..(r + 1) * rb];
                    let (mut a, mut b) = (alloc::vec![0; nb * 34], alloc::vec![0; nb * 34]);
                    let want = q8_0_row(&plain, r, row, &mut a).to_vec();
                    let at = &held[r * rb..(r + 1) * rb];
                    assert_eq!(
                        q8_0_row(&interleaved, r, at, &mut b),
                        &want[..],
                        "{dtype:?} {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_q4_0_row_widened_to_q8_0_gives_the_same_bits() {
        // 32 spread nibble pairs in two blocks, odd scales, and activations of mixed sign.
        let mut q4 = alloc::vec![0u8; 2 * Q4_0_BLOCK_BYTES];
        q4[..2].copy_from_slice(&0x3555u16.to_le_bytes());
        q4[18..20].copy_from_slice(&0xb9c7u16.to_le_bytes());
        let (a, b) = q4.split_at_mut(Q4_0_BLOCK_BYTES);
        for (i, v) in a[2..].iter_mut().chain(b[2..].iter_mut()).enumerate() {
            *v = (i * 37 + 11) as u8;
        }
        let act: Vec<BlockQ8> = (0..2)
            .map(|k| BlockQ8 {
                qs: core::array::from_fn(|j| ((j as i32 * 29 + k * 7) % 255 - 127) as i8),
                d: 0.0173 + k as f32,
            })
            .collect();
        let mut q8 = alloc::vec![0u8; 2 * Q8_0_BLOCK_BYTES];
        q4_0_to_q8_0(arrays::<u8, Q4_0_BLOCK_BYTES>(&q4).0.copied(), &mut q8);
        assert_eq!(
            dot_q8_0_row(&q8, &act).to_bits(),
            dot_q4_0_row(&q4, &act).to_bits()
        );
        assert_eq!(q8[2] as i8, (q4[2] & 15) as i8 - 8);
        assert_eq!(q8[2 + 16] as i8, (q4[2] >> 4) as i8 - 8);
    }
}
