//! `tinyrustlm bench model`: prefill and decode tokens per second, load + verify time and peak
//! heap for generated models of the stories15M and stories42M shapes, per dtype. Several runs,
//! median with spread.

use super::Stats;
use crate::fixtures::{byte_vocab, encode_tensor, SplitMix64};
use anyhow::{anyhow, Result};
use runtime::format::{self, llama, Config, DType, ModelFile, TensorData};
use runtime::generate::sampler::SamplerSettings;
use runtime::generate::{Session, Step};
use runtime::model::Model;
use serde::Serialize;

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
    pub engine: String,
    pub file_bytes: usize,
    pub kv_cache_bytes: usize,
    pub load_ms: Stats,
    pub prefill_tokens: usize,
    pub prefill_tok_s: (f64, f64, f64),
    pub decode_tokens: u32,
    pub decode_tok_s: (f64, f64, f64),
    /// Peak heap bytes of the model and its session while loading and generating (counted by the
    /// harness's allocator; the file bytes are part of it, held once).
    pub peak_heap_bytes: Option<usize>,
}

fn greedy(max_new_tokens: u32) -> SamplerSettings {
    SamplerSettings {
        temperature: 0.0,
        top_k: None,
        top_p: 1.0,
        seed: 1,
        max_new_tokens,
    }
}

/// Measures the native engine on one model. `peak(true)` resets the peak-heap counter to the
/// bytes in use now and returns them; `peak(false)` returns the peak since (None: not counted).
pub fn measure_native(
    shape: &Shape,
    dtype: DType,
    runs: usize,
    peak: &dyn Fn(bool) -> Option<usize>,
) -> Result<Row> {
    let bytes = build(shape, dtype)?;
    let rt = |e: runtime::Error| anyhow!("{e}");
    let load_ms = Stats::measure(runs, || {
        Model::load(bytes.clone()).expect("generated model loads");
    });
    let file_bytes = bytes.len();
    // Heap in use before the model, not counting its file bytes (which the model takes over).
    let baseline = peak(true).map(|current| current - file_bytes);
    let model = Model::load(bytes).map_err(rt)?;
    let mut session = Session::new(model, 0).map_err(rt)?;
    let kv_cache_bytes = 2 * 4 * (shape.n_layers * shape.context * shape.dim) as usize;

    // Prefill: a prompt of BOS + 127 bytes runs 127 tokens through the model in `start`.
    let prompt: Vec<u8> = (0..127).map(|i| b'a' + (i % 26) as u8).collect();
    let prefill_tokens = prompt.len();
    let prefill = Stats::measure(runs, || {
        session.start(&prompt, greedy(1)).expect("prefill");
    });
    // Decode: BOS, then half the context of new tokens, one step at a time.
    let decode_tokens = shape.context / 2;
    let decode = Stats::measure(runs, || {
        session.start(b"", greedy(decode_tokens)).expect("start");
        while let Step::Token { .. } = session.step().expect("step") {}
    });
    Ok(Row {
        shape: shape.name,
        dtype: dtype.name(),
        engine: "native".into(),
        file_bytes,
        kv_cache_bytes,
        load_ms: Stats {
            median_s: load_ms.median_s * 1e3,
            min_s: load_ms.min_s * 1e3,
            max_s: load_ms.max_s * 1e3,
            runs: load_ms.runs,
        },
        prefill_tokens,
        prefill_tok_s: prefill.rate(prefill_tokens as f64),
        decode_tokens,
        decode_tok_s: decode.rate(decode_tokens as f64),
        peak_heap_bytes: peak(false).zip(baseline).map(|(p, b)| p - b),
    })
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

/// Measures the .wasm module under wasmtime on one model, through the raw ABI (chunked load,
/// start, step) without reading diagnostics between steps. Peak memory is the instance's linear
/// memory size.
pub fn measure_wasmtime(
    module: &crate::engine::wasmtime::WasmModule,
    shape: &Shape,
    dtype: DType,
    runs: usize,
) -> Result<Row> {
    use crate::engine::wasmtime::{AbiInstance, WasmLimits, LOAD_CHUNK_BYTES};
    let bytes = build(shape, dtype)?;
    let ok = |what: &str, status: u32| -> Result<()> {
        anyhow::ensure!(status == 0, "wasm {what} failed with code {status}");
        Ok(())
    };
    let mut inst = AbiInstance::new(module, WasmLimits::default())?;
    let load_ms = {
        let mut times = Vec::new();
        for _ in 0..runs {
            let t = std::time::Instant::now();
            ok("load", inst.load_chunked(&bytes, LOAD_CHUNK_BYTES)?)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        Stats {
            runs,
            median_s: times[runs / 2],
            min_s: times[0],
            max_s: times[runs - 1],
        }
    };
    let out = inst.alloc(16)?;
    let prompt: Vec<u8> = (0..127).map(|i| b'a' + (i % 26) as u8).collect();
    let prompt_ptr = inst.alloc_with(&prompt)?;
    let prefill_tokens = prompt.len();
    let mut failure = None;
    let prefill = Stats::measure(runs, || {
        let r = inst
            .set_sampling(0.0, u32::MAX, 1.0, 1, 1)
            .and_then(|_| inst.start(prompt_ptr, prompt.len() as u32));
        if !matches!(r, Ok(0)) {
            failure = Some(format!("prefill: {r:?}"));
        }
    });
    let decode_tokens = shape.context / 2;
    let decode = Stats::measure(runs, || {
        let r = inst
            .set_sampling(0.0, u32::MAX, 1.0, 1, decode_tokens)
            .and_then(|_| inst.start(prompt_ptr, 0));
        if !matches!(r, Ok(0)) {
            failure = Some(format!("start: {r:?}"));
            return;
        }
        for _ in 0..decode_tokens {
            if !matches!(inst.step(out), Ok(0)) {
                failure = Some("step failed".into());
                return;
            }
        }
    });
    if let Some(f) = failure {
        anyhow::bail!("wasmtime {}: {f}", shape.name);
    }
    Ok(Row {
        shape: shape.name,
        dtype: dtype.name(),
        engine: "wasmtime".into(),
        file_bytes: bytes.len(),
        kv_cache_bytes: 2 * 4 * (shape.n_layers * shape.context * shape.dim) as usize,
        load_ms,
        prefill_tokens,
        prefill_tok_s: prefill.rate(prefill_tokens as f64),
        decode_tokens,
        decode_tok_s: decode.rate(decode_tokens as f64),
        peak_heap_bytes: Some(inst.memory_size()),
    })
}

fn mib(b: usize) -> f64 {
    b as f64 / 1048576.0
}

/// Runs the benchmark and prints a table (or JSON).
pub fn run(
    runs: usize,
    only_shape: Option<&str>,
    engines: &[String],
    json: bool,
    peak: &dyn Fn(bool) -> Option<usize>,
) -> Result<()> {
    use crate::engine::wasmtime::{WasmModule, WasmVariant};
    use runtime::model::cpu;
    let mut modules = Vec::new();
    for name in engines {
        match name.as_str() {
            "native" | "native-portable" => {}
            "wasmtime" => {
                modules.push((name, WasmModule::compile(&WasmVariant::Simd128.bytes()?)?))
            }
            "wasmtime-scalar" => {
                modules.push((name, WasmModule::compile(&WasmVariant::Scalar.bytes()?)?))
            }
            other => anyhow::bail!("unknown bench engine {other:?}"),
        }
    }
    let natives: Vec<(&str, cpu::Isa)> = engines
        .iter()
        .filter_map(|e| match e.as_str() {
            "native" => Some(("native", cpu::detected())),
            "native-portable" => Some(("native-portable", cpu::Isa::Portable)),
            _ => None,
        })
        .collect();
    let mut rows: Vec<Row> = Vec::new();
    for shape in SHAPES
        .iter()
        .filter(|s| only_shape.is_none_or(|o| o == s.name))
    {
        for dtype in DType::ALL {
            let bytes_estimate = estimate_bytes(shape, dtype);
            if bytes_estimate > runtime::limits::MAX_MODEL_BYTES {
                if !json {
                    println!(
                        "{:<11} {:<5} skipped: about {:.1} MiB, over the {} MiB model budget",
                        shape.name,
                        dtype.name(),
                        bytes_estimate as f64 / 1048576.0,
                        runtime::limits::MAX_MODEL_BYTES / 1048576
                    );
                }
                continue;
            }
            let mut measured = Vec::new();
            for &(name, isa) in &natives {
                let used = cpu::set_isa(isa);
                let row = measure_native(shape, dtype, runs, peak);
                cpu::set_isa(cpu::detected());
                let mut row = row?;
                row.engine = format!("{name} ({})", used.name());
                measured.push(row);
            }
            for (name, module) in &modules {
                let mut row = measure_wasmtime(module, shape, dtype, runs)?;
                row.engine = name.to_string();
                measured.push(row);
            }
            for row in measured {
                if !json {
                    let (p, pmin, pmax) = row.prefill_tok_s;
                    let (d, dmin, dmax) = row.decode_tok_s;
                    println!(
                    "{:<11} {:<5} {:<7} file {:>6.2} MiB  load+verify {:>6.1} ms  prefill {:>7.1} tok/s ({:.1}..{:.1})  decode {:>7.1} tok/s ({:.1}..{:.1})  peak heap {}",
                    row.shape,
                    row.dtype,
                    row.engine,
                    mib(row.file_bytes),
                    row.load_ms.median_s,
                    p,
                    pmin,
                    pmax,
                    d,
                    dmin,
                    dmax,
                    row.peak_heap_bytes
                        .map(|b| format!("{:.2} MiB (file + KV {:.2} MiB)", mib(b), mib(row.file_bytes + row.kv_cache_bytes)))
                        .unwrap_or_else(|| "n/a".into()),
                );
                }
                if row.engine.starts_with("wasmtime") {
                    if let Some(native) = rows
                        .iter()
                        .rev()
                        .find(|r| r.engine.starts_with("native (") && r.dtype == row.dtype)
                    {
                        if !json {
                            println!(
                                "{:<11} {:<5} {}/native decode ratio {:.2}, prefill ratio {:.2}",
                                row.shape,
                                row.dtype,
                                row.engine,
                                row.decode_tok_s.0 / native.decode_tok_s.0,
                                row.prefill_tok_s.0 / native.prefill_tok_s.0
                            );
                        }
                    }
                }
                rows.push(row);
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "(median of {runs} runs, spread min..max; one thread; decode = greedy steps after BOS)"
        );
    }
    Ok(())
}
