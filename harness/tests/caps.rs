//! Every cap of harness/src/limits.rs at its boundary: exactly at the cap accepted, one over
//! refused. The server's byte caps go through [`Handler::answer`] (the same reading and routing
//! as a socket) and once through a socket; its connection cap and timeouts through a running
//! server on 127.0.0.1.

use harness::adapter::registry::{Registry, RegistryErrorKind};
use harness::gguf::write::{GgufWriter, RawValue};
use harness::gguf::{Gguf, GgufErrorKind};
use harness::limits::*;
use harness::serve::{Handler, RunningServer, ServeConfig, Timeouts};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A served root with one file, in a temporary folder.
struct Root(PathBuf);

impl Root {
    fn new(tag: &str) -> Root {
        let dir = std::env::temp_dir().join(format!("trlm-caps-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root")).unwrap();
        std::fs::create_dir_all(dir.join("corpus")).unwrap();
        std::fs::write(dir.join("root/index.html"), b"<p>x</p>").unwrap();
        Root(dir)
    }

    fn config(&self, timeouts: Timeouts) -> ServeConfig {
        ServeConfig {
            root: self.0.join("root"),
            corpus: self.0.join("corpus"),
            wasm: None,
            timeouts,
            ..ServeConfig::default()
        }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn status(reply: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(reply);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// A GET whose head is exactly `len` bytes (padded with one header field).
fn get_of_head_bytes(len: usize) -> Vec<u8> {
    let fixed = "GET / HTTP/1.1\r\nX-Pad: \r\n\r\n".len();
    let pad = "a".repeat(len - fixed);
    let head = format!("GET / HTTP/1.1\r\nX-Pad: {pad}\r\n\r\n");
    assert_eq!(head.len(), len);
    head.into_bytes()
}

/// A report of exactly `len` body bytes (a JSON object padded with spaces).
fn report_of_body_bytes(len: usize) -> Vec<u8> {
    let mut body = b"{\"run\":\"caps\"}".to_vec();
    body.resize(len, b' ');
    let mut req = format!(
        "POST /report HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

#[test]
fn request_head_bytes() {
    let root = Root::new("head");
    let (h, _reports) = Handler::new(&root.config(Timeouts::default())).unwrap();
    assert_eq!(status(&h.answer(&get_of_head_bytes(MAX_HEADER_BYTES))), 200);
    assert_eq!(
        status(&h.answer(&get_of_head_bytes(MAX_HEADER_BYTES + 1))),
        431
    );
    // The same through a socket, where the head arrives in pieces.
    let server = RunningServer::start(root.config(Timeouts::default())).unwrap();
    for (len, expected) in [(MAX_HEADER_BYTES, 200), (MAX_HEADER_BYTES + 1, 431)] {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        for piece in get_of_head_bytes(len).chunks(1000) {
            s.write_all(piece).unwrap();
        }
        let mut reply = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.read_to_end(&mut reply);
        assert_eq!(status(&reply), expected, "{len}");
    }
}

#[test]
fn report_body_bytes() {
    let root = Root::new("body");
    let (h, reports) = Handler::new(&root.config(Timeouts::default())).unwrap();
    assert_eq!(
        status(&h.answer(&report_of_body_bytes(MAX_REPORT_BYTES))),
        204
    );
    assert_eq!(reports.try_recv().unwrap()["run"], "caps");
    assert_eq!(
        status(&h.answer(&report_of_body_bytes(MAX_REPORT_BYTES + 1))),
        413
    );
    assert!(reports.try_recv().is_err());
}

#[test]
fn queued_reports() {
    let root = Root::new("queue");
    let (h, reports) = Handler::new(&root.config(Timeouts::default())).unwrap();
    for i in 0..MAX_QUEUED_REPORTS {
        assert_eq!(
            status(&h.answer(&report_of_body_bytes(64))),
            204,
            "report {i}"
        );
    }
    assert_eq!(status(&h.answer(&report_of_body_bytes(64))), 503);
    // One taken off the queue makes room for one more.
    reports.try_recv().unwrap();
    assert_eq!(status(&h.answer(&report_of_body_bytes(64))), 204);
}

/// Opens `n` connections that send nothing and waits until the server holds them all.
fn idle_connections(server: &RunningServer, n: usize) -> Vec<TcpStream> {
    let conns: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    // The accepting thread takes them in order; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    conns
}

fn get(server: &RunningServer) -> u16 {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    status(&reply)
}

#[test]
fn connections() {
    let root = Root::new("conns");
    let long = Timeouts {
        header: Duration::from_secs(30),
        ..Timeouts::default()
    };
    // At the cap: the last connection is served.
    let server = RunningServer::start(root.config(long)).unwrap();
    let held = idle_connections(&server, MAX_CONNECTIONS - 1);
    assert_eq!(get(&server), 200);
    drop(held);
    drop(server);
    // One over: refused at once.
    let server = RunningServer::start(root.config(long)).unwrap();
    let held = idle_connections(&server, MAX_CONNECTIONS);
    let t = Instant::now();
    assert_eq!(get(&server), 503);
    assert!(t.elapsed() < Duration::from_secs(5));
    // Closed connections free their slots.
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(&server), 200);
}

#[test]
fn timeouts() {
    assert_eq!(
        Timeouts::default(),
        Timeouts {
            header: HEADER_TIMEOUT,
            body: BODY_TIMEOUT,
            write: WRITE_TIMEOUT,
            hold: HOLD_TIMEOUT,
        }
    );
    let root = Root::new("timeouts");
    let second = Duration::from_secs(1);
    let server = RunningServer::start(root.config(Timeouts {
        header: 2 * second,
        body: 2 * second,
        hold: 2 * second,
        ..Timeouts::default()
    }))
    .unwrap();
    // A request whose head (or body) completes a second before its deadline is served; one
    // that completes a second after it is refused.
    let send = |first: &[u8], rest: &[u8], pause: Duration| {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.write_all(first).unwrap();
        std::thread::sleep(pause);
        let _ = s.write_all(rest);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        status(&reply)
    };
    let head = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(send(&head[..10], &head[10..], second), 200);
    assert_eq!(send(&head[..10], &head[10..], 3 * second), 408);
    let report = report_of_body_bytes(32);
    let split = report.len() - 8;
    assert_eq!(send(&report[..split], &report[split..], second), 204);
    assert_eq!(send(&report[..split], &report[split..], 3 * second), 408);
    // A hold answers at its timeout without a report.
    let t = Instant::now();
    assert_eq!(
        send(b"GET /hold?run=none HTTP/1.1\r\n\r\n", b"", Duration::ZERO),
        204
    );
    let took = t.elapsed();
    assert!(took >= 2 * second && took < 5 * second, "{took:?}");
}

fn registry_with_id(id: &str) -> String {
    format!(
        r#"{{"version":1,"models":[{{"id":"{id}","path":"m.slm","bytes":1,"sha256":"{}","dtype":"f32","shape":"s"}}],"adapters":[]}}"#,
        "0".repeat(64)
    )
}

#[test]
fn registry_id_bytes() {
    let at = "a".repeat(MAX_REGISTRY_ID_BYTES);
    let over = "a".repeat(MAX_REGISTRY_ID_BYTES + 1);
    let r = Registry::parse(&registry_with_id(&at)).unwrap();
    assert_eq!(r.models[0].id, at);
    let e = Registry::parse(&registry_with_id(&over)).unwrap_err();
    assert_eq!(e.kind, RegistryErrorKind::Invalid);
}

fn gguf_kind(bytes: &[u8]) -> Option<GgufErrorKind> {
    Gguf::parse(bytes).err().map(|e| e.kind)
}

#[test]
fn gguf_tensor_name_bytes_and_dims() {
    let one = |name: &str, dims: &[u64]| {
        let mut w = GgufWriter::new(3);
        w.tensor_raw(name, dims, 0, vec![0; 4]);
        w.finish().bytes
    };
    assert_eq!(gguf_kind(&one(&"n".repeat(GGUF_MAX_NAME - 1), &[1])), None);
    assert_eq!(
        gguf_kind(&one(&"n".repeat(GGUF_MAX_NAME), &[1])),
        Some(GgufErrorKind::NameTooLong)
    );
    let dims = vec![1u64; GGUF_MAX_DIMS as usize + 1];
    assert_eq!(gguf_kind(&one("t", &dims[..GGUF_MAX_DIMS as usize])), None);
    assert_eq!(gguf_kind(&one("t", &dims)), Some(GgufErrorKind::BadDims));
}

#[test]
fn gguf_string_bytes() {
    // A string whose length field says `len`: at the cap it is only too long for the file
    // (Truncated); one over, the cap refuses it (BadString).
    let with_len = |len: u64| {
        let mut w = GgufWriter::new(3);
        w.kv("k", RawValue::str("x"));
        let written = w.finish();
        let mut bytes = written.bytes;
        let at = written.kvs[0].value_at as usize;
        bytes[at..at + 8].copy_from_slice(&len.to_le_bytes());
        bytes
    };
    assert_eq!(
        gguf_kind(&with_len(GGUF_MAX_STRING_BYTES)),
        Some(GgufErrorKind::Truncated)
    );
    assert_eq!(
        gguf_kind(&with_len(GGUF_MAX_STRING_BYTES + 1)),
        Some(GgufErrorKind::BadString)
    );
}

/// A report of run `run` (a JSON string), as the page posts it.
fn report_of_run(run: &str) -> Vec<u8> {
    let body = serde_json::json!({ "run": run }).to_string();
    let mut req = format!(
        "POST /report HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body.as_bytes());
    req
}

/// Whether `/hold?run=QUERY` is answered at once (its run was reported) rather than at the
/// hold timeout (three seconds here: "at once" is under half of it, room for a loaded machine).
fn released(h: &Handler, query: &str) -> bool {
    let t = Instant::now();
    let reply = h.answer(format!("GET /hold?run={query} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(status(&reply), 204);
    t.elapsed() < Duration::from_millis(1500)
}

#[test]
fn released_run_ids() {
    let root = Root::new("runs");
    let (h, _) = Handler::new(&root.config(Timeouts {
        hold: Duration::from_secs(3),
        ..Timeouts::default()
    }))
    .unwrap();
    // The id of the longest length releases its hold; one byte longer releases nothing.
    let longest = "r".repeat(MAX_RUN_ID_BYTES);
    let over = "o".repeat(MAX_RUN_ID_BYTES + 1);
    for run in [&longest, &over] {
        assert_eq!(status(&h.answer(&report_of_run(run))), 204);
    }
    assert!(released(&h, &longest));
    assert!(!released(&h, &over));
    // The hold's id is percent-decoded, as the page encodes it.
    assert_eq!(status(&h.answer(&report_of_run("a b/é"))), 204);
    assert!(released(&h, "a%20b%2F%C3%A9"));
    assert_eq!(
        status(&h.answer(b"GET /hold?run=%zz HTTP/1.1\r\n\r\n")),
        400
    );
    // The server remembers the last MAX_RELEASED_RUNS ids: `longest` and "a b/é" were the first
    // two, so one more id than the cap forgets the first and keeps the second.
    for i in 2..=MAX_RELEASED_RUNS {
        assert_eq!(status(&h.answer(&report_of_run(&format!("run{i}")))), 204);
    }
    assert!(!released(&h, &longest));
    assert!(released(&h, "a%20b%2F%C3%A9"));
    assert!(released(&h, &format!("run{MAX_RELEASED_RUNS}")));
}

#[test]
fn write_deadline() {
    let root = Root::new("write");
    let total = 64 << 20;
    std::fs::write(root.0.join("root/big.bin"), vec![0u8; total]).unwrap();
    let server = RunningServer::start(root.config(Timeouts {
        write: Duration::from_secs(2),
        ..Timeouts::default()
    }))
    .unwrap();
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A client that keeps reading, slowly: no single write waits long, but the response as a
    // whole outlasts the deadline, so the server drops it there.
    let mut buf = vec![0u8; 64 << 10];
    let mut received = 0;
    let slow = Instant::now();
    while slow.elapsed() < Duration::from_secs(4) {
        received += s.read(&mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    received += rest.len();
    assert!(
        received < total,
        "{received} of {total} bytes: the response was not cut off"
    );
}
