//! Storage behind one narrow interface: the engine reads whole CoValues on
//! demand and hands over each loop turn's accepted writes; the reactor calls
//! `commit` once per turn (group commit) before any ack leaves the server.

pub mod memory;
mod schema;
pub mod sqlite;
pub mod timed;

pub use schema::SCHEMA_VERSION;

use std::fmt;
use std::sync::Arc;

/// One session of a stored CoValue, as it is persisted.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    pub session_id: Arc<str>,
    /// Canonical JSON text of each transaction, in index order.
    pub txs: Vec<Arc<str>>,
    /// Signature over all of `txs`.
    pub last_signature: Arc<str>,
    /// Intermediate signatures: (0-based inclusive index, signature), ascending.
    /// Only indices below `txs.len()` are meaningful.
    pub signature_after: Vec<(u32, Arc<str>)>,
    /// cojson's size counter since the last `signature_after` row.
    pub bytes_since_last_signature: u64,
    /// The running-hash digest maia-sync verified for exactly this prefix
    /// (same count, same last signature), if it did: a load whose re-hash
    /// gives the same digest needs no Ed25519 check.
    pub vouched: Option<[u8; 32]>,
}

/// A whole stored CoValue.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCoValue {
    pub id: Arc<str>,
    /// JSON text of the header.
    pub header: Arc<str>,
    pub sessions: Vec<StoredSession>,
}

/// Verified transactions appended to one session.
#[derive(Debug, Clone)]
pub struct SessionAppend {
    pub co_id: Arc<str>,
    pub session_id: Arc<str>,
    /// Index of the first transaction in `txs` (= stored count before).
    pub first_idx: u32,
    pub txs: Vec<Arc<str>>,
    pub last_signature: Arc<str>,
    /// When set, a `signatureAfter` row is written at the last new index.
    pub checkpoint: bool,
    /// The session's size counter after this append (cojson's rule).
    pub bytes_since_last_signature: u64,
    /// Running-hash digest after this append (it carries `last_signature`).
    pub digest: [u8; 32],
}

/// A write handed to storage; a turn's writes commit together.
#[derive(Debug, Clone)]
pub enum Write {
    Header {
        co_id: Arc<str>,
        header: Arc<str>,
    },
    Append(SessionAppend),
    /// A stored session (written by another program) passed verification
    /// when loaded: remember it so the next load can skip the check.
    Verified {
        co_id: Arc<str>,
        session_id: Arc<str>,
        count: u32,
        last_signature: Arc<str>,
        digest: [u8; 32],
    },
}

#[derive(Debug)]
pub enum StoreError {
    /// The backing store failed (I/O, SQLite error…); the message says what.
    Backend(String),
    /// Stored data that cannot be parsed.
    Corrupt(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Backend(m) => write!(f, "storage error: {m}"),
            StoreError::Corrupt(m) => write!(f, "corrupt stored data: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub trait Store {
    /// Reads a whole CoValue, or `None` if it is not stored.
    fn load(&mut self, id: &str) -> Result<Option<StoredCoValue>, StoreError>;
    /// Reads only a CoValue's header text, or `None` if it is not stored.
    fn load_header(&mut self, id: &str) -> Result<Option<Arc<str>>, StoreError>;
    /// Queues a write into the current turn's transaction.
    fn write(&mut self, w: Write) -> Result<(), StoreError>;
    /// Makes every write since the last commit durable, all or nothing.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Discards the writes since the last commit (after a failed commit).
    fn rollback(&mut self);
    /// Commits and releases the store for a clean exit (a durable store
    /// also tidies its files). The store must not be used afterwards.
    fn close(&mut self) -> Result<(), StoreError> {
        self.commit()
    }
}
