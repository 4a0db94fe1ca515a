//! Auth metrics (`mcp_auth_*`): requests by outcome (each refusal reason is a label value, so
//! a session hijack attempt or a flood of forged tokens shows up by name), JWKS fetches.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// How authenticating a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum AuthOutcome {
    ok,
    /// No `Authorization: Bearer` header (401 without an error code).
    missing_token,
    /// Not a JWT, or a header/claims that do not parse.
    malformed,
    /// `alg` not accepted (`none`, `HS*`, or not configured), or not the key's.
    bad_algorithm,
    /// No key with the token's `kid` in the issuer's key set (after a permitted refresh).
    unknown_key,
    bad_signature,
    expired,
    not_yet_valid,
    wrong_issuer,
    wrong_audience,
    /// `exp`, `iss`, `aud` or `sub` absent.
    missing_claim,
    /// The issuer's keys could not be fetched yet (503).
    keys_unavailable,
    /// The token lacks a scope the request needs (403).
    insufficient_scope,
    /// A session id used with another principal's token (404, as for an unknown session).
    session_principal_mismatch,
}

/// Outcome of fetching the issuer's metadata and key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum FetchOutcome {
    ok,
    error,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: AuthOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FetchLabels {
    outcome: FetchOutcome,
}

/// The `mcp_auth_*` metrics (cheap to clone: shared counters).
#[derive(Debug, Clone, Default)]
pub struct AuthMetrics {
    requests: Family<OutcomeLabels, Counter>,
    fetches: Family<FetchLabels, Counter>,
    /// Keys in the cached key set.
    pub keys: Gauge,
}

impl AuthMetrics {
    /// Creates and registers the metrics (always, so dashboards see zeros with auth off).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "auth_requests",
            "Requests authenticated on the MCP endpoint, by outcome",
            m.requests.clone(),
        );
        registry.register(
            "auth_jwks_fetches",
            "Fetches of the issuer's metadata and key set, by outcome",
            m.fetches.clone(),
        );
        registry.register(
            "auth_jwks_keys",
            "Keys in the cached key set",
            m.keys.clone(),
        );
        m
    }

    /// Counts one request's outcome.
    pub fn request(&self, outcome: AuthOutcome) {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Requests with `outcome` so far.
    pub fn requests(&self, outcome: AuthOutcome) -> u64 {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .get()
    }

    /// Counts one fetch.
    pub fn fetch(&self, outcome: FetchOutcome) {
        self.fetches.get_or_create(&FetchLabels { outcome }).inc();
    }

    /// Fetches with `outcome` so far.
    pub fn fetches(&self, outcome: FetchOutcome) -> u64 {
        self.fetches.get_or_create(&FetchLabels { outcome }).get()
    }
}
