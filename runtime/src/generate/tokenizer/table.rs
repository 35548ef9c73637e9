//! Open-addressing hash tables built once in [`super::Tokenizer::new`]: piece bytes → id, and
//! (left id, right id) → ranked merge. Linear probing, load factor ≤ 1/2, no deletion.

use alloc::vec;
use alloc::vec::Vec;

use crate::error::{Error, ErrorCode, Result};

/// Marks an empty slot (and "no id" elsewhere in the tokenizer).
pub(super) const NONE: u32 = u32::MAX;

/// All pieces back to back: piece `id` is `bytes[offsets[id]..offsets[id + 1]]`.
pub(super) struct Pieces {
    bytes: Vec<u8>,
    offsets: Vec<u32>,
}

impl Pieces {
    /// Concatenates `pieces`; fails if their total length does not fit a u32.
    pub(super) fn new(pieces: &[Vec<u8>]) -> Result<Pieces> {
        let mut total: u32 = 0;
        let mut offsets = Vec::with_capacity(pieces.len() + 1);
        offsets.push(0);
        for piece in pieces {
            total = u32::try_from(piece.len())
                .ok()
                .and_then(|len| total.checked_add(len))
                .ok_or_else(|| {
                    Error::new(ErrorCode::InvalidTokenizer, "pieces exceed 4 GiB in total")
                })?;
            offsets.push(total);
        }
        let mut bytes = Vec::with_capacity(total as usize);
        for piece in pieces {
            bytes.extend_from_slice(piece);
        }
        Ok(Pieces { bytes, offsets })
    }

    /// Number of pieces.
    pub(super) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The bytes of piece `id`, if it exists.
    pub(super) fn get(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let start = *self.offsets.get(i)? as usize;
        let end = *self.offsets.get(i + 1)? as usize;
        self.bytes.get(start..end)
    }
}

/// FNV-1a over bytes, finished with a multiplicative mix so that low bits are usable.
fn hash_bytes(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// Slot count for `n` entries: a power of two ≥ 2n (at least 16).
fn capacity_for(n: usize) -> Result<usize> {
    n.checked_mul(2)
        .and_then(|c| c.max(16).checked_next_power_of_two())
        .ok_or_else(|| Error::new(ErrorCode::InvalidTokenizer, "table too large"))
}

/// Piece bytes → the lowest id holding them. Empty pieces are not indexed. Each slot keeps the
/// high half of the key's hash beside the id, so most mismatches cost no byte comparison. Keys of
/// one or two ASCII bytes — most lookups when encoding prose — are answered from a dense array.
pub(super) struct PieceTable {
    /// (hash tag, id); `id == NONE` marks an empty slot.
    slots: Vec<(u32, u32)>,
    mask: usize,
    /// Id (or `NONE`) of every ASCII key `[a]` at `a`, and `[a, b]` at `128 + 128 a + b`.
    ascii: Vec<u32>,
}

/// Index of a one- or two-byte ASCII key in [`PieceTable::ascii`].
fn ascii_index(key: &[u8]) -> Option<usize> {
    match *key {
        [a] if a < 128 => Some(usize::from(a)),
        [a, b] if a < 128 && b < 128 => Some(128 + 128 * usize::from(a) + usize::from(b)),
        _ => None,
    }
}

impl PieceTable {
    /// Indexes every non-empty piece; when several ids share a piece, the first id wins.
    pub(super) fn build(pieces: &Pieces) -> Result<PieceTable> {
        let cap = capacity_for(pieces.len())?;
        let mut table = PieceTable {
            slots: vec![(0, NONE); cap],
            mask: cap - 1,
            ascii: Vec::new(),
        };
        for id in 0..pieces.len() as u32 {
            let piece = pieces.get(id).unwrap_or_default();
            if piece.is_empty() {
                continue;
            }
            let h = hash_bytes(piece);
            let tag = (h >> 32) as u32;
            let mut slot = h as usize & table.mask;
            loop {
                let (held_tag, held) = table.slots[slot];
                if held == NONE {
                    table.slots[slot] = (tag, id);
                    break;
                }
                if held_tag == tag && pieces.get(held) == Some(piece) {
                    break; // duplicate: keep the first id
                }
                slot = (slot + 1) & table.mask;
            }
        }
        let ascii: Vec<u32> = (0..128u8)
            .map(|a| table.hashed(pieces, &[a]))
            .chain(
                (0..128u8)
                    .flat_map(|a| (0..128u8).map(move |b| [a, b]))
                    .map(|key| table.hashed(pieces, &key)),
            )
            .map(|id| id.unwrap_or(NONE))
            .collect();
        table.ascii = ascii;
        Ok(table)
    }

    /// The id whose piece is exactly `key`.
    pub(super) fn get(&self, pieces: &Pieces, key: &[u8]) -> Option<u32> {
        match ascii_index(key) {
            Some(i) => Some(self.ascii[i]).filter(|&id| id != NONE),
            None => self.hashed(pieces, key),
        }
    }

    /// [`Self::get`] through the hash slots only.
    fn hashed(&self, pieces: &Pieces, key: &[u8]) -> Option<u32> {
        let h = hash_bytes(key);
        let tag = (h >> 32) as u32;
        let mut slot = h as usize & self.mask;
        loop {
            let (held_tag, held) = self.slots[slot];
            if held == NONE {
                return None;
            }
            if held_tag == tag && pieces.get(held) == Some(key) {
                return Some(held);
            }
            slot = (slot + 1) & self.mask;
        }
    }
}

/// A ranked merge as found by [`MergeTable::get`].
#[derive(Clone, Copy)]
pub(super) struct Merge {
    pub(super) rank: u32,
    pub(super) result: u32,
}

/// (left id, right id) → the lowest-ranked merge of that pair.
pub(super) struct MergeTable {
    /// (left, right, rank, result); `rank == NONE` marks an empty slot.
    slots: Vec<(u32, u32, u32, u32)>,
    mask: usize,
}

fn hash_pair(left: u32, right: u32) -> u64 {
    mix((u64::from(left) << 32 | u64::from(right)).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

impl MergeTable {
    /// Builds the table from `(left, right, result)` in rank order; a repeated pair keeps its
    /// lowest rank.
    pub(super) fn build(merges: &[(u32, u32, u32)]) -> Result<MergeTable> {
        let cap = capacity_for(merges.len())?;
        let mut table = MergeTable {
            slots: vec![(0, 0, NONE, 0); cap],
            mask: cap - 1,
        };
        for (rank, &(left, right, result)) in merges.iter().enumerate() {
            let mut slot = hash_pair(left, right) as usize & table.mask;
            loop {
                let held = table.slots[slot];
                if held.2 == NONE {
                    table.slots[slot] = (left, right, rank as u32, result);
                    break;
                }
                if held.0 == left && held.1 == right {
                    break;
                }
                slot = (slot + 1) & table.mask;
            }
        }
        Ok(table)
    }

    /// The merge joining `left` and `right`, if there is one.
    pub(super) fn get(&self, left: u32, right: u32) -> Option<Merge> {
        let mut slot = hash_pair(left, right) as usize & self.mask;
        loop {
            let (l, r, rank, result) = self.slots[slot];
            if rank == NONE {
                return None;
            }
            if l == left && r == right {
                return Some(Merge { rank, result });
            }
            slot = (slot + 1) & self.mask;
        }
    }
}
