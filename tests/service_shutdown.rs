//! Stopping the service: SIGTERM while clients write, the bounded shutdown
//! timeout, a second signal, and the systemd notifications (READY,
//! WATCHDOG, STOPPING) on a socket that stands in for systemd.

mod common;
mod service_support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::signal;
use service_support::{MapWriter, Next, canonical, load_session, next, send, ws_connect};
use tungstenite::protocol::frame::coding::CloseCode;

/// Waits for the server to exit (bounded).
fn wait_exit(server: &mut common::Server, within: Duration) -> ExitStatus {
    common::wait_exit(&mut server.child, within).unwrap_or_else(|| {
        panic!(
            "server still running {within:?} after the signal; logs: {:?}",
            server.logs.snapshot()
        )
    })
}

/// What one writer saw.
struct Written {
    writer: MapWriter,
    acked: u64,
    close: Option<CloseCode>,
}

/// Writes batches of 3 signed transactions, each after the previous one's
/// ack, until the server closes the connection.
fn write_until_closed(addr: std::net::SocketAddr, seed: u8, progress: Arc<AtomicU64>) -> Written {
    let mut writer = MapWriter::new(seed, &format!("sigterm{seed}"));
    let mut ws = ws_connect(addr);
    let mut acked = 0u64;
    loop {
        let batch = writer.next_batch(3);
        send(&mut ws, &[batch]);
        let want = writer.txs.len() as u64;
        while acked < want {
            match next(&mut ws) {
                Next::Messages(msgs) => {
                    for m in &msgs {
                        if let Some(n) = writer.acked_in(m) {
                            acked = acked.max(n);
                        }
                    }
                }
                Next::Closed(close) => {
                    return Written {
                        writer,
                        acked,
                        close,
                    };
                }
            }
        }
        progress.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn sigterm_under_write_load_closes_with_1001_and_loses_no_ack() {
    let dir = common::TempDir::new("svc-sigterm");
    let db = dir.path().join("sync.db");
    let db_arg = db.to_str().unwrap();
    let mut server = common::start_server(&["--db", db_arg]);
    let addr = server.addr;
    const WRITERS: u8 = 4;
    let progress: Vec<Arc<AtomicU64>> = (0..WRITERS).map(|_| Arc::default()).collect();
    let handles: Vec<_> = (0..WRITERS)
        .map(|i| {
            let p = progress[usize::from(i)].clone();
            std::thread::spawn(move || write_until_closed(addr, 20 + i, p))
        })
        .collect();
    // Let every writer get some acknowledged batches in, then stop the
    // server in the middle of the stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress.iter().any(|p| p.load(Ordering::SeqCst) < 5) {
        assert!(Instant::now() < deadline, "writers made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    let signalled = Instant::now();
    signal(server.pid(), libc::SIGTERM);
    let status = wait_exit(&mut server, Duration::from_secs(15));
    let took = signalled.elapsed();
    let logs = server.logs.snapshot();
    assert_eq!(status.code(), Some(0), "{logs:?}");
    // Clients answer the close at once: no need to wait for the timeout.
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    for needle in [
        "SIGTERM received: shutting down",
        "all connections closed",
        "storage closed; exiting",
    ] {
        assert!(
            logs.iter().any(|l| l.contains(needle)),
            "no {needle:?}: {logs:?}"
        );
    }
    assert!(
        !logs.iter().any(|l| l.contains("dropped")),
        "a connection had to be dropped: {logs:?}"
    );
    let written: Vec<Written> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // The WAL was checkpointed into the database file on the way out.
    let wal = format!("{db_arg}-wal");
    assert!(!Path::new(&wal).exists(), "{wal} left behind");

    let server = common::start_server(&["--db", db_arg]);
    for w in &written {
        assert_eq!(
            w.close,
            Some(CloseCode::Away),
            "close code for {}",
            w.writer.id
        );
        assert!(w.acked >= 15, "{} acked only {}", w.writer.id, w.acked);
        let served = load_session(server.addr, &w.writer.id, &w.writer.session);
        assert!(
            served.len() as u64 >= w.acked,
            "{}: {} acknowledged, {} after restart",
            w.writer.id,
            w.acked,
            served.len()
        );
        for (i, tx) in served.iter().enumerate() {
            assert_eq!(canonical(tx), w.writer.txs[i], "{} tx {i}", w.writer.id);
        }
    }
}

/// A client that upgrades and then never reads nor closes: the server
/// gives up on it at the shutdown timeout, and still exits 0. New
/// connections are refused as soon as the signal is handled.
#[test]
fn the_shutdown_timeout_bounds_the_wait_for_stuck_clients() {
    let mut server = common::start_server(&["--in-memory", "--shutdown-timeout-ms", "1500"]);
    let addr = server.addr;
    let stuck = ws_connect(addr);
    server
        .logs
        .wait_for("connection #1 opened", Duration::from_secs(5))
        .unwrap();
    let signalled = Instant::now();
    signal(server.pid(), libc::SIGTERM);
    server
        .logs
        .wait_for("SIGTERM received", Duration::from_secs(5))
        .expect("signal handled");
    let refused = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    assert!(
        refused.is_err(),
        "a new connection was accepted while stopping"
    );
    let status = wait_exit(&mut server, Duration::from_secs(10));
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{:?}", server.logs.snapshot());
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "took {took:?} with a 1.5 s timeout"
    );
    assert!(
        server
            .logs
            .snapshot()
            .iter()
            .any(|l| l.contains("shutdown timeout: dropped 1 connection(s)")),
        "{:?}",
        server.logs.snapshot()
    );
    drop(stuck);
}

/// SIGINT works like SIGTERM, and a second one stops waiting.
#[test]
fn a_second_sigint_stops_waiting() {
    let mut server = common::start_server(&["--in-memory", "--shutdown-timeout-ms", "60000"]);
    let _stuck = ws_connect(server.addr);
    server
        .logs
        .wait_for("connection #1 opened", Duration::from_secs(5))
        .unwrap();
    signal(server.pid(), libc::SIGINT);
    server
        .logs
        .wait_for("SIGINT received", Duration::from_secs(5))
        .expect("first SIGINT handled");
    let second = Instant::now();
    signal(server.pid(), libc::SIGINT);
    let status = wait_exit(&mut server, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(second.elapsed() < Duration::from_secs(3));
    assert!(
        server
            .logs
            .wait_for("SIGINT again", Duration::from_secs(1))
            .is_some()
    );
}

/// Receives notifications until `pred` holds for the list so far.
fn receive_until(sock: &UnixDatagram, got: &mut Vec<String>, pred: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    while !pred(got) {
        assert!(Instant::now() < deadline, "notifications so far: {got:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[test]
fn systemd_notifications_ready_watchdog_stopping() {
    let dir = common::TempDir::new("svc-notify");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut server = common::start_server_with_env(
        &["--in-memory"],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            // 200 ms: the server must ping every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut got = Vec::new();
    receive_until(&sock, &mut got, |g| !g.is_empty());
    assert!(got[0].starts_with("READY=1\n"), "{got:?}");
    assert!(
        got[0].contains(&format!("STATUS=listening on {}", server.addr)),
        "{got:?}"
    );
    let start = Instant::now();
    receive_until(&sock, &mut got, |g| {
        g.iter().filter(|m| *m == "WATCHDOG=1").count() >= 5
    });
    // Five pings at 100 ms intervals: about half a second (with slack for
    // a loaded machine), never bunched.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    signal(server.pid(), libc::SIGTERM);
    receive_until(&sock, &mut got, |g| {
        g.iter().any(|m| m.starts_with("STOPPING=1"))
    });
    assert_eq!(
        wait_exit(&mut server, Duration::from_secs(10)).code(),
        Some(0)
    );
}

#[test]
fn systemd_abstract_socket_and_foreign_watchdog() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("maia-sync-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let server = common::start_server_with_env(
        &["--in-memory"],
        &[
            ("NOTIFY_SOCKET", &format!("@{name}")),
            ("WATCHDOG_USEC", "100000"),
            // The watchdog is meant for another process: not for us.
            ("WATCHDOG_PID", "1"),
        ],
    );
    let mut got = Vec::new();
    receive_until(&sock, &mut got, |g| !g.is_empty());
    assert!(got[0].starts_with("READY=1"), "{got:?}");
    std::thread::sleep(Duration::from_millis(400));
    let mut buf = [0u8; 512];
    while let Ok(n) = sock.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(!got.iter().any(|m| m == "WATCHDOG=1"), "{got:?}");
    drop(server);
}

/// The notifier is silent without NOTIFY_SOCKET (the default in tests),
/// and a stop signal still ends the process cleanly.
#[test]
fn without_systemd_nothing_is_sent_and_stop_still_works() {
    let mut server = common::start_server(&["--in-memory"]);
    signal(server.pid(), libc::SIGTERM);
    assert_eq!(
        wait_exit(&mut server, Duration::from_secs(10)).code(),
        Some(0)
    );
    assert!(
        !server
            .logs
            .snapshot()
            .iter()
            .any(|l| l.contains("service manager")),
        "{:?}",
        server.logs.snapshot()
    );
}
