//! `tinyrustlm bench tokenizer`: encoding speed of the SentencePiece tokenizer on 1 MB of
//! deterministic English-like prose, with the 32000-token Llama-2 vocabulary from `../shared`
//! (or, when that is absent, a synthetic vocabulary built from the same word list, reported as
//! such). Paragraphs are encoded one by one, since a prompt is capped at `MAX_PROMPT_BYTES`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use runtime::format::{Pieces, TokenType, TokenizerKind, Vocab};
use runtime::generate::tokenizer::Tokenizer;
use serde::Serialize;

use super::Stats;
use crate::llama2c_tokenizer::read_tokenizer_bin;

/// Bytes of text encoded per run.
const TEXT_BYTES: usize = 1 << 20;
/// Timed runs (after one warm-up).
const RUNS: usize = 5;

const WORDS: &[&str] = &[
    "the",
    "a",
    "little",
    "girl",
    "boy",
    "named",
    "Lily",
    "Tim",
    "Ben",
    "Sue",
    "dog",
    "cat",
    "bird",
    "tree",
    "park",
    "ball",
    "house",
    "garden",
    "river",
    "sun",
    "day",
    "time",
    "mom",
    "dad",
    "friend",
    "friends",
    "was",
    "were",
    "is",
    "are",
    "had",
    "has",
    "saw",
    "went",
    "ran",
    "played",
    "wanted",
    "loved",
    "liked",
    "said",
    "asked",
    "looked",
    "found",
    "gave",
    "took",
    "made",
    "felt",
    "knew",
    "thought",
    "jumped",
    "smiled",
    "laughed",
    "cried",
    "helped",
    "big",
    "small",
    "red",
    "blue",
    "green",
    "happy",
    "sad",
    "scared",
    "kind",
    "brave",
    "funny",
    "shiny",
    "beautiful",
    "very",
    "too",
    "so",
    "and",
    "but",
    "because",
    "when",
    "then",
    "after",
    "before",
    "with",
    "to",
    "in",
    "on",
    "at",
    "of",
    "for",
    "from",
    "up",
    "down",
    "out",
    "into",
    "over",
    "under",
    "she",
    "he",
    "they",
    "it",
    "her",
    "his",
    "their",
    "them",
    "we",
    "you",
    "I",
    "that",
    "this",
    "what",
    "there",
    "one",
    "two",
    "three",
    "every",
    "all",
    "some",
    "not",
    "never",
    "always",
    "again",
    "together",
    "outside",
    "inside",
    "today",
    "tomorrow",
    "something",
    "nothing",
    "everything",
    "toy",
    "cake",
    "flower",
    "box",
    "car",
    "boat",
    "rain",
    "snow",
    "moon",
    "star",
    "sky",
    "water",
    "food",
    "home",
    "school",
    "teacher",
    "story",
    "lesson",
    "learned",
    "important",
    "careful",
    "share",
    "sorry",
    "thank",
    "please",
    "yes",
    "no",
];

/// A small deterministic generator (xorshift64*), so the text is the same on every machine.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// About `bytes` bytes of sentences with punctuation, quotes and numbers, as paragraphs of at
/// most ~2 KB.
fn prose(bytes: usize) -> Vec<String> {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut paragraphs = Vec::new();
    let mut total = 0;
    while total < bytes {
        let mut p = String::new();
        let sentences = 3 + rng.below(12);
        for s in 0..sentences {
            if s > 0 {
                p.push(' ');
            }
            let quoted = rng.below(6) == 0;
            if quoted {
                p.push('"');
            }
            let words = 4 + rng.below(14);
            for w in 0..words {
                let word = WORDS[rng.below(WORDS.len())];
                if w == 0 {
                    let mut chars = word.chars();
                    p.extend(chars.next().map(|c| c.to_ascii_uppercase()));
                    p.push_str(chars.as_str());
                } else {
                    p.push(' ');
                    if rng.below(40) == 0 {
                        p.push_str(&(1 + rng.below(100)).to_string());
                        p.push(' ');
                    }
                    p.push_str(word);
                }
                if w + 1 < words && rng.below(9) == 0 {
                    p.push(',');
                }
            }
            p.push(['.', '.', '.', '!', '?'][rng.below(5)]);
            if quoted {
                p.push('"');
            }
        }
        total += p.len() + 1;
        paragraphs.push(p);
    }
    paragraphs
}

/// A SentencePiece vocabulary for when the real one is absent: specials, byte pieces, the
/// printable ASCII characters, and every substring of every " word" and "Word" scored by length.
fn synthetic_vocab() -> Vocab {
    let mut pieces: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec(), b"</s>".to_vec()];
    let mut types = vec![TokenType::Unknown, TokenType::Control, TokenType::Control];
    pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
    types.extend([TokenType::Byte; 256]);
    let mut scores = vec![0.0f32; pieces.len()];
    let mut seen = std::collections::HashSet::new();
    let mut add = |piece: &[u8], pieces: &mut Vec<Vec<u8>>| {
        if seen.insert(piece.to_vec()) {
            pieces.push(piece.to_vec());
            scores.push(piece.len() as f32 - 100.0);
            types.push(TokenType::Normal);
        }
    };
    for c in 0x20..0x7fu8 {
        add(&[c], &mut pieces);
    }
    for word in WORDS {
        let mut capital = word.to_string();
        capital[..1].make_ascii_uppercase();
        for form in [format!(" {word}"), format!(" {capital}"), capital] {
            let b = form.as_bytes();
            for i in 0..b.len() {
                for j in i + 2..=b.len() {
                    add(&b[i..j], &mut pieces);
                }
            }
        }
    }
    Vocab {
        kind: TokenizerKind::SentencePiece,
        pieces: Pieces::new(pieces).expect("a small vocabulary"),
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

fn shared_tokenizer() -> Option<PathBuf> {
    [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
        PathBuf::from("/work/shared"),
    ]
    .into_iter()
    .map(|dir| dir.join("models/llama2c-tokenizer.bin"))
    .find(|path| path.is_file())
}

#[derive(Serialize)]
struct Report {
    bench: &'static str,
    vocabulary: String,
    vocab_size: u32,
    text_bytes: usize,
    paragraphs: usize,
    tokens: usize,
    #[serde(flatten)]
    stats: Stats,
    mb_per_s_median: f64,
    mb_per_s_slowest: f64,
    mb_per_s_fastest: f64,
}

/// Runs the benchmark and prints a line of text, or one JSON object when `json`.
pub fn run(json: bool) -> Result<()> {
    let (vocabulary, vocab) = match shared_tokenizer() {
        Some(path) => {
            let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
            let vocab =
                read_tokenizer_bin(&bytes, 32000).with_context(|| format!("{}", path.display()))?;
            (format!("llama2c-tokenizer.bin ({})", path.display()), vocab)
        }
        None => (
            "synthetic (../shared/models/llama2c-tokenizer.bin not found)".to_string(),
            synthetic_vocab(),
        ),
    };
    let tok = Tokenizer::new(&vocab).map_err(|e| anyhow::anyhow!("{e}"))?;
    let paragraphs = prose(TEXT_BYTES);
    // The bytes encoded: each paragraph is its own prompt (no separator is encoded).
    let text_bytes: usize = paragraphs.iter().map(|p| p.len()).sum();

    let mut ids = Vec::with_capacity(text_bytes / 3);
    let encode_all = |ids: &mut Vec<u32>| -> Result<()> {
        ids.clear();
        for p in &paragraphs {
            tok.encode(p.as_bytes(), true, ids)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    };
    encode_all(&mut ids)?;
    let tokens = ids.len();
    let mut failure = None;
    let stats = Stats::measure(RUNS, || {
        if let Err(e) = encode_all(&mut ids) {
            failure.get_or_insert(e);
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let (median, slowest, fastest) = stats.rate(text_bytes as f64 / 1e6);
    let report = Report {
        bench: "tokenizer",
        vocabulary,
        vocab_size: tok.vocab_size(),
        text_bytes,
        paragraphs: paragraphs.len(),
        tokens,
        stats,
        mb_per_s_median: median,
        mb_per_s_slowest: slowest,
        mb_per_s_fastest: fastest,
    };
    if json {
        crate::outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        crate::outln!(
            "tokenizer encode: {} bytes in {} paragraphs -> {} tokens with {} ({} tokens)\n  \
             median {:.4} s ({:.1} MB/s), range {:.4}..{:.4} s ({:.1}..{:.1} MB/s), {} runs",
            report.text_bytes,
            report.paragraphs,
            report.tokens,
            report.vocabulary,
            report.vocab_size,
            report.stats.median_s,
            median,
            report.stats.min_s,
            report.stats.max_s,
            slowest,
            fastest,
            report.stats.runs,
        )?;
    }
    Ok(())
}
