//! The tokenizer section's content, owned: what the writer takes and the reader returns, and what
//! [`crate::generate::tokenizer::Tokenizer`] is built from. Byte layout: spec/slm.md, Tokenizer.

use crate::error::{Error, ErrorCode, Result};
use alloc::{format, vec::Vec};

/// How text becomes tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum TokenizerKind {
    /// Ids 0..=255 are the bytes themselves (piece = that one byte, type `Byte`); ids from 256 are
    /// special tokens (type `Control`). Encoding maps each byte of the text to its id.
    ByteLevel = 1,
    /// Scored SentencePiece-style BPE (llama2.c `tokenizer.bin`, GGUF `llama`): code points, byte
    /// fallback to `<0xXX>` pieces, highest-score merge first.
    SentencePiece = 2,
    /// Ranked-merge BPE: start from single bytes, apply merges by rank (lowest rank first).
    RankedMerge = 3,
}

/// Token types, numbered as SentencePiece / GGUF `tokenizer.ggml.token_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TokenType {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl TokenType {
    pub fn from_code(code: u8) -> Option<TokenType> {
        Some(match code {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

/// A vocabulary. Pieces hold text bytes with real spaces (U+0020), never SentencePiece's `▁`
/// (converters replace it). In `SentencePiece` kind, byte-fallback pieces are the six ASCII
/// characters `<0xXX>` (upper-case hex) with type `Byte`.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    pub kind: TokenizerKind,
    /// Piece bytes per id; `pieces.len()` is the vocabulary size.
    pub pieces: Pieces,
    /// Merge priority per id (SentencePiece: higher merges first). Finite.
    pub scores: Vec<f32>,
    pub types: Vec<TokenType>,
    /// RankedMerge only: (left id, right id) pairs, rank = index; the merged piece is the
    /// concatenation, which must be a token.
    pub merges: Vec<(u32, u32)>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    pub unk: Option<u32>,
    /// Generation stops when one of these is sampled (not emitted).
    pub stop: Vec<u32>,
    /// Prepend `bos` when encoding a prompt.
    pub add_bos: bool,
    /// SentencePiece: prepend a space to non-empty text before encoding.
    pub add_dummy_prefix: bool,
    /// SentencePiece: unknown code points fall back to `<0xXX>` byte pieces (else `unk`).
    pub byte_fallback: bool,
}

/// The piece bytes of every id back to back, in two allocations (not one per piece): piece `id`
/// is `bytes[offsets[id]..offsets[id + 1]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pieces {
    bytes: Vec<u8>,
    /// One more than the pieces; starts with 0.
    offsets: Vec<u32>,
}

impl Default for Pieces {
    fn default() -> Pieces {
        Pieces {
            bytes: Vec::new(),
            offsets: alloc::vec![0],
        }
    }
}

/// An empty `Vec` with room for `n` items, allocated fallibly: `OutOfMemory` when it cannot be.
/// A vocabulary's tables are as large as the file says, so they are never allocated infallibly.
pub(crate) fn reserved<T>(n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::new(
            ErrorCode::OutOfMemory,
            "cannot allocate the vocabulary's tables",
        )
    })?;
    Ok(v)
}

impl Pieces {
    /// No pieces, with room for `count` pieces of `bytes` bytes in total. `OutOfMemory` when
    /// that room cannot be allocated.
    pub fn with_capacity(count: usize, bytes: usize) -> Result<Pieces> {
        let mut offsets = reserved(count.saturating_add(1))?;
        offsets.push(0);
        Ok(Pieces {
            bytes: reserved(bytes)?,
            offsets,
        })
    }

    /// A copy, allocated exactly and fallibly (`OutOfMemory`).
    pub fn try_clone(&self) -> Result<Pieces> {
        let mut copy = Pieces::with_capacity(self.len(), self.bytes.len())?;
        copy.bytes.extend_from_slice(&self.bytes);
        copy.offsets.clear();
        copy.offsets.extend_from_slice(&self.offsets);
        Ok(copy)
    }

    /// The pieces of `pieces`, in order. `LimitExceeded` when they pass 4 GiB in total.
    pub fn new<B: AsRef<[u8]>>(pieces: impl IntoIterator<Item = B>) -> Result<Pieces> {
        let mut all = Pieces::default();
        for piece in pieces {
            all.push(piece.as_ref())?;
        }
        Ok(all)
    }

    /// Appends `piece` as the next id. `LimitExceeded` when the pieces would pass 4 GiB in total.
    pub fn push(&mut self, piece: &[u8]) -> Result<()> {
        let end = u32::try_from(piece.len())
            .ok()
            .and_then(|len| len.checked_add(self.total()))
            .ok_or_else(|| Error::new(ErrorCode::LimitExceeded, "pieces exceed 4 GiB in total"))?;
        self.bytes.extend_from_slice(piece);
        self.offsets.push(end);
        Ok(())
    }

    /// Replaces piece `id` with `piece`. `InvalidTokenId` when there is no piece `id`,
    /// `LimitExceeded` when the pieces would pass 4 GiB in total.
    pub fn set(&mut self, id: usize, piece: &[u8]) -> Result<()> {
        let (start, end) = match (
            self.offsets.get(id),
            id.checked_add(1).and_then(|i| self.offsets.get(i)),
        ) {
            (Some(&start), Some(&end)) => (start, end),
            _ => {
                return Err(Error::new(
                    ErrorCode::InvalidTokenId,
                    format!("there is no piece {id} among {}", self.len()),
                ))
            }
        };
        let old = end - start;
        let new = u32::try_from(piece.len())
            .ok()
            .filter(|&new| (self.total() - old).checked_add(new).is_some())
            .ok_or_else(|| Error::new(ErrorCode::LimitExceeded, "pieces exceed 4 GiB in total"))?;
        self.bytes
            .splice(start as usize..end as usize, piece.iter().copied());
        for offset in &mut self.offsets[id + 1..] {
            *offset = *offset - old + new;
        }
        Ok(())
    }

    /// Keeps the first `len` pieces.
    pub fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len.saturating_add(1));
        self.bytes.truncate(self.total() as usize);
    }

    /// Bytes of all pieces together.
    fn total(&self) -> u32 {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Number of pieces (the vocabulary size).
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there is no piece.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of piece `id`, if it exists.
    pub fn get(&self, id: usize) -> Option<&[u8]> {
        let start = *self.offsets.get(id)? as usize;
        let end = *self.offsets.get(id.checked_add(1)?)? as usize;
        self.bytes.get(start..end)
    }

    /// Every piece, by id.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.offsets.windows(2).map(|w| {
            self.bytes
                .get(w[0] as usize..w[1] as usize)
                .unwrap_or_default()
        })
    }
}

impl core::ops::Index<usize> for Pieces {
    type Output = [u8];

    /// Piece `id`; panics when there is none (as a slice index does).
    fn index(&self, id: usize) -> &[u8] {
        match self.get(id) {
            Some(piece) => piece,
            None => panic!("piece {id} of {}", self.len()),
        }
    }
}
