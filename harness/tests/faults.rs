//! Fault injection: a model stream cut at every chunk boundary (then finished early or
//! aborted), a digest mismatch in the last chunk, a generation cancelled at each step, and the
//! wasm memory limit reached while a model loads or its context changes. Each ends in a specific error code with the
//! previous model still usable (generating exactly what it did before) or cleanly absent —
//! never a trap. Under wasmtime through the raw ABI, and natively where the case applies (the
//! whole-file loader, the session).

mod common;

use common::{build_model, byte_vocab, fixture, greedy, load, Shape};
use harness::engine::wasmtime::{AbiInstance, WasmLimits, WasmModule};
use runtime::format::{file_digest, header::DIGEST_OFFSET, DType, Slm};
use runtime::generate::{Finish, Session, Step};
use runtime::model::Model;
use runtime::ErrorCode;
use std::sync::OnceLock;

/// The model loaded first ("the previous model").
const PREVIOUS: &str = "spm-gqa-untied-q4_0";
/// The model whose stream is cut.
const STREAMED: &str = "byte-mha-tied-q4_0";

/// A wasm memory page.
const PAGE: usize = 64 << 10;

const OK: u32 = ErrorCode::Ok as u32;

fn code(c: ErrorCode) -> u32 {
    c as u32
}

fn module() -> &'static WasmModule {
    static MODULE: OnceLock<WasmModule> = OnceLock::new();
    MODULE.get_or_init(|| {
        WasmModule::compile(&harness::engine::wasmtime::wasm_bytes().unwrap()).unwrap()
    })
}

fn instance() -> AbiInstance {
    AbiInstance::new(module(), WasmLimits::default()).unwrap()
}

/// Calls the ABI; a trap fails the test.
macro_rules! call {
    ($wasm:expr, $f:ident ( $($arg:expr),* )) => {
        $wasm.$f($($arg),*).unwrap_or_else(|e| panic!("{} trapped: {e:#}", stringify!($f)))
    };
}

/// What a greedy generation of 12 tokens from "once" produced: (text, step states), or the
/// code that refused it.
type Generated = Result<(Vec<u8>, Vec<u32>), u32>;

/// Runs the generation to its end on the active model.
fn generate(wasm: &mut AbiInstance) -> Generated {
    let status = call!(wasm, set_sampling(0.0, u32::MAX, 1.0, 1, 12));
    assert_eq!(status, OK);
    let prompt = call!(wasm, alloc(4));
    if prompt == 0 {
        // No room for the prompt's buffer (under a memory cap).
        return Err(call!(wasm, last_error_code()));
    }
    wasm.write(prompt, b"once").unwrap();
    let status = call!(wasm, start(prompt, 4));
    call!(wasm, free(prompt, 4));
    if status != OK {
        return Err(status);
    }
    let out = call!(wasm, alloc(16));
    if out == 0 {
        return Err(call!(wasm, last_error_code()));
    }
    let mut states = Vec::new();
    loop {
        assert_eq!(call!(wasm, step(out)), OK);
        let rec = wasm.read(out, 16).unwrap();
        let state = u32::from_le_bytes(rec[4..8].try_into().unwrap());
        states.push(state);
        if state != 0 {
            break;
        }
    }
    call!(wasm, free(out, 16));
    Ok((wasm.output(1).unwrap().unwrap(), states))
}

/// The active model's digest, or None when none is loaded (ModelNotLoaded).
fn active(wasm: &mut AbiInstance) -> Option<String> {
    match wasm.diagnostics().unwrap() {
        Ok(d) => Some(d["model_digest"].as_str().unwrap().to_string()),
        Err(c) => {
            assert_eq!(c, code(ErrorCode::ModelNotLoaded));
            None
        }
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    runtime::sha256::to_hex(&file_digest(bytes))
}

/// Copies `data` into a host buffer of `cap` bytes at `buf` and sends it as one chunk.
fn send(wasm: &mut AbiInstance, buf: u32, data: &[u8]) -> u32 {
    wasm.write(buf, data).unwrap();
    call!(wasm, load_chunk(buf, data.len() as u32))
}

/// What the previous model (if any) is and generates, on a fresh instance.
fn with_previous(previous: bool) -> (AbiInstance, Option<String>, Generated) {
    let mut wasm = instance();
    if previous {
        let bytes = fixture(PREVIOUS);
        assert_eq!(call!(wasm, load_chunked(&bytes, 4096)), OK);
    }
    let digest = active(&mut wasm);
    let generated = generate(&mut wasm);
    (wasm, digest, generated)
}

#[test]
fn a_stream_cut_at_every_chunk_boundary_leaves_the_previous_model_or_none() {
    let bytes = fixture(STREAMED);
    for previous in [false, true] {
        let (mut wasm, digest, generated) = with_previous(previous);
        if previous {
            assert!(generated.is_ok());
        } else {
            assert_eq!(generated, Err(code(ErrorCode::ModelNotLoaded)));
        }
        for chunk in [256usize, 4093] {
            let buf = call!(wasm, alloc(chunk as u32));
            let pieces: Vec<&[u8]> = bytes.chunks(chunk).collect();
            for cut in 0..pieces.len() {
                for finish in [true, false] {
                    let what = format!("chunks of {chunk}, cut after {cut}, finish {finish}");
                    assert_eq!(call!(wasm, load_begin(bytes.len() as u32)), OK, "{what}");
                    for p in &pieces[..cut] {
                        assert_eq!(send(&mut wasm, buf, p), OK, "{what}");
                    }
                    if finish {
                        assert_eq!(
                            call!(wasm, load_finish()),
                            code(ErrorCode::Truncated),
                            "{what}"
                        );
                        let message = wasm.last_error_message().unwrap();
                        assert!(message.contains("Truncated"), "{what}: {message}");
                    } else {
                        assert_eq!(call!(wasm, load_abort()), OK, "{what}");
                    }
                    // The load is over either way.
                    let state = code(ErrorCode::InvalidState);
                    assert_eq!(call!(wasm, load_finish()), state, "{what}");
                    assert_eq!(call!(wasm, load_abort()), state, "{what}");
                    assert_eq!(send(&mut wasm, buf, &bytes[..1]), state, "{what}");
                    assert_eq!(active(&mut wasm), digest, "{what}");
                }
                // Checked at every eighth cut: the previous model generates as before.
                if cut % 8 == 0 {
                    assert_eq!(generate(&mut wasm), generated, "cut after {cut}");
                }
            }
            call!(wasm, free(buf, chunk as u32));
        }
        assert_eq!(generate(&mut wasm), generated);
        // The whole stream still loads afterwards and generates as on a fresh instance.
        assert_eq!(call!(wasm, load_chunked(&bytes, 4093)), OK);
        assert_eq!(active(&mut wasm), Some(hex_digest(&bytes)));
        let mut fresh = instance();
        assert_eq!(call!(fresh, load_chunked(&bytes, 65536)), OK);
        assert_eq!(generate(&mut wasm), generate(&mut fresh));
    }
}

#[test]
fn native_loads_of_every_cut_are_truncated() {
    let bytes = fixture(STREAMED);
    for chunk in [256usize, 4093] {
        for end in (0..bytes.len()).step_by(chunk) {
            let e = Model::load(bytes[..end].to_vec()).err().unwrap();
            assert_eq!(e.code, ErrorCode::Truncated, "first {end} bytes");
        }
    }
}

/// How the last tensor's payload is damaged.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// One byte changed; the digests left as they were.
    Stale,
    /// One byte changed and the file digest re-computed: only the tensor digest disagrees.
    FileDigestRefreshed,
    /// One byte changed and the tensor's directory digest re-computed: only the file digest
    /// disagrees.
    TensorDigestRefreshed,
}

/// The file with one byte of its last tensor's payload (in the last chunk) changed.
fn last_chunk_damaged(bytes: &[u8], damage: Damage) -> Vec<u8> {
    let slm = Slm::parse(bytes).unwrap();
    let last = slm.tensors.iter().max_by_key(|t| t.offset).unwrap();
    let (start, end) = (last.offset as usize, (last.offset + last.length) as usize);
    let mut bad = bytes.to_vec();
    bad[end - 1] ^= 0x10;
    match damage {
        Damage::Stale => {}
        Damage::FileDigestRefreshed => {
            let d = file_digest(&bad);
            bad[DIGEST_OFFSET..DIGEST_OFFSET + 32].copy_from_slice(&d);
        }
        Damage::TensorDigestRefreshed => {
            // Entry: u16 name_len, name, u8 dtype, u8 rank, rank × u32, u64 offset, u64 length,
            // then the 32-byte digest.
            let at =
                last.entry_offset as usize + 2 + last.name.len() + 2 + 4 * last.rank as usize + 16;
            assert_eq!(bad[at..at + 32], last.digest);
            let d = runtime::format::digest::tensor_digest(
                runtime::format::digest::DigestRule::Chunked,
                &bad[start..end],
            );
            bad[at..at + 32].copy_from_slice(&d);
        }
    }
    bad
}

#[test]
fn a_digest_mismatch_in_the_last_chunk_is_caught_at_finish() {
    let bytes = fixture(STREAMED);
    for (damage, expected) in [
        (Damage::Stale, ErrorCode::TensorDigestMismatch),
        (Damage::FileDigestRefreshed, ErrorCode::TensorDigestMismatch),
        (Damage::TensorDigestRefreshed, ErrorCode::FileDigestMismatch),
    ] {
        let bad = last_chunk_damaged(&bytes, damage);
        // Natively the same code.
        let native = Model::load(bad.clone()).err().unwrap().code;
        assert_eq!(native, expected, "{damage:?}");
        for previous in [false, true] {
            let (mut wasm, digest, generated) = with_previous(previous);
            for chunk in [256usize, 4093, bad.len()] {
                let buf = call!(wasm, alloc(chunk as u32));
                assert_eq!(call!(wasm, load_begin(bad.len() as u32)), OK);
                // Every chunk, the damaged last one included, is accepted: only the whole
                // file shows the mismatch.
                for p in bad.chunks(chunk) {
                    assert_eq!(send(&mut wasm, buf, p), OK, "{damage:?}");
                }
                let what = format!("{damage:?}, chunks of {chunk}");
                assert_eq!(call!(wasm, load_finish()), code(expected), "{what}");
                call!(wasm, free(buf, chunk as u32));
                assert_eq!(active(&mut wasm), digest, "{what}");
                assert_eq!(generate(&mut wasm), generated, "{what}");
            }
            // The same through trlm_load.
            let ptr = wasm.alloc_with(&bad).unwrap();
            assert_eq!(call!(wasm, load(ptr, bad.len() as u32)), code(expected));
            call!(wasm, free(ptr, bad.len() as u32));
            assert_eq!(active(&mut wasm), digest);
        }
    }
}

#[test]
fn a_generation_cancelled_at_each_step_leaves_a_working_session() {
    let bytes = fixture(PREVIOUS);
    let (mut wasm, _, reference) = with_previous(true);
    let (text, states) = reference.clone().unwrap();
    let out = call!(wasm, alloc(16));
    let prompt = wasm.alloc_with(b"once").unwrap();
    let record = |wasm: &mut AbiInstance| {
        assert_eq!(call!(wasm, step(out)), OK);
        let rec = wasm.read(out, 16).unwrap();
        let word = |i: usize| u32::from_le_bytes(rec[4 * i..4 * i + 4].try_into().unwrap());
        (word(0), word(1))
    };
    // Cancelling before any start: nothing runs, nothing breaks.
    assert_eq!(call!(wasm, cancel()), OK);
    for at in 0..states.len() {
        assert_eq!(call!(wasm, start(prompt, 4)), OK);
        for _ in 0..at {
            assert_eq!(record(&mut wasm).1, 0, "cancel at step {at}");
        }
        assert_eq!(call!(wasm, cancel()), OK);
        // Cancelled: the record says so (no token), and stays so.
        for _ in 0..2 {
            assert_eq!(record(&mut wasm), (u32::MAX, 4), "cancel at step {at}");
        }
        let partial = wasm.output(1).unwrap().unwrap();
        assert!(text.starts_with(&partial), "cancel at step {at}");
        let d = wasm.diagnostics().unwrap().unwrap();
        assert_eq!(d["finish"], "cancelled", "cancel at step {at}");
        // A new generation runs from scratch, identically.
        assert_eq!(
            generate(&mut wasm),
            reference,
            "after a cancel at step {at}"
        );
    }
    call!(wasm, free(out, 16));

    // Natively: the same at each step.
    let mut session = Session::new(load(&bytes), 0).unwrap();
    let run = |s: &mut Session| {
        s.start(b"once", greedy(12)).unwrap();
        while let Step::Token { .. } = s.step().unwrap() {}
        s.text().to_vec()
    };
    let native = run(&mut session);
    assert_eq!(native, text, "native and wasmtime agree");
    for at in 0..states.len() {
        session.start(b"once", greedy(12)).unwrap();
        for _ in 0..at {
            assert!(matches!(session.step().unwrap(), Step::Token { .. }));
        }
        session.cancel();
        assert_eq!(session.step().unwrap(), Step::Finished(Finish::Cancelled));
        assert_eq!(run(&mut session), native, "after a cancel at step {at}");
    }
}

#[test]
fn the_memory_limit_gives_out_of_memory_never_a_trap() {
    let small = fixture(STREAMED);
    // A 2.5 MiB model (f32, four layers of width 128).
    let shape = Shape {
        dim: 128,
        n_layers: 4,
        n_heads: 4,
        n_kv_heads: 4,
        head_dim: 32,
        ffn_dim: 256,
        max_context: 64,
        tied: true,
    };
    let large = build_model(byte_vocab(vec![]), shape, DType::F32, 5);
    // Memory caps from one page above the module's initial memory (its smallest heap,
    // spec/abi.md) up to the first that fits the large model, page by page.
    let mut outcomes = Vec::new();
    let mut cap = instance().memory_size() + PAGE;
    loop {
        let limits = WasmLimits {
            memory_bytes: cap,
            ..WasmLimits::default()
        };
        let mut wasm = AbiInstance::new(module(), limits).unwrap();
        let with_small = call!(wasm, load_chunked(&small, 4096)) == OK;
        let before = active(&mut wasm);
        let generated = generate(&mut wasm);
        let status = call!(wasm, load_chunked(&large, 65536));
        outcomes.push((cap, with_small, status));
        if status == OK {
            assert_eq!(active(&mut wasm), Some(hex_digest(&large)));
            break;
        }
        assert_eq!(status, code(ErrorCode::OutOfMemory), "cap {cap}");
        // The message reads "OutOfMemory", unless even its buffer cannot be had (then that
        // allocation fails with OutOfMemory too).
        match wasm.output(5).unwrap() {
            Ok(m) => assert!(
                String::from_utf8_lossy(&m).contains("OutOfMemory"),
                "cap {cap}"
            ),
            Err(c) => assert_eq!(c, code(ErrorCode::OutOfMemory), "cap {cap}"),
        }
        // The previous model (when it fitted) is still the active one and generates as before.
        assert_eq!(active(&mut wasm), before, "cap {cap}");
        assert_eq!(generate(&mut wasm), generated, "cap {cap}");
        // The small model still loads after the failure (when it fits at all).
        if with_small {
            assert_eq!(call!(wasm, unload()), OK);
            assert_eq!(call!(wasm, load_chunked(&small, 4096)), OK, "cap {cap}");
            assert_eq!(generate(&mut wasm), generated, "cap {cap}");
        }
        cap += PAGE;
        assert!(cap < 64 << 20, "the large model never loaded: {outcomes:?}");
    }
    // The sweep saw both sides: caps where the small model fitted and the large did not.
    assert!(
        outcomes
            .iter()
            .any(|&(_, small, large)| small && large != OK),
        "{outcomes:?}"
    );
}

#[test]
fn a_context_that_does_not_fit_leaves_no_model_and_the_next_load_works() {
    // A small model with a long context: its whole KV cache takes 4 MiB.
    let shape = Shape {
        dim: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 4,
        head_dim: 8,
        ffn_dim: 64,
        max_context: 8192,
        tied: true,
    };
    let model = build_model(byte_vocab(vec![]), shape, DType::Q8_0, 7);
    let max = shape.max_context;
    let base = instance().memory_size() + PAGE;
    // The caps under which the model loads with a one-position cache but its whole
    // context does not fit.
    let mut cap = base;
    let mut seen = false;
    let mut generated = false;
    while cap < base + (64 << 20) {
        let limits = WasmLimits {
            memory_bytes: cap,
            ..WasmLimits::default()
        };
        cap += PAGE;
        let mut wasm = AbiInstance::new(module(), limits).unwrap();
        assert_eq!(call!(wasm, set_context(1)), OK);
        if call!(wasm, load_chunked(&model, 4096)) != OK {
            continue;
        }
        let status = call!(wasm, set_context(max));
        if status == OK {
            break;
        }
        seen = true;
        assert_eq!(status, code(ErrorCode::OutOfMemory), "cap {cap}");
        // Documented (spec/abi.md): the old cache was freed first, so no model is left.
        assert_eq!(active(&mut wasm), None, "cap {cap}");
        assert_eq!(
            generate(&mut wasm),
            Err(code(ErrorCode::ModelNotLoaded)),
            "cap {cap}"
        );
        // A small context and the model again: loaded.
        assert_eq!(call!(wasm, set_context(16)), OK);
        assert_eq!(call!(wasm, load_chunked(&model, 4096)), OK, "cap {cap}");
        assert_eq!(active(&mut wasm), Some(hex_digest(&model)));
        // Generating takes a little more than the headroom the load left (the sampler, the
        // prompt, then the headroom again): at the tightest caps it is refused, cleanly.
        match generate(&mut wasm) {
            Ok(_) => generated = true,
            Err(c) => assert_eq!(c, code(ErrorCode::OutOfMemory), "cap {cap}"),
        }
    }
    assert!(seen, "no cap made the full context fail");
    assert!(generated, "the reloaded model never generated");
}

#[test]
fn a_context_that_fits_leaves_the_headroom() {
    // One narrow layer with a long context: the KV cache (128 bytes a position) is nearly all
    // of a session, so contexts in steps of 97 positions end the session at many offsets
    // within a page.
    let shape = Shape {
        dim: 16,
        n_layers: 1,
        n_heads: 2,
        n_kv_heads: 2,
        head_dim: 8,
        ffn_dim: 32,
        max_context: 32768,
        tied: true,
    };
    let model = build_model(byte_vocab(vec![]), shape, DType::F32, 11);
    let cap = instance().memory_size() + 24 * PAGE;
    let (mut fitted, mut refused) = (0, 0);
    for positions in (1024..shape.max_context).step_by(97) {
        let limits = WasmLimits {
            memory_bytes: cap,
            ..WasmLimits::default()
        };
        let mut wasm = AbiInstance::new(module(), limits).unwrap();
        assert_eq!(call!(wasm, set_context(1)), OK);
        assert_eq!(call!(wasm, load_chunked(&model, 4096)), OK);
        let status = call!(wasm, set_context(positions));
        if status != OK {
            // Documented (spec/abi.md): the old session was freed first, so no model is left.
            assert_eq!(status, code(ErrorCode::OutOfMemory), "{positions}");
            assert_eq!(active(&mut wasm), None, "{positions}");
            refused += 1;
            continue;
        }
        // The new session left the headroom (spec/abi.md, Memory): a small buffer is still to
        // be had, and the model generates.
        fitted += 1;
        assert_ne!(
            call!(wasm, alloc(1)),
            0,
            "{positions}: less than the headroom left"
        );
        assert!(generate(&mut wasm).is_ok(), "{positions}");
    }
    assert!(
        fitted > 0 && refused > 0,
        "{fitted} fitted, {refused} refused"
    );
}

#[test]
fn the_longest_prompt_under_the_memory_limit_gives_out_of_memory_never_a_trap() {
    // MAX_PROMPT_BYTES of prose with two-byte code points: its encoding (symbols, candidate
    // pairs, tokens) takes far more than the headroom a load leaves.
    let mut text = String::new();
    while text.len() + 24 <= runtime::limits::MAX_PROMPT_BYTES {
        text.push_str("Once upon a time, été. ");
    }
    while text.len() < runtime::limits::MAX_PROMPT_BYTES {
        text.push('a');
    }
    let len = text.len() as u32;
    // A SentencePiece and a ranked-merge vocabulary.
    for name in [PREVIOUS, "ranked-gqa1-tied-q8_0"] {
        let model = fixture(name);
        let mut refused = 0;
        let mut cap = instance().memory_size() + PAGE;
        loop {
            assert!(cap < 64 << 20, "{name}: the longest prompt never encoded");
            let limits = WasmLimits {
                memory_bytes: cap,
                ..WasmLimits::default()
            };
            cap += PAGE;
            let mut wasm = AbiInstance::new(module(), limits).unwrap();
            if call!(wasm, load_chunked(&model, 4096)) != OK {
                continue;
            }
            let generated = generate(&mut wasm);
            let prompt = call!(wasm, alloc(len));
            if prompt == 0 {
                continue;
            }
            wasm.write(prompt, text.as_bytes()).unwrap();
            let status = call!(wasm, start(prompt, len));
            call!(wasm, free(prompt, len));
            // The model generates as before (when it could before).
            if generated.is_ok() {
                assert_eq!(generate(&mut wasm), generated, "{name} cap {cap}");
            }
            if status == code(ErrorCode::OutOfMemory) {
                refused += 1;
                continue;
            }
            // Encoded: more tokens than the context holds, or a started generation.
            assert!(
                status == OK || status == code(ErrorCode::ContextExceeded),
                "{name} cap {cap}: {status}"
            );
            break;
        }
        assert!(refused > 0, "{name}: no cap refused the longest prompt");
    }
}

#[test]
fn staging_a_plan_under_the_memory_limit_gives_out_of_memory_never_a_trap() {
    use runtime::adapter::{Plan, PlanModule};
    let model = fixture("byte-mha-tied-q8_0");
    let base = file_digest(&model);
    const MODULE_BUFFER: u32 = 1 << 20;
    // What staging a plan of one module of `n` (zero) bytes returns, on an instance whose memory
    // the host's buffers have filled up to the headroom and then freed 256 KiB of; then the calls
    // after it must not trap.
    let stage = |n: u32| -> u32 {
        let limits = WasmLimits {
            memory_bytes: instance().memory_size() + (3 << 20),
            ..WasmLimits::default()
        };
        let mut wasm = AbiInstance::new(module(), limits).unwrap();
        assert_eq!(call!(wasm, load_chunked(&model, 4096)), OK);
        let plan_buffer = call!(wasm, alloc(8192));
        let module_buffer = call!(wasm, alloc(MODULE_BUFFER));
        assert!(plan_buffer != 0 && module_buffer != 0);
        let mut filled = Vec::new();
        loop {
            match call!(wasm, alloc(65536)) {
                0 => break,
                p => filled.push(p),
            }
        }
        for p in filled.iter().rev().take(4) {
            assert_eq!(call!(wasm, free(*p, 65536)), OK);
        }
        let plan = Plan::to_bytes(
            &base,
            &[PlanModule {
                digest: file_digest(&vec![0; n as usize]),
                bytes: u64::from(n),
                name: "m".into(),
            }],
        );
        wasm.write(plan_buffer, &plan).unwrap();
        let mut status = call!(wasm, plan_begin(plan_buffer, plan.len() as u32));
        if status == OK {
            status = call!(wasm, plan_module(module_buffer, n));
        }
        assert!(
            status == OK || status == code(ErrorCode::OutOfMemory),
            "{n}: {status}"
        );
        // Calls that need a little memory: none traps.
        call!(wasm, output_len(4));
        call!(wasm, alloc(1));
        call!(wasm, start(module_buffer, 4));
        call!(wasm, plan_apply());
        call!(wasm, output_len(4));
        status
    };
    // The largest module that stages, found by bisection; then every size around it in steps
    // of 64 bytes (a trap there used to follow a module that left less than the headroom).
    let (mut lo, mut hi) = (4096, MODULE_BUFFER);
    assert_eq!(stage(lo), OK);
    assert_eq!(stage(hi), code(ErrorCode::OutOfMemory));
    while hi - lo > 64 {
        let mid = lo + (hi - lo) / 2;
        if stage(mid) == OK {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    for n in (lo - 4096..hi + 4096).step_by(64) {
        stage(n);
    }
}

#[test]
fn applying_a_plan_under_the_memory_limit_gives_out_of_memory_never_a_trap() {
    use harness::adapter::fixtures::read_all;
    let fixtures = read_all(&harness::fixtures::corpus_dir()).unwrap();
    let mut refused = 0;
    for f in &fixtures {
        // Caps page by page until the plan applies; below that, staging or applying it is
        // refused with OutOfMemory and the model generates as before.
        let mut cap = instance().memory_size() + PAGE;
        loop {
            assert!(cap < 64 << 20, "{}: the plan never applied", f.recipe.name);
            let limits = WasmLimits {
                memory_bytes: cap,
                ..WasmLimits::default()
            };
            cap += PAGE;
            let mut wasm = AbiInstance::new(module(), limits).unwrap();
            if call!(wasm, load_chunked(&f.base, 4096)) != OK {
                continue;
            }
            let before = generate(&mut wasm);
            let mut status = OK;
            for (part, begin) in [(&f.plan, true), (&f.adapter, false)] {
                let buffer = call!(wasm, alloc(part.len() as u32));
                if buffer == 0 {
                    status = code(ErrorCode::OutOfMemory);
                    break;
                }
                wasm.write(buffer, part).unwrap();
                status = if begin {
                    call!(wasm, plan_begin(buffer, part.len() as u32))
                } else {
                    call!(wasm, plan_module(buffer, part.len() as u32))
                };
                call!(wasm, free(buffer, part.len() as u32));
                if status != OK {
                    break;
                }
            }
            if status == OK {
                status = call!(wasm, plan_apply());
            }
            if status == OK {
                // Applied, with the headroom left: the receipt and the diagnostics can be read
                // and a generation runs, or is refused cleanly.
                assert_ne!(call!(wasm, output_len(6)), u32::MAX, "{}", f.recipe.name);
                assert!(active(&mut wasm).is_some());
                if let Err(c) = generate(&mut wasm) {
                    assert_eq!(c, code(ErrorCode::OutOfMemory), "{}", f.recipe.name);
                }
                break;
            }
            assert_eq!(status, code(ErrorCode::OutOfMemory), "{}", f.recipe.name);
            refused += 1;
            // Nothing changed: the base model generates as before (when it could).
            if before.is_ok() {
                assert_eq!(generate(&mut wasm), before, "{} cap {cap}", f.recipe.name);
            }
        }
    }
    assert!(refused > 0, "no cap refused a plan");
}
