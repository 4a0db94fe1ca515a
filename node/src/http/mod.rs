//! The client-facing HTTP server: an accept loop bounded by the connection cap, one lean
//! HTTP/1.1 connection task per client ([`conn`]), and the `/mcp` endpoint.
//!
//! The edge (issue 12): a connection's slot ([`slot`]) and its buffered request bytes
//! ([`budget`]) are held by guards, so no way a task ends can leak them; a panic in a
//! connection task, or in a task spawned for one request, is caught, counted and logged at a
//! bounded rate ([`panics`]); request
//! framing is strict ([`framing`], [`read`]); accepted sockets get TCP keepalive.

pub mod body;
pub mod budget;
pub mod conn;
pub mod durable;
pub mod event_ids;
pub mod exchange;
pub mod forward;
pub mod framing;
pub mod guard;
pub mod headers;
pub mod io;
pub mod legacy;
pub mod mcp;
pub mod modern;
pub mod outbound;
pub mod panics;
pub mod read;
pub mod reattach;
pub mod relayed;
pub mod repeat;
pub mod reply;
pub mod slot;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Reason;
use crate::node::Node;
use slot::ConnectionSlot;

const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: 88\r\nConnection: close\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32000,\"message\":\"connection limit reached\"}}";
/// The same refusal when another member can take the connection: `Retry-After: 0`, since what
/// is full is this node, not the cluster — the client's next try, through the Service, most
/// likely lands on a node with room, and waiting a second first only eats into the client's
/// patience (docs/PROTOCOL.md, "Connections spread out after churn": over a rolling restart at
/// 100K the reopens of a drained node's clients pile onto the nodes not restarted yet, and a
/// client refused at the cap finds room only by trying again).
const OVER_CAPACITY_TRY_ELSEWHERE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Type: application/json\r\nContent-Length: 88\r\nConnection: close\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32000,\"message\":\"connection limit reached\"}}";

/// Interval between TCP keepalive probes once they started.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel gives up on the connection.
const KEEPALIVE_PROBES: u32 = 3;

/// Serves MCP on `listener` until `shutdown` resolves, then stops accepting and drains: every
/// connection closes after its current answer (which says `Connection: close`), idle ones after
/// a short grace ([`conn::DRAIN_IDLE_GRACE`]); waits up to the configured grace period for them.
pub async fn serve(listener: TcpListener, node: Arc<Node>, shutdown: impl Future<Output = ()>) {
    let cap = node.settings.max_connections;
    let keepalive = node.settings.config.limits.tcp_keepalive_secs;
    panics::install_hook();
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
        let slot = if node.is_draining() {
            None
        } else {
            ConnectionSlot::try_acquire(&node, cap)
        };
        let Some(slot) = slot else {
            let reason = if node.is_draining() {
                Reason::draining
            } else {
                Reason::connection_cap
            };
            node.metrics.reject(reason);
            // Another live member that takes sessions (not draining) can serve this client.
            let elsewhere = node.layer().is_some_and(|l| l.has_successor());
            tokio::spawn(refuse(stream, elsewhere));
            continue;
        };
        let _ = stream.set_nodelay(true);
        if keepalive > 0 {
            set_keepalive(&stream, Duration::from_secs(keepalive));
        }
        // The slot moves into the task: it is given back when the task ends, however it ends.
        tokio::spawn(async move {
            let node = slot.node();
            let origin = panics::Origin::Connection(peer);
            let _ = panics::catch(node, origin, conn::serve(stream, node)).await;
            tracing::trace!(%peer, "connection closed");
            drop(slot);
        });
    }
    drop(listener);
    node.set_draining(true);
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

/// TCP keepalive after `idle` of silence (then every `KEEPALIVE_INTERVAL`, up to
/// `KEEPALIVE_PROBES`), and on Linux `TCP_USER_TIMEOUT` of `idle` + 30 s, so sent data that
/// stays unacknowledged that long (a vanished client behind a stream) ends the connection too.
pub fn set_keepalive(stream: &TcpStream, idle: Duration) {
    let sock = socket2::SockRef::from(stream);
    let params = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    if let Err(err) = sock.set_tcp_keepalive(&params) {
        tracing::debug!(error = %err, "cannot set TCP keepalive");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(err) = sock.set_tcp_user_timeout(Some(idle + KEEPALIVE_INTERVAL * KEEPALIVE_PROBES))
    {
        tracing::debug!(error = %err, "cannot set TCP_USER_TIMEOUT");
    }
}

/// Answers a connection over the cap (or to a draining node) with 503 and closes it:
/// `Retry-After: 0` when another member can take it (`elsewhere`), 1 s when not.
async fn refuse(mut stream: TcpStream, elsewhere: bool) {
    let answer = if elsewhere {
        OVER_CAPACITY_TRY_ELSEWHERE
    } else {
        OVER_CAPACITY
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer)).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keepalive_and_user_timeout_are_set() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        set_keepalive(&accepted, Duration::from_secs(60));
        let sock = socket2::SockRef::from(&accepted);
        assert!(sock.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            sock.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
            Duration::from_secs(60)
        );
        assert_eq!(
            sock.tcp_keepalive_interval().expect("TCP_KEEPINTVL"),
            KEEPALIVE_INTERVAL
        );
        assert_eq!(
            sock.tcp_keepalive_retries().expect("TCP_KEEPCNT"),
            KEEPALIVE_PROBES
        );
        #[cfg(target_os = "linux")]
        assert_eq!(
            sock.tcp_user_timeout().expect("TCP_USER_TIMEOUT"),
            Some(Duration::from_secs(90))
        );
        drop(client);
    }
}
