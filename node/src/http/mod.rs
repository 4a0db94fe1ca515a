//! The client-facing HTTP server: an accept loop bounded by the connection cap, one hyper
//! HTTP/1.1 connection task per client, and the `/mcp` endpoint.

pub mod body;
pub mod exchange;
pub mod guard;
pub mod legacy;
pub mod mcp;
pub mod modern;
pub mod outbound;
pub mod reply;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Reason;
use crate::node::Node;

const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: 88\r\nConnection: close\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32000,\"message\":\"connection limit reached\"}}";

/// Serves MCP on `listener` until `shutdown` resolves, then stops accepting and waits up to
/// the configured grace period for open connections.
pub async fn serve(listener: TcpListener, node: Arc<Node>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let cap = node.settings.max_connections;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        node.metrics.connections_accepted.inc();
        if node.connections.load(Ordering::Acquire) >= cap || node.is_draining() {
            let reason = if node.is_draining() {
                Reason::draining
            } else {
                Reason::connection_cap
            };
            node.metrics.reject(reason);
            tokio::spawn(refuse(stream));
            continue;
        }
        let _ = stream.set_nodelay(true);
        node.connections.fetch_add(1, Ordering::AcqRel);
        node.metrics.connections.inc();
        let conn_node = node.clone();
        let service = service_fn(move |req| {
            let n = conn_node.clone();
            async move { Ok::<_, std::convert::Infallible>(mcp::handle(n, req).await) }
        });
        let conn = http1::Builder::new()
            .keep_alive(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(conn);
        let done_node = node.clone();
        tokio::spawn(async move {
            if let Err(err) = watched.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            done_node.connections.fetch_sub(1, Ordering::AcqRel);
            done_node.metrics.connections.dec();
        });
    }
    drop(listener);
    let grace = Duration::from_secs(node.settings.config.shutdown_grace_secs);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
    }
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(OVER_CAPACITY)).await;
    let _ = stream.shutdown().await;
}
