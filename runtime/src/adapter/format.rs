//! The verified adapter reader (spec/adapters.md): [`Adapter::parse`] checks every rule of the
//! ADP1/ASP1/ALR1 layouts, in the spec's order, before it returns anything. Deltas stay in the
//! input bytes (little-endian f32) and are read by index.

use super::binding::BaseBinding;
use crate::error::{Error, ErrorCode, Result};
use crate::format::cursor::Cursor;
use crate::format::directory::valid_name;
use crate::limits;
use crate::sha256::Sha256;
use alloc::{format, vec::Vec};

/// Offset of the file digest field in the header.
pub const DIGEST_OFFSET: usize = 96;
/// The adapter format major version this reader implements.
pub const VERSION_MAJOR: u16 = 1;
/// The highest minor version this reader implements.
pub const VERSION_MINOR: u16 = 0;

/// The three adapter kinds, told apart by their magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdapterKind {
    /// `ADP1`: a full f32 delta per tensor.
    Dense,
    /// `ASP1`: sorted unique element indices with f32 deltas.
    Sparse,
    /// `ALR1`: W' = W + scale · B · A.
    LowRank,
}

impl AdapterKind {
    pub const ALL: [AdapterKind; 3] = [
        AdapterKind::Dense,
        AdapterKind::Sparse,
        AdapterKind::LowRank,
    ];

    /// The four magic bytes at offset 0.
    pub const fn magic(self) -> [u8; 4] {
        match self {
            AdapterKind::Dense => *b"ADP1",
            AdapterKind::Sparse => *b"ASP1",
            AdapterKind::LowRank => *b"ALR1",
        }
    }

    /// The lower-case name used by plans, receipts and the CLI: `adp1`, `asp1`, `alr1`.
    pub const fn name(self) -> &'static str {
        match self {
            AdapterKind::Dense => "adp1",
            AdapterKind::Sparse => "asp1",
            AdapterKind::LowRank => "alr1",
        }
    }

    pub fn from_name(name: &str) -> Option<AdapterKind> {
        AdapterKind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn from_magic(m: &[u8]) -> Option<AdapterKind> {
        AdapterKind::ALL.into_iter().find(|k| k.magic() == m)
    }
}

/// The delta of one record; f32 arrays are the file's little-endian bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Body<'a> {
    /// One delta per element, row-major.
    Dense { deltas: &'a [u8] },
    /// `indices` (u32) strictly increasing and below the element count; `deltas` (f32) beside.
    Sparse { indices: &'a [u8], deltas: &'a [u8] },
    /// `a` is [rank, cols], `b` is [rows, rank] (row-major f32), on the tensor's matrix view.
    LowRank {
        rank: u32,
        scale: f32,
        a: &'a [u8],
        b: &'a [u8],
    },
}

/// One tensor record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Record<'a> {
    /// The base tensor's name.
    pub name: &'a str,
    pub rank: u8,
    /// The base tensor's shape as the adapter expects it (outermost first; past `rank`: 1).
    pub dims: [u32; limits::MAX_RANK],
    pub body: Body<'a>,
    /// File offset of the record.
    pub offset: u64,
}

impl Record<'_> {
    pub fn shape(&self) -> &[u32] {
        &self.dims[..self.rank as usize]
    }

    /// Product of the dims (cannot overflow: checked by the reader).
    pub fn elements(&self) -> u64 {
        self.shape().iter().map(|&d| d as u64).product()
    }

    /// The matrix view: rows = product of all dims but the innermost, cols = the innermost.
    pub fn matrix(&self) -> (u64, u64) {
        let cols = self.dims[self.rank as usize - 1] as u64;
        (self.elements() / cols, cols)
    }
}

/// A fully verified adapter, borrowing the bytes it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Adapter<'a> {
    pub kind: AdapterKind,
    pub version_minor: u16,
    /// The base it applies to.
    pub binding: BaseBinding,
    /// Records in strictly ascending name order.
    pub records: Vec<Record<'a>>,
    /// The file digest (verified): the adapter's identity in plans and receipts.
    pub digest: [u8; 32],
}

/// SHA-256 of an adapter's bytes `[0, 96)` followed by `[128, end)`: every byte but the digest
/// field. Plans name adapters by it.
pub fn file_digest(bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&bytes[..DIGEST_OFFSET.min(bytes.len())]);
    if bytes.len() > limits::ADAPTER_HEADER_BYTES {
        h.update(&bytes[limits::ADAPTER_HEADER_BYTES..]);
    }
    h.finalize()
}

/// Little-endian f32 number `i` of `bytes` (callers index within `bytes.len() / 4`).
pub fn f32_at(bytes: &[u8], i: usize) -> f32 {
    let b = &bytes[4 * i..4 * i + 4];
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Little-endian u32 number `i` of `bytes`.
pub fn u32_at(bytes: &[u8], i: usize) -> u32 {
    let b = &bytes[4 * i..4 * i + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn bad(offset: u64, message: impl Into<alloc::string::String>) -> Error {
    Error::at(ErrorCode::InvalidAdapter, offset, message)
}

/// `n` f32 values as a byte count, or `Truncated` when it cannot be addressed (it could never fit).
fn f32_bytes(n: u64, at: u64) -> Result<usize> {
    n.checked_mul(4)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| Error::at(ErrorCode::Truncated, at, "array size overflows"))
}

/// Every f32 in `bytes` (starting at file offset `base`) must be finite.
fn check_finite(bytes: &[u8], base: u64, name: &str, what: &str) -> Result<()> {
    match bytes
        .chunks_exact(4)
        .position(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite())
    {
        None => Ok(()),
        Some(i) => Err(Error::at(
            ErrorCode::NonFiniteValue,
            base + 4 * i as u64,
            format!("tensor {name:?}: {what} value {i} is NaN or infinite"),
        )),
    }
}

impl<'a> Adapter<'a> {
    /// Reads and verifies a whole adapter file (spec/adapters.md, Verification order, steps 1-6).
    /// The base binding is checked when the adapter is applied ([`super::apply::assemble`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Adapter<'a>> {
        let len = bytes.len() as u64;
        // 1: budget.
        if len > limits::MAX_ADAPTER_BYTES {
            return Err(Error::at(
                ErrorCode::BudgetExceeded,
                0,
                format!(
                    "the adapter has {len} bytes; the budget is {}",
                    limits::MAX_ADAPTER_BYTES
                ),
            ));
        }
        // 2: magic, version.
        let head = &bytes[..bytes.len().min(4)];
        let kind = match AdapterKind::from_magic(head) {
            Some(k) => k,
            None if head.len() < 4
                && AdapterKind::ALL.iter().any(|k| k.magic().starts_with(head)) =>
            {
                return Err(Error::at(
                    ErrorCode::Truncated,
                    len,
                    "the adapter ends inside its magic",
                ))
            }
            None => {
                return Err(Error::at(
                    ErrorCode::InvalidAdapterMagic,
                    0,
                    "not an adapter: the magic is not ADP1, ASP1 or ALR1",
                ))
            }
        };
        let mut c = Cursor::new(bytes, 0, "adapter");
        c.take(4)?;
        let major = c.u16()?;
        if major != VERSION_MAJOR {
            return Err(Error::at(
                ErrorCode::UnsupportedAdapterVersion,
                4,
                format!("adapter major version {major}; this reader implements {VERSION_MAJOR}"),
            ));
        }
        let version_minor = c.u16()?;
        if version_minor > VERSION_MINOR {
            return Err(Error::at(
                ErrorCode::UnsupportedAdapterVersion,
                6,
                format!("adapter minor version {version_minor}; this reader implements up to {VERSION_MINOR}"),
            ));
        }
        // 3: header fields in table order.
        if bytes.len() < limits::ADAPTER_HEADER_BYTES {
            return Err(Error::at(
                ErrorCode::Truncated,
                len,
                format!(
                    "the adapter has {len} bytes; its header takes {}",
                    limits::ADAPTER_HEADER_BYTES
                ),
            ));
        }
        let header_bytes = c.u32()?;
        if header_bytes as usize != limits::ADAPTER_HEADER_BYTES {
            return Err(bad(
                8,
                format!("header_bytes is {header_bytes}; it must be 128"),
            ));
        }
        let flags = c.u32()?;
        if flags != 0 {
            return Err(Error::at(
                ErrorCode::ReservedNonZero,
                12,
                "adapter flags are not zero",
            ));
        }
        let file_bytes = c.u64()?;
        if file_bytes > len {
            return Err(Error::at(
                ErrorCode::Truncated,
                16,
                format!("the header declares {file_bytes} bytes; the adapter has {len}"),
            ));
        }
        if file_bytes < len {
            return Err(Error::at(
                ErrorCode::TrailingBytes,
                file_bytes,
                format!("the header declares {file_bytes} bytes; the adapter has {len}"),
            ));
        }
        let binding = BaseBinding {
            layout: c.array()?,
            tokenizer: c.array()?,
        };
        let count = c.u32()?;
        if count == 0 {
            return Err(bad(88, "the adapter has no tensor record"));
        }
        if count > limits::MAX_ADAPTER_TENSORS {
            return Err(Error::at(
                ErrorCode::LimitExceeded,
                88,
                format!(
                    "{count} tensor records; the limit is {}",
                    limits::MAX_ADAPTER_TENSORS
                ),
            ));
        }
        if c.u32()? != 0 {
            return Err(Error::at(
                ErrorCode::ReservedNonZero,
                92,
                "reserved header bytes are not zero",
            ));
        }
        let digest: [u8; 32] = c.array()?;
        // 4-5: records, then nothing after them.
        let mut records: Vec<Record<'a>> = Vec::new();
        for _ in 0..count {
            let prev = records.last().map(|r| r.name);
            records.push(parse_record(&mut c, kind, prev)?);
        }
        c.finish()?;
        // 6: the file digest.
        if file_digest(bytes) != digest {
            return Err(Error::at(
                ErrorCode::FileDigestMismatch,
                DIGEST_OFFSET as u64,
                "the SHA-256 of the adapter does not match the digest in its header",
            ));
        }
        Ok(Adapter {
            kind,
            version_minor,
            binding,
            records,
            digest,
        })
    }
}

fn parse_record<'a>(
    c: &mut Cursor<'a>,
    kind: AdapterKind,
    prev: Option<&str>,
) -> Result<Record<'a>> {
    let offset = c.offset();
    let name_len = c.u16()? as usize;
    let name = core::str::from_utf8(c.take(name_len)?)
        .ok()
        .filter(|n| valid_name(n))
        .ok_or_else(|| {
            bad(
                offset,
                "tensor name is not 1..=96 bytes of A-Z a-z 0-9 _ . -",
            )
        })?;
    if let Some(prev) = prev {
        if name == prev {
            return Err(Error::at(
                ErrorCode::DuplicateName,
                offset,
                format!("tensor {name:?} has two records"),
            ));
        }
        if name.as_bytes() < prev.as_bytes() {
            return Err(bad(
                offset,
                format!("record {name:?} follows {prev:?}: names must ascend"),
            ));
        }
    }
    let rank_at = c.offset();
    let rank = c.u8()?;
    if rank == 0 || rank as usize > limits::MAX_RANK {
        return Err(bad(
            rank_at,
            format!("tensor {name:?}: rank {rank}; it must be 1..=4"),
        ));
    }
    if c.u8()? != 0 {
        return Err(Error::at(
            ErrorCode::ReservedNonZero,
            rank_at + 1,
            format!("tensor {name:?}: the reserved byte is not zero"),
        ));
    }
    let mut dims = [1u32; limits::MAX_RANK];
    let dims_at = c.offset();
    for d in dims.iter_mut().take(rank as usize) {
        let at = c.offset();
        *d = c.u32()?;
        if *d == 0 {
            return Err(bad(at, format!("tensor {name:?} has a zero dimension")));
        }
    }
    // The product once every dimension is known to be positive (as the .slm directory).
    let elements =
        crate::format::directory::element_count(&dims[..rank as usize]).map_err(|i| {
            bad(
                dims_at + 4 * i as u64,
                format!("tensor {name:?}: element count overflows"),
            )
        })?;
    let body = match kind {
        AdapterKind::Dense => {
            let at = c.offset();
            let deltas = c.take(f32_bytes(elements, at)?)?;
            check_finite(deltas, at, name, "delta")?;
            Body::Dense { deltas }
        }
        AdapterKind::Sparse => {
            let at = c.offset();
            let nnz = c.u32()? as u64;
            if nnz == 0 {
                return Err(bad(at, format!("tensor {name:?}: no sparse entry")));
            }
            if nnz > elements {
                return Err(bad(
                    at,
                    format!("tensor {name:?}: {nnz} sparse entries for {elements} elements"),
                ));
            }
            let idx_at = c.offset();
            let indices = c.take(f32_bytes(nnz, idx_at)?)?;
            let del_at = c.offset();
            let deltas = c.take(f32_bytes(nnz, del_at)?)?;
            let mut prev: Option<u32> = None;
            for i in 0..nnz as usize {
                let idx = u32_at(indices, i);
                let here = idx_at + 4 * i as u64;
                if idx as u64 >= elements {
                    return Err(Error::at(
                        ErrorCode::SparseIndexOutOfRange,
                        here,
                        format!("tensor {name:?}: index {idx} is not below {elements}"),
                    ));
                }
                if prev.is_some_and(|p| idx <= p) {
                    return Err(Error::at(
                        ErrorCode::SparseIndexOrder,
                        here,
                        format!("tensor {name:?}: index {idx} does not exceed the one before it"),
                    ));
                }
                prev = Some(idx);
            }
            check_finite(deltas, del_at, name, "delta")?;
            Body::Sparse { indices, deltas }
        }
        AdapterKind::LowRank => {
            let at = c.offset();
            let r = c.u32()?;
            if r == 0 {
                return Err(bad(at, format!("tensor {name:?}: low-rank rank 0")));
            }
            if r > limits::MAX_ADAPTER_RANK {
                return Err(Error::at(
                    ErrorCode::LimitExceeded,
                    at,
                    format!(
                        "tensor {name:?}: rank {r}; the limit is {}",
                        limits::MAX_ADAPTER_RANK
                    ),
                ));
            }
            let scale_at = c.offset();
            let scale = c.f32()?;
            if !scale.is_finite() {
                return Err(Error::at(
                    ErrorCode::NonFiniteValue,
                    scale_at,
                    format!("tensor {name:?}: the scale is NaN or infinite"),
                ));
            }
            let cols = dims[rank as usize - 1] as u64;
            let rows = elements / cols;
            let a_at = c.offset();
            let a_n = (r as u64).checked_mul(cols);
            let a = c.take(f32_bytes(a_n.unwrap_or(u64::MAX), a_at)?)?;
            let b_at = c.offset();
            let b_n = rows.checked_mul(r as u64);
            let b = c.take(f32_bytes(b_n.unwrap_or(u64::MAX), b_at)?)?;
            check_finite(a, a_at, name, "A")?;
            check_finite(b, b_at, name, "B")?;
            Body::LowRank {
                rank: r,
                scale,
                a,
                b,
            }
        }
    };
    Ok(Record {
        name,
        rank,
        dims,
        body,
        offset,
    })
}
