//! The adapter writer: the bytes spec/adapters.md defines for a list of records, with `file_bytes`
//! and the file digest filled in. It encodes what it is given (records in the given order, values
//! as they are), so tests can also build adapters the reader must refuse; a canonical adapter
//! lists its records in ascending name order.

use super::binding::BaseBinding;
use super::format::{file_digest, AdapterKind, DIGEST_OFFSET, VERSION_MAJOR, VERSION_MINOR};
use crate::error::{Error, ErrorCode, Result};
use crate::limits;
use alloc::{string::String, vec::Vec};

/// The delta of one record, in the form of its kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Delta {
    /// One value per element, row-major.
    Dense(Vec<f32>),
    /// Element indices and their deltas (same length).
    Sparse { indices: Vec<u32>, deltas: Vec<f32> },
    /// `a` is [rank, cols], `b` is [rows, rank], row-major.
    LowRank {
        rank: u32,
        scale: f32,
        a: Vec<f32>,
        b: Vec<f32>,
    },
}

impl Delta {
    /// The adapter kind that carries this delta.
    pub fn kind(&self) -> AdapterKind {
        match self {
            Delta::Dense(_) => AdapterKind::Dense,
            Delta::Sparse { .. } => AdapterKind::Sparse,
            Delta::LowRank { .. } => AdapterKind::LowRank,
        }
    }
}

/// One record to write: the base tensor's name and shape, and its delta.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordData {
    pub name: String,
    pub shape: Vec<u32>,
    pub delta: Delta,
}

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// Encodes an adapter of `kind` bound to `binding`. Errors: a record whose delta is of another
/// kind, or a name or shape that does not fit its length field (`InvalidArgument`).
pub fn write(kind: AdapterKind, binding: &BaseBinding, records: &[RecordData]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(&kind.magic());
    out.extend_from_slice(&VERSION_MAJOR.to_le_bytes());
    out.extend_from_slice(&VERSION_MINOR.to_le_bytes());
    out.extend_from_slice(&(limits::ADAPTER_HEADER_BYTES as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // file_bytes, filled in below
    out.extend_from_slice(&binding.layout);
    out.extend_from_slice(&binding.tokenizer);
    let count = u32::try_from(records.len())
        .map_err(|_| Error::new(ErrorCode::InvalidArgument, "too many records"))?;
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 32]); // file digest, filled in below
    for r in records {
        if r.delta.kind() != kind {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                alloc::format!("record {:?} is not a {} delta", r.name, kind.name()),
            ));
        }
        let name_len = u16::try_from(r.name.len())
            .map_err(|_| Error::new(ErrorCode::InvalidArgument, "tensor name too long"))?;
        let rank = u8::try_from(r.shape.len())
            .map_err(|_| Error::new(ErrorCode::InvalidArgument, "tensor rank too large"))?;
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(r.name.as_bytes());
        out.extend_from_slice(&[rank, 0]);
        for d in &r.shape {
            out.extend_from_slice(&d.to_le_bytes());
        }
        match &r.delta {
            Delta::Dense(d) => put_f32s(&mut out, d),
            Delta::Sparse { indices, deltas } => {
                out.extend_from_slice(&(indices.len() as u32).to_le_bytes());
                for i in indices {
                    out.extend_from_slice(&i.to_le_bytes());
                }
                put_f32s(&mut out, deltas);
            }
            Delta::LowRank { rank, scale, a, b } => {
                out.extend_from_slice(&rank.to_le_bytes());
                out.extend_from_slice(&scale.to_le_bytes());
                put_f32s(&mut out, a);
                put_f32s(&mut out, b);
            }
        }
    }
    let len = out.len() as u64;
    out[16..24].copy_from_slice(&len.to_le_bytes());
    seal(&mut out);
    Ok(out)
}

/// Recomputes the file digest field of adapter bytes (at least a whole header) in place.
pub fn seal(bytes: &mut [u8]) {
    if bytes.len() >= limits::ADAPTER_HEADER_BYTES {
        let d = file_digest(bytes);
        bytes[DIGEST_OFFSET..DIGEST_OFFSET + 32].copy_from_slice(&d);
    }
}
