//! `GET /metrics`: Prometheus text exposition format 0.0.4.
//!
//! Counters are plain integers kept where the events happen: connections,
//! messages and bytes by the reactor (`NetStats`), accepted and rejected
//! transactions by the engine (`EngineStats`), commit latency by a thin
//! wrapper around the store (`TimedStore`). Everything runs on the one
//! loop thread, so nothing needs atomics; a scrape renders a snapshot
//! between two turns.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::net::stats::{ACTIONS, Live, NetStats};
use crate::storage::timed::{COMMIT_BUCKETS, SharedCommitStats};
use crate::sync::{Engine, RejectReason};

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

/// What the exposition needs besides the reactor's and the engine's
/// counters: commit timings and the database file.
#[derive(Debug, Default)]
pub struct Metrics {
    pub commits: SharedCommitStats,
    /// `None` with `--in-memory`.
    pub db_path: Option<PathBuf>,
}

impl Metrics {
    pub fn new(commits: SharedCommitStats, db_path: Option<PathBuf>) -> Metrics {
        Metrics { commits, db_path }
    }

    /// The whole exposition, one family after the other.
    pub fn render(&self, net: &NetStats, live: Live, engine: &Engine) -> String {
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
            net.connections_total,
        );
        for (name, counts, help) in [
            (
                "maia_sync_messages_received_total",
                &net.messages_in,
                "Sync messages received, by action.",
            ),
            (
                "maia_sync_messages_sent_total",
                &net.messages_out,
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
            net.bytes_in,
        );
        o.one(
            "maia_sync_sent_bytes_total",
            "counter",
            "Bytes written to client sockets.",
            net.bytes_out,
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
        for (i, n) in c.latency.buckets().iter().enumerate() {
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
        o.sample(&format!("{name}_sum"), "", c.latency.sum());
        o.sample(&format!("{name}_count"), "", c.latency.count());
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
    fn exposition_shape() {
        let engine = Engine::new(Box::new(MemoryStore::new()));
        let m = Metrics::new(SharedCommitStats::default(), None);
        let mut net = NetStats {
            connections_total: 3,
            ..NetStats::default()
        };
        net.messages_in.count("{\"action\":\"load\"}");
        let text = m.render(
            &net,
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
