//! Verification of what clients send, before anything is kept or forwarded
//! (docs/protocol.md §2–§3): CoValue IDs from headers, canonical transactions,
//! the BLAKE3 chain per session, Ed25519 signatures, signer resolution.
//! Pure functions and small value types; no I/O.

mod base58;
mod delete;
mod encoding;
mod header;
mod session;
mod signature;
mod transaction;

pub use delete::{check_delete_session, is_delete_session};
pub use encoding::{
    VerifyError, decode_signature, decode_signer, hash_string, short_hash_of_sessions,
};
pub use header::{Header, RulesetKind};
pub use session::{Author, ChainState, Signer, parse_session_id, session_signer};
pub use signature::{SigCache, SigCheck, signed_bytes, verify_signature};
pub use transaction::{CanonicalTx, canonicalize_tx};
