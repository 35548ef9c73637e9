//! `tinyrustlm check`: the conformance run for any model. Verify it; load it in every available
//! engine; run the standard prompt set; compare token streams and logits digests across engines
//! bit for bit; check the budget. A readable report (or JSON); failure on any divergence. With a
//! module plan, every engine applies it after loading and their receipts must be byte-identical.

use crate::adapter::PlanFiles;
use crate::conformance::{first_divergence, run_cases, standard_cases, Case};
use crate::engine::{Engine, EngineError, GenResult};
use crate::inspect;
use runtime::limits;
use serde::Serialize;
use std::fmt::Write as _;

/// One engine's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct EngineReport {
    pub engine: String,
    /// The model digest the engine reports, or its load error.
    pub load: Result<String, EngineError>,
    /// With a plan: the receipt the engine produced (text), or its apply error.
    pub receipt: Option<Result<String, EngineError>>,
    /// Per case: None when identical to the reference engine, else the first divergence (or the
    /// case's error).
    pub divergences: Vec<(String, Option<String>)>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub file_bytes: u64,
    pub budget_bytes: u64,
    pub verify: Result<String, EngineError>,
    pub engines: Vec<EngineReport>,
    pub cases: Vec<Case>,
    /// Reference results (the first engine's).
    pub reference: Vec<Result<GenResult, EngineError>>,
    pub wasm_module_bytes: Option<u64>,
    /// With a plan: the reference engine's receipt (text).
    pub receipt: Option<String>,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// Runs the check with `engines` (the first one is the reference), on the model with `plan`
/// applied when one is given.
pub fn check(
    bytes: &[u8],
    engines: &mut [Box<dyn Engine>],
    max_new_tokens: u32,
    wasm_module_bytes: Option<u64>,
    plan: Option<&PlanFiles>,
) -> CheckReport {
    let mut problems = Vec::new();
    let verify = inspect::verify(bytes)
        .map(|slm| runtime::sha256::to_hex(&slm.digest()))
        .map_err(EngineError::from);
    if bytes.len() as u64 > limits::MAX_MODEL_BYTES {
        problems.push(format!(
            "the file has {} bytes, over the {}-byte budget",
            bytes.len(),
            limits::MAX_MODEL_BYTES
        ));
    }
    let cases = standard_cases(max_new_tokens);
    let mut reports = Vec::new();
    let mut reference: Option<Vec<Result<GenResult, EngineError>>> = None;
    let mut reference_receipt: Option<String> = None;
    for engine in engines.iter_mut() {
        let name = engine.name();
        let mut load = engine.load(bytes).map(|info| info.digest);
        // Every engine must agree with verification: same digest, or the same error code.
        match (&verify, &load) {
            (Ok(d), Ok(e)) if d != e => {
                problems.push(format!("{name}: model digest {e} differs from {d}"))
            }
            (Ok(_), Err(e)) => problems.push(format!("{name}: load failed: {e}")),
            (Err(v), Ok(_)) => problems.push(format!(
                "{name}: accepted a file that verification rejects ({v})"
            )),
            (Err(v), Err(e)) if v.code != e.code => problems.push(format!(
                "{name}: rejected with code {} where verification gives {}",
                e.code, v.code
            )),
            _ => {}
        }
        let mut receipt = None;
        if let (Some(p), Ok(_)) = (plan, &load) {
            let r = engine
                .apply_plan(&p.plan, &p.module_refs())
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            match (&r, &reference_receipt) {
                (Err(e), _) => problems.push(format!("{name}: applying the plan failed: {e}")),
                (Ok(t), None) => reference_receipt = Some(t.clone()),
                (Ok(t), Some(first)) if t != first => {
                    problems.push(format!("{name}: the receipt differs from the reference's"))
                }
                _ => {}
            }
            if let Err(e) = &r {
                // The cases would run on the base model: skip them.
                load = Err(e.clone());
            }
            receipt = Some(r);
        }
        let mut divergences = Vec::new();
        if load.is_ok() {
            let results = run_cases(engine.as_mut(), &cases);
            match &reference {
                None => {
                    // A case the reference refuses (a prompt longer than the model's context,
                    // say) is a property of the model, not a divergence: it passes when every
                    // engine refuses it with the same code (compared below). A model that runs
                    // no case at all fails: nothing was compared.
                    let refused = results.iter().filter(|r| r.is_err()).count();
                    if !cases.is_empty() && refused == cases.len() {
                        let first = results.iter().find_map(|r| r.as_ref().err());
                        problems.push(format!(
                            "{name}: every case was refused{}",
                            first
                                .map(|e| format!(" (the first: {e})"))
                                .unwrap_or_default()
                        ));
                    }
                    reference = Some(results);
                }
                Some(reference) => {
                    for ((case, r), base) in cases.iter().zip(&results).zip(reference) {
                        let d = match (base, r) {
                            (Ok(a), Ok(b)) => first_divergence(a, b),
                            (Err(a), Err(b)) if a.code == b.code => None,
                            (a, b) => Some(format!(
                                "outcome differs: {:?} vs {:?}",
                                a.as_ref().map(|_| "ok").map_err(|e| e.code),
                                b.as_ref().map(|_| "ok").map_err(|e| e.code)
                            )),
                        };
                        if let Some(d) = &d {
                            problems.push(format!("{name}: case {}: {d}", case.name));
                        }
                        divergences.push((case.name.to_string(), d));
                    }
                }
            }
        }
        reports.push(EngineReport {
            engine: name,
            load,
            receipt,
            divergences,
        });
    }
    let ok = problems.is_empty() && verify.is_ok();
    CheckReport {
        file_bytes: bytes.len() as u64,
        budget_bytes: limits::MAX_MODEL_BYTES,
        verify,
        engines: reports,
        cases,
        reference: reference.unwrap_or_default(),
        wasm_module_bytes,
        receipt: reference_receipt,
        ok,
        problems,
    }
}

/// The readable report.
pub fn render(r: &CheckReport, name: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "model     {name}");
    let _ = writeln!(
        s,
        "bytes     {} of the {} budget ({} left)",
        r.file_bytes,
        r.budget_bytes,
        r.budget_bytes.saturating_sub(r.file_bytes)
    );
    match &r.verify {
        Ok(d) => {
            let _ = writeln!(s, "verify    ok, file digest {d}");
        }
        Err(e) => {
            let _ = writeln!(s, "verify    REJECTED: {e}");
        }
    }
    if let Some(b) = r.wasm_module_bytes {
        let _ = writeln!(
            s,
            "wasm      module {} bytes ({:.1} KiB)",
            b,
            b as f64 / 1024.0
        );
    }
    let names: Vec<&str> = r.engines.iter().map(|e| e.engine.as_str()).collect();
    let _ = writeln!(s, "engines   {}", names.join(", "));
    for e in &r.engines {
        match &e.load {
            Ok(_) => {}
            Err(err) => {
                let _ = writeln!(s, "  {:<9} load: {err}", e.engine);
            }
        }
    }
    if let Some(receipt) = &r.receipt {
        let same = r
            .engines
            .iter()
            .filter(|e| matches!(&e.receipt, Some(Ok(t)) if t == receipt))
            .count();
        let _ = writeln!(
            s,
            "receipt   identical in {same} of {} engines:",
            r.engines.len()
        );
        for line in receipt.lines() {
            let _ = writeln!(s, "  {line}");
        }
    }
    if !r.reference.is_empty() {
        let _ = writeln!(
            s,
            "\n{:<28} {:>6} {:<18} {}",
            "case",
            "tokens",
            "logits digest",
            names
                .iter()
                .skip(1)
                .map(|n| format!("{n:<w$}", w = mark_width(n)))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for (i, (case, res)) in r.cases.iter().zip(&r.reference).enumerate() {
            let (tokens, digest) = match res {
                Ok(g) => (
                    g.tokens.len().to_string(),
                    g.logits_digest[..16].to_string(),
                ),
                Err(e) => ("-".into(), format!("error {}", e.code)),
            };
            let marks: Vec<String> = r
                .engines
                .iter()
                .skip(1)
                .map(|e| {
                    let mark = match e.divergences.get(i) {
                        Some((_, None)) => "same",
                        Some((_, Some(_))) => "DIFFERS",
                        None => "-",
                    };
                    format!("{mark:<w$}", w = mark_width(&e.engine))
                })
                .collect();
            let _ = writeln!(
                s,
                "{:<28} {:>6} {:<18} {}",
                case.name,
                tokens,
                digest,
                marks.join(" ")
            );
        }
    }
    if let (Err(e), true) = (&r.verify, r.problems.is_empty()) {
        let _ = writeln!(s, "\nREJECTED by every engine with the same code: {e}");
    } else if r.problems.is_empty() && r.ok && r.engines.len() < 2 {
        let _ = writeln!(
            s,
            "\nOK: {} cases ran on one engine; nothing was compared across engines (give two or more with --engine)",
            r.cases.len()
        );
    } else if r.problems.is_empty() && r.ok {
        let _ = writeln!(
            s,
            "\nOK: {} cases, {} engines, token streams and logits digests bit-identical",
            r.cases.len(),
            r.engines.len()
        );
    } else {
        let _ = writeln!(s, "\nFAILED:");
        for p in &r.problems {
            let _ = writeln!(s, "  {p}");
        }
    }
    s
}

/// The width of an engine's column in the case table: its name, or the widest mark.
fn mark_width(engine: &str) -> usize {
    engine.len().max("DIFFERS".len())
}
