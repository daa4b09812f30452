//! The sync engine: sans-I/O. The reactor feeds it frames and peer events;
//! the engine verifies, updates state, hands accepted writes to storage and
//! queues replies in an outbox that is released only after the turn's
//! commit (`end_turn`). Rules: PROTOCOL.md §5.

mod covalue;
mod gate;
mod incoming;
mod known;
mod outgoing;
mod peer;
mod prepass;
mod stats;
mod stored_check;

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

use crate::protocol::{Outgoing, PeerId};
use crate::storage::{Store, StoreError, Write};
use crate::verify::{Author, CanonicalTx, Header, SigCache, VerifyError};
use crate::verify::{
    agent_signer, canonicalize_tx, check_delete_session, is_delete_session, parse_session_id,
    short_hash_of_sessions,
};
use covalue::CoValue;
use ed25519_dalek::VerifyingKey;
use gate::{Gate, HoldError};
use incoming::{Content, Incoming};
use known::KnownState;
use log::{debug, warn};
use peer::{Peer, PeerEntry};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

pub use covalue::MAX_RECOMMENDED_TX_SIZE;
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

/// Outcome of finding the signer of a session.
enum Signer {
    Key(VerifyingKey),
    /// The author account is not available (yet).
    AccountMissing,
    Invalid(VerifyError),
}

/// Resolves the signer of a session from its ID (§3.4). `account_signer`
/// returns the signer of an available account (None if not available).
pub(crate) fn resolve_signer(
    session_id: &str,
    account_signer: &mut dyn FnMut(&str) -> Option<VerifyingKey>,
) -> Result<VerifyingKey, VerifyError> {
    match parse_session_id(session_id).0 {
        Author::Agent { signer } => agent_signer(signer),
        Author::Account(acc) => {
            account_signer(acc).ok_or_else(|| VerifyError::NotAnAccount(acc.to_string()))
        }
        Author::Invalid(a) => Err(VerifyError::UnknownAuthor(a.to_string())),
    }
}

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

    fn insert_covalue(&mut self, cv: CoValue) {
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
            match incoming::parse(v, len) {
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
            Ok((mut cv, newly_verified)) => {
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

    fn account_signer(&mut self, session_id: &str) -> Signer {
        match parse_session_id(session_id).0 {
            Author::Agent { signer } => match agent_signer(signer) {
                Ok(k) => Signer::Key(k),
                Err(e) => Signer::Invalid(e),
            },
            Author::Account(acc) => {
                let acc: Arc<str> = Arc::from(acc);
                if !self.available(&acc) {
                    return Signer::AccountMissing;
                }
                match self.covalues[&acc].header.account_signer {
                    Some(k) => Signer::Key(k),
                    None => Signer::Invalid(VerifyError::NotAnAccount(acc.to_string())),
                }
            }
            Author::Invalid(a) => Signer::Invalid(VerifyError::UnknownAuthor(a.to_string())),
        }
    }

    // ----- load / known -------------------------------------------------

    fn handle_load(&mut self, peer: PeerId, id: Arc<str>, state: KnownState) {
        let Some(entry) = self.entry(peer, &id) else {
            return;
        };
        // The load is the source of truth about the peer (it may have lost data).
        entry.state = state;
        // cojson stays silent for a CoValue errored for this peer, which
        // blocks the client's load for 60 s; we answer anyway (§6).
        self.send_new_content(peer, &id, true, &mut HashSet::new());
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
        if self.available(&id) {
            self.send_new_content(peer, &id, false, &mut HashSet::new());
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
        visited: &mut HashSet<Arc<str>>,
    ) {
        if !visited.insert(id.clone()) {
            return;
        }
        if !self.available(id) {
            if force {
                let empty = KnownState::default();
                self.send(peer, outgoing::known(id, &empty, false));
                if let Some(e) = self.entry(peer, id) {
                    e.told = true;
                }
            }
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
        let cv = &self.covalues[id];
        let pieces = cv.content_since(Some(&entry.state));
        if !pieces.is_empty() {
            entry.state.merge(&cv.known_state());
            entry.told = true;
            for text in pieces {
                self.outbox.push(Outgoing { peer, text });
            }
        } else if force || !entry.told {
            entry.told = true;
            let text = outgoing::known(id, &cv.known_state(), false);
            self.outbox.push(Outgoing { peer, text });
        }
    }

    // ----- content ------------------------------------------------------

    fn handle_content(&mut self, peer: PeerId, c: Content) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if p.errored.contains(&c.id) {
            self.stats
                .reject(RejectReason::ErroredCoValue, stats::tx_count(&c));
            debug!(
                "peer {}: ignoring content for {} (errored for this peer)",
                peer.0, c.id
            );
            return;
        }
        // Keep this peer's messages for one CoValue in order behind held ones.
        if let Some(waiting_for) = self.gate.waiting_before(peer, &c.id) {
            self.hold(peer, c, waiting_for);
            return;
        }
        let header = if self.available(&c.id) {
            None
        } else {
            let Some(h) = &c.header else {
                let empty = KnownState::default();
                self.send(peer, outgoing::known(&c.id, &empty, true));
                if let Some(e) = self.entry(peer, &c.id) {
                    e.told = true;
                }
                return;
            };
            match Header::verify(h, &c.id) {
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    self.stats
                        .reject(RejectReason::from(&e), stats::tx_count(&c));
                    warn!("peer {}: rejecting content for {}: {e}", peer.0, c.id);
                    return;
                }
            }
        };
        let missing = self.missing_dependencies(peer, &c, header.as_ref());
        if !missing.is_empty() {
            for dep in &missing {
                let first_ask = self
                    .peer_mut(peer)
                    .is_some_and(|p| p.requested.insert(dep.clone()));
                if first_ask {
                    self.send(peer, outgoing::load(dep, &KnownState::default()));
                }
            }
            self.hold(peer, c, missing);
            return;
        }
        self.apply_content(peer, c, header);
    }

    fn hold(&mut self, peer: PeerId, content: Content, waiting_for: BTreeSet<Arc<str>>) {
        debug!(
            "peer {}: holding content for {} until {:?} arrive",
            peer.0, content.id, waiting_for
        );
        if let Err((why, content)) = self.gate.hold(peer, content, waiting_for) {
            self.stats
                .reject(RejectReason::TooManyPending, stats::tx_count(&content));
            let what = match why {
                HoldError::TooMany => "too many messages",
                HoldError::TooLarge => "too many bytes",
            };
            warn!(
                "peer {}: dropping content for {}: {what} already wait for dependencies",
                peer.0, content.id
            );
        }
    }

    /// Dependencies of a content message that are not available (§5.4.1),
    /// leaving out ones the peer lacks itself and ones that are themselves
    /// waiting in the gate (which would deadlock on a cycle).
    fn missing_dependencies(
        &mut self,
        peer: PeerId,
        c: &Content,
        new_header: Option<&Header>,
    ) -> BTreeSet<Arc<str>> {
        let mut deps: BTreeSet<Arc<str>> = BTreeSet::new();
        let (group, source, is_group) = match new_header {
            Some(h) => (
                h.group().map(Arc::from),
                h.source.as_deref().map(Arc::from),
                h.is_group(),
            ),
            None => {
                let cv = &self.covalues[&c.id];
                (None, None, cv.header.is_group())
            }
        };
        deps.extend(group);
        deps.extend(source);
        for s in &c.sessions {
            if let (Author::Account(acc), _) = parse_session_id(&s.session_id) {
                deps.insert(Arc::from(acc));
            }
            if is_group {
                for tx in &s.txs {
                    if let Some(changes) = tx.get("changes").and_then(Value::as_str) {
                        deps.extend(covalue::group_keys(changes).into_iter().map(Arc::from));
                    }
                }
            }
        }
        deps.remove(&c.id);
        let lacks = self.peers.get(&peer).map(|p| &p.lacks);
        let candidates: Vec<Arc<str>> = deps
            .into_iter()
            .filter(|d| !lacks.is_some_and(|l| l.contains(d)))
            .filter(|d| !self.gate.holds_covalue(d))
            .collect();
        candidates
            .into_iter()
            .filter(|d| !self.available(d))
            .collect()
    }

    /// Re-examines held content after `id` became available or unavailable.
    fn release_held(&mut self, id: &Arc<str>) {
        // Released messages go through the gate again: they may still miss
        // another dependency, found only now.
        for h in self.gate.release(id) {
            self.handle_content(h.peer, h.content);
        }
    }

    fn apply_content(&mut self, peer: PeerId, c: Content, header: Option<Header>) {
        let id = c.id.clone();
        let created = if let Some(h) = header {
            let header_json: Arc<str> = Arc::from(
                serde_json::to_string(c.header.as_ref().unwrap_or(&Value::Null))
                    .unwrap_or_default(),
            );
            self.turn_writers.insert(peer);
            if let Err(e) = self.store.write(Write::Header {
                co_id: id.clone(),
                header: header_json.clone(),
            }) {
                log::error!("storage refused header of {id}: {e}");
                return;
            }
            let mut cv = CoValue::new(id.clone(), header_json, h);
            cv.last_used = self.turn;
            self.insert_covalue(cv);
            true
        } else {
            false
        };

        let bytes_before = self.covalues[&id].bytes();
        let mut gap = false;
        let mut errored = false;
        let mut accepted: Vec<(Arc<str>, u32)> = Vec::new();
        let mut any_new = created;
        for s in c.sessions {
            let ours = self.covalues[&id].count(&s.session_id);
            if s.after > ours {
                self.stats.reject(RejectReason::Gap, s.txs.len());
                gap = true;
                continue;
            }
            let end = s.after.saturating_add(s.txs.len() as u32);
            let skip = (ours - s.after) as usize;
            if skip >= s.txs.len() {
                accepted.push((s.session_id, end));
                continue;
            }
            let signer = match self.covalues[&id].session_signer(&s.session_id) {
                Some(k) => k,
                None => match self.account_signer(&s.session_id) {
                    Signer::Key(k) => k,
                    Signer::AccountMissing => {
                        self.stats
                            .reject(RejectReason::AccountMissing, s.txs.len() - skip);
                        warn!(
                            "peer {}: skipping session {} of {id}: its account is not available",
                            peer.0, s.session_id
                        );
                        continue;
                    }
                    Signer::Invalid(e) => {
                        self.stats
                            .reject(RejectReason::from(&e), s.txs.len() - skip);
                        warn!(
                            "peer {}: rejecting session {} of {id}: {e}",
                            peer.0, s.session_id
                        );
                        errored = true;
                        continue;
                    }
                },
            };
            let delete_check = if is_delete_session(&s.session_id) {
                let cv = &self.covalues[&id];
                let group_or_account = cv.header.is_group() || cv.header.account_signer.is_some();
                check_delete_session(&id, group_or_account, ours, &s.txs[skip..])
            } else {
                Ok(())
            };
            let canon: Result<Vec<CanonicalTx>, VerifyError> =
                delete_check.and_then(|()| match s.canon {
                    Some(all) => all.into_iter().skip(skip).collect(),
                    None => s.txs[skip..].iter().map(canonicalize_tx).collect(),
                });
            let result = canon.and_then(|txs| {
                self.covalues
                    .get_mut(&id)
                    .map(|cv| {
                        cv.append(
                            &s.session_id,
                            signer,
                            txs,
                            &s.last_signature,
                            &self.sig_cache,
                        )
                    })
                    .unwrap_or(Err(VerifyError::BadHeader("CoValue vanished".into())))
            });
            match result {
                Ok(append) => {
                    self.stats.accept(append.txs.len());
                    self.turn_writers.insert(peer);
                    if let Err(e) = self.store.write(Write::Append(append)) {
                        log::error!("storage refused transactions of {id}: {e}");
                    }
                    any_new = true;
                    accepted.push((s.session_id, end));
                }
                Err(e) => {
                    self.stats
                        .reject(RejectReason::from(&e), s.txs.len() - skip);
                    warn!(
                        "peer {}: rejecting transactions {}..{} of session {} of {id}: {e}",
                        peer.0, s.after, end, s.session_id
                    );
                    errored = true;
                }
            }
        }

        let bytes_after = self.covalues[&id].bytes();
        self.cached_bytes += bytes_after - bytes_before;
        let our_state = self.covalues[&id].known_state();
        if let Some(entry) = self.entry(peer, &id) {
            entry.state.header = true;
            for (sid, n) in &accepted {
                entry.state.raise(sid, *n);
            }
            entry.told = true;
        }
        if errored && let Some(p) = self.peer_mut(peer) {
            p.errored.insert(id.clone());
        }
        self.send(peer, outgoing::known(&id, &our_state, gap));

        if any_new {
            self.forward(&id);
        }
        self.complete_reconcile(peer, &id);
        if created {
            self.release_held(&id);
        }
    }

    /// Sends every subscriber what it lacks of `id` (§5.4 step 7).
    fn forward(&mut self, id: &Arc<str>) {
        let subs: Vec<PeerId> = self
            .subscribers
            .get(id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for p in subs {
            let errored = self.peers.get(&p).is_none_or(|x| x.errored.contains(id));
            if !errored {
                self.send_new_content(p, id, false, &mut HashSet::new());
            }
        }
    }

    // ----- reconcile ----------------------------------------------------

    fn handle_reconcile(
        &mut self,
        peer: PeerId,
        batch_id: String,
        values: Vec<(Arc<str>, String)>,
    ) {
        let mut pending = HashSet::new();
        for (id, hash) in values {
            if self
                .peers
                .get(&peer)
                .is_none_or(|p| p.errored.contains(&id))
            {
                continue;
            }
            if !self.available(&id) {
                self.send(peer, outgoing::load(&id, &KnownState::default()));
                pending.insert(id);
            } else {
                let cv = &self.covalues[&id];
                if short_hash_of_sessions(cv.sessions()) != hash {
                    let text = outgoing::load(&id, &cv.known_state());
                    self.send(peer, text);
                    pending.insert(id);
                }
            }
        }
        if pending.is_empty() {
            self.send(peer, outgoing::reconcile_ack(&batch_id));
        } else if let Some(p) = self.peer_mut(peer) {
            p.reconciles.push(peer::Reconcile { batch_id, pending });
        }
    }

    fn complete_reconcile(&mut self, peer: PeerId, id: &str) {
        let done = match self.peer_mut(peer) {
            Some(p) if !p.reconciles.is_empty() => p.complete_reconcile(id),
            _ => return,
        };
        for batch in done {
            self.send(peer, outgoing::reconcile_ack(&batch));
        }
    }
}
