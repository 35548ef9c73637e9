//! The GGUF reader (harness::gguf): any bytes parse or fail cleanly; a parsed file's llama
//! hyper-parameters and vocabulary are read or refused cleanly.
#![no_main]

use harness::gguf::{llama_hparams, llama_vocab, Gguf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = Gguf::parse(data) {
        let _ = llama_hparams(&g);
        let _ = llama_vocab(&g);
        for t in g.tensors() {
            assert!(t.data().len() as u64 <= data.len() as u64);
        }
    }
});
