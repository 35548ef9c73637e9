//! Every cap of the harness, in one place: the loopback server's (serve.rs), the selector
//! registry's (adapter/registry.rs) and the GGUF reader's (gguf/parse.rs). The runtime's caps
//! live in runtime/src/limits.rs. harness/tests/caps.rs tests each at its boundary.

use std::time::Duration;

// The loopback server (serve.rs, serve/http.rs).

/// Largest request head in bytes: the request line, the header lines and the empty line that
/// ends them, CRLFs included (431 above it).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest `POST /report` body (413 above it).
pub const MAX_REPORT_BYTES: usize = 4 << 20;
/// Reports queued for the runner before the server answers 503.
pub const MAX_QUEUED_REPORTS: usize = 256;
/// Connections served at once; one more is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 128;
/// Longest a client may take to send a request head, from its connection (408 after it).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request body, from the end of its head (408 after it).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the server takes to send a response, from its first byte to its last (then it drops
/// the connection): a deadline for the whole response, not for each write, so a client that
/// reads slowly cannot hold a connection longer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a `/hold` request waits for its run's report.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(60);
/// `/hold` requests waiting at once (503 beyond): each takes a connection slot for up to the
/// hold timeout, also when its client has left, so they may not take all of them. A `browsers`
/// run holds one per browser.
pub const MAX_HOLDS: usize = 16;
/// Largest input file a converter (`convert llama2c`, `convert gguf`) or `tokenize` reads: a
/// longer one is refused unread. An f32 checkpoint whose q4_0 conversion fits the model budget
/// is at most about 7.1 × 32 MiB (227 MiB), so every convertible input fits.
pub const MAX_CONVERT_INPUT_BYTES: u64 = 256 << 20;
/// Most timed runs `tinyrustlm bench` takes per measurement (`--runs`).
pub const MAX_BENCH_RUNS: u64 = 1000;
/// Most MiB `bench sha256` hashes per run (`--mib`; the buffer is allocated once).
pub const MAX_BENCH_SHA256_MIB: u64 = 1024;
/// Longest report run id that releases `/hold?run=ID` (a longer one is queued for the runner
/// but releases nothing).
pub const MAX_RUN_ID_BYTES: usize = 128;
/// Run ids the server remembers as reported (the oldest is forgotten first).
pub const MAX_RELEASED_RUNS: usize = 1024;
/// After a refusal, the server reads and discards at most this many bytes of what the client
/// still sends before closing (so the client reads the refusal rather than a reset).
pub const MAX_LINGER_BYTES: usize = 8 << 20;
/// ... and waits at most this long for them.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

// The selector registry (adapter/registry.rs; spec/adapters.md, Selector registry).

/// Bytes in a registry id or adapter family name.
pub const MAX_REGISTRY_ID_BYTES: usize = 64;

// The GGUF reader (gguf/parse.rs): ggml's own caps.

/// ggml's `GGUF_MAX_STRING_LENGTH`: bytes in one string.
pub const GGUF_MAX_STRING_BYTES: u64 = 1 << 30;
/// ggml's `GGUF_MAX_ARRAY_ELEMENTS`: elements in one array.
pub const GGUF_MAX_ARRAY_ELEMENTS: u64 = 1 << 30;
/// ggml's `GGML_MAX_NAME`: a tensor name holds at most this many bytes minus one (and a NUL).
pub const GGUF_MAX_NAME: usize = 64;
/// ggml's `GGML_MAX_DIMS`: dimensions of a tensor.
pub const GGUF_MAX_DIMS: u32 = 4;

// The GGUF reader's own caps, below ggml's: what the reader holds per pair, tensor and string
// (a hundred bytes or more each) stays in the tens of megabytes however a file spends its
// bytes, far above what any model a converter takes needs (a .slm holds at most
// `runtime::limits::MAX_TENSORS` tensors and `MAX_VOCAB` tokens; llama.cpp's files carry a
// few dozen pairs).

/// Key/value pairs in one file.
pub const GGUF_READER_MAX_KVS: u64 = 65_536;
/// Tensors in one file.
pub const GGUF_READER_MAX_TENSORS: u64 = 65_536;
/// Strings in all the string arrays of one file together (a 128k-token vocabulary and its
/// merges take about 400k).
pub const GGUF_READER_MAX_STRINGS: u64 = 1 << 20;
