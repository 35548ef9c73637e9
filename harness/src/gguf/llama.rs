//! What a `llama` GGUF says about its tokenizer (`tokenizer.ggml.*`, model `llama`, i.e.
//! SentencePiece) and its shape (`llama.*`), mapped into TinyRustLM's types with llama.cpp's
//! defaults.

use anyhow::{anyhow, bail, ensure, Context, Result};
use runtime::format::{Pieces, TokenType, TokenizerKind, Vocab};

use super::{Gguf, Value};

/// A special-token id meaning "none": llama.cpp's `LLAMA_TOKEN_NULL` (-1) stored as a u32, as
/// its converters write for an absent padding or separator token.
const NO_TOKEN: u32 = u32::MAX;

/// SentencePiece's stand-in for a space, U+2581.
const SPM_SPACE: &str = "\u{2581}";

/// The hyperparameters of a `llama` GGUF.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LlamaHparams {
    /// `llama.embedding_length`.
    pub dim: u32,
    /// `llama.block_count`.
    pub n_layers: u32,
    /// `llama.feed_forward_length`.
    pub ffn_dim: u32,
    /// `llama.attention.head_count`.
    pub n_heads: u32,
    /// `llama.attention.head_count_kv` (default: `n_heads`).
    pub n_kv_heads: u32,
    /// `dim / n_heads`.
    pub head_dim: u32,
    /// `llama.context_length`.
    pub context_length: u32,
    /// `llama.rope.freq_base` (default 10000).
    pub rope_theta: f32,
    /// `llama.attention.layer_norm_rms_epsilon` (default 1e-5).
    pub rms_eps: f32,
    /// `llama.vocab_size`, else the length of `tokenizer.ggml.tokens`.
    pub vocab_size: u32,
}

/// `key`'s value if present; an error naming the key if present with another type.
fn typed<'g, 'a, T>(
    g: &'g Gguf<'a>,
    key: &str,
    want: &str,
    get: impl Fn(&'g Value<'a>) -> Option<T>,
) -> Result<Option<T>> {
    match g.kv(key) {
        None => Ok(None),
        Some(v) => get(v)
            .map(Some)
            .ok_or_else(|| anyhow!("GGUF key {key} is {}, expected {want}", v.type_label())),
    }
}

fn opt_u32(g: &Gguf<'_>, key: &str) -> Result<Option<u32>> {
    typed(g, key, "u32", |v| match v {
        Value::U32(x) => Some(*x),
        _ => None,
    })
}

fn req_u32(g: &Gguf<'_>, key: &str) -> Result<u32> {
    opt_u32(g, key)?.ok_or_else(|| anyhow!("GGUF key {key} is missing"))
}

fn opt_f32(g: &Gguf<'_>, key: &str) -> Result<Option<f32>> {
    typed(g, key, "f32", |v| match v {
        Value::F32(x) => Some(*x),
        _ => None,
    })
}

fn opt_bool(g: &Gguf<'_>, key: &str) -> Result<Option<bool>> {
    typed(g, key, "bool", |v| match v {
        Value::Bool(x) => Some(*x),
        _ => None,
    })
}

fn opt_str<'a>(g: &Gguf<'a>, key: &str) -> Result<Option<&'a str>> {
    typed(g, key, "str", |v| match v {
        Value::Str(s) => Some(*s),
        _ => None,
    })
}

/// The byte a SentencePiece byte piece `<0xXX>` (upper-case hex, as llama.cpp writes) stands for.
fn byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    let upper = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
    if hex.len() != 2 || !hex.bytes().all(upper) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Reads the tokenizer of a GGUF whose `tokenizer.ggml.model` is `llama` (SentencePiece).
///
/// Pieces are `tokenizer.ggml.tokens` with `▁` replaced by a space; byte pieces `<0xXX>` keep
/// that text. `scores` default to 0.0 and must be finite; `token_type` codes must be 1..=6 and
/// default to `Byte` for `<0xXX>` pieces and `Normal` otherwise; a `Byte` token must be a
/// `<0xXX>` piece. Special ids default as llama.cpp's SentencePiece vocabulary does (BOS 1,
/// EOS 2, UNK 0, no PAD); an id of `u32::MAX` means none (llama.cpp's `LLAMA_TOKEN_NULL`), any
/// other must be below the vocabulary size (llama.cpp only warns and falls back; this reader
/// refuses). `add_bos_token` and `add_space_prefix` default to true.
/// Byte fallback is on when all 256 byte pieces are present as `Byte` tokens. Generation stops
/// at EOS, as llama.cpp does, and at BOS: a model that emits BOS starts another document (the
/// TinyStories models end every story so), where llama.cpp would go on without showing the
/// control token and run.c stops; the same model converted from llama2.c stops there too.
/// `llama.vocab_size`, when present, must equal the token count.
pub fn llama_vocab(g: &Gguf<'_>) -> Result<Vocab> {
    let model = opt_str(g, "tokenizer.ggml.model")?
        .ok_or_else(|| anyhow!("GGUF has no tokenizer (tokenizer.ggml.model is missing)"))?;
    ensure!(
        model == "llama",
        "GGUF tokenizer model '{model}' is not supported (only 'llama', SentencePiece)"
    );
    let tokens = typed(g, "tokenizer.ggml.tokens", "arr[str]", |v| match v {
        Value::Array(a) => a.as_strs(),
        _ => None,
    })?
    .ok_or_else(|| anyhow!("GGUF key tokenizer.ggml.tokens is missing"))?;
    let n = tokens.len();
    ensure!(n > 0, "GGUF tokenizer.ggml.tokens is empty");
    // Before anything is built per token.
    ensure!(
        n <= runtime::limits::MAX_VOCAB as usize,
        "GGUF tokenizer.ggml.tokens has {n} tokens; a .slm vocabulary holds at most {}",
        runtime::limits::MAX_VOCAB
    );
    if let Some(declared) = opt_u32(g, "llama.vocab_size")? {
        ensure!(
            declared as usize == n,
            "llama.vocab_size is {declared} but tokenizer.ggml.tokens has {n} tokens"
        );
    }

    let scores = match typed(g, "tokenizer.ggml.scores", "arr[f32]", |v| match v {
        Value::Array(a) => a.to_f32s(),
        _ => None,
    })? {
        Some(s) => {
            ensure!(
                s.len() == n,
                "tokenizer.ggml.scores has {} entries for {n} tokens",
                s.len()
            );
            if let Some(i) = s.iter().position(|x| !x.is_finite()) {
                bail!("tokenizer.ggml.scores[{i}] is {}, not finite", s[i]);
            }
            s
        }
        None => vec![0.0; n],
    };

    let types: Vec<TokenType> =
        match typed(g, "tokenizer.ggml.token_type", "arr[i32]", |v| match v {
            Value::Array(a) => a.to_i32s(),
            _ => None,
        })? {
            Some(codes) => {
                ensure!(
                    codes.len() == n,
                    "tokenizer.ggml.token_type has {} entries for {n} tokens",
                    codes.len()
                );
                codes
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| {
                        u8::try_from(c)
                            .ok()
                            .and_then(TokenType::from_code)
                            .ok_or_else(|| {
                                anyhow!(
                                    "tokenizer.ggml.token_type[{i}] is {c}, not a type in 1..=6"
                                )
                            })
                    })
                    .collect::<Result<_>>()?
            }
            None => tokens
                .iter()
                .map(|t| {
                    if byte_piece(t).is_some() {
                        TokenType::Byte
                    } else {
                        TokenType::Normal
                    }
                })
                .collect(),
        };

    let mut byte_seen = [false; 256];
    for (i, (t, ty)) in tokens.iter().zip(&types).enumerate() {
        if *ty == TokenType::Byte {
            let b = byte_piece(t)
                .ok_or_else(|| anyhow!("token {i} {t:?} has type Byte but is not <0xXX>"))?;
            byte_seen[b as usize] = true;
        }
    }
    let byte_fallback = byte_seen.iter().all(|&s| s);

    let special = |key: &str, default: Option<u32>| -> Result<Option<u32>> {
        let id = match opt_u32(g, key)? {
            Some(NO_TOKEN) => None,
            Some(id) => Some(id),
            None => default,
        };
        if let Some(id) = id {
            ensure!(
                (id as usize) < n,
                "{key} = {id} is not below the vocabulary size {n}"
            );
        }
        Ok(id)
    };
    let bos = special("tokenizer.ggml.bos_token_id", Some(1))?;
    let eos = special("tokenizer.ggml.eos_token_id", Some(2))?;
    let unk = special("tokenizer.ggml.unknown_token_id", Some(0))?;
    let pad = special("tokenizer.ggml.padding_token_id", None)?;

    Ok(Vocab {
        kind: TokenizerKind::SentencePiece,
        pieces: Pieces::new(tokens.iter().map(|t| t.replace(SPM_SPACE, " ")))
            .map_err(|e| anyhow!("{e}"))?,
        scores,
        types,
        merges: Vec::new(),
        bos,
        eos,
        pad,
        unk,
        stop: {
            let mut stop: Vec<u32> = eos.into_iter().chain(bos).collect();
            stop.dedup();
            stop
        },
        // llama.cpp adds BOS unless told not to, when there is one.
        add_bos: opt_bool(g, "tokenizer.ggml.add_bos_token")?.unwrap_or(bos.is_some()),
        add_dummy_prefix: opt_bool(g, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true),
        byte_fallback,
    })
}

/// Reads the hyperparameters of a GGUF whose `general.architecture` is `llama`. Integers must
/// be u32 and floats f32, as llama.cpp requires. Checks: every count non-zero, `n_heads`
/// divides `dim`, `n_kv_heads` divides `n_heads`, `llama.rope.dimension_count` (when present)
/// equals the head width, `rms_eps` positive and finite, `rope_theta` above 1 and finite.
pub fn llama_hparams(g: &Gguf<'_>) -> Result<LlamaHparams> {
    let arch = opt_str(g, "general.architecture")?
        .ok_or_else(|| anyhow!("GGUF key general.architecture is missing"))?;
    ensure!(
        arch == "llama",
        "GGUF architecture '{arch}' is not supported (only 'llama')"
    );
    let dim = req_u32(g, "llama.embedding_length")?;
    let n_layers = req_u32(g, "llama.block_count")?;
    let ffn_dim = req_u32(g, "llama.feed_forward_length")?;
    let n_heads = req_u32(g, "llama.attention.head_count")?;
    let n_kv_heads = opt_u32(g, "llama.attention.head_count_kv")?.unwrap_or(n_heads);
    let context_length = req_u32(g, "llama.context_length")?;
    let rope_theta = opt_f32(g, "llama.rope.freq_base")?.unwrap_or(10000.0);
    let rms_eps = opt_f32(g, "llama.attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5);
    let vocab_size = match opt_u32(g, "llama.vocab_size")? {
        Some(v) => v,
        None => {
            let tokens = g.get_str_array("tokenizer.ggml.tokens").context(
                "GGUF has neither llama.vocab_size nor a tokenizer.ggml.tokens string array",
            )?;
            ensure!(
                !tokens.is_empty(),
                "tokenizer.ggml.tokens is empty (and there is no llama.vocab_size)"
            );
            u32::try_from(tokens.len())?
        }
    };
    for (name, v) in [
        ("embedding_length", dim),
        ("block_count", n_layers),
        ("feed_forward_length", ffn_dim),
        ("attention.head_count", n_heads),
        ("attention.head_count_kv", n_kv_heads),
        ("context_length", context_length),
        ("vocab_size", vocab_size),
    ] {
        ensure!(v > 0, "llama.{name} is 0");
    }
    ensure!(
        dim % n_heads == 0,
        "embedding_length {dim} is not a multiple of head_count {n_heads}"
    );
    ensure!(
        n_heads % n_kv_heads == 0,
        "head_count {n_heads} is not a multiple of head_count_kv {n_kv_heads}"
    );
    let head_dim = dim / n_heads;
    if let Some(rot) = opt_u32(g, "llama.rope.dimension_count")? {
        ensure!(
            rot == head_dim,
            "llama.rope.dimension_count {rot} differs from the head width {head_dim} \
             (partial rotary embeddings are not supported)"
        );
    }
    ensure!(
        rms_eps.is_finite() && rms_eps > 0.0,
        "rms epsilon {rms_eps} is not positive"
    );
    ensure!(
        rope_theta.is_finite() && rope_theta > 1.0,
        "rope freq_base {rope_theta} is invalid"
    );
    Ok(LlamaHparams {
        dim,
        n_layers,
        ffn_dim,
        n_heads,
        n_kv_heads,
        head_dim,
        context_length,
        rope_theta,
        rms_eps,
        vocab_size,
    })
}

#[cfg(test)]
mod tests {
    use super::byte_piece;

    #[test]
    fn byte_pieces_are_upper_case_hex_only() {
        assert_eq!(byte_piece("<0x0A>"), Some(10));
        assert_eq!(byte_piece("<0xFF>"), Some(255));
        assert_eq!(byte_piece("<0xff>"), None);
        assert_eq!(byte_piece("<0x0A"), None);
        assert_eq!(byte_piece("<0x+A>"), None);
        assert_eq!(byte_piece("<0x100>"), None);
        assert_eq!(byte_piece("a"), None);
    }
}
