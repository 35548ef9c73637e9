//! The tokenizer section (spec/slm.md, Tokenizer): kind, special ids, flags, stop list, the
//! piece table and (ranked-merge BPE) the merge list. Structural rules only; the tokenizer checks
//! what its algorithms rely on when it is built.

use super::cursor::Cursor;
use super::vocab::{reserved, Pieces, TokenType, TokenizerKind, Vocab};
use crate::error::{Error, ErrorCode, Result};
use crate::limits;
use alloc::{format, vec::Vec};

/// Special id meaning "none".
pub const NONE_ID: u32 = u32::MAX;
pub const FLAG_ADD_BOS: u32 = 1;
pub const FLAG_DUMMY_PREFIX: u32 = 2;
pub const FLAG_BYTE_FALLBACK: u32 = 4;
const KNOWN_FLAGS: u32 = FLAG_ADD_BOS | FLAG_DUMMY_PREFIX | FLAG_BYTE_FALLBACK;

fn invalid(offset: u64, message: impl Into<alloc::string::String>) -> Error {
    Error::at(ErrorCode::InvalidTokenizer, offset, message)
}

/// Parses the section of a file whose header declares `vocab_size` tokens.
pub fn parse(bytes: &[u8], base: u64, vocab_size: u32) -> Result<Vocab> {
    let mut c = Cursor::new(bytes, base, "tokenizer section");
    let at = c.offset();
    let kind = match c.u32()? {
        1 => TokenizerKind::ByteLevel,
        2 => TokenizerKind::SentencePiece,
        3 => TokenizerKind::RankedMerge,
        other => {
            return Err(invalid(
                at,
                format!("tokenizer kind {other} is not 1, 2 or 3"),
            ))
        }
    };
    let at = c.offset();
    let n = c.u32()?;
    if n != vocab_size {
        return Err(invalid(
            at,
            format!("the tokenizer has {n} tokens; the header says vocab_size {vocab_size}"),
        ));
    }
    let mut specials = [None; 4];
    for (slot, name) in specials.iter_mut().zip(["bos", "eos", "pad", "unk"]) {
        let at = c.offset();
        let id = c.u32()?;
        if id != NONE_ID {
            if id >= n {
                return Err(Error::at(
                    ErrorCode::InvalidTokenId,
                    at,
                    format!("{name} id {id} is outside the vocabulary of {n}"),
                ));
            }
            *slot = Some(id);
        }
    }
    let at = c.offset();
    let flags = c.u32()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Error::at(
            ErrorCode::ReservedNonZero,
            at,
            format!("unknown tokenizer flag bits {:#x}", flags & !KNOWN_FLAGS),
        ));
    }
    let at = c.offset();
    let n_stop = c.u32()?;
    if n_stop > limits::MAX_STOP_TOKENS {
        return Err(Error::at(
            ErrorCode::LimitExceeded,
            at,
            format!(
                "{n_stop} stop tokens; the limit is {}",
                limits::MAX_STOP_TOKENS
            ),
        ));
    }
    let mut stop = Vec::with_capacity(n_stop as usize);
    for _ in 0..n_stop {
        let at = c.offset();
        let id = c.u32()?;
        if id >= n {
            return Err(Error::at(
                ErrorCode::InvalidTokenId,
                at,
                format!("stop token {id} is outside the vocabulary of {n}"),
            ));
        }
        if stop.contains(&id) {
            return Err(invalid(at, format!("stop token {id} is listed twice")));
        }
        stop.push(id);
    }
    let at = c.offset();
    let n_merges = c.u32()?;
    if n_merges > limits::MAX_MERGES {
        return Err(Error::at(
            ErrorCode::LimitExceeded,
            at,
            format!("{n_merges} merges; the limit is {}", limits::MAX_MERGES),
        ));
    }
    if n_merges != 0 && kind != TokenizerKind::RankedMerge {
        return Err(invalid(at, "only a ranked-merge tokenizer has merges"));
    }
    // Each token takes at least 7 bytes: refuse counts the section cannot hold before allocating.
    if (n as u64) * 7 > c.remaining() as u64 {
        return Err(Error::at(
            ErrorCode::Truncated,
            c.offset(),
            format!("the tokenizer section is too short for {n} tokens"),
        ));
    }
    // Two passes over the tokens: the first checks them and counts their piece bytes, the
    // second copies them into tables allocated exactly (one allocation for all pieces).
    let tokens_at = bytes.len() - c.remaining();
    let mut piece_bytes = 0usize;
    for id in 0..n {
        piece_bytes += token(&mut c, id)?.2.len();
    }
    let mut t = Cursor::new(
        &bytes[tokens_at..],
        base + tokens_at as u64,
        "tokenizer section",
    );
    let mut pieces = Pieces::with_capacity(n as usize, piece_bytes)?;
    let mut scores = reserved(n as usize)?;
    let mut types = reserved(n as usize)?;
    for id in 0..n {
        let (score, ty, piece) = token(&mut t, id)?;
        pieces.push(piece)?;
        scores.push(score);
        types.push(ty);
    }
    // Each merge takes 8 bytes: as for the tokens, refuse a count the section cannot hold before
    // allocating for it.
    if (n_merges as u64) * 8 > c.remaining() as u64 {
        return Err(Error::at(
            ErrorCode::Truncated,
            c.offset(),
            format!("the tokenizer section is too short for {n_merges} merges"),
        ));
    }
    let mut merges = reserved(n_merges as usize)?;
    for _ in 0..n_merges {
        let at = c.offset();
        let left = c.u32()?;
        let right = c.u32()?;
        if left >= n || right >= n {
            return Err(Error::at(
                ErrorCode::InvalidTokenId,
                at,
                format!("merge ({left}, {right}) names a token outside the vocabulary"),
            ));
        }
        merges.push((left, right));
    }
    c.finish()?;
    Ok(Vocab {
        kind,
        pieces,
        scores,
        types,
        merges,
        bos: specials[0],
        eos: specials[1],
        pad: specials[2],
        unk: specials[3],
        stop,
        add_bos: flags & FLAG_ADD_BOS != 0,
        add_dummy_prefix: flags & FLAG_DUMMY_PREFIX != 0,
        byte_fallback: flags & FLAG_BYTE_FALLBACK != 0,
    })
}

/// Reads and checks token `id`: its score, type and piece.
fn token<'a>(c: &mut Cursor<'a>, id: u32) -> Result<(f32, TokenType, &'a [u8])> {
    let at = c.offset();
    let score = c.f32()?;
    if !score.is_finite() {
        return Err(invalid(at, format!("token {id} has a non-finite score")));
    }
    let type_at = c.offset();
    let ty = TokenType::from_code(c.u8()?)
        .ok_or_else(|| invalid(type_at, format!("token {id} has an unknown type")))?;
    let len_at = c.offset();
    let len = c.u16()? as usize;
    if len > limits::MAX_PIECE_BYTES {
        return Err(Error::at(
            ErrorCode::LimitExceeded,
            len_at,
            format!(
                "token {id} has {len} bytes; the limit is {}",
                limits::MAX_PIECE_BYTES
            ),
        ));
    }
    Ok((score, ty, c.take(len)?))
}

/// Encodes a vocabulary; the result passes [`parse`] (checked).
pub fn encode(v: &Vocab) -> Result<Vec<u8>> {
    let n = v.pieces.len();
    if v.scores.len() != n || v.types.len() != n {
        return Err(Error::new(
            ErrorCode::InvalidTokenizer,
            "pieces, scores and types differ in length",
        ));
    }
    let n32 = u32::try_from(n)
        .map_err(|_| Error::new(ErrorCode::LimitExceeded, "vocabulary too large"))?;
    let mut out = Vec::new();
    let mut put = |x: u32| out.extend_from_slice(&x.to_le_bytes());
    put(v.kind as u32);
    put(n32);
    for s in [v.bos, v.eos, v.pad, v.unk] {
        put(s.unwrap_or(NONE_ID));
    }
    let flag = |on: bool, bit: u32| if on { bit } else { 0 };
    let flags = flag(v.add_bos, FLAG_ADD_BOS)
        | flag(v.add_dummy_prefix, FLAG_DUMMY_PREFIX)
        | flag(v.byte_fallback, FLAG_BYTE_FALLBACK);
    put(flags);
    put(v.stop.len() as u32);
    for &s in &v.stop {
        put(s);
    }
    put(v.merges.len() as u32);
    for ((piece, score), ty) in v.pieces.iter().zip(&v.scores).zip(&v.types) {
        if piece.len() > u16::MAX as usize {
            return Err(Error::new(ErrorCode::LimitExceeded, "token piece too long"));
        }
        out.extend_from_slice(&score.to_le_bytes());
        out.push(*ty as u8);
        out.extend_from_slice(&(piece.len() as u16).to_le_bytes());
        out.extend_from_slice(piece);
    }
    for &(l, r) in &v.merges {
        out.extend_from_slice(&l.to_le_bytes());
        out.extend_from_slice(&r.to_le_bytes());
    }
    parse(&out, 0, n32)?;
    Ok(out)
}
