//! Four-row interleaved q8_0 and q4_0 storage: how the wasm simd128 module holds a quantized
//! matrix in memory once its file is verified (spec/determinism.md, SIMD paths: Interleaved
//! rows). The file format and every result are unchanged; only where a row's blocks lie in memory
//! moves, and in q4_0 quads one bit of every odd code byte (see below).
//!
//! Rows go in groups of [`GROUP_ROWS`]; a whole group of `nb`-block rows (blocks of `bb` bytes: 34
//! for q8_0, 18 for q4_0, each an f16 scale then `c = bb − 2` code bytes) is stored as `nb`
//! *quads* of `4 bb` bytes ([`Q8_0_QUAD_BYTES`], [`Q4_0_QUAD_BYTES`]), quad `b` holding block `b`
//! of each of the four rows:
//!
//! | quad bytes | content |
//! |---|---|
//! | `2 i .. 2 i + 2` | the f16 scale of row `i` of the group |
//! | `8 + c i .. 8 + c (i + 1)` | the code bytes of row `i` of the group |
//!
//! A q4_0 quad holds every odd code byte with its top bit flipped ([`held_code`]), so that the
//! simd128 kernel reads a row's 16 code bytes as eight i16 lanes whose top nibble is already the
//! signed code `n − 8` (no `v128.xor` per row and block: q4_0 decode about 7 % faster under
//! wasmtime). Whatever takes a block out of a quad flips those bits back.
//!
//! A group occupies the bytes its four rows occupy in the file (`4 × bb × nb`), so rows past the
//! last whole group (and everything else in the file) stay where the file has them. The decode
//! kernel then reads one stream of quads with fixed offsets and the four scales in one load,
//! instead of four row streams (measured on the stories15M shape: q8_0 decode 15 to 23 % faster,
//! q4_0 8 to 10 %, and q4_0 29 to 32 % on stories42M, under wasmtime, Chromium and Firefox;
//! prefill unchanged).

use crate::format::dtype::{DType, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};
use crate::model::kernels::arrays;

/// Rows per interleaved group.
pub const GROUP_ROWS: usize = 4;

/// Where the four scales of a quad end and the code bytes begin.
pub const QUAD_CODES_AT: usize = 2 * GROUP_ROWS;

/// Bytes of a q8_0 quad: the same block of the four rows of a group.
pub const Q8_0_QUAD_BYTES: usize = GROUP_ROWS * Q8_0_BLOCK_BYTES;

/// Bytes of a q4_0 quad.
pub const Q4_0_QUAD_BYTES: usize = GROUP_ROWS * Q4_0_BLOCK_BYTES;

/// The block bytes of a dtype whose matrices may be held interleaved: q8_0 and q4_0.
pub fn block_bytes(dtype: DType) -> Option<usize> {
    match dtype {
        DType::Q8_0 | DType::Q4_0 => Some(dtype.block_bytes()),
        _ => None,
    }
}

/// How many of a matrix's `rows` rows lie in whole groups (from the first).
pub fn grouped_rows(rows: usize) -> usize {
    rows / GROUP_ROWS * GROUP_ROWS
}

/// Where row `i`'s scale and code bytes lie in a quad of `bb`-byte blocks.
fn fields(bb: usize, i: usize) -> (usize, usize) {
    (2 * i, QUAD_CODES_AT + (bb - 2) * i)
}

/// Code byte `j` of a block of `BB`-byte blocks as a quad holds it, from the file's byte `b`, and
/// back (its own inverse): q4_0's odd code bytes (j odd: high nibble `n` of element `j + 16`)
/// with the top bit flipped, `n ^ 8`, which read as a signed 4-bit field is `n − 8`; every other
/// byte as it is.
#[inline(always)]
pub const fn held_code<const BB: usize>(j: usize, b: u8) -> u8 {
    if BB == Q4_0_BLOCK_BYTES && j % 2 == 1 {
        b ^ 0x80
    } else {
        b
    }
}

/// Copies a block's code bytes between the file's order and a quad ([`held_code`], both ways).
#[inline(always)]
fn copy_codes<const BB: usize>(to: &mut [u8], from: &[u8]) {
    for (j, (t, &f)) in to.iter_mut().zip(from).enumerate() {
        *t = held_code::<BB>(j, f);
    }
}

/// Rearranges the whole groups of a matrix of `bb`-byte blocks (34 or 18: q8_0 or q4_0;
/// `rb`-byte rows, a whole number of blocks) from the file's order into quads, in place (q4_0's
/// odd code bytes flipped as [`held_code`] says). `tmp` is
/// at least `4 × rb` bytes long (the caller's one allocation); another block size, a shorter
/// `tmp` or a row length that is not a whole number of blocks leave `bytes` as they are and
/// return `false`.
pub fn interleave(bytes: &mut [u8], rb: usize, bb: usize, tmp: &mut [u8]) -> bool {
    match bb {
        Q8_0_BLOCK_BYTES => interleave_blocks::<Q8_0_BLOCK_BYTES>(bytes, rb, tmp),
        Q4_0_BLOCK_BYTES => interleave_blocks::<Q4_0_BLOCK_BYTES>(bytes, rb, tmp),
        _ => false,
    }
}

/// [`interleave`] for `BB`-byte blocks (every copy of a known length).
fn interleave_blocks<const BB: usize>(bytes: &mut [u8], rb: usize, tmp: &mut [u8]) -> bool {
    let group = rb.saturating_mul(GROUP_ROWS);
    if rb == 0 || !rb.is_multiple_of(BB) || tmp.len() < group {
        return false;
    }
    let tmp = &mut tmp[..group];
    for g in bytes.chunks_exact_mut(group) {
        tmp.copy_from_slice(g);
        let rows: [&[u8]; GROUP_ROWS] = core::array::from_fn(|i| &tmp[i * rb..(i + 1) * rb]);
        let [r0, r1, r2, r3] = rows.map(|r| arrays::<u8, BB>(r).0);
        for (quad, (((b0, b1), b2), b3)) in g
            .chunks_exact_mut(GROUP_ROWS * BB)
            .zip(r0.zip(r1).zip(r2).zip(r3))
        {
            for (i, blk) in [b0, b1, b2, b3].into_iter().enumerate() {
                let (scale, codes) = fields(BB, i);
                quad[scale..scale + 2].copy_from_slice(&blk[..2]);
                copy_codes::<BB>(&mut quad[codes..codes + BB - 2], &blk[2..]);
            }
        }
    }
    true
}

/// Block `i` (< 4) of a quad of `BB`-byte blocks (`quad` is `4 BB` bytes long), as the file
/// stores it (scale, then code bytes).
#[inline(always)]
fn quad_block<const BB: usize>(quad: &[u8], i: usize) -> [u8; BB] {
    let (scale, codes) = fields(BB, i % GROUP_ROWS);
    let mut blk = [0u8; BB];
    blk[..2].copy_from_slice(&quad[scale..scale + 2]);
    copy_codes::<BB>(&mut blk[2..], &quad[codes..codes + BB - 2]);
    blk
}

/// The blocks of row `r` of an interleaved matrix of `BB`-byte blocks (`bytes`, `rb`-byte rows,
/// `r` below the matrix's rows), each as the file stores it, in order.
pub fn row_blocks<const BB: usize>(
    bytes: &[u8],
    rb: usize,
    r: usize,
) -> impl Iterator<Item = [u8; BB]> + '_ {
    let group = rb.saturating_mul(GROUP_ROWS);
    let grouped = bytes.len().checked_div(group).unwrap_or(0) * GROUP_ROWS;
    let (quads, row): (&[u8], &[u8]) = if r < grouped {
        (&bytes[r / GROUP_ROWS * group..][..group], &[])
    } else {
        (&[], bytes.get(r * rb..r * rb + rb).unwrap_or(&[]))
    };
    let interleaved = quads
        .chunks_exact(GROUP_ROWS * BB)
        .map(move |q| quad_block::<BB>(q, r));
    interleaved.chain(arrays::<u8, BB>(row).0.copied())
}

/// Writes the file's order of an interleaved matrix of `bb`-byte blocks (34 or 18: q8_0 or
/// q4_0; `bytes`, `rb`-byte rows) into `out` (as long as `bytes`) and returns `true`; another
/// block size, a row length that is not a whole number of blocks or an `out` of another length
/// leave `out` as it is and return `false`.
pub fn deinterleave_into(bytes: &[u8], rb: usize, bb: usize, out: &mut [u8]) -> bool {
    match bb {
        Q8_0_BLOCK_BYTES => deinterleave_blocks::<Q8_0_BLOCK_BYTES>(bytes, rb, out),
        Q4_0_BLOCK_BYTES => deinterleave_blocks::<Q4_0_BLOCK_BYTES>(bytes, rb, out),
        _ => false,
    }
}

/// [`deinterleave_into`] for `BB`-byte blocks.
fn deinterleave_blocks<const BB: usize>(bytes: &[u8], rb: usize, out: &mut [u8]) -> bool {
    let group = rb.saturating_mul(GROUP_ROWS);
    if rb == 0 || !rb.is_multiple_of(BB) || out.len() != bytes.len() {
        return false;
    }
    out.copy_from_slice(bytes);
    for (g, held) in out.chunks_exact_mut(group).zip(bytes.chunks_exact(group)) {
        for (b, quad) in held.chunks_exact(GROUP_ROWS * BB).enumerate() {
            for i in 0..GROUP_ROWS {
                let blk = &mut g[i * rb + b * BB..][..BB];
                blk.copy_from_slice(&quad_block::<BB>(quad, i));
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{vec, vec::Vec};

    /// A matrix whose every byte says where the file has it.
    fn numbered(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn check<const BB: usize>() {
        for rows in 0..11 {
            for nb in 1..4 {
                let rb = nb * BB;
                let file = numbered(rows * rb);
                let mut m = file.clone();
                let mut tmp = vec![0u8; 4 * rb];
                assert!(interleave(&mut m, rb, BB, &mut tmp));
                let grouped = grouped_rows(rows);
                // Rows past the last whole group are untouched.
                assert_eq!(m[grouped * rb..], file[grouped * rb..]);
                for r in 0..rows {
                    let want: Vec<[u8; BB]> = file[r * rb..(r + 1) * rb]
                        .chunks_exact(BB)
                        .map(|c| c.try_into().unwrap())
                        .collect();
                    let got: Vec<[u8; BB]> = row_blocks::<BB>(&m, rb, r).collect();
                    assert_eq!(got, want, "{BB}: rows {rows} nb {nb} row {r}");
                    if r < grouped {
                        // Quad b of the group: scale of row i at 2i, codes at 8 + (BB - 2) i.
                        let (g, i, c) = (r / 4, r % 4, BB - 2);
                        for (b, blk) in want.iter().enumerate() {
                            let q = &m[g * 4 * rb + b * 4 * BB..][..4 * BB];
                            assert_eq!(q[2 * i..2 * i + 2], blk[..2]);
                            let held: Vec<u8> = (blk[2..].iter().enumerate())
                                .map(|(j, &b)| held_code::<BB>(j, b))
                                .collect();
                            assert_eq!(q[8 + c * i..8 + c * (i + 1)], held[..]);
                        }
                    }
                }
                let mut back = vec![0u8; m.len()];
                assert!(deinterleave_into(&m, rb, BB, &mut back));
                assert_eq!(back, file);
            }
        }
    }

    #[test]
    fn quads_hold_the_four_rows_blocks_and_the_rest_stays() {
        check::<Q8_0_BLOCK_BYTES>();
        check::<Q4_0_BLOCK_BYTES>();
        assert_eq!(block_bytes(DType::Q8_0), Some(Q8_0_BLOCK_BYTES));
        assert_eq!(block_bytes(DType::Q4_0), Some(Q4_0_BLOCK_BYTES));
        assert_eq!(block_bytes(DType::F16), None);
        assert_eq!(block_bytes(DType::F32), None);
    }

    #[test]
    fn a_short_scratch_or_a_partial_block_changes_nothing() {
        let file = numbered(8 * 36);
        let mut m = file.clone();
        assert!(!interleave(&mut m, 36, 18, &mut [0u8; 143]));
        assert!(!interleave(&mut m, 35, 18, &mut [0u8; 4 * 35]));
        assert!(!interleave(&mut m, 36, 2, &mut [0u8; 4 * 36]));
        assert!(!interleave(&mut m, 0, 18, &mut []));
        assert_eq!(m, file);
        let mut out = vec![7u8; m.len()];
        assert!(!deinterleave_into(&m, 35, 18, &mut out));
        assert!(!deinterleave_into(&m, 36, 18, &mut out[1..]));
        assert!(!deinterleave_into(&m, 36, 12, &mut out));
        assert!(out.iter().all(|&b| b == 7));
    }

    #[test]
    fn q4_0_quads_hold_odd_code_bytes_with_the_top_bit_flipped() {
        // The high nibble 0x9 of an odd byte is held as 0x1: read as a signed 4-bit field, 1 =
        // 9 − 8.
        assert_eq!(held_code::<Q4_0_BLOCK_BYTES>(1, 0x9a), 0x1a);
        assert_eq!(held_code::<Q4_0_BLOCK_BYTES>(15, 0x1a), 0x9a);
        assert_eq!(held_code::<Q4_0_BLOCK_BYTES>(0, 0x9a), 0x9a);
        assert_eq!(held_code::<Q4_0_BLOCK_BYTES>(14, 0x9a), 0x9a);
        assert_eq!(held_code::<Q8_0_BLOCK_BYTES>(1, 0x9a), 0x9a);
        for j in 0..16 {
            for b in 0..=255u8 {
                assert_eq!(held_code::<18>(j, held_code::<18>(j, b)), b);
            }
        }
    }
}
