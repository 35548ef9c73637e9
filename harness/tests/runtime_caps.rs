//! Every cap of runtime/src/limits.rs at its boundary: exactly at the cap accepted, one over
//! refused with the cap's specific code (harness/tests/caps.rs does the same for
//! harness/src/limits.rs). Each test goes through the smallest public function that enforces the
//! cap; where a cap cannot be reached exactly with a valid input, the comment says which
//! construction stands in for it.
//!
//! Not caps, so not here: `HEADER_BYTES`, `ALIGNMENT` and `ADAPTER_HEADER_BYTES` are layout
//! constants (the .slm and adapter matrices in corpus/malformed/ refuse every deviation), and
//! `DIGEST_CHUNK_BYTES` is a format constant (harness/tests/cleanroom.rs and format.rs compute
//! the digests with it independently);
//! `PREFILL_BATCH` is a computation parameter (harness/tests/prefill.rs); `ABI_HEADROOM_BYTES`
//! and the model-build estimate's `MODEL_BUILD_FIXED_BYTES` and `ALLOCATION_OVERHEAD_WORDS` are
//! memory-sized and tested through a host memory cap in harness/tests/faults.rs; `ADAPTER_AUTO_APPLY_BYTES` is enforced by the
//! harness's selector registry (harness/tests/caps.rs and adapters.rs `registry_rules`).

use harness::engine::wasmtime::{wasm_bytes, AbiInstance, WasmLimits, WasmModule};
use harness::fixtures::{corpus_dir, encode_tensor};
use harness::malformed;
use runtime::adapter::write::{write as write_adapter, Delta, RecordData};
use runtime::adapter::{Adapter, AdapterKind, Plan, PlanModule, Receipt};
use runtime::format::header::{encode_header, parse_header, Sections};
use runtime::format::{self, directory, llama, metadata, vocab_section, Config, DType};
use runtime::format::{ModelFile, Slm, TensorData, TokenType};
use runtime::generate::sampler::SamplerSettings;
use runtime::generate::session::Session;
use runtime::generate::tokenizer::Tokenizer;
use runtime::generate::Step;
use runtime::limits::*;
use runtime::model::Model;
use runtime::ErrorCode as C;
use runtime::Result;
use std::sync::OnceLock;

#[track_caller]
fn refused<T: std::fmt::Debug>(r: Result<T>, want: C) {
    match r {
        Ok(v) => panic!("accepted ({v:?}); expected {want:?}"),
        Err(e) => assert_eq!(e.code, want, "{e}"),
    }
}

/// The code of a failure, or None when accepted.
fn code<T>(r: Result<T>) -> Option<C> {
    r.err().map(|e| e.code)
}

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join(name)).unwrap()
}

// ---- .slm ----

#[test]
fn model_bytes() {
    // The budget is checked on the length before any byte is parsed: a file of exactly
    // MAX_MODEL_BYTES passes it (and fails on its zero magic), one more byte does not.
    let mut b = vec![0u8; MAX_MODEL_BYTES as usize];
    assert_eq!(code(Slm::parse(&b)), Some(C::InvalidModelMagic));
    b.push(0);
    refused(Slm::parse(&b), C::BudgetExceeded);
}

fn base_config() -> Config {
    malformed::base_model().config
}

#[test]
fn header_shape_fields() {
    type Set = fn(&mut Config, u32);
    let fields: [(&str, u32, Set); 8] = [
        ("vocab_size", MAX_VOCAB, |c, v| c.vocab_size = v),
        ("dim", MAX_DIM, |c, v| c.dim = v),
        ("n_layers", MAX_LAYERS, |c, v| c.n_layers = v),
        ("n_heads", MAX_HEADS, |c, v| {
            c.n_heads = v;
            c.n_kv_heads = 1;
            c.head_dim = 2;
        }),
        ("n_kv_heads", MAX_HEADS, |c, v| {
            c.n_heads = v;
            c.n_kv_heads = v;
            c.head_dim = 2;
        }),
        ("head_dim", MAX_HEAD_DIM, |c, v| {
            c.n_heads = 1;
            c.n_kv_heads = 1;
            c.head_dim = v;
        }),
        ("ffn_dim", MAX_FFN_DIM, |c, v| c.ffn_dim = v),
        ("max_context", MAX_CONTEXT, |c, v| c.max_context = v),
    ];
    for (name, cap, set) in fields {
        let mut c = base_config();
        set(&mut c, cap);
        c.validate()
            .unwrap_or_else(|e| panic!("{name} at {cap}: {e}"));
        // n_kv_heads must divide n_heads: one over is tested with n_heads one over too.
        set(&mut c, cap + 1);
        refused(c.validate(), C::LimitExceeded);
    }
    // n_heads × head_dim (the query width) is at most MAX_DIM.
    let mut c = base_config();
    (c.n_heads, c.n_kv_heads, c.head_dim) = (16, 1, MAX_DIM / 16);
    c.validate().unwrap();
    c.head_dim += 2;
    refused(c.validate(), C::LimitExceeded);
}

fn header_with(lengths: [u64; 4]) -> (Vec<u8>, u64) {
    let (sections, file_len) = Sections::canonical(lengths).unwrap();
    let h = encode_header(&base_config(), &sections, file_len, &[0; 32]);
    (h.to_vec(), file_len)
}

#[test]
fn section_bytes() {
    // The section table is checked from the header alone: a metadata section of exactly
    // MAX_METADATA_BYTES (and a tokenizer section of MAX_TOKENIZER_BYTES) is accepted there.
    for (i, cap) in [(0usize, MAX_METADATA_BYTES), (1, MAX_TOKENIZER_BYTES)] {
        let mut lengths = [64, 64, 64, 64];
        lengths[i] = cap;
        let (h, len) = header_with(lengths);
        parse_header(&h, len).unwrap_or_else(|e| panic!("section {i} at {cap}: {e}"));
        lengths[i] = cap + 1;
        let (h, len) = header_with(lengths);
        refused(parse_header(&h, len), C::LimitExceeded);
    }
}

/// A metadata section of `entries` (encoded as given).
fn metadata_bytes(entries: &[(String, String)]) -> Vec<u8> {
    let mut out = (entries.len() as u32).to_le_bytes().to_vec();
    for (k, v) in entries {
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// `kind` and `name` plus `extra` keys (sorted), values as given.
fn metadata_with(extra: Vec<(String, String)>) -> Vec<u8> {
    let mut e = vec![
        ("kind".to_string(), "fixture".to_string()),
        ("name".to_string(), "caps".to_string()),
    ];
    e.extend(extra);
    e.sort();
    metadata_bytes(&e)
}

#[test]
fn metadata_entries_keys_and_values() {
    let keys = |n: usize| {
        (0..n)
            .map(|i| (format!("k{i:03}"), "v".to_string()))
            .collect()
    };
    metadata::parse(&metadata_with(keys(MAX_METADATA_ENTRIES as usize - 2)), 0).unwrap();
    refused(
        metadata::parse(&metadata_with(keys(MAX_METADATA_ENTRIES as usize - 1)), 0),
        C::LimitExceeded,
    );
    let key = |n: usize| vec![("k".repeat(n), "v".to_string())];
    metadata::parse(&metadata_with(key(MAX_METADATA_KEY_BYTES)), 0).unwrap();
    refused(
        metadata::parse(&metadata_with(key(MAX_METADATA_KEY_BYTES + 1)), 0),
        C::InvalidMetadata,
    );
    let value = |n: usize| vec![("description".to_string(), "v".repeat(n))];
    metadata::parse(&metadata_with(value(MAX_METADATA_VALUE_BYTES)), 0).unwrap();
    refused(
        metadata::parse(&metadata_with(value(MAX_METADATA_VALUE_BYTES + 1)), 0),
        C::LimitExceeded,
    );
}

#[test]
fn tokenizer_pieces_and_stop_tokens() {
    let base = malformed::base_model().vocab;
    let n = base.pieces.len() as u32;
    let mut v = base.clone();
    v.pieces.set(5, &[b'p'; MAX_PIECE_BYTES]).unwrap();
    vocab_section::parse(&vocab_section::encode(&v).unwrap(), 0, n).unwrap();
    v.pieces.set(5, &[b'p'; MAX_PIECE_BYTES + 1]).unwrap();
    // The writer refuses it too, so the section is encoded at the cap and its length field
    // raised by one with one more byte inserted.
    refused(vocab_section::encode(&v), C::LimitExceeded);
    v.pieces.set(5, &[b'p'; MAX_PIECE_BYTES]).unwrap();
    let mut bytes = vocab_section::encode(&v).unwrap();
    let needle = vec![b'p'; MAX_PIECE_BYTES];
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at - 2..at].copy_from_slice(&(MAX_PIECE_BYTES as u16 + 1).to_le_bytes());
    bytes.insert(at, b'p');
    refused(vocab_section::parse(&bytes, 0, n), C::LimitExceeded);

    let mut v = base.clone();
    v.stop = (0..MAX_STOP_TOKENS).collect();
    vocab_section::parse(&vocab_section::encode(&v).unwrap(), 0, n).unwrap();
    v.stop.push(MAX_STOP_TOKENS);
    let bytes = vocab_section::encode(&v);
    let bytes = bytes.unwrap_or_else(|_| {
        // The writer refuses 17 stops: encode 16 and append one (n_stop is at byte 28).
        v.stop.pop();
        let mut b = vocab_section::encode(&v).unwrap();
        b[28..32].copy_from_slice(&(MAX_STOP_TOKENS + 1).to_le_bytes());
        let at = 32 + 4 * MAX_STOP_TOKENS as usize;
        b.splice(at..at, MAX_STOP_TOKENS.to_le_bytes());
        b
    });
    refused(vocab_section::parse(&bytes, 0, n), C::LimitExceeded);
}

#[test]
fn merges() {
    // MAX_MERGES valid merges need more distinct tokens than MAX_VOCAB allows, so a ranked-merge
    // section of the corpus declares exactly MAX_MERGES merges without holding them: the count
    // passes its cap (the reader then finds the section too short), one more is LimitExceeded.
    let file = corpus("ranked-gqa1-tied-q8_0.slm");
    let slm = Slm::parse(&file).unwrap();
    let s = slm.header.sections.tokenizer;
    let mut tok = file[s.offset as usize..(s.offset + s.length) as usize].to_vec();
    let n_stop = u32::from_le_bytes(tok[28..32].try_into().unwrap()) as usize;
    let at = 32 + 4 * n_stop;
    let n = slm.header.config.vocab_size;
    tok[at..at + 4].copy_from_slice(&MAX_MERGES.to_le_bytes());
    let c = code(vocab_section::parse(&tok, 0, n));
    assert!(
        c.is_some() && c != Some(C::LimitExceeded),
        "MAX_MERGES declared: {c:?}"
    );
    tok[at..at + 4].copy_from_slice(&(MAX_MERGES + 1).to_le_bytes());
    refused(vocab_section::parse(&tok, 0, n), C::LimitExceeded);
}

/// The base model of the .slm matrix with `extra` tensors (f32, zeros) appended, written (the
/// writer reads its output back). No extra tensor is part of the llama architecture, so the best such a file can do
/// is reach the architecture check, which comes after the count, name and rank checks: "at the
/// cap" is that refusal (InvalidTensorDirectory, "not part of the llama architecture"), "over"
/// is the cap's own refusal. A valid file cannot reach these caps: a llama directory has
/// 2 + 9 × n_layers tensors (3 + untied), never 1024, with names of at most 22 bytes and rank 2.
fn with_extra(extra: &[(String, Vec<u32>)]) -> runtime::Error {
    let mut m = malformed::base_model();
    for (name, shape) in extra {
        let n: u32 = shape.iter().product();
        m.tensors.push(TensorData {
            name: name.clone(),
            dtype: DType::F32,
            shape: shape.clone(),
            bytes: vec![0; 4 * n as usize],
        });
    }
    // The writer reads back what it wrote: its refusal is the reader's.
    format::write(&m).unwrap_err()
}

#[track_caller]
fn reaches_architecture_check(e: runtime::Error) {
    assert_eq!(e.code, C::InvalidTensorDirectory, "{e}");
    assert!(
        e.message.contains("not part of the llama architecture"),
        "{e}"
    );
}

#[track_caller]
fn refused_before_architecture_check(e: runtime::Error, want: C) {
    assert_eq!(e.code, want, "{e}");
    assert!(!e.message.contains("architecture"), "{e}");
}

#[test]
fn directory_tensors_names_and_rank() {
    let base = malformed::base_model().tensors.len();
    let names = |n: usize| -> Vec<(String, Vec<u32>)> {
        (0..n).map(|i| (format!("x.{i:04}"), vec![1])).collect()
    };
    reaches_architecture_check(with_extra(&names(MAX_TENSORS as usize - base)));
    refused_before_architecture_check(
        with_extra(&names(MAX_TENSORS as usize - base + 1)),
        C::LimitExceeded,
    );
    let long = |n: usize| vec![("x".repeat(n), vec![1])];
    assert!(directory::valid_name(&"x".repeat(MAX_TENSOR_NAME_BYTES)));
    reaches_architecture_check(with_extra(&long(MAX_TENSOR_NAME_BYTES)));
    assert!(!directory::valid_name(
        &"x".repeat(MAX_TENSOR_NAME_BYTES + 1)
    ));
    refused_before_architecture_check(
        with_extra(&long(MAX_TENSOR_NAME_BYTES + 1)),
        C::InvalidTensorDirectory,
    );
    let ranked = |r: usize| vec![("x".to_string(), vec![1; r])];
    reaches_architecture_check(with_extra(&ranked(MAX_RANK)));
    refused_before_architecture_check(with_extra(&ranked(MAX_RANK + 1)), C::InvalidTensorDirectory);
}

// ---- generation ----

#[test]
fn prompt_bytes() {
    let v = malformed::base_model().vocab;
    let t = Tokenizer::new(&v).unwrap();
    let mut out = Vec::new();
    t.encode(&vec![b'a'; MAX_PROMPT_BYTES], false, &mut out)
        .unwrap();
    refused(
        t.encode(&vec![b'a'; MAX_PROMPT_BYTES + 1], false, &mut out),
        C::PromptTooLong,
    );
}

fn settings(top_k: Option<u32>, max_new_tokens: u32) -> SamplerSettings {
    SamplerSettings {
        temperature: 0.0,
        top_k,
        top_p: 1.0,
        seed: 1,
        max_new_tokens,
    }
}

#[test]
fn sampler_settings() {
    settings(Some(MAX_TOP_K), 1).validate().unwrap();
    refused(
        settings(Some(MAX_TOP_K + 1), 1).validate(),
        C::InvalidSettings,
    );
    settings(None, MAX_NEW_TOKENS).validate().unwrap();
    refused(
        settings(None, MAX_NEW_TOKENS + 1).validate(),
        C::InvalidSettings,
    );
}

/// A model whose greedy output is token 0 forever, a piece of MAX_PIECE_BYTES: every weight
/// matrix is zero (all logits tie; the greedy sampler takes the lowest id) and nothing stops it.
fn long_piece_model() -> Model {
    let mut m: ModelFile = malformed::base_model();
    m.config.max_context = 512;
    // Token 0 is the long piece; <unk> moves to id 1 (no BOS).
    m.vocab.pieces.set(0, &[b'z'; MAX_PIECE_BYTES]).unwrap();
    m.vocab.types[0] = TokenType::Normal;
    m.vocab.pieces.set(1, b"<unk>").unwrap();
    m.vocab.types[1] = TokenType::Unknown;
    m.vocab.unk = Some(1);
    m.vocab.bos = None;
    m.vocab.add_bos = false;
    m.vocab.eos = None;
    m.vocab.stop.clear();
    let roles: Vec<_> = llama::slots(&m.config)
        .into_iter()
        .map(|s| (s.name, s.role))
        .collect();
    for t in &mut m.tensors {
        let role = roles.iter().find(|(n, _)| *n == t.name).unwrap().1;
        if role == llama::Role::Matrix {
            let n: u32 = t.shape.iter().product();
            t.bytes = encode_tensor(&vec![0.0; n as usize], t.dtype).unwrap();
        }
    }
    Model::load(format::write(&m).unwrap()).unwrap()
}

#[test]
fn output_bytes() {
    // MAX_OUTPUT_BYTES / MAX_PIECE_BYTES = 256 tokens of 256 bytes fill the output exactly.
    let per = MAX_OUTPUT_BYTES / MAX_PIECE_BYTES;
    let mut s = Session::new(long_piece_model(), 0).unwrap();
    s.start(b"a", settings(None, per as u32)).unwrap();
    let finish = loop {
        match s.step().unwrap() {
            Step::Token { .. } => continue,
            other => break other,
        }
    };
    assert_eq!(s.text().len(), MAX_OUTPUT_BYTES, "{finish:?}");
    assert!(s.text().iter().all(|&b| b == b'z'));
    // One token more would pass the cap.
    s.start(b"a", settings(None, per as u32 + 1)).unwrap();
    let err = loop {
        match s.step() {
            Ok(Step::Token { .. }) => continue,
            other => break other,
        }
    };
    refused(err, C::OutputBufferExceeded);
    assert_eq!(s.text().len(), MAX_OUTPUT_BYTES);
}

// ---- adapters, plans, receipts ----

fn binding() -> runtime::adapter::BaseBinding {
    Model::load(corpus("byte-mha-tied-f32.slm"))
        .unwrap()
        .binding
}

#[test]
fn adapter_bytes() {
    // As the model budget: the length is checked first.
    let mut b = vec![0u8; MAX_ADAPTER_BYTES as usize];
    assert_eq!(code(Adapter::parse(&b)), Some(C::InvalidAdapterMagic));
    b.push(0);
    refused(Adapter::parse(&b), C::BudgetExceeded);
}

#[test]
fn adapter_tensors_and_rank() {
    let b = binding();
    let records = |n: u32| -> Vec<RecordData> {
        (0..n)
            .map(|i| RecordData {
                name: format!("t.{i:05}"),
                shape: vec![1],
                delta: Delta::Dense(vec![0.5]),
            })
            .collect()
    };
    let a = write_adapter(AdapterKind::Dense, &b, &records(MAX_ADAPTER_TENSORS)).unwrap();
    assert_eq!(
        Adapter::parse(&a).unwrap().records.len(),
        MAX_ADAPTER_TENSORS as usize
    );
    let a = write_adapter(AdapterKind::Dense, &b, &records(MAX_ADAPTER_TENSORS + 1)).unwrap();
    refused(Adapter::parse(&a), C::LimitExceeded);

    let low_rank = |r: u32| {
        let rec = RecordData {
            name: "blk.0.attn_q.weight".into(),
            shape: vec![32, 32],
            delta: Delta::LowRank {
                rank: r,
                scale: 1.0,
                a: vec![0.01; 32 * r as usize],
                b: vec![0.01; 32 * r as usize],
            },
        };
        write_adapter(AdapterKind::LowRank, &b, &[rec]).unwrap()
    };
    Adapter::parse(&low_rank(MAX_ADAPTER_RANK)).unwrap();
    refused(
        Adapter::parse(&low_rank(MAX_ADAPTER_RANK + 1)),
        C::LimitExceeded,
    );
}

fn modules(n: usize) -> Vec<PlanModule> {
    (0..n)
        .map(|i| PlanModule {
            digest: [i as u8; 32],
            bytes: 1000,
            name: format!("m{i}.adapter"),
        })
        .collect()
}

#[test]
fn plan_modules_and_bytes() {
    let plan = Plan::to_bytes(&[7; 32], &modules(MAX_PLAN_MODULES));
    assert_eq!(Plan::parse(&plan).unwrap().modules.len(), MAX_PLAN_MODULES);
    let plan = Plan::to_bytes(&[7; 32], &modules(MAX_PLAN_MODULES + 1));
    refused(Plan::parse(&plan), C::LimitExceeded);
    // Only module lines count: any other line after the sixteenth is InvalidPlan, as it is
    // anywhere else.
    let full = Plan::to_bytes(&[7; 32], &modules(MAX_PLAN_MODULES));
    for extra in ["garbage\n", "\n", "module x\n"] {
        let mut text = full.clone();
        text.extend_from_slice(extra.as_bytes());
        refused(Plan::parse(&text), C::InvalidPlan);
    }
    // A valid plan cannot reach MAX_PLAN_BYTES (16 module lines of at most 96-byte names are
    // about 3 KB), and neither can a receipt: text of exactly MAX_PLAN_BYTES passes the size
    // cap and fails as text (InvalidPlan); one byte more is LimitExceeded.
    let text = vec![b'a'; MAX_PLAN_BYTES];
    refused(Plan::parse(&text), C::InvalidPlan);
    refused(Receipt::parse(&text), C::InvalidPlan);
    let text = vec![b'a'; MAX_PLAN_BYTES + 1];
    refused(Plan::parse(&text), C::LimitExceeded);
    refused(Receipt::parse(&text), C::LimitExceeded);
}

// ---- the ABI (under wasmtime) ----

fn module() -> &'static WasmModule {
    static M: OnceLock<WasmModule> = OnceLock::new();
    M.get_or_init(|| WasmModule::compile(&wasm_bytes().unwrap()).unwrap())
}

fn instance() -> AbiInstance {
    AbiInstance::new(module(), WasmLimits::default()).unwrap()
}

/// `trlm_alloc(len)`: the pointer, or the error code.
fn alloc(abi: &mut AbiInstance, len: u32) -> std::result::Result<u32, u32> {
    match abi.alloc(len).unwrap() {
        0 => Err(abi.last_error_code().unwrap()),
        p => Ok(p),
    }
}

#[test]
fn abi_buffer_bytes_count_and_total() {
    let mut abi = instance();
    let p = alloc(&mut abi, MAX_ABI_BUFFER_BYTES).unwrap();
    assert_eq!(
        alloc(&mut abi, MAX_ABI_BUFFER_BYTES + 1),
        Err(C::BudgetExceeded as u32)
    );
    // Total: two buffers of the per-buffer cap are exactly the total cap; one byte more is not.
    assert_eq!(
        MAX_ABI_BUFFER_TOTAL_BYTES,
        2 * u64::from(MAX_ABI_BUFFER_BYTES)
    );
    alloc(&mut abi, MAX_ABI_BUFFER_BYTES).unwrap();
    assert_eq!(alloc(&mut abi, 1), Err(C::BudgetExceeded as u32));
    abi.free(p, MAX_ABI_BUFFER_BYTES).unwrap();

    let mut abi = instance();
    for i in 0..MAX_ABI_BUFFERS {
        alloc(&mut abi, 1).unwrap_or_else(|c| panic!("buffer {i}: code {c}"));
    }
    assert_eq!(alloc(&mut abi, 1), Err(C::LimitExceeded as u32));
}

#[test]
fn abi_context_positions() {
    // Without a model the cap is MAX_CONTEXT; with one, the model's max_context, and a count
    // over it is refused with the model still loaded.
    let mut abi = instance();
    assert_eq!(abi.set_context(MAX_CONTEXT).unwrap(), 0);
    assert_eq!(
        abi.set_context(MAX_CONTEXT + 1).unwrap(),
        C::ContextExceeded as u32
    );
    let base = corpus("byte-mha-tied-f32.slm");
    let max = Model::load(base.clone()).unwrap().config.max_context;
    // (A context the model cannot hold makes its load fail: back to 0, the model's own.)
    assert_eq!(abi.set_context(0).unwrap(), 0);
    let p = abi.alloc_with(&base).unwrap();
    assert_eq!(abi.load(p, base.len() as u32).unwrap(), 0);
    abi.free(p, base.len() as u32).unwrap();
    assert_eq!(abi.set_context(max).unwrap(), 0);
    assert_eq!(abi.set_context(max + 1).unwrap(), C::ContextExceeded as u32);
    // The refused count changed nothing: the model is still loaded, at its context.
    let d = abi.diagnostics().unwrap().unwrap();
    assert!(d["model_digest"].is_string(), "{d}");
    assert_eq!(d["context"].as_u64(), Some(u64::from(max)));
}

#[test]
fn abi_plan_staged_bytes() {
    // trlm_plan_begin adds up the module sizes the plan lists before any module arrives.
    let base = corpus("byte-mha-tied-f32.slm");
    let digest = Model::load(base.clone()).unwrap().digest;
    let mut abi = instance();
    let p = abi.alloc_with(&base).unwrap();
    assert_eq!(abi.load(p, base.len() as u32).unwrap(), 0);
    abi.free(p, base.len() as u32).unwrap();
    let plan = |last: u64| {
        let mut ms = modules(2);
        ms[0].bytes = MAX_PLAN_STAGED_BYTES - 128;
        ms[1].bytes = last;
        Plan::to_bytes(&digest, &ms)
    };
    let begin = |abi: &mut AbiInstance, plan: &[u8]| {
        let p = abi.alloc_with(plan).unwrap();
        let status = abi.plan_begin(p, plan.len() as u32).unwrap();
        abi.free(p, plan.len() as u32).unwrap();
        status
    };
    assert_eq!(begin(&mut abi, &plan(128)), 0);
    assert_eq!(abi.plan_abort().unwrap(), 0);
    assert_eq!(begin(&mut abi, &plan(129)), C::BudgetExceeded as u32);
}

/// A `kind` of the wrong value is reported at its entry; an absent required key at the section
/// start (spec/errors.md).
#[test]
fn metadata_kind_offsets() {
    let entries = |kind: Option<&str>| {
        let mut e = vec![("a".to_string(), "x".to_string())];
        e.extend(kind.map(|k| ("kind".to_string(), k.to_string())));
        e.push(("name".to_string(), "n".to_string()));
        metadata_bytes(&e)
    };
    let at = |r: runtime::Result<Vec<(&str, &str)>>| {
        let e = r.unwrap_err();
        (e.code, e.offset)
    };
    // The count (4 bytes), then entry "a" (2 + 1 + 4 + 1 bytes): "kind" starts 12 bytes in.
    assert_eq!(
        at(metadata::parse(&entries(Some("model")), 256)),
        (C::InvalidMetadata, Some(256 + 12))
    );
    assert_eq!(
        at(metadata::parse(&entries(None), 256)),
        (C::InvalidMetadata, Some(256))
    );
    metadata::parse(&entries(Some("fixture")), 256).unwrap();
}

/// The rows `| \`NAME\` | VALUE | ... |` of the table under `## Limits` in a spec file.
fn spec_limits(file: &str) -> std::collections::BTreeMap<String, u64> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../spec")
        .join(file);
    let text = std::fs::read_to_string(path).unwrap();
    let section = text.split("\n## Limits").nth(1).expect("a Limits section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let value = cells.get(2)?.replace(',', "").parse().ok()?;
            Some((name.to_string(), value))
        })
        .collect()
}

/// The Limits tables of spec/slm.md and spec/adapters.md are runtime/src/limits.rs: every row's
/// value is its constant's, and every constant has its row.
#[test]
fn the_spec_limits_table_is_the_constants() {
    let table = spec_limits("slm.md");
    let constants: &[(&str, u64)] = &[
        ("MAX_MODEL_BYTES", MAX_MODEL_BYTES),
        ("HEADER_BYTES", HEADER_BYTES as u64),
        ("ALIGNMENT", ALIGNMENT),
        ("DIGEST_CHUNK_BYTES", DIGEST_CHUNK_BYTES as u64),
        ("MAX_TENSORS", MAX_TENSORS.into()),
        ("MAX_TENSOR_NAME_BYTES", MAX_TENSOR_NAME_BYTES as u64),
        ("MAX_RANK", MAX_RANK as u64),
        ("MAX_VOCAB", MAX_VOCAB.into()),
        ("MAX_DIM", MAX_DIM.into()),
        ("MAX_LAYERS", MAX_LAYERS.into()),
        ("MAX_HEADS", MAX_HEADS.into()),
        ("MAX_HEAD_DIM", MAX_HEAD_DIM.into()),
        ("MAX_FFN_DIM", MAX_FFN_DIM.into()),
        ("MAX_CONTEXT", MAX_CONTEXT.into()),
        ("MAX_METADATA_BYTES", MAX_METADATA_BYTES),
        ("MAX_METADATA_ENTRIES", MAX_METADATA_ENTRIES.into()),
        ("MAX_METADATA_KEY_BYTES", MAX_METADATA_KEY_BYTES as u64),
        ("MAX_METADATA_VALUE_BYTES", MAX_METADATA_VALUE_BYTES as u64),
        ("MAX_TOKENIZER_BYTES", MAX_TOKENIZER_BYTES),
        ("MAX_PIECE_BYTES", MAX_PIECE_BYTES as u64),
        ("MAX_STOP_TOKENS", MAX_STOP_TOKENS.into()),
        ("MAX_MERGES", MAX_MERGES.into()),
        ("MAX_PROMPT_BYTES", MAX_PROMPT_BYTES as u64),
        ("MAX_OUTPUT_BYTES", MAX_OUTPUT_BYTES as u64),
        ("MAX_NEW_TOKENS", MAX_NEW_TOKENS.into()),
        ("MAX_TOP_K", MAX_TOP_K.into()),
    ];
    let map = |rows: &[(&str, u64)]| -> std::collections::BTreeMap<String, u64> {
        rows.iter().map(|&(n, v)| (n.to_string(), v)).collect()
    };
    assert_eq!(table, map(constants));
    let adapters: &[(&str, u64)] = &[
        ("MAX_ADAPTER_BYTES", MAX_ADAPTER_BYTES),
        ("ADAPTER_AUTO_APPLY_BYTES", ADAPTER_AUTO_APPLY_BYTES),
        ("ADAPTER_HEADER_BYTES", ADAPTER_HEADER_BYTES as u64),
        ("MAX_ADAPTER_TENSORS", MAX_ADAPTER_TENSORS.into()),
        ("MAX_ADAPTER_RANK", MAX_ADAPTER_RANK.into()),
        ("MAX_PLAN_MODULES", MAX_PLAN_MODULES as u64),
        ("MAX_PLAN_STAGED_BYTES", MAX_PLAN_STAGED_BYTES),
        ("MAX_PLAN_BYTES", MAX_PLAN_BYTES as u64),
    ];
    assert_eq!(spec_limits("adapters.md"), map(adapters));
}
