//! Transactions in their canonical form (docs/protocol.md §3.2, §3.3.1): the
//! exact bytes that are hashed, stored and forwarded.

use super::encoding::VerifyError;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
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
    pub trusting: bool,
}

/// A wire transaction with every field kept raw: the core's untagged enum
/// tries the private shape, then the trusting one, ignoring fields the
/// shape does not name, so a field's type only matters to the shape that
/// uses it.
#[derive(Deserialize)]
struct WireTx<'a> {
    #[serde(borrow, default)]
    privacy: Option<&'a RawValue>,
    #[serde(borrow, default)]
    changes: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "encryptedChanges")]
    encrypted_changes: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "keyUsed")]
    key_used: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "madeAt")]
    made_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    meta: Option<&'a RawValue>,
}

fn string(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Cow<'_, str>>(raw?.get()).ok()
}

fn bad(m: &str) -> VerifyError {
    VerifyError::BadTransaction(m.to_string())
}

/// Validates the shape of one wire transaction (its JSON text) and
/// returns its canonical form. The private shape is tried first, as the
/// core's untagged enum does.
pub fn canonicalize(text: &str) -> Result<CanonicalTx, VerifyError> {
    let tx: WireTx<'_> =
        serde_json::from_str(text).map_err(|e| bad(&format!("not a transaction object: {e}")))?;
    let made_at = || -> Result<u64, VerifyError> {
        let raw = tx.made_at.ok_or_else(|| bad("missing madeAt"))?;
        serde_json::from_str::<u64>(raw.get())
            .map_err(|_| bad("madeAt is not an unsigned 64-bit integer"))
    };
    let meta: Result<Option<Cow<'_, str>>, VerifyError> = match tx.meta {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str::<Cow<'_, str>>(raw.get())
            .map(Some)
            .map_err(|_| bad("meta must be a string")),
    };
    let has_privacy = string(tx.privacy).is_some();
    let mut out = Vec::with_capacity(text.len());
    let (field, trusting) = match (string(tx.encrypted_changes), string(tx.key_used)) {
        (Some(enc), Some(key)) if has_privacy && meta.is_ok() => {
            out.extend_from_slice(b"{\"encryptedChanges\":");
            push_json_str(&mut out, &enc);
            out.extend_from_slice(b",\"keyUsed\":");
            push_json_str(&mut out, &key);
            push_tail(&mut out, made_at()?, meta.clone()?.as_deref(), "private");
            (enc, false)
        }
        _ => {
            let changes =
                string(tx.changes).ok_or_else(|| bad("neither private nor trusting shape"))?;
            if !has_privacy {
                return Err(bad("missing privacy"));
            }
            out.extend_from_slice(b"{\"changes\":");
            push_json_str(&mut out, &changes);
            push_tail(&mut out, made_at()?, meta?.as_deref(), "trusting");
            (changes, true)
        }
    };
    // Only `str`s were written, so this is valid UTF-8.
    let json = String::from_utf8(out).map_err(|_| bad("not UTF-8"))?;
    Ok(CanonicalTx {
        json: json.into(),
        size_utf16: field.encode_utf16().count() as u32,
        size_utf8: field.len() as u32,
        trusting,
    })
}

/// `canonicalize` for a transaction already parsed into a JSON tree.
pub fn canonicalize_tx(tx: &serde_json::Value) -> Result<CanonicalTx, VerifyError> {
    canonicalize(&tx.to_string())
}

fn push_tail(out: &mut Vec<u8>, made_at: u64, meta: Option<&str>, privacy: &str) {
    out.extend_from_slice(b",\"madeAt\":");
    out.extend_from_slice(made_at.to_string().as_bytes());
    if let Some(m) = meta {
        out.extend_from_slice(b",\"meta\":");
        push_json_str(out, m);
    }
    out.extend_from_slice(b",\"privacy\":\"");
    out.extend_from_slice(privacy.as_bytes());
    out.extend_from_slice(b"\"}");
}

/// serde_json's string escaping, which equals `JSON.stringify` for every
/// string a Rust `str` can hold.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The `meta` text of a canonical trusting transaction (`None` for a
/// private one or when it has none).
pub fn trusting_meta(tx: &CanonicalTx) -> Option<String> {
    #[derive(Deserialize)]
    struct Meta {
        meta: Option<String>,
    }
    if !tx.trusting {
        return None;
    }
    serde_json::from_str::<Meta>(&tx.json).ok()?.meta
}

/// The `changes` text of a canonical trusting transaction.
pub fn trusting_changes(tx_json: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Changes {
        changes: Option<String>,
    }
    serde_json::from_str::<Changes>(tx_json).ok()?.changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let t = canonicalize(r#"{"privacy":"trusting","madeAt":5,"changes":"[1]","x":{"y":1}}"#)
            .unwrap();
        assert_eq!(
            &*t.json,
            r#"{"changes":"[1]","madeAt":5,"privacy":"trusting"}"#
        );
        assert!(t.trusting);
        let p = canonicalize(
            r#"{"encryptedChanges":"encrypted_Uab","keyUsed":"key_z1","madeAt":7,"meta":"m","privacy":"private"}"#,
        )
        .unwrap();
        assert_eq!(
            &*p.json,
            r#"{"encryptedChanges":"encrypted_Uab","keyUsed":"key_z1","madeAt":7,"meta":"m","privacy":"private"}"#
        );
        assert!(!p.trusting);
        // A field of the wrong type only matters to the shape that uses it.
        let t = canonicalize(r#"{"privacy":"trusting","madeAt":1,"changes":"[]","keyUsed":5}"#);
        assert!(t.is_ok());
        for bad in [
            "[]",
            r#"{"privacy":"trusting","madeAt":1.5,"changes":"[]"}"#,
            r#"{"privacy":"trusting","madeAt":-1,"changes":"[]"}"#,
            r#"{"madeAt":1,"changes":"[]"}"#,
            r#"{"privacy":"trusting","madeAt":1,"changes":5}"#,
            r#"{"privacy":"trusting","madeAt":1,"changes":"[]","meta":5}"#,
        ] {
            assert!(canonicalize(bad).is_err(), "{bad}");
        }
        let t = canonicalize(
            r#"{"privacy":"trusting","madeAt":1,"changes":"[]","meta":"{\"deleted\":\"co_zA\"}"}"#,
        )
        .unwrap();
        assert_eq!(trusting_meta(&t).as_deref(), Some(r#"{"deleted":"co_zA"}"#));
        assert_eq!(trusting_changes(&t.json).as_deref(), Some("[]"));
    }
}
