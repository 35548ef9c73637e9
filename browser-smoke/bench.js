// bench.js: the page benchmark of one model, run in the worker (`tinyrustlm bench browsers`
// opens the page with ?bench=...). The quantities are those of `tinyrustlm bench model`
// (harness/src/bench/model.rs, engines.rs), timed with performance.now():
//   fetch_ms       fetch of the file into an ArrayBuffer (loopback HTTP)
//   load_ms        load + verify: the ABI's chunked load (trlm_load_begin / chunk / finish:
//                  every format rule and the file's SHA-256) of bytes already in memory
//   fetch_load_ms  the page's own path: fetch streamed into the chunked loader
//   prefill_ms     set_sampling (greedy, 1 token) + start with BOS and `promptBytes` bytes (one
//                  token each in the bench models' byte vocabulary) + the first step
//   decode_ms      set_sampling (greedy, `decodeTokens` tokens) + start with BOS only + that
//                  many steps
// Logits digest off (trlm_set_logits_digest(0)), no diagnostics read between steps. One
// untimed warm-up of everything, then `runs` timed runs of each: the prefills and decodes in
// rounds (a prefill, then a decode), so that run r of each is made back to back and the
// harness pairs them for the prefill/decode ratio (a change of the machine's load between
// rounds moves both), then the loads. Wasm memory
// (memory.buffer.byteLength of the instance given, a fresh one per model) after the first
// load and at the end: linear memory never shrinks, so the end figure is the peak.

import { streamLoad, TrlmError } from './trlm.js';

/** f32 bit patterns of the greedy settings: temperature 0, top-p 1. */
const TEMPERATURE_0 = 0;
const TOP_P_1 = 0x3f800000;

function greedy(trlm, maxNewTokens) {
  trlm.setSampling({
    temperatureBits: TEMPERATURE_0,
    topK: null,
    topPBits: TOP_P_1,
    seed: '1',
    maxNewTokens,
  });
}

/** Milliseconds `fn` takes. */
async function timed(fn) {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function prefill(trlm, prompt) {
  greedy(trlm, 1);
  trlm.start(prompt);
  const rec = trlm.step();
  if (rec.state !== 0) throw new TrlmError(0, `prefill: the first step ended with state ${rec.state}`);
}

function decode(trlm, tokens) {
  greedy(trlm, tokens);
  trlm.start(new Uint8Array(0));
  for (let i = 0; i < tokens; i++) {
    const rec = trlm.step();
    if (rec.state !== 0) throw new TrlmError(0, `decode: step ${i} ended with state ${rec.state}`);
  }
}

async function fetchBytes(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw Object.assign(new Error(`${url}: HTTP ${resp.status}`), { http: resp.status });
  return new Uint8Array(await resp.arrayBuffer());
}

/**
 * Measures the model at `msg.url` ({url, runs, promptBytes, decodeTokens}); `post` gets
 * {type: 'progress', phase} events. Returns every run's times (ms) and the memory figures.
 */
export async function benchModel(trlm, msg, post) {
  const { url, runs, promptBytes, decodeTokens } = msg;
  if (!(runs >= 1 && promptBytes >= 0 && decodeTokens >= 1)) {
    throw new TrlmError(0, `bench: runs ${runs}, promptBytes ${promptBytes}, decodeTokens ${decodeTokens}`);
  }
  const phase = (name) => post({ type: 'progress', phase: name });
  const prompt = new Uint8Array(promptBytes);
  for (let i = 0; i < promptBytes; i++) prompt[i] = 97 + (i % 26);
  trlm.check(trlm.call('trlm_set_logits_digest', 0));
  const memory = () => trlm.memory.buffer.byteLength;

  phase('warm-up');
  // Each load starts with no model, so the memory figures are this model's alone.
  trlm.unload();
  await streamLoad(trlm, { url });
  const memoryAfterLoad = memory();
  const loaded = trlm.diagnostics();
  prefill(trlm, prompt);
  const promptTokens = trlm.diagnostics().prompt_tokens;
  decode(trlm, decodeTokens);
  const generated = trlm.diagnostics().generated_tokens;

  const times = { fetch_ms: [], load_ms: [], fetch_load_ms: [], prefill_ms: [], decode_ms: [] };
  phase('prefill and decode');
  for (let r = 0; r < runs; r++) {
    times.prefill_ms.push(await timed(() => prefill(trlm, prompt)));
    times.decode_ms.push(await timed(() => decode(trlm, decodeTokens)));
  }
  phase('load');
  for (let r = 0; r < runs; r++) {
    let bytes = null;
    times.fetch_ms.push(await timed(async () => {
      bytes = await fetchBytes(url);
    }));
    trlm.unload();
    times.load_ms.push(await timed(() => trlm.load(bytes)));
    trlm.unload();
    times.fetch_load_ms.push(await timed(() => streamLoad(trlm, { url })));
  }
  return {
    file_bytes: loaded.model_bytes,
    dtype: loaded.dtype,
    model_digest: loaded.model_digest,
    prompt_tokens: promptTokens,
    decode_tokens: generated,
    runs,
    times,
    wasm_memory_after_load_bytes: memoryAfterLoad,
    wasm_memory_end_bytes: memory(),
  };
}

/** The median of numbers (the mean of the middle two for an even count). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 === 1 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}
