//! End-to-end tests of the network layer against the real binary: HTTP
//! routing, handshake rejections, slow and misbehaving clients. Each test
//! checks that the bad client is refused *and* that the server says so in
//! its log; where it matters, that other clients are unaffected.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{tcp_connect, ws_connect};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Helpers. The raw ones (`http_exchange`, `raw_websocket`,
// `masked_text_frame`) send bytes a WebSocket library would not; the text
// helpers see every frame, pings included, where `common::WsClient` parses
// and skips them.

/// Sends raw bytes as an HTTP request and returns everything the server
/// sent until it closed the connection (failing if it never does).
fn http_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tcp_connect(addr);
    s.write_all(request).unwrap();
    let mut answer = Vec::new();
    match s.read_to_end(&mut answer) {
        Ok(_) => {}
        // A reset after the answer still counts as closed.
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("server did not close the connection: {e}"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The next text message, skipping control frames.
fn next_text(ws: &mut WebSocket<TcpStream>) -> String {
    loop {
        match ws.read().expect("read from server") {
            Message::Text(t) => return t.to_string(),
            Message::Close(c) => panic!("server closed: {c:?}"),
            _ => {}
        }
    }
}

/// The next text message that is not a ping.
fn next_non_ping(ws: &mut WebSocket<TcpStream>) -> String {
    loop {
        let t = next_text(ws);
        if !t.starts_with("{\"type\":\"ping\"") {
            return t;
        }
    }
}

fn assert_ping(text: &str) {
    let v: serde_json::Value = serde_json::from_str(text).expect("ping is JSON");
    assert_eq!(v["type"], "ping", "{text}");
    assert_eq!(v["dc"], "unknown", "{text}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let time = v["time"].as_i64().expect("integer time");
    assert!(
        (time - now).abs() < 60_000,
        "ping time {time} is not epoch ms ({now})"
    );
}

/// Upgrades by hand and returns the raw socket right after the 101 head:
/// write raw (even invalid) frames to it, or never read from it to play a
/// client that stopped reading.
fn raw_websocket(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = tcp_connect(addr);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("101 head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A client-to-server text frame (masked, as RFC 6455 requires).
fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![0x81];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    f
}

/// Reads until the server closes the socket; fails if it stays open.
fn assert_closed_by_server(s: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("connection still open: {e}"),
        }
    }
}

fn wait_log(server: &common::Server, needle: &str) -> String {
    server.logs.wait_for(needle, TIMEOUT).unwrap_or_else(|| {
        panic!(
            "no log line with {needle:?}; logs: {:#?}",
            server.logs.snapshot()
        )
    })
}

// ---------------------------------------------------------------------------
// Plain HTTP

#[test]
fn health_answers_200_json_and_closes() {
    let server = common::start_server(&["--in-memory"]);
    let answer = http_exchange(server.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("Content-Type: application/json\r\n"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["status"], "ok");
    wait_log(&server, "answered HTTP 200");
}

#[test]
fn plain_get_on_sync_is_426_and_other_paths_404() {
    let server = common::start_server(&["--in-memory"]);
    let a = http_exchange(server.addr, b"GET /sync HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{a}");
    assert!(a.contains("Upgrade: websocket\r\n"), "{a}");
    let a = http_exchange(
        server.addr,
        b"GET /nothing-here?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(a.starts_with("HTTP/1.1 404 Not Found\r\n"), "{a}");
    let a = http_exchange(
        server.addr,
        b"POST /sync HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(a.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{a}");
    wait_log(&server, "answered HTTP 426");
    wait_log(&server, "answered HTTP 404");
}

#[test]
fn malformed_http_gets_400_and_close() {
    let server = common::start_server(&["--in-memory"]);
    let a = http_exchange(
        server.addr,
        b"\x16\x03\x01\x00\xa5garbage, not http\r\n\r\n",
    );
    assert!(a.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{a}");
    wait_log(&server, "malformed HTTP request");
    // A broken handshake is a 400 too, not an upgrade.
    let a = http_exchange(
        server.addr,
        b"GET /sync HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(a.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{a}");
    wait_log(&server, "without Sec-WebSocket-Key");
    // RFC 6455 §4.2.1: the key must be the base64 of 16 bytes.
    let a = http_exchange(
        server.addr,
        b"GET /sync HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\n",
    );
    assert!(a.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{a}");
    wait_log(&server, "not the base64 of 16 bytes");
}

#[test]
fn oversized_headers_are_rejected() {
    let server = common::start_server(&["--in-memory"]);
    let req = format!(
        "GET /sync HTTP/1.1\r\nCookie: {}\r\n\r\n",
        "c".repeat(20_000)
    );
    let a = http_exchange(server.addr, req.as_bytes());
    assert!(a.starts_with("HTTP/1.1 431 "), "{a}");
    wait_log(&server, "answered HTTP 431");
}

#[test]
fn slowloris_is_cut_off_after_the_header_deadline() {
    let server = common::start_server(&["--in-memory", "--header-timeout-ms", "300"]);
    let mut s = tcp_connect(server.addr);
    s.write_all(b"GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr")
        .unwrap();
    assert_closed_by_server(&mut s);
    let line = wait_log(&server, "header timeout");
    assert!(line.contains("300 ms"), "{line}");
    // The server still serves others.
    let a = http_exchange(server.addr, b"GET /health HTTP/1.1\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 200 "), "{a}");
}

// ---------------------------------------------------------------------------
// WebSocket

#[test]
fn upgrade_on_sync_root_and_query_paths_gets_a_ping_first() {
    let server = common::start_server(&["--in-memory"]);
    for path in ["/sync", "/", "/?key=abc"] {
        let mut ws = ws_connect(server.addr, path);
        let first = next_text(&mut ws);
        assert_ping(&first);
    }
    // Periodic pings follow the first one.
    let mut ws = ws_connect(server.addr, "/sync");
    assert_ping(&next_text(&mut ws));
    assert_ping(&next_text(&mut ws));
    wait_log(&server, "upgraded to WebSocket on /sync");
    // The API key in the query string never reaches the log.
    assert!(
        server
            .logs
            .snapshot()
            .iter()
            .all(|l| !l.contains("key=abc"))
    );
}

#[test]
fn messages_reach_the_engine_and_replies_come_back_batched() {
    let server = common::start_server(&["--in-memory"]);
    let mut ws = ws_connect(server.addr, "/sync");
    let ids = ["co_zNetTestMissing1", "co_zNetTestMissing2"];
    let frame = ids
        .iter()
        .map(|id| format!(r#"{{"action":"load","id":"{id}","header":false,"sessions":{{}}}}"#))
        .collect::<Vec<_>>()
        .join("\n");
    ws.send(Message::text(frame)).unwrap();
    // Both replies are produced in one turn, so they share one frame.
    let reply = next_non_ping(&mut ws);
    let lines: Vec<&str> = reply.split('\n').collect();
    assert_eq!(lines.len(), 2, "{reply:?}");
    for (line, id) in lines.iter().zip(ids) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["action"], "known", "{line}");
        assert_eq!(v["id"], id, "{line}");
        assert_eq!(v["header"], false, "{line}");
    }
}

#[test]
fn garbage_after_upgrade_closes_only_that_connection() {
    let server = common::start_server(&["--in-memory"]);
    let mut good = ws_connect(server.addr, "/sync");
    assert_ping(&next_text(&mut good));
    let mut bad = raw_websocket(server.addr, "/sync");
    // Not a frame: no mask, reserved bits and opcode set.
    bad.write_all(&b"this is not a websocket frame. ".repeat(10))
        .unwrap();
    assert_closed_by_server(&mut bad);
    let line = wait_log(&server, "WebSocket protocol error");
    assert!(line.contains("closed"), "{line}");
    // The other client is unaffected: periodic pings keep coming.
    assert_ping(&next_text(&mut good));
    assert_ping(&next_text(&mut good));
}

#[test]
fn oversized_message_closes_with_1009_and_a_log_line() {
    let server = common::start_server(&["--in-memory", "--max-message-bytes", "1024"]);
    let mut ws = ws_connect(server.addr, "/sync");
    // Just under the limit is fine (the engine ignores it as bad JSON).
    ws.send(Message::text("x".repeat(1000))).unwrap();
    ws.send(Message::text("y".repeat(4096))).unwrap();
    let code = loop {
        match ws.read() {
            Ok(Message::Close(Some(c))) => break Some(c.code),
            Ok(Message::Close(None)) => break None,
            Ok(_) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Size));
    let line = wait_log(&server, "too big");
    assert!(line.contains("max-message-bytes is 1024"), "{line}");
    assert!(
        line.contains("WARN"),
        "abnormal closes are warnings: {line}"
    );
}

#[test]
fn binary_messages_are_ignored_and_the_connection_stays() {
    let server = common::start_server(&["--in-memory"]);
    let mut ws = ws_connect(server.addr, "/sync");
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    wait_log(&server, "ignoring a binary WebSocket message of 3 bytes");
    assert_ping(&next_text(&mut ws));
    assert_ping(&next_text(&mut ws));
}

#[test]
fn client_close_handshake_is_answered_and_logged() {
    let server = common::start_server(&["--in-memory"]);
    let mut ws = ws_connect(server.addr, "/sync");
    ws.close(None).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match ws.read() {
            Ok(_) => assert!(Instant::now() < deadline, "close never completed"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("close handshake failed: {e}"),
        }
    }
    wait_log(&server, "client closed the WebSocket");
}

#[test]
fn a_hand_made_masked_frame_is_processed() {
    let server = common::start_server(&["--in-memory"]);
    let mut s = raw_websocket(server.addr, "/sync");
    let load = br#"{"action":"load","id":"co_zNetTestRaw","header":false,"sessions":{}}"#;
    s.write_all(&masked_text_frame(load)).unwrap();
    let mut ws = WebSocket::from_raw_socket(s, tungstenite::protocol::Role::Client, None);
    let reply = next_non_ping(&mut ws);
    assert!(reply.contains("\"co_zNetTestRaw\""), "{reply}");
}

/// Plays a client that sends `load`s but never reads: each is answered with
/// a `known`, so unread output piles up on the server. Stops once the server
/// logged `needle` or dropped the connection.
fn flood_without_reading(server: &common::Server, s: &mut TcpStream, needle: &str) {
    let mut n = 0u64;
    let mut sent = 0usize;
    let logged = || server.logs.snapshot().iter().any(|l| l.contains(needle));
    while sent < 256 << 20 && !logged() {
        let frame: Vec<String> = (0..300)
            .map(|_| {
                n += 1;
                format!(
                    r#"{{"action":"load","id":"co_zNeverReads{n}","header":false,"sessions":{{}}}}"#
                )
            })
            .collect();
        let bytes = masked_text_frame(frame.join("\n").as_bytes());
        if s.write_all(&bytes).is_err() {
            return; // the server already dropped us
        }
        sent += bytes.len();
    }
}

#[test]
fn a_client_that_never_reads_is_dropped_at_the_outbound_cap() {
    let server = common::start_server(&["--in-memory", "--max-outbound-bytes", "256K"]);
    let mut watcher = ws_connect(server.addr, "/sync");
    let mut s = raw_websocket(server.addr, "/sync");
    flood_without_reading(&server, &mut s, "max-outbound-bytes");
    let line = wait_log(&server, "exceeds max-outbound-bytes");
    assert!(line.contains("WARN") && line.contains("(262144)"), "{line}");
    assert_closed_by_server(&mut s);
    // Others are still served.
    assert_ping(&next_text(&mut watcher));
}

#[test]
fn a_client_whose_output_stalls_is_dropped_after_the_write_timeout() {
    let server = common::start_server(&[
        "--in-memory",
        "--write-timeout-ms",
        "300",
        // Only the stall rule may fire here, never the cap.
        "--max-outbound-bytes",
        "1G",
    ]);
    let mut s = raw_websocket(server.addr, "/sync");
    // Fill the buffers, then go quiet (still not reading).
    flood_without_reading(&server, &mut s, "write timeout");
    let line = wait_log(&server, "no write progress for 300 ms");
    assert!(line.contains("WARN"), "{line}");
    assert_closed_by_server(&mut s);
}

#[test]
fn invalid_utf8_in_a_text_frame_closes_the_connection() {
    let server = common::start_server(&["--in-memory"]);
    let mut s = raw_websocket(server.addr, "/sync");
    s.write_all(&masked_text_frame(&[b'{', 0xff, 0xfe, b'}']))
        .unwrap();
    assert_closed_by_server(&mut s);
    let line = wait_log(&server, "not valid UTF-8");
    assert!(line.contains("WARN"), "{line}");
}
