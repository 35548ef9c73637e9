//! Everything the ABI keeps between calls — host buffers, the active model's session, a chunked
//! load in progress, the settings and the last error — and each call's logic in safe Rust.
//! `abi.rs` only exports these methods under their `trlm_*` names.

use super::buffers::Buffers;
use super::diagnostics_json::diagnostics_json;
use super::headroom;
use super::loader::ChunkedLoad;
use super::plan_stage::PlanStage;
use super::ABI_VERSION;
use crate::adapter::{Adapter, Plan};
use crate::error::{Error, ErrorCode, Result};
use crate::generate::sampler::SamplerSettings;
use crate::generate::session::PlanRequirement;
use crate::generate::{Finish, Session, Step};
use crate::limits;
use crate::model::Model;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// The sampling settings before the first `trlm_set_sampling`: greedy, 256 new tokens.
pub const DEFAULT_SETTINGS: SamplerSettings = SamplerSettings {
    temperature: 0.0,
    top_k: None,
    top_p: 1.0,
    seed: 1,
    max_new_tokens: 256,
};

/// `trlm_set_sampling`'s top_k that means "no top-k".
pub const TOP_K_OFF: u32 = u32::MAX;

/// The token id field of a step record that carries no token.
pub const NO_TOKEN: u32 = u32::MAX;

/// Bytes of the record `trlm_step` writes.
pub const STEP_RECORD_BYTES: u32 = 16;

/// What `trlm_output_len` / `trlm_output_copy` read (spec/abi.md, Outputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The generated text bytes.
    Text = 1,
    /// The generated token ids, u32 little-endian.
    Tokens = 2,
    /// The prompt token ids, u32 little-endian.
    PromptTokens = 3,
    /// The diagnostics JSON document.
    Diagnostics = 4,
    /// The last error's message (UTF-8).
    LastError = 5,
    /// The applied plan's receipt (spec/adapters.md, Receipt); empty when none is applied.
    Receipt = 6,
}

impl Output {
    fn from_u32(kind: u32) -> Result<Output> {
        Ok(match kind {
            1 => Output::Text,
            2 => Output::Tokens,
            3 => Output::PromptTokens,
            4 => Output::Diagnostics,
            5 => Output::LastError,
            6 => Output::Receipt,
            _ => {
                return Err(Error::new(
                    ErrorCode::InvalidArgument,
                    format!("{kind} is not an output kind (1 to 6)"),
                ))
            }
        })
    }
}

/// An output's bytes, borrowed where they exist already.
enum OutputData<'a> {
    Bytes(&'a [u8]),
    Words(&'a [u32]),
    Owned(String),
    OwnedBytes(Vec<u8>),
}

impl OutputData<'_> {
    fn len(&self) -> usize {
        match self {
            OutputData::Bytes(b) => b.len(),
            OutputData::Words(w) => w.len() * 4,
            OutputData::Owned(s) => s.len(),
            OutputData::OwnedBytes(b) => b.len(),
        }
    }

    /// Writes the bytes to the start of `dst` (at least [`OutputData::len`] bytes).
    fn write_to(&self, dst: &mut [u8]) {
        match self {
            OutputData::Bytes(b) => dst[..b.len()].copy_from_slice(b),
            OutputData::Words(w) => {
                for (d, v) in dst.chunks_exact_mut(4).zip(w.iter()) {
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
            OutputData::Owned(s) => dst[..s.len()].copy_from_slice(s.as_bytes()),
            OutputData::OwnedBytes(b) => dst[..b.len()].copy_from_slice(b),
        }
    }
}

/// A length or offset as the ABI's u32 (every one is bounded far below 2^32; saturates anyway).
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn not_loaded() -> Error {
    Error::new(ErrorCode::ModelNotLoaded, "no model is loaded")
}

/// The ABI's state.
pub struct AbiState {
    buffers: Buffers,
    session: Option<Session>,
    load: Option<ChunkedLoad>,
    /// A module plan being staged.
    plan: Option<PlanStage>,
    /// KV cache positions for sessions (0 = the model's max_context).
    context: u32,
    settings: SamplerSettings,
    /// Whether later generations digest their logits (`trlm_set_logits_digest`; on at first).
    digest_logits: bool,
    last_error: Option<Error>,
}

impl Default for AbiState {
    fn default() -> AbiState {
        AbiState::new()
    }
}

impl AbiState {
    pub const fn new() -> AbiState {
        AbiState {
            buffers: Buffers::new(),
            session: None,
            load: None,
            plan: None,
            context: 0,
            settings: DEFAULT_SETTINGS,
            digest_logits: true,
            last_error: None,
        }
    }

    /// Records an operation's outcome (Ok clears the last error) and returns its status.
    pub fn record(&mut self, r: Result<()>) -> u32 {
        match r {
            Ok(()) => {
                self.last_error = None;
                ErrorCode::Ok as u32
            }
            Err(e) => self.record_failure(e),
        }
    }

    /// Records a failure (of any call) and returns its code.
    pub fn record_failure(&mut self, e: Error) -> u32 {
        let code = e.code as u32;
        self.last_error = Some(e);
        code
    }

    pub fn last_error_code(&self) -> u32 {
        self.last_error
            .as_ref()
            .map_or(ErrorCode::Ok as u32, |e| e.code as u32)
    }

    // Host buffers.

    pub fn alloc(&mut self, len: u32) -> Result<u32> {
        self.buffers.alloc(len)
    }

    pub fn free(&mut self, ptr: u32, len: u32) -> Result<()> {
        self.buffers.free(ptr, len)
    }

    // Loading.

    /// Makes `model` the active model with a new session; on failure (including too little
    /// headroom left after it) the previous one stays.
    fn activate(&mut self, model: Model) -> Result<()> {
        let session = Session::new(model, self.context)?;
        if !headroom::available(limits::ABI_HEADROOM_BYTES) {
            drop(session);
            return Err(headroom::out_of_memory());
        }
        self.session = Some(session);
        Ok(())
    }

    pub fn load(&mut self, ptr: u32, len: u32) -> Result<()> {
        let data = self.buffers.get(ptr, len)?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(data.len()).map_err(|_| {
            Error::new(
                ErrorCode::OutOfMemory,
                format!("cannot allocate {len} bytes for the model"),
            )
        })?;
        bytes.extend_from_slice(data);
        headroom::ensure_for_model(&bytes)?;
        let model = Model::load(bytes)?;
        self.activate(model)
    }

    pub fn load_begin(&mut self, total_len: u32) -> Result<()> {
        // A `total_len` over the budget is an argument that fails validation (nothing changes);
        // past it, a begin abandons a load in progress, and frees its memory first.
        ChunkedLoad::check_budget(total_len)?;
        self.load = None;
        self.load = Some(ChunkedLoad::begin(total_len)?);
        Ok(())
    }

    pub fn load_chunk(&mut self, ptr: u32, len: u32) -> Result<()> {
        let data = self.buffers.get(ptr, len)?;
        let load = self.load.as_mut().ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidState,
                "no load in progress (call trlm_load_begin)",
            )
        })?;
        let r = load.chunk(data);
        if r.is_err() {
            self.load = None;
        }
        r
    }

    pub fn load_finish(&mut self) -> Result<()> {
        let load = self.load.take().ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidState,
                "no load in progress (call trlm_load_begin)",
            )
        })?;
        let model = load.finish()?;
        self.activate(model)
    }

    pub fn load_abort(&mut self) -> Result<()> {
        self.load
            .take()
            .map(|_| ())
            .ok_or_else(|| Error::new(ErrorCode::InvalidState, "no load in progress"))
    }

    pub fn unload(&mut self) -> Result<()> {
        self.session = None;
        Ok(())
    }

    // Settings.

    pub fn set_context(&mut self, positions: u32) -> Result<()> {
        let max = self
            .session
            .as_ref()
            .map_or(limits::MAX_CONTEXT, |s| s.model().config.max_context);
        if positions > max {
            return Err(Error::new(
                ErrorCode::ContextExceeded,
                format!("a context of {positions} positions exceeds the maximum {max}"),
            ));
        }
        self.context = positions;
        match self.session.take() {
            None => Ok(()),
            // The new buffers are allocated after the old ones are freed: the only possible
            // failure left is OutOfMemory, which leaves no model loaded (also when the new
            // session leaves less than the headroom an activation must). Applied adapters and
            // a required plan stay.
            Some(old) => {
                let session = old.with_context(self.context)?;
                if !headroom::available(limits::ABI_HEADROOM_BYTES) {
                    drop(session);
                    return Err(headroom::out_of_memory());
                }
                self.session = Some(session);
                Ok(())
            }
        }
    }

    pub fn set_sampling(&mut self, settings: SamplerSettings) -> Result<()> {
        settings.validate()?;
        self.settings = settings;
        Ok(())
    }

    /// 1 = later generations digest their logits (the initial setting), 0 = they do not;
    /// anything else is `InvalidArgument`.
    pub fn set_logits_digest(&mut self, on: u32) -> Result<()> {
        self.digest_logits = match on {
            0 => false,
            1 => true,
            _ => {
                return Err(Error::new(
                    ErrorCode::InvalidArgument,
                    format!("trlm_set_logits_digest takes 0 or 1, not {on}"),
                ))
            }
        };
        Ok(())
    }

    // Generation.

    pub fn start(&mut self, ptr: u32, len: u32) -> Result<()> {
        let prompt = self.buffers.get(ptr, len)?;
        let session = self.session.as_mut().ok_or_else(not_loaded)?;
        session.set_logits_digest(self.digest_logits);
        session.start(prompt, self.settings)?;
        // The sampler's scratch may have taken the headroom the steps' text and tokens need.
        if !headroom::available(limits::ABI_HEADROOM_BYTES) {
            session.reset();
            return Err(headroom::out_of_memory());
        }
        Ok(())
    }

    pub fn step(&mut self, out_ptr: u32) -> Result<()> {
        // The record's buffer is checked before the step runs.
        self.buffers.get_mut(out_ptr, STEP_RECORD_BYTES)?;
        let session = self.session.as_mut().ok_or_else(not_loaded)?;
        if !session.is_running() && session.diagnostics().finish.is_none() {
            return Err(Error::new(
                ErrorCode::InvalidState,
                "no generation has been started (call trlm_start)",
            ));
        }
        let end = to_u32(session.text().len());
        let record = match session.step()? {
            Step::Token { id, text } => [id, 0, to_u32(text.start), to_u32(text.end)],
            Step::Finished(f) => {
                let (id, state) = match f {
                    Finish::Stop(id) => (id, 1),
                    Finish::MaxTokens => (NO_TOKEN, 2),
                    Finish::ContextFull => (NO_TOKEN, 3),
                    Finish::Cancelled => (NO_TOKEN, 4),
                    Finish::Failed(_) => (NO_TOKEN, 5),
                };
                [id, state, end, end]
            }
        };
        let out = self.buffers.get_mut(out_ptr, STEP_RECORD_BYTES)?;
        for (d, v) in out.chunks_exact_mut(4).zip(record) {
            d.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }

    pub fn cancel(&mut self) -> Result<()> {
        self.session.as_mut().ok_or_else(not_loaded)?.cancel();
        Ok(())
    }

    pub fn reset(&mut self) -> Result<()> {
        self.session.as_mut().ok_or_else(not_loaded)?.reset();
        Ok(())
    }

    // Adapters.

    pub fn adapter_validate(&mut self, ptr: u32, len: u32) -> Result<()> {
        Adapter::parse(self.buffers.get(ptr, len)?).map(|_| ())
    }

    pub fn plan_validate(&mut self, ptr: u32, len: u32) -> Result<()> {
        let plan = Plan::parse(self.buffers.get(ptr, len)?)?;
        match &self.session {
            Some(s) => check_base(&plan, s),
            None => Ok(()),
        }
    }

    pub fn plan_begin(&mut self, ptr: u32, len: u32) -> Result<()> {
        let data = self.buffers.get(ptr, len)?;
        // Past the argument checks, a begin abandons a staged plan, also when it then fails
        // (without a model, too).
        self.plan = None;
        let session = self.session.as_ref().ok_or_else(not_loaded)?;
        let stage = PlanStage::begin(data)?;
        check_base(stage.plan(), session)?;
        // The copied plan may have taken the headroom later calls' messages need.
        if !headroom::available(limits::ABI_HEADROOM_BYTES) {
            return Err(headroom::out_of_memory());
        }
        self.plan = Some(stage);
        Ok(())
    }

    pub fn plan_module(&mut self, ptr: u32, len: u32) -> Result<()> {
        let data = self.buffers.get(ptr, len)?;
        let stage = self.plan.as_mut().ok_or_else(no_plan)?;
        let r = stage.module(data).and_then(|()| {
            // The copied module may have taken the headroom (the stage ends below).
            if headroom::available(limits::ABI_HEADROOM_BYTES) {
                Ok(())
            } else {
                Err(headroom::out_of_memory())
            }
        });
        if r.is_err() {
            self.plan = None;
        }
        r
    }

    pub fn plan_check(&mut self) -> Result<()> {
        let stage = self.plan.as_ref().ok_or_else(no_plan)?;
        let session = self.session.as_ref().ok_or_else(not_loaded)?;
        let (plan, modules) = stage.parts();
        session.check_plan(plan, &modules).map(|_| ())
    }

    pub fn plan_apply(&mut self) -> Result<()> {
        if self.plan.is_none() {
            return Err(no_plan());
        }
        let session = self.session.as_mut().ok_or_else(not_loaded)?;
        let stage = self.plan.take().ok_or_else(no_plan)?;
        let (plan, modules) = stage.parts();
        // The headroom is checked with the new assembly and KV cache allocated and the old
        // ones still held (the most this call holds), before anything changes.
        session
            .apply_plan_if(plan, &modules, || {
                headroom::available(limits::ABI_HEADROOM_BYTES)
            })
            .map(|_| ())
    }

    pub fn plan_abort(&mut self) -> Result<()> {
        self.plan.take().map(|_| ()).ok_or_else(no_plan)
    }

    pub fn remove_adapters(&mut self) -> Result<()> {
        self.session
            .as_mut()
            .ok_or_else(not_loaded)?
            .remove_adapters()
    }

    pub fn require_plan(&mut self, ptr: u32, len: u32) -> Result<()> {
        let data = self.buffers.get(ptr, len)?;
        let digest = |i: usize| -> [u8; 32] {
            let mut d = [0u8; 32];
            d.copy_from_slice(&data[32 * i..32 * i + 32]);
            d
        };
        let requirement = match data.len() {
            0 => None,
            32 => Some(PlanRequirement {
                plan: digest(0),
                receipt: None,
            }),
            64 => Some(PlanRequirement {
                plan: digest(0),
                receipt: Some(digest(1)),
            }),
            n => {
                return Err(Error::new(
                    ErrorCode::InvalidLength,
                    format!("a plan requirement has 0, 32 or 64 bytes, not {n}"),
                ))
            }
        };
        self.session
            .as_mut()
            .ok_or_else(not_loaded)?
            .require_plan(requirement);
        Ok(())
    }

    // Outputs.

    pub fn output_len(&self, kind: u32) -> Result<u32> {
        Ok(to_u32(output(&self.session, &self.last_error, kind)?.len()))
    }

    pub fn output_copy(&mut self, kind: u32, ptr: u32, cap: u32) -> Result<()> {
        let dst = self.buffers.get_mut(ptr, cap)?;
        let data = output(&self.session, &self.last_error, kind)?;
        let n = data.len();
        if n > dst.len() {
            return Err(Error::new(
                ErrorCode::InvalidLength,
                format!("the output has {n} bytes; the buffer holds {cap}"),
            ));
        }
        data.write_to(dst);
        Ok(())
    }
}

fn no_plan() -> Error {
    Error::new(
        ErrorCode::InvalidState,
        "no plan is staged (call trlm_plan_begin)",
    )
}

/// `PlanBaseMismatch` unless `plan` names the session's model.
fn check_base(plan: &Plan, session: &Session) -> Result<()> {
    let model = session.model().digest;
    if plan.base != model {
        return Err(Error::new(
            ErrorCode::PlanBaseMismatch,
            format!(
                "the plan is for base {}, the model is {}",
                crate::sha256::to_hex(&plan.base),
                crate::sha256::to_hex(&model)
            ),
        ));
    }
    Ok(())
}

/// The bytes of output `kind` (kinds 1 to 4 and 6 need a loaded model).
fn output<'a>(
    session: &'a Option<Session>,
    last_error: &Option<Error>,
    kind: u32,
) -> Result<OutputData<'a>> {
    let loaded = || session.as_ref().ok_or_else(not_loaded);
    Ok(match Output::from_u32(kind)? {
        Output::Text => OutputData::Bytes(loaded()?.text()),
        Output::Tokens => OutputData::Words(loaded()?.generated_tokens()),
        Output::PromptTokens => OutputData::Words(loaded()?.prompt_tokens()),
        Output::Diagnostics => OutputData::Owned(diagnostics_json(loaded()?, ABI_VERSION)),
        Output::Receipt => {
            OutputData::OwnedBytes(loaded()?.receipt().map_or_else(Vec::new, |r| r.to_bytes()))
        }
        Output::LastError => OutputData::Owned(
            last_error
                .as_ref()
                .map_or_else(String::new, |e| e.to_string()),
        ),
    })
}
