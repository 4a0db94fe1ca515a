//! What the holder of a relayed request reads of its body (`mcp_node::http::repeat`, before it
//! sends `ForwardStarted`, wire kind 23, and waits for `ForwardGo`, 24 — their codec is the
//! `peer_wire` target's): any bytes give no panic; the answer given instead of sending the
//! body again is the one its reading gives, JSON — for one message an object answering its
//! id, for a batch an array of one answer per request — and given exactly when something in it
//! must not run twice; and a body read as one message is the very message `/mcp` reads from
//! the same bytes (the holder serves it from that reading: `mcp::handle_relayed`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_node::http::repeat;
use mcp_node::jsonrpc::{self, Incoming};
use serde_json::Value;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    // The first byte says which tools are safe to run twice (by their name's first byte).
    let Some((&mask, body)) = data.split_first() else { return };
    let may_repeat = |tool: &str| tool.as_bytes().first().is_some_and(|b| b & mask != 0);
    let parsed = repeat::parse(body);
    let answer = repeat::answer_instead(body, may_repeat);
    assert_eq!(
        answer,
        parsed.as_ref().and_then(|p| repeat::answer_for(p, may_repeat)),
        "answer_instead(body) == answer_for(parse(body))"
    );
    assert_eq!(
        answer.is_some(),
        parsed.as_ref().is_some_and(|p| repeat::must_not_repeat(p, may_repeat)),
        "an answer is given exactly when something must not run twice"
    );
    if let Some(a) = &answer {
        let v: Value = serde_json::from_slice(a).expect("the answer is JSON");
        let answers = match &v {
            Value::Array(items) => items.clone(),
            Value::Object(_) => vec![v.clone()],
            other => panic!("an answer is an object or an array: {other}"),
        };
        for one in &answers {
            assert_eq!(one["jsonrpc"], "2.0", "{one}");
            assert!(one.get("id").is_some(), "every answer names its request: {one}");
            assert!(
                one.get("result").is_some() != one.get("error").is_some(),
                "a result or an error: {one}"
            );
        }
    }
    let Some(single) = parsed.and_then(repeat::Parsed::into_single) else { return };
    // What `/mcp` reads from the same bytes (`handle_body_from`): one value, not a batch, one
    // JSON-RPC message.
    let raw: Box<RawValue> = serde_json::from_slice(body).expect("/mcp reads the body as JSON too");
    assert!(!raw.get().trim_start().starts_with('['), "not a batch for /mcp either");
    let again: Incoming = jsonrpc::parse_message(&raw).expect("/mcp reads the same message");
    assert_eq!(format!("{single:?}"), format!("{again:?}"), "the same message");
});
