//! Interop scenarios: real cojson 0.20.19 clients (Node, `tests/node/*.mjs`)
//! against the server.
//!
//! Each test starts a fresh in-memory server, runs
//! `node tests/node/<scenario>.mjs <ws-url>` and requires exit status 0; on
//! failure it prints the script's output and the server's log lines.
//!
//! `MAIA_INTEROP_SERVER=reference` runs the same scenarios against the
//! reference server (`tests/node/reference-server.mjs`, a cojson `LocalNode`
//! like `jazz-run sync`) instead of the `maia-sync` binary: that is how the
//! scenarios themselves are validated, and how the two can be compared.
//!
//! The npm packages are installed with `npm ci` (from
//! `tests/node/package-lock.json`) the first time a test needs them.

mod common;

use std::time::Duration;

use common::node::{NodeProc, ReferenceServer, ensure_npm_packages, node_dir, take_turn};

/// Hard limit for one scenario script (each script also has its own, shorter
/// overall timeout and exits by itself).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn reference_mode() -> bool {
    match std::env::var("MAIA_INTEROP_SERVER").as_deref() {
        Ok("reference") => true,
        Ok("") | Ok("maia-sync") | Ok("binary") | Err(_) => false,
        Ok(other) => panic!("MAIA_INTEROP_SERVER={other:?}: expected `reference` or unset"),
    }
}

enum TestServer {
    Binary(common::Server),
    Reference(ReferenceServer),
}

impl TestServer {
    fn start() -> Self {
        if reference_mode() {
            TestServer::Reference(ReferenceServer::start(&[]))
        } else {
            TestServer::Binary(common::start_server(&["--in-memory"]))
        }
    }

    fn ws_url(&self) -> String {
        match self {
            TestServer::Binary(s) => s.ws_url(),
            TestServer::Reference(s) => s.ws_url(),
        }
    }

    fn log_lines(&self) -> Vec<String> {
        match self {
            TestServer::Binary(s) => s.logs.snapshot(),
            TestServer::Reference(s) => s.logs.snapshot(),
        }
    }
}

/// Runs `tests/node/<name>.mjs ARGS` to completion; panics with its output
/// and `server_logs` unless it exits 0.
fn run_script(
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    server_logs: impl Fn() -> Vec<String>,
) {
    let which = if reference_mode() {
        "reference server"
    } else {
        "maia-sync"
    };
    NodeProc::spawn(&format!("{name}.mjs"), args, env, SCRIPT_TIMEOUT)
        .labelled(format!("scenario {name} against {which}"))
        .expect_success(server_logs);
}

/// Runs `tests/node/<name>.mjs <ws-url>` against a fresh server.
fn scenario(name: &str, heavy: bool) {
    ensure_npm_packages();
    let _guard = heavy.then(take_turn);
    let server = TestServer::start();
    run_script(name, &[&server.ws_url()], &[], || server.log_lines());
}

#[test]
fn two_accounts() {
    scenario("two-accounts", false);
}

#[test]
fn colist_1000() {
    scenario("colist-1000", true);
}

#[test]
fn binary_5mb() {
    scenario("binary-5mb", true);
}

#[test]
fn public_value() {
    scenario("public-value", false);
}

#[test]
fn unavailable() {
    scenario("unavailable", false);
}

#[test]
fn concurrent_edits() {
    scenario("concurrent-edits", false);
}

#[test]
fn twenty_writers() {
    scenario("twenty-writers", true);
}

/// The script starts, kills and restarts the server itself (same port), so
/// it gets the server command instead of a URL; it prints the server's log
/// lines itself on failure.
#[test]
fn restart_reupload() {
    ensure_npm_packages();
    let cmd: Vec<String> = if reference_mode() {
        vec![
            "node".into(),
            node_dir()
                .join("reference-server.mjs")
                .to_string_lossy()
                .into_owned(),
        ]
    } else {
        vec![common::BIN.into(), "--in-memory".into()]
    };
    let cmd: Vec<String> = cmd
        .into_iter()
        .chain(["--host", "127.0.0.1", "--port", "{PORT}"].map(String::from))
        .collect();
    let cmd_json = serde_json::to_string(&cmd).unwrap();
    run_script(
        "restart-reupload",
        &[],
        &[("SERVER_CMD", &cmd_json), ("LOG_LEVEL", "debug")],
        Vec::new,
    );
}

/// Storage reconciliation (docs/protocol.md §4.5) with a real client that has
/// local SQLite storage (`tests/node/reconcile.mjs`, which describes the
/// phases and assertions): the client's storage holds 275 CoValues; server X
/// holds an older part of them (121 missing, 40 in an older state, 114
/// equal), server Z none. With `enableFullStorageReconciliation` the client
/// sends three `reconcile` batches to each; the server must `load` exactly
/// the missing and stale ones, ack every batch once they are uploaded, and
/// then serve every value to a fresh node.
#[test]
fn storage_reconciliation() {
    ensure_npm_packages();
    let _guard = take_turn();
    let dir = common::TempDir::new("reconcile");
    let db = dir.path().join("client.db");
    let state = dir.path().join("state.json");
    let (db, state) = (db.to_str().unwrap(), state.to_str().unwrap());
    let run = |phase: &str, server: &TestServer, extra: &[&str]| {
        let url = server.ws_url();
        let args: Vec<&str> = [phase, url.as_str(), db, state]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let which = if reference_mode() {
            "reference server"
        } else {
            "maia-sync"
        };
        NodeProc::spawn("reconcile.mjs", &args, &[], SCRIPT_TIMEOUT)
            .labelled(format!("reconcile {phase} against {which}"))
            .expect_success(|| server.log_lines());
    };

    // X gets the seed; Y (X never sees it) the offline edits.
    let x = TestServer::start();
    run("seed", &x, &[]);
    {
        let y = TestServer::start();
        run("offline-edit", &y, &[]);
    }
    run("reconcile", &x, &["--server-has", "seed"]);
    run("verify", &x, &[]);
    drop(x);

    // A fresh, empty server: everything is reconciled (the lock row the first
    // reconciliation left is deleted: it would hold the next one off for 30 days).
    let z = TestServer::start();
    run(
        "reconcile",
        &z,
        &["--server-has", "nothing", "--reset-lock"],
    );
    run("verify", &z, &[]);
}
