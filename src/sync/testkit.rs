//! Test helpers, shared by the unit tests and (through the `testkit`
//! feature) the integration tests: an engine with a memory store and a
//! driver that takes all its output, signed sessions made with a fixed key
//! (for behaviour the recorded vectors do not cover), the test data.

use super::Engine;
use crate::storage::memory::MemoryStore;
use crate::sync::{CloseWhy, PeerId};
use crate::verify::{Header, encode_base58};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use std::path::PathBuf;

/// `tests/data/vectors`: messages and values made by cojson 0.20.19.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors")
}

pub fn vector(name: &str) -> Value {
    let p = vectors_dir().join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn engine() -> Engine {
    Engine::new(Box::new(MemoryStore::new()))
}

/// Several messages joined into one frame, as cojson batches them.
pub fn frame(msgs: &[Value]) -> String {
    msgs.iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Feeds one message and returns the replies released after the commit,
/// grouped by peer, parsed.
pub fn send(e: &mut Engine, peer: PeerId, msg: &Value) -> Vec<(PeerId, Value)> {
    e.receive_frame(peer, &msg.to_string());
    drain(e)
}

/// Ends turns until every received message is processed, then takes all
/// output of every peer (as a reactor with sockets that always drain
/// would), in order per peer.
pub fn drain(e: &mut Engine) -> Vec<(PeerId, Value)> {
    drain_text(e)
        .into_iter()
        .map(|(peer, text)| {
            assert!(!text.contains('\n'), "outgoing message contains a newline");
            (peer, serde_json::from_str(&text).expect("outgoing is JSON"))
        })
        .collect()
}

/// `drain`, with the messages as sent.
pub fn drain_text(e: &mut Engine) -> Vec<(PeerId, String)> {
    drain_closes(e).0
}

/// Connections the engine asked to close, and why.
pub type Closes = Vec<(PeerId, CloseWhy)>;

/// `drain_text`, and the connections the engine asked to close.
pub fn drain_closes(e: &mut Engine) -> (Vec<(PeerId, String)>, Closes) {
    let mut ready: Vec<PeerId> = Vec::new();
    let mut closes = Vec::new();
    loop {
        let outcome = e.end_turn();
        closes.extend(outcome.closes);
        ready.extend(e.take_output_ready());
        if !outcome.more {
            break;
        }
    }
    ready.sort_unstable();
    ready.dedup();
    let mut out = Vec::new();
    for peer in ready {
        let mut texts = Vec::new();
        // A send may pause at the turn's budget of dependency visits.
        while e.pull(peer, usize::MAX, &mut texts) {
            e.end_turn();
        }
        out.extend(texts.into_iter().map(|t| (peer, t)));
    }
    (out, closes)
}

pub fn only(peer: PeerId, replies: &[(PeerId, Value)]) -> Vec<Value> {
    replies
        .iter()
        .filter(|(p, _)| *p == peer)
        .map(|(_, v)| v.clone())
        .collect()
}

/// An agent that signs sessions.
pub struct Agent {
    key: SigningKey,
    pub agent_id: String,
}

impl Agent {
    pub fn new(seed: u8) -> Agent {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let signer = encode_base58(key.verifying_key().as_bytes());
        let sealer = encode_base58(&[seed.wrapping_add(1); 32]);
        Agent {
            key,
            agent_id: format!("sealer_z{sealer}/signer_z{signer}"),
        }
    }

    /// A signature over a running-hash digest, as cojson signs it.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> String {
        let hash = format!("\"hash_z{}\"", encode_base58(digest));
        let sig = self.key.sign(hash.as_bytes());
        format!("signature_z{}", encode_base58(&sig.to_bytes()))
    }

    pub fn session(&self, name: &str) -> String {
        // Session IDs end in base58, as cojson makes them.
        format!(
            "{}_session_z{}",
            self.agent_id,
            encode_base58(name.as_bytes())
        )
    }
}

/// A session being written: keeps the running hash to sign each batch.
pub struct Writer {
    hasher: blake3::Hasher,
    pub count: u32,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            hasher: blake3::Hasher::new(),
            count: 0,
        }
    }

    /// Signs a batch of trusting transactions with the given `changes`
    /// texts; returns (after, txs, signature).
    pub fn batch(&mut self, agent: &Agent, changes: &[String]) -> (u32, Vec<Value>, String) {
        let after = self.count;
        let mut txs = Vec::new();
        for c in changes {
            let tx = json!({"changes": c, "madeAt": 1_700_000_000_000u64 + u64::from(self.count), "privacy": "trusting"});
            let canon = format!(
                "{{\"changes\":{},\"madeAt\":{},\"privacy\":\"trusting\"}}",
                serde_json::to_string(c).unwrap(),
                tx["madeAt"]
            );
            self.hasher.update(canon.as_bytes());
            self.count += 1;
            txs.push(tx);
        }
        let hash = format!("hash_z{}", encode_base58(self.hasher.finalize().as_bytes()));
        let sig = agent.key.sign(format!("\"{hash}\"").as_bytes());
        (
            after,
            txs,
            format!("signature_z{}", encode_base58(&sig.to_bytes())),
        )
    }
}

/// A comap header with the `unsafeAllowAll` ruleset and its ID.
pub fn allow_all_map(uniqueness: &str) -> (Value, String) {
    let header = json!({"type":"comap","ruleset":{"type":"unsafeAllowAll"},"meta":null,"uniqueness":uniqueness});
    let id = Header::id_of(&header).unwrap();
    (header, id)
}

pub fn content(
    id: &str,
    header: Option<&Value>,
    session: &str,
    batch: &(u32, Vec<Value>, String),
) -> Value {
    let mut m = json!({
        "action": "content", "id": id, "priority": 3,
        "new": { session: {"after": batch.0, "newTransactions": batch.1, "lastSignature": batch.2} }
    });
    if let Some(h) = header {
        m["header"] = h.clone();
    }
    m
}

/// A fresh folder under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("maia-unit-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
