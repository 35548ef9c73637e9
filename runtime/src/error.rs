//! The one error type of the runtime: a stable numeric code (spec/errors.md), a message, and the
//! byte offset in the input where the problem was found (when there is one).

use alloc::string::String;
use core::fmt;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, )*) => {
        /// Stable error codes. The numbers never change meaning; new codes are only appended.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum ErrorCode {
            $( $(#[$doc])* $name = $value, )*
        }

        impl ErrorCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$name, )* ];

            /// The code's stable name as written in spec/errors.md.
            pub const fn name(self) -> &'static str {
                match self { $( ErrorCode::$name => stringify!($name), )* }
            }

            /// The code for a number, if it is one.
            pub const fn from_u32(value: u32) -> Option<ErrorCode> {
                match value { $( $value => Some(ErrorCode::$name), )* _ => None }
            }
        }
    };
}

error_codes! {
    /// Success (never carried by an `Error`; the ABI returns it).
    Ok = 0,
    /// An ABI call received a null pointer where a buffer was required.
    NullPointer = 1,
    /// A length argument is invalid (zero where data is needed, beyond a buffer, not one the call
    /// defines; no call requires an aligned length), or, in the library API, a buffer does not
    /// fit the values it is given (quantizers, `dequantize`, matrix views, the product and
    /// prefill scratch, logits given to the sampler).
    InvalidLength = 2,
    /// Text that must be UTF-8 is not.
    InvalidUtf8 = 3,
    /// The file does not start with the .slm magic.
    InvalidModelMagic = 4,
    /// The format major version is not one this reader implements, or the minor version is above
    /// the reader's.
    UnsupportedModelVersion = 5,
    /// A header field is out of range or inconsistent with another.
    InvalidHeader = 6,
    /// The tensor directory is malformed (bad entry, name, rank, dims, length). Payloads out of
    /// order or off their place are `LayoutViolation`.
    InvalidTensorDirectory = 7,
    /// A tensor the architecture requires is absent (an unknown extra one is `InvalidTensorDirectory`).
    MissingTensor = 8,
    /// A tensor's shape differs from what the header implies.
    ShapeMismatch = 9,
    /// A dtype code is unknown, or not allowed for that tensor.
    UnsupportedDType = 10,
    /// A position would exceed the context limit.
    ContextExceeded = 11,
    /// The call needs a loaded model and there is none.
    ModelNotLoaded = 12,
    /// Generation failed or was asked to continue when it cannot.
    GenerationFailed = 13,
    /// Generated text would exceed the output buffer cap.
    OutputBufferExceeded = 14,
    /// The input exceeds the 33,554,432-byte model budget (or another byte budget).
    BudgetExceeded = 15,
    /// The data ends before a structure it declares.
    Truncated = 16,
    /// Bytes remain after the last structure.
    TrailingBytes = 17,
    /// An offset is not a multiple of the required alignment.
    Misaligned = 18,
    /// Sections or payloads overlap, leave a gap, are out of order, or leave the file.
    LayoutViolation = 19,
    /// A padding byte is not zero.
    NonZeroPadding = 20,
    /// The file digest (spec/slm.md, Digests) does not match.
    FileDigestMismatch = 21,
    /// A tensor digest (spec/slm.md, Digests) does not match its bytes.
    TensorDigestMismatch = 22,
    /// The metadata section is malformed (keys, values, order, required keys).
    InvalidMetadata = 23,
    /// The tokenizer section is malformed.
    InvalidTokenizer = 24,
    /// A named structural limit (spec/slm.md, Limits) is exceeded.
    LimitExceeded = 25,
    /// A name (tensor or metadata key) appears twice.
    DuplicateName = 26,
    /// Sampling or generation settings are invalid.
    InvalidSettings = 27,
    /// The prompt exceeds its byte cap (a prompt of more tokens than the context is
    /// `ContextExceeded`).
    PromptTooLong = 28,
    /// An ABI call came in a state that does not allow it.
    InvalidState = 29,
    /// A token id is outside the vocabulary.
    InvalidTokenId = 30,
    /// The architecture id is not one this runtime runs.
    UnsupportedArchitecture = 31,
    /// A reserved field or flag bit is not zero.
    ReservedNonZero = 32,
    /// Memory for the model, cache or scratch could not be obtained.
    OutOfMemory = 33,
    /// An argument is invalid in a way no more specific code covers.
    InvalidArgument = 34,
    /// A value the runtime refuses: NaN or infinity given to a quantizer, in an adapter, or in an
    /// assembled (adapted) tensor.
    NonFiniteValue = 35,
    /// The data does not start with an adapter magic (`ADP1`, `ASP1`, `ALR1`; spec/adapters.md).
    InvalidAdapterMagic = 36,
    /// The adapter format major version is not one this reader implements, or its minor is newer.
    UnsupportedAdapterVersion = 37,
    /// An adapter header field or tensor record is malformed (sizes, names, order, rank, counts).
    InvalidAdapter = 38,
    /// The adapter is bound to another base: its layout or tokenizer digest differs from the model's.
    AdapterBaseMismatch = 39,
    /// A sparse (ASP1) element index is not below the tensor's element count.
    SparseIndexOutOfRange = 40,
    /// Sparse (ASP1) element indices are not strictly increasing (unsorted or duplicated).
    SparseIndexOrder = 41,
    /// A module plan or receipt is malformed (spec/adapters.md, canonical text).
    InvalidPlan = 42,
    /// The plan names another base model than the loaded one (file digests differ).
    PlanBaseMismatch = 43,
    /// A module's bytes differ from the plan's entry (count, size or SHA-256).
    ModuleDigestMismatch = 44,
    /// The receipt of an assembly differs from the one the host pinned.
    ReceiptMismatch = 45,
    /// Generation is refused: the session requires a plan that is not applied.
    AdaptersRequired = 46,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failure: what (code), where (byte offset into the input, when it applies) and why (message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub offset: Option<u64>,
    pub message: String,
}

impl Error {
    /// An error without a byte offset.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            offset: None,
            message: message.into(),
        }
    }

    /// An error found at byte `offset` of the input.
    pub fn at(code: ErrorCode, offset: u64, message: impl Into<String>) -> Error {
        Error {
            code,
            offset: Some(offset),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {} {}", self.code as u32, self.code.name())?;
        if let Some(offset) = self.offset {
            write!(f, " at byte {offset}")?;
        }
        write!(f, ": {}", self.message)
    }
}

pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_and_round_trip() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*code as u32, i as u32);
            assert_eq!(ErrorCode::from_u32(i as u32), Some(*code));
        }
        assert_eq!(ErrorCode::from_u32(ErrorCode::ALL.len() as u32), None);
    }
}
