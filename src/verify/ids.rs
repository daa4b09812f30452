//! Fixed-shape identifiers, checked at the edge (docs/protocol.md §2): a
//! field from a client is length-checked before anything decodes it, so
//! no client-chosen size reaches base58 or a signature decoder.

use std::fmt;

use super::base58;

/// `co_z` + base58 of 19 bytes: at most 26 digits.
pub const CO_ID_MAX_LEN: usize = 4 + 26;
/// A session ID: `<account or agent>_session_<z|d><base58>[$]`. Real ones
/// are at most ~130 characters (an agent ID is two 44-digit keys).
pub const SESSION_ID_MAX_LEN: usize = 256;
/// `sealer_z` + ≤ 44 digits + `/signer_z` + ≤ 44 digits.
pub const AGENT_ID_MAX_LEN: usize = 8 + 44 + 9 + 44;
/// `signature_z` + base58 of 64 bytes (at most 88 digits).
pub const SIGNATURE_MAX_LEN: usize = 11 + 88;
/// `shortHash_z` + base58 of 19 bytes (reconcile values).
pub const SHORT_HASH_MAX_LEN: usize = 11 + 26;

/// A CoValue ID, validated and held inline: copying or hashing it never
/// allocates, and its size is fixed whatever a client sends.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoId {
    len: u8,
    text: [u8; CO_ID_MAX_LEN],
}

impl CoId {
    /// `co_z` followed by 1 to 26 base58 digits; anything else is `None`.
    pub fn parse(s: &str) -> Option<CoId> {
        let digits = s.strip_prefix("co_z")?;
        if digits.is_empty() || digits.len() > CO_ID_MAX_LEN - 4 || !base58::is_digits(digits) {
            return None;
        }
        let mut text = [0u8; CO_ID_MAX_LEN];
        text[..s.len()].copy_from_slice(s.as_bytes());
        Some(CoId {
            len: s.len() as u8,
            text,
        })
    }

    /// The ID of a header hash: `co_z` + base58 of its first 19 bytes.
    pub fn from_digest(digest: &[u8; 32]) -> CoId {
        let text = format!("co_z{}", base58::encode(&digest[..19]));
        // Base58 of 19 bytes is at most 26 digits, so this always parses.
        CoId::parse(&text).unwrap_or(CoId {
            len: 0,
            text: [0; CO_ID_MAX_LEN],
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `parse`).
        std::str::from_utf8(&self.text[..self.len as usize]).unwrap_or_default()
    }
}

impl fmt::Display for CoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl PartialEq<str> for CoId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// Whether `s` is an agent ID: `sealer_z<base58>/signer_z<base58>`, each
/// key at most 44 digits.
pub fn is_agent_id(s: &str) -> bool {
    let Some((sealer, signer)) = s.split_once('/') else {
        return false;
    };
    let key = |part: &str, prefix: &str| {
        part.strip_prefix(prefix)
            .is_some_and(|d| !d.is_empty() && d.len() <= 44 && base58::is_digits(d))
    };
    s.len() <= AGENT_ID_MAX_LEN && key(sealer, "sealer_z") && key(signer, "signer_z")
}

/// Whether `s` has the shape of a session ID cojson makes: an account or
/// agent author, `_session_`, then `z<digits>` (a live session) or
/// `d<digits>$` (a delete session). Bounded before anything else.
pub fn is_session_id(s: &str) -> bool {
    if s.len() > SESSION_ID_MAX_LEN {
        return false;
    }
    let Some(at) = s.find("_session_") else {
        return false;
    };
    let (author, rest) = (&s[..at], &s[at + "_session_".len()..]);
    let author_ok = CoId::parse(author).is_some() || is_agent_id(author);
    let suffix_ok = match rest.as_bytes().first() {
        Some(b'z') => !rest[1..].is_empty() && base58::is_digits(&rest[1..]),
        Some(b'd') => rest[1..]
            .strip_suffix('$')
            .is_some_and(|d| !d.is_empty() && base58::is_digits(d)),
        _ => false,
    };
    author_ok && suffix_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn co_ids() {
        let id = CoId::parse("co_zYEF8Q9pn2QD5TjTvgRDa4VktLN").unwrap();
        assert_eq!(id.as_str(), "co_zYEF8Q9pn2QD5TjTvgRDa4VktLN");
        assert_eq!(id.to_string(), "co_zYEF8Q9pn2QD5TjTvgRDa4VktLN");
        for bad in [
            "",
            "co_z",
            "co_zl",   // not a base58 digit
            "co_x123", // wrong prefix
            "co_zYEF8Q9pn2QD5TjTvgRDa4VktLNx",
            "co_zABC\n",
        ] {
            assert!(CoId::parse(bad).is_none(), "{bad:?}");
        }
        assert!(CoId::parse(&format!("co_z{}", "1".repeat(26))).is_some());
        assert!(CoId::parse(&format!("co_z{}", "1".repeat(27))).is_none());
        let h = blake3::hash(b"x");
        let from = CoId::from_digest(h.as_bytes());
        assert_eq!(
            from.as_str(),
            format!("co_z{}", bs58::encode(&h.as_bytes()[..19]).into_string())
        );
    }

    #[test]
    fn session_and_agent_ids() {
        let agent = "sealer_z6zkK4D3xqDdJzKvDAFigpEiBwdSVLDwKVf3LNdGrCTNF/signer_zkXQFKcvyCrzJzmBF7MMtPMnkTjsMsW3XKCA9gj2cnn3";
        assert!(is_agent_id(agent));
        assert!(is_session_id(&format!("{agent}_session_zABC")));
        assert!(is_session_id(
            "co_zYEF8Q9pn2QD5TjTvgRDa4VktLN_session_zd9ek3"
        ));
        assert!(is_session_id(
            "co_zYEF8Q9pn2QD5TjTvgRDa4VktLN_session_dAbC$"
        ));
        for bad in [
            "co_zYEF_session_dAbC",   // delete session without `$`
            "co_zYEF_session_zAbC$",  // live session with `$`
            "co_zYEF_session_z",      // no digits
            "co_zYEF_sessionzAbC",    // no separator
            "nobody_session_zAbC",    // unknown author
            "sealer_zA_session_zAbC", // agent without signer
        ] {
            assert!(!is_session_id(bad), "{bad:?}");
        }
        let long = format!("co_zA_session_z{}", "1".repeat(SESSION_ID_MAX_LEN));
        assert!(!is_session_id(&long));
        assert!(!is_agent_id(&format!(
            "sealer_z{}/signer_zA",
            "1".repeat(45)
        )));
    }
}
