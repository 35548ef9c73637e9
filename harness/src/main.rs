use anyhow::{bail, Context, Result};
use clap::builder::RangedU64ValueParser;
use clap::{Parser, Subcommand};
use harness::gguf::convert::DTypeChoice;
use harness::{fixtures, inspect, malformed};
use std::path::PathBuf;
use std::process::ExitCode;

/// TinyRustLM: verify, inspect, convert and run .slm models.
#[derive(Parser)]
#[command(name = "tinyrustlm", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a .slm file completely (structure, shapes, tokenizer, every SHA-256).
    /// Exit 0 when valid; otherwise print the error code, name, byte offset and message.
    Verify { file: PathBuf },
    /// The conformance run: verify, load in every available engine, run the standard prompt
    /// set, compare token streams and logits digests bit for bit, check the budget.
    Check {
        /// The model (default: the built-in fixture).
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Engines to compare, comma-separated (default: every available one).
        #[arg(long, value_delimiter = ',')]
        engine: Vec<String>,
        /// New tokens per case.
        #[arg(long, default_value_t = 24)]
        max_tokens: u32,
        /// A module plan to apply in every engine first (modules are read beside it by name);
        /// the receipts are compared and printed.
        #[arg(long)]
        plan: Option<PathBuf>,
    },
    /// Show a verified file: header, metadata, tokenizer, tensors, budget headroom.
    Inspect {
        /// The model (default: the built-in fixture).
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Convert a third-party checkpoint into .slm.
    Convert {
        #[command(subcommand)]
        from: ConvertFrom,
    },
    /// Generate text: prints exactly what llama2.c's run.c prints for the same model, prompt and
    /// greedy settings (prompt pieces, then generated pieces); statistics go to stderr.
    Run {
        /// The model (default: the built-in fixture).
        file: Option<PathBuf>,
        #[arg(long, default_value = "")]
        prompt: String,
        /// New tokens to generate (llama2.c's -n counts the prompt too: -n N with a prompt of
        /// P tokens generates N - P + 1).
        #[arg(long, default_value_t = 256)]
        max_tokens: u32,
        /// 0 = greedy (a negative value is passed on, for the sampler to refuse).
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
        temperature: f32,
        /// Sample from the K most likely tokens only (default: all).
        #[arg(long)]
        top_k: Option<u32>,
        /// Nucleus sampling: the most likely tokens up to the first whose cumulative probability
        /// exceeds P.
        #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
        top_p: f32,
        /// The sampler's seed (1..=2^64-1).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// KV cache positions (0 = the model's max context).
        #[arg(long, default_value_t = 0)]
        context: u32,
        /// A module plan to apply first (modules are read beside it by name); the receipt goes
        /// to stderr.
        #[arg(long)]
        plan: Option<PathBuf>,
    },
    /// Print the token ids of a text, space-separated.
    Tokenize {
        /// A .slm model, or a llama GGUF (vocabulary-only files too).
        file: PathBuf,
        #[arg(long)]
        text: String,
        /// Do not prepend BOS even if the tokenizer asks for it.
        #[arg(long)]
        no_bos: bool,
    },
    /// Measure throughput (medians with spread, against a baseline in the same run).
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Serve the browser smoke page (browser-smoke/), the wasm module and the corpus on
    /// 127.0.0.1; reports the page POSTs are printed as JSON lines.
    Serve {
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// The static root.
        #[arg(long, default_value_os_t = harness::smoke::smoke_dir())]
        root: PathBuf,
        /// Only 127.0.0.1 is accepted.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// The corpus served under /corpus/.
        #[arg(long, default_value_os_t = fixtures::corpus_dir())]
        corpus: PathBuf,
    },
    /// Run the smoke page headless in every installed browser (and the Node engine) and compare
    /// token ids, logits digests and error codes with the native engine. Exit 1 on any
    /// divergence or missing report.
    Browsers {
        #[arg(long)]
        json: bool,
        /// Engines, comma-separated: chromium, firefox, node (default: all installed).
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
        /// Registry models, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Save a PNG of the page after a generation in each browser into this directory.
        #[arg(long)]
        screenshot: Option<PathBuf>,
        /// Seconds to wait for one browser's report.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Smoke modes, comma-separated (1, malformed, missing, overlong, steps, race).
        #[arg(long, default_value = harness::browsers::ALL_MODES)]
        modes: String,
        /// The corpus served under /corpus/.
        #[arg(long, default_value_os_t = fixtures::corpus_dir())]
        corpus: PathBuf,
        /// A model file (NAME.slm, from outside the repository) added to the page's registry
        /// for this run only and compared with native like the corpus models. Repeatable.
        #[arg(long)]
        extra_model: Vec<PathBuf>,
        /// Run without the loopback-only network namespace (by default the runner re-executes
        /// itself under `unshare --net` when it can).
        #[arg(long)]
        no_isolate: bool,
        /// Instead of the registry: the page's tok/s on a seeded stories15M-shape q8_0 model
        /// next to the native engine's for the same case, as a ratio (its own model and mode:
        /// not with --models, --modes or --json; `bench browsers` has the full figures).
        #[arg(long, conflicts_with_all = ["models", "modes", "json"])]
        speed: bool,
        /// Set by the runner on itself inside its network namespace.
        #[arg(long, hide = true)]
        isolated_network: bool,
    },
    /// Make, inspect and apply adapters (spec/adapters.md).
    Adapter {
        #[command(subcommand)]
        what: AdapterWhat,
    },
    /// Regenerate the corpus fixtures from corpus/recipes.json, the malformed-file matrix in
    /// corpus/malformed/ and the adapter fixtures of corpus/adapters.json (or, with --check, require the committed files to be byte-identical to
    /// a fresh build).
    Fixtures {
        #[arg(long)]
        check: bool,
        /// The corpus directory.
        #[arg(long, default_value_os_t = fixtures::corpus_dir())]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum AdapterWhat {
    /// The task delta between two checkpoints of one layout, as an adapter bound to BASE.
    Diff {
        base: PathBuf,
        tuned: PathBuf,
        /// adp1 (dense), asp1 (sparse) or alr1 (low-rank).
        #[arg(long)]
        kind: String,
        /// The ALR1 rank cap.
        #[arg(long, default_value_t = 4)]
        rank: u32,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Verify an adapter and show its header and records.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Write a visible example into DIR: an ASP1 adapter for BASE (the stories260K conversion)
    /// that exchanges the embedding/classifier rows of the pieces spelling "Lily" and "Tim", and
    /// a plan naming it (README, A visible adapter).
    Example {
        base: PathBuf,
        /// The directory to write the adapter and the plan into (created if absent).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Apply a module plan to a base model and write the receipt. Modules are read from the
    /// plan's directory by their names.
    Apply {
        base: PathBuf,
        plan: PathBuf,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}

/// A converter's or `tokenize`'s input file, read only up to
/// [`harness::limits::MAX_CONVERT_INPUT_BYTES`]: a longer one is refused unread.
fn read_input(path: &std::path::Path) -> Result<Vec<u8>> {
    let limit = harness::limits::MAX_CONVERT_INPUT_BYTES;
    let bytes = harness::read_at_most(path, limit + 1)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > limit {
        bail!(
            "{}: the file has more than {limit} bytes, the most a converter reads",
            path.display()
        );
    }
    Ok(bytes)
}

/// A model file as [`read_model`] reads it (at most the budget + 1 byte).
fn read_slm(path: &std::path::Path) -> Result<Vec<u8>> {
    read_model(&Some(path.to_path_buf()))
}

/// The base a plan must name for the model `bytes` (read from `file`, the built-in model when
/// None): its file digest, once the model has passed verification — a model the runtime
/// rejects is reported as such (exit 1) before anything about a plan.
fn plan_base(bytes: &[u8], file: &Option<PathBuf>) -> Result<[u8; 32]> {
    match inspect::verify(bytes) {
        Ok(slm) => Ok(slm.digest()),
        Err(error) => Err(harness::Rejected {
            path: file
                .clone()
                .unwrap_or_else(|| PathBuf::from("(built-in model)")),
            error,
        }
        .into()),
    }
}

/// An adapter file's bytes, read only up to its budget plus one byte: a longer file is
/// rejected there (BudgetExceeded at byte 0, with its true length), never read whole.
fn read_adapter(path: &std::path::Path) -> Result<Vec<u8>> {
    let budget = runtime::limits::MAX_ADAPTER_BYTES;
    let bytes = harness::read_at_most(path, budget + 1)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > budget {
        let size = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(harness::Rejected {
            path: path.to_path_buf(),
            error: runtime::Error::at(
                runtime::ErrorCode::BudgetExceeded,
                0,
                format!("the adapter has {size} bytes; the budget is {budget}"),
            ),
        }
        .into());
    }
    Ok(bytes)
}

fn adapter_command(what: AdapterWhat) -> Result<ExitCode> {
    use runtime::adapter::{Adapter, AdapterKind};
    match what {
        AdapterWhat::Diff {
            base,
            tuned,
            kind,
            rank,
            output,
        } => {
            let kind = AdapterKind::from_name(&kind)
                .with_context(|| format!("unknown adapter kind {kind:?} (adp1, asp1, alr1)"))?;
            let bytes =
                harness::adapter::diff::diff(&read_slm(&base)?, &read_slm(&tuned)?, kind, rank)?;
            std::fs::write(&output, &bytes)
                .with_context(|| format!("writing {}", output.display()))?;
            let digest = runtime::adapter::format::file_digest(&bytes);
            harness::errln!(
                "wrote {} ({} bytes, file digest {})",
                output.display(),
                bytes.len(),
                runtime::sha256::to_hex(&digest)
            );
            Ok(ExitCode::SUCCESS)
        }
        AdapterWhat::Inspect { file, json } => {
            // At most the adapter budget + 1 byte: a longer file is BudgetExceeded unread.
            let bytes = read_adapter(&file)?;
            let a = Adapter::parse(&bytes).map_err(|error| harness::Rejected {
                path: file.clone(),
                error,
            })?;
            if json {
                let r = harness::adapter::report(&a, bytes.len());
                harness::outln!("{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                harness::out!("{}", harness::adapter::report_text(&a, bytes.len()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        AdapterWhat::Example { base, output } => {
            use harness::adapter::example;
            let ex = example::build(&read_slm(&base)?)?;
            std::fs::create_dir_all(&output)
                .with_context(|| format!("creating {}", output.display()))?;
            for (name, bytes) in [
                (example::ADAPTER_FILE, &ex.adapter),
                (example::PLAN_FILE, &ex.plan),
            ] {
                let path = output.join(name);
                std::fs::write(&path, bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            harness::out!("{}", ex.describe())?;
            harness::outln!(
                "wrote {} and {}",
                output.join(example::ADAPTER_FILE).display(),
                output.join(example::PLAN_FILE).display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        AdapterWhat::Apply { base, plan, output } => {
            let mut model = runtime::model::Model::load(read_slm(&base)?).map_err(|error| {
                harness::Rejected {
                    path: base.clone(),
                    error,
                }
            })?;
            let files = harness::adapter::PlanFiles::read(&plan, &model.digest)?;
            let receipt =
                runtime::adapter::apply_plan(&mut model, &files.plan, &files.module_refs())
                    .map_err(|error| harness::Rejected {
                        path: plan.clone(),
                        error,
                    })?;
            let bytes = receipt.to_bytes();
            std::fs::write(&output, &bytes)
                .with_context(|| format!("writing {}", output.display()))?;
            harness::errln!(
                "applied {} module(s), {} tensor(s) assembled; receipt sha256 {}",
                receipt.modules.len(),
                receipt.assembled_tensors,
                runtime::sha256::to_hex(&receipt.digest())
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--runs` of a benchmark: 1..=[`harness::limits::MAX_BENCH_RUNS`].
fn bench_runs() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(1..=harness::limits::MAX_BENCH_RUNS)
}

#[derive(Subcommand)]
enum BenchWhat {
    /// The runtime's SHA-256 against the `sha2` crate.
    Sha256 {
        /// MiB of data to hash per run.
        #[arg(long, default_value_t = 32, value_parser = RangedU64ValueParser::<usize>::new()
            .range(1..=harness::limits::MAX_BENCH_SHA256_MIB))]
        mib: usize,
        /// Timed runs per implementation (after one warm-up run).
        #[arg(long, default_value_t = 7, value_parser = bench_runs())]
        runs: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Prefill and decode tok/s, load + verify ms and peak memory (against file + KV cache +
    /// 2 MiB) for seeded models of the stories15M and stories42M shapes, every dtype within the
    /// model budget, per engine.
    Model {
        /// Timed runs per measurement: rounds in which every engine runs once, in turn (each
        /// prefill and decode after an untimed one).
        #[arg(long, default_value_t = 3, value_parser = bench_runs())]
        runs: usize,
        /// Only this shape (stories15M or stories42M).
        #[arg(long)]
        shape: Option<String>,
        /// Engines, comma-separated (default: every engine of the bench's engine list: native,
        /// native-portable, wasmtime, wasmtime-scalar).
        #[arg(long, value_delimiter = ',')]
        engine: Vec<String>,
        /// Only these dtypes, comma-separated (default: every dtype within the model budget).
        #[arg(long, value_delimiter = ',')]
        dtype: Vec<String>,
        /// Also measure this wasm module (a build of the runtime with its ABI, e.g. an
        /// experimental kernel) under wasmtime as engine wasmtime-file, in the same rounds as
        /// the others; its rows add its prefill and decode speed over engine wasmtime's, round
        /// by round.
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The figures of `bench model` measured by the smoke page itself (?bench=) in every
    /// installed headless browser, next to native in the same run: load + verify, fetch and
    /// fetch + load ms, prefill and decode tok/s, the page's wasm memory against the budget.
    /// Runs in a loopback-only network namespace like `browsers`. Exit 1 when a figure is
    /// missing or malformed.
    Browsers {
        /// Timed runs per measurement (after one warm-up run).
        #[arg(long, default_value_t = 3, value_parser = bench_runs())]
        runs: usize,
        /// Only this shape (stories15M or stories42M).
        #[arg(long)]
        shape: Option<String>,
        /// Only these dtypes, comma-separated (default: every dtype within the model budget).
        #[arg(long, value_delimiter = ',')]
        dtype: Vec<String>,
        /// Engines, comma-separated: native, chromium, firefox (default: all installed).
        #[arg(long, value_delimiter = ',')]
        engine: Vec<String>,
        /// Seconds to wait for one browser's report.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Run without the loopback-only network namespace.
        #[arg(long)]
        no_isolate: bool,
        /// Set by the runner on itself inside its network namespace.
        #[arg(long, hide = true)]
        isolated_network: bool,
    },
    /// Tokenizer encoding speed on 1 MB of text.
    Tokenizer {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConvertFrom {
    /// A llama2.c checkpoint (legacy v0, v1 or v2) and its tokenizer.bin.
    Llama2c {
        /// The checkpoint (.bin, as llama2.c's export.py writes it).
        #[arg(long)]
        model: PathBuf,
        /// Its tokenizer.bin (llama2.c's format; the vocabulary size must be the model's).
        #[arg(long)]
        tokenizer: PathBuf,
        /// Matrix dtype: f32, f16, q8_0 or q4_0 (norms stay f32; under q8_0/q4_0 a tensor whose
        /// rows are not whole 32-element blocks stays f32).
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// The .slm file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// A .slm file of an earlier minor version (format 2.0), verified, then written again in the
    /// current format (2.1): the same metadata, tokenizer and tensor bytes, new digests (and so a
    /// new identity). A current file is written back unchanged.
    Slm {
        /// The .slm file to rewrite.
        #[arg(long)]
        model: PathBuf,
        /// The .slm file to write (may be the input).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// A llama.cpp GGUF of architecture llama (f32, f16, q8_0 and q4_0 tensors).
    Gguf {
        /// The .gguf file.
        #[arg(long)]
        model: PathBuf,
        /// `keep` copies every tensor's bytes unchanged; a dtype requantizes the matrices.
        #[arg(long, default_value = "keep")]
        dtype: String,
        /// The .slm file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}

fn parse_dtype(name: &str) -> Result<runtime::format::DType> {
    runtime::format::DType::from_name(name)
        .with_context(|| format!("unknown dtype {name:?} (f32, f16, q8_0, q4_0)"))
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Refuses an output path that names one of the inputs (a converter's source is another
/// format: writing over it would lose it), before anything is read.
fn refuse_overwriting(output: &std::path::Path, inputs: &[&std::path::Path]) -> Result<()> {
    let Ok(out) = output.canonicalize() else {
        return Ok(()); // the output does not exist yet
    };
    for input in inputs {
        if input.canonicalize().is_ok_and(|i| i == out) {
            anyhow::bail!(
                "the output {} is the input {}: refusing to write over it",
                output.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place: a reader never
/// sees a partly written file, and a failed write leaves what was there. A symbolic link is
/// written through (the file it names is replaced, the link stays); a path that names anything
/// but a regular file (a directory, a device, a FIFO) or a link to nothing is refused, since
/// the rename would put a file in its place.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let target = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        Ok(m) if m.file_type().is_symlink() => {
            let t = path.canonicalize().with_context(|| {
                format!(
                    "{} is a symbolic link to nothing: not writing",
                    path.display()
                )
            })?;
            anyhow::ensure!(
                t.is_file(),
                "{} is a symbolic link to {}, which is not a regular file: not writing",
                path.display(),
                t.display()
            );
            t
        }
        Ok(m) => {
            anyhow::ensure!(
                m.is_file(),
                "{} exists and is not a regular file: not writing over it",
                path.display()
            );
            path.to_path_buf()
        }
    };
    target
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    // A short name (not the output's, which may be as long as a name can be).
    let tmp = target.with_file_name(format!(".tinyrustlm-{}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &target))
        .with_context(|| format!("writing {}", path.display()));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A runtime error about a .slm a converter built but did not write: its offset is said to be
/// one in that output (`error 25 LimitExceeded at byte 99 of the output: ...`).
fn describe_output_error(e: &runtime::Error) -> String {
    match e.offset {
        Some(o) => format!(
            "error {} {} at byte {o} of the output: {}",
            e.code as u32,
            e.code.name(),
            e.message
        ),
        None => inspect::describe_error(e),
    }
}

/// Writes a converted model and reports it on stderr.
fn write_converted(
    model: &runtime::format::ModelFile,
    notes: &[String],
    output: &std::path::Path,
) -> Result<ExitCode> {
    // An offset in these errors is one in the .slm that was not written, not in the input.
    let refused = |e: &runtime::Error| {
        anyhow::anyhow!(
            "the converted model would not load, so it was not written: {}",
            describe_output_error(e)
        )
    };
    let bytes = runtime::format::write(model).map_err(|e| refused(&e))?;
    // What is written must load: the whole verification, the tokenizer's rules included (a
    // source may, e.g., name no BOS token yet ask for one).
    inspect::verify(&bytes).map_err(|e| refused(&e))?;
    write_atomically(output, &bytes)?;
    for note in notes {
        harness::errln!("note: {note}");
    }
    harness::errln!(
        "wrote {} ({} bytes, file digest {})",
        output.display(),
        bytes.len(),
        runtime::sha256::to_hex(&runtime::format::file_digest(&bytes))
    );
    Ok(ExitCode::SUCCESS)
}

/// The vocabulary of a .slm model (verified completely) or of a llama GGUF.
fn read_vocab(path: &std::path::Path) -> Result<runtime::format::Vocab> {
    let bytes = read_input(path)?;
    // GGUF files start with the magic "GGUF"; .slm files with 0x89 "SLM".
    if bytes.starts_with(b"GGUF") {
        let g = harness::gguf::Gguf::parse(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return harness::gguf::llama_vocab(&g);
    }
    let slm =
        inspect::verify(&bytes).map_err(|e| anyhow::anyhow!("{}", inspect::describe_error(&e)))?;
    Ok(slm.vocab)
}

/// The model file's bytes (the built-in model without one). At most the model budget plus one
/// byte is read ([`harness::read_model_prefix`]): a longer file is rejected there with
/// BudgetExceeded at byte 0 and its length (spec/slm.md, verification step 1), never read whole.
fn read_model(file: &Option<PathBuf>) -> Result<Vec<u8>> {
    let Some(path) = file else {
        return Ok(fixtures::DEFAULT_MODEL.to_vec());
    };
    let reading = || format!("reading {}", path.display());
    let budget = runtime::limits::MAX_MODEL_BYTES;
    let bytes = harness::read_model_prefix(path).with_context(reading)?;
    if bytes.len() as u64 <= budget {
        return Ok(bytes);
    }
    // Over the budget: the runtime reader's own error (BudgetExceeded at byte 0), with the
    // file's true length. (Were it to pass, verification would still refuse the bytes.)
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    match runtime::format::header::check_prefix(&bytes, size.max(bytes.len() as u64)) {
        Err(error) => Err(harness::Rejected {
            path: path.clone(),
            error,
        }
        .into()),
        Ok(()) => Ok(bytes),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Verify { file } => {
            let bytes = read_model(&Some(file.clone()))?;
            match inspect::verify(&bytes) {
                Ok(slm) => {
                    harness::outln!(
                        "ok: {} ({} bytes, {} tensors, file digest {})",
                        file.display(),
                        bytes.len(),
                        slm.tensors.len(),
                        runtime::sha256::to_hex(&slm.digest())
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    harness::errln!("{}: {}", file.display(), inspect::describe_error(&e));
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Check {
            file,
            json,
            engine,
            max_tokens,
            plan,
        } => {
            // Arguments first (exit 2 before any work), then the files.
            let names: Vec<String> = if engine.is_empty() {
                harness::engine::ENGINE_NAMES
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                engine
            };
            let cap = runtime::limits::MAX_NEW_TOKENS;
            if !(1..=cap).contains(&max_tokens) {
                bail!("--max-tokens must be in 1..={cap} (MAX_NEW_TOKENS)");
            }
            let mut engines = Vec::new();
            for n in &names {
                match harness::engine::by_name(n)? {
                    Some(e) => engines.push(e),
                    None => harness::errln!("note: engine {n} is not available here; skipped"),
                }
            }
            // A check that ran no engine has compared nothing: it cannot pass.
            if engines.is_empty() {
                bail!(
                    "none of the engines {} is available here: nothing to check",
                    names.join(", ")
                );
            }
            let bytes = read_model(&file)?;
            let plan = plan
                .map(|p| harness::adapter::PlanFiles::read(&p, &plan_base(&bytes, &file)?))
                .transpose()?;
            let report = harness::check::check(
                &bytes,
                &mut engines,
                max_tokens,
                harness::engine::wasm_module_bytes(),
                plan.as_ref(),
            );
            let name = file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| format!("built-in {}", fixtures::DEFAULT_MODEL_NAME));
            if json {
                harness::outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                harness::out!("{}", harness::check::render(&report, &name))?;
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Inspect { file, json } => {
            let bytes = read_model(&file)?;
            let slm = match (inspect::verify(&bytes), file) {
                (Ok(slm), _) => slm,
                (Err(error), Some(path)) => return Err(harness::Rejected { path, error }.into()),
                (Err(e), None) => bail!("{}", inspect::describe_error(&e)),
            };
            if json {
                harness::outln!("{}", serde_json::to_string_pretty(&inspect::report(&slm))?)?;
            } else {
                harness::out!("{}", inspect::report_text(&slm))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert { from } => match from {
            ConvertFrom::Llama2c {
                model,
                tokenizer,
                dtype,
                output,
            } => {
                let dtype = parse_dtype(&dtype)?;
                refuse_overwriting(&output, &[&model, &tokenizer])?;
                let m = read_input(&model)?;
                let t = read_input(&tokenizer)?;
                let converted = harness::llama2c::convert(&m, &t, dtype, &file_name(&model))?;
                let mut notes = Vec::new();
                if !converted.kept_f32.is_empty() {
                    notes.push(format!(
                        "kept f32 (rows are not whole 32-element blocks): {}",
                        converted.kept_f32.join(", ")
                    ));
                }
                write_converted(&converted.model, &notes, &output)
            }
            ConvertFrom::Slm { model, output } => {
                let bytes = read_model(&Some(model.clone()))?;
                let slm = runtime::format::Slm::parse(&bytes).map_err(|e| {
                    anyhow::anyhow!("{}: {}", model.display(), inspect::describe_error(&e))
                })?;
                let notes = [format!(
                    "read format {}.{} ({} bytes, file digest {})",
                    runtime::format::header::VERSION_MAJOR,
                    slm.header.version_minor,
                    bytes.len(),
                    runtime::sha256::to_hex(&slm.digest())
                )];
                let rewritten = runtime::format::ModelFile::from_slm(&slm);
                write_converted(&rewritten, &notes, &output)
            }
            ConvertFrom::Gguf {
                model,
                dtype,
                output,
            } => {
                let choice = DTypeChoice::from_name(&dtype).with_context(|| {
                    format!("unknown dtype {dtype:?} (keep, f32, f16, q8_0, q4_0)")
                })?;
                refuse_overwriting(&output, &[&model])?;
                let m = read_input(&model)?;
                let converted = harness::gguf::convert::convert(&m, choice, &file_name(&model))
                    .with_context(|| format!("converting {}", model.display()))?;
                write_converted(&converted.model, &converted.notes, &output)
            }
        },
        Command::Run {
            file,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            context,
            plan,
        } => {
            let settings = runtime::generate::sampler::SamplerSettings {
                temperature,
                top_k,
                top_p,
                seed,
                max_new_tokens: max_tokens,
            };
            // Arguments first (exit 2 before any work), then the files.
            settings
                .validate()
                .map_err(|e| anyhow::anyhow!("{}", inspect::describe_error(&e)))?;
            let bytes = read_model(&file)?;
            let plan = plan
                .map(|p| harness::adapter::PlanFiles::read(&p, &plan_base(&bytes, &file)?))
                .transpose()?;
            harness::run::run_to_stdout(
                bytes,
                file.as_deref(),
                prompt.as_bytes(),
                settings,
                context,
                plan.as_ref(),
            )
        }
        Command::Tokenize { file, text, no_bos } => {
            let vocab = read_vocab(&file)?;
            let tok = runtime::generate::tokenizer::Tokenizer::new(&vocab)
                .map_err(|e| anyhow::anyhow!("{}", inspect::describe_error(&e)))?;
            let mut ids = Vec::new();
            tok.encode(text.as_bytes(), tok.add_bos() && !no_bos, &mut ids)
                .map_err(|e| anyhow::anyhow!("{}", inspect::describe_error(&e)))?;
            let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            harness::outln!("{}", ids.join(" "))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { what } => {
            match what {
                BenchWhat::Browsers {
                    runs,
                    shape,
                    dtype,
                    engine,
                    timeout,
                    json,
                    no_isolate,
                    isolated_network,
                } => {
                    let selection = harness::bench::browsers::Selection {
                        runs,
                        shape: shape.as_deref(),
                        dtypes: &dtype,
                        engines: &engine,
                        timeout: std::time::Duration::from_secs(timeout),
                    };
                    harness::bench::browsers::check_selection(&selection)?;
                    if let Some(code) = isolate_network(isolated_network, no_isolate)? {
                        return Ok(code);
                    }
                    let report = harness::bench::browsers::run(&selection, json, &heap::peak)?;
                    if !report.failures.is_empty() {
                        return Ok(ExitCode::from(1));
                    }
                }
                BenchWhat::Sha256 { mib, runs, json } => {
                    harness::bench::sha256::run(mib, runs, json)?
                }
                BenchWhat::Tokenizer { json } => harness::bench::tokenizer::run(json)?,
                BenchWhat::Model {
                    runs,
                    shape,
                    engine,
                    dtype,
                    wasm,
                    json,
                } => harness::bench::model::run(
                    &harness::bench::model::Selection {
                        runs,
                        shape: shape.as_deref(),
                        engines: &engine,
                        dtypes: &dtype,
                        wasm: wasm.as_deref(),
                    },
                    json,
                    &heap::peak,
                )?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            port,
            root,
            bind,
            corpus,
        } => {
            let bind: std::net::IpAddr = bind
                .parse()
                .with_context(|| format!("--bind {bind:?} is not an IP address"))?;
            // The registry's adapters are served under extra/ (see smoke::adapter_files).
            let extra_models = harness::smoke::adapter_files(&root, &corpus)?;
            let server = harness::serve::RunningServer::start(harness::serve::ServeConfig {
                bind,
                port,
                root,
                corpus,
                extra_models,
                ..Default::default()
            })?;
            harness::outln!("serving {}", server.url("/"))?;
            for report in server.reports() {
                harness::outln!("{report}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Browsers {
            json,
            only,
            models,
            screenshot,
            timeout,
            modes,
            corpus,
            extra_model,
            no_isolate,
            speed,
            isolated_network,
        } => {
            if let Some(code) = isolate_network(isolated_network, no_isolate)? {
                return Ok(code);
            }
            let opts = harness::browsers::Options {
                only,
                models,
                screenshot,
                modes,
                timeout: std::time::Duration::from_secs(timeout),
                serve: harness::serve::ServeConfig {
                    corpus,
                    extra_models: extra_model,
                    ..Default::default()
                },
            };
            let outcome = if speed {
                let speed = harness::browsers::speed::measure(&opts)?;
                harness::out!("{}{}", speed.outcome.table(), speed.table())?;
                // A speed run that measured no page (only Node, which reports no tok/s, or no
                // browser installed) has no figure: it cannot pass.
                if !speed
                    .outcome
                    .tok_s
                    .iter()
                    .any(|(_, m, _)| *m == speed.model)
                {
                    harness::errln!("speed: no page reported tok/s");
                    return Ok(ExitCode::from(1));
                }
                speed.outcome
            } else {
                let outcome = harness::browsers::run(&opts)?;
                if json {
                    harness::outln!("{}", serde_json::to_string_pretty(&outcome)?)?;
                } else {
                    harness::out!("{}", outcome.table())?;
                }
                outcome
            };
            let ran_any = !outcome.engines.is_empty();
            Ok(if outcome.passed() && ran_any {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Adapter { what } => adapter_command(what),
        Command::Fixtures { check, dir } => {
            let mut touched = fixtures::generate(&dir, check)?;
            // The malformed cases and the adapter fixtures are built from the fixture files on
            // disk: a damaged one is named here, rather than failing to load there.
            if check && !touched.is_empty() {
                bail!(
                    "fixtures differ from their recipes: {} (the files made from them are checked once these match)",
                    touched.join(", ")
                );
            }
            touched.extend(malformed::generate(&dir.join("malformed"), check)?);
            touched.extend(harness::adapter::fixtures::generate(&dir, check)?);
            touched.extend(malformed::generate_formats(&dir, check)?);
            if check {
                if !touched.is_empty() {
                    bail!("fixtures differ from their recipes: {}", touched.join(", "));
                }
                harness::outln!("all fixtures in {} match their recipes", dir.display())?;
            } else {
                harness::outln!("wrote {} fixture(s) in {}", touched.len(), dir.display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// For the commands that launch browsers: unless `no_isolate`, re-executes this command inside
/// a loopback-only network namespace and returns its exit code (Some), or carries on here
/// (None) when already inside one (`isolated_network`, checked) or when none can be made.
fn isolate_network(isolated_network: bool, no_isolate: bool) -> Result<Option<ExitCode>> {
    use harness::browsers::isolate;
    if isolated_network && !isolate::loopback_only() {
        bail!(
            "{} given, but this network namespace has interfaces besides lo",
            isolate::ISOLATED_FLAG
        );
    }
    // A namespace of loopback alone whose loopback is down (a bare `unshare --net`) is isolated
    // but unusable: make a fresh one, whose loopback the re-executed runner brings up.
    let usable = isolate::loopback_usable();
    if isolated_network && !usable {
        bail!("{} given, but 127.0.0.1 cannot be reached in this network namespace (is lo up? `ip link set lo up`)", isolate::ISOLATED_FLAG);
    }
    let ready_here = isolate::loopback_only() && usable;
    if !isolated_network && !no_isolate && !ready_here {
        match isolate::reexec(std::env::args_os().skip(1)) {
            Ok(status) => {
                return Ok(Some(ExitCode::from(
                    status
                        .code()
                        .and_then(|c| u8::try_from(c).ok())
                        .unwrap_or(1),
                )))
            }
            Err(why) => harness::errln!("note: running without network isolation: {why}"),
        }
    }
    if !usable {
        bail!("127.0.0.1 cannot be reached in this network namespace (is lo up? `ip link set lo up`): the smoke server would be unreachable");
    }
    Ok(None)
}

/// Counts heap bytes in use and their peak, for `bench model` and `bench browsers` (native rows).
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    static CURRENT: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    pub struct Counting;

    // SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                let now = CURRENT.fetch_add(layout.size(), Relaxed) + layout.size();
                PEAK.fetch_max(now, Relaxed);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            CURRENT.fetch_sub(layout.size(), Relaxed);
        }
    }

    /// `reset`: peak := bytes in use now, returned; otherwise the peak since the last reset.
    pub fn peak(reset: bool) -> Option<usize> {
        if reset {
            let now = CURRENT.load(Relaxed);
            PEAK.store(now, Relaxed);
            Some(now)
        } else {
            Some(PEAK.load(Relaxed))
        }
    }
}

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

/// The exit status of a command whose standard output was closed by its reader
/// (`tinyrustlm run | head`): 128 + SIGPIPE, what a shell reports for a program that signal
/// ended, and no message (the reader chose to stop; the output so far was written whole).
const CLOSED_OUTPUT: u8 = 141;

/// Whether `e` comes from writing to a standard output its reader has closed.
fn closed_output(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) if closed_output(&e) => ExitCode::from(CLOSED_OUTPUT),
        Err(e) => match e.downcast_ref::<harness::Rejected>() {
            Some(rejected) => {
                harness::errln!("{rejected}");
                ExitCode::from(1)
            }
            None => {
                harness::errln!("tinyrustlm: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}
