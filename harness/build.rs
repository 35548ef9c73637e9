//! Builds the runtime's two WebAssembly modules (spec/abi.md, Module; spec/determinism.md, SIMD
//! paths) so that `cargo build` and `cargo test` of the harness need no manual step: a nested
//! `cargo rustc -p tinyrustlm-runtime --lib --release --target wasm32-unknown-unknown
//! --features abi --crate-type cdylib` per module into its own target directory (sharing the
//! outer build's directory would deadlock on its lock):
//! - the scalar module (`<target>/wasm`), path exported as `TRLM_WASM_PATH`;
//! - the simd128 module (`<target>/wasm-simd128`, built with `-C target-feature=+simd128`),
//!   path exported as `TRLM_WASM_SIMD_PATH`.
//!
//! Both are linked with a 64 KiB stack ([`STACK_FLAG`]). A machine without the wasm32 target
//! gets it from rustup.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

/// The modules' stack (spec/abi.md, Module): 64 KiB instead of the toolchain's 1 MiB, which the
/// page's memory would hold for nothing. The deepest use measured (the lowest written byte of
/// the stack region after a 128-token prefill) is about 21 KiB (21,072 bytes for the stories15M
/// shape), 20 KiB of it the simd128 prefill kernels' prepared activation blocks and block sums.
/// The stack lies first in memory, so an overflow traps instead of overwriting data.
const STACK_FLAG: &str = "-Clink-arg=-zstack-size=65536";

/// Variables through which the outer build's settings (host rustflags, coverage
/// instrumentation, clippy's wrapper, its target directory) would leak into the nested build.
const CLEARED_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "LLVM_PROFILE_FILE",
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("the harness lies inside the workspace")
        .to_path_buf();
    let runtime = workspace.join("runtime");
    for path in [
        runtime.join("src"),
        runtime.join("Cargo.toml"),
        workspace.join("Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_root = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    ensure_wasm_target(&rustc);

    let scalar = build_module(&workspace, &target_root.join("wasm"), &[]);
    println!("cargo:rustc-env=TRLM_WASM_PATH={}", scalar.display());
    let simd = build_module(
        &workspace,
        &target_root.join("wasm-simd128"),
        &["-Ctarget-feature=+simd128"],
    );
    println!("cargo:rustc-env=TRLM_WASM_SIMD_PATH={}", simd.display());
}

/// Builds the module into `target_dir` with [`STACK_FLAG`] and `rustflags` and returns its path.
fn build_module(workspace: &Path, target_dir: &Path, rustflags: &[&str]) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["rustc", "-p", "tinyrustlm-runtime", "--lib", "--release"])
        .args([
            "--target",
            TARGET,
            "--features",
            "abi",
            "--crate-type",
            "cdylib",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        // The module's size matters to browsers; symbol names are not needed to run it.
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    for var in CLEARED_VARS {
        cmd.env_remove(var);
    }
    let mut flags = vec![STACK_FLAG];
    flags.extend_from_slice(rustflags);
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the wasm module: {e}"));
    if !status.success() {
        panic!("building the wasm module failed ({status}); see the output above");
    }
    let wasm = target_dir
        .join(TARGET)
        .join("release")
        .join("tinyrustlm_runtime.wasm");
    if !wasm.is_file() {
        panic!("the wasm build succeeded but {} is missing", wasm.display());
    }
    wasm
}

/// Installs the wasm32 standard library into the toolchain that runs this build if it lacks it.
fn ensure_wasm_target(rustc: &OsString) {
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run rustc --print sysroot: {e}"));
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if has_target(&sysroot) {
        return;
    }
    // The sysroot of a rustup toolchain is named after it (e.g. stable-x86_64-unknown-linux-gnu).
    let toolchain = sysroot
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!(
        "cargo:warning=the {TARGET} target is missing from toolchain {toolchain}; \
         running `rustup target add {TARGET} --toolchain {toolchain}`"
    );
    let status = Command::new("rustup")
        .args(["target", "add", TARGET, "--toolchain", &toolchain])
        .status()
        .unwrap_or_else(|e| {
            panic!("the {TARGET} target is missing and rustup cannot be run ({e}); install it")
        });
    if !status.success() || !has_target(&sysroot) {
        panic!("`rustup target add {TARGET}` failed ({status}); install the target by hand");
    }
}

fn has_target(sysroot: &Path) -> bool {
    sysroot
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib")
        .is_dir()
}
