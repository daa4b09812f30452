//! Re-verification of a stored CoValue for `maia-sync check`: the same
//! rules a load from storage applies (header ID, canonical transactions,
//! hash chain and signature at every stored cut point), but reporting
//! every failing session instead of leaving it out with a warning.

use super::covalue::CoValue;
use crate::storage::{StoredCoValue, StoredSession};
use crate::verify::Header;
use ed25519_dalek::VerifyingKey;
use serde_json::Value;

/// What one stored CoValue holds and what of it fails verification.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredReport {
    pub sessions: usize,
    pub transactions: usize,
    /// One line per failure: the header, or a session and why.
    pub failures: Vec<String>,
}

/// Verifies `stored` as `Engine` does when it loads it. `signer_of`
/// resolves an account ID to its signer (None: not stored / not an account).
pub fn verify_stored(
    stored: &StoredCoValue,
    signer_of: &mut dyn FnMut(&str) -> Option<VerifyingKey>,
) -> StoredReport {
    let mut report = StoredReport {
        sessions: stored.sessions.len(),
        transactions: stored.sessions.iter().map(|s| s.txs.len()).sum(),
        failures: Vec::new(),
    };
    let header = serde_json::from_str::<Value>(&stored.header)
        .map_err(|e| format!("header is not JSON: {e}"))
        .and_then(|v| Header::verify(&v, &stored.id).map_err(|e| e.to_string()));
    let header = match header {
        Ok(h) => h,
        Err(e) => {
            report.failures.push(format!("header: {e}"));
            return report;
        }
    };
    let mut cv = CoValue::new(stored.id.clone(), stored.header.clone(), header);
    for s in &stored.sessions {
        // A check trusts no earlier verification: every signature again.
        let s = StoredSession {
            vouched: None,
            ..s.clone()
        };
        if let Err(e) = cv.load_session(&s, signer_of) {
            report
                .failures
                .push(format!("session {}: {e}", s.session_id));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
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
