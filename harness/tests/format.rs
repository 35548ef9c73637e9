//! The `.slm` reader against spec/slm.md: every malformed case gets exactly its error code, the
//! committed corpora match their generators, the writer round-trips, and no input makes the reader
//! panic or accept a damaged file.

mod common;

use harness::{fixtures, inspect, malformed};
use proptest::prelude::*;
use runtime::format::digest::{tensor_digest, DigestRule};
use runtime::format::{self, Slm};
use runtime::{limits, ErrorCode};
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::sync::OnceLock;

#[test]
fn every_malformed_case_reports_its_code() {
    let cases = malformed::cases();
    let mut mismatches = Vec::new();
    for c in &cases {
        let got = match inspect::verify(&c.bytes) {
            Ok(_) => "accepted".to_string(),
            Err(e) if e.code == c.expected => continue,
            Err(e) => inspect::describe_error(&e),
        };
        mismatches.push(format!(
            "  {}: expected {} {} ({}), got {got}",
            c.name, c.expected as u32, c.expected, c.rule
        ));
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} malformed cases are misreported:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

/// errors.md: directory errors quote the tensor's name — every directory case past the entry's
/// name (those before it have no valid name to quote).
#[test]
fn directory_cases_name_their_tensor() {
    let before_a_name = [
        "directory-empty",
        "directory-count-over-limit",
        "directory-truncated",
        "directory-name-bad-char",
        "directory-name-empty",
        "directory-name-too-long",
        "directory-name-not-utf8",
    ];
    let mut checked = 0;
    for c in malformed::cases() {
        if !c.name.starts_with("directory-") || before_a_name.contains(&c.name.as_str()) {
            continue;
        }
        let e = inspect::verify(&c.bytes).unwrap_err();
        let quoted = e.message.match_indices('"').count() >= 2
            && (e.message.contains("tensor \"") || e.message.contains("tensor, \""));
        assert!(quoted, "{}: {}", c.name, e.message);
        checked += 1;
    }
    assert!(checked >= 15, "{checked} directory cases");
}

/// The offsets errors.md gives directory cases, worked out from the base's directory here
/// (not taken from the reader): the payload offset or length field of the entry whose payload
/// moved, and the end of the last payload for data after it.
#[test]
fn directory_cases_report_their_offsets() {
    let base = malformed::base_bytes();
    let slm = Slm::parse(&base).unwrap();
    // The file offset of entry i's payload offset field (its length field is 8 bytes on).
    let offset_field = |i: usize| {
        let t = &slm.tensors[i];
        t.entry_offset + 2 + t.name.len() as u64 + 2 + 4 * u64::from(t.rank)
    };
    let last = slm.tensors.last().unwrap();
    let expect = [
        ("directory-first-payload-gap", offset_field(0)),
        ("directory-payload-misaligned", offset_field(1)),
        ("directory-payload-gap", offset_field(1)),
        ("directory-length-wrong", offset_field(1) + 8),
        (
            "directory-data-after-last-payload",
            last.offset + last.length,
        ),
    ];
    let cases = malformed::cases();
    for (name, at) in expect {
        let c = cases.iter().find(|c| c.name == name).expect(name);
        let e = inspect::verify(&c.bytes).unwrap_err();
        assert_eq!((e.code, e.offset), (c.expected, Some(at)), "{name}: {e}");
    }
}

/// The offsets errors.md gives the header's cases: a version at the field that fails, a file
/// cut short at its length (where the data ran out), whatever the length.
#[test]
fn header_cases_report_their_offsets() {
    let cases = malformed::cases();
    let mut checked = 0;
    for c in &cases {
        let expected = match c.name.as_str() {
            "version-major-1" | "version-major-3" => 8,
            "version-minor-2" => 10,
            "truncated-empty"
            | "truncated-in-magic"
            | "truncated-in-version"
            | "truncated-header"
            | "file-truncated" => c.bytes.len() as u64,
            _ => continue,
        };
        let e = inspect::verify(&c.bytes).unwrap_err();
        assert_eq!(
            (e.code, e.offset),
            (c.expected, Some(expected)),
            "{}: {e}",
            c.name
        );
        checked += 1;
    }
    assert_eq!(
        checked, 8,
        "a header case of the matrix was renamed or removed"
    );
}

/// A block dtype's innermost dimension that does not split into blocks is reported at that
/// dimension's field (errors.md: the offending field), which holds the dimension.
#[test]
fn an_innermost_dimension_off_the_block_is_reported_at_its_field() {
    let cases = malformed::cases();
    let mut checked = 0;
    for c in cases.iter().filter(|c| c.name.ends_with("-innermost")) {
        let e = inspect::verify(&c.bytes).unwrap_err();
        assert_eq!(e.code, ErrorCode::ShapeMismatch, "{}: {e}", c.name);
        let at = e.offset.expect("an offset") as usize;
        let field = u32::from_le_bytes(c.bytes[at..at + 4].try_into().unwrap());
        assert!(
            e.message.contains(&format!("innermost dimension {field} ")),
            "{}: {e}",
            c.name
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "the q8_0 and q4_0 innermost cases");
}

/// A zero dimension is reported at its field, also after dimensions whose product would
/// overflow (the element count of dimensions with a zero in them is 0): in a .slm directory and
/// in an adapter record.
#[test]
fn a_zero_dimension_is_reported_at_its_field() {
    let zero_at = |name: &str, bytes: &[u8], e: runtime::Error| {
        assert!(e.message.contains("zero dimension"), "{name}: {e}");
        let at = e.offset.expect("an offset") as usize;
        assert_eq!(&bytes[at..at + 4], &[0; 4], "{name}: {e}");
    };
    let cases = malformed::cases();
    let mut checked = 0;
    for c in cases.iter().filter(|c| c.name.contains("zero-dim")) {
        zero_at(&c.name, &c.bytes, inspect::verify(&c.bytes).unwrap_err());
        checked += 1;
    }
    let (adapters, _) = malformed::adapters::cases(&fixtures::corpus_dir()).unwrap();
    for c in adapters.iter().filter(|c| c.name.starts_with("dim-zero")) {
        let (_, bytes) = c.file.as_ref().unwrap();
        let e = runtime::adapter::Adapter::parse(bytes).unwrap_err();
        zero_at(&c.name, bytes, e);
        checked += 1;
    }
    assert_eq!(checked, 4, "two .slm and two adapter zero-dimension cases");
}

#[test]
fn malformed_cases_are_well_formed_and_small() {
    let cases = malformed::cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    for c in &cases {
        assert!(
            c.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'),
            "{}: file-safe name",
            c.name
        );
        assert!(
            !c.rule.is_empty() && !c.rule.contains('\n'),
            "{}: one-line rule",
            c.name
        );
        if c.stored() {
            assert!(
                c.bytes.len() <= 16 * 1024,
                "{}: {} bytes",
                c.name,
                c.bytes.len()
            );
        }
    }
    // Exactly one case is not stored: the over-budget one.
    let unstored: Vec<&str> = cases
        .iter()
        .filter(|c| !c.stored())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(unstored, ["budget-exceeded"]);
    // Determinism: a second build gives the same bytes.
    let again = malformed::cases();
    assert!(cases.iter().zip(&again).all(|(a, b)| a.bytes == b.bytes));
}

#[test]
fn digest_mismatches_name_the_tensor() {
    for c in malformed::cases() {
        if c.expected != ErrorCode::TensorDigestMismatch {
            continue;
        }
        let e = Slm::parse(&c.bytes).unwrap_err();
        let named = [
            "blk.0.ffn_down.weight",
            "output_norm.weight",
            "token_embd.weight",
        ]
        .iter()
        .any(|t| e.message.contains(&format!("{t:?}")) && c.rule.contains(t));
        assert!(named, "{}: {e}", c.name);
    }
}

#[test]
fn malformed_base_is_valid_and_identical_to_the_writer() {
    let base = malformed::base_bytes();
    let written = format::write(&malformed::base_model()).expect("the base is valid");
    assert_eq!(
        base, written,
        "the matrix's assembler and the writer disagree"
    );
    inspect::verify(&base).expect("the base verifies");
}

#[test]
fn committed_malformed_corpus_is_current() {
    let dir = fixtures::corpus_dir().join("malformed");
    let differing = malformed::generate(&dir, true).unwrap();
    assert!(
        differing.is_empty(),
        "corpus/malformed/ differs from harness/src/malformed.rs (run `tinyrustlm fixtures`): {differing:?}"
    );
}

#[test]
fn corpus_fixtures_parse_and_match_their_recipes() {
    let dir = fixtures::corpus_dir();
    let recipes = fixtures::load_recipes(&dir).unwrap();
    for r in &recipes.fixtures {
        let committed = std::fs::read(dir.join(format!("{}.slm", r.name))).unwrap();
        let slm = inspect::verify(&committed)
            .unwrap_or_else(|e| panic!("{}: {}", r.name, inspect::describe_error(&e)));
        assert_eq!(slm.metadata("name"), Some(r.name.as_str()));
        let fresh = fixtures::build_bytes(r).unwrap();
        assert!(
            fresh == committed,
            "corpus/{}.slm differs from its recipe",
            r.name
        );
    }
}

#[test]
fn writer_round_trips_every_recipe() {
    let recipes = fixtures::load_recipes(&fixtures::corpus_dir()).unwrap();
    for r in &recipes.fixtures {
        let model = fixtures::build(r).unwrap();
        let bytes = format::write(&model).unwrap();
        assert_eq!(
            bytes,
            format::write(&model).unwrap(),
            "{}: deterministic",
            r.name
        );
        let slm = Slm::parse(&bytes).unwrap();
        assert_eq!(slm.header.config, model.config, "{}: config", r.name);
        let mut meta: Vec<(&str, &str)> = model
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        meta.sort();
        assert_eq!(slm.metadata, meta, "{}: metadata", r.name);
        assert_eq!(slm.vocab, model.vocab, "{}: vocab", r.name);
        assert_eq!(slm.tensors.len(), model.tensors.len(), "{}", r.name);
        for (e, t) in slm.tensors.iter().zip(&model.tensors) {
            assert_eq!(e.name, t.name);
            assert_eq!((e.dtype, e.shape()), (t.dtype, &t.shape[..]), "{}", t.name);
            assert!(slm.payload(e) == t.bytes, "{}: payload", t.name);
            assert_eq!(e.digest, chunked_digest(&t.bytes), "{}: digest", t.name);
        }
    }
}

#[test]
fn budget_is_checked_before_anything_else() {
    let too_big = vec![0u8; limits::MAX_MODEL_BYTES as usize + 1];
    assert_eq!(
        Slm::parse(&too_big).unwrap_err().code,
        ErrorCode::BudgetExceeded
    );
    // A valid model padded past the budget is refused for its size, not its content.
    let mut padded = malformed::base_bytes();
    padded.resize(limits::MAX_MODEL_BYTES as usize + 1, 0);
    assert_eq!(
        Slm::parse(&padded).unwrap_err().code,
        ErrorCode::BudgetExceeded
    );
    // Exactly the budget is allowed by the budget rule (and fails later, on the magic).
    let at_budget = &too_big[..limits::MAX_MODEL_BYTES as usize];
    assert_eq!(
        Slm::parse(at_budget).unwrap_err().code,
        ErrorCode::InvalidModelMagic
    );
}

/// Every byte of `file` flipped in turn (xor `mask`) must be refused.
fn assert_every_flip_refused(name: &str, file: &[u8], mask: u8) {
    let mut bytes = file.to_vec();
    let mut accepted = Vec::new();
    for i in 0..bytes.len() {
        bytes[i] ^= mask;
        if Slm::parse(&bytes).is_ok() {
            accepted.push(i);
        }
        bytes[i] ^= mask;
    }
    assert!(
        accepted.is_empty(),
        "{name}: accepted with byte(s) {accepted:?} flipped"
    );
}

#[test]
fn any_single_flipped_byte_is_refused() {
    let base = malformed::base_bytes();
    assert_every_flip_refused("malformed base", &base, 0x01);
    assert_every_flip_refused("malformed base", &base, 0x80);
    let small = std::fs::read(fixtures::corpus_dir().join("byte-mha-tied-q4_0.slm")).unwrap();
    assert_every_flip_refused("byte-mha-tied-q4_0", &small, 0xff);
}

/// spec/slm.md (Element types): values are not range-checked. Every tensor of the fixtures of
/// each dtype with its first value (f32/f16) or block scale (q8_0/q4_0) set to NaN, then to
/// infinity, with the digests recomputed, still verifies.
#[test]
fn non_finite_values_and_scales_are_accepted() {
    for dtype in ["f32", "f16", "q8_0", "q4_0"] {
        let name = format!("byte-mha-tied-{dtype}.slm");
        let base = std::fs::read(fixtures::corpus_dir().join(&name)).unwrap();
        let slm = Slm::parse(&base).unwrap();
        let places: Vec<(format::DType, Range<usize>, usize)> = slm
            .tensors
            .iter()
            .map(|t| {
                let field = t.entry_offset as usize + 2 + t.name.len() + 2 + 4 * t.rank as usize;
                let payload = t.offset as usize..(t.offset + t.length) as usize;
                (t.dtype, payload, field + 16)
            })
            .collect();
        for (f32_bits, f16_bits) in [(0x7fc0_0001u32, 0x7e01u16), (0x7f80_0000, 0x7c00)] {
            let mut bytes = base.clone();
            for (dt, payload, field) in &places {
                let at = payload.start;
                match dt {
                    format::DType::F32 => {
                        bytes[at..at + 4].copy_from_slice(&f32_bits.to_le_bytes())
                    }
                    _ => bytes[at..at + 2].copy_from_slice(&f16_bits.to_le_bytes()),
                }
                let d = tensor_digest(DigestRule::Chunked, &bytes[payload.clone()]);
                bytes[*field..field + 32].copy_from_slice(&d);
            }
            malformed::redigest(&mut bytes);
            assert_ne!(bytes, base);
            if let Err(e) = inspect::verify(&bytes) {
                panic!("{name} with {f32_bits:#x}/{f16_bits:#x}: {e}");
            }
        }
    }
}

/// The format-2.1 tensor digest by its definition (spec/slm.md, Digests), with the `sha2` crate:
/// the SHA-256 of the SHA-256s of the payload's 64 KiB chunks.
fn chunked_digest(payload: &[u8]) -> [u8; 32] {
    let mut top = Sha256::new();
    for chunk in payload.chunks(65_536) {
        top.update(Sha256::digest(chunk));
    }
    top.finalize().into()
}

/// The digest field of a file.
fn d_2_0(file: &[u8]) -> [u8; 32] {
    file[224..256].try_into().unwrap()
}

/// Format 2.1 digests hash each byte once; the reader still reads 2.0 files (spec/slm.md, Digests)
/// and generates from them exactly what it generates from the 2.1 file of the same model. Every
/// corpus fixture is checked both ways, its digests against the definition computed with the
/// `sha2` crate (multi-chunk payloads and the lane grouping: runtime's `format::digest` tests).
#[test]
fn format_2_0_files_stay_readable_and_2_1_digests_follow_the_definition() {
    let mut checked = 0;
    for (name, v2_1) in common::corpus_fixtures() {
        let slm = Slm::parse(&v2_1).unwrap();
        assert_eq!(slm.header.version_minor, 1, "{name}");
        // 2.1: tensor digests by definition; the file digest ends where the data section starts.
        for t in &slm.tensors {
            assert_eq!(
                t.digest,
                chunked_digest(slm.payload(t)),
                "{name}: {}",
                t.name
            );
        }
        let data = slm.header.sections.data.offset as usize;
        let mut h = Sha256::new();
        h.update(&v2_1[..224]);
        h.update(&v2_1[256..data]);
        let d: [u8; 32] = h.finalize().into();
        assert_eq!(slm.digest(), d, "{name}: file digest");

        let v2_0 = common::as_format_2_0(&v2_1);
        let old = common::load(&v2_0);
        let new = common::load(&v2_1);
        assert_eq!(old.digest, d_2_0(&v2_0), "{name}: 2.0 identity");
        assert_ne!(
            old.digest, new.digest,
            "{name}: the identity follows the bytes"
        );
        let mut a = runtime::generate::Session::new(old, 0).unwrap();
        let mut b = runtime::generate::Session::new(new, 0).unwrap();
        for seed in [1, 7] {
            let (ta, fa) = common::generate(&mut a, b"Once upon", common::sampled(seed, 24));
            let (tb, fb) = common::generate(&mut b, b"Once upon", common::sampled(seed, 24));
            assert_eq!((ta, fa), (tb, fb), "{name}: seed {seed}");
        }
        // Rewriting the 2.0 file gives the canonical 2.1 file, byte for byte.
        let rewritten = format::ModelFile::from_slm(&Slm::parse(&v2_0).unwrap());
        assert!(
            format::write(&rewritten).unwrap() == v2_1,
            "{name}: 2.0 rewritten"
        );
        // Either version's digests under the other version's number are refused.
        let mut swapped = v2_0.clone();
        swapped[10..12].copy_from_slice(&1u16.to_le_bytes());
        malformed::redigest(&mut swapped);
        let e = Slm::parse(&swapped).unwrap_err();
        assert_eq!(e.code, ErrorCode::TensorDigestMismatch, "{name}");
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} fixtures");
}

// ---- property tests: no input makes the reader panic ----

/// The valid files the mutations start from: the matrix base and the smallest ranked-merge
/// fixture (so the merge list is exercised too).
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let ranked = std::fs::read(fixtures::corpus_dir().join("ranked-gqa1-tied-q8_0.slm"));
        vec![malformed::base_bytes(), ranked.unwrap()]
    })
}

/// A tensor's payload range and the offset of its digest in the directory.
type DigestField = (Range<usize>, usize);

/// Per seed: every tensor's [`DigestField`].
fn digest_fields() -> &'static [Vec<DigestField>] {
    static FIELDS: OnceLock<Vec<Vec<DigestField>>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        seeds()
            .iter()
            .map(|s| {
                let slm = Slm::parse(s).unwrap();
                slm.tensors
                    .iter()
                    .map(|t| {
                        let at =
                            t.entry_offset as usize + 2 + t.name.len() + 2 + 4 * t.rank as usize;
                        (t.offset as usize..(t.offset + t.length) as usize, at + 16)
                    })
                    .collect()
            })
            .collect()
    })
}

/// Recomputes the seed's tensor digests (where they still fit) and the file digest, so that a
/// mutation is judged by the structural checks rather than caught by a digest.
fn redigest_all(seed: usize, bytes: &mut [u8]) {
    for (payload, field) in &digest_fields()[seed] {
        if payload.end <= bytes.len() && field + 32 <= bytes.len() {
            let d = tensor_digest(DigestRule::Chunked, &bytes[payload.clone()]);
            bytes[*field..field + 32].copy_from_slice(&d);
        }
    }
    malformed::redigest(bytes);
}

/// Parses; an error must point inside the input.
fn parse_checked(bytes: &[u8]) -> Result<bool, TestCaseError> {
    match Slm::parse(bytes) {
        Ok(_) => Ok(true),
        Err(e) => {
            if let Some(o) = e.offset {
                prop_assert!(
                    o <= bytes.len() as u64,
                    "offset beyond {} bytes: {e}",
                    bytes.len()
                );
            }
            Ok(false)
        }
    }
}

/// Header field offsets: every 4-byte boundary of the 256-byte header.
fn header_offset() -> impl Strategy<Value = usize> {
    (0usize..64).prop_map(|i| 4 * i)
}

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u32::MAX as u64),
        Just(u64::MAX),
        0u64..70_000,
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        parse_checked(&bytes)?;
    }

    #[test]
    fn bytes_after_magic_and_version_never_panic(
        minor in prop_oneof![Just(0u16), any::<u16>()],
        tail in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut bytes = format::header::MAGIC.to_vec();
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&minor.to_le_bytes());
        bytes.extend_from_slice(&tail);
        parse_checked(&bytes)?;
    }

    #[test]
    fn valid_header_then_noise_never_panics(seed in 0usize..2, noise in any::<u64>()) {
        let s = &seeds()[seed];
        let mut bytes = s[..256].to_vec();
        let mut rng = fixtures::SplitMix64(noise);
        bytes.extend((256..s.len()).map(|_| rng.next_u64() as u8));
        parse_checked(&bytes)?;
    }

    #[test]
    fn bit_flips_are_refused(
        seed in 0usize..2,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..8),
        redigest in any::<bool>(),
    ) {
        let mut bytes = seeds()[seed].clone();
        for (i, bit) in &flips {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        if redigest {
            redigest_all(seed, &mut bytes);
            parse_checked(&bytes)?;
        } else {
            let accepted = parse_checked(&bytes)?;
            prop_assert!(!accepted || bytes == seeds()[seed], "a damaged file was accepted");
        }
    }

    #[test]
    fn truncation_is_refused(seed in 0usize..2, cut in any::<prop::sample::Index>()) {
        let s = &seeds()[seed];
        let len = cut.index(s.len());
        let e = Slm::parse(&s[..len]).unwrap_err();
        prop_assert!(e.code == ErrorCode::Truncated, "cut at {len}: {e}");
        // Where the data ran out: the cut, in the header (before any field) or after it.
        prop_assert_eq!(e.offset, Some(len as u64), "cut at {}: {}", len, e);
    }

    #[test]
    fn field_overwrites_never_panic(
        seed in 0usize..2,
        in_header in any::<bool>(),
        at_header in header_offset(),
        at_directory in any::<prop::sample::Index>(),
        wide in any::<bool>(),
        value in interesting_u64(),
        redigest in any::<bool>(),
    ) {
        let mut bytes = seeds()[seed].clone();
        let dir = Slm::parse(&bytes).unwrap().header.sections.directory;
        let at = if in_header {
            at_header
        } else {
            dir.offset as usize + at_directory.index(dir.length as usize - 8)
        };
        if wide {
            let at = at.min(248);
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        } else {
            bytes[at..at + 4].copy_from_slice(&(value as u32).to_le_bytes());
        }
        if redigest {
            redigest_all(seed, &mut bytes);
        }
        parse_checked(&bytes)?;
    }

    #[test]
    fn swapped_sections_never_panic(
        seed in 0usize..2,
        i in 0usize..4,
        j in 0usize..4,
        redigest in any::<bool>(),
    ) {
        let mut bytes = seeds()[seed].clone();
        let (a, b) = (80 + 16 * i, 80 + 16 * j);
        let entry: [u8; 16] = bytes[a..a + 16].try_into().unwrap();
        bytes.copy_within(b..b + 16, a);
        bytes[b..b + 16].copy_from_slice(&entry);
        if redigest {
            redigest_all(seed, &mut bytes);
        }
        let accepted = parse_checked(&bytes)?;
        prop_assert!(!accepted || i == j, "sections {i} and {j} swapped, yet accepted");
    }

    #[test]
    fn inserted_or_removed_bytes_never_panic(
        seed in 0usize..2,
        at in any::<prop::sample::Index>(),
        insert in proptest::collection::vec(any::<u8>(), 0..80),
        remove in 0usize..80,
        fix_length in any::<bool>(),
        redigest in any::<bool>(),
    ) {
        let mut bytes = seeds()[seed].clone();
        let at = at.index(bytes.len());
        let remove = remove.min(bytes.len() - at);
        bytes.splice(at..at + remove, insert.iter().copied());
        if fix_length && bytes.len() >= 24 {
            let n = bytes.len() as u64;
            bytes[16..24].copy_from_slice(&n.to_le_bytes());
        }
        if redigest {
            redigest_all(seed, &mut bytes);
        }
        let accepted = parse_checked(&bytes)?;
        prop_assert!(
            !accepted || bytes == seeds()[seed] || redigest,
            "a changed file was accepted without re-digesting"
        );
    }
}
