//! Golden snapshots (golden/*.snap): token ids, text and logits digests of every corpus fixture
//! for the standard prompt set and sampling settings. The same snapshot is asserted for every
//! engine available in the test build: native at each kernel level of this CPU, both wasm
//! modules (simd128, scalar) under wasmtime, and Node on both. CI runs with INSTA_UPDATE=no: an unreviewed change fails.

use harness::conformance::{run_cases, standard_cases};
use harness::engine::native::NativeEngine;
use harness::engine::node::NodeEngine;
use harness::engine::wasmtime::{WasmVariant, WasmtimeEngine};
use harness::engine::Engine;
use harness::fixtures::{corpus_dir, load_recipes};
use runtime::model::cpu::{self, Isa};

/// New tokens per case: enough to exercise sampling, small enough to keep the suite fast.
const MAX_NEW: u32 = 24;

/// The engines, each with the native kernel level to run at while it runs.
fn engines() -> Vec<(Isa, Box<dyn Engine>)> {
    let mut engines: Vec<(Isa, Box<dyn Engine>)> = vec![
        (cpu::detected(), Box::new(NativeEngine::default())),
        (Isa::Portable, Box::new(NativeEngine::default())),
    ];
    for v in WasmVariant::ALL {
        let engine = WasmtimeEngine::of(v).expect("the build produces the module");
        engines.push((cpu::detected(), Box::new(engine)));
    }
    if harness::engine::node::node_available() {
        let detecting = NodeEngine::spawn_detecting().expect("starting the node engine");
        assert_eq!(detecting.variant, "simd128", "Node runs simd128");
        engines.push((cpu::detected(), Box::new(detecting)));
        let scalar = NodeEngine::spawn(&WasmVariant::Scalar.path()).expect("starting node");
        engines.push((cpu::detected(), Box::new(scalar)));
    } else {
        eprintln!("node engine skipped: no node executable");
    }
    engines
}

fn ids(ids: &[u32]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn golden_token_streams_of_every_fixture_in_every_engine() {
    let dir = corpus_dir();
    let recipes = load_recipes(&dir).unwrap();
    let cases = standard_cases(MAX_NEW);
    for recipe in &recipes.fixtures {
        let bytes = std::fs::read(dir.join(format!("{}.slm", recipe.name))).unwrap();
        for (isa, mut engine) in engines() {
            engine.load(&bytes).unwrap();
            cpu::set_isa(isa);
            let results = run_cases(engine.as_mut(), &cases);
            cpu::set_isa(cpu::detected());
            let snapshot: Vec<serde_json::Value> = cases
                .iter()
                .zip(&results)
                .map(|(case, r)| match r {
                    Ok(r) => serde_json::json!({
                        "case": case.name,
                        "prompt_tokens": ids(&r.prompt_tokens),
                        "tokens": ids(&r.tokens),
                        "text": String::from_utf8_lossy(&r.text),
                        "logits_digest": r.logits_digest,
                        "finish": r.finish,
                    }),
                    Err(e) => serde_json::json!({"case": case.name, "error": e.code}),
                })
                .collect();
            insta::with_settings!({
                snapshot_path => "../../golden",
                prepend_module_to_snapshot => false,
                snapshot_suffix => "",
                omit_expression => true,
            }, {
                insta::assert_json_snapshot!(recipe.name.clone(), snapshot);
            });
        }
    }
}

/// Every file in golden/ is a snapshot some test asserts: the fixtures of corpus/recipes.json
/// (this file), `adapted-` + each adapter fixture (adapted_golden.rs) and the adapter example's
/// two dtypes (adapter_example.rs). A snapshot whose test went away would otherwise sit there
/// unchecked (insta leaves unreferenced snapshots alone), and so would a changed one.
#[test]
fn every_golden_file_is_asserted() {
    let dir = corpus_dir();
    let mut want: Vec<String> = load_recipes(&dir)
        .unwrap()
        .fixtures
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let adapters = harness::adapter::fixtures::read_all(&dir).unwrap();
    want.extend(
        adapters
            .iter()
            .map(|f| format!("adapted-{}", f.recipe.name)),
    );
    want.extend(["f32", "q8_0"].map(|d| format!("adapter-example-stories260K-{d}")));
    want.sort();
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden");
    let mut have: Vec<String> = std::fs::read_dir(&golden)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    let want_files: Vec<String> = want.iter().map(|n| format!("{n}.snap")).collect();
    assert_eq!(have, want_files);
}
