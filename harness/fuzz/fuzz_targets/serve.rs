//! The loopback server's request handling (harness::serve::Handler::answer, no socket): any
//! bytes get one well-formed response with the security headers, and nothing outside the
//! served roots is ever in a body.
#![no_main]

use harness::serve::{Handler, ServeConfig, Timeouts};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;

fn handler() -> &'static Handler {
    static HANDLER: OnceLock<Handler> = OnceLock::new();
    HANDLER.get_or_init(|| {
        let config = ServeConfig {
            timeouts: Timeouts {
                hold: Duration::ZERO,
                ..Timeouts::default()
            },
            ..ServeConfig::default()
        };
        // The report receiver is dropped: reports are accepted and discarded.
        Handler::new(&config)
            .expect("the smoke root and corpus exist")
            .0
    })
}

fuzz_target!(|data: &[u8]| {
    let reply = handler().answer(data);
    let head_end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = std::str::from_utf8(&reply[..head_end]).expect("an ASCII head");
    assert!(head.starts_with("HTTP/1.1 "), "{head}");
    assert!(
        head.contains("\r\nX-Content-Type-Options: nosniff"),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close"), "{head}");
    let status: u16 = head[9..12].parse().expect("a status code");
    assert!((200..600).contains(&status));
    // Never a file from outside the roots (the repository's Cargo.toml, /etc/passwd).
    let body = &reply[head_end + 4..];
    assert!(!body.windows(9).any(|w| w == b"[package]"));
    assert!(!body.windows(5).any(|w| w == b"root:"));
});
