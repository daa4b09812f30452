//! Parsing of incoming sync messages (docs/protocol.md §4). Shape errors are
//! typed so the engine can log exactly what was wrong.

use super::known::KnownState;
use crate::verify::{CanonicalTx, Header, VerifyError};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// One session entry of a `content` message.
pub struct SessionEntry {
    pub session_id: Arc<str>,
    pub after: u32,
    pub txs: Vec<Value>,
    pub last_signature: String,
    /// Canonical forms of `txs`, filled in by the turn's batch pass.
    pub canon: Option<Vec<Result<CanonicalTx, VerifyError>>>,
}

pub struct Content {
    pub id: Arc<str>,
    pub header: Option<Value>,
    pub sessions: Vec<SessionEntry>,
    /// Length of the message's JSON text (what holding it costs).
    pub wire_len: usize,
    /// The verdict on `header` for `id`, when the turn's batch pass already
    /// checked it (it depends on nothing else, so it is never stale).
    pub checked_header: Option<Box<Result<Header, VerifyError>>>,
}

pub enum Incoming {
    Load {
        id: Arc<str>,
        state: KnownState,
    },
    Known {
        id: Arc<str>,
        state: KnownState,
        correction: bool,
    },
    Content(Content),
    Done,
    Reconcile {
        batch_id: String,
        values: Vec<(Arc<str>, String)>,
    },
    ReconcileAck,
    /// `{"type":"ping",…}` or anything without an `action`: ignored.
    NotAMessage,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    UnknownAction(String),
    BadId,
    BadField(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownAction(a) => write!(f, "unknown action {a:?}"),
            ParseError::BadId => write!(f, "missing or malformed CoValue id"),
            ParseError::BadField(n) => write!(f, "malformed field `{n}`"),
        }
    }
}

/// `wire_len` is the length of the JSON text `v` was parsed from.
pub fn parse(v: Value, wire_len: usize) -> Result<Incoming, ParseError> {
    let Value::Object(mut obj) = v else {
        return Ok(Incoming::NotAMessage);
    };
    let action = match obj.get("action") {
        Some(Value::String(a)) => a.clone(),
        Some(_) => return Err(ParseError::BadField("action")),
        None => return Ok(Incoming::NotAMessage),
    };
    match action.as_str() {
        "load" => Ok(Incoming::Load {
            id: co_id(&obj)?,
            state: known_state(&obj)?,
        }),
        "known" => Ok(Incoming::Known {
            id: co_id(&obj)?,
            state: known_state(&obj)?,
            correction: obj.get("isCorrection").and_then(Value::as_bool) == Some(true),
        }),
        "content" => {
            let id = co_id(&obj)?;
            let header = obj.remove("header").filter(|h| !h.is_null());
            let sessions = match obj.remove("new") {
                Some(Value::Object(new)) => session_entries(new)?,
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Err(ParseError::BadField("new")),
            };
            Ok(Incoming::Content(Content {
                id,
                header,
                sessions,
                wire_len,
                checked_header: None,
            }))
        }
        "done" => Ok(Incoming::Done),
        "reconcile" => {
            let batch_id = obj
                .get("id")
                .and_then(Value::as_str)
                .ok_or(ParseError::BadField("id"))?
                .to_string();
            let values = match obj.get("values") {
                Some(Value::Array(vals)) => vals
                    .iter()
                    .map(|pair| match pair.as_array().map(Vec::as_slice) {
                        Some([Value::String(id), Value::String(h)]) if id.starts_with("co_z") => {
                            Ok((Arc::from(id.as_str()), h.clone()))
                        }
                        _ => Err(ParseError::BadField("values")),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(ParseError::BadField("values")),
            };
            Ok(Incoming::Reconcile { batch_id, values })
        }
        "reconcile-ack" => Ok(Incoming::ReconcileAck),
        other => Err(ParseError::UnknownAction(other.to_string())),
    }
}

fn co_id(obj: &Map<String, Value>) -> Result<Arc<str>, ParseError> {
    match obj.get("id") {
        Some(Value::String(id)) if id.starts_with("co_z") && id.len() > 4 => {
            Ok(Arc::from(id.as_str()))
        }
        _ => Err(ParseError::BadId),
    }
}

fn known_state(obj: &Map<String, Value>) -> Result<KnownState, ParseError> {
    let header = match obj.get("header") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ParseError::BadField("header")),
    };
    let mut state = KnownState {
        header,
        ..KnownState::default()
    };
    match obj.get("sessions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(sessions)) => {
            for (s, n) in sessions {
                let n = n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(ParseError::BadField("sessions"))?;
                state.sessions.insert(Arc::from(s.as_str()), n);
            }
        }
        Some(_) => return Err(ParseError::BadField("sessions")),
    }
    Ok(state)
}

fn session_entries(new: Map<String, Value>) -> Result<Vec<SessionEntry>, ParseError> {
    let mut out = Vec::with_capacity(new.len());
    for (sid, entry) in new {
        let Value::Object(mut e) = entry else {
            return Err(ParseError::BadField("new"));
        };
        let after = e
            .get("after")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(ParseError::BadField("after"))?;
        let txs = match e.remove("newTransactions") {
            Some(Value::Array(txs)) => txs,
            _ => return Err(ParseError::BadField("newTransactions")),
        };
        let last_signature = match e.remove("lastSignature") {
            Some(Value::String(s)) => s,
            _ => return Err(ParseError::BadField("lastSignature")),
        };
        out.push(SessionEntry {
            session_id: Arc::from(sid.as_str()),
            after,
            txs,
            last_signature,
            canon: None,
        });
    }
    Ok(out)
}
