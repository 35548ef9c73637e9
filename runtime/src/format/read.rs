//! The verified reader: [`Slm::parse`] checks every rule of spec/slm.md, in the order the spec
//! gives, before it returns anything that exposes a tensor.

use super::digest::{file_digest, DigestRule, KnownDigests};
use super::directory::{self, TensorEntry};
use super::header::{self, Header, Sections, DIGEST_OFFSET};
use super::{llama, metadata, vocab_section, Vocab};
use crate::error::{Error, ErrorCode, Result};
use alloc::{format, vec::Vec};

/// A fully verified `.slm` file, borrowing the bytes it was read from.
#[derive(Clone, Debug)]
pub struct Slm<'a> {
    pub bytes: &'a [u8],
    pub header: Header,
    pub metadata: Vec<(&'a str, &'a str)>,
    pub vocab: Vocab,
    pub tensors: Vec<TensorEntry<'a>>,
}

impl<'a> Slm<'a> {
    /// Reads and verifies a whole file held in memory.
    pub fn parse(bytes: &'a [u8]) -> Result<Slm<'a>> {
        Slm::parse_known(bytes, &KnownDigests::default())
    }

    /// [`Slm::parse`], taking the digests of `known` (computed from these bytes as they arrived)
    /// instead of hashing their bytes again.
    pub(crate) fn parse_known(bytes: &'a [u8], known: &KnownDigests) -> Result<Slm<'a>> {
        // 1-4: budget, magic, version, header fields, section table.
        let header = header::parse_header(bytes, bytes.len() as u64)?;
        let s = header.sections;
        check_section_padding(bytes, &s)?;
        // 5: metadata.
        let metadata = metadata::parse(slice(bytes, s.metadata), s.metadata.offset)?;
        // 6: tokenizer.
        let vocab = vocab_section::parse(
            slice(bytes, s.tokenizer),
            s.tokenizer.offset,
            header.config.vocab_size,
        )?;
        // 7: tensor directory and payload layout.
        let tensors = directory::parse(bytes, s.directory, s.data)?;
        // 8: the architecture's tensors, shapes and dtypes.
        llama::check(&header.config, &tensors)?;
        // 9: every tensor's digest, by the rule of the file's version.
        let rule = DigestRule::for_minor(header.version_minor);
        directory::verify_digests(bytes, &tensors, rule, known)?;
        // 10: the file digest.
        if known.file().unwrap_or_else(|| file_digest(bytes)) != header.file_digest {
            return Err(Error::at(
                ErrorCode::FileDigestMismatch,
                DIGEST_OFFSET as u64,
                "the file digest (SHA-256) does not match the digest in its header",
            ));
        }
        Ok(Slm {
            bytes,
            header,
            metadata,
            vocab,
            tensors,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorEntry<'a>> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The payload bytes of an entry of this file.
    pub fn payload(&self, entry: &TensorEntry<'_>) -> &'a [u8] {
        &self.bytes[entry.offset as usize..(entry.offset + entry.length) as usize]
    }

    pub fn metadata(&self, key: &str) -> Option<&'a str> {
        self.metadata
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// The file digest (from the header; verified).
    pub fn digest(&self) -> [u8; 32] {
        self.header.file_digest
    }
}

fn slice(bytes: &[u8], s: header::Section) -> &[u8] {
    &bytes[s.offset as usize..(s.offset + s.length) as usize]
}

/// The bytes between one section's end and the next section's start must be zero.
fn check_section_padding(bytes: &[u8], s: &Sections) -> Result<()> {
    let secs = s.as_array();
    for pair in secs.windows(2) {
        let (end, next) = (pair[0].offset + pair[0].length, pair[1].offset);
        if let Some(i) = bytes[end as usize..next as usize]
            .iter()
            .position(|&b| b != 0)
        {
            return Err(Error::at(
                ErrorCode::NonZeroPadding,
                end + i as u64,
                format!(
                    "padding byte at {} between sections is not zero",
                    end + i as u64
                ),
            ));
        }
    }
    Ok(())
}
