//! Memory headroom (spec/abi.md, Memory). Most of the runtime allocates fallibly, but some small
//! allocations cannot (an error message, a node of the buffer map, a model's small tables): at the memory limit they would trap. So a call that grew memory checks
//! that [`limits::ABI_HEADROOM_BYTES`] more could still be obtained, and one that builds a model
//! first checks that its tables fit ([`for_model`]); when not, the call is undone and fails with
//! `OutOfMemory`. The probe's memory goes back to the allocator, which keeps it for those
//! small allocations (wasm memory never shrinks).

use crate::error::{Error, ErrorCode, Result};
use crate::format::{digest, header, TensorEntry, TokenType};
use crate::limits;
use crate::model::weights::{LayerLocs, TensorInfo};
use alloc::vec::Vec;
use core::mem::size_of;

/// `OutOfMemory` with a fixed message (building it allocates little).
pub fn out_of_memory() -> Error {
    Error::new(
        ErrorCode::OutOfMemory,
        "not enough memory left after this call",
    )
}

/// Whether `bytes` more could be allocated now, in pieces of at most
/// [`limits::ABI_PROBE_PIECE_BYTES`]. Allocated piece by piece, the probe takes the free memory
/// the allocator already holds before it grows the memory, and then grows it little by little:
/// one allocation of `bytes` would grow the memory by all of them whenever the free memory at its
/// top is smaller, and that free memory would stay unused above it. Everything the probe obtains
/// counts for the small allocations the headroom is for; the large ones are fallible.
pub fn available(bytes: usize) -> bool {
    let mut held: Vec<Vec<u8>> = Vec::new();
    if held
        .try_reserve_exact(bytes.div_ceil(limits::ABI_PROBE_PIECE_BYTES))
        .is_err()
    {
        return false;
    }
    let mut left = bytes;
    while left > 0 {
        let size = left.min(limits::ABI_PROBE_PIECE_BYTES);
        let mut piece: Vec<u8> = Vec::new();
        if piece.try_reserve_exact(size).is_err() {
            return false;
        }
        held.push(piece);
        left -= size;
    }
    true
}

/// The memory to have obtainable before building the model in `file`: an upper bound of what
/// the build allocates (the parsed vocabulary, the tokenizer's tables, the directory and layer
/// tables, all live together, the digest verification's chunk tables, and the fixed part that
/// also covers a failed build's message), derived from the header's vocab_size and layer count,
/// the tokenizer section's length and merge count, the directory's length and the file's
/// length. The headroom is not added: the activation that
/// follows a build checks it, and the vocabulary the build frees leaves room for the messages
/// in between. The probed memory goes back to the allocator and the build takes it, so on wasm
/// the probe grows memory little beyond what the load needs anyway. A file whose header does
/// not parse needs only the fixed part (building it fails at once).
pub fn for_model(file: &[u8]) -> usize {
    let Some(h) = file
        .get(..limits::HEADER_BYTES)
        .and_then(|b| header::parse_header(b, file.len() as u64).ok())
    else {
        return limits::MODEL_BUILD_FIXED_BYTES;
    };
    let section = h.sections.tokenizer;
    let tokenizer_bytes = usize::try_from(section.length).unwrap_or(usize::MAX);
    let directory = usize::try_from(h.sections.directory.length).unwrap_or(usize::MAX);
    // The reader refuses a count of tokens or merges the section cannot hold (at least 7 and 8
    // bytes each, spec/slm.md) before allocating for it; piece bytes are what remains.
    let tokens = (h.config.vocab_size as usize).min(tokenizer_bytes / 7);
    let piece_bytes = tokenizer_bytes.saturating_sub(7 * tokens);
    let merges = usize::try_from(section.offset)
        .ok()
        .and_then(|at| file.get(at..at.checked_add(tokenizer_bytes)?))
        .and_then(declared_merges)
        .map_or(0, |m| m.min(tokenizer_bytes / 8));
    // A directory entry takes at least 57 bytes (spec/slm.md): a bound on the tensor count.
    let tensors = directory / 57;
    // Verifying the tensor digests: every chunk of every payload (each payload has at most one
    // partial chunk), freed before the tables are built (counted on top, an upper bound).
    let chunks = (file.len() / limits::DIGEST_CHUNK_BYTES).saturating_add(tensors);
    [
        (tokens, BYTES_PER_TOKEN),
        (piece_bytes, 2),
        (merges, BYTES_PER_MERGE),
        (tensors, BYTES_PER_TENSOR),
        (tensors, digest::SCRATCH_BYTES_PER_PAYLOAD),
        (chunks, digest::SCRATCH_BYTES_PER_CHUNK),
        (h.config.n_layers as usize, BYTES_PER_LAYER),
        (1, limits::MODEL_BUILD_FIXED_BYTES),
        // The simd128 module's interleaving of q8_0/q4_0 rows (model/interleave.rs): its
        // scratch and the offsets of the payloads it rearranged (a layer's seven matrices and
        // the classifier).
        (usize::from(INTERLEAVES), INTERLEAVE_FIXED_BYTES),
        (
            h.config.n_layers as usize * usize::from(INTERLEAVES),
            7 * size_of::<usize>(),
        ),
    ]
    .iter()
    .fold(0usize, |sum, &(count, each)| {
        sum.saturating_add(count.saturating_mul(each))
    })
}

/// Whether a model's load may interleave q8_0/q4_0 rows (the wasm simd128 module).
const INTERLEAVES: bool = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));

/// The interleaving's fixed part: its scratch, the classifier's offset, and the two
/// allocations' overhead.
const INTERLEAVE_FIXED_BYTES: usize =
    limits::INTERLEAVE_MAX_GROUP_BYTES + size_of::<usize>() + 2 * ALLOCATION_OVERHEAD;

/// What one allocation may cost beyond its bytes (header, rounding, minimum chunk).
const ALLOCATION_OVERHEAD: usize = limits::ALLOCATION_OVERHEAD_WORDS * size_of::<usize>();

/// Build memory per token (its piece bytes are counted apart): in the vocabulary its piece's
/// offset, score and type; in the tokenizer its offset, its lookup slots (one and a half per
/// token; the table's least 16 slots are in the fixed part, runtime/src/generate/tokenizer/
/// table.rs), type and score key.
const BYTES_PER_TOKEN: usize = size_of::<u32>()
    + size_of::<f32>()
    + size_of::<TokenType>()
    + size_of::<u32>()
    + 3 * size_of::<(u32, u32)>() / 2
    + size_of::<TokenType>()
    + size_of::<u32>();

/// Build memory per ranked merge: the vocabulary's pair, the checked triple and the merge
/// table's slots (one and a half per merge).
const BYTES_PER_MERGE: usize = size_of::<(u32, u32)>()
    + size_of::<(u32, u32, u32)>()
    + 3 * size_of::<(u32, u32, u32, u32)>() / 2;

/// Build memory per tensor: its directory entry and its description with an owned name.
const BYTES_PER_TENSOR: usize = size_of::<TensorEntry<'static>>()
    + size_of::<TensorInfo>()
    + limits::MAX_TENSOR_NAME_BYTES
    + ALLOCATION_OVERHEAD;

/// Build memory per layer: its tensor locations and the names looked up for it.
const BYTES_PER_LAYER: usize =
    size_of::<LayerLocs>() + 9 * (limits::MAX_TENSOR_NAME_BYTES + ALLOCATION_OVERHEAD);

/// The merge count a tokenizer section declares (u32 at 32 + 4 × n_stop, spec/slm.md), when
/// it can be read and its stop count is within the limit (otherwise the reader fails before it
/// allocates for merges).
fn declared_merges(section: &[u8]) -> Option<usize> {
    let u32_at = |at: usize| -> Option<u32> {
        let b = section.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let n_stop = u32_at(28).filter(|&n| n <= limits::MAX_STOP_TOKENS)?;
    let n_merges = u32_at(32 + 4 * n_stop as usize)?;
    Some(n_merges.min(limits::MAX_MERGES) as usize)
}

/// Checks that the model in `file` can be built ([`for_model`]).
pub fn ensure_for_model(file: &[u8]) -> Result<()> {
    if available(for_model(file)) {
        Ok(())
    } else {
        Err(out_of_memory())
    }
}

#[cfg(test)]
mod tests {
    //! The build probe against what building allocates, counted by a global allocator in the
    //! runtime's test binary (requested sizes, per thread; the bound also covers the allocator's
    //! own overhead).

    use super::*;
    use crate::model::Model;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Counting;

    std::thread_local! {
        static LIVE: Cell<usize> = const { Cell::new(0) };
        static PEAK: Cell<usize> = const { Cell::new(0) };
    }

    fn grow(bytes: usize) {
        let _ = LIVE.try_with(|l| {
            l.set(l.get() + bytes);
            let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
        });
    }

    fn shrink(bytes: usize) {
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(bytes)));
    }

    // SAFETY: every call forwards to the system allocator with the caller's arguments unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            grow(layout.size());
            System.alloc(layout)
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            grow(layout.size());
            System.alloc_zeroed(layout)
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // The old and the new block may both be live while the bytes move.
            grow(new_size);
            shrink(layout.size());
            System.realloc(ptr, layout, new_size)
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            shrink(layout.size());
            System.dealloc(ptr, layout)
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// The most bytes live at once while `file` is built into a model, beyond its bytes.
    fn build_peak(file: &[u8]) -> usize {
        let bytes = file.to_vec();
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let model = Model::load(bytes).expect("the model loads");
        let peak = PEAK.with(Cell::get) - base;
        drop(model);
        peak
    }

    #[test]
    fn the_build_probe_bounds_what_building_allocates() {
        // A byte-level, a SentencePiece and a ranked-merge vocabulary.
        for file in [
            &include_bytes!("../../../corpus/byte-mha-tied-q4_0.slm")[..],
            &include_bytes!("../../../corpus/spm-gqa-untied-q4_0.slm")[..],
            &include_bytes!("../../../corpus/ranked-gqa1-tied-q8_0.slm")[..],
        ] {
            let bound = for_model(file);
            let peak = build_peak(file);
            assert!(peak <= bound, "{peak} > {bound}");
            // The bound is not loose: at most the fixed part and twice the build's need.
            assert!(
                bound <= limits::MODEL_BUILD_FIXED_BYTES + 2 * peak,
                "{peak} vs {bound}"
            );
        }
    }

    #[test]
    fn a_file_whose_header_does_not_parse_needs_only_the_fixed_part() {
        assert_eq!(for_model(b""), limits::MODEL_BUILD_FIXED_BYTES);
        assert_eq!(for_model(&[0; 300]), limits::MODEL_BUILD_FIXED_BYTES);
    }
}
