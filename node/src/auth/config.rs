//! The validated `auth` section: the algorithms parsed, the Protected Resource Metadata
//! document and its URLs, the issuer metadata URLs to try.

use std::str::FromStr;

use jsonwebtoken::Algorithm;
use mcpcluster_api::AuthConfig;
use serde_json::json;

/// Path of the Protected Resource Metadata (RFC 9728 §3) at the root of the host.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// What the auth layer needs, derived once from [`AuthConfig`].
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The configuration as given.
    pub config: AuthConfig,
    /// Accepted JWS algorithms.
    pub algorithms: Vec<Algorithm>,
    /// The metadata URL clients are pointed to (`resource_metadata`): the well-known path
    /// inserted before the resource's path, on the resource's origin (RFC 9728 §3.1).
    pub metadata_url: String,
    /// Paths on this server that answer with the metadata: the root one and the one suffixed
    /// with the resource's path.
    pub metadata_paths: Vec<String>,
    /// The metadata document (JSON).
    pub metadata: Vec<u8>,
    /// Issuer metadata URLs tried in order when `jwksUrl` is not set.
    pub discovery_urls: Vec<String>,
}

impl AuthSettings {
    /// Derives the settings; `Err((field, why))` for what [`AuthConfig::validate`] cannot see.
    pub fn new(config: &AuthConfig) -> Result<Self, (&'static str, String)> {
        config.validate()?;
        let algorithms = config
            .effective_algorithms()
            .iter()
            .map(|a| {
                Algorithm::from_str(a).map_err(|_| ("algorithms", format!("`{a}` is unknown")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (origin, path) = split_url(&config.resource);
        let path = path.trim_end_matches('/');
        let metadata_url = format!("{origin}{METADATA_PATH}{path}");
        let mut metadata_paths = vec![METADATA_PATH.to_owned()];
        if !path.is_empty() {
            metadata_paths.push(format!("{METADATA_PATH}{path}"));
        }
        let mut doc = json!({
            "resource": config.resource,
            "authorization_servers": [config.issuer],
            "bearer_methods_supported": ["header"],
            "scopes_supported": super::scopes::basic(config),
        });
        if !config.resource_name.is_empty() {
            doc["resource_name"] = json!(config.resource_name);
        }
        let metadata = serde_json::to_vec(&doc).unwrap_or_default();
        let discovery_urls = if config.discovery_url.is_empty() {
            discovery_candidates(&config.issuer)
        } else {
            vec![config.discovery_url.clone()]
        };
        Ok(Self {
            config: config.clone(),
            algorithms,
            metadata_url,
            metadata_paths,
            metadata,
            discovery_urls,
        })
    }
}

/// `scheme://authority` and the rest (path, without query or fragment).
fn split_url(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path_start = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    let (origin, rest) = url.split_at(path_start);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    (origin, path)
}

/// RFC 8414 §3.1 (well-known path inserted before the issuer's path), then OpenID Connect
/// discovery inserted and appended (RFC 8414 §5), as MCP's authorization spec orders them.
fn discovery_candidates(issuer: &str) -> Vec<String> {
    let (origin, path) = split_url(issuer);
    let path = path.trim_end_matches('/');
    let mut out = vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}/.well-known/openid-configuration{path}"),
    ];
    if !path.is_empty() {
        out.push(format!("{origin}{path}/.well-known/openid-configuration"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(resource: &str, issuer: &str) -> AuthConfig {
        AuthConfig {
            enabled: true,
            issuer: issuer.into(),
            resource: resource.into(),
            required_scopes: vec!["mcp".into()],
            ..Default::default()
        }
    }

    #[test]
    fn metadata_urls_follow_rfc_9728() {
        let s = AuthSettings::new(&config(
            "https://mcp.example.com/public/mcp",
            "https://as.example.com",
        ))
        .expect("valid");
        assert_eq!(
            s.metadata_url,
            "https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp"
        );
        assert_eq!(
            s.metadata_paths,
            [
                METADATA_PATH,
                "/.well-known/oauth-protected-resource/public/mcp"
            ]
        );
        let doc: serde_json::Value = serde_json::from_slice(&s.metadata).expect("json");
        assert_eq!(doc["resource"], "https://mcp.example.com/public/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://as.example.com");
        assert_eq!(doc["scopes_supported"][0], "mcp");
        let root = AuthSettings::new(&config("https://mcp.example.com", "https://as.example.com"))
            .expect("valid");
        assert_eq!(root.metadata_paths, [METADATA_PATH]);
        assert_eq!(
            root.metadata_url,
            "https://mcp.example.com/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn issuer_metadata_is_looked_for_where_the_spec_says() {
        assert_eq!(
            discovery_candidates("https://as.example.com/realms/mcp"),
            [
                "https://as.example.com/.well-known/oauth-authorization-server/realms/mcp",
                "https://as.example.com/.well-known/openid-configuration/realms/mcp",
                "https://as.example.com/realms/mcp/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            discovery_candidates("https://as.example.com/"),
            [
                "https://as.example.com/.well-known/oauth-authorization-server",
                "https://as.example.com/.well-known/openid-configuration",
            ]
        );
    }
}
