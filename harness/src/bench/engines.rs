//! The engines `bench model` measures, in one list ([`ENGINES`]): adding an engine is one entry
//! (a name and a function preparing one model for it). [`measure`] times the engines of a run in
//! interleaved rounds, so the ratios between them compare runs made under the same conditions.

use super::Stats;
use crate::engine::wasmtime::{AbiInstance, WasmLimits, WasmModule, WasmVariant, LOAD_CHUNK_BYTES};
use anyhow::{anyhow, ensure, Context as _, Result};
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
        prepare: |ctx, case| native(ctx, case, cpu::detected()),
    },
    Engine {
        name: "native-portable",
        prepare: |ctx, case| native(ctx, case, cpu::Isa::Portable),
    },
    Engine {
        name: "wasmtime",
        prepare: |ctx, case| wasmtime(ctx, case, WasmVariant::Simd128),
    },
    Engine {
        name: "wasmtime-scalar",
        prepare: |ctx, case| wasmtime(ctx, case, WasmVariant::Scalar),
    },
];

/// A wasm module given on the command line (`bench model --wasm`), run under wasmtime as
/// [`ENGINES`]' `wasmtime` is, in the same rounds: an experimental build against the built one.
/// Not in [`ENGINES`]: `bench model` adds it when a module is given ([`Context::module_file`]).
/// Before it is timed, its greedy run of the model (tokens and logits digest) must equal the
/// built module's ([`greedy_fingerprint`]): an A/B of a kernel change compares equal results.
pub const MODULE_FILE: Engine = Engine {
    name: "wasmtime-file",
    prepare: |ctx, case| {
        let path = ctx
            .module_file
            .clone()
            .ok_or_else(|| anyhow!("no wasm module given for engine wasmtime-file"))?;
        let built = greedy_fingerprint(ctx, case, &WasmVariant::Simd128.path())?;
        ensure!(
            greedy_fingerprint(ctx, case, &path)? == built,
            "{}: its greedy tokens or logits digest differ from the built simd128 module's",
            path.display()
        );
        wasmtime_at(ctx, case, &path)
    },
};

/// The generated token ids and the diagnostics (logits digest included) of a greedy run of
/// `case` (its prompt, then up to `decode_tokens` steps) in a fresh instance of the module at
/// `path`.
fn greedy_fingerprint(ctx: &mut Context, case: &Case, path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let module = ctx.wasm_module(path)?;
    let mut inst = AbiInstance::new(module, WasmLimits::default())?;
    ok("load", inst.load_chunked(case.bytes, LOAD_CHUNK_BYTES))?;
    ok("set_logits_digest", inst.set_logits_digest(1))?;
    let out = inst.alloc(16)?;
    let prompt = inst.alloc_with(case.prompt)?;
    let n = case.decode_tokens;
    ok("set_sampling", inst.set_sampling(0.0, u32::MAX, 1.0, 1, n))?;
    ok("start", inst.start(prompt, case.prompt.len() as u32))?;
    for _ in 0..n {
        ok("step", inst.step(out))?;
    }
    let output = |inst: &mut AbiInstance, kind: u32| -> Result<Vec<u8>> {
        inst.output(kind)?
            .map_err(|code| anyhow!("output {kind} failed with code {code}"))
    };
    Ok((output(&mut inst, 2)?, output(&mut inst, 4)?))
}

/// An engine: its name and how it gets ready to measure one model.
pub struct Engine {
    pub name: &'static str,
    pub prepare: for<'a> fn(&mut Context, &Case<'a>) -> Result<Prepared<'a>>,
}

/// One model to measure.
#[derive(Clone, Copy)]
pub struct Case<'a> {
    /// The .slm file.
    pub bytes: &'a [u8],
    /// Timed runs of each measurement (rounds of [`measure`]).
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
    /// The prefill and decode times (seconds) in round order when they were measured in rounds
    /// (a round's prefill and decode made back to back: by [`measure`], or by a browser page);
    /// empty otherwise.
    pub prefill_rounds_s: Vec<f64>,
    pub decode_rounds_s: Vec<f64>,
    /// Whether round r was made back to back with round r of the run's other engines, native's
    /// included ([`measure`]'s rounds; a page's are its own), so that decode/native pairs them.
    pub rounds_with_native: bool,
    /// Whether decode steps computed the logits digest.
    pub decode_logits_digest: bool,
    /// Peak memory of the model and its session, and what was counted.
    pub peak_bytes: Option<usize>,
    pub peak_kind: &'static str,
}

/// An engine with the model loaded, warmed up and its peak memory taken: ready for timed runs.
pub struct Prepared<'a> {
    runner: Box<dyn Runner + 'a>,
    decode_logits_digest: bool,
    peak_bytes: Option<usize>,
    peak_kind: &'static str,
}

/// One run of each measurement on an engine whose model is loaded, each timed in seconds.
trait Runner {
    /// Load + verify of the file (the model it gives replaces the loaded one).
    fn load(&mut self) -> Result<f64>;
    /// `start` with the prompt and the first step.
    fn prefill(&mut self) -> Result<f64>;
    /// `start` with BOS only, then `decode_tokens` steps.
    fn decode(&mut self) -> Result<f64>;
    /// Memory the engine holds now, when it is its own to measure (a wasm instance's linear
    /// memory, which never shrinks: read after the timed rounds it is their peak).
    fn memory_bytes(&self) -> Option<usize> {
        None
    }
}

/// What engines share across models: the heap counter and compiled wasm modules.
pub struct Context<'p> {
    /// `peak(true)` resets the peak-heap counter to the bytes in use now and returns them;
    /// `peak(false)` returns the peak since (None: not counted).
    pub peak: &'p dyn Fn(bool) -> Option<usize>,
    /// The module engine [`MODULE_FILE`] runs.
    pub module_file: Option<PathBuf>,
    modules: HashMap<PathBuf, WasmModule>,
}

impl<'p> Context<'p> {
    pub fn new(peak: &'p dyn Fn(bool) -> Option<usize>) -> Context<'p> {
        Context {
            peak,
            module_file: None,
            modules: HashMap::new(),
        }
    }

    /// The module at `path`, compiled once per bench run, without fuel metering (as browsers
    /// run it).
    pub fn wasm_module(&mut self, path: &Path) -> Result<&WasmModule> {
        if !self.modules.contains_key(path) {
            let bytes = std::fs::read(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            return self.wasm_module_of(path, &bytes);
        }
        Ok(&self.modules[path])
    }

    /// [`Context::wasm_module`] for a caller that has read `path`'s `bytes` already.
    pub fn wasm_module_of(&mut self, path: &Path, bytes: &[u8]) -> Result<&WasmModule> {
        if !self.modules.contains_key(path) {
            self.modules
                .insert(path.to_path_buf(), WasmModule::compile_unmetered(bytes)?);
        }
        Ok(&self.modules[path])
    }
}

/// Measures `engines` on `case` in rounds. Each engine is prepared first (loaded, one untimed
/// prefill and decode, peak memory taken). Then come `case.runs` rounds of loads, then
/// `case.runs` rounds of a prefill and a decode. In a round every engine runs once, in turn (in
/// the list's order in even rounds and in reverse in odd ones, so that no engine always runs
/// right after another: a constant bias of the position cancels out of the median), so
/// that engine i's run r and engine j's run r are a fraction of a second apart, as are an
/// engine's prefill and decode of one round: on a shared machine, whose load changes from
/// minute to minute, their ratios compare like with like ([`Measured::decode_rounds_s`]). Each
/// timed prefill and decode follows an untimed one of the same engine, so that it finds its own
/// model in the cache, as a run of that engine alone would, not the other engine's.
pub fn measure(ctx: &mut Context, case: &Case, engines: &[&Engine]) -> Result<Vec<Measured>> {
    ensure!(case.runs > 0, "at least one run");
    let mut prepared = Vec::with_capacity(engines.len());
    for e in engines {
        prepared.push((e.prepare)(ctx, case).with_context(|| e.name)?);
    }
    let n = prepared.len();
    let mut times = vec![[const { Vec::new() }; 3]; n];
    // Engine indices of round r: forward in even rounds, backward in odd ones.
    let order = |r: usize| (0..n).map(move |i| if r.is_multiple_of(2) { i } else { n - 1 - i });
    for r in 0..case.runs {
        for i in order(r) {
            times[i][0].push(prepared[i].runner.load()?);
        }
    }
    for r in 0..case.runs {
        for i in order(r) {
            let (p, t) = (&mut prepared[i], &mut times[i]);
            p.runner.prefill()?;
            t[1].push(p.runner.prefill()?);
            p.runner.decode()?;
            t[2].push(p.runner.decode()?);
        }
    }
    Ok(prepared
        .into_iter()
        .zip(times)
        .map(|(p, [load, prefill, decode])| Measured {
            peak_bytes: p.runner.memory_bytes().or(p.peak_bytes),
            load: Stats::of(load),
            prefill: Stats::of(prefill.clone()),
            decode: Stats::of(decode.clone()),
            prefill_rounds_s: prefill,
            decode_rounds_s: decode,
            rounds_with_native: true,
            decode_logits_digest: p.decode_logits_digest,
            peak_kind: p.peak_kind,
        })
        .collect())
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

fn rt(e: runtime::Error) -> anyhow::Error {
    anyhow!("{e}")
}

/// The runtime called directly at kernel level `isa` (runtime::model::cpu; `native` is the
/// level detected on this CPU), logits digest off.
struct Native<'a> {
    case: Case<'a>,
    isa: cpu::Isa,
    session: Session,
}

impl Native<'_> {
    /// `job` at this engine's kernel level (the level is process-wide: engines run in turn).
    fn at_level<T>(isa: cpu::Isa, job: impl FnOnce() -> T) -> T {
        cpu::set_isa(isa);
        let r = job();
        cpu::set_isa(cpu::detected());
        r
    }
}

impl Runner for Native<'_> {
    fn load(&mut self) -> Result<f64> {
        let bytes = self.case.bytes.to_vec();
        Native::at_level(self.isa, || {
            let start = Instant::now();
            let model = Model::load(bytes).map_err(rt)?;
            let s = start.elapsed().as_secs_f64();
            drop(model);
            Ok(s)
        })
    }

    fn prefill(&mut self) -> Result<f64> {
        let (case, session) = (self.case, &mut self.session);
        Native::at_level(self.isa, || {
            let start = Instant::now();
            let r = session
                .start(case.prompt, greedy(1))
                .and_then(|()| session.step());
            let s = start.elapsed().as_secs_f64();
            ensure!(matches!(r, Ok(Step::Token { .. })), "native prefill: {r:?}");
            Ok(s)
        })
    }

    fn decode(&mut self) -> Result<f64> {
        let (case, session) = (self.case, &mut self.session);
        Native::at_level(self.isa, || {
            let start = Instant::now();
            session.start(b"", greedy(case.decode_tokens)).map_err(rt)?;
            while let Ok(Step::Token { .. }) = session.step() {}
            let s = start.elapsed().as_secs_f64();
            ensure!(
                session.generated_tokens().len() == case.decode_tokens as usize,
                "native decode ended early"
            );
            Ok(s)
        })
    }
}

/// Peak memory: heap counted by the harness's allocator from before the model's copy of the
/// file to the end of the untimed prefill and decode (scratch is allocated once, so later runs
/// add nothing).
fn native<'a>(ctx: &mut Context, case: &Case<'a>, isa: cpu::Isa) -> Result<Prepared<'a>> {
    let baseline = (ctx.peak)(true);
    let model = Native::at_level(isa, || Model::load(case.bytes.to_vec())).map_err(rt)?;
    let mut session = Session::new(model, 0).map_err(rt)?;
    session.set_logits_digest(false);
    let mut runner = Native {
        case: *case,
        isa,
        session,
    };
    runner.prefill()?;
    runner.decode()?;
    let peak_bytes = (ctx.peak)(false).zip(baseline).map(|(p, b)| p - b);
    Ok(Prepared {
        runner: Box::new(runner),
        decode_logits_digest: false,
        peak_bytes,
        peak_kind: "native heap",
    })
}

/// A .wasm module (simd128 or scalar) under wasmtime through the raw ABI (chunked load, start,
/// step), logits digest off (`trlm_set_logits_digest(0)`), without reading diagnostics between
/// steps.
struct Wasmtime<'a> {
    case: Case<'a>,
    inst: AbiInstance,
    /// A 16-byte step record and the prompt, in linear memory.
    out: u32,
    prompt_ptr: u32,
}

/// `status` of an ABI call, which must be 0.
fn ok(what: &str, status: Result<u32>) -> Result<()> {
    let status = status?;
    ensure!(status == 0, "wasmtime {what} failed with code {status}");
    Ok(())
}

impl Runner for Wasmtime<'_> {
    fn load(&mut self) -> Result<f64> {
        ok("unload", self.inst.unload())?;
        let start = Instant::now();
        ok(
            "load",
            self.inst.load_chunked(self.case.bytes, LOAD_CHUNK_BYTES),
        )?;
        let s = start.elapsed().as_secs_f64();
        ok("set_logits_digest", self.inst.set_logits_digest(0))?;
        Ok(s)
    }

    fn prefill(&mut self) -> Result<f64> {
        let len = self.case.prompt.len() as u32;
        let start = Instant::now();
        ok(
            "set_sampling",
            self.inst.set_sampling(0.0, u32::MAX, 1.0, 1, 1),
        )?;
        ok("start", self.inst.start(self.prompt_ptr, len))?;
        ok("prefill step", self.inst.step(self.out))?;
        Ok(start.elapsed().as_secs_f64())
    }

    fn decode(&mut self) -> Result<f64> {
        let n = self.case.decode_tokens;
        let start = Instant::now();
        ok(
            "set_sampling",
            self.inst.set_sampling(0.0, u32::MAX, 1.0, 1, n),
        )?;
        ok("start", self.inst.start(self.prompt_ptr, 0))?;
        for _ in 0..n {
            ok("step", self.inst.step(self.out))?;
        }
        Ok(start.elapsed().as_secs_f64())
    }

    fn memory_bytes(&self) -> Option<usize> {
        Some(self.inst.memory_size())
    }
}

/// Peak memory: the instance's linear memory after the timed rounds (it never shrinks, so this
/// is its peak over every load, prefill and decode, as the page reads its own at the end).
fn wasmtime<'a>(ctx: &mut Context, case: &Case<'a>, variant: WasmVariant) -> Result<Prepared<'a>> {
    wasmtime_at(ctx, case, &variant.path())
}

/// [`wasmtime`] with the module at `path`.
fn wasmtime_at<'a>(ctx: &mut Context, case: &Case<'a>, path: &Path) -> Result<Prepared<'a>> {
    let module = ctx.wasm_module(path)?;
    let mut inst = AbiInstance::new(module, WasmLimits::default())?;
    ok("set_logits_digest", inst.set_logits_digest(0))?;
    ok("load", inst.load_chunked(case.bytes, LOAD_CHUNK_BYTES))?;
    let out = inst.alloc(16)?;
    let prompt_ptr = inst.alloc_with(case.prompt)?;
    let mut runner = Wasmtime {
        case: *case,
        inst,
        out,
        prompt_ptr,
    };
    runner.prefill()?;
    runner.decode()?;
    let peak_bytes = Some(runner.inst.memory_size());
    Ok(Prepared {
        runner: Box::new(runner),
        decode_logits_digest: false,
        peak_bytes,
        peak_kind: "wasm linear memory",
    })
}
