//! Ranked-merge BPE (spec/tokenizer.md, RankedMerge): every byte starts as its single-byte piece,
//! then the applicable merge of lowest rank is applied, the leftmost pair on ties, until none
//! applies. Same linked list + heap with lazy invalidation as the SentencePiece encoder.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Ordering;

use super::table::NONE;
use super::{out_of_memory, try_reserve, Tokenizer};
use crate::error::Result;

/// A symbol: its token id, and its neighbours; `id == NONE` once merged into its left neighbour.
struct Symbol {
    id: u32,
    prev: u32,
    next: u32,
}

/// Adjacent symbols `left` (holding `left_id`) and `right` (holding `right_id`) that a merge of
/// rank `rank` joins into `result`.
#[derive(PartialEq, Eq)]
struct Candidate {
    rank: u32,
    left: u32,
    right: u32,
    left_id: u32,
    right_id: u32,
    result: u32,
}

impl Ord for Candidate {
    /// Greater = applied first: lower rank, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Appends the ids of `text` (at most `MAX_PROMPT_BYTES`) to `out`, which has room for one id
/// per byte. `OutOfMemory` when the symbols or the candidate pairs cannot be allocated.
pub(super) fn encode(tok: &Tokenizer, text: &[u8], out: &mut Vec<u32>) -> Result<()> {
    let n = text.len() as u32;
    let mut symbols: Vec<Symbol> = Vec::new();
    try_reserve(&mut symbols, text.len())?;
    symbols.extend((0..n).map(|i| Symbol {
        id: tok.byte_ids[text[i as usize] as usize],
        prev: if i == 0 { NONE } else { i - 1 },
        next: if i + 1 == n { NONE } else { i + 1 },
    }));

    // As in the SentencePiece encoder: one pair per symbol at first, two more per merge.
    let mut pairs = Vec::new();
    try_reserve(&mut pairs, symbols.len())?;
    pairs.extend((1..n).filter_map(|right| candidate(tok, &symbols, right - 1, right)));
    let mut heap = BinaryHeap::from(pairs);
    while let Some(c) = heap.pop() {
        let (l, r) = (&symbols[c.left as usize], &symbols[c.right as usize]);
        // A symbol's id only changes to a longer piece, so equal ids mean unchanged symbols.
        if l.id != c.left_id || r.id != c.right_id || l.next != c.right {
            continue;
        }
        let after = r.next;
        symbols[c.right as usize].id = NONE;
        let left = &mut symbols[c.left as usize];
        left.id = c.result;
        left.next = after;
        let before = left.prev;
        heap.try_reserve(2).map_err(|_| out_of_memory())?;
        if after != NONE {
            symbols[after as usize].prev = c.left;
            heap.extend(candidate(tok, &symbols, c.left, after));
        }
        if before != NONE {
            heap.extend(candidate(tok, &symbols, before, c.left));
        }
    }

    let mut at = if symbols.is_empty() { NONE } else { 0 };
    while at != NONE {
        let s = &symbols[at as usize];
        out.push(s.id);
        at = s.next;
    }
    Ok(())
}

/// The pair (`left`, `right`) if a merge joins their ids.
fn candidate(tok: &Tokenizer, symbols: &[Symbol], left: u32, right: u32) -> Option<Candidate> {
    let (left_id, right_id) = (symbols[left as usize].id, symbols[right as usize].id);
    let merge = tok.merges.get(left_id, right_id)?;
    Some(Candidate {
        rank: merge.rank,
        left,
        right,
        left_id,
        right_id,
        result: merge.result,
    })
}
