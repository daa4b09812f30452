//! One CoValue held in memory: its header, its verified sessions, where each
//! session may be cut into separately verifiable chunks, and the pieces a
//! peer is missing (docs/protocol.md §3.3, §4.6, §5.1).

use super::encode::{self, ChunkOut};
use super::known::KnownState;
use crate::storage::{SessionAppend, StoredCoValue, StoredSession, Write};
use crate::verify::{
    CanonicalTx, ChainState, CheckedHeader, CoId, Header, SigCache, SigCheck, Signer, VerifyError,
    canonicalize, decode_signature, session_signer, trusting_changes,
};
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// cojson's `MAX_RECOMMENDED_TX_SIZE`: the size of a piece when sending and
/// the distance between stored signature checkpoints.
pub const MAX_RECOMMENDED_TX_SIZE: u64 = 102_400;

/// Largest stored header read back. Headers from clients are capped at
/// `MAX_HEADER_BYTES`; a database written by other software gets more
/// room, but still a bound.
pub const MAX_STORED_HEADER_BYTES: usize = 1 << 20;

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
    pub id: CoId,
    /// The canonical header text (what the ID was computed from).
    pub header_json: Arc<str>,
    pub header: Header,
    sessions: Vec<Session>,
    index: HashMap<Arc<str>, usize>,
    /// Dependencies learnt from content: accounts that authored sessions and,
    /// for groups, member accounts/groups and parent groups.
    learnt_deps: BTreeSet<CoId>,
    /// Approximate heap bytes held, for the cache's memory budget.
    bytes: usize,
    /// Length of the longest chain of header dependencies (owner group,
    /// branch source) below this CoValue, once known.
    pub depth: Option<u16>,
    /// The engine turn in which this CoValue was last used (for eviction).
    pub last_used: u64,
    /// Changes whenever the content changes (engine-wide counter, so a
    /// reloaded CoValue never repeats a number): a peer entry remembering
    /// the version it was brought up to date with can skip the work.
    pub version: u64,
}

/// Per-transaction bookkeeping besides its text (Arc, size, Vec slots).
const TX_OVERHEAD: usize = 48;
/// Per-session bookkeeping (hasher state, maps, index entry).
const SESSION_OVERHEAD: usize = 2048;
/// Per learnt dependency (set node).
const DEP_OVERHEAD: usize = 64;

/// One session's part of a piece: transactions `from..=to` and the
/// signature that closes them.
#[derive(Clone, Debug)]
pub struct ChunkPlan {
    pub session: Arc<str>,
    pub from: u32,
    pub to: u32,
    pub signature: Arc<str>,
}

/// One `content` message to send, described without its text (rendered
/// only when the socket has room for it).
#[derive(Clone, Debug)]
pub struct Piece {
    pub header: bool,
    pub chunks: Vec<ChunkPlan>,
    /// `expectContentUntil`, on the first of several pieces.
    pub until: Option<Vec<(Arc<str>, u32)>>,
}

impl Piece {
    /// The counts a peer holds once it has this piece.
    pub fn ends(&self) -> impl Iterator<Item = (&Arc<str>, u32)> {
        self.chunks.iter().map(|c| (&c.session, c.to + 1))
    }
}

impl CoValue {
    pub fn new(id: CoId, checked: CheckedHeader) -> Self {
        let header_json: Arc<str> = Arc::from(checked.json);
        CoValue {
            id,
            bytes: 256 + header_json.len(),
            header_json,
            header: checked.header,
            sessions: Vec::new(),
            index: HashMap::new(),
            learnt_deps: BTreeSet::new(),
            depth: None,
            last_used: 0,
            version: 0,
        }
    }

    /// Approximate memory held by this CoValue.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A `known` message with our full state.
    pub fn known_message(&self, correction: bool) -> String {
        encode::known_iter(self.id.as_str(), true, self.sessions(), correction)
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

    /// Our own `Arc` of a session name (so peer states share it).
    pub fn session_name(&self, session: &str) -> Option<&Arc<str>> {
        self.session(session).map(|s| &s.id)
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
    pub fn dependencies(&self) -> Vec<CoId> {
        let mut deps: Vec<CoId> = self.header.dependencies().collect();
        deps.extend(self.learnt_deps.iter().copied());
        deps.retain(|d| *d != self.id);
        deps.sort_unstable();
        deps.dedup();
        deps
    }

    /// Verifies `txs` (the new transactions, starting exactly at our count)
    /// against `signature` and appends them. All or nothing.
    pub fn append(
        &mut self,
        session_id: &Arc<str>,
        signer: VerifyingKey,
        txs: &[CanonicalTx],
        signature: &str,
        cache: &SigCache,
    ) -> Result<SessionAppend, VerifyError> {
        let existing = self.index.get(session_id).copied();
        let (chain, signer) = match existing {
            Some(i) => (&self.sessions[i].chain, self.sessions[i].signer),
            None => (&ChainState::new(), signer),
        };
        let next = chain.verify_batch(txs.iter().map(|t| &*t.json), signature, &signer, cache)?;
        // The session exists only once a batch verified, so a rejected first
        // batch leaves nothing behind.
        let idx = existing.unwrap_or_else(|| {
            self.sessions.push(Session::new(session_id.clone(), signer));
            self.index
                .insert(session_id.clone(), self.sessions.len() - 1);
            self.bytes += SESSION_OVERHEAD + session_id.len();
            self.sessions.len() - 1
        });
        let is_group = self.header.is_group();
        let session = &mut self.sessions[idx];
        session.chain = next;
        let first_idx = session.len();
        let signature: Arc<str> = Arc::from(signature);
        let size: u64 = txs.iter().map(|t| u64::from(t.size_utf16)).sum();
        let mut stored = Vec::with_capacity(txs.len());
        let mut added = 0usize;
        let mut deps = Vec::new();
        for t in txs {
            added += t.json.len() + TX_OVERHEAD;
            session.sizes.push(t.size_utf16);
            session.txs.push(t.json.clone());
            stored.push(t.json.clone());
            if is_group && t.trusting {
                group_deps(&t.json, &mut deps);
            }
        }
        session.last_signature = signature.clone();
        // cojson storage's rule (docs/storage.md §2.2), so that memory and
        // disk agree on where a session may be cut.
        let checkpoint = session.bytes_since_checkpoint + size > MAX_RECOMMENDED_TX_SIZE;
        if checkpoint {
            session
                .checkpoints
                .insert(session.len() - 1, signature.clone());
            session.bytes_since_checkpoint = 0;
        } else {
            session.bytes_since_checkpoint += size;
        }
        let append = SessionAppend {
            co_id: Arc::from(self.id.as_str()),
            session_id: session_id.clone(),
            first_idx,
            txs: stored,
            last_signature: signature,
            checkpoint,
            bytes_since_last_signature: session.bytes_since_checkpoint,
            digest: session.chain.digest(),
        };
        self.bytes += added;
        self.learn(deps);
        if let Some(author) = account_author(session_id) {
            self.learn([author]);
        }
        Ok(append)
    }

    fn learn(&mut self, deps: impl IntoIterator<Item = CoId>) {
        for d in deps {
            if d != self.id && self.learnt_deps.insert(d) {
                self.bytes += DEP_OVERHEAD;
            }
        }
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
    /// reported): it is never served. `signer_of` resolves account authors.
    pub fn from_stored(
        stored: StoredCoValue,
        signer_of: &mut dyn FnMut(CoId) -> Option<VerifyingKey>,
    ) -> Result<Loaded, VerifyError> {
        let id = CoId::parse(&stored.id)
            .ok_or_else(|| VerifyError::BadHeader("stored under a malformed CoValue ID".into()))?;
        let checked = Header::check(&stored.header, &id, MAX_STORED_HEADER_BYTES)?;
        let mut cv = CoValue::new(id, checked);
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
        s: &StoredSession,
        signer_of: &mut dyn FnMut(CoId) -> Option<VerifyingKey>,
    ) -> Result<Option<[u8; 32]>, VerifyError> {
        if !crate::verify::is_session_id(&s.session_id) {
            return Err(VerifyError::UnknownAuthor(
                crate::logging::clip(&s.session_id).to_string(),
            ));
        }
        let signer = match session_signer(&s.session_id, &mut |acc| Some(signer_of(acc))) {
            Signer::Key(k) => k,
            Signer::Invalid(e) => return Err(e),
            // The lookup always answers, so this is only for completeness.
            Signer::AccountMissing => {
                return Err(VerifyError::UnknownAuthor(s.session_id.to_string()));
            }
        };
        let canon = s
            .txs
            .iter()
            .map(|tx| canonicalize(tx))
            .collect::<Result<Vec<_>, _>>()?;
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
                usize::MAX,
            );
            if let Some((_, sig)) = checks
                .iter()
                .find(|(digest, sig)| !cache.contains(&signer, digest, sig))
            {
                return Err(match decode_signature(sig) {
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
        self.bytes += SESSION_OVERHEAD + s.session_id.len();
        let mut deps = Vec::new();
        for t in canon {
            self.bytes += t.json.len() + TX_OVERHEAD;
            session.sizes.push(t.size_utf16);
            if self.header.is_group() && t.trusting {
                group_deps(&t.json, &mut deps);
            }
            session.txs.push(t.json);
        }
        self.learn(deps);
        if let Some(author) = account_author(&s.session_id) {
            self.learn([author]);
        }
        self.sessions.push(session);
        self.index
            .insert(s.session_id.clone(), self.sessions.len() - 1);
        Ok((!vouched).then_some(digest))
    }
}

impl CoValue {
    /// The `content` pieces that bring a peer from `peer` (its known
    /// state) up to ours, split at signature points into pieces of about
    /// `MAX_RECOMMENDED_TX_SIZE` as cojson does. Described, not rendered.
    pub fn plan(&self, peer: &KnownState) -> Vec<Piece> {
        // Each piece is a list of (session index, from, to_inclusive, signature).
        type Chunk<'a> = (usize, u32, u32, &'a Arc<str>);
        let mut pieces: Vec<Vec<Chunk<'_>>> = vec![Vec::new()];
        let mut shared = 0usize;
        let mut shared_size = 0u64;
        for (si, s) in self.sessions.iter().enumerate() {
            let from = peer.count(&s.id);
            let len = s.len();
            if from >= len {
                continue;
            }
            let mut start = from;
            let mut running = 0u64;
            for i in from..len {
                running += u64::from(s.sizes[i as usize]);
                if i + 1 == len {
                    let chunk = (si, start, i, &s.last_signature);
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
                    pieces.insert(shared, vec![(si, start, i, sig)]);
                    shared += 1;
                    start = i + 1;
                    running = 0;
                }
            }
        }
        pieces.retain(|p| !p.is_empty());
        let include_header = !peer.header;
        if pieces.is_empty() {
            return if include_header {
                vec![Piece {
                    header: true,
                    chunks: Vec::new(),
                    until: None,
                }]
            } else {
                Vec::new()
            };
        }
        let until: Option<Vec<(Arc<str>, u32)>> = (pieces.len() > 1).then(|| {
            self.sessions
                .iter()
                .filter(|s| peer.count(&s.id) < s.len())
                .map(|s| (s.id.clone(), s.len()))
                .collect()
        });
        let mut until = until;
        pieces
            .into_iter()
            .enumerate()
            .map(|(n, chunks)| Piece {
                header: n == 0 && include_header,
                chunks: chunks
                    .into_iter()
                    .map(|(si, from, to, sig)| ChunkPlan {
                        session: self.sessions[si].id.clone(),
                        from,
                        to,
                        signature: sig.clone(),
                    })
                    .collect(),
                until: if n == 0 { until.take() } else { None },
            })
            .collect()
    }

    /// The text of a planned piece. A chunk whose session is gone (the
    /// CoValue was reloaded without it) is left out.
    pub fn render(&self, piece: &Piece) -> String {
        let chunks: Vec<ChunkOut<'_>> = piece
            .chunks
            .iter()
            .filter_map(|c| {
                let s = self.session(&c.session)?;
                let txs = s.txs.get(c.from as usize..=c.to as usize)?;
                Some(ChunkOut {
                    session: &s.id,
                    after: c.from,
                    txs,
                    last_signature: &c.signature,
                })
            })
            .collect();
        let until: Option<Vec<(&str, u32)>> = piece
            .until
            .as_ref()
            .map(|u| u.iter().map(|(s, n)| (&**s, *n)).collect());
        encode::content(
            self.id.as_str(),
            piece.header.then_some(&*self.header_json),
            self.header.priority,
            &chunks,
            until.as_deref(),
        )
    }
}

/// The account that authored a session, if an account did.
pub fn account_author(session_id: &str) -> Option<CoId> {
    let at = session_id.find("_session")?;
    CoId::parse(&session_id[..at])
}

/// Group dependencies in one canonical trusting transaction (§5.1 item 4):
/// `set` ops whose key names a parent group (`parent_co_…`) or a member
/// (`co_…`).
pub fn group_deps(tx_json: &str, deps: &mut Vec<CoId>) {
    if let Some(changes) = trusting_changes(tx_json) {
        group_keys(&changes, deps);
    }
}

/// The CoValues named by `set` keys in a group transaction's `changes`.
pub fn group_keys(changes: &str, deps: &mut Vec<CoId>) {
    #[derive(Deserialize)]
    struct Op<'a> {
        #[serde(borrow, default)]
        op: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        key: Option<std::borrow::Cow<'a, str>>,
    }
    // Ops of another shape are skipped, as cojson's parser does.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum MaybeOp<'a> {
        #[serde(borrow)]
        Op(Op<'a>),
        Other(serde::de::IgnoredAny),
    }
    let Ok(ops) = serde_json::from_str::<Vec<MaybeOp<'_>>>(changes) else {
        return;
    };
    for op in ops {
        let MaybeOp::Op(Op {
            op: Some(op),
            key: Some(key),
        }) = op
        else {
            continue;
        };
        if op != "set" {
            continue;
        }
        let named = key.strip_prefix("parent_").unwrap_or(&key);
        if let Some(id) = CoId::parse(named) {
            deps.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_keys_name_members_and_parents() {
        let mut deps = Vec::new();
        group_keys(
            r#"[{"op":"set","key":"co_zA","value":"admin"},{"op":"set","key":"parent_co_zB","value":"extend"},{"op":"set","key":"readKey","value":"x"},{"op":"del","key":"co_zC"},5,{"op":"set","key":"child_co_zD"}]"#,
            &mut deps,
        );
        let names: Vec<&str> = deps.iter().map(CoId::as_str).collect();
        assert_eq!(names, ["co_zA", "co_zB"]);
        let mut none = Vec::new();
        group_keys("not json", &mut none);
        assert!(none.is_empty());
    }
}
