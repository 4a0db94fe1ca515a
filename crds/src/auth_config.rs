//! The `auth` section of [`crate::NodeConfig`]: MCP clients authenticate with OAuth 2.1 access
//! tokens (JWTs) from one authorization server, as MCP's authorization specification says. Off
//! by default: a node started by hand on localhost stays open.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Algorithms accepted when `algorithms` is empty: the asymmetric ones. HMAC (`HS*`) is never
/// accepted (a resource server holding the issuer's public key must not treat it as a shared
/// secret), nor is `none`.
pub const DEFAULT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// OAuth 2.1 resource server settings (`docs/SECURITY.md`, "Client authentication").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require a bearer access token on the MCP endpoint. Default false: anyone who reaches
    /// the port is served (the node listens on loopback by default).
    pub enabled: bool,
    /// The authorization server's issuer identifier, e.g.
    /// `https://auth.example.com/realms/mcp`. A token's `iss` must equal it exactly; the
    /// Protected Resource Metadata names it in `authorization_servers`. Required when enabled.
    pub issuer: String,
    /// This server's canonical URI (RFC 8707), the URL clients use for the MCP endpoint, e.g.
    /// `https://mcp.example.com/mcp`. A token's `aud` must contain it; it is the `resource` of
    /// the Protected Resource Metadata. Required when enabled.
    pub resource: String,
    /// Where the issuer's signing keys (JWKS) are read. Empty (default): the `jwks_uri` of the
    /// issuer's metadata (`discoveryUrl`).
    pub jwks_url: String,
    /// The issuer's metadata document. Empty (default): RFC 8414
    /// (`/.well-known/oauth-authorization-server` inserted before the issuer's path), then
    /// OpenID Connect discovery (`/.well-known/openid-configuration`, inserted and appended).
    /// Unused when `jwksUrl` is set.
    pub discovery_url: String,
    /// Scopes every request needs (besides those of the tool, resource or prompt it names).
    /// Listed in the metadata's `scopes_supported` and in 401 challenges. Default none.
    pub required_scopes: Vec<String>,
    /// Scopes per tool, resource and prompt.
    pub scopes: ScopeMap,
    /// JWS algorithms accepted. Empty (default): RS256/384/512, PS256/384/512, ES256/384,
    /// EdDSA. `none` and `HS*` are refused.
    pub algorithms: Vec<String>,
    /// Seconds of clock difference tolerated on `exp` and `nbf`. Default 30.
    pub clock_skew_secs: u64,
    /// A token whose key id is not in the cached key set makes the node fetch the set again,
    /// at most once per this many seconds (random key ids cannot make it hammer the issuer).
    /// Default 30.
    pub jwks_refresh_min_secs: u64,
    /// Seconds a fetched key set is used before it is fetched again. Default 600.
    pub jwks_max_age_secs: u64,
    /// Allow `http://` for the issuer's metadata and keys on hosts other than loopback. Default
    /// false: keys fetched over plain HTTP could be replaced in transit. For an authorization
    /// server reached only over a trusted network.
    pub allow_http: bool,
    /// Human-readable name in the Protected Resource Metadata (`resource_name`). Default none.
    pub resource_name: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            issuer: String::new(),
            resource: String::new(),
            jwks_url: String::new(),
            discovery_url: String::new(),
            required_scopes: Vec::new(),
            scopes: ScopeMap::default(),
            algorithms: Vec::new(),
            clock_skew_secs: 30,
            jwks_refresh_min_secs: 30,
            jwks_max_age_secs: 600,
            allow_http: false,
            resource_name: String::new(),
        }
    }
}

/// Scopes a request needs for what it names, on top of `requiredScopes`. Each map goes from a
/// name (a tool or prompt name, a resource URI) to scopes; the key `*` applies to every name
/// not listed. `tools/call`, `resources/read`, `resources/subscribe` and `prompts/get` are
/// checked; listing methods need `requiredScopes` only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ScopeMap {
    /// Tool name → scopes `tools/call` needs.
    pub tools: BTreeMap<String, Vec<String>>,
    /// Resource URI → scopes `resources/read` and `resources/subscribe` need.
    pub resources: BTreeMap<String, Vec<String>>,
    /// Prompt name → scopes `prompts/get` needs.
    pub prompts: BTreeMap<String, Vec<String>>,
}

/// A problem in the `auth` section: the field (relative to `auth.`) and why.
pub type AuthConfigError = (&'static str, String);

impl AuthConfig {
    /// The algorithms in force (`algorithms`, or [`DEFAULT_ALGORITHMS`] when empty).
    pub fn effective_algorithms(&self) -> Vec<String> {
        if self.algorithms.is_empty() {
            DEFAULT_ALGORITHMS.iter().map(|a| (*a).to_owned()).collect()
        } else {
            self.algorithms.clone()
        }
    }

    /// Checks what can be checked without the network. Nothing is checked when disabled.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.issuer.is_empty() {
            return Err(("issuer", "required when auth is enabled".into()));
        }
        check_url(&self.issuer, self.allow_http).map_err(|m| ("issuer", m))?;
        if self.resource.is_empty() {
            return Err((
                "resource",
                "required when auth is enabled: this server's canonical URI, e.g. \
                 https://mcp.example.com/mcp"
                    .into(),
            ));
        }
        // The resource is only compared, never fetched: plain http is allowed (a node behind a
        // TLS-terminating proxy, or on localhost).
        check_url(&self.resource, true).map_err(|m| ("resource", m))?;
        if !self.jwks_url.is_empty() {
            check_url(&self.jwks_url, self.allow_http).map_err(|m| ("jwksUrl", m))?;
        }
        if !self.discovery_url.is_empty() {
            check_url(&self.discovery_url, self.allow_http).map_err(|m| ("discoveryUrl", m))?;
        }
        for a in &self.algorithms {
            if !DEFAULT_ALGORITHMS.contains(&a.as_str()) {
                return Err((
                    "algorithms",
                    format!(
                        "`{a}` is not accepted (one of {}; `none` and HS* never are)",
                        DEFAULT_ALGORITHMS.join(", ")
                    ),
                ));
            }
        }
        let all_scopes = self.required_scopes.iter().chain(
            [
                &self.scopes.tools,
                &self.scopes.resources,
                &self.scopes.prompts,
            ]
            .into_iter()
            .flat_map(|m| m.values().flatten()),
        );
        for s in all_scopes {
            // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            let ok = !s.is_empty()
                && s.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !ok {
                let field = if self.required_scopes.contains(s) {
                    "requiredScopes"
                } else {
                    "scopes"
                };
                return Err((
                    field,
                    format!("`{s}` is not a scope token (printable ASCII, no space, `\"` or `\\`)"),
                ));
            }
        }
        for (field, v) in [
            ("jwksRefreshMinSecs", self.jwks_refresh_min_secs),
            ("jwksMaxAgeSecs", self.jwks_max_age_secs),
        ] {
            if v == 0 {
                return Err((field, "must be at least 1".into()));
            }
        }
        if self.clock_skew_secs > 300 {
            return Err(("clockSkewSecs", "at most 300 (5 minutes)".into()));
        }
        Ok(())
    }
}

/// An absolute `https://` URL (or `http://` on a loopback host, or anywhere with `allow_http`)
/// with a host and no fragment: what the node may fetch the issuer's metadata and keys from
/// (a discovered `jwks_uri` is held to it too).
pub fn check_fetch_url(url: &str, allow_http: bool) -> Result<(), String> {
    check_url(url, allow_http)
}

fn check_url(url: &str, allow_http: bool) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an absolute URL"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!("`{url}`: the scheme must be https (or http)"));
    }
    if url.contains('#') {
        return Err(format!("`{url}` must not have a fragment"));
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{url}` has no host"));
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    if scheme == "http" && !allow_http && !loopback {
        return Err(format!(
            "`{url}`: keys fetched over plain http could be replaced in transit; use https \
             (or set auth.allowHttp for a trusted network)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> AuthConfig {
        AuthConfig {
            enabled: true,
            issuer: "https://auth.example.com/realms/mcp".into(),
            resource: "https://mcp.example.com/mcp".into(),
            ..Default::default()
        }
    }

    #[test]
    fn off_is_valid_and_a_complete_section_is_valid() {
        assert_eq!(AuthConfig::default().validate(), Ok(()));
        assert_eq!(on().validate(), Ok(()));
    }

    #[test]
    fn problems_name_the_field() {
        let field = |c: AuthConfig| c.validate().expect_err("invalid").0;
        assert_eq!(
            field(AuthConfig {
                issuer: String::new(),
                ..on()
            }),
            "issuer"
        );
        assert_eq!(
            field(AuthConfig {
                resource: String::new(),
                ..on()
            }),
            "resource"
        );
        assert_eq!(
            field(AuthConfig {
                resource: "mcp.example.com".into(),
                ..on()
            }),
            "resource"
        );
        assert_eq!(
            field(AuthConfig {
                resource: "https://mcp.example.com/mcp#x".into(),
                ..on()
            }),
            "resource"
        );
        assert_eq!(
            field(AuthConfig {
                issuer: "http://auth.example.com".into(),
                ..on()
            }),
            "issuer"
        );
        assert_eq!(
            field(AuthConfig {
                jwks_url: "ftp://x/keys".into(),
                ..on()
            }),
            "jwksUrl"
        );
        assert_eq!(
            field(AuthConfig {
                algorithms: vec!["HS256".into()],
                ..on()
            }),
            "algorithms"
        );
        assert_eq!(
            field(AuthConfig {
                algorithms: vec!["none".into()],
                ..on()
            }),
            "algorithms"
        );
        assert_eq!(
            field(AuthConfig {
                required_scopes: vec!["a b".into()],
                ..on()
            }),
            "requiredScopes"
        );
        let mut c = on();
        c.scopes.tools.insert("x".into(), vec!["bad\"scope".into()]);
        assert_eq!(field(c), "scopes");
        assert_eq!(
            field(AuthConfig {
                jwks_refresh_min_secs: 0,
                ..on()
            }),
            "jwksRefreshMinSecs"
        );
    }

    #[test]
    fn plain_http_is_for_loopback_or_when_allowed() {
        let local = AuthConfig {
            issuer: "http://127.0.0.1:8180/realms/mcp".into(),
            ..on()
        };
        assert_eq!(local.validate(), Ok(()));
        let lan = AuthConfig {
            issuer: "http://keycloak.auth.svc/realms/mcp".into(),
            ..on()
        };
        assert!(lan.validate().is_err());
        assert_eq!(
            AuthConfig {
                allow_http: true,
                ..lan
            }
            .validate(),
            Ok(())
        );
    }
}
