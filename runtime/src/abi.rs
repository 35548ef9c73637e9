//! The raw WebAssembly ABI (spec/abi.md): the `trlm_*` functions a host calls on the module built
//! from this crate as a cdylib for wasm32-unknown-unknown. The module imports nothing.
//!
//! Every argument is a plain integer or float. Memory is exchanged only through host buffers
//! (`trlm_alloc`), which the runtime owns and resolves each (pointer, length) against, so no
//! argument can make the module touch memory outside them. The logic lives in safe Rust
//! ([`state::AbiState`]); this file only exports it. Its one kind of unsafe is `#[no_mangle]`.

pub mod buffers;
pub mod diagnostics_json;
pub mod headroom;
pub mod loader;
pub mod plan_stage;
pub mod state;

use crate::error::{ErrorCode, Result};
use crate::generate::sampler::SamplerSettings;
use core::cell::RefCell;
use state::{AbiState, TOP_K_OFF};

/// The ABI's version: bumped when a function, a record layout or a meaning changes.
pub const ABI_VERSION: u32 = 2;

std::thread_local! {
    /// The module's one state (wasm32-unknown-unknown runs one thread).
    static STATE: RefCell<AbiState> = const { RefCell::new(AbiState::new()) };
}

/// Runs a call on the state. A re-entrant call (impossible: the module calls no host function)
/// would get `InvalidState` rather than a panic.
fn with_state<T>(busy: T, f: impl FnOnce(&mut AbiState) -> T) -> T {
    STATE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut state) => f(&mut state),
        Err(_) => busy,
    })
}

const BUSY: u32 = ErrorCode::InvalidState as u32;

/// An operation: its status becomes the last error (Ok clears it).
fn operation(f: impl FnOnce(&mut AbiState) -> Result<()>) -> u32 {
    with_state(BUSY, |s| {
        let r = f(s);
        s.record(r)
    })
}

/// A host-memory call or query returning a status: a failure becomes the last error, success
/// leaves it as it was (so the host can allocate a buffer to read the last error into).
fn quiet(f: impl FnOnce(&mut AbiState) -> Result<()>) -> u32 {
    with_state(BUSY, |s| match f(s) {
        Ok(()) => ErrorCode::Ok as u32,
        Err(e) => s.record_failure(e),
    })
}

/// As [`quiet`] for a call returning a value; failure returns `failed`.
fn query(failed: u32, f: impl FnOnce(&mut AbiState) -> Result<u32>) -> u32 {
    with_state(failed, |s| match f(s) {
        Ok(v) => v,
        Err(e) => {
            s.record_failure(e);
            failed
        }
    })
}

/// Returns [`ABI_VERSION`].
// SAFETY (each `#[no_mangle]` below): the symbol is exported under its plain name; every name
// starts with `trlm_`, which nothing else in the crate, core, alloc or std defines, so no two
// symbols clash. The functions take and return only integers and floats.
#[no_mangle]
pub extern "C" fn trlm_abi_version() -> u32 {
    ABI_VERSION
}

/// The code of the last failure (0 after an operation succeeded, or before any failure).
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_last_error_code() -> u32 {
    with_state(BUSY, |s| s.last_error_code())
}

/// A new zeroed host buffer of `len` bytes: its address, or 0 on failure.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_alloc(len: u32) -> u32 {
    query(0, |s| s.alloc(len))
}

/// Frees the host buffer at `ptr` allocated with `len` bytes.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_free(ptr: u32, len: u32) -> u32 {
    quiet(|s| s.free(ptr, len))
}

/// Loads the model held in `[ptr, ptr + len)` (copied).
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_load(ptr: u32, len: u32) -> u32 {
    operation(|s| s.load(ptr, len))
}

/// Starts a chunked load of a `total_len`-byte file.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_load_begin(total_len: u32) -> u32 {
    operation(|s| s.load_begin(total_len))
}

/// Appends `[ptr, ptr + len)` to the chunked load.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_load_chunk(ptr: u32, len: u32) -> u32 {
    operation(|s| s.load_chunk(ptr, len))
}

/// Verifies the chunked load and activates its model.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_load_finish() -> u32 {
    operation(|s| s.load_finish())
}

/// Abandons the chunked load in progress.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_load_abort() -> u32 {
    operation(|s| s.load_abort())
}

/// Unloads the active model (if any).
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_unload() -> u32 {
    operation(|s| s.unload())
}

/// Sets the KV cache positions (0 = the model's max_context); re-creates a loaded model's session.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_set_context(positions: u32) -> u32 {
    operation(|s| s.set_context(positions))
}

/// Sets the sampling settings of later generations; `top_k` 0xFFFFFFFF = no top-k.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_set_sampling(
    temperature: f32,
    top_k: u32,
    top_p: f32,
    seed: u64,
    max_new_tokens: u32,
) -> u32 {
    let settings = SamplerSettings {
        temperature,
        top_k: (top_k != TOP_K_OFF).then_some(top_k),
        top_p,
        seed,
        max_new_tokens,
    };
    operation(|s| s.set_sampling(settings))
}

/// 1 = later generations digest their logits (the default), 0 = they skip the digest.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_set_logits_digest(on: u32) -> u32 {
    operation(|s| s.set_logits_digest(on))
}

/// Starts a generation from the prompt text in `[ptr, ptr + len)`.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_start(ptr: u32, len: u32) -> u32 {
    operation(|s| s.start(ptr, len))
}

/// Runs one step; writes the 16-byte step record at `out_ptr`.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_step(out_ptr: u32) -> u32 {
    operation(|s| s.step(out_ptr))
}

/// Ends the running generation (cancelled).
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_cancel() -> u32 {
    operation(|s| s.cancel())
}

/// Forgets the current generation.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_reset() -> u32 {
    operation(|s| s.reset())
}

/// Bytes of output `kind`, or 0xFFFFFFFF on failure.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_output_len(kind: u32) -> u32 {
    query(u32::MAX, |s| s.output_len(kind))
}

/// Copies output `kind` to the start of `[ptr, ptr + cap)`.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_output_copy(kind: u32, ptr: u32, cap: u32) -> u32 {
    quiet(|s| s.output_copy(kind, ptr, cap))
}

/// Reads the adapter in `[ptr, ptr + len)` by every rule of spec/adapters.md (nothing applied).
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_adapter_validate(ptr: u32, len: u32) -> u32 {
    operation(|s| s.adapter_validate(ptr, len))
}

/// Reads the plan text in `[ptr, ptr + len)`; with a model loaded, also checks its base.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_plan_validate(ptr: u32, len: u32) -> u32 {
    operation(|s| s.plan_validate(ptr, len))
}

/// Stages the plan in `[ptr, ptr + len)` (copied) for the loaded model.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_plan_begin(ptr: u32, len: u32) -> u32 {
    operation(|s| s.plan_begin(ptr, len))
}

/// Adds the staged plan's next module, `[ptr, ptr + len)` (copied).
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_plan_module(ptr: u32, len: u32) -> u32 {
    operation(|s| s.plan_module(ptr, len))
}

/// Checks and assembles the staged plan without applying it (the stage stays).
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_plan_check() -> u32 {
    operation(|s| s.plan_check())
}

/// Applies the staged plan (all or nothing) and ends the stage; the receipt is output kind 6.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_plan_apply() -> u32 {
    operation(|s| s.plan_apply())
}

/// Abandons the staged plan.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_plan_abort() -> u32 {
    operation(|s| s.plan_abort())
}

/// Removes every adapter from the loaded model.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_remove_adapters() -> u32 {
    operation(|s| s.remove_adapters())
}

/// Requires a plan before generation: `[ptr, ptr + len)` holds the plan digest (32 bytes),
/// optionally followed by the receipt digest (64 bytes in all); length 0 lifts the requirement.
// SAFETY: see trlm_abi_version.
#[no_mangle]
pub extern "C" fn trlm_require_plan(ptr: u32, len: u32) -> u32 {
    operation(|s| s.require_plan(ptr, len))
}

/// Test builds only (feature `kernel-selftest`, simd128 module): the hand-written simd128
/// kernels against the portable ones on `cases` random cases drawn from `seed`; 0 when all
/// agree, else 1 + the first failing case (`runtime::model::simd128::selftest::run`).
// SAFETY: see trlm_abi_version.
#[cfg(all(feature = "kernel-selftest", target_feature = "simd128"))]
#[no_mangle]
pub extern "C" fn trlm_kernel_selftest(seed: u32, cases: u32) -> u32 {
    crate::model::simd128::selftest::run(seed, cases)
}
