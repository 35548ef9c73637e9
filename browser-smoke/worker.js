// worker.js: runs the module in a Web Worker so the page never freezes. Messages in:
//   {id, cmd: 'init', wasmUrls: {simd128, scalar}, forceScalar}
//                                         runs the simd128 module where the engine validates
//                                         simd128 (unless forceScalar), else the scalar one;
//                                         answers {abi_version, variant}
//   {id, cmd: 'load', url, sha256, bytes} streams the file with fetch + a reader into the
//                                         chunked loader; posts {type: 'progress'} on the way
//   {id, cmd: 'load', file}               the same from a Blob (a file chosen on the page; no
//                                         registry size or digest to hold it to)
//   {id, cmd: 'begin', total}             only trlm_load_begin (a size the module refuses)
//   {id, cmd: 'generate', request, digests, perStep}
//   {id, cmd: 'apply', plan, modules: [{url, bytes, sha256}]}
//                                         fetches each module, checks its size and SHA-256
//                                         (the adapter file digest) against the registry's,
//                                         then applies the plan; answers with the receipt
//   {id, cmd: 'remove'}                   removes the adapters
//   {id, cmd: 'check', check, urls}       the malformed matrix (corpus/malformed/adapters/):
//                                         fetches the files and runs one check on them —
//                                         'adapter' validateAdapter(urls[0]); 'plan' (no model
//                                         loaded) validatePlan(urls[0]); 'apply' applyPlan with
//                                         plan urls[0] and modules urls[1..] on the loaded model
//   {id, cmd: 'bench', url, runs, promptBytes, decodeTokens}
//                                         the page benchmark of one model on a fresh instance
//                                         of the module (bench.js has the definitions); posts
//                                         {type: 'progress', phase}
//   {cmd: 'stop'}                         cancels the running generation
// Commands with an id run one at a time, in the order they arrive (Stop is taken at once).
// Every command with an id is answered once: {id, ok: true, ...} or {id, ok: false, code,
// message[, http_status]}. Events on the way: {id, type: 'progress' | 'piece' | 'step', ...}.

import {
  instantiate, pickModule, streamLoad, streamLoadFile, toHex, CODE, TrlmError, STATE_NAMES,
} from './trlm.js';
import { benchModel } from './bench.js';

let trlm = null;
/** The bytes of the module `init` picked (the bench gives each model a fresh instance). */
let moduleBytes = null;
let stopRequested = false;

/** Longest a generation runs between two yields to the event loop (ms). */
const YIELD_MS = 25;

// One channel for the whole worker: a channel created per yield can be collected before its
// message arrives (seen in Firefox: the generation then never resumes).
const yieldChannel = new MessageChannel();
const yieldWaiters = [];
yieldChannel.port1.onmessage = () => yieldWaiters.shift()();

/** Lets queued messages (Stop) run, without the delay of a timer. */
function yieldToEvents() {
  return new Promise((resolve) => {
    yieldWaiters.push(resolve);
    yieldChannel.port2.postMessage(0);
  });
}

async function init(msg) {
  const { variant, url } = pickModule(msg.wasmUrls, msg.forceScalar);
  const resp = await fetch(url);
  if (!resp.ok) throw Object.assign(new Error(`module: HTTP ${resp.status}`), { http: resp.status });
  moduleBytes = await resp.arrayBuffer();
  trlm = await instantiate(moduleBytes);
  return { abi_version: trlm.call('trlm_abi_version'), variant };
}

async function load(msg, post) {
  const t0 = performance.now();
  if (msg.file !== undefined) await streamLoadFile(trlm, msg.file, post);
  else await streamLoad(trlm, msg, post);
  const d = trlm.diagnostics();
  return {
    digest: d.model_digest,
    bytes: d.model_bytes,
    dtype: d.dtype,
    context: d.context,
    load_ms: Math.round(performance.now() - t0),
  };
}

async function generate(msg, post) {
  const r = msg.request;
  trlm.setSampling({
    temperatureBits: r.temperature_bits,
    topK: r.top_k,
    topPBits: r.top_p_bits,
    seed: r.seed,
    maxNewTokens: r.max_new_tokens,
  });
  const prompt = r.prompt_hex !== undefined ? fromHex(r.prompt_hex) : new TextEncoder().encode(r.prompt);
  trlm.start(prompt);
  stopRequested = false;
  const stepDigests = [];
  let rec;
  let shown = 0;
  // The text end of the last record stepped.
  let lastEnd = 0;
  let produced = 0;
  const t0 = performance.now();
  let lastYield = t0;
  for (;;) {
    if (stopRequested) {
      stopRequested = false;
      trlm.cancel();
    }
    try {
      rec = trlm.step();
    } catch (e) {
      // A failing step ends the generation; what it had produced stays readable (spec/abi.md):
      // show the text after the last piece sent before reporting the failure.
      if (lastEnd > shown) post({ type: 'piece', bytes: trlm.textRange(shown, lastEnd) });
      throw e;
    }
    lastEnd = rec.textEnd;
    if (rec.state === 0) produced += 1;
    if (msg.digests || msg.perStep) {
      const d = trlm.diagnostics();
      if (rec.state === 0 || d.logit_steps > stepDigests.length) stepDigests.push(d.logits_digest);
      if (msg.perStep) {
        post({
          type: 'step',
          token: rec.token,
          state: rec.state,
          text_start: rec.textStart,
          text_end: rec.textEnd,
          kv_len: d.kv_len,
          logit_steps: d.logit_steps,
          logits_digest: d.logits_digest,
        });
      }
    }
    const now = performance.now();
    if (rec.state !== 0 || now - lastYield > YIELD_MS) {
      if (rec.textEnd > shown) {
        post({ type: 'piece', bytes: trlm.textRange(shown, rec.textEnd) });
        shown = rec.textEnd;
      }
      if (rec.state !== 0) break;
      await yieldToEvents();
      lastYield = performance.now();
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const result = trlm.result(stepDigests, rec.state);
  return {
    result,
    finish: STATE_NAMES[rec.state],
    tok_s: seconds > 0 ? Math.round((produced / seconds) * 10) / 10 : null,
    diagnostics: trlm.diagnostics(),
  };
}

/** The adapter file digest (spec/adapters.md): SHA-256 of bytes [0, 96) and [128, end). */
async function adapterDigest(bytes) {
  if (bytes.length < 128) return '';
  const data = new Uint8Array(bytes.length - 32);
  data.set(bytes.subarray(0, 96), 0);
  data.set(bytes.subarray(128), 96);
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', data)));
}

/** Fetches each module and checks it against its registry entry before the module sees it. */
async function fetchModules(modules) {
  const out = [];
  for (const m of modules) {
    const resp = await fetch(m.url);
    if (!resp.ok) throw Object.assign(new Error(`${m.url}: HTTP ${resp.status}`), { http: resp.status });
    const bytes = new Uint8Array(await resp.arrayBuffer());
    if (bytes.length !== m.bytes) {
      throw new TrlmError(CODE.MODULE_DIGEST_MISMATCH, `${m.url}: ${bytes.length} bytes; the registry says ${m.bytes}`);
    }
    const digest = await adapterDigest(bytes);
    if (digest !== m.sha256) {
      throw new TrlmError(CODE.MODULE_DIGEST_MISMATCH, `${m.url}: sha256 ${digest} is not the registry's ${m.sha256}`);
    }
    out.push(bytes);
  }
  return out;
}

async function apply(msg) {
  const modules = await fetchModules(msg.modules);
  const receipt = trlm.applyPlan(new TextEncoder().encode(msg.plan), modules);
  const d = trlm.diagnostics();
  return {
    receipt_hex: toHex(receipt),
    receipt: new TextDecoder().decode(receipt),
    receipt_digest: d.receipt_digest,
    adapter_modules: d.adapter_modules,
  };
}

async function fetchBytes(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw Object.assign(new Error(`${url}: HTTP ${resp.status}`), { http: resp.status });
  return new Uint8Array(await resp.arrayBuffer());
}

async function check(msg) {
  const [first, ...rest] = await Promise.all(msg.urls.map(fetchBytes));
  if (msg.check === 'adapter') trlm.validateAdapter(first);
  else if (msg.check === 'plan') {
    trlm.unload();
    trlm.validatePlan(first);
  } else if (msg.check === 'apply') trlm.applyPlan(first, rest);
  else throw new TrlmError(0, `unknown check ${msg.check}`);
  return {};
}

function fromHex(h) {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(2 * i, 2), 16);
  return out;
}

/** The commands not yet answered, run one at a time in arrival order: every command awaits
 * (fetches, reads, yields), and the module has one load and one generation, so a command
 * started in the middle of another would end or corrupt it. Stop alone is taken at once. */
let queue = Promise.resolve();

self.onmessage = (ev) => {
  const msg = ev.data;
  if (msg.cmd === 'stop') {
    stopRequested = true;
    return;
  }
  queue = queue.then(() => run(msg));
};

/** Runs one command and posts its answer (never throws: a failure is the answer). */
async function run(msg) {
  const post = (event) => self.postMessage({ id: msg.id, ...event });
  try {
    let answer;
    if (msg.cmd === 'init') answer = await init(msg);
    else if (!trlm) throw new TrlmError(0, 'the module is not instantiated');
    else if (msg.cmd === 'load') answer = await load(msg, post);
    else if (msg.cmd === 'begin') {
      trlm.check(trlm.call('trlm_load_begin', msg.total));
      trlm.call('trlm_load_abort');
      answer = {};
    } else if (msg.cmd === 'generate') answer = await generate(msg, post);
    else if (msg.cmd === 'apply') answer = await apply(msg);
    else if (msg.cmd === 'check') answer = await check(msg);
    // A fresh instance per model: linear memory never shrinks, so a model measured after a
    // larger one would otherwise report the larger one's memory.
    else if (msg.cmd === 'bench') answer = await benchModel(await instantiate(moduleBytes), msg, post);
    else if (msg.cmd === 'remove') {
      trlm.removeAdapters();
      answer = {};
    }
    else throw new TrlmError(0, `unknown command ${msg.cmd}`);
    self.postMessage({ id: msg.id, ok: true, ...answer });
  } catch (e) {
    self.postMessage({
      id: msg.id,
      ok: false,
      code: e instanceof TrlmError ? e.code : 0,
      message: String(e && e.message ? e.message : e),
      http_status: e && e.http ? e.http : null,
    });
  }
}
