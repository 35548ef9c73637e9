//! Engines: the same generation driven through different executions of the runtime — the native
//! library, the .wasm module under wasmtime, and (later) Node and browsers. Harness commands
//! take `--engine` and compare what engines produce bit for bit.

pub mod native;
pub mod node;
pub mod wasmtime;

use runtime::generate::sampler::SamplerSettings;
use runtime::generate::session::PlanRequirement;
use serde::Serialize;

/// A failure as every engine reports it: the runtime's stable error code and its message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EngineError {
    pub code: u32,
    pub message: String,
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = runtime::ErrorCode::from_u32(self.code)
            .map(|c| c.name())
            .unwrap_or("unknown");
        // Messages from the runtime already read "error CODE Name[ at byte N]: ...".
        if self.message.starts_with(&format!("error {} ", self.code)) {
            f.write_str(&self.message)
        } else {
            write!(f, "error {} {}: {}", self.code, name, self.message)
        }
    }
}

impl std::error::Error for EngineError {}

impl From<runtime::Error> for EngineError {
    fn from(e: runtime::Error) -> EngineError {
        EngineError {
            code: e.code as u32,
            message: crate::inspect::describe_error(&e),
        }
    }
}

/// One generation to run.
#[derive(Clone, Debug)]
pub struct GenRequest {
    pub prompt: Vec<u8>,
    pub settings: SamplerSettings,
}

/// What a generation produced, as compared across engines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GenResult {
    pub prompt_tokens: Vec<u32>,
    pub tokens: Vec<u32>,
    /// Generated text bytes (raw decoded pieces).
    #[serde(serialize_with = "lossy_text")]
    pub text: Vec<u8>,
    /// Hex SHA-256 of the logits of every sampling step (spec/abi.md, Diagnostics).
    pub logits_digest: String,
    /// The cumulative logits digest after each step, to name the first diverging step.
    #[serde(skip)]
    pub step_digests: Vec<String>,
    /// Why generation ended: stop, max_tokens, context_full, cancelled.
    pub finish: String,
}

fn lossy_text<S: serde::Serializer>(text: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(text))
}

/// Facts about a loaded model an engine reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    pub digest: String,
    pub bytes: u64,
}

/// An execution of the runtime.
pub trait Engine {
    /// "native", "wasmtime", "node", ...
    fn name(&self) -> String;
    /// Loads (and fully verifies) a model, replacing any loaded one.
    fn load(&mut self, bytes: &[u8]) -> Result<ModelInfo, EngineError>;
    /// Runs one generation on the loaded model, step by step, to its end.
    fn generate(&mut self, req: &GenRequest) -> Result<GenResult, EngineError>;
    /// Applies a module plan to the loaded model with its modules' bytes in plan order, all or
    /// nothing (spec/adapters.md); returns the receipt's bytes.
    fn apply_plan(&mut self, plan: &[u8], modules: &[&[u8]]) -> Result<Vec<u8>, EngineError>;
    /// Removes every adapter from the loaded model.
    fn remove_adapters(&mut self) -> Result<(), EngineError>;
    /// Requires a plan before generation (`None` lifts the requirement).
    fn require_plan(&mut self, req: Option<PlanRequirement>) -> Result<(), EngineError>;
}

/// The ABI version the wasm engines speak (spec/abi.md, Version).
pub const ABI_VERSION: u32 = 2;

/// The 0, 32 or 64 bytes `trlm_require_plan` takes for a requirement.
pub fn requirement_bytes(req: Option<PlanRequirement>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(r) = req {
        out.extend_from_slice(&r.plan);
        if let Some(d) = r.receipt {
            out.extend_from_slice(&d);
        }
    }
    out
}

/// Engine names `--engine` accepts, in the order `check` runs them (the first is the reference).
/// "wasmtime" runs the simd128 module, "wasmtime-scalar" the scalar one; "node" picks by feature
/// detection as the page does.
pub const ENGINE_NAMES: &[&str] = &["native", "wasmtime", "wasmtime-scalar", "node"];

/// The engine called `name`, or None when it cannot run on this machine.
pub fn by_name(name: &str) -> anyhow::Result<Option<Box<dyn Engine>>> {
    match name {
        "native" => Ok(Some(Box::new(native::NativeEngine::default()))),
        "wasmtime" => Ok(Some(Box::new(wasmtime::WasmtimeEngine::of(
            wasmtime::WasmVariant::Simd128,
        )?))),
        "wasmtime-scalar" => Ok(Some(Box::new(wasmtime::WasmtimeEngine::of(
            wasmtime::WasmVariant::Scalar,
        )?))),
        "node" => {
            if !node::node_available() {
                return Ok(None);
            }
            Ok(Some(Box::new(node::NodeEngine::spawn_detecting()?)))
        }
        other => anyhow::bail!(
            "unknown engine {other:?} (known: {})",
            ENGINE_NAMES.join(", ")
        ),
    }
}

/// Size of the built (simd128) .wasm module, when the build has one.
pub fn wasm_module_bytes() -> Option<u64> {
    std::fs::metadata(wasmtime::wasm_path())
        .ok()
        .map(|m| m.len())
}
