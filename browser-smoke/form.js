// The page's pure helpers, kept apart from the DOM so Node can test them
// (harness/tests/smoke_contract.rs): the generation request a form's values make, and how an
// error reads.

import { CODE } from './trlm.js';

/** The names of the codes the page and its wrapper assign (`FILE_DIGEST_MISMATCH` →
 * `FileDigestMismatch`, the runtime's spelling). */
const CODE_NAMES = Object.fromEntries(
  Object.entries(CODE).map(([key, code]) => [
    code,
    key.toLowerCase().replace(/(^|_)([a-z])/g, (_, __, c) => c.toUpperCase()),
  ]),
);

/** An answer's or a refusal's error in the module's form, `error CODE Name[ at byte B]: text`,
 * once: the module's messages already have it; the wrapper's and the page's get it here (an
 * offset they report starts their text as `at byte B: `). */
export function errorText(e) {
  const message = String(e.message);
  if (message.startsWith(`error ${e.code} `)) return message;
  const name = CODE_NAMES[e.code];
  const head = name ? `error ${e.code} ${name}` : `error ${e.code}`;
  const at = /^at byte (\d+): /.exec(message);
  return at ? `${head} at byte ${at[1]}: ${message.slice(at[0].length)}` : `${head}: ${message}`;
}

/** A refusal shaped like the worker's answers. */
export function refusal(code, message) {
  return Object.assign(new Error(message), { code });
}

/** The bit pattern of the f32 nearest `x`. */
function f32Bits(x) {
  const v = new DataView(new ArrayBuffer(4));
  v.setFloat32(0, x, true);
  return v.getUint32(0, true);
}

/** A field's text, trimmed; refused when empty (a number input holds "" for text that is no
 * number). */
function text(fields, key, what) {
  const raw = String(fields[key] ?? '').trim();
  if (raw === '') throw refusal(CODE.INVALID_SETTINGS, `${what}: the field holds no number`);
  return raw;
}

/**
 * The generation request of the form's values (strings: `prompt`, `temperature`, `topK`,
 * `topP`, `seed`, `maxTokens`), or a refusal (InvalidSettings) of a value that is no setting:
 * an empty or non-numeric field, or a top-k that is not a whole number ≥ 0 (0 is off; a
 * negative one used to mean off too). The module and the wrapper refuse the rest of what is out
 * of range (spec/sampling.md). The seed passes as typed: a u64 above 2^53 must not pass through
 * a JavaScript number.
 */
export function formRequest(fields) {
  const number = (key, what) => Number(text(fields, key, what));
  const topK = number('topK', 'top-k');
  if (!Number.isInteger(topK) || topK < 0) {
    throw refusal(CODE.INVALID_SETTINGS, `top-k ${topK} is not a whole number (0 = off)`);
  }
  return {
    prompt: String(fields.prompt ?? ''),
    temperature_bits: f32Bits(number('temperature', 'temperature')),
    top_k: topK > 0 ? topK : null,
    top_p_bits: f32Bits(number('topP', 'top-p')),
    seed: text(fields, 'seed', 'seed'),
    max_new_tokens: number('maxTokens', 'max tokens'),
  };
}
