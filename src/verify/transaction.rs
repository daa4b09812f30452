//! Transactions in their canonical form (docs/protocol.md §3.2, §3.3.1): the
//! exact bytes that are hashed, stored and forwarded.

use super::encoding::VerifyError;
use serde_json::Value;
use std::sync::Arc;

/// A transaction re-serialised the way the cojson Rust core hashes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTx {
    /// Compact JSON with cojson's key order; unknown fields dropped.
    pub json: Arc<str>,
    /// Length of `changes`/`encryptedChanges` in UTF-16 code units (how
    /// cojson sizes pieces when sending).
    pub size_utf16: u32,
    /// The same field's length in UTF-8 bytes (how cojson places
    /// signature checkpoints).
    pub size_utf8: u32,
}

/// Validates the shape of one wire transaction and returns its canonical
/// form. The private shape is tried first, as the core's untagged enum does.
pub fn canonicalize_tx(tx: &Value) -> Result<CanonicalTx, VerifyError> {
    let obj = tx
        .as_object()
        .ok_or_else(|| VerifyError::BadTransaction("not an object".into()))?;
    let made_at = || -> Result<u64, VerifyError> {
        obj.get("madeAt")
            .ok_or_else(|| VerifyError::BadTransaction("missing madeAt".into()))?
            .as_u64()
            .ok_or_else(|| {
                VerifyError::BadTransaction("madeAt is not an unsigned 64-bit integer".into())
            })
    };
    let meta = match obj.get("meta") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(VerifyError::BadTransaction("meta must be a string".into())),
    };
    let has_privacy = obj.get("privacy").is_some_and(Value::is_string);
    let s = |k: &str| obj.get(k).and_then(Value::as_str);

    let mut out = String::with_capacity(64);
    let field = match (s("encryptedChanges"), s("keyUsed")) {
        (Some(enc), Some(key)) if has_privacy && meta.is_ok() => {
            out.push_str("{\"encryptedChanges\":");
            push_json_str(&mut out, enc);
            out.push_str(",\"keyUsed\":");
            push_json_str(&mut out, key);
            push_tail(&mut out, made_at()?, meta.clone()?, "private");
            enc
        }
        _ => {
            let changes = s("changes").ok_or_else(|| {
                VerifyError::BadTransaction("neither private nor trusting shape".into())
            })?;
            if !has_privacy {
                return Err(VerifyError::BadTransaction("missing privacy".into()));
            }
            out.push_str("{\"changes\":");
            push_json_str(&mut out, changes);
            push_tail(&mut out, made_at()?, meta?, "trusting");
            changes
        }
    };
    Ok(CanonicalTx {
        json: out.into(),
        size_utf16: field.encode_utf16().count() as u32,
        size_utf8: field.len() as u32,
    })
}

fn push_tail(out: &mut String, made_at: u64, meta: Option<&str>, privacy: &str) {
    out.push_str(",\"madeAt\":");
    out.push_str(&made_at.to_string());
    if let Some(m) = meta {
        out.push_str(",\"meta\":");
        push_json_str(out, m);
    }
    out.push_str(",\"privacy\":\"");
    out.push_str(privacy);
    out.push_str("\"}");
}

/// serde_json's string escaping, which equals `JSON.stringify` for every
/// string a Rust `str` can hold.
fn push_json_str(out: &mut String, s: &str) {
    // Serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}
