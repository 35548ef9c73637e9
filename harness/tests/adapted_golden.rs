//! Golden snapshots of adapted fixtures (golden/adapted-*.snap): for every adapter fixture of
//! corpus/adapters.json (ADP1, ASP1, ALR1 on f32, q8_0 and q4_0 bases), the receipt of its plan
//! (hex) and the standard cases on the adapted model. The same snapshot is asserted for native,
//! wasmtime and Node, so receipts and token streams are identical in every engine.

use harness::adapter::fixtures::read_all;
use harness::conformance::{run_cases, standard_cases};
use harness::engine::native::NativeEngine;
use harness::engine::node::NodeEngine;
use harness::engine::wasmtime::WasmtimeEngine;
use harness::engine::Engine;
use harness::fixtures::corpus_dir;

/// New tokens per case, as golden.rs.
const MAX_NEW: u32 = 24;

fn engines() -> Vec<Box<dyn Engine>> {
    let wasm = harness::engine::wasmtime::wasm_bytes().expect("the build produces the module");
    let mut engines: Vec<Box<dyn Engine>> = vec![
        Box::new(NativeEngine::default()),
        Box::new(WasmtimeEngine::new(&wasm).expect("the module instantiates")),
    ];
    if harness::engine::node::node_available() {
        let path = harness::engine::wasmtime::wasm_path();
        engines.push(Box::new(
            NodeEngine::spawn(&path).expect("starting the node engine"),
        ));
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn golden_adapted_token_streams_and_receipts_in_every_engine() {
    let fixtures = read_all(&corpus_dir()).unwrap();
    assert_eq!(fixtures.len(), 9, "3 kinds on f32, q8_0 and q4_0");
    let cases = standard_cases(MAX_NEW);
    let mut engines = engines();
    for f in &fixtures {
        for engine in engines.iter_mut() {
            engine.load(&f.base).unwrap();
            let base: Vec<_> = run_cases(engine.as_mut(), &cases);
            let receipt = engine.apply_plan(&f.plan, &[&f.adapter]).unwrap();
            let results = run_cases(engine.as_mut(), &cases);
            // The adapter changes what the model computes.
            let changed = base.iter().zip(&results).any(|(a, b)| {
                a.as_ref().unwrap().logits_digest != b.as_ref().unwrap().logits_digest
            });
            assert!(changed, "{} changes no logit", f.recipe.name);
            let cases_json: Vec<serde_json::Value> = cases
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
            let snapshot = serde_json::json!({
                "plan": String::from_utf8_lossy(&f.plan),
                "receipt_hex": hex(&receipt),
                "receipt": String::from_utf8_lossy(&receipt),
                "cases": cases_json,
            });
            insta::with_settings!({
                snapshot_path => "../../golden",
                prepend_module_to_snapshot => false,
                snapshot_suffix => "",
                omit_expression => true,
            }, {
                insta::assert_json_snapshot!(format!("adapted-{}", f.recipe.name), snapshot);
            });
            // Removing the adapters restores the base bit for bit.
            engine.remove_adapters().unwrap();
            let again = run_cases(engine.as_mut(), &cases[..1]);
            assert_eq!(
                again[0].as_ref().unwrap(),
                base[0].as_ref().unwrap(),
                "{} in {}",
                f.recipe.name,
                engine.name()
            );
        }
    }
}
