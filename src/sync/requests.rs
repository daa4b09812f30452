//! `load` and `known` (docs/protocol.md §5.2, §5.3): what a peer says it
//! holds, and the sends it leads to.

use super::decode::WireKnown;
use super::known::KnownState;
use super::stats::RejectReason;
use super::{Engine, PeerId};
use crate::verify::CoId;

impl Engine {
    pub(super) fn handle_load(&mut self, peer: PeerId, id: CoId, state: WireKnown) {
        self.cache.load(&id, &mut *self.store);
        let state = KnownState::from_wire(&state, self.cache.get(&id));
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        // The load is the source of truth about the peer (it may have lost
        // data). cojson stays silent for a CoValue errored for this peer,
        // which blocks the client's load for 60 s; we answer anyway (§6).
        p.entry_mut(id, |e| {
            e.state = state;
            e.synced = 0;
        });
        p.queue_send(id, true);
        self.subscribe(peer, id);
    }

    pub(super) fn handle_known(
        &mut self,
        peer: PeerId,
        id: CoId,
        wire: WireKnown,
        correction: bool,
    ) {
        let available = self.cache.load(&id, &mut *self.store).found();
        let state = KnownState::from_wire(&wire, self.cache.get(&id));
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.entry_mut(id, |e| {
            if correction {
                e.state = state;
            } else {
                e.state.merge(&state);
            }
            e.synced = 0;
        });
        self.subscribe(peer, id);
        if available {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.queue_send(id, false);
            }
        } else if !wire.header {
            // A dependency we asked this peer for, which it lacks too: its
            // content waiting for it can never be applied.
            let lacks = self.peers.get_mut(&peer).is_some_and(|p| p.mark_lacks(id));
            if lacks {
                for h in self.gate.drop_lacking(peer, &id) {
                    self.stats
                        .reject(RejectReason::MissingDependency, h.content.tx_count());
                    if let Some(p) = self.peers.get_mut(&peer) {
                        crate::peer_warn!(
                            p.warnings,
                            peer,
                            "dropping content for {}: its dependency {id} is not available here, and the sender lacks it too",
                            h.content.id
                        );
                    }
                }
            }
        }
        self.complete_reconcile(peer, &id);
    }
}
