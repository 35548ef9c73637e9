//! The TinyRustLM harness: fixture recipes, converters, engines and the checks behind the
//! `tinyrustlm` CLI.

pub mod bench;
pub mod gguf;
pub mod llama2c_tokenizer;
pub mod fixtures;
pub mod inspect;
