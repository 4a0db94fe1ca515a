//! The `echo` pack: one `echo` tool returning its `text` argument. This is the tool every
//! benchmark calls, on our node and on the peer servers we compare against.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use super::{CallError, CatalogBuilder, ToolCx};

/// The JSON Schema of `echo`'s arguments.
pub fn echo_schema() -> Map<String, Value> {
    let schema = json!({
        "type": "object",
        "properties": { "text": { "type": "string", "description": "Text to send back" } },
        "required": ["text"],
        "additionalProperties": false
    });
    match schema {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Adds the `echo` tool: read-only, so a call relayed to a node that died before answering
/// is sent again to the session's new owner (`http/repeat.rs`).
pub fn register(b: &mut CatalogBuilder) {
    let tool = Tool::new(
        "echo",
        "Returns the `text` argument unchanged.",
        Arc::new(echo_schema()),
    )
    .annotate(
        ToolAnnotations::new()
            .read_only(true)
            .idempotent(true)
            .open_world(false),
    );
    b.tool(tool, |_cx: ToolCx, args: Map<String, Value>| async move {
        let text = args.get("text").and_then(Value::as_str).unwrap_or_default();
        Ok::<_, CallError>(CallToolResult::success(vec![ContentBlock::text(text)]))
    });
}
