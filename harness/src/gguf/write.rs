//! A small GGUF writer for tests and fixtures. It writes valid little-endian files the way
//! gguf-py does (data section and every tensor padded to the alignment, padding after the last
//! tensor too) and records where each field landed, so a test can corrupt exactly one field and
//! know the offset the reader must report.

use super::{GgmlType, ValueType, ALIGNMENT_KEY, DEFAULT_ALIGNMENT};

/// A metadata value as written: its type code and the bytes that follow the type field.
#[derive(Clone, Debug, PartialEq)]
pub struct RawValue {
    pub type_code: u32,
    pub payload: Vec<u8>,
}

fn string_bytes(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

impl RawValue {
    fn fixed(ty: ValueType, bytes: &[u8]) -> RawValue {
        RawValue {
            type_code: ty.code(),
            payload: bytes.to_vec(),
        }
    }

    pub fn u8(v: u8) -> RawValue {
        RawValue::fixed(ValueType::U8, &[v])
    }

    pub fn u32(v: u32) -> RawValue {
        RawValue::fixed(ValueType::U32, &v.to_le_bytes())
    }

    pub fn i32(v: i32) -> RawValue {
        RawValue::fixed(ValueType::I32, &v.to_le_bytes())
    }

    pub fn u64(v: u64) -> RawValue {
        RawValue::fixed(ValueType::U64, &v.to_le_bytes())
    }

    pub fn f32(v: f32) -> RawValue {
        RawValue::fixed(ValueType::F32, &v.to_le_bytes())
    }

    pub fn f64(v: f64) -> RawValue {
        RawValue::fixed(ValueType::F64, &v.to_le_bytes())
    }

    pub fn bool(v: bool) -> RawValue {
        RawValue::fixed(ValueType::Bool, &[u8::from(v)])
    }

    pub fn str(v: &str) -> RawValue {
        RawValue {
            type_code: ValueType::Str.code(),
            payload: string_bytes(v.as_bytes()),
        }
    }

    /// An array: element type code, element count, then `elems` as given (already encoded).
    pub fn array_raw(elem_code: u32, n: u64, elems: &[u8]) -> RawValue {
        let mut payload = elem_code.to_le_bytes().to_vec();
        payload.extend_from_slice(&n.to_le_bytes());
        payload.extend_from_slice(elems);
        RawValue {
            type_code: ValueType::Array.code(),
            payload,
        }
    }

    pub fn str_array(v: &[&str]) -> RawValue {
        let elems: Vec<u8> = v.iter().flat_map(|s| string_bytes(s.as_bytes())).collect();
        RawValue::array_raw(ValueType::Str.code(), v.len() as u64, &elems)
    }

    pub fn f32_array(v: &[f32]) -> RawValue {
        let elems: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        RawValue::array_raw(ValueType::F32.code(), v.len() as u64, &elems)
    }

    pub fn i32_array(v: &[i32]) -> RawValue {
        let elems: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        RawValue::array_raw(ValueType::I32.code(), v.len() as u64, &elems)
    }
}

/// Where one key/value pair landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    /// The key's length field.
    pub key_at: u64,
    /// The value type field.
    pub type_at: u64,
    /// The first byte after the type field.
    pub value_at: u64,
}

/// Where one tensor info and its data landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorLayout {
    pub name_at: u64,
    pub n_dims_at: u64,
    /// The first dimension (8 bytes each).
    pub dims_at: u64,
    pub type_at: u64,
    pub offset_at: u64,
    /// The tensor's first data byte in the file.
    pub data_at: u64,
}

/// A written file and its layout.
#[derive(Clone, Debug)]
pub struct Written {
    pub bytes: Vec<u8>,
    pub kvs: Vec<KvLayout>,
    pub tensors: Vec<TensorLayout>,
    /// The end of the last tensor info (before the padding to the data section).
    pub header_end: u64,
    /// Where the data section starts.
    pub data_offset: u64,
}

/// Collects metadata and tensors, then [`GgufWriter::finish`] lays them out.
#[derive(Clone, Debug)]
pub struct GgufWriter {
    version: u32,
    alignment: u64,
    kvs: Vec<(String, RawValue)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

impl GgufWriter {
    /// An empty file of `version` with the default alignment.
    pub fn new(version: u32) -> GgufWriter {
        GgufWriter {
            version,
            alignment: DEFAULT_ALIGNMENT,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Adds a key/value pair as given (no checks: duplicates and bad types are written).
    pub fn kv(&mut self, key: &str, value: RawValue) -> &mut GgufWriter {
        self.kvs.push((key.to_string(), value));
        self
    }

    /// Adds `general.alignment` = `alignment` and pads with it (must be a power of two).
    pub fn alignment(&mut self, alignment: u32) -> &mut GgufWriter {
        self.alignment = u64::from(alignment);
        self.kv(ALIGNMENT_KEY, RawValue::u32(alignment))
    }

    /// Adds a tensor of a known type; `data` must hold its bytes.
    pub fn tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> &mut GgufWriter {
        self.tensor_raw(name, dims, ty as u32, data)
    }

    /// Adds a tensor with any type code; its offset is the running padded total of `data`
    /// lengths.
    pub fn tensor_raw(
        &mut self,
        name: &str,
        dims: &[u64],
        type_code: u32,
        data: Vec<u8>,
    ) -> &mut GgufWriter {
        self.tensors
            .push((name.to_string(), dims.to_vec(), type_code, data));
        self
    }

    /// Lays the file out.
    pub fn finish(&self) -> Written {
        let a = self.alignment as usize;
        let padded = |n: usize| n.div_ceil(a) * a;
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        let mut kvs = Vec::new();
        for (key, value) in &self.kvs {
            let key_at = b.len() as u64;
            b.extend_from_slice(&string_bytes(key.as_bytes()));
            let type_at = b.len() as u64;
            b.extend_from_slice(&value.type_code.to_le_bytes());
            kvs.push(KvLayout {
                key_at,
                type_at,
                value_at: type_at + 4,
            });
            b.extend_from_slice(&value.payload);
        }
        let mut tensors = Vec::new();
        let mut offset = 0usize;
        for (name, dims, ty, data) in &self.tensors {
            let name_at = b.len() as u64;
            b.extend_from_slice(&string_bytes(name.as_bytes()));
            let n_dims_at = b.len() as u64;
            b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            let type_at = b.len() as u64;
            b.extend_from_slice(&ty.to_le_bytes());
            let offset_at = b.len() as u64;
            b.extend_from_slice(&(offset as u64).to_le_bytes());
            tensors.push(TensorLayout {
                name_at,
                n_dims_at,
                dims_at: n_dims_at + 4,
                type_at,
                offset_at,
                data_at: offset as u64,
            });
            offset += padded(data.len());
        }
        let header_end = b.len() as u64;
        if !self.tensors.is_empty() {
            b.resize(padded(b.len()), 0);
        }
        let data_offset = b.len() as u64;
        for ((_, _, _, data), layout) in self.tensors.iter().zip(&mut tensors) {
            layout.data_at += data_offset;
            b.extend_from_slice(data);
            b.resize(padded(b.len()), 0);
        }
        Written {
            bytes: b,
            kvs,
            tensors,
            header_end,
            data_offset,
        }
    }
}
