//! The forward pass of the Llama-family decoder (spec/determinism.md, Forward pass), top to bottom
//! like llama2.c's `forward`: embedding row → per layer (RMSNorm, Q/K/V, RoPE, causal grouped-query
//! attention, output projection, residual, RMSNorm, SwiGLU FFN, residual) → final RMSNorm →
//! classifier. All buffers live in [`State`], allocated once; a step allocates nothing.

use crate::error::{Error, ErrorCode, Result};
use crate::model::kernels::{self, dot_f32, matvec, ActScratch};
use crate::model::math::{cos_f32, pow_f32, silu_f32, sin_f32, softmax_in_place, sqrt_f32};
use crate::model::weights::{Model, TensorLoc};
use alloc::vec::Vec;

/// Scratch and KV cache for one sequence, sized once for a model and a context limit.
pub struct State {
    /// Positions the KV cache holds (≤ the model's max_context).
    pub context: usize,
    x: Vec<f32>,
    xb: Vec<f32>,
    xb2: Vec<f32>,
    q: Vec<f32>,
    hb: Vec<f32>,
    hb2: Vec<f32>,
    att: Vec<f32>,
    logits: Vec<f32>,
    /// [layer][position][kv_dim]
    key_cache: Vec<f32>,
    value_cache: Vec<f32>,
    /// cos and sin of pos × freq_j for the current position, j < head_dim / 2.
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
    /// freq_j = 1 / theta^(2j / head_dim), computed once.
    rope_freq: Vec<f32>,
    act: ActScratch,
}

/// Allocates `n` zeros, reporting failure as `OutOfMemory` instead of aborting.
fn zeros(n: usize) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::new(
            ErrorCode::OutOfMemory,
            alloc::format!("cannot allocate {n} floats"),
        )
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

impl State {
    /// Buffers for `model` with a KV cache of `context` positions: 0 means the model's
    /// max_context; more than max_context is `ContextExceeded`.
    pub fn new(model: &Model, context: u32) -> Result<State> {
        let c = &model.config;
        let context = if context == 0 { c.max_context } else { context };
        if context > c.max_context {
            return Err(Error::new(
                ErrorCode::ContextExceeded,
                alloc::format!(
                    "a context of {context} positions exceeds the model's {}",
                    c.max_context
                ),
            ));
        }
        let (dim, q_dim, kv_dim, ffn) = (
            c.dim as usize,
            c.q_dim() as usize,
            c.kv_dim() as usize,
            c.ffn_dim as usize,
        );
        let context = context as usize;
        let cache = (c.n_layers as usize)
            .checked_mul(context)
            .and_then(|n| n.checked_mul(kv_dim))
            .ok_or_else(|| Error::new(ErrorCode::OutOfMemory, "KV cache size overflows"))?;
        let half = c.head_dim as usize / 2;
        let mut rope_freq = zeros(half)?;
        for (j, f) in rope_freq.iter_mut().enumerate() {
            // llama2.c: 1.0f / powf(theta, head_dim_index / (float)head_size), index = 2j.
            *f = 1.0 / pow_f32(c.rope_theta, (2 * j) as f32 / c.head_dim as f32);
        }
        Ok(State {
            context,
            x: zeros(dim)?,
            xb: zeros(dim.max(q_dim))?,
            xb2: zeros(dim)?,
            q: zeros(q_dim)?,
            hb: zeros(ffn)?,
            hb2: zeros(ffn)?,
            att: zeros(context)?,
            logits: zeros(c.vocab_size as usize)?,
            key_cache: zeros(cache)?,
            value_cache: zeros(cache)?,
            rope_cos: zeros(half)?,
            rope_sin: zeros(half)?,
            rope_freq,
            act: ActScratch::new(dim.max(q_dim).max(ffn))?,
        })
    }

    /// Bytes of all buffers (scratch and KV cache).
    pub fn bytes(&self) -> usize {
        let floats = self.x.len()
            + self.xb.len()
            + self.xb2.len()
            + self.q.len()
            + self.hb.len()
            + self.hb2.len()
            + self.att.len()
            + self.logits.len()
            + self.key_cache.len()
            + self.value_cache.len()
            + 3 * self.rope_freq.len();
        floats * 4 + self.act.bytes()
    }

    /// The logits of the last forward step.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// The logits, writable (the sampler works in place).
    pub fn logits_mut(&mut self) -> &mut [f32] {
        &mut self.logits
    }
}

/// `out = rmsnorm(x) * w` as llama2.c: ss = Σx² (lane order), ss = ss / n + eps,
/// inv = 1 / sqrt(ss), out_j = w_j × (inv × x_j).
fn rmsnorm(out: &mut [f32], x: &[f32], w: &[u8], eps: f32) {
    let ss = dot_f32(x, x) / x.len() as f32 + eps;
    let inv = 1.0 / sqrt_f32(ss);
    for ((o, &xi), wb) in out.iter_mut().zip(x).zip(w.chunks_exact(4)) {
        let wi = f32::from_le_bytes([wb[0], wb[1], wb[2], wb[3]]);
        *o = wi * (inv * xi);
    }
}

/// Rotates adjacent pairs (2j, 2j+1) of every head in `v` by the current position's angles.
fn rope(v: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    for head in v.chunks_exact_mut(head_dim) {
        for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
            let (v0, v1) = (pair[0], pair[1]);
            pair[0] = v0 * c - v1 * s;
            pair[1] = v0 * s + v1 * c;
        }
    }
}

fn norm_bytes<'m>(model: &'m Model, t: &TensorLoc) -> &'m [u8] {
    model.payload(t)
}

/// Runs token `token` at position `pos` and leaves the logits in `state` (returned).
///
/// Errors: `InvalidTokenId` for a token outside the vocabulary; `ContextExceeded` when `pos` is
/// not below the state's context.
pub fn forward<'s>(model: &Model, s: &'s mut State, token: u32, pos: usize) -> Result<&'s [f32]> {
    let c = &model.config;
    if token >= c.vocab_size {
        return Err(Error::new(
            ErrorCode::InvalidTokenId,
            alloc::format!(
                "token {token} is outside the vocabulary of {}",
                c.vocab_size
            ),
        ));
    }
    if pos >= s.context {
        return Err(Error::new(
            ErrorCode::ContextExceeded,
            alloc::format!("position {pos} is beyond the context of {}", s.context),
        ));
    }
    let (dim, q_dim, kv_dim, head_dim) = (
        c.dim as usize,
        c.q_dim() as usize,
        c.kv_dim() as usize,
        c.head_dim as usize,
    );
    let group = (c.n_heads / c.n_kv_heads) as usize;
    let eps = c.rms_eps;

    kernels::row_to_f32(&model.mat(&model.embedding), token as usize, &mut s.x)?;

    // The angles of this position, shared by every head and layer.
    for ((cs, sn), &f) in s
        .rope_cos
        .iter_mut()
        .zip(s.rope_sin.iter_mut())
        .zip(&s.rope_freq)
    {
        let angle = pos as f32 * f;
        *cs = cos_f32(angle);
        *sn = sin_f32(angle);
    }
    let scale = sqrt_f32(head_dim as f32);

    for (l, lw) in model.layers.iter().enumerate() {
        // Attention.
        rmsnorm(
            &mut s.xb[..dim],
            &s.x,
            norm_bytes(model, &lw.attn_norm),
            eps,
        );
        let slot = (l * s.context + pos) * kv_dim;
        matvec(&mut s.q, &model.mat(&lw.wq), &s.xb[..dim], &mut s.act)?;
        matvec(
            &mut s.key_cache[slot..slot + kv_dim],
            &model.mat(&lw.wk),
            &s.xb[..dim],
            &mut s.act,
        )?;
        matvec(
            &mut s.value_cache[slot..slot + kv_dim],
            &model.mat(&lw.wv),
            &s.xb[..dim],
            &mut s.act,
        )?;
        rope(&mut s.q, head_dim, &s.rope_cos, &s.rope_sin);
        rope(
            &mut s.key_cache[slot..slot + kv_dim],
            head_dim,
            &s.rope_cos,
            &s.rope_sin,
        );

        let layer_base = l * s.context * kv_dim;
        for h in 0..c.n_heads as usize {
            let q = &s.q[h * head_dim..(h + 1) * head_dim];
            let kv_off = (h / group) * head_dim;
            let att = &mut s.att[..=pos];
            for (t, a) in att.iter_mut().enumerate() {
                let k = layer_base + t * kv_dim + kv_off;
                *a = dot_f32(q, &s.key_cache[k..k + head_dim]) / scale;
            }
            softmax_in_place(att);
            let out = &mut s.xb[h * head_dim..(h + 1) * head_dim];
            out.fill(0.0);
            for (t, &a) in att.iter().enumerate() {
                let v = layer_base + t * kv_dim + kv_off;
                for (o, &vi) in out.iter_mut().zip(&s.value_cache[v..v + head_dim]) {
                    *o += a * vi;
                }
            }
        }
        matvec(&mut s.xb2, &model.mat(&lw.wo), &s.xb[..q_dim], &mut s.act)?;
        for (x, &d) in s.x.iter_mut().zip(&s.xb2) {
            *x += d;
        }

        // Feed-forward (SwiGLU).
        rmsnorm(&mut s.xb[..dim], &s.x, norm_bytes(model, &lw.ffn_norm), eps);
        matvec(&mut s.hb, &model.mat(&lw.w1), &s.xb[..dim], &mut s.act)?;
        matvec(&mut s.hb2, &model.mat(&lw.w3), &s.xb[..dim], &mut s.act)?;
        for (g, &u) in s.hb.iter_mut().zip(&s.hb2) {
            *g = silu_f32(*g) * u;
        }
        matvec(&mut s.xb2, &model.mat(&lw.w2), &s.hb, &mut s.act)?;
        for (x, &d) in s.x.iter_mut().zip(&s.xb2) {
            *x += d;
        }
    }

    rmsnorm(
        &mut s.xb[..dim],
        &s.x,
        norm_bytes(model, &model.final_norm),
        eps,
    );
    matvec(
        &mut s.logits,
        &model.mat(&model.classifier),
        &s.xb[..dim],
        &mut s.act,
    )?;
    Ok(&s.logits)
}
