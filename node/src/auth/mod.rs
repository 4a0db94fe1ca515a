//! Client authentication: the node as an OAuth 2.1 resource server (MCP's authorization
//! specification, both protocol eras). Off unless `auth.enabled`.
//!
//! - [`config`]: the validated section, the Protected Resource Metadata and its URLs.
//! - [`jwks`]: the issuer's keys, discovered, cached, refreshed (rate-limited, bounded).
//! - [`token`]: JWT access token validation (`iss`, `aud` = our canonical URI, `exp`/`nbf`,
//!   algorithms).
//! - [`scopes`]: the scopes a request needs (`requiredScopes` + the scope map).
//! - [`challenge`]: the metadata document, 401/403 with `WWW-Authenticate`.
//! - [`principal`]: who a request is from; what a legacy session is bound to.
//!
//! Where it runs (`http/mcp.rs`): every request on the MCP endpoint is authenticated at the
//! node the client reached, before forwarding. A forwarded request carries the verified
//! principal in [`principal::FORWARDED_HEADER`] instead of the token, and the node holding
//! the session checks the session's principal and the scopes. Rules in `docs/SECURITY.md`.

pub mod challenge;
pub mod config;
pub mod jwks;
pub mod metrics;
pub mod principal;
pub mod scopes;
pub mod token;

use std::sync::Arc;

use http::{HeaderMap, Response, header};

pub use config::AuthSettings;
pub use metrics::{AuthMetrics, AuthOutcome};
pub use principal::{Principal, PrincipalId};

use crate::http::body::Body;
use token::{TokenError, Validator};

/// The auth layer of a node with `auth.enabled`.
#[derive(Debug)]
pub struct Auth {
    /// The validated settings.
    pub settings: Arc<AuthSettings>,
    /// The issuer's keys.
    pub keys: Arc<jwks::KeyCache>,
    validator: Validator,
    metrics: AuthMetrics,
    retry_after_secs: u32,
}

impl Auth {
    /// The auth layer for validated `settings`.
    pub fn new(settings: Arc<AuthSettings>, metrics: AuthMetrics, retry_after_secs: u32) -> Self {
        let keys = Arc::new(jwks::KeyCache::new(&settings, metrics.clone()));
        Self {
            validator: Validator::new(settings.clone(), keys.clone()),
            settings,
            keys,
            metrics,
            retry_after_secs,
        }
    }

    /// Fetches the issuer's keys now, so the first client does not wait for them.
    pub fn prefetch(&self) {
        let keys = self.keys.clone();
        tokio::spawn(async move { keys.refresh_if_allowed().await });
    }

    /// Whether `path` is one of the metadata document's paths.
    pub fn is_metadata_path(&self, path: &str) -> bool {
        self.settings.metadata_paths.iter().any(|p| p == path)
    }

    /// Counts an outcome decided outside this module (scopes, session binding).
    pub fn count(&self, outcome: AuthOutcome) {
        self.metrics.request(outcome);
    }

    /// Who sent the request, or the answer refusing it. A client's request must carry
    /// `Authorization: Bearer <token>`; a request `relayed` by a peer (only ever read from the
    /// mutually authenticated peer link) carries the principal the forwarding node verified.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        relayed: bool,
    ) -> Result<Principal, Response<Body>> {
        let s = &self.settings;
        if relayed {
            return headers
                .get(principal::FORWARDED_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(Principal::from_forwarded)
                .ok_or_else(|| {
                    self.metrics.request(AuthOutcome::missing_token);
                    challenge::missing_token(s)
                });
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            if headers.contains_key(header::AUTHORIZATION) {
                self.metrics.request(AuthOutcome::malformed);
                return Err(challenge::invalid_request(
                    s,
                    "more than one Authorization header",
                ));
            }
            self.metrics.request(AuthOutcome::missing_token);
            return Err(challenge::missing_token(s));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            // Another scheme (Basic, ...) is no bearer credential at all (RFC 6750 §3.1).
            self.metrics.request(AuthOutcome::missing_token);
            return Err(challenge::missing_token(s));
        };
        match self.validator.validate(token).await {
            Ok(p) => {
                self.metrics.request(AuthOutcome::ok);
                Ok(p)
            }
            Err(e) => {
                self.metrics.request(e.outcome());
                tracing::debug!(error = %e, "access token refused");
                Err(match e {
                    TokenError::KeysUnavailable => {
                        challenge::keys_unavailable(self.retry_after_secs)
                    }
                    e => challenge::invalid_token(s, &e.to_string()),
                })
            }
        }
    }
}

/// The headers a forwarded request carries: the client's, without its token, with the
/// principal this node verified.
pub fn forwarded_headers(headers: &HeaderMap, principal: &Principal) -> HeaderMap {
    let mut h = headers.clone();
    h.remove(header::AUTHORIZATION);
    if let Ok(v) = http::HeaderValue::from_str(&principal.to_forwarded()) {
        h.insert(principal::FORWARDED_HEADER, v);
    }
    h
}
