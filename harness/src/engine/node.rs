//! The Node engine: the runtime's wasm module hosted by Node through browser-smoke/trlm.js
//! (plain JavaScript, the same wrapper the browser page uses), driven over the line-based JSON
//! protocol of browser-smoke/node-host.mjs.

use super::{Engine, EngineError, GenRequest, GenResult, ModelInfo};
use crate::smoke::{self, request_json};
use anyhow::{bail, Context};
use runtime::generate::session::PlanRequirement;
use runtime::sha256::to_hex;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The `code` of an [`EngineError`] that is not the runtime's (the host failed or answered
/// nonsense); never an `ErrorCode`.
pub const HOST_FAILURE: u32 = u32::MAX;

/// Whether a `node` executable runs here.
pub fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running `node node-host.mjs MODULE` process.
pub struct NodeEngine {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// KV cache positions (0 = the model's max context); sent before each load.
    pub context: u32,
    /// The module variant the host runs ("simd128", "scalar"; "given" for [`NodeEngine::spawn`]).
    pub variant: String,
}

fn host_failure(e: anyhow::Error) -> EngineError {
    EngineError {
        code: HOST_FAILURE,
        message: format!("node host: {e:#}"),
    }
}

impl NodeEngine {
    /// Starts the host on the wasm module at `wasm` and waits for its ready line.
    pub fn spawn(wasm: &Path) -> anyhow::Result<NodeEngine> {
        NodeEngine::spawn_with(&[wasm])
    }

    /// Starts the host on both built modules: it runs the simd128 one when Node validates a
    /// simd128 module, else the scalar one (as the page does), and reports which in
    /// [`NodeEngine::variant`].
    pub fn spawn_detecting() -> anyhow::Result<NodeEngine> {
        use super::wasmtime::WasmVariant;
        NodeEngine::spawn_with(&[&WasmVariant::Scalar.path(), &WasmVariant::Simd128.path()])
    }

    fn spawn_with(modules: &[&Path]) -> anyhow::Result<NodeEngine> {
        let host = smoke::smoke_dir().join("node-host.mjs");
        let mut child = Command::new("node")
            .arg(&host)
            .args(modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node")?;
        let stdin = child.stdin.take().context("node stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("node stdout")?);
        let mut engine = NodeEngine {
            child,
            stdin,
            stdout,
            context: 0,
            variant: String::new(),
        };
        let ready = engine.read_answer()?;
        if ready["ready"] != true || ready["abi_version"] != super::ABI_VERSION {
            bail!("unexpected first line from the node host: {ready}");
        }
        engine.variant = ready["variant"].as_str().unwrap_or_default().to_string();
        Ok(engine)
    }

    fn read_answer(&mut self) -> anyhow::Result<serde_json::Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the node host exited");
        }
        serde_json::from_str(&line).with_context(|| format!("answer {line:?}"))
    }

    /// Sends one request and returns the answer's fields, or the runtime error it reports.
    fn request(&mut self, req: serde_json::Value) -> Result<serde_json::Value, EngineError> {
        let mut line = serde_json::to_string(&req).map_err(|e| host_failure(e.into()))?;
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|_| self.stdin.flush())
            .map_err(|e| host_failure(e.into()))?;
        let answer = self.read_answer().map_err(host_failure)?;
        if answer["ok"] == true {
            return Ok(answer);
        }
        let code = answer["code"].as_u64().and_then(|c| u32::try_from(c).ok());
        Err(EngineError {
            code: code.filter(|&c| c != 0).unwrap_or(HOST_FAILURE),
            message: answer["message"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// The calls of the adapter readers that the [`Engine`] trait does not cover.
impl NodeEngine {
    /// Reads an adapter by every rule of spec/adapters.md (trlm.js `validateAdapter`).
    pub fn validate_adapter(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.request(serde_json::json!({"op": "validate_adapter", "b64": base64(bytes)}))
            .map(|_| ())
    }

    /// Reads a plan's text, and its base when a model is loaded (trlm.js `validatePlan`).
    pub fn validate_plan(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.request(serde_json::json!({"op": "validate_plan", "b64": base64(bytes)}))
            .map(|_| ())
    }

    /// Drops the loaded model, if any.
    pub fn unload(&mut self) -> Result<(), EngineError> {
        self.request(serde_json::json!({"op": "unload"}))
            .map(|_| ())
    }
}

impl Drop for NodeEngine {
    fn drop(&mut self) {
        // The host ends at the end of its input; kill it if it does not.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Engine for NodeEngine {
    fn name(&self) -> String {
        "node".into()
    }

    fn load(&mut self, bytes: &[u8]) -> Result<ModelInfo, EngineError> {
        self.request(serde_json::json!({"op": "set_context", "positions": self.context}))?;
        let a = self.request(serde_json::json!({"op": "load", "b64": base64(bytes)}))?;
        Ok(ModelInfo {
            digest: a["digest"].as_str().unwrap_or_default().to_string(),
            bytes: a["bytes"].as_u64().unwrap_or(0),
        })
    }

    fn generate(&mut self, req: &GenRequest) -> Result<GenResult, EngineError> {
        let mut r = request_json("", &req.prompt, &req.settings);
        r["op"] = "generate".into();
        r["prompt_b64"] = base64(&req.prompt).into();
        let answer = self.request(r)?;
        smoke::parse_result(&answer).map_err(host_failure)
    }

    fn apply_plan(&mut self, plan: &[u8], modules: &[&[u8]]) -> Result<Vec<u8>, EngineError> {
        let modules: Vec<String> = modules.iter().map(|m| base64(m)).collect();
        let a = self.request(serde_json::json!({
            "op": "apply_plan", "plan_b64": base64(plan), "modules_b64": modules,
        }))?;
        let hex = a["receipt_hex"].as_str().unwrap_or_default();
        hex_bytes(hex).ok_or_else(|| host_failure(anyhow::anyhow!("bad receipt_hex {hex:?}")))
    }

    fn remove_adapters(&mut self) -> Result<(), EngineError> {
        self.request(serde_json::json!({"op": "remove_adapters"}))
            .map(|_| ())
    }

    fn require_plan(&mut self, req: Option<PlanRequirement>) -> Result<(), EngineError> {
        let plan = req.map(|r| to_hex(&r.plan));
        let receipt = req.and_then(|r| r.receipt).map(|d| to_hex(&d));
        self.request(serde_json::json!({
            "op": "require_plan", "plan_hex": plan, "receipt_hex": receipt,
        }))
        .map(|_| ())
    }
}

/// Bytes of lower-case hex (any even length).
fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_pads_as_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }
}
