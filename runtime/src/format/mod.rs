//! The `.slm` container (spec/slm.md): fixed header, metadata, tokenizer and tensor directory
//! sections, 64-byte aligned tensor payloads, SHA-256 digests of every tensor and of the file.
//!
//! [`Slm::parse`] verifies a file completely before exposing anything; [`write()`] produces the
//! canonical bytes of a [`ModelFile`].

pub(crate) mod cursor;
pub mod digest;
pub mod directory;
pub mod dtype;
pub mod header;
pub mod llama;
pub mod metadata;
pub mod read;
pub mod vocab;
pub mod vocab_section;
pub mod write;

pub use digest::file_digest;
pub use directory::TensorEntry;
pub use dtype::DType;
pub use header::{Config, Header};
pub use read::Slm;
pub use vocab::{Pieces, TokenType, TokenizerKind, Vocab};
pub use write::{write, ModelFile, TensorData};
