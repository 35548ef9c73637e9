//! The ABI's chunked loader (runtime/src/abi/loader.rs) with chunk boundaries chosen by the
//! fuzzer: the outcome is the whole-file load's, whatever the split (spec/abi.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::abi::loader::ChunkedLoad;
use runtime::model::Model;

// Input: one byte `n` (cuts, at most 16), `n` little-endian u16 chunk lengths, then the file.
fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n % 17) as usize;
    if rest.len() < 2 * n {
        return;
    }
    let (lens, file) = rest.split_at(2 * n);
    let whole = Model::load(file.to_vec())
        .map(|m| m.digest)
        .map_err(|e| e.code);
    let chunked = (|| {
        let mut load = ChunkedLoad::begin(u32::try_from(file.len()).unwrap())?;
        let mut at = 0;
        for l in lens.chunks_exact(2) {
            let l = (u16::from_le_bytes([l[0], l[1]]) as usize).min(file.len() - at);
            load.chunk(&file[at..at + l])?;
            at += l;
        }
        load.chunk(&file[at..])?;
        load.finish()
    })()
    .map(|m| m.digest)
    .map_err(|e| e.code);
    assert_eq!(chunked, whole);
});
