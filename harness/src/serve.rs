//! `tinyrustlm serve`: the loopback HTTP server of the browser smoke page. It serves
//! browser-smoke/ as its root, `/wasm/trlm.wasm` and `/wasm/trlm-simd128.wasm` (the runtime's
//! scalar and simd128 modules), `/corpus/` (the corpus models and the malformed matrix),
//! `/cases.json` (the standard cases) and models added for one run under `/extra/` (then listed
//! in the `/registry.json` it serves), and accepts
//! `POST /report` from the page, handing each report to the runner through a channel.
//!
//! It binds 127.0.0.1 only, serves GET and HEAD only for files, refuses every form of path
//! traversal (serve/path.rs, then canonicalization under the root), caps request headers (431)
//! and report bodies (413), and answers with `Cache-Control: no-store`, cross-origin isolation
//! (COOP same-origin, COEP require-corp) and `X-Content-Type-Options: nosniff`.
//!
//! Limitation: tiny_http reads a request's header lines before the handler sees them, so the
//! header cap is enforced after tiny_http buffered them (the server listens on loopback only).

pub mod path;

use crate::smoke;
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tiny_http::{Header, Method, Request, Response, StatusCode};

/// The only address the server binds.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Largest request line plus header fields, in bytes (431 above it).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest `POST /report` body (413 above it).
pub const MAX_REPORT_BYTES: usize = 4 << 20;
/// Reports queued for the runner before the server answers 503.
pub const MAX_QUEUED_REPORTS: usize = 256;
/// Request-handling threads.
pub const WORKERS: usize = 4;
/// Longest a `/hold` request waits for its run's report.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(60);
/// The route of the runtime's module.
pub const WASM_ROUTE: &str = "/wasm/trlm.wasm";

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
        }
    }
}

/// Run ids whose report arrived (releases `/hold?run=ID`).
#[derive(Default)]
struct Released {
    runs: Mutex<HashSet<String>>,
    arrived: Condvar,
}

/// What the request handlers share.
struct Shared {
    root: PathBuf,
    corpus: PathBuf,
    wasm: Option<PathBuf>,
    /// `/registry.json` with the extra models (None: the committed file).
    registry: Option<String>,
    /// The extra models by file name.
    extra: Vec<(String, PathBuf)>,
    reports: SyncSender<serde_json::Value>,
    released: Released,
}

/// A server running on its worker threads; stops when dropped.
pub struct RunningServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
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
        let mut extra = Vec::new();
        for p in &config.extra_models {
            let p = p
                .canonicalize()
                .with_context(|| format!("extra model {}", p.display()))?;
            let name = p.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            extra.push((name.to_string(), p.clone()));
        }
        let server = tiny_http::Server::http(SocketAddr::new(config.bind, config.port))
            .map_err(|e| anyhow::anyhow!("binding {}:{}: {e}", config.bind, config.port))?;
        let addr = server
            .server_addr()
            .to_ip()
            .context("the server has no IP address")?;
        let server = Arc::new(server);
        let (tx, reports) = sync_channel(MAX_QUEUED_REPORTS);
        let ctx = Arc::new(Shared {
            root,
            corpus,
            wasm: config.wasm,
            registry,
            extra,
            reports: tx,
            released: Released::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..WORKERS)
            .map(|_| {
                let (server, ctx, stop) = (server.clone(), ctx.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match server.recv_timeout(Duration::from_millis(200)) {
                            Ok(Some(req)) => handle(&ctx, req),
                            Ok(None) => {}
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        Ok(RunningServer {
            server,
            addr,
            stop,
            workers,
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

    /// Stops the workers and waits for them.
    pub fn shutdown(mut self) {
        self.stop_workers();
    }

    fn stop_workers(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is ASCII")
}

/// Headers every response carries.
fn common_headers() -> Vec<Header> {
    vec![
        header("Cache-Control", "no-store"),
        header("Cross-Origin-Opener-Policy", "same-origin"),
        header("Cross-Origin-Embedder-Policy", "require-corp"),
        header("Cross-Origin-Resource-Policy", "same-origin"),
        header("X-Content-Type-Options", "nosniff"),
    ]
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

fn respond<R: Read>(req: Request, mut resp: Response<R>, extra: &[Header]) {
    for h in common_headers().into_iter().chain(extra.iter().cloned()) {
        resp.add_header(h);
    }
    // A client that went away is not the server's problem.
    let _ = req.respond(resp);
}

fn status(req: Request, code: u16, text: &str, extra: &[Header]) {
    let body = format!("{code} {text}\n");
    let resp = Response::from_string(body)
        .with_status_code(StatusCode(code))
        .with_header(header("Content-Type", "text/plain; charset=utf-8"));
    respond(req, resp, extra);
}

fn header_bytes(req: &Request) -> usize {
    let fields: usize = req
        .headers()
        .iter()
        .map(|h| h.field.as_str().as_str().len() + h.value.as_str().len() + 4)
        .sum();
    req.url().len() + fields
}

fn handle(ctx: &Shared, req: Request) {
    if header_bytes(&req) > MAX_HEADER_BYTES {
        return status(req, 431, "Request Header Fields Too Large", &[]);
    }
    let segs = match path::segments(req.url()) {
        Ok(s) => s,
        Err(path::BadTarget(why)) => return status(req, 400, why, &[]),
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if segs == ["report"] {
        if *req.method() != Method::Post {
            return status(req, 405, "Method Not Allowed", &[header("Allow", "POST")]);
        }
        return accept_report(ctx, req);
    }
    if !matches!(req.method(), Method::Get | Method::Head) {
        return status(
            req,
            405,
            "Method Not Allowed",
            &[header("Allow", "GET, HEAD")],
        );
    }
    // A GET must not carry a body.
    if req.body_length().is_some_and(|n| n > 0) {
        return status(req, 413, "Payload Too Large", &[]);
    }
    match segs.as_slice() {
        ["cases.json"] => {
            let body = smoke::cases_document().to_string();
            let resp = Response::from_string(body)
                .with_header(header("Content-Type", mime_type(Path::new("x.json"))));
            respond(req, resp, &[])
        }
        ["hold"] => hold(ctx, req),
        [smoke::REGISTRY_FILE] if ctx.registry.is_some() => {
            let body = ctx.registry.clone().unwrap_or_default();
            let resp = Response::from_string(body)
                .with_header(header("Content-Type", mime_type(Path::new("x.json"))));
            respond(req, resp, &[])
        }
        [smoke::EXTRA_ROUTE, name] => match ctx.extra.iter().find(|(n, _)| n == name) {
            Some((_, file)) => serve_file(req, file),
            None => status(req, 404, "Not Found", &[]),
        },
        _ => match resolve(ctx, &segs) {
            Some(file) => serve_file(req, &file),
            None => status(req, 404, "Not Found", &[]),
        },
    }
}

/// The file a route names, inside its root, or None.
fn resolve(ctx: &Shared, segs: &[&str]) -> Option<PathBuf> {
    if segs.iter().any(|s| s.starts_with('.')) {
        return None;
    }
    let (root, rel): (&Path, &[&str]) = match segs {
        [] => (&ctx.root, &["index.html"]),
        ["wasm", "trlm.wasm"] => return ctx.wasm.clone().filter(|p| p.is_file()),
        // The simd128 build, served whenever a module is.
        ["wasm", "trlm-simd128.wasm"] => {
            return ctx
                .wasm
                .as_ref()
                .and_then(|_| smoke::wasm_simd_module_path())
        }
        ["wasm", ..] => return None,
        ["corpus", name] if name.ends_with(".slm") => (&ctx.corpus, &segs[1..]),
        ["corpus", "malformed", name] if name.ends_with(".slm") || *name == "manifest.json" => {
            (&ctx.corpus, &segs[1..])
        }
        ["corpus", ..] => return None,
        _ => (&ctx.root, segs),
    };
    let mut path = root.to_path_buf();
    path.extend(rel);
    let canonical = path.canonicalize().ok()?;
    (canonical.starts_with(root) && canonical.is_file()).then_some(canonical)
}

fn serve_file(req: Request, file: &Path) {
    match std::fs::File::open(file) {
        Ok(f) => {
            // Content-Length, never chunked: the page sizes its chunked load from it.
            let resp = Response::from_file(f)
                .with_chunked_threshold(usize::MAX)
                .with_header(header("Content-Type", mime_type(file)));
            respond(req, resp, &[])
        }
        Err(_) => status(req, 404, "Not Found", &[]),
    }
}

/// `POST /report`: a JSON body of at most [`MAX_REPORT_BYTES`], queued for the runner.
fn accept_report(ctx: &Shared, mut req: Request) {
    if req.body_length().is_some_and(|n| n > MAX_REPORT_BYTES) {
        return status(req, 413, "Payload Too Large", &[]);
    }
    let mut body = Vec::new();
    let read = req
        .as_reader()
        .take(MAX_REPORT_BYTES as u64 + 1)
        .read_to_end(&mut body);
    if read.is_err() {
        return status(req, 400, "unreadable body", &[]);
    }
    if body.len() > MAX_REPORT_BYTES {
        return status(req, 413, "Payload Too Large", &[]);
    }
    let report: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return status(req, 400, "the report is not JSON", &[]),
    };
    let run = report["run"].as_str().map(str::to_string);
    match ctx.reports.try_send(report) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => return status(req, 503, "report queue full", &[]),
        // Nobody listens (a plain `serve`): the report is dropped.
        Err(TrySendError::Disconnected(_)) => {}
    }
    if let Some(run) = run {
        ctx.released.runs.lock().unwrap().insert(run);
        ctx.released.arrived.notify_all();
    }
    let resp = Response::empty(StatusCode(204));
    respond(req, resp, &[])
}

/// `GET /hold?run=ID`: answers (204) once a report of run ID arrived, or after
/// [`HOLD_TIMEOUT`]. The page requests it as an image to hold its load event, and so a
/// headless browser's `--screenshot`, until its generation was reported.
fn hold(ctx: &Shared, req: Request) {
    let run = req
        .url()
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("run="))
        .unwrap_or_default()
        .to_string();
    let deadline = Instant::now() + HOLD_TIMEOUT;
    let mut runs = ctx.released.runs.lock().unwrap();
    while !runs.contains(&run) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        runs = ctx
            .released
            .arrived
            .wait_timeout(runs, deadline - now)
            .unwrap()
            .0;
    }
    drop(runs);
    respond(req, Response::empty(StatusCode(204)), &[])
}
