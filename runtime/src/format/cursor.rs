//! A bounds-checked little-endian reader over one section of the file. Every read either returns
//! the value or a `Truncated` error carrying the absolute file offset where the data ran out.

use crate::error::{Error, ErrorCode, Result};
use alloc::format;

pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    /// Absolute file offset of `bytes[0]`.
    base: u64,
    pos: usize,
    /// What is being read, for messages ("metadata", "tensor directory", ...).
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: u64, what: &'static str) -> Cursor<'a> {
        Cursor {
            bytes,
            base,
            pos: 0,
            what,
        }
    }

    /// Absolute file offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::at(
                ErrorCode::Truncated,
                self.offset(),
                format!(
                    "{} ends after {} more bytes, {} needed",
                    self.what,
                    self.remaining(),
                    n
                ),
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.array()?))
    }

    /// The section must be fully consumed: any byte left is `TrailingBytes`.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(Error::at(
                ErrorCode::TrailingBytes,
                self.offset(),
                format!(
                    "{} has {} bytes after its last entry",
                    self.what,
                    self.remaining()
                ),
            ));
        }
        Ok(())
    }
}

/// `value` rounded up to the next multiple of [`crate::limits::ALIGNMENT`], or `None` on overflow.
pub(crate) fn align_up(value: u64) -> Option<u64> {
    let a = crate::limits::ALIGNMENT;
    value.checked_add(a - 1).map(|v| v / a * a)
}
