//! The tensor directory (spec/slm.md, Tensor directory): one entry per tensor — name, dtype, rank,
//! dims, payload offset and length, digest of the payload — and the payload layout rules.

use super::cursor::{align_up, Cursor};
use super::digest::{tensor_digests_known, DigestRule, KnownDigests};
use super::header::Section;
use super::DType;
use crate::error::{Error, ErrorCode, Result};
use crate::limits;
use alloc::{format, string::String, vec::Vec};

/// One directory entry, borrowing its name from the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorEntry<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub rank: u8,
    /// Outermost first (row-major shape); entries past `rank` are 1.
    pub dims: [u32; limits::MAX_RANK],
    /// Absolute file offset of the payload.
    pub offset: u64,
    pub length: u64,
    pub digest: [u8; 32],
    /// File offset of this entry, for error messages.
    pub entry_offset: u64,
}

impl TensorEntry<'_> {
    pub fn shape(&self) -> &[u32] {
        &self.dims[..self.rank as usize]
    }

    pub fn elements(&self) -> u64 {
        self.shape().iter().map(|&d| d as u64).product()
    }
}

/// A name is 1..=96 bytes of `A-Z a-z 0-9 _ . -`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::MAX_TENSOR_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn bad(offset: u64, message: impl Into<String>) -> Error {
    Error::at(ErrorCode::InvalidTensorDirectory, offset, message)
}

/// An error found inside the entry of tensor `name` (a read the directory cannot hold, a bad
/// dtype code), its message naming the tensor.
fn in_entry(name: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| Error {
        message: format!("tensor {name:?}: {}", e.message),
        ..e
    }
}

/// Parses the directory and checks each entry and the payload layout against the data section.
/// Does not hash payloads (see `verify_digests`).
pub fn parse<'a>(file: &'a [u8], dir: Section, data: Section) -> Result<Vec<TensorEntry<'a>>> {
    let bytes = &file[dir.offset as usize..(dir.offset + dir.length) as usize];
    let mut c = Cursor::new(bytes, dir.offset, "tensor directory");
    let at = c.offset();
    let count = c.u32()?;
    if count == 0 {
        return Err(bad(at, "the directory lists no tensors"));
    }
    if count > limits::MAX_TENSORS {
        return Err(Error::at(
            ErrorCode::LimitExceeded,
            at,
            format!("{count} tensors; the limit is {}", limits::MAX_TENSORS),
        ));
    }
    let mut entries: Vec<TensorEntry<'a>> = Vec::with_capacity(count as usize);
    // The next payload must start here.
    let mut expected = data.offset;
    for _ in 0..count {
        let entry_offset = c.offset();
        let name_len = c.u16()? as usize;
        let name_bytes = c.take(name_len)?;
        let name = core::str::from_utf8(name_bytes)
            .ok()
            .filter(|n| valid_name(n))
            .ok_or_else(|| {
                bad(
                    entry_offset,
                    "tensor name is not 1..=96 bytes of A-Z a-z 0-9 _ . -",
                )
            })?;
        if entries.iter().any(|e| e.name == name) {
            return Err(Error::at(
                ErrorCode::DuplicateName,
                entry_offset,
                format!("tensor {name:?} appears twice"),
            ));
        }
        let dtype_at = c.offset();
        let dtype = DType::from_code(c.u8().map_err(in_entry(name))?).map_err(|e| Error {
            offset: Some(dtype_at),
            ..in_entry(name)(e)
        })?;
        let rank_at = c.offset();
        let rank = c.u8().map_err(in_entry(name))?;
        if rank == 0 || rank as usize > limits::MAX_RANK {
            return Err(bad(
                rank_at,
                format!("tensor {name:?} has rank {rank}; it must be 1..=4"),
            ));
        }
        let mut dims = [1u32; limits::MAX_RANK];
        let dims_at = c.offset();
        let mut inner_at = rank_at;
        for d in dims.iter_mut().take(rank as usize) {
            let dim_at = c.offset();
            inner_at = dim_at;
            *d = c.u32().map_err(in_entry(name))?;
            if *d == 0 {
                return Err(bad(dim_at, format!("tensor {name:?} has a zero dimension")));
            }
        }
        // The product once every dimension is known to be positive (a zero one after an
        // overflowing prefix is a zero dimension, not an overflow), reported at the dimension
        // where it overflows.
        let elements = element_count(&dims[..rank as usize]).map_err(|i| {
            bad(
                dims_at + 4 * i as u64,
                format!("tensor {name:?} element count overflows"),
            )
        })?;
        let inner = dims[rank as usize - 1] as usize;
        if !inner.is_multiple_of(dtype.block_elems()) {
            return Err(Error::at(
                ErrorCode::ShapeMismatch,
                inner_at,
                format!(
                    "tensor {name:?}: innermost dimension {inner} is not a multiple of the {} block of {} elements",
                    dtype.name(),
                    dtype.block_elems()
                ),
            ));
        }
        let offset_at = c.offset();
        let offset = c.u64().map_err(in_entry(name))?;
        let length_at = c.offset();
        let length = c.u64().map_err(in_entry(name))?;
        let digest: [u8; 32] = c.array().map_err(in_entry(name))?;
        let want = dtype
            .bytes_for(elements)
            .ok_or_else(|| bad(length_at, format!("tensor {name:?} byte size overflows")))?;
        if length != want {
            return Err(bad(
                length_at,
                format!(
                    "tensor {name:?} has {length} bytes; {elements} {} elements take {want}",
                    dtype.name()
                ),
            ));
        }
        if offset % limits::ALIGNMENT != 0 {
            return Err(Error::at(
                ErrorCode::Misaligned,
                offset_at,
                format!(
                    "tensor {name:?} payload offset {offset} is not a multiple of {}",
                    limits::ALIGNMENT
                ),
            ));
        }
        if offset != expected {
            return Err(Error::at(
                ErrorCode::LayoutViolation,
                offset_at,
                format!(
                    "tensor {name:?} payload starts at {offset}; payloads are packed in directory order, so it must start at {expected}"
                ),
            ));
        }
        let end = offset
            .checked_add(length)
            .filter(|&e| e <= data.offset + data.length)
            .ok_or_else(|| {
                Error::at(
                    ErrorCode::LayoutViolation,
                    length_at,
                    format!("tensor {name:?} payload runs past the end of the data section"),
                )
            })?;
        entries.push(TensorEntry {
            name,
            dtype,
            rank,
            dims,
            offset,
            length,
            digest,
            entry_offset,
        });
        // Padding up to the next payload (or to the end of the section) must be zero.
        let data_end = data.offset + data.length;
        let next = align_up(end).unwrap_or(u64::MAX).min(data_end);
        if let Some(i) = file[end as usize..next as usize]
            .iter()
            .position(|&b| b != 0)
        {
            return Err(Error::at(
                ErrorCode::NonZeroPadding,
                end + i as u64,
                format!("padding after tensor {name:?} is not zero"),
            ));
        }
        expected = align_up(end).unwrap_or(u64::MAX);
    }
    // `count` ≥ 1 entries were read.
    let last = entries.last().map_or("", |e| e.name);
    c.finish().map_err(|e| Error {
        message: format!("{} (tensor {last:?})", e.message),
        ..e
    })?;
    let last_end = entries
        .last()
        .map(|e| e.offset + e.length)
        .unwrap_or(data.offset);
    if last_end != data.offset + data.length {
        return Err(Error::at(
            ErrorCode::LayoutViolation,
            last_end,
            format!(
                "the data section has {} bytes after the payload of the last tensor, {last:?}",
                data.offset + data.length - last_end
            ),
        ));
    }
    Ok(entries)
}

/// The payload spans `(offset, length)` listed by `dir`, the directory section's bytes (at file
/// offset `at`), read with no check but that every field is there (None otherwise): for hashing
/// payloads while the rest of a file arrives, before [`parse`] has checked the directory. The
/// layout is [`parse`]'s; a wrong span only means that its digests are computed at the end.
#[cfg_attr(not(feature = "abi"), allow(dead_code))] // only the ABI's loader reads it early
pub(crate) fn payload_spans(dir: &[u8], at: u64) -> Option<Vec<(u64, u64)>> {
    let mut c = Cursor::new(dir, at, "tensor directory");
    let count = c.u32().ok()?;
    if count > limits::MAX_TENSORS {
        return None;
    }
    let mut spans = Vec::new();
    spans.try_reserve_exact(count as usize).ok()?;
    for _ in 0..count {
        let name_len = c.u16().ok()?;
        c.take(name_len as usize).ok()?;
        c.u8().ok()?; // dtype
        let rank = c.u8().ok()?;
        if rank as usize > limits::MAX_RANK {
            return None;
        }
        for _ in 0..rank {
            c.u32().ok()?;
        }
        let (offset, length) = (c.u64().ok()?, c.u64().ok()?);
        c.take(32).ok()?; // digest
        spans.push((offset, length));
    }
    Some(spans)
}

/// Hashes every payload by `rule` (taking the chunk digests `known` has) and compares with its
/// directory digest; the first mismatch in directory order is reported.
pub(crate) fn verify_digests(
    file: &[u8],
    entries: &[TensorEntry<'_>],
    rule: DigestRule,
    known: &KnownDigests,
) -> Result<()> {
    let payloads: Vec<&[u8]> = entries
        .iter()
        .map(|e| &file[e.offset as usize..(e.offset + e.length) as usize])
        .collect();
    let digests = tensor_digests_known(rule, &payloads, |i, start, len| {
        known.chunk(entries[i].offset as usize + start, len)
    });
    for (e, digest) in entries.iter().zip(digests) {
        if digest != e.digest {
            return Err(Error::at(
                ErrorCode::TensorDigestMismatch,
                e.offset,
                format!(
                    "tensor {:?}: the digest of its {} payload bytes does not match the directory",
                    e.name, e.length
                ),
            ));
        }
    }
    Ok(())
}

/// The product of `dims` (each at least 1), or the index of the dimension at which it
/// overflows u64 (the .slm directory's and the adapter records' element count).
pub(crate) fn element_count(dims: &[u32]) -> core::result::Result<u64, usize> {
    let mut n: u64 = 1;
    for (i, &d) in dims.iter().enumerate() {
        n = n.checked_mul(u64::from(d)).ok_or(i)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Slm;

    const FILE: &[u8] = include_bytes!("../../../corpus/spm-gqa-untied-q8_0.slm");

    #[test]
    fn payload_spans_reads_what_parse_reads_and_nothing_else() {
        let slm = Slm::parse(FILE).unwrap();
        let dir = slm.header.sections.directory;
        let bytes = &FILE[dir.offset as usize..dir.end().unwrap() as usize];
        let spans = payload_spans(bytes, dir.offset).unwrap();
        let parsed: Vec<(u64, u64)> = slm.tensors.iter().map(|t| (t.offset, t.length)).collect();
        assert_eq!(spans, parsed);
        // Any cut short of the whole directory is None; any change is read without panicking.
        for n in 0..bytes.len() {
            assert_eq!(payload_spans(&bytes[..n], dir.offset), None, "{n} bytes");
        }
        for at in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[at] ^= 0x80;
            let _ = payload_spans(&b, dir.offset);
        }
    }

    /// errors.md: directory errors quote the tensor's name. A directory cut anywhere after an
    /// entry's name and before its end is `Truncated` at the first field it cannot hold,
    /// naming that tensor; bytes left after the last entry are `TrailingBytes` naming the last
    /// tensor.
    #[test]
    fn cut_entries_name_their_tensor() {
        let slm = Slm::parse(FILE).unwrap();
        let (dir, data) = (slm.header.sections.directory, slm.header.sections.data);
        let mut cuts = 0;
        for t in &slm.tensors {
            // The fields after the name: dtype, rank, the dims, offset, length, digest.
            let dtype_at = t.entry_offset + 2 + t.name.len() as u64;
            let dims_end = dtype_at + 2 + 4 * u64::from(t.rank);
            let mut fields = alloc::vec![dtype_at, dtype_at + 1];
            fields.extend((dtype_at + 2..dims_end).step_by(4));
            fields.extend([dims_end, dims_end + 8, dims_end + 16]);
            for cut in dtype_at..dims_end + 48 {
                let short = Section {
                    offset: dir.offset,
                    length: cut - dir.offset,
                };
                let field = fields.iter().copied().filter(|&f| f <= cut).max();
                let e = parse(FILE, short, data).unwrap_err();
                assert_eq!(
                    (e.code, e.offset),
                    (ErrorCode::Truncated, field),
                    "cut at {cut}"
                );
                assert!(
                    e.message.starts_with(&format!("tensor {:?}: ", t.name)),
                    "cut at {cut}: {}",
                    e.message
                );
                cuts += 1;
            }
        }
        assert!(cuts > 100, "{cuts} cuts");
        // The directory widened over the three bytes after it (the section table, which would
        // refuse the overlap, is not parse's to check).
        let wide = Section {
            offset: dir.offset,
            length: dir.length + 3,
        };
        let e = parse(FILE, wide, data).unwrap_err();
        let last = slm.tensors.last().unwrap().name;
        assert_eq!(
            (e.code, e.offset),
            (ErrorCode::TrailingBytes, Some(dir.end().unwrap()))
        );
        assert!(
            e.message.ends_with(&format!("(tensor {last:?})")),
            "{}",
            e.message
        );
    }
}
