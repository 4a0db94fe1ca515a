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
        let https = crate::https_connector::https_or_http("oidc");
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use mcpcluster_api::AuthConfig;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// How the stand-in issuer answers one path.
    #[derive(Clone)]
    enum Answer {
        /// 200 with this JSON text.
        Json(String),
        /// 200 with a head announcing 1,000 bytes, then 10 of them, then nothing.
        Stall,
    }

    /// An issuer on 127.0.0.1:0 answering GETs by path (404 otherwise), one request per
    /// connection; counts requests by path.
    struct StandIn {
        url: String,
        routes: Arc<Mutex<HashMap<String, Answer>>>,
        hits: Arc<Mutex<HashMap<String, usize>>>,
    }

    impl StandIn {
        async fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let routes: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
            let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
            let (r, h) = (routes.clone(), hits.clone());
            tokio::spawn(async move {
                while let Ok((mut s, _)) = listener.accept().await {
                    let (routes, hits) = (r.clone(), h.clone());
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let text = String::from_utf8_lossy(&head).to_string();
                        let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
                        *hits.lock().entry(path.clone()).or_default() += 1;
                        let answer = routes.lock().get(&path).cloned();
                        match answer {
                            Some(Answer::Json(body)) => {
                                let reply = format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                                    body.len()
                                );
                                let _ = s.write_all(reply.as_bytes()).await;
                            }
                            Some(Answer::Stall) => {
                                let _ = s
                                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{\"keys\":[")
                                    .await;
                                std::future::pending::<()>().await;
                            }
                            None => {
                                let _ = s
                                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                    .await;
                            }
                        }
                    });
                }
            });
            Self { url, routes, hits }
        }

        fn route(&self, path: &str, answer: Answer) {
            self.routes.lock().insert(path.to_owned(), answer);
        }

        fn hits(&self, path: &str) -> usize {
            self.hits.lock().get(path).copied().unwrap_or(0)
        }
    }

    /// An ES256 public key as a JWK with `kid`.
    fn jwk(kid: &str) -> Value {
        let pair = rcgen::KeyPair::generate().expect("P-256 key");
        let raw = pair.public_key_raw();
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        })
    }

    /// A cache for `issuer`, its keys at `jwks_url` (empty: discovered).
    fn cache(issuer: &str, jwks_url: &str) -> Arc<KeyCache> {
        let config = AuthConfig {
            enabled: true,
            issuer: issuer.to_owned(),
            resource: "http://127.0.0.1:1/mcp".into(),
            jwks_url: jwks_url.to_owned(),
            required_scopes: vec!["mcp".into()],
            ..Default::default()
        };
        let settings = AuthSettings::new(&config).expect("valid auth config");
        Arc::new(KeyCache::new(&settings, AuthMetrics::default()))
    }

    #[tokio::test]
    async fn a_key_set_keeps_at_most_32_keys() {
        let issuer = StandIn::start().await;
        let one = jwk("k");
        let keys: Vec<Value> = (0..40)
            .map(|i| {
                let mut k = one.clone();
                k["kid"] = json!(format!("k{i}"));
                k
            })
            .collect();
        issuer.route("/jwks", Answer::Json(json!({ "keys": keys }).to_string()));
        let keys = cache(&issuer.url, &format!("{}/jwks", issuer.url));
        for i in [0, 31] {
            let kid = format!("k{i}");
            assert!(
                keys.key(Some(&kid), Algorithm::ES256).await.is_ok(),
                "{kid}"
            );
        }
        for i in [32, 39] {
            let kid = format!("k{i}");
            assert_eq!(
                keys.key(Some(&kid), Algorithm::ES256).await.err(),
                Some(KeyError::Unknown),
                "{kid}: past the first {MAX_KEYS}"
            );
        }
        assert_eq!(
            issuer.hits("/jwks"),
            1,
            "unknown kids within the refresh interval"
        );
    }

    /// A key set document of `len` bytes: one key and padding.
    fn document_of(len: usize) -> String {
        let start = format!(r#"{{"keys":[{}],"padding":""#, jwk("k1"));
        let end = r#""}"#;
        let pad = len - start.len() - end.len();
        format!("{start}{}{end}", "x".repeat(pad))
    }

    #[tokio::test]
    async fn documents_over_256_kib_are_refused() {
        let issuer = StandIn::start().await;
        let url = format!("{}/jwks", issuer.url);
        let keys = cache(&issuer.url, &url);
        issuer.route("/jwks", Answer::Json(document_of(MAX_DOCUMENT)));
        let (_, fetched) = keys.fetch().await.expect("exactly the limit is read");
        assert_eq!(fetched.len(), 1);
        issuer.route("/jwks", Answer::Json(document_of(MAX_DOCUMENT + 1)));
        let err = keys.fetch().await.err().expect("one byte more is refused");
        assert!(err.contains(&url), "{err}");
        assert!(err.contains("length limit"), "{err}");
    }

    /// An issuer that answers the head and then stalls the body: the fetch gives up after
    /// `FETCH_TIMEOUT` (waits those 5 s).
    #[tokio::test]
    async fn a_fetch_gives_up_after_5_s() {
        let issuer = StandIn::start().await;
        issuer.route("/jwks", Answer::Stall);
        let keys = cache(&issuer.url, &format!("{}/jwks", issuer.url));
        let started = Instant::now();
        let err = keys.fetch().await.err().expect("a stalled fetch fails");
        let took = started.elapsed();
        assert!(err.contains("no answer within 5s"), "{err}");
        assert!(
            (FETCH_TIMEOUT..FETCH_TIMEOUT + Duration::from_secs(3)).contains(&took),
            "gave up after {took:?}"
        );
        assert_eq!(issuer.hits("/jwks"), 1, "the head was answered");
    }

    #[tokio::test]
    async fn discovery_checks_the_issuer_and_holds_the_jwks_uri_to_https() {
        let issuer = StandIn::start().await;
        let url = issuer.url.clone();
        let rfc8414 = "/.well-known/oauth-authorization-server";
        let oidc = "/.well-known/openid-configuration";
        issuer.route(
            "/jwks",
            Answer::Json(json!({"keys": [jwk("k1")]}).to_string()),
        );
        let keys = cache(&url, "");

        // Metadata naming another issuer (at both places): not used.
        let other =
            json!({"issuer": "https://other.example.com", "jwks_uri": format!("{url}/jwks")});
        issuer.route(rfc8414, Answer::Json(other.to_string()));
        issuer.route(oidc, Answer::Json(other.to_string()));
        let err = keys.fetch().await.err().expect("another issuer's metadata");
        assert!(err.contains("`issuer` is not"), "{err}");
        assert_eq!(issuer.hits("/jwks"), 0, "its jwks_uri is never fetched");

        // Our issuer, but keys over plain http off loopback: refused before any request.
        let plain = json!({"issuer": url, "jwks_uri": "http://keys.example.com/jwks"});
        issuer.route(rfc8414, Answer::Json(plain.to_string()));
        let err = keys.fetch().await.err().expect("an http jwks_uri");
        assert!(err.contains("http://keys.example.com/jwks"), "{err}");
        assert!(err.contains("use https"), "{err}");

        // RFC 8414 metadata missing, OpenID Connect's found: its jwks_uri is used.
        issuer.routes.lock().remove(rfc8414);
        let good = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
        issuer.route(oidc, Answer::Json(good.to_string()));
        let (jwks_url, fetched) = keys.fetch().await.expect("discovered");
        assert_eq!(jwks_url, format!("{url}/jwks"));
        assert_eq!(fetched.len(), 1);
        assert_eq!(issuer.hits("/jwks"), 1);
    }
}
