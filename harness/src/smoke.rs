//! What the browser smoke page (browser-smoke/) and the Node engine share with the harness: the
//! registry of models the page lists, the standard cases as JSON (`/cases.json`), the inputs of
//! the failure modes, and the JSON shapes of generation results.
//!
//! Float settings travel as f32 bit patterns and seeds as decimal strings, so no JavaScript
//! number rounding can change them.

use crate::conformance::{standard_cases, Case};
use crate::engine::GenResult;
use crate::fixtures::load_recipes;
use anyhow::{bail, Context, Result};
use runtime::generate::sampler::SamplerSettings;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// New tokens per case in the smoke run: the golden snapshots' count.
pub const SMOKE_MAX_NEW: u32 = 24;

/// The committed registry file inside browser-smoke/.
pub const REGISTRY_FILE: &str = "registry.json";

/// The repository's browser-smoke/ directory.
pub fn smoke_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../browser-smoke")
}

/// The runtime's scalar wasm module as harness/build.rs built it; None when the file is gone.
pub fn wasm_module_path() -> Option<PathBuf> {
    Some(crate::engine::wasmtime::WasmVariant::Scalar.path()).filter(|p| p.is_file())
}

/// The simd128 module, served beside the scalar one; None when the file is gone.
pub fn wasm_simd_module_path() -> Option<PathBuf> {
    Some(crate::engine::wasmtime::WasmVariant::Simd128.path()).filter(|p| p.is_file())
}

/// The registry the page lists (browser-smoke/registry.json): every corpus fixture with its
/// route, size, file digest (spec/slm.md, the model's identity) and dtype, in recipe order.
pub fn registry(corpus: &Path) -> Result<Value> {
    let recipes = load_recipes(corpus)?;
    let mut models = Vec::new();
    for r in &recipes.fixtures {
        let file = format!("{}.slm", r.name);
        let bytes =
            std::fs::read(corpus.join(&file)).with_context(|| format!("reading corpus/{file}"))?;
        models.push(json!({
            "name": r.name,
            "path": format!("corpus/{file}"),
            "bytes": bytes.len(),
            "sha256": runtime::sha256::to_hex(&runtime::format::file_digest(&bytes)),
            "dtype": r.dtype,
        }));
    }
    Ok(json!({ "default": recipes.default, "models": models }))
}

/// The route prefix of models added to the registry for one run ([`served_registry`]).
pub const EXTRA_ROUTE: &str = "extra";

/// The registry a run serves: the committed one (`root`/registry.json) plus one entry per
/// model file of `extra` (outside the repository), named by its file stem and routed under
/// `extra/`. Refuses a name already in the registry or not ending in `.slm`.
pub fn served_registry(root: &Path, extra: &[PathBuf]) -> Result<Value> {
    let mut registry: Value =
        serde_json::from_slice(&std::fs::read(root.join(REGISTRY_FILE)).context("registry.json")?)?;
    let models = registry["models"]
        .as_array_mut()
        .context("registry models")?;
    for path in extra {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .filter(|f| f.ends_with(".slm") && !f.starts_with('.'))
            .with_context(|| format!("{}: not a NAME.slm file", path.display()))?;
        let name = file.trim_end_matches(".slm");
        if models.iter().any(|m| m["name"] == name) {
            bail!("extra model {name}: the registry already has that name");
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        models.push(json!({
            "name": name,
            "path": format!("{EXTRA_ROUTE}/{file}"),
            "bytes": bytes.len(),
            "sha256": runtime::sha256::to_hex(&runtime::format::file_digest(&bytes)),
            "dtype": "extra",
        }));
    }
    Ok(registry)
}

/// The registry as the committed file's text (pretty JSON and a final newline).
pub fn registry_text(corpus: &Path) -> Result<String> {
    Ok(serde_json::to_string_pretty(&registry(corpus)?)? + "\n")
}

/// A case as JSON: prompt as text and hex, floats as f32 bits, seed as a decimal string.
pub fn case_json(case: &Case) -> Value {
    request_json(case.name, case.prompt.as_bytes(), &case.settings())
}

/// One generation request as JSON (the page's and the Node host's input).
pub fn request_json(name: &str, prompt: &[u8], s: &SamplerSettings) -> Value {
    json!({
        "name": name,
        "prompt": String::from_utf8_lossy(prompt),
        "prompt_hex": hex(prompt),
        "temperature_bits": s.temperature.to_bits(),
        "top_k": s.top_k,
        "top_p_bits": s.top_p.to_bits(),
        "seed": s.seed.to_string(),
        "max_new_tokens": s.max_new_tokens,
    })
}

/// The prompt of the `overlong` failure mode: more tokens than any fixture's context (every
/// corpus fixture has a max_context of 64; a byte or piece tokenizer gives a token per word at
/// least).
pub fn overlong_prompt() -> Vec<u8> {
    "once upon a time ".repeat(40).into_bytes()
}

/// The case of the `steps` failure mode: greedy continuation of a story prompt.
pub fn steps_case() -> Case {
    standard_cases(SMOKE_MAX_NEW)
        .into_iter()
        .find(|c| c.name == "story/greedy")
        .expect("the standard set has story/greedy")
}

/// `/cases.json`: the standard cases, the overlong request and the steps case.
pub fn cases_document() -> Value {
    let cases: Vec<Value> = standard_cases(SMOKE_MAX_NEW)
        .iter()
        .map(case_json)
        .collect();
    let greedy = steps_case().settings();
    json!({
        "max_new_tokens": SMOKE_MAX_NEW,
        "cases": cases,
        "overlong": request_json("overlong", &overlong_prompt(), &greedy),
        "steps": case_json(&steps_case()),
    })
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex (even length, 0-9a-f).
pub fn unhex(s: &str) -> Result<Vec<u8>> {
    if s.len() % 2 != 0 {
        bail!("hex of odd length");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("bad hex digit"))
        .collect()
}

fn u32_list(v: &Value, key: &str) -> Result<Vec<u32>> {
    v[key]
        .as_array()
        .with_context(|| format!("{key} is not an array"))?
        .iter()
        .map(|x| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .with_context(|| format!("{key}: not a u32"))
        })
        .collect()
}

fn string(v: &Value, key: &str) -> Result<String> {
    Ok(v[key]
        .as_str()
        .with_context(|| format!("{key} is not a string"))?
        .to_string())
}

/// A generation result as trlm.js writes it (`prompt_tokens`, `tokens`, `text_hex`,
/// `logits_digest`, `step_digests`, `finish`).
pub fn parse_result(v: &Value) -> Result<GenResult> {
    let step_digests = v["step_digests"]
        .as_array()
        .context("step_digests is not an array")?
        .iter()
        .map(|d| d.as_str().map(str::to_string).context("a step digest"))
        .collect::<Result<_>>()?;
    Ok(GenResult {
        prompt_tokens: u32_list(v, "prompt_tokens")?,
        tokens: u32_list(v, "tokens")?,
        text: unhex(&string(v, "text_hex")?)?,
        logits_digest: string(v, "logits_digest")?,
        step_digests,
        finish: string(v, "finish")?,
    })
}
