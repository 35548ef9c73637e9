//! The `.slm` container (spec/slm.md): fixed header, metadata, tokenizer and tensor directory
//! sections, 64-byte aligned tensor payloads, per-tensor and whole-file SHA-256.
//!
//! [`Slm::parse`] verifies a file completely before exposing anything; [`write`] produces the
//! canonical bytes of a [`ModelFile`].

pub(crate) mod cursor;
pub mod directory;
pub mod dtype;
pub mod header;
pub mod llama;
pub mod metadata;
pub mod read;
pub mod vocab;
pub mod vocab_section;
pub mod write;

pub use directory::TensorEntry;
pub use dtype::DType;
pub use header::{Config, Header};
pub use read::{file_digest, Slm};
pub use vocab::{Pieces, TokenType, TokenizerKind, Vocab};
pub use write::{write, ModelFile, TensorData};
