//! The smoke page's worker (browser-smoke/worker.js) under Node, with `self` and `fetch` standing
//! in for the browser's: what a generation produced reaches the page even when a step fails.

mod common;

use common::{build_model, byte_vocab, random, Shape};
use harness::smoke::{smoke_dir, wasm_module_path};
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

    let dir = std::env::temp_dir().join(format!("trlm-page-worker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("long.slm");
    std::fs::write(&model, &bytes).unwrap();
    let script = dir.join("driver.mjs");
    let worker = smoke_dir().join("worker.js").canonicalize().unwrap();
    let text = WORKER_DRIVER.replace("WORKER_JS", &format!("file://{}", worker.display()));
    std::fs::write(&script, text).unwrap();
    let wasm = wasm_module_path().expect("the scalar module is built");
    let got = common::node_json(
        &script,
        &[wasm.as_os_str(), model.as_os_str(), "3".as_ref()],
    );
    let _ = std::fs::remove_dir_all(&dir);
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
const one = 0x3f800000;
const gen = await call({ id: 4, cmd: 'generate', request: {
  prompt: 'ab', temperature_bits: 0, top_k: null, top_p_bits: one, seed: '1', max_new_tokens: 4,
} });
console.log(JSON.stringify({
  good: { ok: good.ok, digest: good.digest ?? null, bytes: good.bytes ?? null },
  progress,
  bad: { ok: bad.ok, code: bad.code ?? null },
  after: gen.ok ? gen.diagnostics.model_digest : null,
}));
process.exit(0);
"#;

/// A file chosen on the page (no registry entry) goes through the same chunked load as a
/// fetched one: the module's checks decide, a damaged file is refused with the native code and
/// leaves the model loaded before it in place.
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

    let dir = std::env::temp_dir().join(format!("trlm-page-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (good_path, bad_path) = (dir.join("good.slm"), dir.join("bad.slm"));
    std::fs::write(&good_path, &good).unwrap();
    std::fs::write(&bad_path, &bad).unwrap();
    let script = dir.join("driver.mjs");
    let worker = smoke_dir().join("worker.js").canonicalize().unwrap();
    let text = FILE_DRIVER.replace("WORKER_JS", &format!("file://{}", worker.display()));
    std::fs::write(&script, text).unwrap();
    let wasm = wasm_module_path().expect("the scalar module is built");
    let got = common::node_json(
        &script,
        &[
            wasm.as_os_str(),
            good_path.as_os_str(),
            bad_path.as_os_str(),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        got,
        serde_json::json!({
            "good": { "ok": true, "digest": digest, "bytes": good.len() },
            "progress": { "received": good.len(), "total": good.len() },
            "bad": { "ok": false, "code": bad_code },
            "after": digest,
        })
    );
}
