//! What the engine holds for one connected peer (docs/protocol.md §5 intro),
//! and what that costs: everything a client can make the server hold is
//! counted here, so the reactor can pause or close a connection over its
//! share.

use super::decode::Incoming;
use super::known::KnownState;
use super::send::Job;
use crate::logging::RateLimit;
use crate::verify::CoId;
use std::collections::{HashMap, HashSet, VecDeque};

/// One item of a peer's output queue, in the order it was produced.
pub enum Out {
    /// A finished message.
    Text(String),
    /// "Bring the peer up to date with this CoValue" (dependencies first),
    /// run when the queue reaches it: the answer to a `load`, a forwarded
    /// update. The force flag lives in `Peer::queued`.
    Send(CoId),
}

#[derive(Default)]
pub struct PeerEntry {
    /// What we believe the peer holds of the sessions we hold: confirmed
    /// plus what we already sent. Sessions we do not hold are not kept
    /// (a peer could name millions).
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

    /// Approximate heap bytes of this entry (map slot included).
    fn cost(&self) -> usize {
        ENTRY_COST + self.state.sessions.len() * SESSION_COST
    }
}

/// Bytes per subscription entry and per session count in it.
const ENTRY_COST: usize = 112;
const SESSION_COST: usize = 48;

/// A `reconcile` batch waiting for the peer to answer our `load`s.
pub struct Reconcile {
    pub batch_id: String,
    pub pending: HashSet<CoId>,
    /// More pieces of the batch are still to be processed.
    pub open: bool,
}

#[derive(Default)]
pub struct Peer {
    /// An entry per CoValue the peer is subscribed to (private: changed
    /// only through `entry_mut`, which keeps `state_bytes` right).
    known: HashMap<CoId, PeerEntry>,
    /// Bytes of `known`, `errored`, `requested`, `lacks` and `reconciles`.
    state_bytes: usize,
    /// CoValues for which this peer sent something that failed verification:
    /// its further content for them is ignored until it reconnects.
    pub errored: HashSet<CoId>,
    pub reconciles: Vec<Reconcile>,
    /// Dependencies we asked this peer for with `load` (the dependency gate).
    pub requested: HashSet<CoId>,
    /// Dependencies this peer told us it does not have either.
    pub lacks: HashSet<CoId>,
    /// Messages received, waiting for a turn to process them.
    pub inbox: VecDeque<Incoming>,
    pub inbox_bytes: usize,
    /// Output produced during the current turn (acks, requests, sends):
    /// it waits for the turn's commit, then moves to `outbox`.
    pub pending: Vec<Out>,
    /// Released output, taken by the reactor as the socket drains.
    pub outbox: VecDeque<Out>,
    /// Bytes of the texts in `pending` and `outbox`.
    pub outbox_bytes: usize,
    /// The send being produced (dependencies walked, pieces left).
    pub current: Option<Job>,
    /// CoValues with a `Send` queued and not started, and whether it must
    /// answer even when there is nothing to send (a `load`): a repeated
    /// request joins the queued one.
    pub queued: HashMap<CoId, bool>,
    /// Invalid signatures received so far; too many and the peer is cut off.
    pub invalid_signatures: u32,
    /// The connection closed: state goes once the inbox is processed.
    pub leaving: bool,
    /// The engine asked for this connection to be closed: nothing more of
    /// it is processed.
    pub cut_off: bool,
    /// Listed in the engine's round-robin of peers with messages waiting.
    pub in_ready: bool,
    pub warnings: RateLimit,
}

/// Bytes charged per entry of the small per-peer sets.
const SET_ENTRY_COST: usize = 48;

impl Peer {
    pub fn entry(&self, id: &CoId) -> Option<&PeerEntry> {
        self.known.get(id)
    }

    pub fn is_subscribed(&self, id: &CoId) -> bool {
        self.known.contains_key(id)
    }

    /// Changes (creating if missing: subscribing) the peer's entry for
    /// `id`, keeping the byte count right whatever `f` does.
    pub fn entry_mut<R>(&mut self, id: CoId, f: impl FnOnce(&mut PeerEntry) -> R) -> R {
        let entry = self.known.entry(id).or_insert_with(|| {
            self.state_bytes += ENTRY_COST;
            PeerEntry::default()
        });
        let before = entry.cost();
        let r = f(entry);
        self.state_bytes = self.state_bytes + entry.cost() - before;
        r
    }

    /// Remembers that `id` failed verification for this peer.
    pub fn mark_errored(&mut self, id: CoId) {
        if self.errored.insert(id) {
            self.state_bytes += SET_ENTRY_COST;
        }
    }

    pub fn mark_requested(&mut self, id: CoId) -> bool {
        let new = self.requested.insert(id);
        if new {
            self.state_bytes += SET_ENTRY_COST;
        }
        new
    }

    /// The peer lacks a dependency we asked it for.
    pub fn mark_lacks(&mut self, id: CoId) -> bool {
        if !self.requested.remove(&id) {
            return false;
        }
        if self.lacks.insert(id) {
            // Moved from one set to the other: same cost.
        } else {
            self.state_bytes = self.state_bytes.saturating_sub(SET_ENTRY_COST);
        }
        true
    }

    /// Adds one piece of a `reconcile` batch (a big batch is processed in
    /// pieces). Returns true when the batch is complete right away (its
    /// last piece, nothing pending): the caller acks it.
    pub fn reconcile_piece(
        &mut self,
        batch_id: String,
        pending: HashSet<CoId>,
        last: bool,
    ) -> bool {
        self.state_bytes += pending.len() * SET_ENTRY_COST;
        let at = self
            .reconciles
            .iter()
            .position(|r| r.open && r.batch_id == batch_id);
        let at = match at {
            Some(at) => {
                self.reconciles[at].pending.extend(pending);
                at
            }
            None => {
                self.state_bytes += 64 + batch_id.len();
                self.reconciles.push(Reconcile {
                    batch_id,
                    pending,
                    open: true,
                });
                self.reconciles.len() - 1
            }
        };
        if !last {
            return false;
        }
        self.reconciles[at].open = false;
        if self.reconciles[at].pending.is_empty() {
            let r = self.reconciles.remove(at);
            self.state_bytes = self.state_bytes.saturating_sub(64 + r.batch_id.len());
            return true;
        }
        false
    }

    /// Marks `id` as answered for any reconcile batch; returns the batch IDs
    /// that are now complete.
    pub fn complete_reconcile(&mut self, id: &CoId) -> Vec<String> {
        let mut done = Vec::new();
        let mut freed = 0usize;
        self.reconciles.retain_mut(|r| {
            if r.pending.remove(id) {
                freed += SET_ENTRY_COST;
            }
            if r.pending.is_empty() && !r.open {
                freed += 64 + r.batch_id.len();
                done.push(std::mem::take(&mut r.batch_id));
                false
            } else {
                true
            }
        });
        self.state_bytes = self.state_bytes.saturating_sub(freed);
        done
    }

    pub fn push_inbox(&mut self, msg: Incoming) {
        self.inbox_bytes += msg.cost();
        self.inbox.push_back(msg);
    }

    pub fn pop_inbox(&mut self) -> Option<Incoming> {
        let msg = self.inbox.pop_front()?;
        self.inbox_bytes = self.inbox_bytes.saturating_sub(msg.cost());
        Some(msg)
    }

    /// Puts a message back at the front (a turn stopped before it).
    pub fn unpop_inbox(&mut self, msg: Incoming) {
        self.inbox_bytes += msg.cost();
        self.inbox.push_front(msg);
    }

    /// Queues a message that waits for this turn's commit.
    pub fn send(&mut self, text: String) {
        if !self.leaving {
            self.outbox_bytes += text.len();
            self.pending.push(Out::Text(text));
        }
    }

    /// Queues a send of `id` (joining one already queued).
    pub fn queue_send(&mut self, id: CoId, force: bool) {
        if self.leaving {
            return;
        }
        match self.queued.get_mut(&id) {
            Some(f) => *f |= force,
            None => {
                self.queued.insert(id, force);
                self.pending.push(Out::Send(id));
            }
        }
    }

    /// Moves this turn's output to the outbox (the commit succeeded);
    /// true if there was any.
    pub fn release(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        self.outbox.extend(self.pending.drain(..));
        true
    }

    /// Drops this turn's output (the commit failed).
    pub fn drop_pending(&mut self) {
        for out in self.pending.drain(..) {
            match out {
                Out::Text(t) => self.outbox_bytes = self.outbox_bytes.saturating_sub(t.len()),
                Out::Send(id) => {
                    self.queued.remove(&id);
                }
            }
        }
    }

    /// Nothing more of this peer is processed or sent (its connection is
    /// being closed).
    pub fn cut_off(&mut self) {
        self.drop_output();
        self.leaving = true;
        self.cut_off = true;
        while self.pop_inbox().is_some() {}
    }

    /// Drops all output (the peer is leaving).
    pub fn drop_output(&mut self) {
        self.drop_pending();
        self.outbox = VecDeque::new();
        self.outbox_bytes = 0;
        self.current = None;
        self.queued.clear();
    }

    /// Queues a message produced after the commit (by a job), behind
    /// nothing: it is taken right away by the running pull.
    pub fn pop_outbox(&mut self) -> Option<Out> {
        let out = self.outbox.pop_front()?;
        if let Out::Text(t) = &out {
            self.outbox_bytes = self.outbox_bytes.saturating_sub(t.len());
        }
        if self.outbox.is_empty() {
            // Idle peers must stay small: give the ring buffer back.
            self.outbox = VecDeque::new();
        }
        Some(out)
    }

    /// Bytes of the subscription and verification state (what stays while
    /// the peer is connected).
    pub fn state_bytes(&self) -> usize {
        self.state_bytes
    }

    /// Bytes of queued work: messages waiting to be processed or sent, and
    /// jobs (their walk state).
    pub fn queued_bytes(&self) -> usize {
        self.inbox_bytes
            + self.outbox_bytes
            + (self.pending.len() + self.outbox.len()) * 16
            + self.queued.len() * 48
            + self.current.as_ref().map_or(0, Job::bytes)
    }

    /// Whether anything released waits to be taken by the reactor.
    pub fn has_output(&self) -> bool {
        !self.outbox.is_empty() || self.current.is_some()
    }

    /// The CoValues this peer is subscribed to (when it leaves).
    pub fn into_subscriptions(self) -> impl Iterator<Item = CoId> {
        self.known.into_keys()
    }
}
