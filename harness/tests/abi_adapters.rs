//! Adapters through the raw ABI (spec/abi.md, Adapters) under wasmtime: the gate (generation
//! refused with AdaptersRequired before the plan, allowed after, refused again after removal),
//! one exact code per refusal of the adapter calls, calls out of order (InvalidState), and
//! receipts identical to the native runtime's.

use harness::adapter::fixtures::{
    build_adapter, build_plan, read_all, AdapterFixture, AdapterRecipe,
};
use harness::engine::native::NativeEngine;
use harness::engine::wasmtime::{AbiInstance, WasmLimits, WasmModule, WasmtimeEngine};
use harness::engine::{Engine, GenRequest};
use harness::fixtures::corpus_dir;
use runtime::adapter::{Plan, PlanModule};
use runtime::generate::sampler::SamplerSettings;
use runtime::generate::session::PlanRequirement;
use runtime::sha256::sha256;
use runtime::ErrorCode as C;

fn fixtures() -> Vec<AdapterFixture> {
    read_all(&corpus_dir()).unwrap()
}

fn module() -> WasmModule {
    WasmModule::compile(&harness::engine::wasmtime::wasm_bytes().unwrap()).unwrap()
}

fn request() -> GenRequest {
    GenRequest {
        prompt: b"once upon".to_vec(),
        settings: SamplerSettings {
            temperature: 0.0,
            top_k: None,
            top_p: 1.0,
            seed: 3,
            max_new_tokens: 8,
        },
    }
}

fn code(r: Result<impl std::fmt::Debug, harness::engine::EngineError>) -> u32 {
    r.unwrap_err().code
}

#[test]
fn the_gate_refuses_generation_before_the_plan_allows_it_after_and_refuses_after_removal() {
    let f = &fixtures()[0];
    let native_receipt = {
        let mut n = NativeEngine::default();
        n.load(&f.base).unwrap();
        n.apply_plan(&f.plan, &[&f.adapter]).unwrap()
    };
    let mut e = WasmtimeEngine::new(&harness::engine::wasmtime::wasm_bytes().unwrap()).unwrap();
    e.load(&f.base).unwrap();
    let base = e.generate(&request()).unwrap();
    e.require_plan(Some(PlanRequirement {
        plan: sha256(&f.plan),
        receipt: Some(sha256(&native_receipt)),
    }))
    .unwrap();
    assert_eq!(code(e.generate(&request())), C::AdaptersRequired as u32);
    let receipt = e.apply_plan(&f.plan, &[&f.adapter]).unwrap();
    assert_eq!(receipt, native_receipt);
    let adapted = e.generate(&request()).unwrap();
    assert_ne!(adapted.logits_digest, base.logits_digest);
    e.remove_adapters().unwrap();
    assert_eq!(code(e.generate(&request())), C::AdaptersRequired as u32);
    // Lifting the requirement opens the gate on the base model.
    e.require_plan(None).unwrap();
    assert_eq!(e.generate(&request()).unwrap(), base);
}

#[test]
fn a_pinned_receipt_that_differs_refuses_the_plan_and_changes_nothing() {
    let f = &fixtures()[1];
    let mut e = WasmtimeEngine::new(&harness::engine::wasmtime::wasm_bytes().unwrap()).unwrap();
    e.load(&f.base).unwrap();
    e.require_plan(Some(PlanRequirement {
        plan: sha256(&f.plan),
        receipt: Some([7; 32]),
    }))
    .unwrap();
    assert_eq!(
        code(e.apply_plan(&f.plan, &[&f.adapter])),
        C::ReceiptMismatch as u32
    );
    assert_eq!(code(e.generate(&request())), C::AdaptersRequired as u32);
    // Nothing was installed: no receipt, no module, the base model's digest.
    let abi = e.abi();
    assert_eq!(abi.output(6).unwrap(), Ok(Vec::new()));
    let d = abi.diagnostics().unwrap().unwrap();
    assert_eq!(d["adapter_modules"].as_u64(), Some(0));
    assert!(d["receipt_digest"].is_null(), "{d}");
}

#[test]
fn receipts_are_the_native_runtime_s_for_every_fixture() {
    let wasm = harness::engine::wasmtime::wasm_bytes().unwrap();
    let mut w = WasmtimeEngine::new(&wasm).unwrap();
    let mut n = NativeEngine::default();
    for f in fixtures() {
        for e in [&mut w as &mut dyn Engine, &mut n] {
            e.load(&f.base).unwrap();
        }
        let a = w.apply_plan(&f.plan, &[&f.adapter]).unwrap();
        let b = n.apply_plan(&f.plan, &[&f.adapter]).unwrap();
        assert_eq!(a, b, "{}", f.recipe.name);
        assert_eq!(
            w.generate(&request()).unwrap(),
            n.generate(&request()).unwrap()
        );
    }
}

/// An adapter on a tied quantized embedding — the classifier's bytes too, which the simd128
/// module holds interleaved (spec/determinism.md, SIMD paths) — and on a layer matrix: the
/// simd128 module assembles the same bytes (the receipt) and generates the same text as native.
#[test]
fn an_adapter_on_a_tied_quantized_embedding_matches_native() {
    let wasm = harness::engine::wasmtime::wasm_bytes().unwrap();
    let mut w = WasmtimeEngine::new(&wasm).unwrap();
    let mut n = NativeEngine::default();
    for (seed, base) in [(31, "byte-mha-tied-q8_0"), (32, "byte-mha-tied-q4_0")] {
        let bytes = std::fs::read(corpus_dir().join(format!("{base}.slm"))).unwrap();
        for kind in ["adp1", "asp1", "alr1"] {
            let recipe = AdapterRecipe {
                name: format!("{base}-{kind}-embd"),
                base: base.into(),
                kind: kind.into(),
                seed,
                tensors: vec!["blk.0.attn_q.weight".into(), "token_embd.weight".into()],
            };
            let adapter = build_adapter(&recipe, &bytes).unwrap();
            let plan = build_plan(&recipe, &bytes, &adapter).unwrap();
            for e in [&mut w as &mut dyn Engine, &mut n] {
                e.load(&bytes).unwrap();
            }
            let a = w.apply_plan(&plan, &[&adapter]).unwrap();
            let b = n.apply_plan(&plan, &[&adapter]).unwrap();
            assert_eq!(a, b, "{}", recipe.name);
            let (got, want) = (
                w.generate(&request()).unwrap(),
                n.generate(&request()).unwrap(),
            );
            assert_eq!(got, want, "{}", recipe.name);
            // The adapter changed what the model computes.
            n.load(&bytes).unwrap();
            assert_ne!(
                n.generate(&request()).unwrap().step_digests,
                want.step_digests,
                "{}",
                recipe.name
            );
        }
    }
}

/// A raw instance and helpers that pass bytes through a temporary host buffer.
struct Raw(AbiInstance);

impl Raw {
    fn new() -> Raw {
        Raw(AbiInstance::new(&module(), WasmLimits::default()).unwrap())
    }

    fn with(&mut self, data: &[u8], f: impl FnOnce(&mut AbiInstance, u32, u32) -> u32) -> u32 {
        let ptr = self.0.alloc_with(data).unwrap();
        let status = f(&mut self.0, ptr, data.len() as u32);
        self.0.free(ptr, data.len().max(1) as u32).unwrap();
        status
    }

    fn load(&mut self, bytes: &[u8]) {
        assert_eq!(self.with(bytes, |i, p, n| i.load(p, n).unwrap()), 0);
    }

    fn begin(&mut self, plan: &[u8]) -> u32 {
        self.with(plan, |i, p, n| i.plan_begin(p, n).unwrap())
    }

    fn module(&mut self, m: &[u8]) -> u32 {
        self.with(m, |i, p, n| i.plan_module(p, n).unwrap())
    }

    fn receipt(&mut self) -> Result<Vec<u8>, u32> {
        self.0.output(6).unwrap()
    }
}

const OK: u32 = 0;

#[test]
fn adapter_calls_refuse_with_exact_codes_and_out_of_order_calls_are_invalid_state() {
    let fs = fixtures();
    let f = &fs[0];
    let other = fs.iter().find(|g| g.recipe.base != f.recipe.base).unwrap();
    let mut r = Raw::new();
    // Without a model.
    assert_eq!(r.begin(&f.plan), C::ModelNotLoaded as u32);
    assert_eq!(r.0.remove_adapters().unwrap(), C::ModelNotLoaded as u32);
    assert_eq!(r.receipt(), Err(C::ModelNotLoaded as u32));
    assert_eq!(
        r.with(&[0; 32], |i, p, n| i.require_plan(p, n).unwrap()),
        C::ModelNotLoaded as u32
    );
    // Validation needs no model.
    assert_eq!(
        r.with(&f.adapter, |i, p, n| i.adapter_validate(p, n).unwrap()),
        OK
    );
    assert_eq!(
        r.with(&f.adapter[..100], |i, p, n| i
            .adapter_validate(p, n)
            .unwrap()),
        C::Truncated as u32
    );
    assert_eq!(
        r.with(b"GGUF", |i, p, n| i.adapter_validate(p, n).unwrap()),
        C::InvalidAdapterMagic as u32
    );
    assert_eq!(
        r.with(&f.plan, |i, p, n| i.plan_validate(p, n).unwrap()),
        OK
    );
    assert_eq!(
        r.with(b"TRLM-PLAN 2\n", |i, p, n| i.plan_validate(p, n).unwrap()),
        C::InvalidPlan as u32
    );
    // Out of order.
    assert_eq!(r.module(&f.adapter), C::InvalidState as u32);
    assert_eq!(r.0.plan_check().unwrap(), C::InvalidState as u32);
    assert_eq!(r.0.plan_apply().unwrap(), C::InvalidState as u32);
    assert_eq!(r.0.plan_abort().unwrap(), C::InvalidState as u32);

    r.load(&f.base);
    assert_eq!(r.receipt(), Ok(Vec::new()));
    // A plan for another base.
    assert_eq!(
        r.with(&other.plan, |i, p, n| i.plan_validate(p, n).unwrap()),
        C::PlanBaseMismatch as u32
    );
    assert_eq!(r.begin(&other.plan), C::PlanBaseMismatch as u32);
    assert_eq!(r.module(&f.adapter), C::InvalidState as u32);
    // A module that is not the plan's ends the stage.
    assert_eq!(r.begin(&f.plan), OK);
    assert_eq!(r.module(&other.adapter), C::ModuleDigestMismatch as u32);
    assert_eq!(r.0.plan_apply().unwrap(), C::InvalidState as u32);
    // Too few modules at check and apply; one too many.
    assert_eq!(r.begin(&f.plan), OK);
    assert_eq!(r.0.plan_check().unwrap(), C::ModuleDigestMismatch as u32);
    assert_eq!(r.module(&f.adapter), OK);
    assert_eq!(r.module(&f.adapter), C::ModuleDigestMismatch as u32);
    // A pointer failure does not end the stage.
    assert_eq!(r.begin(&f.plan), OK);
    assert_eq!(r.0.plan_module(0, 4).unwrap(), C::NullPointer as u32);
    assert_eq!(r.module(&f.adapter), OK);
    // Check changes nothing; apply produces the receipt and ends the stage.
    assert_eq!(r.0.plan_check().unwrap(), OK);
    assert_eq!(r.receipt(), Ok(Vec::new()));
    assert_eq!(r.0.plan_apply().unwrap(), OK);
    let receipt = r.receipt().unwrap();
    assert!(receipt.starts_with(b"TRLM-RECEIPT 1\n"));
    assert_eq!(r.0.plan_apply().unwrap(), C::InvalidState as u32);
    let d = r.0.diagnostics().unwrap().unwrap();
    assert_eq!(d["adapter_modules"], 1);
    assert_eq!(
        d["receipt_digest"],
        runtime::sha256::to_hex(&sha256(&receipt))
    );
    // The context setting keeps the adapters.
    assert_eq!(r.0.set_context(16).unwrap(), OK);
    assert_eq!(r.receipt(), Ok(receipt));
    // Requirement lengths.
    assert_eq!(
        r.with(&[0; 33], |i, p, n| i.require_plan(p, n).unwrap()),
        C::InvalidLength as u32
    );
    // The staging budget is checked from the plan, before any module.
    let huge: Vec<PlanModule> = (0..2)
        .map(|i| PlanModule {
            digest: [i; 32],
            bytes: runtime::limits::MAX_ADAPTER_BYTES,
            name: format!("m{i}"),
        })
        .collect();
    let base_digest: [u8; 32] = f.base[224..256].try_into().unwrap();
    assert_eq!(
        r.begin(&Plan::to_bytes(&base_digest, &huge)),
        C::BudgetExceeded as u32
    );
    // Removing restores an empty receipt.
    assert_eq!(r.0.remove_adapters().unwrap(), OK);
    assert_eq!(r.receipt(), Ok(Vec::new()));
    let d = r.0.diagnostics().unwrap().unwrap();
    assert_eq!(d["adapter_modules"], 0);
    assert!(d["receipt_digest"].is_null());
    // Past its pointer checks a begin abandons the staged plan, also when it then fails:
    // for another base, and for want of a model.
    assert_eq!(r.begin(&f.plan), OK);
    assert_eq!(r.0.plan_begin(0, 4).unwrap(), C::NullPointer as u32);
    assert_eq!(r.module(&f.adapter), OK);
    assert_eq!(r.begin(&other.plan), C::PlanBaseMismatch as u32);
    assert_eq!(r.0.plan_abort().unwrap(), C::InvalidState as u32);
    assert_eq!(r.begin(&f.plan), OK);
    assert_eq!(r.0.unload().unwrap(), OK);
    assert_eq!(r.begin(&f.plan), C::ModelNotLoaded as u32);
    assert_eq!(r.0.plan_abort().unwrap(), C::InvalidState as u32);
}
