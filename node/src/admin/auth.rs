//! Who may use the admin endpoint: which paths need credentials, and the decision for one
//! request from the node's [`Policy`] and the request's `Authorization` headers. Pure, so every
//! case is a unit test; the shell (`admin::route`) counts and answers refusals.
//!
//! A credential is a bearer token (RFC 6750 `b64token`). The node holds only its SHA-256 and
//! compares digests in constant time: the comparison time says nothing about how much of a
//! guess was right, and a node configured from `admin.tokenSha256File` never holds the token.

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelValue;
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Sha256Digest = [u8; 32];

pub use mcpcluster_api::{
    MAX_ADMIN_TOKEN_LEN as MAX_TOKEN_LEN, MIN_ADMIN_TOKEN_LEN as MIN_TOKEN_LEN,
    valid_admin_token as valid_token,
};

/// Whether `path` needs credentials. `/cluster` (membership, addresses, load) and `/drain`
/// (every method: it stops a node taking clients) do; `/healthz`, `/readyz`, `/metrics` and
/// `/status` do not (kubelet probes and metric scrapers carry no credentials, and they only
/// report figures `/metrics` already exports).
pub fn is_protected(path: &str) -> bool {
    matches!(path, "/cluster" | "/drain")
}

/// What protected requests are checked against.
#[derive(Clone, PartialEq, Eq)]
pub struct Policy {
    /// The token's SHA-256, if a token is configured.
    pub token: Option<Sha256Digest>,
    /// Requests without credentials are accepted (`admin.insecureLocal`, loopback only).
    pub anonymous: bool,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("token", &self.token.map(|_| "sha256:…"))
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

/// Why a protected request was refused; the `reason` label of `mcp_admin_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Refusal {
    /// No `Authorization` header, and the node needs one (401).
    missing,
    /// An `Authorization` header that is not exactly one `Bearer <token>` (401).
    malformed,
    /// A token that is not the node's (403).
    wrong,
    /// The node has no admin credentials configured, so no request can be allowed (403).
    unconfigured,
}

impl Refusal {
    /// The HTTP status: 401 when no usable credential was sent, 403 when the one sent cannot
    /// be accepted.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::missing | Refusal::malformed => StatusCode::UNAUTHORIZED,
            Refusal::wrong | Refusal::unconfigured => StatusCode::FORBIDDEN,
        }
    }

    /// What the client is told (one line).
    pub fn message(self) -> &'static str {
        match self {
            Refusal::missing => {
                "admin credentials required: send `Authorization: Bearer <token>` (the token of \
                 admin.tokenFile; in Kubernetes, key `token` of the Secret NAME-admin-token)"
            }
            Refusal::malformed => {
                "malformed Authorization header: expected exactly one `Bearer <token>`"
            }
            Refusal::wrong => "the admin token is not valid for this node",
            Refusal::unconfigured => {
                "this node has no admin credentials configured, so it refuses /cluster and \
                 /drain: set admin.tokenFile (--admin-token-file) or admin.tokenSha256File; for \
                 a node on a loopback adminListen, admin.insecureLocal (--admin-insecure-local) \
                 allows anonymous requests"
            }
        }
    }
}

/// SHA-256 of a token.
pub fn digest(token: &[u8]) -> Sha256Digest {
    Sha256::digest(token).into()
}

/// Equality without an early exit.
fn constant_time_eq(a: &Sha256Digest, b: &Sha256Digest) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive, one or more
/// spaces), or `None` when it is not that shape.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty() && token.len() <= MAX_TOKEN_LEN * 2).then_some(token)
}

/// The decision for one protected request, given every `Authorization` header it carries.
/// Credentials that are sent are always checked, even where anonymous requests are allowed.
pub fn decide(policy: &Policy, authorization: &[&[u8]]) -> Result<(), Refusal> {
    let token = match authorization {
        [] if policy.anonymous => return Ok(()),
        [] if policy.token.is_some() => return Err(Refusal::missing),
        [] => return Err(Refusal::unconfigured),
        [one] => bearer(one).ok_or(Refusal::malformed)?,
        _ => return Err(Refusal::malformed),
    };
    let Some(expected) = &policy.token else {
        return Err(Refusal::unconfigured);
    };
    if constant_time_eq(&digest(token), expected) {
        Ok(())
    } else {
        Err(Refusal::wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"s3cr3t-token_value.0123456789~+/==";

    fn with_token(anonymous: bool) -> Policy {
        Policy {
            token: Some(digest(TOKEN)),
            anonymous,
        }
    }

    #[test]
    fn protected_paths() {
        assert!(is_protected("/cluster") && is_protected("/drain"));
        for open in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/status",
            "/",
            "/cluster/x",
        ] {
            assert!(!is_protected(open), "{open}");
        }
    }

    #[test]
    fn the_right_token_is_accepted() {
        let ok = [b"Bearer ".as_slice(), TOKEN].concat();
        assert_eq!(decide(&with_token(false), &[&ok]), Ok(()));
        let lower = [b"bearer   ".as_slice(), TOKEN].concat();
        assert_eq!(decide(&with_token(false), &[&lower]), Ok(()));
    }

    #[test]
    fn no_credentials_is_401_unless_anonymous_is_allowed() {
        assert_eq!(decide(&with_token(false), &[]), Err(Refusal::missing));
        assert_eq!(Refusal::missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(decide(&with_token(true), &[]), Ok(()));
        let anonymous_only = Policy {
            token: None,
            anonymous: true,
        };
        assert_eq!(decide(&anonymous_only, &[]), Ok(()));
    }

    #[test]
    fn a_wrong_token_is_403_even_where_anonymous_is_allowed() {
        let wrong = b"Bearer s3cr3t-token_value.0123456789~+/=X";
        assert_eq!(decide(&with_token(false), &[wrong]), Err(Refusal::wrong));
        assert_eq!(decide(&with_token(true), &[wrong]), Err(Refusal::wrong));
        assert_eq!(Refusal::wrong.status(), StatusCode::FORBIDDEN);
        // A prefix of the right token is just as wrong.
        let prefix = [b"Bearer ".as_slice(), &TOKEN[..TOKEN.len() - 1]].concat();
        assert_eq!(decide(&with_token(false), &[&prefix]), Err(Refusal::wrong));
    }

    #[test]
    fn secure_by_default_nothing_configured_refuses_everyone() {
        let closed = Policy {
            token: None,
            anonymous: false,
        };
        assert_eq!(decide(&closed, &[]), Err(Refusal::unconfigured));
        let any = [b"Bearer ".as_slice(), TOKEN].concat();
        assert_eq!(decide(&closed, &[&any]), Err(Refusal::unconfigured));
        assert_eq!(Refusal::unconfigured.status(), StatusCode::FORBIDDEN);
        // insecureLocal without a token: a token sent cannot be checked, so it is refused.
        let anonymous_only = Policy {
            token: None,
            anonymous: true,
        };
        assert_eq!(decide(&anonymous_only, &[&any]), Err(Refusal::unconfigured));
    }

    #[test]
    fn malformed_headers_are_401() {
        let right = [b"Bearer ".as_slice(), TOKEN].concat();
        for bad in [
            b"".as_slice(),
            b"Bearer",
            b"Bearer ",
            b"Basic dXNlcjpwYXNz",
            b"Bearerxs3cr3t-token_value.0123456789",
            TOKEN,
        ] {
            assert_eq!(
                decide(&with_token(true), &[bad]),
                Err(Refusal::malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Two headers, even if one is right: ambiguous, refused.
        assert_eq!(
            decide(&with_token(false), &[&right, &right]),
            Err(Refusal::malformed)
        );
        assert_eq!(Refusal::malformed.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn the_policy_does_not_print_the_digest() {
        let shown = format!("{:?}", with_token(false));
        let hex: String = digest(TOKEN).iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&hex[..8]), "{shown}");
    }
}
