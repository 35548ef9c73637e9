//! `tinyrustlm serve`: the loopback HTTP server of the browser smoke page. It serves
//! browser-smoke/ as its root, `/wasm/trlm.wasm` and `/wasm/trlm-simd128.wasm` (the runtime's
//! scalar and simd128 modules), `/corpus/` (the corpus models and the malformed matrix),
//! `/cases.json` (the standard cases), models added for one run under `/extra/` (then listed
//! in the `/registry.json` it serves) and the seeded models of a page benchmark under `/bench/`
//! (`tinyrustlm bench browsers` only; listed nowhere), and accepts
//! `POST /report` from the page, handing each report to the runner through a channel.
//!
//! It binds 127.0.0.1 only, serves GET and HEAD only for files (405 otherwise), refuses every
//! form of path traversal (serve/path.rs, then canonicalization under the root), answers only
//! for the `Host` names 127.0.0.1 and localhost (421 otherwise: DNS rebinding), caps request
//! heads (431), report bodies (413) and connections (503), times out clients that send too
//! slowly (408), and answers with `Cache-Control: no-store`, cross-origin isolation (COOP
//! same-origin, COEP require-corp) and `X-Content-Type-Options: nosniff`. The caps are in
//! [`crate::limits`]; the HTTP subset it speaks is serve/http.rs.
//!
//! Each connection gets its own thread (at most [`MAX_CONNECTIONS`]) and one request. The
//! request → response logic is [`Handler`], which also answers requests given as bytes
//! ([`Handler::answer`], the fuzz target's entry).

pub mod http;
pub mod path;

use crate::smoke;
use anyhow::{bail, Context, Result};
use http::{Refusal, Request, Response, Source};
use std::collections::VecDeque;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::limits::{
    HOLD_TIMEOUT, MAX_CONNECTIONS, MAX_HEADER_BYTES, MAX_QUEUED_REPORTS, MAX_REPORT_BYTES,
};

/// The only address the server binds.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The route of the runtime's module.
pub const WASM_ROUTE: &str = "/wasm/trlm.wasm";
/// The first segment of the bench models' routes (`/bench/NAME.slm`).
pub const BENCH_ROUTE: &str = "bench";

/// How long the server waits for clients (defaults: [`crate::limits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// For the request head, from the connection.
    pub header: Duration,
    /// For the body, from the end of the head.
    pub body: Duration,
    /// For the client to take the response.
    pub write: Duration,
    /// For a `/hold` request's report.
    pub hold: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            header: crate::limits::HEADER_TIMEOUT,
            body: crate::limits::BODY_TIMEOUT,
            write: crate::limits::WRITE_TIMEOUT,
            hold: HOLD_TIMEOUT,
        }
    }
}

/// What to serve and where.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Must be 127.0.0.1 ([`LOOPBACK`]).
    pub bind: IpAddr,
    /// 0 = an ephemeral port.
    pub port: u16,
    /// The static root (browser-smoke/).
    pub root: PathBuf,
    /// The corpus directory served under `/corpus/`.
    pub corpus: PathBuf,
    /// The runtime's wasm module served at [`WASM_ROUTE`] (404 when None).
    pub wasm: Option<PathBuf>,
    /// Model files served under `/extra/` and added to `/registry.json`
    /// ([`smoke::served_registry`]).
    pub extra_models: Vec<PathBuf>,
    /// Model files served under `/bench/` for a page benchmark (`bench::browsers`), by file
    /// name; in no registry.
    pub bench_models: Vec<PathBuf>,
    /// How long clients may take.
    pub timeouts: Timeouts,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            bind: LOOPBACK,
            port: 0,
            root: smoke::smoke_dir(),
            corpus: crate::fixtures::corpus_dir(),
            wasm: smoke::wasm_module_path(),
            extra_models: Vec::new(),
            bench_models: Vec::new(),
            timeouts: Timeouts::default(),
        }
    }
}

/// Run ids whose report arrived (releases `/hold?run=ID`): the last
/// [`crate::limits::MAX_RELEASED_RUNS`] of them, each at most
/// [`crate::limits::MAX_RUN_ID_BYTES`] long (a longer id releases no hold), so that reports
/// with ever new ids cannot grow the server's memory.
#[derive(Default)]
struct Released {
    runs: Mutex<VecDeque<String>>,
    arrived: Condvar,
}

/// The request → response logic of the server, without sockets.
pub struct Handler {
    root: PathBuf,
    corpus: PathBuf,
    wasm: Option<PathBuf>,
    /// `/registry.json` with the extra models (None: the committed file).
    registry: Option<String>,
    /// The extra models by file name.
    extra: Vec<(String, PathBuf)>,
    /// The bench models by file name.
    bench: Vec<(String, PathBuf)>,
    reports: SyncSender<serde_json::Value>,
    released: Released,
    timeouts: Timeouts,
    /// Set when the server stops: holds answer at once.
    stopping: AtomicBool,
    /// `/hold` requests waiting now.
    holds: AtomicUsize,
}

/// What [`Handler::exchange`] decided: the response, whether it carries a body (not for HEAD),
/// and whether the request was refused before it was read whole.
struct Answer {
    response: Response,
    with_body: bool,
    refused: bool,
}

impl Handler {
    /// A handler for `config` and the receiving end of its report channel. Checks the roots
    /// and extra models exist (the bind address is [`RunningServer::start`]'s business).
    pub fn new(config: &ServeConfig) -> Result<(Handler, Receiver<serde_json::Value>)> {
        let root = config
            .root
            .canonicalize()
            .with_context(|| format!("root {}", config.root.display()))?;
        let corpus = config
            .corpus
            .canonicalize()
            .with_context(|| format!("corpus {}", config.corpus.display()))?;
        let registry = if config.extra_models.is_empty() {
            None
        } else {
            Some(smoke::served_registry(&root, &config.extra_models)?.to_string())
        };
        let extra = by_name("extra model", &config.extra_models)?;
        let bench = by_name("bench model", &config.bench_models)?;
        let (tx, reports) = sync_channel(MAX_QUEUED_REPORTS);
        let handler = Handler {
            root,
            corpus,
            wasm: config.wasm.clone(),
            registry,
            extra,
            bench,
            reports: tx,
            released: Released::default(),
            timeouts: config.timeouts,
            stopping: AtomicBool::new(false),
            holds: AtomicUsize::new(0),
        };
        Ok((handler, reports))
    }

    /// Answers one request given as raw bytes (head and body; a request that ends early is
    /// answered 400) with the raw response bytes.
    pub fn answer(&self, mut raw: &[u8]) -> Vec<u8> {
        let answer = self.exchange(&mut raw, Instant::now());
        let mut out = Vec::new();
        // Writing to a Vec fails only when a served file shrank while it was read.
        let _ = http::write_response(&mut out, answer.response, answer.with_body);
        out
    }

    /// Reads one request from `src` (the head by `start` + the header timeout, the body within
    /// the body timeout after it) and decides its response.
    fn exchange<S: Source>(&self, src: &mut S, start: Instant) -> Answer {
        let refusal = |r: Refusal| Answer {
            response: finish(Response::status(r.status)),
            with_body: true,
            refused: true,
        };
        let (head, rest) = match http::read_head(src, start + self.timeouts.header) {
            Ok(x) => x,
            Err(r) => return refusal(r),
        };
        let req = match http::parse_head(&head) {
            Ok(r) => r,
            Err(r) => return refusal(r),
        };
        let with_body = req.method != "HEAD";
        let segs = match self.admit(&req) {
            Ok(segs) => segs,
            Err(response) => {
                return Answer {
                    response: finish(response),
                    with_body,
                    refused: true,
                }
            }
        };
        let len = req.content_length().unwrap_or(0);
        let body = match http::read_body(src, rest, len, Instant::now() + self.timeouts.body) {
            Ok(b) => b,
            Err(r) => return refusal(r),
        };
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        Answer {
            response: finish(self.route(&req, &segs, &body)),
            with_body,
            refused: false,
        }
    }

    /// Checks a request before its body is read: its `Host` (421), its target (400), its method
    /// (405), its body's announced length (411, 413). Returns the target's path segments.
    fn admit(&self, req: &Request) -> Result<Vec<String>, Response> {
        if req.headers.iter().filter(|(n, _)| n == "host").count() > 1 {
            return Err(text_response(400, "more than one Host header"));
        }
        if let Some(host) = req.header("host").filter(|h| !loopback_host(h)) {
            return Err(text_response(
                421,
                &format!("this server answers for 127.0.0.1 and localhost only, not {host:?}"),
            ));
        }
        let segs =
            path::segments(&req.target).map_err(|path::BadTarget(why)| text_response(400, why))?;
        let len = req.content_length().unwrap_or(0);
        if segs == ["report"] {
            if req.method != "POST" {
                return Err(Response::status(405).with("Allow", "POST"));
            }
            if req.content_length().is_none() {
                return Err(Response::status(411));
            }
            if len > MAX_REPORT_BYTES {
                return Err(Response::status(413));
            }
            // Only this server's own pages report: a page of another origin could send a
            // "simple" cross-origin POST (no preflight) — but not with this content type, and
            // its browser names its origin.
            if let Some(origin) = req.header("origin").filter(|o| !loopback_origin(o)) {
                return Err(text_response(
                    403,
                    &format!("reports come from this server's pages, not {origin:?}"),
                ));
            }
            let json = req.header("content-type").is_some_and(|t| {
                t.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
            if !json {
                return Err(text_response(415, "a report is application/json"));
            }
            return Ok(segs);
        }
        if !matches!(req.method.as_str(), "GET" | "HEAD") {
            return Err(Response::status(405).with("Allow", "GET, HEAD"));
        }
        // A GET must not carry a body.
        if len > 0 {
            return Err(Response::status(413));
        }
        Ok(segs)
    }

    /// The response to an admitted request.
    fn route(&self, req: &Request, segs: &[&str], body: &[u8]) -> Response {
        let json = mime_type(Path::new("x.json"));
        match segs {
            ["report"] => self.accept_report(body),
            ["cases.json"] => {
                Response::bytes(200, json, smoke::cases_document().to_string().into_bytes())
            }
            ["hold"] => self.hold(&req.target),
            [smoke::REGISTRY_FILE] if self.registry.is_some() => {
                let body = self.registry.clone().unwrap_or_default();
                Response::bytes(200, json, body.into_bytes())
            }
            [smoke::EXTRA_ROUTE, name] => match self.extra.iter().find(|(n, _)| n == name) {
                Some((_, file)) => serve_file(file),
                None => Response::status(404),
            },
            [BENCH_ROUTE, name] => match self.bench.iter().find(|(n, _)| n == name) {
                Some((_, file)) => serve_file(file),
                None => Response::status(404),
            },
            _ => match self.resolve(segs) {
                Some(file) => serve_file(&file),
                None => Response::status(404),
            },
        }
    }

    /// The file a route names, inside its root, or None.
    fn resolve(&self, segs: &[&str]) -> Option<PathBuf> {
        if segs.iter().any(|s| s.starts_with('.')) {
            return None;
        }
        let (root, rel): (&Path, &[&str]) = match segs {
            [] => (&self.root, &["index.html"]),
            ["wasm", "trlm.wasm"] => return self.wasm.clone().filter(|p| p.is_file()),
            // The simd128 build, served whenever a module is.
            ["wasm", "trlm-simd128.wasm"] => {
                return self
                    .wasm
                    .as_ref()
                    .and_then(|_| smoke::wasm_simd_module_path())
            }
            ["wasm", ..] => return None,
            ["corpus", name] if name.ends_with(".slm") => (&self.corpus, &segs[1..]),
            ["corpus", "malformed", name] if name.ends_with(".slm") || *name == "manifest.json" => {
                (&self.corpus, &segs[1..])
            }
            ["corpus", "malformed", "adapters", name]
                if [".adapter", ".plan", "manifest.json"]
                    .iter()
                    .any(|e| name.ends_with(e)) =>
            {
                (&self.corpus, &segs[1..])
            }
            ["corpus", ..] => return None,
            _ => (&self.root, segs),
        };
        let mut path = root.to_path_buf();
        path.extend(rel);
        let canonical = path.canonicalize().ok()?;
        (canonical.starts_with(root) && canonical.is_file()).then_some(canonical)
    }

    /// `POST /report`: a JSON body (of at most [`MAX_REPORT_BYTES`], checked by
    /// [`Handler::admit`]), queued for the runner.
    fn accept_report(&self, body: &[u8]) -> Response {
        let report: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return text_response(400, "the report is not JSON"),
        };
        let run = report["run"].as_str().map(str::to_string);
        match self.reports.try_send(report) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return text_response(503, "report queue full"),
            // Nobody listens (a plain `serve`): the report is dropped.
            Err(TrySendError::Disconnected(_)) => {}
        }
        if let Some(run) = run.filter(|r| r.len() <= crate::limits::MAX_RUN_ID_BYTES) {
            let mut runs = self.released.runs.lock().unwrap();
            if !runs.contains(&run) {
                if runs.len() == crate::limits::MAX_RELEASED_RUNS {
                    runs.pop_front();
                }
                runs.push_back(run);
            }
            self.released.arrived.notify_all();
        }
        Response::empty(204)
    }

    /// `GET /hold?run=ID`: answers (204) once a report of run ID (percent-decoded, as the page
    /// encodes it) arrived, or after the hold timeout, or when the server stops. The page
    /// requests it as an image to hold its load event, and so a headless browser's
    /// `--screenshot`, until its generation was reported.
    fn hold(&self, target: &str) -> Response {
        // Holds take connection slots for up to the hold timeout: at most MAX_HOLDS at once.
        if self.holds.fetch_add(1, Ordering::SeqCst) >= crate::limits::MAX_HOLDS {
            self.holds.fetch_sub(1, Ordering::SeqCst);
            return text_response(503, "too many holds");
        }
        let response = self.hold_until_reported(target);
        self.holds.fetch_sub(1, Ordering::SeqCst);
        response
    }

    /// [`Handler::hold`] once admitted.
    fn hold_until_reported(&self, target: &str) -> Response {
        let raw = target
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("run="))
            .unwrap_or_default();
        let Some(run) = path::decode_query_value(raw) else {
            return text_response(400, "the run id is not percent-encoded UTF-8");
        };
        let deadline = Instant::now() + self.timeouts.hold;
        let mut runs = self.released.runs.lock().unwrap();
        while !runs.contains(&run) && !self.stopping.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            runs = self
                .released
                .arrived
                .wait_timeout(runs, deadline - now)
                .unwrap()
                .0;
        }
        Response::empty(204)
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _guard = self.released.runs.lock().unwrap();
        self.released.arrived.notify_all();
    }
}

/// `files` canonicalized, each with its file name (`what` names them in errors).
fn by_name(what: &str, files: &[PathBuf]) -> Result<Vec<(String, PathBuf)>> {
    files
        .iter()
        .map(|p| {
            let p = p
                .canonicalize()
                .with_context(|| format!("{what} {}", p.display()))?;
            let name = p.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            Ok((name.to_string(), p.clone()))
        })
        .collect()
}

/// Headers every response carries.
const COMMON_HEADERS: [(&str, &str); 5] = [
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Embedder-Policy", "require-corp"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("X-Content-Type-Options", "nosniff"),
];

fn finish(mut resp: Response) -> Response {
    for (name, value) in COMMON_HEADERS {
        resp = resp.with(name, value);
    }
    resp
}

/// A plain-text response: `CODE why\n`.
fn text_response(status: u16, why: &str) -> Response {
    let body = format!("{status} {why}\n").into_bytes();
    Response::bytes(status, "text/plain; charset=utf-8", body)
}

/// The Content-Type of a served file, by extension.
pub fn mime_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// A file with its Content-Length (never chunked: the page sizes its chunked load from it).
fn serve_file(file: &Path) -> Response {
    let opened = std::fs::File::open(file).and_then(|f| Ok((f.metadata()?.len(), f)));
    match opened {
        Ok((len, f)) => Response {
            status: 200,
            headers: vec![("Content-Type", mime_type(file).to_string())],
            body: http::Body::File(f, len),
        },
        Err(_) => Response::status(404),
    }
}

/// Whether a `Host` header names this loopback server: 127.0.0.1 or localhost, with any port. A
/// page elsewhere that rebinds its own name to 127.0.0.1 (DNS rebinding) sends that name, and is
/// refused: it cannot read what is served or post reports.
/// Whether an `Origin` is one of this server's (http, a loopback host, any port).
fn loopback_origin(origin: &str) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|host| !host.contains('/') && loopback_host(host))
}

fn loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost")
}

/// Serves one connection: one request, its response, then a lingering close (the rest of what
/// the client sends is read and dropped, within [`crate::limits::MAX_LINGER_BYTES`] and
/// [`crate::limits::LINGER_TIMEOUT`], so it reads a refusal rather than a reset).
fn serve_connection(handler: &Handler, mut stream: TcpStream, start: Instant) {
    let answer = handler.exchange(&mut stream, start);
    let mut out = DeadlineWriter {
        stream: &stream,
        deadline: Instant::now() + handler.timeouts.write,
    };
    // A client that went away, or reads too slowly, is not the server's problem.
    let _ = http::write_response(&mut out, answer.response, answer.with_body);
    linger(stream, answer.refused);
}

/// Writes to a stream until a deadline for the whole response: each write may block only for
/// the time left, and none starts after it.
struct DeadlineWriter<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl std::io::Write for DeadlineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_write_timeout(Some(left))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

fn linger(mut stream: TcpStream, refused: bool) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now()
        + if refused {
            crate::limits::LINGER_TIMEOUT
        } else {
            // A served client closes at once; do not wait long for one that does not.
            crate::limits::LINGER_TIMEOUT / 4
        };
    let mut drained = 0;
    let mut buf = [0u8; 16 * 1024];
    while drained < crate::limits::MAX_LINGER_BYTES && stream.set_deadline(deadline).is_ok() {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Counts a connection while it lives.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A server accepting connections on its own thread; stops when dropped.
pub struct RunningServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handler: Arc<Handler>,
    acceptor: Option<JoinHandle<()>>,
    reports: Receiver<serde_json::Value>,
}

impl RunningServer {
    /// Binds and starts serving. Refuses any bind address but 127.0.0.1.
    pub fn start(config: ServeConfig) -> Result<RunningServer> {
        if config.bind != LOOPBACK {
            bail!(
                "refusing to bind {}: the smoke server binds 127.0.0.1 only",
                config.bind
            );
        }
        let (handler, reports) = Handler::new(&config)?;
        let handler = Arc::new(handler);
        let listener = TcpListener::bind(SocketAddr::new(config.bind, config.port))
            .with_context(|| format!("binding {}:{}", config.bind, config.port))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (handler, stop) = (handler.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(&listener, &handler, &stop))
        };
        Ok(RunningServer {
            addr,
            stop,
            handler,
            acceptor: Some(acceptor),
            reports,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` + `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// The reports the page posted, in arrival order.
    pub fn reports(&self) -> &Receiver<serde_json::Value> {
        &self.reports
    }

    /// Stops accepting and waits for the accepting thread — unless 127.0.0.1 cannot be reached
    /// to wake it (loopback down), when it is left blocked rather than waited for. Connections
    /// being served finish on their own threads (holds answer at once).
    pub fn shutdown(mut self) {
        self.stop_accepting();
    }

    fn stop_accepting(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handler.stop();
        if let Some(acceptor) = self.acceptor.take() {
            // Wake the blocking accept. When no connection can be made (loopback down), the
            // thread stays blocked in accept: it is left behind rather than waited for forever.
            if TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok() {
                let _ = acceptor.join();
            }
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

fn accept_loop(listener: &TcpListener, handler: &Arc<Handler>, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = conn else {
            // Out of descriptors or an aborted handshake: try again shortly.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let start = Instant::now();
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let busy = finish(text_response(503, "too many connections"));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = http::write_response(&mut stream, busy, true);
            let _ = stream.shutdown(Shutdown::Write);
            continue;
        }
        let slot = Slot(active.clone());
        let handler = handler.clone();
        // A thread that cannot be had drops its connection (and its slot).
        let _ = std::thread::Builder::new()
            .name("trlm-serve".into())
            .spawn(move || {
                let _slot = slot;
                serve_connection(&handler, stream, start);
            });
    }
}
