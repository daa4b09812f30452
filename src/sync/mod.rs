//! The sync engine: sans-I/O. The reactor feeds it frames and peer events;
//! the engine verifies, updates state, hands accepted writes to storage and
//! queues replies in an outbox that is released only after the turn's
//! commit (`end_turn`). Rules: docs/protocol.md §5.

mod content;
mod covalue;
mod decode;
mod encode;
mod gate;
mod known;
mod peer;
mod prepass;
mod reconcile;
mod stats;
mod stored_check;

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_storage;

use crate::storage::{Store, StoreError};
use crate::verify::{Author, SigCache};
use crate::verify::{Signer, parse_session_id, session_signer};
use covalue::{CoValue, Loaded, PieceCache};
use decode::Incoming;
use ed25519_dalek::VerifyingKey;
use gate::Gate;
use known::KnownState;
use log::{debug, warn};
use peer::{Peer, PeerEntry};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

pub use covalue::MAX_RECOMMENDED_TX_SIZE;

/// Identifies one WebSocket peer for the lifetime of its connection.
/// Never reused, so engine state keyed by it cannot leak into a later
/// connection that happens to get the same slab slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// One sync message (a single JSON text, no newline) for one peer.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub peer: PeerId,
    pub text: String,
}
pub use stats::{EngineStats, RejectReason};
pub use stored_check::{StoredReport, verify_stored};

pub struct Engine {
    store: Box<dyn Store>,
    covalues: HashMap<Arc<str>, CoValue>,
    peers: HashMap<PeerId, Peer>,
    subscribers: HashMap<Arc<str>, BTreeSet<PeerId>>,
    gate: Gate,
    outbox: Vec<Outgoing>,
    /// Approximate bytes held by `covalues`, kept under `memory_budget` by
    /// evicting least recently used CoValues after each commit (they are in
    /// storage and are read back on demand).
    cached_bytes: usize,
    memory_budget: usize,
    /// Counts loop turns; CoValues remember the turn they were last used in.
    turn: u64,
    /// Source of `CoValue::version` numbers.
    versions: u64,
    /// Peers that sent content that was written in the current turn.
    turn_writers: BTreeSet<PeerId>,
    /// Peers whose connection must be closed (see `take_resets`).
    resets: Vec<PeerId>,
    /// Messages received this turn, processed in `end_turn` (after a batch
    /// signature check over all of them).
    inbox: Vec<(PeerId, Incoming)>,
    sig_cache: SigCache,
    stats: EngineStats,
}

/// Default for `Engine::set_memory_budget`.
pub const DEFAULT_MEMORY_BUDGET: usize = 128 << 20;

impl Engine {
    pub fn new(store: Box<dyn Store>) -> Self {
        Engine {
            store,
            covalues: HashMap::new(),
            peers: HashMap::new(),
            subscribers: HashMap::new(),
            gate: Gate::default(),
            outbox: Vec::new(),
            cached_bytes: 0,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            turn: 0,
            versions: 0,
            turn_writers: BTreeSet::new(),
            resets: Vec::new(),
            inbox: Vec::new(),
            sig_cache: SigCache::default(),
            stats: EngineStats::default(),
        }
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Stops storage for a clean exit: commits and closes it. Call after
    /// the last `end_turn`; the engine must not be used afterwards.
    pub fn shutdown(&mut self) -> Result<(), StoreError> {
        self.store.close()
    }

    /// Peers whose connections the reactor must close: after a failed
    /// commit their view of the server is wrong, and reconnecting is how a
    /// cojson client re-syncs (it re-sends what the server lacks).
    pub fn take_resets(&mut self) -> Vec<PeerId> {
        std::mem::take(&mut self.resets)
    }

    /// Caps the memory used for cached CoValues (approximately, in bytes).
    pub fn set_memory_budget(&mut self, bytes: usize) {
        self.memory_budget = bytes;
    }

    /// Approximate bytes of CoValues held in memory.
    pub fn cached_bytes(&self) -> usize {
        self.cached_bytes
    }

    pub(super) fn next_version(&mut self) -> u64 {
        self.versions += 1;
        self.versions
    }

    fn insert_covalue(&mut self, mut cv: CoValue) {
        cv.version = self.next_version();
        self.cached_bytes += cv.bytes();
        self.covalues.insert(cv.id.clone(), cv);
    }

    /// Drops least recently used CoValues until the cache is back under
    /// 90 % of the budget. Unsubscribed ones go first. Safe only between
    /// turns: everything evicted is committed and is re-read on demand.
    fn evict(&mut self) {
        if self.cached_bytes <= self.memory_budget {
            return;
        }
        let target = self.memory_budget / 10 * 9;
        let mut order: Vec<(bool, u64, Arc<str>)> = self
            .covalues
            .values()
            .map(|cv| {
                (
                    self.subscribers.contains_key(&cv.id),
                    cv.last_used,
                    cv.id.clone(),
                )
            })
            .collect();
        order.sort_unstable();
        let before = self.covalues.len();
        for (_, _, id) in order {
            if self.cached_bytes <= target {
                break;
            }
            if let Some(cv) = self.covalues.remove(&id) {
                self.cached_bytes = self.cached_bytes.saturating_sub(cv.bytes());
            }
        }
        debug!(
            "evicted {} CoValues; {} KiB cached",
            before - self.covalues.len(),
            self.cached_bytes >> 10
        );
    }

    /// A WebSocket peer finished its upgrade.
    pub fn connect(&mut self, peer: PeerId) {
        self.peers.insert(peer, Peer::default());
    }

    /// The peer's connection is gone; all its state is dropped.
    pub fn disconnect(&mut self, peer: PeerId) {
        // What the peer sent before leaving is still applied (and stored).
        self.process_inbox();
        if let Some(p) = self.peers.remove(&peer) {
            for id in p.known.keys() {
                if let Some(subs) = self.subscribers.get_mut(id) {
                    subs.remove(&peer);
                    if subs.is_empty() {
                        self.subscribers.remove(id);
                    }
                }
            }
        }
        self.gate.forget_peer(peer);
    }

    /// One text frame from a peer (one or more JSON texts joined by `\n`).
    /// A line that is not JSON drops the whole frame, as cojson does.
    pub fn receive_frame(&mut self, peer: PeerId, frame: &str) {
        if frame.is_empty() || !self.peers.contains_key(&peer) {
            return;
        }
        let mut values = Vec::new();
        for line in frame.split('\n') {
            match serde_json::from_str::<Value>(line) {
                Ok(v) => values.push((v, line.len())),
                Err(e) => {
                    warn!("peer {}: dropping frame with invalid JSON: {e}", peer.0);
                    return;
                }
            }
        }
        for (v, len) in values {
            match decode::parse(v, len) {
                Ok(msg) => self.inbox.push((peer, msg)),
                Err(e) => warn!("peer {}: ignoring message: {e}", peer.0),
            }
        }
    }

    /// Applies every message received so far, in arrival order.
    fn process_inbox(&mut self) {
        if self.inbox.is_empty() {
            return;
        }
        let mut inbox = std::mem::take(&mut self.inbox);
        self.prepass(&mut inbox);
        for (peer, msg) in inbox {
            self.handle(peer, msg);
        }
        self.sig_cache.clear();
    }

    /// End of a loop turn: commit the turn's writes, then hand out every
    /// message that waited for that commit, in order.
    pub fn end_turn(&mut self, out: &mut Vec<Outgoing>) {
        self.process_inbox();
        match self.store.commit() {
            Ok(()) => {
                out.append(&mut self.outbox);
                self.turn_writers.clear();
                self.turn += 1;
                self.evict();
            }
            Err(e) => {
                self.store.rollback();
                // Everyone whose state moved this turn (writers, and peers
                // whose replies or forwards are now dropped) is reset.
                let mut affected: BTreeSet<PeerId> = std::mem::take(&mut self.turn_writers);
                affected.extend(self.outbox.drain(..).map(|o| o.peer));
                log::error!(
                    "{e}; nothing of this turn was acknowledged or forwarded; closing {} affected connection(s) so their clients re-sync",
                    affected.len()
                );
                for p in &affected {
                    self.disconnect(*p);
                }
                self.resets.extend(affected);
                // Memory may be ahead of disk: re-read the committed truth.
                self.covalues.clear();
                self.cached_bytes = 0;
            }
        }
    }

    /// Number of CoValues held in memory.
    pub fn covalues_in_memory(&self) -> usize {
        self.covalues.len()
    }

    fn handle(&mut self, peer: PeerId, msg: Incoming) {
        match msg {
            Incoming::Load { id, state } => self.handle_load(peer, id, state),
            Incoming::Known {
                id,
                state,
                correction,
            } => self.handle_known(peer, id, state, correction),
            Incoming::Content(c) => self.handle_content(peer, c),
            Incoming::Reconcile { batch_id, values } => {
                self.handle_reconcile(peer, batch_id, values)
            }
            Incoming::Done | Incoming::ReconcileAck | Incoming::NotAMessage => {}
        }
    }

    fn send(&mut self, peer: PeerId, text: String) {
        self.outbox.push(Outgoing { peer, text });
    }

    fn peer_mut(&mut self, peer: PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(&peer)
    }

    /// The peer's entry for `id`, created (and so subscribed) if missing.
    fn entry(&mut self, peer: PeerId, id: &Arc<str>) -> Option<&mut PeerEntry> {
        let p = self.peers.get_mut(&peer)?;
        if !p.known.contains_key(id) {
            self.subscribers.entry(id.clone()).or_default().insert(peer);
        }
        Some(p.known.entry(id.clone()).or_default())
    }

    /// Whether the CoValue is available, reading it from storage if needed.
    fn available(&mut self, id: &Arc<str>) -> bool {
        self.load_from_store(id, 0)
    }

    fn load_from_store(&mut self, id: &Arc<str>, depth: u8) -> bool {
        if let Some(cv) = self.covalues.get_mut(id) {
            cv.last_used = self.turn;
            return true;
        }
        let stored = match self.store.load(id) {
            Ok(Some(s)) => s,
            Ok(None) => return false,
            Err(e) => {
                log::error!("cannot read {id} from storage: {e}");
                return false;
            }
        };
        // Account authors must be in memory first to resolve their signers.
        let mut signers: HashMap<String, VerifyingKey> = HashMap::new();
        for s in &stored.sessions {
            if let (Author::Account(acc), _) = parse_session_id(&s.session_id) {
                let acc: Arc<str> = Arc::from(acc);
                if depth < 8
                    && *acc != **id
                    && self.load_from_store(&acc, depth + 1)
                    && let Some(k) = self.covalues[&acc].header.account_signer
                {
                    signers.insert(acc.to_string(), k);
                }
            }
        }
        match CoValue::from_stored(stored, &mut |acc| signers.get(acc).copied()) {
            Ok(Loaded {
                covalue: mut cv,
                newly_verified,
                failed,
            }) => {
                for (session, e) in failed {
                    warn!(
                        "stored session {session} of {id} fails verification and will not be served: {e}"
                    );
                }
                for w in newly_verified {
                    if let Err(e) = self.store.write(w) {
                        warn!("cannot record the verification of {id}: {e}");
                    }
                }
                cv.last_used = self.turn;
                self.insert_covalue(cv);
                true
            }
            Err(e) => {
                warn!("stored CoValue {id} is invalid and will not be served: {e}");
                false
            }
        }
    }

    /// The signer of a session; an author account is read from storage
    /// if needed.
    fn signer_of(&mut self, session_id: &str) -> Signer {
        session_signer(session_id, &mut |acc| {
            let acc: Arc<str> = Arc::from(acc);
            self.available(&acc)
                .then(|| self.covalues[&acc].header.account_signer)
        })
    }

    // ----- load / known -------------------------------------------------

    fn handle_load(&mut self, peer: PeerId, id: Arc<str>, state: KnownState) {
        let Some(entry) = self.entry(peer, &id) else {
            return;
        };
        // The load is the source of truth about the peer (it may have lost data).
        entry.state = state;
        entry.synced = 0;
        // cojson stays silent for a CoValue errored for this peer, which
        // blocks the client's load for 60 s; we answer anyway (§6).
        self.send_new_content(peer, &id, true, &mut Vec::new());
    }

    fn handle_known(&mut self, peer: PeerId, id: Arc<str>, state: KnownState, correction: bool) {
        let lacks_it = !state.header;
        let Some(entry) = self.entry(peer, &id) else {
            return;
        };
        if correction {
            entry.state = state;
        } else {
            entry.state.merge(&state);
        }
        entry.synced = 0;
        if self.available(&id) {
            self.send_new_content(peer, &id, false, &mut Vec::new());
        } else if lacks_it {
            // A dependency we asked this peer for, which it lacks too:
            // stop holding its content back for it.
            if let Some(p) = self.peer_mut(peer)
                && p.requested.remove(&id)
            {
                p.lacks.insert(id.clone());
                self.release_held(&id);
            }
        }
        self.complete_reconcile(peer, &id);
    }

    /// Sends `peer` what it is missing of `id`, dependencies first (§5.1).
    /// `force`: reply with a `known` even when there is nothing to send.
    fn send_new_content(
        &mut self,
        peer: PeerId,
        id: &Arc<str>,
        force: bool,
        visited: &mut Vec<Arc<str>>,
    ) {
        self.send_new_content_with(peer, id, force, visited, &mut None);
    }

    /// `send_new_content` with a cache of the pieces built for `id`, shared
    /// by the calls that forward one write to every subscriber.
    pub(super) fn send_new_content_with(
        &mut self,
        peer: PeerId,
        id: &Arc<str>,
        force: bool,
        visited: &mut Vec<Arc<str>>,
        cache: &mut Option<PieceCache>,
    ) {
        if visited.contains(id) {
            return;
        }
        visited.push(id.clone());
        if !self.available(id) {
            if force {
                let empty = KnownState::default();
                self.send(peer, encode::known(id, &empty, false));
                if let Some(e) = self.entry(peer, id) {
                    e.told = true;
                }
            }
            return;
        }
        // Up to date with this version already: nothing to send, and its
        // dependencies were handled when it was (later changes to them
        // reach the peer through its own subscription to them).
        let version = self.covalues[id].version;
        if !force
            && self
                .peers
                .get(&peer)
                .and_then(|p| p.known.get(id))
                .is_some_and(|e| e.is_synced(version))
        {
            return;
        }
        let deps = self.covalues[id].dependencies();
        for dep in deps {
            let errored = self
                .peers
                .get(&peer)
                .is_none_or(|p| p.errored.contains(&dep));
            if !errored && self.available(&dep) {
                self.send_new_content(peer, &dep, false, visited);
            }
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.known.contains_key(id) {
            self.subscribers.entry(id.clone()).or_default().insert(peer);
        }
        let entry = p.known.entry(id.clone()).or_default();
        self.covalues[id].bring_up_to_date(peer, entry, force, cache, &mut self.outbox);
    }
}
