//! The TinyRustLM harness: fixture recipes, converters, engines and the checks behind the
//! `tinyrustlm` CLI.

pub mod adapter;
pub mod bench;
pub mod browsers;
pub mod check;
pub mod conformance;
pub mod engine;
pub mod fixtures;
pub mod gguf;
pub mod inspect;
pub mod limits;
pub mod llama2c;
pub mod llama2c_tokenizer;
pub mod malformed;
pub mod run;
pub mod serve;
pub mod smoke;
