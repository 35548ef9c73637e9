//! Tokenizer encode and decode on the corpus vocabularies (byte-level, SentencePiece,
//! ranked-merge): any text encodes to ids inside the vocabulary or fails cleanly, every id
//! decodes or fails cleanly, and byte-level text round-trips.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use runtime::format::TokenizerKind;

fuzz_target!(|data: &[u8]| {
    let (which, text) = common::pick(data, common::MODELS.len());
    let tok = &common::models()[which].tokenizer;
    let mut ids = Vec::new();
    if tok.encode(text, false, &mut ids).is_ok() {
        let mut back = Vec::new();
        let mut prev = None;
        for &id in &ids {
            assert!(id < tok.vocab_size());
            back.extend_from_slice(tok.decode(prev, id).expect("an encoded id decodes"));
            prev = Some(id);
        }
        if tok.kind() == TokenizerKind::ByteLevel {
            assert_eq!(back, text);
        }
    }
    // The bytes as ids: decoding never panics.
    let mut prev = None;
    for w in text.chunks_exact(4) {
        let id = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) % (tok.vocab_size() + 8);
        let _ = tok.decode(prev, id);
        prev = Some(id);
    }
});
