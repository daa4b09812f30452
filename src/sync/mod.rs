//! The sync engine: the rules of docs/protocol.md §5, with no sockets and
//! no clock. The reactor hands it frames (`receive_frame`) and connection
//! events (`connect`, `disconnect`); once per loop turn `end_turn` applies
//! what arrived, within a budget, and commits storage; replies wait for
//! that commit and are then taken by the reactor with `pull`, as each
//! socket drains, so a big answer is produced at the pace its client
//! reads it.
//!
//! Storage is synchronous and on the loop thread (the project's design:
//! one thread, no locks): reads go through the CoValue cache (`cache`),
//! writes are queued into the turn's SQLite transaction as messages are
//! applied, and one commit per turn makes them durable before any ack.

mod cache;
mod content;
mod covalue;
mod decode;
mod encode;
mod gate;
mod known;
mod peer;
mod prepass;
mod reconcile;
mod requests;
mod send;
mod stats;
mod stored_check;
mod turn;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_storage;

use crate::logging::RateLimit;
use crate::storage::{Store, StoreError};
use crate::verify::{CoId, SigCache};
use cache::CoValueCache;
use decode::Incoming;
use gate::Gate;
use peer::Peer;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

pub use cache::MAX_DEPENDENCY_DEPTH;
pub use covalue::{MAX_RECOMMENDED_TX_SIZE, MAX_STORED_HEADER_BYTES};
pub use stats::{EngineStats, RejectReason};
pub use stored_check::{StoredReport, verify_stored};

/// Identifies one WebSocket peer for the lifetime of its connection.
/// Never reused, so engine state keyed by it cannot leak into a later
/// connection that happens to get the same slab slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why the engine wants a connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseWhy {
    /// The turn's storage write or commit failed: nothing of it was
    /// acknowledged, and reconnecting is how a cojson client re-syncs.
    StorageFailed,
    /// The peer keeps sending invalid signatures.
    InvalidSignatures(u32),
}

/// What `end_turn` reports to the reactor.
#[derive(Debug, Default)]
pub struct TurnOutcome {
    /// Connections to close, and why.
    pub closes: Vec<(PeerId, CloseWhy)>,
    /// Messages are still waiting to be processed (a budget ran out): the
    /// loop should turn again without sleeping.
    pub more: bool,
}

/// Default for `Engine::set_memory_budget`.
pub const DEFAULT_MEMORY_BUDGET: usize = 128 << 20;

pub struct Engine {
    store: Box<dyn Store>,
    cache: CoValueCache,
    peers: HashMap<PeerId, Peer>,
    subscribers: HashMap<CoId, BTreeSet<PeerId>>,
    gate: Gate,
    memory_budget: usize,
    /// Counts loop turns; CoValues remember the turn they were last used in.
    turn: u64,
    /// Peers that sent content that was written in the current turn (reset
    /// if the turn's commit fails).
    turn_writers: BTreeSet<PeerId>,
    /// Peers with messages waiting, in round-robin order.
    ready: VecDeque<PeerId>,
    /// Held content released by an arrival: applied before anything newer.
    released: VecDeque<(PeerId, Box<decode::Content>)>,
    /// Connections the reactor must close.
    closes: Vec<(PeerId, CloseWhy)>,
    /// Peers that got output this turn (see `take_output_ready`).
    output_ready: Vec<PeerId>,
    /// The current turn's failed storage write, if any: the turn stops and
    /// is rolled back.
    write_error: Option<StoreError>,
    /// One line per failed turn at most, and not every turn of a long
    /// outage (a full disk).
    failure_log: RateLimit,
    sig_cache: SigCache,
    /// What jobs may still do this turn (storage reads behind them).
    visits_left: usize,
    render_cache: Option<send::RenderCache>,
    stats: EngineStats,
}

impl Engine {
    pub fn new(store: Box<dyn Store>) -> Self {
        Engine {
            store,
            cache: CoValueCache::default(),
            peers: HashMap::new(),
            subscribers: HashMap::new(),
            gate: Gate::default(),
            memory_budget: DEFAULT_MEMORY_BUDGET,
            turn: 0,
            turn_writers: BTreeSet::new(),
            ready: VecDeque::new(),
            released: VecDeque::new(),
            closes: Vec::new(),
            output_ready: Vec::new(),
            write_error: None,
            failure_log: RateLimit::new(1, std::time::Duration::from_secs(5)),
            sig_cache: SigCache::default(),
            visits_left: turn::JOB_VISITS_PER_TURN,
            render_cache: None,
            stats: EngineStats::default(),
        }
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Caps the memory used for cached CoValues (approximately, in bytes).
    pub fn set_memory_budget(&mut self, bytes: usize) {
        self.memory_budget = bytes;
    }

    /// Approximate bytes of CoValues held in memory.
    pub fn cached_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Number of CoValues held in memory.
    pub fn covalues_in_memory(&self) -> usize {
        self.cache.len()
    }

    /// Stops storage for a clean exit: commits and closes it. Call after
    /// the last `end_turn`; the engine must not be used afterwards.
    pub fn shutdown(&mut self) -> Result<(), StoreError> {
        self.store.close()
    }

    /// A WebSocket peer finished its upgrade.
    pub fn connect(&mut self, peer: PeerId) {
        self.peers.insert(peer, Peer::default());
    }

    /// The peer's connection is gone. What it sent before is still applied
    /// in order (and stored); its state goes at the end of the turn in
    /// which its last message was processed, so a close never splits a
    /// turn's work.
    pub fn disconnect(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.drop_output();
            p.leaving = true;
        }
        self.gate.forget_peer(peer);
    }

    /// One text frame from a peer (one or more JSON texts joined by `\n`),
    /// parsed now (bounded: the reactor reads at most its budget per turn)
    /// and queued for the turn. A line that is not JSON drops the whole
    /// frame, as cojson does.
    pub fn receive_frame(&mut self, peer: PeerId, frame: &str) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if frame.is_empty() || p.leaving {
            return;
        }
        let parsed = match decode::parse_frame(frame) {
            Ok(parsed) => parsed,
            Err(e) => {
                crate::peer_warn!(p.warnings, peer, "dropping frame: {e}");
                return;
            }
        };
        for e in parsed.skipped {
            crate::peer_warn!(p.warnings, peer, "ignoring message: {e}");
        }
        for msg in parsed.messages {
            p.push_inbox(msg);
        }
        if !p.in_ready && !p.inbox.is_empty() {
            p.in_ready = true;
            self.ready.push_back(peer);
        }
    }

    /// Bytes the peer makes the engine hold: (state that stays while it is
    /// connected, queued work that drains). The reactor adds its socket
    /// buffers and enforces the limits.
    pub fn peer_memory(&self, peer: PeerId) -> (usize, usize) {
        self.peers.get(&peer).map_or((0, 0), |p| {
            (
                p.state_bytes() + self.gate.held_bytes(peer),
                p.queued_bytes(),
            )
        })
    }

    /// Bytes of messages received from `peer` and not processed yet.
    pub fn inbox_bytes(&self, peer: PeerId) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.inbox_bytes)
    }

    /// Whether anything waits to be taken for `peer`.
    pub fn has_output(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(Peer::has_output)
    }

    /// Queues `text` for `peer`, released after this turn's commit.
    fn send(&mut self, peer: PeerId, text: String) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.send(text);
        }
    }

    /// Subscribes `peer` to `id`: it gets every later change.
    fn subscribe(&mut self, peer: PeerId, id: CoId) {
        self.subscribers.entry(id).or_default().insert(peer);
    }

    /// Removes a peer that left once nothing of it is left to process.
    fn remove_peer(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.remove(&peer) {
            for id in p.into_subscriptions() {
                if let Some(subs) = self.subscribers.get_mut(&id) {
                    subs.remove(&peer);
                    if subs.is_empty() {
                        self.subscribers.remove(&id);
                    }
                }
            }
        }
        self.gate.forget_peer(peer);
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
            Incoming::Reconcile {
                batch_id,
                values,
                last,
            } => self.handle_reconcile(peer, batch_id, values, last),
            Incoming::Done | Incoming::ReconcileAck => {}
        }
    }
}
