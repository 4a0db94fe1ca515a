//! `hyper-baseline ADDR`: the physical limit `make bench-node` compares against.
//!
//! A minimal hyper 1 HTTP/1.1 server that answers the benchmark's exchange with the least work
//! that still gives a correct answer: `initialize` gets a result and an `Mcp-Session-Id`,
//! notifications get 202, `tools/call` echoes its `text` argument, a GET or
//! `subscriptions/listen` gets an event stream that stays open. No sessions, no validation, no
//! metrics, no limits — everything a real MCP server must do and this one skips is what our
//! node's throughput is measured against.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

type Body = BoxBody<Bytes, Infallible>;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

fn full(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert("content-type", v);
    }
    r
}

/// An event stream that sends `first` (if any) and then stays open.
fn stream(first: Option<Vec<u8>>) -> Response<Body> {
    let head = futures_util::stream::iter(first.map(|b| Ok(Frame::data(Bytes::from(b)))));
    let body = StreamBody::new(futures_util::StreamExt::chain(
        head,
        futures_util::stream::pending(),
    ));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    r
}

async fn answer(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.method() == Method::GET {
        return Ok(stream(None));
    }
    let Ok(body) = req.into_body().collect().await else {
        return Ok(full(
            StatusCode::BAD_REQUEST,
            "text/plain",
            b"bad body".to_vec(),
        ));
    };
    let Ok(msg) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return Ok(full(
            StatusCode::BAD_REQUEST,
            "text/plain",
            b"not JSON".to_vec(),
        ));
    };
    let Some(id) = msg.get("id").cloned() else {
        return Ok(full(StatusCode::ACCEPTED, "text/plain", Vec::new()));
    };
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    let result = match method {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "hyper-baseline", "version": env!("CARGO_PKG_VERSION")}
        }),
        "subscriptions/listen" => {
            let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged", "params": {}});
            return Ok(stream(Some(format!("data: {ack}\n\n").into_bytes())));
        }
        _ => {
            let text = msg["params"]["arguments"]["text"].as_str().unwrap_or("");
            json!({"content": [{"type": "text", "text": text}]})
        }
    };
    let out = json!({"jsonrpc": "2.0", "id": id, "result": result});
    let mut r = full(
        StatusCode::OK,
        "application/json",
        out.to_string().into_bytes(),
    );
    if method == "initialize" {
        let sid = format!("{:032x}", NEXT_SESSION.fetch_add(1, Ordering::Relaxed));
        if let Ok(v) = sid.parse() {
            r.headers_mut().insert("mcp-session-id", v);
        }
    }
    Ok(r)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("hyper-baseline listening on {}", listener.local_addr()?);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(answer))
                .await;
        });
    }
}
