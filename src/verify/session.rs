//! Sessions: who signs them (docs/protocol.md §3.4) and the running hash chain
//! whose signature is checked batch by batch (§3.3).

use super::encoding::{VerifyError, decode_signer, hash_string, truncate};
use super::ids::CoId;
use super::signature::{SigCache, verify_signature};
use ed25519_dalek::VerifyingKey;

/// The author named in a session ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Author<'a> {
    /// `sealer_z…/signer_z…`: signs with the embedded signer key.
    Agent { signer: &'a str },
    /// `co_z…`: signs with the account header's initial admin agent.
    Account(CoId),
    /// Anything else; cojson rejects such sessions.
    Invalid(&'a str),
}

/// Splits a session ID into its author (the prefix before the first
/// `_session`) and whether it is a delete session (ends with `$`).
pub fn parse_session_id(session_id: &str) -> (Author<'_>, bool) {
    let author = match session_id.find("_session") {
        Some(at) => &session_id[..at],
        None => session_id,
    };
    let is_delete = session_id.ends_with('$') && session_id.contains("_session_d");
    let kind = if author.starts_with("co_") {
        match CoId::parse(author) {
            Some(id) => Author::Account(id),
            None => Author::Invalid(author),
        }
    } else if author.starts_with("sealer_") {
        match author.find("/signer_") {
            Some(slash) => Author::Agent {
                signer: &author[slash + 1..],
            },
            None => Author::Invalid(author),
        }
    } else {
        Author::Invalid(author)
    };
    (kind, is_delete)
}

/// The verified prefix of one session: BLAKE3 over the concatenated
/// canonical transactions so far.
#[derive(Clone, Default)]
pub struct ChainState {
    hasher: blake3::Hasher,
}

impl ChainState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The state after appending `txs` to the prefix (no signature check).
    pub fn extend<'a>(&self, txs: impl IntoIterator<Item = &'a str>) -> ChainState {
        let mut next = self.clone();
        for tx in txs {
            next.hasher.update(tx.as_bytes());
        }
        next
    }

    /// BLAKE3 digest of the prefix.
    pub fn digest(&self) -> [u8; 32] {
        *self.hasher.finalize().as_bytes()
    }

    /// Hashes `txs` after the current prefix and checks `signature` over the
    /// result (unless `cache` already holds that verdict). On success
    /// returns the advanced state; `self` is untouched either way, so a
    /// rejected batch leaves nothing behind.
    pub fn verify_batch<'a>(
        &self,
        txs: impl IntoIterator<Item = &'a str>,
        signature: &str,
        signer: &VerifyingKey,
        cache: &SigCache,
    ) -> Result<ChainState, VerifyError> {
        let next = self.extend(txs);
        let digest = next.digest();
        match cache.verdict(signer, &digest, signature) {
            Some(true) => {}
            Some(false) => return Err(VerifyError::SignatureMismatch),
            None => verify_signature(signer, &digest, signature)?,
        }
        Ok(next)
    }

    /// `hash_z…` of the prefix.
    pub fn hash_string(&self) -> String {
        hash_string(self.hasher.finalize().as_bytes())
    }
}

/// Who signs a session.
#[derive(Debug)]
pub enum Signer {
    Key(VerifyingKey),
    /// The author is an account that is not available (yet).
    AccountMissing,
    Invalid(VerifyError),
}

/// Resolves the signer of a session from its ID (docs/protocol.md §3.4): the
/// agent's own key, or the initial admin of the author account's header.
/// `account` looks an account author up: `None` when it is not available,
/// `Some(None)` when it is available but not an account.
pub fn session_signer(
    session_id: &str,
    account: &mut dyn FnMut(CoId) -> Option<Option<VerifyingKey>>,
) -> Signer {
    match parse_session_id(session_id).0 {
        Author::Agent { signer } => match decode_signer(signer) {
            Ok(k) => Signer::Key(k),
            Err(e) => Signer::Invalid(e),
        },
        Author::Account(acc) => match account(acc) {
            None => Signer::AccountMissing,
            Some(Some(k)) => Signer::Key(k),
            Some(None) => Signer::Invalid(VerifyError::NotAnAccount(acc.to_string())),
        },
        Author::Invalid(a) => Signer::Invalid(VerifyError::UnknownAuthor(truncate(a))),
    }
}
