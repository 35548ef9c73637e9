//! A strict, zero-copy GGUF v2/v3 reader (ggml docs/gguf.md), and the mapping of a `llama`
//! GGUF's tokenizer and hyperparameters into TinyRustLM's types.
//!
//! [`Gguf::parse`] accepts exactly the files ggml's `gguf_init_from_file_impl` accepts, with the
//! deviations listed on it; every refusal is a [`GgufError`] naming the rule and the byte offset.

pub mod convert;
mod error;
mod llama;
mod parse;
mod types;
mod value;
pub mod write;

use std::collections::HashMap;

pub use error::{GgufError, GgufErrorKind};
pub use llama::{llama_hparams, llama_vocab, LlamaHparams};
pub use types::{GgmlType, ValueType};
pub use value::{Array, Value};

/// ggml's alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that overrides the alignment (a u32, a non-zero power of two).
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// A parsed GGUF file borrowing its bytes: metadata in file order and tensor descriptors whose
/// data are slices of the input.
#[derive(Clone, Debug)]
pub struct Gguf<'a> {
    version: u32,
    kvs: Vec<(&'a str, Value<'a>)>,
    kv_index: HashMap<&'a str, usize>,
    tensors: Vec<Tensor<'a>>,
    tensor_index: HashMap<&'a str, usize>,
    alignment: u64,
    data_offset: u64,
}

/// One tensor: its name, shape, element type and bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<'a> {
    name: &'a str,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    offset: u64,
    data: &'a [u8],
}

impl<'a> Tensor<'a> {
    /// The tensor's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Dimensions in ggml order, fastest-varying first (`[in, out]` for a matrix stored as rows
    /// of `in` elements). Empty for a tensor written with `n_dims = 0` (one element).
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// The element type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Offset of the data from the start of the data section (as written in the file).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number of elements (the product of the dimensions; may be 0). The reader guarantees the
    /// product of non-zero dimensions is below `i64::MAX`; with a zero dimension the others may
    /// be anything, so zero is checked first.
    pub fn n_elements(&self) -> u64 {
        if self.dims.contains(&0) {
            0
        } else {
            self.dims.iter().product()
        }
    }

    /// The tensor's bytes, exactly its size (padding excluded).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

impl<'a> Gguf<'a> {
    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of the data section and of every tensor offset.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// File offset where the data section starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The value of `key`.
    pub fn kv(&self, key: &str) -> Option<&Value<'a>> {
        self.kv_index.get(key).map(|&i| &self.kvs[i].1)
    }

    /// Every key and value, in file order.
    pub fn kvs(&self) -> impl Iterator<Item = (&'a str, &Value<'a>)> + '_ {
        self.kvs.iter().map(|(k, v)| (*k, v))
    }

    /// `key` as a u32, if present with exactly that type.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        match self.kv(key)? {
            Value::U32(v) => Some(*v),
            _ => None,
        }
    }

    /// `key` as a u64, if present with exactly that type.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        match self.kv(key)? {
            Value::U64(v) => Some(*v),
            _ => None,
        }
    }

    /// `key` as an i32, if present with exactly that type.
    pub fn get_i32(&self, key: &str) -> Option<i32> {
        match self.kv(key)? {
            Value::I32(v) => Some(*v),
            _ => None,
        }
    }

    /// `key` as an f32, if present with exactly that type.
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        match self.kv(key)? {
            Value::F32(v) => Some(*v),
            _ => None,
        }
    }

    /// `key` as a bool, if present with exactly that type.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.kv(key)? {
            Value::Bool(v) => Some(*v),
            _ => None,
        }
    }

    /// `key` as a string, if present with exactly that type.
    pub fn get_str(&self, key: &str) -> Option<&'a str> {
        match self.kv(key)? {
            Value::Str(v) => Some(v),
            _ => None,
        }
    }

    /// `key` as an array of any element type.
    pub fn get_array(&self, key: &str) -> Option<&Array<'a>> {
        match self.kv(key)? {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// `key` as a string array.
    pub fn get_str_array(&self, key: &str) -> Option<&[&'a str]> {
        self.get_array(key)?.as_strs()
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[Tensor<'a>] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&Tensor<'a>> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }
}
