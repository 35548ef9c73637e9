//! Why a GGUF file was refused, and where.

use std::fmt;

/// The rule a GGUF file broke. Each kind names one check of [`super::Gguf::parse`]; the doc of
/// each says what the error's `offset` points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgufErrorKind {
    /// The first four bytes are not `GGUF`. Offset 0.
    BadMagic,
    /// Version 0, 1, above 3, or a byte-swapped (big-endian) version. Offset 4.
    UnsupportedVersion,
    /// The file ends inside a field, a string, an array, the padding before the data section or
    /// a tensor's data. Offset: where the item that does not fit starts.
    Truncated,
    /// `tensor_count` cannot fit in the bytes left (each tensor info takes at least 24 bytes).
    /// Offset 8.
    TooManyTensors,
    /// `kv_count` cannot fit in the bytes left (each pair takes at least 14 bytes). Offset 16.
    TooManyKvs,
    /// An array's element count exceeds ggml's 2^30 cap or cannot fit in the bytes left.
    /// Offset: the count field.
    TooManyElements,
    /// A string is longer than ggml's 1 GiB cap (offset: its length field) or is not UTF-8
    /// (offset: its first invalid byte).
    BadString,
    /// A metadata key is empty. Offset: its length field.
    EmptyKey,
    /// A value type outside 0..=12, or an array of arrays. Offset: the type field.
    BadValueType,
    /// A bool byte other than 0 or 1 (docs/gguf.md calls anything else invalid; ggml reads any
    /// non-zero byte as true). Offset: the byte.
    BadBool,
    /// A key seen before. Offset: the second key's length field.
    DuplicateKey,
    /// `general.alignment` is not a single u32 (offset: its type field) or is not a non-zero
    /// power of two (offset: its value).
    BadAlignment,
    /// A tensor name of 64 bytes or more (ggml's `GGML_MAX_NAME` holds 63 and a NUL). Offset:
    /// its length field.
    NameTooLong,
    /// A tensor name seen before. Offset: the second name's length field.
    DuplicateTensor,
    /// More than 4 dimensions (offset: `n_dims`) or a dimension with the sign bit set, which
    /// ggml reads as a negative `int64_t` (offset: that dimension).
    BadDims,
    /// The element count reaches `i64::MAX` (offset: `n_dims`), the byte size exceeds u64
    /// (offset: the type field) or the padded data total exceeds u64 (offset: the tensor's
    /// offset field).
    Overflow,
    /// A tensor type code that is retired or unknown. Offset: the type field.
    BadTensorType,
    /// The first dimension (a row) is not a multiple of the type's block size. Offset: the type
    /// field.
    BadRowSize,
    /// A tensor's offset is not the running total of the padded sizes of the tensors before it
    /// (ggml requires exactly that). Offset: the tensor's offset field.
    BadOffset,
}

/// A refused GGUF file: the rule it broke, the byte offset in the file, and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufError {
    pub offset: u64,
    pub kind: GgufErrorKind,
    pub message: String,
}

impl GgufError {
    pub(crate) fn new(kind: GgufErrorKind, offset: u64, message: impl Into<String>) -> GgufError {
        GgufError {
            offset,
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GGUF {:?} at byte {}: {}",
            self.kind, self.offset, self.message
        )
    }
}

impl std::error::Error for GgufError {}
