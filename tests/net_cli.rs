//! The binary's command line: help, version, bad settings and a port that is
//! already taken must give a clear message and the right exit code, never a
//! panic.

mod common;

use common::{run_bin, text};

#[test]
fn help_lists_every_setting_with_its_default() {
    let out = run_bin(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for needle in [
        "--port",
        "PORT",
        "4203",
        "--host",
        "HOST",
        "0.0.0.0",
        "--db",
        "DB_PATH",
        "./local-sync.db",
        "--in-memory",
        "--log-level",
        "LOG_LEVEL",
        "--max-message-bytes",
        "MAX_MESSAGE_BYTES",
        "--max-outbound-bytes",
        "MAX_OUTBOUND_BYTES",
        "--version",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let out = run_bin(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_values_exit_2_with_a_clear_message() {
    common::assert_exit_2(&[
        (&["--port", "http"], &[], "--port"),
        (&[], &[("PORT", "99999")], "PORT"),
        (&["--log-level", "loud"], &[], "--log-level"),
        (&[], &[("MAX_MESSAGE_BYTES", "lots")], "MAX_MESSAGE_BYTES"),
        (&["--max-outbound-bytes", "0"], &[], "--max-outbound-bytes"),
        (&["--no-such-flag"], &[], "--no-such-flag"),
        (&["--port"], &[], "--port"),
    ]);
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let server = common::start_server(&["--in-memory"]);
    let port = server.addr.port().to_string();
    let out = run_bin(
        &["--in-memory", "--host", "127.0.0.1", "--port", &port],
        &[],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on 127.0.0.1:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_database_file_is_created_and_a_bad_one_is_refused() {
    let dir = common::TempDir::new("net-cli");
    let db = dir.path().join("sub").join("sync.db");
    let db_arg = db.to_str().unwrap();
    let server = common::start_server(&["--db", db_arg]);
    assert!(db.exists(), "{} not created", db.display());
    drop(server);

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let out = run_bin(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--db",
            junk.to_str().unwrap(),
        ],
        &[],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not an SQLite database"), "{err}");
    assert!(!err.contains("listening on"), "{err}");
}
