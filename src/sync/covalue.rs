//! One CoValue held in memory: its header, its verified sessions, where each
//! session may be cut into separately verifiable chunks, and the content a
//! peer is missing (docs/protocol.md §3.3, §4.6, §5.1).

use super::encode::{self, ChunkOut};
use super::known::KnownState;
use super::peer::PeerEntry;
use crate::storage::{SessionAppend, StoredCoValue, Write};
use crate::sync::{Outgoing, PeerId};
use crate::verify::{
    CanonicalTx, ChainState, Header, SigCache, SigCheck, Signer, VerifyError, canonicalize_tx,
};
use ed25519_dalek::VerifyingKey;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// cojson's `MAX_RECOMMENDED_TX_SIZE`: the size of a piece when sending and
/// the distance between stored signature checkpoints.
pub const MAX_RECOMMENDED_TX_SIZE: u64 = 102_400;

pub struct Session {
    pub id: Arc<str>,
    txs: Vec<Arc<str>>,
    /// Size of each transaction in UTF-16 units (cojson's `getTransactionSize`).
    sizes: Vec<u32>,
    chain: ChainState,
    last_signature: Arc<str>,
    /// Intermediate signatures (cojson's `signatureAfter`): index → signature
    /// over transactions `0..=index`. The only places besides the end where
    /// the log may be cut.
    checkpoints: BTreeMap<u32, Arc<str>>,
    signer: VerifyingKey,
    bytes_since_checkpoint: u64,
}

impl Session {
    fn new(id: Arc<str>, signer: VerifyingKey) -> Self {
        Session {
            id,
            txs: Vec::new(),
            sizes: Vec::new(),
            chain: ChainState::new(),
            last_signature: Arc::from(""),
            checkpoints: BTreeMap::new(),
            signer,
            bytes_since_checkpoint: 0,
        }
    }

    pub fn len(&self) -> u32 {
        self.txs.len() as u32
    }
}

pub struct CoValue {
    pub id: Arc<str>,
    pub header_json: Arc<str>,
    pub header: Header,
    sessions: Vec<Session>,
    index: HashMap<Arc<str>, usize>,
    /// Dependencies learnt from content: accounts that authored sessions and,
    /// for groups, member accounts/groups and parent groups.
    learnt_deps: BTreeSet<Arc<str>>,
    /// Approximate heap bytes held, for the engine's memory budget.
    bytes: usize,
    /// The engine turn in which this CoValue was last used (for eviction).
    pub last_used: u64,
    /// Changes whenever the content changes (engine-wide counter, so a
    /// reloaded CoValue never repeats a number): a peer entry remembering
    /// the version it was brought up to date with can skip the work.
    pub version: u64,
}

/// The pieces last built for one peer state, reused for the next peer in
/// the same state (forwarding one write to many subscribers that were all
/// up to date builds the message once).
pub struct PieceCache {
    version: u64,
    header: bool,
    counts: Vec<u32>,
    pieces: Vec<String>,
}

/// Per-transaction bookkeeping besides its text (Arc, size, Vec slots).
const TX_OVERHEAD: usize = 48;

impl CoValue {
    pub fn new(id: Arc<str>, header_json: Arc<str>, header: Header) -> Self {
        let header_len = header_json.len() + id.len();
        CoValue {
            id,
            header_json,
            header,
            sessions: Vec::new(),
            index: HashMap::new(),
            learnt_deps: BTreeSet::new(),
            bytes: 256 + header_len,
            last_used: 0,
            version: 0,
        }
    }

    /// Approximate memory held by this CoValue.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Raises `state` to at least what we hold (without building a map).
    fn raise_into(&self, state: &mut KnownState) {
        state.header = true;
        for s in &self.sessions {
            state.raise(&s.id, s.len());
        }
    }

    /// A `known` message with our full state.
    pub fn known_message(&self, correction: bool) -> String {
        encode::known_iter(&self.id, true, self.sessions(), correction)
    }

    pub fn known_state(&self) -> KnownState {
        KnownState {
            header: true,
            sessions: self
                .sessions
                .iter()
                .map(|s| (s.id.clone(), s.len()))
                .collect(),
        }
    }

    pub fn count(&self, session: &str) -> u32 {
        self.session(session).map_or(0, Session::len)
    }

    pub fn session(&self, session: &str) -> Option<&Session> {
        self.index.get(session).map(|&i| &self.sessions[i])
    }

    /// The running hash, count and signer of a session.
    pub fn chain(&self, session: &str) -> Option<(&ChainState, u32, VerifyingKey)> {
        self.session(session).map(|s| (&s.chain, s.len(), s.signer))
    }

    pub fn session_signer(&self, session: &str) -> Option<VerifyingKey> {
        self.session(session).map(|s| s.signer)
    }

    pub fn sessions(&self) -> impl Iterator<Item = (&str, u32)> {
        self.sessions.iter().map(|s| (&*s.id, s.len()))
    }

    /// Every CoValue this one depends on (§5.1), excluding itself.
    pub fn dependencies(&self) -> Vec<Arc<str>> {
        let mut deps: Vec<Arc<str>> = Vec::new();
        if let Some(g) = self.header.group() {
            deps.push(Arc::from(g));
        }
        if let Some(s) = &self.header.source {
            deps.push(Arc::from(s.as_str()));
        }
        deps.extend(self.learnt_deps.iter().cloned());
        deps.retain(|d| **d != *self.id);
        deps.dedup();
        deps
    }

    /// Verifies `txs` (the new transactions, starting exactly at our count)
    /// against `signature` and appends them. All or nothing.
    pub fn append(
        &mut self,
        session_id: &Arc<str>,
        signer: VerifyingKey,
        txs: Vec<CanonicalTx>,
        signature: &str,
        cache: &SigCache,
    ) -> Result<SessionAppend, VerifyError> {
        let existing = self.index.get(session_id).copied();
        let next = match existing {
            Some(i) => {
                let s = &self.sessions[i];
                s.chain
                    .verify_batch(txs.iter().map(|t| &*t.json), signature, &s.signer, cache)?
            }
            None => ChainState::new().verify_batch(
                txs.iter().map(|t| &*t.json),
                signature,
                &signer,
                cache,
            )?,
        };
        // The session exists only once a batch verified, so a rejected first
        // batch leaves nothing behind.
        let idx = existing.unwrap_or_else(|| {
            self.sessions.push(Session::new(session_id.clone(), signer));
            self.index
                .insert(session_id.clone(), self.sessions.len() - 1);
            self.sessions.len() - 1
        });
        let session = &mut self.sessions[idx];
        session.chain = next;
        let first_idx = session.len();
        let signature: Arc<str> = Arc::from(signature);
        let size: u64 = txs.iter().map(|t| u64::from(t.size_utf16)).sum();
        let mut stored = Vec::with_capacity(txs.len());
        if existing.is_none() {
            self.bytes += 2048 + session_id.len();
        }
        for t in txs {
            self.bytes += t.json.len() + TX_OVERHEAD;
            session.sizes.push(t.size_utf16);
            session.txs.push(t.json.clone());
            stored.push(t.json);
        }
        session.last_signature = signature.clone();
        // cojson storage's rule (docs/storage.md §2.2), so that memory and disk
        // agree on where a session may be cut.
        let checkpoint = session.bytes_since_checkpoint + size > MAX_RECOMMENDED_TX_SIZE;
        if checkpoint {
            session
                .checkpoints
                .insert(session.len() - 1, signature.clone());
            session.bytes_since_checkpoint = 0;
        } else {
            session.bytes_since_checkpoint += size;
        }
        if self.header.is_group() {
            for tx in &stored {
                learn_group_deps(tx, &mut self.learnt_deps);
            }
        }
        if session_id.starts_with("co_")
            && let Some(at) = session_id.find("_session")
        {
            self.learnt_deps.insert(Arc::from(&session_id[..at]));
        }
        let session = &self.sessions[idx];
        Ok(SessionAppend {
            co_id: self.id.clone(),
            session_id: session_id.clone(),
            first_idx,
            txs: stored,
            last_signature: signature,
            checkpoint,
            bytes_since_last_signature: session.bytes_since_checkpoint,
            digest: session.chain.digest(),
        })
    }
}

/// A CoValue rebuilt from storage, with what the rebuild found.
pub struct Loaded {
    pub covalue: CoValue,
    /// Sessions checked with Ed25519 now (the store did not vouch for
    /// them): the caller records them so the next load can skip it.
    pub newly_verified: Vec<Write>,
    /// Sessions that fail verification: left out, never served.
    pub failed: Vec<(Arc<str>, VerifyError)>,
}

impl CoValue {
    /// Rebuilds a CoValue from storage, re-verifying every session's chain
    /// at each stored signature. A session that fails is left out (and
    /// logged): it is never served. `signer_of` resolves account authors.
    /// Also returns the sessions that were checked with Ed25519 now (the
    /// store did not vouch for them), so the caller can record them.
    pub fn from_stored(
        stored: StoredCoValue,
        signer_of: &mut dyn FnMut(&str) -> Option<VerifyingKey>,
    ) -> Result<Loaded, VerifyError> {
        let header_value: Value = serde_json::from_str(&stored.header)
            .map_err(|e| VerifyError::BadHeader(format!("stored header is not JSON: {e}")))?;
        let header = Header::verify(&header_value, &stored.id)?;
        let mut cv = CoValue::new(stored.id.clone(), stored.header.clone(), header);
        let mut newly_verified = Vec::new();
        let mut failed = Vec::new();
        for s in stored.sessions {
            match cv.load_session(&s, signer_of) {
                Ok(Some(digest)) => newly_verified.push(Write::Verified {
                    co_id: stored.id.clone(),
                    session_id: s.session_id.clone(),
                    count: s.txs.len() as u32,
                    last_signature: s.last_signature.clone(),
                    digest,
                }),
                Ok(None) => {}
                Err(e) => failed.push((s.session_id.clone(), e)),
            }
        }
        Ok(Loaded {
            covalue: cv,
            newly_verified,
            failed,
        })
    }

    /// Adds a stored session after checking its chain: the running hash at
    /// every stored signature point must carry that signature. A session
    /// the store vouches for (maia-sync verified exactly this prefix before
    /// and the re-hash gives the same digest) needs no Ed25519 check.
    /// Returns the digest when the signatures were checked now.
    fn load_session(
        &mut self,
        s: &crate::storage::StoredSession,
        signer_of: &mut dyn FnMut(&str) -> Option<VerifyingKey>,
    ) -> Result<Option<[u8; 32]>, VerifyError> {
        let signer =
            match crate::verify::session_signer(&s.session_id, &mut |acc| Some(signer_of(acc))) {
                Signer::Key(k) => k,
                Signer::Invalid(e) => return Err(e),
                // The lookup always answers, so this is only for completeness.
                Signer::AccountMissing => {
                    return Err(VerifyError::UnknownAuthor(s.session_id.to_string()));
                }
            };
        let mut canon = Vec::with_capacity(s.txs.len());
        for tx in &s.txs {
            let v: Value = serde_json::from_str(tx)
                .map_err(|e| VerifyError::BadTransaction(format!("stored tx is not JSON: {e}")))?;
            canon.push(canonicalize_tx(&v)?);
        }
        let len = canon.len() as u32;
        if len == 0 || self.index.contains_key(&s.session_id) {
            return Ok(None);
        }
        // Cut points: stored checkpoints below the end, and the end.
        let mut cuts: Vec<(u32, Arc<str>)> = s
            .signature_after
            .iter()
            .filter(|(i, _)| *i + 1 < len)
            .cloned()
            .collect();
        cuts.push((len - 1, s.last_signature.clone()));
        let mut chain = ChainState::new();
        let mut checks = Vec::with_capacity(cuts.len());
        let mut start = 0usize;
        for (end, sig) in &cuts {
            chain = chain.extend(canon[start..=*end as usize].iter().map(|t| &*t.json));
            checks.push((chain.digest(), sig.clone()));
            start = *end as usize + 1;
        }
        let digest = chain.digest();
        let vouched = s.vouched == Some(digest);
        if !vouched {
            let mut cache = SigCache::default();
            cache.verify_all(
                checks
                    .iter()
                    .map(|(digest, sig)| SigCheck {
                        signer,
                        digest: *digest,
                        signature: sig.to_string(),
                    })
                    .collect(),
            );
            if let Some((_, sig)) = checks
                .iter()
                .find(|(digest, sig)| !cache.contains(&signer, digest, sig))
            {
                return Err(match crate::verify::decode_signature(sig) {
                    Err(e) => e,
                    Ok(_) => VerifyError::SignatureMismatch,
                });
            }
        }
        let mut session = Session::new(s.session_id.clone(), signer);
        session.chain = chain;
        session.last_signature = s.last_signature.clone();
        session.bytes_since_checkpoint = s.bytes_since_last_signature;
        session.checkpoints = cuts[..cuts.len() - 1].iter().cloned().collect();
        self.bytes += 2048 + s.session_id.len();
        for t in canon {
            self.bytes += t.json.len() + TX_OVERHEAD;
            session.sizes.push(t.size_utf16);
            if self.header.is_group() {
                learn_group_deps(&t.json, &mut self.learnt_deps);
            }
            session.txs.push(t.json);
        }
        if s.session_id.starts_with("co_")
            && let Some(at) = s.session_id.find("_session")
        {
            self.learnt_deps.insert(Arc::from(&s.session_id[..at]));
        }
        self.sessions.push(session);
        self.index
            .insert(s.session_id.clone(), self.sessions.len() - 1);
        Ok((!vouched).then_some(digest))
    }

    /// Brings a peer entry up to date with this CoValue: queues the content
    /// it lacks or, when there is none and `force` is set or the peer was
    /// never told anything, a `known` with our state.
    pub fn bring_up_to_date(
        &self,
        peer: PeerId,
        entry: &mut PeerEntry,
        force: bool,
        cache: &mut Option<PieceCache>,
        outbox: &mut Vec<Outgoing>,
    ) {
        let pieces = self.content_since_cached(&entry.state, cache);
        entry.synced = self.version;
        if !pieces.is_empty() {
            self.raise_into(&mut entry.state);
            entry.told = true;
            outbox.extend(pieces.into_iter().map(|text| Outgoing { peer, text }));
        } else if force || !entry.told {
            entry.told = true;
            outbox.push(Outgoing {
                peer,
                text: self.known_message(false),
            });
        }
    }

    /// `content_since` for a known peer state, reusing `cache` when the
    /// last peer it was built for was in the same state.
    fn content_since_cached(
        &self,
        peer: &KnownState,
        cache: &mut Option<PieceCache>,
    ) -> Vec<String> {
        let counts: Vec<u32> = self
            .sessions
            .iter()
            .map(|s| peer.count(&s.id).min(s.len()))
            .collect();
        if let Some(c) = cache
            && c.version == self.version
            && c.header == peer.header
            && c.counts == counts
        {
            return c.pieces.clone();
        }
        let pieces = self.content_since(Some(peer));
        *cache = Some(PieceCache {
            version: self.version,
            header: peer.header,
            counts,
            pieces: pieces.clone(),
        });
        pieces
    }

    /// The `content` messages that bring a peer from `peer` (its known
    /// state; `None` = nothing known) up to ours, split at signature points
    /// into pieces of about `MAX_RECOMMENDED_TX_SIZE` as cojson does.
    fn content_since(&self, peer: Option<&KnownState>) -> Vec<String> {
        let peer_has = |s: &str| peer.map_or(0, |k| k.count(s));
        // Each piece is a list of (session index, from, to_inclusive, signature).
        type Chunk<'a> = (usize, u32, u32, &'a str);
        let mut pieces: Vec<Vec<Chunk<'_>>> = vec![Vec::new()];
        let mut shared = 0usize;
        let mut shared_size = 0u64;
        for (si, s) in self.sessions.iter().enumerate() {
            let from = peer_has(&s.id);
            let len = s.len();
            if from >= len {
                continue;
            }
            let mut start = from;
            let mut running = 0u64;
            for i in from..len {
                running += u64::from(s.sizes[i as usize]);
                if i + 1 == len {
                    let chunk = (si, start, i, &*s.last_signature);
                    if running > MAX_RECOMMENDED_TX_SIZE {
                        pieces.insert(shared, vec![chunk]);
                        shared += 1;
                    } else if shared_size + running > MAX_RECOMMENDED_TX_SIZE {
                        pieces[shared].push(chunk);
                        pieces.push(Vec::new());
                        shared = pieces.len() - 1;
                        shared_size = 0;
                    } else {
                        pieces[shared].push(chunk);
                        shared_size += running;
                    }
                } else if let Some(sig) = s.checkpoints.get(&i) {
                    // A checkpoint closes a chunk of its own, placed before
                    // the shared piece (cojson's order).
                    pieces.insert(shared, vec![(si, start, i, &**sig)]);
                    shared += 1;
                    start = i + 1;
                    running = 0;
                }
            }
        }
        pieces.retain(|p| !p.is_empty());
        let include_header = !peer.is_some_and(|k| k.header);
        if pieces.is_empty() {
            return if include_header {
                vec![encode::content(
                    &self.id,
                    Some(&self.header_json),
                    self.header.priority,
                    &[],
                    None,
                )]
            } else {
                Vec::new()
            };
        }
        let until: Vec<(&str, u32)> = if pieces.len() > 1 {
            self.sessions
                .iter()
                .filter(|s| peer_has(&s.id) < s.len())
                .map(|s| (&*s.id, s.len()))
                .collect()
        } else {
            Vec::new()
        };
        pieces
            .iter()
            .enumerate()
            .map(|(n, piece)| {
                let chunks: Vec<ChunkOut<'_>> = piece
                    .iter()
                    .map(|&(si, from, to, sig)| {
                        let s = &self.sessions[si];
                        ChunkOut {
                            session: &s.id,
                            after: from,
                            txs: &s.txs[from as usize..=to as usize],
                            last_signature: sig,
                        }
                    })
                    .collect();
                let first = n == 0;
                encode::content(
                    &self.id,
                    (first && include_header).then_some(&*self.header_json),
                    self.header.priority,
                    &chunks,
                    (first && !until.is_empty()).then_some(&until[..]),
                )
            })
            .collect()
    }
}

/// Group dependencies in one trusting transaction (§5.1 item 4): `set` ops
/// whose key names a parent group (`parent_co_…`) or a member (`co_…`).
pub fn learn_group_deps(tx_json: &str, deps: &mut BTreeSet<Arc<str>>) {
    let Ok(tx) = serde_json::from_str::<Value>(tx_json) else {
        return;
    };
    let Some(changes) = tx.get("changes").and_then(Value::as_str) else {
        return;
    };
    for key in group_keys(changes) {
        deps.insert(Arc::from(key.as_str()));
    }
}

/// The CoIDs named by `set` keys in a group transaction's `changes` text.
pub fn group_keys(changes: &str) -> Vec<String> {
    let Ok(Value::Array(ops)) = serde_json::from_str::<Value>(changes) else {
        return Vec::new();
    };
    ops.iter()
        .filter(|op| op.get("op").and_then(Value::as_str) == Some("set"))
        .filter_map(|op| op.get("key").and_then(Value::as_str))
        .filter_map(|k| {
            if let Some(parent) = k.strip_prefix("parent_") {
                parent.starts_with("co_").then(|| parent.to_string())
            } else if k.starts_with("co_") {
                Some(k.to_string())
            } else {
                None
            }
        })
        .collect()
}
