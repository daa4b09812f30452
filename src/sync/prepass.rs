//! Batch signature verification for a loop turn (benches/README.md: Ed25519
//! is the ingest bottleneck; batches check about twice as fast).
//!
//! Before the turn's messages are applied one by one, this pass walks the
//! `content` messages, predicts each session's running hash as if every
//! earlier batch of the turn were accepted, and checks the predicted
//! signatures as one batch per peer, so one peer's bad signatures never
//! send another peer's checks down the slow path. The verdicts go into a
//! `SigCache`; the sequential apply step still recomputes every hash and
//! only uses a verdict for exactly that (key, hash, signature). A wrong
//! prediction is therefore only a cache miss, never a wrong decision.

use super::decode::Incoming;
use super::turn::MAX_INVALID_SIGNATURES;
use super::{Engine, PeerId};
use crate::verify::{ChainState, CoId, SigCheck, Signer, session_signer};
use ed25519_dalek::VerifyingKey;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Predicted state of one session during the pass.
struct Predicted {
    chain: ChainState,
    count: u32,
    signer: VerifyingKey,
}

impl Engine {
    pub(super) fn prepass(&mut self, selected: &[(PeerId, Incoming)]) {
        let mut sessions: HashMap<(CoId, Arc<str>), Predicted> = HashMap::new();
        // Account signers from headers that arrive in this very turn.
        let mut new_accounts: HashMap<CoId, VerifyingKey> = HashMap::new();
        let mut checks: BTreeMap<PeerId, Vec<SigCheck>> = BTreeMap::new();
        for (peer, msg) in selected {
            let Incoming::Content(c) = msg else { continue };
            if let Some(Ok(h)) = &c.header
                && let Some(k) = h.header.account_signer
            {
                new_accounts.insert(c.id, k);
            }
            for entry in c.sessions.iter().filter(|e| e.bad.is_none()) {
                let key = (c.id, entry.session_id.clone());
                if !sessions.contains_key(&key) {
                    let start = self
                        .cache
                        .get(&c.id)
                        .and_then(|cv| cv.chain(&entry.session_id))
                        .map(|(chain, count, signer)| (chain.clone(), count, signer))
                        .or_else(|| {
                            let signer = self.predict_signer(&entry.session_id, &new_accounts)?;
                            Some((ChainState::new(), 0, signer))
                        });
                    if let Some((chain, count, signer)) = start {
                        sessions.insert(
                            key.clone(),
                            Predicted {
                                chain,
                                count,
                                signer,
                            },
                        );
                    }
                }
                if let Some(p) = sessions.get_mut(&key)
                    && entry.after <= p.count
                {
                    let skip = (p.count - entry.after) as usize;
                    let new = &entry.txs[skip.min(entry.txs.len())..];
                    if !new.is_empty() {
                        p.chain = p.chain.extend(new.iter().map(|t| &*t.json));
                        p.count += new.len() as u32;
                        checks.entry(*peer).or_default().push(SigCheck {
                            signer: p.signer,
                            digest: p.chain.digest(),
                            signature: entry.last_signature.to_string(),
                        });
                    }
                }
            }
        }
        for (peer, checks) in checks {
            let already = self.peers.get(&peer).map_or(0, |p| p.invalid_signatures);
            let left = MAX_INVALID_SIGNATURES.saturating_sub(already) as usize;
            self.sig_cache.verify_all(checks, left);
        }
    }

    /// The signer of a session new to this turn, if it can be known without
    /// touching storage (a miss only means a one-by-one check later).
    fn predict_signer(
        &self,
        session_id: &str,
        new_accounts: &HashMap<CoId, VerifyingKey>,
    ) -> Option<VerifyingKey> {
        let known = session_signer(session_id, &mut |acc| match self.cache.get(&acc) {
            Some(cv) => Some(cv.header.account_signer),
            None => new_accounts.get(&acc).map(|k| Some(*k)),
        });
        match known {
            Signer::Key(k) => Some(k),
            Signer::AccountMissing | Signer::Invalid(_) => None,
        }
    }
}
