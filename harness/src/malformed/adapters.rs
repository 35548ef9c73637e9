//! The adapter, plan and receipt part of the malformed matrix (corpus/malformed/adapters/): one
//! file (or one plan with its modules) per rejection rule of spec/adapters.md, each with the
//! exact code a conforming runtime reports. Every file is derived from the corpus fixture
//! `byte-mha-tied-f32.slm` (and its f16 / q8_0 siblings for the rules that need another base) by
//! the runtime's own adapter writer, then broken in exactly one way and resealed, so the rule
//! under test is the first one to fail.
//!
//! A case is checked in one of four ways (the manifest's `check`):
//! - `adapter`: the file alone through the adapter reader (`Adapter::parse`,
//!   `trlm_adapter_validate`, trlm.js `validateAdapter`);
//! - `plan`: the plan text alone, with no model loaded (`Plan::parse`, `trlm_plan_validate`,
//!   `validatePlan`);
//! - `receipt`: the receipt text (`Receipt::parse`; the ABI has no receipt reader, so native only);
//! - `apply`: the corpus fixture `base` is loaded and `plan` applied with `modules` in order
//!   (`apply_plan`, `trlm_plan_begin/module/apply`, `applyPlan`).

use super::write_dir;
use anyhow::{Context, Result};
use runtime::adapter::format::file_digest;
use runtime::adapter::write::{seal, write, Delta, RecordData};
use runtime::adapter::{apply_plan, AdapterKind, BaseBinding, Plan, PlanModule};
use runtime::limits;
use runtime::model::Model;
use runtime::sha256::{sha256, to_hex};
use runtime::ErrorCode::{self, *};
// The glob above brings `ErrorCode::Ok`; the `Ok` of this file is `Result`'s.
use serde_json::{json, Value};
use std::path::Path;
use std::result::Result::Ok;

/// How a case is checked (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Adapter,
    Plan,
    Receipt,
    /// Load `base` (a corpus fixture file name), then apply `plan` with `modules` (file names in
    /// corpus/malformed/adapters/).
    Apply {
        base: String,
        plan: String,
        modules: Vec<String>,
    },
}

impl Check {
    /// The manifest's name of the check.
    pub fn name(&self) -> &'static str {
        match self {
            Check::Adapter => "adapter",
            Check::Plan => "plan",
            Check::Receipt => "receipt",
            Check::Apply { .. } => "apply",
        }
    }
}

/// One case and the code a runtime must report for it.
#[derive(Clone, Debug)]
pub struct Case {
    /// Stem of its file(s), lower-case, `-` separated.
    pub name: String,
    /// The rule of spec/adapters.md the case breaks, in one line.
    pub rule: String,
    pub expected: ErrorCode,
    pub check: Check,
    /// The file checked by `adapter`, `plan` and `receipt` cases (None for an `apply` case).
    pub file: Option<(String, Vec<u8>)>,
}

impl Case {
    /// Whether the case's file is stored (the over-budget adapter, 32 MiB, is not).
    pub fn stored(&self) -> bool {
        self.file
            .as_ref()
            .is_none_or(|(_, b)| b.len() as u64 <= limits::MAX_ADAPTER_BYTES)
    }
}

/// The corpus fixture every adapter is bound to.
pub const BASE_FIXTURE: &str = "byte-mha-tied-f32.slm";
const F16_FIXTURE: &str = "byte-mha-tied-f16.slm";
const Q8_FIXTURE: &str = "byte-mha-tied-q8_0.slm";

/// Valid control files every reader accepts (an adapter, its plan and the receipt of applying
/// it to [`BASE_FIXTURE`]).
pub const VALID_ADAPTER: &str = "valid.adapter";
pub const VALID_PLAN: &str = "valid.plan";
pub const VALID_RECEIPT: &str = "valid.receipt";

/// Offset of the first record's name (right after the header).
const RECORD: usize = limits::ADAPTER_HEADER_BYTES;

fn values(seed: u32, n: usize, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|i| amp * (((i as u32 * 7 + seed * 13) % 17) as f32 / 8.0 - 1.0))
        .collect()
}

fn one(binding: &BaseBinding, name: &str, shape: &[u32], delta: Delta) -> Vec<u8> {
    let kind = delta.kind();
    write(
        kind,
        binding,
        &[RecordData {
            name: name.into(),
            shape: shape.to_vec(),
            delta,
        }],
    )
    .expect("the writer encodes any record of its kind")
}

/// A one-record dense adapter on `output_norm.weight` [32].
fn dense_norm(b: &BaseBinding, v: Vec<f32>) -> Vec<u8> {
    one(b, "output_norm.weight", &[32], Delta::Dense(v))
}

fn sparse_norm(b: &BaseBinding, indices: Vec<u32>, deltas: Vec<f32>) -> Vec<u8> {
    one(
        b,
        "output_norm.weight",
        &[32],
        Delta::Sparse { indices, deltas },
    )
}

fn low_rank_q(b: &BaseBinding, rank: u32, scale: f32, a: Vec<f32>, bb: Vec<f32>) -> Vec<u8> {
    one(
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
}

/// Overwrites bytes at `at`, then recomputes the file digest.
fn patched(bytes: &[u8], at: usize, with: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at..at + with.len()].copy_from_slice(with);
    seal(&mut b);
    b
}

/// Sets `file_bytes` to the length and reseals.
fn refit(mut b: Vec<u8>) -> Vec<u8> {
    let n = b.len() as u64;
    b[16..24].copy_from_slice(&n.to_le_bytes());
    seal(&mut b);
    b
}

fn plan_bytes(base: &[u8; 32], modules: &[(&str, &[u8])]) -> Vec<u8> {
    let ms: Vec<PlanModule> = modules
        .iter()
        .map(|(name, b)| PlanModule {
            digest: file_digest(b),
            bytes: b.len() as u64,
            name: (*name).into(),
        })
        .collect();
    Plan::to_bytes(base, &ms)
}

/// Named files: (file name, bytes).
pub type Files = Vec<(String, Vec<u8>)>;

struct Matrix {
    /// The valid control adapter (stored once, as [`VALID_ADAPTER`]).
    valid: Vec<u8>,
    cases: Vec<Case>,
    /// Files apply cases reference (modules and plans), beside the cases' own.
    support: Files,
}

impl Matrix {
    fn add(&mut self, name: &str, expected: ErrorCode, check: Check, rule: &str, bytes: Vec<u8>) {
        let ext = match check {
            Check::Adapter => "adapter",
            Check::Plan => "plan",
            Check::Receipt => "receipt",
            Check::Apply { .. } => unreachable!("apply cases use apply()"),
        };
        self.cases.push(Case {
            name: name.into(),
            rule: rule.into(),
            expected,
            check,
            file: Some((format!("{name}.{ext}"), bytes)),
        });
    }

    fn adapter(&mut self, name: &str, expected: ErrorCode, rule: &str, bytes: Vec<u8>) {
        self.add(name, expected, Check::Adapter, rule, bytes);
    }

    /// An apply case: `plan` and `modules` are stored as NAME.plan and NAME-mK.adapter unless a
    /// module is the valid control adapter (stored once).
    fn apply(
        &mut self,
        name: &str,
        expected: ErrorCode,
        rule: &str,
        base: &str,
        plan: Vec<u8>,
        modules: Vec<Vec<u8>>,
    ) {
        let plan_file = format!("{name}.plan");
        self.support.push((plan_file.clone(), plan));
        let mut files = Vec::new();
        for (k, m) in modules.into_iter().enumerate() {
            if m == self.valid {
                files.push(VALID_ADAPTER.to_string());
            } else {
                let f = format!("{name}-m{k}.adapter");
                self.support.push((f.clone(), m));
                files.push(f);
            }
        }
        self.cases.push(Case {
            name: name.into(),
            rule: rule.into(),
            expected,
            check: Check::Apply {
                base: base.into(),
                plan: plan_file,
                modules: files,
            },
            file: None,
        });
    }
}

/// Every case, and the support files (control files, apply cases' plans and modules), built
/// from the corpus fixtures in `corpus`.
pub fn cases(corpus: &Path) -> Result<(Vec<Case>, Files)> {
    let load = |f: &str| -> Result<Model> {
        let bytes = std::fs::read(corpus.join(f)).with_context(|| format!("reading {f}"))?;
        Model::load(bytes).map_err(|e| anyhow::anyhow!("{f}: {e}"))
    };
    let f32m = load(BASE_FIXTURE)?;
    let f16m = load(F16_FIXTURE)?;
    let q8m = load(Q8_FIXTURE)?;
    let b = &f32m.binding;

    let valid = dense_norm(b, values(1, 32, 0.1));
    let valid_plan = plan_bytes(&f32m.digest, &[(VALID_ADAPTER, &valid)]);
    let mut applied = load(BASE_FIXTURE)?;
    let valid_receipt = apply_plan(&mut applied, &valid_plan, &[&valid])
        .map_err(|e| anyhow::anyhow!("the control plan: {e}"))?
        .to_bytes();
    let mut m = Matrix {
        valid: valid.clone(),
        cases: Vec::new(),
        support: vec![
            (VALID_ADAPTER.into(), valid.clone()),
            (VALID_PLAN.into(), valid_plan.clone()),
            (VALID_RECEIPT.into(), valid_receipt.clone()),
        ],
    };
    adapter_header(&mut m, &valid);
    adapter_records(&mut m, b);
    adapter_bodies(&mut m, b);
    plan_text(&mut m, &valid_plan, &valid);
    receipt_text(&mut m, &valid_receipt);
    apply_rules(&mut m, &f32m, &f16m, &q8m, &valid);
    Ok((m.cases, m.support))
}

fn adapter_header(m: &mut Matrix, a: &[u8]) {
    let mut big = a.to_vec();
    big.resize(limits::MAX_ADAPTER_BYTES as usize + 1, 0);
    m.adapter(
        "budget-exceeded",
        BudgetExceeded,
        "a file longer than MAX_ADAPTER_BYTES (33,554,432) is refused before any byte is parsed",
        big,
    );
    m.adapter(
        "magic-gguf",
        InvalidAdapterMagic,
        "magic is ADP1, ASP1 or ALR1 (a GGUF file)",
        patched(a, 0, b"GGUF"),
    );
    m.adapter(
        "magic-slm",
        InvalidAdapterMagic,
        "magic is ADP1, ASP1 or ALR1 (an .slm model)",
        b"\x89SLM\r\n\x1a\n".to_vec(),
    );
    m.adapter(
        "truncated-in-magic",
        Truncated,
        "a file shorter than 4 bytes that is a prefix of a magic is Truncated",
        b"AL".to_vec(),
    );
    m.adapter(
        "truncated-in-version",
        Truncated,
        "a file with a valid magic shorter than its version fields is Truncated",
        a[..7].to_vec(),
    );
    m.adapter(
        "truncated-header",
        Truncated,
        "a file with a valid magic shorter than 128 bytes is Truncated",
        a[..100].to_vec(),
    );
    m.adapter(
        "version-major-2",
        UnsupportedAdapterVersion,
        "version_major is 1",
        patched(a, 4, &2u16.to_le_bytes()),
    );
    m.adapter(
        "version-minor-1",
        UnsupportedAdapterVersion,
        "version_minor is at most the reader's (0)",
        patched(a, 6, &1u16.to_le_bytes()),
    );
    m.adapter(
        "header-bytes-64",
        InvalidAdapter,
        "header_bytes is 128",
        patched(a, 8, &64u32.to_le_bytes()),
    );
    m.adapter(
        "flags-nonzero",
        ReservedNonZero,
        "flags is 0",
        patched(a, 12, &1u32.to_le_bytes()),
    );
    let len = a.len() as u64;
    m.adapter(
        "file-bytes-larger",
        Truncated,
        "file_bytes is the file's length (greater: Truncated)",
        patched(a, 16, &(len + 1).to_le_bytes()),
    );
    m.adapter(
        "file-bytes-smaller",
        TrailingBytes,
        "file_bytes is the file's length (smaller: TrailingBytes)",
        patched(a, 16, &(len - 1).to_le_bytes()),
    );
    m.adapter(
        "tensor-count-zero",
        InvalidAdapter,
        "tensor_count is at least 1",
        patched(a, 88, &0u32.to_le_bytes()),
    );
    m.adapter(
        "tensor-count-over-limit",
        LimitExceeded,
        "tensor_count is at most MAX_ADAPTER_TENSORS (1024)",
        patched(a, 88, &(limits::MAX_ADAPTER_TENSORS + 1).to_le_bytes()),
    );
    m.adapter(
        "reserved-nonzero",
        ReservedNonZero,
        "the reserved header word is 0",
        patched(a, 92, &[1]),
    );
    m.adapter(
        "records-fewer-than-count",
        Truncated,
        "tensor_count records follow the header (the count says 2, one follows)",
        patched(a, 88, &2u32.to_le_bytes()),
    );
    let mut t = a.to_vec();
    t.extend_from_slice(&[0; 4]);
    m.adapter(
        "trailing-bytes",
        TrailingBytes,
        "no byte follows the last record (file_bytes covers 4 extra bytes)",
        refit(t),
    );
    let mut d = a.to_vec();
    d[96] ^= 1;
    m.adapter(
        "digest-field",
        FileDigestMismatch,
        "the file digest matches the bytes (the digest field changed)",
        d,
    );
    let mut d = a.to_vec();
    let last = d.len() - 1;
    d[last] ^= 0x01;
    m.adapter(
        "digest-payload",
        FileDigestMismatch,
        "the file digest matches the bytes (a delta byte changed, structure intact)",
        d,
    );
}

fn adapter_records(m: &mut Matrix, b: &BaseBinding) {
    let dense = |name: &str, shape: &[u32]| {
        let n: u64 = shape.iter().map(|&d| u64::from(d)).product();
        one(
            b,
            name,
            shape,
            Delta::Dense(vec![0.01; n.min(4096) as usize]),
        )
    };
    let ok = dense("output_norm.weight", &[32]);
    m.adapter(
        "name-bad-char",
        InvalidAdapter,
        "a record name is bytes of [A-Za-z0-9_.-] (a space)",
        dense("output norm", &[32]),
    );
    m.adapter(
        "name-empty",
        InvalidAdapter,
        "a record name is 1..=MAX_TENSOR_NAME_BYTES bytes (empty)",
        dense("", &[32]),
    );
    m.adapter(
        "name-too-long",
        InvalidAdapter,
        "a record name is 1..=MAX_TENSOR_NAME_BYTES (96) bytes (97)",
        dense(&"n".repeat(limits::MAX_TENSOR_NAME_BYTES + 1), &[32]),
    );
    // The rank byte of a record named output_norm.weight: 128 + 2 + 18.
    let rank_at = RECORD + 2 + 18;
    m.adapter(
        "rank-0",
        InvalidAdapter,
        "a record's rank is 1..=4 (0)",
        patched(&ok, rank_at, &[0]),
    );
    m.adapter(
        "rank-5",
        InvalidAdapter,
        "a record's rank is 1..=4 (5)",
        patched(&ok, rank_at, &[5]),
    );
    m.adapter(
        "record-reserved",
        ReservedNonZero,
        "the reserved byte after a record's rank is 0",
        patched(&ok, rank_at + 1, &[1]),
    );
    m.adapter(
        "dim-zero",
        InvalidAdapter,
        "every dimension is at least 1",
        one(b, "output_norm.weight", &[0], Delta::Dense(vec![])),
    );
    m.adapter(
        "dim-zero-after-overflow",
        InvalidAdapter,
        "every dimension is at least 1, checked before the element count",
        one(
            b,
            "x",
            &[u32::MAX, u32::MAX, u32::MAX, 0],
            Delta::Dense(vec![]),
        ),
    );
    m.adapter(
        "dims-overflow",
        InvalidAdapter,
        "a record's element count fits u64",
        one(b, "x", &[u32::MAX; 3], Delta::Dense(vec![])),
    );
    let two = |n0: &str, n1: &str| {
        let r = |n: &str| RecordData {
            name: n.into(),
            shape: vec![32],
            delta: Delta::Dense(vec![0.0; 32]),
        };
        write(AdapterKind::Dense, b, &[r(n0), r(n1)]).expect("two dense records")
    };
    m.adapter(
        "names-duplicate",
        DuplicateName,
        "record names are strictly increasing (equal: DuplicateName)",
        two("blk.0.attn_norm.weight", "blk.0.attn_norm.weight"),
    );
    m.adapter(
        "names-descending",
        InvalidAdapter,
        "record names are strictly increasing (smaller: InvalidAdapter)",
        two("blk.0.ffn_norm.weight", "blk.0.attn_norm.weight"),
    );
}

fn adapter_bodies(m: &mut Matrix, b: &BaseBinding) {
    for (what, bad) in [("nan", f32::NAN), ("infinite", f32::INFINITY)] {
        let mut v = vec![0.0; 32];
        v[5] = bad;
        m.adapter(
            &format!("dense-{what}"),
            NonFiniteValue,
            &format!("every ADP1 value is finite ({what})"),
            dense_norm(b, v),
        );
    }
    let cut = dense_norm(b, vec![0.01; 32]);
    m.adapter(
        "dense-truncated",
        Truncated,
        "an ADP1 array the remaining bytes cannot hold is Truncated (8 bytes short)",
        refit(cut[..cut.len() - 8].to_vec()),
    );
    m.adapter(
        "sparse-nnz-zero",
        InvalidAdapter,
        "ASP1 nnz is at least 1",
        sparse_norm(b, vec![], vec![]),
    );
    m.adapter(
        "sparse-nnz-over-elements",
        InvalidAdapter,
        "ASP1 nnz is at most the element count (33 of 32)",
        sparse_norm(b, (0..33).collect(), vec![0.0; 33]),
    );
    m.adapter(
        "sparse-index-out-of-range",
        SparseIndexOutOfRange,
        "every ASP1 index is below the element count",
        sparse_norm(b, vec![0, 32], vec![0.1, 0.2]),
    );
    m.adapter(
        "sparse-index-unsorted",
        SparseIndexOrder,
        "ASP1 indices are strictly increasing (5 then 3)",
        sparse_norm(b, vec![5, 3], vec![0.1, 0.2]),
    );
    m.adapter(
        "sparse-index-duplicate",
        SparseIndexOrder,
        "ASP1 indices are strictly increasing (3 twice)",
        sparse_norm(b, vec![3, 3], vec![0.1, 0.2]),
    );
    m.adapter(
        "sparse-delta-nan",
        NonFiniteValue,
        "every ASP1 delta is finite",
        sparse_norm(b, vec![3, 4], vec![0.1, f32::NAN]),
    );
    let s = sparse_norm(b, vec![1, 2], vec![0.1, 0.2]);
    m.adapter(
        "sparse-truncated",
        Truncated,
        "an ASP1 array the remaining bytes cannot hold is Truncated (nnz 3, arrays of 2)",
        patched(&s, RECORD + 22 + 4, &3u32.to_le_bytes()),
    );
    m.adapter(
        "low-rank-0",
        InvalidAdapter,
        "ALR1 rank is at least 1",
        low_rank_q(b, 0, 1.0, vec![], vec![]),
    );
    m.adapter(
        "low-rank-over-limit",
        LimitExceeded,
        "ALR1 rank is at most MAX_ADAPTER_RANK (256)",
        low_rank_q(b, limits::MAX_ADAPTER_RANK + 1, 1.0, vec![], vec![]),
    );
    m.adapter(
        "low-rank-scale-nan",
        NonFiniteValue,
        "the ALR1 scale is finite",
        low_rank_q(b, 1, f32::NAN, vec![0.1; 32], vec![0.1; 32]),
    );
    let mut a = vec![0.1; 32];
    a[3] = f32::INFINITY;
    m.adapter(
        "low-rank-a-infinite",
        NonFiniteValue,
        "every value of ALR1 A is finite",
        low_rank_q(b, 1, 1.0, a, vec![0.1; 32]),
    );
    let mut bb = vec![0.1; 32];
    bb[31] = f32::NEG_INFINITY;
    m.adapter(
        "low-rank-b-infinite",
        NonFiniteValue,
        "every value of ALR1 B is finite",
        low_rank_q(b, 1, 1.0, vec![0.1; 32], bb),
    );
    m.adapter(
        "low-rank-truncated",
        Truncated,
        "an ALR1 array the remaining bytes cannot hold is Truncated (B one value short)",
        low_rank_q(b, 1, 1.0, vec![0.1; 32], vec![0.1; 31]),
    );
}

fn plan_text(m: &mut Matrix, plan: &[u8], module: &[u8]) {
    let text = String::from_utf8(plan.to_vec()).expect("plans are ASCII");
    let size = format!(" {} ", module.len());
    let base_hex = text.lines().nth(1).expect("a base line")[5..].to_string();
    let line = text.lines().nth(2).expect("a module line").to_string();
    let mut p = |name: &str, code: ErrorCode, rule: &str, t: String| {
        m.add(name, code, Check::Plan, rule, t.into_bytes());
    };
    p(
        "plan-magic-2",
        InvalidPlan,
        "a plan starts with `TRLM-PLAN 1`",
        text.replace("TRLM-PLAN 1", "TRLM-PLAN 2"),
    );
    p(
        "plan-crlf",
        InvalidPlan,
        "lines end with LF only (CR LF)",
        text.replace('\n', "\r\n"),
    );
    p(
        "plan-no-final-lf",
        InvalidPlan,
        "every line ends with LF (the last does not)",
        text.trim_end().to_string(),
    );
    p(
        "plan-empty-line",
        InvalidPlan,
        "no empty line",
        format!("{text}\n"),
    );
    p(
        "plan-tab",
        InvalidPlan,
        "printable ASCII and LF only (a tab)",
        text.replace("module ", "module\t"),
    );
    p(
        "plan-double-space",
        InvalidPlan,
        "fields are separated by exactly one space",
        text.replace("module ", "module  "),
    );
    p(
        "plan-base-missing",
        InvalidPlan,
        "the second line is `base <digest>`",
        "TRLM-PLAN 1\n".to_string(),
    );
    p(
        "plan-base-upper-hex",
        InvalidPlan,
        "digests are 64 lower-case hex digits (upper case)",
        text.replacen(&base_hex, &base_hex.to_uppercase(), 1),
    );
    p(
        "plan-base-short",
        InvalidPlan,
        "digests are 64 lower-case hex digits (63)",
        text.replacen(&base_hex, &base_hex[1..], 1),
    );
    p(
        "plan-module-fields",
        InvalidPlan,
        "a module line is `module <sha256> <bytes> <name>` (a field missing)",
        text.replace(&format!(" {VALID_ADAPTER}"), ""),
    );
    p(
        "plan-module-keyword",
        InvalidPlan,
        "a module line starts with `module`",
        text.replace("module ", "modules "),
    );
    p(
        "plan-bytes-leading-zero",
        InvalidPlan,
        "decimals have no leading zero",
        text.replace(&size, &format!(" 0{} ", module.len())),
    );
    p(
        "plan-bytes-below-header",
        InvalidPlan,
        "module bytes are at least 128",
        text.replace(&size, " 127 "),
    );
    p(
        "plan-bytes-over-limit",
        InvalidPlan,
        "module bytes are at most MAX_ADAPTER_BYTES",
        text.replace(&size, &format!(" {} ", limits::MAX_ADAPTER_BYTES + 1)),
    );
    p(
        "plan-name-traversal",
        InvalidPlan,
        "a module name is bytes of [A-Za-z0-9_.-] (../m0)",
        text.replace(VALID_ADAPTER, "../m0"),
    );
    p(
        "plan-name-hidden",
        InvalidPlan,
        "a module name does not start with `.`",
        text.replace(VALID_ADAPTER, ".hidden"),
    );
    p(
        "plan-name-too-long",
        InvalidPlan,
        "a module name is 1..=96 bytes (97)",
        text.replace(VALID_ADAPTER, &"m".repeat(97)),
    );
    p(
        "plan-modules-over-limit",
        LimitExceeded,
        "at most MAX_PLAN_MODULES (16) module lines",
        format!(
            "{text}{}",
            format!("{line}\n").repeat(limits::MAX_PLAN_MODULES)
        ),
    );
    let big = line.replace(&size, &format!(" {} ", limits::MAX_ADAPTER_BYTES));
    p(
        "plan-modules-over-staged-budget",
        ErrorCode::BudgetExceeded,
        "the module sizes add up to at most MAX_PLAN_STAGED_BYTES (33,554,432)",
        text.replace(&format!("{line}\n"), &format!("{big}\n{big}\n")),
    );
    let mut long = text.clone();
    while long.len() <= limits::MAX_PLAN_BYTES {
        long.push_str(&format!("{line}\n"));
    }
    p(
        "plan-over-bytes",
        LimitExceeded,
        "a plan is at most MAX_PLAN_BYTES (8192) bytes",
        long,
    );
}

fn receipt_text(m: &mut Matrix, receipt: &[u8]) {
    let text = String::from_utf8(receipt.to_vec()).expect("receipts are ASCII");
    let mut r = |name: &str, code: ErrorCode, rule: &str, t: String| {
        m.add(name, code, Check::Receipt, rule, t.into_bytes());
    };
    r(
        "receipt-magic-2",
        InvalidPlan,
        "a receipt starts with `TRLM-RECEIPT 1`",
        text.replace("TRLM-RECEIPT 1", "TRLM-RECEIPT 2"),
    );
    r(
        "receipt-kind-unknown",
        InvalidPlan,
        "a receipt module's kind is adp1, asp1 or alr1",
        text.replace("module adp1", "module adp2"),
    );
    r(
        "receipt-count-leading-zero",
        InvalidPlan,
        "decimals have no leading zero",
        text.replace("assembly ", "assembly 0"),
    );
    r(
        "receipt-double-space",
        InvalidPlan,
        "fields are separated by exactly one space",
        text.replace("plan ", "plan  "),
    );
    r(
        "receipt-no-final-lf",
        InvalidPlan,
        "every line ends with LF (the last does not)",
        text[..text.len() - 1].to_string(),
    );
    r(
        "receipt-assembly-missing",
        InvalidPlan,
        "a receipt ends with its assembly line",
        text.lines()
            .filter(|l| !l.starts_with("assembly"))
            .map(|l| format!("{l}\n"))
            .collect(),
    );
    r(
        "receipt-trailing-text",
        TrailingBytes,
        "nothing follows the assembly line",
        format!("{text}extra\n"),
    );
    let module = text
        .lines()
        .find(|l| l.starts_with("module "))
        .expect("the receipt lists a module");
    r(
        "receipt-modules-over-limit",
        LimitExceeded,
        "at most MAX_PLAN_MODULES (16) module lines, as in a plan",
        text.replacen(
            module,
            &vec![module; limits::MAX_PLAN_MODULES + 1].join("\n"),
            1,
        ),
    );
}

fn apply_rules(m: &mut Matrix, f32m: &Model, f16m: &Model, q8m: &Model, valid: &[u8]) {
    let b = &f32m.binding;
    let f32_base = BASE_FIXTURE;
    let plan1 = |model: &Model, a: &[u8]| plan_bytes(&model.digest, &[("m0.adapter", a)]);
    // Bound to the f32 fixture, applied to its q8_0 sibling (another layout: dtypes differ).
    m.apply(
        "apply-layout-mismatch",
        AdapterBaseMismatch,
        "the adapter's layout digest is the model's (an f32 adapter on the q8_0 sibling)",
        Q8_FIXTURE,
        plan1(q8m, valid),
        vec![valid.to_vec()],
    );
    let other_tok = BaseBinding {
        layout: b.layout,
        tokenizer: sha256(b"another tokenizer"),
    };
    let t = dense_norm(&other_tok, vec![0.0; 32]);
    m.apply(
        "apply-tokenizer-mismatch",
        AdapterBaseMismatch,
        "the adapter's tokenizer digest is the model's",
        f32_base,
        plan1(f32m, &t),
        vec![t],
    );
    let x = one(b, "output.weight", &[32], Delta::Dense(vec![0.0; 32]));
    m.apply(
        "apply-tensor-missing",
        MissingTensor,
        "the base has a tensor of each record's name (output.weight of a tied model)",
        f32_base,
        plan1(f32m, &x),
        vec![x],
    );
    let s = one(
        b,
        "blk.0.attn_q.weight",
        &[32, 16],
        Delta::Dense(vec![0.0; 512]),
    );
    m.apply(
        "apply-shape-mismatch",
        ShapeMismatch,
        "a record's dims are the base tensor's ([32, 16] for [32, 32])",
        f32_base,
        plan1(f32m, &s),
        vec![s],
    );
    let s = one(
        b,
        "blk.0.attn_q.weight",
        &[1024],
        Delta::Dense(vec![0.0; 1024]),
    );
    m.apply(
        "apply-rank-mismatch",
        ShapeMismatch,
        "a record's rank is the base tensor's ([1024] for [32, 32])",
        f32_base,
        plan1(f32m, &s),
        vec![s],
    );
    let big = dense_norm(b, vec![3e38; 32]);
    m.apply(
        "apply-f32-overflow",
        NonFiniteValue,
        "every assembled value is finite (two modules of 3e38 overflow f32)",
        f32_base,
        plan_bytes(&f32m.digest, &[("m0.adapter", &big), ("m1.adapter", &big)]),
        vec![big.clone(), big],
    );
    let over = one(
        &f16m.binding,
        "blk.0.attn_q.weight",
        &[32, 32],
        Delta::Sparse {
            indices: vec![7],
            deltas: vec![70000.0],
        },
    );
    m.apply(
        "apply-f16-overflow",
        NonFiniteValue,
        "an assembled f16 value is finite after rounding (70000)",
        F16_FIXTURE,
        plan1(f16m, &over),
        vec![over],
    );
    let over = one(
        &q8m.binding,
        "blk.0.attn_q.weight",
        &[32, 32],
        Delta::Sparse {
            indices: vec![7],
            deltas: vec![1e7],
        },
    );
    m.apply(
        "apply-q8_0-scale-overflow",
        NonFiniteValue,
        "a re-quantized q8_0 block's scale fits f16",
        Q8_FIXTURE,
        plan1(q8m, &over),
        vec![over],
    );
    m.apply(
        "apply-plan-base-mismatch",
        PlanBaseMismatch,
        "the plan's base digest is the loaded model's (an f32 plan on the q8_0 sibling)",
        Q8_FIXTURE,
        plan_bytes(&f32m.digest, &[(VALID_ADAPTER, valid)]),
        vec![valid.to_vec()],
    );
    m.apply(
        "apply-module-missing",
        ModuleDigestMismatch,
        "as many modules as the plan lists are supplied (one listed, none given)",
        f32_base,
        plan_bytes(&f32m.digest, &[(VALID_ADAPTER, valid)]),
        vec![],
    );
    m.apply(
        "apply-module-extra",
        ModuleDigestMismatch,
        "as many modules as the plan lists are supplied (none listed, one given)",
        f32_base,
        plan_bytes(&f32m.digest, &[]),
        vec![valid.to_vec()],
    );
    let other = dense_norm(b, values(2, 32, 0.1));
    m.apply(
        "apply-module-digest",
        ModuleDigestMismatch,
        "each module's file digest is the plan's (another adapter of the same size)",
        f32_base,
        plan_bytes(&f32m.digest, &[(VALID_ADAPTER, valid)]),
        vec![other],
    );
    let text = String::from_utf8(plan_bytes(&f32m.digest, &[(VALID_ADAPTER, valid)]))
        .expect("plans are ASCII");
    let bigger = text.replace(
        &format!(" {} ", valid.len()),
        &format!(" {} ", valid.len() + 1),
    );
    m.apply(
        "apply-module-size",
        ModuleDigestMismatch,
        "each module's size is the plan's (the plan says one byte more)",
        f32_base,
        bigger.into_bytes(),
        vec![valid.to_vec()],
    );
    let broken = patched(valid, 12, &[1]);
    m.apply(
        "apply-module-malformed",
        ReservedNonZero,
        "each module passes the adapter reader (its code; the plan lists it faithfully)",
        f32_base,
        plan1(f32m, &broken),
        vec![broken],
    );
}

/// The manifest of corpus/malformed/adapters/.
pub fn manifest(cases: &[Case], support: &[(String, Vec<u8>)]) -> Value {
    let list: Vec<Value> = cases
        .iter()
        .map(|c| {
            let mut v = json!({
                "name": c.name,
                "check": c.check.name(),
                "rule": c.rule,
                "code": c.expected as u32,
                "code_name": c.expected.name(),
            });
            match (&c.check, &c.file) {
                (
                    Check::Apply {
                        base,
                        plan,
                        modules,
                    },
                    _,
                ) => {
                    v["base"] = json!(base);
                    v["plan"] = json!(plan);
                    v["modules"] = json!(modules);
                }
                (_, Some((file, bytes))) => {
                    v["bytes"] = json!(bytes.len());
                    if c.stored() {
                        v["file"] = json!(file);
                    } else {
                        v["file"] = Value::Null;
                        v["generate"] = json!(format!(
                            "not stored: {VALID_ADAPTER} followed by zero bytes up to {} bytes",
                            bytes.len()
                        ));
                    }
                }
                (_, None) => {}
            }
            v
        })
        .collect();
    let digest = |name: &str| {
        support
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| to_hex(&sha256(b)))
    };
    json!({
        "description": "One case per rejection rule of spec/adapters.md (adapters, module plans, receipts). check: `adapter` reads `file` alone (Adapter::parse, trlm_adapter_validate, trlm.js validateAdapter); `plan` reads the plan text alone with no model loaded (Plan::parse, trlm_plan_validate, validatePlan); `receipt` reads receipt text (Receipt::parse; the ABI has no receipt reader, so native only); `apply` loads the corpus fixture `base` (a file of corpus/) and applies `plan` with `modules` in order (apply_plan, trlm_plan_begin/module/apply, applyPlan). Every engine reports exactly `code`. valid.adapter, valid.plan and valid.receipt are accepted controls (the plan applies valid.adapter to byte-mha-tied-f32.slm and yields valid.receipt). Generated by harness/src/malformed/adapters.rs (tinyrustlm fixtures).",
        "valid": { "adapter": VALID_ADAPTER, "plan": VALID_PLAN, "receipt": VALID_RECEIPT, "base": BASE_FIXTURE, "receipt_sha256": digest(VALID_RECEIPT) },
        "cases": list,
    })
}

/// Writes corpus/malformed/adapters/ (or, with `check`, compares); returns the files that differ.
pub fn generate(corpus: &Path, check: bool) -> Result<Vec<String>> {
    let (cases, support) = cases(corpus)?;
    let mut files = support.clone();
    files.extend(
        cases
            .iter()
            .filter(|c| c.stored())
            .filter_map(|c| c.file.clone()),
    );
    let mut manifest = serde_json::to_string_pretty(&manifest(&cases, &support))?;
    manifest.push('\n');
    files.push(("manifest.json".into(), manifest.into_bytes()));
    write_dir(
        &corpus.join("malformed/adapters"),
        "malformed/adapters",
        &files,
        &["adapter", "plan", "receipt"],
        check,
    )
}

/// A case of the committed corpus/malformed/adapters/ manifest, its files read.
#[derive(Clone, Debug)]
pub struct StoredCase {
    pub name: String,
    /// `adapter`, `plan`, `receipt` or `apply`.
    pub check: String,
    pub code: u32,
    /// The checked file (adapter, plan and receipt cases).
    pub file: Option<Vec<u8>>,
    /// What an apply case applies.
    pub apply: Option<ApplyInputs>,
}

/// The inputs of an apply case: the base model's bytes, the plan and the modules in order.
#[derive(Clone, Debug)]
pub struct ApplyInputs {
    pub base: Vec<u8>,
    pub plan: Vec<u8>,
    pub modules: Vec<Vec<u8>>,
}

/// Every stored case of the committed manifest in `corpus` (the over-budget adapter, not
/// stored, is left out).
pub fn stored_cases(corpus: &Path) -> Result<Vec<StoredCase>> {
    let dir = corpus.join("malformed/adapters");
    let read = |f: &str| std::fs::read(dir.join(f)).with_context(|| format!("reading {f}"));
    let manifest: Value = serde_json::from_slice(&read("manifest.json")?)?;
    let mut out = Vec::new();
    for c in manifest["cases"].as_array().context("manifest cases")? {
        let check = c["check"].as_str().context("check")?;
        let apply = if check == "apply" {
            let base = c["base"].as_str().context("base")?;
            let mut modules = Vec::new();
            for m in c["modules"].as_array().context("modules")? {
                modules.push(read(m.as_str().context("module")?)?);
            }
            Some(ApplyInputs {
                base: std::fs::read(corpus.join(base))
                    .with_context(|| format!("reading {base}"))?,
                plan: read(c["plan"].as_str().context("plan")?)?,
                modules,
            })
        } else if c["file"].is_null() {
            continue;
        } else {
            None
        };
        out.push(StoredCase {
            name: c["name"].as_str().context("name")?.into(),
            check: check.into(),
            code: c["code"].as_u64().context("code")? as u32,
            file: c["file"].as_str().map(read).transpose()?,
            apply,
        });
    }
    Ok(out)
}
