//! The service's settings and logs, on the real binary: every setting is
//! documented in `--help` with its default, bad values of the new settings
//! exit 2 naming their source, the admin commands' usage errors too, good
//! values take effect, and connection log lines name the real client only
//! behind a trusted proxy.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{run_bin, text};

#[test]
fn help_documents_every_setting_command_and_default() {
    let out = run_bin(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for (flag, env, default) in [
        ("--sync-mode", "SYNC_MODE", "full"),
        ("--memory-budget", "MEMORY_BUDGET", "128M"),
        ("--trusted-proxies", "TRUSTED_PROXIES", "none"),
        ("--shutdown-timeout-ms", "SHUTDOWN_TIMEOUT_MS", "10000"),
        ("--header-timeout-ms", "HEADER_TIMEOUT_MS", "10000"),
        ("--write-timeout-ms", "WRITE_TIMEOUT_MS", "30000"),
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("--help lacks {flag}:\n{help}"));
        assert!(line.contains(&format!("[env {env}]")), "{line}");
        assert!(line.contains(&format!("(default: {default})")), "{line}");
    }
    for needle in ["backup <DEST>", "check", "/metrics", "SIGTERM"] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    // Every line that names a variable also names its default.
    for line in help.lines().filter(|l| l.contains("[env ")) {
        assert!(line.contains("(default: "), "{line}");
    }
    // `check --help` is the same help, not an error.
    let out = run_bin(&["check", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), help);
}

#[test]
fn bad_values_of_the_new_settings_exit_2_naming_their_source() {
    common::assert_exit_2(&[
        (&["--sync-mode", "fast"], &[], "--sync-mode"),
        (&[], &[("SYNC_MODE", "off")], "SYNC_MODE"),
        (&["--memory-budget", "lots"], &[], "--memory-budget"),
        (&[], &[("MEMORY_BUDGET", "0")], "MEMORY_BUDGET"),
        (
            &["--trusted-proxies", "10.0.0.0/40"],
            &[],
            "--trusted-proxies",
        ),
        (
            &[],
            &[("TRUSTED_PROXIES", "proxy.local")],
            "TRUSTED_PROXIES",
        ),
        (
            &["--shutdown-timeout-ms", "0"],
            &[],
            "--shutdown-timeout-ms",
        ),
        (
            &[],
            &[("SHUTDOWN_TIMEOUT_MS", "soon")],
            "SHUTDOWN_TIMEOUT_MS",
        ),
        // A bad flag is named even when its variable is fine.
        (
            &["--sync-mode=x"],
            &[("SYNC_MODE", "normal")],
            "--sync-mode",
        ),
        (&["backup"], &[], "backup <DEST>"),
        (&["backup", "a.db", "b.db"], &[], "b.db"),
        (&["check", "--port", "1"], &[], "--port"),
        (&["check"], &[("LOG_LEVEL", "chatty")], "LOG_LEVEL"),
    ]);
    // Each message says what would have been accepted.
    let err = text(&run_bin(&[], &[("SYNC_MODE", "off")]).stderr);
    assert!(err.contains("full or normal"), "{err}");
}

#[test]
fn good_values_take_effect() {
    let dir = common::TempDir::new("svc-cli");
    let db = dir.path().join("s.db");
    let server = common::start_server_with_env(
        &["--db", db.to_str().unwrap(), "--memory-budget", "1M"],
        &[
            ("SYNC_MODE", "normal"),
            ("TRUSTED_PROXIES", "127.0.0.1, ::1"),
            ("SHUTDOWN_TIMEOUT_MS", "2000"),
        ],
    );
    assert!(
        server
            .logs
            .wait_for("synchronous Normal", Duration::from_secs(5))
            .is_some(),
        "{:?}",
        server.logs.snapshot()
    );
    drop(server);
    // The flag wins over the variable.
    let server = common::start_server_with_env(
        &["--db", db.to_str().unwrap(), "--sync-mode", "full"],
        &[("SYNC_MODE", "normal")],
    );
    assert!(
        server
            .logs
            .wait_for("synchronous Full", Duration::from_secs(5))
            .is_some()
    );
}

fn get(addr: std::net::SocketAddr, path: &str, extra: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// The open and close lines of connection `#n`.
fn lines_of(server: &common::Server, n: u64) -> (String, String) {
    let open = format!("connection #{n} opened from ");
    let close = format!("connection #{n} from ");
    let t = Duration::from_secs(5);
    let o = server.logs.wait_for(&open, t);
    let c = server.logs.wait_for(&close, t);
    let all = server.logs.snapshot();
    (
        o.unwrap_or_else(|| panic!("no {open:?} in {all:?}")),
        c.unwrap_or_else(|| panic!("no {close:?} in {all:?}")),
    )
}

#[test]
fn logs_name_the_client_behind_a_trusted_proxy_only() {
    let xff = "X-Forwarded-For: 198.51.100.1, 203.0.113.9\r\n";
    // Not trusted: the header is ignored, the TCP peer is logged.
    let server = common::start_server(&["--in-memory"]);
    assert!(get(server.addr, "/health", xff).starts_with("HTTP/1.1 200"));
    let (open, close) = lines_of(&server, 1);
    assert!(open.contains("opened from 127.0.0.1:"), "{open}");
    assert!(!open.contains("203.0.113.9"), "{open}");
    assert!(
        close.contains("closed: answered HTTP 200: health check"),
        "{close}"
    );
    drop(server);

    // Trusted (loopback is the proxy): the right-most untrusted address.
    let server = common::start_server(&["--in-memory", "--trusted-proxies", "127.0.0.0/8"]);
    assert!(get(server.addr, "/health", xff).starts_with("HTTP/1.1 200"));
    let (open, close) = lines_of(&server, 1);
    assert!(
        open.contains("opened from 203.0.113.9 via proxy 127.0.0.1:"),
        "{open}"
    );
    assert!(
        close.contains("from 203.0.113.9 via proxy 127.0.0.1:"),
        "{close}"
    );
    // No header: the proxy itself; and a connection that never sends a
    // request still gets exactly one open and one close line.
    assert!(get(server.addr, "/health", "").starts_with("HTTP/1.1 200"));
    let (open, _) = lines_of(&server, 2);
    assert!(open.contains("opened from 127.0.0.1:"), "{open}");
    drop(TcpStream::connect(server.addr).unwrap());
    let (open, close) = lines_of(&server, 3);
    assert!(open.contains("opened from 127.0.0.1:"), "{open}");
    assert!(close.contains("before a complete request"), "{close}");
    let count = |needle: &str| {
        server
            .logs
            .snapshot()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };
    assert_eq!(count(" opened from "), 3);
    assert_eq!(count(" closed: "), 3);
}
