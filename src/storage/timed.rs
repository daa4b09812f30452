//! A store wrapper that times its commits, for `/metrics`: acks wait for
//! the commit, so its latency is what clients feel.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Store, StoreError, StoredCoValue, Write};

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

    /// Non-cumulative counts per bucket of [`COMMIT_BUCKETS`], then `+Inf`.
    pub fn buckets(&self) -> &[u64] {
        &self.buckets
    }

    /// Sum of all observations, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum
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

    fn load_header(&mut self, id: &str) -> Result<Option<std::sync::Arc<str>>, StoreError> {
        self.inner.load_header(id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStore;

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
}
