//! The visible adapter (harness::adapter::example; README, A visible adapter): on the f32 and
//! q8_0 conversions of stories260K, greedy stories before and after the Lily → Tim plan is applied
//! through `Session::apply_plan` are snapshotted (golden/adapter-example-*.snap), the heroine's
//! name changes in the text and nothing else does, removal restores the base story, and the CLI
//! (`adapter example`, then `adapter apply`) writes the same adapter, plan and receipt.
//!
//! Everything converted from the reference checkpoint is built at test time in memory or in a
//! temporary directory; the test skips when ../shared is absent. Native engine only: the ABI has
//! no plan exports yet.

mod common;

use common::{greedy, shared_file};
use harness::adapter::example::{self, Example, ADAPTER_FILE, PLAN_FILE};
use runtime::adapter::prepare_plan;
use runtime::format::{self, DType};
use runtime::generate::{Session, Step};
use runtime::model::Model;

/// The prompts: the empty one (llama2.c's default run) and a story opening.
const PROMPTS: [&str; 2] = ["", "Once upon a time"];
const MAX_NEW: u32 = 200;

fn convert(dtype: DType) -> Option<Vec<u8>> {
    let bin = shared_file("models/stories260K/stories260K.bin")?;
    let tok = shared_file("models/stories260K/tok512.bin")?;
    let c = harness::llama2c::convert(&bin, &tok, dtype, "stories260K.bin").expect("converts");
    Some(format::write(&c.model).expect("writes"))
}

/// Greedy generation of [`MAX_NEW`] tokens: ids and text.
fn story(s: &mut Session, prompt: &str) -> (Vec<u32>, String) {
    s.start(prompt.as_bytes(), greedy(MAX_NEW)).expect("starts");
    while let Step::Token { .. } = s.step().expect("steps") {}
    let text = String::from_utf8(s.text().to_vec()).expect("UTF-8 text");
    (s.generated_tokens().to_vec(), text)
}

/// Counts whole-word occurrences of `name` (followed by a non-letter or the end).
fn mentions(text: &str, name: &str) -> usize {
    text.match_indices(name)
        .filter(|(i, _)| {
            let before = text[..*i].chars().next_back();
            let after = text[i + name.len()..].chars().next();
            !before.is_some_and(char::is_alphabetic) && !after.is_some_and(char::is_alphabetic)
        })
        .count()
}

/// Builds the example for `base`, generates before and after, checks the change and snapshots
/// both texts.
fn check(dtype: DType) {
    let Some(base) = convert(dtype) else { return };
    let ex = example::build(&base).expect("builds");
    assert_eq!(ex, example::build(&base).expect("builds"), "deterministic");
    let model = Model::load(base).expect("loads");
    assert_rows_exchanged(&model, &ex);
    let mut s = Session::new(model, 0).unwrap();
    let before: Vec<_> = PROMPTS.iter().map(|p| story(&mut s, p)).collect();
    let receipt = s
        .apply_plan(&ex.plan, &[&ex.adapter])
        .expect("the plan applies")
        .to_bytes();
    assert_eq!(s.diagnostics().adapter_modules, 1);
    let after: Vec<_> = PROMPTS.iter().map(|p| story(&mut s, p)).collect();
    let name = dtype.name();
    for (p, ((ids0, text0), (ids1, text1))) in PROMPTS.iter().zip(before.iter().zip(&after)) {
        println!("{name} {p:?}\n  before: {text0:?}\n  after:  {text1:?}");
        assert!(mentions(text0, "Lily") >= 2, "{name} {p:?}: {text0:?}");
        assert_eq!(mentions(text0, "Tim"), 0, "{name} {p:?}: {text0:?}");
        assert_eq!(mentions(text1, "Lily"), 0, "{name} {p:?}: {text1:?}");
        assert_eq!(
            mentions(text1, "Tim"),
            mentions(text0, "Lily"),
            "{name} {p:?}"
        );
        // The swap only relabels: the same story, token for token, with the two names exchanged.
        let relabelled: Vec<u32> = ids0.iter().map(|&t| ex.relabel(t)).collect();
        assert_eq!(ids1, &relabelled, "{name} {p:?}");
        assert_eq!(text1, &text0.replace("Lily", "Tim"), "{name} {p:?}");
    }
    // Applying again replays the receipt; removing restores the base story.
    let again = s.apply_plan(&ex.plan, &[&ex.adapter]).unwrap().to_bytes();
    assert_eq!(receipt, again);
    s.remove_adapters().unwrap();
    assert_eq!(story(&mut s, PROMPTS[0]), before[0]);

    let cases: Vec<_> = PROMPTS
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(p, ((_, b), (_, a)))| serde_json::json!({"prompt": p, "before": b, "after": a}))
        .collect();
    let snapshot = serde_json::json!({
        "adapter": ex.describe(),
        "receipt": String::from_utf8(receipt).unwrap(),
        "greedy_200": cases,
    });
    insta::with_settings!({
        snapshot_path => "../../golden",
        prepend_module_to_snapshot => false,
        snapshot_suffix => "",
        omit_expression => true,
    }, {
        insta::assert_json_snapshot!(format!("adapter-example-stories260K-{name}"), snapshot);
    });
}

/// The assembled embedding is the base's with the rows of each pair exchanged: byte for byte on
/// q8_0 (each row's re-quantized blocks are its partner's blocks); on f32 up to the rounding of
/// `own + (partner − own)`, at most ε·(|own| + |partner|) per element.
fn assert_rows_exchanged(model: &Model, ex: &Example) {
    let prepared = prepare_plan(model, &ex.plan, &[&ex.adapter]).expect("prepares");
    let [(i, bytes)] = &prepared.assembly.tensors[..] else {
        panic!("one tensor is assembled (the tied embedding)");
    };
    let loc = &model.tensors[*i].loc;
    assert_eq!(loc.offset, model.embedding.offset);
    let base = &*model.base_payload(loc).unwrap();
    let row = base.len() / loc.rows;
    let mut expected = base.to_vec();
    for &(a, b) in &ex.swaps {
        let (a, b) = (a as usize * row, b as usize * row);
        expected[a..a + row].copy_from_slice(&base[b..b + row]);
        expected[b..b + row].copy_from_slice(&base[a..a + row]);
    }
    if loc.dtype != DType::F32 {
        assert!(bytes == &expected, "the assembly is an exact row exchange");
        return;
    }
    let f = |b: &[u8], k: usize| f32::from_le_bytes(b[4 * k..4 * k + 4].try_into().unwrap());
    let mut inexact = 0;
    for k in 0..base.len() / 4 {
        let (own, partner, got) = (f(base, k), f(&expected, k), f(bytes, k));
        assert!(
            (got - partner).abs() <= f32::EPSILON * (own.abs() + partner.abs()),
            "element {k}: {got} for {partner}"
        );
        inexact += usize::from(got != partner);
    }
    println!("f32: {inexact} swapped elements carry the rounding of one addition");
}

#[test]
fn lily_becomes_tim_on_f32() {
    check(DType::F32);
}

#[test]
fn lily_becomes_tim_on_q8_0() {
    check(DType::Q8_0);
}

/// `adapter example` writes the adapter and plan `build` makes; `adapter apply` finds the module
/// next to the plan and writes the receipt the session API returns.
#[test]
fn cli_writes_the_example_and_applies_it() {
    let Some(base) = convert(DType::F32) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("trlm-adapter-example-{}", std::process::id()));
    let out = dir.join("example");
    std::fs::create_dir_all(&dir).unwrap();
    let base_path = dir.join("s.slm");
    std::fs::write(&base_path, &base).unwrap();
    let bin = env!("CARGO_BIN_EXE_tinyrustlm");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let printed = run(&[
        "adapter".as_ref(),
        "example".as_ref(),
        base_path.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    let ex = example::build(&base).unwrap();
    assert!(printed.starts_with(&ex.describe()), "{printed}");
    assert_eq!(std::fs::read(out.join(ADAPTER_FILE)).unwrap(), ex.adapter);
    assert_eq!(std::fs::read(out.join(PLAN_FILE)).unwrap(), ex.plan);
    let receipt_path = dir.join("receipt");
    run(&[
        "adapter".as_ref(),
        "apply".as_ref(),
        base_path.as_os_str(),
        out.join(PLAN_FILE).as_os_str(),
        "-o".as_ref(),
        receipt_path.as_os_str(),
    ]);
    let mut s = Session::new(Model::load(base).unwrap(), 0).unwrap();
    let receipt = s.apply_plan(&ex.plan, &[&ex.adapter]).unwrap().to_bytes();
    assert_eq!(std::fs::read(&receipt_path).unwrap(), receipt);
    std::fs::remove_dir_all(&dir).unwrap();
}
