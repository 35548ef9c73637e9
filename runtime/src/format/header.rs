//! The fixed 256-byte header (spec/slm.md, Header): magic, version, model shape, section table and
//! the file digest.

use super::cursor::{align_up, Cursor};
use crate::error::{Error, ErrorCode, Result};
use crate::limits;
use alloc::format;

/// `\x89SLM\r\n\x1a\n`: a non-ASCII first byte, then CR LF, EOF and LF to catch text-mode damage.
pub const MAGIC: [u8; 8] = [0x89, b'S', b'L', b'M', b'\r', b'\n', 0x1a, b'\n'];
/// The format major version this reader implements (the original's SLM1 was version 1).
pub const VERSION_MAJOR: u16 = 2;
/// The highest minor version of major 2 this reader knows, and the one the writer writes: 2.1
/// (chunked tensor digests, the file digest up to the data section; 2.0 files stay readable).
pub const VERSION_MINOR: u16 = 1;
/// Architecture id of the Llama-family decoder.
pub const ARCH_LLAMA: u32 = 1;
/// Header flag: the classifier shares the token embedding (no `output.weight`).
pub const FLAG_TIED_CLASSIFIER: u32 = 1;
/// Every flag bit this version defines.
pub const KNOWN_FLAGS: u32 = FLAG_TIED_CLASSIFIER;

/// Offset of the file digest inside the header (what it covers: [`super::digest::file_digest`]).
pub const DIGEST_OFFSET: usize = 224;

/// The model shape and numeric constants a header carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    pub arch: u32,
    pub vocab_size: u32,
    pub dim: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub ffn_dim: u32,
    pub max_context: u32,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub tied_classifier: bool,
}

impl Config {
    /// Width of all query heads together.
    pub fn q_dim(&self) -> u32 {
        self.n_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> u32 {
        self.n_kv_heads * self.head_dim
    }

    /// Checks every rule of spec/slm.md on the architecture and shape fields, in the order of
    /// the header table (the first failing field is reported, at that field's offset).
    pub fn validate(&self) -> Result<()> {
        self.check_arch()?;
        self.check_shape()
    }

    /// The architecture id (offset 24).
    fn check_arch(&self) -> Result<()> {
        if self.arch != ARCH_LLAMA {
            return Err(Error::at(
                ErrorCode::UnsupportedArchitecture,
                24,
                format!("architecture id {} is not llama (1)", self.arch),
            ));
        }
        Ok(())
    }

    /// The shape fields (offsets 32..72), field by field in table order: range, then the
    /// field's relation to the fields before it.
    fn check_shape(&self) -> Result<()> {
        in_range("vocab_size", self.vocab_size, limits::MAX_VOCAB, 32)?;
        in_range("dim", self.dim, limits::MAX_DIM, 36)?;
        in_range("n_layers", self.n_layers, limits::MAX_LAYERS, 40)?;
        in_range("n_heads", self.n_heads, limits::MAX_HEADS, 44)?;
        in_range("n_kv_heads", self.n_kv_heads, limits::MAX_HEADS, 48)?;
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(Error::at(
                ErrorCode::InvalidHeader,
                48,
                format!(
                    "n_kv_heads {} does not divide n_heads {}",
                    self.n_kv_heads, self.n_heads
                ),
            ));
        }
        in_range("head_dim", self.head_dim, limits::MAX_HEAD_DIM, 52)?;
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::at(
                ErrorCode::InvalidHeader,
                52,
                format!("head_dim {} is odd (RoPE rotates pairs)", self.head_dim),
            ));
        }
        if self.q_dim() > limits::MAX_DIM {
            return Err(Error::at(
                ErrorCode::LimitExceeded,
                52,
                format!(
                    "n_heads × head_dim = {} exceeds the limit {}",
                    self.q_dim(),
                    limits::MAX_DIM
                ),
            ));
        }
        in_range("ffn_dim", self.ffn_dim, limits::MAX_FFN_DIM, 56)?;
        in_range("max_context", self.max_context, limits::MAX_CONTEXT, 60)?;
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(Error::at(
                ErrorCode::InvalidHeader,
                64,
                format!(
                    "rope_theta {} is not a finite positive number",
                    self.rope_theta
                ),
            ));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return Err(Error::at(
                ErrorCode::InvalidHeader,
                68,
                format!("rms_eps {} is not a finite positive number", self.rms_eps),
            ));
        }
        Ok(())
    }
}

/// A shape field must be 1..=max: 0 is `InvalidHeader`, above is `LimitExceeded`.
fn in_range(name: &str, value: u32, max: u32, offset: u64) -> Result<()> {
    if value == 0 {
        return Err(Error::at(
            ErrorCode::InvalidHeader,
            offset,
            format!("{name} is 0"),
        ));
    }
    if value > max {
        return Err(Error::at(
            ErrorCode::LimitExceeded,
            offset,
            format!("{name} {value} exceeds the limit {max}"),
        ));
    }
    Ok(())
}

/// Where one section lies: absolute offset and byte length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Section {
    pub offset: u64,
    pub length: u64,
}

impl Section {
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.length)
    }
}

/// The four sections, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sections {
    pub metadata: Section,
    pub tokenizer: Section,
    pub directory: Section,
    pub data: Section,
}

impl Sections {
    pub const NAMES: [&'static str; 4] =
        ["metadata", "tokenizer", "tensor directory", "tensor data"];

    pub fn as_array(&self) -> [Section; 4] {
        [self.metadata, self.tokenizer, self.directory, self.data]
    }

    /// Lays out sections of the given lengths canonically: metadata right after the header, each
    /// next section at the next 64-byte boundary. Returns the sections and the file length.
    pub fn canonical(lengths: [u64; 4]) -> Option<(Sections, u64)> {
        let mut offset = limits::HEADER_BYTES as u64;
        let mut out = [Section::default(); 4];
        for (slot, length) in out.iter_mut().zip(lengths) {
            *slot = Section { offset, length };
            offset = align_up(offset.checked_add(length)?)?;
        }
        // The file ends where the data section ends (no padding after it).
        let file_len = out[3].end()?;
        Some((
            Sections {
                metadata: out[0],
                tokenizer: out[1],
                directory: out[2],
                data: out[3],
            },
            file_len,
        ))
    }
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Header {
    pub version_minor: u16,
    pub file_bytes: u64,
    pub config: Config,
    pub sections: Sections,
    pub file_digest: [u8; 32],
}

/// `Truncated` for a file of `len` bytes, shorter than the header: at its length, where the data
/// ran out.
fn short_header(len: usize) -> Error {
    Error::at(
        ErrorCode::Truncated,
        len as u64,
        format!(
            "the file has {len} bytes; the header needs {}",
            limits::HEADER_BYTES
        ),
    )
}

/// Checks the budget, magic and version of the first bytes of a file. Used first by the
/// one-buffer reader and by the streaming loader as soon as it holds the header.
pub fn check_prefix(bytes: &[u8], total_len: u64) -> Result<()> {
    if total_len > limits::MAX_MODEL_BYTES {
        return Err(Error::at(
            ErrorCode::BudgetExceeded,
            0,
            format!(
                "the file has {} bytes; the model budget is {} bytes",
                total_len,
                limits::MAX_MODEL_BYTES
            ),
        ));
    }
    let n = bytes.len().min(MAGIC.len());
    if bytes[..n] != MAGIC[..n] {
        return Err(Error::at(
            ErrorCode::InvalidModelMagic,
            0,
            "the file does not start with the .slm magic 89 53 4C 4D 0D 0A 1A 0A",
        ));
    }
    if bytes.len() < 12 {
        return Err(short_header(bytes.len()));
    }
    let major = u16::from_le_bytes([bytes[8], bytes[9]]);
    let minor = u16::from_le_bytes([bytes[10], bytes[11]]);
    if major != VERSION_MAJOR || minor > VERSION_MINOR {
        // The field that fails: version_major (offset 8), else version_minor (offset 10).
        return Err(Error::at(
            ErrorCode::UnsupportedModelVersion,
            if major != VERSION_MAJOR { 8 } else { 10 },
            format!(
                "format version {major}.{minor}; this reader implements {VERSION_MAJOR}.0 to {VERSION_MAJOR}.{VERSION_MINOR}"
            ),
        ));
    }
    Ok(())
}

/// Decodes and checks the header. `bytes` holds at least the header; `total_len` is the length of
/// the whole file (known to a streaming reader before all bytes arrive).
pub fn parse_header(bytes: &[u8], total_len: u64) -> Result<Header> {
    check_prefix(bytes, total_len)?;
    // A header cut short is refused before any of its fields, where the data ran out.
    if bytes.len() < limits::HEADER_BYTES {
        return Err(short_header(bytes.len()));
    }
    let mut c = Cursor::new(&bytes[..limits::HEADER_BYTES], 0, "header");
    let _magic: [u8; 8] = c.array()?;
    let _major = c.u16()?;
    let version_minor = c.u16()?;
    let header_bytes = c.u32()?;
    let file_bytes = c.u64()?;
    let arch = c.u32()?;
    let flags = c.u32()?;
    let vocab_size = c.u32()?;
    let dim = c.u32()?;
    let n_layers = c.u32()?;
    let n_heads = c.u32()?;
    let n_kv_heads = c.u32()?;
    let head_dim = c.u32()?;
    let ffn_dim = c.u32()?;
    let max_context = c.u32()?;
    let rope_theta = c.f32()?;
    let rms_eps = c.f32()?;
    let reserved_a = c.u64()?;
    let mut sections = [Section::default(); 4];
    for s in sections.iter_mut() {
        s.offset = c.u64()?;
        s.length = c.u64()?;
    }
    let reserved_b: [u8; 80] = c.array()?;
    let file_digest: [u8; 32] = c.array()?;

    if header_bytes as usize != limits::HEADER_BYTES {
        return Err(Error::at(
            ErrorCode::InvalidHeader,
            12,
            format!(
                "header_bytes is {header_bytes}; version 2 headers are {} bytes",
                limits::HEADER_BYTES
            ),
        ));
    }
    if file_bytes != total_len {
        let code = if file_bytes > total_len {
            ErrorCode::Truncated
        } else {
            ErrorCode::TrailingBytes
        };
        return Err(Error::at(
            code,
            total_len.min(file_bytes),
            format!("the header says the file has {file_bytes} bytes; it has {total_len}"),
        ));
    }
    let config = Config {
        arch,
        vocab_size,
        dim,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn_dim,
        max_context,
        rope_theta,
        rms_eps,
        tied_classifier: flags & FLAG_TIED_CLASSIFIER != 0,
    };
    // Table order: architecture, flags, shape fields, then the reserved bytes.
    config.check_arch()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Error::at(
            ErrorCode::ReservedNonZero,
            28,
            format!("unknown flag bits {:#x}", flags & !KNOWN_FLAGS),
        ));
    }
    config.check_shape()?;
    if reserved_a != 0 {
        return Err(Error::at(
            ErrorCode::ReservedNonZero,
            72,
            "reserved header bytes 72..80 are not zero",
        ));
    }
    if let Some(i) = reserved_b.iter().position(|&b| b != 0) {
        return Err(Error::at(
            ErrorCode::ReservedNonZero,
            144,
            format!(
                "reserved header bytes 144..224 are not zero (byte {})",
                144 + i
            ),
        ));
    }
    let sections = Sections {
        metadata: sections[0],
        tokenizer: sections[1],
        directory: sections[2],
        data: sections[3],
    };
    check_layout(&sections, file_bytes)?;
    Ok(Header {
        version_minor,
        file_bytes,
        config,
        sections,
        file_digest,
    })
}

/// Section table rules: each section 64-byte aligned, the first right after the header, each next
/// one at the first 64-byte boundary after the previous one's end, the last ending at the end of
/// the file; per-section size limits.
fn check_layout(sections: &Sections, file_bytes: u64) -> Result<()> {
    // The directory and data sections have no limit of their own: the budget bounds the file,
    // and a section longer than the file is a layout violation (spec/slm.md, Header).
    let limits_by_section = [
        limits::MAX_METADATA_BYTES,
        limits::MAX_TOKENIZER_BYTES,
        u64::MAX,
        u64::MAX,
    ];
    let mut expected = limits::HEADER_BYTES as u64;
    for (i, (s, max)) in sections
        .as_array()
        .iter()
        .zip(limits_by_section)
        .enumerate()
    {
        let field = 80 + 16 * i as u64;
        let name = Sections::NAMES[i];
        if s.offset % limits::ALIGNMENT != 0 {
            return Err(Error::at(
                ErrorCode::Misaligned,
                field,
                format!(
                    "{name} section offset {} is not a multiple of {}",
                    s.offset,
                    limits::ALIGNMENT
                ),
            ));
        }
        if s.offset != expected {
            return Err(Error::at(
                ErrorCode::LayoutViolation,
                field,
                format!(
                    "{name} section starts at {}; it must start at {expected}",
                    s.offset
                ),
            ));
        }
        if s.length > max {
            return Err(Error::at(
                ErrorCode::LimitExceeded,
                field + 8,
                format!("{name} section has {} bytes; the limit is {max}", s.length),
            ));
        }
        let end = s.end().filter(|&e| e <= file_bytes).ok_or_else(|| {
            Error::at(
                ErrorCode::LayoutViolation,
                field + 8,
                format!("{name} section runs past the end of the file"),
            )
        })?;
        expected = if i == 3 {
            end
        } else {
            align_up(end).ok_or_else(|| {
                Error::at(
                    ErrorCode::LayoutViolation,
                    field + 8,
                    "section end overflows",
                )
            })?
        };
    }
    if expected != file_bytes {
        return Err(Error::at(
            ErrorCode::TrailingBytes,
            expected,
            format!(
                "{} bytes follow the tensor data section",
                file_bytes - expected
            ),
        ));
    }
    Ok(())
}

/// Encodes a header. The digest field is written as given (the writer fills it last).
pub fn encode_header(
    config: &Config,
    sections: &Sections,
    file_bytes: u64,
    digest: &[u8; 32],
) -> [u8; 256] {
    let mut h = [0u8; 256];
    let mut put = |off: usize, b: &[u8]| h[off..off + b.len()].copy_from_slice(b);
    put(0, &MAGIC);
    put(8, &VERSION_MAJOR.to_le_bytes());
    put(10, &VERSION_MINOR.to_le_bytes());
    put(12, &(limits::HEADER_BYTES as u32).to_le_bytes());
    put(16, &file_bytes.to_le_bytes());
    put(24, &config.arch.to_le_bytes());
    let flags = if config.tied_classifier {
        FLAG_TIED_CLASSIFIER
    } else {
        0
    };
    put(28, &flags.to_le_bytes());
    let u32s = [
        config.vocab_size,
        config.dim,
        config.n_layers,
        config.n_heads,
        config.n_kv_heads,
        config.head_dim,
        config.ffn_dim,
        config.max_context,
    ];
    for (i, v) in u32s.iter().enumerate() {
        put(32 + 4 * i, &v.to_le_bytes());
    }
    put(64, &config.rope_theta.to_le_bytes());
    put(68, &config.rms_eps.to_le_bytes());
    for (i, s) in sections.as_array().iter().enumerate() {
        put(80 + 16 * i, &s.offset.to_le_bytes());
        put(88 + 16 * i, &s.length.to_le_bytes());
    }
    put(DIGEST_OFFSET, digest);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid header of a file with four empty sections, passed through `edit`, then parsed.
    fn parse_edited(edit: impl Fn(&mut [u8; 256])) -> Result<Header> {
        let config = Config {
            arch: ARCH_LLAMA,
            vocab_size: 8,
            dim: 32,
            n_layers: 1,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 16,
            ffn_dim: 32,
            max_context: 16,
            rope_theta: 10000.0,
            rms_eps: 1e-5,
            tied_classifier: true,
        };
        let (sections, len) = Sections::canonical([0; 4]).unwrap();
        let mut h = encode_header(&config, &sections, len, &[0; 32]);
        edit(&mut h);
        parse_header(&h, len)
    }

    fn put_u32(h: &mut [u8; 256], at: usize, v: u32) {
        h[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn failure(edit: impl Fn(&mut [u8; 256])) -> (ErrorCode, Option<u64>) {
        let e = parse_edited(edit).unwrap_err();
        (e.code, e.offset)
    }

    #[test]
    fn header_fields_fail_in_table_order() {
        assert!(parse_edited(|_| {}).is_ok());
        // architecture (24) before flags (28)
        let arch_and_flags = |h: &mut [u8; 256]| {
            put_u32(h, 24, 2);
            put_u32(h, 28, 2);
        };
        assert_eq!(
            failure(arch_and_flags),
            (ErrorCode::UnsupportedArchitecture, Some(24))
        );
        // shape fields before the reserved bytes
        let vocab_and_reserved = |h: &mut [u8; 256]| {
            put_u32(h, 32, 0);
            h[72] = 1;
        };
        assert_eq!(
            failure(vocab_and_reserved),
            (ErrorCode::InvalidHeader, Some(32))
        );
        // n_kv_heads (48) not dividing n_heads is reported before a zero ffn_dim (56)
        let kv_and_ffn = |h: &mut [u8; 256]| {
            put_u32(h, 48, 3);
            put_u32(h, 56, 0);
        };
        assert_eq!(failure(kv_and_ffn), (ErrorCode::InvalidHeader, Some(48)));
        // an odd head_dim (52) is reported before a context over the limit (60)
        let head_dim_and_context = |h: &mut [u8; 256]| {
            put_u32(h, 52, 15);
            put_u32(h, 60, u32::MAX);
        };
        assert_eq!(
            failure(head_dim_and_context),
            (ErrorCode::InvalidHeader, Some(52))
        );
    }

    #[test]
    fn reserved_bytes_are_reported_at_their_field() {
        for (byte, field) in [(72, 72), (79, 72), (144, 144), (200, 144), (223, 144)] {
            assert_eq!(
                failure(|h: &mut [u8; 256]| h[byte] = 1),
                (ErrorCode::ReservedNonZero, Some(field)),
                "byte {byte}"
            );
        }
    }

    #[test]
    fn a_section_longer_than_the_file_is_a_layout_violation() {
        // Data section (table entry at 128) with a length far beyond the file and the budget.
        let huge =
            |h: &mut [u8; 256]| h[136..144].copy_from_slice(&(u64::MAX - 1000).to_le_bytes());
        assert_eq!(failure(huge), (ErrorCode::LayoutViolation, Some(136)));
        let directory =
            |h: &mut [u8; 256]| h[120..128].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert_eq!(failure(directory), (ErrorCode::LayoutViolation, Some(120)));
    }
}
