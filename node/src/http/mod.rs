//! The client-facing HTTP server: an accept loop bounded by the connection cap, one lean
//! HTTP/1.1 connection task per client ([`conn`]), and the `/mcp` endpoint.

pub mod body;
pub mod conn;
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

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::metrics::Reason;
use crate::node::Node;

const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: 88\r\nConnection: close\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32000,\"message\":\"connection limit reached\"}}";

/// Serves MCP on `listener` until `shutdown` resolves, then stops accepting, closes idle
/// connections and waits up to the configured grace period for the others.
pub async fn serve(listener: TcpListener, node: Arc<Node>, shutdown: impl Future<Output = ()>) {
    let cap = node.settings.max_connections;
    let (stop_tx, stop_rx) = watch::channel(false);
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
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            conn::serve(stream, conn_node.clone(), stop).await;
            tracing::trace!(%peer, "connection closed");
            conn_node.connections.fetch_sub(1, Ordering::AcqRel);
            conn_node.metrics.connections.dec();
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(node.settings.config.shutdown_grace_secs);
    let deadline = tokio::time::Instant::now() + grace;
    while node.connections.load(Ordering::Acquire) > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                ?grace,
                open = node.connections.load(Ordering::Acquire),
                "grace period over; closing remaining connections"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!("all connections closed");
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(OVER_CAPACITY)).await;
    let _ = stream.shutdown().await;
}
