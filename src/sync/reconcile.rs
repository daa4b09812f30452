//! `reconcile` (docs/protocol.md §4.5): a client with storage asks which of its
//! CoValues the server lacks or holds differently; the server `load`s those
//! and acks the batch once the client has answered each of them.

use super::Engine;
use super::encode;
use super::known::KnownState;
use super::peer;
use crate::sync::PeerId;
use crate::verify::short_hash_of_sessions;
use std::collections::HashSet;
use std::sync::Arc;

impl Engine {
    pub(super) fn handle_reconcile(
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
                self.send(peer, encode::load(&id, &KnownState::default()));
                pending.insert(id);
            } else {
                let cv = &self.covalues[&id];
                if short_hash_of_sessions(cv.sessions()) != hash {
                    let text = encode::load(&id, &cv.known_state());
                    self.send(peer, text);
                    pending.insert(id);
                }
            }
        }
        if pending.is_empty() {
            self.send(peer, encode::reconcile_ack(&batch_id));
        } else if let Some(p) = self.peer_mut(peer) {
            p.reconciles.push(peer::Reconcile { batch_id, pending });
        }
    }

    pub(super) fn complete_reconcile(&mut self, peer: PeerId, id: &str) {
        let done = match self.peer_mut(peer) {
            Some(p) if !p.reconciles.is_empty() => p.complete_reconcile(id),
            _ => return,
        };
        for batch in done {
            self.send(peer, encode::reconcile_ack(&batch));
        }
    }
}
