//! `tinyrustlm verify` and `tinyrustlm inspect`: full validation, and a readable (or JSON) account
//! of a verified file.

use runtime::format::{self, Slm, TokenType, TokenizerKind};
use runtime::limits;
use runtime::sha256::to_hex;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Everything `verify` checks: the container (every rule of spec/slm.md) and what the runtime
/// builds from it before use (the tokenizer).
pub fn verify(bytes: &[u8]) -> Result<Slm<'_>, runtime::Error> {
    let slm = Slm::parse(bytes)?;
    runtime::generate::tokenizer::Tokenizer::new(&slm.vocab)?;
    Ok(slm)
}

/// The error as the CLI prints it: code, name, offset and message.
pub fn describe_error(e: &runtime::Error) -> String {
    let mut s = format!("error {} {}", e.code as u32, e.code.name());
    if let Some(o) = e.offset {
        let _ = write!(s, " at byte {o}");
    }
    let _ = write!(s, ": {}", e.message);
    s
}

fn kind_name(k: TokenizerKind) -> &'static str {
    match k {
        TokenizerKind::ByteLevel => "byte-level",
        TokenizerKind::SentencePiece => "sentencepiece",
        TokenizerKind::RankedMerge => "ranked-merge",
    }
}

/// The JSON report of `inspect --json`.
pub fn report(slm: &Slm<'_>) -> Value {
    let h = &slm.header;
    let c = &h.config;
    let v = &slm.vocab;
    let count = |t: TokenType| v.types.iter().filter(|&&x| x == t).count();
    let tensors: Vec<Value> = slm
        .tensors
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "dtype": t.dtype.name(),
                "shape": t.shape(),
                "offset": t.offset,
                "bytes": t.length,
                "sha256": to_hex(&t.digest),
            })
        })
        .collect();
    let mut by_dtype = serde_json::Map::new();
    for d in format::DType::ALL {
        let bytes: u64 = slm
            .tensors
            .iter()
            .filter(|t| t.dtype == d)
            .map(|t| t.length)
            .sum();
        if bytes > 0 {
            by_dtype.insert(d.name().to_string(), json!(bytes));
        }
    }
    let sections: Vec<Value> = h
        .sections
        .as_array()
        .iter()
        .zip(format::header::Sections::NAMES)
        .map(|(s, name)| json!({"name": name, "offset": s.offset, "bytes": s.length}))
        .collect();
    json!({
        "format": format!("slm {}.{}", format::header::VERSION_MAJOR, h.version_minor),
        "file_bytes": h.file_bytes,
        "sha256": to_hex(&h.file_digest),
        "budget": {
            "limit_bytes": limits::MAX_MODEL_BYTES,
            "headroom_bytes": limits::MAX_MODEL_BYTES - h.file_bytes,
        },
        "config": {
            "architecture": "llama",
            "vocab_size": c.vocab_size,
            "dim": c.dim,
            "n_layers": c.n_layers,
            "n_heads": c.n_heads,
            "n_kv_heads": c.n_kv_heads,
            "head_dim": c.head_dim,
            "ffn_dim": c.ffn_dim,
            "max_context": c.max_context,
            "rope_theta": c.rope_theta,
            "rms_eps": c.rms_eps,
            "tied_classifier": c.tied_classifier,
        },
        "sections": sections,
        "metadata": slm.metadata.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "tokenizer": {
            "kind": kind_name(v.kind),
            "tokens": v.pieces.len(),
            "byte_tokens": count(TokenType::Byte),
            "control_tokens": count(TokenType::Control),
            "merges": v.merges.len(),
            "bos": v.bos, "eos": v.eos, "pad": v.pad, "unk": v.unk,
            "stop": v.stop,
            "add_bos": v.add_bos,
            "add_dummy_prefix": v.add_dummy_prefix,
            "byte_fallback": v.byte_fallback,
        },
        "tensor_bytes_by_dtype": by_dtype,
        "tensors": tensors,
    })
}

/// The readable report of `inspect`.
pub fn report_text(slm: &Slm<'_>) -> String {
    let r = report(slm);
    let mut s = String::new();
    let c = &r["config"];
    let _ = writeln!(s, "format      {}", r["format"].as_str().unwrap_or(""));
    let _ = writeln!(
        s,
        "bytes       {} (budget {}, headroom {})",
        r["file_bytes"],
        limits::MAX_MODEL_BYTES,
        r["budget"]["headroom_bytes"]
    );
    // The file digest of spec/slm.md (SHA-256 of the file's bytes without its digest field),
    // not what `sha256sum` prints for the file.
    let _ = writeln!(
        s,
        "file digest {} (slm.md: SHA-256 of the file without its digest field)",
        r["sha256"].as_str().unwrap_or("")
    );
    let _ = writeln!(
        s,
        "model       llama: vocab {} dim {} layers {} heads {} kv_heads {} head_dim {} ffn {} context {} rope_theta {} rms_eps {} {}",
        c["vocab_size"], c["dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"], c["head_dim"],
        c["ffn_dim"], c["max_context"], c["rope_theta"], c["rms_eps"],
        if c["tied_classifier"].as_bool() == Some(true) { "tied classifier" } else { "separate classifier" }
    );
    for (k, v) in slm.metadata.iter() {
        let _ = writeln!(s, "meta        {k} = {v}");
    }
    let t = &r["tokenizer"];
    let _ = writeln!(
        s,
        "tokenizer   {} with {} tokens ({} byte, {} control), {} merges; bos {} eos {} unk {} stop {}; add_bos {} dummy_prefix {} byte_fallback {}",
        t["kind"].as_str().unwrap_or(""), t["tokens"], t["byte_tokens"], t["control_tokens"], t["merges"],
        t["bos"], t["eos"], t["unk"], t["stop"], t["add_bos"], t["add_dummy_prefix"], t["byte_fallback"]
    );
    let _ = writeln!(s, "tensors     {}", slm.tensors.len());
    for e in &slm.tensors {
        let shape: Vec<String> = e.shape().iter().map(|d| d.to_string()).collect();
        let _ = writeln!(
            s,
            "  {:<28} {:<5} {:<12} {:>9} bytes @{:<9} {}",
            e.name,
            e.dtype.name(),
            shape.join("x"),
            e.length,
            e.offset,
            &to_hex(&e.digest)[..16]
        );
    }
    s
}
