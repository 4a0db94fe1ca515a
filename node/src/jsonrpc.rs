//! The JSON-RPC 2.0 envelope: parsing one incoming message without committing to a schema for
//! its params, and building responses and errors.
//!
//! Params stay as raw JSON until the method is known, so an unknown method costs no parsing and
//! a known method with bad params gets -32602 naming the field, never -32601.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// A JSON-RPC request id: a string or an integer (kept as given, to echo it back exactly).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// Numeric id.
    Number(i64),
    /// String id.
    String(String),
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl RequestId {
    /// The id as a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Number(n) => Value::from(*n),
            Self::String(s) => Value::from(s.clone()),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    jsonrpc: Option<&'a str>,
    #[serde(default, deserialize_with = "deserialize_id")]
    id: Option<Option<RequestId>>,
    method: Option<String>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    result: Option<&'a RawValue>,
    error: Option<&'a RawValue>,
}

fn deserialize_id<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<RequestId>>, D::Error> {
    let v = Option::<RequestId>::deserialize(d)?;
    Ok(Some(v))
}

/// One incoming JSON-RPC message.
#[derive(Debug)]
pub enum Incoming {
    /// A request expecting a response.
    Request(RequestMsg),
    /// A notification (no id).
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A response to a server→client request.
    Response {
        id: RequestId,
        outcome: Result<Value, Value>,
    },
}

/// A request: id, method and params (an object, or absent).
#[derive(Debug, Clone)]
pub struct RequestMsg {
    /// Request id, echoed in the response.
    pub id: RequestId,
    /// Method name.
    pub method: String,
    /// Params object (absent → `None`).
    pub params: Option<Map<String, Value>>,
}

/// Why a body is not a JSON-RPC message; carries the id when one could be read.
#[derive(Debug, Clone)]
pub struct EnvelopeError {
    /// The id of the offending message, if any.
    pub id: Option<RequestId>,
    /// The JSON-RPC error.
    pub error: RpcError,
}

/// Parses one JSON value as a JSON-RPC message.
pub fn parse_message(raw: &RawValue) -> Result<Incoming, EnvelopeError> {
    let env: Envelope<'_> = serde_json::from_str(raw.get()).map_err(|e| EnvelopeError {
        id: None,
        error: RpcError::invalid_request(format!("not a JSON-RPC message: {e}")),
    })?;
    let id = env.id.clone().flatten();
    let fail = |msg: String| EnvelopeError {
        id: id.clone(),
        error: RpcError::invalid_request(msg),
    };
    if env.jsonrpc != Some("2.0") {
        return Err(fail("`jsonrpc` must be \"2.0\"".into()));
    }
    let params = match env.params {
        None => None,
        Some(raw) => match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Object(map)) => Some(map),
            Ok(Value::Null) => None,
            Ok(_) => {
                return Err(EnvelopeError {
                    id: id.clone(),
                    error: RpcError::invalid_params("`params` must be an object"),
                });
            }
            Err(e) => return Err(fail(format!("`params`: {e}"))),
        },
    };
    match (env.method, env.id) {
        (Some(method), Some(Some(id))) => Ok(Incoming::Request(RequestMsg { id, method, params })),
        (Some(_), Some(None)) => Err(fail("`id` must not be null".into())),
        (Some(method), None) => Ok(Incoming::Notification {
            method,
            params: params.map(Value::Object),
        }),
        (None, Some(Some(id))) => {
            let outcome = match (env.result, env.error) {
                (Some(r), None) => Ok(serde_json::from_str(r.get()).unwrap_or(Value::Null)),
                (None, Some(e)) => Err(serde_json::from_str(e.get()).unwrap_or(Value::Null)),
                _ => {
                    return Err(fail(
                        "a response needs exactly one of `result` and `error`".into(),
                    ));
                }
            };
            Ok(Incoming::Response { id, outcome })
        }
        (None, _) => Err(fail("missing `method`".into())),
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// Error code.
    pub code: i32,
    /// Human-readable message.
    pub message: String,
    /// Optional structured data.
    pub data: Option<Value>,
}

/// Error codes used by the node.
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// Not a valid request object.
    pub const INVALID_REQUEST: i32 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// Bad params.
    pub const INVALID_PARAMS: i32 = -32602;
    /// Server fault.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// Legacy (≤ 2025-11-25) "resource not found".
    pub const RESOURCE_NOT_FOUND: i32 = -32002;
    /// 2026-07-28: a required header is missing or does not match the body.
    pub const HEADER_MISMATCH: i32 = -32020;
    /// 2026-07-28: the request needs a client capability that was not declared.
    pub const MISSING_CLIENT_CAPABILITY: i32 = -32021;
    /// 2026-07-28: unsupported protocol version.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;
    /// Rate limited or overloaded (implementation-defined range, legacy era).
    pub const OVERLOADED: i32 = -32000;
    /// Request cancelled.
    pub const REQUEST_CANCELLED: i32 = -32800;
}

impl RpcError {
    /// Builds an error.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
    /// Attaches data.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
    /// -32700.
    pub fn parse(message: impl Into<String>) -> Self {
        Self::new(code::PARSE_ERROR, message)
    }
    /// -32600.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_REQUEST, message)
    }
    /// -32601.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            code::METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )
    }
    /// -32602.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_PARAMS, message)
    }
    /// -32603.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(code::INTERNAL_ERROR, message)
    }
    /// The error object as JSON.
    pub fn to_value(&self) -> Value {
        let mut obj = json!({ "code": self.code, "message": self.message });
        if let Some(data) = &self.data {
            obj["data"] = data.clone();
        }
        obj
    }
}

/// Serializes a success response.
pub fn response(id: &RequestId, result: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    let _ = serde_json::to_writer(&mut out, id);
    out.extend_from_slice(b",\"result\":");
    let _ = serde_json::to_writer(&mut out, result);
    out.push(b'}');
    out
}

/// Serializes an error response (`id` null when unknown).
pub fn error_response(id: Option<&RequestId>, error: &RpcError) -> Vec<u8> {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id.map(RequestId::to_value).unwrap_or(Value::Null),
        "error": error.to_value(),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Serializes a notification.
pub fn notification(method: &str, params: &Value) -> Vec<u8> {
    let body = json!({ "jsonrpc": "2.0", "method": method, "params": params });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Serializes a server→client request.
pub fn request(id: &RequestId, method: &str, params: &Value) -> Vec<u8> {
    let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Incoming, EnvelopeError> {
        let raw: Box<RawValue> = serde_json::from_str(text).expect("json");
        parse_message(&raw)
    }

    #[test]
    fn request_notification_response() {
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(Incoming::Request(RequestMsg {
                id: RequestId::Number(1),
                ..
            }))
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Incoming::Notification { .. })
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Incoming::Response { outcome: Ok(_), .. })
        ));
    }

    #[test]
    fn rejects_bad_envelopes_with_the_id() {
        let err = parse(r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#).expect_err("bad version");
        assert_eq!(err.id, Some(RequestId::Number(7)));
        assert_eq!(err.error.code, code::INVALID_REQUEST);
        let err = parse(r#"{"jsonrpc":"2.0","id":7,"method":"x","params":[1]}"#)
            .expect_err("array params");
        assert_eq!(err.error.code, code::INVALID_PARAMS);
        assert!(parse(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).is_err());
        assert!(parse(r#"[1,2]"#).is_err());
        assert!(parse(r#"{"jsonrpc":"2.0","id":1}"#).is_err());
    }

    #[test]
    fn response_bytes_are_valid_json() {
        let bytes = response(&RequestId::String("x".into()), &json!({"a":1}));
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["id"], "x");
        assert_eq!(v["result"]["a"], 1);
    }

    proptest::proptest! {
        #[test]
        fn any_json_value_is_classified_without_panic(text in ".{0,200}") {
            if let Ok(raw) = serde_json::from_str::<Box<RawValue>>(&text) {
                let _ = parse_message(&raw);
            }
        }

        #[test]
        fn requests_round_trip(id in proptest::prelude::any::<i64>(), method in "[a-z/]{1,20}", key in "[a-z]{1,8}", val in ".{0,20}") {
            let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":{key.clone(): val.clone()}});
            let raw: Box<RawValue> = serde_json::from_str(&body.to_string()).expect("json");
            match parse_message(&raw) {
                Ok(Incoming::Request(r)) => {
                    proptest::prop_assert_eq!(r.id, RequestId::Number(id));
                    proptest::prop_assert_eq!(r.method, method);
                    proptest::prop_assert_eq!(r.params.and_then(|p| p.get(&key).cloned()), Some(json!(val)));
                }
                other => proptest::prop_assert!(false, "unexpected {:?}", other),
            }
        }

        #[test]
        fn responses_are_valid_json(id in ".{0,30}", n in proptest::prelude::any::<i64>()) {
            let bytes = response(&RequestId::String(id.clone()), &json!({"n": n}));
            let v: Value = serde_json::from_slice(&bytes).expect("valid JSON");
            proptest::prop_assert_eq!(&v["id"], &json!(id));
            let bytes = error_response(Some(&RequestId::Number(n)), &RpcError::invalid_params(id));
            let v: Value = serde_json::from_slice(&bytes).expect("valid JSON");
            proptest::prop_assert_eq!(&v["error"]["code"], &json!(-32602));
        }
    }
}
