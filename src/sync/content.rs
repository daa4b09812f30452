//! `content` (docs/protocol.md §5.4), in three steps: admit it (the
//! dependency gate, the header, the depth limit), apply it (verify each
//! session entry, append, hand the writes to storage), then acknowledge
//! it and forward the news to every subscriber.

use super::covalue::{CoValue, account_author, group_deps};
use super::decode::{Content, SessionEntry};
use super::gate::HoldError;
use super::stats::RejectReason;
use super::turn::MAX_INVALID_SIGNATURES;
use super::{CloseWhy, Engine, PeerId, encode};
use crate::logging::clip;
use crate::storage::Write;
use crate::verify::{
    CheckedHeader, CoId, Header, Signer, VerifyError, check_delete_session, is_delete_session,
    session_signer,
};
use log::debug;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What the dependency check found for a message.
enum Needed {
    Nothing,
    /// The sender lacks this dependency too: the content is dropped.
    Lacking(CoId),
    /// Ask the sender for these and hold the content meanwhile.
    Wait(BTreeSet<CoId>),
}

/// What applying the session entries of one message gave.
#[derive(Default)]
struct Applied {
    /// Sessions the peer now holds up to the given count (with us).
    accepted: Vec<(Arc<str>, u32)>,
    gap: bool,
    errored: bool,
    any_new: bool,
}

impl Engine {
    pub(super) fn handle_content(&mut self, peer: PeerId, mut c: Box<Content>) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.errored.contains(&c.id) {
            self.stats
                .reject(RejectReason::ErroredCoValue, c.tx_count());
            debug!(
                "peer {peer}: ignoring content for {} (errored for this peer)",
                c.id
            );
            return;
        }
        // Keep this peer's messages for one CoValue in order behind held ones.
        if let Some(waiting_for) = self.gate.waiting_before(peer, &c.id) {
            self.hold(peer, c, waiting_for);
            return;
        }
        // A new CoValue needs its header; it stays in the message (which
        // may be held) until the message is applied.
        let new = !self.cache.load(&c.id, &mut *self.store).found();
        if new {
            match &c.header {
                None => {
                    // We lack it: ask for everything (a correction).
                    self.send(
                        peer,
                        encode::known_iter(c.id.as_str(), false, std::iter::empty(), true),
                    );
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.entry_mut(c.id, |e| e.told = true);
                    }
                    self.subscribe(peer, c.id);
                    return;
                }
                Some(Err(e)) => {
                    let e = e.clone();
                    self.reject(peer, &c, RejectReason::from(&e), &e);
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
        let header = |c: &Content| match &c.header {
            Some(Ok(h)) if new => Some(h.header.clone()),
            _ => None,
        };
        match self.needed(peer, &c, header(&c).as_ref()) {
            Needed::Nothing => {}
            Needed::Lacking(dep) => {
                let e = VerifyError::BadHeader(format!(
                    "dependency {dep} is not available here and the sender lacks it"
                ));
                self.reject(peer, &c, RejectReason::MissingDependency, &e);
                return;
            }
            Needed::Wait(missing) => {
                for dep in &missing {
                    let first_ask = self
                        .peers
                        .get_mut(&peer)
                        .is_some_and(|p| p.mark_requested(*dep));
                    if first_ask {
                        self.send(peer, encode::load(dep.as_str(), &Default::default()));
                    }
                }
                self.hold(peer, c, missing);
                return;
            }
        }
        let depth = match header(&c) {
            None => None,
            Some(h) => match self.cache.depth_of_new(&h, &mut *self.store) {
                Ok(d) => Some(d),
                Err(()) => {
                    let e = VerifyError::BadHeader(format!(
                        "its chain of owner groups and branch sources is deeper than {}",
                        super::MAX_DEPENDENCY_DEPTH
                    ));
                    self.reject(peer, &c, RejectReason::TooDeep, &e);
                    return;
                }
            },
        };
        let header = match (new, c.header.take()) {
            (true, Some(Ok(h))) => Some((h, depth.unwrap_or(1))),
            _ => None,
        };
        self.apply_content(peer, c, header);
    }

    /// Logs and counts a refused message.
    fn reject(&mut self, peer: PeerId, c: &Content, why: RejectReason, e: &VerifyError) {
        self.stats.reject(why, c.tx_count());
        if let Some(p) = self.peers.get_mut(&peer) {
            crate::peer_warn!(p.warnings, peer, "rejecting content for {}: {e}", c.id);
        }
    }

    fn hold(&mut self, peer: PeerId, content: Box<Content>, waiting_for: BTreeSet<CoId>) {
        debug!(
            "peer {peer}: holding content for {} until {} dependencies arrive",
            content.id,
            waiting_for.len()
        );
        if let Err((why, content)) = self.gate.hold(peer, content, waiting_for) {
            let what = match why {
                HoldError::TooMany => "too many messages",
                HoldError::TooLarge => "too many bytes",
            };
            let e = VerifyError::BadHeader(format!("{what} already wait for dependencies"));
            self.reject(peer, &content, RejectReason::TooManyPending, &e);
        }
    }

    /// Dependencies of a content message that are not available (§5.4.1):
    /// the owner and branch source of a new header, session authors, and
    /// for groups the members and parents named by the new transactions.
    /// One that is itself waiting in the gate is not waited for (that could
    /// deadlock on a cycle).
    fn needed(&mut self, peer: PeerId, c: &Content, new_header: Option<&Header>) -> Needed {
        let mut deps: BTreeSet<CoId> = BTreeSet::new();
        let is_group = match new_header {
            Some(h) => {
                deps.extend(h.dependencies());
                h.is_group()
            }
            None => self.cache.get(&c.id).is_some_and(|cv| cv.header.is_group()),
        };
        let mut named = Vec::new();
        for s in &c.sessions {
            deps.extend(account_author(&s.session_id));
            if is_group {
                for tx in s.txs.iter().filter(|t| t.trusting) {
                    group_deps(&tx.json, &mut named);
                }
            }
        }
        deps.extend(named);
        deps.remove(&c.id);
        let mut missing = BTreeSet::new();
        for dep in deps {
            if self.gate.holds_covalue(&dep) || self.cache.contains(&dep) {
                continue;
            }
            if self.cache.load(&dep, &mut *self.store).found() {
                continue;
            }
            if self
                .peers
                .get(&peer)
                .is_some_and(|p| p.lacks.contains(&dep))
            {
                return Needed::Lacking(dep);
            }
            missing.insert(dep);
        }
        if missing.is_empty() {
            Needed::Nothing
        } else {
            Needed::Wait(missing)
        }
    }

    fn apply_content(
        &mut self,
        peer: PeerId,
        c: Box<Content>,
        header: Option<(CheckedHeader, u16)>,
    ) {
        let id = c.id;
        let created = header.is_some();
        if let Some((h, depth)) = header {
            let write = Write::Header {
                co_id: Arc::from(id.as_str()),
                header: Arc::from(h.json.as_str()),
            };
            if !self.write(peer, write) {
                return;
            }
            let mut cv = CoValue::new(id, h);
            cv.depth = Some(depth);
            self.cache.insert(cv);
        }
        let applied = self.apply_sessions(peer, id, c.sessions);
        if self.write_error.is_some() {
            return; // the turn fails: nothing of it is acknowledged
        }
        self.acknowledge(peer, id, &applied);
        if applied.any_new || created {
            self.forward(id);
        }
        self.complete_reconcile(peer, &id);
        if created {
            let released = self.gate.release(&id);
            self.released
                .extend(released.into_iter().map(|h| (h.peer, h.content)));
        }
    }

    /// Hands a write to storage; false (and the turn fails) if it refused.
    fn write(&mut self, peer: PeerId, w: Write) -> bool {
        match self.store.write(w) {
            Ok(()) => {
                self.turn_writers.insert(peer);
                true
            }
            Err(e) => {
                // Everything written by this turn so far is lost with it.
                self.turn_writers.insert(peer);
                self.write_error.get_or_insert(e);
                false
            }
        }
    }

    /// Verifies and appends each session entry, all or nothing per entry.
    fn apply_sessions(&mut self, peer: PeerId, id: CoId, sessions: Vec<SessionEntry>) -> Applied {
        let mut applied = Applied::default();
        for s in sessions {
            let Some(cv) = self.cache.get(&id) else {
                break;
            };
            let ours = cv.count(&s.session_id);
            if s.after > ours {
                self.stats.reject(RejectReason::Gap, s.sent as usize);
                applied.gap = true;
                continue;
            }
            let end = s.after.saturating_add(s.sent);
            if let Some(e) = &s.bad {
                self.refuse_entry(peer, id, &s, e);
                applied.errored = true;
                continue;
            }
            let skip = (ours - s.after) as usize;
            if skip >= s.txs.len() {
                applied.accepted.push((s.session_id.clone(), end));
                continue;
            }
            match self.append_entry(peer, id, &s, skip) {
                Ok(Some(append)) => {
                    self.stats.accept(append.txs.len());
                    if !self.write(peer, Write::Append(append)) {
                        return applied;
                    }
                    applied.any_new = true;
                    applied.accepted.push((s.session_id.clone(), end));
                }
                // The author's account is not available (yet): skipped.
                Ok(None) => {}
                Err(e) => {
                    self.refuse_entry(peer, id, &s, &e);
                    applied.errored = true;
                }
            }
        }
        applied
    }

    /// Verifies one entry's new transactions and appends them in memory.
    /// `Ok(None)`: the session's account author is not available.
    fn append_entry(
        &mut self,
        peer: PeerId,
        id: CoId,
        s: &SessionEntry,
        skip: usize,
    ) -> Result<Option<crate::storage::SessionAppend>, VerifyError> {
        let Some(cv) = self.cache.get(&id) else {
            return Ok(None);
        };
        let signer = match cv.session_signer(&s.session_id) {
            Some(k) => k,
            None => {
                let cache = &self.cache;
                let store = &mut *self.store;
                match session_signer(&s.session_id, &mut |acc| {
                    cache.account_signer_of(acc, store)
                }) {
                    Signer::Key(k) => k,
                    Signer::Invalid(e) => return Err(e),
                    Signer::AccountMissing => {
                        self.stats
                            .reject(RejectReason::AccountMissing, s.txs.len() - skip);
                        if let Some(p) = self.peers.get_mut(&peer) {
                            crate::peer_warn!(
                                p.warnings,
                                peer,
                                "skipping session {} of {id}: its account is not available",
                                clip(&s.session_id)
                            );
                        }
                        return Ok(None);
                    }
                }
            }
        };
        let new = &s.txs[skip..];
        if is_delete_session(&s.session_id) {
            // Accounts have a group ruleset too: is_group covers both.
            check_delete_session(
                id.as_str(),
                cv.header.is_group(),
                s.after + skip as u32,
                new,
            )?;
        }
        let sig_cache = &self.sig_cache;
        let appended = self.cache.update(&id, |cv| {
            let r = cv.append(&s.session_id, signer, new, &s.last_signature, sig_cache);
            let changed = r.is_ok();
            (r, changed)
        });
        match appended {
            Some(Ok(append)) => Ok(Some(append)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// Logs, counts and remembers a refused session entry; a peer that
    /// keeps sending invalid signatures is cut off.
    fn refuse_entry(&mut self, peer: PeerId, id: CoId, s: &SessionEntry, e: &VerifyError) {
        self.stats.reject(RejectReason::from(e), s.sent as usize);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        crate::peer_warn!(
            p.warnings,
            peer,
            "rejecting transactions {}..{} of session {} of {id}: {e}",
            s.after,
            s.after.saturating_add(s.sent),
            clip(&s.session_id)
        );
        if matches!(
            e,
            VerifyError::SignatureMismatch | VerifyError::BadSignature(_)
        ) {
            p.invalid_signatures += 1;
            if p.invalid_signatures == MAX_INVALID_SIGNATURES {
                log::warn!(
                    "peer {peer}: {MAX_INVALID_SIGNATURES} invalid signatures; closing the connection"
                );
                p.cut_off();
                self.closes
                    .push((peer, CloseWhy::InvalidSignatures(MAX_INVALID_SIGNATURES)));
            }
        }
    }

    /// The `known` ack (our state; a correction after a gap) and what the
    /// peer now holds.
    fn acknowledge(&mut self, peer: PeerId, id: CoId, applied: &Applied) {
        let Some(cv) = self.cache.get(&id) else {
            return;
        };
        let ack = cv.known_message(applied.gap);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.entry_mut(id, |e| {
            e.state.header = true;
            for (sid, n) in &applied.accepted {
                if let Some(name) = cv.session_name(sid) {
                    e.state.raise(name, *n);
                }
            }
            e.told = true;
        });
        if applied.errored {
            p.mark_errored(id);
        }
        p.send(ack);
        self.subscribe(peer, id);
    }

    /// Queues, for every subscriber, a send of what it lacks of `id` (§5.4
    /// step 7); produced after the commit, as each socket drains.
    fn forward(&mut self, id: CoId) {
        let Some(subs) = self.subscribers.get(&id) else {
            return;
        };
        for s in subs {
            if let Some(p) = self.peers.get_mut(s)
                && !p.errored.contains(&id)
            {
                p.queue_send(id, false);
            }
        }
    }
}
