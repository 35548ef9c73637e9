//! The metadata section (spec/slm.md, Metadata): UTF-8 key/value strings, keys sorted.

use super::cursor::Cursor;
use crate::error::{Error, ErrorCode, Result};
use crate::limits;
use alloc::{format, string::String, vec::Vec};

/// Keys every file carries.
pub const REQUIRED_KEYS: [&str; 2] = ["kind", "name"];
/// Values of `kind`: what the model claims to be.
pub const KIND_FIXTURE: &str = "fixture";
pub const KIND_CONVERTED: &str = "converted";

/// A key is 1..=64 bytes of `a-z`, `0-9`, `_`, `.`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= limits::MAX_METADATA_KEY_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// Parses and checks the section; returns (key, value) pairs in file (= sorted) order.
pub fn parse<'a>(bytes: &'a [u8], base: u64) -> Result<Vec<(&'a str, &'a str)>> {
    let mut c = Cursor::new(bytes, base, "metadata section");
    let count_at = c.offset();
    let count = c.u32()?;
    if count > limits::MAX_METADATA_ENTRIES {
        return Err(Error::at(
            ErrorCode::LimitExceeded,
            count_at,
            format!(
                "{count} metadata entries; the limit is {}",
                limits::MAX_METADATA_ENTRIES
            ),
        ));
    }
    let mut out: Vec<(&'a str, &'a str)> = Vec::with_capacity(count as usize);
    let mut kind_at = base;
    for _ in 0..count {
        let key_at = c.offset();
        let key_len = c.u16()? as usize;
        let key = c.take(key_len)?;
        let key = core::str::from_utf8(key)
            .ok()
            .filter(|k| valid_key(k))
            .ok_or_else(|| {
                Error::at(
                    ErrorCode::InvalidMetadata,
                    key_at,
                    "metadata key is not 1..=64 bytes of a-z 0-9 _ .",
                )
            })?;
        if let Some((prev, _)) = out.last() {
            if *prev == key {
                return Err(Error::at(
                    ErrorCode::DuplicateName,
                    key_at,
                    format!("metadata key {key:?} appears twice"),
                ));
            }
            if *prev > key {
                return Err(Error::at(
                    ErrorCode::InvalidMetadata,
                    key_at,
                    format!("metadata key {key:?} follows {prev:?}; keys must be sorted"),
                ));
            }
        }
        let value_at = c.offset();
        let value_len = c.u32()? as usize;
        if value_len > limits::MAX_METADATA_VALUE_BYTES {
            return Err(Error::at(
                ErrorCode::LimitExceeded,
                value_at,
                format!(
                    "metadata value of {key:?} has {value_len} bytes; the limit is {}",
                    limits::MAX_METADATA_VALUE_BYTES
                ),
            ));
        }
        let value = core::str::from_utf8(c.take(value_len)?).map_err(|e| {
            Error::at(
                ErrorCode::InvalidUtf8,
                value_at + 4 + e.valid_up_to() as u64,
                format!("metadata value of {key:?} is not UTF-8"),
            )
        })?;
        if key == "kind" {
            kind_at = key_at;
        }
        out.push((key, value));
    }
    c.finish()?;
    for required in REQUIRED_KEYS {
        if !out.iter().any(|(k, _)| *k == required) {
            return Err(Error::at(
                ErrorCode::InvalidMetadata,
                base,
                format!("metadata lacks the required key {required:?}"),
            ));
        }
    }
    let kind = out.iter().find(|(k, _)| *k == "kind").map(|(_, v)| *v);
    if !matches!(kind, Some(KIND_FIXTURE) | Some(KIND_CONVERTED)) {
        // Present (the required keys were checked): reported at its entry.
        return Err(Error::at(
            ErrorCode::InvalidMetadata,
            kind_at,
            format!("metadata kind is {kind:?}; it must be \"fixture\" or \"converted\""),
        ));
    }
    Ok(out)
}

/// Encodes entries canonically (sorted by key). The caller's order does not matter; duplicate or
/// invalid keys are errors.
pub fn encode(entries: &[(String, String)]) -> Result<Vec<u8>> {
    let mut sorted: Vec<&(String, String)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = Vec::new();
    out.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
    for (key, value) in sorted {
        if key.len() > u16::MAX as usize || value.len() > u32::MAX as usize {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                "metadata entry too long",
            ));
        }
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    // The writer's output must pass the reader: check with the same code.
    parse(&out, 0)?;
    Ok(out)
}
