//! A generation session: one loaded model, its scratch and KV cache (allocated once), and the
//! state of the current generation. `start` encodes and runs the prompt; each `step` produces one
//! token (so a host can stream); nothing is allocated per step.
//!
//! The loop is llama2.c's `generate`: the prompt is fed token by token; every later step samples
//! from the logits of the current token, stops (without emitting) on a stop token, and otherwise
//! decodes the piece `decode(previous, next)` and feeds `next` at the next position.
//!
//! Adapters (spec/adapters.md, Sessions): [`Session::apply_plan`] installs a module plan's
//! assembly and [`Session::remove_adapters`] restores the base; both end any generation and clear
//! the KV cache. [`Session::require_plan`] closes the gate: `start` then fails with
//! `AdaptersRequired` until that plan is applied (with the pinned receipt, if one is given).

use crate::adapter::plan::{prepare_plan, Prepared, Receipt};
use crate::error::{Error, ErrorCode, Result};
use crate::format::DType;
use crate::generate::sampler::{Sampler, SamplerSettings};
use crate::limits;
use crate::model::forward::{forward, prefill, State};
use crate::model::weights::Model;
use crate::sha256::Sha256;
use alloc::vec::Vec;
use core::ops::Range;

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The model sampled this stop token (not emitted).
    Stop(u32),
    /// `max_new_tokens` tokens were generated.
    MaxTokens,
    /// The KV cache is full: the next token has no position.
    ContextFull,
    /// The host cancelled.
    Cancelled,
    /// A step failed (the error was returned by that step); the model stays loaded.
    Failed(ErrorCode),
}

impl Finish {
    /// A stable name for diagnostics.
    pub fn name(&self) -> &'static str {
        match self {
            Finish::Stop(_) => "stop",
            Finish::MaxTokens => "max_tokens",
            Finish::ContextFull => "context_full",
            Finish::Cancelled => "cancelled",
            Finish::Failed(_) => "failed",
        }
    }
}

/// What one step produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A new token, and where its decoded bytes lie in [`Session::text`].
    Token { id: u32, text: Range<usize> },
    /// The generation is over.
    Finished(Finish),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Running,
    Finished(Finish),
}

/// Counters and identities for diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Diagnostics {
    pub prompt_tokens: usize,
    pub generated_tokens: u32,
    /// Positions held in the KV cache.
    pub kv_len: usize,
    /// The KV cache capacity (positions).
    pub context: usize,
    /// Bytes of scratch and KV cache, allocated at load.
    pub scratch_bytes: usize,
    pub weight_dtype: DType,
    pub model_digest: [u8; 32],
    /// SHA-256 over the little-endian bits of every logit of every digested sampling step so
    /// far (every step unless [`Session::set_logits_digest`] turned digesting off).
    pub logits_digest: [u8; 32],
    /// Sampling steps digested.
    pub logit_steps: u32,
    pub finish: Option<Finish>,
    /// Adapter modules of the applied plan (0 when none is applied).
    pub adapter_modules: u32,
    /// SHA-256 of the applied plan's receipt bytes, when a plan is applied.
    pub receipt_digest: Option<[u8; 32]>,
}

/// The plan a session must have applied before it generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanRequirement {
    /// The plan's digest (SHA-256 of its bytes).
    pub plan: [u8; 32],
    /// If given, the SHA-256 the receipt's bytes must have.
    pub receipt: Option<[u8; 32]>,
}

/// One model and one generation at a time.
pub struct Session {
    model: Model,
    state: State,
    sampler: Option<Sampler>,
    /// Prompt tokens of the current generation.
    prompt: Vec<u32>,
    /// Generated tokens of the current generation.
    generated: Vec<u32>,
    /// Generated text (decoded pieces), at most `limits::MAX_OUTPUT_BYTES`.
    text: Vec<u8>,
    /// The token to feed next and its position.
    current: u32,
    pos: usize,
    max_new: u32,
    logits_hash: Sha256,
    logit_steps: u32,
    /// Whether steps feed their logits to `logits_hash` (on unless the caller turns it off).
    digest_logits: bool,
    phase: Phase,
    required: Option<PlanRequirement>,
}

fn reserve<T>(v: &mut Vec<T>, n: usize) -> Result<()> {
    v.try_reserve_exact(n)
        .map_err(|_| Error::new(ErrorCode::OutOfMemory, "cannot allocate session buffers"))
}

impl Session {
    /// Takes a verified model and allocates everything a generation needs, with a KV cache of
    /// `context` positions (0 = the model's max_context).
    pub fn new(model: Model, context: u32) -> Result<Session> {
        let state = State::new(&model, context)?;
        let mut prompt = Vec::new();
        let mut generated = Vec::new();
        let mut text = Vec::new();
        reserve(&mut prompt, state.context)?;
        reserve(&mut generated, state.context)?;
        reserve(&mut text, limits::MAX_OUTPUT_BYTES)?;
        Ok(Session {
            model,
            state,
            sampler: None,
            prompt,
            generated,
            text,
            current: 0,
            pos: 0,
            max_new: 0,
            logits_hash: Sha256::new(),
            logit_steps: 0,
            digest_logits: true,
            phase: Phase::Idle,
            required: None,
        })
    }

    /// Whether later steps digest their logits (spec/determinism.md, Logits digest); on by
    /// default. Digesting costs a SHA-256 over the whole vocabulary's logits per step; callers
    /// that never read [`Diagnostics::logits_digest`] may turn it off. Steps taken while it is
    /// off are not digested and not counted in [`Diagnostics::logit_steps`]; tokens and logits
    /// do not change.
    pub fn set_logits_digest(&mut self, on: bool) {
        self.digest_logits = on;
    }

    /// Sets (or with `None` lifts) the plan this session must have applied before `start`. A
    /// requirement the applied plan does not meet also ends a running generation, as
    /// [`Session::cancel`] does: no further token comes from weights the gate now refuses.
    pub fn require_plan(&mut self, requirement: Option<PlanRequirement>) {
        self.required = requirement;
        if self.check_gate().is_err() {
            self.cancel();
        }
    }

    /// Verifies and applies a module plan with its adapters' bytes (in plan order), replacing
    /// any applied plan; all or nothing. Ends any generation and clears the KV cache. Returns the
    /// receipt.
    ///
    /// Errors: those of [`crate::adapter::prepare_plan`]; `ReceiptMismatch` when this is the
    /// required plan and its receipt is not the pinned one; `OutOfMemory`. On error nothing
    /// changed.
    pub fn apply_plan(&mut self, plan: &[u8], modules: &[&[u8]]) -> Result<Receipt> {
        self.apply_plan_if(plan, modules, || true)
    }

    /// [`Session::apply_plan`], asking `room` (with the assembly and the new KV cache allocated,
    /// before anything changes) whether memory is left for what follows: `OutOfMemory`, nothing
    /// changed, when it says no.
    pub fn apply_plan_if(
        &mut self,
        plan: &[u8],
        modules: &[&[u8]],
        room: impl FnOnce() -> bool,
    ) -> Result<Receipt> {
        let prepared = self.prepare(plan, modules)?;
        let state = State::new(&self.model, self.state.context as u32)?;
        if !room() {
            // Freed before the message is made.
            drop((prepared, state));
            return Err(Error::new(
                ErrorCode::OutOfMemory,
                "not enough memory left after applying the plan",
            ));
        }
        let receipt = prepared.install(&mut self.model);
        self.state = state;
        self.reset();
        Ok(receipt)
    }

    /// What [`Session::apply_plan`] would do, without changing anything: returns the receipt it
    /// would produce, or the error it would report (before memory for the KV cache).
    pub fn check_plan(&self, plan: &[u8], modules: &[&[u8]]) -> Result<Receipt> {
        Ok(self.prepare(plan, modules)?.receipt)
    }

    /// The checks and the assembly of [`Session::apply_plan`].
    fn prepare(&self, plan: &[u8], modules: &[&[u8]]) -> Result<Prepared> {
        let prepared = prepare_plan(&self.model, plan, modules)?;
        if let Some(req) = self.required {
            if req.plan == prepared.receipt.plan
                && req.receipt.is_some_and(|d| d != prepared.receipt.digest())
            {
                return Err(Error::new(
                    ErrorCode::ReceiptMismatch,
                    "the plan's receipt is not the one required",
                ));
            }
        }
        Ok(prepared)
    }

    /// The same model, applied plan and required plan with a new KV cache of `context`
    /// positions (0 = the model's max_context); the generation is lost. The old buffers are freed
    /// first: on failure (`ContextExceeded`, `OutOfMemory`) the model is dropped.
    pub fn with_context(self, context: u32) -> Result<Session> {
        let Session {
            model,
            required,
            digest_logits,
            ..
        } = self;
        let mut s = Session::new(model, context)?;
        s.required = required;
        s.digest_logits = digest_logits;
        Ok(s)
    }

    /// Removes every adapter: the model computes with its base bytes again. Ends any generation
    /// and clears the KV cache. Errors: `OutOfMemory` (nothing changed).
    pub fn remove_adapters(&mut self) -> Result<()> {
        let state = State::new(&self.model, self.state.context as u32)?;
        self.model
            .set_overlay(alloc::collections::BTreeMap::new(), None);
        self.state = state;
        self.reset();
        Ok(())
    }

    /// The receipt of the applied plan, if any.
    pub fn receipt(&self) -> Option<&Receipt> {
        self.model.applied().map(|(r, _)| r)
    }

    /// `AdaptersRequired` unless the required plan (if any) is applied with the pinned receipt.
    fn check_gate(&self) -> Result<()> {
        let Some(req) = self.required else {
            return Ok(());
        };
        match self.model.applied() {
            Some((r, d)) if r.plan == req.plan && req.receipt.is_none_or(|p| p == *d) => Ok(()),
            _ => Err(Error::new(
                ErrorCode::AdaptersRequired,
                "the session requires a module plan that is not applied",
            )),
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Gives the model back (the session's buffers are freed).
    pub fn into_model(self) -> Model {
        self.model
    }

    /// Starts a generation: validates `settings`, encodes `prompt` (BOS per the tokenizer's
    /// add_bos flag) and runs every prompt token but the last through the model, in batches
    /// ([`crate::model::prefill`]; the same bits as one token at a time).
    ///
    /// Errors (the session is then idle, the model still loaded): `InvalidSettings`,
    /// `InvalidUtf8`, `PromptTooLong` (text over `MAX_PROMPT_BYTES`), `ContextExceeded` (more
    /// prompt tokens than the context holds), `InvalidArgument` (the prompt encodes to no token),
    /// `AdaptersRequired` (a required plan is not applied; checked first).
    pub fn start(&mut self, prompt: &[u8], settings: SamplerSettings) -> Result<()> {
        self.reset();
        self.check_gate()?;
        let sampler = Sampler::new(self.model.config.vocab_size as usize, settings)?;
        let add_bos = self.model.tokenizer.add_bos();
        self.model
            .tokenizer
            .encode(prompt, add_bos, &mut self.prompt)?;
        if self.prompt.is_empty() {
            self.reset();
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "the prompt encodes to no token (empty text and no BOS)",
            ));
        }
        if self.prompt.len() > self.state.context {
            let n = self.prompt.len();
            self.reset();
            return Err(Error::new(
                ErrorCode::ContextExceeded,
                alloc::format!(
                    "the prompt has {n} tokens; the context holds {}",
                    self.state.context
                ),
            ));
        }
        let last = self.prompt.len() - 1;
        if let Err(e) = prefill(&self.model, &mut self.state, &self.prompt[..last], 0) {
            self.reset();
            return Err(e);
        }
        self.pos = self.prompt.len() - 1;
        self.current = self.prompt[self.pos];
        self.max_new = settings.max_new_tokens;
        self.sampler = Some(sampler);
        self.phase = Phase::Running;
        Ok(())
    }

    /// Produces the next token, or says why the generation is over (again on every later call).
    ///
    /// Errors: `GenerationFailed` when no generation was started; `OutputBufferExceeded` when the
    /// text would pass `MAX_OUTPUT_BYTES` (the generation ends, the model stays loaded); errors of
    /// the forward pass.
    pub fn step(&mut self) -> Result<Step> {
        match self.phase {
            Phase::Idle => {
                return Err(Error::new(
                    ErrorCode::GenerationFailed,
                    "no generation has been started",
                ))
            }
            Phase::Finished(f) => return Ok(Step::Finished(f)),
            Phase::Running => {}
        }
        if self.generated.len() as u32 >= self.max_new {
            return Ok(self.finish(Finish::MaxTokens));
        }
        if self.pos >= self.state.context {
            return Ok(self.finish(Finish::ContextFull));
        }
        let result = self.advance();
        if let Err(e) = &result {
            self.phase = Phase::Finished(Finish::Failed(e.code));
        }
        result
    }

    fn advance(&mut self) -> Result<Step> {
        let logits = forward(&self.model, &mut self.state, self.current, self.pos)?;
        if self.digest_logits {
            hash_logits(&mut self.logits_hash, logits);
            self.logit_steps += 1;
        }
        let sampler = self
            .sampler
            .as_mut()
            .ok_or_else(|| Error::new(ErrorCode::GenerationFailed, "no sampler"))?;
        let next = sampler.sample(self.state.logits_mut())?;
        self.pos += 1;
        if self.model.tokenizer.is_stop(next) {
            return Ok(self.finish(Finish::Stop(next)));
        }
        let piece = self.model.tokenizer.decode(Some(self.current), next)?;
        if self.text.len() + piece.len() > limits::MAX_OUTPUT_BYTES {
            return Err(Error::new(
                ErrorCode::OutputBufferExceeded,
                alloc::format!("the output would exceed {} bytes", limits::MAX_OUTPUT_BYTES),
            ));
        }
        let start = self.text.len();
        self.text.extend_from_slice(piece);
        self.generated.push(next);
        self.current = next;
        Ok(Step::Token {
            id: next,
            text: start..self.text.len(),
        })
    }

    fn finish(&mut self, f: Finish) -> Step {
        self.phase = Phase::Finished(f);
        Step::Finished(f)
    }

    /// Ends the current generation (its tokens and text stay readable until the next start).
    pub fn cancel(&mut self) {
        if self.phase == Phase::Running {
            self.phase = Phase::Finished(Finish::Cancelled);
        }
    }

    /// Forgets the current generation: idle, empty KV cache, empty text and digest.
    pub fn reset(&mut self) {
        self.prompt.clear();
        self.generated.clear();
        self.text.clear();
        self.sampler = None;
        self.current = 0;
        self.pos = 0;
        self.max_new = 0;
        self.logits_hash = Sha256::new();
        self.logit_steps = 0;
        self.phase = Phase::Idle;
    }

    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    pub fn prompt_tokens(&self) -> &[u32] {
        &self.prompt
    }

    pub fn generated_tokens(&self) -> &[u32] {
        &self.generated
    }

    /// The generated text so far (raw decoded bytes; may end inside a UTF-8 sequence).
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The logits of the last forward step (before sampling changed them: the sampler works on
    /// them in place, so read this only for diagnostics).
    pub fn logits(&self) -> &[f32] {
        self.state.logits()
    }

    pub fn diagnostics(&self) -> Diagnostics {
        Diagnostics {
            prompt_tokens: self.prompt.len(),
            generated_tokens: self.generated.len() as u32,
            kv_len: if self.phase == Phase::Idle {
                0
            } else {
                self.pos
            },
            context: self.state.context,
            scratch_bytes: self.state.bytes(),
            weight_dtype: self.model.weight_dtype(),
            model_digest: self.model.digest,
            logits_digest: self.logits_hash.clone().finalize(),
            logit_steps: self.logit_steps,
            finish: match self.phase {
                Phase::Finished(f) => Some(f),
                _ => None,
            },
            adapter_modules: self.receipt().map_or(0, |r| r.modules.len() as u32),
            receipt_digest: self.model.applied().map(|(_, d)| *d),
        }
    }
}

/// Feeds the little-endian bytes of `logits` to the hash without allocating.
fn hash_logits(h: &mut Sha256, logits: &[f32]) {
    let mut buf = [0u8; 1024];
    for chunk in logits.chunks(256) {
        for (dst, v) in buf.chunks_exact_mut(4).zip(chunk) {
            dst.copy_from_slice(&v.to_bits().to_le_bytes());
        }
        h.update(&buf[..chunk.len() * 4]);
    }
}
