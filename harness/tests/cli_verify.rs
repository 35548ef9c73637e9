//! The `tinyrustlm` binary: `verify` accepts the corpus and rejects damaged copies with the right
//! code; `inspect --json` reports what the file holds; `convert slm` rewrites a format-2.0 file
//! as the canonical 2.1 file.

mod common;

use harness::fixtures;
use runtime::format::Slm;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tinyrustlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyrustlm"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn verify(path: &Path) -> Output {
    tinyrustlm(&["verify", path.to_str().unwrap()])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("tinyrustlm-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures::corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slm"))
        .collect();
    files.sort();
    files
}

#[test]
fn verify_accepts_every_corpus_file() {
    let files = corpus_files();
    assert!(files.len() >= 9, "corpus/*.slm: {files:?}");
    for f in files {
        let o = verify(&f);
        assert!(o.status.success(), "{}: {}", f.display(), stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: "));
    }
}

#[test]
fn verify_rejects_a_truncated_copy() {
    let bytes = std::fs::read(fixtures::corpus_dir().join("byte-mha-tied-q4_0.slm")).unwrap();
    let tmp = TempFile::new("truncated.slm", &bytes[..bytes.len() - 100]);
    let o = verify(&tmp.0);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("error 16 Truncated"), "{}", stderr(&o));
}

#[test]
fn a_file_over_the_budget_is_rejected_without_being_read_whole() {
    // A sparse 1 TiB file (no disk blocks): reading it whole would fail for want of memory.
    let tmp = TempFile::new("huge.slm", b"");
    let size: u64 = 1 << 40;
    std::fs::File::options()
        .write(true)
        .open(&tmp.0)
        .unwrap()
        .set_len(size)
        .unwrap();
    let path = tmp.0.to_str().unwrap();
    for args in [
        vec!["verify", path],
        vec!["inspect", path],
        vec!["check", path],
        vec![
            "adapter",
            "diff",
            path,
            path,
            "--kind",
            "adp1",
            "-o",
            "/dev/null",
        ],
        vec!["adapter", "example", path, "-o", "/dev/null"],
        vec!["adapter", "apply", path, "/dev/null", "-o", "/dev/null"],
    ] {
        let o = tinyrustlm(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "error 15 BudgetExceeded at byte 0: the file has {size} bytes"
            )),
            "{args:?}: {err}"
        );
    }
    // An adapter is read up to its budget + 1 byte; the reader refuses what is over.
    let o = tinyrustlm(&["adapter", "inspect", path]);
    let err = stderr(&o);
    assert!(err.contains("error 15 BudgetExceeded"), "{err}");
    // A converter's or the tokenizer's input is read up to MAX_CONVERT_INPUT_BYTES.
    for args in [
        vec!["tokenize", path, "--text", "hi"],
        vec!["convert", "gguf", "--model", path, "-o", "/dev/null"],
        vec![
            "convert",
            "llama2c",
            "--model",
            path,
            "--tokenizer",
            path,
            "-o",
            "/dev/null",
        ],
    ] {
        let o = tinyrustlm(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("the most a converter reads"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn verify_rejects_a_flipped_payload_byte_naming_the_tensor() {
    let mut bytes = std::fs::read(fixtures::corpus_dir().join("byte-mha-tied-q4_0.slm")).unwrap();
    let (at, name) = {
        let slm = Slm::parse(&bytes).unwrap();
        let t = slm.tensor("blk.1.ffn_up.weight").unwrap();
        (t.offset as usize + 7, t.name.to_string())
    };
    bytes[at] ^= 0x10;
    let tmp = TempFile::new("flipped.slm", &bytes);
    let o = verify(&tmp.0);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("error 22 TensorDigestMismatch"), "{err}");
    assert!(err.contains(&name), "{err}");
}

#[test]
fn verify_reports_each_malformed_case_with_its_code_and_offset() {
    let dir = fixtures::corpus_dir().join("malformed");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let base = verify(&dir.join(manifest["base"]["file"].as_str().unwrap()));
    assert!(base.status.success(), "base: {}", stderr(&base));
    let mut wrong = Vec::new();
    for case in manifest["cases"].as_array().unwrap() {
        let Some(file) = case["file"].as_str() else {
            continue;
        };
        let o = verify(&dir.join(file));
        // The code, name and offset as errors.md's text form prints them.
        let at = case["offset"]
            .as_u64()
            .map_or(String::new(), |o| format!(" at byte {o}"));
        let want = format!(
            "error {} {}{at}: ",
            case["code"],
            case["code_name"].as_str().unwrap()
        );
        if o.status.code() != Some(1) || !stderr(&o).contains(&want) {
            wrong.push(format!(
                "{file}: want {want}, got {:?} {}",
                o.status.code(),
                stderr(&o)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn inspect_json_reports_the_file() {
    let path = fixtures::corpus_dir().join("spm-gqa-untied-q8_0.slm");
    let bytes = std::fs::read(&path).unwrap();
    let slm = Slm::parse(&bytes).unwrap();
    let o = tinyrustlm(&["inspect", "--json", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).expect("inspect --json prints JSON");
    assert_eq!(r["format"], "slm 2.1");
    assert_eq!(r["file_bytes"], bytes.len() as u64);
    assert_eq!(r["sha256"], runtime::sha256::to_hex(&slm.digest()));
    assert_eq!(
        r["budget"]["headroom_bytes"],
        runtime::limits::MAX_MODEL_BYTES - bytes.len() as u64
    );
    let c = &slm.header.config;
    assert_eq!(r["config"]["architecture"], "llama");
    assert_eq!(r["config"]["vocab_size"], c.vocab_size);
    assert_eq!(r["config"]["n_kv_heads"], c.n_kv_heads);
    assert_eq!(r["config"]["tied_classifier"], c.tied_classifier);
    assert_eq!(r["metadata"]["name"], "spm-gqa-untied-q8_0");
    assert_eq!(r["tokenizer"]["kind"], "sentencepiece");
    assert_eq!(r["tokenizer"]["tokens"], c.vocab_size);
    assert_eq!(r["sections"].as_array().unwrap().len(), 4);
    let tensors = r["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), slm.tensors.len());
    for (t, e) in tensors.iter().zip(&slm.tensors) {
        assert_eq!(t["name"], e.name);
        assert_eq!(t["dtype"], e.dtype.name());
        assert_eq!(t["bytes"], e.length);
        assert_eq!(t["sha256"], runtime::sha256::to_hex(&e.digest));
    }
}

fn convert_slm(model: &Path, output: &Path) -> Output {
    let (model, output) = (model.to_str().unwrap(), output.to_str().unwrap());
    tinyrustlm(&["convert", "slm", "--model", model, "-o", output])
}

#[test]
fn convert_slm_rewrites_a_format_2_0_file_as_the_canonical_2_1_file() {
    let dir = common::TempDir::new("convert-slm");
    for (name, v2_1) in common::corpus_fixtures() {
        let old = dir.0.join(format!("{name}-2.0.slm"));
        std::fs::write(&old, common::as_format_2_0(&v2_1)).unwrap();
        let new = dir.0.join(format!("{name}-2.1.slm"));
        let o = convert_slm(&old, &new);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("read format 2.0"),
            "{name}: {}",
            stderr(&o)
        );
        assert!(
            std::fs::read(&new).unwrap() == v2_1,
            "{name}: not the 2.1 fixture"
        );
    }
    // A damaged file is refused with its code, and nothing is written.
    let mut bad = common::as_format_2_0(&common::fixture("byte-mha-tied-q8_0"));
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let old = dir.0.join("bad.slm");
    std::fs::write(&old, &bad).unwrap();
    let new = dir.0.join("bad-out.slm");
    let o = convert_slm(&old, &new);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("TensorDigestMismatch"),
        "{}",
        stderr(&o)
    );
    assert!(!new.exists());
}

/// `check` cannot pass without comparing anything, nor run on settings no generation takes:
/// both are arguments it cannot run with (exit 2), not a rejected model (exit 1).
#[test]
fn check_refuses_no_engine_and_bad_max_tokens() {
    // Node is looked up on PATH: with an empty PATH there is no engine to run.
    let o = Command::new(env!("CARGO_BIN_EXE_tinyrustlm"))
        .args(["check", "--engine", "node"])
        .env("PATH", "")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing to check"), "{err}");
    let over = (runtime::limits::MAX_NEW_TOKENS + 1).to_string();
    for n in ["0", over.as_str()] {
        let o = tinyrustlm(&["check", "--engine", "native", "--max-tokens", n]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "--max-tokens {n}: {err}");
        assert!(err.contains("MAX_NEW_TOKENS"), "{err}");
    }
}
