//! The `admin` section of [`crate::NodeConfig`]: who may use the admin endpoint's protected
//! requests (`GET /cluster`, `GET`/`POST`/`DELETE /drain`). Secure by default: with nothing
//! set, a node refuses them to everyone; `/healthz`, `/readyz`, `/metrics` and `/status` stay
//! open (probes and scrapers carry no credentials).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Credentials of the admin endpoint. A request to a protected path carries
/// `Authorization: Bearer <token>`; the node compares the token's SHA-256 with the one it
/// holds, in constant time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AdminConfig {
    /// File holding the admin bearer token (16 to 512 characters of `A-Z a-z 0-9 - . _ ~ + /`,
    /// optionally ending in `=`; surrounding whitespace ignored). Re-read on every protected
    /// request, so a rotated file takes effect without a restart. Default none.
    pub token_file: String,
    /// File holding the lowercase hex SHA-256 of the token instead of the token itself: what
    /// the operator mounts into node pods, so a node never holds the credential it checks.
    /// Exclusive with `tokenFile`. Default none.
    pub token_sha256_file: String,
    /// Accept protected requests without credentials. Only for a node started by hand: refused
    /// (exit 64) unless `adminListen` is a loopback address. A request that does carry a token
    /// is still checked. Default false.
    pub insecure_local: bool,
}

/// Shortest admin token accepted (the operator generates 64 characters: 32 random bytes).
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;
/// Longest admin token accepted.
pub const MAX_ADMIN_TOKEN_LEN: usize = 512;

/// Whether `token` can be an admin token: RFC 6750's `b64token` (`A-Z a-z 0-9 - . _ ~ + /`,
/// then optional `=` padding), [`MIN_ADMIN_TOKEN_LEN`] to [`MAX_ADMIN_TOKEN_LEN`] bytes. The node
/// refuses a token file that is not, and the operator a Secret whose `token` is not.
pub fn valid_admin_token(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    (MIN_ADMIN_TOKEN_LEN..=MAX_ADMIN_TOKEN_LEN).contains(&token.len())
        && body_len > 0
        && token[..body_len]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_grammar() {
        assert!(valid_admin_token(b"s3cr3t-token_value.0123456789~+/=="));
        assert!(valid_admin_token(&[b'a'; MIN_ADMIN_TOKEN_LEN]));
        assert!(valid_admin_token(&[b'a'; MAX_ADMIN_TOKEN_LEN]));
        assert!(
            !valid_admin_token(&[b'a'; MIN_ADMIN_TOKEN_LEN - 1]),
            "too short"
        );
        assert!(
            !valid_admin_token(&[b'a'; MAX_ADMIN_TOKEN_LEN + 1]),
            "too long"
        );
        assert!(!valid_admin_token(b""));
        assert!(!valid_admin_token(b"has a space in it!!"));
        assert!(!valid_admin_token(b"================"), "padding only");
        assert!(!valid_admin_token(b"abc=defghijklmnopq"), "= inside");
        assert!(!valid_admin_token("ünïcödé-tokens-here".as_bytes()));
    }
}
