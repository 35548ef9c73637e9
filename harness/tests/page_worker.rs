//! The smoke page's worker (browser-smoke/worker.js) under Node, with `self` and `fetch` standing
//! in for the browser's: what a generation produced reaches the page even when a step fails.

mod common;

use common::{build_model, byte_vocab, random, Shape};
use harness::smoke::wasm_module_path;
use runtime::format::{DType, Pieces, TokenType};
use runtime::generate::session::{Session, Step};
use runtime::model::Model;
use runtime::ErrorCode;

/// Drives worker.js: init, load, one generation; prints what the page would have been sent.
const WORKER_DRIVER: &str = r#"
import { readFileSync } from 'node:fs';
const [wasmPath, modelPath, seed] = process.argv.slice(2);
const sent = [];
let answered = null;
globalThis.self = { postMessage(m) { sent.push(m); if (m.ok !== undefined && answered) answered(m); } };
globalThis.fetch = async (url) => {
  const bytes = readFileSync(url === 'wasm' ? wasmPath : modelPath);
  return {
    ok: true,
    status: 200,
    headers: { get: () => String(bytes.length) },
    arrayBuffer: async () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length),
    body: new ReadableStream({ start(c) { c.enqueue(new Uint8Array(bytes)); c.close(); } }),
  };
};
await import('WORKER_JS');
const call = (msg) => new Promise((r) => { answered = r; self.onmessage({ data: msg }); });
const init = await call({ id: 1, cmd: 'init', wasmUrls: { simd128: 'wasm', scalar: 'wasm' } });
const load = await call({ id: 2, cmd: 'load', url: 'model' });
sent.length = 0;
const one = 0x3f800000;
const gen = await call({ id: 3, cmd: 'generate', request: {
  prompt: '', temperature_bits: one, top_k: null, top_p_bits: one, seed, max_new_tokens: 8192,
} });
const shown = sent.filter((m) => m.type === 'piece').reduce((n, m) => n + m.bytes.length, 0);
console.log(JSON.stringify({ init: init.ok, load: load.ok, ok: gen.ok, code: gen.code ?? null, shown }));
process.exit(0);
"#;

/// Runs `driver` (a script importing `WORKER_JS`, which becomes the page's worker.js) under
/// Node with the scalar module's path, then one file per `models` entry (written to a temporary
/// folder, removed afterwards), then `extra`; returns what it printed, as JSON.
fn run_driver(driver: &str, tag: &str, models: &[&[u8]], extra: &[&str]) -> serde_json::Value {
    let (dir, script) = common::smoke_script(tag, "driver.mjs", driver, "WORKER_JS", "worker.js");
    let wasm = wasm_module_path().expect("the scalar module is built");
    let mut args = vec![wasm.into_os_string()];
    for (i, bytes) in models.iter().enumerate() {
        let path = dir.join(format!("model{i}.slm"));
        std::fs::write(&path, bytes).unwrap();
        args.push(path.into_os_string());
    }
    args.extend(extra.iter().map(std::ffi::OsString::from));
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let got = common::node_json(&script, &refs);
    let _ = std::fs::remove_dir_all(&dir);
    got
}

/// A byte vocabulary plus 1024 control tokens whose pieces are 252 bytes long: sampling at
/// temperature 1 fills the 64 KiB output limit within the context, so a step fails with
/// `OutputBufferExceeded` after a generation of many pieces.
fn long_piece_model() -> Vec<u8> {
    let mut vocab = byte_vocab(vec![257]);
    let mut pieces: Vec<Vec<u8>> = (0..vocab.pieces.len())
        .map(|i| vocab.pieces.get(i).unwrap().to_vec())
        .collect();
    for i in 0..1024u32 {
        pieces.push(format!("<{i:0>250}>").into_bytes());
        vocab.types.push(TokenType::Control);
        vocab.scores.push(0.0);
    }
    vocab.pieces = Pieces::new(pieces).unwrap();
    let shape = Shape {
        dim: 32,
        n_layers: 1,
        n_heads: 4,
        n_kv_heads: 4,
        head_dim: 8,
        ffn_dim: 64,
        max_context: 1024,
        tied: true,
    };
    build_model(vocab, shape, DType::F32, 5)
}

/// The worker sent every byte generated before the failing step (it used to send only what the
/// last 25 ms flush had covered), then the failure.
#[test]
fn a_failing_step_leaves_every_generated_byte_shown() {
    if !harness::engine::node::node_available() {
        println!("skipping: node is not installed");
        return;
    }
    let bytes = long_piece_model();
    // Natively: the bytes produced before the step that fails.
    let mut session = Session::new(Model::load(bytes.clone()).unwrap(), 0).unwrap();
    session.start(b"", random(3, 8192)).unwrap();
    let code = loop {
        match session.step() {
            Ok(Step::Token { .. }) => {}
            Ok(other) => panic!("the generation ended without failing: {other:?}"),
            Err(e) => break e.code,
        }
    };
    assert_eq!(code, ErrorCode::OutputBufferExceeded);
    let produced = session.text().len();
    assert!(produced > 60_000, "{produced}");

    let got = run_driver(WORKER_DRIVER, "page-worker", &[&bytes], &["3"]);
    assert_eq!(
        got,
        serde_json::json!({
            "init": true,
            "load": true,
            "ok": false,
            "code": ErrorCode::OutputBufferExceeded as u32,
            "shown": produced,
        })
    );
}

/// Drives worker.js's load of a file chosen on the page (a Blob): a good file, then a damaged
/// one, then a generation; prints what the page would have been answered.
const FILE_DRIVER: &str = r#"
import { readFileSync } from 'node:fs';
const [wasmPath, goodPath, badPath] = process.argv.slice(2);
let answered = null;
let lastProgress = null;
globalThis.self = { postMessage(m) {
  if (m.type === 'progress') lastProgress = m;
  if (m.ok !== undefined && answered) answered(m);
} };
globalThis.fetch = async () => {
  const bytes = readFileSync(wasmPath);
  return { ok: true, status: 200, arrayBuffer: async () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) };
};
await import('WORKER_JS');
const call = (msg) => new Promise((r) => { answered = r; self.onmessage({ data: msg }); });
await call({ id: 1, cmd: 'init', wasmUrls: { simd128: 'wasm', scalar: 'wasm' } });
const blob = (p) => new Blob([readFileSync(p)]);
const good = await call({ id: 2, cmd: 'load', file: blob(goodPath) });
const progress = lastProgress && { received: lastProgress.received, total: lastProgress.total };
const bad = await call({ id: 3, cmd: 'load', file: blob(badPath) });
const empty = await call({ id: 5, cmd: 'load', file: new Blob([]) });
const over = await call({ id: 6, cmd: 'load', file: new Blob([new Uint8Array(BUDGET + 1)]) });
const one = 0x3f800000;
const gen = await call({ id: 4, cmd: 'generate', request: {
  prompt: 'ab', temperature_bits: 0, top_k: null, top_p_bits: one, seed: '1', max_new_tokens: 4,
} });
console.log(JSON.stringify({
  good: { ok: good.ok, digest: good.digest ?? null, bytes: good.bytes ?? null },
  progress,
  bad: { ok: bad.ok, code: bad.code ?? null },
  empty: { ok: empty.ok, code: empty.code ?? null },
  over: { ok: over.ok, code: over.code ?? null },
  after: gen.ok ? gen.diagnostics.model_digest : null,
}));
process.exit(0);
"#;

/// A file chosen on the page (no registry entry) goes through the same chunked load as a
/// fetched one: the module's checks decide — a damaged file, an empty one and one over the
/// model budget are refused with the runtime's codes — and a refusal leaves the model loaded
/// before it in place.
#[test]
fn a_chosen_file_loads_through_the_module_checks() {
    if !harness::engine::node::node_available() {
        println!("skipping: node is not installed");
        return;
    }
    let shape = Shape {
        dim: 32,
        n_layers: 1,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 8,
        ffn_dim: 64,
        max_context: 64,
        tied: true,
    };
    let good = build_model(byte_vocab(vec![257]), shape, DType::Q8_0, 11);
    let digest = runtime::sha256::to_hex(&runtime::format::file_digest(&good));
    // One payload byte changed: the file digest no longer matches.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let bad_code = Model::load(bad.clone())
        .err()
        .expect("the damaged file is refused")
        .code as u32;

    let driver = FILE_DRIVER.replace("BUDGET", &runtime::limits::MAX_MODEL_BYTES.to_string());
    let got = run_driver(&driver, "page-file", &[&good, &bad], &[]);
    assert_eq!(
        got,
        serde_json::json!({
            "good": { "ok": true, "digest": digest, "bytes": good.len() },
            "progress": { "received": good.len(), "total": good.len() },
            "bad": { "ok": false, "code": bad_code },
            "empty": { "ok": false, "code": ErrorCode::Truncated as u32 },
            "over": { "ok": false, "code": ErrorCode::BudgetExceeded as u32 },
            "after": digest,
        })
    );
}
