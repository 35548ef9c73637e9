//! Test support shared by the test binaries: reference files in ../shared, the committed
//! fixtures, sampler settings, generation loops, a builder for small seeded models with a
//! vocabulary of the test's choosing, and format-2.0 copies of files.
//!
//! Each test binary compiles this module separately and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use harness::fixtures::{corpus_dir, encode_tensor, SplitMix64};
use runtime::format::Vocab;
use runtime::format::{self, llama, Config, DType, ModelFile, TensorData};
use runtime::generate::sampler::SamplerSettings;
use runtime::generate::{Finish, Session, Step};
use runtime::model::Model;

/// ../shared (relative to the workspace root), else /work/shared for a worktree checkout.
fn shared_dir() -> Option<PathBuf> {
    [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
        PathBuf::from("/work/shared"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
}

/// A reference file, or `None` (after saying the test skips) when it is absent.
pub fn shared_file(rel: &str) -> Option<Vec<u8>> {
    let Some(dir) = shared_dir() else {
        println!("skipping: the shared reference directory is absent ({rel})");
        return None;
    };
    let path = dir.join(rel);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            println!("skipping: {} is absent", path.display());
            None
        }
    }
}

/// Every committed corpus/*.slm fixture, by file stem, sorted.
pub fn corpus_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("corpus/ is readable")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slm"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// One committed fixture's bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(format!("{name}.slm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn load(bytes: &[u8]) -> Model {
    Model::load(bytes.to_vec()).expect("model loads")
}

/// Greedy decoding of `max_new_tokens` tokens.
pub fn greedy(max_new_tokens: u32) -> SamplerSettings {
    SamplerSettings {
        temperature: 0.0,
        top_k: None,
        top_p: 1.0,
        seed: 1,
        max_new_tokens,
    }
}

/// Seeded sampling with temperature, top-k and top-p all active.
pub fn sampled(seed: u64, max_new_tokens: u32) -> SamplerSettings {
    SamplerSettings {
        temperature: 0.9,
        top_k: Some(40),
        top_p: 0.95,
        seed,
        max_new_tokens,
    }
}

/// Pure multinomial sampling at temperature 1 (no top-k, no top-p).
pub fn random(seed: u64, max_new_tokens: u32) -> SamplerSettings {
    SamplerSettings {
        temperature: 1.0,
        top_k: None,
        top_p: 1.0,
        seed,
        max_new_tokens,
    }
}

/// Steps a started session to its end; every step must succeed.
pub fn finish(session: &mut Session) -> Finish {
    loop {
        match session.step().expect("step succeeds") {
            Step::Token { .. } => {}
            Step::Finished(f) => return f,
        }
    }
}

/// Starts and finishes one generation; returns its tokens and why it ended.
pub fn generate(
    session: &mut Session,
    prompt: &[u8],
    settings: SamplerSettings,
) -> (Vec<u32>, Finish) {
    session.start(prompt, settings).expect("start succeeds");
    let f = finish(session);
    (session.generated_tokens().to_vec(), f)
}

/// The shape of a model built by [`build_model`].
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub dim: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    /// Width of one head (n_heads × head_dim may differ from dim).
    pub head_dim: u32,
    pub ffn_dim: u32,
    pub max_context: u32,
    pub tied: bool,
}

/// A model file with seeded uniform weights (as the fixture recipes make them) for `vocab`.
pub fn build_model_file(vocab: Vocab, s: Shape, dtype: DType, seed: u64) -> ModelFile {
    let config = Config {
        arch: format::header::ARCH_LLAMA,
        vocab_size: vocab.pieces.len() as u32,
        dim: s.dim,
        n_layers: s.n_layers,
        n_heads: s.n_heads,
        n_kv_heads: s.n_kv_heads,
        head_dim: s.head_dim,
        ffn_dim: s.ffn_dim,
        max_context: s.max_context,
        rope_theta: 10000.0,
        rms_eps: 1e-5,
        tied_classifier: s.tied,
    };
    let mut rng = SplitMix64(seed);
    let tensors = llama::slots(&config)
        .into_iter()
        .map(|slot| {
            let n: usize = slot.shape.iter().map(|&d| d as usize).product();
            let (values, dt): (Vec<f32>, DType) = match slot.role {
                llama::Role::Norm => (
                    (0..n).map(|_| 1.0 + 0.25 * rng.next_signed()).collect(),
                    DType::F32,
                ),
                llama::Role::Matrix => {
                    let scale = 3.5 / (*slot.shape.last().unwrap() as f32).sqrt();
                    ((0..n).map(|_| scale * rng.next_signed()).collect(), dtype)
                }
            };
            TensorData {
                bytes: encode_tensor(&values, dt).unwrap(),
                name: slot.name,
                dtype: dt,
                shape: slot.shape,
            }
        })
        .collect();
    ModelFile {
        config,
        metadata: vec![
            ("kind".into(), "fixture".into()),
            ("name".into(), "test model".into()),
        ],
        vocab,
        tensors,
    }
}

/// The bytes of [`build_model_file`].
pub fn build_model(vocab: Vocab, s: Shape, dtype: DType, seed: u64) -> Vec<u8> {
    format::write(&build_model_file(vocab, s, dtype, seed)).expect("test model writes")
}

/// A byte-level vocabulary: ids 0..=255 the bytes, 256 `<s>` (BOS, added), 257 `</s>`.
pub fn byte_vocab(stop: Vec<u32>) -> Vocab {
    harness::fixtures::byte_vocab(258, stop)
}

/// A fresh directory `tinyrustlm-{name}-{pid}` under the system temp dir, removed on drop (one
/// `name` per test: tests run in parallel).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tinyrustlm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The same model as a format-2.0 file, digested with the `sha2` crate by the 2.0 rules: the
/// version minor 0, each tensor digest the SHA-256 of its payload, the file digest over every
/// byte but the digest field.
pub fn as_format_2_0(v2_1: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let slm = runtime::format::Slm::parse(v2_1).unwrap();
    let mut b = v2_1.to_vec();
    b[10..12].copy_from_slice(&0u16.to_le_bytes());
    for t in &slm.tensors {
        let field = t.entry_offset as usize + 2 + t.name.len() + 2 + 4 * t.rank as usize + 16;
        let payload = &v2_1[t.offset as usize..(t.offset + t.length) as usize];
        b[field..field + 32].copy_from_slice(&Sha256::digest(payload));
    }
    let mut h = Sha256::new();
    h.update(&b[..224]);
    h.update(&b[256..]);
    let d: [u8; 32] = h.finalize().into();
    b[224..256].copy_from_slice(&d);
    b
}

/// Whether `python3 -c "import <modules>"` succeeds; when not, prints that the test skips
/// because `what` is not available.
pub fn python3_imports(modules: &str, what: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        println!("skipped: {what} is not available");
    }
    ok
}

/// The value of metadata key `key` in a model file (panics when absent: a test's expectation).
pub fn metadata_value<'a>(m: &'a ModelFile, key: &str) -> &'a str {
    &m.metadata
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no metadata key {key:?}"))
        .1
}

/// Runs `cmd` to the end and returns its output, asserting it exited 0 (with its stderr in the
/// message).
pub fn succeeded(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `node SCRIPT ARGS...` and parses its stdout as JSON (asserting it exited 0, with its
/// stderr in the message).
pub fn node_json(script: &Path, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = succeeded(std::process::Command::new("node").arg(script).args(args));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Writes `template` as `name` into a fresh temporary folder named after `tag`, with
/// `placeholder` replaced by the file:// URL of browser-smoke's `smoke_file` (the module the
/// script imports); returns the folder (the caller removes it) and the script's path.
pub fn smoke_script(
    tag: &str,
    name: &str,
    template: &str,
    placeholder: &str,
    smoke_file: &str,
) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("trlm-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join(name);
    let imported = harness::smoke::smoke_dir()
        .join(smoke_file)
        .canonicalize()
        .unwrap();
    let text = template.replace(placeholder, &format!("file://{}", imported.display()));
    std::fs::write(&script, text).unwrap();
    (dir, script)
}
