//! The dependency gate (docs/protocol.md §5.4 step 1): `content` whose
//! dependencies (owning group, author accounts, parent groups and members)
//! are not available waits here until they arrive. Content whose sender
//! says it lacks a dependency too is dropped: the reference server never
//! applies it either (it waits forever), and a CoValue whose group or
//! author is unknown could not be verified by any client.
//!
//! Indexed so that neither holding, releasing nor asking about a peer's
//! held content scans every held message, and capped per peer in count and
//! bytes, because a peer can send content whose dependencies never come.

use super::PeerId;
use super::decode::Content;
use crate::verify::CoId;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How many messages, and how many bytes of them, one peer may have
/// waiting for dependencies.
pub const MAX_HELD_PER_PEER: usize = 1_000;
pub const MAX_HELD_BYTES_PER_PEER: usize = 16 << 20;

pub struct Held {
    pub peer: PeerId,
    pub content: Box<Content>,
    waiting_for: BTreeSet<CoId>,
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
    by_dep: HashMap<CoId, Vec<u64>>,
    /// Per (peer, CoValue): how many are held, and the key of the latest.
    by_target: HashMap<(PeerId, CoId), (usize, u64)>,
    /// Held messages per CoValue.
    by_covalue: HashMap<CoId, usize>,
    /// (messages, bytes) held per peer.
    per_peer: HashMap<PeerId, (usize, usize)>,
}

impl Gate {
    /// What an earlier held message of this peer for the same CoValue waits
    /// for (a later one must queue behind it), if there is one.
    pub fn waiting_before(&self, peer: PeerId, id: &CoId) -> Option<BTreeSet<CoId>> {
        let (_, latest) = self.by_target.get(&(peer, *id))?;
        self.held.get(latest).map(|h| h.waiting_for.clone())
    }

    /// Whether some held message is content for `id` (its header is on the
    /// way: waiting for it could deadlock on a dependency cycle).
    pub fn holds_covalue(&self, id: &CoId) -> bool {
        self.by_covalue.contains_key(id)
    }

    /// Bytes of content `peer` has waiting here.
    pub fn held_bytes(&self, peer: PeerId) -> usize {
        self.per_peer.get(&peer).map_or(0, |(_, b)| *b)
    }

    pub fn hold(
        &mut self,
        peer: PeerId,
        content: Box<Content>,
        waiting_for: BTreeSet<CoId>,
    ) -> Result<(), (HoldError, Box<Content>)> {
        let (count, bytes) = self.per_peer.get(&peer).copied().unwrap_or((0, 0));
        if count >= MAX_HELD_PER_PEER {
            return Err((HoldError::TooMany, content));
        }
        if bytes + content.cost > MAX_HELD_BYTES_PER_PEER {
            return Err((HoldError::TooLarge, content));
        }
        let key = self.next;
        self.next += 1;
        for dep in &waiting_for {
            self.by_dep.entry(*dep).or_default().push(key);
        }
        let target = self.by_target.entry((peer, content.id)).or_insert((0, key));
        *target = (target.0 + 1, key);
        *self.by_covalue.entry(content.id).or_default() += 1;
        self.per_peer
            .insert(peer, (count + 1, bytes + content.cost));
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

    /// `dep` arrived: takes out, in arrival order, every message that now
    /// waits for nothing more. Messages of one peer for one CoValue wait
    /// for the same set, so they come out together.
    pub fn release(&mut self, dep: &CoId) -> Vec<Held> {
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

    /// `peer` lacks `dep`: takes out every message of that peer that waits
    /// for it (it can never be applied).
    pub fn drop_lacking(&mut self, peer: PeerId, dep: &CoId) -> Vec<Held> {
        let Some(keys) = self.by_dep.get(dep) else {
            return Vec::new();
        };
        let mine: Vec<u64> = keys
            .iter()
            .copied()
            .filter(|k| self.held.get(k).is_some_and(|h| h.peer == peer))
            .collect();
        mine.into_iter().filter_map(|k| self.take(k)).collect()
    }

    /// Drops everything a gone peer had waiting.
    pub fn forget_peer(&mut self, peer: PeerId) {
        if !self.per_peer.contains_key(&peer) {
            return;
        }
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
        let target = (h.peer, h.content.id);
        if let Some((n, _)) = self.by_target.get_mut(&target) {
            *n -= 1;
            if *n == 0 {
                self.by_target.remove(&target);
            }
        }
        if let Some(n) = self.by_covalue.get_mut(&h.content.id) {
            *n -= 1;
            if *n == 0 {
                self.by_covalue.remove(&h.content.id);
            }
        }
        if let Some((count, bytes)) = self.per_peer.get_mut(&h.peer) {
            *count = count.saturating_sub(1);
            *bytes = bytes.saturating_sub(h.content.cost);
            if *count == 0 {
                self.per_peer.remove(&h.peer);
            }
        }
        Some(h)
    }
}
