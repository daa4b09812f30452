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

/// Verdicts of this loop turn's batch check, for the sequential apply step.
#[derive(Default)]
pub struct SigCache {
    valid: HashSet<CacheKey>,
    invalid: HashSet<CacheKey>,
}

/// What one batch check found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    pub valid: usize,
    pub invalid: usize,
    /// Left unchecked: the batch failed and the single checks stopped
    /// after `stop_after_invalid` bad ones.
    pub unchecked: usize,
}

fn key(signer: &VerifyingKey, digest: &[u8; 32], signature: &str) -> CacheKey {
    (Box::from(signature), *digest, signer.to_bytes())
}

impl SigCache {
    /// `Some(true)`: found valid this turn; `Some(false)`: found invalid;
    /// `None`: not checked.
    pub fn verdict(
        &self,
        signer: &VerifyingKey,
        digest: &[u8; 32],
        signature: &str,
    ) -> Option<bool> {
        if self.valid.is_empty() && self.invalid.is_empty() {
            return None;
        }
        let k = key(signer, digest, signature);
        if self.valid.contains(&k) {
            Some(true)
        } else if self.invalid.contains(&k) {
            Some(false)
        } else {
            None
        }
    }

    pub fn contains(&self, signer: &VerifyingKey, digest: &[u8; 32], signature: &str) -> bool {
        self.verdict(signer, digest, signature) == Some(true)
    }

    pub fn clear(&mut self) {
        self.valid.clear();
        self.invalid.clear();
    }

    /// Checks `checks` as one batch and remembers the verdicts. When the
    /// batch fails, each signature is checked once on its own (so a failed
    /// batch costs about one more pass, never a bisection), stopping after
    /// `stop_after_invalid` bad ones: their sender is cut off anyway.
    pub fn verify_all(&mut self, checks: Vec<SigCheck>, stop_after_invalid: usize) -> BatchReport {
        let mut report = BatchReport::default();
        let mut decoded: Vec<(SigCheck, Signature, String)> = Vec::with_capacity(checks.len());
        for c in checks {
            match decode_signature(&c.signature) {
                Ok(sig) => {
                    let msg = signed_bytes(&c.digest);
                    decoded.push((c, sig, msg));
                }
                Err(_) => {
                    report.invalid += 1;
                    self.invalid.insert(key(&c.signer, &c.digest, &c.signature));
                }
            }
        }
        if decoded.is_empty() {
            return report;
        }
        let batch_ok = if decoded.len() == 1 {
            let (c, sig, msg) = &decoded[0];
            c.signer.verify(msg.as_bytes(), sig).is_ok()
        } else {
            let msgs: Vec<&[u8]> = decoded.iter().map(|(_, _, m)| m.as_bytes()).collect();
            let sigs: Vec<Signature> = decoded.iter().map(|(_, s, _)| *s).collect();
            let keys: Vec<VerifyingKey> = decoded.iter().map(|(c, _, _)| c.signer).collect();
            ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok()
        };
        if batch_ok {
            report.valid += decoded.len();
            for (c, _, _) in &decoded {
                self.valid.insert(key(&c.signer, &c.digest, &c.signature));
            }
            return report;
        }
        for (c, sig, msg) in &decoded {
            if report.invalid >= stop_after_invalid {
                report.unchecked += 1;
                continue;
            }
            let k = key(&c.signer, &c.digest, &c.signature);
            if c.signer.verify(msg.as_bytes(), sig).is_ok() {
                report.valid += 1;
                self.valid.insert(k);
            } else {
                report.invalid += 1;
                self.invalid.insert(k);
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn check(key: &SigningKey, n: u8, valid: bool) -> SigCheck {
        let digest = [n; 32];
        let signed = if valid { digest } else { [n ^ 0xFF; 32] };
        let sig = key.sign(signed_bytes(&signed).as_bytes());
        SigCheck {
            signer: key.verifying_key(),
            digest,
            signature: format!(
                "signature_z{}",
                super::super::base58::encode(&sig.to_bytes())
            ),
        }
    }

    #[test]
    fn a_failed_batch_falls_back_to_single_checks_once() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut cache = SigCache::default();
        let checks: Vec<SigCheck> = (0..8).map(|n| check(&key, n, n != 3)).collect();
        let r = cache.verify_all(checks, usize::MAX);
        assert_eq!((r.valid, r.invalid, r.unchecked), (7, 1, 0));
        let good = check(&key, 0, true);
        assert_eq!(
            cache.verdict(&good.signer, &good.digest, &good.signature),
            Some(true)
        );
        let bad = check(&key, 3, false);
        assert_eq!(
            cache.verdict(&bad.signer, &bad.digest, &bad.signature),
            Some(false)
        );
        // All bad: the single checks stop after the limit.
        let mut cache = SigCache::default();
        let checks: Vec<SigCheck> = (0..40).map(|n| check(&key, n, false)).collect();
        let r = cache.verify_all(checks, 10);
        assert_eq!((r.valid, r.invalid, r.unchecked), (0, 10, 30));
    }
}
