//! What each admin path answers (`route`), after the credentials check of protected paths.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use super::auth;
use crate::cluster::ClusterHandle;
use crate::node::Node;

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn json_reply(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", body.to_string())
}

/// `POST /drain` starts a drain (202), `GET /drain` reports its progress (200), `DELETE
/// /drain` cancels it (200).
fn drain(node: &Arc<Node>, method: &Method) -> Response<Full<Bytes>> {
    let (status, progress) = match *method {
        Method::POST => {
            node.begin_drain();
            (StatusCode::ACCEPTED, node.drain_progress())
        }
        Method::GET => (StatusCode::OK, node.drain_progress()),
        Method::DELETE => {
            node.cancel_drain();
            (StatusCode::OK, node.drain_progress())
        }
        _ => {
            let mut r = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "GET, POST or DELETE\n",
            );
            r.headers_mut().insert(
                header::ALLOW,
                http::HeaderValue::from_static("GET, POST, DELETE"),
            );
            return r;
        }
    };
    json_reply(status, &json!(progress))
}

/// The refusal of a protected request: counted, logged, answered 401/403 with the reason.
fn check(node: &Node, req: &Request<Incoming>, peer: SocketAddr) -> Option<Response<Full<Bytes>>> {
    let path = req.uri().path();
    if !auth::is_protected(path) {
        return None;
    }
    let headers: Vec<&[u8]> = req
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(http::HeaderValue::as_bytes)
        .collect();
    let refusal = auth::decide(&node.settings.admin.policy(), &headers).err()?;
    node.metrics.admin.refuse(refusal);
    match refusal {
        auth::Refusal::wrong => {
            tracing::warn!(%peer, path, method = %req.method(), "admin request with a wrong token refused")
        }
        _ => {
            tracing::debug!(%peer, path, method = %req.method(), reason = ?refusal, "admin request refused")
        }
    }
    let mut r = respond(
        refusal.status(),
        "text/plain",
        format!("{}\n", refusal.message()),
    );
    if refusal.status() == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"mcp-node admin\""),
        );
    }
    Some(r)
}

/// The answer to one admin request from `peer` (`cluster`: the running cluster layer, if any).
pub fn route(
    node: &Arc<Node>,
    cluster: Option<&ClusterHandle>,
    req: &Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    if let Some(refused) = check(node, req, peer) {
        return refused;
    }
    match req.uri().path() {
        "/metrics" => {
            node.metrics.sessions.set(node.sessions.len() as i64);
            respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                node.metrics.encode(),
            )
        }
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            if node.is_draining() {
                respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
            } else {
                respond(StatusCode::OK, "text/plain", "ready\n")
            }
        }
        "/status" => {
            let body = json!({
                "version": env!("CARGO_PKG_VERSION"),
                "connections": node.connections.load(std::sync::atomic::Ordering::Relaxed),
                "maxConnections": node.settings.max_connections,
                "sessions": node.sessions.len(),
                "inflight": node.inflight.load(std::sync::atomic::Ordering::Relaxed),
                "draining": node.is_draining(),
            });
            respond(StatusCode::OK, "application/json", body.to_string())
        }
        "/cluster" => json_reply(
            StatusCode::OK,
            &json!(crate::cluster::view::cluster_view(node, cluster)),
        ),
        "/drain" => drain(node, req.method()),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}
