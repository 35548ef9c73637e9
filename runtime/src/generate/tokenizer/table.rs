//! Open-addressing hash tables built once in [`super::Tokenizer::new`]: piece bytes → id, and
//! (left id, right id) → ranked merge. Linear probing, load factor ≤ 2/3, no deletion.
//!
//! The hashes are keyed by a digest of the vocabulary itself ([`Key::of`], or the digest of the
//! file section it was read from). With fixed hashes a file could list pieces or merge pairs
//! chosen to share a few slots, and building the tables would take time quadratic in their
//! number (seconds to minutes for a file within budget); keyed by a SHA-256 of the entries, the
//! slots cannot be known before the entries are chosen. The key changes only where entries sit,
//! never what a lookup finds (the first id of a piece, the lowest rank of a pair), so encoding
//! does not depend on it.

use alloc::vec::Vec;

use crate::error::{Error, ErrorCode, Result};
use crate::format::vocab::reserved;
use crate::format::Pieces;
use crate::sha256::Sha256;

/// Marks an empty slot (and "no id" elsewhere in the tokenizer).
pub(super) const NONE: u32 = u32::MAX;

/// The tables' hash key: two 64-bit words, one mixed in before and one after each hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Key([u64; 2]);

impl Key {
    /// The key of a vocabulary: the first 16 bytes of the SHA-256 of its piece lengths and bytes
    /// and its merge pairs (every entry a table holds).
    pub(super) fn of(pieces: &Pieces, merges: &[(u32, u32)]) -> Key {
        let mut h = Sha256::new();
        for piece in pieces.iter() {
            h.update(&(piece.len() as u32).to_le_bytes());
            h.update(piece);
        }
        for &(left, right) in merges {
            h.update(&left.to_le_bytes());
            h.update(&right.to_le_bytes());
        }
        Key::from_digest(&h.finalize())
    }

    /// The key of a SHA-256 digest of the entries or of the bytes they were read from: its first
    /// 16 bytes.
    pub(super) fn from_digest(d: &[u8; 32]) -> Key {
        let word = |i: usize| u64::from_le_bytes(core::array::from_fn(|j| d[8 * i + j]));
        Key([word(0), word(1)])
    }
}

/// FNV-1a over bytes from a keyed start, finished with a keyed multiplicative mix so that low
/// bits are usable.
fn hash_bytes(bytes: &[u8], key: Key) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ key.0[0];
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h ^ key.0[1])
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
    key: Key,
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
    pub(super) fn build(pieces: &Pieces, key: Key) -> Result<PieceTable> {
        let cap = capacity_for(pieces.len())?;
        let mut slots = reserved(cap)?;
        slots.resize(cap, (0, NONE));
        let mut table = PieceTable {
            slots,
            key,
            ascii: Vec::new(),
        };
        for id in 0..pieces.len() as u32 {
            let piece = pieces.get(id as usize).unwrap_or_default();
            if piece.is_empty() {
                continue;
            }
            let h = hash_bytes(piece, key);
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

    /// The key the table was built with.
    pub(super) fn key(&self) -> Key {
        self.key
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
        let h = hash_bytes(key, self.key);
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
    key: Key,
}

fn hash_pair(left: u32, right: u32, key: Key) -> u64 {
    let pair = u64::from(left) << 32 | u64::from(right);
    mix((pair ^ key.0[0]).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key.0[1])
}

impl MergeTable {
    /// Builds the table from `(left, right, result)` in rank order; a repeated pair keeps its
    /// lowest rank.
    pub(super) fn build(merges: &[(u32, u32, u32)], key: Key) -> Result<MergeTable> {
        let cap = capacity_for(merges.len())?;
        let mut slots = reserved(cap)?;
        slots.resize(cap, (0, 0, NONE, 0));
        let mut table = MergeTable { slots, key };
        for (rank, &(left, right, result)) in merges.iter().enumerate() {
            let mut slot = home(hash_pair(left, right, key), cap);
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
        let mut slot = home(hash_pair(left, right, self.key), self.slots.len());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries per test table.
    const N: usize = 3000;

    /// A key an adversary knows (fixed hashes).
    const KNOWN: Key = Key([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);

    /// Slots between an entry's home and where it sits, summed over the entries: the probe steps
    /// building the table took beyond one per entry.
    fn displacement(slots: usize, homes: impl Iterator<Item = (usize, usize)>) -> usize {
        homes.map(|(home, at)| (at + slots - home) % slots).sum()
    }

    fn merge_displacement(t: &MergeTable) -> usize {
        let n = t.slots.len();
        let homes = t.slots.iter().enumerate().filter(|(_, s)| s.2 != NONE);
        displacement(
            n,
            homes.map(|(at, s)| (home(hash_pair(s.0, s.1, t.key), n), at)),
        )
    }

    fn piece_displacement(t: &PieceTable, pieces: &Pieces) -> usize {
        let n = t.slots.len();
        let homes = t.slots.iter().enumerate().filter(|(_, s)| s.1 != NONE);
        let piece = |id: u32| pieces.get(id as usize).unwrap_or_default();
        displacement(
            n,
            homes.map(|(at, s)| (home(hash_bytes(piece(s.1), t.key), n), at)),
        )
    }

    #[test]
    fn merge_pairs_chosen_against_known_hashes_do_not_cluster_under_the_vocabulary_key() {
        let cap = capacity_for(N).unwrap();
        // Pairs whose home under the known key is one of the first 64 slots.
        let pairs: Vec<(u32, u32)> = (0u32..)
            .flat_map(|left| (0u32..256).map(move |right| (left, right)))
            .filter(|&(l, r)| home(hash_pair(l, r, KNOWN), cap) < 64)
            .take(N)
            .collect();
        let merges: Vec<(u32, u32, u32)> = pairs.iter().map(|&(l, r)| (l, r, l ^ r)).collect();
        let clustered = MergeTable::build(&merges, KNOWN).unwrap();
        let keyed = MergeTable::build(&merges, Key::of(&Pieces::default(), &pairs)).unwrap();
        // Quadratic under the known key, about one step an entry under the vocabulary's.
        assert!(merge_displacement(&clustered) > N * N / 4);
        assert!(
            merge_displacement(&keyed) < 2 * N,
            "{}",
            merge_displacement(&keyed)
        );
        // Both find every pair, with its rank.
        for t in [&clustered, &keyed] {
            for (rank, &(l, r, result)) in merges.iter().enumerate() {
                let m = t.get(l, r).unwrap();
                assert_eq!((m.rank, m.result), (rank as u32, result));
            }
            assert!(t.get(u32::MAX - 1, 7).is_none());
        }
    }

    #[test]
    fn pieces_chosen_against_known_hashes_do_not_cluster_under_the_vocabulary_key() {
        let cap = capacity_for(N).unwrap();
        // Four-byte pieces whose home under the known key is one of the first 64 slots.
        let chosen: Vec<[u8; 4]> = (0u32..)
            .map(|i| (i | 0x8000_0000).to_le_bytes())
            .filter(|p| home(hash_bytes(p, KNOWN), cap) < 64)
            .take(N)
            .collect();
        let pieces = Pieces::new(&chosen).unwrap();
        let clustered = PieceTable::build(&pieces, KNOWN).unwrap();
        let keyed = PieceTable::build(&pieces, Key::of(&pieces, &[])).unwrap();
        assert!(piece_displacement(&clustered, &pieces) > N * N / 4);
        let spread = piece_displacement(&keyed, &pieces);
        assert!(spread < 2 * N, "{spread}");
        for t in [&clustered, &keyed] {
            for (id, p) in chosen.iter().enumerate() {
                assert_eq!(t.get(&pieces, p), Some(id as u32));
            }
            assert_eq!(t.get(&pieces, b"none"), None);
        }
    }
}
