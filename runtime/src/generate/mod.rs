//! From text to text: tokenizer, sampler and the generation session.

pub mod sampler;
pub mod session;
pub mod tokenizer;

pub use session::{Diagnostics, Finish, Session, Step};
