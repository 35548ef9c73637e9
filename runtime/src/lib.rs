//! TinyRustLM runtime: reads and verifies `.slm` models, runs a Llama-family decoder on
//! f32/f16/q8_0/q4_0 weights, tokenizes, samples and generates text.
//!
//! The tree reads in the order data flows:
//! - [`format`]: the `.slm` container (spec/slm.md): verified zero-copy reader and canonical writer;
//! - [`model`]: numeric kernels and the forward pass (spec/determinism.md);
//! - [`generate`]: tokenizer, sampler and the generation session;
//! - [`adapter`]: ADP1/ASP1/ALR1 adapters, module plans and receipts (spec/adapters.md);
//! - `abi` (feature `abi`): the raw WebAssembly ABI (spec/abi.md).
//!
//! No dependencies, no unsafe code except in two modules that allow it: the ABI's `#[no_mangle]`
//! exports and [`model::cpu`] (CPU feature detection and the call into the AVX2 kernels).
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
/// The ABI build links `std`: on wasm32-unknown-unknown it supplies the allocator and the panic
/// handler a cdylib needs.
#[cfg(feature = "abi")]
extern crate std;

#[cfg(feature = "abi")]
#[allow(unsafe_code)]
pub mod abi;
pub mod adapter;
pub mod error;
pub mod format;
pub mod generate;
pub mod limits;
pub mod model;
pub mod sha256;

pub use error::{Error, ErrorCode, Result};
