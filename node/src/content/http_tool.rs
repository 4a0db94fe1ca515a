//! Tools declared in the configuration file that POST their arguments to an HTTP endpoint.
//! The response body becomes the tool's text result; a non-2xx status, a timeout or a refused
//! connection becomes a tool error (`isError: true`), never a protocol error, because the
//! call itself was valid.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mcpcluster_api::HttpToolConfig;
use rmcp::model::{CallToolResult, ContentBlock, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use super::{CallError, CatalogBuilder, ToolCx};

/// Largest response body a tool endpoint may return (1 MiB).
const MAX_RESPONSE: usize = 1024 * 1024;

/// Checks a tool declaration (called during config validation).
pub fn validate(t: &HttpToolConfig) -> Result<(), String> {
    if t.name.is_empty() {
        return Err("`name` is empty".into());
    }
    let uri: http::Uri = t
        .url
        .parse()
        .map_err(|e| format!("`url` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err("`url` must be http://host[:port]/path".into());
    }
    if let Some(schema) = &t.input_schema {
        if !schema.is_object() {
            return Err("`inputSchema` must be a JSON object".into());
        }
        jsonschema::validator_for(schema).map_err(|e| format!("`inputSchema`: {e}"))?;
    }
    if t.timeout_secs == Some(0) {
        return Err("`timeoutSecs` must be at least 1".into());
    }
    Ok(())
}

/// Adds one HTTP-backed tool.
pub fn register(b: &mut CatalogBuilder, t: &HttpToolConfig) {
    let schema = match t.input_schema.clone() {
        Some(Value::Object(m)) => m,
        _ => match json!({ "type": "object" }) {
            Value::Object(m) => m,
            _ => Map::new(),
        },
    };
    let description = t
        .description
        .clone()
        .unwrap_or_else(|| format!("Calls {}", t.url));
    let mut tool = Tool::new(t.name.clone(), description, Arc::new(schema));
    if t.idempotent {
        tool = tool.annotate(ToolAnnotations::new().idempotent(true));
    }
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let url = t.url.clone();
    let timeout = Duration::from_secs(t.timeout_secs.unwrap_or(10));
    b.tool(tool, move |_cx: ToolCx, args: Map<String, Value>| {
        let client = client.clone();
        let url = url.clone();
        async move { Ok::<_, CallError>(call(&client, &url, timeout, args).await) }
    });
}

async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    timeout: Duration,
    args: Map<String, Value>,
) -> CallToolResult {
    let body = match serde_json::to_vec(&args) {
        Ok(b) => b,
        Err(e) => {
            return CallToolResult::error(vec![ContentBlock::text(format!(
                "cannot encode arguments: {e}"
            ))]);
        }
    };
    let request = match http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
    {
        Ok(r) => r,
        Err(e) => {
            return CallToolResult::error(vec![ContentBlock::text(format!("bad request: {e}"))]);
        }
    };
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| format!("reading the response failed: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => CallToolResult::error(vec![ContentBlock::text(format!(
            "{url} did not answer within {timeout:?}"
        ))]),
        Ok(Err(e)) => CallToolResult::error(vec![ContentBlock::text(e)]),
        Ok(Ok((status, bytes))) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if status.is_success() {
                CallToolResult::success(vec![ContentBlock::text(text)])
            } else {
                CallToolResult::error(vec![ContentBlock::text(format!(
                    "{url} answered {status}: {text}"
                ))])
            }
        }
    }
}
