//! `maia-sync backup` and `maia-sync check` on the real binary: a backup
//! taken while clients write is a consistent database that passes `check`
//! and serves what was acknowledged before it started; `check` finds a
//! tampered transaction in a copy of a database written by cojson itself.

mod common;
mod service_support;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::text;
use service_support::{MapWriter, Next, canonical, load_session, next, send, ws_connect};

/// `maia-sync backup …` / `maia-sync check …`.
fn admin(args: &[&str]) -> Output {
    common::run_bin(args, &[])
}

/// The number after `name: ` in a `check` report.
fn field(report: &str, name: &str) -> usize {
    report
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

/// Writes batches until `stop`, publishing the acknowledged count.
fn write_until(
    addr: std::net::SocketAddr,
    seed: u8,
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> MapWriter {
    let mut writer = MapWriter::new(seed, &format!("backup{seed}"));
    let mut ws = ws_connect(addr);
    while !stop.load(Ordering::SeqCst) {
        send(&mut ws, &[writer.next_batch(4)]);
        let want = writer.txs.len() as u64;
        while acked.load(Ordering::SeqCst) < want {
            let Next::Messages(msgs) = next(&mut ws) else {
                panic!("server closed the connection");
            };
            for m in &msgs {
                if let Some(n) = writer.acked_in(m) {
                    acked.fetch_max(n, Ordering::SeqCst);
                }
            }
        }
    }
    writer
}

#[test]
fn a_backup_during_writes_passes_check_and_serves_the_acknowledged_values() {
    let dir = common::TempDir::new("svc-backup");
    let db = dir.path().join("live.db");
    let dest = dir.path().join("copy.db");
    let server = common::start_server(&["--db", db.to_str().unwrap()]);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::default()).collect();
    let handles: Vec<_> = (0..3u8)
        .map(|i| {
            let (a, s) = (acked[usize::from(i)].clone(), stop.clone());
            std::thread::spawn(move || write_until(addr, 40 + i, a, s))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.iter().any(|a| a.load(Ordering::SeqCst) < 40) {
        assert!(Instant::now() < deadline, "writers made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Acknowledged before the backup starts: must all be in the copy.
    let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    let out = admin(&[
        "backup",
        dest.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    let after: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("written to"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        before.iter().zip(&after).any(|(b, a)| a > b),
        "the writers were not writing during the backup: {before:?} {after:?}"
    );
    stop.store(true, Ordering::SeqCst);
    let writers: Vec<MapWriter> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let out = admin(&["check", "--db", dest.to_str().unwrap()]);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}{}", text(&out.stderr));
    assert_eq!(field(&report, "covalues"), 3, "{report}");
    assert_eq!(field(&report, "sessions"), 3, "{report}");
    assert_eq!(field(&report, "failures"), 0, "{report}");
    assert!(field(&report, "transactions") as u64 >= before.iter().sum::<u64>());
    // The copy is one self-contained file.
    assert!(!Path::new(&format!("{}-wal", dest.display())).exists());

    let copy = common::start_server(&["--db", dest.to_str().unwrap()]);
    for (w, b) in writers.iter().zip(&before) {
        let from_copy = load_session(copy.addr, &w.id, &w.session);
        let from_live = load_session(server.addr, &w.id, &w.session);
        assert!(
            from_copy.len() as u64 >= *b,
            "{}: {} < {b}",
            w.id,
            from_copy.len()
        );
        assert!(from_copy.len() <= from_live.len());
        // The same values: the copy serves a prefix of the live session.
        assert_eq!(from_copy[..], from_live[..from_copy.len()], "{}", w.id);
        for (i, tx) in from_copy.iter().enumerate() {
            assert_eq!(canonical(tx), w.txs[i]);
        }
    }
}

#[test]
fn check_reports_a_tampered_transaction_in_a_cojson_database() {
    let dir = common::TempDir::new("svc-check");
    let db = common::fixture_copy("cojson-0.20.19-sample.db", dir.path());
    let db_arg = db.to_str().unwrap();
    let out = admin(&["check", "--db", db_arg]);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}{}", text(&out.stderr));
    // The fixture's README: 7 CoValues, 7 sessions, 53 transactions.
    assert_eq!(field(&report, "covalues"), 7, "{report}");
    assert_eq!(field(&report, "sessions"), 7, "{report}");
    assert_eq!(field(&report, "transactions"), 53, "{report}");
    assert_eq!(field(&report, "failures"), 0, "{report}");
    assert!(report.contains("\nresult: ok ("), "{report}");

    // Change one transaction of the `map` session (its madeAt): still valid
    // JSON, but no longer what was signed.
    let c = rusqlite::Connection::open(&db).unwrap();
    let changed = c
        .execute(
            "UPDATE transactions SET tx = replace(tx, '\"madeAt\":', '\"madeAt\":1')
             WHERE ses = (SELECT s.rowID FROM sessions s JOIN coValues v ON s.coValue = v.rowID
                          WHERE v.id = 'co_zC83sAnVGMNjVAJ1ewwPmRvTMxc') AND idx = 3",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(c);
    let out = admin(&["check", "--db", db_arg]);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(field(&report, "failures"), 1, "{report}");
    let failed: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("FAILED "))
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert!(
        failed[0].contains("co_zC83sAnVGMNjVAJ1ewwPmRvTMxc"),
        "{report}"
    );
    assert!(failed[0].contains("signature does not match"), "{report}");
    assert!(report.contains("\nresult: FAILED ("), "{report}");

    // A missing session row's transactions are a failure too.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute(
        "DELETE FROM transactions WHERE ses = (SELECT s.rowID FROM sessions s
           JOIN coValues v ON s.coValue = v.rowID WHERE v.id = 'co_zPqEjY8vN4JmuaBpWmjij6aYcCR')
           AND idx = 0",
        [],
    )
    .unwrap();
    drop(c);
    let out = admin(&["check", "--db", db_arg]);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(field(&report, "failures"), 2, "{report}");
    assert!(
        report.contains("transactions or signature missing"),
        "{report}"
    );
}

#[test]
fn admin_commands_refuse_a_missing_or_foreign_database() {
    let dir = common::TempDir::new("svc-admin-bad");
    let missing = dir.path().join("missing.db");
    for args in [
        vec!["check", "--db", missing.to_str().unwrap()],
        vec![
            "backup",
            "/tmp/never-written.db",
            "--db",
            missing.to_str().unwrap(),
        ],
    ] {
        let out = admin(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains("missing.db"),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!missing.exists(), "check must not create the database");
    assert!(!Path::new("/tmp/never-written.db").exists());
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let out = admin(&["check", "--db", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not an SQLite database"),
        "{}",
        text(&out.stderr)
    );
}
