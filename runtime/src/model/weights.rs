//! A loaded model: the verified file bytes (owned, never copied into f32 shadows), where each
//! weight lies in them, and the tokenizer built from the file.

use crate::error::{Error, ErrorCode, Result};
use crate::format::{llama, Config, DType, Slm, TensorEntry};
use crate::generate::tokenizer::Tokenizer;
use crate::model::kernels::MatRef;
use alloc::{string::String, vec::Vec};

/// Where one tensor's payload lies in the file, and its matrix shape (a vector is `[1, n]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorLoc {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub offset: usize,
    pub len: usize,
}

impl TensorLoc {
    fn from_entry(e: &TensorEntry<'_>) -> TensorLoc {
        let shape = e.shape();
        let (rows, cols) = match shape {
            [n] => (1, *n as usize),
            [r, c] => (*r as usize, *c as usize),
            // The llama table has only rank 1 and 2 tensors (checked by the reader).
            _ => (1, e.elements() as usize),
        };
        TensorLoc {
            dtype: e.dtype,
            rows,
            cols,
            offset: e.offset as usize,
            len: e.length as usize,
        }
    }
}

/// The tensors of one decoder layer.
#[derive(Clone, Copy, Debug)]
pub struct LayerLocs {
    pub attn_norm: TensorLoc,
    pub wq: TensorLoc,
    pub wk: TensorLoc,
    pub wv: TensorLoc,
    pub wo: TensorLoc,
    pub ffn_norm: TensorLoc,
    /// SwiGLU gate (llama2.c w1).
    pub w1: TensorLoc,
    /// Down projection (llama2.c w2).
    pub w2: TensorLoc,
    /// Up projection (llama2.c w3).
    pub w3: TensorLoc,
}

/// A verified model ready to run.
pub struct Model {
    bytes: Vec<u8>,
    pub config: Config,
    /// The whole-file SHA-256 (spec/slm.md, File digest): the model's identity.
    pub digest: [u8; 32],
    pub tokenizer: Tokenizer,
    pub name: String,
    pub embedding: TensorLoc,
    pub layers: Vec<LayerLocs>,
    pub final_norm: TensorLoc,
    /// The classifier: `output.weight`, or the embedding when tied.
    pub classifier: TensorLoc,
}

impl Model {
    /// Verifies `bytes` completely (spec/slm.md, every rule; then the tokenizer) and takes them.
    pub fn load(bytes: Vec<u8>) -> Result<Model> {
        Model::load_with_digest(bytes, None)
    }

    /// As [`Model::load`], with the file digest a streaming loader already computed.
    pub fn load_with_digest(bytes: Vec<u8>, streamed: Option<[u8; 32]>) -> Result<Model> {
        let slm = Slm::parse_with_digest(&bytes, streamed)?;
        let tokenizer = Tokenizer::new(&slm.vocab)?;
        let find = |name: &str| -> Result<TensorLoc> {
            slm.tensor(name).map(TensorLoc::from_entry).ok_or_else(|| {
                Error::new(
                    ErrorCode::MissingTensor,
                    alloc::format!("tensor {name:?} is missing"),
                )
            })
        };
        let config = slm.header.config;
        let mut layers = Vec::with_capacity(config.n_layers as usize);
        for l in 0..config.n_layers {
            let t = |what: &str| find(&llama::layer_tensor(l, what));
            layers.push(LayerLocs {
                attn_norm: t("attn_norm")?,
                wq: t("attn_q")?,
                wk: t("attn_k")?,
                wv: t("attn_v")?,
                wo: t("attn_output")?,
                ffn_norm: t("ffn_norm")?,
                w1: t("ffn_gate")?,
                w2: t("ffn_down")?,
                w3: t("ffn_up")?,
            });
        }
        let embedding = find("token_embd.weight")?;
        let final_norm = find("output_norm.weight")?;
        let classifier = if config.tied_classifier {
            embedding
        } else {
            find("output.weight")?
        };
        let name = String::from(slm.metadata("name").unwrap_or(""));
        let digest = slm.digest();
        drop(slm);
        Ok(Model {
            bytes,
            config,
            digest,
            tokenizer,
            name,
            embedding,
            layers,
            final_norm,
            classifier,
        })
    }

    /// The file bytes the model was loaded from.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A weight as a matrix view over the file bytes.
    pub fn mat(&self, t: &TensorLoc) -> MatRef<'_> {
        MatRef {
            dtype: t.dtype,
            rows: t.rows,
            cols: t.cols,
            bytes: &self.bytes[t.offset..t.offset + t.len],
        }
    }

    /// The payload bytes of a tensor.
    pub fn payload(&self, t: &TensorLoc) -> &[u8] {
        &self.bytes[t.offset..t.offset + t.len]
    }

    /// The dtype of the layer matrices (the first layer's query projection), for diagnostics.
    pub fn weight_dtype(&self) -> DType {
        self.layers
            .first()
            .map(|l| l.wq.dtype)
            .unwrap_or(self.embedding.dtype)
    }
}
