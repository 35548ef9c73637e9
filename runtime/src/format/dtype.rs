//! Tensor element types. Codes are ggml's `ggml_type` numbers, and q8_0/q4_0 blocks are ggml's
//! bytes, so GGUF tensors copy bit-exact.

use crate::error::{Error, ErrorCode, Result};

/// Elements in one q8_0 or q4_0 block.
pub const QK: usize = 32;
/// Bytes of one q8_0 block: f16 scale + 32 × i8.
pub const Q8_0_BLOCK_BYTES: usize = 34;
/// Bytes of one q4_0 block: f16 scale + 16 bytes of nibbles.
pub const Q4_0_BLOCK_BYTES: usize = 18;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q8_0 = 8,
}

impl DType {
    pub const ALL: [DType; 4] = [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0];

    pub fn from_code(code: u8) -> Result<DType> {
        match code {
            0 => Ok(DType::F32),
            1 => Ok(DType::F16),
            2 => Ok(DType::Q4_0),
            8 => Ok(DType::Q8_0),
            other => Err(Error::new(
                ErrorCode::UnsupportedDType,
                alloc::format!("dtype code {other} is not f32 (0), f16 (1), q4_0 (2) or q8_0 (8)"),
            )),
        }
    }

    pub const fn code(self) -> u8 {
        self as u8
    }

    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Q4_0 => "q4_0",
            DType::Q8_0 => "q8_0",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Elements per storage block (1 for f32/f16, 32 for the quantized types).
    pub const fn block_elems(self) -> usize {
        match self {
            DType::F32 | DType::F16 => 1,
            DType::Q4_0 | DType::Q8_0 => QK,
        }
    }

    /// Bytes per storage block.
    pub const fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
            DType::Q4_0 => Q4_0_BLOCK_BYTES,
            DType::Q8_0 => Q8_0_BLOCK_BYTES,
        }
    }

    /// Bytes for `elems` elements, or `None` when `elems` is not a whole number of blocks or the
    /// product overflows.
    pub fn bytes_for(self, elems: u64) -> Option<u64> {
        let be = self.block_elems() as u64;
        if !elems.is_multiple_of(be) {
            return None;
        }
        (elems / be).checked_mul(self.block_bytes() as u64)
    }
}
