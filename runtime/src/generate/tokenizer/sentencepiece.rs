//! SentencePiece-style scored BPE (spec/tokenizer.md, SentencePiece): code points as initial
//! symbols, then repeatedly join the adjacent pair whose concatenation is the piece with the
//! highest score, the leftmost pair on ties; finally byte fallback for symbols that are no piece.
//!
//! Symbols are byte ranges of the text in a doubly linked list; candidate pairs wait in a binary
//! heap ordered by (score desc, left symbol asc) and are checked when popped (a pair whose
//! symbols changed since it was pushed is dropped). O(n log n) for n code points.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Ordering;

use super::table::NONE;
use super::{out_of_memory, try_reserve, Tokenizer};
use crate::error::Result;

/// A run of text bytes `start..end`; `end == start` once merged into its left neighbour.
struct Symbol {
    start: u32,
    end: u32,
    prev: u32,
    next: u32,
}

/// Two adjacent symbols whose concatenation (`len` bytes) is a piece with merge key `key`.
#[derive(PartialEq, Eq)]
struct Candidate {
    key: u32,
    left: u32,
    right: u32,
    len: u32,
}

impl Ord for Candidate {
    /// Greater = merged first: higher score, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .cmp(&other.key)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Maps a finite score to a u32 with the same order (-0.0 and +0.0 equal, as `>` compares them).
pub(super) fn score_key(score: f32) -> u32 {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Appends the ids of `text` (valid UTF-8, at most `MAX_PROMPT_BYTES`, dummy prefix already
/// added) to `out`, which has room for one id per byte. `OutOfMemory` when the symbols or the
/// candidate pairs cannot be allocated.
pub(super) fn encode(tok: &Tokenizer, text: &[u8], out: &mut Vec<u32>) -> Result<()> {
    // Text is at most MAX_PROMPT_BYTES + 1 bytes, so positions fit u32.
    let mut symbols: Vec<Symbol> = Vec::new();
    try_reserve(&mut symbols, text.len())?;
    let mut start = 0usize;
    while start < text.len() {
        let end = start + utf8_len(text[start]).min(text.len() - start);
        let index = symbols.len() as u32;
        symbols.push(Symbol {
            start: start as u32,
            end: end as u32,
            prev: if index == 0 { NONE } else { index - 1 },
            next: if end == text.len() { NONE } else { index + 1 },
        });
        start = end;
    }

    // The heap holds at most one pair per symbol at first; each merge pops one and pushes two.
    let mut pairs = Vec::new();
    try_reserve(&mut pairs, symbols.len())?;
    pairs.extend(
        (1..symbols.len() as u32)
            .filter_map(|right| candidate(tok, text, &symbols, right - 1, right)),
    );
    let mut heap = BinaryHeap::from(pairs);
    while let Some(c) = heap.pop() {
        let (l, r) = (&symbols[c.left as usize], &symbols[c.right as usize]);
        if l.start == l.end || r.start == r.end || l.next != c.right || r.end - l.start != c.len {
            continue; // stale: one side was merged since this pair was pushed
        }
        let (new_end, after) = (r.end, r.next);
        symbols[c.left as usize].end = new_end;
        symbols[c.left as usize].next = after;
        let right = &mut symbols[c.right as usize];
        right.end = right.start;
        if after != NONE {
            symbols[after as usize].prev = c.left;
        }
        let before = symbols[c.left as usize].prev;
        heap.try_reserve(2).map_err(|_| out_of_memory())?;
        if before != NONE {
            heap.extend(candidate(tok, text, &symbols, before, c.left));
        }
        if after != NONE {
            heap.extend(candidate(tok, text, &symbols, c.left, after));
        }
    }

    let mut at = if symbols.is_empty() { NONE } else { 0 };
    while at != NONE {
        let s = &symbols[at as usize];
        let bytes = &text[s.start as usize..s.end as usize];
        match tok.lookup(bytes) {
            Some(id) => out.push(id),
            None if tok.byte_fallback => {
                out.extend(bytes.iter().map(|&b| tok.byte_ids[b as usize]));
            }
            // `new` guarantees an unk id when there is no byte fallback.
            None => out.push(tok.unk.unwrap_or(NONE)),
        }
        at = s.next;
    }
    Ok(())
}

/// The pair (`left`, `right`) if their concatenation is a piece.
fn candidate(
    tok: &Tokenizer,
    text: &[u8],
    symbols: &[Symbol],
    left: u32,
    right: u32,
) -> Option<Candidate> {
    let start = symbols[left as usize].start as usize;
    let end = symbols[right as usize].end as usize;
    if end - start > tok.max_piece_len {
        return None;
    }
    let id = tok.lookup(&text[start..end])?;
    Some(Candidate {
        key: tok.score_keys[id as usize],
        left,
        right,
        len: (end - start) as u32,
    })
}

/// Length of the UTF-8 sequence starting with `lead` (the text is valid UTF-8).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}
