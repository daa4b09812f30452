//! `reconcile` (docs/protocol.md §4.5): a client with storage asks which of its
//! CoValues the server lacks or holds differently; the server `load`s those
//! and acks the batch once the client has answered each of them.

use super::encode;
use super::known::KnownState;
use super::{Engine, PeerId};
use crate::verify::{CoId, short_hash_of_sessions};
use std::collections::HashSet;

impl Engine {
    pub(super) fn handle_reconcile(
        &mut self,
        peer: PeerId,
        batch_id: String,
        values: Vec<(CoId, Box<str>)>,
        last: bool,
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
            let text = if self.cache.load(&id, &mut *self.store).found() {
                let Some(cv) = self.cache.get(&id) else {
                    continue;
                };
                if short_hash_of_sessions(cv.sessions()) == *hash {
                    continue;
                }
                encode::load(id.as_str(), &cv.known_state())
            } else {
                encode::load(id.as_str(), &KnownState::default())
            };
            self.send(peer, text);
            pending.insert(id);
        }
        let complete = self
            .peers
            .get_mut(&peer)
            .is_some_and(|p| p.reconcile_piece(batch_id.clone(), pending, last));
        if complete {
            self.send(peer, encode::reconcile_ack(&batch_id));
        }
    }

    pub(super) fn complete_reconcile(&mut self, peer: PeerId, id: &CoId) {
        let done = match self.peers.get_mut(&peer) {
            Some(p) if !p.reconciles.is_empty() => p.complete_reconcile(id),
            _ => return,
        };
        for batch in done {
            self.send(peer, encode::reconcile_ack(&batch));
        }
    }
}
