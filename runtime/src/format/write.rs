//! The canonical writer: a pure function from a model description to `.slm` bytes. Metadata keys
//! are sorted, tensors keep the caller's order, every gap is zero padding, digests are computed.
//! Whatever it writes passes [`super::Slm::parse`] (it checks).

use super::cursor::align_up;
use super::digest::{file_digest, tensor_digest, DigestRule};
use super::header::{encode_header, Config, Sections, DIGEST_OFFSET};
use super::read::Slm;
use super::{metadata, vocab_section, DType, Vocab};
use crate::error::{Error, ErrorCode, Result};
use crate::limits;
use alloc::{format, string::String, vec::Vec};

/// One tensor to write: name, dtype, shape (outermost first) and its storage bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u32>,
    pub bytes: Vec<u8>,
}

/// Everything a `.slm` file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFile {
    pub config: Config,
    pub metadata: Vec<(String, String)>,
    pub vocab: Vocab,
    pub tensors: Vec<TensorData>,
}

impl ModelFile {
    /// Everything a verified file holds — config, metadata, tokenizer, tensors with their bytes —
    /// as a description [`write()`] takes: rewriting a file of an earlier minor version gives the
    /// canonical file of the current one (format 2.0 → 2.1: the same sections and payloads,
    /// new digests).
    pub fn from_slm(slm: &Slm<'_>) -> ModelFile {
        ModelFile {
            config: slm.header.config,
            metadata: slm
                .metadata
                .iter()
                .map(|&(k, v)| (String::from(k), String::from(v)))
                .collect(),
            vocab: slm.vocab.clone(),
            tensors: slm
                .tensors
                .iter()
                .map(|t| TensorData {
                    name: String::from(t.name),
                    dtype: t.dtype,
                    shape: t.shape().to_vec(),
                    bytes: slm.payload(t).to_vec(),
                })
                .collect(),
        }
    }
}

/// Writes `model` canonically.
pub fn write(model: &ModelFile) -> Result<Vec<u8>> {
    model.config.validate()?;
    let meta = metadata::encode(&model.metadata)?;
    let tok = vocab_section::encode(&model.vocab)?;

    // Directory entries need payload offsets, which need the directory's length: compute it first
    // (entries have a fixed size given the name and rank).
    let mut dir_len: u64 = 4;
    for t in &model.tensors {
        dir_len += 2 + t.name.len() as u64 + 2 + 4 * t.shape.len() as u64 + 8 + 8 + 32;
    }
    let mut data_len: u64 = 0;
    let mut payload_offsets = Vec::with_capacity(model.tensors.len());
    for (i, t) in model.tensors.iter().enumerate() {
        let elements = t
            .shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        let want = elements.and_then(|e| t.dtype.bytes_for(e));
        if want != Some(t.bytes.len() as u64) {
            return Err(Error::new(
                ErrorCode::ShapeMismatch,
                format!(
                    "tensor {:?}: {} bytes do not hold shape {:?} of {}",
                    t.name,
                    t.bytes.len(),
                    t.shape,
                    t.dtype.name()
                ),
            ));
        }
        if i > 0 {
            data_len = align_up(data_len).ok_or_else(too_big)?;
        }
        payload_offsets.push(data_len);
        data_len = data_len
            .checked_add(t.bytes.len() as u64)
            .ok_or_else(too_big)?;
    }
    let (sections, file_len) =
        Sections::canonical([meta.len() as u64, tok.len() as u64, dir_len, data_len])
            .ok_or_else(too_big)?;
    if file_len > limits::MAX_MODEL_BYTES {
        return Err(Error::new(
            ErrorCode::BudgetExceeded,
            format!(
                "the model would take {file_len} bytes; the budget is {}",
                limits::MAX_MODEL_BYTES
            ),
        ));
    }

    let mut out = vec_zeroed(file_len as usize);
    let put = |out: &mut Vec<u8>, at: u64, b: &[u8]| {
        out[at as usize..at as usize + b.len()].copy_from_slice(b)
    };
    put(&mut out, sections.metadata.offset, &meta);
    put(&mut out, sections.tokenizer.offset, &tok);

    let mut dir = Vec::with_capacity(dir_len as usize);
    dir.extend_from_slice(&(model.tensors.len() as u32).to_le_bytes());
    for (t, rel) in model.tensors.iter().zip(&payload_offsets) {
        let offset = sections.data.offset + rel;
        if t.name.len() > u16::MAX as usize || t.shape.len() > u8::MAX as usize {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                "tensor name or rank too large",
            ));
        }
        dir.extend_from_slice(&(t.name.len() as u16).to_le_bytes());
        dir.extend_from_slice(t.name.as_bytes());
        dir.push(t.dtype.code());
        dir.push(t.shape.len() as u8);
        for d in &t.shape {
            dir.extend_from_slice(&d.to_le_bytes());
        }
        dir.extend_from_slice(&offset.to_le_bytes());
        dir.extend_from_slice(&(t.bytes.len() as u64).to_le_bytes());
        dir.extend_from_slice(&tensor_digest(DigestRule::Chunked, &t.bytes));
        put(&mut out, offset, &t.bytes);
    }
    debug_assert_eq!(dir.len() as u64, dir_len);
    put(&mut out, sections.directory.offset, &dir);

    let header = encode_header(&model.config, &sections, file_len, &[0; 32]);
    put(&mut out, 0, &header);
    let digest = file_digest(&out);
    put(&mut out, DIGEST_OFFSET as u64, &digest);

    Slm::parse(&out)?;
    Ok(out)
}

fn too_big() -> Error {
    Error::new(ErrorCode::BudgetExceeded, "the model's size overflows")
}

fn vec_zeroed(n: usize) -> Vec<u8> {
    alloc::vec![0u8; n]
}
