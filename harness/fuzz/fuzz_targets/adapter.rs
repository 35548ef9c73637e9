//! Adapter parse and apply: any bytes parse to an adapter or fail cleanly; a parsed one applies
//! to the corpus models or fails cleanly (a base mismatch mostly; the fuzzer learns the binding
//! from the seeds).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use runtime::adapter::{assemble, Adapter};

fuzz_target!(|data: &[u8]| {
    let (which, bytes) = common::pick(data, common::MODELS.len());
    if let Ok(adapter) = Adapter::parse(bytes) {
        let _ = assemble(&common::models()[which], &[adapter]);
    }
});
