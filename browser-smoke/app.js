// app.js: the page. Lists the models and adapter families of registry.json (the selector
// registry, spec/adapters.md), streams the chosen model into the worker with a progress bar,
// applies a family's adapter as a one-module plan and shows the receipt, streams generated text
// into the page (textContent only) and shows diagnostics. Selection enforces the model budget
// and the adapter auto-apply budget before any byte is fetched. With ?smoke=MODES it runs
// unattended and POSTs a report to /report:
//   1          the standard cases (/cases.json) on every registry model (or ?only=a,b), and on
//              every registry adapter applied to its (selected) base, with the receipts
//   malformed  every file of corpus/malformed/manifest.json through the chunked path, fetched
//              and again as a chosen file (a Blob), every adapter, plan and apply case of
//              corpus/malformed/adapters/manifest.json through validateAdapter / validatePlan /
//              applyPlan (receipt cases have no ABI reader), and the default model as a chosen
//              file (its digest)
//   missing    a model route that does not exist (404)
//   overlong   a prompt longer than the context
//   steps      one generation step by step, a report after each step
//   race       two loads and a generation sent at once (the worker runs them in turn), and a
//              second Load click while a load is in flight (ignored)
// ?demo=1 loads the default model and generates once (for screenshots: an image request to
// /hold keeps the load event back until the generation was reported).
// ?bench=NAME,...&runs=N&prompt=BYTES&decode=TOKENS (`tinyrustlm bench browsers`) measures each
// model served at bench/NAME.slm in the worker (bench.js has the definitions), shows medians
// with their spread in a table and POSTs every run's figures as a report.

import { median } from './bench.js';
import { errorText, formRequest, refusal } from './form.js';

const params = new URLSearchParams(location.search);
const RUN = params.get('run') || '';
/** `?wasm=scalar` runs the scalar module even where simd128 is available. */
const FORCE_SCALAR = params.get('wasm') === 'scalar';
/** The module variant the worker runs ("simd128" or "scalar"), reported with every post. */
let wasmVariant = null;
const $ = (id) => document.getElementById(id);

// ---- the worker, as promises ----
const worker = new Worker('worker.js', { type: 'module' });
let nextId = 1;
const pending = new Map();
worker.onmessage = (ev) => {
  const m = ev.data;
  const p = pending.get(m.id);
  if (!p) return;
  if (m.type) {
    if (p.onEvent) p.onEvent(m);
    return;
  }
  pending.delete(m.id);
  p.resolve(m);
};

/**
 * Set when the worker failed (its script did not load, or it threw outside a command): every
 * pending and later call answers with it, so the page reports the failure instead of waiting.
 */
let workerFailure = null;
function failWorker(message) {
  workerFailure = workerFailure || { ok: false, code: 0, message: `worker: ${message}` };
  for (const p of pending.values()) p.resolve(workerFailure);
  pending.clear();
}
worker.onerror = (e) => {
  e.preventDefault();
  failWorker(e.message || 'the worker script failed to load or run');
};
worker.onmessageerror = () => failWorker('a message could not be read');

/** Sends a command; resolves with its answer ({ok, ...}); events go to onEvent. */
function call(msg, onEvent) {
  if (workerFailure) return Promise.resolve(workerFailure);
  const id = nextId++;
  return new Promise((resolve) => {
    pending.set(id, { resolve, onEvent });
    worker.postMessage({ id, ...msg });
  });
}

async function getJson(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  return resp.json();
}

function hexOf(bytes) {
  let s = '';
  for (const b of bytes) s += (b < 16 ? '0' : '') + b.toString(16);
  return s;
}

// ---- the selector registry ----
/** The model budget (bytes): a larger model is never selected. */
const MODEL_BUDGET_BYTES = 33554432;
/** The adapter auto-apply budget (bytes): a larger adapter is never selected for application. */
const ADAPTER_AUTO_APPLY_BYTES = 1048576;
/** The runtime's BudgetExceeded code, for refusals on selection. */
const BUDGET_EXCEEDED = 15;

let registry = null;
let defaultModel = null;

/** The model entry `id`, within the model budget. */
function selectModel(id) {
  const m = registry.models.find((e) => e.id === id);
  if (!m) throw refusal(0, `no model ${id}`);
  if (m.bytes > MODEL_BUDGET_BYTES) {
    throw refusal(
      BUDGET_EXCEEDED,
      `at byte 0: model ${id} has ${m.bytes} bytes; the model budget is ${MODEL_BUDGET_BYTES}`,
    );
  }
  return m;
}

/** The adapter of `family` for base `base`, within the auto-apply budget. */
function selectAdapter(family, base) {
  const a = registry.adapters.find((e) => e.family === family && e.base === base);
  if (!a) throw refusal(0, `family ${family} has no adapter for ${base}`);
  if (a.bytes > ADAPTER_AUTO_APPLY_BYTES) {
    throw refusal(BUDGET_EXCEEDED, `adapter ${a.id} has ${a.bytes} bytes; the auto-apply budget is ${ADAPTER_AUTO_APPLY_BYTES}`);
  }
  return a;
}

/** The one-module plan of `adapter` on `model` (spec/adapters.md, Plan). */
function planText(model, adapter) {
  const name = adapter.path.split('/').pop();
  return `TRLM-PLAN 1\nbase ${model.sha256}\nmodule ${adapter.sha256} ${adapter.bytes} ${name}\n`;
}

/** Applies `adapter` to the loaded `model` in the worker: the answer carries the receipt. */
function applyAdapter(model, adapter) {
  return call({
    cmd: 'apply',
    plan: planText(model, adapter),
    modules: [{ url: adapter.path, bytes: adapter.bytes, sha256: adapter.sha256 }],
  });
}

/** Loads a selected model entry in the worker. */
function loadModel(model, onEvent) {
  return call({ cmd: 'load', url: model.path, sha256: model.sha256, bytes: model.bytes }, onEvent);
}

// ---- interactive page ----
let decoder = null;

function setStatus(text, isError) {
  const el = $('load-status');
  el.textContent = text;
  el.classList.toggle('error', Boolean(isError));
}

function showDiagnostics(entries) {
  const dl = $('diagnostics');
  dl.replaceChildren();
  for (const [k, v] of entries) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v === null || v === undefined ? '—' : String(v);
    dl.append(dt, dd);
  }
}

let lastLoad = null;
/** The registry entry of the loaded model (adapters and plans are for it, whatever the model
 * list shows now). */
let loadedModel = null;
/** Whether adapters are applied to the loaded model. */
let adaptersApplied = false;
/** Whether a command of the page (load, apply, remove, generate) is in flight. */
let busy = false;

/** Enables what can run now: nothing else while a command is in flight (the module has one
 * load and one generation; a Load during a generation would end it), Stop only then. */
function refreshButtons(generating) {
  $('load').disabled = busy;
  $('model').disabled = busy;
  $('file').disabled = busy;
  $('load-file').disabled = busy || $('file').files.length === 0;
  $('generate').disabled = busy || !lastLoad;
  $('apply').disabled = busy || !lastLoad || $('family').options.length === 0;
  $('remove').disabled = busy || !adaptersApplied;
  $('stop').disabled = !generating;
}

/** Runs one page command with the others disabled until it is answered (a click while one is
 * in flight does nothing). */
async function exclusive(command, generating) {
  if (busy) return { ok: false, code: 0, message: 'another command is in flight' };
  busy = true;
  refreshButtons(generating);
  try {
    return await command();
  } finally {
    busy = false;
    refreshButtons(false);
  }
}

function setAdapterStatus(text, isError) {
  const el = $('adapter-status');
  el.textContent = text;
  el.classList.toggle('error', Boolean(isError));
}

/** Lists the adapter families that have an adapter for model `base` (the one being loaded). */
function listFamilies(base) {
  $('family').replaceChildren();
  for (const a of registry.adapters.filter((e) => e.base === base)) {
    const opt = document.createElement('option');
    opt.value = a.family;
    opt.textContent = `${a.family} (${a.kind}, ${a.bytes} bytes)`;
    $('family').append(opt);
  }
}

/** While a model is loaded: a failed load of another leaves it loaded (spec/abi.md). */
function stillLoaded() {
  return loadedModel ? `; ${loadedModel.id} is still loaded` : '';
}

async function loadSelected() {
  const id = $('model').value;
  let model;
  try {
    model = selectModel(id);
  } catch (e) {
    setStatus(`not selected: ${errorText(e)}${stillLoaded()}`, true);
    showDiagnostics([['model', id], ['error', errorText(e)]]);
    return { ok: false, code: e.code, message: e.message };
  }
  return loadInWorker(model, (onEvent) => loadModel(model, onEvent));
}

/**
 * Loads the .slm file chosen in the file input: read by the page itself (nothing leaves this
 * machine) and checked by the module like any other file (every format rule and its SHA-256;
 * its size against the model budget when the load begins). It is no registry entry, so no
 * adapter family is listed for it.
 */
async function loadChosenFile() {
  const file = $('file').files[0];
  if (!file) return { ok: false, code: 0, message: 'no file is chosen' };
  const model = { id: `file: ${file.name}` };
  return loadInWorker(model, (onEvent) => call({ cmd: 'load', file }, onEvent));
}

/** Runs `load` (which sends the worker its load command) for `model` and shows the outcome. */
async function loadInWorker(model, load) {
  $('progress').value = 0;
  setStatus(`loading ${model.id}…`);
  const ans = await load((ev) => {
    if (ev.type === 'progress' && ev.total > 0) $('progress').value = ev.received / ev.total;
  });
  if (!ans.ok) {
    // The worker's module keeps the previous model, its adapters and its generation.
    setStatus(`not loaded: ${errorText(ans)}${stillLoaded()}`, true);
    showDiagnostics([['model', model.id], ['error', errorText(ans)]]);
    return ans;
  }
  lastLoad = ans;
  loadedModel = model;
  adaptersApplied = false;
  listFamilies(model.id);
  $('receipt').textContent = '';
  setAdapterStatus('');
  $('output').textContent = '';
  setStatus(`loaded ${model.id}`);
  showDiagnostics([
    ['model', model.id],
    ['bytes', ans.bytes],
    ['digest', ans.digest],
    ['dtype', ans.dtype],
    ['load ms', ans.load_ms],
    ['context', ans.context],
  ]);
  return ans;
}

async function applySelected() {
  const model = loadedModel;
  let adapter;
  try {
    if (!model) throw refusal(0, 'no model is loaded');
    adapter = selectAdapter($('family').value, model.id);
  } catch (e) {
    setAdapterStatus(`not selected: ${e.message}`, true);
    return { ok: false, code: e.code, message: e.message };
  }
  setAdapterStatus(`applying ${adapter.id}…`);
  const ans = await applyAdapter(model, adapter);
  if (!ans.ok) {
    setAdapterStatus(`not applied: ${errorText(ans)}`, true);
    return ans;
  }
  setAdapterStatus(`applied ${adapter.id}: ${ans.adapter_modules} module(s), receipt sha256 ${ans.receipt_digest}`);
  $('receipt').textContent = ans.receipt;
  adaptersApplied = true;
  return ans;
}

async function removeAdapters() {
  const ans = await call({ cmd: 'remove' });
  if (!ans.ok) {
    setAdapterStatus(`not removed: ${errorText(ans)}`, true);
    return ans;
  }
  setAdapterStatus('adapters removed: the base model again');
  $('receipt').textContent = '';
  adaptersApplied = false;
  return ans;
}

async function generateFromForm() {
  let request;
  try {
    request = formRequest({
      prompt: $('prompt').value,
      temperature: $('temperature').value,
      topK: $('top-k').value,
      topP: $('top-p').value,
      seed: $('seed').value,
      maxTokens: $('max-tokens').value,
    });
  } catch (e) {
    setStatus(`not generated: ${errorText(e)}`, true);
    $('output').textContent = '';
    showDiagnostics([
      ['model', loadedModel ? loadedModel.id : null],
      ['error', errorText(e)],
    ]);
    return { ok: false, code: e.code, message: e.message };
  }
  $('output').textContent = '';
  decoder = new TextDecoder('utf-8');
  const ans = await call({ cmd: 'generate', request }, (ev) => {
    if (ev.type === 'piece') $('output').textContent += decoder.decode(ev.bytes, { stream: true });
  });
  $('output').textContent += decoder.decode();
  if (!ans.ok) {
    setStatus(`generation failed: ${errorText(ans)}`, true);
    showDiagnostics([
      ['model', loadedModel ? loadedModel.id : null],
      ['error', errorText(ans)],
    ]);
    return ans;
  }
  const d = ans.diagnostics;
  setStatus(`generated ${d.generated_tokens} tokens (${ans.finish})`);
  showDiagnostics([
    ['model', loadedModel ? loadedModel.id : null],
    ['module', wasmVariant],
    ['bytes', d.model_bytes],
    ['digest', d.model_digest],
    ['dtype', d.dtype],
    ['load ms', lastLoad ? lastLoad.load_ms : null],
    ['tok/s (page)', ans.tok_s],
    ['KV length', `${d.kv_len} / ${d.context}`],
    ['prompt tokens', d.prompt_tokens],
    ['generated tokens', d.generated_tokens],
    ['finish', ans.finish],
    ['logits digest', d.logits_digest],
    ['adapter modules', d.adapter_modules],
    ['receipt digest', d.receipt_digest],
  ]);
  return ans;
}

async function setUp() {
  const init = await call({
    cmd: 'init',
    wasmUrls: { simd128: 'wasm/trlm-simd128.wasm', scalar: 'wasm/trlm.wasm' },
    forceScalar: FORCE_SCALAR,
  });
  if (!init.ok) throw new Error(`module: ${init.message}`);
  wasmVariant = init.variant;
  setStatus(`module: ${wasmVariant}`);
  registry = await getJson('registry.json');
  defaultModel = (await getJson('cases.json')).default_model;
  for (const m of registry.models) {
    const opt = document.createElement('option');
    opt.value = m.id;
    opt.textContent = `${m.id} (${m.dtype}, ${m.bytes} bytes)`;
    $('model').append(opt);
  }
  $('model').value = defaultModel;
  $('load').onclick = () => exclusive(loadSelected);
  $('file').onchange = () => {
    if (!busy) refreshButtons(false);
  };
  $('load-file').onclick = () => exclusive(loadChosenFile);
  $('apply').onclick = () => exclusive(applySelected);
  $('remove').onclick = () => exclusive(removeAdapters);
  $('generate').onclick = () => exclusive(generateFromForm, true);
  $('stop').onclick = () => worker.postMessage({ cmd: 'stop' });
  refreshButtons(false);
}

// ---- unattended modes ----
/** Longest wait for one report POST before it is sent again, and how often it is tried. */
const POST_TIMEOUT_MS = 10000;
const POST_TRIES = 3;

/** POSTs a report to the runner (again, on a new request, if one hangs or fails). */
async function post(report) {
  const body = JSON.stringify({
    run: RUN,
    user_agent: navigator.userAgent,
    wasm_variant: wasmVariant,
    ...report,
  });
  for (let attempt = 1; ; attempt++) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), POST_TIMEOUT_MS);
    try {
      const resp = await fetch('report', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body,
        signal: abort.signal,
      });
      if (resp.ok || attempt >= POST_TRIES) return;
    } catch (e) {
      if (attempt >= POST_TRIES) return;
    } finally {
      clearTimeout(timer);
    }
  }
}

function selectedModels() {
  const only = params.get('only');
  if (!only) return registry.models;
  const names = only.split(',');
  return registry.models.filter((m) => names.includes(m.id));
}

/** Runs every standard case on the loaded model. */
async function runCases(doc) {
  const out = [];
  for (const c of doc.cases) {
    const ans = await call({ cmd: 'generate', request: c, digests: true });
    out.push(
      ans.ok
        ? { name: c.name, ok: true, result: ans.result, tok_s: ans.tok_s }
        : { name: c.name, ok: false, code: ans.code, message: ans.message },
    );
  }
  return out;
}

/** Selects and loads a model entry; a refusal on selection is answered like a failed load. */
async function selectAndLoad(model) {
  try {
    selectModel(model.id);
  } catch (e) {
    return { ok: false, code: e.code, message: e.message };
  }
  return loadModel(model);
}

async function smokeCases(doc) {
  const out = [];
  for (const model of selectedModels()) {
    setStatus(`smoke: ${model.id}`);
    const load = await selectAndLoad(model);
    const entry = { name: model.id, load, cases: [] };
    out.push(entry);
    if (!load.ok) continue;
    entry.cases = await runCases(doc);
  }
  return out;
}

/** Every registry adapter whose base is selected and loads: applied as a one-module plan,
 * then the standard cases, with the receipt. */
async function smokeAdapted(doc) {
  const out = [];
  const bases = selectedModels();
  for (const a of registry.adapters) {
    const model = bases.find((m) => m.id === a.base);
    if (!model) continue;
    setStatus(`smoke: ${a.id}`);
    const load = await selectAndLoad(model);
    if (!load.ok) continue;
    const entry = { name: a.id, base: a.base, family: a.family, cases: [] };
    out.push(entry);
    let ans;
    try {
      selectAdapter(a.family, a.base);
      ans = await applyAdapter(model, a);
    } catch (e) {
      ans = { ok: false, code: e.code, message: e.message };
    }
    entry.apply = { ok: ans.ok, code: ans.ok ? 0 : ans.code, message: ans.message || '' };
    if (!ans.ok) continue;
    entry.receipt_hex = ans.receipt_hex;
    entry.cases = await runCases(doc);
  }
  return out;
}

/** Loads the bytes at `url` as a Blob, through the worker's path for a file chosen on the
 * page (no registry size or digest). A failed fetch has no code (null), so the runner cannot
 * take it for any module's answer. */
async function loadAsFile(url) {
  const resp = await fetch(url);
  if (!resp.ok) return { ok: false, code: null, message: `${url}: HTTP ${resp.status}` };
  return call({ cmd: 'load', file: new Blob([await resp.arrayBuffer()]) });
}

/** Every malformed case through the registry's path (fetch) and as a chosen file (a Blob). */
async function smokeMalformed() {
  const manifest = await getJson('corpus/malformed/manifest.json');
  const out = [];
  const code = (ans) => (ans.ok ? 0 : ans.code);
  for (const c of manifest.cases) {
    const url = `corpus/malformed/${c.file}`;
    const ans = c.file === null
      ? await call({ cmd: 'begin', total: c.bytes })
      : await call({ cmd: 'load', url });
    const asFile = c.file === null ? null : await loadAsFile(url);
    out.push({
      name: c.name,
      file: c.file,
      bytes: c.bytes,
      ok: ans.ok,
      code: code(ans),
      message: ans.message || '',
      file_code: asFile === null ? null : code(asFile),
    });
  }
  return out;
}

/** The default model loaded as a chosen file (a Blob): the digest the module reports. */
async function smokeFileLoad() {
  const model = selectModel(params.get('model') || defaultModel);
  const ans = await loadAsFile(model.path);
  return { model: model.id, ok: ans.ok, code: ans.ok ? 0 : ans.code, digest: ans.digest || null };
}

async function smokeMalformedAdapters() {
  const dir = 'corpus/malformed/adapters';
  const manifest = await getJson(`${dir}/manifest.json`);
  const out = [];
  for (const c of manifest.cases) {
    let urls;
    if (c.check === 'apply') {
      const base = await call({ cmd: 'load', url: `corpus/${c.base}` });
      if (!base.ok) throw new Error(`loading ${c.base}: ${errorText(base)}`);
      urls = [c.plan, ...c.modules];
    } else if ((c.check === 'adapter' || c.check === 'plan') && c.file !== null) {
      urls = [c.file];
    } else continue;
    const ans = await call({ cmd: 'check', check: c.check, urls: urls.map((f) => `${dir}/${f}`) });
    out.push({ name: c.name, check: c.check, ok: ans.ok, code: ans.ok ? 0 : ans.code, message: ans.message || '' });
  }
  return out;
}

async function smokeMissing() {
  const ans = await call({ cmd: 'load', url: 'corpus/missing-model.slm', sha256: null });
  return { ok: ans.ok, code: ans.ok ? 0 : ans.code, http_status: ans.http_status };
}

async function loadDefault() {
  const model = selectModel(params.get('model') || defaultModel);
  const ans = await loadModel(model);
  if (!ans.ok) throw new Error(`loading ${model.id}: ${errorText(ans)}`);
  return model;
}

async function smokeOverlong(doc) {
  const model = await loadDefault();
  const ans = await call({ cmd: 'generate', request: doc.overlong });
  return { model: model.id, ok: ans.ok, code: ans.ok ? 0 : ans.code, message: ans.message || '' };
}

async function smokeSteps(doc) {
  const model = await loadDefault();
  const steps = [];
  // One report after each step, sent in order, one at a time.
  let posted = Promise.resolve();
  const ans = await call({ cmd: 'generate', request: doc.steps, perStep: true }, (ev) => {
    if (ev.type !== 'step') return;
    const { id, type, ...step } = ev;
    steps.push(step);
    const index = steps.length - 1;
    posted = posted.then(() => post({ kind: 'step', index, step }));
  });
  await posted;
  return { model: model.id, ok: ans.ok, code: ans.ok ? 0 : ans.code, steps, result: ans.ok ? ans.result : null };
}

/** Commands sent without waiting for each other (two loads, then a generation) run one at a
 * time in the worker, the generation giving what it gives alone; a Load click while a load is
 * in flight does nothing. */
async function smokeRace(doc) {
  const model = selectModel(params.get('model') || defaultModel);
  const [first, second, raced] = await Promise.all([
    loadModel(model),
    loadModel(model),
    call({ cmd: 'generate', request: doc.steps, digests: true }),
  ]);
  const alone = await call({ cmd: 'generate', request: doc.steps, digests: true });
  $('model').value = model.id;
  const clicked = exclusive(loadSelected);
  const again = await exclusive(loadSelected);
  const loaded = await clicked;
  // The buttons follow the loaded model, not the list: with another model selected (one with
  // adapters when the loaded one has none, or the other way round), Apply stays as it was.
  const hasAdapters = (id) => registry.adapters.some((a) => a.base === id);
  const other = registry.models.find((m) => hasAdapters(m.id) !== hasAdapters(model.id));
  if (other) $('model').value = other.id;
  const buttons = {
    load: !$('load').disabled,
    generate: !$('generate').disabled,
    apply: !$('apply').disabled,
  };
  $('model').value = model.id;
  return {
    model: model.id,
    loads_ok: first.ok && second.ok,
    generations_ok: raced.ok && alone.ok,
    same_result: raced.ok && alone.ok && JSON.stringify(raced.result) === JSON.stringify(alone.result),
    click_ok: loaded.ok,
    second_click_ignored: !again.ok && busy === false,
    buttons_follow_the_loaded_model:
      loaded.ok && buttons.load && buttons.generate && buttons.apply === hasAdapters(model.id),
    message: [first, second, raced, alone, loaded].filter((a) => !a.ok).map((a) => a.message).join('; '),
  };
}

async function smoke(modes) {
  const report = { kind: 'final', modes: {} };
  try {
    const doc = await getJson('cases.json');
    for (const mode of modes) {
      if (mode === '1') {
        report.modes.cases = await smokeCases(doc);
        report.modes.adapted = await smokeAdapted(doc);
      }
      else if (mode === 'malformed') {
        report.modes.malformed = await smokeMalformed();
        report.modes.file_load = await smokeFileLoad();
        report.modes.malformed_adapters = await smokeMalformedAdapters();
      }
      else if (mode === 'missing') report.modes.missing = await smokeMissing();
      else if (mode === 'overlong') report.modes.overlong = await smokeOverlong(doc);
      else if (mode === 'steps') report.modes.steps = await smokeSteps(doc);
      else if (mode === 'race') report.modes.race = await smokeRace(doc);
      else throw new Error(`unknown smoke mode ${mode}`);
    }
  } catch (e) {
    report.fatal = String(e && e.message ? e.message : e);
  }
  setStatus('smoke done');
  await post(report);
  window.close();
}

/** Holds the load event (and a headless --screenshot) until the demo was reported: added
 * while the module script runs, before the load event can fire. */
function holdLoadEvent() {
  const hold = new Image();
  hold.alt = '';
  hold.hidden = true;
  hold.src = `hold?run=${encodeURIComponent(RUN)}`;
  document.body.append(hold);
}

async function demo() {
  try {
    $('model').value = params.get('model') || defaultModel;
    const load = await exclusive(loadSelected);
    const gen = load.ok ? await exclusive(generateFromForm, true) : load;
    await post({ kind: 'demo', ok: gen.ok, tok_s: gen.tok_s || null, load_ms: load.load_ms || null });
  } catch (e) {
    await post({ kind: 'demo', ok: false, fatal: String(e) });
  }
}

// ---- the page benchmark ----
const MIB = 1048576;

/** `median (slowest..fastest)` of the rates `units / seconds` of runs timed in ms (the median
 * of the rates: for an even count the mean of the two middle rates). */
function rateCell(units, ms) {
  const rates = ms.map((t) => units / (t / 1000));
  const f = (r) => r.toFixed(1);
  return `${f(median(rates))} (${f(Math.min(...rates))}..${f(Math.max(...rates))})`;
}

/** `median (min..max)` of times in ms. */
function msCell(ms) {
  return `${median(ms).toFixed(1)} (${Math.min(...ms).toFixed(1)}..${Math.max(...ms).toFixed(1)})`;
}

function benchRow(cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = c;
    tr.append(td);
  }
  $('bench-rows').append(tr);
}

function showBench(name, ans) {
  if (!ans.ok) {
    benchRow([name, wasmVariant, `${errorText(ans)}`]);
    return;
  }
  const t = ans.times;
  benchRow([
    name,
    wasmVariant,
    (ans.file_bytes / MIB).toFixed(2),
    msCell(t.fetch_ms),
    msCell(t.load_ms),
    msCell(t.fetch_load_ms),
    rateCell(ans.prompt_tokens, t.prefill_ms),
    rateCell(ans.decode_tokens, t.decode_ms),
    `${(ans.wasm_memory_after_load_bytes / MIB).toFixed(2)} / ${(ans.wasm_memory_end_bytes / MIB).toFixed(2)}`,
  ]);
}

async function bench(names) {
  const report = { kind: 'final', bench: [] };
  const runs = Number(params.get('runs') || '3');
  const promptBytes = Number(params.get('prompt') || '127');
  const decodeTokens = Number(params.get('decode') || '32');
  $('bench-panel').hidden = false;
  $('bench-note').textContent = `median of ${runs} run(s) after a warm-up, spread lowest..highest (tok/s: slowest..fastest; ms: fastest..slowest); ` +
    `prefill: BOS + ${promptBytes} bytes; decode: ${decodeTokens} greedy tokens after BOS, logits digest off`;
  for (const name of names) {
    const ans = await call(
      { cmd: 'bench', url: `bench/${encodeURIComponent(name)}.slm`, runs, promptBytes, decodeTokens },
      (ev) => setStatus(`bench: ${name}: ${ev.phase}`),
    );
    showBench(name, ans);
    const { id, ok, ...figures } = ans;
    report.bench.push({ name, ok, ...figures });
  }
  setStatus('bench done');
  await post(report);
  window.close();
}

async function main() {
  try {
    await setUp();
  } catch (e) {
    setStatus(`cannot start: ${e.message}`, true);
    if (params.has('smoke') || params.has('bench')) {
      await post({ kind: 'final', fatal: String(e.message), modes: {} });
      window.close();
    }
    return;
  }
  if (params.has('smoke')) await smoke(params.get('smoke').split(','));
  else if (params.has('bench')) await bench(params.get('bench').split(','));
  else if (params.get('demo') === '1') await demo();
}

if (params.get('demo') === '1') holdLoadEvent();
main();
