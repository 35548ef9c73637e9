//! `tinyrustlm run --plan` and `tinyrustlm check --plan`: the plan's modules are read beside it,
//! the receipt is the runtime's, `check` applies the plan in every engine and requires identical
//! receipts and token streams, and a plan for another base fails.

use harness::adapter::fixtures::read_all;
use harness::fixtures::corpus_dir;
use std::process::{Command, Output};

fn tinyrustlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyrustlm"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs `args`, which the runtime must reject: exit 1, with `needle` in stderr.
#[track_caller]
fn rejected(args: &[&str], needle: &str) {
    let o = tinyrustlm(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
}

fn path(rel: &str) -> String {
    corpus_dir().join(rel).to_str().unwrap().to_string()
}

/// The receipt the runtime gives for fixture `i`.
fn receipt(i: usize) -> (String, String, String) {
    let f = &read_all(&corpus_dir()).unwrap()[i];
    let mut model = runtime::model::Model::load(f.base.clone()).unwrap();
    let r = runtime::adapter::apply_plan(&mut model, &f.plan, &[&f.adapter]).unwrap();
    (
        path(&format!("{}.slm", f.recipe.base)),
        path(&format!("adapters/{}.plan", f.recipe.name)),
        String::from_utf8(r.to_bytes()).unwrap(),
    )
}

#[test]
fn run_with_a_plan_prints_the_receipt_and_generates_on_the_adapted_model() {
    let (base, plan, expected) = receipt(4);
    let args = [
        "--prompt",
        "the",
        "--max-tokens",
        "12",
        "--temperature",
        "0",
    ];
    let adapted = tinyrustlm(&[&["run", &base, "--plan", &plan][..], &args].concat());
    assert!(adapted.status.success(), "{adapted:?}");
    assert!(String::from_utf8_lossy(&adapted.stderr).starts_with(&expected));
    let plain = tinyrustlm(&[&["run", &base][..], &args].concat());
    assert!(plain.status.success());
    assert_ne!(plain.stdout, adapted.stdout, "the adapter changes the text");
}

#[test]
fn check_with_a_plan_compares_receipts_in_every_engine() {
    let (base, plan, expected) = receipt(8);
    let o = tinyrustlm(&[
        "check",
        &base,
        "--plan",
        &plan,
        "--max-tokens",
        "6",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["receipt"], expected.as_str());
    let engines = report["engines"].as_array().unwrap();
    assert!(engines.len() >= 2, "native and wasmtime at least");
    for e in engines {
        assert_eq!(e["receipt"]["Ok"], expected.as_str(), "{}", e["engine"]);
    }
    let text = tinyrustlm(&["check", &base, "--plan", &plan, "--max-tokens", "2"]);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.contains(&format!(
        "receipt   identical in {} of {} engines",
        engines.len(),
        engines.len()
    )));
}

/// A plan for another base is refused (exit 1) before any module is read, as spec/adapters.md
/// orders it (plan text, base, then modules): even when its module files do not exist.
#[test]
fn a_plan_for_another_base_fails_the_check() {
    let (_, plan, _) = receipt(0);
    let other = path("byte-mha-tied-q8_0.slm");
    for cmd in ["check", "run"] {
        rejected(
            &[cmd, &other, "--plan", &plan, "--max-tokens", "2"],
            "error 43 PlanBaseMismatch",
        );
    }
    // A plan whose module is missing: still the base first.
    let dir = std::env::temp_dir().join(format!("tinyrustlm-plan-base-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lone = dir.join("lone.plan");
    let text = format!(
        "TRLM-PLAN 1\nbase {}\nmodule {} 286 absent.adapter\n",
        "a".repeat(64),
        "b".repeat(64)
    );
    std::fs::write(&lone, text).unwrap();
    for cmd in [
        vec![
            "adapter",
            "apply",
            &other,
            lone.to_str().unwrap(),
            "-o",
            dir.join("r").to_str().unwrap(),
        ],
        vec!["run", &other, "--plan", lone.to_str().unwrap()],
    ] {
        rejected(&cmd, "error 43 PlanBaseMismatch");
    }
    assert!(!dir.join("r").exists());
    // A model the runtime rejects is reported as such before anything about the plan.
    let bad = path("malformed/arch-extra-tensor.slm");
    for cmd in [
        vec!["run", &bad, "--plan", lone.to_str().unwrap()],
        vec!["check", &bad, "--plan", lone.to_str().unwrap()],
    ] {
        rejected(&cmd, "error 7 InvalidTensorDirectory");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_module_file_longer_than_the_plan_lists_is_refused_without_being_read_whole() {
    let f = &read_all(&corpus_dir()).unwrap()[4];
    let dir = std::env::temp_dir().join(format!("tinyrustlm-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("p.plan");
    std::fs::write(&plan, &f.plan).unwrap();
    let parsed = runtime::adapter::Plan::parse(&f.plan).unwrap();
    // The module the plan names, as a sparse 1 TiB file: reading it whole would fail for want
    // of memory.
    let module = dir.join(&parsed.modules[0].name);
    std::fs::File::create(&module)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let base = path(&format!("{}.slm", f.recipe.base));
    let o = tinyrustlm(&[
        "run",
        &base,
        "--plan",
        plan.to_str().unwrap(),
        "--prompt",
        "a",
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.contains("error 44 ModuleDigestMismatch"), "{err}");
}

/// Rejections by the adapter commands exit 1 and read as `verify`'s (`PATH: error CODE Name[ at
/// byte B]: text`); an adapter or a plan over its limit is reported with its true length
/// (the CLI reads only one byte past the limit), an adapter's at byte 0.
#[test]
fn adapter_command_rejections_exit_1_with_the_true_length() {
    let dir = std::env::temp_dir().join(format!("tinyrustlm-adapter-rej-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.adapter");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(runtime::limits::MAX_ADAPTER_BYTES + 1000)
        .unwrap();
    rejected(
        &["adapter", "inspect", big.to_str().unwrap()],
        "error 15 BudgetExceeded at byte 0: the adapter has 33555432 bytes",
    );
    let bad = dir.join("bad.adapter");
    std::fs::write(&bad, b"ADP1\x02\x00").unwrap();
    rejected(
        &["adapter", "inspect", bad.to_str().unwrap()],
        "bad.adapter: error 37 UnsupportedAdapterVersion at byte 4",
    );
    // A missing file cannot be read: exit 2.
    let o = tinyrustlm(&["adapter", "inspect", dir.join("none").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));

    let plan = dir.join("long.plan");
    std::fs::write(&plan, vec![b'x'; 20_000]).unwrap();
    let base = path("byte-mha-tied-f32.slm");
    let r = dir.join("r");
    rejected(
        &[
            "adapter",
            "apply",
            &base,
            plan.to_str().unwrap(),
            "-o",
            r.to_str().unwrap(),
        ],
        "error 25 LimitExceeded: the plan has 20000 bytes; the limit is 8192",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
