//! Counters the engine keeps for `GET /metrics`: plain integers bumped
//! where the event happens and read by the reactor when scraped. They only
//! ever grow (Prometheus counters), so a reader needs no coordination.

use crate::verify::VerifyError;

/// Why transactions a peer sent were not accepted. A fixed, small set: the
/// reason is a metric label, and labels must not grow with input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The header does not hash to the claimed ID, or is malformed.
    InvalidHeader,
    /// The session's author is not an agent or an account.
    InvalidAuthor,
    /// The session's author account is not available (yet).
    AccountMissing,
    /// A transaction is malformed (cannot be canonicalised).
    InvalidTransaction,
    /// The signature is malformed or does not match the hash chain.
    InvalidSignature,
    /// The batch starts after what we have: the client must resend.
    Gap,
    /// The CoValue already failed verification for this peer.
    ErroredCoValue,
    /// Too many messages of the peer wait for dependencies.
    TooManyPending,
    /// A delete session breaks cojson's shape rules.
    InvalidDelete,
    /// A dependency is not available and the sender lacks it too.
    MissingDependency,
    /// The chain of owner groups and branch sources is too deep.
    TooDeep,
}

impl RejectReason {
    pub const ALL: [RejectReason; 11] = [
        RejectReason::InvalidHeader,
        RejectReason::InvalidAuthor,
        RejectReason::AccountMissing,
        RejectReason::InvalidTransaction,
        RejectReason::InvalidSignature,
        RejectReason::Gap,
        RejectReason::ErroredCoValue,
        RejectReason::TooManyPending,
        RejectReason::InvalidDelete,
        RejectReason::MissingDependency,
        RejectReason::TooDeep,
    ];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::InvalidHeader => "invalid_header",
            RejectReason::InvalidAuthor => "invalid_author",
            RejectReason::AccountMissing => "account_missing",
            RejectReason::InvalidTransaction => "invalid_transaction",
            RejectReason::InvalidSignature => "invalid_signature",
            RejectReason::Gap => "gap",
            RejectReason::ErroredCoValue => "errored_covalue",
            RejectReason::TooManyPending => "too_many_pending",
            RejectReason::InvalidDelete => "invalid_delete",
            RejectReason::MissingDependency => "missing_dependency",
            RejectReason::TooDeep => "too_deep",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<&VerifyError> for RejectReason {
    fn from(e: &VerifyError) -> RejectReason {
        match e {
            VerifyError::BadHeader(_) | VerifyError::IdMismatch { .. } => {
                RejectReason::InvalidHeader
            }
            VerifyError::BadTransaction(_) => RejectReason::InvalidTransaction,
            VerifyError::BadSignature(_) | VerifyError::SignatureMismatch => {
                RejectReason::InvalidSignature
            }
            VerifyError::BadSigner(_)
            | VerifyError::UnknownAuthor(_)
            | VerifyError::NotAnAccount(_) => RejectReason::InvalidAuthor,
            VerifyError::InvalidDelete(_) => RejectReason::InvalidDelete,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct EngineStats {
    /// Transactions verified and handed to storage.
    pub transactions_accepted: u64,
    rejected: [u64; RejectReason::ALL.len()],
}

impl EngineStats {
    pub fn accept(&mut self, n: usize) {
        self.transactions_accepted += n as u64;
    }

    pub fn reject(&mut self, reason: RejectReason, n: usize) {
        if let Some(c) = self.rejected.get_mut(reason.index()) {
            *c += n as u64;
        }
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected.get(reason.index()).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason() {
        let mut s = EngineStats::default();
        s.accept(3);
        s.reject(RejectReason::Gap, 2);
        s.reject(RejectReason::from(&VerifyError::SignatureMismatch), 1);
        assert_eq!(s.transactions_accepted, 3);
        assert_eq!(s.rejected(RejectReason::Gap), 2);
        assert_eq!(s.rejected(RejectReason::InvalidSignature), 1);
        assert_eq!(s.rejected(RejectReason::InvalidHeader), 0);
        let labels: Vec<&str> = RejectReason::ALL.iter().map(|r| r.label()).collect();
        let mut unique = labels.clone();
        unique.dedup();
        assert_eq!(labels.len(), unique.len());
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "ALL is in declaration order");
        }
    }
}
