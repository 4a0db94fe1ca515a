//! Speaking to a 2026-07-28 (stateless) upstream, and deciding which era an `era: auto`
//! upstream speaks.
//!
//! A 2026-07-28 request carries no session: every POST has `MCP-Protocol-Version:
//! 2026-07-28`, `Mcp-Method`, `Mcp-Name` (tools/call, prompts/get: the name; resources/read:
//! the URI; `=?base64?…?=` when not plain visible ASCII), `Mcp-Param-*` for tool arguments
//! whose schema names an `x-mcp-header`, and `_meta` with the protocol version and the client
//! capabilities (the node declares none) and, when the client asked for log messages, the
//! level. The capabilities come from `server/discover`; list changes from a
//! `subscriptions/listen` stream. Results lose what only a 2026-07-28 client reads
//! (`resultType: complete`, `ttlMs`, `cacheScope`, the server's `serverInfo` in `_meta`);
//! the node adds its own back for a 2026-07-28 client. An `input_required` result is not
//! relayed yet (an error naming the upstream).
//!
//! **Detection (`era: auto`)**, done each time the node would open a session with the
//! upstream: it is asked `server/discover` as a 2026-07-28 request. An answer that is a
//! JSON-RPC result whose `supportedVersions` holds `2026-07-28` makes it a 2026-07-28
//! upstream; any other answer (an HTTP error status — a session server refuses a request
//! without a session, 400 or 404 —, a JSON-RPC error such as -32601 or -32022, a result
//! without that version) makes it a legacy one, opened with `initialize`. No answer
//! (unreachable, timeout) decides nothing: the request fails and the next one asks again.

use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::error::UpstreamError;

/// The stateless revision's version string.
pub const VERSION: &str = "2026-07-28";
/// `_meta` key of the protocol version.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client capabilities.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the log level.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key of the server's `Implementation`.
const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// `params` as sent to a 2026-07-28 upstream: its `_meta` with the protocol version and the
/// (empty) client capabilities added.
pub fn params(params: &Value) -> Value {
    let mut p = match params {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let meta = p.entry("_meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta[META_PROTOCOL_VERSION] = json!(VERSION);
    meta[META_CLIENT_CAPABILITIES] = json!({});
    Value::Object(p)
}

/// `params` as sent to a legacy upstream: without the 2026-07-28 log level key (a legacy
/// upstream is told the level with `logging/setLevel`).
pub fn legacy_params(params: &Value) -> Value {
    let mut p = params.clone();
    if let Some(Value::Object(meta)) = p.get_mut("_meta") {
        meta.remove(META_LOG_LEVEL);
        if meta.is_empty()
            && let Value::Object(m) = &mut p
        {
            m.remove("_meta");
        }
    }
    p
}

/// A header value as sent: as is when plain visible ASCII without surrounding spaces, else
/// `=?base64?…?=`.
fn header_value(v: &str) -> Option<HeaderValue> {
    let plain = !v.is_empty()
        && v.bytes().all(|b| (0x20..0x7f).contains(&b))
        && v.trim() == v
        && !v.starts_with("=?");
    let text = if plain {
        v.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
    };
    HeaderValue::from_str(&text).ok()
}

/// The 2026-07-28 headers of a request: `Mcp-Method`, and `Mcp-Name` for the methods that
/// name their target.
pub fn headers(method: &str, params: &Value) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Some(m) = header_value(method) {
        out.push((HeaderName::from_static("mcp-method"), m));
    }
    let field = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(name) = field
        .and_then(|f| params.get(f))
        .and_then(Value::as_str)
        .and_then(header_value)
    {
        out.push((HeaderName::from_static("mcp-name"), name));
    }
    out
}

/// `Mcp-Param-*` headers for a call of a tool with `input_schema`: one per property that
/// names an `x-mcp-header` and has a string, number or boolean argument.
pub fn param_headers(
    input_schema: Option<&Value>,
    arguments: &Map<String, Value>,
) -> Vec<(HeaderName, HeaderValue)> {
    let Some(Value::Object(props)) = input_schema.and_then(|s| s.get("properties")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (prop, schema) in props {
        let Some(name) = schema.get("x-mcp-header").and_then(Value::as_str) else {
            continue;
        };
        let text = match arguments.get(prop) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => continue,
        };
        let (Ok(header), Some(value)) = (
            HeaderName::from_bytes(format!("mcp-param-{}", name.to_ascii_lowercase()).as_bytes()),
            header_value(&text),
        ) else {
            continue;
        };
        out.push((header, value));
    }
    out
}

/// A 2026-07-28 result as the node passes it on: `input_required` refused, the fields only a
/// 2026-07-28 client reads removed.
pub fn result(mut result: Value) -> Result<Value, UpstreamError> {
    let Value::Object(m) = &mut result else {
        return Ok(result);
    };
    match m.get("resultType").and_then(Value::as_str) {
        None | Some("complete") => {}
        Some("input_required") => {
            return Err(UpstreamError::Unsupported(
                "it asked for input (`input_required`), which is not relayed from upstreams yet"
                    .into(),
            ));
        }
        Some(other) => {
            return Err(UpstreamError::Protocol(format!(
                "unknown `resultType` `{other}`"
            )));
        }
    }
    m.remove("resultType");
    m.remove("ttlMs");
    m.remove("cacheScope");
    if let Some(Value::Object(meta)) = m.get_mut("_meta") {
        meta.remove(META_SERVER_INFO);
        if meta.is_empty() {
            m.remove("_meta");
        }
    }
    Ok(result)
}

/// Whether a `server/discover` result says the upstream speaks 2026-07-28.
pub fn discovered(result: &Value) -> bool {
    result
        .get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(|v| v == VERSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_headers_and_meta() {
        let p = params(&json!({"name": "t", "_meta": {"progressToken": 3}}));
        assert_eq!(p["_meta"]["progressToken"], 3);
        assert_eq!(p["_meta"][META_PROTOCOL_VERSION], VERSION);
        assert_eq!(p["_meta"][META_CLIENT_CAPABILITIES], json!({}));
        let h = headers("tools/call", &json!({"name": "té"}));
        assert_eq!(h[0].1, "tools/call");
        assert_eq!(h[1].0, "mcp-name");
        assert_eq!(h[1].1, "=?base64?dMOp?=");
        let h = headers("resources/read", &json!({"uri": "test://a"}));
        assert_eq!(h[1].1, "test://a");
        assert_eq!(headers("tools/list", &json!({})).len(), 1);
        let schema = json!({"properties": {"region": {"type": "string", "x-mcp-header": "Region"}, "n": {"x-mcp-header": "N"}, "plain": {}}});
        let args = json!({"region": "eu", "n": 2, "plain": "x"});
        let h = param_headers(Some(&schema), args.as_object().unwrap_or(&Map::new()));
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.iter().any(|(k, v)| k == "mcp-param-region" && v == "eu"));
        assert!(h.iter().any(|(k, v)| k == "mcp-param-n" && v == "2"));
        let legacy = legacy_params(&json!({"_meta": {META_LOG_LEVEL: "info"}}));
        assert_eq!(legacy, json!({}));
    }

    #[test]
    fn results_lose_what_only_modern_clients_read() {
        let r = result(json!({"content": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "public", "_meta": {META_SERVER_INFO: {"name": "u"}}})).unwrap_or_default();
        assert_eq!(r, json!({"content": []}));
        let r = result(json!({"resultType": "input_required", "inputRequests": {}}));
        assert!(matches!(r, Err(UpstreamError::Unsupported(_))), "{r:?}");
        assert!(discovered(
            &json!({"supportedVersions": ["2026-07-28", "2025-11-25"]})
        ));
        assert!(!discovered(&json!({"supportedVersions": ["2025-11-25"]})));
        assert!(!discovered(&json!({})));
    }
}
