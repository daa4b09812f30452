//! cojson's text encodings: `<prefix>_z<base58>` keys, hashes and signatures.

use ed25519_dalek::{Signature, VerifyingKey};
use std::fmt;

/// Why something a peer sent failed verification. Each variant names the
/// rule that was broken so the log line says what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    BadHeader(String),
    IdMismatch { claimed: String, computed: String },
    BadTransaction(String),
    BadSigner(String),
    BadSignature(String),
    SignatureMismatch,
    UnknownAuthor(String),
    NotAnAccount(String),
    InvalidDelete(String),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::BadHeader(m) => write!(f, "invalid header: {m}"),
            VerifyError::IdMismatch { claimed, computed } => {
                write!(
                    f,
                    "CoValue ID mismatch: header hashes to {computed}, message says {claimed}"
                )
            }
            VerifyError::BadTransaction(m) => write!(f, "invalid transaction: {m}"),
            VerifyError::BadSigner(m) => write!(f, "invalid signer: {m}"),
            VerifyError::BadSignature(m) => write!(f, "malformed signature: {m}"),
            VerifyError::SignatureMismatch => {
                write!(f, "signature does not match the session's hash chain")
            }
            VerifyError::UnknownAuthor(a) => {
                write!(f, "session author {a} is neither an agent nor an account")
            }
            VerifyError::NotAnAccount(a) => {
                write!(f, "session author {a} is not an account CoValue")
            }
            VerifyError::InvalidDelete(m) => write!(f, "invalid delete: {m}"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Decodes the base58 part after the first `_z`, as cojson's Rust core does.
fn decode_z(s: &str) -> Option<Vec<u8>> {
    let at = s.find("_z")?;
    super::base58::decode(&s[at + 2..])
}

/// `signer_z…` → Ed25519 public key.
pub fn decode_signer(s: &str) -> Result<VerifyingKey, VerifyError> {
    let bytes = decode_z(s).ok_or_else(|| VerifyError::BadSigner(s.to_string()))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| VerifyError::BadSigner(format!("{s}: not 32 bytes")))?;
    VerifyingKey::from_bytes(&arr)
        .map_err(|_| VerifyError::BadSigner(format!("{s}: not a curve point")))
}

/// `signature_z…` → Ed25519 signature.
pub fn decode_signature(s: &str) -> Result<Signature, VerifyError> {
    if !s.starts_with("signature_z") {
        return Err(VerifyError::BadSignature(truncate(s)));
    }
    let bytes = decode_z(s).ok_or_else(|| VerifyError::BadSignature(truncate(s)))?;
    let arr: [u8; 64] = bytes
        .try_into()
        .map_err(|_| VerifyError::BadSignature(format!("{}: not 64 bytes", truncate(s))))?;
    Ok(Signature::from_bytes(&arr))
}

/// `hash_z` + base58 of a 32-byte BLAKE3 digest.
pub fn hash_string(digest: &[u8; 32]) -> String {
    format!("hash_z{}", super::base58::encode(digest))
}

/// cojson's `shortHash(knownState.sessions)`, used by `reconcile`: BLAKE3 of
/// the stable JSON of `{sessionID: count}`, first 19 bytes, base58.
pub fn short_hash_of_sessions<'a>(sessions: impl IntoIterator<Item = (&'a str, u32)>) -> String {
    let map: std::collections::BTreeMap<&str, u32> = sessions.into_iter().collect();
    let json = serde_json::to_string(&map).unwrap_or_default();
    let digest = blake3::hash(json.as_bytes());
    format!(
        "shortHash_z{}",
        super::base58::encode(&digest.as_bytes()[..19])
    )
}

pub(crate) fn truncate(s: &str) -> String {
    let mut end = s.len().min(60);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
