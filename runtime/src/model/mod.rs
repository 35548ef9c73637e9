//! Numbers and the network: f16 and ggml-compatible block quantization, the runtime's own math
//! functions, the dot-product and matrix-vector kernels, the batched product of prefill, the
//! loaded weights (and the simd128 module's interleaved quantized rows) and the forward pass.

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod batch;
pub mod cpu;
pub mod forward;
pub mod interleave;
pub mod kernels;
pub mod math;
pub mod quant;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) mod simd128;
pub mod weights;

pub use forward::{forward, prefill, State};
pub use weights::Model;
