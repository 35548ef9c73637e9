//! The tokenizer section's content, owned: what the writer takes and the reader returns, and what
//! [`crate::generate::tokenizer::Tokenizer`] is built from. Byte layout: spec/slm.md, Tokenizer.

use alloc::vec::Vec;

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
    pub pieces: Vec<Vec<u8>>,
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
