//! Access token validation (OAuth 2.1 §5.2, RFC 9068 shape): a JWS signed by one of the
//! issuer's keys with an accepted algorithm, `iss` equal to the issuer, `aud` containing this
//! server's canonical URI (RFC 8707), `exp`/`nbf` within the allowed clock skew, and a `sub`.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::config::AuthSettings;
use super::jwks::{KeyCache, KeyError};
use super::metrics::AuthOutcome;
use super::principal::{Principal, PrincipalId};

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with JSON header and claims.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// `alg` is not accepted, or is not the key's.
    #[error("the token's signing algorithm is not accepted")]
    Algorithm,
    /// No key with this id.
    #[error("the token is signed with a key the issuer does not publish")]
    UnknownKey,
    /// The issuer's keys could not be fetched (not the client's fault: 503).
    #[error("the authorization server's keys are unavailable")]
    KeysUnavailable,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` passed.
    #[error("the token expired")]
    Expired,
    /// `nbf` in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("the token was not issued by this server's authorization server")]
    Issuer,
    /// `aud` does not name this server.
    #[error("the token was not issued for this server (audience)")]
    Audience,
    /// A required claim is absent.
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
}

impl TokenError {
    /// The metric label.
    pub fn outcome(&self) -> AuthOutcome {
        match self {
            Self::Malformed => AuthOutcome::malformed,
            Self::Algorithm => AuthOutcome::bad_algorithm,
            Self::UnknownKey => AuthOutcome::unknown_key,
            Self::KeysUnavailable => AuthOutcome::keys_unavailable,
            Self::Signature => AuthOutcome::bad_signature,
            Self::Expired => AuthOutcome::expired,
            Self::NotYetValid => AuthOutcome::not_yet_valid,
            Self::Issuer => AuthOutcome::wrong_issuer,
            Self::Audience => AuthOutcome::wrong_audience,
            Self::MissingClaim(_) => AuthOutcome::missing_claim,
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    iss: String,
    /// RFC 8693 / RFC 9068: space-separated.
    #[serde(default)]
    scope: Option<Value>,
    /// Some issuers (Azure AD, Okta) use an array named `scp`.
    #[serde(default)]
    scp: Option<Value>,
}

fn scopes_of(claims: &Claims) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in [&claims.scope, &claims.scp].into_iter().flatten() {
        match v {
            Value::String(s) => {
                out.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned))
            }
            Value::Array(a) => out.extend(a.iter().filter_map(Value::as_str).map(str::to_owned)),
            _ => {}
        }
    }
    // Only scope tokens (RFC 6749 §3.3) travel on: they are forwarded in a header.
    out.retain(|s| {
        s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
    });
    out
}

/// Validates tokens for one issuer and resource.
#[derive(Debug)]
pub struct Validator {
    settings: Arc<AuthSettings>,
    keys: Arc<KeyCache>,
}

impl Validator {
    /// A validator using `keys`.
    pub fn new(settings: Arc<AuthSettings>, keys: Arc<KeyCache>) -> Self {
        Self { settings, keys }
    }

    /// The principal a token stands for, or why it is refused.
    pub async fn validate(&self, token: &str) -> Result<Principal, TokenError> {
        // `alg: none` (and any name we do not accept) is refused before anything else.
        if let Some(alg) = header_alg(token)
            && !self
                .settings
                .algorithms
                .iter()
                .any(|a| format!("{a:?}") == alg)
        {
            return Err(TokenError::Algorithm);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if !self.settings.algorithms.contains(&header.alg) || is_hmac(header.alg) {
            return Err(TokenError::Algorithm);
        }
        let key = self
            .keys
            .key(header.kid.as_deref(), header.alg)
            .await
            .map_err(|e| match e {
                KeyError::Unknown => TokenError::UnknownKey,
                KeyError::Unavailable => TokenError::KeysUnavailable,
            })?;
        let c = &self.settings.config;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = c.clock_skew_secs;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[c.issuer.as_str()]);
        v.set_audience(&[c.resource.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => TokenError::Signature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::Issuer,
            ErrorKind::InvalidAudience => TokenError::Audience,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenError::Algorithm,
            ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
            _ => TokenError::Malformed,
        })?;
        let claims = data.claims;
        let Some(sub) = claims.sub.clone().filter(|s| !s.is_empty()) else {
            return Err(TokenError::MissingClaim("sub".into()));
        };
        Ok(Principal {
            id: PrincipalId::of(&claims.iss, &sub),
            scopes: scopes_of(&claims),
            subject: sub,
        })
    }
}

/// The `alg` of a token's header, if the header is base64url JSON with a string `alg`.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine as _;
    let first = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(str::to_owned)
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}
