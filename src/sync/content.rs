//! `content` (docs/protocol.md §5.4): the dependency gate, verification and
//! appending of each session entry, the ack, and forwarding to every
//! subscriber by known-state difference.

use super::covalue::{self, CoValue};
use super::decode::Content;
use super::encode;
use super::gate::HoldError;
use super::known::KnownState;
use super::stats::{self, RejectReason};
use super::{Engine, Signer};
use crate::storage::Write;
use crate::sync::PeerId;
use crate::verify::{
    Author, CanonicalTx, Header, VerifyError, canonicalize_tx, check_delete_session,
    is_delete_session, parse_session_id,
};
use log::{debug, warn};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

impl Engine {
    pub(super) fn handle_content(&mut self, peer: PeerId, mut c: Content) {
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
                self.send(peer, encode::known(&c.id, &empty, true));
                if let Some(e) = self.entry(peer, &c.id) {
                    e.told = true;
                }
                return;
            };
            let checked = c
                .checked_header
                .take()
                .map_or_else(|| Header::verify(h, &c.id), |b| *b);
            match checked {
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
                    self.send(peer, encode::load(dep, &KnownState::default()));
                }
            }
            self.hold(peer, c, missing);
            return;
        }
        self.apply_content(peer, c, header);
    }

    pub(super) fn hold(&mut self, peer: PeerId, content: Content, waiting_for: BTreeSet<Arc<str>>) {
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
    pub(super) fn missing_dependencies(
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
    pub(super) fn release_held(&mut self, id: &Arc<str>) {
        // Released messages go through the gate again: they may still miss
        // another dependency, found only now.
        for h in self.gate.release(id) {
            self.handle_content(h.peer, h.content);
        }
    }

    pub(super) fn apply_content(&mut self, peer: PeerId, c: Content, header: Option<Header>) {
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
                None => match self.signer_of(&s.session_id) {
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
                // Accounts have a group ruleset too: is_group covers both.
                let group_or_account = self.covalues[&id].header.is_group();
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
        if any_new {
            let v = self.next_version();
            if let Some(cv) = self.covalues.get_mut(&id) {
                cv.version = v;
            }
        }
        let ack = self.covalues[&id].known_message(gap);
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
        self.send(peer, ack);

        if any_new {
            self.forward(&id);
        }
        self.complete_reconcile(peer, &id);
        if created {
            self.release_held(&id);
        }
    }

    /// Sends every subscriber what it lacks of `id` (§5.4 step 7).
    pub(super) fn forward(&mut self, id: &Arc<str>) {
        let subs: Vec<PeerId> = self
            .subscribers
            .get(id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        if subs.is_empty() || !self.available(id) {
            return;
        }
        // The dependencies and their versions, looked up once for all
        // subscribers: a subscriber already up to date with each of them
        // needs no dependency walk (the common case of a live update).
        let deps: Vec<(Arc<str>, u64)> = self.covalues[id]
            .dependencies()
            .into_iter()
            .filter_map(|d| {
                let v = self.available(&d).then(|| self.covalues[&d].version)?;
                Some((d, v))
            })
            .collect();
        let mut cache = None;
        for p in subs {
            if !self.forward_fast(p, id, &deps, &mut cache) {
                let errored = self.peers.get(&p).is_none_or(|x| x.errored.contains(id));
                if !errored {
                    self.send_new_content_with(p, id, false, &mut Vec::new(), &mut cache);
                }
            }
        }
    }

    /// Forwards to a subscriber whose dependencies are all up to date,
    /// without the general walk. Returns false when the general path must
    /// decide (dependencies behind, errored, or no entry yet).
    fn forward_fast(
        &mut self,
        peer: PeerId,
        id: &Arc<str>,
        deps: &[(Arc<str>, u64)],
        cache: &mut Option<covalue::PieceCache>,
    ) -> bool {
        let Some(p) = self.peers.get_mut(&peer) else {
            return true; // gone: nothing to send
        };
        if p.errored.contains(id) {
            return true;
        }
        let deps_synced = deps
            .iter()
            .all(|(d, v)| p.errored.contains(d) || p.known.get(d).is_some_and(|e| e.is_synced(*v)));
        if !deps_synced {
            return false;
        }
        let Some(entry) = p.known.get_mut(id) else {
            return false;
        };
        let cv = &self.covalues[id];
        if !entry.is_synced(cv.version) {
            cv.bring_up_to_date(peer, entry, false, cache, &mut self.outbox);
        }
        true
    }
}
