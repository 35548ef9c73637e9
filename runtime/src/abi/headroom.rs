//! Memory headroom (spec/abi.md, Memory). Most of the runtime allocates fallibly, but some small
//! allocations cannot (an error message, a node of the buffer map, a vocabulary piece, a
//! generated token): at the memory limit they would trap. So a call that grew memory checks
//! that [`limits::ABI_HEADROOM_BYTES`] more could still be obtained, and one that builds a model
//! first checks that its tables fit ([`for_model`]); when not, the call is undone and fails with
//! `OutOfMemory`. The probe's memory goes back to the allocator, which keeps it for those
//! small allocations (wasm memory never shrinks).

use crate::error::{Error, ErrorCode, Result};
use crate::format::header;
use crate::limits;
use alloc::vec::Vec;

/// `OutOfMemory` with a fixed message (building it allocates little).
pub fn out_of_memory() -> Error {
    Error::new(
        ErrorCode::OutOfMemory,
        "not enough memory left after this call",
    )
}

/// Whether `bytes` more could be allocated now.
pub fn available(bytes: usize) -> bool {
    let mut probe: Vec<u8> = Vec::new();
    probe.try_reserve_exact(bytes).is_ok()
}

/// The memory to have obtainable before building the model in `file` (its tables and the
/// headroom after them): by its header's tokenizer section and tensor count. A file whose
/// header does not parse needs only the headroom (building it fails at once).
pub fn for_model(file: &[u8]) -> usize {
    let Some(h) = file
        .get(..limits::HEADER_BYTES)
        .and_then(|b| header::parse_header(b, file.len() as u64).ok())
    else {
        return limits::ABI_HEADROOM_BYTES;
    };
    let tokenizer = usize::try_from(h.sections.tokenizer.length).unwrap_or(usize::MAX);
    let directory = usize::try_from(h.sections.directory.length).unwrap_or(usize::MAX);
    // A directory entry takes at least 57 bytes (spec/slm.md): a bound on the tensor count.
    tokenizer
        .saturating_mul(limits::MODEL_BUILD_BYTES_PER_TOKENIZER_BYTE)
        .saturating_add((directory / 57).saturating_mul(limits::MODEL_BUILD_BYTES_PER_TENSOR))
        .saturating_add(limits::ABI_HEADROOM_BYTES)
}

/// Checks that the model in `file` can be built ([`for_model`]).
pub fn ensure_for_model(file: &[u8]) -> Result<()> {
    if available(for_model(file)) {
        Ok(())
    } else {
        Err(out_of_memory())
    }
}
