//! The real connection loop (`mcp_node::http::conn::serve`) over an in-memory stream: request
//! heads, Content-Length and chunked bodies, pipelined requests, reads and writes cut at any
//! size, optionally while the node drains. Checks, besides "no panic, no hang": every byte the
//! node writes is a well-formed HTTP/1.1 response, and once the connection is over no request
//! buffer bytes and no in-flight request are left counted.
//!
//! Input: byte 0 = how many bytes each read/write moves (0: all; bit 7: the node is draining),
//! the rest = what the client sends, then the client closes its side.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_node::http::io::ReadyIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

fn node() -> &'static Arc<mcp_node::Node> {
    static NODE: OnceLock<Arc<mcp_node::Node>> = OnceLock::new();
    NODE.get_or_init(|| {
        let mut config = mcpcluster_api::NodeConfig::default();
        config.limits.max_sessions = 1000;
        // Small limits so the fuzzer reaches them with small inputs.
        config.limits.max_body_bytes = 4096;
        config.limits.max_buffered_request_bytes = 4096 + 128 * 1024;
        let settings = mcp_node::Settings::validate(config).expect("config");
        let catalog = mcp_node::content::packs::catalog_for(&settings.config).expect("catalog");
        mcp_node::Node::new(settings, catalog)
    })
}

/// The client: what it sends, cut into reads of `step` bytes, then EOF; what the node writes.
struct Fake {
    input: Vec<u8>,
    pos: usize,
    step: usize,
    output: Vec<u8>,
}

impl AsyncRead for Fake {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = (self.input.len() - self.pos).min(self.step).min(buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.input[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Fake {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.output.len() > 4 << 20 {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let n = buf.len().min(self.step);
        self.output.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl ReadyIo for Fake {
    fn poll_read_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Always something to read: bytes, or the end of the stream.
        Poll::Ready(Ok(()))
    }
}

/// Walks the node's output: a sequence of HTTP/1.1 responses, each complete except maybe the
/// last (the client may have left during it), answers to HEAD without their body. Panics on
/// anything else.
fn check_responses(mut out: &[u8]) {
    while !out.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(out) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return,
            Err(e) => panic!("malformed response head ({e}): {:?}", String::from_utf8_lossy(out)),
        };
        assert_eq!(resp.version, Some(1), "HTTP/1.1 responses");
        let code = resp.code.expect("status");
        let header = |name: &str| {
            resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
        };
        let chunked = header("transfer-encoding").is_some_and(|v| v == b"chunked");
        let length = header("content-length").map(|v| {
            std::str::from_utf8(v).expect("ascii").parse::<usize>().expect("a number")
        });
        assert!(!(chunked && length.is_some()), "both framings in a response");
        out = &out[len..];
        // An answer to HEAD has no body; what follows is the next response (no body of ours
        // starts like one).
        if code == 100 || out.starts_with(b"HTTP/1.1 ") {
            continue;
        }
        if let Some(n) = length {
            if out.len() < n {
                return;
            }
            out = &out[n..];
        } else if chunked {
            loop {
                let Some(eol) = out.windows(2).position(|w| w == b"\r\n") else { return };
                let size = usize::from_str_radix(std::str::from_utf8(&out[..eol]).expect("ascii"), 16)
                    .expect("chunk size");
                if out.len() < eol + 2 + size + 2 {
                    return;
                }
                assert_eq!(&out[eol + 2 + size..eol + 4 + size], b"\r\n", "chunk end");
                out = &out[eol + 4 + size..];
                if size == 0 {
                    break;
                }
            }
        } else {
            panic!("a response without framing: {code}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else { return };
    let step = match usize::from(control & 0x7f) {
        0 => usize::MAX,
        n => n,
    };
    let node = node();
    node.set_draining(control & 0x80 != 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let mut fake = Fake { input: input.to_vec(), pos: 0, step, output: Vec::new() };
    rt.block_on(async {
        let served = tokio::time::timeout(
            Duration::from_secs(3600),
            mcp_node::http::conn::serve(&mut fake, node),
        )
        .await;
        assert!(served.is_ok(), "the connection loop did not finish an hour (virtual) after EOF");
    });
    // Work the request started in the background (SSE answers) ends with the runtime.
    drop(rt);
    check_responses(&fake.output);
    assert_eq!(node.body_budget.used(), 0, "request buffer bytes left counted");
    assert_eq!(node.inflight.load(Ordering::Acquire), 0, "an in-flight request left counted");
    node.sessions.expire(u64::MAX);
});
