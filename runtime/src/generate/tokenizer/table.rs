//! Open-addressing hash tables built once in [`super::Tokenizer::new`]: piece bytes → id, and
//! (left id, right id) → ranked merge. Linear probing, load factor ≤ 2/3, no deletion.

use alloc::vec::Vec;

use crate::error::{Error, ErrorCode, Result};
use crate::format::vocab::reserved;
use crate::format::Pieces;

/// Marks an empty slot (and "no id" elsewhere in the tokenizer).
pub(super) const NONE: u32 = u32::MAX;

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

/// Slot count for `n` entries: n + n/2 (at least 16), so at most two thirds are used.
fn capacity_for(n: usize) -> Result<usize> {
    n.checked_add(n / 2)
        .map(|c| c.max(16))
        .filter(|&c| u32::try_from(c).is_ok())
        .ok_or_else(|| Error::new(ErrorCode::InvalidTokenizer, "table too large"))
}

/// The first slot for hash `h` among `slots`: its low 32 bits scaled to `0..slots`.
fn home(h: u64, slots: usize) -> usize {
    (((h & 0xffff_ffff) * slots as u64) >> 32) as usize
}

/// The slot after `slot`, wrapping to the first.
fn after(slot: usize, slots: usize) -> usize {
    if slot + 1 == slots {
        0
    } else {
        slot + 1
    }
}

/// Piece bytes → the lowest id holding them. Empty pieces are not indexed. Each slot keeps the
/// high half of the key's hash beside the id, so most mismatches cost no byte comparison. Keys of
/// one or two ASCII bytes — most lookups when encoding prose — are answered from a dense array.
pub(super) struct PieceTable {
    /// (hash tag, id); `id == NONE` marks an empty slot.
    slots: Vec<(u32, u32)>,
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
        let mut slots = reserved(cap)?;
        slots.resize(cap, (0, NONE));
        let mut table = PieceTable {
            slots,
            ascii: Vec::new(),
        };
        for id in 0..pieces.len() as u32 {
            let piece = pieces.get(id as usize).unwrap_or_default();
            if piece.is_empty() {
                continue;
            }
            let h = hash_bytes(piece);
            let tag = (h >> 32) as u32;
            let mut slot = home(h, cap);
            loop {
                let (held_tag, held) = table.slots[slot];
                if held == NONE {
                    table.slots[slot] = (tag, id);
                    break;
                }
                if held_tag == tag && pieces.get(held as usize) == Some(piece) {
                    break; // duplicate: keep the first id
                }
                slot = after(slot, cap);
            }
        }
        // Sized exactly: 128 one-byte keys, then 128 × 128 two-byte keys.
        let mut ascii = reserved(128 + 128 * 128)?;
        ascii.extend(
            (0..128u8)
                .map(|a| table.hashed(pieces, &[a]))
                .chain(
                    (0..128u8)
                        .flat_map(|a| (0..128u8).map(move |b| [a, b]))
                        .map(|key| table.hashed(pieces, &key)),
                )
                .map(|id| id.unwrap_or(NONE)),
        );
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
        let mut slot = home(h, self.slots.len());
        loop {
            let (held_tag, held) = self.slots[slot];
            if held == NONE {
                return None;
            }
            if held_tag == tag && pieces.get(held as usize) == Some(key) {
                return Some(held);
            }
            slot = after(slot, self.slots.len());
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
}

fn hash_pair(left: u32, right: u32) -> u64 {
    mix((u64::from(left) << 32 | u64::from(right)).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

impl MergeTable {
    /// Builds the table from `(left, right, result)` in rank order; a repeated pair keeps its
    /// lowest rank.
    pub(super) fn build(merges: &[(u32, u32, u32)]) -> Result<MergeTable> {
        let cap = capacity_for(merges.len())?;
        let mut slots = reserved(cap)?;
        slots.resize(cap, (0, 0, NONE, 0));
        let mut table = MergeTable { slots };
        for (rank, &(left, right, result)) in merges.iter().enumerate() {
            let mut slot = home(hash_pair(left, right), cap);
            loop {
                let held = table.slots[slot];
                if held.2 == NONE {
                    table.slots[slot] = (left, right, rank as u32, result);
                    break;
                }
                if held.0 == left && held.1 == right {
                    break;
                }
                slot = after(slot, cap);
            }
        }
        Ok(table)
    }

    /// The merge joining `left` and `right`, if there is one.
    pub(super) fn get(&self, left: u32, right: u32) -> Option<Merge> {
        let mut slot = home(hash_pair(left, right), self.slots.len());
        loop {
            let (l, r, rank, result) = self.slots[slot];
            if rank == NONE {
                return None;
            }
            if l == left && r == right {
                return Some(Merge { rank, result });
            }
            slot = after(slot, self.slots.len());
        }
    }
}
