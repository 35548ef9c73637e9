//! llama2.c import and equivalence: stories260K converted at f32 prints exactly what run.c prints;
//! f16/q8_0/q4_0 conversions stay coherent and agree with f32 for a measured number of tokens;
//! v1 (fp32, "ak42" header) and v2 (int8 groups) checkpoints written here from the v0 weights
//! convert to the same model (v1) or a coherent one (v2); a v0 file with its own classifier
//! carries `output.weight`; malformed checkpoints are refused with an error, never a panic.

mod common;

use common::{finish, greedy, shared_file};
use harness::llama2c::convert;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use runtime::format::{self, DType};
use runtime::generate::Session;
use runtime::model::Model;

const MAGIC_V1: u32 = 0x616b_3432;

// ---------------------------------------------------------------------------------------------
// A v0 checkpoint read independently of the converter, and v0/v1/v2 writers.

/// The weights of a llama2.c checkpoint, each per-layer kind holding all layers back to back.
#[derive(Clone)]
struct Weights {
    /// dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (positive), seq_len.
    header: [i32; 7],
    embed: Vec<f32>,
    rms_att: Vec<f32>,
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    wo: Vec<f32>,
    rms_ffn: Vec<f32>,
    w1: Vec<f32>,
    w2: Vec<f32>,
    w3: Vec<f32>,
    rms_final: Vec<f32>,
    /// The legacy freq_cis_real and freq_cis_imag block (v0 only).
    freq: Vec<f32>,
    /// A separate classifier (the checkpoint is then "unshared").
    wcls: Option<Vec<f32>>,
}

impl Weights {
    fn n_layers(&self) -> usize {
        self.header[2] as usize
    }

    /// Parses a legacy v0 file (shared classifier).
    fn parse_v0(bytes: &[u8]) -> Weights {
        let ints: Vec<i32> = bytes[..28]
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let header: [i32; 7] = ints.try_into().unwrap();
        let [dim, hidden, layers, heads, kv_heads, vocab, seq] = header.map(|v| v as usize);
        let kv_dim = dim / heads * kv_heads;
        let mut floats = bytes[28..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()));
        let mut take = |n: usize| -> Vec<f32> { floats.by_ref().take(n).collect() };
        let w = Weights {
            header,
            embed: take(vocab * dim),
            rms_att: take(layers * dim),
            wq: take(layers * dim * dim),
            wk: take(layers * kv_dim * dim),
            wv: take(layers * kv_dim * dim),
            wo: take(layers * dim * dim),
            rms_ffn: take(layers * dim),
            w1: take(layers * hidden * dim),
            w2: take(layers * dim * hidden),
            w3: take(layers * hidden * dim),
            rms_final: take(dim),
            freq: take(seq * (dim / heads)),
            wcls: None,
        };
        assert!(floats.next().is_none(), "the v0 file is shared-classifier");
        w
    }

    fn header_ints(&self) -> Vec<u8> {
        let mut h = self.header;
        if self.wcls.is_some() {
            h[5] = -h[5];
        }
        h.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// v0: header (negative vocab when unshared), embedding, layers, final norm, freq_cis,
    /// then the classifier when there is one.
    fn v0(&self) -> Vec<u8> {
        let mut out = self.header_ints();
        for t in [
            &self.embed,
            &self.rms_att,
            &self.wq,
            &self.wk,
            &self.wv,
            &self.wo,
            &self.rms_ffn,
            &self.w1,
            &self.w2,
            &self.w3,
            &self.rms_final,
            &self.freq,
        ] {
            put_f32(&mut out, t);
        }
        if let Some(c) = &self.wcls {
            put_f32(&mut out, c);
        }
        out
    }

    /// The 256-byte v1/v2 header: magic, version, the 7 ints (vocab positive), the shared
    /// classifier byte, v2's group size, zeros.
    fn header_v(&self, version: i32, group: Option<i32>) -> Vec<u8> {
        let mut out = MAGIC_V1.to_le_bytes().to_vec();
        out.extend(version.to_le_bytes());
        out.extend(self.header.iter().flat_map(|v| v.to_le_bytes()));
        out.push(u8::from(self.wcls.is_none()));
        if let Some(g) = group {
            out.extend(g.to_le_bytes());
        }
        out.resize(256, 0);
        out
    }

    /// The matrices in export.py's order (each per-layer kind as one block of all layers).
    fn matrices(&self) -> [&Vec<f32>; 8] {
        [
            &self.embed,
            &self.wq,
            &self.wk,
            &self.wv,
            &self.wo,
            &self.w1,
            &self.w2,
            &self.w3,
        ]
    }

    /// v1 (export.py version1_export): header, norms, embedding, layer matrices, classifier.
    fn v1(&self) -> Vec<u8> {
        let mut out = self.header_v(1, None);
        put_f32(&mut out, &self.rms_att);
        put_f32(&mut out, &self.rms_ffn);
        put_f32(&mut out, &self.rms_final);
        for m in self.matrices() {
            put_f32(&mut out, m);
        }
        if let Some(c) = &self.wcls {
            put_f32(&mut out, c);
        }
        out
    }

    /// The v2 group size: 64, halved until it divides dim (export.py's backoff).
    fn v2_group(&self) -> usize {
        let mut g = 64;
        while !(self.header[0] as usize).is_multiple_of(g) {
            g /= 2;
        }
        g
    }

    /// v2 (export.py version2_export, as runq.c reads it): header with the group size, fp32
    /// norms, then per tensor (each layer's matrix on its own) its int8 values then its scales.
    fn v2(&self) -> Vec<u8> {
        let g = self.v2_group();
        let mut out = self.header_v(2, Some(g as i32));
        put_f32(&mut out, &self.rms_att);
        put_f32(&mut out, &self.rms_ffn);
        put_f32(&mut out, &self.rms_final);
        let layers = self.n_layers();
        let mut tensors: Vec<&[f32]> = vec![&self.embed];
        for m in &self.matrices()[1..] {
            tensors.extend(m.chunks_exact(m.len() / layers).map(|c| c as &[f32]));
        }
        if let Some(c) = &self.wcls {
            tensors.push(c);
        }
        for t in tensors {
            let (q, s) = quantize_q80(t, g);
            out.extend(q.iter().map(|&v| v as u8));
            put_f32(&mut out, &s);
        }
        out
    }
}

fn put_f32(out: &mut Vec<u8>, v: &[f32]) {
    out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
}

/// export.py's quantize_q80: per group scale = max|w| / 127, q = round-half-even(w / scale).
fn quantize_q80(w: &[f32], group: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(w.len());
    let mut s = Vec::with_capacity(w.len() / group);
    for g in w.chunks_exact(group) {
        let wmax = g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = wmax / 127.0;
        s.push(scale);
        q.extend(g.iter().map(|v| (v / scale).round_ties_even() as i8));
    }
    (q, s)
}

// ---------------------------------------------------------------------------------------------
// stories260K

const EXPECTED_BYTES: usize = 464;
/// Greedy tokens each conversion agrees with f32 on (of 200), measured; the tests hold them.
const AGREE_F16: usize = 200;
const AGREE_Q8_0: usize = 114;
const AGREE_Q4_0: usize = 27;
const AGREE_V2: usize = 61;

struct Stories {
    bin: Vec<u8>,
    tok: Vec<u8>,
}

fn stories() -> Option<Stories> {
    Some(Stories {
        bin: shared_file("models/stories260K/stories260K.bin")?,
        tok: shared_file("models/stories260K/tok512.bin")?,
    })
}

fn convert_bytes(bin: &[u8], tok: &[u8], dtype: DType) -> Vec<u8> {
    let c = convert(bin, tok, dtype, "stories260K").expect("converts");
    format::write(&c.model).expect("writes")
}

/// Greedy generation of 200 tokens from the empty prompt: token ids and text.
fn greedy_200(bytes: Vec<u8>) -> (Vec<u32>, Vec<u8>) {
    let mut s = Session::new(Model::load(bytes).expect("loads"), 0).unwrap();
    s.start(b"", greedy(200)).unwrap();
    finish(&mut s);
    (s.generated_tokens().to_vec(), s.text().to_vec())
}

fn agreement(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The text is a story: starts as one, valid UTF-8, mostly ASCII letters.
fn assert_coherent(what: &str, text: &[u8]) {
    let s = std::str::from_utf8(text).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    assert!(s.starts_with("Once upon a time"), "{what}: {s:?}");
    let letters = text.iter().filter(|b| b.is_ascii_alphabetic()).count();
    let share = letters as f64 / text.len() as f64;
    assert!(share > 0.7, "{what}: {share:.2} letters in {s:?}");
}

#[test]
fn stories260k_f32_prints_what_run_c_prints() {
    let (Some(st), Some(expected)) = (
        stories(),
        shared_file("models/stories260K/expected_run_t0_n200.txt"),
    ) else {
        return;
    };
    assert_eq!(expected.len(), EXPECTED_BYTES);
    let bytes = convert_bytes(&st.bin, &st.tok, DType::F32);
    let mut out = Vec::new();
    harness::run::run_c_output(bytes, b"", greedy(200), 0, &mut out).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out[..EXPECTED_BYTES.min(out.len())]),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(&out[EXPECTED_BYTES..], b"\n");
}

#[test]
fn stories260k_reduced_precision_stays_coherent() {
    let Some(st) = stories() else { return };
    let (reference, text) = greedy_200(convert_bytes(&st.bin, &st.tok, DType::F32));
    assert_coherent("f32", &text);
    for (dtype, bound) in [
        (DType::F16, AGREE_F16),
        (DType::Q8_0, AGREE_Q8_0),
        (DType::Q4_0, AGREE_Q4_0),
    ] {
        let (ids, text) = greedy_200(convert_bytes(&st.bin, &st.tok, dtype));
        let agree = agreement(&reference, &ids);
        println!(
            "{}: agrees with f32 on {agree} of {} greedy tokens: {:?}",
            dtype.name(),
            reference.len(),
            String::from_utf8_lossy(&text)
        );
        assert_coherent(dtype.name(), &text);
        assert!(agree >= bound, "{}: {agree} < {bound}", dtype.name());
    }
}

#[test]
fn stories260k_v1_converts_like_v0() {
    let Some(st) = stories() else { return };
    let w = Weights::parse_v0(&st.bin);
    assert_eq!(w.v0(), st.bin, "the test's v0 writer reproduces the file");
    let v0 = convert(&st.bin, &st.tok, DType::F32, "stories260K").unwrap();
    let mut v1 = convert(&w.v1(), &st.tok, DType::F32, "stories260K").unwrap();
    // The provenance names the input file's digest, which differs by construction.
    assert_ne!(v0.model.metadata, v1.model.metadata);
    v1.model.metadata = v0.model.metadata.clone();
    assert!(format::write(&v1.model).unwrap() == format::write(&v0.model).unwrap());
}

#[test]
fn stories260k_v2_converts_coherently() {
    let Some(st) = stories() else { return };
    let w = Weights::parse_v0(&st.bin);
    assert_eq!(w.v2_group(), 64);
    let (reference, _) = greedy_200(convert_bytes(&st.bin, &st.tok, DType::F32));
    let v2 = convert(&w.v2(), &st.tok, DType::F32, "stories260K v2").unwrap();
    assert!(v2
        .model
        .metadata
        .iter()
        .any(|(_, v)| v.contains("int8 groups of 64")));
    let (ids, text) = greedy_200(format::write(&v2.model).unwrap());
    let agree = agreement(&reference, &ids);
    println!(
        "v2 (int8 groups of 64) at f32: agrees with f32 on {agree} of {}: {:?}",
        reference.len(),
        String::from_utf8_lossy(&text)
    );
    assert_coherent("v2", &text);
    assert!(agree >= AGREE_V2, "v2: {agree} < {AGREE_V2}");
}

#[test]
fn stories260k_unshared_classifier_is_used() {
    let Some(st) = stories() else { return };
    let shared = Weights::parse_v0(&st.bin);
    let (reference, _) = greedy_200(convert_bytes(&st.bin, &st.tok, DType::F32));

    // The classifier a copy of the embedding: the same generation, from output.weight.
    let mut w = shared.clone();
    w.wcls = Some(w.embed.clone());
    let c = convert(&w.v0(), &st.tok, DType::F32, "unshared").unwrap();
    assert!(!c.model.config.tied_classifier);
    let out = c.model.tensors.iter().find(|t| t.name == "output.weight");
    let embd = c
        .model
        .tensors
        .iter()
        .find(|t| t.name == "token_embd.weight");
    assert_eq!(
        out.expect("output.weight present").bytes,
        embd.unwrap().bytes
    );
    let (ids, _) = greedy_200(format::write(&c.model).unwrap());
    assert_eq!(ids, reference);

    // The classifier negated: greedy now picks what was least likely, so output.weight is read.
    w.wcls = Some(w.embed.iter().map(|v| -v).collect());
    let bytes = format::write(
        &convert(&w.v0(), &st.tok, DType::F32, "negated")
            .unwrap()
            .model,
    );
    let mut s = Session::new(Model::load(bytes.unwrap()).unwrap(), 0).unwrap();
    s.start(b"", greedy(1)).unwrap();
    finish(&mut s);
    assert_ne!(s.generated_tokens().first(), reference.first());

    // v1 with its own classifier converts like v0 with it.
    let v0 = convert(&w.v0(), &st.tok, DType::F32, "x").unwrap();
    let mut v1 = convert(&w.v1(), &st.tok, DType::F32, "x").unwrap();
    v1.model.metadata = v0.model.metadata.clone();
    assert!(v1.model == v0.model);
}

// ---------------------------------------------------------------------------------------------
// Malformed checkpoints (a tiny random model; no reference files needed)

/// A llama2.c tokenizer.bin of `<unk>`, `<s>`, `</s>`, the 256 byte tokens and `extra` pieces.
fn tiny_tokenizer(extra: &[&str]) -> Vec<u8> {
    let mut pieces: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec(), b"</s>".to_vec()];
    pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
    pieces.extend(extra.iter().map(|p| p.as_bytes().to_vec()));
    let mut out = (pieces.iter().map(Vec::len).max().unwrap() as i32)
        .to_le_bytes()
        .to_vec();
    for (i, p) in pieces.iter().enumerate() {
        out.extend((-(i as f32)).to_le_bytes());
        out.extend((p.len() as i32).to_le_bytes());
        out.extend(p);
    }
    out
}

const TINY_EXTRA: [&str; 5] = [" a", " b", "ab", " the", "e"];

/// dim 8, hidden 16, 2 layers, 2 heads, 1 kv head, 264 tokens, 16 positions; seeded weights.
fn tiny_weights() -> Weights {
    tiny_weights_with_layers(2)
}

/// [`tiny_weights`] with `layers` layers.
fn tiny_weights_with_layers(layers: usize) -> Weights {
    let mut rng = harness::fixtures::SplitMix64(5);
    let mut gen = |n: usize| -> Vec<f32> { (0..n).map(|_| 0.5 * rng.next_signed()).collect() };
    let (dim, hidden, kv_dim, vocab, seq) = (8, 16, 4, 264, 16);
    Weights {
        header: [
            dim as i32,
            hidden as i32,
            layers as i32,
            2,
            1,
            vocab as i32,
            seq as i32,
        ],
        embed: gen(vocab * dim),
        rms_att: vec![1.0; layers * dim],
        wq: gen(layers * dim * dim),
        wk: gen(layers * kv_dim * dim),
        wv: gen(layers * kv_dim * dim),
        wo: gen(layers * dim * dim),
        rms_ffn: vec![1.0; layers * dim],
        w1: gen(layers * hidden * dim),
        w2: gen(layers * dim * hidden),
        w3: gen(layers * hidden * dim),
        rms_final: vec![1.0; dim],
        freq: vec![0.0; seq * 4],
        wcls: None,
    }
}

/// The three versions of the tiny model, and one with a separate classifier.
fn tiny_checkpoints() -> Vec<(&'static str, Vec<u8>)> {
    let w = tiny_weights();
    let mut unshared = w.clone();
    unshared.wcls = Some(w.embed.iter().map(|v| v * 0.5).collect());
    vec![
        ("v0", w.v0()),
        ("v1", w.v1()),
        ("v2", w.v2()),
        ("v0 unshared", unshared.v0()),
    ]
}

/// Converts (and, when that succeeds, writes and loads) without panicking; true if accepted.
fn try_convert(bytes: &[u8], tok: &[u8], dtype: DType) -> bool {
    match convert(bytes, tok, dtype, "tiny") {
        Ok(c) => format::write(&c.model)
            .ok()
            .and_then(|b| Model::load(b).ok())
            .is_some(),
        Err(_) => false,
    }
}

fn set_i32(bytes: &mut [u8], at: usize, v: i32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn tiny_checkpoints_convert() {
    let tok = tiny_tokenizer(&TINY_EXTRA);
    for (name, bytes) in tiny_checkpoints() {
        for dtype in DType::ALL {
            assert!(try_convert(&bytes, &tok, dtype), "{name} {}", dtype.name());
        }
    }
    let w = tiny_weights();
    assert_eq!(w.v2_group(), 8, "group size backs off to divide dim 8");
}

#[test]
fn malformed_checkpoints_are_refused() {
    let tok = tiny_tokenizer(&TINY_EXTRA);
    for (name, good) in tiny_checkpoints() {
        // Header ints start at 0 (v0) or 8 (after magic and version).
        let ints = if name.starts_with("v0") { 0 } else { 8 };
        let refused = |bytes: &[u8], what: &str| {
            assert!(
                !try_convert(bytes, &tok, DType::F32),
                "{name}: {what} was accepted"
            );
        };
        for len in (0..good.len()).step_by(97).chain([good.len() - 1]) {
            refused(&good[..len], &format!("truncated to {len}"));
        }
        for extra in [1, 4, 64] {
            let mut b = good.clone();
            b.resize(good.len() + extra, 0);
            refused(&b, &format!("{extra} trailing bytes"));
        }
        for field in 0..7 {
            let mut b = good.clone();
            set_i32(&mut b, ints + 4 * field, 0);
            refused(&b, &format!("header int {field} zero"));
            set_i32(&mut b, ints + 4 * field, -3);
            refused(&b, &format!("header int {field} negative"));
        }
        // Heads that do not divide: 3 heads for dim 8, 3 kv heads for 2 heads.
        let mut b = good.clone();
        set_i32(&mut b, ints + 12, 3);
        refused(&b, "n_heads 3 with dim 8");
        let mut b = good.clone();
        set_i32(&mut b, ints + 16, 3);
        refused(&b, "n_kv_heads 3 with 2 heads");
        if ints == 8 {
            for version in [0, 3, -1, 0x100] {
                let mut b = good.clone();
                set_i32(&mut b, 4, version);
                refused(&b, &format!("version {version}"));
            }
            let mut b = good.clone();
            b[36] = 2;
            refused(&b, "shared_classifier byte 2");
            let mut b = good.clone();
            b[255] = 1;
            refused(&b, "non-zero header padding");
        }
        if name == "v2" {
            for g in [0, 3, 5, 7, 1 << 20, -8] {
                let mut b = good.clone();
                set_i32(&mut b, 37, g);
                refused(&b, &format!("group size {g}"));
            }
        }
    }
    // A tokenizer of the wrong size for the checkpoint.
    let w = tiny_weights();
    assert!(!try_convert(
        &w.v0(),
        &tiny_tokenizer(&TINY_EXTRA[..4]),
        DType::F32
    ));
}

/// One mutation of a checkpoint.
#[derive(Clone, Debug)]
enum Mutation {
    /// Set byte `at % len` to `value`.
    Byte { at: usize, value: u8 },
    /// Set the 4 bytes at `at % 64` to `value` (the header region of every version).
    HeaderInt { at: usize, value: i32 },
    /// Keep `len % (file length + 1)` bytes.
    Truncate { len: usize },
    /// Append these bytes.
    Append { bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(0i32),
        Just(-1),
        Just(1),
        Just(2),
        Just(3),
        Just(64),
        Just(i32::MAX),
        Just(i32::MIN),
        Just(1 << 20),
        any::<i32>(),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Byte { at, value }),
        (0usize..61, interesting).prop_map(|(at, value)| Mutation::HeaderInt { at, value }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(|bytes| Mutation::Append { bytes }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Byte { at, value } => {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = *value;
            }
        }
        Mutation::HeaderInt { at, value } => {
            if bytes.len() >= at + 4 {
                set_i32(bytes, *at, *value);
            }
        }
        Mutation::Truncate { len } => bytes.truncate(len % (bytes.len() + 1)),
        Mutation::Append { bytes: extra } => bytes.extend(extra),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    })]

    /// No mutation of a valid checkpoint makes the converter (or the writer and loader after
    /// it) panic; header and length mutations are refused.
    #[test]
    fn mutated_checkpoints_never_panic(
        which in 0usize..4,
        dtype in proptest::sample::select(DType::ALL.to_vec()),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let tok = tiny_tokenizer(&TINY_EXTRA);
        let mut bytes = tiny_checkpoints().swap_remove(which).1;
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let structural = mutations
            .iter()
            .all(|m| matches!(m, Mutation::Truncate { .. } | Mutation::Append { .. }));
        let accepted = try_convert(&bytes, &tok, dtype);
        let original = tiny_checkpoints().swap_remove(which).1;
        if structural && bytes.len() != original.len() {
            prop_assert!(!accepted, "a checkpoint of {} bytes was accepted", bytes.len());
        }
    }
}

/// A checkpoint whose model would be over the budget is refused from its header, before any
/// weight is read: here the header of a 2048-wide v2 model without its weights (reading them
/// would have come first, and failed as a truncation instead).
#[test]
fn an_oversized_model_is_refused_from_the_header() {
    let mut header = MAGIC_V1.to_le_bytes().to_vec();
    header.extend(2i32.to_le_bytes());
    for v in [2048i32, 5632, 3, 16, 16, 32000, 512] {
        header.extend(v.to_le_bytes());
    }
    header.push(1); // shared classifier
    header.extend(64i32.to_le_bytes());
    header.resize(256, 0);
    let tok = tiny_tokenizer(&TINY_EXTRA);
    for dtype in [DType::F32, DType::Q4_0] {
        let Err(e) = harness::llama2c::convert(&header, &tok, dtype, "big.bin") else {
            panic!("{dtype:?}: accepted");
        };
        let message = format!("{e:#}");
        assert!(
            message.contains("a .slm model is at most"),
            "{dtype:?}: {message}"
        );
    }
}

/// Errors name what is wrong: a GGUF given as the checkpoint, a bad tokenizer file.
#[test]
fn refusals_name_the_file_at_fault() {
    let tok = tiny_tokenizer(&TINY_EXTRA);
    let (_, good) = tiny_checkpoints().remove(0);
    let message =
        |model: &[u8], tok: &[u8]| match harness::llama2c::convert(model, tok, DType::F32, "m.bin")
        {
            Ok(_) => panic!("accepted"),
            Err(e) => format!("{e:#}"),
        };
    let mut gguf = b"GGUF".to_vec();
    gguf.extend_from_slice(&good[4..]);
    assert!(message(&gguf, &tok).contains("use `convert gguf`"));
    assert!(message(&good, &tok[..tok.len() - 1]).starts_with("the tokenizer: "));
}

/// A refused header names the field and its byte in the checkpoint (not an offset in the .slm
/// that was never written), before any weight is read; v1/v2 take no negative vocab size.
#[test]
fn header_refusals_name_the_checkpoint_field() {
    let tok = tiny_tokenizer(&TINY_EXTRA);
    let message = |model: &[u8]| match convert(model, &tok, DType::F32, "m.bin") {
        Ok(_) => panic!("accepted"),
        Err(e) => format!("{e:#}"),
    };
    let w = tiny_weights();
    for (version, good, ints) in [("v0", w.v0(), 0), ("v1", w.v1(), 8)] {
        let mut b = good.clone();
        set_i32(&mut b, ints + 8, 0);
        assert_eq!(
            message(&b),
            format!("checkpoint header: n_layers (byte {}) is 0", ints + 8),
            "{version}"
        );
        // head_dim = dim / n_heads = 1280 over the limit 1024: refused from the header alone
        // (the 8-float-wide weights after it are far too short for that shape).
        let mut b = good.clone();
        set_i32(&mut b, ints, 1280);
        set_i32(&mut b, ints + 12, 1);
        set_i32(&mut b, ints + 16, 1);
        assert_eq!(
            message(&b),
            format!(
                "the checkpoint's shape is not runnable: head_dim 1280 exceeds the limit 1024 \
                 (error 25 LimitExceeded; from dim (byte {}) / n_heads (byte {}))",
                ints,
                ints + 12
            ),
            "{version}"
        );
        let mut b = good.clone();
        set_i32(&mut b, ints + 8, 300);
        let m = message(&b);
        assert!(
            m.contains("n_layers 300 exceeds the limit 256")
                && m.contains(&format!("from n_layers (byte {})", ints + 8))
                && !m.contains("at byte"),
            "{m}"
        );
    }
    // A negative vocab size marks an unshared classifier in v0 only.
    let mut b = w.v1();
    set_i32(&mut b, 8 + 20, -264);
    assert!(
        message(&b).starts_with("checkpoint header: vocab_size (byte 28) is -264; only a v0"),
        "{}",
        message(&b)
    );
}

/// The provenance a converter writes itself stays within the metadata value limit however many
/// tensors it lists (here 80 layers' matrices kept f32, over 10 KB of names): the model
/// converts and loads, and the note says how much it left out.
#[test]
fn a_long_provenance_is_cut_not_refused() {
    let tok = tiny_tokenizer(&TINY_EXTRA);
    let w = tiny_weights_with_layers(80);
    let c = convert(&w.v0(), &tok, DType::Q8_0, "m.bin").expect("converts");
    assert_eq!(c.kept_f32.len(), 80 * 7 + 1);
    let bytes = format::write(&c.model).expect("writes");
    Model::load(bytes).expect("loads");
    let provenance = common::metadata_value(&c.model, "provenance");
    assert!(provenance.len() <= runtime::limits::MAX_METADATA_VALUE_BYTES);
    assert!(provenance.ends_with(" bytes left out)"), "{provenance}");
}
