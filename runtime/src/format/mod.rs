//! The `.slm` container (spec/slm.md): fixed header, metadata, tokenizer and tensor directory
//! sections, 64-byte aligned tensor payloads, per-tensor and whole-file SHA-256.

pub mod dtype;
pub mod vocab;

pub use dtype::DType;
pub use vocab::{TokenType, TokenizerKind, Vocab};
