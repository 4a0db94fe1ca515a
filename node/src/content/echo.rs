//! The `echo` pack: one `echo` tool returning its `text` argument. This is the tool every
//! benchmark calls, on our node and on the peer servers we compare against. A caller that
//! asks for progress (`_meta.progressToken`) gets one progress notification first, so the
//! answer comes on an SSE stream (`mcp-load --progress`: the SSE-delivered call).

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
    b.tool(tool, |cx: ToolCx, args: Map<String, Value>| async move {
        let text = args.get("text").and_then(Value::as_str).unwrap_or_default();
        // Without a progress token this sends nothing (`ToolCx::progress`).
        cx.progress(1.0, Some(1.0), None);
        Ok::<_, CallError>(CallToolResult::success(vec![ContentBlock::text(text)]))
    });
}
