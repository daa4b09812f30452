//! Verification of what clients send, before anything is kept or forwarded
//! (docs/protocol.md §2–§3): CoValue IDs from headers, canonical transactions,
//! the BLAKE3 chain per session, Ed25519 signatures, signer resolution.
//! Pure functions and small value types; no I/O.

mod base58;
mod delete;
mod encoding;
mod header;
mod ids;
mod session;
mod signature;
mod transaction;

pub use base58::encode as encode_base58;
pub use delete::{check_delete_session, is_delete_session};
pub use encoding::{
    VerifyError, decode_signature, decode_signer, hash_string, short_hash_of_sessions,
};
pub use header::{CheckedHeader, Header, MAX_HEADER_BYTES, RulesetKind};
pub use ids::{
    AGENT_ID_MAX_LEN, CO_ID_MAX_LEN, CoId, SESSION_ID_MAX_LEN, SHORT_HASH_MAX_LEN,
    SIGNATURE_MAX_LEN, is_agent_id, is_session_id,
};
pub use session::{Author, ChainState, Signer, parse_session_id, session_signer};
pub use signature::{BatchReport, SigCache, SigCheck, signed_bytes, verify_signature};
pub use transaction::{
    CanonicalTx, canonicalize, canonicalize_tx, trusting_changes, trusting_meta,
};
