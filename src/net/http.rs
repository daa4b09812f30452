//! The HTTP side of a connection: one request head in, one decision out.
//!
//! Pure functions over byte slices (no sockets, no clock), so every routing
//! and validation rule is a unit test. A connection serves exactly one
//! request: either it upgrades to WebSocket or it gets an answer and closes.
//! That keeps the state machine in `conn` small; health checks and metrics
//! scrapes are rare enough that keep-alive buys nothing.

use std::fmt::Write as _;

/// Request heads above this size are refused with 431, and a client that has
/// sent this much without finishing its head is refused too.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// httparse needs a fixed header array; more headers than this is a 431.
const MAX_HEADERS: usize = 64;

/// The `Content-Type` of `/metrics` (Prometheus text exposition 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What to do with the bytes received so far on a fresh connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request head is not complete yet: read more.
    Incomplete,
    /// Write `response`, then close the connection.
    Respond(Response),
    /// `GET /metrics`: the caller renders the body (it needs the server's
    /// state) and answers with [`metrics_response`].
    Metrics,
    /// Write `response` (a 101), then speak WebSocket. The request head was
    /// `head_len` bytes; anything after it is already WebSocket data.
    Upgrade {
        response: Vec<u8>,
        head_len: usize,
        /// The request path without its query string (which may hold an API
        /// key, so it is never logged).
        path: String,
    },
}

/// A complete HTTP response after which the connection closes.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub bytes: Vec<u8>,
    /// Why this answer, for the connection's close log line.
    pub detail: String,
}

/// Decides what to do with the request head at the start of `buf`.
/// `max_head` is the size cap (normally [`MAX_HEADER_BYTES`]).
pub fn process(buf: &[u8], max_head: usize) -> Outcome {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= max_head => Outcome::Respond(too_large()),
        Ok(httparse::Status::Partial) => Outcome::Incomplete,
        Ok(httparse::Status::Complete(n)) if n > max_head => Outcome::Respond(too_large()),
        Ok(httparse::Status::Complete(n)) => route(&req, n),
        Err(httparse::Error::TooManyHeaders) => Outcome::Respond(too_large()),
        Err(e) => Outcome::Respond(error(
            400,
            "Bad Request",
            &[],
            format!("malformed HTTP request: {e}"),
        )),
    }
}

/// Whether `buf` may hold a complete head: an empty line ends it. Checked
/// before parsing so a client trickling bytes in does not make us re-parse
/// the whole buffer on every read. `from` is where the new bytes start.
pub fn may_be_complete(buf: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(3);
    let tail = buf.get(start..).unwrap_or_default();
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

fn route(req: &httparse::Request<'_, '_>, head_len: usize) -> Outcome {
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Outcome::Respond(error(
            400,
            "Bad Request",
            &[],
            "incomplete request line".into(),
        ));
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if method != "GET" {
        return Outcome::Respond(error(
            405,
            "Method Not Allowed",
            &[("Allow", "GET")],
            format!("method \"{}\" not allowed", crate::logging::clip(method)),
        ));
    }
    // The reference server answers /health over plain HTTP even when the
    // client asks for an upgrade, and upgrades on every other path.
    if path == "/metrics" {
        return Outcome::Metrics;
    }
    if path == "/health" {
        let body = "{\"status\":\"ok\"}";
        return Outcome::Respond(Response {
            status: 200,
            bytes: response_bytes(200, "OK", &[], "application/json", body),
            detail: "health check".into(),
        });
    }
    if !has_token(req.headers, "upgrade", "websocket") {
        return Outcome::Respond(if path == "/sync" {
            error(
                426,
                "Upgrade Required",
                &[("Upgrade", "websocket")],
                "GET /sync without a WebSocket upgrade".into(),
            )
        } else {
            error(404, "Not Found", &[], "no such path".into())
        });
    }
    // RFC 6455 §4.1: the opening handshake is an HTTP/1.1 GET with
    // `Connection: Upgrade`, version 13 and a key.
    if req.version != Some(1) {
        return Outcome::Respond(bad_handshake("WebSocket upgrade needs HTTP/1.1"));
    }
    if !has_token(req.headers, "connection", "upgrade") {
        return Outcome::Respond(bad_handshake(
            "WebSocket upgrade without Connection: Upgrade",
        ));
    }
    if header(req.headers, "sec-websocket-version").map(str::trim) != Some("13") {
        // RFC 6455 §4.4: say which version we speak.
        return Outcome::Respond(error(
            426,
            "Upgrade Required",
            &[("Sec-WebSocket-Version", "13")],
            "unsupported Sec-WebSocket-Version (need 13)".into(),
        ));
    }
    let Some(key) = header(req.headers, "sec-websocket-key").map(str::trim) else {
        return Outcome::Respond(bad_handshake("WebSocket upgrade without Sec-WebSocket-Key"));
    };
    // RFC 6455 §4.2.1: the key is the base64 of 16 bytes, and the request
    // names its Host.
    if !is_base64_of_16_bytes(key) {
        return Outcome::Respond(bad_handshake(
            "Sec-WebSocket-Key is not the base64 of 16 bytes",
        ));
    }
    if header(req.headers, "host").is_none_or(|h| h.trim().is_empty()) {
        return Outcome::Respond(bad_handshake("WebSocket upgrade without Host"));
    }
    Outcome::Upgrade {
        response: switching_protocols(key),
        head_len,
        path: path.to_string(),
    }
}

/// Whether `key` is the base64 encoding of exactly 16 bytes: 22 digits
/// of the base64 alphabet and `==`.
fn is_base64_of_16_bytes(key: &str) -> bool {
    let Some(digits) = key.strip_suffix("==") else {
        return false;
    };
    digits.len() == 22
        && digits
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The 101 answer. No sub-protocol and no extensions are echoed: cojson uses
/// neither, and declining permessage-deflate is always allowed.
pub fn switching_protocols(key: &str) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// The answer to `GET /metrics`.
pub fn metrics_response(body: &str) -> Response {
    Response {
        status: 200,
        bytes: response_bytes(200, "OK", &[], METRICS_CONTENT_TYPE, body),
        detail: "metrics scrape".into(),
    }
}

/// Every `X-Forwarded-For` value of the request head at the start of `buf`,
/// in order (empty if there is none or the head does not parse). Only read
/// when the TCP peer is a trusted proxy.
pub fn forwarded_for(buf: &[u8]) -> Vec<String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(buf), Ok(httparse::Status::Complete(_))) {
        return Vec::new();
    }
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .map(str::to_string)
        .collect()
}

/// The answer to a client that did not finish its request head in time.
pub fn request_timeout() -> Vec<u8> {
    response_bytes(
        408,
        "Request Timeout",
        &[],
        "text/plain",
        "request timeout\n",
    )
}

fn too_large() -> Response {
    error(
        431,
        "Request Header Fields Too Large",
        &[],
        format!("request head over {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} headers"),
    )
}

fn bad_handshake(detail: &str) -> Response {
    error(400, "Bad Request", &[], detail.to_string())
}

fn error(status: u16, reason: &str, extra: &[(&str, &str)], detail: String) -> Response {
    let body = format!("{reason}\n");
    Response {
        status,
        bytes: response_bytes(status, reason, extra, "text/plain", &body),
        detail,
    }
}

fn response_bytes(
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
    content_type: &str,
    body: &str,
) -> Vec<u8> {
    let mut s = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in extra {
        let _ = write!(s, "{k}: {v}\r\n");
    }
    let _ = write!(
        s,
        "Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.into_bytes()
}

/// The first header named `name` (case-insensitive), if it is UTF-8.
fn header<'a>(headers: &'a [httparse::Header<'_>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}

/// Whether any `name` header lists `token` in its comma-separated value
/// (`Connection: keep-alive, Upgrade` contains `upgrade`).
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn upgrade_request(path: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        )
    }

    fn status_of(req: &str) -> u16 {
        match process(req.as_bytes(), MAX_HEADER_BYTES) {
            Outcome::Respond(r) => r.status,
            Outcome::Upgrade { .. } => 101,
            Outcome::Metrics => 200,
            Outcome::Incomplete => 0,
        }
    }

    fn text(r: &Response) -> String {
        String::from_utf8(r.bytes.clone()).unwrap()
    }

    #[test]
    fn health() {
        let Outcome::Respond(r) = process(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 8192) else {
            panic!("expected a response")
        };
        assert_eq!(r.status, 200);
        let t = text(&r);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\n"), "{t}");
        assert!(t.contains("Content-Type: application/json\r\n"));
        assert!(t.contains("Content-Length: 15\r\n"));
        assert!(t.ends_with("\r\n\r\n{\"status\":\"ok\"}"));
        assert_eq!(status_of("GET /health?probe=1 HTTP/1.0\r\n\r\n"), 200);
        // /health never upgrades, like the reference server.
        assert_eq!(status_of(&upgrade_request("/health")), 200);
    }

    #[test]
    fn metrics() {
        assert_eq!(
            process(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 8192),
            Outcome::Metrics
        );
        // Never upgraded, like /health; other methods are refused.
        assert_eq!(
            process(upgrade_request("/metrics").as_bytes(), 8192),
            Outcome::Metrics
        );
        assert_eq!(status_of("POST /metrics HTTP/1.1\r\n\r\n"), 405);
        let r = metrics_response("a 1\n");
        let t = text(&r);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\n"), "{t}");
        assert!(t.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(t.ends_with("\r\n\r\na 1\n"));
    }

    #[test]
    fn forwarded_for_values_in_order() {
        let req = b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nHost: x\r\n\
                    x-forwarded-for: 3.3.3.3\r\n\r\n";
        assert_eq!(forwarded_for(req), ["1.1.1.1, 2.2.2.2", "3.3.3.3"]);
        assert!(forwarded_for(b"GET / HTTP/1.1\r\n\r\n").is_empty());
        assert!(forwarded_for(b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\n").is_empty());
    }

    #[test]
    fn upgrade_on_any_path_but_health() {
        for path in ["/sync", "/", "/?key=abc", "/anything/else?x=1"] {
            let req = upgrade_request(path);
            match process(req.as_bytes(), MAX_HEADER_BYTES) {
                Outcome::Upgrade {
                    response,
                    head_len,
                    path: p,
                } => {
                    assert_eq!(head_len, req.len());
                    assert!(!p.contains('?'), "query kept in {p}");
                    let t = String::from_utf8(response).unwrap();
                    assert!(t.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
                    // RFC 6455 §1.3 sample key and answer.
                    assert!(t.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
                    assert!(t.ends_with("\r\n\r\n"));
                }
                other => panic!("{path}: {other:?}"),
            }
        }
    }

    #[test]
    fn bytes_after_the_head_are_not_consumed() {
        let mut req = upgrade_request("/sync").into_bytes();
        let head = req.len();
        req.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4]);
        match process(&req, MAX_HEADER_BYTES) {
            Outcome::Upgrade { head_len, .. } => assert_eq!(head_len, head),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_get() {
        assert_eq!(status_of("GET /sync HTTP/1.1\r\nHost: x\r\n\r\n"), 426);
        assert_eq!(status_of("GET /sync?key=1 HTTP/1.1\r\n\r\n"), 426);
        assert_eq!(status_of("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
        assert_eq!(status_of("GET /nope HTTP/1.1\r\n\r\n"), 404);
        let Outcome::Respond(r) = process(b"GET /sync HTTP/1.1\r\n\r\n", 8192) else {
            panic!()
        };
        assert!(text(&r).contains("Upgrade: websocket\r\n"));
    }

    #[test]
    fn other_methods() {
        assert_eq!(
            status_of("POST /sync HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            405
        );
        assert_eq!(status_of("HEAD /health HTTP/1.1\r\n\r\n"), 405);
        let Outcome::Respond(r) = process(b"PUT / HTTP/1.1\r\n\r\n", 8192) else {
            panic!()
        };
        assert!(text(&r).contains("Allow: GET\r\n"));
        assert!(text(&r).contains("Connection: close\r\n"));
    }

    #[test]
    fn malformed() {
        assert_eq!(status_of("\x16\x03\x01\x02\x00garbage\r\n\r\n"), 400);
        assert_eq!(status_of("GET /sync HTTP/9.9\r\n\r\n"), 400);
        assert_eq!(status_of("GET /sync HTTP/1.1\r\nBad Header\r\n\r\n"), 400);
        assert_eq!(status_of("hello\r\n\r\n"), 400);
    }

    #[test]
    fn incomplete_then_complete() {
        assert_eq!(status_of(""), 0);
        assert_eq!(status_of("GET /sync HTTP/1.1\r\nHost: x\r\n"), 0);
        assert_eq!(status_of("GET /sync HTTP/1.1\r\nHost: x\r\n\r\n"), 426);
        // Bare LF line endings are accepted by httparse, and by the detector.
        assert!(may_be_complete(b"GET / HTTP/1.1\nHost: x\n\n", 0));
    }

    #[test]
    fn completion_detector() {
        let full = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(may_be_complete(full, 0));
        // The terminator may straddle two reads.
        assert!(may_be_complete(full, full.len() - 1));
        assert!(!may_be_complete(b"GET / HTTP/1.1\r\nHost: x\r\n", 0));
        assert!(!may_be_complete(b"", 0));
        assert!(!may_be_complete(b"ab", 10));
    }

    #[test]
    fn size_caps() {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
        assert_eq!(status_of(&big), 431);
        // Still incomplete but already over the cap: refuse without waiting.
        let partial = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(9000));
        assert_eq!(status_of(&partial), 431);
        let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(status_of(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
        // Just under the cap is fine.
        let ok = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(8000));
        assert_eq!(status_of(&ok), 404);
    }

    #[test]
    fn handshake_validation() {
        let no_key = "GET /sync HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(status_of(no_key), 400);
        let v8 = upgrade_request("/sync").replace("Version: 13", "Version: 8");
        assert_eq!(status_of(&v8), 426);
        let Outcome::Respond(r) = process(v8.as_bytes(), 8192) else {
            panic!()
        };
        assert!(text(&r).contains("Sec-WebSocket-Version: 13\r\n"));
        let no_version = upgrade_request("/sync").replace("Sec-WebSocket-Version: 13\r\n", "");
        assert_eq!(status_of(&no_version), 426);
        let no_conn = upgrade_request("/sync").replace("Connection: Upgrade", "Connection: close");
        assert_eq!(status_of(&no_conn), 400);
        let http10 = upgrade_request("/sync").replace("HTTP/1.1", "HTTP/1.0");
        assert_eq!(status_of(&http10), 400);
        // Token lists and odd casing, as browsers send them.
        let firefox = upgrade_request("/")
            .replace("Connection: Upgrade", "connection: keep-alive, Upgrade")
            .replace("Upgrade: websocket", "upgrade: WebSocket");
        assert_eq!(status_of(&firefox), 101);
    }

    #[test]
    fn the_handshake_follows_rfc_6455() {
        let with = |key: &str, host: bool| {
            format!(
                "GET /sync HTTP/1.1\r\n{}Upgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n",
                if host { "Host: x\r\n" } else { "" }
            )
        };
        assert_eq!(status_of(&with(KEY, true)), 101);
        for bad in [
            "abc",
            "dGhlIHNhbXBsZSBub25jZQ",     // no padding
            "dGhlIHNhbXBsZSBub25jZQ=",    // 23 characters
            "dGhlIHNhbXBsZSBub25jZ!==",   // not base64
            "dGhlIHNhbXBsZSBub25jZQdG==", // 18 bytes
            "",
        ] {
            assert_eq!(status_of(&with(bad, true)), 400, "{bad:?}");
        }
        assert_eq!(status_of(&with(KEY, false)), 400, "no Host");
        let post = "POST /sync HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(status_of(post), 405);
        // A client-chosen method is escaped in the close line.
        if let Outcome::Respond(r) = process(b"BAD\x1bX /sync HTTP/1.1\r\nHost: x\r\n\r\n", 8192) {
            assert!(!r.detail.contains('\u{1b}'), "{}", r.detail);
        }
    }
}

/// Random and mutated request heads: `process` and `forwarded_for` never
/// panic, whatever bytes arrive.
#[cfg(test)]
mod fuzz {
    use super::*;

    #[test]
    fn arbitrary_bytes_never_panic_the_parser() {
        let seeds: [&[u8]; 3] = [
            b"GET /sync HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4, 5.6.7.8\r\n\r\n",
            b"POST /metrics HTTP/1.0\r\n\r\n",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let mut buf = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + next() % 6 {
                let i = (next() as usize) % buf.len().max(1);
                match next() % 4 {
                    0 if !buf.is_empty() => {
                        buf.remove(i);
                    }
                    1 => buf.insert(i.min(buf.len()), next() as u8),
                    2 if !buf.is_empty() => buf[i] = next() as u8,
                    _ => buf.truncate(i),
                }
            }
            let _ = process(&buf, 8192);
            let _ = forwarded_for(&buf);
            let _ = may_be_complete(&buf, (next() as usize) % (buf.len() + 1));
        }
    }
}
