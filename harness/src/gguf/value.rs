//! Metadata values, borrowed from the file's bytes.

use super::types::ValueType;

/// One metadata value. Strings borrow the file; arrays keep their raw little-endian bytes and
/// decode on access.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(&'a str),
    Array(Array<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Value<'a> {
    /// The value's GGUF type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::Str(_) => ValueType::Str,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The type as ggml prints it: `u32`, `str`, or `arr[f32,32000]` for arrays.
    pub fn type_label(&self) -> String {
        match self {
            Value::Array(a) => format!("arr[{},{}]", a.elem_type().name(), a.len()),
            v => v.value_type().name().to_string(),
        }
    }

    /// Decodes a fixed-size scalar of type `ty` from exactly `ty.fixed_size()` bytes. Bools must
    /// already have been checked to be 0 or 1.
    pub(crate) fn decode_fixed(ty: ValueType, b: &[u8]) -> Option<Value<'static>> {
        let a2 = |b: &[u8]| -> Option<[u8; 2]> { b.try_into().ok() };
        let a4 = |b: &[u8]| -> Option<[u8; 4]> { b.try_into().ok() };
        let a8 = |b: &[u8]| -> Option<[u8; 8]> { b.try_into().ok() };
        Some(match ty {
            ValueType::U8 => Value::U8(*b.first()?),
            ValueType::I8 => Value::I8(*b.first()? as i8),
            ValueType::Bool => Value::Bool(*b.first()? != 0),
            ValueType::U16 => Value::U16(u16::from_le_bytes(a2(b)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(a2(b)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(a4(b)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(a4(b)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(a4(b)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(a8(b)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(a8(b)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(a8(b)?)),
            ValueType::Str | ValueType::Array => return None,
        })
    }
}

/// A metadata array: element type, length, and either the raw element bytes (fixed-size types)
/// or the strings.
#[derive(Clone, Debug, PartialEq)]
pub struct Array<'a> {
    pub(crate) elem: ValueType,
    pub(crate) len: usize,
    /// Element bytes, `len * elem.fixed_size()` long; empty for string arrays.
    pub(crate) raw: &'a [u8],
    /// The strings of a string array; empty otherwise.
    pub(crate) strings: Vec<&'a str>,
}

impl<'a> Array<'a> {
    /// The element type (never `Array`).
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `i`, decoded.
    pub fn get(&self, i: usize) -> Option<Value<'a>> {
        if i >= self.len {
            return None;
        }
        match self.elem.fixed_size() {
            Some(size) => Value::decode_fixed(self.elem, self.raw.get(i * size..(i + 1) * size)?),
            None => self.strings.get(i).map(|s| Value::Str(s)),
        }
    }

    /// Every element, decoded, in order.
    pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + '_ {
        (0..self.len).filter_map(|i| self.get(i))
    }

    /// The strings, if this is a string array.
    pub fn as_strs(&self) -> Option<&[&'a str]> {
        (self.elem == ValueType::Str).then_some(self.strings.as_slice())
    }

    /// The elements, if this is an f32 array.
    pub fn to_f32s(&self) -> Option<Vec<f32>> {
        self.fixed_chunks::<4>(ValueType::F32)
            .map(|c| c.map(f32::from_le_bytes).collect())
    }

    /// The elements, if this is an i32 array.
    pub fn to_i32s(&self) -> Option<Vec<i32>> {
        self.fixed_chunks::<4>(ValueType::I32)
            .map(|c| c.map(i32::from_le_bytes).collect())
    }

    /// The elements, if this is a u32 array.
    pub fn to_u32s(&self) -> Option<Vec<u32>> {
        self.fixed_chunks::<4>(ValueType::U32)
            .map(|c| c.map(u32::from_le_bytes).collect())
    }

    fn fixed_chunks<const N: usize>(
        &self,
        want: ValueType,
    ) -> Option<impl Iterator<Item = [u8; N]> + '_> {
        (self.elem == want).then(|| {
            self.raw.chunks_exact(N).map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                a
            })
        })
    }
}
