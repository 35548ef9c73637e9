//! The selector-registry part of the malformed matrix (corpus/malformed/registry/): one JSON
//! file per rejection rule of spec/adapters.md (Selector registry), each with the exact
//! [`RegistryErrorKind`] the harness's reader reports. Every file is derived from one valid
//! registry built from the corpus fixtures (two models and one adapter fixture), edited in exactly
//! one way.
//!
//! A case is checked in one of three ways (the manifest's `check`): `parse` (`Registry::parse`);
//! `select-model` / `select-adapter` (parse, then select the manifest's `id` / `family` + `base`);
//! `load-model` / `load-adapter` (parse, select, then `registry::load` the entry, paths relative
//! to the repository root, the parent of corpus/).

use super::write_dir;
use crate::adapter::registry::RegistryErrorKind::{self, *};
use crate::limits::MAX_REGISTRY_ID_BYTES;
use anyhow::{Context, Result};
use runtime::limits;
use runtime::sha256::to_hex;
use serde_json::{json, Value};
use std::path::Path;

/// One malformed registry and what reading (or using) it must report.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub rule: String,
    pub expected: RegistryErrorKind,
    /// `parse`, `select-model`, `select-adapter`, `load-model` or `load-adapter`.
    pub check: &'static str,
    /// The registry text.
    pub text: String,
}

/// The valid control registry's file name.
pub const VALID: &str = "valid.json";
/// The model id a `select-model` / `load-model` case uses.
pub const MODEL_ID: &str = "byte-mha-tied-f32";
/// The adapter family a `select-adapter` / `load-adapter` case uses (for base [`MODEL_ID`]).
pub const FAMILY: &str = "fixture-adp1";
const ADAPTER: &str = "byte-mha-tied-f32-adp1";

/// The valid registry: the f32 and q8_0 byte fixtures and the f32 ADP1 adapter fixture.
pub fn valid(corpus: &Path) -> Result<Value> {
    let read = |rel: &str| {
        std::fs::read(corpus.join(rel)).with_context(|| format!("reading corpus/{rel}"))
    };
    let mut models = Vec::new();
    for (id, dtype) in [(MODEL_ID, "f32"), ("byte-mha-tied-q8_0", "q8_0")] {
        let b = read(&format!("{id}.slm"))?;
        models.push(json!({
            "id": id, "path": format!("corpus/{id}.slm"), "bytes": b.len(),
            "sha256": to_hex(&runtime::format::file_digest(&b)), "dtype": dtype,
            "shape": "dim 32, 2 layers",
        }));
    }
    let a = read(&format!("adapters/{ADAPTER}.adapter"))?;
    Ok(json!({
        "version": 1,
        "models": models,
        "adapters": [{
            "id": ADAPTER, "family": FAMILY, "base": MODEL_ID, "kind": "adp1",
            "path": format!("corpus/adapters/{ADAPTER}.adapter"), "bytes": a.len(),
            "sha256": to_hex(&runtime::adapter::format::file_digest(&a)), "dtype": "f32",
            "shape": "2 tensors",
        }],
    }))
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON values serialize");
    s.push('\n');
    s
}

/// Every case, built from the valid registry of `corpus`.
pub fn cases(corpus: &Path) -> Result<Vec<Case>> {
    let ok = valid(corpus)?;
    let text = pretty(&ok);
    let mut out = Vec::new();
    let mut add = |name: &str, kind, check, rule: &str, text: String| {
        out.push(Case {
            name: name.into(),
            rule: rule.into(),
            expected: kind,
            check,
            text,
        });
    };
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = ok.clone();
        f(&mut v);
        pretty(&v)
    };
    let model = |field: &'static str, value: Value| {
        edit(&move |v: &mut Value| v["models"][0][field] = value.clone())
    };
    let adapter = |field: &'static str, value: Value| {
        edit(&move |v: &mut Value| v["adapters"][0][field] = value.clone())
    };

    add(
        "not-json",
        Parse,
        "parse",
        "the registry is JSON (cut in half)",
        text[..text.len() / 2].to_string(),
    );
    add(
        "unknown-field",
        Parse,
        "parse",
        "no unknown field (top level)",
        edit(&|v| v["extra"] = json!(1)),
    );
    add(
        "entry-unknown-field",
        Parse,
        "parse",
        "no unknown field (in a model entry)",
        model("licence", json!("MIT")),
    );
    add(
        "duplicate-field",
        Parse,
        "parse",
        "no duplicated field",
        text.replacen("\"version\": 1", "\"version\": 1, \"version\": 1", 1),
    );
    add(
        "missing-field",
        Parse,
        "parse",
        "every field is present (a model without sha256)",
        edit(&|v| {
            v["models"][0].as_object_mut().unwrap().remove("sha256");
        }),
    );
    add(
        "wrong-type",
        Parse,
        "parse",
        "bytes is a number (a string)",
        model("bytes", json!("7552")),
    );
    add(
        "version-2",
        Invalid,
        "parse",
        "version is 1",
        edit(&|v| v["version"] = json!(2)),
    );
    add(
        "id-uppercase",
        Invalid,
        "parse",
        "an id is bytes of [a-z0-9_.-] (upper case)",
        model("id", json!("Byte-f32")),
    );
    add(
        "id-empty",
        Invalid,
        "parse",
        "an id is at least 1 byte",
        model("id", json!("")),
    );
    add(
        "id-too-long",
        Invalid,
        "parse",
        "an id is at most 64 bytes (65)",
        model("id", json!("m".repeat(MAX_REGISTRY_ID_BYTES + 1))),
    );
    add(
        "family-bad",
        Invalid,
        "parse",
        "a family is 1..=64 bytes of [a-z0-9_.-] (a space)",
        adapter("family", json!("fixture adp1")),
    );
    add(
        "path-traversal",
        Invalid,
        "parse",
        "a path has no `..` component",
        model("path", json!("corpus/../secret.slm")),
    );
    add(
        "path-absolute",
        Invalid,
        "parse",
        "a path is relative",
        model("path", json!("/etc/passwd")),
    );
    add(
        "path-empty-component",
        Invalid,
        "parse",
        "a path has no empty component",
        adapter("path", json!("corpus//adapters/a.adapter")),
    );
    add(
        "path-dot-component",
        Invalid,
        "parse",
        "a path has no `.` component",
        model("path", json!("./corpus/m.slm")),
    );
    add(
        "path-backslash",
        Invalid,
        "parse",
        "a path has no backslash",
        model("path", json!("corpus\\m.slm")),
    );
    add(
        "bytes-zero",
        Invalid,
        "parse",
        "bytes is at least 1",
        adapter("bytes", json!(0)),
    );
    add(
        "sha256-upper-case",
        Invalid,
        "parse",
        "sha256 is 64 lower-case hex digits (upper case)",
        model("sha256", json!("AB".repeat(32))),
    );
    add(
        "sha256-short",
        Invalid,
        "parse",
        "sha256 is 64 lower-case hex digits (63)",
        adapter("sha256", json!("a".repeat(63))),
    );
    add(
        "model-dtype-unknown",
        Invalid,
        "parse",
        "a model dtype is f32, f16, q8_0 or q4_0",
        model("dtype", json!("q5_k")),
    );
    add(
        "adapter-kind-unknown",
        Invalid,
        "parse",
        "an adapter kind is adp1, asp1 or alr1",
        adapter("kind", json!("lora")),
    );
    add(
        "adapter-dtype-not-f32",
        Invalid,
        "parse",
        "an adapter dtype is f32",
        adapter("dtype", json!("f16")),
    );
    add(
        "model-id-duplicate",
        Duplicate,
        "parse",
        "model ids are unique",
        edit(&|v| {
            let m = v["models"][0].clone();
            v["models"][1]["id"] = m["id"].clone();
        }),
    );
    add(
        "adapter-id-duplicate",
        Duplicate,
        "parse",
        "adapter ids are unique",
        edit(&|v| {
            let mut a = v["adapters"][0].clone();
            a["family"] = json!("other");
            v["adapters"].as_array_mut().unwrap().push(a);
        }),
    );
    add(
        "family-base-duplicate",
        Duplicate,
        "parse",
        "one adapter per (family, base)",
        edit(&|v| {
            let mut a = v["adapters"][0].clone();
            a["id"] = json!("second");
            v["adapters"].as_array_mut().unwrap().push(a);
        }),
    );
    add(
        "adapter-base-unknown",
        Unknown,
        "parse",
        "an adapter's base is a model id",
        adapter("base", json!("nope")),
    );
    add(
        "model-over-budget",
        OverBudget,
        "select-model",
        "a selected model is at most the model budget (33,554,433 bytes)",
        model("bytes", json!(limits::MAX_MODEL_BYTES + 1)),
    );
    add(
        "adapter-over-budget",
        OverBudget,
        "select-adapter",
        "an adapter selected for automatic application is at most 1,048,576 bytes (one more)",
        adapter("bytes", json!(limits::ADAPTER_AUTO_APPLY_BYTES + 1)),
    );
    add(
        "select-model-unknown",
        Unknown,
        "select-model",
        "a selected model exists (the valid registry without it)",
        edit(&|v| {
            v["adapters"] = json!([]);
            v["models"].as_array_mut().unwrap().remove(0);
        }),
    );
    let bigger = |v: &Value| json!(v.as_u64().unwrap() + 1);
    add(
        "model-size-mismatch",
        SizeMismatch,
        "load-model",
        "a loaded model's size is the entry's (one byte more)",
        edit(&|v| v["models"][0]["bytes"] = bigger(&v["models"][0]["bytes"])),
    );
    add(
        "adapter-digest-mismatch",
        DigestMismatch,
        "load-adapter",
        "a loaded adapter's file digest is the entry's",
        adapter("sha256", json!("0".repeat(64))),
    );
    add(
        "model-digest-mismatch",
        DigestMismatch,
        "load-model",
        "a loaded model's file digest is the entry's",
        model("sha256", json!("0".repeat(64))),
    );
    add(
        "model-file-absent",
        Io,
        "load-model",
        "a loaded model's file can be read",
        model("path", json!("corpus/absent-model.slm")),
    );
    Ok(out)
}

/// Writes corpus/malformed/registry/ (or, with `check`, compares); returns the files that differ.
pub fn generate(corpus: &Path, check: bool) -> Result<Vec<String>> {
    let cases = cases(corpus)?;
    let mut files = vec![(VALID.to_string(), pretty(&valid(corpus)?).into_bytes())];
    files.extend(
        cases
            .iter()
            .map(|c| (format!("{}.json", c.name), c.text.clone().into_bytes())),
    );
    let list: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "file": format!("{}.json", c.name), "check": c.check,
                "rule": c.rule, "kind": format!("{:?}", c.expected),
            })
        })
        .collect();
    let manifest = json!({
        "description": "One registry per rejection rule of spec/adapters.md (Selector registry), each with the RegistryErrorKind the harness reports. check: `parse` (Registry::parse); `select-model` selects model `model`, `select-adapter` the adapter of family `family` for base `model`; `load-model` / `load-adapter` also loads that entry with registry::load, paths relative to the repository root (the parent of corpus/). valid.json passes every check. The page (browser-smoke/app.js) has no registry parser of its own (it reads registry.json and selects), so these are checked natively only. Generated by harness/src/malformed/registry.rs (tinyrustlm fixtures).",
        "valid": VALID, "model": MODEL_ID, "family": FAMILY,
        "cases": list,
    });
    let mut m = serde_json::to_string_pretty(&manifest)?;
    m.push('\n');
    files.push(("manifest.json".into(), m.into_bytes()));
    write_dir(
        &corpus.join("malformed/registry"),
        "malformed/registry",
        &files,
        &["json"],
        check,
    )
}

/// Runs one case's check on `text` (paths relative to `root`): Ok when everything passes.
pub fn run(
    text: &str,
    check: &str,
    root: &Path,
) -> Result<(), crate::adapter::registry::RegistryError> {
    use crate::adapter::registry::{load, Registry};
    let r = Registry::parse(text)?;
    match check {
        "select-model" => r.select_model(MODEL_ID).map(|_| ()),
        "select-adapter" => r.select_adapter(FAMILY, MODEL_ID).map(|_| ()),
        "load-model" => {
            let m = r.select_model(MODEL_ID)?;
            load(root, &m.path, m.bytes, &m.sha256, false).map(|_| ())
        }
        "load-adapter" => {
            let a = r.select_adapter(FAMILY, MODEL_ID)?;
            load(root, &a.path, a.bytes, &a.sha256, true).map(|_| ())
        }
        _ => Ok(()),
    }
}
