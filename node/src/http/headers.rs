//! The MCP headers `/mcp` reads, and reading them: one place for every module of the endpoint
//! (the era handlers, forwarding).

use http::{HeaderMap, header};

/// `MCP-Protocol-Version` header name.
pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// `Mcp-Session-Id` header name.
pub const SESSION_ID: &str = "mcp-session-id";

/// The value of header `name` when it is present and visible ASCII.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether an `Accept` header admits `mime` (exactly, by `type/*`, or `*/*`).
pub fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    let Some(accept) = header(headers, header::ACCEPT.as_str()) else {
        return false;
    };
    let family = mime.split('/').next().unwrap_or("");
    accept.split(',').any(|part| {
        let m = part.split(';').next().unwrap_or("").trim();
        m == mime || m == "*/*" || m.strip_suffix("/*") == Some(family)
    })
}
