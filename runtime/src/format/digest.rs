//! The two digests of a `.slm` file (spec/slm.md, Digests), by format version:
//!
//! - format 2.1: a tensor digest is the SHA-256 of the SHA-256s of its payload's 64 KiB chunks,
//!   and the file digest covers every byte before the data section but the digest field. Each
//!   byte is hashed once, and chunks are independent: [`tensor_digests`] hashes chunks of one
//!   length together in SIMD lanes ([`sha256_batch`]).
//! - format 2.0: a tensor digest is the SHA-256 of its payload, and the file digest covers every
//!   byte but the digest field (payload bytes are hashed twice).

use super::header::DIGEST_OFFSET;
use crate::limits::{DIGEST_CHUNK_BYTES, HEADER_BYTES};
use crate::sha256::{sha256, sha256_batch, Sha256, DIGEST_BYTES};
use alloc::vec::Vec;
use core::mem::size_of;

/// Memory [`tensor_digests`] (and `directory::verify_digests`, which calls it) allocates per
/// 64 KiB chunk and per payload, for the model-build bound of runtime/src/abi/headroom.rs: per
/// chunk its slice twice (in order, sorted), its index and its digest twice (sorted, in order);
/// per payload its slice, its first chunk's index and its digest.
pub const SCRATCH_BYTES_PER_CHUNK: usize =
    2 * size_of::<&[u8]>() + size_of::<usize>() + 2 * DIGEST_BYTES;
/// See [`SCRATCH_BYTES_PER_CHUNK`].
pub const SCRATCH_BYTES_PER_PAYLOAD: usize = size_of::<&[u8]>() + size_of::<usize>() + DIGEST_BYTES;

/// Which digest definitions a file uses: fixed by its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestRule {
    /// Format 2.0: whole payloads, whole file.
    Whole,
    /// Format 2.1 and later minors: chunked payloads, the file up to its data section.
    Chunked,
}

impl DigestRule {
    /// The rule of a format-2 file with this minor version.
    pub fn for_minor(version_minor: u16) -> DigestRule {
        if version_minor == 0 {
            DigestRule::Whole
        } else {
            DigestRule::Chunked
        }
    }
}

/// The file digest of `bytes` as its own header defines it (version_minor at offset 10, the data
/// section's offset at 128): format 2.0 hashes `[0, 224)` and `[256, end)`, format 2.1 `[0, 224)`
/// and `[256, data offset)`. Total on any input: a short file or an out-of-range data offset is
/// hashed up to where it ends (such a file is rejected before its digest is compared).
pub fn file_digest(bytes: &[u8]) -> [u8; DIGEST_BYTES] {
    let field = |at: usize, n: usize| bytes.get(at..at + n);
    let minor = field(10, 2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    let end = match DigestRule::for_minor(minor) {
        DigestRule::Whole => bytes.len(),
        DigestRule::Chunked => field(128, 8)
            .map(|b| {
                let mut o = [0u8; 8];
                o.copy_from_slice(b);
                u64::from_le_bytes(o)
            })
            .map_or(bytes.len(), |data| {
                usize::try_from(data).map_or(bytes.len(), |d| d.min(bytes.len()))
            }),
    };
    let mut h = Sha256::new();
    h.update(&bytes[..DIGEST_OFFSET.min(bytes.len())]);
    if end > HEADER_BYTES {
        h.update(&bytes[HEADER_BYTES..end]);
    }
    h.finalize()
}

/// The digest of one payload under `rule`.
pub fn tensor_digest(rule: DigestRule, payload: &[u8]) -> [u8; DIGEST_BYTES] {
    tensor_digests(rule, &[payload]).pop().unwrap_or_default()
}

/// The digests of `payloads` under `rule`, in order. Chunked: every chunk of every payload is
/// hashed on its own — chunks of one length together, in SIMD lanes — then each payload's chunk
/// digests are hashed in order.
pub fn tensor_digests(rule: DigestRule, payloads: &[&[u8]]) -> Vec<[u8; DIGEST_BYTES]> {
    tensor_digests_known(rule, payloads, |_, _, _| None)
}

/// [`tensor_digests`], taking the digest of chunk `(payload i, start, length)` from
/// `known(i, start, length)` where it gives one (which must then be that chunk's SHA-256).
pub(crate) fn tensor_digests_known(
    rule: DigestRule,
    payloads: &[&[u8]],
    known: impl Fn(usize, usize, usize) -> Option<[u8; DIGEST_BYTES]>,
) -> Vec<[u8; DIGEST_BYTES]> {
    if rule == DigestRule::Whole {
        return payloads.iter().map(|p| sha256(p)).collect();
    }
    // Every chunk, payload by payload; `first[i]` is payload i's first chunk.
    let count = payloads
        .iter()
        .map(|p| p.len().div_ceil(DIGEST_CHUNK_BYTES))
        .sum();
    let mut chunks: Vec<&[u8]> = Vec::with_capacity(count);
    let mut first = Vec::with_capacity(payloads.len() + 1);
    for p in payloads {
        first.push(chunks.len());
        chunks.extend(p.chunks(DIGEST_CHUNK_BYTES));
    }
    first.push(chunks.len());

    // The chunks' digests: the known ones, and the others hashed.
    let mut digests = alloc::vec![[0u8; DIGEST_BYTES]; chunks.len()];
    let mut order: Vec<usize> = Vec::with_capacity(chunks.len());
    for (p, w) in first.windows(2).enumerate() {
        for (k, i) in (w[0]..w[1]).enumerate() {
            match known(p, k * DIGEST_CHUNK_BYTES, chunks[i].len()) {
                Some(d) => digests[i] = d,
                None => order.push(i),
            }
        }
    }
    // The chunks to hash sorted by length (full chunks are all DIGEST_CHUNK_BYTES; the last
    // chunks of same-shaped tensors match too), each run of one length hashed as a batch in SIMD
    // lanes.
    order.sort_by_key(|&i| chunks[i].len());
    let sorted: Vec<&[u8]> = order.iter().map(|&i| chunks[i]).collect();
    let mut sorted_digests = alloc::vec![[0u8; DIGEST_BYTES]; sorted.len()];
    let mut run = 0;
    while run < sorted.len() {
        let len = sorted[run].len();
        let run_end = run + sorted[run..].partition_point(|c| c.len() == len);
        sha256_batch(&sorted[run..run_end], &mut sorted_digests[run..run_end]);
        run = run_end;
    }
    for (&i, d) in order.iter().zip(sorted_digests) {
        digests[i] = d;
    }

    first
        .windows(2)
        .map(|w| {
            let mut h = Sha256::new();
            for d in &digests[w[0]..w[1]] {
                h.update(d);
            }
            h.finalize()
        })
        .collect()
}

/// Digests of parts of a file computed while the file was still arriving: the chunked loader
/// (runtime/src/abi/loader.rs) hashes payload chunks, and the file digest's range, as soon as
/// they are complete, so that little is left to hash when the last byte arrives. Only the crate
/// builds one, from the very bytes it then verifies: those never change once received, so a
/// digest found here is the digest of the bytes it stands for (`Slm::parse_known` uses it
/// instead of hashing them again).
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "abi"), allow(dead_code))] // only the ABI's loader fills one
pub(crate) struct KnownDigests {
    /// (file offset, length, SHA-256) of chunks, offsets ascending.
    chunks: Vec<(usize, usize, [u8; DIGEST_BYTES])>,
    /// The file digest, when computed.
    file: Option<[u8; DIGEST_BYTES]>,
}

#[cfg_attr(not(feature = "abi"), allow(dead_code))]
impl KnownDigests {
    /// The SHA-256 of `bytes[offset..offset + len]`, when it is known.
    pub(crate) fn chunk(&self, offset: usize, len: usize) -> Option<[u8; DIGEST_BYTES]> {
        let i = self.chunks.binary_search_by_key(&offset, |c| c.0).ok()?;
        let (_, l, d) = self.chunks[i];
        (l == len).then_some(d)
    }

    /// The file digest ([`file_digest`]), when it is known.
    pub(crate) fn file(&self) -> Option<[u8; DIGEST_BYTES]> {
        self.file
    }

    /// How many chunk digests are known.
    #[cfg(test)]
    pub(crate) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Hashes the chunks `ranges` ((offset, length) within `bytes`, one length, offsets
    /// ascending and past every chunk known already) in SIMD lanes and records them. Returns
    /// false, recording nothing, when a range is out of `bytes`, out of order, or the table
    /// cannot grow (the chunks are then hashed at the end).
    pub(crate) fn hash_chunks(&mut self, bytes: &[u8], ranges: &[(usize, usize)]) -> bool {
        let mut after = self.chunks.last().map(|c| c.0);
        let mut parts: Vec<&[u8]> = Vec::new();
        if parts.try_reserve_exact(ranges.len()).is_err()
            || self.chunks.try_reserve(ranges.len()).is_err()
        {
            return false;
        }
        for &(offset, len) in ranges {
            let end = offset.checked_add(len);
            let Some(part) = end.and_then(|end| bytes.get(offset..end)) else {
                return false;
            };
            if after.is_some_and(|a| offset <= a) || len != ranges[0].1 {
                return false;
            }
            after = Some(offset);
            parts.push(part);
        }
        let mut digests = alloc::vec![[0u8; DIGEST_BYTES]; parts.len()];
        sha256_batch(&parts, &mut digests);
        self.chunks.extend(
            ranges
                .iter()
                .zip(digests)
                .map(|(&(offset, len), d)| (offset, len, d)),
        );
        true
    }

    /// Records the file digest of a file whose bytes up to its data section are
    /// `up_to_data` (the file digest of format 2.1 covers nothing after).
    pub(crate) fn hash_file(&mut self, up_to_data: &[u8]) {
        self.file = Some(file_digest(up_to_data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// The chunked digest written the plain way: one chunk after the other.
    fn chunked_by_hand(payload: &[u8]) -> [u8; 32] {
        let mut joined = Vec::new();
        for c in payload.chunks(DIGEST_CHUNK_BYTES) {
            joined.extend_from_slice(&sha256(c));
        }
        sha256(&joined)
    }

    #[test]
    fn chunked_digests_are_the_definition_for_any_mix_of_lengths() {
        let c = DIGEST_CHUNK_BYTES;
        let lens = [
            1,
            2,
            55,
            56,
            64,
            1000,
            c - 1,
            c,
            c + 1,
            2 * c,
            3 * c + 7,
            5 * c,
            1000,
            c + 1,
            c + 1,
            c + 1,
            9 * c + 1000,
        ];
        let owned: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| bytes(n, i as u8))
            .collect();
        let payloads: Vec<&[u8]> = owned.iter().map(|p| &p[..]).collect();
        let got = tensor_digests(DigestRule::Chunked, &payloads);
        assert_eq!(got.len(), payloads.len());
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!(
                got[i],
                chunked_by_hand(p),
                "payload {i} of {} bytes",
                p.len()
            );
            assert_eq!(tensor_digest(DigestRule::Chunked, p), got[i]);
            assert_eq!(tensor_digest(DigestRule::Whole, p), sha256(p));
        }
        // A one-chunk payload's digest is the SHA-256 of its SHA-256.
        assert_eq!(
            tensor_digest(DigestRule::Chunked, b"abc"),
            sha256(&sha256(b"abc"))
        );
    }

    #[test]
    fn known_chunk_digests_are_hashed_from_the_bytes_and_found_by_offset_and_length() {
        let c = DIGEST_CHUNK_BYTES;
        // Not periodic (as `bytes` is, with a period dividing the chunk size): chunks differ.
        let file: Vec<u8> = (0..10 * c)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_ne!(
            sha256(&file[100..100 + c]),
            sha256(&file[100 + c..100 + 2 * c])
        );
        let mut known = KnownDigests::default();
        assert!(known.hash_chunks(&file, &[(100, c), (100 + c, c)]));
        assert!(known.hash_chunks(&file, &[(5 * c, c)]));
        assert_eq!(known.chunk(100, c), Some(sha256(&file[100..100 + c])));
        assert_eq!(
            known.chunk(100 + c, c),
            Some(sha256(&file[100 + c..100 + 2 * c]))
        );
        assert_eq!(known.chunk(5 * c, c), Some(sha256(&file[5 * c..6 * c])));
        // Another length or offset is not known.
        assert_eq!(known.chunk(100, c - 1), None);
        assert_eq!(known.chunk(101, c), None);
        // Refused, recording nothing: out of the bytes, before a known chunk, out of order,
        // unequal lengths.
        for bad in [
            &[(9 * c + 1, c)][..],
            &[(4 * c, c)],
            &[(8 * c, c), (7 * c, c)],
            &[(6 * c, c), (7 * c, 5)],
            &[(usize::MAX - 1, c)],
        ] {
            assert!(!known.hash_chunks(&file, bad), "{bad:?}");
            assert_eq!(known.chunk_count(), 3);
        }
        // tensor_digests_known takes the known digests: a wrong one shows in the result.
        let payload = &file[100..100 + 2 * c];
        let from = |k: &KnownDigests| {
            tensor_digests_known(DigestRule::Chunked, &[payload], |_, start, len| {
                k.chunk(100 + start, len)
            })
        };
        assert_eq!(from(&known), vec![chunked_by_hand(payload)]);
        let mut wrong = KnownDigests::default();
        assert!(wrong.hash_chunks(&file, &[(100 + c, c)]));
        wrong.chunks[0].0 = 100; // the second chunk's digest filed under the first's offset
        assert_ne!(from(&wrong), vec![chunked_by_hand(payload)]);
    }

    #[test]
    fn the_file_digest_range_follows_the_version() {
        // A 2.1-shaped header whose data section starts at 512, then 256 more bytes.
        let mut f = vec![7u8; 768];
        f[10..12].copy_from_slice(&1u16.to_le_bytes());
        f[128..136].copy_from_slice(&512u64.to_le_bytes());
        let mut prefix = f[..224].to_vec();
        prefix.extend_from_slice(&f[256..512]);
        assert_eq!(file_digest(&f), sha256(&prefix));
        // The bytes after the data offset are not covered.
        let mut g = f.clone();
        g[700] ^= 1;
        assert_eq!(file_digest(&g), file_digest(&f));
        // Format 2.0: every byte but the digest field.
        f[10..12].copy_from_slice(&0u16.to_le_bytes());
        let mut all = f[..224].to_vec();
        all.extend_from_slice(&f[256..]);
        assert_eq!(file_digest(&f), sha256(&all));
        // Out-of-range offsets and short inputs are hashed up to their end, without panicking.
        for data in [0u64, 100, 10_000, u64::MAX] {
            let mut h = g.clone();
            h[128..136].copy_from_slice(&data.to_le_bytes());
            let _ = file_digest(&h);
        }
        for n in [0, 5, 11, 12, 200, 255, 256] {
            let _ = file_digest(&g[..n]);
        }
    }
}
