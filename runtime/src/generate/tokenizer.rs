//! Text ⇄ token ids (spec/tokenizer.md). [`Tokenizer::new`] checks a [`Vocab`] against every rule
//! the algorithms rely on and builds the lookup tables once; [`Tokenizer::encode`] and
//! [`Tokenizer::decode`] then never allocate per token and never panic.

mod ranked_merge;
mod sentencepiece;
mod table;

use alloc::format;
use alloc::vec::Vec;

use crate::error::{Error, ErrorCode, Result};
use crate::format::vocab::reserved;
use crate::format::{Pieces, TokenType, TokenizerKind, Vocab};
use crate::limits;
use table::{Key, MergeTable, PieceTable, NONE};

/// Every byte value once, so that a byte-fallback token decodes to a borrowed one-byte slice.
static ALL_BYTES: [u8; 256] = {
    let mut bytes = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        bytes[i] = i as u8;
        i += 1;
    }
    bytes
};

/// A validated vocabulary with its encode tables.
pub struct Tokenizer {
    kind: TokenizerKind,
    pieces: Pieces,
    types: Vec<TokenType>,
    /// SentencePiece merge priority per id ([`sentencepiece::score_key`]; larger merges first);
    /// empty for the other kinds, which do not use scores.
    score_keys: Vec<u32>,
    lookup: PieceTable,
    /// Length of the longest piece: longer concatenations are not looked up.
    max_piece_len: usize,
    /// SentencePiece: the `<0xXX>` id per byte; RankedMerge: the single-byte piece per byte;
    /// ByteLevel: the byte itself. `NONE` where the vocabulary has none.
    byte_ids: [u32; 256],
    merges: MergeTable,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    stop: Vec<u32>,
    add_bos: bool,
    add_dummy_prefix: bool,
    byte_fallback: bool,
}

/// What encoding fails with when its memory cannot be had.
fn out_of_memory() -> Error {
    Error::new(ErrorCode::OutOfMemory, "cannot allocate to encode the text")
}

/// `v.try_reserve(n)`, failing with `OutOfMemory`.
fn try_reserve<T>(v: &mut Vec<T>, n: usize) -> Result<()> {
    v.try_reserve(n).map_err(|_| out_of_memory())
}

fn invalid(message: impl Into<alloc::string::String>) -> Error {
    Error::new(ErrorCode::InvalidTokenizer, message)
}

/// The byte `XX` of a piece that is exactly `<0xXX>` (upper-case hex).
fn byte_piece_value(piece: &[u8]) -> Option<u8> {
    fn hex(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    match piece {
        [b'<', b'0', b'x', hi, lo, b'>'] => Some(hex(*hi)? << 4 | hex(*lo)?),
        _ => None,
    }
}

/// The six-byte piece `<0xXX>` for `byte`.
fn byte_piece(byte: u8) -> [u8; 6] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    [
        b'<',
        b'0',
        b'x',
        HEX[usize::from(byte >> 4)],
        HEX[usize::from(byte & 15)],
        b'>',
    ]
}

impl Tokenizer {
    /// Validates `vocab` (spec/tokenizer.md, Validation) and builds the tables. Every failure is
    /// `InvalidTokenizer`, but `OutOfMemory` when a table cannot be allocated. The tables' hash
    /// key is the SHA-256 of the vocabulary's entries (see `table`).
    pub fn new(vocab: &Vocab) -> Result<Tokenizer> {
        Tokenizer::build(vocab, Key::of(&vocab.pieces, &vocab.merges))
    }

    /// [`Tokenizer::new`] with the tables keyed by `source_digest`, the SHA-256 of the bytes
    /// `vocab` was read from (a .slm file's tokenizer section, which a model's load has hashed
    /// already): like the digest of the entries, it is known only once they are.
    pub fn with_source_digest(vocab: &Vocab, source_digest: &[u8; 32]) -> Result<Tokenizer> {
        Tokenizer::build(vocab, Key::from_digest(source_digest))
    }

    fn build(vocab: &Vocab, key: Key) -> Result<Tokenizer> {
        let n = vocab.pieces.len();
        if n == 0 || n > limits::MAX_VOCAB as usize {
            return Err(invalid(format!(
                "vocabulary size {n} is not in 1..={}",
                limits::MAX_VOCAB
            )));
        }
        if vocab.scores.len() != n || vocab.types.len() != n {
            return Err(invalid(format!(
                "{n} pieces but {} scores and {} types",
                vocab.scores.len(),
                vocab.types.len()
            )));
        }
        let n = n as u32;
        for (id, piece) in vocab.pieces.iter().enumerate() {
            if piece.len() > limits::MAX_PIECE_BYTES {
                return Err(invalid(format!(
                    "piece {id} has {} bytes, more than {}",
                    piece.len(),
                    limits::MAX_PIECE_BYTES
                )));
            }
        }
        if let Some(id) = vocab.scores.iter().position(|s| !s.is_finite()) {
            return Err(invalid(format!("score of token {id} is not finite")));
        }
        for (name, id) in [
            ("bos", vocab.bos),
            ("eos", vocab.eos),
            ("pad", vocab.pad),
            ("unk", vocab.unk),
        ] {
            if let Some(id) = id.filter(|&id| id >= n) {
                return Err(invalid(format!("{name} id {id} is not below {n}")));
            }
        }
        if vocab.stop.len() > limits::MAX_STOP_TOKENS as usize {
            return Err(invalid(format!(
                "{} stop tokens, more than {}",
                vocab.stop.len(),
                limits::MAX_STOP_TOKENS
            )));
        }
        if let Some(id) = vocab.stop.iter().find(|&&id| id >= n) {
            return Err(invalid(format!("stop id {id} is not below {n}")));
        }
        if vocab.add_bos && vocab.bos.is_none() {
            return Err(invalid("add_bos is set but there is no bos token"));
        }
        if vocab.kind != TokenizerKind::SentencePiece
            && (vocab.add_dummy_prefix || vocab.byte_fallback)
        {
            return Err(invalid(
                "add_dummy_prefix and byte_fallback apply to SentencePiece vocabularies only",
            ));
        }
        if vocab.kind != TokenizerKind::RankedMerge && !vocab.merges.is_empty() {
            return Err(invalid("merges apply to RankedMerge vocabularies only"));
        }

        // Tables as large as the vocabulary are allocated exactly and fallibly.
        let pieces = vocab.pieces.try_clone()?;
        let lookup = PieceTable::build(&pieces, key)?;
        let mut score_keys = Vec::new();
        if vocab.kind == TokenizerKind::SentencePiece {
            score_keys = reserved(n as usize)?;
            score_keys.extend(vocab.scores.iter().map(|&s| sentencepiece::score_key(s)));
        }
        let mut types = reserved(n as usize)?;
        types.extend_from_slice(&vocab.types);
        let mut tok = Tokenizer {
            kind: vocab.kind,
            pieces,
            types,
            score_keys,
            lookup,
            max_piece_len: vocab.pieces.iter().map(<[u8]>::len).max().unwrap_or(0),
            byte_ids: [NONE; 256],
            merges: MergeTable::build(&[], key)?,
            bos: vocab.bos,
            eos: vocab.eos,
            unk: vocab.unk,
            stop: vocab.stop.clone(),
            add_bos: vocab.add_bos,
            add_dummy_prefix: vocab.add_dummy_prefix,
            byte_fallback: vocab.byte_fallback,
        };
        match vocab.kind {
            TokenizerKind::ByteLevel => tok.check_byte_level(vocab)?,
            TokenizerKind::SentencePiece => tok.check_sentencepiece(vocab)?,
            TokenizerKind::RankedMerge => tok.check_ranked_merge(vocab)?,
        }
        Ok(tok)
    }

    /// ByteLevel: ids 0..=255 are the single bytes with type Byte, the rest are Control.
    fn check_byte_level(&mut self, vocab: &Vocab) -> Result<()> {
        if vocab.pieces.len() < 256 {
            return Err(invalid("a byte-level vocabulary needs at least 256 tokens"));
        }
        for (id, (piece, ty)) in vocab.pieces.iter().zip(&vocab.types).enumerate() {
            if id < 256 && (piece != [id as u8] || *ty != TokenType::Byte) {
                return Err(invalid(format!(
                    "byte-level token {id} must be the single byte {id:#04x} with type Byte"
                )));
            }
            if id >= 256 && *ty != TokenType::Control {
                return Err(invalid(format!(
                    "byte-level token {id} is above 255 and must have type Control"
                )));
            }
            if id < 256 {
                self.byte_ids[id] = id as u32;
            }
        }
        Ok(())
    }

    /// SentencePiece: Byte pieces are `<0xXX>`; byte fallback needs all 256 of them, else unk.
    fn check_sentencepiece(&mut self, vocab: &Vocab) -> Result<()> {
        for (id, (piece, ty)) in vocab.pieces.iter().zip(&vocab.types).enumerate() {
            if *ty == TokenType::Byte && byte_piece_value(piece).is_none() {
                return Err(invalid(format!(
                    "token {id} has type Byte but its piece is not <0xXX>"
                )));
            }
        }
        if vocab.byte_fallback {
            for byte in 0..=255u8 {
                let id = self
                    .lookup(&byte_piece(byte))
                    .filter(|&id| self.types[id as usize] == TokenType::Byte)
                    .ok_or_else(|| {
                        invalid(format!("byte fallback needs a Byte token <0x{byte:02X}>"))
                    })?;
                self.byte_ids[usize::from(byte)] = id;
            }
        } else if vocab.unk.is_none() {
            return Err(invalid(
                "a SentencePiece vocabulary needs byte_fallback or an unk token",
            ));
        }
        Ok(())
    }

    /// RankedMerge: every byte is a single-byte piece; merges join existing ids into an
    /// existing piece.
    fn check_ranked_merge(&mut self, vocab: &Vocab) -> Result<()> {
        for byte in 0..=255u8 {
            self.byte_ids[usize::from(byte)] = self.lookup(&[byte]).ok_or_else(|| {
                invalid(format!(
                    "ranked-merge vocabulary lacks the single-byte piece {byte:#04x}"
                ))
            })?;
        }
        if vocab.merges.len() > limits::MAX_MERGES as usize {
            return Err(invalid(format!(
                "{} merges, more than {}",
                vocab.merges.len(),
                limits::MAX_MERGES
            )));
        }
        let n = vocab.pieces.len() as u32;
        let mut joined = reserved(vocab.merges.len())?;
        let mut buf = Vec::with_capacity(2 * self.max_piece_len);
        for (rank, &(left, right)) in vocab.merges.iter().enumerate() {
            if left >= n || right >= n {
                return Err(invalid(format!(
                    "merge {rank} ({left}, {right}) names an id not below {n}"
                )));
            }
            let piece = |id: u32| self.pieces.get(id as usize).unwrap_or_default();
            let (l, r) = (piece(left), piece(right));
            buf.clear();
            buf.extend_from_slice(l);
            buf.extend_from_slice(r);
            let result = self
                .lookup(&buf)
                .filter(|_| !l.is_empty() && !r.is_empty())
                .ok_or_else(|| {
                    invalid(format!(
                        "merge {rank} ({left}, {right}): its concatenation is not a token or a side is empty"
                    ))
                })?;
            joined.push((left, right, result));
        }
        self.merges = MergeTable::build(&joined, self.lookup.key())?;
        Ok(())
    }

    /// The id of the piece `bytes` (the lowest such id).
    fn lookup(&self, bytes: &[u8]) -> Option<u32> {
        self.lookup.get(&self.pieces, bytes)
    }

    /// Appends the ids of `text` to `out`, after the BOS id when `add_bos`.
    ///
    /// Errors: `PromptTooLong` beyond `MAX_PROMPT_BYTES`; `InvalidUtf8` (SentencePiece and
    /// RankedMerge) at the offset of the first invalid byte; `InvalidArgument` when `add_bos` is
    /// asked of a vocabulary without BOS; `OutOfMemory` when the encoder's memory (reserved
    /// before use: `out`, symbols, candidate pairs) cannot be had. Nothing is appended on error.
    pub fn encode(&self, text: &[u8], add_bos: bool, out: &mut Vec<u32>) -> Result<()> {
        if text.len() > limits::MAX_PROMPT_BYTES {
            return Err(Error::new(
                ErrorCode::PromptTooLong,
                format!(
                    "prompt has {} bytes, more than {}",
                    text.len(),
                    limits::MAX_PROMPT_BYTES
                ),
            ));
        }
        if self.kind != TokenizerKind::ByteLevel {
            if let Err(e) = core::str::from_utf8(text) {
                return Err(Error::at(
                    ErrorCode::InvalidUtf8,
                    e.valid_up_to() as u64,
                    "prompt is not valid UTF-8",
                ));
            }
        }
        let bos = if add_bos {
            Some(self.bos.ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidArgument,
                    "the vocabulary has no bos token",
                )
            })?)
        } else {
            None
        };
        // Every token takes at least one byte of the text (with its dummy prefix).
        try_reserve(out, text.len() + 2)?;
        let start = out.len();
        out.extend(bos);
        let encoded = match self.kind {
            TokenizerKind::ByteLevel => {
                out.extend(text.iter().map(|&b| u32::from(b)));
                Ok(())
            }
            TokenizerKind::SentencePiece if self.add_dummy_prefix && !text.is_empty() => {
                let mut prefixed = Vec::new();
                try_reserve(&mut prefixed, text.len() + 1).and_then(|()| {
                    prefixed.push(b' ');
                    prefixed.extend_from_slice(text);
                    sentencepiece::encode(self, &prefixed, out)
                })
            }
            TokenizerKind::SentencePiece => sentencepiece::encode(self, text, out),
            TokenizerKind::RankedMerge => ranked_merge::encode(self, text, out),
        };
        if encoded.is_err() {
            out.truncate(start);
        }
        encoded
    }

    /// The bytes `token` stands for when it follows `prev` (spec/tokenizer.md, Decoding):
    /// SentencePiece with dummy prefix drops one leading space right after BOS, and a Byte token
    /// `<0xXX>` is the raw byte. Borrowed, never allocated. `InvalidTokenId` when out of range.
    pub fn decode(&self, prev: Option<u32>, token: u32) -> Result<&[u8]> {
        let mut piece = self.piece(token)?;
        if self.kind == TokenizerKind::SentencePiece {
            if self.add_dummy_prefix && prev.is_some() && prev == self.bos {
                if let Some(rest) = piece.strip_prefix(b" ") {
                    piece = rest;
                }
            }
            if self.types[token as usize] == TokenType::Byte {
                if let Some(b) = byte_piece_value(piece) {
                    piece = &ALL_BYTES[usize::from(b)..usize::from(b) + 1];
                }
            }
        }
        Ok(piece)
    }

    /// The piece of `id` as stored. `InvalidTokenId` when out of range.
    pub fn piece(&self, id: u32) -> Result<&[u8]> {
        self.pieces.get(id as usize).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidTokenId,
                format!("token id {id} is not below {}", self.vocab_size()),
            )
        })
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> u32 {
        self.pieces.len() as u32
    }

    /// The tokenizer kind.
    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// The BOS id, if any.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The EOS id, if any.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether prompts start with BOS by default (the vocabulary's `add_bos`).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether sampling `id` ends generation.
    pub fn is_stop(&self, id: u32) -> bool {
        self.stop.contains(&id)
    }
}

/// llama2.c run.c's `safe_printf` rule: a piece of exactly one byte is printed only if that byte
/// is C-locale `isprint` (0x20..=0x7E) or `isspace` (0x09..=0x0D, 0x20); an empty piece prints
/// nothing; longer pieces are printed. (run.c prints with `%s`, so it would also stop at a NUL
/// inside a longer piece; no piece of the reference vocabularies holds one.)
pub fn is_run_c_printable(piece: &[u8]) -> bool {
    match piece {
        [] => false,
        [b] => matches!(b, 0x20..=0x7e | 0x09..=0x0d),
        _ => true,
    }
}
