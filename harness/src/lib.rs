//! The TinyRustLM harness: fixture recipes, converters, engines and the checks behind the
//! `tinyrustlm` CLI.

/// `println!` that returns the write's error instead of panicking on it: stdout closed early
/// (`tinyrustlm check --json | head`) ends the command with that error, which `main` turns
/// into a quiet exit 141 (as a program ended by SIGPIPE).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` as [`outln!`] (no newline).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `eprintln!` that never panics: a message to a closed stderr is dropped (there is nowhere
/// left to report it), and the command's exit code still tells what happened.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// `eprint!` as [`errln!`] (no newline).
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// An input file the runtime rejects (a model, an adapter, a plan): reported as `verify`
/// reports a rejection (`PATH: error CODE Name[ at byte B]: text`), with exit code 1 — where
/// a file that cannot be read, or arguments a command cannot run with, exit 2.
#[derive(Debug)]
pub struct Rejected {
    pub path: std::path::PathBuf,
    pub error: runtime::Error,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let error = inspect::describe_error(&self.error);
        write!(f, "{}: {error}", self.path.display())
    }
}

impl std::error::Error for Rejected {}

pub mod adapter;
pub mod bench;
pub mod browsers;
pub mod check;
pub mod conformance;
pub mod converted;
pub mod engine;
pub mod fixtures;
pub mod gguf;
pub mod inspect;
pub mod limits;
pub mod llama2c;
pub mod llama2c_tokenizer;
pub mod malformed;
pub mod run;
pub mod serve;
pub mod smoke;

/// The first `limit` bytes of the file at `path` (all of it when shorter): a file that may be
/// larger than what will take it (a model over the budget, a module longer than its plan says)
/// is never read whole. Room for them is reserved once, from the length the file's metadata
/// gives.
pub fn read_at_most(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let size = f.metadata().map_or(0, |m| m.len());
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(limit)).unwrap_or(0));
    f.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A model file's first `MAX_MODEL_BYTES` + 1 bytes ([`read_at_most`]): all of a file within
/// the budget, and enough of a longer one for the reader to refuse it (BudgetExceeded).
pub fn read_model_prefix(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    read_at_most(path, runtime::limits::MAX_MODEL_BYTES + 1)
}
