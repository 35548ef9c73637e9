//! Numbers: f16 and ggml-compatible block quantization, the runtime's own math functions, the
//! dot-product and matrix-vector kernels, and (later) the forward pass.

pub mod kernels;
pub mod math;
pub mod quant;
