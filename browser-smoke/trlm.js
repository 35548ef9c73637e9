// trlm.js: a small wrapper over the runtime's raw WebAssembly ABI (spec/abi.md), usable in a Web
// Worker and in Node. It does no model math: every number that matters is computed inside the
// module and read from linear memory as little-endian u32. Settings that are floats travel as
// their f32 bit patterns (cases.json) and are turned into the exact same f32 here.

/** The ABI version this wrapper speaks. */
export const ABI_VERSION = 2;

/** Output kinds (spec/abi.md, Outputs). */
export const OUTPUT = { TEXT: 1, TOKENS: 2, PROMPT_TOKENS: 3, DIAGNOSTICS: 4, ERROR: 5, RECEIPT: 6 };

/** Step record states, by number (spec/abi.md, trlm_step). */
export const STATE_NAMES = ['token', 'stop', 'max_tokens', 'context_full', 'cancelled', 'failed'];

/** Error codes the page itself assigns (the runtime's ErrorCode numbers, spec/errors.md). */
export const CODE = {
  BUDGET_EXCEEDED: 15,
  FILE_DIGEST_MISMATCH: 21,
  CONTEXT_EXCEEDED: 11,
  INVALID_SETTINGS: 27,
  INVALID_STATE: 29,
  INVALID_ARGUMENT: 34,
  INVALID_LENGTH: 2,
  MODULE_DIGEST_MISMATCH: 44,
};

/** Bytes per trlm_load_chunk call. */
export const LOAD_CHUNK_BYTES = 64 * 1024;

/** Offset and length of the file digest field in a .slm header (spec/slm.md). */
const DIGEST_FIELD = [224, 32];

/** `top_k` value meaning "no top-k". */
const TOP_K_OFF = 0xffffffff;

/** The largest u32, and one past the largest u64: arguments beyond them cannot be passed (a
 * wasm i32 / i64 parameter would wrap them to another value). */
const U32_MAX = 0xffffffff;
const U64_END = 1n << 64n;

/** `value` when it is an integer that fits a u32 parameter; else throws `code`. */
function u32Arg(name, value, code) {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new TrlmError(code, `${name} ${value} is not an integer in 0..=${U32_MAX}`);
  }
  return value;
}

/**
 * A refusal: by the module, with its stable error code (spec/errors.md) and message, or by this
 * wrapper, the worker or the page themselves (a module of another ABI version, a response
 * without a length, an unknown command, a step that ended early), with code 0. The runtime never
 * reports 0 as an error (spec/errors.md), so code 0 always means a host-side failure.
 */
export class TrlmError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** The f32 whose bit pattern is `bits` (exact: every f32 is a JS number). */
export function f32FromBits(bits) {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, bits >>> 0, true);
  return view.getFloat32(0, true);
}

/** Lowercase hex of bytes. */
export function toHex(bytes) {
  let s = '';
  for (const b of bytes) s += (b < 16 ? '0' : '') + b.toString(16);
  return s;
}

/**
 * The smallest module using a simd128 instruction: `(func (result v128) v128.const 0)`. An engine
 * validates it exactly when it runs simd128 (spec/determinism.md, SIMD paths).
 */
const SIMD128_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
  0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
  0x0a, 0x16, 0x01, 0x14, 0x00, // code section: one body of 20 bytes, no locals
  0xfd, 0x0c, ...new Array(16).fill(0), 0x0b, // v128.const 0, end
]);

/** Whether this engine runs wasm simd128 (it validates a simd128 module). */
export function simd128Supported() {
  return WebAssembly.validate(SIMD128_PROBE);
}

/**
 * The module to run: `{variant, url}` with the simd128 build when the engine supports it and
 * `forceScalar` is not set, else the scalar build.
 */
export function pickModule(urls, forceScalar = false) {
  const variant = !forceScalar && simd128Supported() ? 'simd128' : 'scalar';
  return { variant, url: urls[variant] };
}

/** Instantiates the module (bytes or an ArrayBuffer) with an empty import object. */
export async function instantiate(wasm) {
  const { instance } = await WebAssembly.instantiate(wasm, {});
  return new Trlm(instance);
}

/** One instance of the module. */
export class Trlm {
  constructor(instance) {
    this.exports = instance.exports;
    this.memory = instance.exports.memory;
    this.stepBuf = 0;
    const version = this.call('trlm_abi_version');
    if (version !== ABI_VERSION) {
      throw new TrlmError(0, `module ABI version ${version}, wrapper speaks ${ABI_VERSION}`);
    }
  }

  /** Calls export `name`; its i32 result as u32. */
  call(name, ...args) {
    return this.exports[name](...args) >>> 0;
  }

  /** Throws the module's last error when `status` is not 0. */
  check(status) {
    if (status !== 0) throw new TrlmError(status, this.lastErrorMessage());
  }

  bytes() {
    // A fresh view each time: memory growth detaches the old buffer.
    return new Uint8Array(this.memory.buffer);
  }

  /** A host buffer of `len` bytes (len >= 1). */
  alloc(len) {
    const ptr = this.call('trlm_alloc', len);
    if (ptr === 0) {
      const code = this.call('trlm_last_error_code');
      throw new TrlmError(code, this.lastErrorMessage());
    }
    return ptr;
  }

  free(ptr, len) {
    this.check(this.call('trlm_free', ptr, len));
  }

  write(ptr, data) {
    this.bytes().set(data, ptr);
  }

  /** A copy of `len` bytes at `ptr`. */
  read(ptr, len) {
    return this.bytes().slice(ptr, ptr + len);
  }

  /** The u32 little-endian at `ptr`. */
  readU32(ptr) {
    const b = this.bytes();
    return (b[ptr] | (b[ptr + 1] << 8) | (b[ptr + 2] << 16) | (b[ptr + 3] << 24)) >>> 0;
  }

  /** Runs `fn(ptr)` with a host buffer holding `data`, freed afterwards. */
  withBuffer(data, fn) {
    const cap = data.length > 0 ? data.length : 1;
    const ptr = this.alloc(cap);
    try {
      this.write(ptr, data);
      return fn(ptr);
    } finally {
      this.free(ptr, cap);
    }
  }

  /** Output `kind` as bytes; throws when the module refuses. */
  output(kind) {
    const len = this.call('trlm_output_len', kind);
    if (len === 0xffffffff) {
      const code = this.call('trlm_last_error_code');
      throw new TrlmError(code, kind === OUTPUT.ERROR ? '' : this.lastErrorMessage());
    }
    if (len === 0) return new Uint8Array(0);
    const ptr = this.alloc(len);
    try {
      this.check(this.call('trlm_output_copy', kind, ptr, len));
      return this.read(ptr, len);
    } finally {
      this.free(ptr, len);
    }
  }

  /** Output `kind` as u32 little-endian words. */
  words(kind) {
    const b = this.output(kind);
    const out = [];
    for (let i = 0; i + 4 <= b.length; i += 4) {
      out.push((b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0);
    }
    return out;
  }

  lastErrorMessage() {
    try {
      return new TextDecoder().decode(this.output(OUTPUT.ERROR));
    } catch (e) {
      return `(no message: ${e.message})`;
    }
  }

  /** The diagnostics document (integers and hex strings only). */
  diagnostics() {
    return JSON.parse(new TextDecoder().decode(this.output(OUTPUT.DIAGNOSTICS)));
  }

  /**
   * Starts a chunked load of a `total`-byte file. `expectDigest` (hex), when given, must equal
   * the file's digest field: checked as soon as the header arrived, before activation.
   */
  beginLoad(total, expectDigest) {
    return new Loader(this, total, expectDigest);
  }

  /** Loads a whole file through the chunked path. */
  load(data, expectDigest) {
    const loader = this.beginLoad(data.length, expectDigest);
    loader.push(data);
    loader.finish();
  }

  unload() {
    this.check(this.call('trlm_unload'));
  }

  setContext(positions) {
    // Beyond a u32 the count would wrap; every such count is over any model's context.
    this.check(this.call('trlm_set_context', u32Arg('positions', positions, CODE.CONTEXT_EXCEEDED) | 0));
  }

  /**
   * Sampling settings: `temperatureBits` and `topPBits` are f32 bit patterns, `topK` a number or
   * null, `seed` a decimal string (u64), `maxNewTokens` a number. A value its parameter cannot
   * carry (not an integer, or beyond u32 / u64) is refused here with `InvalidSettings`, as the
   * module refuses the values it can see: passing it would wrap it to another, valid setting.
   */
  setSampling(s) {
    const bad = (what) => new TrlmError(CODE.INVALID_SETTINGS, `seed ${s.seed} is ${what}`);
    // Decimal digits only: BigInt() would also take '' (as 0), hex and surrounding spaces.
    if (!/^[0-9]+$/.test(String(s.seed))) throw bad('not a decimal integer');
    const seed = BigInt(s.seed);
    if (seed >= U64_END) throw bad('not a u64');
    const bits = (name, v) => u32Arg(name, v, CODE.INVALID_SETTINGS);
    const topK = s.topK === null || s.topK === undefined ? TOP_K_OFF : s.topK;
    this.check(
      this.call(
        'trlm_set_sampling',
        f32FromBits(bits('temperature bits', s.temperatureBits)),
        u32Arg('top_k', topK, CODE.INVALID_SETTINGS) | 0,
        f32FromBits(bits('top_p bits', s.topPBits)),
        BigInt.asIntN(64, seed),
        u32Arg('max_new_tokens', s.maxNewTokens, CODE.INVALID_SETTINGS) | 0,
      ),
    );
  }

  /** Reads an adapter by every rule of spec/adapters.md (nothing is applied); throws on refusal. */
  validateAdapter(bytes) {
    this.check(
      this.withBuffer(bytes, (ptr) => this.call('trlm_adapter_validate', ptr, bytes.length)),
    );
  }

  /** Reads a plan's text (and, with a model loaded, checks its base); throws on refusal. */
  validatePlan(plan) {
    this.check(this.withBuffer(plan, (ptr) => this.call('trlm_plan_validate', ptr, plan.length)));
  }

  /**
   * Applies a module plan (bytes) with its modules' bytes in plan order, all or nothing; returns
   * the receipt's bytes. With `dryRun`, checks and assembles without applying (returns null).
   */
  applyPlan(plan, modules, dryRun) {
    this.check(this.withBuffer(plan, (ptr) => this.call('trlm_plan_begin', ptr, plan.length)));
    try {
      for (const m of modules) {
        this.check(this.withBuffer(m, (ptr) => this.call('trlm_plan_module', ptr, m.length)));
      }
      if (dryRun) {
        this.check(this.call('trlm_plan_check'));
        this.call('trlm_plan_abort');
        return null;
      }
      this.check(this.call('trlm_plan_apply'));
    } catch (e) {
      // A content failure or apply ended the stage already; abort ends it otherwise.
      this.call('trlm_plan_abort');
      throw e;
    }
    return this.receipt();
  }

  /** The applied plan's receipt bytes (empty when none is applied). */
  receipt() {
    return this.output(OUTPUT.RECEIPT);
  }

  /** Removes every adapter: the model computes with its base bytes again. */
  removeAdapters() {
    this.check(this.call('trlm_remove_adapters'));
  }

  /**
   * Requires a plan before generation: `planDigest` (32 bytes) and optionally `receiptDigest`
   * (32 bytes); with no plan digest the requirement is lifted. A digest of another length is
   * refused (`InvalidLength`), never padded or cut.
   */
  requirePlan(planDigest, receiptDigest) {
    if (!planDigest && receiptDigest) {
      throw new TrlmError(CODE.INVALID_ARGUMENT, 'a receipt digest needs a plan digest');
    }
    const digests = [planDigest, receiptDigest].filter((d) => d);
    for (const d of digests) {
      if (!(d instanceof Uint8Array) || d.length !== 32) {
        throw new TrlmError(CODE.INVALID_LENGTH, `a digest is 32 bytes, not ${d.length}`);
      }
    }
    const data = new Uint8Array(32 * digests.length);
    digests.forEach((d, i) => data.set(d, 32 * i));
    this.check(
      this.withBuffer(data, (ptr) => this.call('trlm_require_plan', ptr, data.length)),
    );
  }

  /** Starts a generation from prompt bytes (UTF-8). */
  start(prompt) {
    this.check(this.withBuffer(prompt, (ptr) => this.call('trlm_start', ptr, prompt.length)));
  }

  /** One step: { token, state, textStart, textEnd } (token null when the record has none). */
  step() {
    if (this.stepBuf === 0) this.stepBuf = this.alloc(16);
    this.check(this.call('trlm_step', this.stepBuf));
    const token = this.readU32(this.stepBuf);
    return {
      token: token === 0xffffffff ? null : token,
      state: this.readU32(this.stepBuf + 4),
      textStart: this.readU32(this.stepBuf + 8),
      textEnd: this.readU32(this.stepBuf + 12),
    };
  }

  /** The text bytes in [start, end) of the text output. */
  textRange(start, end) {
    if (end <= start) return new Uint8Array(0);
    return this.output(OUTPUT.TEXT).slice(start, end);
  }

  cancel() {
    this.check(this.call('trlm_cancel'));
  }

  reset() {
    this.check(this.call('trlm_reset'));
  }

  /**
   * Runs the started generation to its end. `onStep(record, diagnostics)` is called after every
   * step when `perStep` is set (diagnostics read each step, for the cumulative logits digest).
   * Returns what every engine reports (conformance::GenResult).
   */
  runToEnd(perStep, onStep) {
    const stepDigests = [];
    let rec;
    for (;;) {
      rec = this.step();
      const d = this.diagnostics();
      if (rec.state === 0) stepDigests.push(d.logits_digest);
      else if (d.logit_steps > stepDigests.length) stepDigests.push(d.logits_digest);
      if (perStep && onStep) onStep(rec, d);
      if (rec.state !== 0) break;
    }
    return this.result(stepDigests, rec.state);
  }

  /** The outputs of the ended generation. */
  result(stepDigests, state) {
    return {
      prompt_tokens: this.words(OUTPUT.PROMPT_TOKENS),
      tokens: this.words(OUTPUT.TOKENS),
      text_hex: toHex(this.output(OUTPUT.TEXT)),
      logits_digest: this.diagnostics().logits_digest,
      step_digests: stepDigests,
      finish: STATE_NAMES[state] || `state ${state}`,
    };
  }
}

/** The smaller of two sizes (this file calls no Math functions: all model math is in the module). */
function smaller(a, b) {
  return a < b ? a : b;
}

/** A chunked load in progress (trlm_load_begin / chunk / finish). */
export class Loader {
  constructor(trlm, total, expectDigest) {
    if (!Number.isInteger(total) || total < 0) {
      throw new TrlmError(0, `the file length ${total} is not a byte count`);
    }
    // Beyond a u32 the length would wrap; the module refuses every length above the budget.
    if (total > U32_MAX) {
      throw new TrlmError(CODE.BUDGET_EXCEEDED, `the file has ${total} bytes, above the model budget`);
    }
    this.trlm = trlm;
    this.total = total;
    this.received = 0;
    this.expectDigest = expectDigest || null;
    this.header = new Uint8Array(smaller(total, DIGEST_FIELD[0] + DIGEST_FIELD[1]));
    this.done = false;
    trlm.check(trlm.call('trlm_load_begin', total));
    this.cap = total > 0 ? smaller(LOAD_CHUNK_BYTES, total) : 1;
    this.buf = 0;
  }

  /** Appends bytes (any length; fed in LOAD_CHUNK_BYTES pieces). Throws on refusal. */
  push(data) {
    if (this.done) throw new TrlmError(CODE.INVALID_STATE, 'the load has ended');
    try {
      if (this.buf === 0) this.buf = this.trlm.alloc(this.cap);
      for (let off = 0; off < data.length; off += this.cap) {
        const piece = data.subarray(off, smaller(off + this.cap, data.length));
        if (this.received < this.header.length) {
          const n = smaller(piece.length, this.header.length - this.received);
          this.header.set(piece.subarray(0, n), this.received);
        }
        this.trlm.write(this.buf, piece);
        this.trlm.check(this.trlm.call('trlm_load_chunk', this.buf, piece.length));
        this.received += piece.length;
        this.checkDigestField();
      }
    } catch (e) {
      this.end(true);
      throw e;
    }
  }

  /** Once the header arrived: its digest field against the expected digest. */
  checkDigestField() {
    const [at, len] = DIGEST_FIELD;
    if (!this.expectDigest || this.received < at + len || this.digestChecked) return;
    this.digestChecked = true;
    const field = toHex(this.header.subarray(at, at + len));
    if (field !== this.expectDigest) {
      throw new TrlmError(
        CODE.FILE_DIGEST_MISMATCH,
        `at byte ${at}: file digest ${field} differs from the registry's ${this.expectDigest}`,
      );
    }
  }

  /** Verifies the whole file and activates it. */
  finish() {
    try {
      this.end(false);
      if (this.expectDigest && !this.digestChecked) {
        // Shorter than its 256-byte header, which holds the digest field: the module refuses
        // it here with its own error (Truncated at its length), as for a whole-file load
        // (spec/abi.md); the registry's digest has nothing to compare with.
        this.trlm.check(this.trlm.call('trlm_load_finish'));
        throw new TrlmError(CODE.FILE_DIGEST_MISMATCH, 'the file ended before its digest field');
      }
      this.trlm.check(this.trlm.call('trlm_load_finish'));
    } catch (e) {
      this.end(true);
      throw e;
    }
  }

  /** Abandons the load. */
  abort() {
    this.end(true);
  }

  end(abort) {
    if (this.buf !== 0) {
      this.trlm.call('trlm_free', this.buf, this.cap);
      this.buf = 0;
    }
    if (abort && !this.done) this.trlm.call('trlm_load_abort');
    this.done = true;
  }
}

/**
 * Streams the file at `msg.url` with fetch + a reader into the chunked loader of `trlm`; the
 * active model stays active until the new one is verified, and stays when the load fails
 * (spec/abi.md; a caller that wants its memory back first unloads it). `msg.sha256` (hex), when
 * given, must be the file's digest field, and
 * `msg.bytes`, when given, its size (spec/adapters.md, Registry: the size is checked first,
 * before the module sees a byte; a mismatch is refused as the registry's digest is, with
 * `FileDigestMismatch`). Without a Content-Length the size is `msg.bytes`.
 */
export async function streamLoad(trlm, msg, post) {
  const resp = await fetch(msg.url);
  if (!resp.ok) {
    throw Object.assign(new Error(`${msg.url}: HTTP ${resp.status}`), { http: resp.status });
  }
  const length = resp.headers.get('Content-Length');
  const total = length !== null ? Number(length) : msg.bytes;
  if (!Number.isInteger(total)) throw new TrlmError(0, `${msg.url}: the response has no length`);
  if (msg.bytes !== undefined && msg.bytes !== null && total !== msg.bytes) {
    resp.body.cancel().catch(() => {});
    throw new TrlmError(
      CODE.FILE_DIGEST_MISMATCH,
      `${msg.url}: ${total} bytes; the registry says ${msg.bytes}`,
    );
  }
  const loader = trlm.beginLoad(total, msg.sha256 || null);
  await feed(loader, resp.body.getReader(), total, post);
}

/**
 * Streams `file` — a Blob (a File the user chose on the page) — into the chunked loader of
 * `trlm`, as streamLoad does a fetched file. It has no registry entry, so no size or digest is
 * expected of it: the module's own checks decide (every format rule and the file's SHA-256
 * against its digest field, a size over the model budget refused at trlm_load_begin).
 */
export async function streamLoadFile(trlm, file, post) {
  const loader = trlm.beginLoad(file.size, null);
  await feed(loader, file.stream().getReader(), file.size, post);
}

/** Pushes what `reader` yields into `loader` and finishes it; on any failure aborts both. */
async function feed(loader, reader, total, post) {
  let received = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      loader.push(value);
      received += value.length;
      if (post) post({ type: 'progress', received, total });
    }
    loader.finish();
  } catch (e) {
    loader.abort();
    reader.cancel().catch(() => {});
    throw e;
  }
}
