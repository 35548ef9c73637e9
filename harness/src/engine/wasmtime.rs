//! The wasmtime engine: the runtime's WebAssembly module (built by harness/build.rs) run under
//! wasmtime through its raw ABI (spec/abi.md), with an empty import list, a memory limit and a
//! fuel budget per call so a runaway module cannot hang the harness.
//!
//! [`AbiInstance`] exposes each `trlm_*` export as a method (an `Err` is a trap);
//! [`WasmtimeEngine`] drives it as an [`Engine`], loading through the chunked path.

use super::{requirement_bytes, Engine, EngineError, GenRequest, GenResult, ModelInfo};
use ::wasmtime::{
    Config, Instance, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, TypedFunc,
};
use anyhow::{bail, Context};
use runtime::generate::session::PlanRequirement;
use std::path::PathBuf;

/// The two builds of the module harness/build.rs makes (spec/determinism.md, SIMD paths): the
/// same source, with and without wasm `simd128`; they compute the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmVariant {
    /// Built with `-C target-feature=+simd128` (the default).
    Simd128,
    /// Built for the wasm32 baseline, for engines without simd128.
    Scalar,
}

impl WasmVariant {
    /// Both variants, the default first.
    pub const ALL: [WasmVariant; 2] = [WasmVariant::Simd128, WasmVariant::Scalar];

    /// "simd128" or "scalar".
    pub fn name(self) -> &'static str {
        match self {
            WasmVariant::Simd128 => "simd128",
            WasmVariant::Scalar => "scalar",
        }
    }

    /// The engine name of a [`WasmtimeEngine`] running this variant.
    pub fn engine_name(self) -> &'static str {
        match self {
            WasmVariant::Simd128 => "wasmtime",
            WasmVariant::Scalar => "wasmtime-scalar",
        }
    }

    /// Where harness/build.rs put this variant.
    pub fn path(self) -> PathBuf {
        PathBuf::from(match self {
            WasmVariant::Simd128 => env!("TRLM_WASM_SIMD_PATH"),
            WasmVariant::Scalar => env!("TRLM_WASM_PATH"),
        })
    }

    /// This variant's bytes.
    pub fn bytes(self) -> anyhow::Result<Vec<u8>> {
        let path = self.path();
        std::fs::read(&path).with_context(|| format!("reading the wasm module {}", path.display()))
    }
}

/// Where harness/build.rs put the default (simd128) module.
pub fn wasm_path() -> PathBuf {
    WasmVariant::Simd128.path()
}

/// The default (simd128) module's bytes.
pub fn wasm_bytes() -> anyhow::Result<Vec<u8>> {
    WasmVariant::Simd128.bytes()
}

/// The `code` of an [`EngineError`] for a trap (including an exhausted fuel budget): not an
/// `ErrorCode`. An instance that trapped must be discarded.
pub const TRAP: u32 = u32::MAX;

/// Bytes per `trlm_load_chunk` call of [`WasmtimeEngine::load`].
pub const LOAD_CHUNK_BYTES: usize = 64 * 1024;

/// What one instance may use.
#[derive(Clone, Copy, Debug)]
pub struct WasmLimits {
    /// Largest linear memory (bytes); growing past it fails inside the module (OutOfMemory).
    pub memory_bytes: usize,
    /// Fuel (about one unit per wasm instruction) for each exported call.
    pub fuel_per_call: u64,
}

impl Default for WasmLimits {
    /// 512 MiB and 10^12 fuel per call: minutes of work, far above any legitimate call.
    fn default() -> WasmLimits {
        WasmLimits {
            memory_bytes: 512 << 20,
            fuel_per_call: 1_000_000_000_000,
        }
    }
}

/// The compiled module, shareable between instances.
#[derive(Clone)]
pub struct WasmModule {
    engine: ::wasmtime::Engine,
    module: Module,
    /// Whether the code counts fuel ([`WasmLimits::fuel_per_call`] applies).
    metered: bool,
}

impl WasmModule {
    /// Compiles `wasm` with fuel metering on: every call of its instances is bounded by
    /// [`WasmLimits::fuel_per_call`]. What the conformance tests use.
    pub fn compile(wasm: &[u8]) -> anyhow::Result<WasmModule> {
        WasmModule::compile_as(wasm, true)
    }

    /// Compiles `wasm` without fuel metering, as a browser or an embedder runs it: calls are
    /// unbounded (the fuel limit is ignored). What `tinyrustlm bench` measures, since counting
    /// fuel costs time in every loop.
    pub fn compile_unmetered(wasm: &[u8]) -> anyhow::Result<WasmModule> {
        WasmModule::compile_as(wasm, false)
    }

    fn compile_as(wasm: &[u8], metered: bool) -> anyhow::Result<WasmModule> {
        let mut config = Config::new();
        config.consume_fuel(metered);
        let engine = ::wasmtime::Engine::new(&config)?;
        let module = Module::new(&engine, wasm).context("compiling the wasm module")?;
        Ok(WasmModule {
            engine,
            module,
            metered,
        })
    }

    /// The module's imports as `module.name` (spec/abi.md: there are none).
    pub fn imports(&self) -> Vec<String> {
        self.module
            .imports()
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect()
    }

    /// The names of the module's exports.
    pub fn exports(&self) -> Vec<String> {
        self.module
            .exports()
            .map(|e| e.name().to_string())
            .collect()
    }
}

/// The typed `trlm_*` exports.
struct Exports {
    abi_version: TypedFunc<(), u32>,
    last_error_code: TypedFunc<(), u32>,
    alloc: TypedFunc<u32, u32>,
    free: TypedFunc<(u32, u32), u32>,
    load: TypedFunc<(u32, u32), u32>,
    load_begin: TypedFunc<u32, u32>,
    load_chunk: TypedFunc<(u32, u32), u32>,
    load_finish: TypedFunc<(), u32>,
    load_abort: TypedFunc<(), u32>,
    unload: TypedFunc<(), u32>,
    set_context: TypedFunc<u32, u32>,
    set_sampling: TypedFunc<(f32, u32, f32, u64, u32), u32>,
    start: TypedFunc<(u32, u32), u32>,
    step: TypedFunc<u32, u32>,
    cancel: TypedFunc<(), u32>,
    reset: TypedFunc<(), u32>,
    output_len: TypedFunc<u32, u32>,
    output_copy: TypedFunc<(u32, u32, u32), u32>,
    adapter_validate: TypedFunc<(u32, u32), u32>,
    plan_validate: TypedFunc<(u32, u32), u32>,
    plan_begin: TypedFunc<(u32, u32), u32>,
    plan_module: TypedFunc<(u32, u32), u32>,
    plan_check: TypedFunc<(), u32>,
    plan_apply: TypedFunc<(), u32>,
    plan_abort: TypedFunc<(), u32>,
    remove_adapters: TypedFunc<(), u32>,
    require_plan: TypedFunc<(u32, u32), u32>,
    set_logits_digest: TypedFunc<u32, u32>,
}

/// One instance of the module, called through its raw ABI.
pub struct AbiInstance {
    store: Store<StoreLimits>,
    memory: Memory,
    exports: Exports,
    /// Fuel set before each call (`None` for an unmetered module).
    fuel_per_call: Option<u64>,
}

macro_rules! raw_calls {
    ($( $(#[$doc:meta])* $name:ident ( $($arg:ident : $ty:ty),* ) ; )*) => {
        $(
            $(#[$doc])*
            pub fn $name(&mut self, $($arg: $ty),*) -> anyhow::Result<u32> {
                if let Some(fuel) = self.fuel_per_call {
                    self.store.set_fuel(fuel)?;
                }
                self.exports.$name.call(&mut self.store, ($($arg),*))
            }
        )*
    };
}

impl AbiInstance {
    /// Instantiates `module` with no imports under `limits`.
    pub fn new(module: &WasmModule, limits: WasmLimits) -> anyhow::Result<AbiInstance> {
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .instances(1)
            .build();
        let mut store = Store::new(&module.engine, store_limits);
        store.limiter(|l| l);
        let fuel_per_call = module.metered.then_some(limits.fuel_per_call);
        if let Some(fuel) = fuel_per_call {
            store.set_fuel(fuel)?;
        }
        let instance = Instance::new(&mut store, &module.module, &[])
            .context("instantiating the wasm module with no imports")?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .context("the module exports no memory")?;
        macro_rules! get {
            ($name:literal) => {
                instance
                    .get_typed_func(&mut store, $name)
                    .with_context(|| format!("export {}", $name))?
            };
        }
        let exports = Exports {
            abi_version: get!("trlm_abi_version"),
            last_error_code: get!("trlm_last_error_code"),
            alloc: get!("trlm_alloc"),
            free: get!("trlm_free"),
            load: get!("trlm_load"),
            load_begin: get!("trlm_load_begin"),
            load_chunk: get!("trlm_load_chunk"),
            load_finish: get!("trlm_load_finish"),
            load_abort: get!("trlm_load_abort"),
            unload: get!("trlm_unload"),
            set_context: get!("trlm_set_context"),
            set_sampling: get!("trlm_set_sampling"),
            start: get!("trlm_start"),
            step: get!("trlm_step"),
            cancel: get!("trlm_cancel"),
            reset: get!("trlm_reset"),
            output_len: get!("trlm_output_len"),
            output_copy: get!("trlm_output_copy"),
            adapter_validate: get!("trlm_adapter_validate"),
            plan_validate: get!("trlm_plan_validate"),
            plan_begin: get!("trlm_plan_begin"),
            plan_module: get!("trlm_plan_module"),
            plan_check: get!("trlm_plan_check"),
            plan_apply: get!("trlm_plan_apply"),
            plan_abort: get!("trlm_plan_abort"),
            remove_adapters: get!("trlm_remove_adapters"),
            require_plan: get!("trlm_require_plan"),
            set_logits_digest: get!("trlm_set_logits_digest"),
        };
        Ok(AbiInstance {
            store,
            memory,
            exports,
            fuel_per_call,
        })
    }

    raw_calls! {
        abi_version();
        last_error_code();
        alloc(len: u32);
        free(ptr: u32, len: u32);
        load(ptr: u32, len: u32);
        load_begin(total_len: u32);
        load_chunk(ptr: u32, len: u32);
        load_finish();
        load_abort();
        unload();
        set_context(positions: u32);
        set_sampling(temperature: f32, top_k: u32, top_p: f32, seed: u64, max_new_tokens: u32);
        start(ptr: u32, len: u32);
        step(out_ptr: u32);
        cancel();
        reset();
        output_len(kind: u32);
        output_copy(kind: u32, ptr: u32, cap: u32);
        adapter_validate(ptr: u32, len: u32);
        plan_validate(ptr: u32, len: u32);
        plan_begin(ptr: u32, len: u32);
        plan_module(ptr: u32, len: u32);
        plan_check();
        plan_apply();
        plan_abort();
        remove_adapters();
        require_plan(ptr: u32, len: u32);
        set_logits_digest(on: u32);
    }

    /// Bytes of linear memory.
    pub fn memory_size(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// Reads `len` bytes of linear memory at `ptr`.
    pub fn read(&self, ptr: u32, len: usize) -> anyhow::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.memory
            .read(&self.store, ptr as usize, &mut buf)
            .with_context(|| format!("reading {len} bytes at {ptr:#x}"))?;
        Ok(buf)
    }

    /// Writes `data` to linear memory at `ptr`.
    pub fn write(&mut self, ptr: u32, data: &[u8]) -> anyhow::Result<()> {
        self.memory
            .write(&mut self.store, ptr as usize, data)
            .with_context(|| format!("writing {} bytes at {ptr:#x}", data.len()))
    }

    /// A host buffer holding `data`.
    pub fn alloc_with(&mut self, data: &[u8]) -> anyhow::Result<u32> {
        let len = u32::try_from(data.len().max(1))?;
        let ptr = self.alloc(len)?;
        if ptr == 0 {
            bail!(
                "trlm_alloc({len}) failed: {}",
                self.last_error_message().unwrap_or_default()
            );
        }
        self.write(ptr, data)?;
        Ok(ptr)
    }

    /// Output `kind` (spec/abi.md, Outputs), read through a temporary buffer. `Ok(Err(code))`
    /// when the module refuses.
    pub fn output(&mut self, kind: u32) -> anyhow::Result<Result<Vec<u8>, u32>> {
        let len = self.output_len(kind)?;
        if len == u32::MAX {
            return Ok(Err(self.last_error_code()?));
        }
        if len == 0 {
            return Ok(Ok(Vec::new()));
        }
        let ptr = self.alloc(len)?;
        if ptr == 0 {
            return Ok(Err(self.last_error_code()?));
        }
        let status = self.output_copy(kind, ptr, len)?;
        let bytes = self.read(ptr, len as usize)?;
        self.free(ptr, len)?;
        Ok(if status == 0 { Ok(bytes) } else { Err(status) })
    }

    /// The last error's message (output kind 5).
    pub fn last_error_message(&mut self) -> anyhow::Result<String> {
        match self.output(5)? {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(code) => bail!("reading the last error message failed with code {code}"),
        }
    }

    /// The diagnostics document (output kind 4).
    pub fn diagnostics(&mut self) -> anyhow::Result<Result<serde_json::Value, u32>> {
        Ok(match self.output(4)? {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).context("diagnostics JSON")?),
            Err(code) => Err(code),
        })
    }

    /// Loads `bytes` through `trlm_load_begin` / `trlm_load_chunk` / `trlm_load_finish` in
    /// `chunk`-byte pieces; stops at the first refused call and returns its status. Unless the
    /// chunk buffer could not be allocated (then nothing was begun), no load is in progress
    /// afterwards.
    pub fn load_chunked(&mut self, bytes: &[u8], chunk: usize) -> anyhow::Result<u32> {
        // The chunk buffer comes first: when it cannot be had, no load was begun (a load in
        // progress stays as it was) and the last error still tells why.
        let cap = u32::try_from(chunk.clamp(1, bytes.len().max(1)))?;
        let buf = self.alloc(cap)?;
        if buf == 0 {
            return self.last_error_code();
        }
        let status = self.load_begin(u32::try_from(bytes.len())?)?;
        if status != 0 {
            self.free(buf, cap)?;
            return Ok(status);
        }
        for piece in bytes.chunks(cap as usize) {
            self.write(buf, piece)?;
            let status = self.load_chunk(buf, piece.len() as u32)?;
            if status != 0 {
                self.free(buf, cap)?;
                return Ok(status);
            }
        }
        self.free(buf, cap)?;
        self.load_finish()
    }
}

/// The [`Engine`] over an [`AbiInstance`].
pub struct WasmtimeEngine {
    instance: AbiInstance,
    /// What [`Engine::name`] reports.
    name: &'static str,
    /// KV cache positions (0 = the model's max context).
    pub context: u32,
}

fn trap(e: anyhow::Error) -> EngineError {
    EngineError {
        code: TRAP,
        message: format!("wasm trap: {e:#}"),
    }
}

/// Step record states (spec/abi.md, trlm_step) and the finish names engines report.
fn finish_name(state: u32) -> Option<&'static str> {
    Some(match state {
        1 => "stop",
        2 => "max_tokens",
        3 => "context_full",
        4 => "cancelled",
        5 => "failed",
        _ => return None,
    })
}

impl WasmtimeEngine {
    /// Compiles and instantiates `wasm` with the default [`WasmLimits`].
    pub fn new(wasm: &[u8]) -> anyhow::Result<WasmtimeEngine> {
        WasmtimeEngine::with_limits(&WasmModule::compile(wasm)?, WasmLimits::default())
    }

    /// An engine on the built module of `variant`, named after it ("wasmtime",
    /// "wasmtime-scalar").
    pub fn of(variant: WasmVariant) -> anyhow::Result<WasmtimeEngine> {
        let mut engine = WasmtimeEngine::new(&variant.bytes()?)?;
        engine.name = variant.engine_name();
        Ok(engine)
    }

    /// A new instance of a compiled module.
    pub fn with_limits(module: &WasmModule, limits: WasmLimits) -> anyhow::Result<WasmtimeEngine> {
        Ok(WasmtimeEngine {
            instance: AbiInstance::new(module, limits)?,
            name: "wasmtime",
            context: 0,
        })
    }

    /// An engine over an existing instance (whatever state its earlier calls left).
    pub fn from_instance(instance: AbiInstance) -> WasmtimeEngine {
        WasmtimeEngine {
            instance,
            name: "wasmtime",
            context: 0,
        }
    }

    /// The raw ABI of the instance.
    pub fn abi(&mut self) -> &mut AbiInstance {
        &mut self.instance
    }

    /// The module refused a call with `code`: that code and the module's message.
    fn refused(&mut self, code: u32) -> EngineError {
        match self.instance.last_error_message() {
            Ok(message) => EngineError { code, message },
            Err(e) => trap(e),
        }
    }

    /// Turns a non-zero status into an [`EngineError`].
    fn check(&mut self, status: u32) -> Result<(), EngineError> {
        match status {
            0 => Ok(()),
            code => Err(self.refused(code)),
        }
    }

    fn diagnostics(&mut self) -> Result<serde_json::Value, EngineError> {
        match self.instance.diagnostics().map_err(trap)? {
            Ok(v) => Ok(v),
            Err(code) => Err(self.refused(code)),
        }
    }

    fn output_ok(&mut self, kind: u32) -> Result<Vec<u8>, EngineError> {
        match self.instance.output(kind).map_err(trap)? {
            Ok(bytes) => Ok(bytes),
            Err(code) => Err(self.refused(code)),
        }
    }

    /// Calls `f(ptr, len)` with a host buffer holding `data` (freed afterwards); its status.
    fn with_buffer(
        &mut self,
        data: &[u8],
        f: impl FnOnce(&mut AbiInstance, u32, u32) -> anyhow::Result<u32>,
    ) -> Result<(), EngineError> {
        let ptr = self.instance.alloc_with(data).map_err(trap)?;
        let status = f(&mut self.instance, ptr, data.len() as u32).map_err(trap);
        self.instance
            .free(ptr, data.len().max(1) as u32)
            .map_err(trap)?;
        let status = status?;
        self.check(status)
    }

    /// Steps to the end of the started generation.
    fn run_steps(&mut self, out: u32) -> Result<GenResult, EngineError> {
        let mut step_digests = Vec::new();
        let finish = loop {
            let status = self.instance.step(out).map_err(trap)?;
            self.check(status)?;
            let rec = self.instance.read(out, 16).map_err(trap)?;
            let word = |i: usize| u32::from_le_bytes(rec[4 * i..4 * i + 4].try_into().unwrap());
            let state = word(1);
            let d = self.diagnostics()?;
            let digest = d["logits_digest"].as_str().unwrap_or_default().to_string();
            if state == 0 {
                step_digests.push(digest);
                continue;
            }
            // The last step sampled a stop token: its logits were digested too.
            if d["logit_steps"].as_u64().unwrap_or(0) as usize > step_digests.len() {
                step_digests.push(digest);
            }
            break finish_name(state).ok_or_else(|| EngineError {
                code: TRAP,
                message: format!("the step record has unknown state {state}"),
            })?;
        };
        let d = self.diagnostics()?;
        let words = |bytes: Vec<u8>| -> Vec<u32> {
            bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        Ok(GenResult {
            prompt_tokens: words(self.output_ok(3)?),
            tokens: words(self.output_ok(2)?),
            text: self.output_ok(1)?,
            logits_digest: d["logits_digest"].as_str().unwrap_or_default().to_string(),
            step_digests,
            finish: finish.to_string(),
        })
    }
}

impl Engine for WasmtimeEngine {
    fn apply_plan(&mut self, plan: &[u8], modules: &[&[u8]]) -> Result<Vec<u8>, EngineError> {
        self.with_buffer(plan, |i, p, n| i.plan_begin(p, n))?;
        for m in modules {
            if let Err(e) = self.with_buffer(m, |i, p, n| i.plan_module(p, n)) {
                // A refused module ended the stage; a failed allocation did not.
                self.instance.plan_abort().map_err(trap)?;
                return Err(e);
            }
        }
        let status = self.instance.plan_apply().map_err(trap)?;
        self.check(status)?;
        self.output_ok(6)
    }

    fn remove_adapters(&mut self) -> Result<(), EngineError> {
        let status = self.instance.remove_adapters().map_err(trap)?;
        self.check(status)
    }

    fn require_plan(&mut self, req: Option<PlanRequirement>) -> Result<(), EngineError> {
        self.with_buffer(&requirement_bytes(req), |i, p, n| i.require_plan(p, n))
    }

    fn name(&self) -> String {
        self.name.into()
    }

    fn load(&mut self, bytes: &[u8]) -> Result<ModelInfo, EngineError> {
        // As the native engine: the previous model goes first, then the context applies.
        let status = self.instance.unload().map_err(trap)?;
        self.check(status)?;
        let status = self.instance.set_context(self.context).map_err(trap)?;
        self.check(status)?;
        let status = self
            .instance
            .load_chunked(bytes, LOAD_CHUNK_BYTES)
            .map_err(trap)?;
        self.check(status)?;
        let d = self.diagnostics()?;
        Ok(ModelInfo {
            digest: d["model_digest"].as_str().unwrap_or_default().to_string(),
            bytes: d["model_bytes"].as_u64().unwrap_or(0),
        })
    }

    fn generate(&mut self, req: &GenRequest) -> Result<GenResult, EngineError> {
        let s = req.settings;
        let status = self
            .instance
            .set_sampling(
                s.temperature,
                s.top_k.unwrap_or(u32::MAX),
                s.top_p,
                s.seed,
                s.max_new_tokens,
            )
            .map_err(trap)?;
        self.check(status)?;
        let prompt = self.instance.alloc_with(&req.prompt).map_err(trap)?;
        let cap = req.prompt.len().max(1) as u32;
        let status = self
            .instance
            .start(prompt, req.prompt.len() as u32)
            .map_err(trap)?;
        self.instance.free(prompt, cap).map_err(trap)?;
        self.check(status)?;
        let out = self.instance.alloc(16).map_err(trap)?;
        let result = self.run_steps(out);
        self.instance.free(out, 16).map_err(trap)?;
        result
    }
}
