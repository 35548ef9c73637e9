//! The forward pass of the Llama-family decoder (spec/determinism.md, Forward pass), top to bottom
//! like llama2.c's `forward`: embedding row → per layer (RMSNorm, Q/K/V, RoPE, causal grouped-query
//! attention, output projection, residual, RMSNorm, SwiGLU FFN, residual) → final RMSNorm →
//! classifier. All buffers live in [`State`], allocated once; a step allocates nothing.
//!
//! [`prefill`] runs several prompt tokens per pass through each weight matrix
//! ([`crate::model::batch`]) and gives the bits of running them one at a time with [`forward`].

use crate::error::{Error, ErrorCode, Result};
use crate::model::batch::Batch;
use crate::model::cpu;
use crate::model::kernels::{self, dot_f32, matvec, matvecs, ActScratch};
use crate::model::math::{self, cos_f32, pow_f32, sin_f32, sqrt_f32, swiglu_in_place};
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
    /// Buffers of a batched prefill pass.
    batch: Batch,
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
        let mut state = State {
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
            batch: Batch::new(c, context, model.has_float_layer_matrix())?,
        };
        // Only for a model that can use it, and after every other buffer: allocated before the
        // batch's, it moved them, and the browsers' f16 prefill fell 6-9 % (measured; why their
        // addresses matter there is not known); allocated first, the other buffers' order
        // changed, and under a tight wasm memory cap a model no longer generated after a refused
        // long prompt (tests/faults.rs).
        if model.has_finite_f16_matrix() {
            state.act.reserve_scaled_input()?;
        }
        Ok(state)
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
        floats * 4 + self.act.bytes() + self.batch.bytes()
    }

    /// The KV cache: keys and values, each `[layer][position][kv_dim]`.
    pub fn kv_cache(&self) -> (&[f32], &[f32]) {
        (&self.key_cache, &self.value_cache)
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

/// The RoPE angles of position `pos`: `cos[j], sin[j]` of `pos × freq[j]`.
fn rope_angles(cos: &mut [f32], sin: &mut [f32], freq: &[f32], pos: usize) {
    for ((cs, sn), &f) in cos.iter_mut().zip(sin.iter_mut()).zip(freq) {
        let angle = pos as f32 * f;
        *cs = cos_f32(angle);
        *sn = sin_f32(angle);
    }
}

/// The geometry attention needs, from the config.
#[derive(Clone, Copy)]
struct Heads {
    n_heads: usize,
    head_dim: usize,
    kv_dim: usize,
    /// Query heads per kv head.
    group: usize,
    /// sqrt(head_dim).
    scale: f32,
}

impl Heads {
    fn of(model: &Model) -> Heads {
        let c = &model.config;
        Heads {
            n_heads: c.n_heads as usize,
            head_dim: c.head_dim as usize,
            kv_dim: c.kv_dim() as usize,
            group: (c.n_heads / c.n_kv_heads) as usize,
            scale: sqrt_f32(c.head_dim as f32),
        }
    }

    /// Causal attention of the query `q` (every head) at position `pos` over one layer's
    /// cached keys and values (positions 0..=pos, `kv_dim` floats each), into `out` (q_dim).
    fn attend(
        &self,
        q: &[f32],
        keys: &[f32],
        values: &[f32],
        pos: usize,
        att: &mut [f32],
        out: &mut [f32],
    ) {
        // One dispatch for the whole call: the dot products, the softmax and the weighted sum
        // are inlined into the instance of the level (the same source, the same bits).
        cpu::run(
            #[inline(always)]
            || self.attend_body(q, keys, values, pos, att, out),
        )
    }

    /// [`Heads::attend`] in the current instance.
    #[inline(always)]
    fn attend_body(
        &self,
        q: &[f32],
        keys: &[f32],
        values: &[f32],
        pos: usize,
        att: &mut [f32],
        out: &mut [f32],
    ) {
        let (hd, kv_dim) = (self.head_dim, self.kv_dim);
        for h in 0..self.n_heads {
            let q = &q[h * hd..(h + 1) * hd];
            let kv_off = (h / self.group) * hd;
            let att = &mut att[..=pos];
            for (t, a) in att.iter_mut().enumerate() {
                let k = t * kv_dim + kv_off;
                *a = kernels::dot_f32_body(q, &keys[k..k + hd]) / self.scale;
            }
            math::softmax_body(att);
            let out = &mut out[h * hd..(h + 1) * hd];
            out.fill(0.0);
            let value = |t: usize| &values[t * kv_dim + kv_off..t * kv_dim + kv_off + hd];
            // Four positions per pass over `out`: each element still adds its terms one at a
            // time in position order (the same bits), with a quarter of the loads and stores.
            let mut fours = att.chunks_exact(4);
            for (c, a) in (&mut fours).enumerate() {
                let [v0, v1, v2, v3] = core::array::from_fn(|j| value(4 * c + j));
                let terms = v0.iter().zip(v1).zip(v2).zip(v3);
                for (o, (((&x0, &x1), &x2), &x3)) in out.iter_mut().zip(terms) {
                    *o = (((*o + a[0] * x0) + a[1] * x1) + a[2] * x2) + a[3] * x3;
                }
            }
            let rest = att.len() - fours.remainder().len();
            for (t, &a) in fours.remainder().iter().enumerate() {
                for (o, &vi) in out.iter_mut().zip(value(rest + t)) {
                    *o += a * vi;
                }
            }
        }
    }
}

/// `InvalidTokenId` unless `token` is in the vocabulary.
fn check_token(model: &Model, token: u32) -> Result<()> {
    let vocab = model.config.vocab_size;
    if token >= vocab {
        return Err(Error::new(
            ErrorCode::InvalidTokenId,
            alloc::format!("token {token} is outside the vocabulary of {vocab}"),
        ));
    }
    Ok(())
}

/// Runs token `token` at position `pos` and leaves the logits in `state` (returned).
///
/// Errors: `InvalidTokenId` for a token outside the vocabulary; `ContextExceeded` when `pos` is
/// not below the state's context.
pub fn forward<'s>(model: &Model, s: &'s mut State, token: u32, pos: usize) -> Result<&'s [f32]> {
    let c = &model.config;
    check_token(model, token)?;
    if pos >= s.context {
        return Err(Error::new(
            ErrorCode::ContextExceeded,
            alloc::format!("position {pos} is beyond the context of {}", s.context),
        ));
    }
    let (dim, q_dim) = (c.dim as usize, c.q_dim() as usize);
    let heads = Heads::of(model);
    let (kv_dim, head_dim) = (heads.kv_dim, heads.head_dim);
    let eps = c.rms_eps;

    kernels::row_to_f32(&model.mat(&model.embedding), token as usize, &mut s.x)?;

    // The angles of this position, shared by every head and layer.
    rope_angles(&mut s.rope_cos, &mut s.rope_sin, &s.rope_freq, pos);

    for (l, lw) in model.layers.iter().enumerate() {
        // Attention.
        rmsnorm(
            &mut s.xb[..dim],
            &s.x,
            norm_bytes(model, &lw.attn_norm),
            eps,
        );
        let slot = (l * s.context + pos) * kv_dim;
        let (wq, wk, wv) = (model.mat(&lw.wq), model.mat(&lw.wk), model.mat(&lw.wv));
        matvecs(
            [
                (&mut s.q[..], &wq),
                (&mut s.key_cache[slot..slot + kv_dim], &wk),
                (&mut s.value_cache[slot..slot + kv_dim], &wv),
            ],
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

        let layer = l * s.context * kv_dim..(l + 1) * s.context * kv_dim;
        heads.attend(
            &s.q,
            &s.key_cache[layer.clone()],
            &s.value_cache[layer],
            pos,
            &mut s.att,
            &mut s.xb[..q_dim],
        );
        matvec(&mut s.xb2, &model.mat(&lw.wo), &s.xb[..q_dim], &mut s.act)?;
        for (x, &d) in s.x.iter_mut().zip(&s.xb2) {
            *x += d;
        }

        // Feed-forward (SwiGLU).
        rmsnorm(&mut s.xb[..dim], &s.x, norm_bytes(model, &lw.ffn_norm), eps);
        let (w1, w3) = (model.mat(&lw.w1), model.mat(&lw.w3));
        matvecs(
            [(&mut s.hb[..], &w1), (&mut s.hb2[..], &w3)],
            &s.xb[..dim],
            &mut s.act,
        )?;
        swiglu_in_place(&mut s.hb, &s.hb2);
        matvec(&mut s.xb2, &model.mat(&lw.w2), &s.hb, &mut s.act)?;
        for (x, &d) in s.x.iter_mut().zip(&s.xb2) {
            *x += d;
        }
    }

    classify(model, &s.x, &mut s.xb[..dim], &mut s.logits, &mut s.act)?;
    Ok(&s.logits)
}

/// The logits of residual stream `x` (dim floats): the final RMSNorm into `xb`, then the
/// classifier (Forward pass, step 4).
fn classify(
    model: &Model,
    x: &[f32],
    xb: &mut [f32],
    logits: &mut [f32],
    act: &mut ActScratch,
) -> Result<()> {
    let c = &model.config;
    rmsnorm(xb, x, norm_bytes(model, &model.final_norm), c.rms_eps);
    matvec(logits, &model.mat(&model.classifier), xb, act)
}

/// Runs `tokens` at positions `pos0, pos0 + 1, ...` in passes of up to the state's batch
/// capacity ([`crate::limits::PREFILL_BATCH`]) and leaves the logits of the last token in
/// `state` (returned; unchanged when `tokens` is empty). The KV cache and the logits are
/// bit-identical to calling [`forward`] on each token in turn (spec/determinism.md, Prefill);
/// only the logits of the other tokens, which a prompt never uses, are not computed.
///
/// Errors (checked before anything runs): `InvalidTokenId` for a token outside the vocabulary;
/// `ContextExceeded` when the last position is not below the state's context.
pub fn prefill<'s>(
    model: &Model,
    s: &'s mut State,
    tokens: &[u32],
    pos0: usize,
) -> Result<&'s [f32]> {
    for &t in tokens {
        check_token(model, t)?;
    }
    if pos0
        .checked_add(tokens.len())
        .is_none_or(|end| end > s.context)
    {
        return Err(Error::new(
            ErrorCode::ContextExceeded,
            alloc::format!(
                "{} tokens from position {pos0} go beyond the context of {}",
                tokens.len(),
                s.context
            ),
        ));
    }
    let capacity = s.batch.capacity.max(1);
    for (i, chunk) in tokens.chunks(capacity).enumerate() {
        prefill_pass(model, s, chunk, pos0 + i * capacity)?;
    }
    if let Some(last) = tokens.len().checked_sub(1) {
        let dim = model.config.dim as usize;
        let b = &s.batch;
        let x = &b.x[(last % capacity) * dim..][..dim];
        classify(model, x, &mut s.xb[..dim], &mut s.logits, &mut s.act)?;
    }
    Ok(&s.logits)
}

/// One pass of `tokens` (at most the batch capacity) at positions `pos0..`: every layer, each
/// weight matrix once for all tokens; the residual streams stay in the batch's `x`.
fn prefill_pass(model: &Model, s: &mut State, tokens: &[u32], pos0: usize) -> Result<()> {
    let c = &model.config;
    let n = tokens.len();
    let (dim, q_dim, ffn) = (c.dim as usize, c.q_dim() as usize, c.ffn_dim as usize);
    let heads = Heads::of(model);
    let (kv_dim, head_dim, half) = (heads.kv_dim, heads.head_dim, heads.head_dim / 2);
    let eps = c.rms_eps;
    let context = s.context;
    let State {
        key_cache,
        value_cache,
        att,
        rope_freq,
        batch,
        ..
    } = s;
    let Batch {
        xb_width,
        x,
        xb,
        xb2,
        q,
        hb,
        hb2,
        rope_cos,
        rope_sin,
        kernel,
        ..
    } = batch;
    let xw = *xb_width;

    let embedding = model.mat(&model.embedding);
    for (b, &t) in tokens.iter().enumerate() {
        kernels::row_to_f32(&embedding, t as usize, &mut x[b * dim..(b + 1) * dim])?;
        rope_angles(
            &mut rope_cos[b * half..(b + 1) * half],
            &mut rope_sin[b * half..(b + 1) * half],
            rope_freq,
            pos0 + b,
        );
    }

    for (l, lw) in model.layers.iter().enumerate() {
        // Attention.
        let norm = norm_bytes(model, &lw.attn_norm);
        for b in 0..n {
            rmsnorm(
                &mut xb[b * xw..b * xw + dim],
                &x[b * dim..(b + 1) * dim],
                norm,
                eps,
            );
        }
        let layer = l * context * kv_dim..(l + 1) * context * kv_dim;
        let slots = (l * context + pos0) * kv_dim..(l * context + pos0 + n) * kv_dim;
        let (wq, wk, wv) = (model.mat(&lw.wq), model.mat(&lw.wk), model.mat(&lw.wv));
        kernel.matmuls(
            [
                (&mut q[..], q_dim, &wq),
                (&mut key_cache[slots.clone()], kv_dim, &wk),
                (&mut value_cache[slots.clone()], kv_dim, &wv),
            ],
            xb,
            xw,
            n,
        )?;
        let keys = &mut key_cache[slots];
        for b in 0..n {
            let (cs, sn) = (
                &rope_cos[b * half..(b + 1) * half],
                &rope_sin[b * half..(b + 1) * half],
            );
            rope(&mut q[b * q_dim..(b + 1) * q_dim], head_dim, cs, sn);
            rope(&mut keys[b * kv_dim..(b + 1) * kv_dim], head_dim, cs, sn);
        }
        for b in 0..n {
            heads.attend(
                &q[b * q_dim..(b + 1) * q_dim],
                &key_cache[layer.clone()],
                &value_cache[layer.clone()],
                pos0 + b,
                att,
                &mut xb[b * xw..b * xw + q_dim],
            );
        }
        kernel.matmul(xb2, dim, &model.mat(&lw.wo), xb, xw, n)?;
        for (xi, &d) in x[..n * dim].iter_mut().zip(&xb2[..n * dim]) {
            *xi += d;
        }

        // Feed-forward (SwiGLU).
        let norm = norm_bytes(model, &lw.ffn_norm);
        for b in 0..n {
            rmsnorm(
                &mut xb[b * xw..b * xw + dim],
                &x[b * dim..(b + 1) * dim],
                norm,
                eps,
            );
        }
        let (w1, w3) = (model.mat(&lw.w1), model.mat(&lw.w3));
        kernel.matmuls(
            [(&mut hb[..], ffn, &w1), (&mut hb2[..], ffn, &w3)],
            xb,
            xw,
            n,
        )?;
        swiglu_in_place(&mut hb[..n * ffn], &hb2[..n * ffn]);
        kernel.matmul(xb2, dim, &model.mat(&lw.w2), hb, ffn, n)?;
        for (xi, &d) in x[..n * dim].iter_mut().zip(&xb2[..n * dim]) {
            *xi += d;
        }
    }
    Ok(())
}
