//! What the converters (`convert llama2c`, `convert gguf`) share about the model they build:
//! the text of a refused shape, and metadata values they write themselves kept within the
//! format's limit.

use runtime::format::header::Config;
use runtime::limits::MAX_METADATA_VALUE_BYTES;

/// The shape field of a `.slm` header at `offset` (spec/slm.md, Header) — how a runtime error
/// of [`Config::validate`] names the field it refused.
fn header_field(offset: u64) -> Option<&'static str> {
    Some(match offset {
        24 => "architecture",
        32 => "vocab_size",
        36 => "dim",
        40 => "n_layers",
        44 => "n_heads",
        48 => "n_kv_heads",
        52 => "head_dim",
        56 => "ffn_dim",
        60 => "max_context",
        64 => "rope_theta",
        68 => "rms_eps",
        _ => return None,
    })
}

/// Checks a converted model's shape as the runtime will (`Config::validate`), before anything is
/// sized from it. A refusal names the runtime's rule and code and, through `source` (a header
/// field name to where the converter read it), the field of the input it came from — not the
/// byte offset in the `.slm` header the runtime's error carries, which the output has not got.
pub fn check_shape(
    config: &Config,
    what: &str,
    source: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let Err(e) = config.validate() else {
        return Ok(());
    };
    let from = e
        .offset
        .and_then(header_field)
        .and_then(source)
        .map(|s| format!("; from {s}"))
        .unwrap_or_default();
    anyhow::bail!(
        "{what} is not runnable: {} (error {} {}{from})",
        e.message,
        e.code as u32,
        e.code.name()
    )
}

/// `text` cut at a character boundary to at most the `.slm` metadata value limit
/// (`MAX_METADATA_VALUE_BYTES`), saying how much was left out: what a converter writes into
/// its own notes (lists of tensors, a source's name) must never make its output invalid.
pub fn fit_metadata_value(text: String) -> String {
    if text.len() <= MAX_METADATA_VALUE_BYTES {
        return text;
    }
    // Room for the suffix: " … (N bytes left out)" with N at most 20 digits.
    let keep_at_most = MAX_METADATA_VALUE_BYTES - 40;
    let mut keep = keep_at_most;
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    let left_out = text.len() - keep;
    format!("{} … ({left_out} bytes left out)", &text[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_is_cut_at_a_character_boundary_and_says_so() {
        let short = "kept f32: a b c".to_string();
        assert_eq!(fit_metadata_value(short.clone()), short);
        let exact = "x".repeat(MAX_METADATA_VALUE_BYTES);
        assert_eq!(fit_metadata_value(exact.clone()), exact);
        for prefix in ["", "a", "ab", "abc"] {
            let long = format!("{prefix}{}", "é✓".repeat(2000));
            let fitted = fit_metadata_value(long.clone());
            assert!(fitted.len() <= MAX_METADATA_VALUE_BYTES, "{}", fitted.len());
            let (kept, note) = fitted.split_once(" … (").unwrap();
            assert!(long.starts_with(kept));
            assert_eq!(note, format!("{} bytes left out)", long.len() - kept.len()));
        }
    }

    #[test]
    fn a_refused_shape_names_the_rule_and_the_source_field_not_an_output_offset() {
        let mut c = Config {
            arch: runtime::format::header::ARCH_LLAMA,
            vocab_size: 512,
            dim: 1280,
            n_layers: 1,
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: 1280,
            ffn_dim: 32,
            max_context: 8,
            rope_theta: 10000.0,
            rms_eps: 1e-5,
            tied_classifier: true,
        };
        let source = |f: &str| (f == "head_dim").then(|| "dim / n_heads".to_string());
        let e = check_shape(&c, "the checkpoint's shape", source).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the checkpoint's shape is not runnable: head_dim 1280 exceeds the limit 1024 \
             (error 25 LimitExceeded; from dim / n_heads)"
        );
        c.dim = 64;
        c.head_dim = 64;
        c.n_layers = 0;
        let e = check_shape(&c, "the model's shape", |_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the model's shape is not runnable: n_layers is 0 (error 6 InvalidHeader)"
        );
        c.n_layers = 1;
        assert!(check_shape(&c, "x", |_| None).is_ok());
    }
}
