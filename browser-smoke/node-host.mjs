// node-host.mjs: the Node engine. Hosts the runtime's wasm module through trlm.js and speaks a
// line-based JSON protocol: one request object per stdin line, one answer object per stdout line.
//
//   node node-host.mjs MODULE.wasm                 runs that module ("variant":"given")
//   node node-host.mjs SCALAR.wasm SIMD128.wasm    runs the simd128 module when this Node
//                                                  validates simd128, else the scalar one
//   -> {"ok":true,"ready":true,"abi_version":2,"variant":"simd128"|"scalar"|"given"}
//   {"op":"set_context","positions":N}                       -> {"ok":true}
//   {"op":"load","b64":BASE64}                                -> {"ok":true,"digest":HEX,"bytes":N}
//   {"op":"generate","prompt_b64":B64,"temperature_bits":U32,"top_k":N|null,"top_p_bits":U32,
//    "seed":"DECIMAL","max_new_tokens":N}
//     -> {"ok":true,"prompt_tokens":[..],"tokens":[..],"text_hex":HEX,"logits_digest":HEX,
//         "step_digests":[..],"finish":NAME}
//   {"op":"apply_plan","plan_b64":B64,"modules_b64":[B64,..]} -> {"ok":true,"receipt_hex":HEX}
//   {"op":"remove_adapters"}                                  -> {"ok":true}
//   {"op":"validate_adapter","b64":B64}                       -> {"ok":true}
//   {"op":"validate_plan","b64":B64}  (checks the base too when a model is loaded) -> {"ok":true}
//   {"op":"unload"}                                           -> {"ok":true}
//   {"op":"require_plan","plan_hex":HEX|null,"receipt_hex":HEX|null}  (digests) -> {"ok":true}
//   any failure -> {"ok":false,"code":N,"message":TEXT}   (code 0: not a runtime error)
//
// Uses only Node's standard library; no npm packages.

import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { instantiate, simd128Supported, toHex, TrlmError } from './trlm.js';

const [scalarPath, simdPath] = process.argv.slice(2);
if (!scalarPath) {
  process.stderr.write('usage: node node-host.mjs MODULE.wasm | SCALAR.wasm SIMD128.wasm\n');
  process.exit(2);
}
let variant = 'given';
let wasmPath = scalarPath;
if (simdPath) {
  variant = simd128Supported() ? 'simd128' : 'scalar';
  wasmPath = variant === 'simd128' ? simdPath : scalarPath;
}

let trlm;
try {
  trlm = await instantiate(readFileSync(wasmPath));
} catch (e) {
  // A missing file or one that is no module (or not ours): one line, no stack.
  process.stderr.write(`node-host: ${wasmPath}: ${e.message}\n`);
  process.exit(2);
}
let context = 0;

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function handle(req) {
  switch (req.op) {
    case 'set_context':
      // Checked here, as the module would (no wrapping of a number past u32).
      if (!Number.isInteger(req.positions) || req.positions < 0 || req.positions > 0xffffffff) {
        throw new TrlmError(0, `positions ${JSON.stringify(req.positions)} is not a u32`);
      }
      context = req.positions;
      return {};
    case 'load': {
      const bytes = new Uint8Array(Buffer.from(req.b64, 'base64'));
      // As the native engine: the previous model goes first, then the context applies.
      trlm.unload();
      trlm.setContext(context);
      trlm.load(bytes);
      const d = trlm.diagnostics();
      return { digest: d.model_digest, bytes: d.model_bytes };
    }
    case 'generate': {
      trlm.setSampling({
        temperatureBits: req.temperature_bits,
        topK: req.top_k,
        topPBits: req.top_p_bits,
        seed: req.seed,
        maxNewTokens: req.max_new_tokens,
      });
      trlm.start(new Uint8Array(Buffer.from(req.prompt_b64, 'base64')));
      return trlm.runToEnd(false);
    }
    case 'apply_plan': {
      const plan = new Uint8Array(Buffer.from(req.plan_b64, 'base64'));
      const modules = req.modules_b64.map((m) => new Uint8Array(Buffer.from(m, 'base64')));
      return { receipt_hex: toHex(trlm.applyPlan(plan, modules)) };
    }
    case 'validate_adapter':
      trlm.validateAdapter(new Uint8Array(Buffer.from(req.b64, 'base64')));
      return {};
    case 'validate_plan':
      trlm.validatePlan(new Uint8Array(Buffer.from(req.b64, 'base64')));
      return {};
    case 'unload':
      trlm.unload();
      return {};
    case 'remove_adapters':
      trlm.removeAdapters();
      return {};
    case 'require_plan': {
      const digest = (hex) => {
        if (hex == null) return null;
        if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex)) {
          throw new TrlmError(0, `a digest is 64 lower-case hex digits, not ${JSON.stringify(hex)}`);
        }
        return new Uint8Array(Buffer.from(hex, 'hex'));
      };
      trlm.requirePlan(digest(req.plan_hex), digest(req.receipt_hex));
      return {};
    }
    default:
      throw new TrlmError(0, `unknown op ${JSON.stringify(req.op)}`);
  }
}

reply({ ok: true, ready: true, abi_version: trlm.call('trlm_abi_version'), variant });
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (line.trim() === '') continue;
  try {
    reply({ ok: true, ...handle(JSON.parse(line)) });
  } catch (e) {
    const code = e instanceof TrlmError ? e.code : 0;
    reply({ ok: false, code, message: String(e && e.message ? e.message : e) });
  }
}
