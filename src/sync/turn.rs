//! One loop turn of the engine: take the turn's messages round-robin
//! across peers within a budget, check their signatures in per-peer
//! batches, apply them in order, then commit once. A turn whose storage
//! write or commit fails acknowledges nothing: it is rolled back and the
//! peers whose writes it held are closed so their clients resend.

use super::decode::Incoming;
use super::{Engine, PeerId, TurnOutcome};
use std::collections::BTreeSet;

/// What one turn may take on, so that no client (and no crowd of them)
/// stalls the loop: signature checks, transaction bytes hashed and
/// written, messages, and bytes read back from storage. A single message
/// larger than the budget is still taken, alone.
pub const TURN_SIGNATURES: usize = 1024;
pub const TURN_TX_BYTES: usize = 8 << 20;
pub const TURN_MESSAGES: usize = 4096;
pub const TURN_LOADED_BYTES: usize = 64 << 20;
/// Dependency visits that sends (`pull`) may make per turn, each possibly
/// a storage read.
pub const JOB_VISITS_PER_TURN: usize = 4096;
/// Invalid signatures a peer may send before it is cut off: an honest
/// client never sends one.
pub const MAX_INVALID_SIGNATURES: u32 = 32;

#[derive(Default)]
struct Budget {
    signatures: usize,
    tx_bytes: usize,
    messages: usize,
}

impl Budget {
    /// Takes `msg`'s cost; false if it does not fit (unless nothing was
    /// taken yet this turn).
    fn take(&mut self, msg: &Incoming) -> bool {
        let (sigs, bytes) = match msg {
            Incoming::Content(c) => c
                .sessions
                .iter()
                .filter(|s| s.bad.is_none() && !s.txs.is_empty())
                .fold((0, 0), |(n, b), s| {
                    (n + 1, b + s.txs.iter().map(|t| t.json.len()).sum::<usize>())
                }),
            _ => (0, 0),
        };
        let first = self.messages == 0;
        if !first
            && (self.signatures + sigs > TURN_SIGNATURES
                || self.tx_bytes + bytes > TURN_TX_BYTES
                || self.messages >= TURN_MESSAGES)
        {
            return false;
        }
        self.signatures += sigs;
        self.tx_bytes += bytes;
        self.messages += 1;
        true
    }
}

impl Engine {
    /// Peers that got output since the last call: the reactor pulls it as
    /// their sockets drain.
    pub fn take_output_ready(&mut self) -> Vec<PeerId> {
        std::mem::take(&mut self.output_ready)
    }

    /// End of a loop turn: apply what arrived (within the budget), commit,
    /// and release every message that waited for that commit.
    pub fn end_turn(&mut self) -> TurnOutcome {
        self.turn += 1;
        self.cache.set_turn(self.turn);
        self.visits_left = JOB_VISITS_PER_TURN;
        self.render_cache = None;
        self.process();
        if self.write_error.is_none() {
            for w in self.cache.take_vouches() {
                if let Err(e) = self.store.write(w) {
                    self.write_error = Some(e);
                    break;
                }
            }
        }
        let result = match self.write_error.take() {
            Some(e) => Err(e),
            None => self.store.commit(),
        };
        match result {
            Ok(()) => {
                for (id, p) in self.peers.iter_mut() {
                    if p.release() {
                        self.output_ready.push(*id);
                    }
                }
                self.turn_writers.clear();
            }
            Err(e) => self.fail_turn(e),
        }
        self.sig_cache.clear();
        let gone: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.leaving && p.inbox.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for peer in gone {
            self.remove_peer(peer);
        }
        let peers = &self.peers;
        self.cache.evict(self.memory_budget, |id| {
            peers.values().any(|p| p.is_subscribed(id))
        });
        TurnOutcome {
            closes: std::mem::take(&mut self.closes),
            more: !self.ready.is_empty() || !self.released.is_empty(),
        }
    }

    /// Takes messages round-robin (one per peer per round) within the
    /// budget, checks their signatures, and applies them in order. Stops
    /// early when a write fails or too much was read from storage; what
    /// was not applied goes back to its peer's inbox.
    fn process(&mut self) {
        let mut budget = Budget::default();
        self.cache.take_loaded();
        self.run_released(&mut budget);
        let selected = self.select(&mut budget);
        self.prepass(&selected);
        let mut rest = selected.into_iter();
        while let Some((peer, msg)) = rest.next() {
            if self.write_error.is_some() || self.cache.loaded() > TURN_LOADED_BYTES {
                let mut back: Vec<(PeerId, Incoming)> = vec![(peer, msg)];
                back.extend(rest);
                self.put_back(back);
                return;
            }
            if self.peers.get(&peer).is_none_or(|p| p.cut_off) {
                continue;
            }
            self.handle(peer, msg);
            self.run_released(&mut budget);
        }
    }

    fn select(&mut self, budget: &mut Budget) -> Vec<(PeerId, Incoming)> {
        let mut selected = Vec::new();
        while let Some(peer) = self.ready.pop_front() {
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            let Some(msg) = p.inbox.front() else {
                p.in_ready = false;
                continue;
            };
            if !budget.take(msg) {
                self.ready.push_front(peer);
                break;
            }
            if let Some(msg) = p.pop_inbox() {
                selected.push((peer, msg));
            }
            if p.inbox.is_empty() {
                p.in_ready = false;
            } else {
                self.ready.push_back(peer);
            }
        }
        selected
    }

    /// Returns messages to the front of their inboxes, in order.
    fn put_back(&mut self, msgs: Vec<(PeerId, Incoming)>) {
        for (peer, msg) in msgs.into_iter().rev() {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.unpop_inbox(msg);
                if !p.in_ready {
                    p.in_ready = true;
                    self.ready.push_front(peer);
                }
            }
        }
    }

    /// Applies content the gate released, oldest first, within the budget
    /// (a long chain of releases continues next turn).
    fn run_released(&mut self, budget: &mut Budget) {
        while let Some((peer, content)) = self.released.pop_front() {
            let msg = Incoming::Content(content);
            if self.write_error.is_some() || !budget.take(&msg) {
                if let Incoming::Content(content) = msg {
                    self.released.push_front((peer, content));
                }
                return;
            }
            if let Incoming::Content(c) = msg {
                self.handle_content(peer, c);
            }
        }
    }

    /// The turn's writes are lost: roll back, drop what its writers were
    /// told, and close them so their clients resend. Everyone else's
    /// output did not depend on those writes (sends are produced from
    /// committed state, after the commit) and is released.
    fn fail_turn(&mut self, e: crate::storage::StoreError) {
        self.store.rollback();
        let writers: BTreeSet<PeerId> = std::mem::take(&mut self.turn_writers);
        if let Some(suppressed) = self.failure_log.allow(std::time::Instant::now()) {
            log::error!(
                "{e}; this turn was rolled back and nothing of it acknowledged; closing {} connection(s) whose writes it held so their clients resend{}",
                writers.len(),
                if suppressed > 0 {
                    format!(" ({suppressed} more failed turns since the last report)")
                } else {
                    String::new()
                }
            );
        }
        for (id, p) in self.peers.iter_mut() {
            if writers.contains(id) {
                p.cut_off();
                self.closes.push((*id, super::CloseWhy::StorageFailed));
            } else if p.release() {
                self.output_ready.push(*id);
            }
        }
        self.released.retain(|(peer, _)| !writers.contains(peer));
        // Memory may be ahead of disk: read the committed truth back.
        self.cache.clear();
    }
}
