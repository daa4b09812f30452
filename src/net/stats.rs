//! The reactor's counters (connections, messages by action, socket bytes)
//! and live gauges, read by the service's `/metrics` renderer. Plain
//! integers: everything runs on the loop thread.

use serde::Deserialize;

/// Sync message kinds, as metric labels. Unknown actions are lumped into
/// `other` so a client cannot create labels at will.
pub const ACTIONS: [&str; 7] = [
    "load",
    "known",
    "content",
    "done",
    "reconcile",
    "reconcile-ack",
    "other",
];

/// The label index of one sync message (a single JSON text). cojson and the
/// engine both write `action` first, so the prefix check almost always
/// decides; otherwise the field is looked up without building a tree.
pub fn action_index(msg: &str) -> usize {
    const PREFIX: &str = "{\"action\":\"";
    let other = ACTIONS.len() - 1;
    let index = |name: &str| ACTIONS.iter().position(|a| *a == name);
    // Counted for every message in and out: the common case borrows.
    let found = match msg.strip_prefix(PREFIX) {
        Some(rest) => rest.split('"').next().and_then(index),
        None => {
            #[derive(Deserialize)]
            struct Probe {
                action: Option<String>,
            }
            serde_json::from_str::<Probe>(msg)
                .ok()
                .and_then(|p| p.action)
                .and_then(|a| index(&a))
        }
    };
    found.unwrap_or(other)
}

/// Counts per entry of [`ACTIONS`].
#[derive(Debug, Default, Clone)]
pub struct ActionCounts([u64; ACTIONS.len()]);

impl ActionCounts {
    pub fn count(&mut self, msg: &str) {
        if let Some(c) = self.0.get_mut(action_index(msg)) {
            *c += 1;
        }
    }

    /// Counts every message of a frame (`\n`-separated, as cojson batches).
    pub fn count_frame(&mut self, frame: &str) {
        for line in frame.split('\n').filter(|l| !l.is_empty()) {
            self.count(line);
        }
    }

    pub fn get(&self, action: &str) -> u64 {
        ACTIONS
            .iter()
            .position(|a| *a == action)
            .and_then(|i| self.0.get(i).copied())
            .unwrap_or(0)
    }
}

/// The reactor's counters.
#[derive(Debug, Default)]
pub struct NetStats {
    pub connections_total: u64,
    pub messages_in: ActionCounts,
    pub messages_out: ActionCounts,
    /// Socket bytes, added as connections report progress.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Gauges that only the reactor's live state knows.
#[derive(Debug, Default, Clone, Copy)]
pub struct Live {
    pub connections_open: usize,
    pub websockets_open: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        assert_eq!(
            ACTIONS[action_index(r#"{"action":"load","id":"co_z1"}"#)],
            "load"
        );
        assert_eq!(
            ACTIONS[action_index(r#"{"id":"co_z1","action":"reconcile-ack"}"#)],
            "reconcile-ack"
        );
        assert_eq!(
            ACTIONS[action_index(r#"{ "action" : "content" }"#)],
            "content"
        );
        assert_eq!(ACTIONS[action_index(r#"{"action":"evil\u0000"}"#)], "other");
        assert_eq!(ACTIONS[action_index("not json")], "other");
        let mut c = ActionCounts::default();
        c.count_frame("{\"action\":\"load\"}\n{\"action\":\"load\"}\n{\"action\":\"done\"}");
        assert_eq!((c.get("load"), c.get("done"), c.get("known")), (2, 1, 0));
    }
}
