//! The admin token: the credential the operator sends to the nodes' `/cluster` and `/drain`
//! (`Authorization: Bearer`). Generated once per cluster (32 random bytes from the OS-seeded
//! CSPRNG, hex) and kept in the Secret `NAME-admin-token` ([`crate::children::admin_secret`]):
//! key `token`, which only the operator reads through the API, and `token.sha256`, the only key
//! mounted into node pods, so a node pod never holds the credential it checks.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A bearer token for the nodes' admin API. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(…)")
    }
}

impl AdminToken {
    /// A fresh token: 32 random bytes as 64 hex characters.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(hex(&bytes))
    }

    /// A token read from a Secret (surrounding whitespace ignored), or why it cannot be one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if mcpcluster_api::valid_admin_token(t.as_bytes()) {
            Ok(Self(t.to_owned()))
        } else {
            Err(format!(
                "not a usable token ({} to {} characters of A-Z a-z 0-9 - . _ ~ + /, optionally \
                 ending in =)",
                mcpcluster_api::MIN_ADMIN_TOKEN_LEN,
                mcpcluster_api::MAX_ADMIN_TOKEN_LEN
            ))
        }
    }

    /// The token itself (what goes into the Secret's `token` key).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256 in lowercase hex: what the nodes hold (`admin.tokenSha256File`).
    pub fn sha256_hex(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }

    /// The `Authorization` header value.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_fresh_valid_and_hidden() {
        let a = AdminToken::generate();
        let b = AdminToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 64);
        assert_eq!(AdminToken::parse(a.expose()), Ok(a.clone()));
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(a.authorization(), format!("Bearer {}", a.expose()));
    }

    #[test]
    fn the_digest_is_sha256_hex() {
        let t = AdminToken::parse("abcdefghijklmnop\n").expect("valid");
        // sha256("abcdefghijklmnop")
        assert_eq!(
            t.sha256_hex(),
            "f39dac6cbaba535e2c207cd0cd8f154974223c848f727f98b3564cea569b41cf"
        );
        assert!(AdminToken::parse("short").is_err());
        assert!(AdminToken::parse("with spaces inside it").is_err());
    }
}
