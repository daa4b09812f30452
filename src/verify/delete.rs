//! The structural rules cojson applies to delete sessions on ingest
//! (docs/protocol.md §3.6; `#isDeleteTransaction` in cojson's coValueCore):
//! a delete session (ID ending in `$`) holds exactly one transaction, never
//! belongs to a group or account, and a delete marker names this CoValue.
//!
//! Not checked here: that the author is an admin of the owning group at
//! `madeAt`, which needs group-permission evaluation (see README).

use super::encoding::VerifyError;
use super::transaction::{CanonicalTx, trusting_meta};
use serde_json::Value;

/// Whether cojson treats a session ID as a delete session.
pub fn is_delete_session(session_id: &str) -> bool {
    session_id.ends_with('$')
}

/// Checks new transactions for a delete session. `existing` is how many
/// transactions of the session are already held.
pub fn check_delete_session(
    co_id: &str,
    is_group_or_account: bool,
    existing: u32,
    new_txs: &[CanonicalTx],
) -> Result<(), VerifyError> {
    let bad = |m: &str| Err(VerifyError::InvalidDelete(m.to_string()));
    if existing > 0 || new_txs.len() > 1 {
        return bad("a delete transaction must be the only transaction in its session");
    }
    if let Some(tx) = new_txs.first()
        && let Some(meta) = trusting_meta(tx)
        && let Ok(meta) = serde_json::from_str::<Value>(&meta)
        && let Some(target) = meta.get("deleted").and_then(Value::as_str)
        && target != co_id
    {
        return Err(VerifyError::InvalidDelete(format!(
            "delete marker names {target}, not this CoValue"
        )));
    }
    if is_group_or_account {
        return bad("groups and accounts cannot be deleted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::canonicalize_tx;
    use serde_json::json;

    fn delete_tx(target: &str) -> CanonicalTx {
        canonicalize_tx(&json!({"changes":"[]","madeAt":1,"meta":format!("{{\"deleted\":\"{target}\"}}"),"privacy":"trusting"})).unwrap()
    }

    #[test]
    fn delete_sessions_follow_cojsons_shape_rules() {
        assert!(is_delete_session("co_zA_session_dXyz$"));
        assert!(!is_delete_session("co_zA_session_zXyz"));
        assert!(check_delete_session("co_zA", false, 0, &[delete_tx("co_zA")]).is_ok());
        assert!(check_delete_session("co_zA", false, 0, &[delete_tx("co_zB")]).is_err());
        assert!(check_delete_session("co_zA", false, 1, &[delete_tx("co_zA")]).is_err());
        let two = [delete_tx("co_zA"), delete_tx("co_zA")];
        assert!(check_delete_session("co_zA", false, 0, &two).is_err());
        assert!(check_delete_session("co_zA", true, 0, &[delete_tx("co_zA")]).is_err());
    }
}
