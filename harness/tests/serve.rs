//! `tinyrustlm serve` against raw HTTP requests on an ephemeral 127.0.0.1 port: every rejection
//! (bind address, traversal forms, absolute URLs, methods, header and body caps, malformed
//! heads), MIME types, the security headers, reports reaching the runner's channel, models
//! added to the registry for one run (`/extra/`), and abuse: slow clients timed out while
//! others are served, many connections at once. The caps' exact boundaries are in caps.rs.

use harness::serve::{RunningServer, ServeConfig, Timeouts, MAX_HEADER_BYTES, MAX_REPORT_BYTES};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A served directory tree in a temporary folder: root/{index.html, app.js, .hidden},
/// corpus/{m.slm, notes.txt, malformed/manifest.json}, a secret file beside both, and a
/// symlink in root pointing at the secret.
struct Tree {
    dir: PathBuf,
}

impl Tree {
    fn new(tag: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("trlm-serve-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["root/sub", "corpus/malformed"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let files: [(&str, &[u8]); 9] = [
            ("root/index.html", b"<!doctype html><p>index</p>"),
            ("root/app.js", b"export {};"),
            ("root/style.css", b"p{}"),
            ("root/sub/data.json", b"{}"),
            ("root/.hidden", b"hidden"),
            ("corpus/m.slm", b"\x89SLM model bytes"),
            ("corpus/notes.txt", b"not served"),
            ("corpus/malformed/manifest.json", b"{\"cases\":[]}"),
            ("secret.txt", b"SECRET"),
        ];
        for (p, data) in files {
            std::fs::write(dir.join(p), data).unwrap();
        }
        std::fs::write(dir.join("module.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::os::unix::fs::symlink(dir.join("secret.txt"), dir.join("root/link.txt")).unwrap();
        Tree { dir }
    }

    fn config(&self) -> ServeConfig {
        ServeConfig {
            root: self.dir.join("root"),
            corpus: self.dir.join("corpus"),
            wasm: Some(self.dir.join("module.wasm")),
            ..ServeConfig::default()
        }
    }

    fn start(&self) -> RunningServer {
        RunningServer::start(self.config()).unwrap()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Sends raw bytes and reads the whole reply (the request asks the server to close).
fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    // The server may close while the client still writes; what it answered is what counts.
    let _ = s.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no reply head in {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head,
        body: buf[split + 4..].to_vec(),
    }
}

fn request(addr: SocketAddr, method: &str, target: &str) -> Reply {
    raw(
        addr,
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
}

fn post(addr: SocketAddr, target: &str, body: &[u8]) -> Reply {
    let mut req = format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw(addr, &req)
}

#[test]
fn binds_loopback_only() {
    let tree = Tree::new("bind");
    for addr in ["0.0.0.0", "::", "::1", "127.0.0.2", "192.168.1.1"] {
        let cfg = ServeConfig {
            bind: addr.parse::<IpAddr>().unwrap(),
            ..tree.config()
        };
        let err = RunningServer::start(cfg).err().expect(addr).to_string();
        assert!(err.contains("127.0.0.1 only"), "{addr}: {err}");
    }
    let server = tree.start();
    assert_eq!(server.addr().ip().to_string(), "127.0.0.1");
    assert_ne!(server.addr().port(), 0);
}

#[test]
fn serves_files_with_types_and_security_headers() {
    let tree = Tree::new("files");
    let server = tree.start();
    let a = server.addr();
    for (target, mime, body) in [
        (
            "/",
            "text/html; charset=utf-8",
            &b"<!doctype html><p>index</p>"[..],
        ),
        (
            "/index.html?smoke=1",
            "text/html; charset=utf-8",
            b"<!doctype html><p>index</p>",
        ),
        ("/app.js", "text/javascript; charset=utf-8", b"export {};"),
        ("/style.css", "text/css; charset=utf-8", b"p{}"),
        ("/sub/data.json", "application/json", b"{}"),
        (
            "/corpus/m.slm",
            "application/octet-stream",
            b"\x89SLM model bytes",
        ),
        (
            "/corpus/malformed/manifest.json",
            "application/json",
            b"{\"cases\":[]}",
        ),
        ("/wasm/trlm.wasm", "application/wasm", b"\0asm\x01\0\0\0"),
    ] {
        let r = request(a, "GET", target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.body, body, "{target}");
        assert_eq!(r.header("Content-Type").as_deref(), Some(mime), "{target}");
        assert_eq!(
            r.header("Content-Length"),
            Some(body.len().to_string()),
            "{target}"
        );
        assert_eq!(r.header("Cache-Control").as_deref(), Some("no-store"));
        assert_eq!(
            r.header("Cross-Origin-Opener-Policy").as_deref(),
            Some("same-origin")
        );
        assert_eq!(
            r.header("Cross-Origin-Embedder-Policy").as_deref(),
            Some("require-corp")
        );
        assert_eq!(
            r.header("X-Content-Type-Options").as_deref(),
            Some("nosniff")
        );
    }
    let head = request(a, "HEAD", "/app.js");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // The standard cases are generated.
    let cases = request(a, "GET", "/cases.json");
    assert_eq!(cases.status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&cases.body).unwrap();
    assert_eq!(doc["cases"].as_array().unwrap().len(), 12);
}

#[test]
fn refuses_traversal_and_paths_outside_the_roots() {
    let tree = Tree::new("traversal");
    let server = tree.start();
    let a = server.addr();
    for target in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/..\\secret.txt",
        "/a%00b",
        "//127.0.0.1/secret.txt",
        "http://127.0.0.1/secret.txt",
        "http://example.com/index.html",
        "/index.html%",
        "/sub//data.json",
        "/./index.html",
        "/corpus/../secret.txt",
    ] {
        let r = request(a, "GET", target);
        assert!(
            r.status == 400 || r.status == 404,
            "{target}: {} {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        assert!(!r.body.windows(6).any(|w| w == b"SECRET"), "{target}");
        assert_eq!(
            r.header("X-Content-Type-Options").as_deref(),
            Some("nosniff")
        );
    }
    // Inside the root but leading outside it, hidden, unknown, or not a corpus model: 404.
    for target in [
        "/link.txt",
        "/.hidden",
        "/nope.html",
        "/sub",
        "/corpus/notes.txt",
        "/corpus/missing.slm",
        "/corpus/malformed/other.json",
        "/wasm/other.wasm",
    ] {
        assert_eq!(request(a, "GET", target).status, 404, "{target}");
    }
}

#[test]
fn only_get_and_head_for_files_and_only_post_for_reports() {
    let tree = Tree::new("methods");
    let server = tree.start();
    let a = server.addr();
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = request(a, method, "/index.html");
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("Allow").as_deref(), Some("GET, HEAD"));
    }
    let r = request(a, "GET", "/report");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow").as_deref(), Some("POST"));
}

#[test]
fn caps_headers_and_bodies() {
    let tree = Tree::new("caps");
    let server = tree.start();
    let a = server.addr();
    let big = "x".repeat(MAX_HEADER_BYTES);
    let r = raw(
        a,
        format!("GET / HTTP/1.1\r\nHost: {a}\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 431);
    // Announced too large: refused before reading.
    let r = raw(
        a,
        format!(
            "POST /report HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            MAX_REPORT_BYTES + 1
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413);
    // Sent too large.
    let mut body = b"{\"pad\":\"".to_vec();
    body.resize(MAX_REPORT_BYTES + 16, b'a');
    assert_eq!(post(a, "/report", &body).status, 413);
    // A body on a GET.
    let r = raw(
        a,
        format!("GET / HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc")
            .as_bytes(),
    );
    assert_eq!(r.status, 413);
}

#[test]
fn reports_reach_the_runner() {
    let tree = Tree::new("reports");
    let server = tree.start();
    let a = server.addr();
    assert_eq!(post(a, "/report", b"not json").status, 400);
    for i in 0..3 {
        let r = post(
            a,
            "/report",
            format!("{{\"run\":\"r\",\"i\":{i}}}").as_bytes(),
        );
        assert_eq!(r.status, 204);
        assert_eq!(r.header("Cache-Control").as_deref(), Some("no-store"));
    }
    for i in 0..3 {
        let got = server
            .reports()
            .recv_timeout(Duration::from_secs(5))
            .unwrap();
        assert_eq!(got["i"], i);
    }
    // A hold for a run whose report arrived answers at once.
    assert_eq!(request(a, "GET", "/hold?run=r").status, 204);
    server.shutdown();
}

#[test]
fn extra_models_are_served_and_listed_for_the_run_only() {
    let tree = Tree::new("extra");
    // A registry by spec/adapters.md's rules (the server refuses any other).
    let committed = format!(
        r#"{{"version":1,"models":[{{"id":"m","path":"corpus/m.slm","bytes":16,"sha256":"{}","dtype":"f32","shape":"-"}}],"adapters":[]}}"#,
        "0".repeat(64)
    );
    std::fs::write(tree.dir.join("root/registry.json"), &committed).unwrap();
    let outside = tree.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let model = b"\x89SLM an extra model".to_vec();
    std::fs::write(outside.join("x.slm"), &model).unwrap();
    let server = RunningServer::start(ServeConfig {
        extra_models: vec![outside.join("x.slm")],
        ..tree.config()
    })
    .unwrap();
    let addr = server.addr();
    let reg = request(addr, "GET", "/registry.json");
    assert_eq!(reg.status, 200);
    let reg: serde_json::Value = serde_json::from_slice(&reg.body).unwrap();
    let names: Vec<_> = reg["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["path"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("m", "corpus/m.slm"), ("x", "extra/x.slm")]);
    assert_eq!(reg["models"][1]["bytes"], model.len());
    let x = request(addr, "GET", "/extra/x.slm");
    assert_eq!((x.status, x.body), (200, model));
    for target in ["/extra/y.slm", "/extra/sub/x.slm"] {
        assert_eq!(request(addr, "GET", target).status, 404, "{target}");
    }
    assert_eq!(request(addr, "GET", "/extra/../outside/x.slm").status, 400);
    server.shutdown();
    // Without extra models the committed file is served as it is.
    let plain = tree.start();
    assert_eq!(
        request(plain.addr(), "GET", "/registry.json").body,
        committed.as_bytes()
    );
    // A name the registry already has is refused.
    std::fs::write(outside.join("m.slm"), b"dup").unwrap();
    let dup = RunningServer::start(ServeConfig {
        extra_models: vec![outside.join("m.slm")],
        ..tree.config()
    });
    assert!(dup.err().unwrap().to_string().contains("already has"));
}

/// A server whose clients get `secs` seconds for a head and for a body.
fn start_with_timeouts(tree: &Tree, secs: u64) -> RunningServer {
    RunningServer::start(ServeConfig {
        timeouts: Timeouts {
            header: Duration::from_secs(secs),
            body: Duration::from_secs(secs),
            ..Timeouts::default()
        },
        ..tree.config()
    })
    .unwrap()
}

/// Reads whatever the server answers until it closes, with a deadline.
fn read_reply(mut s: TcpStream, within: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf
}

fn status_of(reply: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(reply);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[test]
fn refuses_every_traversal_form() {
    let tree = Tree::new("traversal2");
    let server = tree.start();
    let a = server.addr();
    let port = a.port();
    for target in [
        // Plain.
        "/../../../../etc/passwd".to_string(),
        "/sub/./../../secret.txt".into(),
        "/sub/..".into(),
        "/..".into(),
        // Percent-encoded, in every case and mixture.
        "/%2e%2e%2fsecret.txt".into(),
        "/..%2fsecret.txt".into(),
        "/%2e./secret.txt".into(),
        "/sub/%2E%2e/%2e%2E/secret.txt".into(),
        "/%2fsecret.txt".into(),
        "/sub%2F..%2F..%2Fsecret.txt".into(),
        // Backslashes, raw and encoded.
        "/sub\\..\\..\\secret.txt".into(),
        "/..\\..\\secret.txt".into(),
        "/%5c..%5csecret.txt".into(),
        "/%5C%2e%2e%5Csecret.txt".into(),
        // Control bytes and overlong UTF-8 for '.' and '/'.
        "/%00/secret.txt".into(),
        "/%c0%ae%c0%ae/secret.txt".into(),
        "/%c0%afsecret.txt".into(),
        // Absolute and authority forms in the request line.
        format!("http://127.0.0.1:{port}/index.html"),
        format!("HTTP://127.0.0.1:{port}/../secret.txt"),
        "https://127.0.0.1/index.html".into(),
        "file:///etc/passwd".into(),
        format!("127.0.0.1:{port}"),
        "*".into(),
        "//127.0.0.1/index.html".into(),
    ] {
        let r = request(a, "GET", &target);
        assert_eq!(
            r.status,
            400,
            "{target}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(!r.body.windows(6).any(|w| w == b"SECRET"), "{target}");
    }
    // Double encoding decodes once: a literal "%2e%2e" name, which does not exist.
    assert_eq!(request(a, "GET", "/%252e%252e/secret.txt").status, 404);
    // The server keeps serving.
    assert_eq!(request(a, "GET", "/app.js").status, 200);
}

#[test]
fn methods_other_than_get_head_post_and_posts_to_files_are_refused() {
    let tree = Tree::new("methods2");
    let server = tree.start();
    let a = server.addr();
    for method in [
        "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "BREW", "get",
    ] {
        for (target, allow) in [
            ("/index.html", "GET, HEAD"),
            ("/", "GET, HEAD"),
            ("/corpus/m.slm", "GET, HEAD"),
            ("/report", "POST"),
        ] {
            let r = request(a, method, target);
            assert_eq!(r.status, 405, "{method} {target}");
            assert_eq!(
                r.header("Allow").as_deref(),
                Some(allow),
                "{method} {target}"
            );
        }
    }
    // POST to a file path, with a body, is refused and writes nothing.
    for target in ["/index.html", "/corpus/m.slm", "/sub/data.json", "/new.txt"] {
        let r = post(a, target, b"{\"run\":\"x\"}");
        assert_eq!(r.status, 405, "{target}");
        assert_eq!(r.header("Allow").as_deref(), Some("GET, HEAD"));
    }
    assert!(!tree.dir.join("root/new.txt").exists());
    assert_eq!(
        request(a, "GET", "/index.html").body,
        b"<!doctype html><p>index</p>"
    );
    // Malformed request lines: 400; an unknown major version: 505.
    for (raw, status) in [
        ("GET\r\n\r\n".to_string(), 400),
        ("GET /\r\n\r\n".to_string(), 400),
        ("GET / HTTP/1.1 extra\r\n\r\n".to_string(), 400),
        ("GE T / HTTP/1.1\r\n\r\n".to_string(), 400),
        ("GET / HTTP/3\r\n\r\n".to_string(), 505),
        ("\r\n\r\n".to_string(), 400),
        (
            "POST /report HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
            501,
        ),
        // A report without a Content-Length.
        ("POST /report HTTP/1.1\r\n\r\n".to_string(), 411),
    ] {
        assert_eq!(raw_status(a, raw.as_bytes()), Some(status), "{raw:?}");
    }
    // HTTP/1.0 and HEAD still work.
    let r = raw(a, b"HEAD /app.js HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length").as_deref(), Some("10"));
    assert!(r.body.is_empty());
}

/// The status the server answers `request` with.
fn raw_status(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    status_of(&read_reply(s, Duration::from_secs(10)))
}

#[test]
fn oversized_heads_and_bodies_are_refused_without_reading_them() {
    let tree = Tree::new("oversized");
    let server = start_with_timeouts(&tree, 30);
    let a = server.addr();
    // Many small fields over the cap.
    let mut req = format!("GET / HTTP/1.1\r\nHost: {a}\r\n");
    for i in 0..MAX_HEADER_BYTES / 16 {
        req.push_str(&format!("X-F{i:05}: 0123\r\n"));
    }
    req.push_str("\r\n");
    assert_eq!(raw(a, req.as_bytes()).status, 431);
    // One endless line: refused once the cap is passed, not at the timeout.
    let mut s = TcpStream::connect(a).unwrap();
    let t = Instant::now();
    let line = vec![b'A'; 4 * MAX_HEADER_BYTES];
    let _ = s.write_all(&line);
    assert_eq!(
        status_of(&read_reply(s, Duration::from_secs(10))),
        Some(431)
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    // A 64 MiB body announced and sent: 413 without the server reading it all.
    let mut s = TcpStream::connect(a).unwrap();
    let head = format!(
        "POST /report HTTP/1.1\r\nHost: {a}\r\nContent-Length: {}\r\n\r\n",
        64 << 20
    );
    s.write_all(head.as_bytes()).unwrap();
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..64 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
            }
        })
    };
    assert_eq!(
        status_of(&read_reply(s, Duration::from_secs(10))),
        Some(413)
    );
    writer.join().unwrap();
    // A body longer than its Content-Length: the extra bytes are refused.
    let r = raw(
        a,
        format!(
            "POST /report HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}trailing"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert_eq!(request(a, "GET", "/app.js").status, 200);
}

#[test]
fn slow_clients_time_out_while_others_are_served() {
    let tree = Tree::new("slow");
    // Four seconds: room for a loaded CI machine to serve the twenty requests below before any
    // slow client times out (a request stuck behind one would take the whole timeout).
    const TIMEOUT: Duration = Duration::from_secs(4);
    let server = start_with_timeouts(&tree, TIMEOUT.as_secs());
    let a = server.addr();
    let t = Instant::now();
    // Silent; half a request line; a head without its end; a head and half a body.
    let silent = TcpStream::connect(a).unwrap();
    let mut half_line = TcpStream::connect(a).unwrap();
    half_line.write_all(b"GET /index.ht").unwrap();
    let mut half_head = TcpStream::connect(a).unwrap();
    half_head
        .write_all(format!("GET / HTTP/1.1\r\nHost: {a}\r\n").as_bytes())
        .unwrap();
    let mut half_body = TcpStream::connect(a).unwrap();
    half_body
        .write_all(b"POST /report HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"run\":")
        .unwrap();
    // A trickle: one byte every 100 ms never finishes the head in time.
    let trickle = {
        let mut s = TcpStream::connect(a).unwrap();
        std::thread::spawn(move || {
            for b in b"GET /index.html HTTP/1.1\r\nX-Slow: "
                .iter()
                .cycle()
                .take(60)
            {
                if s.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            read_reply(s, Duration::from_secs(10))
        })
    };
    // Meanwhile everyone else is served at once.
    for _ in 0..20 {
        let q = Instant::now();
        assert_eq!(request(a, "GET", "/app.js").status, 200);
        assert!(q.elapsed() < TIMEOUT / 2, "{:?}", q.elapsed());
    }
    assert!(t.elapsed() < TIMEOUT, "{:?}", t.elapsed());
    for (what, s) in [
        ("silent", silent),
        ("half a request line", half_line),
        ("half a head", half_head),
        ("half a body", half_body),
    ] {
        let reply = read_reply(s, Duration::from_secs(10));
        assert_eq!(status_of(&reply), Some(408), "{what}");
    }
    assert_eq!(status_of(&trickle.join().unwrap()), Some(408), "trickle");
    let took = t.elapsed();
    assert!(took >= TIMEOUT && took < 4 * TIMEOUT, "{took:?}");
    assert_eq!(request(a, "GET", "/app.js").status, 200);
}

#[test]
fn many_concurrent_connections_are_all_answered() {
    let tree = Tree::new("concurrent");
    let server = tree.start();
    let a = server.addr();
    // 64 connections open at once, then each sends its request.
    let conns: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(a).unwrap()).collect();
    let threads: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            std::thread::spawn(move || {
                let (target, body): (&str, &[u8]) = match i % 3 {
                    0 => ("/app.js", b"export {};"),
                    1 => ("/corpus/m.slm", b"\x89SLM model bytes"),
                    _ => ("/sub/data.json", b"{}"),
                };
                let req =
                    format!("GET {target} HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n");
                s.write_all(req.as_bytes()).unwrap();
                let reply = read_reply(s, Duration::from_secs(20));
                assert_eq!(status_of(&reply), Some(200), "connection {i}");
                assert!(reply.ends_with(body), "connection {i}");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // And 64 reports posted at once all reach the runner.
    let threads: Vec<_> = (0..64)
        .map(|i| {
            std::thread::spawn(move || {
                post(a, "/report", format!("{{\"i\":{i}}}").as_bytes()).status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 204);
    }
    let mut got: Vec<u64> = (0..64)
        .map(|_| {
            server
                .reports()
                .recv_timeout(Duration::from_secs(5))
                .unwrap()["i"]
                .as_u64()
                .unwrap()
        })
        .collect();
    got.sort();
    assert_eq!(got, (0..64).collect::<Vec<_>>());
}

/// DNS rebinding: a page elsewhere whose name now resolves to 127.0.0.1 sends its own name as
/// `Host`; the server answers only for 127.0.0.1 and localhost (any port), and a request
/// without `Host` (HTTP/1.0 style) as before.
#[test]
fn only_loopback_hosts_are_served() {
    let tree = Tree::new("hosts");
    let server = tree.start();
    let a = server.addr();
    let get = |host: Option<&str>| {
        let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
        raw(
            a,
            format!("GET /index.html HTTP/1.1\r\n{host}Connection: close\r\n\r\n").as_bytes(),
        )
        .status
    };
    for host in ["127.0.0.1", "127.0.0.1:8787", "localhost", "LocalHost:1"] {
        assert_eq!(get(Some(host)), 200, "{host}");
    }
    assert_eq!(get(None), 200);
    for host in [
        "evil.example",
        "evil.example:8787",
        "127.0.0.1.evil.example",
        "localhost.evil.example:80",
        "127.0.0.2",
        "",
    ] {
        assert_eq!(get(Some(host)), 421, "{host:?}");
    }
    // Reports too: a rebinding page cannot post one.
    let req =
        b"POST /report HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 2\r\n\r\n{}".to_vec();
    assert_eq!(raw(a, &req).status, 421);
    let report = |headers: &str| {
        let req =
            format!("POST /report HTTP/1.1\r\nHost: {a}\r\n{headers}Content-Length: 2\r\n\r\n{{}}");
        raw(a, req.as_bytes()).status
    };
    assert_eq!(report("Content-Type: application/json\r\n"), 204);
    // Two Host headers: refused whatever the second says.
    let r = raw(
        a,
        format!("GET /index.html HTTP/1.1\r\nHost: {a}\r\nHost: evil.example\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 400);
    // A page of another origin can send a "simple" POST without a preflight: a text/plain one,
    // and its browser names the page's origin.
    for (headers, status) in [
        ("Content-Type: application/json; charset=utf-8\r\n", 204),
        (
            "Origin: http://127.0.0.1:8787\r\nContent-Type: application/json\r\n",
            204,
        ),
        (
            "Origin: http://localhost\r\nContent-Type: application/json\r\n",
            204,
        ),
        ("Content-Type: text/plain;charset=UTF-8\r\n", 415),
        ("", 415),
        (
            "Origin: https://evil.example\r\nContent-Type: application/json\r\n",
            403,
        ),
        (
            "Origin: http://127.0.0.1.evil.example\r\nContent-Type: application/json\r\n",
            403,
        ),
        ("Origin: null\r\nContent-Type: application/json\r\n", 403),
    ] {
        assert_eq!(report(headers), status, "{headers:?}");
    }
    server.shutdown();
}

/// Clients that ask `/hold` and leave keep their slots for the hold timeout, so holds are
/// capped: past MAX_HOLDS waiting ones a hold is refused (503) at once, and other requests are
/// served.
#[test]
fn holds_are_capped() {
    let tree = Tree::new("holds");
    let server = tree.start();
    let a = server.addr();
    let holds: Vec<TcpStream> = (0..harness::limits::MAX_HOLDS)
        .map(|i| {
            let mut s = TcpStream::connect(a).unwrap();
            let req = format!("GET /hold?run=gone{i} HTTP/1.1\r\nHost: {a}\r\n\r\n");
            s.write_all(req.as_bytes()).unwrap();
            s
        })
        .collect();
    // Every hold is waiting (each answers only after the timeout or its report).
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    assert_eq!(request(a, "GET", "/hold?run=one-more").status, 503);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(request(a, "GET", "/index.html").status, 200);
    drop(holds);
    server.shutdown();
}

/// An extra model over the budget is listed with its true size (the page's selection refuses
/// it) without being read whole: a sparse 1 TiB file.
#[test]
fn an_extra_model_over_the_budget_is_listed_unread() {
    let tree = Tree::new("extra-huge");
    let committed = br#"{"version":1,"models":[],"adapters":[]}"#;
    std::fs::write(tree.dir.join("root/registry.json"), committed).unwrap();
    let outside = tree.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let path = outside.join("huge.slm");
    let size: u64 = 1 << 40;
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    let registry = harness::smoke::served_registry(&tree.dir.join("root"), &[path]).unwrap();
    let entry = registry["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "huge")
        .unwrap();
    assert_eq!(entry["bytes"].as_u64(), Some(size));
    assert_eq!(entry["dtype"], "unverified");
}

/// The registry a server lists and serves adapters from is checked by every rule of
/// spec/adapters.md (Selector registry) first: the committed one passes; one whose adapter path
/// climbs out of the corpus (`corpus/../elsewhere/x.adapter`, which was served from outside
/// `--corpus`) or breaks another rule stops the server before it starts.
#[test]
fn a_registry_that_breaks_the_rules_is_refused_before_anything_is_served() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (root, corpus) = (repo.join("browser-smoke"), repo.join("corpus"));
    let files = harness::smoke::adapter_files(&root, &corpus).unwrap();
    assert!(!files.is_empty() && files.iter().all(|f| f.starts_with(&corpus)));
    let text = std::fs::read_to_string(root.join("registry.json")).unwrap();
    let dir = std::env::temp_dir().join(format!("trlm-serve-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = "corpus/adapters/byte-mha-tied-f32-adp1.adapter";
    assert!(text.contains(first));
    for (bad, needle) in [
        (
            text.replacen(first, "corpus/../elsewhere/x.adapter", 1),
            "not a plain relative path",
        ),
        (
            text.replacen(first, "/etc/x.adapter", 1),
            "not a plain relative path",
        ),
        (
            text.replacen("\"version\": 1", "\"version\": 2", 1),
            "version 2 is not 1",
        ),
    ] {
        std::fs::write(dir.join("registry.json"), &bad).unwrap();
        let e = harness::smoke::adapter_files(&dir, &corpus).unwrap_err();
        assert!(format!("{e:#}").contains(needle), "{e:#}");
        let e = harness::smoke::served_registry(&dir, &[]).unwrap_err();
        assert!(format!("{e:#}").contains(needle), "{e:#}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
