//! Host buffers (spec/abi.md, Host buffers): the only memory an ABI call reads from or writes to
//! on the host's behalf. Each is an owned `Vec<u8>` keyed by its address in linear memory, and
//! every (pointer, length) argument is resolved against this registry — never dereferenced — so
//! no argument can reach the runtime's own state or leave linear memory.

use crate::error::{Error, ErrorCode, Result};
use crate::limits;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;

/// The live buffers, by address.
pub struct Buffers {
    map: BTreeMap<u32, Vec<u8>>,
    /// Sum of the live buffers' lengths.
    total: u64,
}

impl Default for Buffers {
    fn default() -> Buffers {
        Buffers::new()
    }
}

impl Buffers {
    pub const fn new() -> Buffers {
        Buffers {
            map: BTreeMap::new(),
            total: 0,
        }
    }

    /// A new zeroed buffer of `len` bytes; returns its address (never 0).
    pub fn alloc(&mut self, len: u32) -> Result<u32> {
        if len == 0 {
            return Err(Error::new(
                ErrorCode::InvalidLength,
                "cannot allocate 0 bytes",
            ));
        }
        if len > limits::MAX_ABI_BUFFER_BYTES {
            return Err(Error::new(
                ErrorCode::BudgetExceeded,
                format!(
                    "a buffer of {len} bytes exceeds the {}-byte buffer budget",
                    limits::MAX_ABI_BUFFER_BYTES
                ),
            ));
        }
        let total = self.total + u64::from(len);
        if total > limits::MAX_ABI_BUFFER_TOTAL_BYTES {
            return Err(Error::new(
                ErrorCode::BudgetExceeded,
                format!(
                    "live buffers would hold {total} bytes; the budget is {}",
                    limits::MAX_ABI_BUFFER_TOTAL_BYTES
                ),
            ));
        }
        if self.map.len() >= limits::MAX_ABI_BUFFERS {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("{} buffers are live already", limits::MAX_ABI_BUFFERS),
            ));
        }
        let n = len as usize;
        let mut buf = Vec::new();
        buf.try_reserve_exact(n).map_err(|_| {
            Error::new(
                ErrorCode::OutOfMemory,
                format!("cannot allocate a buffer of {len} bytes"),
            )
        })?;
        buf.resize(n, 0);
        if !super::headroom::available(limits::ABI_HEADROOM_BYTES) {
            drop(buf);
            return Err(super::headroom::out_of_memory());
        }
        // A non-empty allocation's address is never 0; on wasm32 it always fits in 32 bits.
        let addr = u32::try_from(buf.as_ptr() as usize)
            .ok()
            .filter(|&a| a != 0)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::OutOfMemory,
                    "the buffer's address does not fit in 32 bits",
                )
            })?;
        self.map.insert(addr, buf);
        self.total = total;
        Ok(addr)
    }

    /// Frees the buffer at `ptr`, which must have been allocated with exactly `len` bytes.
    pub fn free(&mut self, ptr: u32, len: u32) -> Result<()> {
        if ptr == 0 {
            return Err(Error::new(
                ErrorCode::NullPointer,
                "cannot free a null pointer",
            ));
        }
        match self.map.get(&ptr) {
            None => Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("{ptr:#x} is not a live buffer from trlm_alloc"),
            )),
            Some(buf) if buf.len() != len as usize => Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("the buffer at {ptr:#x} has {} bytes, not {len}", buf.len()),
            )),
            Some(_) => {
                if let Some(buf) = self.map.remove(&ptr) {
                    self.total -= buf.len() as u64;
                }
                Ok(())
            }
        }
    }

    /// The bytes `[ptr, ptr + len)`, which must lie in one live buffer.
    pub fn get(&self, ptr: u32, len: u32) -> Result<&[u8]> {
        let (&base, buf) = self
            .map
            .range(..=nonnull(ptr)?)
            .next_back()
            .ok_or_else(|| outside(ptr))?;
        let range = within(ptr, len, base, buf.len())?;
        Ok(&buf[range])
    }

    /// As [`Buffers::get`], writable.
    pub fn get_mut(&mut self, ptr: u32, len: u32) -> Result<&mut [u8]> {
        let (&base, buf) = self
            .map
            .range_mut(..=nonnull(ptr)?)
            .next_back()
            .ok_or_else(|| outside(ptr))?;
        let range = within(ptr, len, base, buf.len())?;
        Ok(&mut buf[range])
    }
}

fn nonnull(ptr: u32) -> Result<u32> {
    if ptr == 0 {
        return Err(Error::new(ErrorCode::NullPointer, "null pointer"));
    }
    Ok(ptr)
}

fn outside(ptr: u32) -> Error {
    Error::new(
        ErrorCode::InvalidArgument,
        format!("{ptr:#x} does not point into a live buffer from trlm_alloc"),
    )
}

/// Where `[ptr, ptr + len)` lies in the `size`-byte buffer at `base` (`base <= ptr`): the range
/// must end inside it (a zero-length range may sit at its end).
fn within(ptr: u32, len: u32, base: u32, size: usize) -> Result<Range<usize>> {
    let start = u64::from(ptr - base);
    if start > size as u64 {
        return Err(outside(ptr));
    }
    let end = start + u64::from(len);
    if end > size as u64 {
        return Err(Error::new(
            ErrorCode::InvalidLength,
            format!("{len} bytes at {ptr:#x} pass the end of the {size}-byte buffer at {base:#x}"),
        ));
    }
    Ok(start as usize..end as usize)
}
