//! The page benchmark (`tinyrustlm bench browsers`): the server serves the bench models under
//! `/bench/` only, and in every installed headless browser the page reports every figure of
//! one small model (stories15M shape, q4_0, one run) present, positive and finite, with the
//! memory figure the page's own wasm memory size. No timing is asserted. Without Chromium and
//! Firefox ESR the browser test says so and skips (.ci/install-browsers installs them).

use harness::browsers::{isolate, launch::Browser};
use harness::serve::{RunningServer, ServeConfig};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::Command;

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let status = std::str::from_utf8(&raw[9..12]).unwrap().parse().unwrap();
    (status, raw[head_end..].to_vec())
}

#[test]
fn bench_models_are_served_under_bench_only_and_listed_nowhere() {
    let dir = std::env::temp_dir().join(format!("trlm-page-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = b"\x89SLM a bench model".to_vec();
    std::fs::write(dir.join("m-q4_0.slm"), &model).unwrap();
    let server = RunningServer::start(ServeConfig {
        bench_models: vec![dir.join("m-q4_0.slm")],
        ..ServeConfig::default()
    })
    .unwrap();
    let addr = server.addr();
    assert_eq!(get(addr, "/bench/m-q4_0.slm"), (200, model));
    for path in [
        "/bench/other.slm",
        "/extra/m-q4_0.slm",
        "/bench/../bench/m-q4_0.slm",
    ] {
        assert_ne!(get(addr, path).0, 200, "{path}");
    }
    let (status, registry) = get(addr, "/registry.json");
    assert_eq!(status, 200);
    assert!(!String::from_utf8_lossy(&registry).contains("m-q4_0"));
    server.shutdown();
    // Without bench models nothing is served there.
    let plain = RunningServer::start(ServeConfig::default()).unwrap();
    assert_eq!(get(plain.addr(), "/bench/m-q4_0.slm").0, 404);
    plain.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A figure that must be a positive finite number.
fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {v} is no number"));
    assert!(x.is_finite() && x > 0.0, "{what}: {x}");
    x
}

/// Checks a `Stats` record (seconds) and a `Rate` record (per second) of one run.
fn one_run_stats(v: &Value, what: &str) -> f64 {
    assert_eq!(v["runs"], 1, "{what}");
    let m = positive(&v["median_s"], what);
    assert_eq!(
        (v["min_s"].as_f64(), v["max_s"].as_f64()),
        (Some(m), Some(m))
    );
    m
}

fn one_run_rate(v: &Value, what: &str) -> f64 {
    let m = positive(&v["median"], what);
    assert_eq!((v["min"].as_f64(), v["max"].as_f64()), (Some(m), Some(m)));
    m
}

#[test]
fn the_page_reports_every_bench_figure_in_every_browser() {
    let browsers: Vec<&str> = [Browser::Chromium, Browser::Firefox]
        .into_iter()
        .filter(|b| b.find().is_some())
        .map(|b| b.name())
        .collect();
    if browsers.is_empty() {
        eprintln!("skipping: neither Chromium nor Firefox ESR is installed (.ci/install-browsers)");
        return;
    }
    if ServeConfig::default().wasm.is_none() {
        eprintln!("skipping: no wasm module (TRLM_WASM_PATH)");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tinyrustlm"))
        .args(["bench", "browsers", "--json", "--runs", "1"])
        .args(["--shape", "stories15M", "--dtype", "q4_0"])
        .args(["--engine", &format!("native,{}", browsers.join(","))])
        .output()
        .expect("runs tinyrustlm bench browsers");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}; {}): {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(report["failures"], Value::Array(vec![]), "{report:#}");
    assert!(out.status.success());
    match isolate::available() {
        Ok(()) => assert_eq!(report["isolated"], true, "the run was not network-isolated"),
        Err(why) => eprintln!("note: network isolation unavailable here: {why}"),
    }
    let native = &report["native"][0];
    let native_decode = one_run_rate(&native["decode_tok_s"], "native decode");
    // Native is measured again after the browsers.
    let native_after = &report["native_after"][0];
    assert_eq!(native_after["engine"], "native");
    let native_after_decode = one_run_rate(&native_after["decode_tok_s"], "native decode after");
    let pages = report["pages"].as_array().unwrap();
    assert_eq!(pages.len(), browsers.len());
    for (p, browser) in pages.iter().zip(&browsers) {
        let row = &p["row"];
        let page = &p["page"];
        let who = format!("{browser}: {row}");
        assert_eq!(row["engine"], *browser, "{who}");
        assert_eq!(p["wasm_variant"], "simd128", "{who}");
        assert_eq!(
            (&row["shape"], &row["dtype"]),
            (&"stories15M".into(), &"q4_0".into())
        );
        // Every time the page measured, and the harness's figures are the page's.
        for (stats, key) in [
            (&row["load_s"], "load_ms"),
            (&p["fetch_s"], "fetch_ms"),
            (&p["fetch_load_s"], "fetch_load_ms"),
        ] {
            let s = one_run_stats(stats, key);
            let ms = positive(&page["times"][key][0], key);
            assert!(
                (s * 1e3 - ms).abs() <= 1e-9 * ms,
                "{key}: {s} s, page {ms} ms"
            );
        }
        for (rate, key, tokens) in [
            (&row["prefill_tok_s"], "prefill_ms", 128.0),
            (&row["decode_tok_s"], "decode_ms", 32.0),
        ] {
            let r = one_run_rate(rate, key);
            let ms = positive(&page["times"][key][0], key);
            assert!((r - tokens / (ms / 1e3)).abs() <= 1e-9 * r, "{key}");
        }
        // The page runs its prefills and decodes in rounds: prefill/decode is the ratio of the
        // round's (here the one run's) rates, with that spread.
        let round = |key: &str, tokens: f64| tokens / (positive(&page["times"][key][0], key) / 1e3);
        let r = round("prefill_ms", 128.0) / round("decode_ms", 32.0);
        let over = positive(&row["prefill_over_decode"], "prefill/decode");
        assert!(
            (over - r).abs() <= 1e-9 * r,
            "prefill/decode {over}, round {r}"
        );
        let spread = &row["prefill_over_decode_spread"];
        assert!(
            [&spread[0], &spread[1]]
                .iter()
                .all(|v| v.as_f64().is_some_and(|v| (v - r).abs() <= 1e-9 * r)),
            "prefill/decode spread {spread}, round {r}"
        );
        assert_eq!(page["prompt_tokens"], 128);
        assert_eq!(page["decode_tokens"], 32);
        assert_eq!(row["decode_logits_digest"], false);
        // The lower of the ratios to native before and after (the faster native), the spread
        // both of them.
        let ratio = positive(&row["decode_vs_native"], "decode/native");
        let decode = row["decode_tok_s"]["median"].as_f64().unwrap();
        let (before, after) = (decode / native_decode, decode / native_after_decode);
        let (lo, hi) = (before.min(after), before.max(after));
        assert!(
            (ratio - lo).abs() <= 1e-9 * lo,
            "{ratio}: before {before}, after {after}"
        );
        let spread: Vec<f64> = row["decode_vs_native_spread"]
            .as_array()
            .expect("a spread")
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            spread.len() == 2
                && (spread[0] - lo).abs() <= 1e-9 * lo
                && (spread[1] - hi).abs() <= 1e-9 * hi,
            "{spread:?}: before {before}, after {after}"
        );
        // The memory figure is the page's wasm memory size: whole 64 KiB pages, at the end
        // holding at least the model's file and its KV cache, never smaller than after load.
        let end = page["wasm_memory_end_bytes"].as_u64().unwrap();
        let after_load = page["wasm_memory_after_load_bytes"].as_u64().unwrap();
        assert_eq!(row["peak_bytes"].as_u64(), Some(end), "{who}");
        assert_eq!(p["wasm_memory_end_bytes"].as_u64(), Some(end));
        assert_eq!(row["peak_kind"], "wasm linear memory");
        assert_eq!((end % 65536, after_load % 65536), (0, 0));
        assert!(after_load <= end);
        let file = row["file_bytes"].as_u64().unwrap();
        let kv = row["kv_cache_bytes"].as_u64().unwrap();
        assert_eq!(page["file_bytes"].as_u64(), Some(file));
        assert!(end >= file + kv, "{end} < file {file} + KV {kv}");
        let budget = row["budget_bytes"].as_u64().unwrap();
        assert_eq!(row["over_budget"], end > budget);
    }
    let targets = report["load_target"].as_array().unwrap();
    assert_eq!(targets.len(), usize::from(browsers.contains(&"chromium")));
}
