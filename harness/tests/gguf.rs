//! The GGUF reader: valid files read back, one malformed file per rejection rule (exact kind and
//! offset), the two reference GGUFs in ../shared, the `llama` tokenizer and hparams mapping, and
//! proptests that no input makes the reader panic.

use std::path::PathBuf;

use harness::gguf::write::{GgufWriter, RawValue, Written};
use harness::gguf::{
    llama_hparams, llama_vocab, GgmlType, Gguf, GgufErrorKind as K, Value, ValueType,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use runtime::format::{TokenType, TokenizerKind};

fn shared_file(rel: &str) -> Option<Vec<u8>> {
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let base = if local.is_dir() {
        local
    } else {
        PathBuf::from("/work/shared")
    };
    let path = base.join(rel);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) => {
            println!("skipping: {} is absent", path.display());
            None
        }
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A small valid v3 file with every scalar type, three array kinds and three tensors.
fn small() -> Written {
    let mut w = GgufWriter::new(3);
    w.kv("general.architecture", RawValue::str("llama"))
        .kv("t.u8", RawValue::u8(7))
        .kv(
            "t.i8",
            RawValue {
                type_code: 1,
                payload: vec![0xFE],
            },
        )
        .kv(
            "t.u16",
            RawValue {
                type_code: 2,
                payload: 513u16.to_le_bytes().to_vec(),
            },
        )
        .kv(
            "t.i16",
            RawValue {
                type_code: 3,
                payload: (-3i16).to_le_bytes().to_vec(),
            },
        )
        .kv("t.u32", RawValue::u32(70_000))
        .kv("t.i32", RawValue::i32(-5))
        .kv("t.f32", RawValue::f32(1.5))
        .kv("t.bool", RawValue::bool(true))
        .kv("t.u64", RawValue::u64(1 << 40))
        .kv(
            "t.i64",
            RawValue {
                type_code: 11,
                payload: (-9i64).to_le_bytes().to_vec(),
            },
        )
        .kv("t.f64", RawValue::f64(-0.25))
        .kv("t.strs", RawValue::str_array(&["a", "\u{2581}b", ""]))
        .kv("t.f32s", RawValue::f32_array(&[0.5, -1.0]))
        .kv("t.i32s", RawValue::i32_array(&[1, 6, 3]))
        .kv("t.bools", RawValue::array_raw(7, 3, &[0, 1, 1]))
        .kv("t.empty", RawValue::array_raw(8, 0, &[]));
    w.tensor(
        "a",
        &[3, 2],
        GgmlType::F32,
        f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
    )
    .tensor("b", &[64], GgmlType::Q8_0, (0..68).collect())
    .tensor("c", &[32, 2], GgmlType::Q4_0, (100..136).collect());
    w.finish()
}

#[track_caller]
fn expect_err(bytes: &[u8], kind: K, offset: u64) {
    match Gguf::parse(bytes) {
        Ok(_) => panic!("accepted; expected {kind:?} at {offset}"),
        Err(e) => {
            assert_eq!((e.kind, e.offset), (kind, offset), "{e}");
            assert!(!e.message.is_empty());
            assert!(e.to_string().contains(&format!("at byte {offset}")), "{e}");
        }
    }
}

fn put_u32(b: &mut [u8], at: u64, v: u32) {
    b[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: u64, v: u64) {
    b[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
}

/// A one-tensor file whose tensor has the given raw dims and type code (and no data).
fn one_tensor(dims: &[u64], type_code: u32) -> Written {
    let mut w = GgufWriter::new(3);
    w.tensor_raw("t", dims, type_code, Vec::new());
    w.finish()
}

#[test]
fn small_file_reads_back() {
    let w = small();
    let g = Gguf::parse(&w.bytes).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 32);
    assert_eq!(g.data_offset(), w.data_offset);
    assert_eq!(g.data_offset() % 32, 0);
    assert_eq!(g.get_str("general.architecture"), Some("llama"));
    assert_eq!(g.kv("t.u8"), Some(&Value::U8(7)));
    assert_eq!(g.kv("t.i8"), Some(&Value::I8(-2)));
    assert_eq!(g.kv("t.u16"), Some(&Value::U16(513)));
    assert_eq!(g.kv("t.i16"), Some(&Value::I16(-3)));
    assert_eq!(g.get_u32("t.u32"), Some(70_000));
    assert_eq!(g.get_i32("t.i32"), Some(-5));
    assert_eq!(g.get_f32("t.f32"), Some(1.5));
    assert_eq!(g.get_bool("t.bool"), Some(true));
    assert_eq!(g.get_u64("t.u64"), Some(1 << 40));
    assert_eq!(g.kv("t.i64"), Some(&Value::I64(-9)));
    assert_eq!(g.kv("t.f64"), Some(&Value::F64(-0.25)));
    // Typed getters are exact: a u32 is not an i32, a missing key is None.
    assert_eq!(g.get_i32("t.u32"), None);
    assert_eq!(g.get_u32("missing"), None);
    assert_eq!(g.get_str_array("t.strs"), Some(&["a", "\u{2581}b", ""][..]));
    let f = g.get_array("t.f32s").unwrap();
    assert_eq!((f.elem_type(), f.len()), (ValueType::F32, 2));
    assert_eq!(f.to_f32s(), Some(vec![0.5, -1.0]));
    assert_eq!(f.to_i32s(), None);
    assert_eq!(f.get(1), Some(Value::F32(-1.0)));
    assert_eq!(f.get(2), None);
    assert_eq!(
        g.get_array("t.i32s").unwrap().to_i32s(),
        Some(vec![1, 6, 3])
    );
    let bools: Vec<Value> = g.get_array("t.bools").unwrap().iter().collect();
    assert_eq!(
        bools,
        vec![Value::Bool(false), Value::Bool(true), Value::Bool(true)]
    );
    assert!(g.get_array("t.empty").unwrap().is_empty());
    assert_eq!(g.kv("t.strs").unwrap().type_label(), "arr[str,3]");

    let keys: Vec<&str> = g.kvs().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 17);
    assert_eq!((keys[0], keys[16]), ("general.architecture", "t.empty"));

    let names: Vec<&str> = g.tensors().iter().map(|t| t.name()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let a = g.tensor("a").unwrap();
    assert_eq!(
        (a.dims(), a.ggml_type(), a.offset(), a.n_elements()),
        (&[3, 2][..], GgmlType::F32, 0, 6)
    );
    assert_eq!(a.data(), &f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])[..]);
    let b = g.tensor("b").unwrap();
    assert_eq!((b.offset(), b.data().len(), b.data()[67]), (32, 68, 67));
    let c = g.tensor("c").unwrap();
    assert_eq!((c.offset(), c.ggml_type().name()), (128, "q4_0"));
    assert_eq!(c.data(), &(100..136).collect::<Vec<u8>>()[..]);
    assert!(g.tensor("d").is_none());
}

#[test]
fn version_2_custom_alignments_trailing_bytes_and_empty_files_are_accepted() {
    let mut v2 = small().bytes;
    put_u32(&mut v2, 4, 2);
    assert_eq!(Gguf::parse(&v2).unwrap().version(), 2);

    for align in [1u32, 8, 64, 4096] {
        let mut w = GgufWriter::new(3);
        w.alignment(align)
            .tensor("x", &[5], GgmlType::I8, vec![1, 2, 3, 4, 5])
            .tensor("y", &[2], GgmlType::F16, vec![9, 9, 9, 9]);
        let w = w.finish();
        let g = Gguf::parse(&w.bytes).unwrap();
        assert_eq!(g.alignment(), u64::from(align));
        assert_eq!(g.data_offset() % u64::from(align), 0);
        let y = g.tensor("y").unwrap();
        assert_eq!(
            (y.offset(), y.data()),
            (5u64.next_multiple_of(align.into()), &[9u8; 4][..])
        );
    }

    // Trailing bytes after the last tensor are ignored, as ggml does.
    let w = small();
    let mut longer = w.bytes.clone();
    longer.extend_from_slice(b"trailing garbage");
    let g = Gguf::parse(&longer).unwrap();
    assert_eq!(
        g.tensor("c").unwrap().data(),
        &(100..136).collect::<Vec<u8>>()[..]
    );

    // The last tensor's padding may be missing (llama.cpp's per-tensor bounds rule).
    let c = w.tensors[2];
    assert!(Gguf::parse(&w.bytes[..c.data_at as usize + 36]).is_ok());

    // No tensors, no metadata: 24 bytes, data section right after the header.
    let empty = GgufWriter::new(3).finish();
    assert_eq!(empty.bytes.len(), 24);
    let g = Gguf::parse(&empty.bytes).unwrap();
    assert_eq!(
        (g.tensors().len(), g.kvs().count(), g.data_offset()),
        (0, 0, 24)
    );
}

#[test]
fn zero_sized_and_scalar_tensors_are_accepted_as_ggml_does() {
    let mut w = GgufWriter::new(3);
    w.tensor("empty", &[0, 7], GgmlType::Q8_0, Vec::new())
        .tensor("scalar", &[], GgmlType::F32, 2.0f32.to_le_bytes().to_vec());
    let w = w.finish();
    let g = Gguf::parse(&w.bytes).unwrap();
    let e = g.tensor("empty").unwrap();
    assert_eq!((e.n_elements(), e.data().len(), e.offset()), (0, 0, 0));
    let s = g.tensor("scalar").unwrap();
    // A zero dimension makes any other dimensions valid (ggml checks the product only when it
    // is non-zero); the element count must still come out as 0, not overflow.
    let w = one_tensor(&[1 << 40, 1 << 40, 1 << 40, 0], GgmlType::F32 as u32);
    let g2 = Gguf::parse(&w.bytes).unwrap();
    assert_eq!(g2.tensors()[0].n_elements(), 0);
    assert_eq!(
        (s.dims().len(), s.n_elements(), s.data()),
        (0, 1, &2.0f32.to_le_bytes()[..])
    );
}

#[test]
fn header_rules() {
    let good = small().bytes;
    let mut b = good.clone();
    b[..4].copy_from_slice(b"FUGG");
    expect_err(&b, K::BadMagic, 0);
    expect_err(b"", K::Truncated, 0);
    expect_err(b"GGU", K::Truncated, 0);
    expect_err(&good[..6], K::Truncated, 4);
    expect_err(&good[..10], K::Truncated, 8);
    expect_err(&good[..20], K::Truncated, 16);

    for version in [0u32, 1, 4, 0x0300_0000, u32::MAX] {
        let mut b = good.clone();
        put_u32(&mut b, 4, version);
        expect_err(&b, K::UnsupportedVersion, 4);
    }

    let mut b = good.clone();
    put_u64(&mut b, 8, u64::MAX);
    expect_err(&b, K::TooManyTensors, 8);
    let mut b = good.clone();
    put_u64(&mut b, 16, u64::MAX);
    expect_err(&b, K::TooManyKvs, 16);
    // Both counts bad: the tensor count is checked first, as ggml does.
    put_u64(&mut b, 8, u64::MAX);
    expect_err(&b, K::TooManyTensors, 8);
    let mut b = good.clone();
    put_u64(&mut b, 16, (good.len() as u64 - 24) / 14 + 1);
    expect_err(&b, K::TooManyKvs, 16);

    // A tensor count that fits the bytes after the header but not those after the metadata.
    let mut w = GgufWriter::new(3);
    w.kv("big", RawValue::str(&"x".repeat(2400)));
    let mut b = w.finish().bytes;
    put_u64(&mut b, 8, 100);
    expect_err(&b, K::TooManyTensors, 8);
}

/// The reader's own caps (`limits::GGUF_READER_*`), below ggml's: counts that the file's bytes
/// could hold but that would make the reader hold gigabytes (about a hundred bytes per pair,
/// tensor or string) are refused before anything is allocated for them; the caps themselves
/// are accepted.
#[test]
fn the_readers_caps_on_pairs_tensors_and_strings() {
    use harness::limits::{GGUF_READER_MAX_KVS, GGUF_READER_MAX_STRINGS, GGUF_READER_MAX_TENSORS};
    // Header: magic, version 3, tensor count, pair count; then `n` one-byte keys of u8 0.
    let pairs = |n: u64| {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(n.to_le_bytes());
        for i in 0..n {
            // Unique keys of four characters from 64 (16.7M of them).
            let key: Vec<u8> = (0..4).map(|k| b'0' + ((i >> (6 * k)) & 63) as u8).collect();
            b.extend(4u64.to_le_bytes());
            b.extend(&key);
            b.extend(ValueType::U8.code().to_le_bytes());
            b.push(0);
        }
        b
    };
    let at_cap = pairs(GGUF_READER_MAX_KVS);
    assert_eq!(Gguf::parse(&at_cap).unwrap().kvs().count(), 65_536);
    let mut over = pairs(GGUF_READER_MAX_KVS + 1);
    expect_err(&over, K::TooManyKvs, 16);
    // The cap is checked before the bytes left: a huge count gives the same refusal.
    put_u64(&mut over, 16, 1 << 40);
    expect_err(&over, K::TooManyKvs, 16);

    // Tensors: the count alone decides, before any tensor info is read.
    let mut b = small().bytes;
    put_u64(&mut b, 8, GGUF_READER_MAX_TENSORS + 1);
    let e = Gguf::parse(&b).unwrap_err();
    assert_eq!((e.kind, e.offset), (K::TooManyTensors, 8));
    assert!(e.message.contains("this reader's limit of 65536"), "{e}");

    // Strings: 2^20 in all string arrays together, however they are split.
    let empty_strings =
        |n: u64| RawValue::array_raw(ValueType::Str.code(), n, &vec![0u8; 8 * n as usize]);
    let half = GGUF_READER_MAX_STRINGS / 2;
    let mut w = GgufWriter::new(3);
    w.kv("a", empty_strings(half));
    w.kv("b", empty_strings(half));
    assert!(Gguf::parse(&w.finish().bytes).is_ok());
    let mut w = GgufWriter::new(3);
    w.kv("a", empty_strings(half));
    w.kv("b", empty_strings(half + 1));
    let written = w.finish();
    // The second array's length field: after the header (24), the first pair (key 9, type 4,
    // element type 4, length 8, strings) and the second key and types.
    let second_len_at = 24 + (9 + 4 + 4 + 8 + 8 * half) + 9 + 4 + 4;
    let e = Gguf::parse(&written.bytes).unwrap_err();
    assert_eq!(
        (e.kind, e.offset),
        (K::TooManyElements, second_len_at),
        "{e}"
    );
    assert!(e.message.contains("1048576 strings in all"), "{e}");
}

#[test]
fn key_and_value_rules() {
    let w = small();
    let arch = w.kvs[0];

    let mut b = w.bytes.clone();
    put_u64(&mut b, arch.key_at, 1 << 20);
    expect_err(&b, K::Truncated, arch.key_at);
    put_u64(&mut b, arch.key_at, (1 << 30) + 1);
    expect_err(&b, K::BadString, arch.key_at);

    let mut b = w.bytes.clone();
    b[arch.key_at as usize + 8 + 3] = 0xFF;
    expect_err(&b, K::BadString, arch.key_at + 8 + 3);

    // A string value that is not UTF-8 (an overlong encoding).
    let mut b = w.bytes.clone();
    b[arch.value_at as usize + 8..][..2].copy_from_slice(&[0xC0, 0x80]);
    expect_err(&b, K::BadString, arch.value_at + 8);

    let mut b = w.bytes.clone();
    put_u32(&mut b, arch.type_at, 13);
    expect_err(&b, K::BadValueType, arch.type_at);

    let mut e = GgufWriter::new(3);
    e.kv("ok", RawValue::u8(1)).kv("", RawValue::u8(1));
    let e = e.finish();
    expect_err(&e.bytes, K::EmptyKey, e.kvs[1].key_at);

    let mut e = GgufWriter::new(3);
    e.kv("nested", RawValue::array_raw(9, 0, &[]));
    let e = e.finish();
    expect_err(&e.bytes, K::BadValueType, e.kvs[0].value_at);

    let mut e = GgufWriter::new(3);
    e.kv("elem", RawValue::array_raw(77, 0, &[]));
    let e = e.finish();
    expect_err(&e.bytes, K::BadValueType, e.kvs[0].value_at);

    let mut e = GgufWriter::new(3);
    e.kv(
        "flag",
        RawValue {
            type_code: 7,
            payload: vec![2],
        },
    );
    let e = e.finish();
    expect_err(&e.bytes, K::BadBool, e.kvs[0].value_at);

    let mut e = GgufWriter::new(3);
    e.kv("flags", RawValue::array_raw(7, 3, &[0, 1, 5]));
    let e = e.finish();
    expect_err(&e.bytes, K::BadBool, e.kvs[0].value_at + 12 + 2);

    let mut e = GgufWriter::new(3);
    e.kv("k", RawValue::u8(1))
        .kv("j", RawValue::u8(2))
        .kv("k", RawValue::u8(3));
    let e = e.finish();
    expect_err(&e.bytes, K::DuplicateKey, e.kvs[2].key_at);

    for (elem, n) in [(6u32, 1u64 << 40), (8, 3), (0, (1 << 30) + 1), (12, 2)] {
        let mut e = GgufWriter::new(3);
        e.kv("arr", RawValue::array_raw(elem, n, &[0; 15]));
        let e = e.finish();
        expect_err(&e.bytes, K::TooManyElements, e.kvs[0].value_at + 4);
    }
    // A count that fits the bytes left but whose elements do not (strings longer than left).
    let mut e = GgufWriter::new(3);
    e.kv("arr", RawValue::array_raw(8, 1, &100u64.to_le_bytes()));
    let e = e.finish();
    expect_err(&e.bytes, K::Truncated, e.kvs[0].value_at + 12);

    // A scalar cut short.
    let mut e = GgufWriter::new(3);
    e.kv("x", RawValue::u64(5));
    let e = e.finish();
    expect_err(
        &e.bytes[..e.bytes.len() - 1],
        K::Truncated,
        e.kvs[0].value_at,
    );
}

#[test]
fn alignment_rules() {
    let with_alignment = |value: RawValue| {
        let mut w = GgufWriter::new(3);
        w.kv("general.alignment", value)
            .tensor("t", &[4], GgmlType::I8, vec![1; 4]);
        w.finish()
    };
    for bad in [
        RawValue::i32(32),
        RawValue::u64(32),
        RawValue::array_raw(4, 1, &32u32.to_le_bytes()),
    ] {
        let w = with_alignment(bad);
        expect_err(&w.bytes, K::BadAlignment, w.kvs[0].type_at);
    }
    for bad in [0u32, 13, 96, u32::MAX] {
        let w = with_alignment(RawValue::u32(bad));
        expect_err(&w.bytes, K::BadAlignment, w.kvs[0].value_at);
    }
    // 2^31 is a valid alignment; the data section it implies lies beyond this small file.
    let w = with_alignment(RawValue::u32(32));
    let mut b = w.bytes.clone();
    put_u32(&mut b, w.kvs[0].value_at, 1 << 31);
    expect_err(&b, K::Truncated, w.header_end);
}

#[test]
fn tensor_info_rules() {
    let name63 = "n".repeat(63);
    let mut w = GgufWriter::new(3);
    w.tensor(&name63, &[1], GgmlType::F32, vec![0; 4]);
    assert!(Gguf::parse(&w.finish().bytes).is_ok());
    let mut w = GgufWriter::new(3);
    w.tensor("ok", &[1], GgmlType::F32, vec![0; 4]).tensor(
        &"n".repeat(64),
        &[1],
        GgmlType::F32,
        vec![0; 4],
    );
    let w = w.finish();
    expect_err(&w.bytes, K::NameTooLong, w.tensors[1].name_at);

    let mut w = GgufWriter::new(3);
    w.tensor("t", &[1], GgmlType::F32, vec![0; 4])
        .tensor("u", &[1], GgmlType::F32, vec![0; 4])
        .tensor("t", &[1], GgmlType::F32, vec![0; 4]);
    let w = w.finish();
    expect_err(&w.bytes, K::DuplicateTensor, w.tensors[2].name_at);

    let w = one_tensor(&[1, 1, 1, 1, 1], 0);
    expect_err(&w.bytes, K::BadDims, w.tensors[0].n_dims_at);
    let w = one_tensor(&[4, 1 << 63], 0);
    expect_err(&w.bytes, K::BadDims, w.tensors[0].dims_at + 8);

    // ggml's element-count rule: the running product must stay below i64::MAX.
    let w = one_tensor(&[1 << 62, 2], 0);
    expect_err(&w.bytes, K::Overflow, w.tensors[0].n_dims_at);
    let w = one_tensor(&[i64::MAX as u64], 24);
    expect_err(&w.bytes, K::Overflow, w.tensors[0].n_dims_at);
    let w = one_tensor(&[3, 1 << 31, 1 << 31], 24);
    expect_err(&w.bytes, K::Overflow, w.tensors[0].n_dims_at);
    // Just below: accepted as a shape, then refused because its bytes are not in the file.
    let w = one_tensor(&[1 << 31, 1 << 31], 24);
    expect_err(&w.bytes, K::Truncated, w.data_offset);

    // 2^62 i64 elements are 2^65 bytes.
    let w = one_tensor(&[1 << 62], GgmlType::I64 as u32);
    expect_err(&w.bytes, K::Overflow, w.tensors[0].type_at);

    for code in [4u32, 5, 31, 36, 41, 1000, u32::MAX] {
        let w = one_tensor(&[32], code);
        expect_err(&w.bytes, K::BadTensorType, w.tensors[0].type_at);
    }
    let err = Gguf::parse(&one_tensor(&[32], 4).bytes).unwrap_err();
    assert!(err.message.contains("q4_2"), "{err}");

    for (ty, row) in [
        (GgmlType::Q8_0, 33u64),
        (GgmlType::Q4_0, 16),
        (GgmlType::Q4K, 32),
    ] {
        let w = one_tensor(&[row, 2], ty as u32);
        expect_err(&w.bytes, K::BadRowSize, w.tensors[0].type_at);
    }
    // Only the first dimension must be a multiple of the block.
    let mut w = GgufWriter::new(3);
    w.tensor("q", &[32, 3], GgmlType::Q8_0, vec![0; 3 * 34]);
    assert!(Gguf::parse(&w.finish().bytes).is_ok());

    let w = small();
    let mut b = w.bytes.clone();
    put_u64(&mut b, w.tensors[0].offset_at, 32);
    expect_err(&b, K::BadOffset, w.tensors[0].offset_at);
    let mut b = w.bytes.clone();
    put_u64(&mut b, w.tensors[2].offset_at, 96);
    expect_err(&b, K::BadOffset, w.tensors[2].offset_at);

    // Three i8 tensors of 0x7FFF_FFFF_FFFF_FFC0 elements: the third's padded end overflows u64.
    let x = 0x7FFF_FFFF_FFFF_FFC0u64;
    let mut w = GgufWriter::new(3);
    for name in ["a", "b", "c"] {
        w.tensor_raw(name, &[x], GgmlType::I8 as u32, Vec::new());
    }
    let w = w.finish();
    let mut b = w.bytes.clone();
    put_u64(&mut b, w.tensors[1].offset_at, x);
    put_u64(&mut b, w.tensors[2].offset_at, 2 * x);
    expect_err(&b, K::Overflow, w.tensors[2].offset_at);
}

#[test]
fn data_section_rules() {
    let w = small();
    let c = w.tensors[2];
    expect_err(&w.bytes[..c.data_at as usize + 35], K::Truncated, c.data_at);
    expect_err(
        &w.bytes[..w.data_offset as usize],
        K::Truncated,
        w.tensors[0].data_at,
    );

    // The file ends inside the padding before the data section.
    let mut e = GgufWriter::new(3);
    e.tensor("z", &[0], GgmlType::F32, Vec::new());
    let e = e.finish();
    assert_ne!(
        e.header_end % 32,
        0,
        "the header must end unaligned for this case"
    );
    expect_err(
        &e.bytes[..e.header_end as usize],
        K::Truncated,
        e.header_end,
    );
    assert!(Gguf::parse(&e.bytes[..e.data_offset as usize]).is_ok());
}

#[test]
fn every_strict_prefix_of_the_header_and_data_is_refused() {
    let w = small();
    let end = w.tensors[2].data_at as usize + 36;
    for len in 0..end {
        let err = Gguf::parse(&w.bytes[..len]).expect_err(&format!("prefix {len} accepted"));
        assert!(
            matches!(
                err.kind,
                K::Truncated | K::TooManyKvs | K::TooManyTensors | K::TooManyElements
            ),
            "prefix {len}: {err}"
        );
        assert!(err.offset < w.bytes.len() as u64, "prefix {len}: {err}");
    }
    for len in end..=w.bytes.len() {
        assert!(Gguf::parse(&w.bytes[..len]).is_ok(), "prefix {len}");
    }
}

fn summary(v: &Value) -> String {
    match v {
        Value::Array(a) => {
            let head: Vec<String> = a.iter().take(3).map(|x| summary(&x)).collect();
            format!(
                "{} [{}{}]",
                v.type_label(),
                head.join(", "),
                if a.len() > 3 { ", ..." } else { "" }
            )
        }
        Value::Str(s) => format!("str {s:?}"),
        other => format!("{other:?}"),
    }
}

#[test]
fn stories260k_gguf_parses_and_matches_the_llama2c_checkpoint() {
    let Some(bytes) = shared_file("models/stories260K/stories260K.gguf") else {
        return;
    };
    let g = Gguf::parse(&bytes).unwrap();
    println!(
        "stories260K.gguf: GGUF v{}, alignment {}, data at {}",
        g.version(),
        g.alignment(),
        g.data_offset()
    );
    for (k, v) in g.kvs() {
        println!("  kv {k} = {}", summary(v));
    }
    for t in g.tensors() {
        println!(
            "  tensor {:<24} {:>5} {:?} offset {}",
            t.name(),
            t.ggml_type().name(),
            t.dims(),
            t.offset()
        );
    }
    let h = llama_hparams(&g).unwrap();
    println!("  hparams {h:?}");
    assert_eq!(
        (h.dim, h.n_layers, h.n_heads, h.n_kv_heads, h.head_dim),
        (64, 5, 8, 4, 8)
    );
    assert_eq!(
        (h.ffn_dim, h.vocab_size, h.context_length),
        (172, 512, 2048)
    );
    assert!(g.tensors().iter().all(|t| t.ggml_type() == GgmlType::F32));

    let v = llama_vocab(&g).unwrap();
    assert_eq!(v.pieces.len(), 512);
    assert_eq!(
        (v.bos, v.eos, v.stop.as_slice()),
        (Some(1), Some(2), &[2u32, 1][..])
    );
    // Its padding_token_id is u32::MAX: no padding token.
    assert_eq!((v.unk, v.pad), (Some(0), None));
    assert!(v.byte_fallback);
    assert_eq!(&v.pieces[3], b"<0x00>");
    assert_eq!(v.types[3], TokenType::Byte);

    // The embedding table holds the same bytes as the llama2.c checkpoint's (after its 28-byte
    // header), and is [dim, vocab] in ggml order.
    let Some(bin) = shared_file("models/stories260K/stories260K.bin") else {
        return;
    };
    let emb = g.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dims(), &[64, 512]);
    assert_eq!(emb.data(), &bin[28..28 + 512 * 64 * 4]);
}

#[test]
fn llama_spm_vocab_gguf_maps_to_a_32000_token_vocab() {
    let Some(bytes) = shared_file("vocab/ggml-vocab-llama-spm.gguf") else {
        return;
    };
    let g = Gguf::parse(&bytes).unwrap();
    println!(
        "ggml-vocab-llama-spm.gguf: GGUF v{}, {} tensors",
        g.version(),
        g.tensors().len()
    );
    for (k, v) in g.kvs() {
        println!("  kv {k} = {}", summary(v));
    }
    let v = llama_vocab(&g).unwrap();
    assert_eq!(v.kind, TokenizerKind::SentencePiece);
    assert_eq!(
        (v.pieces.len(), v.scores.len(), v.types.len()),
        (32000, 32000, 32000)
    );
    assert_eq!((v.unk, v.bos, v.eos), (Some(0), Some(1), Some(2)));
    // EOS, then BOS (a model emitting BOS starts another document).
    assert_eq!(v.stop, vec![2, 1]);
    assert!(v.byte_fallback && v.add_bos && v.add_dummy_prefix);
    assert_eq!(
        (&v.pieces[13], v.types[13]),
        (&b"<0x0A>"[..], TokenType::Byte)
    );
    assert_eq!(v.types[0], TokenType::Unknown);
    assert_eq!(v.types[1], TokenType::Control);
    // "▁" became a real space everywhere.
    assert!(v
        .pieces
        .iter()
        .all(|p| !String::from_utf8_lossy(p).contains('\u{2581}')));
    assert_eq!(&v.pieces[29871], b" ");
    assert!(v.scores.iter().all(|s| s.is_finite()));
}

/// A vocab-only GGUF with `extra` metadata appended after a 260-token llama tokenizer.
fn tokenizer_file(extra: &[(&str, RawValue)], token_types: bool) -> Vec<u8> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    tokens.extend((0..=255).map(|b| format!("<0x{b:02X}>")));
    tokens.push("\u{2581}hi".into());
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let mut types = vec![2, 3, 3];
    types.extend([6; 256]);
    types.push(1);
    let mut w = GgufWriter::new(3);
    w.kv("general.architecture", RawValue::str("llama"))
        .kv("tokenizer.ggml.model", RawValue::str("llama"))
        .kv("tokenizer.ggml.tokens", RawValue::str_array(&refs));
    if token_types {
        w.kv("tokenizer.ggml.token_type", RawValue::i32_array(&types));
    }
    for (k, v) in extra {
        w.kv(k, v.clone());
    }
    w.finish().bytes
}

#[test]
fn llama_vocab_defaults_and_refusals() {
    let b = tokenizer_file(&[], false);
    let v = llama_vocab(&Gguf::parse(&b).unwrap()).unwrap();
    assert_eq!(v.pieces.len(), 260);
    assert_eq!(&v.pieces[259], b" hi");
    assert_eq!(v.scores, vec![0.0; 260]);
    // Without token_type, <0xXX> pieces are Byte and the rest Normal.
    assert_eq!(
        (v.types[3], v.types[0], v.types[259]),
        (TokenType::Byte, TokenType::Normal, TokenType::Normal)
    );
    assert_eq!(
        (v.unk, v.bos, v.eos, v.pad),
        (Some(0), Some(1), Some(2), None)
    );
    assert!(v.byte_fallback && v.add_bos && v.add_dummy_prefix);

    let b = tokenizer_file(
        &[
            ("tokenizer.ggml.add_bos_token", RawValue::bool(false)),
            ("tokenizer.ggml.add_space_prefix", RawValue::bool(false)),
            ("tokenizer.ggml.eos_token_id", RawValue::u32(259)),
            ("tokenizer.ggml.padding_token_id", RawValue::u32(0)),
            ("tokenizer.ggml.unknown_token_id", RawValue::u32(u32::MAX)),
            ("llama.vocab_size", RawValue::u32(260)),
        ],
        true,
    );
    let v = llama_vocab(&Gguf::parse(&b).unwrap()).unwrap();
    assert!(!v.add_bos && !v.add_dummy_prefix);
    assert_eq!(
        (v.eos, v.pad, v.stop.as_slice()),
        (Some(259), Some(0), &[259u32, 1][..])
    );
    assert_eq!(v.unk, None, "u32::MAX means no token");
    assert_eq!(v.types[0], TokenType::Unknown);

    // Byte fallback needs all 256 byte pieces typed Byte.
    let mut types = vec![2, 3, 3];
    types.extend([6; 256]);
    types.push(1);
    types[100] = 1;
    let b = tokenizer_file(&[], false);
    let mut w = GgufWriter::new(3);
    let g = Gguf::parse(&b).unwrap();
    for (k, v) in g.kvs() {
        let raw = match v {
            Value::Str(s) => RawValue::str(s),
            Value::Array(a) => RawValue::str_array(a.as_strs().unwrap()),
            _ => unreachable!(),
        };
        w.kv(k, raw);
    }
    w.kv("tokenizer.ggml.token_type", RawValue::i32_array(&types));
    assert!(
        !llama_vocab(&Gguf::parse(&w.finish().bytes).unwrap())
            .unwrap()
            .byte_fallback
    );

    let refused = |extra: &[(&str, RawValue)], needle: &str| {
        let b = tokenizer_file(extra, true);
        let err = llama_vocab(&Gguf::parse(&b).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err} lacks {needle}");
    };
    refused(&[("llama.vocab_size", RawValue::u32(32000))], "32000");
    refused(
        &[("tokenizer.ggml.eos_token_id", RawValue::u32(260))],
        "eos_token_id",
    );
    refused(&[("tokenizer.ggml.bos_token_id", RawValue::i32(1))], "i32");
    refused(
        &[("tokenizer.ggml.scores", RawValue::f32_array(&[0.0; 3]))],
        "3 entries",
    );
    let mut scores = vec![0.0f32; 260];
    scores[7] = f32::NAN;
    refused(
        &[("tokenizer.ggml.scores", RawValue::f32_array(&scores))],
        "scores[7]",
    );

    let mut w = GgufWriter::new(3);
    w.kv("tokenizer.ggml.model", RawValue::str("gpt2"))
        .kv("tokenizer.ggml.tokens", RawValue::str_array(&["a"]));
    let err = llama_vocab(&Gguf::parse(&w.finish().bytes).unwrap()).unwrap_err();
    assert!(err.to_string().contains("'gpt2'"), "{err}");

    let mut w = GgufWriter::new(3);
    w.kv("tokenizer.ggml.model", RawValue::str("llama"))
        .kv(
            "tokenizer.ggml.tokens",
            RawValue::str_array(&["<unk>", "<s>", "</s>", "x"]),
        )
        .kv(
            "tokenizer.ggml.token_type",
            RawValue::i32_array(&[2, 3, 3, 6]),
        );
    let err = llama_vocab(&Gguf::parse(&w.finish().bytes).unwrap()).unwrap_err();
    assert!(err.to_string().contains("type Byte"), "{err}");
    let mut w = GgufWriter::new(3);
    w.kv("tokenizer.ggml.model", RawValue::str("llama"))
        .kv(
            "tokenizer.ggml.tokens",
            RawValue::str_array(&["<unk>", "<s>", "</s>"]),
        )
        .kv("tokenizer.ggml.token_type", RawValue::i32_array(&[2, 3, 0]));
    let err = llama_vocab(&Gguf::parse(&w.finish().bytes).unwrap()).unwrap_err();
    assert!(err.to_string().contains("token_type[2] is 0"), "{err}");
}

fn hparams_file(arch: &str, extra: &[(&str, RawValue)]) -> Vec<u8> {
    let mut w = GgufWriter::new(3);
    w.kv("general.architecture", RawValue::str(arch))
        .kv("llama.embedding_length", RawValue::u32(64))
        .kv("llama.block_count", RawValue::u32(2))
        .kv("llama.feed_forward_length", RawValue::u32(172))
        .kv("llama.attention.head_count", RawValue::u32(8))
        .kv("llama.context_length", RawValue::u32(256))
        .kv("llama.vocab_size", RawValue::u32(300));
    for (k, v) in extra {
        w.kv(k, v.clone());
    }
    w.finish().bytes
}

#[test]
fn llama_hparams_defaults_and_refusals() {
    let h = llama_hparams(&Gguf::parse(&hparams_file("llama", &[])).unwrap()).unwrap();
    assert_eq!(
        (
            h.dim,
            h.n_layers,
            h.ffn_dim,
            h.n_heads,
            h.n_kv_heads,
            h.head_dim
        ),
        (64, 2, 172, 8, 8, 8)
    );
    assert_eq!(
        (h.context_length, h.vocab_size, h.rope_theta, h.rms_eps),
        (256, 300, 10000.0, 1e-5)
    );

    let extra = [
        ("llama.attention.head_count_kv", RawValue::u32(2)),
        ("llama.rope.freq_base", RawValue::f32(500000.0)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            RawValue::f32(1e-6),
        ),
        ("llama.rope.dimension_count", RawValue::u32(8)),
    ];
    let h = llama_hparams(&Gguf::parse(&hparams_file("llama", &extra)).unwrap()).unwrap();
    assert_eq!((h.n_kv_heads, h.rope_theta, h.rms_eps), (2, 500000.0, 1e-6));

    let refused = |arch: &str, extra: &[(&str, RawValue)], needle: &str| {
        let err = llama_hparams(&Gguf::parse(&hparams_file(arch, extra)).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err} lacks {needle}");
    };
    refused("phi2", &[], "'phi2'");
    refused(
        "llama",
        &[("llama.rope.dimension_count", RawValue::u32(4))],
        "dimension_count 4",
    );
    refused(
        "llama",
        &[("llama.attention.head_count_kv", RawValue::u32(3))],
        "head_count_kv 3",
    );
    refused(
        "llama",
        &[("llama.attention.head_count_kv", RawValue::u32(0))],
        "head_count_kv is 0",
    );
    refused(
        "llama",
        &[("llama.rope.freq_base", RawValue::u32(10000))],
        "expected f32",
    );

    let mut w = GgufWriter::new(3);
    w.kv("general.architecture", RawValue::str("llama"));
    let err = llama_hparams(&Gguf::parse(&w.finish().bytes).unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("llama.embedding_length is missing"),
        "{err}"
    );
}

/// One edit of a file.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    /// Overwrite 8 bytes with a value readers trip on (counts, lengths, dims, offsets).
    SetWord(usize, u64),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let word = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(1 << 63),
        Just(1 << 30),
        Just((1 << 30) + 1),
        Just(i64::MAX as u64),
        any::<u64>(),
        0u64..100_000,
    ];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        (any::<usize>(), word).prop_map(|(i, w)| Mutation::SetWord(i, w)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let at = |i: usize| i % bytes.len();
    match m {
        Mutation::FlipBit(i, b) => {
            let i = at(*i);
            bytes[i] ^= 1 << b;
        }
        Mutation::SetByte(i, v) => {
            let i = at(*i);
            bytes[i] = *v;
        }
        Mutation::SetWord(i, w) => {
            let i = at(*i);
            let n = (bytes.len() - i).min(8);
            bytes[i..i + n].copy_from_slice(&w.to_le_bytes()[..n]);
        }
        Mutation::Truncate(i) => bytes.truncate(at(*i)),
        Mutation::Insert(i, v) => {
            let i = at(*i);
            bytes.splice(i..i, v.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let i = at(*i);
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
    }
}

/// Parses and, when accepted, checks what an accepted file promises.
fn parse_checked(bytes: &[u8]) {
    if let Ok(g) = Gguf::parse(bytes) {
        assert!(matches!(g.version(), 2 | 3));
        assert!(g.alignment().is_power_of_two());
        let mut expected = 0;
        for t in g.tensors() {
            let ty = t.ggml_type();
            assert_eq!(t.offset(), expected);
            let size = t.n_elements() / ty.block_size() * ty.block_bytes();
            assert_eq!(t.data().len() as u64, size);
            expected += size.next_multiple_of(g.alignment());
            assert!(g.data_offset() + t.offset() + size <= bytes.len() as u64);
        }
        for (k, _) in g.kvs() {
            assert!(g.kv(k).is_some());
        }
        // The mappers never panic either.
        let _ = llama_vocab(&g);
        let _ = llama_hparams(&g);
    }
}

/// A whole reference GGUF (1.2 MB and 0.7 MB): mutations then land in metadata, tensor infos
/// and tensor data alike, and a mutation in tensor data or a string leaves a file that parses, so
/// the accepted-file checks of [`parse_checked`] run too (a 64 KiB prefix never parsed at all).
fn real_file(rel: &str) -> Option<Vec<u8>> {
    shared_file(rel)
}

proptest! {
    // Failing cases are saved beside this file (tests/ has no lib.rs for proptest's default).
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        parse_checked(&bytes);
        let mut headed = b"GGUF\x03\0\0\0".to_vec();
        headed.extend_from_slice(&bytes);
        parse_checked(&headed);
    }

    #[test]
    fn mutated_small_files_never_panic(muts in prop::collection::vec(mutation(), 1..6)) {
        let mut bytes = small().bytes;
        for m in &muts {
            apply(&mut bytes, m);
        }
        parse_checked(&bytes);
    }

    #[test]
    fn mutated_tokenizer_files_never_panic(muts in prop::collection::vec(mutation(), 1..4)) {
        let mut bytes = tokenizer_file(&[("tokenizer.ggml.scores", RawValue::f32_array(&[0.5; 260]))], true);
        for m in &muts {
            apply(&mut bytes, m);
        }
        parse_checked(&bytes);
    }

    #[test]
    fn mutated_real_files_never_panic(
        muts in prop::collection::vec(mutation(), 1..6),
        which in 0usize..2,
    ) {
        let rel = ["models/stories260K/stories260K.gguf", "vocab/ggml-vocab-llama-spm.gguf"][which];
        if let Some(mut bytes) = real_file(rel) {
            for m in &muts {
                apply(&mut bytes, m);
            }
            parse_checked(&bytes);
        }
    }
}
