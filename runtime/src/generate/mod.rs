//! From text to text: tokenizer, sampler and (later) the generation session.

pub mod sampler;
pub mod tokenizer;
