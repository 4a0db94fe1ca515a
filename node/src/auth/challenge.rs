//! What a client is told: the Protected Resource Metadata document (RFC 9728), 401 with a
//! `WWW-Authenticate: Bearer` challenge pointing at it (RFC 6750 §3, RFC 9728 §5.1), 403
//! `insufficient_scope` naming every scope the request needs.

use http::{HeaderValue, Response, StatusCode, header};

use super::config::AuthSettings;
use crate::http::body::Body;
use crate::http::reply;
use crate::jsonrpc::{RpcError, code};

/// The Protected Resource Metadata document.
pub fn metadata(settings: &AuthSettings) -> Response<Body> {
    let mut r = reply::json(StatusCode::OK, settings.metadata.clone());
    // Public, and the same for every caller; browsers' clients may read it cross-origin.
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

fn quoted(v: &str) -> String {
    // Values we put here are URLs, scope tokens and our own messages; drop what would end
    // the quoted-string rather than escape it.
    v.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

fn challenge(
    settings: &AuthSettings,
    status: StatusCode,
    error: Option<(&str, &str)>,
    scopes: &[&str],
    message: &str,
) -> Response<Body> {
    let mut params = Vec::new();
    if let Some((code, description)) = error {
        params.push(format!("error=\"{}\"", quoted(code)));
        params.push(format!("error_description=\"{}\"", quoted(description)));
    }
    if !scopes.is_empty() {
        params.push(format!("scope=\"{}\"", quoted(&scopes.join(" "))));
    }
    params.push(format!(
        "resource_metadata=\"{}\"",
        quoted(&settings.metadata_url)
    ));
    let value = format!("Bearer {}", params.join(", "));
    let mut r = reply::rpc_error(status, None, &RpcError::new(code::INVALID_REQUEST, message));
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// 401 for a request without a token: no error code (RFC 6750 §3.1), the scopes to ask for.
pub fn missing_token(settings: &AuthSettings) -> Response<Body> {
    let scopes = super::scopes::basic(&settings.config);
    challenge(
        settings,
        StatusCode::UNAUTHORIZED,
        None,
        &scopes,
        "authorization required: send an OAuth access token (Authorization: Bearer)",
    )
}

/// 401 `invalid_token` with why.
pub fn invalid_token(settings: &AuthSettings, why: &str) -> Response<Body> {
    let scopes = super::scopes::basic(&settings.config);
    challenge(
        settings,
        StatusCode::UNAUTHORIZED,
        Some(("invalid_token", why)),
        &scopes,
        &format!("invalid access token: {why}"),
    )
}

/// 400 `invalid_request`: the credentials are not in a form we accept.
pub fn invalid_request(settings: &AuthSettings, why: &str) -> Response<Body> {
    challenge(
        settings,
        StatusCode::BAD_REQUEST,
        Some(("invalid_request", why)),
        &[],
        why,
    )
}

/// 403 `insufficient_scope` with every scope the request needs.
pub fn insufficient_scope(settings: &AuthSettings, needed: &[&str]) -> Response<Body> {
    let why = format!("this request needs the scopes: {}", needed.join(" "));
    challenge(
        settings,
        StatusCode::FORBIDDEN,
        Some(("insufficient_scope", &why)),
        needed,
        &why,
    )
}

/// 503 while the issuer's keys cannot be fetched: the token may be fine.
pub fn keys_unavailable(retry_after_secs: u32) -> Response<Body> {
    reply::overloaded(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "cannot verify access tokens now: the authorization server's keys are unavailable",
        retry_after_secs,
    )
}
