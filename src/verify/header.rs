//! CoValue headers: shape check, ID derivation (docs/protocol.md §3.1), and the
//! facts the engine needs from a header (priority, dependencies, signer).

use super::encoding::{VerifyError, decode_signer};
use ed25519_dalek::VerifyingKey;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesetKind {
    /// A group (or an account): `initialAdmin` is an account or agent ID.
    Group {
        initial_admin: String,
    },
    OwnedByGroup {
        group: String,
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
    pub source: Option<String>,
    /// For an account header: the signer of its owner's account sessions.
    pub account_signer: Option<VerifyingKey>,
}

impl Header {
    /// Parses `header` as the cojson Rust core does, computes its CoValue ID
    /// and checks it against `claimed_id`.
    pub fn verify(header: &Value, claimed_id: &str) -> Result<Header, VerifyError> {
        let (canonical, header) = Self::parse(header)?;
        let computed = id_of_canonical(&canonical);
        if computed != claimed_id {
            return Err(VerifyError::IdMismatch {
                claimed: claimed_id.to_string(),
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
        let source = meta
            .get("source")
            .and_then(Value::as_str)
            .map(str::to_string);
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
    pub fn group(&self) -> Option<&str> {
        match &self.ruleset {
            RulesetKind::OwnedByGroup { group } => Some(group),
            _ => None,
        }
    }

    pub fn is_group(&self) -> bool {
        matches!(self.ruleset, RulesetKind::Group { .. })
    }
}

fn id_of_canonical(canonical: &Value) -> String {
    let text = serde_json::to_string(canonical).unwrap_or_default();
    let digest = blake3::hash(text.as_bytes());
    format!("co_z{}", super::base58::encode(&digest.as_bytes()[..19]))
}

/// The signer of an `AgentID` (`sealer_z…/signer_z…`), if it is one.
fn agent_signer(agent: &str) -> Option<VerifyingKey> {
    if !agent.starts_with("sealer_") {
        return None;
    }
    let (_, signer) = agent.split_once("/signer_")?;
    decode_signer(&format!("signer_{signer}")).ok()
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
            canon.insert("initialAdmin".into(), Value::String(admin.to_string()));
            RulesetKind::Group {
                initial_admin: admin.to_string(),
            }
        }
        "ownedByGroup" => {
            let group = rs
                .get("group")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("ownedByGroup ruleset without `group`"))?;
            canon.insert("group".into(), Value::String(group.to_string()));
            match rs.get("restrictDeletion") {
                None | Some(Value::Null) => {}
                Some(b @ Value::Bool(_)) => {
                    canon.insert("restrictDeletion".into(), b.clone());
                }
                Some(_) => return Err(bad("`restrictDeletion` must be a boolean")),
            }
            RulesetKind::OwnedByGroup {
                group: group.to_string(),
            }
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
