//! The smoke page in every installed headless browser (.ci/install-browsers installs Chromium
//! and Firefox ESR; without either this test says so and skips): token ids and logits digests
//! bit-identical to the native engine for every corpus fixture and standard case (and for
//! stories260K converted at f32 and q8_0 when ../shared holds it), every adapter fixture applied
//! from the registry with the receipt and every standard case equal to native's, the failure
//! modes' error codes equal to native's, and a corrupted model rejected before activation.
//!
//! Every run goes through the built `tinyrustlm browsers --json`, which re-executes itself in a
//! network namespace holding only loopback whenever `unshare` and `ip` work here; the test then
//! requires that the run was isolated.

mod common;

use harness::browsers::{isolate, launch::Browser, Options, Outcome, Row, ALL_MODES};
use harness::conformance::standard_cases;
use harness::engine::native::NativeEngine;
use harness::engine::Engine;
use harness::fixtures::corpus_dir;
use harness::smoke::SMOKE_MAX_NEW;
use runtime::format::{self, DType};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

fn installed() -> Vec<&'static str> {
    [Browser::Chromium, Browser::Firefox]
        .into_iter()
        .filter(|b| b.find().is_some())
        .map(|b| b.name())
        .collect()
}

fn browser_options(browsers: &[&str]) -> Option<Options> {
    if browsers.is_empty() {
        eprintln!("skipping: neither Chromium nor Firefox ESR is installed (.ci/install-browsers)");
        return None;
    }
    // .ci/install-browsers installs both: one without the other is a broken setup, which would
    // otherwise pass on the one browser alone.
    assert_eq!(
        browsers,
        ["chromium", "firefox"],
        "only {browsers:?} is installed: run .ci/install-browsers"
    );
    let opts = Options {
        only: Some(browsers.iter().map(|b| b.to_string()).collect()),
        ..Options::default()
    };
    if opts.serve.wasm.is_none() {
        eprintln!("skipping: no wasm module (TRLM_WASM_PATH)");
        return None;
    }
    Some(opts)
}

/// Runs `tinyrustlm browsers --json` on `browsers` with `args` and parses its outcome; checks
/// the run was network-isolated when this machine can isolate it.
fn run_cli(browsers: &[&str], args: &[OsString]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_tinyrustlm"))
        .args(["browsers", "--json", "--only", &browsers.join(",")])
        .args(args)
        .output()
        .expect("runs tinyrustlm browsers");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let outcome: Outcome = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON outcome ({e}; {}): {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        )
    });
    print!("{}", outcome.table());
    match isolate::available() {
        Ok(()) => assert!(outcome.isolated, "the run was not network-isolated"),
        Err(why) => eprintln!("note: network isolation unavailable here: {why}"),
    }
    assert_eq!(
        out.status.success(),
        outcome.passed() && !outcome.engines.is_empty()
    );
    outcome
}

/// stories260K (../shared) converted at f32 and q8_0 into `dir`; None when absent.
fn stories260k(dir: &Path) -> Option<Vec<PathBuf>> {
    let bin = common::shared_file("models/stories260K/stories260K.bin")?;
    let tok = common::shared_file("models/stories260K/tok512.bin")?;
    std::fs::create_dir_all(dir).unwrap();
    let mut files = Vec::new();
    for (dtype, tag) in [(DType::F32, "f32"), (DType::Q8_0, "q8_0")] {
        let c = harness::llama2c::convert(&bin, &tok, dtype, "stories260K").expect("converts");
        let path = dir.join(format!("stories260K-{tag}.slm"));
        std::fs::write(&path, format::write(&c.model).expect("writes")).unwrap();
        files.push(path);
    }
    Some(files)
}

fn assert_all_ok(rows: &[Row]) {
    let failed: Vec<_> = rows.iter().filter(|r| !r.ok).collect();
    assert!(failed.is_empty(), "divergences: {failed:#?}");
}

#[test]
fn every_browser_matches_native_bit_for_bit_and_code_for_code() {
    let browsers = installed();
    let Some(opts) = browser_options(&browsers) else {
        return;
    };
    assert_eq!(opts.modes, ALL_MODES);
    let tmp = std::env::temp_dir().join(format!("trlm-extra-{}", std::process::id()));
    let extra = stories260k(&tmp).unwrap_or_default();
    let args: Vec<OsString> = extra
        .iter()
        .flat_map(|p| [OsString::from("--extra-model"), p.clone().into_os_string()])
        .collect();
    let out = run_cli(&browsers, &args);
    let _ = std::fs::remove_dir_all(&tmp);
    assert_eq!(out.engines, browsers);
    assert_all_ok(&out.rows);
    let n_cases = standard_cases(SMOKE_MAX_NEW).len();
    let fixtures = harness::fixtures::load_recipes(&corpus_dir())
        .unwrap()
        .fixtures;
    for b in &browsers {
        let rows: Vec<_> = out.rows.iter().filter(|r| r.engine == *b).collect();
        // Every fixture × every standard case compared on tokens and digests.
        let gens = rows
            .iter()
            .filter(|r| r.digests_equal == Some(true))
            .count();
        assert!(
            gens > fixtures.len() * 12,
            "{b}: only {gens} generations compared"
        );
        for mode in ["malformed", "missing"] {
            assert!(rows.iter().any(|r| r.model == mode), "{b}: no {mode} rows");
        }
        for case in ["overlong prompt", "steps"] {
            assert!(rows.iter().any(|r| r.case == case), "{b}: no {case} row");
        }
        // Each adapter fixture: the receipt equal to native's byte for byte, and every standard
        // case on the adapted model.
        for f in harness::adapter::fixtures::read_all(&corpus_dir()).unwrap() {
            let id = f.recipe.name.as_str();
            assert!(
                rows.iter()
                    .any(|r| r.model == id && r.case == "receipt" && r.ok),
                "{b} {id}: no receipt row"
            );
            let equal = rows
                .iter()
                .filter(|r| r.model == id && r.digests_equal == Some(true))
                .count();
            assert_eq!(equal, n_cases, "{b} {id}: {equal} of {n_cases} cases equal");
        }
        // Each stories260K conversion: every standard case equal to native, token for token
        // and digest for digest.
        for p in &extra {
            let name = p.file_stem().unwrap().to_str().unwrap();
            let equal = rows
                .iter()
                .filter(|r| r.model == name && r.digests_equal == Some(true))
                .count();
            assert_eq!(
                equal, n_cases,
                "{b} {name}: {equal} of {n_cases} cases equal"
            );
        }
    }
}

/// A copy of the corpus (recipes, fixtures, malformed matrix, adapters) in a temporary folder.
fn corpus_copy(tag: &str) -> PathBuf {
    let src = corpus_dir();
    let dst = std::env::temp_dir().join(format!("trlm-corpus-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(dst.join("malformed")).unwrap();
    std::fs::create_dir_all(dst.join("adapters")).unwrap();
    std::fs::create_dir_all(dst.join("malformed/adapters")).unwrap();
    for sub in ["", "malformed", "malformed/adapters", "adapters"].map(Path::new) {
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, dst.join(sub).join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    dst
}

#[test]
fn a_corrupted_model_is_rejected_before_activation_in_every_browser() {
    let browsers = installed();
    if browser_options(&browsers).is_none() {
        return;
    }
    let corpus = corpus_copy("corrupt");
    // Two corruptions of the registry's models: a payload byte (the tensor digest catches it
    // at finish) and the header's digest field (the page's registry check catches it first).
    let payload = "byte-mha-tied-q8_0";
    let field = "spm-gqa-untied-q4_0";
    let mut expected = Vec::new();
    for (name, at) in [(payload, None), (field, Some(230))] {
        let path = corpus.join(format!("{name}.slm"));
        let mut bytes = std::fs::read(&path).unwrap();
        let at = at.unwrap_or(bytes.len() - 1);
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let code = NativeEngine::default().load(&bytes).unwrap_err().code;
        expected.push((name, code));
    }
    assert_eq!(expected, [(payload, 22), (field, 21)]);
    let args = [
        "--models".into(),
        format!("{payload},{field}").into(),
        "--modes".into(),
        "1".into(),
        "--corpus".into(),
        corpus.clone().into_os_string(),
    ];
    let out = run_cli(&browsers, &args);
    let _ = std::fs::remove_dir_all(&corpus);
    assert_all_ok(&out.rows);
    for b in &browsers {
        for (name, code) in &expected {
            let load: Vec<_> = out
                .rows
                .iter()
                .filter(|r| r.engine == *b && r.model == *name)
                .collect();
            // Only the load row: the model never ran a case.
            assert_eq!(load.len(), 1, "{b} {name}: {load:?}");
            assert_eq!(load[0].case, "load");
            assert!(load[0].ok, "{b} {name}: {:?}", load[0]);
            assert!(
                load[0].detail.starts_with(&format!("code {code},")),
                "{b} {name}: {}",
                load[0].detail
            );
        }
    }
}

/// Inside a namespace whose loopback is down (a bare `unshare --net`, as a cautious user might
/// wrap the runner), `browsers` makes its own namespace with loopback up and passes, and with
/// `--no-isolate` it refuses at once with the reason (exit 2: it could not run); it used to hang for ever when it stopped
/// its server (the wake-up connection to itself could not be made).
#[test]
fn a_namespace_with_loopback_down_neither_hangs_nor_passes_silently() {
    if let Err(why) = isolate::available() {
        eprintln!("skipping: network isolation unavailable here: {why}");
        return;
    }
    if !harness::engine::node::node_available() {
        eprintln!("skipping: no node");
        return;
    }
    let run = |extra: &[&str]| {
        Command::new("unshare")
            .args(["--net", "--", "timeout", "120"])
            .arg(env!("CARGO_BIN_EXE_tinyrustlm"))
            .args(["browsers", "--only", "node", "--timeout", "30"])
            .args(extra)
            .output()
            .expect("runs unshare")
    };
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("network: a namespace holding only loopback"),
        "{stdout}"
    );
    let out = run(&["--no-isolate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("127.0.0.1 cannot be reached"), "{stderr}");
}
