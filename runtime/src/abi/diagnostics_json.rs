//! The diagnostics document (spec/abi.md, Diagnostics): one JSON object with its keys in a fixed
//! order, written by hand (no serde in the runtime).

use crate::generate::Session;
use crate::sha256::to_hex;
use alloc::string::String;
use core::fmt::Write;

/// Version of the document's keys and meanings.
pub const DIAGNOSTICS_VERSION: u32 = 2;

/// The diagnostics of `session` as JSON.
pub fn diagnostics_json(session: &Session, abi_version: u32) -> String {
    let d = session.diagnostics();
    let model = session.model();
    let mut s = String::with_capacity(640);
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "{{\"diagnostics_version\":{DIAGNOSTICS_VERSION},\"model_digest\":\"{}\",\"model_bytes\":{},\
         \"dtype\":\"{}\",\"vocab_size\":{},\"context\":{},\"kv_len\":{},\"prompt_tokens\":{},\
         \"generated_tokens\":{},\"logit_steps\":{},\"logits_digest\":\"{}\",\"scratch_bytes\":{},\
         \"finish\":",
        to_hex(&d.model_digest),
        model.bytes().len(),
        d.weight_dtype.name(),
        model.config.vocab_size,
        d.context,
        d.kv_len,
        d.prompt_tokens,
        d.generated_tokens,
        d.logit_steps,
        to_hex(&d.logits_digest),
        d.scratch_bytes,
    );
    match d.finish {
        Some(f) => {
            let _ = write!(s, "\"{}\"", f.name());
        }
        None => s.push_str("null"),
    }
    let _ = write!(
        s,
        ",\"adapter_modules\":{},\"receipt_digest\":",
        d.adapter_modules
    );
    match d.receipt_digest {
        Some(r) => {
            let _ = write!(s, "\"{}\"", to_hex(&r));
        }
        None => s.push_str("null"),
    }
    let _ = write!(s, ",\"abi_version\":{abi_version}}}");
    s
}
