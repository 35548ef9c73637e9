//! Deterministic fixture recipes (corpus/recipes.json): seeded weights, small shapes (GQA and
//! MHA, tied and untied classifier), every dtype, byte-level and BPE tokenizers. The same recipe
//! always gives the same bytes; `tinyrustlm fixtures --check` and a test hold the committed files
//! to that.

use anyhow::{bail, Context, Result};
use runtime::format::{
    self, llama, Config, DType, ModelFile, Pieces, TensorData, TokenType, TokenizerKind, Vocab,
};
use runtime::model::quant;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// corpus/recipes.json: the fixture list.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// File stem: corpus/NAME.slm.
    pub name: String,
    /// "byte", "sentencepiece" or "ranked".
    pub tokenizer: String,
    pub dtype: String,
    pub seed: u64,
    pub dim: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub ffn_dim: u32,
    pub max_context: u32,
    pub tied: bool,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeFile {
    /// The fixture the CLI uses when no model is named.
    pub default: String,
    pub fixtures: Vec<Recipe>,
}

/// The workspace's corpus/ directory.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

pub fn load_recipes(dir: &Path) -> Result<RecipeFile> {
    let path = dir.join("recipes.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: RecipeFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if !file.fixtures.iter().any(|r| r.name == file.default) {
        bail!("recipes.json: default {:?} is not a fixture", file.default);
    }
    Ok(file)
}

/// SplitMix64: the recipes' weight generator (spec'd here, not in the runtime).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), from the top 24 bits (exact in f32).
    pub fn next_signed(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / 8_388_608.0) - 1.0
    }
}

/// Words the BPE fixtures know, so their text looks like text.
const WORDS: [&str; 24] = [
    "the", "a", "and", "to", "was", "little", "girl", "boy", "dog", "cat", "park", "ball", "she",
    "he", "said", "play", "happy", "once", "upon", "time", "there", "big", "red", "sun",
];

fn sentencepiece_vocab() -> Vocab {
    let mut pieces: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec(), b"</s>".to_vec()];
    let mut types = vec![TokenType::Unknown, TokenType::Control, TokenType::Control];
    for b in 0..=255u8 {
        pieces.push(format!("<0x{b:02X}>").into_bytes());
        types.push(TokenType::Byte);
    }
    let add = |p: Vec<u8>, pieces: &mut Vec<Vec<u8>>, types: &mut Vec<TokenType>| {
        if !pieces.contains(&p) {
            pieces.push(p);
            types.push(TokenType::Normal);
        }
    };
    for c in b' '..=b'~' {
        add(vec![c], &mut pieces, &mut types);
    }
    add(b".\n".to_vec(), &mut pieces, &mut types);
    for w in WORDS {
        let spaced = format!(" {w}");
        for end in 2..=spaced.len() {
            add(spaced.as_bytes()[..end].to_vec(), &mut pieces, &mut types);
        }
    }
    let n = pieces.len();
    Vocab {
        kind: TokenizerKind::SentencePiece,
        // Longer pieces come later and score lower: SentencePiece merges the best score first.
        scores: (0..n).map(|i| -(i as f32)).collect(),
        pieces: Pieces::new(pieces).expect("a small vocabulary"),
        types,
        merges: vec![],
        bos: Some(1),
        eos: Some(2),
        pad: None,
        unk: Some(0),
        stop: vec![2],
        add_bos: true,
        add_dummy_prefix: true,
        byte_fallback: true,
    }
}

fn ranked_vocab() -> Vocab {
    let mut pieces: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    let mut types = vec![TokenType::Byte; 256];
    let mut merges = Vec::new();
    for w in WORDS {
        let spaced = format!(" {w}");
        let bytes = spaced.as_bytes();
        for end in 2..=bytes.len() {
            let piece = bytes[..end].to_vec();
            if pieces.contains(&piece) {
                continue;
            }
            let left = pieces
                .iter()
                .position(|p| p[..] == bytes[..end - 1])
                .unwrap() as u32;
            let right = bytes[end - 1] as u32;
            merges.push((left, right));
            pieces.push(piece);
            types.push(TokenType::Normal);
        }
    }
    pieces.push(b"<|end|>".to_vec());
    types.push(TokenType::Control);
    let end = (pieces.len() - 1) as u32;
    let n = pieces.len();
    Vocab {
        kind: TokenizerKind::RankedMerge,
        pieces: Pieces::new(pieces).expect("a small vocabulary"),
        scores: vec![0.0; n],
        types,
        merges,
        bos: Some(end),
        eos: Some(end),
        pad: None,
        unk: None,
        stop: vec![end],
        add_bos: true,
        add_dummy_prefix: false,
        byte_fallback: false,
    }
}

/// A byte-level vocabulary of `total` tokens: ids 0..=255 are the bytes, 256 is `<s>` (BOS), 257
/// `</s>` (EOS), and any further ids are control tokens `<N>`. `stop` lists the stop tokens.
pub fn byte_vocab(total: u32, stop: Vec<u32>) -> Vocab {
    let mut pieces: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    let mut types = vec![TokenType::Byte; 256];
    for id in 256..total.max(258) {
        let piece = match id {
            256 => "<s>".to_string(),
            257 => "</s>".to_string(),
            n => format!("<{n}>"),
        };
        pieces.push(piece.into_bytes());
        types.push(TokenType::Control);
    }
    Vocab {
        kind: TokenizerKind::ByteLevel,
        scores: vec![0.0; pieces.len()],
        pieces: Pieces::new(pieces).expect("a small vocabulary"),
        types,
        merges: vec![],
        bos: Some(256),
        eos: Some(257),
        pad: None,
        unk: None,
        stop,
        add_bos: true,
        add_dummy_prefix: false,
        byte_fallback: false,
    }
}

/// Stores `values` (row-major, innermost dimension `shape.last()`) as `dtype`.
pub fn encode_tensor(values: &[f32], dtype: DType) -> Result<Vec<u8>> {
    Ok(match dtype {
        DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F16 => values
            .iter()
            .flat_map(|&v| quant::f32_to_f16(v).to_le_bytes())
            .collect(),
        DType::Q8_0 => {
            let mut out = vec![0u8; values.len() / 32 * format::dtype::Q8_0_BLOCK_BYTES];
            quant::quantize_q8_0(values, &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
            out
        }
        DType::Q4_0 => {
            let mut out = vec![0u8; values.len() / 32 * format::dtype::Q4_0_BLOCK_BYTES];
            quant::quantize_q4_0(values, &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
            out
        }
    })
}

/// Builds the model a recipe describes.
pub fn build(recipe: &Recipe) -> Result<ModelFile> {
    let dtype = DType::from_name(&recipe.dtype)
        .with_context(|| format!("recipe {}: unknown dtype {:?}", recipe.name, recipe.dtype))?;
    let vocab = match recipe.tokenizer.as_str() {
        "byte" => byte_vocab(258, vec![257]),
        "sentencepiece" => sentencepiece_vocab(),
        "ranked" => ranked_vocab(),
        other => bail!("recipe {}: unknown tokenizer {other:?}", recipe.name),
    };
    if !recipe.dim.is_multiple_of(recipe.n_heads) {
        bail!("recipe {}: n_heads does not divide dim", recipe.name);
    }
    let config = Config {
        arch: format::header::ARCH_LLAMA,
        vocab_size: vocab.pieces.len() as u32,
        dim: recipe.dim,
        n_layers: recipe.n_layers,
        n_heads: recipe.n_heads,
        n_kv_heads: recipe.n_kv_heads,
        head_dim: recipe.dim / recipe.n_heads,
        ffn_dim: recipe.ffn_dim,
        max_context: recipe.max_context,
        rope_theta: 10000.0,
        rms_eps: 1e-5,
        tied_classifier: recipe.tied,
    };
    let mut rng = SplitMix64(recipe.seed);
    let mut tensors = Vec::new();
    for slot in llama::slots(&config) {
        let n: usize = slot.shape.iter().map(|&d| d as usize).product();
        let values: Vec<f32> = match slot.role {
            llama::Role::Norm => (0..n).map(|_| 1.0 + 0.25 * rng.next_signed()).collect(),
            llama::Role::Matrix => {
                // Uniform with the variance of N(0, 1/fan_in), scaled up a little so the random
                // model's distribution is peaked enough to make greedy and sampling differ.
                let fan_in = *slot.shape.last().unwrap() as f32;
                let scale = 2.0 * 1.732 / fan_in.sqrt();
                (0..n).map(|_| scale * rng.next_signed()).collect()
            }
        };
        let dt = if slot.role == llama::Role::Norm {
            DType::F32
        } else {
            dtype
        };
        tensors.push(TensorData {
            bytes: encode_tensor(&values, dt)?,
            name: slot.name,
            dtype: dt,
            shape: slot.shape,
        });
    }
    let mut metadata = vec![
        ("name".to_string(), recipe.name.clone()),
        ("kind".to_string(), "fixture".to_string()),
        ("source".to_string(), "corpus/recipes.json".to_string()),
        ("licence".to_string(), "MIT".to_string()),
        (
            "provenance".to_string(),
            format!("seeded random weights (SplitMix64, seed {})", recipe.seed),
        ),
        (
            "converter".to_string(),
            format!("tinyrustlm fixtures {}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    if !recipe.description.is_empty() {
        metadata.push(("description".to_string(), recipe.description.clone()));
    }
    Ok(ModelFile {
        config,
        metadata,
        vocab,
        tensors,
    })
}

/// The canonical bytes of a recipe.
pub fn build_bytes(recipe: &Recipe) -> Result<Vec<u8>> {
    let model = build(recipe)?;
    format::write(&model).map_err(|e| anyhow::anyhow!("recipe {}: {e}", recipe.name))
}

/// Writes every fixture into `dir` (or, with `check`, compares with what is there). Returns the
/// names of files that differ (check) or were written.
pub fn generate(dir: &Path, check: bool) -> Result<Vec<String>> {
    let recipes = load_recipes(dir)?;
    let mut touched = Vec::new();
    for r in &recipes.fixtures {
        let bytes = build_bytes(r)?;
        let path = dir.join(format!("{}.slm", r.name));
        let same = std::fs::read(&path)
            .map(|old| old == bytes)
            .unwrap_or(false);
        if !same {
            touched.push(r.name.clone());
            if !check {
                std::fs::write(&path, &bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(touched)
}

/// The built-in default model, embedded in the binary: the fixture corpus/recipes.json names as
/// `default` (a test holds the two together).
pub const DEFAULT_MODEL: &[u8] = include_bytes!("../../corpus/spm-gqa-untied-q8_0.slm");
/// Its name in corpus/recipes.json.
pub const DEFAULT_MODEL_NAME: &str = "spm-gqa-untied-q8_0";
