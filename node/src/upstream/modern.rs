//! Speaking to a 2026-07-28 (stateless) upstream, and deciding which era an `era: auto`
//! upstream speaks.
//!
//! A 2026-07-28 request carries no session: every POST has `MCP-Protocol-Version:
//! 2026-07-28`, `Mcp-Method`, `Mcp-Name` (tools/call, prompts/get: the name; resources/read:
//! the URI; `=?base64?…?=` when not plain visible ASCII), `Mcp-Param-*` for tool arguments
//! whose schema names an `x-mcp-header`, and `_meta` with the protocol version and the client
//! capabilities (the requesting client's `sampling`, `elicitation` and `roots`, which the node
//! relays; none for the node's own requests) and, when the client asked for log messages, the
//! level. The capabilities come from `server/discover`; list changes from a
//! `subscriptions/listen` stream. Results lose what only a 2026-07-28 client reads
//! (`resultType: complete`, `ttlMs`, `cacheScope`, the server's `serverInfo` in `_meta`);
//! the node adds its own back for a 2026-07-28 client. An `input_required` result of a
//! `tools/call`, `prompts/get` or `resources/read` is passed to the caller as it came
//! ([`input_required`] reads it; `served.rs` asks the client and retries), of anything else it
//! is an error naming the upstream.
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
/// client capabilities (those the caller put there, else none) added.
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
    if !meta[META_CLIENT_CAPABILITIES].is_object() {
        meta[META_CLIENT_CAPABILITIES] = json!({});
    }
    Value::Object(p)
}

/// The client capabilities the node passes to a 2026-07-28 upstream for a client that
/// declared `caps`: those of the requests it relays (`sampling`, `elicitation`, `roots`).
pub fn relayed_capabilities(caps: &Value) -> Value {
    let mut out = Map::new();
    for name in ["sampling", "elicitation", "roots"] {
        if let Some(c) = caps.get(name) {
            out.insert(name.into(), c.clone());
        }
    }
    Value::Object(out)
}

/// `params` as sent to a legacy upstream: without the 2026-07-28 log level and client
/// capabilities keys (a legacy upstream is told the level with `logging/setLevel`, the
/// capabilities in `initialize`).
pub fn legacy_params(params: &Value) -> Value {
    let mut p = params.clone();
    if let Some(Value::Object(meta)) = p.get_mut("_meta") {
        meta.remove(META_LOG_LEVEL);
        meta.remove(META_CLIENT_CAPABILITIES);
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

/// Whether an `input_required` result of `method` is passed on (and retried): the requests a
/// client can be asked for input during.
pub fn retryable(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// A 2026-07-28 result as the node passes it on: `input_required` kept as it came when
/// `retryable` (else refused), the fields only a 2026-07-28 client reads removed.
pub fn result(mut result: Value, retryable: bool) -> Result<Value, UpstreamError> {
    let Value::Object(m) = &mut result else {
        return Ok(result);
    };
    match m.get("resultType").and_then(Value::as_str) {
        None | Some("complete") => {}
        Some("input_required") if retryable => return Ok(result),
        Some("input_required") => {
            return Err(UpstreamError::Unsupported(
                "it asked for input (`input_required`) in a request that cannot ask".into(),
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

/// What an upstream's `input_required` result asks: its questions (key, method, params) and
/// the `requestState` to send back with the answers.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRequired {
    /// `inputRequests`, in the upstream's order.
    pub requests: Vec<(String, String, Value)>,
    /// `requestState`, if it sent one.
    pub state: Option<String>,
}

/// Reads an `input_required` result; `None` for any other. A malformed one is an error naming
/// the field.
pub fn input_required(result: &Value) -> Result<Option<InputRequired>, UpstreamError> {
    if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
        return Ok(None);
    }
    let bad = |m: String| UpstreamError::Protocol(format!("`input_required`: {m}"));
    let Some(Value::Object(asked)) = result.get("inputRequests") else {
        return Err(bad("`inputRequests` is not an object".into()));
    };
    if asked.is_empty() {
        return Err(bad("`inputRequests` is empty".into()));
    }
    let mut requests = Vec::with_capacity(asked.len());
    for (key, r) in asked {
        let Some(method) = r.get("method").and_then(Value::as_str) else {
            return Err(bad(format!("`inputRequests.{key}.method` is not a string")));
        };
        let params = r.get("params").cloned().unwrap_or_else(|| json!({}));
        requests.push((key.clone(), method.to_owned(), params));
    }
    let state = match result.get("requestState") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("`requestState` is not a string".into())),
    };
    Ok(Some(InputRequired { requests, state }))
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
        let legacy = legacy_params(
            &json!({"_meta": {META_LOG_LEVEL: "info", META_CLIENT_CAPABILITIES: {"sampling": {}}}}),
        );
        assert_eq!(legacy, json!({}));
        let caps = json!({"sampling": {}});
        let p = params(&json!({"_meta": {META_CLIENT_CAPABILITIES: caps}}));
        assert_eq!(
            p["_meta"][META_CLIENT_CAPABILITIES],
            json!({"sampling": {}})
        );
        assert_eq!(
            relayed_capabilities(&json!({"elicitation": {"form": {}}, "experimental": {}})),
            json!({"elicitation": {"form": {}}})
        );
    }

    #[test]
    fn results_lose_what_only_modern_clients_read() {
        let r = result(json!({"content": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "public", "_meta": {META_SERVER_INFO: {"name": "u"}}}), true).unwrap_or_default();
        assert_eq!(r, json!({"content": []}));
        let asking = json!({"resultType": "input_required", "inputRequests": {"k": {"method": "elicitation/create", "params": {"message": "?"}}}, "requestState": "s1"});
        let r = result(asking.clone(), false);
        assert!(matches!(r, Err(UpstreamError::Unsupported(_))), "{r:?}");
        let kept = result(asking.clone(), true).unwrap_or_default();
        assert_eq!(kept, asking);
        let input = input_required(&kept).ok().flatten();
        assert_eq!(
            input,
            Some(InputRequired {
                requests: vec![(
                    "k".into(),
                    "elicitation/create".into(),
                    json!({"message": "?"})
                )],
                state: Some("s1".into()),
            })
        );
        assert_eq!(input_required(&json!({"content": []})).ok().flatten(), None);
        for broken in [
            json!({"resultType": "input_required"}),
            json!({"resultType": "input_required", "inputRequests": {}}),
            json!({"resultType": "input_required", "inputRequests": {"k": {"params": {}}}}),
            json!({"resultType": "input_required", "inputRequests": {"k": {"method": "m"}}, "requestState": 3}),
        ] {
            let e = input_required(&broken);
            assert!(
                matches!(e, Err(UpstreamError::Protocol(_))),
                "{broken}: {e:?}"
            );
        }
        assert!(discovered(
            &json!({"supportedVersions": ["2026-07-28", "2025-11-25"]})
        ));
        assert!(!discovered(&json!({"supportedVersions": ["2025-11-25"]})));
        assert!(!discovered(&json!({})));
    }
}
