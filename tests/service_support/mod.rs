//! Helpers for the `service_*` tests: WebSocket clients that write real,
//! signed CoValue content (an agent-authored `unsafeAllowAll` CoMap, as in
//! `src/sync/testkit.rs`), read acknowledgements, and read values back.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use maia_sync::verify::Header;
use serde_json::{Value, json};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::common;

pub type Ws = WebSocket<TcpStream>;

/// A WebSocket client on `/sync`.
pub fn ws_connect(addr: SocketAddr) -> Ws {
    common::ws_connect(addr, "/sync")
}

/// Sends one or more sync messages as one frame.
pub fn send(ws: &mut Ws, msgs: &[Value]) {
    let text: Vec<String> = msgs.iter().map(Value::to_string).collect();
    ws.send(Message::text(text.join("\n"))).expect("send");
}

/// What the server sent next: sync messages, or the end of the connection.
pub enum Next {
    Messages(Vec<Value>),
    Closed(Option<CloseCode>),
}

/// Reads the next frame (skipping pings and control frames).
pub fn next(ws: &mut Ws) -> Next {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let msgs: Vec<Value> = t
                    .split('\n')
                    .map(|l| serde_json::from_str(l).expect("server sends JSON"))
                    .filter(|v: &Value| v.get("action").is_some())
                    .collect();
                if !msgs.is_empty() {
                    return Next::Messages(msgs);
                }
            }
            Ok(Message::Close(c)) => return Next::Closed(c.map(|c| c.code)),
            Ok(_) => {}
            Err(_) => return Next::Closed(None),
        }
    }
}

/// A signing agent with a fixed key (from `seed`).
pub struct Agent {
    key: SigningKey,
    pub id: String,
}

impl Agent {
    pub fn new(seed: u8) -> Agent {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let signer = bs58::encode(key.verifying_key().as_bytes()).into_string();
        let sealer = bs58::encode([seed.wrapping_add(1); 32]).into_string();
        Agent {
            key,
            id: format!("sealer_z{sealer}/signer_z{signer}"),
        }
    }
}

/// One CoMap written by one session: keeps the running hash chain, signs
/// each batch, and builds its `content` messages.
pub struct MapWriter {
    agent: Agent,
    pub id: String,
    header: Value,
    pub session: String,
    hasher: blake3::Hasher,
    /// Transactions signed so far (canonical JSON texts, in order).
    pub txs: Vec<String>,
}

impl MapWriter {
    pub fn new(seed: u8, uniqueness: &str) -> MapWriter {
        let agent = Agent::new(seed);
        let header = json!({"type":"comap","ruleset":{"type":"unsafeAllowAll"},"meta":null,"uniqueness":uniqueness});
        let id = Header::id_of(&header).expect("header id");
        // Session IDs end in base58, as cojson makes them.
        let session = format!(
            "{}_session_z{}",
            agent.id,
            bs58::encode(uniqueness.as_bytes()).into_string()
        );
        MapWriter {
            agent,
            id,
            header,
            session,
            hasher: blake3::Hasher::new(),
            txs: Vec::new(),
        }
    }

    /// The `content` message carrying `n` new `set` transactions (with the
    /// header on the first one).
    pub fn next_batch(&mut self, n: usize) -> Value {
        let after = self.txs.len();
        let mut wire = Vec::new();
        for _ in 0..n {
            let i = self.txs.len();
            let changes = json!([{"op":"set","key":format!("k{i}"),"value":i}]).to_string();
            let made_at = 1_700_000_000_000u64 + i as u64;
            let canon = format!(
                "{{\"changes\":{},\"madeAt\":{made_at},\"privacy\":\"trusting\"}}",
                serde_json::to_string(&changes).unwrap()
            );
            self.hasher.update(canon.as_bytes());
            wire.push(json!({"changes": changes, "madeAt": made_at, "privacy": "trusting"}));
            self.txs.push(canon);
        }
        let hash = format!(
            "hash_z{}",
            bs58::encode(self.hasher.finalize().as_bytes()).into_string()
        );
        let sig = self.agent.key.sign(format!("\"{hash}\"").as_bytes());
        let sig = format!("signature_z{}", bs58::encode(sig.to_bytes()).into_string());
        let mut m = json!({
            "action": "content", "id": self.id, "priority": 3,
            "new": { &self.session: {"after": after, "newTransactions": wire, "lastSignature": sig} }
        });
        if after == 0 {
            m["header"] = self.header.clone();
        }
        m
    }

    /// The count this server acknowledged for our session, if `msg` is an
    /// ack (`known`) of this map.
    pub fn acked_in(&self, msg: &Value) -> Option<u64> {
        (msg["action"] == "known" && msg["id"] == self.id.as_str())
            .then(|| msg["sessions"][&self.session].as_u64())
            .flatten()
    }
}

/// Loads `id` from a server as a fresh client would and returns the
/// transactions of `session` it serves (in order).
pub fn load_session(addr: SocketAddr, id: &str, session: &str) -> Vec<Value> {
    let mut ws = ws_connect(addr);
    send(
        &mut ws,
        &[json!({"action":"load","id":id,"header":false,"sessions":{}})],
    );
    let mut txs: Vec<Value> = Vec::new();
    // A large value comes in pieces; the first names the final counts.
    let mut until: Option<usize> = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Next::Messages(msgs) = next(&mut ws) else {
            panic!("connection closed while loading {id}");
        };
        for m in msgs.iter().filter(|m| m["id"] == id) {
            match m["action"].as_str() {
                Some("content") => {
                    if let Some(n) = m["expectContentUntil"].get(session) {
                        until = n.as_u64().map(|n| n as usize);
                    }
                    if let Some(s) = m["new"].get(session) {
                        let after = s["after"].as_u64().unwrap() as usize;
                        assert_eq!(after, txs.len(), "pieces arrive in order");
                        txs.extend(s["newTransactions"].as_array().unwrap().iter().cloned());
                    }
                    if until.is_none_or(|n| txs.len() >= n) {
                        return txs;
                    }
                }
                // Nothing (more) to send: an empty value or unknown id.
                Some("known") => return txs,
                _ => {}
            }
        }
    }
    panic!("no complete answer to the load of {id}");
}

/// The canonical JSON text of a served transaction (key order fixed), to
/// compare with what `MapWriter` signed.
pub fn canonical(tx: &Value) -> String {
    format!(
        "{{\"changes\":{},\"madeAt\":{},\"privacy\":\"trusting\"}}",
        serde_json::to_string(tx["changes"].as_str().unwrap()).unwrap(),
        tx["madeAt"]
    )
}
