//! The .slm reader and verifier: any bytes give a model or an error, never a panic, and the
//! structural reader and the full load agree on files the reader refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::format::Slm;
use runtime::model::Model;

fuzz_target!(|data: &[u8]| {
    let parsed = Slm::parse(data).map(|_| ());
    let loaded = Model::load(data.to_vec()).map(|_| ());
    if let Err(e) = &parsed {
        // Loading runs the reader first: the same refusal.
        assert_eq!(loaded.as_ref().err().map(|l| l.code), Some(e.code));
    }
});
