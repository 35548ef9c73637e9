//! Arguments a command cannot run with are refused before any work, with exit code 2 (README,
//! Exit codes), never a panic, an empty run that passes, or a flag silently ignored.

use std::os::unix::fs::FileTypeExt;
use std::process::{Command, Output};

fn tinyrustlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyrustlm"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// The write end of a pipe whose reader is already closed: the first write to it fails.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

/// Runs `args` and requires exit code 2 with `needle` in stderr.
fn refused(args: &[&str], needle: &str) -> std::process::Output {
    let o = tinyrustlm(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    o
}

/// A fresh directory for one test's files: `name` and this process's id under the system's
/// temporary directory (the test removes it when it is done).
fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// [`refused`], and nothing printed on stdout.
fn refused_before_any_output(args: &[&str], needle: &str) {
    let o = refused(args, needle);
    assert!(
        o.stdout.is_empty(),
        "{args:?} printed {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn bench_counts_are_bounded() {
    let huge = u64::MAX.to_string();
    for what in ["sha256", "model", "browsers"] {
        refused(&["bench", what, "--runs", "0"], "--runs");
        refused(&["bench", what, "--runs", &huge], "--runs");
        refused(&["bench", what, "--runs", "1001"], "--runs");
    }
    refused(&["bench", "sha256", "--mib", "17592186044415"], "--mib");
    refused(&["bench", "sha256", "--mib", "0"], "--mib");
}

/// An unknown shape or dtype is refused before any work or output (the table's first line, the
/// load average, used to come first).
#[test]
fn bench_refuses_unknown_shapes_and_dtypes_before_any_output() {
    for what in ["model", "browsers"] {
        for (flag, value, needle) in [
            ("--shape", "stories99M", "unknown shape"),
            ("--dtype", "q5_0", "unknown dtype"),
        ] {
            refused_before_any_output(&["bench", what, flag, value], needle);
        }
    }
}

/// `bench model --wasm` refuses a module it cannot read, compile or call as the runtime before
/// any output.
#[test]
fn bench_model_refuses_a_wasm_module_it_cannot_use() {
    let dir = scratch_dir("trlm-bench-wasm");
    let missing = dir.join("missing.wasm");
    let not_wasm = dir.join("not.wasm");
    std::fs::write(&not_wasm, b"not a wasm module").unwrap();
    // A valid module with nothing in it: not the runtime's ABI.
    let empty = dir.join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x01\0\0\0").unwrap();
    for (path, needle) in [
        (&missing, "missing.wasm"),
        (&not_wasm, "compiling the wasm module"),
        (&empty, "not a module of the runtime"),
    ] {
        let path = path.to_str().unwrap();
        let args = ["bench", "model", "--shape", "stories15M", "--wasm", path];
        refused_before_any_output(&args, needle);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The built simd128 module with `patch` applied, written to `path` (a module of the runtime in
/// every way the patch leaves).
fn patched_module(path: &std::path::Path, patch: impl FnOnce(&mut Vec<u8>)) {
    let built = harness::engine::wasmtime::WasmVariant::Simd128.path();
    let mut bytes = std::fs::read(&built).unwrap();
    patch(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
}

/// The byte range of the body of the function the module exports as `name` (the module imports
/// no function, as the runtime's never does).
fn exported_body(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    use wasmparser::{ExternalKind, Parser, Payload};
    let (mut index, mut bodies) = (None, Vec::new());
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.unwrap() {
            Payload::ImportSection(_) => panic!("the runtime module imports nothing"),
            Payload::ExportSection(exports) => {
                for e in exports {
                    let e = e.unwrap();
                    if e.name == name && e.kind == ExternalKind::Func {
                        index = Some(e.index as usize);
                    }
                }
            }
            Payload::CodeSectionEntry(body) => bodies.push(body.range()),
            _ => {}
        }
    }
    bodies[index.unwrap_or_else(|| panic!("{name} is not exported"))].clone()
}

/// A module that exports the runtime's whole ABI but answers another ABI version is refused
/// before any output: the built module with `trlm_abi_version`'s constant raised by one.
#[test]
fn bench_model_refuses_a_module_of_another_abi_version() {
    let dir = scratch_dir("trlm-bench-abi");
    let other = dir.join("abi3.wasm");
    let version = harness::engine::ABI_VERSION;
    // A one-byte signed LEB128 for the version and the next one.
    assert!(version < 63, "the test patches a one-byte i32.const");
    patched_module(&other, |bytes| {
        let body = exported_body(bytes, "trlm_abi_version");
        // No locals, `i32.const version`, `end`.
        assert_eq!(bytes[body.clone()], [0x00, 0x41, version as u8, 0x0b]);
        bytes[body.start + 2] = version as u8 + 1;
    });
    let path = other.to_str().unwrap();
    let args = ["bench", "model", "--shape", "stories15M", "--wasm", path];
    let said = format!("ABI version {}, the harness speaks {version}", version + 1);
    refused_before_any_output(&args, &said);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A module of the runtime's ABI whose results differ from the built module's is refused before
/// it is timed: the built module with exp's coefficient 1/3! (an f64 constant of spec/math.md's
/// `exp_f64`, in every place it occurs) replaced by 1/8, which changes the logits.
#[test]
fn bench_model_refuses_a_module_whose_results_differ() {
    let dir = scratch_dir("trlm-bench-differ");
    let other = dir.join("exp.wasm");
    patched_module(&other, |bytes| {
        let (third, eighth) = (1.0f64 / 6.0, 0.125f64);
        assert_eq!(third.to_bits(), 0x3fc5_5555_5555_5555);
        let (from, to) = (third.to_le_bytes(), eighth.to_le_bytes());
        let mut found = 0;
        for at in 0..=bytes.len() - 8 {
            if bytes[at..at + 8] == from {
                bytes[at..at + 8].copy_from_slice(&to);
                found += 1;
            }
        }
        assert!(found > 0, "1/3! is not in the module");
    });
    let path = other.to_str().unwrap();
    let args = [
        "bench",
        "model",
        "--shape",
        "stories15M",
        "--dtype",
        "q4_0",
        "--engine",
        "wasmtime",
        "--runs",
        "1",
        "--wasm",
        path,
    ];
    let o = refused(&args, "differ from the built simd128 module's");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains("wasmtime-file"),
        "no figures of the module: {out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_model_refuses_an_empty_selection() {
    // stories42M in f32 is over the model budget: nothing is left to measure.
    refused(
        &[
            "bench",
            "model",
            "--shape",
            "stories42M",
            "--dtype",
            "f32",
            "--json",
        ],
        "no model within the budget selected",
    );
}

#[test]
fn browsers_refuses_names_that_select_nothing() {
    refused(
        &[
            "browsers",
            "--only",
            "node",
            "--no-isolate",
            "--models",
            "nosuch",
        ],
        "no model \"nosuch\"",
    );
    refused(
        &[
            "browsers",
            "--only",
            "node",
            "--no-isolate",
            "--modes",
            "1,bogus",
        ],
        "unknown mode \"bogus\"",
    );
    refused(
        &["browsers", "--only", "chromum", "--no-isolate"],
        "unknown engine \"chromum\"",
    );
    // --speed measures its own model in its own mode, and prints text only.
    for other in [["--json", ""], ["--models", "x"], ["--modes", "1"]] {
        let args: Vec<&str> = ["browsers", "--speed"]
            .into_iter()
            .chain(other.into_iter().filter(|a| !a.is_empty()))
            .collect();
        refused(&args, "cannot be used with");
    }
}

/// Output to a pipe its reader closed (`tinyrustlm check --json | head -c 100`) ends the
/// command quietly with 141, as SIGPIPE would (README), never a panic; it used to print
/// "Broken pipe" and exit 2, noise for `tinyrustlm run | head`.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    for args in [
        vec!["check", "--json", "--engine", "native"],
        vec!["check", "--engine", "native"],
        vec!["run", "--max-tokens", "8"],
    ] {
        // The pipe's reader is closed before the command starts.
        let o = Command::new(env!("CARGO_BIN_EXE_tinyrustlm"))
            .args(&args)
            .stdout(closed_pipe())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(141), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}");
    }
}

/// A closed stderr (`tinyrustlm verify BAD 2>&1 >/dev/null | true`) loses the message, not the
/// exit code: the process ends as it would have, never by an abort.
#[test]
fn a_closed_stderr_keeps_the_exit_code() {
    let bad = harness::fixtures::corpus_dir().join("malformed/reserved-223.slm");
    let good = harness::fixtures::corpus_dir().join("byte-mha-tied-f32.slm");
    for (args, code) in [
        (vec!["verify", bad.to_str().unwrap()], 1),
        (vec!["run", good.to_str().unwrap(), "--max-tokens", "4"], 0),
        (vec!["check", "--engine", "nonesuch"], 2),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_tinyrustlm"))
            .args(&args)
            .stderr(closed_pipe())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(code), "{args:?}");
    }
}

/// `bench browsers --engine native` measures native alone: no browser was asked for, so no
/// page figure is missing.
#[test]
fn bench_browsers_native_alone_passes() {
    let o = tinyrustlm(&[
        "bench",
        "browsers",
        "--engine",
        "native",
        "--shape",
        "stories15M",
        "--dtype",
        "q4_0",
        "--runs",
        "1",
        "--no-isolate",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("q4_0  native"), "{text}");
}

/// A converter refuses an output that is one of its inputs (another format: writing over it
/// would lose it) before reading anything, and leaves the file as it was.
#[test]
fn a_converter_refuses_to_write_over_its_input() {
    let dir = scratch_dir("trlm-convert-over");
    let input = dir.join("in.gguf");
    let tokenizer = dir.join("tok.bin");
    std::fs::write(&input, b"not read").unwrap();
    std::fs::write(&tokenizer, b"not read either").unwrap();
    let (i, t) = (input.to_str().unwrap(), tokenizer.to_str().unwrap());
    // The same file under another spelling too.
    let dotted = format!("{}/./in.gguf", dir.display());
    refused(
        &["convert", "gguf", "--model", i, "-o", i],
        "refusing to write over it",
    );
    refused(
        &["convert", "gguf", "--model", i, "-o", &dotted],
        "refusing to write over it",
    );
    let llama2c = ["convert", "llama2c", "--model", i, "--tokenizer", t, "-o"];
    refused(&[&llama2c[..], &[t]].concat(), "refusing to write over it");
    refused(&[&llama2c[..], &[i]].concat(), "refusing to write over it");
    assert_eq!(std::fs::read(&input).unwrap(), b"not read");
    assert_eq!(std::fs::read(&tokenizer).unwrap(), b"not read either");
    // Nothing else was left in the folder (no temporary file).
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A converter's output path: a symbolic link is written through (the file it names is
/// replaced, the link stays a link), a link to nothing, a directory and a FIFO are refused
/// before anything replaces them, and a name as long as a file name may be works (the
/// temporary file beside it has a short name of its own).
#[test]
fn a_converters_output_path_is_written_through_links_and_never_replaces_a_non_file() {
    let dir = scratch_dir("trlm-convert-out");
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../corpus/byte-mha-tied-f32.slm"
    );
    let expected = std::fs::read(model).unwrap();
    fn args<'a>(model: &'a str, out: &'a std::path::Path) -> [&'a str; 6] {
        [
            "convert",
            "slm",
            "--model",
            model,
            "-o",
            out.to_str().unwrap(),
        ]
    }
    let convert = |out: &std::path::Path| tinyrustlm(&args(model, out));
    let refused_output = |out: &std::path::Path, needle: &str| refused(&args(model, out), needle);

    let real = dir.join("real.slm");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.join("link.slm");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let o = convert(&link);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&real).unwrap(), expected);

    let dangling = dir.join("dangling.slm");
    std::os::unix::fs::symlink(dir.join("nothing-here"), &dangling).unwrap();
    refused_output(&dangling, "a symbolic link to nothing");
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());

    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    refused_output(&sub, "is not a regular file");
    assert!(sub.is_dir());
    let fifo = dir.join("fifo");
    if Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        refused_output(&fifo, "is not a regular file");
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
    }

    let long = dir.join(format!("{}.slm", "n".repeat(251)));
    let o = convert(&long);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read(&long).unwrap(), expected);
    // No temporary file left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `fixtures --check` names a damaged fixture file (exit 2) instead of failing to load it while
/// building what depends on it; an intact copy passes.
#[test]
fn fixtures_check_names_a_damaged_fixture() {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("trlm-fixtures-check-{}", std::process::id()));
    copy(&harness::fixtures::corpus_dir(), &dir);
    let d = dir.to_str().unwrap();
    let o = tinyrustlm(&["fixtures", "--check", "--dir", d]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let file = dir.join("byte-mha-tied-q4_0.slm");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    refused(
        &["fixtures", "--check", "--dir", d],
        "fixtures differ from their recipes: byte-mha-tied-q4_0",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `check` and `run` refuse their arguments before reading the model: a bad `--max-tokens`,
/// top-k or engine name exits 2 even with a file they would reject (exit 1) once read.
#[test]
fn check_refuses_arguments_before_reading_the_model() {
    let dir = scratch_dir("trlm-check-args");
    let big = dir.join("big.slm");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(runtime::limits::MAX_MODEL_BYTES + 1)
        .unwrap();
    let b = big.to_str().unwrap();
    refused(&["check", b, "--max-tokens", "0"], "--max-tokens");
    refused(&["check", b, "--engine", "nosuch"], "nosuch");
    refused(&["run", b, "--max-tokens", "0"], "max_new_tokens");
    refused(&["run", b, "--top-k", "100000"], "top_k");
    let o = tinyrustlm(&["check", b, "--engine", "native"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `check` on one engine says nothing was compared instead of claiming bit-identical streams.
#[test]
fn check_on_one_engine_says_nothing_was_compared() {
    let o = tinyrustlm(&["check", "--engine", "native"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("nothing was compared"), "{out}");
    assert!(!out.contains("bit-identical"), "{out}");
}

/// A negative value after a space reaches the sampler, which names the rule it breaks (clap
/// used to take `-1` for an unknown flag).
#[test]
fn negative_settings_reach_the_sampler() {
    refused(
        &["run", "--temperature", "-1"],
        "error 27 InvalidSettings: temperature",
    );
    refused(
        &["run", "--top-p", "-0.5"],
        "error 27 InvalidSettings: top_p",
    );
}
