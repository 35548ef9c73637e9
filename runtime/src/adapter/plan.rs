//! Module plans and receipts (spec/adapters.md, Plans and receipts): canonical text naming a base
//! model and an ordered stack of adapters by digest; applying a plan yields a receipt whose bytes
//! depend only on the plan, the base and the modules.

use super::apply::{assemble, Assembly};
use super::format::{file_digest, Adapter, AdapterKind};
use crate::error::{Error, ErrorCode, Result};
use crate::limits;
use crate::model::weights::Model;
use crate::sha256::{sha256, to_hex};
use alloc::{collections::BTreeMap, format, string::String, vec::Vec};

/// First line of a plan.
pub const PLAN_MAGIC: &str = "TRLM-PLAN 1";
/// First line of a receipt.
pub const RECEIPT_MAGIC: &str = "TRLM-RECEIPT 1";

/// One adapter of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanModule {
    /// The adapter's file digest.
    pub digest: [u8; 32],
    /// The adapter's size in bytes.
    pub bytes: u64,
    /// Where a host finds it (a file name; the runtime does not interpret it).
    pub name: String,
}

/// A verified module plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The base model's file digest (spec/slm.md, File digest).
    pub base: [u8; 32],
    /// The adapters, in application order.
    pub modules: Vec<PlanModule>,
    /// SHA-256 of the plan's bytes: its identity.
    pub digest: [u8; 32],
}

/// What applying a plan produced (spec/adapters.md, Receipt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub plan: [u8; 32],
    pub base: [u8; 32],
    /// Each module's kind and file digest, in plan order.
    pub modules: Vec<(AdapterKind, [u8; 32])>,
    /// Tensors the assembly replaced.
    pub assembled_tensors: u32,
    pub assembly: [u8; 32],
}

/// The lines of canonical text, each with the offset of its first byte.
struct Lines<'a> {
    text: &'a str,
    pos: usize,
}

fn invalid(offset: usize, message: impl Into<String>) -> Error {
    Error::at(ErrorCode::InvalidPlan, offset as u64, message)
}

impl<'a> Lines<'a> {
    /// Checks the shared rules (size, printable ASCII and LF only, ends with LF).
    fn new(bytes: &'a [u8], what: &str) -> Result<Lines<'a>> {
        if bytes.len() > limits::MAX_PLAN_BYTES {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "the {what} has {} bytes; the limit is {}",
                    bytes.len(),
                    limits::MAX_PLAN_BYTES
                ),
            ));
        }
        if let Some(i) = bytes
            .iter()
            .position(|&b| b != b'\n' && !(0x20..0x7f).contains(&b))
        {
            return Err(invalid(
                i,
                format!("the {what} holds a byte that is not printable ASCII or LF"),
            ));
        }
        if bytes.last() != Some(&b'\n') {
            return Err(invalid(
                bytes.len(),
                format!("the {what} does not end with a line feed"),
            ));
        }
        // Printable ASCII is UTF-8.
        let text = core::str::from_utf8(bytes).map_err(|_| invalid(0, "not ASCII"))?;
        Ok(Lines { text, pos: 0 })
    }

    fn next(&mut self) -> Option<(usize, &'a str)> {
        if self.pos >= self.text.len() {
            return None;
        }
        let start = self.pos;
        let end = start + self.text[start..].find('\n')?;
        self.pos = end + 1;
        Some((start, &self.text[start..end]))
    }

    /// The next line, which must exist.
    fn expect(&mut self, what: &str) -> Result<(usize, &'a str)> {
        let at = self.pos;
        self.next()
            .ok_or_else(|| invalid(at, format!("missing the {what} line")))
    }
}

/// Lower-case hex of exactly 64 digits.
fn hex_digest(s: &str, at: usize) -> Result<[u8; 32]> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(
            at,
            format!("{s:?} is not 64 lower-case hex digits"),
        ));
    }
    crate::sha256::from_hex(s).ok_or_else(|| invalid(at, "bad hex"))
}

/// `key <digest>` on one line.
fn keyed_digest(line: (usize, &str), key: &str) -> Result<[u8; 32]> {
    let (at, text) = line;
    match text.split_once(' ') {
        Some((k, v)) if k == key => hex_digest(v, at + k.len() + 1),
        _ => Err(invalid(at, format!("expected `{key} <sha256>`"))),
    }
}

/// A decimal without sign or leading zero.
fn decimal(s: &str, at: usize) -> Result<u64> {
    let ok =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    s.parse::<u64>()
        .ok()
        .filter(|_| ok)
        .ok_or_else(|| invalid(at, format!("{s:?} is not a canonical decimal number")))
}

/// A module name: 1..=96 bytes of `A-Z a-z 0-9 _ . -`, not starting with `.`.
pub fn valid_module_name(name: &str) -> bool {
    crate::format::directory::valid_name(name) && !name.starts_with('.')
}

impl Plan {
    /// Reads and verifies a plan (spec/adapters.md, Plan).
    pub fn parse(bytes: &[u8]) -> Result<Plan> {
        let mut lines = Lines::new(bytes, "plan")?;
        let (at, first) = lines.expect("TRLM-PLAN")?;
        if first != PLAN_MAGIC {
            return Err(invalid(at, format!("a plan starts with `{PLAN_MAGIC}`")));
        }
        let base = keyed_digest(lines.expect("base")?, "base")?;
        let mut modules = Vec::new();
        let mut total = 0u64;
        while let Some((at, line)) = lines.next() {
            let parts: Vec<&str> = line.split(' ').collect();
            let ["module", digest, size, name] = parts[..] else {
                return Err(invalid(at, "expected `module <sha256> <bytes> <name>`"));
            };
            // Only a module line counts towards the limit (a receipt's count is the same).
            if modules.len() == limits::MAX_PLAN_MODULES {
                return Err(Error::at(
                    ErrorCode::LimitExceeded,
                    at as u64,
                    format!("more than {} modules", limits::MAX_PLAN_MODULES),
                ));
            }
            let digest = hex_digest(digest, at + 7)?;
            let size_at = at + 7 + 65;
            let size = decimal(size, size_at)?;
            if size < limits::ADAPTER_HEADER_BYTES as u64 || size > limits::MAX_ADAPTER_BYTES {
                return Err(invalid(
                    size_at,
                    format!(
                        "module size {size} is not {}..={}",
                        limits::ADAPTER_HEADER_BYTES,
                        limits::MAX_ADAPTER_BYTES
                    ),
                ));
            }
            // Every engine stages the modules of one plan together (spec/abi.md): their sizes
            // must fit MAX_PLAN_STAGED_BYTES in all (at most 16 × 33,554,432: no overflow).
            total += size;
            if total > limits::MAX_PLAN_STAGED_BYTES {
                return Err(Error::at(
                    ErrorCode::BudgetExceeded,
                    size_at as u64,
                    format!(
                        "the modules listed so far hold {total} bytes; a plan's modules hold at \
                         most {} together",
                        limits::MAX_PLAN_STAGED_BYTES
                    ),
                ));
            }
            if !valid_module_name(name) {
                return Err(invalid(
                    line.len() - name.len() + at,
                    format!("module name {name:?} is not 1..=96 bytes of A-Z a-z 0-9 _ . - (not starting with .)"),
                ));
            }
            modules.push(PlanModule {
                digest,
                bytes: size,
                name: String::from(name),
            });
        }
        Ok(Plan {
            base,
            modules,
            digest: sha256(bytes),
        })
    }

    /// The canonical bytes of a plan (what [`Plan::parse`] accepts; `digest` is ignored).
    pub fn to_bytes(base: &[u8; 32], modules: &[PlanModule]) -> Vec<u8> {
        let mut s = format!("{PLAN_MAGIC}\nbase {}\n", to_hex(base));
        for m in modules {
            s += &format!("module {} {} {}\n", to_hex(&m.digest), m.bytes, m.name);
        }
        s.into_bytes()
    }
}

impl Receipt {
    /// The canonical bytes (spec/adapters.md, Receipt).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!(
            "{RECEIPT_MAGIC}\nplan {}\nbase {}\n",
            to_hex(&self.plan),
            to_hex(&self.base)
        );
        for (kind, d) in &self.modules {
            s += &format!("module {} {}\n", kind.name(), to_hex(d));
        }
        s += &format!(
            "assembly {} {}\n",
            self.assembled_tensors,
            to_hex(&self.assembly)
        );
        s.into_bytes()
    }

    /// SHA-256 of the canonical bytes.
    pub fn digest(&self) -> [u8; 32] {
        sha256(&self.to_bytes())
    }

    /// Reads a receipt; accepts exactly the bytes [`Receipt::to_bytes`] produces.
    pub fn parse(bytes: &[u8]) -> Result<Receipt> {
        let mut lines = Lines::new(bytes, "receipt")?;
        let (at, first) = lines.expect("TRLM-RECEIPT")?;
        if first != RECEIPT_MAGIC {
            return Err(invalid(
                at,
                format!("a receipt starts with `{RECEIPT_MAGIC}`"),
            ));
        }
        let plan = keyed_digest(lines.expect("plan")?, "plan")?;
        let base = keyed_digest(lines.expect("base")?, "base")?;
        let mut modules = Vec::new();
        loop {
            let (at, line) = lines.expect("assembly")?;
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[..] {
                ["module", kind, d] => {
                    if modules.len() == limits::MAX_PLAN_MODULES {
                        return Err(Error::at(
                            ErrorCode::LimitExceeded,
                            at as u64,
                            format!("more than {} modules", limits::MAX_PLAN_MODULES),
                        ));
                    }
                    let k = AdapterKind::from_name(kind)
                        .ok_or_else(|| invalid(at + 7, format!("unknown adapter kind {kind:?}")))?;
                    modules.push((k, hex_digest(d, at + 8 + kind.len())?));
                }
                ["assembly", n, d] => {
                    let count = decimal(n, at + 9)?;
                    let assembled_tensors = u32::try_from(count)
                        .ok()
                        .filter(|&c| c <= limits::MAX_TENSORS)
                        .ok_or_else(|| invalid(at + 9, "too many assembled tensors"))?;
                    let assembly = hex_digest(d, at + 10 + n.len())?;
                    if let Some((at, _)) = lines.next() {
                        return Err(Error::at(
                            ErrorCode::TrailingBytes,
                            at as u64,
                            "text after the assembly line",
                        ));
                    }
                    return Ok(Receipt {
                        plan,
                        base,
                        modules,
                        assembled_tensors,
                        assembly,
                    });
                }
                _ => return Err(invalid(at, "expected a `module` or `assembly` line")),
            }
        }
    }
}

/// A plan checked and assembled against a model, not yet installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub assembly: Assembly,
    pub receipt: Receipt,
}

impl Prepared {
    /// Installs the assembly as the model's overlay, with the receipt (replacing any previous
    /// plan): [`Model::applied`] then reports it.
    pub fn install(self, model: &mut Model) -> Receipt {
        let overlay: BTreeMap<usize, Vec<u8>> = self
            .assembly
            .tensors
            .into_iter()
            .map(|(i, bytes)| (model.tensors[i].loc.offset, bytes))
            .collect();
        let digest = self.receipt.digest();
        model.set_overlay(overlay, Some((self.receipt.clone(), digest)));
        self.receipt
    }
}

/// Checks that `bytes` are module `i` of a plan, `m`: its size and file digest
/// (`ModuleDigestMismatch` otherwise, naming the module and what the plan expects).
pub(crate) fn check_module(i: usize, m: &PlanModule, bytes: &[u8]) -> Result<()> {
    if bytes.len() as u64 != m.bytes || file_digest(bytes) != m.digest {
        return Err(Error::new(
            ErrorCode::ModuleDigestMismatch,
            format!(
                "module {i} ({}): the bytes supplied ({} bytes) are not the plan's ({} bytes, sha256 {})",
                m.name,
                bytes.len(),
                m.bytes,
                to_hex(&m.digest)
            ),
        ));
    }
    Ok(())
}

fn in_module(i: usize, e: Error) -> Error {
    Error {
        message: format!("module {i}: {}", e.message),
        ..e
    }
}

/// Checks `plan` against `model` and the supplied `modules` (the adapters' bytes, in plan order)
/// and assembles them, changing nothing (spec/adapters.md, Verification order, plan steps).
///
/// Errors: `InvalidPlan`/`LimitExceeded` (the plan), `PlanBaseMismatch`, `ModuleDigestMismatch`
/// (count, size or digest of a module), any adapter reader error (message prefixed with the
/// module number; the offset is into that module), then the errors of [`assemble`].
pub fn prepare_plan(model: &Model, plan: &[u8], modules: &[&[u8]]) -> Result<Prepared> {
    let p = Plan::parse(plan)?;
    if p.base != model.digest {
        return Err(Error::new(
            ErrorCode::PlanBaseMismatch,
            format!(
                "the plan is for base {}, the model is {}",
                to_hex(&p.base),
                to_hex(&model.digest)
            ),
        ));
    }
    if modules.len() != p.modules.len() {
        return Err(Error::new(
            ErrorCode::ModuleDigestMismatch,
            format!(
                "the plan lists {} modules; {} were supplied",
                p.modules.len(),
                modules.len()
            ),
        ));
    }
    for (i, (m, bytes)) in p.modules.iter().zip(modules).enumerate() {
        check_module(i, m, bytes)?;
    }
    let mut adapters = Vec::with_capacity(modules.len());
    for (i, bytes) in modules.iter().enumerate() {
        adapters.push(Adapter::parse(bytes).map_err(|e| in_module(i, e))?);
    }
    let assembly = assemble(model, &adapters)?;
    let receipt = Receipt {
        plan: p.digest,
        base: p.base,
        modules: adapters.iter().map(|a| (a.kind, a.digest)).collect(),
        assembled_tensors: assembly.tensors.len() as u32,
        assembly: assembly.digest,
    };
    Ok(Prepared { assembly, receipt })
}

/// [`prepare_plan`], then installs the assembly: all or nothing.
pub fn apply_plan(model: &mut Model, plan: &[u8], modules: &[&[u8]]) -> Result<Receipt> {
    Ok(prepare_plan(model, plan, modules)?.install(model))
}
