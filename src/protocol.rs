//! Wire types shared by the reactor and the engine.

/// Identifies one WebSocket peer for the lifetime of its connection.
/// Never reused, so engine state keyed by it cannot leak into a later
/// connection that happens to get the same slab slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// One sync message (a single JSON text, no newline) for one peer.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub peer: PeerId,
    pub text: String,
}
