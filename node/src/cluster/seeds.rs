//! Seed resolution: the static `host:port` list plus the addresses a DNS name resolves to
//! (the StatefulSet's headless Service in Kubernetes).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

/// How long start-up waits for the DNS name to list a peer other than this node (a pod's
/// record appears in the headless Service a moment after the pod starts).
const DNS_WAIT: Duration = Duration::from_secs(5);
const DNS_RETRY: Duration = Duration::from_millis(500);

/// Every seed address, without `me`. Unresolvable entries are logged and skipped: a node
/// without seeds still serves and waits to be joined.
pub async fn resolve(
    seeds: &[String],
    dns: Option<&(String, u16)>,
    me: SocketAddr,
) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for s in seeds {
        match tokio::net::lookup_host(s.as_str()).await {
            Ok(addrs) => out.extend(addrs),
            Err(err) => tracing::warn!(seed = %s, %err, "seed not resolved"),
        }
    }
    if let Some((name, port)) = dns {
        let deadline = Instant::now() + DNS_WAIT;
        loop {
            match tokio::net::lookup_host((name.as_str(), *port)).await {
                Ok(addrs) => {
                    let found: Vec<_> = addrs.filter(|a| *a != me).collect();
                    if !found.is_empty() || Instant::now() >= deadline {
                        tracing::info!(%name, peers = found.len(), "seed DNS resolved");
                        out.extend(found);
                        break;
                    }
                }
                Err(err) if Instant::now() >= deadline => {
                    tracing::warn!(%name, %err, "seed DNS not resolved");
                    break;
                }
                Err(_) => {}
            }
            tokio::time::sleep(DNS_RETRY).await;
        }
    }
    out.retain(|a| *a != me);
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_seeds_resolve_without_self_and_duplicates() {
        let me: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
        let seeds = vec![
            "127.0.0.1:7000".into(),
            "127.0.0.1:7001".into(),
            "localhost:7002".into(),
            "127.0.0.1:7001".into(),
        ];
        let got = resolve(&seeds, Some(&("localhost".into(), 7003)), me).await;
        assert!(got.contains(&"127.0.0.1:7001".parse().expect("addr")));
        assert!(got.contains(&"127.0.0.1:7003".parse().expect("addr")));
        assert!(!got.contains(&me));
        assert_eq!(got.iter().filter(|a| a.port() == 7001).count(), 1);
    }
}
