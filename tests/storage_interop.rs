//! Durable storage, end to end: the `maia-sync` binary with `--db`, real
//! cojson 0.20.19 clients (`tests/node/storage-*.mjs`) and the reference
//! server (`tests/node/reference-server.mjs --db`, cojson's own SQLite
//! storage over better-sqlite3).
//!
//! - `fixtures_read_through_the_server`: the tests/data/fixtures databases (cojson
//!   0.20.19 and jazz-run 0.15.10), served to a client logged in as their
//!   account, value for value and byte for byte; again after a restart.
//! - `values_survive_a_restart`: values written, acknowledged, server stopped
//!   (SIGTERM, SIGKILL after 5 s), restarted on the same file, read back.
//! - `kill_9_during_a_write_load_loses_no_acknowledged_transaction`: the
//!   server is SIGKILLed while a client writes as fast as it can; after the
//!   restart every session has at least the count the server acknowledged.
//! - `round_trip_with_the_reference_server`: a database written by maia-sync
//!   is served by the reference, and one written by the reference is served
//!   by maia-sync.
//! - `memory_stays_within_the_budget_while_a_client_loads_more_than_fits`:
//!   with `--memory-budget 2M`, 16 MB of binary streams are written and read
//!   back byte-exact while /metrics' cache size stays under the budget and
//!   the server's RSS grows by at most the budget plus 10 MiB.
//! - `bad_database_files_are_refused`: newer schema, a truncated file, a
//!   directory, and unwritable paths make the binary exit 1 with a message.
//!
//! The npm packages (with better-sqlite3, built from source) are installed
//! with `npm ci` in tests/node the first time a test needs them.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::node::{NodeProc, ReferenceServer, ensure_npm_packages, take_turn};
use common::{
    Server, TempDir, data_dir, describe_exit, fixture_copy, read_json, signal, start_server, tail,
    wait_exit,
};
use serde_json::Value;

/// Hard limit for one node script (each script has its own, shorter one).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// Starts `node tests/node/<script> ARGS`.
fn spawn_script(script: &str, args: &[&str]) -> NodeProc {
    NodeProc::spawn(script, args, &[], SCRIPT_TIMEOUT)
}

/// Runs a script to completion; panics (with both logs) unless it exits 0.
fn run_script(script: &str, args: &[&str], server_logs: impl Fn() -> Vec<String>) -> Vec<String> {
    spawn_script(script, args).expect_success(server_logs)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// maia-sync on `db`.
fn start_maia(db: &Path) -> Server {
    start_server(&["--db", path_str(db)])
}

/// Starts maia-sync on `db` and runs `node tests/node/<script> URL FILE`
/// against it (see `run_script`); returns the server, still running.
fn maia_run(db: &Path, script: &str, file: &Path) -> Server {
    let server = start_maia(db);
    run_script(script, &[&server.ws_url(), path_str(file)], || {
        server.logs.snapshot()
    });
    server
}

/// The same with the reference server on `db`.
fn reference_run(db: &Path, script: &str, file: &Path) -> ReferenceServer {
    let reference = ReferenceServer::start(&["--db", path_str(db)]);
    run_script(script, &[&reference.ws_url(), path_str(file)], || {
        reference.logs.snapshot()
    });
    reference
}

/// Stops maia-sync the way a service manager does: SIGTERM, then SIGKILL if
/// it is still running after 5 s. Returns what happened, for the test output.
fn stop_gracefully(mut server: Server) -> String {
    signal(server.pid(), libc::SIGTERM);
    let outcome = match wait_exit(&mut server.child, Duration::from_secs(5)) {
        Some(status) => {
            // Dying of the signal itself is fine (not handled yet); exiting
            // by itself with a failure code is not.
            assert!(
                status.code().is_none_or(|c| c == 0),
                "maia-sync failed on SIGTERM: {status}\n{}",
                tail(&server.logs.snapshot(), 100)
            );
            format!("on SIGTERM it {}", describe_exit(status))
        }
        None => {
            let _ = server.child.kill();
            let _ = server.child.wait();
            "it did not exit within 5 s of SIGTERM: stopped with SIGKILL".to_string()
        }
    };
    let errors: Vec<String> = server
        .logs
        .snapshot()
        .into_iter()
        .filter(|l| l.contains("[ERROR]") || l.contains("panicked"))
        .collect();
    assert!(
        errors.is_empty(),
        "maia-sync logged errors: {errors:?}\n{}",
        tail(&server.logs.snapshot(), 100)
    );
    outcome
}

/// SIGKILL, no warning.
fn kill_9(mut server: Server) {
    server.child.kill().expect("SIGKILL maia-sync");
    let status = server.child.wait().expect("wait for maia-sync");
    assert!(
        status.code().is_none(),
        "maia-sync exited by itself before the kill: {status}"
    );
}

fn sqlite(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn user_version(path: &Path) -> i64 {
    sqlite(path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// `sessions.lastIdx` per session ID of one CoValue, straight from the file.
fn stored_sessions(conn: &rusqlite::Connection, id: &str) -> Vec<(String, i64)> {
    let mut stmt = conn
        .prepare(
            "SELECT s.sessionID, s.lastIdx FROM sessions s JOIN coValues c ON s.coValue = c.rowID \
             WHERE c.id = ?1 ORDER BY s.rowID",
        )
        .unwrap();
    stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

// ---------------------------------------------------------------------------

#[test]
fn fixtures_read_through_the_server() {
    ensure_npm_packages();
    let _turn = take_turn();
    for fixture in ["cojson-0.20.19-sample", "cojson-0.15.10-sample"] {
        let dir = TempDir::new("storage-fixture");
        let db = fixture_copy(&format!("{fixture}.db"), dir.path());
        let expected_path = data_dir()
            .join("fixtures")
            .join(format!("{fixture}.expected.json"));
        let expected = read_json(&expected_path);

        // First open (the 0.15 file is migrated), then once more after a
        // restart: what the client wrote on login (its account migration) is
        // served back from the file and verifies too.
        for round in ["first open", "after a restart"] {
            println!("{fixture}, {round}:");
            let server = maia_run(&db, "storage-fixture-read.mjs", &expected_path);
            println!("  server stop: {}", stop_gracefully(server));
        }

        // The file: cojson schema 7, every fixture session still complete.
        assert_eq!(user_version(&db), 7, "{fixture}: PRAGMA user_version");
        let conn = sqlite(&db);
        for (name, rows) in expected["rows"].as_object().unwrap() {
            let id = rows["id"].as_str().unwrap();
            let stored = stored_sessions(&conn, id);
            for s in rows["sessions"].as_array().unwrap() {
                let sid = s["sessionID"].as_str().unwrap();
                let want = s["lastIdx"].as_i64().unwrap();
                let got = stored.iter().find(|(x, _)| x == sid).map(|(_, n)| *n);
                assert!(
                    got.is_some_and(|n| n >= want),
                    "{fixture} {name} session {sid}: lastIdx {got:?}, expected at least {want}"
                );
            }
        }
    }
}

#[test]
fn values_survive_a_restart() {
    ensure_npm_packages();
    let _turn = take_turn();
    let dir = TempDir::new("storage-restart");
    let db = dir.path().join("sync.db");
    let record = dir.path().join("written.json");

    let server = maia_run(&db, "storage-write.mjs", &record);
    let stop = stop_gracefully(server);
    let wal = dir.path().join("sync.db-wal");
    println!(
        "server stop: {stop}; -wal file left: {}",
        match std::fs::metadata(&wal) {
            Ok(m) => format!("{} bytes", m.len()),
            Err(_) => "none".to_string(),
        }
    );

    let server = maia_run(&db, "storage-read.mjs", &record);

    // The rows are in cojson's layout: the public map has its 8
    // transactions (title, count x3, nested, plain, temp, delete temp).
    drop(server);
    let written = read_json(&record);
    let map_id = written["ids"]["pubMap"].as_str().unwrap();
    let sessions = stored_sessions(&sqlite(&db), map_id);
    assert_eq!(sessions.len(), 1, "pubMap sessions: {sessions:?}");
    assert_eq!(sessions[0].1, 8, "pubMap transactions: {sessions:?}");
    assert_eq!(user_version(&db), 7);
}

/// One writer run: the server is SIGKILLed once it has acknowledged
/// `kill_at` transactions of the written CoValues.
struct Cycle {
    written: u64,
    acked: u64,
}

fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

fn write_until_killed(server: Server, record: &Path, kill_at: u64) -> Cycle {
    let url = server.ws_url();
    let mut writer = spawn_script("storage-ack-writer.mjs", &[&url, path_str(record)]);
    let reached = writer.stdout.wait_until(Duration::from_secs(40), |l| {
        l.starts_with("ALL WRITTEN")
            || (l.starts_with("progress") && field(l, "acked").is_some_and(|a| a >= kill_at))
    });
    let logs = server.logs.snapshot();
    let Some(line) = reached else {
        let status = writer.wait();
        panic!(
            "the writer never reached {kill_at} acknowledged transactions\n{}",
            writer.report(status, &logs)
        );
    };
    assert!(
        !line.starts_with("ALL WRITTEN"),
        "the writer finished before the kill: not a kill during a write load\n{}",
        writer.report(None, &logs)
    );
    kill_9(server);
    let status = writer.wait();
    let out = writer.stdout.snapshot();
    let result = out.iter().find(|l| l.starts_with("RESULT "));
    let (Some(result), Some(true)) = (result, status.map(|s| s.success())) else {
        panic!("{}", writer.report(status, &logs));
    };
    println!("  killed at: {line}\n  writer: {result}");
    Cycle {
        written: field(result, "written").unwrap(),
        acked: field(result, "acked").unwrap(),
    }
}

#[test]
fn kill_9_during_a_write_load_loses_no_acknowledged_transaction() {
    ensure_npm_packages();
    let _turn = take_turn();
    let started = Instant::now();
    let dir = TempDir::new("storage-kill9");
    let db = dir.path().join("sync.db");
    let mut records: Vec<PathBuf> = Vec::new();
    let mut server = start_maia(&db);
    // Kill points (acknowledged transactions of the written CoValues) of the
    // cycles; every cycle reopens the file the previous kill left behind.
    for (n, kill_at) in [300u64, 1500, 3000].into_iter().enumerate() {
        println!(
            "cycle {}: kill -9 at {kill_at} acknowledged transactions",
            n + 1
        );
        let record = dir.path().join(format!("acked-{n}.json"));
        let cycle = write_until_killed(server, &record, kill_at);
        assert!(
            cycle.acked >= kill_at && cycle.written >= cycle.acked,
            "cycle {}: written {}, acked {}",
            n + 1,
            cycle.written,
            cycle.acked
        );
        records.push(record);

        server = start_maia(&db);
        let url = server.ws_url();
        let mut args: Vec<&str> = vec![&url];
        args.extend(records.iter().map(|p| path_str(p)));
        let out = run_script("storage-ack-check.mjs", &args, || server.logs.snapshot());
        let summary: Value = out
            .iter()
            .find_map(|l| l.strip_prefix("SUMMARY "))
            .map(|s| serde_json::from_str(s).unwrap())
            .expect("SUMMARY line");
        // Everything acknowledged so far, over all cycles, was checked.
        let checked = summary["ackedTx"].as_u64().unwrap();
        assert!(
            checked > 100 * (n as u64 + 1) && checked >= cycle.acked,
            "too few acknowledged transactions checked: {summary}"
        );
        assert!(
            summary["covalues"].as_u64().unwrap() >= 4 * (n as u64 + 1),
            "{summary}"
        );
    }
    drop(server);
    println!("3 cycles in {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn round_trip_with_the_reference_server() {
    ensure_npm_packages();
    let _turn = take_turn();
    let dir = TempDir::new("storage-reference");

    // maia-sync writes, the reference serves.
    let db = dir.path().join("by-maia.db");
    let record = dir.path().join("by-maia.json");
    let server = maia_run(&db, "storage-write.mjs", &record);
    println!("maia-sync stop: {}", stop_gracefully(server));
    let reference = reference_run(&db, "storage-read.mjs", &record);
    let ref_logs = reference.logs.snapshot();
    assert!(
        !ref_logs
            .iter()
            .any(|l| l.contains("Failed to add transactions from storage")),
        "the reference rejected rows maia-sync wrote:\n{}",
        tail(&ref_logs, 100)
    );
    println!("reference stop: {}", reference.stop());

    // The reference writes, maia-sync serves (it must also replay the `-wal`
    // file the reference leaves behind).
    let db = dir.path().join("by-reference.db");
    let record = dir.path().join("by-reference.json");
    let reference = reference_run(&db, "storage-write.mjs", &record);
    println!("reference stop: {}", reference.stop());
    let wal = dir.path().join("by-reference.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    println!("the reference left a {wal_len}-byte -wal file");
    let server = maia_run(&db, "storage-read.mjs", &record);
    println!("maia-sync stop: {}", stop_gracefully(server));
}

// ---------------------------------------------------------------------------
// Memory budget: `--memory-budget` caps the CoValues the engine keeps cached
// (reported by GET /metrics as `maia_sync_cached_bytes`); a client reading
// far more than that must get everything, byte-exact, while the cache and the
// process stay small.

/// The server's memory, sampled while a client works.
#[derive(Default, Debug)]
struct MemSamples {
    samples: usize,
    max_cached_bytes: u64,
    max_covalues_in_memory: u64,
    max_rss_kib: u64,
    /// Samples whose `maia_sync_cached_bytes` was over the budget.
    over_budget: Vec<u64>,
    errors: Vec<String>,
}

/// `/proc/PID/status` field in KiB (VmRSS, VmHWM).
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// GET /metrics; the gauge values by name.
fn get_metrics(addr: std::net::SocketAddr) -> Result<Vec<(String, u64)>, String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("read: {e}"))?;
    let status = text.lines().next().unwrap_or("");
    if !status.contains(" 200") {
        return Err(format!("GET /metrics answered {status:?}"));
    }
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.trim().parse::<f64>().ok()? as u64))
        })
        .collect())
}

/// Samples /metrics and the RSS every 20 ms until the returned flag is set.
fn sample_memory(
    server: &Server,
    budget: u64,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<MemSamples>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (addr, pid) = (server.addr, server.pid());
    let handle = std::thread::spawn(move || {
        let mut m = MemSamples::default();
        while !flag.load(Ordering::SeqCst) {
            match get_metrics(addr) {
                Ok(values) => {
                    m.samples += 1;
                    let get = |n: &str| values.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
                    match get("maia_sync_cached_bytes") {
                        Some(c) => {
                            m.max_cached_bytes = m.max_cached_bytes.max(c);
                            if c > budget {
                                m.over_budget.push(c);
                            }
                        }
                        None => m
                            .errors
                            .push("no maia_sync_cached_bytes in /metrics".into()),
                    }
                    if let Some(n) = get("maia_sync_covalues_in_memory") {
                        m.max_covalues_in_memory = m.max_covalues_in_memory.max(n);
                    }
                }
                Err(e) => m.errors.push(e),
            }
            if let Some(rss) = proc_kib(pid, "VmRSS") {
                m.max_rss_kib = m.max_rss_kib.max(rss);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    });
    (stop, handle)
}

fn finish_sampling(
    (stop, handle): (
        Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<MemSamples>,
    ),
) -> MemSamples {
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    handle.join().expect("sampler thread")
}

#[test]
fn memory_stays_within_the_budget_while_a_client_loads_more_than_fits() {
    ensure_npm_packages();
    let _turn = take_turn();
    const BUDGET: u64 = 2 << 20;
    const STREAMS: u64 = 40;
    const STREAM_BYTES: u64 = 400_000;
    // Room for everything that is not the CoValue cache: SQLite's page
    // cache, socket buffers, one CoValue being parsed and sent.
    const SLACK: u64 = 10 << 20;
    let dir = TempDir::new("storage-budget");
    let db = dir.path().join("sync.db");
    let record = dir.path().join("bulk.json");
    let args = ["--db", path_str(&db), "--memory-budget", "2M"];

    // 16 MB of binary streams (about 22 MB as stored: base64 in JSON) are
    // written through a server with a 2 MiB budget...
    let server = start_server(&args);
    let sampler = sample_memory(&server, BUDGET);
    run_script(
        "storage-bulk-write.mjs",
        &[
            &server.ws_url(),
            path_str(&record),
            "--count",
            &STREAMS.to_string(),
            "--bytes",
            &STREAM_BYTES.to_string(),
        ],
        || server.logs.snapshot(),
    );
    let written = finish_sampling(sampler);
    println!("while writing: {written:?}");
    println!("server stop: {}", stop_gracefully(server));
    let db_bytes = std::fs::metadata(&db).unwrap().len();

    // ...and read back, all of it, by a client of a restarted server (cold
    // cache: everything comes from the file).
    let server = start_server(&args);
    let hwm_before = proc_kib(server.pid(), "VmHWM").expect("/proc/PID/status VmHWM");
    let sampler = sample_memory(&server, BUDGET);
    run_script(
        "storage-bulk-read.mjs",
        &[&server.ws_url(), path_str(&record)],
        || server.logs.snapshot(),
    );
    let read = finish_sampling(sampler);
    let hwm_after = proc_kib(server.pid(), "VmHWM").unwrap();
    println!("while reading: {read:?}");
    println!(
        "database {db_bytes} bytes; server peak RSS {hwm_before} KiB before the reads, {hwm_after} KiB after"
    );

    for (phase, m) in [("writing", &written), ("reading", &read)] {
        assert!(m.errors.is_empty(), "{phase}: {:?}", m.errors);
        assert!(m.samples >= 10, "{phase}: only {} samples", m.samples);
        assert!(
            m.over_budget.is_empty(),
            "{phase}: maia_sync_cached_bytes over the {BUDGET}-byte budget: {:?}",
            m.over_budget
        );
    }
    assert!(db_bytes > 8 * BUDGET, "only {db_bytes} bytes stored");
    assert!(
        read.max_cached_bytes > 0,
        "the cache was never used: {read:?}"
    );
    assert!(
        read.max_covalues_in_memory < STREAMS,
        "every stream stayed in memory: {read:?}"
    );
    let growth = hwm_after.saturating_sub(hwm_before) << 10;
    assert!(
        growth <= BUDGET + SLACK,
        "the server's peak RSS grew by {growth} bytes while a client read {db_bytes} bytes \
         (budget {BUDGET} + {SLACK} slack)"
    );
}

// ---------------------------------------------------------------------------
// Bad database files: the binary must refuse them with exit status 1 and a
// message naming the file, before it listens. (tests/net_cli.rs covers a
// file that is not an SQLite database at all.)

fn run_binary_on(db: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(common::BIN)
        .args(["--host", "127.0.0.1", "--port", "0", "--db", path_str(db)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run maia-sync");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_exit(&mut child, Duration::from_secs(10));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let err = reader.join().unwrap();
    assert!(status.is_some(), "maia-sync kept running on {db:?}: {err}");
    (status.unwrap().code(), err)
}

fn assert_refused(db: &Path, needles: &[&str]) -> String {
    let (code, err) = run_binary_on(db);
    assert_eq!(code, Some(1), "--db {}: {err}", db.display());
    for n in needles {
        assert!(
            err.contains(n),
            "--db {}: stderr lacks {n:?}: {err}",
            db.display()
        );
    }
    assert!(!err.contains("listening on"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    println!("--db {}: {}", db.display(), err.trim());
    err
}

/// Makes a path immutable (`chattr +i`) for as long as it lives; the only way
/// to make a file unwritable for root. None if the file system does not
/// support it.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Immutable(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn bad_database_files_are_refused() {
    let dir = TempDir::new("storage-bad");

    // A database written by a newer cojson (schema 99): refused, untouched.
    let newer = fixture_copy("cojson-0.20.19-sample.db", dir.path());
    sqlite(&newer)
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let before = std::fs::read(&newer).unwrap();
    assert_refused(&newer, &[path_str(&newer), "99", "newer"]);
    assert_eq!(user_version(&newer), 99);
    assert!(
        std::fs::read(&newer).unwrap() == before,
        "the newer-schema file was modified"
    );

    // A truncated database (a valid header, pages missing): refused, untouched.
    let truncated = dir.path().join("truncated.db");
    let full = std::fs::read(data_dir().join("fixtures/cojson-0.20.19-sample.db")).unwrap();
    std::fs::write(&truncated, &full[..8192]).unwrap();
    assert_refused(&truncated, &[path_str(&truncated), "malformed"]);
    assert!(std::fs::read(&truncated).unwrap() == full[..8192]);

    // Not a file but a directory.
    let folder = dir.path().join("a-folder.db");
    std::fs::create_dir(&folder).unwrap();
    assert_refused(&folder, &[path_str(&folder)]);

    // Unwritable: the parent "folder" is a regular file (root can write
    // anywhere, but not there).
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let under_file = file.join("sync.db");
    assert_refused(&under_file, &[path_str(&file)]);
    assert_eq!(std::fs::read(&file).unwrap(), b"not a folder");

    // Unwritable for root too: an immutable folder (no new file, no -wal),
    // and an immutable database file. Skipped where chattr does not work.
    let ro_dir = dir.path().join("immutable-dir");
    std::fs::create_dir(&ro_dir).unwrap();
    match Immutable::set(&ro_dir) {
        Some(_guard) => {
            let db = ro_dir.join("sync.db");
            assert_refused(&db, &[path_str(&db)]);
            assert!(!db.exists());
        }
        None => println!("chattr +i is not available here: immutable cases skipped"),
    }
    let sub = dir.path().join("immutable-file");
    std::fs::create_dir(&sub).unwrap();
    let ro_db = fixture_copy("cojson-0.20.19-sample.db", &sub);
    if let Some(_guard) = Immutable::set(&ro_db) {
        assert_refused(&ro_db, &[path_str(&ro_db)]);
    }
}
