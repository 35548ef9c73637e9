//! Memory discipline, counted by a global allocator in this test binary: a generation step
//! allocates nothing (f32 and q4_0 weights, greedy and sampling, 100+ steps), neither does a
//! batched prefill of a prompt over several batches, and `Session::new` sizes the KV cache (and
//! the prefill batch) from the model's max_context or the smaller context asked for.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{greedy, load, sampled};
use harness::fixtures::{build, corpus_dir, load_recipes};
use runtime::format::{self, Config};
use runtime::generate::sampler::SamplerSettings;
use runtime::generate::{Session, Step};
use runtime::limits::PREFILL_BATCH;
use runtime::model::{prefill, State};
use runtime::ErrorCode;

/// Counts allocations (and reallocations) per thread, so parallel tests do not disturb each
/// other; deallocations are free.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn note(bytes: usize) {
    // try_with: the thread's counters may already be gone while it exits.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    let _ = BYTES.try_with(|c| c.set(c.get() + bytes as u64));
}

// SAFETY: every call forwards to the system allocator with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (allocations, bytes) made by this thread so far.
fn counted() -> (u64, u64) {
    (ALLOCATIONS.with(Cell::get), BYTES.with(Cell::get))
}

/// A fixture rebuilt from its recipe with no stop tokens and room for 160 positions, so a
/// generation runs as many steps as asked.
fn open_fixture(name: &str) -> Vec<u8> {
    let recipes = load_recipes(&corpus_dir()).unwrap();
    let recipe = recipes.fixtures.iter().find(|r| r.name == name).unwrap();
    let mut file = build(recipe).unwrap();
    file.vocab.stop.clear();
    file.config.max_context = 160;
    format::write(&file).unwrap()
}

const STEPS: u32 = 120;

fn assert_steps_allocate_nothing(name: &str, settings: SamplerSettings) {
    let mut s = Session::new(load(&open_fixture(name)), 0).unwrap();
    s.start(b"Once upon a time", settings).unwrap();
    let mut tokens = 0;
    loop {
        let before = counted();
        let step = s.step().unwrap();
        let after = counted();
        assert_eq!(
            before.0,
            after.0,
            "{name}: step {tokens} allocated {} bytes",
            after.1 - before.1
        );
        match step {
            Step::Token { .. } => tokens += 1,
            Step::Finished(_) => break,
        }
    }
    assert_eq!(tokens, STEPS, "{name}");
}

#[test]
fn steps_allocate_nothing() {
    for name in [
        "spm-gqa-untied-f32",
        "spm-gqa-untied-q4_0",
        "byte-mha-tied-q8_0",
    ] {
        assert_steps_allocate_nothing(name, greedy(STEPS));
        assert_steps_allocate_nothing(name, sampled(17, STEPS));
    }
}

#[test]
fn prefill_allocates_nothing() {
    for name in [
        "spm-gqa-untied-f32",
        "spm-gqa-untied-f16",
        "spm-gqa-untied-q4_0",
        "byte-mha-tied-q8_0",
    ] {
        let model = load(&open_fixture(name));
        let mut state = State::new(&model, 0).unwrap();
        let tokens: Vec<u32> = (0..150).map(|i| (i * 7 + 3) % 250).collect();
        let before = counted();
        prefill(&model, &mut state, &tokens[..70], 0).unwrap();
        prefill(&model, &mut state, &tokens[70..], 70).unwrap();
        let after = counted();
        assert_eq!(
            before.0,
            after.0,
            "{name}: prefill allocated {} bytes",
            after.1 - before.1
        );
    }
}

#[test]
fn the_counter_sees_allocations() {
    let before = counted();
    let v: Vec<u64> = std::hint::black_box(vec![1, 2, 3]);
    assert_eq!(counted().0, before.0 + 1);
    drop(v);
}

/// Bytes `Session::new` allocates, and the session.
fn new_session(bytes: &[u8], context: u32) -> (u64, runtime::Result<Session>) {
    let model = load(bytes);
    let before = counted();
    let s = Session::new(model, context);
    (counted().1 - before.1, s)
}

#[test]
fn kv_cache_is_sized_by_the_context() {
    let bytes = open_fixture("spm-gqa-untied-f32");
    let c: Config = load(&bytes).config;
    assert_eq!(c.max_context, 160);
    let kv_per_position = 2 * 4 * (c.n_layers * c.kv_dim()) as u64;

    let (full_bytes, full) = new_session(&bytes, 0);
    let full = full.unwrap();
    let (small_bytes, small) = new_session(&bytes, 32);
    let small = small.unwrap();
    let (fd, sd) = (full.diagnostics(), small.diagnostics());
    assert_eq!((fd.context, sd.context), (160, 32));
    // The runtime's own account: K and V for every position, plus one attention score each
    // (the prefill batch holds PREFILL_BATCH tokens in both).
    assert!(sd.context >= PREFILL_BATCH);
    assert_eq!(
        (fd.scratch_bytes - sd.scratch_bytes) as u64,
        128 * (kv_per_position + 4)
    );
    // What was really allocated covers that account, and shrinks with the context as much.
    assert!(full_bytes >= fd.scratch_bytes as u64);
    assert!(small_bytes >= sd.scratch_bytes as u64);
    assert!(full_bytes - small_bytes >= 128 * kv_per_position);
    println!(
        "Session::new allocated {full_bytes} bytes for 160 positions, {small_bytes} for 32 \
         (scratch and KV cache {} and {})",
        fd.scratch_bytes, sd.scratch_bytes
    );

    let (_, exact) = new_session(&bytes, 160);
    assert_eq!(exact.unwrap().diagnostics().context, 160);
    let (_, over) = new_session(&bytes, 161);
    assert_eq!(over.err().map(|e| e.code), Some(ErrorCode::ContextExceeded));
}
