//! `tinyrustlm adapter`: task deltas between two checkpoints ([`diff`]), adapter reports
//! ([`report`]) and the selector registry ([`registry`]). Applying a plan is the runtime's
//! (`runtime::adapter::apply_plan`).

pub mod diff;
pub mod example;
pub mod registry;

use runtime::adapter::{Adapter, Body};
use runtime::sha256::to_hex;
use serde_json::{json, Value};

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
