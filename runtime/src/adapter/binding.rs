//! The two digests that bind an adapter to its base (spec/adapters.md, Base binding): the layout
//! digest over the tensor directory's names, dtypes and shapes, and the tokenizer digest over the
//! tokenizer section's bytes.

use crate::format::{Slm, TensorEntry};
use crate::sha256::{sha256, Sha256};

/// What an adapter must match in its base model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BaseBinding {
    /// SHA-256 of the canonical layout encoding ([`layout_digest`]).
    pub layout: [u8; 32],
    /// SHA-256 of the tokenizer section bytes.
    pub tokenizer: [u8; 32],
}

/// SHA-256 of `u32 count`, then per tensor in directory order `u16 name_len, name, u8 dtype,
/// u8 rank, rank × u32 dims` (little-endian): the directory entries without offset, length and
/// payload digest.
pub fn layout_digest(entries: &[TensorEntry<'_>]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        h.update(&(e.name.len() as u16).to_le_bytes());
        h.update(e.name.as_bytes());
        h.update(&[e.dtype.code(), e.rank]);
        for d in e.shape() {
            h.update(&d.to_le_bytes());
        }
    }
    h.finalize()
}

/// The binding of a verified file.
pub fn of_slm(slm: &Slm<'_>) -> BaseBinding {
    let t = slm.header.sections.tokenizer;
    BaseBinding {
        layout: layout_digest(&slm.tensors),
        tokenizer: sha256(&slm.bytes[t.offset as usize..(t.offset + t.length) as usize]),
    }
}
