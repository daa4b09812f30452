//! Batch signature verification for a loop turn (benches/README.md: Ed25519 is
//! the ingest bottleneck; batches check about twice as fast).
//!
//! Before the turn's messages are applied one by one, this pass walks the
//! `content` messages, canonicalises their transactions (kept for the
//! apply step), predicts each session's running hash as if every earlier
//! batch of the turn were accepted, and checks all predicted signatures as
//! one batch. The verdicts go into a `SigCache`; the sequential apply step
//! still recomputes every hash and only skips the Ed25519 check when the
//! cache holds exactly that (key, hash, signature). A wrong prediction is
//! therefore only a cache miss, never a wrong decision.

use super::Engine;
use super::decode::Incoming;
use crate::sync::PeerId;
use crate::verify::{ChainState, Header, SigCheck, Signer, canonicalize_tx, session_signer};
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;
use std::sync::Arc;

/// Predicted state of one session during the pass.
struct Predicted {
    chain: ChainState,
    count: u32,
    signer: VerifyingKey,
}

impl Engine {
    pub(super) fn prepass(&mut self, inbox: &mut [(PeerId, Incoming)]) {
        let mut sessions: HashMap<(Arc<str>, Arc<str>), Predicted> = HashMap::new();
        // Account signers from headers that arrive in this very turn.
        let mut new_accounts: HashMap<Arc<str>, VerifyingKey> = HashMap::new();
        let mut checks = Vec::new();
        for (_, msg) in inbox.iter_mut() {
            let Incoming::Content(c) = msg else { continue };
            if !self.covalues.contains_key(&c.id)
                && let Some(h) = &c.header
            {
                let checked = Header::verify(h, &c.id);
                if let Ok(Header {
                    account_signer: Some(k),
                    ..
                }) = &checked
                {
                    new_accounts.insert(c.id.clone(), *k);
                }
                c.checked_header = Some(Box::new(checked));
            }
            for entry in &mut c.sessions {
                let canon: Vec<_> = entry.txs.iter().map(canonicalize_tx).collect();
                let key = (c.id.clone(), entry.session_id.clone());
                if !sessions.contains_key(&key) {
                    let start = self
                        .covalues
                        .get(&c.id)
                        .and_then(|cv| cv.chain(&entry.session_id))
                        .map(|(chain, count, signer)| (chain.clone(), count, signer));
                    let start = start.or_else(|| {
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
                    let new = &canon[skip.min(canon.len())..];
                    if !new.is_empty() && new.iter().all(Result::is_ok) {
                        p.chain = p.chain.extend(new.iter().flatten().map(|t| &*t.json));
                        p.count += new.len() as u32;
                        checks.push(SigCheck {
                            signer: p.signer,
                            digest: p.chain.digest(),
                            signature: entry.last_signature.clone(),
                        });
                    }
                }
                entry.canon = Some(canon);
            }
        }
        if !checks.is_empty() {
            self.sig_cache.verify_all(checks);
        }
    }

    /// The signer of a session new to this turn, if it can be known without
    /// touching storage (a miss only means a one-by-one check later).
    fn predict_signer(
        &self,
        session_id: &str,
        new_accounts: &HashMap<Arc<str>, VerifyingKey>,
    ) -> Option<VerifyingKey> {
        let known = session_signer(session_id, &mut |acc| match self.covalues.get(acc) {
            Some(cv) => Some(cv.header.account_signer),
            None => new_accounts.get(acc).map(|k| Some(*k)),
        });
        match known {
            Signer::Key(k) => Some(k),
            Signer::AccountMissing | Signer::Invalid(_) => None,
        }
    }
}
