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
    /// Every text inside comes from a client: escaped and clipped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::logging::clip;
        match self {
            VerifyError::BadHeader(m) => write!(f, "invalid header: {}", clip(m)),
            VerifyError::IdMismatch { claimed, computed } => {
                write!(
                    f,
                    "CoValue ID mismatch: header hashes to {}, message says {}",
                    clip(computed),
                    clip(claimed)
                )
            }
            VerifyError::BadTransaction(m) => write!(f, "invalid transaction: {}", clip(m)),
            VerifyError::BadSigner(m) => write!(f, "invalid signer: {}", clip(m)),
            VerifyError::BadSignature(m) => write!(f, "malformed signature: {}", clip(m)),
            VerifyError::SignatureMismatch => {
                write!(f, "signature does not match the session's hash chain")
            }
            VerifyError::UnknownAuthor(a) => {
                write!(
                    f,
                    "session author {} is neither an agent nor an account",
                    clip(a)
                )
            }
            VerifyError::NotAnAccount(a) => {
                write!(f, "session author {} is not an account CoValue", clip(a))
            }
            VerifyError::InvalidDelete(m) => write!(f, "invalid delete: {}", clip(m)),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Decodes the base58 part after the first `_z` (as cojson's Rust core
/// does) into exactly `N` bytes; the length is checked first.
fn decode_z<const N: usize>(s: &str) -> Option<[u8; N]> {
    let at = s.find("_z")?;
    super::base58::decode_fixed::<N>(&s[at + 2..])
}

/// `signer_z…` → Ed25519 public key.
pub fn decode_signer(s: &str) -> Result<VerifyingKey, VerifyError> {
    let arr: [u8; 32] = decode_z(s).ok_or_else(|| {
        VerifyError::BadSigner(format!("{}: not 32 bytes of base58", truncate(s)))
    })?;
    VerifyingKey::from_bytes(&arr)
        .map_err(|_| VerifyError::BadSigner(format!("{}: not a curve point", truncate(s))))
}

/// `signature_z…` → Ed25519 signature.
pub fn decode_signature(s: &str) -> Result<Signature, VerifyError> {
    if !s.starts_with("signature_z") {
        return Err(VerifyError::BadSignature(truncate(s)));
    }
    let arr: [u8; 64] = decode_z(s).ok_or_else(|| {
        VerifyError::BadSignature(format!("{}: not 64 bytes of base58", truncate(s)))
    })?;
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

/// Client text kept in an error: at most a little more than a log line
/// shows (Display escapes and clips it).
pub(crate) fn truncate(s: &str) -> String {
    let mut end = s.len().min(crate::logging::CLIP_CHARS * 4 + 4);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
