//! `tinyrustlm adapter`: task deltas between two checkpoints ([`diff`]), adapter reports
//! ([`report`]), the selector registry ([`registry`]), the adapter fixtures ([`fixtures`]) and
//! the visible stories260K example ([`example`]).
//! Applying a plan is the runtime's (`runtime::adapter::apply_plan`).

pub mod diff;
pub mod example;
pub mod fixtures;
pub mod registry;

use crate::read_at_most;
use anyhow::{Context, Result};
use runtime::adapter::{Adapter, Body, Plan};
use runtime::sha256::to_hex;
use serde_json::{json, Value};
use std::path::Path;

/// A module plan and its modules' bytes, in plan order.
pub struct PlanFiles {
    /// Where the plan was read from (named by a rejection).
    pub path: std::path::PathBuf,
    pub plan: Vec<u8>,
    pub modules: Vec<Vec<u8>>,
}

impl PlanFiles {
    /// Reads the plan at `path` and, when it is for `base` (the model's file digest), each
    /// module it names from the plan's directory (the CLI's convention: a module's name is a
    /// file beside the plan) — in the order of spec/adapters.md (Verification order): the plan
    /// text, then its base, before any module is read. Each file is read only up to one byte
    /// past its limit: the plan up to `MAX_PLAN_BYTES`, a module up to the size the plan lists
    /// (a longer file then fails the runtime's size check, `ModuleDigestMismatch`, without being
    /// read whole). A plan the runtime refuses is a [`crate::Rejected`] (exit 1).
    pub fn read(path: &Path, base: &[u8; 32]) -> Result<PlanFiles> {
        let rejected = |error: runtime::Error| crate::Rejected {
            path: path.to_path_buf(),
            error,
        };
        let limit = runtime::limits::MAX_PLAN_BYTES as u64;
        let plan =
            read_at_most(path, limit + 1).with_context(|| format!("reading {}", path.display()))?;
        if plan.len() as u64 > limit {
            let size = std::fs::metadata(path).map_or(plan.len() as u64, |m| m.len());
            return Err(rejected(runtime::Error::new(
                runtime::ErrorCode::LimitExceeded,
                format!("the plan has {size} bytes; the limit is {limit}"),
            ))
            .into());
        }
        let parsed = Plan::parse(&plan).map_err(rejected)?;
        if parsed.base != *base {
            return Err(rejected(runtime::Error::new(
                runtime::ErrorCode::PlanBaseMismatch,
                format!(
                    "the plan is for base {}, the model is {}",
                    to_hex(&parsed.base),
                    to_hex(base)
                ),
            ))
            .into());
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let modules = parsed
            .modules
            .iter()
            .map(|m| {
                let p = dir.join(&m.name);
                read_at_most(&p, m.bytes.saturating_add(1))
                    .with_context(|| format!("reading module {}", p.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PlanFiles {
            path: path.to_path_buf(),
            plan,
            modules,
        })
    }

    /// The modules as the runtime takes them.
    pub fn module_refs(&self) -> Vec<&[u8]> {
        self.modules.iter().map(|m| &m[..]).collect()
    }
}

/// The JSON report of `adapter inspect --json`.
pub fn report(a: &Adapter<'_>, bytes: usize) -> Value {
    let records: Vec<Value> = a
        .records
        .iter()
        .map(|r| {
            let mut v = json!({ "name": r.name, "shape": r.shape() });
            match r.body {
                Body::Dense { .. } => v["values"] = json!(r.elements()),
                Body::Sparse { indices, .. } => v["entries"] = json!(indices.len() / 4),
                Body::LowRank { rank, scale, .. } => {
                    v["rank"] = json!(rank);
                    v["scale"] = json!(scale);
                }
            }
            v
        })
        .collect();
    json!({
        "kind": a.kind.name(),
        "version": format!("1.{}", a.version_minor),
        "bytes": bytes,
        "sha256": to_hex(&a.digest),
        "base_layout_sha256": to_hex(&a.binding.layout),
        "base_tokenizer_sha256": to_hex(&a.binding.tokenizer),
        "records": records,
    })
}

/// The text report of `adapter inspect`.
pub fn report_text(a: &Adapter<'_>, bytes: usize) -> String {
    let mut s = format!(
        "{} adapter, version 1.{}, {} bytes\nsha256            {}\nbase layout       {}\nbase tokenizer    {}\nrecords           {}\n",
        a.kind.name(),
        a.version_minor,
        bytes,
        to_hex(&a.digest),
        to_hex(&a.binding.layout),
        to_hex(&a.binding.tokenizer),
        a.records.len()
    );
    for r in &a.records {
        let what = match r.body {
            Body::Dense { .. } => format!("{} values", r.elements()),
            Body::Sparse { indices, .. } => format!("{} entries", indices.len() / 4),
            Body::LowRank { rank, scale, .. } => format!("rank {rank}, scale {scale}"),
        };
        s += &format!("  {:<32} {:?} {what}\n", r.name, r.shape());
    }
    s
}
