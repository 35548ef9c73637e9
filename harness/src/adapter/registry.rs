//! The selector registry (spec/adapters.md, Selector registry): a strict JSON list of models and
//! adapter families with their paths, sizes, digests, dtypes and shapes. Selecting an entry
//! enforces the model budget and the adapter auto-apply budget before any byte is read; loading
//! it checks its size and digest.

use crate::limits::MAX_REGISTRY_ID_BYTES;
use runtime::adapter::format::file_digest as adapter_digest;
use runtime::adapter::AdapterKind;
use runtime::format::{file_digest as model_digest, DType};
use runtime::limits;
use serde::Deserialize;
use std::fmt;
use std::path::Path;

/// The model budget: no selected model may be larger (bytes).
pub const MODEL_BUDGET_BYTES: u64 = limits::MAX_MODEL_BYTES;
/// The adapter auto-apply budget: no adapter larger than this is selected for automatic
/// application (bytes).
pub const ADAPTER_AUTO_APPLY_BUDGET_BYTES: u64 = limits::ADAPTER_AUTO_APPLY_BYTES;

/// What went wrong with a registry or an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryErrorKind {
    /// Not JSON, an unknown or duplicated field, a wrong type.
    Parse,
    /// A field value breaks a rule (version, id syntax, digest syntax, dtype, kind, zero size).
    Invalid,
    /// Two entries of one list share an id (or an adapter family has two entries for one base).
    Duplicate,
    /// No entry has that id (or an adapter names an unknown base).
    Unknown,
    /// The entry's size exceeds its budget.
    OverBudget,
    /// The file's size differs from the entry's.
    SizeMismatch,
    /// The file's digest differs from the entry's.
    DigestMismatch,
    /// The file could not be read.
    Io,
}

/// A registry error: kind and explanation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryError {
    pub kind: RegistryErrorKind,
    pub message: String,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registry: {:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for RegistryError {}

fn err(kind: RegistryErrorKind, message: impl Into<String>) -> RegistryError {
    RegistryError {
        kind,
        message: message.into(),
    }
}

/// A model entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub id: String,
    /// Relative to the registry file's directory.
    pub path: String,
    pub bytes: u64,
    /// The .slm file digest (spec/slm.md, File digest), lower-case hex.
    pub sha256: String,
    /// The layer matrices' dtype.
    pub dtype: String,
    /// A human-readable shape summary.
    pub shape: String,
}

/// An adapter entry: one member of a family, for one base model.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdapterEntry {
    pub id: String,
    /// The family: the same task for different bases.
    pub family: String,
    /// The id of the model entry it is bound to.
    pub base: String,
    /// `adp1`, `asp1` or `alr1`.
    pub kind: String,
    pub path: String,
    pub bytes: u64,
    /// The adapter file digest (spec/adapters.md), lower-case hex.
    pub sha256: String,
    /// The deltas' dtype: always `f32`.
    pub dtype: String,
    pub shape: String,
}

/// A parsed, checked registry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// 1.
    pub version: u32,
    pub models: Vec<ModelEntry>,
    pub adapters: Vec<AdapterEntry>,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_REGISTRY_ID_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

fn valid_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A relative path of `/`-separated components, none empty, `.` or `..`.
fn valid_path(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && s.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'))
}

impl Registry {
    /// Parses and checks a registry. Rules in order: JSON with no unknown or duplicated field
    /// (`Parse`); version 1; per entry: id, path, sha256, dtype (and kind) syntax, bytes ≥ 1
    /// (`Invalid`); unique ids per list (`Duplicate`); adapter bases exist (`Unknown`); at
    /// most one adapter per (family, base) (`Duplicate`).
    pub fn parse(text: &str) -> Result<Registry, RegistryError> {
        let r: Registry =
            serde_json::from_str(text).map_err(|e| err(RegistryErrorKind::Parse, e.to_string()))?;
        if r.version != 1 {
            return Err(err(
                RegistryErrorKind::Invalid,
                format!("version {} is not 1", r.version),
            ));
        }
        let check = |id: &str, path: &str, bytes: u64, sha: &str| {
            if !valid_id(id) {
                return Err(err(
                    RegistryErrorKind::Invalid,
                    format!("id {id:?} is not 1..={MAX_REGISTRY_ID_BYTES} of a-z 0-9 _ . -"),
                ));
            }
            if !valid_path(path) {
                return Err(err(
                    RegistryErrorKind::Invalid,
                    format!("{id}: path {path:?} is not a plain relative path"),
                ));
            }
            if bytes == 0 {
                return Err(err(RegistryErrorKind::Invalid, format!("{id}: bytes is 0")));
            }
            if !valid_digest(sha) {
                return Err(err(
                    RegistryErrorKind::Invalid,
                    format!("{id}: sha256 is not 64 lower-case hex digits"),
                ));
            }
            Ok(())
        };
        for m in &r.models {
            check(&m.id, &m.path, m.bytes, &m.sha256)?;
            if DType::from_name(&m.dtype).is_none() {
                return Err(err(
                    RegistryErrorKind::Invalid,
                    format!("{}: unknown dtype {:?}", m.id, m.dtype),
                ));
            }
        }
        for a in &r.adapters {
            check(&a.id, &a.path, a.bytes, &a.sha256)?;
            if !valid_id(&a.family) {
                return Err(err(
                    RegistryErrorKind::Invalid,
                    format!("{}: bad family {:?}", a.id, a.family),
                ));
            }
            if AdapterKind::from_name(&a.kind).is_none() {
                return Err(err(
                    RegistryErrorKind::Invalid,
                    format!("{}: unknown kind {:?}", a.id, a.kind),
                ));
            }
            if a.dtype != "f32" {
                return Err(err(
                    RegistryErrorKind::Invalid,
                    format!("{}: adapter dtype {:?} is not f32", a.id, a.dtype),
                ));
            }
        }
        for (i, m) in r.models.iter().enumerate() {
            if r.models[..i].iter().any(|o| o.id == m.id) {
                return Err(err(
                    RegistryErrorKind::Duplicate,
                    format!("model id {:?} appears twice", m.id),
                ));
            }
        }
        // The spec's order: unique ids in both lists, then every base known, then one adapter
        // per (family, base).
        for (i, a) in r.adapters.iter().enumerate() {
            if r.adapters[..i].iter().any(|o| o.id == a.id) {
                return Err(err(
                    RegistryErrorKind::Duplicate,
                    format!("adapter id {:?} appears twice", a.id),
                ));
            }
        }
        if let Some(a) = r
            .adapters
            .iter()
            .find(|a| !r.models.iter().any(|m| m.id == a.base))
        {
            return Err(err(
                RegistryErrorKind::Unknown,
                format!("{}: base {:?} is not a model id", a.id, a.base),
            ));
        }
        for (i, a) in r.adapters.iter().enumerate() {
            if r.adapters[..i]
                .iter()
                .any(|o| o.family == a.family && o.base == a.base)
            {
                return Err(err(
                    RegistryErrorKind::Duplicate,
                    format!(
                        "family {:?} has two adapters for base {:?}",
                        a.family, a.base
                    ),
                ));
            }
        }
        Ok(r)
    }

    /// Selects a model: it must exist and fit [`MODEL_BUDGET_BYTES`].
    pub fn select_model(&self, id: &str) -> Result<&ModelEntry, RegistryError> {
        let m = self
            .models
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| err(RegistryErrorKind::Unknown, format!("no model {id:?}")))?;
        if m.bytes > MODEL_BUDGET_BYTES {
            return Err(err(
                RegistryErrorKind::OverBudget,
                format!(
                    "model {id:?} has {} bytes; the model budget is {MODEL_BUDGET_BYTES}",
                    m.bytes
                ),
            ));
        }
        Ok(m)
    }

    /// Selects a family's adapter for a base model, for automatic application: it must exist and
    /// fit [`ADAPTER_AUTO_APPLY_BUDGET_BYTES`].
    pub fn select_adapter(&self, family: &str, base: &str) -> Result<&AdapterEntry, RegistryError> {
        let a = self
            .adapters
            .iter()
            .find(|a| a.family == family && a.base == base)
            .ok_or_else(|| {
                err(
                    RegistryErrorKind::Unknown,
                    format!("family {family:?} has no adapter for {base:?}"),
                )
            })?;
        if a.bytes > ADAPTER_AUTO_APPLY_BUDGET_BYTES {
            return Err(err(
                RegistryErrorKind::OverBudget,
                format!(
                    "adapter {:?} has {} bytes; the auto-apply budget is {ADAPTER_AUTO_APPLY_BUDGET_BYTES}",
                    a.id, a.bytes
                ),
            ));
        }
        Ok(a)
    }
}

/// Reads an entry's file (`path` relative to `root`) and checks its size, then its identity digest
/// (`adapter`: the adapter file digest; else the .slm file digest).
pub fn load(
    root: &Path,
    path: &str,
    bytes: u64,
    sha256: &str,
    adapter: bool,
) -> Result<Vec<u8>, RegistryError> {
    let full = root.join(path);
    let io = |e: std::io::Error| err(RegistryErrorKind::Io, format!("{}: {e}", full.display()));
    // At most one byte more than the entry says: a longer file is refused unread.
    let data = crate::read_at_most(&full, bytes.saturating_add(1)).map_err(io)?;
    if data.len() as u64 != bytes {
        let size = std::fs::metadata(&full).map_err(io)?.len();
        return Err(err(
            RegistryErrorKind::SizeMismatch,
            format!("{path}: {size} bytes; the registry says {bytes}"),
        ));
    }
    let d = if adapter {
        adapter_digest(&data)
    } else {
        model_digest(&data)
    };
    if runtime::sha256::to_hex(&d) != sha256 {
        return Err(err(
            RegistryErrorKind::DigestMismatch,
            format!("{path}: the digest is not the registry's"),
        ));
    }
    Ok(data)
}
