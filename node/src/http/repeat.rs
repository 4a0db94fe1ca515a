//! What must not run twice when the node holding a session dies with a relayed request in hand.
//!
//! A request sent to a holder that was already dead never ran: `forward.rs` routes it again to
//! the session's new owner. A request the holder had started may have run. That is harmless for
//! anything with no effect beyond its answer (a list, a read, a `ping`, a stream's GET) and for
//! a tool the server marks safe to run twice (`readOnlyHint` or `idempotentHint` in its
//! annotations: the built-in `echo`, an HTTP tool declared `idempotent`, an upstream's tool
//! that says so). Any other `tools/call` could act twice (an upstream's tool that sends a mail
//! or charges a card): its holder tells the forwarding node before it starts
//! (`relayed.rs`, `Reply::before_effect`), and if the holder then dies the forwarding node
//! answers instead of sending it again — a tool result with `isError: true` that says the
//! outcome is unknown, so the model or the program decides whether repeating it is safe, with
//! `_meta["mcpcluster.dev/outcome"] = "unknown"` for programs. In a batch with such a call the
//! other requests get a JSON-RPC error asking to send them again.

use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::jsonrpc::{self, Incoming, RequestMsg, RpcError};
use crate::node::Node;

/// The `_meta` key marking an answer whose tool may or may not have run.
pub const OUTCOME_META: &str = "mcpcluster.dev/outcome";

const TOOLS_CALL: &[u8] = b"tools/call";

/// Whether the tool named `tool` is safe to run twice: it says so (`readOnlyHint` or
/// `idempotentHint`), built in or an upstream's as last listed.
pub fn may_repeat(node: &Node, tool: &str) -> bool {
    match node.catalog.tool(tool) {
        Some(t) => t
            .annotations
            .as_ref()
            .is_some_and(|a| a.read_only_hint == Some(true) || a.idempotent_hint == Some(true)),
        None => node.upstreams.tool_may_repeat(tool),
    }
}

/// A relayed body holding a `tools/call`, read once where it is served: its JSON-RPC messages
/// and whether it was a batch. The holder decides from it whether to ask the forwarding node
/// first ([`must_not_repeat`]), and `/mcp` serves a single message from it without reading the
/// body again ([`Parsed::into_single`], `mcp::handle_relayed`).
#[derive(Debug)]
pub struct Parsed {
    messages: Vec<Incoming>,
    batch: bool,
}

impl Parsed {
    /// The one message of a body that was not a batch.
    pub fn into_single(self) -> Option<Incoming> {
        match (self.batch, self.messages.len()) {
            (false, 1) => self.messages.into_iter().next(),
            _ => None,
        }
    }
}

/// Reads a relayed body that holds a `tools/call`: `None` for any other body (no parse: most
/// relayed bodies hold none), and for one that is not JSON-RPC (a GET, or a body the owner
/// would refuse anyway: sending it again is harmless).
pub fn parse(body: &[u8]) -> Option<Parsed> {
    if !body.windows(TOOLS_CALL.len()).any(|w| w == TOOLS_CALL) {
        return None;
    }
    let (messages, batch) = messages(body)?;
    Some(Parsed { messages, batch })
}

/// Whether a message may be sent again: anything but a `tools/call` of a tool not safe to
/// run twice (`may_repeat(tool)` says which are).
fn repeats(m: &Incoming, may_repeat: &impl Fn(&str) -> bool) -> bool {
    match m {
        Incoming::Request(r) => r.method != "tools/call" || tool_name(r).is_some_and(may_repeat),
        _ => true,
    }
}

/// Whether something in `p` must not run twice (its holder asks the forwarding node first).
pub fn must_not_repeat(p: &Parsed, may_repeat: impl Fn(&str) -> bool) -> bool {
    !p.messages.iter().all(|m| repeats(m, &may_repeat))
}

/// What a client gets for a relayed body that must not be sent again: `None` when it may be
/// (nothing in it acts twice), else the JSON body of the answer (an object, or an array for a
/// batch). `may_repeat(tool)` says whether the tool named so is safe to run twice.
pub fn answer_instead(body: &[u8], may_repeat: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    answer_for(&parse(body)?, may_repeat)
}

/// [`answer_instead`] for a body read already.
pub fn answer_for(p: &Parsed, may_repeat: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    if !must_not_repeat(p, &may_repeat) {
        return None;
    }
    let answers: Vec<Value> = p
        .messages
        .iter()
        .filter_map(|m| match m {
            Incoming::Request(r) if !repeats(m, &may_repeat) => Some(outcome_unknown(r)),
            Incoming::Request(r) => Some(not_sent(r)),
            _ => None,
        })
        .collect();
    let value = match (p.batch, answers.len()) {
        (false, 1) => answers.into_iter().next()?,
        _ => Value::Array(answers),
    };
    serde_json::to_vec(&value).ok()
}

/// The JSON-RPC messages of a body and whether it was a batch; `None` when it is not JSON-RPC.
fn messages(body: &[u8]) -> Option<(Vec<Incoming>, bool)> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first == b'[' {
        let raws: Vec<Box<RawValue>> = serde_json::from_slice(body).ok()?;
        let parsed = raws
            .iter()
            .filter_map(|r| jsonrpc::parse_message(r).ok())
            .collect();
        Some((parsed, true))
    } else {
        let raw: Box<RawValue> = serde_json::from_slice(body).ok()?;
        Some((vec![jsonrpc::parse_message(&raw).ok()?], false))
    }
}

fn tool_name(r: &RequestMsg) -> Option<&str> {
    r.params.as_ref()?.get("name")?.as_str()
}

fn outcome_unknown(r: &RequestMsg) -> Value {
    let tool = tool_name(r).unwrap_or_default();
    let text = format!(
        "The cluster node running `{tool}` stopped before it answered: the tool may or may not \
         have run. Call it again only if running it twice is safe."
    );
    let result = json!({
        "content": [{ "type": "text", "text": text }],
        "isError": true,
        "_meta": { OUTCOME_META: "unknown" },
    });
    serde_json::from_slice(&jsonrpc::response(&r.id, &result)).unwrap_or(Value::Null)
}

fn not_sent(r: &RequestMsg) -> Value {
    let error = RpcError::new(
        jsonrpc::code::OVERLOADED,
        "not answered: the node serving this session stopped, and this batch holds a tool call \
         that must not run twice; send this request again",
    );
    serde_json::from_slice(&jsonrpc::error_response(Some(&r.id), &error)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_echo(name: &str) -> bool {
        name == "echo"
    }

    fn answer(body: &str) -> Option<Value> {
        answer_instead(body.as_bytes(), only_echo)
            .map(|b| serde_json::from_slice(&b).expect("JSON"))
    }

    #[test]
    fn what_has_no_effect_or_is_marked_safe_is_sent_again() {
        for body in [
            "",
            "not json",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},
                {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}]"#,
        ] {
            assert_eq!(answer(body), None, "{body}");
        }
    }

    #[test]
    fn a_call_that_may_act_twice_is_answered_with_an_unknown_outcome() {
        let a = answer(
            r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"mail__send"}}"#,
        )
        .expect("answered");
        assert_eq!(a["id"], "c1");
        assert_eq!(a["result"]["isError"], true);
        assert_eq!(a["result"]["_meta"][OUTCOME_META], "unknown");
        let text = a["result"]["content"][0]["text"]
            .as_str()
            .expect("answered");
        assert!(
            text.contains("`mail__send`") && text.contains("may or may not"),
            "{text}"
        );
        // No name: nobody can say the tool is safe.
        let a = answer(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{}}"#)
            .expect("answered");
        assert_eq!(a["result"]["isError"], true);
    }

    #[test]
    fn a_body_is_read_once_and_one_message_is_handed_on() {
        // No `tools/call` in it: not read at all.
        assert!(parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).is_none());
        let p =
            parse(br#" {"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"pay"}}"#)
                .expect("read");
        assert!(must_not_repeat(&p, only_echo));
        assert!(answer_for(&p, only_echo).is_some());
        match p.into_single() {
            Some(Incoming::Request(r)) => {
                assert_eq!(r.method, "tools/call");
                assert_eq!(tool_name(&r), Some("pay"));
            }
            other => panic!("one request: {other:?}"),
        }
        let p =
            parse(br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}]"#)
                .expect("read");
        assert!(!must_not_repeat(&p, only_echo));
        assert!(
            p.into_single().is_none(),
            "a batch is served from its bytes"
        );
    }

    #[test]
    fn a_batch_with_such_a_call_is_answered_whole() {
        let a = answer(
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},
                {"jsonrpc":"2.0","method":"notifications/progress","params":{}},
                {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pay"}}]"#,
        )
        .expect("answered");
        let a = a.as_array().expect("answered");
        assert_eq!(
            a.len(),
            2,
            "one answer per request, none for the notification"
        );
        assert_eq!(a[0]["id"], 1);
        assert_eq!(a[0]["error"]["code"], jsonrpc::code::OVERLOADED);
        assert_eq!(a[1]["id"], 2);
        assert_eq!(a[1]["result"]["isError"], true);
    }
}
