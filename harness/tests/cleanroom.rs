//! spec/ is enough to write a conforming `.slm` and to predict what the runtime generates from
//! it. corpus/tools/cleanroom/ holds a writer and a reference forward pass, sampler and
//! tokenizers in Python, written from spec/ (and README, and the CLI's `--help`) alone, without
//! reading the runtime or the harness. Here its files must verify, and on every standard case
//! (`tinyrustlm check`'s prompts and settings) and one longer sampled run the runtime must
//! produce exactly the reference's prompt ids, tokens, finish and logits digest — on models of
//! every dtype, tied and untied, mixed dtypes, multi-query attention, all three tokenizer kinds,
//! and a context too small for some prompts — with every way a generation ends among the cases.
//!
//! Needs `python3` with `numpy` (`.ci/setup` installs it); without it the test says so and
//! skips.

use harness::conformance::{standard_cases, Case};
use harness::engine::native::NativeEngine;
use harness::engine::{Engine, GenResult};
use harness::fixtures;
use runtime::format::Slm;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::TempDir;

fn cleanroom_dir() -> PathBuf {
    fixtures::corpus_dir().join("tools").join("cleanroom")
}

fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(args)
        .current_dir(cleanroom_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The reference's results for `cases` on the model at `path`, one JSON value per case.
fn reference(path: &Path, cases: &[Case], context: u32, dir: &Path) -> Vec<Value> {
    let list: Vec<Value> = cases
        .iter()
        .map(|c| {
            serde_json::json!({
                "prompt": c.prompt,
                "max_new_tokens": c.max_new_tokens,
                "temperature": c.temperature,
                "top_k": c.top_k,
                "top_p": c.top_p,
                "seed": c.seed,
            })
        })
        .collect();
    let cases_path = dir.join("cases.json");
    std::fs::write(&cases_path, serde_json::to_vec(&list).unwrap()).unwrap();
    let out = python(&[
        "reference.py",
        path.to_str().unwrap(),
        "--cases",
        cases_path.to_str().unwrap(),
        "--context",
        &context.to_string(),
    ]);
    serde_json::from_str::<Vec<Value>>(&out).unwrap()
}

/// One mismatch per line, or nothing.
fn compare(
    case: &Case,
    got: &Result<GenResult, harness::engine::EngineError>,
    want: &Value,
) -> Option<String> {
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    match (got, want.get("error")) {
        (Err(e), Some(w)) => {
            let name = format!("{:?}", runtime::ErrorCode::from_u32(e.code)?);
            let w = w.as_str().unwrap();
            (!w.starts_with(&name)).then(|| format!("{}: runtime {e}, reference {w}", case.name))
        }
        (Err(e), None) => Some(format!("{}: runtime {e}, reference generated", case.name)),
        (Ok(_), Some(w)) => Some(format!("{}: runtime generated, reference {w}", case.name)),
        (Ok(r), None) => {
            let theirs = (
                ids(&want["prompt_tokens"]),
                ids(&want["tokens"]),
                want["finish"].as_str().unwrap(),
                want["logits_digest"].as_str().unwrap(),
            );
            let ours = (
                r.prompt_tokens.clone(),
                r.tokens.clone(),
                r.finish.as_str(),
                r.logits_digest.as_str(),
            );
            (ours != theirs).then(|| {
                format!(
                    "{}:\n  runtime   {ours:?}\n  reference {theirs:?}",
                    case.name
                )
            })
        }
    }
}

#[test]
fn the_runtime_generates_what_the_spec_predicts() {
    if !common::python3_imports("numpy", "python3 with numpy") {
        return;
    }
    let dir = TempDir::new("cleanroom");
    // (file stem, writer options, KV cache positions: 0 = the model's context)
    let models: [(&str, &[&str], u32); 9] = [
        ("f32", &["--dtype", "f32"], 0),
        ("f16", &["--dtype", "f16"], 0),
        ("q8_0", &["--dtype", "q8_0"], 0),
        ("q4_0-tied", &["--dtype", "q4_0", "--tied"], 0),
        (
            "mixed",
            &["--dtype", "token_embd=f16,attn=q8_0,ffn=q4_0,output=f32"],
            0,
        ),
        (
            "mqa",
            &[
                "--dim",
                "40",
                "--heads",
                "5",
                "--kv-heads",
                "1",
                "--head-dim",
                "6",
            ],
            0,
        ),
        // The SentencePiece-style and ranked-merge vocabularies of tokenizers.py.
        ("spm-q8_0", &["--tokenizer", "spm", "--dtype", "q8_0"], 0),
        ("rm-q4_0", &["--tokenizer", "rm", "--dtype", "q4_0"], 0),
        // 8 positions: the two longer prompts do not fit; the empty one fills the context.
        ("q8_0-context8", &["--dtype", "q8_0"], 8),
    ];
    let mut cases = standard_cases(10);
    // A longer sampled run, in which the q8_0 model samples its stop token.
    cases.push(Case {
        name: "empty/temp1-seed3-60",
        prompt: "",
        temperature: 1.0,
        top_k: None,
        top_p: 1.0,
        seed: 3,
        max_new_tokens: 60,
    });
    let mut mismatches = Vec::new();
    let mut compared = 0;
    let mut outcomes = std::collections::BTreeSet::new();
    for (stem, options, context) in models {
        let path = dir.0.join(format!("{stem}.slm"));
        let mut args = vec!["slm_writer.py", path.to_str().unwrap()];
        args.extend_from_slice(options);
        python(&args);
        let bytes = std::fs::read(&path).unwrap();
        if let Err(e) = Slm::parse(&bytes) {
            mismatches.push(format!(
                "{stem}: the reader refuses the clean-room file: {e}"
            ));
            continue;
        }
        let mut engine = NativeEngine::default();
        engine.context = context;
        engine.load(&bytes).unwrap();
        let want = reference(&path, &cases, context, &dir.0);
        assert_eq!(want.len(), cases.len());
        for (case, want) in cases.iter().zip(&want) {
            let got = engine.generate(&case.request());
            if let Some(m) = compare(case, &got, want) {
                mismatches.push(format!("{stem} {m}"));
            }
            compared += 1;
            let outcome = match want.get("error") {
                Some(e) => e.as_str().unwrap().split(':').next().unwrap().to_string(),
                None => want["finish"].as_str().unwrap().to_string(),
            };
            outcomes.insert(outcome);
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} generations differ from the clean-room reference:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert_eq!(compared, models.len() * cases.len());
    // The cases reach every way a generation ends that these models allow.
    let expected = ["ContextExceeded", "context_full", "max_tokens", "stop"];
    assert_eq!(outcomes, expected.map(String::from).into(), "outcomes");
}
