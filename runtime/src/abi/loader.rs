//! The chunked model loader (spec/abi.md, Loading): receives a file in pieces, rejects it as
//! soon as what has arrived is enough to (budget at begin; magic, version and header with the
//! first 256 bytes), and verifies the whole file at the end (every rule, every digest).

use crate::error::{Error, ErrorCode, Result};
use crate::format::header::{self, MAGIC};
use crate::limits;
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
        self.check_early()
    }

    /// Rejects a bad prefix before the rest arrives, with the code a whole-file load would give:
    /// the magic on any prefix, the version from 12 bytes, the whole header from 256.
    fn check_early(&mut self) -> Result<()> {
        if self.header_checked {
            return Ok(());
        }
        let got = &self.bytes[..];
        if got.len() >= limits::HEADER_BYTES {
            header::parse_header(&got[..limits::HEADER_BYTES], self.total as u64)?;
            self.header_checked = true;
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
        Model::load(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::file_digest;

    const FILE: &[u8] = include_bytes!("../../../corpus/byte-mha-tied-q4_0.slm");

    fn load_in(bytes: &[u8], chunk: usize) -> Result<Model> {
        let mut load = ChunkedLoad::begin(bytes.len() as u32)?;
        for piece in bytes.chunks(chunk) {
            load.chunk(piece)?;
        }
        load.finish()
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
