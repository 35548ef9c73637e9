//! What several targets share: the committed corpus models, loaded once.
#![allow(dead_code)] // Each target uses part of it.

use runtime::model::Model;
use std::sync::OnceLock;

/// The corpus models the targets run against (byte-level, SentencePiece, ranked-merge).
pub const MODELS: [&[u8]; 3] = [
    include_bytes!("../../../corpus/byte-mha-tied-q4_0.slm"),
    include_bytes!("../../../corpus/spm-gqa-untied-q4_0.slm"),
    include_bytes!("../../../corpus/ranked-gqa1-tied-q8_0.slm"),
];

/// The loaded [`MODELS`].
pub fn models() -> &'static [Model] {
    static LOADED: OnceLock<Vec<Model>> = OnceLock::new();
    LOADED.get_or_init(|| {
        MODELS
            .iter()
            .map(|b| Model::load(b.to_vec()).expect("corpus model loads"))
            .collect()
    })
}

/// Splits the input: its first byte picks one of `n` things, the rest is the payload.
pub fn pick(data: &[u8], n: usize) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (b as usize % n, rest),
        None => (0, data),
    }
}
