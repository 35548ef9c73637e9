//! Random ABI call sequences against the wasm module under wasmtime (spec/abi.md): every call
//! returns a known status, never traps, and afterwards the instance still loads a model and
//! generates.
#![no_main]

mod common;

use harness::engine::wasmtime::{AbiInstance, WasmLimits, WasmModule};
use libfuzzer_sys::fuzz_target;
use runtime::ErrorCode;
use std::sync::OnceLock;

fn module() -> &'static WasmModule {
    static MODULE: OnceLock<WasmModule> = OnceLock::new();
    MODULE.get_or_init(|| {
        WasmModule::compile(&harness::engine::wasmtime::wasm_bytes().unwrap()).unwrap()
    })
}

/// Reads the input as a stream of calls: an opcode byte, then its arguments.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        let (w, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_le_bytes(*w))
    }

    /// A pointer: into a live buffer (usually) or raw.
    fn ptr(&mut self, live: &[(u32, u32)]) -> Option<u32> {
        let sel = self.byte()?;
        let off = self.byte()? as u32;
        Some(match live.get(sel as usize % (live.len() + 1)) {
            Some(&(p, len)) if sel & 0x80 == 0 => p.wrapping_add(off % (len + 2)),
            _ => self.u32()?,
        })
    }
}

fn known(status: u32) {
    assert!(ErrorCode::from_u32(status).is_some(), "status {status}");
}

fuzz_target!(|data: &[u8]| {
    let limits = WasmLimits {
        // Small enough that allocations fail; fuel so a call cannot run for long.
        memory_bytes: 8 << 20,
        fuel_per_call: 2_000_000_000,
    };
    let mut wasm = AbiInstance::new(module(), limits).unwrap();
    let mut live: Vec<(u32, u32)> = Vec::new();
    let mut input = Input(data);
    let trap = |e: anyhow::Error| -> ! { panic!("trap: {e:#}") };
    for _ in 0..64 {
        let Some(op) = input.byte() else { break };
        let status = match op % 16 {
            0 => {
                let len = input.u32().unwrap_or(16) % (1 << 16);
                let p = wasm.alloc(len).unwrap_or_else(|e| trap(e));
                if p != 0 {
                    live.push((p, len));
                }
                0
            }
            1 => match input.byte() {
                Some(i) if !live.is_empty() => {
                    let (p, len) = live.swap_remove(i as usize % live.len());
                    wasm.free(p, len).unwrap_or_else(|e| trap(e))
                }
                _ => 0,
            },
            2 => {
                // A corpus model, maybe damaged, into a fresh buffer, loaded whole.
                let m = common::MODELS[input.byte().unwrap_or(0) as usize % 3];
                let mut bytes = m.to_vec();
                if let (Some(at), Some(x)) = (input.u32(), input.byte()) {
                    let at = at as usize % bytes.len();
                    bytes[at] ^= x;
                }
                let p = wasm.alloc(bytes.len() as u32).unwrap_or_else(|e| trap(e));
                if p == 0 {
                    0
                } else {
                    wasm.write(p, &bytes).unwrap();
                    let s = wasm.load(p, bytes.len() as u32).unwrap_or_else(|e| trap(e));
                    wasm.free(p, bytes.len() as u32).unwrap_or_else(|e| trap(e));
                    s
                }
            }
            3 => {
                let m = common::MODELS[input.byte().unwrap_or(0) as usize % 3];
                let chunk = 1 + input.u32().unwrap_or(4096) as usize % 8192;
                wasm.load_chunked(m, chunk).unwrap_or_else(|e| trap(e))
            }
            4 => {
                let n = input.u32().unwrap_or(0);
                wasm.load_begin(n).unwrap_or_else(|e| trap(e))
            }
            5 => {
                let p = input.ptr(&live).unwrap_or(0);
                let len = input.u32().unwrap_or(0) % (1 << 17);
                wasm.load_chunk(p, len).unwrap_or_else(|e| trap(e))
            }
            6 => wasm.load_finish().unwrap_or_else(|e| trap(e)),
            7 => wasm.load_abort().unwrap_or_else(|e| trap(e)),
            8 => wasm.unload().unwrap_or_else(|e| trap(e)),
            9 => {
                let n = input.u32().unwrap_or(0) % 300;
                wasm.set_context(n).unwrap_or_else(|e| trap(e))
            }
            10 => {
                let t = f32::from_bits(input.u32().unwrap_or(0));
                let k = input.u32().unwrap_or(u32::MAX);
                let p = f32::from_bits(input.u32().unwrap_or(0x3f80_0000));
                let n = input.u32().unwrap_or(8) % 64;
                wasm.set_sampling(t, k, p, 7, n).unwrap_or_else(|e| trap(e))
            }
            11 => {
                let p = input.ptr(&live).unwrap_or(0);
                let len = input.u32().unwrap_or(0) % 4096;
                wasm.start(p, len).unwrap_or_else(|e| trap(e))
            }
            12 => {
                let p = input.ptr(&live).unwrap_or(0);
                let n = 1 + input.byte().unwrap_or(0) % 16;
                let mut s = 0;
                for _ in 0..n {
                    s = wasm.step(p).unwrap_or_else(|e| trap(e));
                    if s != 0 {
                        break;
                    }
                }
                s
            }
            13 => wasm.cancel().unwrap_or_else(|e| trap(e)),
            14 => wasm.reset().unwrap_or_else(|e| trap(e)),
            _ => {
                let kind = input.byte().unwrap_or(0) as u32 % 7;
                let p = input.ptr(&live).unwrap_or(0);
                let cap = input.u32().unwrap_or(0) % (1 << 17);
                let n = wasm.output_len(kind).unwrap_or_else(|e| trap(e));
                assert!(n == u32::MAX || n < 1 << 20);
                wasm.output_copy(kind, p, cap).unwrap_or_else(|e| trap(e))
            }
        };
        known(status);
        known(wasm.last_error_code().unwrap_or_else(|e| trap(e)));
    }
    // The instance still works: free the host's buffers, load a small model, generate.
    for (p, len) in live {
        assert_eq!(wasm.free(p, len).unwrap_or_else(|e| trap(e)), 0);
    }
    assert_eq!(wasm.set_context(0).unwrap_or_else(|e| trap(e)), 0);
    let status = wasm
        .load_chunked(common::MODELS[0], 4096)
        .unwrap_or_else(|e| trap(e));
    assert_eq!(status, 0, "reload failed");
    assert_eq!(
        wasm.set_sampling(0.0, u32::MAX, 1.0, 1, 4)
            .unwrap_or_else(|e| trap(e)),
        0
    );
    let p = wasm.alloc_with(b"ab").unwrap_or_else(|e| trap(e));
    assert_eq!(wasm.start(p, 2).unwrap_or_else(|e| trap(e)), 0);
    let out = wasm.alloc(16).unwrap_or_else(|e| trap(e));
    assert_eq!(wasm.step(out).unwrap_or_else(|e| trap(e)), 0);
});
