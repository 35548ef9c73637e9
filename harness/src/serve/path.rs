//! Turning a request target into the path segments of a file, refusing every form of traversal:
//! absolute URLs, `..` and `.` segments (plain or percent-encoded), encoded separators,
//! backslashes, NUL and other control characters, empty segments. The server still
//! canonicalizes the result and checks it lies inside its root.

/// Why a request target was refused (answered 400 Bad Request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadTarget(pub &'static str);

/// The decoded path segments of an origin-form request target (`/a/b?query`), the query
/// ignored. `/` gives no segments. Hidden names (a leading `.`) are allowed here; the server
/// does not serve them.
pub fn segments(target: &str) -> Result<Vec<String>, BadTarget> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(BadTarget("the request target is not an absolute path"));
    }
    if path.starts_with("//") {
        return Err(BadTarget("the request target names an authority"));
    }
    let rest = &path[1..];
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for raw in rest.split('/') {
        let seg = decode(raw)?;
        match seg.as_str() {
            "" => return Err(BadTarget("empty path segment")),
            "." | ".." => return Err(BadTarget("dot segment")),
            _ => out.push(seg),
        }
    }
    Ok(out)
}

/// Percent-decodes one segment; refuses what must never be encoded or present.
fn decode(raw: &str) -> Result<String, BadTarget> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let c = if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(hex_byte)
                .ok_or(BadTarget("bad percent-encoding"))?;
            if matches!(hex, b'/' | b'\\' | b'.') {
                return Err(BadTarget("percent-encoded separator or dot"));
            }
            i += 3;
            hex
        } else {
            i += 1;
            b
        };
        if c == b'\\' {
            return Err(BadTarget("backslash"));
        }
        if c < 0x20 || c == 0x7f {
            return Err(BadTarget("control character"));
        }
        if !c.is_ascii() && b != b'%' {
            return Err(BadTarget("raw non-ASCII byte"));
        }
        out.push(c);
    }
    String::from_utf8(out).map_err(|_| BadTarget("decoded path is not UTF-8"))
}

/// The byte two hex digits give (`u8::from_str_radix` alone would also take a sign).
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(digits).ok()?;
    digits
        .iter()
        .all(u8::is_ascii_hexdigit)
        .then(|| u8::from_str_radix(text, 16).ok())?
}

/// Percent-decodes a query value (as `encodeURIComponent` encodes it; `+` stays `+`). None
/// when an escape is malformed or the result is not UTF-8.
pub fn decode_query_value(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(hex_byte(bytes.get(i + 1..i + 3)?)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_decode() {
        assert_eq!(segments("/").unwrap(), Vec::<String>::new());
        assert_eq!(segments("/?smoke=1").unwrap(), Vec::<String>::new());
        assert_eq!(segments("/a/b.js?x=/../").unwrap(), ["a", "b.js"]);
        assert_eq!(segments("/caf%C3%A9").unwrap(), ["café"]);
        assert_eq!(segments("/a%20b").unwrap(), ["a b"]);
    }

    #[test]
    fn query_values_decode() {
        assert_eq!(decode_query_value("a%20b").as_deref(), Some("a b"));
        assert_eq!(decode_query_value("a+b%2B").as_deref(), Some("a+b+"));
        assert_eq!(decode_query_value("caf%C3%A9").as_deref(), Some("café"));
        for bad in ["%", "%2", "%zz", "%+f", "%C3"] {
            assert_eq!(decode_query_value(bad), None, "{bad}");
        }
    }

    #[test]
    fn traversal_forms_are_refused() {
        for t in [
            "",
            "index.html",
            "http://127.0.0.1/x",
            "//evil/x",
            "/../etc/passwd",
            "/a/../../x",
            "/./x",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/.%2e/x",
            "/a%2fb",
            "/a%2F..%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/a\u{0}b",
            "/a//b",
            "/a%zz",
            "/a%2",
            "/a%ff",
            "/a\u{e9}",
        ] {
            assert!(segments(t).is_err(), "{t:?} was accepted");
        }
    }
}
