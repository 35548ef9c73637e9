//! What the browser smoke page (browser-smoke/) and the Node engine share with the harness: the
//! selector registry of models and adapters the page lists, the standard cases as JSON (`/cases.json`), the inputs of
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

/// A model's entry in the selector registry (spec/adapters.md, Selector registry), routed at
/// `path`; `id` is its name.
pub fn model_entry(id: &str, path: &str, bytes: &[u8]) -> Result<Value> {
    let model =
        runtime::model::Model::load(bytes.to_vec()).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let c = &model.config;
    Ok(json!({
        "id": id,
        "path": path,
        "bytes": bytes.len(),
        "sha256": runtime::sha256::to_hex(&model.digest),
        "dtype": model.weight_dtype().name(),
        "shape": format!(
            "dim {}, {} layers, {} heads ({} kv), ffn {}, vocab {}, context {}",
            c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn_dim, c.vocab_size, c.max_context
        ),
    }))
}

/// The family of an adapter fixture of kind `kind` (adp1, asp1, alr1).
pub fn fixture_family(kind: &str) -> String {
    format!("fixture-{kind}")
}

/// The registry the page lists (browser-smoke/registry.json), in the selector registry's format
/// (spec/adapters.md): every corpus fixture in recipe order with its route, size, file digest,
/// dtype and shape, and every adapter fixture (corpus/adapters.json) in the family of its kind.
pub fn registry(corpus: &Path) -> Result<Value> {
    let recipes = load_recipes(corpus)?;
    let mut models = Vec::new();
    for r in &recipes.fixtures {
        let file = format!("{}.slm", r.name);
        let bytes =
            std::fs::read(corpus.join(&file)).with_context(|| format!("reading corpus/{file}"))?;
        models.push(model_entry(&r.name, &format!("corpus/{file}"), &bytes)?);
    }
    let mut adapters = Vec::new();
    for f in crate::adapter::fixtures::read_all(corpus)? {
        let a = runtime::adapter::Adapter::parse(&f.adapter)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.recipe.name))?;
        let records: Vec<String> = a
            .records
            .iter()
            .map(|r| format!("{} {:?}", r.name, r.shape()))
            .collect();
        adapters.push(json!({
            "id": f.recipe.name,
            "family": fixture_family(&f.recipe.kind),
            "base": f.recipe.base,
            "kind": f.recipe.kind,
            "path": format!("corpus/adapters/{}.adapter", f.recipe.name),
            "bytes": f.adapter.len(),
            "sha256": runtime::sha256::to_hex(&a.digest),
            "dtype": "f32",
            "shape": records.join(", "),
        }));
    }
    Ok(json!({ "version": 1, "models": models, "adapters": adapters }))
}

/// The route prefix of models added to the registry for one run ([`served_registry`]).
pub const EXTRA_ROUTE: &str = "extra";

/// The suffix of adapter files.
pub const ADAPTER_SUFFIX: &str = ".adapter";

/// The registry file at `root`, checked by every rule of spec/adapters.md (Selector registry:
/// [`crate::adapter::registry::Registry::parse`]) before anything is served from it: a path
/// with `..` or an absolute one, for one, would name a file outside the corpus.
fn read_registry(root: &Path) -> Result<Value> {
    let path = root.join(REGISTRY_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    crate::adapter::registry::Registry::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// The files of the adapters the registry at `root` lists, in `corpus` (their routes are
/// `corpus/adapters/FILE`). The server routes only models under `corpus/`, so a runner serves
/// these under `extra/` ([`served_registry`] rewrites their paths).
pub fn adapter_files(root: &Path, corpus: &Path) -> Result<Vec<PathBuf>> {
    let registry = read_registry(root)?;
    let adapters = registry["adapters"].as_array().cloned().unwrap_or_default();
    adapters
        .iter()
        .map(|a| {
            let route = a["path"].as_str().context("adapter path")?;
            let rel = route
                .strip_prefix("corpus/")
                .with_context(|| format!("adapter path {route}: not under corpus/"))?;
            Ok(corpus.join(rel))
        })
        .collect()
}

/// The one-module plan text a host builds from registry entries: the model's digest as base and
/// each adapter's digest, size and file name (the last component of its path), in order. For
/// an adapter fixture it is the committed plan, byte for byte.
pub fn registry_plan(model: &Value, adapters: &[Value]) -> Result<Vec<u8>> {
    let digest = |v: &Value| -> Result<[u8; 32]> {
        let hex = v["sha256"].as_str().context("sha256")?;
        runtime::sha256::from_hex(hex).context("sha256 hex")
    };
    let modules = adapters
        .iter()
        .map(|a| {
            let path = a["path"].as_str().context("adapter path")?;
            Ok(runtime::adapter::PlanModule {
                digest: digest(a)?,
                bytes: a["bytes"].as_u64().context("adapter bytes")?,
                name: path.rsplit('/').next().unwrap_or(path).to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(runtime::adapter::Plan::to_bytes(&digest(model)?, &modules))
}

/// The registry a run serves: the committed one (`root`/registry.json) plus, per file of
/// `extra`: a model entry for a `ID.slm` file (outside the repository), with its file stem as
/// id, routed under `extra/`; for a `FILE.adapter` file, the registry adapter whose path ends in
/// `/FILE` is routed to `extra/FILE`. Refuses a model id already in the registry, an adapter
/// file the registry does not list, or any other name. The extra model entries are for one run
/// and not held to the registry's rules: a file that is not a valid model is listed with dtype
/// and shape `unverified` (the page's load then reports its error code).
pub fn served_registry(root: &Path, extra: &[PathBuf]) -> Result<Value> {
    let mut registry = read_registry(root)?;
    for path in extra {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        if file.ends_with(ADAPTER_SUFFIX) && !file.starts_with('.') {
            let entry = registry["adapters"]
                .as_array_mut()
                .and_then(|list| {
                    list.iter_mut().find(|a| {
                        a["path"]
                            .as_str()
                            .is_some_and(|p| p.ends_with(&format!("/{file}")))
                    })
                })
                .with_context(|| format!("{file}: no registry adapter has that file"))?;
            entry["path"] = format!("{EXTRA_ROUTE}/{file}").into();
        }
    }
    let models = registry["models"]
        .as_array_mut()
        .context("registry models")?;
    for path in extra {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        if file.ends_with(ADAPTER_SUFFIX) && !file.starts_with('.') {
            continue;
        }
        let file = Some(file)
            .filter(|f| f.ends_with(".slm") && !f.starts_with('.'))
            .with_context(|| format!("{}: not a NAME.slm file", path.display()))?;
        let name = file.trim_end_matches(".slm");
        if models.iter().any(|m| m["id"] == name) {
            bail!("extra model {name}: the registry already has that id");
        }
        // Up to the budget + 1 byte (never a larger file whole): an entry over the budget
        // lists the file's true size, which the page's selection refuses.
        let reading = || format!("reading {}", path.display());
        let bytes = crate::read_model_prefix(path).with_context(reading)?;
        let size = std::fs::metadata(path).with_context(reading)?.len();
        let route = format!("{EXTRA_ROUTE}/{file}");
        models.push(model_entry(name, &route, &bytes).unwrap_or_else(|_| {
            json!({
                "id": name,
                "path": route,
                "bytes": size.max(bytes.len() as u64),
                "sha256": runtime::sha256::to_hex(&runtime::format::file_digest(&bytes)),
                "dtype": "unverified",
                "shape": "unverified",
            })
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

/// `/cases.json`: the standard cases, the overlong request, the steps case and the model the
/// page selects first (the CLI's built-in default).
pub fn cases_document() -> Value {
    let cases: Vec<Value> = standard_cases(SMOKE_MAX_NEW)
        .iter()
        .map(case_json)
        .collect();
    let greedy = steps_case().settings();
    json!({
        "max_new_tokens": SMOKE_MAX_NEW,
        "default_model": crate::fixtures::DEFAULT_MODEL_NAME,
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
    if !s.len().is_multiple_of(2) {
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
