//! The smoke page in every installed headless browser (.ci/install-browsers installs Chromium
//! and Firefox ESR; without either this test says so and skips): token ids and logits digests
//! bit-identical to the native engine for every corpus fixture and standard case, the failure
//! modes' error codes equal to native's, and a corrupted model rejected before activation.

use harness::browsers::{launch::Browser, run, Options, Row, ALL_MODES};
use harness::engine::native::NativeEngine;
use harness::engine::Engine;
use harness::fixtures::corpus_dir;
use harness::serve::ServeConfig;
use std::path::{Path, PathBuf};

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
    let out = run(&opts).unwrap();
    print!("{}", out.table());
    assert_eq!(out.engines, browsers);
    assert_all_ok(&out.rows);
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
    }
}

/// A copy of the corpus (recipes, fixtures, malformed matrix) in a temporary folder.
fn corpus_copy(tag: &str) -> PathBuf {
    let src = corpus_dir();
    let dst = std::env::temp_dir().join(format!("trlm-corpus-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(dst.join("malformed")).unwrap();
    for sub in [Path::new(""), Path::new("malformed")] {
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
    let Some(mut opts) = browser_options(&browsers) else {
        return;
    };
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
    opts.models = Some(vec![payload.into(), field.into()]);
    opts.modes = "1".into();
    opts.serve = ServeConfig {
        corpus: corpus.clone(),
        ..opts.serve
    };
    let out = run(&opts).unwrap();
    let _ = std::fs::remove_dir_all(&corpus);
    print!("{}", out.table());
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
