//! The engine over the SQLite store: persistence across reopen, the memory
//! budget, and what happens when a commit fails.

use crate::storage::memory::MemoryStore;
use crate::storage::sqlite::{SqliteStore, Synchronous};
use crate::storage::{Store, StoreError, StoredCoValue, Write};
use crate::sync::PeerId;
use crate::sync::testkit::*;
use crate::sync::{CloseWhy, Engine};
use serde_json::{Value, json};

const A: PeerId = PeerId(1);
const B: PeerId = PeerId(2);

/// Writes `n` maps, each with `batches` signed batches of `size`-char changes.
fn write_maps(e: &mut Engine, n: usize, batches: usize, size: usize) -> Vec<(String, String)> {
    let agent = Agent::new(21);
    let sid = agent.session("w");
    let mut ids = Vec::new();
    for i in 0..n {
        let (header, id) = allow_all_map(&format!("m{i}"));
        let mut w = Writer::new();
        for b in 0..batches {
            let batch = w.batch(&agent, &[format!("[\"{}{}\"]", b, "v".repeat(size))]);
            let r = only(
                A,
                &send(
                    e,
                    A,
                    &content(&id, (b == 0).then_some(&header), &sid, &batch),
                ),
            );
            assert_eq!(
                r.last().unwrap()["sessions"][&sid],
                b + 1,
                "ack after commit"
            );
        }
        ids.push((id, sid.clone()));
    }
    ids
}

fn load_all(e: &mut Engine, peer: PeerId, id: &str) -> Vec<Value> {
    only(
        peer,
        &send(
            e,
            peer,
            &json!({"action":"load","id":id,"header":false,"sessions":{}}),
        ),
    )
    .into_iter()
    .filter(|m| m["id"] == id)
    .collect()
}

#[test]
fn values_survive_reopening_the_database() {
    let dir = TempDir::new("reopen");
    let path = dir.0.join("sub/folder/db.sqlite");
    let (ids, first): (Vec<(String, String)>, Vec<Vec<Value>>) = {
        let mut e = Engine::new(Box::new(
            SqliteStore::open(&path, Synchronous::Full).unwrap(),
        ));
        e.connect(A);
        e.connect(B);
        let ids = write_maps(&mut e, 20, 3, 50);
        let first = ids.iter().map(|(id, _)| load_all(&mut e, B, id)).collect();
        (ids, first)
    };
    let mut e = Engine::new(Box::new(
        SqliteStore::open(&path, Synchronous::Full).unwrap(),
    ));
    e.connect(B);
    for ((id, sid), before) in ids.iter().zip(first) {
        let after = load_all(&mut e, B, id);
        assert_eq!(after.len(), 1);
        assert_eq!(
            after[0]["new"][sid]["newTransactions"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(after, before, "{id} served the same after reopening");
    }
}

#[test]
fn memory_stays_within_the_budget_and_evicted_values_reload() {
    let dir = TempDir::new("budget");
    let path = dir.0.join("db.sqlite");
    let mut e = Engine::new(Box::new(
        SqliteStore::open(&path, Synchronous::Normal).unwrap(),
    ));
    let budget = 256 << 10;
    e.set_memory_budget(budget);
    e.connect(A);
    e.connect(B);
    let ids = write_maps(&mut e, 200, 2, 2_000);
    assert!(
        e.cached_bytes() <= budget,
        "{} > {budget}",
        e.cached_bytes()
    );
    assert!(e.covalues_in_memory() < 200, "some CoValues were evicted");
    for (id, sid) in &ids {
        let got = load_all(&mut e, B, id);
        assert_eq!(
            got[0]["new"][sid]["newTransactions"]
                .as_array()
                .unwrap()
                .len(),
            2,
            "{id}"
        );
        assert!(e.cached_bytes() <= budget);
    }
}

/// A memory store whose next commit with writes fails.
struct FailingStore {
    inner: MemoryStore,
    fail_next_commit: bool,
    dirty: bool,
}

impl Store for FailingStore {
    fn load(&mut self, id: &str) -> Result<Option<StoredCoValue>, StoreError> {
        self.inner.load(id)
    }
    fn write(&mut self, w: Write) -> Result<(), StoreError> {
        self.dirty = true;
        self.inner.write(w)
    }
    fn load_header(&mut self, id: &str) -> Result<Option<std::sync::Arc<str>>, StoreError> {
        self.inner.load_header(id)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        if std::mem::take(&mut self.dirty) && std::mem::take(&mut self.fail_next_commit) {
            return Err(StoreError::Backend("disk full (test)".into()));
        }
        self.inner.commit()
    }
    fn rollback(&mut self) {
        self.inner.rollback()
    }
}

#[test]
fn a_failed_commit_sends_no_ack_and_the_retry_is_accepted() {
    let mut e = Engine::new(Box::new(FailingStore {
        inner: MemoryStore::new(),
        fail_next_commit: true,
        dirty: false,
    }));
    e.connect(A);
    e.connect(B);
    let agent = Agent::new(22);
    let sid = agent.session("f");
    let (header, id) = allow_all_map("fail");
    let batch = Writer::new().batch(&agent, &["[1]".to_string()]);
    // B is subscribed and must not see content that was never stored.
    send(
        &mut e,
        B,
        &json!({"action":"load","id":id,"header":false,"sessions":{}}),
    );
    let msg = content(&id, Some(&header), &sid, &batch);
    e.receive_frame(A, &msg.to_string());
    let (out, closes) = drain_closes(&mut e);
    assert!(
        out.is_empty(),
        "no ack and no forward after a failed commit: {out:?}"
    );
    // The writer's connection is to be closed, so its client re-syncs; the
    // subscriber saw nothing that was not stored and stays.
    assert_eq!(closes, vec![(A, CloseWhy::StorageFailed)]);
    e.disconnect(A);
    // Nothing of it was kept: a load from a new connection says unknown.
    let c = PeerId(3);
    e.connect(c);
    let r = only(
        c,
        &send(
            &mut e,
            c,
            &json!({"action":"load","id":id,"header":false,"sessions":{}}),
        ),
    );
    assert_eq!(
        r,
        vec![json!({"action":"known","id":id,"header":false,"sessions":{}})]
    );
    // The client's retry after reconnecting is accepted, acked and forwarded.
    let a2 = PeerId(4);
    e.connect(a2);
    let out = send(&mut e, a2, &msg);
    assert_eq!(
        only(a2, &out),
        vec![json!({"action":"known","id":id,"header":true,"sessions":{&sid:1}})]
    );
    assert_eq!(only(c, &out)[0]["action"], "content");
}

fn fixture_copy(dir: &TempDir) -> std::path::PathBuf {
    let src = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures/cojson-0.20.19-sample.db");
    let dst = dir.0.join("fixture.db");
    std::fs::copy(&src, &dst).unwrap();
    let mut perms = std::fs::metadata(&dst).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&dst, perms).unwrap();
    dst
}

fn tamper(path: &std::path::Path) {
    // The map's trusting transaction idx 5 sets plain = "readable-in-db".
    let c = rusqlite::Connection::open(path).unwrap();
    let n = c
        .execute(
            "UPDATE transactions SET tx = replace(tx, 'readable-in-db', 'forged-in-db') WHERE ses = 5 AND idx = 5",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
}

fn served_count(path: &std::path::Path, id: &str, peer: PeerId) -> usize {
    let mut e = Engine::new(Box::new(
        SqliteStore::open(path, Synchronous::Full).unwrap(),
    ));
    e.connect(peer);
    load_all(&mut e, peer, id)
        .iter()
        .map(|m| {
            m["new"]
                .as_object()
                .unwrap()
                .values()
                .map(|s| s["newTransactions"].as_array().unwrap().len())
                .sum::<usize>()
        })
        .sum()
}

/// Stored sessions are verified when first loaded; maia-sync then vouches
/// for them, and the vouch still notices a transaction changed later.
#[test]
fn tampered_stored_transactions_are_never_served() {
    let map = "co_zC83sAnVGMNjVAJ1ewwPmRvTMxc";
    // Tampered before maia-sync ever saw the file.
    let dir = TempDir::new("tamper-before");
    let path = fixture_copy(&dir);
    tamper(&path);
    assert_eq!(
        served_count(&path, map, A),
        0,
        "the forged session is withheld"
    );
    // Verified (and vouched for) first, tampered afterwards.
    let dir = TempDir::new("tamper-after");
    let path = fixture_copy(&dir);
    assert_eq!(served_count(&path, map, A), 8);
    let vouched: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM maia_verified_sessions", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(vouched >= 1, "loading recorded the verification");
    assert_eq!(served_count(&path, map, B), 8, "vouched reload serves it");
    tamper(&path);
    assert_eq!(
        served_count(&path, map, B),
        0,
        "a changed transaction breaks the vouch"
    );
}
