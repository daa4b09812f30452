//! What the engine knows about one connected peer (docs/protocol.md §5 intro).

use super::known::KnownState;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Default)]
pub struct PeerEntry {
    /// What we believe the peer holds: confirmed plus what we already sent.
    pub state: KnownState,
    /// Whether we ever sent this peer a known/load/content for the id.
    pub told: bool,
    /// The CoValue version this peer was last brought up to date with
    /// (0: unknown; reset whenever `state` is replaced from the peer).
    pub synced: u64,
}

impl PeerEntry {
    /// Already up to date with this version of the CoValue.
    pub fn is_synced(&self, version: u64) -> bool {
        self.told && self.synced == version
    }
}

/// A `reconcile` batch waiting for the peer to answer our `load`s.
pub struct Reconcile {
    pub batch_id: String,
    pub pending: HashSet<Arc<str>>,
}

#[derive(Default)]
pub struct Peer {
    /// An entry per CoValue the peer is subscribed to.
    pub known: HashMap<Arc<str>, PeerEntry>,
    /// CoValues for which this peer sent something that failed verification:
    /// its further content for them is ignored until it reconnects.
    pub errored: HashSet<Arc<str>>,
    pub reconciles: Vec<Reconcile>,
    /// Dependencies we asked this peer for with `load` (the dependency gate).
    pub requested: HashSet<Arc<str>>,
    /// Dependencies this peer told us it does not have either.
    pub lacks: HashSet<Arc<str>>,
}

impl Peer {
    /// Marks `id` as answered for any reconcile batch; returns the batch IDs
    /// that are now complete.
    pub fn complete_reconcile(&mut self, id: &str) -> Vec<String> {
        let mut done = Vec::new();
        self.reconciles.retain_mut(|r| {
            r.pending.remove(id);
            if r.pending.is_empty() {
                done.push(std::mem::take(&mut r.batch_id));
                false
            } else {
                true
            }
        });
        done
    }
}
