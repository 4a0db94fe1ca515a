//! Client authentication, black-box: a node with `auth.enabled` in front of a stand-in issuer
//! (OAuth metadata + JWKS over HTTP on 127.0.0.1, an ES256 key made here). What a real
//! authorization server and real SDK clients do is in `e2e/auth/` (Keycloak); this file pins
//! every refusal and its exact response.

mod common;
mod scripted;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{ACCEPT_BOTH, JSON, send, send_with};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_node::auth::AuthOutcome;
use mcpcluster_api::NodeConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A stand-in issuer: RFC 8414 metadata and a JWKS with one ES256 key (`k1`); counts key set
/// fetches. Keys can be published later ([`Issuer::publish`]), and the whole issuer taken down
/// (every request answered 503) and up again.
struct Issuer {
    url: String,
    key: EncodingKey,
    /// The public key as JWK parameters (for the HS256-with-the-public-key attack).
    public_jwk: Value,
    jwks_hits: Arc<AtomicUsize>,
    /// The `keys` array served.
    keys: Arc<Mutex<Vec<Value>>>,
    /// While false, everything is answered 503.
    up: Arc<AtomicBool>,
}

/// A fresh ES256 key: its public JWK with `kid`, and the key to sign with.
fn es256_key(kid: &str) -> (Value, EncodingKey) {
    let pair = rcgen::KeyPair::generate().expect("P-256 key");
    let raw = pair.public_key_raw(); // 0x04 || x || y
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    });
    (jwk, EncodingKey::from_ec_der(&pair.serialize_der()))
}

impl Issuer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (public_jwk, key) = es256_key("k1");
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let metadata = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")}).to_string();
        let keys = Arc::new(Mutex::new(vec![
            public_jwk.clone(),
            // An encryption key and a shared secret: never used to verify.
            json!({"kty": "RSA", "use": "enc", "kid": "e1", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "oct", "kid": "s1", "k": "c2VjcmV0"}),
        ]));
        let up = Arc::new(AtomicBool::new(true));
        let (hits, served, serving) = (jwks_hits.clone(), keys.clone(), up.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let (metadata, hits) = (metadata.clone(), hits.clone());
                let jwks = json!({"keys": *served.lock().expect("keys")}).to_string();
                let up = serving.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let (status, body) = match path.as_str() {
                        _ if !up => ("503 Service Unavailable", "{}".to_owned()),
                        "/.well-known/oauth-authorization-server" => ("200 OK", metadata),
                        "/jwks" => {
                            hits.fetch_add(1, Ordering::SeqCst);
                            ("200 OK", jwks)
                        }
                        _ => ("404 Not Found", "{}".to_owned()),
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        Self {
            url,
            key,
            public_jwk,
            jwks_hits,
            keys,
            up,
        }
    }

    /// Starts publishing a new key `kid`; returns the key to sign with.
    fn publish(&self, kid: &str) -> EncodingKey {
        let (jwk, key) = es256_key(kid);
        self.keys.lock().expect("keys").push(jwk);
        key
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    fn claims(&self, sub: &str, aud: &str, scope: &str) -> Value {
        let now = now();
        json!({"iss": self.url, "sub": sub, "aud": aud, "scope": scope, "iat": now, "exp": now + 300})
    }

    fn sign(&self, claims: &Value, kid: &str) -> String {
        sign_with(&self.key, claims, kid)
    }
}

fn sign_with(key: &EncodingKey, claims: &Value, kid: &str) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, key).expect("sign")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const RESOURCE: &str = "http://127.0.0.1:1/mcp";

fn config(issuer: &Issuer) -> NodeConfig {
    let mut c = NodeConfig::default();
    let a = &mut c.auth;
    a.enabled = true;
    a.issuer = issuer.url.clone();
    a.resource = RESOURCE.into();
    a.required_scopes = vec!["mcp:tools".into()];
    a.scopes
        .tools
        .insert("test_simple_text".into(), vec!["mcp:admin".into()]);
    a.clock_skew_secs = 5;
    a.jwks_refresh_min_secs = 30;
    c
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

async fn initialize_as(addr: SocketAddr, token: &str) -> String {
    let auth = bearer(token);
    let r = send(
        addr,
        "POST",
        &[ACCEPT_BOTH, JSON, ("authorization", &auth)],
        INIT,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.header("mcp-session-id").expect("session id").to_owned()
}

async fn call(addr: SocketAddr, token: &str, session: Option<&str>, tool: &str) -> common::Reply {
    call_within(addr, token, session, tool, Duration::from_secs(5)).await
}

async fn call_within(
    addr: SocketAddr,
    token: &str,
    session: Option<&str>,
    tool: &str,
    wait: Duration,
) -> common::Reply {
    let auth = bearer(token);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"hi"}}}}}}"#
    );
    let mut headers = vec![ACCEPT_BOTH, JSON, ("authorization", auth.as_str())];
    if let Some(s) = session {
        headers.push(("mcp-session-id", s));
    }
    send_with(addr, "POST", "/mcp", &headers, &body, wait).await
}

fn challenge_of(r: &common::Reply) -> &str {
    r.header("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate: {r:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_challenges_and_a_valid_token() {
    let issuer = Issuer::start().await;
    let node = common::start(config(&issuer)).await;
    let addr = node.mcp_addr;

    // RFC 9728 metadata at the root and at the path-suffixed URL.
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let r = send_with(addr, "GET", path, &[], "", Duration::from_secs(5)).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let doc = r.json();
        assert_eq!(doc["resource"], RESOURCE);
        assert_eq!(doc["authorization_servers"], json!([issuer.url]));
        assert_eq!(doc["scopes_supported"], json!(["mcp:tools"]));
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    }

    // No token: 401, no error code, where the metadata is and what to ask for.
    let r = send(addr, "POST", &[ACCEPT_BOTH, JSON], INIT).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        challenge_of(&r),
        "Bearer scope=\"mcp:tools\", resource_metadata=\"http://127.0.0.1:1/.well-known/oauth-protected-resource/mcp\""
    );
    // Another scheme is no bearer token either; GET and DELETE are guarded too.
    let r = send(
        addr,
        "POST",
        &[ACCEPT_BOTH, JSON, ("authorization", "Basic dTpw")],
        INIT,
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(!challenge_of(&r).contains("error="), "{r:?}");
    for m in ["GET", "DELETE"] {
        let r = send(
            addr,
            m,
            &[("accept", "text/event-stream"), ("mcp-session-id", "00")],
            "",
        )
        .await;
        assert_eq!(r.status, 401, "{m}: {r:?}");
    }

    // A valid token: a session, tools called; a tool needing another scope: 403 naming it.
    let token = issuer.sign(&issuer.claims("alice", RESOURCE, "mcp:tools"), "k1");
    let session = initialize_as(addr, &token).await;
    let r = call(addr, &token, Some(&session), "echo").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("hi"), "{r:?}");
    let r = call(addr, &token, Some(&session), "test_simple_text").await;
    assert_eq!(r.status, 403, "{r:?}");
    let c = challenge_of(&r);
    assert!(c.starts_with("Bearer error=\"insufficient_scope\""), "{c}");
    assert!(
        c.contains("scope=\"mcp:tools mcp:admin\""),
        "every scope the call needs: {c}"
    );
    assert!(c.contains("resource_metadata=\"http://127.0.0.1:1/"), "{c}");
    // With the scope, the same call passes.
    let admin = issuer.sign(
        &issuer.claims("alice", RESOURCE, "mcp:tools mcp:admin"),
        "k1",
    );
    let r = call(addr, &admin, Some(&session), "test_simple_text").await;
    assert_eq!(r.status, 200, "same principal, more scopes: {r:?}");

    // 2026-07-28: every request is checked on its own.
    let modern = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"m"}},{}}}}}"#,
        common::modern_meta()
    );
    let mh = [
        ACCEPT_BOTH,
        JSON,
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];
    let r = send(addr, "POST", &mh, &modern).await;
    assert_eq!(r.status, 401, "{r:?}");
    let auth = bearer(&token);
    let mut with = mh.to_vec();
    with.push(("authorization", &auth));
    let r = send(addr, "POST", &with, &modern).await;
    assert_eq!(r.status, 200, "{r:?}");

    let m = &node.node.metrics.auth;
    assert_eq!(m.requests(AuthOutcome::insufficient_scope), 1);
    assert!(m.requests(AuthOutcome::missing_token) >= 4);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_the_reason() {
    let issuer = Issuer::start().await;
    let node = common::start(config(&issuer)).await;
    let addr = node.mcp_addr;
    let good = issuer.claims("alice", RESOURCE, "mcp:tools");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let none_token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    // The public key used as an HMAC secret (algorithm confusion).
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(
        &hs,
        &good,
        &EncodingKey::from_secret(issuer.public_jwk.to_string().as_bytes()),
    )
    .expect("sign");
    let tampered = {
        let t = issuer.sign(&good, "k1");
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(with(&|c| c["sub"] = json!("mallory")).to_string());
        parts.join(".")
    };
    let cases: Vec<(&str, String, AuthOutcome, &str)> = vec![
        (
            "expired",
            issuer.sign(&with(&|c| c["exp"] = json!(now() - 60)), "k1"),
            AuthOutcome::expired,
            "expired",
        ),
        (
            "not yet valid",
            issuer.sign(&with(&|c| c["nbf"] = json!(now() + 120)), "k1"),
            AuthOutcome::not_yet_valid,
            "not valid yet",
        ),
        (
            "wrong audience",
            issuer.sign(&with(&|c| c["aud"] = json!("http://127.0.0.1:2/mcp")), "k1"),
            AuthOutcome::wrong_audience,
            "audience",
        ),
        (
            "wrong issuer",
            issuer.sign(&with(&|c| c["iss"] = json!("http://evil.example")), "k1"),
            AuthOutcome::wrong_issuer,
            "not issued by",
        ),
        (
            "unknown key",
            issuer.sign(&good, "k-unknown"),
            AuthOutcome::unknown_key,
            "key the issuer does not publish",
        ),
        (
            "alg none",
            none_token,
            AuthOutcome::bad_algorithm,
            "algorithm",
        ),
        (
            "HS256 with the public key",
            confused,
            AuthOutcome::bad_algorithm,
            "algorithm",
        ),
        (
            "tampered claims",
            tampered,
            AuthOutcome::bad_signature,
            "signature",
        ),
        (
            "no sub",
            issuer.sign(
                &with(&|c| {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("sub");
                    }
                }),
                "k1",
            ),
            AuthOutcome::missing_claim,
            "sub",
        ),
        (
            "not a JWT",
            "abc".into(),
            AuthOutcome::malformed,
            "well-formed",
        ),
    ];
    for (what, token, outcome, says) in &cases {
        let auth = bearer(token);
        let r = send(
            addr,
            "POST",
            &[ACCEPT_BOTH, JSON, ("authorization", &auth)],
            INIT,
        )
        .await;
        assert_eq!(r.status, 401, "{what}: {r:?}");
        let c = challenge_of(&r);
        assert!(
            c.starts_with("Bearer error=\"invalid_token\""),
            "{what}: {c}"
        );
        assert!(c.contains(says), "{what}: `{says}` not in {c}");
        assert!(c.contains("resource_metadata="), "{what}: {c}");
        assert!(
            node.node.metrics.auth.requests(*outcome) >= 1,
            "{what}: not counted as {outcome:?}"
        );
    }
    // An audience list naming us is fine.
    let listed = issuer.sign(&with(&|c| c["aud"] = json!(["other", RESOURCE])), "k1");
    let _ = initialize_as(addr, &listed).await;
    // Two Authorization headers: 400 invalid_request.
    let a = bearer(&issuer.sign(&good, "k1"));
    let r = send(
        addr,
        "POST",
        &[
            ACCEPT_BOTH,
            JSON,
            ("authorization", &a),
            ("authorization", &a),
        ],
        INIT,
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(challenge_of(&r).contains("invalid_request"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_key_ids_do_not_hammer_the_issuer() {
    let issuer = Issuer::start().await;
    let node = common::start(config(&issuer)).await;
    let addr = node.mcp_addr;
    let good = issuer.claims("alice", RESOURCE, "mcp:tools");
    let _ = initialize_as(addr, &issuer.sign(&good, "k1")).await;
    let before = issuer.jwks_hits.load(Ordering::SeqCst);
    assert!(before >= 1, "the key set was fetched");
    for i in 0..50 {
        let auth = bearer(&issuer.sign(&good, &format!("random-{i}")));
        let r = send(
            addr,
            "POST",
            &[ACCEPT_BOTH, JSON, ("authorization", &auth)],
            INIT,
        )
        .await;
        assert_eq!(r.status, 401, "{r:?}");
    }
    let fetched = issuer.jwks_hits.load(Ordering::SeqCst) - before;
    assert!(
        fetched <= 1,
        "50 unknown key ids within jwksRefreshMinSecs: {fetched} fetches (at most 1)"
    );
    // A known key still works meanwhile.
    let _ = initialize_as(addr, &issuer.sign(&good, "k1")).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_key_set_is_used_while_it_is_fetched_again() {
    let issuer = Issuer::start().await;
    let mut c = config(&issuer);
    c.auth.jwks_max_age_secs = 1;
    c.auth.jwks_refresh_min_secs = 1;
    let node = common::start(c).await;
    let token = issuer.sign(&issuer.claims("alice", RESOURCE, "mcp:tools"), "k1");
    let _ = initialize_as(node.mcp_addr, &token).await;
    let before = issuer.jwks_hits.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Older than jwksMaxAgeSecs: answered at once with the cached key, refetched behind it.
    let _ = initialize_as(node.mcp_addr, &token).await;
    let started = std::time::Instant::now();
    while issuer.jwks_hits.load(Ordering::SeqCst) == before {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the old key set was not refetched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown().await;
}

/// Key rotation: a key the issuer starts publishing after the node fetched its key set is
/// accepted on the first token that names it (an unknown `kid` refreshes the set, once the
/// last fetch is `jwksRefreshMinSecs` old).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_published_later_is_accepted_on_its_first_token() {
    let issuer = Issuer::start().await;
    let mut c = config(&issuer);
    c.auth.jwks_refresh_min_secs = 1;
    let node = common::start(c).await;
    let claims = issuer.claims("alice", RESOURCE, "mcp:tools");
    let _ = initialize_as(node.mcp_addr, &issuer.sign(&claims, "k1")).await;
    let before = issuer.jwks_hits.load(Ordering::SeqCst);
    let rotated = issuer.publish("k2");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _ = initialize_as(node.mcp_addr, &sign_with(&rotated, &claims, "k2")).await;
    assert_eq!(
        issuer.jwks_hits.load(Ordering::SeqCst) - before,
        1,
        "one fetch for the new key"
    );
    // The old key keeps working next to it.
    let _ = initialize_as(node.mcp_addr, &issuer.sign(&claims, "k1")).await;
    node.shutdown().await;
}

/// The issuer is down when the node starts: a token cannot be checked, which is not the
/// client's fault, so 503 + `Retry-After` (not a 401 that would send it to re-authorize);
/// once the issuer is up, the same token is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_unavailable_at_start_is_503_with_retry_after_until_the_issuer_is_up() {
    let issuer = Issuer::start().await;
    issuer.set_up(false);
    let node = common::start(config(&issuer)).await;
    let token = issuer.sign(&issuer.claims("alice", RESOURCE, "mcp:tools"), "k1");
    let auth = bearer(&token);
    let r = send(
        node.mcp_addr,
        "POST",
        &[ACCEPT_BOTH, JSON, ("authorization", &auth)],
        INIT,
    )
    .await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
    assert_eq!(r.header("www-authenticate"), None, "{r:?}");
    assert!(r.body.contains("keys are unavailable"), "{r:?}");
    issuer.set_up(true);
    // Until a first key set arrives, a fetch is retried within a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _ = initialize_as(node.mcp_addr, &token).await;
    node.shutdown().await;
}

/// `exp` and `nbf` are checked with `clockSkewSecs` of leeway (5 s here): a token that expired
/// 2 s ago or becomes valid in 2 s is accepted; one that expired 20 s ago is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_within_the_clock_skew_are_accepted() {
    let issuer = Issuer::start().await;
    let node = common::start(config(&issuer)).await;
    let base = issuer.claims("alice", RESOURCE, "mcp:tools");
    let with = |exp: u64, nbf: Option<u64>| {
        let mut c = base.clone();
        c["exp"] = json!(exp);
        if let Some(nbf) = nbf {
            c["nbf"] = json!(nbf);
        }
        issuer.sign(&c, "k1")
    };
    let t = now();
    let _ = initialize_as(node.mcp_addr, &with(t - 2, None)).await;
    let _ = initialize_as(node.mcp_addr, &with(t + 300, Some(t + 2))).await;
    let auth = bearer(&with(t - 20, None));
    let r = send(
        node.mcp_addr,
        "POST",
        &[ACCEPT_BOTH, JSON, ("authorization", &auth)],
        INIT,
    )
    .await;
    assert_eq!(r.status, 401, "beyond the skew: {r:?}");
    assert!(challenge_of(&r).contains("expired"), "{r:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_answers_only_its_principal() {
    let issuer = Issuer::start().await;
    let node = common::start(config(&issuer)).await;
    let addr = node.mcp_addr;
    let alice = issuer.sign(&issuer.claims("alice", RESOURCE, "mcp:tools"), "k1");
    let mallory = issuer.sign(&issuer.claims("mallory", RESOURCE, "mcp:tools"), "k1");
    let session = initialize_as(addr, &alice).await;
    // Another principal with alice's session id: the 404 of an unknown session.
    let r = call(addr, &mallory, Some(&session), "echo").await;
    assert_eq!(r.status, 404, "{r:?}");
    let unknown = call(
        addr,
        &mallory,
        Some("0123456789abcdef0123456789abcdef"),
        "echo",
    )
    .await;
    assert_eq!(
        r.body, unknown.body,
        "indistinguishable from an unknown session"
    );
    let m = format!("Bearer {mallory}");
    for method in ["GET", "DELETE"] {
        let r = send(
            addr,
            method,
            &[
                ("accept", "text/event-stream"),
                ("mcp-session-id", &session),
                ("authorization", &m),
            ],
            "",
        )
        .await;
        assert_eq!(r.status, 404, "{method}: {r:?}");
    }
    assert_eq!(
        node.node
            .metrics
            .auth
            .requests(AuthOutcome::session_principal_mismatch),
        3,
        "POST, GET and DELETE with alice's session id"
    );
    // The session is intact for alice (the DELETE above did not end it).
    let r = call(addr, &alice, Some(&session), "echo").await;
    assert_eq!(r.status, 200, "{r:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tools_never_see_the_token() {
    // A tool endpoint that answers with the request head it got.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let tool_url = format!("http://{}/tool", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let body = head
                    .split("\r\n\r\n")
                    .next()
                    .unwrap_or("")
                    .replace('"', "'");
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    let issuer = Issuer::start().await;
    let mut c = config(&issuer);
    c.content.tools.push(mcpcluster_api::HttpToolConfig {
        name: "peek".into(),
        url: tool_url,
        ..Default::default()
    });
    let node = common::start(c).await;
    let token = issuer.sign(&issuer.claims("alice", RESOURCE, "mcp:tools"), "k1");
    let session = initialize_as(node.mcp_addr, &token).await;
    let r = call(node.mcp_addr, &token, Some(&session), "peek").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("post /tool"), "the tool was called: {r:?}");
    assert!(
        !r.body.contains("authorization"),
        "the token reached the tool: {r:?}"
    );
    assert!(!r.body.contains(&token[..20]), "{r:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binding_is_checked_through_forwarding_and_travels_with_the_session() {
    use mcp_node::session::SessionId;
    let issuer = Issuer::start().await;
    let dir = common::dev_certs("auth-test");
    let clustered = |name: &str, seeds: &[SocketAddr]| {
        let mut c = common::cluster_config(name, &dir, seeds);
        c.auth = config(&issuer).auth;
        c.shutdown_grace_secs = 1;
        c
    };
    let a = common::start_config(clustered("auth-a", &[])).await;
    let b = common::start_config(clustered("auth-b", &[common::peer_addr(&a)])).await;
    let started = std::time::Instant::now();
    while common::live_members(&a) < 2 || common::live_members(&b) < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "no cluster");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let alice = issuer.sign(&issuer.claims("alice", RESOURCE, "mcp:tools"), "k1");
    let mallory = issuer.sign(&issuer.claims("mallory", RESOURCE, "mcp:tools"), "k1");
    let session = initialize_as(a.mcp_addr, &alice).await;
    let id = SessionId::parse(&session).expect("id");
    let copy = b
        .cluster
        .as_ref()
        .expect("clustered")
        .replica(&id)
        .expect("b holds a copy");
    let bound = copy.state.lock().principal.as_deref().copied();
    assert_eq!(
        bound,
        Some(mcp_node::auth::PrincipalId::of(&issuer.url, "alice")),
        "the replica's copy is bound to alice"
    );
    // Through b (forwarded to a, the owner): alice is served, mallory is not.
    let r = call(b.mcp_addr, &alice, Some(&session), "echo").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = call(b.mcp_addr, &mallory, Some(&session), "echo").await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(
        a.node
            .metrics
            .auth
            .requests(AuthOutcome::session_principal_mismatch),
        1,
        "refused at the owner"
    );
    // Without a token nothing is forwarded at all.
    let r = send(
        b.mcp_addr,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &session)],
        INIT,
    )
    .await;
    assert_eq!(r.status, 401, "{r:?}");
    // A client cannot pose as a verified principal: the header is dropped at the edge.
    let forged = format!("v1 {} mcp:tools", "00".repeat(32));
    let auth = bearer(&mallory);
    let r = send(
        b.mcp_addr,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &session), ("authorization", &auth), ("mcpcluster-principal", &forged)],
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#,
    )
    .await;
    assert_eq!(r.status, 404, "{r:?}");

    // a leaves (hand-off): b owns the session now, still bound to alice.
    a.shutdown().await;
    let r = call(b.mcp_addr, &mallory, Some(&session), "echo").await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = call(b.mcp_addr, &alice, Some(&session), "echo").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(b.node.sessions.get(&id).is_some(), "b owns it");
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Three real node processes with auth on; the owner of a session is killed with SIGKILL: the
/// replica that takes the session over holds its binding (it came with the replicated state),
/// so the session answers its principal and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binding_survives_the_owner_being_killed() {
    use std::process::{Child, Command, Stdio};
    struct Fleet(Vec<Child>);
    impl Drop for Fleet {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let issuer = Issuer::start().await;
    let dir = common::dev_certs("auth-kill");
    let file = dir.join("auth.yaml");
    let auth = serde_yaml_ng::to_string(&config(&issuer)).expect("yaml");
    std::fs::write(&file, auth).expect("config file");
    let alive = |admin: SocketAddr| async move {
        if tokio::net::TcpStream::connect(admin).await.is_err() {
            return false; // not listening yet
        }
        let r = send_with(admin, "GET", "/cluster", &[], "", Duration::from_secs(2)).await;
        r.status == 200
            && r.json()["members"]
                .as_array()
                .is_some_and(|m| m.iter().filter(|m| m["state"] == "alive").count() == 3)
    };
    // A port chosen here can be taken by another process's connection before the node binds
    // it (a busy shared machine): then the fleet starts again on other ports.
    let mut attempt = 0;
    let (mut fleet, addrs) = loop {
        attempt += 1;
        // Every port stays bound until all are chosen, so none is handed out twice.
        let held: Vec<_> = (0..3)
            .map(|_| {
                (
                    std::net::TcpListener::bind("127.0.0.1:0").expect("bind"),
                    std::net::TcpListener::bind("127.0.0.1:0").expect("bind"),
                    std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"),
                )
            })
            .collect();
        let addrs: Vec<(SocketAddr, SocketAddr, SocketAddr)> = held
            .iter()
            .map(|(m, a, p)| {
                let addr = |r: std::io::Result<SocketAddr>| r.expect("addr");
                (
                    addr(m.local_addr()),
                    addr(a.local_addr()),
                    addr(p.local_addr()),
                )
            })
            .collect();
        drop(held);
        let seeds: Vec<String> = addrs.iter().map(|a| a.2.to_string()).collect();
        let mut fleet = Fleet(Vec::new());
        for (i, (mcp, admin, peer)) in addrs.iter().enumerate() {
            let log = std::fs::File::create(dir.join(format!("node-{i}.log"))).expect("log");
            let crt = |f: &str| dir.join(f).display().to_string();
            fleet.0.push(
                Command::new(env!("CARGO_BIN_EXE_mcp-node"))
                    .args(["--config", &file.display().to_string()])
                    .args([
                        "--listen",
                        &mcp.to_string(),
                        "--admin-listen",
                        &admin.to_string(),
                    ])
                    // The test reads /cluster anonymously: the loopback opt-in.
                    .arg("--admin-insecure-local")
                    .args(["--cluster=true", "--node-name", &format!("kill-{i}")])
                    .args([
                        "--peer-listen",
                        &peer.to_string(),
                        "--seeds",
                        &seeds.join(","),
                    ])
                    .args([
                        "--cluster-ca-file",
                        &crt("ca.crt"),
                        "--cluster-cert-file",
                        &crt("tls.crt"),
                    ])
                    .args(["--cluster-key-file", &crt("tls.key"), "--log-level", "warn"])
                    .env_remove("MCP_NODE_CONFIG")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("mcp-node starts"),
            );
        }
        let started = std::time::Instant::now();
        let formed = loop {
            if fleet
                .0
                .iter_mut()
                .any(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                break false; // a node exited (its port was taken)
            }
            let mut all = true;
            for a in &addrs {
                all &= alive(a.1).await;
            }
            if all {
                break true;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no cluster of 3; node 0 log: {}",
                std::fs::read_to_string(dir.join("node-0.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if formed {
            break (fleet, addrs);
        }
        assert!(
            attempt < 3,
            "nodes kept exiting; node logs: {:?}",
            (0..3)
                .map(
                    |i| std::fs::read_to_string(dir.join(format!("node-{i}.log")))
                        .unwrap_or_default()
                )
                .collect::<Vec<_>>()
        );
    };
    let alice = issuer.sign(&issuer.claims("alice", RESOURCE, "mcp:tools"), "k1");
    let mallory = issuer.sign(&issuer.claims("mallory", RESOURCE, "mcp:tools"), "k1");
    // initialize answers once a replica holds the session (and its binding).
    let session = initialize_as(addrs[0].0, &alice).await;
    let _ = fleet.0[0].kill(); // SIGKILL
    let _ = fleet.0[0].wait();

    // Through a survivor: alice's calls succeed once the replica took over (503 until then).
    // One call may wait for the dead owner up to `cluster.forwardTimeoutMs` (5 s) and its
    // re-route before its 503: the client waits longer than that.
    let started = std::time::Instant::now();
    loop {
        let r = call_within(
            addrs[1].0,
            &alice,
            Some(&session),
            "echo",
            Duration::from_secs(10),
        )
        .await;
        if r.status == 200 {
            break;
        }
        assert!(
            r.status == 503 && started.elapsed() < Duration::from_secs(15),
            "alice after the kill: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for via in [addrs[1].0, addrs[2].0] {
        let r = call(via, &mallory, Some(&session), "echo").await;
        assert_eq!(r.status, 404, "mallory via {via} after the failover: {r:?}");
    }
    let mut counted = 0.0;
    for a in &addrs[1..] {
        let m = send_with(a.1, "GET", "/metrics", &[], "", Duration::from_secs(2)).await;
        counted += m
            .body
            .lines()
            .find_map(|l| {
                l.strip_prefix("mcp_auth_requests_total{outcome=\"session_principal_mismatch\"} ")
            })
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    assert_eq!(counted, 2.0, "both refusals counted by the new owner");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 2026-07-28 `tools/call` of the scripted upstream's `up__ask` as `token`, with `more`
/// params (the retry's `inputResponses` and `requestState`); the JSON-RPC answer.
async fn modern_ask(addr: SocketAddr, token: &str, more: Value) -> Value {
    let mut params = json!({"name": "up__ask", "arguments": {}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
    }});
    if let Value::Object(m) = more {
        for (k, v) in m {
            params[k] = v;
        }
    }
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params});
    let auth = bearer(token);
    let headers = [
        ACCEPT_BOTH,
        JSON,
        ("authorization", auth.as_str()),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "up__ask"),
    ];
    let r = send_with(
        addr,
        "POST",
        "/mcp",
        &headers,
        &body.to_string(),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .next_back()
        .unwrap_or_else(|| r.json())
}

/// A call a legacy upstream asked a 2026-07-28 client about is held for that client's
/// principal: another principal's retry with the same signed `requestState` is refused (the
/// call stays held), the principal's own continues it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_continues_only_for_its_principal() {
    let issuer = Issuer::start().await;
    let (url, _script) = scripted::scripted_upstream().await;
    let mut c = config(&issuer);
    c.upstreams = vec![mcpcluster_api::UpstreamConfig::new("up", &url)];
    let node = common::start(c).await;
    let addr = node.mcp_addr;
    let alice = issuer.sign(&issuer.claims("alice", RESOURCE, "mcp:tools"), "k1");
    let mallory = issuer.sign(&issuer.claims("mallory", RESOURCE, "mcp:tools"), "k1");
    let r = modern_ask(addr, &alice, json!({})).await;
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    let key = r["result"]["inputRequests"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_default();
    let retry = |name: &str| {
        json!({"inputResponses": {key.clone(): {"action": "accept", "content": {"name": name}}},
               "requestState": r["result"]["requestState"]})
    };
    let stolen = modern_ask(addr, &mallory, retry("Mal")).await;
    assert_eq!(stolen["error"]["code"], -32602, "{stolen}");
    assert!(
        stolen["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("another principal")),
        "{stolen}"
    );
    let done = modern_ask(addr, &alice, retry("Al")).await;
    assert_eq!(
        done["result"]["content"][0]["text"], "answered: ok:Al",
        "{done}"
    );
    node.shutdown().await;
}
