//! `GET /metrics`: Prometheus text exposition format 0.0.4.
//!
//! Counters are plain integers kept where the events happen: connections,
//! messages and bytes by the reactor (this module's `Metrics`), accepted and
//! rejected transactions by the engine (`EngineStats`), commit latency by a
//! thin wrapper around the store (`TimedStore`). Everything runs on the one
//! loop thread, so nothing needs atomics; a scrape renders a snapshot
//! between two turns.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::storage::{Store, StoreError, StoredCoValue, Write};
use crate::sync::{Engine, RejectReason};

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Sync message kinds, as metric labels. Unknown actions are lumped into
/// `other` so a client cannot create labels at will.
pub const ACTIONS: [&str; 7] = [
    "load",
    "known",
    "content",
    "done",
    "reconcile",
    "reconcile-ack",
    "other",
];

/// The label index of one sync message (a single JSON text). cojson and the
/// engine both write `action` first, so the prefix check almost always
/// decides; otherwise the field is looked up without building a tree.
pub fn action_index(msg: &str) -> usize {
    const PREFIX: &str = "{\"action\":\"";
    let other = ACTIONS.len() - 1;
    let index = |name: &str| ACTIONS.iter().position(|a| *a == name);
    // Counted for every message in and out: the common case borrows.
    let found = match msg.strip_prefix(PREFIX) {
        Some(rest) => rest.split('"').next().and_then(index),
        None => {
            #[derive(Deserialize)]
            struct Probe {
                action: Option<String>,
            }
            serde_json::from_str::<Probe>(msg)
                .ok()
                .and_then(|p| p.action)
                .and_then(|a| index(&a))
        }
    };
    found.unwrap_or(other)
}

/// Counts per entry of [`ACTIONS`].
#[derive(Debug, Default, Clone)]
pub struct ActionCounts([u64; ACTIONS.len()]);

impl ActionCounts {
    pub fn count(&mut self, msg: &str) {
        if let Some(c) = self.0.get_mut(action_index(msg)) {
            *c += 1;
        }
    }

    /// Counts every message of a frame (`\n`-separated, as cojson batches).
    pub fn count_frame(&mut self, frame: &str) {
        for line in frame.split('\n').filter(|l| !l.is_empty()) {
            self.count(line);
        }
    }

    pub fn get(&self, action: &str) -> u64 {
        ACTIONS
            .iter()
            .position(|a| *a == action)
            .and_then(|i| self.0.get(i).copied())
            .unwrap_or(0)
    }
}

/// Upper bounds (seconds) of the commit latency buckets: an fsync is
/// typically 0.1–10 ms; anything near a second means trouble.
pub const COMMIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default, Clone)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [u64; COMMIT_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = COMMIT_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(COMMIT_BUCKETS.len());
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.sum += s;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Commit statistics shared by `TimedStore` (which records them) and the
/// reactor (which renders them); one thread, so `Rc<RefCell>`.
#[derive(Debug, Default, Clone)]
pub struct CommitStats {
    pub latency: Histogram,
    pub failures: u64,
}

pub type SharedCommitStats = Rc<RefCell<CommitStats>>;

/// A store that times its commits. Only commits with writes behind them
/// are measured: most turns commit nothing, and counting those would bury
/// the real latency under zeros.
pub struct TimedStore {
    inner: Box<dyn Store>,
    stats: SharedCommitStats,
    dirty: bool,
}

impl TimedStore {
    pub fn new(inner: Box<dyn Store>, stats: SharedCommitStats) -> TimedStore {
        TimedStore {
            inner,
            stats,
            dirty: false,
        }
    }
}

impl Store for TimedStore {
    fn load(&mut self, id: &str) -> Result<Option<StoredCoValue>, StoreError> {
        self.inner.load(id)
    }

    fn write(&mut self, w: Write) -> Result<(), StoreError> {
        self.dirty = true;
        self.inner.write(w)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        if !self.dirty {
            return self.inner.commit();
        }
        self.dirty = false;
        let start = Instant::now();
        let result = self.inner.commit();
        let mut stats = self.stats.borrow_mut();
        match &result {
            Ok(()) => stats.latency.observe(start.elapsed()),
            Err(_) => stats.failures += 1,
        }
        result
    }

    fn rollback(&mut self) {
        self.dirty = false;
        self.inner.rollback();
    }

    fn close(&mut self) -> Result<(), StoreError> {
        self.inner.close()
    }
}

/// The reactor's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_total: u64,
    pub messages_in: ActionCounts,
    pub messages_out: ActionCounts,
    /// Socket bytes, added as connections report progress.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub commits: SharedCommitStats,
    /// `None` with `--in-memory`.
    pub db_path: Option<PathBuf>,
}

/// Gauges that only the reactor's live state knows.
#[derive(Debug, Default, Clone, Copy)]
pub struct Live {
    pub connections_open: usize,
    pub websockets_open: usize,
}

/// Size of the database file plus its write-ahead log: the disk it takes.
pub fn database_size(path: &Path) -> u64 {
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    len(path) + len(Path::new(&wal))
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }
}

impl Metrics {
    pub fn new(commits: SharedCommitStats, db_path: Option<PathBuf>) -> Metrics {
        Metrics {
            commits,
            db_path,
            ..Metrics::default()
        }
    }

    /// The whole exposition, one family after the other.
    pub fn render(&self, live: Live, engine: &Engine) -> String {
        let mut o = Out(String::with_capacity(4096));
        o.family("maia_sync_build_info", "gauge", "Build information.");
        o.sample(
            "maia_sync_build_info",
            &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
            1,
        );
        o.one(
            "maia_sync_connections_open",
            "gauge",
            "TCP connections open now (HTTP and WebSocket).",
            live.connections_open,
        );
        o.one(
            "maia_sync_websockets_open",
            "gauge",
            "WebSocket sync sessions open now.",
            live.websockets_open,
        );
        o.one(
            "maia_sync_connections_total",
            "counter",
            "TCP connections accepted since start.",
            self.connections_total,
        );
        for (name, counts, help) in [
            (
                "maia_sync_messages_received_total",
                &self.messages_in,
                "Sync messages received, by action.",
            ),
            (
                "maia_sync_messages_sent_total",
                &self.messages_out,
                "Sync messages sent, by action (pings excluded).",
            ),
        ] {
            o.family(name, "counter", help);
            for a in ACTIONS {
                o.sample(name, &format!("action=\"{a}\""), counts.get(a));
            }
        }
        o.one(
            "maia_sync_received_bytes_total",
            "counter",
            "Bytes read from client sockets.",
            self.bytes_in,
        );
        o.one(
            "maia_sync_sent_bytes_total",
            "counter",
            "Bytes written to client sockets.",
            self.bytes_out,
        );
        let stats = engine.stats();
        o.one(
            "maia_sync_transactions_accepted_total",
            "counter",
            "Transactions verified and stored.",
            stats.transactions_accepted,
        );
        o.family(
            "maia_sync_transactions_rejected_total",
            "counter",
            "Transactions not accepted, by reason.",
        );
        for r in RejectReason::ALL {
            o.sample(
                "maia_sync_transactions_rejected_total",
                &format!("reason=\"{}\"", r.label()),
                stats.rejected(r),
            );
        }
        self.render_commits(&mut o);
        o.one(
            "maia_sync_covalues_in_memory",
            "gauge",
            "CoValues cached in memory.",
            engine.covalues_in_memory(),
        );
        o.one(
            "maia_sync_cached_bytes",
            "gauge",
            "Approximate bytes of CoValues cached in memory (kept under --memory-budget).",
            engine.cached_bytes(),
        );
        if let Some(p) = &self.db_path {
            o.one(
                "maia_sync_database_size_bytes",
                "gauge",
                "Size of the SQLite database file plus its write-ahead log.",
                database_size(p),
            );
        }
        o.0
    }

    fn render_commits(&self, o: &mut Out) {
        let c = self.commits.borrow();
        let name = "maia_sync_storage_commit_duration_seconds";
        o.family(
            name,
            "histogram",
            "Time to commit one loop turn's writes to storage (acks wait for it).",
        );
        let mut cumulative = 0u64;
        for (i, n) in c.latency.buckets.iter().enumerate() {
            cumulative += n;
            let le = COMMIT_BUCKETS
                .get(i)
                .map_or("+Inf".to_string(), |b| b.to_string());
            o.sample(
                &format!("{name}_bucket"),
                &format!("le=\"{le}\""),
                cumulative,
            );
        }
        o.sample(&format!("{name}_sum"), "", c.latency.sum);
        o.sample(&format!("{name}_count"), "", c.latency.count);
        o.one(
            "maia_sync_storage_commit_failures_total",
            "counter",
            "Storage commits that failed (their turn was not acknowledged).",
            c.failures,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStore;

    #[test]
    fn actions() {
        assert_eq!(
            ACTIONS[action_index(r#"{"action":"load","id":"co_z1"}"#)],
            "load"
        );
        assert_eq!(
            ACTIONS[action_index(r#"{"id":"co_z1","action":"reconcile-ack"}"#)],
            "reconcile-ack"
        );
        assert_eq!(
            ACTIONS[action_index(r#"{ "action" : "content" }"#)],
            "content"
        );
        assert_eq!(ACTIONS[action_index(r#"{"action":"evil\u0000"}"#)], "other");
        assert_eq!(ACTIONS[action_index("not json")], "other");
        let mut c = ActionCounts::default();
        c.count_frame("{\"action\":\"load\"}\n{\"action\":\"load\"}\n{\"action\":\"done\"}");
        assert_eq!((c.get("load"), c.get("done"), c.get("known")), (2, 1, 0));
    }

    #[test]
    fn histogram_buckets() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(300)); // first bucket
        h.observe(Duration::from_millis(3)); // 0.005
        h.observe(Duration::from_secs(10)); // +Inf
        assert_eq!(h.count(), 3);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[3], 1);
        assert_eq!(h.buckets[COMMIT_BUCKETS.len()], 1);
        assert!((h.sum - 10.0033).abs() < 1e-9);
    }

    #[test]
    fn only_commits_with_writes_are_timed() {
        let stats = SharedCommitStats::default();
        let mut s = TimedStore::new(Box::new(MemoryStore::new()), stats.clone());
        s.commit().unwrap();
        assert_eq!(stats.borrow().latency.count(), 0);
        s.write(Write::Header {
            co_id: "co_zX".into(),
            header: "{}".into(),
        })
        .unwrap();
        s.commit().unwrap();
        s.commit().unwrap();
        assert_eq!(stats.borrow().latency.count(), 1);
    }

    #[test]
    fn exposition_shape() {
        let engine = Engine::new(Box::new(MemoryStore::new()));
        let mut m = Metrics::new(SharedCommitStats::default(), None);
        m.connections_total = 3;
        m.messages_in.count("{\"action\":\"load\"}");
        let text = m.render(
            Live {
                connections_open: 2,
                websockets_open: 1,
            },
            &engine,
        );
        assert!(text.contains("maia_sync_connections_total 3\n"), "{text}");
        assert!(text.contains("maia_sync_messages_received_total{action=\"load\"} 1\n"));
        assert!(text.contains("maia_sync_storage_commit_duration_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("maia_sync_transactions_rejected_total{reason=\"gap\"} 0\n"));
        assert!(!text.contains("database_size"), "no file with --in-memory");
        // Every sample belongs to the family announced right before it.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_string();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&family), "{line} outside {family}");
            }
        }
        assert!(text.ends_with('\n'));
    }
}
