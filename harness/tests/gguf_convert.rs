//! GGUF → .slm conversion: stories260K.gguf against the llama2.c conversion of stories260K.bin
//! and run.c's output, llama.cpp's SPM tokenizer cases read from a vocabulary-only GGUF, models
//! written by llama.cpp's Python package gguf-py (every tensor byte, our quantizers against
//! gguf-py's, refusals), and `tinyrustlm tokenize` on a GGUF.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::TempDir;

use harness::gguf::convert::{convert, DTypeChoice};
use harness::gguf::write::{GgufWriter, RawValue};
use harness::gguf::{llama_vocab, GgmlType, Gguf};
use runtime::format::{write, DType, Slm, TensorData};
use runtime::generate::sampler::SamplerSettings;
use runtime::generate::tokenizer::Tokenizer;
use runtime::model::quant;

fn shared_dir() -> Option<PathBuf> {
    [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
        PathBuf::from("/work/shared"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
}

fn shared_file(rel: &str) -> Option<Vec<u8>> {
    let path = shared_dir()
        .map(|d| d.join(rel))
        .unwrap_or_else(|| PathBuf::from("../shared").join(rel));
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) => {
            println!("skipped: {} is absent", path.display());
            None
        }
    }
}

fn greedy(max_new_tokens: u32) -> SamplerSettings {
    SamplerSettings {
        temperature: 0.0,
        top_k: None,
        top_p: 0.9,
        seed: 42,
        max_new_tokens,
    }
}

/// What `tinyrustlm run` prints for `bytes`.
fn run_output(bytes: Vec<u8>, prompt: &str, settings: SamplerSettings) -> Vec<u8> {
    let mut out = Vec::new();
    harness::run::run_c_output(bytes, prompt.as_bytes(), settings, 0, &mut out).unwrap();
    out
}

fn assert_same_tensors(ta: &[TensorData], tb: &[TensorData]) {
    assert_eq!(ta.len(), tb.len());
    for (x, y) in ta.iter().zip(tb) {
        assert_eq!(
            (&x.name, x.dtype, &x.shape),
            (&y.name, y.dtype, &y.shape),
            "{}",
            x.name
        );
        assert!(x.bytes == y.bytes, "tensor {} differs", x.name);
    }
}

// ---------------------------------------------------------------------------------------------
// stories260K

#[test]
fn stories260k_gguf_equals_the_llama2c_conversion_and_generates_run_c_bytes() {
    let (Some(gguf), Some(bin), Some(tok), Some(expected)) = (
        shared_file("models/stories260K/stories260K.gguf"),
        shared_file("models/stories260K/stories260K.bin"),
        shared_file("models/stories260K/tok512.bin"),
        shared_file("models/stories260K/expected_run_t0_n200.txt"),
    ) else {
        return;
    };
    let ours = convert(&gguf, DTypeChoice::Keep, "stories260K.gguf").unwrap();
    let reference = harness::llama2c::convert(&bin, &tok, DType::F32, "stories260K.bin").unwrap();

    // The GGUF's output.weight is a byte copy of token_embd.weight: stored once, tied, as the
    // llama2.c checkpoint (shared classifier) is.
    assert!(ours.model.config.tied_classifier);
    assert!(ours.notes.iter().any(|n| n.contains("classifier tied")));
    assert_same_tensors(&ours.model.tensors, &reference.model.tensors);
    // Same shape and constants; only the context differs: the GGUF says 2048 and wins.
    let mut config = ours.model.config;
    assert_eq!(
        (config.max_context, reference.model.config.max_context),
        (2048, 512)
    );
    config.max_context = 512;
    assert_eq!(config, reference.model.config);

    // Greedy generation prints exactly what run.c prints for the .bin, plus our final newline.
    let bytes = write(&ours.model).unwrap();
    let out = run_output(bytes, "", greedy(200));
    assert_eq!(expected.len(), 464);
    assert_eq!(
        String::from_utf8_lossy(&out[..464.min(out.len())]),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(&out[464..], b"\n");
    // Past the first story too: both conversions stop where the model emits BOS (run.c's stop),
    // rather than printing its control piece and telling another story.
    let long = greedy(511);
    let from_gguf = run_output(write(&ours.model).unwrap(), "", long);
    let from_llama2c = run_output(write(&reference.model).unwrap(), "", long);
    assert_eq!(
        String::from_utf8_lossy(&from_gguf),
        String::from_utf8_lossy(&from_llama2c)
    );
    assert!(!from_gguf.windows(3).any(|w| w == b"<s>"));

    // --dtype f32 is the same as keep for an all-f32 file; --dtype q8_0 requantizes exactly as
    // the llama2.c converter does from the same f32 weights (ffn_down's rows of 172 stay f32).
    let f32 = convert(&gguf, DTypeChoice::To(DType::F32), "stories260K.gguf").unwrap();
    assert_same_tensors(&f32.model.tensors, &ours.model.tensors);
    let q8 = convert(&gguf, DTypeChoice::To(DType::Q8_0), "stories260K.gguf").unwrap();
    let q8_ref = harness::llama2c::convert(&bin, &tok, DType::Q8_0, "stories260K.bin").unwrap();
    assert_same_tensors(&q8.model.tensors, &q8_ref.model.tensors);
    assert_eq!(q8.kept_f32, q8_ref.kept_f32);
    assert_eq!(q8.kept_f32.len(), 5);
}

// ---------------------------------------------------------------------------------------------
// llama.cpp's tokenizer cases with the vocabulary read from the GGUF

/// The vocabulary GGUF's bytes, the 46 inputs and their expected ids.
type SpmCases = (Vec<u8>, Vec<String>, Vec<Vec<u32>>);

fn spm_cases() -> Option<SpmCases> {
    let gguf = shared_file("vocab/ggml-vocab-llama-spm.gguf")?;
    let inp = String::from_utf8(shared_file("vocab/ggml-vocab-llama-spm.gguf.inp")?).unwrap();
    let out = String::from_utf8(shared_file("vocab/ggml-vocab-llama-spm.gguf.out")?).unwrap();
    let mut inputs: Vec<String> = inp
        .split("\n__ggml_vocab_test__\n")
        .map(str::to_string)
        .collect();
    // The file ends with a separator: the piece after it is not a case.
    assert_eq!(inputs.pop().as_deref(), Some(""));
    let expected: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!((inputs.len(), expected.len()), (46, 46));
    Some((gguf, inputs, expected))
}

#[test]
fn llama_cpp_spm_cases_with_the_gguf_vocabulary() {
    let Some((gguf, inputs, expected)) = spm_cases() else {
        return;
    };
    let g = Gguf::parse(&gguf).unwrap();
    let tok = Tokenizer::new(&llama_vocab(&g).unwrap()).unwrap();
    let mut failures = Vec::new();
    for (input, want) in inputs.iter().zip(&expected) {
        let mut got = Vec::new();
        tok.encode(input.as_bytes(), false, &mut got).unwrap();
        if &got != want {
            failures.push(format!("{input:?}\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tokenize_command_reads_a_gguf() {
    let Some((_, inputs, expected)) = spm_cases() else {
        return;
    };
    let path = shared_dir()
        .unwrap()
        .join("vocab/ggml-vocab-llama-spm.gguf");
    // A case with spaces, punctuation and a multi-token word.
    let i = inputs
        .iter()
        .position(|s| s.contains("Hello world"))
        .unwrap();
    let out = common::succeeded(
        Command::new(env!("CARGO_BIN_EXE_tinyrustlm"))
            .arg("tokenize")
            .arg(&path)
            .args(["--text", &inputs[i], "--no-bos"]),
    );
    let want: Vec<String> = expected[i].iter().map(u32::to_string).collect();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        want.join(" ") + "\n"
    );

    // With BOS (the vocabulary asks for it), id 1 comes first.
    let out = Command::new(env!("CARGO_BIN_EXE_tinyrustlm"))
        .arg("tokenize")
        .arg(&path)
        .args(["--text", &inputs[i]])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("1 {}\n", want.join(" "))
    );
}

// ---------------------------------------------------------------------------------------------
// Models written by gguf-py

/// Runs corpus/tools/gguf_py_fixture.py into a temp dir of its own (`tag`: one per test, as
/// tests run in parallel).
fn gguf_py_fixtures(tag: &str) -> Option<TempDir> {
    if !common::python3_imports("gguf, numpy", "python3 with the gguf and numpy packages") {
        return None;
    }
    let dir = TempDir::new(&format!("gguf-convert-{tag}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/tools/gguf_py_fixture.py");
    common::succeeded(Command::new("python3").arg(&script).arg(&dir.0));
    Some(dir)
}

/// One original tensor: name, shape (outermost first), values.
type Original = (String, Vec<u32>, Vec<f32>);

/// gguf-py's version and the original f32 weights, from manifest.json and originals.f32.
fn originals(dir: &Path) -> (String, Vec<Original>) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let raw = std::fs::read(dir.join("originals.f32")).unwrap();
    let tensors = manifest["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let shape: Vec<u32> = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as u32)
                .collect();
            let n: usize = shape.iter().map(|&d| d as usize).product();
            let at = t["offset"].as_u64().unwrap() as usize;
            let values = raw[at..at + 4 * n]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (t["name"].as_str().unwrap().to_string(), shape, values)
        })
        .collect();
    (
        manifest["gguf_version"].as_str().unwrap().to_string(),
        tensors,
    )
}

fn f16_widened(bytes: &[u8]) -> Vec<u8> {
    bytes
        .chunks_exact(2)
        .flat_map(|c| quant::f16_to_f32(u16::from_le_bytes([c[0], c[1]])).to_le_bytes())
        .collect()
}

#[test]
fn gguf_py_models_convert_bit_exact_and_run() {
    let Some(dir) = gguf_py_fixtures("models") else {
        return;
    };
    let (version, originals) = originals(&dir.0);
    println!("gguf-py {version}");
    let cases = [
        ("model-f32.gguf", GgmlType::F32, GgmlType::F32, false),
        ("model-f16.gguf", GgmlType::F16, GgmlType::F16, false),
        ("model-q8_0.gguf", GgmlType::Q8_0, GgmlType::F32, false),
        ("model-q4_0.gguf", GgmlType::Q4_0, GgmlType::F32, false),
        ("tied-q8_0.gguf", GgmlType::Q8_0, GgmlType::F32, true),
    ];
    let mut outputs = Vec::new();
    for (file, matrix_type, norm_type, tied) in cases {
        let bytes = std::fs::read(dir.0.join(file)).unwrap();
        let g = Gguf::parse(&bytes).unwrap();
        let converted = convert(&bytes, DTypeChoice::Keep, file).unwrap();
        assert_eq!(converted.model.config.tied_classifier, tied, "{file}");
        assert_eq!(
            (
                converted.model.config.n_heads,
                converted.model.config.n_kv_heads
            ),
            (4, 2)
        );
        let slm_bytes = write(&converted.model).unwrap();
        let slm = Slm::parse(&slm_bytes).unwrap();
        assert_eq!(g.tensors().len(), slm.tensors.len(), "{file}");

        for (name, shape, values) in &originals {
            if tied && name == "output.weight" {
                assert!(g.tensor(name).is_none() && slm.tensor(name).is_none());
                continue;
            }
            let t = g.tensor(name).unwrap();
            let entry = slm.tensor(name).unwrap();
            assert_eq!(entry.shape(), shape.as_slice(), "{file} {name}");
            let reversed: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
            assert_eq!(t.dims(), reversed.as_slice(), "{file} {name}");
            let is_norm = shape.len() == 1;
            let want_type = if is_norm { norm_type } else { matrix_type };
            assert_eq!(t.ggml_type(), want_type, "{file} {name}");
            // The .slm holds gguf-py's bytes (an f16 norm widened exactly to f32).
            let payload = slm.payload(entry);
            if is_norm && t.ggml_type() == GgmlType::F16 {
                assert_eq!(entry.dtype, DType::F32);
                assert!(payload == f16_widened(t.data()), "{file} {name}");
            } else {
                assert!(payload == t.data(), "{file} {name}: bytes differ");
            }
            // Our encoder of the original f32 weights gives gguf-py's bytes: f32 as is, f16 by
            // round-to-nearest-even (numpy), q8_0 and q4_0 by gguf.quants.quantize.
            let dtype = match t.ggml_type() {
                GgmlType::F32 => DType::F32,
                GgmlType::F16 => DType::F16,
                GgmlType::Q8_0 => DType::Q8_0,
                GgmlType::Q4_0 => DType::Q4_0,
                other => panic!("unexpected {}", other.name()),
            };
            let ours = harness::fixtures::encode_tensor(values, dtype).unwrap();
            assert!(
                ours == t.data(),
                "{file} {name}: our {} differs",
                dtype.name()
            );
        }

        let out = run_output(slm_bytes, "the cat", greedy(24));
        assert!(out.starts_with(b"the cat"), "{file}: {out:?}");
        outputs.push(out);
    }
    // f32 and f16 weights hardly differ: the first few greedy tokens agree.
    assert_eq!(outputs[0][..9], outputs[1][..9]);

    // Requantizing the f32 model gives the models gguf-py quantized, tensor for tensor (norms
    // stay f32; the f16 model's norms are f16, so only its matrices compare).
    let f32_bytes = std::fs::read(dir.0.join("model-f32.gguf")).unwrap();
    for (file, dtype) in [
        ("model-f16.gguf", DType::F16),
        ("model-q8_0.gguf", DType::Q8_0),
        ("model-q4_0.gguf", DType::Q4_0),
    ] {
        let requantized = convert(&f32_bytes, DTypeChoice::To(dtype), "f32").unwrap();
        let kept = convert(
            &std::fs::read(dir.0.join(file)).unwrap(),
            DTypeChoice::Keep,
            file,
        )
        .unwrap();
        let compared = |c: &harness::gguf::convert::Converted| -> Vec<TensorData> {
            let all = c.model.tensors.iter().cloned();
            all.filter(|t| dtype != DType::F16 || t.shape.len() == 2)
                .collect()
        };
        assert_same_tensors(&compared(&requantized), &compared(&kept));
        assert!(requantized.kept_f32.is_empty());
    }
    // And q8_0 → f32 dequantizes exactly: requantizing that gives the q8_0 bytes back.
    let q8 = std::fs::read(dir.0.join("model-q8_0.gguf")).unwrap();
    let widened = convert(&q8, DTypeChoice::To(DType::F32), "q8").unwrap();
    let q8_gguf = Gguf::parse(&q8).unwrap();
    for t in &widened.model.tensors {
        if t.shape.len() == 2 {
            let mut values = vec![0f32; t.bytes.len() / 4];
            quant::dequantize(DType::F32, &t.bytes, &mut values).unwrap();
            let back = harness::fixtures::encode_tensor(&values, DType::Q8_0).unwrap();
            assert!(
                back == q8_gguf.tensor(&t.name).unwrap().data(),
                "{}",
                t.name
            );
        }
    }
}

#[test]
fn gguf_py_unsupported_types_and_architectures_are_refused() {
    let Some(dir) = gguf_py_fixtures("refusals") else {
        return;
    };
    for (file, needle) in [
        ("unsupported-q4_1.gguf", "ggml type q4_1"),
        ("unsupported-bf16.gguf", "ggml type bf16"),
        ("arch-gpt2.gguf", "architecture 'gpt2' is not supported"),
    ] {
        let bytes = std::fs::read(dir.0.join(file)).unwrap();
        let err = match convert(&bytes, DTypeChoice::Keep, file) {
            Ok(_) => panic!("{file} was converted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(needle), "{file}: {err}");
        if file.starts_with("unsupported") {
            assert!(err.contains("blk.0.ffn_up.weight"), "{err}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals and decisions on GGUFs written here (no Python needed)

/// A small llama GGUF (dim 32, `layers` layers, 2 heads, 1 kv head, ffn `ffn`, 260 tokens) with
/// zero f32 weights; `edit` may change the tensor list (name, ggml dims, type, bytes) and
/// `extra` adds metadata.
fn llama_file(
    layers: u32,
    ffn: u64,
    extra: &[(&str, RawValue)],
    edit: impl FnOnce(&mut Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>),
) -> Vec<u8> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    tokens.extend((0..=255).map(|b| format!("<0x{b:02X}>")));
    tokens.push("\u{2581}a".into());
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let mut w = GgufWriter::new(3);
    w.kv("general.architecture", RawValue::str("llama"))
        .kv("llama.embedding_length", RawValue::u32(32))
        .kv("llama.block_count", RawValue::u32(layers))
        .kv("llama.feed_forward_length", RawValue::u32(ffn as u32))
        .kv("llama.attention.head_count", RawValue::u32(2))
        .kv("llama.attention.head_count_kv", RawValue::u32(1))
        .kv("llama.context_length", RawValue::u32(1_000_000))
        .kv("tokenizer.ggml.model", RawValue::str("llama"))
        .kv("tokenizer.ggml.tokens", RawValue::str_array(&refs));
    for (k, v) in extra {
        w.kv(k, v.clone());
    }
    let f32s = |dims: &[u64]| vec![0u8; 4 * dims.iter().product::<u64>() as usize];
    let n = tokens.len() as u64;
    let mut tensors = vec![("token_embd.weight".to_string(), vec![32, n])];
    for l in 0..layers {
        for (what, dims) in [
            ("attn_norm", vec![32]),
            ("attn_q", vec![32, 32]),
            ("attn_k", vec![32, 16]),
            ("attn_v", vec![32, 16]),
            ("attn_output", vec![32, 32]),
            ("ffn_norm", vec![32]),
            ("ffn_gate", vec![32, ffn]),
            ("ffn_down", vec![ffn, 32]),
            ("ffn_up", vec![32, ffn]),
        ] {
            tensors.push((format!("blk.{l}.{what}.weight"), dims));
        }
    }
    tensors.push(("output_norm.weight".to_string(), vec![32]));
    let mut tensors: Vec<_> = tensors
        .into_iter()
        .map(|(name, dims)| {
            let data = f32s(&dims);
            (name, dims, GgmlType::F32, data)
        })
        .collect();
    edit(&mut tensors);
    for (name, dims, ty, data) in tensors {
        w.tensor(&name, &dims, ty, data);
    }
    w.finish().bytes
}

#[track_caller]
fn refusal(bytes: &[u8]) -> String {
    match convert(bytes, DTypeChoice::Keep, "t.gguf") {
        Ok(_) => panic!("converted"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn decisions_and_refusals_on_hand_written_ggufs() {
    // Tied (no output.weight); the context is capped at the runtime's limit, with a note.
    let c = convert(&llama_file(1, 64, &[], |_| {}), DTypeChoice::Keep, "t.gguf").unwrap();
    assert!(c.model.config.tied_classifier);
    assert_eq!(c.model.config.max_context, runtime::limits::MAX_CONTEXT);
    assert!(c
        .notes
        .iter()
        .any(|n| n.contains("context capped from 1000000")));
    write(&c.model).unwrap();

    // An output.weight that differs from token_embd.weight stays a separate classifier.
    let untied = llama_file(1, 64, &[], |t| {
        let mut data = vec![0u8; 4 * 32 * 260];
        data[0] = 1;
        t.push(("output.weight".into(), vec![32, 260], GgmlType::F32, data));
    });
    let c = convert(&untied, DTypeChoice::Keep, "t.gguf").unwrap();
    assert!(!c.model.config.tied_classifier);

    // Requantizing rows that are not whole blocks keeps them f32 (ffn_down's rows of 48).
    let c = convert(
        &llama_file(1, 48, &[], |_| {}),
        DTypeChoice::To(DType::Q4_0),
        "t.gguf",
    )
    .unwrap();
    assert_eq!(c.kept_f32, vec!["blk.0.ffn_down.weight".to_string()]);

    let missing = llama_file(1, 64, &[], |t| t.retain(|x| x.0 != "blk.0.attn_k.weight"));
    assert!(refusal(&missing).contains("needs tensor \"blk.0.attn_k.weight\""));
    let extra = llama_file(1, 64, &[], |t| {
        t.push((
            "rope_freqs.weight".into(),
            vec![8],
            GgmlType::F32,
            vec![0; 32],
        ))
    });
    assert!(refusal(&extra).contains("\"rope_freqs.weight\" is not part of"));
    // attn_q stored with its dimensions in our order instead of ggml's.
    let swapped = llama_file(1, 64, &[], |t| {
        let k = t.iter_mut().find(|x| x.0 == "blk.0.attn_k.weight").unwrap();
        k.1 = vec![16, 32];
    });
    assert!(refusal(&swapped).contains("blk.0.attn_k.weight\" has shape [32, 16]"));
    let q5 = llama_file(1, 64, &[], |t| {
        let up = t.iter_mut().find(|x| x.0 == "blk.0.ffn_up.weight").unwrap();
        up.2 = GgmlType::Q5_0;
        up.3 = vec![0; 64 / 32 * 22 * 32];
    });
    assert!(refusal(&q5).contains("ggml type q5_0"));
    let scaled = llama_file(
        1,
        64,
        &[("llama.rope.scaling.type", RawValue::str("linear"))],
        |_| {},
    );
    assert!(refusal(&scaled).contains("rope scaling 'linear'"));
    // A scaling factor without a type is linear scaling to llama.cpp (also under the older
    // key); a factor of 1 scales nothing.
    for key in ["llama.rope.scaling.factor", "llama.rope.scale_linear"] {
        let factor = llama_file(1, 64, &[(key, RawValue::f32(4.0))], |_| {});
        assert!(refusal(&factor).contains(&format!("rope scaling by 4 ({key})")));
        let one = llama_file(1, 64, &[(key, RawValue::f32(1.0))], |_| {});
        convert(&one, DTypeChoice::Keep, "t.gguf").unwrap();
    }
    // No BOS token: none is added (unless asked for, which cannot load).
    let no_bos = [("tokenizer.ggml.bos_token_id", RawValue::u32(u32::MAX))];
    let c = convert(
        &llama_file(1, 64, &no_bos, |_| {}),
        DTypeChoice::Keep,
        "t.gguf",
    )
    .unwrap();
    assert_eq!((c.model.vocab.bos, c.model.vocab.add_bos), (None, false));
    let asked = [
        no_bos[0].clone(),
        ("tokenizer.ggml.add_bos_token", RawValue::bool(true)),
    ];
    let err = refusal(&llama_file(1, 64, &asked, |_| {}));
    assert!(
        err.contains("add_bos is set but there is no bos token"),
        "{err}"
    );
    // No unk token and no byte pieces (typed Normal): nothing could encode an unknown byte.
    let mut types = vec![3i32, 3, 3];
    types.extend([1i32; 257]);
    let no_unk = [
        ("tokenizer.ggml.unknown_token_id", RawValue::u32(u32::MAX)),
        ("tokenizer.ggml.token_type", RawValue::i32_array(&types)),
    ];
    let err = refusal(&llama_file(1, 64, &no_unk, |_| {}));
    assert!(err.contains("needs byte_fallback or an unk token"), "{err}");
    let moe = llama_file(1, 64, &[("llama.expert_count", RawValue::u32(8))], |_| {});
    assert!(refusal(&moe).contains("mixture-of-experts"));
    // Too big for the .slm budget: refused before any tensor is converted.
    let huge = llama_file(2, 65_536, &[], |_| {});
    assert!(refusal(&huge).contains("a .slm model is at most 33554432 bytes"));
    assert!(refusal(b"not a gguf").contains("not a valid GGUF file"));
}

/// Refusals of a shape name the GGUF key it came from and the runtime's rule, not an offset in
/// the .slm that was not written; a `general.name` too long to quote is counted instead, and a
/// provenance never makes the output invalid.
#[test]
fn shape_refusals_name_the_gguf_key_and_long_names_are_not_quoted() {
    let huge = llama_file(1, 64, &[], |_| {});
    let mut b = huge.clone();
    // llama.block_count's value: after the header (24) and the first two pairs.
    let g = Gguf::parse(&huge).unwrap();
    assert!(g.kv("llama.block_count").is_some());
    let key = b"llama.block_count";
    let at = huge.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
    b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let m = refusal(&b);
    assert!(
        m.contains("n_layers 4294967295 exceeds the limit 256")
            && m.contains("from llama.block_count")
            && !m.contains("at byte"),
        "{m}"
    );

    let name = "n".repeat(100_000);
    let c = convert(
        &llama_file(1, 64, &[("general.name", RawValue::str(&name))], |_| {}),
        DTypeChoice::Keep,
        "t.gguf",
    )
    .unwrap();
    let provenance = common::metadata_value(&c.model, "provenance");
    assert!(
        provenance.contains("general.name of 100000 bytes (not shown)"),
        "{provenance}"
    );
    write(&c.model).unwrap();
}
