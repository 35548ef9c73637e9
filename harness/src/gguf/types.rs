//! The two type vocabularies of a GGUF file: metadata value types (`gguf_type`) and tensor element
//! types (`ggml_type`), with ggml's block sizes and block byte sizes.

/// A metadata value type, numbered as GGUF's `gguf_type` (docs/gguf.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    Str = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The type for a code in `0..=12`.
    pub fn from_code(code: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match code {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => Str,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The type's GGUF code.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// ggml's short name (`u8`, `str`, `arr`, ...).
    pub const fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            Str => "str",
            Array => "arr",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Bytes of one value of a fixed-size type; `None` for strings and arrays.
    pub const fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            Str | Array => None,
        }
    }
}

macro_rules! ggml_types {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $name:literal, $block:literal, $bytes:literal; )*) => {
        /// A tensor element type this reader knows, numbered as ggml's `ggml_type`. Codes ggml
        /// retired (4, 5, 31..=33, 36..=38) and codes after `nvfp4` are not types here: a tensor
        /// using one is rejected, as ggml rejects the retired ones (their block size is 0).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum GgmlType {
            $( $(#[$doc])* $variant = $code, )*
        }

        impl GgmlType {
            /// Every known type, in code order.
            pub const ALL: &'static [GgmlType] = &[ $( GgmlType::$variant, )* ];

            /// The type for a `ggml_type` code.
            pub const fn from_code(code: u32) -> Option<GgmlType> {
                match code { $( $code => Some(GgmlType::$variant), )* _ => None }
            }

            /// ggml's `type_name` (`f32`, `q8_0`, `q4_K`, `bf16`, ...).
            pub const fn name(self) -> &'static str {
                match self { $( GgmlType::$variant => $name, )* }
            }

            /// Elements in one storage block (ggml's `blck_size`).
            pub const fn block_size(self) -> u64 {
                match self { $( GgmlType::$variant => $block, )* }
            }

            /// Bytes of one storage block (ggml's `type_size`).
            pub const fn block_bytes(self) -> u64 {
                match self { $( GgmlType::$variant => $bytes, )* }
            }
        }
    };
}

ggml_types! {
    F32 = 0, "f32", 1, 4;
    F16 = 1, "f16", 1, 2;
    Q4_0 = 2, "q4_0", 32, 18;
    Q4_1 = 3, "q4_1", 32, 20;
    Q5_0 = 6, "q5_0", 32, 22;
    Q5_1 = 7, "q5_1", 32, 24;
    Q8_0 = 8, "q8_0", 32, 34;
    Q8_1 = 9, "q8_1", 32, 36;
    Q2K = 10, "q2_K", 256, 84;
    Q3K = 11, "q3_K", 256, 110;
    Q4K = 12, "q4_K", 256, 144;
    Q5K = 13, "q5_K", 256, 176;
    Q6K = 14, "q6_K", 256, 210;
    Q8K = 15, "q8_K", 256, 292;
    Iq2Xxs = 16, "iq2_xxs", 256, 66;
    Iq2Xs = 17, "iq2_xs", 256, 74;
    Iq3Xxs = 18, "iq3_xxs", 256, 98;
    Iq1S = 19, "iq1_s", 256, 50;
    Iq4Nl = 20, "iq4_nl", 32, 18;
    Iq3S = 21, "iq3_s", 256, 110;
    Iq2S = 22, "iq2_s", 256, 82;
    Iq4Xs = 23, "iq4_xs", 256, 136;
    I8 = 24, "i8", 1, 1;
    I16 = 25, "i16", 1, 2;
    I32 = 26, "i32", 1, 4;
    I64 = 27, "i64", 1, 8;
    F64 = 28, "f64", 1, 8;
    Iq1M = 29, "iq1_m", 256, 56;
    Bf16 = 30, "bf16", 1, 2;
    Tq1_0 = 34, "tq1_0", 256, 54;
    Tq2_0 = 35, "tq2_0", 256, 66;
    Mxfp4 = 39, "mxfp4", 32, 17;
    Nvfp4 = 40, "nvfp4", 64, 36;
}

/// The name ggml gave a retired type code (still reserved in `ggml_type`), for error messages.
pub(crate) const fn retired_type_name(code: u32) -> Option<&'static str> {
    Some(match code {
        4 => "q4_2",
        5 => "q4_3",
        31 => "q4_0_4_4",
        32 => "q4_0_4_8",
        33 => "q4_0_8_8",
        36 => "iq4_nl_4_4",
        37 => "iq4_nl_4_8",
        38 => "iq4_nl_8_8",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for &t in GgmlType::ALL {
            assert_eq!(GgmlType::from_code(t as u32), Some(t));
            assert!(names.insert(t.name()), "{}", t.name());
            assert!(t.block_size() >= 1 && t.block_bytes() >= 1);
        }
        for code in 0..64 {
            let known = GgmlType::from_code(code).is_some();
            let retired = retired_type_name(code).is_some();
            assert!(!(known && retired), "code {code}");
        }
        for code in 0..13 {
            assert_eq!(ValueType::from_code(code).map(ValueType::code), Some(code));
        }
        assert_eq!(ValueType::from_code(13), None);
    }

    #[test]
    fn block_layouts_match_ggml() {
        // The four types the converter reads, and bits per weight of the K-quants (ggml docs).
        assert_eq!(
            (GgmlType::Q8_0.block_size(), GgmlType::Q8_0.block_bytes()),
            (32, 34)
        );
        assert_eq!(
            (GgmlType::Q4_0.block_size(), GgmlType::Q4_0.block_bytes()),
            (32, 18)
        );
        assert_eq!(GgmlType::F16.block_bytes(), 2);
        assert_eq!(GgmlType::Bf16.name(), "bf16");
        let bpw = |t: GgmlType| t.block_bytes() as f64 * 8.0 / t.block_size() as f64;
        assert_eq!(bpw(GgmlType::Q2K), 2.625);
        assert_eq!(bpw(GgmlType::Q3K), 3.4375);
        assert_eq!(bpw(GgmlType::Q4K), 4.5);
        assert_eq!(bpw(GgmlType::Q5K), 5.5);
        assert_eq!(bpw(GgmlType::Q6K), 6.5625);
        assert_eq!(bpw(GgmlType::Iq2Xxs), 2.0625);
        assert_eq!(bpw(GgmlType::Iq2Xs), 2.3125);
        assert_eq!(bpw(GgmlType::Iq1S), 1.5625);
        assert_eq!(bpw(GgmlType::Iq1M), 1.75);
        assert_eq!(bpw(GgmlType::Tq1_0), 1.6875);
    }
}
