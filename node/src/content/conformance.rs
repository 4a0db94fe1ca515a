//! The `conformance` pack: the tools, resources and prompts the official MCP conformance
//! suite (`@modelcontextprotocol/conformance`) calls by name, with the behaviour it checks
//! (content kinds, logging, progress, sampling, elicitation, multi-round input, list-changed
//! triggers). Served on both eras by the same handlers.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rmcp::model::{
    CallToolResult, ContentBlock, GetPromptResult, Prompt, PromptArgument, PromptMessage,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, Role, Tool,
};
use serde_json::{Map, Value, json};

use super::ChangeEvent;
use super::catalog::{prompt_ref, template_ref};
use super::context::InputRequest;
use super::{CallError, CatalogBuilder, ToolCx};

/// A 1×1 PNG.
pub const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/// A short silent WAV file (8 kHz, 8-bit mono, 80 samples), base64.
pub fn silent_wav() -> String {
    let samples = 80u32;
    let mut wav = Vec::with_capacity(44 + samples as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&8u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&samples.to_le_bytes());
    wav.extend(std::iter::repeat_n(128u8, samples as usize));
    STANDARD.encode(wav)
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn no_args() -> Arc<Map<String, Value>> {
    Arc::new(object(json!({ "type": "object", "properties": {} })))
}

fn text(t: impl Into<String>) -> ContentBlock {
    ContentBlock::text(t.into())
}

fn ok(content: Vec<ContentBlock>) -> Result<CallToolResult, CallError> {
    Ok(CallToolResult::success(content))
}

fn embedded(uri: &str, mime: &str, body: &str) -> ContentBlock {
    let contents = ResourceContents::text(body, uri).with_mime_type(mime);
    ContentBlock::resource(contents)
}

/// Adds the pack.
pub fn register(b: &mut CatalogBuilder) {
    register_tools(b);
    register_resources(b);
    register_prompts(b);
}

fn tool(name: &'static str, description: &'static str, schema: Arc<Map<String, Value>>) -> Tool {
    Tool::new(name, description, schema)
}

fn register_tools(b: &mut CatalogBuilder) {
    b.tool(
        tool(
            "test_simple_text",
            "Returns a simple text response.",
            no_args(),
        ),
        |_cx: ToolCx, _a| async { ok(vec![text("This is a simple text response for testing.")]) },
    );
    b.tool(
        tool(
            "test_image_content",
            "Returns an image (1x1 PNG).",
            no_args(),
        ),
        |_cx: ToolCx, _a| async { ok(vec![ContentBlock::image(PNG_1X1, "image/png")]) },
    );
    b.tool(
        tool(
            "test_audio_content",
            "Returns audio (a short WAV).",
            no_args(),
        ),
        |_cx: ToolCx, _a| async { ok(vec![ContentBlock::audio(silent_wav(), "audio/wav")]) },
    );
    b.tool(
        tool(
            "test_embedded_resource",
            "Returns an embedded resource.",
            no_args(),
        ),
        |_cx: ToolCx, _a| async {
            ok(vec![embedded(
                "test://embedded-resource",
                "text/plain",
                "This is an embedded resource content.",
            )])
        },
    );
    b.tool(
        tool(
            "test_multiple_content_types",
            "Returns text, an image and a resource.",
            no_args(),
        ),
        |_cx: ToolCx, _a| async {
            ok(vec![
                text("Multiple content types test:"),
                ContentBlock::image(PNG_1X1, "image/png"),
                embedded(
                    "test://mixed-content-resource",
                    "application/json",
                    r#"{"test":"data","value":123}"#,
                ),
            ])
        },
    );
    b.tool(
        tool(
            "test_tool_with_logging",
            "Sends three log messages while running.",
            no_args(),
        ),
        |cx: ToolCx, _a| async move {
            cx.log("info", Some("conformance"), json!("Tool execution started"));
            tokio::time::sleep(Duration::from_millis(50)).await;
            cx.log("info", Some("conformance"), json!("Tool processing data"));
            tokio::time::sleep(Duration::from_millis(50)).await;
            cx.log(
                "info",
                Some("conformance"),
                json!("Tool execution completed"),
            );
            ok(vec![text("Tool with logging executed successfully")])
        },
    );
    b.tool(
        tool(
            "test_logging_tool",
            "Logs only when the request asks for a log level.",
            no_args(),
        ),
        |cx: ToolCx, _a| async move {
            cx.log("info", Some("conformance"), json!("logging tool ran"));
            ok(vec![text("Logging tool executed")])
        },
    );
    b.tool(
        tool(
            "test_error_handling",
            "Always fails (as a tool error, not a protocol error).",
            no_args(),
        ),
        |_cx: ToolCx, _a| async {
            Ok(CallToolResult::error(vec![text(
                "This tool intentionally returns an error for testing",
            )]))
        },
    );
    b.tool(
        tool(
            "test_tool_with_progress",
            "Reports progress 0, 50, 100 of 100.",
            no_args(),
        ),
        |cx: ToolCx, _a| async move {
            for (i, p) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                cx.progress(p, Some(100.0), Some(&format!("step {}", i + 1)));
            }
            ok(vec![text("Progress tool completed")])
        },
    );
    let prompt_schema = Arc::new(object(json!({
        "type": "object",
        "properties": { "prompt": { "type": "string", "description": "The prompt to send to the LLM" } },
        "required": ["prompt"]
    })));
    b.tool(
        tool(
            "test_sampling",
            "Asks the client's LLM to answer `prompt` (sampling).",
            prompt_schema,
        ),
        |cx: ToolCx, a: Map<String, Value>| async move {
            let prompt = a
                .get("prompt")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let answer = cx
                .sample(json!({
                    "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
                    "maxTokens": 100
                }))
                .await?;
            let said = answer
                .pointer("/content/text")
                .and_then(Value::as_str)
                .unwrap_or("(no text)");
            ok(vec![text(format!("LLM response: {said}"))])
        },
    );
    let message_schema = Arc::new(object(json!({
        "type": "object",
        "properties": { "message": { "type": "string", "description": "The message to show the user" } },
        "required": ["message"]
    })));
    b.tool(
        tool(
            "test_elicitation",
            "Asks the user for a username and email (elicitation).",
            message_schema,
        ),
        |cx: ToolCx, a: Map<String, Value>| async move {
            let message = a
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("Please provide your information");
            let answer = cx
                .elicit(json!({
                    "message": message,
                    "requestedSchema": {
                        "type": "object",
                        "properties": {
                            "username": { "type": "string", "description": "User's response" },
                            "email": { "type": "string", "description": "User's email address" }
                        },
                        "required": ["username", "email"]
                    }
                }))
                .await?;
            ok(vec![text(format!("User response: {answer}"))])
        },
    );
    b.tool(
        tool("test_elicitation_sep1034_defaults", "Elicitation with default values (SEP-1034).", no_args()),
        |cx: ToolCx, _a| async move {
            let answer = cx
                .elicit(json!({
                    "message": "Please review and update the form fields with defaults",
                    "requestedSchema": {
                        "type": "object",
                        "properties": {
                            "name": { "type": "string", "description": "User name", "default": "John Doe" },
                            "age": { "type": "integer", "description": "User age", "default": 30 },
                            "score": { "type": "number", "description": "User score", "default": 95.5 },
                            "status": {
                                "type": "string", "description": "User status",
                                "enum": ["active", "inactive", "pending"], "default": "active"
                            },
                            "verified": { "type": "boolean", "description": "Verification status", "default": true }
                        }
                    }
                }))
                .await?;
            ok(vec![text(format!("Elicitation completed: {answer}"))])
        },
    );
    b.tool(
        tool("test_elicitation_sep1330_enums", "Elicitation with every enum form (SEP-1330).", no_args()),
        |cx: ToolCx, _a| async move {
            let answer = cx
                .elicit(json!({
                    "message": "Please select options from the enum fields",
                    "requestedSchema": {
                        "type": "object",
                        "properties": {
                            "untitledSingle": { "type": "string", "enum": ["option1", "option2", "option3"] },
                            "titledSingle": { "type": "string", "oneOf": [
                                { "const": "value1", "title": "First Option" },
                                { "const": "value2", "title": "Second Option" },
                                { "const": "value3", "title": "Third Option" }
                            ]},
                            "legacyEnum": { "type": "string", "enum": ["opt1", "opt2", "opt3"],
                                "enumNames": ["Option One", "Option Two", "Option Three"] },
                            "untitledMulti": { "type": "array",
                                "items": { "type": "string", "enum": ["option1", "option2", "option3"] } },
                            "titledMulti": { "type": "array", "items": { "anyOf": [
                                { "const": "value1", "title": "First Choice" },
                                { "const": "value2", "title": "Second Choice" },
                                { "const": "value3", "title": "Third Choice" }
                            ]}}
                        }
                    }
                }))
                .await?;
            ok(vec![text(format!("Elicitation completed: {answer}"))])
        },
    );
    b.tool(
        tool(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            Arc::new(object(json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": { "address": { "$anchor": "addressDef", "type": "object", "properties": {
                    "street": { "type": "string" }, "city": { "type": "string" } } } },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" },
                    "contactMethod": { "type": "string", "enum": ["phone", "email"] },
                    "phone": { "type": "string" },
                    "email": { "type": "string" }
                },
                "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
                "if": { "properties": { "contactMethod": { "const": "phone" } }, "required": ["contactMethod"] },
                "then": { "required": ["phone"] },
                "else": { "required": ["email"] },
                "additionalProperties": false
            }))),
        ),
        |_cx: ToolCx, a: Map<String, Value>| async move { ok(vec![text(format!("Received: {}", Value::Object(a)))]) },
    );
    register_input_tools(b);
    register_trigger_tools(b);
}

fn ask_name() -> InputRequest {
    InputRequest::elicit(
        "user_name",
        json!({
            "message": "What is your name?",
            "requestedSchema": { "type": "object", "properties": { "name": { "type": "string" } }, "required": ["name"] }
        }),
    )
}

fn accepted_field(answer: Option<&Value>, field: &str) -> Option<String> {
    let answer = answer?;
    if answer.get("action").and_then(Value::as_str) != Some("accept") {
        return None;
    }
    answer.get("content")?.get(field).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn register_input_tools(b: &mut CatalogBuilder) {
    b.tool(
        tool("test_missing_capability", "Needs the client's sampling capability.", no_args()),
        |cx: ToolCx, _a| async move {
            let answer = cx
                .sample(json!({
                    "messages": [{ "role": "user", "content": { "type": "text", "text": "Say hello" } }],
                    "maxTokens": 10
                }))
                .await?;
            ok(vec![text(format!("Sampled: {answer}"))])
        },
    );
    b.tool(
        tool(
            "test_streaming_elicitation",
            "Asks the user a question while running.",
            no_args(),
        ),
        |cx: ToolCx, _a| async move {
            let answers = cx.request_input(vec![ask_name()], None).await?;
            let name = accepted_field(answers.get("user_name"), "name")
                .unwrap_or_else(|| "stranger".into());
            ok(vec![text(format!("Hello, {name}!"))])
        },
    );
    b.tool(
        tool(
            "test_input_required_result_elicitation",
            "Asks the user's name (input_required).",
            no_args(),
        ),
        |cx: ToolCx, _a| async move {
            let answers = cx.request_input(vec![ask_name()], None).await?;
            match accepted_field(answers.get("user_name"), "name") {
                Some(name) => ok(vec![text(format!("Hello, {name}!"))]),
                None => Err(CallError::InvalidParams(
                    "`inputResponses.user_name` is not an accepted elicitation with `name`".into(),
                )),
            }
        },
    );
    b.tool(
        tool("test_input_required_result_sampling", "Asks the client's LLM a question (input_required).", no_args()),
        |cx: ToolCx, _a| async move {
            let answers = cx
                .request_input(
                    vec![InputRequest::sample(
                        "capital_question",
                        json!({
                            "messages": [{ "role": "user", "content": { "type": "text", "text": "What is the capital of France?" } }],
                            "maxTokens": 100
                        }),
                    )],
                    None,
                )
                .await?;
            let said = answers.get("capital_question").and_then(|a| a.pointer("/content/text")).and_then(Value::as_str);
            ok(vec![text(format!("LLM said: {}", said.unwrap_or("(no text)")))])
        },
    );
    b.tool(
        tool(
            "test_input_required_result_list_roots",
            "Asks the client for its roots (input_required).",
            no_args(),
        ),
        |cx: ToolCx, _a| async move {
            let answers = cx
                .request_input(vec![InputRequest::roots("client_roots")], None)
                .await?;
            let n = answers
                .get("client_roots")
                .and_then(|r| r.get("roots"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            ok(vec![text(format!("Client has {n} root(s)"))])
        },
    );
    b.tool(
        tool("test_input_required_result_request_state", "Asks for confirmation and carries state.", no_args()),
        |cx: ToolCx, _a| async move {
            let confirm = InputRequest::elicit(
                "confirm",
                json!({
                    "message": "Please confirm",
                    "requestedSchema": { "type": "object", "properties": { "ok": { "type": "boolean" } }, "required": ["ok"] }
                }),
            );
            let answers = cx.request_input(vec![confirm], Some(json!({ "stage": "confirm" }))).await?;
            let state_ok = cx.request_state().and_then(|s| s.get("stage")).and_then(Value::as_str) == Some("confirm");
            let confirmed = accepted_field(answers.get("confirm"), "ok").is_some();
            ok(vec![text(format!("Confirmed: {confirmed}; {}", if state_ok { "state-ok" } else { "state-missing" }))])
        },
    );
    b.tool(
        tool("test_input_required_result_multiple_inputs", "Asks three questions at once.", no_args()),
        |cx: ToolCx, _a| async move {
            let answers = cx
                .request_input(
                    vec![
                        ask_name(),
                        InputRequest::sample(
                            "greeting",
                            json!({
                                "messages": [{ "role": "user", "content": { "type": "text", "text": "Write a short greeting" } }],
                                "maxTokens": 50
                            }),
                        ),
                        InputRequest::roots("client_roots"),
                    ],
                    Some(json!({ "stage": "multiple" })),
                )
                .await?;
            ok(vec![text(format!("Received {} answers", answers.len()))])
        },
    );
    b.tool(
        tool("test_input_required_result_multi_round", "Asks two questions in two rounds.", no_args()),
        |cx: ToolCx, _a| async move {
            let step = cx.request_state().and_then(|s| s.get("step")).and_then(Value::as_u64).unwrap_or(0);
            let step1 = InputRequest::elicit(
                "step1",
                json!({
                    "message": "Step 1: What is your name?",
                    "requestedSchema": { "type": "object", "properties": { "name": { "type": "string" } }, "required": ["name"] }
                }),
            );
            let step2 = InputRequest::elicit(
                "step2",
                json!({
                    "message": "Step 2: What is your favorite color?",
                    "requestedSchema": { "type": "object", "properties": { "color": { "type": "string" } }, "required": ["color"] }
                }),
            );
            if step < 2 {
                let first = cx.request_input(vec![step1], Some(json!({ "step": 1 }))).await?;
                let name = accepted_field(first.get("step1"), "name").unwrap_or_default();
                let second = cx.request_input(vec![step2], Some(json!({ "step": 2, "name": name }))).await?;
                let color = accepted_field(second.get("step2"), "color").unwrap_or_default();
                return ok(vec![text(format!("{name} likes {color}"))]);
            }
            let name = cx.request_state().and_then(|s| s.get("name")).and_then(Value::as_str).unwrap_or("").to_string();
            let second = cx.request_input(vec![step2], Some(json!({ "step": 2, "name": name }))).await?;
            let color = accepted_field(second.get("step2"), "color").unwrap_or_default();
            ok(vec![text(format!("{name} likes {color}"))])
        },
    );
    b.tool(
        tool("test_input_required_result_tampered_state", "Carries state that must come back unmodified.", no_args()),
        |cx: ToolCx, _a| async move {
            let confirm = InputRequest::elicit(
                "confirm",
                json!({
                    "message": "Please confirm",
                    "requestedSchema": { "type": "object", "properties": { "ok": { "type": "boolean" } }, "required": ["ok"] }
                }),
            );
            cx.request_input(vec![confirm], Some(json!({ "stage": "tamper-check" }))).await?;
            ok(vec![text("State verified")])
        },
    );
    b.tool(
        tool("test_input_required_result_capabilities", "Asks only what the client declared it can answer.", no_args()),
        |cx: ToolCx, _a| async move {
            let answers = cx
                .request_input(
                    vec![
                        ask_name(),
                        InputRequest::sample(
                            "capital_question",
                            json!({
                                "messages": [{ "role": "user", "content": { "type": "text", "text": "What is the capital of France?" } }],
                                "maxTokens": 100
                            }),
                        ),
                    ],
                    None,
                )
                .await?;
            ok(vec![text(format!("Received {} answers", answers.len()))])
        },
    );
}

fn register_trigger_tools(b: &mut CatalogBuilder) {
    b.tool(
        tool(
            "test_reconnection",
            "Closes its SSE stream mid-call; the client resumes with Last-Event-ID.",
            no_args(),
        ),
        |cx: ToolCx, _a| async move {
            cx.end_stream_for_polling(200);
            tokio::time::sleep(Duration::from_millis(300)).await;
            ok(vec![text("Reconnection test completed")])
        },
    );
    b.tool(
        tool(
            "test_trigger_tool_change",
            "Announces notifications/tools/list_changed.",
            no_args(),
        ),
        |cx: ToolCx, _a| async move {
            cx.announce(ChangeEvent::ToolsListChanged);
            ok(vec![text("tools/list_changed announced")])
        },
    );
    b.tool(
        tool(
            "test_trigger_prompt_change",
            "Announces notifications/prompts/list_changed.",
            no_args(),
        ),
        |cx: ToolCx, _a| async move {
            cx.announce(ChangeEvent::PromptsListChanged);
            ok(vec![text("prompts/list_changed announced")])
        },
    );
}

fn register_resources(b: &mut CatalogBuilder) {
    let mut text_res = Resource::new("test://static-text", "static-text");
    text_res.description = Some("A static text resource".into());
    text_res.mime_type = Some("text/plain".into());
    b.resource(
        text_res,
        |_cx: ToolCx, uri: String, _v: Vec<(String, String)>| async move {
            let c = ResourceContents::text("This is the content of the static text resource.", uri)
                .with_mime_type("text/plain");
            Ok(ReadResourceResult::new(vec![c]))
        },
    );
    let mut bin = Resource::new("test://static-binary", "static-binary");
    bin.description = Some("A static binary resource (PNG)".into());
    bin.mime_type = Some("image/png".into());
    b.resource(
        bin,
        |_cx: ToolCx, uri: String, _v: Vec<(String, String)>| async move {
            let c = ResourceContents::blob(PNG_1X1, uri).with_mime_type("image/png");
            Ok(ReadResourceResult::new(vec![c]))
        },
    );
    let template = ResourceTemplate::new("test://template/{id}/data", "template-data")
        .with_description("Data for an id")
        .with_mime_type("application/json");
    b.template(
        template,
        |_cx: ToolCx, uri: String, vars: Vec<(String, String)>| async move {
            let id = vars
                .into_iter()
                .find(|(k, _)| k == "id")
                .map(|(_, v)| v)
                .unwrap_or_default();
            let body =
                json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") })
                    .to_string();
            let c = ResourceContents::text(body, uri).with_mime_type("application/json");
            Ok(ReadResourceResult::new(vec![c]))
        },
    );
    b.completions(
        template_ref("test://template/{id}/data"),
        "id",
        vec!["1".into(), "123".into(), "42".into()],
    );
}

fn arg(name: &str, description: &str, required: bool) -> PromptArgument {
    let mut a = PromptArgument::new(name);
    a.description = Some(description.into());
    a.required = Some(required);
    a
}

fn prompt(name: &str, description: &str, args: Vec<PromptArgument>) -> Prompt {
    Prompt::new(
        name,
        Some(description),
        if args.is_empty() { None } else { Some(args) },
    )
}

fn str_arg(a: &Map<String, Value>, k: &str) -> String {
    a.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn register_prompts(b: &mut CatalogBuilder) {
    b.prompt(
        prompt(
            "test_simple_prompt",
            "A simple prompt without arguments",
            vec![],
        ),
        |_cx: ToolCx, _a| async {
            Ok(GetPromptResult::new(vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )]))
        },
    );
    b.prompt(
        prompt(
            "test_prompt_with_arguments",
            "A prompt with two required arguments",
            vec![
                arg("arg1", "First test argument", true),
                arg("arg2", "Second test argument", true),
            ],
        ),
        |_cx: ToolCx, a: Map<String, Value>| async move {
            let t = format!(
                "Prompt with arguments: arg1='{}', arg2='{}'",
                str_arg(&a, "arg1"),
                str_arg(&a, "arg2")
            );
            Ok(GetPromptResult::new(vec![PromptMessage::new_text(
                Role::User,
                t,
            )]))
        },
    );
    b.completions(
        prompt_ref("test_prompt_with_arguments"),
        "arg1",
        vec!["test".into(), "testValue1".into(), "other".into()],
    );
    b.completions(
        prompt_ref("test_prompt_with_arguments"),
        "arg2",
        vec!["testValue2".into()],
    );
    b.prompt(
        prompt(
            "test_prompt_with_embedded_resource",
            "A prompt that embeds a resource",
            vec![arg("resourceUri", "URI of the resource to embed", true)],
        ),
        |_cx: ToolCx, a: Map<String, Value>| async move {
            let uri = str_arg(&a, "resourceUri");
            let contents = ResourceContents::text("Embedded resource content for testing.", uri)
                .with_mime_type("text/plain");
            Ok(GetPromptResult::new(vec![
                PromptMessage::new(Role::User, ContentBlock::resource(contents)),
                PromptMessage::new_text(Role::User, "Please process the embedded resource above."),
            ]))
        },
    );
    b.prompt(
        prompt("test_prompt_with_image", "A prompt with an image", vec![]),
        |_cx: ToolCx, _a| async {
            Ok(GetPromptResult::new(vec![
                PromptMessage::new(Role::User, ContentBlock::image(PNG_1X1, "image/png")),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ]))
        },
    );
    b.prompt(
        prompt("test_input_required_result_prompt", "A prompt that asks the user for context first", vec![]),
        |cx: ToolCx, _a| async move {
            let answers = cx
                .request_input(
                    vec![InputRequest::elicit(
                        "user_context",
                        json!({
                            "message": "What context should the prompt use?",
                            "requestedSchema": { "type": "object", "properties": { "context": { "type": "string" } }, "required": ["context"] }
                        }),
                    )],
                    None,
                )
                .await?;
            let context = accepted_field(answers.get("user_context"), "context").unwrap_or_default();
            Ok(GetPromptResult::new(vec![PromptMessage::new_text(
                Role::User,
                format!("Use this context: {context}"),
            )]))
        },
    );
}
