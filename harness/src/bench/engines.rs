//! The engines `bench model` measures, in one list ([`ENGINES`]): adding an engine is one entry
//! (a name and a function measuring one model with it).

use super::Stats;
use crate::engine::wasmtime::{AbiInstance, WasmLimits, WasmModule, WasmVariant, LOAD_CHUNK_BYTES};
use anyhow::{anyhow, ensure, Result};
use runtime::generate::sampler::SamplerSettings;
use runtime::generate::{Session, Step};
use runtime::model::{cpu, Model};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Every engine, in report order. `--engine` picks from these names.
pub const ENGINES: &[Engine] = &[
    Engine {
        name: "native",
        measure: |ctx, case| native(ctx, case, cpu::detected()),
    },
    Engine {
        name: "native-portable",
        measure: |ctx, case| native(ctx, case, cpu::Isa::Portable),
    },
    Engine {
        name: "wasmtime",
        measure: |ctx, case| wasmtime(ctx, case, WasmVariant::Simd128),
    },
    Engine {
        name: "wasmtime-scalar",
        measure: |ctx, case| wasmtime(ctx, case, WasmVariant::Scalar),
    },
];

/// An engine: its name and how it measures one model.
pub struct Engine {
    pub name: &'static str,
    pub measure: fn(&mut Context, &Case) -> Result<Measured>,
}

/// One model to measure.
pub struct Case<'a> {
    /// The .slm file.
    pub bytes: &'a [u8],
    /// Timed runs of each measurement (after one warm-up run).
    pub runs: usize,
    /// Prompt text: BOS and one token per byte (the fixtures' byte vocabulary, no merges).
    pub prompt: &'a [u8],
    /// Greedy tokens a decode run generates after BOS.
    pub decode_tokens: u32,
}

/// What an engine measured on one model.
pub struct Measured {
    /// Load and verify (SHA-256 and every format rule) of the file's bytes, in seconds.
    pub load: Stats,
    /// `start` with the prompt and the first step: every prompt token through the model and the
    /// logits of the last one.
    pub prefill: Stats,
    /// `start` with BOS only, then `decode_tokens` steps.
    pub decode: Stats,
    /// Whether decode steps computed the logits digest.
    pub decode_logits_digest: bool,
    /// Peak memory of the model and its session, and what was counted.
    pub peak_bytes: Option<usize>,
    pub peak_kind: &'static str,
}

/// What engines share across models: the heap counter and compiled wasm modules.
pub struct Context<'p> {
    /// `peak(true)` resets the peak-heap counter to the bytes in use now and returns them;
    /// `peak(false)` returns the peak since (None: not counted).
    pub peak: &'p dyn Fn(bool) -> Option<usize>,
    modules: HashMap<PathBuf, WasmModule>,
}

impl<'p> Context<'p> {
    pub fn new(peak: &'p dyn Fn(bool) -> Option<usize>) -> Context<'p> {
        Context {
            peak,
            modules: HashMap::new(),
        }
    }

    /// The module at `path`, compiled once per bench run, without fuel metering (as browsers
    /// run it).
    pub fn wasm_module(&mut self, path: &Path) -> Result<&WasmModule> {
        if !self.modules.contains_key(path) {
            let bytes = std::fs::read(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            self.modules
                .insert(path.to_path_buf(), WasmModule::compile_unmetered(&bytes)?);
        }
        Ok(&self.modules[path])
    }
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

/// `runs` timings of `job`, each after its untimed `setup`.
fn timed<T>(runs: usize, mut setup: impl FnMut() -> T, mut job: impl FnMut(T)) -> Stats {
    Stats::of(
        (0..runs)
            .map(|_| {
                let input = setup();
                let start = Instant::now();
                job(input);
                start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// The runtime called directly at kernel level `isa` (runtime::model::cpu; `native` is the
/// level detected on this CPU), logits digest off. Peak memory: heap counted by the harness's
/// allocator from before the model's copy of the file to the end of decoding.
fn native(ctx: &mut Context, case: &Case, isa: cpu::Isa) -> Result<Measured> {
    cpu::set_isa(isa);
    let r = native_at_level(ctx, case);
    cpu::set_isa(cpu::detected());
    r
}

fn native_at_level(ctx: &mut Context, case: &Case) -> Result<Measured> {
    let rt = |e: runtime::Error| anyhow!("{e}");
    let load = timed(
        case.runs,
        || case.bytes.to_vec(),
        |bytes| {
            Model::load(bytes).expect("a generated model loads");
        },
    );
    let baseline = (ctx.peak)(true);
    let model = Model::load(case.bytes.to_vec()).map_err(rt)?;
    let mut session = Session::new(model, 0).map_err(rt)?;
    session.set_logits_digest(false);
    let mut failure = None;
    let prefill = Stats::measure(case.runs, || {
        let r = session
            .start(case.prompt, greedy(1))
            .and_then(|()| session.step());
        if !matches!(r, Ok(Step::Token { .. })) {
            failure = Some(format!("prefill: {r:?}"));
        }
    });
    let decode = Stats::measure(case.runs, || {
        if let Err(e) = session.start(b"", greedy(case.decode_tokens)) {
            failure = Some(format!("start: {e}"));
        }
        while let Ok(Step::Token { .. }) = session.step() {}
        if session.generated_tokens().len() != case.decode_tokens as usize {
            failure = Some("decode ended early".into());
        }
    });
    if let Some(f) = failure {
        anyhow::bail!("native {f}");
    }
    Ok(Measured {
        load,
        prefill,
        decode,
        decode_logits_digest: false,
        peak_bytes: (ctx.peak)(false).zip(baseline).map(|(p, b)| p - b),
        peak_kind: "native heap",
    })
}

/// A .wasm module (simd128 or scalar) under wasmtime through the raw ABI (chunked load, start,
/// step), logits digest off (`trlm_set_logits_digest(0)`), without reading diagnostics between
/// steps. Peak memory: the instance's linear memory after one load, prefill and decode (linear
/// memory never shrinks); the load timings run afterwards.
fn wasmtime(ctx: &mut Context, case: &Case, variant: WasmVariant) -> Result<Measured> {
    let module = ctx.wasm_module(&variant.path())?;
    let ok = |what: &str, status: Result<u32>| -> Result<()> {
        let status = status?;
        ensure!(status == 0, "wasmtime {what} failed with code {status}");
        Ok(())
    };
    let mut inst = AbiInstance::new(module, WasmLimits::default())?;
    ok("set_logits_digest", inst.set_logits_digest(0))?;
    ok("load", inst.load_chunked(case.bytes, LOAD_CHUNK_BYTES))?;
    let out = inst.alloc(16)?;
    let prompt_ptr = inst.alloc_with(case.prompt)?;
    let prompt_len = case.prompt.len() as u32;
    let mut failure = None;
    let prefill = Stats::measure(case.runs, || {
        let r = inst
            .set_sampling(0.0, u32::MAX, 1.0, 1, 1)
            .and_then(|_| inst.start(prompt_ptr, prompt_len))
            .and_then(|_| inst.step(out));
        if !matches!(r, Ok(0)) {
            failure = Some(format!("prefill: {r:?}"));
        }
    });
    let decode = Stats::measure(case.runs, || {
        let r = inst
            .set_sampling(0.0, u32::MAX, 1.0, 1, case.decode_tokens)
            .and_then(|_| inst.start(prompt_ptr, 0));
        if !matches!(r, Ok(0)) {
            failure = Some(format!("start: {r:?}"));
            return;
        }
        for _ in 0..case.decode_tokens {
            if !matches!(inst.step(out), Ok(0)) {
                failure = Some("step failed".into());
                return;
            }
        }
    });
    if let Some(f) = failure {
        anyhow::bail!("wasmtime {f}");
    }
    let peak_bytes = inst.memory_size();
    let mut times = Vec::with_capacity(case.runs);
    for _ in 0..case.runs {
        ok("unload", inst.unload())?;
        let start = Instant::now();
        ok("load", inst.load_chunked(case.bytes, LOAD_CHUNK_BYTES))?;
        times.push(start.elapsed().as_secs_f64());
    }
    let load = Stats::of(times);
    Ok(Measured {
        load,
        prefill,
        decode,
        decode_logits_digest: false,
        peak_bytes: Some(peak_bytes),
        peak_kind: "wasm linear memory",
    })
}
