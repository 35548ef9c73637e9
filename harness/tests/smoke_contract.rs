//! The browser smoke page's contract, checked without a browser: same-origin relative assets
//! only, every ABI export trlm.js calls exists in the built module with the signature of
//! spec/abi.md, and the registry — a selector registry (spec/adapters.md) — lists exactly the
//! corpus fixtures and adapter fixtures with their true size and digest, each served, and the
//! page enforces the registry's budgets on selection.

use harness::fixtures::corpus_dir;
use harness::serve::{RunningServer, ServeConfig};
use harness::smoke::{registry_text, smoke_dir, wasm_module_path, REGISTRY_FILE};
use std::collections::BTreeMap;
use std::io::{Read, Write};
mod common;

use std::net::TcpStream;
use std::time::Duration;
use wasmparser::{Parser, Payload, ValType};

/// Whether Node is missing (then the test says so and skips).
fn node_missing() -> bool {
    let missing = !harness::engine::node::node_available();
    if missing {
        println!("skipping: node is not installed");
    }
    missing
}

/// The page's own files.
const PAGE_FILES: &[&str] = &[
    "index.html",
    "style.css",
    "app.js",
    "worker.js",
    "trlm.js",
    "bench.js",
    "form.js",
    "node-host.mjs",
];

#[test]
fn page_references_only_same_origin_relative_assets() {
    let dir = smoke_dir();
    for f in PAGE_FILES {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        for (n, line) in text.lines().enumerate() {
            for bad in ["http://", "https://", "ws://", "wss://"] {
                assert!(!line.contains(bad), "{f}:{}: {bad} in {line:?}", n + 1);
            }
            // A scheme-relative URL ("//host/...") in a string or attribute.
            for quote in ['"', '\'', '`', '('] {
                let needle = format!("{quote}//");
                assert!(
                    !line.contains(&needle),
                    "{f}:{}: scheme-relative URL in {line:?}",
                    n + 1
                );
            }
            for bad in [
                "import(",
                "importScripts(",
                "eval(",
                "new Function(",
                ".innerHTML",
            ] {
                assert!(!line.contains(bad), "{f}:{}: {bad} in {line:?}", n + 1);
            }
        }
    }
}

#[test]
fn the_wrapper_does_no_math_in_javascript() {
    let text = std::fs::read_to_string(smoke_dir().join("trlm.js")).unwrap();
    assert!(!text.contains("Math."), "trlm.js calls a Math function");
}

/// A function signature: (params, results).
type Signature = (Vec<ValType>, Vec<ValType>);

/// spec/abi.md: every export's signature.
fn abi_signatures() -> BTreeMap<&'static str, Signature> {
    use ValType::{F32, I32, I64};
    let sig = |p: &[ValType]| (p.to_vec(), vec![I32]);
    BTreeMap::from([
        ("trlm_abi_version", sig(&[])),
        ("trlm_last_error_code", sig(&[])),
        ("trlm_alloc", sig(&[I32])),
        ("trlm_free", sig(&[I32, I32])),
        ("trlm_load", sig(&[I32, I32])),
        ("trlm_load_begin", sig(&[I32])),
        ("trlm_load_chunk", sig(&[I32, I32])),
        ("trlm_load_finish", sig(&[])),
        ("trlm_load_abort", sig(&[])),
        ("trlm_unload", sig(&[])),
        ("trlm_set_context", sig(&[I32])),
        ("trlm_set_sampling", sig(&[F32, I32, F32, I64, I32])),
        ("trlm_set_logits_digest", sig(&[I32])),
        ("trlm_start", sig(&[I32, I32])),
        ("trlm_step", sig(&[I32])),
        ("trlm_cancel", sig(&[])),
        ("trlm_reset", sig(&[])),
        ("trlm_output_len", sig(&[I32])),
        ("trlm_output_copy", sig(&[I32, I32, I32])),
        ("trlm_adapter_validate", sig(&[I32, I32])),
        ("trlm_plan_validate", sig(&[I32, I32])),
        ("trlm_plan_begin", sig(&[I32, I32])),
        ("trlm_plan_module", sig(&[I32, I32])),
        ("trlm_plan_check", sig(&[])),
        ("trlm_plan_apply", sig(&[])),
        ("trlm_plan_abort", sig(&[])),
        ("trlm_remove_adapters", sig(&[])),
        ("trlm_require_plan", sig(&[I32, I32])),
    ])
}

/// The module's imports (count) and exported functions with their signatures.
fn module_exports(wasm: &[u8]) -> (usize, BTreeMap<String, Signature>) {
    let mut types = Vec::new();
    let mut funcs = Vec::new();
    let mut imports = 0;
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.unwrap() {
            Payload::TypeSection(r) => {
                for t in r.into_iter_err_on_gc_types() {
                    let t = t.unwrap();
                    types.push((t.params().to_vec(), t.results().to_vec()));
                }
            }
            Payload::ImportSection(r) => imports += r.count() as usize,
            Payload::FunctionSection(r) => {
                for f in r {
                    funcs.push(f.unwrap());
                }
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e.unwrap();
                    if e.kind == wasmparser::ExternalKind::Func {
                        exports.push((e.name.to_string(), e.index));
                    }
                }
            }
            _ => {}
        }
    }
    let map = exports
        .into_iter()
        .map(|(name, index)| {
            let ty = funcs[(index as usize) - imports];
            (name, types[ty as usize].clone())
        })
        .collect();
    (imports, map)
}

/// `'trlm_...'` names called from a JavaScript file.
fn called_exports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in text.split('\'').skip(1).step_by(2) {
        if part.starts_with("trlm_") && part.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            out.push(part.to_string());
        }
    }
    out
}

#[test]
fn every_export_the_wrapper_calls_exists_with_its_signature() {
    let Some(path) = wasm_module_path() else {
        eprintln!("skipping: no wasm module (TRLM_WASM_PATH unset)");
        return;
    };
    let wasm = std::fs::read(path).unwrap();
    let (imports, exports) = module_exports(&wasm);
    assert_eq!(imports, 0, "the module must have no imports");
    let spec = abi_signatures();
    let mut called = Vec::new();
    for f in [
        "trlm.js",
        "worker.js",
        "app.js",
        "bench.js",
        "node-host.mjs",
    ] {
        called.extend(called_exports(
            &std::fs::read_to_string(smoke_dir().join(f)).unwrap(),
        ));
    }
    assert!(called.len() >= 10, "found only {called:?}");
    for name in &called {
        let want = spec
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is not in spec/abi.md"));
        let got = exports
            .get(name)
            .unwrap_or_else(|| panic!("the module does not export {name}"));
        assert_eq!(got, want, "signature of {name}");
    }
}

#[test]
fn registry_is_generated_from_the_corpus() {
    let path = smoke_dir().join(REGISTRY_FILE);
    let fresh = registry_text(&corpus_dir()).unwrap();
    if std::env::var_os("TRLM_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        committed, fresh,
        "browser-smoke/registry.json is stale: rerun this test with TRLM_BLESS=1"
    );
}

/// A GET over a raw socket: (status, body).
fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, buf[split + 4..].to_vec())
}

#[test]
fn every_registry_route_serves_its_file_with_size_and_digest() {
    let registry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(smoke_dir().join(REGISTRY_FILE)).unwrap()).unwrap();
    let server = RunningServer::start(ServeConfig::default()).unwrap();
    let models = registry["models"].as_array().unwrap();
    assert!(!models.is_empty());
    for m in models {
        let route = m["path"].as_str().unwrap();
        assert!(!route.starts_with('/') && !route.contains("//"), "{route}");
        let (code, body) = get(server.addr(), &format!("/{route}"));
        assert_eq!(code, 200, "{route}");
        assert_eq!(body.len() as u64, m["bytes"].as_u64().unwrap(), "{route}");
        let digest = runtime::sha256::to_hex(&runtime::format::file_digest(&body));
        assert_eq!(digest, m["sha256"].as_str().unwrap(), "{route}");
    }
    let default = harness::fixtures::DEFAULT_MODEL_NAME;
    assert!(models.iter().any(|m| m["id"] == default));
    server.shutdown();
}

#[test]
fn the_registry_is_a_valid_selector_registry_with_every_adapter_fixture() {
    let text = std::fs::read_to_string(smoke_dir().join(REGISTRY_FILE)).unwrap();
    let r = harness::adapter::registry::Registry::parse(&text).unwrap();
    let fixtures = harness::adapter::fixtures::read_all(&corpus_dir()).unwrap();
    assert_eq!(r.adapters.len(), fixtures.len());
    for f in &fixtures {
        let a = r.select_adapter(
            &harness::smoke::fixture_family(&f.recipe.kind),
            &f.recipe.base,
        );
        let a = a.unwrap();
        assert_eq!(a.id, f.recipe.name);
        // The plan a host builds from the registry is the committed plan.
        let model = r.select_model(&f.recipe.base).unwrap();
        let plan = harness::smoke::registry_plan(
            &serde_json::json!({"sha256": model.sha256}),
            &[serde_json::json!({"sha256": a.sha256, "bytes": a.bytes, "path": a.path})],
        )
        .unwrap();
        assert_eq!(plan, f.plan, "{}", a.id);
    }
}

#[test]
fn the_page_enforces_the_registry_budgets_on_selection() {
    let app = std::fs::read_to_string(smoke_dir().join("app.js")).unwrap();
    use harness::adapter::registry::{ADAPTER_AUTO_APPLY_BUDGET_BYTES, MODEL_BUDGET_BYTES};
    assert!(app.contains(&format!("const MODEL_BUDGET_BYTES = {MODEL_BUDGET_BYTES};")));
    assert!(app.contains(&format!(
        "const ADAPTER_AUTO_APPLY_BYTES = {ADAPTER_AUTO_APPLY_BUDGET_BYTES};"
    )));
    assert!(app.contains("m.bytes > MODEL_BUDGET_BYTES"));
    assert!(app.contains("a.bytes > ADAPTER_AUTO_APPLY_BYTES"));
}

#[test]
fn every_registry_adapter_is_served_under_extra_with_its_size_and_digest() {
    let root = smoke_dir();
    let extra = harness::smoke::adapter_files(&root, &corpus_dir()).unwrap();
    let server = RunningServer::start(ServeConfig {
        extra_models: extra,
        ..ServeConfig::default()
    })
    .unwrap();
    let (code, body) = get(server.addr(), "/registry.json");
    assert_eq!(code, 200);
    let registry: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let adapters = registry["adapters"].as_array().unwrap();
    assert_eq!(adapters.len(), 9);
    for a in adapters {
        let route = a["path"].as_str().unwrap();
        assert!(route.starts_with("extra/"), "{route}");
        let (code, body) = get(server.addr(), &format!("/{route}"));
        assert_eq!(code, 200, "{route}");
        assert_eq!(body.len() as u64, a["bytes"].as_u64().unwrap(), "{route}");
        let digest = runtime::adapter::format::file_digest(&body);
        assert_eq!(
            runtime::sha256::to_hex(&digest),
            a["sha256"].as_str().unwrap()
        );
    }
    server.shutdown();
}

#[test]
fn cases_json_is_the_standard_set() {
    let server = RunningServer::start(ServeConfig::default()).unwrap();
    let (code, body) = get(server.addr(), "/cases.json");
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let cases = harness::conformance::standard_cases(harness::smoke::SMOKE_MAX_NEW);
    let served = doc["cases"].as_array().unwrap();
    assert_eq!(served.len(), cases.len());
    for (s, c) in served.iter().zip(&cases) {
        assert_eq!(s["name"], c.name);
        assert_eq!(s["prompt"], c.prompt);
        assert_eq!(s["temperature_bits"], c.temperature.to_bits());
        assert_eq!(s["top_p_bits"], c.top_p.to_bits());
        assert_eq!(s["seed"], c.seed.to_string());
        assert_eq!(s["max_new_tokens"], c.max_new_tokens);
    }
    server.shutdown();
}

/// What trlm.js does with values its wasm parameters cannot carry (they would wrap to other,
/// valid values), with a served model whose size is not the registry's, with files shorter
/// than their header given with a registry digest, and with the active model when a load fails,
/// run under Node.
const WRAPPER_REFUSALS: &str = r#"
import { instantiate, streamLoad } from 'TRLM_JS';
import { readFileSync } from 'node:fs';
const [wasm, model, url, bytes, digest, badUrl] = process.argv.slice(2);
const trlm = await instantiate(readFileSync(wasm));
const code = async (f) => { try { await f(); return 'ok'; } catch (e) { return e.code ?? String(e); } };
const modelBytes = new Uint8Array(readFileSync(model));
trlm.load(modelBytes);
const active = () => { if (trlm.diagnostics().model_digest !== digest) throw new Error('another model'); };
const greedy = { temperatureBits: 0, topK: null, topPBits: 0x3f800000, seed: '1', maxNewTokens: 8 };
const sampling = (s) => code(() => trlm.setSampling({ ...greedy, ...s }));
const n = Number(bytes);
const out = {
  seed_u64_max: await sampling({ seed: '18446744073709551615' }),
  seed_2_64_plus_1: await sampling({ seed: '18446744073709551617' }),
  seed_negative: await sampling({ seed: '-1' }),
  seed_text: await sampling({ seed: 'one' }),
  seed_empty: await sampling({ seed: '' }),
  seed_hex_spaced: await sampling({ seed: ' 0x10 ' }),
  temperature_bits_2_32_plus_one: await sampling({ temperatureBits: 4294967296 + 0x3f800000 }),
  top_p_bits_negative: await sampling({ topPBits: -1 }),
  context_2_32: await code(() => trlm.setContext(4294967296)),
  total_negative: await code(() => trlm.beginLoad(-1).abort()),
  top_k_fraction: await sampling({ topK: 2.5 }),
  top_k_2_32_plus_2: await sampling({ topK: 4294967298 }),
  top_k_2: await sampling({ topK: 2 }),
  max_tokens_2_32: await sampling({ maxNewTokens: 4294967296 }),
  total_2_32_plus_n: await code(() => trlm.beginLoad(4294967296 + n).abort()),
  require_plan_5_bytes: await code(() => trlm.requirePlan(new Uint8Array(5))),
  require_plan_40_bytes: await code(() => trlm.requirePlan(new Uint8Array(40))),
  require_receipt_3_bytes: await code(() => trlm.requirePlan(new Uint8Array(32), new Uint8Array(3))),
  require_receipt_alone: await code(() => trlm.requirePlan(null, new Uint8Array(32))),
  require_plan_32: await code(() => trlm.requirePlan(new Uint8Array(32), new Uint8Array(32))),
  require_none: await code(() => trlm.requirePlan(null)),
  size_not_the_registry: await code(() => streamLoad(trlm, { url, sha256: digest, bytes: n - 1 })),
  size_the_registry: await code(() => streamLoad(trlm, { url, sha256: digest, bytes: n })),
  empty_with_digest: await code(() => trlm.load(new Uint8Array(0), digest)),
  header_part_with_digest: await code(() => trlm.load(modelBytes.subarray(0, 200), digest)),
  after_short_loads: await code(active),
  truncated_served: await code(() => streamLoad(trlm, { url: badUrl })),
  after_failed_stream_load: await code(active),
};
console.log(JSON.stringify(out));
"#;

#[test]
fn the_wrapper_refuses_what_its_parameters_cannot_carry() {
    if node_missing() {
        return;
    }
    let wasm = wasm_module_path().expect("the scalar module is built");
    let name = harness::fixtures::DEFAULT_MODEL_NAME;
    let model = corpus_dir().join(format!("{name}.slm"));
    let bytes = std::fs::read(&model).unwrap();
    let digest = runtime::sha256::to_hex(&runtime::format::file_digest(&bytes));
    let server = RunningServer::start(ServeConfig::default()).unwrap();
    let url = format!("http://{}/corpus/{name}.slm", server.addr());
    let bad_url = format!(
        "http://{}/corpus/malformed/truncated-header.slm",
        server.addr()
    );
    let (dir, script) = common::smoke_script(
        "wrapper",
        "refusals.mjs",
        WRAPPER_REFUSALS,
        "TRLM_JS",
        "trlm.js",
    );
    let len = bytes.len().to_string();
    let args = [wasm.as_os_str(), model.as_os_str()]
        .into_iter()
        .chain([&url, &len, &digest, &bad_url].map(|a| std::ffi::OsStr::new(a.as_str())))
        .collect::<Vec<_>>();
    let got = common::node_json(&script, &args);
    let _ = std::fs::remove_dir_all(&dir);
    server.shutdown();
    // InvalidSettings (27) for a setting out of its parameter's range (or a seed that is not
    // decimal digits), as the module refuses those it can see; ContextExceeded (11) for a
    // context beyond u32; BudgetExceeded (15) for a length beyond u32 and a plain refusal (0,
    // not a JavaScript RangeError) for one that is no byte count; FileDigestMismatch (21) for a
    // size that is not the registry's, before the module sees a byte. The wrapper's own codes
    // are the runtime's (trlm.js's CODE table is checked against ErrorCode below).
    let want = serde_json::json!({
        "seed_u64_max": "ok",
        "seed_2_64_plus_1": 27,
        "seed_negative": 27,
        "seed_text": 27,
        "seed_empty": 27,
        "seed_hex_spaced": 27,
        "temperature_bits_2_32_plus_one": 27,
        "top_p_bits_negative": 27,
        "context_2_32": 11,
        "total_negative": 0,
        "top_k_fraction": 27,
        "top_k_2_32_plus_2": 27,
        "top_k_2": "ok",
        "max_tokens_2_32": 27,
        "total_2_32_plus_n": 15,
        "size_not_the_registry": 21,
        "size_the_registry": "ok",
        // Shorter than the 256-byte header that holds the digest field: the module's own
        // Truncated (16), as without a registry digest (it was FileDigestMismatch, 21); and
        // a load that fails, streamed or not, leaves the active model active (streamLoad used
        // to unload it first).
        "empty_with_digest": 16,
        "header_part_with_digest": 16,
        "after_short_loads": "ok",
        "truncated_served": 16,
        "after_failed_stream_load": "ok",
        // A digest is 32 bytes: InvalidLength (2) for any other, never padded or cut; a receipt
        // without a plan is InvalidArgument (34).
        "require_plan_5_bytes": 2,
        "require_plan_40_bytes": 2,
        "require_receipt_3_bytes": 2,
        "require_receipt_alone": 34,
        "require_plan_32": "ok",
        "require_none": "ok",
    });
    assert_eq!(got, want);
}

/// trlm.js's table of the codes the page assigns itself holds the runtime's numbers.
#[test]
fn the_wrappers_codes_are_the_runtimes() {
    let text = std::fs::read_to_string(smoke_dir().join("trlm.js")).unwrap();
    let table = text
        .split_once("export const CODE = {")
        .and_then(|(_, rest)| rest.split_once("};"))
        .expect("trlm.js exports CODE")
        .0;
    let mut checked = 0;
    for line in table.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (name, value) = line.trim_end_matches(',').split_once(':').unwrap();
        let camel: String = name
            .trim()
            .split('_')
            .map(|w| w[..1].to_string() + &w[1..].to_ascii_lowercase())
            .collect();
        let value: u32 = value.trim().parse().unwrap();
        let code = runtime::ErrorCode::from_u32(value).unwrap_or_else(|| panic!("{line}"));
        assert_eq!(format!("{code:?}"), camel, "{line}");
        checked += 1;
    }
    assert!(checked >= 8, "{checked} codes");
}

/// The Node host refuses, as a failure line, request values its operations cannot carry: a
/// context that is not a u32 (it used to wrap 2^32 + 3 to 3 and take text as the maximum) and
/// a digest that is not 64 hex digits (it used to pad a short one with zeros).
#[test]
fn the_node_host_refuses_values_it_cannot_carry() {
    use std::io::{BufRead, BufReader, Write};
    if node_missing() {
        return;
    }
    let wasm = wasm_module_path().expect("the scalar module is built");
    let mut child = std::process::Command::new("node")
        .arg(smoke_dir().join("node-host.mjs"))
        .arg(&wasm)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut answer = |req: Option<serde_json::Value>| -> serde_json::Value {
        if let Some(req) = req {
            writeln!(stdin, "{req}").unwrap();
        }
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    };
    assert_eq!(answer(None)["ready"], true);
    let ok = |a: &serde_json::Value| a["ok"] == true;
    let digest = "ab".repeat(32);
    let model =
        std::fs::read(corpus_dir().join(format!("{}.slm", harness::fixtures::DEFAULT_MODEL_NAME)))
            .unwrap();
    let b64 = harness::engine::node::base64(&model);
    for (req, accepted) in [
        (
            serde_json::json!({"op": "set_context", "positions": 4294967299u64}),
            false,
        ),
        (
            serde_json::json!({"op": "set_context", "positions": 2.9}),
            false,
        ),
        (
            serde_json::json!({"op": "set_context", "positions": "abc"}),
            false,
        ),
        (
            serde_json::json!({"op": "set_context", "positions": -1}),
            false,
        ),
        (
            serde_json::json!({"op": "set_context", "positions": 64}),
            true,
        ),
        (serde_json::json!({"op": "load", "b64": b64}), true),
        (
            serde_json::json!({"op": "require_plan", "plan_hex": digest}),
            true,
        ),
        (
            serde_json::json!({"op": "require_plan", "plan_hex": null}),
            true,
        ),
        (
            serde_json::json!({"op": "require_plan", "plan_hex": "abcd"}),
            false,
        ),
        (
            serde_json::json!({"op": "require_plan", "plan_hex": "zz"}),
            false,
        ),
        (
            serde_json::json!({"op": "require_plan", "plan_hex": digest.to_uppercase()}),
            false,
        ),
        (
            serde_json::json!({"op": "require_plan", "plan_hex": digest, "receipt_hex": "00"}),
            false,
        ),
    ] {
        let a = answer(Some(req.clone()));
        assert_eq!(ok(&a), accepted, "{req} -> {a}");
    }
    drop(stdin);
    child.wait().unwrap();
}

/// The Node host given a module path that is no file, or a file that is no module, says so in
/// one line and exits 2, as for a missing argument (it used to die with a stack trace, exit 1).
#[test]
fn the_node_host_refuses_a_module_it_cannot_read() {
    if node_missing() {
        return;
    }
    let readme = smoke_dir().join("../README.md");
    for path in [
        std::path::Path::new("/nonexistent/trlm.wasm"),
        readme.as_path(),
    ] {
        let out = std::process::Command::new("node")
            .arg(smoke_dir().join("node-host.mjs"))
            .arg(path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", path.display());
        assert!(
            err.starts_with("node-host: ") && err.lines().count() == 1,
            "{}: {err}",
            path.display()
        );
    }
}

/// The page's form (browser-smoke/form.js, run under Node): a value that is no setting is
/// refused with InvalidSettings instead of replaced (an empty temperature used to mean greedy,
/// a negative top-k no top-k, an empty seed 1), valid values make the request, a u64 seed passes
/// as typed; and every error reads as the module's, `error CODE Name[ at byte B]: text`, once.
#[test]
fn the_form_refuses_what_is_no_setting_and_errors_read_alike() {
    if node_missing() {
        return;
    }
    let form = smoke_dir().join("form.js").canonicalize().unwrap();
    let script = format!(
        r#"
import {{ formRequest, errorText }} from 'file://{}';
const ok = {{ prompt: 'hi', temperature: '0.5', topK: '0', topP: '1', seed: '7', maxTokens: '8' }};
const code = (change) => {{
  try {{ return formRequest({{ ...ok, ...change }}); }} catch (e) {{ return e.code ?? String(e); }}
}};
console.log(JSON.stringify({{
  valid: code({{}}),
  top_k_5: code({{ topK: ' 5 ' }}).top_k,
  seed_u64_max: code({{ seed: '18446744073709551615' }}).seed,
  temperature_empty: code({{ temperature: '' }}),
  temperature_blank: code({{ temperature: '  ' }}),
  top_p_empty: code({{ topP: '' }}),
  max_tokens_empty: code({{ maxTokens: '' }}),
  seed_empty: code({{ seed: '' }}),
  top_k_negative: code({{ topK: '-3' }}),
  top_k_fraction: code({{ topK: '1.5' }}),
  top_k_empty: code({{ topK: '' }}),
  module_error: errorText({{ code: 27, message: 'error 27 InvalidSettings: temperature' }}),
  wrapper_error: errorText({{ code: 27, message: 'seed 1.5 is not a decimal integer' }}),
  with_offset: errorText({{ code: 21, message: 'at byte 224: file digest differs' }}),
  unnamed: errorText({{ code: 0, message: 'no model x' }}),
}}));
"#,
        form.display()
    );
    let dir = std::env::temp_dir().join(format!("trlm-form-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("form.mjs");
    std::fs::write(&path, script).unwrap();
    let got = common::node_json(&path, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    let half = 0x3f00_0000u32; // 0.5
    let one = 0x3f80_0000u32;
    assert_eq!(
        got,
        serde_json::json!({
            "valid": {
                "prompt": "hi", "temperature_bits": half, "top_k": null, "top_p_bits": one,
                "seed": "7", "max_new_tokens": 8,
            },
            "top_k_5": 5,
            "seed_u64_max": "18446744073709551615",
            "temperature_empty": 27,
            "temperature_blank": 27,
            "top_p_empty": 27,
            "max_tokens_empty": 27,
            "seed_empty": 27,
            "top_k_negative": 27,
            "top_k_fraction": 27,
            "top_k_empty": 27,
            "module_error": "error 27 InvalidSettings: temperature",
            "wrapper_error": "error 27 InvalidSettings: seed 1.5 is not a decimal integer",
            "with_offset": "error 21 FileDigestMismatch at byte 224: file digest differs",
            "unnamed": "error 0: no model x",
        })
    );
}
