//! Adapters and assembly (spec/adapters.md): the ADP1 (dense), ASP1 (sparse) and ALR1 (low-rank)
//! delta files bound to one base model, their deterministic application as an overlay of
//! assembled tensors, module plans and the receipts that replay them byte for byte.
//!
//! - [`binding`]: the base model's layout and tokenizer digests;
//! - [`format`]: the verified adapter reader; [`write`](mod@write): the canonical writer;
//! - [`apply`]: assembly of a stack of adapters into new tensor bytes;
//! - [`plan`]: module plans, receipts and [`plan::apply_plan`].

pub mod apply;
pub mod binding;
pub mod format;
pub mod plan;
pub mod write;

pub use apply::{assemble, Assembly};
pub use binding::BaseBinding;
pub use format::{Adapter, AdapterKind, Body, Record};
pub use plan::{apply_plan, prepare_plan, Plan, PlanModule, Prepared, Receipt};
