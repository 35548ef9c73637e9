//! The HTTP/1.1 subset the smoke server speaks: one request per connection (every response says
//! `Connection: close`), a request head of at most [`MAX_HEADER_BYTES`] that must arrive within
//! a deadline, bodies by `Content-Length` only (no chunked uploads), and responses with a
//! `Content-Length`, never chunked.
//!
//! Reading works on any [`Source`]: a socket with deadlines, or a byte slice (the fuzz target
//! and unit tests), so the whole request → response path runs without a socket.

use crate::limits::MAX_HEADER_BYTES;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// A request as the router sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method token as sent (case-sensitive, as HTTP says).
    pub method: String,
    /// The request target as sent.
    pub target: String,
    /// Header fields in order, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body length the request announces (None: no body). Checked by [`parse_head`].
    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }
}

/// A request the server refuses before routing it: the status and a short reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// Where request bytes come from: a socket whose reads give up at a deadline, or plain bytes.
pub trait Source: Read {
    /// Makes later reads fail with `TimedOut`/`WouldBlock` once `deadline` passes.
    fn set_deadline(&mut self, deadline: Instant) -> io::Result<()>;
}

impl Source for TcpStream {
    fn set_deadline(&mut self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.set_read_timeout(Some(left))
    }
}

impl Source for &[u8] {
    fn set_deadline(&mut self, _deadline: Instant) -> io::Result<()> {
        Ok(())
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Reads a request head (through the empty line) by `deadline`. Returns the head's bytes and
/// whatever body bytes arrived with them. 431 for a head over [`MAX_HEADER_BYTES`], 408 at the
/// deadline, 400 when the client stops sending first.
pub fn read_head<S: Source>(src: &mut S, deadline: Instant) -> Result<(Vec<u8>, Vec<u8>), Refusal> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        src.set_deadline(deadline)
            .map_err(|_| refuse(408, "Request Timeout"))?;
        // Read no further than one byte past the cap.
        let want = chunk.len().min(MAX_HEADER_BYTES + 1 - buf.len());
        let n = match src.read(&mut chunk[..want]) {
            Ok(0) => return Err(refuse(400, "incomplete request")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if timed_out(&e) => return Err(refuse(408, "Request Timeout")),
            Err(_) => return Err(refuse(400, "unreadable request")),
        };
        // The end marker may straddle the previous read.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + i + 4;
            if end > MAX_HEADER_BYTES {
                return Err(refuse(431, "Request Header Fields Too Large"));
            }
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEADER_BYTES {
            return Err(refuse(431, "Request Header Fields Too Large"));
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a request head as [`read_head`] returned it. 400 for anything malformed (request
/// line, header syntax, folded lines, a bad or conflicting `Content-Length`), 505 for a version
/// other than HTTP/1.0 or 1.1, 501 for a `Transfer-Encoding`.
pub fn parse_head(head: &[u8]) -> Result<Request, Refusal> {
    let text =
        std::str::from_utf8(head).map_err(|_| refuse(400, "the request head is not UTF-8"))?;
    let text = text.strip_suffix("\r\n\r\n").ok_or(refuse(
        400,
        "the request head does not end with an empty line",
    ))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refuse(400, "malformed request line"));
    };
    if !is_token(method) {
        return Err(refuse(400, "malformed method"));
    }
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(refuse(400, "malformed request target"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") => return Err(refuse(505, "HTTP Version Not Supported")),
        _ => return Err(refuse(400, "malformed request line")),
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(refuse(400, "header line without a colon"))?;
        if !is_token(name) {
            return Err(refuse(400, "malformed header name"));
        }
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(refuse(400, "control character in a header value"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let req = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
    };
    if req.header("transfer-encoding").is_some() {
        return Err(refuse(501, "Transfer-Encoding is not supported"));
    }
    let mut lengths = req
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v);
    if let Some(first) = lengths.next() {
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse(400, "malformed Content-Length"));
        }
        if first.parse::<usize>().is_err() {
            return Err(refuse(413, "Payload Too Large"));
        }
        if lengths.any(|v| v != first) {
            return Err(refuse(400, "conflicting Content-Length"));
        }
    }
    Ok(req)
}

/// Reads a body of exactly `len` bytes (`already`: the bytes that came with the head) by
/// `deadline`: 408 at the deadline, 400 when the client stops first.
pub fn read_body<S: Source>(
    src: &mut S,
    mut already: Vec<u8>,
    len: usize,
    deadline: Instant,
) -> Result<Vec<u8>, Refusal> {
    if already.len() > len {
        // Pipelined bytes after the body: one request per connection.
        return Err(refuse(400, "bytes after the request body"));
    }
    let mut chunk = [0u8; 16 * 1024];
    while already.len() < len {
        src.set_deadline(deadline)
            .map_err(|_| refuse(408, "Request Timeout"))?;
        let want = chunk.len().min(len - already.len());
        match src.read(&mut chunk[..want]) {
            Ok(0) => return Err(refuse(400, "the body ends early")),
            Ok(n) => already.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => return Err(refuse(408, "Request Timeout")),
            Err(_) => return Err(refuse(400, "unreadable body")),
        }
    }
    Ok(already)
}

/// A response body.
#[derive(Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    /// A file and its length (sent as it is read).
    File(std::fs::File, u64),
}

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header fields besides `Content-Length` and `Connection`, which [`write_response`] adds.
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Response {
    /// A response with a byte body.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: Body::Bytes(body),
        }
    }

    /// A bodiless response.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }

    /// A plain-text status page (`CODE Reason\n`).
    pub fn status(status: u16) -> Response {
        let body = format!("{status} {}\n", reason_phrase(status));
        Response::bytes(status, "text/plain; charset=utf-8", body.into_bytes())
    }

    /// Adds a header field.
    pub fn with(mut self, name: &'static str, value: &str) -> Response {
        self.headers.push((name, value.to_string()));
        self
    }

    fn body_len(&self) -> u64 {
        match &self.body {
            Body::Bytes(b) => b.len() as u64,
            Body::File(_, n) => *n,
        }
    }
}

/// The reason phrase of the statuses the server sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes `resp` (its body only when `with_body`: not for HEAD) with `Content-Length` and
/// `Connection: close`.
pub fn write_response<W: Write>(w: &mut W, resp: Response, with_body: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        resp.status,
        reason_phrase(resp.status)
    );
    for (name, value) in &resp.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    // 204 carries no Content-Length (RFC 9110, 8.6).
    if resp.status != 204 {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body_len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    w.write_all(head.as_bytes())?;
    if with_body {
        match resp.body {
            Body::Bytes(b) => w.write_all(&b)?,
            Body::File(f, n) => {
                let copied = io::copy(&mut f.take(n), w)?;
                if copied != n {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(raw: &str) -> Result<Request, Refusal> {
        let mut src = raw.as_bytes();
        let (head, _) = read_head(&mut src, Instant::now() + Duration::from_secs(1))?;
        parse_head(&head)
    }

    #[test]
    fn heads_parse() {
        let r = parse("GET /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").unwrap();
        assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/a?b"));
        assert_eq!(r.header("host"), Some("x"));
        assert_eq!(r.content_length(), Some(3));
    }

    #[test]
    fn malformed_heads_are_refused() {
        for (raw, status) in [
            ("GET / HTTP/1.1\r\n", 400),
            ("GET /  HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\n\r\n", 505),
            ("GET / FTP/1.0\r\n\r\n", 400),
            ("G(T / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n folded: x\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nA: \u{1}\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (
                "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                413,
            ),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        ] {
            assert_eq!(parse(raw).map_err(|r| r.status), Err(status), "{raw:?}");
        }
    }
}
