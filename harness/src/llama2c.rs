//! llama2.c checkpoints → .slm: legacy v0 (shared or separate classifier), v1 (fp32 with header)
//! and v2 (int8 groups with f32 scales, requantized into our blocks). Formats: llama2.c's
//! export.py; facts summarised in shared/notes/REFERENCE.md.

use crate::converted;
use crate::fixtures::encode_tensor;
use crate::llama2c_tokenizer::read_tokenizer_bin;
use anyhow::{bail, ensure, Context, Result};
use runtime::format::{self, llama, Config, DType, ModelFile, TensorData};
use runtime::limits;
use runtime::sha256::{sha256, to_hex};

/// Magic of v1/v2 files: the u32 0x616b3432 ("ak42").
const MAGIC_V1: u32 = 0x616b_3432;
/// v1/v2 headers are padded to this many bytes.
const HEADER_V1: usize = 256;

/// The seven int32 hyperparameters every version carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub dim: u32,
    pub hidden_dim: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub vocab_size: u32,
    pub seq_len: u32,
    pub shared_classifier: bool,
}

/// A decoded checkpoint: parameters and every weight as f32 in llama2.c's layout.
pub struct Checkpoint {
    pub version: u32,
    pub params: Params,
    /// v2 only: the int8 group size.
    pub group_size: Option<u32>,
    /// (GGUF-style name, shape outermost first, values).
    pub tensors: Vec<(String, Vec<u32>, Vec<f32>)>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .with_context(|| {
                format!(
                    "checkpoint truncated: {what} needs {n} bytes at offset {}, the file has {}",
                    self.pos,
                    self.bytes.len()
                )
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }

    fn f32s(&mut self, n: usize, what: &str) -> Result<Vec<f32>> {
        let bytes = self.take(n.checked_mul(4).context("size overflow")?, what)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }

    /// v2: `n` int8 values then `n / group` f32 scales, dequantized as q × s (llama2.c runq.c).
    fn q80(&mut self, n: usize, group: usize, what: &str) -> Result<Vec<f32>> {
        let q = self.take(n, what)?;
        let s = self.f32s(n / group, what)?;
        Ok(q.iter()
            .enumerate()
            .map(|(i, &v)| (v as i8) as f32 * s[i / group])
            .collect())
    }
}

/// The checkpoint header's seven hyperparameters, in file order (each an i32).
const PARAM_FIELDS: [&str; 7] = [
    "dim",
    "hidden_dim",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "vocab_size",
    "seq_len",
];

/// Where header field `name` sits in a checkpoint whose hyperparameters start at `base`.
fn field_at(name: &str, base: usize) -> Option<usize> {
    PARAM_FIELDS
        .iter()
        .position(|&f| f == name)
        .map(|i| base + 4 * i)
}

/// The next header field (`what`: one of [`PARAM_FIELDS`], or v2's `group_size`), which
/// must be positive.
fn positive(r: &mut Reader<'_>, what: &str) -> Result<u32> {
    let at = r.pos;
    let v = r.i32(what)?;
    ensure!(v > 0, "checkpoint header: {what} (byte {at}) is {v}");
    Ok(v as u32)
}

fn read_params(r: &mut Reader<'_>, legacy: bool) -> Result<Params> {
    let dim = positive(r, "dim")?;
    let hidden_dim = positive(r, "hidden_dim")?;
    let n_layers = positive(r, "n_layers")?;
    let n_heads = positive(r, "n_heads")?;
    let n_kv_heads = positive(r, "n_kv_heads")?;
    let vocab_at = r.pos;
    let vocab = r.i32("vocab_size")?;
    let seq_len = positive(r, "seq_len")?;
    ensure!(
        vocab != 0 && vocab != i32::MIN,
        "checkpoint header: vocab_size (byte {vocab_at}) is {vocab}"
    );
    // Only a v0 checkpoint marks a separate classifier with a negative vocab size; v1 and v2
    // have a flag byte for it.
    ensure!(
        legacy || vocab > 0,
        "checkpoint header: vocab_size (byte {vocab_at}) is {vocab}; only a v0 checkpoint \
         gives a negative size (v1 and v2 say whether the classifier is shared in byte 36)"
    );
    ensure!(
        dim % n_heads == 0 && n_heads % n_kv_heads == 0,
        "checkpoint header: dim {dim}, n_heads {n_heads}, n_kv_heads {n_kv_heads} are inconsistent"
    );
    Ok(Params {
        dim,
        hidden_dim,
        n_layers,
        n_heads,
        n_kv_heads,
        vocab_size: vocab.unsigned_abs(),
        seq_len,
        // Legacy: a negative vocab size means a separate classifier. v1/v2 have a flag byte.
        shared_classifier: !legacy || vocab > 0,
    })
}

/// The header of a checkpoint of any supported version: its version, hyperparameters (checked
/// against the runtime's limits), int8 group size (v2) and length.
fn read_header(bytes: &[u8]) -> Result<(u32, Params, Option<u32>, usize)> {
    ensure!(
        !bytes.starts_with(b"GGUF"),
        "this is a GGUF file, not a llama2.c checkpoint: use `convert gguf`"
    );
    ensure!(
        bytes.len() >= 28,
        "not a llama2.c checkpoint: {} bytes",
        bytes.len()
    );
    let mut r = Reader { bytes, pos: 0 };
    let magic = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    // Where the hyperparameters start: after v1/v2's magic and version.
    let base = if magic == MAGIC_V1 { 8 } else { 0 };
    let (version, params, group_size) = if magic == MAGIC_V1 {
        r.take(4, "magic")?;
        let version = r.i32("version")?;
        ensure!(
            version == 1 || version == 2,
            "llama2.c checkpoint version {version} is not supported (v0, v1 and v2 are)"
        );
        let mut params = read_params(&mut r, false)?;
        params.shared_classifier = match r.take(1, "shared_classifier")?[0] {
            0 => false,
            1 => true,
            other => bail!("checkpoint header: shared_classifier is {other}"),
        };
        let group = if version == 2 {
            let g = positive(&mut r, "group_size")?;
            Some(g)
        } else {
            None
        };
        ensure!(
            r.take(HEADER_V1 - r.pos, "header padding")?
                .iter()
                .all(|&b| b == 0),
            "checkpoint header padding is not zero"
        );
        (version as u32, params, group)
    } else {
        (0, read_params(&mut r, true)?, None)
    };
    // A shape the runtime runs (its limits included) before anything is sized from it: the
    // budget check lists every layer's tensors, and the weights may be many megabytes.
    let field = |name: &str| field_at(name, base).map(|at| format!("{name} (byte {at})"));
    converted::check_shape(&config_of(&params), "the checkpoint's shape", |f| match f {
        "head_dim" => Some(format!("{} / {}", field("dim")?, field("n_heads")?)),
        "ffn_dim" => field("hidden_dim"),
        "max_context" => field("seq_len"),
        other => field(other),
    })?;
    Ok((version, params, group_size, r.pos))
}

/// The tensors after the header, in the checkpoint's order: every size is checked against the
/// file, and a file with bytes left over is refused.
fn read_tensors(
    r: &mut Reader<'_>,
    version: u32,
    params: Params,
    group_size: Option<u32>,
) -> Result<Checkpoint> {
    let p = params;
    let (dim, hidden, layers, vocab) = (
        p.dim as usize,
        p.hidden_dim as usize,
        p.n_layers as usize,
        p.vocab_size as usize,
    );
    let head = dim / p.n_heads as usize;
    let kv_dim = head * p.n_kv_heads as usize;
    // Every size below is bounded by the file length (checked reads), so products cannot
    // allocate more than the file holds; guard the multiplications themselves.
    let checked = |a: usize, b: usize| a.checked_mul(b).context("checkpoint size overflow");

    let mut t: Vec<(String, Vec<u32>, Vec<f32>)> = Vec::new();
    let layer_shapes = |what: &str| -> Vec<u32> {
        match what {
            "attn_norm" | "ffn_norm" => vec![p.dim],
            "attn_q" | "attn_output" => vec![p.dim, p.dim],
            "attn_k" | "attn_v" => vec![kv_dim as u32, p.dim],
            "ffn_gate" | "ffn_up" => vec![p.hidden_dim, p.dim],
            "ffn_down" => vec![p.dim, p.hidden_dim],
            _ => unreachable!(),
        }
    };
    let elems = |shape: &[u32]| shape.iter().map(|&d| d as usize).product::<usize>();
    let push_layers = |r: &mut Reader<'_>,
                       t: &mut Vec<(String, Vec<u32>, Vec<f32>)>,
                       what: &str,
                       group: Option<usize>|
     -> Result<()> {
        for l in 0..layers {
            let shape = layer_shapes(what);
            let n = elems(&shape);
            let values = match group {
                Some(g) => r.q80(n, g, what)?,
                None => r.f32s(n, what)?,
            };
            t.push((llama::layer_tensor(l as u32, what), shape, values));
        }
        Ok(())
    };
    let matrices = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_down",
        "ffn_up",
    ];
    let embd_shape = vec![p.vocab_size, p.dim];
    let embd_n = checked(vocab, dim)?;
    match version {
        0 => {
            t.push((
                "token_embd.weight".into(),
                embd_shape.clone(),
                r.f32s(embd_n, "token_embd")?,
            ));
            // Legacy order: per kind, all layers — rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3,
            // which is the architecture table's per-layer order.
            for what in llama::LAYER_TENSORS {
                push_layers(r, &mut t, what, None)?;
            }
            t.push((
                "output_norm.weight".into(),
                vec![p.dim],
                r.f32s(dim, "rms_final")?,
            ));
            // freq_cis_real and freq_cis_imag: seq_len × head/2 floats each, unused.
            let n = checked(p.seq_len as usize, head / 2)?;
            r.take(checked(n, 8)?, "freq_cis")?;
            if !p.shared_classifier {
                t.push((
                    "output.weight".into(),
                    embd_shape,
                    r.f32s(embd_n, "classifier")?,
                ));
            }
        }
        1 => {
            push_layers(r, &mut t, "attn_norm", None)?;
            push_layers(r, &mut t, "ffn_norm", None)?;
            t.push((
                "output_norm.weight".into(),
                vec![p.dim],
                r.f32s(dim, "rms_final")?,
            ));
            t.push((
                "token_embd.weight".into(),
                embd_shape.clone(),
                r.f32s(embd_n, "token_embd")?,
            ));
            for what in matrices {
                push_layers(r, &mut t, what, None)?;
            }
            if !p.shared_classifier {
                t.push((
                    "output.weight".into(),
                    embd_shape,
                    r.f32s(embd_n, "classifier")?,
                ));
            }
        }
        _ => {
            let g = group_size.unwrap() as usize;
            for n in [
                dim,
                checked(dim, dim)?,
                checked(kv_dim, dim)?,
                checked(hidden, dim)?,
                embd_n,
            ] {
                ensure!(
                    n % g == 0,
                    "v2 group size {g} does not divide a tensor of {n} elements"
                );
            }
            push_layers(r, &mut t, "attn_norm", None)?;
            push_layers(r, &mut t, "ffn_norm", None)?;
            t.push((
                "output_norm.weight".into(),
                vec![p.dim],
                r.f32s(dim, "rms_final")?,
            ));
            t.push((
                "token_embd.weight".into(),
                embd_shape.clone(),
                r.q80(embd_n, g, "token_embd")?,
            ));
            for what in matrices {
                push_layers(r, &mut t, what, Some(g))?;
            }
            if !p.shared_classifier {
                t.push((
                    "output.weight".into(),
                    embd_shape,
                    r.q80(embd_n, g, "classifier")?,
                ));
            }
        }
    }
    ensure!(
        r.pos == r.bytes.len(),
        "checkpoint has {} bytes after the last tensor (wrong version or shape?)",
        r.bytes.len() - r.pos
    );
    Ok(Checkpoint {
        version,
        params,
        group_size,
        tensors: t,
    })
}

/// What the converter did with each tensor's dtype.
pub struct Converted {
    pub model: ModelFile,
    /// Tensors kept at f32 because their rows are not whole 32-element blocks.
    pub kept_f32: Vec<String>,
}

/// The runtime configuration of a checkpoint's hyperparameters, with run.c's constants.
fn config_of(p: &Params) -> Config {
    Config {
        arch: format::header::ARCH_LLAMA,
        vocab_size: p.vocab_size,
        dim: p.dim,
        n_layers: p.n_layers,
        n_heads: p.n_heads,
        n_kv_heads: p.n_kv_heads,
        head_dim: p.dim / p.n_heads,
        ffn_dim: p.hidden_dim,
        max_context: p.seq_len.min(limits::MAX_CONTEXT),
        rope_theta: 10000.0,
        rms_eps: 1e-5,
        tied_classifier: p.shared_classifier,
    }
}

/// The dtype a slot is stored as: f32 for a norm and for a matrix whose rows do not split into
/// `dtype`'s blocks, else `dtype`.
fn slot_dtype(slot: &llama::Slot, dtype: DType) -> DType {
    let cols = *slot.shape.last().unwrap_or(&1) as usize;
    if slot.role == llama::Role::Norm || !cols.is_multiple_of(dtype.block_elems()) {
        DType::F32
    } else {
        dtype
    }
}

/// Converts a checkpoint and its tokenizer.bin into a model file with matrices stored as
/// `dtype` (norms stay f32). Tensors whose rows are not whole blocks stay f32 when a block type
/// is asked for, and are listed in the provenance.
pub fn convert(
    model_bytes: &[u8],
    tokenizer_bytes: &[u8],
    dtype: DType,
    source: &str,
) -> Result<Converted> {
    // The output's size from the header alone: an oversized model is refused before any
    // weight is read (a v2 checkpoint would take four times its size in f32 first).
    let (version, params, group_size, header_len) = read_header(model_bytes)?;
    let config = config_of(&params);
    let mut total: u64 = 0;
    for slot in llama::slots(&config) {
        let elements = slot.shape.iter().map(|&d| u64::from(d)).product::<u64>();
        total = slot_dtype(&slot, dtype)
            .bytes_for(elements)
            .and_then(|b| total.checked_add(b))
            .context("tensor sizes overflow")?;
    }
    ensure!(
        total <= limits::MAX_MODEL_BYTES,
        "the tensors would take {total} bytes; a .slm model is at most {} bytes",
        limits::MAX_MODEL_BYTES
    );
    let mut r = Reader {
        bytes: model_bytes,
        pos: header_len,
    };
    let ck = read_tensors(&mut r, version, params, group_size)?;
    let vocab = read_tokenizer_bin(tokenizer_bytes, params.vocab_size).context("the tokenizer")?;
    let mut kept_f32 = Vec::new();
    let mut by_name: std::collections::HashMap<String, (Vec<u32>, Vec<f32>)> = ck
        .tensors
        .into_iter()
        .map(|(n, s, v)| (n, (s, v)))
        .collect();
    let mut tensors = Vec::new();
    for slot in llama::slots(&config) {
        let (shape, values) = by_name
            .remove(&slot.name)
            .with_context(|| format!("checkpoint lacks {}", slot.name))?;
        ensure!(
            shape == slot.shape,
            "{}: shape {:?} ≠ {:?}",
            slot.name,
            shape,
            slot.shape
        );
        let dt = slot_dtype(&slot, dtype);
        if dt != dtype && slot.role != llama::Role::Norm {
            kept_f32.push(slot.name.clone());
        }
        tensors.push(TensorData {
            bytes: encode_tensor(&values, dt)?,
            name: slot.name,
            dtype: dt,
            shape,
        });
    }
    let mut provenance = format!(
        "llama2.c checkpoint v{} (sha256 {}), tokenizer.bin (sha256 {}); matrices as {}",
        ck.version,
        to_hex(&sha256(model_bytes)),
        to_hex(&sha256(tokenizer_bytes)),
        dtype.name()
    );
    if let Some(g) = ck.group_size {
        provenance.push_str(&format!(", requantized from int8 groups of {g}"));
    }
    if !kept_f32.is_empty() {
        provenance.push_str(&format!(
            "; kept f32 (rows not whole 32-element blocks): {}",
            kept_f32.join(" ")
        ));
    }
    if params.seq_len > limits::MAX_CONTEXT {
        provenance.push_str(&format!("; context capped from {}", params.seq_len));
    }
    let metadata = vec![
        ("name".to_string(), source.to_string()),
        ("kind".to_string(), "converted".to_string()),
        ("source".to_string(), source.to_string()),
        (
            "converter".to_string(),
            format!("tinyrustlm convert llama2c {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "provenance".to_string(),
            converted::fit_metadata_value(provenance),
        ),
    ];
    Ok(Converted {
        model: ModelFile {
            config,
            metadata,
            vocab,
            tensors,
        },
        kept_f32,
    })
}
