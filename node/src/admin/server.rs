//! The admin port's connections: hardened like the MCP port against clients that connect and
//! then do nothing, since where NetworkPolicy is not enforced any pod reaches this port.
//!
//! - At most [`MAX_CONNECTIONS`] at once (a permit moved into the connection's task, given back
//!   however it ends); one more is answered 503 and closed at once, counted in
//!   `mcp_admin_connections_refused_total`.
//! - A request head must arrive within `limits.requestHeadTimeoutSecs` of the moment the
//!   connection waits for it: hyper's header timer starts when the connection is accepted and
//!   again after each answer, so it bounds a slow head and an idle keep-alive connection alike.
//! - TCP keepalive as on the MCP port (`limits.tcpKeepaliveSecs`).
//! - A panic while serving is caught and counted like a connection task's
//!   ([`crate::http::panics`]).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::cluster::ClusterHandle;
use crate::http::panics;
use crate::node::Node;

/// Admin connections open at once; more are refused. Probes, scrapers and the operator need a
/// handful; the bound matters for file descriptors: the MCP port may take every descriptor
/// but `limits.fdReserve` (256 by default), which the admin port shares with the listeners,
/// the peer sockets and the issuer fetches, so it takes at most a quarter of the default.
pub const MAX_CONNECTIONS: usize = 64;

const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: text/plain\r\ncontent-length: 31\r\nconnection: close\r\n\r\nadmin connection limit reached\n";

/// Serves the admin endpoint until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    cluster: Option<ClusterHandle>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = &node.settings.config.limits;
    let head_timeout = Duration::from_secs(limits.request_head_timeout_secs);
    let keepalive = limits.tcp_keepalive_secs;
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            node.metrics.admin.connection_refused();
            // Best effort and without waiting: the socket's send buffer is empty, and a
            // client that sends into a closed socket may see a reset instead.
            let _ = stream.try_write(OVER_CAPACITY);
            continue;
        };
        if keepalive > 0 {
            crate::http::set_keepalive(&stream, Duration::from_secs(keepalive));
        }
        let n = node.clone();
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let service_node = n.clone();
            let service = service_fn(move |req| {
                let r = super::routes::route(&service_node, cluster.as_ref(), &req, peer);
                async move { Ok::<_, Infallible>(r) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(head_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let _ = panics::catch(&n, panics::Origin::Admin(peer), connection).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_well_formed_answer() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = response.parse(OVER_CAPACITY) else {
            panic!("a complete head");
        };
        assert_eq!(response.code, Some(503));
        let length = response
            .headers
            .iter()
            .find(|h| h.name == "content-length")
            .map(|h| std::str::from_utf8(h.value).expect("ascii"))
            .expect("content-length");
        assert_eq!(length.parse::<usize>(), Ok(OVER_CAPACITY.len() - head));
    }
}
