//! Who a request comes from: the token's issuer and subject (hashed into a [`PrincipalId`],
//! what a legacy session is bound to and what replicas store) and its scopes.

use sha2::{Digest, Sha256};

/// The header a forwarding node puts the verified principal in when it relays a request to
/// the node holding the session (the token itself does not cross the peer link). Trusted only
/// on requests that arrive over the peer link; removed from every client request.
pub const FORWARDED_HEADER: &str = "mcpcluster-principal";

/// SHA-256 of `issuer`, a zero byte and `subject`: fixed size, and the peer link and the
/// replicas carry no user identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrincipalId(pub [u8; 32]);

impl std::fmt::Debug for PrincipalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrincipalId({})", hex(&self.0[..6]))
    }
}

impl PrincipalId {
    /// The id in hex (what a signed `requestState` binds a held call to).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The id of `subject` at `issuer`.
    pub fn of(issuer: &str, subject: &str) -> Self {
        let mut h = Sha256::new();
        h.update(issuer.as_bytes());
        h.update([0u8]);
        h.update(subject.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(&h.finalize());
        Self(out)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Issuer + subject, hashed.
    pub id: PrincipalId,
    /// The token's `sub` (for logs only).
    pub subject: String,
    /// The scopes the token grants.
    pub scopes: Vec<String>,
}

impl Principal {
    /// Whether the token grants `scope`.
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The [`FORWARDED_HEADER`] value: `v1 <id hex> <scope> <scope> ...` (scopes are scope
    /// tokens: printable ASCII without spaces, so the value is a valid header value).
    pub fn to_forwarded(&self) -> String {
        let mut v = format!("v1 {}", hex(&self.id.0));
        for s in &self.scopes {
            v.push(' ');
            v.push_str(s);
        }
        v
    }

    /// Parses a [`FORWARDED_HEADER`] value; `None` when malformed.
    pub fn from_forwarded(value: &str) -> Option<Self> {
        let mut parts = value.split(' ');
        if parts.next()? != "v1" {
            return None;
        }
        let id = parts.next()?;
        if id.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self {
            id: PrincipalId(bytes),
            subject: String::new(),
            scopes: parts.filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_separate_issuer_and_subject() {
        assert_ne!(PrincipalId::of("ab", "c"), PrincipalId::of("a", "bc"));
        assert_eq!(PrincipalId::of("i", "s"), PrincipalId::of("i", "s"));
    }

    #[test]
    fn the_forwarded_header_round_trips_and_refuses_garbage() {
        let p = Principal {
            id: PrincipalId::of("https://as", "alice"),
            subject: String::new(),
            scopes: vec!["mcp:tools".into(), "mcp:admin".into()],
        };
        assert_eq!(Principal::from_forwarded(&p.to_forwarded()), Some(p));
        for bad in [
            "",
            "v1",
            "v2 00",
            "v1 zz",
            &format!("v1 {}", "g".repeat(64)),
        ] {
            assert_eq!(Principal::from_forwarded(bad), None, "{bad}");
        }
    }
}
