//! The malformed-file matrix (corpus/malformed/): one small file per rejection rule of
//! spec/slm.md. Each is built from one valid base model by breaking exactly that rule and then
//! recomputing whatever a later check would otherwise report first (tensor digests, the file
//! digest), so a conforming reader reports the case's expected error code. `tinyrustlm fixtures`
//! writes the files and manifest.json; `--check` holds them to this code.

use crate::fixtures::{encode_tensor, SplitMix64};
use anyhow::{Context, Result};
use runtime::format::header::{encode_header, Sections, ARCH_LLAMA, DIGEST_OFFSET};
use runtime::format::{
    file_digest, llama, Config, DType, ModelFile, Pieces, TensorData, TokenType, TokenizerKind,
    Vocab,
};
use runtime::sha256::{sha256, to_hex};
use runtime::{limits, ErrorCode};
use serde_json::{json, Value};
use std::path::Path;

pub mod adapters;
pub mod gguf;
pub mod registry;

/// One malformed file and the error a reader must report for it.
#[derive(Clone, Debug)]
pub struct MalformedCase {
    /// File stem in corpus/malformed/ (lower-case, `-` separated).
    pub name: String,
    /// The rule of spec/slm.md the file breaks, in one line.
    pub rule: String,
    /// The error code a conforming reader reports.
    pub expected: ErrorCode,
    pub bytes: Vec<u8>,
}

impl MalformedCase {
    /// Whether the case is stored in corpus/malformed/. Only the over-budget case is not (it is
    /// 32 MiB of zeros; the manifest says how to generate it).
    pub fn stored(&self) -> bool {
        self.bytes.len() as u64 <= limits::MAX_MODEL_BYTES
    }
}

/// File name of the valid base model in corpus/malformed/ (every reader must accept it).
pub const BASE_FILE: &str = "base.slm";

/// The base's tokenizer: a tiny SentencePiece vocabulary with `unk` and no byte fallback.
fn base_vocab() -> Vocab {
    let mut pieces: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec(), b"</s>".to_vec()];
    let mut types = vec![TokenType::Unknown, TokenType::Control, TokenType::Control];
    for p in [
        " ", "a", "d", "e", "h", "l", "o", "r", "t", "w", ".", "!", " t", "th", " th", "he",
        " the", "ll", "lo", " wo", "ld",
    ] {
        pieces.push(p.as_bytes().to_vec());
        types.push(TokenType::Normal);
    }
    Vocab {
        kind: TokenizerKind::SentencePiece,
        scores: (0..pieces.len()).map(|i| -(i as f32)).collect(),
        pieces: Pieces::new(pieces).expect("a small vocabulary"),
        types,
        merges: vec![],
        bos: Some(1),
        eos: Some(2),
        pad: None,
        unk: Some(0),
        stop: vec![2],
        add_bos: true,
        add_dummy_prefix: true,
        byte_fallback: false,
    }
}

/// The base's metadata, in key order.
const BASE_METADATA: [(&str, &str); 4] = [
    (
        "description",
        "base of the malformed-file matrix (harness/src/malformed.rs)",
    ),
    ("kind", "fixture"),
    ("licence", "MIT"),
    ("name", "malformed-base"),
];

/// Every dtype appears: the embedding and FFN gate are q8_0, most matrices q4_0, `attn_v` f16,
/// the norms f32.
fn base_dtype(name: &str) -> DType {
    if name.ends_with("norm.weight") {
        DType::F32
    } else if name == "token_embd.weight" || name.ends_with("ffn_gate.weight") {
        DType::Q8_0
    } else if name.ends_with("attn_v.weight") {
        DType::F16
    } else {
        DType::Q4_0
    }
}

/// The valid model every case is derived from: one layer, two query heads sharing one KV head,
/// a tied classifier, 24 tokens; about 6.5 KB written.
pub fn base_model() -> ModelFile {
    let vocab = base_vocab();
    let config = Config {
        arch: ARCH_LLAMA,
        vocab_size: vocab.pieces.len() as u32,
        dim: 32,
        n_layers: 1,
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 16,
        ffn_dim: 32,
        max_context: 16,
        rope_theta: 10000.0,
        rms_eps: 1e-5,
        tied_classifier: true,
    };
    let mut rng = SplitMix64(0x5eed);
    let tensors = llama::slots(&config)
        .into_iter()
        .map(|slot| {
            let n: usize = slot.shape.iter().map(|&d| d as usize).product();
            let values: Vec<f32> = match slot.role {
                llama::Role::Norm => (0..n).map(|_| 1.0 + 0.25 * rng.next_signed()).collect(),
                llama::Role::Matrix => (0..n).map(|_| 0.3 * rng.next_signed()).collect(),
            };
            let dtype = base_dtype(&slot.name);
            TensorData {
                bytes: encode_tensor(&values, dtype).expect("base tensors are whole blocks"),
                name: slot.name,
                dtype,
                shape: slot.shape,
            }
        })
        .collect();
    ModelFile {
        config,
        metadata: BASE_METADATA
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        vocab,
        tensors,
    }
}

/// The base model's bytes as this module's own assembler lays them out (a test holds them equal
/// to `format::write(&base_model())`).
pub fn base_bytes() -> Vec<u8> {
    assemble(&Parts::base()).bytes
}

/// The format-2.1 tensor digest (spec/slm.md, Digests), written out plainly: the SHA-256 of the
/// SHA-256s of the payload's 64 KiB chunks.
fn chunked_digest(payload: &[u8]) -> [u8; 32] {
    let mut joined = Vec::new();
    for chunk in payload.chunks(limits::DIGEST_CHUNK_BYTES) {
        joined.extend_from_slice(&sha256(chunk));
    }
    sha256(&joined)
}

/// Writes the file digest a file's bytes imply into its header (no-op on a file shorter than a
/// header).
pub fn redigest(bytes: &mut [u8]) {
    if bytes.len() >= limits::HEADER_BYTES {
        let d = file_digest(bytes);
        bytes[DIGEST_OFFSET..DIGEST_OFFSET + 32].copy_from_slice(&d);
    }
}

// ---- raw section encoders: they write whatever they are given, valid or not ----

/// A metadata section: `count` (normally the number of entries) then the entries as given.
fn metadata_section(count: usize, entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = (count as u32).to_le_bytes().to_vec();
    for (k, v) in entries {
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn base_metadata_entries() -> Vec<(&'static [u8], &'static [u8])> {
    BASE_METADATA
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect()
}

#[derive(Clone)]
struct RawToken {
    score: f32,
    ty: u8,
    piece: Vec<u8>,
}

/// A tokenizer section field by field; counts are stored as given.
#[derive(Clone)]
struct RawTokenizer {
    kind: u32,
    n_tokens: u32,
    /// bos, eos, pad, unk.
    specials: [u32; 4],
    flags: u32,
    stop: Vec<u32>,
    n_merges: u32,
    tokens: Vec<RawToken>,
    merges: Vec<(u32, u32)>,
}

impl RawTokenizer {
    fn of(v: &Vocab) -> RawTokenizer {
        let id = |x: Option<u32>| x.unwrap_or(u32::MAX);
        RawTokenizer {
            kind: v.kind as u32,
            n_tokens: v.pieces.len() as u32,
            specials: [id(v.bos), id(v.eos), id(v.pad), id(v.unk)],
            flags: v.add_bos as u32
                | (v.add_dummy_prefix as u32) << 1
                | (v.byte_fallback as u32) << 2,
            stop: v.stop.clone(),
            n_merges: v.merges.len() as u32,
            tokens: (0..v.pieces.len())
                .map(|i| RawToken {
                    score: v.scores[i],
                    ty: v.types[i] as u8,
                    piece: v.pieces[i].to_vec(),
                })
                .collect(),
            merges: v.merges.clone(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |x: u32| out.extend_from_slice(&x.to_le_bytes());
        put(self.kind);
        put(self.n_tokens);
        self.specials.iter().for_each(|&s| put(s));
        put(self.flags);
        put(self.stop.len() as u32);
        self.stop.iter().for_each(|&s| put(s));
        put(self.n_merges);
        for t in &self.tokens {
            out.extend_from_slice(&t.score.to_le_bytes());
            out.push(t.ty);
            out.extend_from_slice(&(t.piece.len() as u16).to_le_bytes());
            out.extend_from_slice(&t.piece);
        }
        for &(l, r) in &self.merges {
            out.extend_from_slice(&l.to_le_bytes());
            out.extend_from_slice(&r.to_le_bytes());
        }
        out
    }

    /// Turns the base into a ranked-merge tokenizer with the given merges (flags it would not
    /// allow are cleared).
    fn ranked(mut self, n_merges: u32, merges: Vec<(u32, u32)>) -> RawTokenizer {
        self.kind = TokenizerKind::RankedMerge as u32;
        self.flags = 1;
        self.n_merges = n_merges;
        self.merges = merges;
        self
    }
}

/// One directory entry and its payload.
#[derive(Clone)]
struct Entry {
    name: Vec<u8>,
    dtype: u8,
    dims: Vec<u32>,
    payload: Vec<u8>,
}

/// A file taken apart. [`assemble`] lays it out canonically: sections and payloads at the first
/// allowed offsets, zero padding, payload lengths and digests from the payloads, then the header
/// and the file digest.
#[derive(Clone)]
struct Parts {
    config: Config,
    metadata: Vec<u8>,
    tokenizer: Vec<u8>,
    entries: Vec<Entry>,
    /// Bytes after the last entry inside the directory section.
    dir_tail: Vec<u8>,
}

impl Parts {
    fn base() -> Parts {
        let m = base_model();
        Parts {
            config: m.config,
            metadata: metadata_section(BASE_METADATA.len(), &base_metadata_entries()),
            tokenizer: RawTokenizer::of(&m.vocab).encode(),
            entries: m
                .tensors
                .into_iter()
                .map(|t| Entry {
                    name: t.name.into_bytes(),
                    dtype: t.dtype.code(),
                    dims: t.shape,
                    payload: t.bytes,
                })
                .collect(),
            dir_tail: vec![],
        }
    }

    fn entry(&mut self, name: &str) -> &mut Entry {
        self.entries
            .iter_mut()
            .find(|e| e.name == name.as_bytes())
            .expect("the base has this tensor")
    }
}

/// An assembled file and where its parts went.
#[derive(Clone)]
struct Built {
    bytes: Vec<u8>,
    sections: Sections,
    /// Per entry: absolute offset of its `offset` field (then `length` at +8, digest at +16).
    payload_field: Vec<u64>,
    /// Per entry: absolute payload offset.
    payload_at: Vec<u64>,
}

fn align_up(x: u64) -> u64 {
    x.div_ceil(limits::ALIGNMENT) * limits::ALIGNMENT
}

fn assemble(p: &Parts) -> Built {
    let entry_len = |e: &Entry| 2 + e.name.len() + 2 + 4 * e.dims.len() + 8 + 8 + 32;
    let dir_len = 4 + p.entries.iter().map(entry_len).sum::<usize>() + p.dir_tail.len();
    let mut rel = Vec::new();
    let mut data_len = 0u64;
    for (i, e) in p.entries.iter().enumerate() {
        if i > 0 {
            data_len = align_up(data_len);
        }
        rel.push(data_len);
        data_len += e.payload.len() as u64;
    }
    let lengths = [
        p.metadata.len() as u64,
        p.tokenizer.len() as u64,
        dir_len as u64,
        data_len,
    ];
    let (sections, file_len) = Sections::canonical(lengths).expect("small sections");
    let mut out = vec![0u8; file_len as usize];
    put(&mut out, sections.metadata.offset, &p.metadata);
    put(&mut out, sections.tokenizer.offset, &p.tokenizer);
    let mut dir = (p.entries.len() as u32).to_le_bytes().to_vec();
    let (mut payload_field, mut payload_at) = (Vec::new(), Vec::new());
    for (e, rel) in p.entries.iter().zip(rel) {
        let at = sections.data.offset + rel;
        dir.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        dir.extend_from_slice(&e.name);
        dir.push(e.dtype);
        dir.push(e.dims.len() as u8);
        e.dims
            .iter()
            .for_each(|d| dir.extend_from_slice(&d.to_le_bytes()));
        payload_field.push(sections.directory.offset + dir.len() as u64);
        payload_at.push(at);
        dir.extend_from_slice(&at.to_le_bytes());
        dir.extend_from_slice(&(e.payload.len() as u64).to_le_bytes());
        dir.extend_from_slice(&chunked_digest(&e.payload));
        put(&mut out, at, &e.payload);
    }
    dir.extend_from_slice(&p.dir_tail);
    put(&mut out, sections.directory.offset, &dir);
    put(
        &mut out,
        0,
        &encode_header(&p.config, &sections, file_len, &[0; 32]),
    );
    redigest(&mut out);
    Built {
        bytes: out,
        sections,
        payload_field,
        payload_at,
    }
}

fn put(bytes: &mut [u8], at: u64, b: &[u8]) {
    bytes[at as usize..at as usize + b.len()].copy_from_slice(b);
}

fn put_u16(bytes: &mut [u8], at: u64, v: u16) {
    put(bytes, at, &v.to_le_bytes());
}

fn put_u32(bytes: &mut [u8], at: u64, v: u32) {
    put(bytes, at, &v.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: u64, v: u64) {
    put(bytes, at, &v.to_le_bytes());
}

fn get_u64(bytes: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(bytes[at as usize..at as usize + 8].try_into().unwrap())
}

fn add_u64(bytes: &mut [u8], at: u64, delta: u64) {
    let v = get_u64(bytes, at) + delta;
    put_u64(bytes, at, v);
}

/// Header offset of section `i`'s table entry (offset; length at +8).
fn section_field(i: u64) -> u64 {
    80 + 16 * i
}

/// Collects the cases.
struct Matrix {
    parts: Parts,
    base: Built,
    cases: Vec<MalformedCase>,
}

impl Matrix {
    fn add(&mut self, name: &str, expected: ErrorCode, rule: &str, bytes: Vec<u8>) {
        self.cases.push(MalformedCase {
            name: name.to_string(),
            rule: rule.to_string(),
            expected,
            bytes,
        });
    }

    /// The base bytes edited by `edit`, then re-digested.
    fn patched(&self, edit: impl FnOnce(&mut Vec<u8>, &Built)) -> Vec<u8> {
        let mut b = self.base.bytes.clone();
        edit(&mut b, &self.base);
        redigest(&mut b);
        b
    }

    /// The base's parts edited by `edit`, then assembled.
    fn rebuilt(&self, edit: impl FnOnce(&mut Parts)) -> Vec<u8> {
        self.rebuilt_and_patched(edit, |_, _| {})
    }

    /// Assembled from edited parts, then the bytes edited and re-digested.
    fn rebuilt_and_patched(
        &self,
        edit: impl FnOnce(&mut Parts),
        patch: impl FnOnce(&mut Vec<u8>, &Built),
    ) -> Vec<u8> {
        let mut p = self.parts.clone();
        edit(&mut p);
        let built = assemble(&p);
        let mut b = built.bytes.clone();
        patch(&mut b, &built);
        redigest(&mut b);
        b
    }

    fn tokenizer_case(
        &mut self,
        name: &str,
        expected: ErrorCode,
        rule: &str,
        edit: impl FnOnce(&mut RawTokenizer),
    ) {
        let mut t = RawTokenizer::of(&base_vocab());
        edit(&mut t);
        let bytes = self.rebuilt(|p| p.tokenizer = t.encode());
        self.add(name, expected, rule, bytes);
    }

    fn metadata_case(
        &mut self,
        name: &str,
        expected: ErrorCode,
        rule: &str,
        entries: &[(&[u8], &[u8])],
    ) {
        let bytes = self.rebuilt(|p| p.metadata = metadata_section(entries.len(), entries));
        self.add(name, expected, rule, bytes);
    }
}

/// Every case of the matrix, in spec order (budget, magic and version, header, layout, padding,
/// metadata, tokenizer, directory, architecture, digests). Deterministic.
pub fn cases() -> Vec<MalformedCase> {
    let parts = Parts::base();
    let base = assemble(&parts);
    let mut m = Matrix {
        parts,
        base,
        cases: Vec::new(),
    };
    budget_and_prefix(&mut m);
    header_fields(&mut m);
    layout(&mut m);
    metadata(&mut m);
    tokenizer(&mut m);
    directory(&mut m);
    architecture(&mut m);
    digests(&mut m);
    m.cases
}

fn budget_and_prefix(m: &mut Matrix) {
    use ErrorCode::*;
    let base = m.base.bytes.clone();
    m.add(
        "budget-exceeded",
        BudgetExceeded,
        "a file longer than MAX_MODEL_BYTES (33,554,432) is refused before any byte is parsed",
        vec![0; limits::MAX_MODEL_BYTES as usize + 1],
    );
    let mut b = base.clone();
    put(&mut b, 0, b"GGUF");
    m.add(
        "magic-gguf",
        InvalidModelMagic,
        "magic is 89 53 4C 4D 0D 0A 1A 0A",
        b,
    );
    let mut b = base.clone();
    put(&mut b, 0, b"SLM1");
    m.add(
        "magic-slm1",
        InvalidModelMagic,
        "magic is 89 53 4C 4D 0D 0A 1A 0A (an SLM1 file is refused)",
        b,
    );
    let mut b = base.clone();
    b.remove(4);
    m.add(
        "magic-crlf-damaged",
        InvalidModelMagic,
        "magic is 89 53 4C 4D 0D 0A 1A 0A (CR LF turned into LF by a text-mode copy)",
        b,
    );
    m.add(
        "truncated-empty",
        Truncated,
        "an empty file is a correct magic prefix shorter than 12 bytes",
        vec![],
    );
    m.add(
        "truncated-in-magic",
        Truncated,
        "a file shorter than 12 bytes with a correct magic prefix is Truncated",
        base[..5].to_vec(),
    );
    m.add(
        "truncated-in-version",
        Truncated,
        "a file shorter than 12 bytes with a correct magic prefix is Truncated",
        base[..10].to_vec(),
    );
    for (name, major, minor, rule) in [
        ("version-major-1", 1, 0, "version_major MUST be 2"),
        ("version-major-3", 3, 0, "version_major MUST be 2"),
        (
            "version-minor-2",
            2,
            2,
            "version_minor MUST be <= the reader's minor (1)",
        ),
    ] {
        let b = m.patched(|b, _| {
            put_u16(b, 8, major);
            put_u16(b, 10, minor);
        });
        m.add(name, UnsupportedModelVersion, rule, b);
    }
    m.add(
        "truncated-header",
        Truncated,
        "the header is 256 bytes",
        base[..200].to_vec(),
    );
}

fn header_fields(m: &mut Matrix) {
    use ErrorCode::*;
    let len = m.base.bytes.len() as u64;
    let b = m.patched(|b, _| put_u32(b, 12, 512));
    m.add("header-bytes", InvalidHeader, "header_bytes is 256", b);
    let b = m.patched(|b, _| put_u64(b, 16, len + 64));
    m.add(
        "file-bytes-larger",
        Truncated,
        "file_bytes is the file's length: greater is Truncated",
        b,
    );
    let b = m.patched(|b, _| put_u64(b, 16, len - 64));
    m.add(
        "file-bytes-smaller",
        TrailingBytes,
        "file_bytes is the file's length: smaller is TrailingBytes",
        b,
    );
    m.add(
        "file-truncated",
        Truncated,
        "file_bytes is the file's length (the file lost its last 100 bytes)",
        m.base.bytes[..len as usize - 100].to_vec(),
    );
    let mut b = m.base.bytes.clone();
    b.extend_from_slice(&[0; 64]);
    m.add(
        "file-extended",
        TrailingBytes,
        "file_bytes is the file's length (64 bytes were appended)",
        b,
    );
    for (name, arch) in [("architecture-0", 0), ("architecture-2", 2)] {
        let b = m.patched(|b, _| put_u32(b, 24, arch));
        m.add(
            name,
            UnsupportedArchitecture,
            "architecture is 1 (llama)",
            b,
        );
    }
    let b = m.patched(|b, _| put_u32(b, 28, 0x8000_0001));
    m.add(
        "flags-unknown-bit",
        ReservedNonZero,
        "header flags other than bit 0 are zero",
        b,
    );
    let fields: [(&str, u64, u32); 8] = [
        ("vocab-size", 32, limits::MAX_VOCAB),
        ("dim", 36, limits::MAX_DIM),
        ("n-layers", 40, limits::MAX_LAYERS),
        ("n-heads", 44, limits::MAX_HEADS),
        ("n-kv-heads", 48, limits::MAX_HEADS),
        ("head-dim", 52, limits::MAX_HEAD_DIM),
        ("ffn-dim", 56, limits::MAX_FFN_DIM),
        ("max-context", 60, limits::MAX_CONTEXT),
    ];
    for (field, at, max) in fields {
        let b = m.patched(|b, _| put_u32(b, at, 0));
        m.add(
            &format!("{field}-zero"),
            InvalidHeader,
            &format!("{} is at least 1", field.replace('-', "_")),
            b,
        );
        // head_dim must also be even: step over the limit by 2 so only the limit is broken.
        let over = if field == "head-dim" {
            max + 2
        } else {
            max + 1
        };
        let b = m.patched(|b, _| put_u32(b, at, over));
        m.add(
            &format!("{field}-over-limit"),
            LimitExceeded,
            &format!("{} is at most {max}", field.replace('-', "_")),
            b,
        );
    }
    let b = m.patched(|b, _| put_u32(b, 48, 3));
    m.add(
        "n-kv-heads-not-dividing",
        InvalidHeader,
        "n_kv_heads divides n_heads",
        b,
    );
    let b = m.patched(|b, _| put_u32(b, 52, 15));
    m.add("head-dim-odd", InvalidHeader, "head_dim is even", b);
    let b = m.patched(|b, _| {
        put_u32(b, 44, 32);
        put_u32(b, 52, 1024);
    });
    m.add(
        "q-dim-over-limit",
        LimitExceeded,
        "n_heads x head_dim is at most MAX_DIM (16,384)",
        b,
    );
    for (name, at, value, rule) in [
        ("rope-theta-nan", 64, f32::NAN, "rope_theta is finite"),
        (
            "rope-theta-infinite",
            64,
            f32::INFINITY,
            "rope_theta is finite",
        ),
        ("rope-theta-negative", 64, -10000.0, "rope_theta is > 0"),
        ("rms-eps-nan", 68, f32::NAN, "rms_eps is finite"),
        ("rms-eps-negative", 68, -1e-5, "rms_eps is > 0"),
        ("rms-eps-zero", 68, 0.0, "rms_eps is > 0"),
    ] {
        let b = m.patched(|b, _| put(b, at, &f32::to_le_bytes(value)));
        m.add(name, InvalidHeader, rule, b);
    }
    let b = m.patched(|b, _| b[72] = 1);
    m.add(
        "reserved-72",
        ReservedNonZero,
        "reserved header bytes 72..80 are zero",
        b,
    );
    let b = m.patched(|b, _| b[223] = 0x80);
    m.add(
        "reserved-223",
        ReservedNonZero,
        "reserved header bytes 144..224 are zero",
        b,
    );
}

fn layout(m: &mut Matrix) {
    use ErrorCode::*;
    let s = m.base.sections;
    let b = m.patched(|b, _| put_u64(b, section_field(0), 260));
    m.add(
        "section-metadata-misaligned",
        Misaligned,
        "every section offset is a multiple of 64",
        b,
    );
    for (case, i, offset) in [
        ("section-tokenizer-misaligned", 1, s.tokenizer.offset + 32),
        ("section-directory-misaligned", 2, s.directory.offset + 8),
    ] {
        let b = m.patched(|b, _| put_u64(b, section_field(i), offset));
        m.add(
            case,
            Misaligned,
            "every section offset is a multiple of 64",
            b,
        );
    }
    let b = m.patched(|b, _| put_u64(b, section_field(3), s.data.offset + 32));
    m.add(
        "section-data-misaligned",
        Misaligned,
        "every section offset is a multiple of 64",
        b,
    );
    let b = m.patched(|b, _| put_u64(b, section_field(0), 320));
    m.add(
        "section-metadata-gap",
        LayoutViolation,
        "the metadata section starts at 256",
        b,
    );
    let b = m.patched(|b, _| put_u64(b, section_field(1), s.tokenizer.offset + 64));
    m.add(
        "section-tokenizer-gap",
        LayoutViolation,
        "each section starts at the first multiple of 64 at or after the previous one's end",
        b,
    );
    let b = m.patched(|b, _| put_u64(b, section_field(1), s.metadata.offset));
    m.add(
        "section-tokenizer-overlap",
        LayoutViolation,
        "each section starts at the first multiple of 64 at or after the previous one's end",
        b,
    );
    let b = m.patched(|b, _| {
        let (t, d) = (section_field(1) as usize, section_field(2) as usize);
        let tok: [u8; 16] = b[t..t + 16].try_into().unwrap();
        b.copy_within(d..d + 16, t);
        b[d..d + 16].copy_from_slice(&tok);
    });
    m.add(
        "sections-swapped",
        LayoutViolation,
        "sections are in the order metadata, tokenizer, directory, data",
        b,
    );
    let b = m.patched(|b, _| put_u64(b, section_field(0) + 8, limits::MAX_METADATA_BYTES + 1));
    m.add(
        "section-metadata-over-limit",
        LimitExceeded,
        "the metadata section length is at most MAX_METADATA_BYTES (65,536)",
        b,
    );
    let b = m.patched(|b, _| put_u64(b, section_field(1) + 8, limits::MAX_TOKENIZER_BYTES + 1));
    m.add(
        "section-tokenizer-over-limit",
        LimitExceeded,
        "the tokenizer section length is at most MAX_TOKENIZER_BYTES (8,388,608)",
        b,
    );
    let b = m.patched(|b, _| put_u64(b, section_field(3) + 8, s.data.length + 64));
    m.add(
        "section-past-eof",
        LayoutViolation,
        "every section lies inside the file",
        b,
    );
    let b = m.patched(|b, _| put_u64(b, section_field(3) + 8, u64::MAX - s.data.offset + 1));
    m.add(
        "section-end-overflows",
        LayoutViolation,
        "every section lies inside the file (offset + length overflows u64)",
        b,
    );
    let b = m.patched(|b, _| {
        b.extend_from_slice(&[0; 64]);
        let n = b.len() as u64;
        put_u64(b, 16, n);
    });
    m.add(
        "trailing-bytes",
        TrailingBytes,
        "the data section ends exactly at the end of the file",
        b,
    );
    // Padding between sections: the first gap of the base (the test checks there is one).
    let gap = s
        .as_array()
        .windows(2)
        .map(|w| (w[0].offset + w[0].length, w[1].offset))
        .find(|(end, next)| end < next)
        .expect("the base has padding between two sections");
    let b = m.patched(|b, _| b[gap.1 as usize - 1] = 0x20);
    m.add(
        "padding-between-sections",
        NonZeroPadding,
        "every padding byte between sections is zero",
        b,
    );
    let b = m.patched(|b, built| {
        let end = built.payload_at[0] as usize + m.parts.entries[0].payload.len();
        assert!(
            end < built.payload_at[1] as usize,
            "the base pads payload 0"
        );
        b[end] = 1;
    });
    m.add(
        "padding-between-payloads",
        NonZeroPadding,
        "every padding byte between payloads is zero",
        b,
    );
}

fn metadata(m: &mut Matrix) {
    use ErrorCode::*;
    let base = base_metadata_entries();
    let with = |i: usize, k: &'static [u8], v: &'static [u8]| {
        let mut e = base.clone();
        e[i] = (k, v);
        e
    };
    let many: Vec<(Vec<u8>, Vec<u8>)> = (0..limits::MAX_METADATA_ENTRIES as usize - 1)
        .map(|i| (format!("x{i:02}").into_bytes(), vec![]))
        .collect();
    let mut over: Vec<(&[u8], &[u8])> = base.clone();
    over.extend(many.iter().map(|(k, v)| (&k[..], &v[..])));
    over.sort();
    m.metadata_case(
        "metadata-count-over-limit",
        LimitExceeded,
        "at most MAX_METADATA_ENTRIES (64) metadata entries",
        &over,
    );
    let key_rule = "a metadata key is 1..=64 bytes of [a-z0-9_.]";
    let mut e = base.clone();
    e.insert(0, (b"", b"empty key"));
    m.metadata_case("metadata-key-empty", InvalidMetadata, key_rule, &e);
    m.metadata_case(
        "metadata-key-uppercase",
        InvalidMetadata,
        key_rule,
        &with(3, b"Name", b"malformed-base"),
    );
    let long = [b'z'; limits::MAX_METADATA_KEY_BYTES + 1];
    let mut e: Vec<(&[u8], &[u8])> = base.clone();
    e.push((&long, b"x"));
    m.metadata_case("metadata-key-too-long", InvalidMetadata, key_rule, &e);
    let mut e = base.clone();
    e.push((b"\xff", b"x"));
    m.metadata_case("metadata-key-not-utf8", InvalidMetadata, key_rule, &e);
    let mut e = base.clone();
    e.swap(0, 1);
    m.metadata_case(
        "metadata-unsorted",
        InvalidMetadata,
        "metadata keys are in strictly ascending byte order",
        &e,
    );
    let mut e = base.clone();
    e.insert(2, (b"licence", b"MIT"));
    m.metadata_case(
        "metadata-duplicate-key",
        DuplicateName,
        "metadata keys are unique",
        &e,
    );
    let long_value = vec![b'v'; limits::MAX_METADATA_VALUE_BYTES + 1];
    let mut e: Vec<(&[u8], &[u8])> = base.clone();
    e[0] = (b"description", &long_value);
    m.metadata_case(
        "metadata-value-over-limit",
        LimitExceeded,
        "a metadata value is at most MAX_METADATA_VALUE_BYTES (4096)",
        &e,
    );
    m.metadata_case(
        "metadata-value-not-utf8",
        InvalidUtf8,
        "a metadata value is UTF-8",
        &with(0, b"description", b"caf\xc3("),
    );
    let mut e = base.clone();
    e.remove(3);
    m.metadata_case(
        "metadata-missing-name",
        InvalidMetadata,
        "the metadata has the key name",
        &e,
    );
    let mut e = base.clone();
    e.remove(1);
    m.metadata_case(
        "metadata-missing-kind",
        InvalidMetadata,
        "the metadata has the key kind",
        &e,
    );
    m.metadata_case(
        "metadata-kind-unknown",
        InvalidMetadata,
        "metadata kind is fixture or converted",
        &with(1, b"kind", b"model"),
    );
    let mut section = metadata_section(base.len(), &base);
    section.extend_from_slice(&[0; 3]);
    let b = m.rebuilt(|p| p.metadata = section);
    m.add(
        "metadata-trailing-bytes",
        TrailingBytes,
        "the metadata parser consumes its section exactly",
        b,
    );
    let b = m.rebuilt(|p| p.metadata = metadata_section(base.len() + 1, &base));
    m.add(
        "metadata-truncated",
        Truncated,
        "the metadata section holds the entries its count declares",
        b,
    );
    let b = m.rebuilt(|p| p.metadata = vec![]);
    m.add(
        "metadata-section-empty",
        Truncated,
        "the metadata section holds at least its count",
        b,
    );
}

fn tokenizer(m: &mut Matrix) {
    use ErrorCode::*;
    let n = base_vocab().pieces.len() as u32;
    for (name, kind) in [("tokenizer-kind-0", 0), ("tokenizer-kind-4", 4)] {
        m.tokenizer_case(name, InvalidTokenizer, "tokenizer kind is 1, 2 or 3", |t| {
            t.kind = kind
        });
    }
    m.tokenizer_case(
        "tokenizer-count-mismatch",
        InvalidTokenizer,
        "tokenizer n_tokens equals the header's vocab_size",
        |t| {
            t.n_tokens -= 1;
            t.tokens.pop();
        },
    );
    m.tokenizer_case(
        "tokenizer-special-out-of-range",
        InvalidTokenId,
        "bos, eos, pad and unk are 0xFFFFFFFF or < n_tokens",
        |t| t.specials[1] = n,
    );
    m.tokenizer_case(
        "tokenizer-flag-unknown",
        ReservedNonZero,
        "tokenizer flags other than bits 0..2 are zero",
        |t| t.flags |= 8,
    );
    m.tokenizer_case(
        "tokenizer-stop-over-limit",
        LimitExceeded,
        "at most MAX_STOP_TOKENS (16) stop tokens",
        |t| t.stop = (0..limits::MAX_STOP_TOKENS + 1).collect(),
    );
    m.tokenizer_case(
        "tokenizer-stop-out-of-range",
        InvalidTokenId,
        "every stop token id is < n_tokens",
        |t| t.stop = vec![2, n],
    );
    m.tokenizer_case(
        "tokenizer-stop-duplicate",
        InvalidTokenizer,
        "stop token ids are unique",
        |t| t.stop = vec![2, 2],
    );
    m.tokenizer_case(
        "tokenizer-merges-not-ranked",
        InvalidTokenizer,
        "n_merges is non-zero only for kind 3 (ranked-merge BPE)",
        |t| {
            t.n_merges = 1;
            t.merges = vec![(4, 5)];
        },
    );
    m.tokenizer_case(
        "tokenizer-merges-over-limit",
        LimitExceeded,
        "n_merges is at most MAX_MERGES (262,144)",
        |t| *t = t.clone().ranked(limits::MAX_MERGES + 1, vec![]),
    );
    m.tokenizer_case(
        "tokenizer-merge-out-of-range",
        InvalidTokenId,
        "merge ids are < n_tokens",
        |t| *t = t.clone().ranked(2, vec![(4, 5), (4, n)]),
    );
    m.tokenizer_case(
        "tokenizer-merges-truncated",
        Truncated,
        "the tokenizer section holds the merges n_merges declares",
        |t| *t = t.clone().ranked(2, vec![(4, 5)]),
    );
    for (name, score) in [
        ("tokenizer-score-nan", f32::NAN),
        ("tokenizer-score-infinite", f32::NEG_INFINITY),
    ] {
        m.tokenizer_case(name, InvalidTokenizer, "every token score is finite", |t| {
            t.tokens[5].score = score
        });
    }
    for (name, ty) in [("tokenizer-type-0", 0), ("tokenizer-type-7", 7)] {
        m.tokenizer_case(name, InvalidTokenizer, "every token type is 1..=6", |t| {
            t.tokens[5].ty = ty
        });
    }
    m.tokenizer_case(
        "tokenizer-piece-over-limit",
        LimitExceeded,
        "a piece is at most MAX_PIECE_BYTES (256) bytes",
        |t| t.tokens[5].piece = vec![b'a'; limits::MAX_PIECE_BYTES + 1],
    );
    let mut t = RawTokenizer::of(&base_vocab());
    let mut section = t.encode();
    section.truncate(section.len() - 2);
    let b = m.rebuilt(|p| p.tokenizer = section);
    m.add(
        "tokenizer-truncated",
        Truncated,
        "the tokenizer section holds the tokens n_tokens declares (the last piece is cut)",
        b,
    );
    t.tokens.clear();
    let b = m.rebuilt(|p| p.tokenizer = t.encode());
    m.add(
        "tokenizer-count-unholdable",
        Truncated,
        "a token count the remaining bytes cannot hold is Truncated before allocation",
        b,
    );
    let b = m.rebuilt(|p| p.tokenizer.extend_from_slice(&[0; 4]));
    m.add(
        "tokenizer-trailing-bytes",
        TrailingBytes,
        "the tokenizer parser consumes its section exactly",
        b,
    );
    let b = m.rebuilt(|p| p.tokenizer = vec![]);
    m.add(
        "tokenizer-section-empty",
        Truncated,
        "the tokenizer section holds at least its fixed fields",
        b,
    );
}

fn directory(m: &mut Matrix) {
    use ErrorCode::*;
    let b = m.rebuilt(|p| p.entries.clear());
    m.add(
        "directory-empty",
        InvalidTensorDirectory,
        "the directory lists 1..=MAX_TENSORS tensors (0 is InvalidTensorDirectory)",
        b,
    );
    let dir = m.base.sections.directory.offset;
    let b = m.patched(|b, _| put_u32(b, dir, limits::MAX_TENSORS + 1));
    m.add(
        "directory-count-over-limit",
        LimitExceeded,
        "the directory lists at most MAX_TENSORS (1024) tensors",
        b,
    );
    let count = m.parts.entries.len() as u32;
    let b = m.patched(|b, _| put_u32(b, dir, count + 1));
    m.add(
        "directory-truncated",
        Truncated,
        "the directory section holds the entries its count declares",
        b,
    );
    let name_rule = "a tensor name is 1..=96 bytes of [A-Za-z0-9_.-]";
    let long = vec![b'x'; limits::MAX_TENSOR_NAME_BYTES + 1];
    for (case, name) in [
        ("directory-name-bad-char", &b"blk.0.attn q.weight"[..]),
        ("directory-name-empty", b""),
        ("directory-name-too-long", &long),
        ("directory-name-not-utf8", b"blk.0.attn_\xc3.weight"),
    ] {
        let b = m.rebuilt(|p| p.entry("blk.0.attn_q.weight").name = name.to_vec());
        m.add(case, InvalidTensorDirectory, name_rule, b);
    }
    let b = m.rebuilt(|p| p.entry("blk.0.attn_k.weight").name = b"blk.0.attn_q.weight".to_vec());
    m.add(
        "directory-duplicate-name",
        DuplicateName,
        "tensor names are unique",
        b,
    );
    let b = m.rebuilt(|p| p.entry("blk.0.attn_q.weight").dtype = 3);
    m.add(
        "directory-dtype-unknown",
        UnsupportedDType,
        "dtype is 0 (f32), 1 (f16), 2 (q4_0) or 8 (q8_0)",
        b,
    );
    for (case, dims) in [
        ("directory-rank-0", vec![]),
        ("directory-rank-5", vec![1, 1, 1, 1, 32]),
    ] {
        let b = m.rebuilt(|p| p.entry("output_norm.weight").dims = dims);
        m.add(case, InvalidTensorDirectory, "rank is 1..=4", b);
    }
    let b = m.rebuilt(|p| p.entry("blk.0.attn_q.weight").dims = vec![0, 32]);
    m.add(
        "directory-zero-dim",
        InvalidTensorDirectory,
        "every dimension is >= 1",
        b,
    );
    // A zero dimension after dimensions whose product overflows: no element count overflows.
    let b =
        m.rebuilt(|p| p.entry("output_norm.weight").dims = vec![u32::MAX, u32::MAX, u32::MAX, 0]);
    m.add(
        "directory-zero-dim-after-overflow",
        InvalidTensorDirectory,
        "every dimension is >= 1, checked before the element count",
        b,
    );
    let b = m.rebuilt(|p| p.entry("output_norm.weight").dims = vec![u32::MAX; 4]);
    m.add(
        "directory-elements-overflow",
        InvalidTensorDirectory,
        "the element count (product of dims) does not overflow u64",
        b,
    );
    // Same element count and byte length, only the innermost dimension is no longer whole blocks.
    for (case, tensor, dims) in [
        (
            "directory-q8_0-innermost",
            "token_embd.weight",
            vec![48, 16],
        ),
        (
            "directory-q4_0-innermost",
            "blk.0.attn_q.weight",
            vec![64, 16],
        ),
    ] {
        let b = m.rebuilt(|p| p.entry(tensor).dims = dims);
        m.add(
            case,
            ShapeMismatch,
            "for q8_0 and q4_0 the innermost dimension is a multiple of 32",
            b,
        );
    }
    let field = m.base.payload_field[1];
    let b = m.patched(|b, _| add_u64(b, field + 8, 4));
    m.add(
        "directory-length-wrong",
        InvalidTensorDirectory,
        "length = elements x bytes per element (per block for q8_0/q4_0)",
        b,
    );
    let b = m.patched(|b, _| add_u64(b, field, 4));
    m.add(
        "directory-payload-misaligned",
        Misaligned,
        "a payload offset is a multiple of 64",
        b,
    );
    let b = m.patched(|b, _| add_u64(b, field, 64));
    m.add(
        "directory-payload-gap",
        LayoutViolation,
        "payloads are packed: each starts at the first multiple of 64 after the previous one",
        b,
    );
    let first = m.base.payload_field[0];
    let b = m.patched(|b, _| add_u64(b, first, 64));
    m.add(
        "directory-first-payload-gap",
        LayoutViolation,
        "the first payload starts at the data section's offset",
        b,
    );
    let b = m.patched(|b, built| {
        let (f1, f2) = (built.payload_field[1], built.payload_field[2]);
        let (o1, o2) = (get_u64(b, f1), get_u64(b, f2));
        put_u64(b, f1, o2);
        put_u64(b, f2, o1);
    });
    m.add(
        "directory-payloads-out-of-order",
        LayoutViolation,
        "payloads are in directory order",
        b,
    );
    let b = m.patched(|b, built| {
        b.truncate(b.len() - 64);
        let n = b.len() as u64;
        put_u64(b, 16, n);
        put_u64(b, section_field(3) + 8, built.sections.data.length - 64);
    });
    m.add(
        "directory-payload-past-section",
        LayoutViolation,
        "every payload ends inside the data section",
        b,
    );
    let b = m.patched(|b, built| {
        b.extend_from_slice(&[0; 64]);
        let n = b.len() as u64;
        put_u64(b, 16, n);
        put_u64(b, section_field(3) + 8, built.sections.data.length + 64);
    });
    m.add(
        "directory-data-after-last-payload",
        LayoutViolation,
        "the last payload ends exactly at the end of the data section",
        b,
    );
    let b = m.rebuilt(|p| p.dir_tail = vec![0; 4]);
    m.add(
        "directory-trailing-bytes",
        TrailingBytes,
        "the directory parser consumes its section exactly",
        b,
    );
}

fn architecture(m: &mut Matrix) {
    use ErrorCode::*;
    let b = m.rebuilt(|p| p.entries.retain(|e| e.name != b"blk.0.ffn_up.weight"));
    m.add(
        "arch-missing-tensor",
        MissingTensor,
        "the directory holds every llama tensor (blk.0.ffn_up.weight is missing)",
        b,
    );
    let b = m.rebuilt(|p| p.config.tied_classifier = false);
    m.add(
        "arch-untied-without-output",
        MissingTensor,
        "without the tied-classifier flag the directory holds output.weight",
        b,
    );
    let b = m.rebuilt(|p| p.entry("blk.0.attn_v.weight").dims = vec![32, 16]);
    m.add(
        "arch-wrong-shape",
        ShapeMismatch,
        "blk.{i}.attn_v.weight has shape [kv_dim, dim]",
        b,
    );
    let b = m.rebuilt(|p| {
        let e = p.entry("blk.0.attn_norm.weight");
        e.dtype = DType::F16.code();
        e.payload = e
            .payload
            .chunks(4)
            .flat_map(|c| {
                let v = f32::from_le_bytes(c.try_into().unwrap());
                runtime::model::quant::f32_to_f16(v).to_le_bytes()
            })
            .collect();
    });
    m.add("arch-norm-f16", UnsupportedDType, "norm weights are f32", b);
    let b = m.rebuilt(|p| {
        p.entries.push(Entry {
            name: b"extra.weight".to_vec(),
            dtype: DType::F32.code(),
            dims: vec![4],
            payload: vec![0; 16],
        })
    });
    m.add(
        "arch-extra-tensor",
        InvalidTensorDirectory,
        "the directory holds no tensor the architecture does not define",
        b,
    );
    let b = m.rebuilt(|p| {
        let mut out = p.entry("token_embd.weight").clone();
        out.name = b"output.weight".to_vec();
        p.entries.push(out);
    });
    m.add(
        "arch-output-while-tied",
        InvalidTensorDirectory,
        "a tied classifier has no output.weight",
        b,
    );
}

fn digests(m: &mut Matrix) {
    use ErrorCode::*;
    let i = m
        .parts
        .entries
        .iter()
        .position(|e| e.name == b"blk.0.ffn_down.weight")
        .expect("base tensor");
    let at = m.base.payload_at[i] + 100;
    let b = m.patched(|b, _| b[at as usize] ^= 0x01);
    m.add(
        "tensor-digest-payload",
        TensorDigestMismatch,
        "every tensor's digest matches its payload (a payload byte of blk.0.ffn_down.weight flipped)",
        b,
    );
    let last = m.base.payload_field.len() - 1;
    let field = m.base.payload_field[last] + 16;
    let b = m.patched(|b, _| b[field as usize] ^= 0x80);
    m.add(
        "tensor-digest-field",
        TensorDigestMismatch,
        "every tensor's digest matches its payload (the stored digest of output_norm.weight flipped)",
        b,
    );
    // Version 2.0 with 2.1 tensor digests: 2.0 digests are the plain SHA-256 of each payload.
    let b = m.patched(|b, _| b[10..12].copy_from_slice(&0u16.to_le_bytes()));
    m.add(
        "tensor-digest-version-2-0",
        TensorDigestMismatch,
        "a format-2.0 file's tensor digests are the SHA-256 of each payload (2.1 chunked digests under version 2.0: the first tensor, token_embd.weight, fails)",
        b,
    );
    // A metadata value character: valid either way, so only the file digest can notice.
    let meta = &m.base.bytes[m.base.sections.metadata.offset as usize..];
    let pos = m.base.sections.metadata.offset as usize
        + meta
            .windows(14)
            .position(|w| w == b"malformed-base")
            .expect("the base's name");
    let mut b = m.base.bytes.clone();
    b[pos] = b'M';
    m.add(
        "file-digest-metadata",
        FileDigestMismatch,
        "the file digest matches the header digest (a metadata value character changed)",
        b,
    );
    let mut b = m.base.bytes.clone();
    b[DIGEST_OFFSET] ^= 0x01;
    m.add(
        "file-digest-field",
        FileDigestMismatch,
        "the file digest matches the header digest (the digest field changed)",
        b,
    );
}

/// The manifest.json of corpus/malformed/.
pub fn manifest(cases: &[MalformedCase]) -> Value {
    let base = base_bytes();
    let list: Vec<Value> = cases
        .iter()
        .map(|c| {
            let file = if c.stored() {
                json!(format!("{}.slm", c.name))
            } else {
                Value::Null
            };
            // Where this reader reports the failure (spec/errors.md, How errors are reported):
            // held to by the tests in both engines, and by `fixtures --check`.
            let offset = crate::inspect::verify(&c.bytes)
                .err()
                .and_then(|e| e.offset);
            let mut v = json!({
                "name": c.name,
                "file": file,
                "bytes": c.bytes.len(),
                "rule": c.rule,
                "code": c.expected as u32,
                "code_name": c.expected.name(),
                "offset": offset,
            });
            if !c.stored() {
                v["generate"] = json!(format!("not stored: {} zero bytes", c.bytes.len()));
            }
            v
        })
        .collect();
    json!({
        "description": "One file per rejection rule of spec/slm.md. A reader MUST accept base.slm and reject every case with exactly its code, at the byte offset given (spec/errors.md; null: the error has none). Generated by harness/src/malformed.rs (tinyrustlm fixtures).",
        "base": { "file": BASE_FILE, "bytes": base.len(), "file_digest": to_hex(&file_digest(&base)) },
        "cases": list,
    })
}

/// Writes corpus/malformed/ into `dir`: base.slm, one NAME.slm per stored case and
/// manifest.json, and deletes .slm files that are no case. With `check`, writes nothing and
/// returns what would change. Returns the names of files written, deleted or differing.
pub fn generate(dir: &Path, check: bool) -> Result<Vec<String>> {
    let cases = cases();
    let mut files: Vec<(String, Vec<u8>)> = vec![(BASE_FILE.to_string(), base_bytes())];
    files.extend(
        cases
            .iter()
            .filter(|c| c.stored())
            .map(|c| (format!("{}.slm", c.name), c.bytes.clone())),
    );
    let mut manifest = serde_json::to_string_pretty(&manifest(&cases))?;
    manifest.push('\n');
    files.push(("manifest.json".to_string(), manifest.into_bytes()));
    write_dir(dir, "malformed", &files, &["slm"], check)
}

/// Writes `files` into `dir` (`label` names it in the result) and deletes files there whose
/// extension is one of `exts` and that are not among them. With `check`, writes nothing and
/// returns what would change. Returns the names of files written, deleted or differing.
pub(crate) fn write_dir(
    dir: &Path,
    label: &str,
    files: &[(String, Vec<u8>)],
    exts: &[&str],
    check: bool,
) -> Result<Vec<String>> {
    if !check {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut touched = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_ref() != Some(bytes) {
            touched.push(format!("{label}/{name}"));
            if !check {
                std::fs::write(&path, bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    if let Ok(listing) = std::fs::read_dir(dir) {
        for entry in listing {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let ext = path.extension().unwrap_or_default().to_string_lossy();
            if path.is_file()
                && exts.contains(&ext.as_ref())
                && name != "manifest.json"
                && !files.iter().any(|(f, _)| *f == name)
            {
                touched.push(format!("{label}/{name} (not a case)"));
                if !check {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
    }
    Ok(touched)
}

/// Writes (or, with `check`, compares) the other formats' matrices under `corpus/malformed/`:
/// adapters/ (adapters, plans, receipts), registry/ and gguf/. They are derived from the corpus
/// fixtures and adapter fixtures, so they are generated after those.
pub fn generate_formats(corpus: &Path, check: bool) -> Result<Vec<String>> {
    let mut touched = adapters::generate(corpus, check)?;
    touched.extend(registry::generate(corpus, check)?);
    touched.extend(gguf::generate(corpus, check)?);
    Ok(touched)
}
