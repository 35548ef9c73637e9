//! The GGUF part of the malformed matrix (corpus/malformed/gguf/): one small file per rejection
//! class of the GGUF reader ([`GgufErrorKind`]), each with its kind and byte offset, written by
//! the harness's own GGUF writer. The converter's own refusals (missing keys, unsupported
//! hyperparameters) are free-text errors with no stable kind, so they are not part of the matrix.

use super::write_dir;
use crate::gguf::write::{GgufWriter, RawValue, Written};
use crate::gguf::{GgmlType, GgufErrorKind::*};
use anyhow::Result;
use serde_json::{json, Value};
use std::path::Path;

/// One malformed GGUF file and the refusal the reader must report.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub rule: String,
    pub kind: crate::gguf::GgufErrorKind,
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// The valid control file's name.
pub const VALID: &str = "valid.gguf";

/// A small valid file: a string, a u32 and an array of metadata, an f32 and a q8_0 tensor.
fn valid() -> Written {
    let mut w = GgufWriter::new(3);
    w.kv("general.architecture", RawValue::str("llama"))
        .kv("t.u32", RawValue::u32(7))
        .kv("t.f32s", RawValue::f32_array(&[0.5, -1.0]));
    let f: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    w.tensor("a", &[3, 2], GgmlType::F32, f)
        .tensor("b", &[32], GgmlType::Q8_0, (0..34).collect());
    w.finish()
}

fn put_u32(b: &mut [u8], at: u64, v: u32) {
    b[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: u64, v: u64) {
    b[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
}

fn one_tensor(dims: &[u64], type_code: u32) -> Written {
    let mut w = GgufWriter::new(3);
    w.tensor_raw("t", dims, type_code, Vec::new());
    w.finish()
}

fn one_kv(key: &str, value: RawValue) -> Written {
    let mut w = GgufWriter::new(3);
    w.kv(key, value);
    w.finish()
}

/// Every case.
pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut add = |name: &str, kind, offset, rule: &str, bytes: Vec<u8>| {
        out.push(Case {
            name: name.into(),
            rule: rule.into(),
            kind,
            offset,
            bytes,
        });
    };
    let good = valid();
    let g = &good.bytes;
    let mut b = g.clone();
    b[..4].copy_from_slice(b"FUGG");
    add("magic", BadMagic, 0, "the magic is GGUF", b);
    let mut b = g.clone();
    put_u32(&mut b, 4, 1);
    add(
        "version-1",
        UnsupportedVersion,
        4,
        "the version is 2 or 3",
        b,
    );
    let mut b = g.clone();
    put_u32(&mut b, 4, 0x0300_0000);
    add(
        "version-big-endian",
        UnsupportedVersion,
        4,
        "the version is 2 or 3 (a byte-swapped 3)",
        b,
    );
    add(
        "truncated-header",
        Truncated,
        8,
        "the header's counts are in the file",
        g[..10].to_vec(),
    );
    add(
        "truncated-data",
        Truncated,
        good.tensors[1].data_at,
        "every tensor's data is in the file (the last one byte short)",
        g[..good.tensors[1].data_at as usize + 33].to_vec(),
    );
    let mut b = g.clone();
    put_u64(&mut b, 8, u64::MAX);
    add(
        "tensor-count-unholdable",
        TooManyTensors,
        8,
        "tensor_count fits the bytes left (24 bytes per tensor info)",
        b,
    );
    let mut b = g.clone();
    put_u64(&mut b, 16, u64::MAX);
    add(
        "kv-count-unholdable",
        TooManyKvs,
        16,
        "kv_count fits the bytes left (14 bytes per pair)",
        b,
    );
    let w = one_kv("arr", RawValue::array_raw(6, 1 << 40, &[0; 15]));
    add(
        "array-too-many-elements",
        TooManyElements,
        w.kvs[0].value_at + 4,
        "an array's count fits the bytes left and ggml's 2^30 cap",
        w.bytes,
    );
    let mut b = g.clone();
    b[good.kvs[0].key_at as usize + 8 + 3] = 0xFF;
    add(
        "key-not-utf8",
        BadString,
        good.kvs[0].key_at + 8 + 3,
        "strings are UTF-8",
        b,
    );
    let mut b = g.clone();
    put_u64(&mut b, good.kvs[0].key_at, (1 << 30) + 1);
    add(
        "string-over-cap",
        BadString,
        good.kvs[0].key_at,
        "a string is at most 1 GiB",
        b,
    );
    let mut w = GgufWriter::new(3);
    w.kv("ok", RawValue::u8(1)).kv("", RawValue::u8(1));
    let w = w.finish();
    add(
        "key-empty",
        EmptyKey,
        w.kvs[1].key_at,
        "a key is not empty",
        w.bytes,
    );
    let mut b = g.clone();
    put_u32(&mut b, good.kvs[1].type_at, 13);
    add(
        "value-type-13",
        BadValueType,
        good.kvs[1].type_at,
        "a value type is 0..=12",
        b,
    );
    let w = one_kv("nested", RawValue::array_raw(9, 0, &[]));
    add(
        "array-of-arrays",
        BadValueType,
        w.kvs[0].value_at,
        "an array's elements are not arrays",
        w.bytes,
    );
    let w = one_kv(
        "flag",
        RawValue {
            type_code: 7,
            payload: vec![2],
        },
    );
    add(
        "bool-2",
        BadBool,
        w.kvs[0].value_at,
        "a bool is 0 or 1",
        w.bytes,
    );
    let mut w = GgufWriter::new(3);
    w.kv("k", RawValue::u8(1))
        .kv("j", RawValue::u8(2))
        .kv("k", RawValue::u8(3));
    let w = w.finish();
    add(
        "key-duplicate",
        DuplicateKey,
        w.kvs[2].key_at,
        "keys are unique",
        w.bytes,
    );
    let mut w = GgufWriter::new(3);
    w.kv("general.alignment", RawValue::u32(13))
        .tensor("t", &[4], GgmlType::I8, vec![1; 4]);
    let w = w.finish();
    add(
        "alignment-13",
        BadAlignment,
        w.kvs[0].value_at,
        "general.alignment is a non-zero power of two",
        w.bytes,
    );
    let mut w = GgufWriter::new(3);
    w.kv("general.alignment", RawValue::u64(32))
        .tensor("t", &[4], GgmlType::I8, vec![1; 4]);
    let w = w.finish();
    add(
        "alignment-u64",
        BadAlignment,
        w.kvs[0].type_at,
        "general.alignment is a u32",
        w.bytes,
    );
    let mut w = GgufWriter::new(3);
    w.tensor(&"n".repeat(64), &[1], GgmlType::F32, vec![0; 4]);
    let w = w.finish();
    add(
        "tensor-name-64",
        NameTooLong,
        w.tensors[0].name_at,
        "a tensor name is at most 63 bytes",
        w.bytes,
    );
    let mut w = GgufWriter::new(3);
    w.tensor("t", &[1], GgmlType::F32, vec![0; 4])
        .tensor("t", &[1], GgmlType::F32, vec![0; 4]);
    let w = w.finish();
    add(
        "tensor-duplicate",
        DuplicateTensor,
        w.tensors[1].name_at,
        "tensor names are unique",
        w.bytes,
    );
    let w = one_tensor(&[1, 1, 1, 1, 1], 0);
    add(
        "tensor-5-dims",
        BadDims,
        w.tensors[0].n_dims_at,
        "a tensor has at most 4 dimensions",
        w.bytes,
    );
    let w = one_tensor(&[4, 1 << 63], 0);
    add(
        "tensor-dim-negative",
        BadDims,
        w.tensors[0].dims_at + 8,
        "a dimension does not have the sign bit set",
        w.bytes,
    );
    let w = one_tensor(&[1 << 62, 2], 0);
    add(
        "tensor-elements-overflow",
        Overflow,
        w.tensors[0].n_dims_at,
        "a tensor's element count stays below i64::MAX",
        w.bytes,
    );
    let w = one_tensor(&[32], 4);
    add(
        "tensor-type-retired",
        BadTensorType,
        w.tensors[0].type_at,
        "a tensor type is known and not retired (4, q4_2)",
        w.bytes,
    );
    let w = one_tensor(&[33, 2], GgmlType::Q8_0 as u32);
    add(
        "tensor-row-not-blocks",
        BadRowSize,
        w.tensors[0].type_at,
        "the first dimension is a multiple of the type's block (33 for q8_0)",
        w.bytes,
    );
    let mut b = g.clone();
    put_u64(&mut b, good.tensors[0].offset_at, 32);
    add(
        "tensor-offset",
        BadOffset,
        good.tensors[0].offset_at,
        "a tensor's offset is the padded running total of the sizes before it",
        b,
    );
    out
}

/// Writes corpus/malformed/gguf/ (or, with `check`, compares); returns the files that differ.
pub fn generate(corpus: &Path, check: bool) -> Result<Vec<String>> {
    let cases = cases();
    let mut files = vec![(VALID.to_string(), valid().bytes)];
    files.extend(
        cases
            .iter()
            .map(|c| (format!("{}.gguf", c.name), c.bytes.clone())),
    );
    let list: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "file": format!("{}.gguf", c.name), "bytes": c.bytes.len(),
                "rule": c.rule, "kind": format!("{:?}", c.kind), "offset": c.offset,
            })
        })
        .collect();
    let manifest = json!({
        "description": "One GGUF file per rejection class of the harness's GGUF reader (harness/src/gguf, GgufErrorKind), each with the kind and byte offset Gguf::parse reports. valid.gguf is accepted. The GGUF reader runs natively only (the converter is a harness command), so these are checked natively. Generated by harness/src/malformed/gguf.rs (tinyrustlm fixtures).",
        "valid": VALID,
        "cases": list,
    });
    let mut m = serde_json::to_string_pretty(&manifest)?;
    m.push('\n');
    files.push(("manifest.json".into(), m.into_bytes()));
    write_dir(
        &corpus.join("malformed/gguf"),
        "malformed/gguf",
        &files,
        &["gguf"],
        check,
    )
}
