//! The chunked model loader (spec/abi.md, Loading): receives a file in pieces, rejects it as
//! soon as what has arrived is enough to (budget at begin; magic, version and header with the
//! first 256 bytes), hashes what can be hashed while the rest arrives (`Streamed`), and
//! verifies the whole file at the end (every rule, every digest).

use crate::error::{Error, ErrorCode, Result};
use crate::format::digest::{DigestRule, KnownDigests};
use crate::format::directory::payload_spans;
use crate::format::header::{self, Header, MAGIC};
use crate::limits::{self, DIGEST_CHUNK_BYTES};
use crate::model::Model;
use alloc::format;
use alloc::vec::Vec;

/// A load in progress.
pub struct ChunkedLoad {
    /// Bytes announced at begin.
    total: usize,
    /// Bytes received so far (capacity `total`, reserved at begin).
    bytes: Vec<u8>,
    header_checked: bool,
    streamed: Streamed,
}

/// Full payload chunks hashed together as soon as this many have arrived (the widest SIMD
/// batch of [`crate::sha256::sha256_batch`]: eight AVX2 lanes, two passes of four simd128 lanes).
const STREAM_BATCH: usize = 8;

/// What a load of a format-2.1 file hashes while the rest of the file arrives: its digests of
/// 64 KiB payload chunks and its file digest (spec/slm.md, Digests) depend on no byte after
/// them. Once the directory has arrived its payload spans are read (without checks: a wrong
/// span only costs its chunks being hashed at the end, where every rule is checked in order),
/// and full chunks are hashed in batches of [`STREAM_BATCH`] as they complete; the file digest
/// once the bytes before the data section have arrived. `finish` then hashes only what is left
/// (the last incomplete batch, the tails of payloads) and uses the rest. A file of another
/// version, or one whose directory cannot be read, is hashed at the end only.
#[derive(Default)]
struct Streamed {
    /// The header's directory section (offset, end) and data offset (format 2.1 files only),
    /// once checked.
    sections: Option<(usize, usize, usize)>,
    /// Every payload chunk (offset, length) in file order, once the directory is read.
    chunks: Option<Vec<(usize, usize)>>,
    /// The first chunk not looked at yet.
    next: usize,
    /// Full chunks that have arrived and wait for a batch.
    pending: Vec<(usize, usize)>,
    known: KnownDigests,
}

impl Streamed {
    /// Starts from the checked header `h` of a `total`-byte file. A file too small to hold a
    /// batch of full chunks hashes nothing early (and allocates nothing for it).
    fn start(&mut self, h: &Header, total: usize) {
        if DigestRule::for_minor(h.version_minor) != DigestRule::Chunked
            || total < STREAM_BATCH * DIGEST_CHUNK_BYTES
        {
            return;
        }
        let (dir, data) = (h.sections.directory, h.sections.data);
        let at = |o: Option<u64>| o.and_then(|o| usize::try_from(o).ok());
        if let (Some(dir_at), Some(dir_end), Some(data)) =
            (at(Some(dir.offset)), at(dir.end()), at(Some(data.offset)))
        {
            self.sections = Some((dir_at, dir_end, data));
        }
    }

    /// Hashes what `bytes` (the first bytes of a `total`-byte file) completes.
    fn advance(&mut self, bytes: &[u8], total: usize) {
        let Some((dir_at, dir_end, data)) = self.sections else {
            return;
        };
        if self.chunks.is_none() && bytes.len() >= dir_end {
            self.chunks = Some(read_chunks(bytes, dir_at, dir_end, total).unwrap_or_default());
        }
        if self.known.file().is_none() && bytes.len() >= data {
            self.known.hash_file(&bytes[..data]);
        }
        let Some(chunks) = &self.chunks else {
            return;
        };
        while let Some(&(offset, len)) = chunks.get(self.next) {
            if offset.saturating_add(len) > bytes.len() {
                break;
            }
            self.next += 1;
            if len != DIGEST_CHUNK_BYTES || self.pending.try_reserve(1).is_err() {
                continue; // a payload's tail: hashed at the end, with its peers
            }
            self.pending.push((offset, len));
            if self.pending.len() == STREAM_BATCH {
                self.known.hash_chunks(bytes, &self.pending);
                self.pending.clear();
            }
        }
    }
}

/// The payload chunks the directory `bytes[dir_at..dir_end]` lists, in file order, of a
/// `total`-byte file. None when the directory cannot be read, lists more chunks than payloads
/// within the file can have (a file's payloads do not overlap), or the table cannot be had.
fn read_chunks(
    bytes: &[u8],
    dir_at: usize,
    dir_end: usize,
    total: usize,
) -> Option<Vec<(usize, usize)>> {
    let spans = payload_spans(bytes.get(dir_at..dir_end)?, dir_at as u64)?;
    let count = spans.iter().try_fold(0usize, |n, &(_, len)| {
        n.checked_add(usize::try_from(len).ok()?.div_ceil(DIGEST_CHUNK_BYTES))
    })?;
    if count > total / DIGEST_CHUNK_BYTES + limits::MAX_TENSORS as usize {
        return None;
    }
    let mut chunks = Vec::new();
    chunks.try_reserve_exact(count).ok()?;
    for (offset, len) in spans {
        let (offset, len) = (usize::try_from(offset).ok()?, usize::try_from(len).ok()?);
        for start in (0..len).step_by(DIGEST_CHUNK_BYTES) {
            let at = offset.checked_add(start)?;
            chunks.push((at, (len - start).min(DIGEST_CHUNK_BYTES)));
        }
    }
    Some(chunks)
}

impl ChunkedLoad {
    /// Whether a `total_len`-byte file is within the model budget.
    pub fn check_budget(total_len: u32) -> Result<()> {
        if u64::from(total_len) > limits::MAX_MODEL_BYTES {
            return Err(Error::at(
                ErrorCode::BudgetExceeded,
                0,
                format!(
                    "the file has {total_len} bytes; the model budget is {} bytes",
                    limits::MAX_MODEL_BYTES
                ),
            ));
        }
        Ok(())
    }

    /// Starts a load of a `total_len`-byte file: checks the budget and reserves the memory.
    pub fn begin(total_len: u32) -> Result<ChunkedLoad> {
        ChunkedLoad::check_budget(total_len)?;
        let total = total_len as usize;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(total).map_err(|_| {
            Error::new(
                ErrorCode::OutOfMemory,
                format!("cannot allocate {total} bytes for the model"),
            )
        })?;
        if !super::headroom::available(limits::ABI_HEADROOM_BYTES) {
            drop(bytes);
            return Err(super::headroom::out_of_memory());
        }
        Ok(ChunkedLoad {
            total,
            bytes,
            header_checked: false,
            streamed: Streamed::default(),
        })
    }

    /// Appends the next piece of the file and checks what can be checked already.
    pub fn chunk(&mut self, data: &[u8]) -> Result<()> {
        let at = self.bytes.len();
        if data.len() > self.total - at {
            return Err(Error::at(
                ErrorCode::TrailingBytes,
                self.total as u64,
                format!(
                    "{} more bytes arrived after {at}; the file was announced with {}",
                    data.len(),
                    self.total
                ),
            ));
        }
        self.bytes.extend_from_slice(data);
        self.check_early()?;
        self.streamed.advance(&self.bytes, self.total);
        Ok(())
    }

    /// Rejects a bad prefix before the rest arrives, with the code a whole-file load would give:
    /// the magic on any prefix, the version from 12 bytes, the whole header from 256.
    fn check_early(&mut self) -> Result<()> {
        if self.header_checked {
            return Ok(());
        }
        let got = &self.bytes[..];
        if got.len() >= limits::HEADER_BYTES {
            let h = header::parse_header(&got[..limits::HEADER_BYTES], self.total as u64)?;
            self.header_checked = true;
            self.streamed.start(&h, self.total);
            return Ok(());
        }
        let n = got.len().min(MAGIC.len());
        // With fewer than 12 bytes check_prefix would call the prefix truncated, so it only runs
        // then when the magic already differs (which it reports first).
        if got.len() >= 12 || got[..n] != MAGIC[..n] {
            header::check_prefix(got, self.total as u64)?;
        }
        Ok(())
    }

    /// Verifies the complete file and builds the model (`OutOfMemory` first when its tables
    /// would not fit: [`super::headroom::for_model`]).
    pub fn finish(self) -> Result<Model> {
        if self.bytes.len() < self.total {
            return Err(Error::at(
                ErrorCode::Truncated,
                self.bytes.len() as u64,
                format!(
                    "finish after {} of the {} announced bytes",
                    self.bytes.len(),
                    self.total
                ),
            ));
        }
        super::headroom::ensure_for_model(&self.bytes)?;
        Model::load_known(self.bytes, &self.streamed.known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::write::{write, ModelFile, TensorData};
    use crate::format::{file_digest, llama, DType, Slm};

    const FILE: &[u8] = include_bytes!("../../../corpus/byte-mha-tied-q4_0.slm");

    fn load_in(bytes: &[u8], chunk: usize) -> Result<Model> {
        let mut load = ChunkedLoad::begin(bytes.len() as u32)?;
        for piece in bytes.chunks(chunk) {
            load.chunk(piece)?;
        }
        load.finish()
    }

    /// The fixture with its dimensions grown (seeded f32 weights, norms 1), so that its payloads
    /// span many 64 KiB chunks: 3.2 MiB, the three FFN matrices 512 KiB (8 chunks) each.
    fn many_chunks() -> Vec<u8> {
        let slm = Slm::parse(FILE).unwrap();
        let mut m = ModelFile::from_slm(&slm);
        m.config.dim = 256;
        m.config.n_heads = 4;
        m.config.n_kv_heads = 4;
        m.config.head_dim = 64;
        m.config.ffn_dim = 512;
        let mut seed = 1u32;
        m.tensors = llama::slots(&m.config)
            .into_iter()
            .map(|slot| {
                let n: usize = slot.shape.iter().map(|&d| d as usize).product();
                let bytes = (0..n)
                    .flat_map(|_| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        let v = if slot.role == llama::Role::Norm {
                            1.0
                        } else {
                            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                        };
                        f32::to_le_bytes(v)
                    })
                    .collect();
                TensorData {
                    name: slot.name,
                    dtype: DType::F32,
                    shape: slot.shape,
                    bytes,
                }
            })
            .collect();
        write(&m).unwrap()
    }

    #[test]
    fn payload_chunks_are_hashed_as_they_arrive_and_used_at_the_end() {
        let file = many_chunks();
        let slm = Slm::parse(&file).unwrap();
        let full_chunks: usize = slm
            .tensors
            .iter()
            .map(|t| t.length as usize / DIGEST_CHUNK_BYTES)
            .sum();
        assert!(full_chunks >= 3 * STREAM_BATCH, "{full_chunks} full chunks");
        for piece in [1000, 4096, 65_536, 100_000, file.len()] {
            let mut load = ChunkedLoad::begin(file.len() as u32).unwrap();
            for p in file.chunks(piece) {
                load.chunk(p).unwrap();
            }
            // Every whole batch of full chunks was hashed before the end (all but fewer than
            // one batch).
            let early = load.streamed.known.chunk_count();
            assert!(early.is_multiple_of(STREAM_BATCH) && early + STREAM_BATCH > full_chunks);
            assert_eq!(load.streamed.known.file(), Some(file_digest(&file)));
            let model = load.finish().unwrap();
            assert_eq!(model.digest, file_digest(&file), "pieces of {piece}");
        }
        // A changed byte of a chunk hashed early, of a tensor digest in the directory, or of a
        // span the loader reads early (a payload offset: chunks hashed at the wrong places; a
        // length's high byte: more chunks than the file can hold, so none early) fails as a
        // whole-file load does.
        // The directory ends with the last entry's digest.
        let last_digest = slm.header.sections.directory.end().unwrap() as usize - 1;
        let t = &slm.tensors[1];
        // name length, name, dtype, rank, dims, then the payload offset and length.
        let offset_field = t.entry_offset as usize + 2 + t.name.len() + 2 + 4 * t.rank as usize;
        let length_high_byte = offset_field + 8 + 6;
        assert_eq!(file[offset_field..offset_field + 8], t.offset.to_le_bytes());
        assert_eq!(
            file[offset_field + 8..offset_field + 16],
            t.length.to_le_bytes()
        );
        for at in [
            slm.tensors[1].offset as usize + 70_000,
            last_digest,
            offset_field,
            length_high_byte,
            file.len() - 1,
        ] {
            let mut bad = file.clone();
            bad[at] ^= 1;
            let whole = Model::load(bad.clone()).err().map(|e| (e.code, e.offset));
            assert!(whole.is_some());
            for piece in [4096, 65_536] {
                let chunked = load_in(&bad, piece).err().map(|e| (e.code, e.offset));
                assert_eq!(chunked, whole, "byte {at}, pieces of {piece}");
            }
        }
    }

    #[test]
    fn any_split_loads_the_same_model() {
        for chunk in [1, 5, 63, 64, 223, 224, 225, 255, 256, 257, 1000, FILE.len()] {
            let model = load_in(FILE, chunk).unwrap();
            assert_eq!(model.digest, file_digest(FILE), "chunks of {chunk}");
        }
    }

    #[test]
    fn a_changed_digest_field_or_byte_is_caught() {
        for at in [0x10, 230, 300, FILE.len() - 1] {
            let mut bad = FILE.to_vec();
            bad[at] ^= 4;
            let native = Model::load(bad.clone()).err().map(|e| e.code);
            assert!(native.is_some());
            for chunk in [1, 256, 4096] {
                assert_eq!(
                    load_in(&bad, chunk).err().map(|e| e.code),
                    native,
                    "byte {at}"
                );
            }
        }
    }

    #[test]
    fn bad_prefixes_fail_at_the_first_chunk_that_shows_them() {
        let mut load = ChunkedLoad::begin(FILE.len() as u32).unwrap();
        let e = load.chunk(b"\x89SLX").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidModelMagic);

        let mut load = ChunkedLoad::begin(FILE.len() as u32).unwrap();
        load.chunk(&FILE[..11]).unwrap();
        let mut next = FILE[11..12].to_vec();
        next[0] = 9; // version minor 0x0900 > 0
        assert_eq!(
            load.chunk(&next).unwrap_err().code,
            ErrorCode::UnsupportedModelVersion
        );

        // The header's file_bytes disagrees with the announced length.
        let mut load = ChunkedLoad::begin(FILE.len() as u32 - 64).unwrap();
        load.chunk(&FILE[..255]).unwrap();
        assert_eq!(
            load.chunk(&FILE[255..256]).unwrap_err().code,
            ErrorCode::Truncated
        );
    }

    #[test]
    fn lengths_are_held_to_the_announcement_and_the_budget() {
        let e = ChunkedLoad::begin(33_554_433).err().unwrap();
        assert_eq!(e.code, ErrorCode::BudgetExceeded);
        let mut load = ChunkedLoad::begin(FILE.len() as u32).unwrap();
        load.chunk(FILE).unwrap();
        assert_eq!(load.chunk(&[0]).unwrap_err().code, ErrorCode::TrailingBytes);
        let mut load = ChunkedLoad::begin(FILE.len() as u32).unwrap();
        load.chunk(&FILE[..FILE.len() - 1]).unwrap();
        assert_eq!(load.finish().err().unwrap().code, ErrorCode::Truncated);
    }
}
