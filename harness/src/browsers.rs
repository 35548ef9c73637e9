//! `tinyrustlm browsers`: runs the smoke page (browser-smoke/) headless in every installed
//! browser, and the Node engine, and compares what they report with the native engine: token
//! ids and logits digests of every registry model × standard case, the receipt and the standard
//! cases of every registry adapter applied to its base (a one-module plan), and the error codes
//! of the failure modes (malformed files — fetched, and again as a file chosen on the page, a
//! Blob —, a missing model, an overlong prompt, step-by-step reports), that the default model
//! loaded as a chosen file has its registry digest, and that commands sent at once run in turn
//! (`race`).
//!
//! Each browser starts on a fresh temporary profile with the flags and prefs of
//! shared/notes BROWSERS.md (no traffic beyond 127.0.0.1), in its own process group, which the
//! runner kills by the PID it started.

pub mod isolate;
pub mod launch;
pub mod speed;

use crate::conformance::{first_divergence, standard_cases};
use crate::engine::native::NativeEngine;
use crate::engine::node::{node_available, NodeEngine};
use crate::engine::{Engine, EngineError, GenResult};
use crate::malformed::adapters::StoredCase;
use crate::serve::{RunningServer, ServeConfig};
use crate::smoke::{self, overlong_prompt, steps_case, SMOKE_MAX_NEW};
use anyhow::{bail, Context, Result};
use launch::Browser;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The smoke modes one browser launch runs.
pub const ALL_MODES: &str = "1,malformed,missing,overlong,steps,race";

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Engines to run: "chromium", "firefox", "node" (None: every one available).
    pub only: Option<Vec<String>>,
    /// Registry models to run (None: all).
    pub models: Option<Vec<String>>,
    /// Smoke modes, comma-separated ([`ALL_MODES`]).
    pub modes: String,
    /// Longest wait for one browser's report.
    pub timeout: Duration,
    /// Save a PNG of the page after a generation in each browser here.
    pub screenshot: Option<PathBuf>,
    /// The server's settings (the corpus it serves, the module, the models added to the
    /// registry for this run only).
    pub serve: ServeConfig,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            only: None,
            models: None,
            modes: ALL_MODES.into(),
            timeout: Duration::from_secs(120),
            screenshot: None,
            serve: ServeConfig::default(),
        }
    }
}

/// One comparison against the native engine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub engine: String,
    pub model: String,
    pub case: String,
    /// Token ids equal (None when the row compares error codes).
    pub tokens_equal: Option<bool>,
    /// Logits digests (cumulative per step) equal.
    pub digests_equal: Option<bool>,
    pub ok: bool,
    pub detail: String,
}

/// Everything one run found.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// The run's network namespace held only loopback (kernel-enforced: no traffic could
    /// leave 127.0.0.1).
    pub isolated: bool,
    /// The engines that ran.
    pub engines: Vec<String>,
    /// The engines asked for but not installed.
    pub skipped: Vec<String>,
    pub rows: Vec<Row>,
    /// Page throughput reported per engine and model (tok/s of the last case).
    pub tok_s: Vec<(String, String, f64)>,
    /// Screenshots written.
    pub screenshots: Vec<PathBuf>,
}

impl Outcome {
    /// True when every row matched.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.ok)
    }

    /// The rows that failed.
    pub fn failures(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| !r.ok).collect()
    }

    /// The parity table as text.
    pub fn table(&self) -> String {
        let yn = |b: Option<bool>| match b {
            Some(true) => "equal",
            Some(false) => "DIFFER",
            None => "-",
        };
        let mut s = format!(
            "{:<9} {:<22} {:<28} {:<7} {:<7} {}\n",
            "engine", "model", "case", "tokens", "digests", "result"
        );
        for r in &self.rows {
            s += &format!(
                "{:<9} {:<22} {:<28} {:<7} {:<7} {}{}\n",
                r.engine,
                r.model,
                r.case,
                yn(r.tokens_equal),
                yn(r.digests_equal),
                if r.ok { "ok" } else { "FAIL" },
                if r.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.detail)
                }
            );
        }
        let failed = self.failures().len();
        s += &format!(
            "network: {}\n",
            if self.isolated {
                "a namespace holding only loopback"
            } else {
                "NOT isolated (flags and prefs only)"
            }
        );
        s += &format!(
            "engines: {}; skipped: {}; {} rows, {} failed\n",
            self.engines.join(", "),
            if self.skipped.is_empty() {
                "none".into()
            } else {
                self.skipped.join(", ")
            },
            self.rows.len(),
            failed
        );
        for (engine, model, t) in &self.tok_s {
            s += &format!("page tok/s: {engine} {model}: {t}\n");
        }
        s
    }
}

/// One registry model on the native engine: name, file, load result, results of the standard
/// cases.
type NativeModel = (
    String,
    PathBuf,
    Result<(), EngineError>,
    Vec<Result<GenResult, EngineError>>,
);

/// One registry adapter applied to its base on the native engine.
struct NativeAdapted {
    /// The adapter's registry id.
    id: String,
    base_file: PathBuf,
    /// The one-module plan the page builds from the registry.
    plan: Vec<u8>,
    module: Vec<u8>,
    /// The receipt bytes, or the apply error.
    receipt: Result<Vec<u8>, EngineError>,
    results: Vec<Result<GenResult, EngineError>>,
}

/// What the native engine gives for the inputs the page runs.
struct Expected {
    /// Registry models, in registry order.
    models: Vec<NativeModel>,
    /// Registry adapters whose base is selected and loads, in registry order.
    adapted: Vec<NativeAdapted>,
    /// Malformed manifest cases: name, native load code (0 = loaded), whether the case is a
    /// stored file (the page then also loads it as a chosen file).
    malformed: Vec<(String, u32, bool)>,
    /// The registry's file digest (hex) of each model, by id.
    digests: BTreeMap<String, String>,
    /// The adapter, plan and apply cases of corpus/malformed/adapters/ (receipts have no ABI
    /// reader): the manifest's code, which native reports too (harness/tests/malformed_matrix.rs).
    malformed_adapters: Vec<StoredCase>,
    /// The overlong prompt on the default model: the native code.
    overlong: u32,
    /// The steps case on the default model.
    steps: GenResult,
}

fn native_code(bytes: Vec<u8>) -> u32 {
    match NativeEngine::default().load(&bytes) {
        Ok(_) => 0,
        Err(e) => e.code,
    }
}

/// What native gives for the page's inputs, with `serve` the run's server settings.
fn expected(opts: &Options, serve: &ServeConfig, registry: &Value) -> Result<Expected> {
    let corpus = &serve.corpus;
    let cases = standard_cases(SMOKE_MAX_NEW);
    let mut models = Vec::new();
    for m in selected_models(opts, registry)? {
        let file = model_file(serve, m["path"].as_str().context("registry path")?)?;
        // Up to the budget + 1 byte: a larger model is refused by the engine, never read whole.
        let bytes = read_model_bytes(&file)?;
        let mut engine = NativeEngine::default();
        let load = engine.load(&bytes).map(|_| ());
        let results = if load.is_ok() {
            crate::conformance::run_cases(&mut engine, &cases)
        } else {
            Vec::new()
        };
        models.push((
            m["id"].as_str().unwrap_or_default().into(),
            file,
            load,
            results,
        ));
    }
    let mut adapted = Vec::new();
    for a in registry["adapters"]
        .as_array()
        .context("registry adapters")?
    {
        let base = a["base"].as_str().unwrap_or_default();
        let Some((_, base_file, Ok(()), _)) = models.iter().find(|m| m.0 == base) else {
            continue;
        };
        let model = registry["models"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["id"] == base))
            .context("adapter base")?;
        let route = a["path"].as_str().context("adapter path")?;
        let module = std::fs::read(model_file(serve, route)?)?;
        let plan = smoke::registry_plan(model, std::slice::from_ref(a))?;
        let mut engine = NativeEngine::default();
        engine
            .load(&std::fs::read(base_file)?)
            .map_err(anyhow::Error::msg)?;
        let receipt = engine.apply_plan(&plan, &[&module]);
        let results = if receipt.is_ok() {
            crate::conformance::run_cases(&mut engine, &cases)
        } else {
            Vec::new()
        };
        adapted.push(NativeAdapted {
            id: a["id"].as_str().unwrap_or_default().into(),
            base_file: base_file.clone(),
            plan,
            module,
            receipt,
            results,
        });
    }
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(corpus.join("malformed/manifest.json")).context("malformed manifest")?,
    )?;
    let mut malformed = Vec::new();
    for c in manifest["cases"].as_array().context("manifest cases")? {
        let bytes = match c["file"].as_str() {
            Some(f) => std::fs::read(corpus.join("malformed").join(f))?,
            None => vec![0; c["bytes"].as_u64().context("bytes")? as usize],
        };
        malformed.push((
            c["name"].as_str().unwrap_or_default().into(),
            native_code(bytes),
            c["file"].is_string(),
        ));
    }
    let malformed_adapters = crate::malformed::adapters::stored_cases(corpus)?
        .into_iter()
        .filter(|c| c.check != "receipt")
        .collect();
    let default =
        std::fs::read(corpus.join(format!("{}.slm", crate::fixtures::DEFAULT_MODEL_NAME)))?;
    let mut engine = NativeEngine::default();
    engine.load(&default).map_err(anyhow::Error::msg)?;
    let overlong = steps_case();
    let mut req = overlong.request();
    req.prompt = overlong_prompt();
    let overlong = match engine.generate(&req) {
        Ok(_) => 0,
        Err(e) => e.code,
    };
    let steps = engine
        .generate(&steps_case().request())
        .map_err(anyhow::Error::msg)?;
    let digests = registry["models"]
        .as_array()
        .context("registry models")?
        .iter()
        .map(|m| {
            let field = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (field("id"), field("sha256"))
        })
        .collect();
    Ok(Expected {
        models,
        adapted,
        malformed,
        digests,
        malformed_adapters,
        overlong,
        steps,
    })
}

/// The file behind a registry route: `corpus/PATH` in the corpus, `extra/FILE` among the extra
/// files (models, and adapters served there).
fn model_file(serve: &ServeConfig, route: &str) -> Result<PathBuf> {
    if let Some(rel) = route.strip_prefix("corpus/") {
        return Ok(serve.corpus.join(rel));
    }
    let name = route
        .strip_prefix(smoke::EXTRA_ROUTE)
        .and_then(|r| r.strip_prefix('/'))
        .with_context(|| format!("registry path {route}: neither corpus/ nor extra/"))?;
    serve
        .extra_models
        .iter()
        .find(|p| p.file_name().and_then(|f| f.to_str()) == Some(name))
        .cloned()
        .with_context(|| format!("no extra model {name}"))
}

fn selected_models<'a>(opts: &Options, registry: &'a Value) -> Result<Vec<&'a Value>> {
    let all = registry["models"].as_array().context("registry models")?;
    // A name that selects nothing is a mistake, not an empty selection that passes.
    for name in opts.models.iter().flatten() {
        if !all.iter().any(|m| m["id"].as_str() == Some(name.as_str())) {
            bail!("--models: no model {name:?} in the page's registry");
        }
    }
    Ok(all
        .iter()
        .filter(|m| {
            opts.models
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| Some(n.as_str()) == m["id"].as_str()))
        })
        .collect())
}

fn wanted(opts: &Options, engine: &str) -> bool {
    opts.only
        .as_ref()
        .is_none_or(|o| o.iter().any(|e| e == engine))
}

/// Runs the smoke page in every wanted browser and the Node engine against the native engine.
pub fn run(opts: &Options) -> Result<Outcome> {
    const ENGINES: [&str; 3] = ["chromium", "firefox", "node"];
    for engine in opts.only.iter().flatten() {
        if !ENGINES.contains(&engine.as_str()) {
            bail!(
                "--only: unknown engine {engine:?} (the engines are {})",
                ENGINES.join(", ")
            );
        }
    }
    let known: Vec<&str> = ALL_MODES.split(',').collect();
    for mode in opts.modes.split(',') {
        if !known.contains(&mode) {
            bail!("--modes: unknown mode {mode:?} (the modes are {ALL_MODES})");
        }
    }
    if opts.serve.wasm.is_none() {
        bail!("no wasm module: build the harness (harness/build.rs sets TRLM_WASM_PATH) or set TRLM_WASM_PATH");
    }
    let mut serve = opts.serve.clone();
    serve
        .extra_models
        .extend(smoke::adapter_files(&serve.root, &serve.corpus)?);
    let registry = smoke::served_registry(&serve.root, &serve.extra_models)?;
    let expected = expected(opts, &serve, &registry)?;
    let server = RunningServer::start(serve)?;
    let mut out = Outcome {
        isolated: isolate::loopback_only(),
        ..Outcome::default()
    };
    for browser in [Browser::Chromium, Browser::Firefox] {
        if !wanted(opts, browser.name()) {
            continue;
        }
        let Some(exe) = browser.find() else {
            out.skipped.push(browser.name().into());
            continue;
        };
        out.engines.push(browser.name().into());
        let only = opts
            .models
            .as_ref()
            .map(|m| format!("&only={}", m.join(",")))
            .unwrap_or_default();
        // Every mode on the module the page picks (simd128 here), then the generation cases on
        // the scalar module (`?wasm=scalar`): both builds are held to native's output.
        let mut passes = vec![(
            browser.name().to_string(),
            opts.modes.clone(),
            "",
            "simd128",
        )];
        if opts.modes.split(',').any(|m| m == "1") {
            let engine = format!("{}-scalar", browser.name());
            passes.push((engine, "1".into(), "&wasm=scalar", "scalar"));
        }
        for (engine, modes, wasm, variant) in passes {
            let run_id = launch::run_id(&engine);
            let query = format!("/?smoke={modes}{wasm}&run={run_id}{only}");
            let reports = launch::run_until_report(
                browser,
                &exe,
                &server,
                &server.url(&query),
                &run_id,
                opts.timeout,
            )?;
            compare_report(&engine, &reports, &expected, &mut out);
            variant_row(&engine, &reports, variant, &mut out);
        }
        if let Some(dir) = &opts.screenshot {
            let png = launch::screenshot(browser, &exe, &server, dir, opts.timeout)?;
            out.screenshots.push(png);
        }
    }
    if wanted(opts, "node") {
        match opts.serve.wasm.as_deref() {
            Some(wasm) if node_available() => {
                out.engines.push("node".into());
                run_node(wasm, opts, &expected, &mut out)?;
            }
            _ => out.skipped.push("node".into()),
        }
    }
    server.shutdown();
    Ok(out)
}

fn row(engine: &str, model: &str, case: &str) -> Row {
    Row {
        engine: engine.into(),
        model: model.into(),
        case: case.into(),
        tokens_equal: None,
        digests_equal: None,
        ok: false,
        detail: String::new(),
    }
}

/// A row comparing one generation with native's.
fn gen_row(engine: &str, model: &str, case: &str, got: &GenResult, want: &GenResult) -> Row {
    let mut r = row(engine, model, case);
    r.tokens_equal = Some(got.tokens == want.tokens && got.prompt_tokens == want.prompt_tokens);
    r.digests_equal =
        Some(got.step_digests == want.step_digests && got.logits_digest == want.logits_digest);
    match first_divergence(got, want) {
        None => r.ok = true,
        Some(d) => r.detail = d,
    }
    r
}

/// A row comparing an error code with native's.
fn code_row(engine: &str, model: &str, case: &str, got: Option<u64>, want: u32) -> Row {
    let mut r = row(engine, model, case);
    r.ok = got == Some(u64::from(want));
    r.detail = match got {
        Some(g) => format!("code {g}, native {want}"),
        None => format!("no code reported, native {want}"),
    };
    r
}

/// A row checking which wasm module the page ran (simd128 by feature detection, or scalar when
/// forced): every supported browser here validates simd128.
fn variant_row(engine: &str, reports: &[Value], want: &str, out: &mut Outcome) {
    let got = reports
        .iter()
        .find(|r| r["kind"] == "final")
        .and_then(|r| r["wasm_variant"].as_str())
        .unwrap_or("none");
    let mut r = row(engine, "-", "wasm module");
    r.ok = got == want;
    r.detail = format!("ran the {got} module (expected {want})");
    out.rows.push(r);
}

fn compare_report(engine: &str, reports: &[Value], exp: &Expected, out: &mut Outcome) {
    let Some(fin) = reports.iter().find(|r| r["kind"] == "final") else {
        let mut r = row(engine, "-", "report");
        r.detail = format!(
            "no final report arrived ({} step reports)",
            reports.iter().filter(|r| r["kind"] == "step").count()
        );
        out.rows.push(r);
        return;
    };
    if let Some(fatal) = fin["fatal"].as_str() {
        let mut r = row(engine, "-", "page");
        r.detail = format!("the page failed: {fatal}");
        out.rows.push(r);
    }
    let modes = &fin["modes"];
    if let Some(models) = modes["cases"].as_array() {
        compare_cases(engine, models, exp, out);
    }
    if let Some(adapted) = modes["adapted"].as_array() {
        compare_adapted(engine, adapted, exp, out);
    }
    if let Some(list) = modes["malformed"].as_array() {
        for (name, want, stored) in &exp.malformed {
            let got = list.iter().find(|c| c["name"] == name.as_str());
            out.rows.push(code_row(
                engine,
                "malformed",
                name,
                got.and_then(|c| c["code"].as_u64()),
                *want,
            ));
            // The same bytes as a file chosen on the page (a Blob, no registry entry).
            if *stored {
                out.rows.push(code_row(
                    engine,
                    "malformed (as a file)",
                    name,
                    got.and_then(|c| c["file_code"].as_u64()),
                    *want,
                ));
            }
        }
    }
    let file_load = &modes["file_load"];
    if !file_load.is_null() {
        let model = file_load["model"].as_str().unwrap_or("-");
        let want = exp.digests.get(model).map(String::as_str).unwrap_or("none");
        let mut r = row(engine, model, "loaded as a file");
        r.ok = file_load["ok"] == true && file_load["digest"] == want;
        r.detail = format!(
            "ok {}, code {}, digest {} (registry {want})",
            file_load["ok"], file_load["code"], file_load["digest"]
        );
        out.rows.push(r);
    }
    if let Some(list) = modes["malformed_adapters"].as_array() {
        for c in &exp.malformed_adapters {
            let got = list.iter().find(|g| g["name"] == c.name.as_str());
            out.rows.push(code_row(
                engine,
                &format!("malformed-adapters {}", c.check),
                &c.name,
                got.and_then(|g| g["code"].as_u64()),
                c.code,
            ));
        }
    }
    let missing = &modes["missing"];
    if !missing.is_null() {
        let mut r = row(engine, "missing", "http 404");
        r.ok = missing["ok"] == false && missing["http_status"] == 404;
        r.detail = format!("ok {}, http {}", missing["ok"], missing["http_status"]);
        out.rows.push(r);
    }
    let overlong = &modes["overlong"];
    if !overlong.is_null() {
        let model = overlong["model"].as_str().unwrap_or("-");
        out.rows.push(code_row(
            engine,
            model,
            "overlong prompt",
            overlong["code"].as_u64(),
            exp.overlong,
        ));
    }
    let steps = &modes["steps"];
    if !steps.is_null() {
        compare_steps(engine, steps, reports, exp, out);
    }
    let race = &modes["race"];
    if !race.is_null() {
        let model = race["model"].as_str().unwrap_or("-");
        let mut r = row(engine, model, "commands in turn");
        let flags = [
            "loads_ok",
            "generations_ok",
            "same_result",
            "click_ok",
            "second_click_ignored",
            "buttons_follow_the_loaded_model",
        ];
        r.ok = flags.iter().all(|f| race[f] == true);
        let failed: Vec<&str> = flags.iter().copied().filter(|f| race[f] != true).collect();
        r.detail = if r.ok {
            "two loads, a generation and a second click: in turn".into()
        } else {
            format!("not true: {} ({})", failed.join(", "), race["message"])
        };
        out.rows.push(r);
    }
}

fn compare_cases(engine: &str, models: &[Value], exp: &Expected, out: &mut Outcome) {
    let cases = standard_cases(SMOKE_MAX_NEW);
    for (name, _, load, results) in &exp.models {
        let Some(m) = models.iter().find(|m| m["name"] == name.as_str()) else {
            let mut r = row(engine, name, "load");
            r.detail = "model missing from the report".into();
            out.rows.push(r);
            continue;
        };
        if let Err(e) = load {
            out.rows.push(code_row(
                engine,
                name,
                "load",
                m["load"]["code"].as_u64(),
                e.code,
            ));
            continue;
        }
        if m["load"]["ok"] != true {
            let mut r = row(engine, name, "load");
            r.detail = format!("load failed: {}", m["load"]);
            out.rows.push(r);
            continue;
        }
        let got_cases = m["cases"].as_array().cloned().unwrap_or_default();
        let mut last_tok_s = None;
        for (case, want) in cases.iter().zip(results) {
            let got = got_cases.iter().find(|c| c["name"] == case.name);
            let r = match (got, want) {
                (Some(g), Ok(w)) if g["ok"] == true => match smoke::parse_result(&g["result"]) {
                    Ok(res) => {
                        last_tok_s = g["tok_s"].as_f64().or(last_tok_s);
                        gen_row(engine, name, case.name, &res, w)
                    }
                    Err(e) => {
                        let mut r = row(engine, name, case.name);
                        r.detail = format!("unreadable result: {e:#}");
                        r
                    }
                },
                (Some(g), Err(e)) => code_row(engine, name, case.name, g["code"].as_u64(), e.code),
                (Some(g), Ok(_)) => {
                    let mut r = row(engine, name, case.name);
                    r.detail = format!("failed: {} {}", g["code"], g["message"]);
                    r
                }
                (None, _) => {
                    let mut r = row(engine, name, case.name);
                    r.detail = "case missing from the report".into();
                    r
                }
            };
            out.rows.push(r);
        }
        if let Some(t) = last_tok_s {
            out.tok_s.push((engine.into(), name.clone(), t));
        }
    }
}

/// The receipt row of one adapted model.
fn receipt_row(
    engine: &str,
    id: &str,
    got: Result<&str, Option<u64>>,
    want: &NativeAdapted,
) -> Row {
    let mut r = row(engine, id, "receipt");
    match (got, &want.receipt) {
        (Ok(hex), Ok(w)) => {
            r.ok = hex == smoke::hex(w);
            r.detail = if r.ok {
                format!(
                    "receipt sha256 {}",
                    runtime::sha256::to_hex(&runtime::sha256::sha256(w))
                )
            } else {
                format!("receipt {hex} differs from native {}", smoke::hex(w))
            };
        }
        (Err(code), Err(e)) => return code_row(engine, id, "receipt", code, e.code),
        (Ok(_), Err(e)) => r.detail = format!("applied; native refuses with {}", e.code),
        (Err(code), Ok(_)) => r.detail = format!("refused with {code:?}; native applies it"),
    }
    r
}

fn compare_adapted(engine: &str, adapted: &[Value], exp: &Expected, out: &mut Outcome) {
    let cases = standard_cases(SMOKE_MAX_NEW);
    for want in &exp.adapted {
        let id = want.id.as_str();
        let Some(a) = adapted.iter().find(|a| a["name"] == id) else {
            let mut r = row(engine, id, "receipt");
            r.detail = "adapter missing from the report".into();
            out.rows.push(r);
            continue;
        };
        let got = if a["apply"]["ok"] == true {
            Ok(a["receipt_hex"].as_str().unwrap_or_default())
        } else {
            Err(a["apply"]["code"].as_u64())
        };
        out.rows.push(receipt_row(engine, id, got, want));
        let got_cases = a["cases"].as_array().cloned().unwrap_or_default();
        for (case, w) in cases.iter().zip(&want.results) {
            let g = got_cases.iter().find(|c| c["name"] == case.name);
            let r = match (g, w) {
                (Some(g), Ok(w)) if g["ok"] == true => match smoke::parse_result(&g["result"]) {
                    Ok(res) => gen_row(engine, id, case.name, &res, w),
                    Err(e) => {
                        let mut r = row(engine, id, case.name);
                        r.detail = format!("unreadable result: {e:#}");
                        r
                    }
                },
                (Some(g), Err(e)) => code_row(engine, id, case.name, g["code"].as_u64(), e.code),
                (g, _) => {
                    let mut r = row(engine, id, case.name);
                    r.detail = format!("case failed or missing: {:?}", g.map(|g| &g["message"]));
                    r
                }
            };
            out.rows.push(r);
        }
    }
}

fn compare_steps(
    engine: &str,
    steps: &Value,
    reports: &[Value],
    exp: &Expected,
    out: &mut Outcome,
) {
    let model = steps["model"].as_str().unwrap_or("-");
    let list = steps["steps"].as_array().cloned().unwrap_or_default();
    let digests: Vec<String> = list
        .iter()
        .filter(|s| s["state"] == 0 || s["logit_steps"].as_u64() > Some(0))
        .map(|s| s["logits_digest"].as_str().unwrap_or_default().to_string())
        .collect();
    let tokens: Vec<u64> = list
        .iter()
        .filter(|s| s["state"] == 0)
        .filter_map(|s| s["token"].as_u64())
        .collect();
    let mut r = row(engine, model, "steps");
    let want_tokens: Vec<u64> = exp.steps.tokens.iter().map(|&t| u64::from(t)).collect();
    r.tokens_equal = Some(tokens == want_tokens);
    // Every step record carries the cumulative digest: the distinct ones, in order, are native's
    // per-step digests.
    let mut distinct = digests.clone();
    distinct.dedup();
    r.digests_equal = Some(distinct == exp.steps.step_digests);
    // A report sent again (after a hung POST) counts once.
    let mut indexes: Vec<u64> = reports
        .iter()
        .filter(|p| p["kind"] == "step")
        .filter_map(|p| p["index"].as_u64())
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    let posted = indexes.len();
    r.ok = r.tokens_equal == Some(true) && r.digests_equal == Some(true) && posted == list.len();
    r.detail = format!("{} steps, {posted} step reports", list.len());
    out.rows.push(r);
}

/// [`crate::read_model_prefix`] with the file named in its error.
fn read_model_bytes(file: &Path) -> Result<Vec<u8>> {
    crate::read_model_prefix(file).with_context(|| format!("reading {}", file.display()))
}

fn run_node(wasm: &Path, opts: &Options, exp: &Expected, out: &mut Outcome) -> Result<()> {
    let corpus = &opts.serve.corpus;
    let mut node = NodeEngine::spawn(wasm)?;
    let cases = standard_cases(SMOKE_MAX_NEW);
    for (name, file, load, results) in &exp.models {
        let bytes = read_model_bytes(file)?;
        match (node.load(&bytes), load) {
            (Ok(_), Ok(())) => {}
            (got, want) => {
                let code = got.err().map(|e| u64::from(e.code));
                let want = want.as_ref().err().map(|e| e.code).unwrap_or(0);
                out.rows
                    .push(code_row("node", name, "load", code.or(Some(0)), want));
                continue;
            }
        }
        for (case, want) in cases.iter().zip(results) {
            let r = match (node.generate(&case.request()), want) {
                (Ok(g), Ok(w)) => gen_row("node", name, case.name, &g, w),
                (got, want) => code_row(
                    "node",
                    name,
                    case.name,
                    Some(got.err().map(|e| u64::from(e.code)).unwrap_or(0)),
                    want.as_ref().err().map(|e| e.code).unwrap_or(0),
                ),
            };
            out.rows.push(r);
        }
    }
    if opts.modes.split(',').any(|m| m == "1") {
        for want in &exp.adapted {
            let id = want.id.as_str();
            node.load(&std::fs::read(&want.base_file)?)
                .map_err(anyhow::Error::msg)?;
            let receipt = node.apply_plan(&want.plan, &[&want.module]);
            let hex = receipt.as_ref().map(|b| smoke::hex(b));
            let got = match &hex {
                Ok(h) => Ok(h.as_str()),
                Err(e) => Err(Some(u64::from(e.code))),
            };
            out.rows.push(receipt_row("node", id, got, want));
            if receipt.is_err() {
                continue;
            }
            for (case, w) in cases.iter().zip(&want.results) {
                let r = match (node.generate(&case.request()), w) {
                    (Ok(g), Ok(w)) => gen_row("node", id, case.name, &g, w),
                    (got, w) => code_row(
                        "node",
                        id,
                        case.name,
                        Some(got.err().map(|e| u64::from(e.code)).unwrap_or(0)),
                        w.as_ref().err().map(|e| e.code).unwrap_or(0),
                    ),
                };
                out.rows.push(r);
            }
        }
    }
    if opts.modes.split(',').any(|m| m == "malformed") {
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(corpus.join("malformed/manifest.json"))?)?;
        for (c, (name, want, _)) in manifest["cases"]
            .as_array()
            .context("manifest cases")?
            .iter()
            .zip(&exp.malformed)
        {
            let bytes = match c["file"].as_str() {
                Some(f) => std::fs::read(corpus.join("malformed").join(f))?,
                None => vec![0; c["bytes"].as_u64().unwrap_or(0) as usize],
            };
            let got = node.load(&bytes).err().map(|e| e.code).unwrap_or(0);
            out.rows.push(code_row(
                "node",
                "malformed",
                name,
                Some(u64::from(got)),
                *want,
            ));
        }
        for c in &exp.malformed_adapters {
            let status = |r: Result<(), EngineError>| r.err().map_or(0, |e| e.code);
            let got = match (c.check.as_str(), &c.file, &c.apply) {
                ("adapter", Some(b), _) => status(node.validate_adapter(b)),
                ("plan", Some(b), _) => status(node.unload().and_then(|_| node.validate_plan(b))),
                ("apply", _, Some(a)) => {
                    let ms: Vec<&[u8]> = a.modules.iter().map(|m| &m[..]).collect();
                    status(
                        node.load(&a.base)
                            .and_then(|_| node.apply_plan(&a.plan, &ms).map(|_| ())),
                    )
                }
                _ => continue,
            };
            out.rows.push(code_row(
                "node",
                &format!("malformed-adapters {}", c.check),
                &c.name,
                Some(u64::from(got)),
                c.code,
            ));
        }
    }
    Ok(())
}
