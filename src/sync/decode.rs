//! Parsing of incoming sync messages (docs/protocol.md §4), typed and
//! bounded at the edge: no JSON tree is built for a message; every field
//! with a fixed shape (CoValue IDs, session IDs, signatures, hashes) is
//! length-checked before anything decodes it; transactions go straight to
//! their canonical form, so a parsed message holds about as many bytes as
//! its text. Shape errors are typed so the engine can log what was wrong.

use crate::logging::clip;
use crate::verify::{
    CanonicalTx, CheckedHeader, CoId, Header, MAX_HEADER_BYTES, SHORT_HASH_MAX_LEN,
    SIGNATURE_MAX_LEN, VerifyError, canonicalize, is_session_id,
};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Canonical transaction bytes one session entry may carry. cojson cuts
/// what it sends at signature points about every 100 KiB, and a single
/// transaction is at most 1 MiB, so real entries stay near 1.1 MiB.
pub const MAX_ENTRY_TX_BYTES: usize = 4 << 20;
/// Session entries per parsed `content` piece: a message with more is
/// split into several pieces for the same CoValue, so a turn's work can
/// stop between them (each piece is acknowledged on its own).
pub const ENTRIES_PER_PIECE: usize = 64;
/// Longest `reconcile` batch ID accepted (cojson's are 17 characters).
const MAX_BATCH_ID_LEN: usize = 64;
/// CoValues per `reconcile` piece (each may need a storage read).
pub const RECONCILE_PER_PIECE: usize = 128;

/// A known state as a peer sent it (`load`, `known`).
#[derive(Debug, Default, Clone)]
pub struct WireKnown {
    pub header: bool,
    pub sessions: Vec<(Arc<str>, u32)>,
}

/// One session entry of a `content` message.
pub struct SessionEntry {
    /// Valid session IDs only; an invalid one is kept clipped, for the log.
    pub session_id: Arc<str>,
    pub after: u32,
    /// Canonical forms of the transactions, up to the first malformed one.
    pub txs: Vec<CanonicalTx>,
    /// Why the entry cannot be accepted as sent (a malformed transaction,
    /// signature or session ID, or too many bytes), if so.
    pub bad: Option<VerifyError>,
    /// Transactions in the message (what a rejection counts).
    pub sent: u32,
    pub last_signature: Arc<str>,
}

pub struct Content {
    pub id: CoId,
    /// The header, checked against `id` while parsing.
    pub header: Option<Result<CheckedHeader, VerifyError>>,
    pub sessions: Vec<SessionEntry>,
    /// Bytes this piece holds in memory.
    pub cost: usize,
}

impl Content {
    /// Transactions in this piece (what a rejection of it counts).
    pub fn tx_count(&self) -> usize {
        self.sessions.iter().map(|s| s.sent as usize).sum()
    }
}

pub enum Incoming {
    Load {
        id: CoId,
        state: WireKnown,
    },
    Known {
        id: CoId,
        state: WireKnown,
        correction: bool,
    },
    Content(Box<Content>),
    Done,
    /// One piece of a `reconcile` batch (a big batch is split so a turn
    /// can stop between pieces); the batch is acked after its last piece.
    Reconcile {
        batch_id: String,
        values: Vec<(CoId, Box<str>)>,
        last: bool,
    },
    ReconcileAck,
}

impl Incoming {
    /// Approximate bytes held while the message waits for its turn.
    pub fn cost(&self) -> usize {
        const BASE: usize = 64;
        match self {
            Incoming::Load { state, .. } | Incoming::Known { state, .. } => {
                BASE + state
                    .sessions
                    .iter()
                    .map(|(s, _)| s.len() + 40)
                    .sum::<usize>()
            }
            Incoming::Content(c) => c.cost,
            Incoming::Reconcile { values, .. } => BASE + values.len() * 72,
            Incoming::Done | Incoming::ReconcileAck => BASE,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A line is not JSON: cojson drops the whole frame.
    NotJson(String),
    UnknownAction(String),
    BadId,
    BadField(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotJson(e) => write!(f, "invalid JSON: {}", clip(e)),
            ParseError::UnknownAction(a) => write!(f, "unknown action \"{}\"", clip(a)),
            ParseError::BadId => write!(f, "missing or malformed CoValue id"),
            ParseError::BadField(n) => write!(f, "malformed field `{n}`"),
        }
    }
}

/// What parsing one frame gave: the messages, and the lines skipped.
#[derive(Default)]
pub struct Parsed {
    pub messages: Vec<Incoming>,
    pub skipped: Vec<ParseError>,
}

/// Parses one frame (JSON texts joined by `\n`). A line that is not JSON
/// drops the whole frame, as cojson does (`Err`); a well-formed line that
/// is not a valid message is skipped and reported.
pub fn parse_frame(frame: &str) -> Result<Parsed, ParseError> {
    let mut parsed = Parsed::default();
    for line in frame.split('\n') {
        match parse_line(line) {
            Ok(msgs) => parsed.messages.extend(msgs),
            Err(e @ ParseError::NotJson(_)) => return Err(e),
            Err(e) => parsed.skipped.push(e),
        }
    }
    Ok(parsed)
}

/// Every field a message can have, kept raw until its action says how to
/// read it (so a field of the wrong type is one message's error, and
/// fields a message does not use cost nothing).
#[derive(Deserialize)]
struct WireMsg<'a> {
    #[serde(borrow, default)]
    action: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    header: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sessions: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "isCorrection")]
    is_correction: Option<&'a RawValue>,
    #[serde(borrow, default)]
    new: Option<&'a RawValue>,
    #[serde(borrow, default)]
    values: Option<&'a RawValue>,
}

/// One line: zero messages (a ping, anything without an action), one, or
/// several `content` pieces.
fn parse_line(line: &str) -> Result<Vec<Incoming>, ParseError> {
    let msg: WireMsg<'_> = match serde_json::from_str(line) {
        Ok(m) => m,
        Err(e) if e.is_data() => {
            // Valid JSON of another shape (an array, a number, a repeated
            // field) is not a message; only text that is not JSON at all
            // drops the frame.
            return match serde_json::from_str::<IgnoredAny>(line) {
                Ok(_) => Ok(Vec::new()),
                Err(e) => Err(ParseError::NotJson(e.to_string())),
            };
        }
        Err(e) => return Err(ParseError::NotJson(e.to_string())),
    };
    let Some(action) = msg.action else {
        return Ok(Vec::new()); // `{"type":"ping",…}` and the like
    };
    let action = string(action).ok_or(ParseError::BadField("action"))?;
    let one = |m| Ok(vec![m]);
    match &*action {
        "load" => one(Incoming::Load {
            id: co_id(msg.id)?,
            state: known_state(&msg)?,
        }),
        "known" => one(Incoming::Known {
            id: co_id(msg.id)?,
            state: known_state(&msg)?,
            correction: msg.is_correction.is_some_and(|c| c.get() == "true"),
        }),
        "content" => content(&msg),
        "done" => one(Incoming::Done),
        "reconcile" => reconcile(&msg),
        "reconcile-ack" => one(Incoming::ReconcileAck),
        other => Err(ParseError::UnknownAction(other.to_string())),
    }
}

fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Str<'_>>(raw.get()).ok().map(|s| s.0)
}

fn co_id(raw: Option<&RawValue>) -> Result<CoId, ParseError> {
    raw.and_then(string)
        .and_then(|s| CoId::parse(&s))
        .ok_or(ParseError::BadId)
}

fn known_state(msg: &WireMsg<'_>) -> Result<WireKnown, ParseError> {
    let header = match msg.header.map(RawValue::get) {
        None => false,
        Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(ParseError::BadField("header")),
    };
    let mut sessions = Vec::new();
    if let Some(raw) = msg.sessions {
        let ok = for_each_entry(raw, |session: Str<'_>, n: u64| {
            let n = u32::try_from(n).map_err(|_| "count")?;
            if !is_session_id(&session.0) {
                return Err("session id");
            }
            sessions.push((Arc::from(&*session.0), n));
            Ok(())
        });
        ok.map_err(|_| ParseError::BadField("sessions"))?;
    }
    Ok(WireKnown { header, sessions })
}

/// One session entry as sent; transactions stay raw until canonicalised.
#[derive(Deserialize)]
struct WireEntry<'a> {
    #[serde(borrow, default)]
    after: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "newTransactions")]
    new_transactions: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default, rename = "lastSignature")]
    last_signature: Option<&'a RawValue>,
}

fn content(msg: &WireMsg<'_>) -> Result<Vec<Incoming>, ParseError> {
    let id = co_id(msg.id)?;
    let header = msg
        .header
        .map(|raw| Header::check(raw.get(), &id, MAX_HEADER_BYTES));
    let mut entries = Vec::new();
    if let Some(raw) = msg.new {
        let mut failed: Option<EntryError> = None;
        let read = for_each_entry(raw, |session: Str<'_>, e: WireEntry<'_>| {
            match session_entry(&session.0, e) {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    let field = e.field();
                    failed = Some(e);
                    return Err(field);
                }
            }
            Ok(())
        });
        if let Some(e) = failed {
            return Err(ParseError::BadField(e.field()));
        }
        read.map_err(|_| ParseError::BadField("new"))?;
    }
    let header_cost = match &header {
        Some(Ok(h)) => h.json.len(),
        _ => 0,
    };
    let mut pieces = Vec::new();
    let mut header = header;
    let mut rest = entries.into_iter().peekable();
    loop {
        let sessions: Vec<SessionEntry> = rest.by_ref().take(ENTRIES_PER_PIECE).collect();
        let cost = 128
            + header_cost
            + sessions
                .iter()
                .map(|s| {
                    200 + s.session_id.len()
                        + s.txs.iter().map(|t| t.json.len() + 48).sum::<usize>()
                })
                .sum::<usize>();
        pieces.push(Incoming::Content(Box::new(Content {
            id,
            header: header.take(),
            sessions,
            cost,
        })));
        if rest.peek().is_none() {
            return Ok(pieces);
        }
    }
}

/// Why a session entry could not even be read (the whole message is
/// skipped) as opposed to read but refused (`SessionEntry::bad`).
#[derive(Debug)]
enum EntryError {
    After,
    Transactions,
}

impl EntryError {
    fn field(&self) -> &'static str {
        match self {
            EntryError::After => "after",
            EntryError::Transactions => "newTransactions",
        }
    }
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}

fn session_entry(session: &str, e: WireEntry<'_>) -> Result<SessionEntry, EntryError> {
    let after = e
        .after
        .and_then(|a| serde_json::from_str::<u32>(a.get()).ok())
        .ok_or(EntryError::After)?;
    let raw_txs = e.new_transactions.ok_or(EntryError::Transactions)?;
    let sent = u32::try_from(raw_txs.len()).unwrap_or(u32::MAX);
    let mut bad = None;
    let last_signature: Arc<str> = match e.last_signature.and_then(string) {
        Some(s) if s.len() <= SIGNATURE_MAX_LEN => Arc::from(&*s),
        Some(s) => {
            bad = Some(VerifyError::BadSignature(format!(
                "{} characters, longer than any signature",
                s.len()
            )));
            Arc::from("")
        }
        None => {
            bad = Some(VerifyError::BadSignature("missing lastSignature".into()));
            Arc::from("")
        }
    };
    let session_id: Arc<str> = if is_session_id(session) {
        Arc::from(session)
    } else {
        let clipped = clip(session).to_string();
        bad.get_or_insert(VerifyError::UnknownAuthor(clipped.clone()));
        Arc::from(clipped)
    };
    let mut txs = Vec::with_capacity(raw_txs.len().min(4096));
    let mut bytes = 0usize;
    if bad.is_none() {
        for raw in raw_txs {
            match canonicalize(raw.get()) {
                Ok(t) => {
                    bytes += t.json.len();
                    if bytes > MAX_ENTRY_TX_BYTES {
                        bad = Some(VerifyError::BadTransaction(format!(
                            "more than {MAX_ENTRY_TX_BYTES} bytes of transactions under one signature"
                        )));
                        txs = Vec::new();
                        break;
                    }
                    txs.push(t);
                }
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
    }
    Ok(SessionEntry {
        session_id,
        after,
        txs,
        bad,
        sent,
        last_signature,
    })
}

fn reconcile(msg: &WireMsg<'_>) -> Result<Vec<Incoming>, ParseError> {
    let batch_id = msg
        .id
        .and_then(string)
        .filter(|s| s.len() <= MAX_BATCH_ID_LEN)
        .ok_or(ParseError::BadField("id"))?
        .into_owned();
    let raw = msg.values.ok_or(ParseError::BadField("values"))?;
    let pairs: Vec<(Str<'_>, Str<'_>)> =
        serde_json::from_str(raw.get()).map_err(|_| ParseError::BadField("values"))?;
    let values: Vec<(CoId, Box<str>)> = pairs
        .into_iter()
        .map(|(id, hash)| {
            let id = CoId::parse(&id.0).ok_or(ParseError::BadField("values"))?;
            if hash.0.len() > SHORT_HASH_MAX_LEN {
                return Err(ParseError::BadField("values"));
            }
            Ok((id, Box::from(&*hash.0)))
        })
        .collect::<Result<_, _>>()?;
    let mut pieces: Vec<Incoming> = values
        .chunks(RECONCILE_PER_PIECE)
        .map(|chunk| Incoming::Reconcile {
            batch_id: batch_id.clone(),
            values: chunk.to_vec(),
            last: false,
        })
        .collect();
    if pieces.is_empty() {
        pieces.push(Incoming::Reconcile {
            batch_id,
            values: Vec::new(),
            last: true,
        });
    } else if let Some(Incoming::Reconcile { last, .. }) = pieces.last_mut() {
        *last = true;
    }
    Ok(pieces)
}

/// A string that borrows from the input when it has no escapes (serde's
/// own `Cow<str>` always copies outside `#[serde(borrow)]` fields).
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Calls `f` for every entry of a JSON object, in order, without building
/// a map (a peer's object can have millions of entries).
fn for_each_entry<'a, K, V, E>(
    raw: &'a RawValue,
    f: impl FnMut(K, V) -> Result<(), E>,
) -> Result<(), String>
where
    K: Deserialize<'a>,
    V: Deserialize<'a>,
    E: fmt::Display,
{
    struct Entries<F, K, V>(F, std::marker::PhantomData<(K, V)>);
    impl<'de, K, V, E, F> Visitor<'de> for Entries<F, K, V>
    where
        K: Deserialize<'de>,
        V: Deserialize<'de>,
        E: fmt::Display,
        F: FnMut(K, V) -> Result<(), E>,
    {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
            while let Some(k) = map.next_key::<K>()? {
                let v = map.next_value::<V>()?;
                (self.0)(k, v).map_err(de::Error::custom)?;
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_map(Entries(f, std::marker::PhantomData))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Vec<Incoming>, ParseError> {
        parse_line(line)
    }

    #[test]
    fn load_and_known() {
        let id = "co_zYEF8Q9pn2QD5TjTvgRDa4VktLN";
        let s = "co_zYEF8Q9pn2QD5TjTvgRDa4VktLN_session_zd9ek3";
        let m = one(&format!(
            r#"{{"action":"known","isCorrection":true,"id":"{id}","header":true,"sessions":{{"{s}":3}}}}"#
        ))
        .unwrap();
        let [
            Incoming::Known {
                id: got,
                state,
                correction,
            },
        ] = &m[..]
        else {
            panic!("not a known");
        };
        assert_eq!(got.as_str(), id);
        assert!(state.header && *correction);
        assert_eq!(state.sessions, vec![(Arc::from(s), 3)]);
        assert!(matches!(
            &one(&format!(r#"{{"action":"load","id":"{id}"}}"#)).unwrap()[..],
            [Incoming::Load { state, .. }] if !state.header && state.sessions.is_empty()
        ));
        for (bad, err) in [
            (r#"{"action":"load","id":"co_zl"}"#, ParseError::BadId),
            (r#"{"action":"load"}"#, ParseError::BadId),
            (
                r#"{"action":"load","id":"co_zA","header":1}"#,
                ParseError::BadField("header"),
            ),
            (
                r#"{"action":"load","id":"co_zA","sessions":{"junk":1}}"#,
                ParseError::BadField("sessions"),
            ),
            (
                r#"{"action":"load","id":"co_zA","sessions":{"co_zA_session_zB":-1}}"#,
                ParseError::BadField("sessions"),
            ),
            (r#"{"action":7}"#, ParseError::BadField("action")),
            (
                r#"{"action":"evil\n[ERROR] x"}"#,
                ParseError::UnknownAction("evil\n[ERROR] x".into()),
            ),
        ] {
            assert_eq!(one(bad).err(), Some(err), "{bad}");
        }
        let shown = ParseError::UnknownAction("evil\n[ERROR] x".into()).to_string();
        assert!(!shown.contains('\n'), "{shown}");
    }

    #[test]
    fn frames_pings_and_invalid_json() {
        let p = parse_frame(
            "{\"type\":\"ping\",\"time\":1}\n[1,2]\n{\"action\":\"done\",\"id\":\"co_zA\"}",
        )
        .unwrap();
        assert_eq!(p.messages.len(), 1);
        assert!(matches!(p.messages[0], Incoming::Done));
        assert!(matches!(
            parse_frame("{\"action\":\"done\"}\n{not json"),
            Err(ParseError::NotJson(_))
        ));
        // A repeated field is valid JSON but not a message.
        let p = parse_frame("{\"action\":\"done\",\"action\":\"load\"}").unwrap();
        assert!(p.messages.is_empty());
        // Deep nesting is refused by the parser's depth limit, not a crash.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_frame(&deep).is_err() || parse_frame(&deep).unwrap().messages.is_empty());
    }

    #[test]
    fn content_entries_are_canonical_and_bounded() {
        let s = "co_zYEF8Q9pn2QD5TjTvgRDa4VktLN_session_zd9ek3";
        let line = format!(
            r#"{{"action":"content","id":"co_zA","priority":3,"new":{{"{s}":{{"after":0,"newTransactions":[{{"privacy":"trusting","madeAt":1,"changes":"[]","junk":[1,2,3]}}],"lastSignature":"signature_zabc"}},"bad_session":{{"after":0,"newTransactions":[],"lastSignature":"signature_z1"}}}}}}"#
        );
        let m = one(&line).unwrap();
        let [Incoming::Content(c)] = &m[..] else {
            panic!("not content");
        };
        assert!(c.header.is_none());
        assert_eq!(c.sessions.len(), 2);
        assert_eq!(
            &*c.sessions[0].txs[0].json,
            r#"{"changes":"[]","madeAt":1,"privacy":"trusting"}"#
        );
        assert!(c.sessions[0].bad.is_none());
        assert!(c.sessions[1].bad.is_some());
        // An over-long signature is refused without decoding it.
        let sig = "signature_z".to_string() + &"1".repeat(800_000);
        let line = format!(
            r#"{{"action":"content","id":"co_zA","new":{{"{s}":{{"after":0,"newTransactions":[],"lastSignature":"{sig}"}}}}}}"#
        );
        let m = one(&line).unwrap();
        let [Incoming::Content(c)] = &m[..] else {
            panic!()
        };
        assert!(matches!(
            c.sessions[0].bad,
            Some(VerifyError::BadSignature(_))
        ));
        assert!(c.cost < 10_000, "{}", c.cost);
        assert!(matches!(
            one(r#"{"action":"content","id":"co_zA","new":{"x":{"after":-1}}}"#),
            Err(ParseError::BadField("after"))
        ));
    }

    #[test]
    fn many_entries_are_split_into_pieces() {
        let mut new = Vec::new();
        for i in 0..(ENTRIES_PER_PIECE * 2 + 1) {
            new.push(format!(
                r#""co_zA_session_z{}":{{"after":0,"newTransactions":[],"lastSignature":"signature_z1"}}"#,
                bs58::encode((i as u32).to_be_bytes()).into_string()
            ));
        }
        let line = format!(
            r#"{{"action":"content","id":"co_zA","header":{{"type":"comap"}},"new":{{{}}}}}"#,
            new.join(",")
        );
        let m = one(&line).unwrap();
        assert_eq!(m.len(), 3);
        let headers: Vec<bool> = m
            .iter()
            .map(|p| matches!(p, Incoming::Content(c) if c.header.is_some()))
            .collect();
        assert_eq!(headers, [true, false, false]);
    }

    #[test]
    fn reconcile_values() {
        let m =
            one(r#"{"action":"reconcile","id":"b1","values":[["co_zA","shortHash_zX"]]}"#).unwrap();
        assert!(matches!(&m[..], [Incoming::Reconcile { values, .. }] if values.len() == 1));
        assert!(one(r#"{"action":"reconcile","id":"b1","values":[["x","y"]]}"#).is_err());
        let long = format!(
            r#"{{"action":"reconcile","id":"b1","values":[["co_zA","{}"]]}}"#,
            "h".repeat(100)
        );
        assert!(one(&long).is_err());
    }
}
