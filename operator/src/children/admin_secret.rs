//! The Secret `NAME-admin-token` with the admin token ([`crate::admin_token`]): `token` for
//! the operator, `token.sha256` for the node pods (the only key they mount). Created once,
//! like the cluster CA; deleting it rotates the token (a new one is generated, the nodes re-read
//! the mounted digest when the kubelet refreshes it). A token written into `token` by hand is
//! used as is; the operator then rewrites `token.sha256` to match.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use mcpcluster_api::McpCluster;

use super::meta;
use crate::admin_token::AdminToken;
use crate::names::Names;

/// Key of the token (read by the operator only).
pub const TOKEN_KEY: &str = "token";
/// Key of its SHA-256 in hex (mounted into the node pods).
pub const DIGEST_KEY: &str = "token.sha256";
/// Where the pods mount [`DIGEST_KEY`].
pub const ADMIN_DIR: &str = "/etc/mcp-node/admin";

/// The generated Secret holding `token` and its digest.
pub fn secret(cluster: &McpCluster, names: &Names, token: &AdminToken) -> Secret {
    let data = BTreeMap::from([
        (
            TOKEN_KEY.to_owned(),
            ByteString(token.expose().as_bytes().to_vec()),
        ),
        (
            DIGEST_KEY.to_owned(),
            ByteString(token.sha256_hex().into_bytes()),
        ),
    ]);
    Secret {
        metadata: meta(cluster, names, &names.admin_secret),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

fn value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| &v.0[..]);
    let string = || {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(String::as_bytes)
    };
    data.or_else(string)
}

/// The token a Secret holds: `Ok(None)` without the `token` key, `Err` when it is not a
/// usable token.
pub fn token_of(secret: &Secret) -> Result<Option<AdminToken>, String> {
    let Some(raw) = value(secret, TOKEN_KEY) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_owned())?;
    AdminToken::parse(text).map(Some)
}

/// Whether the Secret's `token.sha256` matches `token` (else the operator rewrites it).
pub fn digest_matches(secret: &Secret, token: &AdminToken) -> bool {
    value(secret, DIGEST_KEY).is_some_and(|d| d.trim_ascii() == token.sha256_hex().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::test_support::cluster;
    use mcpcluster_api::McpClusterSpec;

    #[test]
    fn holds_the_token_and_its_digest() {
        let c = cluster(McpClusterSpec::default());
        let names = Names::of(&c);
        let t = AdminToken::generate();
        let s = secret(&c, &names, &t);
        assert_eq!(s.metadata.name.as_deref(), Some("demo-admin-token"));
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        let owner = &s.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(owner.controller, Some(true));
        assert_eq!(token_of(&s), Ok(Some(t.clone())));
        assert!(digest_matches(&s, &t));
        assert!(!digest_matches(&s, &AdminToken::generate()));
    }

    #[test]
    fn a_hand_written_token_is_read_and_a_bad_one_explained() {
        let mut s = Secret::default();
        assert_eq!(token_of(&s), Ok(None));
        s.string_data = Some(BTreeMap::from([(
            TOKEN_KEY.to_owned(),
            "chosen-by-hand-0123456789\n".to_owned(),
        )]));
        let t = token_of(&s).expect("valid").expect("present");
        assert_eq!(t.expose(), "chosen-by-hand-0123456789");
        assert!(!digest_matches(&s, &t), "no digest yet");
        s.string_data = Some(BTreeMap::from([(TOKEN_KEY.to_owned(), "short".to_owned())]));
        assert!(
            token_of(&s)
                .expect_err("too short")
                .contains("usable token")
        );
    }
}
