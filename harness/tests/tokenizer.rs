//! Tokenizer conformance: llama.cpp's SPM test cases, llama2.c's vocabularies, equivalence with a
//! literal O(n²) transcription of run.c's `encode`, decode rules, and every rejection rule of
//! `Tokenizer::new` and `read_tokenizer_bin`.

mod common;

use std::collections::HashMap;
use std::sync::LazyLock;

use harness::llama2c_tokenizer::read_tokenizer_bin;
use proptest::prelude::*;
use runtime::format::{Pieces, TokenType, TokenizerKind, Vocab};
use runtime::generate::tokenizer::{is_run_c_printable, Tokenizer};
use runtime::{limits, ErrorCode};

// ---------------------------------------------------------------------------------------------
// Reference files

// `common::shared_file` says that the test skips when the file, or the whole shared
// directory, is absent.
use common::shared_file;

/// The 32000-token Llama-2 vocabulary as llama2.c ships it.
static LLAMA2: LazyLock<Option<(Vocab, Tokenizer)>> = LazyLock::new(|| {
    let vocab = read_tokenizer_bin(&shared_file("models/llama2c-tokenizer.bin")?, 32000).unwrap();
    let tok = Tokenizer::new(&vocab).unwrap();
    Some((vocab, tok))
});

/// stories260K's 512-token vocabulary.
static TOK512: LazyLock<Option<(Vocab, Tokenizer)>> = LazyLock::new(|| {
    let vocab = read_tokenizer_bin(&shared_file("models/stories260K/tok512.bin")?, 512).unwrap();
    let tok = Tokenizer::new(&vocab).unwrap();
    Some((vocab, tok))
});

fn encode(tok: &Tokenizer, text: &[u8], bos: bool) -> Vec<u32> {
    let mut out = Vec::new();
    tok.encode(text, bos, &mut out).unwrap();
    out
}

/// Decodes `ids` the way run.c's generate loop does: each token with the one before it; the
/// first follows `prev` (run.c never prints the BOS it starts from).
fn decode_all(tok: &Tokenizer, mut prev: Option<u32>, ids: &[u32]) -> Vec<u8> {
    let mut text = Vec::new();
    for &id in ids {
        text.extend_from_slice(tok.decode(prev, id).unwrap());
        prev = Some(id);
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Reference: llama2.c run.c `encode`, transcribed literally (O(n²) rescans over token ids).

struct RunC<'a> {
    vocab: &'a Vocab,
    /// run.c's `str_lookup` (a binary search; with duplicate pieces we take the first id).
    ids: HashMap<&'a [u8], u32>,
}

impl<'a> RunC<'a> {
    fn new(vocab: &'a Vocab) -> Self {
        let mut ids = HashMap::new();
        for (id, piece) in vocab.pieces.iter().enumerate() {
            ids.entry(piece).or_insert(id as u32);
        }
        RunC { vocab, ids }
    }

    fn encode(&self, text: &str, bos: bool) -> Vec<u32> {
        let lookup = |s: &[u8]| self.ids.get(s).copied();
        let mut tokens = Vec::new();
        if bos {
            tokens.push(self.vocab.bos.unwrap());
        }
        if !text.is_empty() {
            tokens.push(lookup(b" ").unwrap());
        }
        for c in text.chars() {
            let mut buf = [0u8; 4];
            let c = c.encode_utf8(&mut buf).as_bytes();
            match lookup(c) {
                Some(id) => tokens.push(id),
                None => tokens.extend(
                    c.iter()
                        .map(|b| lookup(format!("<0x{b:02X}>").as_bytes()).unwrap()),
                ),
            }
        }
        loop {
            let (mut best_score, mut best) = (-1e10f32, None);
            for i in 0..tokens.len().saturating_sub(1) {
                let mut joined = self.vocab.pieces[tokens[i] as usize].to_vec();
                joined.extend_from_slice(&self.vocab.pieces[tokens[i + 1] as usize]);
                if let Some(id) = lookup(&joined) {
                    if self.vocab.scores[id as usize] > best_score {
                        best_score = self.vocab.scores[id as usize];
                        best = Some((i, id));
                    }
                }
            }
            let Some((i, id)) = best else { break };
            tokens[i] = id;
            tokens.remove(i + 1);
        }
        tokens
    }
}

/// Reference ranked-merge BPE: rescan for the lowest-ranked applicable merge, leftmost first.
fn ranked_merge_reference(vocab: &Vocab, text: &[u8]) -> Vec<u32> {
    let id_of = |p: &[u8]| vocab.pieces.iter().position(|q| q == p).unwrap() as u32;
    let mut tokens: Vec<u32> = text.iter().map(|&b| id_of(&[b])).collect();
    loop {
        let mut best: Option<(usize, usize)> = None; // (rank, position)
        for i in 0..tokens.len().saturating_sub(1) {
            let rank = vocab
                .merges
                .iter()
                .position(|&m| m == (tokens[i], tokens[i + 1]));
            if let Some(rank) = rank {
                if best.is_none_or(|(r, _)| rank < r) {
                    best = Some((rank, i));
                }
            }
        }
        let Some((rank, i)) = best else { break };
        let (l, r) = vocab.merges[rank];
        let joined = [
            vocab.pieces[l as usize].to_vec(),
            vocab.pieces[r as usize].to_vec(),
        ]
        .concat();
        tokens[i] = id_of(&joined);
        tokens.remove(i + 1);
    }
    tokens
}

// ---------------------------------------------------------------------------------------------
// Small hand-made vocabularies

/// A llama2.c-shaped SentencePiece vocabulary: `<unk>`, BOS, EOS, the 256 byte tokens, then
/// `extra` (piece, score) as Normal tokens.
fn sp_vocab(extra: &[(&str, f32)]) -> Vocab {
    let mut pieces: Vec<Vec<u8>> =
        vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
    let mut types = vec![TokenType::Unknown, TokenType::Control, TokenType::Control];
    for b in 0..=255u8 {
        pieces.push(format!("<0x{b:02X}>").into_bytes());
        types.push(TokenType::Byte);
    }
    let mut scores = vec![0.0; pieces.len()];
    for (piece, score) in extra {
        pieces.push(piece.as_bytes().to_vec());
        scores.push(*score);
        types.push(TokenType::Normal);
    }
    Vocab {
        kind: TokenizerKind::SentencePiece,
        pieces: Pieces::new(pieces).unwrap(),
        scores,
        types,
        merges: vec![],
        bos: Some(1),
        eos: Some(2),
        pad: None,
        unk: Some(0),
        stop: vec![1],
        add_bos: true,
        add_dummy_prefix: true,
        byte_fallback: true,
    }
}

fn byte_level_vocab() -> Vocab {
    let mut pieces: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    let mut types = vec![TokenType::Byte; 256];
    pieces.extend([b"<bos>".to_vec(), b"<eos>".to_vec()]);
    types.extend([TokenType::Control; 2]);
    Vocab {
        kind: TokenizerKind::ByteLevel,
        scores: vec![0.0; pieces.len()],
        pieces: Pieces::new(pieces).unwrap(),
        types,
        merges: vec![],
        bos: Some(256),
        eos: Some(257),
        pad: None,
        unk: None,
        stop: vec![257],
        add_bos: true,
        add_dummy_prefix: false,
        byte_fallback: false,
    }
}

/// Bytes 0..=255 as ids 0..=255, then `extra` pieces, and `merges` given as piece pairs.
fn ranked_vocab(extra: &[&str], merges: &[(&str, &str)]) -> Vocab {
    let mut pieces: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    pieces.extend(extra.iter().map(|p| p.as_bytes().to_vec()));
    let id = |p: &str| pieces.iter().position(|q| q == p.as_bytes()).unwrap() as u32;
    let merges = merges.iter().map(|&(l, r)| (id(l), id(r))).collect();
    Vocab {
        kind: TokenizerKind::RankedMerge,
        scores: vec![0.0; pieces.len()],
        types: vec![TokenType::Normal; pieces.len()],
        pieces: Pieces::new(pieces).unwrap(),
        merges,
        bos: None,
        eos: None,
        pad: None,
        unk: None,
        stop: vec![],
        add_bos: false,
        add_dummy_prefix: false,
        byte_fallback: false,
    }
}

fn ids(tok: &Tokenizer, pieces: &[&str]) -> Vec<u32> {
    let table: HashMap<&[u8], u32> = (0..tok.vocab_size())
        .rev()
        .map(|id| (tok.piece(id).unwrap(), id))
        .collect();
    pieces.iter().map(|p| table[p.as_bytes()]).collect()
}

// ---------------------------------------------------------------------------------------------
// llama.cpp's SPM conformance cases

#[test]
fn llama_cpp_spm_cases() {
    let (Some((_, tok)), Some(inp), Some(out)) = (
        LLAMA2.as_ref(),
        shared_file("vocab/ggml-vocab-llama-spm.gguf.inp"),
        shared_file("vocab/ggml-vocab-llama-spm.gguf.out"),
    ) else {
        return;
    };
    let inp = String::from_utf8(inp).unwrap();
    let mut inputs: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    // The file ends with a separator: the piece after it is not a case.
    assert_eq!(inputs.pop(), Some(""));
    let out = String::from_utf8(out).unwrap();
    let expected: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(inputs.len(), 46);
    assert_eq!(expected.len(), inputs.len());
    let mut failures = Vec::new();
    for (input, want) in inputs.iter().zip(&expected) {
        let got = encode(tok, input.as_bytes(), false);
        if &got != want {
            failures.push(format!("{input:?}\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// llama2.c vocabularies

#[test]
fn llama2c_vocab_maps_like_run_c() {
    let Some((vocab, tok)) = LLAMA2.as_ref() else {
        return;
    };
    assert_eq!(tok.vocab_size(), 32000);
    assert_eq!((tok.bos(), tok.eos()), (Some(1), Some(2)));
    assert!(tok.is_stop(1) && !tok.is_stop(2));
    assert!(tok.add_bos());
    assert_eq!(vocab.types[0], TokenType::Unknown);
    assert_eq!(vocab.types[3 + 0x41], TokenType::Byte);
    assert_eq!(tok.piece(3 + 0x41).unwrap(), b"<0x41>");
    // Our text-slice symbols equal run.c's id symbols because every code point of every piece
    // is itself a piece, and no normal piece looks like a byte token (spec/tokenizer.md).
    let is_piece: std::collections::HashSet<&[u8]> = vocab.pieces.iter().collect();
    for piece in vocab.pieces.iter().skip(259) {
        let s = std::str::from_utf8(piece).unwrap();
        assert!(
            s.chars()
                .all(|c| is_piece.contains(c.to_string().as_bytes())),
            "{s:?}"
        );
        assert!(!piece.starts_with(b"<0x"));
    }
    assert_eq!(
        encode(tok, b"Hello world", true),
        vec![1, 15043, 3186],
        "BOS, then \" Hello\" \" world\""
    );
}

#[test]
fn llama2c_vocab_matches_run_c_on_prose() {
    let Some((vocab, tok)) = LLAMA2.as_ref() else {
        return;
    };
    let reference = RunC::new(vocab);
    let texts = [
        "Once upon a time, there was a little girl named Lily. She loved to play outside.",
        "  leading spaces,\ttabs\nand newlines\n\n",
        "Ünïcödé: 日本語のテキスト, emoji 🦙🚀, and math ∑ x² ≠ ∞.",
        "<s> </s> <unk> <0x41> literal markup is ordinary text",
        "",
    ];
    for text in texts {
        for bos in [false, true] {
            assert_eq!(
                encode(tok, text.as_bytes(), bos),
                reference.encode(text, bos),
                "{text:?}"
            );
        }
    }
}

#[test]
fn tok512_loads_and_round_trips() {
    let Some((vocab, tok)) = TOK512.as_ref() else {
        return;
    };
    assert_eq!(tok.vocab_size(), 512);
    let reference = RunC::new(vocab);
    let texts = [
        "Once upon a time, there was a little girl named Lily.",
        "Lily's mom said, \"Lily, let's go to the park.\"",
        " two  spaces and a tab\there; café ☕ 🦙",
        "x",
    ];
    for text in texts {
        let ids = encode(tok, text.as_bytes(), true);
        assert_eq!(ids[0], 1);
        assert_eq!(ids, reference.encode(text, true), "{text:?}");
        assert_eq!(
            decode_all(tok, Some(ids[0]), &ids[1..]),
            text.as_bytes(),
            "{text:?}"
        );
    }
    assert_eq!(encode(tok, b"", true), vec![1]);
    assert_eq!(encode(tok, b"", false), Vec::<u32>::new());
}

// ---------------------------------------------------------------------------------------------
// Equivalence with run.c's algorithm

/// Code points of the random texts: 'x', '日' and '\n' are no piece (byte fallback).
const TEXT_CHARS: &[char] = &['a', 'b', 'c', ' ', 'é', 'x', '日', '\n'];
/// Code points of the random pieces: all of them are pieces.
const PIECE_CHARS: &[char] = &['a', 'b', 'c', ' ', 'é'];
/// Few distinct scores make ties frequent; ±0 compare equal, as in C.
const SCORES: &[f32] = &[-3.0, -2.0, -1.0, -0.0, 0.0, 1.0];

fn text_strategy(chars: &'static [char], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(chars), 0..max).prop_map(String::from_iter)
}

fn random_sp_vocab() -> impl Strategy<Value = Vocab> {
    let single = prop::collection::vec(prop::sample::select(SCORES), PIECE_CHARS.len());
    let multi = prop::collection::vec(
        (text_strategy(PIECE_CHARS, 5), prop::sample::select(SCORES)),
        0..40,
    );
    (single, multi).prop_map(|(single, multi)| {
        let mut extra: Vec<(String, f32)> = PIECE_CHARS
            .iter()
            .map(|c| c.to_string())
            .zip(single)
            .collect();
        extra.extend(multi.into_iter().filter(|(p, _)| p.chars().count() >= 2));
        let extra: Vec<(&str, f32)> = extra.iter().map(|(p, s)| (p.as_str(), *s)).collect();
        sp_vocab(&extra)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sentencepiece_equals_run_c(vocab in random_sp_vocab(), text in text_strategy(TEXT_CHARS, 40), bos: bool) {
        let tok = Tokenizer::new(&vocab).unwrap();
        let mut got = Vec::new();
        tok.encode(text.as_bytes(), bos, &mut got).unwrap();
        prop_assert_eq!(got, RunC::new(&vocab).encode(&text, bos));
    }

    #[test]
    fn ranked_merge_equals_reference(
        merges in prop::collection::vec((text_strategy(&['a', 'b', 'c'], 4), text_strategy(&['a', 'b', 'c'], 4)), 0..30),
        text in text_strategy(&['a', 'b', 'c', 'd'], 40),
    ) {
        let merges: Vec<(&str, &str)> = merges
            .iter()
            .filter(|(l, r)| !l.is_empty() && !r.is_empty())
            .map(|(l, r)| (l.as_str(), r.as_str()))
            .collect();
        let mut extra: Vec<String> = Vec::new();
        for (l, r) in &merges {
            for p in [l.to_string(), r.to_string(), format!("{l}{r}")] {
                if p.len() > 1 && !extra.contains(&p) {
                    extra.push(p);
                }
            }
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let vocab = ranked_vocab(&extra, &merges);
        let tok = Tokenizer::new(&vocab).unwrap();
        let mut got = Vec::new();
        tok.encode(text.as_bytes(), false, &mut got).unwrap();
        prop_assert_eq!(got, ranked_merge_reference(&vocab, text.as_bytes()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn llama2c_vocab_equals_run_c(text in text_strategy(
        &['a', 'e', 'h', 'i', 'l', 'n', 'o', 's', 't', 'T', ' ', ' ', '.', ',', '\'', '\n', '\t', '3', 'é', '日', '🦙'],
        60,
    )) {
        let Some((vocab, tok)) = LLAMA2.as_ref() else { return Ok(()) };
        prop_assert_eq!(encode(tok, text.as_bytes(), true), RunC::new(vocab).encode(&text, true));
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding rules on small vocabularies

#[test]
fn sentencepiece_merges_highest_score_then_leftmost() {
    // " ab" is preferred over " a"+"b" by score; "bc" wins over "ab" on "abc".
    let vocab = sp_vocab(&[
        (" ", -9.0),
        ("a", -9.0),
        ("b", -9.0),
        ("c", -9.0),
        ("ab", -2.0),
        ("bc", -1.0),
        (" a", -3.0),
        ("aa", -5.0),
    ]);
    let tok = Tokenizer::new(&vocab).unwrap();
    assert_eq!(encode(&tok, b"abc", false), ids(&tok, &[" a", "bc"]));
    // " aaa": " a" (-3) beats both "aa" (-5), then the remaining "a" "a" join.
    assert_eq!(encode(&tok, b"aaa", false), ids(&tok, &[" a", "aa"]));
    // Without the dummy prefix, the leftmost of equal pairs merges first.
    let mut no_prefix = vocab.clone();
    no_prefix.add_dummy_prefix = false;
    let tok = Tokenizer::new(&no_prefix).unwrap();
    assert_eq!(encode(&tok, b"aaa", false), ids(&tok, &["aa", "a"]));
    assert_eq!(encode(&tok, b"", true), vec![1]);
}

#[test]
fn sentencepiece_byte_fallback_and_unk() {
    let vocab = sp_vocab(&[(" ", -1.0), ("a", -1.0)]);
    let tok = Tokenizer::new(&vocab).unwrap();
    // 'é' is no piece: its two UTF-8 bytes become <0xC3> <0xA9>.
    assert_eq!(
        encode(&tok, "aé".as_bytes(), false),
        vec![259, 260, 3 + 0xC3, 3 + 0xA9]
    );
    let mut no_fallback = vocab.clone();
    no_fallback.byte_fallback = false;
    let tok = Tokenizer::new(&no_fallback).unwrap();
    assert_eq!(encode(&tok, "aé日".as_bytes(), false), vec![259, 260, 0, 0]);
}

#[test]
fn byte_level_encodes_any_bytes() {
    let tok = Tokenizer::new(&byte_level_vocab()).unwrap();
    let text = [0xffu8, 0x00, b'a', 0xc3];
    assert_eq!(encode(&tok, &text, true), vec![256, 255, 0, 97, 195]);
    assert_eq!(
        decode_all(&tok, None, &[256, 255, 0, 97, 195]),
        [b"<bos>".as_slice(), &text].concat()
    );
    // No space is stripped after BOS in a byte-level vocabulary.
    assert_eq!(tok.decode(Some(256), 32).unwrap(), b" ");
    assert!(tok.is_stop(257));
}

#[test]
fn ranked_merge_applies_lowest_rank_first() {
    let vocab = ranked_vocab(
        &["bc", "ab", "abc", "aa"],
        &[("b", "c"), ("a", "b"), ("a", "bc"), ("a", "a")],
    );
    let tok = Tokenizer::new(&vocab).unwrap();
    assert_eq!(encode(&tok, b"abc", false), ids(&tok, &["abc"]));
    assert_eq!(encode(&tok, b"abd", false), ids(&tok, &["ab", "d"]));
    assert_eq!(encode(&tok, b"aaa", false), ids(&tok, &["aa", "a"]));
    assert_eq!(encode(&tok, b"", false), Vec::<u32>::new());
    assert_eq!(
        decode_all(&tok, None, &encode(&tok, b"aabcd", false)),
        b"aabcd"
    );
}

#[test]
fn invalid_utf8_and_long_prompts_are_rejected() {
    let sp = Tokenizer::new(&sp_vocab(&[(" ", -1.0)])).unwrap();
    let rm = Tokenizer::new(&ranked_vocab(&[], &[])).unwrap();
    let bl = Tokenizer::new(&byte_level_vocab()).unwrap();
    for tok in [&sp, &rm] {
        let mut out = vec![7];
        let err = tok.encode(b"ok\xff", false, &mut out).unwrap_err();
        assert_eq!((err.code, err.offset), (ErrorCode::InvalidUtf8, Some(2)));
        assert_eq!(out, vec![7], "nothing appended on error");
    }
    // A byte-level vocabulary takes any bytes, one token each (what a prompt gets, too).
    let mut out = Vec::new();
    bl.encode(b"ok\xff", false, &mut out).unwrap();
    assert_eq!(out, vec![u32::from(b'o'), u32::from(b'k'), 0xff]);
    let long = vec![b'a'; limits::MAX_PROMPT_BYTES + 1];
    for tok in [&sp, &rm, &bl] {
        let err = tok.encode(&long, false, &mut Vec::new()).unwrap_err();
        assert_eq!(err.code, ErrorCode::PromptTooLong);
        assert!(tok.encode(&long[1..], false, &mut Vec::new()).is_ok());
    }
    let err = rm.encode(b"a", true, &mut Vec::new()).unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::InvalidArgument,
        "BOS asked of a vocabulary without one"
    );
}

// ---------------------------------------------------------------------------------------------
// Decoding

#[test]
fn decode_rules() {
    let tok = Tokenizer::new(&sp_vocab(&[(" ", -1.0), (" hi", -2.0), ("hi", -3.0)])).unwrap();
    let [space, space_hi, hi] = [259, 260, 261];
    // After BOS one leading space goes; elsewhere it stays.
    assert_eq!(tok.decode(Some(1), space_hi).unwrap(), b"hi");
    assert_eq!(tok.decode(Some(1), space).unwrap(), b"");
    assert_eq!(tok.decode(Some(hi), space_hi).unwrap(), b" hi");
    assert_eq!(tok.decode(None, space_hi).unwrap(), b" hi");
    assert_eq!(tok.decode(Some(1), hi).unwrap(), b"hi");
    // Byte tokens are their raw byte, also after BOS.
    assert_eq!(tok.decode(None, 3 + 0x0A).unwrap(), b"\n");
    assert_eq!(tok.decode(Some(1), 3 + 0x20).unwrap(), b" ");
    assert_eq!(tok.decode(None, 3 + 0xFF).unwrap(), [0xFF]);
    assert_eq!(tok.piece(3 + 0xFF).unwrap(), b"<0xFF>");
    // Control tokens decode to their piece.
    assert_eq!(tok.decode(None, 2).unwrap(), b"\n</s>\n");
    for bad in [tok.vocab_size(), u32::MAX] {
        assert_eq!(
            tok.decode(None, bad).unwrap_err().code,
            ErrorCode::InvalidTokenId
        );
        assert_eq!(tok.piece(bad).unwrap_err().code, ErrorCode::InvalidTokenId);
    }
    // Without a dummy prefix nothing is stripped.
    let mut vocab = sp_vocab(&[(" hi", -2.0)]);
    vocab.add_dummy_prefix = false;
    let tok = Tokenizer::new(&vocab).unwrap();
    assert_eq!(tok.decode(Some(1), 259).unwrap(), b" hi");
}

#[test]
fn run_c_printable_rule() {
    for b in 0u8..=255 {
        let c_isprint = (0x20..=0x7e).contains(&b);
        let c_isspace = matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
        assert_eq!(is_run_c_printable(&[b]), c_isprint || c_isspace, "{b:#04x}");
    }
    assert!(!is_run_c_printable(b""));
    assert!(is_run_c_printable(b"\x01\x02"));
    assert!(is_run_c_printable("é".as_bytes()));
}

// ---------------------------------------------------------------------------------------------
// Rejections of Tokenizer::new

fn rejects(vocab: &Vocab, message: &str) {
    match Tokenizer::new(vocab) {
        Ok(_) => panic!("accepted a vocabulary that should fail with {message:?}"),
        Err(e) => {
            assert_eq!(e.code, ErrorCode::InvalidTokenizer, "{e}");
            assert!(
                e.message.contains(message),
                "{e} does not mention {message:?}"
            );
        }
    }
}

#[test]
fn new_rejects_inconsistent_vocabularies() {
    let good = sp_vocab(&[(" ", -1.0), ("a", -2.0)]);
    Tokenizer::new(&good).unwrap();

    let mut v = good.clone();
    v.pieces.truncate(0);
    v.scores.clear();
    v.types.clear();
    rejects(&v, "vocabulary size 0");

    let mut v = good.clone();
    v.scores.pop();
    rejects(&v, "scores");
    let mut v = good.clone();
    v.types.push(TokenType::Normal);
    rejects(&v, "types");

    let mut v = good.clone();
    v.pieces
        .set(260, &[b'a'; limits::MAX_PIECE_BYTES + 1])
        .unwrap();
    rejects(&v, "piece 260 has 257 bytes");

    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut v = good.clone();
        v.scores[259] = bad;
        rejects(&v, "score of token 259 is not finite");
    }

    let n = good.pieces.len() as u32;
    let mut v = good.clone();
    v.bos = Some(n);
    rejects(&v, "bos id");
    let mut v = good.clone();
    v.eos = Some(u32::MAX);
    rejects(&v, "eos id");
    let mut v = good.clone();
    v.pad = Some(n);
    rejects(&v, "pad id");
    let mut v = good.clone();
    v.unk = Some(n);
    rejects(&v, "unk id");
    let mut v = good.clone();
    v.stop = vec![n];
    rejects(&v, "stop id");
    let mut v = good.clone();
    v.stop = vec![1; limits::MAX_STOP_TOKENS as usize + 1];
    rejects(&v, "stop tokens");
    let mut v = good.clone();
    v.bos = None;
    rejects(&v, "add_bos is set but there is no bos");
    let mut v = good.clone();
    v.merges = vec![(259, 260)];
    rejects(&v, "merges apply to RankedMerge");
}

#[test]
fn new_rejects_bad_sentencepiece_vocabularies() {
    let good = sp_vocab(&[(" ", -1.0), ("a", -2.0)]);
    // A Byte token whose piece is not <0xXX>.
    let mut v = good.clone();
    v.types[259] = TokenType::Byte;
    rejects(&v, "token 259 has type Byte");
    let mut v = good.clone();
    v.pieces.set(3 + 0x2A, b"<0x2a>").unwrap(); // lower-case hex
    rejects(&v, "token 45 has type Byte");
    // Byte fallback with a byte token missing or not of type Byte.
    let mut v = good.clone();
    v.types[3 + 0x41] = TokenType::Normal;
    rejects(&v, "byte fallback needs a Byte token <0x41>");
    let mut v = good.clone();
    v.pieces.set(3 + 0x41, b"A").unwrap();
    v.types[3 + 0x41] = TokenType::Normal;
    rejects(&v, "byte fallback needs a Byte token <0x41>");
    // Neither byte fallback nor unk.
    let mut v = good.clone();
    v.byte_fallback = false;
    v.unk = None;
    rejects(&v, "byte_fallback or an unk");
}

#[test]
fn new_handles_duplicate_pieces_deterministically() {
    // Two ids hold "ab": encoding yields the first; both decode to "ab".
    let vocab = sp_vocab(&[
        (" ", -1.0),
        ("a", -1.0),
        ("b", -1.0),
        ("ab", -1.0),
        ("ab", 5.0),
    ]);
    let tok = Tokenizer::new(&vocab).unwrap();
    // The first id's score decides as well: " ab" stays " " + "ab" with id 262.
    assert_eq!(encode(&tok, b"ab", false), vec![259, 262]);
    assert_eq!(tok.decode(None, 263).unwrap(), b"ab");
}

#[test]
fn new_rejects_bad_byte_level_and_ranked_merge_vocabularies() {
    let good = byte_level_vocab();
    let mut v = good.clone();
    v.pieces.set(65, b"B").unwrap();
    rejects(&v, "byte-level token 65");
    let mut v = good.clone();
    v.types[65] = TokenType::Normal;
    rejects(&v, "byte-level token 65");
    let mut v = good.clone();
    v.types[257] = TokenType::Normal;
    rejects(&v, "token 257 is above 255");
    let mut v = good.clone();
    v.pieces.truncate(200);
    v.scores.truncate(200);
    v.types.truncate(200);
    v.bos = None;
    v.eos = None;
    v.stop.clear();
    v.add_bos = false;
    rejects(&v, "at least 256 tokens");
    let mut v = good.clone();
    v.add_dummy_prefix = true;
    rejects(&v, "SentencePiece vocabularies only");
    let mut v = good.clone();
    v.byte_fallback = true;
    rejects(&v, "SentencePiece vocabularies only");

    let good = ranked_vocab(&["ab"], &[("a", "b")]);
    Tokenizer::new(&good).unwrap();
    let mut v = good.clone();
    v.pieces.set(0x7f, b"\x7f\x7f").unwrap();
    rejects(&v, "lacks the single-byte piece 0x7f");
    let mut v = good.clone();
    v.merges.push((256, 300));
    rejects(&v, "merge 1 (256, 300) names an id");
    let mut v = good.clone();
    v.merges.push((256, 256)); // "abab" is no token
    rejects(&v, "merge 1 (256, 256): its concatenation is not a token");
    let mut v = good.clone();
    v.pieces.push(&[]).unwrap();
    v.scores.push(0.0);
    v.types.push(TokenType::Normal);
    v.merges.push((256, 257)); // "ab" + "" = "ab": a merge with an empty side
    rejects(&v, "a side is empty");
    let mut v = good.clone();
    v.merges = vec![(97, 98); limits::MAX_MERGES as usize + 1];
    rejects(&v, "merges, more than");
}

#[test]
fn new_never_panics_on_arbitrary_vocabularies() {
    // Random small vocabularies of every kind: `new` returns Ok or InvalidTokenizer, and when
    // Ok, encoding short texts never fails except for the documented reasons.
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
    let strategy = (
        0u32..4,
        prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 0..4),
                0u8..8,
                any::<f32>(),
            ),
            0..300,
        ),
        prop::collection::vec((0u32..320, 0u32..320), 0..8),
        prop::option::of(0u32..320),
        any::<[bool; 3]>(),
        prop::collection::vec(any::<u8>(), 0..16),
    );
    runner
        .run(&strategy, |(kind, tokens, merges, special, flags, text)| {
            let kind = match kind {
                1 => TokenizerKind::ByteLevel,
                2 => TokenizerKind::SentencePiece,
                _ => TokenizerKind::RankedMerge,
            };
            let vocab = Vocab {
                kind,
                pieces: Pieces::new(tokens.iter().map(|t| &t.0)).unwrap(),
                types: tokens
                    .iter()
                    .map(|t| TokenType::from_code(t.1).unwrap_or(TokenType::Byte))
                    .collect(),
                scores: tokens.iter().map(|t| t.2).collect(),
                merges,
                bos: special,
                eos: special,
                pad: None,
                unk: special,
                stop: special.into_iter().collect(),
                add_bos: flags[0],
                add_dummy_prefix: flags[1],
                byte_fallback: flags[2],
            };
            match Tokenizer::new(&vocab) {
                Err(e) => prop_assert_eq!(e.code, ErrorCode::InvalidTokenizer),
                Ok(tok) => {
                    let mut out = Vec::new();
                    match tok.encode(&text, tok.add_bos(), &mut out) {
                        Ok(()) => {
                            for id in out {
                                prop_assert!(tok.decode(None, id).is_ok());
                            }
                        }
                        Err(e) => prop_assert_eq!(e.code, ErrorCode::InvalidUtf8),
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// read_tokenizer_bin

/// A well-formed tokenizer.bin: `<unk>`, `<s>`, `</s>`, the byte tokens, then `extra`.
fn tokenizer_bin(extra: &[(&str, f32)]) -> (Vec<u8>, u32) {
    let mut tokens: Vec<(Vec<u8>, f32)> = vec![
        (b"<unk>".to_vec(), 0.0),
        (b"\n<s>\n".to_vec(), 0.0),
        (b"\n</s>\n".to_vec(), 0.0),
    ];
    tokens.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>").into_bytes(), 0.0)));
    tokens.extend(extra.iter().map(|(p, s)| (p.as_bytes().to_vec(), *s)));
    let max = tokens.iter().map(|t| t.0.len()).max().unwrap() as i32;
    let mut bytes = max.to_le_bytes().to_vec();
    for (piece, score) in &tokens {
        bytes.extend(score.to_le_bytes());
        bytes.extend((piece.len() as i32).to_le_bytes());
        bytes.extend(piece);
    }
    (bytes, tokens.len() as u32)
}

fn bin_rejects(bytes: &[u8], vocab_size: u32, message: &str) {
    let err = read_tokenizer_bin(bytes, vocab_size).expect_err(message);
    let text = format!("{err:#}");
    assert!(
        text.contains(message),
        "{text:?} does not mention {message:?}"
    );
}

#[test]
fn read_tokenizer_bin_maps_like_llama2c() {
    let (bytes, n) = tokenizer_bin(&[(" ", -1.0), ("hi", -2.0)]);
    let vocab = read_tokenizer_bin(&bytes, n).unwrap();
    assert_eq!(vocab, sp_vocab(&[(" ", -1.0), ("hi", -2.0)]));
    let tok = Tokenizer::new(&vocab).unwrap();
    assert_eq!(encode(&tok, b"hi", true), vec![1, 259, 260]);
}

#[test]
fn read_tokenizer_bin_rejects_malformed_files() {
    let (good, n) = tokenizer_bin(&[(" ", -1.0), ("hi", -2.0)]);
    read_tokenizer_bin(&good, n).unwrap();
    let last = good.len() - (4 + 4 + 2); // offset of the last token's score

    for cut in [0, 3, 4, 10, last + 2, last + 6, good.len() - 1] {
        bin_rejects(&good[..cut], n, "truncated");
    }
    bin_rejects(&[good.as_slice(), &[0]].concat(), n, "1 trailing bytes");
    bin_rejects(&good, n - 1, "trailing bytes");
    bin_rejects(&good, n + 1, "truncated");
    bin_rejects(&good, 258, "vocab_size 258");
    bin_rejects(&good, limits::MAX_VOCAB + 1, "vocab_size");

    let patch = |at: usize, value: [u8; 4]| {
        let mut b = good.clone();
        b[at..at + 4].copy_from_slice(&value);
        b
    };
    bin_rejects(&patch(0, (-1i32).to_le_bytes()), n, "max_token_length -1");
    bin_rejects(&patch(0, 257i32.to_le_bytes()), n, "max_token_length 257");
    bin_rejects(&patch(0, 5i32.to_le_bytes()), n, "is not in 0..=5");
    bin_rejects(
        &patch(last + 4, (-1i32).to_le_bytes()),
        n,
        "piece length -1",
    );
    bin_rejects(&patch(last + 4, 7i32.to_le_bytes()), n, "piece length 7");
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        bin_rejects(&patch(last, bad.to_le_bytes()), n, "is not finite");
    }
    // Byte token 3 + 0x41 must read <0x41>.
    let (bytes, n) = {
        let (mut b, n) = tokenizer_bin(&[]);
        let at = b.windows(6).position(|w| w == b"<0x41>").unwrap();
        b[at + 5] = b']';
        (b, n)
    };
    bin_rejects(&bytes, n, "token 68 must be the byte token <0x41>");
}
