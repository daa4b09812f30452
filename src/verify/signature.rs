//! Ed25519 checks of session signatures, one at a time or in batches.
//!
//! A signature covers the UTF-8 bytes of the session's running hash as a
//! JSON string literal (`"hash_z…"`, quotes included; docs/protocol.md §3.3).
//! Checking a loop turn's signatures as one batch is about twice as fast
//! as checking them one by one; `SigCache` carries the batch's verdicts to
//! the sequential ingest, which stays the single place that decides.

use super::encoding::{VerifyError, decode_signature, hash_string};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use std::collections::HashSet;

/// The exact bytes a session signature signs, for a running-hash digest.
pub fn signed_bytes(digest: &[u8; 32]) -> String {
    format!("\"{}\"", hash_string(digest))
}

/// Checks one signature over `digest`. cojson's core uses the plain
/// (non-strict, cofactorless) RFC 8032 check; the same function accepts
/// exactly the same signatures.
pub fn verify_signature(
    signer: &VerifyingKey,
    digest: &[u8; 32],
    signature: &str,
) -> Result<(), VerifyError> {
    let sig = decode_signature(signature)?;
    signer
        .verify(signed_bytes(digest).as_bytes(), &sig)
        .map_err(|_| VerifyError::SignatureMismatch)
}

/// One signature to check: key, running-hash digest, signature text.
pub struct SigCheck {
    pub signer: VerifyingKey,
    pub digest: [u8; 32],
    pub signature: String,
}

type CacheKey = (Box<str>, [u8; 32], [u8; 32]);

/// Signatures already found valid in this loop turn.
#[derive(Default)]
pub struct SigCache {
    valid: HashSet<CacheKey>,
}

impl SigCache {
    pub fn contains(&self, signer: &VerifyingKey, digest: &[u8; 32], signature: &str) -> bool {
        !self.valid.is_empty()
            && self
                .valid
                .contains(&(Box::from(signature), *digest, signer.to_bytes()))
    }

    pub fn clear(&mut self) {
        self.valid.clear();
    }

    /// Checks `checks` and remembers the valid ones. A batch is checked as a
    /// whole; when it fails, its halves are checked again, down to single
    /// signatures, so one bad signature costs a few extra checks and every
    /// good one is still found.
    pub fn verify_all(&mut self, checks: Vec<SigCheck>) {
        let decoded: Vec<(SigCheck, Signature, String)> = checks
            .into_iter()
            .filter_map(|c| {
                let sig = decode_signature(&c.signature).ok()?;
                let msg = signed_bytes(&c.digest);
                Some((c, sig, msg))
            })
            .collect();
        self.verify_range(&decoded);
    }

    fn verify_range(&mut self, items: &[(SigCheck, Signature, String)]) {
        if items.is_empty() {
            return;
        }
        let ok = if items.len() == 1 {
            let (c, sig, msg) = &items[0];
            c.signer.verify(msg.as_bytes(), sig).is_ok()
        } else {
            let msgs: Vec<&[u8]> = items.iter().map(|(_, _, m)| m.as_bytes()).collect();
            let sigs: Vec<Signature> = items.iter().map(|(_, s, _)| *s).collect();
            let keys: Vec<VerifyingKey> = items.iter().map(|(c, _, _)| c.signer).collect();
            ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok()
        };
        if ok {
            for (c, _, _) in items {
                self.valid.insert((
                    Box::from(c.signature.as_str()),
                    c.digest,
                    c.signer.to_bytes(),
                ));
            }
        } else if items.len() > 1 {
            let (a, b) = items.split_at(items.len() / 2);
            self.verify_range(a);
            self.verify_range(b);
        }
    }
}
