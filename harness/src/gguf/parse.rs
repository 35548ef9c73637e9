//! The checks of [`Gguf::parse`], in the order ggml's loader makes them.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::error::{GgufError, GgufErrorKind as K};
use super::types::{retired_type_name, GgmlType, ValueType};
use super::value::{Array, Value};
use super::{Gguf, Tensor, ALIGNMENT_KEY, DEFAULT_ALIGNMENT};
use crate::limits::{
    GGUF_MAX_ARRAY_ELEMENTS as MAX_ARRAY_ELEMENTS, GGUF_MAX_DIMS as MAX_DIMS,
    GGUF_MAX_NAME as MAX_NAME, GGUF_MAX_STRING_BYTES as MAX_STRING_BYTES,
    GGUF_READER_MAX_KVS as MAX_KVS, GGUF_READER_MAX_STRINGS as MAX_STRINGS,
    GGUF_READER_MAX_TENSORS as MAX_TENSORS,
};

/// Fewest bytes one key/value pair takes: key length, a one-byte key, type, a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// Fewest bytes one tensor info takes: name length, `n_dims` = 0, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// A tensor info as read, before the data section is located.
struct Info<'a> {
    name: &'a str,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    n_bytes: u64,
    offset: u64,
    offset_at: u64,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::new(
                K::Truncated,
                self.at(),
                format!("{what}: {n} bytes needed, {} left", self.remaining()),
            ));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A u64 length followed by that many UTF-8 bytes.
    fn string(&mut self, what: &str) -> Result<&'a str, GgufError> {
        let len_at = self.at();
        let len = self.u64(what)?;
        if len > MAX_STRING_BYTES {
            return Err(GgufError::new(
                K::BadString,
                len_at,
                format!("{what}: length {len} exceeds ggml's limit of {MAX_STRING_BYTES}"),
            ));
        }
        let bytes = self.take(len, what).map_err(|mut e| {
            e.offset = len_at;
            e
        })?;
        std::str::from_utf8(bytes).map_err(|e| {
            GgufError::new(
                K::BadString,
                len_at + 8 + e.valid_up_to() as u64,
                format!("{what}: not UTF-8"),
            )
        })
    }
}

fn pad(x: u64, alignment: u64) -> Option<u64> {
    Some(x.checked_add(alignment - 1)? & !(alignment - 1))
}

impl<'a> Gguf<'a> {
    /// Parses and checks a whole GGUF file held in memory; tensor data stay borrowed.
    ///
    /// Accepted exactly as ggml's loader accepts (llama.cpp `ggml/src/gguf.cpp`): magic `GGUF`;
    /// version 2 or 3 (0, 1, later versions and byte-swapped big-endian files refused); u64
    /// tensor and key/value counts; keys non-empty and unique; value types 0..=12, arrays of any
    /// non-array type; strings at most 1 GiB, arrays at most 2^30 elements; `general.alignment`
    /// a u32 power of two (default 32); tensor names under 64 bytes and unique; 0..=4 dimensions,
    /// each a non-negative `int64_t` (zero is allowed: an empty tensor); element count below
    /// `i64::MAX`; a known type whose block size divides the first dimension; byte size within
    /// u64; each offset exactly the sum of the aligned sizes of the tensors before it; the data
    /// section starting at the header's end padded to the alignment (when there are tensors).
    ///
    /// Stricter than ggml, and why:
    /// - every count (tensors, pairs, array elements) is checked against the bytes left before
    ///   anything is allocated for it;
    /// - at most 65,536 tensors, 65,536 pairs and 2^20 strings in all string arrays together
    ///   (`limits::GGUF_READER_*`): what the reader holds for each stays in the tens of
    ///   megabytes (ggml allows counts up to the file's size, which would take gigabytes);
    /// - strings (keys, values, tensor names) must be UTF-8 (docs/gguf.md requires it);
    /// - bools must be 0 or 1 (docs/gguf.md: anything else is invalid);
    /// - every tensor's bytes must lie inside the file. ggml itself reads the padded total
    ///   (last tensor's padding included) while llama.cpp's mmap loader checks each tensor's end;
    ///   this reader follows llama.cpp, so the last tensor's padding may be missing.
    ///
    /// Bytes after the last tensor are accepted and ignored, as ggml and llama.cpp do: writers
    /// (gguf-py) pad after the last tensor too, and nothing in the format marks the file's end.
    /// The padding bytes between the header and the data section are not inspected either.
    pub fn parse(bytes: &'a [u8]) -> Result<Gguf<'a>, GgufError> {
        let mut c = Cursor { bytes, pos: 0 };

        let magic = c.take(4, "magic")?;
        if magic != b"GGUF" {
            return Err(GgufError::new(
                K::BadMagic,
                0,
                format!("magic is {magic:02x?}, not \"GGUF\""),
            ));
        }
        let version = c.u32("version")?;
        if version & 0xFFFF == 0 {
            let msg = if version == 0 {
                "version 0".to_string()
            } else {
                format!("version {version:#010x}: a big-endian file (only little-endian is read)")
            };
            return Err(GgufError::new(K::UnsupportedVersion, 4, msg));
        }
        if !(2..=3).contains(&version) {
            return Err(GgufError::new(
                K::UnsupportedVersion,
                4,
                format!("version {version}: only GGUF v2 and v3 are read"),
            ));
        }
        let n_tensors = c.u64("tensor_count")?;
        let n_kv = c.u64("kv_count")?;
        if n_tensors > MAX_TENSORS {
            return Err(GgufError::new(
                K::TooManyTensors,
                8,
                format!("tensor_count {n_tensors} exceeds this reader's limit of {MAX_TENSORS}"),
            ));
        }
        if n_kv > MAX_KVS {
            return Err(GgufError::new(
                K::TooManyKvs,
                16,
                format!("kv_count {n_kv} exceeds this reader's limit of {MAX_KVS}"),
            ));
        }
        if n_tensors > c.remaining() / MIN_TENSOR_INFO_BYTES {
            return Err(GgufError::new(
                K::TooManyTensors,
                8,
                format!(
                    "tensor_count {n_tensors} cannot fit in the {} bytes left (is the file truncated?)",
                    c.remaining()
                ),
            ));
        }
        if n_kv > c.remaining() / MIN_KV_BYTES {
            return Err(GgufError::new(
                K::TooManyKvs,
                16,
                format!(
                    "kv_count {n_kv} cannot fit in the {} bytes left (is the file truncated?)",
                    c.remaining()
                ),
            ));
        }

        let mut strings_left = MAX_STRINGS;
        let mut kvs = Vec::with_capacity(n_kv as usize);
        let mut kv_index = HashMap::with_capacity(n_kv as usize);
        // Where the value type of each pair sits: general.alignment errors point there.
        let mut type_at = Vec::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key_at = c.at();
            let key = c.string("key")?;
            if key.is_empty() {
                return Err(GgufError::new(K::EmptyKey, key_at, "empty key"));
            }
            match kv_index.entry(key) {
                Entry::Occupied(_) => {
                    return Err(GgufError::new(
                        K::DuplicateKey,
                        key_at,
                        format!("key '{key}' appears twice"),
                    ))
                }
                Entry::Vacant(v) => {
                    v.insert(kvs.len());
                }
            }
            type_at.push(c.at());
            let value = read_value(&mut c, key, &mut strings_left)?;
            kvs.push((key, value));
        }

        let alignment = match kv_index.get(ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => {
                let at = type_at[i];
                match kvs[i].1 {
                    Value::U32(a) if a != 0 && a.is_power_of_two() => u64::from(a),
                    Value::U32(a) => {
                        return Err(GgufError::new(
                            K::BadAlignment,
                            at + 4,
                            format!("{ALIGNMENT_KEY} = {a} is not a power of two"),
                        ))
                    }
                    ref v => {
                        return Err(GgufError::new(
                            K::BadAlignment,
                            at,
                            format!("{ALIGNMENT_KEY} must be a u32, not {}", v.type_label()),
                        ))
                    }
                }
            }
        };

        if n_tensors > c.remaining() / MIN_TENSOR_INFO_BYTES {
            return Err(GgufError::new(
                K::TooManyTensors,
                8,
                format!(
                    "tensor_count {n_tensors} cannot fit in the {} bytes left after the metadata",
                    c.remaining()
                ),
            ));
        }
        let mut infos = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
        for i in 0..n_tensors as usize {
            infos.push(read_tensor_info(&mut c, &mut tensor_index, i)?);
        }

        let data_offset = if n_tensors > 0 {
            match pad(c.at(), alignment) {
                Some(d) if d <= bytes.len() as u64 => d,
                _ => {
                    return Err(GgufError::new(
                        K::Truncated,
                        c.at(),
                        format!("the file ends before the data section (aligned to {alignment})"),
                    ))
                }
            }
        } else {
            c.at()
        };

        let mut expected = 0u64;
        for info in &infos {
            if info.offset != expected {
                return Err(GgufError::new(
                    K::BadOffset,
                    info.offset_at,
                    format!(
                        "tensor '{}' has offset {}, expected {expected}",
                        info.name, info.offset
                    ),
                ));
            }
            expected = pad(info.n_bytes, alignment)
                .and_then(|p| expected.checked_add(p))
                .ok_or_else(|| {
                    GgufError::new(
                        K::Overflow,
                        info.offset_at,
                        format!("data section size overflows after tensor '{}'", info.name),
                    )
                })?;
        }

        let mut tensors = Vec::with_capacity(infos.len());
        for info in infos {
            let start = data_offset.checked_add(info.offset);
            let end = start.and_then(|s| s.checked_add(info.n_bytes));
            let (start, end) = match (start, end) {
                (Some(s), Some(e)) if e <= bytes.len() as u64 => (s as usize, e as usize),
                _ => {
                    return Err(GgufError::new(
                        K::Truncated,
                        start.unwrap_or(u64::MAX),
                        format!(
                            "tensor '{}' ({} bytes) does not fit in the file",
                            info.name, info.n_bytes
                        ),
                    ))
                }
            };
            tensors.push(Tensor {
                name: info.name,
                dims: info.dims,
                ggml_type: info.ggml_type,
                offset: info.offset,
                data: &bytes[start..end],
            });
        }

        Ok(Gguf {
            version,
            kvs,
            kv_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
    }
}

fn read_value_type(c: &mut Cursor<'_>, key: &str) -> Result<ValueType, GgufError> {
    let at = c.at();
    let code = c.u32("value type")?;
    ValueType::from_code(code).ok_or_else(|| {
        GgufError::new(
            K::BadValueType,
            at,
            format!("key '{key}' has value type {code}"),
        )
    })
}

/// Reads one value. `strings_left`: how many more string-array elements the file may hold
/// ([`MAX_STRINGS`] in all).
fn read_value<'a>(
    c: &mut Cursor<'a>,
    key: &str,
    strings_left: &mut u64,
) -> Result<Value<'a>, GgufError> {
    let ty = read_value_type(c, key)?;
    match ty {
        ValueType::Str => Ok(Value::Str(c.string("string value")?)),
        ValueType::Array => {
            let elem_at = c.at();
            let elem = read_value_type(c, key)?;
            if elem == ValueType::Array {
                return Err(GgufError::new(
                    K::BadValueType,
                    elem_at,
                    format!("key '{key}' is an array of arrays"),
                ));
            }
            let n_at = c.at();
            let n = c.u64("array length")?;
            let min_size = elem.fixed_size().unwrap_or(8) as u64;
            if n > MAX_ARRAY_ELEMENTS || n > c.remaining() / min_size {
                return Err(GgufError::new(
                    K::TooManyElements,
                    n_at,
                    format!(
                        "key '{key}': {n} elements of {} exceed the limit of {MAX_ARRAY_ELEMENTS} \
                         or the {} bytes left",
                        elem.name(),
                        c.remaining()
                    ),
                ));
            }
            let len = n as usize;
            match elem.fixed_size() {
                Some(size) => {
                    let raw_at = c.at();
                    let raw = c.take(n * size as u64, "array")?;
                    if elem == ValueType::Bool {
                        if let Some(i) = raw.iter().position(|&b| b > 1) {
                            return Err(bad_bool(raw_at + i as u64, key, raw[i]));
                        }
                    }
                    Ok(Value::Array(Array {
                        elem,
                        len,
                        raw,
                        strings: Vec::new(),
                    }))
                }
                None => {
                    if n > *strings_left {
                        return Err(GgufError::new(
                            K::TooManyElements,
                            n_at,
                            format!(
                                "key '{key}': {n} strings take the file's string arrays past \
                                 this reader's limit of {MAX_STRINGS} strings in all"
                            ),
                        ));
                    }
                    *strings_left -= n;
                    let mut strings = Vec::with_capacity(len);
                    for _ in 0..n {
                        strings.push(c.string("string array element")?);
                    }
                    Ok(Value::Array(Array {
                        elem,
                        len,
                        raw: &[],
                        strings,
                    }))
                }
            }
        }
        _ => {
            let at = c.at();
            let size = ty.fixed_size().unwrap_or(0) as u64;
            let raw = c.take(size, ty.name())?;
            if ty == ValueType::Bool && raw[0] > 1 {
                return Err(bad_bool(at, key, raw[0]));
            }
            // A fixed-size type of exactly its size always decodes.
            Value::decode_fixed(ty, raw).ok_or_else(|| {
                GgufError::new(K::BadValueType, at, format!("key '{key}' did not decode"))
            })
        }
    }
}

fn bad_bool(at: u64, key: &str, byte: u8) -> GgufError {
    GgufError::new(
        K::BadBool,
        at,
        format!("key '{key}': bool byte {byte} is neither 0 nor 1"),
    )
}

/// Reads tensor info number `index` and enters its name in `names`.
fn read_tensor_info<'a>(
    c: &mut Cursor<'a>,
    names: &mut HashMap<&'a str, usize>,
    index: usize,
) -> Result<Info<'a>, GgufError> {
    let name_at = c.at();
    let name = c.string("tensor name")?;
    if name.len() >= MAX_NAME {
        return Err(GgufError::new(
            K::NameTooLong,
            name_at,
            format!(
                "tensor name of {} bytes; ggml holds at most {}",
                name.len(),
                MAX_NAME - 1
            ),
        ));
    }
    if names.insert(name, index).is_some() {
        return Err(GgufError::new(
            K::DuplicateTensor,
            name_at,
            format!("tensor name '{name}' appears twice"),
        ));
    }
    let n_dims_at = c.at();
    let n_dims = c.u32("n_dims")?;
    if n_dims > MAX_DIMS {
        return Err(GgufError::new(
            K::BadDims,
            n_dims_at,
            format!("tensor '{name}' has {n_dims} dimensions; at most {MAX_DIMS}"),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        let at = c.at();
        let d = c.u64("dimension")?;
        if d > i64::MAX as u64 {
            return Err(GgufError::new(
                K::BadDims,
                at,
                format!("tensor '{name}' has a negative dimension ({})", d as i64),
            ));
        }
        dims.push(d);
    }
    // ggml's own check, made on ne[0..4] with absent dimensions as 1: the running product must
    // stay below i64::MAX. Dimensions are at most i64::MAX, so no step overflows.
    let mut ne = [1u64; 4];
    ne[..dims.len()].copy_from_slice(&dims);
    let n_elements = if ne.contains(&0) {
        0
    } else {
        let max = i64::MAX as u64;
        let mut acc = ne[0];
        for &d in &ne[1..] {
            if max / d <= acc {
                return Err(GgufError::new(
                    K::Overflow,
                    n_dims_at,
                    format!(
                        "tensor '{name}' with dimensions {dims:?} has i64::MAX elements or more"
                    ),
                ));
            }
            acc *= d;
        }
        acc
    };

    let type_at = c.at();
    let code = c.u32("tensor type")?;
    let ggml_type = GgmlType::from_code(code).ok_or_else(|| {
        let what = match retired_type_name(code) {
            Some(n) => format!("the retired type {n}"),
            None => "unknown".to_string(),
        };
        GgufError::new(
            K::BadTensorType,
            type_at,
            format!("tensor '{name}' has type {code} ({what})"),
        )
    })?;
    if ne[0] % ggml_type.block_size() != 0 {
        return Err(GgufError::new(
            K::BadRowSize,
            type_at,
            format!(
                "tensor '{name}' of type {} has rows of {} elements, not a multiple of {}",
                ggml_type.name(),
                ne[0],
                ggml_type.block_size()
            ),
        ));
    }
    let n_bytes = (n_elements / ggml_type.block_size())
        .checked_mul(ggml_type.block_bytes())
        .ok_or_else(|| {
            GgufError::new(
                K::Overflow,
                type_at,
                format!("tensor '{name}' is over 2^64 bytes"),
            )
        })?;
    let offset_at = c.at();
    let offset = c.u64("tensor offset")?;
    Ok(Info {
        name,
        dims,
        ggml_type,
        n_bytes,
        offset,
        offset_at,
    })
}
