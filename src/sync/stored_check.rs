//! Re-verification of a stored CoValue for `maia-sync check`: the same
//! rules a load from storage applies (header ID, canonical transactions,
//! hash chain and signature at every stored cut point), but reporting
//! every failing session instead of leaving it out with a warning.

use super::covalue::CoValue;
use crate::storage::StoredCoValue;
use crate::verify::CoId;
use ed25519_dalek::VerifyingKey;

/// What one stored CoValue holds and what of it fails verification.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredReport {
    pub sessions: usize,
    pub transactions: usize,
    /// One line per failure: the header, or a session and why.
    pub failures: Vec<String>,
}

/// Verifies `stored` as `Engine` does when it loads it, except that no
/// earlier verification is trusted: every signature is checked again.
/// `signer_of` resolves an account ID to its signer (None: not stored /
/// not an account).
pub fn verify_stored(
    stored: &StoredCoValue,
    signer_of: &mut dyn FnMut(CoId) -> Option<VerifyingKey>,
) -> StoredReport {
    let mut unvouched = stored.clone();
    for s in &mut unvouched.sessions {
        s.vouched = None;
    }
    let failures = match CoValue::from_stored(unvouched, signer_of) {
        Ok(loaded) => loaded
            .failed
            .into_iter()
            .map(|(session, e)| format!("session {session}: {e}"))
            .collect(),
        Err(e) => vec![format!("header: {e}")],
    };
    StoredReport {
        sessions: stored.sessions.len(),
        transactions: stored.sessions.iter().map(|s| s.txs.len()).sum(),
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoredSession;
    use crate::sync::testkit::{Agent, Writer, allow_all_map};
    use std::sync::Arc;

    fn stored(tamper: bool) -> StoredCoValue {
        let (header, id) = allow_all_map("check");
        let agent = Agent::new(3);
        let mut w = Writer::new();
        let (_, txs, sig) = w.batch(&agent, &["[1]".to_string(), "[2]".to_string()]);
        let mut txs: Vec<Arc<str>> = txs.iter().map(|t| Arc::from(t.to_string())).collect();
        if tamper {
            txs[1] = Arc::from(txs[1].replace("[2]", "[3]"));
        }
        StoredCoValue {
            id: Arc::from(id),
            header: Arc::from(header.to_string()),
            sessions: vec![StoredSession {
                session_id: Arc::from(agent.session("a")),
                txs,
                last_signature: Arc::from(sig),
                signature_after: Vec::new(),
                bytes_since_last_signature: 0,
                vouched: None,
            }],
        }
    }

    #[test]
    fn good_and_tampered() {
        let ok = verify_stored(&stored(false), &mut |_| None);
        assert_eq!((ok.sessions, ok.transactions), (1, 2));
        assert!(ok.failures.is_empty(), "{:?}", ok.failures);
        let bad = verify_stored(&stored(true), &mut |_| None);
        assert_eq!(bad.failures.len(), 1, "{:?}", bad.failures);
        assert!(
            bad.failures[0].contains("signature does not match"),
            "{:?}",
            bad.failures
        );
        let mut wrong_id = stored(false);
        wrong_id.id = Arc::from("co_zWrong");
        let r = verify_stored(&wrong_id, &mut |_| None);
        assert!(r.failures[0].starts_with("header:"), "{:?}", r.failures);
    }
}
