//! CoValue headers: shape check, ID derivation (docs/protocol.md §3.1), and the
//! facts the engine needs from a header (priority, dependencies, signer).

use super::encoding::{VerifyError, decode_signer};
use ed25519_dalek::VerifyingKey;
use serde_json::{Map, Value};

use super::ids::{AGENT_ID_MAX_LEN, CoId, is_agent_id};

/// Largest header accepted from a client. Real headers are about 200–250
/// bytes (cojson and jazz-tools write `type`, `ruleset`, a small `meta`,
/// `createdAt` and `uniqueness`); this leaves room for any app's unique
/// keys, and bounds the cost of parsing and hashing one.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesetKind {
    /// A group (or an account): `initialAdmin` is an account or agent ID.
    Group {
        initial_admin: String,
    },
    OwnedByGroup {
        group: CoId,
    },
    UnsafeAllowAll,
}

/// A header that parsed and whose ID matched.
#[derive(Debug, Clone)]
pub struct Header {
    pub ruleset: RulesetKind,
    /// 0 (high: accounts, groups), 3 (medium), 6 (low: binary streams).
    pub priority: u8,
    /// `meta.source` of branches: a dependency.
    pub source: Option<CoId>,
    /// For an account header: the signer of its owner's account sessions.
    pub account_signer: Option<VerifyingKey>,
}

/// A checked header: its facts, and the text the server stores and sends:
/// the canonical JSON the ID was computed from (unknown fields dropped), so
/// whatever else a first uploader attached never reaches anyone.
#[derive(Debug, Clone)]
pub struct CheckedHeader {
    pub header: Header,
    pub json: String,
}

impl Header {
    /// Checks header text from a client or from storage: at most
    /// `max_bytes` long, shaped as the cojson Rust core parses it, and
    /// hashing to `claimed`.
    pub fn check(
        text: &str,
        claimed: &CoId,
        max_bytes: usize,
    ) -> Result<CheckedHeader, VerifyError> {
        if text.len() > max_bytes {
            return Err(VerifyError::BadHeader(format!(
                "{} bytes, more than the {max_bytes} allowed",
                text.len()
            )));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| VerifyError::BadHeader(format!("not JSON: {e}")))?;
        let (canonical, header) = Self::parse(&value)?;
        let json = serde_json::to_string(&canonical).unwrap_or_default();
        let computed = CoId::from_digest(blake3::hash(json.as_bytes()).as_bytes());
        if computed != *claimed {
            return Err(VerifyError::IdMismatch {
                claimed: claimed.to_string(),
                computed: computed.to_string(),
            });
        }
        Ok(CheckedHeader { header, json })
    }

    /// Parses `header` as the cojson Rust core does, computes its CoValue ID
    /// and checks it against `claimed_id`.
    pub fn verify(header: &Value, claimed_id: &str) -> Result<Header, VerifyError> {
        let (canonical, header) = Self::parse(header)?;
        let computed = id_of_canonical(&canonical);
        if computed != claimed_id {
            return Err(VerifyError::IdMismatch {
                claimed: super::encoding::truncate(claimed_id),
                computed,
            });
        }
        Ok(header)
    }

    /// The CoValue ID a header hashes to.
    pub fn id_of(header: &Value) -> Result<String, VerifyError> {
        Self::parse(header).map(|(c, _)| id_of_canonical(&c))
    }

    /// Returns the canonical typed value (unknown fields dropped, keys sorted
    /// by serde_json's BTreeMap, i.e. by UTF-8 bytes like the Rust core) and
    /// the extracted facts.
    fn parse(v: &Value) -> Result<(Value, Header), VerifyError> {
        let bad = |m: &str| VerifyError::BadHeader(m.to_string());
        let obj = v.as_object().ok_or_else(|| bad("not an object"))?;
        let ty = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing string `type`"))?;
        let rs = obj
            .get("ruleset")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("missing `ruleset` object"))?;
        let (ruleset, canon_ruleset) = parse_ruleset(rs)?;
        // A missing `meta` reads as null (the core computes the ID that way).
        let meta = match obj.get("meta") {
            None | Some(Value::Null) => Value::Null,
            Some(m @ Value::Object(_)) => m.clone(),
            Some(_) => return Err(bad("`meta` must be an object or null")),
        };
        let created_at = match obj.get("createdAt") {
            None => None,
            Some(Value::Null) => Some(Value::Null),
            Some(s @ Value::String(_)) => Some(s.clone()),
            Some(_) => return Err(bad("`createdAt` must be a string or null")),
        };
        let uniqueness = parse_uniqueness(obj.get("uniqueness"))?;

        let mut canon = Map::new();
        canon.insert("type".into(), Value::String(ty.to_string()));
        canon.insert("ruleset".into(), canon_ruleset);
        canon.insert("meta".into(), meta.clone());
        if let Some(c) = created_at {
            canon.insert("createdAt".into(), c);
        }
        canon.insert("uniqueness".into(), uniqueness);

        let meta_type = meta.get("type").and_then(Value::as_str);
        let priority =
            if meta_type == Some("account") || matches!(ruleset, RulesetKind::Group { .. }) {
                0
            } else if ty == "costream" && meta_type == Some("binary") {
                6
            } else {
                3
            };
        // A branch names its source; a source that is not a CoValue ID
        // could never be loaded, so the header is refused.
        let source = match meta.get("source").and_then(Value::as_str) {
            None => None,
            Some(s) => {
                Some(CoId::parse(s).ok_or_else(|| bad("`meta.source` is not a CoValue ID"))?)
            }
        };
        let account_signer = match (&ruleset, ty, meta_type) {
            (RulesetKind::Group { initial_admin }, "comap", Some("account")) => {
                agent_signer(initial_admin)
            }
            _ => None,
        };
        Ok((
            Value::Object(canon),
            Header {
                ruleset,
                priority,
                source,
                account_signer,
            },
        ))
    }

    /// The owning group, for `ownedByGroup` values.
    pub fn group(&self) -> Option<CoId> {
        match &self.ruleset {
            RulesetKind::OwnedByGroup { group } => Some(*group),
            _ => None,
        }
    }

    pub fn is_group(&self) -> bool {
        matches!(self.ruleset, RulesetKind::Group { .. })
    }

    /// The CoValues this header names (owner group, branch source): what
    /// must exist before the CoValue is accepted, and what sets its depth.
    pub fn dependencies(&self) -> impl Iterator<Item = CoId> + '_ {
        self.group().into_iter().chain(self.source)
    }
}

fn id_of_canonical(canonical: &Value) -> String {
    let text = serde_json::to_string(canonical).unwrap_or_default();
    let digest = blake3::hash(text.as_bytes());
    format!("co_z{}", super::base58::encode(&digest.as_bytes()[..19]))
}

/// The signer of an `AgentID` (`sealer_z…/signer_z…`), if it is one. The
/// shape (and so the length) is checked before anything is decoded.
fn agent_signer(agent: &str) -> Option<VerifyingKey> {
    if !is_agent_id(agent) {
        return None;
    }
    let (_, signer) = agent.split_once('/')?;
    decode_signer(signer).ok()
}

fn parse_ruleset(rs: &Map<String, Value>) -> Result<(RulesetKind, Value), VerifyError> {
    let bad = |m: &str| VerifyError::BadHeader(m.to_string());
    let kind = rs
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("ruleset without `type`"))?;
    let mut canon = Map::new();
    canon.insert("type".into(), Value::String(kind.to_string()));
    let ruleset = match kind {
        "group" => {
            let admin = rs
                .get("initialAdmin")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("group ruleset without `initialAdmin`"))?;
            // An account or agent ID; anything longer could never be one.
            if admin.len() > AGENT_ID_MAX_LEN {
                return Err(bad("`initialAdmin` is too long for an account or agent ID"));
            }
            canon.insert("initialAdmin".into(), Value::String(admin.to_string()));
            RulesetKind::Group {
                initial_admin: admin.to_string(),
            }
        }
        "ownedByGroup" => {
            let group_text = rs
                .get("group")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("ownedByGroup ruleset without `group`"))?;
            let group = CoId::parse(group_text)
                .ok_or_else(|| bad("ownedByGroup `group` is not a CoValue ID"))?;
            canon.insert("group".into(), Value::String(group_text.to_string()));
            match rs.get("restrictDeletion") {
                None | Some(Value::Null) => {}
                Some(b @ Value::Bool(_)) => {
                    canon.insert("restrictDeletion".into(), b.clone());
                }
                Some(_) => return Err(bad("`restrictDeletion` must be a boolean")),
            }
            RulesetKind::OwnedByGroup { group }
        }
        "unsafeAllowAll" => RulesetKind::UnsafeAllowAll,
        other => {
            return Err(VerifyError::BadHeader(format!(
                "unknown ruleset type {other:?}"
            )));
        }
    };
    Ok((ruleset, Value::Object(canon)))
}

/// Uniqueness: string, boolean, null, integer, or an object of non-empty
/// string keys to string values. Floats are rejected, as by the core.
fn parse_uniqueness(u: Option<&Value>) -> Result<Value, VerifyError> {
    let bad = |m: &str| VerifyError::BadHeader(m.to_string());
    match u {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(v @ (Value::String(_) | Value::Bool(_))) => Ok(v.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Value::Number(n.clone())),
        Some(Value::Number(_)) => Err(bad("uniqueness must not be a float")),
        Some(Value::Object(o)) => {
            for (k, v) in o {
                if k.is_empty() || !v.is_string() {
                    return Err(bad(
                        "uniqueness object needs non-empty keys and string values",
                    ));
                }
            }
            Ok(Value::Object(o.clone()))
        }
        Some(Value::Array(_)) => Err(bad("uniqueness must not be an array")),
    }
}
