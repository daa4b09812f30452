//! Builders for the messages the server sends, written straight to JSON text
//! (transactions and headers are already JSON and are spliced in verbatim).

use super::known::KnownState;
use std::fmt::Write as _;

pub fn push_str(out: &mut String, s: &str) {
    // Serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn push_sessions<'a>(out: &mut String, sessions: impl Iterator<Item = (&'a str, u32)>) {
    out.push('{');
    for (i, (s, n)) in sessions.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, s);
        let _ = write!(out, ":{n}");
    }
    out.push('}');
}

fn known_like(action: &str, id: &str, state: &KnownState, correction: bool) -> String {
    let sessions = state.sessions.iter().map(|(s, n)| (&**s, *n));
    known_like_iter(action, id, state.header, sessions, correction)
}

/// A `known` message from any list of (session, count).
pub fn known_iter<'a>(
    id: &str,
    header: bool,
    sessions: impl Iterator<Item = (&'a str, u32)>,
    correction: bool,
) -> String {
    known_like_iter("known", id, header, sessions, correction)
}

fn known_like_iter<'a>(
    action: &str,
    id: &str,
    header: bool,
    sessions: impl Iterator<Item = (&'a str, u32)>,
    correction: bool,
) -> String {
    let mut out = String::with_capacity(256);
    let _ = write!(out, "{{\"action\":\"{action}\",");
    if correction {
        out.push_str("\"isCorrection\":true,");
    }
    out.push_str("\"id\":");
    push_str(&mut out, id);
    let _ = write!(out, ",\"header\":{header},\"sessions\":");
    push_sessions(&mut out, sessions);
    out.push('}');
    out
}

pub fn load(id: &str, state: &KnownState) -> String {
    known_like("load", id, state, false)
}

pub fn reconcile_ack(batch_id: &str) -> String {
    let mut out = String::from("{\"action\":\"reconcile-ack\",\"id\":");
    push_str(&mut out, batch_id);
    out.push('}');
    out
}

/// One session's chunk inside a `content` message.
pub struct ChunkOut<'a> {
    pub session: &'a str,
    pub after: u32,
    pub txs: &'a [std::sync::Arc<str>],
    pub last_signature: &'a str,
}

pub fn content(
    id: &str,
    header: Option<&str>,
    priority: u8,
    chunks: &[ChunkOut<'_>],
    expect_until: Option<&[(&str, u32)]>,
) -> String {
    let size: usize = chunks
        .iter()
        .map(|c| c.txs.iter().map(|t| t.len() + 1).sum::<usize>() + 200)
        .sum();
    let mut out = String::with_capacity(size + 128 + header.map_or(0, str::len));
    out.push_str("{\"action\":\"content\",\"id\":");
    push_str(&mut out, id);
    if let Some(h) = header {
        out.push_str(",\"header\":");
        out.push_str(h);
    }
    let _ = write!(out, ",\"priority\":{priority},\"new\":{{");
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, c.session);
        let _ = write!(out, ":{{\"after\":{},\"newTransactions\":[", c.after);
        for (j, tx) in c.txs.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(tx);
        }
        out.push_str("],\"lastSignature\":");
        push_str(&mut out, c.last_signature);
        out.push('}');
    }
    out.push('}');
    if let Some(until) = expect_until {
        out.push_str(",\"expectContentUntil\":");
        push_sessions(&mut out, until.iter().copied());
    }
    out.push('}');
    out
}
