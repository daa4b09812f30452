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
