//! Known states (docs/protocol.md §3.5): which transactions of a CoValue a side holds.

use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownState {
    pub header: bool,
    pub sessions: HashMap<Arc<str>, u32>,
}

impl KnownState {
    pub fn count(&self, session: &str) -> u32 {
        self.sessions.get(session).copied().unwrap_or(0)
    }

    /// Per-session max, header OR.
    pub fn merge(&mut self, other: &KnownState) {
        self.header |= other.header;
        for (s, &n) in &other.sessions {
            self.raise(s, n);
        }
    }

    /// Raises one session's count to at least `n`.
    pub fn raise(&mut self, session: &Arc<str>, n: u32) {
        match self.sessions.get_mut(session) {
            Some(c) => *c = (*c).max(n),
            None => {
                self.sessions.insert(session.clone(), n);
            }
        }
    }
}

impl KnownState {
    /// A peer's known state as it sent it, keeping only the sessions `ours`
    /// holds (their names shared with it): a peer may name any number of
    /// sessions, and only ours decide what it lacks.
    pub fn from_wire(
        wire: &super::decode::WireKnown,
        ours: Option<&super::covalue::CoValue>,
    ) -> KnownState {
        let mut state = KnownState {
            header: wire.header,
            ..KnownState::default()
        };
        if let Some(cv) = ours {
            for (session, n) in &wire.sessions {
                if let Some(name) = cv.session_name(session) {
                    state.raise(name, *n);
                }
            }
        }
        state
    }
}
