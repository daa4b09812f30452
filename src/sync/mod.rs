//! The sync engine: sans-I/O. The reactor feeds it frames and peer events and
//! drains its outbox after each turn's storage commit.

use crate::protocol::{Outgoing, PeerId};
use crate::storage::Store;

pub struct Engine {
    store: Box<dyn Store>,
    outbox: Vec<Outgoing>,
}

impl Engine {
    pub fn new(store: Box<dyn Store>) -> Self {
        Engine {
            store,
            outbox: Vec::new(),
        }
    }

    /// A WebSocket peer finished its upgrade.
    pub fn connect(&mut self, _peer: PeerId) {}

    /// The peer's connection is gone; all its state is dropped.
    pub fn disconnect(&mut self, _peer: PeerId) {}

    /// One text frame from a peer (one or more JSON texts joined by `\n`).
    pub fn receive_frame(&mut self, _peer: PeerId, _frame: &str) {}

    /// End of a loop turn: commit the turn's writes, then hand out every
    /// message that waited for that commit, in order.
    pub fn end_turn(&mut self, out: &mut Vec<Outgoing>) {
        match self.store.commit() {
            Ok(()) => out.append(&mut self.outbox),
            Err(e) => {
                log::error!("{e}; dropping this turn's acks");
                self.store.rollback();
                self.outbox.clear();
            }
        }
    }
}
