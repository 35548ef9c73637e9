//! The hand-written wasm simd128 kernels (runtime/src/model/simd128.rs) against the portable
//! kernels, inside a simd128 module under wasmtime: native tests cannot run wasm32 code, so the
//! comparison (runtime/src/model/simd128/selftest.rs) is compiled into a test-only build of the
//! module (feature `kernel-selftest`, which adds the one export `trlm_kernel_selftest`) and
//! called from here.
//!
//! The test builds that module itself, into `<target>/wasm-selftest` (harness/build.rs's two
//! modules stay unchanged, so other builds pay nothing for it), with the flags harness/build.rs
//! uses for the simd128 module.

use std::path::{Path, PathBuf};
use std::process::Command;
use wasmtime::{Engine, Instance, Module, Store};

/// Builds the simd128 module with the `kernel-selftest` feature and returns its path.
fn build_selftest_module() -> PathBuf {
    // <target>/wasm-simd128/wasm32-unknown-unknown/release/tinyrustlm_runtime.wasm
    let simd = Path::new(env!("TRLM_WASM_SIMD_PATH"));
    let target_root = simd
        .ancestors()
        .nth(4)
        .expect("the simd128 module lies in <target>");
    let target_dir = target_root.join("wasm-selftest");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cmd.current_dir(&workspace)
        .args(["rustc", "-p", "tinyrustlm-runtime", "--lib", "--release"])
        .args(["--target", "wasm32-unknown-unknown"])
        .args(["--features", "kernel-selftest", "--crate-type", "cdylib"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+simd128");
    for var in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo to build the selftest module");
    assert!(status.success(), "building the selftest module failed");
    target_dir.join("wasm32-unknown-unknown/release/tinyrustlm_runtime.wasm")
}

#[test]
fn simd128_kernels_equal_the_portable_kernels() {
    let path = build_selftest_module();
    let engine = Engine::default();
    let module = Module::from_file(&engine, &path).expect("compiling the selftest module");
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).expect("instantiating");
    let selftest = instance
        .get_typed_func::<(u32, u32), u32>(&mut store, "trlm_kernel_selftest")
        .expect("the selftest export");
    for seed in [0, 1, 0xdead_beef, 20_260_101] {
        let failed = selftest
            .call(&mut store, (seed, 20_000))
            .expect("the selftest trapped");
        assert_eq!(
            failed,
            0,
            "seed {seed}: {}",
            match failed {
                1 => "the simd128 f16 widening differs from quant::f16_to_f32, a SHA-256 lane from sha256, the simd128 exp from exp_f32 or its greedy pick from the portable one".to_string(),
                n => format!("case {} differs from the portable kernels", n - 1),
            }
        );
    }
}
