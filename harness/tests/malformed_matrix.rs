//! The malformed-input matrix beyond .slm (corpus/malformed/{adapters,registry,gguf}/, issue 9):
//! the committed files are what harness/src/malformed/ generates; every adapter, plan and apply
//! case fails with exactly its manifest code in the native runtime, under wasmtime and under Node
//! (receipts: native only, the ABI has no receipt reader); every registry case with its kind and
//! every GGUF case with its kind and offset in the harness's readers; the valid controls pass.

use harness::engine::native::NativeEngine;
use harness::engine::node::{node_available, NodeEngine};
use harness::engine::wasmtime::WasmtimeEngine;
use harness::engine::wasmtime::{wasm_bytes, wasm_path, AbiInstance, WasmLimits, WasmModule};
use harness::engine::{Engine, EngineError};
use harness::fixtures::corpus_dir;
use harness::gguf::Gguf;
use harness::malformed;
use harness::malformed::adapters::{ApplyInputs, StoredCase};
use runtime::adapter::{Adapter, Plan, Receipt};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn dir(sub: &str) -> PathBuf {
    corpus_dir().join("malformed").join(sub)
}

fn manifest(sub: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir(sub).join("manifest.json")).unwrap()).unwrap()
}

fn read(sub: &str, file: &str) -> Vec<u8> {
    std::fs::read(dir(sub).join(file)).unwrap_or_else(|e| panic!("{sub}/{file}: {e}"))
}

fn adapter_cases() -> Vec<StoredCase> {
    malformed::adapters::stored_cases(&corpus_dir()).unwrap()
}

fn status(r: Result<(), EngineError>) -> u32 {
    r.map_or_else(|e| e.code, |_| 0)
}

fn apply_with(engine: &mut dyn Engine, a: &ApplyInputs) -> u32 {
    engine.load(&a.base).unwrap();
    let ms: Vec<&[u8]> = a.modules.iter().map(|m| &m[..]).collect();
    status(engine.apply_plan(&a.plan, &ms).map(|_| ()))
}

fn native(c: &StoredCase) -> u32 {
    let code = |r: runtime::Result<()>| r.map_or_else(|e| e.code as u32, |_| 0);
    match (c.check.as_str(), &c.file, &c.apply) {
        ("adapter", Some(b), _) => code(Adapter::parse(b).map(|_| ())),
        ("plan", Some(b), _) => code(Plan::parse(b).map(|_| ())),
        ("receipt", Some(b), _) => code(Receipt::parse(b).map(|_| ())),
        ("apply", _, Some(a)) => apply_with(&mut NativeEngine::default(), a),
        _ => panic!("{}: unknown check {}", c.name, c.check),
    }
}

fn wasm_module() -> WasmModule {
    WasmModule::compile(&wasm_bytes().unwrap()).unwrap()
}

/// Calls a validator on a fresh instance (no model loaded) with `data` in a host buffer.
fn wasm_validate(
    module: &WasmModule,
    data: &[u8],
    f: fn(&mut AbiInstance, u32, u32) -> anyhow::Result<u32>,
) -> u32 {
    let mut abi = AbiInstance::new(module, WasmLimits::default()).unwrap();
    let ptr = abi.alloc_with(data).unwrap();
    f(&mut abi, ptr, data.len() as u32).unwrap()
}

#[test]
fn committed_matrices_are_current() {
    let differing = malformed::generate_formats(&corpus_dir(), true).unwrap();
    assert!(
        differing.is_empty(),
        "corpus/malformed/ differs from harness/src/malformed/ (run `tinyrustlm fixtures`): {differing:?}"
    );
}

#[test]
fn the_adapter_controls_are_valid() {
    let m = manifest("adapters");
    let v = &m["valid"];
    let adapter = read("adapters", v["adapter"].as_str().unwrap());
    let plan = read("adapters", v["plan"].as_str().unwrap());
    let receipt = read("adapters", v["receipt"].as_str().unwrap());
    Adapter::parse(&adapter).unwrap();
    Plan::parse(&plan).unwrap();
    Receipt::parse(&receipt).unwrap();
    let base = std::fs::read(corpus_dir().join(v["base"].as_str().unwrap())).unwrap();
    let mut n = NativeEngine::default();
    n.load(&base).unwrap();
    assert_eq!(n.apply_plan(&plan, &[&adapter]).unwrap(), receipt);
    let mut w = WasmtimeEngine::new(&wasm_bytes().unwrap()).unwrap();
    w.load(&base).unwrap();
    assert_eq!(w.apply_plan(&plan, &[&adapter]).unwrap(), receipt);
}

#[test]
fn every_adapter_plan_and_receipt_case_fails_with_its_code_natively() {
    let cases = adapter_cases();
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let got = native(c);
            (got != c.code).then(|| format!("{}: expected {}, native {got}", c.name, c.code))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Every code spec/adapters.md adds for reading and applying appears (the gate's
    // ReceiptMismatch and AdaptersRequired are session rules, tested in adapters.rs).
    for code in 36..=44u32 {
        assert!(
            cases.iter().any(|c| c.code == code),
            "no case for code {code}"
        );
    }
    assert!(cases.len() > 70, "only {} cases", cases.len());
    // The over-budget adapter is not stored: generated here.
    let (all, _) = malformed::adapters::cases(&corpus_dir()).unwrap();
    let big = all.iter().find(|c| !c.stored()).unwrap();
    let e = Adapter::parse(&big.file.as_ref().unwrap().1).unwrap_err();
    assert_eq!(e.code, big.expected);
}

#[test]
fn every_adapter_and_plan_case_fails_with_the_same_code_under_wasmtime() {
    let module = wasm_module();
    let mut engine = WasmtimeEngine::with_limits(&module, WasmLimits::default()).unwrap();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for c in adapter_cases() {
        let got = match (c.check.as_str(), &c.file, &c.apply) {
            ("adapter", Some(b), _) => wasm_validate(&module, b, AbiInstance::adapter_validate),
            ("plan", Some(b), _) => wasm_validate(&module, b, AbiInstance::plan_validate),
            ("apply", _, Some(a)) => apply_with(&mut engine, a),
            _ => continue,
        };
        checked += 1;
        if got != c.code {
            wrong.push(format!("{}: expected {}, wasmtime {got}", c.name, c.code));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(checked > 60, "only {checked} cases checked");
}

#[test]
fn every_adapter_and_plan_case_fails_with_the_same_code_under_node() {
    if !node_available() {
        println!("skipping: node is not installed");
        return;
    }
    let mut node = NodeEngine::spawn(&wasm_path()).unwrap();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for c in adapter_cases() {
        let got = match (c.check.as_str(), &c.file, &c.apply) {
            ("adapter", Some(b), _) => status(node.validate_adapter(b)),
            ("plan", Some(b), _) => {
                node.unload().unwrap();
                status(node.validate_plan(b))
            }
            ("apply", _, Some(a)) => apply_with(&mut node, a),
            _ => continue,
        };
        checked += 1;
        if got != c.code {
            wrong.push(format!("{}: expected {}, node {got}", c.name, c.code));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(checked > 60, "only {checked} cases checked");
}

fn repo_root() -> PathBuf {
    corpus_dir().join("..")
}

#[test]
fn every_registry_case_fails_with_its_kind() {
    let m = manifest("registry");
    let valid = String::from_utf8(read("registry", m["valid"].as_str().unwrap())).unwrap();
    for check in [
        "parse",
        "select-model",
        "select-adapter",
        "load-model",
        "load-adapter",
    ] {
        malformed::registry::run(&valid, check, &repo_root())
            .unwrap_or_else(|e| panic!("valid.json, {check}: {e}"));
    }
    let mut wrong = Vec::new();
    let cases = m["cases"].as_array().unwrap();
    for c in cases {
        let text = String::from_utf8(read("registry", c["file"].as_str().unwrap())).unwrap();
        let got = malformed::registry::run(&text, c["check"].as_str().unwrap(), &repo_root())
            .map_err(|e| format!("{:?}", e.kind));
        // Every case names the kind it must fail with: a case without one is a broken manifest,
        // not a pass for a run that succeeds.
        let want = c["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no kind", c["name"]));
        if got.as_ref().err().map(String::as_str) != Some(want) {
            wrong.push(format!(
                "{}: expected {}, got {got:?}",
                c["name"], c["kind"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Every kind of RegistryError has a case.
    for kind in [
        "Parse",
        "Invalid",
        "Duplicate",
        "Unknown",
        "OverBudget",
        "SizeMismatch",
        "DigestMismatch",
        "Io",
    ] {
        assert!(
            cases.iter().any(|c| c["kind"] == kind),
            "no case for {kind}"
        );
    }
}

#[test]
fn every_gguf_case_fails_with_its_kind_and_offset() {
    let m = manifest("gguf");
    Gguf::parse(&read("gguf", m["valid"].as_str().unwrap())).unwrap();
    let mut wrong = Vec::new();
    let mut kinds = std::collections::HashSet::new();
    let cases = m["cases"].as_array().unwrap();
    for c in cases {
        let bytes = read("gguf", c["file"].as_str().unwrap());
        let want = (
            c["kind"].as_str().unwrap().to_string(),
            c["offset"].as_u64(),
        );
        kinds.insert(want.0.clone());
        match Gguf::parse(&bytes) {
            Ok(_) => wrong.push(format!("{}: accepted", c["name"])),
            Err(e) => {
                let got = (format!("{:?}", e.kind), Some(e.offset));
                if got != want {
                    wrong.push(format!("{}: expected {want:?}, got {got:?}", c["name"]));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // One case per GgufErrorKind (19 kinds).
    assert_eq!(kinds.len(), 19, "kinds covered: {kinds:?}");
}

#[test]
fn manifests_name_only_files_that_exist() {
    for sub in ["adapters", "registry", "gguf"] {
        let m = manifest(sub);
        for c in m["cases"].as_array().unwrap() {
            let mut files: Vec<&str> = c["file"].as_str().into_iter().collect();
            files.extend(c["plan"].as_str());
            if let Some(ms) = c["modules"].as_array() {
                files.extend(ms.iter().filter_map(Value::as_str));
            }
            for f in files {
                assert!(Path::new(&dir(sub).join(f)).is_file(), "{sub}/{f}");
            }
        }
    }
}
