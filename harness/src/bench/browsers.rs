//! `tinyrustlm bench browsers`: the figures of `bench model` measured by the page itself in
//! every installed headless browser, next to the native engine's in the same run.
//!
//! The models are `bench model`'s ([`super::model::select`]: seeded, built in memory, written
//! to a temporary folder for this run only) and the server serves them under `/bench/` only.
//! Each browser opens the page once with `?bench=NAME,...&runs=N&prompt=BYTES&decode=TOKENS`;
//! its worker measures each model (browser-smoke/bench.js: fetch, load + verify of bytes in
//! memory, fetch + load streamed, prefill, decode with the logits digest off, wasm memory
//! after load and at the end), shows the medians in a table and POSTs every run's times. The
//! runner turns those times into [`Row`]s with the same [`Stats`] as every other engine, so
//! the rows print exactly like `bench model`'s, with the decode ratio to native and the peak
//! (the page's wasm memory at the end: linear memory never shrinks) against the budget.
//!
//! Why a command of its own rather than `bench model --engine chromium`: a `bench model`
//! engine runs in-process, one run at a time, in rounds with the others; a browser is a
//! separate process with a startup of seconds that measures every model in one launch through
//! the server, inside the loopback-only network namespace the runner re-executes itself in (as
//! `tinyrustlm browsers`). So native is measured before and after the browsers instead.

use super::engines::{self, Context, Measured, ENGINES};
use super::model::{self, BenchModel, Row, Skipped, DECODE_TOKENS, PROMPT_TOKENS};
use super::{load_average, Stats};
use crate::browsers::isolate;
use crate::browsers::launch::{self, Browser, TempDir};
use crate::serve::{RunningServer, ServeConfig};
use anyhow::{bail, ensure, Context as _, Result};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// Issue #8: load + verify of a 16 MB model in Chromium under this many milliseconds.
pub const CHROMIUM_LOAD_TARGET_MS: f64 = 100.0;
/// The model size that target is stated for (bytes).
pub const LOAD_TARGET_FILE_BYTES: f64 = 16e6;
/// The engines `--engine` picks from.
pub const ENGINE_NAMES: &str = "native,chromium,firefox";

/// What to measure: empty lists mean all.
pub struct Selection<'a> {
    /// Timed runs per measurement (after one warm-up run).
    pub runs: usize,
    /// Only this shape.
    pub shape: Option<&'a str>,
    /// Dtype names (f32, f16, q8_0, q4_0).
    pub dtypes: &'a [String],
    /// Of [`ENGINE_NAMES`].
    pub engines: &'a [String],
    /// Longest wait for one browser's report.
    pub timeout: Duration,
}

/// One browser's figures for one model.
#[derive(Clone, Debug, Serialize)]
pub struct PageRow {
    /// In `bench model`'s terms: load = load + verify of bytes in memory, peak = the wasm
    /// memory at the end.
    pub row: Row,
    /// The module the page ran ("simd128" or "scalar").
    pub wasm_variant: String,
    pub user_agent: String,
    /// Fetch of the file into memory over loopback HTTP, seconds.
    pub fetch_s: Stats,
    /// The page's own path: fetch streamed into the chunked loader, seconds.
    pub fetch_load_s: Stats,
    /// `memory.buffer.byteLength` after the first load and at the end.
    pub wasm_memory_after_load_bytes: usize,
    pub wasm_memory_end_bytes: usize,
    /// The page's report for this model, as it arrived.
    pub page: Value,
}

/// Chromium's load + verify against the target.
#[derive(Clone, Debug, Serialize)]
pub struct LoadTarget {
    pub model: String,
    pub file_bytes: usize,
    pub load_verify_ms: f64,
    /// Scaled linearly to a 16 MB file.
    pub per_16mb_ms: f64,
    pub target_ms: f64,
    pub met: bool,
}

/// The whole report (`--json` prints it).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub bench: &'static str,
    pub runs: usize,
    pub prompt_tokens: usize,
    pub decode_tokens: u32,
    /// The run's network namespace held only loopback.
    pub isolated: bool,
    pub load_average_before: Option<[f64; 3]>,
    pub load_average_after: Option<[f64; 3]>,
    /// The native engine's rows (this binary: measure with a release build), measured before
    /// the browsers and again after them.
    pub native: Vec<Row>,
    pub native_after: Vec<Row>,
    pub pages: Vec<PageRow>,
    pub load_target: Vec<LoadTarget>,
    pub skipped: Vec<Skipped>,
    /// Browsers asked for but not installed.
    pub skipped_engines: Vec<String>,
    /// What went wrong (a page error, a missing or malformed figure): the run fails.
    pub failures: Vec<String>,
}

/// The row engine name of a browser running a module variant.
fn engine_name(browser: Browser, variant: &str) -> &'static str {
    match (browser, variant) {
        (Browser::Chromium, "simd128") => "chromium",
        (Browser::Chromium, _) => "chromium-scalar",
        (Browser::Firefox, "simd128") => "firefox",
        (Browser::Firefox, _) => "firefox-scalar",
    }
}

/// Every run's time of `key` in seconds, in the page's order: `runs` positive finite numbers
/// of milliseconds.
fn run_secs(entry: &Value, key: &str, runs: usize) -> Result<Vec<f64>> {
    let list = entry["times"][key]
        .as_array()
        .with_context(|| format!("no {key} times"))?;
    ensure!(list.len() == runs, "{key}: {} runs, not {runs}", list.len());
    list.iter()
        .map(|v| match v.as_f64() {
            Some(ms) if ms.is_finite() && ms > 0.0 => Ok(ms / 1e3),
            _ => bail!("{key}: {v} is not a positive time"),
        })
        .collect()
}

/// [`run_secs`] as [`Stats`].
fn times(entry: &Value, key: &str, runs: usize) -> Result<Stats> {
    run_secs(entry, key, runs).map(Stats::of)
}

fn count(entry: &Value, key: &str) -> Result<u64> {
    entry[key].as_u64().with_context(|| format!("no {key}"))
}

/// The page's figures for `model` (its entry of the final report) as a [`PageRow`].
fn page_row(
    browser: Browser,
    fin: &Value,
    entry: &Value,
    model: &BenchModel,
    runs: usize,
    native: Option<&Measured>,
) -> Result<PageRow> {
    if entry["ok"] != true {
        bail!("error {}: {}", entry["code"], entry["message"]);
    }
    ensure!(
        count(entry, "file_bytes")? == model.bytes.len() as u64,
        "the page loaded {} bytes; the file has {}",
        entry["file_bytes"],
        model.bytes.len()
    );
    ensure!(
        count(entry, "prompt_tokens")? == PROMPT_TOKENS as u64,
        "prefill ran {} prompt tokens, not {PROMPT_TOKENS}",
        entry["prompt_tokens"]
    );
    ensure!(
        count(entry, "decode_tokens")? == u64::from(DECODE_TOKENS),
        "decode generated {} tokens, not {DECODE_TOKENS}",
        entry["decode_tokens"]
    );
    let after_load = count(entry, "wasm_memory_after_load_bytes")? as usize;
    let end = count(entry, "wasm_memory_end_bytes")? as usize;
    ensure!(
        after_load > 0 && after_load <= end,
        "wasm memory {after_load} after load, {end} at the end"
    );
    // The page times its prefills and decodes in rounds (bench.js): run r of each made back to
    // back, so its prefill/decode pairs them as `bench model`'s engines do.
    let (prefill_s, decode_s) = (
        run_secs(entry, "prefill_ms", runs)?,
        run_secs(entry, "decode_ms", runs)?,
    );
    let measured = Measured {
        load: times(entry, "load_ms", runs)?,
        prefill: Stats::of(prefill_s.clone()),
        decode: Stats::of(decode_s.clone()),
        prefill_rounds_s: prefill_s,
        decode_rounds_s: decode_s,
        rounds_with_native: false,
        decode_logits_digest: false,
        peak_bytes: Some(end),
        peak_kind: "wasm linear memory",
    };
    let variant = match fin["wasm_variant"].as_str() {
        Some(v @ ("simd128" | "scalar")) => v.to_string(),
        other => bail!(
            "{}: the page's wasm_variant is {other:?}, not simd128 or scalar",
            browser.name()
        ),
    };
    Ok(PageRow {
        row: model.row(engine_name(browser, &variant), &measured, native, None),
        wasm_variant: variant,
        user_agent: fin["user_agent"].as_str().unwrap_or_default().into(),
        fetch_s: times(entry, "fetch_ms", runs)?,
        fetch_load_s: times(entry, "fetch_load_ms", runs)?,
        wasm_memory_after_load_bytes: after_load,
        wasm_memory_end_bytes: end,
        page: entry.clone(),
    })
}

/// Runs the page bench in `browser` on `models` and appends its rows (or failures).
#[allow(clippy::too_many_arguments)]
fn run_browser(
    browser: Browser,
    exe: &std::path::Path,
    server: &RunningServer,
    models: &[BenchModel],
    natives: &[Option<Measured>],
    sel: &Selection,
    pages: &mut Vec<PageRow>,
    failures: &mut Vec<String>,
) -> Result<()> {
    let names: Vec<String> = models.iter().map(BenchModel::name).collect();
    let run_id = launch::run_id(&format!("bench-{}", browser.name()));
    let query = format!(
        "/?bench={}&runs={}&prompt={}&decode={DECODE_TOKENS}&run={run_id}",
        names.join(","),
        sel.runs,
        PROMPT_TOKENS - 1,
    );
    let reports = launch::run_until_report(
        browser,
        exe,
        server,
        &server.url(&query),
        &run_id,
        sel.timeout,
    )?;
    let who = browser.name();
    let Some(fin) = reports.iter().find(|r| r["kind"] == "final") else {
        failures.push(format!("{who}: no report within {:?}", sel.timeout));
        return Ok(());
    };
    if let Some(fatal) = fin["fatal"].as_str() {
        failures.push(format!("{who}: the page failed: {fatal}"));
        return Ok(());
    }
    let entries = fin["bench"].as_array().cloned().unwrap_or_default();
    for ((model, name), native) in models.iter().zip(&names).zip(natives) {
        let Some(entry) = entries.iter().find(|e| e["name"] == name.as_str()) else {
            failures.push(format!("{who} {name}: missing from the report"));
            continue;
        };
        match page_row(browser, fin, entry, model, sel.runs, native.as_ref()) {
            Ok(row) => pages.push(row),
            Err(e) => failures.push(format!("{who} {name}: {e:#}")),
        }
    }
    Ok(())
}

/// Chromium's load + verify rows against [`CHROMIUM_LOAD_TARGET_MS`].
fn load_targets(pages: &[PageRow]) -> Vec<LoadTarget> {
    pages
        .iter()
        .filter(|p| p.row.engine == "chromium")
        .map(|p| {
            let ms = p.row.load_s.median_s * 1e3;
            let per_16mb_ms = ms * LOAD_TARGET_FILE_BYTES / p.row.file_bytes as f64;
            LoadTarget {
                model: format!("{}-{}", p.row.shape, p.row.dtype),
                file_bytes: p.row.file_bytes,
                load_verify_ms: ms,
                per_16mb_ms,
                target_ms: CHROMIUM_LOAD_TARGET_MS,
                met: per_16mb_ms < CHROMIUM_LOAD_TARGET_MS,
            }
        })
        .collect()
}

fn mib(b: usize) -> f64 {
    b as f64 / 1048576.0
}

fn print_text(report: &Report, models: &[BenchModel]) -> std::io::Result<()> {
    let name_of = |r: &Row| format!("{}-{}", r.shape, r.dtype);
    for model in models {
        let name = model.name();
        for native in report.native.iter().filter(|r| name_of(r) == name) {
            model::print_row(native)?;
        }
        for native in report.native_after.iter().filter(|r| name_of(r) == name) {
            let mut row = native.clone();
            row.engine = "native (after)";
            model::print_row(&row)?;
        }
        for p in report.pages.iter().filter(|p| name_of(&p.row) == name) {
            model::print_row(&p.row)?;
            crate::outln!(
                "{:<33} page: {} module; fetch {:.1} ms ({:.1}..{:.1}); fetch+load {:.1} ms \
                 ({:.1}..{:.1}); wasm memory {:.2} MiB after load, {:.2} MiB at the end",
                "",
                p.wasm_variant,
                p.fetch_s.median_s * 1e3,
                p.fetch_s.min_s * 1e3,
                p.fetch_s.max_s * 1e3,
                p.fetch_load_s.median_s * 1e3,
                p.fetch_load_s.min_s * 1e3,
                p.fetch_load_s.max_s * 1e3,
                mib(p.wasm_memory_after_load_bytes),
                mib(p.wasm_memory_end_bytes),
            )?;
        }
    }
    for s in &report.skipped {
        model::print_skipped(s)?;
    }
    for t in &report.load_target {
        crate::outln!(
            "chromium load+verify {}: {:.1} ms for {:.2} MB = {:.1} ms per 16 MB; target < {} ms \
             per 16 MB: {}",
            t.model,
            t.load_verify_ms,
            t.file_bytes as f64 / 1e6,
            t.per_16mb_ms,
            t.target_ms,
            if t.met { "met" } else { "MISSED" }
        )?;
    }
    if !report.skipped_engines.is_empty() {
        crate::outln!("not installed: {}", report.skipped_engines.join(", "))?;
    }
    crate::outln!(
        "network: {}",
        if report.isolated {
            "a namespace holding only loopback"
        } else {
            "NOT isolated (flags and prefs only)"
        }
    )?;
    if let Some([a, b, c]) = report.load_average_after {
        crate::outln!("load average {a:.2} {b:.2} {c:.2}")?;
    }
    crate::outln!("{}", model::footnote(report.runs))?;
    crate::outln!("{}", model::ROUNDS_NOTE)?;
    crate::outln!(
        "(browsers: times by performance.now() in the page's worker; load+verify = the ABI's \
         chunked load of bytes already in memory; peak = the page's wasm memory at the end; a \
         page runs its prefills and decodes in rounds of its own, and its prefill/decode is the \
         median of those rounds' ratios; a page's decode/native is the lower of its medians' \
         ratios to native measured before and after the browsers, in parentheses both)"
    )?;
    for f in &report.failures {
        crate::outln!("FAILED: {f}")?;
    }
    Ok(())
}

/// Refuses a selection that cannot run (no runs, an unknown engine, shape or dtype): the CLI
/// calls it before anything else, network isolation included.
pub fn check_selection(sel: &Selection) -> Result<()> {
    ensure!(sel.runs > 0, "--runs must be at least 1");
    for e in sel.engines {
        ensure!(
            ENGINE_NAMES.split(',').any(|n| n == e),
            "unknown engine {e:?} (engines: {ENGINE_NAMES})"
        );
    }
    model::check_selection(sel.shape, sel.dtypes)
}

/// Runs the benchmark on `sel`, prints a table or the [`Report`] as JSON, and returns the
/// report (its `failures` empty when every figure arrived whole).
pub fn run(sel: &Selection, json: bool, peak: &dyn Fn(bool) -> Option<usize>) -> Result<Report> {
    check_selection(sel)?;
    let wanted = |name: &str| sel.engines.is_empty() || sel.engines.iter().any(|e| e == name);
    let load_average_before = load_average();
    if !json {
        if let Some([a, b, c]) = load_average_before {
            crate::outln!("load average {a:.2} {b:.2} {c:.2} (the machine may be shared)")?;
        }
    }
    let (models, skipped) = model::select(sel.shape, sel.dtypes, |_| {})?;
    if models.is_empty() && !json {
        // Why none is left (otherwise said with the report).
        for s in &skipped {
            model::print_skipped(s)?;
        }
    }
    ensure!(!models.is_empty(), "no model within the budget selected");
    let serve = ServeConfig::default();
    ensure!(
        serve.wasm.is_some(),
        "no wasm module: build the harness (harness/build.rs sets TRLM_WASM_PATH) or set TRLM_WASM_PATH"
    );
    let tmp = TempDir::new("bench-models")?;
    let mut files = Vec::new();
    for m in &models {
        let path = tmp.0.join(format!("{}.slm", m.name()));
        std::fs::write(&path, &m.bytes)?;
        files.push(path);
    }

    let measure_native = || -> Result<(Vec<Row>, Vec<Option<Measured>>)> {
        let mut rows = Vec::new();
        let mut measured = Vec::new();
        if !wanted("native") {
            measured.resize_with(models.len(), || None);
            return Ok((rows, measured));
        }
        let mut ctx = Context::new(peak);
        let prompt = model::prompt();
        let engine = ENGINES
            .iter()
            .find(|e| e.name == "native")
            .context("native")?;
        for m in &models {
            let case = engines::Case {
                bytes: &m.bytes,
                runs: sel.runs,
                prompt: &prompt,
                decode_tokens: DECODE_TOKENS,
            };
            let n = engines::measure(&mut ctx, &case, &[engine])?.remove(0);
            rows.push(m.row(engine.name, &n, None, None));
            measured.push(Some(n));
        }
        Ok((rows, measured))
    };
    let (native, natives) = measure_native()?;

    let server = RunningServer::start(ServeConfig {
        bench_models: files,
        ..serve
    })?;
    let mut pages = Vec::new();
    let mut failures = Vec::new();
    let mut skipped_engines = Vec::new();
    for browser in [Browser::Chromium, Browser::Firefox] {
        if !wanted(browser.name()) {
            continue;
        }
        let Some(exe) = browser.find() else {
            skipped_engines.push(browser.name().to_string());
            continue;
        };
        if !json {
            crate::errln!("bench: {} ...", browser.name());
        }
        run_browser(
            browser,
            &exe,
            &server,
            &models,
            &natives,
            sel,
            &mut pages,
            &mut failures,
        )?;
    }
    server.shutdown();
    // A browser asked for by name that is not installed is a missing figure; so is a run that
    // measured no page at all (nothing installed): neither may pass.
    for name in &skipped_engines {
        if !sel.engines.is_empty() {
            failures.push(format!("{name}: asked for, but not installed"));
        }
    }
    let browser_wanted = [Browser::Chromium, Browser::Firefox]
        .iter()
        .any(|b| wanted(b.name()));
    if browser_wanted && pages.is_empty() && failures.is_empty() {
        failures.push("no browser is installed: no page was measured".to_string());
    }
    // Native again after the browsers: a page's decode/native is the lower of its ratios to
    // native before and to native after (the faster native: a native measurement slowed by the
    // machine's load cannot flatter the page), its spread both ratios.
    let (native_after, natives_after) = measure_native()?;
    for p in &mut pages {
        let i = models
            .iter()
            .position(|m| m.name() == format!("{}-{}", p.row.shape, p.row.dtype));
        let after = i.and_then(|i| natives_after[i].as_ref());
        if let (Some(before), Some(after)) = (p.row.decode_vs_native, after) {
            let page_decode_s = p.row.decode_tokens as f64 / p.row.decode_tok_s.median;
            let r = after.decode.median_s / page_decode_s;
            p.row.decode_vs_native = Some(before.min(r));
            p.row.decode_vs_native_spread = Some([before.min(r), before.max(r)]);
        }
    }
    let report = Report {
        bench: "browsers",
        runs: sel.runs,
        prompt_tokens: PROMPT_TOKENS,
        decode_tokens: DECODE_TOKENS,
        isolated: isolate::loopback_only(),
        load_average_before,
        load_average_after: load_average(),
        load_target: load_targets(&pages),
        native,
        native_after,
        pages,
        skipped,
        skipped_engines,
        failures,
    };
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_text(&report, &models)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The bench's tiny test model, and a page's entry for it with every figure well formed.
    fn tiny() -> (BenchModel, Value) {
        let model = crate::bench::model::tests::tiny();
        let ms = json!([2.0, 3.0]);
        let entry = json!({
            "ok": true,
            "file_bytes": model.bytes.len(),
            "prompt_tokens": PROMPT_TOKENS,
            "decode_tokens": DECODE_TOKENS,
            "wasm_memory_after_load_bytes": 65536,
            "wasm_memory_end_bytes": 131072,
            "times": {
                "load_ms": ms, "prefill_ms": ms, "decode_ms": ms, "fetch_ms": ms,
                "fetch_load_ms": ms,
            },
        });
        (model, entry)
    }

    #[test]
    fn a_page_row_pairs_its_own_rounds_but_not_with_native() {
        let (model, mut entry) = tiny();
        // Round 1: prefill 2 ms, decode 3 ms; round 2: 3 ms and 2 ms. Paired, the rounds'
        // prefill/decode ratios are 6 and 8/3 (128 tokens against 32); the ratio of the
        // medians would be 4.
        entry["times"]["prefill_ms"] = json!([2.0, 3.0]);
        entry["times"]["decode_ms"] = json!([3.0, 2.0]);
        let fin = json!({ "wasm_variant": "simd128", "user_agent": "test" });
        let native = crate::bench::engines::Measured {
            load: Stats::of(vec![1.0; 2]),
            prefill: Stats::of(vec![1.0; 2]),
            decode: Stats::of(vec![1e-3, 4e-3]),
            prefill_rounds_s: vec![1.0, 1.0],
            decode_rounds_s: vec![1e-3, 4e-3],
            rounds_with_native: true,
            decode_logits_digest: false,
            peak_bytes: None,
            peak_kind: "test",
        };
        let p = page_row(Browser::Chromium, &fin, &entry, &model, 2, Some(&native)).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b;
        let spread = p.row.prefill_over_decode_spread.expect("paired rounds");
        assert!(
            close(spread[0], 8.0 / 3.0) && close(spread[1], 6.0),
            "{spread:?}"
        );
        assert!(close(p.row.prefill_over_decode, (6.0 + 8.0 / 3.0) / 2.0));
        // decode/native: the ratio of the medians (2.5 ms native, 2.5 ms page), no pairing
        // with native's rounds (which would give 1/3 and 2, median 7/6).
        assert!(close(p.row.decode_vs_native.unwrap(), 1.0));
        assert_eq!(p.row.decode_vs_native_spread, None);
    }

    #[test]
    fn a_page_row_names_its_module_or_is_malformed() {
        let (model, entry) = tiny();
        let row = |variant: Value| {
            let fin = json!({ "wasm_variant": variant, "user_agent": "test" });
            page_row(Browser::Chromium, &fin, &entry, &model, 2, None)
        };
        assert_eq!(row(json!("simd128")).unwrap().row.engine, "chromium");
        assert_eq!(row(json!("scalar")).unwrap().row.engine, "chromium-scalar");
        // A missing or unknown module would have been counted as the scalar one, and the
        // Chromium load target left out without a failure.
        for bad in [Value::Null, json!("simd"), json!(128)] {
            let e = row(bad.clone()).expect_err("a malformed wasm_variant fails");
            assert!(e.to_string().contains("wasm_variant"), "{bad}: {e}");
        }
    }
}
