//! The wasm modules (simd128 and scalar) under wasmtime against the native runtime (at every
//! kernel level of this CPU): identical generations on every corpus fixture, identical error codes on malformed files through every load path, and the
//! chunked loader's early rejections and its keep-the-previous-model rule (spec/abi.md).

mod common;

use common::{build_model_file, byte_vocab, Shape};
use harness::engine::native::NativeEngine;
use harness::engine::wasmtime::{
    AbiInstance, WasmLimits, WasmModule, WasmVariant, WasmtimeEngine, TRAP,
};
use harness::engine::{Engine, EngineError, GenRequest, GenResult};
use runtime::format::DType;
use runtime::generate::sampler::SamplerSettings;
use runtime::model::cpu::{self, Isa};
use runtime::model::interleave;
use runtime::model::Model;
use runtime::ErrorCode;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn module() -> &'static WasmModule {
    static MODULE: OnceLock<WasmModule> = OnceLock::new();
    MODULE.get_or_init(|| {
        let wasm = harness::engine::wasmtime::wasm_bytes().unwrap();
        WasmModule::compile(&wasm).unwrap()
    })
}

fn wasm_engine() -> WasmtimeEngine {
    WasmtimeEngine::with_limits(module(), WasmLimits::default()).unwrap()
}

fn instance() -> AbiInstance {
    AbiInstance::new(module(), WasmLimits::default()).unwrap()
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

/// Every corpus/*.slm fixture, by name.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slm"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 9, "the corpus has nine fixtures");
    out
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join(format!("{name}.slm"))).unwrap()
}

fn settings(temperature: f32, top_k: Option<u32>, top_p: f32, seed: u64) -> SamplerSettings {
    SamplerSettings {
        temperature,
        top_k,
        top_p,
        seed,
        max_new_tokens: 24,
    }
}

/// Greedy; temperature 0.8 seed 7; top-k 5; top-p 0.9.
fn sampling_cases() -> Vec<SamplerSettings> {
    vec![
        settings(0.0, None, 1.0, 1),
        settings(0.8, None, 1.0, 7),
        settings(1.0, Some(5), 1.0, 3),
        settings(1.0, None, 0.9, 11),
    ]
}

const PROMPTS: [&str; 3] = [
    "",
    "Once upon a time",
    "the little girl said hello to the dog",
];

fn generate(engine: &mut dyn Engine, prompt: &str, settings: SamplerSettings) -> GenResult {
    let req = GenRequest {
        prompt: prompt.as_bytes().to_vec(),
        settings,
    };
    engine
        .generate(&req)
        .unwrap_or_else(|e| panic!("{}: {e}", engine.name()))
}

/// The native result at kernel level `isa` (capped at what this CPU has).
fn generate_native(isa: Isa, bytes: &[u8], prompt: &str, s: SamplerSettings) -> GenResult {
    let mut native = NativeEngine::default();
    native.load(bytes).unwrap();
    cpu::set_isa(isa);
    let r = generate(&mut native, prompt, s);
    cpu::set_isa(cpu::detected());
    r
}

#[test]
fn native_and_wasmtime_generate_identically_on_every_fixture() {
    let mut wasm: Vec<WasmtimeEngine> = WasmVariant::ALL
        .iter()
        .map(|&v| WasmtimeEngine::of(v).unwrap())
        .collect();
    for (name, bytes) in fixtures() {
        let mut native = NativeEngine::default();
        let info_native = native.load(&bytes).unwrap();
        for w in &mut wasm {
            assert_eq!(info_native, w.load(&bytes).unwrap(), "{name}: model info");
        }
        for prompt in PROMPTS {
            for s in sampling_cases() {
                let a = generate(&mut native, prompt, s);
                assert!(
                    !a.tokens.is_empty() || a.finish == "stop",
                    "{name}: nothing generated"
                );
                let portable = generate_native(Isa::Portable, &bytes, prompt, s);
                assert_eq!(a, portable, "{name}, portable kernels, {prompt:?}, {s:?}");
                assert_eq!(a.step_digests, portable.step_digests, "{name}, portable");
                for w in &mut wasm {
                    let b = generate(w, prompt, s);
                    let engine = w.name();
                    assert_eq!(a.step_digests.len() as u64, b.step_digests.len() as u64);
                    assert_eq!(a, b, "{name}, {engine}, prompt {prompt:?}, {s:?}");
                    assert_eq!(
                        a.step_digests, b.step_digests,
                        "{name}, {engine}, prompt {prompt:?}, {s:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn both_modules_are_built_and_differ_only_in_simd() {
    let simd = WasmVariant::Simd128.bytes().unwrap();
    let scalar = WasmVariant::Scalar.bytes().unwrap();
    assert_ne!(simd, scalar);
    let exports = |b: &[u8]| WasmModule::compile(b).unwrap().exports();
    assert_eq!(exports(&simd), exports(&scalar));
    // An engine without simd128 accepts the scalar build and refuses the simd128 one (it does
    // use vector instructions).
    let mut no_simd = wasmtime::Config::new();
    no_simd.wasm_simd(false).wasm_relaxed_simd(false);
    let engine = wasmtime::Engine::new(&no_simd).unwrap();
    assert!(wasmtime::Module::validate(&engine, &scalar).is_ok());
    assert!(wasmtime::Module::validate(&engine, &simd).is_err());
}

#[test]
fn a_small_context_fills_up_identically() {
    let bytes = fixture("spm-gqa-untied-q8_0");
    let mut native = NativeEngine::default();
    native.context = 12;
    let mut wasm = wasm_engine();
    wasm.context = 12;
    native.load(&bytes).unwrap();
    wasm.load(&bytes).unwrap();
    let s = settings(0.8, None, 1.0, 7);
    let a = generate(&mut native, "once upon", s);
    let b = generate(&mut wasm, "once upon", s);
    assert_eq!(a.finish, "context_full");
    assert_eq!(a, b);
    // A prompt longer than the context fails the same way in both.
    let req = GenRequest {
        prompt: b"the little girl said hello to the dog in the park".to_vec(),
        settings: s,
    };
    let (ea, eb) = (
        native.generate(&req).unwrap_err(),
        wasm.generate(&req).unwrap_err(),
    );
    assert_eq!(ea.code, ErrorCode::ContextExceeded as u32);
    assert_eq!(ea, eb);
}

#[test]
fn the_module_imports_nothing_and_exports_the_abi() {
    let m = module();
    assert_eq!(m.imports(), Vec::<String>::new());
    let exports = m.exports();
    for name in [
        "memory",
        "trlm_abi_version",
        "trlm_last_error_code",
        "trlm_alloc",
        "trlm_free",
        "trlm_load",
        "trlm_load_begin",
        "trlm_load_chunk",
        "trlm_load_finish",
        "trlm_load_abort",
        "trlm_unload",
        "trlm_set_context",
        "trlm_set_sampling",
        "trlm_set_logits_digest",
        "trlm_start",
        "trlm_step",
        "trlm_cancel",
        "trlm_reset",
        "trlm_output_len",
        "trlm_output_copy",
        "trlm_adapter_validate",
        "trlm_plan_validate",
        "trlm_plan_begin",
        "trlm_plan_module",
        "trlm_plan_check",
        "trlm_plan_apply",
        "trlm_plan_abort",
        "trlm_remove_adapters",
        "trlm_require_plan",
    ] {
        assert!(exports.iter().any(|e| e == name), "missing export {name}");
    }
    assert_eq!(instance().abi_version().unwrap(), 2);
}

/// The code of loading `bytes` natively, through `trlm_load` and chunked (`chunk`-byte pieces).
fn load_codes(wasm: &mut AbiInstance, bytes: &[u8], chunk: usize) -> (u32, u32, u32) {
    let native = Model::load(bytes.to_vec()).map_or_else(|e| e.code as u32, |_| 0);
    let whole = if bytes.is_empty() {
        // trlm_load needs a buffer; an empty file is a zero-length range in one.
        let ptr = wasm.alloc(1).unwrap();
        let status = wasm.load(ptr, 0).unwrap();
        wasm.free(ptr, 1).unwrap();
        status
    } else {
        let ptr = wasm.alloc_with(bytes).unwrap();
        let status = wasm.load(ptr, bytes.len() as u32).unwrap();
        wasm.free(ptr, bytes.len() as u32).unwrap();
        status
    };
    let chunked = wasm.load_chunked(bytes, chunk).unwrap();
    (native, whole, chunked)
}

/// Damaged variants of a valid file: truncations, flipped bytes in every header field and in
/// each section, a trailing byte.
fn mutations(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for cut in [
        0,
        1,
        5,
        8,
        11,
        12,
        100,
        223,
        224,
        255,
        256,
        257,
        1000,
        bytes.len() - 1,
    ] {
        out.push((format!("cut to {cut}"), bytes[..cut].to_vec()));
    }
    let slm = runtime::format::Slm::parse(bytes).unwrap();
    let mut offsets: Vec<usize> = (0..256).step_by(4).collect();
    let s = slm.header.sections;
    for sec in [s.metadata, s.tokenizer, s.directory, s.data] {
        offsets.push(sec.offset as usize + 1);
        offsets.push((sec.offset + sec.length) as usize - 1);
    }
    offsets.push(bytes.len() - 1);
    for at in offsets {
        let mut b = bytes.to_vec();
        b[at] ^= 0x41;
        out.push((format!("byte {at} flipped"), b));
    }
    let mut b = bytes.to_vec();
    b.push(0);
    out.push(("a trailing byte".into(), b));
    out
}

#[test]
fn damaged_files_fail_with_the_same_code_on_every_path() {
    let mut wasm = instance();
    for name in [
        "byte-mha-tied-f32",
        "spm-gqa-untied-q4_0",
        "ranked-gqa1-tied-q8_0",
    ] {
        let bytes = fixture(name);
        for (what, b) in mutations(&bytes) {
            for chunk in [64 * 1024, 256, 7] {
                let (native, whole, chunked) = load_codes(&mut wasm, &b, chunk);
                assert_ne!(native, 0, "{name}, {what}: accepted");
                assert_eq!(
                    (whole, chunked),
                    (native, native),
                    "{name}, {what}, chunks of {chunk}: native {:?}",
                    ErrorCode::from_u32(native)
                );
            }
        }
    }
}

#[test]
fn malformed_corpus_files_fail_with_the_expected_code_and_offset_in_both_engines() {
    let dir = corpus_dir().join("malformed");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut wasm = wasm_engine();
    // The control file loads in both engines.
    let base = std::fs::read(dir.join(manifest["base"]["file"].as_str().unwrap())).unwrap();
    NativeEngine::default().load(&base).unwrap();
    wasm.load(&base).unwrap();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for case in manifest["cases"].as_array().unwrap() {
        let Some(file) = case["file"].as_str() else {
            continue;
        };
        // The code, and the offset as the message's text form carries it (none: no " at byte").
        let code = case["code"].as_u64().unwrap() as u32;
        let at = match case["offset"].as_u64() {
            Some(o) => format!(" at byte {o}: "),
            None => ": ".to_string(),
        };
        // errors.md's text form: "error CODE Name[ at byte N]: message".
        let head = format!("error {code} {}{at}", case["code_name"].as_str().unwrap());
        let expected = (code, true);
        let located = |e: EngineError| {
            let has = e.message.starts_with(&head);
            (e.code, has)
        };
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let native = NativeEngine::default()
            .load(&bytes)
            .map(|_| ())
            .map_err(located);
        let wasmtime = wasm.load(&bytes).map(|_| ()).map_err(located);
        if native != Err(expected) || wasmtime != Err(expected) {
            mismatches.push(format!(
                "{file}: expected {head:?}, (code, head found): native {native:?}, wasmtime \
                 {wasmtime:?}"
            ));
        }
        checked += 1;
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(checked > 100, "only {checked} malformed files checked");
}

#[test]
fn valid_files_load_in_chunks_of_any_size() {
    let bytes = fixture("byte-mha-tied-q8_0");
    let expected = runtime::format::file_digest(&bytes);
    let mut wasm = instance();
    for chunk in [
        1,
        3,
        63,
        64,
        223,
        224,
        225,
        255,
        256,
        257,
        4096,
        bytes.len(),
    ] {
        assert_eq!(
            wasm.load_chunked(&bytes, chunk).unwrap(),
            0,
            "chunks of {chunk}"
        );
        let d = wasm.diagnostics().unwrap().unwrap();
        assert_eq!(d["model_digest"], runtime::sha256::to_hex(&expected));
        assert_eq!(d["model_bytes"], bytes.len() as u64);
    }
}

/// Loads `name` through the raw ABI and runs a short greedy generation; returns its tokens.
fn generate_raw(wasm: &mut AbiInstance) -> Vec<u8> {
    assert_eq!(wasm.set_sampling(0.0, u32::MAX, 1.0, 1, 12).unwrap(), 0);
    let prompt = wasm.alloc_with(b"once").unwrap();
    assert_eq!(wasm.start(prompt, 4).unwrap(), 0);
    let out = wasm.alloc(16).unwrap();
    loop {
        assert_eq!(wasm.step(out).unwrap(), 0);
        let rec = wasm.read(out, 16).unwrap();
        if rec[4..8] != [0, 0, 0, 0] {
            break;
        }
    }
    wasm.free(out, 16).unwrap();
    wasm.free(prompt, 4).unwrap();
    wasm.output(2).unwrap().unwrap()
}

fn active_digest(wasm: &mut AbiInstance) -> String {
    wasm.diagnostics().unwrap().unwrap()["model_digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_corrupted_payload_is_rejected_and_the_previous_model_stays() {
    let good = fixture("spm-gqa-untied-q8_0");
    let other = fixture("byte-mha-tied-f16");
    let slm = runtime::format::Slm::parse(&other).unwrap();
    let t = &slm.tensors[slm.tensors.len() / 2];
    let mut bad = other.clone();
    bad[(t.offset + t.length / 2) as usize] ^= 1;

    let mut wasm = instance();
    // Before any model: the failure leaves none.
    assert_eq!(
        wasm.load_chunked(&bad, 64 * 1024).unwrap(),
        ErrorCode::TensorDigestMismatch as u32
    );
    assert_eq!(wasm.output_len(4).unwrap(), u32::MAX);
    assert_eq!(
        wasm.last_error_code().unwrap(),
        ErrorCode::ModelNotLoaded as u32
    );

    assert_eq!(wasm.load_chunked(&good, 64 * 1024).unwrap(), 0);
    let digest = active_digest(&mut wasm);
    let tokens = generate_raw(&mut wasm);
    assert!(!tokens.is_empty());
    // Mid-generation, a failed load leaves the model and its generation alone.
    let prompt = wasm.alloc_with(b"once").unwrap();
    assert_eq!(wasm.start(prompt, 4).unwrap(), 0);
    for chunk in [64 * 1024, 1000] {
        assert_eq!(
            wasm.load_chunked(&bad, chunk).unwrap(),
            ErrorCode::TensorDigestMismatch as u32
        );
        let message = wasm.last_error_message().unwrap();
        assert!(
            message.starts_with("error 22 TensorDigestMismatch"),
            "{message}"
        );
    }
    let out = wasm.alloc(16).unwrap();
    assert_eq!(wasm.step(out).unwrap(), 0, "the generation goes on");
    assert_eq!(active_digest(&mut wasm), digest);
    assert_eq!(generate_raw(&mut wasm), tokens);
    // The same through trlm_load.
    let ptr = wasm.alloc_with(&bad).unwrap();
    assert_eq!(
        wasm.load(ptr, bad.len() as u32).unwrap(),
        ErrorCode::TensorDigestMismatch as u32
    );
    assert_eq!(active_digest(&mut wasm), digest);
}

#[test]
fn the_chunked_loader_rejects_early_and_in_order() {
    let good = fixture("byte-mha-tied-f32");
    let n = good.len() as u32;
    let mut wasm = instance();
    let code = |c: ErrorCode| c as u32;
    let send = |wasm: &mut AbiInstance, data: &[u8]| -> u32 {
        let ptr = wasm.alloc_with(data).unwrap();
        let status = wasm.load_chunk(ptr, data.len() as u32).unwrap();
        wasm.free(ptr, data.len().max(1) as u32).unwrap();
        status
    };

    // Out of order.
    assert_eq!(wasm.load_finish().unwrap(), code(ErrorCode::InvalidState));
    assert_eq!(wasm.load_abort().unwrap(), code(ErrorCode::InvalidState));
    assert_eq!(send(&mut wasm, &good[..256]), code(ErrorCode::InvalidState));

    assert_eq!(wasm.load_chunked(&good, 4096).unwrap(), 0);
    let digest = active_digest(&mut wasm);

    // Budget, at begin.
    assert_eq!(
        wasm.load_begin(33_554_433).unwrap(),
        code(ErrorCode::BudgetExceeded)
    );
    assert_eq!(wasm.load_begin(33_554_432).unwrap(), 0);
    assert_eq!(wasm.load_abort().unwrap(), 0);

    // Truncated: finish before every announced byte arrived.
    assert_eq!(wasm.load_begin(n).unwrap(), 0);
    assert_eq!(send(&mut wasm, &good[..good.len() - 1]), 0);
    assert_eq!(wasm.load_finish().unwrap(), code(ErrorCode::Truncated));
    assert_eq!(
        wasm.load_finish().unwrap(),
        code(ErrorCode::InvalidState),
        "the load ended"
    );

    // Trailing: more bytes than announced, refused at the chunk.
    assert_eq!(wasm.load_begin(n).unwrap(), 0);
    assert_eq!(send(&mut wasm, &good[..1000]), 0);
    assert_eq!(send(&mut wasm, &good[1000..]), 0);
    assert_eq!(send(&mut wasm, &[0]), code(ErrorCode::TrailingBytes));
    assert_eq!(
        send(&mut wasm, &[0]),
        code(ErrorCode::InvalidState),
        "the load ended"
    );

    // A header announcing another length, a bad magic, version or field: refused at the first
    // chunk that holds enough of the header, long before the rest of the file.
    let mut cases: Vec<(Vec<u8>, usize, ErrorCode)> = Vec::new();
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 64]);
    cases.push((longer, 256, ErrorCode::TrailingBytes));
    let mut magic = good.clone();
    magic[0] = b'X';
    cases.push((magic.clone(), 1, ErrorCode::InvalidModelMagic));
    magic[0] = 0x89;
    magic[5] = 0;
    cases.push((magic, 6, ErrorCode::InvalidModelMagic));
    let mut version = good.clone();
    version[8] = 3;
    cases.push((version, 12, ErrorCode::UnsupportedModelVersion));
    let mut dim = good.clone();
    dim[36..40].copy_from_slice(&0u32.to_le_bytes());
    cases.push((dim, 256, ErrorCode::InvalidHeader));
    let mut reserved = good.clone();
    reserved[150] = 1;
    cases.push((reserved, 256, ErrorCode::ReservedNonZero));
    for (bytes, first, expected) in cases {
        assert_eq!(
            Model::load(bytes.clone()).err().map(|e| e.code),
            Some(expected),
            "the native reader agrees"
        );
        assert_eq!(wasm.load_begin(bytes.len() as u32).unwrap(), 0);
        if first > 1 {
            assert_eq!(
                send(&mut wasm, &bytes[..first - 1]),
                0,
                "{expected:?}: not yet"
            );
        }
        assert_eq!(send(&mut wasm, &bytes[first - 1..first]), code(expected));
        assert_eq!(wasm.load_finish().unwrap(), code(ErrorCode::InvalidState));
    }

    // Through all of it, the first model stayed active.
    assert_eq!(active_digest(&mut wasm), digest);
}

#[test]
fn an_exhausted_fuel_budget_is_an_error_not_a_hang() {
    let limits = WasmLimits {
        fuel_per_call: 200_000,
        ..WasmLimits::default()
    };
    let mut wasm = WasmtimeEngine::with_limits(module(), limits).unwrap();
    let err = wasm.load(&fixture("spm-gqa-untied-f32")).unwrap_err();
    assert_eq!(err.code, TRAP, "{err}");
    assert!(err.message.contains("fuel"), "{err}");
}

/// The bench runs the module without fuel metering (as browsers do): same results, and the
/// fuel limit no longer applies.
#[test]
fn an_unmetered_module_generates_what_the_metered_one_does() {
    let wasm = harness::engine::wasmtime::wasm_bytes().unwrap();
    let unmetered = WasmModule::compile_unmetered(&wasm).unwrap();
    let starved = WasmLimits {
        fuel_per_call: 1,
        ..WasmLimits::default()
    };
    let bytes = fixture("spm-gqa-untied-q8_0");
    let mut free = WasmtimeEngine::with_limits(&unmetered, starved).unwrap();
    free.load(&bytes).unwrap();
    let mut metered = wasm_engine();
    metered.load(&bytes).unwrap();
    for s in sampling_cases() {
        assert_eq!(
            generate(&mut free, "Once upon", s),
            generate(&mut metered, "Once upon", s)
        );
    }
}

#[test]
fn the_memory_limit_makes_allocations_fail_cleanly() {
    let limits = WasmLimits {
        memory_bytes: 4 << 20,
        ..WasmLimits::default()
    };
    let mut wasm = AbiInstance::new(module(), limits).unwrap();
    assert_eq!(wasm.alloc(8 << 20).unwrap(), 0);
    assert_eq!(
        wasm.last_error_code().unwrap(),
        ErrorCode::OutOfMemory as u32
    );
    assert_eq!(
        wasm.load_begin(16 << 20).unwrap(),
        ErrorCode::OutOfMemory as u32
    );
    // Still usable within the limit.
    assert_eq!(
        wasm.load_chunked(&fixture("byte-mha-tied-q4_0"), 4096)
            .unwrap(),
        0
    );
}

/// A two-layer grouped-query shape of 64 dimensions, its classifier `tied` or not.
fn small_gqa(tied: bool) -> Shape {
    Shape {
        dim: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 16,
        ffn_dim: 96,
        max_context: 64,
        tied,
    }
}

/// Matrices holding an infinity or a NaN: f16 weights, or q8_0/q4_0 block scales. The simd128
/// module widens the f16 rows, or the block scales, of a matrix that has none without handling
/// exponent 31 (a flag set at load), and handles it in one that has. Native and both modules
/// give the same bits for the model without and for a copy with -inf in the (untied) classifier
/// (one logit infinite, no NaN: a kernel that took the -inf for a finite value would differ),
/// and the same tokens for copies with +inf in layer 1's wq and a NaN in layer 1's ffn_down,
/// whose logits are NaN (spec/determinism.md, rule 8: a NaN's bits, and so the digests, are not
/// specified).
#[test]
fn matrices_with_infinities_and_nans_decode_identically() {
    let shape = small_gqa(false);
    let mut wasm: Vec<WasmtimeEngine> = WasmVariant::ALL
        .iter()
        .map(|&v| WasmtimeEngine::of(v).unwrap())
        .collect();
    let req = GenRequest {
        prompt: b"the little girl said hello".to_vec(),
        settings: settings(0.0, None, 1.0, 1),
    };
    for dtype in [DType::F16, DType::Q8_0, DType::Q4_0] {
        let base = build_model_file(byte_vocab(vec![]), shape, dtype, 77);
        // Sets f16 `bits` at element `index` (f16) or as the scale of block `index`.
        let with = |tensor: &str, index: usize, bits: u16| {
            let mut file = base.clone();
            let t = file.tensors.iter_mut().find(|t| t.name == tensor).unwrap();
            let at = match dtype {
                DType::F16 => 2 * index,
                _ => index * dtype.block_bytes(),
            };
            t.bytes[at..at + 2].copy_from_slice(&bits.to_le_bytes());
            runtime::format::write(&file).unwrap()
        };
        // (what, file, whether its logits are free of NaN)
        let models = [
            ("finite", runtime::format::write(&base).unwrap(), true),
            (
                "-inf in the classifier",
                with("output.weight", 120 * 2 + 1, 0xfc00),
                true,
            ),
            // In the last layer: an infinity in an earlier one reaches the KV cache during the
            // prefill and makes every later logit NaN whatever the decode's kernel does. (So these
            // cases test the decode's kernels; the prefill's, whose last-layer products of the
            // prompt's other tokens feed nothing, are tested by the simd128 selftest.)
            ("+inf in wq", with("blk.1.attn_q.weight", 37, 0x7c00), false),
            (
                "NaN in ffn_down",
                with("blk.1.ffn_down.weight", 30, 0x7e01),
                false,
            ),
        ];
        let mut digests = Vec::new();
        for (what, bytes, no_nan) in &models {
            let mut native = NativeEngine::default();
            native.load(bytes).unwrap();
            let want = generate(&mut native, "the little girl said hello", req.settings);
            for w in &mut wasm {
                w.load(bytes).unwrap();
                let got = generate(w, "the little girl said hello", req.settings);
                let engine = w.name();
                if *no_nan {
                    assert_eq!(got, want, "{dtype:?} {what}: {engine}");
                    assert_eq!(
                        got.step_digests, want.step_digests,
                        "{dtype:?} {what}: {engine}"
                    );
                } else {
                    assert_eq!(
                        (&got.tokens, &got.text, &got.finish),
                        (&want.tokens, &want.text, &want.finish),
                        "{dtype:?} {what}: {engine}"
                    );
                }
            }
            digests.push(want.logits_digest);
        }
        assert_ne!(
            digests[0], digests[1],
            "{dtype:?}: the -inf changes the logits"
        );
    }
}

/// The simd128 module holds each q8_0 and q4_0 layer matrix and the classifier (a tied one is
/// the embedding's bytes) with its whole groups of four rows interleaved (spec/determinism.md,
/// SIMD paths), and an untied embedding as the file has it; the scalar module holds every payload
/// as the file has it. Every quantized payload is looked for in the module's memory after the
/// load, in both orders. The load goes in chunks shorter than any of them, so the host's buffer
/// never holds one whole. (The results are the same either way: the parity tests above run both
/// modules on q8_0 and q4_0 models.)
#[test]
fn the_simd128_module_holds_quantized_rows_interleaved() {
    let modules: Vec<(WasmVariant, WasmModule)> = WasmVariant::ALL
        .into_iter()
        .map(|v| (v, WasmModule::compile(&v.bytes().unwrap()).unwrap()))
        .collect();
    for tied in [true, false] {
        let shape = small_gqa(tied);
        for dtype in [DType::Q8_0, DType::Q4_0] {
            let file = build_model_file(byte_vocab(vec![]), shape, dtype, 5);
            let bytes = runtime::format::write(&file).unwrap();
            let bb = dtype.block_bytes();
            // (name, the file's bytes, interleaved, whether the simd128 module interleaves it)
            let payloads: Vec<(&str, &[u8], Vec<u8>, bool)> = file
                .tensors
                .iter()
                .filter(|t| t.dtype == dtype)
                .map(|t| {
                    let rb = t.shape[1] as usize / 32 * bb;
                    let mut held = t.bytes.clone();
                    assert!(interleave::interleave(
                        &mut held,
                        rb,
                        bb,
                        &mut vec![0; 4 * rb]
                    ));
                    assert!(t.bytes.len() > 1024 && held != t.bytes, "{}", t.name);
                    let read = tied || t.name != "token_embd.weight";
                    (t.name.as_str(), &t.bytes[..], held, read)
                })
                .collect();
            assert_eq!(payloads.len(), 7 * 2 + 1 + usize::from(!tied));
            for (variant, module) in &modules {
                let mut wasm = AbiInstance::new(module, WasmLimits::default()).unwrap();
                assert_eq!(wasm.load_chunked(&bytes, 256).unwrap(), 0);
                let memory = wasm.read(0, wasm.memory_size()).unwrap();
                let holds = |b: &[u8]| memory.windows(b.len()).any(|w| w == b);
                for (name, in_file, interleaved, read) in &payloads {
                    let interleaves = *variant == WasmVariant::Simd128 && *read;
                    assert_eq!(
                        (holds(interleaved), holds(in_file)),
                        (interleaves, !interleaves),
                        "{dtype:?} {name} (tied {tied}) in the {} module",
                        variant.name()
                    );
                }
            }
        }
    }
}
