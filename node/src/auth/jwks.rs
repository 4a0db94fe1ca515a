//! The issuer's signing keys (JWKS): discovered from its metadata (or a configured URL),
//! cached, fetched again when they are old or when a token names a key id the cache does not
//! have — at most once per `jwksRefreshMinSecs`, so tokens with random key ids cannot make the
//! node hammer the issuer. Bounded: at most [`MAX_KEYS`] keys, [`MAX_DOCUMENT`] bytes per
//! document, [`FETCH_TIMEOUT`] per fetch, one fetch at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::Mutex;
use serde_json::Value;

use super::config::AuthSettings;
use super::metrics::{AuthMetrics, FetchOutcome};

/// Keys kept from one key set (issuers publish a handful; rotation adds one).
pub const MAX_KEYS: usize = 32;
/// Largest metadata or key set document read.
pub const MAX_DOCUMENT: usize = 256 * 1024;
/// Time allowed for one HTTP exchange with the issuer.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no key could be found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key set holds no key with this id (after the refresh we were allowed).
    #[error("no key with this id in the issuer's key set")]
    Unknown,
    /// No key set could be fetched yet.
    #[error("the issuer's keys could not be fetched")]
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
    Okp,
}

fn family_of(alg: Algorithm) -> Option<Family> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(Family::Rsa),
        ES256 | ES384 => Some(Family::Ec),
        EdDSA => Some(Family::Okp),
        HS256 | HS384 | HS512 => None,
    }
}

struct Key {
    kid: Option<String>,
    family: Family,
    alg: Option<String>,
    key: Arc<DecodingKey>,
}

#[derive(Default)]
struct State {
    keys: Vec<Key>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    /// `jwks_uri` once discovered (or the configured one).
    jwks_url: Option<String>,
}

impl State {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<DecodingKey>> {
        let family = family_of(alg)?;
        let alg_name = format!("{alg:?}");
        let fits = |k: &&Key| k.family == family && k.alg.as_deref().is_none_or(|a| a == alg_name);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(fits)
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| k.key.clone()),
            None => {
                // Without a key id only an unambiguous key will do.
                let mut it = self.keys.iter().filter(fits);
                match (it.next(), it.next()) {
                    (Some(k), None) => Some(k.key.clone()),
                    _ => None,
                }
            }
        }
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The cached key set of one issuer.
pub struct KeyCache {
    issuer: String,
    configured_jwks: Option<String>,
    discovery_urls: Vec<String>,
    allow_http: bool,
    refresh_min: Duration,
    max_age: Duration,
    state: Mutex<State>,
    fetching: tokio::sync::Mutex<()>,
    client: HttpClient,
    metrics: AuthMetrics,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("KeyCache")
            .field("issuer", &self.issuer)
            .field("keys", &st.keys.len())
            .field("jwks_url", &st.jwks_url)
            .finish()
    }
}

impl KeyCache {
    /// A cache with nothing fetched yet.
    pub fn new(settings: &AuthSettings, metrics: AuthMetrics) -> Self {
        let c = &settings.config;
        let https = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(b) => b.https_or_http().enable_http1().build(),
            Err(e) => {
                // No system CA bundle (a FROM-scratch image): https issuers then fail with a
                // certificate error until SSL_CERT_FILE names one.
                tracing::warn!(error = %e, "no native root certificates found");
                let tls = rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .build()
            }
        };
        Self {
            issuer: c.issuer.clone(),
            configured_jwks: (!c.jwks_url.is_empty()).then(|| c.jwks_url.clone()),
            discovery_urls: settings.discovery_urls.clone(),
            allow_http: c.allow_http,
            refresh_min: Duration::from_secs(c.jwks_refresh_min_secs),
            max_age: Duration::from_secs(c.jwks_max_age_secs),
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
            client: Client::builder(TokioExecutor::new()).build(https),
            metrics,
        }
    }

    /// Whether a key set was fetched at least once.
    pub fn ready(&self) -> bool {
        self.state.lock().fetched_at.is_some()
    }

    /// The key for a token's `kid` and `alg`: from the cache, or after a refresh when the key
    /// is unknown (rate-limited) or the set is older than `jwksMaxAgeSecs`.
    pub async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, KeyError> {
        let now = Instant::now();
        {
            let st = self.state.lock();
            if let Some(k) = st.find(kid, alg) {
                let stale = st.fetched_at.is_none_or(|t| now - t > self.max_age);
                let due = st.last_attempt.is_none_or(|t| now - t >= self.refresh_min);
                drop(st);
                // Serve the key we have; refresh in the background, one task at a time (not
                // one per request while the issuer is slow or down).
                if stale && due && self.fetching.try_lock().is_ok() {
                    let me = self.clone();
                    tokio::spawn(async move { me.refresh_if_allowed().await });
                }
                return Ok(k);
            }
        }
        self.refresh_if_allowed().await;
        let st = self.state.lock();
        st.find(kid, alg).ok_or(if st.fetched_at.is_none() {
            KeyError::Unavailable
        } else {
            KeyError::Unknown
        })
    }

    /// Fetches the key set unless one was attempted within `jwksRefreshMinSecs`. Concurrent
    /// callers wait for the one fetch in progress instead of starting their own.
    pub async fn refresh_if_allowed(&self) {
        let _one = self.fetching.lock().await;
        {
            let mut st = self.state.lock();
            let now = Instant::now();
            // Until a first key set arrives (issuer still starting), retry within a second.
            let min = if st.fetched_at.is_none() {
                self.refresh_min.min(Duration::from_secs(1))
            } else {
                self.refresh_min
            };
            if st.last_attempt.is_some_and(|t| now - t < min) {
                return;
            }
            st.last_attempt = Some(now);
        }
        match self.fetch().await {
            Ok((url, keys)) => {
                self.metrics.fetch(FetchOutcome::ok);
                self.metrics.keys.set(keys.len() as i64);
                tracing::debug!(issuer = %self.issuer, keys = keys.len(), %url, "fetched the issuer's keys");
                let mut st = self.state.lock();
                st.keys = keys;
                st.fetched_at = Some(Instant::now());
                st.jwks_url = Some(url);
            }
            Err(e) => {
                self.metrics.fetch(FetchOutcome::error);
                tracing::warn!(issuer = %self.issuer, error = %e, "cannot fetch the issuer's keys");
            }
        }
    }

    async fn fetch(&self) -> Result<(String, Vec<Key>), String> {
        let known = self.state.lock().jwks_url.clone();
        let url = match self.configured_jwks.clone().or(known) {
            Some(u) => u,
            None => self.discover().await?,
        };
        let doc = self.get_json(&url).await?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(format!("{url}: no `keys` array"));
        };
        let mut keys = Vec::new();
        for entry in entries {
            if keys.len() >= MAX_KEYS {
                tracing::warn!(%url, "key set has more than {MAX_KEYS} keys; the rest are ignored");
                break;
            }
            if entry
                .get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                continue; // a key type this library does not know: not ours to use
            };
            let family = match entry.get("kty").and_then(Value::as_str) {
                Some("RSA") => Family::Rsa,
                Some("EC") => Family::Ec,
                Some("OKP") => Family::Okp,
                _ => continue, // `oct` (shared secrets) never verify our tokens
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                family,
                alg: entry.get("alg").and_then(Value::as_str).map(str::to_owned),
                key: Arc::new(key),
            });
        }
        Ok((url, keys))
    }

    /// The `jwks_uri` of the first metadata document whose `issuer` is ours.
    async fn discover(&self) -> Result<String, String> {
        let mut errors = Vec::new();
        for url in &self.discovery_urls {
            match self.get_json(url).await {
                Ok(doc) => {
                    if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                        errors.push(format!("{url}: `issuer` is not {}", self.issuer));
                        continue;
                    }
                    match doc.get("jwks_uri").and_then(Value::as_str) {
                        Some(j) => return Ok(j.to_owned()),
                        None => errors.push(format!("{url}: no `jwks_uri`")),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        mcpcluster_api::auth_config::check_fetch_url(url, self.allow_http)?;
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("{url}: HTTP {status}"));
            }
            let body = Limited::new(response.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .map_err(|e| format!("{url}: {e}"))?
                .to_bytes();
            serde_json::from_slice::<Value>(&body).map_err(|e| format!("{url}: not JSON: {e}"))
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{url}: no answer within {FETCH_TIMEOUT:?}"))?
    }
}
