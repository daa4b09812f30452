//! The dependency gate (docs/protocol.md §5.4 step 1): `content` whose
//! dependencies (owning group, author accounts, parent groups and members)
//! are not available waits here until they arrive, or until the sender says
//! it lacks them too. Indexed so that neither holding nor releasing scans
//! every held message, and capped per peer in count and bytes, because a
//! peer can send content whose dependencies never come.

use super::decode::Content;
use crate::sync::PeerId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// How many messages, and how many bytes of them, one peer may have
/// waiting for dependencies.
pub const MAX_HELD_PER_PEER: usize = 1_000;
pub const MAX_HELD_BYTES_PER_PEER: usize = 64 << 20;

pub struct Held {
    pub peer: PeerId,
    pub content: Content,
    waiting_for: BTreeSet<Arc<str>>,
}

/// Why a message could not be held.
#[derive(Debug, PartialEq, Eq)]
pub enum HoldError {
    TooMany,
    TooLarge,
}

#[derive(Default)]
pub struct Gate {
    next: u64,
    /// Keyed by arrival, so releases keep each peer's order.
    held: BTreeMap<u64, Held>,
    by_dep: HashMap<Arc<str>, Vec<u64>>,
    /// Held messages per (peer, CoValue) and per CoValue.
    by_target: HashMap<(PeerId, Arc<str>), usize>,
    by_covalue: HashMap<Arc<str>, usize>,
    /// (messages, bytes) held per peer.
    per_peer: HashMap<PeerId, (usize, usize)>,
}

impl Gate {
    /// What an earlier held message of this peer for the same CoValue waits
    /// for (a later one must queue behind it), if there is one.
    pub fn waiting_before(&self, peer: PeerId, id: &Arc<str>) -> Option<BTreeSet<Arc<str>>> {
        if !self.by_target.contains_key(&(peer, id.clone())) {
            return None;
        }
        self.held
            .values()
            .rev()
            .find(|h| h.peer == peer && h.content.id == *id)
            .map(|h| h.waiting_for.clone())
    }

    /// Whether some held message is content for `id` (its header is on the
    /// way: waiting for it could deadlock on a dependency cycle).
    pub fn holds_covalue(&self, id: &str) -> bool {
        self.by_covalue.contains_key(id)
    }

    pub fn hold(
        &mut self,
        peer: PeerId,
        content: Content,
        waiting_for: BTreeSet<Arc<str>>,
    ) -> Result<(), (HoldError, Content)> {
        let (count, bytes) = self.per_peer.get(&peer).copied().unwrap_or((0, 0));
        if count >= MAX_HELD_PER_PEER {
            return Err((HoldError::TooMany, content));
        }
        if bytes + content.wire_len > MAX_HELD_BYTES_PER_PEER {
            return Err((HoldError::TooLarge, content));
        }
        let key = self.next;
        self.next += 1;
        for dep in &waiting_for {
            self.by_dep.entry(dep.clone()).or_default().push(key);
        }
        *self
            .by_target
            .entry((peer, content.id.clone()))
            .or_default() += 1;
        *self.by_covalue.entry(content.id.clone()).or_default() += 1;
        self.per_peer
            .insert(peer, (count + 1, bytes + content.wire_len));
        self.held.insert(
            key,
            Held {
                peer,
                content,
                waiting_for,
            },
        );
        Ok(())
    }

    /// `dep` arrived (or its sender lacks it): takes out, in arrival order,
    /// every message that now waits for nothing more. Messages of one peer
    /// for one CoValue wait for the same set, so they come out together.
    pub fn release(&mut self, dep: &str) -> Vec<Held> {
        let Some(keys) = self.by_dep.remove(dep) else {
            return Vec::new();
        };
        let mut ready = Vec::new();
        for key in keys {
            if let Some(h) = self.held.get_mut(&key) {
                h.waiting_for.remove(dep);
                if h.waiting_for.is_empty() {
                    ready.push(key);
                }
            }
        }
        ready.sort_unstable();
        ready.into_iter().filter_map(|k| self.take(k)).collect()
    }

    /// Drops everything a gone peer had waiting.
    pub fn forget_peer(&mut self, peer: PeerId) {
        let keys: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.peer == peer)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.take(k);
        }
        self.per_peer.remove(&peer);
    }

    fn take(&mut self, key: u64) -> Option<Held> {
        let h = self.held.remove(&key)?;
        for dep in &h.waiting_for {
            if let Some(keys) = self.by_dep.get_mut(dep) {
                keys.retain(|k| *k != key);
                if keys.is_empty() {
                    self.by_dep.remove(dep);
                }
            }
        }
        decrement(&mut self.by_target, &(h.peer, h.content.id.clone()));
        decrement(&mut self.by_covalue, &h.content.id);
        if let Some((count, bytes)) = self.per_peer.get_mut(&h.peer) {
            *count = count.saturating_sub(1);
            *bytes = bytes.saturating_sub(h.content.wire_len);
        }
        Some(h)
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}
