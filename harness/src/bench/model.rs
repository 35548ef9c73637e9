//! `tinyrustlm bench model`: prefill and decode tokens per second, load + verify time and peak
//! memory for seeded models of the stories15M and stories42M shapes, in every dtype that fits
//! the model budget (the others are reported as skipped), per engine ([`super::engines`]).
//! Several runs, median with spread; peak memory against the budget file + KV cache + 2 MiB.

use super::engines::{self, Case, Context, Engine, Measured, ENGINES};
use super::{load_average, stream_read, Rate, Stats, STREAM_BYTES};
use crate::engine::wasmtime::{AbiInstance, WasmLimits};
use crate::engine::ABI_VERSION;
use crate::fixtures::{byte_vocab, encode_tensor, SplitMix64};
use anyhow::{anyhow, Context as _, Result};
use runtime::format::{self, llama, Config, DType, ModelFile, TensorData};
use serde::Serialize;
use sha2::Digest;
use std::path::Path;

/// Tokens of the prefill prompt: BOS and 127 bytes (one token each in the byte vocabulary).
pub const PROMPT_TOKENS: usize = 128;
/// Greedy tokens of one decode run (after BOS).
pub const DECODE_TOKENS: u32 = 32;
/// Memory allowed beyond the file and the KV cache (bytes).
pub const MEMORY_SLACK_BYTES: usize = 2 << 20;

/// A model shape to measure.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Shape {
    pub name: &'static str,
    pub dim: u32,
    pub ffn_dim: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub vocab: u32,
    pub context: u32,
}

/// The shapes of Karpathy's stories15M and stories42M checkpoints.
pub const SHAPES: [Shape; 2] = [
    Shape {
        name: "stories15M",
        dim: 288,
        ffn_dim: 768,
        n_layers: 6,
        n_heads: 6,
        vocab: 32000,
        context: 256,
    },
    Shape {
        name: "stories42M",
        dim: 512,
        ffn_dim: 1376,
        n_layers: 8,
        n_heads: 8,
        vocab: 32000,
        context: 1024,
    },
];

/// Builds a seeded random model of `shape` with matrices stored as `dtype`.
pub fn build(shape: &Shape, dtype: DType) -> Result<Vec<u8>> {
    let config = Config {
        arch: format::header::ARCH_LLAMA,
        vocab_size: shape.vocab,
        dim: shape.dim,
        n_layers: shape.n_layers,
        n_heads: shape.n_heads,
        n_kv_heads: shape.n_heads,
        head_dim: shape.dim / shape.n_heads,
        ffn_dim: shape.ffn_dim,
        max_context: shape.context,
        rope_theta: 10000.0,
        rms_eps: 1e-5,
        tied_classifier: true,
    };
    let mut rng = SplitMix64(0x5eed);
    let mut tensors = Vec::new();
    for slot in llama::slots(&config) {
        let n: usize = slot.shape.iter().map(|&d| d as usize).product();
        let norm = slot.role == llama::Role::Norm;
        let scale = if norm {
            0.0
        } else {
            1.732 / (*slot.shape.last().unwrap() as f32).sqrt()
        };
        let values: Vec<f32> = (0..n)
            .map(|_| if norm { 1.0 } else { scale * rng.next_signed() })
            .collect();
        let dt = if norm { DType::F32 } else { dtype };
        tensors.push(TensorData {
            bytes: encode_tensor(&values, dt)?,
            name: slot.name,
            dtype: dt,
            shape: slot.shape,
        });
    }
    let model = ModelFile {
        config,
        metadata: vec![
            ("name".into(), format!("{}-{}", shape.name, dtype.name())),
            ("kind".into(), "fixture".into()),
        ],
        // No stop token: a generation always runs to its token limit, and an ASCII prompt has
        // one token per byte.
        vocab: byte_vocab(shape.vocab, vec![]),
        tensors,
    };
    format::write(&model).map_err(|e| anyhow!("{e}"))
}

/// One measured configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub shape: &'static str,
    pub dtype: &'static str,
    pub engine: &'static str,
    pub file_bytes: usize,
    pub kv_cache_bytes: usize,
    /// file + KV cache + [`MEMORY_SLACK_BYTES`].
    pub budget_bytes: usize,
    /// Load + verify, seconds.
    pub load_s: Stats,
    pub prefill_tokens: usize,
    pub prefill_tok_s: Rate,
    pub decode_tokens: u32,
    pub decode_tok_s: Rate,
    /// Whether the decode steps computed the logits digest (spec/determinism.md).
    pub decode_logits_digest: bool,
    /// Prefill tok/s over decode tok/s: when measured in rounds (`bench model`, and a browser
    /// page's own rounds), the median of the rounds' ratios, with their lowest and highest in
    /// `prefill_over_decode_spread`; otherwise the ratio of the medians.
    pub prefill_over_decode: f64,
    pub prefill_over_decode_spread: Option<[f64; 2]>,
    /// Decode tok/s over the `native` row's of the same model in this run (None when `native`
    /// was not measured): when the two were measured in the same rounds (`bench model`:
    /// `Measured::rounds_with_native`), the median of the rounds' ratios (each of two runs made
    /// back to back), with their lowest and highest in `decode_vs_native_spread`; otherwise the
    /// ratio of the medians (`bench browsers`: the lower of the ratios to native measured before
    /// and after the browsers, the spread both).
    pub decode_vs_native: Option<f64>,
    pub decode_vs_native_spread: Option<[f64; 2]>,
    /// Bytes of the file's tensors, which a decode step reads once each (the tied classifier
    /// is the embedding table).
    pub tensor_bytes: usize,
    /// `tensor_bytes` × median decode tok/s: the read bandwidth decoding needs.
    pub decode_read_bytes_per_s: f64,
    /// The machine's streaming read bandwidth measured next to this model (`bench::stream_read`,
    /// None when not measured) and `decode_read_bytes_per_s` over its median: how close decoding
    /// is to the memory's ceiling.
    pub stream_read_bytes_per_s: Option<Rate>,
    pub decode_read_vs_stream: Option<f64>,
    /// Peak memory of the model and its session (see `peak_kind`).
    pub peak_bytes: Option<usize>,
    /// "native heap" (the harness's counting allocator) or "wasm linear memory".
    pub peak_kind: &'static str,
    pub over_budget: Option<bool>,
    /// Engine `wasmtime-file`'s speed over engine `wasmtime`'s on this model (`--wasm`): the
    /// median of the rounds' ratios, with their lowest and highest. None in other rows.
    pub against: Option<Against>,
}

/// An engine's prefill and decode speed over another's measured in the same rounds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Against {
    pub engine: &'static str,
    pub prefill: Rate,
    pub decode: Rate,
}

impl Against {
    /// `m`'s speed over `base`'s (named `engine`), round r's over round r's; None unless both
    /// have the same nonzero number of rounds (for [`engines::measure`]'s, made together).
    pub fn of(m: &Measured, base: &Measured, engine: &'static str) -> Option<Against> {
        let p = PROMPT_TOKENS as f64;
        let d = f64::from(DECODE_TOKENS);
        Some(Against {
            engine,
            prefill: paired_ratio(&m.prefill_rounds_s, p, &base.prefill_rounds_s, p)?,
            decode: paired_ratio(&m.decode_rounds_s, d, &base.decode_rounds_s, d)?,
        })
    }
}

/// A shape and dtype not measured, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub shape: &'static str,
    pub dtype: &'static str,
    pub estimated_bytes: u64,
    pub reason: String,
}

/// The module `--wasm` measured as engine `wasmtime-file`.
#[derive(Clone, Debug, Serialize)]
pub struct WasmFile {
    pub path: String,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
}

/// The whole report (`--json` prints it).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub bench: &'static str,
    /// The module of engine `wasmtime-file` (`--wasm`), if any.
    pub wasm_file: Option<WasmFile>,
    pub runs: usize,
    pub prompt_tokens: usize,
    pub decode_tokens: u32,
    /// /proc/loadavg (1, 5, 15 min) before and after: the machine may be shared.
    pub load_average_before: Option<[f64; 3]>,
    pub load_average_after: Option<[f64; 3]>,
    pub rows: Vec<Row>,
    pub skipped: Vec<Skipped>,
}

/// Approximate file size of a shape in a dtype (matrices in the dtype, norms f32).
fn estimate_bytes(shape: &Shape, dtype: DType) -> u64 {
    let (d, f, l, v) = (
        shape.dim as u64,
        shape.ffn_dim as u64,
        shape.n_layers as u64,
        shape.vocab as u64,
    );
    let matrix_elems = v * d + l * (4 * d * d + 3 * d * f);
    let per_block = dtype.block_bytes() as u64;
    matrix_elems / dtype.block_elems() as u64 * per_block + (2 * l + 1) * d * 4
}

/// The engines named in `names` (all when empty), in [`ENGINES`] order.
fn engines(names: &[String]) -> Result<Vec<&'static Engine>> {
    for n in names {
        anyhow::ensure!(
            ENGINES.iter().any(|e| e.name == n),
            "unknown engine {n:?} (engines: {})",
            engine_names()
        );
    }
    Ok(ENGINES
        .iter()
        .filter(|e| names.is_empty() || names.iter().any(|n| n == e.name))
        .collect())
}

/// The names of [`ENGINES`], comma-separated.
pub fn engine_names() -> String {
    ENGINES.iter().map(|e| e.name).collect::<Vec<_>>().join(",")
}

fn mib(b: usize) -> f64 {
    b as f64 / 1048576.0
}

/// A ratio, with the lowest and highest of its rounds when it has them.
fn ratio(r: f64, spread: Option<[f64; 2]>) -> String {
    match spread {
        Some([lo, hi]) => format!("{r:.2} ({lo:.2}..{hi:.2})"),
        None => format!("{r:.2}"),
    }
}

/// Prints a row as a table line.
pub fn print_row(row: &Row) -> std::io::Result<()> {
    let (p, d) = (row.prefill_tok_s, row.decode_tok_s);
    let memory = match (row.peak_bytes, row.over_budget) {
        (Some(b), Some(over)) => format!(
            "peak {:>6.2} MiB {} / budget {:.2} MiB{}",
            mib(b),
            row.peak_kind,
            mib(row.budget_bytes),
            if over { "  OVER BUDGET" } else { "" }
        ),
        _ => "peak n/a".into(),
    };
    crate::outln!(
        "{:<11} {:<5} {:<15} file {:>6.2} MiB  load+verify {:>6.1} ms ({:.1}..{:.1})  \
         prefill {:>7.1} tok/s ({:.1}..{:.1})  decode{} {:>7.1} tok/s ({:.1}..{:.1})  \
         prefill/decode {}{}{}  {memory}",
        row.shape,
        row.dtype,
        row.engine,
        mib(row.file_bytes),
        row.load_s.median_s * 1e3,
        row.load_s.min_s * 1e3,
        row.load_s.max_s * 1e3,
        p.median,
        p.min,
        p.max,
        if row.decode_logits_digest {
            "+digest"
        } else {
            ""
        },
        d.median,
        d.min,
        d.max,
        ratio(row.prefill_over_decode, row.prefill_over_decode_spread),
        row.decode_vs_native
            .map(|r| format!("  decode/native {}", ratio(r, row.decode_vs_native_spread)))
            .unwrap_or_default(),
        row.decode_read_vs_stream
            .map(|r| format!(
                "  reads {:.1} GB/s = {r:.2} of stream",
                row.decode_read_bytes_per_s / 1e9
            ))
            .unwrap_or_default(),
    )?;
    if let Some(a) = row.against {
        let (p, d) = (a.prefill, a.decode);
        crate::outln!(
            "{:<33} against {}: prefill x{} decode x{} (median of the rounds' ratios)",
            "",
            a.engine,
            ratio(p.median, Some([p.min, p.max])),
            ratio(d.median, Some([d.min, d.max])),
        )?;
    }
    Ok(())
}

/// What `bench model` measures: empty lists mean all.
pub struct Selection<'a> {
    /// Timed runs per measurement (after one warm-up run).
    pub runs: usize,
    /// Only this shape.
    pub shape: Option<&'a str>,
    /// Engine names of [`ENGINES`].
    pub engines: &'a [String],
    /// Dtype names (f32, f16, q8_0, q4_0).
    pub dtypes: &'a [String],
    /// A wasm module to measure as engine `wasmtime-file` ([`engines::MODULE_FILE`]) too.
    pub wasm: Option<&'a Path>,
}

/// A model `bench` measures: its shape and dtype, and the file's bytes.
pub struct BenchModel {
    pub shape: &'static Shape,
    pub dtype: DType,
    pub bytes: Vec<u8>,
}

impl BenchModel {
    /// `SHAPE-DTYPE`, e.g. `stories15M-q8_0`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.shape.name, self.dtype.name())
    }

    /// f32 keys and values for every layer and position of the context.
    pub fn kv_cache_bytes(&self) -> usize {
        let s = self.shape;
        2 * 4 * (s.n_layers as usize) * (s.context as usize) * s.dim as usize
    }

    /// The memory budget: file + KV cache + [`MEMORY_SLACK_BYTES`].
    pub fn budget_bytes(&self) -> usize {
        self.bytes.len() + self.kv_cache_bytes() + MEMORY_SLACK_BYTES
    }

    /// Bytes of the file's tensor payloads (0 if the file does not parse, which a generated
    /// model always does).
    pub fn tensor_bytes(&self) -> usize {
        format::Slm::parse(&self.bytes)
            .map(|f| f.tensors.iter().map(|t| t.length as usize).sum())
            .unwrap_or(0)
    }

    /// The row of `engine`'s measurement `m`, with its decode ratio to `native` (the native
    /// engine's measurement in the same run: see [`Row::decode_vs_native`]) and the streaming-read
    /// baseline `stream` measured next to it, when given.
    pub fn row(
        &self,
        engine: &'static str,
        m: &Measured,
        native: Option<&Measured>,
        stream: Option<Rate>,
    ) -> Row {
        let tokens = f64::from(DECODE_TOKENS);
        let vs_native = native.map(|n| {
            let paired = if m.rounds_with_native && n.rounds_with_native {
                paired_ratio(&m.decode_rounds_s, tokens, &n.decode_rounds_s, tokens)
            } else {
                None
            };
            paired
                .map(|r| (r, true))
                .unwrap_or((unpaired(n.decode.median_s / m.decode.median_s), false))
        });
        let over_decode = paired_ratio(
            &m.prefill_rounds_s,
            PROMPT_TOKENS as f64,
            &m.decode_rounds_s,
            tokens,
        );
        let prefill_tok_s = m.prefill.throughput(PROMPT_TOKENS as f64);
        let decode_tok_s = m.decode.throughput(DECODE_TOKENS as f64);
        let budget_bytes = self.budget_bytes();
        let tensor_bytes = self.tensor_bytes();
        let decode_read_bytes_per_s = tensor_bytes as f64 * decode_tok_s.median;
        Row {
            shape: self.shape.name,
            dtype: self.dtype.name(),
            engine,
            file_bytes: self.bytes.len(),
            kv_cache_bytes: self.kv_cache_bytes(),
            budget_bytes,
            load_s: m.load.clone(),
            prefill_tokens: PROMPT_TOKENS,
            prefill_tok_s,
            decode_tokens: DECODE_TOKENS,
            decode_tok_s,
            decode_logits_digest: m.decode_logits_digest,
            prefill_over_decode: over_decode
                .map_or(prefill_tok_s.median / decode_tok_s.median, |r| r.median),
            prefill_over_decode_spread: over_decode.map(|r| [r.min, r.max]),
            decode_vs_native: vs_native.map(|(r, _)| r.median),
            decode_vs_native_spread: vs_native
                .filter(|&(_, paired)| paired)
                .map(|(r, _)| [r.min, r.max]),
            tensor_bytes,
            decode_read_bytes_per_s,
            stream_read_bytes_per_s: stream,
            decode_read_vs_stream: stream.map(|s| decode_read_bytes_per_s / s.median),
            peak_bytes: m.peak_bytes,
            peak_kind: m.peak_kind,
            over_budget: m.peak_bytes.map(|p| p > budget_bytes),
            against: None,
        }
    }
}

/// `num / den` of two rates measured over the same runs: `num_s[r]` and `den_s[r]` are the
/// times of round r (made back to back: by [`engines::measure`], or by a browser page) for
/// `num_units` and `den_units`; the median of the rounds' ratios with their lowest and highest,
/// so that a change of the machine's load between rounds does not move the ratio. None unless
/// both have the same (nonzero) number of rounds.
fn paired_ratio(num_s: &[f64], num_units: f64, den_s: &[f64], den_units: f64) -> Option<Rate> {
    if num_s.is_empty() || num_s.len() != den_s.len() {
        return None;
    }
    let ratios = num_s
        .iter()
        .zip(den_s)
        .map(|(n, d)| (num_units / n) / (den_units / d))
        .collect();
    // Stats::of orders its values and takes the median: of ratios as well as of times.
    let s = Stats::of(ratios);
    Some(Rate {
        median: s.median_s,
        min: s.min_s,
        max: s.max_s,
    })
}

/// The ratio `r` of two medians as a [`Rate`] without spread.
fn unpaired(r: f64) -> Rate {
    Rate {
        median: r,
        min: r,
        max: r,
    }
}

/// The models of `shape` (all when None) in `dtypes` (all when empty), built, in [`SHAPES`] and
/// [`DType::ALL`] order; the ones over the model budget are returned as skipped. `on_skip` sees
/// each skipped one as it is found. The names are the caller's to check first
/// ([`check_selection`]: an unknown one selects nothing).
pub fn select(
    shape: Option<&str>,
    dtypes: &[String],
    mut on_skip: impl FnMut(&Skipped),
) -> Result<(Vec<BenchModel>, Vec<Skipped>)> {
    let mut models = Vec::new();
    let mut skipped = Vec::new();
    for s in SHAPES.iter().filter(|s| shape.is_none_or(|o| o == s.name)) {
        for dtype in DType::ALL
            .into_iter()
            .filter(|d| dtypes.is_empty() || dtypes.iter().any(|n| n == d.name()))
        {
            let estimated_bytes = estimate_bytes(s, dtype);
            if estimated_bytes > runtime::limits::MAX_MODEL_BYTES {
                let skip = Skipped {
                    shape: s.name,
                    dtype: dtype.name(),
                    estimated_bytes,
                    reason: format!(
                        "about {:.1} MiB, over the {} MiB model budget",
                        estimated_bytes as f64 / 1048576.0,
                        runtime::limits::MAX_MODEL_BYTES / 1048576
                    ),
                };
                on_skip(&skip);
                skipped.push(skip);
                continue;
            }
            models.push(BenchModel {
                shape: s,
                dtype,
                bytes: build(s, dtype)?,
            });
        }
    }
    Ok((models, skipped))
}

/// Refuses an unknown `--shape` or `--dtype` (before any work or output).
pub fn check_selection(shape: Option<&str>, dtypes: &[String]) -> Result<()> {
    if let Some(o) = shape {
        anyhow::ensure!(
            SHAPES.iter().any(|s| s.name == o),
            "unknown shape {o:?} (stories15M, stories42M)"
        );
    }
    for d in dtypes {
        anyhow::ensure!(
            DType::ALL.iter().any(|t| t.name() == d),
            "unknown dtype {d:?} (f32, f16, q8_0, q4_0)"
        );
    }
    Ok(())
}

/// The prefill prompt: [`PROMPT_TOKENS`] - 1 bytes `a..z` repeated (BOS comes first).
pub fn prompt() -> Vec<u8> {
    (0..PROMPT_TOKENS - 1)
        .map(|i| b'a' + (i % 26) as u8)
        .collect()
}

/// Prints a skipped model as a table line.
pub fn print_skipped(s: &Skipped) -> std::io::Result<()> {
    crate::outln!("{:<11} {:<5} skipped: {}", s.shape, s.dtype, s.reason)
}

/// Runs the benchmark on `selection` and prints a table, or the [`Report`] as JSON.
pub fn run(selection: &Selection, json: bool, peak: &dyn Fn(bool) -> Option<usize>) -> Result<()> {
    let runs = selection.runs;
    anyhow::ensure!(runs > 0, "--runs must be at least 1");
    let mut selected = engines(selection.engines)?;
    check_selection(selection.shape, selection.dtypes)?;
    let mut ctx = Context::new(peak);
    let wasm_file = match selection.wasm {
        Some(path) => {
            // Before any output: a module that is missing, not wasm or not the runtime's ABI
            // is refused first.
            let bytes = std::fs::read(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            let module = ctx.wasm_module_of(path, &bytes)?;
            let mut inst = AbiInstance::new(module, WasmLimits::default())
                .with_context(|| format!("{}: not a module of the runtime", path.display()))?;
            let version = inst.abi_version()?;
            anyhow::ensure!(
                version == ABI_VERSION,
                "{}: ABI version {version}, the harness speaks {ABI_VERSION}",
                path.display()
            );
            ctx.module_file = Some(path.to_path_buf());
            // Compared with engine wasmtime, right after it in every round.
            if !selected.iter().any(|e| e.name == "wasmtime") {
                let built = ENGINES.iter().find(|e| e.name == "wasmtime");
                selected.extend(built);
                selected.sort_by_key(|e| ENGINES.iter().position(|x| x.name == e.name));
            }
            let at = selected
                .iter()
                .position(|e| e.name == "wasmtime")
                .map_or(0, |i| i + 1);
            selected.insert(at, &engines::MODULE_FILE);
            Some(WasmFile {
                path: path.display().to_string(),
                sha256: crate::smoke::hex(&sha2::Sha256::digest(&bytes)),
            })
        }
        None => None,
    };
    let load_average_before = load_average();
    if !json {
        if let Some([a, b, c]) = load_average_before {
            crate::outln!("load average {a:.2} {b:.2} {c:.2} (the machine may be shared)")?;
        }
    }
    let prompt = prompt();
    let mut rows = Vec::new();
    let (models, skipped) = select(selection.shape, selection.dtypes, |s| {
        if !json {
            // A closed stdout fails the next print, which reports it.
            let _ = print_skipped(s);
        }
    })?;
    anyhow::ensure!(!models.is_empty(), "no model within the budget selected");
    for model in &models {
        let case = Case {
            bytes: &model.bytes,
            runs,
            prompt: &prompt,
            decode_tokens: DECODE_TOKENS,
        };
        let stream = stream_read(runs.max(3));
        if !json {
            crate::outln!(
                "{:<11} {:<5} streaming read of {} MiB: {:.1} GB/s ({:.1}..{:.1}); decode reads the \
                 {:.2} MiB of tensors once per token",
                model.shape.name,
                model.dtype.name(),
                STREAM_BYTES >> 20,
                stream.median / 1e9,
                stream.min / 1e9,
                stream.max / 1e9,
                mib(model.tensor_bytes()),
            )?;
        }
        let measured = engines::measure(&mut ctx, &case, &selected)?;
        let native = selected
            .iter()
            .zip(&measured)
            .find(|(e, _)| e.name == "native")
            .map(|(_, m)| m);
        let built = selected
            .iter()
            .zip(&measured)
            .find(|(e, _)| e.name == "wasmtime")
            .map(|(_, m)| m);
        for (engine, m) in selected.iter().zip(&measured) {
            let baseline = native.filter(|n| !std::ptr::eq(*n, m));
            let mut row = model.row(engine.name, m, baseline, Some(stream));
            if engine.name == engines::MODULE_FILE.name {
                row.against = built.and_then(|b| Against::of(m, b, "wasmtime"));
            }
            if !json {
                print_row(&row)?;
            }
            rows.push(row);
        }
    }
    let report = Report {
        bench: "model",
        wasm_file,
        runs,
        prompt_tokens: PROMPT_TOKENS,
        decode_tokens: DECODE_TOKENS,
        load_average_before,
        load_average_after: load_average(),
        rows,
        skipped,
    };
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        if let Some([a, b, c]) = report.load_average_after {
            crate::outln!("load average {a:.2} {b:.2} {c:.2}")?;
        }
        crate::outln!("{}", footnote(runs))?;
        crate::outln!("{}", ROUNDS_NOTE)?;
        crate::outln!(
            "(reads = tensor bytes x median decode tok/s, against the streaming read of a {} MiB \
             buffer measured just before the model's rows: decoding reads every tensor once per \
             token, so a model larger than the cache cannot decode faster than that allows)",
            STREAM_BYTES >> 20
        )?;
    }
    Ok(())
}

/// How the in-process engines were timed ([`engines::measure`]).
pub const ROUNDS_NOTE: &str = "(in-process engines run in turn, in the opposite order every \
     other round: rounds of a load, then rounds of a prefill and a decode, each after an untimed \
     one; a ratio in parentheses is the median (lowest..highest) of the rounds' ratios)";

/// What the table's figures mean.
pub fn footnote(runs: usize) -> String {
    format!(
        "(median of {runs} runs, spread lowest..highest: for tok/s the slowest..fastest run, \
         for ms the fastest..slowest; one thread; prefill = start + first \
         step for a {PROMPT_TOKENS}-token prompt; decode = {DECODE_TOKENS} greedy steps after \
         BOS, logits digest off unless marked +digest; budget = file + KV cache + 2 MiB)"
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bench::engines::{measure, Case, Context};

    fn measured(prefill_s: &[f64], decode_s: &[f64], rounds: bool) -> Measured {
        let rounds_of = |s: &[f64]| if rounds { s.to_vec() } else { Vec::new() };
        Measured {
            load: Stats::of(vec![1.0]),
            prefill: Stats::of(prefill_s.to_vec()),
            decode: Stats::of(decode_s.to_vec()),
            prefill_rounds_s: rounds_of(prefill_s),
            decode_rounds_s: rounds_of(decode_s),
            rounds_with_native: rounds,
            decode_logits_digest: false,
            peak_bytes: None,
            peak_kind: "none",
        }
    }

    /// A tiny model of the bench's kind (seeded, byte vocabulary, no stop token).
    pub(crate) fn tiny() -> BenchModel {
        const TINY: Shape = Shape {
            name: "tiny",
            dim: 64,
            ffn_dim: 128,
            n_layers: 2,
            n_heads: 4,
            vocab: 320,
            context: 64,
        };
        BenchModel {
            shape: &TINY,
            dtype: DType::Q8_0,
            bytes: build(&TINY, DType::Q8_0).expect("a tiny model builds"),
        }
    }

    #[test]
    fn ratios_of_runs_made_in_rounds_pair_the_rounds() {
        let model = tiny();
        // The machine got four times slower from round 4 on, and in round 3 the engine alone
        // was slowed: its ratio to native is that of its own round, the median of the rounds'
        // ratios does not move, the ratio of the medians would (4 s over 1 s).
        let native = measured(&[1.0; 5], &[1.0, 1.0, 1.0, 4.0, 4.0], true);
        let decode = [2.0, 2.0, 4.0, 8.0, 8.0];
        let engine = measured(&[2.0; 5], &decode, true);
        let row = model.row("engine", &engine, Some(&native), None);
        assert_eq!(row.decode_vs_native, Some(0.5));
        assert_eq!(row.decode_vs_native_spread, Some([0.25, 0.5]));
        // 128 tokens in 2 s over 32 tokens in 2, 4 or 8 s.
        assert_eq!(row.prefill_over_decode, 8.0);
        assert_eq!(row.prefill_over_decode_spread, Some([4.0, 16.0]));

        // Runs not made in rounds: the ratios of the medians, no spread.
        let unpaired = measured(&[2.0; 5], &decode, false);
        let row = model.row("unpaired", &unpaired, Some(&native), None);
        assert_eq!(row.decode_vs_native, Some(0.25));
        assert_eq!(row.decode_vs_native_spread, None);
        assert_eq!(row.prefill_over_decode, 8.0);
        assert_eq!(row.prefill_over_decode_spread, None);

        // A browser page's own rounds (a prefill then a decode, not made with native's): its
        // prefill/decode pairs them, its decode/native is the ratio of the medians.
        let page = Measured {
            rounds_with_native: false,
            ..measured(&[2.0; 5], &decode, true)
        };
        let row = model.row("page", &page, Some(&native), None);
        assert_eq!(row.decode_vs_native, Some(0.25));
        assert_eq!(row.decode_vs_native_spread, None);
        assert_eq!(row.prefill_over_decode, 8.0);
        assert_eq!(row.prefill_over_decode_spread, Some([4.0, 16.0]));
    }

    /// Three rounds of `model` with a short prompt and four decode steps.
    fn tiny_case(model: &BenchModel) -> Case<'_> {
        Case {
            bytes: &model.bytes,
            runs: 3,
            prompt: b"once upon a time",
            decode_tokens: 4,
        }
    }

    #[test]
    fn engines_measured_together_run_in_rounds() {
        let model = tiny();
        let peak = |_: bool| None;
        let mut ctx = Context::new(&peak);
        let case = tiny_case(&model);
        let engines: Vec<_> = ENGINES
            .iter()
            .filter(|e| e.name == "native" || e.name == "wasmtime")
            .collect();
        let m = measure(&mut ctx, &case, &engines).expect("both engines run the tiny model");
        assert_eq!(m.len(), 2);
        for m in &m {
            assert_eq!((m.load.runs, m.prefill.runs, m.decode.runs), (3, 3, 3));
            assert_eq!(m.prefill_rounds_s.len(), 3);
            assert_eq!(m.decode_rounds_s.len(), 3);
            assert!(m.decode_rounds_s.iter().all(|&s| s > 0.0));
        }
        let row = model.row("wasmtime", &m[1], Some(&m[0]), None);
        let [lo, hi] = row.decode_vs_native_spread.expect("paired by rounds");
        let r = row.decode_vs_native.unwrap();
        assert!(0.0 < lo && lo <= r && r <= hi, "{lo} {r} {hi}");
    }

    /// `--wasm`: the module given runs as engine `wasmtime-file` in the same rounds, and its
    /// speed over `wasmtime`'s pairs them (here the same module, so both run the same code).
    #[test]
    fn a_module_file_runs_in_the_rounds_of_the_built_one() {
        let model = tiny();
        let peak = |_: bool| None;
        let mut ctx = Context::new(&peak);
        let case = tiny_case(&model);
        let built = ENGINES.iter().find(|e| e.name == "wasmtime").unwrap();
        assert!(
            measure(&mut ctx, &case, &[&engines::MODULE_FILE]).is_err(),
            "without a module given, wasmtime-file refuses to run"
        );
        ctx.module_file = Some(crate::engine::wasmtime::WasmVariant::Simd128.path());
        let m = measure(&mut ctx, &case, &[built, &engines::MODULE_FILE])
            .expect("the built module runs as a file too (the same greedy run)");
        let a = Against::of(&m[1], &m[0], "wasmtime").expect("paired by rounds");
        for r in [a.prefill, a.decode] {
            assert!(
                0.0 < r.min && r.min <= r.median && r.median <= r.max,
                "{r:?}"
            );
        }
        let unpaired = Measured {
            prefill_rounds_s: Vec::new(),
            ..measured(&[1.0], &[1.0], false)
        };
        assert!(Against::of(&unpaired, &m[0], "wasmtime").is_none());
    }
}
