//! Reader for llama2.c's `tokenizer.bin` (karpathy/llama2.c, run.c `build_tokenizer`): a strict
//! parse into a SentencePiece [`Vocab`] that encodes and decodes as run.c does.
//!
//! Layout, little-endian: `i32 max_token_length`, then for each of the `vocab_size` tokens
//! (`vocab_size` comes from the checkpoint header, not this file): `f32 score`, `i32 len`,
//! `len` bytes of piece. Nothing may follow the last token.

use anyhow::{bail, ensure, Context, Result};
use runtime::format::{Pieces, TokenType, TokenizerKind, Vocab};
use runtime::limits;

/// llama2.c's fixed special ids: `<unk>`, BOS, EOS, then the 256 byte tokens `<0x00>`..`<0xFF>`.
const UNK: u32 = 0;
const BOS: u32 = 1;
const EOS: u32 = 2;
const FIRST_BYTE: u32 = 3;
const LAST_BYTE: u32 = FIRST_BYTE + 255;

/// A cursor over the file that reports the offset of whatever it fails to read.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            bail!(
                "truncated: {what} needs {n} bytes at offset {} but the file has {}",
                self.at,
                self.bytes.len()
            );
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f32(&mut self, what: &str) -> Result<f32> {
        let b = self.take(4, what)?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Parses `bytes` as a llama2.c `tokenizer.bin` of `vocab_size` tokens and maps it to the
/// vocabulary run.c behaves as: unk 0 (type Unknown), bos 1 and eos 2 (Control), ids 3..=258 the
/// Byte pieces `<0xXX>` (checked), the rest Normal; add_bos, add_dummy_prefix and byte_fallback
/// set; stop = [1] (run.c stops when the model emits BOS).
///
/// Rejects: a vocabulary size outside 259..=`MAX_VOCAB`; a negative or over-`MAX_PIECE_BYTES`
/// `max_token_length`; truncation; a negative piece length or one above `max_token_length`;
/// a non-finite score; a byte token that is not `<0xXX>`; trailing bytes.
pub fn read_tokenizer_bin(bytes: &[u8], vocab_size: u32) -> Result<Vocab> {
    ensure!(
        (LAST_BYTE + 1..=limits::MAX_VOCAB).contains(&vocab_size),
        "vocab_size {vocab_size} is not in {}..={} (llama2.c needs <unk>, <s>, </s> and 256 byte tokens)",
        LAST_BYTE + 1,
        limits::MAX_VOCAB
    );
    let mut r = Reader { bytes, at: 0 };
    let max_len = r.i32("max_token_length")?;
    ensure!(
        (0..=limits::MAX_PIECE_BYTES as i64).contains(&i64::from(max_len)),
        "max_token_length {max_len} is not in 0..={}",
        limits::MAX_PIECE_BYTES
    );
    let n = vocab_size as usize;
    let mut pieces = Pieces::with_capacity(n, 0).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut scores = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for id in 0..vocab_size {
        let offset = r.at;
        let score = r.f32("score")?;
        ensure!(
            score.is_finite(),
            "token {id} (offset {offset}): score {score} is not finite"
        );
        let len = r.i32("piece length")?;
        ensure!(
            (0..=max_len).contains(&len),
            "token {id} (offset {}): piece length {len} is not in 0..={max_len} (max_token_length)",
            offset + 4
        );
        let piece = r
            .take(len as usize, "piece")
            .with_context(|| format!("token {id}"))?;
        let ty = match id {
            UNK => TokenType::Unknown,
            BOS | EOS => TokenType::Control,
            FIRST_BYTE..=LAST_BYTE => {
                let byte = id - FIRST_BYTE;
                ensure!(
                    piece == format!("<0x{byte:02X}>").as_bytes(),
                    "token {id} must be the byte token <0x{byte:02X}>, found {:?}",
                    String::from_utf8_lossy(piece)
                );
                TokenType::Byte
            }
            _ => TokenType::Normal,
        };
        pieces.push(piece).map_err(|e| anyhow::anyhow!("{e}"))?;
        scores.push(score);
        types.push(ty);
    }
    ensure!(
        r.at == bytes.len(),
        "{} trailing bytes after token {} at offset {}: the file holds more than the model's \
         {vocab_size} tokens, or other bytes (the tokenizer of another model?)",
        bytes.len() - r.at,
        vocab_size - 1,
        r.at
    );
    Ok(Vocab {
        kind: TokenizerKind::SentencePiece,
        pieces,
        scores,
        types,
        merges: Vec::new(),
        bos: Some(BOS),
        eos: Some(EOS),
        pad: None,
        unk: Some(UNK),
        stop: vec![BOS],
        add_bos: true,
        add_dummy_prefix: true,
        byte_fallback: true,
    })
}
