//! The SQLite store against databases written by the reference
//! implementation (`tests/data/fixtures`): cojson 0.20.19 (schema 7) and
//! jazz-run 0.15.10 (schema 3, migrated on open).

mod common;

use common::{TempDir, data_dir, fixture_copy, read_json};
use maia_sync::storage::sqlite::{OpenError, SqliteStore, Synchronous};
use maia_sync::storage::{SCHEMA_VERSION, Store};
use maia_sync::sync::Engine;
use maia_sync::sync::PeerId;
use maia_sync::sync::testkit::drain_text;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const FIXTURES: [&str; 2] = ["cojson-0.20.19-sample", "cojson-0.15.10-sample"];

fn sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn expected(fixture: &str) -> Value {
    read_json(
        &data_dir()
            .join("fixtures")
            .join(format!("{fixture}.expected.json")),
    )
}

fn user_version(path: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn fixture_rows_read_back_exactly() {
    for fixture in FIXTURES {
        let dir = TempDir::new("fixture-rows");
        let path = fixture_copy(&format!("{fixture}.db"), dir.path());
        let exp = expected(fixture);
        let mut store = SqliteStore::open(&path, Synchronous::Full).unwrap();
        for (name, rows) in exp["rows"].as_object().unwrap() {
            let id = rows["id"].as_str().unwrap();
            let cv = store
                .load(id)
                .unwrap()
                .unwrap_or_else(|| panic!("{fixture}: {name} missing"));
            assert_eq!(
                sha256(&cv.header),
                rows["headerSha256"],
                "{fixture} {name} header"
            );
            let want = rows["sessions"].as_array().unwrap();
            assert_eq!(cv.sessions.len(), want.len(), "{fixture} {name}");
            for (s, w) in cv.sessions.iter().zip(want) {
                assert_eq!(*s.session_id, *w["sessionID"].as_str().unwrap());
                assert_eq!(
                    s.txs.len() as u64,
                    w["lastIdx"].as_u64().unwrap(),
                    "{fixture} {name}"
                );
                assert_eq!(*s.last_signature, *w["lastSignature"].as_str().unwrap());
                let hashes: Vec<String> = s.txs.iter().map(|t| sha256(t)).collect();
                let want_hashes: Vec<String> = w["txSha256"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_str().unwrap().to_string())
                    .collect();
                assert_eq!(hashes, want_hashes, "{fixture} {name} transactions");
                let sigs: Vec<Value> = s
                    .signature_after
                    .iter()
                    .map(|(i, sig)| json!({"idx": i, "signature": &**sig}))
                    .collect();
                assert_eq!(
                    Value::Array(sigs),
                    w["signatureAfter"],
                    "{fixture} {name} signatureAfter"
                );
            }
        }
        drop(store);
        assert_eq!(
            user_version(&path),
            SCHEMA_VERSION,
            "{fixture} migrated to the current schema"
        );
    }
}

/// Loads every CoValue of a fixture through the engine, as a fresh client
/// would, and compares the content pieces with what cojson's own storage
/// served (`storageView`): same chunk boundaries, signatures and
/// `expectContentUntil`, and every session fully verified.
#[test]
fn fixtures_are_served_in_cojsons_chunks() {
    for fixture in FIXTURES {
        let dir = TempDir::new("fixture-serve");
        let path = fixture_copy(&format!("{fixture}.db"), dir.path());
        let exp = expected(fixture);
        let store = SqliteStore::open(&path, Synchronous::Full).unwrap();
        let mut engine = Engine::new(Box::new(store));
        for (n, name) in ["fileLarge", "streamSmall", "map", "group", "account"]
            .iter()
            .enumerate()
        {
            let peer = PeerId(n as u64 + 1);
            engine.connect(peer);
            let id = exp["ids"][name].as_str().unwrap();
            engine.receive_frame(
                peer,
                &json!({"action":"load","id":id,"header":false,"sessions":{}}).to_string(),
            );
            let ours: Vec<Value> = drain_text(&mut engine)
                .iter()
                .map(|(_, text)| serde_json::from_str::<Value>(text).unwrap())
                .filter(|m| m["id"] == id)
                .map(|m| {
                    let sessions: serde_json::Map<String, Value> = m["new"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(sid, s)| {
                            (sid.clone(), json!({"after": s["after"], "count": s["newTransactions"].as_array().unwrap().len(), "lastSignature": s["lastSignature"]}))
                        })
                        .collect();
                    json!({"sessions": sessions, "expectContentUntil": m.get("expectContentUntil"), "priority": m["priority"]})
                })
                .collect();
            let theirs: Vec<Value> = exp["storageView"][name]["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["id"] == id)
                .map(|m| {
                    let sessions: serde_json::Map<String, Value> = m["sessions"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(sid, s)| (sid.clone(), json!({"after": s["after"], "count": s["count"], "lastSignature": s["lastSignature"]})))
                        .collect();
                    json!({"sessions": sessions, "expectContentUntil": m.get("expectContentUntil"), "priority": m["priority"]})
                })
                .collect();
            assert_eq!(ours, theirs, "{fixture} {name}");
        }
    }
}

#[test]
fn bad_database_files_are_refused_with_a_clear_error() {
    let dir = TempDir::new("bad-files");
    // Not SQLite at all.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
    let e = SqliteStore::open(&junk, Synchronous::Full)
        .err()
        .expect("junk refused");
    assert!(matches!(e, OpenError::NotSqlite(_)), "{e}");
    assert!(e.to_string().contains("not an SQLite database"), "{e}");
    // A newer cojson schema.
    let newer = dir.path().join("newer.db");
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let e = SqliteStore::open(&newer, Synchronous::Full)
        .err()
        .expect("newer refused");
    assert!(matches!(e, OpenError::NewerSchema { found: 99, .. }), "{e}");
    // A folder that cannot be created (a file is in the way).
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let e = SqliteStore::open(&blocker.join("sub/db.sqlite"), Synchronous::Full)
        .err()
        .expect("refused");
    assert!(matches!(e, OpenError::NotAFolder(_)), "{e}");
    assert!(e.to_string().contains("is a file"), "{e}");
    // A folder where the database file should be.
    let e = SqliteStore::open(dir.path(), Synchronous::Full)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("is a folder"), "{e}");
}
