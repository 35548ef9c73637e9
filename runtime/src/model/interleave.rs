//! Four-row interleaved q4_0 storage: how the wasm simd128 module holds a q4_0 matrix in memory
//! once its file is verified (spec/determinism.md, SIMD paths: Interleaved q4_0 rows). The file
//! format and every result are unchanged; only where a row's blocks lie in memory moves.
//!
//! Rows go in groups of [`GROUP_ROWS`]; a whole group of `nb`-block rows is stored as `nb`
//! *quads* of [`QUAD_BYTES`] bytes, quad `b` holding block `b` of each of the four rows:
//!
//! | quad bytes | content |
//! |---|---|
//! | `2 i .. 2 i + 2` | the f16 scale of row `i` of the group |
//! | `8 + 16 i .. 24 + 16 i` | the 16 code bytes of row `i` of the group |
//!
//! A group occupies the bytes its four rows occupy in the file (`4 × 18 × nb`), so rows past the
//! last whole group (and everything else in the file) stay where the file has them. The decode
//! kernel then reads one stream of quads with fixed offsets and the four scales in one load,
//! instead of four row streams (measured: q4_0 decode 8 to 10 % faster on the stories15M shape,
//! 29 to 32 % on stories42M, under wasmtime, Chromium and Firefox; prefill unchanged).

use crate::format::dtype::Q4_0_BLOCK_BYTES;

/// Rows per interleaved group.
pub const GROUP_ROWS: usize = 4;

/// Bytes of one quad: the same block of the four rows of a group.
pub const QUAD_BYTES: usize = GROUP_ROWS * Q4_0_BLOCK_BYTES;

/// Where the four scales of a quad end and the code bytes begin.
pub const QUAD_CODES_AT: usize = 2 * GROUP_ROWS;

/// Code bytes per block (two 4-bit codes each).
const CODE_BYTES: usize = Q4_0_BLOCK_BYTES - 2;

const _: () = assert!(QUAD_CODES_AT + GROUP_ROWS * CODE_BYTES == QUAD_BYTES);

/// How many of a matrix's `rows` rows lie in whole groups (from the first).
pub fn grouped_rows(rows: usize) -> usize {
    rows / GROUP_ROWS * GROUP_ROWS
}

/// Rearranges the whole groups of a q4_0 matrix (`rb`-byte rows, a whole number of blocks)
/// from the file's order into quads, in place. `tmp` is at least `4 × rb` bytes long (the
/// caller's one allocation); a shorter `tmp` or a row length that is not a whole number of
/// blocks leaves `bytes` as they are and returns `false`.
pub fn interleave(bytes: &mut [u8], rb: usize, tmp: &mut [u8]) -> bool {
    let group = rb * GROUP_ROWS;
    if rb == 0 || !rb.is_multiple_of(Q4_0_BLOCK_BYTES) || tmp.len() < group {
        return false;
    }
    let tmp = &mut tmp[..group];
    for g in bytes.chunks_exact_mut(group) {
        tmp.copy_from_slice(g);
        for (b, quad) in g.chunks_exact_mut(QUAD_BYTES).enumerate() {
            for i in 0..GROUP_ROWS {
                let blk = &tmp[i * rb + b * Q4_0_BLOCK_BYTES..][..Q4_0_BLOCK_BYTES];
                quad[2 * i..2 * i + 2].copy_from_slice(&blk[..2]);
                quad[QUAD_CODES_AT + CODE_BYTES * i..][..CODE_BYTES].copy_from_slice(&blk[2..]);
            }
        }
    }
    true
}

/// Block `b` of row `i` (< 4) of a quad, as the file stores it (scale, then code bytes).
#[inline(always)]
pub fn quad_block(quad: &[u8; QUAD_BYTES], i: usize) -> [u8; Q4_0_BLOCK_BYTES] {
    let i = i % GROUP_ROWS;
    let mut blk = [0u8; Q4_0_BLOCK_BYTES];
    blk[..2].copy_from_slice(&quad[2 * i..2 * i + 2]);
    blk[2..].copy_from_slice(&quad[QUAD_CODES_AT + CODE_BYTES * i..][..CODE_BYTES]);
    blk
}

/// The blocks of row `r` of an interleaved q4_0 matrix (`bytes`, `rb`-byte rows, `r` below the
/// matrix's rows), each as the file stores it, in order.
pub fn row_blocks(
    bytes: &[u8],
    rb: usize,
    r: usize,
) -> impl Iterator<Item = [u8; Q4_0_BLOCK_BYTES]> + '_ {
    let group = rb * GROUP_ROWS;
    let grouped = bytes.len().checked_div(group).unwrap_or(0) * GROUP_ROWS;
    let (quads, row): (&[u8], &[u8]) = if r < grouped {
        (&bytes[r / GROUP_ROWS * group..][..group], &[])
    } else {
        (&[], bytes.get(r * rb..r * rb + rb).unwrap_or(&[]))
    };
    let interleaved = crate::model::kernels::arrays::<u8, QUAD_BYTES>(quads)
        .0
        .map(move |q| quad_block(q, r));
    let plain = crate::model::kernels::arrays::<u8, Q4_0_BLOCK_BYTES>(row)
        .0
        .copied();
    interleaved.chain(plain)
}

/// Writes the file's order of an interleaved q4_0 matrix (`bytes`, `rb`-byte rows) into `out`
/// (as long as `bytes`).
pub fn deinterleave_into(bytes: &[u8], rb: usize, out: &mut [u8]) {
    if rb == 0 || out.len() != bytes.len() {
        return;
    }
    for (r, row) in out.chunks_exact_mut(rb).enumerate() {
        for (dst, blk) in row
            .chunks_exact_mut(Q4_0_BLOCK_BYTES)
            .zip(row_blocks(bytes, rb, r))
        {
            dst.copy_from_slice(&blk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{vec, vec::Vec};

    /// A matrix whose every byte says where the file has it.
    fn numbered(rows: usize, nb: usize) -> Vec<u8> {
        (0..rows * nb * Q4_0_BLOCK_BYTES)
            .map(|i| (i % 251) as u8)
            .collect()
    }

    #[test]
    fn quads_hold_the_four_rows_blocks_and_the_rest_stays() {
        for rows in 0..11 {
            for nb in 1..4 {
                let rb = nb * Q4_0_BLOCK_BYTES;
                let file = numbered(rows, nb);
                let mut m = file.clone();
                let mut tmp = vec![0u8; 4 * rb];
                assert!(interleave(&mut m, rb, &mut tmp));
                let grouped = grouped_rows(rows);
                // Rows past the last whole group are untouched.
                assert_eq!(m[grouped * rb..], file[grouped * rb..]);
                for r in 0..rows {
                    let want: Vec<[u8; 18]> = file[r * rb..(r + 1) * rb]
                        .chunks_exact(18)
                        .map(|c| c.try_into().unwrap())
                        .collect();
                    let got: Vec<[u8; 18]> = row_blocks(&m, rb, r).collect();
                    assert_eq!(got, want, "rows {rows} nb {nb} row {r}");
                    if r < grouped {
                        // Quad b of the group: scale of row i at 2i, codes at 8 + 16i.
                        let (g, i) = (r / 4, r % 4);
                        for (b, blk) in want.iter().enumerate() {
                            let q = &m[g * 4 * rb + b * QUAD_BYTES..][..QUAD_BYTES];
                            assert_eq!(q[2 * i..2 * i + 2], blk[..2]);
                            assert_eq!(q[8 + 16 * i..24 + 16 * i], blk[2..]);
                        }
                    }
                }
                let mut back = vec![0u8; m.len()];
                deinterleave_into(&m, rb, &mut back);
                assert_eq!(back, file);
            }
        }
    }

    #[test]
    fn a_short_scratch_or_a_partial_block_changes_nothing() {
        let file = numbered(8, 2);
        let mut m = file.clone();
        assert!(!interleave(&mut m, 36, &mut [0u8; 143]));
        assert!(!interleave(&mut m, 35, &mut [0u8; 4 * 35]));
        assert!(!interleave(&mut m, 0, &mut []));
        assert_eq!(m, file);
    }
}
