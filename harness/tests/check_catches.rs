//! `check` catches an engine that disagrees: one engine that gives a different digest, fails to
//! load, differs in one token, in one step's logits, in its receipt, fails to apply the plan or
//! fails a case — as the reference or as the engine compared with it — makes the check fail
//! with a problem that names the engine and what differs; the same engine without a fault
//! passes. The engine with the fault is the native engine with one of its answers changed
//! after the runtime gave it (the comparison under test sees only the answers).

mod common;

use harness::adapter::fixtures::read_all;
use harness::adapter::PlanFiles;
use harness::check::{check, render, CheckReport};
use harness::engine::native::NativeEngine;
use harness::engine::{Engine, EngineError, GenRequest, GenResult, ModelInfo};
use harness::fixtures::corpus_dir;
use runtime::generate::session::PlanRequirement;

/// The case whose answer a generation fault changes (a sampled one, not the first).
const CASE: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    Digest,
    LoadFails,
    Token,
    StepLogits,
    Receipt,
    ApplyFails,
    CaseFails,
}

struct Faulty {
    inner: NativeEngine,
    fault: Fault,
    generations: usize,
}

fn fail(message: &str) -> EngineError {
    EngineError {
        code: runtime::ErrorCode::InvalidSettings as u32,
        message: message.into(),
    }
}

impl Engine for Faulty {
    fn name(&self) -> String {
        "faulty".into()
    }
    fn load(&mut self, bytes: &[u8]) -> Result<ModelInfo, EngineError> {
        let mut info = self.inner.load(bytes)?;
        match self.fault {
            Fault::Digest => info.digest.replace_range(0..1, "x"),
            Fault::LoadFails => return Err(fail("injected load failure")),
            _ => {}
        }
        Ok(info)
    }
    fn generate(&mut self, req: &GenRequest) -> Result<GenResult, EngineError> {
        let i = self.generations;
        self.generations += 1;
        let mut r = self.inner.generate(req)?;
        if i == CASE {
            match self.fault {
                Fault::Token => r.tokens[1] ^= 1,
                Fault::StepLogits => r.step_digests[2].replace_range(0..1, "x"),
                Fault::CaseFails => return Err(fail("injected case failure")),
                _ => {}
            }
        }
        Ok(r)
    }
    fn apply_plan(&mut self, plan: &[u8], modules: &[&[u8]]) -> Result<Vec<u8>, EngineError> {
        let mut receipt = self.inner.apply_plan(plan, modules)?;
        match self.fault {
            Fault::Receipt => *receipt.last_mut().unwrap() ^= 1,
            Fault::ApplyFails => return Err(fail("injected apply failure")),
            _ => {}
        }
        Ok(receipt)
    }
    fn remove_adapters(&mut self) -> Result<(), EngineError> {
        self.inner.remove_adapters()
    }
    fn require_plan(&mut self, req: Option<PlanRequirement>) -> Result<(), EngineError> {
        self.inner.require_plan(req)
    }
}

/// Runs `check` on adapter fixture 4 (its base with its plan) with the native engine and the
/// faulty one, the faulty one first when `faulty_first`.
fn run(fault: Fault, faulty_first: bool) -> CheckReport {
    let f = &read_all(&corpus_dir()).unwrap()[4];
    let plan = PlanFiles {
        path: "fixture.plan".into(),
        plan: f.plan.clone(),
        modules: vec![f.adapter.clone()],
    };
    let faulty: Box<dyn Engine> = Box::new(Faulty {
        inner: NativeEngine::default(),
        fault,
        generations: 0,
    });
    let native: Box<dyn Engine> = Box::new(NativeEngine::default());
    let mut engines = if faulty_first {
        vec![faulty, native]
    } else {
        vec![native, faulty]
    };
    check(&f.base, &mut engines, 6, None, Some(&plan))
}

#[test]
fn the_same_answers_pass() {
    for first in [false, true] {
        let r = run(Fault::None, first);
        assert!(r.ok && r.problems.is_empty(), "{:?}", r.problems);
        let text = render(&r, "m");
        assert!(
            text.contains("receipt   identical in 2 of 2 engines"),
            "{text}"
        );
        assert!(text.contains("\nOK: "), "{text}");
    }
}

#[test]
fn every_difference_fails_the_check_and_is_named() {
    let case = harness::conformance::standard_cases(6)[CASE].name;
    let cases: [(Fault, String); 7] = [
        (Fault::Digest, "model digest".into()),
        (Fault::LoadFails, "load failed".into()),
        (Fault::Token, format!("case {case}: token 1 differs")),
        (
            Fault::StepLogits,
            format!("case {case}: logits differ first at generation step 2"),
        ),
        (
            Fault::Receipt,
            "the receipt differs from the reference's".into(),
        ),
        (Fault::ApplyFails, "applying the plan failed".into()),
        (Fault::CaseFails, format!("case {case}:")),
    ];
    for (fault, what) in cases {
        for first in [false, true] {
            let r = run(fault, first);
            assert!(!r.ok, "{fault:?} (faulty first: {first}) passed");
            // When the faulty engine is the reference, the other engine is the one that
            // differs from it, except where the fault is found on its own (load, apply, case).
            let named = r.problems.iter().any(|p| {
                p.contains(&what) && (p.starts_with("faulty:") || p.starts_with("native:"))
            });
            assert!(named, "{fault:?} (faulty first: {first}): {:?}", r.problems);
            let text = render(&r, "m");
            assert!(text.contains("\nFAILED:\n"), "{text}");
            assert!(!text.contains("\nOK: "), "{text}");
            if fault == Fault::Receipt {
                assert!(
                    text.contains("receipt   identical in 1 of 2 engines"),
                    "{text}"
                );
            }
        }
    }
}

/// A model whose context is shorter than some standard prompts: every engine refuses those
/// cases with the same code (ContextExceeded), which is the model's property, not a
/// divergence; the check passes and its table shows the code.
#[test]
fn cases_every_engine_refuses_alike_pass() {
    use common::{build_model, byte_vocab, Shape};
    let shape = Shape {
        dim: 32,
        n_layers: 1,
        n_heads: 2,
        n_kv_heads: 2,
        head_dim: 16,
        ffn_dim: 64,
        max_context: 8,
        tied: true,
    };
    let bytes = build_model(byte_vocab(vec![]), shape, runtime::format::DType::Q8_0, 3);
    let mut engines: Vec<Box<dyn Engine>> = vec![
        Box::new(NativeEngine::default()),
        Box::new(NativeEngine::default()),
    ];
    let r = check(&bytes, &mut engines, 4, None, None);
    assert!(r.ok && r.problems.is_empty(), "{:?}", r.problems);
    let refused = r.reference.iter().filter(|c| c.is_err()).count();
    assert!(refused > 0 && refused < r.reference.len(), "{refused}");
    let text = render(&r, "m");
    assert!(
        text.contains(&format!(
            "error {}",
            runtime::ErrorCode::ContextExceeded as u32
        )),
        "{text}"
    );
}
