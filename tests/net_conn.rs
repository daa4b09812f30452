//! `Conn` over real loopback sockets, driven by hand (no reactor): the
//! upgrade, flushing and batching on the wire, the outbound cap and the
//! write-stall timeout for a client that never reads, the header deadline,
//! and the lingering close after an HTTP answer.

use std::io::{Read, Write};
use std::net::{TcpListener as StdListener, TcpStream as StdStream};
use std::time::{Duration, Instant};

use maia_sync::net::close::CloseReason;
use maia_sync::net::conn::{Conn, Event, Limits, Progress};
use maia_sync::net::http;
use maia_sync::sync::PeerId;
use mio::net::TcpStream;
use tungstenite::protocol::Role;

fn limits() -> Limits {
    Limits {
        max_message_bytes: 1 << 20,
        max_outbound_bytes: 1 << 20,
        max_header_bytes: http::MAX_HEADER_BYTES,
        header_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(30),
        trusted_proxies: Vec::new(),
    }
}

/// A server-side `Conn` over a real loopback socket plus its client end.
fn pair(limits: &Limits) -> (Conn, StdStream) {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let client = StdStream::connect(listener.local_addr().unwrap()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (server, addr) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    let conn = Conn::new(
        TcpStream::from_std(server),
        addr,
        PeerId(7),
        Instant::now(),
        limits,
    );
    (conn, client)
}

const UPGRADE: &str = "GET /sync HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Reads until the socket went quiet, collecting what the sink saw.
fn read_events(conn: &mut Conn, limits: &Limits, want: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..200 {
        let p = conn.on_readable(Instant::now(), limits, &mut |ev| match ev {
            Event::Upgraded { path } => seen.push(format!("upgraded {path}")),
            Event::Text(t) => seen.push(t.to_string()),
            Event::Head { .. } | Event::Metrics(_) => {}
        });
        assert!(matches!(p, Progress::Idle | Progress::Again), "{p:?}");
        if seen.len() >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    seen
}

/// Client side: reads the 101 head, then returns a tungstenite client.
fn client_ws(mut client: StdStream) -> tungstenite::WebSocket<StdStream> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        client.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    tungstenite::WebSocket::from_raw_socket(client, Role::Client, None)
}

fn upgraded(limits: &Limits) -> (Conn, StdStream) {
    let (mut conn, mut client) = pair(limits);
    client.write_all(UPGRADE.as_bytes()).unwrap();
    assert_eq!(read_events(&mut conn, limits, 1), ["upgraded /sync"]);
    assert!(conn.is_websocket());
    (conn, client)
}

#[test]
fn frames_right_behind_the_request_reach_the_sink() {
    let l = limits();
    let (mut conn, mut client) = pair(&l);
    // Masked text frame "hello", sent in the same write as the request.
    let mask = [1u8, 2, 3, 4];
    let mut bytes = UPGRADE.as_bytes().to_vec();
    bytes.extend_from_slice(&[0x81, 0x80 | 5]);
    bytes.extend_from_slice(&mask);
    bytes.extend(b"hello".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    client.write_all(&bytes).unwrap();
    assert_eq!(read_events(&mut conn, &l, 2), ["upgraded /sync", "hello"]);
}

#[test]
fn flush_sends_the_ping_then_batched_frames() {
    let l = limits();
    let (mut conn, client) = upgraded(&l);
    let now = Instant::now();
    for m in ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"] {
        conn.queue_message(m.to_string(), now, &l).unwrap();
    }
    assert!(conn.wants_flush());
    assert_eq!(conn.flush(now), Progress::Idle);
    assert!(!conn.wants_flush());
    assert_eq!(
        conn.next_deadline(&l),
        None,
        "idle WebSocket has no deadline"
    );
    let mut ws = client_ws(client);
    let ping = ws.read().unwrap().into_text().unwrap();
    assert!(ping.starts_with("{\"type\":\"ping\",\"time\":"), "{ping}");
    let batch = ws.read().unwrap().into_text().unwrap();
    assert_eq!(batch.as_str(), "{\"n\":1}\n{\"n\":2}\n{\"n\":3}");
}

/// Fills the socket of a client that never reads until output is stuck
/// in our queue (usable for any test that needs a backed-up peer).
fn fill_until_blocked(conn: &mut Conn, l: &Limits) -> Result<(), CloseReason> {
    let chunk = format!("\"{}\"", "x".repeat(60 * 1024));
    for _ in 0..10_000 {
        conn.queue_message(chunk.clone(), Instant::now(), l)?;
        let _ = conn.flush(Instant::now());
        if conn.queued_bytes() > 0 {
            return Ok(());
        }
    }
    panic!("socket never filled up");
}

#[test]
fn a_client_that_never_reads_hits_the_outbound_cap() {
    let l = limits();
    let (mut conn, _client) = upgraded(&l);
    fill_until_blocked(&mut conn, &l).unwrap();
    let chunk = "y".repeat(100 * 1024);
    let err = (0..100)
        .find_map(|_| {
            let e = conn.queue_message(chunk.clone(), Instant::now(), &l).err();
            let _ = conn.flush(Instant::now());
            e
        })
        .expect("cap never hit");
    match &err {
        CloseReason::OutboundOverflow { queued, limit } => {
            assert_eq!(*limit, l.max_outbound_bytes);
            assert!(queued > limit);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_abnormal());
    assert!(err.to_string().contains("max-outbound-bytes"), "{err}");
}

#[test]
fn a_write_that_makes_no_progress_times_out() {
    let l = Limits {
        max_outbound_bytes: usize::MAX,
        ..limits()
    };
    let (mut conn, _client) = upgraded(&l);
    fill_until_blocked(&mut conn, &l).unwrap();
    let now = Instant::now();
    let deadline = conn
        .next_deadline(&l)
        .expect("pending output has a deadline");
    assert!(deadline > now && deadline <= now + l.write_timeout);
    assert_eq!(conn.on_timer(now, &l), Progress::Idle);
    assert_eq!(
        conn.on_timer(deadline + Duration::from_millis(1), &l),
        Progress::Close(CloseReason::WriteStalled(l.write_timeout))
    );
}

#[test]
fn an_unfinished_request_head_times_out() {
    let l = limits();
    let (mut conn, mut client) = pair(&l);
    client.write_all(b"GET /sync HTTP/1.1\r\nHost:").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let p = conn.on_readable(Instant::now(), &l, &mut |ev| panic!("{ev:?}"));
    assert_eq!(p, Progress::Idle);
    let deadline = conn.next_deadline(&l).unwrap();
    assert_eq!(conn.on_timer(Instant::now(), &l), Progress::Idle);
    let p = conn.on_timer(deadline, &l);
    assert_eq!(
        p,
        Progress::Close(CloseReason::HeaderTimeout(l.header_timeout))
    );
    drop(conn);
    let mut answer = String::new();
    let _ = client.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408 "),
        "{answer}"
    );
}

#[test]
fn an_http_answer_is_written_then_the_connection_lingers() {
    let l = limits();
    let (mut conn, mut client) = pair(&l);
    client.write_all(b"GET /nope HTTP/1.1\r\n\r\n").unwrap();
    let mut p = Progress::Idle;
    for _ in 0..200 {
        p = conn.on_readable(Instant::now(), &l, &mut |ev| {
            assert!(matches!(ev, Event::Head { client: None }), "{ev:?}")
        });
        if p != Progress::Idle {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        matches!(&p, Progress::Ended(CloseReason::Http { status: 404, .. })),
        "{p:?}"
    );
    assert!(conn.wants_flush());
    assert_eq!(conn.flush(Instant::now()), Progress::Idle);
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap(); // EOF after shutdown
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    drop(client);
    std::thread::sleep(Duration::from_millis(50));
    assert!(matches!(conn.flush(Instant::now()), Progress::Close(_)));
}

#[test]
fn abort_sends_a_close_frame_and_lingers() {
    let l = limits();
    let (mut conn, client) = upgraded(&l);
    let now = Instant::now();
    let p = conn.abort(CloseReason::StorageFailed, now);
    assert_eq!(p, Progress::Ended(CloseReason::StorageFailed));
    assert!(!conn.is_websocket());
    // Pending output is dropped; the close frame goes out with the flush.
    assert_eq!(conn.flush(now), Progress::Idle);
    let mut ws = client_ws(client);
    let close = loop {
        if let tungstenite::Message::Close(c) = ws.read().unwrap() {
            break c;
        }
    };
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1011));
}
