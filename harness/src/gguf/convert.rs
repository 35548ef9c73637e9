//! llama.cpp GGUF (`general.architecture` = `llama`) → .slm.
//!
//! GGUF tensor names are already ours (spec/slm.md, Architecture 1), so the converter maps each
//! required tensor one to one, reversing ggml's fastest-first dimensions into our outermost-first
//! shape. f32, f16, q8_0 and q4_0 payloads are ggml's bytes in both formats: with
//! [`DTypeChoice::Keep`] they are copied bit-exact; with a target dtype they are dequantized
//! exactly (f16 widening and `q × d` are exact in f32) and requantized with the runtime's
//! quantizers, which give gguf-py's bytes. Norm weights are always f32 (widened exactly when the
//! GGUF stores them otherwise).
//!
//! **RoPE row order.** llama.cpp runs architecture `llama` with its "normal" RoPE
//! (`LLAMA_ROPE_TYPE_NORM`), which rotates adjacent pairs (2j, 2j+1) of each head; its Hugging
//! Face converter permutes the rows of `attn_q`/`attn_k` back from HF's rotate-half order to
//! Meta's interleaved order for exactly that reason, and its llama2.c converter copies rows
//! unchanged. The stored rows are therefore already in the order our adjacent-pair RoPE expects
//! and are copied without permutation. (stories260K.gguf converted here generates the bytes
//! llama2.c's run.c prints for stories260K.bin; see tests/gguf_convert.rs.)
//!
//! **Context length.** The header's `max_context` is the GGUF's `llama.context_length` (what
//! llama.cpp uses as the trained context), capped at [`limits::MAX_CONTEXT`] with a note. The
//! converter reads only the GGUF and does not second-guess it: stories260K.gguf says 2048 where
//! the llama2.c checkpoint it came from says 512; the tensors are the same either way.
//!
//! **Classifier.** No `output.weight` means a tied classifier (header flag). An `output.weight`
//! with the same type, shape and bytes as `token_embd.weight` (llama.cpp's llama2.c converter
//! writes such a copy) is the same classifier: it is stored once and the flag is set, with a
//! note in the provenance.

use anyhow::{anyhow, bail, ensure, Context, Result};
use runtime::format::{self, llama, Config, DType, ModelFile, TensorData};
use runtime::limits;
use runtime::model::quant;
use runtime::sha256::{sha256, to_hex};

use super::{llama_hparams, llama_vocab, GgmlType, Gguf, Tensor, Value};
use crate::fixtures::encode_tensor;

/// What dtype the converted matrices get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DTypeChoice {
    /// Each matrix keeps the GGUF's type, bytes copied unchanged.
    Keep,
    /// Every matrix becomes this dtype (a matrix already of it is copied unchanged).
    To(DType),
}

impl DTypeChoice {
    /// `keep`, or a dtype name (`f32`, `f16`, `q8_0`, `q4_0`).
    pub fn from_name(name: &str) -> Option<DTypeChoice> {
        if name == "keep" {
            Some(DTypeChoice::Keep)
        } else {
            DType::from_name(name).map(DTypeChoice::To)
        }
    }

    /// The name [`DTypeChoice::from_name`] reads.
    pub fn name(self) -> &'static str {
        match self {
            DTypeChoice::Keep => "keep",
            DTypeChoice::To(d) => d.name(),
        }
    }
}

/// A converted model and what the converter had to decide.
pub struct Converted {
    pub model: ModelFile,
    /// Matrices stored as f32 because a block type was asked for and their rows are not whole
    /// 32-element blocks.
    pub kept_f32: Vec<String>,
    /// Decisions worth telling the user (context capped, classifier deduplicated, norms
    /// widened); also written into the provenance.
    pub notes: Vec<String>,
}

/// The storage dtype of a ggml type, when the .slm format has it.
fn slm_dtype(t: GgmlType) -> Option<DType> {
    match t {
        GgmlType::F32 => Some(DType::F32),
        GgmlType::F16 => Some(DType::F16),
        GgmlType::Q8_0 => Some(DType::Q8_0),
        GgmlType::Q4_0 => Some(DType::Q4_0),
        _ => None,
    }
}

/// Refuses GGUF settings that would make llama.cpp compute something our forward pass does not:
/// rope scaling, mixture of experts, key/value widths other than the head width.
fn refuse_unsupported_features(g: &Gguf<'_>, head_dim: u32) -> Result<()> {
    if let Some(v) = g.kv("llama.rope.scaling.type") {
        match v {
            Value::Str("none") => {}
            Value::Str(other) => bail!("rope scaling '{other}' is not supported"),
            other => bail!(
                "GGUF key llama.rope.scaling.type is {}, expected str",
                other.type_label()
            ),
        }
    }
    // llama.cpp reads a scaling factor without a scaling type as linear scaling (the type
    // defaults to "linear"; the factor's older key is rope.scale_linear); 0 and 1 scale nothing.
    for key in ["llama.rope.scaling.factor", "llama.rope.scale_linear"] {
        match g.kv(key) {
            None | Some(Value::F32(0.0 | 1.0)) => {}
            Some(Value::F32(factor)) => bail!("rope scaling by {factor} ({key}) is not supported"),
            Some(other) => bail!("GGUF key {key} is {}, expected f32", other.type_label()),
        }
    }
    let u32_key = |key: &str| -> Result<Option<u32>> {
        match g.kv(key) {
            None => Ok(None),
            Some(Value::U32(v)) => Ok(Some(*v)),
            Some(other) => bail!("GGUF key {key} is {}, expected u32", other.type_label()),
        }
    };
    if let Some(n) = u32_key("llama.expert_count")? {
        ensure!(
            n == 0,
            "mixture-of-experts models (llama.expert_count {n}) are not supported"
        );
    }
    for key in ["llama.attention.key_length", "llama.attention.value_length"] {
        if let Some(n) = u32_key(key)? {
            ensure!(
                n == head_dim,
                "{key} {n} differs from the head width {head_dim} (not supported)"
            );
        }
    }
    Ok(())
}

/// A GGUF tensor's shape in our order (outermost first): ggml's dimensions reversed.
fn shape_of(t: &Tensor<'_>) -> Result<Vec<u32>> {
    t.dims()
        .iter()
        .rev()
        .map(|&d| {
            u32::try_from(d).map_err(|_| anyhow!("tensor {}: dimension {d} is too large", t.name()))
        })
        .collect()
}

/// The tensor's values as f32, exactly.
fn dequantized(t: &Tensor<'_>, src: DType) -> Result<Vec<f32>> {
    let n = usize::try_from(t.n_elements()).context("tensor too large")?;
    let mut out = vec![0f32; n];
    quant::dequantize(src, t.data(), &mut out).map_err(|e| anyhow!("tensor {}: {e}", t.name()))?;
    Ok(out)
}

/// The longest `general.name` the provenance quotes (a longer one is only counted).
const MAX_NAME_SHOWN: usize = 256;

/// Converts a GGUF file's bytes into a model file. `source` names the input (metadata `name`
/// and `source`).
///
/// Refused, with a message naming the cause: an architecture other than `llama`, a tokenizer
/// other than `llama` (SentencePiece), a missing or misshapen tensor, a tensor the architecture
/// does not have, a ggml type other than f32/f16/q8_0/q4_0 (named by [`GgmlType::name`]), rope
/// scaling, experts, and any shape beyond the runtime's limits.
pub fn convert(bytes: &[u8], dtype: DTypeChoice, source: &str) -> Result<Converted> {
    let g = Gguf::parse(bytes).map_err(|e| anyhow!("not a valid GGUF file: {e}"))?;
    // Refuses any architecture but `llama`, naming it.
    let h = llama_hparams(&g)?;
    refuse_unsupported_features(&g, h.head_dim)?;
    let vocab = llama_vocab(&g)?;
    ensure!(
        vocab.pieces.len() == h.vocab_size as usize,
        "the vocabulary has {} tokens but the model {}",
        vocab.pieces.len(),
        h.vocab_size
    );
    // The vocabulary must pass the runtime's tokenizer rules, or the model would not load
    // (e.g. no unk token and no complete set of byte pieces).
    runtime::generate::tokenizer::Tokenizer::new(&vocab)
        .map_err(|e| anyhow!("the GGUF's vocabulary is not usable: {e}"))?;
    let mut notes = Vec::new();
    if h.context_length > limits::MAX_CONTEXT {
        notes.push(format!(
            "context capped from {} to {}",
            h.context_length,
            limits::MAX_CONTEXT
        ));
    }

    let embd = g
        .tensor("token_embd.weight")
        .context("the llama architecture needs tensor \"token_embd.weight\"")?;
    let tied = match g.tensor("output.weight") {
        None => true,
        Some(out) => {
            let same = out.ggml_type() == embd.ggml_type()
                && out.dims() == embd.dims()
                && out.data() == embd.data();
            if same {
                notes.push(
                    "output.weight equals token_embd.weight byte for byte: stored once, \
                     classifier tied"
                        .to_string(),
                );
            }
            same
        }
    };
    let config = Config {
        arch: format::header::ARCH_LLAMA,
        vocab_size: h.vocab_size,
        dim: h.dim,
        n_layers: h.n_layers,
        n_heads: h.n_heads,
        n_kv_heads: h.n_kv_heads,
        head_dim: h.head_dim,
        ffn_dim: h.ffn_dim,
        max_context: h.context_length.min(limits::MAX_CONTEXT),
        rope_theta: h.rope_theta,
        rms_eps: h.rms_eps,
        tied_classifier: tied,
    };
    crate::converted::check_shape(&config, "the model's shape", |field| {
        let key = match field {
            "vocab_size" => "llama.vocab_size or the length of tokenizer.ggml.tokens",
            "dim" => "llama.embedding_length",
            "n_layers" => "llama.block_count",
            "n_heads" => "llama.attention.head_count",
            "n_kv_heads" => "llama.attention.head_count_kv",
            "head_dim" => "llama.embedding_length / llama.attention.head_count",
            "ffn_dim" => "llama.feed_forward_length",
            "max_context" => "llama.context_length",
            "rope_theta" => "llama.rope.freq_base",
            "rms_eps" => "llama.attention.layer_norm_rms_epsilon",
            _ => return None,
        };
        Some(key.to_string())
    })?;

    let slots = llama::slots(&config);
    // A deduplicated output.weight is the one tensor a tied model may carry besides its slots.
    let expected = |name: &str| slots.iter().any(|s| s.name == name) || name == "output.weight";
    if let Some(extra) = g.tensors().iter().find(|t| !expected(t.name())) {
        bail!(
            "tensor {:?} is not part of the llama architecture (not supported)",
            extra.name()
        );
    }

    // First decide every tensor's dtype and check the total against the budget, so an
    // oversized model is refused before anything is dequantized.
    let mut kept_f32 = Vec::new();
    let mut plans = Vec::with_capacity(slots.len());
    let mut total: u64 = 0;
    for slot in slots {
        let t = g
            .tensor(&slot.name)
            .with_context(|| format!("the llama architecture needs tensor {:?}", slot.name))?;
        let src = slm_dtype(t.ggml_type()).ok_or_else(|| {
            anyhow!(
                "tensor {:?} has ggml type {}; the converter reads f32, f16, q8_0 and q4_0",
                slot.name,
                t.ggml_type().name()
            )
        })?;
        let shape = shape_of(t)?;
        ensure!(
            shape == slot.shape,
            "tensor {:?} has shape {:?} (outermost first); the hyperparameters imply {:?}",
            slot.name,
            shape,
            slot.shape
        );
        let mut dst = match (slot.role, dtype) {
            (llama::Role::Norm, _) => DType::F32,
            (llama::Role::Matrix, DTypeChoice::Keep) => src,
            (llama::Role::Matrix, DTypeChoice::To(d)) => d,
        };
        let cols = *shape.last().unwrap_or(&1) as usize;
        if !cols.is_multiple_of(dst.block_elems()) {
            kept_f32.push(slot.name.clone());
            dst = DType::F32;
        }
        total = dst
            .bytes_for(t.n_elements())
            .and_then(|b| total.checked_add(b))
            .context("tensor sizes overflow")?;
        plans.push((slot, t, src, dst, shape));
    }
    ensure!(
        total <= limits::MAX_MODEL_BYTES,
        "the tensors would take {total} bytes; a .slm model is at most {} bytes",
        limits::MAX_MODEL_BYTES
    );

    let mut widened = Vec::new();
    let mut tensors = Vec::with_capacity(plans.len());
    for (slot, t, src, dst, shape) in plans {
        let bytes = if dst == src {
            t.data().to_vec()
        } else {
            if slot.role == llama::Role::Norm {
                widened.push(format!("{} ({})", slot.name, src.name()));
            }
            encode_tensor(&dequantized(t, src)?, dst)
                .with_context(|| format!("tensor {:?} as {}", slot.name, dst.name()))?
        };
        tensors.push(TensorData {
            name: slot.name,
            dtype: dst,
            shape,
            bytes,
        });
    }
    if !widened.is_empty() {
        notes.push(format!("norms widened to f32: {}", widened.join(" ")));
    }
    if !kept_f32.is_empty() {
        notes.push(format!(
            "kept f32 (rows not whole 32-element blocks): {}",
            kept_f32.join(" ")
        ));
    }

    let mut provenance = format!("GGUF v{} (sha256 {})", g.version(), to_hex(&sha256(bytes)));
    match g.get_str("general.name") {
        Some(name) if name.len() <= MAX_NAME_SHOWN => {
            provenance.push_str(&format!(", general.name {name:?}"))
        }
        Some(name) => provenance.push_str(&format!(
            ", general.name of {} bytes (not shown)",
            name.len()
        )),
        None => {}
    }
    provenance.push_str(&format!(
        ", context_length {}; matrices: {}",
        h.context_length,
        match dtype {
            DTypeChoice::Keep => "kept bit-exact".to_string(),
            DTypeChoice::To(d) => format!("as {}", d.name()),
        }
    ));
    for note in &notes {
        provenance.push_str("; ");
        provenance.push_str(note);
    }
    let mut metadata = vec![
        ("name".to_string(), source.to_string()),
        ("kind".to_string(), "converted".to_string()),
        ("source".to_string(), source.to_string()),
        (
            "converter".to_string(),
            format!("tinyrustlm convert gguf {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "provenance".to_string(),
            crate::converted::fit_metadata_value(provenance),
        ),
    ];
    if let Some(licence) = g
        .get_str("general.license")
        .filter(|l| l.len() <= limits::MAX_METADATA_VALUE_BYTES)
    {
        metadata.push(("licence".to_string(), licence.to_string()));
    }
    Ok(Converted {
        model: ModelFile {
            config,
            metadata,
            vocab,
            tensors,
        },
        kept_f32,
        notes,
    })
}
