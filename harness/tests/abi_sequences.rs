//! Random sequences of raw ABI calls (spec/abi.md) with random, mostly invalid arguments —
//! pointers into, around and far from host buffers, huge lengths, calls out of order, loads of
//! valid and damaged fixtures in random chunk splits — against the wasm module under wasmtime.
//! After every call: no trap, a known status and last-error code, buffers where the mirror says,
//! and the active model the one the mirror expects. Adapter calls (validate, stage, check, apply,
//! abort, remove, require) are mixed in, with valid and damaged adapter fixtures and plans, and
//! the receipt output always agrees with the diagnostics. At the end the instance still loads a model
//! and generates exactly what a fresh instance generates.

use harness::engine::wasmtime::{AbiInstance, WasmLimits, WasmModule, WasmtimeEngine};
use harness::engine::{Engine, GenRequest, GenResult};
use proptest::prelude::*;
use runtime::generate::sampler::SamplerSettings;
use runtime::{limits, ErrorCode};
use std::path::Path;
use std::sync::OnceLock;

const FIXTURES: [&str; 3] = [
    "byte-mha-tied-q8_0",
    "spm-gqa-untied-q4_0",
    "ranked-gqa1-tied-q8_0",
];

fn module() -> &'static WasmModule {
    static MODULE: OnceLock<WasmModule> = OnceLock::new();
    MODULE.get_or_init(|| {
        WasmModule::compile(&harness::engine::wasmtime::wasm_bytes().unwrap()).unwrap()
    })
}

fn fixture(i: usize) -> &'static [u8] {
    static BYTES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    &BYTES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
        FIXTURES
            .iter()
            .map(|n| std::fs::read(dir.join(format!("{n}.slm"))).unwrap())
            .collect()
    })[i % FIXTURES.len()]
}

fn final_request() -> GenRequest {
    GenRequest {
        prompt: b"the dog".to_vec(),
        settings: SamplerSettings {
            temperature: 0.8,
            top_k: Some(20),
            top_p: 0.95,
            seed: 42,
            max_new_tokens: 16,
        },
    }
}

/// An adapter fixture's plan, adapter and receipt digest.
type AdapterFixture = (Vec<u8>, Vec<u8>, [u8; 32]);

/// The adapter fixtures for fixture 0's base.
fn adapter_fixture(i: usize) -> &'static AdapterFixture {
    static ADAPTERS: OnceLock<Vec<AdapterFixture>> = OnceLock::new();
    let all = ADAPTERS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
        harness::adapter::fixtures::read_all(&dir)
            .unwrap()
            .into_iter()
            .filter(|f| f.recipe.base == FIXTURES[0])
            .map(|f| {
                let mut model = runtime::model::Model::load(f.base.clone()).unwrap();
                let receipt =
                    runtime::adapter::apply_plan(&mut model, &f.plan, &[&f.adapter]).unwrap();
                (f.plan, f.adapter, receipt.digest())
            })
            .collect()
    });
    &all[i % all.len()]
}

/// What a fresh instance generates for [`final_request`] on fixture 1.
fn reference() -> &'static GenResult {
    static RESULT: OnceLock<GenResult> = OnceLock::new();
    RESULT.get_or_init(|| {
        let mut e = WasmtimeEngine::with_limits(module(), WasmLimits::default()).unwrap();
        e.load(fixture(1)).unwrap();
        e.generate(&final_request()).unwrap()
    })
}

/// A pointer argument, resolved against the live buffers when the call is made.
#[derive(Clone, Debug)]
enum Ptr {
    Null,
    /// Offset from the start of a live buffer (may be negative or past its end).
    Start(usize, i64),
    /// Offset from the end of a live buffer.
    End(usize, i64),
    Raw(u32),
}

/// A length argument.
#[derive(Clone, Debug)]
enum Len {
    Exact(u32),
    /// The referenced buffer's length plus a small delta.
    Buffer(i64),
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(u32),
    Free(Ptr, Len),
    /// Frees a live buffer correctly.
    FreeLive(usize),
    /// Allocates a buffer holding a fixture, with one byte flipped (`Some(offset)`).
    Stage(usize, Option<usize>),
    /// The host writes bytes inside a live buffer.
    Write(usize, usize, Vec<u8>),
    Load(Ptr, Len),
    /// Loads a whole live buffer (valid arguments; valid content when it holds a fixture).
    LoadLive(usize),
    LoadBegin(u32),
    /// Begin with a fixture's exact length.
    LoadBeginFixture(usize),
    LoadChunk(Ptr, Len),
    LoadFinish,
    LoadAbort,
    /// A whole chunked load of a (possibly damaged) fixture.
    Chunked(usize, usize, Option<usize>),
    Unload,
    SetContext(u32),
    SetSampling(f32, u32, f32, u64, u32),
    Start(Ptr, Len),
    /// Starts with valid arguments.
    StartText(String),
    Step(Ptr),
    /// Steps `n` times into a valid record buffer.
    Steps(u8),
    Cancel,
    Reset,
    OutputLen(u32),
    OutputCopy(u32, Ptr, Len),
    /// Allocates a buffer holding an adapter fixture's plan (`true`) or adapter, with one byte
    /// flipped (`Some(offset)`).
    StageAdapter(usize, bool, Option<usize>),
    AdapterValidate(Ptr, Len),
    PlanValidate(Ptr, Len),
    PlanBegin(Ptr, Len),
    PlanModule(Ptr, Len),
    PlanCheck,
    PlanApply,
    PlanAbort,
    RemoveAdapters,
    RequirePlan(Ptr, Len),
    /// Requires an adapter fixture's plan (by digest, pinned receipt or not) or lifts it.
    RequireFixturePlan(Option<(usize, bool)>),
    /// Stages and applies an adapter fixture's plan with valid arguments.
    ApplyFixturePlan(usize),
}

fn any_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(u32::MAX),
        Just(0x8000_0000),
        Just(33_554_432),
        Just(33_554_433),
        1u32..64,
        any::<u32>(),
    ]
}

fn ptr() -> impl Strategy<Value = Ptr> {
    prop_oneof![
        1 => Just(Ptr::Null),
        4 => (any::<usize>(), prop_oneof![Just(0i64), -8i64..8, 0i64..256]).prop_map(|(i, o)| Ptr::Start(i, o)),
        2 => (any::<usize>(), -8i64..8).prop_map(|(i, o)| Ptr::End(i, o)),
        1 => any_u32().prop_map(Ptr::Raw),
    ]
}

fn len() -> impl Strategy<Value = Len> {
    prop_oneof![
        2 => any_u32().prop_map(Len::Exact),
        3 => prop_oneof![Just(0i64), -4i64..4].prop_map(Len::Buffer),
    ]
}

fn float() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(0.0f32),
        Just(0.8),
        Just(1.0),
        Just(-1.0),
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(1e30),
        0.0f32..2.0,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop_oneof![1u32..256, 1u32..100_000, any_u32()].prop_map(Op::Alloc),
        1 => (ptr(), len()).prop_map(|(p, l)| Op::Free(p, l)),
        2 => any::<usize>().prop_map(Op::FreeLive),
        2 => (any::<usize>(), prop::option::weighted(0.3, any::<usize>())).prop_map(|(f, c)| Op::Stage(f, c)),
        1 => (any::<usize>(), any::<usize>(), prop::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(b, o, d)| Op::Write(b, o, d)),
        2 => (ptr(), len()).prop_map(|(p, l)| Op::Load(p, l)),
        2 => any::<usize>().prop_map(Op::LoadLive),
        1 => any_u32().prop_map(Op::LoadBegin),
        1 => any::<usize>().prop_map(Op::LoadBeginFixture),
        3 => (ptr(), len()).prop_map(|(p, l)| Op::LoadChunk(p, l)),
        1 => Just(Op::LoadFinish),
        1 => Just(Op::LoadAbort),
        3 => (any::<usize>(), prop_oneof![1usize..300, 1usize..70_000], prop::option::weighted(0.3, any::<usize>()))
            .prop_map(|(f, c, x)| Op::Chunked(f, c, x)),
        1 => Just(Op::Unload),
        1 => prop_oneof![Just(0u32), 1u32..80, any_u32()].prop_map(Op::SetContext),
        2 => (float(), prop_oneof![Just(u32::MAX), 0u32..40, any_u32()], float(), prop_oneof![Just(0u64), 1u64..100, any::<u64>()], prop_oneof![0u32..40, any_u32()])
            .prop_map(|(t, k, p, s, m)| Op::SetSampling(t, k, p, s, m)),
        2 => (0.0f32..1.5, prop_oneof![Just(u32::MAX), 1u32..40], 0.05f32..=1.0, 1u64..1000, 1u32..64)
            .prop_map(|(t, k, p, s, m)| Op::SetSampling(t, k, p, s, m)),
        2 => (ptr(), len()).prop_map(|(p, l)| Op::Start(p, l)),
        4 => "[a-z ]{0,24}|\\PC{0,8}".prop_map(Op::StartText),
        3 => ptr().prop_map(Op::Step),
        6 => (1u8..40).prop_map(Op::Steps),
        1 => Just(Op::Cancel),
        1 => Just(Op::Reset),
        1 => (0u32..8).prop_map(Op::OutputLen),
        2 => (0u32..8, ptr(), len()).prop_map(|(k, p, l)| Op::OutputCopy(k, p, l)),
        2 => (any::<usize>(), any::<bool>(), prop::option::weighted(0.3, any::<usize>())).prop_map(|(i, p, f)| Op::StageAdapter(i, p, f)),
        1 => (ptr(), len()).prop_map(|(p, l)| Op::AdapterValidate(p, l)),
        1 => (ptr(), len()).prop_map(|(p, l)| Op::PlanValidate(p, l)),
        2 => (ptr(), len()).prop_map(|(p, l)| Op::PlanBegin(p, l)),
        2 => (ptr(), len()).prop_map(|(p, l)| Op::PlanModule(p, l)),
        1 => Just(Op::PlanCheck),
        1 => Just(Op::PlanApply),
        1 => Just(Op::PlanAbort),
        1 => Just(Op::RemoveAdapters),
        1 => (ptr(), len()).prop_map(|(p, l)| Op::RequirePlan(p, l)),
        1 => prop::option::of((any::<usize>(), any::<bool>())).prop_map(Op::RequireFixturePlan),
        2 => any::<usize>().prop_map(Op::ApplyFixturePlan),
    ]
}

/// The test's model of the module's state.
#[derive(Default)]
struct Mirror {
    /// Live buffers: (address, length).
    live: Vec<(u32, u32)>,
    /// The file digest (header bytes 224..256) of the active model.
    active: Option<Vec<u8>>,
    /// Bytes of the chunked load in progress.
    pending: Option<Vec<u8>>,
}

impl Mirror {
    fn buffer(&self, i: usize) -> Option<(u32, u32)> {
        (!self.live.is_empty()).then(|| self.live[i % self.live.len()])
    }

    fn resolve(&self, p: &Ptr, l: &Len) -> (u32, u32) {
        let base = |i: &usize| self.buffer(*i);
        let ptr = match p {
            Ptr::Null => 0,
            Ptr::Raw(v) => *v,
            Ptr::Start(i, o) => base(i).map_or(*o as u32, |(b, _)| (b as i64 + o) as u32),
            Ptr::End(i, o) => base(i).map_or(*o as u32, |(b, n)| (b as i64 + n as i64 + o) as u32),
        };
        let len = match l {
            Len::Exact(n) => *n,
            Len::Buffer(d) => {
                let i = match p {
                    Ptr::Start(i, _) | Ptr::End(i, _) => *i,
                    _ => 0,
                };
                base(&i).map_or(0, |(_, n)| (n as i64 + d).max(0) as u32)
            }
        };
        (ptr, len)
    }
}

fn is_argument_error(code: u32) -> bool {
    [
        ErrorCode::NullPointer,
        ErrorCode::InvalidArgument,
        ErrorCode::InvalidLength,
    ]
    .iter()
    .any(|c| *c as u32 == code)
}

/// The bytes `[ptr, ptr + len)` of memory, when they are inside it.
fn peek(wasm: &AbiInstance, ptr: u32, len: u32) -> Option<Vec<u8>> {
    let end = ptr as usize + len as usize;
    (end <= wasm.memory_size() && len <= 1 << 26).then(|| wasm.read(ptr, len as usize).unwrap())
}

fn file_digest_field(bytes: &[u8]) -> Vec<u8> {
    bytes[224..256].to_vec()
}

fn damaged(f: usize, flip: Option<usize>) -> Vec<u8> {
    let mut b = fixture(f).to_vec();
    if let Some(at) = flip {
        let at = at % b.len();
        b[at] ^= 0x10;
    }
    b
}

/// Runs one op; returns its status (or 0 for calls that return a value).
fn apply(wasm: &mut AbiInstance, m: &mut Mirror, op: &Op) -> Result<u32, TestCaseError> {
    let ok = 0u32;
    Ok(match op {
        Op::Alloc(len) => {
            let ptr = wasm.alloc(*len).unwrap();
            if ptr != 0 {
                prop_assert!(ptr as usize + *len as usize <= wasm.memory_size());
                for &(b, n) in &m.live {
                    prop_assert!(ptr >= b + n || ptr + len <= b, "buffers overlap");
                }
                m.live.push((ptr, *len));
            }
            ok
        }
        Op::Free(p, l) => {
            let (ptr, len) = m.resolve(p, l);
            let status = wasm.free(ptr, len).unwrap();
            let known = m.live.iter().position(|&e| e == (ptr, len));
            prop_assert_eq!(status == 0, known.is_some(), "free({:#x}, {})", ptr, len);
            if let Some(i) = known {
                m.live.remove(i);
            }
            status
        }
        Op::FreeLive(i) => match m.buffer(*i) {
            Some((ptr, len)) => {
                prop_assert_eq!(wasm.free(ptr, len).unwrap(), 0);
                m.live.retain(|&e| e != (ptr, len));
                ok
            }
            None => ok,
        },
        Op::Stage(f, flip) => {
            let bytes = damaged(*f, *flip);
            let ptr = wasm.alloc(bytes.len() as u32).unwrap();
            if ptr != 0 {
                wasm.write(ptr, &bytes).unwrap();
                m.live.push((ptr, bytes.len() as u32));
            }
            ok
        }
        Op::Write(b, o, data) => {
            if let Some((ptr, len)) = m.buffer(*b) {
                let at = (*o % len as usize) as u32;
                let n = data.len().min((len - at) as usize);
                wasm.write(ptr + at, &data[..n]).unwrap();
            }
            ok
        }
        Op::Load(p, l) => {
            let (ptr, len) = m.resolve(p, l);
            let data = peek(wasm, ptr, len);
            let status = wasm.load(ptr, len).unwrap();
            if status == 0 {
                m.active = Some(file_digest_field(&data.unwrap()));
            }
            status
        }
        Op::LoadLive(i) => match m.buffer(*i) {
            Some((ptr, len)) => {
                let data = wasm.read(ptr, len as usize).unwrap();
                let status = wasm.load(ptr, len).unwrap();
                if status == 0 {
                    m.active = Some(file_digest_field(&data));
                }
                status
            }
            None => ok,
        },
        Op::LoadBegin(total) => {
            let status = wasm.load_begin(*total).unwrap();
            if status == 0 {
                m.pending = Some(Vec::new());
            } else if status != ErrorCode::BudgetExceeded as u32 {
                m.pending = None;
            }
            status
        }
        Op::LoadBeginFixture(f) => {
            let status = wasm.load_begin(fixture(*f).len() as u32).unwrap();
            prop_assert_eq!(status, 0);
            m.pending = Some(Vec::new());
            status
        }
        Op::LoadChunk(p, l) => {
            let (ptr, len) = m.resolve(p, l);
            let data = peek(wasm, ptr, len);
            let status = wasm.load_chunk(ptr, len).unwrap();
            if status == 0 {
                prop_assert!(m.pending.is_some(), "a chunk without begin was accepted");
                m.pending.as_mut().unwrap().extend(data.unwrap());
            } else if status == ErrorCode::InvalidState as u32 {
                prop_assert!(m.pending.is_none());
            } else if !is_argument_error(status) {
                m.pending = None;
            }
            status
        }
        Op::LoadFinish => {
            let status = wasm.load_finish().unwrap();
            let pending = m.pending.take();
            prop_assert_eq!(status == ErrorCode::InvalidState as u32, pending.is_none());
            if status == 0 {
                m.active = Some(file_digest_field(&pending.unwrap()));
            }
            status
        }
        Op::LoadAbort => {
            let status = wasm.load_abort().unwrap();
            prop_assert_eq!(status == 0, m.pending.take().is_some());
            status
        }
        Op::Chunked(f, chunk, flip) => {
            let bytes = damaged(*f, *flip);
            // The helper allocates its chunk buffer first; without one it begins nothing.
            let cap = (*chunk).clamp(1, bytes.len()) as u64;
            let live: u64 = m.live.iter().map(|&(_, n)| u64::from(n)).sum();
            let no_buffer = live + cap > limits::MAX_ABI_BUFFER_TOTAL_BYTES
                || m.live.len() >= limits::MAX_ABI_BUFFERS;
            let status = wasm.load_chunked(&bytes, *chunk).unwrap();
            if no_buffer {
                prop_assert!(
                    status == ErrorCode::BudgetExceeded as u32
                        || status == ErrorCode::LimitExceeded as u32
                );
            } else {
                // Begin replaced any load in progress; finish or a failure ended this one.
                m.pending = None;
            }
            if status == 0 {
                m.active = Some(file_digest_field(&bytes));
            }
            status
        }
        Op::Unload => {
            m.active = None;
            wasm.unload().unwrap()
        }
        Op::SetContext(n) => {
            let status = wasm.set_context(*n).unwrap();
            if status == ErrorCode::OutOfMemory as u32 {
                m.active = None;
            }
            status
        }
        Op::SetSampling(t, k, p, s, n) => wasm.set_sampling(*t, *k, *p, *s, *n).unwrap(),
        Op::Start(p, l) => {
            let (ptr, len) = m.resolve(p, l);
            wasm.start(ptr, len).unwrap()
        }
        Op::StartText(text) => match temp_buffer(wasm, text.as_bytes())? {
            Ok(ptr) => {
                let status = wasm.start(ptr, text.len() as u32).unwrap();
                wasm.free(ptr, text.len().max(1) as u32).unwrap();
                status
            }
            Err(code) => code,
        },
        Op::Step(p) => {
            let (ptr, _) = m.resolve(p, &Len::Exact(16));
            step_checked(wasm, ptr)?
        }
        Op::Steps(n) => {
            let ptr = wasm.alloc(16).unwrap();
            let mut status = 0;
            for _ in 0..*n {
                status = step_checked(wasm, ptr)?;
                if status != 0 {
                    break;
                }
            }
            if ptr != 0 {
                wasm.free(ptr, 16).unwrap();
            }
            status
        }
        Op::Cancel => wasm.cancel().unwrap(),
        Op::Reset => wasm.reset().unwrap(),
        Op::OutputLen(k) => {
            let n = wasm.output_len(*k).unwrap();
            prop_assert!(n == u32::MAX || n < 1 << 20);
            ok
        }
        Op::OutputCopy(k, p, l) => {
            let (ptr, len) = m.resolve(p, l);
            wasm.output_copy(*k, ptr, len).unwrap()
        }
        Op::StageAdapter(i, plan, flip) => {
            let (p, a, _) = adapter_fixture(*i);
            let mut bytes = if *plan { p.clone() } else { a.clone() };
            if let Some(at) = flip {
                let at = at % bytes.len();
                bytes[at] ^= 0x10;
            }
            let ptr = wasm.alloc(bytes.len() as u32).unwrap();
            if ptr != 0 {
                wasm.write(ptr, &bytes).unwrap();
                m.live.push((ptr, bytes.len() as u32));
            }
            ok
        }
        Op::AdapterValidate(p, l) => {
            let (ptr, len) = m.resolve(p, l);
            wasm.adapter_validate(ptr, len).unwrap()
        }
        Op::PlanValidate(p, l) => {
            let (ptr, len) = m.resolve(p, l);
            wasm.plan_validate(ptr, len).unwrap()
        }
        Op::PlanBegin(p, l) => {
            let (ptr, len) = m.resolve(p, l);
            wasm.plan_begin(ptr, len).unwrap()
        }
        Op::PlanModule(p, l) => {
            let (ptr, len) = m.resolve(p, l);
            wasm.plan_module(ptr, len).unwrap()
        }
        Op::PlanCheck => wasm.plan_check().unwrap(),
        Op::PlanApply => wasm.plan_apply().unwrap(),
        Op::PlanAbort => wasm.plan_abort().unwrap(),
        Op::RemoveAdapters => wasm.remove_adapters().unwrap(),
        Op::RequirePlan(p, l) => {
            let (ptr, len) = m.resolve(p, l);
            wasm.require_plan(ptr, len).unwrap()
        }
        Op::RequireFixturePlan(which) => {
            let mut data = Vec::new();
            if let Some((i, pin)) = which {
                let (plan, _, receipt) = adapter_fixture(*i);
                data.extend_from_slice(&runtime::sha256::sha256(plan));
                if *pin {
                    data.extend_from_slice(receipt);
                }
            }
            match temp_buffer(wasm, &data)? {
                Ok(ptr) => {
                    let status = wasm.require_plan(ptr, data.len() as u32).unwrap();
                    wasm.free(ptr, data.len().max(1) as u32).unwrap();
                    status
                }
                Err(code) => code,
            }
        }
        Op::ApplyFixturePlan(i) => {
            let (plan, adapter, _) = adapter_fixture(*i);
            let mut status = match temp_buffer(wasm, plan)? {
                Ok(p) => {
                    let status = wasm.plan_begin(p, plan.len() as u32).unwrap();
                    wasm.free(p, plan.len() as u32).unwrap();
                    status
                }
                Err(code) => code,
            };
            if status == 0 {
                status = match temp_buffer(wasm, adapter)? {
                    Ok(a) => {
                        let status = wasm.plan_module(a, adapter.len() as u32).unwrap();
                        wasm.free(a, adapter.len() as u32).unwrap();
                        status
                    }
                    Err(code) => code,
                };
            }
            if status == 0 {
                status = wasm.plan_apply().unwrap();
            }
            status
        }
    })
}

/// A host buffer holding `data` (at least one byte) for one call, or the code `trlm_alloc`
/// refused it with: the sequence's own live buffers may leave no room in the buffer budget.
fn temp_buffer(wasm: &mut AbiInstance, data: &[u8]) -> Result<Result<u32, u32>, TestCaseError> {
    let len = data.len().max(1) as u32;
    let ptr = wasm.alloc(len).unwrap();
    if ptr == 0 {
        let code = wasm.last_error_code().unwrap();
        prop_assert!(
            code == ErrorCode::BudgetExceeded as u32
                || code == ErrorCode::LimitExceeded as u32
                || code == ErrorCode::OutOfMemory as u32,
            "trlm_alloc({}) failed with {}",
            len,
            code
        );
        return Ok(Err(code));
    }
    wasm.write(ptr, data).unwrap();
    Ok(Ok(ptr))
}

/// One `trlm_step`; a written record must be well-formed.
fn step_checked(wasm: &mut AbiInstance, ptr: u32) -> Result<u32, TestCaseError> {
    let status = wasm.step(ptr).unwrap();
    if status == 0 {
        let rec = wasm.read(ptr, 16).unwrap();
        let word = |i: usize| u32::from_le_bytes(rec[4 * i..4 * i + 4].try_into().unwrap());
        prop_assert!(word(1) <= 5, "step state {}", word(1));
        prop_assert_eq!(
            word(0) == u32::MAX,
            word(1) >= 2,
            "token id {} in state {}",
            word(0),
            word(1)
        );
        prop_assert!(word(2) <= word(3));
        prop_assert!(word(3) <= wasm.output_len(1).unwrap());
    }
    Ok(status)
}

fn check_invariants(wasm: &mut AbiInstance, m: &Mirror, status: u32) -> Result<(), TestCaseError> {
    prop_assert!(ErrorCode::from_u32(status).is_some(), "status {}", status);
    let last = wasm.last_error_code().unwrap();
    prop_assert!(ErrorCode::from_u32(last).is_some(), "last error {}", last);
    if wasm.output_len(4).unwrap() == u32::MAX {
        let code = wasm.last_error_code().unwrap();
        prop_assert_eq!(code, ErrorCode::ModelNotLoaded as u32);
        prop_assert!(m.active.is_none(), "the mirror expects a model");
        return Ok(());
    }
    let expected = m
        .active
        .as_ref()
        .map(|b| runtime::sha256::to_hex(&b[..].try_into().unwrap()));
    prop_assert!(
        expected.is_some(),
        "a model is loaded; the mirror expects none"
    );
    match wasm.diagnostics().unwrap() {
        Ok(d) => {
            prop_assert_eq!(d["model_digest"].as_str().map(String::from), expected);
            prop_assert_eq!(d["abi_version"].as_u64(), Some(2));
            // The receipt output is empty or a receipt, as the diagnostics say. Reading it may
            // fail only as the diagnostics could have (no room for a buffer): never otherwise.
            let receipt = match wasm.output(6).unwrap() {
                Ok(receipt) => Some(receipt),
                Err(code) => {
                    prop_assert!(
                        code == ErrorCode::BudgetExceeded as u32
                            || code == ErrorCode::LimitExceeded as u32,
                        "the receipt output was refused with {}",
                        code
                    );
                    None
                }
            };
            if let Some(receipt) = receipt {
                let modules = d["adapter_modules"].as_u64().unwrap();
                if receipt.is_empty() {
                    prop_assert_eq!(modules, 0);
                    prop_assert!(d["receipt_digest"].is_null());
                } else {
                    let r = runtime::adapter::Receipt::parse(&receipt);
                    prop_assert!(r.is_ok(), "receipt output {:?}", receipt);
                    prop_assert_eq!(modules, 1);
                    let digest = runtime::sha256::to_hex(&runtime::sha256::sha256(&receipt));
                    prop_assert_eq!(d["receipt_digest"].as_str(), Some(digest.as_str()));
                }
            }
        }
        // The host's own buffers can leave no room for one to read the document into.
        Err(code) => prop_assert!(
            code == ErrorCode::BudgetExceeded as u32 || code == ErrorCode::LimitExceeded as u32,
            "reading diagnostics failed with {}",
            code
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_call_sequences_never_trap_and_leave_a_working_module(
        ops in prop::collection::vec(op(), 1..64)
    ) {
        run_sequence(&ops)?;
    }
}

/// Runs `ops`, checking the invariants after each; then the host frees its buffers (live ones
/// count against the buffer budget the engine's loader needs too), loads and generates.
fn run_sequence(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut wasm = AbiInstance::new(module(), WasmLimits::default()).unwrap();
    let mut mirror = Mirror::default();
    for op in ops {
        let status = apply(&mut wasm, &mut mirror, op)?;
        check_invariants(&mut wasm, &mirror, status)?;
    }
    for &(ptr, len) in &mirror.live {
        prop_assert_eq!(wasm.free(ptr, len).unwrap(), 0);
    }
    let mut engine = WasmtimeEngine::from_instance(wasm);
    engine.load(fixture(1)).unwrap();
    let result = engine.generate(&final_request()).unwrap();
    prop_assert_eq!(&result, reference());
    Ok(())
}

/// Found by the proptest: two live buffers of the largest size fill the buffer budget, so the
/// one-call buffers of the ops that make their own (here the prompt of `StartText`) are refused;
/// the op reports that refusal as its status instead of failing the test.
#[test]
fn a_full_buffer_budget_refuses_the_one_call_buffers() {
    let ops = [
        Op::Alloc(33_554_432),
        Op::Alloc(1),
        Op::FreeLive(10_335_067_450_916_851_627),
        Op::Alloc(33_554_432),
        Op::StartText(String::new()),
        Op::RequireFixturePlan(None),
        Op::ApplyFixturePlan(0),
    ];
    if let Err(e) = run_sequence(&ops) {
        panic!("{e}");
    }
}
