//! Adapters (spec/adapters.md): one malformed adapter, plan or registry per rejection rule with
//! its exact code; apply → remove restores the base bit for bit; the same plan gives the same
//! receipt bytes; every kind changes the output of f32, q8_0 and q4_0 fixtures deterministically;
//! the session gate; `adapter diff|inspect|apply`; proptests that the readers never panic.

mod common;

use harness::adapter::diff::{diff, factor};
use harness::adapter::registry::{self, Registry, RegistryErrorKind as RK};
use harness::fixtures::{self, SplitMix64};
use proptest::prelude::*;
use runtime::adapter::format::file_digest;
use runtime::adapter::write::{seal, write, Delta, RecordData};
use runtime::adapter::{
    apply_plan, prepare_plan, Adapter, AdapterKind, BaseBinding, Plan, PlanModule, Receipt,
};
use runtime::format::{self, DType};
use runtime::generate::sampler::SamplerSettings;
use runtime::generate::session::{PlanRequirement, Session};
use runtime::limits;
use runtime::model::Model;
use runtime::sha256::sha256;
use runtime::ErrorCode as C;

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(fixtures::corpus_dir().join(format!("{name}.slm"))).unwrap()
}

fn model(name: &str) -> Model {
    Model::load(corpus(name)).unwrap()
}

const F32: &str = "byte-mha-tied-f32";
const Q8: &str = "byte-mha-tied-q8_0";
const Q4: &str = "byte-mha-tied-q4_0";

/// Where tensor `name` of `m` lies.
fn loc(m: &Model, name: &str) -> runtime::model::weights::TensorLoc {
    m.tensors.iter().find(|t| t.name == name).unwrap().loc
}

/// Little-endian f32 payload bytes as values.
fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn small(seed: u64, n: usize, amp: f32) -> Vec<f32> {
    let mut r = SplitMix64(seed);
    (0..n).map(|_| amp * r.next_signed()).collect()
}

/// A valid adapter of `kind` for `m`, touching blk.0.attn_q (32×32) and blk.1.ffn_up (64×32).
fn adapter_for(m: &Model, kind: AdapterKind, seed: u64) -> Vec<u8> {
    let recs = [
        ("blk.0.attn_q.weight", 32u32, 32u32),
        ("blk.1.ffn_up.weight", 64, 32),
    ]
    .iter()
    .enumerate()
    .map(|(k, &(name, rows, cols))| {
        let n = (rows * cols) as usize;
        let s = seed * 10 + k as u64;
        let delta = match kind {
            AdapterKind::Dense => Delta::Dense(small(s, n, 0.2)),
            AdapterKind::Sparse => Delta::Sparse {
                indices: (0..n as u32).step_by(37).collect(),
                deltas: small(s, n.div_ceil(37), 0.5),
            },
            AdapterKind::LowRank => Delta::LowRank {
                rank: 2,
                scale: 0.5,
                a: small(s, 2 * cols as usize, 0.6),
                b: small(s + 5, 2 * rows as usize, 0.6),
            },
        };
        RecordData {
            name: name.into(),
            shape: vec![rows, cols],
            delta,
        }
    })
    .collect::<Vec<_>>();
    write(kind, &m.binding, &recs).unwrap()
}

fn one_record(
    kind: AdapterKind,
    binding: &BaseBinding,
    name: &str,
    shape: &[u32],
    delta: Delta,
) -> Vec<u8> {
    assert_eq!(delta.kind(), kind);
    write(
        kind,
        binding,
        &[RecordData {
            name: name.into(),
            shape: shape.to_vec(),
            delta,
        }],
    )
    .unwrap()
}

fn plan_for(m: &Model, modules: &[&[u8]]) -> Vec<u8> {
    let ms: Vec<PlanModule> = modules
        .iter()
        .enumerate()
        .map(|(i, b)| PlanModule {
            digest: file_digest(b),
            bytes: b.len() as u64,
            name: format!("m{i}.adapter"),
        })
        .collect();
    Plan::to_bytes(&m.digest, &ms)
}

fn greedy() -> SamplerSettings {
    SamplerSettings {
        temperature: 0.0,
        top_k: None,
        top_p: 1.0,
        seed: 7,
        max_new_tokens: 6,
    }
}

/// Digest of every logit of a short greedy generation, and the tokens.
fn run(s: &mut Session) -> ([u8; 32], Vec<u32>) {
    s.start(b"once upon", greedy()).unwrap();
    while let runtime::generate::Step::Token { .. } = s.step().unwrap() {}
    (s.diagnostics().logits_digest, s.generated_tokens().to_vec())
}

fn code(bytes: &[u8]) -> C {
    Adapter::parse(bytes).unwrap_err().code
}

/// Overwrites bytes at `at`, then recomputes the file digest.
fn patched(bytes: &[u8], at: usize, with: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at..at + with.len()].copy_from_slice(with);
    seal(&mut b);
    b
}

fn dense_valid() -> (Model, Vec<u8>) {
    let m = model(F32);
    let a = adapter_for(&m, AdapterKind::Dense, 1);
    (m, a)
}

#[test]
fn valid_adapters_read_back() {
    let m = model(F32);
    for kind in AdapterKind::ALL {
        let bytes = adapter_for(&m, kind, 3);
        let a = Adapter::parse(&bytes).unwrap();
        assert_eq!(a.kind, kind);
        assert_eq!(a.binding, m.binding);
        assert_eq!(a.records.len(), 2);
        assert_eq!(a.digest, file_digest(&bytes));
        assert_eq!(a.records[0].name, "blk.0.attn_q.weight");
    }
}

#[test]
fn header_rules() {
    let (_, a) = dense_valid();
    let mut big = a.clone();
    big.resize(limits::MAX_ADAPTER_BYTES as usize + 1, 0);
    assert_eq!(code(&big), C::BudgetExceeded);
    assert_eq!(code(b"GGUF and more"), C::InvalidAdapterMagic);
    assert_eq!(code(b""), C::Truncated);
    assert_eq!(code(b"AL"), C::Truncated);
    assert_eq!(code(b"\x89SLM\r\n\x1a\n"), C::InvalidAdapterMagic);
    assert_eq!(
        code(&patched(&a, 4, &2u16.to_le_bytes())),
        C::UnsupportedAdapterVersion
    );
    assert_eq!(
        code(&patched(&a, 6, &1u16.to_le_bytes())),
        C::UnsupportedAdapterVersion
    );
    assert_eq!(code(&a[..100]), C::Truncated);
    assert_eq!(code(&a[..7]), C::Truncated);
    assert_eq!(
        code(&patched(&a, 8, &64u32.to_le_bytes())),
        C::InvalidAdapter
    );
    assert_eq!(
        code(&patched(&a, 12, &1u32.to_le_bytes())),
        C::ReservedNonZero
    );
    let len = a.len() as u64;
    assert_eq!(
        code(&patched(&a, 16, &(len + 1).to_le_bytes())),
        C::Truncated
    );
    let e = Adapter::parse(&patched(&a, 16, &(len - 1).to_le_bytes())).unwrap_err();
    assert_eq!((e.code, e.offset), (C::TrailingBytes, Some(len - 1)));
    assert_eq!(
        code(&patched(&a, 88, &0u32.to_le_bytes())),
        C::InvalidAdapter
    );
    assert_eq!(
        code(&patched(
            &a,
            88,
            &(limits::MAX_ADAPTER_TENSORS + 1).to_le_bytes()
        )),
        C::LimitExceeded
    );
    assert_eq!(code(&patched(&a, 92, &[1])), C::ReservedNonZero);
    // A digest that does not match the bytes.
    let mut d = a.clone();
    d[96] ^= 1;
    let e = Adapter::parse(&d).unwrap_err();
    assert_eq!((e.code, e.offset), (C::FileDigestMismatch, Some(96)));
    // A flipped delta byte (structure intact) is caught by the digest too.
    let mut d = a.clone();
    let last = d.len() - 1;
    d[last] ^= 0x01;
    assert_eq!(code(&d), C::FileDigestMismatch);
}

#[test]
fn record_count_and_trailing_bytes() {
    let (_, a) = dense_valid();
    // The header says 3 records; only 2 follow.
    assert_eq!(code(&patched(&a, 88, &3u32.to_le_bytes())), C::Truncated);
    // Bytes after the last record, with file_bytes covering them.
    let mut t = a.clone();
    t.extend_from_slice(&[0; 4]);
    let n = t.len() as u64;
    let t = patched(&t, 16, &n.to_le_bytes());
    let e = Adapter::parse(&t).unwrap_err();
    assert_eq!((e.code, e.offset), (C::TrailingBytes, Some(a.len() as u64)));
    // A dense array cut short (file_bytes adjusted).
    let cut = &a[..a.len() - 8];
    let t = patched(cut, 16, &(cut.len() as u64).to_le_bytes());
    assert_eq!(code(&t), C::Truncated);
}

#[test]
fn record_rules() {
    let m = model(F32);
    let b = &m.binding;
    let dense = |name: &str, shape: &[u32]| {
        let n: u32 = shape.iter().product();
        one_record(
            AdapterKind::Dense,
            b,
            name,
            shape,
            Delta::Dense(vec![0.01; n as usize]),
        )
    };
    let ok = dense("output_norm.weight", &[32]);
    Adapter::parse(&ok).unwrap();
    // Name syntax.
    assert_eq!(code(&dense("bad name", &[32])), C::InvalidAdapter);
    assert_eq!(code(&dense("", &[32])), C::InvalidAdapter);
    // A name the file cannot hold is Truncated at the name before the name's rules apply; a
    // name over 96 bytes that it holds is InvalidAdapter.
    let e = Adapter::parse(&patched(&ok, 128, &200u16.to_le_bytes())).unwrap_err();
    assert_eq!((e.code, e.offset), (C::Truncated, Some(130)));
    let long = one_record(
        AdapterKind::Dense,
        b,
        &"n".repeat(97),
        &[300],
        Delta::Dense(vec![0.0; 300]),
    );
    assert_eq!(code(&long), C::InvalidAdapter);
    // Rank 0 (patch the rank byte at 128 + 2 + 18) and rank 5.
    assert_eq!(code(&patched(&ok, 148, &[0])), C::InvalidAdapter);
    assert_eq!(code(&patched(&ok, 148, &[5])), C::InvalidAdapter);
    assert_eq!(code(&patched(&ok, 149, &[1])), C::ReservedNonZero);
    assert_eq!(code(&dense("output_norm.weight", &[0])), C::InvalidAdapter);
    // Dims whose element count overflows u64.
    let huge = one_record(
        AdapterKind::Dense,
        b,
        "x",
        &[u32::MAX; 3],
        Delta::Dense(vec![]),
    );
    assert_eq!(code(&huge), C::InvalidAdapter);
    // Non-finite dense values.
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut v = vec![0.0; 32];
        v[5] = bad;
        let a = one_record(
            AdapterKind::Dense,
            b,
            "output_norm.weight",
            &[32],
            Delta::Dense(v),
        );
        let e = Adapter::parse(&a).unwrap_err();
        assert_eq!(
            (e.code, e.offset),
            (C::NonFiniteValue, Some(128 + 2 + 18 + 2 + 4 + 20))
        );
    }
    // Duplicate and descending names.
    let two = |n0: &str, n1: &str| {
        let r = |n: &str| RecordData {
            name: n.into(),
            shape: vec![32],
            delta: Delta::Dense(vec![0.0; 32]),
        };
        write(AdapterKind::Dense, b, &[r(n0), r(n1)]).unwrap()
    };
    Adapter::parse(&two("blk.0.attn_norm.weight", "blk.0.ffn_norm.weight")).unwrap();
    assert_eq!(
        code(&two("blk.0.attn_norm.weight", "blk.0.attn_norm.weight")),
        C::DuplicateName
    );
    assert_eq!(
        code(&two("blk.0.ffn_norm.weight", "blk.0.attn_norm.weight")),
        C::InvalidAdapter
    );
}

#[test]
fn sparse_rules() {
    let m = model(F32);
    let b = &m.binding;
    let sp = |indices: Vec<u32>, deltas: Vec<f32>| {
        one_record(
            AdapterKind::Sparse,
            b,
            "output_norm.weight",
            &[32],
            Delta::Sparse { indices, deltas },
        )
    };
    Adapter::parse(&sp(vec![0, 5, 31], vec![0.1, 0.2, 0.3])).unwrap();
    assert_eq!(code(&sp(vec![], vec![])), C::InvalidAdapter);
    assert_eq!(
        code(&sp((0..33).collect(), vec![0.0; 33])),
        C::InvalidAdapter
    );
    let e = Adapter::parse(&sp(vec![0, 32], vec![0.1, 0.2])).unwrap_err();
    assert_eq!(
        (e.code, e.offset),
        (C::SparseIndexOutOfRange, Some(128 + 22 + 4 + 4 + 4))
    );
    assert_eq!(code(&sp(vec![5, 3], vec![0.1, 0.2])), C::SparseIndexOrder);
    assert_eq!(code(&sp(vec![3, 3], vec![0.1, 0.2])), C::SparseIndexOrder);
    assert_eq!(
        code(&sp(vec![3, 4], vec![0.1, f32::NAN])),
        C::NonFiniteValue
    );
    // nnz larger than the arrays that follow.
    let a = sp(vec![1, 2], vec![0.1, 0.2]);
    assert_eq!(
        code(&patched(&a, 128 + 22 + 4, &3u32.to_le_bytes())),
        C::Truncated
    );
    // Both arrays are taken before any index is checked: with nnz 3, the index array holds an
    // index out of range (32) and the delta array is cut short, which is reported.
    let a = sp(vec![0, 32], vec![0.1, 0.2]);
    let e = Adapter::parse(&patched(&a, 128 + 22 + 4, &3u32.to_le_bytes())).unwrap_err();
    assert_eq!((e.code, e.offset), (C::Truncated, Some(128 + 22 + 8 + 12)));
}

#[test]
fn low_rank_rules() {
    let m = model(F32);
    let b = &m.binding;
    let lr = |rank: u32, scale: f32, a: Vec<f32>, bb: Vec<f32>| {
        one_record(
            AdapterKind::LowRank,
            b,
            "blk.0.attn_q.weight",
            &[32, 32],
            Delta::LowRank {
                rank,
                scale,
                a,
                b: bb,
            },
        )
    };
    Adapter::parse(&lr(1, 1.0, vec![0.1; 32], vec![0.1; 32])).unwrap();
    assert_eq!(code(&lr(0, 1.0, vec![], vec![])), C::InvalidAdapter);
    assert_eq!(
        code(&lr(limits::MAX_ADAPTER_RANK + 1, 1.0, vec![], vec![])),
        C::LimitExceeded
    );
    assert_eq!(
        code(&lr(1, f32::NAN, vec![0.1; 32], vec![0.1; 32])),
        C::NonFiniteValue
    );
    let mut a = vec![0.1; 32];
    a[3] = f32::INFINITY;
    assert_eq!(code(&lr(1, 1.0, a, vec![0.1; 32])), C::NonFiniteValue);
    // B one value short, also when A holds an infinity (both are taken before A is checked).
    assert_eq!(
        code(&lr(1, 1.0, vec![0.1; 32], vec![0.1; 31])),
        C::Truncated
    );
    let mut a = vec![0.1; 32];
    a[0] = f32::INFINITY;
    assert_eq!(code(&lr(1, 1.0, a, vec![0.1; 31])), C::Truncated);
}

#[test]
fn binding_and_shape_rules() {
    let f32m = model(F32);
    let q8 = model(Q8);
    let a = adapter_for(&f32m, AdapterKind::Dense, 1);
    // Bound to the f32 model: the q8_0 sibling has another layout (dtypes differ).
    let plan = plan_for(&q8, &[&a]);
    let e = prepare_plan(&q8, &plan, &[&a]).unwrap_err();
    assert_eq!((e.code, e.offset), (C::AdapterBaseMismatch, Some(24)));
    // Same layout, another tokenizer.
    let other_tok = BaseBinding {
        layout: f32m.binding.layout,
        tokenizer: sha256(b"another tokenizer"),
    };
    let t = one_record(
        AdapterKind::Dense,
        &other_tok,
        "output_norm.weight",
        &[32],
        Delta::Dense(vec![0.0; 32]),
    );
    let e = prepare_plan(&f32m, &plan_for(&f32m, &[&t]), &[&t]).unwrap_err();
    assert_eq!((e.code, e.offset), (C::AdapterBaseMismatch, Some(56)));
    // A tensor the base lacks, and a wrong shape.
    let b = &f32m.binding;
    let x = one_record(
        AdapterKind::Dense,
        b,
        "output.weight",
        &[32],
        Delta::Dense(vec![0.0; 32]),
    );
    let e = prepare_plan(&f32m, &plan_for(&f32m, &[&x]), &[&x]).unwrap_err();
    assert_eq!(e.code, C::MissingTensor);
    let s = one_record(
        AdapterKind::Dense,
        b,
        "blk.0.attn_q.weight",
        &[32, 16],
        Delta::Dense(vec![0.0; 512]),
    );
    let e = prepare_plan(&f32m, &plan_for(&f32m, &[&s]), &[&s]).unwrap_err();
    assert_eq!(e.code, C::ShapeMismatch);
    let s = one_record(
        AdapterKind::Dense,
        b,
        "blk.0.attn_q.weight",
        &[1024],
        Delta::Dense(vec![0.0; 1024]),
    );
    let e = prepare_plan(&f32m, &plan_for(&f32m, &[&s]), &[&s]).unwrap_err();
    assert_eq!(e.code, C::ShapeMismatch);
}

#[test]
fn assembled_values_must_be_finite_and_fit() {
    let m = model(F32);
    let big = one_record(
        AdapterKind::Dense,
        &m.binding,
        "output_norm.weight",
        &[32],
        Delta::Dense(vec![3e38; 32]),
    );
    let e = prepare_plan(&m, &plan_for(&m, &[&big, &big]), &[&big, &big]).unwrap_err();
    assert_eq!(e.code, C::NonFiniteValue);
    let f16 = model("byte-mha-tied-f16");
    let over = one_record(
        AdapterKind::Sparse,
        &f16.binding,
        "blk.0.attn_q.weight",
        &[32, 32],
        Delta::Sparse {
            indices: vec![7],
            deltas: vec![70000.0],
        },
    );
    let e = prepare_plan(&f16, &plan_for(&f16, &[&over]), &[&over]).unwrap_err();
    assert_eq!(e.code, C::NonFiniteValue);
    let q8 = model(Q8);
    let over = one_record(
        AdapterKind::Sparse,
        &q8.binding,
        "blk.0.attn_q.weight",
        &[32, 32],
        Delta::Sparse {
            indices: vec![7],
            deltas: vec![1e7],
        },
    );
    let e = prepare_plan(&q8, &plan_for(&q8, &[&over]), &[&over]).unwrap_err();
    assert_eq!(e.code, C::NonFiniteValue);
}

#[test]
fn plan_rules() {
    let m = model(F32);
    let a = adapter_for(&m, AdapterKind::Sparse, 2);
    let plan = plan_for(&m, &[&a]);
    let p = Plan::parse(&plan).unwrap();
    assert_eq!(p.base, m.digest);
    assert_eq!(p.digest, sha256(&plan));
    assert_eq!(p.modules[0].name, "m0.adapter");
    let text = String::from_utf8(plan.clone()).unwrap();
    let bad = |t: &str| Plan::parse(t.as_bytes()).unwrap_err().code;
    assert_eq!(
        bad(&text.replace("TRLM-PLAN 1", "TRLM-PLAN 2")),
        C::InvalidPlan
    );
    assert_eq!(bad(&text.replace('\n', "\r\n")), C::InvalidPlan);
    assert_eq!(bad(text.trim_end()), C::InvalidPlan);
    let hex = runtime::sha256::to_hex(&m.digest);
    assert_eq!(
        bad(&text.replacen(&hex, &hex.to_uppercase(), 1)),
        C::InvalidPlan
    );
    assert_eq!(bad(&text.replace("m0.adapter", "../m0")), C::InvalidPlan);
    assert_eq!(bad(&text.replace("m0.adapter", ".hidden")), C::InvalidPlan);
    assert_eq!(
        bad(&text.replace(&format!(" {} ", a.len()), &format!(" 0{} ", a.len()))),
        C::InvalidPlan
    );
    assert_eq!(
        bad(&text.replace(&format!(" {} ", a.len()), " 12 ")),
        C::InvalidPlan
    );
    assert_eq!(bad(&text.replace("module ", "module  ")), C::InvalidPlan);
    assert_eq!(bad(&format!("{text}\n")), C::InvalidPlan);
    assert_eq!(bad("TRLM-PLAN 1\n"), C::InvalidPlan);
    let line = text.lines().nth(2).unwrap();
    let many = format!(
        "{text}{}",
        format!("{line}\n").repeat(limits::MAX_PLAN_MODULES)
    );
    assert_eq!(bad(&many), C::LimitExceeded);
    assert_eq!(
        Plan::parse(&vec![b'a'; limits::MAX_PLAN_BYTES + 1])
            .unwrap_err()
            .code,
        C::LimitExceeded
    );
    // Against the model and modules.
    let q8 = model(Q8);
    assert_eq!(
        prepare_plan(&q8, &plan, &[&a]).unwrap_err().code,
        C::PlanBaseMismatch
    );
    assert_eq!(
        prepare_plan(&m, &plan, &[]).unwrap_err().code,
        C::ModuleDigestMismatch
    );
    let other = adapter_for(&m, AdapterKind::Sparse, 3);
    assert_eq!(
        prepare_plan(&m, &plan, &[&other]).unwrap_err().code,
        C::ModuleDigestMismatch
    );
    // A module that matches its plan entry but is malformed: the reader's code, named module.
    let mut broken = a.clone();
    broken[12] = 1;
    seal(&mut broken);
    let e = prepare_plan(&m, &plan_for(&m, &[&broken]), &[&broken]).unwrap_err();
    assert_eq!(e.code, C::ReservedNonZero);
    assert!(e.message.starts_with("module 0:"), "{}", e.message);
}

#[test]
fn each_kind_changes_each_dtype_deterministically() {
    for name in [F32, Q8, Q4] {
        let mut s = Session::new(model(name), 0).unwrap();
        let base = run(&mut s);
        for kind in AdapterKind::ALL {
            let a = adapter_for(s.model(), kind, 5);
            let plan = plan_for(s.model(), &[&a]);
            let r1 = s.apply_plan(&plan, &[&a]).unwrap().to_bytes();
            let first = run(&mut s);
            assert_ne!(
                first.0, base.0,
                "{name} {kind:?}: the logits did not change"
            );
            // Applying again replaces (never stacks): same receipt, same output.
            let r2 = s.apply_plan(&plan, &[&a]).unwrap().to_bytes();
            assert_eq!(r1, r2);
            assert_eq!(run(&mut s), first, "{name} {kind:?}: not deterministic");
            // A fresh model gives the same bits.
            let mut fresh = Session::new(model(name), 0).unwrap();
            assert_eq!(fresh.apply_plan(&plan, &[&a]).unwrap().to_bytes(), r1);
            assert_eq!(run(&mut fresh), first);
            s.remove_adapters().unwrap();
            assert_eq!(run(&mut s), base, "{name}: remove did not restore the base");
        }
    }
}

#[test]
fn sparse_on_quantized_touches_only_covered_blocks() {
    for name in [Q8, Q4] {
        let mut m = model(name);
        let t = loc(&m, "blk.0.attn_q.weight");
        let base = m.payload(&t).to_vec();
        // Element 70 lies in block 2 (row 2, elements 64..96).
        let a = one_record(
            AdapterKind::Sparse,
            &m.binding,
            "blk.0.attn_q.weight",
            &[32, 32],
            Delta::Sparse {
                indices: vec![70],
                deltas: vec![0.75],
            },
        );
        let plan = plan_for(&m, &[&a]);
        apply_plan(&mut m, &plan, &[&a]).unwrap();
        let bb = DType::from_name(name.rsplit('-').next().unwrap())
            .unwrap()
            .block_bytes();
        let now = m.payload(&t).to_vec();
        assert_ne!(now[2 * bb..3 * bb], base[2 * bb..3 * bb]);
        assert_eq!(now[..2 * bb], base[..2 * bb]);
        assert_eq!(now[3 * bb..], base[3 * bb..]);
        assert_eq!(&*m.base_payload(&t).unwrap(), &base[..]);
        assert_eq!(m.overlay_len(), 1);
    }
}

#[test]
fn stack_applies_in_order_and_receipt_replays() {
    let m = model(F32);
    let a = adapter_for(&m, AdapterKind::Dense, 8);
    let b = adapter_for(&m, AdapterKind::LowRank, 9);
    let plan = plan_for(&m, &[&a, &b]);
    let mut m1 = model(F32);
    let r1 = apply_plan(&mut m1, &plan, &[&a, &b]).unwrap();
    let mut m2 = model(F32);
    let r2 = apply_plan(&mut m2, &plan, &[&a, &b]).unwrap();
    assert_eq!(r1.to_bytes(), r2.to_bytes());
    assert_eq!(
        r1.modules,
        vec![
            (AdapterKind::Dense, file_digest(&a)),
            (AdapterKind::LowRank, file_digest(&b))
        ]
    );
    assert_eq!(r1.plan, sha256(&plan));
    assert_eq!(r1.base, m.digest);
    assert_eq!(r1.assembled_tensors, 2);
    assert_eq!(Receipt::parse(&r1.to_bytes()).unwrap(), r1);
    // In order: blk.0.attn_q is the base plus a's dense delta, then plus b's low-rank one
    // (spec/adapters.md, Assembling one tensor), computed here from the records' values.
    let q = loc(&m, "blk.0.attn_q.weight");
    let (rows, cols) = (32usize, 32usize);
    // adapter_for: record 0 of seed 8 is dense small(80, ..); of seed 9 low-rank, rank 2,
    // scale 0.5, A = small(90, 2 × cols), B = small(95, 2 × rows).
    let (da, la, lb) = (
        small(80, rows * cols, 0.2),
        small(90, 2 * cols, 0.6),
        small(95, 2 * rows, 0.6),
    );
    let want: Vec<f32> = f32s(&m.base_payload(&q).unwrap())
        .iter()
        .enumerate()
        .map(|(j, &w)| {
            let (o, i) = (j / cols, j % cols);
            let s = (0.0f32 + lb[o * 2] * la[i]) + lb[o * 2 + 1] * la[cols + i];
            (w + da[j]) + 0.5 * s
        })
        .collect();
    let got = f32s(m1.payload(&q));
    assert!(
        got.iter()
            .zip(&want)
            .all(|(g, w)| g.to_bits() == w.to_bits()),
        "blk.0.attn_q is not base + a, then + b"
    );
    // The other order is another plan, and another assembly: f32 additions do not commute
    // exactly, and this data shows it.
    let plan_ba = plan_for(&m, &[&b, &a]);
    let r3 = prepare_plan(&m, &plan_ba, &[&b, &a]).unwrap().receipt;
    assert_ne!(r3.plan, r1.plan);
    assert_ne!(r3.assembly, r1.assembly);
    // An empty plan is valid: nothing assembled.
    let empty = plan_for(&m, &[]);
    let r = prepare_plan(&m, &empty, &[]).unwrap().receipt;
    assert_eq!(r.assembled_tensors, 0);
    assert_eq!(r.assembly, sha256(&0u32.to_le_bytes()));
    // The receipt text, exactly.
    let text = String::from_utf8(r1.to_bytes()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "TRLM-RECEIPT 1");
    assert!(lines[3].starts_with("module adp1 "));
    assert!(lines[4].starts_with("module alr1 "));
    assert!(lines[5].starts_with("assembly 2 "));
    assert_eq!(lines.len(), 6);
}

#[test]
fn receipt_parser_is_strict() {
    let m = model(F32);
    let a = adapter_for(&m, AdapterKind::Dense, 1);
    let r = prepare_plan(&m, &plan_for(&m, &[&a]), &[&a])
        .unwrap()
        .receipt;
    let text = String::from_utf8(r.to_bytes()).unwrap();
    let bad = |t: &str| Receipt::parse(t.as_bytes()).unwrap_err().code;
    assert_eq!(bad(&text.replace("adp1", "adp2")), C::InvalidPlan);
    assert_eq!(
        bad(&text.replace("assembly 2", "assembly 02")),
        C::InvalidPlan
    );
    assert_eq!(bad(&format!("{text}extra\n")), C::TrailingBytes);
    // Text without a final LF breaks the text rules first.
    assert_eq!(bad(&format!("{text}extra")), C::InvalidPlan);
    // More module lines than a plan may list.
    let module = text.lines().find(|l| l.starts_with("module ")).unwrap();
    let many = text.replacen(module, &vec![module; 17].join("\n"), 1);
    assert_eq!(bad(&many), C::LimitExceeded);
    assert_eq!(bad(&text.replace("plan ", "plan  ")), C::InvalidPlan);
    assert_eq!(bad(&text[..text.len() - 1]), C::InvalidPlan);
}

#[test]
fn failed_apply_changes_nothing() {
    let mut s = Session::new(model(F32), 0).unwrap();
    let a = adapter_for(s.model(), AdapterKind::Dense, 1);
    let plan = plan_for(s.model(), &[&a]);
    let r = s.apply_plan(&plan, &[&a]).unwrap().clone();
    let with_a = run(&mut s);
    // The second module fails at assembly (a value overflows): nothing changes.
    let big = one_record(
        AdapterKind::Dense,
        &s.model().binding,
        "output_norm.weight",
        &[32],
        Delta::Dense(vec![f32::MAX; 32]),
    );
    let good = adapter_for(s.model(), AdapterKind::Sparse, 4);
    let plan2 = plan_for(s.model(), &[&good, &big, &big]);
    assert_eq!(
        s.apply_plan(&plan2, &[&good, &big, &big]).unwrap_err().code,
        C::NonFiniteValue
    );
    assert_eq!(s.receipt(), Some(&r));
    assert_eq!(run(&mut s), with_a);
    assert_eq!(s.diagnostics().adapter_modules, 1);
}

#[test]
fn gate() {
    let mut s = Session::new(model(Q8), 0).unwrap();
    let a = adapter_for(s.model(), AdapterKind::LowRank, 6);
    let plan = plan_for(s.model(), &[&a]);
    let other = plan_for(s.model(), &[]);
    s.require_plan(Some(PlanRequirement {
        plan: sha256(&plan),
        receipt: None,
    }));
    assert_eq!(
        s.start(b"hi", greedy()).unwrap_err().code,
        C::AdaptersRequired
    );
    // Another plan does not open the gate.
    s.apply_plan(&other, &[]).unwrap();
    assert_eq!(
        s.start(b"hi", greedy()).unwrap_err().code,
        C::AdaptersRequired
    );
    s.apply_plan(&plan, &[&a]).unwrap();
    let out = run(&mut s);
    let d = s.diagnostics();
    assert_eq!(d.adapter_modules, 1);
    assert_eq!(d.receipt_digest, Some(s.receipt().unwrap().digest()));
    s.remove_adapters().unwrap();
    assert_eq!(
        s.start(b"hi", greedy()).unwrap_err().code,
        C::AdaptersRequired
    );
    assert_eq!(s.diagnostics().adapter_modules, 0);
    // Pinning the receipt: the right one opens, a wrong one refuses the apply.
    let receipt = prepare_plan(s.model(), &plan, &[&a])
        .unwrap()
        .receipt
        .digest();
    s.require_plan(Some(PlanRequirement {
        plan: sha256(&plan),
        receipt: Some(receipt),
    }));
    s.apply_plan(&plan, &[&a]).unwrap();
    assert_eq!(run(&mut s), out);
    s.remove_adapters().unwrap();
    s.require_plan(Some(PlanRequirement {
        plan: sha256(&plan),
        receipt: Some([0; 32]),
    }));
    assert_eq!(
        s.apply_plan(&plan, &[&a]).unwrap_err().code,
        C::ReceiptMismatch
    );
    assert!(s.receipt().is_none());
    assert_eq!(
        s.start(b"hi", greedy()).unwrap_err().code,
        C::AdaptersRequired
    );
    s.require_plan(None);
    s.start(b"hi", greedy()).unwrap();
}

/// A requirement set during a generation: one the applied plan meets lets it go on; one it does
/// not meet ends it as a cancel does (the tokens so far stay), so no further token comes from
/// weights the gate refuses.
#[test]
fn requiring_an_unapplied_plan_mid_generation_ends_the_generation() {
    use runtime::generate::session::Finish;
    use runtime::generate::Step;
    let mut s = Session::new(model(Q8), 0).unwrap();
    let a = adapter_for(s.model(), AdapterKind::Sparse, 3);
    let plan = plan_for(s.model(), &[&a]);
    let requirement = Some(PlanRequirement {
        plan: sha256(&plan),
        receipt: None,
    });
    s.start(b"once upon", greedy()).unwrap();
    assert!(matches!(s.step().unwrap(), Step::Token { .. }));
    s.require_plan(requirement);
    assert_eq!(s.step().unwrap(), Step::Finished(Finish::Cancelled));
    assert_eq!(s.generated_tokens().len(), 1, "the token before stays");
    s.require_plan(None);
    s.apply_plan(&plan, &[&a]).unwrap();
    s.start(b"once upon", greedy()).unwrap();
    assert!(matches!(s.step().unwrap(), Step::Token { .. }));
    s.require_plan(requirement);
    assert!(
        matches!(s.step().unwrap(), Step::Token { .. }),
        "a met requirement"
    );
}

/// The applied plan belongs to the model: a session made from an adapted model (by
/// `adapter::apply_plan`, or handed on by `into_model`) computes with the plan, reports it in
/// its diagnostics, and its gate accepts it; removing the adapters forgets both.
#[test]
fn an_adapted_model_carries_its_receipt_into_a_new_session() {
    let mut base = Session::new(model(Q8), 0).unwrap();
    let a = adapter_for(base.model(), AdapterKind::Dense, 6);
    let plan = plan_for(base.model(), &[&a]);
    let plain = run(&mut base);
    let mut s = Session::new(model(Q8), 0).unwrap();
    let receipt = s.apply_plan(&plan, &[&a]).unwrap();
    let adapted = run(&mut s);
    assert_ne!(adapted, plain, "the adapter changes the generation");
    let required = Some(PlanRequirement {
        plan: sha256(&plan),
        receipt: Some(receipt.digest()),
    });

    let mut m = model(Q8);
    assert_eq!(
        runtime::adapter::apply_plan(&mut m, &plan, &[&a]).unwrap(),
        receipt
    );
    for (how, m) in [("apply_plan", m), ("into_model", s.into_model())] {
        assert_eq!(m.applied().map(|(r, _)| r), Some(&receipt), "{how}");
        let mut s = Session::new(m, 0).unwrap();
        let d = s.diagnostics();
        assert_eq!(d.adapter_modules, 1, "{how}");
        assert_eq!(d.receipt_digest, Some(receipt.digest()), "{how}");
        assert_eq!(s.receipt(), Some(&receipt), "{how}");
        s.require_plan(required);
        assert_eq!(run(&mut s), adapted, "{how}");
        s.remove_adapters().unwrap();
        assert!(s.model().applied().is_none(), "{how}");
        assert_eq!(s.diagnostics().receipt_digest, None, "{how}");
        assert_eq!(
            s.start(b"hi", greedy()).unwrap_err().code,
            C::AdaptersRequired,
            "{how}"
        );
        s.require_plan(None);
        assert_eq!(run(&mut s), plain, "{how}");
    }
}

/// The f32 fixture with a rank-2 change to blk.0.attn_q.weight and one changed norm value.
fn tuned_f32() -> (Vec<u8>, Vec<u8>) {
    let recipes = fixtures::load_recipes(&fixtures::corpus_dir()).unwrap();
    let r = recipes.fixtures.iter().find(|r| r.name == F32).unwrap();
    let mut mf = fixtures::build(r).unwrap();
    let base = format::write(&mf).unwrap();
    let t = mf
        .tensors
        .iter_mut()
        .find(|t| t.name == "blk.0.attn_q.weight")
        .unwrap();
    let (u1, v1, u2, v2) = (
        small(1, 32, 0.3),
        small(2, 32, 0.3),
        small(3, 32, 0.2),
        small(4, 32, 0.2),
    );
    for (i, c) in t.bytes.chunks_exact_mut(4).enumerate() {
        let (o, k) = (i / 32, i % 32);
        let w = f32::from_le_bytes(c.try_into().unwrap()) + u1[o] * v1[k] + u2[o] * v2[k];
        c.copy_from_slice(&w.to_le_bytes());
    }
    let n = mf
        .tensors
        .iter_mut()
        .find(|t| t.name == "output_norm.weight")
        .unwrap();
    n.bytes[8..12].copy_from_slice(&2.5f32.to_le_bytes());
    (base, format::write(&mf).unwrap())
}

#[test]
fn diff_makes_each_kind() {
    let (base, tuned) = tuned_f32();
    let tuned_model = Model::load(tuned.clone()).unwrap();
    let q = loc(&tuned_model, "blk.0.attn_q.weight");
    let want = f32s(tuned_model.payload(&q));
    for kind in AdapterKind::ALL {
        let a = diff(&base, &tuned, kind, 4).unwrap();
        assert_eq!(
            diff(&base, &tuned, kind, 4).unwrap(),
            a,
            "diff is not deterministic"
        );
        let parsed = Adapter::parse(&a).unwrap();
        let names: Vec<&str> = parsed.records.iter().map(|r| r.name).collect();
        assert_eq!(names, ["blk.0.attn_q.weight", "output_norm.weight"]);
        let mut m = Model::load(base.clone()).unwrap();
        let plan = plan_for(&m, &[&a]);
        apply_plan(&mut m, &plan, &[&a]).unwrap();
        let got = f32s(m.payload(&q));
        let err = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-5, "{kind:?}: max error {err}");
    }
    assert!(diff(&base, &base, AdapterKind::Dense, 4).is_err());
    assert!(diff(&base, &corpus(Q8), AdapterKind::Dense, 4).is_err());
}

/// `adapter diff` gives out only adapters the reader takes: an ALR1 rank above
/// `MAX_ADAPTER_RANK` is refused up front, and a dense delta over the adapter budget (every
/// weight of a 15M-parameter model changed: 4 bytes per element) before anything is written.
#[test]
fn diff_refuses_what_the_reader_would() {
    let (base, tuned) = tuned_f32();
    let over = limits::MAX_ADAPTER_RANK + 1;
    let e = diff(&base, &tuned, AdapterKind::LowRank, over).unwrap_err();
    assert!(e.to_string().contains("MAX_ADAPTER_RANK"), "{e}");
    diff(
        &base,
        &tuned,
        AdapterKind::LowRank,
        limits::MAX_ADAPTER_RANK,
    )
    .unwrap();

    let shape = &harness::bench::model::SHAPES[0];
    let base = harness::bench::model::build(shape, DType::Q4_0).unwrap();
    let mut mf = format::ModelFile::from_slm(&format::Slm::parse(&base).unwrap());
    for t in mf.tensors.iter_mut().filter(|t| t.dtype == DType::Q4_0) {
        for block in t.bytes.chunks_exact_mut(18) {
            block[2..].iter_mut().for_each(|b| *b ^= 0x11);
        }
    }
    let tuned = format::write(&mf).unwrap();
    let e = diff(&base, &tuned, AdapterKind::Dense, 1).unwrap_err();
    assert!(e.to_string().contains("BudgetExceeded"), "{e}");
}

#[test]
fn factor_recovers_low_rank() {
    let (u, v) = (small(11, 6, 1.0), small(12, 5, 1.0));
    let m: Vec<f32> = (0..30).map(|i| 3.0 * u[i / 5] * v[i % 5]).collect();
    let (r, a, b) = factor(&m, 6, 5, 3);
    assert_eq!(r, 1, "a rank-1 matrix has one component");
    for i in 0..30 {
        assert!((b[i / 5] * a[i % 5] - m[i]).abs() < 1e-5);
    }
}

#[test]
fn cli_diff_inspect_apply() {
    let dir = std::env::temp_dir().join(format!("trlm-adapter-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (base, tuned) = tuned_f32();
    std::fs::write(dir.join("base.slm"), &base).unwrap();
    std::fs::write(dir.join("tuned.slm"), &tuned).unwrap();
    let exe = env!("CARGO_BIN_EXE_tinyrustlm");
    common::succeeded(
        std::process::Command::new(exe)
            .args([
                "adapter",
                "diff",
                "base.slm",
                "tuned.slm",
                "--kind",
                "alr1",
                "--rank",
                "2",
                "-o",
                "m0.adapter",
            ])
            .current_dir(&dir),
    );
    let a = std::fs::read(dir.join("m0.adapter")).unwrap();
    let out = std::process::Command::new(exe)
        .args(["adapter", "inspect", "m0.adapter", "--json"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "alr1");
    assert_eq!(v["records"][0]["rank"], 2);
    let m = Model::load(base.clone()).unwrap();
    let plan = plan_for(&m, &[&a]);
    std::fs::write(dir.join("stack.plan"), &plan).unwrap();
    common::succeeded(
        std::process::Command::new(exe)
            .args([
                "adapter",
                "apply",
                "base.slm",
                "stack.plan",
                "-o",
                "receipt.txt",
            ])
            .current_dir(&dir),
    );
    let receipt = std::fs::read(dir.join("receipt.txt")).unwrap();
    let mut m = m;
    assert_eq!(
        apply_plan(&mut m, &plan, &[&a]).unwrap().to_bytes(),
        receipt
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn registry_json(model_bytes: u64, adapter_bytes: u64) -> String {
    let d = "ab".repeat(32);
    format!(
        r#"{{"version": 1,
  "models": [{{"id": "tiny-q8", "path": "models/tiny.slm", "bytes": {model_bytes}, "sha256": "{d}", "dtype": "q8_0", "shape": "dim 32, 2 layers"}}],
  "adapters": [{{"id": "style-tiny", "family": "style", "base": "tiny-q8", "kind": "asp1", "path": "a/style.adapter", "bytes": {adapter_bytes}, "sha256": "{d}", "dtype": "f32", "shape": "2 tensors"}}]}}"#
    )
}

#[test]
fn registry_rules() {
    let ok = registry_json(1000, 500);
    let r = Registry::parse(&ok).unwrap();
    assert_eq!(r.select_model("tiny-q8").unwrap().bytes, 1000);
    assert_eq!(
        r.select_adapter("style", "tiny-q8").unwrap().id,
        "style-tiny"
    );
    let kind = |t: &str| Registry::parse(t).unwrap_err().kind;
    assert_eq!(
        kind(&ok.replace("\"shape\": \"2 tensors\"", "\"shape\": \"2\", \"extra\": 1")),
        RK::Parse
    );
    assert_eq!(
        kind(&ok.replace("\"bytes\": 500", "\"bytes\": 500, \"bytes\": 501")),
        RK::Parse
    );
    assert_eq!(
        kind(&ok.replace("\"version\": 1", "\"version\": 2")),
        RK::Invalid
    );
    assert_eq!(
        kind(&ok.replace("models/tiny.slm", "../tiny.slm")),
        RK::Invalid
    );
    assert_eq!(kind(&ok.replace("\"asp1\"", "\"lora\"")), RK::Invalid);
    assert_eq!(kind(&ok.replace("\"q8_0\"", "\"q5_k\"")), RK::Invalid);
    assert_eq!(
        kind(&ok.replacen(&"ab".repeat(32), &"AB".repeat(32), 1)),
        RK::Invalid
    );
    assert_eq!(
        kind(&ok.replace("\"base\": \"tiny-q8\"", "\"base\": \"nope\"")),
        RK::Unknown
    );
    let v: serde_json::Value = serde_json::from_str(&ok).unwrap();
    let mut dup = v.clone();
    let m0 = dup["models"][0].clone();
    dup["models"].as_array_mut().unwrap().push(m0);
    assert_eq!(kind(&dup.to_string()), RK::Duplicate);
    // In the spec's order: a repeated adapter id before an unknown base that comes earlier.
    let mut order = v.clone();
    let a0 = order["adapters"][0].clone();
    let mut stray = a0.clone();
    stray["id"] = "stray".into();
    stray["base"] = "nope".into();
    order["adapters"].as_array_mut().unwrap().push(stray);
    order["adapters"].as_array_mut().unwrap().push(a0);
    assert_eq!(kind(&order.to_string()), RK::Duplicate);
    // Budgets, enforced on selection.
    let over = Registry::parse(&registry_json(
        limits::MAX_MODEL_BYTES + 1,
        registry::ADAPTER_AUTO_APPLY_BUDGET_BYTES + 1,
    ))
    .unwrap();
    assert_eq!(
        over.select_model("tiny-q8").unwrap_err().kind,
        RK::OverBudget
    );
    assert_eq!(
        over.select_adapter("style", "tiny-q8").unwrap_err().kind,
        RK::OverBudget
    );
    let at = Registry::parse(&registry_json(
        registry::MODEL_BUDGET_BYTES,
        registry::ADAPTER_AUTO_APPLY_BUDGET_BYTES,
    ))
    .unwrap();
    at.select_model("tiny-q8").unwrap();
    at.select_adapter("style", "tiny-q8").unwrap();
    assert_eq!(r.select_model("nope").unwrap_err().kind, RK::Unknown);
}

#[test]
fn registry_load_checks_size_and_digest() {
    let dir = std::env::temp_dir().join(format!("trlm-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let m = model(F32);
    let a = adapter_for(&m, AdapterKind::Sparse, 1);
    std::fs::write(dir.join("s.adapter"), &a).unwrap();
    let hex = runtime::sha256::to_hex(&file_digest(&a));
    assert_eq!(
        registry::load(&dir, "s.adapter", a.len() as u64, &hex, true).unwrap(),
        a
    );
    let e = registry::load(&dir, "s.adapter", a.len() as u64 + 1, &hex, true).unwrap_err();
    assert_eq!(e.kind, RK::SizeMismatch);
    let e = registry::load(&dir, "s.adapter", a.len() as u64, &"00".repeat(32), true).unwrap_err();
    assert_eq!(e.kind, RK::DigestMismatch);
    let e = registry::load(&dir, "absent", 1, &hex, true).unwrap_err();
    assert_eq!(e.kind, RK::Io);
    // A file far longer than its entry is refused without being read whole (sparse: 1 TiB),
    // and the message gives its true size.
    let huge = dir.join("huge.adapter");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let e = registry::load(&dir, "huge.adapter", 1024, &hex, true).unwrap_err();
    assert_eq!(e.kind, RK::SizeMismatch);
    assert!(e.to_string().contains(&(1u64 << 40).to_string()), "{e}");
    std::fs::remove_file(&huge).unwrap();
    let slm = corpus(F32);
    std::fs::write(dir.join("m.slm"), &slm).unwrap();
    let hex = runtime::sha256::to_hex(&m.digest);
    registry::load(&dir, "m.slm", slm.len() as u64, &hex, false).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn readers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Adapter::parse(&bytes);
        let _ = Plan::parse(&bytes);
        let _ = Receipt::parse(&bytes);
        let mut with_magic = b"ASP1".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = Adapter::parse(&with_magic);
    }

    #[test]
    fn adapter_reader_never_panics_on_mutations(
        kind in 0usize..3,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
        reseal in any::<bool>(),
    ) {
        let m = model(F32);
        let mut a = adapter_for(&m, AdapterKind::ALL[kind], 1);
        for (at, v) in edits {
            let n = a.len();
            a[at % n] = v;
        }
        a.truncate(a.len() - cut % 64);
        if reseal {
            let n = a.len() as u64;
            if a.len() >= 24 {
                a[16..24].copy_from_slice(&n.to_le_bytes());
            }
            seal(&mut a);
        }
        if let Ok(parsed) = Adapter::parse(&a) {
            // Whatever the reader accepts, assembly handles without panicking.
            let _ = runtime::adapter::assemble(&m, &[parsed]);
        }
    }

    #[test]
    fn plan_reader_never_panics_on_mutations(edits in proptest::collection::vec((any::<usize>(), 0x09u8..0x80), 1..4)) {
        let m = model(F32);
        let a = adapter_for(&m, AdapterKind::Dense, 1);
        let mut p = plan_for(&m, &[&a, &a]);
        for (at, v) in edits {
            let n = p.len();
            p[at % n] = v;
        }
        let _ = prepare_plan(&m, &p, &[&a, &a]);
        let _ = Receipt::parse(&p);
    }
}
