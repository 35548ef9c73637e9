//! Batched prefill (spec/determinism.md, Prefill): the scratch for up to
//! [`limits::PREFILL_BATCH`] prompt tokens and the matrix product that runs all of them through
//! one weight matrix, reading each row once.
//!
//! Every output is the dot product of one weight row with one token's activation, computed by
//! the same kernel and in the same order as [`crate::model::kernels::matvec`], so a batch gives
//! the bits of running its tokens one at a time.

use crate::error::{Error, ErrorCode, Result};
use crate::format::dtype::QK;
use crate::format::{Config, DType};
use crate::limits;
use crate::model::kernels::{dot_f32, dot_f32_row, dot_q4_0_row, dot_q8_0_row, MatRef};
use crate::model::quant::{dequantize, quantize_act_q8_0, BlockQ8};
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
    /// Buffers for a model of `config` and a KV cache of `context` positions.
    pub fn new(c: &Config, context: usize) -> Result<Batch> {
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
            kernel: MatmulScratch::new(capacity, xb_width.max(ffn))?,
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

/// Room for the batched product: each token's quantized activation and one widened f16 row.
pub struct MatmulScratch {
    capacity: usize,
    max_cols: usize,
    /// `[token][max_cols / 32]` q8_0 blocks (q8_0/q4_0 weights).
    act: Vec<BlockQ8>,
    /// One f16 row widened to f32 (f16 weights).
    row: Vec<f32>,
}

impl MatmulScratch {
    /// Room for `capacity` tokens of activations up to `max_cols` long.
    pub fn new(capacity: usize, max_cols: usize) -> Result<MatmulScratch> {
        let max_cols = max_cols.div_ceil(QK) * QK;
        Ok(MatmulScratch {
            capacity,
            max_cols,
            act: filled(size(&[capacity, max_cols / QK])?, BlockQ8::ZERO)?,
            row: filled(max_cols, 0.0)?,
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.row.len() * 4 + self.act.len() * core::mem::size_of::<BlockQ8>()
    }

    /// `out[b][r] = w_r · x[b]` for `n` tokens (`out` rows of `out_stride` floats, `x` rows of
    /// `x_stride` floats of which the first `w.cols` are used): the kernel of `w`'s dtype for
    /// each (row, token), rows outermost so each weight row is read once for all tokens. For
    /// q8_0/q4_0 each token's activation is quantized once, as [`crate::model::kernels::matvec`]
    /// does; an f16 row is widened once (exactly) and dotted in the f32 order, which is the f16
    /// order (spec/determinism.md, f16 dot product).
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
        // check() passed: cols is a whole number of blocks and bytes holds exactly rows rows.
        let rb = w.cols / w.dtype.block_elems() * w.dtype.block_bytes();
        let rows = w.bytes.chunks_exact(rb.max(1)).take(w.rows);
        let token_x = |b: usize| &x[b * x_stride..b * x_stride + w.cols];
        match w.dtype {
            DType::F32 => {
                for (r, row) in rows.enumerate() {
                    for b in 0..n {
                        out[b * out_stride + r] = dot_f32_row(row, token_x(b));
                    }
                }
            }
            DType::F16 => {
                let widened = &mut self.row[..w.cols];
                for (r, row) in rows.enumerate() {
                    dequantize(DType::F16, row, widened)?;
                    for b in 0..n {
                        out[b * out_stride + r] = dot_f32(widened, token_x(b));
                    }
                }
            }
            DType::Q8_0 | DType::Q4_0 => {
                let nb = w.cols / QK;
                let act = &mut self.act[..nb * n];
                for (b, a) in act.chunks_exact_mut(nb.max(1)).enumerate() {
                    quantize_act_q8_0(token_x(b), a)?;
                }
                let dot = if w.dtype == DType::Q8_0 {
                    dot_q8_0_row
                } else {
                    dot_q4_0_row
                };
                for (r, row) in rows.enumerate() {
                    for (b, a) in act.chunks_exact(nb.max(1)).enumerate() {
                        out[b * out_stride + r] = dot(row, a);
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
